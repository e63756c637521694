"""IncrementalJSONParser: same value as json.loads for every chunking, growing snapshots."""

from __future__ import annotations

import doctest
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagura._json import incremental as incremental_json
from kagura._json.incremental import MISSING, IncrementalJSONParser, JSONSyntaxError
from kagura.testing.strategies import chunkings, split_at

_EXAMPLES = 200  # about 1 s a test on 2 cores
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_documents = st.builds(
    lambda value, indent, ascii_only: json.dumps(value, indent=indent, ensure_ascii=ascii_only),
    st.lists(_values, max_size=4) | st.dictionaries(st.text(max_size=6), _values, max_size=4),
    st.sampled_from([None, 2]),
    st.booleans(),
)


def _with_chunkings(documents: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, list[str]]]:
    return documents.flatmap(lambda d: st.tuples(st.just(d), chunkings(d, max_chunks=60)))


def _same(a: Any, b: Any) -> bool:
    """Equality that also holds for NaN and keeps int apart from float."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def grows_into(a: Any, b: Any) -> bool:
    """Whether snapshot ``a`` is a prefix of ``b``: entries stay, strings only extend."""
    if a is MISSING:
        return True
    if isinstance(a, str):
        return isinstance(b, str) and b.startswith(a)
    if isinstance(a, dict):
        return isinstance(b, dict) and all(k in b and grows_into(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) <= len(b)
            and all(grows_into(x, y) for x, y in zip(a, b, strict=False))
        )
    return _same(a, b)


def _parse(chunks: list[str]) -> tuple[IncrementalJSONParser, list[Any]]:
    parser = IncrementalJSONParser()
    snapshots: list[Any] = []
    for chunk in chunks:
        parser.feed(chunk)
        snapshots.append(parser.snapshot())
    return parser, snapshots


def test_doctests() -> None:
    assert doctest.testmod(incremental_json).failed == 0


@settings(max_examples=_EXAMPLES)
@given(_with_chunkings(_documents))
def test_value_is_json_loads_for_every_chunking(case: tuple[str, list[str]]) -> None:
    document, chunks = case
    parser, snapshots = _parse(chunks)
    assert parser.done
    assert _same(parser.value, json.loads(document))
    assert parser.document() == document
    for before, after in zip([MISSING, *snapshots], snapshots, strict=False):
        assert grows_into(before, after)
    assert _same(snapshots[-1], parser.value)


@settings(max_examples=_EXAMPLES)
@given(_with_chunkings(_documents), st.sampled_from(["", "Sure! ", "```json\n", "Here:\n```\n"]))
def test_prose_and_fences_around_the_document_are_ignored(
    case: tuple[str, list[str]], prefix: str
) -> None:
    document, _ = case
    text = f"{prefix}{document}\n```\nHope this helps {{: [1, 2]}}"
    parser, _ = _parse(split_at(text, list(range(3, len(text), 7))))
    assert parser.done
    assert parser.document() == document
    assert parser.start == len(prefix)
    assert parser.end == len(prefix) + len(document)


@settings(max_examples=_EXAMPLES)
@given(
    st.text(min_size=1, max_size=30).flatmap(
        lambda s: st.tuples(st.just(s), chunkings(json.dumps([s])))
    )
)
def test_escapes_and_surrogate_pairs_split_across_chunks(case: tuple[str, list[str]]) -> None:
    value, chunks = case  # json.dumps escapes non-ASCII as \\uXXXX, astral ones as pairs
    parser = IncrementalJSONParser()
    for chunk in chunks:
        parser.feed(chunk)
        prefix = parser.partial_string()
        if prefix is not None:
            assert value.startswith(prefix)  # never half an escape or half a pair
    assert parser.value == [value]


def test_a_surrogate_pair_shows_only_once_complete() -> None:
    parser = IncrementalJSONParser()
    seen: list[str | None] = []
    for chunk in ['["a', "\\ud8", "3d", "\\ude", "00", "b"]:
        parser.feed(chunk)
        seen.append(parser.partial_string())
    assert seen == ["a", "a", "a", "a", "a😀", "a😀b"]


def test_numbers_and_literals_show_only_once_complete() -> None:
    parser = IncrementalJSONParser()
    seen: list[Any] = []
    for chunk in ["[12", "34", ".5", ", tr", "ue, -", "Infinity, NaN", "]"]:
        parser.feed(chunk)
        seen.append(parser.snapshot())
    assert seen[:4] == [[], [], [], [1234.5]]
    assert seen[4] == [1234.5, True]
    assert seen[5][2] == -math.inf
    assert math.isnan(seen[6][3])


def test_on_value_reports_each_value_with_its_text_span() -> None:
    text = 'ok {"a": [1, "x"], "b": {"c": null}} tail'
    found: list[tuple[Any, str]] = []
    parser = IncrementalJSONParser(on_value=lambda v, s, e: found.append((v, parser.text(s, e))))
    for chunk in split_at(text, list(range(2, len(text), 3))):
        parser.feed(chunk)
    assert found == [
        (1, "1"),
        ("x", '"x"'),
        ([1, "x"], '[1, "x"]'),
        (None, "null"),
        ({"c": None}, '{"c": null}'),
        ({"a": [1, "x"], "b": {"c": None}}, text[3:-5]),
    ]


@given(st.text(st.characters(exclude_characters="{["), max_size=40), st.data())
def test_text_slices_join_only_what_they_need(text: str, data: st.DataObject) -> None:
    parser = IncrementalJSONParser()
    for chunk in data.draw(chunkings(text)):
        parser.feed(chunk)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text) + 2))
    assert parser.text(start, end) == text[start:end]
    assert parser.text() == text


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('{"a" 1}', 5),
        ('{"a": tru }', 9),
        ('{"a": nul}', 9),
        ("[1, 2,, 3]", 6),
        ('{"a": 01}', 6),
        ('{"a": "\\x"}', 8),
        ('["\\u12G4"]', 5),
        ("[1 2]", 3),
        ('{"a": 1]', 7),
    ],
)
def test_syntax_errors_carry_their_position(text: str, position: int) -> None:
    parser = IncrementalJSONParser()
    *chunks, last = split_at(text, list(range(1, position + 1, 2)))
    for chunk in chunks:
        parser.feed(chunk)
    with pytest.raises(JSONSyntaxError) as raised:
        parser.feed(last)  # the chunk holding the offending character
    assert raised.value.position == position
    with pytest.raises(JSONSyntaxError):
        parser.feed("more")
    assert parser.text().endswith("more")


def test_restart_skips_prose_that_looked_like_json() -> None:
    parser = IncrementalJSONParser()
    text = 'See [sic] and {curly}: {"a": [1, {"b": 2}]} [3]'
    for chunk in split_at(text, list(range(4, len(text), 5))):
        try:
            parser.feed(chunk)
        except JSONSyntaxError:
            parser.restart()
    assert parser.done
    assert parser.value == {"a": [1, {"b": 2}]}
    assert parser.document() == '{"a": [1, {"b": 2}]}'


def test_nothing_before_the_first_bracket() -> None:
    parser = IncrementalJSONParser()
    parser.feed("no JSON here")
    assert parser.snapshot() is MISSING
    assert parser.document() == ""
    assert not parser.done
    parser.feed("")
    assert repr(MISSING) == "MISSING"


def test_text_after_the_document_is_recorded_and_ignored() -> None:
    parser = IncrementalJSONParser()
    parser.feed("[1]")
    parser.feed("} not JSON")
    assert parser.value == [1]
    assert parser.text() == "[1]} not JSON"


@pytest.mark.parametrize("control", ["\n", "\t", "\x00", "\x1f"])
def test_a_raw_control_character_in_a_string_is_a_syntax_error(control: str) -> None:
    text = '{"a": "x' + control + 'y"}'
    at = text.index(control)
    for before in ("", text[:at]):  # whole, or cut just before the control character
        parser = IncrementalJSONParser()
        parser.feed(before)
        with pytest.raises(JSONSyntaxError, match="control character") as info:
            parser.feed(text[len(before) :])
        assert info.value.position == at  # where json.loads reports it
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    parser = IncrementalJSONParser()
    parser.feed('{"a": "x\x7fy\\n"}')  # DEL and escapes are fine
    assert parser.value == {"a": "x\x7fy\n"}
