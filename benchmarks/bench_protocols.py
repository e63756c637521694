"""The three wire protocols side by side: OpenAI Chat Completions, Anthropic Messages, Gemini.

One loopback server in a child process (``benchmarks/_loopback_proc.py``) answers every
protocol with the same script, so each client reads the same text in the same number
of chunks; only the framing differs. Each protocol is read three ways:

- kagura ``call_llm_stream`` on its direct transport (``openai/…``, ``anthropic/…``,
  ``gemini/…`` with ``transport="direct"``);
- kagura ``call_llm_stream`` with ``transport="litellm"`` (``api_base`` the server's
  root: litellm builds ``{api_base}/v1/messages`` and
  ``{api_base}/models/<m>:streamGenerateContent?alt=sse`` from it);
- the provider's official SDK, as a bench-only comparator when it is installed (the
  ``bench`` extra): ``openai`` (``chat.completions.create(stream=True)``), ``anthropic``
  (``messages.create(stream=True)``, the ``text_delta`` events) and ``google-genai``
  (``aio.models.generate_content_stream``, each chunk's ``text``), each pointed at the
  server with its own base-URL setting.

Part 1, CPU per chunk: every client drains the same ``CHUNKS``-chunk stream in one
process; CPU is ``time.process_time()`` over the whole stream, request included, per
chunk sent, measured by :func:`benchmarks.bench_transports.measure` (which also charges
the ``SETTLE_S`` after the stream to the client). One warm-up stream each, then
``ROUNDS`` interleaved rounds, the cheap clients ``CHEAP_REPEATS`` times a round and
litellm's once; medians and minimums. Ratios: to kagura's direct OpenAI path (target:
each direct protocol at most 1.2x, on medians and on minimums) and litellm's cost on the
same protocol divided by the row's.

Part 2, a fresh process to its first token (:func:`benchmarks.bench_coldstart.timed`:
from just before the process starts to the first byte it writes, at its first token;
caches warm, one unmeasured run first, rounds interleaved, medians): kagura's direct
``anthropic/…`` and ``gemini/…`` (target at most 500 ms), beside the same model through
litellm (``LITELLM_ROUNDS`` runs: its import takes seconds), the SDKs, and kagura's direct
``openai/…`` for reference.

``python -m benchmarks bench_protocols``; ``KAGURA_BENCH_ROUNDS`` sets the rounds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

from pydantic import SecretStr

from benchmarks._floor import openai_sdk_texts
from benchmarks._loopback_proc import ServerProcess, median, python
from benchmarks._report import print_table, save_json
from benchmarks.bench_coldstart import _STREAM, Run, timed
from benchmarks.bench_transports import CHEAP_REPEATS, CHUNKS, Sample, Stream, measure

ROUNDS = int(os.environ.get("KAGURA_BENCH_ROUNDS", "7"))
LITELLM_ROUNDS = min(ROUNDS, 3)  # cold start through litellm: seconds a run
PROMPT = "Tell me a story."
KEY = "sk-bench-0123456789"
# Real model names, so that litellm takes the path it takes for them (its model map).
MODELS = {
    "OpenAI": "openai/gpt-4o-mini",
    "Anthropic": "anthropic/claude-haiku-4-5",
    "Gemini": "gemini/gemini-2.5-flash",
}
SDKS = {"OpenAI": "openai", "Anthropic": "anthropic", "Gemini": "google-genai"}
DIRECT, LITELLM, SDK = "kagura direct", "kagura via litellm", "SDK"
CPU_TARGET = 1.2  # each direct protocol's CPU per chunk, times the OpenAI direct path's
FIRST_TOKEN_TARGET_MS = 500.0


@dataclass(frozen=True, slots=True)
class Row:
    protocol: str
    client: str  # DIRECT, LITELLM or SDK

    @property
    def name(self) -> str:
        label = f"{SDKS[self.protocol]} SDK" if self.client == SDK else self.client
        return f"{self.protocol} · {label}"


ROWS = [Row(p, c) for p in MODELS for c in (DIRECT, LITELLM, SDK)]
REFERENCE = Row("OpenAI", DIRECT)


def _installed(protocol: str) -> str | None:
    """The SDK's version, or ``None`` when it is not installed."""
    try:
        return metadata.version(SDKS[protocol])
    except metadata.PackageNotFoundError:
        return None


def _bare(model: str) -> str:
    return model.split("/", 1)[1]


def _base(root: str, protocol: str) -> str:
    """The ``api_base`` each protocol's clients are given (OpenAI's carries ``/v1``)."""
    return f"{root}/v1" if protocol == "OpenAI" else root


# --- part 1: CPU per chunk -------------------------------------------------------------------


def _clients(root: str) -> tuple[dict[Row, Stream], Callable[[], Awaitable[None]]]:
    """A stream factory for every row whose client is installed, and a closer."""
    import kagura

    clients: dict[Row, Stream] = {}
    closers: list[Callable[[], Awaitable[Any]]] = []
    for protocol, model in MODELS.items():
        direct = kagura.LLMConfig(
            model=model,
            api_base=_base(root, protocol),
            api_key=SecretStr(KEY),
            max_retries=0,
            enable_cache=False,
            transport="direct",
        )
        via_litellm = direct.model_copy(update={"transport": "litellm"})
        clients[Row(protocol, DIRECT)] = lambda c=direct: kagura.call_llm_stream(PROMPT, c)
        clients[Row(protocol, LITELLM)] = lambda c=via_litellm: kagura.call_llm_stream(PROMPT, c)

    if _installed("OpenAI"):
        import openai

        oai = openai.AsyncOpenAI(base_url=f"{root}/v1", api_key=KEY, max_retries=0)
        closers.append(oai.close)
        clients[Row("OpenAI", SDK)] = lambda: openai_sdk_texts(
            oai, model=_bare(MODELS["OpenAI"]), prompt=PROMPT
        )
    if _installed("Anthropic"):
        import anthropic

        claude = anthropic.AsyncAnthropic(base_url=root, api_key=KEY, max_retries=0)
        closers.append(claude.close)

        async def anthropic_sdk() -> AsyncIterator[str]:
            stream = await claude.messages.create(
                model=_bare(MODELS["Anthropic"]),
                max_tokens=1024,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
            async with stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text

        clients[Row("Anthropic", SDK)] = anthropic_sdk
    if _installed("Gemini"):
        from google import genai
        from google.genai import types

        gemini = genai.Client(
            api_key=KEY, http_options=types.HttpOptions(base_url=root, api_version="v1beta")
        )
        closers.append(gemini.aio.aclose)

        async def genai_sdk() -> AsyncIterator[str]:
            stream = await gemini.aio.models.generate_content_stream(
                model=_bare(MODELS["Gemini"]), contents=PROMPT
            )
            async for chunk in stream:
                if chunk.text:  # the last chunk carries usage and the finish reason only
                    yield chunk.text

        clients[Row("Gemini", SDK)] = genai_sdk

    async def close() -> None:
        for closer in closers:
            await closer()
        from kagura.llm.transports._litellm import load_litellm

        await load_litellm().close_litellm_async_clients()

    return {row: clients[row] for row in ROWS if row in clients}, close


async def _cpu(root: str) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    t0 = time.perf_counter()
    import litellm  # noqa: F401 -- timed here so no client round pays for it

    litellm_import_s = time.perf_counter() - t0
    # litellm logs a warning on every Gemini call (sampling parameters for models it
    # does not know); the run's output is the tables.
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    clients, close = _clients(root)
    first: dict[Row, Sample] = {}
    samples: dict[Row, list[Sample]] = {row: [] for row in clients}
    try:
        for row, stream in clients.items():  # warm-up: each client's first call in the process
            first[row] = await measure(stream, CHUNKS)
        for _ in range(ROUNDS):
            for row, stream in clients.items():
                for _ in range(1 if row.client == LITELLM else CHEAP_REPEATS):
                    samples[row].append(await measure(stream, CHUNKS))
    finally:
        await close()
    for row, got in samples.items():
        counts = {s.chunks for s in got}
        if counts != {CHUNKS}:
            raise RuntimeError(f"{row.name}: expected {CHUNKS} chunks per stream, got {counts}")
    return {"litellm_import_s": litellm_import_s, "first": first, "samples": samples}


# --- part 2: a fresh process to its first token ----------------------------------------------

_ANTHROPIC_SDK = """
import asyncio, sys
async def main():
    import anthropic
    client = anthropic.AsyncAnthropic(base_url={base!r}, api_key={key!r}, max_retries=0)
    stream = await client.messages.create(
        model={model!r}, max_tokens=1024, stream=True,
        messages=[{{"role": "user", "content": "hi there"}}],
    )
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            sys.stdout.write("T")
            sys.stdout.flush()
            break
    await stream.close()
asyncio.run(main())
sys.stderr.write("litellm=%s\\n" % ("litellm" in sys.modules))
"""

_GENAI_SDK = """
import asyncio, sys
async def main():
    from google import genai
    from google.genai import types
    client = genai.Client(
        api_key={key!r}, http_options=types.HttpOptions(base_url={base!r}, api_version="v1beta")
    )
    async for chunk in await client.aio.models.generate_content_stream(
        model={model!r}, contents="hi there"
    ):
        if chunk.text:
            sys.stdout.write("T")
            sys.stdout.flush()
            break
    await client.aio.aclose()
asyncio.run(main())
sys.stderr.write("litellm=%s\\n" % ("litellm" in sys.modules))
"""

_SDK_SCRIPTS = {"Anthropic": _ANTHROPIC_SDK, "Gemini": _GENAI_SDK}
COLD_ROWS = [Row("OpenAI", DIRECT)] + [
    Row(p, c) for p in ("Anthropic", "Gemini") for c in (DIRECT, LITELLM, SDK)
]


def _cold_cases(root: str) -> dict[Row, Callable[[], Run]]:
    cases: dict[Row, Callable[[], Run]] = {}
    for row in COLD_ROWS:
        model, base = MODELS[row.protocol], _base(root, row.protocol)
        if row.client == SDK:
            if not _installed(row.protocol):
                continue
            code = _SDK_SCRIPTS[row.protocol].format(base=base, key=KEY, model=_bare(model))
        else:
            transport = "direct" if row.client == DIRECT else "litellm"
            code = _STREAM.format(
                config=f'model="{model}", api_base="{base}", api_key="{KEY}", '
                f'max_retries=0, transport="{transport}"'
            )
        cases[row] = lambda code=code: timed([python(), "-c", code])
    return cases


def _coldstart(root: str) -> dict[Row, list[Run]]:
    cases = _cold_cases(root)
    for case in cases.values():  # warm the bytecode and file caches
        case()
    runs: dict[Row, list[Run]] = {row: [] for row in cases}
    for i in range(ROUNDS):
        for row, case in cases.items():
            if row.client == LITELLM and i >= LITELLM_ROUNDS:
                continue
            runs[row].append(case())
    return runs


# --- the tables and the JSON -----------------------------------------------------------------


def _cpu_targets(cpu: dict[Row, float], least: dict[Row, float]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for protocol in ("Anthropic", "Gemini"):
        row = Row(protocol, DIRECT)
        ratio, ratio_min = cpu[row] / cpu[REFERENCE], least[row] / least[REFERENCE]
        targets.append(
            {
                "target": f"{protocol} direct: CPU per chunk ≤ {CPU_TARGET}x OpenAI direct",
                "median": f"{ratio:.2f}x",
                "pass": ratio <= CPU_TARGET,
                "minimum": f"{ratio_min:.2f}x",
                "pass_on_minimum": ratio_min <= CPU_TARGET,
            }
        )
    return targets


def main() -> None:
    with ServerProcess(chunks=CHUNKS) as server:
        root = f"http://127.0.0.1:{server.port}"
        result = asyncio.run(_cpu(root))
    with ServerProcess(chunks=20) as server:
        cold_runs = _coldstart(f"http://127.0.0.1:{server.port}")

    samples: dict[Row, list[Sample]] = result["samples"]
    first: dict[Row, Sample] = result["first"]
    cpu = {row: median([s.cpu_us_per_chunk for s in got]) for row, got in samples.items()}
    least = {row: min(s.cpu_us_per_chunk for s in got) for row, got in samples.items()}
    wall = {row: median([s.wall_ms for s in got]) for row, got in samples.items()}

    def litellm_over(row: Row) -> float:
        return cpu[Row(row.protocol, LITELLM)] / cpu[row]

    missing = [row for row in ROWS if row not in samples]
    print_table(
        f"CPU per chunk, one {CHUNKS}-chunk stream per protocol, medians of {ROUNDS} "
        "interleaved rounds",
        [
            "protocol · client",
            "CPU µs/chunk",
            "min CPU µs/chunk",
            "x OpenAI direct",
            "litellm ÷ this",
            "stream ms",
            "1st call: CPU µs/chunk",
        ],
        [
            [
                row.name,
                round(cpu[row], 1),
                round(least[row], 1),
                f"{cpu[row] / cpu[REFERENCE]:.2f}x",
                f"{litellm_over(row):.1f}x",
                round(wall[row], 0),
                round(first[row].cpu_us_per_chunk, 1),
            ]
            for row in samples
        ]
        + [[row.name, "not installed", "", "", "", "", ""] for row in missing],
    )
    print(f"\nimport litellm: {result['litellm_import_s']:.2f} s (not in any row)")

    def cold_summary(got: list[Run]) -> dict[str, Any]:
        values = [r.first_byte_s for r in got]
        return {
            "median_s": median(values),
            "min_s": min(values),
            "process_total_s": median([r.total_s for r in got]),
            "runs": len(got),
            "litellm_imported": got[-1].litellm_imported,
        }

    cold = {row: cold_summary(got) for row, got in cold_runs.items()}
    cold_missing = [row for row in COLD_ROWS if row not in cold]
    print_table(
        f"Fresh process to first token (medians of {ROUNDS} runs, litellm {LITELLM_ROUNDS})",
        ["protocol · client", "model", "first token ms", "min ms", "process exits ms", "litellm"],
        [
            [
                row.name,
                MODELS[row.protocol],
                round(c["median_s"] * 1e3, 0),
                round(c["min_s"] * 1e3, 0),
                round(c["process_total_s"] * 1e3, 0),
                {True: "imported", False: "no", None: "n/a"}[c["litellm_imported"]],
            ]
            for row, c in cold.items()
        ]
        + [[row.name, MODELS[row.protocol], "not installed", "", "", ""] for row in cold_missing],
    )

    targets = _cpu_targets(cpu, least)
    for protocol in ("Anthropic", "Gemini"):
        ms = cold[Row(protocol, DIRECT)]["median_s"] * 1e3
        targets.append(
            {
                "target": f"{MODELS[protocol]} direct: fresh process to first token ≤ "
                f"{FIRST_TOKEN_TARGET_MS:.0f} ms",
                "measured_ms": ms,
                "pass": ms <= FIRST_TOKEN_TARGET_MS,
            }
        )
    print_table(
        "Targets",
        ["target", "measured", "result"],
        [
            [
                t["target"],
                f"{t['median']} (minimums {t['minimum']})"
                if "median" in t
                else f"{t['measured_ms']:.0f} ms",
                "pass" if t["pass"] and t.get("pass_on_minimum", True) else "FAIL",
            ]
            for t in targets
        ],
    )
    save_json(
        "protocols",
        {
            "chunks": CHUNKS,
            "rounds": ROUNDS,
            "litellm_rounds": LITELLM_ROUNDS,
            "models": MODELS,
            "sdks": {SDKS[p]: _installed(p) for p in MODELS},
            "litellm_import_s": result["litellm_import_s"],
            "cpu": {
                row.name: {
                    "protocol": row.protocol,
                    "client": row.client,
                    "cpu_us_per_chunk": cpu[row],
                    "min_cpu_us_per_chunk": least[row],
                    "ratio_to_openai_direct": cpu[row] / cpu[REFERENCE],
                    "min_ratio_to_openai_direct": least[row] / least[REFERENCE],
                    "litellm_ratio": litellm_over(row),
                    "stream_ms": wall[row],
                    "first_call_cpu_us_per_chunk": first[row].cpu_us_per_chunk,
                }
                for row in samples
            },
            "coldstart": {
                row.name: {"protocol": row.protocol, "client": row.client, **c}
                for row, c in cold.items()
            },
            "not_installed": sorted({row.name for row in missing + cold_missing}),
            "samples": {row.name: [asdict(s) for s in got] for row, got in samples.items()},
            "coldstart_samples_s": {
                row.name: [r.first_byte_s for r in got] for row, got in cold_runs.items()
            },
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
