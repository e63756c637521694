"""The benchmarks' own parts work: the paced server serves what it claims, and the clients
compared side by side read the same text. (Timings belong to ``make bench``, not here.)"""

from __future__ import annotations

import asyncio

from benchmarks import bench_concurrency, bench_pipeline, bench_transports
from benchmarks._loopback_proc import ServerProcess, stream_text
from benchmarks._paced_server import PacedServer
from pydantic import SecretStr

import kagura
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
