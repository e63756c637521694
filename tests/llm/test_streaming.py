"""call_llm_stream over real HTTP: litellm and httpx talk to the loopback server."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagura import (
    AuthError,
    ConfigError,
    FirstTokenTimeout,
    IdleTimeout,
    LLMConfig,
    StreamError,
    call_llm_stream,
    stream_events,
    stream_to_string,
)
from kagura.errors import ModelNotFoundError, ProviderError, RateLimitError
from kagura.events import Finish, TextDelta, ToolCallDelta, Usage
from kagura.llm.cache import get_llm_cache
from kagura.llm.metrics import StreamMetrics
from kagura.llm.oauth import (
    ClientCredentialsProvider,
    register_token_provider,
    unregister_token_provider,
)
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall
from kagura.testing.strategies import text_and_chunkings


async def collect(prompt: str, config: LLMConfig, **kwargs: object) -> list[str]:
    return [chunk async for chunk in call_llm_stream(prompt, config, **kwargs)]


# -- the seed's list ---------------------------------------------------------------------
async def test_basic(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("Hello from the loopback server."))
    text = "".join(await collect("hi", loopback_config))
    assert text == "Hello from the loopback server."
    assert loopback.requests[0].body["stream"] is True


async def test_yields_chunks(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["One", " two", " three"]))
    assert await collect("count", loopback_config) == ["One", " two", " three"]


async def test_full_response(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("a longer answer " * 20, chunk_size=7))
    assert await stream_to_string(call_llm_stream("x", loopback_config)) == "a longer answer " * 20


async def test_empty_response(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks([]))
    assert await collect("say nothing", loopback_config) == []


async def test_only_non_empty_deltas(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["a", "", "b"]))
    assert await collect("x", loopback_config) == ["a", "b"]


async def test_with_oauth2(loopback: LoopbackServer, transport: str) -> None:
    loopback.api_keys = frozenset()  # only tokens issued by the token endpoint are accepted
    provider = ClientCredentialsProvider(loopback.token_url, "test-client", "test-secret")
    register_token_provider("loopback", provider)
    try:
        config = LLMConfig(
            model="openai/gpt-4o-mini",
            api_base=loopback.base_url,
            auth_type="oauth2",
            oauth_provider="loopback",
            max_retries=0,
            transport=transport,  # type: ignore[arg-type] (a fixture value of the Literal)
        )
        loopback.enqueue(Script.text("authorized"), Script.text("again"))
        assert "".join(await collect("x", config)) == "authorized"
        assert "".join(await collect("x", config)) == "again"
        assert loopback.stats().token_requests == 1  # the token was cached
        assert loopback.requests[-1].headers["authorization"].startswith("Bearer tok-")
    finally:
        unregister_token_provider("loopback")


async def test_error_handling_401_is_auth_error(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.error(401))
    with pytest.raises(AuthError) as info:
        await collect("x", loopback_config)
    assert info.value.status_code == 401
    assert "sk-test-0123456789" not in str(info.value)
    assert info.value.__cause__ is not None


async def test_streaming_not_cached(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.text("first"), Script.text("second"))
    before = get_llm_cache().stats()
    assert "".join(await collect("same", loopback_config)) == "first"
    assert "".join(await collect("same", loopback_config)) == "second"
    assert len(loopback.requests) == 2
    assert get_llm_cache().stats() == before


async def test_with_custom_config(loopback: LoopbackServer, transport: str) -> None:
    config = LLMConfig(
        model="openai/my-local-model",
        api_base=loopback.base_url,
        api_key="sk-other",
        temperature=0.1,
        max_tokens=50,
        top_p=0.5,
        max_retries=0,
        transport=transport,  # type: ignore[arg-type] (a fixture value of the Literal)
    )
    loopback.enqueue(Script.text("ok"))
    await collect("x", config, seed=7)
    body = loopback.requests[0].body
    assert body["model"] == "my-local-model"
    assert (body["temperature"], body["max_tokens"], body["top_p"], body["seed"]) == (
        0.1,
        50,
        0.5,
        7,
    )


async def test_colliding_kwargs_are_a_clear_error(loopback_config: LLMConfig) -> None:
    with pytest.raises(ConfigError, match="temperature must be set on LLMConfig"):
        await collect("x", loopback_config, temperature=0.3)


async def test_unknown_model_names_it() -> None:
    with pytest.raises(ModelNotFoundError, match="nosuchprovider/model-x"):
        await collect("x", LLMConfig(model="nosuchprovider/model-x", api_key="sk-x", max_retries=0))


async def test_missing_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = LLMConfig(model="gpt-4o-mini", transport=transport)  # type: ignore[arg-type] (fixture)
    with pytest.raises(AuthError, match="OPENAI_API_KEY") as info:
        await collect("x", config)
    assert getattr(info.value, "env_var", None) == "OPENAI_API_KEY"


# -- recorded real streams ---------------------------------------------------------------
def _manifest(recorded_dir: Path) -> list[dict[str, object]]:
    return json.loads((recorded_dir / "MANIFEST.json").read_text())


async def test_every_recorded_stream_reassembles(
    loopback: LoopbackServer, loopback_config: LLMConfig, recorded_dir: Path
) -> None:
    for entry in _manifest(recorded_dir):
        loopback.enqueue(Script.recorded(recorded_dir / str(entry["file"])))
        metrics = StreamMetrics()
        events = [e async for e in stream_events("x", loopback_config, metrics=metrics)]
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        expected = entry.get("expected_text")
        if isinstance(expected, str):
            assert text == expected, entry["file"]
        assert metrics.finish_reason == entry.get("finish_reason", metrics.finish_reason), entry[
            "file"
        ]
        usage = [e for e in events if isinstance(e, Usage)]
        assert usage, entry["file"]
        assert not usage[-1].estimated, entry["file"]


async def test_recorded_tool_call_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig, recorded_dir: Path
) -> None:
    loopback.enqueue(Script.recorded(recorded_dir / "parallel_tool_calls.sse"))
    metrics = StreamMetrics()
    events = [e async for e in stream_events("x", loopback_config, metrics=metrics)]
    assert any(isinstance(e, ToolCallDelta) for e in events)
    assert [type(e) for e in events][-1] in (Usage, Finish)
    assert len(metrics.tool_calls) == 2
    for call in metrics.tool_calls:
        assert call.name
        assert call.id
        json.loads(call.arguments)
    assert metrics.finish_reason == "tool_calls"


async def test_scripted_tool_calls(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(
        Script.tools(ScriptedToolCall.of("get_weather", '{"city": "Paris"}', id="call_1"))
    )
    metrics = StreamMetrics()
    _ = [e async for e in stream_events("x", loopback_config, metrics=metrics)]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in metrics.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]


# -- faults: each gives its typed error with the partial text ------------------------------
@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, AuthError), (429, RateLimitError), (404, ModelNotFoundError), (500, ProviderError)],
)
async def test_http_errors_before_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig, status: int, error_type: type[Exception]
) -> None:
    loopback.enqueue(Script.error(status))
    with pytest.raises(error_type) as info:
        await collect("x", loopback_config)
    assert getattr(info.value, "partial_text", None) == ""
    assert len(loopback.requests) == 1  # max_retries=0: no retry


async def test_retries_are_a_setting(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.error(500), Script.text("recovered"))
    config = loopback_config.model_copy(update={"max_retries": 1})
    assert "".join(await collect("x", config)) == "recovered"
    assert len(loopback.requests) == 2


async def test_error_event_mid_stream(loopback: LoopbackServer, loopback_config: LLMConfig) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor", "ld"], error_event_after=2))
    received: list[str] = []

    async def consume() -> None:
        async for chunk in call_llm_stream("x", loopback_config):
            received.append(chunk)

    with pytest.raises(StreamError) as info:
        await consume()
    assert received == ["Hel", "lo "]
    assert info.value.partial_text == "Hello "


async def test_dropped_connection_mid_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor", "ld"], drop_after=3))
    with pytest.raises(StreamError) as info:
        await collect("x", loopback_config)
    assert info.value.partial_text == "Hello wor"


async def test_malformed_line_mid_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor", "ld"], malformed_after=1))
    with pytest.raises(StreamError) as info:
        await collect("x", loopback_config)
    assert info.value.partial_text == "Hel"


async def test_stall_gives_idle_timeout(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.chunks(["Hel", "lo ", "wor"], stall_after=2))
    config = loopback_config.model_copy(update={"idle_timeout": 0.3})
    with pytest.raises(IdleTimeout) as info:
        await collect("x", config)
    assert info.value.partial_text == "Hello "
    assert isinstance(info.value, TimeoutError)
    assert await loopback.wait_idle(1.0)  # the stalled stream was closed


async def test_slow_first_token_gives_first_token_timeout(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("late", ttft=2.0))
    config = loopback_config.model_copy(update={"first_token_timeout": 0.3})
    with pytest.raises(FirstTokenTimeout):
        await collect("x", config)
    assert await loopback.wait_idle(1.0)


# -- closing ------------------------------------------------------------------------------
async def test_break_after_first_chunk_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.02))
    async for _ in call_llm_stream("x", loopback_config):
        break
    assert await loopback.wait_idle(1.0)
    assert loopback.stats().streams_closed_by_client == 1


async def test_aclose_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.02))
    async with aclosing(call_llm_stream("x", loopback_config)) as stream:
        await anext(stream)
    assert await loopback.wait_idle(1.0)


async def test_cancelling_the_task_closes_the_stream(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.05))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in call_llm_stream("x", loopback_config):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await loopback.wait_idle(1.0)


# -- property: reassembly for any text and chunking ------------------------------------------
@pytest.mark.parametrize("transport_name", ["direct", "litellm"])
@settings(max_examples=25)
@given(text_and_chunkings(st.text(min_size=1, max_size=80), max_chunks=20))
async def test_reassembly_property(
    loopback_server: LoopbackServer, transport_name: str, case: tuple[str, list[str]]
) -> None:
    text, chunks = case
    loopback_server.enqueue(Script.chunks(chunks))
    config = LLMConfig(
        model="openai/gpt-4o-mini",
        api_base=loopback_server.base_url,
        api_key="sk-test",
        max_retries=0,
        transport=transport_name,  # type: ignore[arg-type] (a parametrized Literal)
    )
    assert "".join(await collect("x", config)) == text


async def test_direct_transport_splits_sse_lines_only_at_newline(
    loopback: LoopbackServer,
) -> None:
    # U+2028, U+0085 and CR are text inside the JSON, never SSE line breaks.
    text = "a\u2028b\x85c\rd\ne"
    loopback.enqueue(Script.chunks([text[:3], text[3:]]))
    config = LLMConfig(
        model="openai/x",
        api_base=loopback.base_url,
        api_key="sk-t",
        max_retries=0,
        transport="direct",
    )
    assert "".join(await collect("x", config)) == text


async def test_direct_transport_goes_through_the_proxy_the_environment_names(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kagura.llm.transports import http

    # The loopback server is the proxy: the request reaches it in absolute form.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{loopback.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http._proxy_for_origin.cache_clear()  # pyright: ignore[reportPrivateUsage]
    try:
        loopback.enqueue(Script.text("via the proxy"))
        config = LLMConfig(
            model="openai/x",
            api_base="http://llm.example.invalid/v1",
            api_key="sk-t",
            max_retries=0,
            transport="direct",
        )
        assert "".join(await collect("x", config)) == "via the proxy"
        assert loopback.requests[-1].target == "http://llm.example.invalid/v1/chat/completions"

        # NO_PROXY exempts a host: this one is then reached directly (and does not exist).
        monkeypatch.setenv("NO_PROXY", "llm.example.invalid")
        http._proxy_for_origin.cache_clear()  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(ProviderError, match=r"could not reach llm\.example\.invalid"):
            await collect("x", config)
    finally:
        http._proxy_for_origin.cache_clear()  # pyright: ignore[reportPrivateUsage]


def test_direct_transport_closes_its_connections_when_each_event_loop_ends(
    loopback: LoopbackServer,
) -> None:
    from kagura.llm.transports import resolve_transport

    config = LLMConfig(
        model="openai/x", api_base=loopback.base_url, api_key="sk-t", transport="direct"
    )
    before = loopback.stats().connections_open  # other tests' loops may keep idle connections
    for _ in range(5):  # a program calling asyncio.run per request, as scripts do
        loopback.enqueue(Script.text("one loop"))
        assert "".join(asyncio.run(collect("x", config))) == "one loop"
    sessions = resolve_transport(config)._client._sessions  # pyright: ignore[reportAttributeAccessIssue]
    assert not any(loop.is_closed() for loop in sessions)  # no ended loop kept alive
    deadline = time.monotonic() + 2.0
    while loopback.stats().connections_open > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loopback.stats().connections_open <= before, "connections of ended loops still open"


async def test_offline_arguments_never_reach_a_provider_when_streaming(
    loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    from kagura import AgentStream

    offline_only = {"replay_text": "Canned.", "ttft": 0.5, "tokens_per_s": 9.0}
    loopback.enqueue(Script.text("one two"), Script.text("three"))
    assert "".join(await collect("q", loopback_config, **offline_only)) == "one two"
    assert offline_only.keys().isdisjoint(loopback.requests[-1].body)
    assert await AgentStream.from_llm("q", loopback_config, **offline_only).text() == "three"
    assert offline_only.keys().isdisjoint(loopback.requests[-1].body)
