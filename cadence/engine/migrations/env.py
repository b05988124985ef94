"""Alembic's entry point: runs migrations on the connection the store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cadence.engine.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    """Configure Alembic on one connection and run the pending migrations in it."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the connection from `cadence.engine.migrations.upgrade`, or connect from the URL."""
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the migrations")
    from cadence.engine.store.database import create_store_engine

    engine = create_store_engine(url)
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Cadence migrations run online only: call Store.migrate()")
run_migrations_online()
