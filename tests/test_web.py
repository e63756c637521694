"""kagura.web over a real uvicorn server and httpx: the events, partial models, safe errors,
and a client disconnect closing the upstream LLM request."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import subprocess
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import BaseModel, SecretStr, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from _live_server import serve
from kagura import AgentStream, LLMConfig
from kagura.errors import AuthError
from kagura.operators import parse_model, throttle
from kagura.pipes import StreamOutcome
from kagura.testing.loopback import LoopbackServer, Script
from kagura.web import sse_response


class Pet(BaseModel):
    name: str
    kind: str
    tricks: list[str]


PET = Pet(name="Rex", kind="dog", tricks=["sit", "roll over", "play dead"])


class Buggy(BaseModel):
    """A model whose validator has a bug: the error comes while the stream completes."""

    n: int

    @field_validator("n")
    @classmethod
    def buggy(cls, value: int) -> int:
        raise TypeError("a bug in the validator")


@dataclass
class Upstream:
    """What the ``/upstream`` route streams from, set by each test."""

    config: LLMConfig | None = None
    outcomes: list[StreamOutcome] = field(default_factory=list[StreamOutcome])
    ended: threading.Event = field(default_factory=threading.Event)

    def record(self, _: object, outcome: StreamOutcome) -> None:
        self.outcomes.append(outcome)
        self.ended.set()


@dataclass
class Web:
    base_url: str
    upstream: Upstream


def make_app(upstream: Upstream) -> Starlette:
    async def echo(request: Request) -> Response:
        prompt = request.query_params["prompt"]
        return sse_response(AgentStream.from_llm(prompt, LLMConfig(model="kagura/echo")))

    async def lines(request: Request) -> Response:
        async def pieces() -> AsyncIterator[str]:
            for piece in ["line one\nline", " two", "", "\n", "end"]:
                yield piece

        return sse_response(pieces())

    async def pet(request: Request) -> Response:
        stream = AgentStream.from_llm(
            "a pet",
            LLMConfig(model="kagura/replay"),
            pipeline=parse_model(Pet, partial=True, every=1),
            replay_text=PET.model_dump_json(indent=1),
        )
        return sse_response(stream)

    async def buggy(request: Request) -> Response:
        stream = AgentStream.from_llm(
            "n",
            LLMConfig(model="kagura/replay"),
            pipeline=[throttle(0.05), parse_model(Buggy)],
            replay_text='{"n": 5}',
        )
        return sse_response(stream)

    async def boom(request: Request) -> Response:
        async def failing() -> AsyncIterator[str]:
            yield "so far "
            raise RuntimeError("db password=hunter2 key sk-live-abcdefghijklmnop")

        return sse_response(failing())

    async def from_upstream(request: Request) -> Response:
        assert upstream.config is not None
        stream = AgentStream.from_llm("hi", upstream.config)
        stream.add_done_callback(upstream.record)
        return sse_response(stream)

    return Starlette(
        routes=[
            Route("/echo", echo),
            Route("/lines", lines),
            Route("/pet", pet),
            Route("/boom", boom),
            Route("/buggy", buggy),
            Route("/upstream", from_upstream),
        ]
    )


@pytest.fixture(scope="module")
def web_server() -> Iterator[Web]:
    upstream = Upstream()
    with serve(make_app(upstream)) as base_url:
        yield Web(base_url, upstream)


@pytest.fixture
def web(web_server: Web) -> Web:
    web_server.upstream.config = None
    web_server.upstream.outcomes.clear()
    web_server.upstream.ended.clear()
    return web_server


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Parse an SSE body as a browser's EventSource does: (event name, data)."""
    name, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue  # a comment (sse-starlette's keep-alive ping)
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)


async def get_events(web: Web, path: str) -> list[tuple[str, str]]:
    async with (
        httpx.AsyncClient(base_url=web.base_url, timeout=10, trust_env=False) as client,
        client.stream("GET", path) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [e async for e in events(response)]


async def test_text_deltas_then_usage_then_done(web: Web) -> None:
    got = await get_events(web, "/echo?prompt=Hello there, browser.")
    names = [name for name, _ in got]
    assert names == ["delta"] * (len(got) - 2) + ["usage", "done"]
    assert len(got) > 3
    assert "".join(data for name, data in got if name == "delta") == "Hello there, browser."
    usage = json.loads(got[-2][1])
    assert usage["usage"]["completion_tokens"] == 3
    assert usage["usage"]["estimated"] is False
    assert usage["metrics"]["ttft_s"] >= 0
    assert usage["metrics"]["chunks"] == 3
    assert usage["finish_reason"] == "stop"
    assert json.loads(got[-1][1]) == {"outcome": "completed"}


async def test_line_breaks_survive_and_empty_items_are_skipped(web: Web) -> None:
    got = await get_events(web, "/lines")
    deltas = [data for name, data in got if name == "delta"]
    assert "".join(deltas) == "line one\nline two\nend"
    assert "" not in deltas
    # a plain async iterable has no usage to report
    assert [name for name, _ in got][-1:] == ["done"]
    assert "usage" not in [name for name, _ in got]


async def test_partial_models_grow_to_the_whole_object(web: Web) -> None:
    got = await get_events(web, "/pet")
    partials = [json.loads(data) for name, data in got if name == "partial"]
    assert len(partials) > 5
    assert partials[0] != partials[-1]
    assert "tricks" not in partials[0]
    assert Pet.model_validate(partials[-1]) == PET
    # each snapshot only grows: a later one never loses a field an earlier one had
    for before, after in itertools.pairwise(partials):
        assert set(before) <= set(after)
    assert [name for name, _ in got][-2:] == ["usage", "done"]


async def test_an_unexpected_error_is_reported_without_its_message(web: Web) -> None:
    got = await get_events(web, "/boom")
    assert got[0] == ("delta", "so far ")
    assert got[1][0] == "error"
    error = json.loads(got[1][1])
    assert error["type"] == "InternalError"
    assert got[2:] == [("done", '{"outcome": "failed"}')]
    body = repr(got)
    assert "hunter2" not in body
    assert "sk-live" not in body


async def test_an_error_while_the_pipeline_completes_ends_the_response(web: Web) -> None:
    # It used to be lost in the source's task: the response sent neither error nor done.
    async with asyncio.timeout(10):
        got = await get_events(web, "/buggy")
    assert [name for name, _ in got][-2:] == ["error", "done"]
    assert json.loads(got[-1][1]) == {"outcome": "failed"}


async def test_a_stream_error_keeps_its_type(web: Web, loopback: LoopbackServer) -> None:
    web.upstream.config = LLMConfig(
        model="openai/x",
        api_base=loopback.base_url,
        api_key=SecretStr("sk-test-0123456789"),
        max_retries=0,
    )
    loopback.enqueue(Script.text("Hello world, and more", error_event_after=1))
    got = await get_events(web, "/upstream")
    names = [name for name, _ in got]
    assert names[-2:] == ["error", "done"]
    assert "delta" in names
    error = json.loads(got[-2][1])
    assert error["type"] == "StreamError"
    assert "sk-test" not in json.dumps(got)
    assert json.loads(got[-1][1]) == {"outcome": "failed"}


async def test_client_disconnect_closes_the_upstream_request(
    web: Web, loopback: LoopbackServer, loopback_config: LLMConfig
) -> None:
    web.upstream.config = loopback_config
    if loopback_config.transport == "litellm":
        # litellm's first import takes seconds: not inside the server's first request
        await asyncio.to_thread(importlib.import_module, "litellm")
    # about 8 s if nobody stopped it
    loopback.enqueue(Script.text("word " * 400, chunk_size=5, chunk_delay=0.02))
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10, trust_env=False) as client:
        async with client.stream("GET", "/upstream") as response:
            async for name, _ in events(response):
                if name == "delta":
                    break
            assert loopback.stats().streams_in_progress == 1
        # leaving the block closed the connection mid-stream
        assert await loopback.wait_idle(5.0), "the upstream stream is still open"
    assert loopback.stats().streams_closed_by_client == 1
    assert loopback.stats().streams_completed == 0
    # the server-side AgentStream saw the end too: stopped early, not completed
    assert await asyncio.to_thread(web.upstream.ended.wait, 5.0)
    assert web.upstream.outcomes == ["closed"]


def test_import_kagura_does_not_import_the_web_extra() -> None:
    code = (
        "import sys, kagura; kagura.AgentStream; kagura.LLMConfig; "
        "print(sorted(m for m in ('kagura.web', 'starlette', 'sse_starlette') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_without_the_extra_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sse_starlette", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "kagura.web")
    with pytest.raises(ImportError, match=r"pip install 'kagura\[web\]'"):
        importlib.import_module("kagura.web")


# -- secrets never reach the browser ----------------------------------------------------
PLAIN_KEY = "my-plain-web-key-4321"  # not sk-shaped: only remembering it can scrub it


@pytest.mark.parametrize(
    "script",
    [
        Script.error(401, f"Incorrect API key provided: {PLAIN_KEY}"),
        Script.text("Hello world", error_event_after=1, error_body={"message": f"key {PLAIN_KEY}"}),
    ],
    ids=["401", "mid-stream"],
)
async def test_an_echoed_key_never_reaches_the_browser(
    web: Web, loopback: LoopbackServer, script: Script
) -> None:
    web.upstream.config = LLMConfig(
        model="openai/x", api_base=loopback.base_url, api_key=SecretStr(PLAIN_KEY), max_retries=0
    )
    loopback.enqueue(script)
    got = await get_events(web, "/upstream")
    assert [name for name, _ in got][-2:] == ["error", "done"]
    assert "[REDACTED]" in json.loads(got[-2][1])["message"]
    assert PLAIN_KEY not in json.dumps(got)


async def test_a_key_litellm_took_from_the_environment_never_shows(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In the test's loop, not the web server's: litellm keeps a pooled connection per
    # loop, and one left in the server's loop when it stops makes uvicorn hang on exit.
    env_key = "plain-env-key-5678"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)  # litellm reads it itself
    config = LLMConfig(
        model="openai/x", api_base=loopback.base_url, max_retries=0, transport="litellm"
    )
    loopback.enqueue(Script.error(401, f"Incorrect API key provided: {env_key}"))
    with pytest.raises(AuthError) as caught:
        await AgentStream.from_llm("hi", config).text()
    assert "Incorrect API key provided: [REDACTED]" in str(caught.value)
    # Nor anywhere in its chain (the provider's exception stays as __cause__).
    assert env_key not in "".join(traceback.format_exception(caught.value))
