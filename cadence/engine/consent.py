"""A contact's consent per channel, and double opt-in: asked, then confirmed by the person.

The send gates read consents (`Engine`'s `_Gates`): a denied, withdrawn or unconfirmed
consent stops every send on the channel, and SMS and WhatsApp need one granted (or the
`sms_opt_in` / `whatsapp_opt_in` attribute). Here consents are recorded: as the product's
sign-up form or CRM knows them, or as a double opt-in that the person confirms through a
link carrying a single-use token.

Every change is also an event on the contact (`consent_granted`, `consent_requested`,
`consent_denied`, `consent_withdrawn`, with `channel` and `source`), so campaigns can start
on it (`when consent_granted send email welcome`) and the record says when and why. Such
an event pushed in by the product (`record_pushed`) records the consent it reports.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cadence.dsl.compiled import CompiledCampaign, CompiledTemplate
from cadence.engine import suppress
from cadence.engine.clock import as_utc
from cadence.engine.store import sends as send_store
from cadence.engine.store.models import Consent, ConsentStatus, Contact
from cadence.engine.store.records import CONSENT_EVENT_STATUSES, EventRecord

# Channels that send nothing without the person's opt-in: consent granted, or the
# `sms_opt_in` / `whatsapp_opt_in` attribute (the send gates and the preference page).
OPT_IN_CHANNELS = frozenset({"sms", "whatsapp"})
# 32 random bytes: a confirmation link nobody can guess.
TOKEN_BYTES = 32
# How long a confirmation link works after the request that issued it, as Mailchimp's and
# Brevo's double opt-in links do: a link found in an old mailbox confirms nothing. A new
# request (consent `pending` again) issues a new token for a new period.
TOKEN_VALID_FOR = dt.timedelta(days=7)
# The template variable that holds the confirmation link: a template using it is the
# confirmation message, the one send a pending consent on its channel lets through.
CONFIRM_URL = "confirm_url"
# Why a confirmation message is not sent to a contact with nothing to confirm.
NOTHING_TO_CONFIRM = "no pending opt-in to confirm"


class ConsentError(ValueError):
    """A consent that cannot be recorded: unknown contact, channel or status."""


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """What recording a consent did: its status, and the token a pending one waits on;
    `expired` for a pending one whose confirmation link is too old to confirm it."""

    contact_id: str
    channel: str
    status: ConsentStatus
    token: str | None = None
    expired: bool = False


def record(
    session: Session,
    tenant: str,
    contact_id: str,
    channel: str,
    status: str,
    *,
    source: str | None,
    now: dt.datetime,
) -> tuple[ConsentChange, EventRecord]:
    """Store the contact's consent on a channel; a pending one gets a fresh token."""
    problem = send_store.consent_channel_problem(channel)
    if problem is not None:
        raise ConsentError(problem)
    try:
        wanted = ConsentStatus(status)
    except ValueError:
        statuses = ", ".join(s.value for s in ConsentStatus)
        raise ConsentError(f"consent status {status!r} is none of {statuses}") from None
    if session.get(Contact, (tenant, contact_id)) is None:
        raise ConsentError(f"no contact {contact_id!r}")
    token = secrets.token_urlsafe(TOKEN_BYTES) if wanted is ConsentStatus.PENDING else None
    send_store.set_consent(
        session, tenant, contact_id, channel, wanted, now=now, source=source,
        double_opt_in_token=token,
    )  # fmt: skip
    event = _event(contact_id, channel, wanted, source, now)
    return ConsentChange(contact_id, channel, wanted, token), event


def record_pushed(session: Session, tenant: str, events: Sequence[EventRecord]) -> None:
    """Record the consents that pushed consent events report (`consent_withdrawn` with
    `channel` email ...), as `record` does, at each event's instant, in time order.

    The product's backend may send a consent change as an event (`POST /events`, `cadence
    events push`) rather than through the consent API; it stops or lets through sends as
    that call would, live as in a dry-run. One older than the consent on record (a
    backfill) changes nothing: the latest decides.
    """
    for event in sorted(events, key=lambda e: e.at):
        wanted = status_of_event(event.name)
        channel = event.properties.get("channel")
        if wanted is None or event.contact_id is None or not isinstance(channel, str):
            continue
        held = session.scalar(
            select(Consent.updated_at).where(
                Consent.tenant_id == tenant,
                Consent.contact_id == event.contact_id,
                Consent.channel == channel,
            )
        )
        if held is not None and as_utc(held) > event.at:
            continue
        source = event.properties.get("source")
        record(
            session, tenant, event.contact_id, channel, wanted.value,
            source=source if isinstance(source, str) else None, now=event.at,
        )  # fmt: skip


def confirm(
    session: Session, tenant: str, token: str, now: dt.datetime
) -> tuple[ConsentChange, EventRecord | None] | None:
    """Grant the pending consent waiting on `token` (once); None for an unknown or used one.

    The person confirming signs up again on that channel: their own earlier opt-out there
    (an unsubscribe, a STOP) is lifted, as the preference page's resubscribe lifts it;
    bounces and complaints stay. A token older than `TOKEN_VALID_FOR` grants nothing and
    changes nothing: the change comes back `expired`, with no event.
    """
    waiting = send_store.pending_double_opt_in(session, tenant, token, lock=True)
    if waiting is None:
        return None
    if _expired(waiting, now):
        return ConsentChange(waiting.contact_id, waiting.channel, ConsentStatus.PENDING, token,
                             expired=True), None  # fmt: skip
    confirmed = send_store.confirm_double_opt_in(session, waiting, now=now)
    suppress.resubscribe(session, tenant, confirmed.channel, [confirmed.contact_id], now)
    change = ConsentChange(confirmed.contact_id, confirmed.channel, ConsentStatus.GRANTED)
    source = "double opt-in"
    return change, _event(change.contact_id, change.channel, change.status, source, now)


def pending(session: Session, tenant: str, token: str, now: dt.datetime) -> ConsentChange | None:
    """The pending consent a token confirms, without confirming it (for the page that asks);
    `expired` when the token is too old to confirm it."""
    row = send_store.pending_double_opt_in(session, tenant, token)
    if row is None:
        return None
    return ConsentChange(row.contact_id, row.channel, ConsentStatus.PENDING, token,
                         expired=_expired(row, now))  # fmt: skip


def is_confirmation(template: CompiledTemplate) -> bool:
    """Whether the template asks a person to confirm a double opt-in (it uses `confirm_url`)."""
    return CONFIRM_URL in template.variables


def sends_confirmation(campaign: CompiledCampaign, template: str | None) -> bool:
    """Whether a send of the campaign's `template` is its confirmation message."""
    found = campaign.templates.get(template) if template is not None else None
    return found is not None and is_confirmation(found)


def pending_token(session: Session, tenant: str, contact_id: str, channel: str) -> str | None:
    """The token of the contact's pending consent on `channel`, for its confirmation link."""
    return session.scalar(
        select(Consent.double_opt_in_token).where(
            Consent.tenant_id == tenant,
            Consent.contact_id == contact_id,
            Consent.channel == channel,
            Consent.status == ConsentStatus.PENDING.value,
        )
    )


def status_of_event(name: str) -> ConsentStatus | None:
    """The consent a consent event reports (`consent_requested`: pending), else None."""
    return _STATUS_OF_EVENT.get(name)


def statuses(session: Session, tenant: str, contact_id: str) -> dict[str, ConsentStatus]:
    """The contact's recorded consents, by channel."""
    return {
        channel: ConsentStatus(status)
        for channel, status in session.execute(
            select(Consent.channel, Consent.status).where(
                Consent.tenant_id == tenant, Consent.contact_id == contact_id
            )
        )
    }


_STATUS_OF_EVENT = CONSENT_EVENT_STATUSES
_EVENT_NAMES = {status: name for name, status in _STATUS_OF_EVENT.items()}
# The events a consent change stores, which the engine acts on whatever campaigns read.
CONSENT_EVENTS = frozenset(_EVENT_NAMES.values())


def _expired(row: Consent, now: dt.datetime) -> bool:
    """Whether the pending consent's confirmation link is past its `TOKEN_VALID_FOR`."""
    return row.requested_at is not None and as_utc(row.requested_at) + TOKEN_VALID_FOR <= now


def _event(
    contact_id: str, channel: str, status: ConsentStatus, source: str | None, now: dt.datetime
) -> EventRecord:
    properties = {"channel": channel, **({"source": source} if source else {})}
    return EventRecord(contact_id, _EVENT_NAMES[status], now, properties)
