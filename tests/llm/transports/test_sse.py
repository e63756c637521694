"""SSEDecoder gives the events of a reference parser written from the spec, for any reads."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagura.errors import StreamError
from kagura.llm.transports.sse import (
    DEFAULT_MAX_LINE_BYTES,
    ServerSentEvent,
    SSEDecoder,
    aiter_sse,
)
from kagura.testing.loopback import _wire as openai_wire

_EXAMPLES = 300  # each example is cheap: a few hundred bytes

BOM = b"\xef\xbb\xbf"


# --- the reference: the spec's algorithm, step by step, on the whole stream at once --------


@dataclass(frozen=True)
class RefEvent:
    event: str
    data: str  # surrogate-escaped: compare after encoding back to bytes
    last_event_id: str
    retry: int | None


def reference(stream: bytes, max_line_bytes: int | None = None) -> tuple[list[RefEvent], bool]:
    """The events of a complete stream, and whether a line was longer than ``max_line_bytes``.

    Decodes with ``surrogateescape`` rather than the spec's U+FFFD replacement so that
    data can be compared byte for byte; the line structure is the same either way,
    since an invalid UTF-8 sequence never takes in an ASCII byte (CR, LF, ``:``, space).
    """
    text = stream.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):  # one BOM, at the very start
        text = text[1:]
    *lines, _unterminated = re.split(r"\r\n|\r|\n", text)
    events: list[RefEvent] = []
    data_buffer = ""
    event_type_buffer = ""
    last_event_id_buffer = ""
    retry: int | None = None
    data_bytes = 0  # an event's data is bounded like a line (the joining LFs not counted)

    def size(value: str) -> int:
        return len(value.encode("utf-8", "surrogateescape"))

    for index, line in enumerate([*lines, _unterminated]):
        if max_line_bytes is not None and size(line) > max_line_bytes:
            return events, True
        if index == len(lines):  # the unterminated last line: only its length counts
            break
        if line == "":  # dispatch
            if data_buffer == "":
                event_type_buffer = ""
                data_bytes = 0
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            events.append(
                RefEvent(event_type_buffer or "message", data_buffer, last_event_id_buffer, retry)
            )
            data_buffer = ""
            data_bytes = 0
            event_type_buffer = ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "event":
            event_type_buffer = value
        elif field == "data":
            data_buffer += value + "\n"
            data_bytes += size(value)
            if max_line_bytes is not None and data_bytes > max_line_bytes:
                return events, True
        elif field == "id":
            if "\0" not in value:
                last_event_id_buffer = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    # End of stream: whatever is pending is discarded.
    return events, False


def _browser(text: str) -> str:
    """What a browser shows for a surrogate-escaped string: invalid bytes as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def as_reference(event: ServerSentEvent) -> RefEvent:
    return RefEvent(
        event.event, event.data.decode("utf-8", "surrogateescape"), event.id or "", event.retry
    )


def expected(ref: RefEvent) -> RefEvent:
    return RefEvent(_browser(ref.event), ref.data, _browser(ref.last_event_id), ref.retry)


def decode(
    reads: Sequence[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[list[ServerSentEvent], bool]:
    """Feed ``reads`` then end: the events, and whether StreamError was raised."""
    decoder = SSEDecoder(max_line_bytes=max_line_bytes)
    events: list[ServerSentEvent] = []
    try:
        for read in reads:
            events += decoder.feed(read)
        decoder.end()
    except StreamError:
        return events, True
    return events, False


def events_of(stream: bytes) -> list[ServerSentEvent]:
    events, failed = decode([stream])
    assert not failed
    return events


# --- generated streams -------------------------------------------------------------------

_specials = st.sampled_from(
    ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\ufeff", "\0", ":",
     " ", "  ", "é", "漢字", "🙂", '{"a":', "1}"]
)  # fmt: skip
_plain = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]))
_texts = st.lists(_plain | _specials, max_size=3).map("".join).map(str.encode)
_raw = st.binary(max_size=6).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_values = _texts | _raw  # mostly UTF-8, sometimes invalid bytes
_names = st.sampled_from([b"data", b"data", b"data", b"event", b"id", b"retry", b"foo", b"Data",
                          b"data ", b"", b"\xef\xbb\xbfdata"])  # fmt: skip
_separators = st.sampled_from([b": ", b":", b"", b":  "])
_retry_values = st.integers(0, 10**12).map(lambda n: str(n).encode()) | _values
_field_lines = st.builds(lambda n, s, v: n + s + v, _names, _separators, _values) | st.builds(
    lambda s, v: b"retry" + s + v, _separators, _retry_values
)
_lines = st.one_of(st.just(b""), st.just(b""), _field_lines)  # blank lines: many events
_endings = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Event streams with BOMs, comments, every line ending, unicode, invalid UTF-8."""
    lines = draw(st.lists(st.tuples(_lines, _endings), max_size=14))
    body = b"".join(line + ending for line, ending in lines)
    if lines and draw(st.booleans()):  # no line ending after the last line
        body = body[: -len(lines[-1][1])]
    return BOM * draw(st.sampled_from([0, 0, 1, 2])) + body


def reads_of(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Every split of ``data`` into non-empty reads; shrinks toward one read."""
    if len(data) < 2:
        return st.just([data] if data else [])

    def split(cuts: set[int]) -> list[bytes]:
        bounds = [0, *sorted(cuts), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    return st.sets(st.integers(1, len(data) - 1), max_size=len(data) - 1).map(split)


streams_and_reads = streams().flatmap(lambda s: st.tuples(st.just(s), reads_of(s)))


# --- properties -------------------------------------------------------------------------


@settings(max_examples=_EXAMPLES)
@given(streams_and_reads)
def test_same_events_as_the_reference_for_every_split(stream_reads: tuple[bytes, list[bytes]]):
    stream, reads = stream_reads
    ref, _ = reference(stream)
    events, failed = decode(reads)
    assert not failed
    assert [as_reference(e) for e in events] == [expected(r) for r in ref]
    assert [e.text for e in events] == [_browser(r.data) for r in ref]


@settings(max_examples=_EXAMPLES)
@given(streams_and_reads, st.integers(1, 40))
def test_line_limit_same_outcome_as_the_reference_for_every_split(
    stream_reads: tuple[bytes, list[bytes]], limit: int
):
    stream, reads = stream_reads
    ref, ref_failed = reference(stream, limit)
    events, failed = decode(reads, limit)
    assert failed == ref_failed
    assert [as_reference(e) for e in events] == [expected(r) for r in ref]


@settings(max_examples=50)
@given(streams())
def test_one_byte_reads(stream: bytes):
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == decode([stream])


# --- cases from the bug report -----------------------------------------------------------


def test_cr_only_line_endings():
    events = events_of(b"event: a\rdata: 1\r\rdata: 2\r\r")
    assert [(e.event, e.data) for e in events] == [("a", b"1"), ("message", b"2")]


def test_mixed_line_endings():
    events = events_of(b"data: 1\r\ndata: 2\rdata: 3\n\r\ndata: 4\n\r")
    assert [e.data for e in events] == [b"1\n2\n3", b"4"]


def test_json_split_over_two_data_lines_is_joined_with_lf():
    (event,) = events_of(b'data: {"a":\ndata: 1}\n\n')
    assert event.data == b'{"a":\n1}'
    assert pydantic_core.from_json(event.data) == {"a": 1}


def test_bom_at_the_start_does_not_lose_the_first_event():
    assert [e.data for e in events_of(BOM + b"data: first\n\ndata: second\n\n")] == [
        b"first",
        b"second",
    ]


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_bom_split_between_reads(cut: int):
    stream = BOM + b"data: first\n\n"
    assert decode([stream[:cut], stream[cut:]]) == ([ServerSentEvent(b"first")], False)


def test_only_one_bom_and_only_at_the_start_is_skipped():
    # A second BOM belongs to the first line: the field is then "\ufeffdata", unknown.
    assert events_of(BOM + BOM + b"data: x\n\ndata: y\n\n") == [ServerSentEvent(b"y")]
    assert events_of(b"data: " + BOM + b"\n\n") == [ServerSentEvent(BOM)]


def test_a_final_event_without_its_blank_line_is_discarded():
    assert events_of(b"data: 1\n\ndata: 2\n") == [ServerSentEvent(b"1")]
    assert events_of(b"data: 1\n\ndata: 2") == [ServerSentEvent(b"1")]


def test_data_with_and_without_colon_are_the_same():
    assert events_of(b"data\n\n") == events_of(b"data:\n\n") == [ServerSentEvent(b"")]
    assert events_of(b"data: a\ndata\ndata: b\n\n") == [ServerSentEvent(b"a\n\nb")]


def test_crlf_split_between_reads_at_the_cr_is_one_line_ending():
    reads = [b"data: 1\r", b"\n", b"\r", b"\ndata: 2\r\n\r", b"\n"]
    assert decode(reads) == ([ServerSentEvent(b"1"), ServerSentEvent(b"2")], False)
    # Not two blank lines: the second event's data lines stay one event.
    assert decode([b"data: a\r", b"\ndata: b\r\n\r\n"]) == ([ServerSentEvent(b"a\nb")], False)


def test_unicode_line_breaks_inside_data_are_kept():
    data = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei".encode()
    payload = json.dumps({"t": "x\u2028y"}, ensure_ascii=False).encode()
    assert events_of(b"data: " + data + b"\n\n") == [ServerSentEvent(data)]
    (event,) = events_of(b"data: " + payload + b"\n\n")
    assert pydantic_core.from_json(event.data) == {"t": "x\u2028y"}


# --- the line limit ----------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_a_line_of_exactly_max_line_bytes_is_accepted(ending: bytes):
    line = b"data: " + b"x" * 10  # 16 bytes, not counting the line ending
    stream = line + ending + ending
    assert decode([stream], 16) == ([ServerSentEvent(b"x" * 10)], False)
    assert decode([stream[:16], stream[16:]], 16) == ([ServerSentEvent(b"x" * 10)], False)
    assert decode([bytes([b]) for b in stream], 16) == ([ServerSentEvent(b"x" * 10)], False)


def test_a_line_one_byte_over_raises_stream_error_naming_the_limit():
    with pytest.raises(StreamError, match=r"an SSE line exceeded 16 bytes \(max_line_bytes\)"):
        SSEDecoder(max_line_bytes=16).feed(b"data: " + b"x" * 11 + b"\n\n")


def test_the_limit_is_enforced_before_the_line_ends():
    decoder = SSEDecoder(max_line_bytes=16)
    assert decoder.feed(b"data: " + b"x" * 10) == []
    with pytest.raises(StreamError):
        decoder.feed(b"x")
    with pytest.raises(StreamError):  # and stays failed
        decoder.feed(b"\n\n")
    with pytest.raises(StreamError):
        decoder.end()


def test_events_before_an_overlong_line_are_returned_then_the_error_raised():
    decoder = SSEDecoder(max_line_bytes=16)
    assert decoder.feed(b"data: 1\n\ndata: " + b"x" * 20) == [ServerSentEvent(b"1")]
    with pytest.raises(StreamError):
        decoder.end()


def test_an_event_whose_data_lines_add_up_past_the_limit_raises():
    # Each line fits, but an event that never ends must not grow without bound.
    decoder = SSEDecoder(max_line_bytes=16)
    assert decoder.feed(b"data: 12345678\ndata:12345678\n") == []  # 16 bytes of data
    with pytest.raises(StreamError, match=r"an SSE event's data exceeded 16 bytes"):
        decoder.feed(b"data: 9\n")


def test_the_event_bound_starts_over_with_each_event():
    decoder = SSEDecoder(max_line_bytes=16)
    for _ in range(100):
        assert decoder.feed(b"data: 12345678\ndata: 12345678\n\n") == [
            ServerSentEvent(b"12345678\n12345678")
        ]


def test_error_is_visible_after_the_events_of_the_same_read():
    # A transport whose server stalls after the long line raises it without another read.
    decoder = SSEDecoder(max_line_bytes=16)
    assert decoder.error is None
    assert decoder.feed(b"data: 1\n\ndata: " + b"x" * 20) == [ServerSentEvent(b"1")]
    assert isinstance(decoder.error, StreamError)


def test_the_limit_counts_neither_the_bom_nor_the_line_ending():
    stream = BOM + b"data: 12\r\n\r\n"
    assert decode([stream], 8) == ([ServerSentEvent(b"12")], False)
    assert decode([stream[:5], stream[5:10], stream[10:]], 8) == ([ServerSentEvent(b"12")], False)
    assert decode([stream], 7) == ([], True)


def test_max_line_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_line_bytes"):
        SSEDecoder(max_line_bytes=0)


def test_a_10_mb_line_in_small_reads_with_a_big_limit():
    size = 10 * 1024 * 1024
    piece = b"0123456789abcdef" * 256  # 4 KiB reads
    decoder = SSEDecoder(max_line_bytes=size + 100)
    assert decoder.feed(b"data: ") == []
    for _ in range(size // len(piece)):
        assert decoder.feed(piece) == []
    (event,) = decoder.feed(b"\r\n\r\n")
    assert len(event.data) == size
    assert event.data[:16] == piece[:16]


def test_the_default_limit_is_4_mib():
    assert DEFAULT_MAX_LINE_BYTES == 4 * 1024 * 1024
    line = b"data: " + b"x" * (DEFAULT_MAX_LINE_BYTES - 6)
    assert decode([line, b"\n\n"]) == ([ServerSentEvent(line[6:])], False)
    assert decode([line, b"x\n\n"]) == ([], True)


# --- fields --------------------------------------------------------------------------------


def test_id_persists_across_events_and_an_empty_id_clears_it():
    events = events_of(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\n\ndata: d\n\n")
    assert [e.id for e in events] == ["1", "1", None, "2"]


def test_an_id_with_nul_is_ignored():
    assert events_of(b"id: 1\n\nid: 2\x003\ndata: a\n\n")[0].id == "1"


def test_retry_needs_ascii_digits_and_persists():
    stream = b"retry: 3000\n\ndata: a\n\nretry: 12a\ndata: b\n\nretry:\nretry: \xef\xbc\x93\n"
    stream += b"data: c\n\nretry: 10\ndata: d\n\n"
    assert [e.retry for e in events_of(stream)] == [3000, 3000, 3000, 10]
    assert events_of(b"data: a\n\n")[0].retry is None


def test_event_type_is_reset_at_every_blank_line_even_without_data():
    events = events_of(b"event: x\n\ndata: y\n\nevent: z\nevent:\ndata: w\n\n")
    assert [e.event for e in events] == ["message", "message"]


def test_only_one_space_after_the_colon_is_removed_and_unknown_fields_are_ignored():
    events = events_of(b"data:  two\ndata:none\nDATA: no\nfoo: bar\n: comment\n\n")
    assert events == [ServerSentEvent(b" two\nnone")]


def test_comments_and_blank_lines_alone_dispatch_nothing():
    assert events_of(b": ping\n\n\n\r\n:\n\n") == []


def test_text_decodes_with_replacement():
    (event,) = events_of(b"data: caf\xc3\xa9 \xff\n\n")
    assert event.data == b"caf\xc3\xa9 \xff"
    assert event.text == "café \ufffd"


def test_end_starts_a_new_stream():
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\ndata: lost\r") == []
    decoder.end()
    assert decoder.feed(BOM + b"\ndata: a\n\n") == [ServerSentEvent(b"a")]


# --- aiter_sse -----------------------------------------------------------------------------


class Reads:
    """An async iterator over reads that records whether it was closed."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = list(reads)
        self.closed = False

    def __aiter__(self) -> Reads:
        return self

    async def __anext__(self) -> bytes:
        if not self.reads:
            raise StopAsyncIteration
        return self.reads.pop(0)

    async def aclose(self) -> None:
        self.closed = True


async def test_aiter_sse_yields_events_across_reads():
    reads = Reads(BOM[:1], BOM[1:] + b"data: a\r", b"\n\r", b"\nevent: e\ndata: b\n\ndata: c")
    events = [e async for e in aiter_sse(reads)]
    assert events == [ServerSentEvent(b"a"), ServerSentEvent(b"b", event="e")]
    assert reads.closed


async def test_aiter_sse_closes_its_source_on_break():
    reads = Reads(b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n")
    stream = aiter_sse(reads)
    async for event in stream:
        assert event.data == b"1"
        break
    await stream.aclose()
    assert reads.closed
    assert reads.reads == [b"data: 2\n\n", b"data: 3\n\n"]


async def test_aiter_sse_yields_the_events_before_an_overlong_line_then_raises():
    seen: list[bytes] = []

    async def consume(reads: Reads) -> None:
        async for event in aiter_sse(reads, max_line_bytes=50):
            seen.append(event.data)

    reads = Reads(b"data: 1\n\ndata: 2\n\ndata: " + b"x" * 100, b"\n\n")
    with pytest.raises(StreamError, match="exceeded 50 bytes"):
        await consume(reads)
    assert seen == [b"1", b"2"]
    assert reads.closed


async def test_aiter_sse_accepts_a_plain_async_generator():
    async def gen() -> AsyncIterator[bytes]:
        yield b"data: x\n"
        yield b"\n"

    assert [e.text async for e in aiter_sse(gen())] == ["x"]


# --- writers: what kagura sends decodes to what it meant -------------------------------------

_event_names = st.text(
    st.characters(exclude_characters="\r\n\0", exclude_categories=["Cs"]), max_size=8
)


@settings(max_examples=_EXAMPLES)
@given(
    st.lists(
        st.tuples(st.text(max_size=20), _event_names, _event_names | st.none()),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.data(),
)
def test_sse_starlette_events_round_trip(
    items: list[tuple[str, str, str | None]], sep: str, data: st.DataObject
):
    """kagura.web writes with sse-starlette: its events decode back, CR and CRLF as LF."""
    sse_starlette = pytest.importorskip("sse_starlette")
    stream = b"".join(
        sse_starlette.ServerSentEvent(text, event=event or None, id=id, sep=sep).encode()
        for text, event, id in items
    )
    events, failed = decode(data.draw(reads_of(stream)))
    assert not failed
    last_id: str | None = None
    wanted: list[ServerSentEvent] = []
    for text, event, id in items:
        last_id = id or None if id is not None else last_id
        normalised = re.sub(r"\r\n|\r", "\n", text).encode()
        wanted.append(ServerSentEvent(normalised, event or "message", last_id))
    assert events == wanted


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=_EXAMPLES)
@given(st.lists(_json, min_size=1, max_size=4), st.data())
def test_the_loopback_servers_openai_events_round_trip(payloads: list[object], data: st.DataObject):
    """The loopback server's encoder keeps any string (CR, LF, U+2028) inside one data line."""
    stream = b"".join(openai_wire.encode_data(p) for p in payloads) + openai_wire.DONE
    events, failed = decode(data.draw(reads_of(stream)))
    assert not failed
    assert [pydantic_core.from_json(e.data) for e in events[:-1]] == payloads
    assert events[-1].data == b"[DONE]"
