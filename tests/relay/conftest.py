"""A relay fixture for each backend, a Redis Cluster, and a redis-server of a test's own.

The session's ``redis_server`` is in ``tests/conftest.py`` (the web tests use it too). The
contract tests run on three backends: memory, one redis-server, and a Redis Cluster of
three primaries (where a relay's streams lie on several nodes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from _redis_server import RedisClusterServers, RedisServer, need_redis
from kagura.relay import MemoryRelay, RedisRelay
from kagura.relay._base import RelayBase


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that restart or stop it."""
    need_redis()
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A Redis Cluster of three redis-server primaries, once per session."""
    need_redis()
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_relay(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A factory of relays of the test's backend, all closed when the test ends.

    Redis relays made by one test share the session's server (or Cluster), as processes
    would; for
    the memory backend the same relay is returned unless options are given. Redis
    relays default to a 1 s lease here, so that a lost producer shows quickly.
    """
    made: list[RelayBase] = []

    def make(**options: Any) -> RelayBase:
        relay: RelayBase
        if backend == "memory":
            if made and not options:
                return made[0]
            relay = MemoryRelay(**options)
        elif backend == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            relay = RedisRelay(server.url, **{"lease": 1.0, **options})
        else:
            cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
            relay = RedisRelay(cluster.url, cluster=True, **{"lease": 1.0, **options})
        made.append(relay)
        return relay

    yield make
    for relay in made:
        await relay.aclose()


@pytest.fixture
def relay(make_relay: Any) -> RelayBase:
    """A relay of the test's backend."""
    relay: RelayBase = make_relay()
    return relay
