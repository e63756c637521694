"""Hypothesis strategies for testing streaming pipelines.

The property every text operator keeps: its output does not depend on where the
chunk boundaries of its input fell, and no text is lost. :func:`chunkings` draws
every way to split a text into non-empty chunks, shrinking toward fewer chunks,
so a failing example is as small as it can be.

>>> from hypothesis import given, strategies as st
>>> from kagura.testing.strategies import chunkings
>>> @given(st.text(min_size=1).flatmap(lambda t: st.tuples(st.just(t), chunkings(t))))
... def test_chunks_join_back(args):
...     text, chunks = args
...     assert "".join(chunks) == text and all(chunks)
>>> test_chunks_join_back()
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["chunkings", "split_at", "text_and_chunkings", "token_streams"]


def split_at(text: str, cuts: list[int] | set[int]) -> list[str]:
    """Split ``text`` at the given offsets (ignoring 0, len(text) and repeats).

    >>> split_at("abcdef", [2, 4])
    ['ab', 'cd', 'ef']
    """
    bounds = sorted({c for c in cuts if 0 < c < len(text)})
    pieces: list[str] = []
    start = 0
    for cut in bounds:
        pieces.append(text[start:cut])
        start = cut
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def chunkings(text: str, *, max_chunks: int | None = None) -> st.SearchStrategy[list[str]]:
    """Every way to split ``text`` into non-empty chunks; shrinks toward one chunk.

    The empty text has exactly one chunking: no chunks. ``max_chunks`` caps the
    number of cuts, for very long texts.
    """
    if not text:
        return st.just([])
    positions = range(1, len(text))
    max_cuts = len(text) - 1 if max_chunks is None else max(0, min(len(text) - 1, max_chunks - 1))
    if max_cuts == 0:
        return st.just([text])
    return st.sets(st.sampled_from(positions), max_size=max_cuts).map(
        lambda cuts: split_at(text, cuts)
    )


def text_and_chunkings(
    texts: st.SearchStrategy[str] | None = None, *, max_chunks: int | None = None
) -> st.SearchStrategy[tuple[str, list[str]]]:
    """A text and one of its chunkings, as a ``(text, chunks)`` pair."""
    source = texts if texts is not None else st.text()
    return source.flatmap(lambda t: st.tuples(st.just(t), chunkings(t, max_chunks=max_chunks)))


_WORDS = st.sampled_from(
    [
        "the", "model", "streams", "tokens", "Hello", "world", "!", ".", ",", "?", " ",
        "\n", "Mr.", "U.S.", "3.14", "e.g.", "```", "{", "}", '"', ":", "é", "漢字", "。", "🙂",
    ]
)  # fmt: skip


@st.composite
def token_streams(draw: st.DrawFn, *, max_tokens: int = 60) -> list[str]:
    """Lists of non-empty token-like strings, as an LLM would stream them.

    Mixes words, spaces, punctuation, abbreviations, code fences, multi-byte
    characters and emoji; sometimes glues tokens together as providers do.
    """
    tokens = draw(st.lists(st.one_of(_WORDS, st.text(min_size=1, max_size=6)), max_size=max_tokens))
    return [t for t in tokens if t]
