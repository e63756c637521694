"""Operators over LLM text streams: lossless, chunking-invariant, virtual-time tested.

Each factory returns a function from Observable to Observable, for use in
``observable.pipe(...)``::

    from kagura import operators as ops
    source.pipe(ops.buffer_sentences(), ops.throttle(0.05))

One private module per operator; this package only re-exports them.
"""

# Each operator module adds its import here (keep the lines sorted).
from kagura.operators._accumulate import accumulate
from kagura.operators._parse import parse_items, parse_model
from kagura.operators._rechunk import chunk_lines, chunk_regex, chunk_words
from kagura.operators._sentences import buffer_sentences
from kagura.operators._strip_tags import strip_tags
from kagura.operators._tee_log import tee_log
from kagura.operators._throttle import throttle
from kagura.operators._timeouts import first_token_timeout, idle_timeout

__all__: list[str] = [
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
