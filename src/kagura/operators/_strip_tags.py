"""strip_tags: remove ``<name>…</name>`` spans (a reasoning model's ``<think>``) from text."""

from __future__ import annotations

import re
from collections.abc import Callable

from reactivex import Observable, abc

from kagura.errors import ConfigError
from kagura.operators._guard import deliver_errors, fail_after

__all__ = ["strip_tags"]

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]*")


def strip_tags(name: str) -> Callable[[Observable[str]], Observable[str]]:
    """Drop every ``<name>…</name>`` span, tags included, even when a tag is split across chunks.

    Text outside the spans is emitted as soon as it cannot be the start of
    ``<name>``; a possible start (``"<thi"``) is held until the next chunk
    decides. Tags match exactly (case-sensitive, no attributes, no spaces:
    ``<think>``, not ``<think id="1">`` or ``<THINK>``), and spans do not nest:
    the first ``</name>`` closes. On completion, and before an error, a held
    ``"<thi"`` that never became a tag is emitted as text, and an unclosed span
    is dropped (it was reasoning). Whitespace around a span is kept.

    Not lossless, by design; but ``"".join`` of the output is the same for
    every chunking of the input.

    Marble, ``strip_tags("think")`` with ``a = "<thi"``, ``b = "nk>hm</think>"``,
    ``c = "Hi"``::

        source: -a-b-c-|
        result: -----c-|

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.of("<thi", "nk>plan</thi", "nk>\\nHi <", "b>!").pipe(
    ...     strip_tags("think"), rx.to_list()
    ... ).run()
    ['\\nHi ', '<b>!']
    """
    if not _TAG_NAME.fullmatch(name):
        raise ConfigError(f"strip_tags needs a plain tag name such as 'think', got {name!r}")
    open_tag, close_tag = f"<{name}>", f"</{name}>"

    def _strip_tags(source: Observable[str]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            held = ""  # text that may start the tag we are looking for
            inside = False

            def on_next(chunk: str) -> None:
                nonlocal held, inside
                buffer = held + chunk
                out: list[str] = []
                while True:
                    tag = close_tag if inside else open_tag
                    found = buffer.find(tag)
                    if found < 0:
                        keep = _partial_tag_at_end(buffer, tag)
                        if not inside:
                            out.append(buffer[: len(buffer) - keep])
                        held = buffer[len(buffer) - keep :]
                        break
                    if not inside:
                        out.append(buffer[:found])
                    buffer = buffer[found + len(tag) :]
                    inside = not inside
                text = "".join(out)
                if text:
                    observer.on_next(text)

            def flush() -> None:
                nonlocal held
                rest, held = held, ""
                if rest and not inside:
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

    return _strip_tags


def _partial_tag_at_end(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
