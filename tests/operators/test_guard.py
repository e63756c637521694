"""Every way a pipeline ends reaches its consumer: no error is lost, no stream hangs.

An exception raised while a pipeline completes (a model's validator, a last flush, a
timer's flush) used to end in the source's task or a scheduler callback: ``final()``
waited forever and asyncio logged "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import BaseModel, field_validator
from reactivex import Observable
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from kagura import LLMConfig, agent
from kagura import operators as ops
from kagura.errors import StreamError
from kagura.pipes import AgentStream

GUARD = 5.0  # seconds: a hang fails the test instead of the run


class Num(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def buggy(cls, value: int) -> int:
        raise TypeError("a bug in the validator")


Operator = Callable[[Observable[Any]], Observable[Any]]
PIPELINES: dict[str, tuple[str, list[Operator]]] = {
    "parse_model": ('{"n": 5}', [ops.parse_model(Num)]),
    "parse_model partial": ('{"n": 5}', [ops.parse_model(Num, partial=True)]),
    "throttle then parse_model": ('{"n": 5}', [ops.throttle(0.05), ops.parse_model(Num)]),
    "throttle then partial": (
        '{"n": 5}',
        [ops.throttle(0.05), ops.parse_model(Num, partial=True)],
    ),
    "chunk_lines then partial": (
        '{"n":\n5}',
        [ops.chunk_lines(), ops.parse_model(Num, partial=True)],
    ),
    "sentences then parse_model": ('{"n": 5}', [ops.buffer_sentences(), ops.parse_model(Num)]),
    "strip_tags then parse_model": ('{"n": 5}', [ops.strip_tags("think"), ops.parse_model(Num)]),
    "parse_items": ('[{"n": 5}]', [ops.parse_items(Num)]),
    "throttle then parse_items": ('[{"n": 5}]', [ops.throttle(0.05), ops.parse_items(Num)]),
}


@pytest.fixture
async def no_lost_task_errors() -> Any:
    """Fails the test if asyncio reports an exception nobody retrieved."""
    lost: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: lost.append(str(context.get("message"))))
    yield
    loop.set_exception_handler(None)
    assert lost == []


@pytest.mark.parametrize("case", PIPELINES.values(), ids=PIPELINES.keys())
@pytest.mark.usefixtures("no_lost_task_errors")
async def test_an_error_while_the_pipeline_ends_reaches_the_consumer(
    case: tuple[str, list[Operator]],
) -> None:
    text, pipeline = case
    stream = AgentStream.from_llm(
        "x",
        LLMConfig(model="kagura/replay"),
        pipeline=pipeline,
        replay_text=text,
        tokens_per_s=0,
        ttft=0,
    )
    async with asyncio.timeout(GUARD):
        with pytest.raises(TypeError, match="a bug in the validator"):
            async for _ in stream:
                pass
        with pytest.raises(TypeError, match="a bug in the validator"):
            await stream.final()


async def test_an_agent_with_a_throttle_and_a_typed_stream_raises() -> None:
    @agent(
        stream=True,
        model="kagura/replay",
        pipeline=[ops.throttle(0.05)],
        replay_text='{"n": 5}',
        tokens_per_s=0,
        ttft=0,
    )
    async def count(topic: str) -> AsyncIterator[Num]:
        """Count {{ topic }}."""
        raise NotImplementedError

    stream = count("sheep")
    async with asyncio.timeout(GUARD):
        with pytest.raises(TypeError, match="a bug in the validator"):
            async for _ in stream:
                pass


def test_the_first_failure_wins_when_a_flush_fails_after_it() -> None:
    # The source fails; throttle's flush of the text it held then fails in the validator:
    # the consumer sees the stream's own error (it carries the partial text).
    scheduler = TestScheduler()
    source: Subject[str] = Subject()
    errors: list[Exception] = []
    source.pipe(ops.throttle(10.0, scheduler=scheduler), ops.parse_model(Num)).subscribe(
        on_error=errors.append, scheduler=scheduler
    )
    source.on_next('{"n": ')  # passes the open gate
    source.on_next("5}")  # held
    source.on_error(StreamError("connection dropped", partial_text='{"n": 5}'))
    assert [type(e) for e in errors] == [StreamError]


def test_a_timer_flush_that_fails_reaches_the_consumer() -> None:
    scheduler = TestScheduler()
    source: Subject[str] = Subject()
    errors: list[Exception] = []
    source.pipe(
        ops.throttle(1.0, scheduler=scheduler), ops.parse_model(Num, partial=True)
    ).subscribe(on_error=errors.append, scheduler=scheduler)
    source.on_next('{"n": ')
    source.on_next("5}")  # held until the timer fires; its snapshot hits the validator
    scheduler.advance_by(2.0)
    assert [str(e) for e in errors] == ["a bug in the validator"]
