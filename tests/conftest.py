"""Shared fixtures: a real database on each backend the store supports.

Every fixture below runs a test twice, on SQLite and on PostgreSQL (ids `[sqlite]` and
`[postgresql]`). PostgreSQL is the server named by $CADENCE_TEST_POSTGRES_URL; start one with
`eval "$(bash .ci/postgres.sh)"`. Without that variable the PostgreSQL half is skipped, except
under CI=true, where it fails: CI must test both.

- `store`: a migrated, empty `Store` (on PostgreSQL one database is migrated once per session
  and emptied before each test, which is much faster than creating one per test).
- `store_url`: the URL of that same database, for code that opens its own connections
  (the CLI, other threads, other processes). Use it instead of `database_url` with `store`.
- `database_url`: a brand-new empty database that nothing has migrated, for migration tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cadence.engine.store import Store
from cadence.engine.store.models import Base

POSTGRES_URL_ENV = "CADENCE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def _in_ci() -> bool:
    """True when running under CI (CI=true), where no backend may be skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the PostgreSQL server's admin database (skips locally, fails in CI, if unset)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    reason = f'${POSTGRES_URL_ENV} is not set; start a server: eval "$(bash .ci/postgres.sh)"'
    if _in_ci():
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(reason)


def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it afterwards."""
    name = f"cadence_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new, unmigrated database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    yield from _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture(scope="session")
def postgres_store_url(postgres_admin_url: str) -> Iterator[str]:
    """One PostgreSQL database for the whole session, migrated to head once."""
    for url in _fresh_postgres_database(postgres_admin_url):
        Store.open(url).close()
        yield url


def _empty_postgres(url: str) -> None:
    """Delete every row of every store table (the schema and its version stay)."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE TABLE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty store database (migrated by `store`, or already on PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cadence.db'}"
    url: str = request.getfixturevalue("postgres_store_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated, empty `Store`, closed after the test."""
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
