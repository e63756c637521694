"""buffer_sentences: regroup a text stream into whole sentences, losslessly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable

from kagura.errors import ConfigError
from kagura.operators._guard import deliver_errors, fail_after
from kagura.operators._segmenter import WHITESPACE, SentenceSegmenter
from kagura.operators.scheduling import resolve_scheduler

__all__ = ["buffer_sentences"]


def buffer_sentences(
    *,
    min_chars: int = 0,
    max_wait: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[str]], Observable[str]]:
    """Emit each sentence, with its trailing whitespace, as soon as its end is certain.

    An end is certain on the first non-space character after the terminator, or
    once the next word is complete when an abbreviation makes it ambiguous
    (``U.S. Government`` against ``the U.S. How``), or at completion. Joined, the
    output is the input, and it does not depend on how the input was chunked.
    Handles abbreviations, initials, decimals and prices, times, ellipses, URLs and
    e-mail addresses, closing quotes and brackets, ``?!``, ``¿¡``, numbered and
    bulleted lists, CJK terminators (``。`` and the fullwidth ``!`` and ``?``, no space
    needed), and never splits inside a fenced code block (a closed fence ends a segment).

    ``min_chars`` merges a sentence shorter than that (not counting trailing
    whitespace) into the next. ``max_wait`` (seconds) flushes what is held when no
    sentence has ended for that long since the held text began, for speech output;
    the timer runs on ``scheduler or subscribe_scheduler or TimeoutScheduler``.
    On error the held text is emitted first; disposing cancels the timer and the
    upstream.

    Marble with a timespan of 1 (``a`` = ``"Hi. I"``, ``b`` = ``"t is"``, ``c`` =
    ``" 5 p.m."``, ``s`` = ``"Hi. "``, ``t`` = ``"It is 5 p.m."``)::

        source: -a--b--c-|
        result: ----s----(t,|)

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> reactivex.from_iterable(["Mr. Sm", "ith paid $3", ".50. Then", " he left"]).pipe(
    ...     buffer_sentences(), rx.to_list()
    ... ).run()
    ['Mr. Smith paid $3.50. ', 'Then he left']
    """
    if min_chars < 0:
        raise ConfigError(f"min_chars must be >= 0, got {min_chars!r}")
    if max_wait is not None and not 0 < max_wait < float("inf"):  # NaN compares false
        raise ConfigError(
            f"max_wait must be a positive, finite number of seconds, got {max_wait!r}"
        )

    def _buffer_sentences(source: Observable[str]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, subscribe_scheduler)
            seg = SentenceSegmenter(min_chars=min_chars)
            lock = threading.RLock()
            timer = SerialDisposable()
            wait = max_wait or 0.0  # on_next_timed is only used with a max_wait
            timing = False  # a max_wait timer runs for the held text
            stopped = False

            def expire(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal timing
                with lock:
                    timing = False
                    if not stopped and seg.pending.strip(WHITESPACE):
                        observer.on_next(seg.flush())

            def on_next_untimed(chunk: str) -> None:
                for sentence in seg.push(chunk):  # no timer: Rx serialises the calls
                    observer.on_next(sentence)

            def on_next_timed(chunk: str) -> None:
                nonlocal timing
                with lock:
                    sentences = seg.push(chunk)
                    for sentence in sentences:
                        observer.on_next(sentence)
                    if sentences and timing:
                        timer.disposable = Disposable()  # a boundary restarts the wait
                        timing = False
                    if not timing and seg.holding:
                        timing = True
                        timer.disposable = sched.schedule_relative(
                            wait, deliver_errors(observer, expire)
                        )

            def stop() -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()

            def on_error(error: Exception) -> None:
                def emit_held() -> None:
                    held = seg.flush()
                    if held:
                        observer.on_next(held)

                with lock:
                    stop()
                    fail_after(observer, emit_held, error)

            def on_completed() -> None:
                with lock:
                    stop()
                    for sentence in seg.close():
                        observer.on_next(sentence)
                    observer.on_completed()

            def dispose() -> None:
                with lock:
                    stop()

            upstream = source.subscribe(
                on_next_untimed if max_wait is None else on_next_timed,
                on_error,
                deliver_errors(observer, on_completed),
                scheduler=subscribe_scheduler,
            )
            return CompositeDisposable(upstream, Disposable(dispose))

        return Observable(subscribe)

    return _buffer_sentences
