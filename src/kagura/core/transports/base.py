"""What every transport provides: a request type and the Transport protocol."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kagura.core.config import LLMConfig
from kagura.core.events import Completion, StreamEvent
from kagura.errors import AuthError, LLMError, ModelNotFoundError, ProviderError, RateLimitError

__all__ = ["ChatRequest", "Transport", "error_for_status"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call: messages, settings, and extra provider parameters (tools...)."""

    messages: Sequence[Mapping[str, Any]]
    config: LLMConfig
    params: Mapping[str, Any] = field(default_factory=dict[str, Any])


class Transport(Protocol):
    """Sends a :class:`ChatRequest` and returns events or a whole completion.

    ``stream`` returns an async generator: closing it (``aclose``) must close the
    HTTP response at once. Failures are raised as :mod:`kagura.errors` types.
    """

    name: str

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]: ...

    async def complete(self, request: ChatRequest) -> Completion: ...


def error_for_status(status: int | None, *, model: str, detail: str) -> LLMError:
    """The typed error for an HTTP status the provider answered before the stream.

    ``detail`` is the provider's message, already redacted.

    >>> error_for_status(429, model="m", detail="slow down")
    RateLimitError("'m': rate limited: slow down")
    """
    if status in (401, 403):
        return AuthError(
            f"{model!r}: the provider refused the credentials: {detail}",
            model=model,
            status_code=status,
        )
    if status == 429:
        return RateLimitError(f"{model!r}: rate limited: {detail}", model=model, status_code=status)
    if status == 404:
        return ModelNotFoundError(
            f"unknown model {model!r}: {detail}", model=model, status_code=status
        )
    return ProviderError(f"{model!r}: HTTP {status}: {detail}", model=model, status_code=status)
