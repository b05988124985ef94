"""DSL expressions lower to the filter IR and select the contacts an ops person would expect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from cadence.dispatch import expr as ir
from cadence.dispatch import filter_contacts
from cadence.dispatch.caps import CapRule
from cadence.dispatch.filter import Backend
from cadence.dispatch.lower import (
    LoweringError,
    cap_rule,
    engagement_column,
    lower,
    program_segments,
)
from cadence.dsl import ast
from cadence.dsl.parser import parse_text

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = 86_400_000_000
SOURCE = """
segment engaged = lead_score >= 30 and last_activity within 30d and email_verified
segment asia = contact.country in ["PH", "SG"]
segment hot = engaged and count(property_viewed, 7d) >= 3 and not opened(welcome)
segment loop_a = loop_b
segment loop_b = loop_a
campaign c "C" {
  audience engaged and country in ["US", "CA", "PH"]
  exclude in_campaign(onboarding) or received(email, 24h) or unsubscribed
  cap email 3 per 7d
  cap 5 per 1d
  on launch { send email w }
}
when property_listed for contacts
  where contact.budget_max >= event.price and event.city in contact.areas
  send email new_listing
"""


@pytest.fixture(scope="module")
def program() -> ast.Program:
    return parse_text(SOURCE, "test.cadence")


def _segments(program: ast.Program) -> dict[str, ast.Expr]:
    return program_segments(program)


def _setting(program: ast.Program, key: str) -> ast.Expr:
    for d in program.declarations:
        if isinstance(d, ast.CampaignDecl):
            for s in d.settings:
                if isinstance(s, ast.ExprSetting) and s.key == key:
                    return s.expr
    raise KeyError(key)


def contacts() -> pa.Table:
    views = ir.event_count_column("property_viewed", 7 * DAY)
    return pa.table(
        {
            "lead_score": [10, 40, 80, None],
            "last_activity": pa.array(
                [datetime(2026, 11, 25), datetime(2026, 11, 20), datetime(2026, 1, 1), None],
                pa.timestamp("us", tz="UTC"),
            ),
            "email_verified": [True, True, True, True],
            "country": ["US", "PH", "CA", "SG"],
            views: [5, 3, 0, 9],
            engagement_column("opened", "welcome"): [False, False, True, None],
            engagement_column("in_campaign", "onboarding"): [False, True, False, False],
            engagement_column("received", "email", f"{DAY}us"): [False, False, False, True],
            "unsubscribed": [False, False, True, False],
            "budget_max": [400_000.0, 600_000.0, 900_000.0, None],
            "areas": [["Manila"], ["Cebu", "Manila"], [], None],
        }
    )


def run(e: ir.Expr, backend: Backend, event: dict[str, Any] | None = None) -> list[int]:
    return [int(x) for x in filter_contacts(contacts(), e, now=NOW, event=event, backend=backend)]


def test_segment_lowers_to_the_ir(program: ast.Program) -> None:
    e = lower(_segments(program)["engaged"])
    assert e == ir.And(
        (
            ir.Cmp(">=", ir.Col("lead_score"), ir.Lit(30)),
            ir.Within(ir.Col("last_activity"), 30 * DAY),
            ir.Truthy(ir.Col("email_verified")),
        )
    )
    assert ir.from_json(ir.to_json(e)) == e


def test_audience_inlines_named_segments(program: ast.Program, backend: Backend) -> None:
    e = lower(_setting(program, "audience"), segments=_segments(program))
    assert run(e, backend) == [0, 1, 0, 0]


def test_event_aggregates_and_engagement(program: ast.Program, backend: Backend) -> None:
    e = lower(_segments(program)["hot"], segments=_segments(program))
    assert run(e, backend) == [0, 1, 0, 0]


def test_exclude_clause(program: ast.Program, backend: Backend) -> None:
    e = lower(_setting(program, "exclude"))
    assert run(e, backend) == [0, 1, 1, 1]


def test_fan_out_predicate(program: ast.Program, backend: Backend) -> None:
    trigger = next(d for d in program.declarations if isinstance(d, ast.TriggerBlock))
    assert isinstance(trigger.trigger, ast.EventTrigger) and trigger.trigger.fanout is not None
    e = lower(trigger.trigger.fanout)
    event = {"price": 500_000, "city": "Manila"}
    assert run(e, backend, event) == [0, 1, 0, 0]


def test_literals_and_not_in(backend: Backend) -> None:
    p = parse_text(
        'segment s = country not in ["US"] and lead_score > -1 and '
        "last_activity >= 2026-11-20 and last_activity < 2026-11-25T00:00:01",
        "t.cadence",
    )
    assert run(lower(_segments(p)["s"]), backend) == [0, 1, 0, 0]


def test_caps_lower_to_rules(program: ast.Program) -> None:
    campaign = next(d for d in program.declarations if isinstance(d, ast.CampaignDecl))
    rules = [cap_rule(s) for s in campaign.settings if isinstance(s, ast.CapSetting)]
    assert rules == [CapRule("email", 3, 7 * DAY), CapRule(None, 5, DAY)]


def test_errors_name_the_place(program: ast.Program) -> None:
    with pytest.raises(LoweringError, match="refers to itself"):
        lower(_segments(program)["loop_a"], segments=_segments(program))
    p = parse_text("segment s = lead_score * 2 > 3", "bad.cadence")
    with pytest.raises(LoweringError, match=r"bad\.cadence:1:"):
        lower(_segments(p)["s"])
    p = parse_text("segment s = wait_time > 2d", "bad.cadence")
    with pytest.raises(LoweringError, match="DurationLit"):
        lower(_segments(p)["s"])
    # Money compares only with money of its currency, which no column holds: a plain
    # number against `500 USD` is unknown, so the evaluator answers, not the filter.
    p = parse_text("segment s = budget >= 500 USD", "bad.cadence")
    with pytest.raises(LoweringError, match="MoneyLit"):
        lower(_segments(p)["s"])
    p = parse_text("segment s = not contact.unsubscribed", "bad.cadence")
    with pytest.raises(LoweringError, match="stored attribute"):
        lower(_segments(p)["s"])
