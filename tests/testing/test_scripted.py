"""scripted_stream and marble_chunks: fake LLM streams on a virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler

from kagura.errors import ConfigError, StreamError
from kagura.testing.scripted import marble_chunks, scripted_stream

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


def test_plays_the_script_at_ttft_then_every_interval() -> None:
    scheduler = TestScheduler()
    stream = scripted_stream(["a", "b", "c"], ttft=2, interval=3)
    observer = scheduler.start(lambda: stream)
    assert observer.messages == [
        on_next(202, "a"),
        on_next(205, "b"),
        on_next(208, "c"),
        on_completed(208),
    ]


def test_fails_after_the_last_chunk() -> None:
    boom = StreamError("connection dropped", partial_text="ab")
    scheduler = TestScheduler()
    stream = scripted_stream(["a", "b"], ttft=1, interval=1, error=boom)
    observer = scheduler.start(lambda: stream)
    assert observer.messages == [on_next(201, "a"), on_next(202, "b"), on_error(202, boom)]


def test_an_empty_script_terminates_at_ttft() -> None:
    scheduler = TestScheduler()
    observer = scheduler.start(lambda: scripted_stream([], ttft=5))
    assert observer.messages == [on_completed(205)]


def test_is_cold_every_subscription_replays() -> None:
    scheduler = TestScheduler()
    stream = scripted_stream(["x", "y"], interval=1)
    observer = scheduler.start(lambda: stream.pipe(rx.repeat(2)))
    assert [(m.time, m.value.value) for m in observer.messages[:-1]] == [
        (200, "x"),
        (201, "y"),
        (201, "x"),
        (202, "y"),
    ]


def test_dispose_stops_the_script() -> None:
    scheduler = TestScheduler()
    stream = scripted_stream(["a", "b", "c"], ttft=1, interval=2)
    observer = scheduler.start(lambda: stream, disposed=204)
    assert observer.messages == [on_next(201, "a"), on_next(203, "b")]
    assert pending_timers(scheduler) == []


def pending_timers(scheduler: TestScheduler) -> list[Any]:
    """Scheduled items on ``scheduler`` that were not cancelled."""
    queue = scheduler._queue.items  # pyright: ignore[reportPrivateUsage]  # no public view
    return [item for item, _ in queue if not item.is_cancelled()]


def test_an_explicit_scheduler_wins() -> None:
    scheduler, mine = TestScheduler(), TestScheduler()
    observer = scheduler.create_observer()
    scripted_stream(["a"], ttft=3, scheduler=mine).subscribe(observer, scheduler=scheduler)
    scheduler.advance_to(50)
    mine.advance_to(2)
    assert observer.messages == []
    mine.advance_to(3)
    assert [m.value.kind for m in observer.messages] == ["N", "C"]


def test_runs_on_the_default_scheduler_in_real_time() -> None:
    assert scripted_stream(["a", "b"], ttft=0.001, interval=0.001).pipe(rx.to_list()).run() == [
        "a",
        "b",
    ]


@pytest.mark.parametrize(("ttft", "interval"), [(-1.0, 0.0), (0.0, -0.5)])
def test_negative_times_are_refused(ttft: float, interval: float) -> None:
    with pytest.raises(ConfigError):
        scripted_stream(["a"], ttft=ttft, interval=interval)


def test_marble_chunks_records_subscriptions() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-a-b-|", {"a": "Hel", "b": "lo"}, scheduler=scheduler)
    observer = scheduler.start(lambda: source.pipe(rx.take(1)))
    assert observer.messages == [on_next(201, "Hel"), on_completed(201)]
    assert source.subscriptions == [ReactiveTest.subscribe(200, 201)]


def test_marble_chunks_timespan_and_error() -> None:
    boom = RuntimeError("boom")
    scheduler = TestScheduler()
    source = marble_chunks("-a-#", scheduler=scheduler, error=boom, timespan=0.5)
    observer = scheduler.start(lambda: source)
    assert observer.messages == [on_next(200.5, "a"), on_error(201.5, boom)]
