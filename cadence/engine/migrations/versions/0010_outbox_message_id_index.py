"""Index the outbox by provider message id first, then provider.

Revision ID: 0010_outbox_message_id_index
Revises: 0009_inbox_messages
Create Date: 2026-11-27

An event that names its message by the provider's id alone (`"message": "<id>"`) could not
use the (provider, provider_message_id) index: each batch of such events read every outbox
row of the tenant, so pushing events grew with the square of the sends. With the id first,
that lookup and a webhook's (provider and id) both probe the index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_outbox_message_id_index"
down_revision: str | None = "0009_inbox_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Replace the (provider, provider_message_id) index with (provider_message_id, provider)."""
    op.drop_index(op.f("ix_send_outbox_provider_provider_message_id"), table_name="send_outbox")
    op.create_index(
        op.f("ix_send_outbox_provider_message_id_provider"),
        "send_outbox",
        ["provider_message_id", "provider"],
    )


def downgrade() -> None:
    """Back to the (provider, provider_message_id) index."""
    op.drop_index(op.f("ix_send_outbox_provider_message_id_provider"), table_name="send_outbox")
    op.create_index(
        op.f("ix_send_outbox_provider_provider_message_id"),
        "send_outbox",
        ["provider", "provider_message_id"],
    )
