"""Bulk UPDATE of many rows by id in one statement, whatever the backend.

On PostgreSQL an executemany of N updates still runs N statements on the server; instead the
rows travel as one JSON parameter, unpacked by `jsonb_to_recordset` and joined on id, so a
batch of a thousand is one statement whose SQL text (and plan) is the same every time.
SQLite executes statements in-process, so executemany is already cheap there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam, text, update
from sqlalchemy.orm import Session

ROWS_PER_STATEMENT = 5000


def update_rows_by_id(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write each row's values to the row with its `id`; every row must have the same keys."""
    if not rows:
        return
    keys = list(rows[0])
    if "id" not in keys:
        raise ValueError("each row to update needs its id")
    if any(set(row) != set(keys) for row in rows):
        raise ValueError("rows updated together must set the same columns")
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = update(table).where(table.c.id == _bind("id"))
        session.execute(
            statement.values({name: _bind(name) for name in keys if name != "id"}),
            [{f"b_{name}": row[name] for name in keys} for row in rows],
        )
        return
    record = ", ".join(f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in keys)
    assignments = ", ".join(f"{name} = changes.{name}" for name in keys if name != "id")
    joined = text(
        f"UPDATE {table.name} SET {assignments} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS changes({record}) "
        f"WHERE {table.name}.id = changes.id"
    )
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        session.execute(joined, {"rows": json.dumps(list(chunk), default=_json_default)})


def _bind(name: str) -> BindParameter[Any]:
    """A bind parameter for a column, named apart from the column itself."""
    return bindparam(f"b_{name}")


def _json_default(value: Any) -> Any:
    """JSON for the values JSON lacks: aware datetimes as ISO-8601, dates, decimals."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; the store needs aware UTC")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a bulk update")
