"""Sources: LLM streams and async iterables as cold ReactiveX Observables.

Each subscription starts its own request (creating the Observable sends
nothing); disposing the subscription cancels the pump task, which closes the
async iterator (``aclose``) and so the HTTP response. Errors arrive as
``on_error`` with kagura's typed errors; completion follows the stream's end.

Thread rule: subscribe on the thread that runs the asyncio event loop (the
adapter and :class:`~kagura.pipes.AgentStream` do). Items are emitted on that
loop's thread, with no thread hop per item.

>>> import asyncio, reactivex
>>> from kagura.pipes import from_llm, to_async_iterator
>>> from kagura.llm.config import LLMConfig
>>> async def main():
...     answer = from_llm("a b c", LLMConfig(model="kagura/echo"))
...     return [t async for t in to_async_iterator(answer)]
>>> asyncio.run(main())
['a ', 'b ', 'c']
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TypeVar, cast

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.subject import Subject

from kagura.events import (
    AgentEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolEvent,
    ToolResult,
)
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import Messages, prepare_request
from kagura.llm.streaming import open_event_stream
from kagura.pipes._demand import current_demand

__all__ = [
    "events_beside",
    "from_async_iterable",
    "from_llm",
    "from_llm_events",
    "reasoning_beside",
    "text_deltas",
]

T = TypeVar("T")

AsyncSource = AsyncIterable[T] | Callable[[], AsyncIterable[T]]


def from_async_iterable(source: AsyncSource[T]) -> Observable[T]:
    """Bridge an async iterable (or a factory of them) to a cold Observable.

    Pass a factory (``lambda: agen()``) for a source that can be subscribed
    more than once; an async generator object can be iterated only once.
    The iterator is closed (``aclose``) on completion, error and dispose; after
    each item the pump waits for the subscriber's demand (see :mod:`._demand`).

    Marble (each item as the iterator yields it)::

        iterator: a-b-c|
        result:   a-b-c|
    """

    def subscribe(
        observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "kagura sources must be subscribed on the asyncio event loop's thread "
                "(use kagura.pipes.to_async_iterator or AgentStream)"
            ) from None
        demand = current_demand.get()
        disposed = False

        async def pump() -> None:
            try:
                iterable = source() if callable(source) else source
                iterator: AsyncIterator[T] = aiter(iterable)
                if hasattr(iterator, "aclose"):
                    async with aclosing(cast(Any, iterator)):
                        await _drain(iterator)
                else:
                    await _drain(iterator)
            except asyncio.CancelledError:
                raise  # disposed: nobody is listening any more
            except Exception as exc:
                if not disposed:
                    observer.on_error(exc)
                return
            if not disposed:
                observer.on_completed()

        async def _drain(iterator: AsyncIterator[T]) -> None:
            async for item in iterator:
                observer.on_next(item)
                if disposed:  # disposed by on_next itself (take(n), a downstream error)
                    return
                if demand is not None and not demand.ready:
                    await demand.wait()

        task = loop.create_task(pump())
        loop_thread = threading.get_ident()

        def dispose() -> None:
            nonlocal disposed
            disposed = True
            if task.done() or loop.is_closed():
                return
            if threading.get_ident() != loop_thread:
                loop.call_soon_threadsafe(task.cancel)
            elif asyncio.current_task(loop) is not task:
                task.cancel()
            # else: called from the pump's own on_next. An iterator that needs no
            # await for its next item would never see a cancellation, so the pump
            # stops after this item and closes the iterator (see _drain).

        return Disposable(dispose)

    return reactivex.create(subscribe)


def from_llm_events(
    prompt_or_messages: str | Messages,
    config: LLMConfig | None = None,
    *,
    metrics: StreamMetrics | None = None,
    **kwargs: Any,
) -> Observable[StreamEvent]:
    """A cold Observable of the typed events of one LLM call per subscription.

    Events: :class:`~kagura.TextDelta`, :class:`~kagura.ToolCallDelta`,
    :class:`~kagura.Usage` (``estimated=True`` when the provider sent none) and
    :class:`~kagura.Finish`. ``metrics``, if given, is reset and filled in by
    each subscription (time to first token, chunks, usage...). Arguments are
    checked now, so a bad call fails here rather than at subscribe time.
    """
    request = prepare_request(prompt_or_messages, config, kwargs)

    def events() -> AsyncIterable[StreamEvent]:
        if metrics is not None:
            metrics.reset()
        return open_event_stream(request, metrics)

    return from_async_iterable(events)


def from_llm(
    prompt_or_messages: str | Messages,
    config: LLMConfig | None = None,
    *,
    metrics: StreamMetrics | None = None,
    **kwargs: Any,
) -> Observable[str]:
    """A cold Observable of the answer's text deltas (one request per subscription).

    Marble::

        network: --"Hel"--"lo"--"!"--|
        result:  --"Hel"--"lo"--"!"--|
    """
    return from_llm_events(prompt_or_messages, config, metrics=metrics, **kwargs).pipe(
        text_deltas()
    )


def text_deltas(
    record: list[str] | None = None,
    *,
    reasoning: list[str] | None = None,
) -> Callable[[Observable[AgentEvent]], Observable[str]]:
    """Keep only the text of :class:`~kagura.TextDelta` events, in one hop per event.

    ``record``, if given, is cleared at each subscription (a new request) and
    receives every text delta: the model's own text, whatever operators follow.
    ``reasoning``, likewise, receives every :class:`~kagura.ReasoningDelta`'s text.

    Marble (``t`` a text delta "t", ``u`` a usage event)::

        events: -t-u-t-|
        result: -t---t-|
    """

    def operator(source: Observable[AgentEvent]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if record is not None:
                record.clear()
            if reasoning is not None:
                reasoning.clear()

            def on_next(event: AgentEvent) -> None:
                if isinstance(event, TextDelta):
                    if record is not None:
                        record.append(event.text)
                    observer.on_next(event.text)
                elif reasoning is not None and isinstance(event, ReasoningDelta):
                    reasoning.append(event.text)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator


def reasoning_beside(
    pipeline: Callable[[Observable[str]], Observable[T]],
    record: list[str] | None = None,
    *,
    reasoning: list[str] | None = None,
) -> Callable[[Observable[AgentEvent]], Observable[ReasoningDelta | T]]:
    """The text through ``pipeline``, with each :class:`~kagura.ReasoningDelta` passed on as
    it arrives, in one subscription (one request).

    ``record`` and ``reasoning`` are filled as by :func:`text_deltas`. The result ends
    when the pipeline ends (after its last flush), and fails with its error or the
    source's.

    Marble (``r`` a reasoning delta, ``t`` a text delta, ``pipeline`` the identity)::

        events: -r-r-t-t-|
        result: -r-r-t-t-|
    """
    return _beside(pipeline, record, reasoning, (ReasoningDelta,))


def events_beside(
    pipeline: Callable[[Observable[str]], Observable[T]],
    record: list[str] | None = None,
    *,
    reasoning: list[str] | None = None,
) -> Callable[[Observable[AgentEvent]], Observable[ReasoningDelta | ToolEvent | T]]:
    """:func:`reasoning_beside`, with the tool events passed on too: each
    :class:`~kagura.ToolCallDelta`, and the tool loop's :class:`~kagura.ToolCall` and
    :class:`~kagura.ToolResult`. Usage and finish events stay out (read them from the
    metrics).

    Marble (``d`` a tool-call delta, ``c`` a complete call, ``o`` its result, ``t`` text)::

        events: -d-d-c-o-t-|
        result: -d-d-c-o-t-|
    """
    return _beside(
        pipeline, record, reasoning, (ReasoningDelta, ToolCallDelta, ToolCall, ToolResult)
    )


def _beside(
    pipeline: Callable[[Observable[str]], Observable[T]],
    record: list[str] | None,
    reasoning: list[str] | None,
    kinds: tuple[type[Any], ...],
) -> Callable[[Observable[AgentEvent]], Observable[Any]]:
    def operator(source: Observable[AgentEvent]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            text: Subject[str] = Subject()
            answer = pipeline(text).subscribe(
                observer.on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

            def on_next(event: AgentEvent) -> None:
                if isinstance(event, TextDelta):
                    if record is not None:
                        record.append(event.text)
                    text.on_next(event.text)
                elif isinstance(event, kinds):
                    if reasoning is not None and isinstance(event, ReasoningDelta):
                        reasoning.append(event.text)
                    observer.on_next(event)

            if record is not None:
                record.clear()
            if reasoning is not None:
                reasoning.clear()
            events = source.subscribe(
                on_next, text.on_error, text.on_completed, scheduler=scheduler
            )
            return CompositeDisposable(events, answer)

        return Observable(subscribe)

    return operator
