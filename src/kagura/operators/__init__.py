"""Operators over LLM text streams: lossless, chunking-invariant, virtual-time tested.

Each factory returns a function from Observable to Observable, for use in
``observable.pipe(...)``::

    from kagura import operators as ops
    source.pipe(ops.buffer_sentences(), ops.throttle(0.05))

One private module per operator; this package only re-exports them.
"""

# Each operator module adds its import here (keep the lines sorted).

__all__: list[str] = []
