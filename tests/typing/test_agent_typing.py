"""Typing of @agent call sites: checked by pyright strict, and run by pytest.

``await f(...)`` has the return annotation's type for ``stream=False``; with
``stream=True``, ``f(...)`` is an ``AgentStream`` of the iterator's element type.
Parameters keep their types: the lines marked ``pyright: ignore[...]`` must stay
errors (``reportUnnecessaryTypeIgnoreComment`` fails the check if they stop being one).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import assert_type

import pytest
from pydantic import BaseModel

from kagura import Agent, AgentStream, ConversationMemory, LLMConfig, StreamingAgent, agent


class Person(BaseModel):
    name: str
    age: int


@agent
async def bare(topic: str) -> str:
    """{{ topic }}"""
    ...


@agent(model="kagura/echo")
async def count(word: str, times: int = 1) -> int:
    """{{ times }}"""
    ...


@agent(config=LLMConfig(model="kagura/echo"), temperature=0.0, enable_memory=True)
async def chat(message: str, memory: ConversationMemory | None = None) -> str:
    """{{ message }}"""
    ...


@agent(model="kagura/echo")
async def person(name: str, age: int) -> Person | None:
    """{"name": "{{ name }}", "age": {{ age }}}"""
    ...


@agent(model="kagura/echo")
def sync_style(word: str) -> list[str]:
    """["{{ word }}"]"""
    ...


@agent(stream=True, model="kagura/echo")
async def storyteller(topic: str) -> AsyncIterator[str]:
    """Write a story about {{ topic }}"""
    ...


@agent(stream=True, model="kagura/echo", items=True, pipeline=[])
async def people(a: str) -> AsyncIterator[Person]:
    """[{"name": "{{ a }}", "age": 1}]"""
    ...


def test_decorated_objects_are_typed() -> None:
    plain: Agent[[str], str] = bare
    streaming: StreamingAgent[[str], str] = storyteller
    assert_type(chat.memory, ConversationMemory | None)
    assert_type(count.prompt("x"), str)
    assert_type(streaming.config, LLMConfig)
    assert (plain.__name__, streaming.__name__) == ("bare", "storyteller")


async def wrong_calls() -> None:
    """Never run: each call is a type error that pyright must keep reporting."""
    await count(1)  # pyright: ignore[reportArgumentType]
    await count("word", times="two")  # pyright: ignore[reportArgumentType]
    await count("word", 1, 2)  # pyright: ignore[reportCallIssue]
    storyteller(topic=3)  # pyright: ignore[reportArgumentType]
    storyteller()  # pyright: ignore[reportCallIssue]
    wrong: str = await count("x")  # pyright: ignore[reportAssignmentType]
    not_a_stream: AgentStream[int] = storyteller("x")  # pyright: ignore[reportAssignmentType]
    del wrong, not_a_stream


def test_argument_types_are_checked_at_run_time_too() -> None:
    with pytest.raises(TypeError):
        storyteller("a", "b")  # pyright: ignore[reportCallIssue]


async def test_non_streaming_call_sites() -> None:
    assert_type(await count("x", times=3), int)
    assert await count("x", times=3) == 3
    assert_type(await chat("hello"), str)
    assert_type(await person("Ann", 36), Person | None)
    assert await person("Ann", 36) == Person(name="Ann", age=36)
    assert_type(await sync_style("tea"), list[str])


async def test_streaming_call_sites() -> None:
    stream = storyteller("dragons")
    assert_type(stream, AgentStream[str])
    chunks: list[str] = [chunk async for chunk in stream]
    assert "".join(chunks) == "Write a story about dragons"
    assert_type(people("Ann"), AgentStream[Person])
