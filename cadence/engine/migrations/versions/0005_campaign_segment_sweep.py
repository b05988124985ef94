"""Remember until when a campaign's time-dependent segments were read for every contact.

Revision ID: 0005_campaign_segment_sweep
Revises: 0004_campaign_pending_version
Create Date: 2026-11-27

A contact can enter a segment such as `not (last(login) within 30d)` with no change to its
data, as time passes. The engine reads such segments for every contact periodically and
compares with the previous reading; the instant of that reading must survive a restart.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_campaign_segment_sweep"
down_revision: str | None = "0004_campaign_pending_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add campaigns.segments_swept_at (nullable: never swept)."""
    op.add_column(
        "campaigns", sa.Column("segments_swept_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    """Drop campaigns.segments_swept_at."""
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("segments_swept_at")
