"""Return-type parsing for non-streaming agents: the model's text becomes the annotated type.

An :class:`OutputParser` is built once per agent from its return annotation. It
adds format instructions to the prompt (the JSON schema, for structured types)
and turns the answer into the type:

- ``str`` (or no annotation): the text, unchanged.
- ``int``, ``float``, ``bool``: the bare value, or the one number (``"The answer
  is 42."``) or the leading yes/no/true/false word in a sentence.
- ``Literal[...]`` and ``Enum`` types: one of the choices, case-insensitive.
- ``Optional[X]``: ``None`` for an empty, ``null`` or ``none`` answer, else ``X``.
- anything else pydantic validates (``list[...]``, ``dict[...]``, models,
  dataclasses, TypedDicts): the first JSON value in the answer, so Markdown fences
  and prose around it are tolerated.

A failure raises :class:`~kagura.errors.ParseError` with the raw text and pydantic's errors.

>>> from pydantic import BaseModel
>>> class City(BaseModel):
...     name: str
...     population: int
>>> OutputParser(City).parse('Sure! ```json\\n{"name": "Oslo", "population": 709000}\\n```')
City(name='Oslo', population=709000)
>>> OutputParser(int).parse("The answer is 42.")
42
>>> OutputParser(list[str]).parse('["a", "b"]')
['a', 'b']
>>> OutputParser(bool | None).parse("null") is None
True
>>> OutputParser(int).parse("no idea")
Traceback (most recent call last):
...
kagura.errors.ParseError: expected int, could not parse the model's answer: 'no idea'
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

from kagura._json import first_json_value
from kagura.errors import ConfigError, ParseError

__all__ = ["OutputParser", "json_instructions", "parse_output", "type_name"]

_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])"
)
_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_TRUE = frozenset({"true", "yes", "y"})
_FALSE = frozenset({"false", "no", "n"})
_NULL = frozenset({"", "null", "none", "nil", "n/a"})
_TEXT_TYPES: tuple[Any, ...] = (str, Any, object, None, inspect.Signature.empty)


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _optional_inner(tp: Any) -> Any | None:
    """``X`` for ``Optional[X]`` (or the union of the rest), else None."""
    if get_origin(tp) not in (Union, types.UnionType):
        return None
    args = get_args(tp)
    rest = tuple(a for a in args if a is not type(None))
    if len(rest) == len(args):
        return None
    return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (a runtime union of a tuple of types)


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def type_name(tp: Any) -> str:
    """``tp`` as messages name it.

    >>> type_name(int), type_name(list[int]), type_name(int | None)
    ('int', 'list[int]', 'int | None')
    """
    if tp is inspect.Signature.empty:
        return "(no annotation)"
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "").replace("collections.abc.", "")


def json_instructions(tp: Any) -> str:
    """The prompt's request for a JSON answer of type ``tp``: the JSON schema it must match.

    >>> print(json_instructions(list[int]))
    Reply with JSON only (no prose, no Markdown), matching this JSON schema:
    {"items":{"type":"integer"},"type":"array"}
    """
    schema: dict[str, Any] = TypeAdapter(tp).json_schema()
    return (
        "Reply with JSON only (no prose, no Markdown), matching this JSON schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group(1).strip() if match else stripped


class OutputParser:
    """Parses an agent's answer into ``tp`` (see the module docstring for the rules).

    ``instructions`` is the text added to the prompt (``None`` for plain text).
    """

    __slots__ = ("_adapter", "_choices", "_inner", "_kind", "instructions", "tp")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self._inner: OutputParser | None = None
        self._choices: dict[str, Any] = {}
        self._adapter: TypeAdapter[Any] | None = None
        base = _unwrap(tp)
        inner = _optional_inner(base)
        if base in _TEXT_TYPES or base is type(None):
            self._kind = "text"
            self.instructions: str | None = None
            return
        if inner is not None:
            self._kind = "optional"
            self._inner = OutputParser(inner)
            self.instructions = (
                f"{self._inner.instructions or ''} If there is no answer, reply null.".strip()
            )
            return
        try:
            self._adapter = TypeAdapter(tp)
        except Exception as exc:  # pydantic raises several types for unsupported annotations
            raise ConfigError(f"cannot parse answers into {type_name(tp)}: {exc}") from exc
        if base in (int, float):
            self._kind = "number"
            word = "integer" if base is int else "number"
            self.instructions = f"Answer with a single {word} and nothing else."
        elif base is bool:
            self._kind = "bool"
            self.instructions = "Answer with true or false and nothing else."
        elif _is_choice(base):
            self._kind = "choice"
            self._choices = _choices(base)
            options = ", ".join(map(str, _choice_labels(base)))
            self.instructions = f"Answer with exactly one of: {options}."
        else:
            self._kind = "json"
            self.instructions = json_instructions(tp)

    def parse(self, text: str) -> Any:
        """Parse one answer; :class:`~kagura.errors.ParseError` if it does not fit the type."""
        if self._kind == "text":
            return text
        if self._kind == "optional":
            assert self._inner is not None
            if _strip_fence(text).strip(" .\"'`").lower() in _NULL:
                return None
            return self._inner.parse(text)
        assert self._adapter is not None
        cleaned = _strip_fence(text)
        if self._kind == "choice":
            return self._parse_choice(text, cleaned)
        if self._kind == "bool":
            word = re.split(r"[\s.,!:;]+", cleaned.strip("\"'` ").lower(), maxsplit=1)[0]
            candidates = ["true"] if word in _TRUE else ["false"] if word in _FALSE else [cleaned]
        elif self._kind == "number":
            found = {m.group(0).replace(",", "") for m in _NUMBER.finditer(cleaned)}
            candidates = [cleaned, *found] if len(found) == 1 else [cleaned]
        else:
            extracted = first_json_value(cleaned)
            candidates = (
                [cleaned] if extracted is None or extracted == cleaned else [cleaned, extracted]
            )
        errors: list[Any] = []
        for candidate in candidates:
            try:
                return self._adapter.validate_json(candidate)
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
        raise ParseError(
            f"expected {type_name(self.tp)}, could not parse the model's answer: {_short(text)}",
            raw_text=text,
            errors=errors,
        )

    def _parse_choice(self, text: str, cleaned: str) -> Any:
        key = cleaned.strip(" .!\"'`").lower()
        if key in self._choices:
            return self._choices[key]
        words = set(re.findall(r"[\w-]+", cleaned.lower()))
        hits = [value for k, value in self._choices.items() if k in words]
        if len(hits) == 1:
            return hits[0]
        raise ParseError(
            f"expected one of {', '.join(self._choices)}, got {_short(text)}", raw_text=text
        )

    def __repr__(self) -> str:
        return f"OutputParser({type_name(self.tp)})"


def _is_choice(tp: Any) -> bool:
    return get_origin(tp) is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum))


def _choice_labels(tp: Any) -> list[Any]:
    if get_origin(tp) is Literal:
        return list(get_args(tp))
    members: list[enum.Enum] = list(tp)
    return [m.value for m in members]


def _choices(tp: Any) -> dict[str, Any]:
    if get_origin(tp) is Literal:
        return {str(v).lower(): v for v in get_args(tp)}
    members: list[enum.Enum] = list(tp)
    return {str(m.value).lower(): m for m in members}


def parse_output(text: str, tp: Any) -> Any:
    """Parse ``text`` into ``tp`` once (build an :class:`OutputParser` to reuse it).

    >>> parse_output("Yes, it is.", bool)
    True
    """
    return OutputParser(tp).parse(text)
