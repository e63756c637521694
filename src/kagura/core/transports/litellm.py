"""The litellm transport: any provider litellm knows, plus kagura's offline models.

litellm's stream object is not an async generator: a consumer that stops early
leaves the provider streaming unless someone calls its ``aclose()``. This
transport's ``stream`` is an async generator whose ``finally`` does, so closing
it (``break`` through :func:`contextlib.aclosing`, ``aclose()``, cancellation)
closes the HTTP response at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from kagura.core._litellm import load_litellm
from kagura.core.events import (
    Completion,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from kagura.core.transports.base import ChatRequest
from kagura.core.transports.litellm_errors import translate_litellm_error
from kagura.errors import MissingAPIKeyError

__all__ = ["LiteLLMTransport"]


class LiteLLMTransport:
    """Sends requests through ``litellm.acompletion``."""

    name = "litellm"

    async def _kwargs(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        config = request.config
        api_key = await config.aget_api_key()
        if api_key is None and config.api_base is None and not config.is_offline:
            _require_environment(config.model)
        kwargs: dict[str, Any] = {
            "model": config.model,
            "messages": list(request.messages),
            "temperature": config.temperature,
            "top_p": config.top_p,
            "timeout": config.request_timeout,
            "max_retries": config.max_retries,
            "stream": stream,
        }
        if config.max_tokens is not None:
            kwargs["max_tokens"] = config.max_tokens
        if api_key is not None:
            kwargs["api_key"] = api_key
        if config.api_base is not None:
            kwargs["api_base"] = config.api_base
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        kwargs.update(request.params)
        return kwargs

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield the events of one streamed answer; closing this generator closes the HTTP stream."""
        litellm = load_litellm()
        model = request.config.model
        kwargs = await self._kwargs(request, stream=True)
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise translate_litellm_error(exc, model=model, started=False) from exc
        started = False
        try:
            async for chunk in response:
                started = True
                for event in _events_from_chunk(chunk):
                    yield event
        except Exception as exc:
            raise translate_litellm_error(exc, model=model, started=started) from exc
        finally:
            await response.aclose()

    async def complete(self, request: ChatRequest) -> Completion:
        """One whole answer (no streaming)."""
        litellm = load_litellm()
        model = request.config.model
        kwargs = await self._kwargs(request, stream=False)
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise translate_litellm_error(exc, model=model, started=False) from exc
        choice = response.choices[0]
        message = choice.message
        calls = tuple(
            ToolCall(id=tc.id or "", name=tc.function.name or "", arguments=tc.function.arguments or "")
            for tc in (getattr(message, "tool_calls", None) or [])
        )
        return Completion(
            text=message.content or "",
            tool_calls=calls,
            usage=_usage(getattr(response, "usage", None)),
            finish_reason=choice.finish_reason,
        )


def _require_environment(model: str) -> None:
    """Raise MissingAPIKeyError naming the variable when the provider's key is not set."""
    litellm = load_litellm()
    try:
        report: dict[str, Any] = litellm.validate_environment(model=model)
    except Exception:  # an unknown model is reported by the call itself, with its name
        return
    missing: list[str] = [k for k in report.get("missing_keys", []) if k.endswith("_KEY")]
    if not report.get("keys_in_environment", True) and missing:
        raise MissingAPIKeyError(
            f"no API key for model {model!r}: set the {missing[0]} environment variable "
            "or pass LLMConfig(api_key=...)",
            env_var=missing[0],
            model=model,
        )


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    prompt = getattr(raw, "prompt_tokens", None)
    if prompt is None and isinstance(raw, dict):
        get = raw.get  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType] (untyped dict from litellm)
        prompt, completion, total = get("prompt_tokens"), get("completion_tokens"), get("total_tokens")
    else:
        completion = getattr(raw, "completion_tokens", None)
        total = getattr(raw, "total_tokens", None)
    if not prompt and not completion:
        return None
    p, c = int(prompt or 0), int(completion or 0)  # pyright: ignore[reportUnknownArgumentType]
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=int(total or p + c))  # pyright: ignore[reportUnknownArgumentType]


def _events_from_chunk(chunk: Any) -> Iterator[StreamEvent]:
    """The events of one litellm ``ModelResponseStream`` (choice 0 only)."""
    finish: str | None = None
    for choice in getattr(chunk, "choices", None) or []:
        if getattr(choice, "index", 0) != 0:
            continue
        delta = choice.delta
        content = getattr(delta, "content", None)
        if content:
            yield TextDelta(content)
        for tc in getattr(delta, "tool_calls", None) or []:
            function = getattr(tc, "function", None)
            yield ToolCallDelta(
                index=int(getattr(tc, "index", 0) or 0),
                id=getattr(tc, "id", None),
                name=getattr(function, "name", None),
                arguments=getattr(function, "arguments", None) or "",
            )
        finish = getattr(choice, "finish_reason", None) or finish
    usage = _usage(getattr(chunk, "usage", None))
    if usage is not None:
        yield usage
    if finish is not None:
        yield Finish(finish)
