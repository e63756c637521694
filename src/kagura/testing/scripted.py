"""Fake LLM streams for tests: scripted chunks on a (virtual) clock.

:func:`scripted_stream` plays a list of chunks the way a model would: the first
after ``ttft`` seconds, then one every ``interval`` seconds, then it completes
or fails. On a :class:`reactivex.testing.TestScheduler` the whole script runs in
virtual time, so a test of a timeout or a throttle takes no wall-clock time:

>>> from reactivex.testing import TestScheduler
>>> from kagura.operators import throttle
>>> scheduler = TestScheduler()
>>> stream = scripted_stream(["Hel", "lo", " wor", "ld"], ttft=0.5, interval=0.04)
>>> results = scheduler.start(lambda: stream.pipe(throttle(0.1)))
>>> [m.value.value for m in results.messages if m.value.kind == "N"]
['Hel', 'lo wor', 'ld']

:func:`marble_chunks` builds the same kind of stream from a marble diagram and
records its subscriptions, to check that an operator disposed its upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable
from reactivex.observable.marbles import parse
from reactivex.testing import TestScheduler
from reactivex.testing.coldobservable import ColdObservable
from reactivex.testing.recorded import Recorded

from kagura.errors import ConfigError
from kagura.operators.scheduling import resolve_scheduler

__all__ = ["marble_chunks", "scripted_stream"]


def scripted_stream(
    chunks: Iterable[str],
    *,
    ttft: float = 0.0,
    interval: float = 0.0,
    error: Exception | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[str]:
    """A cold stream of ``chunks``: the first at ``ttft``, then one every ``interval``.

    After the last chunk (at the same instant) it completes, or fails with
    ``error``; an empty script terminates at ``ttft``. Each subscription plays
    the script from the start on ``scheduler or subscribe_scheduler or``
    :class:`~reactivex.scheduler.TimeoutScheduler`; disposing stops it.

    Marble, ``["a", "b", "c"]`` with ``ttft=2, interval=3`` and a timespan of 1::

        -- a-- b-- (c,|)

    >>> from reactivex.testing import TestScheduler
    >>> s = TestScheduler()
    >>> seen = []
    >>> _ = scripted_stream(["Hel", "lo"], ttft=2.0, interval=0.5).subscribe(
    ...     lambda chunk: seen.append((s.clock, chunk)), scheduler=s
    ... )
    >>> s.advance_to(10)
    >>> seen
    [(2.0, 'Hel'), (2.5, 'lo')]
    """
    script = tuple(chunks)
    if ttft < 0 or interval < 0:
        raise ConfigError(f"ttft and interval must be >= 0, got {ttft!r} and {interval!r}")

    def subscribe(
        observer: abc.ObserverBase[str], subscribe_scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        sched = resolve_scheduler(scheduler, subscribe_scheduler)
        timer = SerialDisposable()

        def play(_: abc.SchedulerBase, index: int | None = None) -> None:
            index = index or 0
            if index < len(script):
                observer.on_next(script[index])
            if index + 1 < len(script):
                timer.disposable = sched.schedule_relative(interval, play, index + 1)
            elif error is not None:
                observer.on_error(error)
            else:
                observer.on_completed()

        timer.disposable = sched.schedule_relative(ttft, play, 0)
        return timer

    return Observable(subscribe)


def marble_chunks(
    marbles: str,
    lookup: Mapping[str | float, Any] | None = None,
    *,
    scheduler: TestScheduler,
    error: Exception | None = None,
    timespan: float = 1.0,
) -> ColdObservable[Any]:
    """A cold observable from a marble diagram, recording its subscriptions.

    Like ``cold()`` of :func:`reactivex.testing.marbles.marbles_testing`, but
    created on ``scheduler``, so ``.subscriptions`` tells when each subscriber
    subscribed and disposed (times are absolute, in ticks of ``timespan``).

    >>> from reactivex.testing import TestScheduler
    >>> s = TestScheduler()
    >>> source = marble_chunks("-a-b-|", {"a": "Hel", "b": "lo"}, scheduler=s)
    >>> [m.value.value for m in s.start(lambda: source).messages[:-1]]
    ['Hel', 'lo']
    >>> from reactivex.testing import ReactiveTest
    >>> source.subscriptions == [ReactiveTest.subscribe(200, 205)]
    True
    """
    messages = parse(marbles, timespan=timespan, lookup=lookup, error=error, raise_stopped=True)
    # Recorded's time is annotated int, but virtual time is float seconds (timespan=0.1 works).
    return scheduler.create_cold_observable([Recorded(cast(int, t), n) for t, n in messages])
