"""One chat request: the messages, the settings, and the checks every call shares.

>>> from kagura.llm.request import prepare_request
>>> request = prepare_request("Hello", None, {"seed": 7})
>>> request.messages, request.params
([{'role': 'user', 'content': 'Hello'}], {'seed': 7})
>>> prepare_request("Hello", None, {"temperature": 0})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
kagura.errors.ConfigError: temperature must be set on LLMConfig, not passed as a keyword ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kagura.errors import ConfigError
from kagura.llm.config import LLMConfig

__all__ = ["ChatRequest", "Messages", "check_call_kwargs", "prepare_request", "to_messages"]

Messages = Sequence[Mapping[str, Any]]

# Settings that belong to LLMConfig; passing them as call kwargs is ambiguous.
_RESERVED = frozenset(LLMConfig.model_fields) | {"messages", "stream", "stream_options"}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call: messages, settings, and extra provider parameters (tools...)."""

    messages: Sequence[Mapping[str, Any]]
    config: LLMConfig
    params: Mapping[str, Any] = field(default_factory=dict[str, Any])


def check_call_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Refuse call keywords that are :class:`LLMConfig` settings (the one place this is said)."""
    colliding = sorted(k for k in kwargs if k in _RESERVED)
    if colliding:
        names = ", ".join(colliding)
        raise ConfigError(
            f"{names} must be set on LLMConfig, not passed as a keyword argument "
            f"(e.g. LLMConfig({colliding[0]}=...))"
        )


def to_messages(prompt_or_messages: str | Messages) -> list[dict[str, Any]]:
    """A prompt string becomes one user message; a message list is checked and copied."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(prompt_or_messages):
        if not isinstance(message, Mapping) or "role" not in message:  # pyright: ignore[reportUnnecessaryIsInstance] (runtime check of user input)
            raise ConfigError(
                f"message {i} must be a mapping with a 'role', got {type(message).__name__}"
            )
        messages.append(dict(message))
    if not messages:
        raise ConfigError("messages must not be empty")
    return messages


def prepare_request(
    prompt_or_messages: str | Messages, config: LLMConfig | None, kwargs: Mapping[str, Any]
) -> ChatRequest:
    """Check the call's arguments and build the request."""
    check_call_kwargs(kwargs)
    return ChatRequest(
        messages=to_messages(prompt_or_messages), config=config or LLMConfig(), params=dict(kwargs)
    )
