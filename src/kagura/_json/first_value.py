"""The first JSON value in a model's answer, with any prose or Markdown fence around it skipped.

>>> first_json_value('Sure! ```json\\n{"a": [1, 2]}\\n``` Anything else?')
'{"a": [1, 2]}'
>>> first_json_value("See [sic] and then [1, 2].")
'[1, 2]'
>>> first_json_value("[1, 2") is None
True
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Final

from kagura._json.incremental import IncrementalJSONParser, JSONSyntaxError

__all__ = ["first_json_value"]

_START: Final = re.compile(r"[{\[]")
# Only the value's extent is wanted, so integers stay strings: one of over 4,300 digits
# (Python's int-str conversion limit) is found like any other, not a ValueError. A raw
# control character in a string is not JSON (RFC 8259), here as in the incremental
# parser: the candidate is skipped like prose, so both modes find the same value.
_SCANNER: Final = json.JSONDecoder(parse_int=str)
_UNTERMINATED: Final = "Unterminated string"


def first_json_value(text: str) -> str | None:
    """The first complete JSON object or array in ``text``, or None if there is none.

    A candidate starts at a ``{`` or ``[``; if it is not JSON, the search resumes at the
    offending character, as :meth:`IncrementalJSONParser.restart
    <kagura._json.incremental.IncrementalJSONParser.restart>` does, so an answer parsed
    whole and one parsed as it streams find the same value. Time is linear in the text's
    length, and nesting has no depth limit: a value too deep for :mod:`json`'s recursive
    decoder is followed by the incremental parser. None also when that value holds a
    number Python cannot convert (more than 4,300 digits) inside such deep nesting.
    """
    pos = 0
    while (match := _START.search(text, pos)) is not None:
        start = match.start()
        try:
            _, end = _SCANNER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            if exc.msg.startswith(_UNTERMINATED):
                return None  # a string runs to the end: the incremental parser would wait
            pos = max(start + 1, exc.pos)
        except RecursionError:
            return _without_recursion(text, start)
        else:
            return text[start:end]
    return None


def _without_recursion(text: str, start: int) -> str | None:
    """:func:`first_json_value` of ``text[start:]``, found by the incremental parser."""
    parser = IncrementalJSONParser()
    try:
        with contextlib.suppress(JSONSyntaxError):
            parser.feed(text[start:])
        parser.restart()  # after a syntax error: the next candidate (a no-op otherwise)
    except ValueError:  # a number Python cannot convert: the parser cannot go on
        return None
    return parser.document() if parser.done else None
