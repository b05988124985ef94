"""Fault injection for crash tests: the Nth database statement, commit or provider call dies.

`Faults` attaches to one store's SQLAlchemy engine and counts what the engine does there;
armed with a point (`FaultPoint("statement", 12)`), it raises `InjectedCrash` at that
point, as a process killed there would stop. `"statement"` fails before the statement
runs (its transaction rolls back); `"commit"` commits the transaction, then fails (the
process died before it learnt the commit went through); `"provider"` fails a sink's Nth
delivery after the provider took the first half of that call's messages (the answer was
lost). Two more are failures the engine meets alive and retries (`AsyncStore.call_retrying`):
`"transient"` fails the statement as a deadlock or a busy SQLite file does, and
`"lost_commit"` commits, then fails as a connection lost before the commit's answer does.
The harness in `test_fault_injection.py` sweeps these points over a campaign and
compares each crashed-and-restarted run with a clean one.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from cadence.engine.runtime import DeliveryResult, OutgoingMessage

Kind = Literal["statement", "commit", "provider", "transient", "lost_commit"]
# The kinds that kill the process; the others are failures the engine retries itself.
CRASHES: tuple[Kind, ...] = ("statement", "commit", "provider")


class InjectedCrash(RuntimeError):
    """The failure a test injected: the process died here."""


class InjectedTransient(OperationalError):
    """A transient failure a test injected (a read that does not retry passes it on, as a
    request's answer, and the client asks again)."""


@dataclass(frozen=True)
class FaultPoint:
    """Where to die: the `at`-th (1-based) statement, commit or provider call."""

    kind: Kind
    at: int

    def __str__(self) -> str:
        return f"{self.kind}#{self.at}"


def statement_kind(statement: str) -> str:
    """A statement's verb and table (`UPDATE enrollments`, `SELECT send_outbox`, `BEGIN`)."""
    words = statement.replace("(", " ").replace(",", " ").split()
    verb = words[0].upper() if words else ""
    after = {"INSERT": "INTO", "UPDATE": "", "DELETE": "FROM", "SELECT": "FROM"}.get(verb)
    if after is None:
        return verb
    if verb == "UPDATE":
        return f"UPDATE {words[1]}"
    upper = [w.upper() for w in words]
    if after in upper:
        table = words[upper.index(after) + 1].strip('"')
        return f"{verb} {table}"
    return verb


@dataclass
class Faults:
    """Counts statements, commits and provider calls; raises at the armed point."""

    point: FaultPoint | None = None
    counts: Counter[str] = field(default_factory=Counter)
    kinds: list[str] = field(default_factory=list)  # each statement's kind, in order
    fired: bool = False
    attached: bool = False  # provider calls count only while the store is watched

    def attach(self, engine: SqlEngine) -> None:
        """Watch (and fail) this SQLAlchemy engine's statements and commits."""
        event.listen(engine, "before_cursor_execute", self._before_statement)
        event.listen(engine, "commit", self._commit)
        self.attached = True

    def detach(self, engine: SqlEngine) -> None:
        """Stop watching `engine`."""
        event.remove(engine, "before_cursor_execute", self._before_statement)
        event.remove(engine, "commit", self._commit)
        self.attached = False

    def _hit(self, kind: Kind, *also: Kind) -> Kind | None:
        """Count a `kind` event (which `also` counts as); the kind to fail as, if armed."""
        hit: Kind | None = None
        for name in (kind, *also):
            self.counts[name] += 1
            if (
                not self.fired
                and self.point is not None
                and (self.point.kind, self.point.at) == (name, self.counts[name])
            ):
                hit = name
        self.fired |= hit is not None
        return hit

    def _before_statement(self, conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.kinds.append(statement_kind(statement))
        hit = self._hit("statement", "transient")
        if hit == "statement":
            raise InjectedCrash(f"died before statement {self.counts['statement']}: {statement}")
        if hit == "transient":
            raise _transient(conn.dialect.name, statement)

    def _commit(self, connection: Any) -> None:
        hit = self._hit("commit", "lost_commit")
        if hit is None:
            return
        # SQLAlchemy fires this before it commits: commit first, then fail, so the
        # transaction is in the database and the caller never hears of it.
        connection.connection.dbapi_connection.commit()
        if hit == "commit":
            raise InjectedCrash(f"died after commit {self.counts['commit']}")
        raise _transient(connection.dialect.name, "COMMIT")

    def provider_call(self, messages: Sequence[OutgoingMessage]) -> tuple[int, bool]:
        """How many of this delivery's messages the provider takes, and whether the call
        then dies (the armed call: the provider took the first half, the answer is lost)."""
        if self.attached and self._hit("provider") is not None:
            return len(messages) // 2, True
        return len(messages), False


def _transient(dialect: str, statement: str) -> InjectedTransient:
    """The driver's failure that `store.transient.is_transient` says to run again."""
    cause: Exception = (
        sqlite3.OperationalError("database is locked")
        if dialect == "sqlite"
        else psycopg.errors.ConnectionFailure("server closed the connection unexpectedly")
    )
    return InjectedTransient(statement, {}, cause)


@dataclass
class ProviderRecord:
    """A provider stand-in in process: every message it took, with the engine life that
    handed it over, deduplicated by idempotency key as Brevo and Infobip's lookups do."""

    taken: list[tuple[int, OutgoingMessage]] = field(default_factory=list)
    life: int = 0


@dataclass
class FaultySink:
    """A sink over a `ProviderRecord` whose armed provider call dies part-way."""

    record: ProviderRecord
    faults: Faults

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Hand messages to the provider; raise when the armed call dies."""
        took, dies = self.faults.provider_call(messages)
        self.record.taken.extend((self.record.life, m) for m in messages[:took])
        if dies:
            raise InjectedCrash(f"died in provider call {self.faults.counts['provider']}")
        return [
            DeliveryResult(m.outbox_id, True, "standin", f"sa-{m.idempotency_key[:16]}")
            for m in messages
        ]


def sample_points(faults: Faults, *, seed: int) -> list[FaultPoint]:
    """One statement of each kind, and one point of every other kind, drawn with `seed`
    from a clean run's `faults`: a sweep of every point takes minutes, and CI has seconds."""
    rng = random.Random(seed)
    where: dict[str, list[int]] = {}
    for index, kind in enumerate(faults.kinds, start=1):
        where.setdefault(kind, []).append(index)
    chosen = [FaultPoint("statement", rng.choice(places)) for places in where.values()]
    for other in ("commit", "provider", "transient", "lost_commit"):
        count = faults.counts[other]
        chosen += [FaultPoint(other, rng.randint(1, count))] if count else []
    return sorted(chosen, key=lambda point: (point.kind, point.at))
