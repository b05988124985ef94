"""Run the benchmarks and print one table of ratios: `python -m benchmarks.report [--big]`.

Rows are the filter predicates (compound, fan-out) per size, caps and the limiter; columns are
the best-of-rounds times and the ratios the design asks for (Rust vs Python, vs polars, vs
DuckDB), per-operation cost, and the peak memory a filter run adds on top of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"test_(?P<suite>\w+?)\[(?P<backend>\w+)-(?P<size>\w+)\]")
DEFAULT_SELECT = "(filter or caps or limiter) and not agree"
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}


def run_benchmarks(json_path: Path, big: bool, quick: bool, select: str | None) -> None:
    """Run pytest-benchmark over benchmarks/ writing its JSON report."""
    cmd = [
        sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-q", "-p", "no:cacheprovider",
        "--benchmark-enable", f"--benchmark-json={json_path}", "-k", select or DEFAULT_SELECT,
    ]  # fmt: skip
    if big:
        cmd.append("--big")
    env = dict(os.environ)
    if quick:
        env["CADENCE_BENCH_QUICK"] = "1"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stdout.write(done.stdout + done.stderr)
        raise SystemExit(done.returncode)


def measure_memory(size: str, backends: list[str]) -> dict[str, dict[str, Any]]:
    """Peak extra memory of one compound filter run per backend, each in a fresh process."""
    out: dict[str, dict[str, Any]] = {}
    for backend in backends:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", backend, size],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def load(json_path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(suite, size) -> backend -> best time in seconds."""
    data = json.loads(json_path.read_text())
    times: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        m = NAME.fullmatch(bench["name"])
        if m and m["size"] in SIZES:
            times[(m["suite"], m["size"])][m["backend"]] = float(bench["stats"]["min"])
    return times


def _ms(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:,.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:,.1f}x"


def render(times: dict[tuple[str, str], dict[str, float]], memory: dict[str, Any]) -> Table:
    """The one table of ratios."""
    table = Table(title="Cadence dispatch_core benchmarks (best of rounds)")
    for col in (
        "benchmark", "size", "rust ms", "python ms", "polars ms", "duckdb ms",
        "rust vs python", "rust vs polars", "rust vs duckdb", "rust per op", "peak extra mem",
    ):  # fmt: skip
        left = col in ("benchmark", "size")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    order = {
        "filter_compound": 0, "filter_fanout": 1, "caps_check_and_reserve": 2,
        "caps_check_and_reserve_one": 3,
    }  # fmt: skip
    for (suite, size), by in sorted(
        times.items(), key=lambda kv: (order.get(kv[0][0], 9), SIZES.get(kv[0][1], 0))
    ):
        rust = by.get("rust")
        per_op = "-" if rust is None else f"{rust / SIZES[size] * 1e9:,.0f} ns"
        mem = "-"
        if suite == "filter_compound" and memory.get("size") == size:
            rows = memory["backends"]
            mem = " ".join(
                f"{b[0]}:{rows[b]['extra_peak_bytes'] / rows[b]['table_bytes']:.2f}" for b in rows
            )
        table.add_row(
            suite, size, _ms(rust), _ms(by.get("python")), _ms(by.get("polars")),
            _ms(by.get("duckdb")), _ratio(by.get("python"), rust), _ratio(by.get("polars"), rust),
            _ratio(by.get("duckdb"), rust), per_op, mem,
        )  # fmt: skip
    return table


# Each backend's bar colour in the chart, in the table's column order.
BACKEND_COLOURS = {
    "rust": "#c2410c", "python": "#2563eb", "polars": "#059669", "duckdb": "#7c3aed",
}  # fmt: skip


def chart_svg(times: dict[tuple[str, str], dict[str, float]]) -> str:
    """The table's times as a bar chart (SVG, log scale): one group of bars per benchmark
    and size, one bar per backend, so the ratios read at a glance."""
    from html import escape
    from math import log10

    rows = sorted(times.items(), key=lambda kv: (kv[0][0], SIZES.get(kv[0][1], 0)))
    values = [t for _, by in rows for t in by.values() if t > 0]
    if not values:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"></svg>\n'
    low, high = log10(min(values)) - 0.1, log10(max(values)) + 0.1
    label_width, plot_width, bar, gap, top = 230, 560, 14, 10, 40
    backends = [b for b in BACKEND_COLOURS if any(b in by for _, by in rows)]

    def width(seconds: float) -> float:
        return max(1.0, (log10(seconds) - low) / (high - low) * plot_width)

    parts: list[str] = []
    y = top
    for (suite, size), by in rows:
        present = [b for b in backends if by.get(b, 0) > 0]
        group = len(present) * bar
        parts.append(
            f'<text x="{label_width - 8}" y="{y + group / 2 + 4:.0f}" text-anchor="end">'
            f"{escape(suite)} {escape(size)}</text>"
        )
        for backend in present:
            seconds = by[backend]
            w = width(seconds)
            parts.append(
                f'<rect class="{backend}" x="{label_width}" y="{y}" width="{w:.1f}"'
                f' height="{bar - 2}" fill="{BACKEND_COLOURS[backend]}"/>'
                f'<text x="{label_width + w + 4:.1f}" y="{y + bar - 4}">{_ms(seconds)} ms</text>'
            )
            y += bar
        y += gap
    legend = "".join(
        f'<rect x="{label_width + i * 110}" y="12" width="12" height="12"'
        f' fill="{BACKEND_COLOURS[b]}"/><text x="{label_width + i * 110 + 16}" y="22">{b}</text>'
        for i, b in enumerate(backends)
    )
    total_height = y + 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + plot_width + 120}"'
        f' height="{total_height}" font-family="sans-serif" font-size="11">'
        f'<text x="8" y="22" font-weight="bold">best of rounds, log scale</text>{legend}'
        + "".join(parts)
        + "</svg>\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m benchmarks.report`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", action="store_true", help="include 10M contacts")
    parser.add_argument("--quick", action="store_true", help="small sizes (as CI runs them)")
    parser.add_argument("--json", type=Path, help="read an existing --benchmark-json instead")
    parser.add_argument("--save", type=Path, help="keep the benchmark JSON here")
    parser.add_argument("-k", dest="select", help="pytest -k expression to run a subset")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--chart", type=Path, help="also draw the times as an SVG bar chart here")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("CADENCE_BENCH_QUICK", "") in ("1", "true", "yes")
    if args.json:
        json_path = args.json
    else:
        json_path = args.save or Path(tempfile.mkdtemp()) / "bench.json"
        run_benchmarks(json_path, args.big, quick, args.select)
    times = load(json_path)
    memory: dict[str, Any] = {}
    if not args.no_memory:
        size = "10k" if quick else ("10M" if args.big else "1M")
        memory = {"size": size, "backends": measure_memory(size, ["rust", "polars", "duckdb"])}
    console = Console(width=max(Console().width, 150))
    console.print(render(times, memory))
    if args.chart:
        args.chart.write_text(chart_svg(times), "utf-8")
        console.print(f"chart: {args.chart}")
    console.print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; peak extra mem = peak RSS added by one compound "
        "filter run / the Arrow table's size (r=rust, p=polars, d=duckdb)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
