"""The Anthropic Messages dialect: ``POST /v1/messages``, as Anthropic streams it.

:func:`plan` turns a script into the named SSE events of a Messages stream:
``message_start`` (a message with id ``msg_loopback_<serial>`` and the input tokens),
``ping``, a ``thinking`` block (its deltas, then a ``signature_delta``) when the script
has reasoning, a ``text`` block, one ``tool_use`` block per call (``input_json_delta``
fragments), ``message_delta`` (the stop reason and output tokens) and ``message_stop``.
Each content chunk is one counted event, the block starts and stops travelling with
their neighbours, so a script's faults fire where they do in the other dialects. A
mid-stream error is ``event: error`` with an ``overloaded_error``, as Anthropic sends
it under load. :func:`completion` builds the whole message; error bodies are
``{"type": "error", "error": {"type": ..., "message": ...}}``.

The key is read from ``x-api-key`` or ``Authorization: Bearer``. A script's
``finish_reason`` (OpenAI's words) is translated (``"stop"`` -> ``end_turn``,
``"length"`` -> ``max_tokens``, ``"tool_calls"`` -> ``tool_use``, ``"content_filter"``
-> ``refusal``); its ``usage`` may be OpenAI's counts or Anthropic's own fields
(``input_tokens``, ``cache_read_input_tokens``...), sent as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kagura.testing.loopback import _wire
from kagura.testing.loopback._dialect import (
    Ask,
    BadAsk,
    Context,
    Event,
    Plan,
    bearer_token,
    finish_reason,
    numbered_calls,
    usage_counts,
)
from kagura.testing.loopback._http import RecordedRequest
from kagura.testing.loopback._script import Script

__all__ = ["AnthropicDialect", "completion", "error_body", "plan"]

SIGNATURE = "bG9vcGJhY2sgdGhpbmtpbmcgc2lnbmF0dXJl"
"""The ``signature`` of every thinking block (base64, as Anthropic's are)."""

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_ERROR_TYPES = frozenset(kind for kind, _ in _ERRORS.values()) | {"billing_error", "timeout_error"}


def encode(payload: Mapping[str, Any]) -> bytes:
    """One named SSE event, ``event: <type>`` then its compact JSON, as Anthropic sends it.

    >>> encode({"type": "ping"})
    b'event: ping\\ndata: {"type":"ping"}\\n\\n'
    """
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {payload['type']}\ndata: {data}\n\n".encode()


def _stop_reason(script: Script) -> str:
    reason = finish_reason(script)
    return _STOP_REASONS.get(reason, reason)


def _usage(script: Script, ctx: Context) -> tuple[dict[str, int], int]:
    """The ``message_start`` usage and the output tokens of ``message_delta``."""
    usage = script.usage
    if usage is not None and ("input_tokens" in usage or "output_tokens" in usage):
        fields = dict(usage)
        output = fields.pop("output_tokens", 0)
        return {"input_tokens": 0, **fields, "output_tokens": min(output, 1)}, output
    counts = usage_counts(script, ctx)
    start = {
        "input_tokens": counts["prompt_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": min(counts["completion_tokens"], 1),
    }
    return start, counts["completion_tokens"]


def _include_usage(script: Script) -> bool:
    return True if script.include_usage is None else script.include_usage


def _message(script: Script, ctx: Context, content: list[Any], usage: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": f"msg_loopback_{ctx.serial}",
        "type": "message",
        "role": "assistant",
        "model": script.model or ctx.model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        message["usage"] = usage
    return message


def _recorded_plan(script: Script, events: tuple[bytes, ...]) -> Plan:
    found = list(events) or [b""]
    tail: list[Event] = []
    while len(found) > 1 and (b'"message_stop"' in found[-1] or b'"message_delta"' in found[-1]):
        tail.insert(0, Event(script.chunk_delay, found.pop()))
    body = [Event(script.chunk_delay, e) for e in found[1:]]
    return Event(script.ttft, found[0]), body, tail


def plan(script: Script, ctx: Context) -> Plan:
    """The first event, the counted events (faults count these), and the tail."""
    if script.recorded_events is not None:
        return _recorded_plan(script, script.recorded_events)
    start_usage, output_tokens = _usage(script, ctx)
    include = _include_usage(script)
    message = _message(script, ctx, [], start_usage if include else None)
    first = encode({"type": "message_start", "message": message}) + encode({"type": "ping"})
    body: list[Event] = []
    index = -1  # the open content block
    open_kind = ""

    def add(*payloads: Mapping[str, Any]) -> None:
        data = b"".join(map(encode, payloads))
        body.append(Event(script.chunk_delay if body else 0.0, data))

    def close() -> list[dict[str, Any]]:
        """The events that end the open block (a thinking block signs first)."""
        if index < 0:
            return []
        events: list[dict[str, Any]] = []
        if open_kind == "thinking":
            signature = {"type": "signature_delta", "signature": SIGNATURE}
            events.append({"type": "content_block_delta", "index": index, "delta": signature})
        events.append({"type": "content_block_stop", "index": index})
        return events

    def open_block(block: dict[str, Any]) -> list[dict[str, Any]]:
        nonlocal index, open_kind
        events = close()
        index += 1
        open_kind = block["type"]
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        return events

    for position, thought in enumerate(script.reasoning):
        head = (
            open_block({"type": "thinking", "thinking": "", "signature": ""})
            if not position
            else []
        )
        delta = {"type": "thinking_delta", "thinking": thought}
        add(*head, {"type": "content_block_delta", "index": index, "delta": delta})
    for position, text in enumerate(script.content):
        head = open_block({"type": "text", "text": ""}) if not position else []
        delta = {"type": "text_delta", "text": text}
        add(*head, {"type": "content_block_delta", "index": index, "delta": delta})
    for _, call_id, call in numbered_calls(script):
        block: dict[str, Any] = {"type": "tool_use", "id": _tool_id(call_id), "name": call.name}
        block["input"] = {}
        first_fragment = {"type": "input_json_delta", "partial_json": ""}
        add(
            *open_block(block),
            {"type": "content_block_delta", "index": index, "delta": first_fragment},
        )
        for fragment in call.arguments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            add({"type": "content_block_delta", "index": index, "delta": delta})
    stop = {"stop_reason": _stop_reason(script), "stop_sequence": None}
    message_delta: dict[str, Any] = {"type": "message_delta", "delta": stop}
    if include:
        message_delta["usage"] = {"output_tokens": output_tokens}
    ending = b"".join(map(encode, [*close(), message_delta]))
    tail = [Event(0.0, ending), Event(0.0, encode({"type": "message_stop"}))]
    return Event(script.ttft, first), body, tail


def _tool_id(call_id: str) -> str:
    return call_id.replace("call_loopback_", "toolu_loopback_", 1)


def _input(arguments: Iterable[str]) -> Any:
    text = "".join(arguments)
    try:
        value: Any = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return _wire.as_dict(value)


def completion(script: Script, ctx: Context) -> dict[str, Any]:
    """The message a non-streaming request gets."""
    if script.recorded_events is not None:
        return reassemble(script.recorded_events)
    content: list[dict[str, Any]] = []
    if script.reasoning:
        thinking = "".join(script.reasoning)
        content.append({"type": "thinking", "thinking": thinking, "signature": SIGNATURE})
    if script.content or not script.tool_calls:
        content.append({"type": "text", "text": "".join(script.content)})
    for _, call_id, call in numbered_calls(script):
        block = {"type": "tool_use", "id": _tool_id(call_id), "name": call.name}
        content.append({**block, "input": _input(call.arguments)})
    start_usage, output_tokens = _usage(script, ctx)
    usage = {**start_usage, "output_tokens": output_tokens}
    message = _message(script, ctx, content, usage if _include_usage(script) else None)
    message["stop_reason"] = _stop_reason(script)
    return message


def reassemble(events: Iterable[bytes]) -> dict[str, Any]:
    """Fold a recorded Messages stream back into the message it stands for."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for event in events:
        for line in event.decode().splitlines():
            if not line.startswith("data:"):
                continue
            payload = _wire.as_dict(json.loads(line[5:]))
            kind = payload.get("type")
            if kind == "message_start":
                message = dict(_wire.as_dict(payload.get("message")))
            elif kind == "content_block_start":
                blocks[payload["index"]] = dict(_wire.as_dict(payload.get("content_block")))
            elif kind == "content_block_delta":
                block = blocks[payload["index"]]
                delta = _wire.as_dict(payload.get("delta"))
                dtype = delta.get("type")
                if dtype in ("text_delta", "thinking_delta", "signature_delta"):
                    field = str(dtype).removesuffix("_delta")
                    block[field] = str(block.get(field) or "") + str(delta.get(field) or "")
                elif dtype == "input_json_delta":
                    so_far = partial.get(payload["index"], "")
                    partial[payload["index"]] = so_far + str(delta.get("partial_json") or "")
            elif kind == "message_delta":
                message.update(_wire.as_dict(payload.get("delta")))
                usage = {
                    **_wire.as_dict(message.get("usage")),
                    **_wire.as_dict(payload.get("usage")),
                }
                message["usage"] = usage
    for index, text in partial.items():
        blocks[index]["input"] = _input([text])
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def error_body(status: int, script: Script | None, model: str) -> dict[str, Any]:
    """Anthropic's error body for ``status`` (the message of ``script.error_body`` if set).

    >>> error_body(529, None, "claude-x")
    {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}
    """
    explicit = dict(script.error_body) if script is not None and script.error_body else {}
    if explicit.get("type") == "error" and isinstance(explicit.get("error"), Mapping):
        return explicit  # already Anthropic's shape
    kind, message = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
    )
    given = explicit.get("type")
    if given in _ERROR_TYPES and given != _wire.default_error(status)["type"]:
        kind = str(given)  # set on purpose, not OpenAI's default for the status
    if explicit.get("message") is not None:
        message = str(explicit["message"])
    return {"type": "error", "error": {"type": kind, "message": message.replace("{model}", model)}}


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    out: list[str] = []
    for block in map(_wire.as_dict, _wire.as_list(content)):
        if block.get("type") == "text":
            out.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            out.append(_text(block.get("content")))
    return "".join(out)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        fields = _wire.as_dict(message)
        if fields.get("role") != "user":
            continue
        content = fields.get("content")
        if isinstance(content, str):
            return content
        texts = [b for b in map(_wire.as_dict, _wire.as_list(content)) if b.get("type") == "text"]
        if texts:
            return "".join(str(b.get("text", "")) for b in texts)
    return ""


class AnthropicDialect:
    """Messages: ``x-api-key``, ``{"type": "error", ...}`` bodies, named SSE events."""

    def read(self, req: RecordedRequest) -> Ask:
        payload = _wire.as_dict(req.body)
        messages = _wire.as_list(payload.get("messages"))
        if not messages:
            body = error_body(400, None, "")
            body["error"]["message"] = "messages: Field required"
            raise BadAsk(400, body)
        chars = len(_text(payload.get("system")))
        chars += sum(len(_text(_wire.as_dict(m).get("content"))) for m in messages)
        return Ask(
            model=str(payload.get("model") or "loopback"),
            last_user_text=_last_user_text(messages),
            prompt_chars=chars,
            stream=payload.get("stream") is True,
            include_usage=True,
        )

    def credential(self, req: RecordedRequest) -> str | None:
        key = req.headers.get("x-api-key")
        if key:
            return key
        return bearer_token(req)

    def plan(self, script: Script, ctx: Context) -> Plan:
        return plan(script, ctx)

    def completion(self, script: Script, ctx: Context) -> Any:
        return completion(script, ctx)

    def error_body(self, status: int, script: Script | None, model: str) -> Any:
        return error_body(status, script, model)

    def error_event(self, script: Script, model: str) -> bytes:
        return encode(error_body(529, script, model))
