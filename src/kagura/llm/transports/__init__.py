"""Transports turn a chat request into a stream of typed events; this is their registry.

One module per wire protocol: :mod:`~kagura.llm.transports.openai` (OpenAI-compatible,
direct, on aiohttp), :mod:`~kagura.llm.transports.litellm` (every other provider),
:mod:`~kagura.llm.transports.offline_direct` (the offline models, in process); under them
:mod:`~kagura.llm.transports.http` (the wire) and :mod:`~kagura.llm.transports.sse`.

>>> from kagura.llm.config import LLMConfig
>>> resolve_transport(LLMConfig(model="kagura/echo")).name
'offline'
>>> resolve_transport(LLMConfig(model="gpt-4o-mini")).name
'direct'
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
        else:
            from kagura.llm.transports.offline_direct import OfflineTransport

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
    from kagura.llm.transports.openai import is_openai_compatible

    return _transport(
        "direct" if is_openai_compatible(config.model, config.api_base) else "litellm"
    )
