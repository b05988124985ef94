"""Hold the email addresses of suppressions lowercased, as the engine now looks them up.

Revision ID: 0013_email_suppression_case
Revises: 0012_opt_out_reply_unsubscribes
Create Date: 2026-11-29

A bounce suppresses the contact's address as it was stored (`Ana@example.com`), and the
send gates matched it exactly: an import writing `ana@example.com` for the same person, or
another contact holding the mailbox in another case, was sent to the bounced mailbox. The
engine now writes and reads an email suppression's address lowercased
(`sends.suppressed_address`); this brings the rows stored before to that form, so they
keep suppressing. Where two rows of a tenant become one address, one is kept: one without
an expiry if there is one, else the one expiring last (the earliest row of those).

The rule is frozen here as it stood at 0013 (Python's `str.lower`, the channel `email`): a
migration must do the same on every store whatever the engine says later. Going down to
0012 leaves the addresses lowercased.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_email_suppression_case"
down_revision: str | None = "0012_opt_out_reply_unsubscribes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMAIL = "email"  # the channel whose suppressions hold email addresses
PAGE = 5000  # rows read per statement
CHUNK = 500  # keys per IN list

SUPPRESSIONS = sa.table(
    "suppressions",
    sa.column("id", sa.BigInteger),
    sa.column("tenant_id", sa.String),
    sa.column("channel", sa.String),
    sa.column("address", sa.String),
    sa.column("expires_at", sa.DateTime(timezone=True)),
)


def _lasts_longer(expires: dt.datetime | None, than: dt.datetime | None) -> bool:
    """Whether a suppression expiring at `expires` outlasts one expiring at `than`."""
    if than is None:
        return False
    return expires is None or expires > than


def upgrade() -> None:
    """Lowercase every email suppression's address, merging rows that become one."""
    connection = op.get_bind()
    s = SUPPRESSIONS
    last_id = 0
    while True:
        page = connection.execute(
            sa.select(s.c.id, s.c.tenant_id, s.c.address, s.c.expires_at)
            .where(s.c.channel == EMAIL, s.c.address.is_not(None), s.c.id > last_id)
            .order_by(s.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            return
        last_id = page[-1].id
        mixed = [row for row in page if row.address != row.address.lower()]
        # The rows already holding each lowercased address (of this or an earlier page, or
        # one this run lowered): a mixed-case row merges into it instead.
        held: dict[tuple[str, str], tuple[int, dt.datetime | None]] = {}
        wanted = sorted({(row.tenant_id, row.address.lower()) for row in mixed})
        for start in range(0, len(wanted), CHUNK):
            keys = wanted[start : start + CHUNK]
            for row in connection.execute(
                sa.select(s.c.id, s.c.tenant_id, s.c.address, s.c.expires_at).where(
                    s.c.channel == EMAIL,
                    s.c.address.in_(sorted({address for _, address in keys})),
                )
            ):
                held[(row.tenant_id, row.address)] = (row.id, row.expires_at)
        for row in mixed:
            key = (row.tenant_id, row.address.lower())
            if key not in held:
                connection.execute(sa.update(s).where(s.c.id == row.id).values(address=key[1]))
                held[key] = (row.id, row.expires_at)
                continue
            kept_id, kept_expiry = held[key]
            if _lasts_longer(row.expires_at, kept_expiry):
                connection.execute(
                    sa.update(s).where(s.c.id == kept_id).values(expires_at=row.expires_at)
                )
                held[key] = (kept_id, row.expires_at)
            connection.execute(sa.delete(s).where(s.c.id == row.id))


def downgrade() -> None:
    """Nothing to undo: 0012's engine reads a lowercased address as it reads any other."""
