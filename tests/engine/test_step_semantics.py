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
from pathlib import Path
from typing import Any

import pytest
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
from cadence.engine.store.models import Contact, Enrollment, OutboxMessage
from tests.adapters.test_web_service import TOKEN, Service, _with_service
from tests.engine.cadence_cli import run_cadence
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


GOALS = """
template first email { subject "First" body "<p>One</p>" }
template second email { subject "Second" body "<p>Two</p>" }
campaign nurture {
  from "Acme <hello@acme.test>"
  cap email 9 per 1d
  goal converted or tags contains "customer"
  on launch { send email first  wait 2d  send email second }
}
campaign crm_sync { when deal_won { tag add "customer" } }
"""


def test_a_goal_reached_before_entry_mid_wait_through_post_events_or_a_tag_elsewhere(
    store_url: str,
) -> None:
    """`goal` is read before each step, the first included (docs/language.md): a contact
    who converted before the launch is sent nothing; one whose `converted` is posted to
    `POST /events` during the 2-day wait leaves then and gets no second email, as does
    one whose tag another campaign adds; the rest get both, through the Brevo stand-in."""
    people = [
        {"id": f"c{i}", "email": f"c{i}@example.test", "first_name": f"C{i}"} for i in range(4)
    ]

    async def body(service: Service) -> None:
        engine, auth = service.engine, {"authorization": f"Bearer {TOKEN}"}
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(GOALS))
        await engine.launch("crm_sync")
        before = {"contact": "c0", "name": "converted", "at": T0.isoformat()}
        assert (await service.client.post("/events", json=before, headers=auth)).is_success
        await engine.launch("nurture")
        await engine.run_due()
        service.clock.advance_to(T0 + dt.timedelta(days=1))
        pushed = [{"contact": "c1", "name": "converted"}, {"contact": "c2", "name": "deal_won"}]
        assert (await service.client.post("/events", json=pushed, headers=auth)).is_success
        await engine.run_until(T0 + dt.timedelta(days=3))
        got = {p["email"]: [e.subject for e in service.emails_to(p["email"])] for p in people}
        assert got == {
            "c0@example.test": [],
            "c1@example.test": ["First"],
            "c2@example.test": ["First"],
            "c3@example.test": ["First", "Second"],
        }

    trio.run(_with_service, store_url, body)


HANDOFF = """
segment customers = tags contains "customer"
template intro email { subject "Your agent: {{ contact.agent | default('none yet') }}" body "x" }
template welcome_customer email { subject "Welcome aboard" body "x" }
campaign handoff {
  cap email 9 per 1d
  when hot {
    assign agent round_robin
    tag add "customer"
    tag remove "lead"
    if tags contains "customer" and not (tags contains "lead") { send email intro }
    exit "handed to sales"
  }
}
campaign onboarding {
  cap email 9 per 1d
  on segment_enter customers { send email welcome_customer }
}
"""


def test_round_robin_tags_and_exit_across_batches_and_a_restart(store_url: str) -> None:
    """`assign agent round_robin` hands contacts to the active agents in turn, however the
    contacts fall into batches and across a restart (the rotation is stored); with no agent
    it does nothing and the flow goes on. The `if` after `tag add` / `tag remove` sees the
    new tags, and another campaign's `on segment_enter` enters the contact they moved in.
    `exit` ends the journey with its reason."""
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    people = [{"id": f"c{i}", "email": f"c{i}@example.test", "tags": ["lead"]} for i in range(8)]

    async def first_run() -> None:
        async with Engine(store_url, clock=clock, sink=sink, batch_size=2) as engine:
            await engine.deploy(campaigns(HANDOFF))
            await engine.launch("handoff")
            await engine.launch("onboarding")
            await engine.upsert_contacts(people)
            await engine.push_events([{"contact": "c0", "name": "hot"}])  # no agent yet
            await engine.run_due()
            for name in ("Ana", "Ben", "Cy"):
                await engine.add_agent(name)
            await engine.push_events([{"contact": f"c{i}", "name": "hot"} for i in range(1, 5)])
            await engine.run_due()

    async def after_restart() -> None:
        async with Engine(store_url, clock=clock, sink=sink, batch_size=2) as engine:
            await engine.push_events([{"contact": f"c{i}", "name": "hot"} for i in range(5, 8)])
            await engine.run_due()

    trio.run(first_run)
    trio.run(after_restart)
    with Store.open(store_url) as store, store.session() as session:
        contacts = {c.id: c for c in session.scalars(select(Contact))}
        journeys = {
            e.contact_id: (e.status, e.history[-1][2])
            for e in session.scalars(select(Enrollment))
            if e.node is not None and e.node.startswith("exit")
        }
    agents = [(contacts[f"c{i}"].attributes or {}).get("agent") for i in range(8)]
    assert agents == [None, "Ana", "Ben", "Cy", "Ana", "Ben", "Cy", "Ana"]
    assert all(contacts[f"c{i}"].tags == ["customer"] for i in range(8))
    subjects = sorted((m.contact_id, m.template) for m in sink.delivered)
    assert subjects == sorted(
        [(f"c{i}", "intro") for i in range(8)] + [(f"c{i}", "welcome_customer") for i in range(8)]
    )
    assert journeys == {f"c{i}": ("exited", "handed to sales") for i in range(8)}


DRY_RUN = """
template bought email { subject "Thanks" body "x" }
template nudge email { subject "Nudge" body "x" }
template note email { subject "Note" body "x" }
campaign checkout {
  cap email 9 per 1d
  reenter always
  when signup {
    notify webhook "https://hooks.example.test/crm"
    wait for purchase up to 1d
    if count(purchase, 1d) > 0 { send email bought } else { send email nudge }
    enroll winback
  }
}
campaign winback { cap email 9 per 1d  reenter always  when never_pushed { send email note } }
"""


def test_cadence_dry_run_steps_these_campaigns_as_the_engine_does(tmp_path: Path) -> None:
    """`cadence dry-run` on a file and an events file, as an ops author runs it: a purchase
    logged in the same second as the signup is the one `wait for` waits for, and every
    `enroll` of a `reenter always` campaign starts a journey."""
    (tmp_path / "c.cadence").write_text(DRY_RUN, encoding="utf-8")
    people = [{"id": "a", "email": "a@example.test"}, {"id": "b", "email": "b@example.test"}]
    (tmp_path / "contacts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in people))
    events = [
        {"contact": "a", "name": "signup", "at": "2026-12-01T09:00:00Z"},
        {"contact": "a", "name": "purchase", "at": "2026-12-01T09:00:00Z"},
        {"contact": "b", "name": "signup", "at": "2026-12-01T09:00:00Z"},
        {"contact": "b", "name": "signup", "at": "2026-12-02T10:00:00Z"},
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    done = run_cadence(
        "dry-run", "c.cadence", "--contacts", "contacts.jsonl", "--events", "events.jsonl",
        "--start", "2026-12-01T08:00:00Z", "--until", "3d", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    sends = sorted(
        (s["at"], s["contact"], s["campaign"], s["template"])
        for s in lines if s.get("type") == "send"
    )  # fmt: skip
    assert sends == [
        ("2026-12-01T09:00:00Z", "a", "checkout", "bought"),
        ("2026-12-01T09:00:00Z", "a", "winback", "note"),
        ("2026-12-02T09:00:00Z", "b", "checkout", "nudge"),
        ("2026-12-02T09:00:00Z", "b", "winback", "note"),
        ("2026-12-03T10:00:00Z", "b", "checkout", "nudge"),
        ("2026-12-03T10:00:00Z", "b", "winback", "note"),
    ]


STANDARD_FIELDS = """
template hello email { subject "Hello {{ contact.first_name }}" body "x" }
template morning email { subject "Morning" body "x" }
campaign profile {
  cap email 9 per 1d
  reenter always
  when profile_updated {
    set first_name = event.first_name
    set email = event.email
    set timezone = event.timezone
    set tags = ["verified"]
    if first_name = event.first_name and tags contains "verified" { send email hello }
  }
}
campaign daily {
  cap email 9 per 1d
  on launch { wait until 09:00 local  send email morning }
}
"""


def test_set_of_a_standard_field_writes_the_field(store_url: str) -> None:
    """`contact.first_name`, a bare `first_name` and `{{ contact.first_name }}` read the
    contact's own field (docs/semantics.md, Names), but `set first_name = ...` wrote a
    custom attribute of that name beside it, which nothing read: the `if` after it was
    false and the email still said the old name. `set` now writes the field, read as an
    import reads it; a value it cannot hold (no email address) leaves it as it was; a new
    timezone moves what the contact's other journeys booked by their clock."""
    contact = {"id": "c1", "email": "old@example.test", "first_name": "Old",
               "timezone": "UTC", "tags": ["lead"]}  # fmt: skip
    update = {"first_name": "Ana", "email": "ana@example.test", "timezone": "Asia/Manila"}
    bad = {"first_name": "Ana", "email": "nobody", "timezone": "Mars/Base"}

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts([contact])
        await engine.deploy(campaigns(STANDARD_FIELDS))
        await engine.launch("daily")  # waits for 09:00 UTC tomorrow
        await engine.launch("profile")
        await engine.run_due()
        event = {"contact": "c1", "name": "profile_updated"}
        await engine.push_events([{**event, "properties": update}])
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(hours=1))
        await engine.push_events([{**event, "properties": bad}])
        # 09:00 in Manila is 01:00 UTC: by 03:00 UTC the morning email has gone.
        await engine.run_until(T0 + dt.timedelta(hours=18))
        return [m.template for m in sink.delivered]

    assert engine_run(store_url, body) == ["hello", "hello", "morning"]
    with Store.open(store_url) as store, store.session() as session:
        stored = session.scalars(select(Contact)).one()
    assert (stored.first_name, stored.email, stored.timezone, stored.tags) == (
        "Ana", "ana@example.test", "Asia/Manila", ["verified"]
    )  # fmt: skip
    assert not (stored.attributes or {})


def test_set_of_a_name_stores_a_number_as_its_text_and_refuses_a_yes_no(
    store_url: str,
) -> None:
    """A name is text, as an import reads it: `set last_name = 4.5` stores "4.5" (it kept
    the old name, where `set first_name = 42` stored "42"), and a yes/no is refused, the
    name kept: what E223 says at check time, never more."""
    source = """
    campaign rename {
      audience last_name = "Cruz"
      on launch { set first_name = 42  set last_name = 4.5 }
    }
    campaign flag {
      audience lead_score > 3
      on launch { set first_name = lead_score > 3 }
    }
    """

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts([
            {"id": "c1", "first_name": "Ana", "last_name": "Cruz"},
            {"id": "c2", "first_name": "Bo", "attributes": {"lead_score": 9}},
        ])  # fmt: skip
        await engine.deploy(campaigns(source))
        await engine.launch("rename")
        await engine.launch("flag")
        await engine.run_due()

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        names = session.execute(select(Contact.id, Contact.first_name, Contact.last_name)).all()
    assert sorted(tuple(row) for row in names) == [("c1", "42", "4.5"), ("c2", "Bo", None)]


@pytest.mark.parametrize(
    ("steps", "tags"),
    [
        ('tag add "a"  set tags = "x"', ["x"]),
        ('tag add "a"  set tags = ["x"]', ["x"]),
        ('set tags = ["x"]  tag add "a"', ["x", "a"]),
        ('tag remove "lead"  set tags = ["lead", "x"]', ["lead", "x"]),
    ],
)
def test_the_later_of_a_tag_step_and_a_set_of_tags_wins(
    store_url: str, steps: str, tags: list[str]
) -> None:
    """A run's tag steps were applied after its `set tags`, whatever their order: `tag add
    "a"` then `set tags = "x"` left `a` in."""
    source = f"campaign retag {{ on launch {{ {steps} }} }}"

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts([{"id": "c1", "email": "c1@example.test", "tags": ["lead"]}])
        await engine.deploy(campaigns(source))
        await engine.launch("retag")
        await engine.run_due()

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(Contact.tags)).one() == tags


DECAYED = """
score engagement { clicked(any) within 365d: +10 each  decay 10% per 30d }
template t email { subject "T" body "x" }
template hi email { subject "Hi" body "x" }
template lo email { subject "Lo" body "x" }
campaign audience_cut {
  cap email 9 per 1d
  audience engagement >= 8.1 and engagement < 9
  on launch { send email t }
}
campaign branch {
  cap email 9 per 1d
  when go { if engagement >= 8.1 and engagement < 9 { send email hi } else { send email lo } }
}
campaign fanout {
  cap email 9 per 1d
  when listing for contacts where engagement > event.min and engagement < 9 { send email t }
}
"""


def test_a_decayed_score_is_one_number_in_if_audience_and_fan_out(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """docs/semantics.md, Scores: a click 60 days ago with `decay 10% per 30d` keeps 81% of
    its 10 points (8.1), one 59 days and 23 hours ago 90% (9), one 90 days ago 72.9%; two
    reports of one message count once. The `if`, the `audience` selected in bulk (the
    dispatch core, then its Python twin) and the `for contacts where` fan-out agree on
    exactly those boundaries."""

    def ago(days: float) -> str:
        return (T0 - dt.timedelta(days=days)).isoformat()

    clicks = [
        {"contact": "c1", "name": "clicked", "at": ago(60)},
        {"contact": "c2", "name": "clicked", "at": ago(60 - 1 / 24)},
        {"contact": "c3", "name": "clicked", "at": ago(90)},
        {"contact": "c4", "name": "clicked", "at": ago(60), "properties": {"send": "m1"}},
        {"contact": "c4", "name": "clicked", "at": ago(59), "properties": {"send": "m1"}},
    ]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts(
            [{"id": f"c{i}", "email": f"c{i}@example.test"} for i in range(1, 5)]
        )
        await engine.push_events(clicks)
        await engine.deploy(campaigns(DECAYED))
        for name in ("audience_cut", "branch", "fanout"):
            await engine.launch(name)
        await engine.push_events([{"contact": f"c{i}", "name": "go"} for i in range(1, 5)])
        await engine.push_events([{"name": "listing", "properties": {"min": 8}}])
        await engine.run_until(T0 + dt.timedelta(hours=1))
        return sorted((m.campaign, m.contact_id, m.template) for m in sink.delivered)

    assert engine_run(store_url, body) == [
        ("audience_cut", "c1", "t"), ("audience_cut", "c4", "t"),
        ("branch", "c1", "hi"), ("branch", "c2", "lo"), ("branch", "c3", "lo"),
        ("branch", "c4", "hi"),
        ("fanout", "c1", "t"), ("fanout", "c4", "t"),
    ]  # fmt: skip
    assert filter_backend and all(chosen == fallback for chosen, fallback, _ in filter_backend)
