"""The Chat Completions dialect: ``POST /v1/chat/completions``, as OpenAI streams it.

:func:`plan` turns a script into the chunks of a stream, :func:`completion` into a
whole ``chat.completion``; reasoning goes out as ``reasoning_content`` deltas, as
DeepSeek, vLLM and Ollama send it.
"""

from __future__ import annotations

from collections.abc import Mapping
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

__all__ = ["OpenAIDialect", "completion", "plan"]


def plan(script: Script, ctx: Context) -> Plan:
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

    calls = numbered_calls(script)
    merged = bool(calls) and not script.content and not script.reasoning
    first: dict[str, Any] = {"role": "assistant", "content": None if merged else ""}
    body: list[Event] = []

    def add(delta: Mapping[str, Any]) -> None:
        body.append(Event(script.chunk_delay if body else 0.0, encode(delta)))

    for thought in script.reasoning:
        add({"content": None, "reasoning_content": thought})
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
    tail = [Event(0.0, encode({}, finish_reason(script)))]
    include = ctx.include_usage if script.include_usage is None else script.include_usage
    if include:
        usage = _wire.usage_chunk(
            id=ctx.id, created=ctx.created, model=model, usage=usage_counts(script, ctx)
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
    if script.reasoning:
        message["reasoning_content"] = "".join(script.reasoning)
    if script.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments)},
            }
            for _, call_id, call in numbered_calls(script)
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
                "finish_reason": finish_reason(script),
            }
        ],
        "usage": usage_counts(script, ctx),
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


class OpenAIDialect:
    """Chat Completions: bearer keys, ``{"error": {...}}`` bodies, ``[DONE]``."""

    def read(self, req: RecordedRequest) -> Ask:
        payload = _wire.as_dict(req.body)
        messages = _wire.as_list(payload.get("messages"))
        if not messages:
            message = "Expected a JSON object with a non-empty `messages` list."
            raise BadAsk(400, {"error": _wire.error(400, message)})
        asked = bool(_wire.as_dict(payload.get("stream_options")).get("include_usage"))
        return Ask(
            model=str(payload.get("model") or "loopback"),
            last_user_text=_last_user_text(messages),
            prompt_chars=sum(len(_text(m)) for m in messages),
            stream=payload.get("stream") is True,
            include_usage=asked,
        )

    def credential(self, req: RecordedRequest) -> str | None:
        return bearer_token(req)

    def plan(self, script: Script, ctx: Context) -> Plan:
        return plan(script, ctx)

    def completion(self, script: Script, ctx: Context) -> Any:
        return completion(script, ctx)

    def error_body(self, status: int, script: Script | None, model: str) -> Any:
        explicit = script.error_body if script is not None else None
        return {"error": dict(explicit or _wire.default_error(status, model))}

    def error_event(self, script: Script, model: str) -> bytes:
        return _wire.encode_data({"error": dict(script.error_body or _wire.default_error(500))})
