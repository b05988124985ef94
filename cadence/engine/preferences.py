"""A person's own choice of channels: what their preference page shows and may change.

A preference link names one send, and through it one contact. The page lists the
channels that reach the person (email, SMS, WhatsApp: those they have an address for) and
whether each is on. Only the person's own opt-outs can be changed there; what they cannot
undo from a link is shown with the reason and left alone:

- a bounced address or a spam complaint (the sender's reputation depends on keeping them);
- `unsubscribed` set on the contact by the sender's own system (the system of record);
- a missing, denied, withdrawn or unconfirmed consent, and SMS or WhatsApp without an
  opt-in: permission has to come from the person on that channel, not from a web form.

A change is stored as events (`unsubscribed` or `resubscribed`, naming the channel and the
send, `via` "preferences"), so analytics count it and `suppress` turns it into (or lifts)
the suppression, in the transaction that stores the event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cadence.engine import consent, suppress
from cadence.engine.store import sends as send_store
from cadence.engine.store.models import ConsentStatus, Contact, Suppression

# The channels a preference page offers, in the order it lists them.
PAGE_CHANNELS = ("email", "sms", "whatsapp")
CHANNEL_NAMES = {"email": "Email", "sms": "SMS", "whatsapp": "WhatsApp"}
VIA = "preferences"


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    """One channel on a person's preference page."""

    channel: str
    address: str  # masked: the page may be opened by whoever the email was forwarded to
    subscribed: bool
    changeable: bool
    note: str | None = None  # why the page cannot change it

    @property
    def name(self) -> str:
        """The channel as people call it."""
        return CHANNEL_NAMES.get(self.channel, self.channel)


def read_choices(
    session: Session, tenant: str, contact_id: str, now: dt.datetime
) -> list[ChannelChoice] | None:
    """The contact's channels as the page shows them; None when the contact is gone."""
    contact = session.get(Contact, (tenant, contact_id))
    if contact is None:
        return None
    attributes = contact.attributes or {}
    addresses = {
        channel: str(getattr(contact, send_store.ADDRESS_FIELD[channel]) or "").strip()
        for channel in PAGE_CHANNELS
    }
    # The addresses' suppressed forms (an email's in any case it was stored in).
    forms = {
        form
        for channel, address in addresses.items()
        if address
        for form in send_store.address_forms(channel, address)
    }
    rows = session.execute(
        select(Suppression.channel, Suppression.address, Suppression.reason).where(
            Suppression.tenant_id == tenant,
            or_(
                Suppression.contact_id == contact_id,
                Suppression.address.in_(sorted(forms)),
            ),
            or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
        )
    ).all()
    consents = consent.statuses(session, tenant, contact_id)
    choices = []
    for channel in PAGE_CHANNELS:
        address = addresses[channel]
        if not address:
            continue
        choices.append(_choice(channel, address, rows, consents.get(channel), attributes))
    return choices


def _choice(
    channel: str,
    address: str,
    suppressions: Sequence[Any],
    recorded: ConsentStatus | None,
    attributes: dict[str, Any],
) -> ChannelChoice:
    """One channel's state, the first reason the page cannot change it winning."""
    masked = mask(address)
    here = [row for row in suppressions if row.channel in send_store.suppressing_channels(channel)]
    fixed: str | None = None
    forms = send_store.address_forms(channel, address)
    if any(row.address is not None and row.address in forms for row in here):
        fixed = "this address bounced, so nothing is sent to it"
    elif any(row.reason == suppress.COMPLAINED for row in here):
        fixed = "you reported a message as spam, so nothing is sent here"
    elif attributes.get(suppress.UNSUBSCRIBED) is True:
        fixed = "you are unsubscribed in the sender's own records"
    elif recorded in (ConsentStatus.DENIED, ConsentStatus.WITHDRAWN):
        fixed = "you withdrew your consent"
    elif recorded is ConsentStatus.PENDING:
        fixed = "your sign-up is not confirmed yet"
    elif (
        channel in consent.OPT_IN_CHANNELS
        and recorded is not ConsentStatus.GRANTED
        and attributes.get(f"{channel}_opt_in") is not True
    ):
        fixed = f"you have not opted in to {CHANNEL_NAMES[channel]} messages"
    if fixed is not None:
        return ChannelChoice(channel, masked, False, False, fixed)
    opted_out = any(row.address is None and row.reason == suppress.UNSUBSCRIBED for row in here)
    return ChannelChoice(channel, masked, not opted_out, True)


def changes(choices: Sequence[ChannelChoice], wanted: Collection[str]) -> list[tuple[str, str]]:
    """The (event name, channel) pairs that make the changeable channels on exactly `wanted`."""
    made = []
    for choice in choices:
        if not choice.changeable:
            continue
        on = choice.channel in wanted
        if on and not choice.subscribed:
            made.append((suppress.RESUBSCRIBED, choice.channel))
        elif not on and choice.subscribed:
            made.append((suppress.UNSUBSCRIBED, choice.channel))
    return made


def opted_out(choices: Sequence[ChannelChoice], channel: str) -> bool:
    """Whether the person's own opt-out already holds on `channel`: another unsubscribe
    (a mail client's one-click, then the page's button) has nothing left to change."""
    return any(c.channel == channel and c.changeable and not c.subscribed for c in choices)


def mask(address: str) -> str:
    """Enough of an address for its owner to recognise it: `a•••@example.com`, `•••••4567`."""
    local, at, domain = address.partition("@")
    if at:
        return f"{local[:1]}•••@{domain}"
    digits = address.strip()
    return "•" * max(0, len(digits) - 4) + digits[-4:]
