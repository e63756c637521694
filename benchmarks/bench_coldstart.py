"""Cold start: a fresh Python process to its first token, and ``import kagura``.

Each case is a new process (``subprocess``), timed with ``time.perf_counter``
in the parent from just before it starts to the first byte it writes to stdout
(the child writes one byte at its first token and flushes). The bytecode cache
and the OS file cache are warm (one unmeasured run of each case first), as for
a user's second run after installing; rounds are interleaved and the table
shows medians.

Cases:
- ``call_llm_stream`` on the offline ``kagura/echo`` model (transport auto);
- ``call_llm_stream`` on the direct transport, against a loopback server started
  beforehand in another process;
- the CLI, ``kagura stream "hi" --model kagura/echo --ttft 0`` (the offline model's
  simulated 0.2 s wait before its first token is turned off);
- ``call_llm_stream`` with ``transport="litellm"`` against the same server, for
  contrast (fewer rounds: ``import litellm`` alone takes seconds);
- ``import kagura`` (timed inside the child, so interpreter start-up is not in
  it), next to ``python -c pass`` for the interpreter's own start-up.

Each child also reports whether ``litellm`` got imported.

``python -m benchmarks bench_coldstart``; ``KAGURA_BENCH_ROUNDS`` sets the rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._loopback_proc import ServerProcess, median, python
from benchmarks._report import print_table, save_json

ROUNDS = int(os.environ.get("KAGURA_BENCH_ROUNDS", "7"))
LITELLM_ROUNDS = min(ROUNDS, 3)
IMPORT = "import kagura"

_STREAM = """
import asyncio, sys
async def main():
    import kagura
    config = kagura.LLMConfig({config})
    async for _ in kagura.call_llm_stream("hi there", config):
        sys.stdout.write("T")
        sys.stdout.flush()
        break
asyncio.run(main())
sys.stderr.write("litellm=%s\\n" % ("litellm" in sys.modules))
"""

_IMPORT = """
import sys, time
t = time.perf_counter()
import kagura
sys.stdout.write("%.6f\\n" % (time.perf_counter() - t))
sys.stderr.write("litellm=%s\\n" % ("litellm" in sys.modules))
"""


@dataclass(frozen=True, slots=True)
class Run:
    first_byte_s: float
    total_s: float
    stdout: str
    litellm_imported: bool | None  # None: the child does not say (the CLI)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users have a bytecode cache
    env.pop("KAGURA_MODEL", None)
    env.pop("KAGURA_API_BASE", None)
    env["PYTHONUNBUFFERED"] = "0"
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env


def timed(cmd: list[str]) -> Run:
    """Start ``cmd``; time to its first stdout byte and to its exit."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd="/", bufsize=0
    )
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    t1 = time.perf_counter()
    rest, err = proc.communicate(timeout=120)
    t2 = time.perf_counter()
    if proc.returncode != 0 or not first:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    reported = [line for line in err.decode().splitlines() if line.startswith("litellm=")]
    litellm = reported[-1] == "litellm=True" if reported else None
    return Run(t1 - t0, t2 - t0, (first + rest).decode(errors="replace"), litellm)


def _value(name: str, run: Run) -> float:
    """What a case measures: time to the first byte, or the import time the child printed."""
    return float(run.stdout) if name == IMPORT else run.first_byte_s


def _cli() -> list[str]:
    script = Path(python()).parent / "kagura"
    base = [str(script)] if script.exists() else [python(), "-m", "kagura.cli"]
    return [*base, "stream", "hi there", "--model", "kagura/echo"]


def _cases(base_url: str) -> dict[str, Callable[[], Run]]:
    def stream(config: str) -> Callable[[], Run]:
        code = _STREAM.format(config=config)
        return lambda: timed([python(), "-c", code])

    remote = f'model="openai/gpt-4o-mini", api_base="{base_url}", api_key="sk-x", max_retries=0'
    cli = _cli()
    try:  # the offline model's simulated time to first token is the CLI's --ttft
        timed([*cli, "--ttft", "0"])
        cli = [*cli, "--ttft", "0"]
    except RuntimeError:
        pass
    return {
        "offline kagura/echo, transport auto": stream('model="kagura/echo"'),
        "direct transport, loopback server": stream(remote + ', transport="direct"'),
        "CLI " + " ".join(cli[1:]): lambda: timed(cli),
        "litellm transport, loopback server": stream(remote + ', transport="litellm"'),
        IMPORT: lambda: timed([python(), "-c", _IMPORT]),
        "python -c pass (interpreter start-up)": lambda: timed(
            [python(), "-c", "import sys; sys.stdout.write('.')"]
        ),
    }


def main() -> None:
    with ServerProcess(chunks=20) as server:
        cases = _cases(server.base_url)
        for case in cases.values():  # warm the bytecode and file caches
            case()
        runs: dict[str, list[Run]] = {name: [] for name in cases}
        for i in range(ROUNDS):
            for name, case in cases.items():
                if "litellm" in name and i >= LITELLM_ROUNDS:
                    continue
                runs[name].append(case())

    def summary(name: str) -> dict[str, Any]:
        got = runs[name]
        values = [_value(name, r) for r in got]
        return {
            "median_s": median(values),
            "min_s": min(values),
            "process_total_s": median([r.total_s for r in got]),
            "runs": len(got),
            "litellm_imported": got[-1].litellm_imported,
        }

    results = {name: summary(name) for name in runs}
    print_table(
        f"Fresh process to first token (medians of {ROUNDS} runs, litellm {LITELLM_ROUNDS})",
        ["case", "first token ms", "min ms", "process exits ms", "imports litellm"],
        [
            [
                name,
                round(r["median_s"] * 1e3, 0),
                round(r["min_s"] * 1e3, 0),
                round(r["process_total_s"] * 1e3, 0),
                {True: "yes", False: "no", None: "n/a"}[r["litellm_imported"]],
            ]
            for name, r in results.items()
        ],
    )
    print("\n(import kagura: time inside the process, interpreter start-up not included)")
    names = list(results)
    targets = [
        (f"{name}: ≤ 500 ms", results[name]["median_s"] * 1e3, 500.0)
        for name in names[:3]  # offline, direct, CLI
    ] + [("import kagura ≤ 150 ms", results[IMPORT]["median_s"] * 1e3, 150.0)]
    print_table(
        "Targets",
        ["target", "measured ms", "result"],
        [[t, round(v, 0), "pass" if v <= limit else "FAIL"] for t, v, limit in targets],
    )
    save_json(
        "coldstart",
        {
            "rounds": ROUNDS,
            "litellm_rounds": LITELLM_ROUNDS,
            "python": sys.executable,
            "cases": results,
            "samples_s": {name: [_value(name, r) for r in got] for name, got in runs.items()},
            "targets": [
                {"target": t, "measured_ms": v, "pass": v <= limit} for t, v, limit in targets
            ],
        },
    )


if __name__ == "__main__":
    main()
