"""call_llm: non-streaming calls through litellm to the loopback server, and its cache."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kagura import LLMConfig, call_llm
from kagura.errors import AuthError, ConfigError, RateLimitError
from kagura.llm.cache import LLMCache, get_llm_cache, set_llm_cache
from kagura.testing.loopback import LoopbackServer, Script


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[LLMCache]:
    set_llm_cache(LLMCache())
    yield get_llm_cache()
    set_llm_cache(None)


async def test_returns_the_whole_answer(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("The whole answer."))
    assert await call_llm("q", loopback_config) == "The whole answer."
    assert loopback.requests[0].body.get("stream") in (False, None)


async def test_second_identical_call_is_a_cache_hit(
    loopback: LoopbackServer, loopback_config: LLMConfig, fresh_cache: LLMCache
) -> None:
    loopback.enqueue(Script.text("cached answer"), Script.text("should not be asked"))
    assert await call_llm("same question", loopback_config) == "cached answer"
    assert await call_llm("same question", loopback_config) == "cached answer"
    assert len(loopback.requests) == 1
    stats = fresh_cache.stats()
    assert (stats.hits, stats.size) == (1, 1)


async def test_key_ignores_credentials(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("one"))
    await call_llm("q", loopback_config)
    other_key = loopback_config.model_copy(update={"api_key": "sk-different"})
    assert await call_llm("q", other_key) == "one"
    assert len(loopback.requests) == 1


async def test_different_sampling_is_a_different_key(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("one"), Script.text("two"))
    await call_llm("q", loopback_config)
    hotter = loopback_config.model_copy(update={"temperature": 1.5})
    assert await call_llm("q", hotter) == "two"


async def test_concurrent_identical_calls_share_one_request(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("shared", ttft=0.2))
    answers = await asyncio.gather(*(call_llm("q", loopback_config) for _ in range(10)))
    assert answers == ["shared"] * 10
    assert len(loopback.requests) == 1


async def test_enable_cache_false_bypasses(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    config = loopback_config.model_copy(update={"enable_cache": False})
    loopback.enqueue(Script.text("a"), Script.text("b"))
    assert [await call_llm("q", config), await call_llm("q", config)] == ["a", "b"]


async def test_tools_bypass_the_cache(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    loopback.enqueue(Script.text("a"), Script.text("b"))
    assert await call_llm("q", loopback_config, tools=tools) == "a"
    assert await call_llm("q", loopback_config, tools=tools) == "b"


async def test_errors_are_typed_and_not_cached(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.error(429), Script.error(401), Script.text("fine"))
    with pytest.raises(RateLimitError):
        await call_llm("q", loopback_config)
    with pytest.raises(AuthError):
        await call_llm("q", loopback_config)
    assert await call_llm("q", loopback_config) == "fine"


async def test_messages_are_checked() -> None:
    with pytest.raises(ConfigError, match="role"):
        await call_llm([{"content": "no role"}], LLMConfig(model="kagura/echo"))
    with pytest.raises(ConfigError, match="empty"):
        await call_llm([], LLMConfig(model="kagura/echo"))


@pytest.mark.parametrize("transport", ["auto", "litellm"])
async def test_offline_models(transport: str) -> None:
    echo = LLMConfig(model="kagura/echo", enable_cache=False, transport=transport)  # type: ignore[arg-type] (parametrized)
    assert await call_llm("echo me", echo) == "echo me"
    replay = echo.model_copy(update={"model": "kagura/replay"})
    assert await call_llm("x", replay, replay_text="Given text.") == "Given text."


OFFLINE_ONLY = {"replay_text": "Canned.", "ttft": 0.5, "tokens_per_s": 9.0}


async def test_offline_arguments_never_reach_a_provider(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("real"))
    assert await call_llm("q", loopback_config, seed=7, **OFFLINE_ONLY) == "real"
    body = loopback.requests[-1].body
    assert OFFLINE_ONLY.keys().isdisjoint(body)
    assert body["seed"] == 7  # other provider arguments still go


async def test_offline_arguments_never_reach_a_provider_named_like_an_offline_model(
    loopback: LoopbackServer,
) -> None:
    # transport="direct" sends even a kagura/ model name to the server: a provider request.
    config = LLMConfig(
        model="kagura/replay", api_base=loopback.base_url, api_key="sk-t", transport="direct"
    )
    loopback.enqueue(Script.text("served"))
    assert await call_llm("q", config, **OFFLINE_ONLY) == "served"
    assert OFFLINE_ONLY.keys().isdisjoint(loopback.requests[-1].body)


@pytest.mark.parametrize("transport", ["auto", "litellm"])
async def test_offline_models_keep_their_arguments(transport: str) -> None:
    replay = LLMConfig(model="kagura/replay", enable_cache=False, transport=transport)  # type: ignore[arg-type] (parametrized)
    assert await call_llm("x", replay, replay_text="Kept.", ttft=0.01, tokens_per_s=1000) == "Kept."


def test_transport_resolution() -> None:
    from kagura.llm.transports import resolve_transport

    def name(**kw: object) -> str:
        return resolve_transport(LLMConfig(**kw)).name  # type: ignore[arg-type] (test input)

    assert name(model="kagura/echo") == "offline"
    assert name(model="gpt-4o-mini") == "direct"
    assert name(model="openai/llama3", api_base="http://localhost:11434/v1") == "direct"
    assert name(model="llama3", api_base="http://localhost:11434/v1") == "direct"
    assert name(model="anthropic/claude-3-5-sonnet") == "anthropic"
    assert name(model="gemini/gemini-2.5-flash") == "gemini"
    assert name(model="anthropic/claude-3-5-sonnet", transport="direct") == "anthropic"
    assert name(model="gemini/gemini-2.5-flash", transport="litellm") == "litellm"
    assert name(model="mistral/mistral-large") == "litellm"
    assert name(model="gpt-4o-mini", transport="litellm") == "litellm"
    assert name(model="kagura/echo", transport="litellm") == "litellm"


@pytest.mark.parametrize(
    "update",
    [
        {"api_base": "http://127.0.0.1:1/v1\r\nX-Injected: yes"},
        {"api_key": "sk-test\r\nX-Injected: yes"},
        {"api_key": "sk-test\nGET /smuggled HTTP/1.1"},
    ],
    ids=["api_base", "api_key", "smuggled"],
)
async def test_a_copy_that_skipped_validation_is_still_checked_before_sending(
    loopback: LoopbackServer, loopback_config: LLMConfig, update: dict[str, str]
) -> None:
    # model_copy(update=...) skips LLMConfig's checks; yarl would have quietly mangled the
    # URL, and a key would have reached a header. Every request is checked, on every
    # transport, and nothing is sent.
    loopback.enqueue(Script.text("never"))
    bad = loopback_config.model_copy(update={**update, "enable_cache": False})
    with pytest.raises(ConfigError, match="must not contain spaces or control characters"):
        await call_llm("q", bad)
    assert loopback.requests == []


async def test_a_plain_string_key_from_model_copy_is_sent(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("ok"))
    copy = loopback_config.model_copy(update={"api_key": "sk-copied-0123", "enable_cache": False})
    assert await call_llm("q", copy) == "ok"
    assert loopback.requests[-1].headers["authorization"] == "Bearer sk-copied-0123"
