"""The AI SDK's UI message stream: kagura.web's endpoint under real uvicorn, against the
loopback LLM server, read by the ``ai`` package's own client (tests/js/chat.mjs, which
validates every chunk against the package's schema); then the encoder and
``messages_from_ui`` on their own.

The Node harness needs node and ``make node-deps`` (npm ci in tests/js); without them
these tests skip with the reason, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from _live_server import serve
from kagura import AgentStream, LLMConfig, agent
from kagura.errors import ConfigError
from kagura.events import Finish, ReasoningDelta, ToolCall, ToolCallDelta, ToolResult, Usage
from kagura.operators import parse_model
from kagura.pipes import StreamOutcome
from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall
from kagura.web import UIMessageChunks, messages_from_ui, ui_message_stream_response

JS = Path(__file__).parent / "js"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ui_message_stream_app.py"
KEY = "my-plain-ui-key-8765"  # not sk-shaped: only remembering it can scrub it


class Recipe(BaseModel):
    title: str
    minutes: int
    steps: list[str]


RECIPE = Recipe(
    title="Green tea", minutes=4, steps=["boil the water", "let it cool a little", "steep"]
)


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny, 21 C in {city}"


@agent(stream=True, model="openai/gpt-4o-mini", tools=[get_weather])
async def weather(question: str) -> AsyncIterator[str]:
    """{{ question }}"""
    ...


@dataclass
class Upstream:
    """Where the routes send their LLM requests, and how their streams ended."""

    config: LLMConfig
    outcomes: list[StreamOutcome] = field(default_factory=list[StreamOutcome])
    ended: threading.Event = field(default_factory=threading.Event)

    def record(self, _: object, outcome: StreamOutcome) -> None:
        self.outcomes.append(outcome)
        self.ended.set()


def make_app(upstream: Upstream) -> Starlette:
    async def chat(request: Request) -> Response:
        try:
            messages = messages_from_ui(await request.body())
        except ConfigError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        kind = request.path_params["kind"]
        config = upstream.config
        stream: AgentStream[Any]
        if kind == "agent":
            stream = weather.with_config(config)(messages[-1]["content"])
        elif kind == "recipe":
            stream = AgentStream.from_llm(
                messages, config, pipeline=parse_model(Recipe, partial=True, every=1)
            )
        elif kind == "boom":

            async def failing() -> AsyncIterator[str]:
                yield "so far "
                raise RuntimeError(f"db password=hunter2 key {KEY}")

            return ui_message_stream_response(failing())
        else:
            stream = AgentStream.from_llm(messages, config)
        stream.add_done_callback(upstream.record)
        return ui_message_stream_response(stream, message_id="msg_kagura")

    return Starlette(routes=[Route("/chat/{kind}", chat, methods=["POST"])])


@dataclass
class Web:
    base_url: str
    upstream: Upstream


@pytest.fixture(scope="module")
def web_server(loopback_server: LoopbackServer) -> Iterator[Web]:
    config = LLMConfig(
        model="openai/gpt-4o-mini",
        api_base=loopback_server.base_url,
        api_key=SecretStr(KEY),
        max_retries=0,
    )
    upstream = Upstream(config)
    with serve(make_app(upstream)) as base_url:
        yield Web(base_url, upstream)


@pytest.fixture
def web(web_server: Web, loopback: LoopbackServer) -> Web:
    web_server.upstream.outcomes.clear()
    web_server.upstream.ended.clear()
    return web_server


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/js's packages installed; else skip (fail in CI)."""
    found = shutil.which("node")
    if found is None:
        problem = "node is not installed: the AI SDK client tests need Node >= 18 and npm"
    elif not (JS / "node_modules" / "ai" / "package.json").is_file():
        problem = "the ai package is not installed: run `make node-deps` (npm ci in tests/js)"
    else:
        return found
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


async def run_client(node: str, url: str, mode: str = "chat", text: str = "Hello") -> Any:
    """Run tests/js/chat.mjs against ``url`` and return what it printed."""
    done = await asyncio.to_thread(
        subprocess.run,
        [node, str(JS / "chat.mjs"), url, mode, text],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assistant(result: Any) -> dict[str, Any]:
    message = result["messages"][-1]
    assert message["role"] == "assistant"
    return message


# -- the ai client reads kagura's stream ------------------------------------------------
async def test_text_and_reasoning(web: Web, loopback: LoopbackServer, node: str) -> None:
    loopback.enqueue(Script.text("Hello from kagura, streamed.", reasoning=("Let me ", "think.")))
    result = await run_client(node, f"{web.base_url}/chat/text", text="Say hello")
    assert result["error"] is None
    assert result["status"] == "ready"
    assert result["finish"] == {"isAbort": False, "isError": False, "finishReason": "stop"}
    message = assistant(result)
    assert message["id"] == "msg_kagura"
    parts = [{k: p[k] for k in ("type", "text", "state") if k in p} for p in message["parts"]]
    assert parts == [
        {"type": "step-start"},
        {"type": "reasoning", "text": "Let me think.", "state": "done"},
        {"type": "text", "text": "Hello from kagura, streamed.", "state": "done"},
    ]
    # useChat's body reached the model as a user message
    assert loopback.requests[-1].body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert web.upstream.outcomes == ["completed"]


async def test_the_response_says_its_protocol(web: Web, loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hi."))
    body = {
        "id": "c",
        "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
    }
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.post(f"{web.base_url}/chat/text", json=body)
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[0] == 'data: {"type":"start","messageId":"msg_kagura"}'
    assert frames[-1] == "data: [DONE]"


async def test_a_tool_call_with_its_input_and_output(
    web: Web, loopback: LoopbackServer, node: str
) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Oslo"}), content=["Let me look. "]
        ),
        Script.text("It is sunny in Oslo."),
    )
    result = await run_client(node, f"{web.base_url}/chat/agent", text="Weather in Oslo?")
    assert result["error"] is None
    message = assistant(result)
    kinds = [p["type"] for p in message["parts"]]
    assert kinds == ["step-start", "text", "tool-get_weather", "step-start", "text"]
    call = message["parts"][2]
    assert call["toolCallId"] == "call_loopback_0"
    assert call["state"] == "output-available"
    assert call["input"] == {"city": "Oslo"}
    assert call["output"] == "sunny, 21 C in Oslo"
    assert message["parts"][1]["text"] == "Let me look. "
    assert message["parts"][4]["text"] == "It is sunny in Oslo."
    assert result["finish"]["finishReason"] == "stop"
    # the next turn sends it all back: messages_from_ui reads the client's own messages
    history = messages_from_ui({"id": "c", "messages": result["messages"]})
    assert history == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Let me look. ",
            "tool_calls": [
                {
                    "id": "call_loopback_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_loopback_0", "content": "sunny, 21 C in Oslo"},
        {"role": "assistant", "content": "It is sunny in Oslo."},
    ]


async def test_the_chunks_of_a_tool_round_in_order(
    web: Web, loopback: LoopbackServer, node: str
) -> None:
    loopback.enqueue(
        Script.tools(ScriptedToolCall.of("get_weather", {"city": "Paris"}, fragment_size=5)),
        Script.text("Sunny."),
    )
    result = await run_client(node, f"{web.base_url}/chat/agent", "read", "Weather in Paris?")
    assert result["error"] is None
    chunks: list[str] = result["chunks"]
    deltas = chunks.count("tool-input-delta")
    assert deltas == 4  # '{"cit', 'y": "', 'Paris', '"}'
    assert chunks == [
        "start",
        "start-step",
        "tool-input-start",
        *["tool-input-delta"] * deltas,
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        *["text-delta"] * chunks.count("text-delta"),
        "text-end",
        "finish-step",
        "finish",
    ]
    assert result["message"]["parts"][-1] == {"type": "text", "text": "Sunny.", "state": "done"}


async def test_partial_objects_as_one_data_part(
    web: Web, loopback: LoopbackServer, node: str
) -> None:
    loopback.enqueue(Script.text(RECIPE.model_dump_json(indent=1), chunk_size=6))
    result = await run_client(node, f"{web.base_url}/chat/recipe", text="A tea recipe")
    assert result["error"] is None
    data = result["data"]  # every data chunk, as onData saw it
    assert len(data) > 5
    assert {d["type"] for d in data} == {"data-recipe"}
    assert len({d["id"] for d in data}) == 1  # one part, replaced by each snapshot
    assert "steps" not in data[0]["data"]
    assert Recipe.model_validate(data[-1]["data"]) == RECIPE
    message = assistant(result)
    parts = [p for p in message["parts"] if p["type"] != "step-start"]
    assert parts == [{"type": "data-recipe", "id": data[0]["id"], "data": RECIPE.model_dump()}]


async def test_an_error_mid_stream_is_an_error_to_the_client(
    web: Web, loopback: LoopbackServer, node: str
) -> None:
    loopback.enqueue(
        Script.text(
            "Hello world, and more", error_event_after=1, error_body={"message": f"bad {KEY}"}
        )
    )
    result = await run_client(node, f"{web.base_url}/chat/text")
    assert result["status"] == "error"
    assert result["error"].startswith("StreamError: ")
    assert "[REDACTED]" in result["error"]
    assert KEY not in json.dumps(result)
    assert result["finish"]["isError"] is True
    text = [p["text"] for p in assistant(result)["parts"] if p["type"] == "text"]
    assert text == ["Hell"]  # what arrived before the error
    assert web.upstream.outcomes == ["failed"]


async def test_an_unexpected_error_says_nothing_of_itself(web: Web, node: str) -> None:
    result = await run_client(node, f"{web.base_url}/chat/boom", "read")
    assert result["error"] == "InternalError: the stream failed on the server"
    assert result["chunks"][-1] == "error"
    assert "hunter2" not in json.dumps(result)


async def test_stop_closes_the_llm_request(web: Web, loopback: LoopbackServer, node: str) -> None:
    loopback.enqueue(Script.text("word " * 400, chunk_size=5, chunk_delay=0.02))  # about 8 s
    result = await run_client(node, f"{web.base_url}/chat/text", "abort")
    assert result["status"] == "ready"
    assert result["finish"]["isAbort"] is True
    text = "".join(p["text"] for p in assistant(result)["parts"] if p["type"] == "text")
    assert text.startswith("word ")
    assert len(text) < 1000
    assert await loopback.wait_idle(5.0), "the LLM stream is still open"
    assert loopback.stats().streams_closed_by_client == 1
    assert loopback.stats().streams_completed == 0
    assert await asyncio.to_thread(web.upstream.ended.wait, 5.0)
    assert web.upstream.outcomes == ["closed"]


async def test_an_invalid_body_is_a_clear_400(web: Web) -> None:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.post(f"{web.base_url}/chat/text", json={"messages": "hi"})
    assert response.status_code == 400
    assert response.json() == {"error": "the chat request body has no 'messages' list"}


# -- the example app ------------------------------------------------------------------------
def load_example() -> ModuleType:
    """examples/ui_message_stream_app.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("kagura_ui_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


async def test_the_example_app_offline(node: str) -> None:
    example = load_example()
    with serve(example.create_app(LLMConfig(model="kagura/replay"))) as base_url:
        chat = await run_client(node, f"{base_url}/api/chat", text="Weather in Oslo?")
        recipe = await run_client(node, f"{base_url}/api/recipe", text="Tea, please")
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            bad = await client.post(f"{base_url}/api/chat", content=b"[1, 2]")
    assert chat["error"] is None
    texts = [p["text"] for p in assistant(chat)["parts"] if p["type"] == "text"]
    assert texts == [example.CHAT_ANSWER]
    assert recipe["error"] is None
    data = [p for p in assistant(recipe)["parts"] if p["type"] == "data-recipe"]
    assert len(data) == 1
    assert data[0]["data"] == json.loads(example.RECIPE_JSON)
    assert len(recipe["data"]) > 1  # it grew
    assert bad.status_code == 400
    assert "must be a JSON object" in bad.json()["error"]


async def test_the_example_app_runs_the_tools(loopback: LoopbackServer, node: str) -> None:
    example = load_example()
    config = LLMConfig(model="openai/x", api_base=loopback.base_url, api_key=KEY, max_retries=0)
    loopback.enqueue(
        Script.tools(ScriptedToolCall.of("get_weather", {"city": "Oslo"})),
        Script.text("Sunny in Oslo."),
    )
    with serve(example.create_app(config)) as base_url:
        result = await run_client(node, f"{base_url}/api/chat", text="Weather in Oslo?")
    assert result["error"] is None
    parts = assistant(result)["parts"]
    assert [p["type"] for p in parts] == ["step-start", "tool-get_weather", "step-start", "text"]
    assert parts[1]["output"] == "sunny and 21 degrees in Oslo"
    assert "replay_text" not in loopback.requests[0].body


# -- the encoder on its own --------------------------------------------------------------
def encode(*items: object, reason: str | None = "stop") -> list[dict[str, Any]]:
    chunks = UIMessageChunks()
    out = chunks.start()
    for item in items:
        out += chunks.item(item)
    return out + chunks.finish(reason)


def test_reasoning_then_text_are_two_parts() -> None:
    out = encode(ReasoningDelta("hm"), "a", "", "b")
    assert out == [
        {"type": "start"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning_1"},
        {"type": "reasoning-delta", "id": "reasoning_1", "delta": "hm"},
        {"type": "reasoning-end", "id": "reasoning_1"},
        {"type": "text-start", "id": "text_2"},
        {"type": "text-delta", "id": "text_2", "delta": "a"},
        {"type": "text-delta", "id": "text_2", "delta": "b"},
        {"type": "text-end", "id": "text_2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_a_call_without_a_provider_id_is_shown_once_complete() -> None:
    out = encode(
        ToolCallDelta(0, None, None, '{"a"'),
        ToolCallDelta(0, arguments=": 1}"),
        Usage(1, 2, 3),
        Finish("tool_calls"),
        ToolCall("call_0_0", "f", '{"a": 1}'),
        ToolResult("call_0_0", "f", "2"),
        "done",
        reason="stop",
    )
    types = [c["type"] for c in out]
    assert "tool-input-start" not in types
    assert types == [
        "start",
        "start-step",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert out[2]["input"] == {"a": 1}


def test_a_result_without_its_call_and_arguments_that_are_no_json() -> None:
    out = encode(ToolCall("c1", "f", "not json"), ToolResult("c2", "g", "x"), reason=None)
    assert out[2]["input"] == "not json"
    assert out[3:5] == [
        {"type": "tool-input-available", "toolCallId": "c2", "toolName": "g", "input": None},
        {"type": "tool-output-available", "toolCallId": "c2", "output": "x"},
    ]
    assert out[-1] == {"type": "finish"}


def test_complete_objects_are_parts_of_their_own() -> None:
    out = encode(RECIPE, RECIPE, {"n": 1})
    data = [c for c in out if c["type"].startswith("data-")]
    assert [c["type"] for c in data] == ["data-recipe", "data-recipe", "data-value"]
    assert len({c["id"] for c in data}) == 3
    assert data[2]["data"] == {"n": 1}


def test_after_an_error_the_message_finishes() -> None:
    chunks = UIMessageChunks(message_id="m")
    out = (
        chunks.start() + chunks.item("a") + chunks.error("StreamError: x") + chunks.finish("error")
    )
    assert [c["type"] for c in out] == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "error",
        "finish-step",
        "finish",
    ]
    assert out[-1] == {"type": "finish", "finishReason": "error"}


# -- messages_from_ui ---------------------------------------------------------------------
def ui(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": "x", "role": role, "parts": list(parts)}


def test_messages_from_ui_reads_text_images_and_errors() -> None:
    body = {
        "id": "chat",
        "trigger": "submit-message",
        "messages": [
            ui("system", {"type": "text", "text": "Be brief."}),
            ui(
                "user",
                {"type": "text", "text": "What is this?"},
                {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="},
            ),
            ui(
                "assistant",
                {"type": "step-start"},
                {"type": "reasoning", "text": "hm"},
                {
                    "type": "dynamic-tool",
                    "toolName": "look",
                    "toolCallId": "c1",
                    "state": "output-error",
                    "input": {},
                    "errorText": "no eyes",
                },
                {"type": "tool-wait", "toolCallId": "c2", "state": "input-available", "input": {}},
                {"type": "data-note", "data": {"x": 1}},
                {"type": "text", "text": "I cannot see it."},
            ),
        ],
    }
    assert messages_from_ui(json.dumps(body)) == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Error: no eyes"},
        {"role": "assistant", "content": "I cannot see it."},
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the chat request body is not JSON"),
        ([], "must be a JSON object with 'messages'"),
        ({"messages": {}}, "has no 'messages' list"),
        ({"messages": ["hi"]}, r"messages\[0\] must be an object, got str"),
        ({"messages": [{"role": "user"}]}, r"messages\[0\]\.parts must be a list"),
        ({"messages": [ui("user", {"text": "a"})]}, r"messages\[0\]\.parts\[0\]\.type must be"),
        ({"messages": [ui("user", {"type": "text", "text": 3})]}, r"parts\[0\]\.text must be"),
        ({"messages": [ui("robot")]}, "role must be 'system', 'user' or 'assistant'"),
        (
            {"messages": [ui("user", {"type": "file", "mediaType": "text/csv", "url": "u"})]},
            "only image files",
        ),
    ],
)
def test_messages_from_ui_says_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        messages_from_ui(body)
