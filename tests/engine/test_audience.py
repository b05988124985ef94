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


# ------------------------------------------------------------------ counts of events

# Conditions over `count(EVENT, DUR)`: the engine fills the filter's count columns from each
# contact's evaluator context, so opens and clicks count once per message in both paths.
COUNTED = [
    "count(opened, 30d) >= 2",
    "count(clicked, 7d) >= 1 and count(opened, 7d) < 2",
    "count(opened, 14d) > count(clicked, 14d)",
    "count(replied, 30d) >= 1 or lead_score > 50",
    "not (count(opened, 3d) >= 1) and count(property_viewed, 7d) >= 2",
    "count(opened) = 3 or count(clicked) = 2",
    "hot and lead_score >= 20",
]
SEGMENTS = {"hot": expr("count(opened, 30d) >= 2 or count(clicked, 30d) >= 2")}

History = list[tuple[str, dt.datetime, dict[str, Any]]]


def opens(*reports: tuple[str, float, str | None]) -> History:
    """(event, days before NOW, message or None) as stored events; a message is a `send`."""
    return [
        (name, NOW - dt.timedelta(days=days), {} if message is None else {"send": message})
        for name, days, message in reports
    ]


def by_history(
    condition: ast.Expr, histories: Mapping[str, History], segments: Mapping[str, ast.Expr]
) -> tuple[Any, Any]:
    """The evaluator's answer per contact, and each contact's evaluator context."""
    contexts: dict[str, evaluate.EvalContext] = {}

    def context(contact_id: str, attributes: Mapping[str, Any] | None = None) -> Any:
        if contact_id not in contexts:
            contexts[contact_id] = evaluate.EvalContext.from_facts(
                now=NOW,
                attributes=attributes or {},
                events=histories.get(contact_id, []),
                segments=segments,
            )
        return contexts[contact_id]

    def holds(contact_id: str, attributes: Mapping[str, Any]) -> bool:
        return evaluate.holds(condition, context(contact_id, attributes))

    return holds, context


def select_counted(
    text: str, contacts: list[tuple[str, dict[str, Any]]], histories: Any, backend: str
) -> tuple[Any, list[str]]:
    """The filter's selection (with count columns) and the evaluator's, for one condition."""
    condition = expr(text)
    fallback, context = by_history(condition, histories, SEGMENTS)
    for contact_id, attributes in contacts:
        context(contact_id, attributes)
    chosen = select(
        condition,
        contacts,
        now=NOW,
        segments=SEGMENTS,
        fallback=fallback,
        backend=backend,  # type: ignore[arg-type]
        context=context,
    )
    return chosen, [i for i, a in contacts if fallback(i, a)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_count_columns_count_opens_once_per_message_as_the_evaluator_does(backend: str) -> None:
    """Three reports of one open (a pixel, the provider's webhook, a reopen) are one opened
    message in the filter's column as in `count(opened, 30d)`; a click is an open too."""
    histories = {
        "tripled": opens(("opened", 3, "m1"), ("opened", 2, "m1"), ("opened", 1, "m1")),
        "two": opens(("opened", 3, "m1"), ("opened", 2, "m1"), ("opened", 1, "m2")),
        "clicked": opens(("clicked", 2, "m1"), ("opened", 1, "m2")),
        "unnamed": opens(("opened", 2, None), ("opened", 1, None)),
        "old": opens(("opened", 40, "m1"), ("opened", 1, "m1"), ("opened", 1, "m2")),
        "none": [],
    }
    contacts = [(name, {"lead_score": 10}) for name in histories]
    chosen, expected = select_counted("count(opened, 30d) >= 2", contacts, histories, backend)
    assert chosen.vectorised, "the dispatch core should take a count it is given events for"
    assert chosen.contact_ids == expected == ["two", "clicked", "unnamed"]
    # Counting reports would have taken `tripled` and `old` too.


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text", COUNTED)
def test_counted_conditions_match_the_evaluator(backend: str, text: str) -> None:
    rng = random.Random(text)
    contacts, histories = generated_contacts(rng, 80)
    chosen, expected = select_counted(text, contacts, histories, backend)
    assert chosen.vectorised
    assert chosen.contact_ids == expected


def test_a_count_without_the_histories_goes_to_the_evaluator() -> None:
    condition = expr("count(opened, 30d) >= 2")
    histories = {"a": opens(("opened", 1, "m1"), ("opened", 1, "m2"))}
    fallback, _ = by_history(condition, histories, {})
    chosen = select(condition, [("a", {}), ("b", {})], now=NOW, fallback=fallback)
    assert not chosen.vectorised and chosen.contact_ids == ["a"]


def test_an_attribute_named_like_a_count_column_goes_to_the_evaluator() -> None:
    condition = expr("count(opened, 30d) >= 1 and contact.count__opened__2592000000000us = 5")
    fallback, context = by_history(condition, {"a": opens(("opened", 1, "m1"))}, {})
    contacts = [("a", {"count__opened__2592000000000us": 5}), ("b", {})]
    chosen = select(condition, contacts, now=NOW, fallback=fallback, context=context)
    assert not chosen.vectorised and chosen.contact_ids == ["a"]


def generated_contacts(
    rng: random.Random, size: int
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, History]]:
    """Contacts with histories of duplicated reports, clicks without opens, events naming
    no message and events after now."""
    contacts: list[tuple[str, dict[str, Any]]] = []
    histories: dict[str, History] = {}
    for index in range(size):
        reports = []
        for _ in range(rng.randint(0, 9)):
            message = rng.choice([None, "m1", "m2", "m3"])
            name = rng.choice(["opened", "opened", "clicked", "replied", "property_viewed"])
            days = rng.choice([-1, 0.5, 1, 2, 4, 6, 10, 20, 29, 31, 45])
            reports.append((name, days, message))
            if rng.random() < 0.3:  # the same message reported again (the webhook, a reopen)
                reports.append((name, max(days - rng.random(), -1), message))
        contact_id = f"c{index}"
        histories[contact_id] = opens(*reports)
        score = None if rng.random() < 0.2 else rng.randint(0, 100)
        contacts.append((contact_id, {} if score is None else {"lead_score": score}))
    return contacts, histories


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    text=st.sampled_from(COUNTED),
    backend=st.sampled_from(BACKENDS),
    reports=st.lists(
        st.tuples(
            st.sampled_from(["opened", "clicked", "replied"]),
            st.floats(-2, 60, allow_nan=False),
            st.one_of(st.none(), st.sampled_from(["m1", "m2", "m3"])),
        ),
        max_size=20,
    ),
)
def test_counts_on_generated_histories_match_the_evaluator(
    seed: int, text: str, backend: str, reports: list[tuple[str, float, str | None]]
) -> None:
    """Generated histories (duplicates, clicks without opens, events naming no message):
    the dispatch filter's members are the evaluator's, on both cores."""
    contacts, histories = generated_contacts(random.Random(seed), 12)
    contacts.append(("drawn", {"lead_score": 30}))
    histories["drawn"] = opens(*reports)
    chosen, expected = select_counted(text, contacts, histories, backend)
    assert chosen.vectorised
    assert chosen.contact_ids == expected


# ------------------------------------------------------------------ through the store

OPENERS = """
template hello email { subject "Hello" body "<p>x</p>" }
segment opener = count(opened, 30d) >= 2
campaign club {
  audience opener
  exclude count(clicked, 30d) >= 2
  on launch { send email hello }
}
"""


def test_an_audience_counts_opens_once_per_message_on_both_cores(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """Events pushed through the engine; the audience goes to the dispatch filter (on each
    core), whose count columns count messages as the evaluator does.

    p1 opened one email three times (its pixel, Brevo's report, a reopen) and another
    once: two messages. p2 opened one email three times: one. p3 clicked one email with
    images off and opened another: two. p4's two opens name no message: two. p5 clicked
    two emails, each reported twice: two opened, two clicked, so excluded.
    """
    from tests.engine.test_runtime import T0, campaigns, engine_run, sent

    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(1, 6)]
    pushes = [
        ("p1", "opened", "a"), ("p1", "opened", "a"), ("p1", "opened", "a"), ("p1", "opened", "b"),
        ("p2", "opened", "a"), ("p2", "opened", "a"), ("p2", "opened", "a"),
        ("p3", "clicked", "a"), ("p3", "opened", "b"),
        ("p4", "opened", None), ("p4", "opened", None),
        ("p5", "clicked", "a"), ("p5", "clicked", "a"), ("p5", "clicked", "b"),
        ("p5", "clicked", "b"),
    ]  # fmt: skip

    async def body(engine: Any, clock: Any, sink: Any) -> Any:
        await engine.upsert_contacts(people)
        for minutes, (contact_id, name, message) in enumerate(pushes, start=1):
            properties = {} if message is None else {"send": f"{contact_id}-{message}"}
            await engine.push_event(
                {
                    "contact": contact_id,
                    "name": name,
                    "at": (T0 - dt.timedelta(days=2, minutes=-minutes)).isoformat(),
                    "properties": properties,
                }
            )
        await engine.deploy(campaigns(OPENERS))
        enrolled = await engine.launch("club")
        await engine.run_due()
        return enrolled, sorted(sent(sink))

    enrolled, delivered = engine_run(store_url, body)
    assert enrolled == 3
    assert delivered == [("p1", "hello"), ("p3", "hello"), ("p4", "hello")]
    assert filter_backend, "the launch should select its audience in bulk"
    for chosen, evaluated, vectorised in filter_backend:
        assert vectorised, "the dispatch filter should decide an audience of counts"
        assert chosen == evaluated


async def with_history(
    engine: Any, people: list[dict[str, Any]], pushes: list[tuple[str, str]]
) -> None:
    """The contacts, and their events (contact, name) a minute apart, a day before T0."""
    from tests.engine.test_runtime import T0

    await engine.upsert_contacts(people)
    for minutes, (contact_id, name) in enumerate(pushes, start=1):
        at = T0 - dt.timedelta(days=1, minutes=-minutes)
        await engine.push_event({"contact": contact_id, "name": name, "at": at.isoformat()})


SCORED = """
template hello email { subject "Hello" body "<p>x</p>" }
score engagement {
  clicked(any) within 30d: +10 each
  property_viewed within 7d: +3 each
}
segment hot = engagement >= 16
campaign warm {
  audience hot or engagement >= 13
  exclude engagement > 25
  on launch { send email hello }
}
"""


def test_an_audience_that_reads_a_score_scores_every_contact_on_both_cores(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """A score is no contact attribute: the filter read `engagement` as a column nobody has,
    unknown for everyone, so `audience engagement >= 13` (or a segment on a score) enrolled
    nobody, while `if engagement >= 13` in the steps held. The evaluator computes it.

    q1 clicked twice (20), q2 clicked once and viewed once (13), q3 viewed twice (6), q4
    clicked three times (30, excluded), q5 did nothing (0).
    """
    from tests.engine.test_runtime import campaigns, engine_run, sent

    people = [{"id": f"q{i}", "email": f"q{i}@example.test"} for i in range(1, 6)]
    pushes = [
        ("q1", "clicked"), ("q1", "clicked"), ("q2", "clicked"), ("q2", "property_viewed"),
        ("q3", "property_viewed"), ("q3", "property_viewed"),
        ("q4", "clicked"), ("q4", "clicked"), ("q4", "clicked"),
    ]  # fmt: skip

    async def body(engine: Any, clock: Any, sink: Any) -> Any:
        await with_history(engine, people, pushes)
        await engine.deploy(campaigns(SCORED))
        enrolled = await engine.launch("warm")
        await engine.run_due()
        return enrolled, sorted(sent(sink))

    enrolled, delivered = engine_run(store_url, body)
    assert enrolled == 2
    assert delivered == [("q1", "hello"), ("q2", "hello")]
    assert filter_backend, "the launch should select its audience in bulk"
    for chosen, evaluated, _vectorised in filter_backend:
        assert chosen == evaluated


FANNED = """
template listing email { subject "New listing" body "<p>x</p>" }
score engagement { clicked(any) within 30d: +10 each }
segment hot = engagement >= 20
segment replier = count(replied, 30d) >= 1
when property_listed for contacts where
    contact.budget_max >= event.price and (hot or replier or engagement >= 10 and converted)
  send email listing
"""


def test_a_fan_out_predicate_reads_scores_segments_and_counts_on_both_cores(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """A fan-out read only the contacts' attributes: a score, a segment on one, a count or
    `converted` in `for contacts where` was unknown (or false) for everyone, so the listing
    reached nobody who qualified through them, silently. It reads a contact as every other
    condition does.

    f1 clicked twice (hot), f2 replied once (replier), f3 clicked once and converted, f4
    clicked once and did not convert, f5 is hot but over budget.
    """
    from tests.engine.test_runtime import T0, campaigns, engine_run, sent

    people = [
        {"id": f"f{i}", "email": f"f{i}@example.test", "budget_max": 500} for i in range(1, 6)
    ]
    people[4]["budget_max"] = 100
    pushes = [
        ("f1", "clicked"), ("f1", "clicked"), ("f2", "replied"), ("f3", "clicked"),
        ("f3", "converted"), ("f4", "clicked"), ("f5", "clicked"), ("f5", "clicked"),
    ]  # fmt: skip

    async def body(engine: Any, clock: Any, sink: Any) -> Any:
        await with_history(engine, people, pushes)
        await engine.deploy(campaigns(FANNED))
        await engine.launch("t_property_listed")
        await engine.push_event(
            {"name": "property_listed", "at": T0.isoformat(), "properties": {"price": 300}}
        )
        await engine.run_due()
        return sorted(sent(sink))

    delivered = engine_run(store_url, body)
    assert delivered == [("f1", "listing"), ("f2", "listing"), ("f3", "listing")]
    assert filter_backend, "the fan-out should select its contacts in bulk"
    for chosen, evaluated, _vectorised in filter_backend:
        assert chosen == evaluated


ATTRIBUTE_AUDIENCE = """
template hello email { subject "Hello" body "<p>x</p>" }
campaign local {
  audience country in ["US", "CA"]
  exclude city = "Boston"
  on launch { send email hello }
}
"""


@pytest.mark.parametrize(("source", "reads_history"), [(ATTRIBUTE_AUDIENCE, False), (SCORED, True)])
def test_a_launch_reads_histories_only_for_an_audience_that_reads_them(
    store_url: str, source: str, reads_history: bool
) -> None:
    """Choosing an audience of attributes alone read every candidate's events, sends and
    campaign memberships as well; only an audience that reads them (a score here) does."""
    import re

    from sqlalchemy import event
    from sqlalchemy.engine import Engine as SAEngine

    from tests.engine.test_runtime import campaigns, engine_run

    people = [
        {"id": "u1", "email": "u1@example.test", "country": "US", "city": "Austin"},
        {"id": "u2", "email": "u2@example.test", "country": "US", "city": "Boston"},
        {"id": "u3", "email": "u3@example.test", "country": "FR", "city": "Paris"},
    ]
    history: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Who is enrolled already, in any version of the campaign (a contact enters once),
        # reads the campaign's own versions: no contact's history.
        if re.match(r"SELECT enrollments\.contact_id, enrollments\.occurrence\s+FROM", statement):
            return
        if re.search(r"\bFROM (events|send_outbox|campaign_versions)\b", statement):
            history.append(statement)

    async def body(engine: Any, clock: Any, sink: Any) -> int:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(source))
        event.listen(SAEngine, "before_cursor_execute", record)
        try:
            return int(await engine.launch(source.split("campaign ")[1].split()[0]))
        finally:
            event.remove(SAEngine, "before_cursor_execute", record)

    enrolled = engine_run(store_url, body)
    assert enrolled == (0 if reads_history else 1)
    assert bool(history) == reads_history, history


# ------------------------------------------------------------------ instants written as text

# How people write an instant in an attribute: every form the evaluator reads, and text it
# cannot read (not a date, out of the calendar once its offset is applied).
INSTANT_TEXTS = [
    "2026-11-15T12:00:00Z",
    "2026-11-15T12:00:00z",
    "2026-11-20T23:30:00+01:00",
    "2026-11-25T12:00",
    "2026-11-28 08:15:00.250Z",
    "2026-11-03",
    "2026-12-01",
    "2026-12-08T12:00:00Z",
    "2026-12-24",
    "20261110T120000Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:00:00-05:00",
    "2026-11-31T10:00:00Z",
    "soon",
]
TIMED = [
    "last_activity within 30d",
    "not (last_activity within 7d)",
    "last_activity > 2026-11-10",
    "last_activity <= 2026-11-20T00:00 or lead_score > 90",
]


@settings(max_examples=80, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.sampled_from(INSTANT_TEXTS)), max_size=12),
    text=st.sampled_from(TIMED),
    backend=st.sampled_from(BACKENDS),
)
def test_instants_written_as_text_read_alike_in_both_paths(
    texts: list[str | None], text: str, backend: str
) -> None:
    """The filter turns a column of ISO text into instants and the evaluator reads each value:
    both must read the same forms (a lowercase `z` too) and neither may fail on one outside the
    calendar; such a value is unknown, as text that is no date is."""
    contacts = [(f"c{i}", {"last_activity": v, "lead_score": 50}) for i, v in enumerate(texts)]
    condition = expr(text)
    fallback = by_evaluator(condition, {})
    chosen = select(condition, contacts, now=NOW, fallback=fallback, backend=backend)  # type: ignore[arg-type]
    assert chosen.contact_ids == [i for i, a in contacts if fallback(i, a)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_column_of_instants_with_a_lowercase_z_is_filtered_in_bulk(backend: str) -> None:
    condition = expr("last_activity within 7d")
    contacts = [
        ("recent", {"last_activity": "2026-11-28T10:00:00z"}),
        ("old", {"last_activity": "2026-10-01T10:00:00z"}),
        ("outside", {"last_activity": "0001-01-01T00:00:00+01:00"}),
    ]
    chosen = select(
        condition,
        contacts,
        now=NOW,
        fallback=by_evaluator(condition, {}),
        backend=backend,  # type: ignore[arg-type]
    )
    assert chosen.vectorised and chosen.contact_ids == ["recent"]


def test_a_launch_survives_an_attribute_instant_outside_the_calendar(store_url: str) -> None:
    """`0001-01-01T00:00:00+01:00` is a well-formed ISO text whose UTC instant falls before
    year 1: reading it raised OverflowError, so one such contact failed every launch and step
    whose condition read the attribute."""
    people = [
        {"id": "u1", "email": "u1@example.test", "last_activity": "2026-11-20T10:00:00Z"},
        {"id": "u2", "email": "u2@example.test", "last_activity": "0001-01-01T00:00:00+01:00"},
        {"id": "u3", "email": "u3@example.test", "last_activity": "2026-11-25T10:00:00z"},
    ]
    assert launched(store_url, "last_activity within 30d", people) == 2


def launched(store_url: str, audience: str, people: list[dict[str, Any]]) -> int:
    """How many of `people` a launch of a campaign with `audience AUDIENCE` enrolls."""
    from tests.engine.test_runtime import campaigns, engine_run

    source = f"""
campaign picked "Picked" {{
  audience {audience}
  on launch {{ send email hello }}
}}
template hello email {{ subject "Hi" body "Hello" }}
"""

    async def body(engine: Any, clock: Any, sink: Any) -> int:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(source))
        return int(await engine.launch("picked"))

    return int(engine_run(store_url, body))


def test_a_launch_leaves_out_instants_after_now_on_both_cores(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """`renews_at within 30d` is the last 30 days: the filter read only `>= now - 30d`, so a
    launch enrolled a contact whose renewal date lay ahead, one the evaluator (a segment
    entry, an `if`) says is not within them."""
    people = [
        {"id": "past", "email": "p@example.test", "renews_at": "2026-11-20T10:00:00Z"},
        {"id": "future", "email": "f@example.test", "renews_at": "2026-12-20T10:00:00Z"},
        {"id": "tomorrow", "email": "t@example.test", "renews_at": "2026-12-02"},
    ]
    assert launched(store_url, "renews_at within 30d", people) == 1
    assert [(chosen, evaluated) for chosen, evaluated, _ in filter_backend] == [
        (["past"], ["past"])
    ]
    assert all(vectorised for *_, vectorised in filter_backend)


NESTED_LISTING = """
template listing email { subject "New in {{ event.listing.city }}" body "<p>x</p>" }
when property_listed for contacts where contact.city = event.listing.city
  and not (event.listing in contact.areas) send email listing
"""


def test_a_fan_out_reads_an_event_records_fields_on_both_cores(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """`event.listing.city` reaches into the event's record (docs/semantics.md), but the bulk
    filter was given the event without its records, so the field was missing and a fan-out
    over it reached nobody, while the evaluator matched. A record read as a value (`in`)
    goes to the evaluator, which holds it of another kind than any item."""
    from tests.engine.test_runtime import T0, campaigns, engine_run, sent

    people = [
        {"id": "n1", "email": "n1@example.test", "city": "Cebu", "areas": []},
        {"id": "n2", "email": "n2@example.test", "city": "Manila", "areas": []},
        {"id": "n3", "email": "n3@example.test", "city": "Cebu", "areas": ["Lahug"]},
    ]
    listing = {"listing": {"city": "Cebu", "geo": {"zone": "7"}}, "listing.city": "Manila"}

    async def body(engine: Any, clock: Any, sink: Any) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(NESTED_LISTING))
        await engine.launch("t_property_listed")
        await engine.push_event(
            {"name": "property_listed", "at": T0.isoformat(), "properties": listing}
        )
        await engine.run_due()
        return sorted(sent(sink))

    assert engine_run(store_url, body) == [("n1", "listing")]
    assert [(chosen, evaluated) for chosen, evaluated, _ in filter_backend] == [(["n1"], ["n1"])]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_event_fields_are_filtered_in_bulk(backend: str) -> None:
    condition = expr("city = event.listing.geo.city and event.price < 5")
    contacts = [("a", {"city": "Cebu"}), ("b", {"city": "Manila"})]
    event = {"listing": {"geo": {"city": "Cebu"}}, "price": 3, "listing.geo.city": "Manila"}
    chosen = select(
        condition,
        contacts,
        now=NOW,
        event=event,
        fallback=by_evaluator(condition, event),
        backend=backend,  # type: ignore[arg-type]
    )
    assert chosen.vectorised and chosen.contact_ids == ["a"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("text", ["renewed_at < signed_up_at", "renewed_at = signed_up_at"])
def test_two_columns_of_iso_text_compare_as_texts_in_both_paths(backend: str, text: str) -> None:
    """Two texts compare as texts (docs/semantics.md); the filter read both columns as
    instants, so `renewed_at < signed_up_at` chose a different audience in bulk than the
    evaluator does for one contact."""
    condition = expr(text)
    contacts = [
        (
            "zone",
            {"renewed_at": "2026-11-20T10:00:00+05:00", "signed_up_at": "2026-11-20T06:00:00Z"},
        ),
        ("day", {"renewed_at": "2026-11-20", "signed_up_at": "2026-11-20T00:00:00Z"}),
        ("plain", {"renewed_at": "2026-11-19", "signed_up_at": "2026-11-20"}),
    ]
    fallback = by_evaluator(condition, {})
    chosen = select(condition, contacts, now=NOW, fallback=fallback, backend=backend)  # type: ignore[arg-type]
    assert chosen.contact_ids == [i for i, a in contacts if fallback(i, a)]
    assert chosen.contact_ids == (["day", "plain"] if "<" in text else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("budgets", "expected"), [([600, 400.5], []), (["600 USD", "600 EUR", "400 USD"], [0])]
)
def test_money_against_a_number_is_unknown_in_bulk_too(
    backend: str, budgets: list[Any], expected: list[int]
) -> None:
    """`budget >= 500 USD` with a plain number `budget` is unknown (docs/semantics.md), but
    the filter lowered `500 USD` to 500 and chose the contacts above it; text holding money
    (`"600 USD"`) is read as money, in its currency only."""
    condition = expr("budget >= 500 USD or not (budget < 500 USD)")
    contacts = [(str(i), {"budget": budget}) for i, budget in enumerate(budgets)]
    fallback = by_evaluator(condition, {})
    chosen = select(condition, contacts, now=NOW, fallback=fallback, backend=backend)  # type: ignore[arg-type]
    assert chosen.contact_ids == [i for i, a in contacts if fallback(i, a)]
    assert chosen.contact_ids == [str(i) for i in expected]


def test_contact_dot_flag_is_the_stored_attribute_in_bulk_too_on_both_cores(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """`contact.unsubscribed` is the attribute (docs/semantics.md, Names), missing for a
    contact without it; the filter read it as the flag column (`unsubscribed`: false when
    nothing is recorded), so `not contact.unsubscribed` took in every contact without the
    attribute at a launch, where the evaluator takes in none of them."""
    people = [
        {"id": "none", "email": "n@example.test"},
        {"id": "yes", "email": "y@example.test", "unsubscribed": True},
        {"id": "no", "email": "o@example.test", "unsubscribed": False},
    ]
    assert launched(store_url, "not contact.unsubscribed", people) == 1
    assert [(chosen, evaluated) for chosen, evaluated, _ in filter_backend] == [(["no"], ["no"])]
