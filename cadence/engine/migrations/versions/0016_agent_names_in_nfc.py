"""Put agent names stored before the engine composed them in NFC, as it now stores them.

Revision ID: 0016_agent_names_in_nfc
Revises: 0015_text_in_nfc
Create Date: 2026-11-29

`Engine.add_agent` (`cadence agents add`, a dry-run's `--agents`) now composes an agent's
name, as every other text input is composed (migration 0015). Names added before kept the
form they were typed in: an NFD "José" (`e` and a combining acute) was handed to contacts
as their `agent`, and `contact.agent = "José"` in a campaign, composed by the parser, never
matched it. This composes the `agents` rows' names, and the `agent` attribute of the
contacts an NFD name was handed to (0015 composed the contacts assigned before it ran;
those assigned between 0015 and this one hold the NFD name).

An agent whose composed name another agent of the tenant already has (the same person
added twice, in both forms) keeps its stored name: the two are merged by no migration,
since each may hold contacts and a place in the rotation; `cadence agents remove` takes
the extra one out. Agents are few: the table is read in one statement.

The rule is frozen here as it stood at 0016 (NFC): a migration must do the same on every
store whatever the engine says later. Going down to 0015 leaves the names composed, which
0015 reads as it reads any name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_agent_names_in_nfc"
down_revision: str | None = "0015_text_in_nfc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_LENGTH = 200  # the agents' name column


def upgrade() -> None:
    """Compose each agent's name, and the `agent` its contacts were given, in NFC."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, tenant_id, name FROM agents ORDER BY id")).all()
    taken = {(tenant, name) for _, tenant, name in rows}
    for agent_id, tenant, name in rows:
        composed = unicodedata.normalize("NFC", name)
        if composed == name or len(composed) > NAME_LENGTH or (tenant, composed) in taken:
            continue
        taken.add((tenant, composed))
        bind.execute(
            sa.text("UPDATE agents SET name = :composed WHERE id = :id AND name = :name"),
            {"composed": composed, "id": agent_id, "name": name},
        )
        bind.execute(_contacts_update(bind), {"tenant": tenant, "name": name, "composed": composed})


def downgrade() -> None:
    """Nothing to undo: 0015's engine reads a name in NFC as it reads any other."""


def _contacts_update(bind: sa.Connection) -> sa.TextClause:
    """Give the contacts whose `agent` is the stored name the composed one."""
    if bind.dialect.name == "postgresql":
        return sa.text(
            "UPDATE contacts SET attributes = jsonb_set(attributes, '{agent}',"
            " to_jsonb(CAST(:composed AS TEXT)))"
            " WHERE tenant_id = :tenant AND attributes ->> 'agent' = :name"
        )
    return sa.text(
        "UPDATE contacts SET attributes = json_set(attributes, '$.agent', :composed)"
        " WHERE tenant_id = :tenant AND json_extract(attributes, '$.agent') = :name"
    )
