"""SVG charts for docs/en/benchmarks.md, drawn from the saved results (benchmarks/results/*.json).

    python -m benchmarks.charts            # write docs/en/assets/bench/*.svg
    python -m benchmarks.charts --check    # exit 1 if a committed chart differs

Plain SVG written by hand (no plotting library): horizontal bars for one figure per
library, lines on logarithmic axes for a figure against a size. The output depends on
the JSON only (numbers rounded, no dates or random ids), so ``tests/test_bench_charts.py``
can check that the committed charts are what the committed results give.
``benchmarks.report_docs`` writes them with the page and embeds each chart whose results
exist (``available``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from benchmarks._report import RESULTS_DIR

ASSETS = Path(__file__).resolve().parents[1] / "docs" / "en" / "assets" / "bench"
COLORS = ("#1f6feb", "#d1242f", "#2da44e", "#bf8700", "#8250df", "#57606a", "#cf222e", "#0a7ea4")
KAGURA_COLOR = "#1f6feb"
OTHER_COLOR = "#8c959f"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'

Json = dict[str, Any]
Point = tuple[float, float]


def _f(value: float) -> str:
    """A coordinate: one decimal, no trailing zeros."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _label(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" {FONT} font-size="12">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="12" y="22" font-size="14" font-weight="600" fill="#1f2328">'
            f"{escape(title)}</text>",
            *body,
            "</svg>",
            "",
        ]
    )


def bar_chart(
    title: str, unit: str, bars: Sequence[tuple[str, float]], *, log: bool = False
) -> str:
    """Horizontal bars, one per (label, value); kagura's rows in blue, the others grey."""
    # Labels at about 7 px a character (12 px sans-serif): room for the longest.
    label_w = max(160, 7 * max((len(name) for name, _ in bars), default=0) + 16)
    plot_w, bar_h, gap, top = 380, 18, 8, 40
    height = top + len(bars) * (bar_h + gap) + 30
    width = label_w + plot_w + 90
    values = [v for _, v in bars if v > 0]
    high = max(values) if values else 1.0
    low = min(values) if values else 1.0
    if log:
        lo_exp = math.floor(math.log10(low))
        hi_exp = math.ceil(math.log10(high))
        if hi_exp == lo_exp:
            hi_exp += 1

        def scale(v: float) -> float:
            return (math.log10(v) - lo_exp) / (hi_exp - lo_exp) * plot_w

        ticks = [10.0**e for e in range(lo_exp, hi_exp + 1)]
    else:
        step = _nice_step(high / 4)
        top_value = step * math.ceil(high / step)

        def scale(v: float) -> float:
            return v / top_value * plot_w

        ticks = [step * i for i in range(round(top_value / step) + 1)]
    body: list[str] = []
    axis_y = top + len(bars) * (bar_h + gap)
    for t in ticks:
        x = label_w + scale(t)
        body.append(
            f'<line x1="{_f(x)}" y1="{top - 4}" x2="{_f(x)}" y2="{axis_y}" stroke="#d0d7de"/>'
        )
        body.append(
            f'<text x="{_f(x)}" y="{axis_y + 14}" text-anchor="middle" fill="#57606a">'
            f"{_label(t)}</text>"
        )
    body.append(
        f'<text x="{label_w + plot_w // 2}" y="{axis_y + 28}" text-anchor="middle" '
        f'fill="#57606a">{escape(unit)}{" (log scale)" if log else ""}</text>'
    )
    for i, (name, value) in enumerate(bars):
        y = top + i * (bar_h + gap)
        color = KAGURA_COLOR if name.startswith("kagura") else OTHER_COLOR
        w = max(scale(value), 1.0) if value > 0 else 0.0
        body.append(
            f'<text x="{label_w - 8}" y="{_f(y + bar_h * 0.72)}" text-anchor="end" '
            f'fill="#1f2328">{escape(name)}</text>'
        )
        body.append(
            f'<rect x="{label_w}" y="{y}" width="{_f(w)}" height="{bar_h}" fill="{color}"/>'
        )
        body.append(
            f'<text x="{_f(label_w + w + 6)}" y="{_f(y + bar_h * 0.72)}" fill="#1f2328">'
            f"{_label(value)}</text>"
        )
    return _svg(width, height, title, body)


def line_chart(title: str, x_unit: str, y_unit: str, series: Mapping[str, Sequence[Point]]) -> str:
    """Lines with markers on log-log axes, a legend on the right."""
    left, top, plot_w, plot_h, legend_w = 60, 40, 420, 260, 300
    width, height = left + plot_w + legend_w, top + plot_h + 50
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts if y > 0]
    x_lo, x_hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y_lo, y_hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    x_hi, y_hi = max(x_hi, x_lo + 1), max(y_hi, y_lo + 1)

    def px(x: float) -> float:
        return left + (math.log10(x) - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (math.log10(y) - y_lo) / (y_hi - y_lo) * plot_h

    body: list[str] = []
    for e in range(y_lo, y_hi + 1):
        y = py(10.0**e)
        body.append(
            f'<line x1="{left}" y1="{_f(y)}" x2="{left + plot_w}" y2="{_f(y)}" stroke="#d0d7de"/>'
        )
        body.append(
            f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" fill="#57606a">'
            f"{_label(10.0**e)}</text>"
        )
    for x_value in sorted(set(xs)):
        x = px(x_value)
        body.append(
            f'<line x1="{_f(x)}" y1="{top}" x2="{_f(x)}" y2="{top + plot_h}" stroke="#eaeef2"/>'
        )
        body.append(
            f'<text x="{_f(x)}" y="{top + plot_h + 16}" text-anchor="middle" fill="#57606a">'
            f"{_label(x_value)}</text>"
        )
    body.append(
        f'<text x="{left + plot_w // 2}" y="{top + plot_h + 34}" text-anchor="middle" '
        f'fill="#57606a">{escape(x_unit)} (log scale)</text>'
    )
    body.append(
        f'<text x="14" y="{top + plot_h // 2}" text-anchor="middle" fill="#57606a" '
        f'transform="rotate(-90 14 {top + plot_h // 2})">{escape(y_unit)} (log scale)</text>'
    )
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        shown = [(x, y) for x, y in pts if y > 0]
        if len(shown) > 1:
            path = " ".join(f"{_f(px(x))},{_f(py(y))}" for x, y in shown)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        body += [
            f'<circle cx="{_f(px(x))}" cy="{_f(py(y))}" r="3.5" fill="{color}"/>' for x, y in shown
        ]
        ly = top + 10 + i * 20
        body.append(
            f'<line x1="{left + plot_w + 16}" y1="{ly}" x2="{left + plot_w + 36}" y2="{ly}" '
            f'stroke="{color}" stroke-width="3"/>'
        )
        body.append(
            f'<text x="{left + plot_w + 42}" y="{ly + 4}" fill="#1f2328">{escape(name)}</text>'
        )
    return _svg(width, height, title, body)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


# --- the charts --------------------------------------------------------------------------


def peers_cpu(data: Mapping[str, Json]) -> str:
    bars = [(name, row["cpu_us_per_chunk"]) for name, row in data["peers"]["text"].items()]
    bars.sort(key=lambda b: b[1])
    return bar_chart("Client CPU per chunk, plain text (median)", "µs per chunk", bars)


def peers_first_chunk(data: Mapping[str, Json]) -> str:
    bars = [
        (name, row["first_chunk_fresh_process_s"] * 1e3)
        for name, row in data["peers"]["text"].items()
        if row.get("first_chunk_fresh_process_s") is not None
    ]
    bars.sort(key=lambda b: b[1])
    return bar_chart("A fresh process to its first chunk (median)", "ms", bars)


def peers_structured(data: Mapping[str, Json]) -> str:
    bars: list[tuple[str, float]] = []
    for kb, size in data["peers"]["structured"].items():
        for name, c in size["clients"].items():
            bars.append((f"{name}, ~{kb} KB", c["cpu_s_median"] * 1e3))
    return bar_chart(
        "Structured answer with partial objects: client CPU per document",
        "ms per document",
        bars,
        log=True,
    )


def partial_parse(data: Mapping[str, Json]) -> str:
    runs = data["partial_parse"]["runs"]
    columns = {
        "kagura parse_model(partial=True)": "kagura_partial_s",
        "kagura partial, every=1": "kagura_partial_every1_s",
        "re-parse the buffer per chunk": "reparse_s",
        "kagura parse_model (whole)": "kagura_whole_s",
    }
    series = {
        name: [(r["chars"] / 1000, r[key] * 1e3) for r in runs if r.get(key) is not None]
        for name, key in columns.items()
    }
    return line_chart("Partial parsing: time against document size", "KB", "ms", series)


def concurrency(data: Mapping[str, Json]) -> str:
    runs = [
        r for r in data["concurrency"]["runs"] if r["loop"] == "asyncio" and r["gc"] == "default"
    ]
    rate = max(
        (r["rate_per_s"] for r in runs), key=lambda v: sum(r["rate_per_s"] == v for r in runs)
    )
    series: dict[str, list[Point]] = {}
    for r in runs:
        if r["rate_per_s"] == rate:
            series.setdefault(r["client"], []).append((r["streams"], r["added_delay_p99_ms"]))
    return line_chart(
        f"p99 added delay against concurrent streams ({_label(rate)} chunks/s each, asyncio)",
        "concurrent streams",
        "ms",
        {name: sorted(series[name]) for name in sorted(series, key=lambda n: n != "kagura")},
    )


# name -> (the results it needs, the generator, the alt text)
CHARTS: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, Json]], str], str]] = {
    "peers_cpu": (("peers",), peers_cpu, "Client CPU per chunk by library"),
    "peers_first_chunk": (("peers",), peers_first_chunk, "Fresh process to first chunk"),
    "peers_structured": (("peers",), peers_structured, "CPU per structured document"),
    "partial_parse": (("partial_parse",), partial_parse, "Partial parse time against size"),
    "concurrency": (("concurrency",), concurrency, "p99 delay against concurrent streams"),
}


def available(data: Mapping[str, Json]) -> list[str]:
    return [name for name, (needs, _, _) in CHARTS.items() if all(n in data for n in needs)]


def render(data: Mapping[str, Json]) -> dict[str, str]:
    """Each chart's file name and SVG text."""
    return {f"{name}.svg": CHARTS[name][1](data) for name in available(data)}


def load(results: Path = RESULTS_DIR) -> dict[str, Json]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def write(assets: Path = ASSETS, results: Path = RESULTS_DIR) -> list[str]:
    """Write the charts; the names of those that changed."""
    assets.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for name, text in render(load(results)).items():
        path = assets / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    if "--check" in argv:
        stale = [
            name
            for name, text in render(load()).items()
            if not (ASSETS / name).exists() or (ASSETS / name).read_text(encoding="utf-8") != text
        ]
        if stale:
            print(f"out of date in {ASSETS}: {', '.join(stale)}: run python -m benchmarks.charts")
            return 1
        return 0
    changed = write()
    print(f"charts: {'wrote ' + ', '.join(changed) if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
