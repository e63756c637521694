"""kagura's exceptions: one small hierarchy, so callers catch what they mean.

::

    KaguraError
    ├── ConfigError (also ValueError)       bad settings, colliding kwargs
    ├── LLMError                            anything the provider or transport did
    │   ├── AuthError                       401/403, missing key, OAuth2 failure
    │   │   └── MissingAPIKeyError          names the environment variable to set
    │   ├── RateLimitError                  429
    │   ├── ModelNotFoundError              names the model
    │   ├── ProviderError                   other provider/transport failures
    │   │   └── ContentFilterError          the provider blocked the prompt or the answer
    │   ├── StreamError                     failed after the stream started
    │   │   ├── FirstTokenTimeout (also TimeoutError)
    │   │   └── IdleTimeout       (also TimeoutError)
    │   └── ToolLoopError                   the model still asked for tools after max rounds
    ├── ParseError (also ValueError)        model output did not parse/validate
    ├── RelayError                          a relay stream could not be read or written
    │   ├── StreamNotFound                  unknown or expired stream id, or another owner's
    │   ├── ProducerLost                    the producer stopped without an end
    │   ├── EntriesTrimmed                  the entries asked for are no longer kept
    │   └── RelayUnavailable                the relay's server could not be reached in time
    └── StreamConsumedError (also RuntimeError)

Every :class:`LLMError` carries ``partial_text`` (the text received before the
failure, ``""`` if none) and ``usage`` (the usage known so far, or ``None``);
the provider's original exception stays as ``__cause__``. Messages never contain
credentials: the LLM layer scrubs every error that leaves it of the secrets it
sent (see :func:`kagura.redact`).

>>> try:
...     raise StreamError("connection dropped", partial_text="Hello, wor")
... except LLMError as e:
...     e.partial_text
'Hello, wor'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kagura.events import ToolCall, Usage

__all__ = [
    "AuthError",
    "ConfigError",
    "ContentFilterError",
    "EntriesTrimmed",
    "FirstTokenTimeout",
    "IdleTimeout",
    "KaguraError",
    "LLMError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "ParseError",
    "ProducerLost",
    "ProviderError",
    "RateLimitError",
    "RelayError",
    "RelayUnavailable",
    "StreamConsumedError",
    "StreamError",
    "StreamNotFound",
    "ToolLoopError",
]


class KaguraError(Exception):
    """Base of every exception kagura raises on purpose."""


class ConfigError(KaguraError, ValueError):
    """Invalid settings or arguments (for example a kwarg that collides with a config field)."""


class LLMError(KaguraError):
    """A call to a model failed.

    Attributes:
        model: the model name the call used, if known.
        status_code: the HTTP status, if the failure had one.
        partial_text: text received before the failure (``""`` if none).
        usage: token usage known at the time of the failure, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        status_code: int | None = None,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.status_code = status_code
        self.partial_text = partial_text
        self.usage = usage

    def with_progress(self, *, partial_text: str, usage: Usage | None) -> LLMError:
        """Return this error with the stream's progress recorded on it (in place)."""
        self.partial_text = partial_text
        if usage is not None:
            self.usage = usage
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_llm_error,
            (type(self), self.message, self.model, self.status_code, self.partial_text, self.usage),
        )


def _rebuild_llm_error(
    cls: type[LLMError],
    message: str,
    model: str | None,
    status_code: int | None,
    partial_text: str,
    usage: Usage | None,
) -> LLMError:
    err = cls.__new__(cls)
    LLMError.__init__(
        err,
        message,
        model=model,
        status_code=status_code,
        partial_text=partial_text,
        usage=usage,
    )
    return err


class AuthError(LLMError):
    """The provider refused the credentials, or none could be obtained."""


class MissingAPIKeyError(AuthError):
    """No API key was given and the provider's environment variable is not set.

    Attributes:
        env_var: the environment variable to set (for example ``OPENAI_API_KEY``).
    """

    def __init__(self, message: str, *, env_var: str | None = None, model: str | None = None):
        super().__init__(message, model=model)
        self.env_var = env_var


class RateLimitError(LLMError):
    """The provider answered 429 (after kagura's retries, if any)."""


class ModelNotFoundError(LLMError):
    """The model name is not known to the provider or to litellm."""


class ProviderError(LLMError):
    """Any other failure of the provider or the transport (5xx, bad response, network)."""


class StreamError(LLMError):
    """The stream failed after it had started; ``partial_text`` holds what arrived."""


class FirstTokenTimeout(StreamError, TimeoutError):
    """No text arrived within ``first_token_timeout`` seconds of the request."""


class IdleTimeout(StreamError, TimeoutError):
    """No chunk arrived within ``idle_timeout`` seconds of the previous one."""


class ParseError(KaguraError, ValueError):
    """Model output could not be parsed into the requested type.

    Attributes:
        raw_text: the full text that failed to parse.
        errors: pydantic's error list (``ValidationError.errors()``), or ``[]``.
    """

    def __init__(self, message: str, *, raw_text: str, errors: list[Any] | None = None) -> None:
        super().__init__(message)
        self.raw_text = raw_text
        self.errors: list[Any] = errors if errors is not None else []


class StreamConsumedError(KaguraError, RuntimeError):
    """A one-shot stream was iterated a second time."""


class ToolLoopError(LLMError):
    """The model still asked for tools after ``max_rounds`` rounds of tool calls.

    Attributes:
        rounds: how many rounds of tools ran.
        tool_calls: every call the model made, the unanswered last round included.
    """

    def __init__(
        self,
        message: str,
        *,
        rounds: int,
        tool_calls: Sequence[ToolCall],
        model: str | None = None,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, model=model, partial_text=partial_text, usage=usage)
        self.rounds = rounds
        self.tool_calls = list(tool_calls)


class ContentFilterError(ProviderError):
    """The provider's safety filter blocked the prompt or the answer, so there is no answer.

    Raised instead of an empty text: a blocked prompt (Gemini's
    ``promptFeedback.blockReason``) or an answer stopped by a filter before it had any
    text or tool call (Gemini's ``SAFETY``, ``RECITATION``, ``BLOCKLIST``...). The
    message names the provider's reason. An answer cut by a filter after some text ends
    normally, with the finish reason ``"content_filter"``.
    """


class RelayError(KaguraError):
    """A relay stream (:mod:`kagura.relay`) could not be published or read.

    Raised as is when a stream id is taken by a producer that :func:`~kagura.relay.to_relay`
    wanted to start, or when the relay was closed under a reader.
    """


class StreamNotFound(RelayError):
    """No such stream: the id is unknown, has expired, or belongs to another owner.

    The three cases are one error with one message, so that a stream id reveals nothing
    to someone who is not its owner.
    """


class ProducerLost(RelayError):
    """The stream's producer stopped without an end (killed, cancelled, cut off from the
    server): its lease lapsed and the entries stop where it stopped."""


class EntriesTrimmed(RelayError):
    """Entries the reader asked for were dropped by the relay's retention (``maxlen``).

    Attributes:
        resume_after: the id to pass as ``after`` to read what is still kept.
    """

    def __init__(self, message: str, *, resume_after: str = "") -> None:
        super().__init__(message)
        self.resume_after = resume_after


class RelayUnavailable(RelayError):
    """The relay's server (Redis) could not be reached or did not answer within the
    relay's ``timeout``."""
