"""Put the text stored before the engine composed it in NFC, as the engine now stores it.

Revision ID: 0015_text_in_nfc
Revises: 0014_send_log_outcome_index
Create Date: 2026-11-29

Since `cadence.text`, contact names, attributes and tags, event names and properties are
put in Unicode NFC where they come in, and the DSL's literals are too. Rows stored before
kept their form: a "Zürich" exported by macOS tools last month (NFD: `u` and a combining
diaeresis) no longer matched `city = "Zürich"`, a `where` on its events or `tags contains`.
This composes those rows as an import would today: contacts' `first_name`, `last_name`,
`attributes` and `tags`, events' `name` and `properties`, and the triggering event that
running and paused enrollments keep in their state (`event.city` in a later step).

Kept as given, as the engine keeps them: every id (the contact's, an event's contact, keys),
`email` and `phone`. A name that would grow past its column in NFC (a few scripts compose
to more code points) is left as it was; tags that become the same tag are kept once.

Safe beside running engines: a row is written only if it still holds the text read
(compared as text in the UPDATE), so a contact or an enrollment another engine changed
meanwhile keeps that engine's write rather than this migration's stale copy; such a row
keeps its form until it is imported again. Read in pages of 5,000 rows by key; a page's
rows whose JSON is ASCII with no `\\u` escape cannot change and are not decoded.

The rule is frozen here as it stood at 0015 (NFC, the fields above, the name length):
a migration must do the same on every store whatever the engine says later. Going down
to 0014 leaves the text composed, which 0014 reads as it reads any text.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = "0015_text_in_nfc"
down_revision: str | None = "0014_send_log_outcome_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 5000  # rows read per statement
NAME_LENGTH = 200  # the names' columns (contacts' first and last name, events' name)
UNFINISHED = ("active", "paused")  # enrollments that still read their state


def _composed(value: Any) -> Any:
    """`value` with every string in it, keys too, in NFC (cadence.text at 0015)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {_composed(key): _composed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_composed(item) for item in value]
    return value


def _name(text: str) -> str:
    """A name in NFC, unless that would not fit its column."""
    composed = unicodedata.normalize("NFC", text)
    return composed if len(composed) <= NAME_LENGTH else text


def _tags(tags: Any) -> Any:
    """Tags in NFC, each kept once where two became one (other repeats stay as stored)."""
    if not isinstance(tags, list):
        return _composed(tags)
    kept: list[Any] = []
    origin: dict[Any, Any] = {}
    for tag in tags:
        composed = _composed(tag)
        if isinstance(composed, str) and composed in origin and origin[composed] != tag:
            continue
        origin.setdefault(composed, tag)
        kept.append(composed)
    return kept


def _state(state: Any) -> Any:
    """An enrollment's state with the event that triggered it in NFC; the rest is the
    engine's own (ids, instants, node names) and left alone."""
    if not isinstance(state, dict) or not isinstance(state.get("event"), dict):
        return state
    return {**state, "event": _composed(state["event"])}


class Column(NamedTuple):
    """A column this migration composes, and how: text, or a JSON document."""

    name: str
    compose: Callable[[Any], Any]
    is_json: bool


class Table(NamedTuple):
    """A table's rows to compose: its key columns, which rows, and the columns."""

    name: str
    keys: tuple[str, ...]
    where: str
    columns: tuple[Column, ...]


TABLES = (
    Table("contacts", ("tenant_id", "id"), "1 = 1", (
        Column("first_name", _name, False), Column("last_name", _name, False),
        Column("attributes", _composed, True), Column("tags", _tags, True),
    )),
    Table("events", ("id",), "1 = 1", (
        Column("name", _name, False), Column("properties", _composed, True),
    )),
    Table("enrollments", ("id",), "status IN ('active', 'paused')", (
        Column("state", _state, True),
    )),
)  # fmt: skip


def upgrade() -> None:
    """Compose the stored text of contacts, events and unfinished enrollments in NFC."""
    bind = op.get_bind()
    for table in TABLES:
        _compose_table(bind, table)


def downgrade() -> None:
    """Nothing to undo: 0014's engine reads text in NFC as it reads any other."""


def _compose_table(bind: sa.Connection, table: Table) -> None:
    """Read `table` page by page and write back each changed column of each row."""
    for page in _pages(bind, table):
        _compose_table_page(bind, table, page)


def _compose_table_page(bind: sa.Connection, table: Table, page: Sequence[sa.Row[Any]]) -> None:
    """Write the composed text of each column of a page's rows that changes, to each row
    that still holds what was read."""
    for index, column in enumerate(table.columns):
        changed = []
        for row in page:
            seen = row[len(table.keys) + index]
            written = _changed(seen, column)
            if written is not None:
                changed.append({
                    **{f"k{n}": row[n] for n in range(len(table.keys))},
                    "seen": seen, "written": written,
                })  # fmt: skip
        if changed:
            bind.execute(_update(bind, table, column), changed)


def _changed(seen: str | None, column: Column) -> str | None:
    """The column's new stored text, or None when the stored one is already composed."""
    if seen is None or (seen.isascii() and not (column.is_json and "\\u" in seen)):
        return None
    if not column.is_json:
        written = column.compose(seen)
        return written if written != seen else None
    stored = json.loads(seen)
    composed = column.compose(stored)
    if composed == stored:
        return None
    return json.dumps(composed, ensure_ascii=False, separators=(",", ":"))


def _pages(bind: sa.Connection, table: Table) -> Iterator[Sequence[sa.Row[Any]]]:
    """The table's rows in key order, PAGE at a time: keys, then each column as text."""
    keys = ", ".join(table.keys)
    texts = ", ".join(f"CAST({column.name} AS TEXT)" for column in table.columns)
    past = (
        f"({keys}) > ({', '.join(f':k{n}' for n in range(len(table.keys)))})"
        if len(table.keys) > 1
        else f"{keys} > :k0"
    )
    first = sa.text(
        f"SELECT {keys}, {texts} FROM {table.name} WHERE {table.where} ORDER BY {keys} LIMIT :page"
    )
    following = sa.text(
        f"SELECT {keys}, {texts} FROM {table.name} WHERE {table.where} AND {past}"
        f" ORDER BY {keys} LIMIT :page"
    )
    rows = bind.execute(first, {"page": PAGE}).all()
    while rows:
        yield rows
        if len(rows) < PAGE:
            return
        last = rows[-1]
        rows = bind.execute(
            following, {"page": PAGE, **{f"k{n}": last[n] for n in range(len(table.keys))}}
        ).all()


def _update(bind: sa.Connection, table: Table, column: Column) -> sa.TextClause:
    """Write a column's composed text to a row that still holds the text read."""
    value = ":written"
    if column.is_json and bind.dialect.name == "postgresql":
        value = "CAST(:written AS JSONB)"
    which = " AND ".join(f"{key} = :k{n}" for n, key in enumerate(table.keys))
    return sa.text(
        f"UPDATE {table.name} SET {column.name} = {value}"
        f" WHERE {which} AND CAST({column.name} AS TEXT) = :seen"
    )
