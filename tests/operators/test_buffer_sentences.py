"""buffer_sentences: whole sentences, lossless, chunking-invariant, timed on virtual time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as rx
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from kagura.errors import ConfigError
from kagura.operators import buffer_sentences
from kagura.testing.scripted import marble_chunks
from kagura.testing.strategies import chunkings, split_at, text_and_chunkings, token_streams

GOLDEN_RULES = Path(__file__).resolve().parents[1] / "data" / "golden_rules_en.json"
RULES: list[dict[str, Any]] = json.loads(GOLDEN_RULES.read_text(encoding="utf-8"))


def run(chunks: list[str], **options: Any) -> list[str]:
    """The operator's output for ``chunks`` from a synchronous source."""
    out: list[str] = (
        reactivex.from_iterable(chunks).pipe(buffer_sentences(**options), rx.to_list()).run()
    )
    return out


def stripped(sentences: list[str]) -> list[str]:
    return [s.strip() for s in sentences]


# -- the Golden Rules --------------------------------------------------------------------


def test_golden_rules_on_whole_texts() -> None:
    failed = [r for r in RULES if stripped(run([r["text"]])) != r["sentences"]]
    score = len(RULES) - len(failed)
    print(f"\nGolden Rules: {score}/{len(RULES)}")
    assert score >= 47, "failing rules:\n" + "\n".join(r["text"] for r in failed)


WHOLE = [run([r["text"]]) for r in RULES]


@settings(max_examples=30)
@given(st.tuples(*(chunkings(r["text"]) for r in RULES)))
def test_golden_rules_under_any_chunking(chunked: tuple[list[str], ...]) -> None:
    # Each example chunks every rule; a failure names the rule and the chunks.
    for chunks, whole in zip(chunked, WHOLE, strict=True):
        assert run(chunks) == whole, chunks


# -- properties ------------------------------------------------------------------------------

# Text made of the pieces the segmenter decides on, so examples hit its rules often.
_PIECES = [
    *"ab A.!?,()\n\"'",
    "\u3002",
    "\u300d",
    "\u2026",
    "\u2022",
    "\u00bf",
    " . ",
    "Mr.",
    "U.S.",
    "e.g.",
    "p.m.",
    "3.14",
    "1.",
    "2)",
    "b.",
    "```",
    "\n\n",
    "How",
    "the",
    "#",
    "- ",
]
tricky_text = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


@settings(max_examples=150)
@given(st.one_of(text_and_chunkings(), text_and_chunkings(tricky_text)))
def test_lossless_and_chunking_invariant(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    whole = run([text] if text else [])
    assert "".join(whole) == text
    assert run(chunks) == whole


@settings(max_examples=60)
@given(token_streams())
def test_token_streams_are_split_as_their_text(tokens: list[str]) -> None:
    text = "".join(tokens)
    assert run(tokens) == run([text] if text else [])
    assert "".join(run(tokens)) == text


@settings(max_examples=60)
@given(text_and_chunkings(tricky_text), st.integers(1, 30))
def test_min_chars_merges_short_sentences(case: tuple[str, list[str]], min_chars: int) -> None:
    text, chunks = case
    out = run(chunks, min_chars=min_chars)
    assert "".join(out) == text
    assert out == run([text] if text else [], min_chars=min_chars)
    assert all(len(s.rstrip()) >= min_chars for s in out[:-1])


@settings(max_examples=60)
@given(
    text_and_chunkings(tricky_text, max_chunks=20),
    st.lists(st.integers(0, 6), min_size=20, max_size=20),
    st.integers(1, 8),
)
def test_max_wait_never_loses_text(
    case: tuple[str, list[str]], gaps: list[int], max_wait: int
) -> None:
    text, chunks = case
    scheduler = TestScheduler()
    messages: list[Any] = []
    time = 0
    for chunk, gap in zip(chunks, gaps, strict=False):
        time += gap
        messages.append(ReactiveTest.on_next(time, chunk))
    messages.append(ReactiveTest.on_completed(time + 1))
    source = scheduler.create_cold_observable(messages)
    observer = scheduler.start(
        lambda: source.pipe(buffer_sentences(max_wait=max_wait)), disposed=10_000
    )
    assert "".join(m.value.value for m in observer.messages if m.value.kind == "N") == text


# -- timing, completion, errors, disposal (virtual time) ---------------------------------------


def test_the_docstring_marble() -> None:
    items = {"a": "Hi. I", "b": "t is", "c": " 5 p.m.", "s": "Hi. ", "t": "It is 5 p.m."}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a--b--c-|", items).pipe(buffer_sentences()))
        assert results == exp("----s----(t,|)", items)


def test_max_wait_flushes_when_no_sentence_ends() -> None:
    items = {"a": "Hel", "b": "lo", "c": " there.", "x": "Hello", "y": " there."}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b------c-|", items).pipe(buffer_sentences(max_wait=5)))
        assert results == exp("------x-----(y,|)", items)


def test_a_sentence_end_restarts_the_wait() -> None:
    items = {"a": "One. T", "b": "wo", "c": " and", "x": "One. ", "y": "Two and"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-c-----|", items).pipe(buffer_sentences(max_wait=5)))
        assert results == exp("-----x----y|", items)


def test_an_explicit_scheduler_wins_over_the_subscription_scheduler() -> None:
    frozen = TestScheduler()  # never advanced: the wait never ends
    items = {"a": "Hel", "b": "lo", "x": "Hello"}
    with marbles_testing() as (start, cold, _, exp):
        operator = buffer_sentences(max_wait=2, scheduler=frozen)
        results = start(cold("-a-b-------|", items).pipe(operator))
        assert results == exp("-----------(x,|)", items)


def test_completion_decides_what_waited_and_flushes_the_rest() -> None:
    items = {"a": "It is 5 p", "b": ".m. Fine", "x": "It is 5 p.m. ", "y": "Fine"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-|", items).pipe(buffer_sentences()))
        assert results == exp("-----(x,y,|)", items)


def test_an_error_flushes_the_held_text_first() -> None:
    boom = RuntimeError("boom")
    items = {"a": "Hi. Th", "b": "ere", "x": "Hi. There"}
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a-b-#", items, boom).pipe(buffer_sentences(max_wait=50)))
        assert results == exp("-----(x,#)", items, boom)


def test_an_error_after_a_timed_flush_has_nothing_more_to_emit() -> None:
    boom = RuntimeError("boom")
    with marbles_testing() as (start, cold, _, exp):
        results = start(cold("-a---#", {"a": "Hello"}, boom).pipe(buffer_sentences(max_wait=2)))
        assert results == exp("---a-#", {"a": "Hello"}, boom)


def test_empty_stream() -> None:
    with marbles_testing() as (start, cold, _, exp):
        assert start(cold("--|").pipe(buffer_sentences(max_wait=1))) == exp("--|")


def test_dispose_cancels_the_timer_and_the_upstream() -> None:
    scheduler, timers = TestScheduler(), TestScheduler()
    source = marble_chunks("-a-b-c------", {"a": "Hel", "b": "lo", "c": "!"}, scheduler=scheduler)
    observer = scheduler.start(
        lambda: source.pipe(buffer_sentences(max_wait=3, scheduler=timers)), disposed=204
    )
    assert observer.messages == []
    assert source.subscriptions == [ReactiveTest.subscribe(200, 204)]
    assert pending_timers(timers) == []


def pending_timers(scheduler: TestScheduler) -> list[Any]:
    """Scheduled items on ``scheduler`` that were not cancelled."""
    queue = scheduler._queue.items  # pyright: ignore[reportPrivateUsage]  # no public view
    return [item for item, _ in queue if not item.is_cancelled()]


@pytest.mark.parametrize(
    ("option", "value"), [("min_chars", -1), ("max_wait", 0), ("max_wait", -2)]
)
def test_options_are_checked(option: str, value: float) -> None:
    with pytest.raises(ConfigError):
        buffer_sentences(**{option: value})


def test_min_chars_joins_a_short_sentence_to_the_next() -> None:
    chunks = ["Hi. ", "Yes. ", "This is longer. ", "Ok."]
    assert run(chunks, min_chars=10) == ["Hi. Yes. This is longer. ", "Ok."]


# -- the cases the issue lists ---------------------------------------------------------------

CASES: dict[str, tuple[str, list[str]]] = {
    "abbreviations": (
        "Dr. Watson met Mrs. Hudson on Baker St. in London. They talked. "
        "Fruit, e.g. Apples, is good. Pitt, Briggs & Co. It closed.",
        [
            "Dr. Watson met Mrs. Hudson on Baker St. in London.",
            "They talked.",
            "Fruit, e.g. Apples, is good.",
            "Pitt, Briggs & Co.",
            "It closed.",
        ],
    ),
    "initials": (
        "J. K. Rowling wrote it. Ask Albert I. Jones. You and I. Did you?",
        ["J. K. Rowling wrote it.", "Ask Albert I. Jones.", "You and I.", "Did you?"],
    ),
    "acronyms": (
        "The U.S. Government met. I live in the U.S. How about you?",
        ["The U.S. Government met.", "I live in the U.S.", "How about you?"],
    ),
    "decimals and prices": (
        "Pi is 3.14 and it costs $4.99. It rose 2.5%. See p. 55. Version 2.0.1 is out.",
        ["Pi is 3.14 and it costs $4.99.", "It rose 2.5%.", "See p. 55.", "Version 2.0.1 is out."],
    ),
    "times": (
        "At 5 a.m. Mr. Smith left. He came back at 6 P.M. Mr. Smith then slept. At 9 p.m. ok.",
        [
            "At 5 a.m. Mr. Smith left.",
            "He came back at 6 P.M.",
            "Mr. Smith then slept.",
            "At 9 p.m. ok.",
        ],
    ),
    "ellipses": (
        "Wait... What happened? Well . . . nothing. I never meant that.... She left. Hm… no.",
        [
            "Wait...",
            "What happened?",
            "Well . . . nothing.",
            "I never meant that....",
            "She left.",
            "Hm… no.",
        ],
    ),
    "urls": (
        "See https://example.com/a.b?x=1. Then reload www.example.org now. Done.",
        ["See https://example.com/a.b?x=1.", "Then reload www.example.org now.", "Done."],
    ),
    "e-mail addresses": (
        "Write to john.doe@mail.example.com. He replies fast.",
        ["Write to john.doe@mail.example.com.", "He replies fast."],
    ),
    "closing quotes and brackets": (
        "He said \"Stop.\" Then he left. 'Why?' she asked. (See above.) Next. "
        "\u201cGo!\u201d He went.",
        [
            'He said "Stop."',
            "Then he left.",
            "'Why?' she asked.",
            "(See above.)",
            "Next.",
            "\u201cGo!\u201d",
            "He went.",
        ],
    ),
    "?! and friends": (
        "Really?! Yes!! Are you sure?? Yes. Hello!? Hi.",
        ["Really?!", "Yes!!", "Are you sure??", "Yes.", "Hello!?", "Hi."],
    ),
    "inverted marks": (
        "\u00bfC\u00f3mo est\u00e1s? \u00a1Muy bien! Gracias.",
        ["\u00bfC\u00f3mo est\u00e1s?", "\u00a1Muy bien!", "Gracias."],
    ),
    "cjk": (
        "\u4eca\u65e5\u306f\u6674\u308c\u3002\u660e\u65e5\u306f\u96e8\uff01\u672c\u5f53\uff1f"
        "\u306f\u3044\u3002\u4ed6\u8bf4\u201c\u4f60\u597d\u3002\u201d\u6211\u4eec\u8d70\u3002",
        [
            "\u4eca\u65e5\u306f\u6674\u308c\u3002",
            "\u660e\u65e5\u306f\u96e8\uff01",
            "\u672c\u5f53\uff1f",
            "\u306f\u3044\u3002",
            "\u4ed6\u8bf4\u201c\u4f60\u597d\u3002\u201d",
            "\u6211\u4eec\u8d70\u3002",
        ],
    ),
    "code fences": (
        "Run this:\n```python\nx = 1. y = 2. print(x)\n\nDone? No.\n```\nThen check. Done.",
        [
            "Run this:",
            "```python\nx = 1. y = 2. print(x)\n\nDone? No.\n```",
            "Then check.",
            "Done.",
        ],
    ),
    "markdown blocks": (
        "# Title\nSome text. More.\n\n- item one\n- item two\n\nSteps:\n1. Open it.\n2. Save it.",
        [
            "# Title",
            "Some text.",
            "More.",
            "- item one",
            "- item two",
            "Steps:",
            "1. Open it.",
            "2. Save it.",
        ],
    ),
    "inline lists": (
        "a. The first item b. The second item 1) One 2) Two",
        ["a. The first item", "b. The second item 1) One 2) Two"],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    text, expected = CASES[name]
    whole = run([text])
    assert stripped(whole) == expected
    assert run(list(text)) == whole  # one character at a time
    assert run(split_at(text, range(3, len(text), 3))) == whole


@pytest.mark.parametrize("max_wait", [float("nan"), float("inf"), float("-inf")])
def test_max_wait_must_be_finite(max_wait: float) -> None:
    with pytest.raises(ConfigError, match=rf"^max_wait .* got {max_wait!r}$"):
        buffer_sentences(max_wait=max_wait)


# -- a run of newlines (a model printing blank lines) ------------------------------------


@pytest.mark.timeout(60)  # the quadratic walk back over the run took minutes
def test_a_long_run_of_newlines_is_linear() -> None:

    text = "\n" * 100_000 + "It recovered. Then it wrote."
    start = time.perf_counter()
    out = run(split_at(text, range(4, len(text), 4)))
    assert time.perf_counter() - start < 10  # about 0.3 s; the quadratic walk took minutes
    assert "".join(out) == text
    assert stripped(out) == ["It recovered.", "Then it wrote."]


@settings(max_examples=50)
@given(st.data())
def test_newline_runs_between_sentences_are_chunking_invariant(data: st.DataObject) -> None:
    text = "\n\n \n" * 20 + "One. Two\n" + "\n" * 30 + "1. Three.\n\n\nFour"
    chunks = data.draw(chunkings(text))
    assert run(chunks) == run([text])
