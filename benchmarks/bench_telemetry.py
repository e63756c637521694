"""What kagura.telemetry costs per chunk: not instrumented, instrumented without a provider,
and instrumented with the OpenTelemetry SDK, side by side.

Every client streams the same answers through ``call_llm_stream`` from the in-process
``kagura/replay`` model (no network: its variance would hide fractions of a microsecond),
``CHUNKS_PER_SAMPLE`` chunks per sample: answers of 200 chunks (a short reply) and of 2000
(the length of ``bench_transports`` and ``bench_pipeline``). The cost is per call, so per
chunk it shrinks with the answer's length; the per-call cost is given too:

- not instrumented: ``kagura.telemetry.instrument()`` never called (the core checks
  ``kagura.llm.observe.observer is None`` once per call);
- no provider: ``instrument()`` with OpenTelemetry's global providers left unset (no-op);
- SDK: ``instrument()`` with an SDK ``TracerProvider`` (``SimpleSpanProcessor`` into an
  ``InMemorySpanExporter``, emptied between samples, outside the timing) and an SDK
  ``MeterProvider`` with an ``InMemoryMetricReader``: every span and metric recorded.

A second not-instrumented client (*A/A*) measures what two identical clients differ by on
this machine: the median of its rounds' absolute differences to the baseline is the noise
a cost must exceed to be measured. CPU is ``time.process_time()``
per chunk, interleaved rounds (the order rotating), medians; *added* is the median of each
round's difference to the same round's baseline, and *added per call* that times the
answer's chunks. ``python -m benchmarks bench_telemetry``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks._report import print_table, save_json

LENGTHS = (200, 2000)  # chunks per answer
CHUNKS_PER_SAMPLE = 8000
ROUNDS = int(os.environ.get("KAGURA_BENCH_ROUNDS", "7")) * 8  # samples are short: more rounds
BASE, SAME, NO_PROVIDER, SDK = (
    "not instrumented",
    "not instrumented (A/A)",
    "instrument(), no provider",
    "instrument(), SDK provider",
)
TARGET_NO_PROVIDER_US = 0.1  # "no measurable cost": within 0.1 µs per chunk, or the A/A noise
TARGET_SDK_US = 1.0


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("opentelemetry-api", "opentelemetry-sdk")}


def _text(chunks: int) -> str:
    return " ".join(f"w{i}" for i in range(chunks))


def _clients() -> tuple[dict[str, Callable[[], None]], Callable[[], None]]:
    """Per client, what switches it on (outside the timing); and what to do after a sample."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import kagura.telemetry

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def sdk() -> None:
        kagura.telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    clients: dict[str, Callable[[], None]] = {
        BASE: kagura.telemetry.uninstrument,
        SAME: kagura.telemetry.uninstrument,
        NO_PROVIDER: kagura.telemetry.instrument,
        SDK: sdk,
    }
    return clients, spans.clear


async def _stream_all(length: int) -> int:
    from kagura import LLMConfig, call_llm_stream

    config = LLMConfig(model="kagura/replay")
    text = _text(length)
    chunks = 0
    for _ in range(CHUNKS_PER_SAMPLE // length):
        async for _chunk in call_llm_stream("go", config, replay_text=text):
            chunks += 1
    return chunks


async def _cpu_us_per_chunk(length: int) -> float:
    c0 = time.process_time()
    chunks = await _stream_all(length)
    elapsed = time.process_time() - c0
    assert chunks == CHUNKS_PER_SAMPLE, chunks
    return elapsed / chunks * 1e6


async def _run() -> dict[int, dict[str, list[float]]]:
    import kagura.telemetry

    clients, after = _clients()
    samples: dict[int, dict[str, list[float]]] = {}
    try:
        for length in LENGTHS:
            for switch_on in clients.values():  # warm-up
                switch_on()
                await _cpu_us_per_chunk(length)
                after()
            got: dict[str, list[float]] = {name: [] for name in clients}
            names = list(clients)
            for round_no in range(ROUNDS):
                shift = round_no % len(names)  # each client in each position, in turn
                for name in names[shift:] + names[:shift]:
                    clients[name]()
                    got[name].append(await _cpu_us_per_chunk(length))
                    after()
            samples[length] = got
    finally:
        kagura.telemetry.uninstrument()
    return samples


def main() -> None:
    samples = asyncio.run(_run())
    rows: list[list[Any]] = []
    summary: dict[str, dict[str, dict[str, float]]] = {}
    noise: dict[str, float] = {}
    for length, got in samples.items():
        median = {name: statistics.median(v) for name, v in got.items()}
        least = {name: min(v) for name, v in got.items()}
        # What two identical clients differ by in a round, typically: the resolution.
        noise[f"{length} chunks"] = statistics.median(
            abs(a - b) for a, b in zip(got[SAME], got[BASE], strict=True)
        )
        table: dict[str, dict[str, float]] = {}
        for name in got:
            # Paired: each round's sample minus the same round's baseline, then the median
            # (a machine that gets busier or quieter moves both samples of a round).
            added = statistics.median(a - b for a, b in zip(got[name], got[BASE], strict=True))
            table[name] = {
                "median_us": median[name],
                "min_us": least[name],
                "added_us": added,
                "added_min_us": least[name] - least[BASE],
                "added_us_per_call": added * length,
            }
            rows.append(
                [
                    length,
                    name,
                    round(median[name], 3),
                    f"{added:+.3f}",
                    round(least[name], 3),
                    f"{least[name] - least[BASE]:+.3f}",
                    f"{added * length:+.1f}",
                ]
            )
        summary[f"{length} chunks"] = table
    targets: list[dict[str, Any]] = []
    for length in LENGTHS:
        judged, aa = summary[f"{length} chunks"], noise[f"{length} chunks"]
        no_provider, sdk = judged[NO_PROVIDER]["added_us"], judged[SDK]["added_us"]
        targets += [
            {
                "target": f"{length}-chunk answers, no provider: no measurable cost "
                f"(added ≤ {TARGET_NO_PROVIDER_US} µs per chunk, or the A/A noise)",
                "measured": f"{no_provider:+.3f} µs (A/A noise {aa:.3f})",
                "pass": no_provider <= max(TARGET_NO_PROVIDER_US, aa),
            },
            {
                "target": f"{length}-chunk answers, SDK provider: "
                f"added ≤ {TARGET_SDK_US} µs per chunk",
                "measured": f"{sdk:+.3f} µs ({judged[SDK]['added_us_per_call']:+.0f} µs per call)",
                "pass": sdk <= TARGET_SDK_US,
            },
        ]
    print_table(
        f"call_llm_stream from kagura/replay, {CHUNKS_PER_SAMPLE} chunks per sample, "
        f"medians of {ROUNDS} interleaved rounds",
        [
            "answer chunks",
            "client",
            "CPU µs/chunk",
            "added",
            "min µs/chunk",
            "added (min)",
            "added µs per call",
        ],
        rows,
    )
    print_table(
        "Targets",
        ["target", "measured", "result"],
        [[t["target"], t["measured"], "pass" if t["pass"] else "FAIL"] for t in targets],
    )
    save_json(
        "telemetry",
        {
            "opentelemetry": _versions(),
            "lengths": list(LENGTHS),
            "chunks_per_sample": CHUNKS_PER_SAMPLE,
            "rounds": ROUNDS,
            "aa_noise_us": noise,
            "summary": summary,
            "samples": {f"{n} chunks": got for n, got in samples.items()},
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
