"""accumulate: running snapshots of the full text."""

from __future__ import annotations

import reactivex
from hypothesis import given
from reactivex.testing.marbles import marbles_testing

from kagura.operators import accumulate
from kagura.testing.strategies import text_and_chunkings


def test_marble() -> None:
    lookup = {"a": "Hel", "b": "lo", "x": "Hello"}
    with marbles_testing() as (start, cold, _, exp):
        assert start(cold("-a-b-|", lookup).pipe(accumulate())) == exp("-a-x-|", lookup)


def test_errors_pass_through_after_the_snapshots() -> None:
    boom = RuntimeError("boom")
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-#", {"a": "x", "b": "y"}, boom).pipe(accumulate()))
        assert results == exp("-a-b-#", {"a": "x", "b": "xy"}, boom)


def test_empty_chunks_emit_nothing() -> None:
    out: list[str] = []
    reactivex.of("", "a", "", "b").pipe(accumulate()).subscribe(out.append)
    assert out == ["a", "ab"]


def test_each_subscription_starts_afresh() -> None:
    stream = reactivex.of("a", "b").pipe(accumulate())
    assert stream.run() == stream.run() == "ab"


@given(text_and_chunkings())
def test_snapshots_are_the_running_prefixes(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    out: list[str] = []
    reactivex.from_iterable(chunks).pipe(accumulate()).subscribe(out.append)
    assert out == ["".join(chunks[: i + 1]) for i in range(len(chunks))]
    assert (out[-1] if out else "") == text
