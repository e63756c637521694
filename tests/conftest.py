"""Shared fixtures: the loopback OpenAI-compatible server, configs for it, hypothesis profiles."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, settings

from _probe import PROBE, Probe
from _redis_server import RedisServer, need_redis
from _wire_servers import RawServer, UvicornServer
from kagura.llm.config import LLMConfig
from kagura.testing.loopback import LoopbackServer, Script

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

DATA = Path(__file__).resolve().parent / "data"  # copied from shared/data, licence notes kept
RECORDED = DATA / "openai-recorded"
GOLDEN_RULES = DATA / "golden_rules_en.json"


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(loopback_server: LoopbackServer) -> Iterator[LoopbackServer]:
    """The session's loopback server, with an empty script queue and fresh counters.

    Fails the test if the server itself raised while serving it.
    """
    loopback_server.reset()
    yield loopback_server
    errors = loopback_server.errors
    loopback_server.reset()
    assert not errors, f"the loopback server failed inside: {errors!r}"


@pytest.fixture(params=["direct", "litellm"])
def transport(request: pytest.FixtureRequest) -> Literal["direct", "litellm"]:
    """Each transport that talks HTTP; tests using it run once per transport."""
    return request.param


_modules_when_frozen = 0


@pytest.fixture(autouse=True)
def _imported_modules_frozen() -> None:
    """Exempt the long-lived objects (the modules: litellm's alone are some 400,000 objects)
    from the cyclic collector, so that each ``gc.collect()`` of a test (see
    :func:`_close_litellm_clients`) walks only what was made since, not the whole heap: it
    took 0.3 s after every litellm test, some 15% of the suite's time.

    Before a test, whenever a module was imported since the last time: collect, then
    ``gc.freeze()`` what survived, all of it reachable then (modules, session fixtures).
    What tests make afterwards is collected as before, so a leaked connection still warns
    (at the latest here, before the next freeze). Reference counting is unchanged.
    """
    global _modules_when_frozen
    if len(sys.modules) != _modules_when_frozen:
        gc.collect()
        gc.freeze()
        _modules_when_frozen = len(sys.modules)


@pytest.fixture(autouse=True)
def _litellm_closed_after_async_tests(request: pytest.FixtureRequest) -> None:
    """:func:`litellm_closed` for every async test (a sync test may run its own loop)."""
    # pytest-asyncio marks every async test, also one that hypothesis wraps (whose
    # function is then no coroutine function itself).
    if request.node.get_closest_marker("asyncio") is not None:
        request.getfixturevalue("litellm_closed")


@pytest.fixture
async def litellm_closed() -> AsyncIterator[None]:
    """Close litellm's cached HTTP clients in the test's own loop when the test ends.

    litellm keeps a client (and its connections) per provider after a call, bound to
    the loop that made it; left open, each is collected unclosed in some later test,
    whose unraisable-exception check then fails. Every test closes its own.
    """
    yield
    if "litellm" in sys.modules:
        await _close_litellm_clients()


@pytest.fixture
def loopback_config(loopback: LoopbackServer, transport: Literal["direct", "litellm"]) -> LLMConfig:
    """A config that sends requests to the loopback server, no retries, on each transport."""
    return LLMConfig(
        model="openai/gpt-4o-mini",
        api_base=loopback.base_url,
        api_key="sk-test-0123456789",
        max_retries=0,
        transport=transport,
    )


async def _close_litellm_clients() -> None:
    """Close litellm's cached clients, then forget them (a closed one is never reused).

    What litellm itself leaves unclosed (seen: a connection of its Gemini path) is
    collected here, in the test that made it, with the ResourceWarning it raises
    swallowed: a leak of litellm's, not of kagura's, whose transports the other tests
    check for leaks.
    """
    from kagura.llm.transports._litellm import load_litellm

    litellm = load_litellm()
    if not getattr(litellm.in_memory_llm_clients_cache, "cache_dict", None):
        return  # this test made no litellm client
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    # Its logging worker holds each call's objects (the stream, its connection) until
    # it has run their callbacks in this loop: let it finish, then let go.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await GLOBAL_LOGGING_WORKER.flush()
    with contextlib.suppress(Exception):
        await GLOBAL_LOGGING_WORKER.stop()
    await litellm.close_litellm_async_clients()
    litellm.in_memory_llm_clients_cache.flush_cache()
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = hook


@pytest.fixture
def probe(loopback: LoopbackServer) -> Probe:
    """Send one request to the loopback server and wait for its answer, then return the last
    user message of every request the server has recorded (the probe's last).

    A test that checks that something did *not* reach the server waits on this instead of
    a sleep: whatever the code under test sent, it sent before the probe.
    """

    async def send() -> list[str]:
        from kagura import call_llm_stream

        config = LLMConfig(
            model="openai/m", api_base=loopback.base_url, api_key="sk-probe-0123", max_retries=0
        )
        loopback.enqueue(Script.text("ok"))
        assert [c async for c in call_llm_stream(PROBE, config)] == ["ok"]
        return [str(r.body["messages"][-1]["content"]) for r in loopback.requests]

    return send


@pytest.fixture
def recorded_dir() -> Path:
    return RECORDED


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """A :class:`RawServer` in the test's loop; script it with ``enqueue`` or ``handler``."""
    async with RawServer() as server:
        yield server


@pytest.fixture(scope="session", params=["h11", "httptools"])
def uvicorn_server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    """A real uvicorn (in a subprocess, once per session) serving ``tests/_asgi_openai.py``,
    once with each of its HTTP parsers."""
    with UvicornServer(http=request.param) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the relay tests, once per session.

    Debian's ``redis-server`` (``make redis`` installs it) on a free port in a temporary
    directory, without persistence. Without the binary (or redis-py) the tests that use
    it skip, except under CI (``CI`` set), where they fail.
    """
    need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
