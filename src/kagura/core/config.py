"""LLMConfig: which model to call, how, and with which credentials.

Invalid values fail at construction; credentials are ``SecretStr`` and never
appear in reprs, logs, cache keys or error messages.

>>> from kagura.core.config import LLMConfig
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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from kagura.errors import ConfigError

if TYPE_CHECKING:
    from kagura.core.oauth import TokenProvider

__all__ = ["LLMConfig"]


class LLMConfig(BaseModel):
    """Settings for one model call. Every field has a sensible default.

    Attributes:
        model: a litellm model name (``"gpt-4o-mini"``, ``"openai/llama3"``,
            ``"anthropic/claude-..."``) or an offline model (``"kagura/echo"``,
            ``"kagura/replay"``).
        api_key: the provider key; ``None`` lets the provider's environment
            variable (``OPENAI_API_KEY``...) supply it.
        api_base: any OpenAI-compatible endpoint (Ollama, vLLM, a proxy).
        auth_type: ``"oauth2"`` takes a bearer token from the token provider
            registered under ``oauth_provider``.
        first_token_timeout: seconds from the request to the first token.
        idle_timeout: seconds allowed between two chunks.
        max_retries: retries of a failed request *before* any text arrived
            (429, 5xx, connection errors). A stream is never retried once it
            has produced text.
        request_timeout: overall HTTP timeout for one request, in seconds.
        transport: ``"auto"`` (the default: the direct httpx path for OpenAI-compatible
            endpoints, in-process offline models, litellm for everything else),
            ``"litellm"`` to force litellm, ``"direct"`` to force the direct path.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    model: str = Field(default="gpt-4o-mini", min_length=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    api_key: SecretStr | None = None
    api_base: str | None = None
    auth_type: Literal["api_key", "oauth2"] = "api_key"
    oauth_provider: str | None = None
    enable_cache: bool = True
    cache_ttl: float = Field(default=3600.0, ge=0.0)
    first_token_timeout: float | None = Field(default=None, gt=0.0)
    idle_timeout: float | None = Field(default=None, gt=0.0)
    max_retries: int = Field(default=2, ge=0, le=10)
    request_timeout: float = Field(default=600.0, gt=0.0)
    transport: Literal["auto", "litellm", "direct"] = "auto"

    @model_validator(mode="after")
    def _check_auth(self) -> LLMConfig:
        if self.auth_type == "oauth2" and not self.oauth_provider:
            raise ValueError(
                "auth_type='oauth2' needs oauth_provider=<name of a registered provider>"
            )
        return self

    def get_api_key(self) -> str | None:
        """The key to send: the explicit key, an OAuth2 token, or None (environment)."""
        if self.auth_type == "oauth2":
            return self._token_provider().get_token_sync().get_secret_value()
        return self.api_key.get_secret_value() if self.api_key is not None else None

    async def aget_api_key(self) -> str | None:
        """Like :meth:`get_api_key`, without blocking the event loop for an OAuth2 fetch."""
        if self.auth_type == "oauth2":
            return (await self._token_provider().get_token()).get_secret_value()
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def _token_provider(self) -> TokenProvider:
        # Imported here: OAuth2 pulls in httpx, which plain api-key configs never need.
        from kagura.core.oauth import get_token_provider

        if self.oauth_provider is None:  # excluded by the validator; kept for type narrowing
            raise ConfigError("auth_type='oauth2' needs oauth_provider")
        return get_token_provider(self.oauth_provider)

    @property
    def is_offline(self) -> bool:
        """True for kagura's built-in offline models (``kagura/...``)."""
        return self.model.startswith("kagura/")
