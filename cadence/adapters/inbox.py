"""The in-app inbox channel: delivering a message is storing it for the app to read.

`send inbox TEMPLATE` has no provider to call. The adapter writes the rendered title,
text and HTML to the store's `inbox_messages` table, one row per outbox row (a retried
delivery inserts nothing twice), and reports the message sent with the row's id.
`cadence.Engine.inbox` lists a contact's messages; `mark_inbox_read` marks them read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio

from cadence.adapters.base import utcnow
from cadence.adapters.message import Channel, OutboundMessage, SendResult
from cadence.adapters.render import EmailContent

# The store (SQLAlchemy) loads on the first delivery, not with the adapters.
if TYPE_CHECKING:
    from cadence.engine.store import Store

PROVIDER = "inbox"


class InboxAdapter:
    """Delivers inbox messages into the store at `database_url` (the engine's own store)."""

    provider = PROVIDER
    channels = frozenset({Channel.INBOX})

    def __init__(self, database_url: str) -> None:
        """Open the store lazily, on the first delivery, in a worker thread."""
        self.database_url = database_url
        self._store: Store | None = None

    async def send(self, message: OutboundMessage) -> SendResult:
        """Store one message."""
        return (await self.send_batch([message]))[0]

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Store the messages in one transaction; each comes back sent with its inbox id."""
        storable = [m for m in messages if m.contact_id and m.outbox_id]
        ids = await trio.to_thread.run_sync(self._write, storable) if storable else {}
        return [
            SendResult.sent(message, PROVIDER, f"inbox-{ids[message.idempotency_key]}")
            if message.idempotency_key in ids
            else SendResult.failed(
                message, PROVIDER, "an inbox message is delivered from the outbox, to a contact"
            )
            for message in messages
        ]

    def _write(self, messages: list[OutboundMessage]) -> dict[str, int]:
        from sqlalchemy import select

        from cadence.engine.store import Store
        from cadence.engine.store.bulk import insert_rows
        from cadence.engine.store.models import InboxMessage

        if self._store is None:
            self._store = Store.open(self.database_url)
        store = self._store
        now = utcnow()
        rows = [_row(message, now) for message in messages]
        with store.session() as session:
            insert_rows(session, InboxMessage.__table__, rows, conflict=("outbox_id",))  # type: ignore[arg-type]
            by_outbox = {
                outbox_id: row_id
                for row_id, outbox_id in session.execute(
                    select(InboxMessage.id, InboxMessage.outbox_id).where(
                        InboxMessage.outbox_id.in_([row["outbox_id"] for row in rows])
                    )
                )
            }
        return {
            m.idempotency_key: by_outbox[int(str(m.outbox_id))]
            for m in messages
            if int(str(m.outbox_id)) in by_outbox
        }

    async def aclose(self) -> None:
        """Close the store, if it was opened."""
        store = self._store
        self._store = None
        if store is not None:
            await trio.to_thread.run_sync(store.close)


def _row(message: OutboundMessage, now: datetime) -> dict[str, Any]:
    """The inbox row of one message (rendered as an email is: title, text, HTML)."""
    content = message.content
    if not isinstance(content, EmailContent):  # OutboundMessage checks it for the inbox
        raise TypeError(f"an inbox message holds EmailContent, not {type(content).__name__}")
    return {
        "tenant_id": message.tenant, "contact_id": message.contact_id,
        "outbox_id": int(str(message.outbox_id)), "campaign": message.campaign_id,
        "template": message.template,
        # An in-app message without a title has none (the email renderer gives "").
        "subject": content.subject or None, "text": content.text.strip(), "html": content.html,
        "created_at": now, "read_at": None,
    }  # fmt: skip
