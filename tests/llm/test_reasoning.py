"""Reasoning travels as ReasoningDelta beside the answer, never inside its text.

Over the OpenAI protocol (``reasoning_content`` deltas as DeepSeek, vLLM and Ollama
send them, or ``reasoning``), through the direct transport and through litellm.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kagura import LLMConfig, agent, call_llm, call_llm_stream, stream_to_string
from kagura import operators as ops
from kagura.errors import StreamConsumedError, StreamError
from kagura.events import ReasoningDelta, TextDelta
from kagura.llm.metrics import StreamMetrics
from kagura.llm.streaming import stream_events
from kagura.pipes import AgentStream
from kagura.testing.loopback import LoopbackServer, Script

THINKING = ("Let me ", "think: 2+2 ", "is 4.")


async def test_reasoning_deltas_come_apart_from_the_text(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("The answer is 4.", reasoning=THINKING))
    metrics = StreamMetrics()
    events = [e async for e in stream_events("2+2?", loopback_config, metrics=metrics)]
    reasoning = [e.text for e in events if isinstance(e, ReasoningDelta)]
    text = [e.text for e in events if isinstance(e, TextDelta)]
    assert reasoning == list(THINKING)
    assert "".join(text) == "The answer is 4."
    first_reasoning = next(i for i, e in enumerate(events) if isinstance(e, ReasoningDelta))
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert first_reasoning < first_text
    assert metrics.reasoning_chars == sum(map(len, THINKING))
    assert metrics.chars == len("The answer is 4.")


async def test_the_text_stream_carries_the_answer_only(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("Four.", reasoning=THINKING))
    assert await stream_to_string(call_llm_stream("2+2?", loopback_config)) == "Four."


async def test_a_whole_answer_keeps_its_reasoning_apart(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("Four.", reasoning=THINKING))
    config = loopback_config.model_copy(update={"enable_cache": False})
    assert await call_llm("2+2?", config) == "Four."


async def test_a_reasoning_only_start_counts_as_the_first_token(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    # The reasoning arrives at once, the answer after 0.5 s: a 0.3 s first-token limit holds.
    loopback.enqueue(Script(reasoning=("thinking",), content=("", "done"), chunk_delay=0.5))
    config = loopback_config.model_copy(update={"first_token_timeout": 0.3})
    assert await stream_to_string(call_llm_stream("q", config)) == "done"


async def test_the_reasoning_field_of_other_servers_is_read_too(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    recorded = tmp_path / "reasoning.sse"
    chunk = (
        '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'
    )
    recorded.write_text(
        "".join(
            f"data: {chunk % (delta, finish)}\n\n"
            for delta, finish in (
                ('{"role":"assistant","content":""}', "null"),
                ('{"reasoning":"hmm"}', "null"),
                ('{"content":"ok"}', "null"),
                ("{}", '"stop"'),
            )
        )
        + "data: [DONE]\n\n"
    )
    loopback.enqueue(Script.recorded(recorded))
    config = LLMConfig(model="openai/m", api_base=loopback.base_url, api_key="sk-test-01234567")
    events = [e async for e in stream_events("q", config)]
    assert [e for e in events if isinstance(e, ReasoningDelta | TextDelta)] == [
        ReasoningDelta("hmm"),
        TextDelta("ok"),
    ]


async def test_agent_stream_keeps_reasoning_apart_from_its_items(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("One. Two.", reasoning=THINKING))
    stream = AgentStream.from_llm("q", loopback_config, pipeline=[ops.buffer_sentences()])
    assert [s async for s in stream] == ["One. ", "Two."]
    assert stream.reasoning == "".join(THINKING)
    assert await stream.text() == "One. Two."


async def test_with_reasoning_streams_the_thinking_then_the_answer_in_one_request(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("One. Two.", reasoning=THINKING))
    stream = AgentStream.from_llm("q", loopback_config, pipeline=[ops.buffer_sentences()])
    items = [item async for item in stream.with_reasoning()]
    assert items == [*(ReasoningDelta(t) for t in THINKING), "One. ", "Two."]
    assert len(loopback.requests) == 1
    assert stream.reasoning == "".join(THINKING)
    assert stream.metrics.reasoning_chars == len("".join(THINKING))
    with pytest.raises(StreamConsumedError):
        aiter(stream)


async def test_with_reasoning_waits_for_the_pipelines_last_flush_and_carries_errors(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("abcdefgh", chunk_size=2, reasoning=("hm",), drop_after=3))
    stream = AgentStream.from_llm("q", loopback_config, pipeline=[ops.throttle(0.05)])
    view = stream.with_reasoning()
    seen: list[object] = []

    async def drain() -> None:
        async for item in view:
            seen.append(item)

    with pytest.raises(StreamError) as caught:
        await drain()
    assert seen[0] == ReasoningDelta("hm")
    assert caught.value.partial_text == "abcd"
    assert await loopback.wait_idle(2.0)


async def test_with_reasoning_after_iterating_is_refused(loopback_config: LLMConfig) -> None:
    stream = AgentStream.from_llm("q", loopback_config)
    async for _ in stream:
        break
    await stream.aclose()
    with pytest.raises(StreamConsumedError):
        stream.with_reasoning()


async def test_text_and_final_after_with_reasoning_make_no_second_request(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("One. Two.", reasoning=THINKING))
    stream = AgentStream.from_llm("q", loopback_config, pipeline=[ops.buffer_sentences()])
    view = stream.with_reasoning()
    async for _ in view:
        break
    assert await stream.text() == "One. Two."
    assert await stream.final() == "Two."
    assert len(loopback.requests) == 1


async def test_an_agent_streams_reasoning_and_counts_it(loopback: LoopbackServer) -> None:
    config = LLMConfig(model="openai/x", api_base=loopback.base_url, api_key="sk-test-0123456789")

    @agent(stream=True, config=config)
    async def think(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    loopback.enqueue(Script.text("Four.", reasoning=THINKING))
    stream = think("2+2?")
    assert await stream.text() == "Four."
    assert stream.reasoning == "".join(THINKING)
    assert stream.metrics.reasoning_chars == len("".join(THINKING))
    assert (stream.metrics.model, stream.metrics.attempts) == ("openai/x", 1)
