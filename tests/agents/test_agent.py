"""@agent without streaming: the decorator, prompts, return-type parsing, cache, memory, tools."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from kagura import ConversationMemory, LLMConfig, agent
from kagura.agents.spec import ConfigSettings
from kagura.agents.tools import ToolLoopError
from kagura.errors import ConfigError, ParseError
from kagura.llm.cache import LLMCache, get_llm_cache, set_llm_cache
from kagura.llm.request import prepare_request
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall

ECHO = LLMConfig(model="kagura/echo")


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[LLMCache]:
    cache = LLMCache()
    set_llm_cache(cache)
    yield cache
    set_llm_cache(None)


def user_content(loopback: LoopbackServer, i: int = -1) -> str:
    return loopback.requests[i].body["messages"][-1]["content"]


# -- the decorator ---------------------------------------------------------------------------
async def test_bare_and_called_forms() -> None:
    @agent
    async def plain(text: str) -> str:
        """{{ text }}"""
        ...

    @agent(config=ECHO)
    async def configured(text: str) -> str:
        """{{ text }}"""
        ...

    assert plain.config.model == LLMConfig().model
    assert await configured("hello there") == "hello there"


async def test_wraps_the_function_and_never_runs_its_body() -> None:
    calls: list[str] = []

    async def summarize(text: str, words: int = 10) -> str:
        """Summarize in {{ words }} words: {{ text }}"""
        calls.append(text)
        raise AssertionError("the body never runs")

    wrapped = agent(config=ECHO)(summarize)
    assert wrapped.__name__ == "summarize"
    assert wrapped.__doc__ == summarize.__doc__
    assert wrapped.__wrapped__ is summarize  # type: ignore[attr-defined] (set by functools.wraps)
    assert inspect.signature(wrapped) == inspect.signature(summarize)
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped("tea") == "Summarize in 10 words: tea"
    assert calls == []


async def test_sync_functions_become_awaitable_agents() -> None:
    @agent(config=ECHO)
    def echo(text: str) -> str:
        """{{ text }}"""
        return text

    assert await echo("one two") == "one two"


def test_missing_docstring_names_the_agent() -> None:
    async def no_doc(topic: str) -> str: ...

    with pytest.raises(ConfigError, match=r"agent 'no_doc' has no docstring"):
        agent(no_doc)


def test_undefined_variable_names_the_agent_and_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"agent 'storyteller'.*'topik'.*parameters: topic"):

        @agent
        async def storyteller(topic: str) -> str:
            """Write a story about {{ topik }}"""
            ...


async def test_undefined_attribute_at_call_time() -> None:
    @agent(config=ECHO)
    async def greet(user: dict[str, str]) -> str:
        """Hello {{ user.nmae }}"""
        ...

    with pytest.raises(ConfigError, match=r"agent 'greet'.*nmae"):
        await greet({"name": "Ann"})


async def test_arguments_are_checked_like_a_call() -> None:
    @agent(config=ECHO)
    async def pair(a: str, b: str = "B") -> str:
        """{{ a }}{{ b }}"""
        ...

    with pytest.raises(TypeError):
        await pair()  # type: ignore[call-arg] (the missing argument is the test)
    assert await pair("A") == "AB"
    assert await pair(b="b", a="a") == "ab"


async def test_var_keyword_arguments_are_template_variables() -> None:
    @agent(config=ECHO)
    async def fill(template_name: str, **fields: str) -> str:
        """{{ template_name }}: {{ city }} {{ fields | length }}"""
        ...

    assert await fill("t", city="Oslo") == "t: Oslo 1"
    with pytest.raises(ConfigError, match="'city'"):
        await fill("t")


def test_prompt_shows_what_a_call_sends() -> None:
    @agent(config=ECHO)
    async def count(word: str) -> int:
        """How many letters in {{ word }}?"""
        ...

    prompt = count.prompt("tea")
    assert prompt.startswith("How many letters in tea?\n\n")
    assert "integer" in prompt


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"pipeline": [lambda o: o]}, "pipeline= applies to streams"),
        ({"post": [lambda o: o]}, "post= applies to streams"),
        ({"items": True}, "items=True applies to streams"),
        ({"max_tokens": 5}, "max_tokens must be set on LLMConfig"),
        ({"temperature": 5.0}, "invalid settings: temperature"),
        ({"max_tool_rounds": -1}, "max_tool_rounds"),
        ({"enable_memory": True, "max_messages": 0}, "max_messages"),
    ],
)
def test_conflicting_options_are_config_errors(options: dict[str, Any], match: str) -> None:
    async def fn(x: str) -> str:
        """{{ x }}"""
        ...

    with pytest.raises(ConfigError, match=match):
        agent(**options)(fn)


@pytest.mark.parametrize("stream", [False, True])
def test_llmconfig_settings_are_refused_as_a_plain_call_refuses_them(stream: bool) -> None:
    async def fn(x: str):  # no annotation: a valid agent either way
        """{{ x }}"""
        ...

    reserved: dict[str, Any] = {"max_tokens": 5, "messages": []}
    with pytest.raises(ConfigError) as plain:
        prepare_request("x", None, reserved)
    with pytest.raises(ConfigError) as by_agent:
        agent(stream=stream, **reserved)(fn)
    assert str(by_agent.value) == f"agent 'fn': {plain.value}"
    assert "max_tokens, messages must be set on LLMConfig" in str(plain.value)


def test_iterator_annotation_needs_stream() -> None:
    async def chunks(x: str) -> AsyncIterator[str]:
        """{{ x }}"""
        ...

    with pytest.raises(ConfigError, match="add stream=True"):
        agent(chunks)


# -- calls over real HTTP -----------------------------------------------------------------------
async def test_non_streaming_default(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("A tale of dragons."))

    @agent(config=loopback_config)
    async def storyteller(topic: str) -> str:
        """Write a story about {{ topic }}"""
        ...

    assert await storyteller("dragons") == "A tale of dragons."
    body = loopback.requests[0].body
    assert body.get("stream") in (None, False)
    assert body["messages"] == [{"role": "user", "content": "Write a story about dragons"}]


async def test_answers_are_cached(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("first"), Script.text("second"))

    @agent(config=loopback_config)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    assert await ask("same") == "first"
    assert await ask("same") == "first"
    assert await ask("other") == "second"
    assert len(loopback.requests) == 2
    assert get_llm_cache().stats().hits == 1


async def test_model_temperature_and_provider_kwargs(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    @agent(config=loopback_config, model="openai/gpt-4o", temperature=0.1, seed=7)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    assert ask.config.api_base == loopback_config.api_base
    assert await ask("hi") == "hi"
    body = loopback.requests[0].body
    assert (body["model"], body["temperature"], body["seed"]) == ("gpt-4o", 0.1, 7)


# -- per-call settings: with_config -----------------------------------------------------------
async def test_with_config_points_an_agent_at_another_endpoint_and_model(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    @agent(model="kagura/echo", temperature=0.3, seed=7)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    loopback.enqueue(Script.text("from the server"))
    remote = ask.with_config(
        model="openai/gpt-4o",
        api_base=loopback_config.api_base,
        api_key="sk-test-0123456789",
        max_retries=0,
        transport=loopback_config.transport,
    )
    assert await remote("hi") == "from the server"
    body = loopback.requests[0].body
    assert (body["model"], body["temperature"], body["seed"]) == ("gpt-4o", 0.3, 7)
    assert await ask("hi") == "hi"  # the agent itself is unchanged: still offline
    assert len(loopback.requests) == 1
    assert (ask.config.model, remote.config.model) == ("kagura/echo", "openai/gpt-4o")


async def test_with_config_takes_a_whole_config_then_settings(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    @agent(config=ECHO)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    remote = ask.with_config(loopback_config, temperature=0.0)
    assert await remote("over http") == "over http"  # the loopback server echoes
    assert loopback.requests[0].body["temperature"] == 0.0
    assert remote.config == loopback_config.model_copy(update={"temperature": 0.0})


async def test_with_config_cannot_collide_with_the_functions_parameters() -> None:
    @agent(config=ECHO)
    async def describe(model: str, config: str, api_base: str = "here") -> str:
        """{{ model }} {{ config }} {{ api_base }}"""
        ...

    replay = describe.with_config(model="kagura/replay")
    assert await describe("a", "b") == "a b here"
    assert await describe.with_config(temperature=0.0)(model="m", config="c") == "m c here"
    story = await replay("a", "b")
    assert story != "a b here"  # the bundled story: the other model answered
    assert replay.prompt("a", "b", api_base="there") == "a b there"


async def test_with_config_shares_the_memory() -> None:
    @agent(config=ECHO, enable_memory=True)
    async def chat(message: str) -> str:
        """{{ message }}"""
        ...

    cold = chat.with_config(temperature=0.0)
    assert cold.memory is chat.memory
    assert cold.tools is chat.tools
    await chat("one")
    await cold("two")
    assert chat.memory is not None
    assert [m["content"] for m in chat.memory.to_messages()] == ["one", "one", "two", "two"]


async def test_with_config_answers_are_cached_per_config() -> None:
    @agent(config=ECHO)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    assert await ask("same") == await ask.with_config(temperature=0.0)("same") == "same"
    assert get_llm_cache().stats().hits == 0  # another config, another entry
    assert await ask.with_config(temperature=0.0)("same") == "same"
    assert get_llm_cache().stats().hits == 1


def test_with_config_keywords_are_llmconfig_fields() -> None:
    """The typed keywords of with_config list every LLMConfig field (a new field goes in both)."""
    assert set(ConfigSettings.__annotations__) == set(LLMConfig.model_fields)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"modle": "gpt-4o"}, "invalid settings: modle"),
        ({"temperature": 9.0}, "invalid settings: temperature"),
        ({"api_base": "not a url"}, "invalid settings: api_base"),
    ],
)
def test_with_config_refuses_unknown_and_invalid_settings(
    settings: dict[str, Any], match: str
) -> None:
    @agent(config=ECHO)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    with pytest.raises(ConfigError, match=f"agent 'ask': {match}"):
        ask.with_config(**settings)


async def test_structured_return_gets_the_schema_and_parses(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text('```json\n{"name": "Ann", "age": 36}\n```'))

    @agent(config=loopback_config)
    async def extract(text: str) -> Person:
        """Extract the person from: {{ text }}"""
        ...

    assert await extract("Ann is 36.") == Person(name="Ann", age=36)
    prompt = user_content(loopback)
    assert prompt.startswith("Extract the person from: Ann is 36.\n\n")
    assert '"age":{"title":"Age","type":"integer"}' in prompt


async def test_locally_defined_return_types_resolve() -> None:
    class Local(BaseModel):
        word: str

    @agent(config=ECHO)
    async def wrap(word: str) -> Local:
        """{"word": "{{ word }}"}"""
        ...

    assert await wrap("tea") == Local(word="tea")


async def test_forward_references_resolve_on_the_first_call() -> None:
    @agent(config=ECHO)
    async def later(word: str) -> DefinedLater:
        """{"word": "{{ word }}"}"""
        ...

    assert await later("tea") == DefinedLater(word="tea")


class DefinedLater(BaseModel):
    word: str


async def test_a_late_return_type_is_checked_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    @agent(config=ECHO)
    async def later(word: str) -> NotYetDefined:  # noqa: F821 (defined below, after decoration)
        """{{ word }}"""
        ...

    with pytest.raises(ConfigError, match="cannot resolve its return annotation"):
        await later("tea")
    monkeypatch.setitem(globals(), "NotYetDefined", AsyncIterator[str])
    for _ in range(2):  # each call, not only the first to resolve it
        with pytest.raises(ConfigError, match="add stream=True"):
            await later("tea")


@pytest.mark.parametrize(
    ("answer", "annotation", "expected"),
    [
        ("42", int, 42),
        ("The answer is 3.5", float, 3.5),
        ("Yes.", bool, True),
        ("null", int | None, None),
        ('["a", "b"]', list[str], ["a", "b"]),
        ("Negative", Literal["positive", "negative"], "negative"),
    ],
)
async def test_scalar_and_container_returns(
    loopback: LoopbackServer,
    loopback_config: LLMConfig,
    answer: str,
    annotation: Any,
    expected: Any,
) -> None:
    loopback.enqueue(Script.text(answer))

    async def ask(q: str) -> Any:
        """{{ q }}"""
        ...

    ask.__annotations__["return"] = annotation
    assert await agent(config=loopback_config)(ask)("q") == expected


async def test_failed_parse_raises_parse_error_with_raw_text(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("I cannot answer that."))

    @agent(config=loopback_config)
    async def extract(text: str) -> Person:
        """{{ text }}"""
        ...

    with pytest.raises(ParseError) as info:
        await extract("x")
    assert info.value.raw_text == "I cannot answer that."


# -- memory ------------------------------------------------------------------------------------
async def test_memory_is_sent_with_the_next_call(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("Hello Ann!"), Script.text("Your name is Ann."))

    @agent(config=loopback_config, enable_memory=True, max_messages=10)
    async def chat(message: str) -> str:
        """{{ message }}"""
        ...

    await chat("I am Ann.")
    assert await chat("What is my name?") == "Your name is Ann."
    assert [m["content"] for m in loopback.requests[1].body["messages"]] == [
        "I am Ann.",
        "Hello Ann!",
        "What is my name?",
    ]
    assert chat.memory is not None
    assert len(chat.memory) == 4


async def test_memory_parameter_receives_the_memory() -> None:
    seen: list[ConversationMemory | None] = []

    @agent(config=ECHO)
    async def chat(message: str, memory: ConversationMemory | None = None) -> str:
        """{{ message }} ({{ memory | length }} remembered)"""
        seen.append(memory)
        ...

    assert await chat("one") == "one (0 remembered)"
    assert await chat("two") == "two (2 remembered)"
    assert chat.memory is not None  # a memory parameter turns memory on
    own = ConversationMemory()
    assert await chat("three", memory=own) == "three (0 remembered)"
    assert [m.content for m in own] == ["three (0 remembered)", "three (0 remembered)"]
    assert len(chat.memory) == 4
    assert seen == []
    with pytest.raises(ConfigError, match="memory= must be a ConversationMemory"):
        await chat("four", memory="oops")  # type: ignore[arg-type] (the wrong type is the test)


async def test_memory_parameter_without_default_may_be_left_out() -> None:
    @agent(config=ECHO)
    async def chat(message: str, memory: ConversationMemory) -> str:
        """{{ message }}"""
        ...

    assert await chat("hi") == "hi"  # type: ignore[call-arg] (typed callers declare "= None")
    assert chat.memory is not None
    assert len(chat.memory) == 2


# -- tools -------------------------------------------------------------------------------------
def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: The city's name.
    """
    return f"Sunny in {city}"


async def test_tools_without_streaming(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(
        Script.tools(ScriptedToolCall.of("get_weather", {"city": "Oslo"}, id="call_1")),
        Script.text("It is sunny in Oslo."),
    )

    @agent(config=loopback_config, tools=[get_weather])
    async def assistant(question: str) -> str:
        """{{ question }}"""
        ...

    assert await assistant("Weather in Oslo?") == "It is sunny in Oslo."
    first, second = (r.body for r in loopback.requests)
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "Sunny in Oslo",
    }


async def test_tool_loop_is_bounded(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    again = Script.tools(ScriptedToolCall.of("get_weather", {"city": "Oslo"}))
    loopback.enqueue(again, again, again)

    @agent(config=loopback_config, tools=[get_weather], max_tool_rounds=2)
    async def assistant(question: str) -> str:
        """{{ question }}"""
        ...

    with pytest.raises(ToolLoopError, match="after 2 rounds"):
        await assistant("Weather?")
    assert len(loopback.requests) == 3


def test_functools_partial_agents_keep_working() -> None:
    @agent(config=ECHO)
    async def pair(a: str, b: str) -> str:
        """{{ a }}-{{ b }}"""
        ...

    assert pair.prompt("x", "y") == functools.partial(pair.prompt, "x")("y") == "x-y"


async def test_offline_options_never_reach_a_provider(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    # One agent definition for offline demos and real models: the offline options stay home.
    offline_only: dict[str, Any] = {"replay_text": "Canned.", "ttft": 0.2, "tokens_per_s": 5}
    loopback.enqueue(Script.text("real answer"), Script.text("real stream"))

    @agent(config=loopback_config, **offline_only)
    async def ask(question: str) -> str:
        """{{ question }}"""
        ...

    @agent(config=loopback_config, stream=True, **offline_only)
    async def tell(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    assert await ask("hi") == "real answer"
    assert await tell("ho").text() == "real stream"
    for request in loopback.requests:
        assert offline_only.keys().isdisjoint(request.body)
    assert [user_content(loopback, i) for i in (0, 1)] == ["hi", "ho"]


async def test_template_runtime_errors_are_config_errors_naming_the_agent() -> None:
    @agent(config=ECHO)
    async def split(total: int, people: int) -> str:
        """Each of {{ people }} pays {{ total / people }}."""
        ...

    @agent(config=ECHO, stream=True)
    async def tell(total: int, people: int) -> AsyncIterator[str]:
        """Each of {{ people }} pays {{ total / people }}."""
        ...

    with pytest.raises(ConfigError, match=r"agent 'split'.*line 1.*ZeroDivisionError") as info:
        await split(9, 0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(ConfigError, match=r"agent 'tell'.*ZeroDivisionError") as info:
        tell(9, 0)  # a stream's call raises it at once, before anything is sent
    assert isinstance(info.value.__cause__, ZeroDivisionError)
