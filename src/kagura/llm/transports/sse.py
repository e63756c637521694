"""Server-Sent Events: an incremental reader of the ``text/event-stream`` format.

:class:`SSEDecoder` follows the WHATWG rules ("Interpreting an event stream"): lines
end in CR, LF or CRLF (also when a CRLF is split between two reads), one leading
byte order mark is skipped, ``data`` lines of one event are joined with LF, and an
event is dispatched only on a blank line. Its output does not depend on how the
bytes were split into reads, and its work is linear in the bytes it is fed. Data
stays ``bytes``, ready for ``pydantic_core.from_json``. :func:`aiter_sse` is the
bridge the transports use.

>>> decoder = SSEDecoder()
>>> decoder.feed(b'event: add\\r\\ndata: {"a":\\r\\ndata: 1}\\r\\n\\r\\ndata: [DO')
[ServerSentEvent(data=b'{"a":\\n1}', event='add', id=None, retry=None)]
>>> decoder.feed(b"NE]\\n\\n")
[ServerSentEvent(data=b'[DONE]', event='message', id=None, retry=None)]
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Final, NamedTuple

from kagura.errors import StreamError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SSEDecoder", "ServerSentEvent", "aiter_sse"]

DEFAULT_MAX_LINE_BYTES: Final = 4 * 1024 * 1024
"""The longest line (without its line ending) a reader accepts by default: 4 MiB."""

_BOM: Final = b"\xef\xbb\xbf"


class ServerSentEvent(NamedTuple):
    """One dispatched event (a named tuple: cheaper per event than a frozen dataclass).

    ``data`` is the event's data lines joined with LF, as bytes; ``event`` its type
    (``"message"`` unless an ``event`` field said otherwise); ``id`` the stream's last
    event ID when it was dispatched (``None`` while there is none: no ``id`` field
    yet, or the last one was empty); ``retry`` the last valid ``retry`` field of the
    stream so far, in milliseconds, or ``None``.

    >>> ServerSentEvent(b"caf\\xc3\\xa9 \\xff").text
    'café \\ufffd'
    """

    data: bytes
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8 (an invalid byte becomes U+FFFD, as in a browser)."""
        return self.data.decode("utf-8", "replace")


class SSEDecoder:
    """Turns the bytes of one event stream, in reads of any size, into events.

    :meth:`feed` returns the events completed by a read; :meth:`end` says the stream
    ended (an event without its closing blank line is discarded, as in a browser).

    A line longer than ``max_line_bytes`` bytes (not counting its line ending; a
    line of exactly ``max_line_bytes`` bytes is accepted) raises
    :class:`~kagura.errors.StreamError` as soon as its length is known to exceed the
    limit, whether or not its line ending has arrived. The events before that line
    are returned first: the error is then raised by the next call to :meth:`feed`
    or :meth:`end`, so the outcome is the same however the bytes were split.

    >>> decoder = SSEDecoder(max_line_bytes=8)
    >>> decoder.feed(b"data: 1\\n\\ndata: 12")
    [ServerSentEvent(data=b'1', event='message', id=None, retry=None)]
    >>> decoder.feed(b"3")
    Traceback (most recent call last):
    ...
    kagura.errors.StreamError: an SSE line exceeded 8 bytes (max_line_bytes)
    """

    __slots__ = (
        "_data",
        "_data_len",
        "_error",
        "_event",
        "_head",
        "_id",
        "_max_line_bytes",
        "_pending",
        "_pending_len",
        "_retry",
        "_skip_lf",
    )

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
        self._max_line_bytes = max_line_bytes
        self._reset()

    def _reset(self) -> None:
        # The start of the stream, kept while it might still be a split BOM; None after.
        self._head: bytes | None = b""
        # The previous read ended in CR: an LF at the start of the next one is its pair.
        self._skip_lf = False
        # The unfinished last line, in pieces (joined once, when its line ending comes).
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._data: list[bytes] = []  # the data buffer, one item per data line
        self._data_len = 0  # its bytes, bounded like a line: an event must end
        self._event = ""  # the event type buffer
        self._id: str | None = None  # the last event ID buffer (None for empty)
        self._retry: int | None = None
        self._error: StreamError | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """The events that the next read ``data`` completes (often none or one).

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"\\xef\\xbb\\xbfid: 7\\rdata: a\\r")
        []
        >>> decoder.feed(b"\\n\\r\\n")  # the LF pairs with the CR before it
        [ServerSentEvent(data=b'a', event='message', id='7', retry=None)]
        """
        if self._head is not None or self._skip_lf or self._error is not None:
            data = self._prepare(data)
        if not data:
            return []
        pending = self._pending
        if pending and b"\n" not in data and b"\r" not in data:  # a long line goes on
            pending.append(data)
            self._pending_len += len(data)
            if self._pending_len > self._max_line_bytes:
                raise self._fail()
            return []
        lines = data.splitlines()  # bytes split only at CR, LF and CRLF
        last = data[-1]
        if last == 10:  # LF (literals: cheaper than globals on this hot path)
            tail = b""
        elif last == 13:  # CR
            tail = b""
            self._skip_lf = True
        else:
            tail = lines.pop()
        if pending:  # this read ends the pending line
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()
            self._pending_len = 0
        overlong = -1
        # Only a read longer than the limit, or one that ends a pending line, can make
        # a line too long: then look at each line.
        if len(data) + (len(lines[0]) if lines else 0) > self._max_line_bytes:
            limit = self._max_line_bytes
            for index, line in enumerate(lines):
                if len(line) > limit:
                    overlong = index
                    del lines[index:]
                    break
            else:
                if len(tail) > limit:
                    overlong = len(lines)

        events: list[ServerSentEvent] = []
        buffer = self._data
        size = self._data_len
        for index, line in enumerate(lines):
            if not line:  # a blank line dispatches the event
                if buffer:
                    events.append(
                        ServerSentEvent(
                            buffer[0] if len(buffer) == 1 else b"\n".join(buffer),
                            self._event or "message",
                            self._id,
                            self._retry,
                        )
                    )
                    buffer.clear()
                    size = 0
                self._event = ""
            elif line[:6] == b"data: ":  # the common case first
                buffer.append(line[6:])
                size += len(line) - 6
                if size > self._max_line_bytes:  # many data lines and no blank line
                    overlong = index
                    break
            elif line[0] != 58:  # a line starting with a colon is a comment
                size += self._field(line)
                if size > self._max_line_bytes:
                    overlong = index
                    break
        self._data_len = size

        if overlong >= 0:
            error = self._fail(event=size > self._max_line_bytes)
            if not events:
                raise error
        elif tail:
            pending.append(tail)
            self._pending_len = len(tail)
        return events

    def end(self) -> None:
        """The stream ended: discard an unfinished event and start over for a new stream.

        Raises the :class:`~kagura.errors.StreamError` of an overlong line that
        :meth:`feed` has not raised yet.

        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"data: no blank line after me\\n")
        []
        >>> decoder.end()
        >>> decoder.feed(b"data: a new stream\\n\\n")[0].text
        'a new stream'
        """
        if self._head and len(self._head) > self._max_line_bytes:
            self._fail()  # the start of a BOM that never finished: it was a line
        error = self._error
        self._reset()
        if error is not None:
            raise error

    def _prepare(self, data: bytes) -> bytes:
        """The read with a leading BOM or the LF of a split CRLF removed; raises a past error."""
        if self._error is not None:
            raise self._error
        if self._head is not None:
            head = self._head + data
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head  # maybe a BOM, split between reads: wait for more
                return b""
            self._head = None
            data = head[len(_BOM) :] if head.startswith(_BOM) else head
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:  # LF
                data = data[1:]
        return data

    def _field(self, line: bytes) -> int:
        """Process one field line (not blank, not a comment); the data bytes it added."""
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 2 :] if line[colon + 1 : colon + 2] == b" " else line[colon + 1 :]
        if name == b"data":
            self._data.append(value)
            return len(value)
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace") or None
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            self._retry = int(value)
        return 0

    @property
    def error(self) -> StreamError | None:
        """The error the next :meth:`feed` or :meth:`end` will raise, if a line was too long.

        A caller that cannot count on another read (the server may stall after the long
        line) raises it once it has handled the events :meth:`feed` returned.
        """
        return self._error

    def _fail(self, *, event: bool = False) -> StreamError:
        """Record the overlong-line (or event) error: every later call raises it too."""
        self._pending.clear()
        self._pending_len = 0
        what = "an SSE event's data" if event else "an SSE line"
        self._error = StreamError(f"{what} exceeded {self._max_line_bytes} bytes (max_line_bytes)")
        return self._error


async def aiter_sse(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncIterator[ServerSentEvent]:
    """The events of an event stream that arrives as ``chunks`` of bytes.

    An event without its closing blank line at the end is discarded. Closing this
    generator (a consumer's ``break`` under ``aclosing``) closes ``chunks`` at once,
    if it has ``aclose``.

    >>> import asyncio
    >>> async def reads():
    ...     yield b"data: Hel"
    ...     yield b"lo\\n\\ndata: lost, no blank line\\n"
    >>> async def main():
    ...     return [event.text async for event in aiter_sse(reads())]
    >>> asyncio.run(main())
    ['Hello']
    """
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    iterator = aiter(chunks)
    try:
        async for chunk in iterator:
            for event in decoder.feed(chunk):
                yield event
        decoder.end()
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
