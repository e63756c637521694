"""@agent(stream=True): the seed's list, pipelines, parsed snapshots, memory, tools."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from reactivex import operators as rx

from kagura import AgentStream, LLMConfig, agent
from kagura import operators as ops
from kagura.agents.memory import INTERRUPTED_MARKER
from kagura.agents.run import ModelStream
from kagura.agents.tools import ToolLoopError
from kagura.errors import ConfigError, ParseError, ProviderError, StreamConsumedError, StreamError
from kagura.llm.cache import LLMCache, get_llm_cache, set_llm_cache
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[LLMCache]:
    cache = LLMCache()
    set_llm_cache(cache)
    yield cache
    set_llm_cache(None)


# -- the seed's list ---------------------------------------------------------------------------
async def test_basic(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("Once upon a time, a dragon."))

    @agent(stream=True, config=loopback_config)
    async def storyteller(topic: str) -> AsyncIterator[str]:
        """Write a story about {{ topic }}"""
        pass

    stream = storyteller("dragons")
    assert isinstance(stream, AgentStream)
    assert loopback.requests == []  # cold: nothing is sent before iteration
    chunks = [chunk async for chunk in stream]
    assert "".join(chunks) == "Once upon a time, a dragon."
    body = loopback.requests[0].body
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "Write a story about dragons"}]


async def test_yields_chunks(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["Once", " upon", " a time"]))

    @agent(stream=True, config=loopback_config)
    async def storyteller(topic: str) -> AsyncIterator[str]:
        """Write a story about {{ topic }}"""
        ...

    assert [chunk async for chunk in storyteller("dragons")] == ["Once", " upon", " a time"]


async def test_full_text(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("a longer story " * 30, chunk_size=7))

    @agent(stream=True, config=loopback_config)
    async def storyteller(topic: str) -> AsyncIterator[str]:
        """Write a story about {{ topic }}"""
        ...

    stream = storyteller("dragons")
    assert await stream.text() == "a longer story " * 30
    assert stream.outcome == "completed"
    assert stream.finish_reason == "stop"
    assert stream.usage is not None
    assert stream.metrics.chars == len("a longer story " * 30)


async def test_with_config(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    @agent(stream=True, config=loopback_config, model="openai/gpt-4o", temperature=0.2, seed=3)
    async def storyteller(topic: str, style: str = "short") -> AsyncIterator[str]:
        """Write a {{ style }} story about {{ topic }}"""
        ...

    text = await storyteller("tea").text()
    assert text == "Write a short story about tea"  # the server echoes
    body = loopback.requests[0].body
    assert (body["model"], body["temperature"], body["seed"]) == ("gpt-4o", 0.2, 3)


async def test_with_memory(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(
        Script.text("Hello Ann!"),
        Script.text("A very long answer that will be cut", chunk_size=5, chunk_delay=0.05),
        Script.text("Your name is Ann."),
    )

    @agent(stream=True, config=loopback_config, enable_memory=True)
    async def chat(message: str) -> AsyncIterator[str]:
        """{{ message }}"""
        ...

    await chat("I am Ann.").text()
    stream = chat("Tell me everything.")
    async with stream:
        async for chunk in stream:
            assert chunk == "A ver"
            break
    assert stream.outcome == "closed"
    assert await chat("What is my name?").text() == "Your name is Ann."
    sent = loopback.requests[2].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"] == "Hello Ann!"
    assert sent[3]["content"].endswith(f" {INTERRUPTED_MARKER}")
    assert sent[3]["content"].startswith("A ver")
    assert chat.memory is not None
    assert [m.interrupted for m in chat.memory] == [False, False, False, True, False, False]


async def test_with_tools(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    seen: list[str] = []

    async def get_weather(city: str) -> str:
        """Current weather in a city.

        Args:
            city: The city's name.
        """
        seen.append(city)
        return f"Sunny, 21C in {city}"

    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Oslo"}, id="call_a"),
            content=["Let me check. "],
        ),
        Script.text("It is sunny in Oslo."),
    )

    @agent(stream=True, config=loopback_config, tools=[get_weather])
    async def assistant(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    stream = assistant("Weather in Oslo?")
    chunks = [chunk async for chunk in stream]
    assert "".join(chunks) == "Let me check. It is sunny in Oslo."
    assert seen == ["Oslo"]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in stream.tool_calls] == [
        ("call_a", "get_weather", {"city": "Oslo"})
    ]
    assert stream.finish_reason == "stop"
    first, second = (r.body for r in loopback.requests)
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][1]["role"] == "assistant"
    assert second["messages"][1]["content"] == "Let me check. "
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert second["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_a",
        "content": "Sunny, 21C in Oslo",
    }


async def test_non_streaming_default(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("A whole story."))

    @agent(config=loopback_config)
    async def storyteller(topic: str) -> str:
        """Write a story about {{ topic }}"""
        ...

    assert await storyteller("dragons") == "A whole story."
    assert loopback.requests[0].body.get("stream") in (None, False)


async def test_streaming_not_cached(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("first"), Script.text("second"))

    @agent(stream=True, config=loopback_config)
    async def storyteller(topic: str) -> AsyncIterator[str]:
        """Write a story about {{ topic }}"""
        ...

    before = get_llm_cache().stats()
    assert await storyteller("same").text() == "first"
    assert await storyteller("same").text() == "second"
    assert len(loopback.requests) == 2
    assert get_llm_cache().stats() == before


async def test_async_iteration(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.02))

    @agent(stream=True, config=loopback_config)
    async def storyteller(topic: str) -> AsyncIterator[str]:
        """Write a story about {{ topic }}"""
        ...

    stream = storyteller("dragons")
    received: list[str] = []
    async for chunk in stream:
        received.append(chunk)
        if len(received) == 3:
            break
    await stream.aclose()
    assert received == ["xxxx"] * 3
    assert await loopback.wait_idle(timeout=2.0)
    assert loopback.stats().streams_closed_by_client == 1
    assert stream.outcome == "closed"
    with pytest.raises(StreamConsumedError):
        async for _ in stream:
            pass


async def test_error_handling(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("Once upon a time", chunk_size=5, drop_after=1))

    @agent(stream=True, config=loopback_config)
    async def storyteller(topic: str) -> AsyncIterator[str]:
        """Write a story about {{ topic }}"""
        ...

    stream = storyteller("dragons")
    with pytest.raises(StreamError) as info:
        await stream.text()
    assert info.value.partial_text == "Once "
    assert stream.outcome == "failed"
    assert stream.partial_text == "Once "


async def test_a_dropped_stream_closes_its_request_and_is_remembered(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.02))

    @agent(stream=True, config=loopback_config, enable_memory=True)
    async def chat(message: str) -> AsyncIterator[str]:
        """{{ message }}"""
        ...

    stream = chat("hi")
    assert await anext(stream) == "xxxx"
    del stream  # neither read to the end nor closed
    assert await loopback.wait_idle(timeout=2.0)
    assert loopback.stats().streams_closed_by_client == 1
    assert chat.memory is not None
    assert [(m.role, m.interrupted) for m in chat.memory] == [("user", False), ("assistant", True)]


# -- beyond the seed ---------------------------------------------------------------------------
def test_template_errors_are_raised_by_the_call() -> None:
    @agent(stream=True, model="kagura/echo")
    async def storyteller(topic: dict[str, str]) -> AsyncIterator[str]:
        """{{ topic.missing }}"""
        ...

    with pytest.raises(ConfigError, match=r"agent 'storyteller'.*missing"):
        storyteller({})  # raised at once, before any iteration


def test_stream_annotations_are_checked() -> None:
    async def not_an_iterator(topic: str) -> str:
        """{{ topic }}"""
        ...

    with pytest.raises(ConfigError, match="AsyncIterator"):
        agent(stream=True)(not_an_iterator)

    async def plain_items(topic: str) -> AsyncIterator[str]:
        """{{ topic }}"""
        ...

    with pytest.raises(ConfigError, match="items=True needs an item type"):
        agent(stream=True, items=True)(plain_items)

    async def unparseable(topic: str) -> AsyncIterator[int]:
        """{{ topic }}"""
        ...

    with pytest.raises(ConfigError, match="BaseModel, or items=True"):
        agent(stream=True)(unparseable)


async def test_async_generator_functions_and_no_annotation() -> None:
    @agent(stream=True, model="kagura/echo")
    async def generator(topic: str) -> AsyncIterator[str]:
        """About {{ topic }}"""
        yield ""

    @agent(stream=True, model="kagura/echo")
    async def unannotated(topic):  # type: ignore[no-untyped-def]
        """About {{ topic }}"""

    assert await generator("tea").text() == "About tea"
    assert await unannotated("cake").text() == "About cake"


async def test_pipeline_applies_to_the_text() -> None:
    @agent(stream=True, model="kagura/echo", pipeline=ops.accumulate())
    async def growing(text: str) -> AsyncIterator[str]:
        """{{ text }}"""
        ...

    @agent(stream=True, model="kagura/echo", pipeline=[ops.strip_tags("think"), ops.chunk_lines()])
    async def cleaned(text: str) -> AsyncIterator[str]:
        """<think>hidden</think>one
        two"""
        ...

    assert [s async for s in growing("a b c")] == ["a ", "a b ", "a b c"]
    stream = cleaned("ignored")
    assert [line async for line in stream] == ["one\n", "two"]
    assert stream.partial_text == "<think>hidden</think>one\ntwo"  # the model's own text


async def test_recorded_tool_call_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig, recorded_dir: Path
) -> None:
    calls: list[tuple[str, str, str]] = []

    def GetWeatherArgs(city: str, country: str, units: str = "c") -> str:
        """Weather for a city."""
        calls.append((city, country, units))
        return "14C, light rain"

    loopback.enqueue(
        Script.recorded(recorded_dir / "tool_call.sse"),
        Script.text("Light rain in Edinburgh, 14C."),
    )

    @agent(stream=True, config=loopback_config, tools=[GetWeatherArgs])
    async def assistant(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    stream = assistant("What's the weather like in Edinburgh?")
    assert await stream.text() == "Light rain in Edinburgh, 14C."
    assert calls == [("Edinburgh", "UK", "c")]
    assert [c.id for c in stream.tool_calls] == ["call_c91SqDXlYFuETYv8mUHzz6pp"]
    tool_message = loopback.requests[1].body["messages"][-1]
    assert tool_message == {
        "role": "tool",
        "tool_call_id": "call_c91SqDXlYFuETYv8mUHzz6pp",
        "content": "14C, light rain",
    }


async def test_recorded_parallel_tool_calls(
    loopback: LoopbackServer, loopback_config: LLMConfig, recorded_dir: Path
) -> None:
    def GetWeatherArgs(city: str, country: str, units: str) -> str:
        """Weather for a city."""
        return f"rain in {city}"

    async def get_stock_price(ticker: str, exchange: str) -> float:
        """Last price of a stock."""
        raise RuntimeError(f"{exchange} is closed")

    loopback.enqueue(
        Script.recorded(recorded_dir / "parallel_tool_calls.sse"),
        Script.text("Rain, and the market is closed."),
    )

    @agent(stream=True, config=loopback_config, tools=[GetWeatherArgs, get_stock_price])
    async def assistant(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    stream = assistant("Weather in Edinburgh and the AAPL price?")
    assert await stream.text() == "Rain, and the market is closed."
    assert [c.name for c in stream.tool_calls] == ["GetWeatherArgs", "get_stock_price"]
    messages = loopback.requests[1].body["messages"]
    assert len(messages[1]["tool_calls"]) == 2
    assert [m["content"] for m in messages[2:]] == [
        "rain in Edinburgh",
        "Error: RuntimeError: NASDAQ is closed",
    ]


async def test_tool_rounds_are_bounded_while_streaming(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    again = Script.tools(ScriptedToolCall.of("ping", "{}"), content=["Pinging. "])
    loopback.enqueue(again, again)

    @agent(stream=True, config=loopback_config, tools=[ping], max_tool_rounds=1)
    async def pinger(x: str) -> AsyncIterator[str]:
        """{{ x }}"""
        ...

    stream = pinger("go")
    with pytest.raises(ToolLoopError, match="after 1 round") as info:
        await stream.text()
    assert info.value.partial_text == "Pinging. Pinging. "
    assert len(stream.tool_calls) == 2


async def test_cancelling_while_a_tool_runs_closes_everything(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    started = asyncio.Event()

    async def slow_lookup(query: str) -> str:
        """Look something up slowly."""
        started.set()
        await asyncio.sleep(30)
        return "never"

    loopback.enqueue(Script.tools(ScriptedToolCall.of("slow_lookup", {"query": "q"})))

    @agent(stream=True, config=loopback_config, tools=[slow_lookup], enable_memory=True)
    async def assistant(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    stream = assistant("Look it up")

    async def consume() -> str:
        return await stream.text()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.outcome == "closed"
    assert await loopback.wait_idle(timeout=2.0)
    assert len(loopback.requests) == 1
    assert assistant.memory is not None
    assert [m.interrupted for m in assistant.memory] == [False, True]


async def test_memory_ignores_a_failure_before_any_text(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.error(500), Script.text("ok"))

    @agent(stream=True, config=loopback_config, enable_memory=True)
    async def chat(message: str) -> AsyncIterator[str]:
        """{{ message }}"""
        ...

    with pytest.raises(ProviderError):
        await chat("hi").text()
    assert chat.memory is not None
    assert len(chat.memory) == 0
    await chat("hi").text()
    assert len(chat.memory) == 2


class Person(BaseModel):
    name: str
    age: int


class Item(BaseModel):
    title: str


async def test_partial_model_snapshots() -> None:
    @agent(stream=True, model="kagura/echo")
    async def person(name: str, age: int) -> AsyncIterator[Person]:
        """{"name": "{{ name }}", "age": {{ age }}}"""
        ...

    stream = person("Ann", 36)
    assert isinstance(stream, ModelStream)
    snapshots = [p async for p in stream]
    assert len(snapshots) > 1
    assert snapshots[-1] == Person(name="Ann", age=36)
    assert [ops.is_complete(p) for p in snapshots] == [False] * (len(snapshots) - 1) + [True]
    with pytest.raises(AttributeError):  # why a snapshot is typed Partial[Person]
        _ = snapshots[0].age  # pyright: ignore[reportAttributeAccessIssue] (the point)
    assert ops.peek(snapshots[0], lambda p: p.age) is None
    assert await stream.final() == Person(name="Ann", age=36)
    assert "JSON schema" in person.prompt("Ann", 36)


class Recipe(BaseModel):
    title: str
    steps: list[str]


RECIPE = Recipe(title="Tea", steps=[f"step number {i}" for i in range(40)])


async def test_post_throttles_partial_models_over_http(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    document = RECIPE.model_dump_json()  # about 50 chunks, 10 ms apart: half a second
    script = Script.text(document, chunk_size=16, chunk_delay=0.01)
    loopback.enqueue(script, script)
    emitted: list[tuple[float, object]] = []  # (when, what) each item left the post operators

    @agent(stream=True, config=loopback_config)
    async def recipe(dish: str) -> AsyncIterator[Recipe]:
        """A recipe for {{ dish }}"""
        ...

    @agent(
        stream=True,
        config=loopback_config,
        post=[ops.throttle(0.1), rx.do_action(lambda m: emitted.append((time.monotonic(), m)))],
    )
    async def throttled(dish: str) -> AsyncIterator[Recipe]:
        """A recipe for {{ dish }}"""
        ...

    every = [r async for r in recipe("tea")]
    stream = throttled("tea")
    few = [r async for r in stream]
    assert [m for _, m in emitted] == few  # post ran after parsing: it saw the models
    assert 2 <= len(few) < len(every) / 3
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(emitted)]
    assert min(gaps[:-1]) >= 0.095  # the last comes at once, flushed by the completion
    assert [ops.is_complete(r) for r in few] == [False] * (len(few) - 1) + [True]
    assert few[-1] == every[-1] == RECIPE
    assert await stream.final() == RECIPE
    assert await stream.text() == document


async def test_post_follows_the_pipeline_on_a_text_stream() -> None:
    @agent(
        stream=True, model="kagura/echo", pipeline=[ops.buffer_sentences()], post=[ops.accumulate()]
    )
    async def echo(text: str) -> AsyncIterator[str]:
        """{{ text }}"""
        ...

    assert [t async for t in echo("One. Two. Three.")] == [
        "One. ",
        "One. Two. ",
        "One. Two. Three.",
    ]


async def test_final_refuses_a_partial_model_left_last_by_post() -> None:
    @agent(stream=True, model="kagura/echo", post=[rx.take(1)])
    async def person(name: str, age: int) -> AsyncIterator[Person]:
        """{"name": "{{ name }}", "age": {{ age }}}"""
        ...

    with pytest.raises(ParseError, match="ended on a partial model"):
        await person("Ann", 36).final()


async def test_with_config_streams_from_another_endpoint(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    @agent(stream=True, model="kagura/echo")
    async def person(name: str, age: int) -> AsyncIterator[Person]:
        """{"name": "{{ name }}", "age": {{ age }}}"""
        ...

    loopback.enqueue(Script.text('{"name": "Bo", "age": 7}', chunk_size=3))
    stream = person.with_config(loopback_config, model="openai/gpt-4o")("Ann", 36)
    assert isinstance(stream, ModelStream)
    assert await stream.final() == Person(name="Bo", age=7)
    assert loopback.requests[0].body["model"] == "gpt-4o"
    assert await person("Ann", 36).final() == Person(name="Ann", age=36)  # unchanged
    assert len(loopback.requests) == 1


async def test_items_one_by_one() -> None:
    @agent(stream=True, model="kagura/echo", items=True)
    async def todo(a: str, b: str) -> AsyncIterator[Item]:
        """[{"title": "{{ a }}"}, {"title": "{{ b }}"}]"""
        ...

    assert [item async for item in todo("tea", "cake")] == [Item(title="tea"), Item(title="cake")]
    assert '"type":"array"' in todo.prompt("x", "y")
