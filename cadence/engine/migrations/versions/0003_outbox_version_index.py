"""Index the outbox by campaign version, for the A/B split's and the budget's reads.

Revision ID: 0003_outbox_version_index
Revises: 0002_tenant_claim_indexes
Create Date: 2026-11-26

An A/B split asks for the first send of its variants (`version_id = ? AND variant IN
(...)`) at every step of every contact waiting for the winner, and picks the winner from
the variants' sends; a budget counts its campaign's sends per batch by joining on
version_id. With no index on version_id each of these read the whole outbox (or the whole
tenant's, or every sent row through the status index).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_outbox_version_index"
down_revision: str | None = "0002_tenant_claim_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the (version_id, variant) index on the outbox."""
    op.create_index(
        op.f("ix_send_outbox_version_id_variant"), "send_outbox", ["version_id", "variant"]
    )


def downgrade() -> None:
    """Drop the (version_id, variant) index."""
    op.drop_index(op.f("ix_send_outbox_version_id_variant"), table_name="send_outbox")
