"""to_async_iterator: an Observable back to ``async for``, bounded and cancellable.

- Bounded: at most ``max_buffer`` items wait in the buffer before the source
  is asked to pause (see :mod:`kagura.pipes._demand`); a slow consumer slows
  the network read, and memory does not grow with the stream's length.
- Errors are re-raised at the consumer's ``async for``, same type.
- ``break`` (when the iterator is no longer referenced), ``aclose()``, leaving
  ``async with``, or cancelling the consuming task dispose the subscription,
  which closes the HTTP stream.

Thread rules: create and consume the iterator on the event loop's thread.
Items normally arrive on that thread (no hop per item); an item pushed from
another thread (an operator on a thread-pool scheduler) is handed over with
``call_soon_threadsafe``. Timed operators downstream of the source default to
an ``AsyncIOScheduler`` on the running loop.

>>> import asyncio, reactivex
>>> async def main():
...     return [x async for x in to_async_iterator(reactivex.of(1, 2, 3))]
>>> asyncio.run(main())
[1, 2, 3]
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, TypeVar

from reactivex import Observable, abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from kagura.pipes._demand import Demand, current_demand

__all__ = ["ObservableIterator", "to_async_iterator"]

T = TypeVar("T")

DEFAULT_MAX_BUFFER = 64


class ObservableIterator(AsyncIterator[T], Generic[T]):
    """The async iterator :func:`to_async_iterator` returns (also an async context manager)."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_closed",
        "_demand",
        "_done",
        "_error",
        "_loop",
        "_loop_thread",
        "_max_buffer",
        "_observable",
        "_subscription",
        "_waiter",
    )

    def __init__(self, observable: Observable[T], *, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be at least 1, got {max_buffer}")
        self._observable = observable
        self._max_buffer = max_buffer
        self._buffer: deque[T] = deque()
        self._demand = Demand()
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._subscription: abc.DisposableBase | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    # -- observer side -------------------------------------------------------------
    def _on_next(self, item: T) -> None:
        if threading.get_ident() != self._loop_thread and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_next, item)
            return
        buffer = self._buffer
        buffer.append(item)
        if len(buffer) >= self._max_buffer:
            self._demand.pause()
        waiter = self._waiter  # _wake(), inlined: this runs once per item
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_error(self, error: Exception) -> None:
        if threading.get_ident() != self._loop_thread and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_error, error)
            return
        self._error = error
        self._done = True
        self._wake()

    def _on_completed(self) -> None:
        if threading.get_ident() != self._loop_thread and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_completed)
            return
        self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- consumer side -------------------------------------------------------------
    def _subscribe(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # The observer holds the iterator weakly: the pump task (alive while the
        # source runs) would otherwise keep a dropped iterator reachable, and
        # `break` without aclose() would leave the HTTP stream open until it ended.
        ref = weakref.ref(self)

        def on_next(item: T) -> None:
            if (it := ref()) is not None:
                it._on_next(item)

        def on_error(error: Exception) -> None:
            if (it := ref()) is not None:
                it._on_error(error)

        def on_completed() -> None:
            if (it := ref()) is not None:
                it._on_completed()

        token = current_demand.set(self._demand)
        try:
            self._subscription = self._observable.subscribe(
                on_next=on_next,
                on_error=on_error,
                on_completed=on_completed,
                scheduler=AsyncIOScheduler(self._loop),
            )
        finally:
            current_demand.reset(token)

    def __aiter__(self) -> ObservableIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._subscription is None and not self._closed:
            self._subscribe()
        while True:
            if self._buffer:
                item = self._buffer.popleft()
                if len(self._buffer) <= self._max_buffer // 2:
                    # Resume at half full, not at the first free slot: the source
                    # then wakes once per max_buffer/2 items, not once per item.
                    self._demand.resume()
                return item
            if self._error is not None:
                error, self._error = self._error, None
                self._closed = True
                raise error
            if self._done or self._closed:
                self._closed = True
                raise StopAsyncIteration
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                self._dispose()
                raise
            finally:
                self._waiter = None

    def _dispose(self) -> None:
        self._closed = True
        self._buffer.clear()
        # A consumer that left asks for nothing: a shared source must not wait on it.
        self._demand.resume()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.dispose()

    async def aclose(self) -> None:
        """Stop: dispose the subscription (closing the HTTP stream). Idempotent."""
        self._dispose()

    async def __aenter__(self) -> ObservableIterator[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._dispose()

    def __del__(self) -> None:
        # A consumer that breaks out of `async for` and drops the iterator.
        subscription = getattr(self, "_subscription", None)
        loop = getattr(self, "_loop", None)
        if subscription is None or loop is None or loop.is_closed():
            return  # never subscribed, or nothing can run any more
        if threading.get_ident() == self._loop_thread:
            self._demand.resume()
        else:  # collected on another thread
            loop.call_soon_threadsafe(self._demand.resume)
        subscription.dispose()


def to_async_iterator(
    observable: Observable[T], *, max_buffer: int = DEFAULT_MAX_BUFFER
) -> ObservableIterator[T]:
    """Consume an Observable with ``async for``; subscribes on the first ``__anext__``."""
    return ObservableIterator(observable, max_buffer=max_buffer)
