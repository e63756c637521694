"""to_async_iterator: bounded, errors re-raised, every way of leaving closes the stream."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import TypeVar

import pytest
import reactivex
from reactivex import operators as rx
from reactivex.scheduler import NewThreadScheduler
from reactivex.testing import TestScheduler

from kagura.errors import StreamError
from kagura.llm.config import LLMConfig
from kagura.operators import throttle
from kagura.pipes import from_async_iterable, from_llm, to_async_iterator
from kagura.testing.loopback import LoopbackServer, Script
from kagura.testing.scripted import scripted_stream

T = TypeVar("T")


async def read_into(received: list[T], items: AsyncIterable[T]) -> None:
    """Append each item to ``received`` (so a test sees what arrived before an error)."""
    async for item in items:
        received.append(item)


class Boom(Exception):
    pass


def test_max_buffer_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        to_async_iterator(reactivex.of(1), max_buffer=0)


async def test_items_in_order_then_the_end() -> None:
    iterator = to_async_iterator(reactivex.of(1, 2, 3))
    assert [x async for x in iterator] == [1, 2, 3]
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


async def test_subscribes_on_the_first_anext_only() -> None:
    subscribed = 0

    def count(_: object) -> reactivex.Observable[int]:
        nonlocal subscribed
        subscribed += 1
        return reactivex.of(1)

    iterator = to_async_iterator(reactivex.defer(count))
    assert subscribed == 0
    assert await anext(iterator) == 1
    assert subscribed == 1


# -- errors ----------------------------------------------------------------------------------------
async def test_error_reraised_same_exception_after_the_items_before_it() -> None:
    boom = Boom("at item 3")

    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise boom

    received: list[int] = []
    iterator = to_async_iterator(from_async_iterable(failing()))
    with pytest.raises(Boom) as info:
        await read_into(received, iterator)
    assert info.value is boom
    assert received == [1, 2]
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


async def test_an_operator_error_is_reraised_with_its_type() -> None:
    def explode(x: int) -> int:
        if x == 2:
            raise ZeroDivisionError("two")
        return x

    received: list[int] = []
    with pytest.raises(ZeroDivisionError, match="two"):
        await read_into(received, to_async_iterator(reactivex.of(1, 2, 3).pipe(rx.map(explode))))
    assert received == [1]


async def test_error_event_mid_stream_over_http(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor", "ld"], error_event_after=2))
    received: list[str] = []
    with pytest.raises(StreamError) as info:
        await read_into(received, to_async_iterator(from_llm("x", loopback_config)))
    assert received == ["Hel", "lo "]
    assert info.value.partial_text == "Hello "


# -- leaving early closes the HTTP stream ----------------------------------------------------------
def slow_script() -> Script:
    return Script.text("x" * 400, chunk_size=4, chunk_delay=0.02)


async def test_cancelling_the_consuming_task_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in to_async_iterator(from_llm("x", loopback_config)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1


async def test_aclose_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    iterator = to_async_iterator(from_llm("x", loopback_config))
    assert await anext(iterator) == "xxxx"
    await iterator.aclose()
    await iterator.aclose()  # idempotent
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


async def test_leaving_async_with_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    async with to_async_iterator(from_llm("x", loopback_config)) as chunks:
        async for _ in chunks:
            break
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Prove a dropped iterator is closed by reference counting, not the cycle collector."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_gc")
async def test_break_with_the_iterator_dropped_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    async for _ in to_async_iterator(from_llm("x", loopback_config)):
        break
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1


@pytest.mark.usefixtures("no_gc")
async def test_break_with_the_iterator_dropped_closes_an_endless_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(0)
        finally:
            closed.set()

    async for item in to_async_iterator(from_async_iterable(endless())):
        if item == 5:
            break
    await asyncio.wait_for(closed.wait(), 1)


# -- bounded: a slow consumer slows the source -----------------------------------------------------
async def run_slow_consumer(chunks: int, max_buffer: int) -> int:
    """Drain ``chunks`` items, yielding to the loop per item.

    Returns how far the source ran ahead of the consumer, at most.
    """
    produced = consumed = ahead = 0

    async def source() -> AsyncIterator[str]:
        nonlocal produced
        for i in range(chunks):
            produced += 1
            yield f"chunk {i:07d} "

    async for _ in to_async_iterator(from_async_iterable(source), max_buffer=max_buffer):
        consumed += 1
        ahead = max(ahead, produced - consumed)
        await asyncio.sleep(0)
    assert consumed == chunks
    return ahead


async def test_the_source_pauses_for_a_slow_consumer() -> None:
    for max_buffer in (1, 4, 64):
        ahead = await run_slow_consumer(2_000, max_buffer)
        assert max_buffer - 1 <= ahead <= max_buffer + 2


async def test_memory_stays_flat_for_a_slow_consumer() -> None:
    await run_slow_consumer(1_000, 64)  # warm up: first-use allocations are not the stream's
    peaks: dict[int, int] = {}
    for chunks in (10_000, 100_000):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            ahead = await run_slow_consumer(chunks, 64)
            peaks[chunks] = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert ahead <= 64 + 2
    print(f"\ntracemalloc peak: 10k chunks {peaks[10_000]} B, 100k chunks {peaks[100_000]} B")
    assert peaks[100_000] < 2 * peaks[10_000]
    assert peaks[100_000] < 256 * 1024


# -- threads and virtual time ----------------------------------------------------------------------
async def test_items_from_another_thread_arrive_in_order() -> None:
    threads: set[int] = set()

    def note(x: int) -> int:
        threads.add(threading.get_ident())
        return x

    source = reactivex.from_iterable(range(200)).pipe(
        rx.map(note), rx.subscribe_on(NewThreadScheduler())
    )
    assert [x async for x in to_async_iterator(source, max_buffer=8)] == list(range(200))
    assert threading.get_ident() not in threads


async def test_a_timed_operator_on_virtual_time_feeds_the_iterator() -> None:
    scheduler = TestScheduler()
    chunks = scripted_stream(
        ["Hel", "lo", " wor", "ld"], ttft=0.5, interval=0.04, scheduler=scheduler
    )
    iterator = to_async_iterator(chunks.pipe(throttle(0.1, scheduler=scheduler)))
    first = asyncio.ensure_future(anext(iterator))
    await asyncio.sleep(0)  # subscribed; nothing happens until virtual time moves
    assert not first.done()
    scheduler.advance_to(0.5)
    assert await first == "Hel"
    scheduler.advance_to(10)
    assert [x async for x in iterator] == ["lo wor", "ld"]
