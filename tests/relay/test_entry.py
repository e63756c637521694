"""How relay events are encoded: compact, lossless, and never trusted on the way back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kagura.errors import (
    ConfigError,
    EntriesTrimmed,
    MissingAPIKeyError,
    ProducerLost,
    RelayError,
    StreamError,
)
from kagura.events import Finish, ReasoningDelta, TextDelta, ToolCall, ToolCallDelta, Usage
from kagura.llm.metrics import StreamMetrics
from kagura.relay._entry import (
    check_stream_id,
    decode_error,
    decode_event,
    encode_error,
    encode_item,
    owner_digest,
    pack,
    parse_after,
    same_owner,
    unpack,
)


@given(st.text())
def test_text_round_trips_whatever_its_characters(text: str) -> None:
    for item in (text, TextDelta(text), ReasoningDelta(text)):
        assert decode_event(encode_item(item)) == item
    events = [encode_item(text), encode_item(TextDelta(text))]
    assert unpack(pack(events)) == tuple(events)


@given(
    st.builds(
        ToolCallDelta,
        st.integers(0, 100),
        st.none() | st.text(),
        st.none() | st.text(),
        st.text(),
    )
    | st.builds(Usage, st.integers(0), st.integers(0), st.integers(0), st.booleans())
    | st.builds(Finish, st.none() | st.text())
)
def test_events_round_trip(event: Any) -> None:
    assert decode_event(encode_item(event)) == event


times = st.floats(0, 1e6, allow_nan=False)


@given(
    start=times,
    ttft=st.none() | times,
    duration=st.none() | times,
    counts=st.tuples(st.integers(0), st.integers(0), st.integers(0), st.integers(0)),
    usage=st.none() | st.builds(Usage, st.integers(0), st.integers(0), st.integers(0)),
    reason=st.none() | st.text(),
    calls=st.lists(st.builds(ToolCall, st.text(), st.text(), st.text()), max_size=3),
    model=st.none() | st.text(),
)
def test_metrics_travel_without_their_clock(
    start: float,
    ttft: float | None,
    duration: float | None,
    counts: tuple[int, int, int, int],
    usage: Usage | None,
    reason: str | None,
    calls: list[ToolCall],
    model: str | None,
) -> None:
    chunks, chars, reasoning, attempts = counts
    sent = StreamMetrics(
        started_at=start,
        first_token_at=None if ttft is None else start + ttft,
        ended_at=None if duration is None else start + duration,
        chunks=chunks,
        chars=chars,
        reasoning_chars=reasoning,
        usage=usage,
        finish_reason=reason,
        tool_calls=calls,
        model=model,
        attempts=attempts,
    )
    got = decode_event(encode_item(sent))
    assert isinstance(got, StreamMetrics)
    for name in ("ttft_s", "duration_s", "tokens_per_s"):
        value = getattr(sent, name)
        assert getattr(got, name) == (None if value is None else pytest.approx(value)), name
    for name in ("chunks", "chars", "reasoning_chars", "usage", "finish_reason", "tool_calls"):
        assert getattr(got, name) == getattr(sent, name), name
    assert (got.model, got.attempts) == (model, attempts)


def test_text_is_stored_as_is_one_character_of_kind_ahead() -> None:
    assert encode_item("Hello") == "sHello"
    assert encode_item(TextDelta("Hello")) == "tHello"
    assert pack(["tHel", "tlo"]) == b'["tHel","tlo"]'


def test_an_unknown_event_kind_is_a_relay_error() -> None:
    with pytest.raises(RelayError):
        decode_event("Zpayload")


def test_an_error_keeps_its_class_and_its_simple_attributes() -> None:
    error = MissingAPIKeyError("no key: set OPENAI_API_KEY", env_var="OPENAI_API_KEY")
    decoded = decode_error(encode_error(error, text="partial", usage=None))
    assert type(decoded) is MissingAPIKeyError
    assert (decoded.env_var, decoded.partial_text) == ("OPENAI_API_KEY", "partial")
    trimmed = decode_error(
        encode_error(EntriesTrimmed("gone", resume_after="1-2"), text="", usage=None)
    )
    assert type(trimmed) is EntriesTrimmed
    assert trimmed.resume_after == "1-2"
    lost = decode_error(encode_error(ProducerLost("upstream"), text="", usage=None))
    assert type(lost) is ProducerLost


@pytest.mark.parametrize(
    "record",
    [
        {"type": "SystemExit", "message": "x"},
        {"type": "os", "message": "x"},
        {"type": "__builtins__", "message": "x"},
        {"type": None},
        {},
    ],
)
def test_a_stored_error_names_no_class_outside_kagura_errors(record: dict[str, Any]) -> None:
    decoded = decode_error("X" + json.dumps(record))
    assert type(decoded) is StreamError


def test_stored_attributes_cannot_reach_dunders() -> None:
    record = {
        "type": "StreamError",
        "message": "m",
        "attributes": {"__class__": "x", "args": [1], "_private": 1, "fine": 2},
    }
    decoded = decode_error("X" + json.dumps(record))
    assert type(decoded) is StreamError
    assert decoded.args == ("m",)
    assert not hasattr(decoded, "_private")
    assert decoded.fine == 2  # type: ignore[attr-defined] (set from the record)


def test_owners_are_stored_as_digests_and_compared_whole() -> None:
    assert owner_digest(None) == "-"
    digest = owner_digest("alice")
    assert len(digest) == 64
    assert "alice" not in digest
    assert same_owner(digest, "alice")
    assert not same_owner(digest, "alic")
    assert not same_owner(digest, None)
    assert not same_owner("-", "alice")


@pytest.mark.parametrize("after", ["0-0", "1718000000000-42", f"{2**64 - 1}-{2**64 - 1}"])
def test_event_ids_parse(after: str) -> None:
    ms, n = after.split("-")
    assert parse_after(after) == (int(ms), int(n))


def test_stream_ids_are_checked_at_128_characters() -> None:
    assert check_stream_id("a" * 128) == "a" * 128
    with pytest.raises(ConfigError):
        check_stream_id("a" * 129)
