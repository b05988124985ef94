"""The less-travelled steps as LANGUAGE.md and docs/semantics.md define them, on both stores.

Each campaign here is written from the language's own words (not from our examples) and run
through the real engine on the simulated clock: `notify webhook` against the loopback
receiver, `set` as the contact's stored attributes, `wait for` an event that comes in the
same instant the wait begins.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import trio
from sqlalchemy import select

from cadence.adapters.config import load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.retry import RetryPolicy
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.adapters.standins.webhook import WebhookReceiver
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Contact, OutboxMessage
from tests.engine.test_runtime import T0, campaigns, engine_run

NOTICES = """
campaign crm {
  when form_submitted {
    notify webhook "RECEIVER/crm"
    wait 1d
    notify webhook "RECEIVER/crm"
  }
}
"""


def test_each_notify_step_posts_its_own_notice_once_through_a_failing_endpoint(
    store_url: str,
) -> None:
    """Two `notify webhook` steps to one URL along a journey are two notices (the second,
    a day later, shared the first's idempotency key and was dropped as its repeat). Each
    names the enrollment and step it comes from and the event that started the journey
    (LANGUAGE.md: "posts the contact and the enrollment"); an endpoint failing with 500s
    gets each notice again after backoff, and exactly once in the end."""
    clock = SimulatedClock(T0)

    async def main() -> WebhookReceiver:
        receiver = WebhookReceiver()
        settings = load_settings(env={"CADENCE_WEBHOOK_SECRET": "test-webhook-secret"})
        outbound = Outbound(settings, policy=RetryPolicy(max_attempts=1, base_delay=0.01))
        async with trio.open_nursery() as nursery:
            await nursery.start(receiver.serve)
            receiver.faults.add("500", times=2)
            async with Engine(store_url, clock=clock) as engine:
                source = StoreContentSource(store_url)
                engine.sink = AdapterSink(outbound, source, tenants={})
                await engine.deploy(campaigns(NOTICES.replace("RECEIVER", receiver.base_url)))
                await engine.launch("crm")
                await engine.upsert_contacts([{"id": "c1", "email": "ana@example.test"}])
                await engine.push_events(
                    [{"contact": "c1", "name": "form_submitted", "properties": {"form": "demo"}}]
                )
                await engine.run_until(T0 + dt.timedelta(days=3))
                source.close()
            await outbound.aclose()
            nursery.cancel_scope.cancel()
        return receiver

    receiver = trio.run(main)
    assert len(receiver.requests) == 4  # two refused with a 500, then each notice once
    bodies = [json.loads(r.body) for r in receiver.received]
    assert len({b["id"] for b in bodies}) == 2
    steps = sorted(b["data"]["enrollment"]["step"] for b in bodies)
    assert steps == ["notify_webhook", "notify_webhook_2"]
    (first, _) = sorted(bodies, key=lambda b: b["data"]["enrollment"]["step"])
    assert first["data"]["contact"]["id"] == "c1" and first["data"]["campaign"] == "crm"
    assert first["data"]["event"] == {
        "name": "form_submitted", "at": T0.isoformat(), "form": "demo"
    }  # fmt: skip
    with Store.open(store_url) as store, store.session() as session:
        statuses = list(session.scalars(select(OutboxMessage.status)))
    assert statuses == ["sent", "sent"]


SETS = """
template same email { subject "Same" body "x" }
template other email { subject "Other" body "x" }
template priced email { subject "Priced" body "x" }
campaign renewals {
  cap email 9 per 1d
  when renewed {
    set renewed_at = 2026-12-01T10:30
    set price = 12.50 USD
    set trial = 14d
    set huge = 12345678901234567890
    if renewed_at = signed_up_at { send email same } else { send email other }
    if price = 12.50 USD { send email priced }
  }
}
"""


def test_set_stores_values_as_the_store_keeps_them(store_url: str) -> None:
    """`set` wrote a datetime as `+00:00` text beside the store's `Z` (so it never equalled
    an imported instant: two texts compare as texts, docs/semantics.md), money as the text
    `Money(amount=...)` (no condition read it as money again) and a duration as
    `14 days, 0:00:00`. It now writes what `evaluate.to_plain` says: instants with `Z`,
    money as `{"amount", "currency"}`, durations in seconds, and a whole number beyond
    64 bits as a float, as the importer keeps one."""
    contact = {"id": "c1", "email": "ana@example.test",
               "attributes": {"signed_up_at": "2026-12-01T10:30:00Z"}}  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[str]:
        await engine.deploy(campaigns(SETS))
        await engine.launch("renewals")
        await engine.upsert_contacts([contact])
        await engine.push_events([{"contact": "c1", "name": "renewed"}])
        await engine.run_until(T0 + dt.timedelta(hours=1))
        return [m.template or "" for m in sink.delivered]

    assert engine_run(store_url, body) == ["same", "priced"]
    with Store.open(store_url) as store, store.session() as session:
        attributes = dict(session.scalar(select(Contact.attributes)) or {})
    # PostgreSQL's jsonb gives the float back as the whole number it is.
    assert float(attributes.pop("huge")) == 1.2345678901234567e19
    assert attributes == {
        "signed_up_at": "2026-12-01T10:30:00Z",
        "renewed_at": "2026-12-01T10:30:00Z",
        "price": {"amount": "12.50", "currency": "USD"},
        "trial": 14 * 86400,
    }


WAITS = """
template bought email { subject "Bought" body "x" }
template nudge email { subject "Nudge" body "x" }
template again email { subject "Again" body "x" }
template lapsed email { subject "Lapsed" body "x" }
campaign checkout {
  cap email 9 per 1d
  when signup {
    wait for purchase up to 1d
    if count(purchase, 2d) > 0 { send email bought } else { send email nudge }
  }
}
campaign repeat {
  cap email 9 per 1d
  when purchase {
    wait for purchase up to 1d
    if count(purchase, 2d) > 1 { send email again } else { send email lapsed }
  }
}
"""


def test_wait_for_an_event_counts_one_that_comes_in_the_instant_the_wait_begins(
    store_url: str,
) -> None:
    """`wait for purchase up to 1d` resumes as soon as the purchase comes (LANGUAGE.md). A
    purchase pushed with the signup that started the journey, or right after its first
    step at the same instant, came at the instant the wait began and was not "after" it:
    the contact waited the whole day and left as if it never came. The journey's own
    trigger event is not what it waits for; a second purchase is. An event for another
    contact wakes nobody else, one at the deadline counts, and two resume the wait once."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.deploy(campaigns(WAITS))
        await engine.launch("checkout")
        await engine.launch("repeat")
        await engine.upsert_contacts(
            [{"id": f"c{i}", "email": f"c{i}@example.test"} for i in range(1, 7)]
        )
        await engine.push_events(
            [{"contact": "c1", "name": "signup"}, {"contact": "c1", "name": "purchase"}]
        )
        await engine.push_events([{"contact": "c2", "name": "signup"}])
        await engine.push_events(
            [{"contact": "c3", "name": "signup"}, {"contact": "c4", "name": "signup"}]
        )
        await engine.run_due()
        await engine.push_events([{"contact": "c2", "name": "purchase"}])  # same instant
        await engine.run_due()
        at_once = sorted((m.campaign, m.contact_id, m.template) for m in sink.delivered)
        clock.advance_to(T0 + dt.timedelta(hours=3))
        await engine.push_events([{"contact": "c5", "name": "purchase"}])  # not a c3 one
        await engine.run_due()
        deadline = T0 + dt.timedelta(days=1)
        clock.advance_to(deadline)
        await engine.push_events([{"contact": "c3", "name": "purchase"}] * 2)
        await engine.run_until(T0 + dt.timedelta(days=3))
        return at_once, sorted((m.campaign, m.contact_id, m.template) for m in sink.delivered)

    at_once, final = engine_run(store_url, body)
    # `repeat` waits on: the purchase that started it is not the one it waits for.
    assert at_once == [("checkout", "c1", "bought"), ("checkout", "c2", "bought")]
    assert final == sorted([
        ("checkout", "c1", "bought"), ("checkout", "c2", "bought"),
        ("checkout", "c3", "bought"), ("checkout", "c4", "nudge"),
        ("repeat", "c1", "lapsed"), ("repeat", "c2", "lapsed"),
        ("repeat", "c3", "again"), ("repeat", "c5", "lapsed"),
    ])  # fmt: skip


ENROLLS = """
template note email { subject "Note" body "x" }
campaign inactive {
  reenter always
  when went_quiet {
    enroll sunset
    enroll winback
    enroll vip_desk
    enroll drafted
    enroll held
  }
}
campaign sunset { cap email 9 per 1d  when never_pushed { send email note } }
campaign winback { cap email 9 per 1d  reenter always  when never_pushed { send email note } }
campaign vip_desk {
  cap email 9 per 1d
  reenter after 2d
  audience lead_score >= 50
  when never_pushed { send email note }
}
campaign drafted { cap email 9 per 1d  when never_pushed { send email note } }
campaign held { cap email 9 per 1d  when never_pushed { send email note } }
"""


def test_enroll_keeps_the_other_campaign_s_audience_state_and_reentry(store_url: str) -> None:
    """`enroll OTHER` enters OTHER as its own trigger would: only a running campaign (not a
    draft, not a paused one: LANGUAGE.md), only its `audience`, and by its `reenter` rule.
    It entered everyone once ever, so a win-back campaign with `reenter always` (or `after
    2d`) reached through `enroll` a second time did nothing."""
    people = [
        {"id": "hot", "email": "hot@example.test", "attributes": {"lead_score": 80}},
        {"id": "cold", "email": "cold@example.test", "attributes": {"lead_score": 5}},
    ]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.deploy(campaigns(ENROLLS))
        for name in ("inactive", "sunset", "winback", "vip_desk", "held"):
            await engine.launch(name)
        await engine.pause("held")
        await engine.upsert_contacts(people)
        for day in (0, 1, 3):
            clock.advance_to(T0 + dt.timedelta(days=day))
            await engine.push_events([{"contact": p["id"], "name": "went_quiet"} for p in people])
            await engine.run_due()
        await engine.launch("drafted")  # launched after the enrolls: they entered nobody
        await engine.resume("held")
        await engine.run_until(T0 + dt.timedelta(days=5))
        return sorted(Counter((m.campaign, m.contact_id) for m in sink.delivered).items())

    assert engine_run(store_url, body) == [
        (("sunset", "cold"), 1), (("sunset", "hot"), 1),
        (("vip_desk", "hot"), 2),  # days 0 and 3: day 1 is within its 2 days
        (("winback", "cold"), 3), (("winback", "hot"), 3),
    ]  # fmt: skip
