"""call_llm_stream (the seed's streaming API) and the event stream beneath it.

>>> import asyncio
>>> from kagura.llm.config import LLMConfig
>>> async def main():
...     return [c async for c in call_llm_stream("one two three", LLMConfig(model="kagura/echo"))]
>>> asyncio.run(main())
['one ', 'two ', 'three']

Closing the iterator early (``break`` inside ``async with aclosing(...)``,
``aclose()``, or cancelling the task) closes the HTTP response at once. A
plain ``break`` without ``aclosing`` relies on the event loop's async-generator
finalizer, which CPython runs as soon as the iterator is no longer referenced.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from kagura._redact import redact_error
from kagura.errors import FirstTokenTimeout, IdleTimeout, KaguraError, LLMError, StreamError
from kagura.events import (
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from kagura.llm import observe
from kagura.llm.config import LLMConfig
from kagura.llm.failover import failover_events, uses_failover
from kagura.llm.metrics import StreamMetrics, estimate_tokens
from kagura.llm.request import ChatRequest, Messages, prepare_request
from kagura.llm.transports import resolve_transport

__all__ = [
    "Finish",
    "ReasoningDelta",
    "StreamEvent",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "call_llm_stream",
    "open_event_stream",
    "stream_events",
    "stream_to_string",
]


class _ToolCallAccumulator:
    """Joins tool-call deltas by index into complete calls."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: dict[int, tuple[str, str, list[str]]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        call_id, name, args = self._parts.get(delta.index, ("", "", []))
        args.append(delta.arguments)
        self._parts[delta.index] = (delta.id or call_id, delta.name or name, args)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=i, name=n, arguments="".join(a))
            for _, (i, n, a) in sorted(self._parts.items())
        ]


async def open_event_stream(
    request: ChatRequest,
    metrics: StreamMetrics | None = None,
    *,
    observation: observe.Observation | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """Run one request through its transport; record metrics; apply the config's timeouts.

    Every failure is a :class:`~kagura.errors.LLMError` carrying the text
    received so far and the usage known so far. If the provider reports no
    usage, an estimated :class:`Usage` is yielded before the end. ``observation``
    is this call's when the caller made it (the tool loop); else one is made if an
    observer is installed (:mod:`kagura.llm.observe`). It ends with the stream.
    """
    if observation is None and observe.observer is not None:
        observation = observe.observer.llm_call(request, stream=True)
    config = request.config
    m = metrics if metrics is not None else StreamMetrics()
    m.started_at = time.perf_counter()
    text_parts: list[str] = []
    tools = _ToolCallAccumulator()
    racing = uses_failover(config)
    ended = False  # ran to its end: sys.exception() in `finally` is then not ours
    try:
        if racing:  # each attempt keeps its own first-token timeout
            source = failover_events(request, m)
        else:
            source = resolve_transport(config).stream(request)
            m.model, m.attempts = config.model, 1
        async with aclosing(source) as events:
            iterator = aiter(events)
            while True:
                if m.first_token_at is not None:
                    limit = config.idle_timeout
                else:
                    limit = None if racing else config.first_token_timeout
                try:
                    if limit is None:
                        event = await anext(iterator)
                    else:
                        async with asyncio.timeout(limit):
                            event = await anext(iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    if m.first_token_at is None:
                        raise FirstTokenTimeout(
                            f"no token from {config.model!r} within {limit} s", model=config.model
                        ) from exc
                    raise IdleTimeout(
                        f"{config.model!r} sent nothing for {limit} s", model=config.model
                    ) from exc
                if isinstance(event, TextDelta):
                    if m.first_token_at is None:
                        m.first_token_at = time.perf_counter()
                    m.chunks += 1
                    m.chars += len(event.text)
                    text_parts.append(event.text)
                elif isinstance(event, ReasoningDelta):
                    if m.first_token_at is None:
                        m.first_token_at = time.perf_counter()
                    m.reasoning_chars += len(event.text)
                elif isinstance(event, ToolCallDelta):
                    if m.first_token_at is None:
                        m.first_token_at = time.perf_counter()
                    tools.add(event)
                elif isinstance(event, Usage):
                    m.usage = event
                elif m.finish_reason is None:  # Finish: keep the first reason given
                    m.finish_reason = event.reason
                yield event
        m.tool_calls = tools.calls()
        if m.usage is None:
            m.usage = _estimated_usage(request, m.chars + m.reasoning_chars)
            yield m.usage
        ended = True
    except LLMError as exc:
        exc.with_progress(partial_text="".join(text_parts), usage=m.usage)
        redact_error(exc)  # whatever a transport quoted, no credential leaves this layer
        raise
    except KaguraError:  # ConfigError (a ValueError): the caller's mistake, as raised
        raise
    except (OSError, ValueError) as exc:  # a transport bug or a broken socket, typed for the caller
        raise redact_error(
            StreamError(
                f"stream from {config.model!r} failed: {type(exc).__name__}",
                model=config.model,
                partial_text="".join(text_parts),
                usage=m.usage,
            )
        ) from redact_error(exc)
    finally:
        m.ended_at = time.perf_counter()
        if observation is not None:
            observation.stream_ended(m, text_parts, None if ended else sys.exception())


def _estimated_usage(request: ChatRequest, completion_chars: int) -> Usage:
    prompt_chars = sum(len(str(msg.get("content") or "")) for msg in request.messages)
    p, c = estimate_tokens(prompt_chars), estimate_tokens(completion_chars)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c, estimated=True)


async def stream_events(
    prompt_or_messages: str | Messages,
    config: LLMConfig | None = None,
    *,
    metrics: StreamMetrics | None = None,
    **kwargs: Any,
) -> AsyncGenerator[StreamEvent, None]:
    """Stream typed events (text, tool-call deltas, usage, finish) for one call."""
    request = prepare_request(prompt_or_messages, config, kwargs)
    async with aclosing(open_event_stream(request, metrics)) as events:
        async for event in events:
            yield event


async def call_llm_stream(
    prompt_or_messages: str | Messages, config: LLMConfig | None = None, **kwargs: Any
) -> AsyncGenerator[str, None]:
    """Stream the answer's text as it arrives: only non-empty deltas, never cached.

    Extra ``kwargs`` go to the provider; names that belong to :class:`LLMConfig`
    raise :class:`~kagura.errors.ConfigError`.
    """
    request = prepare_request(prompt_or_messages, config, kwargs)
    async with aclosing(open_event_stream(request)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                yield event.text


async def stream_to_string(stream: AsyncIterator[str]) -> str:
    """Drain a text stream and return the whole text (closing the stream).

    >>> import asyncio
    >>> asyncio.run(stream_to_string(call_llm_stream("a b", LLMConfig(model="kagura/echo"))))
    'a b'
    """
    parts: list[str] = []
    if hasattr(stream, "aclose"):
        async with aclosing(stream):  # type: ignore[type-var] (checked by hasattr)
            async for chunk in stream:
                parts.append(chunk)
    else:
        async for chunk in stream:
            parts.append(chunk)
    return "".join(parts)
