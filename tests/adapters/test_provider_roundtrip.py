"""A send through the real adapters and the Brevo and Infobip stand-ins, then the webhooks
those providers post about it, in their published shapes, through Engine.ingest_webhook.

The webhook bodies carry only what the provider knows: the message ids the stand-ins
answered, the X-Mailin-custom header and the callbackData the adapters sent. The effects
are the store's: a hard bounce and a STOP suppress, and nothing more goes on that channel.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import trio
from sqlalchemy import select

from cadence.adapters.config import load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.retry import RetryPolicy
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.adapters.standins import start_standins
from cadence.adapters.standins.brevo import BrevoEmail
from cadence.adapters.standins.infobip import InfobipMessage, infobip_time
from cadence.engine.clock import SimulatedClock
from cadence.engine.inbound import WebhookReport
from cadence.engine.runtime import Engine
from cadence.engine.store import Store
from cadence.engine.store.models import Event, Suppression
from tests.engine.test_bounces import PEOPLE
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template note email { subject "Note" body "<p>Hello {{ contact.id }}</p>" }
template text sms { body "Hi, reply STOP to opt out" }
campaign daily {
  from "Acme Homes <hello@acme.test>"
  on launch {
    send email note  send sms text  wait 1d
    send email note  send sms text  wait 1d
    send email note  send sms text
  }
}
"""


def brevo_event(event: str, email: BrevoEmail, at: dt.datetime, **extra: Any) -> dict[str, Any]:
    """One transactional event as Brevo posts it (developers.brevo.com transactional-webhooks)."""
    stamp = int(at.timestamp())
    return {
        "event": event, "email": email.to, "id": 412345,
        "date": at.astimezone(dt.timezone(dt.timedelta(hours=1))).strftime("%Y-%m-%d %H:%M:%S"),
        "ts": stamp, "message-id": email.message_id, "ts_event": stamp,
        "subject": email.subject, "X-Mailin-custom": email.headers["X-Mailin-custom"],
        "sending_ip": "185.41.28.109", "ts_epoch": stamp * 1000,
        "tags": list(email.tags), **extra,
    }  # fmt: skip


def infobip_delivered(message: InfobipMessage, at: dt.datetime) -> dict[str, Any]:
    """One SMS delivery report entry, as Infobip posts it."""
    return {
        "bulkId": message.bulk_id, "messageId": message.message_id, "to": message.to,
        "sentAt": infobip_time(at), "doneAt": infobip_time(at), "smsCount": 1,
        "mccMnc": "26201", "callbackData": message.callback_data,
        "price": {"pricePerMessage": 0.0070, "currency": "EUR"},
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5,
                   "name": "DELIVERED_TO_HANDSET", "description": "Message delivered to handset"},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
                  "description": "No Error", "permanent": False},
    }  # fmt: skip


def test_provider_webhooks_for_stand_in_sends_suppress_and_stop_later_sends(
    store_url: str,
) -> None:
    clock = SimulatedClock(T0)

    async def main() -> tuple[list[WebhookReport], Any, Any]:
        async with trio.open_nursery() as nursery:
            standins = await start_standins(nursery)
            outbound = Outbound(
                load_settings(env=standins.environment()),
                policy=RetryPolicy(max_attempts=2, base_delay=0.05, max_inline_wait=0.5),
            )
            source = StoreContentSource(store_url)
            reports: list[WebhookReport] = []
            async with Engine(store_url, clock=clock) as engine:
                engine.sink = AdapterSink(outbound, source)
                await engine.upsert_contacts(PEOPLE)
                await engine.deploy(campaigns(SOURCE))
                await engine.launch("daily")
                await engine.run_until(T0 + dt.timedelta(hours=1))
                now = clock.now()
                mail = {e.to: e for e in standins.brevo.emails}
                sms = {m.to: m for m in standins.infobip.messages}
                bounce = brevo_event(
                    "hard_bounce", mail["p1@example.test"], now,
                    reason="550 5.1.1 The email account that you tried to reach does not exist",
                )  # fmt: skip
                bounce["message-id"] = bounce["message-id"].strip("<>")  # either form is sent
                click = brevo_event(
                    "click", mail["p2@example.test"], now, link="https://acme.test/homes"
                )
                reports.append(await engine.ingest_webhook("brevo", [bounce, click]))
                stop = {
                    "messageId": "817790313235066447", "from": "491510000001",
                    "to": "4915199999999", "text": "STOP", "cleanText": "", "keyword": "STOP",
                    "receivedAt": infobip_time(now), "smsCount": 1,
                    "price": {"pricePerMessage": 0, "currency": "EUR"},
                    "callbackData": "callbackData",
                }  # fmt: skip
                delivered = infobip_delivered(sms["491510000002"], now)
                body = {"results": [stop, delivered], "messageCount": 2, "pendingMessageCount": 0}
                reports.append(await engine.ingest_webhook("infobip", json.dumps(body)))
                await engine.run_until(T0 + dt.timedelta(days=3))
            source.close()
            await outbound.aclose()
            nursery.cancel_scope.cancel()
        return reports, standins.brevo.emails, standins.infobip.messages

    (brevo, infobip), emails, messages = trio.run(main)
    for report in (brevo, infobip):
        assert (report.matched, report.unmatched, report.ignored) == (2, [], []), report
    assert sorted(e.to for e in emails) == ["p1@example.test"] + ["p2@example.test"] * 3
    assert sorted(m.to for m in messages) == ["491510000001"] + ["491510000002"] * 3
    with Store.open(store_url) as store, store.session() as session:
        held = {
            (row[0], row[1], row[2], row[3])
            for row in session.execute(
                select(Suppression.channel, Suppression.address, Suppression.contact_id,
                       Suppression.reason)
            )
        }  # fmt: skip
        events = {row[0]: row[1] for row in session.execute(select(Event.name, Event.properties))}
    assert held == {
        ("email", "p1@example.test", None, "bounced"), ("sms", None, "p1", "unsubscribed"),
    }  # fmt: skip
    assert events["clicked"]["url"] == "https://acme.test/homes"
    assert events["clicked"]["template"] == "note" and events["clicked"]["campaign"] == "daily"
    assert events["delivered"]["channel"] == "sms"
