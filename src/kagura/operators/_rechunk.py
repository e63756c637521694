"""chunk_words, chunk_lines, chunk_regex: re-chunk text at word, line or pattern boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable

from reactivex import Observable, abc

from kagura.operators._guard import deliver_errors, fail_after

__all__ = ["chunk_lines", "chunk_regex", "chunk_words"]

# Given the held text and a new chunk, return the complete units and the new held text.
_Splitter = Callable[[str, str], tuple[list[str], str]]


def chunk_words() -> Callable[[Observable[str]], Observable[str]]:
    """Re-chunk text into words, each with its trailing whitespace.

    A word is complete when the first non-space character after its trailing
    whitespace arrives (the whitespace could grow until then); whitespace
    before the first word goes with it. The rest is emitted on completion and
    before an error. Lossless, and the output is the same for every chunking.

    Marble, with ``a = "Hel"``, ``b = "lo wo"``, ``c = "rld"``, ``x = "Hello "``,
    ``y = "world"``::

        source: -a-b-c-|
        result: ---x---(y,|)

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.of("Hel", "lo  wo", "rld\\n").pipe(chunk_words(), rx.to_list()).run()
    ['Hello  ', 'world\\n']
    """
    return _rechunk(_split_words)


def chunk_lines() -> Callable[[Observable[str]], Observable[str]]:
    """Re-chunk text into lines, each with its ``"\\n"``, emitted as soon as it ends.

    A last line without ``"\\n"`` is emitted on completion (and before an
    error). Lossless, and the output is the same for every chunking.

    Marble, with ``a = "one\\ntw"``, ``b = "o"``, ``c = "\\nthree"``, ``x = "one\\n"``,
    ``y = "two\\n"``, ``z = "three"``::

        source: -a-b-c-|
        result: -x---y-(z,|)

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.of("one\\ntw", "o\\n", "three").pipe(chunk_lines(), rx.to_list()).run()
    ['one\\n', 'two\\n', 'three']
    """
    return _rechunk(_split_lines)


def chunk_regex(
    pattern: str | re.Pattern[str], flags: int = 0
) -> Callable[[Observable[str]], Observable[str]]:
    """Re-chunk text after each match of ``pattern``: a unit is the text up to and including it.

    The pattern is searched in the buffer of text not emitted yet, and a match
    that ends at the buffer's end is held until more text arrives (it might
    grow: ``[.!?]\\s+`` could take more spaces) or the stream completes, when
    the rest is emitted (also before an error). Empty matches at the start of
    the buffer are skipped, so units are never empty; a lookahead such as
    ``(?=#)`` splits before each ``#``. Lossless always. The output is the
    same for every chunking when a match is decided by the text up to one
    character past it (delimiters with greedy repetition: ``"\\n\\n+"``,
    ``"[.!?]+\\s+"``, ``";"``); a pattern with alternatives that overlap,
    such as ``"abcd|b"``, may split differently depending on the chunking.
    Anchors and lookbehinds see only the buffer. The buffer is searched again
    for every chunk, so a long stretch without a match costs quadratic time.

    For lines use :func:`chunk_lines`, which does not wait for the next character.

    Marble, ``chunk_regex(";")`` with ``a = "x;y"``, ``b = ";"``, ``c = "z"``,
    ``p = "x;"``, ``q = "y;"``::

        source: -a-b-c-|
        result: -p---q-(c,|)

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.of("Hi. How", " are you?  Fi", "ne.").pipe(
    ...     chunk_regex(r"[.!?]+\\s+"), rx.to_list()
    ... ).run()
    ['Hi. ', 'How are you?  ', 'Fine.']
    """
    regex = re.compile(pattern, flags)

    def split(held: str, chunk: str) -> tuple[list[str], str]:
        buffer = held + chunk
        units: list[str] = []
        while True:
            end = next((m.end() for m in regex.finditer(buffer) if m.end() > 0), None)
            if end is None or end == len(buffer):
                return units, buffer
            units.append(buffer[:end])
            buffer = buffer[end:]

    return _rechunk(split)


def _split_lines(held: str, chunk: str) -> tuple[list[str], str]:
    last = chunk.rfind("\n")
    if last < 0:
        return [], held + chunk
    lines = (held + chunk[: last + 1]).split("\n")[:-1]  # only "\n" ends a line
    return [line + "\n" for line in lines], chunk[last + 1 :]


_WORD_START = re.compile(r"(?<=\s)(?=\S)")


def _split_words(held: str, chunk: str) -> tuple[list[str], str]:
    # A boundary is a non-space right after a space, with a non-space somewhere
    # before it. Only the boundaries in or at the start of the chunk are new
    # (the lookbehind still sees the held text before ``pos``).
    units: list[str] = []
    start = 0
    buffer = held + chunk
    for m in _WORD_START.finditer(buffer, len(held)):
        cut = m.start()
        if cut > start and not buffer[start:cut].isspace():
            units.append(buffer[start:cut])
            start = cut
    return units, buffer[start:]


def _rechunk(split: _Splitter) -> Callable[[Observable[str]], Observable[str]]:
    def operator(source: Observable[str]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            held = ""

            def on_next(chunk: str) -> None:
                nonlocal held
                units, held = split(held, chunk)
                for unit in units:
                    observer.on_next(unit)

            def flush() -> None:
                nonlocal held
                if held:
                    rest, held = held, ""
                    observer.on_next(rest)

            def on_error(error: Exception) -> None:
                fail_after(observer, flush, error)

            def on_completed() -> None:
                flush()
                observer.on_completed()

            return source.subscribe(
                on_next, on_error, deliver_errors(observer, on_completed), scheduler=scheduler
            )

        return Observable(subscribe)

    return operator
