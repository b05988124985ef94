"""Alembic migrations for the store, shipped inside the package and run at engine start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent

# Held while migrating on PostgreSQL, so engines starting together migrate one at a time.
# (On SQLite the transaction's BEGIN IMMEDIATE already serialises them.)
MIGRATION_LOCK_KEY = 0x0CADE0CE


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts (and at `engine`, if given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        config.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind `engine` up to `revision`."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def create_at_head(engine: Engine) -> None:
    """Build an empty database's schema from the models in one pass and mark it at head.

    For a store that starts empty and dies with its process (an in-memory SQLite database:
    every dry-run), replaying each migration cost about fifteen times as much; the tests
    pin that both ways give the same tables, columns, indexes, keys and checks.
    """
    from cadence.engine.store.models import Base

    config = alembic_config(engine)
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        config.attributes["connection"] = connection
        command.stamp(config, "head")


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to `revision` (`base` empties it), for tests and manual undo."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
