"""What a test writes: a :class:`Script` says how the server answers one chat request.

Pure data with constructors; :mod:`kagura.testing.loopback._chat` plays it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack

from kagura.testing.loopback import _wire

__all__ = ["Script", "ScriptOptions", "ScriptedToolCall", "split"]


def split(text: str, size: int) -> tuple[str, ...]:
    """``text`` in pieces of ``size`` characters (the last one shorter)."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return tuple(text[i : i + size] for i in range(0, len(text), size))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedToolCall:
    """One tool call a :class:`Script` streams: a name and its argument fragments.

    ``index`` defaults to the call's position in ``Script.tool_calls`` and ``id``
    to ``"call_loopback_<index>"``.

    >>> ScriptedToolCall.of("get_weather", {"city": "Paris"}, fragment_size=9).arguments
    ('{"city": ', '"Paris"}')
    """

    name: str
    arguments: tuple[str, ...] = ()
    id: str | None = None
    index: int | None = None

    @classmethod
    def of(
        cls,
        name: str,
        arguments: str | Mapping[str, Any] = "{}",
        *,
        fragment_size: int = 8,
        id: str | None = None,
        index: int | None = None,
    ) -> Self:
        """A call whose JSON ``arguments`` (a string, or a mapping to dump) arrive in pieces."""
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return cls(name=name, arguments=split(text, fragment_size), id=id, index=index)


class ScriptOptions(TypedDict, total=False):
    """Keyword options the :class:`Script` constructors pass through (see its fields)."""

    reasoning: tuple[str, ...]
    finish_reason: str | None
    usage: Mapping[str, int] | None
    include_usage: bool | None
    model: str | None
    ttft: float
    chunk_delay: float
    headers: Mapping[str, str]
    error_body: Mapping[str, Any] | None
    error_event_after: int | None
    drop_after: int | None
    stall_after: int | None
    malformed_after: int | None
    malformed_data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Script:
    """How the server answers one chat request.

    Content and tool calls:
      ``reasoning`` chunks stream first, as the protocol carries a model's thinking
      (``reasoning_content`` deltas, Anthropic thinking blocks, Gemini thought parts);
      ``content`` text chunks, one per SSE event; ``tool_calls`` streamed after the
      text; ``finish_reason`` (default ``"tool_calls"`` if there are tool calls,
      else ``"stop"``); ``usage`` (default: :func:`kagura.llm.metrics.estimate_tokens`
      of the messages' characters and of the output's); ``include_usage`` sends the
      final usage chunk (``None``: when the request asks with
      ``stream_options.include_usage``, or the server's ``always_include_usage``);
      ``model`` (default: the request's).
    Timing:
      ``ttft`` seconds before the first event (role chunk and first content chunk
      arrive together), ``chunk_delay`` seconds before each later chunk.
    HTTP errors:
      ``status`` other than 200 answers with ``error_body`` (default: OpenAI's body
      for that status) as ``{"error": ...}``; ``retry_after`` sets ``Retry-After``;
      ``headers`` are added to any response.
    Faults, after the first event and N more (``drop_after=2`` on chunks
    ``["a", "b", "c"]`` delivers ``"ab"``; an N past the end fires before the finish
    chunk):
      ``error_event_after`` sends ``data: {"error": error_body}`` and ends the
      response; ``drop_after`` closes the socket mid-body; ``stall_after`` stops
      sending until the client leaves or the server stops; ``malformed_after``
      sends ``data: <malformed_data>`` and carries on.
    A non-streaming request gets the joined answer after ``ttft`` plus the chunk
    delays; there a drop closes without a response, a stall never answers, an
    error event becomes status 500 and a malformed line a malformed body.

    >>> Script.text("Hello world").content
    ('Hell', 'o wo', 'rld')
    >>> Script.error(429, retry_after=2).status
    429
    """

    content: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: str | None = None
    usage: Mapping[str, int] | None = None
    include_usage: bool | None = None
    model: str | None = None
    ttft: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    error_body: Mapping[str, Any] | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    error_event_after: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    malformed_after: int | None = None
    malformed_data: str = '{"id":"chatcmpl-malformed","choices":[{"delta":{"content":"'
    recorded_events: tuple[bytes, ...] | None = None

    @classmethod
    def text(cls, text: str, *, chunk_size: int = 4, **options: Unpack[ScriptOptions]) -> Self:
        """Stream ``text`` in chunks of ``chunk_size`` characters."""
        return cls(content=split(text, chunk_size), **options)

    @classmethod
    def chunks(cls, chunks: Iterable[str], **options: Unpack[ScriptOptions]) -> Self:
        """Stream exactly these chunks, one per SSE event."""
        return cls(content=tuple(chunks), **options)

    @classmethod
    def tools(
        cls, *calls: ScriptedToolCall, content: Iterable[str] = (), **options: Unpack[ScriptOptions]
    ) -> Self:
        """Stream tool calls (after optional text), finishing with ``"tool_calls"``."""
        return cls(content=tuple(content), tool_calls=calls, **options)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Self:
        """Answer with HTTP ``status`` and an OpenAI error body (defaults per status)."""
        fields = {k: v for k, v in (("type", error_type), ("code", code)) if v is not None}
        explicit = message is not None or bool(fields)
        return cls(
            status=status,
            error_body=_wire.error(status, message, **fields) if explicit else None,
            retry_after=retry_after,
            headers=dict(headers or {}),
        )

    @classmethod
    def recorded(
        cls, path: str | Path, *, event_delay: float = 0.0, **options: Unpack[ScriptOptions]
    ) -> Self:
        """Replay a recorded ``.sse`` file byte for byte, ``event_delay`` s between events."""
        events = _wire.split_events(Path(path).read_bytes())
        options.setdefault("chunk_delay", event_delay)
        return cls(recorded_events=events, **options)
