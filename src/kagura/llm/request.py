"""One chat request: the messages, the settings, and the checks every call shares.

>>> from kagura.llm.request import prepare_request
>>> request = prepare_request("Hello", None, {"seed": 7})
>>> request.messages, request.params
([{'role': 'user', 'content': 'Hello'}], {'seed': 7})
>>> prepare_request("Hello", None, {"temperature": 0})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
kagura.errors.ConfigError: temperature must be set on LLMConfig, not passed as a keyword ...

The offline models' own arguments (:data:`OFFLINE_PARAMS`) stay with the offline models: a
request to any other model drops them, so one call serves both kinds of model:

>>> from kagura.llm.config import LLMConfig
>>> prepare_request("Hi", LLMConfig(model="kagura/replay"), {"replay_text": "Yo", "seed": 7}).params
{'replay_text': 'Yo', 'seed': 7}
>>> prepare_request("Hi", LLMConfig(model="gpt-4o"), {"replay_text": "Yo", "seed": 7}).params
{'seed': 7}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kagura.errors import ConfigError
from kagura.llm.config import LLMConfig, unsafe_char

__all__ = [
    "OFFLINE_PARAMS",
    "ChatRequest",
    "Messages",
    "check_call_kwargs",
    "prepare_request",
    "to_messages",
]

Messages = Sequence[Mapping[str, Any]]

# Settings that belong to LLMConfig; passing them as call kwargs is ambiguous.
_RESERVED = frozenset(LLMConfig.model_fields) | {"messages", "stream", "stream_options"}

OFFLINE_PARAMS = frozenset({"ttft", "tokens_per_s", "replay_text"})
"""The call arguments of kagura's offline models (:mod:`kagura.llm.transports.offline`)."""


def _served_offline(config: LLMConfig) -> bool:
    """True when an offline model answers: ``transport="direct"`` sends even a ``kagura/``
    model name to a server (:func:`kagura.llm.transports.resolve_transport`)."""
    return config.is_offline and config.transport != "direct"


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat call: messages, settings, and extra provider parameters (tools...).

    Unless an offline model answers, ``params`` loses the offline models' arguments
    (:data:`OFFLINE_PARAMS`) here, however the request was built, so no transport sends them.
    """

    messages: Sequence[Mapping[str, Any]]
    config: LLMConfig
    params: Mapping[str, Any] = field(default_factory=dict[str, Any])

    def __post_init__(self) -> None:
        _check_config_values(self.config)
        if not OFFLINE_PARAMS.isdisjoint(self.params) and not _served_offline(self.config):
            kept = {k: v for k, v in self.params.items() if k not in OFFLINE_PARAMS}
            object.__setattr__(self, "params", kept)  # frozen: this is its construction


def _check_config_values(config: LLMConfig) -> None:
    """Refuse an ``api_base`` or ``api_key`` that could break a URL or a header.

    ``LLMConfig`` checks both when it is built, but ``model_copy(update=...)`` and
    ``model_construct`` skip validation; every request passes here, whatever its
    transport. The value itself is never quoted.
    """
    for name, value in (("api_base", config.api_base), ("api_key", config.plain_api_key)):
        if value is not None and (where := unsafe_char(value)) is not None:
            raise ConfigError(
                f"{name} must not contain spaces or control characters "
                f"(found {where['char']} at index {where['index']})"
            )


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
