"""Tools: JSON schemas from Python functions, and the loop that runs them for the model.

A tool is any function, sync or async. Its name, its signature (types checked by
pydantic) and its docstring (the summary, plus Google-, reST- or NumPy-style
parameter descriptions) make the schema the model sees:

>>> def get_weather(city: str, units: str = "c") -> str:
...     '''Current weather in a city.
...
...     Args:
...         city: The city's name, e.g. "Oslo".
...         units: "c" or "f".
...     '''
...     return f"12 degrees {units} in {city}"
>>> weather = Tool.from_function(get_weather)
>>> weather.description
'Current weather in a city.'
>>> weather.parameters["properties"]["city"]
{'description': 'The city\\'s name, e.g. "Oslo".', 'type': 'string'}
>>> weather.parameters["required"]
['city']

The loop (:func:`complete_with_tools`, :func:`stream_with_tools`) sends the
request with the tools, runs the calls the model makes (several in one round run
concurrently; sync tools in a worker thread), appends the results as ``tool``
messages and asks again, until the model answers without calling a tool or
``max_rounds`` rounds of tools have run (then :class:`ToolLoopError`). Invalid
arguments, an unknown tool name and a tool's exception go back to the model as
that call's result (``"Error: ..."``), so it can correct itself.

>>> import asyncio
>>> from kagura.events import ToolCall
>>> call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Oslo"}')
>>> asyncio.run(execute_tool_call(call, {"get_weather": weather}))
'12 degrees c in Oslo'
>>> bad = ToolCall(id="call_2", name="get_weather", arguments="{}")
>>> asyncio.run(execute_tool_call(bad, {"get_weather": weather}))
'Error: invalid arguments for get_weather: city: Field required'
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Annotated, Any, cast, get_type_hints, overload

import pydantic_core
import typing_extensions
from pydantic import Field, TypeAdapter, ValidationError

from kagura.errors import ConfigError, LLMError, ToolLoopError
from kagura.events import (
    AgentEvent,
    Completion,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from kagura.llm import observe
from kagura.llm.metrics import StreamMetrics
from kagura.llm.request import ChatRequest
from kagura.llm.streaming import open_event_stream
from kagura.llm.transports import resolve_transport

__all__ = [
    "DEFAULT_MAX_TOOL_ROUNDS",
    "Tool",
    "as_tools",
    "complete_with_tools",
    "execute_tool_call",
    "stream_with_tools",
    "tool",
]

DEFAULT_MAX_TOOL_ROUNDS = 8

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|other parameters|"
    r"returns?|yields?|raises|examples?|notes?|attributes|see also|warnings?|references)\s*:?\s*$",
    re.IGNORECASE,
)
_PARAM_SECTIONS = frozenset(
    {
        "args",
        "arguments",
        "parameters",
        "params",
        "keyword args",
        "keyword arguments",
        "other parameters",
    }
)
_GOOGLE_PARAM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_PARAM = re.compile(r"^\*{0,2}(\w+)\s*(?::\s*.*)?$")
_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")
_REST_FIELD = re.compile(r"^:\w+")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """A docstring's summary and its parameter descriptions (Google, reST or NumPy style).

    >>> parse_docstring(':param x: the first.\\n   Still the first.\\n:returns: y')
    ('', {'x': 'the first. Still the first.'})
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    numpy = False  # a NumPy-style section: "name : type", then the description below
    base = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        underline = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        header = _SECTION.match(stripped)
        if header and (stripped.endswith(":") or underline):
            section, current, numpy = header.group(1).lower(), None, underline
            i += 2 if underline else 1
            base = _indent(lines[i]) if i < len(lines) else 0
            continue
        rest = _REST_PARAM.match(stripped)
        if rest:
            name: str = rest.group(1)
            section, current, base = "rest", name, _indent(line)
            params[name] = rest.group(2).strip()
        elif section == "rest" and _REST_FIELD.match(stripped):
            section, current = "rest-other", None
        elif section is None:
            summary.append(line)
        elif section in _PARAM_SECTIONS or section == "rest":
            if not stripped:
                current = None
            elif _indent(line) <= base and section != "rest":
                google = None if numpy else _GOOGLE_PARAM.match(stripped)
                match = google or _NUMPY_PARAM.match(stripped)
                if match:
                    name = match.group(1)
                    current = name
                    params[name] = google.group(2).strip() if google else ""
            elif current is not None:
                params[current] = f"{params[current]} {stripped}".strip()
        i += 1
    return "\n".join(summary).strip(), params


def _jsonable(value: Any) -> tuple[bool, Any]:
    try:
        return True, pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        return False, None


@dataclass(frozen=True, slots=True, eq=False)
class Tool:
    """A function the model may call: its ``name``, ``description`` and JSON-schema ``parameters``.

    Calling a Tool calls the function, so ``@tool`` keeps a function usable as before.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    _adapter: TypeAdapter[dict[str, Any]] = field(repr=False)
    _positional: tuple[str, ...] = field(repr=False, default=())

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """Build a tool from a function's signature and docstring."""
        tool_name = name or getattr(function, "__name__", None) or type(function).__name__
        if not _NAME.match(tool_name):
            raise ConfigError(
                f"tool name {tool_name!r} must be 1 to 64 letters, digits, '_' or '-' "
                "(pass name=...)"
            )
        summary, param_docs = parse_docstring(inspect.getdoc(function))
        try:
            hints = get_type_hints(function, include_extras=True)
        except Exception as exc:  # NameError and friends: an annotation that does not resolve
            raise ConfigError(
                f"tool {tool_name!r}: cannot resolve its type annotations: {exc}"
            ) from exc
        fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        positional: list[str] = []
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(
                    f"tool {tool_name!r}: *{param.name} parameters cannot be described to a model; "
                    "list the parameters explicitly"
                )
            if param.kind is param.POSITIONAL_ONLY:
                positional.append(param.name)
            annotation: Any = hints.get(param.name, Any)
            if param_docs.get(param.name):
                annotation = Annotated[annotation, Field(description=param_docs[param.name])]
            if param.default is param.empty:
                fields[param.name] = annotation
            else:
                fields[param.name] = typing_extensions.NotRequired[annotation]
                defaults[param.name] = param.default
        arguments_type = cast(Any, typing_extensions.TypedDict)(f"{tool_name}_arguments", fields)
        try:
            adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(arguments_type)
            schema = adapter.json_schema()
        except Exception as exc:  # pydantic raises several types for unsupported annotations
            raise ConfigError(f"tool {tool_name!r}: cannot build a JSON schema: {exc}") from exc
        schema.pop("title", None)
        properties: dict[str, Any] = schema.setdefault("properties", {})
        for param_name, prop in properties.items():
            prop.pop("title", None)
            if param_name in defaults:
                ok, value = _jsonable(defaults[param_name])
                if ok:
                    prop["default"] = value
        return cls(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=schema,
            function=function,
            _adapter=adapter,
            _positional=tuple(positional),
        )

    def definition(self) -> dict[str, Any]:
        """The tool as the Chat Completions API expects it in ``tools=[...]``."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    async def run(self, arguments: str) -> Any:
        """Validate the JSON ``arguments`` and call the function (sync ones in a worker thread).

        Raises pydantic's ``ValidationError`` for bad arguments, and whatever the function raises.
        """
        values = self._adapter.validate_json(arguments.strip() or "{}")
        args = [values.pop(name) for name in self._positional if name in values]
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(*args, **values)
        else:
            result = await asyncio.to_thread(self.function, *args, **values)
        if inspect.isawaitable(result):
            result = await result
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` (``@tool``, ``@tool(name=...)`` or ``tool(fn)``).

    Plain functions in ``@agent(tools=[...])`` need no decorator; use this to
    rename a tool or replace its description.

    >>> @tool(name="add")
    ... def add_numbers(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> add_numbers.name, add_numbers(2, 3)
    ('add', 5)
    """

    def make(fn: Callable[..., Any]) -> Tool:
        return Tool.from_function(fn, name=name, description=description)

    return make(function) if function is not None else make


def as_tools(tools: Iterable[Tool | Callable[..., Any]]) -> tuple[Tool, ...]:
    """Tools from tools or plain functions; duplicate names are a :class:`ConfigError`."""
    result = tuple(t if isinstance(t, Tool) else Tool.from_function(t) for t in tools)
    names = [t.name for t in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"two tools share the name {duplicates[0]!r}; pass tool(fn, name=...) to rename one"
        )
    return result


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    return pydantic_core.to_json(result, fallback=str).decode()


async def execute_tool_call(call: ToolCall, tools: Mapping[str, Tool]) -> str:
    """Run one call and return what goes back to the model; failures become ``"Error: ..."``."""
    found = tools.get(call.name)
    if found is None:
        known = ", ".join(sorted(tools)) or "none"
        return f"Error: unknown tool {call.name!r} (available tools: {known})"
    try:
        result = await found.run(call.arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        return f"Error: invalid arguments for {call.name}: {problems}"
    except Exception as exc:
        _log.info(
            "tool %r raised %s; the model gets the error as its result",
            call.name,
            exc,
            exc_info=True,
        )
        return f"Error: {type(exc).__name__}: {exc}"
    try:
        return _result_text(result)
    except Exception as exc:  # an unserializable result is the tool's failure, told to the model
        return f"Error: cannot serialize the result of {call.name}: {exc}"


def _normalized(calls: Sequence[ToolCall], round_no: int) -> list[ToolCall]:
    """Calls with an id each (some providers omit it; the tool message must name one)."""
    return [
        call if call.id else ToolCall(f"call_{round_no}_{i}", call.name, call.arguments)
        for i, call in enumerate(calls)
    ]


async def _observed_tool_call(
    call: ToolCall, tools: Mapping[str, Tool], parent: observe.Observation | None
) -> str:
    """:func:`execute_tool_call`, observed (a child of ``parent``) if an observer is installed."""
    observer = observe.observer
    if observer is None:
        return await execute_tool_call(call, tools)
    with observer.tool_call(call, parent=parent) as observation:
        result = await execute_tool_call(call, tools)
        observation.tool_returned(result)
    return result


async def _tool_round_messages(
    text: str,
    calls: Sequence[ToolCall],
    tools: Mapping[str, Tool],
    parent: observe.Observation | None = None,
) -> list[dict[str, Any]]:
    """The assistant's tool-call message followed by one ``tool`` message per call.

    ``parent`` is the observation of the LLM call that asked for the calls, if observed.
    """
    results = await asyncio.gather(*(_observed_tool_call(c, tools, parent) for c in calls))
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }
    replies = [
        {"role": "tool", "tool_call_id": c.id, "content": result}
        for c, result in zip(calls, results, strict=True)
    ]
    return [assistant, *replies]


def _with_tools(
    request: ChatRequest, tools: Sequence[Tool], messages: Sequence[Mapping[str, Any]]
) -> ChatRequest:
    params = dict(request.params)
    if tools:
        params["tools"] = [t.definition() for t in tools]
    return ChatRequest(messages=list(messages), config=request.config, params=params)


def _add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    if total is None or more is None:
        return more or total
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        total_tokens=total.total_tokens + more.total_tokens,
        estimated=total.estimated or more.estimated,
    )


def _loop_error(
    request: ChatRequest, max_rounds: int, calls: Sequence[ToolCall], last: Sequence[ToolCall]
) -> ToolLoopError:
    names = ", ".join(sorted({c.name for c in last}))
    return ToolLoopError(
        f"{request.config.model!r} still asked for tools ({names}) after {max_rounds} "
        f"round{'s' if max_rounds != 1 else ''} of tool calls; raise max_tool_rounds or check "
        "what the tools return",
        rounds=max_rounds,
        tool_calls=calls,
        model=request.config.model,
    )


async def complete_with_tools(
    request: ChatRequest, tools: Sequence[Tool], *, max_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
) -> Completion:
    """Ask (not streamed) until the model answers without tools; the answer lists every call."""
    transport = resolve_transport(request.config)
    by_name = {t.name: t for t in tools}
    messages = list(request.messages)
    all_calls: list[ToolCall] = []
    usage: Usage | None = None
    round_no = 0
    while True:
        completion, chat = await observe.complete(transport, _with_tools(request, tools, messages))
        usage = _add_usage(usage, completion.usage)
        calls = _normalized(completion.tool_calls, round_no)
        all_calls.extend(calls)
        if not calls:
            return Completion(completion.text, tuple(all_calls), usage, completion.finish_reason)
        if round_no >= max_rounds:
            error = _loop_error(request, max_rounds, all_calls, calls)
            raise error.with_progress(partial_text=completion.text, usage=usage)
        messages.extend(await _tool_round_messages(completion.text, calls, by_name, chat))
        round_no += 1


async def stream_with_tools(
    request: ChatRequest,
    tools: Sequence[Tool],
    *,
    max_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    metrics: StreamMetrics | None = None,
    agent_name: str | None = None,
) -> AsyncIterator[AgentEvent]:
    """Stream the events of every round: tool-call deltas, then each complete
    :class:`~kagura.events.ToolCall` before it runs and its :class:`~kagura.events.ToolResult`
    after, then (after the tools ran) more text.

    ``metrics`` is reset and covers all rounds: chunks, chars, reasoning chars,
    usage and attempts are summed, ``model`` is the last round's, ``tool_calls``
    lists every call, ``finish_reason`` is the last round's. Closing this generator
    closes the HTTP stream of the round in progress. A failure carries the text of
    all rounds as ``partial_text``. With no tools it is one plain streamed request.
    ``agent_name`` names the agent it runs for, to an observer (:mod:`kagura.llm.observe`).
    """
    observer = observe.observer
    run = None  # the agent run's observation: the LLM calls' parent, ended with the stream
    if observer is not None and agent_name is not None:
        run = observer.agent_run(agent_name, request.config, stream=True)
    failure: BaseException | None = None
    m = metrics if metrics is not None else StreamMetrics()
    m.reset()
    m.started_at = time.perf_counter()
    by_name = {t.name: t for t in tools}
    messages = list(request.messages)
    text_parts: list[str] = []
    usage_before: Usage | None = None
    round_no = 0
    try:
        while True:
            round_metrics = StreamMetrics()
            round_text: list[str] = []
            round_request = _with_tools(request, tools, messages)
            chat = (
                None
                if observer is None
                else observer.llm_call(round_request, stream=True, parent=run)
            )
            try:
                async with aclosing(
                    open_event_stream(round_request, round_metrics, observation=chat)
                ) as events:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            m.chunks += 1
                            m.chars += len(event.text)
                            text_parts.append(event.text)
                            round_text.append(event.text)
                        elif isinstance(event, ReasoningDelta):
                            m.reasoning_chars += len(event.text)
                        elif isinstance(event, Usage):
                            m.usage = _add_usage(usage_before, event)
                        if m.model is None or round_metrics.model is not None:
                            m.model = round_metrics.model  # the model that answered last
                        if m.first_token_at is None:
                            m.first_token_at = round_metrics.first_token_at
                        yield event
            except LLMError as exc:
                m.attempts += round_metrics.attempts
                exc.with_progress(partial_text="".join(text_parts), usage=m.usage)
                raise
            usage_before = m.usage
            m.attempts += round_metrics.attempts
            m.finish_reason = round_metrics.finish_reason
            calls = _normalized(round_metrics.tool_calls, round_no)
            m.tool_calls.extend(calls)
            if not calls:
                return
            if round_no >= max_rounds:
                error = _loop_error(request, max_rounds, m.tool_calls, calls)
                raise error.with_progress(partial_text="".join(text_parts), usage=m.usage)
            for call in calls:
                yield call
            round_messages = await _tool_round_messages("".join(round_text), calls, by_name, chat)
            messages.extend(round_messages)
            for call, reply in zip(calls, round_messages[1:], strict=True):
                yield ToolResult(call.id, call.name, reply["content"])
            round_no += 1
    except BaseException as exc:  # recorded for the observer, as raised
        failure = exc
        raise
    finally:
        m.ended_at = time.perf_counter()
        if run is not None:
            run.stream_ended(m, text_parts, failure)
