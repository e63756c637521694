"""LLMConfig: which model to call, how, and with which credentials.

Invalid values fail at construction; credentials are ``SecretStr`` and never
appear in reprs, logs, cache keys or error messages. The credentials written into
``api_base`` (``https://user:PASSWORD@host``, ``?api_key=...``) are shown as
``[REDACTED]`` by repr, str and ``model_dump(_json)``; the ``api_base`` attribute keeps
the real URL for the transport. The key and those credentials are remembered
(:func:`kagura.remember_secret`), so any error or log line that echoes them
is scrubbed.

>>> from kagura.llm.config import LLMConfig
>>> cfg = LLMConfig(model="gpt-4o-mini", api_key="sk-secret", temperature=0.2)
>>> "sk-secret" in repr(cfg)
False
>>> cfg.get_api_key()
'sk-secret'
>>> LLMConfig(temperature=-1)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for LLMConfig
...
>>> LLMConfig(api_base="http://proxy:pa55-w0rd@localhost:4000/v1")  # doctest: +ELLIPSIS
LLMConfig(model='gpt-4o-mini', ..., api_base='http://proxy:[REDACTED]@localhost:4000/v1', ...)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kagura._redact import redact_url, remember_secret, secrets_in_url
from kagura.errors import ConfigError

if TYPE_CHECKING:
    from kagura.llm.oauth import TokenProvider

__all__ = ["LLMConfig"]


class LLMConfig(BaseModel):
    """Settings for one model call. Every field has a sensible default.

    Attributes:
        model: a litellm model name (``"gpt-4o-mini"``, ``"openai/llama3"``,
            ``"anthropic/claude-..."``) or an offline model (``"kagura/echo"``,
            ``"kagura/replay"``).
        temperature: sampling temperature, 0 to 2 (default 0.7).
        max_tokens: the longest answer in tokens; ``None`` leaves it to the
            provider (Anthropic requires one: kagura sends 4096 then).
        top_p: nucleus sampling, above 0 and at most 1 (default 1).
        api_key: the provider key, a ``str`` or a ``SecretStr`` (kept as a
            ``SecretStr``); ``None`` lets the provider's environment variable
            (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``...) supply it.
        api_base: any OpenAI-compatible endpoint (Ollama, vLLM, a proxy): an
            ``http(s)://`` URL with a host, without spaces or control characters.
        auth_type: ``"oauth2"`` takes a bearer token from the token provider
            registered under ``oauth_provider``.
        oauth_provider: the name of a registered token provider (needed by
            ``auth_type="oauth2"``).
        enable_cache: whether ``call_llm`` may answer from the LLM cache (when one
            is set); streams are never cached.
        cache_ttl: seconds a cached answer stays valid (default 3600).
        first_token_timeout: seconds from the request to the first token.
        idle_timeout: seconds allowed between two chunks.
        max_retries: retries of a failed request *before* any text arrived
            (429, 5xx, connection errors). A stream is never retried once it
            has produced text.
        request_timeout: overall HTTP timeout for one request, in seconds.
        transport: ``"auto"`` (the default: kagura's own transports on aiohttp for
            OpenAI-compatible endpoints, ``anthropic/...`` and ``gemini/...``,
            in-process offline models, litellm for everything else), ``"litellm"``
            to force litellm, ``"direct"`` to force kagura's own transport.
        sse_max_line_bytes: the longest line the direct transport accepts in a
            Server-Sent Events stream (default 4 MiB); a longer one raises
            :class:`~kagura.errors.StreamError` with the text received so far.
        fallbacks: other configs (any provider) tried in order when a request
            fails before its first token, after its own retries.
        hedge_after: seconds without a first token after which a second request
            starts (the next fallback, or this config again), and another after each
            further ``hedge_after``, up to ``max_hedges``; the first to produce a
            token wins and the others are closed at once. ``None`` (the default): no
            hedging.
        max_hedges: at most this many hedged requests per call (default 2).
    """

    # hide_input_in_errors: a ValidationError must not quote the key or the api_base.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, hide_input_in_errors=True
    )

    model: str = Field(default="gpt-4o-mini", min_length=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    api_key: SecretStr | str | None = None
    api_base: str | None = None
    auth_type: Literal["api_key", "oauth2"] = "api_key"
    oauth_provider: str | None = None
    enable_cache: bool = True
    cache_ttl: float = Field(default=3600.0, ge=0.0, allow_inf_nan=False)
    first_token_timeout: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    idle_timeout: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    max_retries: int = Field(default=2, ge=0, le=10)
    request_timeout: float = Field(default=600.0, gt=0.0, allow_inf_nan=False)
    transport: Literal["auto", "litellm", "direct"] = "auto"
    sse_max_line_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    fallbacks: Sequence[LLMConfig] = ()
    hedge_after: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    max_hedges: int = Field(default=2, ge=1, le=8)

    @field_validator("api_key", mode="before")
    @classmethod
    def _secret_api_key(cls, value: object) -> object:
        # A plain str is accepted (the annotation says so, for type checkers) and kept
        # as a SecretStr, so the attribute never holds the key in the clear.
        return SecretStr(value) if isinstance(value, str) else value

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | str | None) -> SecretStr | None:
        if isinstance(value, str):  # not reached: the "before" validator wraps a str
            value = SecretStr(value)
        if value is not None and (where := unsafe_char(value.get_secret_value())) is not None:
            raise PydanticCustomError(
                "api_key_unsafe",
                "api_key must not contain spaces or control characters "
                "(found {char} at index {index}; a trailing newline from a file?)",
                where,
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (where := unsafe_char(value)) is not None:
            raise PydanticCustomError(
                "api_base_unsafe",
                "api_base must not contain spaces or control characters "
                "(found {char} at index {index})",
                where,
            )
        try:
            parts = urlsplit(value)
            valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 -- parsing the port is the check: ValueError if bad
        except ValueError:
            valid = False
        if not valid:
            raise PydanticCustomError(
                "api_base_url",
                "api_base must be an http:// or https:// URL with a host (and a valid port)",
            )
        return value

    @field_validator("oauth_provider")
    @classmethod
    def _check_auth(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator, not a model one: pydantic keeps a failed validator's input in
        # ValidationError.errors(), and a model validator's input holds the api_key.
        if info.data.get("auth_type") == "oauth2" and not value:
            raise ValueError(
                "auth_type='oauth2' needs oauth_provider=<name of a registered provider>"
            )
        return value

    @field_validator("fallbacks")
    @classmethod
    def _check_fallbacks(cls, value: Sequence[LLMConfig]) -> Sequence[LLMConfig]:
        if any(fallback.fallbacks for fallback in value):
            raise ValueError("a fallback config must not have fallbacks of its own")
        return tuple(value)  # a list given is copied: the config stays frozen

    @model_validator(mode="after")
    def _remember_secrets(self) -> LLMConfig:
        if self.plain_api_key is not None:
            remember_secret(self.plain_api_key)
        if self.api_base is not None:
            for secret in secrets_in_url(self.api_base):
                remember_secret(secret)
        return self

    @field_serializer("api_base")
    def _show_api_base(self, value: str | None) -> str | None:
        return None if value is None else redact_url(value)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "api_base" and isinstance(value, str):
                value = redact_url(value)
            yield name, value

    def get_api_key(self) -> str | None:
        """The key to send: the explicit key, an OAuth2 token, or None (environment)."""
        if self.auth_type == "oauth2":
            return self._token_provider().get_token_sync().get_secret_value()
        return self.plain_api_key

    async def aget_api_key(self) -> str | None:
        """Like :meth:`get_api_key`, without blocking the event loop for an OAuth2 fetch."""
        if self.auth_type == "oauth2":
            return (await self._token_provider().get_token()).get_secret_value()
        return self.plain_api_key

    @property
    def plain_api_key(self) -> str | None:
        """``api_key`` as a plain string (also when ``model_copy`` set it as one)."""
        # model_copy(update=...) does not validate: a plain str may be here.
        key = cast(object, self.api_key)
        if isinstance(key, SecretStr):
            return key.get_secret_value()
        return key if isinstance(key, str) else None

    def _token_provider(self) -> TokenProvider:
        # Imported here: OAuth2 pulls in httpx, which plain api-key configs never need.
        from kagura.llm.oauth import get_token_provider

        if self.oauth_provider is None:  # excluded by the validator; kept for type narrowing
            raise ConfigError("auth_type='oauth2' needs oauth_provider")
        return get_token_provider(self.oauth_provider)

    @property
    def is_offline(self) -> bool:
        """True for kagura's built-in offline models (``kagura/...``)."""
        return self.model.startswith("kagura/")


def unsafe_char(text: str) -> dict[str, Any] | None:
    """Where ``text`` has a space or a control character (named, never quoted), if it does."""
    for index, char in enumerate(text):
        if char.isspace() or not char.isprintable():
            return {"char": f"U+{ord(char):04X}", "index": index}
    return None
