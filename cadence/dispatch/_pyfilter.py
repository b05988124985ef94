"""The pure-Python twin of the Rust segment filter: the reference semantics, row by row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
    Tri,
    compare,
    member,
    str_op,
    tri_and,
    tri_or,
)

RowFn = Callable[[int], Tri]


def _getter(x: PCol | PLit, cols: Sequence[list[Any]]) -> Callable[[int], Any]:
    if isinstance(x, PCol):
        values = cols[x.index]
        return values.__getitem__
    value = x.value
    return lambda _i: value


def _kind(x: PCol | PLit) -> Any:
    return x.kind if isinstance(x, PLit) else x.ctype.kind


def _compile(node: PNode, cols: Sequence[list[Any]]) -> RowFn:
    match node:
        case PConst(value):
            return lambda _i: value
        case PTruthy(col):
            values = cols[col.index]
            return values.__getitem__
        case PCmp(op, left, right):
            ga, gb = _getter(left, cols), _getter(right, cols)
            ak, bk = _kind(left), _kind(right)

            def cmp_row(i: int) -> Tri:
                a, b = ga(i), gb(i)
                if a is None or b is None:
                    return None
                return compare(op, ak, a, bk, b)

            return cmp_row
        case PIn(item, container):
            gi, ik = _getter(item, cols), _kind(item)
            if isinstance(container, PList):
                items = container.items
                has_null = container.has_null

                def in_list(i: int) -> Tri:
                    v = gi(i)
                    if v is None:
                        return None
                    for e in items:
                        if compare("=", ik, v, e.kind, e.value):
                            return True
                    return None if has_null else False

                return in_list
            lists, ek = cols[container.index], container.ctype.kind

            def in_col(i: int) -> Tri:
                v, lst = gi(i), lists[i]
                if v is None or lst is None:
                    return None
                return member(ik, v, ek, lst)

            return in_col
        case PStr(op, left, right):
            ga, gb = _getter(left, cols), _getter(right, cols)

            def str_row(i: int) -> Tri:
                a, b = ga(i), gb(i)
                if a is None or b is None:
                    return None
                return str_op(op, a, b)

            return str_row
        case PBool(op, items):
            fns = [_compile(i, cols) for i in items]
            combine = tri_and if op == "and" else tri_or
            return lambda i: combine([f(i) for f in fns])
        case PNot(item):
            f = _compile(item, cols)

            def not_row(i: int) -> Tri:
                v = f(i)
                return None if v is None else not v

            return not_row
    raise TypeError(f"not a plan node: {node!r}")


def filter_rows(root: PNode, cols: Sequence[list[Any]], n: int) -> list[bool]:
    """Evaluate a plan over `n` rows of Python column lists; True where the predicate is true."""
    f = _compile(root, cols)
    return [f(i) is True for i in range(n)]
