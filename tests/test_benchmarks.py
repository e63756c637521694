"""The benchmarks' own parts work: the paced server serves what it claims, the clients
compared side by side read the same text, and the relay benchmark's processes and Redis
readings count what they claim. (Timings belong to ``make bench``, not here.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from benchmarks import bench_concurrency, bench_pipeline, bench_relay, bench_transports
from benchmarks._loopback_proc import ServerProcess, stream_text
from benchmarks._paced_server import PacedServer
from benchmarks._redis_proc import RedisProcess
from pydantic import SecretStr

import kagura
from _redis_server import need_redis
from kagura.events import Finish, TextDelta, Usage


async def test_paced_server_streams_the_benchmark_text_with_usage_and_finish() -> None:
    with PacedServer(chunks=5, interval=0.01) as server:
        config = kagura.LLMConfig(
            model="openai/gpt-4o-mini",
            api_base=server.base_url,
            api_key=SecretStr("sk-x"),
            max_retries=0,
        )
        async with asyncio.timeout(10):
            events = [e async for e in kagura.stream_events("hi", config)]
            again = "".join([t async for t in kagura.call_llm_stream("hi", config)])
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == [stream_text(5)[i : i + 4] for i in range(0, 20, 4)]
    assert again == stream_text(5)  # a second request on the same (kept-alive) connection
    usage = next(e for e in events if isinstance(e, Usage))
    assert (usage.completion_tokens, usage.estimated) == (5, False)
    assert any(isinstance(e, Finish) and e.reason == "stop" for e in events)


async def test_concurrency_clients_receive_every_chunk_of_every_stream() -> None:
    with PacedServer(chunks=3, interval=0.01) as server:
        for kind in bench_concurrency.CLIENTS:
            async with asyncio.timeout(20):
                got = await bench_concurrency._client_run(  # pyright: ignore[reportPrivateUsage]
                    kind, server.base_url, 4, bench_concurrency.GC_DEFAULT
                )
            assert got["chunks"] == [3, 3, 3, 3], kind
            assert all(len(a) == 3 for a in got["arrivals_s"]), kind


async def test_pipeline_benchmark_clients_yield_the_same_text() -> None:
    clients = bench_pipeline._clients(burst=3)  # pyright: ignore[reportPrivateUsage]
    texts: dict[str, str] = {}
    async with asyncio.timeout(20):
        for name, stream in clients.items():
            texts[name] = "".join([t async for t in stream()])
    assert set(texts.values()) == {stream_text(bench_pipeline.CHUNKS)}


async def test_transport_benchmark_clients_without_litellm_yield_the_same_text() -> None:
    with ServerProcess(chunks=5) as server:
        clients, close = bench_transports._clients(server.base_url)  # pyright: ignore[reportPrivateUsage]
        texts: dict[str, str] = {}
        try:
            async with asyncio.timeout(20):
                for name, stream in clients.items():
                    if "litellm" not in name and "pipeline" not in name:
                        texts[name] = "".join([t async for t in stream()])
        finally:
            await close()
    assert bench_transports.AIOHTTP_FLOOR in texts
    assert set(texts.values()) == {stream_text(5)}, texts


# --- bench_relay: its redis-server, its two processes, the late reader -----------------------


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    need_redis()
    with RedisProcess() as server:
        yield server


def test_redis_readings_count_only_the_traffic_in_between(redis_process: RedisProcess) -> None:
    import redis

    client = redis.Redis(port=redis_process.port, client_name="someone")
    client.ping()  # connected (and named) before the first reading
    before = redis_process.stats()
    for i in range(3):
        client.set(f"k{i}", "x" * 100)
    assert redis_process.clients() == {"someone": 1}
    spent = redis_process.stats() - before
    client.close()
    assert spent.commands == {"set": 3}  # neither INFO nor CLIENT LIST
    request = len(b"*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$100\r\n" + b"x" * 100 + b"\r\n")
    assert (spent.bytes_in, spent.bytes_out) == (3 * request, 3 * len(b"+OK\r\n"))


@pytest.mark.parametrize("mode", [bench_relay.DIRECT, bench_relay.RELAY])
def test_relay_benchmark_processes_deliver_every_chunk_in_order(
    redis_process: RedisProcess, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_relay, "DURATION_S", 0.3)
    scenario = bench_relay.Scenario(3, 20.0, readers_per_stream=2)
    row = bench_relay._run(redis_process, scenario, mode)  # pyright: ignore[reportPrivateUsage]
    assert (row["chunks_scheduled"], row["chunks_written"]) == (3 * 6, 3 * 6)
    assert row["chunks_received"] == 3 * 6 * 2
    assert row["complete"]
    assert (row["reads_failed"], row["logged"]) == (0, {})
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    if mode == bench_relay.RELAY:
        assert row["redis_commands"]["xadd"] >= 1
        assert row["redis_commands_per_chunk"] > 0
        assert row["redis_connections"]["producer"] >= 1
        assert row["redis_connections"]["reader"] >= 1
    else:
        assert "redis_commands" not in row


async def test_late_readers_read_the_backlog_in_both_libraries(
    redis_process: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"BACKLOG": 40, "RESUME_AT": 30, "TAIL": 5, "RESUME_ROUNDS": 1}.items():
        monkeypatch.setattr(bench_relay, name, value)
    async with asyncio.timeout(60):
        result = await bench_relay._resume(redis_process)  # pyright: ignore[reportPrivateUsage]
    joins = result["joins"]
    libraries = [bench_relay.KAGURA]
    if result["resumable_stream"]["version"] is not None:
        assert "error" not in result["resumable_stream"]
        libraries.append(bench_relay.VERCEL)
    assert sorted(joins) == sorted(libraries)
    for name in libraries:
        assert set(joins[name]) == {"from the start", "after chunk 30"}
        assert all(j["correct"] and j["redis_commands"] > 0 for j in joins[name].values())
    assert result["after_end"][bench_relay.KAGURA] == "all 45 chunks"
