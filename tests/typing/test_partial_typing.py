"""Typing of partial models: checked by pyright strict, and run by pytest.

A model still being written is a ``Partial[Model]``: its fields cannot be read as if they
were there (``draft.title`` is an error), :func:`~kagura.operators.peek` reads one with its
own type or ``None``, and :func:`~kagura.operators.is_complete` narrows to the model.
``final()`` is the model itself, and ``with_config`` keeps the agent's type. The lines marked
``pyright: ignore[...]`` must stay errors (``reportUnnecessaryTypeIgnoreComment`` fails the
check if they stop being one).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, assert_type

import reactivex
from pydantic import BaseModel
from reactivex import Observable
from reactivex import operators as rx

from kagura import AgentStream, LLMConfig, Partial, StreamingAgent, agent
from kagura import operators as ops
from kagura.agents.decorator import ModelStream, StreamingModelAgent


class Step(BaseModel):
    text: str
    minutes: int


class Recipe(BaseModel):
    title: str
    steps: list[Step]


RECIPE = '{"title": "Tea", "steps": [{"text": "Boil", "minutes": 5}]}'


@agent(stream=True, model="kagura/echo")
async def recipe(dish: str) -> AsyncIterator[Recipe]:
    """{{ dish }}"""
    ...


@agent(stream=True, model="kagura/echo", items=True, post=[ops.throttle(0.01)])
async def steps(a: str) -> AsyncIterator[Step]:
    """[{"text": "{{ a }}", "minutes": 1}]"""
    ...


def test_parse_model_is_typed_by_partial() -> None:
    whole = ops.parse_model(Recipe)
    partial = ops.parse_model(Recipe, partial=True)
    assert_type(whole, Callable[[Observable[str]], Observable[Recipe]])
    assert_type(partial, Callable[[Observable[str]], Observable[Partial[Recipe]]])
    flag: bool = bool(len(RECIPE))
    assert_type(
        ops.parse_model(Recipe, partial=flag),
        Callable[[Observable[str]], Observable[Partial[Recipe]]],
    )
    drafts = reactivex.from_iterable([RECIPE[:20], RECIPE[20:]]).pipe(partial, rx.to_list()).run()
    assert_type(drafts, list[Partial[Recipe]])
    first, last = drafts[0], drafts[-1]
    assert ops.peek(first, lambda r: r.steps) is None  # not started yet
    assert not ops.is_complete(first)
    assert ops.is_complete(last)
    assert_type(last, Recipe)  # narrowed by is_complete
    assert last.title == "Tea"


def test_a_partial_model_must_be_checked_before_reading_fields() -> None:
    draft: Partial[Recipe] = Recipe.model_construct(steps=[])  # as a snapshot: no title
    title = ops.peek(draft, lambda r: r.title)
    assert_type(title, str | None)
    assert title is None
    assert_type(ops.peek(draft, lambda r: r.steps[0].minutes, 0), int)
    assert_type(draft.model_dump(), dict[str, Any])
    assert draft.model_dump() == {"steps": []}
    assert_type(draft.model_fields_set, set[str])


def partial_fields_are_errors(draft: Partial[Recipe]) -> None:
    """Never run: each line is a type error that pyright must keep reporting."""
    print(draft.title)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
    ops.peek(draft, lambda r: r.colour)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownLambdaType]
    done: Recipe = draft  # pyright: ignore[reportAssignmentType]
    del done


async def test_a_model_agent_streams_partials_and_ends_with_the_model() -> None:
    typed: StreamingModelAgent[[str], Recipe] = recipe
    stream = typed(RECIPE)
    assert_type(stream, ModelStream[Recipe])
    as_agent_stream: AgentStream[Partial[Recipe]] = stream
    async for draft in as_agent_stream:
        assert_type(draft, Partial[Recipe])
        assert_type(ops.peek(draft, lambda r: r.title, ""), str)
    final = await stream.final()
    assert_type(final, Recipe)
    assert final == Recipe(title="Tea", steps=[Step(text="Boil", minutes=5)])


async def test_items_stay_complete() -> None:
    typed: StreamingAgent[[str], Step] = steps
    assert_type(typed("x"), AgentStream[Step])
    assert [s.text async for s in steps("tea")] == ["tea"]


async def test_with_config_keeps_the_agent_type() -> None:
    other = recipe.with_config(model="kagura/replay", api_base=None, temperature=0.0)
    typed: StreamingModelAgent[[str], Recipe] = other
    assert_type(typed("x"), ModelStream[Recipe])
    assert_type(steps.with_config(LLMConfig(model="kagura/echo"))("x"), AgentStream[Step])
    assert other.config.model == "kagura/replay"


def wrong_settings() -> None:
    """Never run: unknown settings and wrong types are type errors."""
    recipe.with_config(modle="gpt-4o")  # pyright: ignore[reportCallIssue]
    recipe.with_config(temperature="hot")  # pyright: ignore[reportArgumentType]
    recipe.with_config(model="gpt-4o")("tea", model="x")  # pyright: ignore[reportCallIssue]
