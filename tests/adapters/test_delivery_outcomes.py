"""Whether a send was delivered: one answer for the report, the dashboard and `delivered(T)`.

Emails go out through the Brevo stand-in and texts through the Infobip stand-in (real HTTP
on loopback); the providers' reports come back through the service's webhook endpoints, as
the providers post them. A soft bounce is a temporary failure: the send is delivered only
if a delivery report arrives, before or after it. A provider's error (Brevo `error`,
Infobip REJECTED), an expiry and a hard bounce mean it was not. A send nothing is reported
about counts as delivered in the report (not every channel reports), but `delivered(T)`
waits for the provider's word (cadence/engine/delivery.py).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from cadence.adapters.standins.brevo import BrevoEmail
from cadence.adapters.standins.infobip import InfobipMessage, infobip_time
from cadence.engine import delivery
from cadence.engine.store import Store
from cadence.engine.store.models import Contact
from tests.adapters.test_dashboard import BASIC, _cells
from tests.adapters.test_web_service import TOKEN, Service, _with_service
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template note email { subject "Note" body "<p>Hello</p>" }
template text sms "Hi. Reply STOP to opt out."
campaign outcomes {
  from "Acme <hello@acme.test>"
  channels email, sms
  on launch {
    send email note
    send sms text
    wait 1h
    if delivered(note) { set note_delivered = true } else { set note_delivered = false }
    if delivered(text) { set text_delivered = true } else { set text_delivered = false }
  }
}
"""
PEOPLE = [
    {"id": f"c{i}", "email": f"c{i}@example.test", "phone": f"+49151000000{i}",
     "attributes": {"sms_opt_in": True}}
    for i in range(1, 8)
]  # fmt: skip

# What Brevo reports about each contact's email, in order.
EMAIL_REPORTS: dict[str, list[str]] = {
    "c1": ["soft_bounce"],  # a full mailbox, and Brevo's retries never got through
    "c2": ["soft_bounce", "delivered"],  # a retry got through
    "c3": ["delivered", "soft_bounce"],  # the delivery report came first
    "c4": ["error"],  # Brevo could not send it
    "c5": ["hard_bounce"],
    "c6": ["delivered", "hard_bounce"],  # accepted, then bounced by the mailbox's server
    "c7": [],  # nothing (yet): counted as delivered, not confirmed
}
# What Infobip reports about each contact's text: (group, status, error, permanent).
SMS_REPORTS: dict[str, list[tuple[str, str, str, bool]]] = {
    "c1": [("DELIVERED", "DELIVERED_TO_HANDSET", "NO_ERROR", False)],
    # Refused for its sender (one refused for credit is held instead: test_no_credits).
    "c2": [("REJECTED", "REJECTED_SENDER", "NO_ERROR", False)],
    "c3": [("EXPIRED", "EXPIRED_EXPIRED", "EC_ABSENT_SUBSCRIBER", False)],
    "c4": [("UNDELIVERABLE", "UNDELIVERABLE_REJECTED_OPERATOR", "EC_ABSENT_SUBSCRIBER", False)],
    "c5": [("UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "EC_UNKNOWN_SUBSCRIBER", True)],
    "c6": [],
    "c7": [("DELIVERED", "DELIVERED_TO_HANDSET", "NO_ERROR", False)],
}


def _brevo(event: str, email: BrevoEmail, at: dt.datetime) -> dict[str, Any]:
    """One transactional event as Brevo posts it (developers.brevo.com transactional-webhooks)."""
    stamp = int(at.timestamp())
    body: dict[str, Any] = {
        "event": event, "email": email.to, "id": 412345, "ts": stamp, "ts_event": stamp,
        "ts_epoch": stamp * 1000, "message-id": email.message_id, "subject": email.subject,
        "X-Mailin-custom": email.headers["X-Mailin-custom"], "tags": list(email.tags),
    }  # fmt: skip
    if event in ("soft_bounce", "hard_bounce", "error"):
        body["reason"] = {
            "soft_bounce": "452 4.2.2 The email account that you tried to reach is over quota",
            "hard_bounce": "550 5.1.1 The email account that you tried to reach does not exist",
        }.get(event, "Error while sending the email")
    return body


def _infobip(
    message: InfobipMessage, at: dt.datetime, report: tuple[str, str, str, bool]
) -> dict[str, Any]:
    """One SMS delivery report entry, as Infobip posts it."""
    group, status, error, permanent = report
    return {
        "bulkId": message.bulk_id, "messageId": message.message_id, "to": message.to,
        "sentAt": infobip_time(at), "doneAt": infobip_time(at), "smsCount": 1,
        "callbackData": message.callback_data,
        "status": {"groupName": group, "name": status, "description": status},
        "error": {"name": error, "description": error, "permanent": permanent},
    }  # fmt: skip


def _attributes(store_url: str) -> dict[str, dict[str, Any]]:
    with Store.open(store_url) as store, store.session() as session:
        return {c.id: dict(c.attributes or {}) for c in session.scalars(select(Contact))}


def test_soft_bounces_and_provider_errors_are_not_deliveries(store_url: str) -> None:
    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("outcomes")
        await engine.run_due()
        emails = {e.to: e for e in service.standins.brevo.emails}
        texts = {m.to: m for m in service.standins.infobip.messages}
        assert len(emails) == len(texts) == 7
        minute = dt.timedelta(minutes=1)
        for contact, events in EMAIL_REPORTS.items():
            email = emails[f"{contact}@example.test"]
            for n, event in enumerate(events):
                posted = await client.post(
                    "/webhooks/brevo", params={"token": TOKEN},
                    json=_brevo(event, email, T0 + (n + 1) * minute),
                )  # fmt: skip
                assert posted.status_code == 200, posted.text
        results = [
            _infobip(texts[f"49151000000{contact[1:]}"], T0 + minute, report)
            for contact, reports in SMS_REPORTS.items()
            for report in reports
        ]
        posted = await client.post(
            "/webhooks/infobip", params={"token": TOKEN}, json={"results": results}
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["unmatched"] == []
        service.clock.advance_to(T0 + dt.timedelta(hours=1, seconds=1))
        await engine.run_due()

        (report,) = await engine.report()
        note, text = report.by_template["note"], report.by_template["text"]
        # Email: c2 and c3 confirmed, c7 unreported; c5 and c6 bounced, c1 and c4 not delivered.
        assert (note.sent, note.bounced, note.delivered) == (7, 2, 3)
        # SMS: c1 and c7 confirmed, c6 unreported; c5 bounced; c2, c3 and c4 not delivered.
        assert (text.sent, text.bounced, text.delivered) == (7, 1, 3)
        assert (report.total.sent, report.total.delivered) == (14, 6)

        page = (await client.get("/dashboard", headers={"authorization": BASIC})).text
        (performance,) = re.findall(r"<h2>Performance</h2>(.*?)</table>", page, re.S)
        assert _cells(performance, "outcomes")[1:3] == ["14", "6 (42.9%)"]
        (by_message,) = re.findall(r"<h2>By message</h2>(.*?)</table>", page, re.S)
        rows = re.findall(r"<tr>(.*?)</tr>", by_message)
        shown = {
            cells[1]: cells[2:4]
            for cells in (
                [" ".join(re.sub(r"<[^>]+>", " ", c).split())
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
                for row in rows
            )
            if len(cells) > 3
        }  # fmt: skip
        assert shown == {"note": ["7", "3 (42.9%)"], "text": ["7", "3 (42.9%)"]}

    trio.run(_with_service, store_url, body)
    attributes = _attributes(store_url)
    # `delivered(T)`: the provider confirmed it, and no hard bounce or error came of it.
    assert {c for c, a in attributes.items() if a["note_delivered"]} == {"c2", "c3"}
    assert {c for c, a in attributes.items() if a["text_delivered"]} == {"c1", "c7"}


# Brevo's reports of each contact's email when the person reacts too.
ENGAGED_REPORTS: dict[str, list[str]] = {
    "c1": ["soft_bounce", "opened"],  # opened: a retry got through, unreported
    "c2": ["opened"],  # nothing but the open (as SMTP sends are only ever confirmed)
    # The mailbox does not exist: a scanner's open and click, or a report of another send.
    "c3": ["hard_bounce", "opened", "click"],
    "c4": ["error"],  # never sent
    "c5": ["delivered", "unique_opened", "opened"],  # one open, reported twice
    "c6": [],  # nothing: counted as delivered, not confirmed
    "c7": ["soft_bounce"],  # not delivered
}


def test_an_open_or_a_click_confirms_a_delivery_and_rates_stay_within_delivered(
    store_url: str,
) -> None:
    """The person's open, click or reply shows the message reached them: it is delivered,
    for the report and for `delivered(T)`, whatever temporary failure came before. A hard
    bounce or a provider's error still wins, and a reaction reported about such a send is
    not counted: no open, click or reply rate passes 100%."""

    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("outcomes")
        await engine.run_due()
        emails = {e.to: e for e in service.standins.brevo.emails}
        minute = dt.timedelta(minutes=1)
        for contact, events in ENGAGED_REPORTS.items():
            email = emails[f"{contact}@example.test"]
            for n, event in enumerate(events):
                payload = _brevo(event, email, T0 + (n + 1) * minute)
                if event == "click":
                    payload["link"] = "https://acme.test/offer"
                posted = await client.post("/webhooks/brevo", params={"token": TOKEN}, json=payload)
                assert posted.status_code == 200, posted.text
        service.clock.advance_to(T0 + dt.timedelta(hours=1, seconds=1))
        await engine.run_due()

        (report,) = await engine.report()
        note = report.by_template["note"]
        assert (note.sent, note.delivered, note.bounced) == (7, 4, 1)  # c1 c2 c5 c6; c3
        assert (note.opened, note.clicked) == (3, 0)  # c1 c2 c5; not c3's open and click
        for total in (note, report.total):
            assert total.opened <= total.delivered and total.clicked <= total.delivered

    trio.run(_with_service, store_url, body)
    attributes = _attributes(store_url)
    assert {c for c, a in attributes.items() if a["note_delivered"]} == {"c1", "c2", "c5"}


OUTCOMES = sorted(
    {delivery.DELIVERED, delivery.ENGAGED, *delivery.FAILURES, *delivery.TEMPORARY_FAILURES}
)


@given(st.sets(st.sampled_from(OUTCOMES)))
def test_the_rule_takes_a_reaction_as_a_delivery_unless_the_send_failed(
    outcomes: set[str],
) -> None:
    said = delivery.delivery(outcomes)
    if outcomes & delivery.FAILURES:
        assert said is delivery.Delivery.FAILED
    elif outcomes & {delivery.DELIVERED, delivery.ENGAGED}:
        assert said is delivery.Delivery.DELIVERED
    # A reaction never turns a send that was not delivered into something worse, and
    # never makes a failed one delivered.
    with_reaction = delivery.delivery(outcomes | {delivery.ENGAGED})
    assert with_reaction in (delivery.Delivery.DELIVERED, delivery.Delivery.FAILED)
    assert (with_reaction is delivery.Delivery.FAILED) is (said is delivery.Delivery.FAILED)
