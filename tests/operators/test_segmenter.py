"""The pure incremental segmenter under buffer_sentences: timing of decisions, flush, cost."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kagura.operators._rules_en import ENGLISH
from kagura.operators._segmenter import SentenceRules, SentenceSegmenter, _Stage, _Wake, segment
from kagura.testing.strategies import text_and_chunkings


def steps(chunks: list[str]) -> list[list[str]]:
    """What each push returned, then what close returned."""
    seg = SentenceSegmenter()
    return [seg.push(c) for c in chunks] + [seg.close()]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # A plain word ends a sentence once the next word is whole.
        (["Hello world. ", "Nex", "t one"], [[], [], ["Hello world. "], ["Next one"]]),
        (["Hello world.", " Next ", "one"], [[], ["Hello world. "], [], ["Next one"]]),
        # An abbreviation needs that word too: "U.S. Government" or "U.S. How".
        (["In the U.S. ", "How", " so?"], [[], [], ["In the U.S. "], ["How so?"]]),
        (["In the U.S. ", "Gov", "ernment. "], [[], [], [], ["In the U.S. Government. "]]),
        # CJK terminators need no space: the next character decides.
        (["\u4f60\u597d\u3002", "\u6211"], [[], ["\u4f60\u597d\u3002"], ["\u6211"]]),
        # A bullet starts an item at once.
        (["Fruit: ", "\u2022", " apple"], [[], ["Fruit: "], [], ["\u2022 apple"]]),
        # Nothing inside a code fence, the closed block at once.
        (["```\nA. B. C.\n", "```\n", "Ok"], [[], [], ["```\nA. B. C.\n```\n"], ["Ok"]]),
    ],
)
def test_a_sentence_is_emitted_as_soon_as_its_end_is_certain(
    chunks: list[str], expected: list[list[str]]
) -> None:
    assert steps(chunks) == expected


def test_the_wait_for_a_word_goes_through_named_stages() -> None:
    # After "U.S." the segmenter waits for the token to end, then for the next word to
    # start, then for it to end; only then does it scan ("Government" or "How"?).
    seg = SentenceSegmenter()
    states: list[tuple[_Wake, _Stage | None]] = []
    for chunk in ["In the U.", "S.", " ", "Gov", "ernment ", "is big."]:
        seg.push(chunk)
        states.append((seg._wake, seg._stage if seg._wake is _Wake.WORD else None))
    assert states == [
        (_Wake.WORD, _Stage.TOKEN),
        (_Wake.WORD, _Stage.TOKEN),
        (_Wake.WORD, _Stage.GAP),
        (_Wake.WORD, _Stage.NEXT),
        (_Wake.IDLE, None),  # decided: no boundary, and nothing to wait for
        (_Wake.WORD, _Stage.TOKEN),
    ]
    assert seg.close() == ["In the U.S. Government is big."]


def test_a_code_fence_waits_for_a_backtick() -> None:
    seg = SentenceSegmenter()
    assert seg.push("```\nA. B. C. ") == []
    assert (seg._wake, seg._wake_on.pattern) == (_Wake.CHAR, "`")
    assert seg.push("D. E. ") == []  # no backtick: stored, not scanned
    assert seg.push("\n```\nOk") == ["```\nA. B. C. D. E. \n```\n"]


def test_english_is_the_default_language() -> None:
    text = "Dr. Lee left at 6 p.m. The rest stayed. See p. 5 of the report."
    assert segment(text) == segment(text, rules=ENGLISH)
    assert segment(text) == [
        "Dr. Lee left at 6 p.m. ",
        "The rest stayed. ",
        "See p. 5 of the report.",
    ]


# A second language is a rules object, not a fork of the engine: a small German here.
GERMAN = SentenceRules(
    titles=frozenset({"dr", "hr", "fr", "prof"}),
    before_numbers=frozenset({"nr", "s", "bd"}),
    never_final=frozenset({"z.b", "bzw", "usw", "ca", "vgl"}),
    times=frozenset(),
    starters=frozenset({"Der", "Die", "Das", "Ich", "Wir", "Er", "Sie", "Es"}),
    time_lead=ENGLISH.time_lead,  # unused: no times of day with a period
    word=re.compile("[A-Za-zÄÖÜäöüß]+"),
    initialism=re.compile(r"[A-Za-z](?:\.[A-Za-z])*"),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I met Dr. Who today.", ["I met Dr. Who today."]),
        ("Ask Mrs. What at noon. She knows.", ["Ask Mrs. What at noon. ", "She knows."]),
        ("Prof. Then spoke. We listened.", ["Prof. Then spoke. ", "We listened."]),
        # A title that also ends addresses still splits before a sentence opening.
        ("He lives on Main St. Then he left.", ["He lives on Main St. ", "Then he left."]),
    ],
)
def test_a_capitalised_word_after_a_personal_title_is_a_name(
    text: str, expected: list[str]
) -> None:
    assert segment(text) == expected
    segmenter = SentenceSegmenter()
    pieces = [s for ch in text for s in segmenter.push(ch)]
    assert [*pieces, *segmenter.close()] == expected


def test_a_second_language_is_a_rules_module_not_a_fork() -> None:
    text = "Hr. Müller kommt z.B. Montag. Siehe Nr. 5 im Heft. Er geht."
    assert segment(text, rules=GERMAN) == [
        "Hr. Müller kommt z.B. Montag. ",
        "Siehe Nr. 5 im Heft. ",
        "Er geht.",
    ]
    # The same text under English rules splits after "Hr." (not an English title).
    assert segment(text)[0] == "Hr. "
    seg = SentenceSegmenter(rules=GERMAN)
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert [s for c in chunks for s in seg.push(c)] + seg.close() == segment(text, rules=GERMAN)


def test_the_english_rules_are_data() -> None:
    more = dataclasses.replace(ENGLISH, titles=ENGLISH.titles | {"insp"})
    assert segment("Ask Insp. Morse now.") == ["Ask Insp. ", "Morse now."]
    assert segment("Ask Insp. Morse now.", rules=more) == ["Ask Insp. Morse now."]


def test_flush_hands_over_the_held_text_and_boundaries_stay_where_they_were() -> None:
    seg = SentenceSegmenter()
    assert seg.push("Hello. Wor") == []
    assert seg.holding
    assert seg.pending == "Hello. Wor"
    assert seg.flush() == "Hello. Wor"
    assert not seg.holding
    assert seg.push("ld. Next one") == ["ld. "]
    assert seg.close() == ["Next one"]


def test_min_chars_holds_short_sentences_until_close() -> None:
    seg = SentenceSegmenter(min_chars=12)
    assert seg.push("Yes. No. Maybe so. ") == []
    assert seg.push("Fine ") == ["Yes. No. Maybe so. "]
    assert seg.close() == ["Fine "]


def test_text_after_a_flush_that_is_only_space_joins_the_next_sentence() -> None:
    seg = SentenceSegmenter()
    seg.push("Hi.")
    assert seg.flush() == "Hi."
    assert seg.push("  There it is. Ok ") == ["  There it is. "]
    assert seg.close() == ["Ok "]


@settings(max_examples=150)
@given(text_and_chunkings())
def test_lossless_and_chunking_invariant(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    seg = SentenceSegmenter()
    out = [s for c in chunks for s in seg.push(c)] + seg.close()
    assert out == segment(text)
    assert "".join(out) == text


@settings(max_examples=100)
@given(text_and_chunkings(), st.sets(st.integers(0, 40)), st.integers(0, 8))
def test_flushes_anywhere_lose_nothing(
    case: tuple[str, list[str]], flush_at: set[int], min_chars: int
) -> None:
    text, chunks = case
    seg = SentenceSegmenter(min_chars=min_chars)
    out: list[str] = []
    for i, chunk in enumerate(chunks):
        out += seg.push(chunk)
        if i in flush_at:
            out.append(seg.flush())
    assert "".join(out + seg.close()) == text


@settings(max_examples=50)
@given(st.text(min_size=1), st.integers(1, 5))
def test_a_segmenter_can_be_reused_after_close(text: str, size: int) -> None:
    seg = SentenceSegmenter()
    for _ in range(2):
        out = [s for i in range(0, len(text), size) for s in seg.push(text[i : i + size])]
        assert out + seg.close() == segment(text)


@pytest.mark.parametrize(
    "text",
    [
        "x." * 100_000,  # one 200 KB token full of periods
        "```\n" + "a. b. c? d! " * 20_000,  # an unclosed code fence
        "word " * 40_000,  # no terminator at all
        "\u4e00\u3002" * 100_000,  # CJK, no spaces
    ],
    ids=["long-token", "open-fence", "no-terminator", "cjk"],
)
def test_cost_is_linear_in_4_char_chunks(text: str) -> None:
    seg = SentenceSegmenter()
    start = time.process_time()
    out = [s for i in range(0, len(text), 4) for s in seg.push(text[i : i + 4])] + seg.close()
    elapsed = time.process_time() - start
    assert "".join(out) == text
    assert elapsed < 5, f"{elapsed:.1f} s for {len(text):,} characters: not linear"
