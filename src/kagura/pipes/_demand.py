"""Demand: how a slow consumer slows the source (end-to-end backpressure).

ReactiveX has no backpressure. kagura carries it outside the Observable
protocol: the consumer (:func:`~kagura.pipes.to_async_iterator`) sets a
:class:`Demand` in a context variable while it subscribes; the source
(:func:`~kagura.pipes.from_async_iterable`) reads it during that same
synchronous subscribe call and, after each item, waits until the consumer has
room before it pulls the next chunk from the network. A shared stream waits
for every subscriber that signals demand (:class:`DemandGroup`).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Protocol

__all__ = ["Demand", "DemandGroup", "DemandSignal", "current_demand"]


class DemandSignal(Protocol):
    """Something a source can wait on before it pulls the next item."""

    @property
    def ready(self) -> bool: ...

    async def wait(self) -> None: ...


class Demand:
    """One consumer's demand: paused while its buffer is full."""

    __slots__ = ("_event", "ready")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._event.set()
        # A plain attribute, not a property: the source reads it after every item.
        self.ready = True

    def pause(self) -> None:
        self.ready = False
        self._event.clear()

    def resume(self) -> None:
        self.ready = True
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class DemandGroup:
    """The demand of several subscribers of one shared source: ready when all are."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: list[DemandSignal] = []

    def add(self, member: DemandSignal) -> None:
        self._members.append(member)

    def discard(self, member: DemandSignal) -> None:
        if member in self._members:
            self._members.remove(member)

    @property
    def ready(self) -> bool:
        return all(m.ready for m in self._members)

    async def wait(self) -> None:
        while not self.ready:
            for member in list(self._members):
                if not member.ready:
                    await member.wait()


current_demand: ContextVar[DemandSignal | None] = ContextVar("kagura_demand", default=None)
