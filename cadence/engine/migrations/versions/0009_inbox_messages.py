"""Keep in-app inbox messages, so `send inbox` can be delivered outside a dry-run.

Revision ID: 0009_inbox_messages
Revises: 0008_split_arrivals
Create Date: 2026-11-27

The inbox channel has no provider: a delivered inbox message is a row the app reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_inbox_messages"
down_revision: str | None = "0008_split_arrivals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create inbox_messages."""
    op.create_table(
        "inbox_messages",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("outbox_id", ID, nullable=True),
        sa.Column("campaign", sa.String(length=200), nullable=True),
        sa.Column("template", sa.String(length=200), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["send_outbox.id"],
            name=op.f("fk_inbox_messages_outbox_id_send_outbox"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "contact_id"],
            ["contacts.tenant_id", "contacts.id"],
            name=op.f("fk_inbox_messages_tenant_id_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_messages")),
        sa.UniqueConstraint("outbox_id", name=op.f("uq_inbox_messages_outbox_id")),
    )
    op.create_index(
        op.f("ix_inbox_messages_tenant_id_contact_id_created_at"),
        "inbox_messages",
        ["tenant_id", "contact_id", "created_at"],
    )


def downgrade() -> None:
    """Drop inbox_messages."""
    op.drop_index(
        op.f("ix_inbox_messages_tenant_id_contact_id_created_at"), table_name="inbox_messages"
    )
    op.drop_table("inbox_messages")
