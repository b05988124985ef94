"""Drop the claim indexes that do not lead with the tenant.

Revision ID: 0011_tenant_only_claim_indexes
Revises: 0010_outbox_message_id_index
Create Date: 2026-11-27

Every claim names its tenant, which uses the per-tenant indexes of migration 0002, so
(status, due_at, priority_rank) on enrollments and (status, next_attempt_at) on the outbox
answered no query. Each step still had to update the first and each send insert into the
second. Without them, the store's own statements in the dry-run benchmark take about a
tenth less time.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_tenant_only_claim_indexes"
down_revision: str | None = "0010_outbox_message_id_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop the tenant-less claim indexes of enrollments and the outbox."""
    op.drop_index(op.f("ix_enrollments_status_due_at_priority_rank"), table_name="enrollments")
    op.drop_index(op.f("ix_send_outbox_status_next_attempt_at"), table_name="send_outbox")


def downgrade() -> None:
    """Recreate the tenant-less claim indexes."""
    op.create_index(
        op.f("ix_send_outbox_status_next_attempt_at"),
        "send_outbox",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        op.f("ix_enrollments_status_due_at_priority_rank"),
        "enrollments",
        ["status", "due_at", "priority_rank"],
    )
