"""Sources: from_async_iterable, from_llm, from_llm_events (cold, disposable, typed errors)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from reactivex import operators as rx

from _probe import PROBE, Probe
from kagura.errors import StreamError
from kagura.events import Finish, StreamEvent, TextDelta, Usage
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.pipes import from_async_iterable, from_llm, from_llm_events, to_async_iterator
from kagura.testing.loopback import LoopbackServer, Script
from kagura.testing.strategies import text_and_chunkings

T = TypeVar("T")


async def read_into(received: list[T], items: AsyncIterable[T]) -> None:
    """Append each item to ``received`` (so a test sees what arrived before an error)."""
    async for item in items:
        received.append(item)


async def agen(items: list[str], log: list[str] | None = None) -> AsyncIterator[str]:
    """An in-memory source that records how it ended in ``log``."""
    try:
        for item in items:
            yield item
        if log is not None:
            log.append("exhausted")
    finally:
        if log is not None:
            log.append("closed")


def loopback_llm_config(server: LoopbackServer, transport: str) -> LLMConfig:
    return LLMConfig(
        model="openai/gpt-4o-mini",
        api_base=server.base_url,
        api_key=SecretStr("sk-test"),
        max_retries=0,
        transport=transport,  # type: ignore[arg-type] (a parametrized Literal)
    )


# -- reassembly: any text, any chunking ------------------------------------------------------------
@given(text_and_chunkings(st.text(max_size=200)))
async def test_from_async_iterable_reassembles(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    received = [c async for c in to_async_iterator(from_async_iterable(lambda: agen(chunks)))]
    assert received == chunks
    assert "".join(received) == text


@pytest.mark.parametrize("transport_name", ["direct", "litellm"])
@settings(max_examples=25)
@given(text_and_chunkings(st.text(min_size=1, max_size=80), max_chunks=20))
async def test_from_llm_reassembles_over_http(
    loopback_server: LoopbackServer, transport_name: str, case: tuple[str, list[str]]
) -> None:
    text, chunks = case
    loopback_server.enqueue(Script.chunks(chunks))
    config = loopback_llm_config(loopback_server, transport_name)
    received = [c async for c in to_async_iterator(from_llm("x", config))]
    assert "".join(received) == text


# -- cold ------------------------------------------------------------------------------------------
async def test_creating_sends_nothing_and_each_subscription_is_one_request(
    loopback: LoopbackServer, loopback_config: LLMConfig, probe: Probe
) -> None:
    answer = from_llm("hi", loopback_config)
    assert await probe() == [PROBE]  # creating it sent nothing
    loopback.enqueue(Script.text("first answer"), Script.text("second answer"))
    first = "".join([c async for c in to_async_iterator(answer)])
    assert len(loopback.requests) == 2
    second = "".join([c async for c in to_async_iterator(answer)])
    assert (first, second) == ("first answer", "second answer")
    assert len(loopback.requests) == 3


async def test_a_factory_runs_once_per_subscription() -> None:
    calls = 0

    def factory() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        return agen(["a", "b"])

    letters = from_async_iterable(factory)
    assert calls == 0
    assert [x async for x in to_async_iterator(letters)] == ["a", "b"]
    assert [x async for x in to_async_iterator(letters)] == ["a", "b"]
    assert calls == 2


async def test_disposed_before_the_first_turn_makes_no_request(
    loopback_config: LLMConfig, probe: Probe
) -> None:
    subscription = from_llm("hi", loopback_config).subscribe()
    subscription.dispose()
    assert await probe() == [PROBE]


def test_subscribing_off_the_event_loop_is_a_clear_error() -> None:
    errors: list[Exception] = []
    from_async_iterable(lambda: agen(["a"])).subscribe(on_error=errors.append)
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "event loop" in str(errors[0])


# -- ending: complete, error, dispose all close the iterator ---------------------------------------
async def test_completion_closes_the_iterator() -> None:
    log: list[str] = []
    assert [x async for x in to_async_iterator(from_async_iterable(agen(["a"], log)))] == ["a"]
    assert log == ["exhausted", "closed"]


async def test_an_error_is_on_error_with_the_same_exception() -> None:
    boom = KeyError("boom")

    async def failing() -> AsyncIterator[str]:
        yield "a"
        raise boom

    seen: list[object] = []
    done = asyncio.Event()

    def on_error(error: Exception) -> None:
        seen.append(error)
        done.set()

    from_async_iterable(failing()).subscribe(on_next=seen.append, on_error=on_error)
    await asyncio.wait_for(done.wait(), 1)
    assert seen == ["a", boom]


async def test_dispose_closes_the_iterator_at_once() -> None:
    log: list[str] = []
    started = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                started.set()
                i += 1
                await asyncio.sleep(0.001)
        finally:
            log.append("closed")

    subscription = from_async_iterable(endless()).subscribe()
    await asyncio.wait_for(started.wait(), 1)
    subscription.dispose()
    await asyncio.sleep(0)  # one turn: the pump task is cancelled, the iterator closed
    await asyncio.sleep(0)
    assert log == ["closed"]


async def test_a_downstream_take_disposes_the_source() -> None:
    log: list[str] = []
    first = from_async_iterable(agen(["a", "b", "c"], log)).pipe(rx.take(1))
    assert [x async for x in to_async_iterator(first)] == ["a"]
    await asyncio.sleep(0)
    assert log == ["closed"]


# -- from_llm_events -------------------------------------------------------------------------------
async def test_events_are_typed_and_metrics_filled(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo"], include_usage=True, chunk_delay=0.002))
    metrics = StreamMetrics()
    events: list[StreamEvent] = [
        e async for e in to_async_iterator(from_llm_events("x", loopback_config, metrics=metrics))
    ]
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hel"), TextDelta("lo")]
    assert any(isinstance(e, Usage) and not e.estimated for e in events)
    assert Finish("stop") in events
    assert (metrics.chunks, metrics.chars, metrics.finish_reason) == (2, 5, "stop")
    assert metrics.ttft_s is not None
    assert metrics.duration_s is not None


async def test_metrics_restart_with_each_subscription() -> None:
    metrics = StreamMetrics()
    events = from_llm_events("a b c", LLMConfig(model="kagura/echo"), metrics=metrics)
    for _ in range(2):
        _ = [e async for e in to_async_iterator(events)]
        assert (metrics.chunks, metrics.chars) == (3, 5)


async def test_bad_arguments_fail_at_creation(loopback_config: LLMConfig) -> None:
    with pytest.raises(ValueError, match="temperature"):
        from_llm("x", loopback_config, temperature=0.2)


async def test_error_mid_stream_after_the_chunks_before_it(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor", "ld"], drop_after=2))
    received: list[str] = []
    with pytest.raises(StreamError) as info:
        await read_into(received, to_async_iterator(from_llm("x", loopback_config)))
    assert received == ["Hel", "lo "]
    assert info.value.partial_text == "Hello "


# -- closing: many random early breaks leave nothing streaming -------------------------------------
async def test_random_early_breaks_leave_no_stream_open(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    rng = random.Random(20240611)
    runs = 200
    for run in range(runs):
        chunks = [f"{run}-{i} " for i in range(rng.randint(2, 12))]
        delay = rng.choice([0.0, 0.0005, 0.001, 0.002])
        loopback.enqueue(Script.chunks(chunks, chunk_delay=delay))
        stop_at = rng.randrange(len(chunks) - 1)  # leave before the last chunk
        answer = from_llm("x", loopback_config)
        seen = 0
        if rng.random() < 0.5:  # `break` and drop the iterator
            async for _ in to_async_iterator(answer):
                if seen == stop_at:
                    break
                seen += 1
        else:  # `break` inside `async with`
            async with to_async_iterator(answer) as chunks_in:
                async for _ in chunks_in:
                    if seen == stop_at:
                        break
                    seen += 1
        assert seen == stop_at
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_in_progress == 0
    assert loopback.stats().streams_started == runs


def test_text_deltas_keeps_text_and_records_per_subscription() -> None:
    from reactivex.testing.marbles import marbles_testing

    from kagura.events import Finish, TextDelta, Usage
    from kagura.pipes import text_deltas

    events = {"t": TextDelta("t"), "u": Usage(1, 1, 2), "f": Finish("stop")}
    record: list[str] = []
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        source = cold("-t-u-t-f-|", events)
        results = start(source.pipe(text_deltas(record)))
        assert results == exp("-t---t---|", {"t": "t"})
    assert record == ["t", "t"]
    reactivex.from_iterable([TextDelta("x")]).pipe(text_deltas(record)).subscribe()
    assert record == ["x"]  # a new subscription is a new request: the record starts afresh
