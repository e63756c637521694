"""What ``@agent`` works out once, at decoration time: an :class:`AgentSpec`.

The spec is the agent's static description: its options checked, its signature
and prompt template, its config, tools and memory, and the shape of its answer
(the return annotation resolved; a forward reference resolves on the first call).
What one call does with it is in :mod:`kagura.agents.run`.

>>> from kagura.agents.spec import AgentOptions, AgentSpec
>>> async def count(word: str) -> int:
...     '''How many letters in {{ word }}?'''
...     ...
>>> spec = AgentSpec(count, AgentOptions(model="kagura/echo"))
>>> spec.name, spec.config.model, spec.returns.parser
('count', 'kagura/echo', OutputParser(int))
>>> AgentSpec(count, AgentOptions(max_tool_rounds=-1))
Traceback (most recent call last):
...
kagura.errors.ConfigError: agent 'count': max_tool_rounds must be >= 0, got -1
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast, get_args, get_origin, get_type_hints

from pydantic import BaseModel, SecretStr, ValidationError

from kagura.agents.memory import DEFAULT_MAX_MESSAGES, ConversationMemory
from kagura.agents.output import OutputParser, type_name
from kagura.agents.prompt import PromptTemplate
from kagura.agents.tools import DEFAULT_MAX_TOOL_ROUNDS, Tool, as_tools
from kagura.errors import ConfigError
from kagura.llm.config import LLMConfig
from kagura.llm.request import check_call_kwargs
from kagura.pipes.stream import Operator

__all__ = ["AgentOptions", "AgentSpec", "ConfigSettings", "ReturnShape"]

_EMPTY: Any = inspect.Signature.empty
_ITERATOR_ORIGINS: tuple[Any, ...] = (AsyncIterator, AsyncIterable, AsyncGenerator)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentOptions:
    """The options given to ``@agent(...)``, unchecked (the defaults are ``@agent``'s).

    >>> AgentOptions(model="kagura/echo", params={"seed": 7})
    AgentOptions(stream=False, config=None, model='kagura/echo', ..., params={'seed': 7})
    """

    stream: bool = False
    config: LLMConfig | None = None
    model: str | None = None
    temperature: float | None = None
    pipeline: Operator | Sequence[Operator] = ()
    items: bool = False
    post: Operator | Sequence[Operator] = ()
    tools: Sequence[Tool | Callable[..., Any]] = ()
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    enable_memory: bool = False
    max_messages: int = DEFAULT_MAX_MESSAGES
    params: dict[str, Any] = field(default_factory=dict[str, Any])


class ConfigSettings(TypedDict, total=False):
    """The fields of :class:`~kagura.LLMConfig`, as keywords of ``agent.with_config(...)``.

    Type checkers read it; :class:`~kagura.LLMConfig` validates the values (a test keeps
    the two lists of fields equal).
    """

    model: str
    temperature: float
    max_tokens: int | None
    top_p: float
    api_key: str | SecretStr | None
    api_base: str | None
    auth_type: Literal["api_key", "oauth2"]
    oauth_provider: str | None
    enable_cache: bool
    cache_ttl: float
    first_token_timeout: float | None
    idle_timeout: float | None
    max_retries: int
    request_timeout: float
    transport: Literal["auto", "litellm", "direct"]
    sse_max_line_bytes: int
    fallbacks: Sequence[LLMConfig]
    hedge_after: float | None
    max_hedges: int


@dataclass(frozen=True, slots=True)
class ReturnShape:
    """An agent's answer: how it is parsed, and what the prompt says about its format.

    >>> from collections.abc import AsyncIterator
    >>> async def story(topic: str) -> AsyncIterator[str]:
    ...     '''A story about {{ topic }}'''
    ...     ...
    >>> AgentSpec(story, AgentOptions(stream=True)).returns
    ReturnShape(parser=None, element=<class 'str'>, instructions=None)
    """

    parser: OutputParser | None = None
    """The parser of the whole answer (``stream=False``)."""
    element: Any = str
    """What a stream yields: ``str``, a pydantic model, or an item type (``stream=True``)."""
    instructions: str | None = None
    """The format instructions appended to the prompt, if any."""


class AgentSpec:
    """Everything ``@agent`` worked out once for ``fn``; see the module docstring.

    Raises :class:`~kagura.errors.ConfigError` for a missing docstring, a template
    variable that is not a parameter, or options that do not fit together.
    """

    __slots__ = (
        "_operators",
        "_returns",
        "config",
        "fn",
        "items",
        "max_tool_rounds",
        "memory",
        "memory_position",
        "name",
        "params",
        "pipeline",
        "post",
        "signature",
        "stream",
        "template",
        "tools",
        "var_keyword",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        options: AgentOptions,
        localns: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        qualname: str = getattr(fn, "__qualname__", None) or repr(fn)
        self.name = name = qualname.rpartition("<locals>.")[2]
        self.stream = options.stream
        self.items = options.items
        self.signature = inspect.signature(fn)
        self.template = PromptTemplate.from_function(fn, name=f"agent {name!r}")
        parameters = self.signature.parameters
        self.var_keyword: str | None = next(
            (p.name for p in parameters.values() if p.kind is p.VAR_KEYWORD), None
        )
        """The name of ``**kwargs``, if any: its keys are template variables too."""
        if self.var_keyword is None:
            self.template.check_provided(set(parameters))
        self.memory_position: int | None = (
            list(parameters).index("memory") if "memory" in parameters else None
        )
        """Where a ``memory`` parameter sits (a call may leave it out even without a default)."""
        base = options.config if options.config is not None else LLMConfig()
        updates = {"model": options.model, "temperature": options.temperature}
        self.config = _resolve_config(
            name, base, {key: value for key, value in updates.items() if value is not None}
        )
        _check_params(name, options.params)
        self.params = options.params
        self.tools = as_tools(options.tools)
        if options.max_tool_rounds < 0:
            raise ConfigError(
                f"agent {name!r}: max_tool_rounds must be >= 0, got {options.max_tool_rounds}"
            )
        self.max_tool_rounds = options.max_tool_rounds
        enable_memory = options.enable_memory or self.memory_position is not None
        self.memory = ConversationMemory(options.max_messages) if enable_memory else None
        self.pipeline = _check_pipeline(name, "pipeline", options.pipeline, options.stream)
        self.post = _check_pipeline(name, "post", options.post, options.stream)
        if options.items and not options.stream:
            raise ConfigError(f"agent {name!r}: items=True applies to streams; add stream=True")
        self._operators: list[Operator] | None = None
        self._returns: ReturnShape | None = None
        with contextlib.suppress(NameError):  # a forward reference: resolved on the first call
            self._returns = _shape(self, _return_annotation(fn, localns))

    @property
    def returns(self) -> ReturnShape:
        """The answer's shape; a forward reference in the annotation is resolved here."""
        if self._returns is None:
            try:
                annotation = _return_annotation(self.fn, None)
            except NameError as exc:
                raise ConfigError(
                    f"agent {self.name!r}: cannot resolve its return annotation: {exc}"
                ) from exc
            self._returns = _shape(self, annotation)
        return self._returns

    @property
    def operators(self) -> list[Operator]:
        """A stream's operators: ``pipeline``, its element's parser, then ``post`` (built once)."""
        if self._operators is None:
            parse = _parse_operators(self.returns.element, self.items)
            self._operators = [*self.pipeline, *parse, *self.post]
        return self._operators

    @property
    def partial_models(self) -> bool:
        """Whether a stream yields partial models (``-> AsyncIterator[Model]``, no ``items``)."""
        return self.stream and not self.items and self.returns.element not in (str, Any)

    def with_config(self, config: LLMConfig | None, settings: Mapping[str, Any]) -> AgentSpec:
        """This spec with ``config`` (default: its own), then ``settings``, as its config.

        Everything else is shared: the template, options, tools and memory.

        >>> async def ask(q: str) -> str:
        ...     '''{{ q }}'''
        ...     ...
        >>> spec = AgentSpec(ask, AgentOptions(model="kagura/echo", temperature=0.1))
        >>> other = spec.with_config(None, {"model": "gpt-4o"})
        >>> other.config.model, other.config.temperature, spec.config.model
        ('gpt-4o', 0.1, 'kagura/echo')
        >>> spec.with_config(None, {"modle": "gpt-4o"})
        Traceback (most recent call last):
        ...
        kagura.errors.ConfigError: agent 'ask': invalid settings: modle: Extra inputs are ...
        """
        new = copy.copy(self)
        new.config = _resolve_config(self.name, self.config if config is None else config, settings)
        return new


def _resolve_config(name: str, base: LLMConfig, updates: Mapping[str, Any]) -> LLMConfig:
    """``base`` with ``updates`` applied (a ConfigError naming the agent if invalid)."""
    if not updates:
        return base
    try:
        return LLMConfig(**{**dict(base), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"agent {name!r}: invalid settings: {problems}") from exc


def _check_params(name: str, params: dict[str, Any]) -> None:
    """The provider keywords, refused as a plain call refuses them, with the agent's name."""
    try:
        check_call_kwargs(params)
    except ConfigError as exc:
        raise ConfigError(f"agent {name!r}: {exc}") from None


def _check_pipeline(
    name: str, option: str, operators: Operator | Sequence[Operator], stream: bool
) -> list[Operator]:
    """``pipeline`` or ``post`` as a list; either needs ``stream=True``."""
    listed = [operators] if callable(operators) else list(operators)
    if listed and not stream:
        raise ConfigError(f"agent {name!r}: {option}= applies to streams; add stream=True")
    return listed


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


def _shape(spec: AgentSpec, annotation: Any) -> ReturnShape:
    """Check ``annotation`` against ``stream`` and ``items``; say how answers are parsed."""
    name = spec.name
    origin = get_origin(annotation) or annotation
    iterator = origin in _ITERATOR_ORIGINS
    if not spec.stream:
        if iterator:
            raise ConfigError(
                f"agent {name!r} returns {type_name(annotation)}: add stream=True to stream it"
            )
        parser = OutputParser(annotation)
        return ReturnShape(parser=parser, instructions=parser.instructions)
    if annotation is not _EMPTY and not iterator:
        raise ConfigError(
            f"agent {name!r}: a stream=True agent is annotated -> AsyncIterator[str] "
            f"(or AsyncIterator[Model]), not -> {type_name(annotation)}"
        )
    args = get_args(annotation)
    element: Any = args[0] if args else str
    if spec.items:
        if element in (str, Any):
            raise ConfigError(
                f"agent {name!r}: items=True needs an item type, e.g. -> AsyncIterator[Item]"
            )
        return ReturnShape(element=element, instructions=OutputParser(list[element]).instructions)
    if element in (str, Any):
        return ReturnShape(element=element)
    if not (isinstance(element, type) and issubclass(element, BaseModel)):
        raise ConfigError(
            f"agent {name!r}: -> AsyncIterator[{type_name(element)}] streams partial "
            "pydantic models; use a BaseModel, or items=True for the items of a JSON array"
        )
    return ReturnShape(element=element, instructions=OutputParser(element).instructions)


def _parse_operators(element: Any, items: bool) -> list[Operator]:
    """``parse_items`` or ``parse_model(partial=True)`` for a stream of parsed values."""
    if items:
        from kagura.operators import parse_items

        return [cast(Operator, parse_items(element))]
    if element in (str, Any):
        return []
    from kagura.operators import parse_model

    return [cast(Operator, parse_model(element, partial=True))]
