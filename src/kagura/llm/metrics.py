"""StreamMetrics: what a stream did, filled in by the source as events pass.

>>> m = StreamMetrics(started_at=0.0, first_token_at=0.2, ended_at=1.2, chunks=10, chars=200)
>>> m.ttft_s, m.duration_s, m.tokens_per_s
(0.2, 1.2, 50.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kagura.events import ToolCall, Usage

__all__ = ["StreamMetrics", "estimate_tokens"]


def estimate_tokens(chars: int) -> int:
    """A rough token count for text of ``chars`` characters: 4 per token, rounded up.

    kagura's one estimate, wherever a count is missing (a provider that reports no
    usage, :func:`~kagura.operators.tee_log`, the CLI's footer).

    >>> [estimate_tokens(n) for n in (0, 1, 4, 5, 13)]
    [0, 1, 1, 2, 4]
    """
    return (chars + 3) // 4


@dataclass(slots=True)
class StreamMetrics:
    """Timing and counts of one stream. Times come from ``time.perf_counter``.

    ``usage`` is the provider's report, or an estimate (``usage.estimated``)
    when the provider sent none; ``tool_calls`` lists the calls the model made.
    The first token is the first text, reasoning or tool-call delta; ``chunks`` and
    ``chars`` count the answer's text, ``reasoning_chars`` the reasoning's.
    ``model`` is the model that answered and ``attempts`` the requests started (more
    than one with ``LLMConfig(fallbacks=..., hedge_after=...)``).
    """

    started_at: float | None = None
    first_token_at: float | None = None
    ended_at: float | None = None
    chunks: int = 0
    chars: int = 0
    reasoning_chars: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list[ToolCall])
    model: str | None = None
    attempts: int = 0

    def reset(self) -> None:
        """Forget a previous run (a cold source re-subscribed starts afresh)."""
        self.started_at = self.first_token_at = self.ended_at = None
        self.chunks = self.chars = self.reasoning_chars = 0
        self.usage = None
        self.finish_reason = None
        self.tool_calls = []
        self.model = None
        self.attempts = 0

    @property
    def ttft_s(self) -> float | None:
        """Seconds from the request to the first token."""
        if self.started_at is None or self.first_token_at is None:
            return None
        return self.first_token_at - self.started_at

    @property
    def duration_s(self) -> float | None:
        """Seconds from the request to the end of the stream."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per second after the first token (estimated if not reported)."""
        if self.first_token_at is None or self.ended_at is None:
            return None
        elapsed = self.ended_at - self.first_token_at
        if elapsed <= 0:
            return None
        tokens = self.usage.completion_tokens if self.usage else estimate_tokens(self.chars)
        return tokens / elapsed
