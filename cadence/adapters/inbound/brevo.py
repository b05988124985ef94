"""Brevo's transactional email webhooks and inbound-parsed replies, as provider reports.

Brevo posts one JSON object per event (or, batched, a list of them) with `event`, `email`,
`message-id`, the times `ts_epoch` (milliseconds, UTC), `ts_event` / `ts` (seconds, in the
account's time zone whatever Brevo's page says) and `date` (Paris time), the
`X-Mailin-custom` header Cadence set (the outbox id of a single message), and per event
`reason`, `link`, `tag`/`tags`, `template_id`
(https://developers.brevo.com/docs/transactional-webhooks).

What each event becomes (send-log outcome; Cadence event):

- `request`/`sent`: requested; none. `deferred`: deferred; none (Brevo keeps trying and
  reports the end as a bounce). `error`: failed; none (Brevo could not send it: not
  delivered, `cadence.engine.delivery`, but no bounce of the address). `proxy_open`,
  `unique_proxy_open`: proxy_opened; none (a privacy proxy fetched the pixel, not the
  person).
- `delivered`: delivered; `delivered`.
- `hard_bounce`, `invalid_email`/`invalid`, `blocked`: bounced; `bounced` type hard (Brevo
  will not deliver to that address again). `soft_bounce`: soft_bounced; `bounced` type soft.
- `spam`, `complaint`: complained; `complained`. `unsubscribed`: unsubscribed;
  `unsubscribed` on email.
- `opened`, `unique_opened`: opened; `opened` (the unique and plain report of one open are
  one event). `click`: clicked; `clicked` with `url`.

Brevo's inbound parsing posts to the same URL `{"items": [...]}`, one parsed email each:
each is a reply, a `replied` event on email from its sender, naming the send its
`In-Reply-To` answers; automatic replies are listed as ignored (docs/inbound.md).

Brevo's transactional SMS reports (`msg_status` instead of `event`) are listed as ignored.

The camelCase spellings some of Brevo's schemas use (`hardBounce`, `uniqueOpened`,
`proxyOpen` ...) are read the same. Events Brevo may add later are reported as ignored,
not refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

from cadence.adapters.inbound.reports import (
    Fields,
    InvalidWebhook,
    ProviderReport,
    WebhookProblem,
    dedupe_key,
    json_kind,
)
from cadence.engine.clock import read_instant

PROVIDER = "brevo"
# Brevo's `date` is in its own time zone (CET/CEST), not UTC.
_BREVO_ZONE = ZoneInfo("Europe/Paris")
_DIGITS = re.compile(r"[0-9]+")
# The time fields, in the order the dedupe value is taken from (as it always was) ...
_TIMES = ("ts_event", "ts_epoch", "ts", "date")
# ... and in the order the time is read from: ts_epoch is the one Brevo keeps in UTC.
_TIME_PREFERENCE = ("ts_epoch", "ts_event", "ts", "date")

# event -> (normalized kind, send-log outcome, Cadence event, event properties)
_EVENTS: dict[str, tuple[str, str, str | None, dict[str, Any]]] = {
    "request": ("requested", "requested", None, {}),
    "sent": ("requested", "requested", None, {}),
    "delivered": ("delivered", "delivered", "delivered", {}),
    "hard_bounce": ("hard_bounce", "bounced", "bounced", {"type": "hard"}),
    "hardbounce": ("hard_bounce", "bounced", "bounced", {"type": "hard"}),
    "invalid_email": ("invalid_email", "bounced", "bounced", {"type": "hard"}),
    "invalid": ("invalid_email", "bounced", "bounced", {"type": "hard"}),
    "blocked": ("blocked", "bounced", "bounced", {"type": "hard"}),
    "soft_bounce": ("soft_bounce", "soft_bounced", "bounced", {"type": "soft"}),
    "softbounce": ("soft_bounce", "soft_bounced", "bounced", {"type": "soft"}),
    "deferred": ("deferred", "deferred", None, {}),
    "spam": ("spam", "complained", "complained", {}),
    # Brevo's "Complaint" event (a complaint the mailbox provider forwarded), beside `spam`.
    "complaint": ("spam", "complained", "complained", {}),
    "opened": ("opened", "opened", "opened", {}),
    "open": ("opened", "opened", "opened", {}),
    "unique_opened": ("opened", "opened", "opened", {}),
    "uniqueopened": ("opened", "opened", "opened", {}),
    "proxy_open": ("proxy_open", "proxy_opened", None, {}),
    "proxyopen": ("proxy_open", "proxy_opened", None, {}),
    "unique_proxy_open": ("proxy_open", "proxy_opened", None, {}),
    "uniqueproxyopen": ("proxy_open", "proxy_opened", None, {}),
    "click": ("click", "clicked", "clicked", {}),
    "clicked": ("click", "clicked", "clicked", {}),
    "unsubscribed": ("unsubscribed", "unsubscribed", "unsubscribed", {}),
    "unsubscribe": ("unsubscribed", "unsubscribed", "unsubscribed", {}),
    "error": ("error", "failed", None, {}),
}


def parse(payload: Any) -> tuple[list[ProviderReport], list[tuple[str, str]]]:
    """Reports from a Brevo webhook body (one event object or a list of them).

    Returns the reports and the (position, event) of events Cadence does not act on.
    Raises `InvalidWebhook` naming every bad field when the body is malformed.
    """
    if isinstance(payload, Mapping) and "items" in payload and "event" not in payload:
        return _inbound_emails(payload["items"])
    if isinstance(payload, Mapping):
        items: list[tuple[str, Any]] = [("", payload)]
    elif isinstance(payload, list):
        if not payload:
            raise InvalidWebhook(PROVIDER, [WebhookProblem("$", "an empty list of events")])
        items = [(f"[{index}]", item) for index, item in enumerate(payload)]
    else:
        raise InvalidWebhook(
            PROVIDER,
            [WebhookProblem("$", f"expected an event object or a list, got {json_kind(payload)}")],
        )
    return _each(items, _one)


_Reader = Callable[[Fields, list[tuple[str, str]]], ProviderReport | None]


def _each(
    items: list[tuple[str, Any]], read: _Reader
) -> tuple[list[ProviderReport], list[tuple[str, str]]]:
    """`read` applied to each (path, object) of a body: the reports and what was ignored.

    Raises `InvalidWebhook` listing every problem of every object, so that nothing of a
    body with a bad part is written.
    """
    problems: list[WebhookProblem] = []
    reports: list[ProviderReport] = []
    ignored: list[tuple[str, str]] = []
    for path, item in items:
        if not isinstance(item, Mapping):
            problems.append(
                WebhookProblem(path or "$", f"expected an object, got {json_kind(item)}")
            )
            continue
        report = read(Fields(item, path, problems), ignored)
        if report is not None:
            reports.append(report)
    if problems:
        raise InvalidWebhook(PROVIDER, problems)
    return reports, ignored


def _inbound_emails(entries: Any) -> tuple[list[ProviderReport], list[tuple[str, str]]]:
    """Replies from a Brevo inbound-parsing body (`{"items": [...]}`): a `replied` each.

    Brevo's inbound parsing posts the emails sent to the reply domain the tenant routes to
    it; each is the person answering a message (docs/inbound.md). Automatic replies
    (out-of-office, delivery notices) are listed as ignored.
    """
    if not isinstance(entries, list):
        raise InvalidWebhook(
            PROVIDER, [WebhookProblem("items", f"expected an array, got {json_kind(entries)}")]
        )
    return _each(
        [(f"items[{index}]", entry) for index, entry in enumerate(entries)], _inbound_email
    )


def _inbound_email(item: Fields, ignored: list[tuple[str, str]]) -> ProviderReport | None:
    """One parsed email as a reply from its sender (None when bad or automatic)."""
    before = len(item.problems)
    sender_fields = item.obj("From", required=True)
    sender = sender_fields.text("Address", required=True) if sender_fields else None
    message_id = item.text("MessageId")
    uuid = _uuid(item)
    answers = item.text("InReplyTo")
    subject = item.text("Subject")
    text = item.text("ExtractedMarkdownMessage") or item.text("RawTextBody") or ""
    sent = item.text("SentAtDate")
    if sender is None or len(item.problems) > before:
        return None
    if _automatic(item.data.get("Headers"), sender):
        ignored.append((item.path, "automatic reply"))
        return None
    properties: dict[str, Any] = {"channel": "email", "text": text.strip()[:REPLY_TEXT_LIMIT]}
    if subject:
        properties["subject"] = subject
    identity = uuid or message_id
    return ProviderReport(
        provider=PROVIDER,
        position=item.path,
        kind="inbound",
        at=_sent_at(sent),
        # Without Brevo's ids, what the email says is what tells a redelivery apart.
        dedupe=dedupe_key(
            PROVIDER, "inbound", identity, sender, *(() if identity else (sent, subject, text))
        ),
        events=(("replied", properties),),
        channel="email",
        provider_message_id=message_id,
        address=sender.strip().lower(),
        inbound=True,
        answers=answers,
        detail={"subject": subject} if subject else {},
    )


# A reply's text kept on its event: enough for conditions on what the person said, not a
# mailbox (a long thread quoted below an answer is Brevo's `RawTextBody`).
REPLY_TEXT_LIMIT = 4000
# Headers a machine sets on what it writes (RFC 3834's Auto-Submitted, and the common
# vendor ones): an out-of-office answer or a bounce notice is no reply from the person.
_AUTOMATIC_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply")
_AUTOMATIC_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_DAEMONS = ("mailer-daemon@", "postmaster@")


def _automatic(headers: Any, sender: str) -> bool:
    """Whether the email was written by a machine: its headers say so, or a mail daemon."""
    if sender.strip().lower().startswith(_DAEMONS):
        return True
    if not isinstance(headers, Mapping):
        return False
    fields: dict[str, str] = {}
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        fields[str(name).lower()] = " ".join(str(v) for v in values if v is not None).lower()
    auto_submitted = fields.get("auto-submitted", "").strip()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(fields.get(name) for name in _AUTOMATIC_HEADERS):
        return True
    return fields.get("precedence", "").strip() in _AUTOMATIC_PRECEDENCE


def _uuid(item: Fields) -> str | None:
    """Brevo's id of a parsed email: `Uuid` is a list of one (a string is read too)."""
    value = item.data.get("Uuid")
    if isinstance(value, list):
        if value and all(isinstance(part, str) for part in value):
            return ",".join(value)
        if value:
            item.problem("Uuid", "expected a list of strings")
        return None
    return item.text("Uuid")


def _sent_at(value: str | None) -> dt.datetime:
    """When the person sent the email: its Date header (RFC 5322 as Brevo passes it on, or
    ISO-8601), else now: a sender's clock writes that header, not Brevo's, so a missing or
    unreadable one is no reason to refuse the reply."""
    if value:
        parsed: dt.datetime | None
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            parsed = read_instant(value)
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            try:
                return parsed.astimezone(dt.UTC)
            except OverflowError:
                pass
    return dt.datetime.now(dt.UTC)


def _one(item: Fields, ignored: list[tuple[str, str]]) -> ProviderReport | None:
    """One event object as a report (None when it is bad or an event Cadence ignores)."""
    before = len(item.problems)
    if "event" not in item.data and "msg_status" in item.data:
        # Brevo's transactional SMS report (`msg_status`, no `event`), posted if its SMS
        # webhook shares the URL: Cadence sends no SMS through Brevo. Refused, it would be
        # posted again for ever.
        ignored.append((item.path or "$", f"sms {item.data.get('msg_status')}"))
        return None
    name = item.text("event", required=True)
    known = _EVENTS.get(name.strip().lower()) if name is not None else None
    if name is not None and known is None:
        # An event Cadence does not act on may carry its fields in shapes of its own: they
        # are not read, so they cannot spoil the events beside it.
        ignored.append((item.path or "$", name))
        return None
    email = item.text("email")
    message_id = item.text("message-id", number=True) or item.text("messageId", number=True)
    custom = item.text("X-Mailin-custom", number=True)
    link = item.text("link")
    reason = item.text("reason")
    template_id = item.text("template_id", number=True) or item.text("templateId", number=True)
    tags = _tags(item)
    at, stamp = _moment(item)
    if known is None or len(item.problems) > before:
        return None
    kind, outcome, event, extra = known
    if at is None:
        item.problem(None, "no time: none of ts_event, ts_epoch, ts or date is given")
        return None
    outbox_ref, send_key = _custom_ref(custom)
    properties: dict[str, Any] = dict(extra)
    if event == "bounced" and reason:
        properties["reason"] = reason
    if event == "clicked" and link:
        properties["url"] = link
    if event is not None:
        properties["provider_event"] = name
    detail: dict[str, Any] = {"event": name}
    for key, value in (("reason", reason), ("link", link), ("template_id", template_id)):
        if value:
            detail[key] = value
    if tags:
        detail["tags"] = tags
    return ProviderReport(
        provider=PROVIDER,
        position=item.path or "$",
        kind=kind,
        at=at,
        # The unique and the plain report of one open share it: one event, one log entry.
        dedupe=dedupe_key(PROVIDER, kind, message_id or custom, email, stamp, link),
        outcome=outcome,
        events=((event, properties),) if event else (),
        channel="email",
        provider_message_id=message_id,
        outbox_ref=outbox_ref,
        send_key=send_key,
        address=email.strip().lower() if email else None,
        detail=detail,
    )


def _tags(item: Fields) -> list[str]:
    """`tags` (a list) or `tag` (one string, a JSON list Brevo writes as text, or a list)."""
    for name in ("tags", "tag"):
        value = item.data.get(name)
        if isinstance(value, list):
            # Brevo's proxy-open events send `tag` as a list too.
            if not all(isinstance(tag, str) for tag in value):
                item.problem(name, "expected a list of strings")
                return []
            return [tag for tag in value if tag]
        if name == "tags" and value is not None:
            item.problem("tags", f"expected a list of strings, got {json_kind(value)}")
            return []
    tag = item.text("tag")
    if not tag:
        return []
    if tag.startswith("["):
        # Brevo writes a message's several tags into `tag` as a JSON array in a string.
        try:
            listed = json.loads(tag)
        except ValueError:
            listed = None
        if isinstance(listed, list) and all(isinstance(one, str) for one in listed):
            return [one for one in listed if one]
    return [tag]


def _moment(item: Fields) -> tuple[dt.datetime | None, str | None]:
    """When the event happened (UTC), and the raw value that identifies it (for dedupe keys).

    `ts_epoch` (milliseconds, UTC; a value small enough to be seconds is read as seconds)
    first: Brevo documents `ts_event` and `ts` as UTC seconds too, but writes them in the
    account's time zone (an account set to US Pacific gets them hours away from
    `ts_epoch`), so they are read only without `ts_epoch`; then `date`, in Paris time.
    The dedupe value is still the first of `ts_event`, `ts_epoch`, `ts` and `date` given,
    as before, so a report stored earlier is known again when Brevo redelivers it. Only
    the fields these two need are read.
    """
    given = [name for name in _TIMES if item.data.get(name) not in (None, "")]
    if not given:
        return None, None
    read: dict[str, Any] = {}
    for name in dict.fromkeys((given[0], min(given, key=_TIME_PREFERENCE.index))):
        read[name] = item.text(name) if name == "date" else item.number(name)
    if any(value is None for value in read.values()):
        return None, None  # a problem was noted
    stamp = f"{given[0]}={read[given[0]]}"
    name = min(given, key=_TIME_PREFERENCE.index)
    value = read[name]
    if name != "date":
        seconds = value / 1000 if name == "ts_epoch" and value > 100_000_000_000 else value
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC), stamp
        except (OverflowError, OSError, ValueError):
            item.problem(name, f"{value!r} is not a time stamp")
            return None, None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_BREVO_ZONE)
        return parsed.astimezone(dt.UTC), stamp
    except (ValueError, OverflowError):
        item.problem("date", f"{value!r} is not a date (YYYY-MM-DD HH:MM:SS)")
        return None, None


def _custom_ref(custom: str | None) -> tuple[str | None, str | None]:
    """(outbox id, idempotency key) from the X-Mailin-custom header Cadence set.

    A single message carries its outbox id (its idempotency key when it had none); a
    batched one `batch:<uuid>`, which names no message: those are found by message id.
    """
    if not custom:
        return None, None
    value = custom.strip()
    if _DIGITS.fullmatch(value):
        return value, None
    if value.startswith("batch:"):
        return None, None
    return None, value
