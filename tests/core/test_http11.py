"""HTTP11Transport over real sockets: framing, keep-alive, faults, timeouts, back-pressure, TLS.

Most tests run a small raw server (:class:`RawServer`, ``asyncio.start_server``) in
the test's own loop that writes exactly the bytes the test chooses, split into pieces
that arrive separately; the last ones stream through the :class:`LoopbackServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import ssl
import string
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagura.core.transports.http11 import HTTP11Transport
from kagura.testing.loopback import LoopbackServer, Script

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
GUARD = 10.0  # seconds: the most any test here may wait for anything


# -- a raw HTTP/1.1 server that writes exactly the bytes a test chooses ---------------------
@dataclass
class Request:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]  # names lower-cased
    body: bytes  # decoded from its framing
    raw_body: bytes  # as it came over the wire

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


_CHUNK_LINE = re.compile(rb"[0-9a-fA-F]+(;[^\r\n]*)?\r\n")


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.index = index
        self.reader = reader
        self.writer = writer
        self.requests: list[Request] = []
        self.eof = asyncio.Event()  # the client closed (or reset) the connection

    async def read_request(self) -> Request | None:
        """The next request, its body checked against its framing; None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof.set()
            return None
        lines = head[:-4].split(b"\r\n")
        method, target, version = lines[0].split(b" ")
        assert version == b"HTTP/1.1", lines[0]
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            assert colon, line
            assert name == name.strip(), line
            headers.append((name.lower(), value.strip()))
        request = Request(method, target, headers, b"", b"")
        if request.header(b"transfer-encoding") == b"chunked":
            assert request.header(b"content-length") is None
            request.body, request.raw_body = await self._read_chunked()
        elif (length := request.header(b"content-length")) is not None:
            request.body = request.raw_body = await self.reader.readexactly(int(length))
        self.requests.append(request)
        return request

    async def _read_chunked(self) -> tuple[bytes, bytes]:
        raw, body = bytearray(), bytearray()
        while True:
            line = await self.reader.readuntil(b"\r\n")
            raw += line
            assert _CHUNK_LINE.fullmatch(line), line
            size = int(line.split(b";")[0].rstrip(b"\r\n"), 16)
            if size == 0:
                break
            data = await self.reader.readexactly(size + 2)
            raw += data
            assert data.endswith(b"\r\n"), data[-10:]
            body += data[:-2]
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            raw += line  # a trailer field
        raw += line
        return bytes(body), bytes(raw)

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Write each piece on its own (drained, then ``pause`` seconds), so they arrive apart."""
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)

    async def serve(self, response: bytes = OK) -> None:
        """Answer every further request on this connection with ``response``, until EOF."""
        while await self.read_request() is not None:
            await self.send(response)

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """``asyncio.start_server`` on 127.0.0.1: runs ``handler`` for each connection.

    The connection closes when the handler returns. ``peers`` lists the accepted
    connections in order; a handler's own failure (say, a malformed request body)
    fails the test when the server exits.
    """

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl = ssl_context
        self._tasks: set[asyncio.Task[None]] = set()
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
        if self.errors and kind is None:
            raise self.errors[0]

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.peers)

    @property
    def requests(self) -> list[Request]:
        return [request for peer in self.peers for request in peer.requests]

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(len(self.peers), reader, writer)
        self.peers.append(peer)
        try:
            await self._handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()


def serving(response: bytes = OK) -> Handler:
    """Every request on every connection gets ``response``; connections stay open."""

    async def handler(peer: Peer) -> None:
        await peer.serve(response)

    return handler


def http_client(
    transport: HTTP11Transport, timeout: float | httpx.Timeout = 5.0
) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


async def read_all(response: httpx.Response, into: bytearray | None = None) -> bytes:
    """The raw body, piece by piece (``into`` keeps what arrived if it then raises)."""
    into = bytearray() if into is None else into
    async for piece in response.aiter_raw():
        into += piece
    return bytes(into)


async def get_streamed(client: httpx.AsyncClient, url: str, into: bytearray) -> None:
    async with client.stream("GET", url) as response:
        await read_all(response, into)


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:  # noqa: ASYNC109
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def split(data: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- property: any split of a response gives the same status, headers and body ------------
_NAMES = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=10).map(
    lambda s: b"X-" + s.encode()
)
_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16).map(
    lambda s: s.strip().encode()
)
_STATUS_LINES = {  # status line: (status, reason phrase)
    b"HTTP/1.1 200 OK": (200, b"OK"),
    b"HTTP/1.1 200 ": (200, b""),
    b"HTTP/1.1 200": (200, b""),
    b"HTTP/1.1 201 Created it has": (201, b"Created it has"),
}
_INTERIM = [
    b"",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
]
_EXTENSIONS = [b"", b";a", b";name=value", b';q="x;y"', b" ;ws=1"]


@dataclass
class Case:
    pieces: list[bytes]  # the response, as the server writes it
    framing: str  # "length", "chunked" or "close"
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@st.composite
def responses(draw: st.DrawFn) -> Case:
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    status_line = draw(st.sampled_from(sorted(_STATUS_LINES)))
    extra = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=4))
    separators = [draw(st.sampled_from([b": ", b":", b":  ", b":\t "])) for _ in extra]
    if framing == "chunked":
        headers = [(b"Transfer-Encoding", b"chunked"), *extra]
        size_format = draw(st.sampled_from([b"%x", b"%X", b"%04x"]))
        cuts = draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=6))
        framed = b"".join(
            size_format % len(chunk)
            + draw(st.sampled_from(_EXTENSIONS))
            + b"\r\n"
            + chunk
            + b"\r\n"
            for chunk in split(body, cuts)
            if chunk  # an empty chunk would end the body
        )
        trailers = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=2))
        framed += b"0" + draw(st.sampled_from(_EXTENSIONS)) + b"\r\n"
        framed += b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
    elif framing == "length":
        headers = [(b"Content-Length", str(len(body)).encode()), *extra]
        framed = body
    else:  # until the server closes
        headers = list(extra)
        framed = body
    seps = [b": "] * (len(headers) - len(extra)) + separators
    raw = draw(st.sampled_from(_INTERIM)) + status_line + b"\r\n"
    raw += b"".join(n + sep + v + b"\r\n" for (n, v), sep in zip(headers, seps, strict=True))
    raw += b"\r\n" + framed
    pieces = split(raw, draw(st.sets(st.integers(1, len(raw) - 1), max_size=10)))
    status, reason = _STATUS_LINES[status_line]
    return Case(pieces, framing, status, reason, headers, body)


@settings(max_examples=30)
@given(case=responses())
async def test_any_split_of_a_response_yields_the_same_head_and_body(case: Case) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.read_request()
            await peer.send(*case.pieces, pause=0.002)
            if case.framing == "close":
                return  # the close ends the body
        await peer.serve()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        response = await client.get(server.url + "/first")
        assert response.status_code == case.status
        assert response.extensions["reason_phrase"] == case.reason
        assert response.headers.raw == case.headers
        assert response.content == case.body
        # The framing ended exactly where the response did: the next answer is intact,
        # on the same connection unless the body ran until the server closed.
        assert (await client.get(server.url + "/second")).content == b"ok"
    assert server.connections == (2 if case.framing == "close" else 1)


# -- keep-alive -----------------------------------------------------------------------------
async def test_sequential_requests_reuse_one_connection() -> None:
    transport = HTTP11Transport()
    async with asyncio.timeout(GUARD), RawServer(serving()) as server:
        async with http_client(transport) as client:
            for path in ("/a", "/b", "/c"):
                response = await client.get(server.url + path)
                assert response.content == b"ok"
                assert repr(transport) == "HTTP11Transport(idle=1, active=0)"
        assert server.connections == 1
        assert [r.target for r in server.requests] == [b"/a", b"/b", b"/c"]
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)  # closed with the client


@pytest.mark.parametrize(
    ("response", "server_closes", "connections"),
    [
        pytest.param(OK, False, 1, id="http/1.1-keeps"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            False,
            2,
            id="connection-close",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 2\r\n\r\nok",
            False,
            2,
            id="close-among-tokens",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False, 2, id="http/1.0"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            False,
            1,
            id="http/1.0-keep-alive",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nok", True, 2, id="until-close"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False, 2, id="bytes-beyond"
        ),
    ],
)
async def test_reuse_follows_the_response(
    response: bytes, server_closes: bool, connections: int
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(response)
            if server_closes:
                return

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        for _ in range(2):
            assert (await client.get(server.url)).content == b"ok"
        assert server.connections == connections
        if connections == 2 and not server_closes:  # the client closed the first one itself
            await asyncio.wait_for(server.peers[0].eof.wait(), 2)
        assert not server.peers[-1].eof.is_set()


async def test_partly_read_body_closes_its_connection() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.read_request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"x" * 10)
            await peer.read_request()  # until EOF
        else:
            await peer.serve()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        async with (
            client.stream("GET", server.url) as response,
            contextlib.aclosing(cast(AsyncGenerator[bytes], response.aiter_raw())) as pieces,
        ):
            async for piece in pieces:
                assert piece == b"x" * 10
                break  # and leave the other 999 990 bytes unread
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)
        assert (await client.get(server.url)).content == b"ok"
        assert server.connections == 2


@pytest.mark.parametrize("high_water", [256 * 1024, 16], ids=["queued", "queued-and-paused"])
async def test_unread_body_never_leaks_into_the_next_response(high_water: int) -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"A" * 64, OK]

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(answers.pop(0) if answers else OK)

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport(high_water=high_water), timeout=0.5) as client,
    ):
        async with client.stream("GET", server.url) as response:
            assert response.status_code == 200
            await asyncio.sleep(0.05)  # the whole body arrives; nobody reads it
        assert (await client.get(server.url)).content == b"ok"


async def test_max_keepalive_bounds_the_idle_connections() -> None:
    async def handler(peer: Peer) -> None:
        await peer.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % peer.index)

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport(max_keepalive=1)) as client,
    ):
        async with (
            client.stream("GET", server.url) as first,
            client.stream("GET", server.url) as second,
        ):
            assert server.connections == 2  # both busy at once
            assert await first.aread() == b"0"  # read to the end: released to the pool
            assert await second.aread() == b"1"  # released to a full pool: closed
        await asyncio.wait_for(server.peers[1].eof.wait(), 2)
        assert not server.peers[0].eof.is_set()
        assert (await client.get(server.url)).content == b"0"
        assert server.connections == 2


async def test_max_keepalive_zero_keeps_nothing() -> None:
    async with (
        asyncio.timeout(GUARD),
        RawServer(serving()) as server,
        http_client(HTTP11Transport(max_keepalive=0)) as client,
    ):
        for _ in range(3):
            assert (await client.get(server.url)).content == b"ok"
        assert server.connections == 3
        await asyncio.wait_for(server.peers[1].eof.wait(), 2)


async def test_keepalive_expiry_retires_idle_connections() -> None:
    async with (
        asyncio.timeout(GUARD),
        RawServer(serving()) as server,
        http_client(HTTP11Transport(keepalive_expiry=0.1)) as client,
    ):
        await client.get(server.url)
        await client.get(server.url)  # well within the expiry: reused
        assert server.connections == 1
        await asyncio.sleep(0.2)
        assert (await client.get(server.url)).content == b"ok"
        assert server.connections == 2
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)  # the expired one was closed


# -- connections the server closes ----------------------------------------------------------
async def test_pool_drops_an_idle_connection_the_server_closed() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        if peer.index > 0:
            await peer.serve()

    transport = HTTP11Transport()
    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(transport) as client,
    ):
        await client.get(server.url)
        await eventually(lambda: repr(transport) == "HTTP11Transport(idle=0, active=0)")
        assert (await client.get(server.url)).content == b"ok"
        assert server.connections == 2


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_reused_connection_closed_before_the_answer_is_retried_once(how: str) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.read_request()
            await peer.send(OK)
            await peer.read_request()  # the keep-alive timer fired: close, answer nothing
            if how == "reset":
                peer.reset()
            return
        await peer.serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nretry")

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        assert (await client.get(server.url)).content == b"ok"
        response = await client.post(server.url + "/again", content=b"payload")
        assert response.content == b"retry"
        assert server.connections == 2
        sent = [(r.method, r.target, r.body) for r in server.requests]
        assert sent == [
            (b"GET", b"/", b""),
            (b"POST", b"/again", b"payload"),
            (b"POST", b"/again", b"payload"),
        ]


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_fresh_connection_closed_before_the_answer_raises(how: str) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        if how == "reset":
            peer.reset()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.get(server.url)
        assert server.connections == 1  # no retry on a new connection


async def test_stale_retry_happens_only_once() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        if peer.index == 0:
            await peer.send(OK)
            await peer.read_request()
        # then close without answering

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        await client.get(server.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)
        assert server.connections == 2


# -- broken responses -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sent", "error"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            httpx.RemoteProtocolError,
            id="chunked-truncated",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA\r\nhel",
            httpx.RemoteProtocolError,
            id="chunked-truncated-in-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n",
            httpx.RemoteProtocolError,
            id="chunked-truncated-in-trailers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
            httpx.RemoteProtocolError,
            id="length-truncated",
        ),
    ],
)
async def test_body_cut_short_raises_from_the_iteration(
    sent: bytes, error: type[httpx.TransportError]
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(sent)

    received = bytearray()
    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        with pytest.raises(error):
            await get_streamed(client, server.url, received)
    assert bytes(received).startswith(b"hel")


async def test_connection_reset_mid_body_raises_read_error() -> None:
    body_started = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
        await body_started.wait()
        peer.reset()
        await peer.read_request()

    async def consume(response: httpx.Response) -> None:
        async for piece in response.aiter_raw():
            assert piece == b"hello"
            body_started.set()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
        client.stream("GET", server.url) as response,
    ):
        with pytest.raises(httpx.ReadError):
            await consume(response)
    assert body_started.is_set()


_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param((b"HTTX/1.1 200 OK\r\n\r\n",), id="protocol"),
        pytest.param((b"HTTP/1.1 2x0 OK\r\n\r\n",), id="status"),
        pytest.param((b"200 OK\r\nContent-Length: 0\r\n\r\n",), id="no-version"),
        pytest.param((b"\r\n\r\n",), id="empty-head"),
        pytest.param((b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",), id="header-without-colon"),
        pytest.param((b"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",), id="space-before-colon"),
        pytest.param((b"HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\n\r\n",), id="obs-fold"),
        pytest.param((b"HTTP/1.1 200 OK\r\n: empty-name\r\n\r\n",), id="empty-name"),
        pytest.param((b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",), id="length-not-number"),
        pytest.param((b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",), id="length-negative"),
        pytest.param(
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",),
            id="lengths-disagree",
        ),
        pytest.param((_CHUNKED_HEAD, b"zz\r\nhello\r\n0\r\n\r\n"), id="not-hex"),
        pytest.param((_CHUNKED_HEAD, b"-5\r\nhello\r\n0\r\n\r\n"), id="negative"),
        pytest.param((_CHUNKED_HEAD, b"+5\r\nhello\r\n0\r\n\r\n"), id="plus"),
        pytest.param((_CHUNKED_HEAD, b"0x5\r\nhello\r\n0\r\n\r\n"), id="0x-prefix"),
        pytest.param((_CHUNKED_HEAD, b"\r\nhello\r\n0\r\n\r\n"), id="empty"),
        pytest.param((_CHUNKED_HEAD, b";ext\r\nhello\r\n0\r\n\r\n"), id="extension-only"),
        pytest.param((_CHUNKED_HEAD, b"5\r\nhelloXX0\r\n\r\n"), id="data-not-followed-by-crlf"),
        pytest.param(
            (_CHUNKED_HEAD, b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"),
            id="underscore",
        ),
    ],
)
async def test_malformed_response_raises_remote_protocol_error(pieces: tuple[bytes, ...]) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(*pieces, pause=0.01)
        await peer.read_request()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)  # and the connection is closed


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000, id="head"),
        pytest.param(_CHUNKED_HEAD + b"1" * 5000, id="chunk-size-line"),
        pytest.param(_CHUNKED_HEAD + b"0\r\nX-Trailer: " + b"a" * 5000, id="trailer-line"),
    ],
)
async def test_oversized_lines_raise_without_waiting_for_more(sent: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(*split(sent, set(range(4096, len(sent), 4096))), pause=0.001)
        await peer.read_request()  # and never finish the line

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport(), timeout=5.0) as client,
    ):
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError, match="too"):
            await client.get(server.url)
        assert time.monotonic() - started < 2.0  # not the 5 s read timeout


# -- timeouts ------------------------------------------------------------------------------
async def stall(peer: Peer) -> None:
    await peer.read_request()
    await peer.read_request()  # answers nothing, until the client leaves


async def test_read_timeout_waiting_for_the_head() -> None:
    async with (
        asyncio.timeout(GUARD),
        RawServer(stall) as server,
        http_client(HTTP11Transport(), timeout=0.2) as client,
    ):
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url)
        assert 0.15 < time.monotonic() - started < 1.0
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)


async def test_read_timeout_mid_body() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await peer.read_request()

    received = bytearray()
    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport(), timeout=0.2) as client,
    ):
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await get_streamed(client, server.url, received)
        assert 0.15 < time.monotonic() - started < 1.0
        assert received == b"hello"
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)


async def test_read_timeout_bounds_each_wait_not_the_whole_body() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        pieces = [b"%x\r\n%d\r\n" % (1, i) for i in range(6)] + [b"0\r\n\r\n"]
        await peer.send(_CHUNKED_HEAD, *pieces, pause=0.08)

    transport = HTTP11Transport()
    async with asyncio.timeout(GUARD), RawServer(handler) as server:
        request = httpx.Request("GET", server.url, extensions={"timeout": {"read": 0.2}})
        response = await transport.handle_async_request(request)
        try:
            assert await read_all(response) == b"012345"  # 0.56 s in all, 0.08 s per wait
        finally:
            await response.aclose()
            await transport.aclose()


async def test_read_timeout_from_request_extensions() -> None:
    transport = HTTP11Transport()
    async with asyncio.timeout(GUARD), RawServer(stall) as server:
        request = httpx.Request("GET", server.url, extensions={"timeout": {"read": 0.2}})
        started = time.monotonic()
        try:
            with pytest.raises(httpx.ReadTimeout):
                await transport.handle_async_request(request)
        finally:
            await transport.aclose()
        assert time.monotonic() - started < 1.0


def _keep_then_stall(delay: float = 0.0) -> Handler:
    """Answer the first requests (the last of them after ``delay``), then stall."""

    async def handler(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.target == b"/stall":
                continue
            if request.target == b"/slow":
                await asyncio.sleep(delay)
            await peer.send(OK)

    return handler


async def test_shorter_read_timeout_on_a_reused_connection() -> None:
    async with (
        asyncio.timeout(GUARD),
        RawServer(_keep_then_stall()) as server,
        http_client(HTTP11Transport()) as client,
    ):
        await client.get(server.url, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url + "/stall", timeout=0.1)
        assert server.connections == 1
        assert time.monotonic() - started < 0.6


async def test_read_timeout_after_a_request_without_one() -> None:
    async with (
        asyncio.timeout(GUARD),
        RawServer(_keep_then_stall(delay=0.25)) as server,
        http_client(HTTP11Transport()) as client,
    ):
        await client.get(server.url, timeout=0.1)
        await client.get(server.url + "/slow", timeout=None)
        with pytest.raises(httpx.ReadTimeout):
            await asyncio.wait_for(client.get(server.url + "/stall", timeout=0.1), 0.6)


async def test_connect_error_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with asyncio.timeout(GUARD), http_client(HTTP11Transport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_connect_timeout() -> None:
    # A listener that never accepts, its backlog full: Linux drops further SYNs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(listener.getsockname())
            async with asyncio.timeout(GUARD), http_client(HTTP11Transport()) as client:
                await asyncio.sleep(0.05)
                started = time.monotonic()
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get(
                        f"http://127.0.0.1:{listener.getsockname()[1]}/",
                        timeout=httpx.Timeout(5.0, connect=0.2),
                    )
                assert time.monotonic() - started < 1.0
        finally:
            for filler in fillers:
                filler.close()


async def test_write_timeout_when_the_server_does_not_read() -> None:
    async def handler(peer: Peer) -> None:
        await peer.eof.wait()  # never reads

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport(), timeout=httpx.Timeout(5.0, write=0.2)) as client,
    ):
        with pytest.raises(httpx.WriteTimeout):
            await client.post(server.url, content=b"x" * (32 * 1024 * 1024))


async def test_unsupported_scheme() -> None:
    transport = HTTP11Transport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))
    await transport.aclose()


# -- back-pressure -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("high_water", "paused"),
    [pytest.param(64 * 1024, True, id="small-high-water"), pytest.param(1 << 30, False, id="off")],
)
async def test_back_pressure_pauses_reading_until_the_consumer_reads(
    high_water: int, paused: bool
) -> None:
    size = 16 * 1024 * 1024  # well beyond what the kernel buffers of one connection hold
    body = bytes(range(256)) * (size // 256)
    written = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body)
        await peer.writer.drain()
        written.set()
        await peer.read_request()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport(high_water=high_water)) as client,
        client.stream("GET", server.url) as response,
    ):
        await asyncio.sleep(0.3)  # the consumer reads nothing yet
        backlog = server.peers[0].writer.transport.get_write_buffer_size()
        if paused:
            assert not written.is_set()
            assert backlog > size // 2  # the client stopped reading; the rest waits
        else:  # the control: without a bound the client swallows the whole body
            assert written.is_set()
            assert backlog == 0
        assert await read_all(response) == body
        await asyncio.wait_for(written.wait(), 5)


# -- bodiless responses and interim responses ------------------------------------------------
async def test_head_204_304_have_no_body_and_keep_the_connection() -> None:
    async def handler(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.method == b"HEAD" and request.target == b"/chunked":
                await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            elif request.method == b"HEAD":
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            elif request.target == b"/204":
                await peer.send(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
            elif request.target == b"/304":
                await peer.send(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n")
            else:
                await peer.send(OK)

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        head = await client.head(server.url)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == "1000"
        assert (await client.head(server.url + "/chunked")).content == b""
        no_content = await client.get(server.url + "/204")
        assert (no_content.status_code, no_content.content) == (204, b"")
        not_modified = await client.get(server.url + "/304")
        assert (not_modified.status_code, not_modified.content) == (304, b"")
        assert (await client.get(server.url + "/after")).content == b"ok"
        assert server.connections == 1


async def test_interim_responses_are_skipped() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
            pause=0.01,
        )
        await peer.serve()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        response = await client.post(server.url, content=b"data")
        assert (response.status_code, response.content) == (201, b"done")
        assert "link" not in response.headers
        assert (await client.get(server.url)).content == b"ok"
        assert server.connections == 1


# -- closing the transport -------------------------------------------------------------------
async def test_aclose_closes_idle_and_active_connections() -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:  # stays busy: half a body, then nothing
            await peer.read_request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            await peer.read_request()
        else:
            await peer.serve()

    transport = HTTP11Transport()
    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(transport) as client,
        client.stream("GET", server.url) as active,
    ):
        assert (await client.get(server.url)).content == b"ok"  # a second, now idle connection
        assert repr(transport) == "HTTP11Transport(idle=1, active=1)"
        await transport.aclose()
        assert repr(transport) == "HTTP11Transport(idle=0, active=0)"
        await asyncio.wait_for(server.peers[0].eof.wait(), 2)
        await asyncio.wait_for(server.peers[1].eof.wait(), 2)
        with pytest.raises(httpx.TransportError):
            await read_all(active)
        with pytest.raises(RuntimeError, match="closed"):
            await transport.handle_async_request(httpx.Request("GET", server.url))
    assert server.connections == 2


async def test_aclose_fails_a_request_waiting_for_its_head_on_a_new_connection() -> None:
    async with asyncio.timeout(GUARD), RawServer(stall) as server:
        transport = HTTP11Transport()
        task = asyncio.create_task(transport.handle_async_request(httpx.Request("GET", server.url)))
        await eventually(lambda: len(server.requests) == 1)
        await transport.aclose()
        with pytest.raises(httpx.RemoteProtocolError):
            await task
        assert server.connections == 1


async def test_aclose_fails_a_request_waiting_for_its_head_on_a_reused_connection() -> None:
    async with asyncio.timeout(GUARD), RawServer(_keep_then_stall()) as server:
        transport = HTTP11Transport()
        first = await transport.handle_async_request(httpx.Request("GET", server.url))
        await first.aread()
        await first.aclose()
        task = asyncio.create_task(
            transport.handle_async_request(httpx.Request("GET", server.url + "/stall"))
        )
        await eventually(lambda: len(server.requests) == 2)
        await transport.aclose()
        try:
            with pytest.raises(httpx.TransportError):
                await asyncio.wait_for(task, 0.6)
        finally:
            await transport.aclose()
        assert server.connections == 1  # nothing new opened after aclose()


# -- request bodies ------------------------------------------------------------------------
async def test_streamed_request_body_is_sent_chunked() -> None:
    async def pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
        for part in parts:
            await asyncio.sleep(0)
            yield part

    async with (
        asyncio.timeout(GUARD),
        RawServer(serving()) as server,
        http_client(HTTP11Transport()) as client,
    ):
        await client.post(server.url, content=pieces([b"hello ", b"", b"chunked ", b"world"]))
        await client.post(server.url, content=pieces([]))
        big = bytes(range(256)) * 512  # 128 KiB: past the single-write size
        await client.post(server.url, content=pieces([big[:1000], big[1000:]]))
        await client.put(server.url, content=big)
        await client.post(server.url, content=b"")
    first, empty, chunked_big, sized_big, sized_empty = server.requests
    for request in (first, empty, chunked_big):  # the raw server checked each framing
        assert request.header(b"transfer-encoding") == b"chunked"
    assert first.body == b"hello chunked world"
    assert first.raw_body.endswith(b"0\r\n\r\n")
    assert (empty.body, empty.raw_body) == (b"", b"0\r\n\r\n")
    assert chunked_big.body == big
    assert (sized_big.header(b"content-length"), sized_big.body) == (b"131072", big)
    assert sized_empty.header(b"content-length") == b"0"
    assert sized_empty.header(b"transfer-encoding") is None
    assert server.connections == 1


# -- TLS -----------------------------------------------------------------------------------
async def test_https_with_a_custom_ssl_context() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def handler(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await peer.send(
                _CHUNKED_HEAD,
                b"%x\r\n%s\r\n" % (len(request.body), request.body),
                b"0\r\n\r\n",
                pause=0.005,
            )

    async with asyncio.timeout(GUARD), RawServer(handler, ssl_context=server_context) as server:
        assert server.url.startswith("https://")
        async with http_client(HTTP11Transport(ssl_context=client_context)) as client:
            for body in (b"secret one", b"secret two"):
                assert (await client.post(server.url, content=body)).content == body
        assert server.connections == 1
        # The default context does not trust this CA: the handshake fails.
        async with http_client(HTTP11Transport()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(server.url)


# -- realistic streams from the loopback server -------------------------------------------------
async def stream_text(client: httpx.AsyncClient, base_url: str, prompt: str = "hi") -> str:
    """The text of one streamed chat completion, from its SSE events."""
    payload = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    text: list[str] = []
    async with client.stream("POST", base_url + "/chat/completions", json=payload) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text.append(choice["delta"].get("content") or "")
    return "".join(text)


async def test_loopback_streams_reuse_one_connection(loopback: LoopbackServer) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 4
    loopback.enqueue(Script.text(text, chunk_size=3), Script.text(text, chunk_size=11))
    opened = loopback.connections_opened
    async with asyncio.timeout(GUARD), http_client(HTTP11Transport()) as client:
        assert await stream_text(client, loopback.base_url) == text
        assert await stream_text(client, loopback.base_url) == text
    assert loopback.connections_opened - opened == 1
    assert loopback.streams_completed == 2


async def test_loopback_concurrent_streams_share_the_pool(loopback: LoopbackServer) -> None:
    opened = loopback.connections_opened
    async with asyncio.timeout(GUARD), http_client(HTTP11Transport()) as client:
        for wave in range(2):
            prompts = [f"stream {i} of wave {wave}: " + "abc" * 8 for i in range(20)]
            texts = await asyncio.gather(
                *(stream_text(client, loopback.base_url, p) for p in prompts)
            )
            assert texts == prompts  # an empty script queue echoes the prompt
    assert loopback.connections_opened - opened == 20  # the second wave reused them all


async def test_loopback_dropped_stream_raises(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.chunks(["a", "b", "c", "d"], drop_after=1))
    async with asyncio.timeout(GUARD), http_client(HTTP11Transport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await stream_text(client, loopback.base_url)
        loopback.enqueue(Script.text("after"))
        assert await stream_text(client, loopback.base_url) == "after"


async def test_loopback_stalled_stream_times_out_and_closes(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.chunks(["a", "b", "c"], stall_after=1))
    async with asyncio.timeout(GUARD), http_client(HTTP11Transport(), timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await stream_text(client, loopback.base_url)
    assert await loopback.wait_idle(2.0)
    assert loopback.streams_in_progress == 0


async def test_until_close_body_cut_by_a_reset_is_an_error_not_a_short_body() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial-", pause=0.05)
        peer.reset()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        with pytest.raises(httpx.ReadError):
            await client.get(server.url)


async def test_a_head_with_bare_line_feeds_is_read_as_h11_reads_it() -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok")

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        response = await client.get(server.url)
    assert (response.status_code, response.headers["x-a"], response.content) == (200, "b", b"ok")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", id="length"
        ),
        pytest.param(b"HTTP/1.1 " + b"2" * 5000 + b" OK\r\n\r\n", id="status"),
    ],
)
async def test_huge_numbers_in_the_head_are_a_protocol_error(head: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(head)
        await peer.read_request()

    async with (
        asyncio.timeout(GUARD),
        RawServer(handler) as server,
        http_client(HTTP11Transport()) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_a_host_name_that_cannot_be_encoded_is_a_connect_error() -> None:
    async with asyncio.timeout(GUARD), http_client(HTTP11Transport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://" + "a" * 70 + ".invalid/")
