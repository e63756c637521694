"""from_relay and to_relay: relay streams as Observables, so pipelines run on either side."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from kagura.errors import RelayError
from kagura.pipes import from_async_iterable
from kagura.relay._base import Abandoned, Relay, check_ttl
from kagura.relay._entry import check_owner, check_stream_id, parse_after

__all__ = ["from_relay", "to_relay"]

T = TypeVar("T")


def from_relay(
    relay: Relay,
    stream_id: str,
    *,
    after: str | None = None,
    owner: str | None = None,
    model: type[BaseModel] | None = None,
) -> Observable[Any]:
    """A cold Observable of a relay stream's events: each subscription reads from ``after``.

    It completes at the producer's end and fails with the producer's error (or
    ProducerLost, StreamNotFound...), as :meth:`Relay.read` raises them. Disposing stops
    the read.

    Marble (the producer's items, then this Observable's)::

        producer: -a-b-c-|
        result:   -a-b-c-|
    """
    check_stream_id(stream_id)
    check_owner(owner)
    parse_after(after)

    async def events() -> AsyncIterator[Any]:
        entries = relay.read(stream_id, after=after, owner=owner, model=model)
        try:
            async for entry in entries:
                yield entry.event
        finally:
            aclose = getattr(entries, "aclose", None)
            if aclose is not None:
                await aclose()

    return from_async_iterable(events)


def to_relay(
    relay: Relay,
    stream_id: str,
    *,
    owner: str | None = None,
    ttl: float = 3600.0,
) -> Callable[[Observable[T]], Observable[T]]:
    """Append each item to a relay stream as it passes, and pass it on.

    Each subscription publishes ``stream_id`` (so subscribe once): the completion or the
    error is appended too; a disposal before the end leaves the stream without one (its
    readers see ProducerLost). If the id is taken, the result fails with
    :class:`~kagura.errors.RelayError` as soon as that is known. Items wait for the
    relay in memory, without bound: for backpressure publish the Observable instead.

    Marble (items pass unchanged; the relay receives ``a``, ``b`` and the end)::

        source: -a-b-|
        result: -a-b-|
    """
    check_stream_id(stream_id)
    check_owner(owner)
    ttl = check_ttl(ttl)

    def operator(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            loop = asyncio.get_running_loop()
            bridge = _Bridge()
            ended = False  # the source ended (or the subscription was disposed)
            settled = False  # the observer had its on_error or on_completed
            claimed = False
            pending: Callable[[], None] | None = None  # the source's end, until claimed

            def settle(action: Callable[[], None]) -> None:
                nonlocal settled
                if not settled:
                    settled = True
                    action()

            def on_publish(task: asyncio.Task[bool]) -> None:
                nonlocal claimed, ended
                if task.cancelled() or settled:
                    return
                error = task.exception()
                if error is not None and not isinstance(error, Exception):
                    return  # KeyboardInterrupt and the like: not the Observable's business
                if error is None and not task.result():
                    error = RelayError(f"the relay stream id {stream_id!r} is taken")
                if error is not None:
                    ended = True
                    subscription.dispose()
                    settle(functools.partial(observer.on_error, error))
                    return
                claimed = True
                if pending is not None:
                    settle(pending)

            def end(action: Callable[[], None]) -> None:
                # Passed on once the stream exists, so that a reader started after the
                # end finds it.
                nonlocal ended, pending
                ended = True
                if claimed:
                    settle(action)
                else:
                    pending = action

            def on_next(item: T) -> None:
                bridge.put(item)
                observer.on_next(item)

            def on_error(error: Exception) -> None:
                bridge.fail(error)
                end(functools.partial(observer.on_error, error))

            def on_completed() -> None:
                bridge.close()
                end(observer.on_completed)

            publishing = loop.create_task(relay.publish(stream_id, bridge, owner=owner, ttl=ttl))
            publishing.add_done_callback(on_publish)
            subscription = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)

            def dispose() -> None:
                nonlocal ended, settled
                subscription.dispose()
                settled = True
                if not ended:
                    ended = True
                    bridge.abandon()

            return Disposable(dispose)

        return Observable(subscribe)

    return operator


class _Bridge:
    """An async iterator fed from an Observer's callbacks (the producer's source)."""

    __slots__ = ("_closed", "_error", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: object) -> None:
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self.close()

    def abandon(self) -> None:
        self.fail(Abandoned())

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> _Bridge:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._items:
                return self._items.popleft()
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
