"""Evaluate a segment predicate over a contacts table: audiences, segment_enter, fan-out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from cadence import _backend
from cadence.dispatch._pyfilter import filter_rows
from cadence.dispatch.columns import (
    ColumnType,
    as_table,
    column_type,
    normalise,
    to_core,
    to_python,
)
from cadence.dispatch.expr import Expr, Timestamp
from cadence.dispatch.plan import Plan, encode, plan

Backend = Literal["rust", "python"]


def _now_micros(now: datetime | Timestamp | int) -> int:
    if isinstance(now, datetime):
        return Timestamp.from_datetime(now).micros
    if isinstance(now, Timestamp):
        return now.micros
    return int(now)


def resolve_core(backend: Backend | None) -> ModuleType | None:
    """The Rust module for `backend` (None means whatever `_backend` chose); None for Python."""
    if backend is None:
        return _backend.core
    if backend == "python":
        return None
    if _backend.core is None:
        raise RuntimeError(f"Rust core unavailable: {_backend.fallback_reason}")
    return _backend.core


def schema_of(table: pa.Table) -> dict[str, ColumnType]:
    """The filter types of the columns a table can offer (unsupported types are left out)."""
    out: dict[str, ColumnType] = {}
    for field in table.schema:
        try:
            out[field.name] = column_type(field.type)[0]
        except TypeError:
            continue
    return out


def plan_for(
    table: pa.Table,
    expr: Expr,
    now: datetime | Timestamp | int,
    event: Mapping[str, Any] | None = None,
) -> Plan:
    """Plan `expr` against `table`'s schema (exposed for tests and dry-run explanations)."""
    return plan(expr, schema_of(table), _now_micros(now), event)


def filter_contacts(
    table: Any,
    expr: Expr,
    *,
    now: datetime | Timestamp | int,
    event: Mapping[str, Any] | None = None,
    backend: Backend | None = None,
) -> np.ndarray:
    """Return a numpy bool mask, one entry per contact row, True where `expr` is true.

    `table` is a pyarrow Table/RecordBatch (zero-copy) or a dict of column arrays; `now` is a
    datetime or UTC microseconds; `event` supplies `event.FIELD` values for fan-out triggers.
    """
    tbl = as_table(table)
    p = plan_for(tbl, expr, now, event)
    n = tbl.num_rows
    mask = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return mask
    core = resolve_core(backend)
    encoded = encode(p.root)
    start = 0
    for batch in tbl.select(list(p.columns)).to_batches() if p.columns else [None]:
        rows = n if batch is None else batch.num_rows
        if rows == 0:
            continue
        arrays = (
            [] if batch is None else [normalise(batch.column(i)) for i in range(len(p.columns))]
        )
        out = mask[start : start + rows]
        if core is not None:
            core.filter_mask(encoded, [to_core(t, a) for t, a in arrays], rows, out.view(np.uint8))
        else:
            out[:] = filter_rows(p.root, [to_python(t, a) for t, a in arrays], rows)
        start += rows
    return mask


def select_contacts(
    table: Any,
    expr: Expr,
    *,
    now: datetime | Timestamp | int,
    event: Mapping[str, Any] | None = None,
    backend: Backend | None = None,
) -> np.ndarray:
    """Row indices (int64) of the contacts for which `expr` is true."""
    mask = filter_contacts(table, expr, now=now, event=event, backend=backend)
    return np.flatnonzero(mask).astype(np.int64, copy=False)
