"""Index the outbox by (channel, created_at), for the targeted segment sweep.

Revision ID: 0006_outbox_channel_time_index
Revises: 0005_campaign_segment_sweep
Create Date: 2026-11-27

A sweep of `received(email, 1d)` (an `exclude` or a segment) reads only the contacts with an
email sent in the stretch that the window's edge passed since the previous sweep. The
existing (tenant, contact, channel, created_at) index cannot answer "which contacts" without
reading every contact's sends. It does not lead with tenant_id: SQLite plans without
statistics and would take a (tenant_id, ...) index for other outbox reads of a tenant (the
A/B results by version) over the index they should use.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_outbox_channel_time_index"
down_revision: str | None = "0005_campaign_segment_sweep"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the (channel, created_at) index on the outbox."""
    op.create_index(
        op.f("ix_send_outbox_channel_created_at"), "send_outbox", ["channel", "created_at"]
    )


def downgrade() -> None:
    """Drop the (channel, created_at) index."""
    op.drop_index(op.f("ix_send_outbox_channel_created_at"), table_name="send_outbox")
