"""Scores: points per rule, `each` against once, `within` windows, and the decay rule."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.dsl.parser import parse_text
from cadence.engine.evaluate import (
    Engagement,
    EngagementRecord,
    EvalContext,
    EvaluationError,
    evaluate,
)
from cadence.engine.scores import (
    DecayRule,
    PointsRule,
    compute_score,
    decay_factor,
    engagement_instants,
    rules_of,
    score_breakdown,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

ENGAGEMENT_SCORE = """
score engagement {
  opened(any) within 30d: +5 each
  clicked(any) within 30d: +10 each
  property_viewed within 7d: +3 each
  unsubscribed: -100
  decay 10% per 30d
}
"""


def at(days_ago: float) -> dt.datetime:
    """An instant `days_ago` days before NOW."""
    return NOW - dt.timedelta(days=days_ago)


def score_decl(text: str) -> ast.ScoreDecl:
    """Parse one `score` declaration."""
    declaration = parse_text(text).declarations[0]
    assert isinstance(declaration, ast.ScoreDecl)
    return declaration


def compiled_score(text: str, name: str) -> c.CompiledScore:
    """The same score as the compiler stores it in a campaign that uses it."""
    source = (
        text
        + f"""
template hi email {{ subject "Hi" body "Hi" }}
campaign uses "Uses" {{ audience {name} >= 0  on launch {{ send email hi }} }}
"""
    )
    campaign = compile_workspace(load_text(source))[0]
    return campaign.scores[name]


def rec(kind: str, template: str, days_ago: float, message: str | None) -> EngagementRecord:
    """One engagement record."""
    return EngagementRecord(kind, template, at(days_ago), message)


def context(**kwargs: Any) -> EvalContext:
    """A context at NOW unless told otherwise."""
    kwargs.setdefault("now", NOW)
    return EvalContext(**kwargs)


# ---------------------------------------------------------------------------- the example


def example_contact(**kwargs: Any) -> EvalContext:
    """A contact with opens, clicks and views at known ages (fields can be overridden)."""
    kwargs.setdefault(
        "engagement",
        Engagement(
            records=(
                rec("opened", "welcome", 2, "m1"),
                rec("clicked", "welcome", 2, "m1"),  # opened too: one open, one click
                rec("clicked", "offer", 10, "m2"),  # no open recorded: counts as one
                rec("clicked", "offer", 9, "m2"),  # a second click on m2: still one click
                rec("opened", "digest", 40, "m3"),  # outside 30d
                rec("opened", "digest", -1, "m4"),  # in the future
            )
        ),
    )
    kwargs.setdefault(
        "events",
        [
            ("property_viewed", at(1), {}),
            ("property_viewed", at(3), {}),
            ("property_viewed", at(8), {}),  # outside 7d
        ],
    )
    return context(**kwargs)


def test_language_reference_example_exact_value() -> None:
    # opens 2 x 5 + clicks 2 x 10 + views 2 x 3, all younger than one decay period
    decl = score_decl(ENGAGEMENT_SCORE)
    assert compute_score(decl, example_contact()) == Decimal(36)
    lines = score_breakdown(decl, example_contact())
    assert [line.points for line in lines] == [10, 20, 6, 0]
    assert lines[0].earned_at == (at(10), at(2))
    assert lines[1].earned_at == (at(10), at(2))


def test_compiled_and_ast_forms_agree() -> None:
    decl = score_decl(ENGAGEMENT_SCORE)
    compiled = compiled_score(ENGAGEMENT_SCORE, "engagement")
    for ctx in (example_contact(), context(), example_contact(engagement=Engagement())):
        assert compute_score(compiled, ctx) == compute_score(decl, ctx)
    assert compute_score(compiled.rules, example_contact()) == Decimal(36)


def test_unsubscribed_costs_its_points_and_decays_from_when_it_happened() -> None:
    decl = score_decl(ENGAGEMENT_SCORE)
    flagged = context(engagement=Engagement(unsubscribed=True))
    assert compute_score(decl, flagged) == Decimal(-100)
    dated = context(engagement=Engagement(unsubscribed_at=at(45)))
    assert compute_score(decl, dated) == Decimal(-90)
    future = context(engagement=Engagement(unsubscribed_at=at(-1)))
    assert compute_score(decl, future) == Decimal(0)


def test_a_score_in_an_expression() -> None:
    ctx = example_contact(scores={"engagement": score_decl(ENGAGEMENT_SCORE)})
    probe = parse_text("segment s = engagement >= 36 and engagement < 37").declarations[0]
    assert isinstance(probe, ast.SegmentDecl)
    assert evaluate(probe.expr, ctx) is True


# ---------------------------------------------------------------------------- decay


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [
        (0, Decimal(10)),
        (29.99, Decimal(10)),
        (30, Decimal(9)),
        (59, Decimal(9)),
        (60, Decimal("8.1")),
        (90, Decimal("7.29")),
        (300, Decimal("3.486784401")),
    ],
)
def test_decay_per_full_period_since_the_earning_event(days_ago: float, expected: Decimal) -> None:
    decl = score_decl("score s { clicked(any): +10 each  decay 10% per 30d }")
    ctx = context(engagement=Engagement(records=(rec("clicked", "x", days_ago, "m"),)))
    assert compute_score(decl, ctx) == expected


def test_each_occurrence_decays_on_its_own() -> None:
    decl = score_decl("score s { visit: +10 each  decay 50% per 1d }")
    ctx = context(events=[("visit", at(0.5), {}), ("visit", at(1.5), {}), ("visit", at(2.5), {})])
    assert compute_score(decl, ctx) == Decimal("17.5")  # 10 + 5 + 2.5


def test_a_full_decay_leaves_nothing_after_one_period() -> None:
    decl = score_decl("score s { visit: +10 each  decay 100% per 1d }")
    ctx = context(events=[("visit", at(0.5), {}), ("visit", at(1), {})])
    assert compute_score(decl, ctx) == Decimal(10)


def test_only_the_first_decay_rule_counts() -> None:
    rules, decay = rules_of(score_decl("score s { visit: +1  decay 10% per 1d  decay 50% per 1d }"))
    assert decay == DecayRule(Decimal(10), 86400)
    assert rules == [PointsRule(ast.Path(("visit",)), None, Decimal(1), False)]


def test_decay_factor() -> None:
    rule = DecayRule(Decimal(20), 3600)
    assert decay_factor(rule, NOW - dt.timedelta(hours=2, minutes=59), NOW) == Decimal("0.64")
    assert decay_factor(rule, None, NOW) == 1
    assert decay_factor(None, at(100), NOW) == 1
    assert decay_factor(rule, NOW + dt.timedelta(hours=5), NOW) == 1


@settings(max_examples=200, deadline=None)
@given(
    percent=st.integers(1, 100),
    per=st.integers(60, 10 * 86400),
    age=st.integers(0, 400 * 86400),
)
def test_decay_factor_is_a_power_of_what_is_kept(percent: int, per: int, age: int) -> None:
    rule = DecayRule(Decimal(percent), per)
    factor = decay_factor(rule, NOW - dt.timedelta(seconds=age), NOW)
    assert 0 <= factor <= 1
    periods = age // per
    assert factor == (1 if periods == 0 else (1 - Decimal(percent) / 100) ** periods)


# ---------------------------------------------------------------------------- each, once, within


def test_once_rules_count_one_occurrence_decayed_from_the_latest() -> None:
    decl = score_decl("score s { property_viewed within 7d: +3  decay 50% per 2d }")
    ctx = context(events=[("property_viewed", at(5), {}), ("property_viewed", at(2.5), {})])
    assert compute_score(decl, ctx) == Decimal("1.5")
    old = context(events=[("property_viewed", at(8), {})])
    assert compute_score(decl, old) == Decimal(0)


def test_within_includes_its_boundary_and_excludes_the_future() -> None:
    decl = score_decl("score s { visit within 7d: +1 each }")
    ctx = context(events=[("visit", at(7), {}), ("visit", at(7.001), {}), ("visit", at(-0.1), {})])
    assert compute_score(decl, ctx) == Decimal(1)


def test_rule_conditions_segments_flags_attributes_and_other_conditions() -> None:
    decl = score_decl(
        """score s {
          qualified: +20
          converted within 30d: +50
          email_verified: +5
          in_campaign(onboarding): +7
          visit: +1 each
        }"""
    )
    probe = parse_text("segment q = lead_score >= 30").declarations[0]
    assert isinstance(probe, ast.SegmentDecl)
    ctx = context(
        attributes={"lead_score": 31, "email_verified": True},
        segments={"qualified": probe.expr},
        engagement=Engagement(converted_at=at(3)),
        campaigns=frozenset({"onboarding"}),
        events=[("visit", at(1), {}), ("visit", at(2), {})],
    )
    assert compute_score(decl, ctx) == Decimal(84)
    # a flag known only as a boolean has no time, so it cannot be `within` anything
    undated = context(engagement=Engagement(converted=True))
    assert compute_score(decl, undated) == Decimal(0)
    assert compute_score(decl, context(attributes={"email_verified": False})) == Decimal(0)


def test_no_rules_and_no_history_score_zero() -> None:
    assert compute_score(score_decl("score s { decay 10% per 1d }"), context()) == Decimal(0)
    assert compute_score(score_decl(ENGAGEMENT_SCORE), context()) == Decimal(0)


def test_engagement_instants_count_a_clicked_message_as_opened_once() -> None:
    records = [
        rec("clicked", "a", 3, "m1"),
        rec("clicked", "a", 2, "m1"),
        rec("opened", "a", 5, "m2"),
        rec("clicked", "a", 4, "m2"),
        rec("clicked", "b", 1, None),
        rec("delivered", "a", 6, "m1"),
    ]
    assert engagement_instants("opened", "any", records) == [at(5), at(3), at(1)]
    assert engagement_instants("opened", "a", records) == [at(5), at(3)]
    assert engagement_instants("clicked", "a", records) == [at(4), at(3)]  # m1 once
    # A message is delivered when first confirmed: a delivery report, or the person's open
    # or click (engine/delivery.py): m1 by its report 6 days ago, m2 by its open 5 days
    # ago, the click naming no message 1 day ago (a message of its own).
    assert engagement_instants("delivered", "any", records) == [at(6), at(5), at(1)]
    assert engagement_instants("delivered", "b", records) == [at(1)]
    assert engagement_instants("replied", "any", records) == []


def test_an_open_or_click_counts_once_per_message_however_often_it_is_reported() -> None:
    """Cadence's pixel and Brevo's webhook both report one open of m1 (and the pixel a
    second look); Cadence's redirect and Brevo both report its click: one open and one
    click of m1, at the first report, as the report counts them."""
    records = [
        rec("opened", "a", 3, "m1"),  # the pixel
        rec("opened", "a", 2.99, "m1"),  # Brevo's webhook, a moment later
        rec("opened", "a", 1, "m1"),  # the pixel again, two days on
        rec("clicked", "a", 2.5, "m1"),  # the redirect
        rec("clicked", "a", 2.49, "m1"),  # Brevo's webhook
        rec("opened", "a", 6, "m2"),
        rec("opened", "a", 4, None),  # no message named: a message of its own
        rec("opened", "a", 3.5, None),
    ]
    assert engagement_instants("opened", "a", records) == [at(6), at(4), at(3.5), at(3)]
    assert engagement_instants("clicked", "any", records) == [at(2.5)]
    decl = score_decl("score s { opened(any): +5 each  clicked(any): +10 each }")
    assert compute_score(decl, context(engagement=Engagement(records=tuple(records)))) == 30


def test_a_bare_opened_or_clicked_in_a_score_counts_once_per_message_too() -> None:
    """`opened within 30d: +5 each` reads the same opens as `opened(any)`: the pixel's and
    Brevo's report of one open of m1 are one open, its click is one click."""
    events = [
        ("opened", at(2), {"send": "m1", "template": "a", "via": "pixel"}),
        ("opened", at(2), {"send": "m1", "template": "a", "provider": "brevo"}),
        ("clicked", at(1.9), {"send": "m1", "template": "a", "url": "https://x.test"}),
        ("clicked", at(1.9), {"send": "m1", "template": "a", "provider": "brevo"}),
        ("clicked", at(1), {"send": "m2", "template": "a", "provider": "brevo"}),
    ]
    ctx = EvalContext.from_facts(now=NOW, attributes={}, events=events)
    bare = score_decl("score s { opened within 30d: +5 each  clicked: +10 each }")
    called = score_decl("score s { opened(any) within 30d: +5 each  clicked(any): +10 each }")
    assert compute_score(bare, ctx) == compute_score(called, ctx) == 5 * 2 + 10 * 2


def test_a_delivery_counts_once_per_delivered_message() -> None:
    """A score's `delivered(T)` counts what `delivered(T)` holds for: each delivered message
    once, at its first report; a message that bounced hard counts none."""
    records = [
        rec("delivered", "a", 6, "m1"),
        rec("delivered", "a", 5, "m1"),  # the provider reported it twice
        rec("delivered", "a", 4, "m2"),
        rec("bounced", "a", 3, "m2"),  # a hard bounce after it
        EngagementRecord("bounced", "a", at(2), "m3", outcome="soft_bounced"),
        rec("delivered", "a", 1, "m3"),  # the retry after the soft bounce got through
    ]
    assert engagement_instants("delivered", "a", records) == [at(6), at(1)]


def test_bad_rules_are_errors() -> None:
    with pytest.raises(EvaluationError):
        rules_of(["not a rule"])
    bad_call = PointsRule(ast.Call("opened", (ast.StringLit("x"),)), None, Decimal(1), True)
    with pytest.raises(EvaluationError):
        compute_score([bad_call], context())


@settings(max_examples=100, deadline=None)
@given(
    ages=st.lists(st.floats(0, 90), max_size=8),
    later=st.floats(0, 60),
)
def test_positive_scores_never_grow_without_new_activity(ages: list[float], later: float) -> None:
    decl = score_decl(ENGAGEMENT_SCORE.replace("  unsubscribed: -100\n", ""))
    records = tuple(rec("opened", "x", age, f"m{i}") for i, age in enumerate(ages))
    events = [("property_viewed", at(age), {}) for age in ages]
    first = context(engagement=Engagement(records=records), events=events)
    second = context(
        now=NOW + dt.timedelta(days=later), engagement=Engagement(records=records), events=events
    )
    assert compute_score(decl, second) <= compute_score(decl, first)


def test_the_documented_decay_example() -> None:
    # docs/semantics.md: clicks 0, 30 and 60 days ago are worth 10 + 9 + 8.1
    decl = score_decl("score engagement { clicked(any): +10 each  decay 10% per 30d }")
    clicks = tuple(rec("clicked", "x", days, f"m{days}") for days in (0, 30, 60))
    assert compute_score(decl, context(engagement=Engagement(records=clicks))) == Decimal("27.1")
