"""Segment filtering behaviour, identical on both backends (see docs/dispatch.md for the rules)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

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
    select_contacts,
)
from cadence.dispatch.expr import DURATION_UNITS_US, Expr
from cadence.dispatch.filter import Backend

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = DURATION_UNITS_US["d"]


@pytest.fixture
def contacts() -> pa.Table:
    return pa.table(
        {
            "lead_score": pa.array([10, 60, None, 99, 50], pa.int64()),
            "country": ["US", "PH", None, "SG", "ÜS"],
            "opted_in": [True, True, False, None, True],
            "last_activity": pa.array(
                [
                    datetime(2026, 11, 20),
                    datetime(2026, 1, 1),
                    None,
                    datetime(2026, 11, 25),
                    datetime(2026, 10, 27, 12),
                ],
                pa.timestamp("us"),
            ),
            "areas": [["Manila", "Cebu"], [], None, ["Cebu", None], ["Davao"]],
            "budget_max": [1.5, float("nan"), 3.0, None, 2.0],
            "saved": pa.array([[1, 2], [3], [], None, [2]], pa.list_(pa.int64())),
        }
    )


def run(table: pa.Table, expr: Expr, backend: Backend, **event: object) -> list[int]:
    mask = filter_contacts(table, expr, now=NOW, event=event or None, backend=backend)
    assert mask.dtype == np.bool_
    return [int(x) for x in mask]


CASES: list[tuple[str, Expr, list[int]]] = [
    ("ge", Cmp(">=", Col("lead_score"), Lit(50)), [0, 1, 0, 1, 1]),
    ("not of null stays null", Not(Cmp(">=", Col("lead_score"), Lit(50))), [1, 0, 0, 0, 0]),
    ("literal on the left", Cmp(">", Lit(50), Col("lead_score")), [1, 0, 0, 0, 0]),
    ("int vs float literal", Cmp("<", Col("lead_score"), Lit(50.5)), [1, 0, 0, 0, 1]),
    ("in list", In(Col("country"), Lit(("US", "SG"))), [1, 0, 0, 1, 0]),
    ("in list with null", In(Col("country"), Lit(("US", None))), [1, 0, 0, 0, 0]),
    ("not in list with null", Not(In(Col("country"), Lit(("US", None)))), [0, 0, 0, 0, 0]),
    ("unicode equality", Cmp("=", Col("country"), Lit("ÜS")), [0, 0, 0, 0, 1]),
    ("bare boolean", Truthy(Col("opted_in")), [1, 1, 0, 0, 1]),
    ("within 30d", Within(Col("last_activity"), 30 * DAY), [1, 0, 0, 1, 1]),
    ("within is inclusive", Within(Col("last_activity"), 30 * DAY - 1), [1, 0, 0, 1, 0]),
    ("NaN is null", Cmp("<", Col("budget_max"), Lit(2)), [1, 0, 0, 0, 0]),
    ("contains on a list", Contains(Col("areas"), Lit("Cebu")), [1, 0, 0, 1, 0]),
    ("list with null, no match", In(Lit("Davao"), Col("areas")), [0, 0, 0, 0, 1]),
    ("not: list with null", Not(In(Lit("Davao"), Col("areas"))), [1, 1, 0, 0, 0]),
    ("substring", Contains(Col("country"), Lit("S")), [1, 0, 0, 1, 1]),
    ("startswith", StartsWith(Col("country"), Lit("P")), [0, 1, 0, 0, 0]),
    ("int list column", In(Lit(2), Col("saved")), [1, 0, 0, 0, 1]),
    (
        "compound",
        And(
            (
                Cmp(">=", Col("lead_score"), Lit(50)),
                In(Col("country"), Lit(("US", "PH", "SG"))),
                Truthy(Col("opted_in")),
            )
        ),
        [0, 1, 0, 0, 0],
    ),
    ("or absorbs null", Or((Cmp(">=", Col("lead_score"), Lit(50)), Lit(True))), [1] * 5),
    ("and with null const", And((Truthy(Col("opted_in")), Lit(None))), [0] * 5),
    ("column vs column", Cmp("<", Col("budget_max"), Col("lead_score")), [1, 0, 0, 0, 1]),
]


@pytest.mark.parametrize(("name", "expr", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_cases(
    contacts: pa.Table, backend: Backend, name: str, expr: Expr, expected: list[int]
) -> None:
    assert run(contacts, expr, backend) == expected


def test_fan_out_event_fields(contacts: pa.Table, backend: Backend) -> None:
    listing = And(
        (
            Cmp(">=", Col("budget_max"), EventField("price")),
            In(EventField("city"), Col("areas")),
        )
    )
    assert run(contacts, listing, backend, price=1.0, city="Cebu") == [1, 0, 0, 0, 0]
    # contact scalar in an event list, and a missing event field is null
    assert run(contacts, In(Col("country"), EventField("markets")), backend, markets=["PH"]) == [
        0,
        1,
        0,
        0,
        0,
    ]
    assert run(contacts, In(Col("country"), EventField("missing")), backend, x=1) == [0] * 5
    when = Cmp("<", Col("last_activity"), EventField("at"))
    assert run(contacts, when, backend, at=datetime(2026, 11, 21, tzinfo=UTC)) == [1, 1, 0, 0, 1]


def test_event_decimals_and_dates(contacts: pa.Table, backend: Backend) -> None:
    from datetime import date
    from decimal import Decimal

    assert run(
        contacts, Cmp(">", Col("lead_score"), EventField("p")), backend, p=Decimal("59.5")
    ) == [
        0,
        1,
        0,
        1,
        0,
    ]
    day = EventField("d")
    assert run(contacts, Cmp(">=", Col("last_activity"), day), backend, d=date(2026, 11, 20)) == [
        1,
        0,
        0,
        1,
        0,
    ]


def test_timestamp_literal(contacts: pa.Table, backend: Backend) -> None:
    cutoff = Lit(Timestamp.from_datetime(datetime(2026, 11, 1)))
    assert run(contacts, Cmp(">", Col("last_activity"), cutoff), backend) == [1, 0, 0, 1, 0]


def test_within_ends_now(backend: Backend) -> None:
    """`within 30d` is the last 30 days, `now` included: an instant after now (a renewal
    date a contacts file holds) is not in it, as the evaluator reads it."""
    now = Timestamp.from_datetime(NOW).micros
    moments = [now - 30 * DAY, now, now + 1, now + 5 * DAY, None]
    table = pa.table({"t": pa.array(moments, pa.timestamp("us", tz="UTC"))})
    assert run(table, Within(Col("t"), 30 * DAY), backend) == [1, 1, 0, 0, 0]
    assert run(table, Not(Within(Col("t"), 30 * DAY)), backend) == [0, 0, 1, 1, 0]


def test_sliced_and_chunked_tables(contacts: pa.Table, backend: Backend) -> None:
    chunked = pa.concat_tables([contacts.slice(0, 2), contacts.slice(2)])
    assert chunked.column("country").num_chunks == 2
    expr = And((Truthy(Col("opted_in")), Contains(Col("areas"), Lit("Davao"))))
    assert run(chunked, expr, backend) == [0, 0, 0, 0, 1]
    sliced = contacts.slice(1, 3)
    assert run(sliced, In(Col("country"), Lit(("PH", "SG"))), backend) == [1, 0, 1]


def test_other_arrow_types(backend: Backend) -> None:
    table = pa.table(
        {
            "n": pa.array([1, 2, None], pa.int8()),
            "f": pa.array([0.5, None, 2.5], pa.float32()),
            "s": pa.array(["a", "bb", None], pa.large_string()),
            "d": pa.array(["x", "y", "x"]).dictionary_encode(),
            "ts": pa.array([0, 10**9, None], pa.timestamp("s", tz="UTC")),
        }
    )
    assert run(table, Cmp("=", Col("n"), Lit(2)), backend) == [0, 1, 0]
    assert run(table, Cmp(">", Col("f"), Lit(1)), backend) == [0, 0, 1]
    assert run(table, StartsWith(Col("s"), Lit("b")), backend) == [0, 1, 0]
    assert run(table, Cmp("=", Col("d"), Lit("x")), backend) == [1, 0, 1]
    ts = Lit(Timestamp(10**15))
    assert run(table, Cmp("=", Col("ts"), ts), backend) == [0, 1, 0]


def test_dict_of_numpy_arrays(backend: Backend) -> None:
    data = {"score": np.arange(10, dtype=np.int64), "ok": np.arange(10) % 2 == 0}
    expr = And((Cmp(">", Col("score"), Lit(3)), Truthy(Col("ok"))))
    mask = filter_contacts(data, expr, now=NOW, backend=backend)
    assert list(np.flatnonzero(mask)) == [4, 6, 8]
    assert list(select_contacts(data, expr, now=NOW, backend=backend)) == [4, 6, 8]


def test_empty_table_and_constant_predicates(contacts: pa.Table, backend: Backend) -> None:
    empty = contacts.slice(0, 0)
    assert len(filter_contacts(empty, Truthy(Col("opted_in")), now=NOW, backend=backend)) == 0
    assert run(contacts, Lit(True), backend) == [1] * 5
    assert run(contacts, Not(Lit(None)), backend) == [0] * 5


@pytest.mark.parametrize(
    "expr",
    [
        Cmp("=", Col("country"), Lit(1)),
        Cmp("=", Col("nope"), Lit(1)),
        Truthy(Col("lead_score")),
        In(Col("country"), Lit(("US", 1))),
        In(Col("country"), Col("country")),
        In(Col("lead_score"), Col("areas")),
        Contains(Col("lead_score"), Lit("x")),
        Cmp("<", Col("areas"), Lit("x")),
        Lit("text"),
    ],
)
def test_type_errors_are_raised_before_evaluation(
    contacts: pa.Table, backend: Backend, expr: Expr
) -> None:
    with pytest.raises(ExprTypeError):
        filter_contacts(contacts, expr, now=NOW, backend=backend)


def test_large_batches_use_the_parallel_path(backend: Backend) -> None:
    n = 200_003
    rng = np.random.default_rng(3)
    score = rng.integers(0, 100, n)
    valid = rng.random(n) > 0.1
    table = pa.table({"s": pa.array(score, mask=~valid)})
    expr = Not(Cmp("<", Col("s"), Lit(50)))
    mask = filter_contacts(table, expr, now=NOW, backend=backend)
    assert np.array_equal(mask, valid & (score >= 50))
