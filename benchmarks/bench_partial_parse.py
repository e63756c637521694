"""Partial JSON parsing: kagura's incremental parse_model against re-parsing the buffer per chunk.

Documents of about 16, 33, 66 and 132 KB (a catalog: a list of product records with
strings, numbers, booleans, tags, a nested address and nested reviews; compact JSON as
``model_dump_json`` writes it) are streamed in 4-character chunks through a real
reactivex pipeline (``reactivex.from_iterable(chunks).pipe(...)``). Rows, in one run:

- kagura ``parse_model(Catalog, partial=True)``: by default a snapshot at most every 8
  characters per open container (here 24 to 40 characters), and with ``every=1`` (a
  snapshot on nearly every visible change);
- the re-parse approach of other libraries: per chunk, the whole buffer through
  ``TypeAdapter(Catalog).validate_json(buffer, experimental_allow_partial=True)``
  (``BaseModel.model_validate_json`` has no such argument), emitting each buffer that
  validates. Its time grows with the square of the size, so it is skipped for a size
  when the previous size predicts more than ``REPARSE_LIMIT_S``;
- kagura ``parse_model(Catalog)``: accumulate, then one validation at the end.

A second table times shapes that used to be quadratic, at doubling sizes, with the time
ratio per doubling (target: at most 2.3x, linear): one long string value (0.25 to 2 MB,
``parse_model(partial=True)``; every snapshot used to copy the whole string) and deep
nesting (10k to 40k brackets, ``partial=True`` and whole).

Times are the best of ``REPEAT`` runs (one run for the re-parse approach), wall clock.
``python -m benchmarks bench_partial_parse``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import reactivex
from pydantic import BaseModel, TypeAdapter, ValidationError
from reactivex import Observable
from reactivex import operators as rx

from benchmarks._report import print_table, save_json
from kagura.operators import parse_model

SIZES_KB = (16, 33, 66, 132)
CHUNK = 4
REPEAT = 5
REPARSE_LIMIT_S = 60.0
STRING_MB = (0.25, 0.5, 1.0, 2.0)
DEPTHS = (10_000, 20_000, 40_000)
DOUBLING_TARGET = 2.3  # time ratio per doubling of the input: linear, with some noise
SCALING_REPEAT = 3


class Address(BaseModel):
    street: str
    city: str
    postcode: str
    country: str


class Review(BaseModel):
    author: str
    rating: int
    comment: str


class Product(BaseModel):
    id: int
    name: str
    description: str
    price: float
    in_stock: bool
    tags: list[str]
    supplier: Address
    reviews: list[Review]


class Catalog(BaseModel):
    title: str
    products: list[Product]


_WORDS = [
    "alpha", "beta", "gamma", "delta", "quick", "brown", "fox", "jumps", "over", "the",
    "lazy", "dog", "café", "naïve", "東京", "streaming", "tokens", "parser", "model", "value",
]  # fmt: skip


def build_document(kb: int, seed: int = 1) -> str:
    """A catalog whose compact JSON is at least ``kb`` thousand characters long."""
    rng = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(n))

    products: list[Product] = []
    size = 40
    while size < kb * 1000:
        product = Product(
            id=len(products),
            name=words(2),
            description=words(rng.randint(4, 14)),
            price=round(rng.uniform(1, 500), 2),
            in_stock=rng.random() < 0.5,
            tags=[rng.choice(_WORDS) for _ in range(rng.randint(0, 4))],
            supplier=Address(
                street=f"{rng.randint(1, 999)} {words(2)}",
                city=rng.choice(_WORDS),
                postcode=str(rng.randint(10000, 99999)),
                country=rng.choice(_WORDS),
            ),
            reviews=[
                Review(author=words(1), rating=rng.randint(1, 5), comment=words(rng.randint(3, 9)))
                for _ in range(rng.randint(0, 2))
            ],
        )
        products.append(product)
        size += len(product.model_dump_json()) + 1
    return Catalog(title="catalog", products=products).model_dump_json()


def reparse_partial(model: type[BaseModel]) -> Callable[[Observable[str]], Observable[Any]]:
    """The re-parse approach as an operator: validate the whole buffer after each chunk."""
    adapter = TypeAdapter(model)

    def validate(buffer: str) -> Any:
        try:
            return adapter.validate_json(buffer, experimental_allow_partial=True)
        except ValidationError:
            return None  # a required field is still missing

    return lambda source: source.pipe(
        rx.scan(lambda buffer, chunk: buffer + chunk, ""),
        rx.map(validate),
        rx.filter(lambda value: value is not None),
    )


def split(text: str) -> list[str]:
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]


def timed(
    operator: Callable[[Observable[str]], Observable[Any]], chunks: list[str], repeat: int
) -> tuple[float, int, Any]:
    """Best wall time over ``repeat`` runs, the number of emissions, and the last one."""
    best = float("inf")
    out: list[Any] = []
    for _ in range(repeat):
        out = []
        start = time.perf_counter()
        reactivex.from_iterable(chunks).pipe(operator).subscribe(out.append)
        best = min(best, time.perf_counter() - start)
    return best, len(out), out[-1]


class Text(BaseModel):
    text: str


class Nested(BaseModel):
    x: list[Any]


def count_timed(
    operator: Callable[[Observable[str]], Observable[Any]], chunks: list[str]
) -> tuple[float, int]:
    """Best wall time over SCALING_REPEAT runs and the number of emissions (not kept)."""
    best = float("inf")
    count = 0
    for _ in range(SCALING_REPEAT):
        count = 0

        def on_next(_: Any) -> None:
            nonlocal count
            count += 1

        start = time.perf_counter()
        reactivex.from_iterable(chunks).pipe(operator).subscribe(on_next, lambda _: None)
        best = min(best, time.perf_counter() - start)
    return best, count


def doubling_rows() -> dict[str, list[dict[str, Any]]]:
    """A long string and deep nesting at doubling sizes: time and ratio per doubling."""
    rows: list[list[Any]] = []
    results: dict[str, list[dict[str, Any]]] = {}
    shapes: list[tuple[str, str, Callable[[Observable[str]], Observable[Any]], list[str]]] = []
    for mb in STRING_MB:
        doc = '{"text": "' + "x" * int(mb * 1e6) + '"}'
        shapes.append(("long string, partial", f"{mb} MB", parse_model(Text, partial=True), [doc]))
    for depth in DEPTHS:
        doc = '{"x": ' + "[" * depth + "]" * depth + "}"
        label = f"{depth // 1000}k brackets"
        shapes.append(("deep nesting, partial", label, parse_model(Nested, partial=True), [doc]))
        shapes.append(("deep nesting, whole", label, parse_model(Nested), [doc]))
    previous: dict[str, float] = {}
    for name, size, operator, (doc,) in shapes:
        seconds, emitted = count_timed(operator, split(doc))
        ratio = seconds / previous[name] if name in previous else None
        previous[name] = seconds
        rows.append(
            [
                name,
                size,
                f"{seconds * 1e3:.0f} ms ({emitted})",
                "-" if ratio is None else f"{ratio:.2f}x",
                f"<= {DOUBLING_TARGET}x",
            ]
        )
        results.setdefault(name, []).append(
            {"size": size, "chars": len(doc), "s": seconds, "emissions": emitted, "ratio": ratio}
        )
    print_table(
        f"Shapes that were quadratic, {CHUNK}-character chunks: time per doubling (emissions)",
        ["shape", "size", f"time (best of {SCALING_REPEAT})", "ratio", "target"],
        rows,
    )
    return results


def main() -> None:
    runs: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    reparse_estimate = 0.0
    timed(parse_model(Catalog, partial=True), split(build_document(2)), 1)  # builds validators
    for kb in SIZES_KB:
        text = build_document(kb)
        chunks = split(text)
        expected = Catalog.model_validate_json(text)
        partial_s, snapshots, last = timed(parse_model(Catalog, partial=True), chunks, REPEAT)
        assert last == expected
        every1_s, every1_snapshots, last = timed(
            parse_model(Catalog, partial=True, every=1), chunks, REPEAT
        )
        assert last == expected
        whole_s, _, last = timed(parse_model(Catalog), chunks, REPEAT)
        assert last == expected
        reparse_s: float | None = None
        reparse_emitted: int | None = None
        if reparse_estimate <= REPARSE_LIMIT_S:
            reparse_s, reparse_emitted, last = timed(reparse_partial(Catalog), chunks, 1)
            assert last == expected
            reparse_estimate = reparse_s * 4.2  # twice the size: a little over 4 times the time
        run = {
            "kb": kb,
            "chars": len(text),
            "bytes": len(text.encode()),
            "chunks": len(chunks),
            "kagura_partial_s": partial_s,
            "kagura_partial_snapshots": snapshots,
            "kagura_partial_every1_s": every1_s,
            "kagura_partial_every1_snapshots": every1_snapshots,
            "reparse_s": reparse_s,
            "reparse_emissions": reparse_emitted,
            "reparse_skipped_estimate_s": None if reparse_s is not None else reparse_estimate,
            "kagura_whole_s": whole_s,
        }
        runs.append(run)
        rows.append(
            [
                f"{len(text) / 1000:.0f} KB",
                len(chunks),
                f"{partial_s * 1e3:.1f} ms ({snapshots})",
                f"{every1_s * 1e3:.1f} ms ({every1_snapshots})",
                f"{reparse_s:.2f} s ({reparse_emitted})"
                if reparse_s is not None
                else f"skipped (~{reparse_estimate:.0f} s)",
                f"{reparse_s / partial_s:,.0f}x" if reparse_s is not None else "-",
                f"{whole_s * 1e3:.1f} ms",
            ]
        )
    print_table(
        f"Partial parsing, {CHUNK}-character chunks through reactivex (emissions in brackets)",
        [
            "document",
            "chunks",
            "kagura partial",
            "kagura partial, every=1",
            "re-parse per chunk",
            "re-parse / kagura",
            "kagura whole",
        ],
        rows,
    )
    by_kb = {r["kb"]: r for r in runs}
    scaling = {
        key: by_kb[132][key] / by_kb[66][key]
        for key in ("kagura_partial_s", "kagura_partial_every1_s", "kagura_whole_s", "reparse_s")
        if by_kb[132][key] is not None and by_kb[66][key] is not None
    }
    print("\n132 KB / 66 KB time: " + ", ".join(f"{k} {v:.2f}x" for k, v in scaling.items()))
    doubling = doubling_rows()
    save_json(
        "partial_parse",
        {
            "chunk_chars": CHUNK,
            "repeat": REPEAT,
            "runs": runs,
            "scaling_132_over_66": scaling,
            "doubling": {
                "target_ratio_per_doubling": DOUBLING_TARGET,
                "repeat": SCALING_REPEAT,
                "shapes": doubling,
            },
        },
    )


if __name__ == "__main__":
    main()
