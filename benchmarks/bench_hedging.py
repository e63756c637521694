"""Hedging: time to first token when one request in ten is late, with and without a hedge.

The loopback server answers every tenth request it receives 3 s late (the others
after 20 ms); the late ones are spread evenly, so a hedge sent after a late request is
itself on time unless it lands on the next tenth. ``REQUESTS`` calls run
``CONCURRENCY`` at a time through the direct transport, once without hedging and once
with ``LLMConfig(hedge_after=HEDGE_AFTER)`` (and the default ``max_hedges=2``). Rows:
TTFT median, p90, p99 and max (from each call's :class:`~kagura.StreamMetrics`), and
the extra requests the hedges cost (requests the server received beyond one per
call). Target: p99 at most 0.5 s with hedging. ``python -m benchmarks bench_hedging``.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from benchmarks._report import print_table, save_json
from kagura import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.streaming import stream_events
from kagura.testing.loopback import LoopbackServer, Script

REQUESTS = 300
CONCURRENCY = 30
LATE_EVERY = 10
LATE_S = 3.0
ON_TIME_S = 0.02
HEDGE_AFTER = 0.3
TARGET_P99_S = 0.5


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _run(server: LoopbackServer, hedge_after: float | None) -> dict[str, Any]:
    server.reset()
    pattern = [
        Script.text("hello world", ttft=LATE_S if (i + 1) % LATE_EVERY == 0 else ON_TIME_S)
        for i in range(REQUESTS * 2)  # enough for every call and every hedge
    ]
    server.enqueue(*pattern)
    config = LLMConfig(
        model="gpt-4o-mini",
        api_base=server.url,
        api_key="sk-bench-0123456789",
        max_retries=0,
        hedge_after=hedge_after,
    )
    gate = asyncio.Semaphore(CONCURRENCY)
    ttfts: list[float] = []

    async def one() -> None:
        async with gate:
            metrics = StreamMetrics()
            async for _ in stream_events("hi", config, metrics=metrics):
                pass
            assert metrics.ttft_s is not None
            ttfts.append(metrics.ttft_s)

    await asyncio.gather(*(one() for _ in range(REQUESTS)))
    await server.wait_idle(LATE_S + 1)
    return {
        "hedge_after_s": hedge_after,
        "ttft_median_s": statistics.median(ttfts),
        "ttft_p90_s": _percentile(ttfts, 0.90),
        "ttft_p99_s": _percentile(ttfts, 0.99),
        "ttft_max_s": max(ttfts),
        "extra_requests": len(server.requests) - REQUESTS,
    }


def main() -> None:
    with LoopbackServer() as server:
        rows = [asyncio.run(_run(server, None)), asyncio.run(_run(server, HEDGE_AFTER))]
    print_table(
        f"TTFT with 1 request in {LATE_EVERY} late by {LATE_S:g} s ({REQUESTS} calls, "
        f"{CONCURRENCY} at a time)",
        ["hedge_after", "median s", "p90 s", "p99 s", "max s", "extra requests"],
        [
            [
                "none" if r["hedge_after_s"] is None else f"{r['hedge_after_s']:g} s",
                r["ttft_median_s"],
                r["ttft_p90_s"],
                r["ttft_p99_s"],
                r["ttft_max_s"],
                r["extra_requests"],
            ]
            for r in rows
        ],
    )
    hedged = rows[1]
    verdict = "pass" if hedged["ttft_p99_s"] <= TARGET_P99_S else "FAIL"
    print(f"\nhedged p99 {hedged['ttft_p99_s']:.3f} s (target <= {TARGET_P99_S} s): {verdict}")
    save_json(
        "hedging",
        {
            "requests": REQUESTS,
            "concurrency": CONCURRENCY,
            "late_every": LATE_EVERY,
            "late_s": LATE_S,
            "target_p99_s": TARGET_P99_S,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
