"""Typing of LLMConfig: a plain ``str`` key type-checks, and is kept as a SecretStr.

Checked by pyright strict and run by pytest; the line marked ``pyright: ignore[...]``
must stay an error (``reportUnnecessaryTypeIgnoreComment`` fails the check otherwise).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_type

from pydantic import SecretStr

from kagura import LLMConfig


def test_a_plain_string_key_type_checks_and_stays_secret() -> None:
    config = LLMConfig(model="gpt-4o-mini", api_key="sk-typed-key")
    assert isinstance(config.api_key, SecretStr)
    assert "sk-typed-key" not in repr(config)
    assert_type(config.plain_api_key, str | None)
    assert config.plain_api_key == "sk-typed-key"


def test_a_secretstr_key_still_type_checks() -> None:
    config = LLMConfig(api_key=SecretStr("sk-secret-key"))
    assert config.get_api_key() == "sk-secret-key"


def test_fallbacks_take_configs() -> None:
    config = LLMConfig(fallbacks=[LLMConfig(model="anthropic/claude-sonnet-4-5")], hedge_after=0.5)
    assert_type(config.fallbacks, Sequence[LLMConfig])
    assert isinstance(config.fallbacks, tuple)
    assert config.fallbacks[0].model == "anthropic/claude-sonnet-4-5"


def test_a_key_of_another_type_is_still_a_type_error() -> None:
    try:
        LLMConfig(api_key=123)  # pyright: ignore[reportArgumentType]
    except ValueError:
        pass
    else:
        raise AssertionError("an int key was accepted")
