"""first_token_timeout and idle_timeout: typed errors, upstream disposed, virtual time."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import reactivex
from hypothesis import given
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from kagura.errors import ConfigError, FirstTokenTimeout, IdleTimeout, StreamError
from kagura.operators import first_token_timeout, idle_timeout
from kagura.testing.scripted import marble_chunks, scripted_stream

on_next, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


def pending_timers(scheduler: TestScheduler) -> list[Any]:
    """Scheduled items on ``scheduler`` that were not cancelled."""
    queue = scheduler._queue.items  # pyright: ignore[reportPrivateUsage]  # no public view
    return [item for item, _ in queue if not item.is_cancelled()]


def error_of(messages: list[Recorded[Any]]) -> tuple[float, Exception]:
    last = messages[-1]
    assert last.value.kind == "E"
    return last.time, last.value.exception  # pyright: ignore[reportAttributeAccessIssue]  # OnError


# first_token_timeout


def test_first_token_timeout_fails_and_disposes_the_upstream() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-----a-|", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(first_token_timeout(3)))
    time, error = error_of(observer.messages)
    assert len(observer.messages) == 1
    assert time == 203
    assert isinstance(error, FirstTokenTimeout)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, StreamError)
    assert error.partial_text == ""
    assert source.subscriptions == [subscribe(200, 203)]


def test_first_token_in_time_then_anything_goes() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("--a--------b-|", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(first_token_timeout(3)))
    assert observer.messages == [on_next(202, "a"), on_next(211, "b"), on_completed(213)]
    assert source.subscriptions == [subscribe(200, 213)]


def test_first_token_timeout_lets_an_empty_stream_complete() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-|", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(first_token_timeout(3)))
    assert observer.messages == [on_completed(201)]


def test_first_token_timeout_passes_upstream_errors() -> None:
    boom = RuntimeError("boom")
    scheduler = TestScheduler()
    source = marble_chunks("-#", scheduler=scheduler, error=boom)
    observer = scheduler.start(lambda: source.pipe(first_token_timeout(3)))
    assert error_of(observer.messages) == (201, boom)


def test_first_token_timeout_dispose_cancels_the_timer() -> None:
    scheduler, timers = TestScheduler(), TestScheduler()
    source = marble_chunks("------", scheduler=scheduler)
    op = first_token_timeout(3, scheduler=timers)
    observer = scheduler.start(lambda: source.pipe(op), disposed=202)
    assert observer.messages == []
    assert source.subscriptions == [subscribe(200, 202)]
    assert pending_timers(timers) == []


def test_first_token_timeout_with_a_scripted_stream() -> None:
    scheduler = TestScheduler()
    slow = scripted_stream(["Hi"], ttft=12.5)
    observer = scheduler.start(lambda: slow.pipe(first_token_timeout(10)))
    assert error_of(observer.messages)[0] == 210


# idle_timeout


def test_idle_timeout_fails_with_the_partial_text_and_disposes_the_upstream() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-a-b-----c-|", {"a": "Hel", "b": "lo"}, scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(idle_timeout(3)))
    assert observer.messages[:2] == [on_next(201, "Hel"), on_next(203, "lo")]
    time, error = error_of(observer.messages)
    assert time == 206
    assert isinstance(error, IdleTimeout)
    assert isinstance(error, TimeoutError)
    assert error.partial_text == "Hello"
    assert source.subscriptions == [subscribe(200, 206)]


def test_idle_timeout_waits_for_the_first_item_before_starting() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-------a--b-|", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(idle_timeout(3)))
    assert observer.messages == [on_next(207, "a"), on_next(210, "b"), on_completed(212)]


def test_idle_timeout_non_text_items_leave_partial_text_empty() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-1-2-----", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(idle_timeout(2)))
    _, error = error_of(observer.messages)
    assert isinstance(error, IdleTimeout)
    assert error.partial_text == ""


def test_idle_timeout_dispose_cancels_the_timer() -> None:
    scheduler, timers = TestScheduler(), TestScheduler()
    source = marble_chunks("-a-b------", scheduler=scheduler)
    op = idle_timeout(3, scheduler=timers)
    observer = scheduler.start(lambda: source.pipe(op), disposed=204)
    assert observer.messages == [on_next(201, "a"), on_next(203, "b")]
    assert source.subscriptions == [subscribe(200, 204)]
    assert pending_timers(timers) == []


def test_idle_timeout_completion_cancels_the_timer() -> None:
    scheduler, timers = TestScheduler(), TestScheduler()
    source = marble_chunks("-a-|", scheduler=scheduler)
    scheduler.start(lambda: source.pipe(idle_timeout(3, scheduler=timers)))
    assert pending_timers(timers) == []


def test_an_explicit_scheduler_wins_over_the_subscription_scheduler() -> None:
    scheduler, frozen = TestScheduler(), TestScheduler()
    source = marble_chunks("-a-------b-|", scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(idle_timeout(2, scheduler=frozen)))
    assert observer.messages == [on_next(201, "a"), on_next(209, "b"), on_completed(211)]


@pytest.mark.parametrize("factory", [first_token_timeout, idle_timeout])
@pytest.mark.parametrize("seconds", [0, -1.0, math.nan, math.inf, -math.inf])
def test_seconds_must_be_positive_and_finite(factory: Any, seconds: float) -> None:
    # NaN compares false to everything: it used to pass and then fail every stream
    with pytest.raises(ConfigError, match=rf"^{factory.__name__} .* got {seconds!r}$"):
        factory(seconds)


@pytest.mark.parametrize("factory", [first_token_timeout, idle_timeout])
def test_a_synchronous_stream_runs_without_a_scheduler(factory: Any) -> None:
    assert reactivex.of("a", "b").pipe(factory(60)).run() == "b"


def test_idle_timeout_counts_from_the_latest_item() -> None:
    scheduler = TestScheduler()
    chunks = reactivex.concat(scripted_stream(["a"] * 10, interval=0.1), reactivex.never())
    observer = scheduler.start(lambda: chunks.pipe(idle_timeout(0.25)))
    time, error = error_of(observer.messages)
    assert len(observer.messages) == 11
    assert time == pytest.approx(200.9 + 0.25)
    assert isinstance(error, IdleTimeout)
    assert error.partial_text == "a" * 10


@given(st.lists(st.integers(0, 6), min_size=1, max_size=12), st.integers(0, 4))
def test_idle_timeout_fires_exactly_after_the_first_long_gap(gaps: list[int], wait: int) -> None:
    seconds = wait + 0.5  # never ties with an item
    times = list(itertools.accumulate(gaps))
    end = times[-1] + 3
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(
        [on_next(t, str(i)) for i, t in enumerate(times)] + [on_completed(end)]
    )
    observer = scheduler.start(lambda: source.pipe(idle_timeout(seconds)))
    stalls = [a for a, b in itertools.pairwise([*times, end]) if b - a > seconds]
    if not stalls:
        assert observer.messages[-1] == on_completed(200 + end)
    else:
        time, error = error_of(observer.messages)
        assert time == 200 + stalls[0] + seconds
        assert error.partial_text == "".join(str(i) for i, t in enumerate(times) if t <= stalls[0])
        assert source.subscriptions == [subscribe(200, int(time))]
