"""Benchmark options: `--big` adds the 10M-contact filter runs."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--big", action="store_true", default=False, help="also run 10M-contact benchmarks"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from benchmarks.data import filter_sizes

    if "filter_case" in metafunc.fixturenames:
        sizes = filter_sizes(bool(metafunc.config.getoption("--big")))
        cases = [(b, s) for s in sizes for b in ("rust", "python", "polars", "duckdb")]
        metafunc.parametrize("filter_case", cases, ids=[f"{b}-{s}" for b, s in cases])
