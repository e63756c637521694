"""MemoryRelay: the relay contract in one process, with no server."""

from __future__ import annotations

import bisect
import heapq
import secrets
import time
from dataclasses import dataclass, field
from typing import Final

from kagura.errors import StreamNotFound
from kagura.relay._base import Claim, Entry, RelayBase, Snapshot, Watcher
from kagura.relay._entry import START, Cursor, owner_digest, same_owner

__all__ = ["MemoryRelay"]

_NOT_FOUND: Final = "no such stream"


@dataclass(slots=True, eq=False)
class _Stream:
    owner: str
    base: int
    token: str
    numbers: list[int] = field(default_factory=lambda: [0])  # each entry's last event number
    entries: list[tuple[str, ...]] = field(default_factory=lambda: [(START,)])
    alive: bool = True
    expires: float | None = None
    watchers: set[Watcher] = field(default_factory=set[Watcher])


class MemoryRelay(RelayBase):
    """Relay streams kept in this process: the default, and what tests use.

    The same contract as :class:`~kagura.relay.RedisRelay` (ids, resume, typed endings,
    retention, expiry), for the readers and producers of one process and one event loop.
    ``maxlen`` bounds the entries kept per stream (each holds the events of one batch);
    ``batch_window`` is how long (seconds) a producer gathers events into one entry.
    """

    def __init__(self, *, maxlen: int = 10_000, batch_window: float = 0.002) -> None:
        super().__init__(maxlen=maxlen, batch_window=batch_window, lease=None, timeout=5.0)
        self._streams: dict[str, _Stream] = {}
        self._expiring: list[tuple[float, str]] = []  # (when, stream id), a heap

    def __repr__(self) -> str:
        return f"MemoryRelay(streams={len(self._streams)}, maxlen={self.maxlen})"

    def _get(self, stream_id: str) -> _Stream | None:
        self._expire()
        return self._streams.get(stream_id)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._expiring and self._expiring[0][0] <= now:
            _, stream_id = heapq.heappop(self._expiring)
            stream = self._streams.get(stream_id)
            if stream is not None and stream.expires is not None and stream.expires <= now:
                del self._streams[stream_id]

    def _retire(self, stream_id: str, stream: _Stream, ttl: float) -> None:
        stream.alive = False
        stream.expires = time.monotonic() + ttl
        heapq.heappush(self._expiring, (stream.expires, stream_id))

    # -- producer side -----------------------------------------------------------------
    async def _claim(self, stream_id: str, owner: str | None, ttl: float) -> Claim | None:
        if self._get(stream_id) is not None:
            return None
        claim = Claim(stream_id, time.time_ns() // 1_000_000, secrets.token_hex(16), ttl)
        self._streams[stream_id] = _Stream(owner_digest(owner), claim.base, claim.token)
        return claim

    def _own(self, claim: Claim) -> _Stream | None:
        stream = self._get(claim.stream_id)
        return stream if stream is not None and stream.token == claim.token else None

    async def _append(self, claim: Claim, entries: list[Entry]) -> bool:
        stream = self._own(claim)
        if stream is None:
            return False
        self._add(stream, entries)
        return True

    def _add(self, stream: _Stream, entries: list[Entry]) -> None:
        fresh = [entry for entry in entries if entry[0] > stream.numbers[-1]]
        for last, events in fresh:
            stream.numbers.append(last)
            stream.entries.append(events)
        excess = len(stream.numbers) - self.maxlen
        if excess > self.maxlen // 10:  # trim in steps, as Redis's MAXLEN ~ does
            del stream.numbers[:excess]
            del stream.entries[:excess]
        for watcher in list(stream.watchers):
            if not watcher.deliver(fresh):
                stream.watchers.discard(watcher)

    async def _close(self, claim: Claim, entries: list[Entry]) -> None:
        stream = self._own(claim)
        if stream is None:
            return
        self._add(stream, entries)
        self._retire(claim.stream_id, stream, claim.ttl)

    async def _abandon(self, claim: Claim) -> None:
        stream = self._own(claim)
        if stream is None or not stream.alive:
            return
        self._retire(claim.stream_id, stream, claim.ttl)
        for watcher in list(stream.watchers):  # they find no end, and report the loss
            watcher.detach()
        stream.watchers.clear()

    async def _request_stop(self, stream_id: str, owner: str | None) -> bool:
        stream = self._get(stream_id)
        return stream is not None and stream.alive and same_owner(stream.owner, owner)

    # -- reader side -------------------------------------------------------------------
    async def _fetch(
        self,
        stream_id: str,
        cursor: Cursor | None,
        *,
        owner: str | None,
        check_owner: bool,
        count: int,
    ) -> Snapshot:
        stream = self._get(stream_id)
        if stream is None or (check_owner and not same_owner(stream.owner, owner)):
            raise StreamNotFound(_NOT_FOUND)
        if cursor is None:
            start = 0
        elif cursor[0] == stream.base:
            start = bisect.bisect_right(stream.numbers, cursor[1])
        else:
            start = 0 if cursor[0] < stream.base else len(stream.numbers)
        end = min(start + count, len(stream.numbers))
        first = stream.numbers[0] - len(stream.entries[0]) + 1
        return Snapshot(
            base=stream.base,
            first=first,
            alive=stream.alive,
            entries=[(stream.numbers[i], stream.entries[i]) for i in range(start, end)],
        )

    async def _last(self, stream_id: str) -> Entry | None:
        stream = self._get(stream_id)
        return None if stream is None else (stream.numbers[-1], stream.entries[-1])

    def _watch(self, watcher: Watcher) -> None:
        stream = self._get(watcher.stream_id)
        if stream is None or not stream.alive:
            watcher.detach()
            return
        missed = bisect.bisect_right(stream.numbers, watcher.cursor)
        if missed < len(stream.numbers):  # entries added since the reader's fetch
            entries = list(zip(stream.numbers[missed:], stream.entries[missed:], strict=True))
            if not watcher.deliver(entries):
                return
        stream.watchers.add(watcher)

    def _unwatch(self, watcher: Watcher) -> None:
        stream = self._streams.get(watcher.stream_id)
        if stream is not None:
            stream.watchers.discard(watcher)
