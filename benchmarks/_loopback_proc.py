"""The loopback server in a separate process, and small helpers shared by the I/O benchmarks.

A :class:`~kagura.testing.loopback.LoopbackServer` in the client's own process
shares its GIL and inflates the client's CPU figures, so the transport,
concurrency and cold-start benchmarks run it in a child process::

    with ServerProcess(chunks=2000) as server:
        LLMConfig(model="openai/gpt-4o-mini", api_base=server.base_url, ...)

The child serves one fixed default script (``chunks`` text chunks of
``chunk_size`` characters, ``chunk_delay`` seconds apart) to every request,
prints its port, and stops when its stdin closes (so it also stops if the
benchmark dies). Run by hand: ``python -m benchmarks._loopback_proc --chunks 2000``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

REPO = Path(__file__).resolve().parent.parent

# Prose with abbreviations, decimals, quotes and questions, so sentence operators have work.
_PROSE = (
    "Once upon a time, a dragon named Ember guarded the valley of St. Aldric. "
    "Every morning at 7 a.m. she counted her treasure: 3.5 tons of gold, a map drawn "
    'by Dr. Okafor, and one very old kettle. "Is it all there?" asked the miller. '
    "It was! The villagers were not afraid of her; why would they be? She had saved "
    "them from the floods of 1842... and she made excellent tea.\n\n"
)


def stream_text(chunks: int, chunk_size: int = 4) -> str:
    """Exactly ``chunks * chunk_size`` characters of prose."""
    size = chunks * chunk_size
    return (_PROSE * (size // len(_PROSE) + 1))[:size]


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted``; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_kib() -> int:
    """This process's resident set size in KiB (``VmRSS`` from ``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank on sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def python() -> str:
    """The interpreter running the benchmarks (the project's venv under ``make bench``)."""
    return sys.executable


def child_env() -> dict[str, str]:
    """Environment for child processes: the repo importable, litellm kept off the network."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env


class ServerProcess:
    """A LoopbackServer in a child process serving one fixed script to every request."""

    module = "benchmarks._loopback_proc"  # what the child runs (``python -m``)

    def __init__(self, *, chunks: int, chunk_size: int = 4, chunk_delay: float = 0.0) -> None:
        self._args = [
            "--chunks",
            str(chunks),
            "--chunk-size",
            str(chunk_size),
            "--chunk-delay",
            repr(chunk_delay),
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (from ``/proc``)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            [python(), "-m", self.module, *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=child_env(),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self._proc.kill()
            raise RuntimeError(f"loopback server process did not start: {line!r}")
        self.port = int(line)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None


def _serve() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args()
    raise_nofile(65536)

    from kagura.testing.loopback import LoopbackServer, Script

    # A deep accept queue: a thousand connections opened within a second overflow
    # asyncio's default of 100, and SYN retransmissions (1 s, 3 s...) would then
    # dominate the time to first token.
    with LoopbackServer(backlog=4096) as server:
        server.default = Script.text(
            stream_text(args.chunks, args.chunk_size),
            chunk_size=args.chunk_size,
            chunk_delay=args.chunk_delay,
        )
        print(server.port, flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin (or dies)


if __name__ == "__main__":
    _serve()
