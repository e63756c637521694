"""share_stream: one request for several subscribers, joined demand, closed by the last to leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from reactivex import abc
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.subscription import Subscription

from kagura.llm.config import LLMConfig
from kagura.pipes import from_async_iterable, from_llm, share_stream, to_async_iterator
from kagura.pipes.adapter import ObservableIterator
from kagura.testing.loopback import LoopbackServer, Script
from kagura.testing.scripted import marble_chunks

on_next, on_completed, subscribe = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.subscribe,
)


async def drain(iterator: AsyncIterator[str]) -> list[str]:
    return [x async for x in iterator]


# -- one request -----------------------------------------------------------------------------------
async def test_three_consumers_one_request(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("one answer for three readers", chunk_size=3))
    shared = from_llm("x", loopback_config).pipe(share_stream())
    assert loopback.requests == []
    results = await asyncio.gather(*(drain(to_async_iterator(shared)) for _ in range(3)))
    assert ["".join(r) for r in results] == ["one answer for three readers"] * 3
    assert results[0] == results[1] == results[2]
    assert len(loopback.requests) == 1


async def test_the_request_closes_when_the_last_consumer_leaves(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("x" * 1600, chunk_size=4, chunk_delay=0.01))
    shared = from_llm("x", loopback_config).pipe(share_stream())
    first, second, third = (to_async_iterator(shared) for _ in range(3))
    assert await asyncio.gather(anext(first), anext(second), anext(third)) == ["xxxx"] * 3

    async def still_streaming() -> None:
        # The one who stays gets ten more chunks, 10 ms apart on the server: more than were
        # buffered when the other left, so the request outlived its leaving.
        for _ in range(10):
            assert await asyncio.wait_for(anext(third), 2) == "xxxx"
        stats = loopback.stats()
        assert (stats.streams_in_progress, stats.streams_closed_by_client) == (1, 0)

    await first.aclose()  # the first leaves by aclose()
    await still_streaming()
    async for _ in second:  # the second by `break`, dropping its iterator
        break
    del second
    await still_streaming()
    for _ in range(5):  # the third still receives the stream
        assert await asyncio.wait_for(anext(third), 2) == "xxxx"

    async def third_reads_on() -> None:
        async for _ in third:
            pass

    task = asyncio.create_task(third_reads_on())
    await asyncio.sleep(0.05)
    task.cancel()  # the last one leaves by cancellation
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1
    assert len(loopback.requests) == 1


# -- hot after the first subscription (virtual time) -----------------------------------------------
def test_a_late_subscriber_sees_only_what_follows() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-a-b-c-d-|", scheduler=scheduler)
    shared = source.pipe(share_stream())
    early, late = scheduler.create_observer(), scheduler.create_observer()
    scheduler.schedule_absolute(200, lambda *_: shared.subscribe(early))
    scheduler.schedule_absolute(204, lambda *_: shared.subscribe(late))
    scheduler.advance_to(1000)
    assert early.messages == [
        on_next(201, "a"),
        on_next(203, "b"),
        on_next(205, "c"),
        on_next(207, "d"),
        on_completed(209),
    ]
    assert late.messages == [on_next(205, "c"), on_next(207, "d"), on_completed(209)]
    assert source.subscriptions == [subscribe(200, 209)]


def test_the_source_is_disposed_when_the_last_subscriber_leaves_and_restarts_after() -> None:
    scheduler = TestScheduler()
    source = marble_chunks("-a-b-c-d-e-f-|", scheduler=scheduler)
    shared = source.pipe(share_stream())
    subscriptions: dict[str, abc.DisposableBase] = {}

    def join(name: str, time: float) -> None:
        def action(_: abc.SchedulerBase, __: object = None) -> None:
            subscriptions[name] = shared.subscribe(scheduler.create_observer())

        scheduler.schedule_absolute(time, action)

    def leave(name: str, time: float) -> None:
        scheduler.schedule_absolute(time, lambda *_: subscriptions[name].dispose())

    join("one", 200)
    join("two", 202)
    join("three", 203)
    leave("one", 204)
    leave("two", 206)
    scheduler.advance_to(208)
    assert source.subscriptions == [Subscription(200)]  # one subscriber left: still running
    leave("three", 209)
    join("again", 300)  # after everyone left: a new subscription of the cold source
    scheduler.advance_to(301)
    assert source.subscriptions == [subscribe(200, 209), Subscription(300)]


async def test_late_subscriber_on_the_event_loop_gets_a_suffix() -> None:
    async def numbers() -> AsyncIterator[str]:
        for i in range(30):
            yield f"{i} "
            await asyncio.sleep(0)

    shared = from_async_iterable(numbers).pipe(share_stream())
    early = to_async_iterator(shared)
    seen = [await anext(early), await anext(early), await anext(early)]
    late_items = await drain(to_async_iterator(shared))
    everything = seen + await drain(early)
    assert everything == [f"{i} " for i in range(30)]
    assert 0 < len(late_items) < 30  # not from the start
    assert late_items == everything[len(everything) - len(late_items) :]


# -- joined demand ---------------------------------------------------------------------------------
def counting_source(produced: list[int], total: int) -> AsyncIterator[str]:
    async def items() -> AsyncIterator[str]:
        for i in range(total):
            produced.append(i)
            yield f"{i} "  # no await: only demand stops it

    return items()


async def start_fast_and_slow(
    produced: list[int], total: int, max_buffer: int
) -> tuple[ObservableIterator[str], list[str], asyncio.Task[None]]:
    shared = from_async_iterable(lambda: counting_source(produced, total)).pipe(share_stream())
    fast = to_async_iterator(shared, max_buffer=max_buffer)
    slow = to_async_iterator(shared, max_buffer=max_buffer)
    fast_items: list[str] = []

    async def drain_fast() -> None:
        async for item in fast:
            fast_items.append(item)

    first_of_slow = asyncio.ensure_future(anext(slow))
    task = asyncio.create_task(drain_fast())  # both subscribe before the first item
    assert await first_of_slow == "0 "
    for _ in range(50):
        await asyncio.sleep(0)
    return slow, fast_items, task


async def test_a_slow_subscriber_slows_the_shared_source() -> None:
    produced: list[int] = []
    slow, fast_items, fast_task = await start_fast_and_slow(produced, 1_000, max_buffer=8)
    assert len(produced) <= 8 + 2  # the slow one's buffer is full: the source waits
    assert not fast_task.done()
    assert fast_items == [f"{i} " for i in range(len(fast_items))]
    rest = await drain(slow)
    await asyncio.wait_for(fast_task, 2)
    assert ["0 ", *rest] == fast_items == [f"{i} " for i in range(1_000)]


async def test_a_slow_subscriber_that_leaves_no_longer_holds_the_others() -> None:
    produced: list[int] = []
    slow, fast_items, fast_task = await start_fast_and_slow(produced, 1_000, max_buffer=8)
    assert len(produced) <= 8 + 2
    await slow.aclose()
    await asyncio.wait_for(fast_task, 2)
    assert fast_items == [f"{i} " for i in range(1_000)]
