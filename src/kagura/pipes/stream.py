"""AgentStream: one streamed answer, with several typed views.

Iterate it for the pipeline's output; ``await text()`` for the whole text;
``usage``, ``finish_reason``, ``tool_calls`` and ``metrics`` once it has run;
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
from kagura.events import StreamEvent, ToolCall, Usage
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import Messages
from kagura.pipes.adapter import DEFAULT_MAX_BUFFER, ObservableIterator, to_async_iterator
from kagura.pipes.source import from_llm_events, text_deltas

__all__ = ["AgentStream", "Operator", "StreamOutcome"]

T = TypeVar("T")

StreamOutcome = Literal["completed", "failed", "closed"]
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
    ) -> None:
        self._observable = observable
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
        events: Observable[StreamEvent],
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
        text: Observable[Any] = events.pipe(text_deltas(raw))
        for operator in [pipeline] if callable(pipeline) else pipeline:
            text = operator(text)
        return AgentStream(
            text, metrics=metrics, raw_text=lambda: "".join(raw), max_buffer=max_buffer
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
        pipeline of other items (parsed models), the model's raw text.
        """
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
        if not self._outputs:
            raise ParseError("the stream ended without an item", raw_text=self.partial_text)
        return self._outputs[-1]

    @property
    def partial_text(self) -> str:
        """The model's text received so far (whatever the pipeline did with it)."""
        return self._raw_text() if self._raw_text is not None else ""

    async def aclose(self) -> None:
        """Stop early: closes the HTTP stream at once. Idempotent."""
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
