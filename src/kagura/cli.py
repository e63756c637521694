"""The ``kagura`` command: ``kagura demo`` and ``kagura stream "prompt"``.

``kagura demo`` streams an answer through a small operator pipeline
(``buffer_sentences`` then ``tee_log``) to the terminal. With no provider key set
it uses the offline model ``kagura/replay``, and says how to use a real one.

Ctrl-C stops a stream cleanly: the HTTP stream is closed, what arrived stays on
screen, and the exit code is 130. Errors print as one line (``--debug`` for the
traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

DEMO_PROMPT = "Tell me a short story about a dragon."


def _pick_model(explicit: str | None) -> tuple[str, bool]:
    """The model to use and whether it is an offline fallback."""
    if explicit:
        return explicit, explicit.startswith("kagura/")
    if os.environ.get("KAGURA_MODEL"):
        model = os.environ["KAGURA_MODEL"]
        return model, model.startswith("kagura/")
    if os.environ.get("OPENAI_API_KEY"):
        return "gpt-4o-mini", False
    return "kagura/replay", True


async def _run_stream(
    prompt: str,
    *,
    model: str,
    sentences: bool,
    throttle: float | None,
    log: bool,
    offline_pace: bool,
    numbered: bool,
) -> int:
    from kagura import operators as ops
    from kagura.core.config import LLMConfig
    from kagura.pipes import AgentStream

    pipeline: list[Any] = []
    if sentences:
        pipeline.append(ops.buffer_sentences())
    if throttle:
        pipeline.append(ops.throttle(throttle))
    if log:
        pipeline.append(ops.tee_log(level="info"))
    kwargs: dict[str, Any] = {}
    if offline_pace and model == "kagura/replay":
        kwargs = {"ttft": 0.3, "tokens_per_s": 40}
    config = LLMConfig(model=model, api_base=os.environ.get("KAGURA_API_BASE"))
    stream = AgentStream.from_llm(prompt, config, pipeline=pipeline, **kwargs)
    out = sys.stdout
    count = 0
    try:
        async with stream:
            async for piece in stream:
                count += 1
                if numbered:
                    out.write(f"  [{count}] {str(piece).strip()}\n")
                else:
                    out.write(str(piece))
                out.flush()
    except asyncio.CancelledError:
        out.write("\n[stopped]\n")
        out.flush()
        raise
    m = stream.metrics
    usage = stream.usage
    usage_text = (
        f"{usage.prompt_tokens}+{usage.completion_tokens} tokens"
        + (" (estimated)" if usage.estimated else "")
        if usage
        else "usage unknown"
    )
    ttft = f"{m.ttft_s:.2f} s" if m.ttft_s is not None else "n/a"
    tps = f"{m.tokens_per_s:.1f}" if m.tokens_per_s is not None else "n/a"
    out.write(f"\n-- time to first token {ttft}, {tps} tokens/s, {usage_text}\n")
    return 0


def _demo(args: argparse.Namespace) -> int:
    model, offline = _pick_model(args.model)
    if offline:
        print(f"kagura demo: offline model {model} (no OPENAI_API_KEY or KAGURA_MODEL set)")
    else:
        print(f"kagura demo: model {model}")
    print("pipeline: from_llm -> buffer_sentences -> AgentStream, one sentence per line\n")
    code = asyncio.run(
        _run_stream(
            args.prompt,
            model=model,
            sentences=True,
            throttle=None,
            log=False,
            offline_pace=True,
            numbered=True,
        )
    )
    if offline:
        print(
            "\nTo use a real model: export OPENAI_API_KEY=sk-... (optionally KAGURA_MODEL=gpt-4o), "
            "or KAGURA_API_BASE=http://localhost:11434/v1 KAGURA_MODEL=openai/llama3 "
            "for any OpenAI-compatible server."
        )
    return code


def _stream(args: argparse.Namespace) -> int:
    model, _ = _pick_model(args.model)
    return asyncio.run(
        _run_stream(
            args.prompt,
            model=model,
            sentences=args.sentences,
            throttle=args.throttle,
            log=args.log,
            offline_pace=True,
            numbered=False,
        )
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kagura", description="Stream LLM output as reactive pipelines."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream an answer through a small pipeline (works offline)")
    demo.add_argument("prompt", nargs="?", default=DEMO_PROMPT)
    demo.add_argument("--model", default=None)
    demo.set_defaults(run=_demo)
    stream = sub.add_parser("stream", help="stream one answer to the terminal")
    stream.add_argument("prompt")
    stream.add_argument(
        "--model",
        default=None,
        help="model (default: $KAGURA_MODEL, gpt-4o-mini, or kagura/replay offline)",
    )
    stream.add_argument("--sentences", action="store_true", help="emit whole sentences")
    stream.add_argument(
        "--throttle", type=float, default=None, metavar="SECONDS", help="coalesce output"
    )
    stream.add_argument("--log", action="store_true", help="log stream events with structlog")
    stream.set_defaults(run=_stream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kagura`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from kagura.errors import KaguraError

        kind = (
            type(exc).__name__
            if isinstance(exc, KaguraError)
            else f"unexpected {type(exc).__name__}"
        )
        print(f"kagura: {kind}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
