"""The direct Gemini transport, through the public API, against the loopback server.

The loopback server speaks the Gemini API (``_gemini`` dialect): scripted answers go out
as Google frames them (``data: {...}\\r\\n\\r\\n``), and real Gemini streams recorded by
Firebase's SDK test data (``tests/data/gemini/``) are replayed byte for byte. The same
scripts also run through litellm (``transport="litellm"``), the reference: the text, the
tool calls and the usage must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from _wire_servers import SSE_HEADERS, RawServer, Reply, framed, head, json_reply, sse_reply
from kagura import LLMConfig, call_llm, call_llm_stream
from kagura.agents.tools import Tool, complete_with_tools, stream_with_tools
from kagura.errors import (
    AuthError,
    ConfigError,
    ContentFilterError,
    LLMError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderError,
    RateLimitError,
    StreamError,
)
from kagura.events import Finish, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta, Usage
from kagura.llm.metrics import StreamMetrics
from kagura.llm.oauth import StaticTokenProvider, register_token_provider, unregister_token_provider
from kagura.llm.request import prepare_request
from kagura.llm.streaming import stream_events
from kagura.llm.transports import resolve_transport
from kagura.llm.transports.gemini import GeminiTransport
from kagura.testing.loopback import LoopbackServer, RecordedRequest, Script, ScriptedToolCall

KEY = "gm-test-key-0123456789"
DATA = Path(__file__).resolve().parents[2] / "data" / "gemini"
SHORT = DATA / "streaming-success-basic-reply-short.sse"
THINKING = DATA / "streaming-success-thinking-reply-thought-summary.sse"
THINKING_CALL = DATA / "streaming-success-thinking-function-call-thought-summary-signature.sse"
RECITATION = DATA / "streaming-failure-recitation-no-content.sse"
BLOCKED = DATA / "streaming-failure-prompt-blocked-safety.sse"
Api = Literal["stream", "call"]
APIS = pytest.mark.parametrize("api", ["stream", "call"])
GUARD = 5.0


def gemini(loopback: LoopbackServer, **overrides: Any) -> LLMConfig:
    """A config for the loopback server's Gemini route: no retries, no cache."""
    settings: dict[str, Any] = {
        "model": "gemini/gemini-x",
        "api_base": loopback.url,
        "api_key": KEY,
        "max_retries": 0,
        "enable_cache": False,
    }
    settings.update(overrides)
    return LLMConfig(**settings)


async def events_of(
    config: LLMConfig, prompt: Any = "hi", metrics: StreamMetrics | None = None, **kwargs: Any
) -> list[StreamEvent]:
    # litellm's first call in a process imports it: seconds more.
    async with asyncio.timeout(GUARD if config.transport != "litellm" else 60.0):
        return [e async for e in stream_events(prompt, config, metrics=metrics, **kwargs)]


async def ask(api: Api, config: LLMConfig, prompt: Any = "hi", **kwargs: Any) -> str:
    async with asyncio.timeout(GUARD if config.transport != "litellm" else 60.0):
        if api == "call":
            return await call_llm(prompt, config, **kwargs)
        parts: list[str] = []
        async with contextlib.aclosing(call_llm_stream(prompt, config, **kwargs)) as stream:
            async for text in stream:
                parts.append(text)
        return "".join(parts)


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def reasoning_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningDelta))


def recorded_text(path: Path, *, thought: bool = False) -> str:
    """The text (or thought) parts of a recorded stream, read with json alone."""
    out: list[str] = []
    for line in path.read_bytes().decode().splitlines():
        if line.startswith("data: "):
            payload = json.loads(line[6:])
            for candidate in payload.get("candidates", [])[:1]:
                for part in candidate.get("content", {}).get("parts", []):
                    if "text" in part and bool(part.get("thought")) == thought:
                        out.append(part["text"])
    return "".join(out)


def blocked_recording(tmp_path: Path) -> Path:
    """The prompt-blocked recording with the blank line that dispatches its event."""
    path = tmp_path / "blocked.sse"
    path.write_bytes(BLOCKED.read_bytes() + b"\r\n")
    return path


def assert_no_secret(err: BaseException, secret: str) -> None:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        shown = [str(current), repr(current), repr(current.args)]
        shown += [str(getattr(current, name, "")) for name in ("message", "body", "headers")]
        for text in shown:
            assert secret not in text, f"{type(current).__name__} shows the secret: {text!r}"
        current = current.__cause__ or current.__context__


@pytest.fixture
def no_env_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- routing and the request on the wire ----------------------------------------------------
def test_gemini_models_take_the_gemini_transport() -> None:
    assert resolve_transport(LLMConfig(model="gemini/gemini-2.5-flash")).name == "gemini"
    assert resolve_transport(LLMConfig(model="gemini/x", transport="direct")).name == "gemini"
    assert resolve_transport(LLMConfig(model="gemini/x", transport="litellm")).name == "litellm"


async def test_a_stream_is_sent_as_google_asks_and_read_as_google_frames_it(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("Hello, world"))
    assert await ask("stream", gemini(loopback), "Hi there") == "Hello, world"
    request = loopback.requests[-1]
    assert request.path == "/models/gemini-x:streamGenerateContent"
    assert request.query == "alt=sse"
    assert request.headers["x-goog-api-key"] == KEY
    assert "authorization" not in request.headers
    assert "key=" not in request.target  # the key is never in the URL
    assert request.headers["accept"] == "text/event-stream"
    assert request.body["contents"] == [{"role": "user", "parts": [{"text": "Hi there"}]}]
    assert request.body["generationConfig"] == {"temperature": 0.7, "topP": 1.0}


async def test_a_whole_answer_uses_generate_content(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello, world"))
    config = gemini(loopback, temperature=0.2, top_p=0.9, max_tokens=64)
    assert await ask("call", config) == "Hello, world"
    request = loopback.requests[-1]
    assert request.path == "/models/gemini-x:generateContent"
    assert request.query == ""
    assert request.body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 64,
    }


async def test_an_api_base_with_a_version_path_and_a_query_keeps_both(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("ok"))
    config = gemini(loopback, api_base=f"{loopback.url}/v1beta/?tenant=7")
    assert await ask("stream", config) == "ok"
    request = loopback.requests[-1]
    assert request.path == "/v1beta/models/gemini-x:streamGenerateContent"
    assert request.query == "tenant=7&alt=sse"


async def test_the_conversation_is_converted_to_contents(loopback: LoopbackServer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_8", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_8", "content": "noon"},
        {"role": "assistant", "content": "Sunny at noon."},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]
    loopback.enqueue(Script.text("Rain."))
    assert await ask("stream", gemini(loopback), messages) == "Rain."
    body = loopback.requests[-1].body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me look."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "now", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
                {"functionResponse": {"name": "now", "response": {"content": "noon"}}},
            ],
        },
        {"role": "model", "parts": [{"text": "Sunny at noon."}]},
        {"role": "user", "parts": [{"text": "And tomorrow?"}]},
    ]


class Place(BaseModel):
    city: str
    country: str | None = None


def get_weather(place: Place, unit: Literal["c", "f"] = "c", days: list[int] | None = None) -> str:
    """The weather at a place."""
    return f"sunny in {place.city}"


async def test_tools_become_function_declarations_gemini_accepts(loopback: LoopbackServer) -> None:
    tool = Tool.from_function(get_weather)
    loopback.enqueue(Script.text("ok"))
    await ask("stream", gemini(loopback), tools=[tool.definition()], tool_choice="required")
    body = loopback.requests[-1].body
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    [declaration] = body["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "get_weather"
    assert declaration["description"] == "The weather at a place."
    parameters = declaration["parameters"]
    dumped = json.dumps(parameters)
    for refused in ("$ref", "$defs", "additionalProperties", "$schema", '"null"'):
        assert refused not in dumped
    place = parameters["properties"]["place"]
    assert place["type"] == "object"
    assert place["required"] == ["city"]
    country = place["properties"]["country"]
    assert (country["type"], country["nullable"], country["default"]) == ("string", True, None)
    assert parameters["properties"]["unit"]["enum"] == ["c", "f"]
    assert parameters["properties"]["days"]["nullable"] is True
    assert parameters["properties"]["days"]["items"] == {"type": "integer"}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "1"}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://a/b"}}]}],
        [{"role": "robot", "content": "beep"}],
        [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
            }
        ],
    ],
    ids=["unknown-call-id", "audio", "image-by-url", "unknown-role", "arguments-not-object"],
)
async def test_messages_gemini_cannot_take_are_config_errors(
    loopback: LoopbackServer, messages: list[dict[str, Any]]
) -> None:
    with pytest.raises(ConfigError, match="message"):
        await ask("stream", gemini(loopback), messages)
    assert loopback.requests == []


async def test_an_inline_image_becomes_inline_data(loopback: LoopbackServer) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    loopback.enqueue(Script.text("A pixel."))
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
    assert await ask("stream", gemini(loopback), messages) == "A pixel."
    assert loopback.requests[-1].body["contents"][0]["parts"] == [
        {"text": "What is it?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    ]


async def test_a_recursive_schema_is_a_config_error_and_nothing_is_sent(
    loopback: LoopbackServer,
) -> None:
    schema = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    tool = {"type": "function", "function": {"name": "walk", "parameters": schema}}
    with pytest.raises(ConfigError, match="recursive"):
        await ask("stream", gemini(loopback), tools=[tool])
    assert loopback.requests == []


async def test_call_arguments_map_to_generation_config_and_headers(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("ok"))
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    await ask(
        "stream",
        gemini(loopback),
        stop="END",
        seed=7,
        response_format={"type": "json_object"},
        safetySettings=safety,
        extra_headers={"X-Trace": "t-1"},
    )
    request = loopback.requests[-1]
    assert request.headers["x-trace"] == "t-1"
    assert request.body["safetySettings"] == safety
    assert "extra_headers" not in request.body
    config = request.body["generationConfig"]
    assert config["stopSequences"] == ["END"]
    assert config["seed"] == 7
    assert config["responseMimeType"] == "application/json"


# -- answers --------------------------------------------------------------------------------
async def test_thought_parts_are_reasoning_and_never_text(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("The answer is 4.", reasoning=("Let me ", "think.")))
    metrics = StreamMetrics()
    events = await events_of(gemini(loopback), metrics=metrics)
    assert reasoning_of(events) == "Let me think."
    assert text_of(events) == "The answer is 4."
    assert metrics.reasoning_chars == len("Let me think.")
    loopback.enqueue(Script.text("Four.", reasoning=("Let me ", "think.")))
    assert await ask("stream", gemini(loopback)) == "Four."
    loopback.enqueue(Script.text("Four.", reasoning=("Let me ", "think.")))
    request = prepare_request("2+2?", gemini(loopback), {})
    completion = await GeminiTransport().complete(request)
    assert (completion.text, completion.reasoning) == ("Four.", "Let me think.")


async def test_function_calls_arrive_whole_with_ids(loopback: LoopbackServer) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Paris"}),
            ScriptedToolCall.of("now"),
            content=["Checking."],
        )
    )
    metrics = StreamMetrics()
    events = await events_of(gemini(loopback), metrics=metrics)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas == [
        ToolCallDelta(index=0, id="call_0", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallDelta(index=1, id="call_1", name="now", arguments="{}"),
    ]
    assert [(c.name, json.loads(c.arguments)) for c in metrics.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("now", {}),
    ]
    assert text_of(events) == "Checking."
    assert events[-1] == Finish("tool_calls")


async def test_function_calls_in_a_whole_answer(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.tools(ScriptedToolCall.of("get_weather", {"city": "Paris"})))
    completion = await GeminiTransport().complete(prepare_request("hi", gemini(loopback), {}))
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("call_0", "get_weather", {"city": "Paris"})
    ]
    assert completion.finish_reason == "tool_calls"


async def test_a_server_given_call_id_is_kept(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.tools(ScriptedToolCall.of("now", id="fc-42")))
    events = await events_of(gemini(loopback))
    assert [e.id for e in events if isinstance(e, ToolCallDelta)] == ["fc-42"]


async def test_the_tool_loop_round_trips_calls_and_results(loopback: LoopbackServer) -> None:
    calls: list[str] = []

    def lookup(city: str) -> str:
        """Look the weather up."""
        calls.append(city)
        return f"sunny in {city}"

    loopback.enqueue(
        Script.tools(ScriptedToolCall.of("lookup", {"city": "Paris"})),
        Script.text("It is sunny."),
    )
    request = prepare_request("Weather in Paris?", gemini(loopback), {})
    events = [e async for e in stream_with_tools(request, [Tool.from_function(lookup)])]
    assert calls == ["Paris"]
    assert text_of(events) == "It is sunny."
    contents = loopback.requests[-1].body["contents"]
    assert contents[1:] == [
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "lookup", "args": {"city": "Paris"}}}],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "lookup", "response": {"content": "sunny in Paris"}}}
            ],
        },
    ]
    loopback.enqueue(
        Script.tools(ScriptedToolCall.of("lookup", {"city": "Rome"})), Script.text("Warm.")
    )
    completion = await complete_with_tools(request, [Tool.from_function(lookup)])
    assert completion.text == "Warm."
    assert calls == ["Paris", "Rome"]


async def test_one_usage_from_the_last_usage_metadata_then_the_finish(
    loopback: LoopbackServer,
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    loopback.enqueue(Script.text("Hello world", usage=usage))
    events = await events_of(gemini(loopback))
    assert [e for e in events if isinstance(e, Usage)] == [Usage(5, 7, 12)]
    assert events[-2:] == [Usage(5, 7, 12), Finish("stop")]


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),  # after some text: the text stands
        ("RECITATION", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
    ],
)
@APIS
async def test_finish_reasons_are_mapped(
    loopback: LoopbackServer, api: Api, sent: str, seen: str
) -> None:
    loopback.enqueue(Script.text("Partial", finish_reason=sent))
    metrics = StreamMetrics()
    if api == "stream":
        events = await events_of(gemini(loopback), metrics=metrics)
        assert text_of(events) == "Partial"
        assert metrics.finish_reason == seen
    else:
        completion = await GeminiTransport().complete(prepare_request("hi", gemini(loopback), {}))
        assert (completion.text, completion.finish_reason) == ("Partial", seen)


# -- a blocked answer is an error -----------------------------------------------------------
@APIS
@pytest.mark.parametrize("reason", ["content_filter", "PROHIBITED_CONTENT", "SPII"])
async def test_a_safety_stop_before_any_text_is_a_content_filter_error(
    loopback: LoopbackServer, api: Api, reason: str
) -> None:
    loopback.enqueue(Script(reasoning=("hmm",), finish_reason=reason))
    with pytest.raises(ContentFilterError, match="blocked the answer") as info:
        await ask(api, gemini(loopback))
    assert isinstance(info.value, ProviderError)
    assert info.value.partial_text == ""


@APIS
async def test_a_blocked_prompt_is_a_content_filter_error(
    loopback: LoopbackServer, api: Api, tmp_path: Path
) -> None:
    loopback.enqueue(Script.recorded(blocked_recording(tmp_path)))
    with pytest.raises(ContentFilterError, match=r"blocked the prompt \(SAFETY\)"):
        await ask(api, gemini(loopback))


async def test_a_recitation_stop_after_text_keeps_the_text(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.recorded(RECITATION))
    metrics = StreamMetrics()
    events = await events_of(gemini(loopback), metrics=metrics)
    assert text_of(events) == "".join(f"text{i}" for i in range(1, 9))
    assert metrics.finish_reason == "content_filter"
    assert metrics.usage == Usage(9, 261, 270)


# -- recorded Gemini streams, byte for byte --------------------------------------------------
async def test_a_recorded_reply_crlf_framed(loopback: LoopbackServer) -> None:
    assert b"\r\n\r\n" in SHORT.read_bytes()
    loopback.enqueue(Script.recorded(SHORT))
    metrics = StreamMetrics()
    events = await events_of(gemini(loopback), metrics=metrics)
    assert text_of(events) == "The capital of Wyoming is **Cheyenne**.\n"
    assert next(e.text for e in events if isinstance(e, TextDelta)) == "The"
    assert metrics.usage == Usage(7, 10, 17)
    assert metrics.finish_reason == "stop"
    loopback.enqueue(Script.recorded(SHORT))
    assert await ask("call", gemini(loopback)) == "The capital of Wyoming is **Cheyenne**.\n"


async def test_a_recorded_thinking_reply(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.recorded(THINKING))
    metrics = StreamMetrics()
    events = await events_of(gemini(loopback), metrics=metrics)
    assert reasoning_of(events) == recorded_text(THINKING, thought=True)
    assert reasoning_of(events).startswith("**Exploring Sky Color**")
    assert text_of(events) == recorded_text(THINKING)
    assert text_of(events).startswith("The sky is blue because")
    # 48 answer tokens and 540 thought tokens are both the completion's.
    assert metrics.usage == Usage(10, 588, 598)


async def test_a_recorded_call_keeps_its_thought_signature_for_the_next_turn(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.recorded(THINKING_CALL))
    metrics = StreamMetrics()
    await events_of(gemini(loopback), metrics=metrics)
    [call] = metrics.tool_calls
    assert (call.name, call.arguments) == ("now", "{}")
    signature = json.loads(THINKING_CALL.read_bytes().split(b"\r\n\r\n")[2][6:])["candidates"][0][
        "content"
    ]["parts"][0]["thoughtSignature"]
    assert call.id == f"call_0__thought__{signature}"
    assert metrics.finish_reason == "tool_calls"
    messages = [
        {"role": "user", "content": "How many days until New Year's Eve?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "2025-07-28"},
    ]
    loopback.enqueue(Script.text("156 days."))
    assert await ask("stream", gemini(loopback), messages) == "156 days."
    model_turn = loopback.requests[-1].body["contents"][1]
    assert model_turn == {
        "role": "model",
        "parts": [{"functionCall": {"name": "now", "args": {}}, "thoughtSignature": signature}],
    }


# -- HTTP errors, typed and retried as configured ---------------------------------------------
INVALID_KEY = {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
}
ERRORS: dict[str, tuple[Script, type[LLMError], bool]] = {
    "429": (Script.error(429), RateLimitError, True),
    "503": (Script.error(503), ProviderError, True),
    "500": (Script.error(500), ProviderError, True),
    "401": (Script.error(401), AuthError, False),
    "403": (Script.error(403), AuthError, False),
    "404": (Script.error(404), ModelNotFoundError, False),
    "400-key": (Script(status=400, error_body=INVALID_KEY), AuthError, False),
    "400": (Script.error(400), ProviderError, False),
}


@APIS
@pytest.mark.parametrize("kind", ERRORS)
async def test_http_errors_are_typed_and_retried_only_when_retryable(
    loopback: LoopbackServer, api: Api, kind: str
) -> None:
    script, error, retryable = ERRORS[kind]
    loopback.enqueue(script, script)
    with pytest.raises(error) as info:
        await ask(api, gemini(loopback, max_retries=1))
    assert type(info.value) is error
    assert not isinstance(info.value, StreamError)  # nothing had started
    assert len(loopback.requests) == (2 if retryable else 1)
    assert info.value.status_code == script.status


async def test_a_google_error_names_its_status(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.error(429))
    with pytest.raises(RateLimitError, match="RESOURCE_EXHAUSTED: You exceeded your current"):
        await ask("stream", gemini(loopback))
    loopback.enqueue(Script.error(404))
    with pytest.raises(ModelNotFoundError, match="models/gemini-x is not found"):
        await ask("stream", gemini(loopback))


async def test_a_retry_within_the_budget_succeeds(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.error(503, retry_after=0), Script.error(429, retry_after=0))
    loopback.enqueue(Script.text("third time"))
    assert await ask("stream", gemini(loopback, max_retries=2)) == "third time"
    assert len(loopback.requests) == 3


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}', "INTERNAL: boom"),
        (b'{"candidates": [], "promptFeedback": {"blockReasonMessage": "M"}}', "no candidates"),
        (b"<html>not json</html>", "not a GenerateContentResponse"),
    ],
    ids=["error-object", "no-candidates", "not-json"],
)
async def test_a_whole_answer_that_is_not_an_answer_is_a_provider_error(
    raw_server: RawServer, body: bytes, match: str
) -> None:
    raw_server.enqueue(json_reply(200, body))
    config = LLMConfig(
        model="gemini/g", api_base=raw_server.url, api_key=KEY, max_retries=2, enable_cache=False
    )
    with pytest.raises(ProviderError, match=match):
        await ask("call", config)
    assert len(raw_server.requests) == 1  # a malformed answer is not retried


# -- failures mid-stream ---------------------------------------------------------------------
async def test_an_error_event_mid_stream_is_a_stream_error_with_the_partial_text(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("Hello world", error_event_after=1))
    with pytest.raises(StreamError, match="INTERNAL: An internal error") as info:
        await ask("stream", gemini(loopback, max_retries=2))
    assert info.value.partial_text == "Hello wo"
    assert len(loopback.requests) == 1  # a started stream is never retried


async def test_a_dropped_connection_is_a_stream_error_with_the_partial_text(
    loopback: LoopbackServer,
) -> None:
    loopback.enqueue(Script.text("Hello world", drop_after=1))
    with pytest.raises(StreamError, match="mid-stream") as info:
        await ask("stream", gemini(loopback))
    assert info.value.partial_text == "Hello wo"


async def test_a_stream_that_ends_without_a_finish_reason_is_a_stream_error(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    first_two = b"".join(SHORT.read_bytes().split(b"\r\n\r\n")[i] + b"\r\n\r\n" for i in (0, 1))
    path = tmp_path / "cut.sse"
    path.write_bytes(first_two)
    loopback.enqueue(Script.recorded(path))
    with pytest.raises(StreamError, match="ended before it finished") as info:
        await ask("stream", gemini(loopback))
    assert info.value.partial_text == "The capital of Wyoming"
    assert info.value.usage == Usage(7, 0, 7)


async def test_a_connection_lost_after_the_finish_reason_loses_nothing(
    raw_server: RawServer,
) -> None:
    # The whole recording in one chunk, then the connection closes without the last chunk.
    raw_server.enqueue(Reply([head(200, SSE_HEADERS) + framed(SHORT.read_bytes())], then="close"))
    config = LLMConfig(
        model="gemini/g", api_base=raw_server.url, api_key=KEY, max_retries=0, enable_cache=False
    )
    assert text_of(await events_of(config)) == "The capital of Wyoming is **Cheyenne**.\n"


async def test_break_closes_the_http_stream_at_once(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("x" * 400, chunk_size=4, chunk_delay=0.02))
    async with contextlib.aclosing(call_llm_stream("hi", gemini(loopback))) as stream:
        async for _ in stream:
            break
    assert await loopback.wait_idle()
    assert loopback.stats().streams_closed_by_client == 1


# -- keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "sent"),
    [
        ({"GEMINI_API_KEY": "gm-env-gemini-key-1"}, "gm-env-gemini-key-1"),
        ({"GOOGLE_API_KEY": "gm-env-google-key-2"}, "gm-env-google-key-2"),
        (
            {"GEMINI_API_KEY": "gm-env-gemini-key-1", "GOOGLE_API_KEY": "gm-env-google-key-2"},
            "gm-env-gemini-key-1",
        ),
        ({}, None),  # an api_base needs no key
    ],
)
async def test_keys_from_the_environment(
    loopback: LoopbackServer,
    no_env_keys: pytest.MonkeyPatch,
    env: dict[str, str],
    sent: str | None,
) -> None:
    for name, value in env.items():
        no_env_keys.setenv(name, value)
    loopback.enqueue(Script.text("ok"))
    assert await ask("stream", gemini(loopback, api_key=None)) == "ok"
    assert loopback.requests[-1].headers.get("x-goog-api-key") == sent


async def test_no_key_anywhere_is_a_missing_key_error(no_env_keys: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingAPIKeyError, match="GEMINI_API_KEY") as info:
        await ask("stream", LLMConfig(model="gemini/gemini-2.5-flash", enable_cache=False))
    assert info.value.env_var == "GEMINI_API_KEY"


async def test_an_oauth_token_goes_as_a_bearer(loopback: LoopbackServer) -> None:
    register_token_provider("gemini-test", StaticTokenProvider("ya29.gemini-test-token"))
    try:
        loopback.enqueue(Script.text("ok"))
        config = gemini(loopback, api_key=None, auth_type="oauth2", oauth_provider="gemini-test")
        assert await ask("stream", config) == "ok"
    finally:
        unregister_token_provider("gemini-test")
    headers = loopback.requests[-1].headers
    assert headers["authorization"] == "Bearer ya29.gemini-test-token"
    assert "x-goog-api-key" not in headers


async def test_the_loopback_checks_gemini_credentials(loopback: LoopbackServer) -> None:
    loopback.api_keys = frozenset({KEY})
    loopback.enqueue(Script.text("ok"))
    assert await ask("stream", gemini(loopback)) == "ok"
    with pytest.raises(AuthError, match="UNAUTHENTICATED"):
        await ask("stream", gemini(loopback, api_key="gm-wrong-key-000111"))
    async with httpx.AsyncClient() as client:
        body = {"contents": [{"role": "user", "parts": [{"text": "by query"}]}]}
        answer = await client.post(
            f"{loopback.url}/v1beta/models/m:generateContent?key={KEY}", json=body
        )
    assert answer.json()["candidates"][0]["content"]["parts"] == [{"text": "by query"}]


# -- nothing unchecked reaches the wire, nothing leaks ---------------------------------------
HOSTILE = [
    "gemini/../admin",
    "gemini/a/b",
    "gemini/a?alt=json",
    "gemini/a#frag",
    "gemini/a b",
    "gemini/a\r\nX-Injected: 1",
    "gemini/a\x00",
    "gemini/a%2Fb",
    "gemini/",
    "gemini/gemini..x",
]


@APIS
@pytest.mark.parametrize("model", HOSTILE)
async def test_hostile_model_names_are_refused_before_anything_is_sent(
    loopback: LoopbackServer, api: Api, model: str
) -> None:
    with pytest.raises(ConfigError, match="Gemini model name"):
        await ask(api, gemini(loopback, model=model))
    assert loopback.requests == []


async def test_a_key_with_crlf_is_refused(loopback: LoopbackServer) -> None:
    config = gemini(loopback).model_copy(update={"api_key": "gm-key\r\nX-Injected: yes"})
    with pytest.raises(ConfigError):
        await ask("stream", config)
    assert loopback.requests == []


@APIS
@pytest.mark.parametrize("where", ["http", "mid-stream"])
async def test_the_key_never_shows_even_when_the_server_echoes_it(
    loopback: LoopbackServer, api: Api, where: str
) -> None:
    key = "gm-echoed-key-5550001234"
    echo = {
        "code": 400,
        "message": f"API key not valid. Please pass a valid API key: {key}",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": key}],
    }
    if where == "http":
        loopback.enqueue(Script(status=400, error_body=echo))
    else:
        loopback.enqueue(Script.text("Hello", error_event_after=0, error_body=echo))
    with pytest.raises(LLMError) as info:
        await ask(api, gemini(loopback, api_key=key))
    assert_no_secret(info.value, key)
    if where == "http":
        assert isinstance(info.value, AuthError)


# -- the loopback dialect ---------------------------------------------------------------------
async def test_the_loopback_frames_events_as_google_does(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hi", reasoning=("hm",)))
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    url = f"{loopback.url}/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json=body, headers={"x-goog-api-key": KEY})
    raw = answer.content
    assert raw.startswith(b'data: {"candidates": [{"content": {"parts": [{"text": "hm","thought": ')
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: ") for e in events[:-1])
    last = json.loads(events[-2][6:])
    assert last["candidates"][0]["finishReason"] == "STOP"


async def test_the_loopback_refuses_a_stream_without_alt_sse(loopback: LoopbackServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{loopback.url}/v1beta/models/gemini-x:streamGenerateContent", json=body
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- any split of the bytes ---------------------------------------------------------------------
def _pieces(document: bytes, cuts: set[int]) -> list[bytes]:
    points = [0, *sorted(c for c in cuts if 0 < c < len(document)), len(document)]
    return [document[a:b] for a, b in itertools.pairwise(points) if b > a]


async def _replay(server: RawServer, pieces: list[bytes]) -> list[StreamEvent]:
    server.enqueue(sse_reply(pieces, pause=0.001))
    config = LLMConfig(
        model="gemini/g", api_base=server.url, api_key=KEY, max_retries=0, enable_cache=False
    )
    return await events_of(config)


async def test_a_recorded_stream_cut_at_each_line_ending_gives_the_same_events() -> None:
    # Every cut within two bytes of each CR and LF (a CRLF split apart, a blank line split
    # from its event...), and every 11th byte elsewhere: about 120 requests, under a second.
    document = SHORT.read_bytes()
    ends = [i for i, byte in enumerate(document) if byte in b"\r\n"]
    cuts = {i + d for i in ends for d in (-1, 0, 1, 2)} | set(range(1, len(document), 11))
    async with RawServer() as server:
        whole = await _replay(server, [document])
        for cut in sorted(c for c in cuts if 0 < c < len(document)):
            assert await _replay(server, _pieces(document, {cut})) == whole, cut
    assert text_of(whole) == "The capital of Wyoming is **Cheyenne**.\n"


@settings(max_examples=30, deadline=None)
@given(cuts=st.sets(st.integers(1, 3200), max_size=10))
async def test_any_split_of_a_recorded_thinking_stream(cuts: set[int]) -> None:
    document = THINKING.read_bytes()
    async with RawServer() as server:
        events = await _replay(server, _pieces(document, cuts))
    assert reasoning_of(events) == recorded_text(THINKING, thought=True)
    assert text_of(events) == recorded_text(THINKING)
    assert events[-2:] == [Usage(10, 588, 598), Finish("stop")]


# -- the same answers through litellm, the reference -------------------------------------------
DIFFERENTIAL: dict[str, Script] = {
    "text": Script.text("Hello from both transports."),
    "reasoning": Script.text("Four.", reasoning=("Let me ", "think.")),
    "tools": Script.tools(
        ScriptedToolCall.of("get_weather", {"city": "Paris", "days": [1, 2]}),
        ScriptedToolCall.of("now"),
    ),
    "text-and-tool": Script.tools(
        ScriptedToolCall.of("lookup", {"q": "kagura"}), content=["Looking ", "it up."]
    ),
    "usage": Script.text(
        "Counted.", usage={"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    ),
    "recorded-short": Script.recorded(SHORT),
    "recorded-thinking": Script.recorded(THINKING),
    "recorded-call": Script.recorded(THINKING_CALL),
    "recorded-recitation": Script.recorded(RECITATION),
}


async def _answer(config: LLMConfig, script: Script, loopback: LoopbackServer) -> dict[str, Any]:
    loopback.enqueue(script)
    metrics = StreamMetrics()
    events = await events_of(config, "What now?", metrics=metrics)
    usage = metrics.usage
    return {
        "text": text_of(events),
        "calls": [(c.name, json.loads(c.arguments)) for c in metrics.tool_calls],
        "usage": None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
    }


def _through_litellm(loopback: LoopbackServer, prompts: list[str]) -> list[dict[str, Any]]:
    """litellm's answer to each prompt in turn, in a child process (see ``_litellm_child``)."""
    config = {
        "model": "gemini/gemini-x",
        "api_base": loopback.url,
        "api_key": KEY,
        "max_retries": 0,
        "enable_cache": False,
        "transport": "litellm",
    }
    args = json.dumps({"config": config, "prompts": prompts})
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_litellm_child.py")), args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _as_json(answer: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(answer))  # tuples as lists, as the child prints them


@dataclass(frozen=True)
class Reference:
    """What litellm answered to each DIFFERENTIAL script ("What now?"), then to
    ``Script.text("a")`` ("hi"); and the requests it sent, in that order."""

    answers: list[dict[str, Any]]
    requests: list[RecordedRequest]


@pytest.fixture(scope="module")
def litellm_reference(loopback_server: LoopbackServer) -> Reference:
    """litellm's side of the two tests below, from one child process: each child imports
    litellm (seconds), so they share one. The server is reset before and after, as the
    ``loopback`` fixture does for a test."""
    loopback_server.reset()
    try:
        loopback_server.enqueue(*DIFFERENTIAL.values(), Script.text("a"))
        answers = _through_litellm(loopback_server, ["What now?"] * len(DIFFERENTIAL) + ["hi"])
        requests, errors = loopback_server.requests, loopback_server.errors
    finally:
        loopback_server.reset()
    assert not errors, f"the loopback server failed inside: {errors!r}"
    assert len(answers) == len(requests) == len(DIFFERENTIAL) + 1
    return Reference(answers, requests)


async def test_litellm_and_the_direct_transport_agree(
    loopback: LoopbackServer, litellm_reference: Reference
) -> None:
    direct = gemini(loopback)
    theirs = litellm_reference.answers[: len(DIFFERENTIAL)]
    ours = [_as_json(await _answer(direct, script, loopback)) for script in DIFFERENTIAL.values()]
    for name, mine, reference in zip(DIFFERENTIAL, ours, theirs, strict=True):
        assert mine == reference, name
        assert mine["text"] or mine["calls"], name


async def test_litellm_sends_the_same_route(
    loopback: LoopbackServer, litellm_reference: Reference
) -> None:
    theirs = litellm_reference.requests[-1]  # "hi", as ours
    loopback.enqueue(Script.text("b"))
    await ask("stream", gemini(loopback))
    (ours,) = loopback.requests
    assert (theirs.path, theirs.query) == (ours.path, ours.query)
    assert theirs.headers["x-goog-api-key"] == ours.headers["x-goog-api-key"] == KEY
    assert theirs.body["contents"] == ours.body["contents"]
