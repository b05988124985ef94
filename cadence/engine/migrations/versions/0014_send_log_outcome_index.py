"""Index the send log by tenant, outcome and contact.

Revision ID: 0014_send_log_outcome_index
Revises: 0013_email_suppression_case
Create Date: 2026-11-29

The report (and so every dashboard load) reads the tenant's `skipped` entries, the sends
the gates stopped, to say why each campaign did not send. No index led with the outcome,
so that read walked the tenant's whole log, one `sent` entry per send, to find the few
skipped ones (and the `failed` ones the same way): at 400,000 sends, 0.1 s a read for
none found. The contact comes last so that the read of a batch's `failed` entries, which
names its contacts, still searches by contact: with (tenant_id, outcome) alone SQLite
took that index over the contact list and read every failed entry of the tenant.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014_send_log_outcome_index"
down_revision: str | None = "0013_email_suppression_case"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the (tenant_id, outcome, contact_id) index on the send log."""
    op.create_index(
        op.f("ix_send_log_tenant_id_outcome_contact_id"),
        "send_log",
        ["tenant_id", "outcome", "contact_id"],
    )


def downgrade() -> None:
    """Drop the (tenant_id, outcome, contact_id) index."""
    op.drop_index(op.f("ix_send_log_tenant_id_outcome_contact_id"), table_name="send_log")
