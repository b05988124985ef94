"""Campaigns, their compiled versions and enrollments: the bulk statements the engine needs.

Deploying stores a compiled version once per content hash; enrolling inserts many rows in
one statement and never enrolls a contact twice in the same (version, occurrence); pausing
and resuming flip every enrollment of a campaign in one UPDATE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from cadence.engine.store.bulk import among, insert_rows
from cadence.engine.store.database import StoreError, dialect_insert
from cadence.engine.store.models import (
    UNFINISHED_ENROLLMENT_STATUSES,
    AuditEntry,
    Campaign,
    CampaignStatus,
    CampaignVersion,
    Enrollment,
    EnrollmentStatus,
    OutboxMessage,
    OutboxStatus,
    SplitArrivals,
)

CHUNK = 500


@dataclass(frozen=True)
class DeployedVersion:
    """Where a deploy left things: the campaign, its version, and whether that version is new."""

    campaign_id: int
    version_id: int
    created: bool


def _dialect(session: Session) -> str:
    """The session's backend name."""
    return session.get_bind().dialect.name


def get_campaign(session: Session, tenant_id: str, name: str) -> Campaign | None:
    """A tenant's campaign by name."""
    return session.scalar(
        select(Campaign).where(Campaign.tenant_id == tenant_id, Campaign.name == name)
    )


def save_campaign_version(
    session: Session,
    tenant_id: str,
    name: str,
    *,
    compiled: dict[str, Any],
    content_hash: str,
    now: datetime,
    display_name: str | None = None,
    pending: bool = False,
) -> DeployedVersion:
    """Store a compiled campaign (once per content hash) and make it the campaign's current one.

    Creates the campaign as a draft on first deploy. Deploying the same hash again is a no-op
    apart from making that version current. With `pending`, the version waits for approval
    as the campaign's pending one instead, and the current version stays.
    """
    insert_campaign = dialect_insert(_dialect(session), Campaign).values(
        tenant_id=tenant_id,
        name=name,
        display_name=display_name or name,
        status=CampaignStatus.DRAFT.value,
        created_at=now,
        updated_at=now,
    )
    session.execute(insert_campaign.on_conflict_do_nothing(index_elements=["tenant_id", "name"]))
    campaign = get_campaign(session, tenant_id, name)
    if campaign is None:  # pragma: no cover - the insert above guarantees it
        raise StoreError(f"campaign {name!r} vanished while deploying")
    insert_version = dialect_insert(_dialect(session), CampaignVersion).values(
        tenant_id=tenant_id,
        campaign_id=campaign.id,
        content_hash=content_hash,
        compiled=compiled,
        created_at=now,
    )
    inserted = session.scalar(
        insert_version.on_conflict_do_nothing(
            index_elements=["campaign_id", "content_hash"]
        ).returning(CampaignVersion.id)
    )
    created = inserted is not None
    version_id = inserted
    if version_id is None:
        version_id = session.scalar(
            select(CampaignVersion.id).where(
                CampaignVersion.campaign_id == campaign.id,
                CampaignVersion.content_hash == content_hash,
            )
        )
    if version_id is None:  # pragma: no cover
        raise StoreError(f"version {content_hash} of {name!r} vanished while deploying")
    # A deploy decides what runs: the version becomes current or pending, and any version
    # that was pending before is superseded either way.
    if pending:
        campaign.pending_version_id = version_id
    else:
        campaign.current_version_id = version_id
        campaign.pending_version_id = None
    if display_name and not pending:
        campaign.display_name = display_name
    campaign.updated_at = now
    session.flush()
    return DeployedVersion(campaign.id, version_id, created)


def set_campaign_status(
    session: Session,
    tenant_id: str,
    name: str,
    status: CampaignStatus,
    *,
    now: datetime,
) -> Campaign:
    """Move a campaign to `status` (the engine decides which moves are allowed)."""
    campaign = get_campaign(session, tenant_id, name)
    if campaign is None:
        raise StoreError(f"no campaign {name!r} in tenant {tenant_id!r}")
    campaign.status = CampaignStatus(status).value
    campaign.updated_at = now
    session.flush()
    return campaign


def campaign_version_ids(session: Session, campaign_id: int) -> list[int]:
    """Every version id of a campaign, oldest first."""
    return list(
        session.scalars(
            select(CampaignVersion.id)
            .where(CampaignVersion.campaign_id == campaign_id)
            .order_by(CampaignVersion.id)
        )
    )


def versions_of_campaign(version_id: int) -> Select[Any]:
    """The ids of every version of the campaign `version_id` belongs to, as a subquery: a
    contact enters a campaign once (or re-enters by its `reenter`), whichever version."""
    campaign = (
        select(CampaignVersion.campaign_id).where(CampaignVersion.id == version_id)
    ).scalar_subquery()
    return select(CampaignVersion.id).where(CampaignVersion.campaign_id == campaign)


def enroll_contacts(
    session: Session,
    tenant_id: str,
    version_id: int,
    contact_ids: Iterable[str],
    *,
    node: str | None,
    due_at: datetime | None,
    now: datetime,
    occurrence: int = 0,
    state: dict[str, Any] | None = None,
    occurrences: Mapping[str, int] | None = None,
    priority: int,
) -> list[str]:
    """Enroll contacts in a version in bulk; returns those newly enrolled.

    A contact already enrolled in this occurrence, in this version or another of the
    campaign's, is left alone, so a trigger that fires twice, or again after a new version
    is deployed, enrolls once. `occurrences` gives some contacts their own occurrence
    (re-entry), so a mixed batch is still one statement. `priority` is the version's: due
    at the same instant as others, its enrollments are claimed first when it is larger.
    """
    per_contact = occurrences or {}
    wanted = list(dict.fromkeys(contact_ids))
    enrolled: list[str] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = [(cid, per_contact.get(cid, occurrence)) for cid in wanted[start : start + CHUNK]]
        present = {
            (cid, number)
            for cid, number in session.execute(
                select(Enrollment.contact_id, Enrollment.occurrence).where(
                    Enrollment.version_id.in_(versions_of_campaign(version_id)),
                    among(session, Enrollment.contact_id, [cid for cid, _ in chunk]),
                )
            )
        }
        fresh = [pair for pair in chunk if pair not in present]
        if not fresh:
            continue
        insert_rows(
            session,
            Enrollment.__table__,  # type: ignore[arg-type]
            [
                {
                    "tenant_id": tenant_id,
                    "version_id": version_id,
                    "contact_id": contact_id,
                    "occurrence": number,
                    "node": node,
                    "status": EnrollmentStatus.ACTIVE.value,
                    "due_at": due_at,
                    "attempts": 0,
                    "state": state or {},
                    "history": [],
                    "priority_rank": -priority,
                    "created_at": now,
                    "updated_at": now,
                }
                for contact_id, number in fresh
            ],
            conflict=("version_id", "contact_id", "occurrence"),
        )
        enrolled.extend(contact_id for contact_id, _ in fresh)
    return enrolled


def _move_enrollments(
    session: Session,
    version_ids: Sequence[int],
    from_status: EnrollmentStatus,
    to_status: EnrollmentStatus,
    now: datetime,
    *,
    skip_locked: bool = False,
) -> int:
    """One UPDATE moving every enrollment of `version_ids` from one status to another.

    With `skip_locked`, rows another transaction holds are left to it (PostgreSQL; SQLite
    has one writer, so nothing else holds any).
    """
    if not version_ids:
        return 0
    chosen = Enrollment.version_id.in_(list(version_ids)), Enrollment.status == from_status.value
    statement = update(Enrollment)
    if skip_locked and session.get_bind().dialect.name == "postgresql":
        free = select(Enrollment.id).where(*chosen).with_for_update(skip_locked=True)
        statement = statement.where(Enrollment.id.in_(free.scalar_subquery()))
    else:
        statement = statement.where(*chosen)
    result = session.execute(
        statement.values(status=to_status.value, updated_at=now).execution_options(
            synchronize_session=False
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def hold_enrollments(
    session: Session, version_ids: Sequence[int], *, now: datetime, skip_locked: bool = False
) -> int:
    """Pause: every active enrollment of these versions stops where it is (due_at kept).

    A worker pausing from inside a batch passes `skip_locked`: it holds its own batch's rows,
    so waiting for another worker's batch (which may be pausing too) would deadlock; the rows
    it skips are held when that worker's next batch finds the campaign paused.
    """
    return _move_enrollments(
        session, version_ids, EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, now,
        skip_locked=skip_locked,
    )  # fmt: skip


def version_campaigns(session: Session, version_ids: Iterable[int]) -> dict[int, tuple[int, str]]:
    """The id and status of the campaign each of these versions belongs to, by version id."""
    wanted = sorted(set(version_ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(CampaignVersion.id, Campaign.id, Campaign.status)
        .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
        .where(CampaignVersion.id.in_(wanted))
    )
    return {int(version_id): (int(campaign), str(status)) for version_id, campaign, status in rows}


def release_held_enrollments(session: Session, version_ids: Sequence[int], *, now: datetime) -> int:
    """Resume: paused enrollments become active; waits that fell due meanwhile run at once."""
    return _move_enrollments(
        session, version_ids, EnrollmentStatus.PAUSED, EnrollmentStatus.ACTIVE, now
    )


def cancel_enrollments(session: Session, version_ids: Sequence[int], *, now: datetime) -> int:
    """Cancel every active or paused enrollment of these versions."""
    return _move_enrollments(
        session, version_ids, EnrollmentStatus.ACTIVE, EnrollmentStatus.CANCELLED, now
    ) + _move_enrollments(
        session, version_ids, EnrollmentStatus.PAUSED, EnrollmentStatus.CANCELLED, now
    )


def _queued_sends(version_ids: Sequence[int], now: datetime) -> list[ColumnElement[bool]]:
    """The versions' pending sends that no worker is delivering now (none holds a live
    lease): a retry waiting for its time, one a limiter held."""
    return [
        OutboxMessage.version_id.in_(list(version_ids)),
        OutboxMessage.status == OutboxStatus.PENDING.value,
        or_(OutboxMessage.lease_owner.is_(None), OutboxMessage.lease_expires_at <= now),
    ]


def _update_sends(
    session: Session, conditions: list[ColumnElement[bool]], values: dict[str, Any]
) -> int:
    result = session.execute(
        update(OutboxMessage)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def cancel_pending_sends(session: Session, version_ids: Sequence[int], *, now: datetime) -> int:
    """Cancel the versions' queued sends: a cancelled campaign sends nothing more."""
    if not version_ids:
        return 0
    return _update_sends(session, _queued_sends(version_ids, now), {
        "status": OutboxStatus.CANCELLED.value, "error": "campaign cancelled",
        "lease_owner": None, "lease_expires_at": None, "updated_at": now,
    })  # fmt: skip


def hold_pending_sends(session: Session, version_ids: Sequence[int], *, now: datetime) -> int:
    """Pause: the versions' queued sends wait, with no next attempt, until resume."""
    if not version_ids:
        return 0
    return _update_sends(
        session, _queued_sends(version_ids, now), {"next_attempt_at": None, "updated_at": now}
    )


def release_held_sends(session: Session, version_ids: Sequence[int], *, now: datetime) -> int:
    """Resume: the sends a pause held are due at once, as the waits that fell due are."""
    if not version_ids:
        return 0
    held = [*_queued_sends(version_ids, now), OutboxMessage.next_attempt_at.is_(None)]
    return _update_sends(session, held, {"next_attempt_at": now, "updated_at": now})


def enrollment_counts(session: Session, tenant_id: str) -> dict[str, dict[str, int]]:
    """For `cadence status`: per campaign name, how many enrollments are in each status."""
    rows = session.execute(
        select(Campaign.name, Enrollment.status, func.count())
        .join(CampaignVersion, CampaignVersion.campaign_id == Campaign.id)
        .join(Enrollment, Enrollment.version_id == CampaignVersion.id)
        .where(Campaign.tenant_id == tenant_id)
        .group_by(Campaign.name, Enrollment.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for name, status, number in rows:
        counts.setdefault(name, {})[status] = int(number)
    return counts


def _campaign_audit(
    session: Session, tenant_id: str, action: str, campaign: str | None = None
) -> list[tuple[str | None, datetime, Any]]:
    """A tenant's audit lines of `action` about campaigns (or one campaign), oldest first.

    Each row has `subject_id`, `at` and `details`; readers keep the latest per subject.
    """
    query = select(AuditEntry.subject_id, AuditEntry.at, AuditEntry.details).where(
        AuditEntry.tenant_id == tenant_id,
        AuditEntry.action == action,
        AuditEntry.subject_type == "campaign",
    )
    if campaign is not None:
        query = query.where(AuditEntry.subject_id == campaign)
    return [
        (row.subject_id, row.at, row.details)
        for row in session.execute(query.order_by(AuditEntry.at, AuditEntry.id))
    ]


def launched_at(session: Session, tenant_id: str, name: str) -> datetime | None:
    """When the campaign was last launched (its latest `launch` audit line); None: never.

    An interval `every` trigger counts its runs from there (or from `starts`, when later).
    """
    lines = _campaign_audit(session, tenant_id, "launch", name)
    return lines[-1][1] if lines else None


def pause_reasons(
    session: Session, tenant_id: str, name: str | None = None
) -> dict[str, dict[str, Any]]:
    """For `cadence status`: per campaign name, the details of its latest `pause` audit line.

    A pause the engine made because the budget was spent has `reason` "budget", with
    `spent`, `budget` and `currency`; a pause asked for (`cadence pause`) has no reason; one
    made while the campaign was scheduled has `was` "scheduled". `name` narrows it to one
    campaign.
    """
    return {
        str(subject): dict(details or {})
        for subject, _, details in _campaign_audit(session, tenant_id, "pause", name)
    }


def approvals(
    session: Session, tenant_id: str, name: str | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (campaign name, version hash), the latest `approve` audit line's details.

    An approval is of one version: its details hold the version's full hash, `by` and
    `note`, and `at` (ISO 8601) is added from the line. `name` narrows it to one campaign.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for subject, at, details in _campaign_audit(session, tenant_id, "approve", name):
        version = (details or {}).get("version")
        if subject and isinstance(version, str):
            found[(subject, version)] = {**details, "at": at.isoformat()}
    return found


def ab_verdicts(session: Session, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    """For `cadence status`: per campaign name, its decided A/B tests in the order decided.

    Each is the `ab_winner` audit line's details with `node` (the split's node id) and
    `version` (the first 12 characters of the campaign version's hash).
    """
    decided: list[tuple[int, str, dict[str, Any]]] = []
    for subject, _, details in _campaign_audit(session, tenant_id, "ab_winner"):
        version, _, node = (subject or "").partition(":")
        if version.isdigit() and node:
            decided.append((int(version), node, dict(details or {})))
    versions = {
        version_id: (name, content_hash)
        for version_id, name, content_hash in session.execute(
            select(CampaignVersion.id, Campaign.name, CampaignVersion.content_hash)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(
                Campaign.tenant_id == tenant_id,
                CampaignVersion.id.in_(sorted({version for version, *_ in decided})),
            )
        )
    }
    found: dict[str, list[dict[str, Any]]] = {}
    for version_id, node, details in decided:
        if version_id in versions:
            name, content_hash = versions[version_id]
            found.setdefault(name, []).append(
                {**details, "node": node, "version": content_hash[:12]}
            )
    return found


def enrolled_contact_ids(
    session: Session, version_ids: Sequence[int], contact_ids: Iterable[str]
) -> set[str]:
    """Of `contact_ids`, those with any enrollment in these versions (for `in_campaign`)."""
    wanted = sorted(set(contact_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        found.update(
            session.scalars(
                select(Enrollment.contact_id).where(
                    Enrollment.version_id.in_(list(version_ids)),
                    Enrollment.contact_id.in_(wanted[start : start + CHUNK]),
                )
            )
        )
    return found


def migrate_enrollments(
    session: Session,
    from_version_id: int,
    to_version_id: int,
    *,
    node_map: dict[str, str] | None = None,
    now: datetime,
    priority: int,
) -> int:
    """Move unfinished enrollments to a new version by node name (identity unless mapped).

    Only those not already enrolled in the new version move; finished ones stay as history.
    They take the new version's `priority`.
    """
    node_map = node_map or {}
    moving = list(
        session.execute(
            select(Enrollment.id, Enrollment.contact_id, Enrollment.occurrence, Enrollment.node)
            .where(
                Enrollment.version_id == from_version_id,
                Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
            )
            .order_by(Enrollment.id)
        )
    )
    if not moving:
        return 0
    taken: set[tuple[str, int]] = set()
    for start in range(0, len(moving), CHUNK):
        pairs = [(row.contact_id, row.occurrence) for row in moving[start : start + CHUNK]]
        taken.update(
            (contact_id, occurrence)
            for contact_id, occurrence in session.execute(
                select(Enrollment.contact_id, Enrollment.occurrence).where(
                    Enrollment.version_id == to_version_id,
                    tuple_(Enrollment.contact_id, Enrollment.occurrence).in_(pairs),
                )
            )
        )
    changes = [
        {
            "id": row.id,
            "version_id": to_version_id,
            "node": node_map.get(row.node, row.node) if row.node is not None else None,
            "priority_rank": -priority,
            "updated_at": now,
        }
        for row in moving
        if (row.contact_id, row.occurrence) not in taken
    ]
    if changes:
        session.execute(update(Enrollment), changes)
    return len(changes)


def record_audit(
    session: Session,
    tenant_id: str,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one line to the audit log."""
    session.add(
        AuditEntry(
            tenant_id=tenant_id,
            at=now,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            details=details or {},
        )
    )


def take_split_arrival(
    session: Session, tenant_id: str, version_id: int, node: str, *, now: datetime
) -> int:
    """Count one more contact placed at a split; its 0-based place among the arrivals.

    The row is locked until the transaction ends (the upsert takes the lock), so engines
    stepping the same split concurrently number their contacts one after the other, and a
    rolled-back batch gives its numbers back.
    """
    statement = dialect_insert(session.get_bind().dialect.name, SplitArrivals).values(
        tenant_id=tenant_id,
        version_id=version_id,
        node=node,
        arrivals=1,
        first_at=now,
        updated_at=now,
    )
    arrivals = session.execute(
        statement.on_conflict_do_update(
            index_elements=["version_id", "node"],
            set_={"arrivals": SplitArrivals.arrivals + 1, "updated_at": now},
        ).returning(SplitArrivals.arrivals)
    ).scalar_one()
    return int(arrivals) - 1


def lock_split(session: Session, version_id: int, node: str) -> None:
    """Lock a split's arrivals row until the transaction ends: one engine at a time
    decides its A/B test (the row exists once a contact has reached the split)."""
    session.execute(
        select(SplitArrivals.arrivals)
        .where(SplitArrivals.version_id == version_id, SplitArrivals.node == node)
        .with_for_update()
    )


def split_first_arrival(session: Session, version_id: int, node: str) -> datetime | None:
    """When the first contact reached a split of a version, or None if none has."""
    return session.scalar(
        select(SplitArrivals.first_at).where(
            SplitArrivals.version_id == version_id, SplitArrivals.node == node
        )
    )
