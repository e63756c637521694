"""buffer_sentences against pySBD: throughput on a ~1 MB corpus and the 48 Golden Rules.

Rows, in one run on the same corpus:

- kagura's operator fed 4-character chunks through a real reactivex pipeline;
- kagura's segmenter on the whole text at once;
- pySBD (``clean=False``) on a whole text, and paragraph by paragraph. Its time grows
  faster than linearly with the length of one text, so it gets a 64 KB prefix as
  one text, and the first 256 KB paragraph by paragraph (as it is usually run).

A second table times a degenerate stream, a model printing blank lines: 5k, 10k, 20k
and 40k newlines, through the operator (4-character chunks) and the segmenter (whole
text), with the time ratio per doubling of the size (target: at most 2.3x, linear).

The Golden Rules score of each is computed here, not quoted: a rule passes when
the stripped sentences equal the expected ones exactly (the operator's score is
under 4-character chunks). The corpus is built from the rules' texts and
generated prose (abbreviations, numbers, quotes, URLs, lists); nothing is downloaded.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reactivex
from reactivex import operators as rx

from benchmarks._report import print_table, save_json
from kagura.operators import buffer_sentences
from kagura.operators._segmenter import segment

GOLDEN_RULES = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_rules_en.json"
CORPUS_CHARS = 1_000_000
CHUNK = 4
NEWLINES = (5_000, 10_000, 20_000, 40_000)
DOUBLING_TARGET = 2.3  # time ratio per doubling of the input: linear, with some noise

_SUBJECTS = ["The model", "Mr. Smith", "Dr. Lee", "The U.S. team", "She", "Our parser", "It"]
_VERBS = ["streams", "returns", "writes", "parses", "sends", "reads", "checks"]
_OBJECTS = [
    "the tokens",
    "3.5 million rows",
    "a reply to jane.doe@example.com",
    "the page at https://example.com/docs/v2.1/index.html",
    "e.g. a list of names",
    "about $12.50 worth of credits",
    "the file before 5 p.m. on Friday",
    '"a quoted answer"',
    "(a bracketed aside)",
    "what the user asked",
]
_ENDS = [".", ".", ".", ".", "?", "!", "...", '."', ".)"]


def build_corpus(rules: list[dict[str, Any]], size: int = CORPUS_CHARS, seed: int = 7) -> str:
    """Paragraphs of generated prose, with a Golden Rules text now and then."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < size:
        sentences: list[str] = []
        for _ in range(rng.randint(3, 8)):
            if rng.random() < 0.15:
                sentences.append(rng.choice(rules)["text"])
                continue
            words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
            if rng.random() < 0.4:
                words += ["and", rng.choice(_VERBS), rng.choice(_OBJECTS)]
            sentences.append(" ".join(words) + rng.choice(_ENDS))
        paragraph = " ".join(sentences)
        if rng.random() < 0.1:
            paragraph = "1. First step here.\n2. Second step here.\n\n" + paragraph
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def via_operator(text: str) -> list[str]:
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    out: list[str] = reactivex.from_iterable(chunks).pipe(buffer_sentences(), rx.to_list()).run()
    return out


def golden_score(split: Callable[[str], list[str]], rules: list[dict[str, Any]]) -> int:
    return sum([s.strip() for s in split(r["text"])] == r["sentences"] for r in rules)


def throughput(split: Callable[[str], list[str]], text: str, repeat: int) -> tuple[float, int]:
    """MB/s of the best of ``repeat`` runs (the least disturbed by other processes)."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = len(split(text))
        best = min(best, time.perf_counter() - start)
    return len(text.encode()) / 1e6 / best, count


def best_time(split: Callable[[str], list[str]], text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        split(text)
        best = min(best, time.perf_counter() - start)
    return best


def newline_rows() -> list[dict[str, Any]]:
    """Leading newlines at doubling sizes: each row's time and its ratio to the previous."""
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    previous: dict[str, float] = {}
    for count in NEWLINES:
        text = "\n" * count + "Then the model recovered. It wrote a sentence."
        for name, split in (("operator, 4-char chunks", via_operator), ("segmenter", segment)):
            seconds = best_time(split, text)
            ratio = seconds / previous[name] if name in previous else None
            previous[name] = seconds
            rows.append(
                [
                    name,
                    f"{count:,}",
                    f"{seconds * 1e3:.1f} ms",
                    "-" if ratio is None else f"{ratio:.2f}x",
                    f"<= {DOUBLING_TARGET}x",
                ]
            )
            results.append(
                {"name": name, "newlines": count, "s": seconds, "ratio_per_doubling": ratio}
            )
    print_table(
        "Leading newlines (a model printing blank lines): time per doubling",
        ["segmenter", "newlines", "time (best of 3)", "ratio", "target"],
        rows,
    )
    return results


def main() -> None:
    import pysbd  # the bench extra; never a kagura dependency

    rules: list[dict[str, Any]] = json.loads(GOLDEN_RULES.read_text())
    corpus = build_corpus(rules)
    pysbd_seg = pysbd.Segmenter(language="en", clean=False)

    def pysbd_whole(text: str) -> list[str]:
        return [str(s) for s in pysbd_seg.segment(text)]

    def pysbd_paragraphs(text: str) -> list[str]:
        return [s for p in text.split("\n\n") for s in pysbd_whole(p)]

    whole_prefix = corpus[: corpus.rfind(" ", 0, 64_000)]
    para_prefix = corpus[: corpus.rfind("\n\n", 0, 256_000)]
    Split = Callable[[str], list[str]]
    runs: list[tuple[str, Split, str, Split, int]] = [
        (
            "kagura buffer_sentences, 4-char chunks via reactivex",
            via_operator,
            corpus,
            via_operator,
            5,
        ),
        ("kagura segmenter, whole text", segment, corpus, segment, 5),
        ("pySBD, whole text", pysbd_whole, whole_prefix, pysbd_whole, 1),
        ("pySBD, paragraph by paragraph", pysbd_paragraphs, para_prefix, pysbd_whole, 1),
    ]
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    for name, split, text, split_rule, repeat in runs:
        mb_s, count = throughput(split, text, repeat)
        score = golden_score(split_rule, rules)
        rows.append([name, f"{len(text.encode()) / 1e3:,.0f} KB", count, mb_s, f"{score}/48"])
        results.append(
            {
                "name": name,
                "bytes": len(text.encode()),
                "sentences": count,
                "mb_per_s": mb_s,
                "golden_rules": score,
            }
        )
    print_table(
        "Sentence segmentation: throughput and Golden Rules",
        ["segmenter", "text", "sentences", "MB/s", "Golden Rules"],
        rows,
    )
    newline_runs = newline_rows()
    save_json(
        "sentences",
        {
            "chunk_chars": CHUNK,
            "timing": "best of 5 (kagura), 1 (pySBD)",
            "runs": results,
            "leading_newlines": {
                "target_ratio_per_doubling": DOUBLING_TARGET,
                "timing": "best of 3",
                "runs": newline_runs,
            },
        },
    )


if __name__ == "__main__":
    main()
