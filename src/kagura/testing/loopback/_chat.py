"""The Chat Completions emulator: each request plays the next queued :class:`Script`.

:func:`plan` turns a script into the events of a stream, :func:`completion` into a
whole answer; :class:`ChatEmulator` sends one or the other, with the script's timing
and faults, and counts the streams.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kagura.llm import metrics
from kagura.testing.loopback import _wire
from kagura.testing.loopback._http import Connection, RecordedRequest
from kagura.testing.loopback._script import Script, ScriptedToolCall
from kagura.testing.loopback._stats import Counters

__all__ = ["ChatEmulator", "completion", "plan"]


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event to send after ``delay`` seconds."""

    delay: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Context:
    """What a script's answer takes from its request."""

    id: str
    created: int
    model: str
    prompt_tokens: int
    include_usage: bool


def _calls(script: Script) -> list[tuple[int, str, ScriptedToolCall]]:
    """Each tool call with its index and id (defaults filled in)."""
    out: list[tuple[int, str, ScriptedToolCall]] = []
    for position, call in enumerate(script.tool_calls):
        index = position if call.index is None else call.index
        out.append((index, call.id or f"call_loopback_{index}", call))
    return out


def _usage(script: Script, ctx: Context) -> dict[str, int]:
    if script.usage is not None:
        return dict(script.usage)
    chars = sum(map(len, script.content))
    chars += sum(len(call.name) + sum(map(len, call.arguments)) for call in script.tool_calls)
    completion = metrics.estimate_tokens(chars)
    return {
        "prompt_tokens": ctx.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": ctx.prompt_tokens + completion,
    }


def _finish_reason(script: Script) -> str:
    if script.finish_reason is not None:
        return script.finish_reason
    return "tool_calls" if script.tool_calls else "stop"


def plan(script: Script, ctx: Context) -> tuple[Event, list[Event], list[Event]]:
    """The first event, the counted events (faults count these), and the tail."""
    if script.recorded_events is not None:
        events = list(script.recorded_events) or [b""]
        tail: list[Event] = []
        if len(events) > 1 and events[-1].strip() == _wire.DONE.strip():
            tail.append(Event(script.chunk_delay, events.pop()))
        body = [Event(script.chunk_delay, e) for e in events[1:]]
        return Event(script.ttft, events[0]), body, tail

    model = script.model or ctx.model

    def encode(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        return _wire.encode_data(
            _wire.chunk(
                id=ctx.id, created=ctx.created, model=model, delta=delta, finish_reason=finish
            )
        )

    calls = _calls(script)
    merged = bool(calls) and not script.content
    first: dict[str, Any] = {"role": "assistant", "content": None if merged else ""}
    body: list[Event] = []

    def add(delta: Mapping[str, Any]) -> None:
        body.append(Event(script.chunk_delay if body else 0.0, encode(delta)))

    for text in script.content:
        add({"content": text})
    for position, (index, call_id, call) in enumerate(calls):
        header = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        if merged and position == 0:
            first["tool_calls"] = [header]
        else:
            add({"tool_calls": [header]})
        for fragment in call.arguments:
            add({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    first["refusal"] = None
    tail = [Event(0.0, encode({}, _finish_reason(script)))]
    include = ctx.include_usage if script.include_usage is None else script.include_usage
    if include:
        usage = _wire.usage_chunk(
            id=ctx.id, created=ctx.created, model=model, usage=_usage(script, ctx)
        )
        tail.append(Event(0.0, _wire.encode_data(usage)))
    tail.append(Event(0.0, _wire.DONE))
    return Event(script.ttft, encode(first)), body, tail


def completion(script: Script, ctx: Context) -> dict[str, Any]:
    """The ``chat.completion`` a non-streaming request gets."""
    if script.recorded_events is not None:
        return _wire.reassemble(script.recorded_events)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(script.content) if script.content or not script.tool_calls else None,
        "refusal": None,
    }
    if script.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments)},
            }
            for _, call_id, call in _calls(script)
        ]
    return {
        "id": ctx.id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": script.model or ctx.model,
        "system_fingerprint": "fp_loopback",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(script),
            }
        ],
        "usage": _usage(script, ctx),
    }


def _text(message: object) -> str:
    content = _wire.as_dict(message).get("content")
    if isinstance(content, str):
        return content
    parts = map(_wire.as_dict, _wire.as_list(content))
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if _wire.as_dict(message).get("role") == "user":
            return _text(message)
    return ""


class ChatEmulator:
    """``POST /v1/chat/completions``, from a queue of scripts (echo when it is empty)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._queue: deque[Script] = deque()
        self._serial = 0

    @property
    def pending(self) -> int:
        """Scripts still queued (under the counters' lock, for a consistent snapshot)."""
        return len(self._queue)

    def enqueue(self, scripts: Iterable[Script]) -> None:
        """Queue scripts for the next requests, in order."""
        with self._counters.lock:
            self._queue.extend(scripts)

    def reset(self) -> None:
        """Empty the queue and restart the completion ids."""
        with self._counters.lock:
            self._queue.clear()
            self._serial = 0

    async def answer(
        self,
        conn: Connection,
        req: RecordedRequest,
        *,
        default: Script | None,
        always_include_usage: bool,
        authorized: bool,
    ) -> bool:
        """Answer one request with the next script, or ``default``, or an echo."""
        payload = _wire.as_dict(req.body)
        messages = _wire.as_list(payload.get("messages"))
        if not messages:
            message = "Expected a JSON object with a non-empty `messages` list."
            return await conn.send_json(400, {"error": _wire.error(400, message)})
        if not authorized:
            return await conn.send_json(401, {"error": _wire.error(401)})
        model = str(payload.get("model") or "loopback")
        with self._counters.lock:
            script = self._queue.popleft() if self._queue else default
            self._serial += 1
            serial = self._serial
        if script is None:
            script = Script.text(_last_user_text(messages))
        extra = {"x-request-id": f"req_loopback_{serial}", **script.headers}
        if script.status != 200:
            error = dict(script.error_body or _wire.default_error(script.status, model))
            if script.retry_after is not None:
                extra["retry-after"] = f"{script.retry_after:g}"
            return await conn.send_json(script.status, {"error": error}, headers=extra)
        asked = bool(_wire.as_dict(payload.get("stream_options")).get("include_usage"))
        ctx = Context(
            id=f"chatcmpl-loopback-{serial}",
            created=int(time.time()),
            model=model,
            prompt_tokens=metrics.estimate_tokens(sum(len(_text(m)) for m in messages)),
            include_usage=asked or always_include_usage,
        )
        if payload.get("stream") is True:
            return await self._stream(conn, script, ctx, extra)
        return await self._complete(conn, script, ctx, extra)

    async def _complete(
        self, conn: Connection, script: Script, ctx: Context, headers: Mapping[str, str]
    ) -> bool:
        first, body, _ = plan(script, ctx)
        await asyncio.sleep(first.delay + sum(e.delay for e in body))
        if script.drop_after is not None:
            return False
        if script.stall_after is not None:
            await asyncio.get_running_loop().create_future()
        if script.error_event_after is not None:
            error = dict(script.error_body or _wire.default_error(500))
            return await conn.send_json(500, {"error": error}, headers=headers)
        if script.malformed_after is not None:
            raw = script.malformed_data.encode()
            return await conn.send_json(200, None, headers=headers, raw=raw)
        return await conn.send_json(200, completion(script, ctx), headers=headers)

    async def _stream(
        self, conn: Connection, script: Script, ctx: Context, headers: Mapping[str, str]
    ) -> bool:
        first, body, tail = plan(script, ctx)
        ended = False

        def end(outcome: str) -> None:
            # Counted before the last bytes go out, so a client that has seen the end of
            # the response also sees the counters updated.
            nonlocal ended
            if not ended:
                ended = True
                self._counters.add(streams_in_progress=-1, **{outcome: 1})

        self._counters.add(streams_started=1, streams_in_progress=1)
        try:
            head = [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
                ("cache-control", "no-cache"),
                *headers.items(),
            ]
            await conn.write_head(200, head)
            await asyncio.sleep(first.delay)
            await conn.write_chunk(first.data)
            for sent in range(len(body) + 1):
                final = sent == len(body)
                fault = await self._fault(conn, script, sent, final=final)
                if fault == "error":
                    error = dict(script.error_body or _wire.default_error(500))
                    end("streams_completed")
                    await conn.end_chunks(_wire.encode_data({"error": error}))
                    return True
                if fault == "drop":
                    end("streams_completed")
                    conn.writer.close()
                    return False
                if not final:
                    await asyncio.sleep(body[sent].delay)
                    await conn.write_chunk(body[sent].data)
            for event in tail[:-1]:
                await asyncio.sleep(event.delay)
                await conn.write_chunk(event.data)
            last = tail[-1] if tail else Event(0.0, b"")
            await asyncio.sleep(last.delay)
            end("streams_completed")
            await conn.end_chunks(last.data)
            return True
        except ConnectionError:
            end("streams_closed_by_client")
            return False
        finally:
            end("streams_closed_by_client" if conn.eof else "streams_aborted")

    async def _fault(self, conn: Connection, script: Script, sent: int, *, final: bool) -> str:
        """Fire the faults due after ``sent`` counted events; names a fault that ends it."""

        def due(after: int | None) -> bool:
            return after is not None and (after == sent or (final and after > sent))

        if due(script.malformed_after):
            await conn.write_chunk(f"data: {script.malformed_data}\n\n".encode())
        if due(script.error_event_after):
            return "error"
        if due(script.drop_after):
            return "drop"
        if due(script.stall_after):
            await asyncio.get_running_loop().create_future()
        return ""
