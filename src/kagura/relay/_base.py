"""The relay contract, and what both backends share: the producer and the reader.

A backend (:class:`RelayBase` subclass) supplies a handful of primitives (claim a stream,
append entries, renew the lease, close or abandon, fetch entries after a cursor, watch
for new ones); this module turns them into ``publish`` (one detached producer task that
batches its appends and renews its lease) and ``read`` (catch up from storage, then
follow live entries, then end, re-raise or report the producer lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Protocol, TypeVar, cast, runtime_checkable

import structlog
from pydantic import BaseModel
from reactivex import Observable

from kagura._redact import redact
from kagura.errors import (
    ConfigError,
    EntriesTrimmed,
    KaguraError,
    ParseError,
    ProducerLost,
    RelayError,
    RelayUnavailable,
    StreamNotFound,
)
from kagura.events import Finish, TextDelta, Usage
from kagura.relay._entry import (
    END,
    ERROR,
    START,
    TERMINAL,
    Cursor,
    check_owner,
    check_stream_id,
    decode_error,
    decode_event,
    encode_error,
    encode_item,
    event_id,
    parse_after,
)

__all__ = ["Relay", "RelayBase", "RelayEntry", "StreamStatus"]

_log = structlog.get_logger("kagura.relay")
_R = TypeVar("_R")
_T = TypeVar("_T")

StreamStatus = Literal["running", "ended", "failed", "lost", "unknown"]
"""What :meth:`Relay.status` reports: ``"unknown"`` also for another owner's stream."""

Renewal = Literal["held", "lost", "stop"]
"""A lease renewal's outcome: still held, lost, or held with a stop requested."""

STOPPED: Final = "stopped"
"""The finish reason of a stream stopped with :meth:`Relay.stop`."""

Entry = tuple[int, tuple[str, ...]]
"""A stored entry: the number of its last event, and its events (encoded)."""

_MAX_TTL: Final = 366 * 86400.0
_ABANDON: Final = ""  # a producer's last word when it stops without an end
_CLOSE_TIMEOUT: Final = 5.0


class RelayEntry(NamedTuple):
    """One event of a relay stream and its id (usable as ``after=`` and as an SSE id)."""

    id: str
    event: Any


@runtime_checkable
class Relay(Protocol):
    """What :class:`~kagura.relay.MemoryRelay` and :class:`~kagura.relay.RedisRelay` offer."""

    async def publish(
        self,
        stream_id: str,
        source: Observable[Any] | AsyncIterable[Any],
        *,
        owner: str | None = None,
        ttl: float = 3600.0,
    ) -> bool:
        """Run ``source`` in a task of its own, appending what it emits under ``stream_id``.

        True if it started; False if the id is taken (a producer for it is running in any
        process, or its entries are still kept), in which case nothing starts.
        """
        ...

    def read(
        self,
        stream_id: str,
        *,
        after: str | None = None,
        owner: str | None = None,
        model: type[BaseModel] | None = None,
    ) -> AsyncGenerator[RelayEntry]:
        """The stream's events from the start, or strictly after the event id ``after``."""
        ...

    async def status(self, stream_id: str, *, owner: str | None = None) -> StreamStatus:
        """Whether the stream is running, ended, failed, lost, or unknown (to ``owner``)."""
        ...

    async def stop(self, stream_id: str, *, owner: str | None = None) -> bool:
        """Ask the stream's producer, in whichever process it runs, to stop early.

        True if the stream is running (and ``owner``'s); False otherwise.
        """
        ...

    async def aclose(self) -> None:
        """Stop this relay's producers (their readers see ProducerLost) and readers."""
        ...


@dataclass(slots=True)
class Claim:
    """A producer's hold on a stream."""

    stream_id: str
    base: int
    token: str
    ttl: float


@dataclass(slots=True)
class Snapshot:
    """What a reader learns from storage in one step."""

    base: int
    first: int  # the number of the first event still kept (0: nothing trimmed)
    alive: bool  # a producer holds the lease
    entries: list[Entry]  # after the cursor, in order, at most the count asked for


class Watcher:
    """A reader waiting for live entries; the backend delivers them into its buffer."""

    __slots__ = (
        "base",
        "buffer",
        "cursor",
        "error",
        "idle_until",
        "idled",
        "limit",
        "live",
        "stream_id",
        "waiter",
    )

    def __init__(self, stream_id: str, *, limit: int) -> None:
        self.stream_id = stream_id
        self.base = 0
        self.cursor = -1  # the number of the last event received
        self.buffer: deque[Entry] = deque()
        self.limit = limit
        self.live = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.idle_until = math.inf  # when a wait gives up (see expire_idle)
        self.idled = False

    def deliver(self, entries: Sequence[Entry]) -> bool:
        """Take the entries after the cursor; False (detached) on a gap or a full buffer."""
        for last, events in entries:
            if last <= self.cursor:
                continue
            if last - len(events) > self.cursor:  # entries in between were trimmed
                self.detach()
                return False
            self.buffer.append((last, events))
            self.cursor = last
        self.wake()
        if len(self.buffer) >= self.limit:
            self.detach()  # it catches up from storage when it has read its buffer
            return False
        return True

    def detach(self) -> None:
        """Stop following live entries: the reader fetches from storage next."""
        self.live = False
        self.wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.detach()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, patience: float) -> bool:
        """Wait for a delivery or a detach; False once ``patience`` seconds of neither have
        passed and :meth:`expire_idle` says so (the relay calls it every so often: no
        timer per wait, which cost a reader a timer per chunk)."""
        if self.buffer or not self.live or self.error is not None:
            return True
        self.idle_until = time.monotonic() + patience
        self.idled = False
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
            self.idle_until = math.inf
        return not self.idled

    def expire_idle(self, now: float) -> None:
        """End a wait whose patience ran out by ``now`` (it returns False)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done() and now >= self.idle_until:
            self.idled = True
            waiter.set_result(None)


class Abandoned(Exception):
    """Raised by a source whose producer is to stop without an end (to_relay's dispose)."""


class RelayBase(ABC):
    """The producer and reader logic over a backend's primitives."""

    def __init__(
        self,
        *,
        maxlen: int,
        batch_window: float,
        lease: float | None,
        timeout: float,
        fetch_count: int = 256,
        reader_buffer: int = 64,
    ) -> None:
        if maxlen < 16:
            raise ConfigError("maxlen is an int of at least 16 (entries kept per stream)")
        if not 0 <= batch_window <= 1:
            raise ConfigError("batch_window is between 0 and 1 second")
        if lease is not None and not 0.05 <= lease <= 3600:
            raise ConfigError("lease is between 0.05 and 3600 seconds")
        if not 0 < timeout <= 3600:
            raise ConfigError("timeout is between 0 and 3600 seconds")
        self.maxlen = maxlen
        self.batch_window = float(batch_window)
        self.lease = lease
        self.timeout = float(timeout)
        self._fetch_count = fetch_count
        self._reader_buffer = reader_buffer
        self._producers: set[asyncio.Task[None]] = set()
        self._running: dict[str, _Producer] = {}  # this process's producers, by stream id
        self._readers: set[Watcher] = set()
        self._closed = False
        # The producers' shared writes and renewals, by due time (see _due).
        self._appends_due: dict[float, list[_Producer]] = {}
        self._renewals_due: dict[float, list[_Producer]] = {}
        self._renew_grid = 0.0 if lease is None else max(self.batch_window, lease / 3 / 32)
        self._flushes: set[asyncio.Task[None]] = set()
        self._idle_watch: asyncio.Task[None] | None = None  # see _watch_idle

    # -- primitives --------------------------------------------------------------------
    @abstractmethod
    async def _claim(self, stream_id: str, owner: str | None, ttl: float) -> Claim | None:
        """Take the id and write its start entry; None if the id is taken."""

    @abstractmethod
    async def _append(self, claim: Claim, entries: list[Entry]) -> bool:
        """Append entries (already written ones are skipped); False if the stream is gone."""

    async def _renew(self, claim: Claim) -> Renewal:
        """Extend the lease: ``"lost"`` if it is no longer this producer's, ``"stop"`` if
        :meth:`stop` was called for the stream (in any process)."""
        return "held"

    async def _append_many(
        self, batch: Sequence[tuple[Claim, list[Entry]]]
    ) -> list[bool | Exception]:
        """:meth:`_append` for each stream of ``batch`` (a backend sends them together): its
        result, or the error it met."""
        return await _each(batch, lambda item: self._append(*item))

    async def _renew_many(self, claims: Sequence[Claim]) -> list[Renewal | Exception]:
        """:meth:`_renew` for each of ``claims`` (a backend sends them together)."""
        return await _each(claims, self._renew)

    @abstractmethod
    async def _request_stop(self, stream_id: str, owner: str | None) -> bool:
        """Mark a running stream of ``owner``'s as to stop; False if there is none."""

    @abstractmethod
    async def _close(self, claim: Claim, entries: list[Entry]) -> None:
        """Append the last entries (ending with the end or error), release, expire in ttl."""

    @abstractmethod
    async def _abandon(self, claim: Claim) -> None:
        """Release the lease without an end (readers see ProducerLost); expire in ttl."""

    @abstractmethod
    async def _fetch(
        self,
        stream_id: str,
        cursor: Cursor | None,
        *,
        owner: str | None,
        check_owner: bool,
        count: int,
    ) -> Snapshot:
        """Up to ``count`` entries after ``cursor`` (from the start if None).

        StreamNotFound if the stream is not kept, or (``check_owner``) not ``owner``'s.
        """

    @abstractmethod
    async def _last(self, stream_id: str) -> Entry | None:
        """The stream's last entry, or None."""

    @abstractmethod
    def _watch(self, watcher: Watcher) -> None:
        """Deliver the entries after ``watcher.cursor`` as they come (or detach it)."""

    @abstractmethod
    def _unwatch(self, watcher: Watcher) -> None:
        """Stop delivering to ``watcher`` (idempotent)."""

    # -- publish -----------------------------------------------------------------------
    async def publish(
        self,
        stream_id: str,
        source: Observable[Any] | AsyncIterable[Any],
        *,
        owner: str | None = None,
        ttl: float = 3600.0,
    ) -> bool:
        """Run ``source`` in a task of its own, appending what it emits under ``stream_id``.

        True if it started; False if the id is taken (a producer for it is running in any
        process, or its entries are still kept), in which case nothing starts. The end,
        or the error that ends ``source``, is appended too; the entries then expire
        ``ttl`` seconds later. Cancelling the caller does not stop the producer.
        """
        check_stream_id(stream_id)
        check_owner(owner)
        ttl = check_ttl(ttl)
        if not isinstance(source, Observable | AsyncIterable):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may not be type-checked
            raise ConfigError("publish() takes an Observable or an async iterable")
        self._check_open()
        return await asyncio.shield(self._start(stream_id, source, owner, ttl))

    async def _start(
        self,
        stream_id: str,
        source: Observable[Any] | AsyncIterable[Any],
        owner: str | None,
        ttl: float,
    ) -> bool:
        claim = await self._claim(stream_id, owner, ttl)
        if claim is None:
            return False
        task = asyncio.get_running_loop().create_task(
            self._produce(claim, source), name=f"kagura.relay producer {stream_id}"
        )
        self._producers.add(task)
        task.add_done_callback(self._producer_done)
        return True

    def _producer_done(self, task: asyncio.Task[None]) -> None:
        self._producers.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:  # a bug: log it
            _log.error("relay.producer_crashed", error=redact(repr(exc)))

    async def _produce(self, claim: Claim, source: Observable[Any] | AsyncIterable[Any]) -> None:
        writes = _Writes(self._append, self._renew, self._close, self._abandon)
        producer = _Producer(self, writes, claim, asyncio.current_task())
        self._running[claim.stream_id] = producer
        try:
            terminal = END
            try:
                async with _iterate(source) as items:
                    async for item in items:
                        producer.add(item)
                        await producer.room()
            except asyncio.CancelledError:
                if not producer.take_stop():
                    raise
                producer.add(Finish(STOPPED))  # stop(): a normal end, named as such
            except Abandoned:
                raise
            except Exception as exc:
                terminal = encode_error(exc, text=producer.text(), usage=producer.usage)
                if not isinstance(exc, KaguraError):  # the stream names only its type
                    _log.error(
                        "relay.producer_failed",
                        stream_id=claim.stream_id,
                        error_type=type(exc).__name__,
                        error=redact(str(exc)),
                    )
            await producer.finish(terminal)
        except (asyncio.CancelledError, Abandoned) as exc:
            # Write what was taken in, then release the stream without an end (or, if
            # cancelled while writing the end, let that finish).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    if producer.ended.done():
                        await asyncio.shield(self._abandon(claim))
                    else:
                        await producer.finish(_ABANDON, keep=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
        except RelayError as exc:  # the writer could not reach the backend in time
            _log.warning("relay.producer_lost", stream_id=claim.stream_id, error=str(exc))
        finally:
            producer.stop()
            if self._running.get(claim.stream_id) is producer:
                del self._running[claim.stream_id]

    # -- read --------------------------------------------------------------------------
    def read(
        self,
        stream_id: str,
        *,
        after: str | None = None,
        owner: str | None = None,
        model: type[BaseModel] | None = None,
    ) -> AsyncGenerator[RelayEntry]:
        """The stream's events from the start, or strictly after the event id ``after``.

        Blocks for new events; ends at the producer's end; raises the producer's error
        (the same kagura class, with its ``partial_text`` and ``usage``) at its place;
        raises :class:`~kagura.errors.ProducerLost` when the producer stopped without an
        end, :class:`~kagura.errors.StreamNotFound` for an unknown or expired id or
        another owner's stream, :class:`~kagura.errors.EntriesTrimmed` when events after
        ``after`` are no longer kept. A pydantic model's item arrives as its JSON (a
        dict), or validated as ``model`` if given. The arguments are checked now
        (:class:`~kagura.errors.ConfigError`).
        """
        check_stream_id(stream_id)
        check_owner(owner)
        return self._read(stream_id, parse_after(after), owner, model)

    async def _read(
        self,
        stream_id: str,
        cursor: Cursor | None,
        owner: str | None,
        model: type[BaseModel] | None,
    ) -> AsyncGenerator[RelayEntry]:
        self._check_open()
        watcher = Watcher(stream_id, limit=self._reader_buffer)
        position = -1 if cursor is None else cursor[1]  # the last event handed out
        watcher.cursor = position
        first = True
        self._readers.add(watcher)
        try:
            while True:
                while watcher.buffer:
                    last, events = watcher.buffer.popleft()
                    number = last - len(events)
                    for event in events:
                        number += 1
                        if number <= position:
                            continue
                        position = number
                        kind = event[:1]
                        if kind == START:
                            continue
                        if kind == END:
                            return
                        if kind == ERROR:
                            raise decode_error(event)
                        yield RelayEntry(event_id(watcher.base, number), _decode(event, model))
                if watcher.error is not None:
                    raise watcher.error
                if watcher.live:
                    self._watch_idle()
                    if not await watcher.wait(self._idle_check()):
                        self._unwatch(watcher)  # a check of our own, whatever the backend says
                        watcher.live = False
                    continue
                snapshot = await self._fetch(
                    stream_id,
                    cursor if first else (watcher.base, watcher.cursor),
                    owner=owner,
                    check_owner=first,
                    count=self._fetch_count,
                )
                if first:
                    first = False
                    watcher.base = snapshot.base
                    if cursor is not None and cursor[0] != snapshot.base:
                        raise ConfigError("`after` is not an event id of this stream")
                if snapshot.first > max(watcher.cursor, 0) + 1:
                    raise EntriesTrimmed(
                        "the events after this id are no longer kept (the relay's maxlen)",
                        resume_after=event_id(watcher.base, snapshot.first - 1),
                    )
                if snapshot.entries:
                    watcher.deliver(snapshot.entries)
                    continue
                if snapshot.alive:
                    watcher.live = True
                    self._watch(watcher)
                    continue
                last = await self._last(stream_id)  # ended before the cursor, or lost
                if last is not None and last[1] and last[1][-1][:1] in TERMINAL:
                    watcher.buffer.append((last[0], last[1][-1:]))
                    position = min(position, last[0] - 1)
                    continue
                raise ProducerLost("the stream's producer stopped without an end")
        finally:
            self._unwatch(watcher)
            self._readers.discard(watcher)

    def _idle_check(self) -> float:
        """Seconds a live reader waits before checking the stream itself."""
        return max(10.0, 3 * (self.lease or 0))

    def _watch_idle(self) -> None:
        """Run the task that ends the waits of live readers whose patience ran out."""
        if self._idle_watch is None or self._idle_watch.done():
            self._idle_watch = asyncio.get_running_loop().create_task(
                self._expire_idle(), name="kagura.relay idle readers"
            )

    async def _expire_idle(self) -> None:
        period = min(1.0, self._idle_check() / 4)  # late by at most a quarter of it
        while self._readers:
            await asyncio.sleep(period)
            now = time.monotonic()
            for watcher in list(self._readers):
                watcher.expire_idle(now)

    # -- status and closing ------------------------------------------------------------
    async def status(self, stream_id: str, *, owner: str | None = None) -> StreamStatus:
        """Whether the stream is running, ended, failed, lost, or unknown (to ``owner``)."""
        check_stream_id(stream_id)
        check_owner(owner)
        try:
            snapshot = await self._fetch(stream_id, None, owner=owner, check_owner=True, count=1)
        except StreamNotFound:
            return "unknown"
        if snapshot.alive:
            return "running"
        last = await self._last(stream_id)
        kind = last[1][-1][:1] if last is not None and last[1] else ""
        return "ended" if kind == END else "failed" if kind == ERROR else "lost"

    async def stop(self, stream_id: str, *, owner: str | None = None) -> bool:
        """Ask the stream's producer, in whichever process it runs, to stop early.

        The producer stops reading its source (closing it, and so the LLM request
        behind it) and ends the stream: its readers get the events so far, then a
        :class:`~kagura.Finish` whose reason is ``"stopped"``, then the end. A producer in
        this process stops at once; one in another process when it next renews its lease
        (every third of ``lease``). True if the stream is running (and ``owner``'s);
        False for an unknown, ended or lost stream, or another owner's.
        """
        check_stream_id(stream_id)
        check_owner(owner)
        self._check_open()
        if not await self._request_stop(stream_id, owner):
            return False
        producer = self._running.get(stream_id)
        if producer is not None:
            producer.request_stop()
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise RelayError("the relay is closed")

    async def aclose(self) -> None:
        """Stop this relay's producers (without an end: their readers see ProducerLost)
        and end its readers with :class:`~kagura.errors.RelayError`. Idempotent."""
        self._closed = True
        for watcher in list(self._readers):
            self._unwatch(watcher)
            watcher.fail(RelayError("the relay is closed"))
        idle_watch = self._idle_watch
        if idle_watch is not None and idle_watch.get_loop() is asyncio.get_running_loop():
            idle_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await idle_watch
        producers = list(self._producers)
        for task in producers:
            task.cancel()
        if producers:
            await asyncio.wait(producers, timeout=_CLOSE_TIMEOUT + 1)
        flushes = list(self._flushes)
        for task in flushes:
            task.cancel()
        if flushes:
            await asyncio.wait(flushes, timeout=1)

    # -- the producers' shared writes and renewals ----------------------------------------
    def _append_at(self, producer: _Producer, when: float) -> None:
        """Write ``producer``'s pending events at ``time.monotonic()`` ``when`` (a tick of
        the batch grid), in one exchange with every producer due then."""
        self._due(self._appends_due, when, self._flush_appends).append(producer)

    def _renew_at(self, producer: _Producer, when: float) -> None:
        """Renew ``producer``'s lease at ``when`` or a little later (on a grid of a 32nd of
        the renewal period: the producers due together renew in one exchange)."""
        when = math.ceil(when / self._renew_grid) * self._renew_grid
        self._due(self._renewals_due, when, self._flush_renewals).append(producer)

    def _due(
        self,
        table: dict[float, list[_Producer]],
        when: float,
        flush: Callable[[float], None],
    ) -> list[_Producer]:
        """The producers due at ``when`` in ``table``: one timer for all of them (a timer, a
        future and a task step for each producer and chunk cost a 1000-stream producer more
        than its appends). A time already past is due at the next loop turn."""
        loop = asyncio.get_running_loop()
        if when <= loop.time():  # the loop's clock is time.monotonic()
            when = 0.0
        due = table.get(when)
        if due is None:
            due = table[when] = []
            loop.call_at(when, flush, when)
        return due

    def _flush_appends(self, when: float) -> None:
        batch = [(p, entries) for p in self._appends_due.pop(when, ()) if (entries := p.take())]
        if batch:
            self._flush(self._write_due(batch))

    def _flush_renewals(self, when: float) -> None:
        due = [p for p in self._renewals_due.pop(when, ()) if p.renews]
        if due:
            self._flush(self._renew_due(due))

    def _flush(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="kagura.relay writes")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _write_due(self, batch: list[tuple[_Producer, list[Entry]]]) -> None:
        results: Sequence[bool | BaseException]
        try:
            results = await self._append_many([(p.claim, entries) for p, entries in batch])
        except asyncio.CancelledError:
            for producer, entries in batch:
                producer.written(entries, RelayError("the relay is closed"))
            raise
        except Exception as exc:  # the exchange failed: every stream's write did
            results = [exc] * len(batch)
        for (producer, entries), result in zip(batch, results, strict=True):
            producer.written(entries, result)

    async def _renew_due(self, due: list[_Producer]) -> None:
        results: Sequence[Renewal | Exception]
        try:
            results = await self._renew_many([p.claim for p in due])
        except Exception as exc:
            results = [exc] * len(due)
        for producer, result in zip(due, results, strict=True):
            producer.renewed(result)

    async def __aenter__(self) -> RelayBase:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _decode(event: str, model: type[BaseModel] | None) -> Any:
    try:
        return decode_event(event, model)
    except (RelayError, ParseError):
        raise
    except (ValueError, TypeError) as exc:  # not what a producer writes
        raise RelayError("a relay entry could not be read") from exc


def check_ttl(ttl: object) -> float:
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= _MAX_TTL
    ):
        raise ConfigError("ttl is a number of seconds, more than 0 and at most a year")
    return float(ttl)


@contextlib.asynccontextmanager
async def _iterate(
    source: Observable[Any] | AsyncIterable[Any],
) -> AsyncGenerator[AsyncIterator[Any]]:
    """``source`` as an async iterator, closed (``aclose``) on the way out."""
    if isinstance(source, Observable):
        from kagura.pipes import to_async_iterator

        iterator: AsyncIterator[Any] = to_async_iterator(source)
    else:
        iterator = aiter(source)
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _each(
    items: Iterable[_T], attempt: Callable[[_T], Awaitable[_R]]
) -> list[_R | Exception]:
    """``attempt(item)`` for each item in turn: its result, or the error it raised."""
    results: list[_R | Exception] = []
    for item in items:
        try:
            results.append(await attempt(item))
        except Exception as exc:
            results.append(exc)
    return results


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: the producer reports it (or is cancelled)."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class _Writes:
    """A backend's write primitives, as the producer calls them on its own."""

    append: Callable[[Claim, list[Entry]], Awaitable[bool]]
    renew: Callable[[Claim], Awaitable[Renewal]]
    close: Callable[[Claim, list[Entry]], Awaitable[None]]
    abandon: Callable[[Claim], Awaitable[None]]


class _Producer:
    """One stream's producer: its events batched into entries and written in order, its
    lease renewed.

    The writes go in its relay's shared exchanges (:meth:`RelayBase._append_at`: one per
    tick of the batch grid for every producer with something to send), and so do the
    renewals; a producer has a task of its own only to retry after a failure and to write
    its end. :attr:`ended` is done when it writes no more: its end written, or a failure.
    """

    _HIGH_WATER: Final = 4096  # events waiting before the source is made to wait
    _MAX_EVENTS: Final = 512  # events per entry
    _MAX_BYTES: Final = 64 * 1024  # characters per entry, about

    def __init__(
        self, relay: RelayBase, writes: _Writes, claim: Claim, task: asyncio.Task[Any] | None
    ) -> None:
        self._relay = relay
        self._writes = writes
        self.claim = claim
        self._task = task  # cancelled when the lease is lost
        self._pending: list[str] = []
        self._since = 0.0  # when the oldest pending event arrived
        self._number = 0  # the number of the last event given one (0: the start marker)
        self._text: list[str] = []
        self.usage: Usage | None = None
        self._writing = False  # entries on their way: in a shared exchange, a retry, the end
        self._helper: asyncio.Task[None] | None = None  # a retried write, or the end
        self._renewing: asyncio.Task[None] | None = None  # a retried renewal
        self._room = asyncio.Event()
        self._room.set()
        self._final: str | None = None
        self._stopping = False
        self._deadline = time.monotonic() + (relay.lease or math.inf)
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended.add_done_callback(_retrieved)
        self.renews = relay.lease is not None  # while True, it is in the relay's renewals
        if relay.lease is not None:
            # Each stream at its own phase of the period (a hash of its id): renewals go a
            # few at a time. (All at one instant, 1000 streams' renewals stalled the
            # producer's loop for tens of milliseconds, every period.)
            self._period = relay.lease / 3
            self._phase = zlib.crc32(claim.stream_id.encode()) / 2**32 * self._period
            self._renew_later()

    def add(self, item: object) -> None:
        event = encode_item(item)
        if isinstance(item, str):
            self._text.append(item)
        elif isinstance(item, TextDelta):
            self._text.append(item.text)
        elif isinstance(item, Usage):
            self.usage = item
        if not self._pending:
            self._since = time.monotonic()
            if not self._writing and self._final is None:
                self._relay._append_at(self, self._tick_of(self._since))  # pyright: ignore[reportPrivateUsage]
        self._pending.append(event)
        if len(self._pending) >= self._HIGH_WATER:
            self._room.clear()

    def text(self) -> str:
        return "".join(self._text)

    async def room(self) -> None:
        """Wait while too many events wait for the backend (a slow backend slows the source);
        raise the failure that ended the writes."""
        if not self._room.is_set():
            await self._room.wait()  # (set again when the writes end)
        if self.ended.done():
            self.ended.result()

    async def finish(self, terminal: str, *, keep: bool = False) -> None:
        """Append what is pending and ``terminal``, then release the stream (``_ABANDON``:
        without an end). ``keep``: a terminal already set stays."""
        if self._final is None or not keep:
            self._final = terminal
        if not self._writing and not self.ended.done():
            self._write_end()
        await asyncio.shield(self.ended)

    def request_stop(self) -> None:
        """Interrupt the source (see :meth:`RelayBase.stop`); nothing once it is ending."""
        if self._final is None and not self._stopping and self._task is not None:
            self._stopping = True
            self._task.cancel()

    def take_stop(self) -> bool:
        """Whether the cancellation at hand is :meth:`request_stop`'s alone; if so it is
        undone, and the producer ends the stream normally."""
        return self._stopping and self._task is not None and self._task.uncancel() == 0

    def stop(self) -> None:
        self.renews = False
        for task in (self._helper, self._renewing):
            if task is not None:
                task.cancel()
        self._end(asyncio.CancelledError())

    # -- writes ------------------------------------------------------------------------
    def take(self) -> list[Entry] | None:
        """The pending events as entries, now on their way in a shared exchange (None if
        there are none, or the producer writes already or is ending)."""
        if self._writing or self._final is not None or self.ended.done() or not self._pending:
            return None
        events, self._pending = self._pending, []
        self._room.set()
        self._writing = True
        return self._entries(events)

    def written(self, entries: list[Entry], result: bool | BaseException) -> None:
        """What became of the entries :meth:`take` gave (or a retry wrote)."""
        if self.ended.done():
            return
        if result is True:
            self._writing = False
            if self._final is not None:
                self._write_end()
            elif self._pending:
                self._relay._append_at(self, self._tick_of(self._since))  # pyright: ignore[reportPrivateUsage]
        elif result is False:
            self._lost("the stream is gone from the relay")
            self._end()
        elif isinstance(result, RelayUnavailable):
            self._helper = self._start(self._retry_append(entries, result))
        else:
            self._end(result)

    async def _retry_append(self, entries: list[Entry], error: RelayUnavailable) -> None:
        append = functools.partial(self._writes.append, self.claim, entries)
        self.written(entries, await self._retrying(append, error=error))

    def _write_end(self) -> None:
        self._writing = True
        self._helper = self._start(self._ending())

    async def _ending(self) -> None:
        events, self._pending = self._pending, []
        self._room.set()
        if self._final == _ABANDON:
            if events:
                entries = self._entries(events)
                await self._retrying(functools.partial(self._writes.append, self.claim, entries))
            await self._retrying(functools.partial(self._writes.abandon, self.claim))
        else:
            entries = self._entries([*events, cast(str, self._final)])
            await self._retrying(functools.partial(self._writes.close, self.claim, entries))
        self._end()

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(self._helper_done)
        return task

    def _helper_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._end(asyncio.CancelledError())
        elif (exc := task.exception()) is not None:
            self._end(exc)

    def _end(self, error: BaseException | None = None) -> None:
        """No more writes: ``error`` (if any) is what :meth:`room` and :meth:`finish` raise."""
        if self.ended.done():
            return
        if error is None:
            self.ended.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            self.ended.cancel()
        else:
            self.ended.set_exception(error)
        self._room.set()

    def _entries(self, events: list[str]) -> list[Entry]:
        entries: list[Entry] = []
        start = 0
        size = 0
        for i, event in enumerate(events):
            size += len(event)
            if i + 1 - start >= self._MAX_EVENTS or size >= self._MAX_BYTES or i + 1 == len(events):
                chunk = tuple(events[start : i + 1])
                self._number += len(chunk)
                entries.append((self._number, chunk))
                start, size = i + 1, 0
        return entries

    def _tick_of(self, since: float) -> float:
        """When a batch begun at ``since`` closes: the next tick of a grid of
        ``batch_window`` seconds shared by every producer of the process (at most the window
        after its oldest event, at least the end of this loop turn), so that the producers
        with something to send send together, in one exchange."""
        window = self._relay.batch_window
        return (since // window + 1) * window if window > 0 else since

    # -- the lease -----------------------------------------------------------------------
    def _renew_later(self) -> None:
        now = time.monotonic()
        self._relay._renew_at(self, now + (self._phase - now) % self._period)  # pyright: ignore[reportPrivateUsage]

    def renewed(self, renewal: Renewal | BaseException) -> None:
        """What the relay's shared renewal (or a retry) got for this producer's lease."""
        if not self.renews:
            return
        if isinstance(renewal, RelayUnavailable):
            self._renewing = asyncio.get_running_loop().create_task(self._retry_renewal(renewal))
            self._renewing.add_done_callback(_retrieved)
            return
        if isinstance(renewal, BaseException):  # not an outage: a bug, or a broken server
            self.renews = False
            _log.error(
                "relay.renew_failed", stream_id=self.claim.stream_id, error=redact(repr(renewal))
            )
            return
        self._deadline = time.monotonic() + self._period * 3
        if renewal == "lost":
            self.renews = False
            self._lost("the producer's lease was taken or expired")
            return
        if renewal == "stop":
            self.request_stop()
        self._renew_later()

    async def _retry_renewal(self, error: RelayUnavailable) -> None:
        renew = functools.partial(self._writes.renew, self.claim)
        self.renewed(await self._retrying(renew, renews=True, error=error))

    async def _retrying(
        self,
        attempt: Callable[[], Awaitable[_R]],
        *,
        renews: bool = False,
        error: RelayUnavailable | None = None,
    ) -> _R:
        """Run ``attempt()`` until it succeeds or the lease lapses (RelayUnavailable); after
        ``error`` (an attempt that just failed), only after a pause."""
        delay = 0.05
        while True:
            if error is not None:
                if time.monotonic() + delay >= self._deadline:
                    self._lost("the relay's server did not answer within the lease")
                    raise error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            try:
                result = await attempt()
            except RelayUnavailable as exc:
                error = exc
                continue
            if renews and self._relay.lease is not None:
                self._deadline = time.monotonic() + self._relay.lease
            return result

    def _lost(self, reason: str) -> None:
        if self._final is not None:  # ending anyway: the end released the lease
            return
        _log.warning("relay.lease_lost", stream_id=self.claim.stream_id, reason=reason)
        if self._task is not None:
            self._task.cancel()
