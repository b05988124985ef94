"""Opening the durable store: which database, how to connect to it, and bringing its schema up.

One `Store` wraps one SQLAlchemy engine. SQLite (the embedded default) is set up so that a
transaction takes the write lock when it begins (BEGIN IMMEDIATE): writers queue on the
busy timeout instead of failing halfway, which is what makes a one-statement claim safe.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from cadence.engine.store.models import Tenant
from cadence.errors import CadenceError

DATABASE_URL_ENV = "CADENCE_DATABASE_URL"
DEFAULT_SQLITE_FILE = "cadence.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreError(CadenceError):
    """A store-level failure worth showing to a person as is (bad URL, unreachable database)."""


def resolve_database_url(url: str | None = None) -> str:
    """Pick the database: an explicit URL, else $CADENCE_DATABASE_URL, else ./cadence.db."""
    chosen = url or os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{DEFAULT_SQLITE_FILE}"
    parsed = _parse_url(chosen)
    # A bare postgresql:// URL would pick psycopg2, which the project does not use.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    return chosen


def _parse_url(url: str) -> URL:
    """Parse a database URL, turning SQLAlchemy's error into one that names the URL."""
    try:
        return make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError; keep the message
        raise StoreError(f"not a database URL: {url!r} ({exc})") from exc


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the store refuses naive ones)."""
    return datetime.now(UTC)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: our own transaction control, FKs, WAL, busy timeout."""
    dbapi_connection.isolation_level = None  # let the begin hook below issue BEGIN
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, waiting out other connections as a busy timeout would.

    The mode is stored in the file, so it is switched once; but the switch needs the file to
    itself and SQLite answers "database is locked" at once, without its busy handler, when
    another connection (an engine starting beside this one) holds it.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode in ("wal", "memory"):  # in-memory databases have no WAL; nothing to do
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error).lower() or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _sqlite_on_begin(connection: Connection) -> None:
    """Start every SQLite transaction holding the write lock, so upgrades never deadlock."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def dumps_json(value: Any) -> str:
    """JSON text of a document, as the store writes its JSON columns."""
    return orjson.dumps(value).decode("utf-8")


class NotJsonNumber(ValueError):
    """`NaN`, `Infinity` or `-Infinity`: Python's decoder takes them, JSON has none."""

    def __init__(self, name: str) -> None:
        """Name the constant the text held."""
        super().__init__(f"{name} is not a number JSON has (write null, or a string)")


class UnstorableJson(NotJsonNumber):
    """JSON that reads but that the store's JSON columns cannot keep: an integer beyond 64
    bits, a number beyond a float's range (`1e400`), a string with a lone surrogate escape
    (`"\\ud800"`), which is no text."""

    def __init__(self, reason: str) -> None:
        """Say why."""
        ValueError.__init__(self, reason)


STORED_INTEGERS = range(-(2**63), 2**63)
"""The integers the store's JSON columns hold: orjson writes 64 bits at most."""

INTEGER_OUT_OF_RANGE = (
    f"an integer beyond the integers Cadence stores ({STORED_INTEGERS.start} to "
    f"{STORED_INTEGERS.stop - 1}); write it as a string"
)
"""Why an integer cannot be stored: one beyond 64 bits failed the whole write with a
traceback; as text (a quoted cell, a JSON string) it is kept."""


def _no_constant(name: str) -> Any:
    raise NotJsonNumber(name)


def _stored_int(text: str) -> int:
    # 2**63 has 19 digits, so a longer one is out of range unread: Python refuses to
    # convert more than 4,300 digits with a ValueError of its own.
    if len(text.lstrip("-")) > 19 or int(text) not in STORED_INTEGERS:
        raise UnstorableJson(INTEGER_OUT_OF_RANGE)
    return int(text)


def _finite_float(text: str) -> float:
    # Python reads `1e400` as infinity, which the store's encoder writes as null: the
    # attribute or event property was silently lost.
    number = float(text)
    if not math.isfinite(number):
        raise UnstorableJson(f"{text} is beyond the numbers Cadence stores; write it as a string")
    return number


# Why a text holding U+0000 is refused (`unstorable`), wherever it is found.
NUL_IN_TEXT = "holds a NUL character (\\u0000), which is not text the store keeps"


def unstorable(value: Any, *, nul: bool = True) -> str | None:
    """Why a JSON value (an attribute, an event's properties) cannot be stored, or None.

    The store's encoder refuses an integer beyond 64 bits and a string with a lone
    surrogate (Python's decoder makes one of `"\\ud800"`), with a TypeError that failed the
    whole import or request; it writes NaN and the infinities as null, losing the value.
    PostgreSQL refuses a NUL character in text and in JSON, failing the whole transaction
    with a DataError, where SQLite stored it: refused on both, so both keep the same rows
    (`nul=False` leaves that to a later check that can name the field).
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"the string {value!r} holds a lone surrogate escape, which is not text"
        if nul and "\x00" in value:
            return NUL_IN_TEXT
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        return None if value in STORED_INTEGERS else INTEGER_OUT_OF_RANGE
    elif isinstance(value, float):
        if math.isnan(value):
            return "NaN is not a number JSON has (write null, or a string)"
        if math.isinf(value):
            return f"{value} is beyond the numbers Cadence stores; write it as a string"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            reason = unstorable(key, nul=nul) or unstorable(item, nul=nul)
            if reason is not None:
                return reason
    elif isinstance(value, list | tuple):
        for item in value:
            reason = unstorable(item, nul=nul)
            if reason is not None:
                return reason
    return None


def storable(value: Any) -> Any:
    """A JSON value from another system (a provider's webhook) made storable instead of
    refused: NUL characters dropped, lone surrogates replaced, integers beyond 64 bits and
    non-finite numbers kept as text. Refusing would lose the report (a STOP reply among
    them) and the provider would send it again for ever."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value in STORED_INTEGERS else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def loads_json(text: str | bytes) -> Any:
    """JSON text given to Cadence (a file, a request body) as JSON has it: NaN and the
    infinities, which Python's decoder takes and no store keeps (SQLite wrote invalid JSON,
    PostgreSQL refused the transaction), raise `NotJsonNumber`, and so do JSON the store
    cannot write (`UnstorableJson`): an integer beyond 64 bits, a number beyond a float's
    range, a lone surrogate escape."""
    value = json.loads(
        text, parse_constant=_no_constant, parse_int=_stored_int, parse_float=_finite_float
    )
    # A NUL is valid JSON text: the row's checks name its field (`records`), a line cannot.
    reason = unstorable(value, nul=False)
    if reason is not None:
        raise UnstorableJson(reason)
    return value


# The store's JSON columns (enrollment state, contact attributes, payloads) are encoded and
# decoded for every row the engine touches; orjson does it several times faster than the
# standard library, with the same documents for everything the engine stores.
_JSON_CODEC: dict[str, Any] = {"json_serializer": dumps_json, "json_deserializer": orjson.loads}


def is_in_memory(database: str | None) -> bool:
    """Whether a SQLite URL's database part names an in-memory database."""
    name = database or ""
    return name in ("", ":memory:") or name.startswith("file::memory:")


def missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names when it does not exist yet (opening would create it);
    None for one that exists, an in-memory database or PostgreSQL."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite" or is_in_memory(parsed.database):
        return None
    path = Path(parsed.database or "").expanduser()
    return None if path.exists() else path


def create_store_engine(url: str, *, echo: bool = False) -> Engine:
    """Create a SQLAlchemy engine configured for the store on SQLite or PostgreSQL."""
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        in_memory = is_in_memory(database)
        if not in_memory:
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if in_memory:
            kwargs["poolclass"] = StaticPool  # one shared connection, or each sees its own DB
        engine = create_engine(parsed, echo=echo, **_JSON_CODEC, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise StoreError(
                f"PostgreSQL URLs must use psycopg 3: postgresql+psycopg://... (got {url!r})"
            )
        return create_engine(
            parsed, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10, **_JSON_CODEC
        )
    raise StoreError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def check_tenant_id(tenant_id: str) -> None:
    """Refuse a tenant id the `tenants` table does not take (1 to 64 characters), before
    anything is written under it."""
    if not tenant_id or len(tenant_id) > 64:
        raise StoreError(f"tenant id must be 1 to 64 characters, got {tenant_id!r}")


def dialect_insert(dialect: str, target: Any) -> SQLiteInsert | PostgresInsert:
    """An INSERT with the backend's ON CONFLICT clause available (both spell it the same)."""
    if dialect == "postgresql":
        return postgres_insert(target)
    return sqlite_insert(target)


class Store:
    """The engine's durable state: one database, its schema migrated, sessions on demand."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine made by `create_store_engine` (use `Store.open` in normal code)."""
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True, echo: bool = False) -> Store:
        """Open the store at `url` (see `resolve_database_url`) and bring its schema to head."""
        store = cls(create_store_engine(resolve_database_url(url), echo=echo))
        if migrate:
            try:
                store.migrate()
            except OperationalError as exc:
                # Down, refusing, or a file SQLite cannot open: the first thing that connects
                # says so, in one line (the driver's first), not in a page of traceback.
                store.close()
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                raise StoreError(f"cannot open the database {store.url}: {reason}") from None
        return store

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`: for the few statements that differ by backend."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL, password hidden, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self, revision: str = "head") -> None:
        """Run the packaged Alembic migrations up to `revision` (head by default).

        A new in-memory database (nothing to migrate, gone with the process) is built
        at head from the models instead (`migrations.create_at_head`).
        """
        from cadence.engine.migrations import create_at_head, upgrade

        if revision == "head" and self._is_new_in_memory():
            create_at_head(self.engine)
        else:
            upgrade(self.engine, revision)

    def _is_new_in_memory(self) -> bool:
        """Whether this is an in-memory SQLite database with no tables yet."""
        if self.dialect != "sqlite" or not is_in_memory(self.engine.url.database):
            return False
        with self.engine.connect() as connection:
            return not connection.exec_driver_sql("SELECT 1 FROM sqlite_master").first()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        """Use the store as a context manager that closes it."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the store."""
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core connection in one transaction, for bulk statements."""
        with self.engine.begin() as connection:
            yield connection

    def ensure_tenant(
        self, tenant_id: str, *, name: str | None = None, now: datetime | None = None
    ) -> None:
        """Create the tenant if it does not exist yet (every row needs its tenant first)."""
        check_tenant_id(tenant_id)
        stamp = now or utcnow()
        statement = dialect_insert(self.dialect, Tenant).values(
            id=tenant_id, name=name or tenant_id, created_at=stamp, updated_at=stamp
        )
        with self.connect() as connection:
            connection.execute(statement.on_conflict_do_nothing(index_elements=["id"]))

    def tenant_name(self, tenant_id: str) -> str:
        """The tenant's display name, as templates see it in `company.name`: its id unless
        it was given one."""
        with self.session() as session:
            return session.scalar(select(Tenant.name).where(Tenant.id == tenant_id)) or tenant_id

    def tenant_ids(self) -> list[str]:
        """Every tenant's id, sorted."""
        with self.session() as session:
            return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
