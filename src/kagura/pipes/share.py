"""share_stream: one request for several subscribers, closed when the last one leaves.

Like ``reactivex.operators.share()`` (publish + ref-count), and also joins the
subscribers' demand: the source pulls the next chunk only when every
subscriber that signals demand has room, so a slow subscriber slows the
shared stream instead of growing another's buffer.

A late subscriber sees only what follows its subscription (a hot stream);
kagura does not replay, since that would buffer the whole answer. To see
everything, subscribe all consumers before the first chunk arrives: the
request starts on the first subscription, and chunks arrive no sooner than the
next turn of the event loop, so subscribers added in the same synchronous
block see the whole stream.

>>> import asyncio
>>> from kagura.pipes import from_llm, share_stream, to_async_iterator
>>> from kagura.llm.config import LLMConfig
>>> async def main():
...     shared = from_llm("a b", LLMConfig(model="kagura/echo")).pipe(share_stream())
...     first, second = to_async_iterator(shared), to_async_iterator(shared)
...     return await asyncio.gather(_all(first), _all(second))
>>> async def _all(it):
...     return [x async for x in it]
>>> asyncio.run(main())
[['a ', 'b'], ['a ', 'b']]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import CompositeDisposable, Disposable

from kagura.pipes._demand import DemandGroup, current_demand

__all__ = ["share_stream"]

T = TypeVar("T")


def share_stream() -> Callable[[Observable[T]], Observable[T]]:
    """Share one subscription of the source among all subscribers (see module doc)."""

    def operator(source: Observable[T]) -> Observable[T]:
        group = DemandGroup()

        def with_group() -> Observable[T]:
            def subscribe(
                observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                token = current_demand.set(group)
                try:
                    return source.subscribe(observer, scheduler=scheduler)
                finally:
                    current_demand.reset(token)

            return reactivex.create(subscribe)

        shared = with_group().pipe(ops.share())

        def subscribe(
            observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            demand = current_demand.get()
            if demand is not None:
                group.add(demand)
            subscription = shared.subscribe(observer, scheduler=scheduler)
            if demand is None:
                return subscription
            return CompositeDisposable(subscription, Disposable(lambda: group.discard(demand)))

        return reactivex.create(subscribe)

    return operator
