"""strip_tags: drop <name>…</name> spans, whatever the chunking."""

from __future__ import annotations

import re

import pytest
import reactivex
from hypothesis import given
from hypothesis import strategies as st
from reactivex.subject import Subject
from reactivex.testing.marbles import marbles_testing

from kagura.errors import ConfigError
from kagura.operators import strip_tags
from kagura.testing.strategies import text_and_chunkings


def run(chunks: list[str], name: str = "think", error: Exception | None = None) -> list[str]:
    out: list[str] = []
    failures: list[Exception] = []
    tail = reactivex.throw(error) if error else reactivex.empty()
    reactivex.concat(reactivex.from_iterable(chunks), tail).pipe(strip_tags(name)).subscribe(
        out.append, failures.append
    )
    assert failures == ([error] if error else [])
    return out


def reference(text: str, name: str = "think") -> str:
    """What strip_tags keeps: spans removed, an unclosed one to the end."""
    return re.sub(f"<{name}>.*?(?:</{name}>|\\Z)", "", text, flags=re.DOTALL)


def test_marble() -> None:
    lookup = {"a": "<thi", "b": "nk>hm</think>", "c": "Hi"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-|", lookup).pipe(strip_tags("think")))
        assert results == exp("-----c-|", lookup)


def test_removes_a_span_split_across_chunks() -> None:
    chunks = ["<th", "ink>", "Let me think.", "</thi", "nk>", "\n\nThe answer is 4."]
    assert "".join(run(chunks)) == "\n\nThe answer is 4."


def test_emits_text_as_soon_as_it_cannot_start_a_tag() -> None:
    subject: Subject[str] = Subject()
    out: list[str] = []
    subject.pipe(strip_tags("think")).subscribe(out.append)
    subject.on_next("Hello <")
    assert out == ["Hello "]
    subject.on_next("b> and <th")
    assert out == ["Hello ", "<b> and "]
    subject.on_next("ink>x</think>y")
    assert out == ["Hello ", "<b> and ", "y"]


def test_several_spans_and_text_between() -> None:
    assert "".join(run(["a<think>1</think>b<think>2</think>c"])) == "abc"


def test_an_unclosed_span_is_dropped_at_completion() -> None:
    assert run(["Hi <think>still thinking</th"]) == ["Hi "]


def test_a_partial_tag_that_never_completed_is_text() -> None:
    assert run(["Hi <thi"]) == ["Hi ", "<thi"]


def test_the_same_rules_apply_before_an_error() -> None:
    boom = RuntimeError("boom")
    assert run(["Hi <thi"], error=boom) == ["Hi ", "<thi"]
    assert run(["Hi <think>x</th"], error=boom) == ["Hi "]


def test_spans_do_not_nest() -> None:
    assert "".join(run(["<think>a<think>b</think>c</think>d"])) == "c</think>d"


def test_tags_with_attributes_or_another_case_are_text() -> None:
    text = '<think id="1">x</think><THINK>y</THINK>'
    assert "".join(run([text])) == text


def test_other_tag_names() -> None:
    assert "".join(run(["a<reason", "ing>b</reasoning>c"], name="reasoning")) == "ac"


def test_empty_stream() -> None:
    assert run([]) == []


@pytest.mark.parametrize("name", ["", "think>", "<think>", "a b", 'x id="1"'])
def test_the_name_must_be_a_plain_tag_name(name: str) -> None:
    with pytest.raises(ConfigError):
        strip_tags(name)


_TAGGY = st.lists(
    st.sampled_from(["<think>", "</think>", "<", "</", "<th", "ink>", "think", ">", "a", " ", "\n"])
).map("".join)


@given(text_and_chunkings(st.one_of(_TAGGY, st.text(alphabet="<>/thinkab "))))
def test_output_text_is_the_same_for_every_chunking(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    out = run(chunks)
    assert "".join(out) == reference(text)
    assert all(out)
