"""The loopback server, driven by real clients: raw httpx, the openai SDK, litellm."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import time
import typing
from collections.abc import AsyncIterator
from dataclasses import FrozenInstanceError, fields
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from kagura.llm import metrics
from kagura.testing.loopback import (
    LoopbackServer,
    LoopbackStats,
    Script,
    ScriptedToolCall,
    ScriptOptions,
)

RECORDED = Path(__file__).resolve().parents[1] / "data" / "openai-recorded"
PROMPT = "Say hello to the loopback server"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
CHAT = {"model": "gpt-4o-mini", "messages": HELLO}
# Plain http only: a bare context spares each client loading the CA bundle (~0.1 s).
PLAIN = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def manifest() -> list[dict[str, Any]]:
    return json.loads((RECORDED / "MANIFEST.json").read_text())


def recorded_params() -> list[Any]:
    return [pytest.param(entry, id=entry["file"].removesuffix(".sse")) for entry in manifest()]


@pytest.fixture
def recorded_dir() -> Path:
    return RECORDED


@pytest.fixture
async def http(loopback: LoopbackServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=loopback.base_url, verify=PLAIN) as client:
        yield client


@pytest.fixture
async def client(loopback: LoopbackServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=loopback.base_url,
        api_key="sk-test",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(verify=PLAIN),
    ) as sdk:
        yield sdk


async def sse_data(response: httpx.Response) -> list[str]:
    """The payload of every ``data:`` line of a streamed response."""
    return [
        line.removeprefix("data: ")
        async for line in response.aiter_lines()
        if line.startswith("data: ")
    ]


async def stream_chat(http: httpx.AsyncClient, **body: Any) -> list[str]:
    async with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True, **body}) as r:
        assert r.status_code == 200
        return await sse_data(r)


async def drain(stream: openai.AsyncStream[ChatCompletionChunk], into: list[str]) -> None:
    """Read an SDK stream to its end (or its error), keeping the text; always closes it."""
    async with stream:
        async for chunk in stream:
            into.extend(c.delta.content or "" for c in chunk.choices)


async def read_lines(
    http: httpx.AsyncClient, into: list[str], *, each: asyncio.Event | None = None, **options: Any
) -> None:
    """Stream a chat request, keeping the non-empty lines until the end or an error;
    ``each`` is set after every line."""
    body = {**CHAT, "stream": True}
    async with http.stream("POST", "/chat/completions", json=body, **options) as r:
        async for line in r.aiter_lines():
            if line:
                into.append(line.removeprefix("data: "))
                if each is not None:
                    each.set()


def recorded_shapes(directory: Path) -> set[Any]:
    return {
        shape(json.loads(line[6:]))
        for path in directory.glob("*.sse")
        for line in path.read_text().splitlines()
        if line.startswith("data: {")
    }


def texts(payloads: list[str]) -> str:
    out = ""
    for data in payloads:
        if data != "[DONE]":
            for choice in json.loads(data)["choices"]:
                out += choice["delta"].get("content") or ""
    return out


# -- the protocol -------------------------------------------------------------------------


async def test_models_are_listed(http: httpx.AsyncClient, client: openai.AsyncOpenAI) -> None:
    response = await http.get("/models")
    assert response.json()["object"] == "list"
    assert [m.id async for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]
    assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")


async def test_empty_queue_echoes_the_last_user_message(
    http: httpx.AsyncClient, loopback: LoopbackServer
) -> None:
    messages = [
        *HELLO,
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "Echo me"},
    ]
    async with http.stream(
        "POST", "/chat/completions", json={**CHAT, "messages": messages, "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        payloads = await sse_data(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["Echo", " me"]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    stats = loopback.stats()
    assert stats.streams_started == stats.streams_completed == 1


@pytest.mark.parametrize(
    ("request_usage", "always", "script_usage", "expected"),
    [
        (False, False, None, None),
        (True, False, None, {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}),
        (False, True, None, {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}),
        (True, False, {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, "script"),
    ],
)
async def test_usage_chunk_when_asked_or_configured(
    http: httpx.AsyncClient,
    loopback: LoopbackServer,
    request_usage: bool,
    always: bool,
    script_usage: dict[str, int] | None,
    expected: Any,
) -> None:
    loopback.always_include_usage = always
    loopback.enqueue(Script.text("Hello world", usage=script_usage))
    extra = {"stream_options": {"include_usage": True}} if request_usage else {}
    payloads = await stream_chat(http, **extra)
    last = json.loads(payloads[-2])
    if expected is None:
        assert "usage" not in last
        return
    assert last["choices"] == []
    # "Say hello to the loopback server" is 32 chars, ~8 tokens; "Hello world" 11 chars, 3.
    assert last["usage"] == (script_usage if expected == "script" else expected)


async def test_estimated_usage_is_kaguras_estimate_tokens(
    client: openai.AsyncOpenAI, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a scripted usage the server counts tokens as kagura estimates them."""
    monkeypatch.setattr(metrics, "estimate_tokens", lambda chars: 1000 + chars)
    loopback.enqueue(Script.text("Hello world"))
    answer = await client.chat.completions.create(model="m", messages=HELLO)
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (1032, 1011)


def shape(value: Any) -> Any:
    """A JSON value's structure: keys in order, leaves replaced by their kind."""
    if isinstance(value, dict):
        items = typing.cast("dict[str, Any]", value).items()
        return tuple((k, "usage" if k == "usage" else shape(v)) for k, v in items)
    if isinstance(value, list):
        return tuple(shape(v) for v in typing.cast("list[Any]", value))
    return "null" if value is None else type(value).__name__


@pytest.mark.parametrize(
    "script",
    [
        Script.text("Hello world"),
        Script.tools(ScriptedToolCall.of("get_weather", {"city": "Paris"})),
        Script.tools(
            ScriptedToolCall.of("GetWeatherArgs", {"city": "Edinburgh"}),
            ScriptedToolCall.of("get_stock_price", {"ticker": "AAPL"}),
        ),
    ],
    ids=["text", "tool_call", "parallel_tool_calls"],
)
async def test_generated_chunks_have_the_shapes_of_recorded_ones(
    http: httpx.AsyncClient, loopback: LoopbackServer, recorded_dir: Path, script: Script
) -> None:
    recorded = recorded_shapes(recorded_dir)
    loopback.enqueue(script)
    payloads = await stream_chat(http, stream_options={"include_usage": True})
    assert payloads[-1] == "[DONE]"
    for data in payloads[:-1]:
        assert shape(json.loads(data)) in recorded, data


@pytest.mark.parametrize("entry", recorded_params())
async def test_recorded_stream_is_replayed_byte_for_byte(
    http: httpx.AsyncClient, loopback: LoopbackServer, entry: dict[str, Any]
) -> None:
    path = RECORDED / entry["file"]
    loopback.enqueue(Script.recorded(path))
    async with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r:
        body = b"".join([chunk async for chunk in r.aiter_raw()])
    assert body == path.read_bytes()
    assert loopback.stats().streams_completed == 1


@pytest.mark.parametrize("entry", recorded_params())
async def test_recorded_stream_reassembles_with_the_openai_sdk(
    client: openai.AsyncOpenAI, loopback: LoopbackServer, entry: dict[str, Any]
) -> None:
    loopback.enqueue(Script.recorded(RECORDED / entry["file"]))
    text: dict[int, str] = {}
    refusal: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    calls: dict[int, dict[str, Any]] = {}
    usage = None
    stream = await client.chat.completions.create(
        model="gpt-4o-2024-08-06", messages=entry["request"]["messages"], stream=True
    )
    async with stream:
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                i = choice.index
                text[i] = text.get(i, "") + (choice.delta.content or "")
                refusal[i] = refusal.get(i, "") + (choice.delta.refusal or "")
                finish[i] = choice.finish_reason or finish.get(i)
                if i == 0:
                    for call in choice.delta.tool_calls or ():
                        slot = calls.setdefault(
                            call.index, {"index": call.index, "name": "", "arguments": ""}
                        )
                        slot["id"] = call.id or slot.get("id")
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
    if entry["expected_text"] is not None:
        assert text[0] == entry["expected_text"]
    for index, expected in entry.get("per_choice", {}).items():
        assert text[int(index)] == expected["text"]
        assert finish[int(index)] == expected["finish_reason"]
    if "expected_refusal" in entry:
        assert refusal[0] == entry["expected_refusal"]
    assert [calls[i] for i in sorted(calls)] == entry.get("tool_calls_choice0", [])
    assert finish[0] == entry["finish_reason"]
    assert (usage is not None) == entry["has_usage_chunk"]


async def test_recorded_stream_answers_a_non_streaming_request(
    client: openai.AsyncOpenAI, loopback: LoopbackServer, recorded_dir: Path
) -> None:
    loopback.enqueue(
        Script.recorded(recorded_dir / "plain_text.sse"),
        Script.recorded(recorded_dir / "parallel_tool_calls.sse"),
    )
    plain = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert plain.choices[0].message.content is not None
    assert plain.choices[0].message.content.startswith("I'm unable to provide real-time weather")
    assert plain.usage is not None
    tools = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert tools.choices[0].finish_reason == "tool_calls"
    names = [
        c.function.name for c in tools.choices[0].message.tool_calls or () if c.type == "function"
    ]
    assert names == ["GetWeatherArgs", "get_stock_price"]


async def test_scripted_tool_calls_stream_through_the_openai_sdk(
    client: openai.AsyncOpenAI, loopback: LoopbackServer
) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Paris"}, fragment_size=3, id="call_a"),
            ScriptedToolCall.of("get_stock_price", '{"ticker": "AAPL"}'),
            content=["Let me ", "check."],
        )
    )
    stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
    text, args, ids, finish = "", {0: "", 1: ""}, {}, None
    async with stream:
        async for chunk in stream:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            for call in delta.tool_calls or ():
                if call.id:
                    ids[call.index] = (call.id, call.function and call.function.name)
                args[call.index] += (call.function and call.function.arguments) or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == "Let me check."
    assert json.loads(args[0]) == {"city": "Paris"}
    assert json.loads(args[1]) == {"ticker": "AAPL"}
    assert ids == {0: ("call_a", "get_weather"), 1: ("call_loopback_1", "get_stock_price")}
    assert finish == "tool_calls"


async def test_non_streaming_completion(
    client: openai.AsyncOpenAI, loopback: LoopbackServer
) -> None:
    loopback.enqueue(
        Script.text("Hello world", finish_reason="length"),
        Script.tools(ScriptedToolCall.of("f", {"a": 1})),
    )
    first = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert first.object == "chat.completion"
    assert first.choices[0].message.content == "Hello world"
    assert first.choices[0].finish_reason == "length"
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (8, 3)
    second = await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    message = second.choices[0].message
    assert message.content is None
    assert second.choices[0].finish_reason == "tool_calls"
    call = (message.tool_calls or [])[0]
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("f", {"a": 1})
    assert loopback.stats().streams_started == 0


# -- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "error", "code"),
    [
        (Script.error(401), openai.AuthenticationError, "invalid_api_key"),
        (Script.error(404), openai.NotFoundError, "model_not_found"),
        (Script.error(429, retry_after=7), openai.RateLimitError, "rate_limit_exceeded"),
        (Script.error(500), openai.InternalServerError, None),
        (Script.error(503, "busy", code="overloaded"), openai.InternalServerError, "overloaded"),
    ],
    ids=["401", "404", "429", "500", "503"],
)
async def test_http_error_status_before_the_stream(
    client: openai.AsyncOpenAI,
    loopback: LoopbackServer,
    script: Script,
    error: type[openai.APIStatusError],
    code: str | None,
) -> None:
    loopback.enqueue(script)
    with pytest.raises(error) as caught:
        await client.chat.completions.create(model="gpt-x", messages=HELLO, stream=True)
    assert caught.value.status_code == script.status
    assert caught.value.code == code
    body = typing.cast("dict[str, Any]", caught.value.body)
    assert set(body) >= {"message", "type", "code"}
    if script.status == 404:
        assert "`gpt-x`" in body["message"]
    if script.status == 429:
        assert caught.value.response.headers["retry-after"] == "7"
    assert loopback.stats().streams_started == 0


async def test_error_event_mid_stream(client: openai.AsyncOpenAI, loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello world", error_event_after=2))
    text: list[str] = []
    stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="server had an error") as caught:
        await drain(stream, text)
    assert "".join(text) == "Hello wo"
    assert typing.cast("dict[str, Any]", caught.value.body)["type"] == "server_error"
    assert loopback.stats().streams_completed == 1


async def test_dropped_connection_mid_stream(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, loopback: LoopbackServer
) -> None:
    loopback.enqueue(Script.text("Hello world", drop_after=1), Script.text("Hello", drop_after=1))
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await read_lines(http, seen)
    assert texts(seen) == "Hell"
    text: list[str] = []
    stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
    with pytest.raises(openai.APIConnectionError):
        await drain(stream, text)
    assert "".join(text) == "Hell"
    stats = loopback.stats()
    assert (stats.streams_completed, stats.streams_in_progress) == (2, 0)


async def test_stall_shows_as_a_read_timeout(
    http: httpx.AsyncClient, loopback: LoopbackServer
) -> None:
    loopback.enqueue(Script.text("Hello world", stall_after=1))
    received: list[str] = []
    started = time.monotonic()
    line = asyncio.Event()
    timeout = httpx.Timeout(5, read=0.3)
    reading = asyncio.create_task(read_lines(http, received, each=line, timeout=timeout))
    while len(received) < 2:
        await asyncio.wait_for(line.wait(), 2)
        line.clear()
    assert texts(received) == "Hell"
    assert loopback.stats().streams_in_progress == 1  # stalled, still open
    with pytest.raises(httpx.ReadTimeout):
        await reading
    assert 0.25 < time.monotonic() - started < 2.0
    assert texts(received) == "Hell"
    assert await loopback.wait_idle(1.0)
    stats = loopback.stats()
    assert (stats.streams_closed_by_client, stats.streams_completed) == (1, 0)


async def test_malformed_line_mid_stream(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, loopback: LoopbackServer
) -> None:
    loopback.enqueue(
        Script.text("Hello world", malformed_after=1), Script.text("Hi", malformed_after=1)
    )
    payloads = await stream_chat(http)
    assert payloads[2] == Script().malformed_data
    assert payloads[-1] == "[DONE]"  # the stream carries on after the bad line
    stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
    with pytest.raises(json.JSONDecodeError):
        await drain(stream, [])


async def test_faults_of_a_non_streaming_request(
    loopback: LoopbackServer, client: openai.AsyncOpenAI
) -> None:
    loopback.enqueue(
        Script.text("x", drop_after=0),
        Script.text("x", error_event_after=0),
        Script.text("x", malformed_after=0),
        Script.text("x", stall_after=0),
    )
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=HELLO)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=HELLO)
    with pytest.raises(json.JSONDecodeError):
        await client.chat.completions.create(model="m", messages=HELLO)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=HELLO, timeout=0.2)


# -- the client leaving -------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        Script.text("Hello slow world", chunk_delay=0.5),
        Script.text("Hello stalled world", stall_after=1),
        Script.text("Hello", ttft=0.0, chunk_delay=5.0),
    ],
    ids=["slow", "stall", "long-gap"],
)
@pytest.mark.parametrize("via", ["httpx", "openai"])
async def test_client_breaking_after_the_first_chunk_ends_the_server_stream(
    http: httpx.AsyncClient,
    client: openai.AsyncOpenAI,
    loopback: LoopbackServer,
    script: Script,
    via: str,
) -> None:
    loopback.enqueue(script)
    if via == "httpx":
        async with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r:
            async for _ in r.aiter_lines():
                break
    else:
        stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
        async with stream:
            async for _ in stream:
                break
    assert await loopback.wait_idle(1.0)
    stats = loopback.stats()
    assert (stats.streams_closed_by_client, stats.streams_in_progress) == (1, 0)


async def test_keep_alive_reuses_the_connection(
    http: httpx.AsyncClient, loopback: LoopbackServer
) -> None:
    for _ in range(2):
        await stream_chat(http)
        assert (await http.post("/chat/completions", json=CHAT)).status_code == 200
    assert (await http.get("/models")).status_code == 200
    assert len({r.connection_id for r in loopback.requests}) == 1
    assert loopback.stats().connections_opened == 1
    response = await http.post("/chat/completions", json=CHAT, headers={"connection": "close"})
    assert response.headers["connection"] == "close"
    await stream_chat(http)
    assert loopback.stats().connections_opened == 2


async def test_time_to_first_token_and_chunk_delay(
    http: httpx.AsyncClient, loopback: LoopbackServer
) -> None:
    loopback.enqueue(Script.chunks(["a", "b", "c"], ttft=0.4, chunk_delay=0.1))
    started = time.monotonic()
    arrivals: list[float] = []
    async with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r:
        headers_at = time.monotonic() - started
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - started)
    assert headers_at < 0.3  # headers first, then the wait for the first token
    role, a, b, c, _finish = arrivals
    assert role > 0.38
    assert a - role < 0.1  # the role chunk and the first text arrive together
    assert 0.08 < b - a < 0.5
    assert 0.08 < c - b < 0.5


async def test_concurrent_streams(loopback: LoopbackServer) -> None:
    loopback.enqueue(*(Script.text(f"stream number {i}", chunk_delay=0.02) for i in range(6)))

    async def one() -> str:
        async with httpx.AsyncClient(base_url=loopback.base_url, verify=PLAIN) as http:
            return texts(await stream_chat(http))

    results = await asyncio.gather(*(one() for _ in range(6)))
    assert sorted(results) == [f"stream number {i}" for i in range(6)]
    stats = loopback.stats()
    assert stats.streams_started == stats.streams_completed == 6


async def test_stats_is_a_frozen_snapshot_of_the_counters(
    http: httpx.AsyncClient, loopback: LoopbackServer
) -> None:
    loopback.enqueue(Script.text("Hello"), Script.text("later"))
    before = loopback.stats()
    await stream_chat(http)
    await http.post(loopback.token_url, data={**GRANT, **GOOD})
    after = loopback.stats()
    assert (before.streams_started, before.scripts_pending) == (0, 2)  # a snapshot: unchanged
    assert after == LoopbackStats(
        streams_started=1,
        streams_completed=1,
        connections_opened=1,
        connections_open=after.connections_open,  # other tests' connections may be closing
        token_requests=1,
        scripts_pending=1,
    )
    with pytest.raises(FrozenInstanceError):
        after.streams_started = 2  # pyright: ignore[reportAttributeAccessIssue] -- the point
    assert not hasattr(loopback, "streams_started")  # counters are read one way: stats()


def test_reset_aborts_streams_in_flight_and_clears_everything(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello", stall_after=0), Script.text("never used"))
    with httpx.Client(base_url=loopback.base_url, verify=PLAIN) as http:
        with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r:
            lines = r.iter_lines()  # keep it: a discarded iterator closes the response
            next(lines)
            assert loopback.stats().streams_in_progress == 1
            loopback.default = Script.text("changed")
            loopback.reset()
            assert loopback.stats().streams_in_progress == 0
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)
        assert loopback.requests == []
        stats = loopback.stats()
        assert stats == LoopbackStats(connections_open=stats.connections_open)
        assert loopback.default is None
        echo = http.post("/chat/completions", json=CHAT).json()
    assert echo["choices"][0]["message"]["content"] == PROMPT


def test_start_stop_and_a_plain_sync_client() -> None:
    server = LoopbackServer()
    with server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        server.enqueue(Script.text("Hello world", stall_after=2))
        with (
            httpx.Client(base_url=server.base_url, verify=PLAIN) as http,
            http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r,
        ):
            lines = r.iter_lines()  # keep it: a discarded iterator closes the response
            next(lines)
            assert not server.wait_idle_sync(0.05)
            assert server.stats().connections_open == 1
    assert server.wait_idle_sync(0.0)
    assert server.stats().connections_open == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/v1/models", verify=PLAIN)


# -- requests and odd inputs ----------------------------------------------------------------


async def test_requests_are_recorded(http: httpx.AsyncClient, loopback: LoopbackServer) -> None:
    await http.post(
        "/chat/completions?api-version=1", json={**CHAT, "n": 1}, headers={"X-Trace": "abc"}
    )

    async def body() -> AsyncIterator[bytes]:  # sent with Transfer-Encoding: chunked
        yield json.dumps({**CHAT, "temperature": 0.5})[:10].encode()
        yield json.dumps({**CHAT, "temperature": 0.5})[10:].encode()

    await http.post(
        "/chat/completions", content=body(), headers={"content-type": "application/json"}
    )
    first, second = loopback.requests
    assert (first.method, first.path, first.query) == (
        "POST",
        "/v1/chat/completions",
        "api-version=1",
    )
    assert first.headers["x-trace"] == "abc"
    assert first.body == {**CHAT, "n": 1}
    assert second.headers["transfer-encoding"] == "chunked"
    assert second.body["temperature"] == 0.5


async def test_unknown_paths_and_bad_bodies(http: httpx.AsyncClient) -> None:
    missing = await http.get("/nothing/here")
    assert missing.status_code == 404
    assert "error" in missing.json()
    bad = await http.post("/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"


def raw_exchange(server: LoopbackServer, request: bytes) -> bytes:
    """Send ``request`` on a new connection; what the server sends until it closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(request)
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


POST_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: loopback\r\n"
CHUNKED = POST_HEAD + b"transfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (CHUNKED + b"zz\r\n", "bad chunk size b'zz'"),
        (CHUNKED + b"\r\n", "bad chunk size b''"),
        (CHUNKED + b"-1\r\nx\r\n0\r\n\r\n", "bad chunk size b'-1'"),
        (CHUNKED + b"0x2\r\n{}\r\n0\r\n\r\n", "bad chunk size b'0x2'"),
        (CHUNKED + b"2\r\n{}}\r\n0\r\n\r\n", "chunk data longer than its size"),
        (POST_HEAD + b"content-length: -2\r\n\r\n{}", "bad content-length '-2'"),
        (POST_HEAD + b"content-length: 1_0\r\n\r\n{}", "bad content-length '1_0'"),
        (POST_HEAD + b"content-length: 2\r\ncontent-length: 2\r\n\r\n{}", "'2, 2'"),
    ],
    ids=["letters", "empty", "negative", "0x", "overlong-chunk", "negative-length", "1_0", "twice"],
)
def test_a_body_it_cannot_frame_gets_a_400_and_a_close(
    loopback: LoopbackServer, request_bytes: bytes, problem: str
) -> None:
    head, _, body = raw_exchange(loopback, request_bytes).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    assert status_line == "HTTP/1.1 400 Bad Request"
    assert "connection: close" in header_lines
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert problem in error["message"]
    assert loopback.errors == []


def test_an_unexpected_error_reading_a_request_is_recorded(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object) -> None:
        raise RuntimeError("a bug in the reader")

    monkeypatch.setattr("kagura.testing.loopback._http.Connection.read_request", broken)
    try:
        assert raw_exchange(loopback, b"") == b""  # nothing sent: closing cannot reset
        assert [str(e) for e in loopback.errors] == ["a bug in the reader"]
    finally:
        loopback.reset()  # the fixture fails a test that leaves errors behind


async def test_api_keys_are_checked_when_configured(
    client: openai.AsyncOpenAI, loopback: LoopbackServer
) -> None:
    loopback.api_keys = frozenset({"sk-test"})
    assert (await client.chat.completions.create(model="m", messages=HELLO)).choices
    with pytest.raises(openai.AuthenticationError):
        await client.with_options(api_key="sk-wrong").chat.completions.create(
            model="m",
            messages=HELLO,
        )


def test_script_options_name_script_fields() -> None:
    names = {f.name for f in fields(Script)}
    assert set(typing.get_type_hints(ScriptOptions)) <= names
    assert names - set(typing.get_type_hints(ScriptOptions)) == {
        "content",
        "tool_calls",
        "status",
        "retry_after",
        "recorded_events",
    }


# -- OAuth2 ---------------------------------------------------------------------------------


async def test_token_endpoint_issues_tokens(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI, loopback: LoopbackServer
) -> None:
    loopback.oauth_clients = {"app": "s3cret"}
    loopback.token_expires_in = 120
    form = {"grant_type": "client_credentials", "client_id": "app", "client_secret": "s3cret"}
    first = await http.post(loopback.token_url, data={**form, "scope": "llm"})
    assert first.status_code == 200
    assert first.json() == {
        "access_token": "tok-1",
        "token_type": "Bearer",
        "expires_in": 120,
        "scope": "llm",
    }
    basic = base64.b64encode(b"app:s3cret").decode()
    second = await http.post(
        loopback.token_url,
        data={"grant_type": "client_credentials"},
        headers={"authorization": f"Basic {basic}"},
    )
    assert second.json()["access_token"] == "tok-2"
    assert loopback.stats().token_requests == 2
    assert loopback.requests[0].form["client_id"] == "app"

    loopback.api_keys = frozenset()  # only issued tokens are accepted now
    authed = client.with_options(api_key="tok-2")
    assert (await authed.chat.completions.create(model="m", messages=HELLO)).choices
    loopback.revoke_tokens()
    with pytest.raises(openai.AuthenticationError):
        await authed.chat.completions.create(model="m", messages=HELLO)


GRANT = {"grant_type": "client_credentials"}
GOOD = {"client_id": "test-client", "client_secret": "test-secret"}
WRONG_BASIC = {"authorization": "Basic " + base64.b64encode(b"test-client:no").decode()}


@pytest.mark.parametrize(
    ("data", "headers", "status", "error"),
    [
        ({**GRANT, **GOOD, "client_secret": "no"}, {}, 401, "invalid_client"),
        ({**GRANT, **GOOD, "client_id": "nobody"}, {}, 401, "invalid_client"),
        (GRANT, WRONG_BASIC, 401, "invalid_client"),
        ({**GOOD, "grant_type": "password"}, {}, 400, "unsupported_grant_type"),
        (GOOD, {}, 400, "invalid_request"),
    ],
    ids=["wrong-secret", "unknown-client", "wrong-basic", "wrong-grant", "no-grant"],
)
async def test_token_endpoint_rejects(
    http: httpx.AsyncClient,
    loopback: LoopbackServer,
    data: dict[str, str],
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = await http.post(loopback.token_url, data=data, headers=headers)
    assert (response.status_code, response.json()) == (status, {"error": error})


async def test_token_endpoint_delay_and_failure(
    http: httpx.AsyncClient, loopback: LoopbackServer
) -> None:
    form = {**GRANT, **GOOD}
    loopback.token_delay = 0.2
    started = time.monotonic()
    assert (await http.post(loopback.token_url, data=form)).status_code == 200
    assert time.monotonic() - started >= 0.18
    loopback.token_delay = 0.0
    loopback.token_fail_status = 500
    failed = await http.post(loopback.token_url, data=form)
    assert failed.status_code == 500
    assert loopback.stats().token_requests == 2


# -- litellm --------------------------------------------------------------------------------


async def test_litellm_streams_through_the_server(loopback: LoopbackServer) -> None:
    import os

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    loopback.enqueue(Script.text("Hello from litellm", chunk_size=3))
    response = await litellm.acompletion(
        model="openai/gpt-4o-mini",
        api_base=loopback.base_url,
        api_key="sk-test",
        messages=HELLO,
        stream=True,
    )
    assert isinstance(response, litellm.CustomStreamWrapper)
    text = ""
    try:
        async for chunk in response:
            text += chunk.choices[0].delta.content or ""
    finally:
        await response.aclose()
    assert text == "Hello from litellm"
    assert loopback.requests[0].headers["authorization"] == "Bearer sk-test"
    assert await loopback.wait_idle()
