"""Concurrent streams at a fixed token rate: added delay between chunks, RSS and CPU per stream.

N streams (10, 100, 1000; see ``LEVELS``) start evenly over ``RAMP_S`` against a
paced SSE server in another process (:mod:`benchmarks._paced_server`), which
writes each stream's chunks ``1/rate`` seconds apart on absolute deadlines.
Each run is a fresh client process, so memory freed by an earlier run does not
hide the next run's growth.

- added delay: each gap between two chunks as the consumer sees them, minus the
  scripted interval (p50, p99 over every gap of every stream); "steady" counts
  only the gaps between the moment every stream has received its first chunk
  and the moment the first stream ends, leaving out the storms of connections
  opening and closing (empty when the streams never all run at once).
- clients: ``raw httpx`` is an ``aiter_lines`` + ``json.loads`` loop (the floor),
  ``raw aiohttp`` the same work over ``async for line in resp.content`` (the floor
  of the library kagura's direct transport stands on), ``openai SDK``
  ``AsyncOpenAI.chat.completions.create(stream=True)`` (its own HTTP client), ``kagura``
  ``call_llm_stream`` on the direct transport. ``x httpx`` and ``x aiohttp`` are
  CPU per chunk over that floor's in the same level and setup.
- loop, gc: the client's event loop (asyncio's own, or uvloop) and garbage-collector
  thresholds (see ``GC_THRESHOLDS``).
- TTFT: from a stream's start to its first chunk (connection included).
- RSS per stream: the client's peak ``VmRSS`` during the run minus its ``VmRSS``
  before it (after a warm-up stream), divided by N.
- CPU per chunk: the client's ``process_time`` over the run (connections
  included) divided by the chunks received. ``client CPU`` and ``server CPU``
  are each process's CPU time over the run's wall time: near 100% means that
  process sets the pace. ``load 1 min``: the machine's load average as the run
  started (other processes on a shared machine add CPU time and delay).

``python -m benchmarks bench_concurrency``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import itertools
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from benchmarks._floor import openai_sdk_texts, raw_aiohttp_texts, raw_httpx_texts
from benchmarks._loopback_proc import (
    REPO,
    ServerProcess,
    child_env,
    median,
    percentile,
    python,
    raise_nofile,
    rss_kib,
)
from benchmarks._paced_server import PacedServer
from benchmarks._report import print_table, save_json

RAW, AIOHTTP, SDK, KAGURA = "raw httpx", "raw aiohttp", "openai SDK", "kagura"
CLIENTS = (RAW, AIOHTTP, SDK, KAGURA)

# CPython's default thresholds, and the setting the streaming guide recommends for a
# process holding hundreds of streams: full collections only after 100 (not 10)
# middle-generation ones. A full collection walks every object in the process (about
# 0.5 µs each here); while 1000 streams open, the default runs several, of 40 to
# 130 ms each, and every chunk that arrives meanwhile waits.
# uvloop (the event loop uvicorn uses when it is installed) keeps its handles and
# transports out of Python's object graph, so the same collections are short.
GC_DEFAULT, GC_TUNED = "default", "700/10/100"
GC_THRESHOLDS = {GC_DEFAULT: (700, 10, 10), GC_TUNED: (700, 10, 100)}
ASYNCIO, UVLOOP = "asyncio", "uvloop"
Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Setup:
    """The client process's event loop and garbage-collector thresholds."""

    loop: str = ASYNCIO
    gc: str = GC_DEFAULT


DEFAULT_SETUP = Setup()


@dataclass(frozen=True, slots=True)
class Level:
    streams: int
    rate: float  # chunks per second per stream
    chunks: int  # per stream
    setups: tuple[Setup, ...] = (DEFAULT_SETUP,)
    clients: tuple[str, ...] = CLIENTS


# 1000 streams at 50 chunks/s is 50,000 chunks/s: more than one core can read in
# Python (a bare asyncio Protocol that only counts chunks needs 82% of a core and
# shows a 39 ms p99 here), so that row shows an overloaded client; the 1000 x 5/s
# row has the 100 x 50/s row's total rate.
# The openai SDK needs several hundred µs of CPU per chunk here, so from 100 x 50/s on
# (5,000 chunks/s) it is overloaded too: its rows show how far behind it falls (one
# 1000 x 5/s run takes about 40 s). At 1000 x 50/s it is left out (about 1.5 minutes
# a run to show the same overload again).
NO_SDK = tuple(c for c in CLIENTS if c != SDK)
LEVELS = (
    Level(10, 50.0, 100),
    Level(100, 50.0, 100),
    Level(1000, 50.0, 50, (DEFAULT_SETUP, Setup(UVLOOP)), NO_SDK),
    Level(1000, 5.0, 30, (DEFAULT_SETUP, Setup(gc=GC_TUNED), Setup(UVLOOP))),
)
PROMPT = "Tell me a story."
RAMP_S = 1.0  # the streams start evenly spread over this many seconds


def _opener(kind: str, url: str) -> tuple[Callable[[], AsyncIterator[str]], Closer]:
    """How ``kind`` opens one stream, and how it closes its connections afterwards.

    Every client may open as many connections as there are streams.
    """
    model = "gpt-4o-mini"
    if kind == KAGURA:
        import kagura

        config = kagura.LLMConfig(
            model=f"openai/{model}",
            api_base=url,
            api_key=SecretStr("sk-x"),
            max_retries=0,
            transport="direct",
        )

        async def nothing() -> None:
            pass

        return lambda: kagura.call_llm_stream(PROMPT, config), nothing
    if kind == AIOHTTP:
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=120.0),
        )
        endpoint = url + "/chat/completions"
        return (
            lambda: raw_aiohttp_texts(session, endpoint, model=model, prompt=PROMPT),
            session.close,
        )
    if kind == SDK:
        import openai

        # Its own HTTP client, as users get it: up to 1000 connections (enough here).
        sdk = openai.AsyncOpenAI(base_url=url, api_key="sk-x", max_retries=0, timeout=120.0)

        return lambda: openai_sdk_texts(sdk, model=model, prompt=PROMPT), sdk.close
    import httpx

    pool = httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=120.0)
    endpoint = url + "/chat/completions"
    return lambda: raw_httpx_texts(pool, endpoint, model=model, prompt=PROMPT), pool.aclose


async def _client_run(kind: str, url: str, streams: int, gc_mode: str) -> dict[str, Any]:
    """One run in this (fresh) process: ``streams`` concurrent streams; returns raw figures."""
    gc.set_threshold(*GC_THRESHOLDS[gc_mode])
    raise_nofile(streams * 2 + 256)
    open_stream, close = _opener(kind, url)

    async def one(arrivals: array.array[float], delay: float = 0.0) -> float:
        if delay:
            await asyncio.sleep(delay)  # requests arrive over RAMP_S, not in one instant
        start = time.perf_counter()
        async for _ in open_stream():
            arrivals.append(time.perf_counter())
        return arrivals[0] - start if arrivals else float("nan")

    await one(array.array("d"))  # warm-up: imports, the connection pool, the loop
    await asyncio.sleep(0.2)
    gc.collect()
    rss_before = rss_kib()
    peak = rss_before
    done = asyncio.Event()

    async def sample_rss() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample_rss())
    arrivals = [array.array("d") for _ in range(streams)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ttfts = await asyncio.gather(*(one(a, i * RAMP_S / streams) for i, a in enumerate(arrivals)))
    cpu1, wall1 = time.process_time(), time.perf_counter()
    peak = max(peak, rss_kib())
    done.set()
    await sampler
    await close()
    return {
        "ttft_s": ttfts,
        "arrivals_s": [[t - wall0 for t in arr] for arr in arrivals],
        "chunks": [len(a) for a in arrivals],
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "rss_before_kib": rss_before,
        "rss_peak_kib": peak,
    }


def _run_level(server: ServerProcess, kind: str, level: Level, setup: Setup) -> dict[str, Any]:
    """Run one client process; summarise what it measured."""
    streams, rate = level.streams, level.rate
    interval = 1.0 / rate
    load = os.getloadavg()[0]
    server_cpu0 = server.cpu_seconds()
    proc = subprocess.run(
        [
            python(),
            "-m",
            "benchmarks.bench_concurrency",
            "--client",
            kind,
            "--url",
            server.base_url,
            "--streams",
            str(streams),
            "--gc",
            setup.gc,
            "--loop",
            setup.loop,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(),
        timeout=240,
        check=False,
    )
    server_cpu = server.cpu_seconds() - server_cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} x {streams} failed:\n{proc.stderr[-3000:]}")
    raw = json.loads(proc.stdout)
    arrivals: list[list[float]] = raw["arrivals_s"]
    added_ms = [(b - a - interval) * 1e3 for arr in arrivals for a, b in itertools.pairwise(arr)]
    # Steady state: the gaps that end once every stream has had its first chunk and
    # before the first stream ends (no connection opening or closing in between).
    all_started = max(arr[0] for arr in arrivals)
    first_end = min(arr[-1] for arr in arrivals)
    steady_ms = [
        (b - a - interval) * 1e3
        for arr in arrivals
        for a, b in itertools.pairwise(arr)
        if all_started < b <= first_end
    ]
    total_chunks = sum(raw["chunks"])
    if total_chunks != streams * level.chunks:
        expected = streams * level.chunks
        raise RuntimeError(f"{kind} x {streams}: {total_chunks} chunks, expected {expected}")
    ttft_ms = [t * 1e3 for t in raw["ttft_s"]]
    return {
        "client": kind,
        "loop": setup.loop,
        "gc": setup.gc,
        "streams": streams,
        "rate_per_s": rate,
        "chunks_per_stream": level.chunks,
        "added_delay_p50_ms": percentile(added_ms, 50),
        "added_delay_p99_ms": percentile(added_ms, 99),
        "added_delay_max_ms": max(added_ms),
        "steady_p50_ms": percentile(steady_ms, 50) if steady_ms else None,
        "steady_p99_ms": percentile(steady_ms, 99) if steady_ms else None,
        "steady_gaps": len(steady_ms),
        "steady_window_s": [all_started, first_end],
        "ttft_p50_ms": median(ttft_ms),
        "ttft_p99_ms": percentile(ttft_ms, 99),
        "rss_per_stream_kib": (raw["rss_peak_kib"] - raw["rss_before_kib"]) / streams,
        "cpu_us_per_chunk": raw["cpu_s"] / total_chunks * 1e6,
        "client_cpu_pct": raw["cpu_s"] / raw["wall_s"] * 100,
        "server_cpu_pct": server_cpu / raw["wall_s"] * 100,
        "wall_s": raw["wall_s"],
        "load_avg_1_min_before": load,
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def main() -> None:
    rows: list[dict[str, Any]] = []
    for level in LEVELS:
        with PacedServer(chunks=level.chunks, interval=1.0 / level.rate) as server:
            for setup in level.setups:
                group = [_run_level(server, kind, level, setup) for kind in level.clients]
                floors = {r["client"]: r["cpu_us_per_chunk"] for r in group}
                for r in group:
                    r["ratio_to_httpx"] = r["cpu_us_per_chunk"] / floors[RAW]
                    r["ratio_to_aiohttp"] = r["cpu_us_per_chunk"] / floors[AIOHTTP]
                rows += group
    print_table(
        "Concurrent streams against a loopback server in another process "
        f"(started over {RAMP_S:g} s)",
        [
            "client",
            "loop",
            "gc",
            "streams",
            "chunks/s each",
            "chunks each",
            "added delay p50 ms",
            "p99 ms",
            "steady p99 ms",
            "TTFT p99 ms",
            "RSS/stream KiB",
            "CPU µs/chunk",
            "x httpx",
            "x aiohttp",
            "client CPU %",
            "server CPU %",
            "load 1 min",
        ],
        [
            [
                r["client"],
                r["loop"],
                r["gc"],
                r["streams"],
                r["rate_per_s"],
                r["chunks_per_stream"],
                round(r["added_delay_p50_ms"], 2),
                round(r["added_delay_p99_ms"], 1),
                "n/a" if r["steady_p99_ms"] is None else round(r["steady_p99_ms"], 1),
                round(r["ttft_p99_ms"], 0),
                round(r["rss_per_stream_kib"], 1),
                round(r["cpu_us_per_chunk"], 1),
                f"{r['ratio_to_httpx']:.2f}x",
                f"{r['ratio_to_aiohttp']:.2f}x",
                round(r["client_cpu_pct"], 0),
                round(r["server_cpu_pct"], 0),
                round(r["load_avg_1_min_before"], 1),
            ]
            for r in rows
        ],
    )
    side_by_side = _side_by_side(rows)
    print_table(
        "CPU µs per chunk (p99 added delay), side by side; openai SDK "
        "not run at 1000 x 50/s (see LEVELS)",
        ["streams x chunks/s, loop, gc", *CLIENTS, "kagura x aiohttp"],
        [
            [
                g["config"],
                *(_cell(g["clients"].get(c)) for c in CLIENTS),
                f"{g['kagura_x_aiohttp']:.2f}x",
            ]
            for g in side_by_side
        ],
    )
    targets: list[dict[str, Any]] = []
    for g in side_by_side:
        if g["streams"] >= 100:
            ratio = g["kagura_x_aiohttp"]
            targets.append(
                {
                    "target": f"{g['config']}: kagura CPU/chunk ≤ 1.1x raw aiohttp",
                    "measured": f"{ratio:.2f}x",
                    "pass": ratio <= 1.1,
                }
            )
    for r in rows:
        if r["client"] == KAGURA and r["streams"] == 1000:
            at = f"1000 streams x {r['rate_per_s']:g}/s, {r['loop']}, gc {r['gc']}"
            targets.append(
                {
                    "target": f"{at}: p99 added delay ≤ 10 ms",
                    "measured": f"{r['added_delay_p99_ms']:.1f} ms "
                    f"(steady state {_ms(r['steady_p99_ms'])})",
                    "pass": r["added_delay_p99_ms"] <= 10.0,
                }
            )
            targets.append(
                {
                    "target": f"{at}: ≤ 50 KB RSS per stream",
                    "measured": f"{r['rss_per_stream_kib'] * 1.024:.1f} KB",
                    "pass": r["rss_per_stream_kib"] * 1.024 <= 50.0,
                }
            )
    print_table(
        "Targets",
        ["target", "measured", "result"],
        [[t["target"], t["measured"], "pass" if t["pass"] else "FAIL"] for t in targets],
    )
    save_json(
        "concurrency",
        {"ramp_s": RAMP_S, "runs": rows, "side_by_side": side_by_side, "targets": targets},
    )


def _side_by_side(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per level and setup: each client's CPU per chunk and p99 added delay."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["streams"], r["rate_per_s"], r["loop"], r["gc"])
        group = groups.setdefault(
            key,
            {
                "config": f"{r['streams']} x {r['rate_per_s']:g}/s, {r['loop']}, gc {r['gc']}",
                "streams": r["streams"],
                "clients": {},
            },
        )
        group["clients"][r["client"]] = {
            "cpu_us_per_chunk": r["cpu_us_per_chunk"],
            "added_delay_p99_ms": r["added_delay_p99_ms"],
            "steady_p99_ms": r["steady_p99_ms"],
        }
    for group in groups.values():
        clients = group["clients"]
        group["kagura_x_aiohttp"] = (
            clients[KAGURA]["cpu_us_per_chunk"] / clients[AIOHTTP]["cpu_us_per_chunk"]
        )
    return list(groups.values())


def _cell(figures: dict[str, Any] | None) -> str:
    if figures is None:
        return "not run"
    return f"{figures['cpu_us_per_chunk']:.1f} ({figures['added_delay_p99_ms']:.1f} ms)"


def _client_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--gc", choices=tuple(GC_THRESHOLDS), default=GC_DEFAULT)
    parser.add_argument("--loop", choices=(ASYNCIO, UVLOOP), default=ASYNCIO)
    args = parser.parse_args()
    run = _client_run(args.client, args.url, args.streams, args.gc)
    if args.loop == UVLOOP:
        import uvloop

        result = uvloop.run(run)
    else:
        result = asyncio.run(run)
    print(json.dumps(result))


if __name__ == "__main__":
    import sys

    if "--client" in sys.argv:
        _client_main()
    else:
        main()
