"""The loopback server speaking Anthropic Messages (``POST /v1/messages``), read raw with httpx.

What is pinned: the named SSE events in Anthropic's order and shapes, a stream's exact
bytes, recorded streams replayed byte for byte, the credentials it reads, Anthropic's
error bodies and its mid-stream ``overloaded_error``, and faults that count content
chunks as in the other dialects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kagura.testing.loopback import LoopbackServer, Script, ScriptedToolCall

DOCS = Path(__file__).resolve().parents[1] / "data" / "anthropic"
HELLO = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def http(loopback: LoopbackServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=loopback.url, timeout=5.0) as client:
        yield client


def stream_bytes(http: httpx.Client, body: dict[str, Any] | None = None) -> bytes:
    with http.stream("POST", "/v1/messages", json={**(body or HELLO), "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return r.read()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event; the name and the data's type always agree."""
    out: list[tuple[str, dict[str, Any]]] = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


def test_a_stream_byte_for_byte(http: httpx.Client, loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hi there", usage={"prompt_tokens": 3, "completion_tokens": 2}))
    assert stream_bytes(http) == (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_loopback_1","type":"message",'
        b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":0,'
        b'"cache_read_input_tokens":0,"output_tokens":1}}}\n\n'
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi t"}}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"here"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"output_tokens":2}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_thinking_text_and_tool_use_blocks_in_order(
    http: httpx.Client, loopback: LoopbackServer
) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Oslo"}, fragment_size=6),
            ScriptedToolCall.of("get_time", {}, id="toolu_custom"),
            content=["Let me ", "check."],
            reasoning=("Hmm, ", "weather."),
        )
    )
    got = events(stream_bytes(http))
    names = [name for name, _ in got]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    starts = [d["content_block"] for n, d in got if n == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "toolu_loopback_0", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "toolu_custom", "name": "get_time", "input": {}},
    ]
    deltas = [(d["index"], d["delta"]) for n, d in got if n == "content_block_delta"]
    thinking = [d for i, d in deltas if i == 0]
    assert [d["type"] for d in thinking] == ["thinking_delta", "thinking_delta", "signature_delta"]
    assert "".join(d.get("thinking", "") for d in thinking) == "Hmm, weather."
    assert "".join(d["text"] for i, d in deltas if i == 1) == "Let me check."
    assert "".join(d["partial_json"] for i, d in deltas if i == 2) == '{"city": "Oslo"}'
    assert [d["partial_json"] for i, d in deltas if i == 3] == ["", "{}"]
    # Each block stops before the next starts.
    opened: list[int] = []
    for name, data in got:
        if name == "content_block_start":
            assert not opened
            opened.append(data["index"])
        elif name == "content_block_stop":
            assert opened == [data["index"]]
            opened.clear()
    message = got[0][1]["message"]
    assert message["id"] == "msg_loopback_1"
    final = got[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"]["output_tokens"] > 0


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("pause_turn", "pause_turn"),
    ],
)
def test_finish_reasons_are_anthropics_stop_reasons(
    http: httpx.Client, loopback: LoopbackServer, finish: str, stop_reason: str
) -> None:
    loopback.enqueue(Script.text("x", finish_reason=finish), Script.text("x", finish_reason=finish))
    assert events(stream_bytes(http))[-2][1]["delta"]["stop_reason"] == stop_reason
    assert http.post("/v1/messages", json=HELLO).json()["stop_reason"] == stop_reason


def test_anthropic_usage_fields_are_sent_as_they_are(
    http: httpx.Client, loopback: LoopbackServer
) -> None:
    usage = {"input_tokens": 4, "cache_read_input_tokens": 50, "output_tokens": 7}
    loopback.enqueue(Script.text("x", usage=usage), Script.text("x", include_usage=False))
    got = events(stream_bytes(http))
    assert got[0][1]["message"]["usage"] == {
        "input_tokens": 4,
        "cache_read_input_tokens": 50,
        "output_tokens": 1,
    }
    assert got[-2][1]["usage"] == {"output_tokens": 7}
    without = events(stream_bytes(http))
    assert "usage" not in without[0][1]["message"]
    assert "usage" not in without[-2][1]


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking"])
def test_recorded_streams_are_replayed_byte_for_byte(
    http: httpx.Client, loopback: LoopbackServer, name: str
) -> None:
    recorded = (DOCS / f"{name}.sse").read_bytes()
    loopback.enqueue(Script.recorded(DOCS / f"{name}.sse"))
    assert stream_bytes(http) == recorded


def test_a_recorded_stream_answers_a_whole_request(
    http: httpx.Client, loopback: LoopbackServer
) -> None:
    loopback.enqueue(Script.recorded(DOCS / "tool_use.sse"))
    message = http.post("/v1/messages", json=HELLO).json()
    assert message["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "text", "text": "Okay, let's check the weather for San Francisco, CA:"},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "fahrenheit"},
        },
    ]
    assert message["usage"] == {"input_tokens": 472, "output_tokens": 89}


def test_a_whole_message(http: httpx.Client, loopback: LoopbackServer) -> None:
    loopback.enqueue(
        Script.tools(
            ScriptedToolCall.of("get_weather", {"city": "Oslo"}),
            content=["Checking."],
            reasoning=("Hmm.",),
            usage={"prompt_tokens": 5, "completion_tokens": 6},
        )
    )
    message = http.post("/v1/messages", json=HELLO).json()
    assert message == {
        "id": "msg_loopback_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {
                "type": "thinking",
                "thinking": "Hmm.",
                "signature": message["content"][0]["signature"],
            },
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_loopback_0",
                "name": "get_weather",
                "input": {"city": "Oslo"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 6,
        },
    }


def test_the_empty_queue_echoes_the_last_user_text(http: httpx.Client) -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Echo "}, {"type": "text", "text": "me"}],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}],
            },
        ],
    }
    message = http.post("/v1/messages", json=body).json()
    assert message["content"] == [{"type": "text", "text": "Echo me"}]
    text = "".join(
        d["delta"]["text"]
        for n, d in events(stream_bytes(http, body))
        if n == "content_block_delta"
    )
    assert text == "Echo me"


ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
    503: "api_error",
}


@pytest.mark.parametrize("status", ERRORS)
def test_error_bodies_are_anthropics(
    http: httpx.Client, loopback: LoopbackServer, status: int
) -> None:
    loopback.enqueue(Script.error(status, retry_after=1))
    r = http.post("/v1/messages", json=HELLO)
    assert r.status_code == status
    assert r.headers["retry-after"] == "1"
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == ERRORS[status]
    assert body["error"]["message"]


def test_an_openai_shaped_error_gives_its_message(
    http: httpx.Client, loopback: LoopbackServer
) -> None:
    loopback.enqueue(
        Script.error(404, "model: claude-nope"),
        Script.error(529, error_type="overloaded_error"),
    )
    assert http.post("/v1/messages", json=HELLO).json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-nope"},
    }
    assert http.post("/v1/messages", json=HELLO).json()["error"]["type"] == "overloaded_error"


def test_overloaded_mid_stream(http: httpx.Client, loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("Hello world", error_event_after=1))
    raw = stream_bytes(http)
    assert raw.endswith(
        b'event: error\ndata: {"type":"error","error":'
        b'{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    got = events(raw)
    assert [d["delta"]["text"] for n, d in got if n == "content_block_delta"] == ["Hell"]
    assert "message_stop" not in [n for n, _ in got]


def test_faults_count_content_chunks(http: httpx.Client, loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.chunks(["a", "b", "c"], drop_after=2))
    received = bytearray()

    def read() -> None:
        with http.stream("POST", "/v1/messages", json={**HELLO, "stream": True}) as r:
            for piece in r.iter_bytes():
                received.extend(piece)

    with pytest.raises(httpx.RemoteProtocolError):  # the server closed mid-body
        read()
    texts = [d["delta"]["text"] for n, d in events(bytes(received)) if n == "content_block_delta"]
    assert texts == ["a", "b"]


def test_credentials_from_x_api_key_or_bearer(http: httpx.Client, loopback: LoopbackServer) -> None:
    loopback.api_keys = frozenset({"sk-ant-good-0000"})
    refused = http.post("/v1/messages", json=HELLO)
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "type": "authentication_error",
        "message": "invalid x-api-key",
    }
    assert http.post("/v1/messages", json=HELLO, headers={"x-api-key": "wrong"}).status_code == 401
    ok = http.post("/v1/messages", json=HELLO, headers={"x-api-key": "sk-ant-good-0000"})
    assert ok.status_code == 200
    bearer = {"authorization": "Bearer sk-ant-good-0000"}
    assert http.post("/v1/messages", json=HELLO, headers=bearer).status_code == 200


def test_a_request_without_messages_is_a_400(http: httpx.Client) -> None:
    r = http.post("/v1/messages", json={"model": "claude-x", "max_tokens": 8})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
