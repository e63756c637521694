"""LLMCache: TTL + LRU, stats, invalidation, credential-free keys, single-flight."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from kagura.errors import ConfigError
from kagura.llm.cache import CacheStats, LLMCache, cache_key, get_llm_cache, set_llm_cache

MESSAGES = [{"role": "user", "content": "Say hi"}]


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


# -- get / set / TTL / LRU ----------------------------------------------------


def test_miss_then_hit() -> None:
    cache = LLMCache()
    assert cache.get("k") is None
    cache.set("k", "v")
    assert cache.get("k") == "v"
    assert len(cache) == 1


def test_empty_string_is_a_value() -> None:
    cache = LLMCache()
    cache.set("k", "")
    assert cache.get("k") == ""


def test_set_overwrites() -> None:
    cache = LLMCache()
    cache.set("k", "old")
    cache.set("k", "new")
    assert cache.get("k") == "new"
    assert len(cache) == 1


def test_ttl_expiry() -> None:
    clock = FakeClock()
    cache = LLMCache(ttl=10, clock=clock)
    cache.set("k", "v")

    clock.now = 9.99
    assert cache.get("k") == "v"
    clock.now = 10.0
    assert cache.get("k") is None
    assert len(cache) == 0
    assert cache.stats().expirations == 1


def test_set_restarts_the_ttl() -> None:
    clock = FakeClock()
    cache = LLMCache(ttl=10, clock=clock)
    cache.set("k", "v1")
    clock.now = 8
    cache.set("k", "v2")
    clock.now = 15
    assert cache.get("k") == "v2"


def test_ttl_zero_never_expires() -> None:
    clock = FakeClock()
    cache = LLMCache(ttl=0, clock=clock)
    cache.set("k", "v")
    clock.now = 1e12
    assert cache.get("k") == "v"
    assert cache.stats().size == 1


def test_len_and_stats_skip_expired_entries() -> None:
    clock = FakeClock()
    cache = LLMCache(ttl=5, clock=clock)
    cache.set("old", "1")
    clock.now = 3
    cache.set("new", "2")
    clock.now = 6

    assert len(cache) == 1
    stats = cache.stats()
    assert stats.size == 1
    assert stats.expirations == 1
    assert stats.misses == 0  # purging is not a lookup


def test_lru_evicts_least_recently_used() -> None:
    cache = LLMCache(max_size=3)
    for key in "abc":
        cache.set(key, key.upper())

    assert cache.get("a") == "A"  # a is now the most recent; b the least
    cache.set("d", "D")

    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    assert cache.stats().evictions == 1


def test_set_refreshes_recency() -> None:
    cache = LLMCache(max_size=2)
    cache.set("a", "1")
    cache.set("b", "2")
    cache.set("a", "1'")
    cache.set("c", "3")

    assert cache.get("b") is None
    assert cache.get("a") == "1'"


def test_max_size_is_respected() -> None:
    cache = LLMCache(max_size=5)
    for i in range(100):
        cache.set(f"k{i}", str(i))

    assert len(cache) == 5
    assert [cache.get(f"k{i}") for i in range(95, 100)] == [str(i) for i in range(95, 100)]
    assert cache.stats().evictions == 95


def test_stats_and_hit_rate() -> None:
    cache = LLMCache(max_size=10)
    assert cache.stats() == CacheStats(
        size=0, max_size=10, hits=0, misses=0, hit_rate=0.0, evictions=0, expirations=0
    )
    cache.set("k", "v")
    cache.get("k")
    cache.get("k")
    cache.get("k")
    cache.get("missing")

    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses) == (1, 3, 1)
    assert stats.hit_rate == pytest.approx(0.75)


def test_stats_is_frozen() -> None:
    stats = LLMCache().stats()
    with pytest.raises(AttributeError):
        stats.hits = 5  # type: ignore[misc]


def test_invalidate_one_and_all() -> None:
    cache = LLMCache()
    for key in "abc":
        cache.set(key, key)

    cache.invalidate("b")
    cache.invalidate("not-there")
    assert [cache.get(k) for k in "abc"] == ["a", None, "c"]

    cache.invalidate()
    assert len(cache) == 0
    assert cache.get("a") is None


@pytest.mark.parametrize("kwargs", [{"max_size": 0}, {"ttl": -1}, {"ttl": float("nan")}])
def test_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LLMCache(**kwargs)


def test_rejects_non_str_values() -> None:
    with pytest.raises(TypeError):
        LLMCache().set("k", 42)  # type: ignore[arg-type]


def test_thread_safety_smoke() -> None:
    cache = LLMCache(max_size=50)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(2000):
                key = f"k{(i * (n + 1)) % 80}"
                cache.set(key, key)
                value = cache.get(key)
                assert value is None or value == key
                if i % 500 == 0:
                    cache.invalidate(key)
                    cache.stats()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    stats = cache.stats()
    assert stats.size <= 50
    assert stats.hits + stats.misses == 8 * 2000


# -- cache_key ------------------------------------------------------------------


def test_key_is_stable_and_order_insensitive() -> None:
    a = cache_key(messages=MESSAGES, model="gpt-4o", params={"temperature": 0.2, "top_p": 1})
    b = cache_key(messages=MESSAGES, model="gpt-4o", params={"top_p": 1, "temperature": 0.2})
    assert a == b
    assert len(a) == 64
    int(a, 16)


def test_key_ignores_credentials() -> None:
    base = {"temperature": 0.2, "max_tokens": 100}
    plain = cache_key(messages=MESSAGES, model="gpt-4o", params=base)
    with_key_a = cache_key(messages=MESSAGES, model="gpt-4o", params={**base, "api_key": "sk-aaaa"})
    with_key_b = cache_key(
        messages=MESSAGES,
        model="gpt-4o",
        params={
            **base,
            "API_KEY": "sk-bbbb",
            "apiKey": "sk-bbbb",
            "x-api-key": "sk-bbbb",
            "token": "t",
            "azure_ad_token": "t",
            "Authorization": "Bearer t",
            "client_secret": "c",
            "password": "p",
            "headers": {"Authorization": "Bearer t"},
            "extra_headers": {"X-Trace": "1"},
            "credential": SecretStr("anything"),
            "opaque": SecretStr("value-typed secret"),
        },
    )
    assert plain == with_key_a == with_key_b


def test_key_ignores_nested_credentials() -> None:
    def key(body: dict[str, Any]) -> str:
        return cache_key(messages=MESSAGES, model="m", params={"extra_body": body})

    assert key({"api_key": "sk-a", "top_k": 5}) == key({"api_key": "sk-b", "top_k": 5})
    assert key({"opts": [{"access_token": "t1"}]}) == key({"opts": [{"access_token": "t2"}]})
    assert key({"top_k": 5}) != key({"top_k": 6})


def test_key_keeps_sampling_parameters() -> None:
    def key(**params: Any) -> str:
        return cache_key(messages=MESSAGES, model="gpt-4o", params=params)

    assert key(temperature=0.2) != key(temperature=0.7)
    assert key(max_tokens=10) != key(max_tokens=20)  # "tokens" is not a credential
    assert key(max_completion_tokens=10) != key()
    assert key(seed=1) != key(seed=2)


def test_key_depends_on_messages_and_model() -> None:
    base = cache_key(messages=MESSAGES, model="gpt-4o", params={})
    assert base != cache_key(messages=MESSAGES, model="gpt-4o-mini", params={})
    assert base != cache_key(
        messages=[{"role": "user", "content": "Say bye"}], model="gpt-4o", params={}
    )


def test_key_accepts_pydantic_messages() -> None:
    class Message(BaseModel):
        role: str
        content: str

    as_models = cache_key(messages=[Message(role="user", content="Say hi")], model="m", params={})
    as_dicts = cache_key(messages=MESSAGES, model="m", params={})
    assert as_models == as_dicts


def test_key_rejects_unhashable_objects() -> None:
    with pytest.raises(ConfigError, match="cannot build a cache key"):
        cache_key(messages=[object()], model="m", params={})


# -- single-flight ---------------------------------------------------------------


@dataclass
class Counter:
    calls: int = 0


async def test_single_flight_computes_once() -> None:
    cache = LLMCache()
    counter = Counter()
    release = asyncio.Event()

    async def compute() -> str:
        counter.calls += 1
        await release.wait()
        return "answer"

    waiters = [asyncio.create_task(cache.get_or_compute("k", compute)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters)

    assert results == ["answer"] * 10
    assert counter.calls == 1
    assert cache.get("k") == "answer"
    assert await cache.get_or_compute("k", compute) == "answer"
    assert counter.calls == 1


async def test_single_flight_failure_reaches_every_waiter_and_caches_nothing() -> None:
    cache = LLMCache()
    counter = Counter()
    release = asyncio.Event()

    async def compute() -> str:
        counter.calls += 1
        await release.wait()
        raise RuntimeError("provider down")

    waiters = [asyncio.create_task(cache.get_or_compute("k", compute)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert counter.calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "provider down" for r in results)
    assert cache.get("k") is None
    assert len(cache) == 0

    async def recover() -> str:
        return "ok"

    assert await cache.get_or_compute("k", recover) == "ok"  # the failure was not remembered


async def test_cancelled_waiter_does_not_cancel_the_shared_computation() -> None:
    cache = LLMCache()
    counter = Counter()
    release = asyncio.Event()

    async def compute() -> str:
        counter.calls += 1
        await release.wait()
        return "answer"

    first = asyncio.create_task(cache.get_or_compute("k", compute))
    second = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()

    assert await second == "answer"
    assert counter.calls == 1
    assert cache.get("k") == "answer"


async def test_computation_finishes_when_every_waiter_left() -> None:
    cache = LLMCache()
    release = asyncio.Event()
    done = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        done.set()
        return "late"

    waiter = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await done.wait()
    await asyncio.sleep(0)

    assert cache.get("k") == "late"


async def test_unobserved_failure_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    cache = LLMCache()

    async def compute() -> str:
        await asyncio.sleep(0)
        raise RuntimeError("nobody listens")

    waiter = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    waiter.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()  # a task whose exception nobody read logs when it is collected

    assert "never retrieved" not in caplog.text


async def test_different_keys_compute_independently() -> None:
    cache = LLMCache()
    counter = Counter()

    async def compute() -> str:
        counter.calls += 1
        mine = counter.calls
        await asyncio.sleep(0)
        return str(mine)

    results = await asyncio.gather(
        cache.get_or_compute("a", compute), cache.get_or_compute("b", compute)
    )
    assert sorted(results) == ["1", "2"]


def test_single_flight_on_separate_event_loops() -> None:
    cache = LLMCache()

    async def compute() -> str:
        await asyncio.sleep(0.01)
        return "v"

    async def run() -> list[str]:
        return list(await asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(3))))

    assert asyncio.run(run()) == ["v"] * 3
    cache.invalidate()
    assert asyncio.run(run()) == ["v"] * 3


# -- module default -----------------------------------------------------------------


@pytest.fixture
def restore_default_cache() -> Iterator[None]:
    before = get_llm_cache()
    yield
    set_llm_cache(before)


@pytest.mark.usefixtures("restore_default_cache")
def test_default_cache_get_and_set() -> None:
    assert get_llm_cache() is get_llm_cache()

    mine = LLMCache(max_size=3)
    set_llm_cache(mine)
    assert get_llm_cache() is mine

    set_llm_cache(None)
    fresh = get_llm_cache()
    assert fresh is not mine
    assert len(fresh) == 0
    assert fresh.max_size == 1000


def test_per_entry_ttl_overrides_the_cache_ttl() -> None:
    now = 0.0
    cache = LLMCache(ttl=100.0, clock=lambda: now)
    cache.set("short", "a", ttl=5.0)
    cache.set("forever", "b", ttl=0)
    cache.set("default", "c")
    now = 50.0
    assert (cache.get("short"), cache.get("forever"), cache.get("default")) == (None, "b", "c")
    now = 1e9
    assert (cache.get("forever"), cache.get("default")) == ("b", None)
