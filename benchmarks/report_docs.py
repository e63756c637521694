"""Write docs/en/benchmarks.md and docs/en/scaling.md from benchmarks/results/*.json.

    python -m benchmarks.report_docs            # rewrite the pages
    python -m benchmarks.report_docs --check    # exit 1 if a page and the results differ

docs/en/scaling.md is the relay's page (``relay.json``, from ``bench_relay``); benchmarks.md
gives it a short section that links there.

``make bench`` (``python -m benchmarks``) rewrites the page after the benchmarks ran, and
``tests/test_docs_facts.py`` fails when a committed page is not what the committed
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
SCALING_PAGE = PAGE.parent / "scaling.md"  # the relay's figures (relay.json)

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


def relay_section(r: Json) -> str:
    """benchmarks.md's short view of ``relay.json``: the targets; the rest is on scaling.md."""
    return "\n".join(
        [
            "## The relay through Redis { #relay }",
            "",
            "`bench_relay`: the delay `RedisRelay` adds to each chunk between a producer "
            "process and a reader process, beside the same chunks sent directly over loopback "
            "TCP; what it costs both processes and the Redis server; one stream read by many "
            "readers; and a reader joining late, beside `resumable-stream`. The tables, how "
            "they were measured and what to do with them are on [Scaling out](scaling.md).",
            "",
            targets_table(r.get("targets", [])),
        ]
    )


# --- docs/en/scaling.md (relay.json) ---------------------------------------------------------


def _relay_runs(r: Json) -> Iterable[tuple[Json, Json]]:
    """(scenario, run) for every run of every scenario, in order."""
    for scenario in r["delay"]:
        for run in scenario["runs"]:
            yield scenario, run


def _is_relay(run: Json) -> bool:
    return run["mode"] == "relay"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else num(value)


def _pct(value: float) -> str:
    return f"{value:.0f} %"


def _delivered(scenario: Json, run: Json) -> str:
    expected = run["chunks_scheduled"] * scenario["readers_per_stream"]
    short = sum(not x["complete"] for x in run.get("rounds", ()))
    if run["complete"] and short:
        return f"all {expected:,}; **{short} other round(s) missed chunks**"
    if run["complete"]:
        return f"all {expected:,}"
    failed = f"; {run['reads_failed']:,} reads failed" if run["reads_failed"] else ""
    return f"**{run['chunks_received']:,} of {expected:,}**{failed}"


def _default_relay(scenario: Json) -> Json:
    return next(run for run in scenario["runs"] if _is_relay(run) and not run["settings"])


def _scripts(commands: Mapping[str, int]) -> int:
    """Calls of the relay's Lua scripts and of the commands they run (lease renewals, ends)."""
    return sum(commands.get(name, 0) for name in ("evalsha", "eval", "get", "pexpire", "pttl",
                                                    "del", "xrevrange", "script|load"))  # fmt: skip


def _gc_pauses(run: Json) -> str:
    """``"<producer> / <reader>"`` ms, or empty for a run measured before they were."""
    if "producer_gc_max_ms" not in run:
        return ""
    return f"{num(run['producer_gc_max_ms'])} / {num(run['reader_gc_max_ms'])}"


def scaling_summary(r: Json) -> str:
    lines: list[str] = []
    for scenario in r["delay"]:
        relay = _default_relay(scenario)
        direct = next(run for run in scenario["runs"] if not _is_relay(run))
        delivered = "" if relay["complete"] else (
            f"; **{relay['reads_failed']:,} of {scenario['streams']:,} streams ended early** "
            "(`ProducerLost`)"
        )  # fmt: skip
        lines.append(
            f"- {scenario['name']}: delay p50 {num(relay['p50_ms'], 'ms')} and p99 "
            f"{num(relay['p99_ms'], 'ms')} through the relay, {num(direct['p50_ms'], 'ms')} "
            f"and {num(direct['p99_ms'], 'ms')} direct{delivered}."
        )
    conns = sorted(
        {
            (run["redis_connections"]["producer"], run["redis_connections"]["reader"])
            for _, run in _relay_runs(r)
            if _is_relay(run) and not run["settings"]
        }
    )
    producer = sorted({c[0] for c in conns})
    reader = sorted({c[1] for c in conns})
    lines.append(
        "- Redis connections with the default settings, however many streams and readers: "
        f"{_span(producer)} for the producing process, {_span(reader)} for the reading one."
    )
    joins = r["resume"]["joins"]
    for name, cases in joins.items():
        start = cases.get("from the start")
        if start is not None:
            lines.append(
                f"- {name}: a reader joining after {r['resume']['backlog_chunks']:,} chunks had "
                f"them all in {num(start['backlog_ms'], 'ms')} ({num(start['redis_commands'])} "
                "Redis commands)."
            )
    return "\n".join(
        [
            "## Summary { #summary }",
            "",
            *lines,
            "",
            targets_table(r.get("targets", [])),
        ]
    )


def _span(values: Sequence[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"


def scaling_method(r: Json) -> str:
    return "\n".join(
        [
            "## How it was measured { #method }",
            "",
            "`bench_relay` starts its own `redis-server` "
            f"({r['redis_server']}; a loopback port, no persistence) and runs each scenario "
            f"for {num(r['duration_s'], 's')} in two fresh Python processes on asyncio's own "
            "loop: a *producer* whose sources write chunks on absolute deadlines (the streams' "
            "phases spread evenly over one interval), and a *reader* that reads every stream. "
            f"Each chunk is {r['chunk_chars']} characters that start with the "
            "`CLOCK_MONOTONIC` time at which its source yielded it (one clock for every process "
            "of the machine); its *delay* is the moment it reaches the reader's loop body minus "
            "that time, over every chunk of every stream.",
            "",
            "- *direct*: no relay. Each reader has a loopback TCP connection to the producer, "
            "which writes each chunk to it as an SSE frame: what a web server does for its own "
            "streams, the floor the relay is compared with.",
            "- *relay*: the producer calls `relay.publish` for every stream and the reader "
            "`relay.read`, each with one `RedisRelay` "
            + ", ".join(f"(`{k}={v}`" if i == 0 else f"`{k}={v}`"
                        for i, (k, v) in enumerate(r["relay_settings"].items()))
            + " unless the row names another setting). *Added* is the relay's percentile "
            "minus the direct run's.",
            "- Rounds: the issue's two scenarios run three times, direct and relay "
            "alternating (on a shared machine one run's p99 moves by several milliseconds); "
            "each path's row is its round with the median p99, and *p99 of each round* lists "
            "them all. Every round must deliver every chunk.",
            "- Redis's share, from its own counters between the producer's start signal and "
            "the reader's last chunk: `INFO commandstats` calls (every command, those the "
            "relay's Lua scripts run included) per chunk the sources wrote, "
            "`used_cpu_user + used_cpu_sys` over the wall time, bytes in and out per chunk, "
            "and the connections of each process (`CLIENT LIST` by client name, halfway "
            "through). The benchmark's own `INFO` and `CLIENT LIST` requests are left out.",
            "- CPU: each process's user and system time over the run, per chunk written "
            "(producer) and per chunk delivered (reader); *CPU %* is of one core.",
        ]
    )  # fmt: skip


def scaling_delay(r: Json) -> str:
    rows: list[list[str]] = []
    for scenario, run in _relay_runs(r):
        relay = _is_relay(run)
        rows.append(
            [
                scenario["name"],
                run["path"],
                _ms(run["p50_ms"]),
                _ms(run["p90_ms"]),
                _ms(run["p99_ms"]),
                _ms(run["max_ms"]),
                num(run["added_p50_ms"]) if relay else "",
                num(run["added_p99_ms"]) if relay else "",
                " / ".join(_ms(x["p99_ms"]) for x in run["rounds"])
                if len(run.get("rounds", ())) > 1
                else "",
                _delivered(scenario, run),
            ]
        )
    return "\n".join(
        [
            "## Delay across processes { #delay }",
            "",
            "The delay of every chunk from the moment its source yielded it in the producer "
            "process to the moment the reader process's loop body got it. Target: the relay "
            f"adds at most {num(r['target_added_p99_ms'], 'ms')} at p99 at the two rates of "
            "the issue (a hundred fast streams, a thousand slow ones), and delivers every "
            "chunk.",
            "",
            table(
                [
                    "scenario",
                    "path",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "added p50 ms",
                    "added p99 ms",
                    "p99 ms of each round",
                    "chunks delivered",
                ],
                rows,
            ),
        ]
    )


def scaling_cost(r: Json) -> str:
    rows: list[list[str]] = []
    command_rows: list[list[str]] = []
    for scenario, run in _relay_runs(r):
        relay = _is_relay(run)
        conns = run.get("redis_connections")
        rows.append(
            [
                scenario["name"],
                run["path"],
                num(run["producer_cpu_us_per_chunk"]),
                num(run["reader_cpu_us_per_delivery"]),
                _pct(run["producer_cpu_pct"]),
                _pct(run["reader_cpu_pct"]),
                num(run["source_late_p99_ms"]),
                _gc_pauses(run),
                num(run["redis_commands_per_chunk"]) if relay else "",
                _pct(run["redis_cpu_pct"]) if relay else "",
                num(run["redis_bytes_per_chunk"]) if relay else "",
                f"{conns['producer']} + {conns['reader']}" if conns else "",
                num(run["load_avg_1_min_before"]),
            ]
        )
        if relay:
            commands: dict[str, int] = run["redis_commands"]
            written = run["chunks_written"]
            scripts = _scripts(commands)
            known = commands.get("xadd", 0) + commands.get("xread", 0)
            known += commands.get("exists", 0) + commands.get("xrange", 0) + scripts
            command_rows.append(
                [
                    scenario["name"],
                    run["path"],
                    num(commands.get("xadd", 0) / written),
                    num(written / commands["xadd"]) if commands.get("xadd") else "n/a",
                    num(commands.get("xread", 0) / written),
                    num((commands.get("exists", 0) + commands.get("xrange", 0)) / written),
                    num(scripts / written),
                    num((run["redis_calls"] - known) / written),
                    num(run["redis_commands_per_chunk"]),
                ]
            )
    return "\n".join(
        [
            "## What it costs { #cost }",
            "",
            "The same runs. *Source late p99* is how late the producer's sources yielded "
            "their chunks against their deadlines: a producer process that falls behind shows "
            "it there first. *Load* is the machine's one-minute load average as the run "
            "started (other work on the machine shares its cores).",
            "",
            table(
                [
                    "scenario",
                    "path",
                    "producer CPU µs/chunk",
                    "reader CPU µs/delivery",
                    "producer CPU",
                    "reader CPU",
                    "source late p99 ms",
                    "GC pause max ms (producer / reader)",
                    "Redis commands/chunk",
                    "Redis CPU",
                    "Redis bytes/chunk",
                    "Redis connections (producer + reader)",
                    "load",
                ],
                rows,
            ),
            "",
            "*GC pause max* is the longest stop of CPython's cyclic garbage collector in each "
            "process during the run (`gc.callbacks`): a pause delays every chunk the process "
            "holds, so it bounds the tail from below.",
            "",
            "Redis commands per chunk written, by kind: `XADD` appends one entry (the events "
            "of one batch) and, once per round trip of appends, rings the bell that tells the "
            "readers which streams changed (*chunks per XADD* counts both), `XREAD` is the "
            "readers' follow loop (the bell, which carries the entries just written, and the "
            "streams it named without theirs), `EXISTS` and `XRANGE` "
            "are lease checks and reads from storage, and *scripts* are the lease renewals and "
            "the ends (`EVALSHA` and the `GET`, `PEXPIRE`, `PTTL`, `DEL` and `XREVRANGE` they "
            "run).",
            "",
            table(
                [
                    "scenario",
                    "path",
                    "XADD",
                    "chunks per XADD",
                    "XREAD",
                    "EXISTS + XRANGE",
                    "scripts",
                    "other",
                    "all",
                ],
                command_rows,
            ),
        ]
    )


def scaling_fanout(r: Json) -> str:
    parts = ["## One stream, many readers { #fan-out }", ""]
    for scenario in r["delay"]:
        if scenario["readers_per_stream"] <= 1:
            continue
        relay = _default_relay(scenario)
        direct = next(run for run in scenario["runs"] if not _is_relay(run))
        conns = relay["redis_connections"]
        parts += [
            f"{scenario['name']}: {scenario['readers_per_stream']:,} reads of one stream in one "
            f"process follow it through the relay's single follow loop. p99 delay "
            f"{num(relay['p99_ms'], 'ms')} through the relay, {num(direct['p99_ms'], 'ms')} "
            f"with {scenario['readers_per_stream']:,} direct connections to the producer; the "
            f"reading process held {conns['reader']} Redis connections and the producing one "
            f"{conns['producer']}, and Redis ran {num(relay['redis_commands_per_chunk'])} "
            "commands per chunk written, whatever the number of readers. The direct path "
            f"cost the producer {num(direct['producer_cpu_us_per_chunk'], 'µs')} of CPU per "
            "chunk (one write per reader), the relay "
            f"{num(relay['producer_cpu_us_per_chunk'], 'µs')}.",
            "",
        ]
    return "\n".join(parts).rstrip()


def scaling_resume(r: Json) -> str:
    x = r["resume"]
    vercel: Json = x["resumable_stream"]
    rows = [
        [
            name,
            case,
            num(j["first_chunk_ms"]),
            num(j["backlog_ms"]),
            num(j["min_backlog_ms"]),
            num(j["redis_commands"]),
            f"{j['redis_bytes']:,.0f}",
            "yes" if j["correct"] else "**no**",
        ]
        for name, cases in x["joins"].items()
        for case, j in cases.items()
    ]
    text = [
        "## A reader joining late { #resume }",
        "",
        f"One stream has written {x['backlog_chunks']:,} chunks of {x['chunk_chars']} "
        f"characters (one every {num(x['chunk_gap_s'] * 1e3, 'ms')}, so each is an entry of "
        "its own) and waits. A new reader joins, in the same process but on connections of "
        "its own, either from the start or after chunk "
        f"{x['resume_at']:,} (a browser reconnecting with its last event id), and reads to "
        "the end of the backlog: the time from the call to the first chunk and to the "
        "backlog's last character, and Redis's commands and bytes (in and out) over the "
        f"join. Medians of {x['rounds']} rounds, interleaved; *correct* is whether the text "
        "read equals the text written.",
        "",
    ]
    if vercel.get("version") is None:
        text += [
            "`resumable-stream` (the Python port of Vercel's `resumable-stream`, in the "
            "`bench` extra) was not installed for this run.",
            "",
        ]
    elif "error" in vercel:
        text += [
            f"`resumable-stream` {vercel['version']} did not run against this server: "
            f"`{vercel['error']}`.",
            "",
        ]
    else:
        text += [
            f"Beside it, `resumable-stream` {vercel['version']}, the Python port of Vercel's "
            "`resumable-stream`: its producer keeps the stream's text in its own memory and "
            "answers a late reader over Redis pub/sub with everything after "
            "`skip_characters` in one message "
            "(`resume_existing_stream(stream_id, skip_characters)`), so its first chunk is "
            "the whole backlog. Its producer keeps every reader that ever joined on its list "
            "and publishes each later chunk to each of them, and once the stream is done (or "
            "its producing process is gone) there is nothing to resume.",
            "",
        ]
    text.append(
        table(
            [
                "library",
                "joins",
                "first chunk ms",
                "whole backlog ms",
                "min ms",
                "Redis commands",
                "Redis bytes",
                "correct",
            ],
            rows,
        )
    )
    tails = x.get("tail", {})
    if tails:
        text += [
            "",
            f"Then each stream writes its last {x['tail_chunks']} chunks, after the "
            "late readers have left, and is asked for once more after its end:",
            "",
            table(
                [
                    "library",
                    "Redis commands per chunk after the late readers left",
                    "after the end",
                ],
                [
                    [
                        name,
                        f"{num(t['redis_commands_per_chunk'])} ("
                        + ", ".join(f"{k} {v:,}" for k, v in t["redis_commands"].items())
                        + f"; {t['late_readers_joined_before']} late readers had joined)",
                        x["after_end"].get(name, "n/a"),
                    ]
                    for name, t in tails.items()
                ],
            ),
        ]
    return "\n".join(text)


def scaling_sizing(r: Json) -> str:
    settings: Json = r["relay_settings"]
    relays = [(s, run) for s, run in _relay_runs(r) if _is_relay(run)]
    defaults = [(s, run) for s, run in relays if not run["settings"]]
    conns = sorted(
        {run["redis_connections"][side] for _, run in defaults for side in ("producer", "reader")}
    )
    one_reader = [(s, run) for s, run in defaults if s["readers_per_stream"] == 1]
    # The scenarios by total rate: the slowest one, and the others (the rates).
    one_reader.sort(key=lambda x: x[0]["streams"] * x[0]["rate_per_s"])
    calm, busy = one_reader[0], one_reader[1:]
    cs, crun = calm
    direct = {s["name"]: next(x for x in s["runs"] if not _is_relay(x)) for s, _ in one_reader}

    def rate(s: Json) -> str:
        return f"{s['streams'] * s['rate_per_s']:,.0f}"

    def behind(s: Json, run: Json) -> str:
        lost = ""
        if run["reads_failed"]:
            lost = f"; {run['reads_failed']:,} streams ended with `ProducerLost`"
        return (
            f"{s['name']} ({rate(s)} chunks/s: sources late by "
            f"{num(run['source_late_p99_ms'], 'ms')} at p99 against "
            f"{num(direct[s['name']]['source_late_p99_ms'], 'ms')} direct, delay p99 "
            f"{num(run['p99_ms'], 'ms')}{lost})"
        )

    def added(field: str) -> str:
        return num(crun[field] - direct[cs["name"]][field], "µs")

    redis_per_k = [
        run["redis_cpu_pct"] / (s["streams"] * s["rate_per_s"] / 1000) for s, run in one_reader
    ]
    biggest = max(defaults, key=lambda x: x[1]["redis_calls"])
    script_share = _scripts(biggest[1]["redis_commands"]) / biggest[1]["redis_calls"]
    lines = [
        "## What to do with these numbers { #sizing }",
        "",
        "- **Redis connections.** A `RedisRelay` holds a pool of at most `max_connections` "
        f"(default {settings.get('max_connections')}), opened as its exchanges overlap, "
        "and, once it has readers, one more connection on which a single loop follows every "
        "stream they read, and, once it publishes, one on which its producers send their "
        f"appends and renewals. In these runs a process held {_span(conns)}, however many "
        "streams and readers it had. Budget `workers * (max_connections + 2)` against the "
        "server's `maxclients`, and share one relay among all the requests of a process.",
        "- **Chunks per worker process.** Every chunk costs the producing process its share "
        "of an `XADD` round trip and each reading process its share of an `XREAD`, through "
        f"redis-py. At {rate(cs)} chunks/s in all ({cs['name']}) the relay added "
        f"{added('producer_cpu_us_per_chunk')} of CPU per chunk to the producing process and "
        f"{added('reader_cpu_us_per_delivery')} to the reading one (relay row minus direct "
        "row); its sources were late by "
        f"{num(crun['source_late_p99_ms'], 'ms')} at p99 (direct: "
        f"{num(direct[cs['name']]['source_late_p99_ms'], 'ms')}). With more chunks per "
        "process the producing one fell behind: "
        + "; ".join(behind(s, run) for s, run in busy)
        + ". Its loop then runs late: batches grow, every chunk waits for the loop, and a "
        "lease renewal that waits longer than the lease gives the stream up. Measure the rate at "
        "which your "
        "workers fall behind, keep each well below it, and add worker processes rather than "
        "streams per process: the Redis CPU column shows that Redis is not what runs out "
        "first.",
        *_gc_bullet(one_reader, direct),
        f"- **`batch_window`** (default {settings.get('batch_window')} s) is how long a "
        "producer holds a batch open: events that arrive within it share one `XADD`, so a "
        "fast stream costs fewer commands and less CPU per chunk, and each chunk may wait "
        "that much longer. It does nothing for a stream slower than one chunk per window "
        "(each chunk is alone in it): a thousand slow streams cost one `XADD` per chunk "
        "whatever the window. A producer that falls behind batches anyway (the *chunks per "
        "XADD* column).",
        f"- **`maxlen`** (default {settings.get('maxlen'):,}) is how many entries (batches) "
        "Redis keeps per running stream: memory (about the *Redis bytes* per chunk a late "
        "reader reads above, times the entries, times the running streams) against how far "
        "behind a reader may fall before `EntriesTrimmed`. After the end, the entries expire "
        "`ttl` later whatever `maxlen` is.",
        f"- **`lease`** (default {settings.get('lease')} s): each running stream renews its "
        "lease every third of it with one script, however slow the stream, so a shorter "
        "lease costs more commands and a longer one makes readers wait longer for "
        "`ProducerLost` when a producer dies. With many slow streams the renewals dominate: "
        f"at {biggest[0]['name']} the scripts (renewals and ends) were {script_share:.0%} of "
        "Redis's commands.",
        "- **Several Redis servers.** Redis runs commands on one core; here it used "
        f"{_span_pct(redis_per_k)} of a core per thousand chunks/s written (one reader per "
        "stream). When a server's core, or its memory (the entries kept, times their size), "
        "nears its limit, spread the streams over a Redis Cluster with "
        "`RedisRelay(url, cluster=True, shards=...)` ([Redis "
        "Cluster](relay.md#redis-cluster)). Replicas add failover, not capacity: the relay "
        "reads and writes on primaries.",
    ]
    for s, run in relays:
        if not run["settings"]:
            continue
        base = _default_relay(s)
        lines.append(
            f"- **`{run['path'].removeprefix('relay, ')}`** beside the defaults at "
            f"{s['name']}: delay p50 {num(run['p50_ms'], 'ms')} and p99 "
            f"{num(run['p99_ms'], 'ms')} (defaults: {num(base['p50_ms'], 'ms')} and "
            f"{num(base['p99_ms'], 'ms')}); {num(run['redis_commands_per_chunk'])} Redis "
            f"commands per chunk ({num(base['redis_commands_per_chunk'])}); producer CPU "
            f"{num(run['producer_cpu_us_per_chunk'], 'µs')} per chunk "
            f"({num(base['producer_cpu_us_per_chunk'], 'µs')}); "
            f"{run['redis_connections']['producer']} + {run['redis_connections']['reader']} "
            "connections."
        )
    return "\n".join(lines)


def _gc_bullet(defaults: list[tuple[Json, Json]], direct: dict[str, Json]) -> list[str]:
    """The sizing bullet on CPython's collector: the scenario where it paused longest."""
    measured = [(s, run) for s, run in defaults if "producer_gc_max_ms" in run]
    if not measured:
        return []
    s, run = max(measured, key=lambda x: max(x[1]["producer_gc_max_ms"], x[1]["reader_gc_max_ms"]))
    base = direct.get(s["name"], {})
    return [
        "- **Garbage collection.** Objects alive across a round trip to Redis (a stream's "
        "pending events, an exchange waiting for its replies) are moved by CPython's cyclic "
        "collector, which runs every few hundred allocations, to its older generations; the "
        "collections of those stop the whole process. The relay keeps few of them (one timer "
        "and one exchange per tick of `batch_window` for all the streams of a process, not "
        "one per stream and chunk). At "
        f"{s['name']} they paused the producing process for up to "
        f"{num(run['producer_gc_max_ms'], 'ms')} ({num(run['producer_gc_ms_per_s'], 'ms')} "
        f"a second) and the reading one for up to {num(run['reader_gc_max_ms'], 'ms')} "
        f"({num(run['reader_gc_ms_per_s'], 'ms')} a second)"
        + (
            f"; direct, {num(base['producer_gc_max_ms'], 'ms')} and "
            f"{num(base['reader_gc_max_ms'], 'ms')}"
            if "producer_gc_max_ms" in base
            else ""
        )
        + ". Such a pause delays every chunk the process holds, and it grows with everything "
        "the process keeps (a worker that imports a web framework and an LLM client keeps a "
        "lot): `gc.freeze()` once a worker has imported everything keeps its startup objects "
        "out of every collection."
    ]


def _span_pct(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f} %" if round(low) == round(high) else f"{low:.0f} to {high:.0f} %"


def scaling_machine(r: Json) -> str:
    m = r["machine"]
    load = m.get("load_avg_1_5_15_min")
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in r["versions"].items())
    return "\n".join(
        [
            "## The machine { #machine }",
            "",
            "Where and when `relay.json` was written. Other processes on a shared machine "
            "take cores from the three processes measured (producer, reader, Redis), which "
            "shows as delay: compare the paths of one run, not milliseconds across machines. "
            "The load average is the one as the run started; each row above has its own.",
            "",
            table(
                ["date", "Python", "platform", "CPUs", "load average", "redis-server", "libraries"],
                [
                    [
                        m["date"],
                        m["python"],
                        m["platform"],
                        str(m["cpus"]),
                        " / ".join(map(str, load)) if load else "n/a",
                        r["redis_server"],
                        versions,
                    ]
                ],
            ),
        ]
    )


def render_scaling(results: Path = RESULTS_DIR) -> str:
    """docs/en/scaling.md, from ``relay.json`` in ``results``."""
    head = [
        "<!-- Generated by `python -m benchmarks.report_docs` from benchmarks/results/relay.json:",
        "     edit benchmarks/report_docs.py, not this page. -->",
        "# Scaling out",
        "",
        "What it takes to serve streams from several processes through the "
        "[relay](relay.md) and Redis: the delay `RedisRelay` adds to each chunk between a "
        "producing and a reading process, beside the same chunks sent directly; what it costs "
        "both processes and the Redis server; how many connections it holds; and what a "
        "reader joining late costs, beside Vercel's approach. Every figure on this page is "
        "read from `benchmarks/results/relay.json`, which `bench_relay` writes (and then "
        "rewrites this page); a test fails when the two disagree. The figures are from one "
        "shared machine: rerun them on yours before you size anything from them.",
        "",
        "```sh",
        "make redis                                      # Debian's redis-server, if missing",
        ".venv/bin/python -m benchmarks bench_relay      # about two minutes, then this page",
        ".venv/bin/python -m benchmarks.report_docs      # this page from the saved results",
        "```",
    ]
    path = results / "relay.json"
    if not path.exists():
        return "\n".join([*head, "", "No results yet: run `bench_relay`."]) + "\n"
    r: Json = json.loads(path.read_text())
    sections = (
        scaling_summary,
        scaling_method,
        scaling_delay,
        scaling_cost,
        scaling_fanout,
        scaling_resume,
        scaling_sizing,
        scaling_machine,
    )
    parts = head
    for section in sections:
        parts += ["", section(r)]
    return "\n".join(parts) + "\n"


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
    "relay": relay_section,
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
    return _write(page, render(results))


def write_scaling(page: Path = SCALING_PAGE, results: Path = RESULTS_DIR) -> bool:
    """Rewrite docs/en/scaling.md; whether it changed."""
    return _write(page, render_scaling(results))


def _write(page: Path, text: str) -> bool:
    if page.exists() and page.read_text(encoding="utf-8") == text:
        return False
    page.write_text(text, encoding="utf-8")
    return True


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    pages = ((PAGE, render), (SCALING_PAGE, render_scaling))
    if "--check" in argv:
        for page, make in pages:
            if not page.exists() or page.read_text(encoding="utf-8") != make(RESULTS_DIR):
                print(f"{page} is out of date: run python -m benchmarks.report_docs")
                return 1
        return charts.main(["--check"])
    print(f"{'wrote' if write() else 'unchanged:'} {PAGE}")
    print(f"{'wrote' if write_scaling() else 'unchanged:'} {SCALING_PAGE}")
    charts.main([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
