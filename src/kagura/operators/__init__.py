"""Operators over LLM text streams: lossless, chunking-invariant, virtual-time tested.

Each factory returns a function from Observable to Observable, for use in
``observable.pipe(...)``::

    from kagura import operators as ops
    source.pipe(ops.buffer_sentences(), ops.throttle(0.05))

One private module per operator; this package only re-exports them, each on
first use (``tee_log`` alone would bring structlog's import to every program
that uses any operator).

>>> from kagura import operators as ops
>>> ops.buffer_sentences.__module__
'kagura.operators._sentences'
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it, loaded on first access. Each operator module
# adds its names here (keep the lines sorted), then runs `python -m kagura._exports`, which
# writes __init__.pyi (the same names, for type checkers) from this table.
_EXPORTS: dict[str, str] = {
    "accumulate": "kagura.operators._accumulate",
    "buffer_sentences": "kagura.operators._sentences",
    "chunk_lines": "kagura.operators._rechunk",
    "chunk_regex": "kagura.operators._rechunk",
    "chunk_words": "kagura.operators._rechunk",
    "first_token_timeout": "kagura.operators._timeouts",
    "idle_timeout": "kagura.operators._timeouts",
    "is_complete": "kagura.operators._partial",
    "parse_items": "kagura.operators._parse",
    "parse_model": "kagura.operators._parse",
    "Partial": "kagura.operators._partial",
    "peek": "kagura.operators._partial",
    "strip_tags": "kagura.operators._strip_tags",
    "tee_log": "kagura.operators._tee_log",
    "throttle": "kagura.operators._throttle",
}

# Built from the table, so pyright cannot read it here; it reads the stub's list instead.
__all__ = [*_EXPORTS]  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kagura.operators' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
