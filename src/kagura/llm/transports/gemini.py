"""The direct Gemini transport: the Gemini API's ``generateContent`` over aiohttp, no litellm.

Used automatically for ``gemini/<model>`` (``LLMConfig(transport="litellm")`` opts
out). A streamed call is ``POST {api_base}/models/<model>:streamGenerateContent?alt=sse``
(``api_base`` defaults to :data:`GEMINI_API_BASE`; litellm builds the same URL from a
custom ``api_base``, so one serves both), a whole answer ``:generateContent``.

- **Credentials.** The key goes in the ``x-goog-api-key`` header, never in the URL: it is
  ``api_key``, else ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY`` from the environment; an
  OAuth2 token (``auth_type="oauth2"``) goes as ``Authorization: Bearer``. With none of
  them a request to ``api_base`` carries no credential; without ``api_base`` it is a
  :class:`~kagura.errors.MissingAPIKeyError`.
- **Requests.** kagura's OpenAI-style messages become ``contents``: system (and
  developer) messages ``systemInstruction``, assistant turns role ``"model"``, tool
  calls ``functionCall`` parts, ``tool`` results ``functionResponse`` parts (named after
  the call they answer). ``tools`` become ``functionDeclarations`` whose parameter
  schemas are cut to the OpenAPI subset Gemini accepts (:func:`gemini_schema`).
  ``temperature``, ``top_p`` and ``max_tokens`` go into ``generationConfig``, as do the
  call arguments ``stop``, ``seed``, ``presence_penalty``, ``frequency_penalty``,
  ``response_format`` and a ``generationConfig`` mapping; ``tool_choice`` becomes
  ``toolConfig``; ``extra_headers`` become headers; any other argument goes into the
  body as given (``safetySettings``...). The model name goes into the URL path, so it
  may hold only letters, digits, ``.``, ``_`` and ``-``.
- **Answers.** Text parts are :class:`~kagura.events.TextDelta`, thought parts
  :class:`~kagura.events.ReasoningDelta`, each ``functionCall`` one whole
  :class:`~kagura.events.ToolCallDelta` (id ``call_<n>``, with its thought signature
  appended after ``__thought__``, litellm's convention, so that it travels back with the
  tool result), the last ``usageMetadata`` one :class:`~kagura.events.Usage` (thought
  tokens count as completion tokens), then :class:`~kagura.events.Finish`: ``STOP`` is
  ``"stop"`` (``"tool_calls"`` if there were calls), ``MAX_TOKENS`` ``"length"``, a
  safety reason ``"content_filter"``, any other reason in lower case.
- **A blocked answer is an error, not an empty text.** ``promptFeedback.blockReason``, or
  a safety finish reason before any text or tool call, raises
  :class:`~kagura.errors.ContentFilterError` naming the reason.
- **Errors.** ``RESOURCE_EXHAUSTED`` is a :class:`~kagura.errors.RateLimitError`;
  ``UNAUTHENTICATED``, ``PERMISSION_DENIED`` and an invalid key an
  :class:`~kagura.errors.AuthError`; ``NOT_FOUND`` a
  :class:`~kagura.errors.ModelNotFoundError`; 5xx a
  :class:`~kagura.errors.ProviderError`, retried like 429 within ``max_retries``
  (:mod:`kagura.llm.transports.http`); an ``{"error": ...}`` inside the stream, or a
  stream that ends without a finish reason, a :class:`~kagura.errors.StreamError`.

>>> gemini_schema({"type": "object", "additionalProperties": False,
...                "properties": {"n": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}})
{'type': 'object', 'properties': {'n': {'type': 'integer', 'nullable': True}}}
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pydantic_core

from kagura._redact import redact, remember_secret
from kagura.errors import (
    AuthError,
    ConfigError,
    ContentFilterError,
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
    read_body,
)
from kagura.llm.transports.sse import SSEDecoder

__all__ = [
    "GEMINI_API_BASE",
    "THOUGHT_SIGNATURE_SEPARATOR",
    "GeminiTransport",
    "gemini_schema",
]

GEMINI_API_BASE = "https://generativelanguage.googleapis.com/v1beta"
THOUGHT_SIGNATURE_SEPARATOR = "__thought__"
"""Between a tool call's id and its Gemini thought signature (litellm's convention)."""

_USER_AGENT = "kagura (gemini transport)"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_BLOCKED = frozenset(
    [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    ]
)
_FINISH = {"STOP": "stop", "FINISH_REASON_UNSPECIFIED": "stop", "MAX_TOKENS": "length"}
_STATUS_KINDS = {"RESOURCE_EXHAUSTED": 429, "NOT_FOUND": 404}
_AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
_PARAMS_IN_CONFIG = {
    "stop": "stopSequences",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
# The keys of Gemini's Schema (a subset of OpenAPI 3.0's) kept by gemini_schema.
_SCHEMA_KEYS = frozenset(
    [
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "default",
        "example",
        "anyOf",
        "propertyOrdering",
    ]
)
_FORMATS = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}
_MAX_SCHEMA_DEPTH = 32


def _model_name(model: str) -> str:
    """The model's name for the URL path, checked (it is not URL-encoded, it is refused)."""
    name = model.removeprefix("gemini/")
    if not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"Gemini model name {name!r} may hold only letters, digits, '.', '_' and '-' "
            "(it goes into the URL path), and no '..'"
        )
    return name


def _url(api_base: str | None, model: str, *, stream: bool) -> str:
    """``{api_base}/models/<model>:<action>``, keeping a query the base already has."""
    action = "streamGenerateContent" if stream else "generateContent"
    base = urlsplit(api_base or GEMINI_API_BASE)
    path = f"{base.path.rstrip('/')}/models/{_model_name(model)}:{action}"
    query = "&".join(q for q in (base.query, "alt=sse" if stream else "") if q)
    return urlunsplit((base.scheme, base.netloc, path, query, ""))


class GeminiTransport:
    """Sends requests to the Gemini API's ``generateContent`` (see the module doc)."""

    name = "gemini"

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
                "user-agent": _USER_AGENT,
            }
            if stream:
                sent["accept-encoding"] = "identity"  # a compressed stream arrives in bursts
            sent.update(extra)
            api_key = await _api_key(request)
            if api_key and config.auth_type == "oauth2":
                check_header_value("authorization", api_key, error=AuthError)
                sent["authorization"] = f"Bearer {api_key}"
            elif api_key:
                check_header_value("x-goog-api-key", api_key)
                sent["x-goog-api-key"] = api_key
            return sent

        return headers

    async def _send(self, request: ChatRequest, *, stream: bool) -> aiohttp.ClientResponse:
        config = request.config
        url = _url(config.api_base, config.model, stream=stream)
        body = pydantic_core.to_json(request_body(request))
        return await self._client.post(
            url,
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
        answer = _Answer(model)
        content = response.content
        try:
            while True:
                data = await content.readany()
                watch.touch()
                if not data:
                    decoder.end()
                    break
                for sse in decoder.feed(data):
                    if sse.data:
                        for event in answer.read(_payload(sse.data, model)):
                            yield event
                if decoder.error is not None:  # a line too long: the server may stall after it
                    raise decoder.error
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            response.close()
            if answer.finish is None:
                raise StreamError(
                    f"stream from {model!r} failed mid-stream: {describe_error(exc)}",
                    model=model,
                    usage=answer.usage,
                ) from exc
            # The finish reason had come: the answer is whole, only the body's end is lost.
        except BaseException:
            response.close()  # a consumer that stopped early, a cancellation, an error
            raise
        else:
            response.release()  # the body ended: the connection goes back to the pool
        finally:
            watch.stop()
        if answer.finish is None:
            raise StreamError(
                f"stream from {model!r} ended before it finished", model=model, usage=answer.usage
            )
        for event in answer.end():
            yield event

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
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            shown = redact(raw[:80].decode("utf-8", "replace"))
            raise ProviderError(
                f"{model!r}: the answer is not a GenerateContentResponse: {shown!r}", model=model
            )
        body = cast(dict[str, Any], payload)
        if "error" in body:
            raise ProviderError(f"{model!r}: {_error_message(body)}", model=model)
        answer = _Answer(model)
        events = list(answer.read(body))
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        for event in events:
            if type(event) is TextDelta:
                text.append(event.text)
            elif type(event) is ReasoningDelta:
                reasoning.append(event.text)
            elif type(event) is ToolCallDelta:
                calls.append(ToolCall(event.id or "", event.name or "", event.arguments))
        if answer.finish is None and not events:
            raise ProviderError(f"{model!r}: the answer has no candidates", model=model)
        return Completion(
            text="".join(text),
            tool_calls=tuple(calls),
            usage=answer.usage,
            finish_reason=answer.reason() if answer.finish is not None else None,
            reasoning="".join(reasoning),
        )


class _Answer:
    """What one answer's payloads said so far: calls, text, the last usage, the finish."""

    __slots__ = ("answered", "calls", "finish", "meta", "model")

    def __init__(self, model: str) -> None:
        self.model = model
        self.calls = 0
        self.answered = False  # any text (not thought) so far
        self.meta: dict[str, Any] | None = None  # the last usageMetadata, read when needed
        self.finish: str | None = None  # Gemini's finishReason, as sent

    @property
    def usage(self) -> Usage | None:
        """The usage the last ``usageMetadata`` reported (``None``: none, or all zero)."""
        return _usage(self.meta) if self.meta is not None else None

    def read(self, payload: dict[str, Any]) -> Iterator[StreamEvent]:
        """The text, reasoning and tool-call events of one ``GenerateContentResponse``."""
        if "error" in payload:
            raise StreamError(
                f"stream from {self.model!r} failed mid-stream: {_error_message(payload)}",
                model=self.model,
                usage=self.usage,
            )
        meta: Any = payload.get("usageMetadata")
        if isinstance(meta, dict):
            self.meta = cast(dict[str, Any], meta)
        feedback: Any = payload.get("promptFeedback")
        if isinstance(feedback, dict) and cast(dict[str, Any], feedback).get("blockReason"):
            raise self._blocked("the prompt", cast(dict[str, Any], feedback))
        candidates: Any = payload.get("candidates")
        if not candidates or not isinstance(candidates, list):
            return
        candidate: Any = cast(list[Any], candidates)[0]
        if not isinstance(candidate, dict):
            return
        candidate = cast(dict[str, Any], candidate)
        content: Any = candidate.get("content")
        parts: Any = cast(dict[str, Any], content).get("parts") if isinstance(content, dict) else ()
        for part in cast(list[Any], parts or ()):
            if not isinstance(part, dict):
                continue
            part = cast(dict[str, Any], part)
            text = part.get("text")
            if text and isinstance(text, str):
                if part.get("thought") is True:
                    yield ReasoningDelta(text)
                else:
                    self.answered = True
                    yield TextDelta(text)
            call: Any = part.get("functionCall")
            if isinstance(call, dict):
                yield self._call(cast(dict[str, Any], call), part.get("thoughtSignature"))
        finish = candidate.get("finishReason")
        if finish and isinstance(finish, str):
            self.finish = finish
            if finish in _BLOCKED and not self.answered and not self.calls:
                raise self._blocked("the answer", candidate)

    def _call(self, call: dict[str, Any], signature: object) -> ToolCallDelta:
        index = self.calls
        self.calls += 1
        call_id = str(call.get("id") or f"call_{index}")
        if isinstance(signature, str) and signature:
            call_id = f"{call_id}{THOUGHT_SIGNATURE_SEPARATOR}{signature}"
        args: Any = call.get("args")
        return ToolCallDelta(
            index=index,
            id=call_id,
            name=str(call.get("name") or ""),
            arguments=pydantic_core.to_json(args if args is not None else {}).decode(),
        )

    def _blocked(self, what: str, where: dict[str, Any]) -> ContentFilterError:
        reason = str(where.get("blockReason") or where.get("finishReason") or "")
        message = where.get("blockReasonMessage") or where.get("finishMessage")
        detail = f": {redact(str(message))[:300]}" if message else ""
        return ContentFilterError(
            f"{self.model!r}: Gemini blocked {what} ({reason}){detail}",
            model=self.model,
            usage=self.usage,
        )

    def reason(self) -> str:
        """The finish reason in kagura's (OpenAI's) words."""
        finish = self.finish or "STOP"
        if finish in _BLOCKED:
            return "content_filter"
        if self.calls and finish == "STOP":
            return "tool_calls"
        return _FINISH.get(finish) or finish.lower()

    def end(self) -> list[StreamEvent]:
        """The last events of a finished answer: its usage (if any), then its finish."""
        finish = Finish(self.reason())
        usage = self.usage
        return [usage, finish] if usage is not None else [finish]


def _payload(data: bytes, model: str) -> dict[str, Any]:
    """One SSE ``data`` payload as a JSON object."""
    try:
        chunk: Any = pydantic_core.from_json(data)
    except ValueError:
        shown = redact(data[:80].decode("utf-8", "replace"))
        raise StreamError(
            f"stream from {model!r} sent malformed data: {shown!r}", model=model
        ) from None
    if not isinstance(chunk, dict):
        raise StreamError(f"stream from {model!r} sent a non-object chunk", model=model)
    return cast(dict[str, Any], chunk)


def _usage(meta: Mapping[str, Any]) -> Usage | None:
    """``usageMetadata`` as :class:`Usage`: thought tokens are completion tokens.

    ``candidatesTokenCount`` includes the thoughts when prompt + candidates == total
    (as litellm reads it); otherwise the thoughts are added.
    """
    try:
        prompt = int(meta.get("promptTokenCount") or 0) + int(
            meta.get("toolUsePromptTokenCount") or 0
        )
        candidates = int(meta.get("candidatesTokenCount") or 0)
        thoughts = int(meta.get("thoughtsTokenCount") or 0)
        total = int(meta.get("totalTokenCount") or 0)
    except (TypeError, ValueError):
        return None
    completion = candidates if prompt + candidates == total else candidates + thoughts
    if not prompt and not completion:
        return None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total or prompt + completion,
    )


async def _api_key(request: ChatRequest) -> str | None:
    """The key to send (remembered, so no error or log line can quote it)."""
    config = request.config
    api_key = await config.aget_api_key()
    if api_key is None:
        api_key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or None
        if api_key is None and config.api_base is None:
            raise MissingAPIKeyError(
                f"no API key for model {config.model!r}: set the GEMINI_API_KEY (or "
                "GOOGLE_API_KEY) environment variable or pass LLMConfig(api_key=...)",
                env_var="GEMINI_API_KEY",
                model=config.model,
            )
    remember_secret(api_key)
    return api_key


# -- the request -----------------------------------------------------------------------


def request_body(request: ChatRequest) -> dict[str, Any]:
    """The ``GenerateContentRequest`` for a chat request (see the module doc)."""
    config = request.config
    system, contents = _contents(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    generation: dict[str, Any] = {"temperature": config.temperature, "topP": config.top_p}
    if config.max_tokens is not None:
        generation["maxOutputTokens"] = config.max_tokens
    for key, value in request.params.items():
        if key == "extra_headers":
            continue
        if key in _PARAMS_IN_CONFIG:
            if key == "stop" and isinstance(value, str):
                value = [value]
            generation[_PARAMS_IN_CONFIG[key]] = value
        elif key == "response_format":
            generation.update(_response_format(value))
        elif key == "generationConfig" and isinstance(value, Mapping):
            generation.update(cast(Mapping[str, Any], value))
        elif key == "tools":
            if tools := _tools(value):
                body["tools"] = tools
        elif key == "tool_choice":
            body["toolConfig"] = _tool_choice(value)
        else:
            body[key] = value
    body["generationConfig"] = generation
    return body


def _contents(messages: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """The system parts and the ``contents`` of a conversation (same-role turns merged)."""
    system: list[Any] = []
    contents: list[dict[str, Any]] = []

    def add(role: str, parts: list[Any]) -> None:
        if not parts:
            return  # Gemini refuses a turn without parts
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for position, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_parts(content, position))
        elif role == "user":
            add("user", _parts(content, position))
        elif role == "assistant":
            parts = _parts(content, position)
            calls: Any = message.get("tool_calls") or ()
            for call in cast(Sequence[Any], calls):
                parts.append(_function_call(call, position))
            add("model", parts)
        elif role in ("tool", "function"):
            name = _tool_name(messages, position)
            response = {"name": name, "response": {"content": _text(content, position)}}
            add("user", [{"functionResponse": response}])
        else:
            raise ConfigError(f"message {position} has role {role!r}, which Gemini cannot take")
    return system, contents


def _parts(content: object, position: int) -> list[Any]:
    """A message's content (a string or OpenAI content parts) as Gemini parts."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise ConfigError(f"message {position}: content must be a string or a list of parts")
    parts: list[Any] = []
    for item in cast(list[Any], content):
        item = cast(dict[str, Any], item) if isinstance(item, dict) else {}
        kind = item.get("type")
        if kind == "text":
            if item.get("text"):
                parts.append({"text": str(item["text"])})
        elif kind == "image_url":
            parts.append(_inline_data(item.get("image_url"), position))
        else:
            raise ConfigError(
                f"message {position}: content part type {kind!r} is not supported for Gemini "
                "(text, and image_url with a data: URL)"
            )
    return parts


def _inline_data(image: object, position: int) -> dict[str, Any]:
    url: Any = cast(dict[str, Any], image).get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return {"inlineData": {"mimeType": mime, "data": data}}
    raise ConfigError(
        f"message {position}: Gemini takes images inline only: pass a data: URL "
        "(data:image/png;base64,...)"
    )


def _text(content: object, position: int) -> str:
    """A tool result's text (a string, or text parts joined)."""
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in _parts(content, position) if "text" in p)


def _function_call(call: object, position: int) -> dict[str, Any]:
    """An OpenAI ``tool_calls`` entry as a ``functionCall`` part (with its signature)."""
    entry = cast(dict[str, Any], call) if isinstance(call, dict) else {}
    function: Any = entry.get("function")
    function = cast(dict[str, Any], function) if isinstance(function, dict) else {}
    arguments: Any = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = pydantic_core.from_json(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = None
    if not isinstance(arguments, dict):
        raise ConfigError(
            f"message {position}: the arguments of tool call {function.get('name')!r} "
            "are not a JSON object"
        )
    part: dict[str, Any] = {
        "functionCall": {"name": str(function.get("name") or ""), "args": arguments}
    }
    call_id = entry.get("id")
    if isinstance(call_id, str) and THOUGHT_SIGNATURE_SEPARATOR in call_id:
        part["thoughtSignature"] = call_id.split(THOUGHT_SIGNATURE_SEPARATOR, 1)[1]
    return part


def _tool_name(messages: Sequence[Mapping[str, Any]], position: int) -> str:
    """The name of the call a ``tool`` message answers (its nearest earlier tool call)."""
    wanted = messages[position].get("tool_call_id")
    earlier = reversed(messages[:position]) if wanted else ()
    for message in earlier:
        if message.get("role") != "assistant":
            continue
        for call in cast(Sequence[Any], message.get("tool_calls") or ()):
            if isinstance(call, dict) and cast(dict[str, Any], call).get("id") == wanted:
                function: Any = cast(dict[str, Any], call).get("function") or {}
                return str(cast(dict[str, Any], function).get("name") or "")
    name = messages[position].get("name")
    if isinstance(name, str) and name:
        return name
    raise ConfigError(
        f"message {position}: a tool result for tool_call_id {wanted!r}, which no earlier "
        "assistant message made (Gemini needs the tool's name)"
    )


def _tools(tools: object) -> list[dict[str, Any]]:
    """OpenAI ``tools`` as one Gemini tool with ``functionDeclarations``."""
    declarations: list[dict[str, Any]] = []
    native: list[dict[str, Any]] = []
    for tool in cast(Sequence[Any], tools or ()):
        if not isinstance(tool, dict):
            raise ConfigError("each tool must be a mapping")
        function: Any = cast(dict[str, Any], tool).get("function")
        if not isinstance(function, dict):  # a tool in Gemini's own shape ({"googleSearch": {}})
            native.append(cast(dict[str, Any], tool))
            continue
        function = cast(dict[str, Any], function)
        declaration: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        parameters = gemini_schema(function.get("parameters") or {})
        if parameters.get("properties"):  # Gemini refuses an object without properties
            declaration["parameters"] = parameters
        declarations.append(declaration)
    return ([{"functionDeclarations": declarations}] if declarations else []) + native


def _tool_choice(choice: object) -> dict[str, Any]:
    """OpenAI's ``tool_choice`` as Gemini's ``toolConfig``."""
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    if isinstance(choice, str) and choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    if isinstance(choice, dict):
        function: Any = cast(dict[str, Any], choice).get("function")
        if isinstance(function, dict) and cast(dict[str, Any], function).get("name"):
            name = cast(dict[str, Any], function)["name"]
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise ConfigError(
        "tool_choice must be 'auto', 'none', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}"
    )


def _response_format(value: object) -> dict[str, Any]:
    """OpenAI's ``response_format`` as ``generationConfig`` fields."""
    spec = cast(dict[str, Any], value) if isinstance(value, dict) else {}
    kind = spec.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    schema: Any = spec.get("json_schema")
    if kind == "json_schema" and isinstance(schema, dict):
        inner: Any = cast(dict[str, Any], schema).get("schema")
        fields: dict[str, Any] = {"responseMimeType": "application/json"}
        if isinstance(inner, dict):
            fields["responseJsonSchema"] = inner
        return fields
    raise ConfigError("response_format must be {'type': 'text' | 'json_object' | 'json_schema'}")


def gemini_schema(schema: object) -> dict[str, Any]:
    """A JSON Schema (pydantic's, a tool's) cut to the OpenAPI subset Gemini accepts.

    Local ``$ref`` s are inlined (``$defs`` / ``definitions``); ``anyOf`` / ``oneOf``
    with ``{"type": "null"}`` and ``type: [X, "null"]`` become ``nullable``; ``allOf`` of
    one schema is merged; ``const`` becomes a one-value ``enum``. Dropped: every key
    Gemini's ``Schema`` lacks (``additionalProperties``, ``$schema``, ``$id``,
    ``exclusiveMinimum``, ``multipleOf``, ``uniqueItems``, ``examples``...), ``enum`` s
    that are not all strings, ``format`` s Gemini refuses for the type (it takes
    ``enum``/``date-time`` for strings, ``float``/``double``, ``int32``/``int64``), and
    ``required`` names that are not properties. A recursive ``$ref`` is a
    :class:`~kagura.errors.ConfigError` (Gemini's schemas cannot refer).
    """
    if not isinstance(schema, dict):
        return {}
    root = cast(dict[str, Any], schema)
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found: Any = root.get(key)
        if isinstance(found, dict):
            defs.update(cast(dict[str, Any], found))
    return _schema(root, defs, 0)


def _schema(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_SCHEMA_DEPTH:
        raise ConfigError(
            f"a tool's JSON schema nests deeper than {_MAX_SCHEMA_DEPTH} levels or refers to "
            "itself; Gemini's schemas cannot be recursive"
        )
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/") else None
        if not isinstance(target, dict):
            raise ConfigError(f"a tool's JSON schema has a $ref Gemini cannot follow: {ref!r}")
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**cast(dict[str, Any], target), **rest}
    all_of: Any = node.get("allOf")
    if isinstance(all_of, list) and len(cast(list[Any], all_of)) == 1:
        only: Any = cast(list[Any], all_of)[0]
        if isinstance(only, dict):
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return _schema({**cast(dict[str, Any], only), **rest}, defs, depth + 1)
    out: dict[str, Any] = {}
    variants: Any = node.get("anyOf", node.get("oneOf"))
    if isinstance(variants, list):
        options = [
            cast(dict[str, Any], v) for v in cast(list[Any], variants) if isinstance(v, dict)
        ]
        kept = [v for v in options if v != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        if len(kept) == 1:
            out = _schema({**kept[0], **rest}, defs, depth + 1)
        else:
            out = _schema(rest, defs, depth + 1)
            if kept:
                out["anyOf"] = [_schema(v, defs, depth + 1) for v in kept]
        if len(kept) < len(options):
            out["nullable"] = True
        return out
    kind: Any = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in cast(list[Any], kind) if k != "null"]
        rest = {k: v for k, v in node.items() if k != "type"}
        if len(kinds) == 1:
            out = _schema({**rest, "type": kinds[0]}, defs, depth + 1)
        else:
            out = _schema(rest, defs, depth + 1)
            if kinds:
                out["anyOf"] = [{"type": k} for k in kinds]
        if len(kinds) < len(cast(list[Any], kind)):
            out["nullable"] = True
        return out
    for key, value in node.items():
        if key == "const":
            if isinstance(value, str):
                out["enum"] = [value]
        elif key not in _SCHEMA_KEYS:
            continue
        elif key == "properties" and isinstance(value, dict):
            properties = {
                str(name): _schema(cast(dict[str, Any], sub), defs, depth + 1)
                for name, sub in cast(dict[str, Any], value).items()
                if isinstance(sub, dict)
            }
            if properties:
                out["properties"] = properties
        elif key == "items" and isinstance(value, dict):
            out["items"] = _schema(cast(dict[str, Any], value), defs, depth + 1)
        elif key == "enum":
            values = cast(list[Any], value) if isinstance(value, list) else []
            if values and all(isinstance(v, str) for v in values):
                out["enum"] = values
        elif key == "format":
            if value in _FORMATS.get(str(kind), frozenset[str]()):
                out["format"] = value
        elif key != "required":
            out[key] = value
    required: Any = node.get("required")
    if isinstance(required, list) and "properties" in out:
        names = [n for n in cast(list[Any], required) if n in out["properties"]]
        if names:
            out["required"] = names
    return out


# -- errors ----------------------------------------------------------------------------


def _error_object(payload: object) -> dict[str, Any]:
    """The ``error`` object of a Google error body (also inside a one-item array)."""
    if isinstance(payload, list) and payload:
        payload = cast(list[Any], payload)[0]
    if isinstance(payload, dict):
        error: Any = cast(dict[str, Any], payload).get("error")
        if isinstance(error, dict):
            return cast(dict[str, Any], error)
        if error:
            return {"message": str(error)}
    return {}


def _error_message(payload: object) -> str:
    error = _error_object(payload)
    message = str(error.get("message") or "unknown error")
    status = error.get("status")
    shown = f"{status}: {message}" if isinstance(status, str) and status else message
    return redact(shown)[:300]


def _status_error(answer: ErrorBody, model: str) -> LLMError:
    status = answer.status
    try:
        parsed: Any = pydantic_core.from_json(answer.body)
    except ValueError:
        parsed = None
    error = _error_object(parsed)
    if error:
        detail = _error_message(parsed)
    else:
        detail = redact(answer.body[:200].decode("utf-8", "replace")) or answer.reason
    name = error.get("status")
    message = str(error.get("message") or "")
    if name in _AUTH_STATUSES or (
        name == "INVALID_ARGUMENT"
        and ("API key not valid" in message or "API_KEY_INVALID" in str(error))
    ):
        return AuthError(
            f"{model!r}: the provider refused the credentials: {detail}",
            model=model,
            status_code=status,
        )
    kind = _STATUS_KINDS.get(str(name))
    if kind is not None and kind != status:
        typed = error_for_status(kind, model=model, detail=detail)
        typed.status_code = status
        return typed
    return error_for_status(status, model=model, detail=detail)
