"""Provider webhooks in the shapes Brevo and Infobip publish, through the HTTP service.

Sends go out through the real adapters to the loopback stand-ins; what comes back is
posted to `/webhooks/brevo` as Brevo documents it (developers.brevo.com
transactional-webhooks): its transactional SMS report, which has `msg_status` instead of
`event`, batched beside an email event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import trio

from tests.adapters.test_provider_roundtrip import brevo_event
from tests.adapters.test_web_service import TOKEN, Service, _with_service
from tests.engine.test_runtime import T0, campaigns
from tests.engine.test_webhooks import log_outcomes

SOURCE = """
template note email { subject "Note" body "<p>Hello</p>" }
campaign news { from "Acme <hello@acme.test>"  on launch { send email note } }
"""
PEOPLE = [{"id": "ana", "email": "ana@example.test"}]
# Brevo's transactional SMS report, as its transactional-webhooks page shows it.
BREVO_SMS: dict[str, Any] = {
    "id": 26570, "to": "918076001713", "sms_count": 1, "credits_used": 1.5, "messageId": 123,
    "remaining_credit": 11488.845, "msg_status": "delivered", "date": "2021-09-07 12:31:10",
    "type": "transactional", "reference": {"1": "ab12cd34"}, "tag": "", "status": "OK",
    "description": "delivered",
}  # fmt: skip


def test_a_brevo_sms_report_beside_email_events_is_ignored_not_refused(store_url: str) -> None:
    """Brevo posts its SMS reports to the URL its SMS webhook names: one reaching the email
    endpoint was refused (`event: missing`) with the email events beside it, and Brevo
    posts a refused body again for ever."""

    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("news")
        await engine.run_due()
        (email,) = service.standins.brevo.emails
        delivered = brevo_event("delivered", email, T0 + dt.timedelta(minutes=1))
        posted = await client.post(
            "/webhooks/brevo", params={"token": TOKEN}, json=[BREVO_SMS, delivered]
        )
        assert posted.status_code == 200, posted.text
        said = posted.json()
        assert (said["matched"], said["logged"], said["events"]) == (1, 1, 1)
        assert said["ignored"] == [{"position": "[0]", "what": "sms delivered"}]
        alone = await client.post("/webhooks/brevo", params={"token": TOKEN}, json=BREVO_SMS)
        assert alone.status_code == 200, alone.text
        assert alone.json()["ignored"] == [{"position": "$", "what": "sms delivered"}]

    trio.run(_with_service, store_url, body)
    assert [(c, o) for c, o, _ in log_outcomes(store_url)] == [("ana", "delivered")]
