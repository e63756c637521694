"""Prompt templates: an agent's docstring is a Jinja2 template of its arguments.

Templates use :class:`jinja2.StrictUndefined`: a variable the call does not
provide is an error that names the agent and the variable, never an empty
string in the prompt. Any other failure while rendering (a division by zero, a
property that raises) is a :class:`~kagura.errors.ConfigError` too, naming the
agent and the template line, with the original exception as ``__cause__``.
Blocks (``{% for %}``, ``{% if %}``) trim their own line.

>>> template = PromptTemplate("Summarize in {{ n }} words:\\n{{ text }}", name="summarize")
>>> sorted(template.variables)
['n', 'text']
>>> print(template.render({"n": 5, "text": "A long story."}))
Summarize in 5 words:
A long story.
>>> template.render({"n": 5})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
kagura.errors.ConfigError: summarize: the prompt template uses 'text', which this call ...
>>> PromptTemplate("Share:\\n{{ total / people }}", name="split").render({"total": 9, "people": 0})
Traceback (most recent call last):
...
kagura.errors.ConfigError: split: the prompt template failed on line 2: ZeroDivisionError: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import meta

from kagura.errors import ConfigError

__all__ = ["PromptTemplate", "render_prompt"]

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # prompts are plain text, not HTML
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)

_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})
"""Jinja2's default globals: names every template may use without an argument."""


class PromptTemplate:
    """A compiled Jinja2 prompt; :attr:`variables` are the names it needs from the caller.

    ``name`` (an agent's name) prefixes every error message.
    """

    __slots__ = ("_template", "name", "source", "variables")

    def __init__(self, source: str, *, name: str = "prompt") -> None:
        self.name = name
        self.source = source
        try:
            parsed = _ENV.parse(source)
            self._template = _ENV.from_string(parsed)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"{name}: the prompt template has a syntax error on line {exc.lineno}: "
                f"{exc.message}"
            ) from exc
        undeclared = meta.find_undeclared_variables(parsed)
        self.variables: frozenset[str] = frozenset(undeclared - _GLOBALS)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None) -> PromptTemplate:
        """The template in ``fn``'s docstring, dedented as ``inspect.cleandoc`` does."""
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        doc = fn.__doc__
        if doc is None or not doc.strip():
            raise ConfigError(
                f"{label} has no docstring: an agent's docstring is its prompt template "
                "(for example '''Write a story about {{ topic }}''')"
            )
        return cls(inspect.cleandoc(doc), name=label)

    def check_provided(self, names: frozenset[str] | set[str]) -> None:
        """Raise :class:`ConfigError` if the template uses a variable not in ``names``."""
        missing = sorted(self.variables - names)
        if missing:
            available = ", ".join(sorted(names)) or "none"
            plural = "variables" if len(missing) > 1 else "variable"
            raise ConfigError(
                f"{self.name}: the prompt template uses undefined {plural} "
                f"{', '.join(map(repr, missing))} (the agent's parameters: {available})"
            )

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render with ``variables``; an undefined name or any failure is a :class:`ConfigError`."""
        missing = sorted(self.variables - set(variables))
        if missing:
            available = ", ".join(sorted(variables)) or "none"
            raise ConfigError(
                f"{self.name}: the prompt template uses {missing[0]!r}, which this call "
                f"does not provide (available: {available})"
            )
        try:
            return self._template.render(variables)
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"{self.name}: undefined value in the prompt template{_on_line(exc)}: {exc}"
            ) from exc
        except Exception as exc:  # the template's own code or the values it touched failed
            raise ConfigError(
                f"{self.name}: the prompt template failed{_on_line(exc)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"PromptTemplate({self.source!r}, name={self.name!r})"


def _on_line(exc: BaseException) -> str:
    """`` on line N``: the template line that was rendering when ``exc`` was raised.

    Jinja2 rewrites the traceback so that template code appears as frames of the file
    ``<template>`` with the template's line numbers; the last one is the innermost.
    """
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return "" if line is None else f" on line {line}"


def render_prompt(source: str, /, **variables: Any) -> str:
    """Render a template string once (StrictUndefined).

    >>> render_prompt("Hello {{ who | upper }}!", who="world")
    'Hello WORLD!'
    """
    return PromptTemplate(source).render(variables)
