"""The benchmark report's chart: well-formed SVG whose bars follow the times they stand for."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.report import chart_svg, load, main

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> dict[str, list[float]]:
    """Each backend's bar widths, in the chart's order."""
    found: dict[str, list[float]] = {}
    for rect in ET.fromstring(svg).iter(f"{SVG}rect"):
        if "class" in rect.attrib:
            found.setdefault(rect.attrib["class"], []).append(float(rect.attrib["width"]))
    return found


def test_bars_are_longer_for_slower_backends_on_a_log_scale() -> None:
    times = {
        ("filter_compound", "10k"): {"rust": 0.001, "python": 0.1, "polars": 0.01},
        ("filter_compound", "100k"): {"rust": 0.01, "python": 1.0},
    }
    bars = _bars(chart_svg(times))
    assert set(bars) == {"rust", "python", "polars"}
    # 10k before 100k; each tenfold step in time is the same step in length (log scale).
    (rust_10k, rust_100k), (python_10k, python_100k) = bars["rust"], bars["python"]
    assert rust_10k < bars["polars"][0] < python_10k
    assert abs((bars["polars"][0] - rust_10k) - (python_10k - bars["polars"][0])) < 0.5
    assert abs((rust_100k - rust_10k) - (python_100k - python_10k)) < 0.5


def test_the_report_writes_the_chart_from_a_saved_run(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(
        json.dumps(
            {
                "benchmarks": [
                    {"name": "test_filter_compound[rust-10k]", "stats": {"min": 0.002}},
                    {"name": "test_filter_compound[python-10k]", "stats": {"min": 0.2}},
                ]
            }
        ),
        "utf-8",
    )
    chart = tmp_path / "bench.svg"
    assert main(["--json", str(saved), "--no-memory", "--chart", str(chart)]) == 0
    assert chart.read_text("utf-8") == chart_svg(load(saved))
    assert set(_bars(chart.read_text("utf-8"))) == {"rust", "python"}


def test_no_times_is_an_empty_chart() -> None:
    assert ET.fromstring(chart_svg({})).tag == f"{SVG}svg"
