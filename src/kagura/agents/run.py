"""One call of an agent: bind the arguments, write the prompt, build the request, run it.

Each step is one function over the agent's :class:`~kagura.agents.spec.AgentSpec`;
:func:`complete` and :func:`open_stream` chain them for ``@agent`` and
``@agent(stream=True)``; a stream of partial models is a :class:`ModelStream`.

>>> import asyncio
>>> from kagura.agents.spec import AgentOptions, AgentSpec
>>> async def greet(name: str, mark: str = "!") -> str:
...     '''Hello {{ name }}{{ mark }}'''
...     ...
>>> spec = AgentSpec(greet, AgentOptions(model="kagura/echo", params={"seed": 7}))
>>> call = bind_arguments(spec, ("Ann",), {})
>>> call.variables
{'name': 'Ann', 'mark': '!'}
>>> prompt = compose_prompt(spec.template, call.variables, spec.returns.instructions)
>>> request = build_request(spec, prompt, call.memory)
>>> request.messages, request.params
([{'role': 'user', 'content': 'Hello Ann!'}], {'seed': 7})
>>> prompt_for(spec, ("Bo",), {"mark": "?"})  # bind_arguments, then compose_prompt
('Hello Bo?', None)
>>> asyncio.run(complete(spec, ("Bo",), {"mark": "?"}))
'Hello Bo?'
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple, TypeVar, cast

from pydantic import BaseModel

from kagura.agents.memory import ConversationMemory
from kagura.agents.prompt import PromptTemplate
from kagura.agents.spec import AgentSpec
from kagura.agents.tools import complete_with_tools, stream_with_tools
from kagura.errors import ConfigError, ParseError
from kagura.events import AgentEvent
from kagura.llm import observe
from kagura.llm.call import call_llm
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import ChatRequest, prepare_request
from kagura.operators import Partial, is_complete
from kagura.pipes.source import from_async_iterable
from kagura.pipes.stream import AgentStream, StreamOutcome

__all__ = [
    "BoundCall",
    "ModelStream",
    "bind_arguments",
    "build_request",
    "complete",
    "compose_prompt",
    "open_stream",
    "prompt_for",
]


M = TypeVar("M", bound=BaseModel)


class ModelStream(AgentStream[Partial[M]]):
    """The stream of an agent annotated ``-> AsyncIterator[M]``: partial ``M``, then ``M``.

    Its items are :class:`~kagura.operators.Partial` ``[M]``: snapshots that lack the
    fields not written yet (read them with :func:`~kagura.operators.peek`); the last one
    is complete, and :meth:`final` returns it typed as ``M``.

    >>> import asyncio
    >>> from collections.abc import AsyncIterator
    >>> from pydantic import BaseModel
    >>> from kagura import agent
    >>> class Point(BaseModel):
    ...     x: int
    ...     y: int
    >>> @agent(stream=True, model="kagura/echo")  # echo answers with the prompt itself
    ... async def point(x: int) -> AsyncIterator[Point]:
    ...     '''{"x": {{ x }}, "y": 2}'''
    ...     ...
    >>> asyncio.run(point(1).final())
    Point(x=1, y=2)
    """

    async def final(self) -> M:
        """Drain the stream and return the complete, validated model.

        Raises :class:`~kagura.errors.ParseError` if the stream ended on a snapshot (an
        operator in ``post`` dropped the last item).
        """
        item = await super().final()
        if not is_complete(item):
            raise ParseError(
                "the stream ended on a partial model: an operator after parsing dropped "
                "the complete one",
                raw_text=self.partial_text,
            )
        return item


class BoundCall(NamedTuple):
    """A call's template variables and the memory it uses (``None`` without memory)."""

    variables: dict[str, Any]
    memory: ConversationMemory | None


def bind_arguments(spec: AgentSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BoundCall:
    """Bind a call's arguments like Python does (defaults applied) and pick its memory.

    A ``memory`` argument that is ``None`` or left out is the agent's own memory;
    ``**kwargs`` keys become template variables too.
    """
    position = spec.memory_position
    if position is not None and "memory" not in kwargs and len(args) <= position:
        kwargs = {**kwargs, "memory": None}
    bound = spec.signature.bind(*args, **kwargs)
    bound.apply_defaults()
    memory = spec.memory
    if position is not None:
        passed = bound.arguments.get("memory")
        if isinstance(passed, ConversationMemory):
            memory = passed
        elif passed is None:
            bound.arguments["memory"] = memory
        else:
            raise ConfigError(
                f"agent {spec.name!r}: memory= must be a ConversationMemory or None, "
                f"got {type(passed).__name__}"
            )
    variables = dict(bound.arguments)
    if spec.var_keyword is not None:
        extra: dict[str, Any] = variables[spec.var_keyword]
        variables = {**extra, **variables}
    return BoundCall(variables, memory)


def compose_prompt(
    template: PromptTemplate, variables: Mapping[str, Any], instructions: str | None
) -> str:
    """The template rendered with ``variables``, then the format instructions, if any.

    A template that fails to render raises :class:`~kagura.errors.ConfigError` naming the
    agent (:meth:`PromptTemplate.render <kagura.agents.prompt.PromptTemplate.render>`).
    """
    text = template.render(variables)
    return f"{text}\n\n{instructions}" if instructions else text


def prompt_for(
    spec: AgentSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, ConversationMemory | None]:
    """The prompt a call with these arguments sends, and the memory it uses."""
    instructions = spec.returns.instructions  # resolves a forward reference before binding
    call = bind_arguments(spec, args, kwargs)
    return compose_prompt(spec.template, call.variables, instructions), call.memory


def build_request(spec: AgentSpec, prompt: str, memory: ConversationMemory | None) -> ChatRequest:
    """The conversation so far (if any memory), the prompt, the agent's config and keywords."""
    history: list[dict[str, Any]] = list(memory.to_messages()) if memory is not None else []
    messages = [*history, {"role": "user", "content": prompt}]
    return prepare_request(messages, spec.config, spec.params)


async def complete(spec: AgentSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a ``stream=False`` call (tools included), remember it, return the parsed answer.

    With an observer installed (:mod:`kagura.llm.observe`) the run is observed, and its
    LLM calls are its children.
    """
    observer = observe.observer
    if observer is None:
        return await _complete(spec, args, kwargs)
    with observer.agent_run(spec.name, spec.config, stream=False):
        return await _complete(spec, args, kwargs)


async def _complete(spec: AgentSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    prompt, memory = prompt_for(spec, args, kwargs)
    request = build_request(spec, prompt, memory)
    if spec.tools:
        completion = await complete_with_tools(request, spec.tools, max_rounds=spec.max_tool_rounds)
        text = completion.text
    else:
        text = await call_llm(request.messages, request.config, **request.params)
    if memory is not None:
        memory.add_turn(prompt, text)
    parser = spec.returns.parser
    assert parser is not None  # set for every stream=False agent
    return parser.parse(text)


def open_stream(spec: AgentSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AgentStream[Any]:
    """The :class:`~kagura.pipes.AgentStream` of a ``stream=True`` call (nothing sent yet)."""
    prompt, memory = prompt_for(spec, args, kwargs)
    request = build_request(spec, prompt, memory)
    metrics = StreamMetrics()
    tools, max_rounds = spec.tools, spec.max_tool_rounds

    def events() -> AsyncIterator[AgentEvent]:
        return stream_with_tools(
            request, tools, max_rounds=max_rounds, metrics=metrics, agent_name=spec.name
        )

    stream = AgentStream.from_events(
        from_async_iterable(events), metrics=metrics, pipeline=spec.operators
    )
    if spec.partial_models:
        text = stream  # holds the raw text, before the pipeline
        stream = ModelStream[Any](
            cast(Any, text.observable), metrics=metrics, raw_text=lambda: text.partial_text
        )
    if memory is not None:
        stream.add_done_callback(functools.partial(_remember, memory, prompt))
    return stream


def _remember(
    memory: ConversationMemory, prompt: str, stream: AgentStream[Any], outcome: StreamOutcome
) -> None:
    """Add a completed stream's turn; a closed one's (or a failed one's with text), interrupted."""
    text = stream.partial_text
    if outcome == "completed":
        memory.add_turn(prompt, text)
    elif outcome == "closed" or text:
        memory.add_turn(prompt, text, interrupted=True)
