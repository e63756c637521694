"""throttle: at most one emission per interval, nothing dropped."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import reactivex
from hypothesis import given
from hypothesis import strategies as st
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from kagura.errors import ConfigError
from kagura.operators import throttle
from kagura.testing.scripted import marble_chunks
from kagura.testing.strategies import text_and_chunkings


def test_coalesces_into_one_emission_per_interval() -> None:
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b--c-d-----|").pipe(throttle(4)))
        assert results == exp("-a---b---x----|", {"x": "cd"})


def test_first_chunk_passes_at_once_and_a_quiet_interval_reopens_the_gate() -> None:
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c------d-|").pipe(throttle(3)))
        assert results == exp("-a--b--c----d-|")


def test_flushes_on_completion() -> None:
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c|").pipe(throttle(10)))
        assert results == exp("-a----(x,|)", {"x": "bc"})


def test_flushes_before_an_error() -> None:
    boom = RuntimeError("boom")
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c#", error=boom).pipe(throttle(10)))
        assert results == exp("-a----(x,#)", {"x": "bc"}, boom)


def test_empty_stream() -> None:
    with marbles_testing() as (start, cold, _, exp):
        assert start(cold("--|").pipe(throttle(3))) == exp("--|")


def test_non_text_items_keep_the_latest() -> None:
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-1-2-3--|").pipe(throttle(6)))
        assert results == exp("-1-----3|")


def test_the_last_non_text_item_is_always_emitted() -> None:
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-1-2-3|").pipe(throttle(10)))
        assert results == exp("-1----(3,|)")


def test_a_change_of_kind_flushes_rather_than_drops() -> None:
    items = {"a": "Hel", "b": "lo", "m": {"partial": 1}, "n": {"partial": 2}, "c": "!"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-m-n-c|", items).pipe(throttle(20)))
        assert results == exp("-a---x---n(c,|)", {**items, "x": "lo"})


def test_dispose_cancels_the_timer_and_the_upstream() -> None:
    scheduler, timers = TestScheduler(), TestScheduler()
    source = marble_chunks("-a-b-c------", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(throttle(4, scheduler=timers)), disposed=204)
    assert observer.messages == [ReactiveTest.on_next(201, "a")]
    assert source.subscriptions == [ReactiveTest.subscribe(200, 204)]
    assert pending_timers(timers) == []


def pending_timers(scheduler: TestScheduler) -> list[Any]:
    """Scheduled items on ``scheduler`` that were not cancelled."""
    queue = scheduler._queue.items  # pyright: ignore[reportPrivateUsage]  # no public view
    return [item for item, _ in queue if not item.is_cancelled()]


def test_an_explicit_scheduler_wins_over_the_subscription_scheduler() -> None:
    frozen = TestScheduler()  # never advanced: the interval never ends
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-------|").pipe(throttle(2, scheduler=frozen)))
        assert results == exp("-a-----------(x,|)", {"x": "bc"})


@pytest.mark.parametrize("interval", [0, -1.0, math.nan, math.inf, -math.inf])
def test_interval_must_be_positive_and_finite(interval: float) -> None:
    with pytest.raises(ConfigError, match=rf"throttle interval .* got {interval!r}$"):
        throttle(interval)


def test_without_a_scheduler_a_synchronous_stream_keeps_its_first_chunk_and_the_rest() -> None:
    out = reactivex.of("a", "b", "c").pipe(throttle(60), rx.to_list()).run()
    assert out == ["a", "bc"]


@given(
    text_and_chunkings(max_chunks=30),
    st.lists(st.integers(0, 5), min_size=30, max_size=30),
    st.integers(1, 7),
)
def test_lossless_and_rate_limited(
    case: tuple[str, list[str]], gaps: list[int], interval: int
) -> None:
    text, chunks = case
    scheduler = TestScheduler()
    messages: list[Any] = []
    time = 0
    for chunk, gap in zip(chunks, gaps, strict=False):
        time += gap
        messages.append(ReactiveTest.on_next(time, chunk))
    messages.append(ReactiveTest.on_completed(time + 1))
    source = scheduler.create_cold_observable(messages)
    observer = scheduler.start(lambda: source.pipe(throttle(interval)), disposed=10_000)
    values = [m for m in observer.messages if m.value.kind == "N"]
    assert "".join(m.value.value for m in values) == text
    end = observer.messages[-1].time
    timed = [m.time for m in values if m.time != end]  # the completion flush may come early
    assert all(b - a >= interval for a, b in itertools.pairwise(timed))
