"""The one rule every timed operator keeps for choosing its scheduler.

>>> from reactivex.testing import TestScheduler
>>> s = TestScheduler()
>>> resolve_scheduler(None, s) is s
True
"""

from __future__ import annotations

from reactivex import abc
from reactivex.scheduler import TimeoutScheduler

__all__ = ["resolve_scheduler"]


def resolve_scheduler(
    explicit: abc.SchedulerBase | None, subscribe_scheduler: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """``scheduler=`` if given, else the subscriber's scheduler, else a timeout scheduler.

    :func:`kagura.pipes.to_async_iterator` subscribes with an ``AsyncIOScheduler`` on the
    running loop, so timed operators run on the loop by default; tests pass a
    ``TestScheduler`` and run in virtual time.
    """
    return explicit or subscribe_scheduler or TimeoutScheduler.singleton()
