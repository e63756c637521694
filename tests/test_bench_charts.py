"""The benchmark charts (docs/en/assets/bench/*.svg) are what benchmarks/charts.py draws from
the committed results (benchmarks/results/*.json), and the benchmarks page embeds each one."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from benchmarks import charts, report_docs


def test_committed_charts_are_drawn_from_the_committed_results() -> None:
    drawn = charts.render(charts.load())
    assert drawn, "no results to draw from"
    stale = [
        name
        for name, text in drawn.items()
        if not (charts.ASSETS / name).exists()
        or (charts.ASSETS / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `python -m benchmarks.charts` (or `make bench-docs`): {stale}"
    committed = {p.name for p in charts.ASSETS.glob("*.svg")}
    assert committed == set(drawn), "a chart without results, or results without a chart"


def test_every_chart_is_well_formed_svg_and_on_the_page() -> None:
    page = report_docs.PAGE.read_text(encoding="utf-8")
    for name, text in charts.render(charts.load()).items():
        root = ElementTree.fromstring(text)
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
        assert f"](assets/bench/{name})" in page, f"{name} is not embedded in the page"


@pytest.mark.parametrize("name", sorted(charts.CHARTS))
def test_a_chart_follows_a_change_in_its_results(name: str) -> None:
    data = charts.load()
    needs = charts.CHARTS[name][0]
    if not all(n in data for n in needs):
        pytest.skip(f"no {needs} results committed")
    before = charts.render(data)[f"{name}.svg"]
    assert charts.render(_scaled(data, 1.5))[f"{name}.svg"] != before


def _scaled(value: Any, factor: float) -> Any:
    """Every float in the results times ``factor`` (counts and sizes kept)."""
    if isinstance(value, dict):
        return {k: _scaled(v, factor) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [_scaled(v, factor) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value * factor if isinstance(value, float) else value


def test_the_peers_benchmark_says_where_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import bench_peers

    if bench_peers.have_peers():
        pytest.skip("the peers are installed here")
    bench_peers.main()  # `python -m benchmarks` imports every bench_* module
    assert "make bench-peers" in capsys.readouterr().out
