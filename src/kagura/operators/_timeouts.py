"""first_token_timeout and idle_timeout: fail a stalled stream and close its upstream."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable

from kagura.errors import ConfigError, FirstTokenTimeout, IdleTimeout
from kagura.operators.scheduling import resolve_scheduler

__all__ = ["first_token_timeout", "idle_timeout"]

_T = TypeVar("_T")
_CLOCK_RESOLUTION = 1e-6  # datetime's resolution: a remainder this small has elapsed


def first_token_timeout(
    seconds: float, *, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Fail with :class:`~kagura.errors.FirstTokenTimeout` if nothing arrives in time.

    The clock starts at subscription (when the request is sent). If no item has
    arrived after ``seconds``, the upstream is disposed (closing the HTTP
    stream) and the error is raised; once the first item arrives the operator
    only passes items through.

    Marble, ``seconds=3`` with a timespan of 1::

        source: -----a-|
        result: ---#
        upstream subscription: ^--!

    >>> import reactivex
    >>> from reactivex.testing import TestScheduler
    >>> s = TestScheduler()
    >>> failures = []
    >>> _ = reactivex.never().pipe(first_token_timeout(10)).subscribe(
    ...     on_error=failures.append, scheduler=s
    ... )
    >>> s.advance_to(60)
    >>> failures
    [FirstTokenTimeout('no text within 10 s of the request')]
    """
    _check_positive("first_token_timeout", seconds)

    def _first_token_timeout(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, subscribe_scheduler)
            guard = _Guard(observer)
            started = False

            def expire(_: abc.SchedulerBase, __: Any = None) -> None:
                with guard.lock:
                    if started or guard.done:
                        return
                    guard.done = True
                guard.fail(FirstTokenTimeout(f"no text within {seconds:g} s of the request"))

            def on_next(value: _T) -> None:
                nonlocal started
                with guard.lock:
                    if guard.done:
                        return
                    if not started:
                        started = True
                        guard.timer.dispose()
                    observer.on_next(value)

            guard.timer.disposable = sched.schedule_relative(seconds, expire)
            return guard.subscribe(source, on_next, subscribe_scheduler)

        return Observable(subscribe)

    return _first_token_timeout


def idle_timeout(
    seconds: float, *, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Fail with :class:`~kagura.errors.IdleTimeout` if the stream stalls between items.

    The clock starts at the first item and restarts at every item; the wait for
    the first item is :func:`first_token_timeout`'s job (a model may think for a
    long time before it writes), so combine the two. When it expires, the
    upstream is disposed (closing the HTTP stream) and the error carries the
    text received so far (for ``str`` items) as ``partial_text``.

    Marble, ``seconds=3`` with a timespan of 1 (``partial_text == "ab"``)::

        source: -a-b-----c-|
        result: -a-b--#
        upstream subscription: ^-----!

    >>> import reactivex
    >>> from reactivex.testing import TestScheduler
    >>> s = TestScheduler()
    >>> failures = []
    >>> stalled = reactivex.concat(reactivex.of("Hel", "lo"), reactivex.never())
    >>> _ = stalled.pipe(idle_timeout(30)).subscribe(on_error=failures.append, scheduler=s)
    >>> s.advance_to(60)
    >>> failures[0].partial_text
    'Hello'
    """
    _check_positive("idle_timeout", seconds)

    def _idle_timeout(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, subscribe_scheduler)
            guard = _Guard(observer)
            text: list[str] = []  # str items so far, for partial_text
            last_at: datetime | None = None  # when the latest item arrived

            # One timer per ``seconds``, not one per chunk: when it fires early
            # (items came meanwhile) it re-arms for the time still to wait.
            def expire(_: abc.SchedulerBase, __: Any = None) -> None:
                with guard.lock:
                    if guard.done or last_at is None:
                        return
                    remaining = seconds - (sched.now - last_at).total_seconds()
                    if remaining > _CLOCK_RESOLUTION:
                        guard.timer.disposable = sched.schedule_relative(remaining, expire)
                        return
                    guard.done = True
                guard.fail(
                    IdleTimeout(
                        f"no chunk within {seconds:g} s of the previous one",
                        partial_text="".join(text),
                    )
                )

            def on_next(value: _T) -> None:
                nonlocal last_at
                with guard.lock:
                    if guard.done:
                        return
                    if last_at is None:
                        guard.timer.disposable = sched.schedule_relative(seconds, expire)
                    last_at = sched.now
                    if isinstance(value, str):
                        text.append(value)
                    observer.on_next(value)

            return guard.subscribe(source, on_next, subscribe_scheduler)

        return Observable(subscribe)

    return _idle_timeout


class _Guard(Generic[_T]):
    """What both timeout operators share: one lock, the timer, the upstream, and ``done``."""

    __slots__ = ("done", "lock", "observer", "timer", "upstream")

    def __init__(self, observer: abc.ObserverBase[_T]) -> None:
        self.observer = observer
        self.lock = threading.RLock()
        self.timer = SerialDisposable()
        self.upstream = SingleAssignmentDisposable()
        self.done = False

    def fail(self, error: Exception) -> None:
        """The timer expired (``done`` already set): close the upstream, then raise."""
        self.upstream.dispose()
        self.observer.on_error(error)

    def on_error(self, error: Exception) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            self.timer.dispose()
            self.observer.on_error(error)

    def on_completed(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            self.timer.dispose()
            self.observer.on_completed()

    def subscribe(
        self,
        source: Observable[_T],
        on_next: Callable[[_T], None],
        scheduler: abc.SchedulerBase | None,
    ) -> abc.DisposableBase:
        self.upstream.disposable = source.subscribe(
            on_next, self.on_error, self.on_completed, scheduler=scheduler
        )
        return CompositeDisposable(self.timer, self.upstream)


def _check_positive(name: str, seconds: float) -> None:
    # `not 0 < x < inf` also refuses NaN (it compares false), which would never expire
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{name} must be a positive, finite number of seconds, got {seconds!r}")
