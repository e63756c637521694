"""The wire under kagura's direct transports: aiohttp, one session per event loop.

Every direct transport (one module per wire protocol) sends its requests through
:class:`HTTPClient`, which keeps the rules that do not depend on the protocol:

- **Nothing unchecked reaches the wire.** Header values with CR, LF or NUL are refused
  before anything is sent (:class:`~kagura.errors.ConfigError` for keys and extra
  headers, :class:`~kagura.errors.AuthError` for OAuth tokens); every credential sent is
  remembered by :func:`kagura.remember_secret`, so no error or log line can quote it.
- **Retries exactly as configured.** ``max_retries=N`` sends at most N+1 requests,
  whatever fails: a retry happens only before the first byte of an answer (connection
  failures, timeouts waiting for the status, 408/409/429/5xx/529), honouring
  ``Retry-After`` (seconds or an HTTP date) and ``retry-after-ms``, capped at 8 s. A
  malformed answer is an error, not a retry; aiohttp never resends a POST itself.
- **No redirects.** A 3xx to a POST is a :class:`~kagura.errors.ProviderError` naming the
  status and ``Location``.
- **Keep-alive.** :func:`finish_body` reads a stream's last bytes after its final event
  (a bounded wait), so the connection goes back to the pool.
- **Proxies** from the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), read
  once per origin; TLS verified by default (``SSL_CERT_FILE`` names other roots).

Each event loop gets its own :class:`aiohttp.ClientSession` (connections belong to
their loop), closed when the loop shuts down.

>>> import asyncio
>>> from kagura.errors import ConfigError
>>> try:
...     check_header_value("authorization", "Bearer k\\r\\nX-Injected: yes")
... except ConfigError as exc:
...     print(exc)
header 'authorization' contains CR, LF or NUL; refusing to send it
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import random
import ssl
import time
import urllib.request
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast

import aiohttp
from yarl import URL

from kagura import redact
from kagura.errors import ConfigError, LLMError, ProviderError
from kagura.llm.config import LLMConfig

__all__ = [
    "DEFAULT_CONNECTION_LIMIT",
    "MAX_BACKOFF",
    "RETRY_STATUSES",
    "BodyWatch",
    "ErrorBody",
    "ErrorMapper",
    "HTTPClient",
    "HTTPStatusError",
    "HeaderFactory",
    "check_header_value",
    "describe_error",
    "extra_headers",
    "finish_body",
    "read_body",
    "retry_delay",
]

DEFAULT_CONNECTION_LIMIT = 1024
"""Open connections per event loop (aiohttp's default of 100 would queue stream 101)."""

MAX_BACKOFF = 8.0
"""The longest wait between two attempts, in seconds, whatever ``Retry-After`` asks."""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""Statuses retried before the answer starts (529: Anthropic's "overloaded")."""

_ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error answer kept for its message
_DRAIN_WAIT = 0.25  # seconds to wait inline for a finished stream's last bytes
_DRAIN_LIMIT = 64 * 1024  # bytes read after the final event before giving up the connection
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """An answer with an error status, read before the connection was released."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


ErrorMapper = Callable[[ErrorBody], LLMError]
HeaderFactory = Callable[[], Awaitable[dict[str, str]]]


def check_header_value(name: str, value: str, *, error: type[LLMError] | None = None) -> None:
    """Refuse a header value that could end the header early (CR, LF or NUL).

    Raises :class:`~kagura.errors.ConfigError`, or ``error`` (for example
    :class:`~kagura.errors.AuthError` for a token a server handed out). The value itself
    is never quoted.
    """
    if any(c in value for c in _FORBIDDEN_IN_HEADERS):
        message = f"header {name!r} contains CR, LF or NUL; refusing to send it"
        if error is None:
            raise ConfigError(message)
        raise error(message)


def extra_headers(value: object) -> dict[str, str]:
    """The ``extra_headers={...}`` call argument, checked: names are tokens, values safe.

    Names come back lower case; a bad name or value is a :class:`~kagura.errors.ConfigError`.

    >>> extra_headers({"X-Trace": "abc"})
    {'x-trace': 'abc'}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("extra_headers must be a mapping of header names to values")
    headers: dict[str, str] = {}
    for name, header in cast(Mapping[object, object], value).items():
        if not isinstance(name, str) or not isinstance(header, str):
            raise ConfigError("extra_headers names and values must be strings")
        if not name or not all(
            c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name
        ):
            raise ConfigError(f"extra_headers has an invalid header name {name!r}")
        check_header_value(name, header)
        headers[name.lower()] = header
    return headers


def retry_delay(attempt: int, headers: Mapping[str, str] | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    The server's ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) wins;
    otherwise exponential backoff from 0.25 s with jitter. Never more than
    :data:`MAX_BACKOFF`.

    >>> retry_delay(1, {"retry-after": "2"})
    2.0
    >>> retry_delay(1, {"retry-after": "3600"})
    8.0
    >>> 0.18 <= retry_delay(1) <= 0.32
    True
    """
    if headers:
        asked = _asked_delay(headers)
        if asked is not None:
            return min(MAX_BACKOFF, max(0.0, asked))
    base = 0.25 * 2 ** (attempt - 1)
    return min(MAX_BACKOFF, base * random.uniform(0.75, 1.25))


def _asked_delay(headers: Mapping[str, str]) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - time.time()


class HTTPStatusError(Exception):
    """An error answer as the provider sent it, kept as the typed error's ``__cause__``.

    Its status, headers and body (the first 64 KiB) are redacted like every message.

    >>> answer = ErrorBody(429, "Too Many Requests", {"retry-after": "1"}, b"slow down")
    >>> HTTPStatusError(answer)
    HTTPStatusError('HTTP 429 Too Many Requests')
    """

    def __init__(self, answer: ErrorBody) -> None:
        super().__init__(f"HTTP {answer.status} {answer.reason}".rstrip())
        self.status = answer.status
        self.headers: dict[str, str] = {k: redact(v) for k, v in answer.headers.items()}
        self.body = redact(answer.body.decode("utf-8", "replace"))


def _caused(error: LLMError, cause: BaseException) -> LLMError:
    error.__cause__ = cause
    return error


class _Unsent(Exception):
    """Internal: the request could not be written (a pooled connection the server had
    closed), so the server never saw it: sending it again is not a retry."""


def _never_sent(exc: BaseException) -> bool:
    # aiohttp found the transport closing when it came to write: the peer had closed the
    # pooled connection, so not a byte of this request reached the server.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectionResetError) and "closing transport" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Retry(Exception):
    """Internal: this attempt failed before the answer started and may be retried."""

    def __init__(self, error: LLMError, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.headers = headers


class HTTPClient:
    """POSTs for the direct transports, over one aiohttp session per event loop.

    ``connection_limit`` bounds the open connections of each loop (a request beyond it
    waits for a free one, within ``request_timeout``).
    """

    def __init__(self, *, connection_limit: int = DEFAULT_CONNECTION_LIMIT) -> None:
        self._connection_limit = connection_limit
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()
        self._closers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        # A new loop: read the proxy and TLS environment again, as a new client would.
        _proxy_for_origin.cache_clear()
        _default_ssl_context.cache_clear()
        connector = aiohttp.TCPConnector(
            limit=self._connection_limit, limit_per_host=0, ssl=_default_ssl_context()
        )
        session = aiohttp.ClientSession(
            connector=connector,
            # Proxies are looked up once per origin below; trust_env would do it per
            # request in a thread, and would let ~/.netrc replace the Authorization header.
            trust_env=False,
            auto_decompress=True,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._sessions[loop] = session
        # Idle connections hold their loop, so the weak key would never die: close them
        # when the loop shuts down (asyncio.run closes every live async generator).
        closer = self._close_at_shutdown(loop, session)
        await closer.__anext__()
        self._closers[loop] = closer
        return session

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._sessions.get(loop) is session:
                del self._sessions[loop]
            await session.close()

    async def aclose(self) -> None:
        """Close the running loop's connections (a later request opens new ones)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        config: LLMConfig,
        headers: HeaderFactory,
        error_for: ErrorMapper,
    ) -> aiohttp.ClientResponse:
        """Send ``body`` with retries before the answer starts; return a 2xx response.

        ``headers`` is awaited before each attempt (an OAuth token may have been
        refreshed); ``error_for`` turns an error answer into the protocol's typed error.
        The caller owns the returned response: read it, then ``release()`` or ``close()``.
        """
        target = _url(url)
        session = await self._session()
        proxy, proxy_headers = _proxy_for_origin(target.scheme, target.host or "")
        route = _Route(
            target=target,
            proxy=proxy,
            proxy_headers=proxy_headers,
            # No sock_read: it re-arms a timer per read. The status and headers must come
            # within request_timeout (one timer per attempt); the body is watched by
            # BodyWatch.
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=config.request_timeout,  # waiting for a pooled connection included
                sock_connect=min(30.0, config.request_timeout),
            ),
            wait=config.request_timeout,
        )
        refreshed = resent = False
        attempt = 0
        while True:
            sent = await headers()
            try:
                return await _attempt(session, route, body, sent, config.model, error_for)
            except _Unsent as unsent:
                if resent:  # twice in a row: the server closes every connection; give up
                    cause = unsent.__cause__ or unsent
                    raise ProviderError(
                        f"{config.model!r}: could not send the request to {target.host}: "
                        f"{describe_error(cause)}",
                        model=config.model,
                    ) from cause
                resent = True
                continue
            except _Retry as retry:
                error = retry.error
                status = error.status_code
                if (
                    status == 401
                    and config.auth_type == "oauth2"
                    and config.oauth_provider is not None
                    and not refreshed
                ):
                    # A revoked or expired token: forget it, so the next attempt (or the
                    # next call, when no retry is left) fetches a fresh one.
                    from kagura.llm.oauth import get_token_provider

                    get_token_provider(config.oauth_provider).invalidate()
                    refreshed = True
                    delay = 0.0
                elif status is not None and status not in RETRY_STATUSES:
                    raise error from error.__cause__
                else:
                    delay = retry_delay(attempt + 1, retry.headers)
                if attempt >= config.max_retries:
                    raise error from error.__cause__
                attempt += 1
                await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class _Route:
    """Where and how one request goes: the URL, its proxy, its timeouts."""

    target: URL
    proxy: URL | None
    proxy_headers: dict[str, str] | None
    timeout: aiohttp.ClientTimeout
    wait: float  # seconds for the answer's status and headers


async def _attempt(
    session: aiohttp.ClientSession,
    route: _Route,
    body: bytes,
    headers: dict[str, str],
    model: str,
    error_for: ErrorMapper,
) -> aiohttp.ClientResponse:
    """One request on the wire: a 2xx response, or a typed error (``_Retry`` if retryable)."""
    target = route.target
    # Two turns of the loop first: a pooled connection whose server has closed it (its FIN
    # already here, not yet read) is then seen closed and not used. A request sent on it
    # would fail in a way that cannot tell "never read" from "read, then dropped", and
    # the second may not be sent again. Two, because the turn that polls the socket runs
    # this task before the socket's handler.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    try:
        async with asyncio.timeout(route.wait):
            response = await session.post(
                target,
                data=body,
                headers=headers,
                timeout=route.timeout,
                allow_redirects=False,
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
            )
    except aiohttp.ClientHttpProxyError as exc:
        raise _Retry(
            ProviderError(
                f"{model!r}: the proxy refused the connection to {target.host}: HTTP {exc.status}",
                model=model,
                status_code=exc.status,
            )
        ) from None
    except aiohttp.ClientResponseError as exc:
        # aiohttp could not parse the status line or the headers.
        raise ProviderError(
            f"{model!r}: {target.host} sent a malformed HTTP response: {redact(exc.message)[:200]}",
            model=model,
        ) from exc.__cause__
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if _never_sent(exc):
            raise _Unsent from exc
        raise _Retry(
            _caused(
                ProviderError(
                    f"{model!r}: could not reach {target.host}: {describe_error(exc)}",
                    model=model,
                ),
                exc,
            )
        ) from None
    status = response.status
    if status < 300:
        return response
    try:
        error = await _read_error(response)
    finally:
        response.release()
    if 300 <= status < 400:
        location = redact(error.headers.get("location", "(none)"))[:200]
        raise ProviderError(
            f"{model!r}: HTTP {status} redirect to {location}; kagura does not follow "
            "redirects for a POST (point api_base at the final URL)",
            model=model,
            status_code=status,
        ) from HTTPStatusError(error)
    raise _Retry(_caused(error_for(error), HTTPStatusError(error)), error.headers)


async def _read_error(response: aiohttp.ClientResponse) -> ErrorBody:
    """The status, headers and first bytes of an error answer (a cut-short body reads short)."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(5.0):
            while size < _ERROR_BODY_LIMIT:
                data = await response.content.read(_ERROR_BODY_LIMIT - size)
                if not data:
                    break
                parts.append(data)
                size += len(data)
    except (aiohttp.ClientError, TimeoutError, OSError):
        pass  # the status decides; the message is what arrived
    headers = {k.lower(): v for k, v in response.headers.items()}
    return ErrorBody(response.status, response.reason or "", headers, b"".join(parts))


class BodyWatch:
    """Guards one answer's body: a read timeout, and a connection that closes under it.

    - **Idle reads.** aiohttp's ``sock_read`` timeout re-arms a timer on asyncio's loop on
      every read, a large part of a chunk's cost (the CPU per chunk is measured in
      ``docs/en/guides/performance-streaming.md``; ``make bench``). Here the
      reader calls :meth:`touch` after each read, which only records the time, and one
      timer per body checks, when it fires, whether ``timeout`` seconds passed without a
      read: then the body fails with :class:`aiohttp.ServerTimeoutError`.
    - **Framing errors.** aiohttp's C parser (3.14) drops an error in the framing of a
      later read (a bad chunk size) without failing the body, which would then wait for
      its timeout: when the connection closes before the body ended, the body fails at
      once with :class:`aiohttp.ClientPayloadError`.

    :meth:`stop` (always, when the body is done with) cancels both.
    """

    __slots__ = ("_closed", "_content", "_loop", "_on_closed", "_timeout", "_timer", "last")

    def __init__(self, response: aiohttp.ClientResponse, timeout: float) -> None:
        self._content = response.content
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self.last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            self.last + timeout, self._check
        )
        connection = response.connection
        protocol = connection.protocol if connection is not None else None
        self._closed = protocol.closed if protocol is not None else None
        if self._closed is not None:
            self._closed.add_done_callback(self._connection_closed)
        elif protocol is None or not protocol.is_connected():
            self._fail(aiohttp.ClientPayloadError("the connection closed before the body ended"))

    def touch(self) -> None:
        """Record a read (call it after each one)."""
        self.last = self._loop.time()

    def stop(self) -> None:
        """Stop watching (the body ended, failed, or its reader went away)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed is not None:
            self._closed.remove_done_callback(self._connection_closed)
            self._closed = None

    def _check(self) -> None:
        deadline = self.last + self._timeout
        if self._loop.time() < deadline:  # a read since: wait for the rest of the time
            self._timer = self._loop.call_at(deadline, self._check)
            return
        self._timer = None
        self._fail(aiohttp.ServerTimeoutError(f"no data for {self._timeout:g} s"))

    def _connection_closed(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: asyncio would log it otherwise
        self._fail(aiohttp.ClientPayloadError("the connection closed before the body ended"))

    def _fail(self, error: Exception) -> None:
        content = self._content
        if not content.is_eof() and content.exception() is None:
            content.set_exception(error)


async def read_body(
    response: aiohttp.ClientResponse, idle: float, *, limit: int = 256 * 1024 * 1024
) -> bytes:
    """A whole (non-streamed) body, each read within ``idle`` seconds of the last.

    A body over ``limit`` bytes fails with :class:`aiohttp.ClientPayloadError`.
    """
    watch = BodyWatch(response, idle)
    parts: list[bytes] = []
    size = 0
    try:
        while data := await response.content.readany():
            watch.touch()
            size += len(data)
            if size > limit:
                raise aiohttp.ClientPayloadError(f"the answer is over {limit} bytes")
            parts.append(data)
    finally:
        watch.stop()
    return b"".join(parts)


async def finish_body(response: aiohttp.ClientResponse) -> None:
    """Read what follows a stream's final event, so its connection can be reused.

    A server sends the end of the body (the chunked terminator) with or just after the
    last event. Waits at most 0.25 s and reads at most 64 KiB; past that the connection
    is closed instead of being reused.
    """
    content = response.content
    read = 0
    try:
        async with asyncio.timeout(_DRAIN_WAIT):
            while not content.at_eof() and read <= _DRAIN_LIMIT:
                data = await content.readany()
                if not data:
                    break
                read += len(data)
    except (aiohttp.ClientError, TimeoutError, OSError):
        response.close()
        return
    if content.at_eof():
        response.release()
    else:
        response.close()


def describe_error(exc: BaseException) -> str:
    """A network error in a few words (its message redacted), for kagura's own messages."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    detail = str(exc)
    return f"{type(exc).__name__}: {redact(detail)[:200]}" if detail else type(exc).__name__


@functools.lru_cache(maxsize=64)
def _url(url: str) -> URL:
    return URL(url)


@functools.lru_cache(maxsize=256)
def _proxy_for_origin(scheme: str, host: str) -> tuple[URL | None, dict[str, str] | None]:
    """The proxy the environment names for an origin, and its Proxy-Authorization.

    Read once per origin (scanning ``os.environ`` costs more than the rest of a request).
    """
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None, None
    url = URL(proxy if "://" in proxy else f"http://{proxy}")
    if url.user is None:
        return url, None
    auth = aiohttp.BasicAuth(url.user, url.password or "")
    return url.with_user(None), {"Proxy-Authorization": auth.encode()}


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Verified TLS with the system's roots (SSL_CERT_FILE / SSL_CERT_DIR name others).
    return ssl.create_default_context()
