"""Count the contacts reaching each A/B split, so its test share is exact.

Revision ID: 0008_split_arrivals
Revises: 0007_enrollment_priority_rank
Create Date: 2026-11-27

`split 20% test winner ...` drew each contact's place from a hash of its id, so 100
contacts could put 24 in the test; counting arrivals puts exactly 20 there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_split_arrivals"
down_revision: str | None = "0007_enrollment_priority_rank"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create split_arrivals (version, node) -> arrivals."""
    op.create_table(
        "split_arrivals",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column(
            "version_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("arrivals", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "version_id"],
            ["campaign_versions.tenant_id", "campaign_versions.id"],
            name=op.f("fk_split_arrivals_tenant_id_version_id_campaign_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "node", name=op.f("pk_split_arrivals")),
    )


def downgrade() -> None:
    """Drop split_arrivals."""
    op.drop_table("split_arrivals")
