"""The durable schema: every table the engine keeps, each row scoped by tenant.

Cross-table references carry the tenant in the foreign key, so that the database itself
refuses a row of one tenant pointing at another tenant's contact or campaign.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cadence.engine.store.types import BigID, JSONDoc, UTCDateTime

# Deterministic constraint names, so that migrations can name what they alter on every backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 255
NAME_LENGTH = 200


class Base(DeclarativeBase):
    """Declarative base holding the one MetaData that migrations are checked against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDoc,
        list[Any]: JSONDoc,
        list[str]: JSONDoc,
    }


class CampaignStatus(enum.StrEnum):
    """Where a campaign is in its lifecycle."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ARCHIVED = "archived"


class EnrollmentStatus(enum.StrEnum):
    """Where one contact's journey through a campaign version stands."""

    ACTIVE = "active"  # has a next step, runs when due_at passes
    PAUSED = "paused"  # held by a paused campaign; resumes as active
    COMPLETED = "completed"  # ran off the end of the graph
    EXITED = "exited"  # left early: `exit`, goal reached, campaign ended
    FAILED = "failed"  # a step failed for good
    CANCELLED = "cancelled"  # the campaign was cancelled


# Enrollments still on their way: running ones, and those a pause holds (they go on at
# resume). An event can make them due, a migration must find their nodes, a timezone change
# moves their local times, and a campaign with any is not over.
UNFINISHED_ENROLLMENT_STATUSES = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value)


class OutboxStatus(enum.StrEnum):
    """Where one send stands in the dispatch pipeline."""

    PENDING = "pending"  # waiting for dispatch (next_attempt_at)
    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # gave up after retries or a permanent error
    SUPPRESSED = "suppressed"  # stopped by suppression, consent, cap or budget
    CANCELLED = "cancelled"  # the enrollment or campaign went away first


# Outbox rows that count as a send a contact has had (gone out, or about to): what caps,
# budgets and `received()` count.
COUNTED_SEND_STATUSES = frozenset({OutboxStatus.PENDING.value, OutboxStatus.SENT.value})
# The outbox node of a `notify webhook` notice: about the contact, to a CRM, not a message
# the contact receives (no caps, no `received()`, no report, no preference or gate check).
NOTIFY_NODE = "notify"


class ConsentStatus(enum.StrEnum):
    """A contact's permission to be messaged on one channel."""

    PENDING = "pending"  # double opt-in asked, not yet confirmed
    GRANTED = "granted"
    DENIED = "denied"
    WITHDRAWN = "withdrawn"


def _check_in(column: str, values: type[enum.StrEnum]) -> str:
    """SQL text for a CHECK that a column holds one of an enum's values."""
    quoted = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({quoted})"


class Tenant(Base):
    """An isolated customer of the engine: every other row belongs to exactly one."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    # The declared contact schema (see cadence.engine.store.schema), kept for the checker.
    contact_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc, nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Contact(Base):
    """A person the campaigns talk to, identified by the tenant's own id for them."""

    __tablename__ = "contacts"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    first_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    last_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "tenant_id", "email"),
        Index(None, "tenant_id", "phone"),
        Index(None, "tenant_id", "updated_at"),
    )


class Event(Base):
    """Something that happened, to a contact or (for fan-out triggers) to a thing."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    contact_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    at: Mapped[datetime]
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(64))
    # Set by ingestion paths that may see the same event twice (webhooks); unique per tenant.
    dedupe_key: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    received_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("tenant_id", "dedupe_key"),
        Index(None, "tenant_id", "contact_id", "name", "at"),
        Index(None, "tenant_id", "name", "at"),
    )


class Campaign(Base):
    """A named campaign of one tenant; its versions hold the compiled graphs."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    display_name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT.value)
    # The version that new enrollments join; no FK, as versions also point back here.
    current_version_id: Mapped[int | None] = mapped_column(BigID)
    # A version deployed to a live campaign that needs approval it lacks: it waits here, and
    # the approved current version keeps running, until `approve` makes it current.
    pending_version_id: Mapped[int | None] = mapped_column(BigID, default=None)
    # Until when `on segment_enter` of a segment that time alone can change (`within`,
    # durations, decaying scores) has been read for every contact (see engine/sweep.py).
    segments_swept_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "id"),
        CheckConstraint(_check_in("status", CampaignStatus), name="status"),
        Index(None, "status"),
    )


class CampaignVersion(Base):
    """One compiled, immutable version of a campaign, named by its content hash."""

    __tablename__ = "campaign_versions"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[int] = mapped_column(BigID)
    content_hash: Mapped[str] = mapped_column(String(128))
    compiled: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "campaign_id"],
            ["campaigns.tenant_id", "campaigns.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("campaign_id", "content_hash"),
        UniqueConstraint("tenant_id", "id"),
    )


class Enrollment(Base):
    """One contact's journey through one campaign version: a small state machine with a due time.

    Workers claim due rows under a lease (lease_owner, lease_expires_at); a lease that runs out
    lets another worker take the row over.
    """

    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(BigID)
    contact_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    # Which entry this is for (version, contact): 0 first, more only where re-entry is allowed.
    occurrence: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default=EnrollmentStatus.ACTIVE.value)
    due_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    lease_expires_at: Mapped[datetime | None]
    # Failed tries of the current step (reset when the step moves on).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Engine-owned working state: split variant, what a `wait for` waits for, and so on.
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    history: Mapped[list[Any]] = mapped_column(default=list)
    # Claim order among enrollments due at one instant: minus the campaign's priority, so
    # an ascending index serves "larger priority first" (caps and budgets go to them).
    # (The server default only fills rows older than the column; the engine always sets it.)
    priority_rank: Mapped[int] = mapped_column(SmallInteger, server_default=text("-5"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "version_id"],
            ["campaign_versions.tenant_id", "campaign_versions.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("version_id", "contact_id", "occurrence"),
        CheckConstraint(_check_in("status", EnrollmentStatus), name="status"),
        # The scheduler's claim: tenant_id = ? AND status = 'active' AND due_at <= now
        # ORDER BY due_at, priority_rank. Every claim names its tenant (migration 0011).
        Index(None, "tenant_id", "status", "due_at", "priority_rank"),
        Index(None, "tenant_id", "contact_id"),
        Index(None, "version_id", "status"),
    )


class SplitArrivals(Base):
    """How many contacts have reached a split (A/B or random) of a campaign version.

    The split counts its arrivals so that its shares are kept, not a per-contact draw that
    only holds on average: of the first N arrivals at `split 20% test`, floor(N x 20%) (or
    one more) are in the test (see `ab_slot` and `split_branch` in engine/stepper.py).
    """

    __tablename__ = "split_arrivals"

    tenant_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(BigID, primary_key=True)
    node: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    arrivals: Mapped[int] = mapped_column(Integer, default=0)
    # When the first contact reached the split: an A/B test that sent nothing (too few
    # contacts, every test send stopped) is over `after` this, not never.
    first_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "version_id"],
            ["campaign_versions.tenant_id", "campaign_versions.id"],
            ondelete="CASCADE",
        ),
    )


class OutboxMessage(Base):
    """A send waiting for or done by dispatch; its idempotency key makes it happen once."""

    __tablename__ = "send_outbox"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    # Deterministic from (campaign version, node, contact, occurrence); also handed to providers.
    idempotency_key: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    enrollment_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    version_id: Mapped[int | None] = mapped_column(BigID)
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    contact_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    channel: Mapped[str] = mapped_column(String(32))
    template: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    variant: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    lease_expires_at: Mapped[datetime | None]
    provider: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
        ),
        CheckConstraint(_check_in("status", OutboxStatus), name="status"),
        # Dispatch's claim: tenant_id = ? AND status = 'pending' AND next_attempt_at <= now.
        Index(None, "tenant_id", "status", "next_attempt_at"),
        # Frequency caps and "received(email, 24h)": a contact's sends on a channel over time.
        Index(None, "tenant_id", "contact_id", "channel", "created_at"),
        # The segment sweep: which contacts were sent to on a channel in a stretch of time.
        # Not led by tenant_id: SQLite, planning without statistics, would take a
        # (tenant_id, ...) index for any tenant's outbox read over better ones (A/B results).
        Index(None, "channel", "created_at"),
        # A provider's report names its message id (with the provider, from a webhook; alone,
        # in an event's `message`): the id leads, so both lookups use the index.
        Index(None, "provider_message_id", "provider"),
        # A/B splits (first send, results of a version's variants) and budgets (a campaign's
        # sends, joined through its versions).
        Index(None, "version_id", "variant"),
    )


class InboxMessage(Base):
    """An in-app message delivered to a contact's inbox, for the app to list and mark read.

    `send inbox TEMPLATE` has no provider: delivering it is writing this row (one per outbox
    row, so a retried delivery writes nothing twice).
    """

    __tablename__ = "inbox_messages"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    outbox_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("send_outbox.id", ondelete="SET NULL"), unique=True
    )
    campaign: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    template: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
        ),
        # The app's read: one contact's messages, newest first.
        Index(None, "tenant_id", "contact_id", "created_at"),
    )


class SendLog(Base):
    """An append-only record of each attempt and each provider-reported outcome of a send."""

    __tablename__ = "send_log"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    outbox_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("send_outbox.id", ondelete="SET NULL")
    )
    contact_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    channel: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    # attempted, sent, failed, delivered, bounced, complained, ...
    outcome: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    currency: Mapped[str | None] = mapped_column(String(3))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index(None, "tenant_id", "contact_id", "channel", "at"),
        Index(None, "outbox_id"),
        # The report's reads of the few `skipped` and `failed` entries among many; the
        # contact last, so a batch's read of its contacts' failures still searches by them.
        Index(None, "tenant_id", "outcome", "contact_id"),
    )


class Suppression(Base):
    """An address or contact that must not be sent to on a channel (bounce, complaint, opt-out)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(320))
    contact_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("address IS NOT NULL OR contact_id IS NOT NULL", name="target"),
        UniqueConstraint("tenant_id", "channel", "address"),
        Index(None, "tenant_id", "channel", "contact_id"),
    )


class Consent(Base):
    """A contact's permission on one channel, with the double opt-in handshake."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    double_opt_in_token: Mapped[str | None] = mapped_column(String(128), unique=True)
    requested_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("tenant_id", "contact_id", "channel"),
        CheckConstraint(_check_in("status", ConsentStatus), name="status"),
    )


class Score(Base):
    """The current value of a named score for a contact, as of when it was computed."""

    __tablename__ = "scores"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "contact_id"], ["contacts.tenant_id", "contacts.id"], ondelete="CASCADE"
        ),
        Index(None, "tenant_id", "name", "value"),
    )


class Agent(Base):
    """A salesperson that `assign agent round_robin` can hand contacts to."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    email: Mapped[str | None] = mapped_column(String(320))
    pool: Mapped[str] = mapped_column(String(NAME_LENGTH), default="default")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index(None, "tenant_id", "pool", "active"),
    )


class AgentCursor(Base):
    """Where round-robin assignment is in a tenant's agent pool (the last agent handed work)."""

    __tablename__ = "agent_cursors"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    pool: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    last_agent_id: Mapped[int | None] = mapped_column(BigID)
    assigned: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]


class AuditEntry(Base):
    """Who did what to which campaign, contact or setting, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index(None, "tenant_id", "at"),)


TENANT_SCOPED_TABLES: tuple[str, ...] = tuple(
    table.name for table in Base.metadata.sorted_tables if "tenant_id" in table.c
)
