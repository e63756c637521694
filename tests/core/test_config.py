"""LLMConfig: validation at construction, credentials kept secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from kagura import LLMConfig
from kagura.core.oauth import (
    StaticTokenProvider,
    register_token_provider,
    unregister_token_provider,
)
from kagura.errors import AuthError


def test_defaults() -> None:
    config = LLMConfig()
    assert (config.model, config.temperature, config.max_tokens, config.top_p) == (
        "gpt-4o-mini",
        0.7,
        None,
        1.0,
    )
    assert (config.enable_cache, config.cache_ttl, config.auth_type) == (True, 3600.0, "api_key")
    assert config.first_token_timeout is None
    assert config.idle_timeout is None


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -0.1},
        {"top_p": 1.5},
        {"max_tokens": 0},
        {"cache_ttl": -1},
        {"idle_timeout": 0},
        {"model": ""},
    ],
)
def test_invalid_values_fail_at_construction(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LLMConfig(**bad)  # type: ignore[arg-type] (invalid on purpose)


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        LLMConfig(temprature=0.5)  # type: ignore[call-arg] (a typo on purpose)


def test_api_key_is_secret() -> None:
    config = LLMConfig(api_key="sk-very-secret-key")
    assert isinstance(config.api_key, SecretStr)
    assert "sk-very-secret-key" not in repr(config)
    assert "sk-very-secret-key" not in str(config.model_dump())
    assert config.get_api_key() == "sk-very-secret-key"


def test_no_key_means_environment() -> None:
    assert LLMConfig().get_api_key() is None


def test_oauth2_needs_a_provider_name() -> None:
    with pytest.raises(ValidationError, match="oauth_provider"):
        LLMConfig(auth_type="oauth2")


def test_oauth2_missing_provider_is_named() -> None:
    config = LLMConfig(auth_type="oauth2", oauth_provider="nobody-registered-this")
    with pytest.raises(AuthError, match="nobody-registered-this"):
        config.get_api_key()


async def test_oauth2_token_from_registered_provider() -> None:
    register_token_provider("static", StaticTokenProvider("tok-123"))
    try:
        config = LLMConfig(auth_type="oauth2", oauth_provider="static")
        assert config.get_api_key() == "tok-123"
        assert await config.aget_api_key() == "tok-123"
        assert "tok-123" not in repr(config)
    finally:
        unregister_token_provider("static")
