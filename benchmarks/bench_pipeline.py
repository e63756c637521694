"""What the pipeline adds per chunk over its transport, with the network taken out.

Over HTTP (``bench_transports``) a client's CPU per chunk varies by a factor of
two from stream to stream, with how many chunks each socket read happens to
carry; that spread is larger than the 5 µs this target is about. Here every
client reads the same 2000 events (4-character text deltas of the benchmark
prose, then finish and usage) from an in-process async generator, which gives
the event loop a turn before every event (``burst 1``: how chunks arrive from
a model streaming at its own pace) or before every 16th (``burst 16``: a
backlog read in big pieces):

- ``async for`` loop: what ``call_llm_stream`` does with the events of its
  transport (keep the text deltas);
- bridge: ``from_async_iterable`` → ``text_deltas`` → ``to_async_iterator``,
  what ``from_llm`` adds;
- pipeline: the bridge with ``buffer_sentences`` → ``throttle(0.05)`` →
  ``tee_log`` (to a string buffer), as in ``bench_transports``.

CPU is ``time.process_time()`` per event, interleaved rounds, medians.
``python -m benchmarks bench_pipeline``.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from benchmarks._loopback_proc import stream_text
from benchmarks._report import print_table, save_json

CHUNKS = 2000
ROUNDS = int(os.environ.get("KAGURA_BENCH_ROUNDS", "7")) * 4
BURSTS = (1, 16)
THROTTLE_S = 0.05
LOOP, BRIDGE, PIPELINE = "async for loop (call_llm_stream)", "bridge", "pipeline"


def _clients(burst: int) -> dict[str, Callable[[], AsyncIterator[Any]]]:
    import structlog

    from kagura import operators as kops
    from kagura.events import Finish, StreamEvent, TextDelta, Usage
    from kagura.pipes import from_async_iterable, text_deltas, to_async_iterator

    text = stream_text(CHUNKS)
    events: list[StreamEvent] = [TextDelta(text[i : i + 4]) for i in range(0, len(text), 4)]
    events += [Finish("stop"), Usage(prompt_tokens=5, completion_tokens=CHUNKS, total_tokens=0)]
    logger = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))

    async def transport() -> AsyncIterator[StreamEvent]:
        for i, event in enumerate(events):
            if i % burst == 0:
                await asyncio.sleep(0)  # a socket read: the loop runs other work
            yield event

    async def loop() -> AsyncIterator[str]:
        async for event in transport():
            if isinstance(event, TextDelta):
                yield event.text

    def bridge() -> AsyncIterator[str]:
        return to_async_iterator(from_async_iterable(transport).pipe(text_deltas()))

    def pipeline() -> AsyncIterator[str]:
        return to_async_iterator(
            from_async_iterable(transport).pipe(
                text_deltas(),
                kops.buffer_sentences(),
                kops.throttle(THROTTLE_S),
                kops.tee_log(logger),
            )
        )

    return {LOOP: loop, BRIDGE: bridge, PIPELINE: pipeline}


async def _cpu_us_per_chunk(stream: Callable[[], AsyncIterator[Any]]) -> float:
    c0 = time.process_time()
    async for _ in stream():
        pass
    return (time.process_time() - c0) / CHUNKS * 1e6


async def _run() -> dict[int, dict[str, list[float]]]:
    samples: dict[int, dict[str, list[float]]] = {}
    for burst in BURSTS:
        clients = _clients(burst)
        for stream in clients.values():  # warm-up
            await _cpu_us_per_chunk(stream)
        got: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(ROUNDS):
            for name, stream in clients.items():
                got[name].append(await _cpu_us_per_chunk(stream))
        samples[burst] = got
    return samples


def main() -> None:
    samples = asyncio.run(_run())
    rows: list[list[Any]] = []
    targets: list[dict[str, Any]] = []
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for burst, got in samples.items():
        med = {name: statistics.median(v) for name, v in got.items()}
        least = {name: min(v) for name, v in got.items()}
        summary[f"burst {burst}"] = {
            name: {"median_us": med[name], "min_us": least[name]} for name in got
        }
        for name in got:
            rows.append(
                [
                    burst,
                    name,
                    round(med[name], 2),
                    f"{med[name] - med[LOOP]:+.2f}",
                    round(least[name], 2),
                    f"{least[name] - least[LOOP]:+.2f}",
                ]
            )
        added = med[PIPELINE] - med[LOOP]
        targets.append(
            {
                "target": f"burst {burst}: the pipeline adds ≤ 5 µs per chunk",
                "measured": f"{added:+.2f} µs (minimums {least[PIPELINE] - least[LOOP]:+.2f})",
                "pass": added <= 5.0,
            }
        )
    print_table(
        f"{CHUNKS} events from an in-process source, medians of {ROUNDS} interleaved rounds",
        ["burst", "client", "CPU µs/chunk", "added", "min µs/chunk", "added (min)"],
        rows,
    )
    print_table(
        "Targets",
        ["target", "measured", "result"],
        [[t["target"], t["measured"], "pass" if t["pass"] else "FAIL"] for t in targets],
    )
    save_json(
        "pipeline",
        {
            "chunks": CHUNKS,
            "rounds": ROUNDS,
            "summary": summary,
            "samples": {f"burst {b}": got for b, got in samples.items()},
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
