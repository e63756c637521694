"""OAuth2 token providers against a real loopback token endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote_plus, unquote_plus

import httpx
import pytest
from pydantic import SecretStr

from kagura._redact import redact
from kagura.errors import AuthError, ConfigError
from kagura.llm.oauth import (
    DEFAULT_TOKEN_LIFETIME,
    ClientCredentialsProvider,
    StaticTokenProvider,
    TokenProvider,
    get_token_provider,
    register_token_provider,
    unregister_token_provider,
)

CLIENT_ID = "kagura-client"
SECRET = "s3cr3t+with/odd=chars&more"
TOKEN_PREFIX = "tok-9f8e7d"


@dataclass
class TokenServerState:
    """What the loopback token endpoint answers, and what it has seen."""

    status: int = 200
    expires_in: Any = 3600
    body: bytes | None = None  # raw body to send instead of a token response
    delay: float = 0.0
    requests: int = 0
    seen: list[tuple[dict[str, str], dict[str, list[str]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class TokenServer:
    url: str
    state: TokenServerState

    @property
    def requests(self) -> int:
        with self.state.lock:
            return self.state.requests

    def last_request(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        with self.state.lock:
            return self.state.seen[-1]


def _handler(state: TokenServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            with state.lock:
                state.requests += 1
                number = state.requests
                state.seen.append(({k.lower(): v for k, v in self.headers.items()}, form))
            if state.delay:
                state.stop.wait(state.delay)
            if state.body is not None:
                body = state.body
            elif state.status >= 400:
                body = json.dumps(
                    {"error": "invalid_client", "error_description": "Client authentication failed"}
                ).encode()
            else:
                payload: dict[str, Any] = {
                    "access_token": f"{TOKEN_PREFIX}-{number}",
                    "token_type": "Bearer",
                }
                if state.expires_in is not None:
                    payload["expires_in"] = state.expires_in
                body = json.dumps(payload).encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout test)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    state = TokenServerState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield TokenServer(f"http://{host!s}:{port}/oauth/token", state)
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def make_provider(server: TokenServer, **kwargs: Any) -> ClientCredentialsProvider:
    return ClientCredentialsProvider(server.url, CLIENT_ID, SecretStr(SECRET), **kwargs)


async def fetch(provider: ClientCredentialsProvider, *, sync: bool) -> SecretStr:
    return provider.get_token_sync() if sync else await provider.get_token()


def assert_no_secret(err: BaseException) -> None:
    for text in (str(err), repr(err), repr(err.args)):
        assert SECRET not in text
        assert TOKEN_PREFIX not in text


# -- fetching and caching ----------------------------------------------------


async def test_fetches_token_with_post_credentials(token_server: TokenServer) -> None:
    provider = make_provider(token_server, scope=["llm.read", "llm.write"], audience="api://llm")

    token = await provider.get_token()

    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == f"{TOKEN_PREFIX}-1"
    headers, form = token_server.last_request()
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in headers
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": ["llm.read llm.write"],
        "audience": ["api://llm"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }


async def test_basic_auth_sends_urlencoded_credentials_in_header(
    token_server: TokenServer,
) -> None:
    provider = make_provider(token_server, auth_method="client_secret_basic", scope="llm")

    await provider.get_token()

    headers, form = token_server.last_request()
    assert form == {"grant_type": ["client_credentials"], "scope": ["llm"]}
    scheme, encoded = headers["authorization"].split(" ", 1)
    assert scheme == "Basic"
    user, password = base64.b64decode(encoded).decode().split(":", 1)
    assert (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, SECRET)


async def test_no_scope_means_no_scope_field(token_server: TokenServer) -> None:
    await make_provider(token_server).get_token()

    _, form = token_server.last_request()
    assert "scope" not in form
    assert "audience" not in form


async def test_token_is_cached(token_server: TokenServer) -> None:
    provider = make_provider(token_server)

    tokens = {(await provider.get_token()).get_secret_value() for _ in range(20)}
    tokens |= {provider.get_token_sync().get_secret_value() for _ in range(20)}

    assert tokens == {f"{TOKEN_PREFIX}-1"}
    assert token_server.requests == 1


def test_sync_path_fetches_and_caches(token_server: TokenServer) -> None:
    provider = make_provider(token_server)

    first = provider.get_token_sync()
    second = provider.get_token_sync()

    assert first.get_secret_value() == second.get_secret_value() == f"{TOKEN_PREFIX}-1"
    assert token_server.requests == 1


async def test_refreshes_refresh_margin_before_expiry(token_server: TokenServer) -> None:
    clock = FakeClock()
    token_server.state.expires_in = 120
    provider = make_provider(token_server, refresh_margin=60, clock=clock)

    assert (await provider.get_token()).get_secret_value().endswith("-1")
    clock.now += 59.9
    assert (await provider.get_token()).get_secret_value().endswith("-1")
    clock.now += 0.2  # 60.1 s after the request: inside the margin
    assert (await provider.get_token()).get_secret_value().endswith("-2")
    assert token_server.requests == 2


def test_sync_path_refreshes_too(token_server: TokenServer) -> None:
    clock = FakeClock()
    token_server.state.expires_in = 100
    provider = make_provider(token_server, refresh_margin=10, clock=clock)

    provider.get_token_sync()
    clock.now += 89
    provider.get_token_sync()
    clock.now += 2
    assert provider.get_token_sync().get_secret_value().endswith("-2")
    assert token_server.requests == 2


@pytest.mark.parametrize(
    ("expires_in", "fresh_until"),
    [
        (None, DEFAULT_TOKEN_LIFETIME),  # no expires_in: documented default
        ("3600", 3540.0),  # numeric string, as some servers send
        (40, 20.0),  # shorter than the margin: half the lifetime
        ("soon", DEFAULT_TOKEN_LIFETIME),
        (0, DEFAULT_TOKEN_LIFETIME),
    ],
)
async def test_cache_lifetime(
    token_server: TokenServer, expires_in: Any, fresh_until: float
) -> None:
    clock = FakeClock()
    token_server.state.expires_in = expires_in
    provider = make_provider(token_server, refresh_margin=60, clock=clock)

    await provider.get_token()
    clock.now += fresh_until - 0.01
    await provider.get_token()
    assert token_server.requests == 1
    clock.now += 0.02
    await provider.get_token()
    assert token_server.requests == 2


async def test_invalidate_forces_a_new_fetch(token_server: TokenServer) -> None:
    provider = make_provider(token_server)
    await provider.get_token()

    provider.invalidate()

    assert (await provider.get_token()).get_secret_value().endswith("-2")
    assert token_server.requests == 2


# -- concurrency --------------------------------------------------------------


async def test_concurrent_async_callers_share_one_request(token_server: TokenServer) -> None:
    token_server.state.delay = 0.2
    provider = make_provider(token_server)

    tokens = await asyncio.gather(*(provider.get_token() for _ in range(50)))

    assert {t.get_secret_value() for t in tokens} == {f"{TOKEN_PREFIX}-1"}
    assert token_server.requests == 1


def test_concurrent_threads_share_one_request(token_server: TokenServer) -> None:
    token_server.state.delay = 0.2
    provider = make_provider(token_server)
    barrier = threading.Barrier(8)
    results: list[str] = []
    results_lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        value = provider.get_token_sync().get_secret_value()
        with results_lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert results == [f"{TOKEN_PREFIX}-1"] * 8
    assert token_server.requests == 1


def test_one_provider_serves_several_event_loops(token_server: TokenServer) -> None:
    """An asyncio.Lock binds to the first loop it waits on; each loop gets its own."""
    token_server.state.delay = 0.05
    provider = make_provider(token_server)

    async def burst() -> set[str]:
        tokens = await asyncio.gather(*(provider.get_token() for _ in range(5)))
        return {t.get_secret_value() for t in tokens}

    assert asyncio.run(burst()) == {f"{TOKEN_PREFIX}-1"}
    provider.invalidate()
    assert asyncio.run(burst()) == {f"{TOKEN_PREFIX}-2"}
    assert token_server.requests == 2


async def test_cancelled_fetcher_lets_the_next_caller_fetch(token_server: TokenServer) -> None:
    token_server.state.delay = 0.3
    provider = make_provider(token_server)

    first = asyncio.create_task(provider.get_token())
    await asyncio.sleep(0.05)
    second = asyncio.create_task(provider.get_token())
    await asyncio.sleep(0.05)
    first.cancel()

    token = await second
    assert token.get_secret_value().startswith(TOKEN_PREFIX)
    with pytest.raises(asyncio.CancelledError):
        await first


# -- failures -----------------------------------------------------------------


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_401_invalid_client(token_server: TokenServer, sync: bool) -> None:
    token_server.state.status = 401
    provider = make_provider(token_server, name="corp-sso")

    with pytest.raises(AuthError) as info:
        await fetch(provider, sync=sync)

    err = info.value
    assert "corp-sso" in str(err)
    assert "127.0.0.1" in str(err)
    assert "invalid_client" in str(err)
    assert "HTTP 401" in str(err)
    assert err.status_code == 401
    assert isinstance(err.__cause__, httpx.HTTPStatusError)
    assert_no_secret(err)


async def test_500_is_an_auth_error(token_server: TokenServer) -> None:
    token_server.state.status = 500
    token_server.state.body = b"<html>Internal Server Error</html>"

    with pytest.raises(AuthError, match="HTTP 500") as info:
        await make_provider(token_server).get_token()

    assert info.value.status_code == 500
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert_no_secret(info.value)


async def test_error_description_echoing_the_secret_is_scrubbed(
    token_server: TokenServer,
) -> None:
    token_server.state.status = 400
    token_server.state.body = json.dumps(
        {"error": "invalid_request", "error_description": f"bad secret {SECRET}"}
    ).encode()

    with pytest.raises(AuthError, match="invalid_request") as info:
        await make_provider(token_server).get_token()

    assert "bad secret [REDACTED]" in str(info.value)
    assert_no_secret(info.value)


def assert_no_secret_in_chain(err: BaseException, *secrets: str) -> None:
    text = "".join(traceback.format_exception(err)) + repr(err) + repr(err.args)
    for secret in (SECRET, quote_plus(SECRET), TOKEN_PREFIX, *secrets):
        assert secret not in text


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("status", [400, 401, 500])
async def test_an_endpoint_echoing_the_secret_or_a_token_never_shows_them(
    token_server: TokenServer, sync: bool, status: int
) -> None:
    provider = make_provider(token_server, auth_method="client_secret_basic")
    old_token = (await fetch(provider, sync=sync)).get_secret_value()
    basic = base64.b64encode(f"{CLIENT_ID}:{quote_plus(SECRET)}".encode()).decode()
    provider.invalidate()
    token_server.state.status = status
    token_server.state.body = json.dumps(
        {
            "error": f"invalid_client:{SECRET}",
            "error_description": (
                f"token {old_token} revoked; you sent {quote_plus(SECRET)} as Basic {basic}"
            ),
        }
    ).encode()

    with pytest.raises(AuthError, match=f"HTTP {status}") as info:
        await fetch(provider, sync=sync)

    assert "token [REDACTED] revoked" in str(info.value)
    assert "invalid_client:[REDACTED]" in str(info.value)
    assert_no_secret_in_chain(info.value, basic)


async def test_a_200_echoing_the_secret_in_its_error_code_never_shows_it(
    token_server: TokenServer,
) -> None:
    token_server.state.body = json.dumps({"error": f"bad_secret_{SECRET}"}).encode()

    with pytest.raises(AuthError, match="no access_token") as info:
        await make_provider(token_server).get_token()

    assert_no_secret_in_chain(info.value)


async def test_a_password_in_the_token_url_never_shows(token_server: TokenServer) -> None:
    token_server.state.status = 401
    url = token_server.url.replace("://", "://svc:url-pa55word@", 1)
    provider = ClientCredentialsProvider(url, CLIENT_ID, SECRET)

    with pytest.raises(AuthError) as info:
        await provider.get_token()

    assert_no_secret_in_chain(info.value, "url-pa55word")


def test_a_static_token_is_remembered() -> None:
    StaticTokenProvider("tok-static-remembered")
    assert redact("401: tok-static-remembered expired") == "401: [REDACTED] expired"


async def test_malformed_json(token_server: TokenServer) -> None:
    token_server.state.body = b'{"access_token": "tok-9f8e7d-x", '

    with pytest.raises(AuthError, match="not JSON") as info:
        await make_provider(token_server).get_token()

    assert isinstance(info.value.__cause__, ValueError)
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b'{"token_type": "Bearer"}',
        b'{"access_token": ""}',
        b'["tok-9f8e7d"]',
        b'{"access_token": 7}',
    ],
)
async def test_response_without_access_token(token_server: TokenServer, body: bytes) -> None:
    token_server.state.body = body

    with pytest.raises(AuthError, match="no access_token") as info:
        await make_provider(token_server).get_token()

    assert_no_secret(info.value)


async def test_200_with_oauth_error_names_the_code(token_server: TokenServer) -> None:
    token_server.state.body = b'{"error": "unauthorized_client"}'

    with pytest.raises(AuthError, match="unauthorized_client"):
        await make_provider(token_server).get_token()


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/token"


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_connection_refused(refused_url: str, sync: bool) -> None:
    provider = ClientCredentialsProvider(refused_url, CLIENT_ID, SECRET, name="corp-sso")

    with pytest.raises(AuthError, match="ConnectError") as info:
        await fetch(provider, sync=sync)

    assert "corp-sso" in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert_no_secret(info.value)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_timeout(token_server: TokenServer, sync: bool) -> None:
    token_server.state.delay = 5.0
    provider = make_provider(token_server, timeout=0.2)

    with pytest.raises(AuthError, match=r"no answer within 0\.2 s") as info:
        await fetch(provider, sync=sync)

    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert_no_secret(info.value)


async def test_failure_caches_nothing(token_server: TokenServer) -> None:
    token_server.state.status = 503
    provider = make_provider(token_server)
    with pytest.raises(AuthError):
        await provider.get_token()

    token_server.state.status = 200

    assert (await provider.get_token()).get_secret_value().endswith("-2")


async def test_logs_never_hold_secret_or_token(
    token_server: TokenServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make_provider(token_server)

    await provider.get_token()
    provider.invalidate()
    provider.get_token_sync()

    assert caplog.records, "expected a debug record of the fetch"
    assert SECRET not in caplog.text
    assert TOKEN_PREFIX not in caplog.text


# -- repr and validation --------------------------------------------------------


def test_repr_masks_the_secret() -> None:
    provider = ClientCredentialsProvider("https://auth.example.com/token", CLIENT_ID, SECRET)

    assert repr(provider) == (
        "ClientCredentialsProvider(token_url='https://auth.example.com/token', "
        "client_id='kagura-client', client_secret=SecretStr('**********'))"
    )
    assert SECRET not in str(vars(provider))


async def test_repr_hides_cached_token_and_url_password(token_server: TokenServer) -> None:
    provider = make_provider(token_server)
    await provider.get_token()
    assert TOKEN_PREFIX not in repr(provider)
    assert TOKEN_PREFIX not in str(vars(provider))

    with_userinfo = ClientCredentialsProvider(
        "https://user:hunter2@auth.example.com/token", CLIENT_ID, SECRET
    )
    assert "hunter2" not in repr(with_userinfo)
    assert "auth.example.com/token" in repr(with_userinfo)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("ftp://auth.example.com/token", CLIENT_ID, SECRET), {}),
        (("/token", CLIENT_ID, SECRET), {}),
        (("https://auth.example.com/token", "", SECRET), {}),
        (("https://auth.example.com/token", CLIENT_ID, ""), {}),
        (("https://auth.example.com/token", CLIENT_ID, SECRET), {"auth_method": "private_key_jwt"}),
        (("https://auth.example.com/token", CLIENT_ID, SECRET), {"timeout": 0}),
        (("https://auth.example.com/token", CLIENT_ID, SECRET), {"refresh_margin": -1}),
    ],
)
def test_invalid_settings(args: tuple[str, str, str], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        ClientCredentialsProvider(*args, **kwargs)
    assert SECRET not in str(info.value)


# -- static provider and registry -------------------------------------------------


async def test_static_provider() -> None:
    provider = StaticTokenProvider("tok-static")

    assert (await provider.get_token()).get_secret_value() == "tok-static"
    provider.invalidate()
    assert provider.get_token_sync().get_secret_value() == "tok-static"
    assert "tok-static" not in repr(provider)
    with pytest.raises(ConfigError):
        StaticTokenProvider("")


def test_providers_satisfy_the_protocol(token_server: TokenServer) -> None:
    assert isinstance(StaticTokenProvider("t"), TokenProvider)
    assert isinstance(make_provider(token_server), TokenProvider)
    assert not isinstance(object(), TokenProvider)


@pytest.fixture
def registry_names() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        unregister_token_provider(name)


def test_registry(registry_names: list[str]) -> None:
    registry_names += ["test-a", "test-b"]
    a, b = StaticTokenProvider("tok-a"), StaticTokenProvider("tok-b")
    register_token_provider("test-a", a)
    register_token_provider("test-b", b)

    assert get_token_provider("test-a") is a
    assert get_token_provider("test-b") is b

    register_token_provider("test-a", b)  # replacing is allowed
    assert get_token_provider("test-a") is b

    unregister_token_provider("test-a")
    unregister_token_provider("test-a")  # idempotent
    with pytest.raises(AuthError) as info:
        get_token_provider("test-a")
    message = str(info.value)
    assert "'test-a'" in message
    assert "'test-b'" in message  # lists what is registered
    assert "tok-b" not in message


def test_registry_rejects_bad_input(registry_names: list[str]) -> None:
    with pytest.raises(ConfigError):
        register_token_provider("", StaticTokenProvider("t"))
    with pytest.raises(ConfigError, match="not a TokenProvider"):
        register_token_provider("x", "tok-plain-string")  # type: ignore[arg-type]


def test_missing_provider_is_an_auth_error() -> None:
    with pytest.raises(AuthError, match=r"no OAuth2 token provider named 'nope'"):
        get_token_provider("nope")


async def test_a_long_description_is_cut_after_it_is_scrubbed(token_server: TokenServer) -> None:
    token_server.state.status = 400
    token_server.state.body = json.dumps(
        {"error": "invalid_client", "error_description": "x" * 185 + f" {SECRET}"}
    ).encode()

    with pytest.raises(AuthError) as info:
        await make_provider(token_server).get_token()

    assert "x [REDACTED]" in str(info.value)
    assert SECRET[:5] not in str(info.value)
