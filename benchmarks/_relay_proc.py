"""The producer and reader processes of the relay benchmark (:mod:`benchmarks.bench_relay`).

Each runs as ``python -m benchmarks._relay_proc producer|reader '<json settings>'`` and
talks to the benchmark in JSON lines: settings in argv, commands on stdin, reports on
stdout. Two modes carry the same chunks from one process to the other:

- ``relay``: the producer publishes every stream with :class:`~kagura.relay.RedisRelay`
  (its defaults, or the settings given as ``"relay"``) and the reader follows each with
  ``relay.read``;
- ``direct``: no relay, as an SSE server would send them: the producer listens on a
  loopback port, each reader connection names a stream, and the producer writes every
  chunk of that stream to it as an SSE frame (``data: <chunk>\\n\\n``).

The producer's sources start when the benchmark sends ``{"go": <ns>}``: stream ``i`` of
``n`` writes chunk ``k`` at ``go + (i / n + k) / rate`` seconds (absolute deadlines, the
streams' phases spread evenly over one interval). A chunk's text starts with the
``time.monotonic_ns()`` at which its source yielded it (``CLOCK_MONOTONIC`` is one clock
for every process of the machine); the reader subtracts it from the moment the chunk
reaches its loop body. ``{"stop": true}`` ends the producer, which reports its CPU time.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")

CHUNK_CHARS = 24  # a timestamp, a sequence number, and filler


class GcPauses:
    """The collector's pauses (``gc.callbacks``) while :meth:`record` is on: CPython's
    cyclic collector stops the process, and its pauses grow with what it allocates."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def record(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> dict[str, float]:
        gc.callbacks.remove(self._callback)
        return {
            "gc_max_ms": max(self.pauses_ms, default=0.0),
            "gc_total_ms": sum(self.pauses_ms),
            "gc_collections": len(self.pauses_ms),
        }

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def chunk_text(emitted_ns: int, seq: int) -> str:
    return f"{emitted_ns}:{seq}:".ljust(CHUNK_CHARS, ".")


def parse_chunk(text: str) -> tuple[int, int]:
    """(the ns it was emitted at, its sequence number)."""
    emitted, seq, _ = text.split(":", 2)
    return int(emitted), int(seq)


def summary_ms(delays_ms: array.array[float]) -> dict[str, float]:
    ordered = sorted(delays_ms)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": ordered[-1],
    }


_REPORTS = sys.stdout  # main() points file descriptor 1 (and so any log) at stderr


@contextlib.asynccontextmanager
async def closing(items: AsyncIterator[_T]) -> AsyncGenerator[AsyncIterator[_T]]:
    """``items``, closed on the way out (``relay.read`` is typed as a plain AsyncIterator)."""
    try:
        yield items
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


def _line(data: dict[str, Any]) -> None:
    _REPORTS.write(json.dumps(data) + "\n")
    _REPORTS.flush()


async def _stdin_line() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return json.loads(line) if line.strip() else {"stop": True}


# --- producer --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Schedule:
    streams: int
    rate: float
    chunks: int
    go: asyncio.Future[int]
    late_ns: array.array[int]

    async def source(self, index: int) -> AsyncIterator[str]:
        """Stream ``index``'s chunks, each on its deadline, stamped when yielded."""
        interval_ns = round(1e9 / self.rate)
        first = await self.go + index * interval_ns // self.streams
        for seq in range(self.chunks):
            deadline = first + seq * interval_ns
            wait = deadline - time.monotonic_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            now = time.monotonic_ns()
            self.late_ns.append(now - deadline)
            yield chunk_text(now, seq)


async def _produce(settings: dict[str, Any]) -> None:
    ids: list[str] = settings["streams"]
    loop = asyncio.get_running_loop()
    schedule = _Schedule(
        len(ids), settings["rate"], settings["chunks"], loop.create_future(), array.array("q")
    )
    relay: Any = None
    server: asyncio.Server | None = None
    fanout: list[asyncio.Task[None]] = []
    if settings["mode"] == "relay":
        from kagura.relay import RedisRelay

        relay = RedisRelay(settings["url"], **settings.get("relay", {}))
        for index, stream_id in enumerate(ids):
            if not await relay.publish(stream_id, schedule.source(index)):
                raise RuntimeError(f"stream id {stream_id} is taken")
        _line({"ready": True})
    else:
        subscribers: dict[str, list[asyncio.StreamWriter]] = {sid: [] for sid in ids}

        async def register(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream_id = (await reader.readline()).decode().strip()
            subscribers[stream_id].append(writer)
            writer.write(b"ok\n")

        async def send(index: int, stream_id: str) -> None:
            async for chunk in schedule.source(index):
                frame = f"data: {chunk}\n\n".encode()
                for writer in subscribers[stream_id]:
                    writer.write(frame)
            for writer in subscribers[stream_id]:
                writer.close()

        server = await asyncio.start_server(register, "127.0.0.1", 0, backlog=4096)
        fanout = [loop.create_task(send(i, sid)) for i, sid in enumerate(ids)]
        _line({"ready": True, "port": server.sockets[0].getsockname()[1]})

    command = await _stdin_line()
    pauses = GcPauses()
    pauses.record()
    cpu0, wall0 = cpu_s(), time.monotonic()
    schedule.go.set_result(int(command["go"]))
    await _stdin_line()  # stop: the reader has every chunk
    cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
    collected = pauses.stop()
    late = sorted(schedule.late_ns)
    _line(
        {
            "cpu_s": cpu,
            "wall_s": wall,
            "chunks": len(late),
            "source_late_p99_ms": late[round(0.99 * (len(late) - 1))] / 1e6 if late else 0.0,
            **collected,
        }
    )
    if relay is not None:
        await relay.aclose()
    if server is not None:
        server.close()
    for task in fanout:
        task.cancel()


# --- reader ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    delays_ms: array.array[float]
    received: int = 0
    out_of_order: int = 0

    def arrived(self, text: str, expected_seq: int) -> int:
        now = time.monotonic_ns()
        emitted, seq = parse_chunk(text)
        self.delays_ms.append((now - emitted) / 1e6)
        self.received += 1
        if seq != expected_seq:
            self.out_of_order += 1
        return seq + 1


async def _read(settings: dict[str, Any]) -> None:
    ids: list[str] = settings["streams"]
    per_stream: int = settings["readers_per_stream"]
    tally = _Tally(array.array("d"))
    errors: list[str] = []
    relay: Any = None
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    if settings["mode"] == "relay":
        from kagura.relay import RedisRelay

        relay = RedisRelay(settings["url"], **settings.get("relay", {}))

        async def follow(stream_id: str) -> None:
            seq = 0
            try:
                async with closing(relay.read(stream_id)) as entries:
                    async for entry in entries:
                        seq = tally.arrived(entry.event, seq)
            except Exception as exc:
                errors.append(f"{stream_id}: {type(exc).__name__}: {exc}")

        tasks = [loop.create_task(follow(sid)) for sid in ids for _ in range(per_stream)]
        await asyncio.sleep(settings["settle_s"])  # every read has fetched and is following
    else:
        host, port = "127.0.0.1", int(settings["port"])

        writers: list[asyncio.StreamWriter] = []  # kept: a collected writer closes its socket

        async def connect(stream_id: str) -> asyncio.StreamReader:
            reader, writer = await asyncio.open_connection(host, port)
            writers.append(writer)
            writer.write(stream_id.encode() + b"\n")
            if await reader.readline() != b"ok\n":
                raise RuntimeError("the producer did not register the connection")
            return reader

        async def follow_direct(stream_id: str, reader: asyncio.StreamReader) -> None:
            seq = 0
            try:
                while True:
                    try:
                        frame = await reader.readuntil(b"\n\n")
                    except asyncio.IncompleteReadError:
                        return
                    seq = tally.arrived(frame[6:-2].decode(), seq)
            except Exception as exc:
                errors.append(f"{stream_id}: {type(exc).__name__}: {exc}")

        gate = asyncio.Semaphore(100)  # connections opened at a time

        async def opened(stream_id: str) -> asyncio.StreamReader:
            async with gate:
                return await connect(stream_id)

        pairs = [sid for sid in ids for _ in range(per_stream)]
        readers = await asyncio.gather(*(opened(sid) for sid in pairs))
        tasks = [
            loop.create_task(follow_direct(sid, r)) for sid, r in zip(pairs, readers, strict=True)
        ]

    pauses = GcPauses()
    pauses.record()
    cpu0, wall0 = cpu_s(), time.monotonic()
    _line({"ready": True})
    await asyncio.gather(*tasks)
    cpu, wall = cpu_s() - cpu0, time.monotonic() - wall0
    collected = pauses.stop()
    if relay is not None:
        await relay.aclose()
    _line(
        {
            "received": tally.received,
            "out_of_order": tally.out_of_order,
            "errors": errors[:10],
            "error_count": len(errors),
            "cpu_s": cpu,
            "wall_s": wall,
            **collected,
            **summary_ms(tally.delays_ms),
        }
    )


def main() -> None:
    global _REPORTS
    from benchmarks._loopback_proc import raise_nofile

    # Reports on a copy of stdout; stdout itself (structlog's default) goes to stderr.
    _REPORTS = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    raise_nofile(65536)
    role, settings = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(_produce(settings) if role == "producer" else _read(settings))


if __name__ == "__main__":
    main()
