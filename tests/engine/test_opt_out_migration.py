"""Migration 0012: opt-out replies stored before 0012 get the `unsubscribed` they stand for.

A store at 0011 holds STOP replies written before the engine stored each with its
`unsubscribed` event; upgrading adds exactly the missing events, with the engine's dedupe
keys, and the opt-out suppressions no later START or resubscribe lifted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from cadence.engine import suppress
from cadence.engine.migrations import current_revision, downgrade, head_revision, upgrade
from cadence.engine.store import Store
from cadence.engine.store.importer import insert_events, upsert_contact_dicts
from cadence.engine.store.models import Event, Suppression
from cadence.engine.store.records import EventRecord
from cadence.engine.store.sends import NewSend, add_suppressions, enqueue_sends

T0 = dt.datetime(2026, 11, 2, 9, 30, 15, 250000, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
BEFORE = "0011_tenant_only_claim_indexes"
WHATSAPP_SEND = "a" * 40


def _reply(contact: str, at: dt.datetime, key: str | None = None, **properties: Any) -> EventRecord:
    return EventRecord(contact, "replied", at, properties, dedupe_key=key, source="infobip")


# Per tenant, the replies as stores before 0012 hold them (no `unsubscribed` beside them).
OLD: dict[str, list[EventRecord]] = {
    "default": [
        _reply("ana", T0, "infobip:1", text="STOP", channel="sms"),
        # No channel: its message's (a WhatsApp send); no dedupe key of its own.
        _reply("bo", T0, send=WHATSAPP_SEND, text=" stop. ", template="promo"),
        # Opted back in later: the event is added, the suppression is not.
        _reply("cy", T0, "infobip:3", text="Arrêt", channel="sms"),
        _reply("cy", T0 + HOUR, "infobip:4", text="START", channel="sms"),
        # Not opt-outs: a sentence, a question.
        _reply("di", T0, "infobip:5", text="Please stop by the office tomorrow"),
        _reply("di", T0 + HOUR, "infobip:6", text="What is this?"),
        # A provider's keyword; the person is already off every channel.
        _reply("fay", T0, "infobip:7", text="STOP please", keyword="STOP", channel="sms"),
        # A resubscribe from the preference page after the STOP lifts it; before, not.
        _reply("gus", T0, "infobip:8", text="unsubscribe", channel="sms"),
        EventRecord("gus", "resubscribed", T0 + HOUR, {}),
        EventRecord("hal", "resubscribed", T0 - HOUR, {"channel": "sms"}),
        _reply("hal", T0, "infobip:9", text="QUIT", channel="sms"),
        # Its `unsubscribed` is there under another key: nothing to add.
        _reply("ivy", T0, "infobip:10", text="stop", channel="sms"),
        EventRecord(
            "ivy", "unsubscribed", T0, {"channel": "sms", "via": "reply"}, dedupe_key="manual"
        ),
    ],
    "other": [_reply("ana", T0, "infobip:1", text="STOP", channel="whatsapp")],
}
PEOPLE = ("ana", "bo", "cy", "di", "ed", "fay", "gus", "hal", "ivy")


def _events(store: Store, name: str) -> list[tuple[Any, ...]]:
    with store.session() as session:
        rows = session.execute(
            select(
                Event.tenant_id, Event.contact_id, Event.at, Event.properties,
                Event.dedupe_key, Event.source,
            ).where(Event.name == name)
        ).all()  # fmt: skip
    return sorted((tuple(row) for row in rows), key=repr)


def _suppressions(store: Store) -> list[tuple[Any, ...]]:
    with store.session() as session:
        rows = session.execute(
            select(
                Suppression.tenant_id, Suppression.channel, Suppression.contact_id,
                Suppression.reason,
            )
        ).all()  # fmt: skip
    return sorted(tuple(row) for row in rows)


def _seed_old_store(store: Store) -> None:
    """A store at 0011 with replies stored the old way, and one (ed's) the engine's way."""
    for tenant in OLD:
        upsert_contact_dicts(store, [{"id": p} for p in PEOPLE], tenant_id=tenant, now=T0)
    with store.session() as session:
        enqueue_sends(
            session, "default", [NewSend(WHATSAPP_SEND, "bo", "whatsapp", "promo")], now=T0
        )
        add_suppressions(session, "default", "*", [(None, "fay")], reason="unsubscribed", now=T0)
        for tenant, events in OLD.items():
            insert_events(session, tenant, events, now=T0)
        # Stored since the engine writes an opt-out reply's `unsubscribed` with it.
        stored, _ = insert_events(
            session, "default", [_reply("ed", T0, "infobip:11", text="STOP")], now=T0
        )
        made = suppress.store_opt_out_replies(session, "default", stored, T0)
        suppress.record_suppressions(session, "default", [*stored, *made], T0)


def _expected_unsubscribe(tenant: str, reply: EventRecord, channel: str) -> tuple[Any, ...]:
    """The `unsubscribed` the engine stores with `reply` today (its key from the engine)."""
    kept = {k: v for k, v in reply.properties.items() if k in ("send", "template")}
    return (
        tenant, reply.contact_id, reply.at, {**kept, "channel": channel, "via": "reply"},
        suppress._opt_out_key(reply, channel), reply.source,
    )  # fmt: skip


def test_old_opt_out_replies_get_their_unsubscribes_and_suppressions(database_url: str) -> None:
    with Store.open(database_url) as store:
        downgrade(store.engine, BEFORE)
        _seed_old_store(store)
        before = _events(store, "unsubscribed")
        upgrade(store.engine)
        assert current_revision(store.engine) == head_revision()
        added = [e for e in _events(store, "unsubscribed") if e not in before]
        default, other = OLD["default"], OLD["other"]
        assert added == sorted(
            (
                _expected_unsubscribe("default", default[0], "sms"),  # ana
                _expected_unsubscribe("default", default[1], "whatsapp"),  # bo, by its send
                _expected_unsubscribe("default", default[2], "sms"),  # cy
                _expected_unsubscribe("default", default[6], "sms"),  # fay
                _expected_unsubscribe("default", default[7], "sms"),  # gus
                _expected_unsubscribe("default", default[10], "sms"),  # hal
                _expected_unsubscribe("other", other[0], "whatsapp"),
            ),
            key=repr,
        )
        unsubscribed = [
            ("default", "*", "fay", "unsubscribed"),  # there before: no sms one added
            ("default", "sms", "ana", "unsubscribed"),
            ("default", "sms", "ed", "unsubscribed"),  # the engine's, at the time
            ("default", "sms", "hal", "unsubscribed"),
            ("default", "whatsapp", "bo", "unsubscribed"),
            ("other", "whatsapp", "ana", "unsubscribed"),
        ]
        assert _suppressions(store) == unsubscribed
        after = _events(store, "unsubscribed")

        # Run again (down to 0011 changes nothing, then up): nothing is written twice.
        downgrade(store.engine, BEFORE)
        assert (_events(store, "unsubscribed"), _suppressions(store)) == (after, unsubscribed)
        upgrade(store.engine)
        assert (_events(store, "unsubscribed"), _suppressions(store)) == (after, unsubscribed)

        # The engine, given bo's keyless reply again, finds its `unsubscribed` stored.
        with store.session() as session:
            again, _ = insert_events(session, "default", [default[1]], now=T0 + HOUR)
            assert again and not suppress.store_opt_out_replies(session, "default", again, T0)
        assert _events(store, "unsubscribed") == after


def test_a_store_without_opt_out_replies_is_left_as_it_was(database_url: str) -> None:
    with Store.open(database_url) as store:
        downgrade(store.engine, BEFORE)
        upsert_contact_dicts(store, [{"id": "di"}], now=T0)
        with store.session() as session:
            insert_events(session, "default", [_reply("di", T0, text="no")], now=T0)
        upgrade(store.engine)
        assert (_events(store, "unsubscribed"), _suppressions(store)) == ([], [])


def test_replies_are_read_page_by_page_to_the_last(database_url: str) -> None:
    """More replies than one read holds (5,000): the opt-outs on either side of a page's
    end are both found."""
    replies = [_reply("ana", T0 + dt.timedelta(seconds=i), text="hi") for i in range(5003)]
    replies[0] = _reply("ana", T0, text="STOP")
    replies[-1] = _reply("bo", T0 + HOUR * 2, text="STOP", channel="whatsapp")
    with Store.open(database_url) as store:
        downgrade(store.engine, BEFORE)
        upsert_contact_dicts(store, [{"id": "ana"}, {"id": "bo"}], now=T0)
        with store.session() as session:
            insert_events(session, "default", replies, now=T0)
        upgrade(store.engine)
        found = [(e[1], e[3]["channel"]) for e in _events(store, "unsubscribed")]
        assert sorted(found) == [("ana", "sms"), ("bo", "whatsapp")]
