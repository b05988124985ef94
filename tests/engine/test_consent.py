"""Consent recorded through the engine, and double opt-in confirmed by the person's token.

A pending (unconfirmed) consent stops every send on its channel until the person confirms;
the token confirms once; every change is an event campaigns can start on. Bad input is
refused whole.
"""

from __future__ import annotations

import datetime as dt

import pytest
import trio
from sqlalchemy import select

from cadence.engine import consent
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, EngineError, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Consent, ConsentStatus, Event, OutboxMessage, SendLog
from cadence.engine.store.records import InvalidInput
from tests.engine.test_runtime import T0, campaigns, engine_run
from tests.engine.test_unsubscribe import BusyOnceSink

SOURCE = """
template news email { subject "News" body "x" }
template welcome email { subject "Welcome" body "x" }
template text sms { body "Hi" }
campaign weekly { on launch { wait 1d  send email news  send sms text } }
campaign greet { when consent_granted where event.channel == "email" { send email welcome } }
"""
PEOPLE = [
    {"id": "ana", "email": "ana@example.test", "phone": "+491510001234"},
    {"id": "bo", "email": "bo@example.test", "phone": "+491510005678"},
]


def _sent(sink: RecordingSink) -> list[tuple[str, str | None]]:
    return sorted((m.contact_id, m.template) for m in sink.delivered)


def test_a_double_opt_in_holds_sends_until_the_person_confirms(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        for name in ("weekly", "greet"):
            await engine.launch(name)
        asked = await engine.set_consent("ana", "email", "pending", source="signup form")
        other = await engine.set_consent("bo", "email", "pending")
        await engine.set_consent("ana", "sms", "granted", source="checkout")
        assert asked.status is ConsentStatus.PENDING and asked.token and other.token
        assert asked.token != other.token
        waiting = await engine.pending_opt_in(asked.token)
        assert waiting is not None and (waiting.contact_id, waiting.channel) == ("ana", "email")

        clock.advance_to(T0 + dt.timedelta(hours=1))
        confirmed = await engine.confirm_opt_in(asked.token)
        assert confirmed is not None and confirmed.status is ConsentStatus.GRANTED
        assert await engine.confirm_opt_in(asked.token) is None  # once only
        assert await engine.pending_opt_in(asked.token) is None
        assert await engine.consents("ana") == {"email": "granted", "sms": "granted"}
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    # Ana confirmed: welcomed at once, then the news and (consent granted) the text; Bo never
    # confirmed: nothing by email, and no SMS without consent.
    assert _sent(sink) == [("ana", "news"), ("ana", "text"), ("ana", "welcome")]
    with Store.open(store_url) as store, store.session() as session:
        events = session.execute(
            select(Event.contact_id, Event.name, Event.properties).order_by(Event.id)
        ).all()
        assert [(who, name, props.get("channel"), props.get("source"))
                for who, name, props in events] == [
            ("ana", "consent_requested", "email", "signup form"),
            ("bo", "consent_requested", "email", None),
            ("ana", "consent_granted", "sms", "checkout"),
            ("ana", "consent_granted", "email", "double opt-in"),
        ]  # fmt: skip
        (bo,) = session.scalars(select(Consent).where(Consent.contact_id == "bo"))
        assert bo.status == "pending" and bo.double_opt_in_token is not None


@pytest.mark.parametrize(
    ("contact", "channel", "status", "problem"),
    [
        ("nobody", "email", "granted", "no contact 'nobody'"),
        ("ana", "fax", "granted", "channel 'fax' takes no consent"),
        ("ana", "email", "maybe", "consent status 'maybe' is none of"),
    ],
)
def test_bad_consents_are_refused_and_record_nothing(
    store_url: str, contact: str, channel: str, status: str, problem: str
) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(PEOPLE)
        with pytest.raises(EngineError, match=problem):
            await engine.set_consent(contact, channel, status)

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(Consent)).all() == []
        assert session.scalars(select(Event)).all() == []


def test_a_pushed_consent_event_records_that_consent(store_url: str) -> None:
    # POST /events or `cadence events push` with a consent change: the send gates see it as
    # they see `set_consent`'s (a dry-run of the same events did; live stored only the
    # event and went on mailing Ana). Bo's granted SMS is older than his withdrawal on
    # record, so it changes nothing.
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("weekly")
        await engine.set_consent("bo", "sms", "withdrawn")
        before = (T0 - dt.timedelta(days=1)).isoformat()
        await engine.push_events([
            {"contact": "ana", "name": "consent_withdrawn", "properties": {"channel": "email"}},
            {"contact": "ana", "name": "consent_granted",
             "properties": {"channel": " SMS", "source": "checkout"}},  # read as sms
            {"contact": "bo", "name": "consent_granted", "at": before,
             "properties": {"channel": "sms"}},
        ])  # fmt: skip
        assert await engine.consents("ana") == {"email": "withdrawn", "sms": "granted"}
        assert await engine.consents("bo") == {"sms": "withdrawn"}
        for bad, problem in [({}, "a consent needs a channel"), ({"channel": "webhook"},
                             "channel 'webhook' takes no consent")]:  # fmt: skip
            with pytest.raises(InvalidInput, match=problem):
                await engine.push_event(
                    {"contact": "bo", "name": "consent_granted", "properties": bad}
                )
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [("ana", "text"), ("bo", "news")]
    with Store.open(store_url) as store, store.session() as session:
        (ana,) = session.scalars(
            select(Consent).where(Consent.contact_id == "ana", Consent.channel == "sms")
        )
        assert ana.source == "checkout" and ana.confirmed_at == T0


def test_a_confirmed_opt_in_brings_back_a_channel_the_person_had_left(store_url: str) -> None:
    # Ana unsubscribed from everything, then signed up for email again and confirmed by
    # her link: she gets the email (nothing, ever, before), and stays off SMS. Bo's spam
    # report is not his to lift by signing up.
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts([{**p, "attributes": {"sms_opt_in": True}} for p in PEOPLE])
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("weekly")
        await engine.push_events([
            {"contact": "ana", "name": "unsubscribed"},
            {"contact": "bo", "name": "complained", "properties": {"channel": "email"}},
        ])  # fmt: skip
        clock.advance_to(T0 + dt.timedelta(hours=1))
        for who in ("ana", "bo"):
            asked = await engine.set_consent(who, "email", "pending")
            assert await engine.confirm_opt_in(str(asked.token)) is not None
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert _sent(sink) == [("ana", "news"), ("bo", "text")]


def test_a_token_confirms_only_in_its_own_tenant(store_url: str) -> None:
    async def main() -> tuple[object, object]:
        async with Engine(store_url, clock=SimulatedClock(T0), tenant="acme") as acme:
            await acme.upsert_contacts(PEOPLE[:1])
            asked = await acme.set_consent("ana", "email", "pending")
        async with Engine(store_url, clock=SimulatedClock(T0), tenant="globex") as globex:
            assert asked.token is not None
            elsewhere = await globex.confirm_opt_in(asked.token)
        async with Engine(store_url, clock=SimulatedClock(T0), tenant="acme") as acme:
            return elsewhere, await acme.pending_opt_in(str(asked.token))

    elsewhere, still = trio.run(main)
    assert elsewhere is None and still is not None


# A campaign sends the double opt-in's confirmation itself: a template that uses
# `confirm_url` is the one message a pending consent on its channel lets through.
CONFIRMING = """
template confirm_signup email {
  subject "Please confirm your subscription"
  body "Click to confirm: {{ confirm_url }}"
}
template confirm_text sms "Reply to nothing, just tap: {{ confirm_url }}"
template news email { subject "News" body "x" }
template text sms { body "Hi" }
campaign double_opt_in {
  when consent_requested where event.channel == "email" { send email confirm_signup }
}
campaign sms_opt_in {
  when consent_requested where event.channel == "sms" { send sms confirm_text }
}
campaign weekly { on launch { wait 1d  send email news  send sms text } }
"""


def _skips(store_url: str) -> list[tuple[str, str, str]]:
    """(contact, channel, reason) of every skipped send."""
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(
            select(SendLog.contact_id, SendLog.channel, SendLog.detail).where(
                SendLog.outcome == "skipped"
            )
        ).all()
    return sorted((contact, channel, detail["reason"]) for contact, channel, detail in rows)


def test_a_pending_contact_gets_the_confirmation_and_nothing_else_on_that_channel(
    store_url: str,
) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(CONFIRMING))
        for name in ("double_opt_in", "sms_opt_in", "weekly"):
            await engine.launch(name)
        await engine.set_consent("ana", "email", "pending", source="signup form")
        await engine.set_consent("bo", "sms", "pending")
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    # Ana's email and Bo's SMS wait for confirmation: each gets the confirmation (an SMS one
    # without any other SMS opt-in: the pending consent is what it confirms), not the rest.
    assert sorted((m.contact_id, m.channel, m.template) for m in sink.delivered) == [
        ("ana", "email", "confirm_signup"),
        ("bo", "email", "news"),
        ("bo", "sms", "confirm_text"),
    ]
    assert _skips(store_url) == [
        ("ana", "email", "no consent (pending)"),
        ("ana", "sms", "no sms opt-in"),
        ("bo", "sms", "no consent (pending)"),
    ]


def test_a_person_who_left_and_signs_up_again_gets_the_confirmation(store_url: str) -> None:
    # Ana unsubscribed, then signed up again: her own opt-out does not stop the one message
    # she asked for (without it she could never confirm), and nothing else goes until she
    # confirms. Bo's spam report still stops even the confirmation.
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(CONFIRMING))
        for name in ("double_opt_in", "weekly"):
            await engine.launch(name)
        await engine.push_events([
            {"contact": "ana", "name": "unsubscribed", "properties": {"channel": "email"}},
            {"contact": "bo", "name": "complained", "properties": {"channel": "email"}},
        ])  # fmt: skip
        clock.advance_to(T0 + dt.timedelta(hours=1))
        await engine.set_consent("ana", "email", "pending", source="signup form")
        await engine.set_consent("bo", "email", "pending", source="signup form")
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert sorted((m.contact_id, m.channel, m.template) for m in sink.delivered) == [
        ("ana", "email", "confirm_signup"),
    ]
    assert [s for s in _skips(store_url) if s[1] == "email"] == [
        ("ana", "email", "suppressed"),  # the weekly news: she has not confirmed
        ("bo", "email", "suppressed"),  # the confirmation
        ("bo", "email", "suppressed"),  # the weekly news
    ]


REMINDER = """
template confirm_signup email {
  subject "Please confirm your subscription"
  body "Click to confirm: {{ confirm_url }}"
}
campaign reminder { on launch { send email confirm_signup } }
"""


def test_a_confirmation_goes_only_to_a_contact_with_an_opt_in_to_confirm(
    store_url: str,
) -> None:
    people = [{"id": who, "email": f"{who}@example.test"} for who in ("ana", "bo", "cy", "di")]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(people)
        await engine.set_consent("ana", "email", "pending")
        await engine.set_consent("bo", "email", "granted")
        await engine.set_consent("cy", "email", "withdrawn")  # di: none recorded
        await engine.deploy(campaigns(REMINDER))
        await engine.launch("reminder")
        await engine.run_until(T0 + dt.timedelta(days=1))
        return sink

    sink = engine_run(store_url, body)
    assert [(m.contact_id, m.template) for m in sink.delivered] == [("ana", "confirm_signup")]
    assert _skips(store_url) == [
        ("bo", "email", "no pending opt-in to confirm"),
        ("cy", "email", "no pending opt-in to confirm"),
        ("di", "email", "no pending opt-in to confirm"),
    ]


GATED = """
template confirm_signup email {
  subject "Please confirm your subscription"
  body "Click to confirm: {{ confirm_url }}"
}
template confirm_text sms "Tap to confirm: {{ confirm_url }}"
campaign reminder {
  cap email 1 per 7d
  on launch { send email confirm_signup  send sms confirm_text  wait 1h  send email confirm_signup }
}
"""


def test_a_confirmation_still_stops_at_suppressions_addresses_and_caps(store_url: str) -> None:
    people = [
        {"id": "ana", "email": "ana@example.test", "attributes": {"unsubscribed": True}},
        {"id": "bo", "email": "bo@example.test"},
        {"id": "cy", "email": "cy@example.test"},
        {"id": "di", "phone": "+491510000004"},
        {"id": "eve", "email": "eve@example.test"},
    ]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(people)
        for who in ("ana", "bo", "cy", "di", "eve"):
            await engine.set_consent(who, "email", "pending")
            await engine.set_consent(who, "sms", "pending")
        await engine.push_events([
            {"contact": "bo", "name": "bounced", "properties": {"channel": "email"}},
            {"contact": "cy", "name": "complained", "properties": {"channel": "email"}},
        ])  # fmt: skip
        await engine.deploy(campaigns(GATED))
        await engine.launch("reminder")
        await engine.run_until(T0 + dt.timedelta(days=1))
        return sink

    sink = engine_run(store_url, body)
    # Only Eve, with an address and nothing against her, gets the email confirmation, once
    # (the cap); Di, the only one with a phone, the SMS one.
    assert sorted((m.contact_id, m.channel) for m in sink.delivered) == [
        ("di", "sms"), ("eve", "email")
    ]  # fmt: skip
    assert _skips(store_url) == sorted(
        [("ana", "email", "unsubscribed")] * 2
        + [("ana", "sms", "no phone number")]
        + [("bo", "email", "suppressed")] * 2
        + [("bo", "sms", "no phone number")]
        + [("cy", "email", "suppressed")] * 2
        + [("cy", "sms", "no phone number")]
        + [("di", "email", "no email address")] * 2
        + [("eve", "email", "cap email 1 reached")]
        + [("eve", "sms", "no phone number")]
    )


def test_a_queued_confirmation_is_dropped_once_the_opt_in_is_confirmed(store_url: str) -> None:
    clock = SimulatedClock(T0)
    sink = BusyOnceSink(clock)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(CONFIRMING))
            await engine.launch("double_opt_in")
            asked = await engine.set_consent("ana", "email", "pending")
            await engine.set_consent("bo", "email", "pending")
            await engine.run_due()  # both confirmations refused for now, due in an hour
            assert sink.delivered == [] and asked.token is not None
            clock.advance_to(T0 + dt.timedelta(minutes=30))
            assert await engine.confirm_opt_in(asked.token) is not None  # from elsewhere
            await engine.run_until(T0 + dt.timedelta(hours=3))

    trio.run(main)
    assert [(m.contact_id, m.template) for m in sink.delivered] == [("bo", "confirm_signup")]
    with Store.open(store_url) as store, store.session() as session:
        (error,) = session.scalars(
            select(OutboxMessage.error).where(OutboxMessage.contact_id == "ana")
        )
    assert error == "no pending opt-in to confirm since it was queued"


def test_a_confirmation_token_expires_after_its_period_and_a_new_request_renews_it(
    store_url: str,
) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(PEOPLE)
        old = await engine.set_consent("ana", "email", "pending")
        assert old.token is not None
        # One second before the period ends the link still only asks; at its end it is dead.
        clock.advance_to(T0 + consent.TOKEN_VALID_FOR - dt.timedelta(seconds=1))
        waiting = await engine.pending_opt_in(old.token)
        assert waiting is not None and not waiting.expired
        clock.advance_to(T0 + consent.TOKEN_VALID_FOR)
        for answer in (await engine.pending_opt_in(old.token),
                       await engine.confirm_opt_in(old.token)):  # fmt: skip
            assert answer is not None and answer.expired
            assert answer.status is ConsentStatus.PENDING
        assert await engine.consents("ana") == {"email": "pending"}

        fresh = await engine.set_consent("ana", "email", "pending")
        assert fresh.token is not None and fresh.token != old.token
        assert await engine.confirm_opt_in(old.token) is None  # replaced: unknown now
        clock.advance_to(T0 + consent.TOKEN_VALID_FOR + dt.timedelta(days=6))
        confirmed = await engine.confirm_opt_in(fresh.token)
        assert confirmed is not None and not confirmed.expired
        assert confirmed.status is ConsentStatus.GRANTED

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        names = session.scalars(select(Event.name).order_by(Event.id)).all()
        # The expired press recorded nothing: only the two requests and the one grant.
        assert names == ["consent_requested", "consent_requested", "consent_granted"]
