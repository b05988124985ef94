"""Crashes lose nothing: a campaign killed at any database statement, commit or provider call,
then finished by a new engine on the same store, ends as a run that never crashed.

The campaign has a launch send, a `wait for EVENT up to DUR`, an event-triggered send, an
A/B split, a `notify webhook`, a frequency cap and a budget, all of which the clean run
reaches (asserted). A clean run counts the statements (by kind: verb and table), commits
and provider calls; each faulty run dies at one of them (`tests/engine/faults.py`), and a
new engine on the same store retries the operation that died (as a client or `cadence
serve` would) and runs to the end; or it meets a transient failure there (a deadlock, a
connection lost as a commit went through), which the engine retries itself or passes on
to the caller, who asks again. Then, against the clean run: the provider took every
message, none twice unless the second hand-over carried the same idempotency key and said
it was tried before (`attempts`, what Infobip's lookup and Brevo's key rely on); no
message was lost; every enrollment, outbox row, send-log outcome, event and suppression is
the same; no lease is left; the cap and the budget held.

The HTTP side is swept the same way: a provider webhook, a one-click unsubscribe and an
event push cut short at each point, then asked again, take effect once.

Every point of both sweeps passes on both stores with CADENCE_FAULT_SWEEP=all (some
minutes per store); CI runs a fixed-seed sample with every statement kind in it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, get_args

import trio
from sqlalchemy import func, select

from cadence.engine import preferences, suppress
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, EngineError, OutgoingMessage, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import (
    Campaign,
    CampaignVersion,
    Enrollment,
    Event,
    OutboxMessage,
    SendLog,
    Suppression,
)
from tests.engine import webhook_payloads as wp
from tests.engine.faults import (
    CRASHES,
    FaultPoint,
    Faults,
    FaultySink,
    InjectedCrash,
    InjectedTransient,
    Kind,
    ProviderRecord,
    sample_points,
)
from tests.engine.test_runtime import campaigns

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
END = T0 + dt.timedelta(days=5)
SOURCE = """
template welcome email { subject "Welcome {{ contact.first_name }}" body "<p>Hi</p>" }
template offer_a email { subject "Offer A" body "<p>A</p>" }
template offer_b email { subject "Offer B" body "<p>B</p>" }
template reminder email { subject "Still there?" body "<p>R</p>" }
template thanks email { subject "Thanks {{ contact.first_name }}" body "<p>T</p>" }
campaign promo {
  cap email 3 per 7d
  budget 0.012 USD
  cost email 0.001 USD
  on launch {
    send email welcome
    wait for purchase up to 2d
    split 50% test winner by clicks after 4h { a: send email offer_a  b: send email offer_b }
    notify webhook "https://hooks.example.test/crm"
    wait 1d
    send email reminder
  }
}
when purchase send email thanks
"""
PEOPLE = [{"id": f"c{i}", "email": f"c{i}@example.test", "first_name": f"P{i}"} for i in range(6)]
BOUGHT = T0 + dt.timedelta(hours=2)
EVENTS = [
    {"id": f"buy-{cid}", "contact": cid, "name": "purchase", "at": BOUGHT.isoformat()}
    for cid in ("c1", "c4")
]


async def _launch(engine: Engine, name: str, retry: bool) -> None:
    try:
        await engine.launch(name)
    except EngineError as error:
        # A launch whose commit went through before the crash: its retry is told so,
        # clearly, and changes nothing.
        if not (retry and "it is active" in str(error)):
            raise


# What a client (or `cadence serve`) does, in order; after a crash the new engine retries
# the operation that died (told it is a retry) and goes on.
Operation = Callable[[Engine, bool], Awaitable[Any]]


def _started(source: str, campaign: str, until: dt.datetime) -> list[Operation]:
    """The people imported, `source` deployed, its campaign and `t_purchase` launched, and
    everything due until `until` run."""
    return [
        lambda e, _: e.upsert_contacts(PEOPLE),
        lambda e, _: e.deploy(campaigns(source)),
        lambda e, retry: _launch(e, campaign, retry),
        lambda e, retry: _launch(e, "t_purchase", retry),
        lambda e, _: e.run_until(until),
    ]


OPERATIONS: list[Operation] = [
    *_started(SOURCE, "promo", BOUGHT),
    lambda e, _: e.push_events(EVENTS),
    lambda e, _: e.run_until(END),
]


@dataclass
class Outcome:
    """What a run left: what the provider took and what the store says."""

    taken: list[tuple[int, Any]]  # (engine life, message)
    lives: int
    enrollments: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    log: list[tuple[Any, ...]]
    leases: int
    events: list[tuple[Any, ...]]
    suppressions: list[tuple[Any, ...]]
    faults: Faults

    def messages(self) -> list[tuple[Any, ...]]:
        """What the provider took, once per idempotency key (keys differ between tenants)."""
        return sorted(
            {
                m.idempotency_key: (m.contact_id, m.channel, m.template, m.variant)
                for _, m in self.taken
            }.values()
        )


def _only_injected(error: BaseException) -> bool:
    if isinstance(error, InjectedCrash | InjectedTransient):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_only_injected(inner) for inner in error.exceptions)
    return False


def _stored(
    store_url: str, tenant: str
) -> tuple[list[Any], list[Any], list[Any], int, list[Any], list[Any]]:
    """A tenant's enrollments, outbox, send log (without ids or times), live leases, events
    (how many of each name per contact) and suppressions."""
    with Store.open(store_url, migrate=False) as store, store.session() as session:
        enrollments = session.execute(
            select(Campaign.name, Enrollment.contact_id, Enrollment.occurrence,
                   Enrollment.status, Enrollment.node, Enrollment.state)
            .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(Enrollment.tenant_id == tenant)
            .order_by(Campaign.name, Enrollment.contact_id, Enrollment.occurrence)
        ).all()  # fmt: skip
        outbox = session.execute(
            select(OutboxMessage.contact_id, OutboxMessage.channel, OutboxMessage.template,
                   OutboxMessage.variant, OutboxMessage.status, OutboxMessage.attempts > 0)
            .where(OutboxMessage.tenant_id == tenant)
            .order_by(OutboxMessage.contact_id, OutboxMessage.channel, OutboxMessage.template)
        ).all()  # fmt: skip
        log = session.execute(
            select(OutboxMessage.contact_id, OutboxMessage.channel, OutboxMessage.template,
                   SendLog.outcome, SendLog.cost, func.count())
            .join(OutboxMessage, OutboxMessage.id == SendLog.outbox_id)
            .where(SendLog.tenant_id == tenant)
            .group_by(OutboxMessage.contact_id, OutboxMessage.channel, OutboxMessage.template,
                      SendLog.outcome, SendLog.cost)
            .order_by(OutboxMessage.contact_id, OutboxMessage.channel, OutboxMessage.template,
                      SendLog.outcome)
        ).all()  # fmt: skip
        leases = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.tenant_id == tenant, OutboxMessage.lease_owner.is_not(None))
        ) + session.scalar(
            select(func.count())
            .select_from(Enrollment)
            .where(Enrollment.tenant_id == tenant, Enrollment.lease_owner.is_not(None))
        )
        events = session.execute(
            select(Event.contact_id, Event.name, Event.dedupe_key.is_not(None), func.count())
            .where(Event.tenant_id == tenant)
            .group_by(Event.contact_id, Event.name, Event.dedupe_key.is_not(None))
            .order_by(Event.contact_id, Event.name)
        ).all()
        suppressions = session.execute(
            select(Suppression.contact_id, Suppression.address, Suppression.channel,
                   Suppression.reason)
            .where(Suppression.tenant_id == tenant)
            .order_by(Suppression.contact_id, Suppression.channel, Suppression.reason)
        ).all()  # fmt: skip
    return (
        [tuple(r) for r in enrollments],
        [tuple(r) for r in outbox],
        [tuple(r) for r in log],
        int(leases or 0),
        [tuple(r) for r in events],
        sorted((tuple(r) for r in suppressions), key=repr),  # NULLs sort apart per store
    )


def run_campaign(
    store_url: str,
    tenant: str,
    point: FaultPoint | None,
    operations: Sequence[Operation] = OPERATIONS,
    armed: Container[int] = range(len(OPERATIONS)),
) -> Outcome:
    """Run the operations, dying at `point` (counted in the `armed` operations only); then
    a new engine retries the one that died and finishes them."""
    clock = SimulatedClock(T0)
    record = ProviderRecord()
    faults = Faults(point)

    async def main() -> None:
        done = 0
        while done < len(operations):
            assert record.life <= 1, "a second crash: only one was injected"
            sink = FaultySink(record, faults)
            try:
                async with Engine(store_url, clock=clock, sink=sink, tenant=tenant) as engine:
                    database = engine.store.store.engine
                    while done < len(operations):
                        if done in armed:
                            faults.attach(database)
                        try:
                            await operations[done](engine, record.life > 0)
                        finally:
                            if done in armed:
                                faults.detach(database)
                        done += 1
            except BaseException as error:
                if not _only_injected(error):
                    raise
                record.life += 1

    trio.run(main)
    enrollments, outbox, log, leases, events, suppressions = _stored(store_url, tenant)
    return Outcome(
        record.taken, record.life, enrollments, outbox, log, leases, events, suppressions, faults
    )


def assert_same_ending(clean: Outcome, crashed: Outcome, point: FaultPoint) -> None:
    """Everything the clean run sent, once; the store as the clean run left it."""
    assert crashed.faults.fired, f"{point}: the fault never fired"
    # A crash ends the engine; a transient failure is retried in the transaction, or passed
    # on by a read that does not retry, and the caller asks again.
    assert crashed.lives == 1 if point.kind in CRASHES else crashed.lives <= 1, point
    assert crashed.messages() == clean.messages(), f"{point}: lost or extra messages"
    lives: dict[str, list[tuple[int, int]]] = {}
    for life, message in crashed.taken:
        lives.setdefault(message.idempotency_key, []).append((life, message.attempts))
    for key, handovers in lives.items():
        # Twice only across the crash, the second time saying it was tried before, with
        # the same key: what a provider (Brevo's key, Infobip's lookup) takes once.
        assert len(handovers) == len({life for life, _ in handovers}), (point, key, handovers)
        assert all(attempts >= 1 for life, attempts in handovers[1:]), (point, key, handovers)
    assert crashed.enrollments == clean.enrollments, point
    assert crashed.outbox == clean.outbox, point
    assert crashed.log == clean.log, point
    assert crashed.events == clean.events, point
    assert crashed.suppressions == clean.suppressions, point
    assert crashed.leases == 0, point


def _tenant(point: FaultPoint | None) -> str:
    return "clean" if point is None else f"{point.kind[0]}{point.at}"


def assert_clean_run_reaches_everything(clean: Outcome) -> None:
    """The clean run exercises what the sweep is about: without this, passing means little."""
    sent = clean.messages()
    templates = Counter(template for _, channel, template, _ in sent if channel == "email")
    assert templates["welcome"] == 6 and templates["thanks"] == 2, templates
    assert sum(channel == "webhook" for _, channel, _, _ in sent) >= 2
    # Every promo contact went down an arm of the A/B split: the verdict was taken.
    promo = [row for row in clean.enrollments if row[0] == "promo"]
    assert len(promo) == 6 and all(row[5]["variants"] for row in promo), promo
    emails = Counter(contact for contact, channel, _, _ in sent if channel == "email")
    assert max(emails.values()) == 3  # the cap stopped someone's fourth email
    spent = sum(
        (cost * count for *_, outcome, cost, count in clean.log if cost and outcome == "sent"),
        Decimal(0),
    )
    assert spent == Decimal("0.012")  # the budget is spent to the cent, never past it
    statuses = Counter(row[3] for row in clean.enrollments)
    assert statuses["paused"] > 0, statuses  # the spent budget paused the promo
    assert clean.leases == 0


def sweep_points(clean: Outcome) -> list[FaultPoint]:
    """Every point with CADENCE_FAULT_SWEEP=all; else a fixed-seed sample of them."""
    faults = clean.faults
    if os.environ.get("CADENCE_FAULT_SWEEP") == "all":
        return [
            FaultPoint(kind, at)
            for kind in get_args(Kind)
            for at in range(1, faults.counts[kind] + 1)
        ]
    return sample_points(faults, seed=20261201)


def test_a_campaign_killed_at_any_point_ends_as_a_clean_run(store_url: str) -> None:
    clean = run_campaign(store_url, _tenant(None), None)
    assert_clean_run_reaches_everything(clean)
    failures: list[str] = []
    for point in sweep_points(clean):
        crashed = run_campaign(store_url, _tenant(point), point)
        try:
            assert_same_ending(clean, crashed, point)
        except AssertionError as error:
            failures.append(f"{point}: {error}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------- the HTTP side

HTTP_SOURCE = """
template hello email { subject "Hello" body "<p>Hi</p>" }
template after email { subject "After" body "<p>After</p>" }
template thanks email { subject "Thanks" body "<p>T</p>" }
campaign hello_all { on launch { send email hello  wait for purchase up to 2d  send email after } }
when purchase send email thanks
"""
SENT = T0 + dt.timedelta(hours=1)
SEEN = T0 + dt.timedelta(minutes=30)  # when the reports below happened


async def _sent(engine: Engine) -> dict[str, OutgoingMessage]:
    """Each contact's (one) send so far, as the service looks a send up by its key."""

    def keys(store: Store) -> list[tuple[str, str]]:
        with store.session() as session:
            rows = session.execute(
                select(OutboxMessage.contact_id, OutboxMessage.idempotency_key).where(
                    OutboxMessage.tenant_id == engine.tenant
                )
            ).all()
        return [(row[0], row[1]) for row in rows]

    found = {cid: await engine.sent_message(key) for cid, key in await engine.store.call(keys)}
    return {cid: message for cid, message in found.items() if message is not None}


async def _brevo_webhook(engine: Engine, _retry: bool) -> None:
    """Brevo's webhook body as `/webhooks/brevo` hands it to the engine."""
    sent = await _sent(engine)
    clicked = SEEN + dt.timedelta(minutes=5)
    await engine.ingest_webhook("brevo", [
        wp.brevo_event("delivered", sent["c0"], SEEN, email="c0@example.test"),
        wp.brevo_event("click", sent["c0"], clicked, email="c0@example.test",
                       link="https://acme.test/a"),
        wp.brevo_event("hard_bounce", sent["c1"], SEEN, email="c1@example.test"),
        wp.brevo_event("delivered", sent["c2"], SEEN, email="c2@example.test"),
        wp.brevo_event("unsubscribed", sent["c2"], clicked, email="c2@example.test"),
    ])  # fmt: skip


async def _unsubscribe_link(engine: Engine, _retry: bool) -> None:
    """The one-click unsubscribe (`POST /u/...`) of c3's email, as the service makes it."""
    message = (await _sent(engine))["c3"]

    def unsubscribe(choices: list[preferences.ChannelChoice]) -> list[tuple[str, str]]:
        if preferences.opted_out(choices, message.channel):
            return []
        return [(suppress.UNSUBSCRIBED, message.channel)]

    await engine.change_channels(message.contact_id, message.idempotency_key, unsubscribe,
                                 via="link")  # fmt: skip


HTTP_OPERATIONS: list[Operation] = [
    *_started(HTTP_SOURCE, "hello_all", SENT),
    _brevo_webhook,
    _unsubscribe_link,
    lambda e, _: e.push_events_counted(
        [{"id": "buy-c4", "contact": "c4", "name": "purchase", "at": SENT.isoformat()}]
    ),
    lambda e, _: e.run_until(END),
]
HTTP_ARMED = range(5, 8)  # the webhook, the unsubscribe and the event push


def test_a_webhook_an_unsubscribe_or_an_event_push_cut_short_takes_effect_once_on_retry(
    store_url: str,
) -> None:
    clean = run_campaign(store_url, "hclean", None, HTTP_OPERATIONS, HTTP_ARMED)
    sent = Counter(template for _, _, template, _ in clean.messages())
    # `after` to c0 (a click is no purchase), c4 (at its purchase) and c5; not to the bounced
    # c1 nor to c2 and c3, who unsubscribed.
    assert sent == {"hello": 6, "thanks": 1, "after": 3}, sent
    assert set(clean.suppressions) == {
        (None, "c1@example.test", "email", "bounced"), ("c2", None, "email", "unsubscribed"),
        ("c3", None, "email", "unsubscribed"),
    }  # fmt: skip
    failures: list[str] = []
    for point in sweep_points(clean):
        crashed = run_campaign(store_url, f"h{_tenant(point)}", point, HTTP_OPERATIONS, HTTP_ARMED)
        try:
            assert_same_ending(clean, crashed, point)
        except AssertionError as error:
            failures.append(f"{point}: {error}")
    assert not failures, "\n".join(failures)


def test_a_move_whose_commit_answer_was_lost_is_not_refused_when_run_again(
    store_url: str,
) -> None:
    """A connection lost as a launch (or a pause ...) committed is transient, so the engine
    runs the transaction again; it found the campaign already moved, by itself, and
    refused: "cannot launch 'hello_all': it is active", for a launch that was made."""
    source = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign hello_all { on launch { send email hello  wait 1d  send email hello } }
"""

    async def main() -> list[tuple[str, int]]:
        done: list[tuple[str, int]] = []
        async with Engine(store_url, clock=SimulatedClock(T0), sink=RecordingSink()) as engine:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(source))
            await engine.run_due()
            for name, move in [("launch", engine.launch), ("pause", engine.pause),
                               ("resume", engine.resume), ("cancel", engine.cancel)]:  # fmt: skip
                # The move's own commit, after the read of where the audit log stands.
                faults = Faults(FaultPoint("lost_commit", 2))
                faults.attach(engine.store.store.engine)
                try:
                    done.append((name, await move("hello_all")))
                finally:
                    faults.detach(engine.store.store.engine)
                assert faults.fired
                if name == "launch":
                    await engine.run_due()  # the first hello goes; everyone waits a day
            (row,) = await engine.status()
            assert row["status"] == "cancelled" and row["enrollments"] == {"cancelled": 6}
        return done

    assert trio.run(main) == [("launch", 6), ("pause", 6), ("resume", 6), ("cancel", 6)]
