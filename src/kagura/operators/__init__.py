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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kagura.operators._accumulate import accumulate as accumulate
    from kagura.operators._parse import parse_items as parse_items
    from kagura.operators._parse import parse_model as parse_model
    from kagura.operators._rechunk import chunk_lines as chunk_lines
    from kagura.operators._rechunk import chunk_regex as chunk_regex
    from kagura.operators._rechunk import chunk_words as chunk_words
    from kagura.operators._sentences import buffer_sentences as buffer_sentences
    from kagura.operators._strip_tags import strip_tags as strip_tags
    from kagura.operators._tee_log import tee_log as tee_log
    from kagura.operators._throttle import throttle as throttle
    from kagura.operators._timeouts import first_token_timeout as first_token_timeout
    from kagura.operators._timeouts import idle_timeout as idle_timeout

# Each operator module adds its names here (keep the lines sorted), and above for type checkers.
_EXPORTS: dict[str, str] = {
    "accumulate": "kagura.operators._accumulate",
    "buffer_sentences": "kagura.operators._sentences",
    "chunk_lines": "kagura.operators._rechunk",
    "chunk_regex": "kagura.operators._rechunk",
    "chunk_words": "kagura.operators._rechunk",
    "first_token_timeout": "kagura.operators._timeouts",
    "idle_timeout": "kagura.operators._timeouts",
    "parse_items": "kagura.operators._parse",
    "parse_model": "kagura.operators._parse",
    "strip_tags": "kagura.operators._strip_tags",
    "tee_log": "kagura.operators._tee_log",
    "throttle": "kagura.operators._throttle",
}

__all__ = [
    "accumulate",
    "buffer_sentences",
    "chunk_lines",
    "chunk_regex",
    "chunk_words",
    "first_token_timeout",
    "idle_timeout",
    "parse_items",
    "parse_model",
    "strip_tags",
    "tee_log",
    "throttle",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kagura.operators' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
