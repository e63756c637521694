"""AutoPipeline against a real redis-server: many tasks' commands, few round trips."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _relay_helpers import events
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from _redis_server import RedisServer, free_port
from kagura.errors import RelayError, RelayUnavailable
from kagura.relay import RedisRelay, new_stream_id
from kagura.relay._pipeline import AutoPipeline

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def unavailable() -> AsyncIterator[None]:
    """A guard as RedisRelay's: a connection failure is RelayUnavailable."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        yield
    except (RedisConnectionError, OSError) as exc:
        raise RelayUnavailable(str(exc)) from None


@pytest.fixture
async def batch(redis_server: RedisServer) -> AsyncIterator[AutoPipeline]:
    """An AutoPipeline on the session's server."""
    client = Redis(port=redis_server.port, protocol=2)
    batch = AutoPipeline(client, unavailable)
    yield batch
    await batch.aclose()
    await client.aclose()


def key(name: str) -> str:
    """A key of this test's own (the session's server is shared)."""
    return f"pipeline-test:{new_stream_id()}:{name}"


async def test_concurrent_senders_share_an_exchange_and_get_their_own_replies(
    batch: AutoPipeline,
) -> None:
    counters = [key(f"n{i}") for i in range(50)]
    replies = await asyncio.gather(
        *(batch.send([("INCR", k), ("INCRBY", k, i)]) for i, k in enumerate(counters))
    )
    assert replies == [[1, 1 + i] for i in range(50)]
    assert batch.exchanges <= 2  # the first goes at once; the 49 others wait for it
    assert await batch.send([("INCR", counters[0])]) == [2]  # one alone goes at once
    assert batch.exchanges <= 3


async def test_an_error_reply_is_a_value_for_its_command_alone(
    batch: AutoPipeline, redis_server: RedisServer
) -> None:
    text, counter = key("text"), key("counter")
    redis_server.client().set(text, "x")
    one, other = await asyncio.gather(
        batch.send([("INCR", text), ("INCR", counter)]), batch.send([("PING",)])
    )
    [single] = await batch.send([("INCR", text)])  # alone: sent as a plain command
    assert isinstance(one[0], ResponseError)
    assert one[1] == 1
    assert other == [True]
    assert isinstance(single, ResponseError)


async def test_a_failed_exchange_fails_its_callers_and_the_next_one_goes_on() -> None:
    client = Redis(
        port=free_port(), protocol=2, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    batch = AutoPipeline(client, unavailable)
    try:
        results = await asyncio.gather(
            *(batch.send([("PING",)]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RelayUnavailable) for r in results), results
        with pytest.raises(RelayUnavailable):
            await batch.send([("PING",)])
    finally:
        await batch.aclose()
        await client.aclose()


async def test_a_cancelled_caller_leaves_the_others_alone(
    batch: AutoPipeline, redis_server: RedisServer
) -> None:
    c, d, e = key("c"), key("d"), key("e")
    first = asyncio.ensure_future(batch.send([("INCR", c)]))
    doomed = asyncio.ensure_future(batch.send([("INCR", d)]))
    kept = asyncio.ensure_future(batch.send([("INCR", e)]))
    doomed.cancel()  # before the exchange leaves (send queues at once)
    assert await first == [1]
    assert await kept == [1]
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert redis_server.client().get(d) is None  # cancelled before it was sent


async def test_closing_fails_the_waiting_callers(redis_server: RedisServer) -> None:
    client = Redis(port=redis_server.port, protocol=2)
    batch = AutoPipeline(client, unavailable)
    blocked = asyncio.ensure_future(batch.send([("BLPOP", "never", 5)]))
    waiting = asyncio.ensure_future(batch.send([("PING",)]))
    await asyncio.sleep(0.05)
    await batch.aclose()
    for task in (blocked, waiting):
        with pytest.raises(RelayError, match="closed"):
            await task
    await client.aclose()


async def test_many_slow_streams_share_round_trips(redis_server: RedisServer) -> None:
    """100 streams of a chunk every 20 ms: each chunk is an entry of its own (the batch
    window is 2 ms), but their XADDs and renewals leave together."""

    async def slow(i: int) -> AsyncIterator[str]:
        await asyncio.sleep(i * 0.0002)
        for n in range(25):
            yield f"{n} "
            await asyncio.sleep(0.02)

    async with RedisRelay(redis_server.url, lease=0.3) as relay:
        redis_server.client().config_resetstat()
        streams = [new_stream_id() for _ in range(100)]
        for i, stream_id in enumerate(streams):
            await relay.publish(stream_id, slow(i))
        got: list[Any] = await asyncio.gather(*(events(relay, s) for s in streams))
        sent = relay._batch.exchanges  # pyright: ignore[reportPrivateUsage]
    stats: dict[str, Any] = redis_server.client().info("commandstats")
    xadds = int(stats["cmdstat_xadd"]["calls"])
    renewals = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    print(f"\n{xadds} XADD and {renewals} EVALSHA in {sent} exchanges")
    assert got == [[f"{n} " for n in range(25)]] * 100
    assert xadds >= 100 * 25 // 2  # most chunks were entries of their own
    assert sent <= (xadds + renewals) / 4
