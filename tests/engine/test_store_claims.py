"""The store opens and migrates on both backends, and leases hand out due work exactly once."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from store_helpers import T0

from cadence.engine.migrations import current_revision, downgrade, head_revision
from cadence.engine.store import AsyncStore, Store, StoreError, resolve_database_url
from cadence.engine.store.claims import (
    EnrollmentUpdate,
    claim_enrollments,
    new_owner_id,
    release_enrollments,
    renew_enrollment_leases,
    update_enrollments,
    write_stepped_enrollments,
)
from cadence.engine.store.models import Base, Enrollment, EnrollmentStatus, Tenant
from cadence.engine.store.types import RawJSON, UTCDateTime
from tests.engine.cadence_cli import run_cadence

SeedEnrollments = Callable[..., list[int]]

LEASE = timedelta(seconds=30)


def test_migrations_reach_head_and_match_the_models(store: Store) -> None:
    assert current_revision(store.engine) == head_revision() is not None
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrations_go_down_to_base_and_up_again(database_url: str) -> None:
    from sqlalchemy import inspect

    with Store.open(database_url) as store:
        downgrade(store.engine, "base")
        assert current_revision(store.engine) is None
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
        store.migrate()
        assert current_revision(store.engine) == head_revision()
        assert "enrollments" in inspect(store.engine).get_table_names()


def _sqlite_schema(store: Store) -> dict[str, Any]:
    """Every table's columns, indexes, foreign keys and named checks, as SQLite reports them."""
    shape: dict[str, Any] = {}
    with store.engine.connect() as connection:
        run = connection.exec_driver_sql
        tables = run(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
        ).all()
        for name, sql in tables:
            indexes = sorted(
                (
                    index_name if origin == "c" else origin, unique, partial,
                    tuple(row[2] for row in run(f"PRAGMA index_info('{index_name}')")),
                )
                for _, index_name, unique, origin, partial in run(f"PRAGMA index_list('{name}')")
            )  # fmt: skip
            shape[name] = {
                "columns": sorted(tuple(row[1:]) for row in run(f"PRAGMA table_xinfo('{name}')")),
                "indexes": indexes,
                "foreign keys": sorted(
                    tuple(row[2:]) for row in run(f"PRAGMA foreign_key_list('{name}')")
                ),
                "checks": sorted(re.findall(r"CONSTRAINT (\w+) CHECK", sql)),
            }
    return shape


def test_an_in_memory_store_is_built_as_the_migrations_build_a_file(tmp_path: Path) -> None:
    # In-memory stores (every dry-run) are created from the models, not migrated: they
    # must come out exactly as a migrated database does, and at the head revision.
    with Store.open("sqlite://") as in_memory, Store.open(f"sqlite:///{tmp_path / 'm.db'}") as file:
        assert current_revision(in_memory.engine) == head_revision() is not None
        assert _sqlite_schema(in_memory) == _sqlite_schema(file)
        assert len(_sqlite_schema(in_memory)) > 10


def test_reopening_a_migrated_store_is_a_no_op(database_url: str) -> None:
    with Store.open(database_url) as first:
        first.ensure_tenant("acme", now=T0)
    with Store.open(database_url) as second:
        assert second.tenant_ids() == ["acme"]
        second.ensure_tenant("acme", now=T0)  # idempotent
        assert second.tenant_ids() == ["acme"]


def test_engines_starting_together_migrate_once(database_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Store.open(database_url).close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with Store.open(database_url, migrate=False) as store:
        assert current_revision(store.engine) == head_revision()


def test_timestamps_come_back_aware_utc(store: Store) -> None:
    manila = datetime(2026, 12, 1, 17, 0, tzinfo=timezone(timedelta(hours=8)))
    store.ensure_tenant("acme", now=manila)
    with store.session() as session:
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        assert tenant.created_at == T0 and tenant.created_at.tzinfo is not None
    with pytest.raises(Exception, match="naive datetime"):
        store.ensure_tenant("naive", now=datetime(2026, 1, 1))


def test_timestamps_read_many_times_come_back_equal_and_aware(store: Store) -> None:
    # SQLite keeps timestamps as text and the engine parses each distinct text once per
    # statement shape: repeated, fractional, offset and NULL values must all read right.
    texts = {
        "2026-12-01 09:00:00.000000": datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        "2026-12-01 09:00:00.250000": datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC),
        "2026-12-01 17:00:00+08:00": datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    }
    statement = text("SELECT :a AS a, :b AS b, :c AS c, NULL AS d").columns(
        a=UTCDateTime(), b=UTCDateTime(), c=UTCDateTime(), d=UTCDateTime()
    )
    a, b, c = texts
    with store.session() as session:
        for _ in range(3):
            row = session.execute(statement, {"a": a, "b": b, "c": c}).one()
            assert tuple(row) == (*texts.values(), None)
            assert all(value.tzinfo is UTC for value in row[:3])


def test_database_url_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADENCE_DATABASE_URL", raising=False)
    assert resolve_database_url() == "sqlite:///cadence.db"
    monkeypatch.setenv("CADENCE_DATABASE_URL", "postgresql://u@h/db")
    assert resolve_database_url() == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(StoreError, match="not a database URL"):
        resolve_database_url("nonsense")
    with pytest.raises(StoreError, match="unsupported database"):
        Store.open("mysql://u@h/db")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_that_cannot_be_reached_is_one_line_naming_it(kind: str, tmp_path: Path) -> None:
    """Every store command (status, deploy, import ...) ended in two pages of SQLAlchemy
    traceback when the database was down or its file could not be opened."""
    url = {
        "sqlite": f"sqlite:///{tmp_path}",  # a folder, not a database file
        "postgresql": "postgresql+psycopg://cadence:secret@127.0.0.1:1/cadence",
    }[kind]
    with pytest.raises(StoreError, match="cannot open the database") as info:
        Store.open(url)
    assert "secret" not in str(info.value)  # the URL's password is hidden
    done = run_cadence("status", store_url=url, cwd=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("cadence: cannot open the database ") and "secret" not in line


def test_claim_takes_only_due_active_rows_oldest_first(store: Store, seed: SeedEnrollments) -> None:
    ids = seed(5)  # due at T0, T0+1s, ... T0+4s
    with store.session() as session:
        done = session.get(Enrollment, ids[0])
        assert done is not None
        done.status = EnrollmentStatus.COMPLETED.value
    now = T0 + timedelta(seconds=3)
    with store.session() as session:
        claimed = claim_enrollments(
            session, "w1", now=now, limit=10, tenant_id="default", lease_for=LEASE
        )
    assert [row.id for row in claimed] == ids[1:4]
    assert all(row.lease_owner == "w1" and row.lease_expires_at == now + LEASE for row in claimed)
    with store.session() as session:
        again = claim_enrollments(
            session, "w2", now=now, limit=10, tenant_id="default", lease_for=LEASE
        )
    assert again == []  # all due rows are leased to w1


def test_claim_respects_the_limit(store: Store, seed: SeedEnrollments) -> None:
    ids = seed(10)
    now = T0 + timedelta(minutes=1)
    with store.session() as session:
        first = claim_enrollments(
            session, "w1", now=now, limit=4, tenant_id="default", lease_for=LEASE
        )
    with store.session() as session:
        second = claim_enrollments(
            session, "w2", now=now, limit=4, tenant_id="default", lease_for=LEASE
        )
    with store.session() as session:
        third = claim_enrollments(
            session, "w3", now=now, limit=4, tenant_id="default", lease_for=LEASE
        )
    assert [r.id for r in first] == ids[:4]
    assert [r.id for r in second] == ids[4:8]
    assert [r.id for r in third] == ids[8:]


def test_expired_lease_is_taken_over_and_the_old_owner_is_fenced_out(
    store: Store, seed: SeedEnrollments
) -> None:
    ids = seed(3)
    now = T0 + timedelta(seconds=10)
    with store.session() as session:
        mine = claim_enrollments(
            session, "w1", now=now, limit=10, tenant_id="default", lease_for=LEASE
        )
    assert len(mine) == 3

    # Before the lease runs out nobody else gets the rows.
    with store.session() as session:
        assert (
            claim_enrollments(
                session, "w2", now=now + LEASE / 2, limit=10, tenant_id="default", lease_for=LEASE
            )
            == []
        )

    # w1 renews one row; the other two expire and w2 takes them over.
    with store.session() as session:
        kept = renew_enrollment_leases(
            session, "w1", [ids[0]], now=now + LEASE / 2, lease_for=LEASE
        )
    assert kept == {ids[0]}
    later = now + LEASE + timedelta(seconds=1)
    with store.session() as session:
        taken = claim_enrollments(
            session, "w2", now=later, limit=10, tenant_id="default", lease_for=LEASE
        )
    assert [row.id for row in taken] == ids[1:]
    assert all(row.lease_owner == "w2" for row in taken)

    # w1 wakes up and tries to write all three: only the one it still holds is written.
    updates = [EnrollmentUpdate(id=i, node="sent", due_at=later + timedelta(days=2)) for i in ids]
    with store.session() as session:
        lost = update_enrollments(session, "w1", updates, now=later)
    assert lost == ids[1:]
    with store.session() as session:
        rows = {row.id: row for row in session.scalars(select(Enrollment))}
    assert rows[ids[0]].node == "sent" and rows[ids[0]].lease_owner is None
    assert rows[ids[1]].node == "start" and rows[ids[1]].lease_owner == "w2"

    # w2 finishes its two rows.
    done = [EnrollmentUpdate(id=i, status=EnrollmentStatus.COMPLETED, node=None) for i in ids[1:]]
    with store.session() as session:
        assert update_enrollments(session, "w2", done, now=later) == []
    with store.session() as session:
        statuses = {row.id: row.status for row in session.scalars(select(Enrollment))}
    assert statuses == {ids[0]: "active", ids[1]: "completed", ids[2]: "completed"}


def test_release_makes_rows_claimable_at_once(store: Store, seed: SeedEnrollments) -> None:
    ids = seed(2)
    now = T0 + timedelta(seconds=5)
    with store.session() as session:
        claim_enrollments(session, "w1", now=now, limit=10, tenant_id="default", lease_for=LEASE)
    with store.session() as session:
        assert release_enrollments(session, "w2", ids) == 0  # not w2's to release
        assert release_enrollments(session, "w1", ids) == 2
    with store.session() as session:
        again = claim_enrollments(
            session, "w2", now=now, limit=10, tenant_id="default", lease_for=LEASE
        )
    assert [row.id for row in again] == ids


def test_claims_can_be_limited_to_one_tenant(store: Store, seed: SeedEnrollments) -> None:
    seed(2, tenant_id="acme")
    other = seed(2, tenant_id="globex")
    now = T0 + timedelta(minutes=1)
    with store.session() as session:
        claimed = claim_enrollments(
            session, "w1", now=now, limit=10, lease_for=LEASE, tenant_id="globex"
        )
    assert [row.id for row in claimed] == other
    assert {row.tenant_id for row in claimed} == {"globex"}


def test_concurrent_owners_never_claim_the_same_row(
    store_url: str, store: Store, seed: SeedEnrollments
) -> None:
    ids = seed(200)
    now = T0 + timedelta(hours=1)
    seen: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        worker_store = Store.open(store_url, migrate=False)
        got: list[int] = []
        try:
            while True:
                with worker_store.session() as session:
                    batch = claim_enrollments(
                        session, owner, now=now, limit=7, tenant_id="default", lease_for=LEASE
                    )
                    if not batch:
                        break
                    got.extend(row.id for row in batch)
                    update_enrollments(
                        session,
                        owner,
                        [EnrollmentUpdate(id=row.id, status="completed") for row in batch],
                        now=now,
                    )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            seen[owner] = got
            worker_store.close()

    threads = [threading.Thread(target=worker, args=(new_owner_id(f"w{i}"),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    claimed = [row_id for got in seen.values() for row_id in got]
    assert sorted(claimed) == ids  # every row once, none twice


def test_async_store_runs_claims_in_worker_threads(store: Store, seed: SeedEnrollments) -> None:
    ids = seed(3)

    async def main() -> list[int]:
        astore = AsyncStore(store)
        rows = await astore.transaction(
            claim_enrollments, "w1", now=T0 + timedelta(minutes=1), limit=10,
            tenant_id="default", lease_for=LEASE,
        )  # fmt: skip
        tenants = await astore.call(Store.tenant_ids)
        assert tenants == ["default"]
        return [row.id for row in rows]

    assert trio.run(main) == ids


def test_new_owner_ids_are_unique() -> None:
    assert new_owner_id() != new_owner_id()
    assert new_owner_id("dispatch").startswith("dispatch:")


def test_updates_write_json_state_history_and_nulls(store: Store, seed: SeedEnrollments) -> None:
    ids = seed(3)
    now = T0 + timedelta(minutes=1)
    with store.session() as session:
        claim_enrollments(session, "w1", now=now, limit=10, tenant_id="default", lease_for=LEASE)
    updates = [
        EnrollmentUpdate(
            id=ids[0],
            node="split_1",
            state={"variant": "a", "score": 1.5},
            history=[{"node": "start", "at": "2026-12-01T09:00:00Z"}],
            attempts=2,
        ),
        EnrollmentUpdate(id=ids[1], node="split_1", state={}, history=[], attempts=0),
        EnrollmentUpdate(id=ids[2], status=EnrollmentStatus.EXITED, node=None, due_at=None),
    ]
    with store.session() as session:
        assert update_enrollments(session, "w1", updates, now=now) == []
    with store.session() as session:
        rows = {row.id: row for row in session.scalars(select(Enrollment))}
    first, second, third = rows[ids[0]], rows[ids[1]], rows[ids[2]]
    assert (first.node, first.state, first.attempts) == (
        "split_1",
        {"variant": "a", "score": 1.5},
        2,
    )
    assert first.history == [{"node": "start", "at": "2026-12-01T09:00:00Z"}]
    assert (second.state, second.history, second.updated_at) == ({}, [], now)
    assert (third.status, third.node, third.due_at) == ("exited", None, None)
    assert all(row.lease_owner is None and row.lease_expires_at is None for row in rows.values())


def test_a_cohort_setting_the_same_values_is_written_together_with_the_rest(
    store: Store, seed: SeedEnrollments
) -> None:
    """Twenty rows moving alike share one statement; the odd ones out keep their own values."""
    ids = seed(24)
    now = T0 + timedelta(minutes=1)
    later = T0 + timedelta(days=2)
    with store.session() as session:
        claim_enrollments(session, "w1", now=now, limit=30, tenant_id="default", lease_for=LEASE)
    cohort, odd = ids[:20], ids[20:]
    state = {"arrived": ["wait_2d", now.isoformat(), later.isoformat()], "sends": 1}
    updates = [
        EnrollmentUpdate(id=i, node="wait_2d", due_at=later, state=state, history=[["a", 1]])
        for i in cohort
    ]
    updates += [
        EnrollmentUpdate(id=odd[0], node="end", due_at=None, state={"sends": 2}),
        EnrollmentUpdate(id=odd[1], node="wait_2d", due_at=now, state=state, history=[["b"]]),
        EnrollmentUpdate(id=odd[2], status=EnrollmentStatus.EXITED, node=None, due_at=None),
        EnrollmentUpdate(id=odd[3], node="wait_2d", due_at=later, state={**state, "sends": 3}),
    ]
    with store.session() as session:
        assert update_enrollments(session, "w1", updates, now=now) == []
    with store.session() as session:
        rows = {row.id: row for row in session.scalars(select(Enrollment))}
    assert [(rows[i].node, rows[i].due_at, rows[i].history) for i in cohort] == [
        ("wait_2d", later, [["a", 1]])
    ] * len(cohort)
    assert all(rows[i].state == state for i in cohort)
    assert (rows[odd[0]].node, rows[odd[0]].due_at, rows[odd[0]].state) == (
        "end",
        None,
        {"sends": 2},
    )
    assert (rows[odd[1]].due_at, rows[odd[1]].history) == (now, [["b"]])
    assert (rows[odd[2]].status, rows[odd[2]].node) == ("exited", None)
    assert rows[odd[3]].state == {**state, "sends": 3}
    assert all(row.lease_owner is None and row.updated_at == now for row in rows.values())


def test_stepped_enrollments_are_written_by_group(store: Store, seed: SeedEnrollments) -> None:
    """A cohort's shared values land on each of its rows; a small group's on its own rows."""
    ids = seed(23)
    now = T0 + timedelta(minutes=1)
    later = T0 + timedelta(days=2)
    with store.session() as session:
        claim_enrollments(session, "w1", now=now, limit=30, tenant_id="default", lease_for=LEASE)
    state = RawJSON('{"sends": 1}')
    moved = {
        ("wait_2d", "active", later, state, RawJSON('[["a", "wait_2d", "wait"]]')): ids[:20],
        ("end", "completed", None, RawJSON("{}"), RawJSON('[["b", null, "done"]]')): ids[20:],
    }
    with store.session() as session:
        write_stepped_enrollments(session, moved, now=now)
    with store.session() as session:
        rows = {row.id: row for row in session.scalars(select(Enrollment))}
    assert {(rows[i].node, rows[i].status, rows[i].due_at) for i in ids[:20]} == {
        ("wait_2d", "active", later)
    }
    assert all(rows[i].state == {"sends": 1} for i in ids[:20])
    assert all(rows[i].history == [["a", "wait_2d", "wait"]] for i in ids[:20])
    assert {(rows[i].node, rows[i].status, rows[i].due_at) for i in ids[20:]} == {
        ("end", "completed", None)
    }
    assert all(rows[i].history == [["b", None, "done"]] for i in ids[20:])
    assert all(
        (row.lease_owner, row.attempts, row.updated_at) == (None, 0, now) for row in rows.values()
    )


def test_the_priority_migration_ranks_existing_enrollments_by_their_version(
    database_url: str,
) -> None:
    """Enrollments made before 0007 take their version's priority when it runs."""
    from cadence.engine.migrations import upgrade
    from cadence.engine.store.campaigns import enroll_contacts, save_campaign_version
    from cadence.engine.store.importer import upsert_contact_dicts

    with Store.open(database_url) as store:
        upsert_contact_dicts(store, [{"id": "c1"}, {"id": "c2"}])
        with store.session() as session:
            urgent, plain = (
                save_campaign_version(
                    session, "default", name, compiled=compiled, content_hash=name, now=T0
                ).version_id
                for name, compiled in (("urgent", {"settings": {"priority": 9}}), ("plain", {}))
            )
            for version in (urgent, plain):
                enroll_contacts(
                    session, "default", version, ["c1", "c2"], node="n", due_at=T0, now=T0,
                    priority=1,
                )  # fmt: skip
        downgrade(store.engine, "0006_outbox_channel_time_index")
        upgrade(store.engine)
        with store.session() as session:
            ranks = session.execute(select(Enrollment.version_id, Enrollment.priority_rank)).all()
    assert sorted(ranks) == sorted([(urgent, -9)] * 2 + [(plain, -5)] * 2)
