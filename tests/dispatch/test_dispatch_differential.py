"""Differential tests: on generated inputs the Rust core and the Python twin agree exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence import _backend
from cadence.dispatch import (
    And,
    Cmp,
    Col,
    Contains,
    EventField,
    ExprTypeError,
    In,
    Lit,
    Not,
    Or,
    StartsWith,
    Timestamp,
    Truthy,
    Within,
    filter_contacts,
)
from cadence.dispatch.caps import CapRule, FrequencyCaps
from cadence.dispatch.expr import CMP_OPS, Expr, from_json, to_json
from cadence.dispatch.limiter import ProviderLimit, RateLimiter, TenantLimit

pytestmark = pytest.mark.skipif(_backend.core is None, reason="needs the Rust core")

I64 = st.integers(-(2**63), 2**63 - 1)
SMALL_INTS = st.integers(-5, 5)
INTS = st.one_of(SMALL_INTS, I64)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0**53, 9.2e18]),
)
TEXT = st.one_of(st.sampled_from(["", "a", "ab", "b", "ü", "日本", "a\x00b"]), st.text(max_size=6))
TIMES = st.one_of(st.integers(-5, 5), st.integers(-(2**62), 2**62))
NOW = 0

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nullable(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 12))
    col = lambda s: draw(st.lists(nullable(s), min_size=n, max_size=n))  # noqa: E731
    lists = lambda s: draw(  # noqa: E731
        st.lists(nullable(st.lists(nullable(s), max_size=4)), min_size=n, max_size=n)
    )
    table = pa.table(
        {
            "i": pa.array(col(INTS), pa.int64()),
            "j": pa.array(col(SMALL_INTS), pa.int64()),
            "f": pa.array(col(FLOATS), pa.float64()),
            "s": pa.array(col(TEXT), pa.string()),
            "b": pa.array(col(st.booleans()), pa.bool_()),
            "t": pa.array(col(TIMES), pa.timestamp("us")),
            "ls": pa.array(lists(TEXT), pa.list_(pa.string())),
            "li": pa.array(lists(SMALL_INTS), pa.large_list(pa.int64())),
        }
    )
    if n > 2 and draw(st.booleans()):
        start = draw(st.integers(0, n - 1))
        table = pa.concat_tables([table.slice(0, start), table.slice(start)])
    return table


NUM_COLS = ["i", "j", "f"]
SCALAR_LITS = st.one_of(
    INTS.map(Lit), FLOATS.map(Lit), TEXT.map(Lit), st.booleans().map(Lit), st.none().map(Lit)
)


def lit_for(kind: str) -> st.SearchStrategy[Any]:
    return {
        "num": st.one_of(INTS, FLOATS, st.integers(-(2**70), 2**70)),
        "s": TEXT,
        "b": st.booleans(),
        "t": TIMES.map(Timestamp),
    }[kind]


KIND_OF = {"i": "num", "j": "num", "f": "num", "s": "s", "b": "b", "t": "t"}


@st.composite
def leaves(draw: st.DrawFn) -> Expr:
    choice = draw(st.integers(0, 9))
    col = draw(st.sampled_from(list(KIND_OF)))
    kind = KIND_OF[col]
    value = lit_for(kind)
    if choice == 0:
        other = draw(st.sampled_from([c for c, k in KIND_OF.items() if k == kind]))
        return Cmp(draw(st.sampled_from(CMP_OPS)), Col(col), Col(other))
    if choice <= 2:
        rhs = Lit(draw(nullable(value)))
        lhs: Any = Col(col)
        if draw(st.booleans()):
            lhs, rhs = rhs, lhs
        return Cmp(draw(st.sampled_from(CMP_OPS)), lhs, rhs)
    if choice == 3:
        return In(Col(col), Lit(tuple(draw(st.lists(nullable(value), max_size=10)))))
    if choice == 4:
        lst, k = draw(st.sampled_from([("ls", "s"), ("li", "num")]))
        item = draw(
            st.one_of(st.just(None), lit_for(k).map(Lit), st.just(Col("j" if k == "num" else "s")))
        )
        return In(Lit(None) if item is None else item, Col(lst))
    if choice == 5:
        op = draw(st.sampled_from([Contains, StartsWith]))
        a: Any = draw(st.one_of(st.just(Col("s")), nullable(TEXT).map(Lit)))
        b: Any = draw(st.one_of(st.just(Col("s")), nullable(TEXT).map(Lit)))
        return op(a, b)
    if choice == 6:
        return Truthy(Col("b"))
    if choice == 7:
        return Within(Col("t"), draw(st.integers(0, 2**62)))
    if choice == 8:
        return In(EventField("e"), Col("ls"))
    return Contains(Col(draw(st.sampled_from(["ls", "li"]))), draw(SCALAR_LITS))


exprs = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=0, max_size=4).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=0, max_size=4).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
        st.sampled_from([Lit(True), Lit(False), Lit(None)]),
    ),
    max_leaves=8,
)


def outcome(table: pa.Table, expr: Expr, backend: str, event: dict[str, Any]) -> Any:
    try:
        return filter_contacts(table, expr, now=NOW, event=event, backend=backend).tolist()  # type: ignore[arg-type]
    except ExprTypeError as exc:
        return ("error", str(exc))


@SETTINGS
@given(tables(), exprs, nullable(TEXT))
def test_filter_rust_equals_python(table: pa.Table, expr: Expr, e: str | None) -> None:
    event = {"e": e}
    assert outcome(table, expr, "rust", event) == outcome(table, expr, "python", event)


@SETTINGS
@given(exprs)
def test_expressions_round_trip_through_json(expr: Expr) -> None:
    assert from_json(to_json(expr)) == expr


DAY = 86_400_000_000


@st.composite
def cap_rules(draw: st.DrawFn) -> list[CapRule]:
    return draw(
        st.lists(
            st.builds(
                CapRule,
                st.sampled_from([None, "email", "sms"]),
                # A limit no count reaches, as large as the core holds, answers as no cap.
                st.one_of(st.integers(0, 4), st.just(2**63 - 1)),
                st.one_of(
                    st.integers(1, 10),
                    st.sampled_from([DAY, 7 * DAY]),
                    st.integers(1, 10 * DAY),
                    st.just(2**63 - 1),
                ),
            ),
            max_size=3,
        )
    )


# Instants a day or a week apart, one microsecond either side and equal, where a send exactly
# one period after another must pass and one a microsecond sooner must not; and the ends of
# the 64-bit range, where the window's edges overflow unless computed wider.
CAP_TIMES = st.one_of(
    TIMES,
    st.sampled_from([k * DAY + d for k in (-7, -1, 0, 1, 2, 7, 8) for d in (-1, 0, 1)]),
    st.sampled_from([-(2**63), -(2**63) + 1, 2**63 - 2, 2**63 - 1]),
)
requests = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["email", "sms", "push"]), CAP_TIMES),
    max_size=60,
)


@SETTINGS
@given(cap_rules(), requests, requests, requests)
def test_caps_rust_equals_python(
    rules: list[CapRule], history: list[Any], batch: list[Any], released: list[Any]
) -> None:
    results = []
    for backend in ("rust", "python"):
        caps = FrequencyCaps(rules, backend=backend)  # type: ignore[arg-type]
        cols = lambda rows: ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])  # noqa: E731
        caps.rebuild(*cols(history))
        # The scalar entry point (a gate's one send) answers the batch one request at a time.
        one = FrequencyCaps(rules, backend=backend)  # type: ignore[arg-type]
        one.rebuild(*cols(history))
        answers = [one.check_and_reserve_one(*request) for request in batch]
        d = caps.check_and_reserve(*cols(batch))
        assert answers == d.denied_by.tolist() and len(one) == len(caps)
        rel = caps.release(*cols(released + batch[:5]))
        d2 = caps.check_and_reserve(*cols(batch))
        pruned = caps.prune(0)
        results.append(
            (d.allowed.tolist(), d.denied_by.tolist(), rel.tolist(), d2.allowed.tolist(),
             d2.denied_by.tolist(), pruned, len(caps))
        )  # fmt: skip
    assert results[0] == results[1]


# The ends of the 64-bit range too, where the core saturates and the twin must as well.
READY = st.one_of(
    st.integers(0, 10),
    st.integers(0, 10**9),
    st.integers(-(2**50), 2**50),
    st.sampled_from([-(2**63), 2**63 - 2, 2**63 - 1]),
)


@st.composite
def limiter_setups(draw: st.DrawFn) -> Any:
    providers = {
        p: ProviderLimit(
            rate_per_s=draw(st.sampled_from([0.5, 1, 10, 333, 1000, 10**6, 10**7])),
            burst=draw(st.one_of(st.integers(1, 5), st.just(2**62))),
            batch_size=draw(st.integers(1, 5)),
            linger_us=draw(st.sampled_from([0, 1, 1000, 10**6])),
            recovery_us=draw(st.sampled_from([0, 10**6])),
        )
        for p in range(draw(st.integers(1, 3)))
    }
    tenants = draw(
        st.lists(st.tuples(st.sampled_from(list(providers)), st.integers(0, 3),
                           st.sampled_from([1, 100, 10**5]), st.integers(1, 3)), max_size=3)
    )  # fmt: skip
    defaults = draw(
        st.lists(st.tuples(st.sampled_from(list(providers)), st.sampled_from([2, 500])), max_size=2)
    )
    throttles = draw(
        st.lists(
            st.tuples(
                st.sampled_from(list(providers)),
                READY,
                st.one_of(st.integers(0, 10**7), st.just(2**63 - 1)),
            ),
            max_size=2,
        )
    )
    rows = st.tuples(
        st.integers(0, 5),
        st.integers(-2, 2**21),
        st.sampled_from(list(providers)),
        st.integers(0, 3),
        READY,
    )
    calls = draw(st.lists(st.lists(rows, max_size=40), min_size=1, max_size=3))
    return providers, tenants, defaults, throttles, calls


@SETTINGS
@given(limiter_setups())
def test_limiter_rust_equals_python(setup: Any) -> None:
    providers, tenants, defaults, throttles, calls = setup
    results = []
    for backend in ("rust", "python"):
        lim = RateLimiter(backend=backend)  # type: ignore[arg-type]
        for p, limit in providers.items():
            lim.set_provider(p, limit)
        for p, rate in defaults:
            lim.set_tenant_default(p, TenantLimit(rate))
        for p, t, rate, burst in tenants:
            lim.set_tenant(p, t, TenantLimit(rate, burst))
        out: list[Any] = []
        for i, rows in enumerate(calls):
            if i < len(throttles):
                lim.throttle(*throttles[i])
            arrays = [np.array([r[k] for r in rows], dtype=np.int64) for k in range(5)]
            s = lim.schedule(*arrays)
            out.append((s.send_at.tolist(), s.batch.tolist(), s.order.tolist()))
            out.append([(b.id, b.send_at, b.indices.tolist()) for b in s.batches()])
            out.append([lim.tat(p) for p in providers])
        results.append(out)
    assert results[0] == results[1]


def _big_table(n: int) -> pa.Table:
    rng = np.random.default_rng(17)
    words = np.array(["", "a", "ab", "ü", "日本", "zz"], dtype=object)
    per_row = rng.integers(0, 4, n)
    offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
    child = pa.array(words[rng.integers(0, len(words), int(offsets[-1]))].tolist())
    return pa.table(
        {
            "i": pa.array(rng.integers(-5, 5, n), mask=rng.random(n) < 0.1),
            "f": pa.array(rng.normal(size=n), mask=rng.random(n) < 0.1),
            "s": pa.array(words[rng.integers(0, len(words), n)].tolist(), mask=rng.random(n) < 0.1),
            "b": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.1),
            "ls": pa.ListArray.from_arrays(
                pa.array(offsets), child, mask=pa.array(rng.random(n) < 0.1)
            ),
        }
    )


BIG_EXPRS: list[Expr] = [
    And((Cmp(">=", Col("i"), Lit(0)), In(Col("s"), Lit(("a", "ü", None))), Truthy(Col("b")))),
    Or(
        (
            Not(Cmp("<", Col("f"), Lit(0.5))),
            In(Lit("ab"), Col("ls")),
            StartsWith(Col("s"), Lit("日")),
        )
    ),
    Not(And((Or((Truthy(Col("b")), Cmp("=", Col("i"), Col("i")))), Contains(Col("s"), Lit("b"))))),
    And((Cmp("<", Col("f"), Col("i")), Not(In(Col("s"), Col("ls"))), Lit(None))),
    Or((And((Truthy(Col("b")), Contains(Col("ls"), Lit("zz")))), Cmp("!=", Col("i"), Lit(2.0)))),
]


@pytest.mark.parametrize("k", range(len(BIG_EXPRS)))
def test_filter_multi_chunk_parallel_path_equals_python(k: int) -> None:
    """More than one parallel chunk, with nulls, so skipped (already decided) rows are covered."""
    table = _big_table(70_001)
    rust = filter_contacts(table, BIG_EXPRS[k], now=NOW, backend="rust")
    python = filter_contacts(table, BIG_EXPRS[k], now=NOW, backend="python")
    assert np.array_equal(rust, python)
    assert 0 < rust.sum() < len(rust) or BIG_EXPRS[k] == BIG_EXPRS[3]
