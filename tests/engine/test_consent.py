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

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, EngineError, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Consent, ConsentStatus, Event
from tests.engine.test_runtime import T0, campaigns, engine_run

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
