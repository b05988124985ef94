"""Someone who unsubscribed is never sent to on that channel: at the step, and at delivery.

DESIGN.md: "A suppressed, unsubscribed or non-consenting contact is never sent to on that
channel." An `unsubscribed` event becomes a suppression (on the channel it names, or the
one of the send it names, or every channel); `unsubscribed: true` as an attribute stops
every channel; a send queued before the unsubscribe (a retry) is dropped when it comes due.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from sqlalchemy import select

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store import sends as send_store
from cadence.engine.store.models import (
    ConsentStatus,
    Event,
    OutboxMessage,
    SendLog,
    Suppression,
)
from cadence.engine.store.records import InvalidInput
from tests.engine.test_runtime import T0, campaigns, engine_run

DRIP = """
template first email { subject "First" body "x" }
template second email { subject "Second" body "x" }
template text sms { body "Hi" }
campaign drip {
  on launch { send email first  wait 1d  send email second  send sms text }
}
"""
PEOPLE = [
    {"id": f"p{i}", "email": f"p{i}@example.test", "phone": f"+4915100000{i:02}",
     "attributes": {"sms_opt_in": True}}
    for i in range(1, 6)
]  # fmt: skip


def _sent(sink: RecordingSink) -> list[tuple[str, str | None]]:
    return sorted((m.contact_id, m.template) for m in sink.delivered)


def _skips(store_url: str) -> list[tuple[str, str, str]]:
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(
            select(SendLog.contact_id, SendLog.channel, SendLog.detail).where(
                SendLog.outcome == "skipped"
            )
        ).all()
    return sorted((contact, channel, detail["reason"]) for contact, channel, detail in rows)


def test_unsubscribed_as_an_attribute_stops_every_channel(store_url: str) -> None:
    people = [
        PEOPLE[0],
        {**PEOPLE[1], "attributes": {"sms_opt_in": True, "unsubscribed": True}},
    ]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(DRIP))
        await engine.launch("drip")
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [("p1", "first"), ("p1", "second"), ("p1", "text")]
    assert [reason for contact, _, reason in _skips(store_url) if contact == "p2"] == [
        "unsubscribed"
    ] * 3


@pytest.mark.parametrize(
    ("properties", "still_sent"),
    [
        ({"channel": "email"}, [("p1", "text")]),  # email stops, SMS goes on
        ({"channel": "sms"}, [("p1", "second")]),
        ({}, []),  # no channel named: every channel stops
        ({"send": "FIRST"}, [("p1", "text")]),  # the first email's key: its channel, email
        ({"channel": "Email"}, [("p1", "text")]),  # the channel as a person writes it
        ({"channel": " SMS "}, [("p1", "second")]),
    ],
)
def test_an_unsubscribe_event_stops_the_channel_it_names(
    store_url: str, properties: dict[str, Any], still_sent: list[tuple[str, str]]
) -> None:

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE[:2])
        await engine.deploy(campaigns(DRIP))
        await engine.launch("drip")
        await engine.run_due()
        first = next(m for m in sink.delivered if m.contact_id == "p1")
        given = {k: first.idempotency_key if v == "FIRST" else v for k, v in properties.items()}
        clock.advance_to(T0 + dt.timedelta(hours=2))
        await engine.push_event({"contact": "p1", "name": "unsubscribed", "properties": given})
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    sent_to_p1 = [(c, t) for c, t in _sent(sink) if c == "p1" and t != "first"]
    assert sent_to_p1 == still_sent
    assert [(c, t) for c, t in _sent(sink) if c == "p2"] == [
        ("p2", "first"), ("p2", "second"), ("p2", "text")
    ]  # fmt: skip
    with Store.open(store_url) as store, store.session() as session:
        suppressions = session.execute(select(Suppression.contact_id, Suppression.reason)).all()
    assert [tuple(row) for row in suppressions] == [("p1", "unsubscribed")]


@pytest.mark.parametrize("name", ["unsubscribed", "replied", "bounced"])
def test_an_event_naming_no_known_channel_is_refused_and_stores_nothing(
    store_url: str, name: str
) -> None:
    # Stored, an unsubscribe on "all" would suppress a channel no send uses: the person
    # would go on receiving everything.
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(PEOPLE[:1])
        event = {"contact": "p1", "name": name, "properties": {"channel": "all", "text": "STOP"}}
        with pytest.raises(InvalidInput, match=r"properties\.channel.*'all' is not a channel"):
            await engine.push_event(event)

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(Event)).all() == []
        assert session.scalars(select(Suppression)).all() == []


@dataclass
class BusyOnceSink:
    """The provider says "try again in an hour" to each message's first attempt."""

    clock: SimulatedClock
    tried: set[int] = field(default_factory=set)
    delivered: list[OutgoingMessage] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        results = []
        for message in messages:
            if message.outbox_id in self.tried:
                self.delivered.append(message)
                results.append(DeliveryResult(message.outbox_id, True, "busy-once", "id"))
            else:
                self.tried.add(message.outbox_id)
                retry = self.clock.now() + dt.timedelta(hours=1)
                results.append(
                    DeliveryResult(message.outbox_id, False, error="busy", retry_at=retry)
                )
        return results


def test_a_send_queued_before_the_unsubscribe_is_dropped_at_delivery(store_url: str) -> None:
    clock = SimulatedClock(T0)
    sink = BusyOnceSink(clock)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE[:2])
            await engine.deploy(campaigns(DRIP))
            await engine.launch("drip")
            await engine.run_due()  # both first emails refused for now, due again in an hour
            assert sink.delivered == []
            clock.advance_to(T0 + dt.timedelta(minutes=30))
            await engine.push_event(
                {"contact": "p1", "name": "unsubscribed", "properties": {"channel": "email"}}
            )
            await engine.run_until(T0 + dt.timedelta(hours=3))

    trio.run(main)
    assert [(m.contact_id, m.template) for m in sink.delivered] == [("p2", "first")]
    with Store.open(store_url) as store, store.session() as session:
        outbox = session.execute(
            select(OutboxMessage.contact_id, OutboxMessage.status, OutboxMessage.error).where(
                OutboxMessage.template == "first"
            )
        ).all()
    assert sorted((contact, status) for contact, status, _ in outbox) == [
        ("p1", "suppressed"), ("p2", "sent")
    ]  # fmt: skip
    assert [error for contact, _, error in outbox if contact == "p1"] == [
        "suppressed since it was queued"
    ]
    assert _skips(store_url) == [("p1", "email", "suppressed")]


def test_an_unsubscribe_naming_no_channel_leaves_webhooks_to_systems(store_url: str) -> None:
    """Webhooks reach systems (a CRM), not the person: an unsubscribe does not stop them."""
    source = """
template hello email { subject "Hi" body "x" }
template crm webhook { body "{{ contact.id }}" }
campaign sync { on launch { wait 1h  send email hello  send webhook crm } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE[:1])
        await engine.deploy(campaigns(source))
        await engine.launch("sync")
        await engine.push_event({"contact": "p1", "name": "unsubscribed"})
        await engine.run_until(T0 + dt.timedelta(hours=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [("p1", "crm")]
    assert _skips(store_url) == [("p1", "email", "suppressed")]


@pytest.mark.parametrize(
    ("properties", "still_sent"),
    [
        ({"channel": "sms", "text": "STOP"}, [("p1", "second")]),
        ({"channel": "sms", "text": " stop. "}, [("p1", "second")]),
        ({"text": "Unsubscribe"}, [("p1", "second")]),  # no channel named: a text reply, SMS
        ({"channel": "email", "body": "STOP"}, [("p1", "text")]),
        ({"channel": "sms", "text": "Stop by on Friday?"}, [("p1", "second"), ("p1", "text")]),
    ],
)
def test_a_stop_reply_unsubscribes_on_its_channel(
    store_url: str, properties: dict[str, Any], still_sent: list[tuple[str, str]]
) -> None:
    """The SMS templates promise "Reply STOP to opt out": a STOP reply is an unsubscribe."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE[:2])
        await engine.deploy(campaigns(DRIP))
        await engine.launch("drip")
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(hours=2))
        await engine.push_event({"contact": "p1", "name": "replied", "properties": properties})
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert [(c, t) for c, t in _sent(sink) if c == "p1" and t != "first"] == still_sent
    assert [(c, t) for c, t in _sent(sink) if c == "p2"] == [
        ("p2", "first"), ("p2", "second"), ("p2", "text")
    ]  # fmt: skip


CONSENT_DRIP = """
template mail email { subject "Mail" body "x" }
template text sms { body "Hi. Reply STOP to opt out." }
campaign consented {
  on launch { send email mail  send sms text  wait 1d  send email mail  send sms text }
}
"""


def test_consent_records_gate_sms_and_email_through_double_opt_in(store_url: str) -> None:
    """Granted SMS consent needs no attribute; a pending double opt-in stops even email
    until confirmed; a withdrawn consent beats `sms_opt_in: true`."""
    people = [
        {"id": "granted", "email": "g@example.test", "phone": "+491510000001"},
        {"id": "pending", "email": "p@example.test", "phone": "+491510000002"},
        {"id": "withdrawn", "email": "w@example.test", "phone": "+491510000003",
         "attributes": {"sms_opt_in": True}},
    ]  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(people)

        def consents(store: Any) -> None:
            with store.session() as session:
                for contact, status in (("granted", ConsentStatus.GRANTED),
                                        ("withdrawn", ConsentStatus.WITHDRAWN)):  # fmt: skip
                    send_store.set_consent(session, "default", contact, "sms", status, now=T0)
                for channel in ("email", "sms"):
                    send_store.set_consent(
                        session, "default", "pending", channel, ConsentStatus.PENDING,
                        now=T0, double_opt_in_token=f"token-{channel}",
                    )  # fmt: skip

        await engine.store.call(consents)
        await engine.deploy(campaigns(CONSENT_DRIP))
        await engine.launch("consented")
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(hours=2))

        def confirm(store: Any) -> None:
            with store.session() as session:
                for channel in ("email", "sms"):
                    waiting = send_store.pending_double_opt_in(
                        session, "default", f"token-{channel}", lock=True
                    )
                    assert waiting is not None
                    send_store.confirm_double_opt_in(session, waiting, now=clock.now())

        await engine.store.call(confirm)
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [
        ("granted", "mail"), ("granted", "mail"), ("granted", "text"), ("granted", "text"),
        ("pending", "mail"), ("pending", "text"),  # the second day, after confirming
        ("withdrawn", "mail"), ("withdrawn", "mail"),
    ]  # fmt: skip
    reasons = {(c, ch, r) for c, ch, r in _skips(store_url)}
    assert reasons == {
        ("pending", "email", "no consent (pending)"),
        ("pending", "sms", "no consent (pending)"),
        ("withdrawn", "sms", "no consent (withdrawn)"),
    }


@pytest.mark.parametrize(
    ("replies", "texts_after"),
    [
        (["STOP", "START"], 1),  # opted back in: the next text goes
        (["STOP", "unstop!"], 1),
        (["STOP"], 0),
        (["START", "STOP"], 0),  # the latest reply decides
        (["STOP", "Start the engine"], 0),  # a sentence is not a keyword
    ],
)
def test_a_start_reply_lifts_a_stop_on_its_channel(
    store_url: str, replies: list[str], texts_after: int
) -> None:
    """CTIA: START (or UNSTOP) after STOP resumes the texts; the email unsubscribe stays."""
    source = """
    template mail email { subject "Mail" body "x" }
    template text sms { body "Hi. Reply STOP to opt out." }
    campaign again { on launch { wait 1d  send sms text  send email mail } }
    """

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE[:1])
        await engine.deploy(campaigns(source))
        await engine.launch("again")
        await engine.push_event(
            {"contact": "p1", "name": "unsubscribed", "properties": {"channel": "email"}}
        )
        for hours, text in enumerate(replies, 1):
            clock.advance_to(T0 + dt.timedelta(hours=hours))
            await engine.push_event(
                {"contact": "p1", "name": "replied", "properties": {"channel": "sms", "text": text}}
            )
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [("p1", "text")] * texts_after
    with Store.open(store_url) as store, store.session() as session:
        channels = sorted(session.scalars(select(Suppression.channel)))
    assert channels == (["email"] if texts_after else ["email", "sms"])


def test_stop_and_start_stored_together_follow_their_times(store_url: str) -> None:
    """One webhook body can carry both replies: the later one in time wins, not the order."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE[:1])
        clock.advance_to(T0 + dt.timedelta(hours=3))
        reply = {"contact": "p1", "name": "replied"}
        await engine.push_events([
            reply | {"at": (T0 + dt.timedelta(hours=2)).isoformat(),
                     "properties": {"channel": "sms", "text": "START"}},
            reply | {"at": (T0 + dt.timedelta(hours=1)).isoformat(),
                     "properties": {"channel": "sms", "text": "STOP"}},
        ])  # fmt: skip
        return sink

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(Suppression)).all() == []
        # The STOP was an unsubscribe all the same, the START a return: both are history.
        unsubscribes = session.scalars(select(Event).where(Event.name == "unsubscribed")).all()
        assert [
            (e.at.hour, e.properties["channel"], e.properties["via"]) for e in unsubscribes
        ] == [(T0.hour + 1, "sms", "reply")]


def _own_opt_outs(store_url: str) -> list[tuple[str | None, str]]:
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(
            select(Suppression.contact_id, Suppression.channel).where(
                Suppression.address.is_(None), Suppression.reason == "unsubscribed"
            )
        ).all()
    return sorted((contact, channel) for contact, channel in rows)


def test_a_resubscribe_brings_back_only_its_channel(store_url: str) -> None:
    """After an unsubscribe from everything, turning email back on leaves the rest off."""
    source = """
    template mail email { subject "Mail" body "x" }
    template text sms { body "Hi" }
    campaign later { on launch { wait 1d  send sms text  send email mail } }
    """

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE[:2])
        await engine.deploy(campaigns(source))
        await engine.launch("later")
        off = {"name": "unsubscribed", "properties": {"channel": "*"}}
        await engine.push_events([{"contact": "p1", **off}, {"contact": "p2", **off}])
        clock.advance_to(T0 + dt.timedelta(hours=1))
        await engine.push_event(
            {"contact": "p1", "name": "resubscribed", "properties": {"channel": "email"}}
        )
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [("p1", "mail")]
    assert _own_opt_outs(store_url) == [
        ("p1", "inbox"), ("p1", "sms"), ("p1", "whatsapp"), ("p2", "*")
    ]  # fmt: skip


def test_a_resubscribe_lifts_no_bounce_nor_complaint(store_url: str) -> None:
    """Only the person's own opt-outs come back: bounces and spam reports stay."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(PEOPLE[:2])
        await engine.push_events([
            {"contact": "p1", "name": "bounced", "properties": {"channel": "email"}},
            {"contact": "p2", "name": "complained", "properties": {"channel": "email"}},
        ])  # fmt: skip
        clock.advance_to(T0 + dt.timedelta(hours=1))
        back = {"name": "resubscribed", "properties": {"channel": "email"}}
        await engine.push_events([{"contact": "p1", **back}, {"contact": "p2", **back}])

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(select(Suppression.channel, Suppression.reason)).all()
    assert sorted(rows) == [("email", "bounced"), ("email", "complained")]


def test_preferences_show_each_channel_and_why_it_cannot_change(store_url: str) -> None:
    """What a preference page lists: channels with an address, on or off, fixed with a reason."""
    people = [
        {"id": "a", "email": "ana@example.test", "phone": "+491510001234",
         "attributes": {"sms_opt_in": True}},
        {"id": "b", "email": "bo@example.test"},
        {"id": "c", "email": "cy@example.test", "attributes": {"unsubscribed": True}},
    ]  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[Any]:
        await engine.upsert_contacts(people)
        await engine.push_events([
            {"contact": "a", "name": "unsubscribed", "properties": {"channel": "sms"}},
            {"contact": "b", "name": "bounced", "properties": {"channel": "email"}},
        ])  # fmt: skip
        return [await engine.preferences(who) for who in ("a", "b", "c", "nobody")]

    a, b, c, nobody = engine_run(store_url, body)
    assert [(x.channel, x.address, x.subscribed, x.changeable) for x in a] == [
        ("email", "a•••@example.test", True, True),
        ("sms", "•••••••••1234", False, True),
        ("whatsapp", "•••••••••1234", False, False),
    ]
    assert a[2].note == "you have not opted in to WhatsApp messages"
    assert [(x.channel, x.subscribed, x.changeable, x.note) for x in b] == [
        ("email", False, False, "this address bounced, so nothing is sent to it")
    ]
    assert [(x.channel, x.subscribed, x.changeable) for x in c] == [("email", False, False)]
    assert nobody is None
