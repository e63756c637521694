"""The lazy export tables of kagura's packages, and the type stubs written from them.

``kagura/__init__.py`` and ``kagura/operators/__init__.py`` each keep one table,
``_EXPORTS`` (public name -> the module that defines it), which drives their
``__getattr__`` (a name is imported on first use) and their ``__all__``. Type
checkers cannot see through a ``__getattr__``, so beside each sits an
``__init__.pyi`` that imports every name from its module; this module writes those
stubs from the tables, and ``tests/test_import.py`` fails when one is out of date::

    python -m kagura._exports          # rewrite the stubs
    python -m kagura._exports --check  # exit 1 if a stub is out of date

Nothing imports this module at run time.

>>> print(stub("kagura.operators").splitlines()[3])
from kagura.operators._accumulate import accumulate as accumulate
"""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = ["PACKAGES", "main", "stale", "stub", "stub_path"]

PACKAGES: Final = ("kagura", "kagura.operators")
"""The packages whose exports are lazy, each with a table and a stub."""

_HEADER: Final = (
    "# Written by `python -m kagura._exports` from _EXPORTS in __init__.py: do not edit.\n"
    "# Type checkers read this stub; at run time __init__.py imports each name on first use.\n"
)


def _sort_key(name: str) -> tuple[int, str]:
    """The order ruff keeps imported names and ``__all__`` in: CONSTANTS, Classes, the rest."""
    if len(name) > 1 and name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def stub(package: str) -> str:
    """The text of ``package``'s ``__init__.pyi``, from its ``_EXPORTS`` and ``__all__``.

    Each table entry becomes ``from <module> import <name> as <name>`` (a submodule
    mapped to itself: ``from <package> import <name> as <name>``); any other name of
    ``__all__`` is one the package defines itself, declared with its run-time type.
    """
    module = importlib.import_module(package)
    namespace = vars(module)
    exports: Mapping[str, str] = namespace["_EXPORTS"]
    public: list[str] = list(namespace["__all__"])
    imports: list[tuple[str, str]] = []
    for name, source in exports.items():
        imports.append((package, name) if source == f"{package}.{name}" else (source, name))
    imports.sort(key=lambda item: (item[0], _sort_key(item[1])))
    lines = [f"from {source} import {name} as {name}" for source, name in imports]
    own = [name for name in public if name not in exports]
    if own:
        lines.append("")
    for name in own:
        value: object = namespace[name]
        kind = type(value)
        if getattr(builtins, kind.__name__, None) is not kind:
            raise TypeError(f"{package}.{name}: only builtin types can be declared, not {kind}")
        lines.append(f"{name}: {kind.__name__}")
    names = "".join(f'    "{name}",\n' for name in sorted(public, key=_sort_key))
    return _HEADER + "\n" + "\n".join(lines) + f"\n\n__all__ = [\n{names}]\n"


def stub_path(package: str) -> Path:
    """Where ``package``'s stub lives: ``__init__.pyi`` beside its ``__init__.py``."""
    init = importlib.import_module(package).__file__
    if init is None:
        raise ValueError(f"{package} has no __init__.py")
    return Path(init).with_suffix(".pyi")


def stale(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The packages whose stub on disk differs from the one their table gives."""
    return [
        p
        for p in packages
        if not stub_path(p).is_file() or stub_path(p).read_text(encoding="utf-8") != stub(p)
    ]


def main(argv: list[str] | None = None) -> int:
    """Rewrite every stale stub, or with ``--check`` only name them (exit status 1)."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"]):
        print("usage: python -m kagura._exports [--check]", file=sys.stderr)
        return 2
    out_of_date = stale()
    for package in out_of_date:
        if args:
            print(f"{stub_path(package)} is out of date: run python -m kagura._exports")
        else:
            stub_path(package).write_text(stub(package), encoding="utf-8")
            print(f"wrote {stub_path(package)}")
    return 1 if args and out_of_date else 0


if __name__ == "__main__":
    raise SystemExit(main())
