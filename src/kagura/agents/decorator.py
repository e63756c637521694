"""``@agent``: a function whose docstring is the prompt and whose annotation is the answer's type.

The docstring is a Jinja2 template of the function's arguments (defaults
included); the body never runs (write ``...`` so type checkers accept the
return annotation). ``stream=False`` (the default) makes an awaitable that
returns the parsed answer, cached by :func:`~kagura.call_llm`:

>>> import asyncio
>>> from collections.abc import AsyncIterator
>>> from kagura import agent
>>> @agent(model="kagura/echo")
... async def shout(word: str, times: int = 2) -> str:
...     '''{{ word | upper }}{{ "!" * times }}'''
...     ...
>>> asyncio.run(shout("hey"))
'HEY!!'

The return annotation decides the parsing (see :mod:`kagura.agents.output`):
``str``, ``int``, ``float``, ``bool``, ``Literal``, ``Optional[...]``, ``list[...]``,
pydantic models... Structured types put their JSON schema in the prompt; an answer
that does not parse raises :class:`~kagura.errors.ParseError` with the raw text.

>>> @agent(model="kagura/echo")  # echo answers with the prompt itself
... async def add(a: int, b: int) -> int:
...     '''{{ a + b }}'''
...     ...
>>> asyncio.run(add(2, 3))
5

``stream=True`` returns an :class:`~kagura.pipes.AgentStream` at once (no
``await``); iterate it for the text after ``pipeline``, then read ``usage``,
``finish_reason``, ``metrics`` and ``tool_calls``. Streams are never cached.

>>> @agent(stream=True, model="kagura/echo")
... async def storyteller(topic: str) -> AsyncIterator[str]:
...     '''Write a story about {{ topic }}'''
...     ...
>>> async def main():
...     stream = storyteller("dragons")
...     chunks = [chunk async for chunk in stream]
...     return chunks, stream.finish_reason
>>> asyncio.run(main())
(['Write ', 'a ', 'story ', 'about ', 'dragons'], 'stop')

What a streaming agent yields follows its annotation:

- ``AsyncIterator[str]``: text chunks, after ``pipeline`` (an operator or a list).
- ``AsyncIterator[Model]`` (a pydantic model): a :class:`~kagura.agents.run.ModelStream`
  of partial snapshots from :func:`~kagura.operators.parse_model` ``(Model, partial=True)``,
  typed :class:`~kagura.operators.Partial` ``[Model]`` since their fields may be missing
  (read them with :func:`~kagura.operators.peek`); the last one is complete and
  validated, and ``await stream.final()`` returns it as a ``Model``.
- ``AsyncIterator[Item]`` with ``items=True``: each element of the JSON array the
  model writes, as soon as it is complete (:func:`~kagura.operators.parse_items`);
  the prompt gets the schema of ``list[Item]``.

``pipeline`` always applies to the text, before parsing (``strip_tags("think")``
belongs there); ``post`` applies to what the stream yields, after parsing
(``throttle(0.1)`` to redraw partial models at most ten times a second).

``agent_function.with_config(model=..., api_base=...)`` is the same agent calling with
other :class:`~kagura.LLMConfig` settings (another model, endpoint or key), sharing its
memory and tools; the function's own parameters are untouched, whatever their names.

>>> calm = shout.with_config(temperature=0.0)
>>> asyncio.run(calm("hey")), calm.config.temperature, shout.config.temperature
('HEY!!', 0.0, 0.7)
>>> shout.with_config(api_bse="http://localhost:8000")
Traceback (most recent call last):
...
kagura.errors.ConfigError: agent 'shout': invalid settings: api_bse: Extra inputs are not permitted

Memory (``enable_memory=True``, or a parameter named ``memory``): the agent keeps
a :class:`~kagura.agents.memory.ConversationMemory` of at most ``max_messages``
messages and sends it before each prompt. A finished call adds the prompt and
the answer; a stream closed early (or failed after some text) adds what arrived,
marked ``interrupted``. Declare ``memory: ConversationMemory | None = None`` to
receive it; passing another memory object uses that one instead (one per user,
say). The memory is also ``agent_function.memory``.

>>> @agent(model="kagura/echo", enable_memory=True)
... async def chat(message: str) -> str:
...     '''{{ message }}'''
...     ...
>>> asyncio.run(chat("Hi, I am Ann."))
'Hi, I am Ann.'
>>> [m.role for m in chat.memory.messages]
['user', 'assistant']

Tools (``tools=[fn, ...]``, sync or async; see :mod:`kagura.agents.tools`): the
model may call them, they run, their results go back, and the model continues,
for at most ``max_tool_rounds`` rounds. This works while streaming too: the text
of every round flows to the stream, and ``stream.tool_calls`` lists every call.

Any other keyword argument goes to the provider (``top_p=...``, ``seed=...``,
``response_format=...``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, Callable, Coroutine, Sequence
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, Unpack, overload

from pydantic import BaseModel

from kagura.agents import run
from kagura.agents.memory import DEFAULT_MAX_MESSAGES, ConversationMemory
from kagura.agents.run import ModelStream
from kagura.agents.spec import AgentOptions, AgentSpec, ConfigSettings
from kagura.agents.tools import DEFAULT_MAX_TOOL_ROUNDS, Tool
from kagura.llm.config import LLMConfig
from kagura.pipes.stream import AgentStream, Operator

__all__ = [
    "Agent",
    "ConfigSettings",
    "ModelStream",
    "Operator",
    "StreamingAgent",
    "StreamingModelAgent",
    "agent",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
R_co = TypeVar("R_co", covariant=True)


class Agent(Protocol[P, R_co]):
    """What ``@agent`` (``stream=False``) makes: call it and ``await`` the parsed answer."""

    __name__: str
    __qualname__: str
    memory: ConversationMemory | None
    """The agent's own memory (``None`` without ``enable_memory``)."""
    tools: tuple[Tool, ...]
    config: LLMConfig
    """The config the agent calls with (``model=`` and ``temperature=`` applied)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def prompt(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The prompt a call with these arguments would send (format instructions included)."""
        ...

    def with_config(
        self, config: LLMConfig | None = None, /, **settings: Unpack[ConfigSettings]
    ) -> Agent[P, R_co]:
        """This agent calling with ``config`` (default: its own), ``settings`` applied.

        The settings are :class:`~kagura.LLMConfig`'s fields (``model``, ``api_base``,
        ``api_key``, ``temperature``...); the new agent shares the memory and tools.
        Raises :class:`~kagura.errors.ConfigError` for an unknown or invalid setting.
        """
        ...


class StreamingAgent(Protocol[P, T]):
    """What ``@agent(stream=True)`` makes: calling it returns an :class:`AgentStream` at once."""

    __name__: str
    __qualname__: str
    memory: ConversationMemory | None
    tools: tuple[Tool, ...]
    config: LLMConfig

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AgentStream[T]: ...

    def prompt(self, *args: P.args, **kwargs: P.kwargs) -> str: ...

    def with_config(
        self, config: LLMConfig | None = None, /, **settings: Unpack[ConfigSettings]
    ) -> StreamingAgent[P, T]:
        """This agent with other settings (see :meth:`Agent.with_config`)."""
        ...


class StreamingModelAgent(Protocol[P, M]):
    """What ``@agent(stream=True)`` makes of ``-> AsyncIterator[Model]``: a :class:`ModelStream`.

    Its items are :class:`~kagura.operators.Partial` ``[Model]``; ``final()`` is a ``Model``.
    """

    __name__: str
    __qualname__: str
    memory: ConversationMemory | None
    tools: tuple[Tool, ...]
    config: LLMConfig

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> ModelStream[M]: ...

    def prompt(self, *args: P.args, **kwargs: P.kwargs) -> str: ...

    def with_config(
        self, config: LLMConfig | None = None, /, **settings: Unpack[ConfigSettings]
    ) -> StreamingModelAgent[P, M]:
        """This agent with other settings (see :meth:`Agent.with_config`)."""
        ...


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Agent[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Agent[P, R]: ...


class _StreamingDecorator(Protocol):
    """``stream=True``: a model element streams partial models, any other itself."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, AsyncIterable[M]]], /
    ) -> StreamingModelAgent[P, M]: ...
    @overload
    def __call__(self, fn: Callable[P, AsyncIterable[M]], /) -> StreamingModelAgent[P, M]: ...
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, AsyncIterable[T]]], /
    ) -> StreamingAgent[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, AsyncIterable[T]], /) -> StreamingAgent[P, T]: ...


class _ItemsDecorator(Protocol):
    """``stream=True, items=True``: each item is complete."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, AsyncIterable[T]]], /
    ) -> StreamingAgent[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, AsyncIterable[T]], /) -> StreamingAgent[P, T]: ...


def _caller_locals() -> dict[str, Any] | None:
    """The locals of the function that applies the decorator (for local return types)."""
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        if caller is None or caller.f_locals is caller.f_globals:
            return None
        return dict(caller.f_locals)
    finally:
        del frame


def _build(fn: Callable[..., Any], options: AgentOptions, localns: dict[str, Any] | None) -> Any:
    """The agent for ``fn``: an async function, or one that returns an AgentStream."""
    return _wrap(AgentSpec(fn, options, localns))


def _wrap(spec: AgentSpec) -> Any:
    """The function that calls ``spec``'s agent, with its attributes (``with_config``...)."""
    fn = spec.fn
    if spec.stream:

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> AgentStream[Any]:
            return run.open_stream(spec, args, kwargs)

        wrapper: Callable[..., Any] = streaming
    else:

        @functools.wraps(fn)
        async def awaitable(*args: Any, **kwargs: Any) -> Any:
            return await run.complete(spec, args, kwargs)

        wrapper = awaitable

    def prompt(*args: Any, **kwargs: Any) -> str:
        return run.prompt_for(spec, args, kwargs)[0]

    def with_config(config: LLMConfig | None = None, /, **settings: Any) -> Any:
        return _wrap(spec.with_config(config, settings))

    wrapper.__dict__.update(
        memory=spec.memory,
        tools=spec.tools,
        config=spec.config,
        prompt=prompt,
        with_config=with_config,
    )
    return wrapper


@overload
def agent(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Agent[P, R]: ...
@overload
def agent(fn: Callable[P, R], /) -> Agent[P, R]: ...
@overload
def agent(
    *,
    stream: Literal[False] = False,
    config: LLMConfig | None = None,
    model: str | None = None,
    temperature: float | None = None,
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    enable_memory: bool = False,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    **kwargs: Any,
) -> _Decorator: ...
@overload
def agent(
    *,
    stream: Literal[True],
    config: LLMConfig | None = None,
    model: str | None = None,
    temperature: float | None = None,
    pipeline: Operator | Sequence[Operator] = (),
    items: Literal[True],
    post: Operator | Sequence[Operator] = (),
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    enable_memory: bool = False,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    **kwargs: Any,
) -> _ItemsDecorator: ...
@overload
def agent(
    *,
    stream: Literal[True],
    config: LLMConfig | None = None,
    model: str | None = None,
    temperature: float | None = None,
    pipeline: Operator | Sequence[Operator] = (),
    items: Literal[False] = False,
    post: Operator | Sequence[Operator] = (),
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    enable_memory: bool = False,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    **kwargs: Any,
) -> _StreamingDecorator: ...
@overload
def agent(
    *,
    stream: Literal[True],
    config: LLMConfig | None = None,
    model: str | None = None,
    temperature: float | None = None,
    pipeline: Operator | Sequence[Operator] = (),
    items: bool,
    post: Operator | Sequence[Operator] = (),
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    enable_memory: bool = False,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    **kwargs: Any,
) -> _ItemsDecorator | _StreamingDecorator: ...
def agent(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    stream: bool = False,
    config: LLMConfig | None = None,
    model: str | None = None,
    temperature: float | None = None,
    pipeline: Operator | Sequence[Operator] = (),
    items: bool = False,
    post: Operator | Sequence[Operator] = (),
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    enable_memory: bool = False,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    **kwargs: Any,
) -> Any:
    """Turn a documented function into an LLM agent (``@agent`` or ``@agent(...)``).

    Args:
        stream: return an :class:`~kagura.pipes.AgentStream` instead of an awaitable.
        config: the :class:`~kagura.LLMConfig` (default ``LLMConfig()``).
        model: overrides ``config.model``.
        temperature: overrides ``config.temperature``.
        pipeline: operators applied to the streamed text (``stream=True`` only).
        items: stream the items of a JSON array one by one (``stream=True`` only).
        post: operators applied to what the stream yields, after parsing (``throttle``
            of partial models; ``stream=True`` only). They should keep the items' type.
        tools: functions (or :class:`~kagura.agents.tools.Tool`) the model may call.
        max_tool_rounds: rounds of tool calls before :class:`~kagura.agents.tools.ToolLoopError`.
        enable_memory: keep and send the conversation (also on with a ``memory`` parameter).
        max_messages: how many messages the memory keeps.
        **kwargs: passed to the provider with every request.

    Raises :class:`~kagura.errors.ConfigError` at decoration time for a missing
    docstring, a template variable that is not a parameter, or conflicting options.
    """
    options = AgentOptions(
        stream=stream,
        config=config,
        model=model,
        temperature=temperature,
        pipeline=pipeline,
        items=items,
        post=post,
        tools=tools,
        max_tool_rounds=max_tool_rounds,
        enable_memory=enable_memory,
        max_messages=max_messages,
        params=kwargs,
    )
    if fn is not None:
        return _build(fn, options, _caller_locals())

    def decorate(function: Callable[..., Any], /) -> Any:
        return _build(function, options, _caller_locals())

    return decorate
