"""Server-Sent Events for Starlette and FastAPI: stream an answer to a browser.

:func:`sse_response` turns an :class:`~kagura.pipes.AgentStream` (or any async
iterable of text and models) into sse-starlette's ``EventSourceResponse``::

    from kagura import AgentStream, LLMConfig
    from kagura.web import sse_response

    async def answer(request):  # a Starlette route, or a FastAPI path operation
        prompt = request.query_params["prompt"]
        return sse_response(AgentStream.from_llm(prompt, LLMConfig(model="gpt-4o-mini")))

The events, in order:

``delta``
    a text item, as is (line breaks arrive as ``\\n``, which ``EventSource`` joins).
``partial``
    a model item as JSON: pydantic models with ``model_dump_json()`` (a partial model
    from ``parse_model(Model, partial=True)`` lists the fields it has so far); other
    objects with pydantic's ``to_json``.
``usage``
    once the stream has ended, for an ``AgentStream``:
    ``{"usage": {"prompt_tokens", "completion_tokens", "total_tokens", "estimated"},
    "metrics": {"ttft_s", "tokens_per_s", "duration_s", "chunks"}, "finish_reason"}``
    (``"usage": null`` when unknown).
``error``
    ``{"type", "message"}`` if the stream failed: kagura's errors keep their type and
    (redacted) message; any other exception is reported as ``InternalError`` with a
    generic message, and logged on the server.
``done``
    last, always: ``{"outcome": "completed"}`` or ``{"outcome": "failed"}``.

A client that goes away cancels the stream, which closes the upstream HTTP request
to the model at once. ``EventSource`` reconnects by itself when a response ends, and
a reconnect is a new (paid) request: close it on ``done``.

>>> import asyncio
>>> from kagura import AgentStream, LLMConfig
>>> async def events():
...     stream = AgentStream.from_llm("Hi there", LLMConfig(model="kagura/echo"))
...     return [(e.event, e.data) async for e in sse_events(stream)]
>>> asyncio.run(events())  # doctest: +ELLIPSIS
[('delta', 'Hi '), ('delta', 'there'), ('usage', '{"usage": {"prompt_tokens": 2, ...'), \
('done', '{"outcome": "completed"}')]

This module needs the ``web`` extra: ``pip install 'kagura[web]'``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any, Final

try:
    import anyio
    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.background import BackgroundTask
except ImportError as exc:  # pragma: no cover - exercised by a test with the modules hidden
    raise ImportError(
        "kagura.web needs Starlette and sse-starlette: pip install 'kagura[web]'"
    ) from exc

import pydantic_core
import structlog
from pydantic import BaseModel

from kagura import redact
from kagura.errors import KaguraError
from kagura.pipes import AgentStream

__all__ = ["sse_events", "sse_response"]

_CLOSE_TIMEOUT: Final = 5.0
"""Seconds allowed for closing the stream (and its HTTP request) after a disconnect."""

_log = structlog.get_logger("kagura.web")


def sse_response(
    stream: AgentStream[Any] | AsyncIterable[Any],
    *,
    ping: float = 15,
    headers: Mapping[str, str] | None = None,
    status_code: int = 200,
    background: BackgroundTask | None = None,
) -> EventSourceResponse:
    """An ``EventSourceResponse`` streaming ``stream`` as ``delta``/``partial``/``usage``/``done``.

    ``ping`` is the keep-alive comment interval in seconds (0 disables it);
    ``headers``, ``status_code`` and ``background`` are Starlette's. See the module
    documentation for the events.
    """
    return EventSourceResponse(
        sse_events(stream),
        status_code=status_code,
        headers=headers,
        background=background,
        ping=ping,
    )


async def sse_events(
    stream: AgentStream[Any] | AsyncIterable[Any],
) -> AsyncIterator[ServerSentEvent]:
    """The events :func:`sse_response` sends, for use with another SSE response class.

    Closing this generator (or cancelling the task that iterates it) closes ``stream``.
    """
    outcome = "completed"
    try:
        async for item in stream:
            event = _item_event(item)
            if event is not None:
                yield event
    except Exception as exc:
        outcome = "failed"
        yield ServerSentEvent(event="error", data=json.dumps(_error_payload(exc)))
    finally:
        # A client disconnect arrives as a cancellation: shield the close from it, so
        # the upstream request is closed now rather than at garbage collection.
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await _aclose(stream)
    if outcome == "completed" and isinstance(stream, AgentStream):
        yield ServerSentEvent(event="usage", data=json.dumps(_usage_payload(stream)))
    yield ServerSentEvent(event="done", data=json.dumps({"outcome": outcome}))


def _item_event(item: object) -> ServerSentEvent | None:
    if isinstance(item, str):
        return ServerSentEvent(event="delta", data=item) if item else None
    if isinstance(item, BaseModel):
        return ServerSentEvent(event="partial", data=item.model_dump_json())
    return ServerSentEvent(event="partial", data=pydantic_core.to_json(item).decode())


async def _aclose(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _error_payload(exc: Exception) -> dict[str, str]:
    """What the browser may see: kagura's own (redacted) messages, nothing else."""
    if isinstance(exc, KaguraError):
        _log.warning("sse.error", error_type=type(exc).__name__, error=redact(str(exc)))
        return {"type": type(exc).__name__, "message": redact(str(exc))}
    _log.error("sse.error", error_type=type(exc).__name__, error=redact(str(exc)))
    return {"type": "InternalError", "message": "the stream failed on the server"}


def _usage_payload(stream: AgentStream[Any]) -> dict[str, Any]:
    usage = stream.usage
    metrics = stream.metrics
    return {
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "estimated": usage.estimated,
        },
        "metrics": {
            "ttft_s": metrics.ttft_s,
            "tokens_per_s": metrics.tokens_per_s,
            "duration_s": metrics.duration_s,
            "chunks": metrics.chunks,
        },
        "finish_reason": stream.finish_reason,
    }
