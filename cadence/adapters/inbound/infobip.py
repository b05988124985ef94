"""Infobip's SMS and WhatsApp webhooks (delivery reports, seen reports, inbound messages).

Every Infobip webhook body is `{"results": [...]}`; an entry's fields say what it is:

- a delivery report has `status` (`groupName` PENDING, DELIVERED, UNDELIVERABLE, EXPIRED,
  REJECTED; `name`, `description`), `error` (`name`, `description`, `permanent`),
  `messageId`, `to`, `sentAt`, `doneAt`, `callbackData` (Cadence's
  `{"outbox", "tenant", "key"}`), `price`, and for WhatsApp `channel`;
- a WhatsApp seen report has `seenAt` (and `messageId`, `from`, `to`, `sentAt`);
- a report about a message (`messageId` and a time, `...At`) in none of these shapes (a
  WhatsApp deleted report, `deletedAt`; types Infobip adds later) is listed as ignored,
  not refused;
- an inbound message has `receivedAt` and `from`: an SMS (MO) `text`, `cleanText`,
  `keyword`; a WhatsApp one `integrationType` "WHATSAPP" and `message` (`type` TEXT with
  `text`, BUTTON with `text`/`payload`, INTERACTIVE_BUTTON_REPLY / INTERACTIVE_LIST_REPLY
  with `title`, or media and locations, which carry no text).

An inbound SMS's `cleanText` (its text without the keyword Infobip matched) is kept as
`clean_text` when it differs from `text`: on a number that routes by keyword, the person's
own words (`STOP` of "ACME STOP").

What each becomes (send-log outcome; Cadence event): DELIVERED delivered; `delivered`.
UNDELIVERABLE bounced; `bounced` hard, when Infobip's error says `permanent` (or says
nothing), else soft_bounced; `bounced` soft. EXPIRED expired; `bounced` soft (the phone
stayed unreachable). REJECTED failed (Infobip refused it: credit, routing, a blocked
sender; not the person's doing); none; but REJECTED_PREFIX_MISSING and
REJECTED_DESTINATION (the number matches no operator) bounced; `bounced` hard, and
REJECTED_NOT_ENOUGH_CREDITS (or an error `EC_NOT_ENOUGH_CREDITS`) no_credits; none (the
account's balance, not the message: the engine holds the send and pauses its campaign).
PENDING/ACCEPTED pending; none. Only DELIVERED makes a send delivered
(`cadence.engine.delivery`): after REJECTED, EXPIRED or a soft UNDELIVERABLE it was not,
unless a delivery report follows. Seen: seen; `opened`. An inbound message: `replied` with
its `text` (and Infobip's `keyword`); an opt-out reply (STOP ...) is recognised where
every `replied` event is, in `cadence.engine.suppress`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cadence.adapters.base import NO_CREDITS
from cadence.adapters.inbound.reports import (
    Fields,
    InvalidWebhook,
    ProviderReport,
    WebhookProblem,
    dedupe_key,
    json_kind,
)
from cadence.adapters.infobip import NO_CREDITS_STATUS, NUMBER_REFUSED, message_cost

PROVIDER = "infobip"

# groupName -> (send-log outcome, Cadence event, bounce type)
_GROUPS: dict[str, tuple[str, str | None, str | None]] = {
    "DELIVERED": ("delivered", "delivered", None),
    "UNDELIVERABLE": ("bounced", "bounced", "hard"),
    "EXPIRED": ("expired", "bounced", "soft"),
    "REJECTED": ("failed", None, None),
    "PENDING": ("pending", None, None),
    "ACCEPTED": ("pending", None, None),
}


def parse(payload: Any) -> tuple[list[ProviderReport], list[tuple[str, str]]]:
    """Reports from an Infobip webhook body; (position, what) of entries Cadence ignores.

    Raises `InvalidWebhook` naming every bad field when the body is malformed.
    """
    problems: list[WebhookProblem] = []
    if not isinstance(payload, Mapping):
        raise InvalidWebhook(
            PROVIDER,
            [
                WebhookProblem(
                    "$", f'expected an object {{"results": [...]}}, got {json_kind(payload)}'
                )
            ],
        )
    results = payload.get("results")
    if not isinstance(results, list):
        reason = "missing" if results is None else f"expected an array, got {json_kind(results)}"
        raise InvalidWebhook(PROVIDER, [WebhookProblem("results", reason)])
    reports: list[ProviderReport] = []
    ignored: list[tuple[str, str]] = []
    for index, entry in enumerate(results):
        path = f"results[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(WebhookProblem(path, f"expected an object, got {json_kind(entry)}"))
            continue
        item = Fields(entry, path, problems)
        before = len(problems)
        if "seenAt" in entry:
            report = _seen(item)
        elif "status" in entry:
            report = _delivery(item, ignored)
        elif "receivedAt" in entry:
            report = _inbound(item)
        elif "messageId" in entry and (times := _report_times(entry)):
            # Infobip posts every report type to one URL and adds types (a WhatsApp message
            # deleted, `deletedAt`): a timed report about a message in a shape Cadence does
            # not act on is listed, not a reason to refuse the reports beside it.
            ignored.append((path, "report " + ", ".join(times)))
            continue
        else:
            item.problem(
                None,
                "not a delivery report (`status`), seen report (`seenAt`) or inbound "
                "message (`receivedAt`)",
            )
            continue
        if report is not None and len(problems) == before:
            reports.append(report)
    if problems:
        raise InvalidWebhook(PROVIDER, problems)
    return reports, ignored


def _report_times(entry: Mapping[str, Any]) -> list[str]:
    """The time fields (`deletedAt` ...) of an entry, as every Infobip report has one."""
    return sorted(
        name
        for name, value in entry.items()
        if isinstance(name, str) and name.endswith("At") and isinstance(value, str) and value
    )


def _callback(item: Fields) -> tuple[str | None, str | None, str | None]:
    """(outbox id, tenant, idempotency key) from the callbackData Cadence sent, if it is ours."""
    raw = item.text("callbackData")
    if raw is None:
        return None, None, None
    try:
        data = json.loads(raw)
    except ValueError:
        return None, None, None  # someone else's callbackData: match by messageId alone
    if not isinstance(data, Mapping):
        return None, None, None

    def text(name: str) -> str | None:
        value = data.get(name)
        return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None

    return text("outbox"), text("tenant"), text("key")


def _channel_hint(item: Fields) -> str | None:
    """`channel` ("SMS", "WHATSAPP") when the report says; the outbox row says otherwise."""
    channel = item.text("channel")
    return channel.lower() if channel else None


def _delivery(item: Fields, ignored: list[tuple[str, str]]) -> ProviderReport | None:
    before = len(item.problems)
    status = item.obj("status", required=True)
    group = status.text("groupName", required=True) if status else None
    if group is not None and len(item.problems) == before and group.upper() not in _GROUPS:
        # A status group Infobip adds later: its report's other fields are not read, so
        # whatever they hold, they cannot refuse the reports beside it.
        ignored.append((item.path, f"status {group}"))
        return None
    message_id = item.text("messageId", required=True, number=True)
    status_name = status.text("name") if status else None
    description = status.text("description") if status else None
    error = item.obj("error")
    error_name = error.text("name") if error else None
    error_text = error.text("description") if error else None
    permanent = error.data.get("permanent") if error else None
    if permanent is not None and not isinstance(permanent, bool):
        assert error is not None
        error.problem("permanent", f"expected true or false, got {json_kind(permanent)}")
    if error is not None and _no_error(error, error_name):
        # Infobip sends `error` on every report; NO_ERROR's `permanent: false` says nothing
        # about a failure, so it must not make an UNDELIVERABLE report a soft bounce.
        error_name = error_text = permanent = None
    at = item.moment("doneAt") or item.moment("sentAt")
    if at is None and all(item.data.get(name) in (None, "") for name in ("doneAt", "sentAt")):
        # Given as null, they are as absent as left out: the report is refused, not dropped.
        item.problem(None, "no time: neither doneAt nor sentAt is given")
    outbox_ref, tenant, key = _callback(item)
    to = item.text("to", number=True)
    if message_id is None or group is None or at is None:
        return None
    outcome, event, bounce = _GROUPS[group.upper()]
    number_refused = group.upper() == "REJECTED" and (status_name or "").upper() in NUMBER_REFUSED
    if number_refused:
        outcome, event, bounce = _GROUPS["UNDELIVERABLE"]
    unpaid = group.upper() == "REJECTED" and _for_credit(status_name, error_name)
    if unpaid:
        # Not a failed send: the engine holds it and pauses its campaign until a resume.
        outcome = NO_CREDITS
    properties: dict[str, Any] = {}
    if event == "bounced":
        # Infobip says whether an error is permanent; one that does not say counts as hard.
        soft = bounce == "soft" or (permanent is False and not number_refused)
        properties["type"] = "soft" if soft else "hard"
        if outcome == "bounced" and properties["type"] == "soft":
            outcome = "soft_bounced"  # as Brevo's soft bounces are logged: not a hard one
        properties["reason"] = " ".join(
            part for part in (status_name, error_name, error_text or description) if part
        )
    if event is not None:
        properties["provider_event"] = status_name or group
    detail: dict[str, Any] = {"status": status_name or group, "group": group.upper()}
    for name, value in (("description", description), ("error", error_name),
                        ("error_description", error_text)):  # fmt: skip
        if value:
            detail[name] = value
    if permanent is not None:
        detail["permanent"] = permanent
    if unpaid:
        said = error_text or description
        detail["refusal"] = f"Infobip reports {status_name or group}" + (
            f": {said}" if said else ""
        )
    cost, currency = message_cost(item.data)
    return ProviderReport(
        provider=PROVIDER,
        position=item.path,
        kind=f"status:{group.upper()}",
        at=at,
        # A message sent again after a top-up can be refused for credit again: its time
        # tells that report from a redelivery of the first.
        dedupe=dedupe_key(
            PROVIDER,
            "status",
            message_id,
            group.upper(),
            status_name,
            *((at.isoformat(),) if unpaid else ()),
        ),
        outcome=outcome,
        events=((event, properties),) if event else (),
        channel=_channel_hint(item),
        provider_message_id=message_id,
        outbox_ref=outbox_ref,
        send_key=key,
        tenant=tenant,
        address=_phone(to),
        detail=detail,
        cost=cost,
        currency=currency,
    )


def _for_credit(status_name: str | None, error_name: str | None) -> bool:
    """Whether a REJECTED report refused the message for the account's balance: Infobip's
    status REJECTED_NOT_ENOUGH_CREDITS, or an error of that name (`EC_NOT_ENOUGH_CREDITS`)."""
    return (status_name or "").upper() == NO_CREDITS_STATUS or (error_name or "").upper().endswith(
        "NOT_ENOUGH_CREDITS"
    )


def _no_error(error: Fields, name: str | None) -> bool:
    """Whether Infobip's `error` object is its "no error" entry (group OK, id 0, NO_ERROR)."""
    if name is not None:
        return name.upper() == "NO_ERROR"
    return error.number("id") == 0 or (error.text("groupName") or "").upper() == "OK"


def _seen(item: Fields) -> ProviderReport | None:
    message_id = item.text("messageId", required=True, number=True)
    at = item.moment("seenAt")
    to = item.text("to", number=True)
    if message_id is None or at is None:
        if at is None and "seenAt" in item.data and item.data.get("seenAt") in (None, ""):
            item.problem("seenAt", "missing")
        return None
    return ProviderReport(
        provider=PROVIDER,
        position=item.path,
        kind="seen",
        at=at,
        dedupe=dedupe_key(PROVIDER, "seen", message_id),
        outcome="seen",
        # A WhatsApp message read by the person is, for conditions, an open.
        events=(("opened", {"provider_event": "seen"}),),
        channel="whatsapp",
        provider_message_id=message_id,
        address=_phone(to),
        detail={"status": "seen"},
    )


def _inbound(item: Fields) -> ProviderReport | None:
    message_id = item.text("messageId", required=True, number=True)
    sender = item.text("from", required=True, number=True)
    to = item.text("to", number=True)
    at = item.moment("receivedAt")
    if at is None and item.data.get("receivedAt") in (None, ""):
        item.problem("receivedAt", "missing")
    message = item.obj("message")
    whatsapp = message is not None or (item.text("integrationType") or "").upper() == "WHATSAPP"
    keyword = item.text("keyword")
    clean = item.text("cleanText")
    message_type: str | None = None
    if message is not None:
        message_type = (message.text("type") or "").upper() or None
        text = _whatsapp_text(message, message_type)
    else:
        text = item.text("text")
    if message_id is None or sender is None or at is None:
        return None
    channel = "whatsapp" if whatsapp else "sms"
    properties: dict[str, Any] = {"channel": channel, "text": text or ""}
    if keyword:
        properties["keyword"] = keyword
        if clean and clean != text:
            # What the person wrote after the keyword the number routes by (`ACME STOP`):
            # an opt-out is read from it too (cadence.engine.suppress).
            properties["clean_text"] = clean
    if message_type:
        properties["message_type"] = message_type
    events: list[tuple[str, dict[str, Any]]] = [("replied", properties)]
    return ProviderReport(
        provider=PROVIDER,
        position=item.path,
        kind="inbound",
        at=at,
        dedupe=dedupe_key(PROVIDER, "inbound", message_id, sender),
        events=tuple(events),
        channel=channel,
        provider_message_id=message_id,
        address=_phone(sender),
        inbound=True,
        detail={"to": to} if to else {},
    )


def _whatsapp_text(message: Fields, message_type: str | None) -> str | None:
    """The words of an inbound WhatsApp message: its text, button text or reply title."""
    if message_type in ("INTERACTIVE_BUTTON_REPLY", "INTERACTIVE_LIST_REPLY"):
        return message.text("title") or message.text("id")
    return message.text("text") or message.text("payload") or message.text("caption")


def _phone(number: str | None) -> str | None:
    """An Infobip number (digits, no `+`) in the E.164 form contacts are stored in.

    A number written with the international prefix 00 (`0044...`) is read as `+44...`,
    as contacts' numbers are: no country code starts with 0, so the prefix is never part
    of the number, and a STOP from it must find its sender.
    """
    if not number:
        return None
    digits = "".join(ch for ch in number if ch.isdigit())
    digits = digits[2:] if digits.startswith("00") else digits
    return f"+{digits}" if digits else None
