"""parse_model and parse_items: chunking-invariant results, growing snapshots, typed errors."""

from __future__ import annotations

import doctest
import itertools
import json
import sys
from typing import Annotated, Any, Literal

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    field_validator,
)
from reactivex import Observable
from reactivex import operators as rx
from reactivex.subject import Subject
from reactivex.testing.marbles import marbles_testing

from kagura.errors import ConfigError, KaguraError, ParseError
from kagura.operators import _parse, _partial, _snapshot, is_complete, parse_items, parse_model
from kagura.testing.strategies import chunkings, split_at


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None


class Person(BaseModel):
    name: str
    age: int
    score: float
    active: bool
    tags: list[str] = []
    address: Address
    scores: dict[str, int] = {}
    nickname: Annotated[str, Field(max_length=40)] | None = None


class Team(BaseModel):
    title: str
    members: list[Person]
    offices: dict[str, Address] = {}


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


_EXAMPLES = 150  # about 1 s a test on 2 cores
_text = st.text(max_size=12)
_addresses = st.builds(Address, street=_text, city=_text, postcode=st.none() | _text)
_people = st.builds(
    Person,
    name=_text,
    age=st.integers(-(10**12), 10**12),
    score=st.floats(allow_nan=False, allow_infinity=False),
    active=st.booleans(),
    tags=st.lists(_text, max_size=3),
    address=_addresses,
    scores=st.dictionaries(_text, st.integers(), max_size=3),
    nickname=st.none() | st.text(max_size=10),
)
_teams = st.builds(
    Team,
    title=_text,
    members=st.lists(_people, max_size=3),
    offices=st.dictionaries(_text, _addresses, max_size=2),
)
_WRAPPERS = [
    "{}",
    "```json\n{}\n```",
    "Sure! Here is the JSON:\n```json\n{}\n```\nAnything else?",
    "Result: {} (as requested)",
]


@st.composite
def _dumps(draw: st.DrawFn, value: BaseModel) -> str:
    """The model as an LLM might write it: compact, indented or ASCII-escaped, maybe fenced."""
    style = draw(st.sampled_from(["compact", "indent", "ascii"]))
    if style == "ascii":  # non-ASCII as \\uXXXX escapes, astral characters as surrogate pairs
        document = json.dumps(value.model_dump(mode="json"), ensure_ascii=True)
    else:
        document = value.model_dump_json(indent=2 if style == "indent" else None)
    return draw(st.sampled_from(_WRAPPERS)).replace("{}", document, 1)


def _documents(models: st.SearchStrategy[BaseModel]) -> st.SearchStrategy[tuple[str, list[str]]]:
    return (
        models.flatmap(_dumps)
        .filter(lambda text: len(text) < 1500)
        .flatmap(lambda text: st.tuples(st.just(text), chunkings(text, max_chunks=200)))
    )


def _run(source: Observable[Any]) -> tuple[list[Any], Exception | None]:
    items: list[Any] = []
    errors: list[Exception] = []
    completed: list[bool] = []
    source.subscribe(items.append, errors.append, lambda: completed.append(True))
    assert len(errors) + len(completed) == 1
    return items, errors[0] if errors else None


def grows_into(a: Any, b: Any) -> bool:
    """Whether snapshot ``a`` is a "prefix" of ``b``: set fields stay, strings only extend."""
    if isinstance(a, BaseModel):
        return (
            type(a) is type(b)
            and a.model_fields_set <= b.model_fields_set
            and all(grows_into(getattr(a, f), getattr(b, f)) for f in a.model_fields_set)
        )
    if isinstance(a, str):
        return isinstance(b, str) and b.startswith(a)
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) <= len(b)
            and all(grows_into(x, y) for x, y in zip(a, b, strict=False))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and all(k in b and grows_into(v, b[k]) for k, v in a.items())
    return a == b


def test_doctests() -> None:
    assert doctest.testmod(_parse).failed == 0
    assert doctest.testmod(_partial).failed == 0


# --- parse_model ------------------------------------------------------------------------


@settings(max_examples=_EXAMPLES)
@given(_documents(_teams))
def test_result_is_model_validate_json_for_every_chunking(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    expected = Team.model_validate_json(_parse._document(text))
    whole, error = _run(reactivex.from_iterable(chunks).pipe(parse_model(Team)))
    assert error is None
    assert whole == [expected]
    snapshots, error = _run(
        reactivex.from_iterable(chunks).pipe(parse_model(Team, partial=True, every=1))
    )
    assert error is None
    assert snapshots[-1] == expected
    assert Team.model_validate(snapshots[-1].model_dump()) == expected  # fully validated
    assert [is_complete(s) for s in snapshots] == [False] * (len(snapshots) - 1) + [True]
    assert is_complete(whole[0])


@settings(max_examples=_EXAMPLES)
@given(_documents(_teams), st.sampled_from([1, 5, 40]))
def test_snapshots_only_grow(case: tuple[str, list[str]], every: int) -> None:
    _, chunks = case
    snapshots, _ = _run(
        reactivex.from_iterable(chunks).pipe(parse_model(Team, partial=True, every=every))
    )
    assert all(isinstance(s, Team) for s in snapshots)
    for before, after in itertools.pairwise(snapshots):
        assert grows_into(before, after), (before, after)
    partial = [s.model_dump(exclude_unset=True) for s in snapshots[:-1]]
    for before, after in itertools.pairwise(partial):
        assert before != after  # emitted only when something changed


@settings(max_examples=_EXAMPLES)
@given(
    st.recursive(
        st.builds(Tree, label=_text),
        lambda trees: st.builds(Tree, label=_text, children=st.lists(trees, max_size=3)),
        max_leaves=8,
    )
    .map(lambda tree: tree.model_dump_json())
    .flatmap(lambda text: st.tuples(st.just(text), chunkings(text, max_chunks=100)))
)
def test_recursive_models(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    snapshots, error = _run(
        reactivex.from_iterable(chunks).pipe(parse_model(Tree, partial=True, every=1))
    )
    assert error is None
    assert snapshots[-1] == Tree.model_validate_json(text)
    for before, after in itertools.pairwise(snapshots):
        assert grows_into(before, after)


def test_marble_partial_snapshots() -> None:
    class User(BaseModel):
        name: str
        age: int

    chunks = {"a": '{"name": "Al', "b": 'ice"', "c": ', "age": 3', "d": "6}"}
    values = {
        "x": User.model_construct(name="Al"),
        "y": User.model_construct(name="Alice"),
        "z": User(name="Alice", age=36),
    }
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-d-|", chunks).pipe(parse_model(User, partial=True, every=1)))
        assert results == exp("-x-y---z-|", values)


def test_partial_strings_numbers_and_literals() -> None:
    class Reading(BaseModel):
        note: str
        value: float
        ok: bool
        unit: Literal["kelvin", "celsius"]

    chunks = ['{"note": "war', 'm", "value": 2', "1.5", ', "ok": tr', 'ue, "unit": "kel', 'vin"}']
    out, error = _run(
        reactivex.from_iterable(chunks).pipe(
            parse_model(Reading, partial=True, every=1), rx.map(lambda r: r.model_dump())
        )
    )
    assert error is None
    assert out == [
        {"note": "war"},
        {"note": "warm"},
        # "1.5" changes nothing: the number may go on
        {"note": "warm", "value": 21.5},
        {"note": "warm", "value": 21.5, "ok": True},  # "kel" is not a valid unit (yet)
        {"note": "warm", "value": 21.5, "ok": True, "unit": "kelvin"},
    ]


def test_snapshots_show_defaults_and_missing_required_fields() -> None:
    chunks = ['{"name": "Ada", "age": 36, "tags": ["x"', ', "y"], "address": {"street": "Main']
    out, error = _run(
        reactivex.from_iterable(chunks).pipe(parse_model(Person, partial=True, every=1))
    )
    assert isinstance(error, ParseError)  # the stream ended before the JSON did
    first, second = out
    assert first.model_fields_set == {"name", "age", "tags"}
    assert first.tags == ["x"]
    assert first.scores == {}  # a default, not set
    assert not hasattr(first, "score")  # required, not there yet
    assert second.tags == ["x", "y"]
    assert second.address.model_fields_set == {"street"}
    assert second.address.street == "Main"
    assert second.address.postcode is None


def test_every_spaces_snapshots_but_the_last_is_always_emitted() -> None:
    text = Team(
        title="t",
        members=[
            Person(
                name="n" * 30, age=1, score=1, active=True, address=Address(street="s", city="c")
            )
        ]
        * 5,
    ).model_dump_json()
    chunks = split_at(text, list(range(4, len(text), 4)))
    counts: dict[int | None, int] = {}
    for every in (None, 1, 50, 10**6):
        out, error = _run(
            reactivex.from_iterable(chunks).pipe(parse_model(Team, partial=True, every=every))
        )
        assert error is None
        assert out[-1] == Team.model_validate_json(text)
        counts[every] = len(out)
    assert counts[1] > counts[None] > counts[50] > counts[10**6] == 1
    assert counts[50] <= len(text) // 50 + 2
    assert counts[None] <= len(text) // 8 + 2  # by default, 8 characters per open container


def test_field_aliases_and_unknown_keys() -> None:
    class Item(BaseModel):
        item_id: int = Field(alias="id")
        title: str

    chunks = ['{"extra": [1, {"x": 2}], "id": 7, "ti', 'tle": "T', 'o"}']
    out, error = _run(
        reactivex.from_iterable(chunks).pipe(parse_model(Item, partial=True, every=1))
    )
    assert error is None
    assert [i.model_dump() for i in out] == [
        {"item_id": 7},
        {"item_id": 7, "title": "T"},
        {"item_id": 7, "title": "To"},
    ]


def test_models_with_post_init_hooks_and_field_validators() -> None:
    class Shouty(BaseModel):
        word: str
        _seen: int = 0

        @field_validator("word")
        @classmethod
        def upper(cls, value: str) -> str:
            return value.upper()

    out, error = _run(
        reactivex.from_iterable(['{"word": "he', 'llo"}']).pipe(
            parse_model(Shouty, partial=True, every=1)
        )
    )
    assert error is None
    assert [s.word for s in out] == ["he", "HELLO"]  # validators run on the final model
    assert out[-1].model_fields_set == {"word"}


def test_prose_that_looks_like_json_is_skipped() -> None:
    text = 'See [sic] and {curly}: {"street": "a", "city": "b"} [1]'
    for partial in (False, True):
        out, error = _run(
            reactivex.from_iterable(split_at(text, list(range(3, len(text), 3)))).pipe(
                parse_model(Address, partial=partial)
            )
        )
        assert error is None
        assert out[-1] == Address(street="a", city="b")


def test_text_after_the_document_is_ignored_and_the_result_comes_at_its_end() -> None:
    subject: Subject[str] = Subject()
    out: list[Address] = []
    subject.pipe(parse_model(Address, partial=True, every=10**6)).subscribe(out.append)
    subject.on_next('{"street": "a", "city": "b"}')
    assert out == [Address(street="a", city="b")]
    subject.on_next("\n``` trailing {not json")
    subject.on_completed()
    assert len(out) == 1


@pytest.mark.parametrize("partial", [False, True])
def test_invalid_data_raises_parse_error_with_raw_text_and_errors(partial: bool) -> None:
    text = '```json\n{"street": "a", "city": 5}\n```'
    out, error = _run(
        reactivex.from_iterable(split_at(text, [5, 12, 20])).pipe(
            parse_model(Address, partial=partial)
        )
    )
    assert isinstance(error, ParseError)
    assert isinstance(error, KaguraError)
    assert isinstance(error, ValueError)
    assert error.raw_text in (text, text[: text.index("}") + 1])
    assert [(e["loc"], e["type"]) for e in error.errors] == [(("city",), "string_type")]
    assert "Address" in str(error)
    assert all(isinstance(o, Address) for o in out)


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize(
    "text",
    [
        '{"street": "a", "ci',  # the stream ended too soon
        "no JSON at all",
        "",
        '{"street": "a",, "city": "b"}',  # not JSON
        '["street", "city"]',  # JSON of the wrong shape
    ],
)
def test_unparseable_output_raises_parse_error(partial: bool, text: str) -> None:
    out, error = _run(
        reactivex.from_iterable(split_at(text, list(range(2, len(text), 2)))).pipe(
            parse_model(Address, partial=partial)
        )
    )
    assert isinstance(error, ParseError)
    assert error.raw_text == text
    assert error.errors
    assert all(not isinstance(o, Address) or o.model_fields_set != {"street", "city"} for o in out)


@pytest.mark.parametrize("partial", [False, True])
def test_upstream_errors_pass_through(partial: bool) -> None:
    boom = RuntimeError("boom")
    source: Observable[str] = reactivex.concat(
        reactivex.of('{"street": "a"'), reactivex.throw(boom)
    )
    _, error = _run(source.pipe(parse_model(Address, partial=partial)))
    assert error is boom


@pytest.mark.parametrize("partial", [False, True])
def test_dispose_unsubscribes_upstream(partial: bool) -> None:
    subject: Subject[str] = Subject()
    subscription = subject.pipe(parse_model(Address, partial=partial)).subscribe()
    assert subject.observers
    subscription.dispose()
    assert not subject.observers


def test_every_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        parse_model(Address, partial=True, every=0)


# --- parse_items --------------------------------------------------------------------------


@settings(max_examples=_EXAMPLES)
@given(_documents(_teams))
def test_items_of_a_field_for_every_chunking(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    items, error = _run(reactivex.from_iterable(chunks).pipe(parse_items(Person, field="members")))
    assert error is None
    assert items == Team.model_validate_json(_parse._document(text)).members


@settings(max_examples=_EXAMPLES)
@given(st.lists(_people, max_size=4), st.data())
def test_items_of_a_top_level_array_as_soon_as_each_is_complete(
    people: list[Person], data: st.DataObject
) -> None:
    pieces = [p.model_dump_json(indent=1) for p in people]
    text = "[\n" + ",\n".join(pieces) + "\n]"
    ends = [2 + sum(len(p) + 2 for p in pieces[:i]) + len(pieces[i]) for i in range(len(pieces))]
    subject: Subject[str] = Subject()
    items: list[Person] = []
    subject.pipe(parse_items(Person)).subscribe(items.append)
    consumed = 0
    for chunk in data.draw(chunkings(text, max_chunks=200)):
        subject.on_next(chunk)
        consumed += len(chunk)
        assert len(items) == sum(end <= consumed for end in ends)
    subject.on_completed()
    assert items == TypeAdapter(list[Person]).validate_json(text)


def test_items_marble() -> None:
    class P(BaseModel):
        x: int

    chunks = {"a": '[{"x": 1}', "b": ', {"x"', "c": ": 2}]"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-|", chunks).pipe(parse_items(P)))
        assert results == exp("-x---y-|", {"x": P(x=1), "y": P(x=2)})


def test_items_of_any_type() -> None:
    items, error = _run(reactivex.from_iterable(["Sure: [1, 2", "0, 3]"]).pipe(parse_items(int)))
    assert error is None
    assert items == [1, 20, 3]


def test_a_bad_item_raises_parse_error_after_the_good_ones() -> None:
    chunks = ['{"members": [{"street": "a", "city": "b"}, ', '{"street": 1, "city": "c"}, {"x"']
    items, error = _run(reactivex.from_iterable(chunks).pipe(parse_items(Address, field="members")))
    assert items == [Address(street="a", city="b")]
    assert isinstance(error, ParseError)
    assert error.raw_text == "".join(chunks)
    assert [(e["loc"], e["type"]) for e in error.errors] == [(("street",), "string_type")]


@pytest.mark.parametrize(
    ("text", "field", "loc"),
    [
        ('{"members": [{"street": "a", "city": "b"}', "members", ()),  # ended too soon
        ('{"people": []}', "members", ("members",)),  # no such field
        ('{"members": {}}', "members", ("members",)),  # not an array
        ('{"street": "a", "city": "b"}', None, ()),  # not an array
        ('[{"street": "a", "city": "b"}, oops]', None, ()),  # not JSON
    ],
)
def test_items_parse_errors(text: str, field: str | None, loc: tuple[str, ...]) -> None:
    chunks = split_at(text, list(range(3, len(text), 3)))
    _, error = _run(reactivex.from_iterable(chunks).pipe(parse_items(Address, field=field)))
    assert isinstance(error, ParseError)
    assert text.startswith(error.raw_text)  # the text up to the failure
    assert error.errors
    assert error.errors[0]["loc"] == loc


def test_items_skip_prose_that_looks_like_json() -> None:
    text = 'The list [of cities]: [{"street": "a", "city": "b"}]'
    items, error = _run(
        reactivex.from_iterable(split_at(text, list(range(5, len(text), 5)))).pipe(
            parse_items(Address)
        )
    )
    assert error is None
    assert items == [Address(street="a", city="b")]


def test_items_dispose_unsubscribes_upstream() -> None:
    subject: Subject[str] = Subject()
    subscription = subject.pipe(parse_items(Address)).subscribe()
    subscription.dispose()
    assert not subject.observers


# --- deep nesting and long integers: ParseError, whatever the path -----------------------


_BIG = "1" * (sys.get_int_max_str_digits() + 700)  # more digits than int() converts
_DEEP = "[" * 100_000


def _deep_tree(depth: int) -> str:
    return '{"label": "t", "children": [' * depth + '{"label": "leaf"}' + "]}" * depth


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize(
    ("model", "text"),
    [
        (Address, _DEEP),
        (Address, "Sure: " + _DEEP + ' oops {"street": "a", "city": 5}'),
        (Team, '{"title": "t", "members": ' + _DEEP),
        (Tree, _deep_tree(250)),  # each level a snapshot model, too deep to compare
    ],
)
def test_deep_nesting_is_a_parse_error(partial: bool, model: type[BaseModel], text: str) -> None:
    chunks = split_at(text, list(range(8, len(text), 8 if model is Tree else 4096)))
    out, error = _run(
        reactivex.from_iterable(chunks).pipe(parse_model(model, partial=partial, every=1))
    )
    assert isinstance(error, ParseError)
    assert text.startswith(error.raw_text)
    assert error.errors
    assert all(isinstance(o, model) for o in out)


@pytest.mark.parametrize(
    ("text", "field"),
    [(_DEEP, None), ("[[1], " + _DEEP, None), ('{"points": [1, ' + _DEEP, "points")],
)
def test_items_deep_nesting_is_a_parse_error(text: str, field: str | None) -> None:
    chunks = split_at(text, list(range(4096, len(text), 4096)))
    _, error = _run(reactivex.from_iterable(chunks).pipe(parse_items(Any, field=field)))
    assert isinstance(error, ParseError)
    assert text.startswith(error.raw_text)


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize(
    "text",
    [
        f'{{"street": "a", "city": "b", "zip": {_BIG}}}',
        f'```json\n{{"street": "a", "city": "b", "codes": [1, -{_BIG}, 3]}}\n```',
    ],
)
def test_an_integer_longer_than_python_converts_is_a_parse_error(partial: bool, text: str) -> None:
    chunks = split_at(text, list(range(1000, len(text), 1000)))
    out, error = _run(reactivex.from_iterable(chunks).pipe(parse_model(Address, partial=partial)))
    assert isinstance(error, ParseError)
    assert text.startswith(error.raw_text)
    assert [e["type"] for e in error.errors] == ["json_invalid"]  # pydantic: number out of range
    assert all(isinstance(o, Address) for o in out)


@pytest.mark.parametrize(
    ("text", "field", "emitted"),
    [
        (f"[1, {_BIG}, 3]", None, [1]),
        (f'Here: {{"points": [{_BIG}]}}', "points", []),
        (f'{{"before": {_BIG}, "points": [1]}}', "points", []),
    ],
)
def test_items_integer_longer_than_python_converts_is_a_parse_error(
    text: str, field: str | None, emitted: list[int]
) -> None:
    chunks = split_at(text, list(range(3, len(text), 3)))
    items, error = _run(reactivex.from_iterable(chunks).pipe(parse_items(int, field=field)))
    assert items == emitted
    assert isinstance(error, ParseError)
    assert text.startswith(error.raw_text)
    assert error.errors


def test_is_complete_tells_snapshots_from_validated_models_at_every_level() -> None:
    document = Team(
        title="t",
        members=[
            Person(name="Al", age=1, score=1.0, active=True, address=Address(street="s", city="c"))
        ]
        * 2,
    ).model_dump_json()
    cut = document.index('"name"', document.index('"name"') + 1) + 10  # inside the 2nd person
    snapshots, error = _run(
        reactivex.from_iterable([document[:cut], document[cut:]]).pipe(
            parse_model(Team, partial=True, every=1)
        )
    )
    assert error is None
    draft, final = snapshots
    first, second = draft.members
    assert not is_complete(draft)
    assert not is_complete(second)
    assert is_complete(first)
    assert is_complete(first.address)
    assert not is_complete(draft.model_copy())
    assert not is_complete(draft.model_copy(deep=True))
    assert is_complete(final)
    assert all(is_complete(m) for m in final.members)
    assert draft.model_fields_set == {"title", "members"}  # a set as any other
    assert is_complete(Team.model_construct())
    assert is_complete(Team.model_validate(final))


# --- snapshots are what model_construct makes ----------------------------------------------


class Point(BaseModel):
    x: int
    y: int = 0


class Shape(BaseModel):  # nested models, defaults, default factories, aliases
    name: str = Field(alias="title")
    kind: str = Field("polygon", validation_alias=AliasChoices("kind", "type"))
    points: list[Point] = Field(default_factory=list)
    center: Point | None = None
    tags: dict[str, str] = {"color": "none"}
    note: str = Field(default_factory=lambda: "unnamed")


class Listed(BaseModel):  # a generic alias as the default factory
    name: str = ""
    points: list[Point] = Field(default_factory=list[Point])


class Open(BaseModel):  # extra fields
    model_config = ConfigDict(extra="allow")
    a: int
    points: list[Point] = []


class Private(BaseModel):  # private attributes
    a: int
    b: str = "b"
    _cache: dict[str, int] = PrivateAttr(default_factory=dict[str, int])
    _hits: int = 0


class Derived(BaseModel):  # a default factory that reads the other fields
    a: int = 0
    b: int = Field(default_factory=lambda data: data["a"] + 1)


def _assert_as_constructed(node: Any) -> None:
    """Each model in a snapshot is exactly what ``model_construct`` makes of its set fields."""
    values: Any = ()
    if isinstance(node, BaseModel):
        fields = {name: getattr(node, name) for name in node.model_fields_set}
        expected = type(node).model_construct(**fields)
        assert list(node.__dict__.items()) == list(expected.__dict__.items())  # defaults, order
        assert node.model_fields_set == expected.model_fields_set
        assert node.__pydantic_extra__ == expected.__pydantic_extra__
        assert node.__pydantic_private__ == expected.__pydantic_private__
        values = node.__dict__.values()
    elif isinstance(node, dict | list):
        values = node.values() if isinstance(node, dict) else node
    for value in values:
        _assert_as_constructed(value)


@pytest.mark.parametrize(
    ("model", "document", "fast"),
    [
        (
            Shape,
            '{"title": "tri", "type": "triangle", "points": [{"x": 1, "y": 2}, {"x": 3}],'
            ' "center": {"x": 0}, "tags": {"c": "red"}, "note": "n"}',
            True,
        ),
        (Listed, '{"points": [{"x": 1}], "name": "n"}', True),
        (Open, '{"a": 1, "zzz": [1, {"x": 2}], "points": [{"x": 1}, {"y": 2, "x": 3}]}', False),
        (Private, '{"b": "bee", "a": 1}', False),
        (Derived, '{"a": 5, "b": 7}', False),
    ],
)
def test_snapshots_are_what_model_construct_makes(
    model: type[BaseModel], document: str, fast: bool
) -> None:
    snapshots, error = _run(
        reactivex.from_iterable(document).pipe(parse_model(model, partial=True, every=1))
    )
    assert error is None
    assert snapshots[-1] == model.model_validate_json(document)  # validated, not a snapshot
    assert len(snapshots) >= 3
    for snapshot in snapshots[:-1]:
        _assert_as_constructed(snapshot)
    plan = _snapshot.plan_for(model)
    assert plan is not None
    assert plan.fast is fast  # the fast construction, where nothing needs model_construct


@pytest.mark.parametrize("model", [Team, Private, Derived])
def test_snapshots_built_by_model_construct_are_marked_too(model: type[BaseModel]) -> None:
    documents = {Team: '{"title": "t", "members": []}', Private: '{"a": 1}', Derived: '{"a": 1}'}
    document = documents[model]
    snapshots, error = _run(
        reactivex.from_iterable(document).pipe(parse_model(model, partial=True, every=1))
    )
    assert error is None
    assert len(snapshots) >= 2
    assert [is_complete(s) for s in snapshots] == [False] * (len(snapshots) - 1) + [True]


# --- linear work on shapes that were quadratic ------------------------------------------


class _Text(BaseModel):
    text: str


@pytest.mark.timeout(60)  # every snapshot copied the whole string: minutes at this size
def test_a_long_string_value_is_linear_in_partial_mode() -> None:
    import time

    document = '{"text": "' + "x" * 2_000_000 + '"}'
    chunks = split_at(document, range(4, len(document), 4))
    count = 0
    lengths: list[int] = []

    def on_next(snapshot: _Text) -> None:
        nonlocal count
        count += 1
        lengths.append(len(getattr(snapshot, "text", "")))  # unset before the string starts

    start = time.perf_counter()
    reactivex.from_iterable(chunks).pipe(parse_model(_Text, partial=True)).subscribe(on_next)
    assert time.perf_counter() - start < 10  # about 1.5 s; about 30 s per MB before
    assert lengths[-1] == 2_000_000  # the final, validated model
    assert lengths == sorted(lengths)  # snapshots only grow
    assert 100 < count < 2_000  # spaced in proportion to the string: not one per chunk


def test_snapshot_spacing_grows_with_the_string_even_with_every_1() -> None:
    document = '{"text": "' + "x" * 100_000 + '"}'
    snapshots, error = _run(
        reactivex.from_iterable(split_at(document, range(1, len(document)))).pipe(
            parse_model(_Text, partial=True, every=1)
        )
    )
    assert error is None
    assert len(snapshots) < 1_000
    texts = [getattr(s, "text", None) for s in snapshots]
    assert texts[-1] == "x" * 100_000
    assert "x" in texts  # a short string still shows on every change
    assert "xx" in texts


# --- both modes, and every chunking, agree ----------------------------------------------


class _Name(BaseModel):
    name: str


@pytest.mark.parametrize("partial", [False, True])
def test_a_raw_control_character_makes_a_candidate_not_json_in_both_modes(partial: bool) -> None:
    # RFC 8259: U+0000 to U+001F must be escaped in a string. Such a candidate is skipped
    # like prose, and the next value is the answer, whole or partial.
    text = '{"name": "a\nb"} {"name": "ok"}'
    for chunks in ([text], list(text)):
        items, error = _run(
            reactivex.from_iterable(chunks).pipe(parse_model(_Name, partial=partial))
        )
        assert error is None
        assert items[-1] == _Name(name="ok")


@settings(max_examples=100)
@given(st.data())
def test_parse_items_outcome_on_an_invalid_escape_does_not_depend_on_chunking(
    data: st.DataObject,
) -> None:
    text = '[1, 2, "a\\x", 3] [4]'
    expected = _run(reactivex.from_iterable([text]).pipe(parse_items(object)))
    assert expected[0] == [1, 2]  # completed before the error: emitted in every chunking
    assert isinstance(expected[1], ParseError)
    assert "invalid escape" in str(expected[1])
    items, error = _run(
        reactivex.from_iterable(data.draw(chunkings(text))).pipe(parse_items(object))
    )
    assert items == expected[0]
    assert str(error) == str(expected[1])


@settings(max_examples=50)
@given(st.data())
def test_a_bad_candidate_with_no_item_yet_is_skipped_in_every_chunking(data: st.DataObject) -> None:
    text = 'See ["\\q"] then [1, 2]'
    items, error = _run(reactivex.from_iterable(data.draw(chunkings(text))).pipe(parse_items(int)))
    assert (items, error) == ([1, 2], None)


@settings(max_examples=50)
@given(st.data())
def test_a_duplicated_target_key_raises_in_every_chunking(data: st.DataObject) -> None:
    # Last key wins in JSON and pydantic ([3] here), but 1 and 2 are out before the second
    # "xs" arrives: the stream fails rather than disagree with validating the whole list.
    text = '{"xs": [1, 2], "xs": [3]}'
    items, error = _run(
        reactivex.from_iterable(data.draw(chunkings(text))).pipe(parse_items(int, field="xs"))
    )
    assert items == [1, 2]
    assert isinstance(error, ParseError)
    assert "'xs' twice" in str(error)


def test_a_duplicated_key_before_the_target_array_is_last_wins() -> None:
    text = '{"xs": 5, "xs": [3]}'  # nothing emitted from the first: it agrees with pydantic
    items, error = _run(reactivex.from_iterable([text]).pipe(parse_items(int, field="xs")))
    assert (items, error) == ([3], None)
