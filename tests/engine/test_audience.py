"""Bulk selection through the dispatch core agrees with the per-contact evaluator, both backends."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.dispatch.lower import lower
from cadence.dsl import ast
from cadence.dsl.parser import parse_text
from cadence.engine import evaluate
from cadence.engine.audience import columns_of, select

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
BACKENDS = ["rust", "python"]

PREDICATES = [
    'lead_score >= 30 and country in ["US", "CA"]',
    "email_verified and not unsubscribed",
    "last_activity within 30d or lead_score > 70",
    "contact.budget_max >= event.price and event.city in contact.areas",
    "event.property_id in contact.saved_properties",
    'not (lead_type = "buyer") or beds_min <= event.beds',
    'city startswith "Ma" and areas contains "Manila"',
]
EVENT = {"price": 400000, "city": "Manila", "property_id": "p2", "beds": 2}


def expr(text: str) -> ast.Expr:
    declaration = parse_text(f"segment s = {text}").declarations[0]
    assert isinstance(declaration, ast.SegmentDecl)
    return declaration.expr


def contact(rng: random.Random, index: int) -> tuple[str, dict[str, Any]]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    attributes = {
        "lead_score": maybe(rng.randint(0, 100)),
        "country": maybe(rng.choice(["US", "CA", "PH", "ES"])),
        "email_verified": maybe(rng.random() < 0.7),
        "unsubscribed": maybe(rng.random() < 0.1),
        "last_activity": maybe(f"2026-11-{rng.randint(1, 30):02d}T12:00:00Z"),
        "budget_max": maybe(rng.choice([250000, 400000, 900000])),
        "areas": maybe(rng.sample(["Manila", "Cebu", "Madrid", "Denver"], rng.randint(0, 3))),
        "saved_properties": maybe(rng.sample(["p1", "p2", "p3"], rng.randint(0, 2))),
        "lead_type": maybe(rng.choice(["buyer", "seller"])),
        "beds_min": maybe(rng.randint(1, 4)),
        "city": maybe(rng.choice(["Manila", "Madrid", "Cebu", "Makati"])),
    }
    attributes = {k: v for k, v in attributes.items() if v is not None or rng.random() < 0.5}
    return f"c{index}", attributes


def by_evaluator(condition: ast.Expr, event: Mapping[str, Any]) -> Any:
    def holds(contact_id: str, attributes: Mapping[str, Any]) -> bool:
        context = evaluate.EvalContext.from_facts(now=NOW, attributes=attributes, event=dict(event))
        return evaluate.holds(condition, context)

    return holds


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text", PREDICATES)
def test_vectorised_selection_matches_the_evaluator(backend: str, text: str) -> None:
    rng = random.Random(text)
    contacts = [contact(rng, i) for i in range(400)]
    condition = expr(text)
    fallback = by_evaluator(condition, EVENT)
    chosen = select(
        condition,
        contacts,
        now=NOW,
        event=EVENT,
        fallback=fallback,
        backend=backend,  # type: ignore[arg-type]
    )
    assert chosen.vectorised, "the dispatch core should take this predicate"
    assert chosen.contact_ids == [i for i, a in contacts if fallback(i, a)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_functions_the_filter_cannot_read_fall_back_to_the_evaluator(backend: str) -> None:
    condition = expr("opened(any) or lead_score > 50")
    contacts = [("a", {"lead_score": 60}), ("b", {"lead_score": 10})]
    chosen = select(
        condition,
        contacts,
        now=NOW,
        fallback=by_evaluator(condition, {}),
        backend=backend,  # type: ignore[arg-type]
    )
    assert not chosen.vectorised
    assert chosen.contact_ids == ["a"]


def test_mixed_types_in_a_column_fall_back() -> None:
    condition = expr("lead_score > 5")
    contacts = [("a", {"lead_score": 10}), ("b", {"lead_score": "ten"})]
    chosen = select(condition, contacts, now=NOW, fallback=by_evaluator(condition, {}))
    assert not chosen.vectorised and chosen.contact_ids == ["a"]


def test_columns_of_names_what_the_expression_reads() -> None:
    lowered = lower(expr('a > 1 and (b in ["x"] or not c) and event.d = 2'))
    assert columns_of(lowered) == {"a", "b", "c"}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    text=st.sampled_from(PREDICATES),
    backend=st.sampled_from(BACKENDS),
)
def test_differential_on_generated_contacts(seed: int, text: str, backend: str) -> None:
    rng = random.Random(seed)
    contacts = [contact(rng, i) for i in range(rng.randint(0, 60))]
    condition = expr(text)
    fallback = by_evaluator(condition, EVENT)
    chosen = select(condition, contacts, now=NOW, event=EVENT, fallback=fallback, backend=backend)  # type: ignore[arg-type]
    assert chosen.contact_ids == [i for i, a in contacts if fallback(i, a)]
