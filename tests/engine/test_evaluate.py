"""The per-contact evaluator: names, nulls (SQL three-valued logic), types, functions, triggers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence import dispatch as dx
from cadence.dispatch import filter_contacts
from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.parser import parse_text
from cadence.engine.evaluate import (
    ContactEvent,
    Engagement,
    EngagementRecord,
    EvalContext,
    EvaluationError,
    Money,
    SentMessage,
    evaluate,
    event_count_holds,
    event_trigger_fires,
    event_where_holds,
    fanout_holds,
    first_per_message,
    holds,
    normalize,
    segments_of,
    to_plain,
    tri_and,
    tri_not,
    tri_or,
    value,
    wait_for_satisfied,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def at(days_ago: float = 0, hours_ago: float = 0) -> dt.datetime:
    """An instant before NOW."""
    return NOW - dt.timedelta(days=days_ago, hours=hours_ago)


def expr(text: str) -> ast.Expr:
    """Parse one expression through the real parser."""
    declaration = parse_text(f"segment probe = {text}").declarations[0]
    assert isinstance(declaration, ast.SegmentDecl)
    return declaration.expr


def ctx(**kwargs: Any) -> EvalContext:
    """A context at NOW with the given fields."""
    kwargs.setdefault("now", NOW)
    return EvalContext(**kwargs)


def ev(text: str, context: EvalContext | None = None, **attributes: Any) -> bool | None:
    """Evaluate a condition for a contact with these attributes."""
    return evaluate(expr(text), context or ctx(attributes=attributes))


def val(text: str, context: EvalContext | None = None, **attributes: Any) -> Any:
    """The value of an expression for a contact with these attributes."""
    return value(expr(text), context or ctx(attributes=attributes))


# ---------------------------------------------------------------------------- names


def test_bare_names_resolve_segment_then_score_then_flag_then_attribute() -> None:
    context = ctx(
        attributes={"engaged": "attribute", "engagement": "attribute", "converted": False},
        segments={"engaged": expr("lead_score >= 30")},
        scores={"engagement": c.CompiledScore(name="engagement", rules=())},
        engagement=Engagement(converted=True),
    )
    assert val("engaged", context) is None  # the segment: lead_score is missing
    assert val("engagement", context) == Decimal(0)  # the score, not the attribute
    assert val("converted", context) is True  # the flag, not the attribute
    assert val("contact.engaged", context) == "attribute"
    assert val("contact.converted", context) is False


def test_paths_read_attributes_nested_records_and_event_fields() -> None:
    context = ctx(
        attributes={"city": "Manila", "address": {"zip": "1000", "geo": {"lat": 14.6}}},
        event={"price": 450000, "tags": ["new"]},
    )
    assert val("city", context) == "Manila"
    assert val("contact.city", context) == "Manila"
    assert val("contact.address.zip", context) == "1000"
    assert val("address.geo.lat", context) == Decimal("14.6")
    assert val("contact.address.zip.more", context) is None
    assert val("contact.nothing", context) is None
    assert val("event.price", context) == Decimal(450000)
    assert val("event.tags", context) == ("new",)
    assert val("event.missing", context) is None
    assert val("event.price") is None  # no trigger event at all


def test_event_path_reads_an_event_tuple_properties() -> None:
    context = ctx(event=ContactEvent("property_viewed", at(1), {"price": 10}))
    assert ev("event.price = 10", context) is True


# ---------------------------------------------------------------------------- nulls


@pytest.mark.parametrize(
    "text",
    [
        "budget = 5",
        "budget != 5",
        "budget < 5",
        "budget >= 5",
        "budget in [1, 2]",
        "budget not in [1, 2]",
        'name contains "a"',
        'name startswith "a"',
        "last_seen within 7d",
        "not (budget >= 5)",
        "budget + 1 > 0",
        "flag",
        "not flag",
    ],
)
def test_anything_about_a_missing_value_is_unknown(text: str) -> None:
    assert ev(text) is None
    assert holds(expr(text), ctx()) is False


def test_sql_truth_tables() -> None:
    values: list[bool | None] = [True, False, None]
    expected_and = {
        (True, True): True,
        (True, False): False,
        (True, None): None,
        (False, None): False,
        (None, None): None,
        (False, False): False,
    }
    for (a, b), result in expected_and.items():
        assert tri_and(a, b) is result
        assert tri_and(b, a) is result
    assert tri_or(None, True) is True
    assert tri_or(None, False) is None
    assert tri_or(False, False) is False
    assert [tri_not(v) for v in values] == [False, True, None]


def test_connectives_in_expressions() -> None:
    assert ev("flag or x = 1", x=1) is True
    assert ev("flag or x = 1", x=2) is None
    assert ev("flag and x = 1", x=2) is False
    assert ev("flag and x = 1", x=1) is None
    assert ev("not flag and x = 1", flag=False, x=1) is True


def test_a_non_boolean_used_as_a_condition_is_unknown() -> None:
    assert ev("lead_score", lead_score=5) is None
    assert ev("name", name="x") is None
    assert ev("flag", flag=True) is True


# ---------------------------------------------------------------------------- numbers, strings


def test_numbers_compare_exactly_across_int_float_and_decimal() -> None:
    assert ev("x = 0.1", x=0.1) is True
    assert ev("x + y = 0.3", x=0.1, y=0.2) is True
    assert ev("x >= 30", x=30) is True
    assert ev("x > 30", x=Decimal("30.0001")) is True
    assert ev("x = 3", x=float("nan")) is None
    assert ev("x < 1", x=float("-inf")) is True
    assert ev("x = 1", x=True) is None  # a boolean is not a number


def test_kinds_that_differ_are_unknown_not_false() -> None:
    assert ev('x = "5"', x=5) is None
    assert ev('x != "5"', x=5) is None
    assert ev("x = true", x="true") is None


def test_strings_compare_exactly_and_in_order() -> None:
    assert ev('city = "Manila"', city="Manila") is True
    assert ev('city = "manila"', city="Manila") is False
    assert ev('city < "N"', city="Manila") is True
    assert ev('email startswith "info@"', email="info@acme.test") is True
    assert ev('email contains "@acme"', email="info@acme.test") is True
    assert ev('email contains "@other"', email="info@acme.test") is False
    assert ev("email startswith 3", email="3x") is None


def test_arithmetic() -> None:
    assert val("lead_score + 10", lead_score=32) == Decimal(42)
    assert val("lifetime_value / orders", lifetime_value=300, orders=4) == Decimal(75)
    assert val("lifetime_value / orders", lifetime_value=300, orders=0) is None
    assert val("-x * 2", x=3) == Decimal(-6)
    assert val("x - y", x=1) is None
    assert val('first + " " + last', first="Ada", last="Lovelace") == "Ada Lovelace"
    assert val('x + "a"', x=1) is None
    assert val("-name", name="x") is None
    assert val("20%") == Decimal("0.2")
    assert ev("lifetime_value / orders >= 100", lifetime_value=500, orders=4) is True


# ---------------------------------------------------------------------------- lists


def test_membership_follows_sql_in() -> None:
    assert ev('country in ["US", "CA"]', country="US") is True
    assert ev('country in ["US", "CA"]', country="PH") is False
    assert ev('country not in ["US", "CA"]', country="PH") is True
    assert ev("country in []", country="PH") is False
    # a missing element makes "not found" unknown, as SQL's IN with a NULL
    assert ev("country in [a, b]", country="PH", a="US") is None
    assert ev("country in [a, b]", country="US", a="US") is True
    assert ev("country not in [a, b]", country="PH", a="US") is None
    # a list attribute on the right; mixed kinds inside are unknown, not a crash
    assert ev("city in areas", city="Cebu", areas=["Manila", "Cebu"]) is True
    assert ev("city in areas", city="Davao", areas=["Manila", "Cebu"]) is False
    assert ev("city in areas", city="Davao", areas=[1, 2]) is None
    assert ev("city in areas", city="Davao", areas="Davao") is None  # not a list
    assert ev("3 in scores", scores=[1, 3.0]) is True


def test_contains_on_lists_is_membership() -> None:
    assert ev('tags contains "vip"', tags=["vip", "new"]) is True
    assert ev('tags contains "old"', tags=["vip", "new"]) is False
    assert ev('tags contains "old"', tags=[]) is False
    assert ev('tags contains "old"') is None


def test_list_equality() -> None:
    assert ev('tags = ["a", "b"]', tags=["a", "b"]) is True
    assert ev('tags = ["a"]', tags=["a", "b"]) is False
    assert ev('tags != ["a"]', tags=["a", "b"]) is True


# ---------------------------------------------------------------------------- time


def test_within_is_the_last_duration_up_to_now() -> None:
    assert ev("last_activity within 30d", last_activity=at(29)) is True
    assert ev("last_activity within 30d", last_activity=at(30)) is True  # boundary included
    assert ev("last_activity within 30d", last_activity=at(30, 1 / 3600)) is False
    assert ev("last_activity within 30d", last_activity=NOW) is True
    assert ev("last_activity within 30d", last_activity=NOW + dt.timedelta(seconds=1)) is False
    # ISO text as the store keeps datetime attributes, and dates as their midnight UTC
    assert ev("last_activity within 1d", last_activity="2026-06-15T01:00:00Z") is True
    assert ev("last_activity within 1d", last_activity="2026-06-14") is False
    assert ev("last_activity within 2d", last_activity=dt.date(2026, 6, 14)) is True
    assert ev("last_activity within 1d", last_activity="yesterday") is None
    assert ev("last_activity within 1d", last_activity=5) is None


def test_dates_compare_as_midnight_utc_against_instants() -> None:
    assert ev("signed_up < 2026-06-15", signed_up=dt.datetime(2026, 6, 14, 23, 59, tzinfo=UTC))
    assert ev("signed_up >= 2026-06-15", signed_up=dt.datetime(2026, 6, 15, tzinfo=UTC))
    assert ev("signed_up = 2026-06-15", signed_up=dt.datetime(2026, 6, 15, tzinfo=UTC))
    # the same instant written in another zone is the same instant
    manila = dt.timezone(dt.timedelta(hours=8))
    assert ev("signed_up = 2026-06-15", signed_up=dt.datetime(2026, 6, 15, 8, tzinfo=manila))
    # a date attribute against a date literal compares days
    assert ev("birthday = 1990-05-01", birthday=dt.date(1990, 5, 1)) is True
    assert ev("birthday < 1990-05-02", birthday="1990-05-01") is True
    # datetime literals have no zone: they are UTC in expressions
    assert ev("signed_up > 2026-06-15T09:00", signed_up="2026-06-15T09:00:01Z") is True
    assert ev("signed_up > 2026-06-15T09:00", signed_up="2026-06-15T10:00:00+02:00") is False


def test_time_arithmetic() -> None:
    assert val("renewal - 7d", renewal="2026-07-01T00:00:00Z") == dt.datetime(
        2026, 6, 24, tzinfo=UTC
    )
    assert val("renewal - signed_up", renewal=dt.date(2026, 7, 1), signed_up="2026-06-01") == (
        dt.timedelta(days=30)
    )
    # two strings are text: their difference is not a duration
    assert val("renewal - signed_up", renewal="2026-07-01", signed_up="2026-06-01") is None
    assert ev("renewal - 7d < 2026-06-30", renewal="2026-07-01") is True


# ---------------------------------------------------------------------------- money


def test_money_compares_within_one_currency_only() -> None:
    assert ev("spend > 5 USD", spend=Money(Decimal("5.01"), "USD")) is True
    assert ev("spend > 5 USD", spend={"amount": "4.99", "currency": "USD"}) is False
    assert ev("spend > 5 USD", spend="12.50 USD") is True
    assert ev("spend > 5 USD", spend=Money(Decimal(9), "EUR")) is None
    assert ev("spend > 5 USD", spend=9) is None
    assert val("spend + 1 USD", spend=Money(Decimal("2.5"), "USD")) == Money(Decimal("3.5"), "USD")
    assert val("spend + 1 EUR", spend=Money(Decimal("2.5"), "USD")) is None
    assert val("spend * 2", spend=Money(Decimal("2.5"), "USD")) == Money(Decimal("5.0"), "USD")
    assert val("spend / 2 USD", spend=Money(Decimal(5), "USD")) == Decimal("2.5")


# ---------------------------------------------------------------------------- conversion


def test_normalize_and_to_plain() -> None:
    assert normalize(3) == Decimal(3)
    assert normalize(True) is True
    assert normalize([1, "a"]) == (Decimal(1), "a")
    assert normalize(dt.datetime(2026, 1, 1)) == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert normalize({"amount": 5, "currency": "USD"}) == Money(Decimal(5), "USD")
    assert normalize({"zip": "1000"}) == {"zip": "1000"}
    assert to_plain(Decimal(42)) == 42
    assert to_plain(Decimal("4.5")) == 4.5
    assert to_plain(dt.datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
    assert to_plain(Money(Decimal("2.50"), "USD")) == {"amount": "2.50", "currency": "USD"}
    assert to_plain((Decimal(1), dt.date(2026, 1, 2))) == [1, "2026-01-02"]
    assert to_plain(dt.timedelta(hours=1)) == 3600


# ---------------------------------------------------------------------------- functions


def records(*items: tuple[str, str | None, float, str | None]) -> Engagement:
    """Engagement records from (kind, template, days ago, message)."""
    return Engagement(
        records=tuple(
            EngagementRecord(kind, template, at(days), message)
            for kind, template, days, message in items
        )
    )


def test_engagement_functions() -> None:
    context = ctx(
        engagement=records(
            ("delivered", "welcome", 3, "m1"),
            ("clicked", "welcome", 2, "m1"),
            ("bounced", "offer", 1, "m2"),
            ("replied", "follow_up", -1, "m3"),  # in the future: not yet
        )
    )
    assert ev("opened(welcome)", context) is True  # a click counts as an open
    assert ev("clicked(welcome)", context) is True
    assert ev("delivered(welcome)", context) is True
    assert ev("opened(offer)", context) is False
    assert ev("bounced(offer)", context) is True
    assert ev("bounced(any)", context) is True
    assert ev("replied(any)", context) is False
    assert ev("not opened(offer)", context) is True


@pytest.mark.parametrize(
    ("reports", "delivered"),
    [
        ([("delivered", {})], True),
        ([("bounced", {"type": "soft"})], False),  # a retry may still get through
        ([("bounced", {"type": "soft"}), ("delivered", {})], True),  # it did
        ([("delivered", {}), ("bounced", {"type": "soft"})], True),  # reported the other way
        ([("delivered", {}), ("bounced", {"type": "hard"})], False),  # bounced once accepted
        ([("delivered", {}), ("bounced", {})], False),  # a bounce that does not say is hard
        ([], False),  # nothing said: the provider has not confirmed it
    ],
)
def test_delivered_needs_a_delivery_report_and_no_hard_bounce(
    reports: list[tuple[str, dict[str, Any]]], delivered: bool
) -> None:
    """`delivered(T)` reads a message's reports as `cadence report` does (engine/delivery.py)."""
    events = [
        (name, at(hours_ago=10 - i), {"template": "welcome", "send": "k1", **props})
        for i, (name, props) in enumerate(reports)
    ]
    # Another message of the template, hard-bounced, changes nothing about this one.
    events.append(("bounced", at(hours_ago=1), {"template": "welcome", "send": "k2"}))
    context = EvalContext.from_facts(now=NOW, attributes={}, events=events)
    assert ev("delivered(welcome)", context) is delivered
    assert ev("delivered(any)", context) is delivered


def test_an_opt_out_reply_s_unsubscribe_sets_the_flag() -> None:
    """A STOP reply is stored with the `unsubscribed` it stands for: the flag reads it."""
    reply = {"channel": "sms", "text": "STOP", "send": "k1"}
    stop = [
        ("replied", at(1), reply),
        ("unsubscribed", at(1), {"channel": "sms", "send": "k1", "via": "reply"}),
    ]
    context = EvalContext.from_facts(now=NOW, attributes={}, events=stop)
    assert ev("unsubscribed", context) is True
    assert ev("not unsubscribed", context) is False


def test_engagement_in_steps_is_scoped_to_the_campaign_but_segments_see_all() -> None:
    engagement = Engagement(
        records=(EngagementRecord("opened", "welcome", at(1), "m1", campaign="onboarding"),)
    )
    context = ctx(
        engagement=engagement,
        campaign_scope="nurture",
        segments={"opener": expr("opened(any)")},
    )
    assert ev("opened(any)", context) is False
    assert ev("opener", context) is True
    assert ev("opened(any)", ctx(engagement=engagement, campaign_scope="onboarding")) is True


def test_engagement_that_names_no_campaign_is_in_every_scope() -> None:
    engagement = Engagement(records=(EngagementRecord("clicked", "offer", at(1), "m1"),))
    assert ev("clicked(offer)", ctx(engagement=engagement, campaign_scope="nurture")) is True


def test_flags() -> None:
    assert ev("converted") is False
    assert ev("unsubscribed", ctx(engagement=Engagement(unsubscribed=True))) is True
    assert ev("converted", ctx(engagement=Engagement(converted_at=at(1)))) is True
    assert ev("converted", ctx(engagement=Engagement(converted_at=at(-1)))) is False


def test_event_functions() -> None:
    events = [
        ("property_viewed", at(10), {}),
        ("property_viewed", at(5), {}),
        ("property_viewed", at(1), {}),
        ("property_viewed", at(-1), {}),  # future
        ("pricing_viewed", at(3), {}),
    ]
    context = ctx(events=events)
    assert val("count(property_viewed, 7d)", context) == Decimal(2)
    assert val("count(property_viewed, 30d)", context) == Decimal(3)
    assert val("count(nothing, 30d)", context) == Decimal(0)
    assert val("last(property_viewed)", context) == at(1)
    assert val("first(property_viewed)", context) == at(10)
    assert val("last(nothing)", context) is None
    assert ev("last(pricing_viewed) within 2d", context) is False
    assert ev("last(pricing_viewed) within 3d", context) is True
    assert ev("last(nothing) within 3d", context) is None
    assert ev("count(property_viewed, 7d) >= 2", context) is True


def test_audience_functions() -> None:
    context = ctx(
        campaigns=frozenset({"onboarding"}),
        sends=(
            SentMessage("email", at(hours_ago=23)),
            SentMessage("sms", at(3)),
            SentMessage("whatsapp", at(-1)),
        ),
    )
    assert ev("in_campaign(onboarding)", context) is True
    assert ev("in_campaign(other)", context) is False
    assert ev("received(email, 24h)", context) is True
    assert ev("received(email, 22h)", context) is False
    assert ev("received(sms, 24h)", context) is False
    assert ev("received(whatsapp, 24h)", context) is False


def test_unknown_functions_and_bad_arguments_are_errors() -> None:
    bad = ast.Call("shout", (ast.Path(("x",)),))
    with pytest.raises(EvaluationError, match="unknown function"):
        evaluate(bad, ctx())
    with pytest.raises(EvaluationError):
        evaluate(ast.Call("opened", (ast.StringLit("welcome"),)), ctx())
    with pytest.raises(EvaluationError):
        evaluate(ast.Call("count", (ast.Path(("x",)), ast.NumberLit(Decimal(3)))), ctx())


# ---------------------------------------------------------------------------- segments, scores


def test_segments_nest_and_cycles_are_unknown() -> None:
    context = ctx(
        attributes={"lead_score": 40, "email_verified": True},
        segments={
            "qualified": expr("lead_score >= 30 and email_verified"),
            "hot": expr("qualified and lead_score >= 35"),
            "loop_a": expr("loop_b or lead_score > 100"),
            "loop_b": expr("loop_a"),
        },
    )
    assert ev("hot", context) is True
    assert ev("not hot", context) is False
    assert ev("loop_a", context) is None
    assert ev("loop_a or hot", context) is True


def test_scores_are_numbers_in_expressions() -> None:
    score = c.CompiledScore(
        name="engagement",
        rules=(
            c.ScorePointsRule(
                event=c.PathExpr(parts=("property_viewed",)),
                within_seconds=7 * 86400,
                points=Decimal(3),
                each=True,
            ),
        ),
    )
    context = ctx(
        events=[("property_viewed", at(1), {}), ("property_viewed", at(2), {})],
        scores={"engagement": score},
    )
    assert val("engagement", context) == Decimal(6)
    assert ev("engagement >= 6", context) is True
    assert val("engagement * 2", context) == Decimal(12)


def test_segments_of_a_compiled_campaign() -> None:
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    source = """
    segment engaged = lead_score >= 30
    template hi email { subject "Hi" body "Hi" }
    campaign c1 "C" { audience engaged  on launch { send email hi } }
    """
    campaign = compile_workspace(load_text(source))[0]
    segments = segments_of(campaign)
    assert ev("engaged", ctx(attributes={"lead_score": 31}, segments=segments)) is True
    assert segments == {"engaged": expr("lead_score >= 30")}


# ---------------------------------------------------------------------------- from_facts


def test_from_facts_reads_engagement_out_of_the_event_history() -> None:
    context = EvalContext.from_facts(
        now=NOW,
        attributes={"lead_score": 10},
        events=[
            ("clicked", at(2), {"template": "welcome", "send": "k1", "campaign": "onboarding"}),
            ("property_viewed", at(1), {"price": 5}),
            ("unsubscribed", at(1), {}),
            ("converted", dt.datetime(2026, 6, 14, 12, 0), {}),  # naive: UTC
        ],
        sends=[("email", "welcome", at(2))],
        campaigns=["onboarding"],
        event={"price": 7},
        segments={"low": expr("lead_score < 20")},
    )
    assert ev("opened(welcome) and clicked(any) and unsubscribed and converted", context)
    assert ev("received(email, 3d) and in_campaign(onboarding) and low", context)
    assert ev("event.price = 7 and count(property_viewed, 2d) = 1", context)
    assert context.engagement.converted_at == at(1)
    assert context.engagement.records[0].message == "k1"


def test_from_facts_takes_flags_from_attributes_too() -> None:
    context = EvalContext.from_facts(now=NOW, attributes={"unsubscribed": True})
    assert ev("unsubscribed", context) is True
    assert ev("converted", context) is False


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EvalContext(now=dt.datetime(2026, 1, 1))


# ---------------------------------------------------------------------------- triggers


def trigger(text: str) -> ast.EventTrigger:
    """The trigger of a one-line automation."""
    block = parse_text(f"{text} send email x").declarations[0]
    assert isinstance(block, ast.TriggerBlock)
    assert isinstance(block.trigger, ast.EventTrigger)
    return block.trigger


def test_where_reads_the_event_and_unknown_is_false() -> None:
    where = expr("event.price <= 500000")
    assert event_where_holds(where, {"price": 450000}) is True
    assert event_where_holds(where, {"price": 550000}) is False
    assert event_where_holds(where, {}) is False
    assert event_where_holds(where, ContactEvent("x", at(), {"price": 1})) is True
    # contact attributes are available through a context
    both = expr("event.price <= contact.budget_max")
    assert event_where_holds(both, {"price": 5}, ctx(attributes={"budget_max": 6})) is True
    assert event_where_holds(both, {"price": 5}) is False


def test_count_within_where_over_the_history() -> None:
    history = [
        ("property_viewed", at(8), {"price": 100}),
        ("property_viewed", at(3), {"price": 100}),
        ("property_viewed", at(2), {"price": 900000}),
        ("property_viewed", at(1), {"price": 200}),
        ("other", at(1), {"price": 1}),
    ]
    where = expr("event.price <= 500000")
    week = dt.timedelta(days=7)
    assert event_count_holds(history, "property_viewed", ">=", 2, week, where, NOW) is True
    assert event_count_holds(history, "property_viewed", ">=", 3, week, where, NOW) is False
    assert event_count_holds(history, "property_viewed", "=", 3, None, where, NOW) is True
    assert event_count_holds(history, "property_viewed", "=", 4, None, None, NOW) is True
    assert event_count_holds(history, "property_viewed", "<", 4, week, None, NOW) is True
    with pytest.raises(EvaluationError):
        event_count_holds(history, "property_viewed", "~", 1, None, None, NOW)


def _open(name: str, days_ago: float, message: str | None) -> tuple[str, dt.datetime, Any]:
    return (name, at(days_ago), {} if message is None else {"send": message})


def test_opens_and_clicks_count_once_per_message_at_the_first_report() -> None:
    history = [
        _open("opened", 40, "m1"),  # first opened before the window: not in `30d`
        _open("opened", 5, "m1"),
        _open("opened", 9, "m2"),
        _open("opened", 8, "m2"),  # the provider's report of the same open
        _open("opened", 2, "m2"),
        _open("clicked", 3, "m3"),  # a click with images off: opened too
        _open("clicked", 1, "m3"),
        _open("opened", 4, None),  # naming no message: a message of its own
        _open("opened", 3, None),
        _open("replied", 1, "m2"),
    ]
    context = EvalContext.from_facts(now=NOW, attributes={}, events=history)
    assert val("count(opened, 30d)", context) == 4  # m2, m3 and the two unnamed
    assert val("count(opened)", context) == 5
    assert val("count(clicked, 30d)", context) == 1
    assert val("count(clicked, 2d)", context) == 0  # m3's first click was 3 days ago
    assert val("count(replied, 30d)", context) == 1
    week = dt.timedelta(days=7)
    assert event_count_holds(history, "opened", "=", 3, week, None, NOW)  # m3, unnamed x2
    assert event_count_holds(history, "opened", "=", 5, None, None, NOW)
    assert event_count_holds(history, "clicked", "=", 1, None, None, NOW)
    # `where` chooses the reports counted before each message's first is taken.
    tagged = [("opened", at(3), {"send": "m1", "link": "x"}), _open("opened", 2, "m1")]
    where = expr('event.link = "x"')
    assert event_count_holds(tagged, "opened", "=", 1, week, where, NOW)
    assert event_count_holds(tagged, "opened", "=", 0, dt.timedelta(days=2), where, NOW)


_MESSAGES = st.one_of(st.none(), st.sampled_from(["m1", "m2", "m3", "m4"]))
_REPORTS = st.lists(
    st.tuples(st.sampled_from(["opened", "clicked", "replied"]), st.integers(0, 60), _MESSAGES),
    max_size=25,
)


@given(
    reports=_REPORTS, window_days=st.integers(1, 60), kind=st.sampled_from(["opened", "clicked"])
)
@settings(max_examples=200, deadline=None)
def test_count_is_the_messages_first_reported_within_the_window(
    reports: list[tuple[str, int, str | None]], window_days: int, kind: str
) -> None:
    history = [_open(name, days, message) for name, days, message in reports]
    counted = {"opened": ("opened", "clicked"), "clicked": ("clicked",)}[kind]
    # The model: the earliest report of each message, and every unnamed report.
    first: dict[str, int] = {}
    unnamed = 0
    for name, days, message in reports:
        if name not in counted:
            continue
        if message is None:
            unnamed += days <= window_days
        else:
            first[message] = max(first.get(message, days), days)
    expected = unnamed + sum(1 for days in first.values() if days <= window_days)
    context = EvalContext.from_facts(now=NOW, attributes={}, events=history)
    assert val(f"count({kind}, {window_days}d)", context) == expected
    window = dt.timedelta(days=window_days)
    assert event_count_holds(history, kind, "=", expected, window, None, NOW)
    assert len(first_per_message((m, at(d)) for n, d, m in reports if n in counted)) == (
        len(first) + sum(1 for n, _, m in reports if n in counted and m is None)
    )


def test_event_trigger_fires_on_the_third_matching_event() -> None:
    when = trigger("when property_viewed count>=3 within 7d where event.price <= 500000")
    history: list[tuple[str, dt.datetime, Mapping[str, Any]]] = []
    fired = []
    for days, price in [(6, 100), (5, 900000), (4, 100), (3, 100), (2, 100)]:
        event = ContactEvent("property_viewed", at(days), {"price": price})
        history.append(event)
        context = ctx(now=event.at, events=list(history))
        fired.append(event_trigger_fires(when, event, context))
    assert fired == [False, False, False, True, True]
    # the compiled form behaves the same
    model = c.EventTriggerModel(
        id="t",
        entry="end",
        event="property_viewed",
        count=c.CountCondition(op=">=", value=3),
        within_seconds=7 * 86400,
        where=c.expr_to_model(expr("event.price <= 500000")),
    )
    assert event_trigger_fires(model, history[-1], ctx(events=history)) is True
    assert event_trigger_fires(model, history[-1], ctx(events=history[:3])) is False
    # another event name never fires it; a plain `when` fires on any such event
    assert event_trigger_fires(when, ContactEvent("other", at(), {}), ctx()) is False
    plain = trigger("when signed_up")
    assert event_trigger_fires(plain, ContactEvent("signed_up", at(), {}), ctx()) is True


def test_fanout_from_the_language_reference() -> None:
    listing = expr("contact.budget_max >= event.price and event.city in contact.areas")
    event = {"price": 450000, "city": "Cebu"}
    assert fanout_holds(listing, {"budget_max": 500000, "areas": ["Cebu"]}, event, NOW) is True
    assert fanout_holds(listing, {"budget_max": 400000, "areas": ["Cebu"]}, event, NOW) is False
    assert fanout_holds(listing, {"areas": ["Cebu"]}, event, NOW) is False
    assert fanout_holds(listing, {"budget_max": 500000, "areas": []}, event, NOW) is False
    saved = expr("event.property_id in contact.saved_properties")
    assert fanout_holds(saved, {"saved_properties": ["p1", "p2"]}, {"property_id": "p2"}, NOW)


def test_wait_for_targets() -> None:
    context = ctx(
        events=[("purchase", at(1), {})],
        engagement=records(("clicked", "offer", 0.5, "m1")),
        segments={"buyer": expr("count(purchase, 30d) >= 1")},
    )
    assert wait_for_satisfied(expr("clicked(offer)"), context, at(2)) is True
    assert wait_for_satisfied(expr("purchase"), context, at(2)) is True
    assert wait_for_satisfied(expr("purchase"), context, at(0.5)) is False
    assert wait_for_satisfied(expr("buyer"), context, at(0.5)) is True
    assert wait_for_satisfied(expr("converted"), context, at(2)) is False
    # An event at the instant the wait began counts, unless it started the journey.
    assert wait_for_satisfied(expr("purchase"), context, at(1)) is True
    started = {"name": "purchase", "at": at(1).isoformat()}
    assert (
        wait_for_satisfied(expr("purchase"), ctx(events=context.events, event=started), at(1))
        is False
    )


# ---------------------------------------------------------------------------- laws (hypothesis)

NAMES = ("a", "b", "flag")
nullable_number = st.one_of(st.none(), st.integers(-3, 3))
contact_attributes = st.fixed_dictionaries(
    {"a": nullable_number, "b": nullable_number, "flag": st.one_of(st.none(), st.booleans())}
)
ATOM_TEXTS = ("flag", "a = b", "a < 1", "b >= 0", "a in [1, 2]", "b != 2", "a = 0")
ATOMS = {text: expr(text) for text in ATOM_TEXTS}


def not_(x: ast.Expr) -> ast.Expr:
    """`not x`."""
    return ast.Unary("not", x)


def and_(x: ast.Expr, y: ast.Expr) -> ast.Expr:
    """`x and y`."""
    return ast.Binary("and", x, y)


def or_(x: ast.Expr, y: ast.Expr) -> ast.Expr:
    """`x or y`."""
    return ast.Binary("or", x, y)


conditions = st.recursive(
    st.sampled_from(ATOM_TEXTS).map(ATOMS.__getitem__),
    lambda inner: st.one_of(
        st.builds(not_, inner), st.builds(and_, inner, inner), st.builds(or_, inner, inner)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(x=conditions, y=conditions, attrs=contact_attributes)
def test_three_valued_laws(x: ast.Expr, y: ast.Expr, attrs: dict[str, Any]) -> None:
    context = ctx(attributes=attrs)

    def e(condition: ast.Expr) -> bool | None:
        return evaluate(condition, context)

    vx, vy = e(x), e(y)
    assert e(not_(not_(x))) is vx
    assert e(not_(and_(x, y))) is e(or_(not_(x), not_(y)))
    assert e(not_(or_(x, y))) is e(and_(not_(x), not_(y)))
    assert e(and_(x, y)) is e(and_(y, x))
    assert e(or_(x, x)) is vx
    assert e(and_(x, y)) is tri_and(vx, vy)
    assert e(or_(x, y)) is tri_or(vx, vy)
    assert e(not_(x)) is tri_not(vx)


# ---------------------------------------------------------------------------- against dispatch


# Each atom as the evaluator reads it (parsed) and as the dispatch core's IR.
DISPATCH_ATOMS: dict[str, dx.Expr] = {
    "flag": dx.Truthy(dx.Col("flag")),
    "a = b": dx.Cmp("=", dx.Col("a"), dx.Col("b")),
    "a < 1": dx.Cmp("<", dx.Col("a"), dx.Lit(1)),
    "b >= 0": dx.Cmp(">=", dx.Col("b"), dx.Lit(0)),
    "a in [1, 2]": dx.In(dx.Col("a"), dx.Lit((1, 2))),
    "b != 2": dx.Cmp("!=", dx.Col("b"), dx.Lit(2)),
    'name = "ab"': dx.Cmp("=", dx.Col("name"), dx.Lit("ab")),
    'name startswith "a"': dx.StartsWith(dx.Col("name"), dx.Lit("a")),
    'name contains "b"': dx.Contains(dx.Col("name"), dx.Lit("b")),
    "name in tags": dx.In(dx.Col("name"), dx.Col("tags")),
    'tags contains "a"': dx.Contains(dx.Col("tags"), dx.Lit("a")),
    'name not in ["a", "b"]': dx.Not(dx.In(dx.Col("name"), dx.Lit(("a", "b")))),
    "event.city in tags": dx.In(dx.EventField("city"), dx.Col("tags")),
    "a <= event.price": dx.Cmp("<=", dx.Col("a"), dx.EventField("price")),
}
PARSED_ATOMS = {text: expr(text) for text in DISPATCH_ATOMS}

paired_trees = st.recursive(
    st.sampled_from(sorted(DISPATCH_ATOMS)).map(lambda t: (PARSED_ATOMS[t], DISPATCH_ATOMS[t])),
    lambda inner: st.one_of(
        inner.map(lambda p: (not_(p[0]), dx.Not(p[1]))),
        st.tuples(inner, inner).map(
            lambda ps: (and_(ps[0][0], ps[1][0]), dx.And((ps[0][1], ps[1][1])))
        ),
        st.tuples(inner, inner).map(
            lambda ps: (or_(ps[0][0], ps[1][0]), dx.Or((ps[0][1], ps[1][1])))
        ),
    ),
    max_leaves=6,
)
short_text = st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "ba", "c"]))
dispatch_rows = st.fixed_dictionaries(
    {
        "a": nullable_number,
        "b": nullable_number,
        "flag": st.one_of(st.none(), st.booleans()),
        "name": short_text,
        "tags": st.one_of(st.none(), st.lists(short_text, max_size=3)),
    }
)
fanout_events = st.fixed_dictionaries({"city": short_text, "price": nullable_number})


@settings(max_examples=200, deadline=None)
@given(
    tree=paired_trees,
    rows=st.lists(dispatch_rows, min_size=1, max_size=12),
    event=fanout_events,
)
def test_agrees_with_the_dispatch_filter_on_missing_values(
    tree: tuple[ast.Expr, dx.Expr], rows: list[dict[str, Any]], event: dict[str, Any]
) -> None:
    condition, ir = tree
    table = pa.table(
        {
            "a": pa.array([r["a"] for r in rows], type=pa.int64()),
            "b": pa.array([r["b"] for r in rows], type=pa.int64()),
            "flag": pa.array([r["flag"] for r in rows], type=pa.bool_()),
            "name": pa.array([r["name"] for r in rows], type=pa.string()),
            "tags": pa.array([r["tags"] for r in rows], type=pa.list_(pa.string())),
        }
    )
    mask = filter_contacts(table, ir, now=NOW, event=event)
    mine = [fanout_holds(condition, r, event, NOW) for r in rows]
    assert mine == [bool(m) for m in mask]


def test_within_agrees_with_the_dispatch_filter_for_past_instants() -> None:
    instants = [at(1), at(7), at(7, 1 / 3600), None, at(30)]
    table = pa.table({"t": pa.array(instants, type=pa.timestamp("us", tz="UTC"))})
    mask = filter_contacts(table, dx.Within(dx.Col("t"), 7 * 86_400_000_000), now=NOW)
    mine = [holds(expr("t within 7d"), ctx(attributes={"t": t})) for t in instants]
    assert mine == [bool(m) for m in mask] == [True, True, False, False, False]


def test_more_arithmetic_kinds() -> None:
    week = dt.timedelta(days=7)
    assert val("7d + 1d") == dt.timedelta(days=8)
    assert val("7d - 1d") == dt.timedelta(days=6)
    assert val("1d * 2") == dt.timedelta(days=2)
    assert val("1d / 4") == dt.timedelta(hours=6)
    assert val("1d / 0") is None
    assert val("-7d") == -week
    assert val("-(5 USD)") == Money(Decimal(-5), "USD")
    assert val("2 * 5 USD") == Money(Decimal(10), "USD")
    assert val("5 USD / 2") == Money(Decimal("2.5"), "USD")
    assert val("5 USD / 0") is None
    assert val("5 USD * 2 USD") is None
    assert val("5 USD - 2 USD") == Money(Decimal(3), "USD")
    assert val("5 USD / 0 USD") is None
    assert val("7d + t", t="2026-06-01T00:00:00Z") == dt.datetime(2026, 6, 8, tzinfo=UTC)
    assert val("t + 7d", t="not a time") is None
    assert val("t - 1d", t=dt.date(2026, 6, 2)) == dt.datetime(2026, 6, 1, tzinfo=UTC)
    assert val("x * y", x=Decimal("1e999999"), y=Decimal("1e999999")) is None  # overflow


def test_times_of_day_and_percentages_as_values() -> None:
    assert val("09:30") == dt.time(9, 30)
    assert ev("09:30 < 10:00") is True
    assert ev("rate >= 20%", rate=0.25) is True
    assert ev("rate >= 20%", rate=0.15) is False
    assert to_plain(dt.time(9, 30)) == "09:30:00"


def test_normalize_edge_values() -> None:
    assert normalize(Decimal("NaN")) is None
    assert normalize({"amount": "12.50", "currency": "USD"}) == Money(Decimal("12.50"), "USD")
    assert normalize({"amount": "lots", "currency": "USD"}) == {"amount": "lots", "currency": "USD"}
    assert normalize(frozenset({1})) == (Decimal(1),)
    assert normalize(object) is object


def test_where_without_a_context_uses_the_events_own_instant_or_the_given_now() -> None:
    recent = expr("event.seen within 1d")
    event = {"at": "2026-06-15T12:00:00Z", "seen": "2026-06-15T00:00:00Z"}
    assert event_where_holds(recent, event) is True
    assert event_where_holds(recent, event, now=NOW + dt.timedelta(days=2)) is False


def test_history_events_keep_properties_up_to_now() -> None:
    context = ctx(
        events=[("view", at(2), {"id": 1}), ("view", at(-1), {"id": 2}), ("buy", at(1), {})]
    )
    assert context.history_events("view") == [ContactEvent("view", at(2), {"id": 1})]
    assert context.history("view") == [at(2)]


def test_from_facts_accepts_sent_messages_and_naive_instants() -> None:
    context = EvalContext.from_facts(
        now=NOW,
        attributes={},
        sends=[SentMessage("sms", at(1)), ("email", None, dt.datetime(2026, 6, 15, 11, 0))],
    )
    assert ev("received(sms, 2d) and received(email, 2h)", context) is True


def test_an_unsubscribe_or_a_complaint_through_a_message_confirms_its_delivery() -> None:
    def delivered(*history: tuple[str, float, dict[str, Any]]) -> bool | None:
        events = [(name, at(days), {"template": "t", **props}) for name, days, props in history]
        return ev("delivered(t)", EvalContext.from_facts(now=NOW, attributes={}, events=events))

    soft = ("bounced", 3, {"send": "m1", "type": "soft"})
    assert delivered(soft) is False
    assert delivered(soft, ("unsubscribed", 2, {"send": "m1"})) is True
    assert delivered(soft, ("complained", 2, {"send": "m1"})) is True
    # A hard bounce says it never arrived: a complaint matched to it is not the person.
    assert delivered(("bounced", 3, {"send": "m1"}), ("complained", 2, {"send": "m1"})) is False
    # The unsubscribe still sets the flag.
    events = [("unsubscribed", at(2), {"send": "m1"})]
    assert ev("unsubscribed", EvalContext.from_facts(now=NOW, attributes={}, events=events))
