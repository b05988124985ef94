"""`load_facts`: what a batch's reads give, and that they are built once, on both stores."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import event

from cadence.engine.clock import SimulatedClock
from cadence.engine.facts import ALL, CAP_SENDS, SENDS, load_facts
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from tests.engine.test_runtime import T0, campaigns, engine_run

SOURCE = """
template hello email { subject "Hello" body "x" }
campaign greet { on launch { send email hello  wait 1d  exit "done" } }
"""


def test_facts_read_contacts_events_sends_and_campaigns_with_statements_built_once(
    store_url: str,
) -> None:
    people = [
        {"id": "p1", "email": "p1@example.test", "tags": ["vip"],
         "attributes": {"plan": "pro"}},
        {"id": "p2", "email": "p2@example.test"},
    ]  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("greet")
        await engine.run_until(T0 + dt.timedelta(hours=1))
        at = [(T0 + dt.timedelta(minutes=m)).isoformat() for m in (20, 10)]
        await engine.push_events([{"contact": "p1", "name": "purchase", "at": a} for a in at])

    engine_run(store_url, body)
    statements: list[Any] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        statements.append(clause)

    with Store.open(store_url) as store, store.session() as session:
        names = {version: "greet" for version in range(1, 10)}
        event.listen(store.engine, "before_execute", record)
        try:
            first = load_facts(session, "default", ["p1", "p2", "nobody"], campaign_names=names)
            read_first = list(statements)
            statements.clear()
            second = load_facts(session, "default", ["p2"], campaign_names=names, kinds=ALL)
            read_second = list(statements)
        finally:
            event.remove(store.engine, "before_execute", record)
    assert sorted(first) == ["p1", "p2"]
    p1 = first["p1"]
    assert p1.attributes["email"] == "p1@example.test"
    assert p1.attributes["plan"] == "pro"
    assert p1.attributes["tags"] == ["vip"]
    assert first["p2"].attributes["tags"] == []
    assert [(e.name, e.at) for e in p1.events if e.name == "purchase"] == [
        ("purchase", T0 + dt.timedelta(minutes=10)),
        ("purchase", T0 + dt.timedelta(minutes=20)),
    ]
    assert [(channel, template) for channel, template, _ in p1.sends] == [("email", "hello")]
    assert p1.campaigns == {"greet"}
    assert second["p2"].campaigns == {"greet"}
    # Four reads (contacts, events, sends, memberships), the same statements each batch.
    assert len(read_first) == 4
    assert [id(s) for s in read_second] == [id(s) for s in read_first]


def test_cap_sends_are_read_only_strictly_inside_their_stretch(store_url: str) -> None:
    """A batch whose steps read sends only for caps reads those created strictly inside
    `sends_within` (as a cap counts them), to the microsecond; asked for `SENDS`, every one."""
    sent_at = T0 + dt.timedelta(microseconds=250)

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        clock.advance_to(sent_at)
        await engine.upsert_contacts([{"id": "p1", "email": "p1@example.test"}])
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("greet")
        await engine.run_until(sent_at)

    engine_run(store_url, body)
    tick, day = dt.timedelta(microseconds=1), dt.timedelta(days=1)

    def sends(kinds: frozenset[str], within: tuple[dt.datetime, dt.datetime]) -> int:
        with Store.open(store_url) as store, store.session() as session:
            facts = load_facts(session, "default", ["p1"], kinds=kinds, sends_within=within)
            return len(facts["p1"].sends)

    assert sends(frozenset({CAP_SENDS}), (sent_at - tick, sent_at + tick)) == 1
    assert sends(frozenset({CAP_SENDS}), (sent_at, sent_at + day)) == 0
    assert sends(frozenset({CAP_SENDS}), (sent_at - day, sent_at)) == 0
    assert sends(frozenset({CAP_SENDS, SENDS}), (sent_at, sent_at + day)) == 1
