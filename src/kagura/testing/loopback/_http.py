"""HTTP/1.1 on one connection: reading requests, writing responses, noticing the client leave.

Just enough of RFC 9112 for the clients kagura tests with: keep-alive, request bodies
sized by ``Content-Length`` or sent ``Transfer-Encoding: chunked``, chunked responses.
What it cannot read raises :class:`BadRequest`, which the server answers with a 400.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["BadRequest", "ClientGone", "Connection", "RecordedRequest", "chunked"]

_MAX_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024
_ABSOLUTE_TARGET = re.compile(r"^https?://[^/?#]*", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")


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


class BadRequest(Exception):
    """A request HTTP/1.1 does not allow, or that this server does not read."""


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


def chunked(data: bytes) -> bytes:
    """``data`` as one chunk of a ``Transfer-Encoding: chunked`` body (nothing if empty).

    >>> chunked(b"data: 1\\n\\n")
    b'9\\r\\ndata: 1\\n\\n\\r\\n'
    """
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


@dataclass(slots=True, eq=False)
class Connection:
    """One TCP connection, served one request at a time.

    ``eof``: the client closed its side. ``keep_alive``: the last request lets the
    connection serve another. ``busy``: a response is being written.
    """

    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False
    busy: bool = False
    keep_alive: bool = True

    # -- reading -----------------------------------------------------------------------

    async def read_request(self) -> RecordedRequest | None:
        """The next request; ``None`` if the client closed the connection before one.

        Raises :class:`BadRequest` for a request it cannot read and :class:`ClientGone`
        if the client leaves in the middle of one.
        """
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > _MAX_HEAD:
                raise BadRequest("request head too large")
            try:
                await self._fill()
            except ClientGone:
                return None
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        try:
            method, target, version = head[0].split(" ")
        except ValueError:
            raise BadRequest(f"bad request line {head[0]!r}") from None
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"bad header line {line!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw = await self._read_chunked_body()
        else:
            length = headers.get("content-length", "0")
            if not _CONTENT_LENGTH.fullmatch(length):
                raise BadRequest(f"bad content-length {length[:40]!r}")
            raw = await self._take(int(length))
        connection = headers.get("connection", "").lower()
        keep = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        self.keep_alive = keep
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
        return RecordedRequest(method, path, query, headers, raw, body, form, self.id, target)

    async def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            # chunk-size [ ";" chunk-ext ] CRLF; the extensions mean nothing here.
            size_field = (await self._take_line()).split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_field):
                raise BadRequest(f"bad chunk size {size_field[:40]!r}")
            size = int(size_field, 16)
            if not size:
                break
            parts.append(await self._take(size))
            if await self._take_line():
                raise BadRequest("chunk data longer than its size")
        while await self._take_line():  # trailer fields, ignored
            pass
        return b"".join(parts)

    async def _fill(self) -> None:
        data = await self.reader.read(_READ_SIZE)
        if not data:
            self.eof = True
            raise ClientGone
        self.buffer += data

    async def _take_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > _MAX_HEAD:
                raise BadRequest("line too long")
            await self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    # -- answering ---------------------------------------------------------------------

    async def respond(self, answer: Coroutine[Any, Any, bool]) -> bool:
        """Run ``answer`` (it writes a response and says whether the connection may
        serve another) while reading from the client, so that a client that leaves is
        noticed at once, even while ``answer`` sleeps or stalls: it is then cancelled.
        True if another request may follow."""
        route = asyncio.create_task(answer)
        watcher = asyncio.create_task(self._watch())
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
        return route.result() and self.keep_alive and not self.eof

    async def _watch(self) -> None:
        """Read while a response is written: sets ``eof`` when the client leaves."""
        try:
            while data := await self.reader.read(_READ_SIZE):
                self.buffer += data
        except ConnectionError:
            pass
        self.eof = True

    async def write_head(
        self, status: int, headers: Sequence[tuple[str, str]], *, keep: bool = True
    ) -> None:
        """The status line and ``headers``, with ``connection: keep-alive`` or ``close``."""
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers)]
        keep = keep and self.keep_alive
        lines.append(f"connection: {'keep-alive' if keep else 'close'}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()

    async def send_json(
        self,
        status: int,
        payload: object,
        *,
        keep: bool = True,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> bool:
        """A whole response: ``payload`` as JSON (or ``raw`` as it is); returns ``keep``."""
        data = raw if raw is not None else json.dumps(payload).encode()
        head = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            *(headers or {}).items(),
        ]
        await self.write_head(status, head, keep=keep)
        self.writer.write(data)
        await self.writer.drain()
        return keep

    async def write_chunk(self, data: bytes) -> None:
        """One chunk of a chunked body."""
        self.writer.write(chunked(data))
        await self.writer.drain()

    async def end_chunks(self, data: bytes = b"") -> None:
        """The last chunk of a chunked body (if ``data``), then the body's end."""
        self.writer.write(chunked(data) + b"0\r\n\r\n")
        await self.writer.drain()
