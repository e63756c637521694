"""The LLM response cache: in memory, TTL + LRU, thread-safe, with single-flight computes.

:func:`cache_key` hashes what determines a response (messages, model, sampling
parameters) and never credentials; :class:`LLMCache` stores responses under such
keys; :meth:`LLMCache.get_or_compute` lets concurrent identical calls share one
request. :func:`get_llm_cache` returns the process-wide default cache.

>>> import asyncio
>>> cache = LLMCache(max_size=2, ttl=60)
>>> key = cache_key(
...     messages=[{"role": "user", "content": "Hi"}],
...     model="gpt-4o-mini",
...     params={"temperature": 0, "api_key": "sk-ignored"},
... )
>>> cache.get(key) is None
True
>>> async def ask() -> str:
...     return "Hello!"
>>> asyncio.run(cache.get_or_compute(key, ask))
'Hello!'
>>> cache.get(key)
'Hello!'
>>> stats = cache.stats()
>>> (stats.size, stats.hits, stats.misses)
(1, 1, 2)
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, SecretBytes, SecretStr

from kagura._redact import is_secret_key
from kagura.errors import ConfigError

__all__ = [
    "CacheStats",
    "LLMCache",
    "cache_key",
    "get_llm_cache",
    "set_llm_cache",
]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of an :class:`LLMCache`'s counters.

    ``hit_rate`` is ``hits / (hits + misses)``, ``0.0`` before any lookup;
    ``evictions`` counts entries dropped to respect ``max_size``, ``expirations``
    entries dropped because their TTL had passed.
    """

    size: int
    max_size: int
    hits: int
    misses: int
    hit_rate: float
    evictions: int
    expirations: int


@dataclass(slots=True)
class _Entry:
    value: str
    expires_at: float  # on the cache's clock; inf when the cache has no TTL


class LLMCache:
    """In-memory response cache with a TTL (``ttl=0``: no expiry) and LRU eviction.

    Every method is thread-safe. :meth:`get` counts a hit or a miss and makes the
    entry the most recently used; :meth:`set` evicts the least recently used
    entries beyond ``max_size``.
    """

    def __init__(
        self,
        *,
        max_size: int = 1000,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ConfigError(f"max_size must be >= 1, not {max_size}")
        if not ttl >= 0:
            raise ConfigError(f"ttl must be >= 0 seconds (0: no expiry), not {ttl}")
        self.max_size = max_size
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        # In-flight computations per event loop (a task belongs to one loop).
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Task[str]]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"LLMCache(max_size={self.max_size}, ttl={self.ttl:g}, size={len(self)})"

    def __len__(self) -> int:
        with self._lock:
            self._purge_expired()
            return len(self._entries)

    def get(self, key: str) -> str | None:
        """Return the stored value, or ``None`` if it is missing or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() >= entry.expires_at:
                del self._entries[key]
                self._expirations += 1
                entry = None
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry.value

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` as the most recently used entry.

        ``ttl`` overrides the cache's TTL for this entry (``0``: no expiry).
        """
        if not isinstance(value, str):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may not be type-checked
            raise TypeError(f"LLMCache stores str values, not {type(value).__name__}")
        with self._lock:
            lifetime = self.ttl if ttl is None else ttl
            expires_at = self._clock() + lifetime if lifetime else float("inf")
            self._entries[key] = _Entry(value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
                self._evictions += 1

    def invalidate(self, key: str | None = None) -> None:
        """Drop the entry under ``key``, or every entry when ``key`` is ``None``."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def stats(self) -> CacheStats:
        """Return the current size and counters."""
        with self._lock:
            self._purge_expired()
            lookups = self._hits + self._misses
            return CacheStats(
                size=len(self._entries),
                max_size=self.max_size,
                hits=self._hits,
                misses=self._misses,
                hit_rate=self._hits / lookups if lookups else 0.0,
                evictions=self._evictions,
                expirations=self._expirations,
            )

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[str]], *, ttl: float | None = None
    ) -> str:
        """Return the stored value, or compute, store and return it.

        Concurrent calls for the same key on one event loop share one ``compute()``
        (each call that finds nothing stored counts as a miss). If it raises, every
        waiter gets the exception and nothing is stored. Cancelling one waiter does
        not cancel the computation the others wait on; it runs to completion (and
        is stored) even when every waiter has gone.
        """
        cached = self.get(key)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        with self._lock:
            pending = self._inflight.setdefault(loop, {})
            task = pending.get(key)
            if task is None:
                task = loop.create_task(self._compute_and_store(key, compute, ttl))
                pending[key] = task
        return await asyncio.shield(task)

    async def _compute_and_store(
        self, key: str, compute: Callable[[], Awaitable[str]], ttl: float | None
    ) -> str:
        try:
            value = await compute()
            self.set(key, value, ttl=ttl)
            return value
        finally:
            with self._lock:
                pending = self._inflight.get(asyncio.get_running_loop())
                if pending is not None:
                    pending.pop(key, None)

    def _purge_expired(self) -> None:
        """Drop expired entries; call with ``_lock`` held."""
        now = self._clock()
        expired = [k for k, e in self._entries.items() if now >= e.expires_at]
        for k in expired:
            del self._entries[k]
        self._expirations += len(expired)


# Beyond credential names (redact.is_secret_key), the key also leaves out header
# mappings, which carry Authorization, and a parameter named plainly "key".
_ALSO_DROPPED = frozenset({"key", "headers", "extra_headers", "bearer"})


def _is_secret_name(name: str) -> bool:
    return is_secret_key(name) or name.replace("-", "_").lower() in _ALSO_DROPPED


def _without_secrets(value: Any) -> Any:
    """``value`` with secret-named keys and secret values removed from every mapping in it."""
    if isinstance(value, Mapping):
        items = cast("Mapping[Any, Any]", value).items()
        return {
            str(k): _without_secrets(v)
            for k, v in items
            if not _is_secret_name(str(k)) and not isinstance(v, SecretStr | SecretBytes)
        }
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in cast("list[Any] | tuple[Any, ...]", value)]
    return value


def _to_json(value: object) -> Any:
    """``json.dumps`` fallback for the objects messages and parameters commonly hold."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(cast("set[Any] | frozenset[Any]", value), key=repr)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cache_key cannot hash a {type(value).__name__}")


def cache_key(*, messages: Any, model: str, params: Mapping[str, Any]) -> str:
    """Return a sha256 hex digest identifying a request by messages, model and parameters.

    Pass sampling parameters only (temperature, max_tokens, ...). As a safeguard,
    parameters whose names look like credentials (``api_key``, ``token``,
    ``authorization``, ``client_secret``, ``password``, ``headers``, in any case
    or spelling such as ``apiKey`` or ``x-api-key``, also inside nested mappings)
    and ``SecretStr`` values are dropped before hashing, so a key never depends on
    which credential made the call. Hashing is over canonical JSON (sorted keys).
    """
    payload = {
        "v": 1,
        "model": model,
        "messages": messages,
        "params": _without_secrets(dict(params)),
    }
    try:
        canonical = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_to_json
        )
    except TypeError as exc:
        raise ConfigError(f"cannot build a cache key: {exc}") from exc
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_default_cache: LLMCache | None = None
_default_lock = threading.Lock()


def get_llm_cache() -> LLMCache:
    """Return the process-wide default cache (created on first use)."""
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            _default_cache = LLMCache()
        return _default_cache


def set_llm_cache(cache: LLMCache | None) -> None:
    """Replace the default cache; ``None`` restores a fresh, empty default."""
    global _default_cache
    with _default_lock:
        _default_cache = cache if cache is not None else LLMCache()
