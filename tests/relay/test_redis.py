"""RedisRelay against a real redis-server: commands per token, connections, keys, faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from _relay_helpers import Endless, drain, events, items, read_all, until_done
from structlog.testing import capture_logs

from _redis_server import Monitor, RedisClusterServers, RedisServer, free_port, need_redis
from kagura.errors import ConfigError, ProducerLost, RelayUnavailable, StreamNotFound
from kagura.events import Finish, TextDelta
from kagura.relay import RedisRelay, new_stream_id
from kagura.relay import _redis as redis_relay_module
from kagura.relay._redis import shard_tag
from kagura.testing.loopback import LoopbackServer, Script

pytestmark = pytest.mark.timeout(90)


def command_calls(server: RedisServer) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (INFO commandstats)."""
    stats: dict[str, Any] = server.client().info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


def clients_named(server: RedisServer, name: str) -> int:
    listed: list[dict[str, Any]] = server.client().client_list()
    return sum(1 for client in listed if client.get("name") == name)


async def test_batching_makes_a_fraction_of_a_command_per_token(
    redis_server: RedisServer,
) -> None:
    """Tokens that arrive together (one network read carries several) share one entry
    (one XADD); each exchange also rings the bell once (another XADD)."""
    report: dict[str, float] = {}
    for case, burst, window in (("bursts of 10", 10, 0.002), ("one per 1 ms", 1, 0.005)):
        async with RedisRelay(redis_server.url, batch_window=window) as relay:
            stream_id = new_stream_id()
            tokens = [TextDelta(f"t{i} ") for i in range(1000)]
            redis_server.client().config_resetstat()
            await relay.publish(stream_id, items(tokens, delay=0.001, every=burst))
            await until_done(relay, stream_id)
            calls = command_calls(redis_server)
            key = relay._keys(stream_id).entries  # pyright: ignore[reportPrivateUsage]
            entries = int(redis_server.client().xlen(key)) - 2  # less the start and the end
        ours = sum(n for name, n in calls.items() if name not in ("config|resetstat", "info"))
        report[f"{case}: entries per token"] = entries / len(tokens)
        report[f"{case}: commands per token"] = ours / len(tokens)
    print("\n" + "\n".join(f"{name}: {value:.3f}" for name, value in report.items()))
    assert report["bursts of 10: entries per token"] <= 0.1
    assert report["bursts of 10: commands per token"] <= 0.25
    assert report["one per 1 ms: entries per token"] <= 0.3


async def test_200_readers_and_100_producers_share_a_bounded_number_of_connections(
    redis_server: RedisServer,
) -> None:
    producers = RedisRelay(f"{redis_server.url}?client_name=producers", max_connections=20)
    readers = RedisRelay(f"{redis_server.url}?client_name=readers", max_connections=4)
    streams = [new_stream_id() for _ in range(100)]
    words = [f"{i} " for i in range(60)]
    async with producers, readers:
        for stream_id in streams:
            await producers.publish(stream_id, items(words, delay=0.01, every=3))
        tasks = [asyncio.create_task(events(readers, stream_id)) for stream_id in streams * 2]
        most = writing = 0
        while not all(task.done() for task in tasks):
            most = max(most, clients_named(redis_server, "readers"))
            writing = max(writing, clients_named(redis_server, "producers"))
            await asyncio.sleep(0.02)
        results = [task.result() for task in tasks]
    print(f"\n200 readers of 100 streams: at most {most} connections ({writing} writing)")
    assert all(result == words for result in results)
    assert 1 <= most <= 4 + 1  # the pool, and the follow loop's own
    # The claims, one at a time, through the pool; every append, renewal and end on the
    # producers' own connection.
    assert 1 <= writing <= 2


async def test_a_cluster_spreads_streams_over_its_nodes_with_bounded_connections(
    redis_cluster: RedisClusterServers,
) -> None:
    """On a Cluster one XREAD reaches one slot: the readers follow each shard with a loop
    of its own, so a node sees at most the pool and one connection per shard it holds."""
    from redis.crc import key_slot

    shards = 16
    options: dict[str, Any] = {"cluster": True, "shards": shards, "prefix": "spread"}
    producers = RedisRelay(redis_cluster.url, max_connections=20, **options)
    readers = RedisRelay(
        f"{redis_cluster.url}?client_name=cluster-readers", max_connections=4, **options
    )
    streams = [new_stream_id() for _ in range(60)]
    words = [f"{i} " for i in range(40)]
    async with producers, readers:
        for stream_id in streams:
            await producers.publish(stream_id, items(words, delay=0.01, every=2))
        tasks = [asyncio.create_task(events(readers, stream_id)) for stream_id in streams * 2]
        most = [0] * len(redis_cluster.nodes)
        while not all(task.done() for task in tasks):
            for i, node in enumerate(redis_cluster.nodes):
                most[i] = max(most[i], clients_named(node, "cluster-readers"))
            await asyncio.sleep(0.02)
        results = [task.result() for task in tasks]
    assert all(result == words for result in results)
    held = [len(node.client().keys("spread:*:entries")) for node in redis_cluster.nodes]
    assert sum(held) == len(streams)
    assert all(held), f"every node holds some of the streams: {held}"
    for i, node in enumerate(redis_cluster.nodes):
        low, high = i * 16384 // 3, (i + 1) * 16384 // 3
        tags = {shard_tag(shard, shards) for shard in range(shards)}
        on_node = sum(1 for tag in tags if low <= key_slot(tag.encode()) < high)
        print(f"node {i}: {held[i]} streams, {on_node} shards, at most {most[i]} connections")
        assert 1 <= most[i] <= 4 + on_node, node.port


async def test_a_killed_cluster_node_gives_typed_errors_and_the_cluster_recovers(
    tmp_path: Path,
) -> None:
    need_redis()
    cluster = RedisClusterServers(tmp_path)
    cluster.start()
    outcomes: list[object] = []
    try:
        options: dict[str, Any] = {"cluster": True, "timeout": 1.0, "lease": 1.0}
        async with (
            RedisRelay(cluster.url, **options) as producer,
            RedisRelay(cluster.nodes[2].url, **options) as reader,
        ):
            streams = [new_stream_id() for _ in range(12)]
            words = [f"{i} " for i in range(400)]  # 8 s: longer than the test's fault
            for stream_id in streams:
                await producer.publish(stream_id, items(words, delay=0.02))

            async def outcome(stream_id: str) -> object:
                try:
                    return await events(reader, stream_id)
                except (RelayUnavailable, ProducerLost) as exc:
                    return type(exc)

            tasks = [asyncio.create_task(outcome(stream_id)) for stream_id in streams]
            await asyncio.sleep(0.3)
            await asyncio.to_thread(cluster.nodes[1].kill)
            async with asyncio.timeout(30):
                outcomes = list(await asyncio.gather(*tasks))
            await asyncio.to_thread(cluster.nodes[1].start)  # rejoins from nodes.conf
            await asyncio.to_thread(cluster.wait_ready)
            again = new_stream_id()
            async with asyncio.timeout(30):
                while True:  # the relays find the node again (their clients retry)
                    try:
                        await producer.publish(again, items(["back"]))
                        break
                    except RelayUnavailable:
                        await asyncio.sleep(0.2)
                assert await events(reader, again) == ["back"]
    finally:
        cluster.stop()
    print(f"\noutcomes: {sorted(str(o) for o in outcomes)}")
    assert all(o in (RelayUnavailable, ProducerLost) for o in outcomes), outcomes


@pytest.mark.parametrize("where", ["redis", "cluster"])
async def test_a_reader_of_another_stream_wakes_the_follow_loop(
    where: str, request: pytest.FixtureRequest
) -> None:
    """The loop blocks up to a second on the streams it follows (lease 60 s); a reader of a
    new stream must not wait for that block to end. (On a Cluster: a new stream of the
    same shard, which the same loop follows.)"""
    server = request.getfixturevalue("redis_server" if where == "redis" else "redis_cluster")
    async with RedisRelay(server.url, lease=60, cluster=where == "cluster") as relay:
        followed = new_stream_id()
        joined = new_stream_id()
        while relay._shard(joined) != relay._shard(followed):  # pyright: ignore[reportPrivateUsage]
            joined = new_stream_id()
        sent_at: dict[str, float] = {}

        async def timed(words: list[str], pause: float) -> AsyncIterator[str]:
            for word in words:
                sent_at[word] = time.monotonic()
                yield word
                await asyncio.sleep(pause)

        await relay.publish(followed, timed(["x", "y"], 2.0))
        first = asyncio.create_task(events(relay, followed))
        await asyncio.sleep(0.1)  # the loop now blocks on `followed` alone
        await relay.publish(joined, timed(["a", "b", "c"], 0.4))
        received: dict[str, float] = {}
        async with asyncio.timeout(10):
            async for entry in relay.read(joined):
                received[entry.event] = time.monotonic()
        first.cancel()
    assert received["b"] - sent_at["b"] < 0.3
    assert received["c"] - sent_at["c"] < 0.3


async def test_a_connection_closed_under_the_pool_is_replaced_not_a_type_error(
    redis_server: RedisServer,
) -> None:
    """CPython 3.12 and 3.13 raise TypeError from a closed socket transport's writelines
    (python/cpython#136234) and redis-py passes it on: seen in CI when a Cluster node died
    under the follow loop. The relay takes it as the server gone, and retries."""
    async with RedisRelay(redis_server.url, timeout=2.0) as relay:
        await relay.publish(stream_id := new_stream_id(), items(["a"]))
        assert await events(relay, stream_id) == ["a"]
        pool: Any = relay._client.connection_pool  # pyright: ignore[reportPrivateUsage]
        idle: list[Any] = list(pool._available_connections)
        assert idle, "the relay keeps its connections for the next command"
        for connection in idle:
            connection._writer.transport.close()  # as a node's death does, under redis-py
        assert await relay.stop(new_stream_id()) is False  # retried on a new connection
        assert await events(relay, stream_id) == ["a"]


async def test_the_closed_transport_case_is_told_apart_from_a_bug(
    redis_server: RedisServer,
) -> None:
    left, right = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=left)
    writer.close()
    relay = RedisRelay(redis_server.url)
    with pytest.raises(TypeError, match="unsupported operand"):
        async with relay._guard():  # pyright: ignore[reportPrivateUsage]
            _ = cast(Any, None) + 1  # a TypeError of our own stays one
    said: list[str] = []
    try:
        async with relay._guard():  # pyright: ignore[reportPrivateUsage]
            writer.writelines([b"PING\r\n"])  # TypeError on 3.12 and 3.13; dropped on 3.11
    except RelayUnavailable as exc:
        said.append(str(exc))
    finally:
        right.close()
        await writer.wait_closed()
    assert all("closed the connection" in text for text in said), said


async def test_a_pipeline_reply_that_is_the_closed_transport_error_is_an_outage() -> None:
    """redis-py's Cluster pipeline keeps each command's error as its reply: the closed
    transport's TypeError came back as the XRANGE of a reader's fetch while a slot moved,
    and read as "no such stream". It is now an outage (retried); our own TypeError is not."""
    from kagura.relay._redis import _reply_error  # pyright: ignore[reportPrivateUsage]

    left, right = socket.socketpair()
    _, writer = await asyncio.open_connection(sock=left)
    writer.close()
    try:
        writer.writelines([b"PING\r\n"])  # TypeError on 3.12 and 3.13; dropped on 3.11
        closed: TypeError | None = None
    except TypeError as exc:
        closed = exc
    finally:
        right.close()
        await writer.wait_closed()
    ours = TypeError("unsupported operand")
    assert _reply_error([[], ours]) is None
    if sys.version_info >= (3, 12):
        assert closed is not None
        assert _reply_error([[], closed, ours]) is closed


async def test_a_crashed_follow_loop_still_lets_close_free_every_connection(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the follow loop surfaces at close, and close still closes everything."""

    async def broken(self: object, keys: list[str]) -> None:
        raise RuntimeError("a bug in the follow loop")

    monkeypatch.setattr(redis_relay_module._Follower, "_read", broken)  # pyright: ignore[reportPrivateUsage]
    relay = RedisRelay(f"{redis_server.url}?client_name=crashed")
    await relay.publish(stream_id := new_stream_id(), items(["a", "b"], delay=0.05))
    with contextlib.suppress(ProducerLost, RelayUnavailable, TimeoutError):
        async with asyncio.timeout(5):
            await events(relay, stream_id)
    assert clients_named(redis_server, "crashed") > 0
    with pytest.raises(RuntimeError, match="a bug in the follow loop"):
        await relay.aclose()
    assert clients_named(redis_server, "crashed") == 0


async def quiet(until: asyncio.Event) -> AsyncIterator[str]:
    """A stream that has started and says nothing until ``until``."""
    yield "start "
    await until.wait()


def streams_named(args: list[str]) -> int:
    """How many streams an XREAD names (``... STREAMS k1 k2 id1 id2``)."""
    return (len(args) - 1 - args.index("STREAMS")) // 2


@pytest.mark.parametrize("where", ["redis", "cluster"])
async def test_the_follow_loop_reads_only_the_streams_that_changed(
    where: str, request: pytest.FixtureRequest
) -> None:
    """With 60 streams followed and one of them talking, the loop's XREADs do not name all
    60 streams each time (apart from the sweep of the quiet ones once per interval, 1 s at
    lease 60): the bell says which streams were written, and carries their entries, so the
    talking stream is read when its reader joins, not once per chunk."""
    server = request.getfixturevalue("redis_server" if where == "redis" else "redis_cluster")
    nodes = [server] if where == "redis" else server.nodes
    done = asyncio.Event()
    # One shard: one loop follows all 60 streams (more than it would block on directly).
    async with RedisRelay(server.url, lease=60, shards=1, cluster=where == "cluster") as relay:
        idle = [new_stream_id() for _ in range(60)]
        for stream_id in idle:
            await relay.publish(stream_id, quiet(done))
        readers = [asyncio.create_task(events(relay, stream_id)) for stream_id in idle]
        await asyncio.sleep(0.3)  # every reader follows
        talking = new_stream_id()
        words = [f"{i} " for i in range(30)]
        await relay.publish(talking, items(words, delay=0.02))
        monitors = [Monitor(node.port) for node in nodes]
        for monitor in monitors:
            monitor.__enter__()
        started = time.monotonic()
        try:
            assert await events(relay, talking) == words
        finally:
            for monitor in monitors:
                monitor.__exit__(None, None, None)
        seconds = time.monotonic() - started
        done.set()
        assert all(got == ["start "] for got in await asyncio.gather(*readers))
    xreads = [args for m in monitors for _, args in m.commands if args[0] == "XREAD"]
    key = relay._keys(talking).entries  # pyright: ignore[reportPrivateUsage]
    assert 1 <= sum(key in args for args in xreads) <= 3
    sweeps = [args for args in xreads if streams_named(args) > 10]
    assert len(xreads) > 10
    assert len(sweeps) <= (seconds + 1) * len(nodes), [streams_named(a) for a in xreads]


class Following:
    """A reader's cursor, as the follow loop sees it (a Watcher's base and cursor)."""

    def __init__(self, base: int, cursor: int) -> None:
        self.base = base
        self.cursor = cursor
        self.got: list[Any] = []

    def deliver(self, entries: list[Any]) -> bool:
        self.got += entries
        self.cursor = entries[-1][0]
        return True


def test_a_bell_delivers_its_entry_only_to_readers_that_miss_nothing_before_it() -> None:
    """A bell's value is the entry just written (``<base>-<last>\\n<events>``): delivered
    when every reader of the stream has the entries before it; otherwise, or for a value
    that is not an entry, the stream is read (``_ring`` says False)."""
    from kagura.relay._redis import _Follower  # pyright: ignore[reportPrivateUsage]

    follower = _Follower.__new__(_Follower)
    key = "k:{0}:s:entries"
    entry = b'1700-7\n["c","d"]'  # events 6 and 7
    for cursors, delivered in [((5,), True), ((5, 6), True), ((5, 4), False), ((3,), False)]:
        readers = [Following(1700, c) for c in cursors]
        follower._watched = {key: set(readers)}  # pyright: ignore[reportPrivateUsage]
        follower._active = {}  # pyright: ignore[reportPrivateUsage]
        assert follower._ring(key, entry, 0.0) is delivered, cursors  # pyright: ignore[reportPrivateUsage]
        for reader in readers:
            assert reader.got == ([(7, ("c", "d"))] if delivered else [])
    follower._watched = {key: {Following(1699, 5)}}  # pyright: ignore[reportPrivateUsage]
    assert not follower._ring(key, entry, 0.0)  # another stream of that id  # pyright: ignore[reportPrivateUsage]
    follower._watched = {key: {Following(1700, 5)}}  # pyright: ignore[reportPrivateUsage]
    for hostile in [b"1700-7", b"x-7\n[]", b"1700-7\n{", b"1700-7\n5", b"\n"]:
        assert not follower._ring(key, hostile, 0.0), hostile  # pyright: ignore[reportPrivateUsage]


async def test_the_follow_loops_of_a_cluster_start_together_without_failing(
    redis_cluster: RedisClusterServers,
) -> None:
    """16 follow loops (one per shard) sending their first commands at once through a
    fresh Cluster client had their connections reset by its discovery of the nodes
    (redis-py): each failed once, and its readers fell back to storage."""
    done = asyncio.Event()
    with capture_logs() as logs:
        async with RedisRelay(redis_cluster.url, cluster=True) as relay:
            streams = [new_stream_id() for _ in range(60)]
            for stream_id in streams:
                await relay.publish(stream_id, quiet(done))
            readers = [asyncio.create_task(events(relay, stream_id)) for stream_id in streams]
            await asyncio.sleep(0.5)
            done.set()
            assert all(got == ["start "] for got in await asyncio.gather(*readers))
    assert [log for log in logs if log["event"] == "relay.follow_failed"] == []


async def test_a_lost_bell_delays_a_chunk_by_one_interval_at_most(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bells are hints: with none rung (an exchange's bell lost), the loop's sweep of every
    stream once per interval (0.25 s at lease 2) still delivers every chunk."""
    monkeypatch.setattr("kagura.relay._pipeline._bells", lambda rings: [])
    sent_at: dict[str, float] = {}

    async def timed(words: list[str]) -> AsyncIterator[str]:
        for word in words:
            sent_at[word] = time.monotonic()
            yield word
            await asyncio.sleep(0.05)

    async with RedisRelay(redis_server.url, lease=2.0) as relay:
        words = [f"{i} " for i in range(20)]
        await relay.publish(stream_id := new_stream_id(), timed(words))
        late: list[float] = []
        async with asyncio.timeout(20):
            async for entry in relay.read(stream_id):
                if isinstance(entry.event, str):
                    late.append(time.monotonic() - sent_at[entry.event])
    assert len(late) == len(words)
    assert max(late) < 0.25 + 0.5, late


async def test_renewals_are_spread_over_the_lease_not_sent_at_once(
    redis_server: RedisServer,
) -> None:
    """40 streams renew every lease/3 (0.4 s), each at its own phase: at most a few in any
    20 ms, not all 40 together (which stalled a producer of 1000 streams every period)."""
    done = asyncio.Event()
    async with RedisRelay(redis_server.url, lease=1.2) as relay:
        for _ in range(40):
            await relay.publish(new_stream_id(), quiet(done))
        sha = relay._renew_script.sha  # pyright: ignore[reportPrivateUsage]
        with Monitor(redis_server.port) as seen:
            await asyncio.sleep(1.0)
        done.set()
    renewed = sorted(at for at, args in seen.commands if args[:2] == ["EVALSHA", sha])
    assert len(renewed) >= 60  # 40 streams, 2.5 periods
    most = max(sum(1 for t in renewed if start <= t < start + 0.02) for start in renewed)
    assert most <= 12, most


async def test_the_keys_of_a_stream_share_a_hash_tag(redis_server: RedisServer) -> None:
    from redis.crc import key_slot

    stream_id = new_stream_id()
    async with RedisRelay(redis_server.url, prefix="app") as relay:
        await relay.publish(stream_id, items(["x"], delay=0.2))
        keys = sorted(k.decode() for k in redis_server.client().keys(f"app:*:{stream_id}:*"))
        tag = keys[0].split(":")[1]
        assert tag.startswith("{")
        assert tag.endswith("}")
        assert keys == [f"app:{tag}:{stream_id}:{part}" for part in ("entries", "lease", "meta")]
        assert len({key_slot(key.encode()) for key in keys}) == 1
        await read_all(relay, stream_id)
        client = redis_server.client()
        assert not client.exists(f"app:{tag}:{stream_id}:lease")
        ttl_ms = client.pttl(f"app:{tag}:{stream_id}:entries")
        assert 3_500_000 <= ttl_ms <= 3_600_000, "ttl after the end"
        assert client.get(f"app:{tag}:{stream_id}:meta") == b"-", "no owner, and never a value"
        await relay.publish(stream := new_stream_id(), items([]), owner="alice@example.com")
        [meta] = client.keys(f"app:*:{stream}:meta")
        stored = client.get(meta)
        assert b"alice" not in stored
        assert len(stored) == 64


@pytest.mark.parametrize("shards", [1, 3, 16, 256])
def test_streams_spread_evenly_over_the_shards_and_the_shards_over_the_slots(
    shards: int,
) -> None:
    from redis.crc import key_slot

    relay = RedisRelay(shards=shards)
    tags = [relay._keys(new_stream_id()).entries.split(":")[1] for _ in range(4000)]  # pyright: ignore[reportPrivateUsage]
    counts = Counter(tags)
    assert len(counts) == shards
    assert max(counts.values()) < 2 * 4000 / shards + 40
    slots = sorted(key_slot(tag.encode()) for tag in counts)
    for shard, slot in enumerate(slots):  # one tag in each 1/shards of the slots
        assert shard * 16384 // shards <= slot < (shard + 1) * 16384 // shards


@pytest.mark.parametrize("shards", [0, 257, 1.5, True, "4"])
def test_bad_shard_counts_are_refused(shards: Any) -> None:
    with pytest.raises(ConfigError, match="shards"):
        RedisRelay(shards=shards)


async def test_retention_bounds_a_running_streams_length(redis_server: RedisServer) -> None:
    async with RedisRelay(redis_server.url, maxlen=50, batch_window=0) as relay:
        stream_id = new_stream_id()

        async def slow() -> AsyncIterator[str]:
            for i in range(1500):
                yield f"{i}"
                await asyncio.sleep(0.0002)

        await relay.publish(stream_id, slow())
        key = relay._keys(stream_id).entries  # pyright: ignore[reportPrivateUsage]
        longest = 0
        while await relay.status(stream_id) == "running":
            longest = max(longest, redis_server.client().xlen(key))
            await asyncio.sleep(0.01)
    assert 50 <= longest <= 50 + 100, "MAXLEN ~ trims whole nodes (100 entries)"


PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from kagura.relay import RedisRelay

    async def main() -> None:
        url, stream_id, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
        llm = sys.argv[4] if len(sys.argv) > 4 else None  # a loopback LLM server's URL
        relay = RedisRelay(url)

        async def words():
            i = 0
            while True:
                yield f"w{i} "
                i += 1
                await asyncio.sleep(0.01)

        if llm is None:
            source = words()
        else:
            from kagura import AgentStream, LLMConfig
            config = LLMConfig(model="openai/x", api_base=llm, api_key="sk-test-0123456789")
            source = AgentStream.from_llm("Tell me a story.", config)
        await asyncio.sleep(max(0.0, start_at - __import__("time").time()))
        from kagura.web import publish_stream
        started = await publish_stream(relay, stream_id, source)
        print(started, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def start_producer(
    url: str, stream_id: str, start_at: float = 0.0, llm: str | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, url, stream_id, str(start_at), *([llm] if llm else [])],
        stdout=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


async def test_a_killed_producer_process_is_reported_lost_within_its_lease(
    redis_server: RedisServer,
) -> None:
    stream_id = new_stream_id()
    process = start_producer(redis_server.url, stream_id)
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.strip() == "True"
        async with RedisRelay(redis_server.url) as relay:
            reader = relay.read(stream_id)
            got = [(await anext(reader)).event for _ in range(5)]
            os.kill(process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            with pytest.raises(ProducerLost):
                await drain(reader)
            waited = time.monotonic() - killed_at
    finally:
        stop(process)
    print(f"\nProducerLost {waited:.2f} s after SIGKILL (lease 4 s)")
    assert got[:5] == [f"w{i} " for i in range(5)]
    assert waited <= 4.0 + 1.5


async def test_two_processes_publishing_one_id_start_one_producer(
    redis_server: RedisServer, loopback: LoopbackServer
) -> None:
    """Both publish an LLM answer under one id at the same moment: one starts, and the
    loopback LLM server gets exactly one request, whose answer both readers see."""
    loopback.enqueue(Script.text("Once upon a time, twice.", chunk_size=4, chunk_delay=0.01))
    loopback.enqueue(Script.text("A second request: wrong."))
    stream_id = new_stream_id()
    start_at = time.time() + 1.5  # both past their imports by then
    processes = [
        start_producer(redis_server.url, stream_id, start_at, loopback.base_url) for _ in range(2)
    ]
    try:
        lines = []
        for process in processes:
            assert process.stdout is not None
            lines.append((await asyncio.to_thread(process.stdout.readline)).strip())
        async with RedisRelay(redis_server.url) as relay:
            got = await events(relay, stream_id)
    finally:
        for process in processes:
            stop(process)
    assert sorted(lines) == ["False", "True"]
    assert "".join(e for e in got if isinstance(e, str)) == "Once upon a time, twice."
    assert len(loopback.requests) == 1


@pytest.mark.parametrize("persistence", ["none", "appendonly"])
async def test_a_restarted_server_gives_typed_errors_not_a_hang(
    tmp_path: Path, persistence: str
) -> None:
    need_redis()
    extra = ("--appendonly", "yes", "--appendfsync", "always") if persistence != "none" else ()
    server = RedisServer(tmp_path, *extra)
    server.start()
    try:
        async with RedisRelay(server.url) as producer, RedisRelay(server.url) as reader:
            stream_id = new_stream_id()
            words = [f"{i} " for i in range(100)]
            await producer.publish(stream_id, items(words, delay=0.02, every=2))
            got: list[str] = []
            outcome: type[BaseException] | None = None
            try:
                async with asyncio.timeout(30):
                    async for entry in reader.read(stream_id):
                        got.append(entry.event)
                        if len(got) == 10:
                            await asyncio.to_thread(server.restart)
            except (StreamNotFound, ProducerLost, RelayUnavailable) as exc:
                outcome = type(exc)
    finally:
        server.stop()
    if persistence == "none":  # everything is gone: the stream, its lease, its producer's hold
        assert outcome is StreamNotFound
        assert got == words[: len(got)]
    else:  # kept on disk: the reader and the producer go on, nothing lost or repeated
        assert outcome is None
        assert got == words


@pytest.mark.parametrize("cluster", [False, True])
async def test_an_unreachable_server_is_relay_unavailable_in_time(cluster: bool) -> None:
    relay = RedisRelay(f"redis://:pw-8a1d@127.0.0.1:{free_port()}/0", timeout=0.5, cluster=cluster)
    started = time.monotonic()
    with pytest.raises(RelayUnavailable) as publishing:
        await relay.publish(new_stream_id(), items(["x"]))
    with pytest.raises(RelayUnavailable) as reading:
        await read_all(relay, new_stream_id())
    for error in (publishing.value, reading.value):
        assert "pw-8a1d" not in str(error)
    await relay.aclose()
    assert time.monotonic() - started < 5


def test_the_url_is_checked_and_its_password_never_shown() -> None:
    relay = RedisRelay("redis://:hunter2-secret-pw@127.0.0.1:1/0")
    assert "hunter2" not in repr(relay)
    assert "[REDACTED]" in repr(relay)
    with pytest.raises(ConfigError):
        RedisRelay("http://example.com")
    for options in ({"prefix": "a{b}"}, {"prefix": ""}, {"max_connections": 0}, {"lease": 0}):
        with pytest.raises(ConfigError):
            RedisRelay("redis://127.0.0.1:1/0", **options)


async def test_a_server_of_the_other_kind_is_a_config_error_that_says_so(
    redis_server: RedisServer, redis_cluster: RedisClusterServers
) -> None:
    async with RedisRelay(redis_server.url, cluster=True, timeout=1.0) as relay:
        with pytest.raises(ConfigError, match="not a Redis Cluster node"):
            await relay.publish(new_stream_id(), items(["x"]))
    async with RedisRelay(redis_cluster.url, timeout=1.0) as relay:
        # Node 0 holds a third of the slots: a stream of another node's is MOVED.
        stream_id = new_stream_id()
        while relay._shard(stream_id) < 6:  # pyright: ignore[reportPrivateUsage]
            stream_id = new_stream_id()
        with pytest.raises(ConfigError, match=r"cluster=True"):
            await relay.publish(stream_id, items(["x"]))
        with pytest.raises(ConfigError, match=r"cluster=True"):
            await read_all(relay, stream_id)


@pytest.mark.parametrize(
    ("url", "match"),
    [("unix:///tmp/redis.sock", "over TCP"), ("redis://127.0.0.1:7000/3", "database 0")],
)
def test_cluster_urls_are_checked(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RedisRelay(url, cluster=True)


async def test_a_stream_whose_slot_moves_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    """A reshard moves a running stream's keys to another node one by one: the producer
    and the reader meet ASK, TRYAGAIN and MOVED, and go on."""
    from redis.crc import key_slot

    need_redis()
    cluster = RedisClusterServers(tmp_path)
    cluster.start()
    try:
        async with (
            RedisRelay(cluster.url, cluster=True) as producer,
            RedisRelay(cluster.url, cluster=True) as reader,
        ):
            streams = [new_stream_id() for _ in range(3)]
            while len({producer._shard(s) for s in streams}) > 1:  # pyright: ignore[reportPrivateUsage]
                streams[1:] = [new_stream_id() for _ in range(2)]
            slot = key_slot(producer._keys(streams[0]).entries.encode())  # pyright: ignore[reportPrivateUsage]
            words = [f"{i} " for i in range(150)]
            for stream_id in streams:
                await producer.publish(stream_id, items(words, delay=0.01))
            tasks = [asyncio.create_task(events(reader, stream_id)) for stream_id in streams]
            await asyncio.sleep(0.3)
            source = cluster.node_of(slot)
            await asyncio.to_thread(cluster.migrate_slot, slot, (source + 1) % 3, pause=0.1)
            assert cluster.node_of(slot) == (source + 1) % 3
            async with asyncio.timeout(30):
                results = await asyncio.gather(*tasks)
            assert results == [words] * len(streams)
            assert await events(reader, streams[0]) == words  # read again, from the new node
    finally:
        cluster.stop()


@pytest.mark.parametrize("where", ["redis", "cluster"])
async def test_a_stop_from_another_process_reaches_the_producer_at_its_next_renewal(
    where: str, request: pytest.FixtureRequest
) -> None:
    """A relay of another process has no task to cancel, only the stop request in Redis,
    which the producer sees when it renews its lease (every third of it)."""
    server = request.getfixturevalue("redis_server" if where == "redis" else "redis_cluster")
    options: dict[str, Any] = {"lease": 0.6, "cluster": where == "cluster"}
    async with (
        RedisRelay(server.url, **options) as producer,
        RedisRelay(server.url, **options) as other,
    ):
        source = Endless()
        stream_id = new_stream_id()
        await producer.publish(stream_id, aiter(source))
        asked = time.monotonic()
        assert await other.stop(stream_id) is True
        async with asyncio.timeout(5):
            await source.closed.wait()
        waited = time.monotonic() - asked
        got = await events(other, stream_id)
        assert got[-1] == Finish("stopped")
        assert await other.status(stream_id) == "ended"
    assert waited <= 0.6 / 3 + 0.5, waited
