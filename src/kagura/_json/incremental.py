"""Incremental JSON parsing: feed text in chunks, read the value while it grows.

:class:`IncrementalJSONParser` consumes only the characters each :meth:`~IncrementalJSONParser.feed`
adds, building the Python value in place, so parsing a document costs time linear in its
size however it is chunked. It skips any prose or Markdown fence before the first ``{`` or
``[`` and stops at the end of that value, ignoring whatever follows.

>>> p = IncrementalJSONParser()
>>> for chunk in ['Sure! ```json\\n{"a": [1, "x', 'y"], "b": tr', 'ue}\\n``` Done.']:
...     p.feed(chunk)
...     print(p.snapshot())
{'a': [1, 'x']}
{'a': [1, 'xy']}
{'a': [1, 'xy'], 'b': True}
>>> p.done, p.document()
(True, '{"a": [1, "xy"], "b": true}')

Open containers hold only their completed entries; the entry being parsed is the next
open container (see :attr:`~IncrementalJSONParser.containers`) or the string prefix from
:meth:`~IncrementalJSONParser.partial_string`. A number or a literal shows only once
complete; a string shows its prefix, never half an escape or half a surrogate pair.
A raw control character (U+0000 to U+001F) in a string is a syntax error, as RFC 8259 and
pydantic say. Besides strict JSON, ``NaN``, ``Infinity`` and ``-Infinity`` are accepted, as
pydantic does.
"""

from __future__ import annotations

import contextlib
import re
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, Final

__all__ = ["MISSING", "IncrementalJSONParser", "JSONSyntaxError"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Stands for "no value yet" (an entry that has not started, or a number not yet complete)."""


class JSONSyntaxError(ValueError):
    """The text is not JSON; ``position`` is the offset of the offending character."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at offset {position}")
        self.position = position


# Parser states (plain ints: compared in the hot loop).
_PRE = 0  # before the document: looking for "{" or "["
_VALUE = 1  # a value is expected (after ":" or "," in an array)
_VALUE_OR_CLOSE = 2  # after "[": a value or "]"
_KEY = 3  # after "," in an object: a key
_KEY_OR_CLOSE = 4  # after "{": a key or "}"
_COLON = 5  # after a key
_AFTER = 6  # after a value inside a container: "," or the closing bracket
_STRING = 7  # inside a string (a key or a value)
_ESCAPE = 8  # inside a backslash escape
_NUMBER = 9
_LITERAL = 10  # true, false, null, NaN, Infinity, -Infinity
_DONE = 11  # the top-level value is complete
_FAILED = 12

_START = re.compile(r"[{\[]")
_SPACES = re.compile(r"[ \t\n\r]*")
_NUMBER_CHARS = re.compile(r"[0-9eE+\-.]*")
_NUMBER_SYNTAX = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+\-]?[0-9]+)?")
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')  # what ends a run of plain string characters
_WHITESPACE = frozenset(" \t\n\r")
_LITERALS: Final[dict[str, tuple[str, Any]]] = {
    "t": ("true", True),
    "f": ("false", False),
    "n": ("null", None),
    "N": ("NaN", float("nan")),
    "I": ("Infinity", float("inf")),
}
_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_HEX = frozenset("0123456789abcdefABCDEF")

OnValue = Callable[[Any, int, int], None]
"""Called as ``on_value(value, start, end)`` when a value completes, with its text offsets."""


class IncrementalJSONParser:
    """Parses one JSON object or array from text that arrives in chunks.

    Attributes:
        containers: the open containers, outermost first; each holds its completed
            entries only (a ``dict`` or a ``list``, mutated in place).
        keys: for each open container, the key of its entry in progress (``None`` for
            arrays, or for an object before its first key).
        start: offset of the document's first character, or ``-1`` before it is seen.
        end: offset just past the document, or ``-1`` while it is open.
        changes: counts visible changes (an entry started, grew or completed).
        value: the complete document once :attr:`done`, else :data:`MISSING`.

    ``on_value(value, start, end)`` is called for every completed value, after it was
    added to its container (then still ``containers[-1]``), with the value's text offsets.
    """

    __slots__ = (
        "_ends",
        "_error",
        "_esc",
        "_high",
        "_in_key",
        "_literal",
        "_literal_at",
        "_literal_value",
        "_number",
        "_on_value",
        "_parts",
        "_size",
        "_starts",
        "_state",
        "_string",
        "_value_start",
        "changes",
        "containers",
        "end",
        "keys",
        "start",
        "value",
    )

    def __init__(self, *, on_value: OnValue | None = None) -> None:
        self._on_value = on_value
        self._parts: list[str] = []  # every chunk fed, for text()
        self._ends: list[int] = []  # cumulative end offset of each part
        self._size = 0
        self._state = _PRE
        self._error: JSONSyntaxError | None = None
        self._starts: list[int] = []  # start offset of each open container
        self._string: list[str] = []  # decoded pieces of the string in progress
        self._in_key = False
        self._esc = ""  # the escape in progress, after its backslash
        self._high = ""  # a high surrogate waiting for its low half
        self._number: list[str] = []
        self._literal = ""
        self._literal_at = 0
        self._literal_value: Any = None
        self._value_start = 0
        self.containers: list[dict[str, Any] | list[Any]] = []
        self.keys: list[str | None] = []
        self.start = -1
        self.end = -1
        self.changes = 0
        self.value: Any = MISSING

    @property
    def done(self) -> bool:
        """Whether the top-level value is complete."""
        return self._state == _DONE

    @property
    def error(self) -> JSONSyntaxError | None:
        """The syntax error that stopped parsing, if any."""
        return self._error

    def text(self, start: int = 0, end: int | None = None) -> str:
        """The text fed so far (or its ``[start:end]`` slice), joining only the needed chunks."""
        stop = self._size if end is None else min(end, self._size)
        if start >= stop:
            return ""
        first = bisect_right(self._ends, start)
        last = bisect_right(self._ends, stop - 1)
        offset = self._ends[first - 1] if first else 0
        joined = "".join(self._parts[first : last + 1])
        return joined[start - offset : stop - offset]

    def document(self) -> str:
        """The document's text: from its first bracket to its end (or to the text's end)."""
        if self.start < 0:
            return ""
        return self.text(self.start, None if self.end < 0 else self.end)

    def partial_string(self) -> str | None:
        """The decoded prefix of the string value in progress, or ``None`` if there is none."""
        if self._state not in (_STRING, _ESCAPE) or self._in_key:
            return None
        pieces = self._string
        if len(pieces) > 1:
            pieces[:] = ["".join(pieces)]
        return pieces[0] if pieces else ""

    def snapshot(self) -> Any:
        """A copy of the value so far (:data:`MISSING` before the document starts).

        Only the open containers are copied; completed entries are shared, so this costs
        the size of the open containers, not of the document.
        """
        if self._state == _DONE:
            return self.value
        part = self.partial_string()
        value: Any = MISSING if part is None else part
        for container, key in zip(reversed(self.containers), reversed(self.keys), strict=True):
            if isinstance(container, dict):
                copy = dict(container)
                if value is not MISSING:
                    copy[key or ""] = value
            else:
                copy = list(container)
                if value is not MISSING:
                    copy.append(value)
            value = copy
        return value

    def feed(self, chunk: str) -> None:
        """Parse ``chunk``, the next piece of the text.

        Raises :class:`JSONSyntaxError` if the text is not JSON, and again on every later
        call until :meth:`restart` (the text is still recorded). Text after the
        document's end is recorded and ignored.
        """
        if not chunk:
            return
        base = self._size
        self._size = size = base + len(chunk)
        self._parts.append(chunk)
        self._ends.append(size)
        state = self._state
        if state < _DONE:
            try:
                self._state = self._parse(chunk, base, state)
            except JSONSyntaxError as exc:
                self._state = _FAILED
                self._error = exc
                raise
        elif self._error is not None:
            raise self._error

    def restart(self) -> None:
        """After a syntax error, drop that value and look for the next ``{`` or ``[``.

        The search resumes at the offending character (so prose such as ``[sic]``
        before the JSON is skipped) and covers the text already fed; if that text fails
        too, the search moves on again. Each character is parsed at most twice.
        """
        while self._error is not None:
            resume = max(self.start + 1, self._error.position)
            self._error = None
            self._state = _PRE
            self.containers.clear()
            self.keys.clear()
            self._starts.clear()
            self._string.clear()
            self._number.clear()
            self._esc = self._high = ""
            self.start = -1
            self.changes += 1
            rest = self.text(resume)
            if rest:
                with contextlib.suppress(JSONSyntaxError):  # self._error is set: next candidate
                    self._run(rest, resume)

    def _run(self, text: str, base: int) -> None:
        try:
            self._state = self._parse(text, base, self._state)
        except JSONSyntaxError as exc:
            self._state = _FAILED
            self._error = exc
            raise

    def _parse(self, chunk: str, base: int, state: int) -> int:
        pos = 0
        n = len(chunk)
        containers = self.containers
        string = self._string
        while pos < n:
            if state == _STRING:
                special = _STRING_STOP.search(chunk, pos)
                stop = n if special is None else special.start()
                if stop > pos:
                    if self._high:
                        string.append(self._high)
                        self._high = ""
                    string.append(chunk[pos:stop])
                    if not self._in_key:
                        self.changes += 1
                if special is None:
                    pos = n
                elif chunk[stop] == "\\":
                    state = _ESCAPE
                    pos = stop + 1
                elif chunk[stop] == '"':
                    pos = stop + 1
                    if self._high:
                        string.append(self._high)
                        self._high = ""
                    text = "".join(string) if len(string) != 1 else string[0]
                    string.clear()
                    if self._in_key:
                        self.keys[-1] = text
                        state = _COLON
                    else:
                        state = self._complete(text, self._value_start, base + pos)
                        if state == _DONE:
                            return state
                else:  # RFC 8259: U+0000 to U+001F must be escaped in a string
                    raise JSONSyntaxError(
                        f"control character {chunk[stop]!r} in a string", base + stop
                    )
            elif state == _AFTER:
                c = chunk[pos]
                if c == ",":
                    pos += 1
                    state = _KEY if isinstance(containers[-1], dict) else _VALUE
                elif c in _WHITESPACE:
                    pos = _match_end(_SPACES, chunk, pos)
                elif c == ("}" if isinstance(containers[-1], dict) else "]"):
                    pos += 1
                    state = self._close(base + pos)
                    if state == _DONE:
                        return state
                else:
                    raise JSONSyntaxError(f"expected ',' or a bracket, got {c!r}", base + pos)
            elif state in (_VALUE, _VALUE_OR_CLOSE):
                c = chunk[pos]
                if c == '"':
                    self._value_start = base + pos
                    self._in_key = False
                    self.changes += 1
                    state = _STRING
                    pos += 1
                elif c in _WHITESPACE:
                    pos = _match_end(_SPACES, chunk, pos)
                elif c == "{" or c == "[":
                    self._open(c, base + pos)
                    state = _KEY_OR_CLOSE if c == "{" else _VALUE_OR_CLOSE
                    pos += 1
                elif c in "-0123456789":
                    self._value_start = base + pos
                    state = _NUMBER
                elif c in _LITERALS:
                    self._value_start = base + pos
                    self._literal, self._literal_value = _LITERALS[c]
                    self._literal_at = 0
                    state = _LITERAL
                elif c == "]" and state == _VALUE_OR_CLOSE:
                    pos += 1
                    state = self._close(base + pos)
                    if state == _DONE:
                        return state
                else:
                    raise JSONSyntaxError(f"expected a value, got {c!r}", base + pos)
            elif state in (_KEY, _KEY_OR_CLOSE):
                c = chunk[pos]
                if c == '"':
                    self._in_key = True
                    state = _STRING
                    pos += 1
                elif c in _WHITESPACE:
                    pos = _match_end(_SPACES, chunk, pos)
                elif c == "}" and state == _KEY_OR_CLOSE:
                    pos += 1
                    state = self._close(base + pos)
                    if state == _DONE:
                        return state
                else:
                    raise JSONSyntaxError(f"expected a key, got {c!r}", base + pos)
            elif state == _COLON:
                c = chunk[pos]
                if c == ":":
                    pos += 1
                    state = _VALUE
                elif c in _WHITESPACE:
                    pos = _match_end(_SPACES, chunk, pos)
                else:
                    raise JSONSyntaxError(f"expected ':', got {c!r}", base + pos)
            elif state == _ESCAPE:
                pos = self._escape(chunk, pos, base)
                if not self._esc:
                    state = _STRING
            elif state == _NUMBER:
                stop = _match_end(_NUMBER_CHARS, chunk, pos)
                self._number.append(chunk[pos:stop])
                pos = stop
                if pos < n:
                    raw = "".join(self._number)
                    self._number.clear()
                    if raw == "-" and chunk[pos] == "I":
                        self._literal, self._literal_value = "-Infinity", float("-inf")
                        self._literal_at = 1
                        state = _LITERAL
                        continue
                    match = _NUMBER_SYNTAX.fullmatch(raw)
                    if match is None:
                        raise JSONSyntaxError(f"invalid number {raw!r}", self._value_start)
                    number: int | float = (
                        int(raw) if match.lastindex is None else float(raw)
                    )  # lastindex: a fraction or an exponent matched
                    state = self._complete(number, self._value_start, base + pos)
                    if state == _DONE:  # pragma: no cover (a number never ends the document)
                        return state
            elif state == _LITERAL:
                literal = self._literal
                at = self._literal_at
                piece = chunk[pos : pos + len(literal) - at]
                if not literal.startswith(piece, at):
                    bad = next(i for i, c in enumerate(piece) if c != literal[at + i])
                    raise JSONSyntaxError(
                        f"invalid literal, expected {literal!r}", base + pos + bad
                    )
                pos += len(piece)
                at += len(piece)
                self._literal_at = at
                if at == len(literal):
                    state = self._complete(self._literal_value, self._value_start, base + pos)
            elif state == _PRE:
                match = _START.search(chunk, pos)
                if match is None:
                    return state
                pos = match.start()
                self.start = base + pos
                self._open(chunk[pos], base + pos)
                state = _KEY_OR_CLOSE if chunk[pos] == "{" else _VALUE_OR_CLOSE
                pos += 1
            else:  # pragma: no cover (_DONE and _FAILED never reach the loop)
                return state
        return state

    def _open(self, bracket: str, offset: int) -> None:
        self.containers.append({} if bracket == "{" else [])
        self.keys.append(None)
        self._starts.append(offset)
        self.changes += 1

    def _close(self, end: int) -> int:
        container = self.containers.pop()
        self.keys.pop()
        start = self._starts.pop()
        if not self.containers:
            self.value = container
            self.end = end
            self.changes += 1
            if self._on_value is not None:
                self._on_value(container, start, end)
            return _DONE
        return self._complete(container, start, end)

    def _complete(self, value: Any, start: int, end: int) -> int:
        parent = self.containers[-1]
        if isinstance(parent, dict):
            parent[self.keys[-1] or ""] = value
        else:
            parent.append(value)
        self.changes += 1
        if self._on_value is not None:
            self._on_value(value, start, end)
        return _AFTER

    def _escape(self, chunk: str, pos: int, base: int) -> int:
        """Consume part of an escape; ``self._esc`` is ``""`` again once it is complete."""
        esc = self._esc
        if not esc:
            c = chunk[pos]
            if c != "u":
                decoded = _ESCAPES.get(c)
                if decoded is None:
                    raise JSONSyntaxError(f"invalid escape \\{c}", base + pos)
                self._add(decoded)
                return pos + 1
            esc = "u"
            pos += 1
        piece = chunk[pos : pos + 5 - len(esc)]
        if not all(h in _HEX for h in piece):
            raise JSONSyntaxError("invalid \\u escape", base + pos)
        esc += piece
        pos += len(piece)
        if len(esc) < 5:
            self._esc = esc
            return pos
        self._esc = ""
        code = int(esc[1:], 16)
        if 0xDC00 <= code <= 0xDFFF and self._high:
            high = ord(self._high)
            self._high = ""
            self._add(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)))
        elif 0xD800 <= code <= 0xDBFF:
            if self._high:
                self._add(self._high)
            self._high = chr(code)
        else:
            self._add(chr(code))
        return pos

    def _add(self, decoded: str) -> None:
        if self._high:
            self._string.append(self._high)
            self._high = ""
        self._string.append(decoded)
        if not self._in_key:
            self.changes += 1


def _match_end(pattern: re.Pattern[str], chunk: str, pos: int) -> int:
    match = pattern.match(chunk, pos)
    return pos if match is None else match.end()
