"""The SQL push-down gives PostgreSQL's answer equal to the in-process filter's, row for row."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cadence.dispatch import And, Cmp, Col, EventField, In, Lit, Not, Truthy, Within
from cadence.dispatch.columns import ColumnType
from cadence.dispatch.expr import Expr
from cadence.dispatch.filter import filter_contacts, schema_of
from cadence.dispatch.sql import SqlUnsupported, quote_ident, to_sql

psycopg = pytest.importorskip("psycopg")

URL_ENV = "CADENCE_TEST_POSTGRES_URL"
NOW = 1_800_000_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = {
    "i": "bigint",
    "j": "bigint",
    "f": "double precision",
    "s": "text",
    "b": "boolean",
    "t": "timestamptz",
    "ls": "text[]",
    "li": "bigint[]",
}


@pytest.fixture(scope="module")
def pg() -> Iterator[Any]:
    url = os.environ.get(URL_ENV)
    if not url:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL is required under CI (${URL_ENV})")
        pytest.skip(f'${URL_ENV} is not set; start a server with: eval "$(bash .ci/postgres.sh)"')
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        yield conn


def pg_select(conn: Any, rows: list[dict[str, Any]], expr: Expr, event: Any) -> list[bool]:
    """Load the rows into a temporary table and evaluate the compiled predicate there."""
    schema = schema_of(arrow(rows))
    sql, params = to_sql(expr, schema, now=NOW, event=event)
    with conn.transaction(force_rollback=True):
        cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in COLUMNS.items())
        conn.execute(f"CREATE TEMP TABLE contacts (rid int, {cols}) ON COMMIT DROP")
        with conn.cursor() as cur:
            placeholders = ", ".join(["%s"] * (len(COLUMNS) + 1))
            cur.executemany(
                f"INSERT INTO contacts VALUES ({placeholders})",
                [[n] + [_pg_value(c, r[c]) for c in COLUMNS] for n, r in enumerate(rows)],
            )
        got = conn.execute(
            f"SELECT coalesce({sql}, false) FROM contacts ORDER BY rid", params
        ).fetchall()
    return [bool(g[0]) for g in got]


def _pg_value(col: str, v: Any) -> Any:
    if col == "t" and v is not None:
        return EPOCH + timedelta(microseconds=v)
    return v


def arrow(rows: list[dict[str, Any]]) -> pa.Table:
    types = {
        "i": pa.int64(),
        "j": pa.int64(),
        "f": pa.float64(),
        "s": pa.string(),
        "b": pa.bool_(),
        "t": pa.timestamp("us", tz="UTC"),
        "ls": pa.list_(pa.string()),
        "li": pa.list_(pa.int64()),
    }
    return pa.table({c: pa.array([r[c] for r in rows], types[c]) for c in COLUMNS})


def in_process(rows: list[dict[str, Any]], expr: Expr, event: Any) -> list[bool]:
    return [bool(x) for x in filter_contacts(arrow(rows), expr, now=NOW, event=event)]


TEXT = st.one_of(st.sampled_from(["", "a", "ab", "B", "ü", "日本"]), st.text(max_size=5)).filter(
    lambda s: "\x00" not in s
)
TIMES = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)
I64 = st.one_of(st.integers(-5, 5), st.integers(-(2**63), 2**63 - 1))
FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 2.0**53, float("nan")]))


def nullable(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s)


rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "i": nullable(I64),
            "j": nullable(st.integers(-5, 5)),
            "f": nullable(FLOATS),
            "s": nullable(TEXT),
            "b": nullable(st.booleans()),
            "t": nullable(TIMES),
            "ls": nullable(st.lists(nullable(TEXT), max_size=3)),
            "li": nullable(st.lists(nullable(st.integers(-5, 5)), max_size=3)),
        }
    ),
    min_size=1,
    max_size=8,
)


def _exprs() -> st.SearchStrategy[Expr]:
    from test_dispatch_differential import exprs  # the in-process differential's expressions

    return exprs


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=rows_strategy, expr=_exprs(), e=nullable(TEXT))
def test_sql_equals_in_process(pg: Any, rows: list[dict[str, Any]], expr: Expr, e: Any) -> None:
    event = {"e": e}
    try:
        expected = in_process(rows, expr, event)
        got = pg_select(pg, rows, expr, event)
    except SqlUnsupported:
        assume(False)
        return
    except TypeError:  # an ExprTypeError: both sides refuse the same expressions (planner)
        return
    assert got == expected


def test_examples_by_hand(pg: Any) -> None:
    rows = [
        {"i": 60, "j": 1, "f": float("nan"), "s": "PH", "b": True, "t": NOW - 86_400_000_000,
         "ls": ["Manila", None], "li": []},
        {"i": None, "j": 2, "f": 0.5, "s": None, "b": None, "t": None, "ls": None, "li": [1]},
        {"i": 10, "j": 3, "f": 2.0, "s": "US", "b": False, "t": 0, "ls": [], "li": None},
    ]  # fmt: skip
    cases: list[Expr] = [
        And((Cmp(">=", Col("i"), Lit(50)), In(Col("s"), Lit(("PH", "SG"))), Truthy(Col("b")))),
        Not(In(Col("s"), Lit(("US", None)))),
        In(EventField("city"), Col("ls")),
        Not(In(EventField("city"), Col("ls"))),
        Within(Col("t"), 7 * 86_400_000_000),
        Cmp("<", Col("f"), Col("i")),
        In(Col("j"), Col("li")),
        Cmp(">", Col("s"), Lit("Ü")),
    ]
    event = {"city": "Cebu"}
    for expr in cases:
        assert pg_select(pg, rows, expr, event) == in_process(rows, expr, event), expr


def test_column_spelling_and_parameters() -> None:
    schema = {"lead_score": ColumnType("int"), "country": ColumnType("str")}
    expr = And((Cmp(">=", Col("lead_score"), Lit(50)), In(Col("country"), Lit(("US", "CA")))))
    sql, params = to_sql(expr, schema, now=NOW, column_sql=lambda c: f"(attrs->>'{c}')")
    assert sql == (
        "(((attrs->>'lead_score') >= %s::bigint) AND (CASE WHEN (attrs->>'country') IS NULL "
        "THEN NULL ELSE ((attrs->>'country') = ANY(%s::text[])) END))"
    )
    assert params == [50, ["US", "CA"]]
