"""Turn Arrow columns into what each backend reads: zero-copy numpy views (Rust), lists (Python).

Both backends see the same normalised column kinds (int, float, str, bool, ts, and lists of
those), so the Rust core and the Python twin start from identical data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

Kind = Literal["int", "float", "str", "bool", "ts"]
CoreColumn: TypeAlias = tuple[Any, ...]
TableLike: TypeAlias = "pa.Table | pa.RecordBatch | Mapping[str, Any]"


class ColumnTypeError(TypeError):
    """A column's Arrow type has no counterpart in the filter's kinds."""


@dataclass(frozen=True, slots=True)
class ColumnType:
    """The filter-level type of a column: a scalar kind, or a list of that kind."""

    kind: Kind
    is_list: bool = False


def as_table(data: Any) -> pa.Table:
    """Accept a pyarrow Table / RecordBatch or a dict of numpy arrays / lists; return a Table."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping):
        return pa.table({str(k): v for k, v in data.items()})
    raise TypeError(f"expected a pyarrow Table, RecordBatch or a mapping of columns, got {data!r}")


def _is_string_view(t: pa.DataType) -> bool:
    check = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(check(t)) if check is not None else False


def _scalar_kind(t: pa.DataType) -> tuple[Kind, pa.DataType] | None:
    if pa.types.is_boolean(t):
        return "bool", pa.bool_()
    if pa.types.is_integer(t):
        return "int", pa.int64()
    if pa.types.is_floating(t):
        return "float", pa.float64()
    if pa.types.is_string(t):
        return "str", t
    if pa.types.is_large_string(t) or _is_string_view(t):
        return "str", pa.large_string() if not pa.types.is_string(t) else t
    if pa.types.is_dictionary(t) and (
        pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
    ):
        return "str", pa.large_string()
    if pa.types.is_timestamp(t):
        return "ts", pa.timestamp("us", tz=t.tz)
    if pa.types.is_date(t):
        return "ts", pa.timestamp("us")
    return None


def column_type(t: pa.DataType) -> tuple[ColumnType, pa.DataType]:
    """Map an Arrow type to its filter type and the Arrow type it is normalised to."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _scalar_kind(t.value_type)
        if inner is None:
            raise ColumnTypeError(f"unsupported list element type {t.value_type}")
        kind, child = inner
        norm = pa.list_(child) if pa.types.is_list(t) else pa.large_list(child)
        return ColumnType(kind, True), norm
    if pa.types.is_null(t):
        return ColumnType("float"), pa.float64()
    scalar = _scalar_kind(t)
    if scalar is None:
        raise ColumnTypeError(f"unsupported column type {t}")
    return ColumnType(scalar[0]), scalar[1]


def normalise(arr: pa.Array) -> tuple[ColumnType, pa.Array]:
    """Cast a column to its normalised Arrow type (a no-op, zero-copy, for the common types)."""
    ctype, target = column_type(arr.type)
    if arr.type != target:
        arr = arr.cast(target)
    return ctype, arr


# ---------------------------------------------------------------------------------------------
# Rust: numpy views over the Arrow buffers (no copy)

_DTYPES: dict[Kind, type[np.generic]] = {"int": np.int64, "float": np.float64, "ts": np.int64}


def _view(buf: pa.Buffer | None, dtype: type[np.generic], start: int, count: int) -> np.ndarray:
    if buf is None or count == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=start + count)[start:]


def _bytes(buf: pa.Buffer | None) -> np.ndarray:
    if buf is None or buf.size == 0:
        return np.empty(0, dtype=np.uint8)
    return np.frombuffer(buf, dtype=np.uint8)


def _validity(arr: pa.Array) -> tuple[np.ndarray | None, int]:
    if arr.null_count == 0:
        return None, 0
    return _bytes(arr.buffers()[0]), arr.offset


def to_core(ctype: ColumnType, arr: pa.Array) -> CoreColumn:
    """Describe a normalised array to the Rust core as a tuple of numpy views."""
    n = len(arr)
    validity, voff = _validity(arr)
    bufs = arr.buffers()
    if ctype.is_list:
        off_dtype = np.int32 if pa.types.is_list(arr.type) else np.int64
        offsets = _view(bufs[1], off_dtype, arr.offset, n + 1)
        if len(offsets) == 0:
            offsets = np.zeros(1, dtype=off_dtype)
        child = to_core(ColumnType(ctype.kind), arr.values)
        return ("list", n, validity, voff, offsets, child)
    if ctype.kind == "bool":
        return ("bool", n, validity, voff, _bytes(bufs[1]), arr.offset)
    if ctype.kind == "str":
        off_dtype = np.int32 if pa.types.is_string(arr.type) else np.int64
        offsets = _view(bufs[1], off_dtype, arr.offset, n + 1)
        if len(offsets) == 0:
            offsets = np.zeros(1, dtype=off_dtype)
        return ("str", n, validity, voff, offsets, _bytes(bufs[2]))
    return (ctype.kind, n, validity, voff, _view(bufs[1], _DTYPES[ctype.kind], arr.offset, n))


# ---------------------------------------------------------------------------------------------
# Python twin: plain lists, None for null, NaN read as null


def _scalars(kind: Kind, arr: pa.Array) -> list[Any]:
    if kind == "ts":
        ints = arr.view(pa.int64()) if arr.offset == 0 else arr.cast(pa.int64())
        return list(ints.to_pylist())
    values = list(arr.to_pylist())
    if kind == "float":
        return [None if v is None or v != v else v for v in values]
    return values


def to_python(ctype: ColumnType, arr: pa.Array) -> list[Any]:
    """Read a normalised array into Python values the twin evaluates row by row."""
    if not ctype.is_list:
        return _scalars(ctype.kind, arr)
    offsets = arr.offsets.to_pylist()
    child = _scalars(ctype.kind, arr.values)
    valid = arr.is_valid().to_pylist()
    return [child[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr))]
