"""Redact credentials from anything kagura logs, raises or prints.

:func:`redact` replaces, with ``"[REDACTED]"``:

- every secret kagura was told about with :func:`remember_secret` (the API keys,
  OAuth client secrets and tokens it sends, the credentials in an ``api_base``, the
  provider keys in the environment), literally, whatever its shape: as is,
  URL-encoded and JSON-escaped, the longest first;
- API keys shaped like ``sk-...`` (OpenAI, Anthropic, and compatible providers);
- the credentials of ``Bearer ...`` / ``Basic ...`` authorization values;
- the value after a secret-named key in text (``api_key=...``, ``"token": "..."``,
  ``Authorization: ...``). After ``:`` or ``=`` and a space, a value is taken for a
  credential only if it looks like one (a digit or one of ``-_.~+/=``, mixed case, 20
  characters or more) or ends the phrase (the end of the text or line, a quote, ``,``,
  ``;``, ``&``, a closing bracket): ``"auth: invalid key"`` is prose and stays;
- in mappings (recursively, also inside lists and tuples), the value of every
  secret-named key: one whose last word(s) are ``api_key``, ``access_key``, ``token``,
  ``auth``, ``authorization``, ``secret``, ``password``, ``credential(s)``, ``cookie`` or
  ``private_key``, in any case, snake, kebab or camel style (``x-api-key``,
  ``accessToken``, ``client_secret``). ``max_tokens`` and other counts are not
  secrets. ``None`` and ``""`` stay as they are: they reveal nothing and help
  to debug a missing key.

>>> redact("401 from https://api.example.com?api_key=abc123 with sk-proj-aaaaaaaaaaaaaaaa")
'401 from https://api.example.com?api_key=[REDACTED] with [REDACTED]'
>>> redact({"Authorization": "Bearer xyz", "max_tokens": 5, "nested": [{"apiKey": "k"}]})
{'Authorization': '[REDACTED]', 'max_tokens': 5, 'nested': [{'apiKey': '[REDACTED]'}]}
>>> remember_secret("plain-key-7d3f")
>>> redact('{"error": "Incorrect API key provided: plain-key-7d3f"}')
'{"error": "Incorrect API key provided: [REDACTED]"}'

The registry of remembered secrets is process-wide and bounded: at least the
:data:`MAX_SECRETS` most recently remembered values are scrubbed (remembering a value
again makes it recent; one pushed out may stay scrubbed a while). Values shorter than
:data:`MIN_SECRET_LENGTH` characters are ignored: no credential is that short, and
scrubbing ``"abc"`` everywhere would garble ordinary text.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast, overload
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "MAX_SECRETS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "is_secret_key",
    "redact",
    "redact_error",
    "redact_url",
    "remember_environment_secrets",
    "remember_secret",
    "secrets_in_url",
]

REDACTED = "[REDACTED]"

MIN_SECRET_LENGTH = 4
"""Shorter values are not remembered: too short to be a credential, too common to scrub."""
_PLACEHOLDER_MAX = 8

MAX_SECRETS = 256
"""How many remembered secrets are kept (the most recently remembered)."""

_SECRET_KEY = re.compile(
    r"(?:^|_)(?:api_?key|access_?key|secret_key|private_key|token|auth|authorization|secret"
    r"|password|passwd|credentials?|cookie)$"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# A whole word (possessive: no backtracking into it) that ends like a secret's name.
_KEY_VALUE = re.compile(
    r"(?<![\w.-])(?P<key>[A-Za-z][\w.-]*+)"
    r"(?:(?<=key)|(?<=token)|(?<=auth)|(?<=authorization)|(?<=secret)|(?<=password)"
    r"|(?<=passwd)|(?<=credential)|(?<=credentials)|(?<=cookie))"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?!(?:(?:Bearer|Basic|Token)\s+)?\[REDACTED\])"  # already redacted: keep idempotent
    r"(?P<value>(?P<scheme>(?:Bearer|Basic|Token)\s+)?[^\s\"',;&)}\]]+)",
    re.IGNORECASE,
)
# RFC 6750's b64token; not followed by `=` or a quote, which would make it an
# auth-param name (`Bearer error="invalid_token"`, `Basic realm="api"`).
_BEARER = re.compile(
    r"\b(?P<scheme>Bearer|Basic)\s+(?P<cred>[A-Za-z0-9._~+/-]{4,}=*)(?![A-Za-z0-9._~+/=\"'-])"
)
_SK_KEY = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}")
# What may follow a value that ends a phrase: optional blanks, then the end, a line
# break, a quote, or a delimiter (`token: abc, next` / `"X-Api-Key: abc"`).
_ENDS_PHRASE = re.compile(r"[ \t]*(?:\Z|[\r\n\"',;&)}\]])")
_SHAPED = re.compile(r"[0-9_~+/=-]|\.(?=.)|[a-z][A-Z].*[a-z][A-Z]")
# A query (or fragment) parameter plainly named "key" or "sig" is one too (Google's
# `?key=`, Azure's SAS `sig=`), though not in a mapping, where "key" is too common.
_SECRET_PARAMS = frozenset({"key", "sig", "signature"})
# Shorter environment values are switches, not keys (`NO_AUTH=false`, `HF_TOKEN=none`).
_MIN_ENV_SECRET_LENGTH = 8
_SCRUBBED_ATTRIBUTES = ("message", "msg", "detail", "strerror")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key or parameter name names a credential.

    >>> [is_secret_key(k) for k in ("api_key", "X-Api-Key", "accessToken", "max_tokens")]
    [True, True, True, False]
    """
    normalized = _CAMEL.sub("_", key).lower().replace("-", "_").replace(".", "_")
    return _SECRET_KEY.search(normalized) is not None


# The names met in text and in the environment repeat: remember the verdicts.
_is_secret_name = functools.lru_cache(maxsize=1024)(is_secret_key)


# -- remembered secrets ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Matchers:
    """What :func:`redact` looks for; replaced whole, so a reader sees one consistent view."""

    pattern: re.Pattern[str] | None = None  # the secrets of the last merge, one trie regex
    merged: frozenset[str] = frozenset()
    fresh: tuple[str, ...] = ()  # the forms of secrets remembered since, longest first


class _Registry:
    """The remembered secrets, least recently remembered first, and their matchers.

    Compiling the regex is slow, and slower with every remembered secret (``re``'s
    compiler is written in Python), so new secrets wait in ``fresh`` (plain substring
    search) and are merged into the regex only when there are more than
    :data:`_FRESH_LIMIT` of them, or when one contains another (each tier replaces
    longest first; across tiers a shorter secret replaced first would leave pieces of
    the longer one).
    """

    __slots__ = ("lock", "matchers", "secrets")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards secrets and matchers together
        self.secrets: OrderedDict[str, None] = OrderedDict()
        self.matchers = _Matchers()


_registry = _Registry()
_FRESH_LIMIT = 16


def remember_secret(value: str | None) -> None:
    """Scrub ``value`` from everything :func:`redact` sees from now on.

    ``None``, ``""``, values shorter than :data:`MIN_SECRET_LENGTH` and placeholders (a
    plain word of at most 8 ASCII letters, such as ``"ollama"`` or ``"EMPTY"``, which local
    servers are given when they need no key) are ignored.
    Cheap to call again with a value already remembered (it becomes the most recent).
    """
    if not value or len(value) < MIN_SECRET_LENGTH or value in REDACTED or _placeholder(value):
        return
    registry = _registry
    with registry.lock:
        secrets = registry.secrets
        if value in secrets:
            secrets.move_to_end(value)
            return
        overlaps = any(value in s or s in value for s in secrets)
        secrets[value] = None
        if len(secrets) > MAX_SECRETS:
            secrets.popitem(last=False)
        merged = registry.matchers.merged
        if value in merged:  # evicted, then remembered again: the regex still has it
            return
        fresh = [s for s in secrets if s not in merged]
        if overlaps or len(fresh) > _FRESH_LIMIT:
            pattern = _compile(set[str]().union(*map(_forms, secrets)))
            registry.matchers = _Matchers(pattern, frozenset(secrets))
        else:
            forms = sorted(set[str]().union(*map(_forms, fresh)), key=lambda f: (-len(f), f))
            registry.matchers = _Matchers(registry.matchers.pattern, merged, tuple(forms))


def _placeholder(value: str) -> bool:
    # A short plain word ("ollama", "EMPTY", "dummy") is what local servers are given when
    # they need no key: it guards nothing, and scrubbing it would garble model names
    # ("ollama/llama3") in every message.
    return len(value) <= _PLACEHOLDER_MAX and value.isascii() and value.isalpha()


def remember_environment_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Remember the values of secret-named environment variables (``ANTHROPIC_API_KEY``...).

    For providers that read their key from the environment themselves (litellm).
    Values shorter than 8 characters are skipped: no provider key is that short, and
    ``NO_AUTH=false`` or ``HF_TOKEN=none`` names no credential. One pass over the
    environment: cheap enough to run on every call.
    """
    env = os.environ if environ is None else environ
    try:
        items = list(env.items())
    except RuntimeError:  # another thread changed the environment meanwhile: next time
        return
    for name, value in items:
        if len(value) >= _MIN_ENV_SECRET_LENGTH and _is_secret_name(name):
            remember_secret(value)


def _forms(secret: str) -> set[str]:
    """The ways a server may echo ``secret``: as is, URL-encoded, JSON-escaped."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


def _compile(words: set[str]) -> re.Pattern[str]:
    try:
        return re.compile(_alternation(words))
    except RecursionError:  # pathological nesting (aaaa, aaaab, aaaabb...): a flat one
        longest_first = sorted(words, key=lambda w: (-len(w), w))
        return re.compile("|".join(map(re.escape, longest_first)))


def _alternation(words: set[str]) -> str:
    """A regex matching any of ``words``, the longest where several match at one place.

    Built as a trie (``abc|abd`` is ``ab[cd]``-like), so a position that starts no word
    costs one check per distinct first character rather than one per word.
    """
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here
    return _trie_regex(root)


def _trie_regex(node: dict[str, Any]) -> str:
    run = ""
    while len(node) == 1 and "" not in node:  # one way on: a literal run, no group
        ((char, node),) = node.items()
        run += re.escape(char)
    branches = [re.escape(char) + _trie_regex(child) for char, child in node.items() if char]
    if not branches:
        return run
    group = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:  # a word may end here: prefer going on (the longer word)
        group = f"(?:{group})?"
    return run + group


# -- text --------------------------------------------------------------------------------
def _looks_like_credential(value: str) -> bool:
    value = value.rstrip(".!?:")
    return len(value) >= 20 or _SHAPED.search(value) is not None


def _redact_key_value(match: re.Match[str]) -> str:
    if not _is_secret_name(match["key"]):
        return match[0]
    scheme = match["scheme"] or ""
    credential = match["value"][len(scheme) :]
    sep = match["sep"]
    after = sep[max(sep.rfind(":"), sep.rfind("=")) + 1 :].strip("\"'")  # blanks or ""
    spaced = after != ""
    if (
        (not spaced and not scheme)
        or _looks_like_credential(credential)
        or _ENDS_PHRASE.match(match.string, match.end()) is not None
    ):
        return f"{match['key']}{sep}{REDACTED}"
    return match[0]  # prose: "auth: invalid key", "password: too short"


def _redact_bearer(match: re.Match[str]) -> str:
    if _looks_like_credential(match["cred"]):
        return f"{match['scheme']} {REDACTED}"
    return match[0]  # prose: "Bearer token expired", "Basic auth failed"


def _redact_text(text: str) -> str:
    matchers = _registry.matchers
    for form in matchers.fresh:
        if form in text:
            text = text.replace(form, REDACTED)
    if matchers.pattern is not None:
        text = matchers.pattern.sub(REDACTED, text)
    # sk- keys first: one glued to a name (`sk-...token=`) must not hide the name's value.
    text = _SK_KEY.sub(REDACTED, text)
    text = _KEY_VALUE.sub(_redact_key_value, text)
    return _BEARER.sub(_redact_bearer, text)


@overload
def redact(value: str) -> str: ...
@overload
def redact(value: object) -> object: ...
def redact(value: object) -> object:
    """Return ``value`` with credentials replaced by ``"[REDACTED]"``.

    Strings are scanned for remembered secrets, keys and tokens; mappings, lists
    and tuples are copied with their items redacted; anything else is returned
    unchanged (format it with ``str()`` first to redact its text).
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


# -- exceptions --------------------------------------------------------------------------
def redact_error(exc: BaseException) -> BaseException:
    """Scrub ``exc`` in place and return it: its chain's messages lose their credentials.

    For ``exc`` and every exception reachable through ``__cause__``, ``__context__``
    and exception groups, the ``str`` items of ``args``, the ``str`` attributes
    ``message``, ``msg``, ``detail`` and ``strerror``, and the notes are redacted.
    Attributes that cannot be set are left as they are.

    >>> remember_secret("plain-key-7d3f")
    >>> err = redact_error(ValueError("bad key plain-key-7d3f", 401))
    >>> err.args
    ('bad key [REDACTED]', 401)
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _redact_one(current)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            group = cast("BaseExceptionGroup[BaseException]", current)
            pending.extend(group.exceptions)
    return exc


def _redact_one(exc: BaseException) -> None:
    args = exc.args
    scrubbed = tuple(redact(a) if isinstance(a, str) else a for a in args)
    if scrubbed != args:
        with contextlib.suppress(AttributeError, TypeError):  # exotic exception types
            exc.args = scrubbed
    for name in _SCRUBBED_ATTRIBUTES:
        try:
            value: object = getattr(exc, name, None)
            if isinstance(value, str) and (clean := redact(value)) != value:
                setattr(exc, name, clean)
        except Exception:  # a property that fails or refuses to be set: leave it
            continue
    notes: object = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        items = cast("list[object]", notes)
        items[:] = [redact(n) if isinstance(n, str) else n for n in items]


# -- URLs --------------------------------------------------------------------------------
def _is_secret_param(name: str) -> bool:
    return is_secret_key(name) or name.lower() in _SECRET_PARAMS


def _decoded_and_raw(raw: str, *, plus: bool) -> list[str]:
    decoded = unquote_plus(raw) if plus else unquote(raw)
    return [decoded] if decoded == raw else [decoded, raw]


def secrets_in_url(url: str) -> list[str]:
    """The credentials written into ``url``, decoded (and as written, when that differs).

    They are the userinfo's password, or its user name when there is no password
    (``https://TOKEN@host``, ``https://KEY:@host``: then the name is the credential;
    beside a password it is an account name, which is not secret and is often a
    common word that scrubbing would garble everywhere), and the values of
    secret-named query and fragment parameters (``api_key``, ``access_token``, ``key``,
    ``sig``...). A URL that does not parse has none.

    >>> secrets_in_url("https://bob:pa%24%24@h/v1?api_key=k-123&model=x")
    ['pa$$', 'pa%24%24', 'k-123']
    >>> secrets_in_url("https://ghp_tok3n@h/v1")
    ['ghp_tok3n']
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        if password or user:
            found += _decoded_and_raw(password or user, plus=False)
    for component in (parts.query, parts.fragment):
        for piece in component.split("&"):
            name, eq, value = piece.partition("=")
            if eq and value and _is_secret_param(unquote_plus(name)):
                found += _decoded_and_raw(value, plus=True)
    return list(dict.fromkeys(found))


def redact_url(url: str) -> str:
    """``url`` with the credentials :func:`secrets_in_url` finds replaced, and redacted.

    >>> redact_url("https://bob:hunter2@h:8443/v1?api_key=k-123&model=x#top")
    'https://bob:[REDACTED]@h:8443/v1?api_key=[REDACTED]&model=x#top'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if password:
            userinfo = f"{user}:{REDACTED}"
        elif user:
            userinfo = f"{REDACTED}{colon}"
        netloc = f"{userinfo}@{hostport}"
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (netloc, query, fragment) != (parts.netloc, parts.query, parts.fragment):
        url = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    return redact(url)


def _redact_params(component: str) -> str:
    pieces = component.split("&")
    for i, piece in enumerate(pieces):
        name, eq, value = piece.partition("=")
        if eq and value and _is_secret_param(unquote_plus(name)):
            pieces[i] = f"{name}={REDACTED}"
    return "&".join(pieces)
