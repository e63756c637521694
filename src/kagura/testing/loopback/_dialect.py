"""What every wire protocol the loopback server speaks provides: a :class:`Dialect`.

The chat emulator (:mod:`~kagura.testing.loopback._chat`) is the same for every
protocol: it takes the next :class:`~kagura.testing.loopback.Script`, plays its timing
and faults, and counts the streams. A dialect says how one protocol reads a request
(:meth:`Dialect.read`), checks its credentials, and turns a script into that
protocol's SSE events (:meth:`Dialect.plan`), whole answer, and error bodies.
Dialects: ``_openai`` (Chat Completions), ``_anthropic`` (Messages), ``_gemini``
(``generateContent``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kagura.llm import metrics
from kagura.testing.loopback._http import RecordedRequest
from kagura.testing.loopback._script import Script, ScriptedToolCall

__all__ = [
    "Ask",
    "BadAsk",
    "Context",
    "Dialect",
    "Event",
    "Plan",
    "bearer_token",
    "finish_reason",
    "numbered_calls",
    "usage_counts",
]


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event (its exact bytes) to send after ``delay`` seconds."""

    delay: float
    data: bytes


Plan = tuple[Event, list[Event], list[Event]]
"""The first event, the counted events (faults count these), and the tail."""


@dataclass(frozen=True, slots=True)
class Ask:
    """What a dialect read from one chat request."""

    model: str
    last_user_text: str
    prompt_chars: int
    stream: bool
    include_usage: bool = True


class BadAsk(Exception):
    """A request the dialect refuses: answer ``status`` with ``body``."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Context:
    """What a script's answer takes from its request."""

    id: str
    serial: int
    created: int
    model: str
    prompt_tokens: int
    include_usage: bool


class Dialect(Protocol):
    """One wire protocol of the loopback server."""

    def read(self, req: RecordedRequest) -> Ask:
        """The request's model, prompt and mode; raises :class:`BadAsk` to refuse it."""
        ...

    def credential(self, req: RecordedRequest) -> str | None:
        """The key or token the request carries (checked against ``api_keys``)."""
        ...

    def plan(self, script: Script, ctx: Context) -> Plan:
        """The SSE events of a streamed answer."""
        ...

    def completion(self, script: Script, ctx: Context) -> Any:
        """The JSON body of a whole (non-streamed) answer."""
        ...

    def error_body(self, status: int, script: Script | None, model: str) -> Any:
        """The JSON body of an HTTP error ``status`` (``script.error_body`` if it has one)."""
        ...

    def error_event(self, script: Script, model: str) -> bytes:
        """The SSE event that reports an error in the middle of a stream."""
        ...


def bearer_token(req: RecordedRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if the request has one."""
    scheme, _, token = req.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def numbered_calls(script: Script) -> list[tuple[int, str, ScriptedToolCall]]:
    """Each tool call with its index and id (defaults filled in)."""
    out: list[tuple[int, str, ScriptedToolCall]] = []
    for position, call in enumerate(script.tool_calls):
        index = position if call.index is None else call.index
        out.append((index, call.id or f"call_loopback_{index}", call))
    return out


def usage_counts(script: Script, ctx: Context) -> dict[str, int]:
    """``prompt_tokens``, ``completion_tokens`` and ``total_tokens`` of the answer.

    The script's ``usage`` if it has one, else estimated from the characters.
    """
    if script.usage is not None:
        return dict(script.usage)
    chars = sum(map(len, script.content)) + sum(map(len, script.reasoning))
    chars += sum(len(call.name) + sum(map(len, call.arguments)) for call in script.tool_calls)
    completion = metrics.estimate_tokens(chars)
    return {
        "prompt_tokens": ctx.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": ctx.prompt_tokens + completion,
    }


def finish_reason(script: Script) -> str:
    """The script's finish reason in OpenAI's words (dialects translate it)."""
    if script.finish_reason is not None:
        return script.finish_reason
    return "tool_calls" if script.tool_calls else "stop"
