"""kagura.web over a relay: SSE with event ids and Last-Event-ID, on real uvicorn servers.

In one process (uvicorn in a thread) on each backend, and across two worker processes
(``examples/relay_app.py`` under uvicorn, one redis-server, the loopback LLM server):
an answer started on worker A and cut off is resumed on worker B, exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from _live_server import serve
from _redis_server import RedisServer
from kagura import AgentStream, Finish, LLMConfig, Usage
from kagura._ui_stream import UIMessageChunks
from kagura.errors import StreamError
from kagura.llm.metrics import StreamMetrics
from kagura.relay import MemoryRelay, RedisRelay, Relay, new_stream_id
from kagura.testing.loopback import LoopbackServer, Script
from kagura.web import publish_stream, relay_response, relay_ui_message_response

REPO = Path(__file__).resolve().parents[1]
# Spaces and line breaks at chunk edges, non-ASCII, a dragon: all must arrive as sent.
TEXT = "".join(f"Ünïcode 🐉 word {i},\n  indented " for i in range(40))
TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched SSE event, as a browser's EventSource sees it."""

    id: str | None  # the id field of this event, if it had one
    name: str
    data: str


def sse_events(
    response: httpx.Response, *, until: Callable[[list[Event]], bool] | None = None
) -> list[Event]:
    """Parse an SSE body as EventSource does; stop early once ``until(events)`` holds."""
    got: list[Event] = []
    name, data, event_id = "message", list[str](), None
    for line in response.iter_lines():
        if not line:
            if data:
                got.append(Event(event_id, name, "\n".join(data)))
                if until is not None and until(got):
                    break
            name, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a comment (sse-starlette's keep-alive ping)
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
        elif key == "id":
            event_id = value
    return got


def text_of(events: list[Event]) -> str:
    return "".join(e.data for e in events if e.name == "delta")


def last_id(events: list[Event]) -> str:
    ids = [e.id for e in events if e.id is not None]
    assert ids, "no event carried an id"
    return ids[-1]


def deltas_at_least(count: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(e.name == "delta" for e in events) >= count


def numbers(events: list[Event]) -> list[int]:
    """The event numbers of the events with an id (``<ms>-<n>``)."""
    return [int(e.id.rpartition("-")[2]) for e in events if e.id is not None]


# -- one process ----------------------------------------------------------------------------
async def pieces(text: str, size: int, delay: float, fail: bool) -> AsyncIterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]
        await asyncio.sleep(delay)
    if fail:
        raise StreamError("the provider closed the connection")


def relay_app(relay: Relay) -> Starlette:
    """Publishes scripted text (``POST /streams``) or an echo LLM answer (``POST /llm``),
    and serves any stream (``GET /streams/<id>``, the owner in ``x-owner``)."""

    async def start(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        stream_id = str(body.get("id") or new_stream_id())
        source = pieces(
            str(body.get("text", TEXT)),
            int(body.get("size", 7)),
            float(body.get("delay", 0.005)),
            bool(body.get("fail", False)),
        )
        started = await relay.publish(stream_id, source, owner=body.get("owner"))
        return JSONResponse({"stream": stream_id, "started": started})

    async def start_llm(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        stream_id = new_stream_id()
        stream = AgentStream.from_llm(body["prompt"], LLMConfig(model="kagura/echo"))
        await publish_stream(relay, stream_id, stream)
        return JSONResponse({"stream": stream_id})

    async def read(request: Request) -> Response:
        owner = request.headers.get("x-owner")
        return await relay_response(relay, request.path_params["stream_id"], request, owner=owner)

    async def chat_resume(request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        return await relay_ui_message_response(relay, stream_id, resume=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await relay.aclose()

    return Starlette(
        routes=[
            Route("/streams", start, methods=["POST"]),
            Route("/llm", start_llm, methods=["POST"]),
            Route("/streams/{stream_id}", read),
            Route("/chat/{stream_id}/stream", chat_resume),
        ],
        lifespan=lifespan,
    )


@contextlib.contextmanager
def relay_client(relay: Relay) -> Iterator[httpx.Client]:
    """A client of :func:`relay_app` on ``relay``, served by uvicorn (which closes it)."""
    with (
        serve(relay_app(relay), lifespan="on") as base_url,
        httpx.Client(base_url=base_url, timeout=TIMEOUT, trust_env=False) as client,
    ):
        yield client


@pytest.fixture(params=["memory", "redis"])
def served(request: pytest.FixtureRequest) -> Iterator[Callable[..., httpx.Client]]:
    """A factory: serve a relay app of the test's backend (relay options as keywords),
    and return a client for it. Redis relays share the session's redis-server."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> httpx.Client:
            relay: Relay
            if request.param == "memory":
                relay = MemoryRelay(**options)
            else:
                server: RedisServer = request.getfixturevalue("redis_server")
                relay = RedisRelay(server.url, **{"lease": 1.0, **options})
            return stack.enter_context(relay_client(relay))

        yield make


@pytest.fixture
def client(served: Callable[..., httpx.Client]) -> httpx.Client:
    return served()


def publish(client: httpx.Client, **body: Any) -> str:
    answer = client.post("/streams", json=body).json()
    assert answer["started"] is True
    return str(answer["stream"])


def read(
    client: httpx.Client,
    stream_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    until: Callable[[list[Event]], bool] | None = None,
) -> list[Event]:
    with client.stream("GET", f"/streams/{stream_id}", headers=headers, params=params) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response, until=until)


@pytest.mark.parametrize("cut_after", [1, 5, 40])
def test_resume_with_last_event_id_gives_exactly_the_rest(
    client: httpx.Client, cut_after: int
) -> None:
    stream_id = publish(client)
    first = read(client, stream_id, until=deltas_at_least(cut_after))  # then the client goes
    assert first[0].name == "delta"
    rest = read(client, stream_id, headers={"Last-Event-ID": last_id(first)})
    assert text_of(first) + text_of(rest) == TEXT
    assert [e.name for e in rest][-1:] == ["done"]
    assert json.loads(rest[-1].data) == {"outcome": "completed"}
    ids = numbers(first + rest)
    assert ids == sorted(set(ids)), "an event was repeated or out of order"
    # a reader from the start gets the same text, whether the producer still runs or not
    assert text_of(read(client, stream_id)) == TEXT


def test_after_in_the_query_resumes_too_and_the_header_wins(client: httpx.Client) -> None:
    stream_id = publish(client, delay=0)
    every = read(client, stream_id)
    deltas = [e for e in every if e.name == "delta"]
    middle = deltas[len(deltas) // 2].id
    assert middle is not None
    by_query = read(client, stream_id, params={"after": middle})
    assert text_of(by_query) == text_of(deltas[len(deltas) // 2 + 1 :])
    # EventSource reconnects to the same URL with the header: the header wins
    first_id = deltas[0].id
    assert first_id is not None
    both = read(client, stream_id, params={"after": first_id}, headers={"Last-Event-ID": middle})
    assert text_of(both) == text_of(by_query)
    # after the last event: the end only
    assert [e.name for e in read(client, stream_id, headers={"Last-Event-ID": last_id(every)})] == [
        "done"
    ]


def test_an_llm_answer_ends_with_usage_and_resumes_after_it(client: httpx.Client) -> None:
    stream_id = client.post("/llm", json={"prompt": "Hello there, relay."}).json()["stream"]
    every = read(client, stream_id)
    assert text_of(every) == "Hello there, relay."
    assert [e.name for e in every][-2:] == ["usage", "done"]
    usage = json.loads(every[-2].data)
    assert usage["usage"]["completion_tokens"] == 3
    assert usage["finish_reason"] == "stop"
    metrics = usage["metrics"]  # the producer's timings, measured where it ran
    assert metrics["chunks"] == sum(1 for e in every if e.name == "delta")
    assert 0 < metrics["ttft_s"] <= metrics["duration_s"] < 10
    assert metrics["tokens_per_s"] is None or metrics["tokens_per_s"] > 0
    after_text = read(client, stream_id, headers={"Last-Event-ID": last_id(every[:-2])})
    assert [e.name for e in after_text] == ["usage", "done"]
    assert [e.name for e in read(client, stream_id, headers={"Last-Event-ID": last_id(every)})] == [
        "done"
    ]


def test_a_producer_error_is_an_error_event_after_the_text(client: httpx.Client) -> None:
    stream_id = publish(client, text="Half an ans", fail=True)
    got = read(client, stream_id)
    assert text_of(got) == "Half an ans"
    assert [e.name for e in got][-2:] == ["error", "done"]
    assert json.loads(got[-2].data) == {
        "type": "StreamError",
        "message": "the provider closed the connection",
    }
    assert json.loads(got[-1].data) == {"outcome": "failed"}


def test_trimmed_entries_are_an_error_event_that_says_where_to_resume(
    served: Callable[..., httpx.Client],
) -> None:
    client = served(maxlen=16, batch_window=0)
    stream_id = publish(client, size=1, delay=0.001, text="x" * 400)
    first_id = last_id(read(client, stream_id, until=deltas_at_least(1)))
    deadline = time.monotonic() + TIMEOUT
    while True:  # a reader that keeps up may get it all; once the stream ended, none can
        got = read(client, stream_id, headers={"Last-Event-ID": first_id})
        if got[0].name == "error" or time.monotonic() > deadline:
            break
    assert [e.name for e in got] == ["error", "done"]
    error = json.loads(got[0].data)
    assert error["type"] == "EntriesTrimmed"
    assert error["resume_after"].startswith(first_id.partition("-")[0] + "-")
    kept = read(client, stream_id, headers={"Last-Event-ID": error["resume_after"]})
    assert [e.name for e in kept][-1:] == ["done"]
    assert 0 < len(text_of(kept)) < 400
    assert text_of(kept) == "x" * len(text_of(kept))


def test_unknown_ids_and_other_owners_streams_are_404(client: httpx.Client) -> None:
    assert client.get(f"/streams/{new_stream_id()}").status_code == 404
    stream_id = publish(client, owner="alice", delay=0)
    for headers in ({}, {"x-owner": "bob"}):
        response = client.get(f"/streams/{stream_id}", headers=headers)
        assert response.status_code == 404
        assert response.text == "no such stream"  # the same answer as an unknown id
    assert text_of(read(client, stream_id, headers={"x-owner": "alice"})) == TEXT


@pytest.mark.parametrize(
    "last_event_id",
    ["x", "1", "1-", "-1", "1-2-3", "1 -2", "0x1-2", "1" * 21 + "-1", "1-" + "9" * 30, "é-1"],
)
def test_a_malformed_last_event_id_is_400(client: httpx.Client, last_event_id: str) -> None:
    stream_id = publish(client, delay=0)
    response = client.get(
        f"/streams/{stream_id}", headers={"Last-Event-ID": last_event_id.encode()}
    )
    assert response.status_code == 400
    assert "event id" in response.text


def test_an_event_id_of_another_stream_is_400(client: httpx.Client) -> None:
    one, other = publish(client, delay=0), publish(client, delay=0)
    foreign = last_id(read(client, other))
    response = client.get(f"/streams/{one}", headers={"Last-Event-ID": foreign})
    if foreign.partition("-")[0] == last_id(read(client, one)).partition("-")[0]:
        pytest.skip("both streams started in the same millisecond")  # rare, and harmless
    assert response.status_code == 400
    assert response.text == "`after` is not an event id of this stream"


HOSTILE_IDS = [
    "a b",
    "a.b",
    "x" * 129,
    "kagura:{x}:lease",
    "*",
    "é",
    "a\x00b",
    "a\nb",
    "..%2F..",
    "{x}",
    "$(reboot)",
]


@pytest.mark.parametrize("stream_id", HOSTILE_IDS)
def test_hostile_stream_ids_are_refused_before_the_relay(
    client: httpx.Client, stream_id: str
) -> None:
    response = client.get("/streams/" + quote(stream_id, safe=""))
    assert response.status_code in (400, 404)
    if response.status_code == 400:  # it reached the handler: refused by the id check
        assert "stream id" in response.text


def test_hostile_ids_touch_no_redis_key(redis_server: RedisServer) -> None:
    with relay_client(RedisRelay(redis_server.url)) as client:
        redis_server.client().config_resetstat()
        for stream_id in HOSTILE_IDS:
            client.get("/streams/" + quote(stream_id, safe=""))
    stats: dict[str, Any] = redis_server.client().info("commandstats")
    ours = ("cmdstat_config", "cmdstat_info", "cmdstat_hello", "cmdstat_client")  # this test's
    touched = {name for name in stats if not name.startswith(ours)}
    assert not touched, f"a hostile id reached Redis: {sorted(touched)}"


def test_a_reader_that_leaves_does_not_stop_the_producer(client: httpx.Client) -> None:
    stream_id = publish(client, delay=0.01)
    read(client, stream_id, until=deltas_at_least(2))  # disconnects
    assert text_of(read(client, stream_id)) == TEXT


def test_the_ai_sdk_resume_request_replays_a_running_stream(client: httpx.Client) -> None:
    stream_id = publish(client, delay=0.01)
    with client.stream("GET", f"/chat/{stream_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        chunks = [e.data for e in sse_events(response)]
    assert chunks[-1] == "[DONE]"
    parsed = [json.loads(c) for c in chunks[:-1]]
    assert [c["type"] for c in parsed[:3]] == ["start", "start-step", "text-start"]
    assert "".join(c["delta"] for c in parsed if c["type"] == "text-delta") == TEXT
    assert parsed[-1] == {"type": "finish", "finishReason": "stop"}
    # nothing to resume: a finished stream, an unknown id
    assert client.get(f"/chat/{stream_id}/stream").status_code == 204
    assert client.get(f"/chat/{new_stream_id()}/stream").status_code == 204
    assert client.get("/chat/a.b/stream").status_code == 400


def test_what_publish_stream_appends_makes_no_ui_message_part() -> None:
    """The usage, metrics and finish that publish_stream appends reach the AI SDK's stream
    as the finish reason only, never as a data part the client would show."""
    chunks = UIMessageChunks()
    metrics = StreamMetrics(started_at=1.0, first_token_at=1.2, ended_at=2.0, chunks=3)
    for item in (Usage(1, 2, 3), metrics, Finish("stop")):
        assert chunks.item(item) == []
    assert chunks.last_finish_reason == "stop"


# -- two worker processes on one Redis ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """``uvicorn examples.relay_app:app`` in a process of its own, on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "examples.relay_app:app",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning", "--no-access-log",
                "--lifespan", "on", "--timeout-graceful-shutdown", "1",
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"the worker exited: {stderr[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the worker did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def workers(
    redis_server: RedisServer, loopback: LoopbackServer
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    env = {
        "KAGURA_REDIS_URL": redis_server.url,
        "KAGURA_MODEL": "openai/gpt-4o-mini",
        "KAGURA_API_BASE": loopback.base_url,
        "OPENAI_API_KEY": "sk-test-0123456789",
        "PYTHONWARNINGS": "ignore",
    }
    started = [Worker(env), Worker(env)]  # both start at once: two cores
    try:
        for worker in started:
            worker.wait_ready()
        with (
            httpx.Client(base_url=started[0].url, timeout=TIMEOUT, trust_env=False) as a,
            httpx.Client(base_url=started[1].url, timeout=TIMEOUT, trust_env=False) as b,
        ):
            yield a, b
    finally:
        for worker in started:
            worker.stop()


def read_answer(
    client: httpx.Client,
    stream_id: str,
    *,
    headers: dict[str, str] | None = None,
    until: Callable[[list[Event]], bool] | None = None,
) -> list[Event]:
    with client.stream("GET", f"/answers/{stream_id}", headers=headers) as response:
        assert response.status_code == 200, response.read()
        return sse_events(response, until=until)


def test_an_answer_started_on_one_worker_resumes_on_another(
    workers: tuple[httpx.Client, httpx.Client], loopback: LoopbackServer
) -> None:
    a, b = workers
    loopback.enqueue(Script.text(TEXT, chunk_size=3, chunk_delay=0.01))  # about 4 s
    stream_id = a.post("/answers", json={"prompt": "Tell me a story."}).json()["stream"]
    first = read_answer(a, stream_id, until=deltas_at_least(20))  # the connection drops
    assert loopback.stats().streams_completed == 0, "the cut came after the answer's end"
    rest = read_answer(b, stream_id, headers={"Last-Event-ID": last_id(first)})
    assert text_of(first) + text_of(rest) == TEXT
    ids = numbers(first + rest)
    assert ids == sorted(set(ids)), "an event was repeated or out of order"
    assert [e.name for e in rest][-2:] == ["usage", "done"]
    assert json.loads(rest[-2].data)["finish_reason"] == "stop"
    # either worker, from the start: the same answer; and only ever one LLM request
    assert text_of(read_answer(a, stream_id)) == TEXT
    assert text_of(read_answer(b, stream_id)) == TEXT
    assert len(loopback.requests) == 1


def test_an_answer_started_on_one_worker_is_stopped_through_another(
    workers: tuple[httpx.Client, httpx.Client], loopback: LoopbackServer
) -> None:
    a, b = workers
    loopback.enqueue(Script.text(TEXT, chunk_size=3, chunk_delay=0.01))  # about 4 s
    stream_id = a.post("/answers", json={"prompt": "Tell me a story."}).json()["stream"]
    read_answer(b, stream_id, until=deltas_at_least(5))
    assert b.post(f"/answers/{stream_id}/stop").json() == {"stopped": True}
    every = read_answer(b, stream_id)  # to the end, which the stop brings in time
    assert [e.name for e in every][-2:] == ["usage", "done"]
    assert json.loads(every[-2].data)["finish_reason"] == "stopped"
    assert TEXT.startswith(text_of(every))
    assert len(text_of(every)) < len(TEXT) // 2
    deadline = time.monotonic() + 10
    while loopback.stats().streams_closed_by_client == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = loopback.stats()
    assert (stats.streams_closed_by_client, stats.streams_completed) == (1, 0)
    assert a.post(f"/answers/{stream_id}/stop").json() == {"stopped": False}
    assert a.post("/answers/not.an.id/stop").status_code == 400
