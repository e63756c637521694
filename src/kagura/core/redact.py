"""Redact credentials from anything kagura logs, raises or prints.

:func:`redact` replaces, with ``"[REDACTED]"``:

- API keys shaped like ``sk-...`` (OpenAI, Anthropic, and compatible providers);
- the credentials of ``Bearer ...`` / ``Basic ...`` authorization values;
- the value after a secret-named key in text (``api_key=...``, ``"token": "..."``,
  ``Authorization: ...``);
- in mappings (recursively, also inside lists and tuples), the value of every
  secret-named key: one whose last word(s) are ``api_key``, ``token``,
  ``auth``, ``authorization``, ``secret``, ``password``, ``credential(s)``, ``cookie`` or
  ``private_key``, in any case, snake, kebab or camel style (``x-api-key``,
  ``accessToken``, ``client_secret``). ``max_tokens`` and other counts are not
  secrets. ``None`` and ``""`` stay as they are: they reveal nothing and help
  to debug a missing key.

>>> redact("401 from https://api.example.com?api_key=abc123 with sk-proj-aaaaaaaaaaaaaaaa")
'401 from https://api.example.com?api_key=[REDACTED] with [REDACTED]'
>>> redact({"Authorization": "Bearer xyz", "max_tokens": 5, "nested": [{"apiKey": "k"}]})
{'Authorization': '[REDACTED]', 'max_tokens': 5, 'nested': [{'apiKey': '[REDACTED]'}]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast, overload

__all__ = ["REDACTED", "is_secret_key", "redact"]

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(?:^|_)(?:api_?key|secret_key|private_key|token|auth|authorization|secret|password"
    r"|passwd|credentials?|cookie)$"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_VALUE = re.compile(
    r"(?<![\w.-])(?P<key>(?:[A-Za-z][\w.-]*?)?(?:key|token|authorization|secret|password|passwd"
    r"|credentials?|cookie|auth))(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?!(?:(?:Bearer|Basic|Token)\s+)?\[REDACTED\])"  # already redacted: keep idempotent
    r"(?P<value>(?:(?:Bearer|Basic|Token)\s+)?[^\s\"',;&)}\]]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{4,}")
_SK_KEY = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key or parameter name names a credential.

    >>> [is_secret_key(k) for k in ("api_key", "X-Api-Key", "accessToken", "max_tokens")]
    [True, True, True, False]
    """
    normalized = _CAMEL.sub("_", key).lower().replace("-", "_").replace(".", "_")
    return _SECRET_KEY.search(normalized) is not None


def _redact_key_value(match: re.Match[str]) -> str:
    if is_secret_key(match["key"]):
        return f"{match['key']}{match['sep']}{REDACTED}"
    return match[0]


def _redact_text(text: str) -> str:
    text = _KEY_VALUE.sub(_redact_key_value, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _SK_KEY.sub(REDACTED, text)


@overload
def redact(value: str) -> str: ...
@overload
def redact(value: object) -> object: ...
def redact(value: object) -> object:
    """Return ``value`` with credentials replaced by ``"[REDACTED]"``.

    Strings are scanned for keys and tokens; mappings, lists and tuples are
    copied with their items redacted; anything else is returned unchanged
    (format it with ``str()`` first to redact its text).
    """
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        items = cast("Mapping[Any, Any]", value)
        return {
            k: REDACTED
            if isinstance(k, str) and is_secret_key(k) and not (v is None or v == "")
            else redact(v)
            for k, v in items.items()
        }
    if isinstance(value, list | tuple):
        seq = cast("list[Any] | tuple[Any, ...]", value)
        redacted = [redact(v) for v in seq]
        return redacted if isinstance(value, list) else tuple(redacted)
    return value
