"""Write docs/en/benchmarks.md from the saved results (benchmarks/results/*.json).

    python -m benchmarks.report_docs            # rewrite the page
    python -m benchmarks.report_docs --check    # exit 1 if the page and the results differ

``make bench`` (``python -m benchmarks``) rewrites the page after the benchmarks ran, and
``tests/test_docs_benchmarks.py`` fails when the committed page is not what the committed
results give. The SVG charts it embeds (``benchmarks/charts.py``, docs/en/assets/bench/) are
written with it, from the same JSON. Every figure on the page comes from the JSON; the prose
around the tables says how each was measured, never what it was. The section between the
``summary`` markers is included in the streaming guide (pymdownx.snippets), so it holds no
relative links (nor charts).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import charts
from benchmarks._report import RESULTS_DIR

PAGE = Path(__file__).resolve().parents[1] / "docs" / "en" / "benchmarks.md"

# Names the benchmarks give their rows (see bench_transports.py, bench_coldstart.py).
DIRECT = "kagura call_llm_stream, direct"
HTTPX_FLOOR = "raw httpx + json.loads (floor)"
AIOHTTP_FLOOR = "raw aiohttp + json.loads (aiohttp floor)"
LITELLM = "litellm"
OPENAI_SDK = "openai SDK"

Json = dict[str, Any]
CHART_ALT = {name: alt for name, (_, _, alt) in charts.CHARTS.items()}


def num(value: float | None, unit: str = "") -> str:
    """Three significant figures, thousands separated; ``n/a`` for a missing value."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    if text in ("-0", "-0.0"):
        text = "0"
    return f"{text} {unit}".rstrip() if unit else text


def times(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets: Sequence[Json]) -> str:
    """The targets a benchmark judged itself against, as it saved them."""
    rows: list[list[str]] = []
    for t in targets:
        if "median" in t:  # bench_transports: judged on medians and on minimums
            measured = f"{t['median']} (minimums: {t['minimum']})"
            verdict = _verdict(bool(t["pass"]) and bool(t.get("pass_on_minimum", True)))
        elif "measured_ms" in t:
            measured, verdict = num(t["measured_ms"], "ms"), _verdict(bool(t["pass"]))
        else:
            measured, verdict = str(t["measured"]), _verdict(bool(t["pass"]))
        rows.append([t["target"], measured, verdict])
    return table(["target", "measured", ""], rows)


def _verdict(passed: bool) -> str:
    return "pass" if passed else "**fail**"


def chart(name: str) -> str:
    """An SVG chart from benchmarks/charts.py (written with the page, from the same JSON)."""
    return f"![{CHART_ALT[name]}](assets/bench/{name}.svg)"


def load(results: Path) -> dict[str, Json]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


# --- sections ------------------------------------------------------------------------------


def summary(data: Mapping[str, Json]) -> str:
    parts = ["## Summary { #summary }", ""]
    parts.append("<!-- --8<-- [start:summary] -->")
    transports = data.get("transports")
    if transports is not None:
        median = transports["median"]
        direct = median.get(DIRECT, {}).get("cpu_us_per_chunk")
        parts += [
            f"CPU per chunk of one stream of {transports['chunks']} chunks over loopback HTTP, "
            f"read to the end (median of {transports['rounds']} interleaved rounds, "
            f"{transports['machine']['date']}):",
            "",
            table(
                ["client", "CPU µs per chunk", "x kagura's direct transport"],
                [
                    [
                        name,
                        num(row["cpu_us_per_chunk"]),
                        times(row["cpu_us_per_chunk"] / direct) if direct else "n/a",
                    ]
                    for name, row in median.items()
                ],
            ),
            "",
        ]
    facts = list(_facts(data))
    if facts:
        parts += ["And in fresh processes and under load:", "", *(f"- {f}" for f in facts), ""]
    parts.append("<!-- --8<-- [end:summary] -->")
    return "\n".join(parts)


def _facts(data: Mapping[str, Json]) -> Iterable[str]:
    cold = data.get("coldstart", {}).get("cases", {})
    if "import kagura" in cold:
        text = f"`import kagura`: {num(cold['import kagura']['median_s'] * 1e3, 'ms')}"
        litellm_import = data.get("transports", {}).get("litellm_import_s")
        if litellm_import is not None:
            text += f"; `import litellm`: {num(litellm_import, 's')}, which kagura defers"
        yield text + "."
    firsts = [
        (label, cold[case]["median_s"])
        for label, case in (
            ("offline model", "offline kagura/echo, transport auto"),
            ("direct transport", "direct transport, loopback server"),
            ("through litellm", "litellm transport, loopback server"),
        )
        if case in cold
    ]
    if firsts:
        yield (
            "A fresh process to its first token: "
            + ", ".join(f"{num(s * 1e3, 'ms')} ({label})" for label, s in firsts)
            + "."
        )
    pipeline = data.get("pipeline", {}).get("summary", {}).get("burst 1")
    if pipeline is not None:
        added = (
            pipeline["pipeline"]["median_us"]
            - pipeline["async for loop (call_llm_stream)"]["median_us"]
        )
        yield (
            "A pipeline of `buffer_sentences`, `throttle` and `tee_log` adds "
            f"{num(added, 'µs')} of CPU per chunk to a bare `async for` over the events."
        )
    runs = [
        r
        for r in data.get("concurrency", {}).get("runs", [])
        if r["client"] == "kagura" and r["streams"] == 1000 and r["rate_per_s"] == 5
    ]
    if runs:
        delays = ", ".join(
            f"{num(r['added_delay_p99_ms'], 'ms')} ({r['loop']}, gc {r['gc']})" for r in runs
        )
        rss = [r["rss_per_stream_kib"] for r in runs]
        yield (
            f"1000 concurrent streams at 5 chunks/s each: p99 added delay {delays}; "
            f"{num(min(rss))} to {num(max(rss))} KiB of memory per stream."
        )


def machines(data: Mapping[str, Json]) -> str:
    rows: list[list[str]] = []
    for name, result in data.items():
        m = result["machine"]
        load = m.get("load_avg_1_5_15_min")
        libraries = m.get("libraries")
        rows.append(
            [
                f"`{name}.json`",
                m["date"],
                m["python"],
                m["platform"],
                str(m["cpus"]),
                " / ".join(map(str, load)) if load else "n/a",
                ", ".join(f"{k} {v}" for k, v in libraries.items()) if libraries else "n/a",
            ]
        )
    text = [
        "## The machine { #machine }",
        "",
        "Each file records where and when it was written. On a shared machine other "
        "processes only ever *add* CPU time to a sample: the load average (1, 5 and 15 "
        "minutes, when the run started) says how busy it was. Compare ratios, not "
        "microseconds, across dates.",
        "",
        table(["results", "date", "Python", "platform", "CPUs", "load average", "libraries"], rows),
    ]
    return "\n".join(text)


def transports_section(r: Json) -> str:
    rows = [
        [
            name,
            num(m["cpu_us_per_chunk"]),
            times(m["ratio_to_floor"]),
            times(m["ratio_to_aiohttp_floor"]),
            num(m["min_cpu_us_per_chunk"]),
            num(m["ttft_ms"]),
            num(r["first_call"][name]["ttft_ms"]) if name in r.get("first_call", {}) else "n/a",
        ]
        for name, m in r["median"].items()
    ]
    return "\n".join(
        [
            "## CPU per chunk and time to first token { #transports }",
            "",
            f"`bench_transports`: one answer of {r['chunks']} chunks over HTTP, read to the end. "
            "CPU is the client process's `time.process_time()` over the whole stream, request "
            f"included, per chunk; medians and minimums of {r['rounds']} interleaved rounds "
            "after a warm-up. Time to first token (request sent to first text chunk) is timed "
            "on a short answer from a second server process. The *floors* are bare loops: "
            "httpx's `aiter_lines` and aiohttp's `async for line in resp.content`, each with "
            "`json.loads`. The pipeline row is "
            f"{r.get('pipeline', 'a pipeline')}; its first token is its first sentence. "
            "*First call* is each client's first stream in the process.",
            "",
            table(
                [
                    "client",
                    "CPU µs/chunk (median)",
                    "x httpx floor",
                    "x aiohttp floor",
                    "CPU µs/chunk (min)",
                    "first token ms",
                    "first call: first token ms",
                ],
                rows,
            ),
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def pipeline_section(r: Json) -> str:
    rows: list[list[str]] = []
    for burst, clients in r["summary"].items():
        base_median = base_min = None
        for client, m in clients.items():
            if base_median is None:
                base_median, base_min = m["median_us"], m["min_us"]
                added_median = added_min = ""
            else:
                added_median = f"+{num(m['median_us'] - base_median)}"
                added_min = f"+{num(m['min_us'] - base_min)}"
            rows.append(
                [
                    burst,
                    client,
                    num(m["median_us"]),
                    added_median,
                    num(m["min_us"]),
                    added_min,
                ]
            )
    return "\n".join(
        [
            "## The pipeline without the network { #pipeline }",
            "",
            f"`bench_pipeline`: the same {r['chunks']} events to each consumer from an "
            "in-process source, which gives the event loop a turn before every event "
            "(*burst 1*: a model streaming at its own pace) or before every 16th (*burst 16*: "
            "a backlog read in big pieces). The *`async for` loop* is what `call_llm_stream` "
            "does with its transport's events; the *bridge* is `from_llm`'s part "
            "(`from_async_iterable` → `text_deltas` → `to_async_iterator`); the *pipeline* "
            "adds `buffer_sentences` → `throttle(0.05)` → `tee_log`. CPU µs per chunk, "
            f"medians and minimums of {r['rounds']} interleaved rounds; *added* is over the "
            "loop.",
            "",
            table(["burst", "client", "median", "added", "min", "added"], rows),
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def concurrency_section(r: Json) -> str:
    rows = [
        [
            x["client"],
            x["loop"],
            x["gc"],
            x["streams"],
            num(x["rate_per_s"]),
            x["chunks_per_stream"],
            num(x["added_delay_p50_ms"]),
            num(x["added_delay_p99_ms"]),
            num(x["steady_p99_ms"]),
            num(x["ttft_p99_ms"]),
            num(x["rss_per_stream_kib"]),
            num(x["cpu_us_per_chunk"]),
            times(x["ratio_to_aiohttp"]),
            f"{x['client_cpu_pct']:.0f} %",
            f"{x['server_cpu_pct']:.0f} %",
        ]
        for x in r["runs"]
    ]
    return "\n".join(
        [
            "## Concurrent streams { #concurrency }",
            "",
            f"`bench_concurrency`: N streams start evenly over {num(r['ramp_s'], 's')} against "
            "a paced SSE server in its own process (`benchmarks/_paced_server.py`), which "
            "writes each stream's chunks at a fixed rate on absolute deadlines. Each row is a "
            "fresh client process; kagura's rows are `call_llm_stream` on the direct "
            "transport. *loop* is the client's event loop (asyncio's own, or uvloop); *gc* its "
            "garbage-collector thresholds (CPython's default, or 700/10/100, as the "
            "[optimization guide](guides/performance-optimization.md#beyond-a-single-stream) "
            "suggests).",
            "",
            "- *added delay*: each gap between two chunks as the consumer sees them, minus the "
            "scripted interval, over every gap of every stream; *steady* keeps only the gaps "
            "while every stream is open (n/a when they never all were).",
            "- *RSS per stream*: the client's peak `VmRSS` during the run minus before it, "
            "divided by N.",
            "- *CPU per chunk*: the client's CPU over the run, connections included, per chunk; "
            "*client / server CPU*: each process's CPU time over the run's wall time.",
            "",
            chart("concurrency"),
            "",
            table(
                [
                    "client",
                    "loop",
                    "gc",
                    "streams",
                    "chunks/s each",
                    "chunks each",
                    "added delay p50 ms",
                    "p99 ms",
                    "steady p99 ms",
                    "first token p99 ms",
                    "RSS KiB/stream",
                    "CPU µs/chunk",
                    "x aiohttp",
                    "client CPU",
                    "server CPU",
                ],
                rows,
            ),
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def coldstart_section(r: Json) -> str:
    rows = [
        [
            case,
            num(c["median_s"] * 1e3),
            num(c["min_s"] * 1e3),
            num(c["process_total_s"] * 1e3),
            {True: "yes", False: "no", None: "n/a"}[c["litellm_imported"]],
        ]
        for case, c in r["cases"].items()
    ]
    return "\n".join(
        [
            "## Cold start { #cold-start }",
            "",
            "`bench_coldstart`: a new Python process, timed from just before it starts to the "
            "first byte it writes to stdout at its first token; bytecode and OS file caches "
            f"warm (one unmeasured run first). Medians of {r['rounds']} runs "
            f"({r.get('litellm_rounds', r['rounds'])} for litellm). `import kagura` is timed "
            "inside the process.",
            "",
            table(
                ["case", "first token ms (median)", "min ms", "process exit ms", "imports litellm"],
                rows,
            ),
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def sentences_section(r: Json) -> str:
    rows = [
        [
            x["name"],
            f"{x['bytes'] / 1e3:,.0f} KB",
            f"{x['sentences']:,}",
            num(x["mb_per_s"]),
            f"{x['golden_rules']}/48",
        ]
        for x in r["runs"]
    ]
    text = [
        "## Sentences { #sentences }",
        "",
        "`bench_sentences`: `buffer_sentences` against pySBD on a generated corpus "
        f"({r['timing']}); the operator gets {r['chunk_chars']}-character chunks through a real "
        "reactivex pipeline. The Golden Rules score is computed in the run: a rule passes when "
        "the sentences equal the expected ones exactly.",
        "",
        table(["segmenter", "text", "sentences", "MB/s", "Golden Rules"], rows),
    ]
    newlines = r.get("leading_newlines")
    if newlines is not None:
        text += [
            "",
            "A model printing blank lines: the time for a run of newlines, and its ratio to "
            "the previous size (linear time doubles; the target is at most "
            f"{newlines['target_ratio_per_doubling']}x per doubling; "
            f"{newlines['timing']}, {newlines['machine']['date']}).",
            "",
            doubling_table(
                newlines["runs"],
                newlines["target_ratio_per_doubling"],
                group=lambda x: str(x["name"]),
                size=lambda x: f"{x['newlines']:,} newlines",
                ratio=lambda x: x["ratio_per_doubling"],
            ),
        ]
    return "\n".join(text)


def partial_parse_section(r: Json) -> str:
    rows = [
        [
            f"{x['chars'] / 1000:.0f} KB",
            f"{x['chunks']:,}",
            f"{num(x['kagura_partial_s'] * 1e3, 'ms')} ({x['kagura_partial_snapshots']:,})",
            f"{num(x['kagura_partial_every1_s'] * 1e3, 'ms')} "
            f"({x['kagura_partial_every1_snapshots']:,})",
            f"{num(x['reparse_s'], 's')} ({x['reparse_emissions']:,})"
            if x["reparse_s"] is not None
            else f"skipped (about {num(x['reparse_skipped_estimate_s'], 's')})",
            num(x["kagura_whole_s"] * 1e3, "ms"),
        ]
        for x in r["runs"]
    ]
    text = [
        "## Partial parsing { #partial-parse }",
        "",
        "`bench_partial_parse`: JSON documents streamed in "
        f"{r['chunk_chars']}-character chunks through a real reactivex pipeline into "
        "`parse_model(Catalog, partial=True)` (by default, and with `every=1`), into the "
        "re-parse approach of other libraries (the whole buffer through pydantic's "
        "`experimental_allow_partial` per chunk; skipped where the previous size predicts too "
        "long a run), and into `parse_model(Catalog)` (one validation at the end). Wall "
        f"clock, best of {r['repeat']} (one run for the re-parse); emissions in brackets.",
        "",
        chart("partial_parse"),
        "",
        table(
            [
                "document",
                "chunks",
                "kagura partial",
                "kagura partial, every=1",
                "re-parse per chunk",
                "kagura whole",
            ],
            rows,
        ),
    ]
    doubling = r.get("doubling")
    if doubling is not None:
        shapes: list[Json] = [
            {**x, "shape": shape} for shape, xs in doubling["shapes"].items() for x in xs
        ]
        text += [
            "",
            "Shapes that used to take quadratic time, at doubling sizes: one long string value, "
            "and deep nesting (target: at most "
            f"{doubling['target_ratio_per_doubling']}x per doubling; best of "
            f"{doubling['repeat']}).",
            "",
            doubling_table(
                shapes,
                doubling["target_ratio_per_doubling"],
                group=lambda x: str(x["shape"]),
                size=lambda x: str(x["size"]),
                ratio=lambda x: x["ratio"],
            ),
        ]
    return "\n".join(text)


def hedging_section(r: Json) -> str:
    rows = [
        [
            "none" if x["hedge_after_s"] is None else num(x["hedge_after_s"], "s"),
            num(x["ttft_median_s"] * 1e3),
            num(x["ttft_p90_s"] * 1e3),
            num(x["ttft_p99_s"] * 1e3),
            num(x["ttft_max_s"] * 1e3),
            x["extra_requests"],
        ]
        for x in r["rows"]
    ]
    hedged = [x for x in r["rows"] if x["hedge_after_s"] is not None]
    target = [
        {
            "target": f"hedge_after={num(x['hedge_after_s'], 's')}: first token p99 ≤ "
            f"{num(r['target_p99_s'], 's')}",
            "measured": num(x["ttft_p99_s"], "s"),
            "pass": x["ttft_p99_s"] <= r["target_p99_s"],
        }
        for x in hedged
    ]
    return "\n".join(
        [
            "## Hedging { #hedging }",
            "",
            f"`bench_hedging`: {r['requests']} calls, {r['concurrency']} at a time, on the direct "
            f"transport to the loopback server, which answers one request in every "
            f"{r['late_every']} late by {num(r['late_s'], 's')}; once without hedging, once with "
            "`LLMConfig(hedge_after=...)`. Time to first token of each call, and the requests "
            "the hedges added beyond one per call.",
            "",
            table(
                ["hedge_after", "median ms", "p90 ms", "p99 ms", "max ms", "extra requests"],
                rows,
            ),
            "",
            targets_table(target),
        ]
    )


def protocols_section(r: Json) -> str:
    absent = "not installed"
    cpu_rows = [
        [
            name,
            num(m["cpu_us_per_chunk"]),
            num(m["min_cpu_us_per_chunk"]),
            times(m["ratio_to_openai_direct"]),
            times(m["litellm_ratio"]),
            num(m["first_call_cpu_us_per_chunk"]),
        ]
        for name, m in r["cpu"].items()
    ]
    cold_rows = [
        [
            name,
            f"`{r['models'][c['protocol']]}`",
            num(c["median_s"] * 1e3),
            num(c["min_s"] * 1e3),
            num(c["process_total_s"] * 1e3),
            {True: "yes", False: "no", None: "n/a"}[c["litellm_imported"]],
        ]
        for name, c in r["coldstart"].items()
    ]
    missing = [[name, absent, "", "", "", ""] for name in r.get("not_installed", [])]
    sdks = ", ".join(f"{name} {version or absent}" for name, version in r["sdks"].items())
    return "\n".join(
        [
            "## Anthropic, Gemini and OpenAI side by side { #protocols }",
            "",
            "`bench_protocols`: one loopback server answers the OpenAI, Anthropic Messages "
            "and Gemini protocols with the same script; each protocol is read by "
            "`call_llm_stream` on kagura's direct transport, by `call_llm_stream` with "
            '`transport="litellm"`, and by the provider\'s SDK, pointed at the server with '
            f"its base-URL setting ({sdks}). Models: "
            + ", ".join(f"`{m}`" for m in r["models"].values())
            + ".",
            "",
            f"CPU per chunk of one answer of {r['chunks']} chunks, read to the end, measured "
            "as in the [transport benchmark](#transports): medians and minimums of "
            f"{r['rounds']} interleaved rounds after a warm-up. *x OpenAI direct* is the "
            "row's median over kagura's direct OpenAI path; *litellm ÷ this* is litellm's "
            "median on the same protocol over the row's.",
            "",
            table(
                [
                    "protocol · client",
                    "CPU µs/chunk (median)",
                    "CPU µs/chunk (min)",
                    "x OpenAI direct",
                    "litellm ÷ this",
                    "first call: CPU µs/chunk",
                ],
                cpu_rows + missing,
            ),
            "",
            "A fresh process to its first token, measured as in the [cold start "
            f"benchmark](#cold-start): medians of {r['rounds']} runs "
            f"({r['litellm_rounds']} through litellm), kagura's direct OpenAI path for "
            "reference.",
            "",
            table(
                [
                    "protocol · client",
                    "model",
                    "first token ms (median)",
                    "min ms",
                    "process exit ms",
                    "imports litellm",
                ],
                cold_rows,
            ),
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def telemetry_section(r: Json) -> str:
    def signed(value: float) -> str:
        return f"+{num(value)}" if value >= 0 else num(value)

    baseline = "not instrumented"  # the row the others are compared with
    rows = [
        [
            length.removesuffix(" chunks"),
            client,
            num(m["median_us"]),
            "" if client == baseline else signed(m["added_us"]),
            num(m["min_us"]),
            "" if client == baseline else signed(m["added_us_per_call"]),
        ]
        for length, clients in r["summary"].items()
        for client, m in clients.items()
    ]
    versions = ", ".join(f"{name} {v}" for name, v in r["opentelemetry"].items())
    return "\n".join(
        [
            "## Telemetry { #telemetry }",
            "",
            "`bench_telemetry`: what [`kagura.telemetry`](telemetry.md) adds to a stream. "
            "Each client streams answers through `call_llm_stream` from the in-process "
            f"`kagura/replay` model (no network), {r['chunks_per_sample']:,} chunks per sample: "
            "*not instrumented* (`instrument()` never called), *no provider* (`instrument()` "
            "with OpenTelemetry's global providers unset) and *SDK provider* (`instrument()` "
            "with the SDK's `TracerProvider`, a `SimpleSpanProcessor` into an "
            "`InMemorySpanExporter`, and a `MeterProvider` with an `InMemoryMetricReader`: "
            f"every span and metric recorded; {versions}). *A/A* is a second not-instrumented "
            "client: the median of its rounds' absolute differences to the first is the "
            "noise (*A/A noise*) below which a cost is not measured here. CPU µs per chunk, "
            "medians of "
            f"{r['rounds']} interleaved rounds (the order rotating); *added* is the median of "
            "each round's difference to the same round's not-instrumented sample, *per call* "
            "that times the answer's chunks (a span is per call, never per chunk).",
            "",
            table(
                [
                    "answer chunks",
                    "client",
                    "CPU µs/chunk (median)",
                    "added",
                    "CPU µs/chunk (min)",
                    "added per call µs",
                ],
                rows,
            ),
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def peers_section(r: Json) -> str:
    versions = ", ".join(f"{name} {v or 'not installed'}" for name, v in r["versions"].items())
    text_rows = [
        [
            name,
            m["settings"].replace("|", "\\|"),
            num(m["cpu_us_per_chunk"]),
            num(m["min_cpu_us_per_chunk"]),
            times(m["ratio_to_kagura"]),
            num(m["first_chunk_fresh_process_s"] * 1e3)
            if m.get("first_chunk_fresh_process_s") is not None
            else "n/a",
        ]
        for name, m in r["text"].items()
    ]
    sizes = list(r["structured"])
    structured_rows: list[list[str]] = []
    for name, setting in r["structured_settings"].items():
        cells = [name, setting.replace("|", "\\|")]
        for kb in sizes:
            size = r["structured"][kb]
            if name in size["clients"]:
                c = size["clients"][name]
                runs = "1 run" if c["runs"] == 1 else f"median of {c['runs']}"
                cells.append(f"{num(c['cpu_s_median'], 's')} ({c['objects']:,}; {runs})")
            elif name in size["skipped"]:
                cells.append(f"not run (about {num(size['skipped'][name], 's')} predicted)")
            else:
                cells.append("n/a")
        structured_rows.append(cells)
    return "\n".join(
        [
            "## Side by side with the alternatives { #peers }",
            "",
            "`bench_peers`, in an environment of its own (`make bench-peers` makes "
            "`.venv-peers`: the peers pin versions kagura's environment does not allow): "
            f"{versions}. Every client reads from the loopback server in another process, "
            "in interleaved rounds after a warm-up, and each one's output is checked: the "
            "text joined equals the text served; the last partial object, validated, equals "
            "the document's `Catalog`.",
            "",
            f"Plain text: one answer of {r['chunks']:,} chunks read to the end, the client's "
            f"CPU per chunk as in the [transport benchmark](#transports) (medians and minimums "
            f"of {r['rounds']} rounds); a fresh process to its first chunk as in the [cold "
            f"start benchmark](#cold-start) (median of {r['cold_rounds']}).",
            "",
            chart("peers_cpu"),
            "",
            chart("peers_first_chunk"),
            "",
            table(
                [
                    "client",
                    "settings",
                    "CPU µs/chunk (median)",
                    "CPU µs/chunk (min)",
                    "x kagura",
                    "fresh process to first chunk ms",
                ],
                text_rows,
            ),
            "",
            "A structured answer with partial objects: the catalog of the [partial parsing "
            "benchmark](#partial-parse) served as the answer's text in "
            f"{r['doc_chunk_chars']}-character chunks; the client process's CPU per document "
            f"(median of up to {r['structured_rounds']} runs), partial objects seen in "
            f"brackets. A client whose smaller document predicts more than "
            f"{num(r['slow_limit_s'], 's')} at the larger size runs at the smaller size only, "
            "and one that takes more than a third of that per document runs once. The openai "
            "SDK and litellm have no partial objects of their own.",
            "",
            chart("peers_structured"),
            "",
            table(
                ["client", "settings", *(f"about {kb} KB" for kb in sizes)],
                structured_rows,
            ),
        ]
    )


def doubling_table(
    runs: Sequence[Json],
    target: float,
    *,
    group: Callable[[Json], str],
    size: Callable[[Json], str],
    ratio: Callable[[Json], float | None],
) -> str:
    rows: list[list[str]] = []
    for x in sorted(runs, key=group):
        r = ratio(x)
        rows.append(
            [
                group(x),
                size(x),
                num(x["s"] * 1e3, "ms"),
                "" if r is None else times(r),
                "" if r is None else _verdict(r <= target),
            ]
        )
    return table(["shape", "size", "time", "x the previous size", ""], rows)


SECTIONS: dict[str, Callable[[Json], str]] = {
    "transports": transports_section,
    "pipeline": pipeline_section,
    "concurrency": concurrency_section,
    "coldstart": coldstart_section,
    "sentences": sentences_section,
    "partial_parse": partial_parse_section,
    "hedging": hedging_section,
    "protocols": protocols_section,
    "telemetry": telemetry_section,
    "peers": peers_section,
}


def render(results: Path = RESULTS_DIR) -> str:
    """The whole page, from the JSON files in ``results``."""
    data = load(results)
    parts = [
        "<!-- Generated by `python -m benchmarks.report_docs` from benchmarks/results/*.json:",
        "     edit benchmarks/report_docs.py, not this page. -->",
        "# Benchmarks",
        "",
        "What kagura costs, measured side by side with the libraries it stands on and with the "
        "other ways to do the same work. Every figure on this page is read from "
        "`benchmarks/results/*.json`, which `make bench` writes (and then rewrites this page); "
        "a test fails when the two disagree. The figures are from one shared machine: rerun "
        "them on yours before you rely on them.",
        "",
        "```sh",
        "make bench                                           # every benchmark, then this page",
        ".venv/bin/python -m benchmarks bench_transports      # one of them",
        ".venv/bin/python -m benchmarks.report_docs           # this page from the saved results",
        "```",
        "",
        "All traffic stays on 127.0.0.1, and the servers run in processes of their own, so "
        "their work is not charged to the client measured. Ratios come from interleaved rounds "
        "(A B C … A B C …) after a warm-up, never from timed unit tests.",
        "",
        summary(data),
        "",
        machines(data),
    ]
    for name, section in SECTIONS.items():
        if name in data:
            parts += ["", section(data[name])]
    for name in data.keys() - SECTIONS.keys():  # a new benchmark: give it a section above
        parts += ["", f"`{name}.json` has no section yet (benchmarks/report_docs.py)."]
    return "\n".join(parts) + "\n"


def write(page: Path = PAGE, results: Path = RESULTS_DIR) -> bool:
    """Rewrite the page; whether it changed."""
    text = render(results)
    if page.exists() and page.read_text(encoding="utf-8") == text:
        return False
    page.write_text(text, encoding="utf-8")
    return True


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    if "--check" in argv:
        if PAGE.read_text(encoding="utf-8") != render():
            print(f"{PAGE} is out of date: run python -m benchmarks.report_docs")
            return 1
        return charts.main(["--check"])
    print(f"{'wrote' if write() else 'unchanged:'} {PAGE}")
    charts.main([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
