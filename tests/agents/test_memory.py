"""ConversationMemory: bounded, never starts with an orphan answer, marks interrupted answers."""

from __future__ import annotations

import pytest

from kagura.agents.memory import INTERRUPTED_MARKER, ConversationMemory, MemoryMessage
from kagura.errors import ConfigError


def test_turns_become_messages() -> None:
    memory = ConversationMemory()
    memory.add_turn("question", "answer")
    assert memory.to_messages() == [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "answer"},
    ]


def test_bounded_and_starts_with_a_user_message() -> None:
    memory = ConversationMemory(max_messages=3)
    for i in range(5):
        memory.add_turn(f"q{i}", f"a{i}")
        assert len(memory) <= 3
        assert memory.messages[0].role == "user"
    assert [m.content for m in memory] == ["q4", "a4"]


def test_single_messages() -> None:
    memory = ConversationMemory(max_messages=2)
    memory.add("system", "be brief")
    memory.add("user", "hi")
    memory.add("assistant", "hello")
    assert [m.role for m in memory] == ["user", "assistant"]


def test_interrupted_answers_are_marked_when_sent() -> None:
    memory = ConversationMemory()
    memory.add_turn("tell me", "Once upon", interrupted=True)
    memory.add_turn("again", "", interrupted=True)
    assert memory.messages[1] == MemoryMessage("assistant", "Once upon", interrupted=True)
    sent = memory.to_messages()
    assert sent[1]["content"] == f"Once upon {INTERRUPTED_MARKER}"
    assert sent[3]["content"] == INTERRUPTED_MARKER


def test_clear_and_repr() -> None:
    memory = ConversationMemory(max_messages=4)
    memory.add_turn("a", "b")
    assert repr(memory) == "ConversationMemory(2/4 messages)"
    memory.clear()
    assert len(memory) == 0


def test_max_messages_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_messages"):
        ConversationMemory(max_messages=0)
