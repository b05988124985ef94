"""Bringing contacts and events in from files or Python rows, all-or-nothing by default.

Contacts: CSV with a header row (`id,email,phone,first_name,last_name,timezone,locale,tags,...`
plus one column per attribute) or JSON Lines (one object per line, the same keys, optionally
an `attributes` object). Upserted by id: columns present overwrite, columns absent keep what
is stored, attributes are merged, an empty cell clears. Lists in CSV are `a;b;c` or a JSON
list `["a","b"]`.

Events: JSON Lines `{"contact": "c1", "name": "property_viewed", "at": "2026-12-01T09:00:00Z",
"properties": {...}}`, with optional `id` (a dedupe key: pushing the same id twice stores it
once) and `source`. The contact must exist; `contact` may be left out for events about a
thing (fan-out triggers).

Every problem is reported with its line, column and reason. Unless `skip_invalid` is set, one
bad row means nothing is written; with it, the good rows are written and the rest reported.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from cadence.engine.store.bulk import among, insert_rows
from cadence.engine.store.database import (
    NotJsonNumber,
    Store,
    check_tenant_id,
    dialect_insert,
    loads_json,
    utcnow,
)
from cadence.engine.store.models import (
    Campaign,
    CampaignVersion,
    Contact,
    Event,
    OutboxMessage,
    Tenant,
)
from cadence.engine.store.records import (
    ColumnNames,
    ContactRecord,
    CsvColumnTypes,
    EventRecord,
    InvalidInput,
    Problem,
    required_left_out,
    required_reason,
    typed_cells,
    unknown_column_reason,
    validate_contact,
    validate_event,
)
from cadence.engine.store.schema import ContactSchema, SchemaError, load_schema, parse_schema
from cadence.engine.tenants import DEFAULT_TENANT

if TYPE_CHECKING:
    from _csv import Reader as _CsvReader

CHUNK = 500  # rows per IN (...) lookup and per executemany batch
# Rows an import reads, checks and writes at a time. It holds one such chunk of rows and
# records, whatever the file's size, plus what the checks across rows need (each id's line)
# and the problems to report.
IMPORT_CHUNK = 5_000
# How far ahead of ours a sender's clock may run. An event dated after now is not yet
# history (docs/semantics.md): a trigger's count and `wait for` leave it out, and nothing
# reads it again when its time comes. One dated less than this ahead is taken as now, as a
# provider's report is (docs/inbound.md); one further ahead is history loaded in advance.
CLOCK_SKEW = timedelta(minutes=5)

Row = tuple[int, dict[str, Any]]  # (line number, raw values)


@dataclass
class ImportReport:
    """What an import did: rows read, written (new and updated), skipped, and the problems."""

    kind: str
    source: str
    tenant_id: str
    rows: int = 0
    written: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    created_ids: list[str] = field(default_factory=list)  # contacts: new ids, in file order
    updated_ids: list[str] = field(default_factory=list)  # contacts: ids that existed
    # contacts: the timezone each updated contact had, for those whose timezone changed
    previous_zones: dict[str, str | None] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)  # events: those written

    @property
    def skipped(self) -> int:
        """Rows not written because they were bad."""
        return len({problem.row for problem in self.problems if problem.row is not None})

    def summary(self) -> str:
        """One line for a person: what was written and what was skipped."""
        parts = [f"{self.written} {self.kind} written to tenant {self.tenant_id!r}"]
        if self.kind == "contacts":
            parts.append(f"{self.created} new, {self.updated} updated")
        if self.duplicates:
            parts.append(f"{self.duplicates} already present")
        if self.problems:
            parts.append(f"{self.skipped} row(s) skipped")
        return "; ".join(parts)


# Called inside the import's transaction once a chunk of its rows is written, with a report
# of that chunk (its ids, or the events written).
OnWritten = Callable[[Session, "ImportReport"], None]
# Called inside the import's transaction before a chunk is written, with the ids it names
# (contacts, or the contacts of events): what they are before the write.
BeforeWritten = Callable[[Session, Sequence[str]], None]


# --- reading files -------------------------------------------------------------------------


def in_file_order(problems: Sequence[Problem]) -> list[Problem]:
    """Problems by line, so a report reads top to bottom; file-wide ones (no line) first.

    Reading, header and row checks find them in separate passes; the sort is stable, so
    several problems of one line keep the order they were found in.
    """
    return sorted(problems, key=lambda problem: -1 if problem.row is None else problem.row)


def _file_problem(source: str, reason: str, row: int | None = None) -> InvalidInput:
    """An input error about the file as a whole (or one line of it)."""
    return InvalidInput([Problem(source, row, None, reason)])


def _read_text_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 file (a BOM is ignored), or an InvalidInput naming the file."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield from handle
    except FileNotFoundError:
        raise _file_problem(str(path), "no such file") from None
    except IsADirectoryError:
        raise _file_problem(str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise _file_problem(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None


def _not_utf8(path: Path, error: UnicodeDecodeError) -> InvalidInput:
    """The line of the first byte that is not UTF-8 (a spreadsheet saved as Windows-1252 or
    Latin-1 writes `é` so), with the way to save the file right."""
    data = path.read_bytes()
    line: int | None
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        error = exc
        line = data[: exc.start].count(b"\n") + 1
    else:  # the file changed meanwhile: name the file only
        line = None
    byte = error.object[error.start : error.start + 1].hex()
    return _file_problem(
        str(path),
        f'not UTF-8 text (byte 0x{byte}); save it as UTF-8 (Excel: "CSV UTF-8")',
        line,
    )


# Separators other than the comma that spreadsheets write.
CSV_SEPARATORS_ELSEWHERE = (";", "\t", "|")


def csv_rows(path: Path, problems: list[Problem]) -> tuple[list[str], Iterator[Row]]:
    """The header of a CSV file, and its rows as they are read; malformed rows (and, once
    the rows are read, values under unnamed columns) are added to `problems`.

    Comma-separated, or separated by `;`, tabs or `|` when the header, read with commas, is
    one column holding that separator: Excel in a European locale writes `;` whatever
    its CSV is called, so a file that says so in its header is read so.
    """
    source = str(path)
    header, reader = _csv_header(path, ",")
    if len(header) == 1:
        separator = next((s for s in CSV_SEPARATORS_ELSEWHERE if s in header[0]), None)
        if separator is not None:
            header, reader = _csv_header(path, separator)
    columns = [name.strip() for name in header]
    seen: set[str] = set()
    for name in columns:
        if name in seen and name:
            problems.append(Problem(source, 1, name, "appears twice in the header"))
        seen.add(name)
    if "id" not in seen:
        problems.append(Problem(source, 1, "id", "the header needs an id column"))
    return columns, _csv_body(source, columns, reader, problems)


def _csv_body(
    source: str, columns: list[str], reader: _CsvReader, problems: list[Problem]
) -> Iterator[Row]:
    """The rows after a CSV header, one at a time (see `csv_rows`)."""
    # A spreadsheet exports columns it once formatted as trailing `,,` without a name: empty
    # throughout, they carry nothing; a value under one would be lost, so that is refused.
    unnamed = [index for index, name in enumerate(columns) if not name]
    filled: dict[int, int] = {}  # unnamed column -> first line with a value in it
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(source, line, None, f"malformed CSV: {exc}"))
            break
        if not "".join(cells).strip():
            continue  # blank line (one test in C, where a generator per row cost 0.5 us)
        if len(cells) != len(columns):
            problems.append(
                Problem(source, line, None, f"{len(cells)} cells, the header has {len(columns)}")
            )
            continue
        for index in unnamed:
            if cells[index].strip():
                filled.setdefault(index, line)
        yield line, {name: cell for name, cell in zip(columns, cells, strict=True) if name}
    for index, line in sorted(filled.items()):
        problems.append(
            Problem(
                source,
                1,
                None,
                f"column {index + 1} has no name in the header, but line {line} has a value in it",
            )
        )


def _csv_header(path: Path, separator: str) -> tuple[list[str], _CsvReader]:
    """The header of a CSV file read with `separator`, and the reader positioned after it."""
    reader = csv.reader(_read_text_lines(path), delimiter=separator, strict=True)
    try:
        return next(reader), reader
    except StopIteration:
        raise _file_problem(str(path), "the file is empty: a header row is expected") from None
    except csv.Error as exc:
        raise _file_problem(str(path), f"malformed CSV header: {exc}", 1) from None


def jsonl_rows(path: Path, problems: list[Problem]) -> Iterator[Row]:
    """Objects of a JSON Lines file as they are read; lines that are not JSON objects go to
    `problems`."""
    for number, line in enumerate(_read_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            value = loads_json(line)
        except NotJsonNumber as exc:
            problems.append(Problem(str(path), number, None, f"invalid JSON: {exc}"))
            continue
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(path), number, None, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(str(path), number, None, "expected a JSON object"))
            continue
        yield number, value


RowReader = Callable[[], Iterator[Row]]  # reads the rows again from the start at each call


def _reader(file: Path, kind: str, problems: list[Problem]) -> tuple[list[str], RowReader]:
    """A file's CSV columns (none for JSON Lines) and a reader of its rows. The first read
    adds what is wrong with the file to `problems`; later ones, the same, are not told."""
    if kind == "csv":
        columns, first = csv_rows(file, problems)
    else:
        columns, first = [], jsonl_rows(file, problems)
    pending = [first]

    def rows() -> Iterator[Row]:
        if pending:
            return pending.pop()
        if kind == "csv":
            return csv_rows(file, [])[1]
        return jsonl_rows(file, [])

    return columns, rows


def _listed_reader(rows: Iterable[Row]) -> RowReader:
    """A reader of rows held in memory (Python objects given to the API)."""
    held = list(rows)
    return lambda: iter(held)


def _chunked(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """Rows in lists of IMPORT_CHUNK: an import holds one of them at a time."""
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, IMPORT_CHUNK)):
        yield chunk


def _format_of(path: Path) -> str:
    """`csv` or `jsonl`, from the file's extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise _file_problem(str(path), "unknown file type: use .csv or .jsonl")


# --- contacts ------------------------------------------------------------------------------


def _ensure_tenant(session: Session, tenant_id: str, now: datetime) -> None:
    """Create the tenant inside the import's own transaction, so a failed import leaves none."""
    check_tenant_id(tenant_id)
    statement = dialect_insert(session.get_bind().dialect.name, Tenant).values(
        id=tenant_id, name=tenant_id, created_at=now, updated_at=now
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["id"]))


def _resolve_schema(
    session: Session, tenant_id: str, schema: ContactSchema | str | Path | None
) -> ContactSchema | None:
    """The schema to check against: the one given, else the tenant's stored one, else none."""
    if isinstance(schema, ContactSchema):
        return schema
    if schema is not None:
        return load_schema(schema)
    stored = session.scalar(select(Tenant.contact_schema).where(Tenant.id == tenant_id))
    if stored is None:
        return None
    try:
        return parse_schema(stored, source=f"tenant {tenant_id!r} stored schema")
    except SchemaError:
        return None


StoredAttributes = Callable[[Sequence[str]], Mapping[str, Mapping[str, Any]]]


def validate_contact_rows(
    rows: Iterable[Row],
    schema: ContactSchema | None,
    source: str,
    held_by: StoredAttributes | None = None,
    first_line: dict[str, int] | None = None,
) -> tuple[list[ContactRecord], list[Problem]]:
    """Validate rows, reporting each problem and ids that appear twice.

    A row that leaves out a required attribute updates a contact that must already hold it:
    `held_by(ids)` says what those contacts hold (without it, none is stored).
    `first_line` maps the ids of rows validated before (earlier chunks of the same file) to
    their lines, and takes those of these rows.
    """
    records: list[ContactRecord] = []
    problems: list[Problem] = []
    if first_line is None:
        first_line = {}
    columns = ColumnNames()
    for line, raw in rows:
        record, errors = validate_contact(raw, schema, columns)
        problems.extend(Problem(source, line, column, reason) for column, reason in errors)
        if record is None:
            continue
        if record.id in first_line:
            problems.append(
                Problem(
                    source,
                    line,
                    "id",
                    f"duplicate id {record.id!r} (also on line {first_line[record.id]})",
                )
            )
            continue
        first_line[record.id] = line
        records.append(record)
    if schema is None:
        return records, problems
    left_out = {
        record.id: names for record in records if (names := required_left_out(record, schema))
    }
    if not left_out:
        return records, problems
    held = held_by(list(left_out)) if held_by is not None else {}
    refused: set[str] = set()
    for contact_id, names in left_out.items():
        stored = held.get(contact_id, {})
        for name in names:
            if stored.get(name) is None:
                problems.append(
                    Problem(source, first_line[contact_id], name, required_reason(schema, name))
                )
                refused.add(contact_id)
    return [record for record in records if record.id not in refused], problems


def upsert_contacts(
    session: Session, tenant_id: str, records: Sequence[ContactRecord], *, now: datetime
) -> tuple[int, int]:
    """Insert or update contacts by id in bulk; returns how many were (created, updated)."""
    written = upsert_contact_records(session, tenant_id, records, now=now)
    return len(written.created), len(written.updated)


class ContactsWritten(NamedTuple):
    """Which contacts an upsert created and updated, and the zones of those it moved."""

    created: list[str]
    updated: list[str]
    # The timezone an updated contact had before, for each whose timezone changed: what was
    # booked from their local clock is read again in the new zone.
    previous_zones: dict[str, str | None]


def upsert_contact_records(
    session: Session, tenant_id: str, records: Sequence[ContactRecord], *, now: datetime
) -> ContactsWritten:
    """Insert or update contacts by id in bulk; says which were created, updated and moved.

    Existing rows are read once per chunk so fields a record leaves out keep their stored
    value and attributes merge (None removes one); then one executemany upsert per chunk.
    """
    merged: dict[str, ContactRecord] = {}
    for record in records:  # one row per id: a later record for the same id wins field by field
        if record.id in merged:
            earlier = merged[record.id]
            record = ContactRecord(
                record.id,
                {**earlier.fields, **record.fields},
                {**earlier.attributes, **record.attributes},
            )
        merged[record.id] = record
    records = list(merged.values())
    created: list[str] = []
    updated: list[str] = []
    previous_zones: dict[str, str | None] = {}
    table: Table = Contact.__table__  # type: ignore[assignment]
    columns = ("email", "phone", "first_name", "last_name", "timezone", "locale", "tags")
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        existing = {
            row.id: row
            for row in session.scalars(
                select(Contact)
                .where(
                    Contact.tenant_id == tenant_id,
                    among(session, Contact.id, [r.id for r in chunk]),
                )
                .with_for_update(of=Contact)
            )
        }
        params: list[dict[str, Any]] = []
        for record in chunk:
            old = existing.get(record.id)
            values: dict[str, Any] = {"tenant_id": tenant_id, "id": record.id}
            for column in columns:
                if column in record.fields:
                    values[column] = record.fields[column]
                elif old is not None:
                    values[column] = getattr(old, column)
                else:
                    values[column] = [] if column == "tags" else None
            attributes = dict(old.attributes) if old is not None else {}
            for name, value in record.attributes.items():
                if value is None:
                    attributes.pop(name, None)
                else:
                    attributes[name] = value
            values["attributes"] = attributes
            values["created_at"] = old.created_at if old is not None else now
            values["updated_at"] = now
            params.append(values)
            (created if old is None else updated).append(record.id)
            if old is not None and values["timezone"] != old.timezone:
                previous_zones[record.id] = old.timezone
        session.expunge_all()  # the rows read above are about to be stale
        insert_rows(
            session,
            table,
            params,
            conflict=("tenant_id", "id"),
            update_columns=(*columns, "attributes", "updated_at"),
        )
    return ContactsWritten(created, updated, previous_zones)


def import_contact_rows(
    store: Store,
    rows: Iterable[Row] | RowReader,
    *,
    source: str = "<rows>",
    schema: ContactSchema | str | Path | None = None,
    tenant_id: str = DEFAULT_TENANT,
    skip_invalid: bool = False,
    now: datetime | None = None,
    read_problems: Sequence[Problem] = (),
    columns: Sequence[str] = (),
    on_written: OnWritten | None = None,
    before_written: BeforeWritten | None = None,
) -> ImportReport:
    """Validate and upsert contact rows `(line, mapping)`; see the module docstring for rules.

    `rows` may be a `RowReader`, read once or more in chunks (a file is never held whole);
    `read_problems` is then the list its first read adds to. Chunks are written as they are
    checked, in one transaction: a bad row found late rolls back what was written before it.
    `before_written(session, ids)` runs before each chunk's write and `on_written(session,
    chunk_report)` after it, in that transaction, so whatever they do (the engine firing `on
    contact_created`) commits or fails with the import.
    """
    stamp = now or utcnow()
    read = rows if callable(rows) else _listed_reader(rows)
    report = ImportReport("contacts", source, tenant_id)
    with store.session() as session:
        resolved = _resolve_schema(session, tenant_id, schema)
        # A bad header column is reported once, not on every row, and rejects the file.
        header = [
            Problem(source, 1, column, reason)
            for column in columns
            if column and (reason := unknown_column_reason(column, resolved)) is not None
        ]
        unread = {problem.column for problem in [*header, *read_problems] if problem.row == 1}
        typed = resolved is None and bool(columns)  # numbers and booleans read by column

        def checked(skipped: Collection[int]) -> Iterator[Row]:
            rows = read()
            if skipped:
                rows = ((line, raw) for line, raw in rows if line not in skipped)
            if columns and unread:
                rows = (
                    (line, {key: value for key, value in raw.items() if key not in unread})
                    for line, raw in rows
                )
            return rows

        def typed_chunks(
            skipped: Collection[int], converters: Mapping[str, Callable[[str], Any]]
        ) -> Iterator[list[Row]]:
            for chunk in _chunked(checked(skipped)):
                if converters:
                    chunk = [(line, typed_cells(raw, converters)) for line, raw in chunk]
                yield chunk

        def validate(
            chunk: list[Row], first_line: dict[str, int] | None
        ) -> tuple[list[ContactRecord], list[Problem]]:
            return validate_contact_rows(
                chunk, resolved, source, lambda ids: stored_attributes(session, tenant_id, ids),
                first_line,
            )  # fmt: skip

        def column_types(skipped: Collection[int]) -> Mapping[str, Callable[[str], Any]]:
            if not typed:
                return {}
            types = CsvColumnTypes(columns)
            for chunk in _chunked(checked(skipped)):
                types.see([raw for _line, raw in chunk])
            return types.converters()

        # A problem of the header refuses the file, whatever the rows hold.
        header_refused = bool(header) or bool(columns and unread)

        def refused() -> bool:
            return header_refused or (not skip_invalid and bool(problems or read_problems))

        def write(records: list[ContactRecord]) -> None:
            if not records:
                return
            if not report.written:
                _ensure_tenant(session, tenant_id, stamp)
            if before_written is not None:
                before_written(session, [record.id for record in records])
            written = upsert_contact_records(session, tenant_id, records, now=stamp)
            chunk = ImportReport(
                "contacts", source, tenant_id, rows=len(records), written=len(records),
                created=len(written.created), updated=len(written.updated),
                created_ids=written.created, updated_ids=written.updated,
                previous_zones=written.previous_zones,
            )  # fmt: skip
            report.written += chunk.written
            report.created += chunk.created
            report.updated += chunk.updated
            if on_written is not None:
                on_written(session, chunk)

        problems: list[Problem] = list(header)
        # With --skip-invalid, a CSV without a schema is typed by the rows it writes, which
        # are known once every row is checked: it is checked first, then written.
        write_while_checking = not (skip_invalid and typed)
        converters = column_types(())
        first_line: dict[str, int] = {}
        for chunk in typed_chunks((), converters):
            report.rows += len(chunk)
            records, row_problems = validate(chunk, first_line)
            problems.extend(row_problems)
            if write_while_checking and not refused():
                write(records)
        del first_line
        report.problems = problems = in_file_order([*read_problems, *problems])
        header_problems = [problem for problem in problems if problem.row == 1] if columns else []
        if problems and (not skip_invalid or header_problems):
            raise InvalidInput(problems, skippable=not header_problems)
        if not write_while_checking:
            skipped = {problem.row for problem in problems if problem.row is not None}
            converters = column_types(skipped)
            for chunk in typed_chunks(skipped, converters):
                write(validate(chunk, None)[0])
        if not report.written:
            return report
        if schema is not None and resolved is not None:
            tenant = session.get(Tenant, tenant_id)
            if tenant is not None:
                tenant.contact_schema = resolved.to_json()
                tenant.updated_at = stamp
    return report


def import_contacts(
    store: Store,
    path: str | Path,
    *,
    schema: ContactSchema | str | Path | None = None,
    tenant_id: str = DEFAULT_TENANT,
    skip_invalid: bool = False,
    now: datetime | None = None,
    on_written: OnWritten | None = None,
    before_written: BeforeWritten | None = None,
) -> ImportReport:
    """Import a contacts file (.csv or .jsonl). Raises InvalidInput, writing nothing, on bad rows.

    A schema given here is checked against and stored with the tenant; without one the
    tenant's stored schema is used, and without that attributes are stored as given.
    """
    file = Path(path)
    kind = _format_of(file)
    if isinstance(schema, str | Path):
        schema = load_schema(schema)
    problems: list[Problem] = []
    columns, rows = _reader(file, kind, problems)
    return import_contact_rows(
        store,
        rows,
        source=str(path),
        schema=schema,
        tenant_id=tenant_id,
        skip_invalid=skip_invalid,
        now=now,
        read_problems=problems,
        columns=[column for column in columns if column != "id"],
        on_written=on_written,
        before_written=before_written,
    )


def mapping_rows(items: Any, what: str, source: str) -> list[Mapping[str, Any]]:
    """The objects an engine call was given (contacts or events, `what`), as a list; else
    `InvalidInput` naming each that is not a mapping, before anything is read or written.

    One object passed where a list belongs would be iterated by its keys, and a string by
    its characters: each is refused as such rather than failing on the first key.
    """
    if isinstance(items, Mapping):
        whole: str | None = f"expected a list of {what}s, got one {what}: pass [{what}]"
    elif isinstance(items, str | bytes) or not isinstance(items, Iterable):
        whole = f"expected a list of {what}s, got {type(items).__name__}"
    else:
        whole = None
    if whole is not None:
        raise InvalidInput([Problem(source, None, None, whole)])
    rows = list(items)
    problems = [
        Problem(source, number, None, f"expected an object, got {type(item).__name__}")
        for number, item in enumerate(rows, start=1)
        if not isinstance(item, Mapping)
    ]
    if problems:
        raise InvalidInput(problems)
    return rows


def upsert_contact_dicts(
    store: Store,
    contacts: Iterable[Mapping[str, Any]],
    *,
    schema: ContactSchema | str | Path | None = None,
    tenant_id: str = DEFAULT_TENANT,
    skip_invalid: bool = False,
    now: datetime | None = None,
    on_written: OnWritten | None = None,
    before_written: BeforeWritten | None = None,
) -> ImportReport:
    """Upsert contacts given as Python dicts (row numbers in problems count from 1)."""
    rows = [(index, dict(contact)) for index, contact in enumerate(contacts, start=1)]
    return import_contact_rows(
        store,
        rows,
        schema=schema,
        tenant_id=tenant_id,
        skip_invalid=skip_invalid,
        now=now,
        on_written=on_written,
        before_written=before_written,
    )


# --- events --------------------------------------------------------------------------------


def new_events(
    session: Session, tenant_id: str, events: Sequence[EventRecord]
) -> tuple[list[EventRecord], int]:
    """The events whose dedupe key is not stored yet (nor repeated earlier in `events`).

    Returns them and how many were left out as already present.
    """
    keys = sorted({event.dedupe_key for event in events if event.dedupe_key is not None})
    present: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        present.update(
            key
            for key in session.scalars(
                select(Event.dedupe_key).where(
                    Event.tenant_id == tenant_id, Event.dedupe_key.in_(keys[start : start + CHUNK])
                )
            )
            if key is not None
        )
    fresh: list[EventRecord] = []
    for event in events:
        if event.dedupe_key is not None:
            if event.dedupe_key in present:
                continue
            present.add(event.dedupe_key)
        fresh.append(event)
    return fresh, len(events) - len(fresh)


def insert_events(
    session: Session, tenant_id: str, events: Sequence[EventRecord], *, now: datetime
) -> tuple[list[EventRecord], int]:
    """Insert events in bulk, skipping any whose dedupe key is already stored.

    Returns the events written and how many were already present.
    """
    fresh, duplicates = new_events(session, tenant_id, events)
    params = [
        {
            "tenant_id": tenant_id,
            "contact_id": event.contact_id,
            "name": event.name,
            "at": event.at,
            "properties": event.properties,
            "source": event.source,
            "dedupe_key": event.dedupe_key,
            "received_at": now,
        }
        for event in fresh
    ]
    insert_rows(session, Event.__table__, params)  # type: ignore[arg-type]
    return fresh, duplicates


def event_dict(event: EventRecord) -> dict[str, Any]:
    """An event record back in the JSON shape it was pushed in (for `Engine.push_events`)."""
    data: dict[str, Any] = {
        "name": event.name,
        "at": event.at.isoformat(),
        "properties": event.properties,
    }
    if event.contact_id is not None:
        data["contact"] = event.contact_id
    if event.dedupe_key is not None:
        data["id"] = event.dedupe_key
    if event.source is not None:
        data["source"] = event.source
    return data


def existing_contact_ids(session: Session, tenant_id: str, ids: Iterable[str]) -> set[str]:
    """Which of `ids` are contacts of `tenant_id` (one query per chunk)."""
    return {contact_id for (contact_id,) in _contacts_among(session, tenant_id, ids, Contact.id)}


def stored_attributes(
    session: Session, tenant_id: str, ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The stored attributes of those of `ids` that are contacts of `tenant_id`."""
    rows = _contacts_among(session, tenant_id, ids, Contact.id, Contact.attributes)
    return {contact_id: attributes for contact_id, attributes in rows}


def _contacts_among(
    session: Session, tenant_id: str, ids: Iterable[str], *columns: Any
) -> Iterator[Any]:
    """`columns` of those of `ids` that are contacts of `tenant_id`, one query per chunk."""
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), CHUNK):
        yield from session.execute(
            select(*columns).where(
                Contact.tenant_id == tenant_id,
                among(session, Contact.id, wanted[start : start + CHUNK]),
            )
        )


def link_to_sends(
    session: Session, tenant_id: str, records: list[tuple[int, EventRecord]]
) -> list[tuple[int, EventRecord]]:
    """Events naming a message (`send`: its idempotency key, or `message`: that or the
    provider's message id) get what that message says and they leave out.

    A tracking link or a provider's webhook knows the message, not the template, campaign or
    even the contact; without them `clicked(offer)`, scores and A/B verdicts could not see
    the event. Filled in when missing: the contact, and the properties `send` (the key),
    `template`, `campaign`, `channel` and `variant`. An event whose contact is not the
    message's is left as it is.
    """
    named = {
        str(value)
        for _, record in records
        for key in ("send", "message")
        if isinstance(value := record.properties.get(key), str | int) and str(value)
    }
    if not named:
        return records
    found: dict[str, tuple[Any, ...]] = {}
    for column in (OutboxMessage.idempotency_key, OutboxMessage.provider_message_id):
        # A name already found as a send's key is not looked up again as a provider's id.
        keys = sorted(named - found.keys())
        for start in range(0, len(keys), 500):
            for row in session.execute(
                select(
                    OutboxMessage.idempotency_key,
                    OutboxMessage.provider_message_id,
                    OutboxMessage.contact_id,
                    OutboxMessage.channel,
                    OutboxMessage.template,
                    OutboxMessage.variant,
                    Campaign.name,
                    OutboxMessage.tenant_id,
                )
                .outerjoin(CampaignVersion, CampaignVersion.id == OutboxMessage.version_id)
                .outerjoin(Campaign, Campaign.id == CampaignVersion.campaign_id)
                # The tenant is checked below, not here: given `tenant_id = ?`, SQLite's
                # planner walked every outbox row of the tenant instead of probing the keys.
                .where(among(session, column, keys[start : start + 500]))
            ):
                if row[-1] != tenant_id:
                    continue
                found.setdefault(str(row[0]), tuple(row[:-1]))
                if row[1] is not None:
                    found.setdefault(str(row[1]), tuple(row[:-1]))
    linked: list[tuple[int, EventRecord]] = []
    for line, record in records:
        message = next(
            (
                found[str(record.properties[key])]
                for key in ("send", "message")
                if record.properties.get(key) is not None and str(record.properties[key]) in found
            ),
            None,
        )
        if message is None or record.contact_id not in (None, message[2]):
            linked.append((line, record))
            continue
        key, _, contact_id, channel, template, variant, campaign = message
        properties = dict(record.properties)
        for name, value in (
            ("send", key), ("template", template), ("campaign", campaign),
            ("channel", channel), ("variant", variant),
        ):  # fmt: skip
            if value is not None and properties.get(name) is None:
                properties[name] = value
        linked.append((line, replace(record, contact_id=contact_id, properties=properties)))
    return linked


def push_event_rows(
    store: Store,
    rows: Iterable[Row] | RowReader,
    *,
    source: str = "<events>",
    tenant_id: str = DEFAULT_TENANT,
    skip_invalid: bool = False,
    now: datetime | None = None,
    read_problems: Sequence[Problem] = (),
    on_written: OnWritten | None = None,
    before_written: BeforeWritten | None = None,
    check_only: bool = False,
) -> ImportReport:
    """Validate and store event rows `(line, mapping)`; unknown contacts are problems.

    `rows` may be a `RowReader` (a file, never held whole; `read_problems` is then the list
    its read adds to). Chunks are written as they are checked, in one transaction: a bad row
    found late rolls back what was written before it. With `check_only` nothing is written.

    `before_written(session, contact_ids)` runs before each chunk's write and
    `on_written(session, chunk_report)` after it, in the same transaction (the engine
    firing the triggers the events match); `chunk_report.events` holds the events written.
    """
    stamp = now or utcnow()
    read = rows if callable(rows) else _listed_reader(rows)
    report = ImportReport("events", source, tenant_id)
    problems: list[Problem] = []
    with store.session() as session:
        known_tenant = session.get(Tenant, tenant_id) is not None
        for chunk in _chunked(read()):
            report.rows += len(chunk)
            good = _checked_events(session, chunk, source, tenant_id, known_tenant, stamp, problems)
            if check_only or not good or (not skip_invalid and (problems or read_problems)):
                continue
            if not report.written:
                _ensure_tenant(session, tenant_id, stamp)
            if before_written is not None:
                before_written(session, sorted({e.contact_id for e in good if e.contact_id}))
            events, duplicates = insert_events(session, tenant_id, good, now=stamp)
            report.written += len(events)
            report.duplicates += duplicates
            if on_written is not None and events:
                written = ImportReport(
                    "events", source, tenant_id, rows=len(chunk), written=len(events),
                    duplicates=duplicates, events=events,
                )  # fmt: skip
                on_written(session, written)
        # Every problem at once, in the file's order: unknown contacts among the rest.
        report.problems = problems = in_file_order([*read_problems, *problems])
        if problems and not skip_invalid:
            raise InvalidInput(problems, skippable=True)
    return report


def _checked_events(
    session: Session,
    chunk: Sequence[Row],
    source: str,
    tenant_id: str,
    known_tenant: bool,
    now: datetime,
    problems: list[Problem],
) -> list[EventRecord]:
    """The events of a chunk of rows that can be stored, linked to their sends; what is
    wrong with the others goes to `problems`."""
    records: list[tuple[int, EventRecord]] = []
    for line, raw in chunk:
        record, errors = validate_event(raw)
        problems.extend(Problem(source, line, column, reason) for column, reason in errors)
        if record is not None:
            if now < record.at <= now + CLOCK_SKEW:
                record = replace(record, at=now)
            records.append((line, record))
    if not known_tenant:
        known: set[str] = set()
    else:
        records = link_to_sends(session, tenant_id, records)
        known = existing_contact_ids(
            session, tenant_id, (r.contact_id for _, r in records if r.contact_id)
        )
    good: list[EventRecord] = []
    for line, record in records:
        if record.contact_id is not None and record.contact_id not in known:
            reason = f"no contact {record.contact_id!r} in tenant {tenant_id!r}"
            problems.append(Problem(source, line, "contact", reason))
        else:
            good.append(record)
    return good


def push_events(
    store: Store,
    path: str | Path,
    *,
    tenant_id: str = DEFAULT_TENANT,
    skip_invalid: bool = False,
    now: datetime | None = None,
    on_written: OnWritten | None = None,
    before_written: BeforeWritten | None = None,
    check_only: bool = False,
) -> ImportReport:
    """Store the events of a JSON Lines file. Raises InvalidInput, writing nothing, on bad rows."""
    file = Path(path)
    if file.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        raise _file_problem(str(path), "events come as JSON Lines: use a .jsonl file")
    problems: list[Problem] = []
    _columns, rows = _reader(file, "jsonl", problems)
    return push_event_rows(
        store,
        rows,
        source=str(path),
        tenant_id=tenant_id,
        skip_invalid=skip_invalid,
        now=now,
        read_problems=problems,
        on_written=on_written,
        before_written=before_written,
        check_only=check_only,
    )


def push_event_dicts(
    store: Store,
    events: Iterable[Mapping[str, Any]],
    *,
    tenant_id: str = DEFAULT_TENANT,
    skip_invalid: bool = False,
    now: datetime | None = None,
    on_written: OnWritten | None = None,
    before_written: BeforeWritten | None = None,
) -> ImportReport:
    """Store events given as Python dicts (row numbers in problems count from 1)."""
    rows = [(index, dict(event)) for index, event in enumerate(events, start=1)]
    return push_event_rows(
        store,
        rows,
        tenant_id=tenant_id,
        skip_invalid=skip_invalid,
        now=now,
        on_written=on_written,
        before_written=before_written,
    )
