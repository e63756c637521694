"""accumulate: running snapshots of the full text so far."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

__all__ = ["accumulate"]


def accumulate() -> Callable[[Observable[str]], Observable[str]]:
    """Emit the whole text so far after every chunk: ``"a"``, ``"ab"``, ``"abc"``...

    For a view that re-renders the full text. Each snapshot is a new string,
    so the total size emitted is O(n²) in the text length (a 20 kB answer in
    5-character chunks emits about 40 MB); put :func:`~kagura.operators.throttle`
    before it so a UI gets a few snapshots per second instead of one per token.
    Empty chunks emit nothing.

    Marble, with ``a = "Hel"``, ``b = "lo"``, ``x = "Hello"``::

        source: -a-b-|
        result: -a-x-|

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.of("Hel", "lo", "!").pipe(accumulate(), rx.to_list()).run()
    ['Hel', 'Hello', 'Hello!']
    """

    def _accumulate(source: Observable[str]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            text = ""

            def on_next(chunk: str) -> None:
                nonlocal text
                if chunk:
                    text += chunk
                    observer.on_next(text)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return _accumulate
