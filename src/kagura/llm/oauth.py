"""OAuth2 token providers: bearer tokens for providers that do not take a static API key.

A :class:`TokenProvider` hands out a bearer token as a :class:`~pydantic.SecretStr`,
asynchronously (``await get_token()``) or synchronously (``get_token_sync()``, what
``LLMConfig.get_api_key()`` calls), and forgets it on ``invalidate()`` (after a 401).
:class:`ClientCredentialsProvider` implements the RFC 6749 §4.4 client-credentials
grant with caching, early refresh and one shared fetch for concurrent callers;
:class:`StaticTokenProvider` wraps a token you already hold. Providers can be
registered under a name, so configuration can refer to them by that name.

Secrets and tokens never appear in messages, reprs or logs: the client secret (and
the Basic credential made of it), the credentials in ``token_url`` and every token
fetched or given are remembered (:func:`kagura.remember_secret`), and
whatever the token endpoint answers is passed through :func:`kagura.redact`
before it reaches an :class:`~kagura.errors.AuthError`:

>>> import asyncio
>>> provider = ClientCredentialsProvider(
...     "https://auth.example.com/oauth/token", "my-client", "s3cr3t", scope="llm.read"
... )
>>> provider  # doctest: +NORMALIZE_WHITESPACE
ClientCredentialsProvider(token_url='https://auth.example.com/oauth/token',
    client_id='my-client', client_secret=SecretStr('**********'))
>>> register_token_provider("static", StaticTokenProvider("tok-123"))
>>> asyncio.run(get_token_provider("static").get_token())
SecretStr('**********')
>>> get_token_provider("static").get_token_sync().get_secret_value()
'tok-123'
>>> unregister_token_provider("static")
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, runtime_checkable
from urllib.parse import quote_plus

import httpx
from pydantic import SecretStr

from kagura._redact import redact, redact_error, remember_secret, secrets_in_url
from kagura.errors import AuthError, ConfigError

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "ClientCredentialsProvider",
    "StaticTokenProvider",
    "TokenProvider",
    "get_token_provider",
    "register_token_provider",
    "unregister_token_provider",
]

_log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME = 300.0
"""Seconds a token is cached when the server's response carries no ``expires_in``."""

AuthMethod = Literal["client_secret_post", "client_secret_basic"]
_AUTH_METHODS: frozenset[str] = frozenset({"client_secret_post", "client_secret_basic"})


@runtime_checkable
class TokenProvider(Protocol):
    """Anything that can hand out a bearer token (as a ``SecretStr``) and forget it."""

    async def get_token(self) -> SecretStr:
        """Return a valid token, fetching one if none is cached."""
        ...

    def get_token_sync(self) -> SecretStr:
        """Blocking variant of :meth:`get_token`, for synchronous callers."""
        ...

    def invalidate(self) -> None:
        """Drop any cached token, so the next call fetches a fresh one."""
        ...


class StaticTokenProvider:
    """A provider for a token you already hold; ``invalidate()`` does nothing."""

    def __init__(self, token: SecretStr | str) -> None:
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        if not secret.get_secret_value():
            raise ConfigError("StaticTokenProvider needs a non-empty token")
        remember_secret(secret.get_secret_value())
        self._token = secret

    async def get_token(self) -> SecretStr:
        """Return the token."""
        return self._token

    def get_token_sync(self) -> SecretStr:
        """Return the token."""
        return self._token

    def invalidate(self) -> None:
        """Do nothing: a static token cannot be refreshed."""

    def __repr__(self) -> str:
        return f"StaticTokenProvider(token={self._token!r})"


@dataclass(frozen=True, slots=True)
class _CachedToken:
    value: SecretStr
    refresh_at: float  # on the provider's clock


class ClientCredentialsProvider:
    """OAuth2 client-credentials grant (RFC 6749 §4.4) with caching and early refresh.

    The token is cached until ``expires_in - refresh_margin`` seconds after the
    request was sent (half of ``expires_in`` when that is shorter than the margin;
    :data:`DEFAULT_TOKEN_LIFETIME` when the server sends no ``expires_in``).
    Concurrent async callers on one event loop share one request, and so do
    concurrent threads calling :meth:`get_token_sync`; an async and a sync caller
    racing may each send one. Every request has a ``timeout`` (seconds).

    ``auth_method="client_secret_post"`` sends the credentials in the form body;
    ``"client_secret_basic"`` sends them as HTTP Basic, form-urlencoded first as
    RFC 6749 §2.3.1 requires. Every failure raises :class:`~kagura.errors.AuthError`
    naming the provider, the token URL's host and the OAuth error code, with the
    original exception as ``__cause__``; the secret and the token are never in it.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr | str,
        *,
        scope: str | Sequence[str] | None = None,
        audience: str | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        auth_method: AuthMethod = "client_secret_post",
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        try:
            url = httpx.URL(token_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigError(f"token_url is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError("token_url must be an absolute http:// or https:// URL")
        if not client_id:
            raise ConfigError("client_id must not be empty")
        if auth_method not in _AUTH_METHODS:
            raise ConfigError(
                f"auth_method must be 'client_secret_post' or 'client_secret_basic', "
                f"not {auth_method!r}"
            )
        if refresh_margin < 0:
            raise ConfigError("refresh_margin must be >= 0")
        if timeout <= 0:
            raise ConfigError("timeout must be > 0")
        self._url = url
        self.token_url = token_url
        self.client_id = client_id
        self._secret = (
            client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        )
        if not self._secret.get_secret_value():
            raise ConfigError("client_secret must not be empty")
        remember_secret(self._secret.get_secret_value())
        remember_secret(self._basic_credential())
        for secret in secrets_in_url(token_url):
            remember_secret(secret)
        self.scope = scope if scope is None or isinstance(scope, str) else " ".join(scope)
        self.audience = audience
        self.refresh_margin = float(refresh_margin)
        self.timeout = float(timeout)
        self.auth_method: AuthMethod = auth_method
        self.name = name or f"client_credentials:{client_id}"
        self._clock = clock
        self._token: _CachedToken | None = None
        self._state_lock = threading.Lock()  # guards _token and _loop_locks, never held on I/O
        self._sync_fetch_lock = threading.Lock()  # one sync fetch at a time
        # asyncio.Lock binds to the loop it first waits on, so keep one per loop.
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(token_url={self._display_url()!r}, "
            f"client_id={self.client_id!r}, client_secret={self._secret!r})"
        )

    # -- public API ---------------------------------------------------------

    async def get_token(self) -> SecretStr:
        """Return a cached token, or fetch one (one request per loop at a time)."""
        token = self._cached()
        if token is not None:
            return token
        async with self._loop_lock():
            token = self._cached()
            if token is not None:
                return token
            started = self._clock()
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                try:
                    response = await client.post(
                        self._url, data=self._form(), headers=self._headers()
                    )
                except httpx.HTTPError as exc:
                    raise self._network_error(exc) from exc
            return self._store(response, started)

    def get_token_sync(self) -> SecretStr:
        """Blocking :meth:`get_token`: one request at a time across threads."""
        token = self._cached()
        if token is not None:
            return token
        with self._sync_fetch_lock:
            token = self._cached()
            if token is not None:
                return token
            started = self._clock()
            with httpx.Client(timeout=self.timeout) as client:
                try:
                    response = client.post(self._url, data=self._form(), headers=self._headers())
                except httpx.HTTPError as exc:
                    raise self._network_error(exc) from exc
            return self._store(response, started)

    def invalidate(self) -> None:
        """Drop the cached token (for example after the LLM provider answered 401)."""
        with self._state_lock:
            self._token = None

    # -- internals ----------------------------------------------------------

    def _cached(self) -> SecretStr | None:
        with self._state_lock:
            token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._state_lock:
            lock = self._loop_locks.get(loop)
            if lock is None:
                lock = asyncio.Lock()
                self._loop_locks[loop] = lock
            return lock

    def _form(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        if self.auth_method == "client_secret_post":
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret.get_secret_value()
        return form

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            headers["Authorization"] = "Basic " + self._basic_credential()
        return headers

    def _basic_credential(self) -> str:
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self._secret.get_secret_value())}"
        return base64.b64encode(pair.encode()).decode("ascii")

    def _store(self, response: httpx.Response, started: float) -> SecretStr:
        payload = self._parse(response)
        remember_secret(payload["access_token"])
        refresh_token = payload.get("refresh_token")
        if isinstance(refresh_token, str):
            remember_secret(refresh_token)
        token = SecretStr(payload["access_token"])
        lifetime = _lifetime(payload.get("expires_in"), self.refresh_margin)
        with self._state_lock:
            self._token = _CachedToken(token, started + lifetime)
        _log.debug(
            "OAuth2 provider %r got a token from %s, cached for %.0f s",
            self.name,
            self._url.host,
            lifetime,
        )
        return token

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        decode_error: ValueError | None = None
        try:
            body: object = json.loads(response.content)
        except ValueError as exc:
            body, decode_error = None, exc
        fields = _json_object(body)
        if response.is_error:
            try:
                response.raise_for_status()
            except httpx.HTTPStatusError as exc:
                raise self._error(
                    f"HTTP {response.status_code}", fields, response.status_code
                ) from redact_error(exc)
        if decode_error is not None:
            raise self._error("the response is not JSON", {}, response.status_code) from (
                redact_error(decode_error)
            )
        access_token = fields.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise self._error("the response has no access_token", fields, response.status_code)
        return fields

    def _error(self, what: str, fields: Mapping[str, Any], status: int | None) -> AuthError:
        message = f"{self._describe()} failed: {what}"
        code = _oauth_field(fields.get("error"))
        if code:
            message += f", error {code!r}"
        description = _oauth_field(fields.get("error_description"))
        if description:
            message += f" ({description})"
        return AuthError(message, status_code=status)

    def _network_error(self, exc: httpx.HTTPError) -> AuthError:
        redact_error(exc)  # it becomes the __cause__
        if isinstance(exc, httpx.TimeoutException):
            what = f"no answer within {self.timeout:g} s ({type(exc).__name__})"
        else:
            what = f"{type(exc).__name__}: {exc}"  # scrubbed just above
        return AuthError(f"{self._describe()} failed: {what}")

    def _describe(self) -> str:
        return (
            f"OAuth2 provider {self.name!r} (client_id {self.client_id!r}): "
            f"token request to {self._url.host}"
        )

    def _display_url(self) -> str:
        """The token URL without any userinfo (which could hold a password)."""
        if self._url.userinfo:
            return str(self._url.copy_with(username=None, password=None))
        return self.token_url


def _json_object(body: object) -> dict[str, Any]:
    """``body`` if it is a JSON object, else ``{}``."""
    if isinstance(body, dict):
        return cast("dict[str, Any]", body)
    return {}


def _lifetime(expires_in: Any, margin: float) -> float:
    """Seconds to cache a token the server said lives ``expires_in`` seconds."""
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME
    if not seconds > 0 or seconds == float("inf"):
        return DEFAULT_TOKEN_LIFETIME
    return seconds - margin if seconds > margin else seconds / 2


def _oauth_field(value: Any) -> str:
    """An OAuth error code/description as redacted printable text of bounded length, or ``""``.

    Redacted before it is cut, so no piece of a secret the server echoed survives.
    """
    if not isinstance(value, str):
        return ""
    text = redact("".join(ch for ch in value if ch.isprintable()))
    return text if len(text) <= 200 else text[:200] + "..."


_registry: dict[str, TokenProvider] = {}
_registry_lock = threading.Lock()


def register_token_provider(name: str, provider: TokenProvider) -> None:
    """Register ``provider`` under ``name``, replacing any provider of that name."""
    if not name:
        raise ConfigError("a token provider needs a non-empty name")
    if not isinstance(provider, TokenProvider):  # pyright: ignore[reportUnnecessaryIsInstance] -- callers may not be type-checked
        raise ConfigError(
            f"{type(provider).__name__} is not a TokenProvider "
            "(it needs get_token, get_token_sync and invalidate)"
        )
    with _registry_lock:
        _registry[name] = provider


def get_token_provider(name: str) -> TokenProvider:
    """Return the provider registered as ``name``; :class:`AuthError` if there is none."""
    with _registry_lock:
        provider = _registry.get(name)
        known = sorted(_registry)
    if provider is None:
        listed = ", ".join(repr(n) for n in known) if known else "none"
        raise AuthError(
            f"no OAuth2 token provider named {name!r} is registered (registered: {listed})"
        )
    return provider


def unregister_token_provider(name: str) -> None:
    """Forget the provider registered as ``name`` (nothing happens if there is none)."""
    with _registry_lock:
        _registry.pop(name, None)
