"""The store's own floor under the dry-run benchmark: its statements, with no engine around them.

`test_bench_dryrun` runs the issue's 10-node campaign through the whole engine. Every wake
there must lock its due enrollments, move them on, and for a send insert an outbox row
(stored sent, as the engine stores an in-process sink's sends) and log it, because a
simulated send is stored exactly as a real one is.
`store_floor` issues just those statements on the engine's own schema (in-memory SQLite,
the same indexes and foreign keys), in the dry-run's batch size, with the rows' values
made up front: what is left of a dry-run when every line of Python between the statements
is gone. The ratio of the two says how much of a run is the engine's Python.
It leaves out what the engine also does (facts, gates, simulated opens and clicks, the
report), so it is a lower bound, not an estimate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time

from sqlalchemy.engine.interfaces import DBAPICursor

from cadence.engine.dryrun import DRY_RUN_BATCH
from cadence.engine.store import Store

BATCH = DRY_RUN_BATCH
START = dt.datetime(2026, 12, 1, 9, 0)
# (day of the wake, whether it sends, days to the next wake or None at the exit)
WAKES = ((0, True, 2), (2, True, 3), (5, True, 5), (10, True, 1), (11, False, None))
OUTBOX_COLUMNS = (
    "tenant_id", "idempotency_key", "enrollment_id", "version_id", "node", "contact_id",
    "channel", "template", "payload", "status", "attempts", "next_attempt_at", "created_at",
    "updated_at", "sent_at", "provider",
)  # fmt: skip


def _at(day: int) -> str:
    """A day of the run as SQLite stores UTC timestamps."""
    return (START + dt.timedelta(days=day)).isoformat(sep=" ")


def store_floor(contacts: int) -> float:
    """Seconds (wall, as the benchmark times the engine) the store's statements take."""
    with Store.open("sqlite://") as store:
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            version = _seed(cursor, contacts)
            raw.commit()
            started = time.perf_counter()
            for wake, (day, sends, gap) in enumerate(WAKES):
                while _step_batch(cursor, version, wake, day, sends, gap):
                    raw.commit()
            return time.perf_counter() - started
        finally:
            raw.close()


def _seed(cursor: DBAPICursor, contacts: int) -> int:
    """The tenant, contacts, one active campaign version and its enrollments, all due now."""
    execute = cursor.execute
    executemany = cursor.executemany
    now = _at(0)
    execute(
        "INSERT INTO tenants (id, name, created_at, updated_at)"
        " VALUES ('default', 'default', ?, ?)",
        (now, now),
    )
    executemany(
        "INSERT INTO contacts (tenant_id, id, email, first_name, timezone, attributes, tags,"
        " created_at, updated_at) VALUES ('default', ?, ?, ?, 'Europe/Berlin', '{}', '[]', ?, ?)",
        [(f"c{i}", f"c{i}@example.test", f"N{i}", now, now) for i in range(contacts)],
    )
    execute(
        "INSERT INTO campaigns (tenant_id, name, display_name, status, created_at, updated_at)"
        " VALUES ('default', 'ten', 'ten', 'active', ?, ?)",
        (now, now),
    )
    campaign = execute("SELECT id FROM campaigns").fetchone()[0]
    execute(
        "INSERT INTO campaign_versions (tenant_id, campaign_id, content_hash, compiled,"
        " created_at) VALUES ('default', ?, 'floor', '{}', ?)",
        (campaign, now),
    )
    version = int(execute("SELECT id FROM campaign_versions").fetchone()[0])
    executemany(
        "INSERT INTO enrollments (tenant_id, version_id, contact_id, occurrence, node, status,"
        " due_at, attempts, state, history, created_at, updated_at)"
        " VALUES ('default', ?, ?, 0, 'w0', 'active', ?, 0, '{}', '[]', ?, ?)",
        [(version, f"c{i}", now, now, now) for i in range(contacts)],
    )
    return version


def _step_batch(
    cursor: DBAPICursor, version: int, wake: int, day: int, sends: bool, gap: int | None
) -> bool:
    """One batch of one wake, as the engine writes it; False when none is due."""
    execute = cursor.execute
    now = _at(day)
    rows = execute(
        "SELECT id, contact_id FROM enrollments WHERE tenant_id = 'default' AND status = 'active'"
        " AND due_at <= ? ORDER BY due_at, priority_rank, id LIMIT ?",
        (now, BATCH),
    ).fetchall()
    if not rows:
        return False
    execute(
        "UPDATE enrollments SET node = ?, status = ?, due_at = ?, state = '{}', history = '[]',"
        " updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
        (
            f"w{wake + 1}", "active" if gap else "exited", _at(day + gap) if gap else None, now,
            json.dumps([row[0] for row in rows]),
        ),
    )  # fmt: skip
    if not sends:
        return True
    values = [
        (
            "default", hashlib.sha256(f"{version}:{wake}:{contact}".encode()).hexdigest()[:40],
            enrollment, version, f"send_{wake}", contact, "email", f"t{wake}",
            '{"campaign": "ten"}', "sent", 1, now, now, now, now, "dry-run",
        )
        for enrollment, contact in rows
    ]  # fmt: skip
    marks = "(" + ", ".join("?" for _ in OUTBOX_COLUMNS) + ")"
    inserted = execute(
        f"INSERT INTO send_outbox ({', '.join(OUTBOX_COLUMNS)})"
        f" VALUES {', '.join(marks for _ in values)}"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        [value for row in values for value in row],
    ).fetchall()
    ids = json.dumps([row[0] for row in inserted])
    execute(
        "INSERT INTO send_log (tenant_id, outbox_id, contact_id, channel, at, outcome, provider,"
        " detail) SELECT tenant_id, id, contact_id, channel, ?, 'sent', 'dry-run', '{}'"
        " FROM send_outbox WHERE id IN (SELECT value FROM json_each(?))",
        (now, ids),
    )
    return True
