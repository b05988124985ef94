"""Migration 0015: text stored before the engine composed it is put in NFC, so an NFD
"Zürich" stored last month matches `city = "Zürich"` as one imported today does.

Rows are written at 0014 in NFD, as stores before the NFC change hold them; upgrading
composes names, attributes, tags, event properties and the event an enrollment keeps,
and leaves ids, emails and phone numbers as given.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import unicodedata
from types import ModuleType
from typing import Any

import trio
from sqlalchemy import select, update

from cadence.engine.clock import SimulatedClock
from cadence.engine.migrations import (
    MIGRATIONS_DIR,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.bulk import insert_rows
from cadence.engine.store.models import Contact, Enrollment, Event
from tests.engine.test_runtime import T0, campaigns, sent

BEFORE = "0014_send_log_outcome_index"
ZURICH, ZOE, CAFE = (unicodedata.normalize("NFC", t) for t in ("Zürich", "Zoë", "Café"))


def nfd(text: str) -> str:
    """`text` as macOS tools export it: letters and combining marks apart."""
    return unicodedata.normalize("NFD", text)


SOURCE = f"""
template a email {{ subject "A" body "x" }}
template b email {{ subject "B" body "x" }}
template c email {{ subject "C" body "x" }}
campaign waits {{ when viewed {{ wait 1d  if event.city = "{ZURICH}" {{ send email a }} }} }}
campaign locals {{
  audience city = "{ZURICH}" and first_name = "{ZOE}" and tags contains "{CAFE}"
  on launch {{ send email b }}
}}
campaign twice {{
  reenter always
  when viewed count >= 2 within 7d where event.city = "{ZURICH}" {{ send email c }}
}}
"""


def _to_nfd(store: Store) -> None:
    """Write c1's text, its event and its enrollment's event back in NFD (at 0014)."""
    with store.session() as session:
        session.execute(
            update(Contact)
            .where(Contact.id == "c1")
            .values(
                first_name=nfd(ZOE),
                attributes={"city": nfd(ZURICH), "areas": [nfd(ZURICH)]},
                tags=[nfd(CAFE), CAFE, "vip"],
            )
        )
        session.execute(update(Event).values(properties={"city": nfd(ZURICH)}))
        for enrollment in session.scalars(select(Enrollment)):
            event = enrollment.state["event"]
            enrollment.state = {**enrollment.state, "event": {**event, "properties": {
                "city": nfd(ZURICH)}}}  # fmt: skip


def _stored(store: Store) -> dict[str, Any]:
    """What the upgrade may have changed, as stored."""
    with store.session() as session:
        return {
            "contacts": sorted(
                tuple(row)
                for row in session.execute(
                    select(
                        Contact.id,
                        Contact.email,
                        Contact.first_name,
                        Contact.attributes,
                        Contact.tags,
                    )
                )
            ),
            "events": list(session.scalars(select(Event.properties))),
            "states": [
                s["event"]["properties"]
                for s in session.scalars(select(Enrollment.state).order_by(Enrollment.id))
                if (s.get("event") or {}).get("properties")
            ],
        }


def test_text_stored_in_nfd_is_composed_and_matches_the_dsl(store_url: str) -> None:
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def before() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts([
                {"id": "c1", "email": "c1@example.test", "first_name": ZOE},
                # An id and an email are the product's and the mailbox's own: kept as given.
                {"id": nfd("zoë"), "email": nfd("zoë@example.test"), "first_name": "Bo"},
            ])  # fmt: skip
            await engine.deploy(campaigns(SOURCE))
            await engine.launch("waits")
            await engine.push_events([{"contact": "c1", "name": "viewed", "at": T0.isoformat(),
                                       "properties": {"city": ZURICH}}])  # fmt: skip
            await engine.run_due()

    async def after() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            assert await engine.launch("locals") == 1
            await engine.launch("twice")
            clock.advance_to(T0 + dt.timedelta(hours=1))
            await engine.push_events([{"contact": "c1", "name": "viewed",
                                       "properties": {"city": ZURICH}}])  # fmt: skip
            await engine.run_until(T0 + dt.timedelta(days=2))

    trio.run(before)
    with Store.open(store_url) as store:
        downgrade(store.engine, BEFORE)
        _to_nfd(store)
        upgrade(store.engine)
        assert current_revision(store.engine) == head_revision()
        stored = _stored(store)
    assert stored == {
        "contacts": [
            ("c1", "c1@example.test", ZOE, {"city": ZURICH, "areas": [ZURICH]}, [CAFE, "vip"]),
            (nfd("zoë"), nfd("zoë@example.test"), "Bo", {}, []),
        ],
        "events": [{"city": ZURICH}],
        "states": [{"city": ZURICH}],
    }
    trio.run(after)
    # The audience, the count of past events and the waiting journey's event all match.
    assert sorted(sent(sink)) == [("c1", "a"), ("c1", "b"), ("c1", "c")]
    # Run again (down to 0014 changes nothing, then up): nothing changes.
    with Store.open(store_url) as store:
        again = _stored(store)
        downgrade(store.engine, BEFORE)
        upgrade(store.engine)
        assert _stored(store) == again


def test_rows_are_read_page_by_page_to_the_last(store_url: str) -> None:
    """More contacts and events than one read holds (5,000): those on either side of a
    page's end are composed, and the ASCII ones between are left as they are."""
    count = 5003
    with Store.open(store_url) as store:
        downgrade(store.engine, BEFORE)
        store.ensure_tenant("default", now=T0)
        ends = {0, count - 1}
        with store.session() as session:
            insert_rows(session, Contact.__table__, [  # type: ignore[arg-type]
                {"tenant_id": "default", "id": f"c{n:05d}",
                 "attributes": {"city": nfd(ZURICH) if n in ends else "Bern"}, "tags": [],
                 "created_at": T0, "updated_at": T0}
                for n in range(count)
            ])  # fmt: skip
            insert_rows(session, Event.__table__, [  # type: ignore[arg-type]
                {"tenant_id": "default", "contact_id": f"c{n:05d}", "name": "viewed", "at": T0,
                 "properties": {"city": nfd(ZURICH) if n in ends else "Bern"},
                 "received_at": T0}
                for n in range(count)
            ])  # fmt: skip
        upgrade(store.engine)
        with store.session() as session:
            cities = [a["city"] for a in session.scalars(select(Contact.attributes))]
            said = [p["city"] for p in session.scalars(select(Event.properties))]
    for found in (cities, said):
        assert sorted(found) == sorted([ZURICH, ZURICH] + ["Bern"] * (count - 2))


def _migration() -> ModuleType:
    """Migration 0015's module, loaded from its file as Alembic loads it."""
    path = next((MIGRATIONS_DIR / "versions").glob("0015_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_row_changed_after_it_was_read_keeps_that_change(store_url: str) -> None:
    """Beside a running engine: a contact the engine writes between the migration's read
    and its write keeps the engine's write, not the migration's stale copy of the row."""
    migration = _migration()
    (contacts,) = [t for t in migration.TABLES if t.name == "contacts"]
    with Store.open(store_url) as store:
        store.ensure_tenant("default", now=T0)
        with store.session() as session:
            insert_rows(session, Contact.__table__, [  # type: ignore[arg-type]
                {"tenant_id": "default", "id": "c1", "attributes": {"city": nfd(ZURICH)},
                 "tags": [], "created_at": T0, "updated_at": T0},
            ])  # fmt: skip
        with store.engine.begin() as connection:
            (page,) = list(migration._pages(connection, contacts))
        with store.session() as session:  # the engine's write, after the read
            session.execute(update(Contact).values(attributes={"city": "Bern", "plan": "pro"}))
        with store.engine.begin() as connection:
            migration._compose_table_page(connection, contacts, page)
        with store.session() as session:
            assert session.scalars(select(Contact.attributes)).one() == {
                "city": "Bern",
                "plan": "pro",
            }
