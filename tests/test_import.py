"""`import kagura` is cheap and never imports litellm."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kagura


def test_import_does_not_load_litellm() -> None:
    code = "import sys, kagura; print('litellm' in sys.modules, 'reactivex' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_public_names_resolve() -> None:
    for name in kagura.__all__:
        assert getattr(kagura, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = kagura.no_such_name  # type: ignore[attr-defined] (the failing access is the test)
