"""Claiming due work under leases, so several engines can share one database safely.

A worker claims up to N due rows in one statement: it writes its owner id and a lease
expiry on them and gets them back. On PostgreSQL the candidates are picked with
`SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent workers split the work instead of
queueing on each other; on SQLite the claim is one `UPDATE ... RETURNING` inside a
transaction that already holds the write lock. A row whose lease has run out is claimable
again: a dead worker's work is taken over. Every later write by the first worker is fenced
on `lease_owner`, so a worker that lost its lease cannot overwrite its successor.

Every function takes a `Session` (one transaction), so that the engine can advance an
enrollment and write its outbox row in the same commit.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Result,
    Row,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from cadence.engine.store.bulk import among, update_groups, update_rows_by_id
from cadence.engine.store.database import dumps_json
from cadence.engine.store.models import (
    UNFINISHED_ENROLLMENT_STATUSES,
    Base,
    Campaign,
    Contact,
    Enrollment,
    EnrollmentStatus,
    OutboxMessage,
    OutboxStatus,
)
from cadence.engine.store.sends import log_sent
from cadence.engine.store.types import RawJSON, UTCDateTime

M = TypeVar("M", bound=Base)

_UNSET: Any = object()

# A column a claim can return: a table column or a mapped attribute.
Returned = ColumnElement[Any] | InstrumentedAttribute[Any]


def new_owner_id(prefix: str = "engine") -> str:
    """A lease owner id unique to this process and call: host, pid and a random suffix."""
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class _Queue(Generic[M]):
    """The columns that make a table a lease-claimed work queue."""

    model: type[M]
    id: InstrumentedAttribute[int]
    tenant_id: InstrumentedAttribute[str]
    status: InstrumentedAttribute[str]
    due: InstrumentedAttribute[datetime | None]
    lease_owner: InstrumentedAttribute[str | None]
    lease_expires_at: InstrumentedAttribute[datetime | None]
    ready_status: str
    # Among rows due at one instant, which go first (ascending), if the queue has an order.
    rank: InstrumentedAttribute[int] | None = None

    def claim_order(self) -> list[InstrumentedAttribute[Any]]:
        """Oldest due first; at one instant, by rank; then in the order rows were made."""
        order: list[Any] = [self.due]
        if self.rank is not None:
            order.append(self.rank)
        order.append(self.id)
        return order


ENROLLMENT_QUEUE = _Queue(
    model=Enrollment,
    id=Enrollment.id,
    tenant_id=Enrollment.tenant_id,
    status=Enrollment.status,
    due=Enrollment.due_at,
    lease_owner=Enrollment.lease_owner,
    lease_expires_at=Enrollment.lease_expires_at,
    ready_status=EnrollmentStatus.ACTIVE.value,
    rank=Enrollment.priority_rank,
)

OUTBOX_QUEUE = _Queue(
    model=OutboxMessage,
    id=OutboxMessage.id,
    tenant_id=OutboxMessage.tenant_id,
    status=OutboxMessage.status,
    due=OutboxMessage.next_attempt_at,
    lease_owner=OutboxMessage.lease_owner,
    lease_expires_at=OutboxMessage.lease_expires_at,
    ready_status=OutboxStatus.PENDING.value,
)


def _lease_free(queue: _Queue[M], now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Unleased, or leased by someone whose lease has run out."""
    return or_(queue.lease_expires_at.is_(None), queue.lease_expires_at <= now)


def _claim(
    session: Session,
    queue: _Queue[M],
    owner: str,
    *,
    now: datetime,
    limit: int,
    lease_for: timedelta,
    tenant_id: str,
    columns: Sequence[Returned] | None,
    count_attempt: bool = False,
) -> list[Row[Any]]:
    """Lease up to `limit` due rows of `queue` to `owner`, oldest due first, and return them.

    Rows come back as plain named rows (no ORM objects to build and track) of `columns`, or
    of every column; the id and due time are always among them. With `count_attempt`, the
    row's `attempts` grows by one in the same statement.
    """
    if limit <= 0:
        return []
    if lease_for <= timedelta(0):
        raise ValueError("a lease must last a positive time")
    candidates = (
        select(queue.id)
        .where(*_due(queue, now, tenant_id))
        .order_by(*queue.claim_order())
        .limit(limit)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL, dropped on SQLite
    )
    statement = (
        update(queue.model)
        .where(queue.id.in_(candidates.scalar_subquery()))
        .values(
            {queue.lease_owner: owner, queue.lease_expires_at: now + lease_for}
            | ({queue.model.attempts: queue.model.attempts + 1} if count_attempt else {})  # type: ignore[attr-defined]
        )
        .returning(*_returned(queue, columns))
        .execution_options(synchronize_session=False)
    )
    result: Result[Any] = session.connection().execute(statement)
    claimed = list(result.all())
    keys = [column.key for column in queue.claim_order()]
    claimed.sort(key=lambda row: tuple(getattr(row, key) for key in keys))
    return claimed


def _due(
    queue: _Queue[M], now: datetime | BindParameter[datetime], tenant_id: str
) -> list[ColumnElement[bool]]:
    """The tenant's rows ready, due by `now`, and free of any live lease.

    Every claim names its tenant: the queues are indexed by (tenant_id, status, due time)
    only, so a claim across tenants would read the whole table.
    """
    return [
        queue.status == queue.ready_status,
        queue.due <= now,
        _lease_free(queue, now),
        queue.tenant_id == tenant_id,
    ]


def _returned(queue: _Queue[M], columns: Sequence[Returned] | None) -> list[Returned]:
    """The columns a claim returns: those asked for (all by default), plus id and due time."""
    chosen: list[Returned] = list(queue.model.__table__.c if columns is None else columns)
    keys = {column.key for column in chosen}
    chosen += [column for column in queue.claim_order() if column.key not in keys]
    return chosen


def _owned_ids(session: Session, queue: _Queue[M], owner: str, ids: Iterable[int]) -> set[int]:
    """Of `ids`, those still leased to `owner`, locked for the rest of the transaction."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    statement = (
        select(queue.id)
        .where(among(session, queue.id, wanted), queue.lease_owner == owner)
        .order_by(queue.id)
        .with_for_update()
    )
    return set(session.scalars(statement))


def _release(session: Session, queue: _Queue[M], owner: str, ids: Iterable[int]) -> int:
    """Drop `owner`'s leases on `ids` so the rows can be claimed again at once."""
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    statement = (
        update(queue.model)
        .where(among(session, queue.id, wanted), queue.lease_owner == owner)
        .values({queue.lease_owner: None, queue.lease_expires_at: None})
        .execution_options(synchronize_session=False)
    )
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def _renew(
    session: Session,
    queue: _Queue[M],
    owner: str,
    ids: Iterable[int],
    *,
    now: datetime,
    lease_for: timedelta,
) -> set[int]:
    """Extend `owner`'s leases on `ids`; returns the ids it still held (the others are lost)."""
    owned = _owned_ids(session, queue, owner, ids)
    if owned:
        session.execute(
            update(queue.model)
            .where(among(session, queue.id, sorted(owned)))
            .values({queue.lease_expires_at: now + lease_for})
            .execution_options(synchronize_session=False)
        )
    return owned


def _apply(
    session: Session,
    queue: _Queue[M],
    owner: str,
    changes: Sequence[Mapping[str, Any]],
) -> list[int]:
    """Write per-row changes (each with an `id`) where `owner` still holds the lease.

    One SELECT ... FOR UPDATE finds the rows still held, then one bulk UPDATE writes them.
    Returns the ids that were not written because the lease was lost.
    """
    if not changes:
        return []
    owned = _owned_ids(session, queue, owner, (int(change["id"]) for change in changes))
    writes = [dict(change) for change in changes if int(change["id"]) in owned]
    update_rows_by_id(session, queue.model.__table__, writes)  # type: ignore[arg-type]
    return sorted({int(change["id"]) for change in changes} - owned)


# --- enrollments -------------------------------------------------------------------------


def claim_enrollments(
    session: Session,
    owner: str,
    *,
    now: datetime,
    limit: int,
    lease_for: timedelta,
    tenant_id: str,
    columns: Sequence[Returned] | None = None,
) -> list[Row[Any]]:
    """Lease up to `limit` of the tenant's active enrollments due by `now` to `owner`.

    Rows whose lease expired are due again. Each row has the `columns` asked for (default:
    every column of `enrollments`) by name (`row.id`, `row.state`, ...).
    """
    return _claim(
        session,
        ENROLLMENT_QUEUE,
        owner,
        now=now,
        limit=limit,
        lease_for=lease_for,
        tenant_id=tenant_id,
        columns=columns,
    )


def lock_due_enrollments(
    session: Session,
    *,
    now: datetime,
    limit: int,
    tenant_id: str,
    columns: Sequence[Returned] | None = None,
) -> list[Row[Any]]:
    """Up to `limit` of the tenant's due, unleased enrollments, locked until the transaction ends.

    The claim for work done inside one transaction (the scheduler reads, steps and writes a
    batch before it commits): the row locks keep other workers off (`FOR UPDATE SKIP LOCKED`
    on PostgreSQL, the write lock every SQLite transaction takes), and a worker that dies
    mid-batch rolls back, so the rows are due again at once. No lease is written, none needs
    fencing; a row leased by a live claim elsewhere is left alone. Oldest due first; of rows
    due at one instant, those of higher-priority campaigns first. Rows hold exactly
    `columns` (every column by default).
    """
    if limit <= 0:
        return []
    statement = _lock_statement(tuple(columns) if columns is not None else None, limit, tenant_id)
    result: Result[Any] = session.connection().execute(statement, {"now": now})
    return list(result.all())


# The lock statement, built once per shape: it runs once per step batch, and building it
# (and its cache key) anew each time cost more than the rest of its Python. Keyed by the
# columns' ids, and kept with them, so an id is never reused while its entry lives.
_LOCK_STATEMENTS: dict[tuple[Any, ...], tuple[tuple[Returned, ...] | None, Any]] = {}


def _lock_statement(columns: tuple[Returned, ...] | None, limit: int, tenant_id: str) -> Any:
    """`lock_due_enrollments`' SELECT for these columns, limit and tenant, with `now` bound."""
    key = (None if columns is None else tuple(map(id, columns)), limit, tenant_id)
    cached = _LOCK_STATEMENTS.get(key)
    if cached is not None:
        return cached[1]
    chosen = list(Enrollment.__table__.c) if columns is None else list(columns)
    statement = (
        select(*chosen)
        .where(*_due(ENROLLMENT_QUEUE, bindparam("now", type_=UTCDateTime()), tenant_id))
        .order_by(*ENROLLMENT_QUEUE.claim_order())
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if len(_LOCK_STATEMENTS) >= 64:  # tenants and batch sizes are few: stay bounded anyway
        _LOCK_STATEMENTS.clear()
    _LOCK_STATEMENTS[key] = (columns, statement)
    return statement


def write_locked_enrollments(
    session: Session, updates: Sequence[EnrollmentUpdate], *, now: datetime
) -> None:
    """Write steps' results for enrollments this transaction locked (`lock_due_enrollments`)."""
    for rows in _by_columns(item.values(now) for item in updates):
        update_rows_by_id(session, Enrollment.__table__, rows)  # type: ignore[arg-type]


# What a step writes to an enrollment: node, status, due_at, state and history (JSON text).
SteppedValues = tuple[str | None, str, datetime | None, RawJSON, RawJSON]
_STEPPED_COLUMNS = (
    "node", "status", "due_at", "state", "history",
    "attempts", "updated_at", "lease_owner", "lease_expires_at",
)  # fmt: skip
_STAYING_COLUMNS = tuple(name for name in _STEPPED_COLUMNS if name != "status")


def write_stepped_enrollments(
    session: Session, moved: Mapping[SteppedValues, Sequence[int]], *, now: datetime
) -> None:
    """Write locked enrollments' new values after a step, each group of ids sharing them.

    The stepper's cohorts arrive already grouped, so no per-row record is built: a cohort
    is one statement (`bulk.update_groups`). Attempts are reset and leases dropped.
    Every locked row was active: the groups that stay active leave `status` out of the
    statement, since SQLite rewrites every index holding a column the SET names, changed
    or not, and two indexes hold it (the claim index and `(version_id, status)`).
    """
    ready = ENROLLMENT_QUEUE.ready_status
    staying = {
        (node, due_at, state, history, 0, now, None, None): ids
        for (node, status, due_at, state, history), ids in moved.items()
        if status == ready
    }
    leaving = {
        (*values, 0, now, None, None): ids for values, ids in moved.items() if values[1] != ready
    }
    table = Enrollment.__table__
    update_groups(session, table, _STAYING_COLUMNS, staying)  # type: ignore[arg-type]
    update_groups(session, table, _STEPPED_COLUMNS, leaving)  # type: ignore[arg-type]


def lock_send_counts(
    session: Session, *, tenant_id: str, campaign_ids: Iterable[int], contact_ids: Iterable[str]
) -> None:
    """Serialize the batches whose sends count against the same budget or the same caps.

    A budget (per campaign) and caps (per contact, across campaigns) are checked against
    the sends committed so far; two workers checking at once would each see room for the
    same last send. On PostgreSQL the batch locks its budgeted campaigns' rows and its
    contacts' rows (`FOR NO KEY UPDATE`, which leaves inserts referencing them free), in
    id order so no two batches wait on each other; the batch that waits reads the other's
    sends once it commits. SQLite runs one writing transaction at a time already.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    campaigns = sorted(set(campaign_ids))
    if campaigns:
        session.execute(
            select(Campaign.id)
            .where(among(session, Campaign.id, campaigns))
            .order_by(Campaign.id)
            .with_for_update(key_share=True)
        ).all()
    lock_contacts(session, tenant_id=tenant_id, contact_ids=contact_ids)


def lock_contacts(session: Session, *, tenant_id: str, contact_ids: Iterable[str]) -> None:
    """Hold the contacts' rows until the transaction ends: work that reads what a person
    has (sends, opt-outs) and writes from it waits for another such transaction on them.

    `FOR NO KEY UPDATE` on PostgreSQL, in id order; a no-op on SQLite, whose transactions
    all take the write lock as they begin.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    contacts = sorted(set(contact_ids))
    if contacts:
        session.execute(
            select(Contact.id)
            .where(Contact.tenant_id == tenant_id, among(session, Contact.id, contacts))
            .order_by(Contact.id)
            .with_for_update(key_share=True)
        ).all()


def lock_unfinished_enrollments(session: Session, version_ids: Iterable[int]) -> None:
    """Hold the versions' active and paused enrollments until the transaction ends.

    A migration reads where each enrollment stands, checks the new version has that node,
    and moves it there. Unlocked, that read can be stale by the time of the move: a batch
    holding the rows steps them on (a send, then a wait) and commits, and the move puts
    them back at the node they left, to run it again. `FOR UPDATE` waits for such a batch
    and then reads the rows as it left them; batches skip the rows held here. SQLite's
    transactions all take the write lock as they begin.
    """
    versions = sorted(set(version_ids))
    if session.get_bind().dialect.name != "postgresql" or not versions:
        return
    session.execute(
        select(Enrollment.id)
        .where(
            among(session, Enrollment.version_id, versions),
            Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
        )
        .order_by(Enrollment.id)
        .with_for_update()
    ).all()


def release_enrollments(session: Session, owner: str, ids: Iterable[int]) -> int:
    """Give back claimed enrollments untouched (shutdown, or work the worker will not do)."""
    return _release(session, ENROLLMENT_QUEUE, owner, ids)


def renew_enrollment_leases(
    session: Session, owner: str, ids: Iterable[int], *, now: datetime, lease_for: timedelta
) -> set[int]:
    """Extend leases on work that takes longer; returns the ids still held."""
    return _renew(session, ENROLLMENT_QUEUE, owner, ids, now=now, lease_for=lease_for)


@dataclass
class EnrollmentUpdate:
    """The new state of one claimed enrollment after a step ran; unset fields stay as they are."""

    id: int
    node: str | None = _UNSET
    status: EnrollmentStatus | str = _UNSET
    due_at: datetime | None = _UNSET
    attempts: int = _UNSET
    state: dict[str, Any] = _UNSET
    history: list[Any] | str = _UNSET
    keep_lease: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self, now: datetime) -> dict[str, Any]:
        """The column values to write, with the lease dropped unless `keep_lease`."""
        values: dict[str, Any] = {"id": self.id, "updated_at": now}
        for name in ("node", "status", "due_at", "attempts", "state", "history"):
            value = getattr(self, name)
            if value is _UNSET:
                continue
            if name == "status":
                value = str(value)
            elif name == "state" and not isinstance(value, RawJSON):
                # As text, equal states compare equal: a cohort's rows share one UPDATE.
                value = RawJSON(dumps_json(value))
            values[name] = value
        if not self.keep_lease:
            values["lease_owner"] = None
            values["lease_expires_at"] = None
        values.update(self.extra)
        return values


def update_enrollments(
    session: Session, owner: str, updates: Sequence[EnrollmentUpdate], *, now: datetime
) -> list[int]:
    """Write steps' results for enrollments `owner` still holds; returns the ids it lost.

    Rows are grouped by the set of columns they change, one executemany per group.
    """
    lost: list[int] = []
    for rows in _by_columns(item.values(now) for item in updates):
        lost.extend(_apply(session, ENROLLMENT_QUEUE, owner, rows))
    return sorted(lost)


def _by_columns(rows: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they set: a bulk statement writes one set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in rows:
        # Rows made by one piece of code list their columns in one order: no sort needed
        # (the same columns in another order only make a second group).
        groups.setdefault(tuple(values), []).append(values)
    return list(groups.values())


# --- outbox ------------------------------------------------------------------------------


def claim_outbox(
    session: Session,
    owner: str,
    *,
    now: datetime,
    limit: int,
    lease_for: timedelta,
    tenant_id: str,
    columns: Sequence[Returned] | None = None,
) -> list[Row[Any]]:
    """Lease up to `limit` of the tenant's pending sends whose next attempt is due by `now`.

    The lease goes to `owner`. Each row has the `columns` asked for (default: every column
    of `send_outbox`) by name. Its `attempts` counts this claim: the claim is made to hand
    the send to a provider, and a count in the store, unlike one in a process, survives
    that process's crash.
    """
    return _claim(
        session,
        OUTBOX_QUEUE,
        owner,
        now=now,
        limit=limit,
        lease_for=lease_for,
        tenant_id=tenant_id,
        columns=columns,
        count_attempt=True,
    )


def next_outbox_due(session: Session, *, tenant_id: str) -> datetime | None:
    """When the tenant's first pending send can next be claimed (None: no pending send).

    That is its next attempt's time, or, while another engine's lease on it is live, the
    lease's end: a send a dead engine had leased is not claimable before, and an engine
    told it was due now would find nothing to claim and ask again at once, for as long as
    the lease lasts (under a simulated clock, which only moves to the next due time, for
    ever).
    """
    queue = OUTBOX_QUEUE
    claimable = case((queue.lease_expires_at > queue.due, queue.lease_expires_at), else_=queue.due)
    first: datetime | None = session.scalar(
        select(func.min(claimable)).where(
            queue.status == queue.ready_status, queue.tenant_id == tenant_id
        )
    )
    return first


def release_outbox(session: Session, owner: str, ids: Iterable[int]) -> int:
    """Give back claimed sends untouched."""
    return _release(session, OUTBOX_QUEUE, owner, ids)


def renew_outbox_leases(
    session: Session, owner: str, ids: Iterable[int], *, now: datetime, lease_for: timedelta
) -> set[int]:
    """Extend leases on sends still in flight; returns the ids still held."""
    return _renew(session, OUTBOX_QUEUE, owner, ids, now=now, lease_for=lease_for)


def update_outbox(
    session: Session, owner: str, changes: Sequence[Mapping[str, Any]], *, now: datetime
) -> list[int]:
    """Record send outcomes (dicts of outbox columns, each with `id`); returns the ids lost.

    The lease is dropped on every written row unless the change sets `lease_owner` itself.
    """
    lost: list[int] = []
    for rows in _by_columns(
        {"lease_owner": None, "lease_expires_at": None, "updated_at": now, **change}
        for change in changes
    ):
        lost.extend(_apply(session, OUTBOX_QUEUE, owner, rows))
    return sorted(lost)


# A delivered send's log entry: provider, cost and currency (those of one group share them).
SentAs = tuple[str | None, Decimal | None, str | None]


def record_sent(
    session: Session, owner: str, sent: Mapping[SentAs, Sequence[int]], *, now: datetime
) -> list[int]:
    """Mark outbox rows `owner` holds as sent and log each; returns the ids whose lease was lost.

    For sends a provider accepted without giving an id of its own (an in-process sink, a
    dry-run): each group is one UPDATE of the rows still leased to `owner` and one INSERT
    of their send-log entries selected from those rows, with no per-row values in Python.
    A lost lease means another worker took the send over; it records it instead.
    """
    lost: list[int] = []
    for (provider, cost, currency), ids in sent.items():
        wanted = sorted(set(ids))
        marked = set(
            session.scalars(
                update(OutboxMessage)
                .where(among(session, OutboxMessage.id, wanted), OutboxMessage.lease_owner == owner)
                .values(
                    status=OutboxStatus.SENT.value, sent_at=now, provider=provider,
                    provider_message_id=None, lease_owner=None, lease_expires_at=None,
                    updated_at=now,
                )
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            )
        )  # fmt: skip
        lost.extend(outbox_id for outbox_id in wanted if outbox_id not in marked)
        if marked:
            log_sent(
                session, sorted(marked), provider=provider, cost=cost, currency=currency, now=now
            )
    return sorted(lost)
