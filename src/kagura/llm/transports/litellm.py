"""The litellm transport: any provider litellm knows, plus kagura's offline models.

litellm's stream object is not an async generator: a consumer that stops early
leaves the provider streaming unless someone calls its ``aclose()``. This
transport's ``stream`` is an async generator whose ``finally`` does, so closing
it (``break`` through :func:`contextlib.aclosing`, ``aclose()``, cancellation)
closes the HTTP response at once.

litellm reads provider keys from the environment itself, so before each request the
values of secret-named environment variables (``ANTHROPIC_API_KEY``...) and the key
sent are remembered (:func:`kagura.remember_secret`): an error echoing
them is scrubbed, whichever key litellm picked.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any

from kagura._redact import remember_environment_secrets, remember_secret
from kagura.errors import MissingAPIKeyError
from kagura.events import (
    Completion,
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from kagura.llm.request import ChatRequest
from kagura.llm.transports._litellm import load_litellm
from kagura.llm.transports.litellm_errors import translate_litellm_error

__all__ = ["LiteLLMTransport"]


class LiteLLMTransport:
    """Sends requests through ``litellm.acompletion``."""

    name = "litellm"

    async def _kwargs(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        config = request.config
        api_key = await config.aget_api_key()
        remember_secret(api_key)
        remember_environment_secrets()  # one pass over os.environ, cheap enough per call
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

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield one streamed answer's events; closing this generator closes the HTTP stream."""
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
        choice: Any = response.choices[0]
        message: Any = choice.message
        raw_calls: list[Any] = getattr(message, "tool_calls", None) or []
        calls = tuple(
            ToolCall(
                id=str(tc.id or ""),
                name=str(tc.function.name or ""),
                arguments=str(tc.function.arguments or ""),
            )
            for tc in raw_calls
        )
        reasoning: object = getattr(message, "reasoning_content", None)
        return Completion(
            text=message.content or "",
            tool_calls=calls,
            usage=Usage.from_provider(getattr(response, "usage", None)),
            finish_reason=choice.finish_reason,
            reasoning=reasoning if isinstance(reasoning, str) else "",
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


def _events_from_chunk(chunk: Any) -> Iterator[StreamEvent]:
    """The events of one litellm ``ModelResponseStream`` (choice 0 only)."""
    finish: str | None = None
    choices: list[Any] = getattr(chunk, "choices", None) or []
    for choice in choices:
        if getattr(choice, "index", 0) != 0:
            continue
        delta: Any = choice.delta
        reasoning: object = getattr(delta, "reasoning_content", None)
        if reasoning and isinstance(reasoning, str):
            yield ReasoningDelta(reasoning)
        content: str | None = getattr(delta, "content", None)
        if content:
            yield TextDelta(content)
        tool_calls: list[Any] = getattr(delta, "tool_calls", None) or []
        for tc in tool_calls:
            function: Any = getattr(tc, "function", None)
            yield ToolCallDelta(
                index=int(getattr(tc, "index", 0) or 0),
                id=getattr(tc, "id", None),
                name=getattr(function, "name", None),
                arguments=getattr(function, "arguments", None) or "",
            )
        finish = getattr(choice, "finish_reason", None) or finish
    usage = Usage.from_provider(getattr(chunk, "usage", None))
    if usage is not None:
        yield usage
    if finish is not None:
        yield Finish(finish)
