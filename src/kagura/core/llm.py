"""call_llm (non-streaming, cached) and the request preparation every call shares.

>>> import asyncio
>>> from kagura.core.llm import LLMConfig, call_llm
>>> asyncio.run(call_llm("Hello there", LLMConfig(model="kagura/echo")))
'Hello there'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kagura.core.cache import cache_key, get_llm_cache
from kagura.core.config import LLMConfig
from kagura.core.redact import redact_error, redact_url
from kagura.core.transports.base import ChatRequest, Transport
from kagura.errors import ConfigError, LLMError

__all__ = ["LLMConfig", "call_llm", "prepare_request", "resolve_transport", "to_messages"]

Messages = Sequence[Mapping[str, Any]]

# Settings that belong to LLMConfig; passing them as call kwargs is ambiguous.
_RESERVED = frozenset(LLMConfig.model_fields) | {"messages", "stream", "stream_options"}


def to_messages(prompt_or_messages: str | Messages) -> list[dict[str, Any]]:
    """A prompt string becomes one user message; a message list is checked and copied."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(prompt_or_messages):
        if not isinstance(message, Mapping) or "role" not in message:  # pyright: ignore[reportUnnecessaryIsInstance] (runtime check of user input)
            raise ConfigError(
                f"message {i} must be a mapping with a 'role', got {type(message).__name__}"
            )
        messages.append(dict(message))
    if not messages:
        raise ConfigError("messages must not be empty")
    return messages


def prepare_request(
    prompt_or_messages: str | Messages, config: LLMConfig | None, kwargs: Mapping[str, Any]
) -> ChatRequest:
    """Check the call's arguments and build the request."""
    colliding = sorted(k for k in kwargs if k in _RESERVED)
    if colliding:
        names = ", ".join(colliding)
        raise ConfigError(
            f"{names} must be set on LLMConfig, not passed as a keyword argument "
            f"(e.g. LLMConfig({colliding[0]}=...))"
        )
    return ChatRequest(
        messages=to_messages(prompt_or_messages), config=config or LLMConfig(), params=dict(kwargs)
    )


_transports: dict[str, Transport] = {}


def _transport(name: str) -> Transport:
    transport = _transports.get(name)
    if transport is None:
        if name == "litellm":
            from kagura.core.transports.litellm import LiteLLMTransport

            transport = LiteLLMTransport()
        elif name == "direct":
            from kagura.core.transports.direct import DirectTransport

            transport = DirectTransport()
        else:
            from kagura.core.transports.offline_direct import OfflineTransport

            transport = OfflineTransport()
        _transports[name] = transport
    return transport


def resolve_transport(config: LLMConfig) -> Transport:
    """The transport for a config.

    ``transport="litellm"`` or ``"direct"`` forces one. ``"auto"``: offline
    models run in process; OpenAI-compatible models (``openai/...``, OpenAI model
    names, or any model without a provider prefix when ``api_base`` is set) take
    the direct httpx path; every other provider goes through litellm.
    """
    if config.transport != "auto":
        return _transport(config.transport)
    if config.is_offline:
        return _transport("offline")
    from kagura.core.transports.direct import is_openai_compatible

    return _transport(
        "direct" if is_openai_compatible(config.model, config.api_base) else "litellm"
    )


def _cache_params(request: ChatRequest) -> dict[str, Any]:
    config = request.config
    return {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        # The endpoint, never its credentials (user:password@, ?key=...).
        "api_base": None if config.api_base is None else redact_url(config.api_base),
        **request.params,
    }


async def call_llm(
    prompt_or_messages: str | Messages, config: LLMConfig | None = None, **kwargs: Any
) -> str:
    """Ask the model once and return its whole answer.

    Answers are cached in :func:`~kagura.core.cache.get_llm_cache` (keyed on
    messages, model and sampling parameters, never credentials) unless
    ``config.enable_cache`` is False or the call passes ``tools``. Concurrent
    identical calls share one request. Extra ``kwargs`` go to the provider.
    """
    request = prepare_request(prompt_or_messages, config, kwargs)
    transport = resolve_transport(request.config)

    async def compute() -> str:
        try:
            return (await transport.complete(request)).text
        except LLMError as exc:
            redact_error(exc)  # no credential a transport quoted leaves this layer
            raise

    if not request.config.enable_cache or "tools" in request.params:
        return await compute()
    key = cache_key(
        messages=request.messages, model=request.config.model, params=_cache_params(request)
    )
    return await get_llm_cache().get_or_compute(key, compute, ttl=request.config.cache_ttl)
