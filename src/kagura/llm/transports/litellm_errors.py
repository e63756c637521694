"""Translate litellm (and openai SDK) exceptions into kagura's typed errors."""

from __future__ import annotations

import re

from kagura._redact import redact, redact_error
from kagura.errors import (
    LLMError,
    ModelNotFoundError,
    ProviderError,
    StreamError,
)
from kagura.llm.transports.base import error_for_status

__all__ = ["translate_litellm_error"]

# litellm's exception classes that mean an HTTP status, when the status is missing.
_STATUS_OF_KIND = {
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "RateLimitError": 429,
}
_PREFIX = re.compile(r"^(litellm\.\w+:\s*)+")


def _message(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return redact(_PREFIX.sub("", text))


def translate_litellm_error(exc: BaseException, *, model: str, started: bool) -> LLMError:
    """Map a litellm exception to a kagura error (the caller chains ``from exc``).

    ``started`` says whether the stream had produced a chunk: litellm raises
    ``MidStreamFallbackError`` both for an error event in the stream and for a
    dropped connection, so only the caller knows it is mid-stream. ``exc`` and its
    chain are scrubbed in place (``redact_error``), as they
    stay attached as the ``__cause__``.
    """
    redact_error(exc)
    if isinstance(exc, LLMError):
        return exc
    kind = type(exc).__name__
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    detail = _message(exc)
    if started or kind == "MidStreamFallbackError":
        return StreamError(
            f"stream from {model!r} failed mid-stream: {detail}", model=model, status_code=status
        )
    if "LLM Provider NOT provided" in detail:
        return ModelNotFoundError(
            f"unknown model {model!r}: litellm cannot tell its provider; "
            "prefix it with one, e.g. 'openai/<name>' for an OpenAI-compatible api_base",
            model=model,
        )
    status = status or _STATUS_OF_KIND.get(kind)
    if status in (401, 403, 404, 429):
        return error_for_status(status, model=model, detail=detail)
    if kind in ("Timeout", "APITimeoutError"):
        return ProviderError(
            f"{model!r}: request timed out: {detail}", model=model, status_code=status
        )
    if kind == "APIConnectionError":
        return ProviderError(
            f"{model!r}: could not reach the provider: {detail}", model=model, status_code=status
        )
    return ProviderError(f"{model!r}: {kind}: {detail}", model=model, status_code=status)
