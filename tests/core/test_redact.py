"""redact(): credentials never reach logs, errors or reprs."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kagura.core.redact import REDACTED, is_secret_key, redact

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


_PIECES = ["sk-", "abcdefgh12", "api_key", "=", ":", " ", '"', "Bearer ", "token", REDACTED, "\n"]


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3)).map("".join))
def test_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
