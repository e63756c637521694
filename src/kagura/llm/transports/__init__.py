"""Transports turn a chat request into a stream of typed events; this is their registry.

One module per wire protocol: :mod:`~kagura.llm.transports.openai` (OpenAI-compatible,
direct, on aiohttp), :mod:`~kagura.llm.transports.anthropic` (Anthropic Messages),
:mod:`~kagura.llm.transports.gemini` (Gemini ``generateContent``),
:mod:`~kagura.llm.transports.litellm` (every other provider),
:mod:`~kagura.llm.transports.offline_direct` (the offline models, in process); under them
:mod:`~kagura.llm.transports.http` (the wire) and :mod:`~kagura.llm.transports.sse`.

>>> from kagura.llm.config import LLMConfig
>>> resolve_transport(LLMConfig(model="kagura/echo")).name
'offline'
>>> resolve_transport(LLMConfig(model="gpt-4o-mini")).name
'direct'
>>> resolve_transport(LLMConfig(model="anthropic/claude-sonnet-4-5")).name
'anthropic'
>>> resolve_transport(LLMConfig(model="gemini/gemini-2.5-flash", transport="litellm")).name
'litellm'
"""

from __future__ import annotations

from kagura.llm.config import LLMConfig
from kagura.llm.transports.base import Transport

__all__ = ["Transport", "resolve_transport"]

_transports: dict[str, Transport] = {}


def _transport(name: str) -> Transport:
    transport = _transports.get(name)
    if transport is None:
        if name == "litellm":
            from kagura.llm.transports.litellm import LiteLLMTransport

            transport = LiteLLMTransport()
        elif name == "direct":
            from kagura.llm.transports.openai import DirectTransport

            transport = DirectTransport()
        elif name == "anthropic":
            from kagura.llm.transports.anthropic import AnthropicTransport

            transport = AnthropicTransport()
        elif name == "gemini":
            from kagura.llm.transports.gemini import GeminiTransport

            transport = GeminiTransport()
        else:
            from kagura.llm.transports.offline_direct import OfflineTransport

            transport = OfflineTransport()
        _transports[name] = transport
    return transport


def resolve_transport(config: LLMConfig) -> Transport:
    """The transport for a config.

    ``"auto"`` (the default): offline models run in process; ``anthropic/...`` models
    take the direct Anthropic Messages transport, ``gemini/...`` the direct Gemini
    one; OpenAI-compatible models (``openai/...``, OpenAI model names, or any model
    without a provider prefix when ``api_base`` is set) the direct OpenAI one; every
    other provider goes through litellm. ``transport="litellm"`` forces litellm;
    ``"direct"`` forces kagura's own transport for the model's protocol (OpenAI's
    for a prefix kagura has no transport of its own for).
    """
    if config.transport == "litellm":
        return _transport("litellm")
    if config.is_offline and config.transport == "auto":
        return _transport("offline")
    provider, slash, _ = config.model.partition("/")
    if slash and provider in _OWN_PROTOCOLS:
        return _transport(provider)
    if config.transport == "direct":
        return _transport("direct")
    from kagura.llm.transports.openai import is_openai_compatible

    return _transport(
        "direct" if is_openai_compatible(config.model, config.api_base) else "litellm"
    )


_OWN_PROTOCOLS = frozenset({"anthropic", "gemini"})
