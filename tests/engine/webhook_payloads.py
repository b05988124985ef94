"""Webhook bodies in the providers' published shapes, for the sends a test engine made.

Brevo: https://developers.brevo.com/docs/transactional-webhooks (one object per event;
`date` in Paris time, `ts`/`ts_event` in seconds, `ts_epoch` in milliseconds). Infobip:
delivery reports, seen reports and inbound messages as `{"results": [...]}`
(https://www.infobip.com/docs/api/channels/sms/sms-messaging/logs-and-status-reports,
.../whatsapp/whatsapp-message-status-reports, .../sms/inbound-sms). The sends carry what
the real adapters put in them: Brevo's X-Mailin-custom (the outbox id) and Infobip's
callbackData and messageId, built here by the adapters themselves.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from cadence.engine.runtime import DeliveryResult, OutgoingMessage, RecordingSink

PARIS = ZoneInfo("Europe/Paris")
_NAMESPACE = uuid.UUID("5f0c3c4e-8d0b-4c57-9a52-0c6f3e9b7a10")


def brevo_message_id(message: OutgoingMessage) -> str:
    """A message id in the form Brevo answers `POST /v3/smtp/email` with."""
    return f"<202612010900.{message.outbox_id:011d}@smtp-relay.mailin.fr>"


def infobip_message_id(message: OutgoingMessage) -> str:
    """A per-destination messageId derived from the send's key, as the Infobip adapter does."""
    return str(uuid.uuid5(_NAMESPACE, message.idempotency_key))


def callback_data(message: OutgoingMessage) -> str:
    """The callbackData the Infobip adapter sends: outbox id, tenant and key."""
    return json.dumps(
        {"outbox": str(message.outbox_id), "tenant": message.tenant_id,
         "key": message.idempotency_key},
        separators=(",", ":"),
    )  # fmt: skip


class ProviderSink(RecordingSink):
    """Accepts every send as Brevo (email) or Infobip (SMS, WhatsApp) would, with their ids.

    With `with_ids=False` the provider's id is not recorded (as when its webhook arrives
    before the engine has stored the answer): reports must be matched by what Cadence sent.
    """

    def __init__(self, *, with_ids: bool = True) -> None:
        """Record sends; answer with provider ids unless told not to."""
        super().__init__()
        self.with_ids = with_ids

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record the messages as sent by their channel's provider."""
        self.delivered.extend(messages)
        results = []
        for m in messages:
            if m.channel == "email":
                provider, pid = "brevo", brevo_message_id(m)
            else:
                provider, pid = "infobip", infobip_message_id(m)
            results.append(
                DeliveryResult(m.outbox_id, True, provider, pid if self.with_ids else None)
            )
        return results


def brevo_event(
    event: str,
    message: OutgoingMessage,
    at: dt.datetime,
    *,
    email: str,
    message_id: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One Brevo transactional webhook object about `message`."""
    body: dict[str, Any] = {
        "event": event,
        "email": email,
        "id": 1034512,
        "date": at.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S"),
        "ts": int(at.timestamp()),
        "ts_event": int(at.timestamp()),
        "ts_epoch": int(at.timestamp() * 1000),
        "subject": "Note",
        "X-Mailin-custom": str(message.outbox_id),
        "sending_ip": "185.41.28.109",
        "template_id": 0,
        "tags": [message.campaign, message.template or ""],
        "mirror_link": "https://app-smtp.brevo.com/log/preview/1a2000f4-4e33-23aa-ab68-900d0000152c",
        "contact_id": 0,
    }
    if message_id:
        body["message-id"] = brevo_message_id(message)
    if event in ("hard_bounce", "soft_bounce", "blocked", "deferred", "error", "invalid_email"):
        body["reason"] = {
            "hard_bounce": "550 5.1.1 The email account that you tried to reach does not exist",
            "soft_bounce": "452 4.2.2 The email account that you tried to reach is over quota",
        }.get(event, "blocked : due to a previous hard bounce")
    if event in ("opened", "unique_opened", "click", "unsubscribed"):
        body["user_agent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
        body["device_used"] = "MOBILE"
    body.update(extra)
    return body


def brevo_inbound_email(
    sender: str,
    text: str,
    at: dt.datetime,
    uuid_text: str,
    *,
    answers: OutgoingMessage | None = None,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One email of a Brevo inbound-parsing body (`{"items": [...]}`), as Brevo posts it."""
    message_id = f"<CA+{uuid_text[:12]}@mail.example.org>"
    item: dict[str, Any] = {
        "Uuid": [uuid_text],
        "MessageId": message_id,
        "InReplyTo": brevo_message_id(answers) if answers is not None else None,
        "From": {"Name": "Reader", "Address": sender},
        "To": [{"Name": None, "Address": "replies@inbound.acme.test"}],
        "Cc": None,
        "ReplyTo": None,
        "SentAtDate": at.astimezone(PARIS).strftime("%a, %d %b %Y %H:%M:%S %z"),
        "Subject": "Re: Note",
        "Attachments": [],
        "Headers": {"Message-ID": message_id, "Date": "…", **(headers or {})},
        "SpamScore": 0.4,
        "ExtractedMarkdownMessage": text,
        "ExtractedMarkdownSignature": "Reader\nSent from my phone",
        "RawHtmlBody": f"<div>{text}</div>",
        "RawTextBody": f"{text}\n\nOn Tue, Dec 1, 2026 Acme wrote:\n> x",
    }
    return item


def infobip_status(
    message: OutgoingMessage,
    at: dt.datetime,
    *,
    to: str,
    group: str,
    name: str,
    description: str,
    error: tuple[str, str, bool] = ("NO_ERROR", "No Error", False),
    whatsapp: bool = False,
) -> dict[str, Any]:
    """One Infobip delivery report entry (SMS, or WhatsApp with `channel`)."""
    group_ids = {"PENDING": 1, "UNDELIVERABLE": 2, "DELIVERED": 3, "EXPIRED": 4, "REJECTED": 5}
    entry: dict[str, Any] = {
        "bulkId": "a6b1b2c7-0e4f-5b7d-9f32-7a1c9b3f0e11",
        "messageId": infobip_message_id(message),
        "to": to,
        "sentAt": _infobip_time(at - dt.timedelta(seconds=5)),
        "doneAt": _infobip_time(at),
        "smsCount": 1,
        "mccMnc": "26201",
        "callbackData": callback_data(message),
        "price": {"pricePerMessage": 0.07, "currency": "EUR"},
        "status": {"groupId": group_ids[group], "groupName": group, "id": 5, "name": name,
                   "description": description},
        "error": _infobip_error(*error),
    }  # fmt: skip
    if whatsapp:
        entry.pop("smsCount")
        entry["messageCount"] = 1
        entry["channel"] = "WHATSAPP"
    return entry


# Infobip error name -> (groupId, groupName, id), as its error-code reference lists them.
_INFOBIP_ERRORS = {
    "NO_ERROR": (0, "OK", 0),
    "EC_UNKNOWN_SUBSCRIBER": (1, "HANDSET_ERRORS", 1),
    "EC_ABSENT_SUBSCRIBER": (1, "HANDSET_ERRORS", 27),
}


def _infobip_error(name: str, description: str, permanent: bool) -> dict[str, Any]:
    """Infobip's `error` object; other names are put in the operator errors group."""
    group_id, group, code = _INFOBIP_ERRORS.get(name, (3, "OPERATOR_ERRORS", 4000))
    return {"groupId": group_id, "groupName": group, "id": code, "name": name,
            "description": description, "permanent": permanent}  # fmt: skip


def infobip_sms_in(number: str, text: str, at: dt.datetime, message_id: str) -> dict[str, Any]:
    """One inbound SMS (MO) entry, as Infobip forwards it."""
    words = text.split(maxsplit=1)
    return {
        "messageId": message_id,
        "from": number.lstrip("+"),
        "to": "4915199999999",
        "text": text,
        "cleanText": words[1] if len(words) > 1 else "",
        "keyword": words[0].upper() if words else "",
        "receivedAt": _infobip_time(at),
        "smsCount": 1,
        "price": {"pricePerMessage": 0, "currency": "EUR"},
        "callbackData": "callbackData",
    }


def infobip_whatsapp_in(number: str, text: str, at: dt.datetime, message_id: str) -> dict[str, Any]:
    """One inbound WhatsApp text entry."""
    return {
        "from": number.lstrip("+"),
        "to": "4915199999999",
        "integrationType": "WHATSAPP",
        "receivedAt": _infobip_time(at),
        "messageId": message_id,
        "pairedMessageId": None,
        "callbackData": None,
        "message": {"type": "TEXT", "text": text},
        "contact": {"name": "Frank"},
        "price": {"pricePerMessage": 0, "currency": "EUR"},
    }


def infobip_seen(message: OutgoingMessage, at: dt.datetime, *, to: str) -> dict[str, Any]:
    """One WhatsApp seen report entry."""
    return {
        "messageId": infobip_message_id(message),
        "from": "4915199999999",
        "to": to,
        "sentAt": _infobip_time(at - dt.timedelta(minutes=1)),
        "seenAt": _infobip_time(at),
        "applicationId": "default",
    }


def results(*entries: dict[str, Any]) -> dict[str, Any]:
    """An Infobip webhook body."""
    return {"results": list(entries), "messageCount": len(entries), "pendingMessageCount": 0}


def _infobip_time(at: dt.datetime) -> str:
    """Infobip's time format: `2026-12-01T09:00:00.000+0000`."""
    return (
        at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    )
