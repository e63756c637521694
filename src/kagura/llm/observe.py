"""How an observer (:mod:`kagura.telemetry`) sees LLM calls, agent runs and tool calls.

The core reads :data:`observer` once per call, agent run and tool call; while it is
``None`` (nothing installed) nothing else happens, and no chunk is ever observed one by
one: an observation starts with the call and ends with it, reading the call's
:class:`~kagura.llm.metrics.StreamMetrics`. This module imports nothing beyond kagura;
:func:`kagura.telemetry.instrument` installs an observer, ``uninstrument`` removes it.

>>> import asyncio
>>> from kagura.events import Completion
>>> class Echo:
...     name = "echo"
...     async def complete(self, request):
...         return Completion(text="hi")
>>> request = ChatRequest([{"role": "user", "content": "hi"}], LLMConfig(model="kagura/echo"))
>>> asyncio.run(complete(Echo(), request))  # no observer installed: none made
(Completion(text='hi', tool_calls=(), usage=None, finish_reason=None, reasoning=''), None)
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from kagura.events import Completion, ToolCall
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import ChatRequest
from kagura.llm.transports.base import Transport

__all__ = ["Observation", "Observer", "complete", "install", "observer"]


class Observation(Protocol):
    """One observed operation: an LLM call, an agent run or a tool call.

    An operation that is one ``await`` uses it as a context manager (``with``), which
    makes it the current operation and ends it, failed if an exception leaves the
    block. A stream ends it with :meth:`stream_ended` when the stream ends, however it
    ends; it is never made current (a generator's context is its consumer's).
    """

    def __enter__(self) -> Observation: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def answered(self, completion: Completion) -> None:
        """A whole (not streamed) answer came: its usage, finish reason and content."""
        ...

    def tool_returned(self, result: str) -> None:
        """A tool call returned ``result`` (what goes back to the model)."""
        ...

    def stream_ended(
        self, metrics: StreamMetrics, text: Sequence[str], error: BaseException | None
    ) -> None:
        """The stream ended: ``error`` is what ended it early (``GeneratorExit`` for a
        consumer that stopped, ``CancelledError``, a kagura error), None at its end."""
        ...


class Observer(Protocol):
    """Makes an :class:`Observation` for each operation (one per call, never per chunk).

    ``parent`` is the observation the operation belongs to when the caller knows it (the
    tool loop's agent run and LLM calls); None means the current one, if any.
    """

    def llm_call(
        self, request: ChatRequest, *, stream: bool, parent: Observation | None = None
    ) -> Observation: ...

    def agent_run(self, name: str, config: LLMConfig, *, stream: bool) -> Observation: ...

    def tool_call(self, call: ToolCall, *, parent: Observation | None = None) -> Observation: ...


observer: Observer | None = None
"""The installed observer, or None (the default: nothing is observed)."""


def install(new: Observer | None) -> None:
    """Install an observer (None removes it); operations already running keep theirs."""
    global observer
    observer = new


async def complete(
    transport: Transport, request: ChatRequest
) -> tuple[Completion, Observation | None]:
    """``transport.complete(request)``, observed as one LLM call when an observer is installed.

    Returns the completion and its observation (None without an observer), the parent of
    the tool calls it asks for.
    """
    current = observer
    if current is None:
        return await transport.complete(request), None
    with current.llm_call(request, stream=False) as call:
        completion = await transport.complete(request)
        call.answered(completion)
    return completion, call
