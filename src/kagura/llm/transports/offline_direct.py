"""The offline transport: kagura's offline models without litellm (fast cold start).

``transport="auto"`` uses this for ``kagura/...`` models, so a fresh process
reaches its first token without importing litellm; ``transport="litellm"``
runs the same models through litellm's full path instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from kagura.events import Completion, StreamEvent, TextDelta, Usage
from kagura.llm.request import ChatRequest
from kagura.llm.transports.offline import offline_events

__all__ = ["OfflineTransport"]


class OfflineTransport:
    """Runs ``kagura/echo`` and ``kagura/replay`` in process."""

    name = "offline"

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield the offline model's events."""
        async for event in offline_events(request.config.model, request.messages, request.params):
            yield event

    async def complete(self, request: ChatRequest) -> Completion:
        """The whole answer of the offline model."""
        parts: list[str] = []
        usage: Usage | None = None
        async for event in offline_events(request.config.model, request.messages, request.params):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Usage):
                usage = event
        return Completion(text="".join(parts), usage=usage, finish_reason="stop")
