"""kagura's offline models as a litellm custom provider named ``kagura``.

Registered by :func:`kagura.llm.transports._litellm.load_litellm`, so ``kagura/echo`` and
``kagura/replay`` run through litellm's full streaming path. litellm's classes
are untyped, so the handler class is built at registration time from the typed
functions below.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any

from kagura.events import Finish, TextDelta, Usage
from kagura.llm.transports.offline import OFFLINE_PARAMS, offline_events

__all__ = ["register_offline_provider"]


def _params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The offline-model parameters among litellm's keyword arguments."""
    merged: dict[str, Any] = {**(kwargs.get("optional_params") or {})}
    extra: dict[str, Any] = merged.get("extra_body") or {}
    merged.update(extra)
    return {k: v for k, v in merged.items() if k in OFFLINE_PARAMS}


def _usage_block(event: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.total_tokens,
    }


async def _astreaming(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
    """litellm's ``CustomLLM.astreaming``: yields ``GenericStreamingChunk`` dicts."""
    model: str = kwargs["model"]
    usage: dict[str, int] | None = None
    finish = "stop"
    async for event in offline_events(f"kagura/{model}", kwargs["messages"], _params(kwargs)):
        if isinstance(event, TextDelta):
            yield {
                "text": event.text,
                "is_finished": False,
                "finish_reason": "",
                "usage": None,
                "index": 0,
                "tool_use": None,
            }
        elif isinstance(event, Usage):
            usage = _usage_block(event)
        elif isinstance(event, Finish):
            finish = event.reason or "stop"
    yield {
        "text": "",
        "is_finished": True,
        "finish_reason": finish,
        "usage": usage,
        "index": 0,
        "tool_use": None,
    }


async def _acompletion(self: Any, *args: Any, **kwargs: Any) -> Any:
    """litellm's ``CustomLLM.acompletion``: fills in the ``ModelResponse`` it is given."""
    model: str = kwargs["model"]
    parts: list[str] = []
    usage = Usage()
    async for event in offline_events(f"kagura/{model}", kwargs["messages"], _params(kwargs)):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, Usage):
            usage = event
    response: Any = kwargs["model_response"]
    response.choices[0].message.content = "".join(parts)
    response.model = f"kagura/{model}"
    response.usage = _usage_block(usage)
    return response


def register_offline_provider(litellm: Any) -> None:
    """Add the ``kagura`` provider to ``litellm.custom_provider_map`` (once)."""
    base: Any = importlib.import_module("litellm.llms.custom_llm").CustomLLM
    current: list[dict[str, Any]] = list(litellm.custom_provider_map)
    if any(item.get("provider") == "kagura" for item in current):
        return
    handler_class: Any = type(
        "KaguraOffline", (base,), {"astreaming": _astreaming, "acompletion": _acompletion}
    )
    current.append({"provider": "kagura", "custom_handler": handler_class()})
    litellm.custom_provider_map = current
