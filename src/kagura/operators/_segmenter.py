"""Incremental sentence segmentation: pure (no Rx), chunking-invariant, linear time.

:class:`SentenceSegmenter` takes text in pieces of any size and returns each
sentence, with its trailing whitespace, once its end is certain; joined, the
output is the input. Every boundary is decided by a pure function of the text
up to a lookahead window (at most the next few whitespace-separated tokens);
until that window has arrived the segmenter waits, and at :meth:`close` it
decides with what there is. So the sentences never depend on how the text was
chunked.

Only new text is scanned: a remembered position skips what was already looked
at, and a chunk that cannot change a decision (no terminator, newline, bracket,
bullet or backtick, or not what a pending decision waits for) is only stored.

This module is the engine: punctuation, whitespace, Markdown, lists. What a period
after a word means (abbreviations, titles, times) is a language's, a
:class:`SentenceRules` in a module of its own; English (:mod:`._rules_en`) is the default.

>>> segment("Mr. Smith paid $3.50 at 5 p.m. today. Was it the U.S. Government? No!")
['Mr. Smith paid $3.50 at 5 p.m. today. ', 'Was it the U.S. Government? ', 'No!']
>>> seg = SentenceSegmenter()
>>> seg.push("It works. It is c"), seg.push("hunked"), seg.close()
(['It works. '], [], ['It is chunked'])
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SentenceRules", "SentenceSegmenter", "segment"]

WHITESPACE: Final = " \t\n\r\f\v\u3000"
"""What separates tokens (a no-break space does not: ``Mr.\\xa0Smith`` stays whole)."""

_TERM: Final = ".!?\u2026\u203c\u2047\u2048\u2049\u203d"  # . ! ? … ‼ ⁇ ⁈ ⁉ ‽
# CJK full stops and fullwidth ! and ?: they end a sentence with no space after them.
_CJK: Final = "\u3002\uff01\uff1f\uff61"
# Closing quotes and brackets (and Markdown emphasis) that may follow a terminator.
_CLOSERS: Final = "\"')]}*_`\u201d\u2019\u00bb\u203a\u300d\u300f\u3011\u3015\u3009\u300b"
_OPENERS: Final = "\"'([{*_`\u201c\u2018\u201e\u00ab\u2039"
_BULLETS: Final = "\u2022\u2043\u25e6\u25aa\u2023"  # bullet, hyphen/white/triangular bullet, square
_SPANISH: Final = "¿¡"


def _cls(chars: str, *, negate: bool = False) -> str:
    return ("[^" if negate else "[") + "".join(re.escape(c) for c in chars) + "]"


_W = _cls(WHITESPACE)
_N = _cls(WHITESPACE, negate=True)
_TRIGGERS = _TERM + _CJK + ")`" + _BULLETS
_TRIGGER = re.compile(_cls(_TRIGGERS + "\n"))  # what can make a boundary near it
_WS_RUN = re.compile(f"{_W}*+")
_NONWS_RUN = re.compile(f"{_N}*+")
_CJK_SEARCH = re.compile(_cls(_CJK))
_CJK_TAIL = re.compile(f"{_cls(_CJK + _TERM)}+{_cls(_CLOSERS)}*")
_FENCE = re.compile(r"^[ \t]*(`{3,})", re.MULTILINE)
_BLANK_PREFIX = re.compile(_cls(WHITESPACE + _BULLETS) + "*")
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]")
_MARKER = re.compile(_cls(_BULLETS) + r"?\(?(?:(\d{1,3})|([a-z])|([A-Z]))(?:\.\)|\)|\.)")

# Wake-up patterns: the characters a new chunk must hold to be worth a scan (see _Wake).
_SPACE = re.compile(_W)
_SPACES = frozenset(WHITESPACE)
_TRIGGER_SET = frozenset(_TRIGGERS + "\n")
_NOW_SET = frozenset(_CJK + _BULLETS)
_WAKE_FENCE = re.compile("`")
_WAKE_WS = re.compile(_cls(WHITESPACE + _CJK))
_WAKE_NONWS = re.compile(_N)

_LETTER_A: Final = (ord("a"), ord("A"))  # a list of letters starts at a or A ("J. K. Rowling")


@dataclass(frozen=True, slots=True, kw_only=True)
class SentenceRules:
    """What one language says about a word with a period after it.

    The engine knows punctuation, whitespace, Markdown and lists; a language is one
    of these, in its own module (:data:`kagura.operators._rules_en.ENGLISH`).
    Abbreviations are lower case, without their final period.
    """

    titles: frozenset[str]
    """Precede a name: a capitalised word after one starts a sentence only if it is
    in ``starters`` (``Main St. The ...`` but ``St. Michael's``)."""
    before_numbers: frozenset[str]
    """Never end a sentence before a number (``p. 55``, ``No. 5``, ``Jan. 3``)."""
    never_final: frozenset[str]
    """Never end a sentence (``e.g``, ``vs``)."""
    times: frozenset[str]
    """Times of day (``a.m``): they end a sentence unless ``time_lead`` is all of it
    before them (``At 5 a.m. Mr. Smith left`` but ``He left at 6 P.M. Mr. Smith``)."""
    starters: frozenset[str]
    """Capitalised words that start a sentence after a title or an initial."""
    honorifics: frozenset[str] = frozenset()
    """Titles of a person (``dr``, ``mr``): a capitalised word after one is a name,
    never a sentence's start, even a word of ``starters`` (``I met Dr. Who today``)."""
    time_lead: re.Pattern[str]
    """A sentence opening that ends with a time of day, matched whole."""
    word: re.Pattern[str]
    """A word after a title or an initial, matched at its start."""
    initialism: re.Pattern[str]
    """Initials (``J``, ``U.S``), matched whole."""


class _Wake(enum.IntEnum):
    """What a pushed chunk must hold before the segmenter scans again."""

    ANY = enum.auto()  # anything: scan whatever arrives
    IDLE = enum.auto()  # a trigger (_TRIGGER), then the word after it whole
    WORD = enum.auto()  # a decision waits for a whole word; _step follows it by _Stage
    CHAR = enum.auto()  # a character that the pattern in ``_wake_on`` matches


class _Stage(enum.IntEnum):
    """How far a wait for a whole word (:attr:`_Wake.WORD`) has got."""

    TOKEN = enum.auto()  # in the token to be decided: wait for a space
    GAP = enum.auto()  # in the space after it: wait for the next word
    NEXT = enum.auto()  # in the next word: wait for a space, then scan


class _Gap(enum.IntEnum):
    """The verdict on the whitespace after a token."""

    KEEP = enum.auto()  # the sentence goes on
    SPLIT = enum.auto()  # a boundary after the whitespace
    WAIT = enum.auto()  # more text needed (``_wake`` says which)


class _ListKind(enum.IntEnum):
    """How a list marker counts: ``2.``, ``b)``, ``C.``."""

    NUMBER = enum.auto()
    LOWER = enum.auto()
    UPPER = enum.auto()


# The states as module globals, for the hot path: a global is cheaper than an enum attribute.
_ANY: Final = _Wake.ANY
_IDLE: Final = _Wake.IDLE
_WORD: Final = _Wake.WORD
_CHAR: Final = _Wake.CHAR
_IN_TOKEN: Final = _Stage.TOKEN
_IN_GAP: Final = _Stage.GAP
_IN_NEXT: Final = _Stage.NEXT
_KEEP: Final = _Gap.KEEP
_SPLIT: Final = _Gap.SPLIT
_WAIT: Final = _Gap.WAIT

_Marker = tuple[_ListKind, int]  # a list marker: its kind and its number (or letter's ord)


def segment(text: str, *, min_chars: int = 0, rules: SentenceRules | None = None) -> list[str]:
    """Split a whole text into sentences (each with its trailing whitespace)."""
    seg = SentenceSegmenter(min_chars=min_chars, rules=rules)
    return seg.push(text) + seg.close()


def _english() -> SentenceRules:
    # Imported on first use: the rules module imports SentenceRules from this one.
    from kagura.operators._rules_en import ENGLISH

    return ENGLISH


def _marker(token: str) -> _Marker | None:
    """``(kind, value)`` if ``token`` is a list marker such as ``2.``, ``b)``, ``(3)``, ``•4.``."""
    m = _MARKER.fullmatch(token)
    if m is None:
        return None
    if m[1] is not None:
        return _ListKind.NUMBER, int(m[1])
    return (_ListKind.LOWER, ord(m[2])) if m[2] is not None else (_ListKind.UPPER, ord(m[3]))


def _is_dots(token: str) -> bool:
    core = token.rstrip(_CLOSERS)
    return bool(core) and not core.strip(".…")


def _dot_count(token: str) -> int:
    return token.count(".") + 3 * token.count("…")


def _end(pattern: re.Pattern[str], buf: str, i: int) -> int:
    """End of ``pattern`` (one that may match empty) matched at ``i``."""
    m = pattern.match(buf, i)
    return i if m is None else m.end()


def _token_start(buf: str, lo: int, hi: int) -> int:
    """Start of the token that ends at ``hi``, not before ``lo``."""
    start = buf.rfind(" ", lo, hi) + 1 or lo
    if _SPACE.search(buf, start, hi) is not None:  # rare: a newline or tab after the space
        for c in "\n\t\r\f\v\u3000":
            start = buf.rfind(c, start, hi) + 1 or start
    return start


class SentenceSegmenter:
    """Feed text with :meth:`push`, end with :meth:`close`; both return finished sentences.

    ``min_chars`` holds back a sentence shorter than that (trailing whitespace not
    counted) and joins it to the next one. :meth:`flush` hands over whatever is
    held, for callers that cannot wait (a timer, an error). ``rules`` is the
    language (default: :data:`~kagura.operators._rules_en.ENGLISH`).
    """

    __slots__ = (
        "_buf",
        "_done",
        "_emitted",
        "_fence",
        "_held",
        "_marker",
        "_min_chars",
        "_out",
        "_parts",
        "_pos",
        "_prev_marker",
        "_rules",
        "_stage",
        "_start",
        "_waiting",
        "_wake",
        "_wake_on",
        "_ws_hi",
        "_ws_lo",
    )

    def __init__(self, *, min_chars: int = 0, rules: SentenceRules | None = None) -> None:
        self._min_chars = min_chars
        self._rules = rules if rules is not None else _english()
        self._buf = ""  # text from (at least) the last boundary on
        self._parts: list[str] = []  # chunks not yet joined onto _buf
        self._start = 0  # the last boundary: where the current sentence starts in _buf
        self._pos = 0  # where the next scan starts
        self._done = 0  # end of the last decided gap
        self._emitted = 0  # how much of _buf was already handed out (by a cut or flush())
        self._held = ""  # finished sentences held back by min_chars
        self._fence = 0  # length of the open ``` fence, 0 outside one
        self._marker: _Marker | None = None  # list marker opening this sentence
        self._prev_marker: _Marker | None = None  # the one opening the previous sentence
        self._out: list[str] = []
        self._wake: _Wake = _IDLE
        self._wake_on = _TRIGGER  # with _CHAR: what the chunk must hold
        self._stage: _Stage = _IN_TOKEN  # with _WORD: how far the word has got
        self._waiting: tuple[int, int] | None = None  # the token whose following gap waits
        # A whitespace run already walked back over by _newline: buf[_ws_lo:_ws_hi] is all
        # whitespace, and _ws_lo is the sentence start or follows a non-space. It keeps a
        # run of newlines (a model printing blank lines) linear, not quadratic.
        self._ws_lo = self._ws_hi = -1

    # -- public -----------------------------------------------------------------

    def push(self, text: str) -> list[str]:
        """Add ``text``; return the sentences whose end it made certain."""
        wake = self._wake
        if wake is _WORD:
            if _NOW_SET.isdisjoint(text) and not self._step(text, 0):
                self._parts.append(text)
                return []
        elif wake is _IDLE:
            # A trigger's token is decided once the word after it is whole (CJK terminators
            # and bullets at once): scan only then, however the text is chunked.
            if _TRIGGER_SET.isdisjoint(text):
                if text:
                    self._parts.append(text)
                return []
            if _NOW_SET.isdisjoint(text):
                m = _TRIGGER.search(text)
                i = 0 if m is None else m.end()  # never None: a trigger is in text
                self._wake = _WORD
                self._stage = _IN_GAP if text[i - 1 : i] == "\n" else _IN_TOKEN
                if not self._step(text, i):
                    self._parts.append(text)
                    return []
        elif wake is _CHAR and self._wake_on.search(text) is None:
            if text:
                self._parts.append(text)
            return []
        parts = self._parts
        if parts:
            parts.append(text)
            self._buf += "".join(parts)
            parts.clear()
        else:
            self._buf += text
        self._scan(False)
        out = self._out
        if not out:
            return []
        self._out = []
        return out

    def _step(self, text: str, i: int) -> bool:
        """Follow the wait for a whole word through ``text[i:]``; True once it is whole."""
        stage = self._stage
        if stage is not _IN_GAP and _SPACES.isdisjoint(text):
            return False
        while True:
            m = (_WAKE_NONWS if stage is _IN_GAP else _SPACE).search(text, i)
            if m is None:
                self._stage = stage
                return False
            if stage is _IN_NEXT:
                return True
            stage = _IN_GAP if stage is _IN_TOKEN else _IN_NEXT
            i = m.end()

    def close(self) -> list[str]:
        """End of text: decide what was waiting and return the rest, even if short."""
        self._join()
        self._scan(True)
        rest = self._held + self._buf[self._emitted :]
        if rest:
            self._out.append(rest)
        self._held = self._buf = ""
        self._start = self._pos = self._done = self._emitted = self._fence = 0
        self._marker = self._prev_marker = self._waiting = None
        self._ws_lo = self._ws_hi = -1
        self._wake = _IDLE
        return self._take()

    @property
    def holding(self) -> bool:
        """Whether any text is held (not yet returned)."""
        return bool(self._held or self._parts or self._emitted < len(self._buf))

    @property
    def pending(self) -> str:
        """The text held so far, without taking it."""
        self._join()
        return self._held + self._buf[self._emitted :]

    def flush(self) -> str:
        """Take the held text now; boundaries are still decided as if it had stayed."""
        text = self.pending
        self._held = ""
        self._emitted = len(self._buf)
        return text

    # -- scanning -----------------------------------------------------------------

    def _join(self) -> None:
        if self._parts:
            self._buf += "".join(self._parts)
            self._parts.clear()

    def _take(self) -> list[str]:
        out = self._out
        if not out:
            return []
        self._out = []
        return out

    def _cut(self, at: int) -> None:
        """A boundary at ``at``: emit the sentence before it; never look back past it."""
        buf = self._buf
        if at > self._emitted:
            piece = self._held + buf[self._emitted : at]
            if (self._min_chars and len(piece.rstrip(WHITESPACE)) < self._min_chars) or (
                piece[0] in WHITESPACE and not piece.strip(WHITESPACE)
            ):
                self._held = piece  # too short, or blank after a flush: join the next one
            else:
                self._held = ""
                self._out.append(piece)
            self._emitted = at
        self._start = self._pos = self._done = at
        self._ws_lo = self._ws_hi = -1
        self._prev_marker, self._marker = self._marker, None
        if at > 64 and at > len(buf) >> 1:  # drop the consumed text, amortised O(1)
            self._buf = buf[at:]
            self._emitted -= at
            self._start = self._pos = self._done = 0

    def _scan(self, final: bool) -> None:
        while True:
            if self._fence:
                if not self._scan_fence(final):
                    return
                continue
            if self._waiting is not None:
                if not self._gap(*self._waiting, final):
                    return
                continue
            buf = self._buf
            m = _TRIGGER.search(buf, self._pos)
            if m is None:
                self._wake = _IDLE
                return
            i = m.start()
            if buf[i] == "\n":
                progressed = self._newline(i, final)
            else:  # the token holding the trigger (it may start before the sentence did)
                t0 = _token_start(buf, self._start, i)
                progressed = self._token(t0, i, _end(_NONWS_RUN, buf, i), final)
            if not progressed:
                return

    def _at_start(self, i: int) -> bool:
        """Whether only whitespace and bullets precede ``i`` in this sentence."""
        m = _BLANK_PREFIX.match(self._buf, self._start, i)
        return m is not None and m.end() == i

    def _token(self, t0: int, trig: int, t1: int, final: bool) -> bool:
        buf = self._buf
        self._pos = t0  # nothing to look at before it; a retry starts here
        n = len(buf)
        if buf[t0] in _BULLETS and not self._at_start(t0):
            self._cut(t0)  # a bullet starts an item
            return True
        if buf[t0] == "`" and buf.startswith("```", t0):
            if t1 == n and not final:
                return self._wait_word(_IN_TOKEN)
            line = max(self._start, buf.rfind("\n", self._start, t0) + 1)
            if not buf[line:t0].strip(" \t"):
                run = _end(_NONWS_RUN, buf, t0)  # the opening fence and its info string
                self._fence = len(buf[t0:run]) - len(buf[t0:run].lstrip("`"))
                self._pos = run
                return True
        k = _CJK_SEARCH.search(buf, trig, t1)
        if k is not None:
            e = _end(_CJK_TAIL, buf, k.start())
            if e == n:
                return self._wait_any() if not final else self._advance(n)
            if buf[e] in WHITESPACE:
                e = _end(_WS_RUN, buf, e)
                if e == n and not final:
                    return self._wait_for(_WAKE_NONWS)
            if e < n:
                self._cut(e)
            else:
                self._pos = n
            return True
        if t1 == n and not final:
            return self._wait_word(_IN_TOKEN)
        token = buf[t0:t1]
        mark = _marker(token) if len(token) <= 7 else None
        if mark is not None:
            at_start = self._at_start(t0)
            if not at_start and t0 > self._done and self._follows(mark):
                self._cut(t0)  # the next item of a list: "1. First 2. Second"
                return True
            if at_start and (
                mark[0] is _ListKind.NUMBER or mark[1] in _LETTER_A or self._continues(mark)
            ):
                self._marker = mark
                self._pos = t1  # a marker opening a sentence does not end it
                return True
        core = token.rstrip(_CLOSERS)
        if not core or core[-1] not in _TERM:
            self._pos = t1
            return True
        return self._gap(t0, t1, final)

    def _newline(self, i: int, final: bool) -> bool:
        buf = self._buf
        self._pos = i
        g0 = i
        start = self._start
        while g0 > start and buf[g0 - 1] in WHITESPACE:
            if g0 == self._ws_hi:  # walked before: skip to the start of the run
                g0 = self._ws_lo
                break
            g0 -= 1
        self._ws_lo, self._ws_hi = g0, i + 1
        if g0 == start or g0 < self._done:
            self._pos = i + 1
            return True
        # The token ends at g0 > _done, so it starts at or after _done (a gap's end).
        return self._gap(_token_start(buf, max(start, self._done), g0), g0, final)

    def _scan_fence(self, final: bool) -> bool:
        buf = self._buf
        n = len(buf)
        m = _FENCE.search(buf, self._pos)
        if m is None:
            self._pos = max(self._pos, buf.rfind("\n", self._pos) + 1)
            return self._wait_for(_WAKE_FENCE)
        run = m.end(1)
        if run == n and not final:
            return self._wait_any()
        if run - m.start(1) < self._fence:
            self._pos = run
            return True
        t1 = _end(_NONWS_RUN, buf, run)
        if t1 == n and not final:
            return self._wait_for(_WAKE_WS)
        g1 = _end(_WS_RUN, buf, t1)
        if g1 == n and not final:
            return self._wait_for(_WAKE_NONWS)
        self._fence = 0  # a closed code block ends a segment
        if g1 < n:
            self._cut(g1)
        else:
            self._pos = n
        return True

    def _wait_any(self) -> bool:
        """Scan again on the next push, whatever it brings; False (no progress)."""
        self._wake = _ANY
        return False

    def _wait_for(self, chars: re.Pattern[str]) -> bool:
        """Scan again once a push brings a character ``chars`` matches; False."""
        self._wake = _CHAR
        self._wake_on = chars
        return False

    def _wait_word(self, stage: _Stage) -> bool:
        """Scan again once the word this wait is at (``stage``) is whole; False."""
        self._wake = _WORD
        self._stage = stage
        return False

    def _advance(self, pos: int) -> bool:
        self._pos = pos
        return True

    def _follows(self, mark: _Marker) -> bool:
        """Whether ``mark`` is the next item of the list this sentence opened."""
        last = self._marker
        return last is not None and last[0] == mark[0] and mark[1] == last[1] + 1

    def _continues(self, mark: _Marker) -> bool:
        """Whether ``mark`` is the next item after the one opening the previous sentence."""
        last = self._prev_marker
        return last is not None and last[0] == mark[0] and mark[1] == last[1] + 1

    # -- deciding one gap -----------------------------------------------------------

    def _gap(self, a0: int, a1: int, final: bool) -> bool:
        """Decide the whitespace after the token ``buf[a0:a1]``; False to wait for more."""
        buf = self._buf
        n = len(buf)
        self._waiting = (a0, a1)
        g1 = _end(_WS_RUN, buf, a1)
        if g1 == n:
            if not final:
                return self._wait_word(_IN_GAP)  # the next token must be whole
            self._waiting = None
            return self._advance(n)
        b1 = _end(_NONWS_RUN, buf, g1)
        if b1 == n and not final:
            return self._wait_word(_IN_NEXT)
        verdict = self._decide(a0, a1, g1, b1, final)
        if verdict is _WAIT:
            return False
        self._waiting = None
        if verdict is _SPLIT:
            self._cut(g1)
        else:
            self._pos = self._done = g1
        return True

    def _decide(self, a0: int, a1: int, g1: int, b1: int, final: bool) -> _Gap:
        """Split at ``g1``, keep the sentence going, or wait (``_wake`` set) for more text."""
        buf = self._buf
        a = buf[a0:a1]
        b = buf[g1:b1]
        newlines = buf.count("\n", a1, g1)
        if newlines >= 2 or b[0] in _BULLETS:
            return _SPLIT
        mark_b = _marker(b) if newlines or self._marker is not None else None
        if mark_b is not None and self._follows(mark_b):
            return _SPLIT
        if newlines and (
            mark_b is not None
            or b in ("-", "*", "+")
            or b[0] in "#>|"
            or b.startswith("```")
            or _HEADING.match(buf, max(self._start, buf.rfind("\n", self._start, a0) + 1))
        ):
            return _SPLIT
        if self._marker is not None and _marker(a) == self._marker and self._at_start(a0):
            return _KEEP
        core = a.rstrip(_CLOSERS)
        if not core or core[-1] not in _TERM:
            return _KEEP
        r = len(core) - 1
        while r > 0 and core[r - 1] in _TERM:
            r -= 1
        if r > 0 and core[r - 1] in "[(":
            return _KEEP  # an editorial mark: "[...]", "(?)"
        run = core[r:]
        word = core[:r].lstrip(_OPENERS)
        dots = not run.strip(".…")
        if b[0] in ".\u2026" and _is_dots(b):
            if not word or not dots or run != ".":
                return _KEEP  # inside an ellipsis
            return self._before_ellipsis(word, a1, g1, final)
        if not word and dots:
            return self._after_ellipsis(a0, a, b)
        return _SPLIT if self._splits(word, run, b, a1) else _KEEP

    def _before_ellipsis(self, word: str, a1: int, g1: int, final: bool) -> _Gap:
        """``word.`` then spaced dots: ``compounds. . . . The`` ends after ``compounds.``."""
        buf = self._buf
        n = len(buf)
        j = g1
        count = 0
        while True:
            e = _end(_NONWS_RUN, buf, j)
            if e == n and not final:
                self._wait_for(_WAKE_WS)
                return _WAIT
            token = buf[j:e]
            if not token or not _is_dots(token):
                break
            count += 1
            if token != "." or count > 3:
                return _KEEP
            j = _end(_WS_RUN, buf, e)
            if j == n and not final:
                self._wait_for(_WAKE_NONWS)
                return _WAIT
        ends = count == 3 and bool(token) and self._splits(word, ".", token, a1)
        return _SPLIT if ends else _KEEP

    def _after_ellipsis(self, a0: int, a: str, b: str) -> _Gap:
        """The last of spaced dots: three alone are a pause, more (or after ``word.``) an end."""
        buf = self._buf
        total = _dot_count(a)
        end = a0
        while True:
            p1 = end
            while p1 > self._start and buf[p1 - 1] in WHITESPACE:
                p1 -= 1
            if p1 == self._start:
                break
            p0 = _token_start(buf, self._start, p1)
            prev = buf[p0:p1]
            if not _is_dots(prev):
                core = prev.rstrip(_CLOSERS)
                if core.endswith("."):
                    total += len(core) - len(core.rstrip("."))
                break
            total += _dot_count(prev)
            end = p0
        if total <= 3:
            return _KEEP
        return _SPLIT if self._splits("", "..", b, a0) else _KEEP

    def _splits(self, word: str, run: str, b: str, a1: int) -> bool:
        """Whether ``word`` + terminator ``run`` ends a sentence, given the next token ``b``."""
        first = b.lstrip(_OPENERS)
        if not first or first[0] in _SPANISH:
            return True
        c = first[0]
        if c.islower():
            return False
        if run != ".":
            return True  # "?", "!", "?!", "...": anything but lower case after
        if not word:
            return True
        rules = self._rules
        low = word.lower()
        initialism = (len(word) == 1 or "." in word) and rules.initialism.fullmatch(
            word
        ) is not None
        if c.isdigit():
            return not (low in rules.before_numbers or low in rules.titles or initialism)
        if low in rules.never_final:
            return False
        if low in rules.times:  # "At 5 a.m. Mr. Smith left" but "He left at 6 P.M. Mr. Smith"
            lead = self._buf[self._start : a1].strip(WHITESPACE + _BULLETS)
            return rules.time_lead.fullmatch(lead) is None
        if low in rules.honorifics:
            return False
        if low in rules.titles or initialism:
            w = rules.word.match(first)
            if w is None or (w.end() == 1 and first[1:2] == "."):
                return False  # an initial: "Mr. J. Smith"
            return w[0] in rules.starters
        return True
