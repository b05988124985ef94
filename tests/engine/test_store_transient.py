"""Transient database failures: told apart from real ones, and the engine's batch runs again."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store, claims
from cadence.engine.store.transient import is_transient
from tests.engine.test_runtime import CONTACTS, LAUNCH, campaigns, engine_run, sent

# LAUNCH sends `hello` to those with a lead score of 30 or more.
AUDIENCE = [("c1", "hello"), ("c3", "hello")]


def _provoke_busy_or_deadlock(url: str) -> DBAPIError:
    """The backend's own transient failure, for real: a locked SQLite file, or a deadlock."""
    engine = create_engine(url, connect_args={"timeout": 0} if url.startswith("sqlite") else {})
    try:
        if url.startswith("sqlite"):
            with engine.connect() as holder, engine.connect() as other:
                holder.exec_driver_sql("BEGIN IMMEDIATE")
                with pytest.raises(OperationalError) as busy:
                    other.exec_driver_sql("BEGIN IMMEDIATE")
                holder.exec_driver_sql("ROLLBACK")
            return busy.value
        with engine.begin() as setup:
            setup.execute(text("CREATE TABLE clash (id int primary key, n int)"))
            setup.execute(text("INSERT INTO clash VALUES (1, 0), (2, 0)"))
        failures: list[DBAPIError] = []
        both_hold_one = threading.Barrier(2)

        def lock(first: int, second: int) -> None:
            with engine.connect() as connection, connection.begin():
                connection.execute(text("UPDATE clash SET n = n + 1 WHERE id = :i"), {"i": first})
                both_hold_one.wait()
                try:
                    connection.execute(
                        text("UPDATE clash SET n = n + 1 WHERE id = :i"), {"i": second}
                    )
                except DBAPIError as error:
                    failures.append(error)

        threads = [threading.Thread(target=lock, args=pair) for pair in ((1, 2), (2, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(failures) == 1  # PostgreSQL picks one victim and lets the other finish
        return failures[0]
    finally:
        engine.dispose()


def test_a_busy_database_or_a_deadlock_is_transient(database_url: str) -> None:
    error = _provoke_busy_or_deadlock(database_url)
    assert is_transient(error), error


def test_constraint_and_statement_errors_are_not_transient(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE once (id int primary key)"))
            connection.execute(text("INSERT INTO once VALUES (1)"))
        with pytest.raises(IntegrityError) as duplicate, engine.begin() as connection:
            connection.execute(text("INSERT INTO once VALUES (1)"))
        with pytest.raises((OperationalError, ProgrammingError)) as bad, engine.begin() as c:
            c.execute(text("SELECT nothing FROM nowhere"))
    finally:
        engine.dispose()
    assert not is_transient(duplicate.value)
    assert not is_transient(bad.value)
    assert not is_transient(ValueError("not a database error"))


def _driver_error(url: str, transient: bool) -> OperationalError:
    """What SQLAlchemy raises for the backend's driver error of each kind."""
    if url.startswith("sqlite"):
        message = "database is locked" if transient else "disk I/O error"
        return OperationalError("UPDATE enrollments ...", {}, sqlite3.OperationalError(message))
    cause = (
        psycopg.errors.DeadlockDetected("deadlock detected")
        if transient
        else psycopg.errors.DiskFull("could not extend file")
    )
    return OperationalError("UPDATE enrollments ...", {}, cause)


def _fail_first_write(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[int]:
    """Make the first batch's write of its enrollments fail with `error`; count the calls."""
    calls: list[int] = []
    original: Callable[..., Any] = claims.write_locked_enrollments

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(claims, "write_locked_enrollments", failing)
    return calls


def test_a_batch_that_meets_a_transient_failure_runs_again_and_sends_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fail_first_write(monkeypatch, _driver_error(store_url, transient=True))

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(LAUNCH))
        await engine.launch("hello_all")
        await engine.run_due()
        return sink

    sink = engine_run(store_url, body)
    assert len(calls) >= 2  # the failed batch, then the same batch again
    assert sorted(sent(sink)) == AUDIENCE


def test_a_batch_that_meets_a_real_failure_raises_and_leaves_nothing_half_written(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fail_first_write(monkeypatch, _driver_error(store_url, transient=False))

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(LAUNCH))
        await engine.launch("hello_all")
        with pytest.raises(OperationalError):
            await engine.run_due()
        assert calls == [1] and sink.delivered == []
        # Nothing was written: the next run finds the batch due and sends it once.
        await engine.run_due()
        return sink

    sink = engine_run(store_url, body)
    assert sorted(sent(sink)) == AUDIENCE
    with Store.open(store_url) as store, store.session() as session:
        count = session.execute(text("SELECT count(*) FROM send_outbox")).scalar_one()
    assert count == len(AUDIENCE)
