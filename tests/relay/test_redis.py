"""RedisRelay against a real redis-server: commands per token, connections, keys, faults."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _relay_helpers import drain, events, items, read_all, until_done

from _redis_server import RedisServer, free_port, need_redis
from kagura.errors import ConfigError, ProducerLost, RelayUnavailable, StreamNotFound
from kagura.events import TextDelta
from kagura.relay import RedisRelay, new_stream_id

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
    """Tokens that arrive together (one network read carries several) share one XADD."""
    report: dict[str, float] = {}
    for case, burst, window in (("bursts of 10", 10, 0.002), ("one per 1 ms", 1, 0.005)):
        async with RedisRelay(redis_server.url, batch_window=window) as relay:
            stream_id = new_stream_id()
            tokens = [TextDelta(f"t{i} ") for i in range(1000)]
            redis_server.client().config_resetstat()
            await relay.publish(stream_id, items(tokens, delay=0.001, every=burst))
            await until_done(relay, stream_id)
            calls = command_calls(redis_server)
        ours = sum(n for name, n in calls.items() if name not in ("config|resetstat", "info"))
        report[f"{case}: XADD per token"] = calls.get("xadd", 0) / len(tokens)
        report[f"{case}: commands per token"] = ours / len(tokens)
    print("\n" + "\n".join(f"{name}: {value:.3f}" for name, value in report.items()))
    assert report["bursts of 10: XADD per token"] <= 0.12
    assert report["bursts of 10: commands per token"] <= 0.2
    assert report["one per 1 ms: XADD per token"] <= 0.5


async def test_200_readers_share_a_bounded_number_of_connections(
    redis_server: RedisServer,
) -> None:
    producers = RedisRelay(redis_server.url, max_connections=20)
    readers = RedisRelay(f"{redis_server.url}?client_name=readers", max_connections=4)
    streams = [new_stream_id() for _ in range(100)]
    words = [f"{i} " for i in range(60)]
    async with producers, readers:
        for stream_id in streams:
            await producers.publish(stream_id, items(words, delay=0.01, every=3))
        tasks = [asyncio.create_task(events(readers, stream_id)) for stream_id in streams * 2]
        most = 0
        while not all(task.done() for task in tasks):
            most = max(most, clients_named(redis_server, "readers"))
            await asyncio.sleep(0.02)
        results = [task.result() for task in tasks]
    print(f"\n200 readers of 100 streams: at most {most} connections")
    assert all(result == words for result in results)
    assert 1 <= most <= 4 + 1  # the pool, and the follow loop's own


async def test_a_reader_of_another_stream_wakes_the_follow_loop(
    redis_server: RedisServer,
) -> None:
    """The loop blocks up to a second on the streams it follows (lease 60 s); a reader of a
    new stream must not wait for that block to end."""
    async with RedisRelay(redis_server.url, lease=60) as relay:
        followed, joined = new_stream_id(), new_stream_id()
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


async def test_the_keys_of_a_stream_share_a_hash_tag(redis_server: RedisServer) -> None:
    from redis.crc import key_slot

    stream_id = new_stream_id()
    async with RedisRelay(redis_server.url, prefix="app") as relay:
        await relay.publish(stream_id, items(["x"], delay=0.2))
        keys = sorted(k.decode() for k in redis_server.client().keys(f"app:{{{stream_id}}}:*"))
        assert keys == [f"app:{{{stream_id}}}:{part}" for part in ("entries", "lease", "meta")]
        assert len({key_slot(key.encode()) for key in keys}) == 1
        await read_all(relay, stream_id)
        client = redis_server.client()
        assert not client.exists(f"app:{{{stream_id}}}:lease")
        ttl_ms = client.pttl(f"app:{{{stream_id}}}:entries")
        assert 3_500_000 <= ttl_ms <= 3_600_000, "ttl after the end"
        assert client.get(f"app:{{{stream_id}}}:meta") == b"-", "no owner, and never a value"
        await relay.publish(stream := new_stream_id(), items([]), owner="alice@example.com")
        stored = client.get(f"app:{{{stream}}}:meta")
        assert b"alice" not in stored
        assert len(stored) == 64


async def test_retention_bounds_a_running_streams_length(redis_server: RedisServer) -> None:
    async with RedisRelay(redis_server.url, maxlen=50, batch_window=0) as relay:
        stream_id = new_stream_id()

        async def slow() -> AsyncIterator[str]:
            for i in range(1500):
                yield f"{i}"
                await asyncio.sleep(0.0002)

        await relay.publish(stream_id, slow())
        longest = 0
        while await relay.status(stream_id) == "running":
            longest = max(longest, redis_server.client().xlen(f"kagura:{{{stream_id}}}:entries"))
            await asyncio.sleep(0.01)
    assert 50 <= longest <= 50 + 100, "MAXLEN ~ trims whole nodes (100 entries)"


PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from kagura.relay import RedisRelay

    async def main() -> None:
        url, stream_id, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
        relay = RedisRelay(url)
        counter = relay._client

        async def words():
            await counter.incr(f"started:{stream_id}")
            i = 0
            while True:
                yield f"w{i} "
                i += 1
                await asyncio.sleep(0.01)

        await asyncio.sleep(max(0.0, start_at - __import__("time").time()))
        started = await relay.publish(stream_id, words())
        print(started, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def start_producer(url: str, stream_id: str, start_at: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, url, stream_id, str(start_at)],
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
    redis_server: RedisServer,
) -> None:
    stream_id = new_stream_id()
    start_at = time.time() + 1.5  # both past their imports by then
    processes = [start_producer(redis_server.url, stream_id, start_at) for _ in range(2)]
    try:
        lines = []
        for process in processes:
            assert process.stdout is not None
            lines.append((await asyncio.to_thread(process.stdout.readline)).strip())
    finally:
        for process in processes:
            stop(process)
    assert sorted(lines) == ["False", "True"]
    assert redis_server.client().get(f"started:{stream_id}") == b"1"


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


async def test_an_unreachable_server_is_relay_unavailable_in_time() -> None:
    relay = RedisRelay(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RelayUnavailable):
        await relay.publish(new_stream_id(), items(["x"]))
    with pytest.raises(RelayUnavailable):
        await read_all(relay, new_stream_id())
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
