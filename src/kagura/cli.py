"""The ``kagura`` command: ``kagura stream "prompt"`` and ``kagura demo``.

``kagura stream`` renders an answer live in the terminal (a rich ``Live`` view with
a footer: time to first token, tokens per second, usage); when stdout is not a
terminal it writes the text as it arrives and the footer to stderr, so
``kagura stream "..." > answer.txt`` keeps a clean file. ``--schema pkg.mod:Model``
shows the partial object growing (``parse_model(Model, partial=True)``).

``kagura demo`` (what ``make demo`` runs) streams a story through
``buffer_sentences``: tokens arrive dim, each finished sentence gets its number.
With no key set it runs offline on ``kagura/replay`` and says how to use a real model.

The model is ``--model``, else ``$KAGURA_MODEL``, else ``gpt-4o-mini`` when
``OPENAI_API_KEY`` is set, else the offline ``kagura/replay``; ``$KAGURA_API_BASE``
points it at any OpenAI-compatible server. Ctrl-C closes the HTTP stream, leaves
what arrived on screen and exits with 130 (SIGTERM: the same, with 143). Errors print
as one line (``--debug`` for the traceback); a missing key names the variable to set;
a closed stdout (``>&-``, a reader that went away) is an error (exit 1), not a lost answer.

>>> main(["stream", "Hello, stream.", "--model", "kagura/echo", "--tokens-per-s", "0"])
Hello, stream.
0
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.json import JSON
from rich.live import Live
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from pydantic import BaseModel

    from kagura.llm.config import LLMConfig
    from kagura.pipes import AgentStream

__all__ = ["app", "main", "resolve_model"]

DEMO_PROMPT = "Tell me a short story about a dragon."
DEFAULT_MODEL = "gpt-4o-mini"
OFFLINE_MODEL = "kagura/replay"
_OFFLINE_PANEL = "Offline models (kagura/echo, kagura/replay)"
OFFLINE_TTFT_S = 0.2  # the offline models' default --ttft, for every command
_REFRESH_PER_S = 20
_EXIT_SIGTERM = 128 + signal.SIGTERM


def _flags_as_flags(params: list[Any]) -> list[Any]:
    """Show a flag as ``--log``, not ``--log <bool>``, in the rich help.

    typer's rich help prints the type of every option, flags included (``--help <bool>``);
    an empty metavar is what it prints instead.
    """
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    # Any: click's Context and Parameter, which typer vendors privately
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


class _Group(TyperGroup):
    # Any: click's Context and Parameter, which typer vendors privately
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_as_flags(super().get_params(ctx))


app = typer.Typer(
    name="kagura",
    cls=_Group,
    help="Stream LLM output as reactive pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


# -- model and config ----------------------------------------------------------------------
def resolve_model(explicit: str | None = None) -> tuple[str, str]:
    """The model to use and why: ``--model``, ``$KAGURA_MODEL``, a key, or offline.

    >>> resolve_model("kagura/echo")
    ('kagura/echo', '--model')
    """
    if explicit:
        return explicit, "--model"
    if os.environ.get("KAGURA_MODEL"):
        return os.environ["KAGURA_MODEL"], "KAGURA_MODEL"
    if os.environ.get("OPENAI_API_KEY"):
        return DEFAULT_MODEL, "OPENAI_API_KEY is set"
    return OFFLINE_MODEL, "offline: neither OPENAI_API_KEY nor KAGURA_MODEL is set"


def _config(model: str) -> LLMConfig:
    from kagura.llm.config import LLMConfig

    return LLMConfig(model=model, api_base=os.environ.get("KAGURA_API_BASE") or None)


def _offline_params(
    model: str, *, tokens_per_s: float, ttft: float, replay_text: str | None
) -> dict[str, Any]:
    """Pacing for the offline models, so they stream like a real one."""
    if not model.startswith("kagura/"):
        return {}
    params: dict[str, Any] = {"ttft": ttft}
    if tokens_per_s > 0:
        params["tokens_per_s"] = tokens_per_s
    if replay_text is not None:
        params["replay_text"] = replay_text
    return params


def _load_schema(spec: str) -> type[BaseModel]:
    """Import ``pkg.module:Model`` (the current directory is importable, as for uvicorn)."""
    from pydantic import BaseModel

    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise typer.BadParameter("expected pkg.module:Model", param_hint="--schema")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--schema"
        ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise typer.BadParameter(f"{module_name!r} has no {attr!r}", param_hint="--schema")
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise typer.BadParameter(f"{spec} is not a pydantic model class", param_hint="--schema")
    if target is BaseModel:
        raise typer.BadParameter(
            f"{spec} is pydantic's base class, not a model: name a subclass of it with fields "
            "(class Pet(BaseModel): name: str)",
            param_hint="--schema",
        )
    generic: dict[str, Any] = getattr(target, "__pydantic_generic_metadata__", {})
    if generic.get("parameters"):
        raise typer.BadParameter(
            f"{spec} is a generic model: name a subclass of it with concrete types "
            "(class Tags(RootModel[list[str]]): ...)",
            param_hint="--schema",
        )
    if not target.model_fields:
        raise typer.BadParameter(
            f"{spec} has no fields: name a pydantic model class with fields",
            param_hint="--schema",
        )
    return target


def _read_stdin() -> str:
    """The prompt from stdin (``kagura stream -``); a closed stdin is a usage error."""
    stdin: IO[str] | None = sys.stdin  # None when the process started with fd 0 closed
    try:
        if stdin is None:
            raise OSError("stdin is closed")
        return stdin.read()
    except (OSError, ValueError) as exc:  # ValueError: "I/O operation on closed file"
        raise typer.BadParameter(
            f'cannot read the prompt from stdin ("-"): {exc}', param_hint="prompt"
        ) from None


def _require_stdout(err: Console) -> None:
    """Refuse to start when stdout is closed (``>&-``): the answer would be lost."""
    stdout: IO[str] | None = sys.stdout  # None when the process started with fd 1 closed
    if stdout is None or stdout.closed:
        _error_line(err, "stdout is closed: there is nowhere to write the answer")
        raise typer.Exit(1)


def _stdout_went_away(err: Console) -> NoReturn:
    """stdout's reader went away mid-answer (``| head``): say so once, exit 1.

    stdout is pointed at ``/dev/null`` first, so the flush at exit does not fail again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests): nothing flushes it at exit
    _error_line(err, "stdout was closed (broken pipe): the answer was not written in full")
    raise typer.Exit(1)


def _error_line(err: Console, message: str) -> None:
    err.print(Text.assemble(("kagura: ", "bold red"), message), soft_wrap=True)


def _schema_messages(prompt: str, schema: type[BaseModel]) -> list[dict[str, str]]:
    from kagura.agents.output import json_instructions

    instructions = json_instructions(schema)
    return [{"role": "system", "content": instructions}, {"role": "user", "content": prompt}]


# -- rendering -----------------------------------------------------------------------------
class _Tail:
    """Render ``renderable`` but keep only its last lines that fit above ``reserve`` lines.

    rich's ``Live`` crops the *bottom* of a tall renderable; a growing answer needs
    the bottom (the newest text) in view. The whole text is printed when the stream ends.
    """

    def __init__(self, renderable: RenderableType, reserve: int) -> None:
        self.renderable = renderable
        self.reserve = reserve

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options.update(height=None), pad=False)
        keep = max(1, console.size.height - self.reserve)
        for line in lines[-keep:]:
            yield from line
            yield Segment.line()


class _StderrProxy:
    """A file that writes to whatever ``sys.stderr`` is now (rich ``Live`` swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _console_logger(*, colors: bool) -> Any:
    """A structlog logger writing one line per event to stderr (above a live view)."""
    import structlog

    return structlog.wrap_logger(
        structlog.PrintLogger(file=_StderrProxy()),  # type: ignore[arg-type]  # duck-typed file
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S.%f"),
            structlog.dev.ConsoleRenderer(colors=colors),
        ],
    )


Mode = Literal["text", "numbered", "model"]


@dataclass(slots=True)
class _View:
    """What the terminal shows: the pipeline's output so far, and a footer."""

    out: Console
    err: Console
    mode: Mode
    model_name: str
    items: list[Any] = field(default_factory=list[Any])
    pending: list[str] = field(default_factory=list[str])  # raw tokens (numbered mode)
    stream: AgentStream[Any] | None = None
    started: float = field(default_factory=time.perf_counter)
    live: Live | None = None
    stopped_by: str = "Ctrl-C"  # what cancelled the stream, for the "[stopped: ...]" note

    @property
    def interactive(self) -> bool:
        return self.out.is_terminal

    # -- events from the stream -----------------------------------------------------------
    def start(self, stream: AgentStream[Any]) -> None:
        self.stream = stream
        self.started = time.perf_counter()
        if self.interactive:
            self.live = Live(
                console=self.out,
                get_renderable=self._live_renderable,
                refresh_per_second=_REFRESH_PER_S,
                transient=True,  # the whole answer is printed once it ends
            )
            self.live.start()

    def token(self, token: str) -> None:
        """A raw token from the model (tapped before the pipeline, numbered mode)."""
        self.pending.append(token)

    def item(self, item: Any) -> None:
        """One output of the pipeline."""
        self.items.append(item)
        if self.mode == "numbered":
            self.pending.clear()
        if self.live is None:
            self._write_plain(item)

    def close(self, *, stopped: bool = False, error: BaseException | None = None) -> None:
        """End the live view and leave the whole output and the footer on screen."""
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.out.print(self._body(final=True), crop=False, soft_wrap=False)
        else:
            self._finish_plain()
        notes = self.out if self.interactive else self.err  # keep a piped stdout clean
        if stopped:
            notes.print(Text(f"[stopped: {self.stopped_by}]", style="bold yellow"))
        elif error is not None:
            return  # the error line follows
        notes.print(self._footer(final=True), soft_wrap=True)

    # -- plain (not a terminal) ------------------------------------------------------------
    def _write_plain(self, item: Any) -> None:
        file: IO[str] = self.out.file
        if self.mode == "text":
            file.write(str(item))
        elif self.mode == "numbered":
            file.write(f"{len(self.items):>3}  {str(item).strip()}\n")
        else:
            return  # the finished object is written at the end
        file.flush()

    def _finish_plain(self) -> None:
        file: IO[str] = self.out.file
        if self.mode == "text" and self.items and not str(self.items[-1]).endswith("\n"):
            file.write("\n")
        elif self.mode == "model" and self.items:
            file.write(self.items[-1].model_dump_json(indent=2) + "\n")
        file.flush()

    # -- terminal --------------------------------------------------------------------------
    def _live_renderable(self) -> RenderableType:
        return Group(_Tail(self._body(final=False), reserve=2), self._footer(final=False))

    def _body(self, *, final: bool) -> RenderableType:
        if self.mode == "text":
            return Text("".join(str(i) for i in self.items))
        if self.mode == "numbered":
            table = Table.grid(padding=(0, 2))
            table.add_column(justify="right", style="bold cyan", min_width=3)
            table.add_column()
            for n, sentence in enumerate(self.items, 1):
                table.add_row(str(n), Text(str(sentence).strip()))
            if self.pending and not final:
                table.add_row("", Text("".join(self.pending), style="dim"))
            return table
        if not self.items:
            return Text("waiting for the first field..." if not final else "", style="dim")
        return JSON(self.items[-1].model_dump_json(), indent=2)

    def _footer(self, *, final: bool) -> Text:
        stream = self.stream
        if stream is None:
            return Text("")
        from kagura.llm.metrics import estimate_tokens

        m = stream.metrics
        now = time.perf_counter()
        parts = [self.model_name]
        if not final:
            parts.append(f"{now - self.started:.1f} s")
            if m.ttft_s is None:
                parts.append("waiting for the first token")
            else:
                parts.append(f"time to first token {m.ttft_s:.2f} s")
                parts.append(f"{m.chunks} chunks")
            return Text(" · ".join(parts), style="dim")
        parts.append(
            f"time to first token {m.ttft_s:.2f} s" if m.ttft_s is not None else "no token"
        )
        tps = m.tokens_per_s
        if tps is None and m.first_token_at is not None and now > m.first_token_at:
            # stopped early: the source never saw the end, so estimate from what arrived
            tps = estimate_tokens(m.chars) / (now - m.first_token_at)
            parts.append(f"~{tps:.1f} tokens/s")
        elif tps is not None:
            parts.append(f"{tps:.1f} tokens/s")
        usage = stream.usage
        if usage is not None:
            parts.append(
                f"{usage.prompt_tokens} + {usage.completion_tokens} = {usage.total_tokens} tokens"
                + (" (estimated)" if usage.estimated else "")
            )
        else:
            parts.append(f"usage unknown (~{estimate_tokens(m.chars)} tokens received)")
        return Text("-- " + " · ".join(parts), style="dim")


# -- running one stream --------------------------------------------------------------------
@dataclass(slots=True, kw_only=True)
class _Job:
    prompt: str
    model: str
    mode: Mode = "text"
    sentences: bool = False
    throttle: float | None = None
    schema: type[BaseModel] | None = None
    log: bool = False
    params: dict[str, Any] = field(default_factory=dict[str, Any])


async def _run(job: _Job, view: _View) -> None:
    """Stream ``job`` into ``view``; on cancellation (Ctrl-C) close it and re-raise."""
    from reactivex import operators as rx

    from kagura import operators as ops
    from kagura.llm.metrics import StreamMetrics
    from kagura.pipes import AgentStream, from_llm_events

    metrics = StreamMetrics()  # tee_log reports the stream's own usage from it
    pipeline: list[Callable[[Any], Any]] = []
    if job.log:
        logger = _console_logger(colors=view.err.is_terminal)
        pipeline.append(ops.tee_log(logger, level="info", metrics=metrics))
    if job.mode == "numbered":
        pipeline.append(rx.do_action(on_next=view.token))
    if job.sentences:
        pipeline.append(ops.buffer_sentences())
    if job.schema is not None:
        pipeline.append(_parse_model(job.schema))
    if job.throttle is not None:
        pipeline.append(ops.throttle(job.throttle))
    prompt: Any = job.prompt if job.schema is None else _schema_messages(job.prompt, job.schema)
    events = from_llm_events(prompt, _config(job.model), metrics=metrics, **job.params)
    stream = AgentStream.from_events(events, metrics=metrics, pipeline=pipeline)
    view.start(stream)
    try:
        async with stream:
            async for item in stream:
                view.item(item)
    except asyncio.CancelledError:
        view.close(stopped=True)
        raise
    except BaseException as exc:
        view.close(error=exc)
        raise
    view.close()


async def _run_until_sigterm(job: _Job, view: _View) -> bool:
    """Run ``job``; SIGTERM stops it like Ctrl-C (the live view ends, the cursor comes back).

    Returns whether SIGTERM stopped it.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        view.stopped_by = "SIGTERM"
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        handling = True
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        handling = False
    try:
        await _run(job, view)
    except asyncio.CancelledError:
        if not terminated or task is None:
            raise
        task.uncancel()  # the cancellation was ours, and it is handled
    finally:
        if handling:
            loop.remove_signal_handler(signal.SIGTERM)
    return terminated


def _parse_model(schema: type[BaseModel]) -> Callable[[Any], Any]:
    from kagura.operators import parse_model

    return parse_model(schema, partial=True)


def _execute(job: _Job, *, debug: bool) -> None:
    """Run ``job`` to the end; map Ctrl-C to exit 130 and errors to one line and exit 1."""
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    _require_stdout(err)
    view = _View(out, err, job.mode, job.model)
    try:
        terminated = asyncio.run(_run_until_sigterm(job, view))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        _stdout_went_away(err)
    except Exception as exc:
        _report(exc, err, model=job.model, debug=debug)
        raise typer.Exit(1) from None
    else:
        if terminated:
            raise typer.Exit(_EXIT_SIGTERM)


def _report(exc: Exception, err: Console, *, model: str, debug: bool) -> None:
    """Print ``exc`` as one line (with the traceback first under ``--debug``).

    The messages of ``exc`` and of every exception in its chain are scrubbed first, and
    the traceback shows no local variables (they hold keys and prompts).
    """
    from kagura._redact import redact, redact_error
    from kagura.errors import KaguraError, MissingAPIKeyError

    redact_error(exc)
    if debug:
        err.print_exception(show_locals=False)
    if isinstance(exc, MissingAPIKeyError) and exc.env_var:
        message = (
            f"no API key for {model}: set {exc.env_var} (export {exc.env_var}=...), "
            f"or run offline with --model {OFFLINE_MODEL}"
        )
    elif isinstance(exc, KaguraError):
        message = f"{type(exc).__name__}: {redact(str(exc))}"
    else:
        message = f"unexpected {type(exc).__name__}: {redact(str(exc))} (--debug for details)"
    _error_line(err, message)


# -- commands ------------------------------------------------------------------------------
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=(
            f"Model name (default: $KAGURA_MODEL, else {DEFAULT_MODEL} if OPENAI_API_KEY "
            f"is set, else {OFFLINE_MODEL} offline). $KAGURA_API_BASE sets the endpoint."
        ),
        show_default=False,
    ),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


def _finite(value: float) -> float:
    """Refuse NaN and infinity (``min=0`` lets NaN through: it compares false)."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def _positive_seconds(value: float | None) -> float | None:
    if value is not None and not 0 < value < math.inf:  # NaN compares false
        raise typer.BadParameter(f"must be a positive, finite number of seconds, got {value}")
    return value


TokensPerSOption = Annotated[
    float,
    typer.Option(
        "--tokens-per-s",
        min=0,
        callback=_finite,
        help="Pace of the offline models (0: as fast as possible).",
        rich_help_panel=_OFFLINE_PANEL,
    ),
]
TtftOption = Annotated[
    float,
    typer.Option(
        "--ttft",
        min=0,
        callback=_finite,
        help="Seconds before the first token.",
        rich_help_panel=_OFFLINE_PANEL,
    ),
]
ReplayOption = Annotated[
    str | None,
    typer.Option(
        "--replay-text",
        help="What kagura/replay says (default: a short story).",
        rich_help_panel=_OFFLINE_PANEL,
        show_default=False,
    ),
]


@app.command(cls=_Command)
def stream(
    prompt: Annotated[str, typer.Argument(help='The prompt ("-" reads it from stdin).')],
    model: ModelOption = None,
    sentences: Annotated[
        bool, typer.Option("--sentences", help="Emit whole sentences (buffer_sentences).")
    ] = False,
    throttle: Annotated[
        float | None,
        typer.Option(
            "--throttle",
            metavar="SECONDS",
            callback=_positive_seconds,
            help="At most one update per SECONDS, nothing dropped (throttle).",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            metavar="pkg.module:Model",
            help="Parse the answer into this pydantic model, showing the partial object.",
            show_default=False,
        ),
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Log stream events to stderr.")] = False,
    debug: DebugOption = False,
    tokens_per_s: TokensPerSOption = 40.0,
    ttft: TtftOption = OFFLINE_TTFT_S,
    replay_text: ReplayOption = None,
) -> None:
    """Stream one answer to the terminal, live, with timing and usage."""
    if sentences and schema:
        raise typer.BadParameter("--sentences splits text; it does not combine with --schema")
    if prompt == "-":
        prompt = _read_stdin()
    name, _ = resolve_model(model)
    job = _Job(
        prompt=prompt,
        model=name,
        mode="model" if schema else "text",
        sentences=sentences,
        throttle=throttle,
        schema=_load_schema(schema) if schema else None,
        log=log,
        params=_offline_params(name, tokens_per_s=tokens_per_s, ttft=ttft, replay_text=replay_text),
    )
    _execute(job, debug=debug)


@app.command(cls=_Command)
def demo(
    prompt: Annotated[str, typer.Argument(help="The prompt.")] = DEMO_PROMPT,
    model: ModelOption = None,
    debug: DebugOption = False,
    tokens_per_s: TokensPerSOption = 40.0,
    ttft: TtftOption = OFFLINE_TTFT_S,
    replay_text: ReplayOption = None,
) -> None:
    """Stream a story through buffer_sentences (works offline, no key needed)."""
    name, why = resolve_model(model)
    out = Console(highlight=False)
    _require_stdout(Console(stderr=True, highlight=False))
    out.print(
        Text.assemble(("kagura demo", "bold"), "  model ", (name, "bold cyan"), f" ({why})"),
        soft_wrap=True,
    )
    out.print(
        Text(
            f"pipeline: from_llm({prompt!r}) -> buffer_sentences() -> AgentStream; "
            "tokens arrive dim, each finished sentence gets a number",
            style="dim",
        ),
        soft_wrap=True,
    )
    out.print()
    job = _Job(
        prompt=prompt,
        model=name,
        mode="numbered",
        sentences=True,
        params=_offline_params(name, tokens_per_s=tokens_per_s, ttft=ttft, replay_text=replay_text),
    )
    _execute(job, debug=debug)
    if name.startswith("kagura/"):
        out.print()
        for line in _real_model_hints():
            out.print(line, soft_wrap=True)


def _real_model_hints() -> Iterable[Text]:
    yield Text("To use a real model:", style="bold")
    yield Text(f"  export OPENAI_API_KEY=sk-...        # then {DEFAULT_MODEL} is the default")
    yield Text("  export KAGURA_MODEL=gpt-4o           # or any litellm model name")
    yield Text("  export KAGURA_API_BASE=http://localhost:11434/v1 KAGURA_MODEL=openai/llama3")
    yield Text("                                       # any OpenAI-compatible server")
    yield Text('Then: kagura stream "Explain backpressure in two sentences." --sentences')


# -- entry point ---------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kagura`` command; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        # standalone mode: typer formats usage errors and maps Ctrl-C to 130 itself.
        command.main(args=list(argv) if argv is not None else None, prog_name="kagura")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
