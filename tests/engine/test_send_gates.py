"""Send gates found missing in the scenario audit: each runs on both stores.

docs/language.md, `send`: "a message that fails one of these (unsubscribed, no consent on
that channel, no address, over a cap) is skipped — recorded with its reason for reports —
and the flow continues with the next step."
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import trio
from sqlalchemy import event, select
from sqlalchemy.engine import Engine as SAEngine

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import SendLog
from tests.engine.test_runtime import T0, campaigns, engine_run


def _skips(store_url: str) -> list[tuple[str, str, str]]:
    """(contact, node, reason) of every skipped send."""
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(
            select(SendLog.contact_id, SendLog.detail).where(SendLog.outcome == "skipped")
        ).all()
    return sorted((contact, detail["node"], detail["reason"]) for contact, detail in rows)


NO_ADDRESS = """
template hello email { subject "Hello" body "x" }
template text sms "Hi"
template ping webhook "{}"
campaign reach {
  on launch { send email hello  send sms text  send webhook ping  wait 1d  send email hello }
}
"""


def test_a_contact_without_an_address_on_a_channel_is_skipped_there(store_url: str) -> None:
    people = [
        {"id": "full", "email": "full@example.test", "phone": "+491510000001",
         "attributes": {"sms_opt_in": True}},
        {"id": "no_email", "phone": "+491510000002", "attributes": {"sms_opt_in": True}},
        {"id": "no_phone", "email": "no_phone@example.test", "attributes": {"sms_opt_in": True}},
    ]  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(NO_ADDRESS))
        await engine.launch("reach")
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sink

    sink = engine_run(store_url, body)
    assert sorted((m.contact_id, m.channel, m.template) for m in sink.delivered) == [
        ("full", "email", "hello"),
        ("full", "email", "hello"),
        ("full", "sms", "text"),
        ("full", "webhook", "ping"),
        ("no_email", "sms", "text"),
        ("no_email", "webhook", "ping"),
        ("no_phone", "email", "hello"),
        ("no_phone", "email", "hello"),
        ("no_phone", "webhook", "ping"),
    ]
    assert _skips(store_url) == [
        ("no_email", "send_hello", "no email address"),
        ("no_email", "send_hello_2", "no email address"),
        ("no_phone", "send_text", "no phone number"),
    ]


PRIORITIES = """
template news email { subject "News" body "x" }
template offer email { subject "Offer" body "x" }
campaign newsletter { priority 2  cap email 1 per 1d  on launch { send email news } }
campaign flash_sale { priority 9  cap email 1 per 1d  on launch { send email offer } }
"""


def test_a_cap_goes_to_the_higher_priority_campaign_across_batches(store_url: str) -> None:
    """docs/language.md, `priority`: when caps let only some due messages through, larger
    priorities go first. With 30 contacts due in both campaigns at one instant and batches
    of 10, the low-priority campaign (launched first, so its rows are older) used to fill
    the first batches and take every cap."""
    people = [{"id": f"p{i:02d}", "email": f"p{i}@example.test"} for i in range(30)]
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink, batch_size=10) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(PRIORITIES))
            await engine.launch("newsletter")
            await engine.launch("flash_sale")
            await engine.run_due()

    trio.run(main)
    assert sorted((m.contact_id, m.template) for m in sink.delivered) == [
        (person["id"], "offer") for person in people
    ]
    assert {reason for _, node, reason in _skips(store_url)} == {"cap email 1 reached"}
    assert len(_skips(store_url)) == 30


NOTICES = """
template hello email { subject "Hello" body "x" }
campaign told {
  cap 2 per 1d
  on launch {
    notify webhook "https://hooks.example.test/crm"
    notify webhook "https://hooks.example.test/warehouse"
    wait 1h
    send email hello
    wait 1h
    if received(webhook, 1d) { exit "noticed" }
    send email hello
  }
}
"""


def test_notices_to_a_webhook_are_not_messages_a_cap_or_received_counts(
    store_url: str,
) -> None:
    """A cap is on messages to the contact (docs/language.md, `cap`); a `notify webhook`
    tells a CRM about them. Two notices used to fill `cap 2 per 1d` and skip both emails,
    and made `received(webhook, 1d)` true for a contact sent nothing."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts([{"id": "ana", "email": "ana@example.test"}])
        await engine.deploy(campaigns(NOTICES))
        await engine.launch("told")
        await engine.run_until(T0 + dt.timedelta(hours=3))
        return sink

    sink = engine_run(store_url, body)
    emails = [m for m in sink.delivered if m.channel == "email"]
    assert [m.template for m in emails] == ["hello", "hello"]
    assert _skips(store_url) == []


LATER_CHANNEL = """
template hello email { subject "Hello" body "x" }
template text sms "Hi"
campaign later {
  on launch { send email hello  wait 1d  exit "done" }
}
campaign texts {
  on launch { wait 2d  send sms text }
}
"""


def test_gates_read_a_channel_only_for_batches_that_send_on_it(store_url: str) -> None:
    """A batch reads suppressions and consents of the channels its steps ask, when asked."""
    people = [
        {"id": "p1", "email": "p1@example.test", "phone": "+491510000001",
         "attributes": {"sms_opt_in": True}},
        {"id": "p2", "email": "p2@example.test", "phone": "+491510000002",
         "attributes": {"sms_opt_in": True}},
    ]  # fmt: skip
    lookups: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.search(r"\bFROM (suppressions|consents)\b", statement):
            lookups.append(statement)

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[int]:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(LATER_CHANNEL))
        await engine.launch("later")
        await engine.launch("texts")
        # An sms unsubscribe: the sms gate must see it although no earlier batch read sms.
        await engine.push_event(
            {"contact": "p1", "name": "unsubscribed", "properties": {"channel": "sms"}}
        )
        counts = []
        event.listen(SAEngine, "before_cursor_execute", record)
        try:
            for day in (0, 1, 2):
                lookups.clear()
                await engine.run_until(T0 + dt.timedelta(days=day, hours=1))
                counts.append(len(lookups))
        finally:
            event.remove(SAEngine, "before_cursor_execute", record)
        return counts

    counts = engine_run(store_url, body)
    # Day 0 sends email; day 1 only exits (no gate asked, nothing read); day 2 sends sms.
    assert counts[0] > 0
    assert counts[1] == 0
    assert counts[2] > 0
    assert _skips(store_url) == [("p1", "send_text", "suppressed")]
