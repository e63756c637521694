"""`import kagura` is cheap and never imports litellm; the lazy exports match their stubs."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kagura
from kagura import _exports


def test_import_does_not_load_litellm() -> None:
    code = "import sys, kagura; print('litellm' in sys.modules, 'reactivex' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_opentelemetry_is_imported_only_by_instrument() -> None:
    code = (
        "import asyncio, sys, kagura, kagura.telemetry\n"
        "config = kagura.LLMConfig(model='kagura/echo')\n"
        "asyncio.run(kagura.call_llm('hi', config))\n"
        "print('opentelemetry' in sys.modules, end=' ')\n"
        "kagura.telemetry.instrument()\n"
        "print('opentelemetry' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_import_loads_no_other_kagura_module() -> None:
    code = (
        "import sys, kagura, kagura.operators; "
        "print(*sorted(m for m in sys.modules if m.partition('.')[0] == 'kagura'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["kagura", "kagura.operators"]


@pytest.mark.parametrize("package", _exports.PACKAGES)
def test_public_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("package", _exports.PACKAGES)
def test_each_name_is_defined_where_the_table_says(package: str) -> None:
    module = importlib.import_module(package)
    for name, source in vars(module)["_EXPORTS"].items():
        value = getattr(module, name)
        if source == f"{package}.{name}":
            assert value is importlib.import_module(source)
        else:
            assert value is getattr(importlib.import_module(source), name), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = kagura.no_such_name  # type: ignore[attr-defined] (the failing access is the test)
    with pytest.raises(AttributeError, match="no_such_operator"):
        _ = kagura.operators.no_such_operator  # type: ignore[attr-defined] (the same)


@pytest.mark.parametrize("package", _exports.PACKAGES)
def test_the_stub_is_up_to_date_with_its_table(package: str) -> None:
    path = _exports.stub_path(package)
    assert path.name == "__init__.pyi"
    assert path.read_text(encoding="utf-8") == _exports.stub(package), (
        f"{path} is out of date: run python -m kagura._exports"
    )
    assert _exports.main(["--check"]) == 0


def test_a_stub_is_written_from_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "lazypkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            _EXPORTS = {"sub": "lazypkg.sub", "thing": "lazypkg._impl", "Thing": "lazypkg._impl"}
            VERSION = 3
            __all__ = [*_EXPORTS, "VERSION"]
            """
        )
    )
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setitem(sys.modules, "lazypkg", None)  # so that it is removed after the test
    del sys.modules["lazypkg"]  # and imported from tmp_path now
    assert _exports.stale(("lazypkg",)) == ["lazypkg"]  # no stub yet
    text = _exports.stub("lazypkg")
    assert text.splitlines()[2:] == [
        "",
        "from lazypkg import sub as sub",
        "from lazypkg._impl import Thing as Thing",
        "from lazypkg._impl import thing as thing",
        "",
        "VERSION: int",
        "",
        "__all__ = [",
        '    "VERSION",',
        '    "Thing",',
        '    "sub",',
        '    "thing",',
        "]",
    ]
    (package / "__init__.pyi").write_text(text)
    assert _exports.stale(("lazypkg",)) == []
    (package / "__init__.pyi").write_text(text.replace("VERSION: int\n", ""))
    assert _exports.stale(("lazypkg",)) == ["lazypkg"]  # edited by hand: out of date


def test_the_command_checks_and_refuses_unknown_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _exports.main(["--check"]) == 0
    assert _exports.main(["--force"]) == 2
    assert "usage" in capsys.readouterr().err
