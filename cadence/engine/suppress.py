"""Events that stop future sends: unsubscribes, bounces and complaints become suppressions.

A tracked unsubscribe, a provider's bounce or a spam complaint arrives as an event. Left as
events they would only be facts for conditions, and the next step would send again; here
they become rows of the suppression list, which every send checks (at its step, and again
when a queued send is delivered). They are written in the transaction that stores the
events, so an event is never stored without its suppression.

- `unsubscribed`: the person, on the channel the event names, else the channel of the
  message it names, else every channel that reaches the person.
- `complained` (a spam report): the person, on that channel (email when nothing says).
- `replied` with an opt-out keyword (`STOP`, `UNSUBSCRIBE` ... as its whole `text` or
  `body`, or as the `keyword` a provider found in it, as Infobip reports inbound SMS, or
  as its `clean_text`, the text after a routing keyword: `ACME STOP`), as
  an SMS or WhatsApp reply to "Reply STOP to opt out", is an unsubscribe: it is stored
  with the `unsubscribed` event it stands for (`store_opt_out_replies`: on the channel of
  the reply, its `channel`, else its message's, else SMS; naming its message; `via`
  "reply"), so that everything that reads unsubscribes (the `unsubscribed` condition,
  triggers, the report, the suppression below) reads it as it reads an unsubscribe link.
  A later `START` or `UNSTOP` reply lifts the person's opt-outs on that channel (not
  bounces, complaints, nor an unsubscribe from every channel); of opt-outs and such
  replies stored together, the latest decides.
- `resubscribed` (the person's preference page turning a channel back on): lifts their own
  opt-outs on that channel (its `channel`, else its message's, else every channel). An
  unsubscribe from every channel is replaced by opt-outs on each of the others, so only
  the named channel comes back. Bounces and complaints stay. Stored together with an
  `unsubscribed` for the same channel, the opt-out wins.
- A confirmed double opt-in (cadence.engine.consent) lifts the person's opt-outs on its
  channel as `resubscribed` does: they asked for that channel again, by their own link.
- `bounced`: the address, on that channel (email when nothing says). A hard bounce (or one
  that does not say) suppresses at once; soft bounces (`type` "soft", as providers report
  a full mailbox or a deferral) suppress from the third on that same channel within 30
  days. The address is suppressed, not the person: a contact given a new address can be
  sent to again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cadence.engine.delivery import is_soft_bounce
from cadence.engine.evaluate import message_of
from cadence.engine.store import sends as send_store
from cadence.engine.store.importer import insert_events
from cadence.engine.store.models import Contact, Event, OutboxMessage, Suppression
from cadence.engine.store.records import EventRecord

UNSUBSCRIBED = "unsubscribed"
COMPLAINED = "complained"
BOUNCED = "bounced"
REPLIED = "replied"
RESUBSCRIBED = "resubscribed"
# Opt-out words, as `_keyword` folds them: the carriers' (CTIA: STOP, STOPALL, UNSUBSCRIBE,
# CANCEL, END, QUIT, OPT OUT / OPT-OUT), REVOKE (the FCC's 2025 revocation rule), ARRET /
# ARRÊT (French, required in Canada) and WhatsApp's marketing opt-out button "Stop
# promotions". A reply that is one of them, whatever its case, accents, spacing and
# punctuation, unsubscribes the person on that channel. Migration 0012 keeps its own copy of
# these words and `_keyword`: the rule it applied to replies stored before, not a later one.
STOP_KEYWORDS = frozenset(
    {
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "ARRET",
        "STOPPROMOTIONS",
    }
)  # fmt: skip
# Opt-in words (CTIA: START, UNSTOP): a reply that is one of them lifts that channel's
# opt-out, as carriers expect. YES is left out: it answers too many other questions.
START_KEYWORDS = frozenset({"START", "UNSTOP"})
SOFT_BOUNCES_TO_SUPPRESS = 3
SOFT_BOUNCE_WINDOW = dt.timedelta(days=30)


def store_opt_out_replies(
    session: Session, tenant_id: str, events: Sequence[EventRecord], now: dt.datetime
) -> list[EventRecord]:
    """Store the `unsubscribed` events that the opt-out replies among the newly stored
    `events` stand for; returns those written (none for a reply stored before).

    One per opt-out reply: at its instant, on its channel, naming its message as the reply
    does, with `via` "reply" (an unsubscribe link's says "link"). Call it before
    `record_suppressions`, with the events it returns among the rest.
    """
    made = []
    for reply in events:
        if reply.contact_id is None or reply.name != REPLIED or not is_stop_reply(reply):
            continue
        channel = _channel(session, tenant_id, reply, "sms")
        kept = {k: reply.properties[k] for k in _MESSAGE_PROPERTIES if k in reply.properties}
        made.append(
            EventRecord(
                contact_id=reply.contact_id,
                name=UNSUBSCRIBED,
                at=reply.at,
                properties={**kept, "channel": channel, "via": "reply"},
                dedupe_key=_opt_out_key(reply, channel),
                source=reply.source,
            )
        )
    if not made:
        return []
    fresh, _present = insert_events(session, tenant_id, made, now=now)
    return fresh


# What an opt-out reply's `unsubscribed` keeps of the reply: the message it answers.
_MESSAGE_PROPERTIES = ("send", "message", "template", "campaign", "variant", "provider")


def _opt_out_key(reply: EventRecord, channel: str) -> str:
    """The dedupe key of the `unsubscribed` a reply stands for: one per reply."""
    origin = reply.dedupe_key or json.dumps(
        [reply.contact_id, reply.at.isoformat(), channel, reply.properties.get("send")]
    )
    return "opt-out:" + hashlib.sha256(origin.encode("utf-8")).hexdigest()[:40]


def record_suppressions(
    session: Session, tenant_id: str, events: Sequence[EventRecord], now: dt.datetime
) -> None:
    """Suppress what the newly stored `events` ask to (see the module's rules).

    An opt-out reply suppresses through the `unsubscribed` it stands for, which
    `store_opt_out_replies` stored and `events` holds; a START reply lifts here. Of a
    person's opt-outs and START replies on one channel stored together, the latest wins.
    """
    people: dict[tuple[str, str], set[str]] = {}  # (channel, reason) -> contact ids
    bounced: dict[str, set[str]] = {}  # channel -> contact ids with a hard bounce
    soft: dict[str, set[str]] = {}  # channel -> contact ids with a soft bounce
    back: dict[str, set[str]] = {}  # channel -> contact ids turning it back on
    # (contact, channel) -> whether the latest of its unsubscribes and START replies opted
    # out (an unsubscribe) or back in (START)
    own: dict[tuple[str, str], bool] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.contact_id is None:
            continue
        if event.name == RESUBSCRIBED:
            channel = _channel(session, tenant_id, event, send_store.EVERY_CHANNEL)
            back.setdefault(channel, set()).add(event.contact_id)
        elif event.name == REPLIED and is_start_reply(event):
            own[(event.contact_id, _channel(session, tenant_id, event, "sms"))] = False
        elif event.name == UNSUBSCRIBED:
            channel = _channel(session, tenant_id, event, send_store.EVERY_CHANNEL)
            own[(event.contact_id, channel)] = True
        elif event.name == COMPLAINED:
            channel = _channel(session, tenant_id, event, "email")
            people.setdefault((channel, COMPLAINED), set()).add(event.contact_id)
        elif event.name == BOUNCED:
            channel = _channel(session, tenant_id, event, "email")
            target = soft if is_soft_bounce(event.properties) else bounced
            target.setdefault(channel, set()).add(event.contact_id)
    restarted: dict[str, list[str]] = {}
    for (contact_id, channel), opted_out in sorted(own.items()):
        if opted_out:
            people.setdefault((channel, UNSUBSCRIBED), set()).add(contact_id)
        else:
            restarted.setdefault(channel, []).append(contact_id)
    for channel, ids in sorted(restarted.items()):
        send_store.lift_opt_outs(session, tenant_id, channel, ids, reason=UNSUBSCRIBED)
    for channel, contacts in sorted(back.items()):
        resubscribe(session, tenant_id, channel, sorted(contacts), now)
    for (channel, reason), contacts in sorted(people.items()):
        send_store.add_suppressions(
            session, tenant_id, channel, [(None, cid) for cid in sorted(contacts)],
            reason=reason, now=now,
        )  # fmt: skip
    for channel, contacts in sorted(soft.items()):
        repeated = _soft_bounced_often(session, tenant_id, channel, contacts, now)
        if repeated:
            _suppress_addresses(session, tenant_id, channel, repeated, "soft bounces", now)
    for channel, contacts in sorted(bounced.items()):
        _suppress_addresses(session, tenant_id, channel, contacts, BOUNCED, now)


def resubscribe(
    session: Session, tenant_id: str, channel: str, contact_ids: list[str], now: dt.datetime
) -> None:
    """Lift the contacts' own opt-outs on `channel`, keeping them off every other channel:
    the person turned it back on (the preference page, a confirmed double opt-in)."""
    everything = send_store.EVERY_CHANNEL
    if channel == everything:
        for each in sorted(send_store.PERSONAL_CHANNELS | {everything}):
            send_store.lift_opt_outs(session, tenant_id, each, contact_ids, reason=UNSUBSCRIBED)
        return
    send_store.lift_opt_outs(session, tenant_id, channel, contact_ids, reason=UNSUBSCRIBED)
    if channel not in send_store.PERSONAL_CHANNELS:
        return
    session.flush()
    # The contacts' own opt-outs left after the lift: (channel, contact id).
    own = {
        (row_channel, cid)
        for row_channel, cid in session.execute(
            select(Suppression.channel, Suppression.contact_id).where(
                Suppression.tenant_id == tenant_id,
                Suppression.address.is_(None),
                Suppression.reason == UNSUBSCRIBED,
                Suppression.contact_id.in_(contact_ids),
            )
        )
        if cid is not None
    }
    off_everywhere = sorted(cid for row_channel, cid in own if row_channel == everything)
    if not off_everywhere:
        return
    send_store.lift_opt_outs(session, tenant_id, everything, off_everywhere, reason=UNSUBSCRIBED)
    for other in sorted(send_store.PERSONAL_CHANNELS - {channel}):
        send_store.add_suppressions(
            session, tenant_id, other,
            [(None, cid) for cid in off_everywhere if (other, cid) not in own],
            reason=UNSUBSCRIBED, now=now,
        )  # fmt: skip


def is_stop_reply(event: EventRecord) -> bool:
    """Whether a reply is an opt-out: its text alone (`STOP`, ` stop. `, `Opt out`, `Arrêt`),
    the keyword its provider read from it (Infobip's `keyword`: `STOP` of "STOP please"), or
    its text after the keyword its number routes by (`clean_text`: `STOP` of "ACME STOP")."""
    return says_stop(event.properties)


def says_stop(properties: Mapping[str, Any]) -> bool:
    """Whether a `replied` event's properties make it an opt-out (see `is_stop_reply`)."""
    return _says(properties, STOP_KEYWORDS)


def is_start_reply(event: EventRecord) -> bool:
    """Whether a reply opts back in: `START` or `UNSTOP` alone, or as the provider's keyword."""
    return _says(event.properties, START_KEYWORDS)


def _says(properties: Mapping[str, Any], keywords: frozenset[str]) -> bool:
    """Whether the reply's text, body, provider keyword or text after it is one of
    `keywords`, folded."""
    return any(
        isinstance(text := properties.get(key), str) and _keyword(text) in keywords
        for key in ("text", "body", "keyword", "clean_text")
    )


def _keyword(text: str) -> str:
    """A reply folded for comparison: compatibility forms and accents dropped, upper case,
    letters and digits only (`opt-out!` -> OPTOUT, `Arrêt` -> ARRET, full-width STOP -> STOP)."""
    if len(text) > 64:
        return ""  # a sentence, not a keyword
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ch.isalnum() and ch.isascii()).upper()


def _channel(session: Session, tenant_id: str, event: EventRecord, default: str) -> str:
    """The channel an event is about: its `channel`, else its message's, else `default`."""
    channel = event.properties.get("channel")
    if isinstance(channel, str) and channel:
        return channel
    key = message_of(event.properties)
    if key:
        found = session.scalar(
            select(OutboxMessage.channel).where(
                OutboxMessage.tenant_id == tenant_id,
                OutboxMessage.idempotency_key == str(key),
            )
        )
        if found:
            return str(found)
    return default


def _soft_bounced_often(
    session: Session, tenant_id: str, channel: str, contacts: set[str], now: dt.datetime
) -> set[str]:
    """Of `contacts`, those with SOFT_BOUNCES_TO_SUPPRESS soft bounces on `channel` within
    the window: an expired SMS says nothing about a full mailbox.

    The events are already stored (this runs after they are written), so they count.
    """
    session.flush()
    rows = session.execute(
        select(Event.contact_id, Event.properties).where(
            Event.tenant_id == tenant_id,
            Event.contact_id.in_(sorted(contacts)),
            Event.name == BOUNCED,
            Event.at > now - SOFT_BOUNCE_WINDOW,
        )
    ).all()
    soft = [(cid, props or {}) for cid, props in rows if is_soft_bounce(props or {})]
    # A bounce that names no channel is about its message's, as `_channel` reads it.
    keys = sorted(
        {key for _, props in soft if not props.get("channel") and (key := message_of(props))}
    )
    by_key: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        for key, channel_of_key in session.execute(
            select(OutboxMessage.idempotency_key, OutboxMessage.channel).where(
                OutboxMessage.tenant_id == tenant_id,
                OutboxMessage.idempotency_key.in_(keys[start : start + 500]),
            )
        ):
            by_key[str(key)] = str(channel_of_key)
    counts: dict[str, int] = {}
    for contact_id, properties in soft:
        named = properties.get("channel")
        key = message_of(properties) or ""
        if (named if isinstance(named, str) and named else by_key.get(key, "email")) == channel:
            counts[contact_id] = counts.get(contact_id, 0) + 1
    return {cid for cid, count in counts.items() if count >= SOFT_BOUNCES_TO_SUPPRESS}


def suppress_rejected(
    session: Session, tenant_id: str, rejected: Sequence[tuple[str, str]], now: dt.datetime
) -> None:
    """Suppress the addresses a provider refused outright, (channel, contact) each: a hard
    bounce before sending (no such mailbox, an invalid address), so none is tried again."""
    by_channel: dict[str, set[str]] = {}
    for channel, contact_id in rejected:
        by_channel.setdefault(channel, set()).add(contact_id)
    for channel, contacts in sorted(by_channel.items()):
        _suppress_addresses(session, tenant_id, channel, contacts, BOUNCED, now)


def _suppress_addresses(
    session: Session,
    tenant_id: str,
    channel: str,
    contacts: set[str],
    reason: str,
    now: dt.datetime,
) -> None:
    """Suppress the contacts' current addresses on `channel` (the contact where it has none)."""
    field = send_store.ADDRESS_FIELD.get(channel)
    addresses: dict[str, str | None] = dict.fromkeys(contacts)
    if field is not None:
        column = getattr(Contact, field)
        for contact_id, address in session.execute(
            select(Contact.id, column).where(
                Contact.tenant_id == tenant_id, Contact.id.in_(sorted(contacts))
            )
        ):
            addresses[contact_id] = (
                send_store.suppressed_address(channel, str(address)) if address else None
            )
    send_store.add_suppressions(
        session, tenant_id, channel,
        [(address, None if address else cid) for cid, address in sorted(addresses.items())],
        reason=reason, now=now,
    )  # fmt: skip
