"""Typed events of an LLM stream, as produced by every transport.

A stream is a sequence of :data:`StreamEvent`: text deltas, reasoning deltas and
tool-call deltas while the model writes, then usually one :class:`Usage` and one
:class:`Finish`. The tool loop (:func:`~kagura.agents.tools.stream_with_tools`) adds each
complete :class:`ToolCall` before it runs and its :class:`ToolResult` after: its events
are :data:`AgentEvent`. Reasoning (a model's thinking) travels beside the answer, never in
it: text pipes and ``call_llm_stream`` carry :class:`TextDelta` only.

>>> from kagura.events import TextDelta, Finish
>>> [e for e in (TextDelta("Hi"), Finish("stop")) if isinstance(e, TextDelta)]
[TextDelta(text='Hi')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "AgentEvent",
    "Completion",
    "Finish",
    "ReasoningDelta",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolEvent",
    "ToolResult",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text (never empty)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning (never empty), beside the answer, not in it.

    Anthropic's thinking blocks, Gemini's thought parts, and the ``reasoning_content``
    (or ``reasoning``) deltas of OpenAI-compatible servers (DeepSeek, vLLM, Ollama).
    """

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; fragments with the same ``index`` form one call.

    ``id`` and ``name`` usually arrive on the first fragment only; ``arguments``
    is a piece of the JSON argument string.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts. ``estimated`` is True when kagura counted, not the provider."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False

    @classmethod
    def from_provider(cls, raw: object) -> Usage | None:
        """A provider's usage block (a dict or an SDK object) as Usage; None if it is empty.

        >>> Usage.from_provider({"prompt_tokens": 3, "completion_tokens": 5})
        Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8, estimated=False)
        """
        if raw is None:
            return None

        def field(name: str) -> int:
            value: Any = (
                cast(dict[str, Any], raw).get(name)
                if isinstance(raw, dict)
                else getattr(raw, name, None)
            )
            return int(value or 0)

        prompt, completion = field("prompt_tokens"), field("completion_tokens")
        if not prompt and not completion:
            return None
        total = field("total_tokens") or prompt + completion
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the model stopped: ``"stop"``, ``"length"``, ``"tool_calls"``, ``"content_filter"``..."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call: the model asks for ``name`` with JSON ``arguments``."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the tool loop sent back to the model for the call ``id``, once it ran.

    ``content`` is the tool's result as text (JSON for values that are not strings), or
    ``"Error: ..."`` for invalid arguments, an unknown tool or the tool's exception.
    """

    id: str
    name: str
    content: str


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | Usage | Finish
"""What a transport produces."""

AgentEvent = StreamEvent | ToolCall | ToolResult
"""What the tool loop produces: a transport's events, plus each call and its result."""

ToolEvent = ToolCallDelta | ToolCall | ToolResult
"""The tool events of a stream: a call being written, the complete call, its result."""


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    reasoning: str = ""
