"""The send outbox and what gates it: idempotent enqueueing, suppressions, consents, cap counts.

A send is enqueued under a deterministic idempotency key made from (campaign version, node,
contact, occurrence): enqueueing it again, after a crash and restart, finds the key and
adds nothing. The lookups here answer for a whole batch of contacts in one query each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from cadence.engine.store.bulk import (
    among,
    among_bound,
    among_keys,
    insert_rows,
    insert_values_returning,
)
from cadence.engine.store.database import dialect_insert
from cadence.engine.store.models import (
    COUNTED_SEND_STATUSES,
    Consent,
    ConsentStatus,
    OutboxMessage,
    OutboxStatus,
    SendLog,
    Suppression,
)
from cadence.engine.store.types import UTCDateTime

CHUNK = 500
# The channel of a suppression that stops every channel reaching the person (an unsubscribe
# that named none); webhooks go to systems, not to the person, and are not stopped by it.
EVERY_CHANNEL = "*"
PERSONAL_CHANNELS = frozenset({"email", "sms", "whatsapp", "inbox"})
# The contact field that holds a channel's address (suppressions match it; no address, no send).
ADDRESS_FIELD = {"email": "email", "sms": "phone", "whatsapp": "phone"}


def consent_channel_problem(channel: object) -> str | None:
    """Why `channel` takes no consent (only the channels that reach a person do), or None."""
    if channel in PERSONAL_CHANNELS:
        return None
    channels = ", ".join(sorted(PERSONAL_CHANNELS))
    if channel is None:
        return f"a consent needs a channel; one of {channels}"
    return f"channel {channel!r} takes no consent; one of {channels}"


def suppressed_address(channel: str, address: str) -> str:
    """The form an address is suppressed under: an email in lower case, since mailboxes
    take mail whatever the case it is written in (`Ana@Example.test` is ana@example.test's)
    and a bounced address must stay stopped when a contact's is re-imported in another case."""
    return address.lower() if channel == "email" else address


def address_forms(channel: str, address: str) -> set[str]:
    """Every form a suppression of `address` on `channel` may be stored under: the folded
    one, and the address as written (suppressions stored before emails were folded)."""
    return {address, suppressed_address(channel, address)}


def idempotency_key(version_id: int, node: str, contact_id: str, occurrence: int) -> str:
    """The deterministic key of one send, also handed to the provider (40 hex characters)."""
    material = "\x1f".join((str(version_id), node, contact_id, str(occurrence)))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:40]


@dataclass
class NewSend:
    """A send to put in the outbox."""

    idempotency_key: str
    contact_id: str
    channel: str
    template: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    enrollment_id: int | None = None
    version_id: int | None = None
    node: str | None = None
    variant: str | None = None
    status: OutboxStatus = OutboxStatus.PENDING


def enqueue_sends(
    session: Session,
    tenant_id: str,
    sends: Sequence[NewSend],
    *,
    now: datetime,
    next_attempt_at: datetime | None = None,
) -> list[str]:
    """Add sends to the outbox in bulk; returns the keys that were new (the rest existed)."""
    fresh = _enqueue(session, tenant_id, sends, now=now, next_attempt_at=next_attempt_at or now)
    return [send.idempotency_key for _, send in fresh]


def enqueue_claimed_sends(
    session: Session,
    tenant_id: str,
    sends: Sequence[NewSend],
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
) -> list[tuple[int, NewSend]]:
    """Add sends already leased to `owner`, to deliver straight after the commit.

    Returns (outbox id, send) for each send that was new; a key already in the outbox adds
    nothing. Should the owner never deliver them, the lease runs out and any worker's
    outbox claim takes them, as for any claimed send.
    """
    return _enqueue(
        session, tenant_id, sends, now=now, next_attempt_at=now, lease=(owner, lease_until)
    )


def enqueue_sent_sends(
    session: Session, tenant_id: str, sends: Sequence[NewSend], *, provider: str, now: datetime
) -> list[tuple[int, NewSend]]:
    """Add sends already sent through `provider`, each with its send-log entry.

    For a sink that accepts every send in this process (see `Sink` in the runtime): the
    step's transaction stores the send as the later delivery would have recorded it, so
    it needs no lease, no second transaction and no update. Returns (outbox id, send) for
    each send that was new, as `enqueue_claimed_sends` does.
    """
    fresh = _enqueue(session, tenant_id, sends, now=now, next_attempt_at=now, sent_by=provider)
    # One log statement per cost, in the order the sends were made (as a delivery logs them).
    by_cost: dict[tuple[str | None, str | None], list[int]] = {}
    for outbox_id, send in fresh:
        cost = send.payload.get("cost")
        key = (cost["amount"], cost["currency"]) if cost else (None, None)
        by_cost.setdefault(key, []).append(outbox_id)
    for (amount, currency), ids in by_cost.items():
        log_sent(
            session, ids, provider=provider,
            cost=Decimal(amount) if amount is not None else None, currency=currency, now=now,
        )  # fmt: skip
    return fresh


def log_sent(
    session: Session,
    ids: Sequence[int],
    *,
    provider: str | None,
    cost: Decimal | None,
    currency: str | None,
    now: datetime,
) -> None:
    """Log outbox rows stored as sent with no provider id: one INSERT selecting from them.

    Sends of one provider and cost share every value but the row's own, so no per-row
    values are built in Python.
    """
    entries = (
        select(
            OutboxMessage.tenant_id, OutboxMessage.id, OutboxMessage.contact_id,
            OutboxMessage.channel, literal(now, SendLog.at.type), literal("sent"),
            literal(provider, SendLog.provider.type), literal(cost, SendLog.cost.type),
            literal(currency, SendLog.currency.type), literal({}, SendLog.detail.type),
        )
        .where(among(session, OutboxMessage.id, sorted(ids)))
        .order_by(OutboxMessage.id)
    )  # fmt: skip
    session.execute(
        insert(SendLog).from_select(
            ["tenant_id", "outbox_id", "contact_id", "channel", "at", "outcome",
             "provider", "cost", "currency", "detail"],
            entries,
        )
    )  # fmt: skip


def fail_sent_sends(session: Session, failures: Mapping[int, str], *, now: datetime) -> None:
    """Record as failed sends their step stored as sent that the in-process sink then failed.

    `enqueue_sent_sends` writes what delivery would record for a send that is taken; when
    the sink fails one for good instead (a template that cannot render for its contact),
    its outbox row and its log entry become what delivery records for a failure, as
    `Engine._record_delivery_sync` writes one: failed, with the error, no cost. One
    statement per table and error (a failing template fails many sends alike).
    """
    by_error: dict[str, list[int]] = {}
    for outbox_id, error in failures.items():
        by_error.setdefault(error, []).append(outbox_id)
    for error, ids in by_error.items():
        ordered = sorted(ids)
        session.execute(
            update(OutboxMessage)
            .where(among(session, OutboxMessage.id, ordered))
            .values(
                status=OutboxStatus.FAILED.value, error=error, sent_at=None, provider=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        session.execute(
            update(SendLog)
            .where(among(session, SendLog.outbox_id, ordered), SendLog.outcome == "sent")
            .values(outcome="failed", cost=None, currency=None, detail={"error": error})
            .execution_options(synchronize_session=False)
        )


# The outbox columns a new send sets, in the order `_enqueue` gives their values.
_OUTBOX_COLUMNS = (
    "tenant_id", "idempotency_key", "enrollment_id", "version_id", "node", "contact_id",
    "channel", "template", "variant", "payload", "status", "attempts", "next_attempt_at",
    "lease_owner", "lease_expires_at", "created_at", "updated_at", "sent_at", "provider",
)  # fmt: skip


def _enqueue(
    session: Session,
    tenant_id: str,
    sends: Sequence[NewSend],
    *,
    now: datetime,
    next_attempt_at: datetime,
    lease: tuple[str, datetime] | None = None,
    sent_by: str | None = None,
) -> list[tuple[int, NewSend]]:
    """Insert the sends whose key is new (ON CONFLICT DO NOTHING); (id, send) of each, in order.

    With `sent_by`, each row is stored as sent through that provider (attempted once).
    """
    wanted: dict[str, NewSend] = {}
    for send in sends:
        wanted.setdefault(send.idempotency_key, send)
    owner, lease_until = lease if lease is not None else (None, None)
    sent = OutboxStatus.SENT.value
    # Sends inserted leased (or sent) are handed to a provider right after the commit: that
    # hand-over is their first attempt.
    attempts = 0 if owner is None and sent_by is None else 1
    sent_at = now if sent_by is not None else None
    inserted = insert_values_returning(
        session,
        OutboxMessage.__table__,  # type: ignore[arg-type]
        _OUTBOX_COLUMNS,
        [
            (
                tenant_id, key, send.enrollment_id, send.version_id, send.node, send.contact_id,
                send.channel, send.template, send.variant, send.payload,
                sent if sent_by is not None else OutboxStatus(send.status).value,
                attempts, next_attempt_at, owner, lease_until, now, now, sent_at, sent_by,
            )
            for key, send in wanted.items()
        ],
        conflict=("idempotency_key",),
        returning=("id", "idempotency_key"),
    )  # fmt: skip
    order = {key: index for index, key in enumerate(wanted)}
    inserted.sort(key=lambda row: order[row[1]])
    return [(int(outbox_id), wanted[key]) for outbox_id, key in inserted]


def add_suppressions(
    session: Session,
    tenant_id: str,
    channel: str,
    entries: Iterable[tuple[str | None, str | None]],
    *,
    reason: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> int:
    """Suppress (address, contact_id) pairs on a channel; an address already there is kept."""
    rows = [
        {
            "tenant_id": tenant_id,
            "channel": channel,
            "address": address,
            "contact_id": contact_id,
            "reason": reason,
            "created_at": now,
            "expires_at": expires_at,
        }
        for address, contact_id in entries
        if address is not None or contact_id is not None
    ]
    insert_rows(
        session,
        Suppression.__table__,  # type: ignore[arg-type]
        rows,
        conflict=("tenant_id", "channel", "address"),
    )
    return len(rows)


def lift_opt_outs(
    session: Session, tenant_id: str, channel: str, contact_ids: Sequence[str], *, reason: str
) -> int:
    """Remove the contacts' own opt-outs (`reason`) on `channel`; bounces and complaints,
    and opt-outs of every channel at once, stay."""
    if not contact_ids:
        return 0
    result = session.execute(
        delete(Suppression)
        .where(
            Suppression.tenant_id == tenant_id,
            Suppression.channel == channel,
            Suppression.address.is_(None),
            Suppression.reason == reason,
            Suppression.contact_id.in_(list(contact_ids)),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def suppressing_channels(channel: str) -> tuple[str, ...]:
    """The channels whose suppressions stop a send on `channel`: its own, and for a channel
    that reaches a person, a suppression on every channel (`EVERY_CHANNEL`)."""
    return (channel, EVERY_CHANNEL) if channel in PERSONAL_CHANNELS else (channel,)


def only_own_opt_outs(
    session: Session,
    tenant_id: str,
    channel: str,
    contact_id: str,
    address: str | None,
    *,
    reason: str,
    now: datetime,
) -> bool:
    """Whether every suppression in force for the contact on `channel` is their own opt-out
    (`reason`, on the contact, not on an address): no bounce, complaint or address in it.

    Read for one contact at a time, for the rare send only such a person may still get (the
    confirmation of a double opt-in they asked for).
    """
    forms = sorted(address_forms(channel, address)) if address else []
    rows = session.execute(
        select(Suppression.address, Suppression.reason).where(
            Suppression.tenant_id == tenant_id,
            Suppression.channel.in_(suppressing_channels(channel)),
            or_(Suppression.contact_id == contact_id, Suppression.address.in_(forms)),
            or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
        )
    ).all()
    return bool(rows) and all(row.address is None and row.reason == reason for row in rows)


def suppressed_contacts(
    session: Session,
    tenant_id: str,
    channel: str,
    recipients: Iterable[tuple[str, str | None]],
    *,
    now: datetime,
) -> set[str]:
    """Of (contact_id, address) recipients, the contact ids suppressed on `channel` by either.

    A suppression on `EVERY_CHANNEL` counts on every one of `PERSONAL_CHANNELS`.
    """
    channels = suppressing_channels(channel)
    pairs = list(recipients)
    by_address: dict[str, list[str]] = {}
    for contact_id, address in pairs:
        for form in address_forms(channel, address) if address else ():
            by_address.setdefault(form, []).append(contact_id)
    connection, dialect = _gate_connection(session)
    bound: dict[str, Any] = {"tenant_id": tenant_id, "now": now}
    bound.update((f"channel_{index}", name) for index, name in enumerate(channels))
    found: set[str] = set()
    contact_ids = sorted({contact_id for contact_id, _ in pairs})
    statement = _gate_statement(dialect, "suppressed contacts", len(channels))
    for start in range(0, len(contact_ids), CHUNK):
        bound["keys"] = among_keys(dialect, contact_ids[start : start + CHUNK])
        found.update(
            contact_id
            for (contact_id,) in connection.execute(statement, bound)
            if contact_id is not None
        )
    addresses = sorted(by_address)
    statement = _gate_statement(dialect, "suppressed addresses", len(channels))
    for start in range(0, len(addresses), CHUNK):
        bound["keys"] = among_keys(dialect, addresses[start : start + CHUNK])
        for (address,) in connection.execute(statement, bound):
            if address is not None:
                found.update(by_address.get(address, ()))
    return found


def _gate_connection(session: Session) -> tuple[Connection, str]:
    """The session's connection (flushed first, as `session.execute` would) and dialect name."""
    session.flush()
    connection = session.connection()
    return connection, connection.dialect.name


# The send gates' lookups run for every step batch: each is built once per dialect and
# shape with every value bound, and runs on the session's connection as a Core statement
# (building it, and the ORM's execution layer, cost more per batch than the query itself).
_GATE_STATEMENTS: dict[tuple[str, str, int], Any] = {}


def _gate_statement(dialect: str, kind: str, channels: int) -> Any:
    """One of the gates' lookups (`kind`) on `dialect`, for `channels` channel names."""
    key = (dialect, kind, channels)
    statement = _GATE_STATEMENTS.get(key)
    if statement is not None:
        return statement
    channel_names = [bindparam(f"channel_{index}", type_=String()) for index in range(channels)]
    live = or_(
        Suppression.expires_at.is_(None),
        Suppression.expires_at > bindparam("now", type_=UTCDateTime()),
    )
    tenant = bindparam("tenant_id", type_=String())
    if kind in ("suppressed contacts", "suppressed addresses"):
        column = Suppression.contact_id if kind == "suppressed contacts" else Suppression.address
        statement = select(column).where(
            Suppression.tenant_id == tenant,
            Suppression.channel.in_(channel_names),
            among_bound(dialect, column, "keys"),
            live,
        )
    else:
        statement = select(Consent.contact_id, Consent.status).where(
            Consent.tenant_id == tenant,
            Consent.channel == channel_names[0],
            among_bound(dialect, Consent.contact_id, "keys"),
        )
    _GATE_STATEMENTS[key] = statement
    return statement


def set_consent(
    session: Session,
    tenant_id: str,
    contact_id: str,
    channel: str,
    status: ConsentStatus,
    *,
    now: datetime,
    source: str | None = None,
    double_opt_in_token: str | None = None,
) -> None:
    """Record a contact's consent on a channel (pending with a token for double opt-in)."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "contact_id": contact_id,
        "channel": channel,
        "status": ConsentStatus(status).value,
        "source": source,
        "double_opt_in_token": double_opt_in_token,
        "requested_at": now if status is ConsentStatus.PENDING else None,
        "confirmed_at": now if status is ConsentStatus.GRANTED else None,
        "updated_at": now,
    }
    statement = dialect_insert(session.get_bind().dialect.name, Consent).values(**values)
    keep_requested = statement.excluded.requested_at
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "contact_id", "channel"],
            set_={
                "status": statement.excluded.status,
                "source": func.coalesce(statement.excluded.source, Consent.source),
                "double_opt_in_token": statement.excluded.double_opt_in_token,
                "requested_at": func.coalesce(keep_requested, Consent.requested_at),
                "confirmed_at": statement.excluded.confirmed_at,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


def pending_double_opt_in(
    session: Session, tenant_id: str, token: str, *, lock: bool = False
) -> Consent | None:
    """The tenant's pending consent waiting on `token`, if one does; with `lock`, held until
    the transaction ends (`FOR UPDATE`: a second reader waits, then finds it no longer
    pending)."""
    statement = select(Consent).where(
        Consent.tenant_id == tenant_id,
        Consent.double_opt_in_token == token,
        Consent.status == ConsentStatus.PENDING.value,
    )
    return session.scalar(statement.with_for_update() if lock else statement)


def confirm_double_opt_in(session: Session, consent: Consent, *, now: datetime) -> Consent:
    """Grant the pending consent read locked by `pending_double_opt_in`, spending its token.

    The token is single-use also when pressed twice at once (a double click reaching two
    workers): the row was locked as it was read, so the second press finds it granted.
    """
    consent.status = ConsentStatus.GRANTED.value
    consent.confirmed_at = now
    consent.double_opt_in_token = None
    consent.updated_at = now
    session.flush()
    return consent


def consent_statuses(
    session: Session, tenant_id: str, channel: str, contact_ids: Iterable[str]
) -> dict[str, ConsentStatus]:
    """Recorded consent per contact on `channel` (contacts with no record are absent)."""
    wanted = sorted(set(contact_ids))
    found: dict[str, ConsentStatus] = {}
    connection, dialect = _gate_connection(session)
    statement = _gate_statement(dialect, "consents", 1)
    for start in range(0, len(wanted), CHUNK):
        for contact_id, status in connection.execute(
            statement,
            {
                "tenant_id": tenant_id, "channel_0": channel,
                "keys": among_keys(dialect, wanted[start : start + CHUNK]),
            },
        ):  # fmt: skip
            found[contact_id] = ConsentStatus(status)
    return found


def send_counts_since(
    session: Session,
    tenant_id: str,
    channel: str | None,
    contact_ids: Iterable[str],
    since: datetime,
) -> dict[str, int]:
    """Sends per contact on `channel` (any channel if None) enqueued since `since`, for caps.

    Counts outbox rows that are pending or sent: what has gone out or is about to.
    """
    wanted = sorted(set(contact_ids))
    counts: dict[str, int] = {}
    for start in range(0, len(wanted), CHUNK):
        conditions = [
            OutboxMessage.tenant_id == tenant_id,
            OutboxMessage.contact_id.in_(wanted[start : start + CHUNK]),
            OutboxMessage.created_at >= since,
            OutboxMessage.status.in_(sorted(COUNTED_SEND_STATUSES)),
        ]
        if channel is not None:
            conditions.append(OutboxMessage.channel == channel)
        for contact_id, number in session.execute(
            select(OutboxMessage.contact_id, func.count())
            .where(and_(*conditions))
            .group_by(OutboxMessage.contact_id)
        ):
            counts[contact_id] = int(number)
    return counts
