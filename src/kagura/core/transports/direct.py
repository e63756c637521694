"""The direct transport: OpenAI-compatible Chat Completions over httpx, no litellm.

Used automatically for ``openai/...`` models, OpenAI model names (``gpt-4o``...)
and any ``api_base`` that speaks the OpenAI protocol (Ollama, vLLM, proxies);
``LLMConfig(transport="litellm")`` opts out. It produces the same events, the
same typed errors and the same cancellation behaviour as the litellm
transport, at a fraction of the CPU per chunk: SSE lines are parsed by hand and
JSON by ``pydantic_core.from_json`` (about 2.4 times faster than ``json.loads``
here).

Retries: a request that fails before any byte of the answer (429, 5xx,
connection errors) is retried ``config.max_retries`` times with exponential
backoff, honouring ``Retry-After`` up to 8 s. A stream is never retried once
it has started.
"""

from __future__ import annotations

import asyncio
import functools
import os
import urllib.request
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Mapping
from typing import Any, cast

import httpx
import pydantic_core

from kagura.core.events import (
    Completion,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from kagura.core.redact import redact
from kagura.core.transports.base import ChatRequest, error_for_status
from kagura.core.transports.http11 import HTTP11Transport
from kagura.errors import (
    LLMError,
    MissingAPIKeyError,
    ProviderError,
    StreamError,
)

__all__ = [
    "OPENAI_API_BASE",
    "DirectTransport",
    "events_from_chunk",
    "is_openai_compatible",
    "sse_data",
]

OPENAI_API_BASE = "https://api.openai.com/v1"
_OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "ft:gpt-")
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_BACKOFF = 8.0
_USER_AGENT = "kagura (direct transport)"


def is_openai_compatible(model: str, api_base: str | None) -> bool:
    """True when the direct transport can serve this model (see the module doc)."""
    provider, slash, _ = model.partition("/")
    if slash:
        return provider == "openai"
    return api_base is not None or model.startswith(_OPENAI_PREFIXES)


def _model_name(model: str) -> str:
    return model.removeprefix("openai/")


class DirectTransport:
    """Sends requests to an OpenAI-compatible ``/chat/completions``.

    Requests go straight to an :class:`~kagura.core.transports.http11.HTTP11Transport`
    (no cookies, redirects or per-request URL merging to pay for), or through an
    :class:`httpx.AsyncClient` when the environment names a proxy for the URL.
    """

    name = "direct"

    def __init__(self) -> None:
        # One pool and one proxy client per event loop: connections belong to their loop.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HTTP11Transport] = (
            weakref.WeakKeyDictionary()
        )
        self._proxy_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncClient
        ] = weakref.WeakKeyDictionary()
        self._closers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, pool: HTTP11Transport
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._pools.get(loop) is pool:
                await self.aclose()  # the loop's pool and proxy client
            else:
                await pool.aclose()  # replaced after an aclose(): idempotent

    async def _send_once(self, request: httpx.Request) -> httpx.Response:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            # A new loop: read the proxy environment again, as a new client would.
            _proxied_origin.cache_clear()
            pool = self._pools[loop] = HTTP11Transport(max_keepalive=100)
            # Idle connections hold their loop, so the weak key would never die: close them
            # when the loop shuts down (asyncio.run closes every live async generator).
            closer = self._close_at_shutdown(loop, pool)
            await closer.__anext__()
            self._closers[loop] = closer
        if _proxied(request.url):
            client = self._proxy_clients.get(loop)
            if client is None or client.is_closed:
                # httpx's own transports: it reads proxies from the environment only
                # when it builds them itself.
                client = httpx.AsyncClient(trust_env=True)
                self._proxy_clients[loop] = client
            return await client.send(request, stream=True)
        response = await pool.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        """Close the connections of the running loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.aclose()
        client = self._proxy_clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    async def _prepare(
        self, request: ChatRequest, *, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        config = request.config
        api_key = await config.aget_api_key()
        if api_key is None and config.api_base is None:
            api_key = os.environ.get("OPENAI_API_KEY")
            if not api_key:
                raise MissingAPIKeyError(
                    f"no API key for model {config.model!r}: set the OPENAI_API_KEY "
                    "environment variable or pass LLMConfig(api_key=...)",
                    env_var="OPENAI_API_KEY",
                    model=config.model,
                )
        url = (config.api_base or OPENAI_API_BASE).rstrip("/") + "/chat/completions"
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "user-agent": _USER_AGENT,
        }
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        body: dict[str, Any] = {
            "model": _model_name(config.model),
            "messages": list(request.messages),
            "temperature": config.temperature,
            "top_p": config.top_p,
            "stream": stream,
        }
        if config.max_tokens is not None:
            body["max_tokens"] = config.max_tokens
        if stream:
            body["stream_options"] = {"include_usage": True}
        body.update(request.params)
        return url, headers, body

    async def _send(self, request: ChatRequest, *, stream: bool) -> httpx.Response:
        """Send with retries before the answer starts; return an open, successful response."""
        config = request.config
        url, headers, body = await self._prepare(request, stream=stream)
        timeout = {
            "connect": min(30.0, config.request_timeout),
            "read": config.request_timeout,
            "write": config.request_timeout,
            "pool": config.request_timeout,
        }
        content = pydantic_core.to_json(body)
        attempt = 0
        while True:
            http_request = httpx.Request(
                "POST",
                _parsed_url(url),
                headers=headers,
                content=content,
                extensions={"timeout": timeout},
            )
            try:
                response = await self._send_once(http_request)
            except httpx.TransportError as exc:
                if attempt < config.max_retries:
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt, None))
                    continue
                raise ProviderError(
                    f"{config.model!r}: could not reach {_host(url)}: {type(exc).__name__}",
                    model=config.model,
                ) from exc
            if response.status_code < 400:
                return response
            try:
                await response.aread()
            except httpx.HTTPError:  # the status decides; a cut-short error body reads as empty
                await response.aclose()
                response = httpx.Response(
                    response.status_code, headers=response.headers, request=http_request
                )
            finally:
                await response.aclose()
            if response.status_code in _RETRY_STATUSES and attempt < config.max_retries:
                attempt += 1
                await asyncio.sleep(_backoff(attempt, response.headers.get("retry-after")))
                continue
            cause = httpx.HTTPStatusError(
                f"HTTP {response.status_code}", request=http_request, response=response
            )
            raise _status_error(response, config.model) from cause

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield one streamed answer's events; closing this generator closes the HTTP stream."""
        model = request.config.model
        response = await self._send(request, stream=True)
        finished = False
        try:
            # The body as it comes off the wire (one async generator less per stream and
            # per chunk) unless it is content-encoded, which only a proxy path asks for.
            body: AsyncIterable[bytes] = (
                response.aiter_bytes()
                if "content-encoding" in response.headers
                else cast(httpx.AsyncByteStream, response.stream)
            )
            async for data in sse_data(body):
                if data == b"[DONE]":
                    finished = True
                    break
                try:
                    chunk: Any = pydantic_core.from_json(data)
                except ValueError as exc:
                    shown = redact(data[:80].decode("utf-8", "replace"))
                    raise StreamError(
                        f"stream from {model!r} sent malformed data: {shown!r}", model=model
                    ) from exc
                if not isinstance(chunk, dict):
                    raise StreamError(f"stream from {model!r} sent a non-object chunk", model=model)
                payload = cast(dict[str, Any], chunk)
                if "error" in payload:
                    raise StreamError(
                        f"stream from {model!r} failed mid-stream: {_error_message(payload)}",
                        model=model,
                    )
                for event in events_from_chunk(payload):
                    if isinstance(event, Finish):
                        finished = True
                    yield event
        except httpx.HTTPError as exc:
            raise StreamError(
                f"stream from {model!r} failed mid-stream: {type(exc).__name__}", model=model
            ) from exc
        finally:
            await response.aclose()
        if not finished:
            raise StreamError(f"stream from {model!r} ended before it finished", model=model)

    async def complete(self, request: ChatRequest) -> Completion:
        """One whole answer (no streaming)."""
        model = request.config.model
        response = await self._send(request, stream=False)
        try:
            raw = await response.aread()
        except httpx.HTTPError as exc:
            raise ProviderError(f"{model!r}: reading the answer failed", model=model) from exc
        finally:
            await response.aclose()
        try:
            payload: Any = pydantic_core.from_json(raw)
            choice: dict[str, Any] = payload["choices"][0]
            message: dict[str, Any] = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderError(
                f"{model!r}: the answer is not a chat completion", model=model
            ) from exc
        raw_calls: list[dict[str, Any]] = message.get("tool_calls") or []
        calls = tuple(
            ToolCall(
                id=str(c.get("id") or ""),
                name=str(c.get("function", {}).get("name") or ""),
                arguments=str(c.get("function", {}).get("arguments") or ""),
            )
            for c in raw_calls
        )
        return Completion(
            text=message.get("content") or "",
            tool_calls=calls,
            usage=Usage.from_provider(payload.get("usage")),
            finish_reason=choice.get("finish_reason"),
        )


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The payloads of an SSE byte stream's ``data:`` lines.

    Lines end at LF (a CR before it is dropped), as the SSE format says; text
    is never split at other Unicode line breaks (U+2028, U+0085), which may
    appear inside the JSON. Comments, ``event:`` and blank lines are skipped.
    """
    pending = b""
    async for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            continue
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if pending.startswith(b"data:"):
        yield pending[5:].strip()


def events_from_chunk(chunk: Mapping[str, Any]) -> Iterator[StreamEvent]:
    """The events of one ``chat.completion.chunk`` object (choice 0 only)."""
    finish: str | None = None
    choices: list[dict[str, Any]] = chunk.get("choices") or []
    for choice in choices:
        if choice.get("index", 0) != 0:
            continue
        delta: dict[str, Any] = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            yield TextDelta(content)
        tool_calls: list[dict[str, Any]] = delta.get("tool_calls") or []
        for tc in tool_calls:
            function: dict[str, Any] = tc.get("function") or {}
            yield ToolCallDelta(
                index=int(tc.get("index") or 0),
                id=tc.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        finish = choice.get("finish_reason") or finish
    usage = Usage.from_provider(chunk.get("usage"))
    if usage is not None:
        yield usage
    if finish is not None:
        yield Finish(finish)


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(_MAX_BACKOFF, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return min(_MAX_BACKOFF, 0.25 * 2 ** (attempt - 1))


def _host(url: str) -> str:
    return _parsed_url(url).host


@functools.lru_cache(maxsize=64)
def _parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)


def _proxied(url: httpx.URL) -> bool:
    """True when the environment names a proxy for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...)."""
    return _proxied_origin(url.scheme, url.host)


@functools.lru_cache(maxsize=256)
def _proxied_origin(scheme: str, host: str) -> bool:
    # Read once per origin, as an httpx.AsyncClient reads the environment once: scanning
    # os.environ costs more than the rest of a request.
    proxies = urllib.request.getproxies()
    if scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(host)


def _error_message(payload: Mapping[str, Any]) -> str:
    error: Any = payload.get("error")
    if isinstance(error, dict):
        message = cast(dict[str, Any], error).get("message") or "unknown error"
    else:
        message = str(error or "unknown error")
    return redact(str(message))[:300]


def _status_error(response: httpx.Response, model: str) -> LLMError:
    status = response.status_code
    detail, code = "", ""
    try:
        parsed: Any = pydantic_core.from_json(response.content)
    except ValueError:
        detail = redact(response.text[:200])
    else:
        if isinstance(parsed, dict):
            payload = cast(dict[str, Any], parsed)
            detail = _error_message(payload)
            error: Any = payload.get("error")
            if isinstance(error, dict):
                code = str(cast(dict[str, Any], error).get("code") or "")
    if code == "model_not_found":
        status = 404  # some servers answer 400 for an unknown model
    return error_for_status(status, model=model, detail=detail or response.reason_phrase)
