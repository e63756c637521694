"""LLMConfig: validation at construction, credentials kept secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from kagura import LLMConfig
from kagura._redact import redact
from kagura.errors import AuthError
from kagura.llm.oauth import (
    StaticTokenProvider,
    register_token_provider,
    unregister_token_provider,
)


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


_FLOAT_FIELDS = (
    "temperature",
    "top_p",
    "cache_ttl",
    "first_token_timeout",
    "idle_timeout",
    "request_timeout",
)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "nan", "inf"])
@pytest.mark.parametrize("name", _FLOAT_FIELDS)
def test_float_settings_must_be_finite(name: str, value: object) -> None:
    # `gt=0` alone already refuses NaN, but lets inf through: an infinite timeout then
    # overflows the scheduler or the HTTP client at the first request, not here
    with pytest.raises(ValidationError, match=rf"{name}\n +Input should be a finite number"):
        LLMConfig(**{name: value})  # type: ignore[arg-type] (invalid on purpose)


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


# -- secrets in api_base, validation without echoing ------------------------------------
BASE = "http://proxy:pa55-w0rd-9@127.0.0.1:4000/v1?api_key=qk-123456&model=x"


def test_api_base_credentials_are_hidden_but_the_attribute_is_real() -> None:
    config = LLMConfig(api_base=BASE, api_key="my-plain-key-1234")
    shown = "http://proxy:[REDACTED]@127.0.0.1:4000/v1?api_key=[REDACTED]&model=x"
    assert config.api_base == BASE  # what the transport sends
    for text in (repr(config), str(config), str(config.model_dump()), config.model_dump_json()):
        assert "pa55-w0rd-9" not in text
        assert "qk-123456" not in text
        assert "my-plain-key-1234" not in text
        assert shown in text


def test_api_base_and_key_secrets_are_remembered() -> None:
    LLMConfig(api_base=BASE, api_key="my-plain-key-5678")
    echoed = "401 for pa55-w0rd-9 / qk-123456 / my-plain-key-5678"
    assert redact(echoed) == "401 for [REDACTED] / [REDACTED] / [REDACTED]"


@pytest.mark.parametrize(
    "api_base",
    [
        "ftp://h/v1",
        "localhost:8000/v1",
        "//h/v1",
        "http:///v1",
        "http://h:99999/v1",
        "http://[::1/v1",
        "http://h/v1\r\nX-Injected: 1",
        "http://h/v1\n",
        "http://h/v1\x00",
        "http://h/v 1",
        "http://h/v1\x7f",
    ],
)
def test_a_bad_api_base_fails_without_echoing_it(api_base: str) -> None:
    secret_base = api_base.replace("://", "://user:pa55-w0rd-9@", 1)
    for value in (api_base, secret_base):
        with pytest.raises(ValidationError, match="api_base must") as caught:
            LLMConfig(api_base=value, api_key="my-plain-key-1234")
        text = f"{caught.value}{caught.value!r}"
        assert "pa55-w0rd-9" not in text
        assert "my-plain-key-1234" not in text
        assert "X-Injected" not in text


@pytest.mark.parametrize("api_base", ["http://localhost:11434/v1", "HTTPS://api.example.com"])
def test_good_api_bases_are_kept_as_given(api_base: str) -> None:
    assert LLMConfig(api_base=api_base).api_base == api_base


@pytest.mark.parametrize("key", ["my-plain-key-1234\n", "my-plain key", "my-plain-key\r\nX: 1"])
def test_an_api_key_with_spaces_or_control_characters_fails_without_echoing_it(key: str) -> None:
    with pytest.raises(ValidationError, match="api_key must not contain") as caught:
        LLMConfig(api_key=key)
    assert "my-plain" not in f"{caught.value}{caught.value!r}"


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 9},
        {"auth_type": "oauth2"},
        {"api_base": 5},
        {"model": ""},
        {"api_key": 5, "api_base": "http://u:pa55-w0rd-9@h"},
    ],
)
def test_a_validation_error_never_shows_the_key(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        LLMConfig(**{"api_key": "my-plain-key-1234", **bad})  # type: ignore[arg-type] (invalid on purpose)
    text = f"{caught.value}{caught.value!r}"
    assert "my-plain-key-1234" not in text
    assert "pa55-w0rd-9" not in text
    # The oauth2 rule is checked on its field, so errors() does not carry the whole input.
    assert "my-plain-key-1234" not in repr(caught.value.errors())
