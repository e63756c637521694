"""A small OpenAI-compatible Chat Completions app in plain ASGI, for a real uvicorn.

``POST /v1/chat/completions`` echoes the last user message: streamed as
``chat.completion.chunk`` SSE events (4 characters each, then the finish chunk, the
usage chunk if ``stream_options.include_usage``, and ``data: [DONE]``), or whole as a
``chat.completion``. ``GET /stats`` returns ``{"chat_clients": [[host, port], ...]}``:
the client address of every chat request served, in order, so tests can count the
connections a client used.

Run by :class:`_wire_servers.UvicornServer` (``uvicorn _asgi_openai:app``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT_CLIENTS: list[list[Any]] = []


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-asgi",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _last_user_text(payload: dict[str, Any]) -> str:
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def _send_json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _chat(scope: Scope, receive: Receive, send: Send) -> None:
    payload = json.loads(await _read_body(receive))
    client = scope.get("client") or ("?", 0)
    CHAT_CLIENTS.append([client[0], client[1]])
    text = _last_user_text(payload)
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if not payload.get("stream"):
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        completion = {
            "id": "chatcmpl-asgi",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "m",
            "choices": [choice],
            "usage": usage,
        }
        await _send_json(send, 200, completion)
        return
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def event(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    await event(_event(_chunk({"role": "assistant", "content": ""})))
    for start in range(0, len(text), 4):
        await event(_event(_chunk({"content": text[start : start + 4]})))
    await event(_event(_chunk({}, "stop")))
    if (payload.get("stream_options") or {}).get("include_usage"):
        await event(_event({**_chunk({}), "choices": [], "usage": usage}))
    await event(b"data: [DONE]\n\n")
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application (HTTP only; run uvicorn with ``--lifespan off``)."""
    if scope["type"] != "http":
        return
    path, method = scope["path"].rstrip("/"), scope["method"]
    if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
        await _chat(scope, receive, send)
    elif method == "GET" and path == "/stats":
        await _send_json(send, 200, {"chat_clients": CHAT_CLIENTS})
    else:
        await _read_body(receive)
        await _send_json(send, 404, {"error": {"message": f"no route {method} {path}"}})
