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

The AI SDK (``useChat``)
-----------------------
:func:`ui_message_stream_response` serves the same streams as the AI SDK's UI message
stream (protocol ``v1``: ``start``, ``text-*``, ``reasoning-*``, ``tool-*``, ``data-*``,
``error``, ``finish``, ``[DONE]``; the chunks are listed in :class:`UIMessageChunks`), and
:func:`messages_from_ui` reads the body ``useChat`` posts into kagura messages::

    async def chat(request):  # POST, from useChat's DefaultChatTransport
        messages = messages_from_ui(await request.body())
        return ui_message_stream_response(AgentStream.from_llm(messages, config))

An error is sent as an ``error`` chunk (kagura's redacted message), then ``finish``; a
client that goes away (``stop()``) closes the upstream request as above.

Relay streams: resume in the browser
------------------------------------
:func:`publish_stream` starts an answer through a :mod:`kagura.relay` relay, detached
from any request; :func:`relay_response` serves it with the events above, each with its
relay event id as the SSE ``id:``, so an ``EventSource`` that reconnects (it sends
``Last-Event-ID``) continues exactly where it stopped, a reloaded page reads the same
answer again, and a second tab follows it, on whichever worker it reaches::

    relay = MemoryRelay()  # one process; RedisRelay(url) shares streams between workers

    async def ask(request):  # POST: start an answer, say where to read it
        stream_id = new_stream_id()
        prompt = (await request.json())["prompt"]
        await publish_stream(relay, stream_id, AgentStream.from_llm(prompt, config))
        return JSONResponse({"stream": stream_id})

    async def answer(request):  # GET /answers/{stream_id}, from an EventSource
        return await relay_response(relay, request.path_params["stream_id"], request)

:func:`relay_ui_message_response` serves the same streams to the AI SDK's ``useChat``,
its resume request included.

This module needs the ``web`` extra: ``pip install 'kagura[web]'``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from typing import Any, Final

try:
    import anyio
    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
except ImportError as exc:  # pragma: no cover - exercised by a test with the modules hidden
    raise ImportError(
        "kagura.web needs Starlette and sse-starlette: pip install 'kagura[web]'"
    ) from exc

import pydantic_core
import structlog
from pydantic import BaseModel
from reactivex import Observable

from kagura import redact
from kagura._ui_stream import UI_MESSAGE_STREAM_HEADERS, UIMessageChunks, messages_from_ui
from kagura.errors import ConfigError, EntriesTrimmed, KaguraError, StreamNotFound
from kagura.events import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from kagura.llm.metrics import StreamMetrics
from kagura.pipes import AgentStream
from kagura.relay import Relay, RelayEntry

__all__ = [
    "UIMessageChunks",
    "messages_from_ui",
    "publish_stream",
    "relay_response",
    "relay_ui_message_response",
    "sse_events",
    "sse_response",
    "ui_message_events",
    "ui_message_stream_response",
]

_CLOSE_TIMEOUT: Final = 5.0
"""Seconds allowed for closing the stream (and its HTTP request) after a disconnect."""

_FIRST_STEP: Final = 0.5
"""Seconds relay_response waits for a read's first step before it sends the headers."""

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
        "metrics": _metrics_payload(metrics),
        "finish_reason": stream.finish_reason,
    }


def _metrics_payload(metrics: StreamMetrics) -> dict[str, Any]:
    return {
        "ttft_s": metrics.ttft_s,
        "tokens_per_s": metrics.tokens_per_s,
        "duration_s": metrics.duration_s,
        "chunks": metrics.chunks,
    }


# -- relay streams: resumable SSE ------------------------------------------------------------
async def publish_stream(
    relay: Relay,
    stream_id: str,
    stream: AgentStream[Any] | AsyncIterable[Any] | Observable[Any],
    *,
    owner: str | None = None,
    ttl: float = 3600.0,
) -> bool:
    """Start ``stream`` through ``relay`` under ``stream_id``, detached from the request.

    :meth:`~kagura.relay.Relay.publish` with one addition: an
    :class:`~kagura.pipes.AgentStream`'s usage, metrics and finish reason are appended
    after its items (as :class:`~kagura.Usage`, :class:`~kagura.StreamMetrics` and
    :class:`~kagura.Finish` events), so :func:`relay_response` can send the ``usage``
    event with the producer's timings. True if it started; False if
    the id is taken (nothing starts, and ``stream`` is not iterated).
    """
    source = _with_summary(stream) if isinstance(stream, AgentStream) else stream
    started = await relay.publish(stream_id, source, owner=owner, ttl=ttl)
    if not started and isinstance(source, AsyncGenerator):
        await source.aclose()  # never started: nothing to close upstream
    return started


async def _with_summary(stream: AgentStream[Any]) -> AsyncIterator[Any]:
    try:
        async for item in stream:
            yield item
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await stream.aclose()
    if stream.usage is not None:
        yield stream.usage
    yield stream.metrics  # its durations travel; its clock stays here
    yield Finish(stream.finish_reason)


async def relay_response(
    relay: Relay,
    stream_id: str,
    request: Request,
    *,
    owner: str | None = None,
    retry: int | None = 1000,
    ping: float = 15,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A relay stream as Server-Sent Events that a browser's ``EventSource`` resumes exactly.

    Every event that carries a relay event has that event's id as its SSE ``id:``, and the
    request's ``Last-Event-ID`` header (or, without one, its ``?after=`` parameter)
    continues strictly after that id: an ``EventSource`` that lost its connection
    reconnects by itself and gets exactly the rest. The events are those of
    :func:`sse_response`: ``delta`` for text (``str`` and :class:`~kagura.TextDelta`),
    ``partial`` for models and other JSON values, ``usage`` at the end if the stream
    carried :class:`~kagura.Usage`, :class:`~kagura.StreamMetrics` or
    :class:`~kagura.Finish` events (as :func:`publish_stream` appends; ``"metrics"`` is
    null without a ``StreamMetrics``), ``error`` for the producer's error,
    :class:`~kagura.errors.ProducerLost` or :class:`~kagura.errors.EntriesTrimmed`
    (with its ``resume_after``), and ``done`` last; the response then ends (close the
    ``EventSource`` on ``done``, or it reconnects and gets ``done`` again). Reasoning
    and tool-call deltas are not sent.

    Answered before any event: 404 for an unknown or expired id, or another ``owner``'s
    stream; 400 for a malformed stream id or a ``Last-Event-ID`` that is not an event
    id of this stream. ``retry`` (milliseconds, sent with the first event) is how soon
    the browser reconnects; ``ping`` and ``headers`` are as for :func:`sse_response`.
    A client that goes away stops only its own read, never the producer.
    """
    after = request.headers.get("last-event-id") or request.query_params.get("after") or None
    try:
        entries = relay.read(stream_id, after=after, owner=owner)
    except ConfigError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    first = asyncio.ensure_future(anext(entries))
    first.add_done_callback(_retrieved)
    try:
        # The first step reads storage at once (unknown id, foreign cursor), then waits
        # for the first event: answer with a status when it fails within this wait.
        await asyncio.wait({first}, timeout=_FIRST_STEP)
    except BaseException:
        await _stop_read(entries, first)
        raise
    error = first.exception() if first.done() and not first.cancelled() else None
    if isinstance(error, StreamNotFound | ConfigError):
        await _stop_read(entries, first)
        status = 404 if isinstance(error, StreamNotFound) else 400
        return PlainTextResponse(str(error), status_code=status)
    return EventSourceResponse(
        _relay_events(entries, first, retry=retry), headers=headers, ping=ping
    )


async def _relay_events(
    entries: AsyncIterator[RelayEntry],
    first: asyncio.Future[RelayEntry],
    *,
    retry: int | None,
) -> AsyncIterator[ServerSentEvent]:
    outcome = "completed"
    summary = _Summary()
    try:
        try:
            entry = await first
            while True:
                event = summary.event(entry)
                if event is not None:
                    event.retry, retry = retry, None  # the first event sets it
                    yield event
                entry = await anext(entries)
        except StopAsyncIteration:
            pass
    except Exception as exc:
        outcome = "failed"
        payload: dict[str, Any] = _error_payload(exc)
        if isinstance(exc, EntriesTrimmed):
            payload["resume_after"] = exc.resume_after
        yield ServerSentEvent(event="error", data=json.dumps(payload), retry=retry)
        retry = None
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await _stop_read(entries, first)
    if outcome == "completed" and summary.seen is not None:
        usage = json.dumps(summary.payload())
        yield ServerSentEvent(event="usage", data=usage, id=summary.seen, retry=retry)
        retry = None
    yield ServerSentEvent(event="done", data=json.dumps({"outcome": outcome}), retry=retry)


async def _stop_read(entries: AsyncIterator[RelayEntry], first: asyncio.Future[Any]) -> None:
    """End the read: its pending first step (cancelled), then the iterator."""
    if not first.done():
        first.cancel()
        await asyncio.wait({first})  # its outcome is moot now (_retrieved marks it seen)
    await _aclose(entries)


class _Summary:
    """Turns relay entries into SSE events, keeping the Usage and Finish events seen."""

    __slots__ = ("finish_reason", "metrics", "seen", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.metrics: StreamMetrics | None = None
        self.finish_reason: str | None = None
        self.seen: str | None = None  # the id of the last Usage, metrics or Finish event

    def event(self, entry: RelayEntry) -> ServerSentEvent | None:
        item = entry.event
        if isinstance(item, TextDelta):
            item = item.text
        if isinstance(item, Usage | Finish | StreamMetrics):
            if isinstance(item, Usage):
                self.usage = item
            elif isinstance(item, StreamMetrics):
                self.metrics = item
            else:
                self.finish_reason = item.reason
            self.seen = entry.id
            return None
        if isinstance(item, ReasoningDelta | ToolCallDelta):
            return None
        event = _item_event(item)
        if event is not None:
            event.id = entry.id
        return event

    def payload(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "estimated": usage.estimated,
            },
            "metrics": None if self.metrics is None else _metrics_payload(self.metrics),
            "finish_reason": self.finish_reason,
        }


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark the first read's failure as seen (a response never sent leaves it unread)."""
    if not task.cancelled():
        task.exception()


# -- the AI SDK's UI message stream ----------------------------------------------------------
def ui_message_stream_response(
    stream: AgentStream[Any] | AsyncIterable[Any],
    *,
    message_id: str | None = None,
    data_name: str | None = None,
    ping: float = 15,
    headers: Mapping[str, str] | None = None,
    status_code: int = 200,
    background: BackgroundTask | None = None,
) -> EventSourceResponse:
    """An ``EventSourceResponse`` streaming ``stream`` as the AI SDK's UI message stream.

    An :class:`~kagura.pipes.AgentStream` (not iterated yet) is read through
    :meth:`~kagura.pipes.AgentStream.with_events`, so the client sees the reasoning and,
    for an agent with tools, each call with its input and output beside the pipeline's
    items; any other async iterable is sent item by item (see :class:`UIMessageChunks`).
    ``message_id`` goes in the ``start`` chunk (the client makes one up without it);
    ``data_name`` names the ``data-*`` parts of models (default: the model's class name
    in kebab case). ``ping``, ``headers``, ``status_code`` and ``background`` are as for
    :func:`sse_response`; the response carries ``x-vercel-ai-ui-message-stream: v1``.
    """
    return EventSourceResponse(
        ui_message_events(stream, message_id=message_id, data_name=data_name),
        status_code=status_code,
        headers={**UI_MESSAGE_STREAM_HEADERS, **(headers or {})},
        background=background,
        ping=ping,
    )


def ui_message_events(
    stream: AgentStream[Any] | AsyncIterable[Any],
    *,
    message_id: str | None = None,
    data_name: str | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """The events :func:`ui_message_stream_response` sends, for another SSE response class.

    Raises :class:`~kagura.errors.StreamConsumedError` at once for an ``AgentStream``
    already iterated. Closing the generator (or cancelling the task that iterates it)
    closes ``stream``.
    """
    items: AsyncIterable[Any] = stream.with_events() if isinstance(stream, AgentStream) else stream
    chunks = UIMessageChunks(message_id=message_id, data_name=data_name)
    return _ui_message_events(stream, items, chunks)


async def _ui_message_events(
    stream: AgentStream[Any] | AsyncIterable[Any],
    items: AsyncIterable[Any],
    chunks: UIMessageChunks,
) -> AsyncIterator[ServerSentEvent]:
    for chunk in chunks.start():
        yield _chunk_event(chunk)
    failed = False
    try:
        async for item in items:
            for chunk in chunks.item(item):
                yield _chunk_event(chunk)
    except Exception as exc:
        failed = True
        payload = _error_payload(exc)
        for chunk in chunks.error(f"{payload['type']}: {payload['message']}"):
            yield _chunk_event(chunk)
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await _aclose(stream)
    if failed:
        reason: str | None = "error"
    elif isinstance(stream, AgentStream):
        reason = stream.finish_reason or chunks.last_finish_reason or "stop"
    else:
        reason = chunks.last_finish_reason or "stop"
    for chunk in chunks.finish(reason):
        yield _chunk_event(chunk)
    yield ServerSentEvent(data="[DONE]")


def _chunk_event(chunk: Mapping[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(chunk, separators=(",", ":")))


# -- the UI message stream of a relay stream -------------------------------------------------
async def relay_ui_message_response(
    relay: Relay,
    stream_id: str,
    *,
    owner: str | None = None,
    resume: bool = False,
    message_id: str | None = None,
    data_name: str | None = None,
    ping: float = 15,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A relay stream, from its start, as the AI SDK's UI message stream.

    Serve it after :func:`publish_stream` for ``useChat``'s POST, and with
    ``resume=True`` for its resume request (``GET <api>/<chat id>/stream``, made by
    ``useChat({resume: true})``): then a stream that is not running is answered 204 No
    Content, which the client reads as "nothing to resume". Otherwise 404 for an unknown
    id (or another ``owner``'s stream) and 400 for a malformed one. The chunks are those
    of :func:`ui_message_stream_response`; the client replaces its partial message with
    the replayed one. Tool calls and results do not survive the relay as such (an
    agent's :class:`~kagura.ToolCall` and :class:`~kagura.ToolResult` arrive as data).
    """
    try:
        status = await relay.status(stream_id, owner=owner)
    except ConfigError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    if resume and status != "running":
        return Response(status_code=204)
    if status == "unknown":
        return PlainTextResponse("no such stream", status_code=404)
    events = _relay_items(relay.read(stream_id, owner=owner))
    return EventSourceResponse(
        ui_message_events(events, message_id=message_id, data_name=data_name),
        headers={**UI_MESSAGE_STREAM_HEADERS, **(headers or {})},
        ping=ping,
    )


async def _relay_items(entries: AsyncIterator[RelayEntry]) -> AsyncIterator[Any]:
    try:
        async for entry in entries:
            yield entry.event
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await _aclose(entries)
