"""Batch statements that stay fast on PostgreSQL whatever its statistics say.

- Bulk INSERT/UPSERT and UPDATE by id: an executemany of N rows still runs N statements on
  the server; instead the rows travel as one JSON parameter, unpacked by
  `jsonb_to_recordset`, so a batch is one statement whose SQL text (and plan) never changes.
- Lookups of a batch of keys: `col IN (500 values)` on a table filled earlier in the same
  transaction (an import) has no statistics yet, and the planner may scan every row of the
  tenant per batch; joining `unnest(:keys)` instead makes it probe the index once per key.

SQLite runs statements in-process, so it gets a driver-level executemany (values through
the column types' bind processors, without the ORM's per-row overhead) and plain IN lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    String,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import TextClause

from cadence.engine.store.types import RawJSON, UTCDateTime

ROWS_PER_STATEMENT = 5000
# Rows setting identical values are written by one statement from this many on.
SHARED_UPDATE_MIN_ROWS = 8


def _same_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns every row sets (they must all set the same ones)."""
    keys = list(rows[0])
    first = rows[0].keys()
    # Key views compare as sets, in C: no set built per row.
    if any(row.keys() != first for row in rows):
        raise ValueError("rows written together must set the same columns")
    return keys


def _sqlite_params(
    session: Session, table: Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Rows as driver parameters, each value through its column type's bind processor once."""
    # One C-level itemgetter call picks a row's values.
    pick = itemgetter(*keys)
    values = [tuple(pick(row)) if len(keys) > 1 else (pick(row),) for row in rows]
    return _sqlite_values(session, table, keys, values)


def _sqlite_values(
    session: Session, table: Table, keys: Sequence[str], values: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Rows of values (in `keys` order) as driver parameters: only the columns that have a
    processor (timestamps, JSON) are converted.

    Column by column: the rows are transposed and back in C, and a column's values go
    through its converter in one `map` (`_converter`), instead of a list and a tuple built
    per row and a loop over its converted columns.
    """
    dialect = session.get_bind().dialect
    converted = [
        (index, process)
        for index, process in enumerate(_converter(table.c[name], dialect) for name in keys)
        if process is not None
    ]
    if not converted or not values:
        return list(values)
    columns: list[Sequence[Any]] = list(zip(*values, strict=True))
    for index, process in converted:
        columns[index] = process(columns[index])
    return list(zip(*columns, strict=True))


def _converter(column: Any, dialect: Any) -> Callable[[Sequence[Any]], list[Any]] | None:
    """The column's bind processor over a column of values, specialised for what a batch
    repeats.

    Timestamps are mostly the batch's `now`, and many documents are empty `{}`/`[]`:
    each distinct one is formatted once. A `RawJSON` document goes in as it is.
    """
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    if isinstance(column.type, UTCDateTime | DateTime):

        def timestamps(values: Sequence[Any]) -> list[Any]:
            # Equal instants format alike: each distinct one once, then a lookup per value.
            formatted = {value: process(value) for value in set(values)}
            return list(map(formatted.__getitem__, values))

        return timestamps
    if isinstance(column.type, JSON):
        seen: dict[Any, Any] = {}
        # A document many rows share (one object, such as a cohort's send payload) is
        # encoded once: kept by identity, with the object, so its id cannot be reused.
        shared: dict[int, tuple[Any, Any]] = {}

        def document(value: Any) -> Any:
            kind = value.__class__
            if kind is RawJSON:
                return str(value)
            if (kind is dict or kind is list) and not value:
                if kind not in seen:
                    seen[kind] = process(value)
                return seen[kind]
            known = shared.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
            encoded = process(value)
            shared[id(value)] = (value, encoded)
            return encoded

        return lambda values: list(map(document, values))
    return lambda values: list(map(process, values))


def _record(session: Session, table: Table, keys: Sequence[str]) -> str:
    """`name type, ...` for jsonb_to_recordset, from the columns' PostgreSQL types."""
    dialect = session.get_bind().dialect
    return ", ".join(f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in keys)


def _pg_chunks(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The rows as JSON parameters of at most ROWS_PER_STATEMENT rows each."""
    if any(isinstance(value, RawJSON) for row in rows for value in row.values()):
        # Nested in the rows' own JSON a document must be a value, not its text.
        rows = [
            {k: json.loads(v) if isinstance(v, RawJSON) else v for k, v in row.items()}
            for row in rows
        ]
    return [
        {"rows": json.dumps(list(rows[start : start + ROWS_PER_STATEMENT]), default=_json_default)}
        for start in range(0, len(rows), ROWS_PER_STATEMENT)
    ]


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str] = (),
    update_columns: Sequence[str] = (),
) -> None:
    """INSERT many rows in few statements; on a `conflict` key, update `update_columns` or skip.

    Values are Python values (aware datetimes, dicts for JSON), as for the ORM.
    """
    if not rows:
        return
    keys = _same_keys(rows)
    names = ", ".join(keys)
    on_conflict = ""
    if conflict:
        target = ", ".join(conflict)
        if update_columns:
            assignments = ", ".join(f"{name} = excluded.{name}" for name in update_columns)
            on_conflict = f" ON CONFLICT ({target}) DO UPDATE SET {assignments}"
        else:
            on_conflict = f" ON CONFLICT ({target}) DO NOTHING"
    if session.get_bind().dialect.name != "postgresql":
        marks = ", ".join("?" for _ in keys)
        session.connection().exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks}){on_conflict}",
            _sqlite_params(session, table, keys, rows),
        )
        return
    statement = _pg_insert(session, table, keys, on_conflict)
    for params in _pg_chunks(rows):
        session.execute(statement, params)


def _pg_insert(session: Session, table: Table, keys: Sequence[str], tail: str) -> TextClause:
    """PostgreSQL's bulk INSERT: the rows come as one JSON parameter (see `_pg_chunks`)."""
    names = ", ".join(keys)
    return text(
        f"INSERT INTO {table.name} ({names}) SELECT {names} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS given({_record(session, table, keys)})"
        f"{tail}"
    )


def insert_values_returning(
    session: Session,
    table: Table,
    keys: Sequence[str],
    values: Sequence[tuple[Any, ...]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """INSERT rows given as tuples of the `keys` columns' values, skipping those that hit the
    `conflict` key; return `returning` of each row actually inserted (in no particular
    order), so new ids need no second query.

    Tuples, not dicts: this is the engine's hottest insert (a step batch's sends).
    """
    if not values:
        return []
    names = ", ".join(keys)
    tail = f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {', '.join(returning)}"
    found: list[tuple[Any, ...]] = []
    if session.get_bind().dialect.name != "postgresql":
        # The sqlite3 driver's executemany refuses RETURNING, so a chunk is one multi-row
        # VALUES statement, under SQLite's limit of 32,766 parameters.
        marks = "(" + ", ".join("?" for _ in keys) + ")"
        per_statement = max(1, 32_000 // len(keys))
        params = _sqlite_values(session, table, keys, values)
        connection = session.connection()
        for start in range(0, len(params), per_statement):
            chunk = params[start : start + per_statement]
            statement_values = ", ".join(marks for _ in chunk)
            result = connection.exec_driver_sql(
                f"INSERT INTO {table.name} ({names}) VALUES {statement_values}{tail}",
                tuple(chain.from_iterable(chunk)),
            )
            found.extend(tuple(row) for row in result.all())
        return found
    statement = _pg_insert(session, table, keys, tail)
    rows = [dict(zip(keys, row, strict=True)) for row in values]
    for params_json in _pg_chunks(rows):
        found.extend(tuple(row) for row in session.execute(statement, params_json).all())
    return found


def update_rows_by_id(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write each row's values to the row with its `id`; every row must have the same keys."""
    if not rows:
        return
    keys = _same_keys(rows)
    if "id" not in keys:
        raise ValueError("each row to update needs its id")
    others = [name for name in keys if name != "id"]
    rows = _update_shared(session, table, others, rows)
    if rows:
        _update_each(session, table, others, rows)


def _update_each(
    session: Session, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Write the columns `names` of each row (each with its `id`), one bulk statement."""
    if session.get_bind().dialect.name != "postgresql":
        assignments = ", ".join(f"{name} = ?" for name in names)
        session.connection().exec_driver_sql(
            f"UPDATE {table.name} SET {assignments} WHERE id = ?",
            _sqlite_params(session, table, [*names, "id"], rows),
        )
        return
    assignments = ", ".join(f"{name} = changes.{name}" for name in names)
    record = _record(session, table, ["id", *names])
    statement = text(
        f"UPDATE {table.name} SET {assignments} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS changes({record}) "
        f"WHERE {table.name}.id = changes.id"
    )
    for params in _pg_chunks(rows):
        session.execute(statement, params)


def _update_shared(
    session: Session, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> Sequence[Mapping[str, Any]]:
    """Write rows that set the same values through `update_groups`; return the others.

    Values must be hashable to be shared (encode documents as `RawJSON`); rows with a dict
    or list value are returned, to be written one by one.
    """
    if not names:
        return rows
    groups: dict[tuple[Any, ...], list[int]] = {}
    unique: list[Mapping[str, Any]] = []
    pick = itemgetter(*names)
    for row in rows:
        values = pick(row) if len(names) > 1 else (pick(row),)
        try:
            groups.setdefault(values, []).append(row["id"])
        except TypeError:  # a dict or list value: written per row
            unique.append(row)
    update_groups(session, table, names, groups)
    return unique


def update_groups(
    session: Session,
    table: Table,
    names: Sequence[str],
    groups: Mapping[tuple[Any, ...], Sequence[int]],
) -> None:
    """Give the rows of each group (ids) that group's values of the columns `names`.

    A batch of sends recorded as sent, or a cohort of enrollments moving from one node to
    the same next one, gives every row the same values: one `UPDATE ... WHERE id IN (...)`
    with the ids as one parameter replaces a row-by-row executemany. Groups smaller than
    SHARED_UPDATE_MIN_ROWS are written together by id, where one statement per group
    would cost more than it saves.
    """
    sqlite = session.get_bind().dialect.name != "postgresql"
    single: list[dict[str, Any]] = []
    for values, ids in groups.items():
        shared = dict(zip(names, values, strict=True))
        if len(ids) < SHARED_UPDATE_MIN_ROWS:
            single.extend({**shared, "id": row_id} for row_id in ids)
            continue
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            chunk = list(ids[start : start + ROWS_PER_STATEMENT])
            if sqlite:
                assignments = ", ".join(f"{name} = ?" for name in names)
                session.connection().exec_driver_sql(
                    f"UPDATE {table.name} SET {assignments} "
                    f"WHERE id IN (SELECT value FROM json_each(?))",
                    (*_sqlite_params(session, table, names, [shared])[0], json.dumps(chunk)),
                )
            else:
                decoded = {
                    k: json.loads(v) if isinstance(v, RawJSON) else v for k, v in shared.items()
                }
                session.execute(
                    update(table).where(among(session, table.c.id, chunk)).values(decoded)
                )
    if single:
        _update_each(session, table, names, single)


def among(
    session: Session,
    column: ColumnElement[Any] | InstrumentedAttribute[Any],
    keys: Sequence[str] | Sequence[int],
) -> ColumnElement[bool]:
    """`column IN keys` with the keys as one parameter, so a batch's statement compiles once.

    PostgreSQL joins `unnest(:keys)` (see above); SQLite reads `json_each(:keys)`. A plain
    IN list has one bound parameter per key, which SQLAlchemy renders anew for every
    batch: that rendering cost more than SQLite's lookups.
    """
    if session.get_bind().dialect.name != "postgresql":
        document = bindparam(None, json.dumps(list(keys)), type_=String())
        values = func.json_each(document).table_valued("value")
        return column.in_(select(values.c.value).scalar_subquery())
    element = BigInteger() if keys and isinstance(keys[0], int) else String()
    array = bindparam(None, list(keys), type_=ARRAY(element))
    keys_table = func.unnest(array).table_valued("key").render_derived(with_types=False)
    return column == keys_table.c.key


def among_bound(
    dialect: str, column: ColumnElement[Any] | InstrumentedAttribute[Any], name: str
) -> ColumnElement[bool]:
    """`among` with the string keys bound by `name`, for a statement built once and run often.

    Bind `among_keys(dialect, keys)` to `name` at each execution.
    """
    if dialect != "postgresql":
        values = func.json_each(bindparam(name, type_=String())).table_valued("value")
        return column.in_(select(values.c.value).scalar_subquery())
    array = bindparam(name, type_=ARRAY(String()))
    keys_table = func.unnest(array).table_valued("key").render_derived(with_types=False)
    return column == keys_table.c.key


def among_keys(dialect: str, keys: Sequence[str]) -> Any:
    """The value `among_bound`'s parameter takes for `keys` on `dialect`."""
    return list(keys) if dialect == "postgresql" else json.dumps(list(keys))


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
