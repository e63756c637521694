"""The relay through Redis: delay per chunk across processes, fan-out, and a late reader's cost.

Everything runs against a redis-server this benchmark starts (``benchmarks/_redis_proc.py``:
Debian's, ``make redis``; a free loopback port, no persistence), with
:class:`~kagura.relay.RedisRelay` at its default settings.

Part 1, delay across processes (``SCENARIOS``): a producer process and a reader process
(``benchmarks/_relay_proc.py``), each a fresh Python with asyncio's own loop. The producer's
sources write timestamped chunks on absolute deadlines for ``DURATION_S``; the reader
records, per chunk, the moment it reaches the loop body minus the moment its source
yielded it (``CLOCK_MONOTONIC``, one clock for both processes). Each scenario runs at least
twice (the issue's two: three rounds of both paths, alternating, each path's row the round
with the median p99; ``Scenario.rounds``):

- *direct*: no relay, one loopback TCP connection per reader on which the producer writes
  each chunk as an SSE frame (what an SSE server does for its own streams);
- *relay*: ``relay.publish`` in the producer, ``relay.read`` in the reader, through Redis.

*Added* is the relay's percentile minus the direct one (target: p99 at most
``TARGET_ADDED_P99_MS`` at the issue's two rates, with every chunk delivered). Some
scenarios also run the relay with another setting (``Scenario.variants``). A read that
fails (``ProducerLost`` when a producer's lease lapsed) is counted, not raised, and the
relay's warnings in each process's log are counted by event name. Redis's share comes
from its own counters over the run (from the go signal to the reader's last chunk):
``INFO commandstats`` calls per chunk written by the sources (the commands the relay's
Lua scripts run included), ``used_cpu_user`` + ``used_cpu_sys`` over the wall time, bytes
in and out, and the connections each process holds (``CLIENT LIST`` by client name,
halfway through). The fan-out scenario is one stream read by 1000 readers in the reader
process.

Part 2, a reader joining late: one stream has written ``BACKLOG`` chunks of 4 characters
and waits; a new reader joins in the same process on connections of its own, from the
start or after chunk ``RESUME_AT`` (what a reconnecting browser asks for), and reads up to
the backlog's end. Timed from the call to the backlog's last character; Redis commands
and bytes (in + out) over the join. Side by side with ``resumable-stream`` (the Python
port of Vercel's ``resumable-stream``, the ``bench`` extra), whose producer keeps the
chunks in its own memory and answers a late reader over Redis pub/sub:
``resume_existing_stream(id, skip_characters=...)``. Then the rest of each stream is
written after the late readers left (Redis commands per chunk), and each library is asked
for the stream once more after its end.

``python -m benchmarks bench_relay``; ``KAGURA_BENCH_RELAY_S`` sets the seconds per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import IO, Any

from benchmarks._loopback_proc import REPO, child_env, python, stream_text
from benchmarks._redis_proc import RedisProcess, Stats, redis_server_path
from benchmarks._relay_proc import CHUNK_CHARS, closing
from benchmarks._report import print_table, save_json

DURATION_S = float(os.environ.get("KAGURA_BENCH_RELAY_S", "10"))
TARGET_ADDED_P99_MS = 10.0
DIRECT, RELAY = "direct", "relay"
PRODUCER, READER = "producer", "reader"  # the processes' Redis client names
BY = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True, slots=True)
class Scenario:
    streams: int
    rate: float  # chunks per second per stream
    readers_per_stream: int = 1
    # RedisRelay settings run beside the defaults (each one more relay run).
    variants: tuple[tuple[tuple[str, float], ...], ...] = ()
    # Direct and relay runs, alternating; each path's row is its run with the median p99.
    rounds: int = 1

    @property
    def name(self) -> str:
        if self.readers_per_stream > 1:
            return f"1 stream {BY} {self.rate:g} chunks/s, {self.readers_per_stream} readers"
        return f"{self.streams} streams {BY} {self.rate:g} chunks/s"

    @property
    def chunks(self) -> int:
        return round(self.rate * DURATION_S)


SCENARIOS = (
    # 500 chunks/s in all: below what one producer process can write one XADD at a time.
    Scenario(10, 50.0),
    # 5,000 chunks/s in all, the two shapes of issue 14, in three rounds (on a shared
    # machine one run's p99 moves by several ms); beside the defaults, a longer batch window
    # (fewer XADDs, more delay).
    Scenario(100, 50.0, variants=((("batch_window", 0.05),),), rounds=3),
    Scenario(1000, 5.0, rounds=3),
    # One answer followed by many browsers (a shared link, a broadcast), at a model's pace.
    Scenario(1, 20.0, readers_per_stream=1000),
)

TARGET_SCENARIOS = {SCENARIOS[1].name, SCENARIOS[2].name}  # the rates issue 14 names

BACKLOG = 1000
RESUME_AT = 900
TAIL = 100
CHUNK_GAP_S = 0.004  # between the producer's chunks: one entry each (batch_window is 2 ms)
RESUME_ROUNDS = int(os.environ.get("KAGURA_BENCH_ROUNDS", "7"))
KAGURA, VERCEL = "kagura RedisRelay", "resumable-stream"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# --- part 1: delay across processes ----------------------------------------------------------


class _Child:
    """A ``benchmarks._relay_proc`` process, spoken to in JSON lines; its log kept aside."""

    def __init__(self, role: str, settings: dict[str, Any]) -> None:
        self.role = role
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 -- closed by close()
        self.proc = subprocess.Popen(
            [python(), "-m", "benchmarks._relay_proc", role, json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=REPO,
            env=child_env(),
        )

    def send(self, data: dict[str, Any]) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(data) + "\n")
        stdin.flush()

    def receive(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            self.proc.wait(10)
            self.log.seek(0)
            log = self.log.read()[-3000:]
            raise RuntimeError(f"the {self.role} process ended ({self.proc.returncode}):\n{log}")
        return json.loads(line)

    def close(self) -> Counter[str]:
        """Stop it; the structlog events it logged, by name."""
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.seek(0)
        events = Counter(m[1] for m in _LOGGED.finditer(self.log.read()))
        self.log.close()
        return events


_LOGGED = re.compile(r"\b(relay\.[a-z][a-z_]*)")  # kagura.relay's structlog events


def _label(settings: dict[str, Any]) -> str:
    return ", ".join([RELAY, *(f"{k}={v:g}" for k, v in settings.items())])


def _run(
    server: RedisProcess, scenario: Scenario, mode: str, relay: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One producer process and one reader process; what they and Redis measured."""
    tag = secrets.token_hex(4)
    ids = [f"bench-{tag}-{i}" for i in range(scenario.streams)]
    load = os.getloadavg()[0]
    producer = _Child(
        PRODUCER,
        {
            "mode": mode,
            "url": server.url(PRODUCER),
            "streams": ids,
            "rate": scenario.rate,
            "chunks": scenario.chunks,
            "relay": relay or {},
        },
    )
    reader: _Child | None = None
    logged = Counter[str]()
    try:
        ready = producer.receive()
        reader = _Child(
            READER,
            {
                "mode": mode,
                "url": server.url(READER),
                "port": ready.get("port"),
                "streams": ids,
                "readers_per_stream": scenario.readers_per_stream,
                # Time for every read to fetch its stream and start following it.
                "settle_s": 1.0 + scenario.streams * scenario.readers_per_stream / 500,
                "relay": relay or {},
            },
        )
        reader.receive()
        before = server.stats()
        go_ns = time.monotonic_ns() + 200_000_000
        producer.send({"go": go_ns})
        time.sleep(0.2 + DURATION_S / 2)
        connections = server.clients()
        got = reader.receive()
        after = server.stats()
        producer.send({"stop": True})
        made = producer.receive()
    finally:
        logged += producer.close()
        if reader is not None:
            logged += reader.close()
    server.flush()

    window_s = after.at - go_ns / 1e9
    scheduled = scenario.streams * scenario.chunks
    expected = scheduled * scenario.readers_per_stream
    written = max(1, made["chunks"])  # fewer than scheduled when producers stopped early
    row: dict[str, Any] = {
        "path": DIRECT if mode == DIRECT else _label(relay or {}),
        "mode": mode,
        "settings": relay or {},
        "chunks_scheduled": scheduled,
        "chunks_written": made["chunks"],
        "chunks_received": got["received"],
        "complete": got["received"] == expected and not got["out_of_order"],
        "out_of_order": got["out_of_order"],
        "reads_failed": got["error_count"],
        "read_errors": got["errors"],
        "logged": dict(logged),
        **{k: got.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")},
        "producer_cpu_us_per_chunk": made["cpu_s"] / written * 1e6,
        "reader_cpu_us_per_delivery": got["cpu_s"] / max(1, got["received"]) * 1e6,
        "producer_cpu_pct": made["cpu_s"] / made["wall_s"] * 100,
        "reader_cpu_pct": got["cpu_s"] / got["wall_s"] * 100,
        "source_late_p99_ms": made["source_late_p99_ms"],
        "producer_gc_max_ms": made["gc_max_ms"],
        "reader_gc_max_ms": got["gc_max_ms"],
        "producer_gc_ms_per_s": made["gc_total_ms"] / made["wall_s"],
        "reader_gc_ms_per_s": got["gc_total_ms"] / got["wall_s"],
        "window_s": window_s,
        "load_avg_1_min_before": load,
    }
    if mode == RELAY:
        spent = after - before
        row |= {
            "redis_calls": spent.calls,
            "redis_commands_per_chunk": spent.calls / written,
            "redis_commands": dict(spent.commands.most_common()),
            "redis_cpu_pct": spent.cpu_s / window_s * 100,
            "redis_bytes_per_chunk": (spent.bytes_in + spent.bytes_out) / written,
            "redis_connections": {PRODUCER: connections[PRODUCER], READER: connections[READER]},
        }
    return row


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median p99 (the higher middle one of an even count), with every
    run's p99 and completeness under ``rounds``."""
    median = sorted(runs, key=lambda run: run["p99_ms"])[len(runs) // 2]
    median["rounds"] = [{k: run[k] for k in ("p50_ms", "p99_ms", "complete")} for run in runs]
    return median


def _delay(server: RedisProcess) -> list[dict[str, Any]]:
    scenarios: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        directs: list[dict[str, Any]] = []
        defaults: list[dict[str, Any]] = []
        for _ in range(scenario.rounds):
            directs.append(_run(server, scenario, DIRECT))
            defaults.append(_run(server, scenario, RELAY, {}))
        direct = _median_run(directs)
        runs = [direct]
        for settings in ((), *scenario.variants):
            relay = (
                _median_run(defaults)
                if not settings
                else _run(server, scenario, RELAY, dict(settings))
            )
            relay["added_p50_ms"] = relay["p50_ms"] - direct["p50_ms"]
            relay["added_p99_ms"] = relay["p99_ms"] - direct["p99_ms"]
            runs.append(relay)
            expected = relay["chunks_scheduled"] * scenario.readers_per_stream
            print(
                f"{scenario.name}, {relay['path']}: p99 {relay['p99_ms']:.2f} ms "
                f"(direct {direct['p99_ms']:.2f} ms), {relay['chunks_received']:,} of "
                f"{expected:,} chunks, {relay['reads_failed']} reads failed, "
                f"logged {relay['logged'] or 'nothing'}",
                flush=True,
            )
        default = runs[1]
        scenarios.append(
            {
                "name": scenario.name,
                "streams": scenario.streams,
                "rate_per_s": scenario.rate,
                "readers_per_stream": scenario.readers_per_stream,
                "chunks_per_stream": scenario.chunks,
                "added_p50_ms": default["added_p50_ms"],
                "added_p99_ms": default["added_p99_ms"],
                "rounds": scenario.rounds,
                "pass": all(run["complete"] for run in defaults)
                and default["added_p99_ms"] <= TARGET_ADDED_P99_MS,
                "runs": runs,
            }
        )
    return scenarios


# --- part 2: a reader joining late -----------------------------------------------------------


TEXT = stream_text(BACKLOG + TAIL)  # 4 characters a chunk
CHUNK = 4


class _Source:
    """``BACKLOG`` chunks ``CHUNK_GAP_S`` apart, then (on ``go_on``) ``TAIL`` more."""

    def __init__(self) -> None:
        self.written = 0
        self.go_on = asyncio.Event()
        self.done = asyncio.Event()
        self.backlog = asyncio.Event()

    async def chunks(self) -> AsyncIterator[str]:
        try:
            for i in range(BACKLOG + TAIL):
                if i == BACKLOG:
                    self.backlog.set()
                    await self.go_on.wait()
                yield TEXT[i * CHUNK : (i + 1) * CHUNK]
                self.written = i + 1
                await asyncio.sleep(CHUNK_GAP_S)
        finally:
            self.done.set()


@dataclass(slots=True)
class _Join:
    first_ms: float
    backlog_ms: float
    commands: int
    bytes: int
    correct: bool


def _median_join(joins: list[_Join]) -> dict[str, Any]:
    return {
        "first_chunk_ms": statistics.median(j.first_ms for j in joins),
        "backlog_ms": statistics.median(j.backlog_ms for j in joins),
        "min_backlog_ms": min(j.backlog_ms for j in joins),
        "redis_commands": statistics.median(j.commands for j in joins),
        "redis_bytes": statistics.median(j.bytes for j in joins),
        "correct": all(j.correct for j in joins),
        "rounds": len(joins),
    }


async def _timed_join(
    server: RedisProcess, open_: Callable[[], Any], skip: int
) -> tuple[_Join, Stats]:
    """Read a late join's backlog (from chunk ``skip``); its time, commands and bytes."""
    want = TEXT[skip * CHUNK : BACKLOG * CHUNK]
    before = server.stats()
    t0 = time.perf_counter()
    first = 0.0
    got: list[str] = []
    size = 0
    stream: AsyncIterator[str] = await open_()
    try:
        async for text in stream:
            if not got:
                first = time.perf_counter() - t0
            got.append(text)
            size += len(text)
            if size >= len(want):
                break
        elapsed = time.perf_counter() - t0
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    spent = server.stats() - before
    join = _Join(
        first * 1e3,
        elapsed * 1e3,
        spent.calls,
        spent.bytes_in + spent.bytes_out,
        "".join(got) == want,
    )
    return join, spent


async def _resume(server: RedisProcess) -> dict[str, Any]:
    from kagura.relay import RedisRelay, new_stream_id

    results: dict[str, Any] = {}
    joins: dict[tuple[str, int], list[_Join]] = {}
    commands: dict[tuple[str, int], Stats] = {}

    # kagura: a producer relay and a reader relay, each with its own connections.
    producer = RedisRelay(server.url("resume-producer"))
    reader = RedisRelay(server.url("resume-reader"))
    source = _Source()
    stream_id = new_stream_id()
    await producer.publish(stream_id, source.chunks())
    ids: list[str] = []
    async with closing(reader.read(stream_id)) as entries:
        async for entry in entries:  # the first reader follows it live
            ids.append(entry.id)
            if len(ids) == BACKLOG:
                break
    await source.backlog.wait()
    after_id = ids[RESUME_AT - 1]

    async def kagura_texts(after: str | None) -> AsyncIterator[str]:
        async with closing(reader.read(stream_id, after=after)) as entries:
            async for entry in entries:
                yield entry.event

    async def kagura_open(skip: int) -> AsyncIterator[str]:
        return kagura_texts(after_id if skip else None)

    # resumable-stream: the same, each side a publisher and a subscriber connection.
    vercel: dict[str, Any] = {"version": _version("resumable-stream")}
    contexts: list[Any] = []
    vercel_source = _Source()
    vercel_id = new_stream_id()
    vercel_task: asyncio.Task[int] | None = None
    rs_reader: Any = None
    if vercel["version"] is not None:
        try:
            from resumable_stream import (
                RedisPublisher,
                RedisSubscriber,
                create_resumable_stream_context,
            )

            async def context(name: str) -> Any:
                publisher = RedisPublisher(server.url(f"{name}-pub"))
                subscriber = RedisSubscriber(server.url(f"{name}-sub"))
                await publisher.connect()
                await subscriber.connect()
                contexts.extend([publisher, subscriber])
                return create_resumable_stream_context(
                    publisher=publisher, subscriber=subscriber, key_prefix="bench"
                )

            rs_producer = await context("rs-producer")
            rs_reader = await context("rs-reader")
            first_response = await rs_producer.create_new_resumable_stream(
                vercel_id, vercel_source.chunks
            )

            async def drain() -> int:  # the request that started it reads it to the end
                return len([chunk async for chunk in first_response])

            vercel_task = asyncio.get_running_loop().create_task(drain())
            await vercel_source.backlog.wait()
        except Exception as exc:  # it did not work against this server: say so
            vercel["error"] = f"{type(exc).__name__}: {exc}"

    async def vercel_open(skip: int) -> AsyncIterator[str]:
        stream = await rs_reader.resume_existing_stream(vercel_id, skip * CHUNK or None)
        if not hasattr(stream, "__aiter__"):
            raise RuntimeError(f"resume_existing_stream returned {stream!r}")
        return stream

    cases: list[tuple[str, Callable[[int], Any]]] = [(KAGURA, kagura_open)]
    if vercel["version"] is not None and "error" not in vercel:
        cases.append((VERCEL, vercel_open))
    for _ in range(RESUME_ROUNDS):
        for name, open_ in cases:
            for skip in (0, RESUME_AT):
                join, spent = await _timed_join(server, lambda o=open_, s=skip: o(s), skip)
                joins.setdefault((name, skip), []).append(join)
                commands[(name, skip)] = spent

    # The rest of each stream, written after every late reader left.
    tails: dict[str, dict[str, Any]] = {}
    for name, src, done in (
        (KAGURA, source, None),
        (VERCEL, vercel_source, vercel_task),
    ):
        if name not in dict(cases):
            continue
        before = server.stats()
        src.go_on.set()
        await src.done.wait()
        if done is not None:
            await done
        await asyncio.sleep(0.2)  # the end is written
        spent = server.stats() - before
        tails[name] = {
            "chunks": TAIL,
            "redis_commands_per_chunk": spent.calls / TAIL,
            "redis_commands": dict(spent.commands.most_common()),
            "late_readers_joined_before": 2 * RESUME_ROUNDS,
        }

    # Asked for once more after the end.
    after_end: dict[str, str] = {}
    count = 0
    async with closing(reader.read(stream_id)) as entries:
        async for _ in entries:
            count += 1
    after_end[KAGURA] = f"all {count:,} chunks"
    if VERCEL in dict(cases):
        again = await rs_reader.resume_existing_stream(vercel_id)
        after_end[VERCEL] = (
            "nothing: returns None (the stream is done)"
            if again is None
            else f"returns {type(again).__name__}"
        )

    await producer.aclose()
    await reader.aclose()
    for client in contexts:
        await client.close()
    server.flush()

    for (name, skip), got in joins.items():
        results.setdefault(name, {})["from the start" if skip == 0 else f"after chunk {skip}"] = {
            **_median_join(got),
            "commands_last_round": dict(commands[(name, skip)].commands.most_common()),
        }
    return {
        "backlog_chunks": BACKLOG,
        "resume_at": RESUME_AT,
        "tail_chunks": TAIL,
        "chunk_chars": CHUNK,
        "chunk_gap_s": CHUNK_GAP_S,
        "rounds": RESUME_ROUNDS,
        "resumable_stream": vercel,
        "joins": results,
        "tail": tails,
        "after_end": after_end,
    }


# --- the tables and the JSON -----------------------------------------------------------------


def _relay_defaults() -> dict[str, Any]:
    from kagura.relay import RedisRelay

    return {
        name: p.default
        for name, p in inspect.signature(RedisRelay).parameters.items()
        if isinstance(p.default, int | float) and name != "url"
    }


def _print(result: dict[str, Any]) -> None:
    rows: list[list[Any]] = []
    for s in result["delay"]:
        for r in s["runs"]:
            conns = r.get("redis_connections")
            relay = r["mode"] == RELAY
            rows.append(
                [
                    s["name"],
                    r["path"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["added_p99_ms"] if relay else "",
                    r["producer_cpu_us_per_chunk"],
                    r["reader_cpu_us_per_delivery"],
                    f"{r['producer_cpu_pct']:.0f} %",
                    r["redis_commands_per_chunk"] if relay else "",
                    f"{r['redis_cpu_pct']:.0f} %" if relay else "",
                    f"{conns[PRODUCER]} + {conns[READER]}" if conns else "",
                    "yes" if r["complete"] else f"no ({r['reads_failed']} reads failed)",
                ]
            )
    print_table(
        f"Delay per chunk, producer process to reader process ({DURATION_S:g} s a run)",
        [
            "scenario",
            "path",
            "p50 ms",
            "p99 ms",
            "added p99 ms",
            "producer CPU µs/chunk",
            "reader CPU µs/delivery",
            "producer CPU",
            "Redis cmds/chunk",
            "Redis CPU",
            "Redis conns (prod + read)",
            "every chunk",
        ],
        rows,
    )
    resume = result["resume"]
    print_table(
        f"A reader joining after {resume['backlog_chunks']} chunks (medians of "
        f"{resume['rounds']} rounds)",
        ["library", "from", "first chunk ms", "backlog ms", "Redis commands", "Redis bytes", "ok"],
        [
            [name, case, j["first_chunk_ms"], j["backlog_ms"], j["redis_commands"],
             j["redis_bytes"], j["correct"]]
            for name, cases in resume["joins"].items()
            for case, j in cases.items()
        ],
    )  # fmt: skip
    for name, tail in resume["tail"].items():
        print(
            f"{name}: {tail['redis_commands_per_chunk']:.2f} Redis commands per chunk after "
            f"{tail['late_readers_joined_before']} late readers left; after the end: "
            f"{resume['after_end'][name]}"
        )
    if "error" in resume["resumable_stream"]:
        print(f"resumable-stream did not run: {resume['resumable_stream']['error']}")
    print_table(
        "Targets",
        ["target", "measured", "result"],
        [
            [t["target"], f"{t['measured_ms']:.2f} ms", "pass" if t["pass"] else "FAIL"]
            for t in result["targets"]
        ],
    )


def main() -> None:
    if redis_server_path() is None:
        print("redis-server is not installed (make redis): bench_relay skipped")
        return
    with RedisProcess() as server:
        delay = _delay(server)
        resume = asyncio.run(_resume(server))
        redis_version = server.version
    result = {
        "duration_s": DURATION_S,
        "target_added_p99_ms": TARGET_ADDED_P99_MS,
        "chunk_chars": CHUNK_CHARS,
        "redis_server": redis_version,
        "versions": {
            "redis": _version("redis"),
            "hiredis": _version("hiredis"),
            "resumable-stream": _version("resumable-stream"),
        },
        "relay_settings": _relay_defaults(),
        "delay": delay,
        "resume": resume,
        "targets": [
            {
                "target": f"{s['name']}: p99 added by the relay ≤ {TARGET_ADDED_P99_MS:g} ms"
                + ("" if s["runs"][1]["complete"] else " (and every chunk delivered)"),
                "measured_ms": s["added_p99_ms"],
                "pass": s["pass"],
            }
            for s in delay
            if s["name"] in TARGET_SCENARIOS
        ],
    }
    _print(result)
    save_json("relay", result)


if __name__ == "__main__":
    main()
