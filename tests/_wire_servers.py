"""Servers for tests of what goes over the wire.

:class:`RawServer` is ``asyncio.start_server`` on 127.0.0.1 in the test's own event loop.
It records every connection, the raw bytes each one sent and every request it parsed
(method, target, headers, body; ``Content-Length`` or chunked), and answers with
exactly the bytes a test chooses: a queue of :class:`Reply` objects (one per request,
in order, across connections), or a handler of its own per connection. A reply can
arrive in pieces with pauses between them, wait for the test before it ends, keep the
connection, close it, reset it (``SO_LINGER`` 0) or stall until the client leaves.

:class:`UvicornServer` runs ``tests/_asgi_openai.py`` in a real uvicorn in a subprocess
(``--http h11`` or ``--http httptools``) and reads back which client addresses carried
its chat requests, to count connections.

>>> text_event("Hi")[:6]
b'data: '
>>> framed(b"hello")
b'5\\r\\nhello\\r\\n'
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

__all__ = [
    "DONE",
    "SSE_HEADERS",
    "Peer",
    "RawServer",
    "Reply",
    "Request",
    "Then",
    "UvicornServer",
    "chunk_json",
    "completion_body",
    "finish_event",
    "framed",
    "head",
    "json_reply",
    "sse_reply",
    "stream_reply",
    "text_event",
]

_MAX_HEAD = 256 * 1024

# -- building responses ---------------------------------------------------------------------

DONE = b"data: [DONE]\n\n"


def head(
    status: int = 200,
    headers: Iterable[tuple[str, str]] = (),
    *,
    reason: str | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """A response head, ending with its blank line."""
    phrase = reason if reason is not None else _PHRASES.get(status, "Status")
    lines = [f"{version} {status} {phrase}".rstrip(), *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_PHRASES = {
    200: "OK",
    302: "Found",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

SSE_HEADERS = (("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked"))


def framed(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def chunk_json(text: str | None = None, *, finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` object."""
    delta: dict[str, Any] = {} if text is None else {"content": text}
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def text_event(text: str, *, eol: bytes = b"\n") -> bytes:
    """One SSE event carrying a text delta."""
    return b"data: " + json.dumps(chunk_json(text)).encode() + eol + eol


def finish_event(reason: str = "stop", *, eol: bytes = b"\n") -> bytes:
    """The SSE event with the finish reason."""
    return b"data: " + json.dumps(chunk_json(finish=reason)).encode() + eol + eol


def completion_body(text: str) -> bytes:
    """A whole (non-streamed) ``chat.completion`` as JSON."""
    return json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


Then = Literal["keep", "close", "reset", "stall"]


@dataclass(eq=False)
class Reply:
    """What the server writes for one request, and how the connection ends.

    ``pieces`` are written one by one (each drained, then ``pause`` seconds), so they
    arrive apart. ``gate``, if set, is awaited before piece number ``gate_before``
    (``None``: after the last piece), so a test can hold the rest back until its client
    has seen what came before. Then ``"keep"`` reads the next request on the
    connection, ``"close"`` closes it (FIN), ``"reset"`` aborts it with a TCP RST,
    ``"stall"`` sends nothing more and waits for the client to leave.
    """

    pieces: Sequence[bytes] = ()
    pause: float = 0.0
    then: Then = "keep"
    gate: asyncio.Event | None = None
    gate_before: int | None = None


def stream_reply(
    *texts: str,
    finish: str | None = "stop",
    done: bool = True,
    framing: Literal["chunked", "length", "close"] = "chunked",
    split: bool = False,
    pause: float = 0.0,
    then: Then = "keep",
) -> Reply:
    """A streamed answer: one SSE event per text, a finish event, ``[DONE]``.

    ``split`` sends each event in its own write (else the whole body in one).
    """
    events = [text_event(t) for t in texts]
    if finish is not None:
        events.append(finish_event(finish))
    if done:
        events.append(DONE)
    return sse_reply(events, framing=framing, split=split, pause=pause, then=then)


def sse_reply(
    events: Sequence[bytes],
    *,
    framing: Literal["chunked", "length", "close"] = "chunked",
    split: bool = True,
    pause: float = 0.0,
    then: Then = "keep",
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """An SSE body made of exactly these byte pieces, framed as asked."""
    extra = list(headers)
    if framing == "chunked":
        first = head(200, [*SSE_HEADERS, *extra])
        body = [framed(e) for e in events if e] + [b"0\r\n\r\n"]
    elif framing == "length":
        total = sum(map(len, events))
        first = head(200, [("Content-Type", "text/event-stream"), ("Content-Length", str(total))])
        body = list(events)
    else:
        first = head(200, [("Content-Type", "text/event-stream"), ("Connection", "close")])
        body = list(events)
        then = "close"
    pieces = [first, *body] if split else [first + b"".join(body)]
    return Reply(pieces, pause=pause, then=then)


def json_reply(
    status: int,
    payload: object | bytes,
    *,
    headers: Iterable[tuple[str, str]] = (),
    then: Then = "keep",
) -> Reply:
    """A whole response with a ``Content-Length`` body (JSON unless ``payload`` is bytes)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *headers,
    ]
    return Reply([head(status, all_headers) + body], then=then)


# -- the raw server -------------------------------------------------------------------------


@dataclass
class Request:
    """One request as the server parsed it (header names lower-cased, values as sent)."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int
    received_at: float  # the loop's clock when the whole request had arrived

    def header(self, name: str) -> bytes | None:
        wanted = name.lower().encode()
        return next((v for n, v in self.headers if n == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)


class _Malformed(Exception):
    pass


class Peer:
    """The server's side of one accepted connection."""

    def __init__(
        self,
        server: RawServer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.index = index
        self.reader = reader
        self.writer = writer
        self.raw = bytearray()  # every byte the client sent on this connection
        self.requests: list[Request] = []
        self.malformed: list[bytes] = []  # heads the server could not parse
        self.client_gone = asyncio.Event()  # the client closed or reset the connection

    async def _read_until(self, separator: bytes) -> bytes:
        try:
            data = await self.reader.readuntil(separator)
        except asyncio.IncompleteReadError as exc:
            self.raw += exc.partial
            raise
        except asyncio.LimitOverrunError:
            raise _Malformed from None
        self.raw += data
        return data

    async def _read_exactly(self, size: int) -> bytes:
        try:
            data = await self.reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            self.raw += exc.partial
            raise
        self.raw += data
        return data

    async def read_request(self) -> Request | None:
        """The next request, body decoded from its framing; ``None`` once the client left."""
        try:
            return await self._read_request()
        except (asyncio.IncompleteReadError, ConnectionError):
            self._gone()
            return None

    async def _read_request(self) -> Request | None:
        raw_head = await self._read_until(b"\r\n\r\n")
        lines = raw_head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self.malformed.append(raw_head)
            raise _Malformed
        method, target, _ = parts
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                self.malformed.append(raw_head)
                raise _Malformed
            headers.append((name.strip().lower(), value.strip()))
        found = dict(headers)
        if found.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await self._read_chunked()
        else:
            body = await self._read_exactly(int(found.get(b"content-length", b"0")))
        request = Request(
            method, target, headers, body, self.index, asyncio.get_running_loop().time()
        )
        self.requests.append(request)
        await self.server._changed()  # pyright: ignore[reportPrivateUsage] -- same module
        return request

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = await self._read_until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            body += (await self._read_exactly(size + 2))[:-2]
        while await self._read_until(b"\r\n") != b"\r\n":
            pass  # a trailer field
        return bytes(body)

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Write each piece on its own (drained, then ``pause`` seconds)."""
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def wait_gone(self) -> None:
        """Read (and record) whatever arrives until the client closes the connection."""
        try:
            while data := await self.reader.read(65536):
                self.raw += data
        except ConnectionError:
            pass
        self._gone()

    def _gone(self) -> None:
        self.client_gone.set()

    async def play(self, reply: Reply) -> bool:
        """Write ``reply``; True if the connection should carry on to the next request."""
        pieces = list(reply.pieces)
        split = len(pieces) if reply.gate_before is None else reply.gate_before
        await self.send(*pieces[:split], pause=reply.pause)
        if reply.gate is not None:
            await reply.gate.wait()
        await self.send(*pieces[split:], pause=reply.pause)
        if reply.then == "reset":
            self.reset()
            return False
        if reply.then == "stall":
            await self.wait_gone()
            return False
        return reply.then == "keep"


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A raw HTTP/1.1 server on 127.0.0.1 in the running loop (see the module doc).

    Each request takes the next reply from :meth:`enqueue`'s queue; with the queue
    empty it gets ``default``, and with no default the server reads the request and
    closes the connection without answering. Setting ``handler`` replaces all of
    that with a coroutine run once per accepted connection.
    """

    def __init__(
        self, handler: Handler | None = None, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self._ssl = ssl_context
        self.default: Reply | None = None
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self.connections_closed = 0
        self.port = 0
        self._replies: list[Reply] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._condition: asyncio.Condition | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._condition = asyncio.Condition()
        self._server = await asyncio.start_server(
            self._on_connect, "127.0.0.1", 0, limit=_MAX_HEAD, ssl=self._ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server = self._server
        assert server is not None
        server.close()
        for task in self._tasks:
            task.cancel()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
        if self.errors and kind is None:
            raise self.errors[0]

    # -- scripting ----------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies: each request takes the next one, across connections."""
        self._replies.extend(replies)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with an ``ssl_context``)."""
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    # -- observation --------------------------------------------------------------------

    @property
    def connections_opened(self) -> int:
        return len(self.peers)

    @property
    def requests(self) -> list[Request]:
        """Every parsed request, in the order they arrived."""
        every = [r for peer in self.peers for r in peer.requests]
        return sorted(every, key=lambda r: r.received_at)

    @property
    def raw(self) -> bytes:
        """Every byte received, connection after connection."""
        return b"".join(bytes(peer.raw) for peer in self.peers)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 2.0) -> None:
        """Wait until ``predicate()`` holds (checked at each change); TimeoutError after
        ``within`` seconds."""
        condition = self._condition
        assert condition is not None
        async with asyncio.timeout(within), condition:
            await condition.wait_for(predicate)

    async def _changed(self) -> None:
        condition = self._condition
        assert condition is not None
        async with condition:
            condition.notify_all()

    # -- serving ------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(self, len(self.peers), reader, writer)
        self.peers.append(peer)
        await self._changed()
        try:
            if self.handler is not None:
                await self.handler(peer)
            else:
                await self._serve_replies(peer)
        except (ConnectionError, asyncio.IncompleteReadError, _Malformed):
            pass
        except asyncio.CancelledError:
            pass  # the server is shutting down
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self.connections_closed += 1
            with contextlib.suppress(asyncio.CancelledError):
                await self._changed()

    async def _serve_replies(self, peer: Peer) -> None:
        while await peer.read_request() is not None:
            reply = self._replies.pop(0) if self._replies else self.default
            if reply is None or not await peer.play(reply):
                return


# -- uvicorn in a subprocess ------------------------------------------------------------------

_TESTS = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class UvicornServer:
    """``uvicorn _asgi_openai:app --http <http>`` in a subprocess, on a free port."""

    http: Literal["h11", "httptools"]
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, *, within: float = 30.0) -> Self:
        for _ in range(3):  # the free port may be taken before uvicorn binds it
            self.port = _free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "_asgi_openai:app",
                "--app-dir",
                str(_TESTS),
                "--http",
                self.http,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--lifespan",
                "off",
                "--no-access-log",
            ]
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
            )
            if self._wait_for_port(within):
                return self
            self.stop()
        raise RuntimeError(f"uvicorn --http {self.http} did not start")

    def _wait_for_port(self, within: float) -> bool:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chat_clients(self) -> list[tuple[str, int]]:
        """The client (host, port) of every chat request the app served, in order."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/stats")
            stats = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        return [(str(host), int(port)) for host, port in stats["chat_clients"]]
