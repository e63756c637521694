"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests that talk real HTTP.

:class:`LoopbackServer` speaks Chat Completions (``POST /v1/chat/completions``,
streamed as SSE or not), lists models (``GET /v1/models``) and issues OAuth2
client-credentials tokens (``POST /oauth/token``). It runs its own asyncio loop in
a daemon thread, so any client, sync or async, on any event loop, can use it.

Each chat request consumes the next queued :class:`Script`; with the queue empty
the server echoes the last user message back in 4-character chunks. Scripts set
the text, tool calls, timing (time to first token, delay per chunk), usage, an HTTP
error status, and faults mid-stream: an error event, a dropped connection, a stall,
a malformed line. ``Script.recorded(path)`` replays a recorded ``.sse`` file byte
for byte.

The server watches every connection while it answers, so a client that goes away
is noticed at once, even while the server sleeps between chunks or stalls:
``streams_in_progress`` then drops to zero, which is how tests check that a
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
>>> idle, server.streams_closed_by_client
(True, 1)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import itertools
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypedDict, Unpack
from urllib.parse import parse_qsl, unquote_plus

from kagura.testing import _sse

__all__ = [
    "LoopbackServer",
    "RecordedRequest",
    "Script",
    "ScriptOptions",
    "ScriptedToolCall",
]

_MAX_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024


def _split(text: str, size: int) -> tuple[str, ...]:
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedToolCall:
    """One tool call a :class:`Script` streams: a name and its argument fragments.

    ``index`` defaults to the call's position in ``Script.tool_calls`` and ``id``
    to ``"call_loopback_<index>"``.

    >>> ScriptedToolCall.of("get_weather", {"city": "Paris"}, fragment_size=9).arguments
    ('{"city": ', '"Paris"}')
    """

    name: str
    arguments: tuple[str, ...] = ()
    id: str | None = None
    index: int | None = None

    @classmethod
    def of(
        cls,
        name: str,
        arguments: str | Mapping[str, Any] = "{}",
        *,
        fragment_size: int = 8,
        id: str | None = None,
        index: int | None = None,
    ) -> Self:
        """A call whose JSON ``arguments`` (a string, or a mapping to dump) arrive in pieces."""
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return cls(name=name, arguments=_split(text, fragment_size), id=id, index=index)


class ScriptOptions(TypedDict, total=False):
    """Keyword options the :class:`Script` constructors pass through (see its fields)."""

    finish_reason: str | None
    usage: Mapping[str, int] | None
    include_usage: bool | None
    model: str | None
    ttft: float
    chunk_delay: float
    headers: Mapping[str, str]
    error_body: Mapping[str, Any] | None
    error_event_after: int | None
    drop_after: int | None
    stall_after: int | None
    malformed_after: int | None
    malformed_data: str


@dataclass(frozen=True, slots=True)
class _Event:
    delay: float
    data: bytes


@dataclass(frozen=True, slots=True)
class _Context:
    id: str
    created: int
    model: str
    prompt_tokens: int
    include_usage: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    """How the server answers one chat request.

    Content and tool calls:
      ``content`` text chunks, one per SSE event; ``tool_calls`` streamed after the
      text; ``finish_reason`` (default ``"tool_calls"`` if there are tool calls,
      else ``"stop"``); ``usage`` (default: prompt ~ message chars / 4, completion ~
      output chars / 4); ``include_usage`` sends the final usage chunk (``None``:
      when the request asks with ``stream_options.include_usage``, or the server's
      ``always_include_usage``); ``model`` (default: the request's).
    Timing:
      ``ttft`` seconds before the first event (role chunk and first content chunk
      arrive together), ``chunk_delay`` seconds before each later chunk.
    HTTP errors:
      ``status`` other than 200 answers with ``error_body`` (default: OpenAI's body
      for that status) as ``{"error": ...}``; ``retry_after`` sets ``Retry-After``;
      ``headers`` are added to any response.
    Faults, after the first event and N more (``drop_after=2`` on chunks
    ``["a", "b", "c"]`` delivers ``"ab"``; an N past the end fires before the finish
    chunk):
      ``error_event_after`` sends ``data: {"error": error_body}`` and ends the
      response; ``drop_after`` closes the socket mid-body; ``stall_after`` stops
      sending until the client leaves or the server stops; ``malformed_after``
      sends ``data: <malformed_data>`` and carries on.
    A non-streaming request gets the joined answer after ``ttft`` plus the chunk
    delays; there a drop closes without a response, a stall never answers, an
    error event becomes status 500 and a malformed line a malformed body.

    >>> Script.text("Hello world").content
    ('Hell', 'o wo', 'rld')
    >>> Script.error(429, retry_after=2).status
    429
    """

    content: tuple[str, ...] = ()
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: str | None = None
    usage: Mapping[str, int] | None = None
    include_usage: bool | None = None
    model: str | None = None
    ttft: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    error_body: Mapping[str, Any] | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    error_event_after: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    malformed_after: int | None = None
    malformed_data: str = '{"id":"chatcmpl-malformed","choices":[{"delta":{"content":"'
    recorded_events: tuple[bytes, ...] | None = None

    @classmethod
    def text(cls, text: str, *, chunk_size: int = 4, **options: Unpack[ScriptOptions]) -> Self:
        """Stream ``text`` in chunks of ``chunk_size`` characters."""
        return cls(content=_split(text, chunk_size), **options)

    @classmethod
    def chunks(cls, chunks: Iterable[str], **options: Unpack[ScriptOptions]) -> Self:
        """Stream exactly these chunks, one per SSE event."""
        return cls(content=tuple(chunks), **options)

    @classmethod
    def tools(
        cls, *calls: ScriptedToolCall, content: Iterable[str] = (), **options: Unpack[ScriptOptions]
    ) -> Self:
        """Stream tool calls (after optional text), finishing with ``"tool_calls"``."""
        return cls(content=tuple(content), tool_calls=calls, **options)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Self:
        """Answer with HTTP ``status`` and an OpenAI error body (defaults per status)."""
        body = _sse.default_error(status)
        if message is not None:
            body["message"] = message
        if error_type is not None:
            body["type"] = error_type
        if code is not None:
            body["code"] = code
        explicit = message is not None or error_type is not None or code is not None
        return cls(
            status=status,
            error_body=body if explicit else None,
            retry_after=retry_after,
            headers=dict(headers or {}),
        )

    @classmethod
    def recorded(
        cls, path: str | Path, *, event_delay: float = 0.0, **options: Unpack[ScriptOptions]
    ) -> Self:
        """Replay a recorded ``.sse`` file byte for byte, ``event_delay`` s between events."""
        events = _sse.split_events(Path(path).read_bytes())
        options.setdefault("chunk_delay", event_delay)
        return cls(recorded_events=events, **options)

    def _calls(self) -> list[tuple[int, str, ScriptedToolCall]]:
        out: list[tuple[int, str, ScriptedToolCall]] = []
        for position, call in enumerate(self.tool_calls):
            index = position if call.index is None else call.index
            out.append((index, call.id or f"call_loopback_{index}", call))
        return out

    def _usage(self, ctx: _Context) -> dict[str, int]:
        if self.usage is not None:
            return dict(self.usage)
        chars = sum(map(len, self.content))
        chars += sum(len(call.name) + sum(map(len, call.arguments)) for call in self.tool_calls)
        completion = _tokens(chars)
        return {
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": ctx.prompt_tokens + completion,
        }

    def _finish(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def _plan(self, ctx: _Context) -> tuple[_Event, list[_Event], list[_Event]]:
        """The first event, the counted events (faults count these), and the tail."""
        if self.recorded_events is not None:
            events = list(self.recorded_events) or [b""]
            tail: list[_Event] = []
            if len(events) > 1 and events[-1].strip() == _sse.DONE.strip():
                tail.append(_Event(self.chunk_delay, events.pop()))
            body = [_Event(self.chunk_delay, e) for e in events[1:]]
            return _Event(self.ttft, events[0]), body, tail

        model = self.model or ctx.model

        def encode(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
            return _sse.encode_data(
                _sse.chunk(
                    id=ctx.id, created=ctx.created, model=model, delta=delta, finish_reason=finish
                )
            )

        calls = self._calls()
        merged = bool(calls) and not self.content
        first: dict[str, Any] = {"role": "assistant", "content": None if merged else ""}
        body: list[_Event] = []

        def add(delta: Mapping[str, Any]) -> None:
            body.append(_Event(self.chunk_delay if body else 0.0, encode(delta)))

        for text in self.content:
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
        tail = [_Event(0.0, encode({}, self._finish()))]
        include = ctx.include_usage if self.include_usage is None else self.include_usage
        if include:
            usage = _sse.usage_chunk(
                id=ctx.id, created=ctx.created, model=model, usage=self._usage(ctx)
            )
            tail.append(_Event(0.0, _sse.encode_data(usage)))
        tail.append(_Event(0.0, _sse.DONE))
        return _Event(self.ttft, encode(first)), body, tail

    def _completion(self, ctx: _Context) -> dict[str, Any]:
        if self.recorded_events is not None:
            return _sse.reassemble(self.recorded_events)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.content) if self.content or not self.tool_calls else None,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call_id, call in self._calls()
            ]
        return {
            "id": ctx.id,
            "object": "chat.completion",
            "created": ctx.created,
            "model": self.model or ctx.model,
            "system_fingerprint": "fp_loopback",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish(),
                }
            ],
            "usage": self._usage(ctx),
        }


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the server received it (``headers`` keys are lower case)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    raw_body: bytes
    body: Any
    """The parsed JSON body, or ``None`` if the body was not JSON."""
    form: Mapping[str, str]
    """The fields of a ``application/x-www-form-urlencoded`` body."""
    connection_id: int
    """Which TCP connection carried it (unique for the server's life): shows keep-alive."""
    target: str = ""
    """The request-target as sent: absolute (``http://host/v1/...``) from a client that
    used this server as its HTTP proxy (``HTTP_PROXY=http://127.0.0.1:<port>``)."""


_ABSOLUTE_TARGET = re.compile(r"^https?://[^/?#]*", re.IGNORECASE)


class _BadRequest(Exception):
    pass


class _ClientGone(Exception):
    pass


@dataclass(slots=True, eq=False)
class _Connection:
    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False
    busy: bool = False
    keep_alive: bool = True
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Stats:
    streams_in_progress: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_closed_by_client: int = 0
    streams_aborted: int = 0
    token_requests: int = 0
    connections_opened: int = 0
    connections_open: int = 0
    completion_ids: int = 0


class LoopbackServer:
    """An OpenAI-compatible HTTP/1.1 server on 127.0.0.1, in its own thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Counters and
    ``requests`` may be read from any thread. The settings below are plain attributes;
    :meth:`reset` restores them.

    ``default``: the script for requests that find the queue empty (``None``: echo).
    ``always_include_usage``: send the usage chunk even when not asked.
    ``api_keys``: if set, chat requests need ``Authorization: Bearer <key>`` with a key
    from this set or a live token from ``/oauth/token``, else they get a 401.
    ``models``: what ``GET /v1/models`` lists.
    ``oauth_clients``: client id to secret, for ``/oauth/token``.
    ``token_expires_in``, ``token_delay`` (seconds before answering) and
    ``token_fail_status`` (answer every token request with this status) shape it.
    """

    DEFAULT_OAUTH_CLIENTS: ClassVar[Mapping[str, str]] = {"test-client": "test-secret"}
    DEFAULT_MODELS: ClassVar[tuple[str, ...]] = ("gpt-4o-mini", "gpt-4o")

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, backlog: int = 1024) -> None:
        self._host = host
        self._port = port
        self._backlog = backlog  # asyncio's default (100) overflows at ~1000 concurrent clients
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: deque[Script] = deque()
        self._requests: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._stats = _Stats()
        self._tokens: dict[str, float] = {}
        self._connections: set[_Connection] = set()
        self._connection_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.default: Script | None = None
        self.always_include_usage = False
        self.api_keys: frozenset[str] | None = None
        self.models: tuple[str, ...] = self.DEFAULT_MODELS
        self.oauth_clients: dict[str, str] = dict(self.DEFAULT_OAUTH_CLIENTS)
        self.token_expires_in = 3600
        self.token_delay = 0.0
        self.token_fail_status: int | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a port and serve in a daemon thread; returns once it accepts connections."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="kagura-loopback", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection (stalled streams included) and end the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Abort responses in flight, empty the queue and ``requests``, zero the counters
        and restore the settings. Idle keep-alive connections stay open."""
        loop = self._loop
        if self._thread is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(self._abort_busy(), loop).result(timeout=5)
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._errors.clear()
            self._tokens.clear()
            live = self._stats
            self._stats = _Stats(
                streams_in_progress=live.streams_in_progress, connections_open=live.connections_open
            )
        self.default = None
        self.always_include_usage = False
        self.api_keys = None
        self.models = self.DEFAULT_MODELS
        self.oauth_clients = dict(self.DEFAULT_OAUTH_CLIENTS)
        self.token_expires_in = 3600
        self.token_delay = 0.0
        self.token_fail_status = None

    # -- scripting and observation -----------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """Queue scripts; each chat request consumes the next one, in order."""
        with self._lock:
            self._queue.extend(scripts)

    def revoke_tokens(self) -> None:
        """Make every issued OAuth2 token invalid (as if expired)."""
        with self._lock:
            self._tokens.clear()

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint, ``http://127.0.0.1:PORT/oauth/token``."""
        return self.url + "/oauth/token"

    @property
    def pending(self) -> int:
        """Scripts still queued."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the server (each also answered with a 500)."""
        with self._lock:
            return list(self._errors)

    @property
    def streams_in_progress(self) -> int:
        """SSE responses started and not yet finished or closed."""
        with self._lock:
            return self._stats.streams_in_progress

    @property
    def streams_started(self) -> int:
        """SSE responses started."""
        with self._lock:
            return self._stats.streams_started

    @property
    def streams_completed(self) -> int:
        """SSE responses the server finished as scripted (scripted faults included)."""
        with self._lock:
            return self._stats.streams_completed

    @property
    def streams_closed_by_client(self) -> int:
        """SSE responses the client walked away from before the server finished."""
        with self._lock:
            return self._stats.streams_closed_by_client

    @property
    def streams_aborted(self) -> int:
        """SSE responses cut by :meth:`reset` or :meth:`stop`."""
        with self._lock:
            return self._stats.streams_aborted

    @property
    def token_requests(self) -> int:
        """Requests to ``/oauth/token``."""
        with self._lock:
            return self._stats.token_requests

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since the last reset."""
        with self._lock:
            return self._stats.connections_opened

    @property
    def connections_open(self) -> int:
        """TCP connections open now (idle keep-alive ones included)."""
        with self._lock:
            return self._stats.connections_open

    def wait_idle_sync(self, timeout: float = 1.0) -> bool:
        """Block until no SSE response is in progress; False if ``timeout`` passes first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._stats.streams_in_progress == 0, timeout)

    async def wait_idle(self, timeout: float = 1.0) -> bool:  # noqa: ASYNC109 -- mirrors wait_idle_sync
        """Like :meth:`wait_idle_sync`, polling from the caller's event loop."""
        deadline = time.monotonic() + timeout
        while self.streams_in_progress:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    # -- the server thread -------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._startup_error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connect, self._host, self._port, backlog=self._backlog
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _abort_busy(self) -> None:
        tasks = [c.task for c in self._connections if c.busy and c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._stats.connections_opened += 1
            self._stats.connections_open += 1
            conn = _Connection(next(self._connection_ids), reader, writer)
        conn.task = asyncio.current_task()
        self._connections.add(conn)
        try:
            while not conn.eof:
                try:
                    request = await self._read_request(conn)
                except _BadRequest as exc:
                    await self._send_json(conn, 400, {"error": _error(400, str(exc))}, keep=False)
                    break
                if request is None:
                    break
                conn.busy, conn.keep_alive = True, request.keep
                keep = await self._respond(conn, request)
                conn.busy = False
                if not keep:
                    break
        except (ConnectionError, _ClientGone, asyncio.CancelledError):
            # The client left, or reset()/stop() cancelled us: end quietly (asyncio's
            # stream callback reports a cancelled handler task as an error on 3.11).
            pass
        finally:
            self._connections.discard(conn)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            with self._lock:
                self._stats.connections_open -= 1

    # -- HTTP/1.1 ----------------------------------------------------------------------

    async def _fill(self, conn: _Connection) -> None:
        data = await conn.reader.read(_READ_SIZE)
        if not data:
            conn.eof = True
            raise _ClientGone
        conn.buffer += data

    async def _take_line(self, conn: _Connection) -> bytes:
        while (end := conn.buffer.find(b"\r\n")) < 0:
            if len(conn.buffer) > _MAX_HEAD:
                raise _BadRequest("line too long")
            await self._fill(conn)
        line = bytes(conn.buffer[:end])
        del conn.buffer[: end + 2]
        return line

    async def _take(self, conn: _Connection, size: int) -> bytes:
        while len(conn.buffer) < size:
            await self._fill(conn)
        data = bytes(conn.buffer[:size])
        del conn.buffer[:size]
        return data

    async def _read_request(self, conn: _Connection) -> _Request | None:
        while (end := conn.buffer.find(b"\r\n\r\n")) < 0:
            if len(conn.buffer) > _MAX_HEAD:
                raise _BadRequest("request head too large")
            try:
                await self._fill(conn)
            except _ClientGone:
                return None
        head = bytes(conn.buffer[:end]).decode("latin-1").split("\r\n")
        del conn.buffer[: end + 4]
        try:
            method, target, version = head[0].split(" ")
        except ValueError:
            raise _BadRequest(f"bad request line {head[0]!r}") from None
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(f"bad header line {line!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while size := int((await self._take_line(conn)).split(b";")[0], 16):
                parts.append(await self._take(conn, size))
                await self._take_line(conn)
            while await self._take_line(conn):
                pass
            raw = b"".join(parts)
        else:
            try:
                raw = await self._take(conn, int(headers.get("content-length", "0")))
            except ValueError:
                raise _BadRequest("bad content-length") from None
        connection = headers.get("connection", "").lower()
        keep = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        # A client using us as its proxy sends the absolute URL: serve its path.
        origin_form = _ABSOLUTE_TARGET.sub("", target, count=1) or "/"
        path, _, query = origin_form.partition("?")
        ctype = headers.get("content-type", "")
        body: Any = None
        form: dict[str, str] = {}
        if ctype.startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        recorded = RecordedRequest(method, path, query, headers, raw, body, form, conn.id, target)
        with self._lock:
            self._requests.append(recorded)
        return _Request(recorded, keep)

    async def _watch(self, conn: _Connection) -> None:
        """Read while a response is written: sets ``conn.eof`` when the client leaves."""
        try:
            while data := await conn.reader.read(_READ_SIZE):
                conn.buffer += data
        except ConnectionError:
            pass
        conn.eof = True

    async def _respond(self, conn: _Connection, request: _Request) -> bool:
        route = asyncio.create_task(self._route(conn, request))
        watcher = asyncio.create_task(self._watch(conn))
        try:
            await asyncio.wait((route, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            route.cancel()
            await asyncio.gather(route, watcher, return_exceptions=True)
        if route.cancelled():
            return False
        exc = route.exception()
        if exc is not None:
            raise exc
        return route.result() and request.keep and not conn.eof

    async def _write_head(
        self, conn: _Connection, status: int, headers: Sequence[tuple[str, str]], *, keep: bool
    ) -> None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers)]
        keep = keep and conn.keep_alive
        lines.append(f"connection: {'keep-alive' if keep else 'close'}")
        conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await conn.writer.drain()

    async def _send_json(
        self,
        conn: _Connection,
        status: int,
        payload: object,
        *,
        keep: bool = True,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> bool:
        data = raw if raw is not None else json.dumps(payload).encode()
        head = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            *(headers or {}).items(),
        ]
        await self._write_head(conn, status, head, keep=keep)
        conn.writer.write(data)
        await conn.writer.drain()
        return keep

    async def _write_chunk(self, conn: _Connection, data: bytes) -> None:
        conn.writer.write(_chunked(data))
        await conn.writer.drain()

    # -- routes ------------------------------------------------------------------------

    async def _route(self, conn: _Connection, request: _Request) -> bool:
        req = request.recorded
        path = req.path.rstrip("/")
        try:
            if path in ("/v1/chat/completions", "/chat/completions") and req.method == "POST":
                return await self._chat(conn, req)
            if path in ("/v1/models", "/models") and req.method == "GET":
                models = [self._model(m) for m in self.models]
                return await self._send_json(conn, 200, {"object": "list", "data": models})
            if path.startswith(("/v1/models/", "/models/")) and req.method == "GET":
                name = path.split("/models/", 1)[1]
                if name in self.models:
                    return await self._send_json(conn, 200, self._model(name))
                return await self._send_json(conn, 404, {"error": _error(404, model=name)})
            if path == "/oauth/token" and req.method == "POST":
                return await self._token(conn, req)
            message = f"Unknown request URL: {req.method} {req.path}."
            return await self._send_json(conn, 404, {"error": _error(404, message, code=None)})
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)
            body = {"error": _error(500, f"loopback server error: {exc!r}")}
            return await self._send_json(conn, 500, body, keep=False)

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1700000000, "owned_by": "kagura"}

    def _authorized(self, req: RecordedRequest) -> bool:
        keys = self.api_keys
        if keys is None:
            return True
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return token in keys or (expiry is not None and time.monotonic() < expiry)

    async def _chat(self, conn: _Connection, req: RecordedRequest) -> bool:
        payload = _sse.as_dict(req.body)
        messages = _sse.as_list(payload.get("messages"))
        if not messages:
            message = "Expected a JSON object with a non-empty `messages` list."
            return await self._send_json(conn, 400, {"error": _error(400, message)})
        if not self._authorized(req):
            return await self._send_json(conn, 401, {"error": _error(401)})
        model = str(payload.get("model") or "loopback")
        with self._lock:
            script = self._queue.popleft() if self._queue else self.default
            self._stats.completion_ids += 1
            serial = self._stats.completion_ids
        if script is None:
            script = Script.text(_last_user_text(messages))
        extra = {"x-request-id": f"req_loopback_{serial}", **script.headers}
        if script.status != 200:
            error = dict(script.error_body or _sse.default_error(script.status, model))
            if script.retry_after is not None:
                extra["retry-after"] = f"{script.retry_after:g}"
            return await self._send_json(conn, script.status, {"error": error}, headers=extra)
        asked = bool(_sse.as_dict(payload.get("stream_options")).get("include_usage"))
        ctx = _Context(
            id=f"chatcmpl-loopback-{serial}",
            created=int(time.time()),
            model=model,
            prompt_tokens=_tokens(sum(len(_text(m)) for m in messages)),
            include_usage=asked or self.always_include_usage,
        )
        if payload.get("stream") is True:
            return await self._stream(conn, script, ctx, extra)
        return await self._complete(conn, script, ctx, extra)

    async def _complete(
        self, conn: _Connection, script: Script, ctx: _Context, headers: Mapping[str, str]
    ) -> bool:
        first, body, _ = script._plan(ctx)  # pyright: ignore[reportPrivateUsage] -- same module
        await asyncio.sleep(first.delay + sum(e.delay for e in body))
        if script.drop_after is not None:
            return False
        if script.stall_after is not None:
            await asyncio.get_running_loop().create_future()
        if script.error_event_after is not None:
            error = dict(script.error_body or _sse.default_error(500))
            return await self._send_json(conn, 500, {"error": error}, headers=headers)
        if script.malformed_after is not None:
            raw = script.malformed_data.encode()
            return await self._send_json(conn, 200, None, headers=headers, raw=raw)
        completion = script._completion(ctx)  # pyright: ignore[reportPrivateUsage] -- same module
        return await self._send_json(conn, 200, completion, headers=headers)

    async def _stream(
        self, conn: _Connection, script: Script, ctx: _Context, headers: Mapping[str, str]
    ) -> bool:
        first, body, tail = script._plan(ctx)  # pyright: ignore[reportPrivateUsage] -- same module
        ended = False

        def end(outcome: str) -> None:
            # Counted before the last bytes go out, so a client that has seen the end of
            # the response also sees the counters updated.
            nonlocal ended
            if ended:
                return
            ended = True
            with self._idle:
                stats = self._stats
                stats.streams_in_progress -= 1
                if outcome == "completed":
                    stats.streams_completed += 1
                elif outcome == "client":
                    stats.streams_closed_by_client += 1
                else:
                    stats.streams_aborted += 1
                self._idle.notify_all()

        async def finish(data: bytes = b"") -> None:
            end("completed")
            conn.writer.write(_chunked(data) + b"0\r\n\r\n")
            await conn.writer.drain()

        with self._lock:
            self._stats.streams_started += 1
            self._stats.streams_in_progress += 1
        try:
            head = [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
                ("cache-control", "no-cache"),
                *headers.items(),
            ]
            await self._write_head(conn, 200, head, keep=True)
            await asyncio.sleep(first.delay)
            await self._write_chunk(conn, first.data)
            for sent in range(len(body) + 1):
                final = sent == len(body)
                fault = await self._fault(conn, script, sent, final=final)
                if fault == "error":
                    error = dict(script.error_body or _sse.default_error(500))
                    await finish(_sse.encode_data({"error": error}))
                    return True
                if fault == "drop":
                    end("completed")
                    conn.writer.close()
                    return False
                if not final:
                    await asyncio.sleep(body[sent].delay)
                    await self._write_chunk(conn, body[sent].data)
            for event in tail[:-1]:
                await asyncio.sleep(event.delay)
                await self._write_chunk(conn, event.data)
            last = tail[-1] if tail else _Event(0.0, b"")
            await asyncio.sleep(last.delay)
            await finish(last.data)
            return True
        except ConnectionError:
            end("client")
            return False
        finally:
            end("client" if conn.eof else "aborted")

    async def _fault(self, conn: _Connection, script: Script, sent: int, *, final: bool) -> str:
        """Fire the faults due after ``sent`` counted events; names a fault that ends it."""

        def due(after: int | None) -> bool:
            return after is not None and (after == sent or (final and after > sent))

        if due(script.malformed_after):
            await self._write_chunk(conn, f"data: {script.malformed_data}\n\n".encode())
        if due(script.error_event_after):
            return "error"
        if due(script.drop_after):
            return "drop"
        if due(script.stall_after):
            await asyncio.get_running_loop().create_future()
        return ""

    async def _token(self, conn: _Connection, req: RecordedRequest) -> bool:
        with self._lock:
            self._stats.token_requests += 1
            serial = self._stats.token_requests
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_fail_status is not None:
            body = {"error": "server_error", "error_description": "scripted failure"}
            return await self._send_json(conn, self.token_fail_status, body)
        form = req.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, credentials = req.headers.get("authorization", "").partition(" ")
        basic = scheme.lower() == "basic"
        if basic:
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except ValueError:
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id, secret = unquote_plus(user), unquote_plus(password)
        grant = form.get("grant_type")
        if grant is None:
            return await self._send_json(conn, 400, {"error": "invalid_request"})
        if grant != "client_credentials":
            return await self._send_json(conn, 400, {"error": "unsupported_grant_type"})
        if client_id is None or secret is None or self.oauth_clients.get(client_id) != secret:
            challenge = {"www-authenticate": 'Basic realm="loopback"'} if basic else {}
            return await self._send_json(conn, 401, {"error": "invalid_client"}, headers=challenge)
        token = f"tok-{serial}"
        expires_in = self.token_expires_in
        with self._lock:
            self._tokens[token] = time.monotonic() + expires_in
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return await self._send_json(conn, 200, answer, headers={"cache-control": "no-store"})


@dataclass(frozen=True, slots=True)
class _Request:
    recorded: RecordedRequest
    keep: bool


def _chunked(data: bytes) -> bytes:
    """``data`` as one chunk of a ``Transfer-Encoding: chunked`` body (nothing if empty)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


def _error(
    status: int, message: str | None = None, *, model: str = "", code: str | None = "-"
) -> dict[str, Any]:
    body = _sse.default_error(status, model)
    if message is not None:
        body["message"] = message
    if code != "-":
        body["code"] = code
    return body


def _text(message: object) -> str:
    content = _sse.as_dict(message).get("content")
    if isinstance(content, str):
        return content
    parts = map(_sse.as_dict, _sse.as_list(content))
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if _sse.as_dict(message).get("role") == "user":
            return _text(message)
    return ""
