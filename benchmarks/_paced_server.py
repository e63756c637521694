"""A lean, punctual SSE server for the concurrency benchmark, in its own process.

The concurrency benchmark measures the delay a *client* adds between chunks, so
the server must send each chunk on time. The test suite's
:class:`~kagura.testing.loopback.LoopbackServer` is built for faults, not
pace: two tasks per connection, and it sleeps the interval *after* each write,
so its own lateness adds up. Measured with the cheapest possible client (an
asyncio Protocol that only counts chunks), 1000 streams at 5 chunks/s: p99
added delay 74 ms against the LoopbackServer, 1.1 ms against this server.

This server answers every ``POST`` with the same stream the LoopbackServer's
``Script.text`` sends (a role chunk, ``chunks`` text chunks, a finish chunk, a
usage chunk, ``[DONE]``), one asyncio Protocol per connection. Chunk ``k`` is
written at ``start + k * interval`` (absolute deadlines: no drift). It prints
its port and stops when its stdin closes::

    with PacedServer(chunks=30, interval=0.2) as server:
        LLMConfig(model="openai/gpt-4o-mini", api_base=server.base_url, ...)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from benchmarks._loopback_proc import ServerProcess, raise_nofile, stream_text

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\nconnection: keep-alive\r\n\r\n"
)


def _frames(chunks: int, chunk_size: int) -> list[bytes]:
    """Each HTTP chunk the server writes, the last one with the body's terminator."""
    from kagura.testing.loopback import _wire as _sse  # pyright: ignore[reportPrivateUsage] -- the same wire format

    text = stream_text(chunks, chunk_size)
    ids = {"id": "chatcmpl-paced", "created": 0, "model": "gpt-4o-mini"}
    events = [_sse.encode_data(_sse.chunk(**ids, delta={"role": "assistant", "content": ""}))]
    events += [
        _sse.encode_data(_sse.chunk(**ids, delta={"content": text[i : i + chunk_size]}))
        for i in range(0, len(text), chunk_size)
    ]
    tail = _sse.encode_data(_sse.chunk(**ids, delta={}, finish_reason="stop"))
    usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": chunks + 5}
    tail += _sse.encode_data(_sse.usage_chunk(**ids, usage=usage)) + _sse.DONE
    framed = [b"%x\r\n%b\r\n" % (len(e), e) for e in events]
    # The role chunk and the first text chunk go out together, as the LoopbackServer does.
    framed[0:2] = [framed[0] + framed[1]]
    framed.append(b"%x\r\n%b\r\n0\r\n\r\n" % (len(tail), tail))
    return framed


class _Stream(asyncio.Protocol):
    def __init__(self, frames: list[bytes], interval: float) -> None:
        self._frames = frames
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._next = 0
        self._start = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buffer[:end].lower()
        length = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(self._buffer) < end + 4 + length:
            return
        self._buffer = self._buffer[end + 4 + length :]
        assert self._transport is not None
        self._transport.write(_HEAD + self._frames[0])
        self._next, self._start = 1, self._loop.time()
        self._loop.call_at(self._start + self._interval, self._send_next)

    def _send_next(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(self._frames[self._next])
        self._next += 1
        if self._next < len(self._frames):
            self._loop.call_at(self._start + self._next * self._interval, self._send_next)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class PacedServer(ServerProcess):
    """This module's server in a child process (see the module doc)."""

    module = "benchmarks._paced_server"

    def __init__(self, *, chunks: int, interval: float, chunk_size: int = 4) -> None:
        super().__init__(chunks=chunks, chunk_size=chunk_size, chunk_delay=interval)


async def _serve(chunks: int, chunk_size: int, interval: float) -> None:
    raise_nofile(65536)
    frames = _frames(chunks, chunk_size)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Stream(frames, interval), "127.0.0.1", 0, backlog=4096
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=30)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--chunk-delay", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(_serve(args.chunks, args.chunk_size, args.chunk_delay))
