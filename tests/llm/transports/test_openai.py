"""The direct transport's wire behaviour, through the public API only.

Every test talks real HTTP: to a :class:`~_wire_servers.RawServer` in the test's loop
that writes exactly the bytes the test chooses and records exactly what arrived, to the
:class:`~kagura.testing.loopback.LoopbackServer`, or to a real uvicorn (h11 and
httptools) in a subprocess. What is pinned: nothing unsafe reaches the wire, retries are
exactly as configured, SSE is parsed by the WHATWG rules whatever the byte splits,
connections are kept alive and closed at once when the caller leaves, and every failure
is a typed :mod:`kagura.errors` exception that carries the text received so far and
never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from _wire_servers import (
    DONE,
    SSE_HEADERS,
    Peer,
    RawServer,
    Reply,
    Then,
    UvicornServer,
    chunk_json,
    completion_body,
    finish_event,
    framed,
    head,
    json_reply,
    sse_reply,
    stream_reply,
    text_event,
)
from kagura import LLMConfig, call_llm, call_llm_stream
from kagura.errors import (
    AuthError,
    ConfigError,
    FirstTokenTimeout,
    IdleTimeout,
    LLMError,
    ModelNotFoundError,
    ProviderError,
    RateLimitError,
    StreamError,
)
from kagura.events import TextDelta
from kagura.llm.oauth import (
    ClientCredentialsProvider,
    StaticTokenProvider,
    register_token_provider,
    unregister_token_provider,
)
from kagura.llm.streaming import stream_events
from kagura.llm.transports import http
from kagura.testing.loopback import LoopbackServer, Script

GUARD = 5.0  # seconds: the most a call in this module may take (unless it says otherwise)
KEY = "sk-wire-test-000111222"
Api = Literal["stream", "call"]
APIS = pytest.mark.parametrize("api", ["stream", "call"])


# -- helpers ----------------------------------------------------------------------------------
def config(base: str, **overrides: Any) -> LLMConfig:
    """A direct-transport config for ``base`` (a server's root URL): no retries, no cache."""
    settings: dict[str, Any] = {
        "model": "openai/m",
        "api_base": base + "/v1",
        "api_key": KEY,
        "max_retries": 0,
        "enable_cache": False,
        "transport": "direct",
    }
    settings.update(overrides)
    return LLMConfig(**settings)


async def collect(
    cfg: LLMConfig,
    prompt: str = "hi",
    on_text: Callable[[str], None] | None = None,
    *,
    within: float = GUARD,
) -> str:
    """The streamed text, read to the end (``on_text`` sees the text so far at each piece)."""
    parts: list[str] = []
    async with asyncio.timeout(within), contextlib.aclosing(call_llm_stream(prompt, cfg)) as stream:
        async for text in stream:
            parts.append(text)
            if on_text is not None:
                on_text("".join(parts))
    return "".join(parts)


async def ask(
    api: Api, cfg: LLMConfig, prompt: str = "hi", on_text: Callable[[str], None] | None = None
) -> str:
    """One answer through ``call_llm_stream`` or ``call_llm``."""
    if api == "stream":
        return await collect(cfg, prompt, on_text)
    async with asyncio.timeout(GUARD):
        return await call_llm(prompt, cfg)


def answer(api: Api, text: str = "Hello") -> Reply:
    """A successful answer in the form ``api`` asks for."""
    if api == "stream":
        return stream_reply(text)
    return json_reply(200, completion_body(text))


def gate_on(text: str) -> tuple[asyncio.Event, Callable[[str], None]]:
    """An event, and an ``on_text`` callback that sets it once ``text`` has arrived."""
    event = asyncio.Event()

    def seen(so_far: str) -> None:
        if so_far == text:
            event.set()

    return event, seen


def chat_requests(server: RawServer) -> list[bytes]:
    return [r.target for r in server.requests if r.target.endswith(b"/chat/completions")]


async def sync_with(server: RawServer) -> None:
    """One good streamed call: after it, anything sent before has been recorded."""
    server.enqueue(stream_reply("sync"))
    assert await collect(config(server.url)) == "sync"


def assert_no_secret(err: BaseException, secret: str) -> None:
    for exc in _chain(err):
        for shown in (str(exc), repr(exc), repr(exc.args), str(getattr(exc, "message", ""))):
            assert secret not in shown, f"{type(exc).__name__} shows the secret: {shown!r}"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@pytest.fixture
def oauth_name() -> Iterator[str]:
    """A fresh token-provider name, unregistered after the test."""
    name = f"wire-{uuid.uuid4().hex[:8]}"
    yield name
    unregister_token_provider(name)


# -- 1. nothing is injected -------------------------------------------------------------------
INJECTED = "inj-key-7781"
BAD_KEYS = {
    "crlf": f"{INJECTED}\r\nX-Injected: yes",
    "lf": f"{INJECTED}\nX-Injected: yes",
    "cr": f"{INJECTED}\rX-Injected: yes",
    "nul": f"{INJECTED}\x00X-Injected: yes",
    "smuggled-request": (
        f"{INJECTED}\r\nContent-Length: 2\r\n\r\n{{}}"
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    ),
}


async def _ask_with_key(api: Api, base: str, key: str) -> str:
    return await ask(api, config(base, api_key=key))


@APIS
@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
async def test_a_key_with_control_characters_is_refused_before_anything_is_sent(
    raw_server: RawServer, api: Api, key: str
) -> None:
    raw_server.default = answer(api)
    # Refused at LLMConfig(...) (a ValidationError) or at the call (ConfigError).
    with pytest.raises((ConfigError, pydantic.ValidationError)) as info:
        await _ask_with_key(api, raw_server.url, key)
    assert_no_secret(info.value, INJECTED)
    await sync_with(raw_server)
    assert raw_server.connections_opened == 1  # the sync call's own
    assert len(raw_server.requests) == 1
    assert INJECTED.encode() not in raw_server.raw
    assert b"x-injected" not in raw_server.raw.lower()


@APIS
async def test_an_oauth_token_with_crlf_is_an_auth_error_and_nothing_is_sent(
    raw_server: RawServer, api: Api, oauth_name: str
) -> None:
    register_token_provider(oauth_name, StaticTokenProvider(f"{INJECTED}\r\nX-Injected: yes"))
    raw_server.default = answer(api)
    cfg = config(raw_server.url, api_key=None, auth_type="oauth2", oauth_provider=oauth_name)
    with pytest.raises(AuthError) as info:
        await ask(api, cfg)
    assert_no_secret(info.value, INJECTED)
    await sync_with(raw_server)
    assert len(raw_server.requests) == 1
    assert INJECTED.encode() not in raw_server.raw


async def test_a_token_endpoint_answering_a_token_with_crlf_gets_nothing_sent(
    raw_server: RawServer, oauth_name: str
) -> None:
    token = {"access_token": f"{INJECTED}\r\nX-Injected: yes", "token_type": "Bearer"}
    raw_server.enqueue(json_reply(200, token))
    raw_server.default = answer("stream")
    provider = ClientCredentialsProvider(raw_server.url + "/oauth/token", "client", "secret-9")
    register_token_provider(oauth_name, provider)
    cfg = config(raw_server.url, api_key=None, auth_type="oauth2", oauth_provider=oauth_name)
    with pytest.raises(AuthError) as info:
        await collect(cfg)
    assert_no_secret(info.value, INJECTED)
    await sync_with(raw_server)
    assert [r.target for r in raw_server.requests] == [b"/oauth/token", b"/v1/chat/completions"]
    assert INJECTED.encode() not in b"".join(bytes(p.raw) for p in raw_server.peers[1:])


BAD_BASES = {
    "crlf": "/v1\r\nX-Injected: yes",
    "lf": "/v1\nX-Injected: yes",
    "cr": "/v1\rX-Injected: yes",
    "space": "/v1 HTTP/1.1\r\nX-Injected: yes",
    "inner-space": "/v 1",
    "nul": "/v1\x00",
}


async def _build_and_ask(api: Api, base: str) -> str:
    return await ask(api, config(base))  # config() appends /v1: the bad part stays inside


@APIS
@pytest.mark.parametrize("suffix", BAD_BASES.values(), ids=BAD_BASES.keys())
async def test_an_api_base_with_control_characters_or_spaces_is_a_typed_error(
    raw_server: RawServer, api: Api, suffix: str
) -> None:
    raw_server.default = answer(api)
    # At LLMConfig(...) (a ValidationError, also a ValueError) or at the call (ConfigError).
    with pytest.raises((ConfigError, pydantic.ValidationError)):
        await _build_and_ask(api, raw_server.url + suffix)
    await sync_with(raw_server)
    assert len(raw_server.requests) == 1


# -- 2. retries exactly as configured ------------------------------------------------------
def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": None}}


FAILURES: dict[str, tuple[Callable[[], Reply], type[LLMError]]] = {
    "500": (lambda: json_reply(500, _error_body("boom")), ProviderError),
    "503": (lambda: json_reply(503, _error_body("overloaded")), ProviderError),
    "429": (lambda: json_reply(429, _error_body("slow down")), RateLimitError),
    "closed-before-any-byte": (lambda: Reply(then="close"), ProviderError),
    "reset-before-any-byte": (lambda: Reply(then="reset"), ProviderError),
}


@APIS
@pytest.mark.parametrize("max_retries", [0, 1])
@pytest.mark.parametrize("kind", FAILURES)
async def test_max_retries_n_is_at_most_n_plus_1_requests(
    raw_server: RawServer, api: Api, max_retries: int, kind: str
) -> None:
    failure, error = FAILURES[kind]
    raw_server.enqueue(*(failure() for _ in range(max_retries + 1)), answer(api))
    with pytest.raises(error) as info:
        await ask(api, config(raw_server.url, max_retries=max_retries))
    assert not isinstance(info.value, StreamError)  # nothing had started
    assert len(raw_server.requests) == max_retries + 1


@APIS
@pytest.mark.parametrize("kind", FAILURES)
async def test_a_retry_within_the_budget_succeeds(
    raw_server: RawServer, api: Api, kind: str
) -> None:
    failure, _ = FAILURES[kind]
    raw_server.enqueue(failure(), answer(api, "second time"))
    assert await ask(api, config(raw_server.url, max_retries=1)) == "second time"
    assert len(raw_server.requests) == 2


@APIS
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_reused_connection_closed_after_the_request_is_not_retried_silently(
    raw_server: RawServer, api: Api, how: Literal["close", "reset"]
) -> None:
    # The server reads the whole second request on the kept-alive connection and then
    # leaves without a byte: with max_retries=0 that is one request and a typed error.
    raw_server.enqueue(answer(api), Reply(then=how), answer(api), answer(api))
    cfg = config(raw_server.url)
    assert await ask(api, cfg) == "Hello"
    with pytest.raises(ProviderError):
        await ask(api, cfg)
    assert len(raw_server.peers[0].requests) == 2  # the second request did reuse it
    assert len(raw_server.requests) == 2


@APIS
@pytest.mark.parametrize(
    ("status", "error"), [(400, ProviderError), (401, AuthError), (404, ModelNotFoundError)]
)
async def test_client_errors_are_never_retried(
    raw_server: RawServer, api: Api, status: int, error: type[LLMError]
) -> None:
    raw_server.enqueue(json_reply(status, _error_body(f"status {status}")))
    raw_server.default = answer(api)
    with pytest.raises(error) as info:
        await ask(api, config(raw_server.url, max_retries=3))
    assert info.value.status_code == status
    assert len(raw_server.requests) == 1


MALFORMED = {
    "protocol": b"HTTX/1.1 200 OK\r\n\r\n",
    "status": b"HTTP/1.1 2x0 OK\r\n\r\n",
    "garbage": b"garbage, not HTTP at all\r\n\r\n",
    "no-version": b"200 OK\r\nContent-Length: 0\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "length-not-a-number": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "lengths-disagree": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "huge-length": b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
}


@APIS
@pytest.mark.parametrize("sent", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_response_is_a_provider_error_and_not_retried(
    raw_server: RawServer, api: Api, sent: bytes
) -> None:
    # The server stalls after the bytes: the error must come from them, not from a close.
    raw_server.enqueue(Reply([sent], then="stall"))
    raw_server.default = answer(api)
    with pytest.raises(ProviderError) as info:
        await ask(api, config(raw_server.url, max_retries=2, request_timeout=30))
    message = str(info.value).lower()
    assert "malformed" in message or "invalid" in message, message
    assert "could not reach" not in message
    assert len(raw_server.requests) == 1


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("status", "retry_after", "at_least"),
    [
        pytest.param(503, lambda: "1", 0.95, id="seconds"),
        pytest.param(429, lambda: _http_date(2), 0.9, id="http-date"),
    ],
)
async def test_retry_after_is_honoured(
    raw_server: RawServer, status: int, retry_after: Callable[[], str], at_least: float
) -> None:
    raw_server.enqueue(
        json_reply(status, _error_body("wait"), headers=[("Retry-After", retry_after())]),
        stream_reply("after the wait"),
    )
    assert await collect(config(raw_server.url, max_retries=1)) == "after the wait"
    first, second = raw_server.requests
    assert second.received_at - first.received_at >= at_least


async def test_a_huge_retry_after_is_capped(
    raw_server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cap (8 s) is pinned by retry_delay's doctest; here it is half a second, so that
    # the test shows the transport waits the cap, not the hour asked, without waiting 8 s.
    monkeypatch.setattr(http, "MAX_BACKOFF", 0.5)
    raw_server.enqueue(
        json_reply(503, _error_body("later"), headers=[("Retry-After", "3600")]),
        stream_reply("capped"),
    )
    assert await collect(config(raw_server.url, max_retries=1), within=12) == "capped"
    first, second = raw_server.requests
    assert 0.45 <= second.received_at - first.received_at <= 10


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_started_stream_is_never_retried(
    raw_server: RawServer, how: Literal["close", "reset"]
) -> None:
    gate, seen = gate_on("Hello")
    started = Reply(
        [head(200, SSE_HEADERS), framed(text_event("Hel")), framed(text_event("lo"))],
        then=how,
        gate=gate,
    )
    raw_server.enqueue(started)
    raw_server.default = stream_reply("retried")
    with pytest.raises(StreamError) as info:
        await collect(config(raw_server.url, max_retries=3), on_text=seen)
    assert info.value.partial_text == "Hello"
    assert len(raw_server.requests) == 1


# -- 3. SSE by the WHATWG rules -------------------------------------------------------------
TEXTS = ("Hel", "lo, ", "wör", "ld \u2028 \u0085 ✓")  # raw UTF-8; U+2028/U+0085 are not EOLs
PAYLOADS = [
    *(json.dumps(chunk_json(t), ensure_ascii=False) for t in TEXTS),
    json.dumps(chunk_json(finish="stop")),
    "[DONE]",
]
STYLES = (
    "lf",
    "crlf",
    "cr",
    "mixed",
    "bom",
    "multiline-data",
    "multiline-data-crlf",
    "multiline-data-cr",
    "fields-and-comments",
    "extra-blank-lines",
)


def sse_document(style: str) -> bytes:
    """The same stream (``TEXTS``, a finish chunk, ``[DONE]``) written in one SSE style."""
    lines: list[str] = []
    for payload in PAYLOADS:
        if style.startswith("multiline-data") and payload != "[DONE]":
            first, rest = payload.split(", ", 1)  # joined with "\n": still the same JSON
            lines += [f"data: {first},", f"data: {rest}"]
        elif style == "fields-and-comments":
            lines += [": a comment", "event: message", "id: 7", "retry: 1000", f"data:{payload}"]
        else:
            lines.append(f"data: {payload}")
        lines.append("")
        if style == "extra-blank-lines":
            lines += ["", ""]
    if style in ("crlf", "multiline-data-crlf"):
        eols: Iterator[str] = itertools.repeat("\r\n")
    elif style in ("cr", "multiline-data-cr"):
        eols = itertools.repeat("\r")
    elif style == "mixed":
        # After a CR always comes a CRLF, so no CR LF pair is read as one line end by mistake.
        eols = itertools.cycle(["\r\n", "\n", "\r"])
    else:
        eols = itertools.repeat("\n")
    text = "".join(line + eol for line, eol in zip(lines, eols, strict=False))
    return ("\ufeff" if style == "bom" else "").encode() + text.encode()


def _pieces(data: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize("style", STYLES)
async def test_sse_styles_all_give_the_text(
    raw_server: RawServer, style: str, framing: Literal["chunked", "length"]
) -> None:
    raw_server.enqueue(sse_reply([sse_document(style)], framing=framing))
    assert await collect(config(raw_server.url)) == "".join(TEXTS)


async def test_a_crlf_split_between_two_reads_is_one_line_end(raw_server: RawServer) -> None:
    document = sse_document("multiline-data-crlf")
    cuts = {i + 1 for i, byte in enumerate(document) if byte == ord("\r")}
    raw_server.enqueue(sse_reply(_pieces(document, cuts), pause=0.002))
    assert await collect(config(raw_server.url)) == "".join(TEXTS)


@settings(max_examples=40, deadline=None)
@given(
    style=st.sampled_from(STYLES),
    framing=st.sampled_from(["chunked", "length"]),
    cuts=st.sets(st.integers(1, 2000), max_size=12),
)
async def test_any_split_of_any_sse_style_gives_the_text(
    style: str, framing: Literal["chunked", "length"], cuts: set[int]
) -> None:
    document = sse_document(style)
    async with RawServer() as server:
        server.enqueue(sse_reply(_pieces(document, cuts), framing=framing, pause=0.001))
        assert await collect(config(server.url)) == "".join(TEXTS)


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize("last", [b"data: [DONE]", b"data: [DONE]\n"], ids=["bare", "one-lf"])
async def test_done_without_its_blank_line_is_dropped_but_the_finish_chunk_counts(
    raw_server: RawServer, framing: Literal["chunked", "length"], last: bytes
) -> None:
    events = [text_event("Hello"), finish_event(), last]
    raw_server.enqueue(sse_reply(events, framing=framing))
    assert await collect(config(raw_server.url)) == "Hello"


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize(
    ("events", "received"),
    [
        pytest.param([text_event("Hello"), b"data: [DONE]\n"], "Hello", id="done-no-finish"),
        pytest.param(
            [text_event("Hel"), b"data: " + json.dumps(chunk_json("lo", finish="stop")).encode()],
            "Hel",
            id="last-text-event-unterminated",
        ),
    ],
)
async def test_a_last_event_without_its_blank_line_is_discarded(
    raw_server: RawServer,
    framing: Literal["chunked", "length"],
    events: list[bytes],
    received: str,
) -> None:
    # An event counts only once a blank line ends it: what is left is discarded, so
    # these streams end before they finished.
    raw_server.enqueue(sse_reply(events, framing=framing))
    with pytest.raises(StreamError) as info:
        await collect(config(raw_server.url))
    assert info.value.partial_text == received


LONG = {
    "data-line": b"data: " + json.dumps(chunk_json("x" * 4096)).encode() + b"\n\n",
    "comment-line": b": " + b"x" * 4096 + b"\n\n",
    "never-ending-line": b"data: " + b"x" * 4096,
}


@pytest.mark.parametrize("sent", LONG.values(), ids=LONG.keys())
async def test_a_line_longer_than_the_limit_is_a_stream_error(
    raw_server: RawServer, sent: bytes
) -> None:
    # The server stalls after the long line: the limit, not a timeout, must end it.
    pieces = [head(200, SSE_HEADERS), framed(text_event("Hello")), framed(sent)]
    raw_server.enqueue(Reply(pieces, then="stall"))
    cfg = config(raw_server.url, sse_max_line_bytes=1024, request_timeout=60)
    with pytest.raises(StreamError) as info:
        await collect(cfg)
    assert not isinstance(info.value, TimeoutError)
    assert info.value.partial_text == "Hello"
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


async def test_the_default_line_limit_takes_a_one_mib_line(raw_server: RawServer) -> None:
    big = "y" * (1 << 20)
    raw_server.enqueue(stream_reply("a", big, "z", split=True))
    assert await collect(config(raw_server.url)) == "a" + big + "z"


async def test_the_default_line_limit_is_four_mib(raw_server: RawServer) -> None:
    too_big = "y" * (5 << 20)
    raw_server.enqueue(stream_reply("start", too_big, split=True))
    with pytest.raises(StreamError) as info:
        await collect(config(raw_server.url))
    assert info.value.partial_text == "start"


async def test_interim_responses_and_chunk_extensions_and_trailers(raw_server: RawServer) -> None:
    body = b"".join(
        b"%x;ext=%d\r\n%b\r\n" % (len(event), i, event)
        for i, event in enumerate([text_event("Hel"), text_event("lo"), finish_event(), DONE])
    )
    pieces = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        head(200, SSE_HEADERS),
        body,
        b"0;last=1\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n",
    ]
    raw_server.enqueue(Reply(pieces, pause=0.005), stream_reply("again"))
    cfg = config(raw_server.url)
    assert await collect(cfg) == "Hello"
    assert await collect(cfg) == "again"
    assert raw_server.connections_opened == 1


# -- 4. keep-alive ----------------------------------------------------------------------------
async def test_ten_streams_use_one_loopback_connection(loopback: LoopbackServer) -> None:
    cfg = config(loopback.url)
    opened = loopback.stats().connections_opened
    for i in range(10):
        assert await collect(cfg, f"prompt number {i}") == f"prompt number {i}"
    assert loopback.stats().connections_opened - opened == 1
    assert loopback.stats().streams_completed == 10


@APIS
async def test_ten_calls_use_one_uvicorn_connection(
    uvicorn_server: UvicornServer, api: Api
) -> None:
    cfg = config(uvicorn_server.url)
    before = len(await asyncio.to_thread(uvicorn_server.chat_clients))
    for i in range(10):
        assert await ask(api, cfg, f"uvicorn prompt {i}") == f"uvicorn prompt {i}"
    clients = (await asyncio.to_thread(uvicorn_server.chat_clients))[before:]
    assert len(clients) == 10
    assert len(set(clients)) == 1, clients


async def test_concurrent_streams_share_the_pool(loopback: LoopbackServer) -> None:
    cfg = config(loopback.url)
    opened = loopback.stats().connections_opened
    for wave in range(2):
        prompts = [f"stream {i} of wave {wave}: " + "abc" * 8 for i in range(20)]
        assert await asyncio.gather(*(collect(cfg, p) for p in prompts)) == prompts
    assert loopback.stats().connections_opened - opened == 20  # the second wave reused them all


async def test_a_late_chunked_terminator_after_done_still_lets_the_connection_be_reused(
    raw_server: RawServer,
) -> None:
    events = framed(text_event("Hello")) + framed(finish_event()) + framed(DONE)
    late_end = Reply([head(200, SSE_HEADERS) + events, b"0\r\n\r\n"], pause=0.05)
    raw_server.enqueue(late_end, stream_reply("second"))
    cfg = config(raw_server.url)
    assert await collect(cfg) == "Hello"
    assert await collect(cfg) == "second"
    assert raw_server.connections_opened == 1
    assert len(raw_server.peers[0].requests) == 2


async def test_a_stream_ends_at_done_even_if_the_body_never_does(raw_server: RawServer) -> None:
    events = framed(text_event("Hello")) + framed(finish_event()) + framed(DONE)
    raw_server.enqueue(Reply([head(200, SSE_HEADERS) + events], then="stall"))
    raw_server.default = stream_reply("second")
    cfg = config(raw_server.url, request_timeout=60)
    assert await collect(cfg) == "Hello"  # within GUARD: no wait for a terminator
    assert await collect(cfg) == "second"
    await raw_server.wait_until(lambda: raw_server.connections_closed >= 1)


async def test_an_idle_connection_the_server_closed_is_not_used_again(
    raw_server: RawServer,
) -> None:
    raw_server.enqueue(stream_reply("first", then="close"), stream_reply("second"))
    cfg = config(raw_server.url)
    assert await collect(cfg) == "first"
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)
    # A moment for the client's side to read the FIN: not the race of the test below.
    await asyncio.sleep(0.05)
    assert await collect(cfg) == "second"
    assert raw_server.connections_opened == 2
    assert len(raw_server.requests) == 2


@pytest.mark.parametrize("round_", range(5))
async def test_a_request_that_never_left_on_a_stale_connection_is_sent_on_a_new_one(
    raw_server: RawServer, round_: int
) -> None:
    # The server closes the idle connection just as the client takes it from the pool
    # (before the client's loop has read the FIN, in some rounds). A request that could
    # not be written never reached the server: sending it on a new connection is not a
    # retry, and max_retries=0 still holds (one request on the wire per call).
    raw_server.enqueue(stream_reply("first", then="close"), stream_reply("second"))
    cfg = config(raw_server.url)
    assert await collect(cfg) == "first"
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)
    assert await collect(cfg) == "second"
    assert raw_server.connections_opened == 2
    assert len(raw_server.requests) == 2


@pytest.mark.parametrize("round_", range(5))
async def test_a_connection_the_server_closed_before_the_request_is_not_used(
    loopback: LoopbackServer, round_: int
) -> None:
    # reset() aborts the connection the server was still finishing its 401 on: its FIN has
    # arrived, unread, when the next call starts at once. That call must not spend its one
    # attempt (max_retries=0) on the dead connection.
    cfg = LLMConfig(
        model="openai/m",
        api_base=loopback.base_url,
        api_key="sk-test-0123456789",
        max_retries=0,
        transport="direct",
    )
    loopback.enqueue(Script.error(401))
    with pytest.raises(AuthError):
        await collect(cfg)
    loopback.reset()
    loopback.enqueue(Script.text("fresh"))
    assert await collect(cfg) == "fresh"
    assert len(loopback.requests) == 1


# -- 5. redirects are not followed -----------------------------------------------------------
@APIS
@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_is_a_provider_error_naming_status_and_location(
    raw_server: RawServer, api: Api, status: int
) -> None:
    location = f"{raw_server.url}/elsewhere/v1/chat/completions"
    raw_server.enqueue(
        json_reply(status, completion_body("the redirect's body"), headers=[("Location", location)])
    )
    raw_server.default = answer(api, "followed")
    with pytest.raises(ProviderError) as info:
        await ask(api, config(raw_server.url, max_retries=2))
    assert info.value.status_code == status
    assert str(status) in str(info.value)
    assert location in str(info.value)
    assert [r.target for r in raw_server.requests] == [b"/v1/chat/completions"]


# -- 6. the key from the environment ----------------------------------------------------------
@APIS
async def test_openai_api_key_from_the_environment_is_sent_to_an_api_base(
    raw_server: RawServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-4242-abcdef")
    raw_server.enqueue(answer(api))
    assert await ask(api, config(raw_server.url, api_key=None)) == "Hello"
    (request,) = raw_server.requests
    assert request.header("authorization") == b"Bearer env-key-4242-abcdef"


@APIS
async def test_no_key_anywhere_sends_no_authorization_to_an_api_base(
    raw_server: RawServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    raw_server.enqueue(answer(api))
    assert await ask(api, config(raw_server.url, api_key=None)) == "Hello"
    (request,) = raw_server.requests
    assert request.header("authorization") is None


@APIS
async def test_the_request_on_the_wire(raw_server: RawServer, api: Api) -> None:
    raw_server.enqueue(answer(api))
    await ask(api, config(raw_server.url, temperature=0.25, max_tokens=7))
    (request,) = raw_server.requests
    assert (request.method, request.target) == (b"POST", b"/v1/chat/completions")
    assert request.header("authorization") == f"Bearer {KEY}".encode()
    assert request.header("content-type") == b"application/json"
    assert request.header("host") == f"127.0.0.1:{raw_server.port}".encode()
    body = request.json()
    assert body["model"] == "m"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["temperature"], body["max_tokens"]) == (0.25, 7)
    assert body["stream"] is (api == "stream")


# -- 7. obs-fold, OAuth refresh ---------------------------------------------------------------
@APIS
async def test_an_obs_folded_response_header_is_accepted_or_a_provider_error(
    raw_server: RawServer, api: Api
) -> None:
    folded = answer(api)
    first = folded.pieces[0]
    end = first.index(b"\r\n") + 2
    folded.pieces = [first[:end] + b"X-Foo: a\r\n  b\r\n" + first[end:], *folded.pieces[1:]]
    raw_server.enqueue(folded)
    try:
        text = await ask(api, config(raw_server.url, max_retries=2))
    except ProviderError:
        pass  # rejected: typed, and sent once
    else:
        assert text == "Hello"
    assert len(raw_server.requests) == 1


async def revoked_token_config(
    loopback: LoopbackServer, oauth_name: str, *, max_retries: int
) -> LLMConfig:
    """A config whose OAuth provider holds tok-1, which the server has just revoked."""
    loopback.api_keys = frozenset()  # only live tokens are accepted
    provider = ClientCredentialsProvider(
        loopback.token_url, "test-client", SecretStr("test-secret")
    )
    register_token_provider(oauth_name, provider)
    await provider.get_token()  # tok-1, cached
    loopback.revoke_tokens()
    return LLMConfig(
        model="openai/m",
        api_base=loopback.base_url,
        auth_type="oauth2",
        oauth_provider=oauth_name,
        max_retries=max_retries,
        enable_cache=False,
        transport="direct",
    )


@APIS
async def test_a_401_on_oauth_refreshes_the_token_once(
    loopback: LoopbackServer, api: Api, oauth_name: str
) -> None:
    cfg = await revoked_token_config(loopback, oauth_name, max_retries=1)
    assert await ask(api, cfg, "refreshed") == "refreshed"
    chats = [r for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert [r.headers.get("authorization") for r in chats] == ["Bearer tok-1", "Bearer tok-2"]
    assert loopback.stats().token_requests == 2


@APIS
async def test_with_no_retry_left_a_401_forgets_the_token_for_the_next_call(
    loopback: LoopbackServer, api: Api, oauth_name: str
) -> None:
    # The refresh is a retry like any other: max_retries=0 sends one request, and the
    # revoked token is forgotten, so the next call starts with a fresh one.
    cfg = await revoked_token_config(loopback, oauth_name, max_retries=0)
    with pytest.raises(AuthError):
        await ask(api, cfg, "refused")
    assert await ask(api, cfg, "next call") == "next call"
    chats = [r for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert [r.headers.get("authorization") for r in chats] == ["Bearer tok-1", "Bearer tok-2"]


@APIS
async def test_a_second_401_after_the_refresh_is_an_auth_error(
    raw_server: RawServer, api: Api, oauth_name: str
) -> None:
    def token(n: int) -> Reply:
        return json_reply(200, {"access_token": f"tok-{n}", "token_type": "Bearer"})

    unauthorized = json_reply(401, _error_body("token rejected"))
    raw_server.enqueue(token(1), unauthorized, token(2), unauthorized, token(3), answer(api))
    provider = ClientCredentialsProvider(raw_server.url + "/oauth/token", "client", "secret-9")
    register_token_provider(oauth_name, provider)
    cfg = config(raw_server.url, api_key=None, auth_type="oauth2", oauth_provider=oauth_name)
    with pytest.raises(AuthError) as info:
        await ask(api, cfg.model_copy(update={"max_retries": 2}))
    assert info.value.status_code == 401
    targets = [r.target for r in raw_server.requests]
    assert targets.count(b"/v1/chat/completions") == 2
    assert targets.count(b"/oauth/token") == 2


# -- 8. timeouts ------------------------------------------------------------------------------
ROLE_ONLY = b"data: " + json.dumps(chunk_json("")).encode() + b"\n\n"


@pytest.mark.parametrize(
    "sent",
    [pytest.param(b"", id="head-only"), pytest.param(framed(ROLE_ONLY), id="empty-delta-only")],
)
async def test_first_token_timeout(raw_server: RawServer, sent: bytes) -> None:
    raw_server.enqueue(Reply([head(200, SSE_HEADERS) + sent], then="stall"))
    started = time.monotonic()
    with pytest.raises(FirstTokenTimeout) as info:
        await collect(config(raw_server.url, first_token_timeout=0.3))
    assert 0.25 < time.monotonic() - started < 5
    assert info.value.partial_text == ""
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


async def test_idle_timeout_keeps_the_partial_text(raw_server: RawServer) -> None:
    raw_server.enqueue(Reply([head(200, SSE_HEADERS) + framed(text_event("Hel"))], then="stall"))
    with pytest.raises(IdleTimeout) as info:
        await collect(config(raw_server.url, idle_timeout=0.3))
    assert info.value.partial_text == "Hel"
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


@APIS
@pytest.mark.parametrize("max_retries", [0, 1])
async def test_request_timeout_when_the_server_never_answers(
    raw_server: RawServer, api: Api, max_retries: int
) -> None:
    raw_server.default = Reply(then="stall")
    started = time.monotonic()
    with pytest.raises(LLMError):
        await ask(api, config(raw_server.url, request_timeout=0.3, max_retries=max_retries))
    assert time.monotonic() - started < 0.3 * (max_retries + 1) + 3
    assert len(raw_server.requests) <= max_retries + 1
    opened = raw_server.connections_opened
    await raw_server.wait_until(lambda: raw_server.connections_closed == opened)


async def test_request_timeout_bounds_each_read_of_a_stream_body(raw_server: RawServer) -> None:
    # No idle_timeout set: request_timeout alone ends a body that stops coming.
    raw_server.enqueue(_endless_stream())
    started = time.monotonic()
    with pytest.raises(StreamError) as info:
        await collect(config(raw_server.url, request_timeout=0.3))
    assert not isinstance(info.value, IdleTimeout)
    assert info.value.partial_text == "Hello"
    assert "timed out" in str(info.value)
    assert time.monotonic() - started < GUARD
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


async def test_request_timeout_is_idle_time_not_the_length_of_a_stream(
    raw_server: RawServer,
) -> None:
    # Ten reads 0.1 s apart take 1 s in all: each is within request_timeout=0.3.
    pieces = [head(200, SSE_HEADERS), *(framed(text_event(str(i))) for i in range(10))]
    raw_server.enqueue(
        Reply([*pieces, framed(finish_event()), framed(DONE), b"0\r\n\r\n"], pause=0.1)
    )
    assert await collect(config(raw_server.url, request_timeout=0.3)) == "0123456789"


async def test_request_timeout_bounds_each_read_of_a_whole_answer(raw_server: RawServer) -> None:
    body = completion_body("never finished")
    raw_server.enqueue(
        Reply(
            [
                head(
                    200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
                )
                + body[:10]
            ],
            then="stall",
        )
    )
    with pytest.raises(ProviderError, match="timed out"):
        await call_llm("hi", config(raw_server.url, request_timeout=0.3, enable_cache=False))
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


# -- 9. leaving closes the connection at once -------------------------------------------------
def _endless_stream() -> Reply:
    return Reply(
        [head(200, SSE_HEADERS) + framed(text_event("Hel")) + framed(text_event("lo"))],
        then="stall",
    )


async def test_break_closes_the_connection(raw_server: RawServer) -> None:
    raw_server.enqueue(_endless_stream())
    async with (
        asyncio.timeout(GUARD),
        contextlib.aclosing(call_llm_stream("hi", config(raw_server.url))) as stream,
    ):
        async for text in stream:
            assert text == "Hel"
            break
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


async def test_break_out_of_stream_events_closes_the_connection(raw_server: RawServer) -> None:
    raw_server.enqueue(_endless_stream())
    async with (
        asyncio.timeout(GUARD),
        contextlib.aclosing(stream_events("hi", config(raw_server.url))) as events,
    ):
        async for event in events:
            if isinstance(event, TextDelta):
                break
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


async def test_a_cancelled_task_closes_the_connection(raw_server: RawServer) -> None:
    raw_server.enqueue(_endless_stream())
    got_text = asyncio.Event()

    async def consume() -> None:
        async for _ in call_llm_stream("hi", config(raw_server.url)):
            got_text.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(GUARD):
        await got_text.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await raw_server.wait_until(lambda: raw_server.connections_closed == 1)


# -- 10. truncation and broken framing mid-stream ------------------------------------------
_CHUNKED = head(200, SSE_HEADERS)
_HEL = framed(text_event("Hel"))
_SSE_LENGTH = [("Content-Type", "text/event-stream"), ("Content-Length", "10000")]
_SSE_UNTIL_CLOSE = [("Content-Type", "text/event-stream"), ("Connection", "close")]
# What follows a first event that carried "Hel", and how the connection ends. The rest
# is held back until the client has "Hel" (a TCP RST may discard unread data, and a
# parser may fail the whole read that holds a framing error).
TRUNCATED: dict[str, tuple[bytes, list[bytes], Then]] = {
    "chunked-cut-mid-chunk": (_CHUNKED + _HEL, [b'64\r\ndata: {"id"'], "close"),
    "chunked-cut-between-chunks": (_CHUNKED + _HEL, [], "close"),
    "bad-chunk-size": (_CHUNKED + _HEL, [b"zz\r\n" + text_event("lo") + b"\r\n"], "stall"),
    "chunk-not-followed-by-crlf": (_CHUNKED + _HEL, [b'a\r\ndata: {"idXX'], "stall"),
    "length-short": (head(200, _SSE_LENGTH) + text_event("Hel"), [], "close"),
    "close-delimited-without-end": (head(200, _SSE_UNTIL_CLOSE) + text_event("Hel"), [], "close"),
    "complete-body-without-finish": (_CHUNKED + _HEL, [b"0\r\n\r\n"], "keep"),
    "reset": (_CHUNKED + _HEL, [], "reset"),
}


@pytest.mark.parametrize("kind", TRUNCATED)
async def test_a_cut_or_broken_stream_is_a_stream_error_with_the_partial_text(
    raw_server: RawServer, kind: str
) -> None:
    first, rest, then = TRUNCATED[kind]
    gate, seen = gate_on("Hel")
    raw_server.enqueue(Reply([first, *rest], then=then, gate=gate, gate_before=1))
    raw_server.default = stream_reply("retried")
    with pytest.raises(StreamError) as info:
        await collect(config(raw_server.url, max_retries=2, request_timeout=60), on_text=seen)
    assert info.value.partial_text == "Hel"
    assert len(raw_server.requests) == 1


@pytest.mark.parametrize("kind", ["bad-chunk-size", "chunk-not-followed-by-crlf"])
async def test_broken_framing_in_the_first_read_is_a_typed_error_and_not_retried(
    raw_server: RawServer, kind: str
) -> None:
    first, rest, _ = TRUNCATED[kind]
    raw_server.enqueue(Reply([first + b"".join(rest)], then="stall"))  # one read
    raw_server.default = stream_reply("retried")
    with pytest.raises(LLMError) as info:
        await collect(config(raw_server.url, max_retries=2, request_timeout=60))
    assert info.value.partial_text in ("", "Hel")
    assert len(raw_server.requests) == 1


# -- 11. a non-streamed answer that is not a chat completion -------------------------------
NOT_COMPLETIONS: dict[str, Reply] = {
    "text": json_reply(200, b"this is not JSON"),
    "html": json_reply(200, b"<html><body>Bad gateway</body></html>"),
    "json-not-completion": json_reply(200, {"choices": []}),
    "json-array": json_reply(200, [1, 2, 3]),
    "length-short": Reply(
        [head(200, [("Content-Type", "application/json"), ("Content-Length", "500")]) + b'{"id"'],
        then="close",
    ),
    "bad-chunk": Reply(
        [
            head(200, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
            + b"zz\r\n{}\r\n"
        ],
        then="stall",
    ),
}


@pytest.mark.parametrize("kind", NOT_COMPLETIONS)
async def test_a_whole_answer_that_is_not_a_completion_is_a_provider_error(
    raw_server: RawServer, kind: str
) -> None:
    raw_server.enqueue(NOT_COMPLETIONS[kind])
    raw_server.default = answer("call", "retried")
    with pytest.raises(ProviderError):
        await ask("call", config(raw_server.url, max_retries=2, request_timeout=60))
    assert len(raw_server.requests) == 1


# -- 12. the key never shows in an error ----------------------------------------------------
SECRET = "my-plain-key-1234"


def _echo(status: int) -> Reply:
    body = {
        "error": {"message": f"Incorrect API key provided: {SECRET}.", "code": "invalid_api_key"}
    }
    return json_reply(status, body)


SECRET_CASES: dict[str, tuple[list[Reply], type[LLMError], tuple[Api, ...]]] = {
    "401": ([_echo(401)], AuthError, ("stream", "call")),
    "500-after-retries": ([_echo(500), _echo(500)], ProviderError, ("stream", "call")),
    "500-plain-text": (
        [json_reply(500, f"upstream said: bad key {SECRET}".encode())] * 2,
        ProviderError,
        ("stream", "call"),
    ),
    "redirect-location": (
        [json_reply(302, b"", headers=[("Location", f"http://127.0.0.1:1/?key={SECRET}")])],
        ProviderError,
        ("stream", "call"),
    ),
    "mid-stream-error-event": (
        [
            sse_reply(
                [
                    text_event("Hel"),
                    b"data: "
                    + json.dumps(_error_body(f"key {SECRET} was revoked")).encode()
                    + b"\n\n",
                ]
            )
        ],
        StreamError,
        ("stream",),
    ),
    "mid-stream-malformed-data": (
        [sse_reply([text_event("Hel"), f"data: {SECRET} is not JSON\n\n".encode()])],
        StreamError,
        ("stream",),
    ),
}
SECRET_PARAMS = [
    pytest.param(kind, api, id=f"{kind}-{api}")
    for kind, (_, _, apis) in SECRET_CASES.items()
    for api in apis
]


@pytest.mark.parametrize(("kind", "api"), SECRET_PARAMS)
async def test_an_error_never_shows_the_key(raw_server: RawServer, kind: str, api: Api) -> None:
    replies, error, _ = SECRET_CASES[kind]
    raw_server.enqueue(*replies)
    with pytest.raises(error) as info:
        await ask(api, config(raw_server.url, api_key=SECRET, max_retries=1))
    assert_no_secret(info.value, SECRET)


# -- back-pressure ----------------------------------------------------------------------------
async def test_a_slow_consumer_slows_the_server(raw_server: RawServer) -> None:
    piece = "x" * 16384
    events = [text_event(piece) for _ in range(1024)] + [finish_event(), DONE]  # 16 MiB
    body = b"".join(events)
    written = asyncio.Event()
    peers: list[Peer] = []

    async def handler(peer: Peer) -> None:
        peers.append(peer)
        await peer.read_request()
        length = [("Content-Type", "text/event-stream"), ("Content-Length", str(len(body)))]
        peer.writer.write(head(200, length) + body)
        await peer.writer.drain()
        written.set()
        await peer.wait_gone()

    raw_server.handler = handler
    async with (
        asyncio.timeout(GUARD),
        contextlib.aclosing(call_llm_stream("hi", config(raw_server.url))) as stream,
    ):
        received = [await anext(stream)]
        with pytest.raises(TimeoutError):  # the consumer reads nothing for a while
            await asyncio.wait_for(written.wait(), 0.3)
        assert peers[0].writer.transport.get_write_buffer_size() > 0
        received += [text async for text in stream]
    assert "".join(received) == piece * 1024
    assert written.is_set()


# -- TLS ------------------------------------------------------------------------------------
@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 from a throwaway CA, and the CA file."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, ca_file


async def test_https_trusts_the_roots_named_by_ssl_cert_file(
    tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server_context, ca_file = tls
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # read when the loop's client starts
    async with RawServer(ssl_context=server_context) as server:
        server.enqueue(stream_reply("secret one"), stream_reply("secret two"))
        cfg = config(server.url)
        assert cfg.api_base is not None
        assert cfg.api_base.startswith("https://")
        assert await collect(cfg) == "secret one"
        assert await collect(cfg) == "secret two"
        assert server.connections_opened == 1
        assert [r.header("authorization") for r in server.requests] == [
            f"Bearer {KEY}".encode()
        ] * 2


async def test_https_with_an_untrusted_certificate_is_a_provider_error(
    tls: tuple[ssl.SSLContext, Path],
) -> None:
    server_context, _ = tls
    async with RawServer(ssl_context=server_context) as server:
        server.default = stream_reply("never")
        with pytest.raises(ProviderError):
            await collect(config(server.url))
        assert server.requests == []
