"""Provider webhooks through the engine, on both stores (cadence/engine/inbound.py).

Brevo's email events and Infobip's delivery reports, seen reports and inbound messages
become send-log outcomes and contact events that suppress, branch and decide A/B tests;
duplicates add nothing; malformed bodies and unknown sends change nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
import trio
from sqlalchemy import func, select

from cadence.adapters.inbound import InvalidWebhook
from cadence.engine.clock import SimulatedClock
from cadence.engine.inbound import WebhookReport
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import (
    AuditEntry,
    Contact,
    Event,
    OutboxMessage,
    SendLog,
    Suppression,
)
from tests.engine import webhook_payloads as wp
from tests.engine.test_bounces import PEOPLE
from tests.engine.test_runtime import T0, campaigns

DAILY = """
template note email { subject "Note" body "x" }
template text sms { body "Hi, reply STOP to opt out" }
campaign daily {
  on launch {
    send email note  send sms text  wait 1d
    send email note  send sms text  wait 1d
    send email note  send sms text  wait 1d
    send email note  send sms text  wait 1d
    send email note  send sms text
  }
}
"""
# Five emails in five days: the default cap (docs/language.md, `cap`: at most 3 emails per
# contact in any 7 days, the business rule) lets the first three through and skips the 4th
# and 5th, so a contact nothing else stops gets EMAILS emails. This used to be 5: the
# expectation predates the rule, under which a daily series without a `cap email` of its
# own is capped live too.
EMAILS = 3
EMAIL = {"p1": "p1@example.test", "p2": "p2@example.test"}
PHONE = {"p1": "491510000001", "p2": "491510000002"}

Body = Callable[[Engine, SimulatedClock, wp.ProviderSink], Awaitable[Any]]


def run(url: str, body: Body, *, with_ids: bool = True) -> Any:
    """Open an engine with a provider-like sink on a simulated clock at T0; run `body`."""
    clock = SimulatedClock(T0)
    sink = wp.ProviderSink(with_ids=with_ids)

    async def main() -> Any:
        async with Engine(url, clock=clock, sink=sink) as engine:
            return await body(engine, clock, sink)

    return trio.run(main)


def last(sink: wp.ProviderSink, contact: str, channel: str) -> OutgoingMessage:
    """The latest send to a contact on a channel."""
    return [m for m in sink.delivered if m.contact_id == contact and m.channel == channel][-1]


def counts(sink: wp.ProviderSink, contact: str) -> dict[str, int]:
    """Sends per channel to one contact."""
    return dict(Counter(m.channel for m in sink.delivered if m.contact_id == contact))


def table_counts(url: str) -> tuple[int, int, int]:
    """(events, send-log entries, suppressions) in the store."""
    with Store.open(url) as store, store.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Event)) or 0,
            session.scalar(select(func.count()).select_from(SendLog)) or 0,
            session.scalar(select(func.count()).select_from(Suppression)) or 0,
        )


def suppressions(url: str) -> set[tuple[str, str | None, str | None, str]]:
    with Store.open(url) as store, store.session() as session:
        rows = session.execute(
            select(Suppression.channel, Suppression.address, Suppression.contact_id,
                   Suppression.reason)
        ).all()  # fmt: skip
    return {(r[0], r[1], r[2], r[3]) for r in rows}


def events_named(url: str, name: str) -> list[tuple[str | None, dict[str, Any]]]:
    with Store.open(url) as store, store.session() as session:
        rows = session.execute(
            select(Event.contact_id, Event.properties).where(Event.name == name).order_by(Event.id)
        ).all()
    return [(r[0], dict(r[1] or {})) for r in rows]


def log_outcomes(url: str) -> list[tuple[str, str, str | None]]:
    """(contact, outcome, provider) of the send-log entries that providers reported."""
    with Store.open(url) as store, store.session() as session:
        rows = session.execute(
            select(SendLog.contact_id, SendLog.outcome, SendLog.provider, SendLog.detail).order_by(
                SendLog.id
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows if "dedupe" in (r[3] or {})]


def daily(
    url: str,
    hooks: list[tuple[float, Callable[[wp.ProviderSink, dt.datetime], tuple[str, Any]]]],
    *,
    with_ids: bool = True,
) -> tuple[wp.ProviderSink, list[WebhookReport]]:
    """Run DAILY to PEOPLE for five days; at each (hours, hook) ingest what the hook builds."""

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(DAILY))
        await engine.launch("daily")
        reports = []
        for hours, hook in hooks:
            await engine.run_until(T0 + dt.timedelta(hours=hours))
            provider, payload = hook(sink, clock.now())
            reports.append(await engine.ingest_webhook(provider, payload))
        await engine.run_until(T0 + dt.timedelta(days=5))
        return sink, reports

    result: tuple[wp.ProviderSink, list[WebhookReport]] = run(url, body, with_ids=with_ids)
    # The other contact is never affected.
    assert counts(result[0], "p2") == {"email": EMAILS, "sms": 5}
    return result


def brevo(event: str, **extra: Any) -> Callable[[wp.ProviderSink, dt.datetime], tuple[str, Any]]:
    """A hook: Brevo reports `event` about p1's latest email."""

    def hook(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        message = last(sink, "p1", "email")
        return "brevo", wp.brevo_event(event, message, now, email=EMAIL["p1"], **extra)

    return hook


# ---------------------------------------------------------------------------- Brevo


def test_a_brevo_hard_bounce_suppresses_the_address_and_the_next_email_is_skipped(
    store_url: str,
) -> None:
    sink, (report,) = daily(store_url, [(2, brevo("hard_bounce"))])
    assert (report.matched, report.logged, report.events, report.unmatched) == (1, 1, 1, [])
    assert counts(sink, "p1") == {"email": 1, "sms": 5}
    assert suppressions(store_url) == {("email", "p1@example.test", None, "bounced")}
    ((contact, props),) = events_named(store_url, "bounced")
    first = sink.delivered[0]
    assert contact == "p1" and props["type"] == "hard" and props["channel"] == "email"
    assert props["template"] == "note" and props["campaign"] == "daily"
    assert props["send"] == last(sink, "p1", "email").idempotency_key
    assert props["provider_message_id"] == wp.brevo_message_id(last(sink, "p1", "email"))
    assert "does not exist" in props["reason"] and first.contact_id in ("p1", "p2")
    assert ("p1", "bounced", "brevo") in log_outcomes(store_url)


def test_three_brevo_soft_bounces_suppress_matched_by_x_mailin_custom(store_url: str) -> None:
    # No message ids recorded, none in the reports: only the outbox id Cadence sent in
    # X-Mailin-custom names the send.
    soft = brevo("soft_bounce", message_id=False)
    sink, reports = daily(store_url, [(2, soft), (26, soft), (50, soft)], with_ids=False)
    assert [r.matched for r in reports] == [1, 1, 1]
    assert counts(sink, "p1") == {"email": 3, "sms": 5}
    assert suppressions(store_url) == {("email", "p1@example.test", None, "soft bounces")}
    assert [p["type"] for _, p in events_named(store_url, "bounced")] == ["soft"] * 3
    assert [o for _, o, _ in log_outcomes(store_url)] == ["soft_bounced"] * 3


def test_two_brevo_soft_bounces_suppress_nothing(store_url: str) -> None:
    soft = brevo("soft_bounce")
    sink, _ = daily(store_url, [(2, soft), (26, soft)])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}
    assert suppressions(store_url) == set()


def test_a_brevo_spam_complaint_suppresses_the_person_on_email(store_url: str) -> None:
    sink, _ = daily(store_url, [(2, brevo("spam"))])
    assert counts(sink, "p1") == {"email": 1, "sms": 5}
    assert suppressions(store_url) == {("email", None, "p1", "complained")}
    assert [c for c, _ in events_named(store_url, "complained")] == ["p1"]


def test_a_brevo_complaint_event_suppresses_the_person_on_email(store_url: str) -> None:
    """Brevo reports a complaint forwarded by the mailbox provider as `complaint`."""
    sink, (report,) = daily(store_url, [(3, brevo("complaint", tags=["daily"]))])
    assert (report.matched, report.events, report.ignored) == (1, 1, [])
    assert counts(sink, "p1") == {"email": 1, "sms": 5}
    assert suppressions(store_url) == {("email", None, "p1", "complained")}
    ((contact, props),) = events_named(store_url, "complained")
    assert contact == "p1" and props["provider_event"] == "complaint"


def test_a_brevo_unsubscribe_stops_email_only(store_url: str) -> None:
    sink, _ = daily(store_url, [(2, brevo("unsubscribed"))])
    assert counts(sink, "p1") == {"email": 1, "sms": 5}
    assert suppressions(store_url) == {("email", None, "p1", "unsubscribed")}


def test_deferred_and_delivered_are_logged_without_stopping_anything(store_url: str) -> None:
    sink, reports = daily(store_url, [(1, brevo("deferred")), (2, brevo("delivered"))])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}
    assert [(r.logged, r.events) for r in reports] == [(1, 0), (1, 1)]
    assert [o for _, o, _ in log_outcomes(store_url)] == ["deferred", "delivered"]
    assert [c for c, _ in events_named(store_url, "delivered")] == ["p1"]


def test_a_batched_brevo_body_and_its_duplicate_ingest_once(store_url: str) -> None:
    def hook(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        message = last(sink, "p1", "email")
        later = now + dt.timedelta(minutes=5)
        return "brevo", [
            wp.brevo_event("delivered", message, now, email=EMAIL["p1"]),
            # Brevo reports the first open twice, as unique and plain: one open.
            wp.brevo_event("unique_opened", message, later, email=EMAIL["p1"]),
            wp.brevo_event("opened", message, later, email=EMAIL["p1"]),
            wp.brevo_event("click", message, later, email=EMAIL["p1"], link="https://acme.test/a"),
        ]

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(DAILY))
        await engine.launch("daily")
        await engine.run_until(T0 + dt.timedelta(hours=1))
        _, payload = hook(sink, clock.now())
        first = await engine.ingest_webhook("brevo", payload)
        before = table_counts(store_url)
        again = await engine.ingest_webhook("brevo", json.loads(json.dumps(payload)))
        return first, again, before

    first, again, before = run(store_url, body)
    assert (first.reports, first.matched, first.events, first.logged) == (4, 4, 3, 3)
    assert first.duplicates == 1  # the plain report of the open already counted
    assert (again.events, again.logged, again.duplicates) == (0, 0, 4)
    assert table_counts(store_url) == before
    ((_, click),) = events_named(store_url, "clicked")
    assert click["url"] == "https://acme.test/a" and click["template"] == "note"


# ---------------------------------------------------------------------------- Infobip


def infobip(group: str, name: str, description: str, error: tuple[str, str, bool]) -> Any:
    """A hook: Infobip reports on p1's latest SMS."""

    def hook(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        message = last(sink, "p1", "sms")
        entry = wp.infobip_status(
            message, now, to=PHONE["p1"], group=group, name=name, description=description,
            error=error,
        )  # fmt: skip
        return "infobip", wp.results(entry)

    return hook


def test_an_infobip_undeliverable_report_suppresses_the_number(store_url: str) -> None:
    hook = infobip(
        "UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "Message sent not delivered",
        ("EC_UNKNOWN_SUBSCRIBER", "Unknown Subscriber", True),
    )  # fmt: skip
    sink, (report,) = daily(store_url, [(2, hook)])
    assert (report.matched, report.events, report.logged) == (1, 1, 1)
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert suppressions(store_url) == {("sms", "+491510000001", None, "bounced")}
    ((_, props),) = events_named(store_url, "bounced")
    assert props["type"] == "hard" and props["channel"] == "sms" and props["template"] == "text"
    assert "EC_UNKNOWN_SUBSCRIBER" in props["reason"]
    assert log_outcomes(store_url) == [("p1", "bounced", "infobip")]


@pytest.mark.parametrize("name", ["REJECTED_DESTINATION", "REJECTED_PREFIX_MISSING"])
def test_an_infobip_rejection_of_the_number_itself_suppresses_it(store_url: str, name: str) -> None:
    # The number matches no operator: every later SMS would be refused the same way.
    # Infobip's error on such a report need not say `permanent`.
    hook = infobip("REJECTED", name, "Invalid destination address", ("NO_ERROR", "No Error", False))
    sink, (report,) = daily(store_url, [(2, hook)])
    assert (report.matched, report.events) == (1, 1)
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert suppressions(store_url) == {("sms", "+491510000001", None, "bounced")}
    ((_, props),) = events_named(store_url, "bounced")
    assert props["type"] == "hard" and name in props["reason"]
    assert log_outcomes(store_url) == [("p1", "bounced", "infobip")]


def test_an_infobip_absent_subscriber_is_a_soft_bounce(store_url: str) -> None:
    hook = infobip(
        "UNDELIVERABLE", "UNDELIVERABLE_REJECTED_OPERATOR", "Message rejected by operator",
        ("EC_ABSENT_SUBSCRIBER", "Absent Subscriber", False),
    )  # fmt: skip
    sink, _ = daily(store_url, [(2, hook)])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}
    assert [p["type"] for _, p in events_named(store_url, "bounced")] == ["soft"]


def test_an_infobip_undeliverable_report_with_no_error_entry_suppresses_the_number(
    store_url: str,
) -> None:
    # Infobip's `error` is NO_ERROR (group OK, id 0, permanent false): no soft verdict.
    hook = infobip(
        "UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "Message sent not delivered",
        ("NO_ERROR", "No Error", False),
    )  # fmt: skip
    sink, _ = daily(store_url, [(2, hook)])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert suppressions(store_url) == {("sms", "+491510000001", None, "bounced")}
    ((_, props),) = events_named(store_url, "bounced")
    assert props["type"] == "hard" and "NO_ERROR" not in props["reason"]


def test_soft_bounces_count_per_channel(store_url: str) -> None:
    # Two full mailboxes and one SMS that expired are not three soft bounces on either.
    expired = infobip(
        "EXPIRED", "EXPIRED_EXPIRED", "Message expired",
        ("EC_ABSENT_SUBSCRIBER", "Absent Subscriber", False),
    )  # fmt: skip
    soft = brevo("soft_bounce")
    sink, reports = daily(store_url, [(2, soft), (26, soft), (50, expired)])
    assert [r.events for r in reports] == [1, 1, 1]
    assert [p["type"] for _, p in events_named(store_url, "bounced")] == ["soft"] * 3
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}
    assert suppressions(store_url) == set()


def test_infobip_delivered_and_rejected_reports(store_url: str) -> None:
    delivered = infobip(
        "DELIVERED", "DELIVERED_TO_HANDSET", "Message delivered to handset",
        ("NO_ERROR", "No Error", False),
    )  # fmt: skip
    rejected = infobip(
        "REJECTED", "REJECTED_SENDER", "Sender ID blocklisted",
        ("NO_ERROR", "No Error", False),
    )  # fmt: skip
    sink, reports = daily(store_url, [(2, delivered), (26, rejected)], with_ids=False)
    assert [r.matched for r in reports] == [1, 1]
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}  # a refusal is not the person's doing
    assert [o for _, o, _ in log_outcomes(store_url)] == ["delivered", "failed"]
    assert [c for c, _ in events_named(store_url, "delivered")] == ["p1"]
    assert suppressions(store_url) == set()


def test_a_brevo_error_and_an_infobip_rejection_are_sends_that_failed(store_url: str) -> None:
    """Brevo's `error` ("an error occurred during the mail transfer") and Infobip's REJECTED
    are the provider's word that the message went nowhere: not delivered, in the report as
    for `delivered(T)`; not a bounce either, so the address stays (not the person's doing)."""
    rejected = infobip(
        "REJECTED", "REJECTED_SENDER", "Sender ID blocklisted",
        ("NO_ERROR", "No Error", False),
    )  # fmt: skip
    sink, reports = daily(store_url, [(2, brevo("error")), (26, rejected)])
    assert [(r.matched, r.events) for r in reports] == [(1, 0), (1, 0)]
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}
    assert [o for _, o, _ in log_outcomes(store_url)] == ["failed", "failed"]
    assert suppressions(store_url) == set()

    async def report() -> Any:
        async with Engine(store_url, clock=SimulatedClock(T0 + dt.timedelta(days=5))) as engine:
            return await engine.report()

    (daily_report,) = trio.run(report)
    note, text = daily_report.by_template["note"], daily_report.by_template["text"]
    assert (note.sent, note.bounced, note.delivered) == (2 * EMAILS, 0, 2 * EMAILS - 1)
    assert (text.sent, text.bounced, text.delivered) == (10, 0, 9)


def test_an_inbound_stop_sms_unsubscribes_on_sms_and_a_reply_is_recorded(store_url: str) -> None:
    def stop(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        return "infobip", wp.results(
            wp.infobip_sms_in("+491510000001", "Stop", now, "817790313235066447"),
            wp.infobip_sms_in("+491510000002", "Thanks, see you", now, "817790313235066448"),
        )

    sink, (report,) = daily(store_url, [(2, stop)])
    assert (report.matched, report.unmatched) == (2, [])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert ("sms", None, "p1", "unsubscribed") in suppressions(store_url)
    assert {c for _, _, c, _ in suppressions(store_url)} == {"p1"}
    replies = events_named(store_url, "replied")
    assert [(c, p["text"], p["channel"]) for c, p in replies] == [
        ("p1", "Stop", "sms"), ("p2", "Thanks, see you", "sms"),
    ]  # fmt: skip
    # A reply is attributed to the latest SMS, so `replied(text)` holds.
    assert all(p["template"] == "text" and p["campaign"] == "daily" for _, p in replies)
    assert [o for _, o, _ in log_outcomes(store_url)] == ["replied", "replied"]


def test_an_opt_out_after_the_keyword_the_number_routes_by_unsubscribes_on_sms(
    store_url: str,
) -> None:
    """A number shared by keyword: Infobip reports `ACME STOP` with keyword ACME and
    cleanText STOP, the person's own words."""

    def reply(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        return "infobip", wp.results(
            wp.infobip_sms_in("+491510000001", "ACME STOP", now, "817790313235066450"),
            wp.infobip_sms_in("+491510000002", "ACME stop by at six?", now, "817790313235066451"),
        )

    sink, (report,) = daily(store_url, [(2, reply)])
    assert report.matched == 2
    assert suppressions(store_url) == {("sms", None, "p1", "unsubscribed")}
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert counts(sink, "p2") == {"email": EMAILS, "sms": 5}
    replies = events_named(store_url, "replied")
    assert [(p["text"], p["keyword"], p["clean_text"]) for _, p in replies] == [
        ("ACME STOP", "ACME", "STOP"), ("ACME stop by at six?", "ACME", "stop by at six?"),
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["Opt-Out", "ARRÊT"])
def test_an_inbound_opt_out_word_in_another_spelling_unsubscribes_on_sms(
    store_url: str, text: str
) -> None:
    def reply(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        entry = wp.infobip_sms_in("+491510000001", text, now, "817790313235066449")
        entry["keyword"] = ""  # no keyword set up for it on the number
        return "infobip", wp.results(entry)

    sink, _ = daily(store_url, [(2, reply)])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert suppressions(store_url) == {("sms", None, "p1", "unsubscribed")}


def test_an_inbound_stop_from_a_number_with_its_00_prefix_finds_its_sender(
    store_url: str,
) -> None:
    """`0049...` is +49...: the STOP was reported unmatched, and the texts went on."""

    def reply(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        entry = wp.infobip_sms_in("+491510000001", "STOP", now, "817790313235066452")
        entry["from"] = "00 49 151 0000001"
        return "infobip", wp.results(entry)

    sink, (report,) = daily(store_url, [(2, reply)])
    assert (report.matched, report.unmatched) == (1, [])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert suppressions(store_url) == {("sms", None, "p1", "unsubscribed")}


def test_a_reply_with_characters_no_store_keeps_is_stored_cleaned_not_lost(
    store_url: str,
) -> None:
    """A NUL in a reply's text failed the whole webhook on PostgreSQL (the provider sends
    it again and again, and a STOP among them was lost); so did a lone surrogate escape and
    an integer beyond 64 bits, on both stores. They are stored cleaned: the STOP counts."""

    def reply(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        stop = wp.infobip_sms_in("+491510000001", "STOP\x00", now, "817790313235066453")
        stop["smsCount"] = 2**70
        other = wp.infobip_sms_in("+491510000002", "ok \ud800", now, "817790313235066454")
        return "infobip", json.dumps(wp.results(stop, other))

    sink, (report,) = daily(store_url, [(2, reply)])
    assert (report.matched, report.unmatched) == (2, [])
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 1}
    assert suppressions(store_url) == {("sms", None, "p1", "unsubscribed")}
    replies = events_named(store_url, "replied")
    assert [(c, p["text"]) for c, p in replies] == [("p1", "STOP"), ("p2", "ok ?")]


def test_whatsapps_stop_promotions_button_unsubscribes_on_whatsapp_only(store_url: str) -> None:
    def button(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        entry = wp.infobip_whatsapp_in("+491510000001", "", now, "ABGGFlA5FpafAgo6EhmK")
        entry["message"] = {"type": "BUTTON", "text": "Stop promotions",
                            "payload": "Stop promotions"}  # fmt: skip
        return "infobip", wp.results(entry)

    sink, (report,) = daily(store_url, [(2, button)])
    assert report.matched == 1
    assert suppressions(store_url) == {("whatsapp", None, "p1", "unsubscribed")}
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}


def test_an_inbound_message_from_an_unknown_number_is_reported_not_guessed(
    store_url: str,
) -> None:
    def stranger(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        return "infobip", wp.results(wp.infobip_sms_in("+4917700000000", "STOP", now, "9001"))

    before: list[tuple[int, int, int]] = []

    def counted(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        before.append(table_counts(store_url))
        return stranger(sink, now)

    sink, (report,) = daily(store_url, [(2, counted)])
    assert report.matched == 0 and "no contact with number +4917700000000" in str(
        report.unmatched[0]
    )
    assert table_counts(store_url)[2] == 0 and counts(sink, "p1") == {"email": EMAILS, "sms": 5}


# ---------------------------------------------------------------------------- Brevo replies


def brevo_reply(
    sender: str, text: str, uuid_text: str, *, answering: bool = True, **extra: Any
) -> Callable[[wp.ProviderSink, dt.datetime], tuple[str, Any]]:
    """A hook: Brevo's inbound parsing posts an email from `sender`, by default one that
    answers p1's latest email (its In-Reply-To names it)."""

    def hook(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        answers = last(sink, "p1", "email") if answering else None
        item = wp.brevo_inbound_email(sender, text, now, uuid_text, answers=answers, **extra)
        return "brevo", {"items": [item]}

    return hook


def test_an_email_reply_names_the_send_it_answers_and_is_recorded(store_url: str) -> None:
    # From another address of the person's (a colleague, a second mailbox): the thread
    # names the send, so the reply is p1's all the same.
    hook = brevo_reply("assistant@example.test", "Thursday works for me.", "9b1c0a7e-reply-1")
    sink, (report,) = daily(store_url, [(2, hook)])
    assert (report.matched, report.unmatched, report.events) == (1, [], 1)
    ((contact, props),) = events_named(store_url, "replied")
    assert contact == "p1"
    assert props["text"] == "Thursday works for me." and props["subject"] == "Re: Note"
    assert (props["channel"], props["template"], props["campaign"]) == ("email", "note", "daily")
    assert log_outcomes(store_url) == [("p1", "replied", "brevo")]
    assert counts(sink, "p1") == {"email": EMAILS, "sms": 5}


def test_an_email_reply_without_a_thread_is_matched_by_address_whatever_its_case(
    store_url: str,
) -> None:
    hook = brevo_reply("P1@Example.TEST", "Sounds good", "9b1c0a7e-reply-2", answering=False)
    sink, (report,) = daily(store_url, [(26, hook)])
    assert (report.matched, report.unmatched) == (1, [])
    ((contact, props),) = events_named(store_url, "replied")
    # Attributed to p1's latest email by then (the second of day 1), so `replied(note)` holds.
    second = [m for m in sink.delivered if m.contact_id == "p1" and m.channel == "email"][1]
    assert contact == "p1" and props["template"] == "note"
    assert props["send"] == second.idempotency_key


def test_an_unsubscribe_reply_by_email_stops_email_only(store_url: str) -> None:
    sink, (report,) = daily(store_url, [(2, brevo_reply("p1@example.test", "Unsubscribe", "u-3"))])
    assert report.matched == 1
    assert suppressions(store_url) == {("email", None, "p1", "unsubscribed")}
    assert counts(sink, "p1") == {"email": 1, "sms": 5}
    (unsubscribed,) = events_named(store_url, "unsubscribed")
    assert unsubscribed[1]["channel"] == "email" and unsubscribed[1]["via"] == "reply"


def test_automatic_and_unknown_email_replies_write_nothing(store_url: str) -> None:
    def replies(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        answers = last(sink, "p1", "email")
        away = wp.brevo_inbound_email(
            "p1@example.test", "I am out of the office until Monday.", now, "auto-1",
            answers=answers, headers={"Auto-Submitted": "auto-replied"},
        )  # fmt: skip
        daemon = wp.brevo_inbound_email(
            "MAILER-DAEMON@mx.example.test", "Delivery Status Notification", now, "dsn-1"
        )
        stranger = wp.brevo_inbound_email("someone@else.test", "Who is this?", now, "who-1")
        return "brevo", {"items": [away, daemon, stranger]}

    _sink, (report,) = daily(store_url, [(2, replies)])
    assert report.ignored == [("items[0]", "automatic reply"), ("items[1]", "automatic reply")]
    assert report.matched == 0
    assert "no contact with address someone@else.test" in str(report.unmatched[0])
    assert events_named(store_url, "replied") == [] and suppressions(store_url) == set()
    assert log_outcomes(store_url) == []


def test_an_email_reply_delivered_twice_is_stored_once(store_url: str) -> None:
    hook = brevo_reply("p1@example.test", "Yes please", "twice-1")
    _sink, reports = daily(store_url, [(2, hook), (2, hook)])
    assert [(r.events, r.duplicates) for r in reports] == [(1, 0), (0, 1)]
    assert len(events_named(store_url, "replied")) == 1


ANSWERED = """
template note email { subject "Note" body "x" }
template nudge email { subject "Nudge" body "y" }
campaign sequence {
  on launch {
    send email note
    wait 2d
    if replied(note) { tag add "answered" } else { send email nudge }
  }
}
"""


def test_a_reply_by_email_takes_the_replied_branch(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(ANSWERED))
        await engine.launch("sequence")
        await engine.run_until(T0 + dt.timedelta(hours=5))
        item = wp.brevo_inbound_email(
            "p1@example.test", "Call me tomorrow", clock.now(), "branch-1",
            answers=last(sink, "p1", "email"),
        )  # fmt: skip
        await engine.ingest_webhook("brevo", {"items": [item]})
        await engine.run_until(T0 + dt.timedelta(days=3))
        return sink

    sink = run(store_url, body)
    sent = sorted((m.contact_id, m.template) for m in sink.delivered)
    assert sent == [("p1", "note"), ("p2", "note"), ("p2", "nudge")]


WHATSAPP = """
template hello_wa whatsapp { body "Hello {{ contact.first_name }}" }
template after email { subject "After" body "x" }
campaign chat {
  on launch {
    send whatsapp hello_wa
    wait 1d
    if opened(hello_wa) { send email after }
  }
}
"""


def test_whatsapp_seen_reports_count_as_opens_and_replies_are_recorded(store_url: str) -> None:
    people = [
        {"id": f"w{i}", "email": f"w{i}@example.test", "phone": f"+4915200000{i:02}",
         "first_name": f"W{i}", "attributes": {"whatsapp_opt_in": True}}
        for i in (1, 2)
    ]  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(WHATSAPP))
        await engine.launch("chat")
        await engine.run_until(T0 + dt.timedelta(hours=1))
        sent = [m for m in sink.delivered if m.channel == "whatsapp"]
        w1 = next(m for m in sent if m.contact_id == "w1")
        now = clock.now()
        report = await engine.ingest_webhook(
            "infobip",
            wp.results(
                wp.infobip_status(
                    w1, now, to="491520000001", group="DELIVERED", name="DELIVERED_TO_HANDSET",
                    description="Message delivered to handset", whatsapp=True,
                ),
                wp.infobip_seen(w1, now, to="491520000001"),
                wp.infobip_whatsapp_in("+491520000001", "Sounds good", now, "ABEGOFl3RpkoAhDG"),
            ),
        )  # fmt: skip
        await engine.run_until(T0 + dt.timedelta(days=2))
        return report, [(m.contact_id, m.template) for m in sink.delivered]

    report, delivered = run(store_url, body)
    if not any(t == "hello_wa" for _, t in delivered):
        pytest.fail(f"no WhatsApp send was made: {delivered}")
    assert (report.matched, report.events, report.unmatched) == (3, 3, [])
    assert ("w1", "after") in delivered and ("w2", "after") not in delivered
    ((_, seen),) = events_named(store_url, "opened")
    assert seen["channel"] == "whatsapp" and seen["template"] == "hello_wa"
    ((_, reply),) = events_named(store_url, "replied")
    assert reply["text"] == "Sounds good" and reply["channel"] == "whatsapp"
    # The person wrote: WhatsApp's 24-hour window is open for free-form text.
    with Store.open(store_url) as store, store.session() as session:
        windows = dict(
            session.execute(select(Contact.id, Contact.attributes).order_by(Contact.id)).all()
        )
    opened_until = T0 + dt.timedelta(hours=25)
    assert windows["w1"]["whatsapp_session_until"] == opened_until.isoformat().replace(
        "+00:00", "Z"
    )
    assert "whatsapp_session_until" not in windows["w2"]


# ---------------------------------------------------------------------------- opens, A/B

BRANCH = """
template t1 email { subject "One" body "x" }
template yes email { subject "Yes" body "x" }
template no email { subject "No" body "x" }
campaign follow {
  on launch {
    send email t1
    wait 1d
    if opened(t1) { send email yes } else { send email no }
  }
}
"""


def test_brevo_opens_and_clicks_feed_an_opened_branch(store_url: str) -> None:
    people = [{"id": f"b{i}", "email": f"b{i}@example.test"} for i in (1, 2, 3)]

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(BRANCH))
        await engine.launch("follow")
        await engine.run_until(T0 + dt.timedelta(hours=2))
        sends = {m.contact_id: m for m in sink.delivered}
        now = clock.now()
        await engine.ingest_webhook(
            "brevo",
            [
                wp.brevo_event("unique_opened", sends["b1"], now, email="b1@example.test"),
                # A click stands for the open of its message.
                wp.brevo_event("click", sends["b2"], now, email="b2@example.test",
                               link="https://acme.test/x"),
                # A privacy proxy fetching the pixel is not the person opening.
                wp.brevo_event("proxy_open", sends["b3"], now, email="b3@example.test"),
            ],
        )  # fmt: skip
        await engine.run_until(T0 + dt.timedelta(days=2))
        return {m.contact_id: m.template for m in sink.delivered if m.template != "t1"}

    assert run(store_url, body) == {"b1": "yes", "b2": "yes", "b3": "no"}


AB = """
template offer_a email { subject "A" body "<p>a</p>" }
template offer_b email { subject "B" body "<p>b</p>" }
campaign offer {
  on launch {
    split 50% test winner by opens after 4h {
      a: send email offer_a
      b: send email offer_b
    }
  }
}
"""


def test_brevo_opens_decide_an_ab_verdict(store_url: str) -> None:
    people = [{"id": f"c{i:03}", "email": f"c{i}@example.test"} for i in range(40)]

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(AB))
        await engine.launch("offer")
        await engine.run_due()
        await engine.run_due()
        tested = list(sink.delivered)
        clock.advance_to(T0 + dt.timedelta(hours=1))
        b_sends = [m for m in tested if m.variant == "b"]
        a_sends = [m for m in tested if m.variant == "a"]
        now = clock.now()
        opens = [
            wp.brevo_event("opened", m, now, email=f"c{int(m.contact_id[1:])}@example.test")
            for m in b_sends + a_sends[:1]
        ]
        report = await engine.ingest_webhook("brevo", opens)
        clock.advance_to(T0 + dt.timedelta(hours=4, minutes=1))
        await engine.run_due()
        await engine.run_due()

        def audit(store: Any) -> list[dict[str, Any]]:
            with store.session() as session:
                return list(
                    session.scalars(
                        select(AuditEntry.details).where(AuditEntry.action == "ab_winner")
                    )
                )

        after = [m.template for m in sink.delivered[len(tested) :]]
        return report, await engine.store.call(audit), len(a_sends), len(b_sends), after

    report, (verdict,), a_count, b_count, after = run(store_url, body)
    assert a_count > 1 and b_count > 1 and report.matched == b_count + 1
    assert verdict["winner"] == "b"
    assert verdict["variants"]["b"] == {**verdict["variants"]["b"], "sent": b_count,
                                        "engaged": b_count}  # fmt: skip
    assert verdict["variants"]["a"]["engaged"] == 1
    assert after and set(after) == {"offer_b"}


SCORED = """
score opens { opened(any): +1 each }
score clicks { clicked(any): +1 each }
score bare { opened: +1 each  clicked: +1 each }
template t1 email { subject "One" body "x" }
template t2 email { subject "Two" body "x" }
template once email { subject "Once" body "x" }
template twice email { subject "Twice" body "x" }
campaign scored {
  on launch {
    send email t1
    wait 1d
    send email t2
    wait 1d
    if opens = 2 and clicks = 1 and bare = 3 { send email once } else { send email twice }
  }
}
"""


def test_an_open_or_click_reported_by_cadence_and_by_brevo_scores_once(store_url: str) -> None:
    """Cadence's pixel and redirect, and Brevo's tracking, report the same open or click of
    a send: the score counts one per send (t1: opened twice and clicked, by both; t2:
    opened once, by the pixel), as the report does; so does a bare `opened`, `clicked`."""
    people = [{"id": "s1", "email": "s1@example.test"}]

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(SCORED))
        await engine.launch("scored")
        await engine.run_until(T0 + dt.timedelta(hours=2))
        (t1,) = sink.delivered
        now, email = clock.now(), "s1@example.test"
        # What the tracking service records (`_track`): the pixel, then the redirect.
        await engine.push_events(
            {"contact": "s1", "name": name, "at": now.isoformat(),
             "properties": {"send": t1.idempotency_key, **extra}}
            for name, extra in (("opened", {"via": "pixel"}), ("opened", {"via": "pixel"}),
                                ("clicked", {"url": "https://acme.test/x"}))
        )  # fmt: skip
        await engine.ingest_webhook(
            "brevo",
            [
                wp.brevo_event("unique_opened", t1, now, email=email),
                wp.brevo_event("opened", t1, now + dt.timedelta(minutes=5), email=email),
                wp.brevo_event("click", t1, now, email=email, link="https://acme.test/x"),
            ],
        )
        await engine.run_until(T0 + dt.timedelta(days=1, hours=2))
        t2 = sink.delivered[-1]
        await engine.push_event(
            {"contact": "s1", "name": "opened", "properties": {"send": t2.idempotency_key}}
        )
        await engine.run_until(T0 + dt.timedelta(days=3))
        return [m.template for m in sink.delivered]

    assert run(store_url, body) == ["t1", "t2", "once"]


# ---------------------------------------------------------------------------- bad input


def _one_send(store_url: str, payloads: list[tuple[str, Any]]) -> list[Any]:
    """Launch DAILY, then ingest each (provider, payload builder); the results or errors."""

    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(DAILY))
        await engine.launch("daily")
        await engine.run_until(T0 + dt.timedelta(hours=1))
        out: list[Any] = []
        for provider, build in payloads:
            payload = build(sink, clock.now()) if callable(build) else build
            try:
                out.append(await engine.ingest_webhook(provider, payload))
            except InvalidWebhook as exc:
                out.append(exc)
        return out

    result: list[Any] = run(store_url, body)
    return result


def good_bounce(sink: wp.ProviderSink, now: dt.datetime) -> dict[str, Any]:
    return wp.brevo_event("hard_bounce", last(sink, "p1", "email"), now, email=EMAIL["p1"])


@pytest.mark.parametrize(
    ("provider", "build", "where"),
    [
        ("brevo", lambda s, n: [good_bounce(s, n), {**good_bounce(s, n), "event": 7}], "[1].event"),
        ("brevo", lambda s, n: [good_bounce(s, n), "hard_bounce"], "[1]: expected an object"),
        ("brevo", lambda s, n: {**good_bounce(s, n), "ts_event": "soon"}, "ts_event"),
        ("brevo", lambda s, n: {k: v for k, v in good_bounce(s, n).items() if k != "event"},
         "event: missing"),
        ("brevo", lambda s, n: {k: v for k, v in good_bounce(s, n).items()
                                if k not in ("ts", "ts_event", "ts_epoch", "date")}, "no time"),
        ("brevo", lambda s, n: 42, "$: expected an event object or a list, got number"),
        ("brevo", lambda s, n: "hard_bounce", "$: not JSON"),
        ("infobip", lambda s, n: {"results": {"messageId": "x"}}, "results: expected an array"),
        ("infobip", lambda s, n: {"reports": []}, "results: missing"),
        ("infobip", lambda s, n: wp.results(
            wp.infobip_status(last(s, "p1", "sms"), n, to=PHONE["p1"], group="UNDELIVERABLE",
                              name="UNDELIVERABLE_NOT_DELIVERED", description="x",
                              error=("EC_UNKNOWN_SUBSCRIBER", "Unknown", True)),
            {"messageId": "m2", "status": "DELIVERED", "doneAt": "2026-12-01T10:00:00.000+0000"},
        ), "results[1].status: expected an object"),
        ("infobip", lambda s, n: wp.results(
            {"messageId": "m3", "status": {"groupName": "DELIVERED"}, "doneAt": "yesterday"}),
         "results[0].doneAt: 'yesterday' is not a date-time"),
        ("infobip", lambda s, n: wp.results({"messageId": "m4", "to": "49151"}),
         "results[0]: not a delivery report"),
        ("infobip", lambda s, n: wp.results(
            {**wp.infobip_status(last(s, "p1", "sms"), n, to=PHONE["p1"], group="DELIVERED",
                                 name="DELIVERED_TO_HANDSET", description="delivered"),
             "doneAt": None, "sentAt": None}),
         "results[0]: no time: neither doneAt nor sentAt"),
        ("infobip", lambda s, n: wp.results(
            {**wp.infobip_sms_in("+491510000001", "STOP", n, "m5"), "from": None}),
         "results[0].from: missing"),
        ("sendgrid", lambda s, n: [], "unknown provider"),
    ],
)  # fmt: skip
def test_a_malformed_body_names_the_field_and_changes_nothing(
    store_url: str, provider: str, build: Any, where: str
) -> None:
    before: list[tuple[int, int, int]] = []

    def counted(sink: wp.ProviderSink, now: dt.datetime) -> Any:
        before.append(table_counts(store_url))
        return build(sink, now)

    (error,) = _one_send(store_url, [(provider, counted)])
    assert isinstance(error, InvalidWebhook), error
    assert where in str(error), str(error)
    assert "nothing written" in str(error)
    assert table_counts(store_url) == before[0]


def test_reports_about_unknown_sends_or_other_tenants_are_listed_not_written(
    store_url: str,
) -> None:
    def unknown(sink: wp.ProviderSink, now: dt.datetime) -> Any:
        body = good_bounce(sink, now)
        return [
            {**body, "message-id": "<nope@smtp-relay.mailin.fr>", "X-Mailin-custom": "999999"},
            # An outbox id of ours, but the address is not the send's: not guessed.
            {**body, "message-id": "<other@x>", "email": "someone@else.test"},
            {**body, "event": "list_addition"},  # an event Cadence does not act on
        ]

    def other_tenant(sink: wp.ProviderSink, now: dt.datetime) -> Any:
        message = last(sink, "p1", "sms")
        entry = wp.infobip_status(
            message, now, to=PHONE["p1"], group="DELIVERED", name="DELIVERED_TO_HANDSET",
            description="ok",
        )  # fmt: skip
        callback = json.loads(entry["callbackData"]) | {"tenant": "acme"}
        return wp.results({**entry, "messageId": "f00", "callbackData": json.dumps(callback)})

    before = []

    def counted(sink: wp.ProviderSink, now: dt.datetime) -> Any:
        before.append(table_counts(store_url))
        return unknown(sink, now)

    first, second = _one_send(store_url, [("brevo", counted), ("infobip", other_tenant)])
    assert (first.reports, first.matched, first.events, first.logged) == (2, 0, 0, 0)
    assert [u.position for u in first.unmatched] == ["[0]", "[1]"]
    assert "999999" in first.unmatched[0].reason
    assert "another address" in first.unmatched[1].reason
    assert first.ignored == [("[2]", "list_addition")]
    assert (second.matched, second.events) == (0, 0)
    assert "tenant 'acme'" in second.unmatched[0].reason
    assert table_counts(store_url) == before[0]


def test_one_webhook_delivered_twice_at_once_is_stored_once(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: wp.ProviderSink) -> Any:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(DAILY))
        await engine.launch("daily")
        await engine.run_until(T0 + dt.timedelta(hours=1))
        email, text = last(sink, "p1", "email"), last(sink, "p1", "sms")
        now = clock.now()
        brevo_body = [
            wp.brevo_event("deferred", email, now, email=EMAIL["p1"]),
            wp.brevo_event("delivered", email, now, email=EMAIL["p1"]),
        ]
        infobip_body = wp.results(
            wp.infobip_status(text, now, to=PHONE["p1"], group="DELIVERED",
                              name="DELIVERED_TO_HANDSET", description="Delivered"),
            wp.infobip_sms_in("+491510000001", "Yes please", now, "7001"),
        )  # fmt: skip
        results: list[WebhookReport] = []

        async def ingest(provider: str, payload: Any) -> None:
            # Another engine (another worker of the service) takes each second delivery.
            async with Engine(store_url, clock=clock, sink=sink) as other:
                results.append(await other.ingest_webhook(provider, payload))

        async with trio.open_nursery() as nursery:
            for provider, payload in (("brevo", brevo_body), ("infobip", infobip_body)):
                nursery.start_soon(ingest, provider, payload)
                nursery.start_soon(ingest, provider, json.loads(json.dumps(payload)))
        return results

    results = run(store_url, body)
    assert sum(r.logged for r in results) == 4  # deferred, delivered, delivered, replied
    assert sum(r.events for r in results) == 3  # delivered (email), delivered (sms), replied
    assert sum(r.duplicates for r in results) == 4
    assert sorted(o for _, o, _ in log_outcomes(store_url)) == [
        "deferred", "delivered", "delivered", "replied",
    ]  # fmt: skip
    assert len(events_named(store_url, "delivered")) == 2
    assert len(events_named(store_url, "replied")) == 1


def test_a_send_recorded_by_another_sink_is_matched_by_outbox_id_and_address(
    store_url: str,
) -> None:
    # The recording sink names itself as provider, with ids of its own: the outbox id
    # Cadence sent, confirmed by the address, still finds the send.
    clock = SimulatedClock(T0)

    async def main() -> Any:
        async with Engine(store_url, clock=clock) as engine:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(DAILY))
            await engine.launch("daily")
            await engine.run_due()
            assert isinstance(engine.sink, RecordingSink)
            message = next(
                m for m in engine.sink.delivered if m.contact_id == "p1" and m.channel == "email"
            )
            click = wp.brevo_event(
                "click", message, clock.now(), email="P1@Example.test", message_id=False,
                link="https://acme.test/",
            )  # fmt: skip
            found = await engine.ingest_webhook("brevo", json.dumps(click))
            stranger = {**click, "email": "p2@example.test", "ts_event": click["ts_event"] + 1}
            refused = await engine.ingest_webhook("brevo", stranger)
            return found, refused

    found, refused = trio.run(main)
    assert (found.matched, found.events) == (1, 1)
    assert (refused.matched, refused.events) == (0, 0)
    assert "went to another address" in refused.unmatched[0].reason
    assert [c for c, _ in events_named(store_url, "clicked")] == ["p1"]


class _TimesOutOnce(RecordingSink):
    """The first hand-over of each send times out after the request left (outcome unknown)."""

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record the attempt; answer 'try again' the first time, sent after that."""
        first = [m for m in messages if m.attempts == 0]
        self.delivered.extend(messages)
        later = T0 + dt.timedelta(minutes=5)
        return [
            DeliveryResult(m.outbox_id, False, "infobip", error="timeout", retry_at=later)
            if m in first
            else DeliveryResult(m.outbox_id, True, "infobip", f"again-{m.outbox_id}")
            for m in messages
        ]


@pytest.mark.parametrize("reported", [True, False])
def test_a_send_the_provider_reported_on_is_not_sent_again(store_url: str, reported: bool) -> None:
    """A timeout leaves the outcome unknown; a delivery report that came in meanwhile says
    the provider has the message, so the retry records it as sent instead of sending twice."""
    source = """
    template nudge sms "Hi {{ contact.first_name }}. Reply STOP to opt out."
    campaign texts { on launch { send sms nudge } }
    """
    sink = _TimesOutOnce()

    async def main() -> None:
        clock = SimulatedClock(T0)
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts([
                {"id": "c1", "phone": "+4915100000001", "first_name": "Ana",
                 "attributes": {"sms_opt_in": True}},
            ])  # fmt: skip
            await engine.deploy(campaigns(source))
            await engine.launch("texts")
            await engine.run_due()
            (first,) = sink.delivered
            if reported:
                clock.advance_to(T0 + dt.timedelta(minutes=1))
                report = wp.infobip_status(
                    first, T0 + dt.timedelta(minutes=1), to="4915100000001",
                    group="DELIVERED", name="DELIVERED_TO_HANDSET",
                    description="Message delivered to handset",
                )  # fmt: skip
                ingested = await engine.ingest_webhook("infobip", wp.results(report))
                assert ingested.matched == 1
            await engine.run_until(T0 + dt.timedelta(minutes=10))

    trio.run(main)
    assert len(sink.delivered) == (1 if reported else 2)
    with Store.open(store_url) as store, store.session() as session:
        (row,) = session.execute(select(OutboxMessage.status, OutboxMessage.provider)).all()
        logged = session.execute(
            select(SendLog.outcome, SendLog.detail)
            .where(SendLog.outcome != "delivered")
            .order_by(SendLog.id)
        ).all()
    assert tuple(row) == ("sent", "infobip")
    # The timed-out attempt, then the send: recorded from the report, or sent again.
    assert [outcome for outcome, _ in logged] == ["failed", "sent"]
    reason = (logged[-1][1] or {}).get("reason")
    assert reason == ("the provider reported on it before a retry" if reported else None)


def test_a_brevo_batch_with_a_listed_tag_and_an_unknown_event_is_written(store_url: str) -> None:
    """Brevo's proxy opens carry `tag` as a list; an event Cadence does not know is listed
    as ignored whatever its fields hold: neither refuses the bounce beside them."""

    def hook(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        message = last(sink, "p1", "email")
        proxy = wp.brevo_event("unique_proxy_open", message, now, email=EMAIL["p1"])
        proxy.pop("tags")
        proxy["tag"] = ["daily", "note"]
        newcomer = wp.brevo_event("loaded_by_scanner", message, now, email=EMAIL["p1"])
        newcomer["reason"] = {"scanner": "gateway", "score": 0.93}
        bounce = wp.brevo_event("hard_bounce", message, now, email=EMAIL["p1"])
        return "brevo", [proxy, newcomer, bounce]

    sink, (report,) = daily(store_url, [(2, hook)])
    assert (report.reports, report.matched, report.logged, report.events) == (2, 2, 2, 1)
    assert report.ignored == [("[1]", "loaded_by_scanner")]
    assert [o for _, o, _ in log_outcomes(store_url)] == ["proxy_opened", "bounced"]
    assert counts(sink, "p1") == {"email": 1, "sms": 5}


def test_a_brevo_event_is_stored_at_ts_epoch_not_the_accounts_local_ts(store_url: str) -> None:
    """Brevo writes `ts`/`ts_event` in the account's time zone (here New York, five hours
    behind UTC); `ts_epoch` is UTC: the stored event is at the moment it happened."""

    def hook(sink: wp.ProviderSink, now: dt.datetime) -> tuple[str, Any]:
        message = last(sink, "p1", "email")
        body = wp.brevo_event("delivered", message, now, email=EMAIL["p1"])
        local = int(now.timestamp()) - 5 * 3600
        body.update(ts=local, ts_event=local, date=(now - dt.timedelta(hours=5)).strftime(
            "%Y-%m-%d %H:%M:%S"))  # fmt: skip
        return "brevo", body

    daily(store_url, [(2, hook)])
    with Store.open(store_url) as store, store.session() as session:
        (at,) = session.scalars(select(Event.at).where(Event.name == "delivered")).all()
    stored = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    assert stored == T0 + dt.timedelta(hours=2)
