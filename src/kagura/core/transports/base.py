"""What every transport provides: a request type and the Transport protocol."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kagura.core.config import LLMConfig
from kagura.core.events import Completion, StreamEvent

__all__ = ["ChatRequest", "Transport"]


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
