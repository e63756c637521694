# Written by `python -m kagura._exports` from _EXPORTS in __init__.py: do not edit.
# Type checkers read this stub; at run time __init__.py imports each name on first use.

from kagura.operators._accumulate import accumulate as accumulate
from kagura.operators._parse import parse_items as parse_items
from kagura.operators._parse import parse_model as parse_model
from kagura.operators._partial import Partial as Partial
from kagura.operators._partial import is_complete as is_complete
from kagura.operators._partial import peek as peek
from kagura.operators._rechunk import chunk_lines as chunk_lines
from kagura.operators._rechunk import chunk_regex as chunk_regex
from kagura.operators._rechunk import chunk_words as chunk_words
from kagura.operators._sentences import buffer_sentences as buffer_sentences
from kagura.operators._strip_tags import strip_tags as strip_tags
from kagura.operators._tee_log import tee_log as tee_log
from kagura.operators._throttle import throttle as throttle
from kagura.operators._timeouts import first_token_timeout as first_token_timeout
from kagura.operators._timeouts import idle_timeout as idle_timeout

__all__ = [
    "Partial",
    "accumulate",
    "buffer_sentences",
    "chunk_lines",
    "chunk_regex",
    "chunk_words",
    "first_token_timeout",
    "idle_timeout",
    "is_complete",
    "parse_items",
    "parse_model",
    "peek",
    "strip_tags",
    "tee_log",
    "throttle",
]
