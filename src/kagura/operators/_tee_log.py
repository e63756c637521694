"""tee_log: a structlog side channel that reports a stream's timing, never altering it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

import structlog
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from kagura._redact import redact
from kagura.errors import ConfigError
from kagura.events import Usage
from kagura.llm.metrics import StreamMetrics, estimate_tokens
from kagura.operators._guard import deliver_errors
from kagura.operators.scheduling import resolve_scheduler

__all__ = ["tee_log"]

_T = TypeVar("_T")

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")


def tee_log(
    logger: Any = None,  # any structlog-style logger: .debug(event, **kw) and so on
    *,
    level: LogLevel = "debug",
    every_chunk: bool = False,
    name: str | None = None,
    metrics: StreamMetrics | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Log a stream's lifecycle as structured events; pass every item through untouched.

    Events (default logger ``structlog.get_logger("kagura")``, at ``level``;
    ``stream.error`` at ``warning`` or ``level`` if higher):

    - ``stream.start`` on subscription;
    - ``stream.first_token`` with ``ttft_s``, seconds from subscription;
    - ``stream.chunk`` for every item, with ``index``, ``chars`` and the
      redacted ``text`` (only with ``every_chunk=True``);
    - ``stream.end`` with ``chunks``, ``chars``, ``duration_s`` (from
      subscription), ``ttft_s`` and ``tokens_per_s`` (from the first token to
      the end, ``None`` if no time passed); ``chars`` counts ``str`` items only.
      The tokens are the stream's usage, and ``tokens_estimated`` says what the
      usage says (``usage.estimated``): the last :class:`~kagura.Usage` item
      that passed (a pipeline of events), else ``metrics.usage`` (``metrics``:
      the :class:`~kagura.StreamMetrics` its source fills in, for a pipeline of
      text). With neither, the tokens are estimated from ``chars``
      (:func:`~kagura.llm.metrics.estimate_tokens`, ``tokens_estimated=True``).
      With ``metrics``, also ``model`` (the model that answered) and ``attempts``
      (the requests started: more than one with fallbacks or hedging);
    - ``stream.error`` with ``error_type`` and the redacted ``error``, plus the
      counts so far;
    - ``stream.cancel`` with the counts so far, if disposed before it ended.

    Every event carries ``stream=name`` when ``name`` is given. Times come
    from the scheduler's clock (``scheduler or subscribe_scheduler or``
    :class:`~reactivex.scheduler.TimeoutScheduler`). Logged values are passed
    through :func:`kagura.redact`; a logger that raises is ignored.

    Marble (any timespan; the output is the input)::

        source: -a-b-|
        result: -a-b-|

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> from structlog.testing import capture_logs
    >>> with capture_logs() as logs:
    ...     out = reactivex.of("Hel", "lo").pipe(tee_log(name="demo"), rx.to_list()).run()
    >>> out, [entry["event"] for entry in logs]
    (['Hel', 'lo'], ['stream.start', 'stream.first_token', 'stream.end'])
    """
    if level not in _LEVELS:
        raise ConfigError(f"level must be one of {_LEVELS}, got {level!r}")
    error_level: LogLevel = level if _LEVELS.index(level) > _LEVELS.index("warning") else "warning"
    log: Any = logger if logger is not None else structlog.get_logger("kagura")
    context: dict[str, Any] = {} if name is None else {"stream": redact(name)}

    def emit(event: str, at: LogLevel, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # a broken logger must never break the stream
            getattr(log, at)(event, **context, **fields)

    def _tee_log(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, subscribe_scheduler)
            started_at: datetime = sched.now
            first_at: datetime | None = None
            chunks = 0
            chars = 0
            usage: Usage | None = None  # the last Usage item seen
            ended = False

            def elapsed(since: datetime = started_at) -> float:
                return (sched.now - since).total_seconds()

            def counts() -> dict[str, Any]:
                return {"chunks": chunks, "chars": chars, "duration_s": elapsed()}

            def on_next(value: _T) -> None:
                nonlocal chunks, chars, first_at, usage
                if isinstance(value, Usage):
                    usage = value
                size = len(value) if isinstance(value, str) else 0
                chunks += 1
                chars += size
                if first_at is None:
                    first_at = sched.now
                    emit("stream.first_token", level, ttft_s=elapsed())
                if every_chunk:
                    emit(
                        "stream.chunk",
                        level,
                        index=chunks - 1,
                        chars=size,
                        text=redact(value if isinstance(value, str) else repr(value)),
                    )
                observer.on_next(value)

            def on_error(error: Exception) -> None:
                nonlocal ended
                ended = True
                emit(
                    "stream.error",
                    error_level,
                    error_type=type(error).__name__,
                    error=redact(str(error)),
                    **counts(),
                )
                observer.on_error(error)

            def on_completed() -> None:
                nonlocal ended
                ended = True
                writing_s = 0.0 if first_at is None else elapsed(first_at)
                known = usage if usage is not None or metrics is None else metrics.usage
                tokens = estimate_tokens(chars) if known is None else known.completion_tokens
                emit(
                    "stream.end",
                    level,
                    **counts(),
                    ttft_s=None if first_at is None else (first_at - started_at).total_seconds(),
                    tokens_per_s=tokens / writing_s if writing_s > 0 else None,
                    tokens_estimated=known is None or known.estimated,
                    **_answered_by(metrics),
                )
                observer.on_completed()

            def on_dispose() -> None:
                if not ended:
                    emit("stream.cancel", level, **counts())

            emit("stream.start", level)
            upstream = source.subscribe(
                on_next,
                on_error,
                deliver_errors(observer, on_completed),
                scheduler=subscribe_scheduler,
            )
            return CompositeDisposable(upstream, Disposable(on_dispose))

        return Observable(subscribe)

    return _tee_log


def _answered_by(metrics: StreamMetrics | None) -> dict[str, object]:
    """``model`` and ``attempts`` of the source's metrics, once a request has started."""
    if metrics is None or not metrics.attempts:
        return {}
    return {"model": metrics.model, "attempts": metrics.attempts}
