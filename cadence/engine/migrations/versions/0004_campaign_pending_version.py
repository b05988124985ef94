"""Give campaigns a version that waits for approval.

Revision ID: 0004_campaign_pending_version
Revises: 0003_outbox_version_index
Create Date: 2026-11-27

A new version deployed to a live campaign that needs approval must not reach contacts
before it is approved; until then it is kept as the campaign's pending version while the
approved one keeps running.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_campaign_pending_version"
down_revision: str | None = "0003_outbox_version_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add campaigns.pending_version_id (nullable: most campaigns have none)."""
    op.add_column(
        "campaigns",
        sa.Column(
            "pending_version_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    """Drop campaigns.pending_version_id."""
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("pending_version_id")
