"""The Anthropic Messages transport: ``anthropic/<model>`` over aiohttp, no litellm.

Used automatically for ``anthropic/...`` models (``LLMConfig(transport="litellm")``
opts out). It sends ``POST {api_base}/v1/messages`` (``api_base`` defaults to
``https://api.anthropic.com``; one ending in ``/v1`` or ``/v1/messages`` is taken as
is) with ``anthropic-version: 2023-06-01``, and produces the same events, typed errors
and cancellation behaviour as the other transports. The wire rules (retries before the
answer starts, 529 included; no redirects; header checks; keep-alive) are
:mod:`kagura.llm.transports.http`'s.

The key is ``api_key`` (sent as ``x-api-key``), an OAuth2 token (sent as
``Authorization: Bearer``), else ``ANTHROPIC_API_KEY`` (``x-api-key``) or
``ANTHROPIC_AUTH_TOKEN`` (bearer) from the environment; with none of them a request
to ``api_base`` carries no key, one to Anthropic is a
:class:`~kagura.errors.MissingAPIKeyError`.

kagura's messages are OpenAI-shaped; :func:`to_anthropic` converts them: system
messages become the top-level ``system``, an assistant's ``tool_calls`` become
``tool_use`` blocks, ``tool`` messages become ``tool_result`` blocks of one user turn,
and OpenAI-style ``tools`` / ``tool_choice`` / ``stop`` / ``parallel_tool_calls``
arguments are translated. ``max_tokens`` (required by Anthropic) defaults to
:data:`DEFAULT_MAX_TOKENS`. Thinking blocks stream as
:class:`~kagura.events.ReasoningDelta`, never as text.

>>> system, messages = to_anthropic([
...     {"role": "system", "content": "Be brief."},
...     {"role": "user", "content": "Weather in Paris?"},
...     {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function",
...         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
...     {"role": "tool", "tool_call_id": "t1", "content": "Sunny"},
... ])
>>> system
'Be brief.'
>>> messages[1]["content"]
[{'type': 'tool_use', 'id': 't1', 'name': 'weather', 'input': {'city': 'Paris'}}]
>>> messages[2]
{'role': 'user', 'content': [{'type': 'tool_result', 'tool_use_id': 't1', 'content': 'Sunny'}]}
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

import aiohttp
import pydantic_core

from kagura._redact import redact, remember_secret
from kagura.errors import (
    AuthError,
    ConfigError,
    LLMError,
    MissingAPIKeyError,
    ProviderError,
    StreamError,
)
from kagura.events import (
    Completion,
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from kagura.llm.request import ChatRequest
from kagura.llm.transports.base import error_for_status
from kagura.llm.transports.http import (
    BodyWatch,
    ErrorBody,
    HeaderFactory,
    HTTPClient,
    check_header_value,
    describe_error,
    extra_headers,
    finish_body,
    read_body,
)
from kagura.llm.transports.sse import SSEDecoder

__all__ = [
    "ANTHROPIC_API_BASE",
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicTransport",
    "finish_reason",
    "to_anthropic",
]

ANTHROPIC_API_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent (``extra_headers`` may replace it)."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` when ``LLMConfig.max_tokens`` is None (Anthropic requires one); with
``thinking`` enabled, its ``budget_tokens`` are added."""

_USER_AGENT = "kagura (anthropic transport)"
_PREFIX = "anthropic/"

# Anthropic's stop reasons in OpenAI's words (as litellm maps them); others pass as is.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "length",
    "compaction": "length",
    "model_context_window_exceeded": "length",
}

# OpenAI's tool_choice strings in Anthropic's words.
_TOOL_CHOICE = {"auto": "auto", "required": "any", "any": "any", "none": "none"}


def finish_reason(stop_reason: str | None) -> str | None:
    """Anthropic's ``stop_reason`` as an OpenAI ``finish_reason``.

    >>> [finish_reason(r) for r in ("end_turn", "max_tokens", "tool_use", "refusal")]
    ['stop', 'length', 'tool_calls', 'content_filter']
    """
    if stop_reason is None:
        return None
    return _FINISH.get(stop_reason, stop_reason)


def _model_name(model: str) -> str:
    return model.removeprefix(_PREFIX)


def _messages_url(api_base: str | None) -> str:
    base = (api_base or ANTHROPIC_API_BASE).rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return base + "/messages"
    return base + "/v1/messages"


class AnthropicTransport:
    """Sends requests to Anthropic's ``/v1/messages``.

    ``extra_headers={...}`` among a call's keyword arguments become HTTP headers
    (``anthropic-beta``...); every other keyword goes into the JSON body (``thinking``,
    ``metadata``, ``top_k``...), after the OpenAI-style ones are translated.
    """

    name = "anthropic"

    def __init__(self, client: HTTPClient | None = None) -> None:
        self._client = client if client is not None else HTTPClient()

    async def aclose(self) -> None:
        """Close the connections of the running loop."""
        await self._client.aclose()

    def _header_factory(self, request: ChatRequest, *, stream: bool) -> HeaderFactory:
        config = request.config
        extra = extra_headers(request.params.get("extra_headers"))

        async def headers() -> dict[str, str]:
            sent = {
                "content-type": "application/json",
                "accept": "text/event-stream" if stream else "application/json",
                "anthropic-version": ANTHROPIC_VERSION,
                "user-agent": _USER_AGENT,
            }
            if stream:
                sent["accept-encoding"] = "identity"  # a compressed stream arrives in bursts
            sent.update(extra)
            key, bearer = await _credential(request)
            if key:
                name = "authorization" if bearer else "x-api-key"
                oauth = config.auth_type == "oauth2"
                check_header_value(name, key, error=AuthError if oauth else None)
                sent[name] = f"Bearer {key}" if bearer else key
            return sent

        return headers

    async def _send(self, request: ChatRequest, *, stream: bool) -> aiohttp.ClientResponse:
        config = request.config
        body = pydantic_core.to_json(request_body(request, stream=stream))
        return await self._client.post(
            _messages_url(config.api_base),
            body,
            config=config,
            headers=self._header_factory(request, stream=stream),
            error_for=lambda answer: _status_error(answer, config.model),
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield one streamed answer's events; closing this generator closes the HTTP stream."""
        config = request.config
        model = config.model
        response = await self._send(request, stream=True)
        watch = BodyWatch(response, config.request_timeout)
        decoder = SSEDecoder(max_line_bytes=config.sse_max_line_bytes)
        state = _StreamState(model)
        content = response.content
        try:
            while not state.done:
                data = await content.readany()
                watch.touch()
                if not data:
                    decoder.end()
                    break
                for sse in decoder.feed(data):
                    if sse.event == "ping":
                        continue
                    payload = _payload(sse.data, model)
                    if payload.get("type") == "content_block_delta":
                        event = state.delta(payload)
                        if event is not None:
                            yield event
                        continue
                    for event in state.other(payload):
                        yield event
                    if state.done:
                        break
                if decoder.error is not None:  # a line too long: the server may stall after it
                    raise decoder.error
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            response.close()
            raise StreamError(
                f"stream from {model!r} failed mid-stream: {describe_error(exc)}", model=model
            ) from exc
        except BaseException:
            response.close()  # a consumer that stopped early, a cancellation, an error
            raise
        finally:
            watch.stop()
        if state.done:
            await finish_body(response)
        else:
            response.release()
            raise StreamError(
                f"stream from {model!r} ended before its message_stop event", model=model
            )

    async def complete(self, request: ChatRequest) -> Completion:
        """One whole answer (no streaming)."""
        model = request.config.model
        response = await self._send(request, stream=False)
        try:
            raw = await read_body(response, request.config.request_timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProviderError(
                f"{model!r}: reading the answer failed: {describe_error(exc)}", model=model
            ) from None
        finally:
            response.release()
        try:
            payload: Any = pydantic_core.from_json(raw)
            content: Any = payload["content"]
            if not isinstance(content, list):
                raise TypeError
            blocks = cast(list[Any], content)
        except (ValueError, KeyError, TypeError):
            shown = redact(raw[:80].decode("utf-8", "replace"))
            raise ProviderError(
                f"{model!r}: the answer is not an Anthropic message: {shown!r}", model=model
            ) from None
        text: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        for block in map(_as_dict, blocks):
            kind = block.get("type")
            if kind == "text":
                text.append(str(block.get("text") or ""))
            elif kind == "thinking":
                thinking.append(str(block.get("thinking") or ""))
            elif kind == "tool_use":
                arguments = pydantic_core.to_json(block.get("input") or {}).decode()
                calls.append(
                    ToolCall(
                        id=str(block.get("id") or ""),
                        name=str(block.get("name") or ""),
                        arguments=arguments,
                    )
                )
        message = cast(dict[str, Any], payload)
        return Completion(
            text="".join(text),
            tool_calls=tuple(calls),
            usage=_usage(_as_dict(message.get("usage"))),
            finish_reason=finish_reason(message.get("stop_reason")),
            reasoning="".join(thinking),
        )


# -- the request --------------------------------------------------------------------------
def request_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of a Messages request (see the module doc for the translation)."""
    config = request.config
    params = dict(request.params)
    params.pop("extra_headers", None)
    system, messages = to_anthropic(request.messages)
    thinking = params.get("thinking")
    thinks = isinstance(thinking, Mapping) and cast(Mapping[str, Any], thinking).get("type") in (
        "enabled",
        "adaptive",
    )
    max_tokens = config.max_tokens
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
        if thinks:
            budget = cast(Mapping[str, Any], thinking).get("budget_tokens")
            if isinstance(budget, int):
                max_tokens += budget
    body: dict[str, Any] = {"model": _model_name(config.model), "max_tokens": max_tokens}
    if system is not None:
        body["system"] = system
    body["messages"] = messages
    # With thinking on, Anthropic takes only temperature 1: send one only if it was set.
    if not thinks or "temperature" in config.model_fields_set:
        body["temperature"] = config.temperature
    if config.top_p != 1.0:  # newer models refuse temperature and top_p together
        body["top_p"] = config.top_p
    body["stream"] = stream
    tools = params.pop("tools", None)
    if tools is not None:
        body["tools"] = [_tool(t) for t in _as_list(tools, "tools")]
    choice = _tool_choice(params.pop("tool_choice", None), params.pop("parallel_tool_calls", None))
    if choice is not None:
        body["tool_choice"] = choice
    stop = params.pop("stop", None)
    if stop is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(_as_list(stop, "stop"))
    body.update(params)
    return body


def to_anthropic(messages: Sequence[Mapping[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """OpenAI-style messages as Anthropic's ``system`` (None if there is none) and
    ``messages``; consecutive turns of one role are merged (tool results first)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        content: Any = message.get("content")
        if role in ("system", "developer"):
            system.extend(_blocks(content))
            continue
        if role == "user":
            blocks: Any = content if isinstance(content, str) else _blocks(content)
        elif role == "assistant":
            blocks = _blocks(content)
            blocks.extend(_tool_uses(message.get("tool_calls")))
            if not blocks:
                continue  # an empty assistant turn: Anthropic refuses it, it says nothing
            if len(blocks) == 1 and blocks[0].get("type") == "text" and len(blocks[0]) == 2:
                blocks = blocks[0]["text"]
        elif role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": str(message.get("tool_call_id") or ""),
                    "content": content if isinstance(content, str) else _blocks(content),
                }
            ]
        else:
            raise ConfigError(
                f"message {i} has role {role!r}; Anthropic takes system, user, assistant "
                "and tool messages"
            )
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]
            previous["content"] = _as_blocks(previous["content"]) + _as_blocks(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not system:
        return None, turns
    if all(len(b) == 2 and b.get("type") == "text" for b in system):
        return "\n\n".join(str(b["text"]) for b in system), turns
    return system, turns


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(cast(list[dict[str, Any]], content))


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Message content (a string, or OpenAI / Anthropic content parts) as Anthropic blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in _as_list(content, "message content"):
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
            continue
        block = _as_dict(part)
        if block.get("type") == "image_url":
            blocks.append(_image(block.get("image_url")))
        else:
            blocks.append(dict(block))  # text, or already an Anthropic block
    return blocks


def _image(value: object) -> dict[str, Any]:
    url = value if isinstance(value, str) else str(_as_dict(value).get("url") or "")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media_type = head[5:].split(";", 1)[0]
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_uses(calls: object) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if calls is None:
        return blocks
    for call in map(_as_dict, _as_list(calls, "tool_calls")):
        function = _as_dict(call.get("function"))
        arguments = function.get("arguments")
        parsed: Any = arguments
        if isinstance(arguments, str):
            try:
                parsed = pydantic_core.from_json(arguments) if arguments.strip() else {}
            except ValueError:
                parsed = {}  # the model's malformed call: its tool result says so
        blocks.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "input": parsed if isinstance(parsed, dict) else {},
            }
        )
    return blocks


def _tool(tool: object) -> dict[str, Any]:
    """An OpenAI ``{"type": "function", "function": {...}}`` tool as Anthropic's."""
    spec = _as_dict(tool)
    if "function" not in spec:
        return dict(spec)  # already Anthropic's (or a server tool such as web_search)
    function = _as_dict(spec["function"])
    out: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: object, parallel: object) -> dict[str, Any] | None:
    if choice is None:
        out: dict[str, Any] | None = None
    elif isinstance(choice, str):
        if choice not in _TOOL_CHOICE:
            raise ConfigError(f"tool_choice must be auto, required or none, not {choice!r}")
        out = {"type": _TOOL_CHOICE[choice]}
    else:
        spec = _as_dict(choice)
        if "function" in spec:
            out = {"type": "tool", "name": _as_dict(spec["function"]).get("name")}
        else:
            out = dict(spec)  # already Anthropic's
    if parallel is False:
        out = {"type": "auto"} if out is None else out
        if out.get("type") != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _as_dict(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _as_list(value: object, what: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(cast(Sequence[Any], value))
    raise ConfigError(f"{what} must be a list, got {type(value).__name__}")


async def _credential(request: ChatRequest) -> tuple[str | None, bool]:
    """The key to send and whether it is a bearer token (remembered: never quoted)."""
    config = request.config
    key = await config.aget_api_key()
    bearer = config.auth_type == "oauth2"
    if key is None:
        key = os.environ.get("ANTHROPIC_API_KEY") or None
        if key is None:
            key = os.environ.get("ANTHROPIC_AUTH_TOKEN") or None
            bearer = key is not None
        if key is None and config.api_base is None:
            raise MissingAPIKeyError(
                f"no API key for model {config.model!r}: set the ANTHROPIC_API_KEY "
                "environment variable or pass LLMConfig(api_key=...)",
                env_var="ANTHROPIC_API_KEY",
                model=config.model,
            )
    remember_secret(key)
    return key, bearer


# -- the answer ---------------------------------------------------------------------------
def _payload(data: bytes, model: str) -> dict[str, Any]:
    try:
        payload: Any = pydantic_core.from_json(data)
    except ValueError:
        shown = redact(data[:80].decode("utf-8", "replace"))
        raise StreamError(
            f"stream from {model!r} sent malformed data: {shown!r}", model=model
        ) from None
    if not isinstance(payload, dict):
        raise StreamError(f"stream from {model!r} sent a non-object event", model=model)
    return cast(dict[str, Any], payload)


def _usage(raw: Mapping[str, Any]) -> Usage | None:
    """Anthropic's usage (cache tokens count as prompt tokens, as litellm counts them)."""
    prompt = sum(
        int(raw.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    completion = int(raw.get("output_tokens") or 0)
    if not prompt and not completion:
        return None
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


class _Tool:
    __slots__ = ("has_arguments", "ordinal")

    def __init__(self, ordinal: int) -> None:
        self.ordinal = ordinal
        self.has_arguments = False


class _StreamState:
    """Turns the events of one Messages stream into kagura's events."""

    __slots__ = ("done", "model", "stop_reason", "tools", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.tools: dict[int, _Tool] = {}  # content block index -> its tool call
        self.usage: dict[str, Any] = {}  # cumulative, as message_start and message_delta say
        self.stop_reason: str | None = None
        self.done = False

    def feed(self, payload: dict[str, Any]) -> list[StreamEvent]:
        """The events of one Messages event (one content delta is one event)."""
        if payload.get("type") == "content_block_delta":  # the hot path: no generator
            event = self.delta(payload)
            return [] if event is None else [event]
        return self.other(payload)

    def delta(self, payload: dict[str, Any]) -> StreamEvent | None:
        delta = _as_dict(payload.get("delta"))
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            return TextDelta(text) if text and isinstance(text, str) else None
        if dtype == "input_json_delta":
            tool = self.tools.get(payload.get("index", -1))
            part = delta.get("partial_json")
            if tool is not None and part and isinstance(part, str):
                tool.has_arguments = True
                return ToolCallDelta(index=tool.ordinal, arguments=part)
        elif dtype == "thinking_delta":
            thought = delta.get("thinking")
            return ReasoningDelta(thought) if thought and isinstance(thought, str) else None
        return None  # signature_delta, citations_delta: nothing for kagura's events

    def other(self, payload: dict[str, Any]) -> list[StreamEvent]:
        kind = payload.get("type")
        events: list[StreamEvent] = []
        if kind == "content_block_start":
            block = _as_dict(payload.get("content_block"))
            btype = block.get("type")
            if btype == "tool_use":  # not server_tool_use: Anthropic runs those itself
                tool = _Tool(len(self.tools))
                self.tools[payload.get("index", -1)] = tool
                events.append(
                    ToolCallDelta(
                        index=tool.ordinal,
                        id=str(block.get("id") or ""),
                        name=str(block.get("name") or ""),
                    )
                )
                given = block.get("input")
                if given:
                    tool.has_arguments = True
                    arguments = pydantic_core.to_json(given).decode()
                    events.append(ToolCallDelta(index=tool.ordinal, arguments=arguments))
            elif btype in ("text", "thinking"):
                start = block.get(btype)
                if start and isinstance(start, str):
                    events.append(TextDelta(start) if btype == "text" else ReasoningDelta(start))
        elif kind == "content_block_stop":
            tool = self.tools.get(payload.get("index", -1))
            if tool is not None and not tool.has_arguments:
                tool.has_arguments = True
                events.append(ToolCallDelta(index=tool.ordinal, arguments="{}"))
        elif kind == "message_start":
            self.usage.update(_as_dict(_as_dict(payload.get("message")).get("usage")))
        elif kind == "message_delta":
            self.usage.update(_as_dict(payload.get("usage")))
            reason = _as_dict(payload.get("delta")).get("stop_reason")
            if reason:
                self.stop_reason = str(reason)
        elif kind == "message_stop":
            self.done = True
            usage = _usage(self.usage)
            if usage is not None:
                events.append(usage)
            events.append(Finish(finish_reason(self.stop_reason)))
        elif kind == "error":
            raise StreamError(
                f"stream from {self.model!r} failed mid-stream: {_error_detail(payload)}",
                model=self.model,
            )
        # ping and event types added later: nothing to do
        return events


def _error_detail(payload: Mapping[str, Any]) -> str:
    """``message (type)`` of Anthropic's ``{"type": "error", "error": {...}}``, redacted."""
    error: Any = payload.get("error")
    if isinstance(error, dict):
        fields = cast(dict[str, Any], error)
        message = str(fields.get("message") or "unknown error")
        kind = fields.get("type")
        detail = f"{message} ({kind})" if kind else message
    else:
        detail = str(error or "unknown error")
    return redact(detail)[:300]


def _status_error(answer: ErrorBody, model: str) -> LLMError:
    try:
        parsed: Any = pydantic_core.from_json(answer.body)
    except ValueError:
        detail = redact(answer.body[:200].decode("utf-8", "replace"))
    else:
        detail = _error_detail(cast(dict[str, Any], parsed)) if isinstance(parsed, dict) else ""
    return error_for_status(answer.status, model=model, detail=detail or answer.reason)
