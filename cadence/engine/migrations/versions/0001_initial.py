"""Create the store's tables: tenants, contacts, events, campaigns, enrollments, sends and more.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

Types are spelled here rather than imported from the models, so that this script keeps
creating the same schema whatever the models become later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _bigid() -> sa.types.TypeEngine[int]:
    """A 64-bit surrogate key (SQLite's INTEGER rowid alias there)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    """A JSON document: JSONB on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamp() -> sa.types.TypeEngine[datetime]:
    """A timestamp with time zone (stored as UTC)."""
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the first schema."""
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact_schema", _json(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "agent_cursors",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("pool", sa.String(length=200), nullable=False),
        sa.Column("last_agent_id", _bigid(), nullable=True),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_agent_cursors_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "pool", name=op.f("pk_agent_cursors")),
    )
    op.create_table(
        "agents",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("pool", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_agents_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_agents_tenant_id_name")),
    )
    op.create_index(
        op.f("ix_agents_tenant_id_pool_active"), "agents", ["tenant_id", "pool", "active"]
    )

    op.create_table(
        "audit_log",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=255), nullable=True),
        sa.Column("details", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_log_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_tenant_id_at"), "audit_log", ["tenant_id", "at"])

    op.create_table(
        "campaigns",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_version_id", _bigid(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'scheduled', 'active', 'paused', 'completed', 'cancelled', "
            "'archived')",
            name=op.f("ck_campaigns_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_campaigns_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_campaigns_tenant_id_id")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_campaigns_tenant_id_name")),
    )
    op.create_index(op.f("ix_campaigns_status"), "campaigns", ["status"])

    op.create_table(
        "contacts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("attributes", _json(), nullable=False),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_contacts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_contacts")),
    )
    op.create_index(op.f("ix_contacts_tenant_id_email"), "contacts", ["tenant_id", "email"])
    op.create_index(op.f("ix_contacts_tenant_id_phone"), "contacts", ["tenant_id", "phone"])
    op.create_index(
        op.f("ix_contacts_tenant_id_updated_at"), "contacts", ["tenant_id", "updated_at"]
    )

    op.create_table(
        "suppressions",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("contact_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "address IS NOT NULL OR contact_id IS NOT NULL", name=op.f("ck_suppressions_target")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_suppressions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint(
            "tenant_id",
            "channel",
            "address",
            name=op.f("uq_suppressions_tenant_id_channel_address"),
        ),
    )
    op.create_index(
        op.f("ix_suppressions_tenant_id_channel_contact_id"),
        "suppressions",
        ["tenant_id", "channel", "contact_id"],
    )

    op.create_table(
        "campaign_versions",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", _bigid(), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("compiled", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "campaign_id"],
            ["campaigns.tenant_id", "campaigns.id"],
            name=op.f("fk_campaign_versions_tenant_id_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_versions")),
        sa.UniqueConstraint(
            "campaign_id",
            "content_hash",
            name=op.f("uq_campaign_versions_campaign_id_content_hash"),
        ),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_campaign_versions_tenant_id_id")),
    )
    op.create_table(
        "consents",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("double_opt_in_token", sa.String(length=128), nullable=True),
        sa.Column("requested_at", _timestamp(), nullable=True),
        sa.Column("confirmed_at", _timestamp(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'granted', 'denied', 'withdrawn')",
            name=op.f("ck_consents_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name=op.f("fk_consents_tenant_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint("double_opt_in_token", name=op.f("uq_consents_double_opt_in_token")),
        sa.UniqueConstraint(
            "tenant_id",
            "contact_id",
            "channel",
            name=op.f("uq_consents_tenant_id_contact_id_channel"),
        ),
    )
    op.create_table(
        "events",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("properties", _json(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("received_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name=op.f("fk_events_tenant_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("tenant_id", "dedupe_key", name=op.f("uq_events_tenant_id_dedupe_key")),
    )
    op.create_index(
        op.f("ix_events_tenant_id_contact_id_name_at"),
        "events",
        ["tenant_id", "contact_id", "name", "at"],
    )
    op.create_index(op.f("ix_events_tenant_id_name_at"), "events", ["tenant_id", "name", "at"])

    op.create_table(
        "scores",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name=op.f("fk_scores_tenant_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "contact_id", "name", name=op.f("pk_scores")),
    )
    op.create_index(
        op.f("ix_scores_tenant_id_name_value"), "scores", ["tenant_id", "name", "value"]
    )

    op.create_table(
        "enrollments",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("version_id", _bigid(), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", _timestamp(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", _timestamp(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("history", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'completed', 'exited', 'failed', 'cancelled')",
            name=op.f("ck_enrollments_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name=op.f("fk_enrollments_tenant_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "version_id"],
            ["campaign_versions.tenant_id", "campaign_versions.id"],
            name=op.f("fk_enrollments_tenant_id_version_id_campaign_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint(
            "version_id",
            "contact_id",
            "occurrence",
            name=op.f("uq_enrollments_version_id_contact_id_occurrence"),
        ),
    )
    op.create_index(op.f("ix_enrollments_status_due_at"), "enrollments", ["status", "due_at"])
    op.create_index(
        op.f("ix_enrollments_tenant_id_contact_id"), "enrollments", ["tenant_id", "contact_id"]
    )
    op.create_index(
        op.f("ix_enrollments_version_id_status"), "enrollments", ["version_id", "status"]
    )

    op.create_table(
        "send_outbox",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("enrollment_id", _bigid(), nullable=True),
        sa.Column("version_id", _bigid(), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=True),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _timestamp(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", _timestamp(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("sent_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'suppressed', 'cancelled')",
            name=op.f("ck_send_outbox_status"),
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_send_outbox_enrollment_id_enrollments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name=op.f("fk_send_outbox_tenant_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_send_outbox_idempotency_key")),
    )
    op.create_index(
        op.f("ix_send_outbox_provider_provider_message_id"),
        "send_outbox",
        ["provider", "provider_message_id"],
    )
    op.create_index(
        op.f("ix_send_outbox_status_next_attempt_at"), "send_outbox", ["status", "next_attempt_at"]
    )
    op.create_index(
        op.f("ix_send_outbox_tenant_id_contact_id_channel_created_at"),
        "send_outbox",
        ["tenant_id", "contact_id", "channel", "created_at"],
    )

    op.create_table(
        "send_log",
        sa.Column("id", _bigid(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("outbox_id", _bigid(), nullable=True),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("cost", sa.Numeric(precision=14, scale=6), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["send_outbox.id"],
            name=op.f("fk_send_log_outbox_id_send_outbox"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_log")),
    )
    op.create_index(op.f("ix_send_log_outbox_id"), "send_log", ["outbox_id"])
    op.create_index(
        op.f("ix_send_log_tenant_id_contact_id_channel_at"),
        "send_log",
        ["tenant_id", "contact_id", "channel", "at"],
    )


def downgrade() -> None:
    """Drop every table of the first schema."""
    op.drop_index(op.f("ix_send_log_tenant_id_contact_id_channel_at"), table_name="send_log")
    op.drop_index(op.f("ix_send_log_outbox_id"), table_name="send_log")

    op.drop_table("send_log")
    op.drop_index(
        op.f("ix_send_outbox_tenant_id_contact_id_channel_created_at"), table_name="send_outbox"
    )
    op.drop_index(op.f("ix_send_outbox_status_next_attempt_at"), table_name="send_outbox")
    op.drop_index(op.f("ix_send_outbox_provider_provider_message_id"), table_name="send_outbox")

    op.drop_table("send_outbox")
    op.drop_index(op.f("ix_enrollments_version_id_status"), table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_tenant_id_contact_id"), table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_status_due_at"), table_name="enrollments")

    op.drop_table("enrollments")
    op.drop_index(op.f("ix_scores_tenant_id_name_value"), table_name="scores")

    op.drop_table("scores")
    op.drop_index(op.f("ix_events_tenant_id_name_at"), table_name="events")
    op.drop_index(op.f("ix_events_tenant_id_contact_id_name_at"), table_name="events")

    op.drop_table("events")
    op.drop_table("consents")
    op.drop_table("campaign_versions")
    op.drop_index(op.f("ix_suppressions_tenant_id_channel_contact_id"), table_name="suppressions")

    op.drop_table("suppressions")
    op.drop_index(op.f("ix_contacts_tenant_id_updated_at"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_tenant_id_phone"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_tenant_id_email"), table_name="contacts")

    op.drop_table("contacts")
    op.drop_index(op.f("ix_campaigns_status"), table_name="campaigns")

    op.drop_table("campaigns")
    op.drop_index(op.f("ix_audit_log_tenant_id_at"), table_name="audit_log")

    op.drop_table("audit_log")
    op.drop_index(op.f("ix_agents_tenant_id_pool_active"), table_name="agents")

    op.drop_table("agents")
    op.drop_table("agent_cursors")
    op.drop_table("tenants")
