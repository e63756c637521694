"""Every way a pipeline can end reaches its consumer (private).

An operator's ``on_completed`` and its timers run work of their own: a last flush, a
final validation, a downstream ``on_next`` that raises. An exception escaping from them
would end in the source's task or the scheduler's callback, where nobody awaits it, and
the consumer would wait forever. :func:`deliver_errors` wraps such a callback so that the
exception goes to the downstream observer's ``on_error`` instead.

>>> from reactivex import Observer
>>> errors = []
>>> def finish() -> None:
...     raise TypeError("a validator's bug")
>>> deliver_errors(Observer(on_error=errors.append), finish)()
>>> errors
[TypeError("a validator's bug")]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ParamSpec

from reactivex import abc

__all__ = ["deliver_errors", "fail_after"]

_P = ParamSpec("_P")


def deliver_errors(
    observer: abc.ObserverBase[Any], callback: Callable[_P, None]
) -> Callable[_P, None]:
    """``callback``, with any exception it raises sent to ``observer.on_error``."""

    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            callback(*args, **kwargs)
        except Exception as exc:
            observer.on_error(exc)

    return guarded


def fail_after(
    observer: abc.ObserverBase[Any], flush: Callable[[], object], error: Exception
) -> None:
    """Emit what ``flush`` holds, then fail with ``error``, even if the flush itself fails.

    The stream's first failure is the one the consumer sees (it carries the partial text);
    a later one, raised by the flush, is lost with the stream, not the other way round.
    """
    with contextlib.suppress(Exception):  # the stream already failed: report its first error
        flush()
    observer.on_error(error)
