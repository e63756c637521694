"""AgentStream: one streamed answer, with several typed views.

Iterate it for the pipeline's output; ``await text()`` for the whole text;
``usage``, ``finish_reason``, ``tool_calls`` and ``metrics`` once it has run;
``reasoning`` for the model's thinking so far, and :meth:`AgentStream.with_reasoning`
for a view that streams it before (and beside) the answer (:meth:`AgentStream.with_events`
adds the tool loop's calls and results);
``.observable`` to compose further (a new, independent request per
subscription). It is consumed once: a second ``async for`` raises
:class:`~kagura.errors.StreamConsumedError`.

>>> import asyncio
>>> from kagura.llm.config import LLMConfig
>>> from kagura.pipes import AgentStream
>>> async def main():
...     stream = AgentStream.from_llm("Hello there", LLMConfig(model="kagura/echo"))
...     chunks = [c async for c in stream]
...     return chunks, await stream.text(), stream.finish_reason, stream.metrics.chunks
>>> asyncio.run(main())
(['Hello ', 'there'], 'Hello there', 'stop', 2)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast

from reactivex import Observable

from kagura.errors import ParseError, StreamConsumedError
from kagura.events import (
    AgentEvent,
    ReasoningDelta,
    ToolCall,
    ToolCallDelta,
    ToolEvent,
    ToolResult,
    Usage,
)
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import Messages
from kagura.pipes.adapter import DEFAULT_MAX_BUFFER, ObservableIterator, to_async_iterator
from kagura.pipes.source import events_beside, from_llm_events, reasoning_beside, text_deltas

__all__ = ["AgentStream", "Operator", "StreamOutcome"]

T = TypeVar("T")

StreamOutcome = Literal["completed", "failed", "closed"]
_SIDE_EVENTS = (ReasoningDelta, ToolCallDelta, ToolCall, ToolResult)
Operator = Callable[[Observable[Any]], Observable[Any]]
"""A pipeline stage: a function from Observable to Observable (every kagura operator)."""


class AgentStream(Generic[T]):
    """A streamed answer: an async iterator over ``T`` plus text, usage and metrics."""

    def __init__(
        self,
        observable: Observable[T],
        *,
        metrics: StreamMetrics | None = None,
        raw_text: Callable[[], str] | None = None,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        reasoning_text: Callable[[], str] | None = None,
        with_reasoning: Callable[[], Observable[ReasoningDelta | T]] | None = None,
        with_events: Callable[[], Observable[ReasoningDelta | ToolEvent | T]] | None = None,
    ) -> None:
        self._observable = observable
        self._reasoning_text = reasoning_text
        self._with_reasoning = with_reasoning
        self._with_events = with_events
        self._view: AgentStream[Any] | None = None  # with_reasoning()'s (or with_events()'s)
        self._metrics = metrics if metrics is not None else StreamMetrics()
        self._raw_text = raw_text
        self._max_buffer = max_buffer
        self._iterator: ObservableIterator[T] | None = None
        self._iterated = False
        self._outputs: list[T] = []
        self._outcome: StreamOutcome | None = None
        self._failure: Exception | None = None  # what ended it, raised again by text()/final()
        self._callbacks: list[Callable[[AgentStream[T], StreamOutcome], None]] = []

    @classmethod
    def from_llm(
        cls,
        prompt_or_messages: str | Messages,
        config: LLMConfig | None = None,
        *,
        pipeline: Operator | Sequence[Operator] = (),
        max_buffer: int = DEFAULT_MAX_BUFFER,
        **kwargs: Any,
    ) -> AgentStream[Any]:
        """Stream one LLM call through ``pipeline`` (an operator or a list of them)."""
        metrics = StreamMetrics()
        events = from_llm_events(prompt_or_messages, config, metrics=metrics, **kwargs)
        return cls.from_events(events, metrics=metrics, pipeline=pipeline, max_buffer=max_buffer)

    @classmethod
    def from_events(
        cls,
        events: Observable[AgentEvent],
        *,
        metrics: StreamMetrics | None = None,
        pipeline: Operator | Sequence[Operator] = (),
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> AgentStream[Any]:
        """An AgentStream over an event Observable: its text deltas through ``pipeline``.

        ``metrics`` is the object the event source fills in (see
        :func:`~kagura.pipes.from_llm_events`); the model's raw text is recorded
        before the pipeline, for :meth:`text` and :attr:`partial_text`.
        """
        raw: list[str] = []
        thoughts: list[str] = []
        operators = [pipeline] if callable(pipeline) else list(pipeline)

        def through_pipeline(text: Observable[str]) -> Observable[Any]:
            out: Observable[Any] = text
            for operator in operators:
                out = operator(out)
            return out

        return AgentStream(
            through_pipeline(events.pipe(text_deltas(raw, reasoning=thoughts))),
            metrics=metrics,
            raw_text=lambda: "".join(raw),
            max_buffer=max_buffer,
            reasoning_text=lambda: "".join(thoughts),
            with_reasoning=lambda: events.pipe(
                reasoning_beside(through_pipeline, raw, reasoning=thoughts)
            ),
            with_events=lambda: events.pipe(
                events_beside(through_pipeline, raw, reasoning=thoughts)
            ),
        )

    # -- views -------------------------------------------------------------------------
    @property
    def observable(self) -> Observable[T]:
        """The pipeline as an Observable; each subscription makes its own request."""
        return self._observable

    @property
    def metrics(self) -> StreamMetrics:
        """Time to first token, duration, chunks, chars, tokens per second."""
        return self._metrics

    @property
    def usage(self) -> Usage | None:
        """Token usage (``usage.estimated`` if the provider reported none)."""
        return self._metrics.usage

    @property
    def finish_reason(self) -> str | None:
        return self._metrics.finish_reason

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self._metrics.tool_calls

    @property
    def outcome(self) -> StreamOutcome | None:
        """``"completed"``, ``"failed"``, ``"closed"`` (stopped early), or None while running."""
        return self._outcome

    def add_done_callback(self, callback: Callable[[AgentStream[T], StreamOutcome], None]) -> None:
        """Call ``callback(stream, outcome)`` once when the stream ends, fails or is closed."""
        if self._outcome is not None:
            callback(self, self._outcome)
        else:
            self._callbacks.append(callback)

    # -- iteration -----------------------------------------------------------------------
    def __aiter__(self) -> AgentStream[T]:
        if self._iterated:
            raise StreamConsumedError(
                "this AgentStream was already iterated; call the agent again for a new stream, "
                "or use .observable to compose a new pipeline"
            )
        self._iterated = True
        return self

    async def __anext__(self) -> T:
        if self._outcome is not None:
            raise StopAsyncIteration
        if self._iterator is None:
            self._iterator = to_async_iterator(self._observable, max_buffer=self._max_buffer)
        try:
            item = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._finish("completed")
            raise
        except asyncio.CancelledError:  # the consuming task was cancelled: stopped early
            self._finish("closed")
            raise
        except Exception as exc:
            self._failure = exc
            self._finish("failed")
            raise
        except BaseException:
            self._finish("failed")
            raise
        self._outputs.append(item)
        return item

    async def text(self) -> str:
        """Drain the rest of the stream and return the whole text.

        For a text pipeline, the concatenation of everything it emitted; for a
        pipeline of other items (parsed models), the model's raw text. After
        :meth:`with_reasoning`, the view's answer (it made the one request).
        """
        if self._view is not None:
            await self._view.text()
            return self.partial_text
        if self._outcome is None:
            self._iterated = True
            while True:
                try:
                    await self.__anext__()
                except StopAsyncIteration:
                    break
        if self._failure is not None:  # it failed: say so again, never a partial answer
            raise self._failure
        if all(isinstance(o, str) for o in self._outputs) and self._outputs:
            return "".join(cast(list[str], self._outputs))
        if self._raw_text is not None:
            return self._raw_text()
        return "".join(str(o) for o in self._outputs)

    async def final(self) -> T:
        """Drain the stream and return its last item (the complete parsed model, say)."""
        await self.text()
        outputs = self._outputs
        if self._view is not None:  # the view's items, without its reasoning and tool events
            outputs = [o for o in self._view._outputs if not isinstance(o, _SIDE_EVENTS)]
        if not outputs:
            raise ParseError("the stream ended without an item", raw_text=self.partial_text)
        return cast(T, outputs[-1])

    @property
    def partial_text(self) -> str:
        """The model's text received so far (whatever the pipeline did with it)."""
        return self._raw_text() if self._raw_text is not None else ""

    @property
    def reasoning(self) -> str:
        """The model's reasoning received so far (Anthropic thinking, Gemini thoughts,
        ``reasoning_content``): never part of the text or the pipeline's items."""
        return self._reasoning_text() if self._reasoning_text is not None else ""

    def with_reasoning(self) -> AgentStream[ReasoningDelta | T]:
        """This stream as a view that yields each :class:`~kagura.ReasoningDelta` as it
        arrives, beside the pipeline's items (one request, the same metrics).

        Use it instead of iterating this stream, not after::

            async for item in stream.with_reasoning():
                if isinstance(item, ReasoningDelta):
                    show_thinking(item.text)
                else:
                    show_answer(item)
        """
        return self._make_view("with_reasoning", self._with_reasoning)

    def with_events(self) -> AgentStream[ReasoningDelta | ToolEvent | T]:
        """:meth:`with_reasoning`, with the tool events beside the items too: each
        :class:`~kagura.ToolCallDelta` as the model writes a call and, from an agent's
        tool loop, each complete :class:`~kagura.ToolCall` before it runs and its
        :class:`~kagura.ToolResult` after (what :mod:`kagura.web`'s UI message stream
        shows). One request, the same metrics; use it instead of iterating this stream.
        """
        return self._make_view("with_events", self._with_events)

    def _make_view(
        self, name: str, source: Callable[[], Observable[Any]] | None
    ) -> AgentStream[Any]:
        if self._iterated:
            raise StreamConsumedError(
                f"{name}() is a view of a stream not yet iterated; call it first"
            )
        self._iterated = True  # the view makes the request; this stream makes none
        if source is None:  # no event source: nothing but the items
            view: AgentStream[Any] = AgentStream(
                self._observable, metrics=self._metrics, max_buffer=self._max_buffer
            )
        else:
            view = AgentStream(
                source(),
                metrics=self._metrics,
                raw_text=self._raw_text,
                max_buffer=self._max_buffer,
                reasoning_text=self._reasoning_text,
            )
        self._view = view
        view.add_done_callback(self._view_done)  # this stream ends as its view does
        return view

    def _view_done(self, view: AgentStream[Any], outcome: StreamOutcome) -> None:
        self._failure = view._failure
        self._finish(outcome)

    async def aclose(self) -> None:
        """Stop early: closes the HTTP stream at once. Idempotent."""
        if self._view is not None:
            await self._view.aclose()
        if self._iterator is not None:
            await self._iterator.aclose()
        self._iterated = True
        if self._outcome is None:
            self._finish("closed")

    async def __aenter__(self) -> AgentStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _finish(self, outcome: StreamOutcome) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self, outcome)

    def __del__(self) -> None:
        # Dropped while running, neither finished nor closed. This stream holds the
        # only reference to its iterator (the source holds it weakly), and a dropped
        # iterator disposes its subscription, closing the HTTP stream: let go of it
        # first, then report "closed". A stream never iterated sent nothing.
        if getattr(self, "_iterator", None) is None or self._outcome is not None:
            return
        self._iterator = None
        self._finish("closed")

    def __repr__(self) -> str:
        state = self._outcome or ("running" if self._iterated else "not started")
        return f"<AgentStream {state} chunks={self._metrics.chunks} chars={self._metrics.chars}>"
