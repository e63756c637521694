"""The AI SDK's UI message stream (protocol ``v1``), as pure data: no web framework here.

:class:`UIMessageChunks` turns what a kagura stream yields into the JSON chunks the ``ai``
package's client (``useChat``, ``DefaultChatTransport``, ``readUIMessageStream``) reads;
:func:`sse_data` frames one for Server-Sent Events; :func:`messages_from_ui` reads the body
``useChat`` posts. :mod:`kagura.web` serves them.

>>> chunks = UIMessageChunks(message_id="msg_1")
>>> [c["type"] for c in chunks.start() + chunks.item("Hi") + chunks.item(" there")]
['start', 'start-step', 'text-start', 'text-delta', 'text-delta']
>>> [c["type"] for c in chunks.finish("stop")]
['text-end', 'finish-step', 'finish']
>>> sse_data({"type": "finish"})
'data: {"type":"finish"}\\n\\n'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import pydantic_core
from pydantic import BaseModel

from kagura.errors import ConfigError
from kagura.events import (
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    Usage,
)
from kagura.llm.metrics import StreamMetrics
from kagura.operators import is_complete

__all__ = [
    "DONE",
    "UI_MESSAGE_STREAM_HEADERS",
    "UIMessageChunks",
    "finish_reason",
    "messages_from_ui",
    "sse_data",
]

UI_MESSAGE_STREAM_HEADERS: Final[Mapping[str, str]] = {
    "x-vercel-ai-ui-message-stream": "v1",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx: pass each chunk on at once
}
"""The headers of a UI message stream response, besides ``content-type: text/event-stream``."""

DONE: Final = "[DONE]"
"""The data of the last event of a UI message stream."""

Chunk = dict[str, Any]

_FINISH_REASONS: Final[Mapping[str, str]] = {
    "stop": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "tool_use": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
}


def finish_reason(reason: str | None) -> str | None:
    """A kagura (OpenAI-style) finish reason as the AI SDK names it; None stays None.

    >>> finish_reason("tool_calls"), finish_reason("content_filter"), finish_reason("weird")
    ('tool-calls', 'content-filter', 'other')
    """
    if reason is None:
        return None
    return _FINISH_REASONS.get(reason, "other")


def sse_data(chunk: Mapping[str, Any] | str) -> str:
    """One Server-Sent Event carrying ``chunk`` (compact JSON, or ``[DONE]`` as is)."""
    data = chunk if isinstance(chunk, str) else json.dumps(chunk, separators=(",", ":"))
    return f"data: {data}\n\n"


def _data_name(model: type) -> str:
    """``WeatherReport`` -> ``weather-report``: the default ``data-*`` name of a model."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", model.__name__)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name).lower()
    return re.sub(r"[^a-z0-9_-]+", "-", name).strip("-") or "object"


def _tool_input(arguments: str) -> Any:
    """A call's arguments as JSON, or the raw text if they are not valid JSON."""
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments


class UIMessageChunks:
    """The chunks of one assistant message, built item by item.

    Items, as :meth:`~kagura.pipes.AgentStream.with_events` yields them (a plain async
    iterable of them works too):

    - ``str`` (or :class:`~kagura.TextDelta`): ``text-start``, ``text-delta``... ``text-end``.
    - :class:`~kagura.ReasoningDelta`: ``reasoning-start``, ``reasoning-delta``...
      ``reasoning-end``.
    - :class:`~kagura.ToolCallDelta`: ``tool-input-start`` (once the call has its id and
      name), then ``tool-input-delta`` for each piece of its arguments;
      :class:`~kagura.ToolCall`: ``tool-input-available`` with the parsed arguments;
      :class:`~kagura.ToolResult`: ``tool-output-available``. The text after a round of
      tools starts a new step (``finish-step``, ``start-step``).
    - a pydantic model: a ``data-<name>`` part (``model_dump(mode="json")``), where
      ``<name>`` is ``data_name`` or the model's class name in kebab case
      (``WeatherReport`` -> ``weather-report``). The partial snapshots of
      ``parse_model(Model, partial=True)`` share one id, so the client replaces the part
      with each; the next object after a complete one is a new part.
    - anything else: a ``data-<data_name or "value">`` part of its JSON form.

    :class:`~kagura.Usage`, :class:`~kagura.StreamMetrics` and :class:`~kagura.Finish`
    events send nothing (a ``Finish`` is remembered as :attr:`last_finish_reason`).
    """

    def __init__(self, *, message_id: str | None = None, data_name: str | None = None) -> None:
        self.message_id = message_id
        self.data_name = data_name
        self.last_finish_reason: str | None = None
        self._count = 0
        self._text: str | None = None  # the open text part's id
        self._reasoning: str | None = None
        self._data: tuple[str, str] | None = None  # (type, id) of the object being written
        self._calls: dict[int, str | None] = {}  # this step's streamed calls: index -> id
        self._known: set[str] = set()  # ids of the tool calls the client has a part for
        self._after_tools = False  # a tool result came: the next content opens a step

    def _id(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def start(self) -> list[Chunk]:
        """The first chunks: ``start`` (with the message id, if any), ``start-step``."""
        start: Chunk = {"type": "start"}
        if self.message_id is not None:
            start["messageId"] = self.message_id
        return [start, {"type": "start-step"}]

    def item(self, item: object) -> list[Chunk]:
        """The chunks for one item of the stream (none for an empty text)."""
        if isinstance(item, TextDelta):
            item = item.text
        if isinstance(item, str):
            return self._text_delta(item) if item else []
        if isinstance(item, ReasoningDelta):
            return self._reasoning_delta(item.text) if item.text else []
        if isinstance(item, ToolCallDelta):
            return self._call_delta(item)
        if isinstance(item, ToolCall):
            out = [*self._next_step(), *self._close_text(), *self._close_reasoning()]
            self._known.add(item.id)
            out.append(self._input_available(item.id, item.name, _tool_input(item.arguments)))
            return out
        if isinstance(item, ToolResult):
            out = [*self._close_text(), *self._close_reasoning()]
            if item.id not in self._known:  # a result without its call: show the call first
                self._known.add(item.id)
                out.append(self._input_available(item.id, item.name, None))
            out.append(
                {"type": "tool-output-available", "toolCallId": item.id, "output": item.content}
            )
            self._after_tools = True
            return out
        if isinstance(item, Finish):
            self.last_finish_reason = item.reason
            return []
        if isinstance(item, Usage | StreamMetrics):
            return []
        return self._data_part(item)

    def error(self, error_text: str) -> list[Chunk]:
        """An ``error`` chunk (the client shows ``error_text``); :meth:`finish` follows it."""
        self._text = self._reasoning = None  # left as they were: the answer broke off
        return [{"type": "error", "errorText": error_text}]

    def finish(self, reason: str | None) -> list[Chunk]:
        """The last chunks: the open parts' ends, ``finish-step``, ``finish``.

        ``reason`` is kagura's finish reason (``"stop"``, ``"tool_calls"``...), mapped by
        :func:`finish_reason`; ``"error"`` after :meth:`error`.
        """
        out = [*self._close_text(), *self._close_reasoning(), {"type": "finish-step"}]
        finish: Chunk = {"type": "finish"}
        mapped = finish_reason(reason)
        if mapped is not None:
            finish["finishReason"] = mapped
        out.append(finish)
        return out

    # -- parts -------------------------------------------------------------------------
    def _next_step(self) -> list[Chunk]:
        if not self._after_tools:
            return []
        self._after_tools = False
        self._calls = {}
        closed = [*self._close_text(), *self._close_reasoning()]
        return [*closed, {"type": "finish-step"}, {"type": "start-step"}]

    def _close_text(self) -> list[Chunk]:
        if self._text is None:
            return []
        chunk: Chunk = {"type": "text-end", "id": self._text}
        self._text = None
        return [chunk]

    def _close_reasoning(self) -> list[Chunk]:
        if self._reasoning is None:
            return []
        chunk: Chunk = {"type": "reasoning-end", "id": self._reasoning}
        self._reasoning = None
        return [chunk]

    def _text_delta(self, text: str) -> list[Chunk]:
        out = [*self._next_step(), *self._close_reasoning()]
        if self._text is None:
            self._text = self._id("text")
            out.append({"type": "text-start", "id": self._text})
        out.append({"type": "text-delta", "id": self._text, "delta": text})
        return out

    def _reasoning_delta(self, text: str) -> list[Chunk]:
        out = [*self._next_step(), *self._close_text()]
        if self._reasoning is None:
            self._reasoning = self._id("reasoning")
            out.append({"type": "reasoning-start", "id": self._reasoning})
        out.append({"type": "reasoning-delta", "id": self._reasoning, "delta": text})
        return out

    def _call_delta(self, delta: ToolCallDelta) -> list[Chunk]:
        out = [*self._next_step(), *self._close_text(), *self._close_reasoning()]
        if delta.index not in self._calls:
            # Streamed only if its first piece names it: the complete call (ToolCall)
            # keeps a provider's id, so both refer to the same part.
            call_id = delta.id if delta.id and delta.name else None
            self._calls[delta.index] = call_id
            if call_id is not None:
                self._known.add(call_id)
                out.append(
                    {"type": "tool-input-start", "toolCallId": call_id, "toolName": delta.name}
                )
        call_id = self._calls[delta.index]
        if call_id is not None and delta.arguments:
            out.append(
                {
                    "type": "tool-input-delta",
                    "toolCallId": call_id,
                    "inputTextDelta": delta.arguments,
                }
            )
        return out

    @staticmethod
    def _input_available(call_id: str, name: str, arguments: Any) -> Chunk:
        return {
            "type": "tool-input-available",
            "toolCallId": call_id,
            "toolName": name,
            "input": arguments,
        }

    def _data_part(self, item: object) -> list[Chunk]:
        if isinstance(item, BaseModel):
            data: Any = item.model_dump(mode="json")
            name = self.data_name or _data_name(type(item))
            complete = bool(is_complete(cast(Any, item)))
        else:
            data = pydantic_core.to_jsonable_python(item, fallback=str)
            name = self.data_name or "value"
            complete = True
        kind = f"data-{name}"
        if self._data is None or self._data[0] != kind:
            self._data = (kind, self._id("data"))
        chunk: Chunk = {"type": kind, "id": self._data[1], "data": data}
        if complete:  # the next object is a part of its own
            self._data = None
        return [chunk]


# -- the request body --------------------------------------------------------------------
def messages_from_ui(body: Mapping[str, Any] | str | bytes) -> list[dict[str, Any]]:
    """The messages of the JSON body ``useChat`` (``DefaultChatTransport``) sends, as
    kagura (OpenAI-style) messages.

    The body is ``{"id", "messages": [UIMessage...], "trigger", ...}``, parsed or as
    the raw request body. Each UI message becomes:

    - ``system`` / ``user``: its text parts joined; a user's image ``file`` parts make
      the content a list (``text`` and ``image_url`` parts).
    - ``assistant``: per step (parts between ``step-start`` parts), one assistant message
      with the step's text and ``tool_calls``, then one ``tool`` message per call with its
      output (``"Error: ..."`` for an ``output-error``). Calls without an output yet are
      left out; reasoning, sources and ``data-*`` parts are not sent back to the model.

    Anything else raises :class:`~kagura.errors.ConfigError` saying what is wrong.

    >>> messages_from_ui({"messages": [
    ...     {"id": "1", "role": "user", "parts": [{"type": "text", "text": "Weather?"}]},
    ...     {"id": "2", "role": "assistant", "parts": [
    ...         {"type": "step-start"},
    ...         {"type": "tool-weather", "toolCallId": "c1", "state": "output-available",
    ...          "input": {"city": "Oslo"}, "output": "12 C"},
    ...         {"type": "step-start"},
    ...         {"type": "text", "text": "It is 12 C."}]}]})  # doctest: +NORMALIZE_WHITESPACE
    [{'role': 'user', 'content': 'Weather?'},
     {'role': 'assistant', 'content': None, 'tool_calls': [{'id': 'c1', 'type': 'function',
      'function': {'name': 'weather', 'arguments': '{"city": "Oslo"}'}}]},
     {'role': 'tool', 'tool_call_id': 'c1', 'content': '12 C'},
     {'role': 'assistant', 'content': 'It is 12 C.'}]
    """
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise ConfigError(f"the chat request body is not JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise ConfigError("the chat request body must be a JSON object with 'messages'")
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise ConfigError("the chat request body has no 'messages' list")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(cast(list[Any], raw)):
        messages.extend(_from_ui_message(message, f"messages[{i}]"))
    return messages


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be an object, got {type(value).__name__}")
    return cast(Mapping[str, Any], value)


def _string(part: Mapping[str, Any], key: str, where: str) -> str:
    value = part.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string")
    return value


def _from_ui_message(value: Any, where: str) -> list[dict[str, Any]]:
    message = _object(value, where)
    role = message.get("role")
    parts_value = message.get("parts")
    if not isinstance(parts_value, list):
        raise ConfigError(f"{where}.parts must be a list of parts")
    parts = [_object(p, f"{where}.parts[{j}]") for j, p in enumerate(cast(list[Any], parts_value))]
    for j, part in enumerate(parts):
        _string(part, "type", f"{where}.parts[{j}]")
    if role == "system":
        return [{"role": "system", "content": _text_of(parts, where)}]
    if role == "user":
        return [{"role": "user", "content": _user_content(parts, where)}]
    if role == "assistant":
        return _assistant_messages(parts, where)
    raise ConfigError(f"{where}.role must be 'system', 'user' or 'assistant', got {role!r}")


def _text_of(parts: Sequence[Mapping[str, Any]], where: str) -> str:
    return "".join(
        _string(p, "text", f"{where}.parts[{j}]")
        for j, p in enumerate(parts)
        if p["type"] == "text"
    )


def _user_content(parts: Sequence[Mapping[str, Any]], where: str) -> str | list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    images = False
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if part["type"] == "text":
            content.append({"type": "text", "text": _string(part, "text", at)})
        elif part["type"] == "file":
            media_type = _string(part, "mediaType", at)
            if not media_type.startswith("image/"):
                raise ConfigError(
                    f"{at}: only image files can be sent to the model, not {media_type}"
                )
            content.append({"type": "image_url", "image_url": {"url": _string(part, "url", at)}})
            images = True
    if not images:
        return "".join(c["text"] for c in content)
    return content


def _tool_name(part: Mapping[str, Any], at: str) -> str | None:
    """The tool's name for a tool part (``tool-<name>`` or ``dynamic-tool``), else None."""
    kind: str = part["type"]
    if kind == "dynamic-tool":
        return _string(part, "toolName", at)
    if kind.startswith("tool-"):
        return kind.removeprefix("tool-")
    return None


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return json.dumps(output)


def _assistant_messages(parts: Sequence[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []

    def flush() -> None:
        if not text and not calls:
            return
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            message["tool_calls"] = list(calls)
        messages.append(message)
        messages.extend(results)
        text.clear()
        calls.clear()
        results.clear()

    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if part["type"] == "step-start":
            flush()
        elif part["type"] == "text":
            if calls:  # text after the step's tool calls: the answer to their results
                flush()
            text.append(_string(part, "text", at))
        else:
            name = _tool_name(part, at)
            if name is None:
                continue  # reasoning, sources, files, data-*: not sent back
            state = part.get("state")
            if state not in ("output-available", "output-error"):
                continue  # no result (yet): a call without one is no valid request
            call_id = _string(part, "toolCallId", at)
            if state == "output-error":
                output = f"Error: {_string(part, 'errorText', at)}"
            else:
                output = _output_text(part.get("output"))
            arguments = part.get("input")
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments or {})},
                }
            )
            results.append({"role": "tool", "tool_call_id": call_id, "content": output})
    flush()
    return messages
