"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests that talk real HTTP.

:class:`LoopbackServer` speaks Chat Completions (``POST /v1/chat/completions``,
streamed as SSE or not), lists models (``GET /v1/models``) and issues OAuth2
client-credentials tokens (``POST /oauth/token``). It runs its own asyncio loop in
a daemon thread, so any client, sync or async, on any event loop, can use it.

It also speaks Anthropic Messages (``POST /v1/messages``, the key in ``x-api-key`` or
``Authorization: Bearer``, Anthropic's named SSE events and error bodies; ``_anthropic``)
and the Gemini API (``POST .../models/<model>:streamGenerateContent?alt=sse`` or
``:generateContent``, the key in ``x-goog-api-key``, ``?key=`` or a bearer, CRLF-framed
events, Google's error bodies; ``_gemini``): the same scripts play in every protocol.

Each chat request consumes the next queued :class:`Script`; with the queue empty
the server echoes the last user message back in 4-character chunks. Scripts set
the text, tool calls, timing (time to first token, delay per chunk), usage, an HTTP
error status, and faults mid-stream: an error event, a dropped connection, a stall,
a malformed line. ``Script.recorded(path)`` replays a recorded ``.sse`` file byte
for byte.

The server watches every connection while it answers, so a client that goes away
is noticed at once, even while the server sleeps between chunks or stalls:
``stats().streams_in_progress`` then drops to zero, which is how tests check that a
``break`` closed the HTTP stream.

>>> import httpx
>>> hi = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there"}]}
>>> with LoopbackServer() as server, httpx.Client(base_url=server.base_url) as client:
...     echo = client.post("/chat/completions", json=hi).json()  # empty queue: echo
...     server.enqueue(Script.text("Hello world", chunk_size=5, chunk_delay=0.05))
...     with client.stream("POST", "/chat/completions", json={**hi, "stream": True}) as r:
...         for line in r.iter_lines():
...             if '"Hello"' in line:
...                 break  # leave after the first text chunk
...     idle = server.wait_idle_sync(timeout=1.0)
>>> echo["choices"][0]["message"]["content"]
'Hi there'
>>> idle, server.stats().streams_closed_by_client
(True, 1)

One private module per concern; this package only re-exports them:
``_server`` (the thread, its connections and routes), ``_http`` (HTTP/1.1 on one
connection), ``_chat`` (the Chat Completions emulator), ``_oauth`` (the token
endpoint), ``_script`` (what a test writes), ``_wire`` (the bodies and SSE events
sent), ``_stats`` (the counters).
"""

from __future__ import annotations

from kagura.testing.loopback._http import RecordedRequest
from kagura.testing.loopback._script import Script, ScriptedToolCall, ScriptOptions
from kagura.testing.loopback._server import LoopbackServer
from kagura.testing.loopback._stats import LoopbackStats

__all__ = [
    "LoopbackServer",
    "LoopbackStats",
    "RecordedRequest",
    "Script",
    "ScriptOptions",
    "ScriptedToolCall",
]
