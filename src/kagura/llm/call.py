"""call_llm: one whole answer, cached.

>>> import asyncio
>>> from kagura import LLMConfig, call_llm
>>> asyncio.run(call_llm("Hello there", LLMConfig(model="kagura/echo")))
'Hello there'
"""

from __future__ import annotations

from typing import Any

from kagura._redact import redact_error, redact_url
from kagura.errors import LLMError
from kagura.llm import observe
from kagura.llm.cache import cache_key, get_llm_cache
from kagura.llm.config import LLMConfig
from kagura.llm.request import ChatRequest, Messages, prepare_request
from kagura.llm.transports import resolve_transport

__all__ = ["call_llm"]


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

    Answers are cached in :func:`~kagura.llm.cache.get_llm_cache` (keyed on
    messages, model and sampling parameters, never credentials) unless
    ``config.enable_cache`` is False or the call passes ``tools``. Concurrent
    identical calls share one request. Extra ``kwargs`` go to the provider.
    """
    request = prepare_request(prompt_or_messages, config, kwargs)
    transport = resolve_transport(request.config)

    async def compute() -> str:
        try:
            completion, _ = await observe.complete(transport, request)  # observed, if asked
            return completion.text
        except LLMError as exc:
            redact_error(exc)  # no credential a transport quoted leaves this layer
            raise

    if not request.config.enable_cache or "tools" in request.params:
        return await compute()
    key = cache_key(
        messages=request.messages, model=request.config.model, params=_cache_params(request)
    )
    return await get_llm_cache().get_or_compute(key, compute, ttl=request.config.cache_ttl)
