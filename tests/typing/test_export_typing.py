"""The lazy exports keep their types: pyright strict reads the stubs, pytest runs the lines.

``kagura`` and ``kagura.operators`` load their names on first use (``__getattr__``);
type checkers read ``__init__.pyi`` instead, written from the same table by
``python -m kagura._exports``. Each public name has its real type here, not ``Any``,
and an unknown name is an error (the lines marked ``pyright: ignore[...]`` must stay
errors: ``reportUnnecessaryTypeIgnoreComment`` fails the check if they stop being one).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import assert_type

import pytest
from reactivex import Observable

import kagura
from kagura import operators as ops
from kagura.errors import ToolLoopError
from kagura.events import Usage
from kagura.llm.config import LLMConfig


def test_top_level_names_have_their_types() -> None:
    assert_type(kagura.LLMConfig(model="kagura/echo"), LLMConfig)
    assert_type(kagura.Usage(prompt_tokens=1), Usage)
    assert_type(kagura.redact("text"), str)
    assert_type(kagura.remember_secret(None), None)
    assert_type(kagura.ToolLoopError, type[ToolLoopError])
    assert_type(kagura.__version__, str)
    assert isinstance(kagura.__version__, str)


def test_submodules_are_modules() -> None:
    for module in (kagura.errors, kagura.operators, kagura.pipes, kagura.testing):
        assert_type(module, ModuleType)
        assert isinstance(module, ModuleType)


def test_operators_have_their_types() -> None:
    sentences = ops.buffer_sentences(min_chars=3)
    assert_type(sentences, Callable[[Observable[str]], Observable[str]])
    assert sentences(Observable[str]()) is not None


def test_an_unknown_name_is_an_error_for_pyright_too() -> None:
    # Each access must stay an error: an unknown attribute, hence of unknown type.
    with pytest.raises(AttributeError):
        print(kagura.no_such_name)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
    with pytest.raises(AttributeError):
        print(ops.no_such_operator)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
