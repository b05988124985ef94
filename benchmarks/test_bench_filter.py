"""Segment filtering: the Rust core vs the Python twin vs polars vs DuckDB, on the same data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from benchmarks.data import (
    COMPOUND,
    DUCKDB_COMPOUND,
    DUCKDB_FANOUT,
    FANOUT,
    FANOUT_EVENT,
    NOW,
    contacts,
    duckdb_mask,
    polars_compound,
    polars_fanout,
)
from cadence.dispatch import filter_contacts
from cadence.dispatch.expr import Expr


def _runner(
    backend: str, size: str, expr: Expr, event: Any, pl_fn: Any, sql: str
) -> Callable[[], np.ndarray]:
    table = contacts(size)
    if backend in ("rust", "python"):
        return lambda: filter_contacts(table, expr, now=NOW, event=event, backend=backend)  # type: ignore[arg-type]
    if backend == "polars":
        import polars as pl

        df = pl.from_arrow(table)
        return lambda: pl_fn(df)
    import duckdb

    con = duckdb.connect()
    con.register("contacts", table)
    return lambda: duckdb_mask(con, sql)


def _bench(benchmark: Any, backend: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
    rounds = 1 if backend == "python" else 5
    result: np.ndarray = benchmark.pedantic(
        fn, rounds=rounds, iterations=1, warmup_rounds=0 if backend == "python" else 1
    )
    return result


def test_filter_compound(benchmark: Any, filter_case: tuple[str, str]) -> None:
    backend, size = filter_case
    benchmark.group = f"filter-compound-{size}"
    fn = _runner(backend, size, COMPOUND, None, polars_compound, DUCKDB_COMPOUND)
    mask = _bench(benchmark, backend, fn)
    assert len(mask) == contacts(size).num_rows


def test_filter_fanout(benchmark: Any, filter_case: tuple[str, str]) -> None:
    backend, size = filter_case
    benchmark.group = f"filter-fanout-{size}"
    fn = _runner(backend, size, FANOUT, FANOUT_EVENT, polars_fanout, DUCKDB_FANOUT)
    mask = _bench(benchmark, backend, fn)
    assert len(mask) == contacts(size).num_rows


@pytest.mark.parametrize("which", ["compound", "fanout"])
def test_all_engines_agree(which: str) -> None:
    """Not a timing: the four engines select the same contacts, so the ratios are fair."""
    size = "10k"
    expr, event, pl_fn, sql = (
        (COMPOUND, None, polars_compound, DUCKDB_COMPOUND)
        if which == "compound"
        else (FANOUT, FANOUT_EVENT, polars_fanout, DUCKDB_FANOUT)
    )
    masks = [
        _runner(b, size, expr, event, pl_fn, sql)() for b in ("rust", "python", "polars", "duckdb")
    ]
    for m in masks[1:]:
        assert np.array_equal(masks[0], m)
    assert 0 < masks[0].sum() < len(masks[0])
