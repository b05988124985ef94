"""Provider reports matched to sends and contacts, and written as send-log outcomes and events.

A report about a send is matched by (provider, provider message id) first, else by what
Cadence handed the provider to find it again (the outbox id in Brevo's X-Mailin-custom,
Infobip's callbackData): a report can arrive before the engine has recorded the provider's
id. An inbound message is matched to the tenant's contacts with that phone number. What
cannot be matched is reported, never guessed.

Events carry the send's template, campaign, variant and idempotency key (`send`), as the
engine's own engagement records do, so `opened(t1)`, A/B verdicts and scopes count them.
Every write has a deterministic key: an event's dedupe key, a log entry's `detail.dedupe`;
the same webhook ingested twice adds nothing the second time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cadence.adapters.inbound import ParsedWebhook, ProviderReport
from cadence.adapters.inbound.reports import dedupe_key
from cadence.engine.clock import read_instant
from cadence.engine.delivery import REPORT_KEY
from cadence.engine.store import importer
from cadence.engine.store.bulk import insert_rows
from cadence.engine.store.models import (
    Campaign,
    CampaignVersion,
    Contact,
    OutboxMessage,
    OutboxStatus,
    SendLog,
)
from cadence.engine.store.records import EventRecord

CHUNK = 500
# WhatsApp's customer-service window, opened by each message the person sends.
WHATSAPP_WINDOW = dt.timedelta(hours=24)
WINDOW_ATTRIBUTE = "whatsapp_session_until"
# The channels each provider sends on: a report naming a send on another is not about it.
PROVIDER_CHANNELS = {"brevo": frozenset({"email"}), "infobip": frozenset({"sms", "whatsapp"})}


@dataclass(frozen=True)
class Unmatched:
    """A report that names no send or contact of this tenant: where it was, and why."""

    position: str
    kind: str
    reason: str

    def __str__(self) -> str:
        """`results[1] (status:DELIVERED): no send with messageId ...`."""
        return f"{self.position} ({self.kind}): {self.reason}"


@dataclass
class WebhookReport:
    """What one webhook did: reports matched, log entries and events written, duplicates."""

    provider: str
    tenant: str
    reports: int = 0
    matched: int = 0
    logged: int = 0
    events: int = 0
    duplicates: int = 0
    enrolled: int = 0
    unmatched: list[Unmatched] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people: counts of what was written and what was not."""
        parts = [
            f"{self.provider}: {self.reports} report(s)",
            f"{self.matched} matched",
            f"{self.logged} logged",
            f"{self.events} event(s)",
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates} already ingested")
        if self.unmatched:
            parts.append(f"{len(self.unmatched)} unmatched")
        if self.ignored:
            parts.append(f"{len(self.ignored)} ignored")
        if self.enrolled:
            parts.append(f"{self.enrolled} enrolled")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON data."""
        return {
            "provider": self.provider,
            "tenant": self.tenant,
            "reports": self.reports,
            "matched": self.matched,
            "logged": self.logged,
            "events": self.events,
            "duplicates": self.duplicates,
            "enrolled": self.enrolled,
            "unmatched": [
                {"position": u.position, "kind": u.kind, "reason": u.reason} for u in self.unmatched
            ],
            "ignored": [{"position": p, "what": w} for p, w in self.ignored],
        }


@dataclass(frozen=True)
class _Send:
    """The outbox row a report is about, with its campaign's name."""

    outbox_id: int
    contact_id: str
    channel: str
    key: str
    template: str | None
    variant: str | None
    version_id: int | None
    provider: str | None
    provider_message_id: str | None
    campaign: str | None = None


@dataclass
class IngestPlan:
    """What a webhook will write, worked out before anything is: the engine reads the
    segment memberships of `contacts` in between, as segment entry needs the state before."""

    result: WebhookReport
    logs: list[tuple[ProviderReport, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[ProviderReport, EventRecord]] = field(default_factory=list)
    # The log entries `write` stored (not those stored before): what the engine acts on.
    written_logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def contacts(self) -> list[str]:
        """The contacts the events are about."""
        return sorted({event.contact_id for _, event in self.events if event.contact_id})


def plan(session: Session, tenant_id: str, parsed: ParsedWebhook, now: dt.datetime) -> IngestPlan:
    """Match the reports to sends and contacts; the log entries and events they mean."""
    result = WebhookReport(parsed.provider, tenant_id, reports=len(parsed.reports))
    result.ignored = list(parsed.ignored)
    work = IngestPlan(result)
    about_sends = [r for r in parsed.reports if not r.inbound]
    sends = _match_sends(session, tenant_id, parsed.provider, about_sends, result)
    for report in about_sends:
        send = sends.get(id(report))
        if send is None:
            continue
        result.matched += 1
        _add(work, tenant_id, report, send, send.contact_id, now)
    replies = [r for r in parsed.reports if r.inbound]
    if replies:
        _match_replies(session, tenant_id, replies, work, now)
    _lock_sends(session, {row["outbox_id"] for _, row in work.logs})
    return work


def write(
    session: Session, tenant_id: str, work: IngestPlan, now: dt.datetime
) -> list[EventRecord]:
    """Write the plan's new log entries and events (those not stored before); the new events."""
    result = work.result
    stored = _logged_keys(session, {row["outbox_id"] for _, row in work.logs})
    fresh_logs: list[dict[str, Any]] = []
    written: set[int] = set()  # id() of reports that wrote something
    for report, row in work.logs:
        mark = (row["outbox_id"], row["detail"][REPORT_KEY])
        if mark in stored:
            continue
        stored.add(mark)
        fresh_logs.append(row)
        written.add(id(report))
    if fresh_logs:
        insert_rows(session, SendLog.__table__, fresh_logs)  # type: ignore[arg-type]
    work.written_logs = fresh_logs
    fresh, _present = importer.insert_events(
        session, tenant_id, [e for _, e in work.events], now=now
    )
    # Two reports of one thing (Brevo's unique and plain open) share keys: the first counts.
    unclaimed = {event.dedupe_key for event in fresh}
    for report, event in work.events:
        if event.dedupe_key in unclaimed:
            unclaimed.discard(event.dedupe_key)
            written.add(id(report))
    _open_whatsapp_windows(session, tenant_id, fresh, now)
    result.logged = len(fresh_logs)
    result.events = len(fresh)
    acted = {id(report) for report, _ in work.logs} | {id(report) for report, _ in work.events}
    result.duplicates = len(acted - written)
    return fresh


def _open_whatsapp_windows(
    session: Session, tenant_id: str, events: Sequence[EventRecord], now: dt.datetime
) -> None:
    """A WhatsApp message from the person opens WhatsApp's 24-hour customer-service window.

    The sink reads it from the contact's `whatsapp_session_until` (docs/channels.md): inside
    it, free-form text may go instead of an approved template.
    """
    until: dict[str, dt.datetime] = {}
    for event in events:
        if (
            event.name == "replied"
            and event.contact_id is not None
            and event.properties.get("channel") == "whatsapp"
        ):
            end = event.at + WHATSAPP_WINDOW
            until[event.contact_id] = max(until.get(event.contact_id, end), end)
    if not until:
        return
    contacts = session.scalars(
        select(Contact).where(Contact.tenant_id == tenant_id, Contact.id.in_(sorted(until)))
    ).all()
    for contact in contacts:
        attributes = dict(contact.attributes or {})
        current = attributes.get(WINDOW_ATTRIBUTE)
        known = read_instant(current) if isinstance(current, str) else None
        if known is not None and known >= until[contact.id]:
            continue
        stamp = until[contact.id].astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        attributes[WINDOW_ATTRIBUTE] = stamp
        contact.attributes = attributes
        contact.updated_at = now


def _add(
    work: IngestPlan,
    tenant_id: str,
    report: ProviderReport,
    send: _Send | None,
    contact_id: str,
    now: dt.datetime,
) -> None:
    """The log entry (for a report about a send) and the events of one report, one contact."""
    # A report cannot be about the future: a provider's clock ahead of ours counts as now.
    at = min(report.at, now)
    if send is not None and (report.outcome is not None or report.inbound):
        detail = dict(report.detail)
        # The key marks the entry as the provider's report (`delivery.logged_outcome`).
        detail[REPORT_KEY] = dedupe_key(report.provider, report.dedupe, "log", contact_id)
        if report.at != at:
            detail["reported_at"] = report.at.isoformat()
        work.logs.append((
            report,
            {
                "tenant_id": tenant_id, "outbox_id": send.outbox_id, "contact_id": contact_id,
                "channel": send.channel, "at": at,
                "outcome": report.outcome if report.outcome is not None else "replied",
                "provider": report.provider,
                "provider_message_id": (
                    send.provider_message_id if report.inbound
                    else report.provider_message_id or send.provider_message_id
                ),
                "cost": report.cost, "currency": report.currency, "detail": detail,
            },
        ))  # fmt: skip
    for name, properties in report.events:
        props: dict[str, Any] = {"provider": report.provider}
        if send is not None:
            props.update({
                "channel": send.channel, "template": send.template, "campaign": send.campaign,
                "variant": send.variant, "send": send.key,
            })  # fmt: skip
            if not report.inbound:
                props["provider_message_id"] = (
                    report.provider_message_id or send.provider_message_id
                )
        props.update(properties)
        work.events.append((
            report,
            EventRecord(
                contact_id=contact_id, name=name, at=at,
                properties={k: v for k, v in props.items() if v is not None},
                dedupe_key=dedupe_key(report.provider, report.dedupe, name, contact_id),
                source=report.provider,
            ),
        ))  # fmt: skip


def _match_sends(
    session: Session,
    tenant_id: str,
    provider: str,
    reports: Sequence[ProviderReport],
    result: WebhookReport,
) -> dict[int, _Send]:
    """The send each report is about (by id() of the report); the rest go to `unmatched`."""
    by_provider_id: dict[str, _Send] = {}
    wanted_ids = sorted({v for r in reports for v in _id_variants(r.provider_message_id)})
    for chunk in _chunks(wanted_ids):
        for row in _sends(
            session,
            tenant_id,
            OutboxMessage.provider == provider,
            OutboxMessage.provider_message_id.in_(chunk),
        ):
            if row.provider_message_id is not None:
                by_provider_id[row.provider_message_id] = row
    by_outbox: dict[int, _Send] = {}
    refs = sorted({int(r.outbox_ref) for r in reports if r.outbox_ref and r.outbox_ref.isdigit()})
    for id_chunk in _chunks(refs):
        for row in _sends(session, tenant_id, OutboxMessage.id.in_(id_chunk)):
            by_outbox[row.outbox_id] = row
    by_key: dict[str, _Send] = {}
    keys = sorted({r.send_key for r in reports if r.send_key})
    for key_chunk in _chunks(keys):
        for row in _sends(session, tenant_id, OutboxMessage.idempotency_key.in_(key_chunk)):
            by_key[row.key] = row
    candidates: dict[int, tuple[ProviderReport, _Send, bool]] = {}
    for report in reports:
        if report.tenant is not None and report.tenant != tenant_id:
            result.unmatched.append(
                Unmatched(report.position, report.kind, f"a send of tenant {report.tenant!r}")
            )
            continue
        send = next(
            (by_provider_id[v] for v in _id_variants(report.provider_message_id)
             if v in by_provider_id),
            None,
        )  # fmt: skip
        direct = send is not None
        if send is None and report.outbox_ref and report.outbox_ref.isdigit():
            send = by_outbox.get(int(report.outbox_ref))
        if send is None and report.send_key:
            send = by_key.get(report.send_key)
        if send is None:
            result.unmatched.append(Unmatched(report.position, report.kind, _not_found(report)))
            continue
        candidates[id(report)] = (report, send, direct)
    contacts = _contact_addresses(
        session, tenant_id, {s.contact_id for _, s, _ in candidates.values()}
    )
    names = _campaign_names(session, {s.version_id for _, s, _ in candidates.values()})
    found: dict[int, _Send] = {}
    for marker, (report, send, direct) in candidates.items():
        problem = _mismatch(report, send, direct, contacts.get(send.contact_id, (None, None)))
        if problem is not None:
            result.unmatched.append(Unmatched(report.position, report.kind, problem))
            continue
        campaign = names.get(send.version_id) if send.version_id is not None else None
        found[marker] = dataclasses.replace(send, campaign=campaign)
    return found


def _mismatch(
    report: ProviderReport, send: _Send, direct: bool, address: tuple[str | None, str | None]
) -> str | None:
    """Why a send found by the reference the provider echoed is not the one reported, if so.

    A match on the provider's own message id is certain. An echoed outbox id or key is
    checked against the send's channel and address (the address the provider names must
    be the contact's), else its provider, so that someone else's reference (another
    system's custom header) is reported instead of misread.
    """
    channels = PROVIDER_CHANNELS.get(report.provider, frozenset())
    if send.channel not in channels:
        return f"send {send.outbox_id} is a {send.channel} send, not one {report.provider} makes"
    if direct:
        return None
    email, phone = address
    if report.address is not None:
        if send.channel == "email" and email is not None:
            if email.lower() != report.address:
                return f"send {send.outbox_id} went to another address than {report.address}"
            return None
        if send.channel != "email" and phone is not None:
            if _digits(phone) != _digits(report.address):
                return f"send {send.outbox_id} went to another number than {report.address}"
            return None
    if send.provider is not None and send.provider != report.provider:
        return f"send {send.outbox_id} went through {send.provider}, not {report.provider}"
    return None


def _not_found(report: ProviderReport) -> str:
    """Why no send was found, naming what was looked for."""
    looked = []
    if report.provider_message_id:
        looked.append(f"message id {report.provider_message_id!r}")
    if report.outbox_ref:
        looked.append(f"outbox id {report.outbox_ref}")
    if report.send_key:
        looked.append(f"send key {report.send_key!r}")
    if not looked:
        return "names no message (no message id and no Cadence reference)"
    return "no send of this tenant with " + " or ".join(looked)


def _match_replies(
    session: Session,
    tenant_id: str,
    replies: Sequence[ProviderReport],
    work: IngestPlan,
    now: dt.datetime,
) -> None:
    """Inbound messages: the send a reply says it answers (an email's In-Reply-To), else
    every contact with the sender's number or address, and their latest send there."""
    answered = _answered_sends(session, tenant_id, replies)
    owners = _owners(session, tenant_id, [r for r in replies if id(r) not in answered])
    latest: dict[tuple[str, str], _Send | None] = {}
    for report in replies:
        send = answered.get(id(report))
        if send is not None:
            work.result.matched += 1
            _add(work, tenant_id, report, send, send.contact_id, now)
            continue
        channel = report.channel or "sms"
        contacts = sorted(owners.get((channel == "email", report.address or ""), []))
        if not contacts:
            what = "address" if channel == "email" else "number"
            work.result.unmatched.append(
                Unmatched(report.position, report.kind, f"no contact with {what} {report.address}")
            )
            continue
        work.result.matched += 1
        for contact_id in contacts:
            if (contact_id, channel) not in latest:
                latest[(contact_id, channel)] = _latest_send(
                    session, tenant_id, contact_id, channel
                )
            _add(work, tenant_id, report, latest[(contact_id, channel)], contact_id, now)


def _answered_sends(
    session: Session, tenant_id: str, replies: Sequence[ProviderReport]
) -> dict[int, _Send]:
    """The send each reply names as the one it answers, on its channel (by id() of it)."""
    wanted = sorted({v for r in replies for v in _id_variants(r.answers)})
    by_message_id: dict[str, _Send] = {}
    for chunk in _chunks(wanted):
        for row in _sends(session, tenant_id, OutboxMessage.provider_message_id.in_(chunk)):
            if row.provider_message_id is not None:
                by_message_id[row.provider_message_id] = row
    found: dict[int, _Send] = {}
    for report in replies:
        send = next(
            (by_message_id[v] for v in _id_variants(report.answers) if v in by_message_id), None
        )
        if send is not None and send.channel == (report.channel or "sms"):
            found[id(report)] = send
    names = _campaign_names(session, {s.version_id for s in found.values()})
    return {
        marker: dataclasses.replace(send, campaign=names.get(send.version_id or -1))
        for marker, send in found.items()
    }


def _owners(
    session: Session, tenant_id: str, replies: Sequence[ProviderReport]
) -> dict[tuple[bool, str], list[str]]:
    """The contacts with each sender's address, keyed (by email?, address as reported).

    Numbers are compared in E.164, as contacts store them and Infobip's are read;
    addresses without regard to case, as mail servers treat them in practice.
    """
    numbers = sorted({r.address for r in replies if r.address and r.channel != "email"})
    addresses = sorted({r.address for r in replies if r.address and r.channel == "email"})
    owners: dict[tuple[bool, str], list[str]] = {}
    for chunk in _chunks(numbers):
        for contact_id, phone in session.execute(
            select(Contact.id, Contact.phone).where(
                Contact.tenant_id == tenant_id, Contact.phone.in_(chunk)
            )
        ):
            owners.setdefault((False, str(phone)), []).append(str(contact_id))
    for chunk in _chunks(addresses):
        for contact_id, address in session.execute(
            select(Contact.id, Contact.email).where(
                Contact.tenant_id == tenant_id, func.lower(Contact.email).in_(chunk)
            )
        ):
            owners.setdefault((True, str(address).lower()), []).append(str(contact_id))
    return owners


def _latest_send(session: Session, tenant_id: str, contact_id: str, channel: str) -> _Send | None:
    """The contact's most recent send on `channel`: what a reply there answers."""
    sends = _sends(
        session,
        tenant_id,
        OutboxMessage.tenant_id == tenant_id,
        OutboxMessage.contact_id == contact_id,
        OutboxMessage.channel == channel,
        OutboxMessage.status == OutboxStatus.SENT.value,
        order=True,
    )
    if not sends:
        return None
    send = sends[0]
    if send.version_id is None:
        return send
    names = _campaign_names(session, {send.version_id})
    return dataclasses.replace(send, campaign=names.get(send.version_id))


def _sends(session: Session, tenant_id: str, *where: Any, order: bool = False) -> list[_Send]:
    """The tenant's outbox rows matching `where`, as `_Send`s (without campaign names).

    The tenant is checked on the rows, not in SQL, unless the lookup is by contact: given
    it, SQLite's planner picks a tenant-led index over the id or message-id lookup.
    """
    query = select(
        OutboxMessage.tenant_id, OutboxMessage.id, OutboxMessage.contact_id,
        OutboxMessage.channel, OutboxMessage.idempotency_key, OutboxMessage.template,
        OutboxMessage.variant, OutboxMessage.version_id, OutboxMessage.provider,
        OutboxMessage.provider_message_id,
    ).where(*where)  # fmt: skip
    if order:
        query = query.order_by(OutboxMessage.created_at.desc()).limit(1)
    return [_Send(*row[1:]) for row in session.execute(query) if row[0] == tenant_id]


def _campaign_names(session: Session, version_ids: Iterable[int | None]) -> dict[int, str]:
    """Campaign name per version id."""
    wanted = sorted({v for v in version_ids if v is not None})
    names: dict[int, str] = {}
    for chunk in _chunks(wanted):
        for version_id, name in session.execute(
            select(CampaignVersion.id, Campaign.name)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(CampaignVersion.id.in_(chunk))
        ):
            names[int(version_id)] = str(name)
    return names


def _contact_addresses(
    session: Session, tenant_id: str, contact_ids: Iterable[str]
) -> dict[str, tuple[str | None, str | None]]:
    """(email, phone) per contact."""
    wanted = sorted(set(contact_ids))
    found: dict[str, tuple[str | None, str | None]] = {}
    for chunk in _chunks(wanted):
        for contact_id, email, phone in session.execute(
            select(Contact.id, Contact.email, Contact.phone).where(
                Contact.tenant_id == tenant_id, Contact.id.in_(chunk)
            )
        ):
            found[str(contact_id)] = (email, phone)
    return found


def _lock_sends(session: Session, outbox_ids: set[int]) -> None:
    """Hold the sends a webhook logs to until it commits (PostgreSQL).

    Two deliveries of one webhook at once would both find no log entry and both write
    one; the second now waits here and then finds the first's entries. Events need no
    lock: their dedupe keys are unique. SQLite runs one writer at a time anyway.
    """
    if not outbox_ids or session.get_bind().dialect.name != "postgresql":
        return
    for chunk in _chunks(sorted(outbox_ids)):
        session.execute(
            select(OutboxMessage.id)
            .where(OutboxMessage.id.in_(chunk))
            .order_by(OutboxMessage.id)
            .with_for_update(key_share=True)
        ).all()


def _logged_keys(session: Session, outbox_ids: set[int]) -> set[tuple[int, str]]:
    """(outbox id, dedupe key) of the provider reports already in these sends' logs."""
    marks: set[tuple[int, str]] = set()
    for chunk in _chunks(sorted(outbox_ids)):
        for outbox_id, detail in session.execute(
            select(SendLog.outbox_id, SendLog.detail).where(SendLog.outbox_id.in_(chunk))
        ):
            key = (detail or {}).get(REPORT_KEY)
            if outbox_id is not None and isinstance(key, str):
                marks.add((int(outbox_id), key))
    return marks


def _id_variants(message_id: str | None) -> list[str]:
    """A provider message id as stored: Brevo's come with angle brackets, or without."""
    if not message_id:
        return []
    bare = message_id.strip().strip("<>")
    return sorted({message_id, bare, f"<{bare}>"})


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def _chunks(items: Sequence[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])
