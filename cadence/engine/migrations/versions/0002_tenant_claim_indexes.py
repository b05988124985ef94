"""Index the claims as the engine makes them: per tenant, by status and due time.

Revision ID: 0002_tenant_claim_indexes
Revises: 0001_initial
Create Date: 2026-11-26

Each engine claims within its tenant, so with many tenants (status, due_at) alone would
walk every tenant's due rows to find one tenant's.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_tenant_claim_indexes"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the per-tenant claim indexes on enrollments and the outbox."""
    op.create_index(
        op.f("ix_enrollments_tenant_id_status_due_at"),
        "enrollments",
        ["tenant_id", "status", "due_at"],
    )
    op.create_index(
        op.f("ix_send_outbox_tenant_id_status_next_attempt_at"),
        "send_outbox",
        ["tenant_id", "status", "next_attempt_at"],
    )


def downgrade() -> None:
    """Drop the per-tenant claim indexes."""
    op.drop_index(op.f("ix_send_outbox_tenant_id_status_next_attempt_at"), table_name="send_outbox")
    op.drop_index(op.f("ix_enrollments_tenant_id_status_due_at"), table_name="enrollments")
