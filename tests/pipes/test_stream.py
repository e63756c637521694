"""AgentStream: iteration, text(), usage, finish reason, metrics, closing, outcomes, pipelines."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import AsyncIterable, Callable, Iterator
from typing import TypeVar

import pytest
from reactivex import operators as rx

from _probe import PROBE, Probe
from kagura.errors import StreamConsumedError, StreamError
from kagura.events import Usage
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import estimate_tokens
from kagura.operators import accumulate, chunk_words
from kagura.pipes import AgentStream, StreamOutcome, to_async_iterator
from kagura.testing.loopback import LoopbackServer, Script

T = TypeVar("T")


async def read_into(received: list[T], items: AsyncIterable[T]) -> None:
    """Append each item to ``received`` (so a test sees what arrived before an error)."""
    async for item in items:
        received.append(item)


def slow_script() -> Script:
    return Script.text("x" * 400, chunk_size=4, chunk_delay=0.02)


class Outcomes:
    """A done-callback that records each call (and keeps no reference to the stream)."""

    def __init__(self) -> None:
        self.calls: list[StreamOutcome] = []

    def __call__(self, _: AgentStream[str], outcome: StreamOutcome) -> None:
        self.calls.append(outcome)


# -- the views -------------------------------------------------------------------------------------
async def test_iterates_the_chunks(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo", " world"]))
    answer = AgentStream.from_llm("x", loopback_config)
    assert repr(answer) == "<AgentStream not started chunks=0 chars=0>"
    assert [c async for c in answer] == ["Hel", "lo", " world"]
    assert await answer.text() == "Hello world"
    assert answer.outcome == "completed"
    assert repr(answer) == "<AgentStream completed chunks=3 chars=11>"


async def test_text_drains_the_whole_answer(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("a whole answer, read at once"))
    answer = AgentStream.from_llm("x", loopback_config)
    assert await answer.text() == "a whole answer, read at once"
    assert await answer.text() == "a whole answer, read at once"  # again: no new request
    assert len(loopback.requests) == 1


async def test_text_after_a_partial_read_returns_everything(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["one ", "two ", "three"]))
    answer = AgentStream.from_llm("x", loopback_config)
    assert await anext(answer) == "one "
    assert await answer.text() == "one two three"


async def test_reported_usage(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    loopback.enqueue(Script.text("counted by the provider", include_usage=True, usage=usage))
    answer = AgentStream.from_llm("x", loopback_config)
    await answer.text()
    assert answer.usage == Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18)


async def test_estimated_usage_when_the_provider_sends_none(
    loopback: LoopbackServer, loopback_config: LLMConfig, transport: str
) -> None:
    text = "no usage chunk in this stream"
    loopback.enqueue(Script.text(text, include_usage=False))
    answer = AgentStream.from_llm("x", loopback_config)
    await answer.text()
    assert answer.usage is not None
    if transport == "litellm":
        # litellm counts the tokens itself when the provider sends no usage and
        # hands them on as the provider's; kagura cannot tell them apart there.
        assert answer.usage.completion_tokens > 0
    else:
        assert answer.usage.estimated
        assert answer.usage.completion_tokens == estimate_tokens(len(text))


async def test_finish_reason(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("cut short", finish_reason="length"))
    answer = AgentStream.from_llm("x", loopback_config)
    assert answer.finish_reason is None
    await answer.text()
    assert answer.finish_reason == "length"


async def test_metrics_after_a_run(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo", " world"], ttft=0.02, chunk_delay=0.01))
    answer = AgentStream.from_llm("x", loopback_config)
    assert answer.metrics.ttft_s is None
    assert answer.metrics.tokens_per_s is None
    await answer.text()
    m = answer.metrics
    assert m.ttft_s is not None
    assert m.ttft_s >= 0.015
    assert m.duration_s is not None
    assert m.duration_s >= m.ttft_s + 0.015
    assert (m.chunks, m.chars) == (3, 11)
    assert m.tokens_per_s is not None
    assert m.tokens_per_s > 0


async def test_an_offline_model_needs_no_http() -> None:
    answer = AgentStream.from_llm("x", LLMConfig(model="kagura/replay"), replay_text="Once upon.")
    assert [c async for c in answer] == ["Once ", "upon."]
    assert answer.usage is not None
    assert not answer.usage.estimated


# -- closing ---------------------------------------------------------------------------------------
async def test_aclose_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    answer = AgentStream.from_llm("x", loopback_config)
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    assert await anext(answer) == "xxxx"
    await answer.aclose()
    await answer.aclose()  # idempotent
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1
    assert answer.outcome == "closed"
    assert outcomes.calls == ["closed"]
    with pytest.raises(StopAsyncIteration):
        await anext(answer)
    assert answer.partial_text == "xxxx" * answer.metrics.chunks


async def test_leaving_async_with_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    async with AgentStream.from_llm("x", loopback_config) as answer:
        async for _ in answer:
            break
    assert await loopback.wait_idle(2.0)
    assert answer.outcome == "closed"


async def test_cancelling_the_consumer_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    answer = AgentStream.from_llm("x", loopback_config)
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in answer:
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await loopback.wait_idle(2.0)
    assert outcomes.calls == ["closed"]  # stopped by its consumer, not a failure


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_gc")
async def test_dropping_a_running_stream_closes_it(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(slow_script())
    answer = AgentStream.from_llm("x", loopback_config)
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    async for _ in answer:
        break
    del answer
    assert outcomes.calls == ["closed"]
    assert await loopback.wait_idle(2.0)
    assert loopback.stats().streams_closed_by_client == 1


@pytest.fixture
def problems(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """What went wrong quietly so far: warnings, and exceptions raised in a ``__del__``."""
    unraisable: list[str] = []

    def hook(args: sys.UnraisableHookArgs) -> None:
        unraisable.append(f"{args.err_msg}: {args.exc_value!r}")

    monkeypatch.setattr(sys, "unraisablehook", hook)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lambda: [*unraisable, *(str(w.message) for w in caught)]


async def test_a_stream_dropped_unread_sends_nothing(
    loopback_config: LLMConfig, problems: Callable[[], list[str]], probe: Probe
) -> None:
    answer = AgentStream.from_llm("x", loopback_config)
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    del answer
    gc.collect()
    assert await probe() == [PROBE]  # the only request the server saw is the probe
    assert outcomes.calls == []  # it never started, so it did not stop either
    assert problems() == []


async def test_a_stream_dropped_mid_answer_closes_its_request(
    loopback: LoopbackServer, loopback_config: LLMConfig, problems: Callable[[], list[str]]
) -> None:
    loopback.enqueue(slow_script())
    answer = AgentStream.from_llm("x", loopback_config)
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    assert await anext(answer) == "xxxx"
    assert loopback.stats().streams_in_progress == 1
    del answer  # neither consumed nor closed
    assert outcomes.calls == ["closed"]
    assert await loopback.wait_idle(2.0)
    stats = loopback.stats()
    assert (stats.streams_in_progress, stats.streams_closed_by_client) == (0, 1)
    gc.collect()
    await asyncio.sleep(0.05)  # a late warning (an unclosed response, a pending task) shows here
    assert problems() == []


# -- consumed once, outcomes -----------------------------------------------------------------------
async def test_consumed_once(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("only once"))
    answer = AgentStream.from_llm("x", loopback_config)
    assert "".join([c async for c in answer]) == "only once"
    with pytest.raises(StreamConsumedError, match="already iterated"):
        async for _ in answer:
            pass
    assert len(loopback.requests) == 1


async def test_text_then_iteration_is_consumed_too() -> None:
    answer = AgentStream.from_llm("a b", LLMConfig(model="kagura/echo"))
    assert await answer.text() == "a b"
    with pytest.raises(StreamConsumedError):
        async for _ in answer:
            pass


async def test_outcome_completed_once_and_late_callbacks_run_at_once() -> None:
    answer = AgentStream.from_llm("a b c", LLMConfig(model="kagura/echo"))
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    assert answer.outcome is None
    await answer.text()
    await answer.aclose()  # after the end: stays "completed"
    late = Outcomes()
    answer.add_done_callback(late)
    assert (outcomes.calls, late.calls, answer.outcome) == (
        ["completed"],
        ["completed"],
        "completed",
    )


async def test_error_mid_stream_fails_with_the_partial_text(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor", "ld"], error_event_after=2))
    answer = AgentStream.from_llm("x", loopback_config)
    outcomes = Outcomes()
    answer.add_done_callback(outcomes)
    received: list[str] = []
    with pytest.raises(StreamError) as info:
        await read_into(received, answer)
    assert received == ["Hel", "lo "]
    assert info.value.partial_text == "Hello " == answer.partial_text
    assert outcomes.calls == ["failed"]
    assert answer.outcome == "failed"


# -- pipelines and .observable ---------------------------------------------------------------------
async def test_a_pipeline_is_applied(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["hello wo", "rld and ", "more"]))
    answer = AgentStream.from_llm(
        "x", loopback_config, pipeline=[chunk_words(), rx.map(lambda s: str(s).upper())]
    )
    assert [c async for c in answer] == ["HELLO ", "WORLD ", "AND ", "MORE"]
    assert await answer.text() == "HELLO WORLD AND MORE"
    assert answer.partial_text == "hello world and more"  # the model's own text


async def test_a_non_text_pipeline_keeps_the_raw_text() -> None:
    answer = AgentStream.from_llm("ab cd ef", LLMConfig(model="kagura/echo"), pipeline=rx.map(len))
    assert [n async for n in answer] == [3, 3, 2]
    assert await answer.text() == "ab cd ef"
    assert await answer.final() == 2


async def test_final_of_an_accumulating_pipeline() -> None:
    answer = AgentStream.from_llm("ab cd ef", LLMConfig(model="kagura/echo"), pipeline=accumulate())
    assert await answer.final() == "ab cd ef"


async def test_observable_composes_a_new_request(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("first run"), Script.text("second run"))
    answer = AgentStream.from_llm("x", loopback_config)
    assert await answer.text() == "first run"
    shouted = answer.observable.pipe(rx.map(lambda s: str(s).upper()))
    assert "".join([c async for c in to_async_iterator(shouted)]) == "SECOND RUN"
    assert len(loopback.requests) == 2
    assert answer.partial_text == "second run"  # each run starts afresh, like the metrics
    assert answer.metrics.chars == len("second run")


async def test_final_on_a_stream_that_emitted_nothing_is_a_parse_error() -> None:
    from kagura.errors import ParseError

    stream = AgentStream.from_llm(
        "x",
        LLMConfig(model="kagura/replay"),
        pipeline=[rx.filter(lambda _: False)],
        replay_text="nothing passes",
        tokens_per_s=0,
        ttft=0,
    )
    with pytest.raises(ParseError, match="without an item") as info:
        await stream.final()
    assert info.value.raw_text == "nothing passes"


async def test_with_events_passes_the_tool_events_beside_the_items() -> None:
    from kagura.events import (
        AgentEvent,
        Finish,
        ReasoningDelta,
        TextDelta,
        ToolCall,
        ToolCallDelta,
        ToolResult,
    )
    from kagura.pipes import from_async_iterable

    call = ToolCall("c1", "f", "{}")
    events: list[AgentEvent] = [
        ReasoningDelta("hm"),
        ToolCallDelta(0, "c1", "f", "{}"),
        Finish("tool_calls"),
        call,
        ToolResult("c1", "f", "ok"),
        TextDelta("Done"),
        Usage(1, 1, 2),
        Finish("stop"),
    ]

    async def source() -> AsyncIterable[AgentEvent]:
        for event in events:
            yield event

    stream = AgentStream.from_events(from_async_iterable(source), pipeline=[accumulate()])
    ended: list[StreamOutcome] = []
    stream.add_done_callback(lambda _, outcome: ended.append(outcome))
    items = [item async for item in stream.with_events()]
    assert items == [*events[:2], *events[3:5], "Done"]
    # the stream ends as its view did, and its views of the answer skip the events
    assert ended == ["completed"]
    assert stream.outcome == "completed"
    assert await stream.text() == "Done"
    assert await stream.final() == "Done"
    with pytest.raises(StreamConsumedError):
        stream.with_events()
