"""kagura's offline models as a litellm custom provider named ``kagura``.

Registered by :func:`kagura.core._litellm.load_litellm`, so ``kagura/echo`` and
``kagura/replay`` run through litellm's full streaming path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from kagura.core.events import Finish, TextDelta, Usage
from kagura.core.transports.offline import OFFLINE_PARAMS, offline_events

__all__ = ["register_offline_provider"]


def _params(optional_params: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    merged = {**kwargs.get("litellm_params", {}), **optional_params}
    extra = merged.get("extra_body") or {}
    merged.update(extra)
    return {k: v for k, v in merged.items() if k in OFFLINE_PARAMS}


def register_offline_provider(litellm: ModuleType) -> None:
    """Add the ``kagura`` provider to ``litellm.custom_provider_map`` (once)."""
    from litellm import CustomLLM  # pyright: ignore[reportMissingTypeStubs]
    from litellm.types.utils import GenericStreamingChunk, ModelResponse

    class KaguraOffline(CustomLLM):  # type: ignore[misc] (litellm's base class is untyped)
        async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # pyright: ignore[reportIncompatibleMethodOverride] (litellm passes keywords only)
            model: str = kwargs["model"]
            params = _params(kwargs.get("optional_params") or {}, kwargs)
            usage: dict[str, int] | None = None
            finish = "stop"
            async for event in offline_events(f"kagura/{model}", kwargs["messages"], params):
                if isinstance(event, TextDelta):
                    yield GenericStreamingChunk(
                        text=event.text, is_finished=False, finish_reason="", usage=None, index=0,
                        tool_use=None,
                    )  # fmt: skip
                elif isinstance(event, Usage):
                    usage = {
                        "prompt_tokens": event.prompt_tokens,
                        "completion_tokens": event.completion_tokens,
                        "total_tokens": event.total_tokens,
                    }
                elif isinstance(event, Finish):
                    finish = event.reason or "stop"
            yield GenericStreamingChunk(
                text="", is_finished=True, finish_reason=finish, usage=usage, index=0,  # type: ignore[typeddict-item] (litellm's usage block is a TypedDict of the same keys)
                tool_use=None,
            )  # fmt: skip

        async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # pyright: ignore[reportIncompatibleMethodOverride] (litellm passes keywords only)
            model: str = kwargs["model"]
            params = _params(kwargs.get("optional_params") or {}, kwargs)
            parts: list[str] = []
            usage = Usage()
            async for event in offline_events(f"kagura/{model}", kwargs["messages"], params):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Usage):
                    usage = event
            response: ModelResponse = kwargs["model_response"]
            response.choices[0].message.content = "".join(parts)  # type: ignore[union-attr] (non-streaming choices)
            response.model = f"kagura/{model}"
            response.usage = {  # type: ignore[assignment] (litellm accepts a plain dict here)
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            }
            return response

    current: list[dict[str, Any]] = list(litellm.custom_provider_map)
    if not any(item.get("provider") == "kagura" for item in current):
        current.append({"provider": "kagura", "custom_handler": KaguraOffline()})
        litellm.custom_provider_map = current
