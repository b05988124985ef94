"""Shared fixtures: a real database on each backend the store supports, fresh for every test.

`database_url` runs a test twice: on a SQLite file in tmp_path and on a fresh PostgreSQL
database created on the server named by $CADENCE_TEST_POSTGRES_URL (start one with
`eval "$(bash .ci/postgres.sh)"`). Without that variable the PostgreSQL half is skipped,
except under CI=true, where it fails: CI must test both.
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

POSTGRES_URL_ENV = "CADENCE_TEST_POSTGRES_URL"


def _in_ci() -> bool:
    """True when running under CI (CI=true), where no backend may be skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_admin_url() -> str:
    """The PostgreSQL server to create test databases on, or skip/fail when there is none."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    reason = f'${POSTGRES_URL_ENV} is not set; start a server with: eval "$(bash .ci/postgres.sh)"'
    if _in_ci():
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the PostgreSQL server's admin database (skips locally, fails in CI, if unset)."""
    return _postgres_admin_url()


def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create an empty database for one test and drop it afterwards."""
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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cadence.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    yield from _fresh_postgres_database(admin_url)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated `Store` on `database_url`, closed after the test."""
    opened = Store.open(database_url)
    try:
        yield opened
    finally:
        opened.close()
