"""Return-type parsing: the model's answer becomes the annotated type, or a ParseError."""

from __future__ import annotations

import enum
import sys
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from kagura import LLMConfig, agent
from kagura.agents.output import OutputParser, json_instructions, parse_output, type_name
from kagura.errors import ConfigError, ParseError

_BIG = "1" * (sys.get_int_max_str_digits() + 700)  # more digits than int() converts


class City(BaseModel):
    name: str
    population: int


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@pytest.mark.parametrize("tp", [str, Any, None])
def test_text_is_unchanged(tp: Any) -> None:
    assert parse_output("  Hello,\nworld.  ", tp) == "  Hello,\nworld.  "
    assert OutputParser(tp).instructions is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42", 42), (" 42\n", 42), ("The answer is 42.", 42), ("1,234", 1234), ("`-7`", -7)],
)
def test_int(text: str, expected: int) -> None:
    assert parse_output(text, int) == expected


@pytest.mark.parametrize("text", ["", "forty-two", "3 or 4", "4.5"])
def test_bad_int_is_a_parse_error_with_the_raw_text(text: str) -> None:
    with pytest.raises(ParseError, match="expected int") as info:
        parse_output(text, int)
    assert info.value.raw_text == text


@pytest.mark.parametrize(("text", "expected"), [("3.14", 3.14), ("About -2.5e3 units", -2500.0)])
def test_float(text: str, expected: float) -> None:
    assert parse_output(text, float) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("False", False), ("Yes, it is.", True), ("no.", False), ('"true"', True)],
)
def test_bool(text: str, expected: bool) -> None:
    assert parse_output(text, bool) is expected


def test_bad_bool() -> None:
    with pytest.raises(ParseError):
        parse_output("maybe", bool)


def test_list_in_a_fence() -> None:
    assert parse_output('```json\n["a", "b"]\n```', list[str]) == ["a", "b"]
    assert parse_output("Numbers: [1, 2, 3]. Done.", list[int]) == [1, 2, 3]


def test_model_with_prose_around() -> None:
    text = 'Here is the city:\n{"name": "Oslo", "population": 709000}\nAnything else?'
    assert parse_output(text, City) == City(name="Oslo", population=709000)


def test_invalid_model_carries_the_raw_text_and_pydantic_errors() -> None:
    text = '{"name": "Oslo", "population": "many"}'
    with pytest.raises(ParseError) as info:
        parse_output(text, City)
    assert info.value.raw_text == text
    assert info.value.errors[0]["loc"] == ("population",)


def test_model_instructions_carry_the_json_schema() -> None:
    instructions = OutputParser(City).instructions
    assert instructions is not None
    assert '"population"' in instructions
    assert "JSON schema" in instructions


def test_optional() -> None:
    for text in ["", "null", "None", "none."]:
        assert parse_output(text, int | None) is None
    assert parse_output("7", int | None) == 7
    assert parse_output('{"name": "Rome", "population": 1}', City | None) == City(
        name="Rome", population=1
    )
    assert parse_output("null", City | None) is None


def test_literal_and_enum() -> None:
    assert parse_output("Positive.", Literal["positive", "negative"]) == "positive"
    assert (
        parse_output("I think it is NEGATIVE overall", Literal["positive", "negative"])
        == "negative"
    )
    assert parse_output("green", Color) is Color.GREEN
    with pytest.raises(ParseError, match="expected one of"):
        parse_output("both positive and negative", Literal["positive", "negative"])
    instructions = OutputParser(Color).instructions
    assert instructions == "Answer with exactly one of: red, green."


def test_dict() -> None:
    assert parse_output('{"a": 1, "b": 2}', dict[str, int]) == {"a": 1, "b": 2}


def test_unsupported_type_is_a_config_error() -> None:
    class Opaque:
        pass

    with pytest.raises(ConfigError, match="Opaque"):
        OutputParser(Opaque)


def test_the_first_json_value_is_the_one_a_stream_would_find() -> None:
    assert parse_output('[not json] then {"a": 1}', dict[str, int]) == {"a": 1}
    # Not JSON from "oops" on: the search resumes there, not inside the broken array.
    assert parse_output('[1, {"a": 2}, oops] {"a": 3}', dict[str, int]) == {"a": 3}


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "[" * 2_000 + "]" * 2_000,
        "```json\n" + "[" * 2_000 + "\n```",
        "The numbers: " + "[" * 2_000 + " oops",
    ],
)
@pytest.mark.parametrize("tp", [list[int], list[Any], City, int | None, list[int] | None])
def test_deep_nesting_is_a_parse_error(text: str, tp: Any) -> None:
    with pytest.raises(ParseError) as info:
        OutputParser(tp).parse(text)
    assert info.value.raw_text == text


@pytest.mark.parametrize(
    ("text", "tp"),
    [
        (f"[{_BIG}]", list[int]),
        (f"Here: [1, {_BIG}] and [2]", list[int]),
        (f'{{"name": "Oslo", "population": {_BIG}}}', City),
        (_BIG, int),
        (f"About {_BIG} people", int | None),
    ],
)
def test_integers_longer_than_python_converts_are_a_parse_error(text: str, tp: Any) -> None:
    with pytest.raises(ParseError) as info:
        OutputParser(tp).parse(text)
    assert info.value.raw_text == text


async def test_typed_agent_answer_nested_too_deeply_is_a_parse_error() -> None:
    @agent(config=LLMConfig(model="kagura/echo"))
    async def numbers(text: str) -> list[int]:
        """{{ text }}"""
        ...

    with pytest.raises(ParseError) as info:
        await numbers("[" * 2_000)  # kagura/echo answers with the prompt
    assert info.value.raw_text.startswith("[" * 2_000)


def test_type_name() -> None:
    assert type_name(City) == "City"
    assert type_name(list[int]) == "list[int]"
    assert type_name(dict[str, int] | None) == "dict[str, int] | None"
    assert type_name(Literal["a", "b"]) == "Literal['a', 'b']"
    assert repr(OutputParser(list[int])) == "OutputParser(list[int])"


def test_json_instructions_are_the_one_text_for_agents_and_the_cli() -> None:
    from kagura.cli import _schema_messages  # pyright: ignore[reportPrivateUsage] (its prompt)

    instructions = json_instructions(City)
    assert OutputParser(City).instructions == instructions
    assert _schema_messages("Oslo?", City) == [
        {"role": "system", "content": instructions},
        {"role": "user", "content": "Oslo?"},
    ]


@given(st.text())
def test_parsing_fails_only_with_parse_error(text: str) -> None:
    for tp in (int, bool, City, list[int], Literal["a", "b"]):
        raw = text
        try:
            parse_output(text, tp)
        except ParseError as exc:
            raw = exc.raw_text
        assert raw == text
