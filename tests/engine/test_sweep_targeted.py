"""The targeted segment sweep reads only the contacts whose entry can have changed.

`cadence.engine.sweep.time_windows` derives, from a segment or an audience, the data points
whose passing by a window's edge can change its value (events of a name, sends on a
channel, attribute instants under `within`); `moved` finds the contacts with such a point in
the stretch between two sweeps. These tests hold it to the full sweep: on generated
contacts, events, sends, attributes, expressions and sweep instants, every contact whose
value differs between the two instants is among the candidates, and the engine's targeted
sweep makes exactly the entries and bookings the full one makes. Both stores.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.engine import conditions, sweep
from cadence.engine.clock import SimulatedClock, as_utc
from cadence.engine.facts import load_facts
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.bulk import insert_rows
from cadence.engine.store.models import Contact, Enrollment, Event, OutboxMessage
from tests.engine.test_runtime import T0, campaigns

HOUR = 3600
DAY = 24 * HOUR
DURATIONS = {"1h": HOUR, "1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
EVENT_NAMES = ("login", "purchase", "opened", "clicked", "converted")
_tenants = itertools.count()


def _compile(base: str, segment: str, extra: str = "") -> c.CompiledCampaign:
    (campaign,) = campaigns(
        f"""
template t email {{ subject "x" body "x" }}
score engagement {{ opened(any) within 30d: +5 each }}
segment base = {base}
segment s = {segment}
campaign probe {{ {extra} on segment_enter s {{ send email t }} }}
"""
    )
    return campaign


def _windows(segment: str, base: str = "lead_score > 1") -> tuple[sweep.Window, ...] | None:
    campaign = _compile(base, segment)
    return sweep.time_windows([ast.Path(("s",))], campaign)


def test_windows_name_the_data_points_and_edges_an_expression_reads() -> None:
    assert _windows("not (last(login) within 30d)") == (
        sweep.Window(sweep.EVENT, "login", frozenset({0, 30 * DAY})),
    )
    assert _windows("count(purchase, 7d) >= 2 and received(email, 1d) and base") == (
        sweep.Window(sweep.EVENT, "purchase", frozenset({0, 7 * DAY})),
        sweep.Window(sweep.SEND, "email", frozenset({0, DAY})),
    )
    # A click counts as an open; the flag reads its event; a segment is read through.
    assert _windows("opened(any) or converted", base="contact.trial_ends within 1d") == (
        sweep.Window(sweep.EVENT, "clicked", frozenset({0})),
        sweep.Window(sweep.EVENT, "converted", frozenset({0})),
        sweep.Window(sweep.EVENT, "opened", frozenset({0})),
    )
    # `count(opened, D)` counts clicked messages as opened: a click's instant moves it too.
    assert _windows("count(opened, 30d) = 0 and base", base="lead_score > 1") == (
        sweep.Window(sweep.EVENT, "clicked", frozenset({0, 30 * DAY})),
        sweep.Window(sweep.EVENT, "opened", frozenset({0, 30 * DAY})),
    )
    # Whether a message was delivered depends on its bounces too, and on the person's
    # reactions to it, unsubscribes and complaints included, which confirm it
    # (engine/delivery.py).
    assert _windows("delivered(t) and base", base="contact.trial_ends within 1d") == (
        sweep.Window(sweep.ATTRIBUTE, "trial_ends", frozenset({0, DAY})),
        *(sweep.Window(sweep.EVENT, name, frozenset({0}))
          for name in ("bounced", "clicked", "complained", "delivered", "opened", "replied",
                       "unsubscribed")),
    )  # fmt: skip
    assert _windows("base and trial_ends within 1d", base="contact.trial_ends within 7d") == (
        sweep.Window(sweep.ATTRIBUTE, "trial_ends", frozenset({0, DAY, 7 * DAY})),
    )
    # Attributes and enrollments alone do not move with time.
    assert _windows("lead_score > 5 and in_campaign(probe)") == ()


@pytest.mark.parametrize(
    "segment",
    [
        "engagement >= 10",  # scores decay continuously
        "(last(login) + 1d) within 30d",  # within over arithmetic
        "2026-12-01 within 7d",  # a literal instant moves for everyone at once
        "base",
    ],
)
def test_what_cannot_be_bounded_reads_every_contact(segment: str) -> None:
    assert _windows(segment, base="engagement > 1") is None


# ---------------------------------------------------------------------------- candidates


ATOMS = (
    "last(login) within {d}",
    "first(login) within {d}",
    "count(login, {d}) >= 2",
    "count(purchase, {d}) >= 1",
    "count(purchase) >= 2",
    "last(purchase) < 2026-11-20",
    "opened(any)",
    "clicked(any)",
    "converted",
    "received(email, {d})",
    "received(sms)",
    "contact.trial_ends within {d}",
    "trial_ends within {d}",
    "lead_score > 5",
)


@st.composite
def expressions(draw: st.DrawFn, depth: int = 2) -> str:
    """A condition over time-dependent atoms, with not / and / or."""
    if depth == 0 or draw(st.booleans()):
        atom = draw(st.sampled_from(ATOMS))
        return "(" + atom.format(d=draw(st.sampled_from(sorted(DURATIONS)))) + ")"
    kind = draw(st.sampled_from(("not", "and", "or")))
    if kind == "not":
        return f"(not {draw(expressions(depth - 1))})"
    return f"({draw(expressions(depth - 1))} {kind} {draw(expressions(depth - 1))})"


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """Sweep instants, then contacts whose data points often sit right on a window's edge."""
    since = T0 + dt.timedelta(minutes=draw(st.integers(-3 * 24 * 60, 3 * 24 * 60)))
    now = since + dt.timedelta(minutes=draw(st.sampled_from((0, 1, 59, 60, 61, 24 * 60, 3000))))
    edges = [
        moment - dt.timedelta(seconds=offset)
        for moment in (since, now)
        for offset in (0, *DURATIONS.values())
    ]
    nudges = st.sampled_from((dt.timedelta(0), dt.timedelta(seconds=1), -dt.timedelta(seconds=1)))
    instants = st.one_of(
        st.integers(-40 * 24 * 60, 4 * 24 * 60).map(lambda m: T0 + dt.timedelta(minutes=m)),
        st.builds(lambda e, n: e + n, st.sampled_from(edges), nudges),
    )
    contacts = []
    for number in range(draw(st.integers(1, 8))):
        trial = draw(st.one_of(st.none(), instants))
        trial_form = draw(st.sampled_from(("iso", "date", "garbage")))
        attributes: dict[str, Any] = {"lead_score": draw(st.integers(0, 10))}
        if trial is not None:
            attributes["trial_ends"] = {
                "iso": trial.isoformat(),
                "date": trial.date().isoformat(),
                "garbage": "soon",
            }[trial_form]
        contacts.append(
            {
                "id": f"c{number}",
                "attributes": attributes,
                "events": draw(
                    st.lists(st.tuples(st.sampled_from(EVENT_NAMES), instants), max_size=5)
                ),
                "sends": draw(
                    st.lists(
                        st.tuples(
                            st.sampled_from(("email", "sms")),
                            instants,
                            st.sampled_from(("sent", "pending", "failed")),
                        ),
                        max_size=3,
                    )
                ),
            }
        )
    return {
        "since": since,
        "now": now,
        "contacts": contacts,
        "base": draw(expressions()),
        "segment": draw(expressions()),
        "uses_base": draw(st.booleans()),
    }


def _insert(store: Store, tenant: str, contacts: list[dict[str, Any]]) -> None:
    store.ensure_tenant(tenant, now=T0)
    with store.session() as session:
        insert_rows(
            session,
            Contact.__table__,  # type: ignore[arg-type]
            [
                {
                    "tenant_id": tenant, "id": row["id"], "attributes": row["attributes"],
                    "tags": [], "created_at": T0, "updated_at": T0,
                }
                for row in contacts
            ],
        )  # fmt: skip
        events = [
            {
                "tenant_id": tenant, "contact_id": row["id"], "name": name, "at": at,
                "properties": {}, "received_at": T0,
            }
            for row in contacts
            for name, at in row["events"]
        ]  # fmt: skip
        if events:
            insert_rows(session, Event.__table__, events)  # type: ignore[arg-type]
        sends = [
            {
                "tenant_id": tenant, "idempotency_key": f"{tenant}:{row['id']}:{n}",
                "contact_id": row["id"], "channel": channel, "template": "t", "payload": {},
                "status": status, "attempts": 1, "created_at": at, "updated_at": at,
            }
            for row in contacts
            for n, (channel, at, status) in enumerate(row["sends"])
        ]  # fmt: skip
        if sends:
            insert_rows(session, OutboxMessage.__table__, sends)  # type: ignore[arg-type]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_every_contact_whose_value_moved_is_a_candidate(
    store: Store, scenario: dict[str, Any]
) -> None:
    segment = scenario["segment"]
    if scenario["uses_base"]:
        segment = f"({segment} or base)"
    campaign = _compile(scenario["base"], segment)
    windows = sweep.time_windows([ast.Path(("s",))], campaign)
    assert windows is not None
    tenant = f"t{next(_tenants)}"
    _insert(store, tenant, scenario["contacts"])
    since, now = scenario["since"], scenario["now"]
    expr = campaign.segments["s"].expr
    with store.session() as session:
        candidates = sweep.moved(session, tenant, windows, since, now)
        facts = load_facts(session, tenant, [row["id"] for row in scenario["contacts"]])
    for cid, fact in facts.items():
        before = conditions.Context(fact, campaign, since).holds(expr)
        after = conditions.Context(fact, campaign, now).holds(expr)
        assert before == after or cid in candidates, (cid, before, after, segment)


def test_candidates_are_the_contacts_an_edge_passed_not_everyone(store: Store) -> None:
    since, now = T0, T0 + dt.timedelta(hours=1)
    login = sweep.Window(sweep.EVENT, "login", frozenset({0, 30 * DAY}))
    email = sweep.Window(sweep.SEND, "email", frozenset({DAY}))
    trial = sweep.Window(sweep.ATTRIBUTE, "trial_ends", frozenset({7 * DAY}))
    minutes = dt.timedelta(minutes=30)
    contacts = [
        {"id": "edge", "events": [("login", since - dt.timedelta(days=30) + minutes)]},
        {"id": "new", "events": [("login", since + minutes)]},
        {"id": "old", "events": [("login", since - dt.timedelta(days=20))]},
        {"id": "other", "events": [("purchase", since + minutes)]},
        {"id": "sent", "sends": [("email", since - dt.timedelta(days=1) + minutes, "sent")]},
        {"id": "sms", "sends": [("sms", since - dt.timedelta(days=1) + minutes, "sent")]},
        {"id": "trial", "attributes": {"trial_ends": (since - dt.timedelta(days=7)).isoformat()}},
        {"id": "later", "attributes": {"trial_ends": now.isoformat()}},
    ]
    for row in contacts:
        row.setdefault("events", [])
        row.setdefault("sends", [])
        row.setdefault("attributes", {})
    tenant = f"t{next(_tenants)}"
    _insert(store, tenant, contacts)
    with store.session() as session:
        found = sweep.moved(session, tenant, [login, email, trial], since, now)
    assert found == {"edge", "new", "sent", "trial"}


# ---------------------------------------------------------------------------- the engine

SOURCE = """
template t email { subject "x" body "x" }
segment dormant = not (last(login) within 7d)
segment busy = count(login, 1d) >= 2
segment trial_ending = contact.trial_ends within 1d
campaign winback {
  on segment_enter dormant { send email t }
  on segment_enter busy { send email t }
  on segment_enter trial_ending { send email t }
}
campaign weekly {
  audience not (last(login) within 2d)
  exclude received(email, 1d)
  every wednesday 09:00 { send email t }
}
"""


class _Undo(Exception):
    """Rolls a comparison's transaction back."""


def _entries(
    store: Store, engine: Engine, since: dt.datetime, now: dt.datetime, *, full: bool | None
) -> set[tuple[str, str, str]]:
    """(campaign, trigger, contact) of the enrollments after one sweep (full or targeted;
    None: no sweep), rolled back after."""
    found: set[tuple[str, str, str]] = set()
    try:
        with store.session() as session:
            names: dict[int, str] = {}
            for version_id, campaign in engine._active_versions(session):
                names[version_id] = campaign.name
                triggers = engine._swept_triggers(version_id, campaign)
                for trigger in triggers:
                    key = (version_id, trigger.id)
                    if full:
                        engine._sweep_windows[key] = None
                    else:
                        engine._sweep_windows.pop(key, None)
                if full is not None:
                    engine._sweep(session, version_id, campaign, triggers, since, now)
            session.flush()
            for version_id, contact_id, state in session.execute(
                select(Enrollment.version_id, Enrollment.contact_id, Enrollment.state).where(
                    Enrollment.tenant_id == engine.tenant
                )
            ):
                found.add((names[version_id], str(state.get("trigger")), contact_id))
            raise _Undo
    except _Undo:
        pass
    engine._sweep_windows.clear()
    return found


def _full_sweeps_only(store: Store, engine: Engine) -> None:
    """Make the engine sweep every contact from now on (the sweep before targeting)."""
    with store.session() as session:
        for version_id, campaign in engine._active_versions(session):
            for trigger in engine._swept_triggers(version_id, campaign):
                engine._sweep_windows[(version_id, trigger.id)] = None


def _sweep_mark(store: Store, engine: Engine) -> dt.datetime:
    """The one instant both campaigns were last swept at."""
    with store.session() as session:
        marks = {
            mark
            for version_id, _campaign in engine._active_versions(session)
            if (mark := engine._sweep_mark(session, version_id)[1]) is not None  # type: ignore[index]
        }
    (mark,) = marks
    return as_utc(mark)


def _setup(logins: list[list[int]], trials: list[int | None], sent: list[int]) -> Any:
    """An engine with the contacts' logins (hours from T0), trial ends and email sends."""

    def insert_sends(store: Store, tenant: str) -> None:
        with store.session() as session:
            insert_rows(
                session,
                OutboxMessage.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": tenant, "idempotency_key": f"{tenant}:s{n}",
                        "contact_id": f"c{n}", "channel": "email", "template": "t",
                        "payload": {}, "status": "sent", "attempts": 1,
                        "created_at": T0 + dt.timedelta(hours=h),
                        "updated_at": T0 + dt.timedelta(hours=h),
                    }
                    for n, h in enumerate(sent)
                    if n < len(trials)
                ],
            )  # fmt: skip

    async def seed(engine: Engine) -> None:
        await engine.upsert_contacts(
            [
                {
                    "id": f"c{n}",
                    "email": f"c{n}@example.test",
                    "attributes": {}
                    if trial is None
                    else {"trial_ends": (T0 + dt.timedelta(hours=trial)).isoformat()},
                }
                for n, trial in enumerate(trials)
            ]
        )
        await engine.push_events(
            [
                {
                    "contact": f"c{n}",
                    "name": "login",
                    "at": (T0 + dt.timedelta(hours=h)).isoformat(),
                }
                for n, hours in enumerate(logins)
                for h in hours
            ]
        )
        await engine.store.call(insert_sends, engine.tenant)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("winback")
        await engine.launch("weekly")

    return seed


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.integers(2, 10).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.integers(-10 * 24, 24), max_size=3), min_size=n, max_size=n),
            st.lists(st.one_of(st.none(), st.integers(0, 24 * 5)), min_size=n, max_size=n),
            st.lists(st.integers(-24, 24 * 4), max_size=n),
            st.integers(1, 24 * 3),
            st.integers(1, 48),
        )
    )
)
def test_the_targeted_sweep_makes_the_entries_the_full_sweep_makes(
    store_url: str, data: tuple[Any, ...]
) -> None:
    logins, trials, sent, start_hours, length_hours = data
    seed = _setup(logins, trials, sent)
    clock = SimulatedClock(T0)

    async def main() -> tuple[set[Any], set[Any]]:
        tenant = f"t{next(_tenants)}"
        async with Engine(store_url, clock=clock, sink=RecordingSink(), tenant=tenant) as engine:
            await seed(engine)
            # Up to `since`, full sweeps: the state the last sweep before `now` leaves (the
            # full sweep books whoever is in the audience, whenever they joined it).
            await engine.store.call(_full_sweeps_only, engine)
            await engine.run_until(T0 + dt.timedelta(hours=start_hours))
            since = await engine.store.call(_sweep_mark, engine)
            now = since + dt.timedelta(hours=length_hours)
            clock.advance_to(now)

            def compare(store: Store) -> tuple[set[Any], set[Any]]:
                full = _entries(store, engine, since, now, full=True)
                targeted = _entries(store, engine, since, now, full=False)
                return full, targeted

            return await engine.store.call(compare)

    full, targeted = trio.run(main)
    assert targeted == full


def test_the_targeted_sweep_enters_and_books_as_the_full_one(store_url: str) -> None:
    """A fixed case where both sweeps do something: entries of all three kinds, bookings."""
    logins = [[-24 * 7 + 1], [-20, 1], [], [-24 * 3]]
    seed = _setup(logins, [None, None, 2, None], [-23])
    clock = SimulatedClock(T0)

    async def main() -> tuple[set[Any], set[Any], set[Any]]:
        tenant = f"t{next(_tenants)}"
        async with Engine(store_url, clock=clock, sink=RecordingSink(), tenant=tenant) as engine:
            await seed(engine)
            since, now = T0, T0 + dt.timedelta(hours=3)
            clock.advance_to(now)

            def compare(store: Store) -> tuple[set[Any], set[Any], set[Any]]:
                before = _entries(store, engine, since, now, full=None)
                full = _entries(store, engine, since, now, full=True)
                targeted = _entries(store, engine, since, now, full=False)
                return before, full, targeted

            return await engine.store.call(compare)

    before, full, targeted = trio.run(main)
    assert targeted == full
    new = {(campaign, contact) for campaign, _trigger, contact in full - before}
    # c0: last login 7 days less an hour before `since`, dormant 1 hour in; c1: a login 20
    # hours before and one an hour after `since`, two within a day from then on; c2: its trial
    # ends 2 hours in. weekly books c0: out of its login window, and its email 26 hours old
    # (excluded at the launch). c3 was booked at the launch; c1 logged in, c2 never did.
    assert new == {
        ("winback", "c0"), ("winback", "c1"), ("winback", "c2"), ("weekly", "c0"),
    }  # fmt: skip
