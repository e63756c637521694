"""What the loopback server sends: OpenAI's Chat Completions bodies, SSE events, errors.

Pure functions, no I/O; the chat emulator and the routes send what these build.

>>> encode_data({"a": 1})
b'data: {"a":1}\\n\\n'
>>> split_events(b"data: 1\\n\\ndata: 2\\n\\n")
(b'data: 1\\n\\n', b'data: 2\\n\\n')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

__all__ = [
    "DONE",
    "as_dict",
    "as_list",
    "chunk",
    "default_error",
    "encode_data",
    "error",
    "model_entry",
    "reassemble",
    "split_events",
    "usage_chunk",
]

DONE = b"data: [DONE]\n\n"

_EVENT_END = re.compile(rb"(?<=\n\n)")

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to perform this request.", "permission_error", None),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def encode_data(payload: object) -> bytes:
    """One SSE event ``data: <compact JSON>\\n\\n``, UTF-8 as OpenAI sends it."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + text.encode() + b"\n\n"


def split_events(data: bytes) -> tuple[bytes, ...]:
    """Split an SSE byte string after each blank line; the pieces join back to ``data``."""
    return tuple(piece for piece in _EVENT_END.split(data) if piece)


def default_error(status: int, model: str = "") -> dict[str, Any]:
    """The OpenAI-style error object for an HTTP status (``{"message", "type", "code"}``)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    message, kind, code = _ERRORS.get(status, (f"HTTP {status}", kind, None))
    return {"message": message.replace("{model}", model), "type": kind, "param": None, "code": code}


def error(
    status: int, message: str | None = None, *, model: str = "", **fields: Any
) -> dict[str, Any]:
    """:func:`default_error` with its ``message`` and any other ``fields`` replaced.

    >>> error(404, "Unknown request URL: GET /x.", code=None)["code"] is None
    True
    """
    body = default_error(status, model)
    if message is not None:
        body["message"] = message
    body.update(fields)
    return body


def model_entry(name: str) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "kagura"}


def chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: Mapping[str, Any],
    finish_reason: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice, keys in the order OpenAI sends them."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_loopback",
        "choices": [
            {"index": index, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
        ],
    }


def usage_chunk(*, id: str, created: int, model: str, usage: Mapping[str, int]) -> dict[str, Any]:
    """The final chunk of a stream that asked for usage: ``choices`` is empty."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_loopback",
        "choices": [],
        "usage": dict(usage),
    }


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``{}``."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """``value`` if it is a JSON array, else ``[]``."""
    return cast("list[Any]", value) if isinstance(value, list) else []


def _payloads(events: Iterable[bytes]) -> Iterable[Any]:
    for event in events:
        for line in event.decode().splitlines():
            if line.startswith("data:"):
                data = line[5:].strip()
                if data and data != "[DONE]":
                    yield json.loads(data)


def reassemble(events: Iterable[bytes]) -> dict[str, Any]:
    """Fold a recorded stream back into the ``chat.completion`` it stands for."""
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for payload in _payloads(events):
        if not head:
            head = {k: payload.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        usage = payload.get("usage") or usage
        for choice in as_list(payload.get("choices")):
            state = choices.setdefault(
                choice["index"],
                {"content": None, "refusal": None, "tool_calls": {}, "finish_reason": None},
            )
            delta = as_dict(choice.get("delta"))
            for key in ("content", "refusal"):
                if delta.get(key) is not None:
                    state[key] = (state[key] or "") + delta[key]
            for call in map(as_dict, as_list(delta.get("tool_calls"))):
                slot = state["tool_calls"].setdefault(
                    call["index"], {"id": None, "type": "function", "name": "", "arguments": ""}
                )
                slot["id"] = call.get("id") or slot["id"]
                function = as_dict(call.get("function"))
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            state["finish_reason"] = choice.get("finish_reason") or state["finish_reason"]
    out_choices: list[dict[str, Any]] = []
    for index in sorted(choices):
        state = choices[index]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": state["content"],
            "refusal": state["refusal"],
        }
        if state["tool_calls"]:
            message["tool_calls"] = [
                {
                    "id": slot["id"],
                    "type": "function",
                    "function": {"name": slot["name"], "arguments": slot["arguments"]},
                }
                for _, slot in sorted(state["tool_calls"].items())
            ]
        out_choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": state["finish_reason"],
            }
        )
    return {**head, "object": "chat.completion", "choices": out_choices, "usage": usage}
