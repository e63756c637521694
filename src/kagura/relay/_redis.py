"""RedisRelay: relay streams on Redis Streams, shared by every process that reaches the server.

Keys of one stream share a hash tag, its shard's (``kagura:{<tag>}:<id>:entries``,
``:lease``, ``:meta``), so every command and script of a stream stays on one Cluster slot.
A stream's shard is a hash of its id; the shards' tags lie evenly over the 16384 slots.
Entries are written with explicit ids (the id of their last event), so a retried append
is harmless. The producers of one relay send their appends and renewals together, each
tick of ``batch_window``, on a connection of their own (on a Cluster, through the pool).
Each exchange of appends also rings a bell (a short stream naming the streams written, with
the entry just written when it is small: ``kagura:bell``; on a Cluster, the shard's
``kagura:{<tag>}:bell``). Readers of one relay share one connection that blocks on the
bells of the streams they read (on a Cluster, where one command reaches one slot, one
connection per shard being read), takes the entries they carry and reads only the streams
rung without one; and a bounded pool for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import time
import zlib
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, cast

import structlog

from kagura._redact import redact, redact_url, remember_secret, secrets_in_url
from kagura.errors import ConfigError, RelayUnavailable, StreamNotFound
from kagura.relay._base import Claim, Entry, RelayBase, Renewal, Snapshot, Watcher
from kagura.relay._entry import START, Cursor, owner_digest, pack, same_owner, unpack
from kagura.relay._packing import hiredis_packing
from kagura.relay._pipeline import BELL_MAXLEN as _BELL_MAXLEN
from kagura.relay._pipeline import AutoPipeline, PipelinedConnection

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["RedisRelay"]

_log = structlog.get_logger("kagura.relay")
_T = TypeVar("_T")

_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_NOT_FOUND: Final = "no such stream"
_FIELD: Final = "d"
_FOLLOW_COUNT: Final = 256  # entries per stream per XREAD
_BELL_COUNT: Final = 1024  # bell entries per XREAD
_FOLLOW_DIRECTLY: Final = 32  # streams a loop blocks on directly; beyond, on their bells
_RING_BYTES: Final = 1024  # an entry bigger than this is not carried by the bell
_READ_KEYS: Final = 64  # streams per non-blocking XREAD of the follow loop
_SLOTS: Final = 16384  # a Redis Cluster's hash slots
_RENEWALS: Final[dict[int, Renewal]] = {1: "held", 2: "stop"}  # _RENEW's replies; else lost
_MAX_SHARDS: Final = 256
_TRANSPORT_MODULES: Final = ("asyncio.selector_events", "asyncio.sslproto")

# KEYS: meta, lease, entries, stop, bell (every script gets all five; each uses its own).
# A bell lives as long as the longest-kept stream that rang it (Redis 6.2 has no
# PEXPIRE GT): set by the claim, renewals and the close.
_KEEP_BELL: Final = f"""
local BELL_MAXLEN = {_BELL_MAXLEN}
local function keep_bell(ms)
  local left = redis.call('PTTL', KEYS[5])
  if left == -1 or (left >= 0 and left < tonumber(ms)) then
    redis.call('PEXPIRE', KEYS[5], ms)
  end
end
"""
# ARGV: owner, token, lease ms, keep ms, start id, start entry.
_CLAIM: Final = (
    _KEEP_BELL
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('XADD', KEYS[3], ARGV[5], 'd', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', BELL_MAXLEN, '*', KEYS[3], '')
keep_bell(ARGV[4])
return 1
"""
)
# ARGV: token, lease ms, keep ms. 2: renewed, and a stop is requested.
_RENEW: Final = (
    _KEEP_BELL
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
keep_bell(ARGV[3])
if redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
return 1
"""
)
# ARGV: how long the request is kept (ms).
_STOP: Final = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
return 1
"""
# ARGV: token, keep ms, maxlen, then (last event number, id, entry) for each entry.
_CLOSE: Final = (
    _KEEP_BELL
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #top == 0 then return 0 end
local written = tonumber(string.match(top[1][1], '-(%d+)$'))
for i = 4, #ARGV, 3 do
  if tonumber(ARGV[i]) > written then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], ARGV[i + 1], 'd', ARGV[i + 2])
  end
end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', BELL_MAXLEN, '*', KEYS[3], '')
keep_bell(ARGV[2])
return 1
"""
)
# ARGV: token, keep ms.
_ABANDON: Final = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1
"""


class _Keys(NamedTuple):
    meta: str
    lease: str
    entries: str
    stop: str
    bell: str  # where appends say which streams got entries (see _Follower)


class RedisRelay(RelayBase):
    """Relay streams on a Redis server or Redis Cluster (Redis Streams; Redis 6.2 or later).

    Args:
        url: the server, as redis-py reads it (``redis://[:password@]host:port/db``,
            ``rediss://`` for TLS, ``unix://``); with ``cluster``, any node of the Cluster
            (the others are found from it).
        cluster: the URL is a node of a Redis Cluster.
        prefix: the first part of every key (``<prefix>:{<tag>}:<stream id>:entries``...).
        shards: how many hash tags the streams are spread over (1 to 256): on a Cluster,
            the slots (and so the nodes) that share the streams, and at most how many
            follow connections the readers of one relay use. Every process of a service
            must use the same ``prefix`` and ``shards``.
        maxlen: entries kept per stream while it runs (``MAXLEN ~``; an entry holds the
            events of one batch). A reader asking for older ones gets EntriesTrimmed.
        batch_window: seconds a producer gathers events into one entry (one ``XADD``).
        lease: seconds a producer's hold lasts unless renewed (it renews every third of
            it); readers see ProducerLost about this long after a producer dies.
        timeout: seconds allowed for any one exchange with the server, a free connection
            included; readers retry that long before RelayUnavailable.
        max_connections: the pool's bound (on a Cluster, per node); the readers' follow
            loop has one more (on a Cluster, one per shard being read).

    Example:
        >>> RedisRelay("redis://:hunter2@localhost:6379/0", shards=32)
        RedisRelay('redis://:[REDACTED]@localhost:6379/0', prefix='kagura', shards=32, maxlen=10000)
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        cluster: bool = False,
        prefix: str = "kagura",
        shards: int = 16,
        maxlen: int = 10_000,
        batch_window: float = 0.002,
        lease: float = 4.0,
        timeout: float = 5.0,
        max_connections: int = 10,
    ) -> None:
        super().__init__(maxlen=maxlen, batch_window=batch_window, lease=lease, timeout=timeout)
        try:
            from redis.asyncio import BlockingConnectionPool, ConnectionPool
            from redis.asyncio import Redis as Client
            from redis.asyncio.connection import Connection, parse_url
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # pragma: no cover - exercised with the module hidden
            raise ImportError("RedisRelay needs redis-py: pip install 'kagura[relay]'") from exc
        if _PREFIX.fullmatch(prefix) is None:
            raise ConfigError("prefix is 1 to 64 characters of A-Z, a-z, 0-9 and _ . : -")
        if type(shards) is not int or not 1 <= shards <= _MAX_SHARDS:
            raise ConfigError(f"shards is an int from 1 to {_MAX_SHARDS}")
        if not 1 <= max_connections <= 1000:
            raise ConfigError("max_connections is an int from 1 to 1000")
        for secret in secrets_in_url(url):
            remember_secret(secret)
        self._url = redact_url(url)
        self._prefix = prefix
        self._shards = shards
        self._cluster = bool(cluster)
        self._lease_ms = round(lease * 1000)
        # No retries inside redis-py: a claim retried after its reply was lost would
        # report its own stream as taken. kagura retries where that is safe. No
        # socket_timeout either: redis-py then writes under asyncio.wait_for, which on
        # Python 3.11 loses a cancellation that arrives as the write completes (a reader
        # cancelled there would go on reading); _guard bounds every exchange instead.
        # These settings win over the URL's query (redis-py lets the query win).
        settings: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": None,
            "retry": Retry(NoBackoff(), 0),
            "protocol": 2,  # the reply shapes parsed below (RESP3 would give dicts)
        }
        try:
            options: dict[str, Any] = {**parse_url(url), **settings}
        except ValueError as exc:
            raise ConfigError(redact(f"not a Redis URL: {exc}")) from None
        for name in ("max_connections", "timeout"):  # the relay's own bounds
            options.pop(name, None)
        self._in_use: asyncio.Semaphore | None = None
        self._batch: AutoPipeline | PipelinedConnection
        self._client: Redis | RedisCluster
        follow_client: Redis | RedisCluster
        if self._cluster:
            # redis-py's Cluster client fails at once when a node's pool is used up, so the
            # relay bounds how many exchanges it has under way: each needs at most one
            # connection per node. The follow loops (one per shard) get a client of their own.
            self._in_use = asyncio.Semaphore(max_connections)
            self._client = _cluster_client(options, max_connections)
            follow_client = _cluster_client(options, shards)
        else:
            if options.get("encoding", "utf-8") in ("utf-8", "utf8") and (
                options.get("encoding_errors", "strict") == "strict"
            ):  # (redis-py's Cluster client takes no connection class: it packs in Python)
                base = options.get("connection_class", Connection)
                options["connection_class"] = hiredis_packing(base)
            pool = BlockingConnectionPool(
                max_connections=max_connections, timeout=timeout, **options
            )
            self._client = Client(connection_pool=pool)
            follow_client = Client(connection_pool=ConnectionPool(max_connections=1, **options))
            # The producers' appends and renewals: on a connection of their own, each
            # exchange at once (not one at a time, nor each through the pool).
            self._batch = PipelinedConnection(
                ConnectionPool(**options).make_connection,
                functools.partial(self._guard, bounded=False),
                timeout=2 * self.timeout,
            )
        self._follow_client = follow_client
        self._discovered = not self._cluster  # see _discover
        self._discovery = asyncio.Lock()
        self._claim_script: AsyncScript = self._client.register_script(_CLAIM)
        self._renew_script: AsyncScript = self._client.register_script(_RENEW)
        self._close_script: AsyncScript = self._client.register_script(_CLOSE)
        self._abandon_script: AsyncScript = self._client.register_script(_ABANDON)
        self._stop_script: AsyncScript = self._client.register_script(_STOP)
        self._followers: dict[int, _Follower] = {}
        self._wake_token = secrets.token_hex(8)
        if self._cluster:  # producers' appends and renewals, many streams' per round trip
            self._batch = AutoPipeline(self._client, self._pooled)

    def __repr__(self) -> str:
        cluster = ", cluster=True" if self._cluster else ""
        return (
            f"RedisRelay({self._url!r}{cluster}, prefix={self._prefix!r}, "
            f"shards={self._shards}, maxlen={self.maxlen})"
        )

    def _shard(self, stream_id: str) -> int:
        return _shard_of(stream_id, self._shards)

    def _keys(self, stream_id: str) -> _Keys:
        return _stream_keys(self._prefix, self._shards, stream_id, self._cluster)

    def _follower(self, stream_id: str) -> _Follower:
        """The loop that follows this stream: one for all, or (Cluster) its shard's."""
        shard = self._shard(stream_id) if self._cluster else 0
        follower = self._followers.get(shard)
        if follower is None:
            if self._cluster:
                wake_key = f"{self._prefix}:{{{shard_tag(shard, self._shards)}}}:wake:"
            else:
                wake_key = f"{self._prefix}:wake:"
            follower = self._followers[shard] = _Follower(
                self._follow_client,
                self._client,
                guard=self._guard,
                pool_guard=self._pooled,
                wake_key=wake_key + self._wake_token,
                interval=max(0.05, min(1.0, (self.lease or 4.0) / 8)),
            )
        return follower

    def _keep_ms(self, ttl: float) -> int:
        return round(ttl * 1000)

    @contextlib.asynccontextmanager
    async def _guard(self, *, bounded: bool = True) -> AsyncGenerator[None]:
        """Any failure to reach the server, or a late answer, as RelayUnavailable; a server
        of the other kind (Cluster or not) than ``cluster`` says, as ConfigError.
        ``bounded=False``: no time limit of its own (the caller has one: a timer per
        exchange cost a busy producer more than the exchange)."""
        from redis.exceptions import (
            AskError,
            ClusterCrossSlotError,
            ClusterError,
            RedisClusterException,
            SlotNotCoveredError,
            TryAgainError,
        )
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        unreachable = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
        try:
            async with asyncio.timeout(2 * self.timeout if bounded else None):
                if not self._discovered:
                    await self._discover()
                yield
        except (
            *unreachable,
            ClusterError,  # a Cluster that is down, or failing over
            TryAgainError,  # or moving slots
            SlotNotCoveredError,
        ) as exc:
            raise RelayUnavailable(
                redact(f"the relay's Redis server did not answer: {exc}")
            ) from None
        except (AskError, ClusterCrossSlotError):
            # MOVED or ASK: only a client that is not a Cluster client sees it; CROSSSLOT
            # too (one server's bell has no hash tag).
            if self._cluster:
                raise
            raise ConfigError(
                f"{self._url} is a Redis Cluster node: use RedisRelay(url, cluster=True)"
            ) from None
        except RedisClusterException as exc:
            cause = exc.__cause__
            if isinstance(cause, RedisClusterException) and "not enabled" in str(cause):
                raise ConfigError(
                    f"cluster=True, but {self._url} is not a Redis Cluster node"
                ) from None
            if isinstance(cause, unreachable) or "not covered" in str(exc):
                raise RelayUnavailable(
                    redact(f"the relay's Redis Cluster did not answer: {exc}")
                ) from None
            raise  # anything else is a bug (a command over several slots): say so
        except (TypeError, AttributeError) as exc:
            if not _closed_transport_write(exc):
                raise
            raise RelayUnavailable(
                "the relay's Redis server closed the connection while a command was sent"
            ) from None

    async def _discover(self) -> None:
        """Let each Cluster client find the Cluster's nodes once, before any command.

        A fresh redis-py Cluster client finds them on its first command; when many tasks
        sent their first commands at once (a follow loop per shard), connections opened
        meanwhile were reset and the loops failed once, all of them, at startup.
        """
        from redis.asyncio.cluster import RedisCluster

        async with self._discovery:
            if not self._discovered:
                for client in (self._client, self._follow_client):
                    if isinstance(client, RedisCluster):
                        await client.initialize()
                self._discovered = True

    @contextlib.asynccontextmanager
    async def _pooled(self) -> AsyncGenerator[None]:
        """:meth:`_guard` around an exchange on the pool (on a Cluster, once one is free)."""
        async with self._guard():
            if self._in_use is None:
                yield
            else:
                async with self._in_use:
                    yield

    async def _call(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()`` under :meth:`_guard`, retried for ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                async with self._pooled():
                    return await attempt()
            except RelayUnavailable:
                if self._closed or time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(2 * delay, 0.5)

    # -- producer side -----------------------------------------------------------------
    async def _claim(self, stream_id: str, owner: str | None, ttl: float) -> Claim | None:
        keys = self._keys(stream_id)
        claim = Claim(stream_id, time.time_ns() // 1_000_000, secrets.token_hex(16), ttl)
        async with self._pooled():
            taken = await self._claim_script(
                keys=list(keys),
                args=[
                    owner_digest(owner),
                    claim.token,
                    self._lease_ms,
                    self._keep_ms(ttl) + self._lease_ms,
                    f"{claim.base}-0",
                    pack([START]),
                ],
            )
        return claim if taken == 1 else None

    async def _append(self, claim: Claim, entries: list[Entry]) -> bool:
        [written] = await self._append_many([(claim, entries)])
        if isinstance(written, Exception):
            raise written
        return written

    async def _append_many(
        self, batch: Sequence[tuple[Claim, list[Entry]]]
    ) -> list[bool | Exception]:
        # One exchange for every producer of the tick, each ringing its shard's bell.
        commands: list[tuple[Any, ...]] = []
        rings: list[tuple[str, str, bytes]] = []
        for claim, entries in batch:
            keys = self._keys(claim.stream_id)
            written = [(f"{claim.base}-{last}", pack(events)) for last, events in entries]
            commands += [self._xadd(keys.entries, id_, payload) for id_, payload in written]
            # The bell carries the entry itself (most often there is one): a reader that
            # follows the bell has it without reading the stream.
            ring = b""
            if len(written) == 1 and len(written[0][1]) <= _RING_BYTES:
                ring = f"{written[0][0]}\n".encode() + written[0][1]
            rings.append((keys.bell, keys.entries, ring))
        replies = await self._batch.send(commands, rings=rings)
        results: list[bool | Exception] = []
        start = 0
        for _, entries in batch:
            mine = replies[start : start + len(entries)]
            start += len(entries)
            try:
                results.append(await self._appended(mine))
            except Exception as exc:  # this stream's: the others' go on
                results.append(exc)
        return results

    async def _appended(self, replies: list[Any]) -> bool:
        """Whether a stream's XADDs were written; raises what a failed one says."""
        from redis.exceptions import ResponseError

        if (error := _reply_error(replies)) is not None:
            async with self._guard():
                raise error
        for reply in replies:
            if reply is None:
                return False  # the stream expired or the server lost it
            if isinstance(reply, ResponseError) and "equal or smaller" not in str(reply):
                raise reply  # "equal or smaller": written by an attempt whose reply was lost
        return True

    def _xadd(self, key: str, entry_id: str, payload: bytes) -> tuple[Any, ...]:
        """An entry's XADD: never recreating an expired stream, trimming to ``maxlen``."""
        return ("XADD", key, "NOMKSTREAM", "MAXLEN", "~", self.maxlen, entry_id, _FIELD, payload)

    async def _renew(self, claim: Claim) -> Renewal:
        [renewal] = await self._renew_many([claim])
        if isinstance(renewal, Exception):
            raise renewal
        return renewal

    async def _renew_many(self, claims: Sequence[Claim]) -> list[Renewal | Exception]:
        scripts = [
            (
                self._keys(claim.stream_id),
                (claim.token, self._lease_ms, self._keep_ms(claim.ttl) + self._lease_ms),
            )
            for claim in claims
        ]
        replies = await self._batched_scripts(self._renew_script, scripts)
        return [
            reply if isinstance(reply, Exception) else _RENEWALS.get(reply, "lost")
            for reply in replies
        ]

    async def _batched_script(self, script: AsyncScript, keys: _Keys, args: tuple[Any, ...]) -> Any:
        """``script``'s reply, run in the producers' shared exchanges."""
        [reply] = await self._batched_scripts(script, [(keys, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _batched_scripts(
        self, script: AsyncScript, calls: Sequence[tuple[_Keys, tuple[Any, ...]]]
    ) -> list[Any]:
        """``script``'s reply to each of ``calls``, or the error it met, run in the
        producers' shared exchanges (as ``EVALSHA``; loaded once again on a server that lost
        it, such as a restarted one)."""
        from redis.exceptions import NoScriptError

        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        replies = await self._batch.send(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            if isinstance(self._batch, PipelinedConnection):  # on the producers' connection
                [loaded] = await self._batch.send([("SCRIPT", "LOAD", script.script)])
                if isinstance(loaded, Exception):
                    raise loaded
            else:  # (a Cluster loads it on every node)
                async with self._pooled():
                    await self._client.script_load(script.script)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            resent = await self._batch.send([commands[i] for i in again])
            for i, reply in zip(again, resent, strict=True):
                replies[i] = reply
        results: list[Any] = []
        for reply in replies:
            try:
                if (error := _reply_error([reply])) is not None:
                    async with self._guard():
                        raise error
            except Exception as exc:
                reply = exc
            results.append(reply)
        return results

    async def _request_stop(self, stream_id: str, owner: str | None) -> bool:
        keys = self._keys(stream_id)

        async def attempt() -> bool:
            meta = await self._client.get(keys.meta)
            if not isinstance(meta, bytes) or not same_owner(meta.decode(), owner):
                return False
            # Kept long enough for a producer that renews every lease/3 to see it.
            stopped = await self._stop_script(keys=list(keys), args=[3 * self._lease_ms + 1000])
            return stopped == 1

        return await self._call(attempt)

    async def _close(self, claim: Claim, entries: list[Entry]) -> None:
        keys = self._keys(claim.stream_id)
        args: list[Any] = [claim.token, self._keep_ms(claim.ttl), self.maxlen]
        for last, events in entries:
            args += [last, f"{claim.base}-{last}", pack(events)]
        # With the appends (a stream's last chunk goes with its end: 1000 streams ending
        # together once waited on the pool, up to half a second).
        await self._batched_script(self._close_script, keys, tuple(args))

    async def _abandon(self, claim: Claim) -> None:
        keys = self._keys(claim.stream_id)
        async with self._pooled():
            await self._abandon_script(
                keys=list(keys), args=[claim.token, self._keep_ms(claim.ttl)]
            )

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
        keys = self._keys(stream_id)
        start = "-" if cursor is None else f"({cursor[0]}-{cursor[1]}"

        async def attempt() -> list[Any]:
            # The lease first: a producer writes its end before it releases the lease,
            # so "no lease" here means the entries below include any end.
            pipe = self._client.pipeline(transaction=False)
            if check_owner:
                pipe.get(keys.meta)
            pipe.exists(keys.lease)
            pipe.xrange(keys.entries, "-", "+", count=1)
            pipe.xrange(keys.entries, start, "+", count=count)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if (error := _reply_error(results)) is not None:
                raise error
            return results

        results = await self._call(attempt)
        if check_owner:
            meta = results.pop(0)
            if not isinstance(meta, bytes) or not same_owner(meta.decode(), owner):
                raise StreamNotFound(_NOT_FOUND)
        alive, first, entries = results
        if not first or isinstance(first, Exception):
            raise StreamNotFound(_NOT_FOUND)
        base, number = _parse_id(first[0][0])
        first_events = unpack(first[0][1][_FIELD.encode()])
        return Snapshot(
            base=base,
            first=number - len(first_events) + 1,
            alive=alive == 1,
            entries=[] if isinstance(entries, Exception) else _entries(entries),
        )

    async def _last(self, stream_id: str) -> Entry | None:
        keys = self._keys(stream_id)

        async def attempt() -> list[Any]:
            return cast(list[Any], await self._client.xrevrange(keys.entries, "+", "-", count=1))

        found = await self._call(attempt)
        return _entries(found)[0] if found else None

    def _watch(self, watcher: Watcher) -> None:
        keys = self._keys(watcher.stream_id)
        self._follower(watcher.stream_id).add(watcher, keys.entries, keys.bell)

    def _unwatch(self, watcher: Watcher) -> None:
        shard = self._shard(watcher.stream_id) if self._cluster else 0
        follower = self._followers.get(shard)
        if follower is not None:
            follower.remove(watcher, self._keys(watcher.stream_id).entries)

    async def aclose(self) -> None:
        """Stop this relay's producers and readers, then close its connections."""
        from redis.asyncio import Redis as Client

        async def close_client(client: Redis | RedisCluster) -> None:
            await client.aclose()
            if isinstance(client, Client):
                await client.connection_pool.disconnect()

        # Each step runs even if one before it fails: no connection is left open.
        async with contextlib.AsyncExitStack() as steps:
            for client in (self._client, self._follow_client):  # (run last to first)
                steps.push_async_callback(close_client, client)
            for follower in list(self._followers.values()):
                steps.push_async_callback(follower.aclose)
            steps.push_async_callback(self._batch.aclose)
            await super().aclose()


def _shard_of(stream_id: str, shards: int) -> int:
    """A stream's shard: the same in every process (CRC-32, not Python's salted hash)."""
    return zlib.crc32(stream_id.encode()) % shards


@functools.lru_cache(maxsize=4096)  # a producer appends and renews often: once per stream
def _stream_keys(prefix: str, shards: int, stream_id: str, cluster: bool) -> _Keys:
    """A stream's keys. The bell is its shard's on a Cluster (a script reaches one slot),
    and one for all on a single server (an exchange then rings one bell, not one per shard).
    """
    shard = f"{prefix}:{{{shard_tag(_shard_of(stream_id, shards), shards)}}}:"
    tag = f"{shard}{stream_id}:"
    bell = shard + "bell" if cluster else f"{prefix}:bell"
    return _Keys(tag + "meta", tag + "lease", tag + "entries", tag + "stop", bell)


@functools.cache
def shard_tag(shard: int, shards: int) -> str:
    """The hash tag of a shard: a string whose Cluster slot lies in the shard's even share
    of the 16384 slots, so that the shards spread over a Cluster's nodes as its slots do.

    >>> shard_tag(0, 2), shard_tag(1, 2)
    ('0.0', '1.0')
    """
    from redis.crc import key_slot

    low, high = shard * _SLOTS // shards, (shard + 1) * _SLOTS // shards
    n = 0
    while not low <= key_slot(f"{shard}.{n}".encode()) < high:
        n += 1
    return f"{shard}.{n}"


def _cluster_client(options: dict[str, Any], max_connections: int) -> RedisCluster:
    """A Redis Cluster client from parsed URL options (any node; the rest are found)."""
    from redis.asyncio.cluster import RedisCluster

    if options.get("path") is not None:
        raise ConfigError("a Redis Cluster is reached over TCP (redis:// or rediss://)")
    if options.get("db", 0) != 0:
        raise ConfigError("a Redis Cluster has only database 0")
    from redis.asyncio.connection import SSLConnection

    options = dict(options)
    options.pop("db", None)
    if options.pop("connection_class", None) is SSLConnection:  # rediss://, as from_url does
        options["ssl"] = True
    return RedisCluster(max_connections=max_connections, **options)


def _closed_transport_write(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's socket transport refusing a write after it closed.

    On CPython 3.12 and 3.13 (python/cpython#136234) ``writelines`` on a transport that
    was closed raises ``TypeError`` (or ``AttributeError``) instead of dropping the data;
    redis-py passes it on after disconnecting (redis/redis-py#3546). Seen when a Cluster
    node dies under a blocking read. Only that frame counts: any other TypeError is a bug.
    """
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return False
    module = frame.tb_frame.f_globals.get("__name__")
    return module in _TRANSPORT_MODULES and frame.tb_frame.f_code.co_name in ("write", "writelines")


def _reply_error(results: list[Any]) -> Exception | None:
    """A pipeline's reply that says the server cannot serve now (a Cluster that is down
    or moving slots, a lost connection) or is a Cluster node to a plain client: raised
    under :meth:`RedisRelay._guard`, which says which it is. A closed transport's
    ``TypeError`` (see :func:`_closed_transport_write`) counts too: a Cluster pipeline
    keeps it as the command's reply."""
    kinds = _unavailable_replies()
    for result in results:
        if isinstance(result, kinds) or (
            isinstance(result, TypeError | AttributeError) and _closed_transport_write(result)
        ):
            return result
    return None


@functools.cache
def _unavailable_replies() -> tuple[type[Exception], ...]:
    from redis.exceptions import AskError, ClusterError, TryAgainError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (ClusterError, TryAgainError, AskError, RedisConnectionError, RedisTimeoutError)


def _parse_id(raw: bytes) -> tuple[int, int]:
    ms, _, number = raw.partition(b"-")
    return int(ms), int(number)


def _entries(raw: list[Any]) -> list[Entry]:
    field = _FIELD.encode()
    return [(_parse_id(entry_id)[1], unpack(fields[field])) for entry_id, fields in raw]


class _Follower:
    """One loop per relay (per shard on a Cluster) that follows every stream its readers read.

    It does not ``XREAD`` all of them each time: that costs the client and the server in
    proportion to the streams followed, whether they changed or not. Producers ring a bell
    (a short stream; one ``XADD`` per exchange, naming the streams written, each with the
    entry written when there is one of at most ``_RING_BYTES``; see
    :mod:`~kagura.relay._pipeline`), and the loop blocks on the bells of the streams it
    follows, hands their readers the entries the bells carry (:meth:`_ring`), and reads
    only the streams rung without one (or whose readers would miss an entry before it),
    from each one's cursor. (Up to ``_FOLLOW_DIRECTLY`` streams, it blocks on the streams
    themselves: fewer commands for a loop that follows a few.)
    A stream whose read was cut at ``_FOLLOW_COUNT`` entries, or whose first reader just
    came, is read again without waiting. Every ``interval`` seconds it reads the streams
    that got no entry for an interval, rung or not (a bell lost with a failed exchange
    delays a stream until its next bell, or this; a stream that keeps talking rings
    again), and checks their leases, sending the readers of a stream without a lease to
    storage (where they find the end, or report ProducerLost).

    A reader that registers while the loop blocks wakes it with an entry on this relay's
    own wake key, which the block also reads from its last seen id, so no wake is missed.
    Any failure sends every reader to storage, which retries for ``timeout`` before
    RelayUnavailable.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        pool_client: Redis | RedisCluster,
        *,
        guard: Callable[[], contextlib.AbstractAsyncContextManager[None]],
        pool_guard: Callable[[], contextlib.AbstractAsyncContextManager[None]],
        wake_key: str,
        interval: float,
    ) -> None:
        self._client = client  # its own connection, for XREAD BLOCK
        self._pool_client = pool_client
        self._guard = guard
        self._pool_guard = pool_guard
        self._interval = interval
        self._watched: dict[str, set[Watcher]] = {}
        self._bell_of: dict[str, str] = {}  # watched key -> its bell
        self._bells: dict[str, str] = {}  # bell -> the id of the last entry seen
        self._ringers: Counter[str] = Counter()  # bell -> how many watched keys it rings for
        self._unread: dict[str, None] = {}  # keys to read without waiting for a bell
        self._active: dict[str, float] = {}  # key -> when it last had an entry (or a check)
        self._task: asyncio.Task[None] | None = None
        self._wake_key = wake_key
        self._wake_id = "0-0"
        self._blocking = False
        self._waking = False
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, watcher: Watcher, key: str, bell: str) -> None:
        watchers = self._watched.get(key)
        if watchers is None:
            watchers = self._watched[key] = set()
            self._bell_of[key] = bell
            self._ringers[bell] += 1
            self._bells.setdefault(bell, "0-0")
        watchers.add(watcher)
        self._unread[key] = None  # what came between its reader's fetch and now
        self._active.setdefault(key, time.monotonic())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="kagura.relay follower"
            )
        elif self._blocking and not self._waking:
            self._waking = True
            task = asyncio.get_running_loop().create_task(self._wake())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def remove(self, watcher: Watcher, key: str) -> None:
        watchers = self._watched.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watched[key]
                self._active.pop(key, None)
                self._unread.pop(key, None)
                bell = self._bell_of.pop(key)
                self._ringers[bell] -= 1
                if self._ringers[bell] <= 0:
                    del self._ringers[bell]

    async def _wake(self) -> None:
        try:
            async with self._pool_guard():
                pipe = self._pool_client.pipeline(transaction=False)
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
                pipe.pexpire(self._wake_key, 3_600_000)
                await pipe.execute()
        except RelayUnavailable:
            pass  # the loop's own block ends within its interval anyway

    async def _run(self) -> None:
        interval = self._interval
        next_check = time.monotonic() + interval
        try:
            while self._watched:
                try:
                    due = time.monotonic() >= next_check
                    if due:  # the streams quiet for an interval, rung or not
                        keys = [*self._idle(interval), *self._unread]
                        self._unread.clear()
                    elif self._unread:
                        keys = list(self._unread)
                        self._unread.clear()
                    elif len(self._watched) <= _FOLLOW_DIRECTLY:
                        await self._follow(next_check)
                        keys = []
                    else:
                        keys = await self._listen(next_check)
                    if keys:
                        await self._read(keys)
                    if due:
                        await self._check_leases(interval)
                        next_check = time.monotonic() + interval
                except RelayUnavailable as exc:
                    self._blocking = self._waking = False
                    _log.warning("relay.follow_failed", error=str(exc))
                    self._detach_all()
                    await asyncio.sleep(interval)
        finally:
            self._blocking = False
            self._detach_all()

    async def _follow(self, until: float) -> None:
        """Block on the streams themselves until one has entries or ``until``; deliver
        them. (For a few streams, cheaper than their bells, which carry every stream of
        the server that was written, followed here or not.)"""
        self._deliver(await self._block(self._cursors(self._watched), _FOLLOW_COUNT, until))

    async def _listen(self, until: float) -> list[str]:
        """Block on the bells until one rings or ``until``; deliver the entries they carry;
        the watched keys to read (rung without their entry, or after a gap)."""
        streams = {bell: self._bells[bell] for bell in self._ringers}
        response = await self._block(streams, _BELL_COUNT, until)
        rung: dict[str, None] = {}
        now = time.monotonic()
        for raw_key, raw_entries in response:
            key = raw_key.decode()
            last = raw_entries[-1][0].decode()
            if key == self._wake_key:
                self._wake_id = last
                continue
            self._bells[key] = last
            for _, fields in raw_entries:
                for member, value in fields.items():
                    name = member.decode()
                    if name in self._watched and not (value and self._ring(name, value, now)):
                        rung[name] = None
        return list(rung)

    def _ring(self, key: str, value: bytes, now: float) -> bool:
        """Deliver the entry a bell carried (``<id>\\n<entry>``) to the readers of ``key``;
        False if one of them would miss entries before it (the stream is then read from
        their cursors), or the value is not an entry."""
        head, _, payload = value.partition(b"\n")
        try:
            base, last = _parse_id(head)
            entry = [(last, unpack(payload))]
        except (ValueError, TypeError):
            return False
        first = last - len(entry[0][1]) + 1
        watchers = self._watched[key]
        if any(w.base != base or w.cursor < first - 1 for w in watchers):
            return False
        self._hand(key, watchers, entry, now)
        return True

    async def _block(self, streams: dict[str, str], count: int, until: float) -> list[Any]:
        """One blocking XREAD of ``streams`` and the wake key (a reader added meanwhile ends
        it), until ``until`` at the latest."""
        streams[self._wake_key] = self._wake_id
        block = max(1, round((until - time.monotonic()) * 1000))
        self._blocking = True
        async with self._guard():
            response = cast(
                list[Any], await self._client.xread(cast(Any, streams), count=count, block=block)
            )
        self._blocking = self._waking = False  # a reader added now wakes the next
        return response or []

    async def _read(self, keys: Iterable[str]) -> None:
        """Read ``keys`` from their readers' cursors, ``_READ_KEYS`` at a time; deliver
        what came. (Hundreds of streams in one XREAD held the loop for 10 to 20 ms while
        their entries were parsed and delivered: their readers waited for the last.)"""
        streams = self._cursors(keys)
        names = list(streams)
        for start in range(0, len(names), _READ_KEYS):
            part = {name: streams[name] for name in names[start : start + _READ_KEYS]}
            async with self._guard():
                response = cast(
                    list[Any], await self._client.xread(cast(Any, part), count=_FOLLOW_COUNT)
                )
            self._deliver(response or [])

    def _idle(self, interval: float) -> list[str]:
        """The followed streams that had no entry for ``interval`` seconds."""
        now = time.monotonic()
        return [key for key, when in self._active.items() if now - when >= interval]

    def _cursors(self, keys: Iterable[str]) -> dict[str, str]:
        """The id to read each followed key after: its slowest reader's."""
        streams: dict[str, str] = {}
        for key in keys:
            watchers = self._watched.get(key)
            if watchers:
                some = next(iter(watchers))
                streams[key] = f"{some.base}-{min(w.cursor for w in watchers)}"
        return streams

    def _deliver(self, response: list[Any]) -> None:
        now = time.monotonic()
        for raw_key, raw_entries in response:
            key = raw_key.decode()
            if key == self._wake_key:
                self._wake_id = raw_entries[-1][0].decode()
                continue
            watchers = self._watched.get(key)
            if not watchers:
                continue
            if len(raw_entries) >= _FOLLOW_COUNT:
                self._unread[key] = None  # more may wait
            self._hand(key, watchers, _entries(raw_entries), now)

    def _hand(self, key: str, watchers: set[Watcher], entries: list[Entry], now: float) -> None:
        """Give ``key``'s readers its new entries (a reader that cannot take them goes to
        storage)."""
        self._active[key] = now
        for watcher in list(watchers):
            if not watcher.deliver(entries):
                self.remove(watcher, key)

    async def _check_leases(self, interval: float) -> None:
        idle = self._idle(interval)
        if not idle:
            return
        async with self._guard():
            pipe = self._client.pipeline(transaction=False)
            for key in idle:
                pipe.exists(key.removesuffix("entries") + "lease")
            alive: list[Any] = await pipe.execute()
        now = time.monotonic()
        for key, held in zip(idle, alive, strict=True):
            if held:
                self._active[key] = now
                continue
            for watcher in list(self._watched.get(key, ())):
                self.remove(watcher, key)
                watcher.detach()

    def _detach_all(self) -> None:
        for key, watchers in list(self._watched.items()):
            for watcher in list(watchers):
                self.remove(watcher, key)
                watcher.detach()

    async def aclose(self) -> None:
        self._detach_all()
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
