"""Compile a segment predicate to a PostgreSQL boolean expression, for push-down into queries.

The SQL gives the same answers as `filter_contacts` (a differential test holds it to that):
SQL's own three-valued logic matches ours, and the few places where PostgreSQL differs are
bridged explicitly — NaN is read as null, strings order by code point (`COLLATE "C"`), mixed
int/float comparisons go through double precision, and `x = ANY(empty)` keeps a null `x` null.

The expression is planned with the same planner as the in-process filter (so type errors, event
binding and `within` are identical); the caller says how each column is spelled in SQL and what
its type is. Column types expected on the PostgreSQL side: int -> bigint, float -> double
precision, str -> text, bool -> boolean, ts -> timestamptz, lists -> arrays of those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cadence.dispatch.columns import ColumnType, Kind
from cadence.dispatch.expr import Expr, Timestamp
from cadence.dispatch.plan import (
    PBool,
    PCmp,
    PCol,
    PConst,
    PIn,
    PList,
    PLit,
    PNode,
    PNot,
    PStr,
    PTruthy,
    family,
    plan,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SQL_TYPE: dict[Kind, str] = {
    "int": "bigint",
    "float": "double precision",
    "str": "text",
    "bool": "boolean",
    "ts": "timestamptz",
}
_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class SqlUnsupported(ValueError):
    """A literal PostgreSQL cannot hold (a timestamp outside years 1-9999, a NUL in a string)."""


def quote_ident(name: str) -> str:
    """Quote a column name as a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _py_value(kind: Kind, value: Any) -> Any:
    if kind == "ts":
        try:
            return _EPOCH + timedelta(microseconds=int(value))
        except OverflowError as exc:
            raise SqlUnsupported(f"timestamp {value} us is outside years 1-9999") from exc
    if kind == "str" and "\x00" in value:
        raise SqlUnsupported("PostgreSQL text cannot contain NUL characters")
    return value


class _Compiler:
    def __init__(self, names: tuple[str, ...], column_sql: Callable[[str], str]) -> None:
        self.names = names
        self.column_sql = column_sql
        self.params: list[Any] = []

    def param(self, kind: Kind, value: Any, array: bool = False) -> str:
        if array:
            self.params.append([None if v is None else _py_value(kind, v) for v in value])
            return f"%s::{_SQL_TYPE[kind]}[]"
        self.params.append(_py_value(kind, value))
        return f"%s::{_SQL_TYPE[kind]}"

    def col(self, c: PCol) -> str:
        sql = self.column_sql(self.names[c.index])
        if c.ctype.kind == "float":
            nan = "'NaN'::double precision"
            if c.ctype.is_list:
                return f"array_replace({sql}, {nan}, NULL)"
            return f"NULLIF({sql}, {nan})"
        return sql

    def scalar(self, x: PCol | PLit) -> tuple[str, Kind]:
        if isinstance(x, PCol):
            return self.col(x), x.ctype.kind
        return self.param(x.kind, x.value), x.kind

    def node(self, n: PNode) -> str:
        match n:
            case PConst(value):
                return "NULL::boolean" if value is None else ("TRUE" if value else "FALSE")
            case PTruthy(col):
                return f"({self.col(col)})"
            case PCmp(op, left, right):
                a, ak = self.scalar(left)
                b, bk = self.scalar(right)
                if family(ak) == "num" and ak != bk:
                    a, b = f"({a})::double precision", f"({b})::double precision"
                elif ak == "str":
                    a, b = f'({a}) COLLATE "C"', f'({b}) COLLATE "C"'
                return f"({a} {_OPS[op]} {b})"
            case PIn(item, container):
                return self.member(item, container)
            case PStr(op, left, right):
                a, _ = self.scalar(left)
                b, _ = self.scalar(right)
                if op == "contains":
                    return f"(strpos({a}, {b}) > 0)"
                return f"starts_with({a}, {b})"
            case PBool(op, items):
                joiner = " AND " if op == "and" else " OR "
                return "(" + joiner.join(self.node(i) for i in items) + ")"
            case PNot(item):
                return f"(NOT {self.node(item)})"
        raise TypeError(f"not a plan node: {n!r}")

    def member(self, item: PCol | PLit, container: PCol | PList) -> str:
        x, ik = self.scalar(item)
        tests: list[str] = []
        if isinstance(container, PList):
            same = [e.value for e in container.items if e.kind == ik]
            other = [e.value for e in container.items if e.kind != ik]  # int vs float only
            if ik == "float":
                same, other = same + [float(v) for v in other], []
            if container.has_null:
                same.append(None)
            if same:
                tests.append(f"{x} = ANY({self.param(ik, same, array=True)})")
            if other:
                arr = self.param("float", [float(v) for v in other], array=True)
                tests.append(f"({x})::double precision = ANY({arr})")
        else:
            arr = self.col(container)
            ek = container.ctype.kind
            if family(ik) == "num" and ik != ek:
                x, arr = f"({x})::double precision", f"({arr})::double precision[]"
            tests.append(f"{x} = ANY({arr})")
        found = " OR ".join(tests) if tests else "FALSE"
        if isinstance(item, PLit):  # never null (the planner folds null literals away)
            return f"({found})"
        # `NULL = ANY('{}')` is false in SQL; in ours a null item is always null.
        return f"(CASE WHEN {x} IS NULL THEN NULL ELSE ({found}) END)"


def to_sql(
    expr: Expr,
    schema: Mapping[str, ColumnType],
    *,
    now: datetime | Timestamp | int,
    event: Mapping[str, Any] | None = None,
    column_sql: Callable[[str], str] = quote_ident,
) -> tuple[str, list[Any]]:
    """The predicate as PostgreSQL SQL (psycopg `%s` placeholders) and its parameters."""
    if isinstance(now, datetime):
        now_us = Timestamp.from_datetime(now).micros
    elif isinstance(now, Timestamp):
        now_us = now.micros
    else:
        now_us = int(now)
    p = plan(expr, schema, now_us, event)
    c = _Compiler(p.columns, column_sql)
    return c.node(p.root), c.params
