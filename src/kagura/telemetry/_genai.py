"""The OpenTelemetry GenAI semantic conventions as kagura fills them: names and values.

Plain data, no OpenTelemetry import. The names are those of the installed
``opentelemetry-semantic-conventions`` (``gen_ai_attributes``, ``gen_ai_metrics``); the
tests check them against it. kagura's own additions are under ``kagura.``.

>>> provider_name("anthropic/claude-sonnet-4-5"), provider_name("gpt-4o-mini")
('anthropic', 'openai')
>>> provider_name("gemini/gemini-2.5-flash"), provider_name("ollama/llama3")
('gcp.gemini', 'ollama')
>>> server("http://user:pw@127.0.0.1:8080/v1?key=k", "openai")
('127.0.0.1', 8080)
>>> server(None, "anthropic"), server(None, "ollama")
(('api.anthropic.com', 443), None)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast
from urllib.parse import urlsplit

from kagura._redact import redact
from kagura.events import ToolCall

__all__ = [
    "input_messages",
    "output_messages",
    "provider_name",
    "server",
]

# Attributes (gen_ai_attributes, server_attributes, error_attributes).
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_SEED: Final = "gen_ai.request.seed"
REQUEST_STREAM: Final = "gen_ai.request.stream"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
AGENT_NAME: Final = "gen_ai.agent.name"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

# kagura's own (no convention names them).
TOKENS_PER_SECOND: Final = "kagura.response.tokens_per_second"
USAGE_ESTIMATED: Final = "kagura.usage.estimated"
ATTEMPTS: Final = "kagura.attempts"
OUTCOME: Final = "kagura.outcome"

# Values (gen_ai_attributes' enums).
CHAT: Final = "chat"
INVOKE_AGENT: Final = "invoke_agent"
EXECUTE_TOOL: Final = "execute_tool"
INPUT: Final = "input"
OUTPUT: Final = "output"

# Metrics (gen_ai_metrics), with the conventions' advised bucket boundaries.
TOKEN_USAGE: Final = "gen_ai.client.token.usage"
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
TOKEN_BUCKETS: Final = tuple(float(4**i) for i in range(14))  # 1, 4, 16 ... 67108864
SECONDS_BUCKETS: Final = tuple(0.01 * 2**i for i in range(14))  # 0.01, 0.02 ... 81.92

# A model's provider prefix (kagura's and litellm's) -> gen_ai.provider.name.
_PROVIDERS: Final = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "cohere": "cohere",
    "groq": "groq",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
# The endpoints kagura's direct transports use when no api_base is given.
_DEFAULT_SERVERS: Final = {
    "openai": ("api.openai.com", 443),
    "anthropic": ("api.anthropic.com", 443),
    "gcp.gemini": ("generativelanguage.googleapis.com", 443),
}


def provider_name(model: str) -> str:
    """``gen_ai.provider.name`` for a kagura model string.

    A model without a prefix speaks OpenAI's protocol; an unknown prefix is its own name
    (``kagura`` for the offline models).
    """
    prefix, slash, _ = model.partition("/")
    if not slash:
        return "openai"
    return _PROVIDERS.get(prefix, prefix)


def server(api_base: str | None, provider: str) -> tuple[str, int] | None:
    """``server.address`` and ``server.port``: the host of ``api_base``, never its credentials."""
    if api_base is None:
        return _DEFAULT_SERVERS.get(provider)
    parts = urlsplit(api_base)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):
        parts: list[dict[str, Any]] = []
        for item in cast("list[Any]", content):
            if isinstance(item, Mapping):
                part = cast("Mapping[str, Any]", item)
                kind = str(part.get("type", "text"))
                if kind == "text":
                    parts.append({"type": "text", "content": str(part.get("text", ""))})
                else:  # an image, audio, a file: named, not copied
                    parts.append({"type": kind})
            else:
                parts.append({"type": "text", "content": str(item)})
        return parts
    return [{"type": "text", "content": str(content)}]


def _tool_call_part(call: ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_call",
        "id": call.id,
        "name": call.name,
        "arguments": _arguments(call.arguments),
    }


def input_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """``gen_ai.input.messages``: the chat messages in the conventions' JSON shape, redacted."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = str(message.get("role", "user"))
        if role == "tool":
            parts: list[dict[str, Any]] = [
                {
                    "type": "tool_call_response",
                    "id": str(message.get("tool_call_id", "")),
                    "response": message.get("content"),
                }
            ]
        else:
            parts = _parts(message.get("content"))
            for raw in cast("list[Any]", message.get("tool_calls") or []):
                if isinstance(raw, Mapping):
                    call = cast("Mapping[str, Any]", raw)
                    function = cast("Mapping[str, Any]", call.get("function") or {})
                    parts.append(
                        _tool_call_part(
                            ToolCall(
                                str(call.get("id", "")),
                                str(function.get("name", "")),
                                str(function.get("arguments", "")),
                            )
                        )
                    )
        converted.append({"role": role, "parts": parts})
    return _dump(converted)


def output_messages(
    text: str, tool_calls: Sequence[ToolCall], finish_reason: str, reasoning: str = ""
) -> str:
    """``gen_ai.output.messages``: the model's answer in the conventions' JSON shape, redacted.

    >>> json.loads(output_messages("Hi", [ToolCall("c1", "f", '{"x": 1}')], "tool_calls"))[0]
    {'role': 'assistant', 'parts': [{'type': 'text', 'content': 'Hi'}, {'type': 'tool_call',
     'id': 'c1', 'name': 'f', 'arguments': {'x': 1}}], 'finish_reason': 'tool_calls'}
    """
    parts: list[dict[str, Any]] = []
    if reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    parts += _parts(text)
    parts += [_tool_call_part(call) for call in tool_calls]
    message = {"role": "assistant", "parts": parts, "finish_reason": finish_reason}
    return _dump([message])


def _dump(value: object) -> str:
    return json.dumps(redact(value), ensure_ascii=False, default=str)
