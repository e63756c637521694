"""What the docs state about the code and the measurements, checked against them.

- docs/en/benchmarks.md and docs/en/scaling.md are what ``benchmarks.report_docs`` writes
  from the saved results, and no other page retypes a measured figure (they link to them);
- the ``LLMConfig`` table of docs/en/configuration.md lists every field with its default;
- the exception tree of docs/en/errors.md is ``kagura.errors``'s;
- offline models run in process, without importing litellm, as README.md and
  docs/en/configuration.md say.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import report_docs

import kagura.errors
from kagura import LLMConfig
from test_docs import DOCS, ROOT, markdown_files, parse_blocks

BENCHMARKS_PAGE = DOCS / "en" / "benchmarks.md"
SCALING_PAGE = DOCS / "en" / "scaling.md"
GENERATED_PAGES = (BENCHMARKS_PAGE, SCALING_PAGE)


def test_benchmarks_page_is_written_from_the_saved_results() -> None:
    assert report_docs.PAGE == BENCHMARKS_PAGE
    assert BENCHMARKS_PAGE.read_text(encoding="utf-8") == report_docs.render(), (
        "docs/en/benchmarks.md and benchmarks/results/*.json disagree: "
        "run `python -m benchmarks.report_docs` (or `make bench-docs`)"
    )


def test_scaling_page_is_written_from_the_saved_relay_results() -> None:
    assert report_docs.SCALING_PAGE == SCALING_PAGE
    assert (report_docs.RESULTS_DIR / "relay.json").exists(), "run the relay benchmark"
    assert SCALING_PAGE.read_text(encoding="utf-8") == report_docs.render_scaling(), (
        "docs/en/scaling.md and benchmarks/results/relay.json disagree: "
        "run `python -m benchmarks.report_docs` (or `make bench-docs`)"
    )


def test_report_docs_check_compares_both_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "scaling.md"
    stale.write_text(report_docs.render_scaling() + "edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(report_docs, "SCALING_PAGE", stale)
    assert report_docs.main(["--check"]) == 1


def test_every_saved_result_has_a_section_on_the_page() -> None:
    saved = {path.stem for path in report_docs.RESULTS_DIR.glob("*.json")}
    assert saved <= set(report_docs.SECTIONS), "add a section to benchmarks/report_docs.py"


def test_benchmarks_page_follows_a_change_in_the_results(tmp_path: Path) -> None:
    """The page is computed from the JSON, not kept by hand: another result, another page."""
    for path in report_docs.RESULTS_DIR.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    coldstart = json.loads((tmp_path / "coldstart.json").read_text())
    coldstart["cases"]["import kagura"]["median_s"] = 0.123456
    (tmp_path / "coldstart.json").write_text(json.dumps(coldstart))
    page = report_docs.render(tmp_path)
    assert "`import kagura`: 123 ms" in page
    assert page != report_docs.render()


def test_scaling_page_follows_a_change_in_the_results(tmp_path: Path) -> None:
    relay = json.loads((report_docs.RESULTS_DIR / "relay.json").read_text())
    scenario = relay["delay"][0]
    default = next(r for r in scenario["runs"] if r["mode"] == "relay" and not r["settings"])
    default["p99_ms"] = 123.456
    (tmp_path / "relay.json").write_text(json.dumps(relay))
    page = report_docs.render_scaling(tmp_path)
    assert f"- {scenario['name']}: delay p50 " in page
    assert "and p99 123 ms through the relay" in page
    assert page != report_docs.render_scaling()


# A measured figure: a time in µs or ms, or "N times" (digits or words).
_NUMBER_WORDS = "two|three|four|five|ten|fifteen|twenty|thirty|forty|fifty|hundred"
_MEASURED = re.compile(
    rf"\b\d[\d.,]*\s?(?:µs|ms)\b|\b(?:\d+|{_NUMBER_WORDS})[- ]times\b", re.IGNORECASE
)


def _prose(path: Path) -> list[tuple[int, str]]:
    """The lines of a Markdown file outside its code blocks."""
    inside = {
        line
        for block in parse_blocks(path)
        for line in range(block.line, block.line + block.code.count("\n") + 2)
    }
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, text) for n, text in enumerate(lines, 1) if n not in inside]


@pytest.mark.parametrize(
    "path",
    [p for p in markdown_files() if p not in GENERATED_PAGES],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_measured_figures_are_only_on_the_benchmarks_pages(path: Path) -> None:
    retyped = [f"{n}: {text.strip()}" for n, text in _prose(path) if _MEASURED.search(text)]
    assert not retyped, (
        "link to docs/en/benchmarks.md or docs/en/scaling.md instead of quoting:\n"
        + "\n".join(retyped)
    )


def _configuration_table() -> dict[str, str]:
    """Field name -> the Default cell, from the table under "## `LLMConfig`"."""
    text = (DOCS / "en" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("## `LLMConfig`", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2:
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_configuration_lists_every_llmconfig_field_with_its_default() -> None:
    rows = _configuration_table()
    assert list(rows) == list(LLMConfig.model_fields), "the table's fields, in the model's order"
    for name, cell in rows.items():
        spelled = re.match(r"`([^`]*)`", cell)
        assert spelled is not None, f"{name}: the default is not written as code: {cell!r}"
        assert ast.literal_eval(spelled[1]) == LLMConfig.model_fields[name].default, name


def _error_tree() -> list[tuple[str, str | None, list[str]]]:
    """(class, parent in the tree, other bases in brackets) for each line of errors.md's tree."""
    text = (DOCS / "en" / "errors.md").read_text(encoding="utf-8")
    block = next(b for b in parse_blocks(DOCS / "en" / "errors.md") if "KaguraError" in b.code)
    assert block.line < text.index("## "), "the tree is the page's first block"
    found: list[tuple[str, str | None, list[str]]] = []
    stack: list[tuple[int, str]] = []
    for line in block.code.splitlines():
        match = re.search(r"(\w+)(?: \(([\w, ]+)\))?", line)
        assert match is not None, line
        column = match.start()
        while stack and stack[-1][0] >= column:
            stack.pop()
        extra = [b.strip() for b in match[2].split(",")] if match[2] else []
        found.append((match[1], stack[-1][1] if stack else None, extra))
        stack.append((column, match[1]))
    return found


def test_the_error_tree_is_kagura_errors() -> None:
    tree = _error_tree()
    classes = {
        name
        for name in kagura.errors.__all__
        if inspect.isclass(getattr(kagura.errors, name))
        and issubclass(getattr(kagura.errors, name), BaseException)
    }
    assert {name for name, _, _ in tree} == classes
    for name, parent, extra in tree:
        cls = getattr(kagura.errors, name)  # `from kagura.errors import <name>` works
        bases = {b.__name__ for b in cls.__bases__}
        assert parent is None or parent in bases, f"{name} is not a {parent}"
        assert set(extra) <= bases, f"{name}: not also {extra}"


def test_offline_models_run_in_process_without_litellm() -> None:
    code = (
        "import asyncio, sys\n"
        "from kagura import LLMConfig, call_llm_stream\n"
        "async def main():\n"
        "    config = LLMConfig(model='kagura/echo')\n"
        "    return [c async for c in call_llm_stream('hi there', config)]\n"
        "print(asyncio.run(main()), 'litellm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "['hi ', 'there'] False", out.stdout
