"""Conversation memory: a bounded history of user and assistant messages.

An ``@agent(enable_memory=True)`` keeps one :class:`ConversationMemory` and
sends its messages before each new prompt. A streamed answer that was closed
early (or failed after some text) is kept as far as it arrived, with
``interrupted=True``; the model sees it followed by :data:`INTERRUPTED_MARKER`,
so it knows the answer was cut off rather than finished.

>>> memory = ConversationMemory(max_messages=4)
>>> memory.add_turn("Hi, I am Ann.", "Hello Ann!")
>>> memory.add_turn("Tell me a long story.", "Once upon a", interrupted=True)
>>> [m["content"] for m in memory.to_messages()]
['Hi, I am Ann.', 'Hello Ann!', 'Tell me a long story.', 'Once upon a [interrupted]']
>>> memory.add_turn("What is my name?", "Ann.")
>>> len(memory), memory.messages[0].content
(4, 'Tell me a long story.')
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from kagura.errors import ConfigError

__all__ = ["DEFAULT_MAX_MESSAGES", "INTERRUPTED_MARKER", "ConversationMemory", "MemoryMessage"]

DEFAULT_MAX_MESSAGES = 20
INTERRUPTED_MARKER = "[interrupted]"
"""Appended (after a space) to an interrupted assistant message when it is sent to the model."""

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class MemoryMessage:
    """One remembered message. ``interrupted`` marks an answer that stopped early."""

    role: Role
    content: str
    interrupted: bool = False

    def to_message(self) -> dict[str, str]:
        """The message as sent to the model (an interrupted answer gets the marker)."""
        content = self.content
        if self.interrupted:
            content = f"{content} {INTERRUPTED_MARKER}" if content else INTERRUPTED_MARKER
        return {"role": self.role, "content": content}


class ConversationMemory:
    """At most ``max_messages`` messages, oldest dropped first.

    After trimming, the history never starts with an assistant message (a
    reply without its question), so it may hold one message fewer than the bound.
    """

    __slots__ = ("_messages", "max_messages")

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ConfigError(f"max_messages must be at least 1, got {max_messages}")
        self.max_messages = max_messages
        self._messages: list[MemoryMessage] = []

    @property
    def messages(self) -> tuple[MemoryMessage, ...]:
        """The remembered messages, oldest first."""
        return tuple(self._messages)

    def add(self, role: Role, content: str, *, interrupted: bool = False) -> None:
        """Remember one message."""
        self._messages.append(MemoryMessage(role, content, interrupted))
        self._trim()

    def add_turn(self, user: str, assistant: str, *, interrupted: bool = False) -> None:
        """Remember a question and its answer (``interrupted`` if the answer stopped early)."""
        self._messages.append(MemoryMessage("user", user))
        self._messages.append(MemoryMessage("assistant", assistant, interrupted))
        self._trim()

    def to_messages(self) -> list[dict[str, str]]:
        """The history as chat messages, ready to precede the next prompt."""
        return [m.to_message() for m in self._messages]

    def clear(self) -> None:
        """Forget everything."""
        self._messages.clear()

    def _trim(self) -> None:
        excess = len(self._messages) - self.max_messages
        if excess > 0:
            del self._messages[:excess]
        while self._messages and self._messages[0].role == "assistant":
            del self._messages[0]

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[MemoryMessage]:
        return iter(tuple(self._messages))

    def __repr__(self) -> str:
        return f"ConversationMemory({len(self._messages)}/{self.max_messages} messages)"
