"""Claim enrollments due at one instant in campaign priority order.

Revision ID: 0007_enrollment_priority_rank
Revises: 0006_outbox_channel_time_index
Create Date: 2026-11-27

`priority N` says that when caps or budgets let only some due messages through, larger
priorities go first. The stepper honoured it within a batch only: of 600 enrollments due at
one instant, a batch of 500 took the oldest, whatever their campaign. Enrollments now carry
minus their campaign's priority, and the claim indexes order by it after the due time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_enrollment_priority_rank"
down_revision: str | None = "0006_outbox_channel_time_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_RANK = -5


def upgrade() -> None:
    """Add enrollments.priority_rank, fill it from each version's priority, re-index claims."""
    op.add_column(
        "enrollments",
        sa.Column("priority_rank", sa.SmallInteger(), nullable=False, server_default=sa.text("-5")),
    )
    bind = op.get_bind()
    for version_id, compiled in bind.execute(sa.text("SELECT id, compiled FROM campaign_versions")):
        document = json.loads(compiled) if isinstance(compiled, str) else compiled
        rank = -int((document or {}).get("settings", {}).get("priority", -DEFAULT_RANK))
        if rank != DEFAULT_RANK:
            bind.execute(
                sa.text("UPDATE enrollments SET priority_rank = :rank WHERE version_id = :id"),
                {"rank": rank, "id": version_id},
            )
    op.drop_index(op.f("ix_enrollments_status_due_at"), table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_tenant_id_status_due_at"), table_name="enrollments")
    op.create_index(
        op.f("ix_enrollments_status_due_at_priority_rank"),
        "enrollments",
        ["status", "due_at", "priority_rank"],
    )
    op.create_index(
        op.f("ix_enrollments_tenant_id_status_due_at_priority_rank"),
        "enrollments",
        ["tenant_id", "status", "due_at", "priority_rank"],
    )


def downgrade() -> None:
    """Back to the claim indexes by due time alone; drop enrollments.priority_rank."""
    op.drop_index(
        op.f("ix_enrollments_tenant_id_status_due_at_priority_rank"), table_name="enrollments"
    )
    op.drop_index(op.f("ix_enrollments_status_due_at_priority_rank"), table_name="enrollments")
    op.create_index(op.f("ix_enrollments_status_due_at"), "enrollments", ["status", "due_at"])
    op.create_index(
        op.f("ix_enrollments_tenant_id_status_due_at"),
        "enrollments",
        ["tenant_id", "status", "due_at"],
    )
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("priority_rank")
