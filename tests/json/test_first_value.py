"""first_json_value: the value the incremental parser finds, at any depth, in linear time."""

from __future__ import annotations

import contextlib
import doctest
import inspect
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagura._json import first_json_value
from kagura._json import first_value as first_value_module
from kagura._json.incremental import IncrementalJSONParser, JSONSyntaxError

_EXAMPLES = 300
_BIG = "1" * (sys.get_int_max_str_digits() + 700)  # more digits than int() converts


def _streamed(text: str) -> str | None:
    """What parse_model(partial=True) finds: the incremental parser, restarted after errors."""
    parser = IncrementalJSONParser()
    with contextlib.suppress(JSONSyntaxError):
        parser.feed(text)
    parser.restart()
    return parser.document() if parser.done else None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
_prose = st.lists(
    st.sampled_from(
        [*'[]{}",:01.-eE aINtu\\\n', "true", "null", "NaN", "-Infinity", '"a"', "\\u12", "```"]
    ),
    max_size=30,
).map("".join)
_answers = st.tuples(_prose, _json_values.map(json.dumps), _prose).map("".join) | _prose


def test_doctests() -> None:
    assert doctest.testmod(first_value_module).failed == 0


@settings(max_examples=_EXAMPLES)
@given(_answers)
def test_finds_what_the_incremental_parser_finds(text: str) -> None:
    assert first_json_value(text) == _streamed(text)


@given(
    st.lists(_json_values, max_size=3) | st.dictionaries(st.text(max_size=3), _json_values),
    st.sampled_from(["{}", "```json\n{}\n```", "Sure! [sic] Here:\n```\n{}\n```\nMore? {1}"]),
)
def test_the_document_inside_prose_and_fences(value: object, wrapper: str) -> None:
    document = json.dumps(value)
    assert first_json_value(wrapper.replace("{}", document, 1)) == document


def test_skips_brackets_that_are_not_json() -> None:
    assert first_json_value('[not json] then {"a": 1}') == '{"a": 1}'
    assert first_json_value("nothing here") is None
    assert first_json_value('{"a": "never closed [1]') is None  # as a stream would wait


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_any_depth_without_recursion_error(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    assert first_json_value("[" * depth) is None
    assert first_json_value(f"Here: {deep} and [1]") == deep
    assert first_json_value("[" * depth + ' oops {"a": 1}') == '{"a": 1}'  # as restart() does


def test_depth_does_not_depend_on_the_callers_stack() -> None:
    document = "[" * 50 + "]" * 50

    def nested(levels: int) -> str | None:
        return first_json_value(document) if levels == 0 else nested(levels - 1)

    # 30 frames to spare: too few for json's recursive decoder, plenty for the parser.
    assert nested(sys.getrecursionlimit() - len(inspect.stack(0)) - 30) == document


def test_integers_of_any_length() -> None:
    assert first_json_value(f"[{_BIG}] and [2]") == f"[{_BIG}]"
    assert first_json_value(f'{{"n": -{_BIG}.5e3}}') == f'{{"n": -{_BIG}.5e3}}'
    # Deeper than json's decoder goes and holding such a number: the parser cannot read it.
    # (50,000 levels: past the C decoder's limit on every Python; 3.13 reads 5,000.)
    assert first_json_value("[" * 50_000 + _BIG + "]" * 50_000) is None


def test_a_candidate_with_a_raw_control_character_is_skipped_as_the_parser_does() -> None:
    text = '{"name": "a\nb"} {"name": "ok"}'
    assert first_json_value(text) == '{"name": "ok"}'
    parser = IncrementalJSONParser()
    with contextlib.suppress(JSONSyntaxError):
        parser.feed(text)
    parser.restart()
    assert parser.document() == first_json_value(text)
