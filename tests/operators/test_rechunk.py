"""chunk_words, chunk_lines, chunk_regex: lossless and chunking-invariant re-chunking."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import reactivex
from hypothesis import given
from hypothesis import strategies as st
from reactivex import Observable
from reactivex.subject import Subject
from reactivex.testing.marbles import marbles_testing

from kagura.operators import chunk_lines, chunk_regex, chunk_words
from kagura.testing.strategies import chunkings, text_and_chunkings

Op = Callable[[Observable[str]], Observable[str]]


def run(op: Op, chunks: list[str], error: Exception | None = None) -> list[str]:
    """Feed ``chunks`` through ``op``; return what it emitted (and check the error passed)."""
    out: list[str] = []
    failures: list[Exception] = []
    tail = reactivex.throw(error) if error else reactivex.empty()
    reactivex.concat(reactivex.from_iterable(chunks), tail).pipe(op).subscribe(
        out.append, failures.append
    )
    assert failures == ([error] if error else [])
    return out


_TEXTS = st.one_of(
    st.text(),
    st.text(alphabet=" \n\t\r\u2028ab.!?;#"),
    st.lists(st.sampled_from(["Hello", " ", "  ", "\n", "\n\n", "world", ".", "! ", "#", "é"])).map(
        "".join
    ),
)


# chunk_words


def test_words_keep_their_trailing_whitespace() -> None:
    assert run(chunk_words(), ["  Hel", "lo  wo", "rld\n", "\n!"]) == [
        "  Hello  ",
        "world\n\n",
        "!",
    ]


def test_words_hold_a_word_until_its_whitespace_ends() -> None:
    subject: Subject[str] = Subject()
    out: list[str] = []
    subject.pipe(chunk_words()).subscribe(out.append)
    subject.on_next("Hello ")
    assert out == []
    subject.on_next(" w")
    assert out == ["Hello  "]


def test_words_marble() -> None:
    lookup = {"a": "Hel", "b": "lo wo", "c": "rld", "x": "Hello ", "y": "world"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-|", lookup).pipe(chunk_words()))
        assert results == exp("---x---(y,|)", lookup)


@given(text_and_chunkings(_TEXTS))
def test_words_are_lossless_and_chunking_invariant(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    out = run(chunk_words(), chunks)
    assert "".join(out) == text
    assert all(out)
    assert out == (re.findall(r"\s*\S+\s*", text) or ([text] if text else []))


# chunk_lines


def test_lines_are_emitted_as_soon_as_they_end() -> None:
    subject: Subject[str] = Subject()
    out: list[str] = []
    subject.pipe(chunk_lines()).subscribe(out.append)
    subject.on_next("one\ntw")
    assert out == ["one\n"]
    subject.on_next("o\n\nthree")
    assert out == ["one\n", "two\n", "\n"]
    subject.on_completed()
    assert out == ["one\n", "two\n", "\n", "three"]


def test_lines_split_on_newline_only() -> None:
    assert run(chunk_lines(), ["a\r\nb\u2028c\rd\n"]) == ["a\r\n", "b\u2028c\rd\n"]


def test_lines_marble() -> None:
    lookup = {"a": "one\ntw", "b": "o", "c": "\nthree", "x": "one\n", "y": "two\n", "z": "three"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-|", lookup).pipe(chunk_lines()))
        assert results == exp("-x---y-(z,|)", lookup)


@given(text_and_chunkings(_TEXTS))
def test_lines_are_lossless_and_chunking_invariant(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    out = run(chunk_lines(), chunks)
    assert "".join(out) == text
    assert out == [line for line in re.split(r"(?<=\n)", text) if line]


# chunk_regex


def test_regex_units_end_after_each_match() -> None:
    op = chunk_regex(r"[.!?]+\s+")
    assert run(op, ["Hi. How", " are you?  Fi", "ne."]) == ["Hi. ", "How are you?  ", "Fine."]


def test_regex_holds_a_match_at_the_end_of_the_buffer() -> None:
    subject: Subject[str] = Subject()
    out: list[str] = []
    subject.pipe(chunk_regex(r"\n\n+")).subscribe(out.append)
    subject.on_next("para\n\n")
    assert out == []
    subject.on_next("\nnext")
    assert out == ["para\n\n\n"]


def test_regex_lookahead_splits_before_and_never_emits_empty_units() -> None:
    assert run(chunk_regex("(?=#)"), ["#a#", "b#c"]) == ["#a", "#b", "#c"]


def test_regex_accepts_a_compiled_pattern_and_flags() -> None:
    assert run(chunk_regex(re.compile("x")), ["axbXc"]) == ["ax", "bXc"]
    assert run(chunk_regex("x", re.IGNORECASE), ["axbXc"]) == ["ax", "bX", "c"]


def test_regex_marble() -> None:
    lookup = {"a": "x;y", "b": ";", "c": "z", "p": "x;", "q": "y;"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-|", lookup).pipe(chunk_regex(";")))
        assert results == exp("-p---q-(c,|)", lookup)


_SAFE_PATTERNS = [r"\n\n+", r"[.!?]+\s+", ";", r"\s+", "(?=#)", "ab"]


@given(st.sampled_from(_SAFE_PATTERNS), st.data())
def test_regex_is_chunking_invariant_for_delimiter_patterns(
    pattern: str, data: st.DataObject
) -> None:
    text, chunks = data.draw(text_and_chunkings(_TEXTS))
    out = run(chunk_regex(pattern), chunks)
    assert out == run(chunk_regex(pattern), [text] if text else [])
    assert "".join(out) == text
    assert all(out)


@given(st.sampled_from(["abcd|b", "", r"\b", "^a", "(?<=a)b", "a*"]), st.data())
def test_regex_is_lossless_for_any_pattern(pattern: str, data: st.DataObject) -> None:
    text = data.draw(st.text(alphabet="abcd #\n"))
    chunks = data.draw(chunkings(text))
    out = run(chunk_regex(pattern), chunks)
    assert "".join(out) == text
    assert all(out)


# shared behaviour


OPS = [chunk_words, chunk_lines, lambda: chunk_regex(";")]


@pytest.mark.parametrize("factory", OPS)
def test_empty_stream(factory: Callable[[], Op]) -> None:
    assert run(factory(), []) == []
    assert run(factory(), ["", ""]) == []


@pytest.mark.parametrize("factory", OPS)
def test_the_rest_is_flushed_before_an_error(factory: Callable[[], Op]) -> None:
    boom = RuntimeError("boom")
    assert "".join(run(factory(), ["ab c;d\ne", "f"], error=boom)) == "ab c;d\nef"
