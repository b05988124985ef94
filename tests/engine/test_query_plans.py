"""Every statement the engine runs reads the large tables through a bounding index (SQLite).

A store with realistic volume (thousands of contacts, enrollments in every status, sent and
logged sends, events, suppressions) runs representative work: a drip with caps, a budget,
a goal, `if opened(...)` and `wait for`; an A/B split; segment entry; an event trigger;
`on contact_created`. Every SQL statement is captured and explained on the same file with
its parameters. A large table read with a full SCAN, or through an index that does not use
the statement's most selective condition (an id, contact, version ... equality or IN list),
fails the test, naming the statement and the plan.

SQLite only, on purpose: the store keeps no ANALYZE statistics there, so its planner picks an
index from the schema alone and can pick a poor one whatever the data (the bug this guards
against: the `(tenant_id, status, due_at)` index chosen over a contact IN list, scanning
every active enrollment per batch). PostgreSQL plans by cost from statistics: at test volume
a sequential scan of a few thousand rows is often its cheapest correct plan, and the same
statement gets an index scan at production volume, so its plans here would fail on noise
and pass on real problems alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import event
from sqlalchemy.engine import Engine as SAEngine

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.bulk import insert_rows
from cadence.engine.store.models import (
    Campaign,
    CampaignVersion,
    Contact,
    Enrollment,
    Event,
    OutboxMessage,
    SendLog,
    Suppression,
)

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
TENANT = "default"
CONTACTS = 3000

# The tables that grow with the audience and its history.
LARGE_TABLES = frozenset({"contacts", "events", "enrollments", "send_outbox", "send_log"})
# Per large table, the columns that pick out few rows: an equality or IN list on one of them
# is the condition an index must use. The rest (tenant, status, channel, name, node ...)
# match a large share of the table.
SELECTIVE = {
    "contacts": {"id", "email", "phone"},
    "events": {"id", "contact_id", "dedupe_key"},
    "enrollments": {"id", "contact_id", "version_id"},
    "send_outbox": {
        "id",
        "contact_id",
        "version_id",
        "enrollment_id",
        "idempotency_key",
        "provider_message_id",
    },
    "send_log": {"id", "contact_id", "outbox_id"},
}
# An upper bound on a due time bounds the rows to the work due now (the claims, with LIMIT);
# a lower bound (`due_at > now`: everything still asleep) does not.
_DUE_BOUND = re.compile(r"\b(due_at|next_attempt_at)<")
# Both bounds on an instant: a stretch of time (the segment sweep's window edges), whose rows
# are the few with a data point in it.
_STRETCH = re.compile(r"\b(at|created_at)>\?? AND \1<")


@dataclass(frozen=True)
class Allowed:
    """A statement allowed to read a large table in full: (table, SQL pattern) and why."""

    table: str
    pattern: str
    reason: str


# Statements that legitimately read a whole table (or a whole tenant's rows of it). Each is
# a regular expression that must match the whole SQL; keep it specific and the reason honest.
ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "contacts",
        r"SELECT contacts\.id \nFROM contacts \nWHERE contacts\.tenant_id = \?"
        r"( ORDER BY contacts\.id)?",
        "audiences with no candidates (launch, fan-out) and contact_ids() list every contact",
    ),
    Allowed(
        "enrollments",
        r"SELECT min\(enrollments\.due_at\) AS min_1 \nFROM enrollments \n"
        r"WHERE enrollments\.tenant_id = \? AND enrollments\.status = \?",
        "next_due: min() over the (tenant_id, status, due_at) index reads its first entry",
    ),
    Allowed(
        "send_outbox",
        r"SELECT min\(CASE WHEN \(send_outbox\.lease_expires_at > send_outbox\.next_attempt_at\)"
        r" THEN send_outbox\.lease_expires_at ELSE send_outbox\.next_attempt_at END\) AS min_1"
        r" \nFROM send_outbox \nWHERE send_outbox\.status = \? AND send_outbox\.tenant_id = \?",
        "next_due: when a pending send can be claimed (its lease's end, if later) reads the"
        " tenant's pending sends, the work in flight, never the sent history",
    ),
    # Migration 0015 (text in NFC) reads each of these tables once, page by page in key
    # order, when a store is upgraded to it: the test's store is.
    Allowed(
        "contacts",
        r"SELECT tenant_id, id, CAST\(first_name AS TEXT\), CAST\(last_name AS TEXT\),"
        r" CAST\(attributes AS TEXT\), CAST\(tags AS TEXT\) FROM contacts WHERE 1 = 1"
        r"( AND \(tenant_id, id\) > \(\?, \?\))? ORDER BY tenant_id, id LIMIT \?",
        "migration 0015 composes every contact's text once, page by page",
    ),
    Allowed(
        "events",
        r"SELECT id, CAST\(name AS TEXT\), CAST\(properties AS TEXT\) FROM events"
        r" WHERE 1 = 1( AND id > \?)? ORDER BY id LIMIT \?",
        "migration 0015 composes every event's text once, page by page",
    ),
    Allowed(
        "enrollments",
        r"SELECT id, CAST\(state AS TEXT\) FROM enrollments"
        r" WHERE status IN \('active', 'paused'\)( AND id > \?)? ORDER BY id LIMIT \?",
        "migration 0015 composes the event each unfinished enrollment keeps, once",
    ),
    Allowed(
        "contacts",
        r"SELECT contacts\.id, CAST\(JSON_EXTRACT\(contacts\.attributes, \?\) AS VARCHAR\) "
        r"AS anon_1 \nFROM contacts \nWHERE contacts\.tenant_id = \?",
        "segment sweep of `ATTRIBUTE within D`: one JSON attribute, which no index orders",
    ),
)

SOURCE = """
segment hot = count(pricing_viewed, 7d) >= 2 or lead_score >= 95
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
template c email { subject "C" body "x" }
campaign drip {
  cap email 3 per 7d
  goal converted
  budget 1000 USD
  cost email 0.001 USD
  audience lead_score >= 40
  on launch {
    send email a
    wait 1d
    if opened(a) { send email b } else { send email c }
    wait for clicked(b) up to 2d
    send email c
  }
}
campaign abtest {
  audience lead_score < 40
  on launch {
    split 20% test winner by opens after 4h {
      a: send email a
      b: send email b
    }
  }
}
campaign hot_leads { on segment_enter hot { send email a } }
campaign viewed { reenter always  when pricing_viewed { send email b } }
campaign newcomers {
  on contact_created {
    send email a  tag add "new"  wait 1d  assign agent round_robin  send email b
  }
}
campaign listings {
  reenter always
  when listed for contacts where contact.lead_score >= event.min_score { send email c }
}
campaign weekly { exclude received(email, 1d)  every wednesday 09:00 local { send email a } }
segment trial_ending = contact.trial_ends within 1d
campaign trials { on segment_enter trial_ending { send email a } }
"""

LEGACY = """
template old email { subject "Old" body "x" }
campaign legacy { on launch { send email old  wait 90d  send email old } }
"""


def _seed_history(url: str) -> None:
    """A tenant with contacts and the history of an older campaign: every table large."""
    rng = random.Random(7)
    ids = [f"c{i}" for i in range(CONTACTS)]
    with Store.open(url) as store:
        store.ensure_tenant(TENANT, now=T0)
        with store.session() as session:
            insert_rows(
                session,
                Contact.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": TENANT, "id": cid, "email": f"{cid}@example.test",
                        "first_name": cid.upper(), "timezone": "UTC",
                        "attributes": {
                            "lead_score": rng.randrange(100),
                            "trial_ends": (T0 + dt.timedelta(hours=rng.randrange(-48, 96)))
                            .isoformat(),
                        },
                        "tags": [],
                        "created_at": T0, "updated_at": T0,
                    }
                    for cid in ids
                ],
            )  # fmt: skip
            campaign = Campaign(
                tenant_id=TENANT, name="legacy", display_name="legacy", status="completed",
                created_at=T0, updated_at=T0,
            )  # fmt: skip
            session.add(campaign)
            session.flush()
            (legacy,) = compile_workspace(load_text(LEGACY, "legacy.cadence"))
            version = CampaignVersion(
                tenant_id=TENANT, campaign_id=campaign.id, content_hash=legacy.version,
                compiled=legacy.to_data(), created_at=T0,
            )  # fmt: skip
            session.add(version)
            session.flush()
            past = T0 - dt.timedelta(days=30)
            statuses = ["completed", "exited", "active", "paused", "failed", "cancelled"]
            insert_rows(
                session,
                Enrollment.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": TENANT, "version_id": version.id, "contact_id": cid,
                        "occurrence": 0, "node": "n1", "status": statuses[i % len(statuses)],
                        "due_at": T0 + dt.timedelta(days=60), "attempts": 0, "state": {},
                        "history": [], "created_at": past, "updated_at": past,
                    }
                    for i, cid in enumerate(ids)
                ],
            )  # fmt: skip
            insert_rows(
                session,
                OutboxMessage.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": TENANT, "idempotency_key": f"old:{n}:{cid}",
                        "version_id": version.id, "node": f"n{n}", "contact_id": cid,
                        "channel": "email", "template": "old", "variant": None, "payload": {},
                        "status": "sent", "attempts": 1, "created_at": past,
                        "updated_at": past, "sent_at": past,
                    }
                    for n in range(2)
                    for cid in ids
                ],
            )  # fmt: skip
            insert_rows(
                session,
                SendLog.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": TENANT, "contact_id": cid, "channel": "email",
                        "at": past, "outcome": "sent", "detail": {},
                    }
                    for n in range(2)
                    for cid in ids
                ],
            )  # fmt: skip
            insert_rows(
                session,
                Event.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": TENANT, "contact_id": cid, "name": name,
                        "at": past + dt.timedelta(hours=n), "properties": {},
                        "received_at": past,
                    }
                    for n, name in enumerate(["opened", "clicked", "page_viewed"])
                    for cid in ids
                ],
            )  # fmt: skip
            insert_rows(
                session,
                Suppression.__table__,  # type: ignore[arg-type]
                [
                    {
                        "tenant_id": TENANT, "channel": "email", "address": f"{cid}@example.test",
                        "contact_id": cid, "reason": "bounced", "created_at": past,
                        "expires_at": None,
                    }
                    for cid in ids[::50]
                ],
            )  # fmt: skip


class _MixedSink(RecordingSink):
    """Half the sends come back with a provider id (recorded row by row), half without
    (recorded by group in SQL, as a dry-run's are): both paths' statements are explained."""

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Accept every message as Brevo; only even outbox ids get a provider message id."""
        results = await super().deliver(messages)
        return [
            dataclasses.replace(r, provider="brevo", provider_message_id=_brevo_id(r.outbox_id))
            if r.outbox_id % 2 == 0
            else dataclasses.replace(r, provider_message_id=None)
            for r in results
        ]


def _brevo_id(outbox_id: int) -> str:
    return f"<202612010900.{outbox_id:011d}@smtp-relay.mailin.fr>"


def _webhooks(sink: RecordingSink, now: dt.datetime) -> list[tuple[str, Any]]:
    """Brevo reports on some sends (by message id and by X-Mailin-custom), Infobip replies."""
    stamp = int(now.timestamp())
    brevo = [
        {"event": event, "email": f"{m.contact_id}@example.test", "ts_event": stamp,
         "X-Mailin-custom": str(m.outbox_id),
         **({"message-id": _brevo_id(m.outbox_id)} if m.outbox_id % 2 == 0 else {})}
        for m in sink.delivered[:40]
        for event in ("delivered", "unique_opened", "hard_bounce")
    ]  # fmt: skip
    infobip = {
        "results": [
            {"messageId": f"mo-{n}", "from": "4915100000001", "to": "4915199999999",
             "text": "STOP", "receivedAt": now.isoformat()}
            for n in range(3)
        ]
    }  # fmt: skip
    return [("brevo", brevo), ("infobip", infobip)]


def _run_engine(url: str) -> None:
    """Representative work: deploy, launch, events, contact changes, days of steps."""
    campaigns = compile_workspace(load_text(SOURCE, "plans.cadence"))
    clock = SimulatedClock(T0)
    rng = random.Random(11)

    async def main() -> None:
        sink = _MixedSink()
        async with Engine(url, clock=clock, sink=sink, batch_size=500) as engine:
            await engine.deploy(campaigns)
            for campaign in campaigns:
                # Audiences here are above 1,000 contacts: launching needs an approval.
                await engine.approve(campaign.name, by="plans")
                await engine.launch(campaign.name)
            await engine.run_due()
            for hour in range(1, 3 * 24, 8):
                clock.advance_to(T0 + dt.timedelta(hours=hour))
                picked = rng.sample(range(CONTACTS), 60)
                await engine.push_events(
                    [
                        {"contact": f"c{i}", "name": name, "properties": {"template": "a"}}
                        for i in picked
                        for name in ("opened", "clicked", "pricing_viewed", "converted")[
                            : 1 + i % 4
                        ]
                    ]
                )
                await engine.upsert_contacts(
                    [{"id": f"c{i}", "attributes": {"lead_score": 99}} for i in picked[:10]]
                    + [{"id": f"new{hour}-{n}", "email": f"n{hour}-{n}@x.test"} for n in range(5)]
                )
                await engine.run_until(clock.now() + dt.timedelta(hours=8))
                if hour == 17:
                    await engine.push_events(
                        [{"name": "listed", "properties": {"min_score": 97}}]
                        + [
                            {"contact": f"c{i}", "name": "opened", "id": f"hook-{i}"}
                            for i in picked
                        ]
                        # Naming their message: looked up as a send key, then a provider id.
                        + [
                            {
                                "contact": f"c{i}",
                                "name": "clicked",
                                "properties": {"message": f"provider-{i}"},
                            }
                            for i in picked[:5]
                        ]
                    )
                    await engine.pause("drip")
                    await engine.resume("drip")
            await engine.upsert_contacts([{"id": "c1", "phone": "+4915100000001"}])
            for provider, payload in _webhooks(sink, clock.now()):
                await engine.ingest_webhook(provider, payload)
            await engine.cancel("weekly")
            await engine.status()
            await engine.inbox("c1")
            await engine.mark_inbox_read("c1", [1, 2])

    trio.run(main)


@dataclass
class Captured:
    """One distinct statement and the first parameters it ran with."""

    sql: str
    parameters: Sequence[Any]


@pytest.fixture
def captured() -> Iterator[dict[str, Captured]]:
    """Every distinct SQL statement executed on any SQLAlchemy engine meanwhile."""
    seen: dict[str, Captured] = {}

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement not in seen:
            # An executemany passes a list of rows; one execute passes one row.
            rows = parameters if isinstance(parameters, list) else [parameters]
            seen[statement] = Captured(statement, tuple(rows[0] or ()) if rows else ())

    event.listen(SAEngine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(SAEngine, "before_cursor_execute", record)


_STEP = re.compile(r"^(SCAN|SEARCH) (\w+)(?: AS \w+)?(?: USING (.*))?$")
_CONSTRAINT = re.compile(r"\((.*)\)\s*$")


def _columns_constrained(using: str) -> set[str]:
    """The columns an index search constrains, from `INDEX ix (a=? AND b>?)`."""
    found = _CONSTRAINT.search(using)
    if found is None:
        return set()
    return {re.split(r"[=<>]", term.strip())[0] for term in found.group(1).split(" AND ")}


def _selective_in_statement(sql: str, table: str) -> set[str]:
    """The table's selective columns that the statement compares by equality or IN list."""
    found: set[str] = set()
    for column in SELECTIVE[table]:
        name = re.escape(f"{table}.{column}")
        if re.search(rf"{name}\s*(=|IN\b)|=\s*{name}\b", sql):
            found.add(column)
    return found


def _problems(sql: str, plan: list[str], allowed: set[Allowed] | None = None) -> list[str]:
    """What is wrong with how the plan reads the large tables, one line per step.

    Allow-list entries that excuse a step are added to `allowed`.
    """
    problems: list[str] = []
    for detail in plan:
        step = _STEP.match(detail.strip())
        if step is None or step.group(2) not in LARGE_TABLES:
            continue
        kind, table, using = step.group(1), step.group(2), step.group(3) or ""
        wanted = _selective_in_statement(sql, table)
        used = _columns_constrained(using)
        if kind == "SCAN":
            problem = f"full scan of {table}: {detail}"
        elif (
            "rowid" in used
            or "INTEGER PRIMARY KEY" in using
            or _DUE_BOUND.search(using)
            or _STRETCH.search(using)
        ):
            continue
        elif wanted and not used & wanted:
            problem = (
                f"{table} searched on {sorted(used)} while {sorted(wanted)} is given: {detail}"
            )
        elif not wanted and not used & SELECTIVE[table]:
            problem = f"{table} searched on {sorted(used)} only: {detail}"
        else:
            continue
        excuse = next(
            (a for a in ALLOWED if a.table == table and re.fullmatch(a.pattern, sql)), None
        )
        if excuse is None:
            problems.append(problem)
        elif allowed is not None:
            allowed.add(excuse)
    return problems


def _explain(
    path: Path, statements: dict[str, Captured], allowed: set[Allowed]
) -> dict[str, tuple[list[str], list[str]]]:
    """Per statement that reads or writes rows: its plan lines and the problems in them."""
    results: dict[str, tuple[list[str], list[str]]] = {}
    connection = sqlite3.connect(path)
    try:
        for sql, captured in statements.items():
            verb = sql.lstrip().split(None, 1)[0].upper()
            if verb not in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
                continue
            rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", captured.parameters).fetchall()
            plan = [str(row[-1]) for row in rows]
            results[sql] = (plan, _problems(sql, plan, allowed))
    finally:
        connection.close()
    return results


def test_rule_flags_a_status_index_chosen_over_a_contact_list() -> None:
    sql = (
        "SELECT enrollments.id FROM enrollments WHERE enrollments.tenant_id = ? "
        "AND enrollments.contact_id IN (?, ?) AND enrollments.status = ?"
    )
    bad = (
        "SEARCH enrollments USING INDEX ix_enrollments_tenant_id_status_due_at"
        " (tenant_id=? AND status=?)"
    )
    good = (
        "SEARCH enrollments USING INDEX ix_enrollments_tenant_id_contact_id"
        " (tenant_id=? AND contact_id=?)"
    )
    assert _problems(sql, [bad])
    assert not _problems(sql, [good])
    # A lower bound on due_at is everything asleep, not what is due.
    asleep = bad.replace("status=?)", "status=? AND due_at>?)")
    assert _problems(sql, [asleep])
    assert not _problems(
        "UPDATE enrollments SET x=? WHERE enrollments.id IN (SELECT enrollments.id ...)",
        [asleep.replace("due_at>?", "due_at<?")],
    )
    assert _problems("SELECT * FROM send_outbox", ["SCAN send_outbox"])
    # A stretch of time (both bounds) bounds the rows; the tenant alone does not.
    stretch = "SELECT events.contact_id FROM events WHERE events.tenant_id = ? AND ..."
    assert not _problems(
        stretch, ["SEARCH events USING INDEX ix (tenant_id=? AND name=? AND at>? AND at<?)"]
    )
    assert _problems(stretch, ["SEARCH events USING COVERING INDEX ix (tenant_id=?)"])
    assert _problems(stretch, ["SEARCH events USING INDEX ix (tenant_id=? AND name=? AND at>?)"])
    assert not _problems("SELECT * FROM campaigns", ["SCAN campaigns"])


def test_engine_statements_read_large_tables_through_bounding_indexes(
    tmp_path: Path, captured: dict[str, Captured]
) -> None:
    path = tmp_path / "plans.db"
    url = f"sqlite:///{path}"
    _seed_history(url)
    _run_engine(url)
    allowed: set[Allowed] = set()
    explained = _explain(path, captured, allowed)
    touched = {
        table
        for plan, _ in explained.values()
        for line in plan
        for table in LARGE_TABLES
        if re.match(rf"(SCAN|SEARCH) {table}\b", line.strip())
    }
    # The scenario really ran: every large table was read (send_log by the webhooks'
    # duplicate check), and many distinct statements.
    assert touched == LARGE_TABLES and len(explained) > 40
    offenders = [
        f"{sql}\n  plan: {plan}\n  " + "\n  ".join(problems)
        for sql, (plan, problems) in explained.items()
        if problems
    ]
    assert not offenders, "statements reading large tables without a bounding index:\n\n" + (
        "\n\n".join(offenders)
    )
    # Every allow-list entry still excuses a statement the engine runs: none is stale.
    assert allowed == set(ALLOWED), f"unused allow-list entries: {set(ALLOWED) - allowed}"


def test_report_reads_the_logs_rare_outcomes_through_an_index(
    tmp_path: Path, captured: dict[str, Captured]
) -> None:
    """The report reads the `skipped` and `failed` entries of a log of `sent` ones: by an
    index on the outcome, not by walking the tenant's whole log (every dashboard load)."""
    path = tmp_path / "report.db"
    url = f"sqlite:///{path}"
    _seed_history(url)
    with Store.open(url) as store, store.session() as session:
        insert_rows(
            session,
            SendLog.__table__,  # type: ignore[arg-type]
            [
                {
                    "tenant_id": TENANT, "contact_id": f"c{n}", "channel": "email", "at": T0,
                    "outcome": "skipped", "detail": {"campaign": "legacy", "reason": "capped"},
                }
                for n in range(3)
            ],
        )  # fmt: skip

    async def report() -> None:
        async with Engine(url, clock=SimulatedClock(T0), sink=RecordingSink()) as engine:
            (legacy,) = await engine.report()
            assert legacy.not_sent == {"capped": 3}

    captured.clear()
    trio.run(report)
    by_outcome = {
        sql: plan
        for sql, (plan, _) in _explain(path, captured, set()).items()
        if re.search(r"send_log\.outcome = \?", sql)
    }
    assert len(by_outcome) == 2, by_outcome  # skipped, failed
    for sql, plan in by_outcome.items():
        reads = [line for line in plan if re.match(r"(SCAN|SEARCH) send_log\b", line.strip())]
        assert reads and all("outcome=?" in line for line in reads), f"{sql}\n  plan: {plan}"
