"""redact(): credentials never reach logs, errors or reprs."""

from __future__ import annotations

import contextlib
import json
import string
import traceback
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kagura import _redact as redact_module
from kagura._redact import (
    MAX_SECRETS,
    REDACTED,
    is_secret_key,
    redact,
    redact_error,
    redact_url,
    remember_environment_secrets,
    remember_secret,
    secrets_in_url,
)
from kagura.errors import AuthError

KEY = "sk-proj-AbCdEf0123456789xyz"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bad key {KEY}.", f"bad key {REDACTED}."),
        ("sk-ant-api03-abcdefgh_ij", REDACTED),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: {REDACTED}"),
        ("sent Bearer eyJhbGciOi.x.y", f"sent Bearer {REDACTED}"),
        ('{"api_key": "abc123", "model": "gpt"}', f'{{"api_key": "{REDACTED}", "model": "gpt"}}'),
        ("https://h/v1?api_key=abc&x=1", f"https://h/v1?api_key={REDACTED}&x=1"),
        ("password=hunter2 user=bob", f"password={REDACTED} user=bob"),
        ("X-Api-Key: abc", f"X-Api-Key: {REDACTED}"),
        ("{'client_secret': 'shh'}", f"{{'client_secret': '{REDACTED}'}}"),
        ("token: abc, max_tokens=5", f"token: {REDACTED}, max_tokens=5"),
    ],
)
def test_redacts_secrets_in_text(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "scikit sk-learn task-management",
        "max_tokens=100 completion_tokens: 3",
        "the token limit was reached",
        "monkey=3 key=value",
        "",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "key",
    ["api_key", "API_KEY", "apiKey", "x-api-key", "access_token", "accessToken", "token",
     "Authorization", "client_secret", "password", "credentials", "private_key", "cookie"],
)  # fmt: skip
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["max_tokens", "total_tokens", "model", "token_count", "keys", "monkey", "author"]
)
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_mappings_are_redacted_recursively_and_copied() -> None:
    value = {
        "api_key": "k",
        "usage": {"total_tokens": 7},
        "headers": [{"Authorization": "Bearer t"}, ("x", f"key {KEY}")],
        "missing_token": None,
        "empty_password": "",
        "note": "fine",
        3: "non-str key",
    }
    assert redact(value) == {
        "api_key": REDACTED,
        "usage": {"total_tokens": 7},
        "headers": [{"Authorization": REDACTED}, ("x", f"key {REDACTED}")],
        "missing_token": None,
        "empty_password": "",
        "note": "fine",
        3: "non-str key",
    }
    assert value["api_key"] == "k"


def test_other_objects_are_returned_unchanged() -> None:
    marker = object()
    assert redact(marker) is marker
    assert redact(42) == 42


_SECRET_BODY = st.text(string.ascii_letters + string.digits + "_-", min_size=8, max_size=40)


@given(before=st.text(), body=_SECRET_BODY, after=st.text())
def test_an_embedded_sk_key_never_survives(before: str, body: str, after: str) -> None:
    secret = f"sk-{body}"
    # Separate the key from its surroundings as a key is in real text.
    text = f"{before} {secret} {after}"
    assert secret not in redact(text)


_PIECES = ["sk-", "abcdefgh12", "api_key", "=", ":", " ", '"', "Bearer ", "token", REDACTED, "\n",
           "'", ",", "Basic ", "auth", "invalid", "x-1", "AbCdEfGh", "\t", "-"]  # fmt: skip


@example("sk-abcdefgh12token=token=sk-")  # an sk- key glued to a secret name
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3)).map("".join))
def test_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


# -- prose is not a credential ----------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "invalid key",
        "Incorrect API key provided",
        "token expired",
        "the key is wrong",
        "auth failed",
        "auth: invalid key",
        "Authorization: invalid key",
        "api_key: Incorrect API key provided",
        "x-api-key: invalid key",
        "password: too short",
        "password = too short",
        "secret: is wrong",
        '{"token": "invalid key"}',
        "Bearer token expired",
        "Basic auth failed",
        'WWW-Authenticate: Bearer realm="api", error="invalid_token"',
    ],
)
def test_prose_about_keys_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key: my-plain-key-1234 is invalid", f"api_key: {REDACTED} is invalid"),
        ("token: abc\nnext line", f"token: {REDACTED}\nnext line"),
        ("token=expired", f"token={REDACTED}"),
        ('{"token":"abc def"}', f'{{"token":"{REDACTED} def"}}'),
        ("Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        ("sent Bearer abc.def", f"sent Bearer {REDACTED}"),
        ("Authorization: Bearer lettersonly", f"Authorization: {REDACTED}"),
        ("auth: AbcDefGhiJkl more", f"auth: {REDACTED} more"),
    ],
)
def test_values_that_look_like_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


_WORDS = ["auth", "token", "key", "api", "Bearer", "Basic", "Token", "Authorization",
          "password", "secret", "invalid", "expired", "the", "is", "wrong"]  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from(_WORDS), st.booleans()), min_size=1))
def test_sentences_of_plain_words_are_left_alone(words: list[tuple[str, bool]]) -> None:
    # A colon is allowed where at least three words follow, so no value ends the phrase.
    text = " ".join(
        word + (":" if colon and i < len(words) - 3 else "")
        for i, (word, colon) in enumerate(words)
    )
    assert redact(text) == text


@pytest.mark.parametrize("key", ["AWS_SECRET_ACCESS_KEY", "accessKey", "ANTHROPIC_API_KEY"])
def test_more_secret_keys(key: str) -> None:
    assert is_secret_key(key)


def test_an_access_key_id_is_not_secret() -> None:
    assert not is_secret_key("aws_access_key_id")


# -- remembered secrets -----------------------------------------------------------------
@contextlib.contextmanager
def isolated_secrets() -> Iterator[None]:
    """Remembered secrets are process-wide: start with none, restore them after the test."""
    registry = redact_module._registry  # pyright: ignore[reportPrivateUsage] -- the test's subject
    with registry.lock:
        saved, matchers = registry.secrets.copy(), registry.matchers
        registry.secrets.clear()
        registry.matchers = type(matchers)()
    try:
        yield
    finally:
        with registry.lock:
            registry.secrets.clear()
            registry.secrets.update(saved)
            registry.matchers = matchers


@pytest.fixture
def secrets() -> Iterator[None]:
    with isolated_secrets():
        yield


PLAIN = "my-plain-key-1234"
ODD = 'p@ss/wörd +"x\\y'


@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize(
    "form",
    [ODD, quote(ODD, safe=""), quote(ODD), quote_plus(ODD), json.dumps(ODD)[1:-1],
     json.dumps(ODD, ensure_ascii=False)[1:-1]],
)  # fmt: skip
def test_a_remembered_secret_is_scrubbed_in_every_echoed_form(form: str) -> None:
    remember_secret(ODD)
    assert redact(f"401: the key {form} is wrong") == f"401: the key {REDACTED} is wrong"


@pytest.mark.usefixtures("secrets")
def test_a_remembered_secret_of_any_shape_is_scrubbed_everywhere() -> None:
    text = f'Error code: 401 - {{"error": {{"message": "Incorrect API key provided: {PLAIN}"}}}}'
    assert PLAIN in redact(text)
    remember_secret(PLAIN)
    assert redact(text) == text.replace(PLAIN, REDACTED)
    assert redact({"detail": [f"key={PLAIN}"]}) == {"detail": [f"key={REDACTED}"]}


@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize("value", [None, "", "abc", "ACTE", "[REDACTED]"])
def test_empty_short_and_marker_values_are_not_remembered(value: str | None) -> None:
    before = len(redact_module._registry.secrets)  # pyright: ignore[reportPrivateUsage]
    remember_secret(value)
    assert len(redact_module._registry.secrets) == before  # pyright: ignore[reportPrivateUsage]
    assert redact("abc ACTE [REDACTED] x") == "abc ACTE [REDACTED] x"


@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize("placeholder", ["ollama", "EMPTY", "dummy", "notneeded"[:8]])
def test_placeholder_keys_of_local_servers_do_not_garble_messages(placeholder: str) -> None:
    remember_secret(placeholder)
    message = f"unknown model '{placeholder}/llama3'"
    assert redact(message) == message
    remember_secret(placeholder + "-7f3a")  # a key with a digit is a credential
    assert redact(f"{placeholder}-7f3a") == REDACTED


@pytest.mark.usefixtures("secrets")
def test_four_characters_are_enough() -> None:
    remember_secret("q7Zx")
    assert redact("got q7Zx") == f"got {REDACTED}"


@pytest.mark.usefixtures("secrets")
@pytest.mark.parametrize("order", [1, -1])
def test_the_longest_secret_wins_whichever_came_first(order: int) -> None:
    short, long = "abcd-1234", "xx-abcd-1234-yy"
    for value in [short, long][::order]:
        remember_secret(value)
    assert redact(f"{long} and {short}") == f"{REDACTED} and {REDACTED}"


@pytest.mark.usefixtures("secrets")
def test_many_secrets_are_all_scrubbed() -> None:
    values = [f"k{i:03d}-{'z' * (i % 7)}-secret" for i in range(60)]
    for value in values:
        remember_secret(value)
    text = " | ".join(values)
    assert redact(text) == " | ".join([REDACTED] * len(values))


@pytest.mark.usefixtures("secrets")
def test_the_registry_is_bounded_and_keeps_the_most_recent() -> None:
    registry = redact_module._registry  # pyright: ignore[reportPrivateUsage]
    values = [f"bounded-{i:04d}" for i in range(MAX_SECRETS + 10)]
    for value in values:
        remember_secret(value)
        remember_secret(values[0])  # used again and again: stays
    assert len(registry.secrets) == MAX_SECRETS
    assert values[0] in registry.secrets
    assert values[1] not in registry.secrets
    recent = values[-(MAX_SECRETS - 1) :]
    assert redact(" ".join(recent)) == " ".join([REDACTED] * len(recent))
    assert redact(values[0]) == REDACTED


@pytest.mark.usefixtures("secrets")
def test_environment_secrets_are_remembered() -> None:
    remember_environment_secrets(
        {"ANTHROPIC_API_KEY": "plain-anthropic-key", "NO_AUTH": "false", "HOME": "/home/someone"}
    )
    assert redact("plain-anthropic-key false /home/someone") == f"{REDACTED} false /home/someone"


_CREDENTIAL = st.text(
    string.ascii_letters + string.digits + "-_.~+/=", min_size=4, max_size=40
).filter(lambda s: not (len(s) <= 8 and s.isalpha()))  # placeholders are not remembered


@given(before=st.text(), secret=_CREDENTIAL, after=st.text())
def test_a_remembered_secret_never_survives(before: str, secret: str, after: str) -> None:
    with isolated_secrets():
        remember_secret(secret)
        once = redact(before + secret + after)
        assert secret not in once
        assert redact(once) == once


# -- errors -----------------------------------------------------------------------------
class _ReadOnly(Exception):
    @property
    def message(self) -> str:
        return f"read-only {PLAIN}"


@pytest.mark.usefixtures("secrets")
def test_redact_error_scrubs_the_whole_chain_in_place() -> None:
    remember_secret(PLAIN)
    root = OSError(13, f"denied {PLAIN}")
    cause = KeyError(f"no {PLAIN}")
    cause.__context__ = root
    err = AuthError(f"401: {PLAIN} is wrong", status_code=401)
    err.__cause__ = cause
    err.add_note(f"sent {PLAIN}")
    root.__context__ = err  # a cycle
    assert redact_error(err) is err
    assert err.message == f"401: {REDACTED} is wrong"
    assert err.args == (f"401: {REDACTED} is wrong",)
    assert err.__notes__ == [f"sent {REDACTED}"]
    assert err.status_code == 401
    assert cause.args == (f"no {REDACTED}",)
    assert root.strerror == f"denied {REDACTED}"
    assert PLAIN not in "".join(traceback.format_exception(err))


@pytest.mark.usefixtures("secrets")
def test_redact_error_reaches_into_groups_and_leaves_what_it_cannot_set() -> None:
    remember_secret(PLAIN)
    stuck = _ReadOnly(f"args {PLAIN}")
    group = ExceptionGroup("several", [ValueError(PLAIN), stuck])
    redact_error(group)
    assert group.exceptions[0].args == (REDACTED,)
    assert stuck.args == (f"args {REDACTED}",)
    assert stuck.message == f"read-only {PLAIN}"  # a property: left as it is


# -- URLs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "found", "shown"),
    [
        ("https://bob:hunter2@h/v1", ["hunter2"], f"https://bob:{REDACTED}@h/v1"),
        ("https://ghp_tok3n@h/v1", ["ghp_tok3n"], f"https://{REDACTED}@h/v1"),
        ("http://sk_live_1:@h:8080/v1", ["sk_live_1"], f"http://{REDACTED}:@h:8080/v1"),
        ("https://u:p%40ss@h", ["p@ss", "p%40ss"], f"https://u:{REDACTED}@h"),
        (
            "https://h/v1?model=x&api_key=k%2B1&key=goog-1#access_token=t-9",
            ["k+1", "k%2B1", "goog-1", "t-9"],
            f"https://h/v1?model=x&api_key={REDACTED}&key={REDACTED}#access_token={REDACTED}",
        ),
        ("https://h/v1?max_tokens=5&api_key=", [], "https://h/v1?max_tokens=5&api_key="),
        ("http://127.0.0.1:8000/v1", [], "http://127.0.0.1:8000/v1"),
        ("not a url", [], "not a url"),
    ],
)
def test_secrets_in_urls(url: str, found: list[str], shown: str) -> None:
    assert secrets_in_url(url) == found
    assert redact_url(url) == shown


def test_an_unparsable_url_is_still_redacted_as_text() -> None:
    url = "http://[::1/v1?api_key=abc123"
    assert secrets_in_url(url) == []
    assert redact_url(url) == f"http://[::1/v1?api_key={REDACTED}"
