"""An httpx transport speaking HTTP/1.1 over asyncio Protocols: cheap per chunk, O(1) per request.

httpx's default transport reads every chunk through httpcore, h11 and anyio
(about 300 µs of CPU per chunk with 1000 streams open here), and its pool scans
every connection each time a request starts or ends (O(N) per request, see
encode/httpcore#1035). :class:`HTTP11Transport` keeps httpx's client API,
request building and exceptions, and replaces only the wire: an
:class:`asyncio.Protocol` per connection parses the response head and the
body framing (``content-length``, ``chunked`` or until close) as bytes arrive,
and the pool keeps idle connections per origin in insertion-ordered dicts.

What it does:

- HTTP/1.1 with keep-alive (at most ``max_keepalive`` idle connections, each
  for at most ``keepalive_expiry`` seconds); ``http://`` and ``https://`` (TLS
  from :func:`httpx.create_ssl_context` unless ``ssl_context`` is given).
- httpx's timeouts: ``connect`` (TCP and TLS), ``read`` (the longest wait for
  the next bytes), ``write``. A wait that times out raises the httpx
  exception for it; a dropped connection raises :class:`httpx.ReadError` or
  :class:`httpx.RemoteProtocolError`, as httpx's own transport does.
- Back-pressure: reading pauses while more than ``high_water`` body bytes
  wait for the consumer.
- A request that finds its reused keep-alive connection closed by the server
  before any byte of the answer is sent again once on a new connection.

It does not speak HTTP/2 or go through proxies: httpx reads ``HTTP(S)_PROXY``
only for the transports it builds itself, so the direct transport sends a
request that the environment routes through a proxy with a plain
``httpx.AsyncClient`` instead.

>>> import asyncio, httpx
>>> from kagura.testing.loopback import LoopbackServer, Script
>>> async def main(url: str) -> int:
...     body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
...     async with httpx.AsyncClient(transport=HTTP11Transport()) as client:
...         response = await client.post(url + "/chat/completions", json=body)
...         return response.json()["choices"][0]["message"]["content"]
>>> with LoopbackServer() as server:
...     server.enqueue(Script.text("Hello over HTTP/1.1"))
...     asyncio.run(main(server.base_url))
'Hello over HTTP/1.1'
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator

import httpx

__all__ = ["HTTP11Transport"]

_MAX_HEAD = 64 * 1024  # bytes of status line + headers
_MAX_CHUNK_LINE = 4096  # bytes of a chunk-size line (with extensions) or trailer line
_HEAD_END = re.compile(rb"\r?\n\r?\n")  # h11 accepts bare LF in a response head too
_LINE_END = re.compile(rb"\r?\n")

_Origin = tuple[bytes, str, int]  # scheme, host, port
_Head = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, reason, headers


class HTTP11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for an :class:`httpx.AsyncClient`: one asyncio Protocol per connection."""

    def __init__(
        self,
        *,
        max_keepalive: int = 100,
        keepalive_expiry: float = 5.0,
        high_water: int = 256 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_keepalive = max_keepalive
        self._keepalive_expiry = keepalive_expiry
        self._high_water = high_water
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, dict[_Connection, None]] = {}
        self._idle_count = 0
        self._active: set[_Connection] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"HTTP11Transport(idle={self._idle_count}, active={len(self._active)})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("HTTP11Transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme.decode()!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        origin: _Origin = (scheme, url.raw_host.decode("ascii"), port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        head = _request_head(request)
        body = await request.aread()
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        for attempt in range(2):
            conn = self._idle_connection(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"))
                if self._closed:  # aclose() ran while we connected
                    conn.close()
                    raise httpx.ConnectError(
                        "HTTP11Transport was closed while connecting", request=request
                    )
            self._active.add(conn)
            try:
                await conn.send(head, body, request.method == "HEAD", timeouts.get("write"))
                status, reason, headers = await conn.receive_head(timeouts.get("read"))
            except _StaleConnection:
                self._forget(conn)
                if reused and attempt == 0 and not self._closed:
                    continue  # the server closed an idle keep-alive connection: once more
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                ) from None
            except BaseException:
                self._forget(conn)
                raise
            return httpx.Response(
                status,
                headers=headers,
                stream=_ResponseBody(self, conn, timeouts.get("read")),
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        for conn in list(self._active):
            conn.close()
        self._active.clear()

    # -- the pool --------------------------------------------------------------------------

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while conns:
            conn, _ = conns.popitem()  # the most recently used first
            self._idle_count -= 1
            if conn.reusable and now - conn.idle_since < self._keepalive_expiry:
                conn.idle_pool = None
                return conn
            conn.close()
        return None

    async def _connect(self, origin: _Origin, connect_timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            tls = self._ssl_context or httpx.create_ssl_context()
            self._ssl_context = tls
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._high_water),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
        conn.origin = origin
        conn.pool = self
        return conn

    def _release(self, conn: _Connection) -> None:
        """The response is over: keep the connection for the next request, or close it."""
        self._active.discard(conn)
        if not conn.reusable or self._closed or self._idle_count >= self._max_keepalive:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        conns = self._idle.setdefault(conn.origin, {})
        conns[conn] = None
        conn.idle_pool = conns
        self._idle_count += 1

    def _forget(self, conn: _Connection) -> None:
        self._active.discard(conn)
        conn.close()

    def _dropped_idle(self, conn: _Connection) -> None:
        pool = conn.idle_pool
        if pool is not None and conn in pool:
            del pool[conn]
            self._idle_count -= 1
        conn.idle_pool = None


class _StaleConnection(Exception):
    """The connection closed before any byte of the response arrived."""


class _ResponseBody(httpx.AsyncByteStream):
    """The body of one response, read from its connection; closing it releases the connection."""

    __slots__ = ("_conn", "_done", "_pool", "_read_timeout")

    def __init__(
        self, pool: HTTP11Transport, conn: _Connection, read_timeout: float | None
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._read_timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn, timeout = self._conn, self._read_timeout
        while (piece := await conn.receive_body(timeout)) is not None:
            yield piece

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete:
            conn.discard_unread()
            self._pool._release(conn)  # pyright: ignore[reportPrivateUsage] -- same module
        else:
            self._pool._forget(conn)  # pyright: ignore[reportPrivateUsage] -- same module


# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: parses responses as bytes arrive, hands body pieces to a reader."""

    def __init__(self, high_water: int) -> None:
        self._high_water = high_water
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._state = _DONE
        self._remaining = 0  # body or chunk bytes still to come
        self._head_only = False
        self._keep_alive = True
        self._head: _Head | None = None
        self._pieces: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self._received_any = False
        self._stale = False
        self._lost = False
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None
        self.origin: _Origin = (b"", "", 0)
        self.idle_since = 0.0
        self.idle_pool: dict[_Connection, None] | None = None
        self.pool: HTTP11Transport | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if self._state == _DONE:
            self._keep_alive = False  # bytes nobody asked for: never reuse this connection
            return
        self._buffer += data
        try:
            pieces = self._parse()
        except httpx.RemoteProtocolError as exc:
            self._fail(exc)
            self.close()
            return
        if pieces:
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self._pieces.append(body)
            self._queued += len(body)
            if self._queued > self._high_water and not self._paused and self._transport:
                self._paused = True
                self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport: HTTP/1.1 has no use for a half-open connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._keep_alive = False
        if self._state == _UNTIL_CLOSE and exc is None:
            self._state = _DONE
        elif self._state != _DONE and self._error is None:
            if not self._received_any:
                self._stale = True
                self._error = httpx.RemoteProtocolError(
                    "Server disconnected without sending a response."
                )
            elif exc is not None:
                self._error = httpx.ReadError(f"connection lost: {type(exc).__name__}")
            else:
                self._error = httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        if self._watchdog is not None:
            self._watchdog.cancel()
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)
        self._wake()
        if self.idle_pool is not None and self.pool is not None:
            self.pool._dropped_idle(self)  # pyright: ignore[reportPrivateUsage] -- same module

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- used by the transport ----------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self._lost and self._state == _DONE

    @property
    def complete(self) -> bool:
        return self._state == _DONE and self._error is None

    def discard_unread(self) -> None:
        """Drop body bytes the reader never took, and read again if that had paused reading."""
        self._pieces.clear()
        self._queued = 0
        self._resume_reading()

    def _resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            if self._transport is not None and not self._lost:
                self._transport.resume_reading()

    def close(self) -> None:
        self._keep_alive = False
        if self._transport is not None and not self._lost:
            self._transport.close()

    async def send(
        self, head: bytes, body: bytes, head_only: bool, write_timeout: float | None
    ) -> None:
        assert self._transport is not None
        self._state, self._head, self._head_only = _HEAD, None, head_only
        self._received_any = False
        self._error = None
        if self._lost:
            raise _StaleConnection
        self._transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self._transport.write(body)
        if self._writable is not None:
            try:
                async with asyncio.timeout(write_timeout):
                    await self._writable
            except TimeoutError:
                self.close()
                raise httpx.WriteTimeout("writing the request timed out") from None
            if self._lost:
                raise httpx.WriteError("connection lost while writing the request")

    async def receive_head(self, read_timeout: float | None) -> _Head:
        while self._head is None:
            if self._stale:
                raise _StaleConnection
            if self._error is not None:
                raise self._error
            await self._wait(read_timeout)
        return self._head

    async def receive_body(self, read_timeout: float | None) -> bytes | None:
        """The next body bytes; None once the body is complete."""
        while True:
            if self._pieces:
                piece = self._pieces.popleft()
                self._queued -= len(piece)
                if self._paused and self._queued <= self._high_water // 2:
                    self._resume_reading()
                return piece
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return None
            await self._wait(read_timeout)

    # -- waiting --------------------------------------------------------------------------

    async def _wait(self, read_timeout: float | None) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        if read_timeout is None:
            self._deadline = float("inf")
        else:
            self._deadline = self._loop.time() + read_timeout
            watchdog = self._watchdog
            if watchdog is None or watchdog.when() > self._deadline:
                if watchdog is not None:
                    watchdog.cancel()
                self._watchdog = self._loop.call_at(self._deadline, self._check_deadline)
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        """One timer per connection, moved lazily: cheaper than a timer for every wait."""
        self._watchdog = None
        if self._waiter is None or self._lost or self._deadline == float("inf"):
            return
        if self._loop.time() < self._deadline:
            self._watchdog = self._loop.call_at(self._deadline, self._check_deadline)
            return
        self._fail(httpx.ReadTimeout("timed out waiting for the server"))
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error
        self._keep_alive = False
        self._wake()

    # -- parsing --------------------------------------------------------------------------

    def _parse(self) -> list[bytes]:
        """Consume what the buffer holds; return the body bytes found in it."""
        buf = self._buffer
        pos = 0
        pieces: list[bytes] = []
        while pos < len(buf):
            state = self._state
            if state == _CHUNK_SIZE:
                end = _line_end(buf, pos, "chunk size")
                if end < 0:
                    break
                size_text = bytes(buf[pos:end]).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                if size_text.strip(b"0123456789abcdefABCDEF"):
                    raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}")
                pos = end + 2
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILER
            elif state in (_CHUNK_DATA, _LENGTH):
                take = min(self._remaining, len(buf) - pos)
                pieces.append(bytes(buf[pos : pos + take]))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_END if state == _CHUNK_DATA else _DONE
            elif state == _CHUNK_END:
                if len(buf) - pos < 2:
                    break
                if not buf.startswith(b"\r\n", pos):
                    raise httpx.RemoteProtocolError("chunk data not followed by CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _UNTIL_CLOSE:
                pieces.append(bytes(buf[pos:]))
                pos = len(buf)
            elif state == _TRAILER:
                end = _line_end(buf, pos, "trailer")
                if end < 0:
                    break
                self._state = _DONE if end == pos else _TRAILER
                pos = end + 2
            elif state == _HEAD:
                match = _HEAD_END.search(buf, pos)
                if match is None:
                    if len(buf) - pos > _MAX_HEAD:
                        raise httpx.RemoteProtocolError("response head too large")
                    break
                end = match.start()
                if end - pos > _MAX_HEAD:
                    raise httpx.RemoteProtocolError("response head too large")
                head = bytes(buf[pos:end])
                pos = match.end()
                self._start_body(head)
            else:  # _DONE: bytes beyond the response
                self._keep_alive = False
                pos = len(buf)
        del buf[:pos]
        return pieces

    def _start_body(self, head: bytes) -> None:
        lines = _LINE_END.split(head)
        parts = lines[0].split(b" ", 2)
        status_text = parts[1] if len(parts) > 1 else b""
        bad_status = len(status_text) != 3 or not status_text.isdigit()
        if not parts[0].startswith(b"HTTP/1.") or bad_status:
            raise httpx.RemoteProtocolError(f"bad status line {lines[0][:60]!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return  # an interim response (100 Continue): the real one follows
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep_alive = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"bad header line {line[:60]!r}")
            value = value.strip()
            headers.append((name, value))
            key = name.lower()
            if key == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise httpx.RemoteProtocolError(f"bad content-length {value[:20]!r}")
                if length is not None and length != int(value):
                    raise httpx.RemoteProtocolError(f"bad content-length {value[:20]!r}")
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = value.lower().split(b",")[-1].strip() == b"chunked"
            elif key == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        reason = parts[2] if len(parts) > 2 else b""
        self._head = (status, reason, headers)
        self._keep_alive = self._keep_alive and keep_alive
        if self._head_only or status in (204, 304):
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False


def _line_end(buf: bytearray, pos: int, what: str) -> int:
    """Where the CRLF ending the line at ``pos`` is; -1 while it has not arrived."""
    end = buf.find(b"\r\n", pos)
    if end < 0 and len(buf) - pos > _MAX_CHUNK_LINE:
        raise httpx.RemoteProtocolError(f"{what} line too long")
    return end


def _request_head(request: httpx.Request) -> bytes:
    url = request.url
    target = url.raw_path or b"/"
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"
