"""AutoPipeline and PipelinedConnection against a real redis-server: many tasks' commands,
few round trips."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _relay_helpers import events
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from _redis_server import RedisServer, free_port
from kagura.errors import RelayError, RelayUnavailable
from kagura.relay import RedisRelay, new_stream_id
from kagura.relay._pipeline import AutoPipeline, PipelinedConnection

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def unavailable() -> AsyncIterator[None]:
    """A guard as RedisRelay's: a connection failure is RelayUnavailable."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        yield
    except (RedisConnectionError, OSError) as exc:
        raise RelayUnavailable(str(exc)) from None


Batch = AutoPipeline | PipelinedConnection
KINDS = ["auto", "pipelined"]


def make_batch(kind: str, port: int, **options: Any) -> tuple[Batch, Redis]:
    """One of the two, on ``port``; the client to close after it."""
    client = Redis(port=port, protocol=2, retry=Retry(NoBackoff(), 0), **options)
    if kind == "auto":
        return AutoPipeline(client, unavailable), client
    connect = ConnectionPool(port=port, protocol=2, **options).make_connection
    return PipelinedConnection(connect, unavailable, timeout=5), client


@pytest.fixture(params=KINDS)
async def batch(redis_server: RedisServer, request: pytest.FixtureRequest) -> AsyncIterator[Batch]:
    """Each kind, on the session's server."""
    batch, client = make_batch(request.param, redis_server.port)
    yield batch
    await batch.aclose()
    await client.aclose()


def key(name: str) -> str:
    """A key of this test's own (the session's server is shared)."""
    return f"pipeline-test:{new_stream_id()}:{name}"


async def test_concurrent_senders_share_an_exchange_and_get_their_own_replies(
    batch: Batch,
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
    batch: Batch, redis_server: RedisServer
) -> None:
    text, counter = key("text"), key("counter")
    redis_server.client().set(text, "x")
    one, other = await asyncio.gather(
        batch.send([("INCR", text), ("INCR", counter)]), batch.send([("EXISTS", counter)])
    )
    [single] = await batch.send([("INCR", text)])  # alone: sent as a plain command
    assert isinstance(one[0], ResponseError)
    assert one[1] == 1
    assert other == [1]
    assert isinstance(single, ResponseError)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failed_exchange_fails_its_callers_and_the_next_one_goes_on(kind: str) -> None:
    batch, client = make_batch(kind, free_port(), socket_connect_timeout=0.5)
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
    batch: Batch, redis_server: RedisServer
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


@pytest.mark.parametrize("kind", KINDS)
async def test_closing_fails_the_waiting_callers(redis_server: RedisServer, kind: str) -> None:
    batch, client = make_batch(kind, redis_server.port)
    blocked = asyncio.ensure_future(batch.send([("BLPOP", "never", 5)]))
    waiting = asyncio.ensure_future(batch.send([("PING",)]))
    await asyncio.sleep(0.05)
    await batch.aclose()
    for task in (blocked, waiting):
        with pytest.raises(RelayError, match="closed"):
            await task
    with pytest.raises(RelayError, match="closed"):
        await batch.send([("PING",)])  # and any caller after
    await client.aclose()


class HeldReplies:
    """A TCP proxy to redis-server that holds the server's replies from :meth:`hold` until
    :meth:`release`; what the client writes reaches the server at once (``upstream`` keeps
    a copy)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.upstream = bytearray()
        self.arrived = asyncio.Condition()
        self.released = asyncio.Event()
        self.released.set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> HeldReplies:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        self.released.set()

    def hold(self) -> None:
        self.released.clear()

    async def sent(self, *needles: bytes) -> None:
        """Until every one of ``needles`` has reached the server."""
        async with self.arrived:
            await self.arrived.wait_for(lambda: all(n in self.upstream for n in needles))

    def release(self) -> None:
        self.released.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def upstream() -> None:
            while data := await reader.read(65536):
                self.upstream += data
                up_writer.write(data)
                async with self.arrived:
                    self.arrived.notify_all()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                await self.released.wait()
                writer.write(data)

        try:
            await asyncio.gather(upstream(), downstream())
        finally:
            writer.close()
            up_writer.close()


async def test_a_pipelined_connection_writes_without_waiting_for_earlier_replies(
    redis_server: RedisServer,
) -> None:
    """Three exchanges a loop turn apart are all on the wire while the server's replies are
    held; then each caller gets its own, in order. (AutoPipeline would hold the second and
    third until the first one's replies came.)"""
    first, second, third = key("a"), key("b"), key("c")
    async with HeldReplies(redis_server.port) as proxy:
        connect = ConnectionPool(port=proxy.port, protocol=2).make_connection
        batch = PipelinedConnection(connect, unavailable, timeout=5)
        await batch.send([("PING",)])  # connected (its handshake) and answered
        proxy.hold()
        one = batch.send([("INCR", first)])
        await asyncio.sleep(0.05)
        two = batch.send([("INCR", second), ("INCRBY", second, 5)])
        await asyncio.sleep(0.05)
        three = batch.send([("SET", third, "x"), ("INCR", third)])
        async with asyncio.timeout(5):  # all three reach the server, the replies held
            await proxy.sent(*(k.encode() for k in (first, second, third)))
        assert [one.done(), two.done(), three.done()] == [False, False, False]
        proxy.release()
        assert await one == [1]
        assert await two == [1, 6]
        [ok, error] = await three
        assert ok is True or ok == b"OK"
        assert isinstance(error, ResponseError)
        assert batch.exchanges == 4
        await batch.aclose()


async def test_a_pipelined_connection_fails_what_a_dead_server_owed_and_reconnects(
    own_redis_server: RedisServer,
) -> None:
    """The server killed with exchanges unanswered: those fail (RelayUnavailable), and once
    it is back the next exchange goes on a new connection."""
    counter = key("n")
    connect = ConnectionPool(port=own_redis_server.port, protocol=2).make_connection
    batch = PipelinedConnection(connect, unavailable, timeout=5)
    try:
        assert await batch.send([("INCR", counter)]) == [1]
        owed = batch.send([("BLPOP", key("never"), 5)])
        await asyncio.sleep(0.1)
        own_redis_server.kill()
        with pytest.raises(RelayUnavailable):
            await asyncio.wait_for(owed, 5)
        with pytest.raises(RelayUnavailable):
            await batch.send([("INCR", counter)])
        own_redis_server.start()
        assert await batch.send([("INCR", counter)]) == [1]  # (no persistence)
    finally:
        await batch.aclose()


async def test_many_slow_streams_share_round_trips(redis_server: RedisServer) -> None:
    """100 streams of a chunk every 20 ms: each chunk is an entry of its own (the batch
    window is 2 ms), but their XADDs and renewals leave together."""

    async def slow(i: int) -> AsyncIterator[str]:
        await asyncio.sleep(i * 0.0002)
        for n in range(25):
            yield f"{n} "
            await asyncio.sleep(0.02)

    relay = RedisRelay(redis_server.url, lease=0.3)
    async with relay:
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


async def test_a_pipelined_connection_gives_up_on_a_server_that_does_not_answer(
    redis_server: RedisServer,
) -> None:
    """Replies held past ``timeout``: the exchanges waiting fail (RelayUnavailable), whether
    written first or later, and the next one goes on a new connection."""
    counter = key("n")
    async with HeldReplies(redis_server.port) as proxy:
        connect = ConnectionPool(port=proxy.port, protocol=2).make_connection
        batch = PipelinedConnection(connect, unavailable, timeout=0.3)
        try:
            await batch.send([("PING",)])
            proxy.hold()
            started = asyncio.get_running_loop().time()
            first = batch.send([("INCR", counter)])
            await asyncio.sleep(0.2)
            later = batch.send([("INCR", counter)])
            for owed in (first, later):
                with pytest.raises(RelayUnavailable, match="did not answer"):
                    await asyncio.wait_for(owed, 5)
            assert 0.3 <= asyncio.get_running_loop().time() - started < 2
            proxy.release()
            assert await asyncio.wait_for(batch.send([("INCR", counter)]), 5) == [3]
        finally:
            await batch.aclose()
