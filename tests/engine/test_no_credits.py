"""A provider out of credit pauses the campaigns whose sends it refused: the sends wait (not
failed, not lost), `status` says why and what to do, and a resume after the top-up sends
each once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from sqlalchemy import select, update

from cadence.adapters.base import NO_CREDITS_WAIT
from cadence.engine.clock import SimulatedClock
from cadence.engine.describe import pause_text
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage
from cadence.engine.store import Store
from cadence.engine.store.models import AuditEntry, Campaign, OutboxMessage
from cadence.engine.store.sends import NewSend, enqueue_sends
from tests.adapters.test_web_service import TOKEN, Service, _with_service
from tests.engine import webhook_payloads as wp
from tests.engine.test_runtime import T0, campaigns
from tests.engine.test_webhooks import log_outcomes

SOURCE = """
template first email { subject "First" body "x" }
template second email { subject "Second" body "x" }
campaign drip { on launch { send email first  wait 1d  send email second } }
"""
PEOPLE = [{"id": "ana", "email": "ana@example.test"}, {"id": "bo", "email": "bo@example.test"}]
REFUSAL = "Brevo 402 not_enough_credits: You don't have enough credit to send"


KEY_REFUSAL = "Brevo 401 unauthorized: Key not found"


@dataclass
class BrokeSink:
    """Brevo with a spent balance (or a revoked key, `refusal`) until `topped_up`: every
    send refused for the account."""

    topped_up: bool = False
    delivered: list[tuple[str, str | None]] = field(default_factory=list)
    refusal: tuple[str, str] = ("no_credits", REFUSAL)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        if self.topped_up:
            self.delivered += [(m.contact_id, m.template) for m in messages]
            return [DeliveryResult(m.outbox_id, True, "brevo", f"id-{m.outbox_id}")
                    for m in messages]  # fmt: skip
        retry = T0 + dt.timedelta(minutes=5)
        return [
            DeliveryResult(m.outbox_id, False, "brevo", error=self.refusal[1], retry_at=retry,
                           account_refused=self.refusal[0])
            for m in messages
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("refusal", "says"),
    [
        (("no_credits", REFUSAL), "brevo account has no credit left for email"),
        # A revoked or rotated key: every send was failed for good, whole campaigns lost.
        (("key_refused", KEY_REFUSAL), "brevo refused Cadence's API key or login for email"),
    ],
    ids=["no_credits", "key_refused"],
)
def test_no_credit_pauses_the_campaign_and_a_resume_after_the_top_up_sends_each_once(
    store_url: str, refusal: tuple[str, str], says: str
) -> None:
    sink = BrokeSink(refusal=refusal)

    async def main() -> None:
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(SOURCE))
            await engine.launch("drip")
            await engine.run_until(T0 + dt.timedelta(days=3))
            (row,) = await engine.status()
            assert row["status"] == "paused" and row["pause"]["reason"] == refusal[0]
            said = pause_text(row["pause"])
            assert says in said and refusal[1] in said
            assert "cadence resume" in said and sink.delivered == []

            sink.topped_up = True
            await engine.resume("drip")
            await engine.run_until(T0 + dt.timedelta(days=5))

    trio.run(main)
    assert sorted(sink.delivered) == [
        ("ana", "first"), ("ana", "second"), ("bo", "first"), ("bo", "second"),
    ]  # fmt: skip
    with Store.open(store_url) as store, store.session() as session:
        statuses = session.scalars(select(OutboxMessage.status)).all()
    assert sorted(statuses) == ["sent"] * 4


TEXTS = """
template text sms "Hi. Reply STOP to opt out."
template later sms "Still there?"
campaign texts { on launch { send sms text  wait 1d  send sms later } }
campaign once { on launch { send sms text } }
"""
PHONES = [
    {"id": f"c{i}", "phone": f"+49151000000{i}", "attributes": {"sms_opt_in": True}} for i in (1, 2)
]
CREDIT_REFUSAL = "Infobip reports REJECTED_NOT_ENOUGH_CREDITS: Not enough credits"
ENROUTE = {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE",
           "description": "Message sent to next instance"}  # fmt: skip


def _outbox(store_url: str) -> list[tuple[Any, ...]]:
    """(template, contact, status) of every send, sorted."""
    wanted = select(OutboxMessage.template, OutboxMessage.contact_id, OutboxMessage.status)
    with Store.open(store_url) as store, store.session() as session:
        return sorted(tuple(row) for row in session.execute(wanted))


@pytest.mark.parametrize("campaign", ["texts", "once"])
def test_a_delivery_report_refusing_for_credit_pauses_and_the_send_goes_once_after_resume(
    store_url: str, campaign: str
) -> None:
    """Infobip took the SMS, then its balance ran out before it went out: its delivery
    report says REJECTED_NOT_ENOUGH_CREDITS. The send is held, not failed; its campaign is
    paused with Infobip's words (a one-step campaign that had completed too); after the
    top-up and `resume` the message goes again (the lookup finds it refused), once."""

    async def body(service: Service) -> None:
        engine, client, infobip = service.engine, service.client, service.standins.infobip
        await engine.upsert_contacts(PHONES)
        await engine.deploy(campaigns(TEXTS))
        await engine.launch(campaign)
        await engine.run_due()
        refused = next(m for m in infobip.messages if m.to == "491510000001")
        report = {"results": [infobip.refuse_for_credit(refused.message_id)]}
        # Infobip may report the message on its way (PENDING) before it refuses it: that
        # report is about the message refused, not about the one a resume sends.
        on_its_way = {**report["results"][0], "status": ENROUTE, "doneAt": refused.sent_at}
        posted = await client.post(
            "/webhooks/infobip", params={"token": TOKEN}, json={"results": [on_its_way]}
        )
        assert posted.json()["logged"] == 1
        for redelivery in (False, True):
            posted = await client.post("/webhooks/infobip", params={"token": TOKEN}, json=report)
            assert posted.status_code == 200, posted.text
            said = posted.json()
            assert (said["matched"], said["unmatched"], said["duplicates"]) == (1, [], redelivery)

        (row,) = [r for r in await engine.status() if r["name"] == campaign]
        assert row["status"] == "paused" and row["pause"]["reason"] == "no_credits"
        words = pause_text(row["pause"])
        assert "infobip account has no credit left for sms" in words and CREDIT_REFUSAL in words
        # Only the one-step campaign had completed when the report came: its pause says so.
        assert ("after it had completed" in words) == (campaign == "once")
        (counted,) = [r for r in await engine.report([campaign])]
        assert (counted.by_template["text"].sent, counted.failed) == (1, {})
        assert "failed" not in [outcome for _, outcome, _ in log_outcomes(store_url)]

        # Paused: a day on, nothing more goes, the held send neither.
        service.clock.advance_to(T0 + dt.timedelta(days=2))
        await engine.run_due()
        assert len(infobip.messages) == 1

        await engine.resume(campaign)
        await engine.run_due()
        again = [m for m in infobip.messages if m.message_id == refused.message_id]
        assert [(m.to, m.text) for m in again] == [(refused.to, refused.text)]
        again = [m for m in infobip.messages if m.message_id == refused.message_id]
        assert [(m.to, m.text) for m in again] == [(refused.to, refused.text)]
        service.clock.advance_to(T0 + dt.timedelta(days=4))
        await engine.run_due()
        # The report of the refusal, posted again after the message went: nothing changes.
        posted = await client.post("/webhooks/infobip", params={"token": TOKEN}, json=report)
        assert posted.json()["duplicates"] == 1
        (row,) = [r for r in await engine.status() if r["name"] == campaign]
        assert row["status"] in ("active", "completed")
        assert set(infobip.deliveries().values()) == {1} and infobip.refused == {}

    trio.run(_with_service, store_url, body)
    steps = [("text", "c1", "sent"), ("text", "c2", "sent")]
    if campaign == "texts":
        steps += [("later", "c1", "sent"), ("later", "c2", "sent")]
    assert _outbox(store_url) == sorted(steps)
    # The audit tells what happened: a completed campaign reopened by the late refusal is
    # paused saying so, resumed, and completes again (`texts` completes once, at the end).
    moves = _audit_moves(store_url, campaign)
    if campaign == "once":
        assert moves == [
            ("launch", None), ("complete", None), ("pause", "completed"), ("resume", None),
            ("complete", None),
        ]  # fmt: skip
    else:
        assert moves == [("launch", None), ("pause", None), ("resume", None), ("complete", None)]


def _audit_moves(store_url: str, campaign: str) -> list[tuple[str, str | None]]:
    """The campaign's lifecycle audit lines in order: (action, what a pause reopened)."""
    wanted = (
        select(AuditEntry.action, AuditEntry.details)
        .where(AuditEntry.subject_id == campaign, AuditEntry.action != "deploy")
        .order_by(AuditEntry.id)
    )
    with Store.open(store_url) as store, store.session() as session:
        return [(action, details.get("reopened")) for action, details in session.execute(wanted)]


def test_a_credit_refusal_of_a_cancelled_campaign_s_send_cancels_it(store_url: str) -> None:
    """A campaign cancelled since its SMS went: the refusal neither pauses it (cancelled is
    for good) nor holds the send for a resume that cannot come; the send is cancelled,
    and nothing goes again."""

    async def body(service: Service) -> None:
        engine, client, infobip = service.engine, service.client, service.standins.infobip
        await engine.upsert_contacts(PHONES[:1])
        await engine.deploy(campaigns(TEXTS))
        await engine.launch("texts")
        await engine.run_due()
        await engine.cancel("texts")
        (refused,) = infobip.messages
        report = {"results": [infobip.refuse_for_credit(refused.message_id)]}
        posted = await client.post("/webhooks/infobip", params={"token": TOKEN}, json=report)
        assert posted.json()["matched"] == 1
        (row,) = [r for r in await engine.status() if r["name"] == "texts"]
        assert row["status"] == "cancelled" and row["pause"] is None
        service.clock.advance_to(T0 + dt.timedelta(days=3))
        await engine.run_due()
        assert infobip.messages == [] and infobip.deliveries() == {}  # not sent again

    trio.run(_with_service, store_url, body)
    assert _outbox(store_url) == [("text", "c1", "cancelled")]


def test_a_credit_refusal_reported_before_the_answer_is_recorded_holds_the_send(
    store_url: str,
) -> None:
    """Infobip's report can come while the engine still waits for the send's answer: the
    send is held all the same, and the answer that comes after records nothing."""

    async def body(service: Service) -> None:
        engine, client, infobip = service.engine, service.client, service.standins.infobip
        await engine.upsert_contacts(PHONES[:1])
        await engine.deploy(campaigns(TEXTS))
        await engine.launch("once")
        infobip.faults.add("slow", delay=1.0)  # Infobip takes the message, answers late
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run_due)
            while not infobip.messages:
                await trio.sleep(0.01)
            report = {"results": [infobip.refuse_for_credit(infobip.messages[0].message_id)]}
            posted = await client.post("/webhooks/infobip", params={"token": TOKEN}, json=report)
            assert (posted.json()["matched"], posted.json()["logged"]) == (1, 1)
        (row,) = [r for r in await engine.status() if r["name"] == "once"]
        assert row["status"] == "paused" and CREDIT_REFUSAL in row["pause"]["error"]
        assert _outbox(store_url) == [("text", "c1", "pending")]

        await engine.resume("once")
        await engine.run_due()
        assert list(infobip.deliveries().values()) == [1]

    trio.run(_with_service, store_url, body)
    assert _outbox(store_url) == [("text", "c1", "sent")]


@dataclass
class CampaignlessSink:
    """Infobip for an embedding program's own sends: refuses for the account's credit in
    its answer while `answer_refused`; else takes each send, with Infobip's messageId."""

    answer_refused: bool = False
    attempts: list[OutgoingMessage] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        self.attempts += messages
        if self.answer_refused:
            retry = T0 + dt.timedelta(minutes=5)
            return [
                DeliveryResult(m.outbox_id, False, "infobip", error=CREDIT_REFUSAL,
                               retry_at=retry, account_refused="no_credits")
                for m in messages
            ]  # fmt: skip
        return [
            DeliveryResult(m.outbox_id, True, "infobip", wp.infobip_message_id(m)) for m in messages
        ]


def _outbox_state(store_url: str) -> list[tuple[Any, ...]]:
    """(status, next attempt, error) of every send."""
    wanted = select(OutboxMessage.status, OutboxMessage.next_attempt_at, OutboxMessage.error)
    with Store.open(store_url) as store, store.session() as session:
        return [tuple(row) for row in session.execute(wanted)]


@pytest.mark.parametrize("refused_in", ["answer", "report"])
def test_a_send_of_no_campaign_refused_for_the_account_waits_and_goes_once(
    store_url: str, refused_in: str
) -> None:
    """A send a program put in the outbox itself (`sends.enqueue_sends`, no campaign
    version) refused for credit, in the answer or in a later delivery report: no campaign
    to pause, so it waits for the provider's next probe (`NO_CREDITS_WAIT`) and then goes,
    once; it is neither failed nor lost, and nothing is paused."""
    sink = CampaignlessSink(answer_refused=refused_in == "answer")
    clock = SimulatedClock(T0)
    probe = T0 + dt.timedelta(seconds=NO_CREDITS_WAIT)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(PHONES[:1])
            await engine.deploy(campaigns(TEXTS))  # campaigns there, none the send's
            with Store.open(store_url) as store, store.session() as session:
                enqueue_sends(session, "default", [NewSend("own-1", "c1", "sms", "text")], now=T0)
            await engine.run_due()
            assert len(sink.attempts) == 1
            if refused_in == "report":
                (sent,) = sink.attempts
                refusal = wp.infobip_status(
                    sent, T0, to="491510000001", group="REJECTED",
                    name="REJECTED_NOT_ENOUGH_CREDITS", description="Not enough credits",
                )  # fmt: skip
                for _ in range(2):  # delivered twice: held once
                    report = await engine.ingest_webhook("infobip", wp.results(refusal))
                    assert report.matched == 1 and report.unmatched == []
            (held,) = _outbox_state(store_url)
            due = probe if refused_in == "report" else T0 + dt.timedelta(minutes=5)
            assert held == ("pending", due, CREDIT_REFUSAL)
            assert [r["status"] for r in await engine.status()] == ["draft", "draft"]

            clock.advance_to(due - dt.timedelta(seconds=1))
            await engine.run_due()
            assert len(sink.attempts) == 1  # waits for the probe
            sink.answer_refused = False
            clock.advance_to(due)
            await engine.run_due()
            clock.advance_to(due + dt.timedelta(days=1))
            await engine.run_due()

    trio.run(main)
    assert [m.idempotency_key for m in sink.attempts] == ["own-1", "own-1"]
    assert [row[0] for row in _outbox_state(store_url)] == ["sent"]
    with Store.open(store_url) as store, store.session() as session:
        pauses = session.scalars(select(AuditEntry.id).where(AuditEntry.action == "pause"))
        assert list(pauses) == []


ONCE = """
template first email { subject "First" body "x" }
campaign once { on launch { send email first } }
"""


@dataclass
class FlakyThenBrokeSink(BrokeSink):
    """`BrokeSink` whose first answer is a passing fault (a retry in five minutes): the
    refusal for the account comes in the retry's answer."""

    answers: int = 0

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        self.answers += 1
        if self.answers > 1:
            return await super().deliver(messages)
        retry = T0 + dt.timedelta(minutes=5)
        return [DeliveryResult(m.outbox_id, False, "brevo", error="Brevo 503", retry_at=retry)
                for m in messages]  # fmt: skip


@pytest.mark.parametrize(
    ("refusal", "completed_before"),
    [
        (("no_credits", REFUSAL), False),
        (("key_refused", KEY_REFUSAL), False),
        # A store whose campaign completed with its send still waiting for a retry, as one
        # did before a waiting send kept its campaign open.
        (("no_credits", REFUSAL), True),
    ],
    ids=["no_credits", "key_refused", "completed_before"],
)
def test_a_retry_refused_for_the_account_in_its_answer_pauses_and_goes_once_after_resume(
    store_url: str, refusal: tuple[str, str], completed_before: bool
) -> None:
    """A one-step campaign's send failed for a moment and waits for its retry: the campaign
    is not completed while it waits. The retry's answer refuses it for the account: the
    campaign is paused with the provider's words, as a delivery report's refusal pauses it
    (and reopened, saying so, had it completed); after `resume` the send goes, once."""
    sink = FlakyThenBrokeSink(refusal=refusal)
    clock = SimulatedClock(T0)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE[:1])
            await engine.deploy(campaigns(ONCE))
            await engine.launch("once")
            await engine.run_due()
            (row,) = await engine.status()
            assert (sink.answers, row["status"]) == (1, "active")
            if completed_before:
                with Store.open(store_url) as store, store.session() as session:
                    session.execute(update(Campaign).values(status="completed"))
                    session.add(AuditEntry(
                        tenant_id="default", actor="engine", action="complete",
                        subject_type="campaign",
                        subject_id="once", details={}, at=T0,
                    ))  # fmt: skip

            clock.advance_to(T0 + dt.timedelta(minutes=5))
            await engine.run_due()
            (row,) = await engine.status()
            assert sink.answers == 2
            assert row["status"] == "paused" and row["pause"]["reason"] == refusal[0]
            words = pause_text(row["pause"])
            assert refusal[1] in words and "cadence resume" in words
            assert ("after it had completed" in words) == completed_before

            clock.advance_to(T0 + dt.timedelta(days=2))
            await engine.run_due()
            assert (sink.answers, sink.delivered) == (2, [])  # paused: the send waits
            sink.topped_up = True
            await engine.resume("once")
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(days=4))
            await engine.run_due()
            (row,) = await engine.status()
            assert row["status"] == "completed"

    trio.run(main)
    assert sink.delivered == [("ana", "first")]
    assert _outbox(store_url) == [("first", "ana", "sent")]
    reopened = (
        [("complete", None), ("pause", "completed")] if completed_before else [("pause", None)]
    )
    assert _audit_moves(store_url, "once") == [
        ("launch", None), *reopened, ("resume", None), ("complete", None),
    ]  # fmt: skip
