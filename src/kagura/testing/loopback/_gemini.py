"""The Gemini dialect: ``POST .../models/<m>:streamGenerateContent?alt=sse``, as Google sends it.

Any POST path with ``/models/`` that ends in ``:streamGenerateContent`` (streamed, SSE
only: without ``alt=sse`` Gemini would stream one JSON array, which this server refuses
with a 400) or ``:generateContent`` (whole). The key is read from ``x-goog-api-key``,
a ``key=`` query parameter, or ``Authorization: Bearer``.

Each streamed event is one ``GenerateContentResponse`` framed ``data: {...}\\r\\n\\r\\n``,
its JSON spaced as Google spaces it (``{"candidates": [{"content": ...}],"usageMetadata": ...}``):
reasoning goes out as thought parts, text as text parts, each tool call as one whole
``functionCall`` part, then a last event with the ``finishReason`` (OpenAI's words
translated: ``stop`` and ``tool_calls`` are ``STOP``, ``length`` ``MAX_TOKENS``,
``content_filter`` ``SAFETY``; any other reason is sent upper-cased, so a script can
say ``"RECITATION"``) and the full ``usageMetadata``; the events before carry the prompt's
count only, as Google's do. Errors are Google's ``{"error": {"code", "message",
"status"}}``. A recorded stream is replayed byte for byte.
"""

from __future__ import annotations

import http
import json
from typing import Any
from urllib.parse import parse_qsl

from kagura.llm import metrics
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

__all__ = ["GeminiDialect", "completion", "encode", "error_body", "plan"]

_FINISH = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}

# Google's status names and messages, as the Gemini API sends them.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: (
        "NOT_FOUND",
        "models/{model} is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    ),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


def encode(payload: object) -> bytes:
    """One SSE event as Google frames it: ``data: <JSON>\\r\\n\\r\\n``.

    >>> encode({"candidates": [{"index": 0}], "modelVersion": "m"})
    b'data: {"candidates": [{"index": 0}],"modelVersion": "m"}\\r\\n\\r\\n'
    """
    text = json.dumps(payload, separators=(",", ": "), ensure_ascii=False)
    return b"data: " + text.encode() + b"\r\n\r\n"


def _gemini_finish(script: Script) -> str:
    reason = finish_reason(script)
    return _FINISH.get(reason) or reason.upper()


def _args(arguments: tuple[str, ...]) -> Any:
    text = "".join(arguments)
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {"arguments": text}  # a script's broken JSON, sent as a string


def _usage(script: Script, ctx: Context, *, final: bool) -> dict[str, Any]:
    """``usageMetadata``: the prompt's count only, or (``final``) the whole answer's.

    Estimated reasoning tokens go out as ``thoughtsTokenCount``, beside the candidates'.
    """
    counts = usage_counts(script, ctx)
    prompt = counts.get("prompt_tokens", 0)
    if not final:
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    completion = counts.get("completion_tokens", 0)
    thoughts = 0
    if script.reasoning and script.usage is None:
        thoughts = min(completion, metrics.estimate_tokens(sum(map(len, script.reasoning))))
    meta: dict[str, Any] = {"promptTokenCount": prompt}
    if completion - thoughts:
        meta["candidatesTokenCount"] = completion - thoughts
    meta["totalTokenCount"] = counts.get("total_tokens") or prompt + completion
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def _response(
    parts: list[dict[str, Any]],
    script: Script,
    ctx: Context,
    *,
    final: bool = False,
    finish: str | None = None,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
        if finish == "SAFETY":
            candidate["safetyRatings"] = [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ]
    candidate["index"] = 0
    payload: dict[str, Any] = {"candidates": [candidate]}
    include = True if script.include_usage is None else script.include_usage
    if include:
        payload["usageMetadata"] = _usage(script, ctx, final=final)
    payload["modelVersion"] = script.model or ctx.model
    payload["responseId"] = ctx.id
    return payload


def plan(script: Script, ctx: Context) -> Plan:
    """The first event, the counted events (faults count these), and the tail."""
    if script.recorded_events is not None:
        events = list(script.recorded_events) or [b""]
        body = [Event(script.chunk_delay, e) for e in events[1:]]
        return Event(script.ttft, events[0]), body, []
    pieces: list[list[dict[str, Any]]] = [
        [{"text": thought, "thought": True}] for thought in script.reasoning
    ]
    pieces += [[{"text": text}] for text in script.content]
    for _, call_id, call in numbered_calls(script):
        call_part = {"name": call.name, "args": _args(call.arguments)}
        if call.id is not None:
            call_part["id"] = call_id
        pieces.append([{"functionCall": call_part}])
    last = encode(_response([{"text": ""}], script, ctx, final=True, finish=_gemini_finish(script)))
    if not pieces:
        return Event(script.ttft, last), [], []
    events = [encode(_response(parts, script, ctx)) for parts in pieces]
    body = [Event(script.chunk_delay, e) for e in events[1:]]
    return Event(script.ttft, events[0]), body, [Event(0.0, last)]


def completion(script: Script, ctx: Context) -> dict[str, Any]:
    """The ``GenerateContentResponse`` a ``:generateContent`` request gets."""
    if script.recorded_events is not None:
        return _reassemble(script.recorded_events)
    parts: list[dict[str, Any]] = []
    if script.reasoning:
        parts.append({"text": "".join(script.reasoning), "thought": True})
    if script.content:
        parts.append({"text": "".join(script.content)})
    for _, call_id, call in numbered_calls(script):
        call_part = {"name": call.name, "args": _args(call.arguments)}
        if call.id is not None:
            call_part["id"] = call_id
        parts.append({"functionCall": call_part})
    return _response(parts, script, ctx, final=True, finish=_gemini_finish(script))


def _reassemble(events: tuple[bytes, ...]) -> dict[str, Any]:
    """Fold a recorded stream back into the one response it stands for."""
    thought: list[str] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    candidate: dict[str, Any] = {}
    for event in events:
        for line in event.decode().splitlines():
            if not line.startswith("data:"):
                continue
            payload = _wire.as_dict(json.loads(line[5:]))
            for key, value in payload.items():
                if key != "candidates":
                    out[key] = value
            for raw in _wire.as_list(payload.get("candidates"))[:1]:
                got = _wire.as_dict(raw)
                for part in map(
                    _wire.as_dict, _wire.as_list(_wire.as_dict(got.get("content")).get("parts"))
                ):
                    if "functionCall" in part:
                        calls.append(part)
                    elif part.get("thought"):
                        thought.append(str(part.get("text", "")))
                    elif part.get("text"):
                        text.append(str(part["text"]))
                candidate.update({k: v for k, v in got.items() if k != "content"})
    parts: list[dict[str, Any]] = []
    if thought:
        parts.append({"text": "".join(thought), "thought": True})
    if text:
        parts.append({"text": "".join(text)})
    parts += calls
    if candidate or parts:
        out["candidates"] = [{"content": {"parts": parts, "role": "model"}, **candidate}]
    return out


def error_body(status: int, script: Script | None, model: str) -> dict[str, Any]:
    """Google's error body for ``status``.

    A script's ``error_body`` with a ``status`` name is sent as the error object; one in
    OpenAI's shape (``Script.error(429, "slow down")``) lends its message.
    """
    explicit = dict(script.error_body) if script is not None and script.error_body else {}
    if isinstance(explicit.get("status"), str):
        return {"error": explicit}
    return _error(status, model, explicit.get("message"))


def _error(status: int, model: str, message: object = None) -> dict[str, Any]:
    name, default = _ERRORS.get(status, ("UNKNOWN", ""))
    if not default:
        try:
            default = http.HTTPStatus(status).phrase
        except ValueError:
            default = f"HTTP {status}"
    text = str(message or default.replace("{model}", model))
    return {"error": {"code": status, "message": text, "status": name}}


def _texts(content: object) -> list[str]:
    parts = _wire.as_list(_wire.as_dict(content).get("parts"))
    return [str(p["text"]) for p in map(_wire.as_dict, parts) if isinstance(p.get("text"), str)]


class GeminiDialect:
    """The Gemini API's ``generateContent``: Google's errors, CRLF-framed SSE, no ``[DONE]``."""

    def read(self, req: RecordedRequest) -> Ask:
        head, _, action = req.path.rpartition(":")
        model = head.rpartition("/models/")[2]
        stream = action == "streamGenerateContent"
        if stream and ("alt", "sse") not in parse_qsl(req.query):
            message = "This loopback server streams Gemini answers only as SSE: add ?alt=sse."
            raise BadAsk(400, _error(400, model, message))
        payload = _wire.as_dict(req.body)
        contents = _wire.as_list(payload.get("contents"))
        if not contents:
            message = "* GenerateContentRequest.contents: contents is not specified\n"
            raise BadAsk(400, _error(400, model, message))
        last_user = ""
        for content in reversed(contents):
            texts = _texts(content)
            if _wire.as_dict(content).get("role", "user") == "user" and texts:
                last_user = "".join(texts)
                break
        chars = sum(len(t) for c in contents for t in _texts(c))
        chars += sum(map(len, _texts(payload.get("systemInstruction"))))
        return Ask(
            model=model or "loopback",
            last_user_text=last_user,
            prompt_chars=chars,
            stream=stream,
            include_usage=True,
        )

    def credential(self, req: RecordedRequest) -> str | None:
        key = req.headers.get("x-goog-api-key")
        if key:
            return key
        for name, value in parse_qsl(req.query):
            if name == "key":
                return value
        return bearer_token(req)

    def plan(self, script: Script, ctx: Context) -> Plan:
        return plan(script, ctx)

    def completion(self, script: Script, ctx: Context) -> Any:
        return completion(script, ctx)

    def error_body(self, status: int, script: Script | None, model: str) -> Any:
        return error_body(status, script, model)

    def error_event(self, script: Script, model: str) -> bytes:
        return encode(error_body(500, script, model))
