"""Type-check an expression against a table's columns and lower it to a plan both backends run.

Planning is shared: binding event fields, resolving `within`, type errors and constant folding
all happen here once, so the Rust core and the Python twin only differ in how they loop.

Missing values follow SQL's three-valued logic (see docs/dispatch.md): a comparison, `in`,
`contains` or `startswith` with a null operand is null (unknown); `and`/`or`/`not` combine
true/false/null as SQL does; a row is selected only when the whole predicate is true.
Float NaN counts as null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from cadence.dispatch.columns import ColumnType, Kind
from cadence.dispatch.expr import (
    And,
    Cmp,
    CmpOp,
    Col,
    Contains,
    EventField,
    Expr,
    In,
    Lit,
    LitValue,
    Not,
    Operand,
    Or,
    Scalar,
    StartsWith,
    Timestamp,
    Truthy,
    Within,
)

Tri: TypeAlias = bool | None

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


class ExprTypeError(TypeError):
    """An expression does not fit the columns it is evaluated against."""


@dataclass(frozen=True, slots=True)
class PCol:
    """A resolved column reference: index into the plan's column list."""

    index: int
    ctype: ColumnType


@dataclass(frozen=True, slots=True)
class PLit:
    """A typed non-null scalar literal."""

    kind: Kind
    value: Any


@dataclass(frozen=True, slots=True)
class PList:
    """A list literal: its non-null elements and whether it held a null."""

    items: tuple[PLit, ...]
    has_null: bool


@dataclass(frozen=True, slots=True)
class PConst:
    """A folded constant: True, False or None (null)."""

    value: Tri


@dataclass(frozen=True, slots=True)
class PTruthy:
    """A boolean column used as a predicate."""

    col: PCol


@dataclass(frozen=True, slots=True)
class PCmp:
    """A comparison; the left side is always a column."""

    op: CmpOp
    left: PCol
    right: PCol | PLit


@dataclass(frozen=True, slots=True)
class PIn:
    """Membership of a scalar in a list literal or a list column (not both literals)."""

    item: PCol | PLit
    container: PCol | PList


@dataclass(frozen=True, slots=True)
class PStr:
    """`contains` / `startswith` on strings (not both literals)."""

    op: str
    left: PCol | PLit
    right: PCol | PLit


@dataclass(frozen=True, slots=True)
class PBool:
    """`and` / `or` over sub-plans."""

    op: str
    items: tuple[PNode, ...]


@dataclass(frozen=True, slots=True)
class PNot:
    """Negation of a sub-plan."""

    item: PNode


PNode: TypeAlias = PConst | PTruthy | PCmp | PIn | PStr | PBool | PNot


@dataclass(frozen=True, slots=True)
class Plan:
    """A planned predicate and the column names it reads, in index order."""

    root: PNode
    columns: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Scalar semantics shared by planning (constant folding) and the Python twin


def family(kind: Kind) -> str:
    """Kinds that compare with each other share a family; int and float are both numbers."""
    return "num" if kind in ("int", "float") else kind


def _numbers(ak: Kind, av: Any, bk: Kind, bv: Any) -> tuple[Any, Any]:
    if ak == bk:
        return av, bv
    return float(av), float(bv)


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

FLIP: dict[CmpOp, CmpOp] = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def compare(op: str, ak: Kind, av: Any, bk: Kind, bv: Any) -> bool:
    """Compare two non-null scalars of one family: int/int exactly, mixed numbers as float64."""
    a, b = _numbers(ak, av, bk, bv)
    return _CMP[op](a, b)


def equal(ak: Kind, av: Any, bk: Kind, bv: Any) -> bool:
    """Equality as `compare('=')` has it."""
    a, b = _numbers(ak, av, bk, bv)
    return bool(a == b)


def member(ik: Kind, iv: Any, ek: Kind, values: list[Any] | tuple[Any, ...]) -> Tri:
    """`iv in values` for homogeneous values (None = null element), three-valued."""
    saw_null = False
    for v in values:
        if v is None:
            saw_null = True
        elif equal(ik, iv, ek, v):
            return True
    return None if saw_null else False


def str_op(op: str, a: str, b: str) -> bool:
    """`contains` / `startswith` on two non-null strings."""
    return (b in a) if op == "contains" else a.startswith(b)


def tri_and(values: list[Tri]) -> Tri:
    """SQL AND."""
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def tri_or(values: list[Tri]) -> Tri:
    """SQL OR."""
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


# ---------------------------------------------------------------------------------------------
# Planning


def _lit_scalar(value: Scalar) -> PLit | None:
    """Type a Python scalar; None for null. Ints beyond int64 become floats (±inf if huge)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return PLit("bool", value)
    if isinstance(value, int):
        if I64_MIN <= value <= I64_MAX:
            return PLit("int", value)
        try:
            return PLit("float", float(value))
        except OverflowError:
            return PLit("float", math.inf if value > 0 else -math.inf)
    if isinstance(value, float):
        return None if math.isnan(value) else PLit("float", value)
    if isinstance(value, str):
        return PLit("str", value)
    if isinstance(value, Timestamp):
        if not I64_MIN <= value.micros <= I64_MAX:
            raise ExprTypeError(f"timestamp out of range: {value.micros} us")
        return PLit("ts", value.micros)
    raise ExprTypeError(f"unsupported literal {value!r}")


def _lit_list(values: tuple[Scalar, ...]) -> PList:
    items: list[PLit] = []
    has_null = False
    fam: str | None = None
    for v in values:
        lit = _lit_scalar(v)
        if lit is None:
            has_null = True
            continue
        f = family(lit.kind)
        if fam is not None and f != fam:
            raise ExprTypeError(f"list literal mixes {fam} and {f}")
        fam = f
        items.append(lit)
    return PList(tuple(items), has_null)


def event_value(value: Any) -> LitValue:
    """Convert one event field's Python value to a literal value."""
    if isinstance(value, datetime):
        return Timestamp.from_datetime(value)
    if isinstance(value, date):
        return Timestamp.from_datetime(datetime(value.year, value.month, value.day))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None if value.is_nan() else float(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return tuple(event_value(v) for v in value)  # type: ignore[misc]
    if value is None or isinstance(value, bool | int | float | str | Timestamp):
        return value
    raise ExprTypeError(f"unsupported event value {value!r}")


class _Planner:
    def __init__(
        self, schema: Mapping[str, ColumnType], now: int, event: Mapping[str, Any] | None
    ) -> None:
        self.schema = schema
        self.now = now
        self.event = event or {}
        self.columns: list[str] = []

    # operands ---------------------------------------------------------------------------
    def operand(self, op: Operand) -> PCol | PLit | PList | None:
        if isinstance(op, EventField):
            op = Lit(event_value(self.event.get(op.name)))
        if isinstance(op, Lit):
            if isinstance(op.value, tuple):
                return _lit_list(op.value)
            return _lit_scalar(op.value)
        if isinstance(op, Col):
            if op.name not in self.schema:
                raise ExprTypeError(f"unknown column {op.name!r}")
            if op.name not in self.columns:
                self.columns.append(op.name)
            return PCol(self.columns.index(op.name), self.schema[op.name])
        raise ExprTypeError(f"not an operand: {op!r}")

    @staticmethod
    def _scalar_kind(x: PCol | PLit | PList, what: str) -> Kind:
        if isinstance(x, PList) or (isinstance(x, PCol) and x.ctype.is_list):
            raise ExprTypeError(f"{what} needs a scalar, got a list")
        return x.kind if isinstance(x, PLit) else x.ctype.kind

    # nodes ------------------------------------------------------------------------------
    def node(self, e: Expr) -> PNode:
        match e:
            case Lit(value):
                if value is None or isinstance(value, bool):
                    return PConst(value)
                raise ExprTypeError(f"literal {value!r} is not a condition")
            case Truthy(operand):
                return self.truthy(operand)
            case Cmp(op, left, right):
                return self.cmp(op, left, right)
            case Within(column, micros):
                # The last DUR ends now: a future instant (a renewal date in a contacts
                # file) is not within it, as the evaluator reads `within`.
                return self.boolean(
                    "and",
                    [
                        self.cmp(">=", column, Lit(Timestamp(self.now - micros))),
                        self.cmp("<=", column, Lit(Timestamp(self.now))),
                    ],
                )
            case In(item, container):
                return self.member(item, container)
            case Contains(haystack, needle):
                h = self.operand(haystack)
                if isinstance(h, PList) or (isinstance(h, PCol) and h.ctype.is_list):
                    return self.member(needle, haystack)
                return self.strop("contains", haystack, needle)
            case StartsWith(text, prefix):
                return self.strop("startswith", text, prefix)
            case And(items):
                return self.boolean("and", [self.node(i) for i in items])
            case Or(items):
                return self.boolean("or", [self.node(i) for i in items])
            case Not(item):
                inner = self.node(item)
                if isinstance(inner, PConst):
                    return PConst(None if inner.value is None else not inner.value)
                return PNot(inner)
        raise ExprTypeError(f"not an expression: {e!r}")

    def truthy(self, operand: Operand) -> PNode:
        x = self.operand(operand)
        if x is None:
            return PConst(None)
        if self._scalar_kind(x, "a condition") != "bool":
            raise ExprTypeError(f"{operand} is not boolean")
        if isinstance(x, PLit):
            return PConst(bool(x.value))
        assert isinstance(x, PCol)
        return PTruthy(x)

    def cmp(self, op: CmpOp, left: Operand, right: Operand) -> PNode:
        a, b = self.operand(left), self.operand(right)
        if a is None or b is None:
            for x in (a, b):
                if x is not None:
                    self._scalar_kind(x, "a comparison")
            return PConst(None)
        ak, bk = self._scalar_kind(a, "a comparison"), self._scalar_kind(b, "a comparison")
        if family(ak) != family(bk):
            raise ExprTypeError(f"cannot compare {ak} with {bk}")
        if isinstance(a, PLit) and isinstance(b, PLit):
            return PConst(compare(op, ak, a.value, bk, b.value))
        if isinstance(a, PLit):
            a, b, op = b, a, FLIP[op]
        assert isinstance(a, PCol) and not isinstance(b, PList)
        return PCmp(op, a, b)

    def member(self, item: Operand, container: Operand) -> PNode:
        i, c = self.operand(item), self.operand(container)
        if c is None:
            if i is not None:
                self._scalar_kind(i, "`in`")
            return PConst(None)
        if isinstance(c, PLit) or (isinstance(c, PCol) and not c.ctype.is_list):
            raise ExprTypeError("`in` needs a list on its right")
        if i is None:
            return PConst(None)
        ik = self._scalar_kind(i, "`in`")
        assert not isinstance(i, PList)
        if isinstance(c, PList):
            if c.items and family(c.items[0].kind) != family(ik):
                raise ExprTypeError(f"cannot look for {ik} in a list of {c.items[0].kind}")
            if isinstance(i, PLit):
                found = any(equal(ik, i.value, e.kind, e.value) for e in c.items)
                return PConst(True if found else (None if c.has_null else False))
            if not c.items:
                return PConst(None) if c.has_null else PIn(i, c)
        else:
            if family(c.ctype.kind) != family(ik):
                raise ExprTypeError(f"cannot look for {ik} in a list of {c.ctype.kind}")
        return PIn(i, c)

    def strop(self, op: str, left: Operand, right: Operand) -> PNode:
        a, b = self.operand(left), self.operand(right)
        for x in (a, b):
            if x is not None and self._scalar_kind(x, f"`{op}`") != "str":
                raise ExprTypeError(f"`{op}` needs strings")
        if a is None or b is None:
            return PConst(None)
        assert not isinstance(a, PList) and not isinstance(b, PList)
        if isinstance(a, PLit) and isinstance(b, PLit):
            return PConst(str_op(op, a.value, b.value))
        return PStr(op, a, b)

    @staticmethod
    def boolean(op: str, items: list[PNode]) -> PNode:
        consts = [i.value for i in items if isinstance(i, PConst)]
        rest = [i for i in items if not isinstance(i, PConst)]
        folded = tri_and(consts) if op == "and" else tri_or(consts)
        if (op == "and" and folded is False) or (op == "or" and folded is True):
            return PConst(folded)
        if not rest:
            return PConst(folded)
        out: list[PNode] = list(rest)
        if folded is None:
            out.append(PConst(None))
        return out[0] if len(out) == 1 else PBool(op, tuple(out))


def plan(
    expr: Expr,
    schema: Mapping[str, ColumnType],
    now: int,
    event: Mapping[str, Any] | None = None,
) -> Plan:
    """Bind event fields, resolve `within` against `now` (µs), type-check and fold constants."""
    p = _Planner(schema, now, event)
    root = p.node(expr)
    return Plan(root, tuple(p.columns))


# ---------------------------------------------------------------------------------------------
# Encoding for the Rust core: nested tuples


def _enc_operand(x: PCol | PLit) -> tuple[Any, ...]:
    if isinstance(x, PCol):
        return ("col", x.index)
    return ("lit", x.kind, x.value)


def encode(node: PNode) -> tuple[Any, ...]:
    """The plan as nested tuples, the shape `_dispatch_core.filter_mask` parses."""
    match node:
        case PConst(value):
            return ("const", -1 if value is None else int(value))
        case PTruthy(col):
            return ("truthy", col.index)
        case PCmp(op, left, right):
            return ("cmp", op, _enc_operand(left), _enc_operand(right))
        case PIn(item, container):
            if isinstance(container, PList):
                enc: tuple[Any, ...] = (
                    "list",
                    [_enc_operand(i) for i in container.items],
                    container.has_null,
                )
            else:
                enc = _enc_operand(container)
            return ("in", _enc_operand(item), enc)
        case PStr(op, left, right):
            return (op, _enc_operand(left), _enc_operand(right))
        case PBool(op, items):
            return (op, [encode(i) for i in items])
        case PNot(item):
            return ("not", encode(item))
    raise TypeError(f"not a plan node: {node!r}")
