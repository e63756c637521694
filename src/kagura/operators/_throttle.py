"""throttle: lossless coalescing of a fast stream into at most one emission per interval."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable

from kagura.errors import ConfigError
from kagura.operators._guard import deliver_errors, fail_after
from kagura.operators.scheduling import resolve_scheduler

__all__ = ["throttle"]

_T = TypeVar("_T")
_NOTHING: Any = object()  # marks "no held item" (None is a valid item)


def throttle(
    interval: float, *, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Emit at most once per ``interval`` seconds, never dropping text.

    The first item passes at once. Items that arrive during the following
    ``interval`` are held and emitted together when it ends, which starts the
    next interval; a quiet interval re-opens the gate. ``str`` items are
    concatenated; other items (partial models) supersede each other, so the
    latest is emitted and the last one always is. Whatever is held is flushed
    on completion and before an error. (In a stream mixing both, a change of
    kind flushes the held item at once rather than drop it.)

    Rx's ``throttle_first`` drops the items inside the window; this keeps them.

    Marble, ``interval=4`` with a timespan of 1 (``x`` is ``"cd"``)::

        source: -a-b--c-d-----|
        result: -a---b---x----|

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.from_iterable(["Hel", "lo", " wor", "ld"]).pipe(
    ...     throttle(0.05), rx.to_list()
    ... ).run()
    ['Hel', 'lo world']
    """
    if not 0 < interval < math.inf:  # also refuses NaN, which compares false
        raise ConfigError(
            f"throttle interval must be a positive, finite number of seconds, got {interval!r}"
        )

    def _throttle(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, subscribe_scheduler)
            lock = threading.RLock()
            timer = SerialDisposable()
            gate_open = True
            text: list[str] = []  # held text, joined when emitted
            latest: Any = _NOTHING  # held non-text item

            def flush() -> bool:
                nonlocal latest
                if text:
                    joined = "".join(text)
                    text.clear()
                    observer.on_next(cast(_T, joined))
                    return True
                if latest is not _NOTHING:
                    item, latest = latest, _NOTHING
                    observer.on_next(item)
                    return True
                return False

            def tick(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal gate_open
                with lock:
                    if flush():
                        start_interval()
                    else:
                        gate_open = True

            def start_interval() -> None:
                nonlocal gate_open
                gate_open = False
                timer.disposable = sched.schedule_relative(interval, deliver_errors(observer, tick))

            def on_next(value: _T) -> None:
                nonlocal latest
                with lock:
                    if gate_open:
                        observer.on_next(value)
                        start_interval()
                    elif isinstance(value, str):
                        if latest is not _NOTHING:
                            flush()
                        text.append(value)
                    else:
                        if text:
                            flush()
                        latest = value

            def on_error(error: Exception) -> None:
                with lock:
                    timer.dispose()
                    fail_after(observer, flush, error)

            def on_completed() -> None:
                with lock:
                    timer.dispose()
                    flush()
                    observer.on_completed()

            upstream = source.subscribe(
                on_next,
                on_error,
                deliver_errors(observer, on_completed),
                scheduler=subscribe_scheduler,
            )
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return _throttle
