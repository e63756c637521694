"""What every transport provides: the Transport protocol and the status-to-error mapping."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from kagura.errors import AuthError, LLMError, ModelNotFoundError, ProviderError, RateLimitError
from kagura.events import Completion, StreamEvent
from kagura.llm.request import ChatRequest

__all__ = ["Transport", "error_for_status"]


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
