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
- ``AsyncIterator[Model]`` (a pydantic model): partial snapshots from
  :func:`~kagura.operators.parse_model` ``(Model, partial=True)``; the last one is
  complete and validated (``await stream.final()``).
- ``AsyncIterator[Item]`` with ``items=True``: each element of the JSON array the
  model writes, as soon as it is complete (:func:`~kagura.operators.parse_items`);
  the prompt gets the schema of ``list[Item]``.

``pipeline`` always applies to the text, before parsing (``strip_tags("think")``
belongs there).

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
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Sequence,
)
from dataclasses import dataclass
from typing import (
    Any,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    overload,
)

from pydantic import BaseModel, ValidationError
from reactivex import Observable

from kagura.agents.memory import DEFAULT_MAX_MESSAGES, ConversationMemory
from kagura.agents.output import OutputParser
from kagura.agents.prompt import PromptTemplate
from kagura.agents.tools import (
    DEFAULT_MAX_TOOL_ROUNDS,
    Tool,
    as_tools,
    complete_with_tools,
    stream_with_tools,
)
from kagura.errors import ConfigError
from kagura.events import StreamEvent
from kagura.llm.call import call_llm
from kagura.llm.config import LLMConfig
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import ChatRequest, prepare_request
from kagura.pipes.source import from_async_iterable
from kagura.pipes.stream import AgentStream, StreamOutcome

__all__ = ["Agent", "Operator", "StreamingAgent", "agent"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

Operator = Callable[[Observable[Any]], Observable[Any]]
"""A pipeline stage: a function from Observable to Observable (every kagura operator)."""

_EMPTY: Any = inspect.Signature.empty
_ITERATOR_ORIGINS: tuple[Any, ...] = (AsyncIterator, AsyncIterable, AsyncGenerator)
_RESERVED = frozenset(LLMConfig.model_fields) | {"messages", "stream", "stream_options"}


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


class StreamingAgent(Protocol[P, T]):
    """What ``@agent(stream=True)`` makes: calling it returns an :class:`AgentStream` at once."""

    __name__: str
    __qualname__: str
    memory: ConversationMemory | None
    tools: tuple[Tool, ...]
    config: LLMConfig

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AgentStream[T]: ...

    def prompt(self, *args: P.args, **kwargs: P.kwargs) -> str: ...


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Agent[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Agent[P, R]: ...


class _StreamingDecorator(Protocol):
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, AsyncIterable[T]]], /
    ) -> StreamingAgent[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, AsyncIterable[T]], /) -> StreamingAgent[P, T]: ...


@dataclass(slots=True)
class _Options:
    stream: bool
    config: LLMConfig | None
    model: str | None
    temperature: float | None
    pipeline: Operator | Sequence[Operator]
    items: bool
    tools: Sequence[Tool | Callable[..., Any]]
    max_tool_rounds: int
    enable_memory: bool
    max_messages: int
    params: dict[str, Any]


class _AgentSpec:
    """Everything ``@agent`` worked out once, at decoration time."""

    __slots__ = (
        "config",
        "element",
        "fn",
        "has_memory_param",
        "instructions",
        "items",
        "max_tool_rounds",
        "memory",
        "memory_position",
        "name",
        "operators",
        "params",
        "parser",
        "pipeline",
        "return_type",
        "signature",
        "stream",
        "template",
        "tools",
        "var_keyword",
    )

    def __init__(
        self, fn: Callable[..., Any], options: _Options, localns: dict[str, Any] | None
    ) -> None:
        self.fn = fn
        qualname: str = getattr(fn, "__qualname__", None) or repr(fn)
        self.name = name = qualname.rpartition("<locals>.")[2]
        self.stream = options.stream
        self.items = options.items
        self.signature = inspect.signature(fn)
        self.template = PromptTemplate.from_function(fn, name=f"agent {name!r}")
        parameters = self.signature.parameters
        self.var_keyword = next(
            (p.name for p in parameters.values() if p.kind is p.VAR_KEYWORD), None
        )
        if self.var_keyword is None:
            self.template.check_provided(set(parameters))
        self.has_memory_param = "memory" in parameters
        # where `memory` sits: a call may leave it out even when it has no default
        self.memory_position = list(parameters).index("memory") if self.has_memory_param else -1
        self.config = _resolve_config(name, options)
        colliding = sorted(set(options.params) & _RESERVED)
        if colliding:
            raise ConfigError(
                f"agent {name!r}: {', '.join(colliding)} must be set on LLMConfig "
                f"(@agent(config=LLMConfig({colliding[0]}=...))), not passed as a keyword"
            )
        self.params = options.params
        self.tools = as_tools(options.tools)
        if options.max_tool_rounds < 0:
            raise ConfigError(
                f"agent {name!r}: max_tool_rounds must be >= 0, got {options.max_tool_rounds}"
            )
        self.max_tool_rounds = options.max_tool_rounds
        enable_memory = options.enable_memory or self.has_memory_param
        self.memory = ConversationMemory(options.max_messages) if enable_memory else None
        operators = [options.pipeline] if callable(options.pipeline) else list(options.pipeline)
        if operators and not options.stream:
            raise ConfigError(f"agent {name!r}: pipeline= applies to streams; add stream=True")
        if options.items and not options.stream:
            raise ConfigError(f"agent {name!r}: items=True applies to streams; add stream=True")
        self.pipeline: list[Operator] = operators
        self.operators: list[Operator] | None = None  # the pipeline, then the parser if any
        self.return_type: Any = _EMPTY
        self.parser: OutputParser | None = None
        self.element: Any = str
        self.instructions: str | None = None
        try:
            self._set_return_type(_return_annotation(fn, localns))
        except NameError:
            self.return_type = None  # a forward reference: resolved on the first call

    # -- return type ----------------------------------------------------------------------
    def _set_return_type(self, annotation: Any) -> None:
        self.return_type = annotation
        origin = get_origin(annotation) or annotation
        iterator = origin in _ITERATOR_ORIGINS
        if not self.stream:
            if iterator:
                raise ConfigError(
                    f"agent {self.name!r} returns {_type_name(annotation)}: "
                    "add stream=True to stream it"
                )
            self.parser = OutputParser(annotation)
            self.instructions = self.parser.instructions
            return
        if annotation is not _EMPTY and not iterator:
            raise ConfigError(
                f"agent {self.name!r}: a stream=True agent is annotated -> AsyncIterator[str] "
                f"(or AsyncIterator[Model]), not -> {_type_name(annotation)}"
            )
        args = get_args(annotation)
        element: Any = args[0] if args else str
        self.element = element
        if self.items:
            if element in (str, Any):
                raise ConfigError(
                    f"agent {self.name!r}: items=True needs an item type, "
                    "e.g. -> AsyncIterator[Item]"
                )
            self.instructions = OutputParser(list[element]).instructions
        elif element not in (str, Any):
            if not (isinstance(element, type) and issubclass(element, BaseModel)):
                raise ConfigError(
                    f"agent {self.name!r}: -> AsyncIterator[{_type_name(element)}] streams partial "
                    "pydantic models; use a BaseModel, or items=True for the items of a JSON array"
                )
            self.instructions = OutputParser(element).instructions
        self.operators = None

    def _ensure_return_type(self) -> None:
        if self.return_type is None:
            try:
                self._set_return_type(_return_annotation(self.fn, None))
            except NameError as exc:
                raise ConfigError(
                    f"agent {self.name!r}: cannot resolve its return annotation: {exc}"
                ) from exc

    # -- one call ---------------------------------------------------------------------------
    def prompt(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ConversationMemory | None]:
        """The rendered prompt and the memory this call uses."""
        self._ensure_return_type()
        if self.has_memory_param and "memory" not in kwargs and len(args) <= self.memory_position:
            kwargs = {**kwargs, "memory": None}
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        memory = self.memory
        if self.has_memory_param:
            passed = bound.arguments.get("memory")
            if isinstance(passed, ConversationMemory):
                memory = passed
            elif passed is None:
                bound.arguments["memory"] = memory
            else:
                raise ConfigError(
                    f"agent {self.name!r}: memory= must be a ConversationMemory or None, "
                    f"got {type(passed).__name__}"
                )
        variables = dict(bound.arguments)
        if self.var_keyword is not None:
            extra: dict[str, Any] = variables[self.var_keyword]
            variables = {**extra, **variables}
        text = self.template.render(variables)
        if self.instructions:
            text = f"{text}\n\n{self.instructions}"
        return text, memory

    def request(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[ChatRequest, str, ConversationMemory | None]:
        prompt, memory = self.prompt(args, kwargs)
        history: list[dict[str, Any]] = list(memory.to_messages()) if memory is not None else []
        messages = [*history, {"role": "user", "content": prompt}]
        return prepare_request(messages, self.config, self.params), prompt, memory

    async def complete(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        request, prompt, memory = self.request(args, kwargs)
        if self.tools:
            completion = await complete_with_tools(
                request, self.tools, max_rounds=self.max_tool_rounds
            )
            text = completion.text
        else:
            text = await call_llm(request.messages, request.config, **request.params)
        if memory is not None:
            memory.add_turn(prompt, text)
        assert self.parser is not None
        return self.parser.parse(text)

    def open_stream(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AgentStream[Any]:
        request, prompt, memory = self.request(args, kwargs)
        metrics = StreamMetrics()
        tools, max_rounds = self.tools, self.max_tool_rounds

        def events() -> AsyncIterator[StreamEvent]:
            return stream_with_tools(request, tools, max_rounds=max_rounds, metrics=metrics)

        if self.operators is None:
            self.operators = [*self.pipeline, *self._parse_operators()]
        stream = AgentStream.from_events(
            from_async_iterable(events), metrics=metrics, pipeline=self.operators
        )
        if memory is not None:
            stream.add_done_callback(functools.partial(_remember, memory, prompt))
        return stream

    def _parse_operators(self) -> list[Operator]:
        """``parse_items`` or ``parse_model(partial=True)`` for a stream of parsed values."""
        if self.items:
            from kagura.operators import parse_items

            return [cast(Operator, parse_items(self.element))]
        if self.element in (str, Any):
            return []
        from kagura.operators import parse_model

        return [cast(Operator, parse_model(self.element, partial=True))]


def _remember(
    memory: ConversationMemory, prompt: str, stream: AgentStream[Any], outcome: StreamOutcome
) -> None:
    text = stream.partial_text
    if outcome == "completed":
        memory.add_turn(prompt, text)
    elif outcome == "closed" or text:
        memory.add_turn(prompt, text, interrupted=True)


def _type_name(tp: Any) -> str:
    if tp is _EMPTY:
        return "(no annotation)"
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "").replace("collections.abc.", "")


def _return_annotation(fn: Callable[..., Any], localns: dict[str, Any] | None) -> Any:
    """The resolved return annotation (strings evaluated); NameError if it does not resolve yet."""
    annotations: dict[str, Any] = getattr(fn, "__annotations__", {})
    if "return" not in annotations:
        return _EMPTY
    holder = types.SimpleNamespace(__annotations__={"return": annotations["return"]})
    globalns: dict[str, Any] = getattr(inspect.unwrap(fn), "__globals__", {})
    try:
        return get_type_hints(holder, globalns=globalns, localns=localns, include_extras=True)[
            "return"
        ]
    except NameError:
        raise
    except Exception as exc:  # a malformed annotation string
        raise ConfigError(f"cannot read the return annotation of {fn!r}: {exc}") from exc


def _resolve_config(name: str, options: _Options) -> LLMConfig:
    base = options.config if options.config is not None else LLMConfig()
    updates: dict[str, Any] = {}
    if options.model is not None:
        updates["model"] = options.model
    if options.temperature is not None:
        updates["temperature"] = options.temperature
    if not updates:
        return base
    try:
        return LLMConfig(**{**dict(base), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"agent {name!r}: invalid settings: {problems}") from exc


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


def _build(fn: Callable[..., Any], options: _Options, localns: dict[str, Any] | None) -> Any:
    spec = _AgentSpec(fn, options, localns)

    if spec.stream:

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> AgentStream[Any]:
            return spec.open_stream(args, kwargs)

        wrapper: Callable[..., Any] = streaming
    else:

        @functools.wraps(fn)
        async def awaitable(*args: Any, **kwargs: Any) -> Any:
            return await spec.complete(args, kwargs)

        wrapper = awaitable

    def prompt(*args: Any, **kwargs: Any) -> str:
        return spec.prompt(args, kwargs)[0]

    wrapper.__dict__.update(memory=spec.memory, tools=spec.tools, config=spec.config, prompt=prompt)
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
    items: bool = False,
    tools: Sequence[Tool | Callable[..., Any]] = (),
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    enable_memory: bool = False,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    **kwargs: Any,
) -> _StreamingDecorator: ...
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
        tools: functions (or :class:`~kagura.agents.tools.Tool`) the model may call.
        max_tool_rounds: rounds of tool calls before :class:`~kagura.agents.tools.ToolLoopError`.
        enable_memory: keep and send the conversation (also on with a ``memory`` parameter).
        max_messages: how many messages the memory keeps.
        **kwargs: passed to the provider with every request.

    Raises :class:`~kagura.errors.ConfigError` at decoration time for a missing
    docstring, a template variable that is not a parameter, or conflicting options.
    """
    options = _Options(
        stream=stream,
        config=config,
        model=model,
        temperature=temperature,
        pipeline=pipeline,
        items=items,
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
