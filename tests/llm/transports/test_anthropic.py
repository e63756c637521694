"""The direct Anthropic Messages transport, through the public API, over real HTTP.

Against the loopback server's Anthropic dialect (and a :class:`~_wire_servers.RawServer`
for byte splits): text, thinking and tool calls streamed and whole, usage and finish
reasons, each HTTP error typed, 529 retried, errors and cuts mid-stream, the request
body translated from kagura's OpenAI-shaped messages, keys from the environment, and
a ``break`` that closes the stream. The example streams of Anthropic's documentation
(``tests/data/anthropic``) are replayed byte for byte; the same scripts through litellm
(the reference) and through this transport give the same text, tool calls and usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from _wire_servers import RawServer, sse_reply
from kagura import LLMConfig, agent, call_llm, call_llm_stream
from kagura.errors import (
    AuthError,
    ConfigError,
    LLMError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderError,
    RateLimitError,
    StreamError,
)
from kagura.events import (
    Completion,
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
)
from kagura.llm.metrics import StreamMetrics
from kagura.llm.oauth import (
    ClientCredentialsProvider,
    register_token_provider,
    unregister_token_provider,
)
from kagura.llm.request import ChatRequest
from kagura.llm.streaming import stream_events
from kagura.llm.transports import resolve_transport
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall

DOCS = Path(__file__).resolve().parents[2] / "data" / "anthropic"
KEY = "sk-ant-test-0123456789"
GUARD = 5.0
Api = Literal["stream", "call"]
APIS = pytest.mark.parametrize("api", ["stream", "call"])


def config(base: str, **overrides: Any) -> LLMConfig:
    """An ``anthropic/`` config for a server's root URL: no retries, no cache."""
    settings: dict[str, Any] = {
        "model": "anthropic/claude-x",
        "api_base": base,
        "api_key": KEY,
        "max_retries": 0,
        "enable_cache": False,
    }
    settings.update(overrides)
    return LLMConfig(**settings)


async def events_of(cfg: LLMConfig, prompt: Any = "hi", **kwargs: Any) -> list[StreamEvent]:
    # litellm's first call imports it: seconds, so a wider guard on that path.
    async with asyncio.timeout(60 if cfg.transport == "litellm" else GUARD):
        return [e async for e in stream_events(prompt, cfg, **kwargs)]


async def text_of(cfg: LLMConfig, prompt: Any = "hi", **kwargs: Any) -> str:
    async with asyncio.timeout(60 if cfg.transport == "litellm" else GUARD):
        return "".join([c async for c in call_llm_stream(prompt, cfg, **kwargs)])


async def ask(api: Api, cfg: LLMConfig, prompt: Any = "hi") -> str:
    if api == "stream":
        return await text_of(cfg, prompt)
    async with asyncio.timeout(GUARD):
        return await call_llm(prompt, cfg)


async def complete(cfg: LLMConfig, prompt: str = "hi", **params: Any) -> Completion:
    request = ChatRequest([{"role": "user", "content": prompt}], cfg, params)
    async with asyncio.timeout(GUARD):
        return await resolve_transport(cfg).complete(request)


def of_type(events: list[StreamEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def assert_no_secret(err: BaseException, secret: str) -> None:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for shown in (str(current), repr(current), repr(current.args)):
            assert secret not in shown, f"{type(current).__name__} shows the secret: {shown!r}"
        current = current.__cause__ or current.__context__


# -- text, thinking, tool calls ------------------------------------------------------------------
async def test_anthropic_models_take_this_transport() -> None:
    assert resolve_transport(LLMConfig(model="anthropic/claude-x")).name == "anthropic"
    forced = LLMConfig(model="anthropic/claude-x", transport="litellm")
    assert resolve_transport(forced).name == "litellm"


async def test_a_text_answer_and_the_request_on_the_wire(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello from Claude"))
    assert await text_of(config(loopback.url), "hi") == "Hello from Claude"
    request = loopback.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.body == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.7,
        "stream": True,
    }
    assert loopback.stats().streams_completed == 1


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/messages"])
async def test_api_base_with_or_without_the_path(loopback: LoopbackServer, suffix: str) -> None:
    loopback.enqueue(Script.text("ok"))
    assert await text_of(config(loopback.url + suffix)) == "ok"
    assert loopback.requests[-1].path == "/v1/messages"


@APIS
async def test_thinking_is_reasoning_and_never_text(loopback: LoopbackServer, api: Api) -> None:
    thinking = ("Let me think. ", "2+2 is 4.")
    loopback.enqueue(Script.text("Four.", reasoning=thinking))
    assert await ask(api, config(loopback.url)) == "Four."


async def test_thinking_streams_as_reasoning_deltas_first(loopback: LoopbackServer) -> None:
    thinking = ("Let me think. ", "2+2 is 4.")
    loopback.enqueue(Script.text("Four.", reasoning=thinking))
    metrics = StreamMetrics()
    events = await events_of(config(loopback.url), metrics=metrics)
    assert [e.text for e in of_type(events, ReasoningDelta)] == list(thinking)
    assert "".join(e.text for e in of_type(events, TextDelta)) == "Four."
    kinds = [type(e) for e in events]
    assert kinds.index(ReasoningDelta) < kinds.index(TextDelta)
    assert metrics.reasoning_chars == len("".join(thinking))


async def test_a_whole_answer_keeps_thinking_and_tool_calls_apart(loopback: LoopbackServer) -> None:
    call = ScriptedToolCall.of("get_weather", {"city": "Oslo"}, id="toolu_9")
    loopback.enqueue(Script.tools(call, content=["Checking."], reasoning=("Hmm.",)))
    answer = await complete(config(loopback.url))
    assert answer.text == "Checking."
    assert answer.reasoning == "Hmm."
    assert answer.tool_calls == (ToolCall("toolu_9", "get_weather", '{"city":"Oslo"}'),)
    assert answer.finish_reason == "tool_calls"
    assert loopback.requests[-1].body["stream"] is False


async def test_streamed_tool_calls_are_indexed_by_their_order(loopback: LoopbackServer) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Oslo"}, fragment_size=5, id="toolu_a"),
            ScriptedToolCall.of("get_time", {"zone": "CET"}, fragment_size=3, id="toolu_b"),
            content=["Let me check."],
        )
    )
    metrics = StreamMetrics()
    events = await events_of(config(loopback.url), metrics=metrics)
    assert "".join(e.text for e in of_type(events, TextDelta)) == "Let me check."
    assert metrics.tool_calls == [
        ToolCall("toolu_a", "get_weather", '{"city": "Oslo"}'),
        ToolCall("toolu_b", "get_time", '{"zone": "CET"}'),
    ]
    assert metrics.finish_reason == "tool_calls"


async def test_a_tool_call_without_arguments_gets_an_empty_object(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.tools(ScriptedToolCall(name="now", id="toolu_n")))
    metrics = StreamMetrics()
    await events_of(config(loopback.url), metrics=metrics)
    assert metrics.tool_calls == [ToolCall("toolu_n", "now", "{}")]


# -- usage and finish ------------------------------------------------------------------------
async def test_usage_comes_once_before_the_finish(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hi", usage={"prompt_tokens": 11, "completion_tokens": 7}))
    events = await events_of(config(loopback.url))
    assert of_type(events, Usage) == [Usage(11, 7, 18)]
    assert isinstance(events[-1], Finish)
    assert isinstance(events[-2], Usage)


async def test_cache_tokens_count_as_prompt_tokens(loopback: LoopbackServer) -> None:
    usage = {
        "input_tokens": 5,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 100,
        "output_tokens": 9,
    }
    loopback.enqueue(Script.text("Hi", usage=usage), Script.text("Hi", usage=usage))
    assert of_type(await events_of(config(loopback.url)), Usage) == [Usage(125, 9, 134)]
    assert (await complete(config(loopback.url))).usage == Usage(125, 9, 134)


async def test_a_stream_without_usage_gets_an_estimate(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello there", include_usage=False))
    (usage,) = of_type(await events_of(config(loopback.url)), Usage)
    assert usage.estimated


@pytest.mark.parametrize(
    ("scripted", "finish"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("stop_sequence", "stop"),
        ("pause_turn", "length"),
        ("something_new", "something_new"),
    ],
)
@APIS
async def test_stop_reasons_in_openai_words(
    loopback: LoopbackServer, api: Api, scripted: str, finish: str
) -> None:
    loopback.enqueue(Script.text("x", finish_reason=scripted))
    if api == "stream":
        (event,) = of_type(await events_of(config(loopback.url)), Finish)
        assert event.reason == finish
    else:
        assert (await complete(config(loopback.url))).finish_reason == finish


# -- errors before the stream ----------------------------------------------------------------
STATUSES: dict[int, type[LLMError]] = {
    400: ProviderError,
    401: AuthError,
    403: AuthError,
    404: ModelNotFoundError,
    429: RateLimitError,
    500: ProviderError,
    529: ProviderError,
}


@APIS
@pytest.mark.parametrize("status", STATUSES)
async def test_each_http_error_is_typed(loopback: LoopbackServer, api: Api, status: int) -> None:
    loopback.enqueue(Script.error(status))
    with pytest.raises(STATUSES[status]) as info:
        await ask(api, config(loopback.url))
    assert not isinstance(info.value, StreamError)
    assert info.value.status_code == status
    kind = {400: "invalid_request", 401: "authentication", 403: "permission", 404: "not_found"}
    kind |= {429: "rate_limit", 500: "api", 529: "overloaded"}
    assert f"({kind[status]}_error)" in str(info.value)
    assert len(loopback.requests) == 1


async def test_the_providers_message_is_in_the_error(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.error(400, "max_tokens: 100000 > 64000, the maximum"))
    with pytest.raises(ProviderError, match="max_tokens: 100000 > 64000"):
        await text_of(config(loopback.url, max_retries=3))
    assert len(loopback.requests) == 1  # a 400 is not retried


@APIS
async def test_529_overloaded_is_retried_within_max_retries(
    loopback: LoopbackServer, api: Api
) -> None:
    loopback.enqueue(Script.error(529, retry_after=0), Script.text("second time"))
    assert await ask(api, config(loopback.url, max_retries=1)) == "second time"
    assert len(loopback.requests) == 2


async def test_529_twice_with_one_retry_is_two_requests_and_an_error(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(*[Script.error(529, retry_after=0)] * 2, Script.text("never"))
    with pytest.raises(ProviderError) as info:
        await text_of(config(loopback.url, max_retries=1))
    assert info.value.status_code == 529
    assert len(loopback.requests) == 2


# -- errors in the stream --------------------------------------------------------------------
async def test_overloaded_mid_stream_is_a_stream_error_with_the_partial_text(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("Hello world", error_event_after=2), Script.text("retried"))
    with pytest.raises(StreamError) as info:
        await text_of(config(loopback.url, max_retries=3))
    assert info.value.partial_text == "Hello wo"
    assert "Overloaded (overloaded_error)" in str(info.value)
    assert len(loopback.requests) == 1  # never retried after the first token


async def test_an_error_mid_stream_in_a_whole_answer_is_a_provider_error(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("Hello", error_event_after=1))
    with pytest.raises(ProviderError):
        await ask("call", config(loopback.url))


async def test_a_dropped_connection_is_a_stream_error(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello world", drop_after=1))
    with pytest.raises(StreamError) as info:
        await text_of(config(loopback.url))
    assert info.value.partial_text == "Hell"


async def test_a_stream_that_ends_without_message_stop_is_truncated(
    raw_server: RawServer,
) -> None:
    events = (DOCS / "text.sse").read_bytes().split(b"\n\n")[:-2]  # no message_stop
    raw_server.enqueue(sse_reply([e + b"\n\n" for e in events]))
    with pytest.raises(StreamError, match="message_stop") as info:
        await text_of(config(raw_server.url))
    assert info.value.partial_text == "Hello!"


async def test_malformed_data_mid_stream_is_a_stream_error(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello world", malformed_after=1))
    with pytest.raises(StreamError, match="malformed") as info:
        await text_of(config(loopback.url))
    assert info.value.partial_text == "Hell"


# -- the request body -------------------------------------------------------------------------
async def test_system_and_history_become_anthropics(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("ok"))
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Hi, I am Ann."},
        {"role": "assistant", "content": "Hello Ann!"},
        {"role": "user", "content": [{"type": "text", "text": "My name?"}]},
    ]
    await text_of(config(loopback.url), messages)
    body = loopback.requests[-1].body
    assert body["system"] == "You are terse.\n\nAnswer in English."
    assert body["messages"] == [
        {"role": "user", "content": "Hi, I am Ann."},
        {"role": "assistant", "content": "Hello Ann!"},
        {"role": "user", "content": [{"type": "text", "text": "My name?"}]},
    ]


async def test_memory_of_an_agent_is_sent_as_turns(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello Ann!"), Script.text("Your name is Ann."))

    @agent(config=config(loopback.url), enable_memory=True)
    async def chat(message: str) -> str:
        """{{ message }}"""
        ...

    await chat("I am Ann.")
    assert await chat("What is my name?") == "Your name is Ann."
    assert loopback.requests[-1].body["messages"] == [
        {"role": "user", "content": "I am Ann."},
        {"role": "assistant", "content": "Hello Ann!"},
        {"role": "user", "content": "What is my name?"},
    ]


def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: The city's name.
    """
    return f"Sunny in {city}"


def get_time(zone: str) -> str:
    """The time in a time zone."""
    return f"12:00 {zone}"


async def test_tools_and_tool_results_both_ways(loopback: LoopbackServer) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Oslo"}, id="toolu_1"),
            ScriptedToolCall.of("get_time", {"zone": "CET"}, id="toolu_2"),
            content=["Checking. "],
        ),
        Script.text("Sunny, noon."),
    )

    @agent(stream=True, config=config(loopback.url), tools=[get_weather, get_time])
    async def assistant(question: str) -> AsyncIterator[str]:
        """{{ question }}"""
        ...

    stream = assistant("Weather and time in Oslo?")
    assert "".join([c async for c in stream]) == "Checking. Sunny, noon."
    first, second = (r.body for r in loopback.requests)
    assert first["tools"][0] == {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "input_schema": {
            "properties": {"city": {"description": "The city's name.", "type": "string"}},
            "required": ["city"],
            "type": "object",
        },
    }
    assert [t["name"] for t in first["tools"]] == ["get_weather", "get_time"]
    assert second["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking. "},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"zone": "CET"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny in Oslo"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "12:00 CET"},
            ],
        },
    ]


async def test_a_user_turn_after_tool_results_joins_their_turn(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("ok"))
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "oops"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Error: invalid arguments"},
        {"role": "user", "content": "Try again."},
    ]
    await text_of(config(loopback.url), messages)
    assert loopback.requests[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "Error: invalid arguments"},
                {"type": "text", "text": "Try again."},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"tool_choice": "auto"}, {"tool_choice": {"type": "auto"}}),
        ({"tool_choice": "required"}, {"tool_choice": {"type": "any"}}),
        ({"tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "w"}}},
            {"tool_choice": {"type": "tool", "name": "w"}},
        ),
        (
            {"parallel_tool_calls": False},
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        ),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}),
        ({"top_k": 5, "metadata": {"user_id": "u1"}}, {"top_k": 5, "metadata": {"user_id": "u1"}}),
    ],
)
async def test_call_arguments_are_translated(
    loopback: LoopbackServer, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    loopback.enqueue(Script.text("ok"))
    await text_of(config(loopback.url), "hi", **params)
    body = loopback.requests[-1].body
    assert {k: body[k] for k in expected} == expected
    assert not {"parallel_tool_calls", "stop"} & set(body)


async def test_thinking_raises_max_tokens_and_drops_the_default_temperature(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("ok"), Script.text("ok"))
    thinking = {"type": "enabled", "budget_tokens": 2000}
    await text_of(config(loopback.url), "hi", thinking=thinking)
    body = loopback.requests[-1].body
    assert (body["max_tokens"], body["thinking"]) == (6096, thinking)
    assert "temperature" not in body
    await text_of(config(loopback.url, temperature=1.0, max_tokens=3000), "hi", thinking=thinking)
    body = loopback.requests[-1].body
    assert (body["max_tokens"], body["temperature"]) == (3000, 1.0)


async def test_top_p_is_sent_only_when_set(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("ok"))
    await text_of(config(loopback.url, top_p=0.5, max_tokens=10))
    body = loopback.requests[-1].body
    assert (body["top_p"], body["max_tokens"]) == (0.5, 10)


async def test_extra_headers_are_headers(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("ok"))
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    await text_of(config(loopback.url), "hi", extra_headers=beta)
    request = loopback.requests[-1]
    assert request.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert "extra_headers" not in request.body


async def test_an_unknown_role_is_a_config_error(loopback: LoopbackServer) -> None:
    with pytest.raises(ConfigError, match="role 'function'"):
        await text_of(config(loopback.url), [{"role": "function", "content": "x"}])
    assert loopback.requests == []


# -- keys -------------------------------------------------------------------------------------
@APIS
async def test_the_key_from_anthropic_api_key(
    loopback: LoopbackServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-ant-key-4242")
    loopback.enqueue(Script.text("ok"))
    assert await ask(api, config(loopback.url, api_key=None)) == "ok"
    assert loopback.requests[-1].headers["x-api-key"] == "env-ant-key-4242"


async def test_anthropic_auth_token_is_a_bearer_token(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "env-ant-token-4242")
    loopback.enqueue(Script.text("ok"))
    assert await text_of(config(loopback.url, api_key=None)) == "ok"
    headers = loopback.requests[-1].headers
    assert headers["authorization"] == "Bearer env-ant-token-4242"
    assert "x-api-key" not in headers


async def test_no_key_to_an_api_base_sends_none(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    loopback.enqueue(Script.text("ok"))
    assert await text_of(config(loopback.url, api_key=None)) == "ok"
    assert not {"x-api-key", "authorization"} & set(loopback.requests[-1].headers)


@APIS
async def test_no_key_for_anthropic_is_a_missing_key_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    cfg = LLMConfig(model="anthropic/claude-x", max_retries=0, enable_cache=False)
    with pytest.raises(MissingAPIKeyError) as info:
        await ask(api, cfg)
    assert info.value.env_var == "ANTHROPIC_API_KEY"
    assert "ANTHROPIC_API_KEY" in str(info.value)


@pytest.fixture
def oauth_name() -> Iterator[str]:
    name = f"anthropic-{uuid.uuid4().hex[:8]}"
    yield name
    unregister_token_provider(name)


async def test_an_oauth_token_is_sent_as_bearer(loopback: LoopbackServer, oauth_name: str) -> None:
    loopback.api_keys = frozenset()  # only live tokens
    provider = ClientCredentialsProvider(
        loopback.token_url, "test-client", SecretStr("test-secret")
    )
    register_token_provider(oauth_name, provider)
    loopback.enqueue(Script.text("ok"))
    cfg = config(loopback.url, api_key=None, auth_type="oauth2", oauth_provider=oauth_name)
    assert await text_of(cfg) == "ok"
    headers = loopback.requests[-1].headers
    assert headers["authorization"] == "Bearer tok-1"
    assert "x-api-key" not in headers


async def test_a_wrong_key_is_refused_by_the_server(loopback: LoopbackServer) -> None:
    loopback.api_keys = frozenset({"sk-ant-right-000000"})
    loopback.enqueue(Script.text("ok"))
    with pytest.raises(AuthError, match="invalid x-api-key"):
        await text_of(config(loopback.url))
    assert await text_of(config(loopback.url, api_key="sk-ant-right-000000")) == "ok"


@APIS
@pytest.mark.parametrize("bad", ["\r\nX-Injected: yes", "\nX-Injected: yes", "\x00"])
async def test_a_key_with_crlf_is_refused_before_anything_is_sent(
    loopback: LoopbackServer, api: Api, bad: str
) -> None:
    secret = "inj-ant-key-7781"
    with pytest.raises((ConfigError, pydantic.ValidationError)) as info:
        await ask(api, config(loopback.url, api_key=secret + bad))
    assert_no_secret(info.value, secret)
    assert loopback.requests == []


async def test_an_environment_key_with_crlf_is_refused(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "inj-ant-env-7781"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret + "\r\nX-Injected: yes")
    with pytest.raises(ConfigError) as info:
        await text_of(config(loopback.url, api_key=None))
    assert_no_secret(info.value, secret)
    assert loopback.requests == []


ECHOED = "my-plain-ant-key-1234"


@pytest.mark.parametrize(
    ("script", "error", "api"),
    [
        (Script.error(401, f"invalid x-api-key: {ECHOED}"), AuthError, "stream"),
        (Script.error(401, f"invalid x-api-key: {ECHOED}"), AuthError, "call"),
        (Script.error(529, f"overloaded for {ECHOED}"), ProviderError, "stream"),
        (
            Script.text("Hello", error_event_after=1, error_body={"message": f"bad {ECHOED}"}),
            StreamError,
            "stream",
        ),
    ],
)
async def test_the_key_never_shows_even_when_the_server_echoes_it(
    loopback: LoopbackServer, script: Script, error: type[LLMError], api: Api
) -> None:
    loopback.enqueue(script)
    with pytest.raises(error) as info:
        await ask(api, config(loopback.url, api_key=ECHOED))
    assert "[REDACTED]" in str(info.value)
    assert_no_secret(info.value, ECHOED)


# -- leaving early ------------------------------------------------------------------------------
async def test_break_closes_the_http_stream(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello world, slowly", chunk_size=2, chunk_delay=0.05))
    async with contextlib.aclosing(call_llm_stream("hi", config(loopback.url))) as stream:
        async for text in stream:
            assert text == "He"
            break
    assert await loopback.wait_idle(timeout=2.0)
    assert loopback.stats().streams_closed_by_client == 1


# -- Anthropic's documented streams, byte for byte ------------------------------------------
async def test_the_documented_text_stream(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.recorded(DOCS / "text.sse"))
    events = await events_of(config(loopback.url))
    assert [e.text for e in of_type(events, TextDelta)] == ["Hello", "!"]
    assert of_type(events, Usage) == [Usage(25, 15, 40)]
    assert of_type(events, Finish) == [Finish("stop")]


async def test_the_documented_tool_use_stream(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.recorded(DOCS / "tool_use.sse"))
    metrics = StreamMetrics()
    events = await events_of(config(loopback.url), metrics=metrics)
    text = "".join(e.text for e in of_type(events, TextDelta))
    assert text == "Okay, let's check the weather for San Francisco, CA:"
    (call,) = metrics.tool_calls
    assert (call.id, call.name) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert metrics.usage == Usage(472, 89, 561)
    assert metrics.finish_reason == "tool_calls"


async def test_the_documented_thinking_stream(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.recorded(DOCS / "thinking.sse"))
    events = await events_of(config(loopback.url))
    reasoning = "".join(e.text for e in of_type(events, ReasoningDelta))
    assert reasoning.startswith("Let me solve this step by step:\n\n1. First break down 27 * 453")
    assert reasoning.endswith("\n6. 10,800 + 1,350 + 81 = 12,231")
    assert [e.text for e in of_type(events, TextDelta)] == ["27 * 453 = 12,231"]
    (usage,) = of_type(events, Usage)
    assert usage.estimated  # this example carries no usage


async def test_a_documented_stream_as_a_whole_answer(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.recorded(DOCS / "tool_use.sse"))
    answer = await complete(config(loopback.url))
    assert answer.text == "Okay, let's check the weather for San Francisco, CA:"
    assert answer.tool_calls[0].name == "get_weather"
    assert answer.usage == Usage(472, 89, 561)


def _pieces(data: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


DOCUMENTED = {
    name: (DOCS / f"{name}.sse").read_bytes() for name in ("text", "tool_use", "thinking")
}


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(DOCUMENTED)),
    crlf=st.booleans(),
    cuts=st.sets(st.integers(1, 4000), max_size=12),
)
async def test_any_split_of_a_documented_stream_gives_the_same_events(
    name: str, crlf: bool, cuts: set[int]
) -> None:
    document = DOCUMENTED[name].replace(b"\n", b"\r\n") if crlf else DOCUMENTED[name]
    async with RawServer() as server:
        server.enqueue(sse_reply([document]), sse_reply(_pieces(document, cuts), pause=0.001))
        whole = await events_of(config(server.url))
        split = await events_of(config(server.url))
    assert split == whole
    assert of_type(whole, Finish)


# -- litellm as the reference -----------------------------------------------------------------
DIFFERENTIAL = {
    "text": Script.text("Hello from the loopback, in pieces.", chunk_size=5),
    "text-with-usage": Script.text("Counted.", usage={"prompt_tokens": 12, "completion_tokens": 3}),
    "cache-tokens": Script.text(
        "Cached.",
        usage={
            "input_tokens": 4,
            "cache_read_input_tokens": 50,
            "cache_creation_input_tokens": 6,
            "output_tokens": 2,
        },
    ),
    "reasoning": Script.text(
        "Four.", reasoning=("Two and ", "two."), usage={"prompt_tokens": 3, "completion_tokens": 9}
    ),
    "tools": Script.tools(
        ScriptedToolCall.of("get_weather", {"city": "Oslo"}, fragment_size=4, id="toolu_a"),
        ScriptedToolCall.of("get_time", {"zone": "CET"}, fragment_size=6, id="toolu_b"),
        content=["Let me ", "check."],
        usage={"prompt_tokens": 30, "completion_tokens": 20},
    ),
    "tool-without-arguments": Script.tools(ScriptedToolCall(name="now", id="toolu_n")),
    "length": Script.text("Cut", finish_reason="length"),
}


async def _outcome(cfg: LLMConfig, script: Script, loopback: LoopbackServer) -> dict[str, Any]:
    loopback.enqueue(script)
    metrics = StreamMetrics()
    events = await events_of(cfg, "What is the weather?", metrics=metrics)
    return {
        "text": "".join(e.text for e in of_type(events, TextDelta)),
        "reasoning": "".join(e.text for e in of_type(events, ReasoningDelta)),
        "tool_calls": [(c.id, c.name, json.loads(c.arguments)) for c in metrics.tool_calls],
        "usage": metrics.usage,
        "finish": metrics.finish_reason,
    }


async def test_the_same_scripts_through_litellm_give_the_same_answers(
    loopback: LoopbackServer,
) -> None:
    # Grouped in one test: litellm's import and first call cost seconds.
    direct = config(loopback.url, api_key="sk-ant-test")
    reference = direct.model_copy(update={"transport": "litellm"})
    assert resolve_transport(reference).name == "litellm"
    for name, script in DIFFERENTIAL.items():
        ours = await _outcome(direct, script, loopback)
        theirs = await _outcome(reference, script, loopback)
        assert loopback.requests[-1].path == "/v1/messages"
        assert ours == theirs, name


async def test_litellm_and_this_transport_type_the_same_errors(loopback: LoopbackServer) -> None:
    direct = config(loopback.url, api_key="sk-ant-test")
    reference = direct.model_copy(update={"transport": "litellm"})
    scripts = [Script.error(status) for status in (400, 401, 403, 404, 429, 500, 529)]
    scripts.append(Script.text("Hello world", error_event_after=1))
    for script in scripts:
        seen: list[tuple[type[BaseException], str]] = []
        for cfg in (direct, reference):
            loopback.enqueue(script)
            with pytest.raises(LLMError) as info:
                await text_of(cfg)
            seen.append((type(info.value), info.value.partial_text))
        assert seen[0] == seen[1], script
