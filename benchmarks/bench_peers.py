"""kagura side by side with what users would pick instead, in the peers' own environment.

The peers pin versions that conflict with kagura's (instructor's ``jiter`` pin holds
openai back), so this benchmark runs in ``.venv-peers`` (``make bench-peers``: kagura
editable plus pydantic-ai, langchain-openai, instructor, openai and litellm); the
installed versions are saved with the results. In an environment without the peers
``main()`` says so and returns (``python -m benchmarks`` runs every ``bench_*`` module).

Every client reads from a loopback server in another process
(``_loopback_proc.ServerProcess``), in interleaved rounds after one warm-up each:

- **plain text**: the ``CHUNKS``-chunk answer of ``bench_transports``; client CPU per
  chunk (``bench_transports.measure``: ``time.process_time()`` over the stream plus a
  short settle, per chunk sent), median of the rounds. Rows: kagura ``call_llm_stream``
  (direct transport), ``AsyncOpenAI.chat.completions.create(stream=True)``, pydantic-ai
  ``Agent(...).run_stream`` + ``stream_text(delta=True)`` with its default
  ``debounce_by=0.1`` and with ``debounce_by=None``, langchain-openai
  ``ChatOpenAI.astream``, ``litellm.acompletion(stream=True)`` (streaming logging off,
  as kagura sets it). **Checked**: each client's pieces joined equal the served text.
- **fresh process to first chunk**: ``bench_coldstart.timed`` (a new interpreter, timed
  to the first byte it writes at its first text chunk; caches warm), same clients.
- **structured answer with partial objects**: ``bench_partial_parse.build_document``'s
  catalog at ~16 KB and ~66 KB, served as the answer's text in 4-character chunks; CPU
  of the client process per document. Rows: kagura ``from_llm`` →
  ``parse_model(Catalog, partial=True)`` (its default snapshot spacing); pydantic-ai
  ``output_type=NativeOutput(Catalog)`` + ``stream_output()`` (default ``debounce_by=0.1``);
  langchain-openai ``(ChatOpenAI | JsonOutputParser()).astream``; instructor
  ``create_partial`` with ``Mode.JSON``. **Checked**: the last partial object of each,
  validated as ``Catalog``, equals ``Catalog.model_validate_json(document)``. A peer whose
  16 KB run predicts more than ``SLOW_LIMIT_S`` at 66 KB (time grows with the square of
  the size) runs once, at 16 KB only, and the table says so.

openai SDK and litellm have no partial-object stream of their own, so they have no row
in the structured table. ``python -m benchmarks.bench_peers`` in ``.venv-peers``;
``KAGURA_BENCH_ROUNDS`` sets the rounds.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import Any

from benchmarks._loopback_proc import ServerProcess, median, python, stream_text
from benchmarks._report import print_table, save_json

CHUNKS = 2000
ROUNDS = int(os.environ.get("KAGURA_BENCH_ROUNDS", "7"))
COLD_ROUNDS = min(ROUNDS, 3)
STRUCTURED_ROUNDS = min(ROUNDS, 3)
SIZES_KB = (16, 66)
DOC_CHUNK = 4
SLOW_LIMIT_S = 60.0
MODEL = "gpt-4o-mini"
PROMPT = "Tell me a story."
PEERS = ("openai", "pydantic-ai-slim", "langchain-openai", "langchain-core", "instructor")
VERSIONS = (*PEERS, "litellm", "pydantic", "jiter", "httpx", "kagura")

KAGURA = "kagura call_llm_stream, direct"
OPENAI = "openai SDK"
PYDANTIC_AI = "pydantic-ai stream_text(delta=True)"
PYDANTIC_AI_NODEBOUNCE = "pydantic-ai stream_text(delta=True, debounce_by=None)"
LANGCHAIN = "langchain-openai ChatOpenAI.astream"
LITELLM = "litellm acompletion(stream=True)"

SETTINGS = {
    KAGURA: 'LLMConfig(transport="direct", max_retries=0)',
    OPENAI: "AsyncOpenAI(max_retries=0), chat.completions.create(stream=True)",
    PYDANTIC_AI: "OpenAIChatModel; stream_text debounce_by=0.1 (default)",
    PYDANTIC_AI_NODEBOUNCE: "OpenAIChatModel; stream_text debounce_by=None",
    LANGCHAIN: "ChatOpenAI(max_retries=0)",
    LITELLM: "disable_streaming_logging=True (as kagura sets it)",
}

S_KAGURA = "kagura parse_model(partial=True)"
S_PYDANTIC_AI = "pydantic-ai stream_output"
S_LANGCHAIN = "langchain-openai JsonOutputParser"
S_INSTRUCTOR = "instructor create_partial"
S_SETTINGS = {
    S_KAGURA: "from_llm → parse_model(Catalog, partial=True), default snapshot spacing",
    S_PYDANTIC_AI: "output_type=NativeOutput(Catalog), stream_output debounce_by=0.1 (default)",
    S_LANGCHAIN: "ChatOpenAI piped into JsonOutputParser(), astream (a dict per chunk)",
    S_INSTRUCTOR: "from_openai(AsyncOpenAI, mode=Mode.JSON), create_partial",
}

Stream = Callable[[], AsyncIterator[Any]]


def have_peers() -> bool:
    try:
        import instructor  # noqa: F401
        import langchain_openai  # noqa: F401
        import pydantic_ai  # noqa: F401
    except ImportError:
        return False
    return True


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# --- plain text --------------------------------------------------------------------------


def text_clients(base_url: str) -> tuple[dict[str, Stream], Callable[[], Any]]:
    import openai
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    import kagura
    from benchmarks._floor import openai_sdk_texts

    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-x", max_retries=0)
    direct = kagura.LLMConfig(
        model=f"openai/{MODEL}",
        api_base=base_url,
        api_key=SecretStr("sk-x"),
        max_retries=0,
        transport="direct",
    )
    agent = Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=sdk)))
    chat = ChatOpenAI(model=MODEL, base_url=base_url, api_key=SecretStr("sk-x"), max_retries=0)

    def pydantic_ai(debounce: float | None) -> Stream:
        async def run() -> AsyncIterator[str]:
            async with agent.run_stream(PROMPT) as result:
                async for delta in result.stream_text(delta=True, debounce_by=debounce):
                    yield delta

        return run

    async def langchain() -> AsyncIterator[str]:
        async for chunk in chat.astream(PROMPT):
            if chunk.content:
                yield str(chunk.content)

    async def litellm_stream() -> AsyncIterator[str]:
        import litellm

        litellm.disable_streaming_logging = True
        response: Any = await litellm.acompletion(
            model=f"openai/{MODEL}",
            messages=[{"role": "user", "content": PROMPT}],
            api_base=base_url,
            api_key="sk-x",
            max_retries=0,
            stream=True,
        )
        try:
            async for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            await response.aclose()

    clients: dict[str, Stream] = {
        KAGURA: lambda: kagura.call_llm_stream(PROMPT, direct),
        OPENAI: lambda: openai_sdk_texts(sdk, model=MODEL, prompt=PROMPT),
        PYDANTIC_AI: pydantic_ai(0.1),
        PYDANTIC_AI_NODEBOUNCE: pydantic_ai(None),
        LANGCHAIN: langchain,
        LITELLM: litellm_stream,
    }

    async def close() -> None:
        await sdk.close()

    return clients, close


async def _text_rounds(base_url: str) -> dict[str, Any]:
    from benchmarks.bench_transports import measure

    expected = stream_text(CHUNKS)
    clients, close = text_clients(base_url)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    first: dict[str, float] = {}
    try:
        for name, stream in clients.items():  # warm-up, and the output check
            pieces = [piece async for piece in stream()]
            assert "".join(pieces) == expected, f"{name}: the text differs from the served text"
            first[name] = len(pieces)
        for _ in range(ROUNDS):
            for name, stream in clients.items():
                samples[name].append((await measure(stream, CHUNKS)).cpu_us_per_chunk)
    finally:
        await close()
    return {"samples": samples, "pieces_seen": first}


# --- fresh process to first chunk --------------------------------------------------------

_COLD = {
    KAGURA: """
import kagura
async def first():
    config = kagura.LLMConfig(model="openai/{model}", api_base="{url}", api_key="sk-x",
                              max_retries=0, transport="direct")
    async for _ in kagura.call_llm_stream("hi", config):
        return
""",
    OPENAI: """
import openai
async def first():
    sdk = openai.AsyncOpenAI(base_url="{url}", api_key="sk-x", max_retries=0)
    stream = await sdk.chat.completions.create(model="{model}", stream=True,
        messages=[{{"role": "user", "content": "hi"}}])
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return
""",
    PYDANTIC_AI: """
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
async def first():
    model = OpenAIChatModel("{model}", provider=OpenAIProvider(base_url="{url}", api_key="sk-x"))
    async with Agent(model).run_stream("hi") as result:
        async for _ in result.stream_text(delta=True):
            return
""",
    LANGCHAIN: """
from langchain_openai import ChatOpenAI
async def first():
    chat = ChatOpenAI(model="{model}", base_url="{url}", api_key="sk-x", max_retries=0)
    async for chunk in chat.astream("hi"):
        if chunk.content:
            return
""",
    LITELLM: """
import litellm
async def first():
    response = await litellm.acompletion(model="openai/{model}", api_base="{url}",
        api_key="sk-x", max_retries=0, stream=True, messages=[{{"role": "user", "content": "hi"}}])
    async for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            return
""",
}

_COLD_MAIN = """
import asyncio, sys
asyncio.run(first())
sys.stdout.write("T")
sys.stdout.flush()
"""


def coldstart(base_url: str) -> dict[str, list[float]]:
    from benchmarks.bench_coldstart import timed

    cmds = {
        name: [python(), "-c", code.format(model=MODEL, url=base_url) + _COLD_MAIN]
        for name, code in _COLD.items()
    }
    for cmd in cmds.values():  # warm the bytecode and file caches (and check each works)
        timed(cmd)
    runs: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(COLD_ROUNDS):
        for name, cmd in cmds.items():
            runs[name].append(timed(cmd).first_byte_s)
    return runs


# --- structured answer with partial objects ----------------------------------------------


class DocumentServer(ServerProcess):
    """The loopback server answering every request with one JSON document as its text."""

    module = "benchmarks.bench_peers"

    def __init__(self, kb: int) -> None:
        super().__init__(chunks=0)
        self._args = ["--serve-document", str(kb)]


def _serve_document(kb: int) -> None:
    from benchmarks.bench_partial_parse import build_document
    from kagura.testing.loopback import LoopbackServer, Script

    with LoopbackServer(backlog=256) as server:
        server.default = Script.text(build_document(kb), chunk_size=DOC_CHUNK)
        print(server.port, flush=True)
        sys.stdin.read()


def structured_clients(base_url: str) -> tuple[dict[str, Stream], Callable[[], Any]]:
    import instructor
    import openai
    from langchain_core.output_parsers import JsonOutputParser
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    import kagura
    from benchmarks.bench_partial_parse import Catalog
    from kagura import operators as kops
    from kagura.pipes import from_llm, to_async_iterator

    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-x", max_retries=0)
    direct = kagura.LLMConfig(
        model=f"openai/{MODEL}",
        api_base=base_url,
        api_key=SecretStr("sk-x"),
        max_retries=0,
        transport="direct",
    )
    agent = Agent(
        OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=sdk)),
        output_type=NativeOutput(Catalog),
    )
    chain = (
        ChatOpenAI(model=MODEL, base_url=base_url, api_key=SecretStr("sk-x"), max_retries=0)
        | JsonOutputParser()
    )
    patched = instructor.from_openai(sdk, mode=instructor.Mode.JSON)
    messages: Any = [{"role": "user", "content": "A catalog as JSON."}]

    def kagura_partial() -> AsyncIterator[Any]:
        return to_async_iterator(
            from_llm(PROMPT, direct).pipe(kops.parse_model(Catalog, partial=True))
        )

    async def pydantic_ai() -> AsyncIterator[Any]:
        async with agent.run_stream(PROMPT) as result:
            async for out in result.stream_output():
                yield out

    async def instructor_partial() -> AsyncIterator[Any]:
        stream: Any = patched.chat.completions.create_partial(
            model=MODEL, response_model=Catalog, messages=messages, max_retries=0
        )
        async for out in stream:
            yield out

    clients: dict[str, Stream] = {
        S_KAGURA: kagura_partial,
        S_PYDANTIC_AI: pydantic_ai,
        S_LANGCHAIN: lambda: chain.astream(PROMPT),
        S_INSTRUCTOR: instructor_partial,
    }

    async def close() -> None:
        await sdk.close()

    return clients, close


def _as_catalog(value: Any) -> Any:
    from benchmarks.bench_partial_parse import Catalog

    data = value if isinstance(value, dict) else value.model_dump()
    return Catalog.model_validate(data)


async def _structured_once(stream: Stream, expected: Any) -> tuple[float, int]:
    """CPU seconds of one document, and the partial objects seen; checks the last one."""
    count = 0
    last: Any = None
    c0 = time.process_time()
    async for item in stream():
        count += 1
        last = item
    cpu = time.process_time() - c0
    assert last is not None, "no partial object"
    assert _as_catalog(last) == expected, "the last object differs"
    return cpu, count


async def _structured(
    kb: int, base_url: str, skip: set[str], expected: Any
) -> dict[str, dict[str, Any]]:
    clients, close = structured_clients(base_url)
    got: dict[str, dict[str, Any]] = {}
    try:
        active = {n: s for n, s in clients.items() if n not in skip}
        for name, stream in active.items():  # first run: check, and time it
            cpu, count = await _structured_once(stream, expected)
            got[name] = {"cpu_s": [cpu], "objects": count}
        for _ in range(STRUCTURED_ROUNDS - 1):
            for name, stream in active.items():
                if got[name]["cpu_s"][0] * 3 > SLOW_LIMIT_S:  # minutes a document: once
                    continue
                got[name]["cpu_s"].append((await _structured_once(stream, expected))[0])
    finally:
        await close()
    return got


def structured() -> dict[str, Any]:
    from benchmarks.bench_partial_parse import Catalog, build_document

    out: dict[str, Any] = {}
    skip: set[str] = set()
    estimates: dict[str, float] = {}
    for kb in SIZES_KB:
        document = build_document(kb)
        expected = Catalog.model_validate_json(document)
        with DocumentServer(kb) as server:
            got = asyncio.run(_structured(kb, server.base_url, skip, expected))
        out[str(kb)] = {
            "chars": len(document),
            "chunks": -(-len(document) // DOC_CHUNK),
            "clients": {
                name: {
                    "cpu_s_median": median(r["cpu_s"]),
                    "runs": len(r["cpu_s"]),
                    "cpu_s": r["cpu_s"],
                    "objects": r["objects"],
                }
                for name, r in got.items()
            },
            "skipped": {name: estimates[name] for name in sorted(skip)},
        }
        for name, r in got.items():  # re-parsing peers grow with the square of the size
            estimate = median(r["cpu_s"]) * (SIZES_KB[-1] / kb) ** 2
            if kb != SIZES_KB[-1] and estimate > SLOW_LIMIT_S:
                skip.add(name)
                estimates[name] = estimate
    return out


# --- main --------------------------------------------------------------------------------


def main() -> None:
    if not have_peers():
        print(
            "bench_peers: pydantic-ai, langchain-openai or instructor is not installed here; "
            "`make bench-peers` runs it in .venv-peers"
        )
        return
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # noqa: F401 -- imported before any round is timed

    with ServerProcess(chunks=CHUNKS) as server:
        text = asyncio.run(_text_rounds(server.base_url))
    with ServerProcess(chunks=20) as server:
        cold = coldstart(server.base_url)
    shaped = structured()

    cpu = {name: median(s) for name, s in text["samples"].items()}
    first = {name: median(s) for name, s in cold.items()}
    base = cpu[KAGURA]
    print_table(
        f"Plain text, {CHUNKS} chunks: client CPU per chunk (median of {ROUNDS} rounds), "
        f"fresh process to first chunk (median of {COLD_ROUNDS})",
        ["client", "settings", "CPU µs/chunk", "x kagura", "first chunk, fresh process ms"],
        [
            [
                name,
                SETTINGS[name],
                round(cpu[name], 1),
                f"{cpu[name] / base:.1f}x",
                round(first[name] * 1e3) if name in first else "-",
            ]
            for name in cpu
        ],
    )
    rows: list[list[Any]] = []
    for name, setting in S_SETTINGS.items():
        cells: list[Any] = [name, setting]
        for kb in SIZES_KB:
            size = shaped[str(kb)]
            if name in size["clients"]:
                c = size["clients"][name]
                cells.append(
                    f"{c['cpu_s_median']:.2f} s ({c['objects']} objects, runs: {c['runs']})"
                )
            elif name in size["skipped"]:
                cells.append(f"not run (~{size['skipped'][name]:.0f} s predicted)")
            else:
                cells.append("-")
        rows.append(cells)
    print_table(
        "Structured answer with partial objects: client CPU per document (objects seen)",
        ["client", "settings", *(f"~{kb} KB" for kb in SIZES_KB)],
        rows,
    )
    save_json(
        "peers",
        {
            "rounds": ROUNDS,
            "cold_rounds": COLD_ROUNDS,
            "structured_rounds": STRUCTURED_ROUNDS,
            "chunks": CHUNKS,
            "doc_chunk_chars": DOC_CHUNK,
            "slow_limit_s": SLOW_LIMIT_S,
            "python": sys.executable,
            "versions": versions(),
            "text": {
                name: {
                    "settings": SETTINGS[name],
                    "cpu_us_per_chunk": cpu[name],
                    "min_cpu_us_per_chunk": min(text["samples"][name]),
                    "ratio_to_kagura": cpu[name] / base,
                    "pieces_seen": text["pieces_seen"][name],
                    "first_chunk_fresh_process_s": first.get(name),
                }
                for name in cpu
            },
            "text_samples_us": text["samples"],
            "coldstart_samples_s": cold,
            "structured_settings": S_SETTINGS,
            "structured": shaped,
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-document"]:
        _serve_document(int(sys.argv[2]))
    else:
        main()
