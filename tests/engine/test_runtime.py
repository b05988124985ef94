"""The engine end to end on both stores: triggers, steps, lifecycle, restarts, exactly-once."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from cadence.dsl.compiled import CompiledCampaign
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock, as_utc
from cadence.engine.describe import pause_text
from cadence.engine.runtime import (
    LEASE,
    DeliveryResult,
    Engine,
    EngineError,
    OutgoingMessage,
    RecordingSink,
    RunStats,
)
from cadence.engine.store import Store
from cadence.engine.store import sends as send_store
from cadence.engine.store.models import (
    AuditEntry,
    Campaign,
    CampaignVersion,
    Contact,
    Enrollment,
    Event,
    OutboxMessage,
    SendLog,
)
from tests.engine.cadence_cli import run_cadence

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # a Tuesday

CONTACTS = [
    {"id": "c1", "email": "ana@example.test", "first_name": "Ana", "timezone": "UTC",
     "attributes": {"lead_score": 50, "country": "US"}},
    {"id": "c2", "email": "ben@example.test", "first_name": "Ben", "timezone": "America/New_York",
     "attributes": {"lead_score": 10, "country": "CA"}},
    {"id": "c3", "email": "cy@example.test", "first_name": "Cy", "timezone": "Asia/Manila",
     "attributes": {"lead_score": 80, "country": "PH"}},
]  # fmt: skip


def campaigns(source: str) -> list[CompiledCampaign]:
    """Compile source held in the test."""
    return compile_workspace(load_text(source, "t.cadence"))


def engine_run(
    url: str, body: Callable[[Engine, SimulatedClock, RecordingSink], Awaitable[Any]]
) -> Any:
    """Open an engine on `url` with a simulated clock at T0 and run `body` in Trio."""
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def main() -> Any:
        async with Engine(url, clock=clock, sink=sink) as engine:
            return await body(engine, clock, sink)

    return trio.run(main)


def sent(sink: RecordingSink) -> list[tuple[str, str | None]]:
    """(contact, template) of every delivered message, in order."""
    return [(m.contact_id, m.template) for m in sink.delivered]


LAUNCH = """
template hello email { subject "Hello {{ contact.first_name }}" body "<p>Hi</p>" }
campaign hello_all { audience lead_score >= 30  on launch { send email hello } }
"""


def test_launch_enrolls_the_audience_and_sends_once(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(LAUNCH))
        assert await engine.launch("hello_all") == 2
        await engine.run_due()
        await engine.run_due()
        assert sorted(sent(sink)) == [("c1", "hello"), ("c3", "hello")]
        (row,) = await engine.status()
        # A one-time campaign whose every enrollment has finished is completed.
        assert row["status"] == "completed" and row["enrollments"] == {"completed": 2}

    engine_run(store_url, body)


def test_lifecycle_moves_are_checked(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(LAUNCH))
        with pytest.raises(EngineError, match="cannot resume 'hello_all': it is draft"):
            await engine.resume("hello_all")
        with pytest.raises(EngineError, match="did you mean `hello_all`"):
            await engine.launch("hello_al")

    engine_run(store_url, body)


@pytest.mark.parametrize(
    ("new_name", "reason"),
    [
        ("Hello Copy", "is not a campaign name"),
        ("hello-copy", "is not a campaign name"),
        ("", "is not a campaign name"),
        ("h" * 201, "is not a campaign name"),
        ("hello_all", "already exists"),
    ],
)
def test_a_clone_needs_a_name_the_language_can_write(
    store_url: str, new_name: str, reason: str
) -> None:
    """`cadence clone a "Bad Name"` made a campaign no `enroll` or `in_campaign(...)` can
    name and no file can declare; it is refused, and nothing is stored."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(LAUNCH))
        with pytest.raises(EngineError, match=reason):
            await engine.clone("hello_all", new_name)
        assert [row["name"] for row in await engine.status()] == ["hello_all"]
        copy = await engine.clone("hello_all", "hello_copy")
        assert copy.name == "hello_copy" and copy.created

    engine_run(store_url, body)


DRIP = """
template welcome email { subject "Welcome" body "<p>Hi</p>" }
template tips email { subject "Tips" body "<p>Tips</p>" }
template engaged email { subject "Yay" body "<p>x</p>" }
template nudge email { subject "Nudge" body "<p>x</p>" }
campaign welcome_series {
  on contact_created {
    send email welcome
    wait 3d
    send email tips
    wait 4d
    if opened(welcome) { send email engaged } else { send email nudge }
  }
}
"""


def test_drip_runs_on_the_simulated_clock_at_exact_times(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[Any]:
        await engine.deploy(campaigns(DRIP))
        await engine.launch("welcome_series")
        await engine.upsert_contacts(CONTACTS[:2])
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(days=1))
        await engine.push_event(
            {"contact": "c1", "name": "opened", "properties": {"template": "welcome"}}
        )
        timeline: list[Any] = []
        original = sink.deliver

        async def stamped(messages: Any) -> Any:
            timeline.extend((clock.now(), m.contact_id, m.template) for m in messages)
            return await original(messages)

        sink.deliver = stamped  # type: ignore[method-assign]
        await engine.run_until(T0 + dt.timedelta(days=30))
        return timeline

    timeline = engine_run(store_url, body)
    assert timeline == [
        (T0 + dt.timedelta(days=3), "c1", "tips"),
        (T0 + dt.timedelta(days=3), "c2", "tips"),
        (T0 + dt.timedelta(days=7), "c1", "engaged"),
        (T0 + dt.timedelta(days=7), "c2", "nudge"),
    ]


def test_restart_continues_every_enrollment_exactly_once(store_url: str) -> None:
    clock = SimulatedClock(T0)

    async def first_engine() -> None:
        async with Engine(store_url, clock=clock, sink=RecordingSink()) as engine:
            await engine.deploy(campaigns(DRIP))
            await engine.launch("welcome_series")
            await engine.upsert_contacts(CONTACTS)
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(days=3, hours=1))
            # Stops here, in the middle of the 4-day wait for everyone.
            await engine.run_due()

    async def second_engine() -> RecordingSink:
        sink = RecordingSink()
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.run_until(T0 + dt.timedelta(days=30))
        return sink

    trio.run(first_engine)
    sink = trio.run(second_engine)
    assert sorted(sent(sink)) == [("c1", "nudge"), ("c2", "nudge"), ("c3", "nudge")]
    with Store.open(store_url) as store, store.session() as session:
        keys = session.scalars(select(OutboxMessage.idempotency_key)).all()
        assert len(keys) == len(set(keys)) == 9
        statuses = session.scalars(select(Enrollment.status)).all()
        assert statuses == ["completed"] * 3


def test_two_engines_stepping_one_store_at_once_send_everything_once(
    store_url: str,
) -> None:
    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(240)]
    source = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign pair { on launch { send email a  wait 1d  send email b } }
"""
    clock = SimulatedClock(T0)

    async def setup() -> None:
        async with Engine(store_url, clock=clock, sink=RecordingSink(), tenant="pair") as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(source))
            await engine.launch("pair")

    async def both() -> list[RecordingSink]:
        sinks = [RecordingSink(), RecordingSink()]
        async with (
            Engine(store_url, clock=clock, sink=sinks[0], tenant="pair", batch_size=25) as one,
            Engine(store_url, clock=clock, sink=sinks[1], tenant="pair", batch_size=25) as two,
        ):
            for moment in (T0, T0 + dt.timedelta(days=1)):
                clock.advance_to(moment)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(one.run_due)
                    nursery.start_soon(two.run_due)
        return sinks

    trio.run(setup)
    sinks = trio.run(both)
    delivered = [m.idempotency_key for sink in sinks for m in sink.delivered]
    # Which engine sends what is up to the locks: on SQLite one may hold the write lock
    # for every batch while the other waits, so only the union is asserted.
    assert len(delivered) == len(set(delivered)) == 2 * len(people)
    assert sorted(sent(sinks[0]) + sent(sinks[1])) == sorted(
        [(p["id"], "a") for p in people] + [(p["id"], "b") for p in people]
    )


def test_a_crashed_worker_s_claim_is_taken_over_after_its_lease(store_url: str) -> None:
    clock = SimulatedClock(T0)

    async def crash_after_claim() -> None:
        async with Engine(store_url, clock=clock, owner="doomed") as engine:
            await engine.deploy(campaigns(LAUNCH))
            await engine.upsert_contacts(CONTACTS)
            await engine.launch("hello_all")

            def claim_only(store: Store) -> int:
                from cadence.engine.store import claims

                with store.session() as session:
                    return len(
                        claims.claim_enrollments(
                            session, "doomed", now=clock.now(), limit=100,
                            tenant_id="default", lease_for=dt.timedelta(minutes=5),
                        )
                    )  # fmt: skip

            assert await engine.store.call(claim_only) == 2

    async def survivor(advance: dt.timedelta) -> RecordingSink:
        sink = RecordingSink()
        clock.advance_to(T0 + advance)
        async with Engine(store_url, clock=clock, sink=sink, owner="survivor") as engine:
            await engine.run_due()
        return sink

    trio.run(crash_after_claim)
    assert sent(trio.run(survivor, dt.timedelta(minutes=1))) == []
    assert sorted(sent(trio.run(survivor, dt.timedelta(minutes=6)))) == [
        ("c1", "hello"),
        ("c3", "hello"),
    ]


@contextlib.contextmanager
def _second_step_fails(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside, the second enrollment a batch steps raises, as a worker dying mid-batch."""
    from cadence.engine import runtime

    # Each enrollment steps through the batch's cohort memo (`cadence.engine.cohort`).
    real_advance = runtime.CohortMemo.advance
    calls = {"n": 0}

    def failing_advance(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker died mid-batch")
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(runtime.CohortMemo, "advance", failing_advance)
    try:
        yield
    finally:
        monkeypatch.setattr(runtime.CohortMemo, "advance", real_advance)


def test_a_batch_that_fails_half_way_writes_nothing_and_runs_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(LAUNCH))
        await engine.launch("hello_all")
        with pytest.raises(RuntimeError, match="mid-batch"), _second_step_fails(monkeypatch):
            await engine.run_due()

        def snapshot(store: Store) -> list[tuple[str, str | None, str, str | None]]:
            with store.session() as session:
                rows = session.execute(
                    select(
                        Enrollment.contact_id,
                        Enrollment.node,
                        Enrollment.status,
                        Enrollment.lease_owner,
                    ).order_by(Enrollment.contact_id)
                ).all()
                assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
            return [tuple(row) for row in rows]  # type: ignore[misc]

        before = await engine.store.call(snapshot)
        # Nothing of the failed batch was written, nothing is leased: both are due again now.
        assert [(cid, status, owner) for cid, _, status, owner in before] == [
            ("c1", "active", None), ("c3", "active", None),
        ]  # fmt: skip
        await engine.run_due()
        assert sorted(sent(sink)) == [("c1", "hello"), ("c3", "hello")]

    engine_run(store_url, body)


class StampSink(RecordingSink):
    """Records (simulated time, contact, template) of every delivery."""

    def __init__(self, clock: SimulatedClock) -> None:
        super().__init__()
        self.clock = clock
        self.stamps: list[tuple[dt.datetime, str, str | None]] = []

    async def deliver(self, messages: Any) -> Any:
        batch: list[OutgoingMessage] = list(messages)
        self.stamps.extend((self.clock.now(), m.contact_id, m.template) for m in batch)
        return await super().deliver(batch)


@dataclass
class PlainSink(RecordingSink):
    """Accepts every send with no provider id of its own, through the outbox lease."""

    provider: str = "plain"

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record the messages as sent by `provider`."""
        self.delivered.extend(messages)
        return [DeliveryResult(m.outbox_id, True, self.provider) for m in messages]


@dataclass
class InProcessSink(PlainSink):
    """The same, declaring that nothing outside the process sees its sends (see `Sink`)."""

    @property
    def in_process_provider(self) -> str:
        """Steps store this sink's sends already sent, then hand them over."""
        return self.provider


PRICED = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign priced {
  cost email 0.001 USD
  on launch { send email a  wait 1d  send email b }
}
"""


def _stored_sends(store_url: str, tenant: str) -> tuple[list[Any], list[Any]]:
    """A tenant's outbox rows and send-log entries, without ids, in the order made."""
    with Store.open(store_url) as store, store.session() as session:
        outbox = session.execute(
            select(
                OutboxMessage.contact_id,
                OutboxMessage.node,
                OutboxMessage.template,
                OutboxMessage.status,
                OutboxMessage.attempts,
                OutboxMessage.provider,
                OutboxMessage.provider_message_id,
                OutboxMessage.lease_owner,
                OutboxMessage.lease_expires_at,
                OutboxMessage.sent_at,
                OutboxMessage.next_attempt_at,
                OutboxMessage.created_at,
                OutboxMessage.updated_at,
                OutboxMessage.error,
                OutboxMessage.payload,
            )
            .where(OutboxMessage.tenant_id == tenant)
            .order_by(OutboxMessage.id)
        ).all()
        log = session.execute(
            select(
                SendLog.contact_id,
                SendLog.channel,
                SendLog.at,
                SendLog.outcome,
                SendLog.provider,
                SendLog.provider_message_id,
                SendLog.cost,
                SendLog.currency,
                SendLog.detail,
                select(OutboxMessage.node)
                .where(OutboxMessage.id == SendLog.outbox_id)
                .scalar_subquery(),
            )
            .where(SendLog.tenant_id == tenant)
            .order_by(SendLog.id)
        ).all()
    return [tuple(row) for row in outbox], [tuple(row) for row in log]


def test_an_in_process_sink_s_sends_are_stored_as_its_delivery_would_record_them(
    store_url: str,
) -> None:
    async def run(tenant: str, sink: PlainSink) -> None:
        clock = SimulatedClock(T0)
        async with Engine(store_url, clock=clock, sink=sink, tenant=tenant) as engine:
            await engine.upsert_contacts(CONTACTS)
            await engine.deploy(campaigns(PRICED))
            await engine.launch("priced")
            stats = await engine.run_until(T0 + dt.timedelta(days=2))
            assert (stats.sends, stats.delivered) == (6, 6)

    live, in_process = PlainSink(), InProcessSink()
    trio.run(run, "live", live)
    trio.run(run, "stepped", in_process)
    # The sink sees the same sends, in the same order, at the same times...
    assert sent(in_process) == sent(live)
    assert len(sent(live)) == 6
    # ...and the store holds the same rows: sent, attempted once, no lease, logged once.
    assert _stored_sends(store_url, "stepped") == _stored_sends(store_url, "live")
    outbox, log = _stored_sends(store_url, "stepped")
    assert {row[3:8] for row in outbox} == {("sent", 1, "plain", None, None)}
    assert [row[0] for row in log] == [row[0] for row in outbox]
    assert {(row[3], row[6], row[7]) for row in log} == {("sent", Decimal("0.001"), "USD")}


def test_an_in_process_sink_s_batch_that_fails_before_its_commit_hands_over_nothing(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = InProcessSink()

    async def main() -> None:
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts(CONTACTS)
            await engine.deploy(campaigns(LAUNCH))
            await engine.launch("hello_all")
            with pytest.raises(RuntimeError, match="mid-batch"), _second_step_fails(monkeypatch):
                await engine.run_due()
            assert sink.delivered == []
            assert await engine.store.call(_count, OutboxMessage) == 0
            assert await engine.store.call(_count, SendLog) == 0
            await engine.run_due()
            await engine.run_due()

    trio.run(main)
    assert sorted(sent(sink)) == [("c1", "hello"), ("c3", "hello")]
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalar(select(func.count()).select_from(SendLog)) == 2


def test_a_crash_between_an_in_process_step_s_commit_and_its_hand_over_sends_nothing_twice(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sends are stored sent once: the process (and its sink) died, nothing delivers again."""
    clock = SimulatedClock(T0)

    async def crash_after_commit() -> None:
        async def die(self: Engine, sent: list[OutgoingMessage]) -> int:
            raise RuntimeError("process died after the commit")

        with monkeypatch.context() as patch:
            patch.setattr(Engine, "_hand_over", die)
            async with Engine(store_url, clock=clock, sink=InProcessSink()) as engine:
                await engine.upsert_contacts(CONTACTS)
                await engine.deploy(campaigns(LAUNCH))
                await engine.launch("hello_all")
                with pytest.raises(RuntimeError, match="died after the commit"):
                    await engine.run_due()

    async def restarted() -> InProcessSink:
        sink = InProcessSink()
        clock.advance_to(T0 + dt.timedelta(minutes=10))  # past any lease
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.run_until(T0 + dt.timedelta(days=1))
        return sink

    trio.run(crash_after_commit)
    assert sent(trio.run(restarted)) == []
    with Store.open(store_url) as store, store.session() as session:
        statuses = session.execute(
            select(OutboxMessage.contact_id, OutboxMessage.status).order_by(
                OutboxMessage.contact_id
            )
        ).all()
        assert [tuple(row) for row in statuses] == [("c1", "sent"), ("c3", "sent")]
        assert session.scalar(select(func.count()).select_from(SendLog)) == 2


@dataclass
class DyingSink(PlainSink):
    """Takes the first message of a delivery, then the process dies before it answers."""

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record one message, then fail as a killed process would."""
        self.delivered.extend(messages[:1])
        raise RuntimeError("process died in the provider call")


def test_a_dead_engine_s_leased_sends_are_due_when_its_lease_ends(store_url: str) -> None:
    """`next_due` said a send leased by a dead engine was due at once: `run_until` asked
    again and again at the same instant and never moved the simulated clock on (and
    `serve` polled the store without a pause until the lease ran out)."""
    clock = SimulatedClock(T0)
    dying = DyingSink()

    async def crash() -> None:
        async with Engine(store_url, clock=clock, sink=dying) as engine:
            await engine.upsert_contacts(CONTACTS)
            await engine.deploy(campaigns(LAUNCH))
            await engine.launch("hello_all")
            with pytest.raises(RuntimeError, match="died in the provider call"):
                await engine.run_due()

    async def restart() -> PlainSink:
        sink = PlainSink()
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            assert await engine.next_due() == T0 + LEASE  # when the dead engine's lease ends
            with trio.fail_after(20):
                await engine.run_until(T0 + dt.timedelta(hours=1))
            assert await engine.next_due() is None
        return sink

    trio.run(crash)
    sink = trio.run(restart)
    assert clock.now() == T0 + dt.timedelta(hours=1)
    # Both sends once more after the lease, the one the provider took saying it was tried.
    assert sent(dying) == [("c1", "hello")]
    assert [(m.contact_id, m.attempts) for m in sink.delivered] == [("c1", 1), ("c3", 1)]


@dataclass
class StoppingSink(PlainSink):
    """Asks its engine to stop during its first delivery, as a SIGTERM to `serve` does."""

    engine: Engine | None = None

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Stop the engine, then take the messages."""
        assert self.engine is not None
        self.engine.stop()
        await trio.sleep(0)  # a checkpoint, where a cancellation would cut the batch off
        return await super().deliver(messages)


def test_a_stopped_engine_records_the_batch_in_hand_and_starts_no_other(store_url: str) -> None:
    """`stop` during a delivery: `serve` returns once that batch is recorded, with nothing
    leased, so the next engine goes on at once (a cancellation would leave the batch's
    sends leased until the lease ran out)."""
    clock = SimulatedClock(T0)
    stopping = StoppingSink()

    async def stop_mid_batch() -> None:
        async with Engine(store_url, clock=clock, sink=stopping, batch_size=1) as engine:
            stopping.engine = engine
            await engine.upsert_contacts(CONTACTS)
            await engine.deploy(campaigns(LAUNCH.replace("audience lead_score >= 30", "")))
            await engine.launch("hello_all")
            with trio.fail_after(20):
                stats = await engine.serve(poll=60)
            assert (stats.steps, stats.delivered) == (1, 1)
            await engine.run_due()  # stopped for good: no further batch
        with Store.open(store_url) as store, store.session() as session:
            leased = [
                session.scalar(
                    select(func.count()).select_from(model).where(model.lease_owner.is_not(None))
                )
                for model in (Enrollment, OutboxMessage)
            ]
            assert leased == [0, 0]
            assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1

    async def restart() -> PlainSink:
        sink = PlainSink()
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.run_due()
        return sink

    trio.run(stop_mid_batch)
    assert len(stopping.delivered) == 1
    rest = trio.run(restart)
    assert sorted(m.contact_id for m in [*stopping.delivered, *rest.delivered]) == [
        "c1", "c2", "c3"
    ]  # fmt: skip


def test_run_until_takes_a_naive_time_as_utc_as_the_clocks_do(store_url: str) -> None:
    """`run_until(datetime(2026, 12, 2))` raised TypeError: can't compare offset-naive and
    offset-aware datetimes, though `SimulatedClock` and `advance_to` take naive times."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(DRIP))
        await engine.launch("welcome_series")
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.run_until((T0 + dt.timedelta(days=3)).replace(tzinfo=None))
        assert clock.now() == T0 + dt.timedelta(days=3)
        assert sent(sink) == [("c1", "welcome"), ("c1", "tips")]

    engine_run(store_url, body)


def _count(store: Store, model: Any) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_pause_holds_and_resume_runs_what_fell_due(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(DRIP))
        await engine.launch("welcome_series")
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.run_due()
        assert await engine.pause("welcome_series") == 1
        clock.advance_to(T0 + dt.timedelta(days=5))
        await engine.run_due()
        assert sent(sink) == [("c1", "welcome")]
        assert await engine.resume("welcome_series") == 1
        await engine.run_due()
        assert sent(sink) == [("c1", "welcome"), ("c1", "tips")]

    engine_run(store_url, body)


WAITING = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign waiter { on launch { send email a  wait for ping up to 5d  send email b } }
campaign goaly { goal converted  on launch { send email a  wait 5d  send email b } }
"""


def test_what_a_paused_wait_for_or_goal_met_runs_at_resume(store_url: str) -> None:
    """An event a paused `wait for` waits for, or one that reaches the goal, arriving during
    the pause: the wait fell due then, so it runs at resume, not at its timeout days later."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.deploy(campaigns(WAITING))
        for name in ("waiter", "goaly"):
            await engine.launch(name)
        await engine.run_due()
        for name in ("waiter", "goaly"):
            await engine.pause(name)
        clock.advance_to(T0 + dt.timedelta(days=1))
        await engine.push_events([{"contact": "c1", "name": "ping"}])
        await engine.push_events([{"contact": "c1", "name": "converted"}])
        await engine.run_due()
        assert sent(sink) == [("c1", "a"), ("c1", "a")]
        clock.advance_to(T0 + dt.timedelta(days=2))
        for name in ("waiter", "goaly"):
            await engine.resume(name)
        await engine.run_due()
        return sink.delivered, {row["name"]: row for row in await engine.status()}

    delivered, status = engine_run(store_url, body)
    assert [(m.campaign, m.template) for m in delivered[2:]] == [("waiter", "b")]
    assert status["waiter"]["status"] == status["goaly"]["status"] == "completed"
    assert status["goaly"]["enrollments"] == {"exited": 1}


@dataclass
class RetryingSink:
    """Refuses every message for now (a provider's 503, retry in an hour) until `up`."""

    clock: SimulatedClock
    up: bool = False
    delivered: list[OutgoingMessage] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        if not self.up:
            retry = self.clock.now() + dt.timedelta(hours=1)
            return [
                DeliveryResult(m.outbox_id, False, error="503", retry_at=retry) for m in messages
            ]
        self.delivered.extend(messages)
        return [DeliveryResult(m.outbox_id, True, "p", m.idempotency_key) for m in messages]


def test_run_due_goes_through_a_backlog_of_sends_that_fail_for_good(store_url: str) -> None:
    """A round that steps nothing and delivers nothing ended `run_due`, so when a claimed
    batch of the outbox's due sends all failed for good, the rest of the backlog waited for
    another call: `serve --until-idle` exited with sends due now still pending."""
    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(5)]
    source = 'template hello email { subject "Hi" body "x" }\n'
    source += "campaign hello_all { on launch { send email hello } }"

    @dataclass
    class RefusingSink:
        """Refuses for now (a 503), then for good (a 550) once `for_good` is set."""

        clock: SimulatedClock
        for_good: bool = False

        async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
            retry = None if self.for_good else self.clock.now() + dt.timedelta(hours=1)
            error = "550 no such mailbox" if self.for_good else "503"
            return [
                DeliveryResult(m.outbox_id, False, error=error, retry_at=retry) for m in messages
            ]

    async def main() -> RunStats:
        clock = SimulatedClock(T0)
        sink = RefusingSink(clock)
        async with Engine(store_url, clock=clock, sink=sink, batch_size=2) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(source))
            await engine.launch("hello_all")
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(hours=2))
            sink.for_good = True
            return await engine.run_due()

    stats = trio.run(main)
    assert (stats.delivered, stats.failed) == (0, 5)
    with Store.open(store_url) as store, store.session() as session:
        assert list(session.scalars(select(OutboxMessage.status))) == ["failed"] * 5


def test_a_cancelled_campaign_s_queued_retry_is_not_sent(store_url: str) -> None:
    """`cancel` stops a campaign for good: a send waiting to be retried went out after it."""
    source = LAUNCH.replace("send email hello", "send email hello  wait 1d  send email hello")

    async def main() -> list[str]:
        clock = SimulatedClock(T0)
        sink = RetryingSink(clock)
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(CONTACTS)
            await engine.deploy(campaigns(source))
            await engine.launch("hello_all")
            await engine.run_due()
            assert await engine.cancel("hello_all") == 2
            sink.up = True
            await engine.run_until(T0 + dt.timedelta(days=2))
            assert await engine.next_due() is None
        with Store.open(store_url) as store, store.session() as session:
            outbox = list(session.scalars(select(OutboxMessage.status)))
        assert outbox == ["cancelled", "cancelled"]
        return [m.contact_id for m in sink.delivered]

    assert trio.run(main) == []


def test_a_paused_campaign_s_queued_retry_waits_for_resume(store_url: str) -> None:
    """A pause holds what the campaign would send: a send waiting to be retried went out
    during the pause; it now goes at resume, once."""
    source = LAUNCH.replace("send email hello", "send email hello  wait 3d  send email hello")

    async def main() -> list[list[str]]:
        clock = SimulatedClock(T0)
        sink = RetryingSink(clock)
        seen: list[list[str]] = []
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(CONTACTS)
            await engine.deploy(campaigns(source))
            await engine.launch("hello_all")
            await engine.run_due()
            assert await engine.pause("hello_all") == 2
            sink.up = True
            await engine.run_until(T0 + dt.timedelta(days=1))
            seen.append([m.contact_id for m in sink.delivered])
            await engine.resume("hello_all")
            await engine.run_until(T0 + dt.timedelta(days=2))
            seen.append(sorted(m.contact_id for m in sink.delivered))
        return seen

    assert trio.run(main) == [[], ["c1", "c3"]]


PINGED = """
template hi email { subject "Hi" body "<p>x</p>" }
template welcome email { subject "Welcome" body "<p>x</p>" }
when ping send email hi
campaign greet { on contact_created { send email welcome } }
"""


def test_a_paused_campaign_enrolls_nobody_and_replays_nothing_at_resume(store_url: str) -> None:
    """As docs/cli.md says: a trigger that fires while the campaign is paused is lost."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS[:2])
        await engine.deploy(campaigns(PINGED))
        for name in ("t_ping", "greet"):
            await engine.launch(name)
            await engine.pause(name)
        await engine.push_event({"contact": "c1", "name": "ping"})
        await engine.upsert_contacts(CONTACTS[2:3])
        await engine.run_due()
        for name in ("t_ping", "greet"):
            await engine.resume(name)
        await engine.run_until(T0 + dt.timedelta(hours=1))
        assert sent(sink) == []
        await engine.push_event({"contact": "c2", "name": "ping"})
        await engine.upsert_contacts([{"id": "c4", "email": "dee@example.test"}])
        await engine.run_until(T0 + dt.timedelta(hours=2))
        assert sorted(sent(sink)) == [("c2", "hi"), ("c4", "welcome")]

    engine_run(store_url, body)


EVENTS = """
template property_details email { subject "Details" body "<p>x</p>" }
when property_viewed count>=3 within 7d where event.price <= 500000
  wait 1h send email property_details
"""


def test_event_trigger_counts_matching_events_within_the_window(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(EVENTS))
        await engine.launch("t_property_viewed")
        for price in (100000, 900000, 200000):
            await engine.push_event(
                {"contact": "c1", "name": "property_viewed", "properties": {"price": price}}
            )
        await engine.run_until(T0 + dt.timedelta(hours=2))
        assert sent(sink) == []
        await engine.push_event(
            {"contact": "c1", "name": "property_viewed", "properties": {"price": 300000}}
        )
        await engine.run_until(T0 + dt.timedelta(hours=4))
        assert sent(sink) == [("c1", "property_details")]

    engine_run(store_url, body)


def test_an_event_dated_seconds_after_now_by_a_clock_ahead_counts_now(store_url: str) -> None:
    """A sender's clock a few seconds ahead of ours dates the third event after now: the
    trigger's count over [now - 7d, now] left it out, and nothing counted it later, so the
    trigger never fired. Within CLOCK_SKEW it is taken as now; an event an hour ahead stays
    where it is dated (history loaded ahead of a simulated clock, docs/semantics.md)."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(EVENTS))
        await engine.launch("t_property_viewed")
        for contact, ahead in (("c1", -60), ("c1", -30), ("c1", 3), ("c2", 3600)):
            at = T0 + dt.timedelta(seconds=ahead)
            await engine.push_event(
                {"contact": contact, "name": "property_viewed", "at": at.isoformat(),
                 "properties": {"price": 1}}
            )  # fmt: skip
        await engine.run_until(T0 + dt.timedelta(hours=2))
        assert sent(sink) == [("c1", "property_details")]

    engine_run(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        stored = session.execute(select(Event.contact_id, Event.at).order_by(Event.id)).all()
    assert [(cid, as_utc(at) - T0) for cid, at in stored] == [
        ("c1", dt.timedelta(seconds=-60)), ("c1", dt.timedelta(seconds=-30)),
        ("c1", dt.timedelta(0)), ("c2", dt.timedelta(hours=1)),
    ]  # fmt: skip


FANOUT = """
template new_listing email { subject "New" body "<p>x</p>" }
when property_listed for contacts where contact.lead_score >= event.min_score send email new_listing
"""


def test_fanout_event_enrolls_every_matching_contact(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(FANOUT))
        await engine.launch("t_property_listed")
        enrolled = await engine.push_event(
            {"name": "property_listed", "properties": {"min_score": 40}}
        )
        assert enrolled == 2
        await engine.run_due()
        assert sorted(sent(sink)) == [("c1", "new_listing"), ("c3", "new_listing")]

    engine_run(store_url, body)


WAIT_FOR = """
template offer email { subject "Offer" body "<p>x</p>" }
template thanks email { subject "Thanks" body "<p>x</p>" }
template reminder email { subject "Reminder" body "<p>x</p>" }
on launch {
  send email offer
  wait for clicked(offer) up to 3d
  if clicked(offer) { send email thanks } else { send email reminder }
}
"""


def test_wait_for_resumes_early_when_the_event_arrives(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[Any]:
        await engine.upsert_contacts(CONTACTS[:2])
        await engine.deploy(campaigns(WAIT_FOR))
        await engine.launch("t_launch")
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(hours=6))
        await engine.push_event(
            {"contact": "c1", "name": "clicked", "properties": {"template": "offer"}}
        )
        await engine.run_due()
        early = sent(sink)
        await engine.run_until(T0 + dt.timedelta(days=4))
        return [early, sent(sink)]

    early, final = engine_run(store_url, body)
    assert ("c1", "thanks") in early and ("c2", "reminder") not in early
    assert sorted(final) == sorted(
        [("c1", "offer"), ("c2", "offer"), ("c1", "thanks"), ("c2", "reminder")]
    )


WAKES = """
template a email { subject "A" body "x" }
campaign plain { on launch { send email a  wait 2d  send email a } }
campaign waiting { on launch { wait for clicked(a) up to 2d  send email a } }
campaign goal { goal converted  on launch { wait 2d  send email a } }
"""


def test_an_event_wakes_only_enrollments_that_can_react_to_it(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS[:2])
        await engine.deploy(campaigns(WAKES))
        for name in ("plain", "waiting", "goal"):
            await engine.launch(name)
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(hours=1))
        await engine.push_event({"contact": "c1", "name": "opened"})

        def due(store: Store) -> dict[tuple[str, str], dt.datetime]:
            from cadence.engine.store.models import Campaign, CampaignVersion

            with store.session() as session:
                rows = session.execute(
                    select(Campaign.name, Enrollment.contact_id, Enrollment.due_at)
                    .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
                    .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
                )
                return {(name, contact): at for name, contact, at in rows}

        woken = clock.now()
        later = T0 + dt.timedelta(days=2)
        assert await engine.store.call(due) == {
            ("plain", "c1"): later,  # a plain wait cannot react: left asleep
            ("waiting", "c1"): woken,  # `wait for` checks the event
            ("goal", "c1"): woken,  # the goal is checked at every step
            ("plain", "c2"): later,
            ("waiting", "c2"): later,
            ("goal", "c2"): later,
        }
        await engine.run_due()
        assert sent(sink).count(("c1", "a")) == 1  # woken early, nothing sent early

    engine_run(store_url, body)


def test_a_suppressed_contact_is_never_sent_to(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)

        def suppress(store: Store) -> None:
            with store.session() as session:
                send_store.add_suppressions(
                    session, "default", "email", [("cy@example.test", None)],
                    reason="bounced", now=T0,
                )  # fmt: skip

        await engine.store.call(suppress)
        await engine.deploy(campaigns(LAUNCH))
        await engine.launch("hello_all")
        await engine.run_due()
        assert sent(sink) == [("c1", "hello")]

    engine_run(store_url, body)


CAPPED = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign first { cap email 1 per 1d  on launch { send email a } }
campaign second { cap email 1 per 1d  on launch { send email b } }
"""


def test_a_cap_holds_across_campaigns(store_url: str, caps_backend: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.deploy(campaigns(CAPPED))
        await engine.launch("first")
        await engine.launch("second")
        await engine.run_due()
        assert len(sent(sink)) == 1

    engine_run(store_url, body)


def test_wait_until_local_crosses_the_dst_change(store_url: str) -> None:
    source = """
template t email { subject "s" body "b" }
on launch { wait until 09:00 local  send email t  wait 1d  wait until 09:00 local  send email t2 }
template t2 email { subject "s" body "b" }
"""
    start = dt.datetime(2026, 10, 31, 16, 0, tzinfo=dt.UTC)  # 12:00 in New York, EDT
    clock = SimulatedClock(start)
    sink = StampSink(clock)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts([CONTACTS[1]])
            await engine.deploy(campaigns(source))
            await engine.launch("t_launch")
            await engine.run_until(start + dt.timedelta(days=5))

    trio.run(main)
    stamps = [at for at, _, _ in sink.stamps]
    # 09:00 EDT on 1 November is 13:00 UTC... but the clocks go back at 02:00 that day,
    # so 09:00 on 1 November is EST: 14:00 UTC. The second send is 09:00 EST on 3 November.
    assert stamps == [
        dt.datetime(2026, 11, 1, 14, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 3, 14, 0, tzinfo=dt.UTC),
    ]


def test_outbox_keys_are_unique_per_version_node_contact(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> int:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(LAUNCH))
        await engine.launch("hello_all")
        await engine.run_due()

        def count(store: Store) -> int:
            with store.session() as session:
                return int(session.scalar(select(func.count(OutboxMessage.id))) or 0)

        return int(await engine.store.call(count))

    assert engine_run(store_url, body) == 2


def test_every_runs_again_on_each_occurrence_in_local_time(store_url: str) -> None:
    source = """
template digest email { subject "Weekly" body "b" }
campaign weekly { every monday 09:00 local { send email digest } }
"""
    clock = SimulatedClock(T0)
    sink = StampSink(clock)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(CONTACTS[:2])
            await engine.deploy(campaigns(source))
            await engine.launch("weekly")
            await engine.run_until(T0 + dt.timedelta(days=21))

    trio.run(main)
    stamps = [(at, contact_id) for at, contact_id, _ in sink.stamps]
    # Mondays from Tuesday 1 December 09:00 to 22 December 09:00 UTC: 7, 14 and 21 December;
    # c1 is in UTC, c2 in New York (14:00 UTC).
    assert stamps == [
        (dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC), "c1"),
        (dt.datetime(2026, 12, 7, 14, 0, tzinfo=dt.UTC), "c2"),
        (dt.datetime(2026, 12, 14, 9, 0, tzinfo=dt.UTC), "c1"),
        (dt.datetime(2026, 12, 14, 14, 0, tzinfo=dt.UTC), "c2"),
        (dt.datetime(2026, 12, 21, 9, 0, tzinfo=dt.UTC), "c1"),
        (dt.datetime(2026, 12, 21, 14, 0, tzinfo=dt.UTC), "c2"),
    ]


def test_a_new_version_leaves_running_enrollments_unless_migrated(store_url: str) -> None:
    v2 = DRIP.replace(
        'template tips email { subject "Tips"', 'template tips email { subject "Tips!"'
    )
    v3 = DRIP.replace("wait 4d", "wait 5d")

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(DRIP))
        await engine.launch("welcome_series")
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.run_due()  # c1 waits at wait_3d in version 1
        (kept,) = await engine.deploy(campaigns(v2))
        assert kept.created
        clock.advance_to(T0 + dt.timedelta(days=3))
        await engine.run_due()
        # Still on version 1: the subject there was "Tips".
        assert sink.delivered[-1].version != kept.version
        (moved,) = await engine.deploy(campaigns(v2), migrate=True)
        assert not moved.created
        with pytest.raises(EngineError, match="1 at `wait_4d`"):
            await engine.deploy(campaigns(v3), migrate=True)
        clock.advance_to(T0 + dt.timedelta(days=7))
        await engine.run_due()
        assert sink.delivered[-1].version == moved.version

    engine_run(store_url, body)


ONCE = """
segment vip = lead_score >= 30
template a email { subject "A" body "x" }
campaign greet { cap email 9 per 1d  when ping { send email a  wait 1d  send email a } }
campaign again { cap email 9 per 1d  reenter always  when ping { send email a } }
campaign weekly { cap email 9 per 1d  audience vip  every monday 09:00 { send email a } }
campaign vips { cap email 9 per 1d  on segment_enter vip { send email a } }
"""


def test_a_new_version_does_not_enroll_a_contact_a_second_time(store_url: str) -> None:
    """A contact enters a campaign once, ever (docs/language.md, `reenter`), not once per
    version: after a redeploy, a second trigger entered them again beside their running
    journey, and a contact update booked a second weekly series (two sends each Monday)."""
    v2 = ONCE.replace('subject "A"', 'subject "A2"')
    lead = {"id": "c1", "email": "ana@example.test", "attributes": {"lead_score": 50}}
    cold = {**lead, "attributes": {"lead_score": 0}}

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts([lead])
        await engine.deploy(campaigns(ONCE))
        for name in ("greet", "again", "weekly", "vips"):
            await engine.launch(name)
        await engine.upsert_contacts([cold])
        await engine.upsert_contacts([lead])
        await engine.push_events([{"contact": "c1", "name": "ping"}])
        await engine.run_due()
        await engine.deploy(campaigns(v2))
        await engine.upsert_contacts([cold])
        await engine.upsert_contacts([lead])
        await engine.push_events([{"contact": "c1", "name": "ping"}])
        await engine.run_until(T0 + dt.timedelta(days=7))
        return Counter(m.campaign for m in sink.delivered)

    assert engine_run(store_url, body) == {"greet": 2, "again": 2, "weekly": 1, "vips": 1}


def test_cli_deploy_says_how_many_enrollments_it_migrated(store_url: str, tmp_path: Path) -> None:
    """`cadence deploy --migrate` printed `(new version)`, or `(unchanged)` when that
    version was deployed before, whether or not enrollments moved onto it."""
    source = tmp_path / "drip.cadence"
    source.write_text(DRIP.replace("on contact_created", "on launch"), "utf-8")
    people = tmp_path / "people.jsonl"
    people.write_text(
        '{"id": "c1", "email": "ana@example.test"}\n{"id": "c2", "email": "b@x.test"}\n'
    )

    def cadence(*args: str) -> str:
        done = run_cadence(*args, store_url=store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cadence("contacts", "import", str(people))
    cadence("deploy", str(source))
    cadence("launch", "welcome_series")
    cadence("serve", "--until-idle")  # both wait at wait_3d, on the first version
    source.write_text(source.read_text().replace('subject "Tips"', 'subject "Tips!"'))
    (kept,) = cadence("deploy", str(source)).splitlines()
    # Said, not silent: they send what the first version says unless migrated.
    assert kept.endswith(
        "(new version; 2 enrollments stay on the earlier version, scheduled runs not started"
        " yet included, and send what it says: cadence deploy --migrate moves them to this one)"
    )
    (moved,) = cadence("deploy", "--migrate", str(source)).splitlines()
    assert moved.endswith("(unchanged; 2 enrollments moved to it)")
    (again,) = cadence("deploy", "--migrate", str(source)).splitlines()
    assert again.endswith("(unchanged; 0 enrollments moved to it)")


def test_a_deploy_counts_the_booked_runs_that_stay_on_the_earlier_version(
    store_url: str,
) -> None:
    """A weekly campaign books each contact's next run at launch. A new version deployed
    without `--migrate` leaves that booked run on the first version, so a fixed typo went
    out as it was; the deploy now says how many stay (`DeployResult.left`)."""
    weekly = """
template news email { subject "Weekly v1" body "x" }
campaign weekly { every monday 09:00 local { send email news } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[int]:
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.deploy(campaigns(weekly))
        await engine.launch("weekly")
        (fixed,) = await engine.deploy(campaigns(weekly.replace("v1", "v2")))
        (migrated,) = await engine.deploy(campaigns(weekly.replace("v1", "v2")), migrate=True)
        (after,) = await engine.deploy(campaigns(weekly.replace("v1", "v2")))
        return [fixed.left, migrated.left, after.left, migrated.moved or 0]

    assert engine_run(store_url, body) == [1, 0, 0, 1]


@pytest.mark.parametrize(
    "setting", ["cap email 99999999999999999999 per 7d", "max_sends 99999999999999999999"]
)
def test_cli_deploy_refuses_a_count_the_store_cannot_hold(
    store_url: str, tmp_path: Path, setting: str
) -> None:
    """A cap or `max_sends` past 64 bits checked clean, then `cadence deploy` died with a
    traceback writing the version: it is now an error at the number, and nothing is kept."""
    source = tmp_path / "huge.cadence"
    source.write_text(
        f'template hi email {{ subject "Hi" body "x" }}\n'
        f"campaign huge {{ {setting} on launch {{ send email hi }} }}\n",
        "utf-8",
    )
    done = run_cadence("deploy", str(source), store_url=store_url, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"huge.cadence:2:{setting.index('9') + 17}: error[E" in done.stderr, done.stderr
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalar(select(func.count()).select_from(CampaignVersion)) == 0


SEGMENT = """
segment hot = count(property_viewed, 7d) >= 2 or lead_score >= 70
template hello email { subject "Hi" body "x" }
campaign hot_leads { on segment_enter hot { send email hello } }
"""


def test_segment_enter_fires_on_attribute_and_event_changes(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(SEGMENT))
        await engine.launch("hot_leads")
        await engine.upsert_contacts(CONTACTS)  # c3 has lead_score 80: enters at once
        await engine.run_due()
        assert sent(sink) == [("c3", "hello")]
        await engine.upsert_contacts([{"id": "c2", "attributes": {"lead_score": 75}}])
        for _ in range(2):
            await engine.push_event({"contact": "c1", "name": "property_viewed"})
        await engine.push_event({"contact": "c3", "name": "property_viewed"})
        await engine.run_due()
        assert sorted(sent(sink)) == [("c1", "hello"), ("c2", "hello"), ("c3", "hello")]

    engine_run(store_url, body)


@pytest.mark.parametrize("backend", ["rust", "python"])
def test_audiences_and_fanout_go_through_the_dispatch_core(
    store_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cadence.engine import audience

    seen: list[bool] = []
    original = audience.select

    def spy(*args: Any, **kwargs: Any) -> audience.Selection:
        result = original(*args, **{**kwargs, "backend": backend})
        seen.append(result.vectorised)
        return result

    monkeypatch.setattr(audience, "select", spy)

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(LAUNCH) + campaigns(FANOUT))
        await engine.launch("hello_all")
        await engine.launch("t_property_listed")
        await engine.push_event({"name": "property_listed", "properties": {"min_score": 40}})
        await engine.run_due()
        assert sorted(sent(sink)) == [
            ("c1", "hello"), ("c1", "new_listing"), ("c3", "hello"), ("c3", "new_listing")
        ]  # fmt: skip

    engine_run(store_url, body)
    assert seen and all(seen)


THRIFTY = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign thrifty {
  budget 0.003 USD
  cost email 0.001 USD
  on launch { send email a }
}
campaign free { on launch { send email b } }
"""
FIVE = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(1, 6)]


def _budget_story(store: Store) -> dict[str, Any]:
    """Where thrifty's enrollments are, its pause audit lines, and any skipped send."""
    with store.session() as session:
        enrollments = session.execute(
            select(Enrollment.status, Enrollment.node, func.count())
            .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(Campaign.name == "thrifty")
            .group_by(Enrollment.status, Enrollment.node)
        ).all()
        pauses = session.scalars(
            select(AuditEntry.details)
            .where(AuditEntry.action == "pause", AuditEntry.subject_id == "thrifty")
            .order_by(AuditEntry.id)
        ).all()
        skipped = session.scalar(
            select(func.count()).select_from(SendLog).where(SendLog.outcome == "skipped")
        )
    return {
        "enrollments": {(status, node): int(n) for status, node, n in enrollments},
        "pauses": [dict(details) for details in pauses],
        "skipped": skipped,
    }


@pytest.mark.parametrize("batch_size", [500, 3])
def test_a_budget_over_two_channels_stops_at_the_message_that_would_pass_it(
    store_url: str, batch_size: int
) -> None:
    """1 USD at 0.01 an email and 0.05 an SMS, each contact an email then an SMS: 17 emails
    and 16 SMS make 0.97 USD, and the 17th SMS would make 1.02. The pause says so, so
    "0.97 of 1 USD" does not read as a stop 0.03 early."""
    source = """
    template hello email { subject "Hi" body "x" }
    template ping sms "Hi. Reply STOP to opt out."
    campaign duo {
      budget 1 USD
      cost email 0.01 USD, sms 0.05 USD
      on launch { send email hello  send sms ping }
    }
    """
    people = [
        {"id": f"p{i:02d}", "email": f"p{i}@example.test", "phone": f"+4915100000{i:02d}",
         "attributes": {"sms_opt_in": True}}
        for i in range(30)
    ]  # fmt: skip

    async def main() -> None:
        sink = RecordingSink()
        async with Engine(
            store_url, clock=SimulatedClock(T0), sink=sink, batch_size=batch_size
        ) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(source))
            await engine.launch("duo")
            await engine.run_due()
            assert Counter(m.template for m in sink.delivered) == {"hello": 17, "ping": 16}
            (row,) = await engine.status()
            assert row["status"] == "paused"
            pause = {k: row["pause"][k] for k in ("spent", "budget", "currency", "next")}
            assert pause == {"spent": "0.97", "budget": "1", "currency": "USD", "next": "0.05"}
            assert pause_text(row["pause"]).startswith(
                "budget spent (0.97 of 1.00 USD; the next message would cost 0.05 USD)"
            )

    trio.run(main)


@pytest.mark.parametrize("batch_size", [500, 2])
def test_a_spent_budget_pauses_the_campaign_and_a_raised_one_sends_the_rest(
    store_url: str, batch_size: int
) -> None:
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    budget_spent = {
        "reason": "budget", "spent": "0.003", "budget": "0.003", "currency": "USD",
        "next": "0.001", "enrollments": 2,
    }  # fmt: skip

    def thrifty_sends() -> list[str]:
        return sorted(m.contact_id for m in sink.delivered if m.campaign == "thrifty")

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink, batch_size=batch_size) as engine:
            await engine.upsert_contacts(FIVE)
            await engine.deploy(campaigns(THRIFTY))
            await engine.launch("thrifty")
            await engine.launch("free")
            await engine.run_due()
            # 0.003 USD at 0.001 an email: three go, then the campaign pauses; the other
            # two wait at their send, neither sent nor skipped. `free` is untouched.
            assert len(thrifty_sends()) == 3
            assert sorted(m.contact_id for m in sink.delivered if m.campaign == "free") == [
                f"p{i}" for i in range(1, 6)
            ]
            status = {row["name"]: row for row in await engine.status()}
            assert status["thrifty"]["status"] == "paused"
            assert status["free"]["status"] == "completed"
            story = await engine.store.call(_budget_story)
            assert story == {
                "enrollments": {("completed", "end"): 3, ("paused", "send_a"): 2},
                "pauses": [budget_spent],
                "skipped": 0,
            }

            # Resumed with the budget still spent: the first attempt pauses it again.
            assert await engine.resume("thrifty") == 2
            await engine.run_due()
            assert len(thrifty_sends()) == 3
            story = await engine.store.call(_budget_story)
            assert story["pauses"] == [budget_spent, budget_spent]
            assert story["enrollments"][("paused", "send_a")] == 2

            # A larger budget, the held enrollments migrated onto it, and resumed: the two
            # held sends go, once each.
            await engine.deploy(
                campaigns(THRIFTY.replace("budget 0.003 USD", "budget 1 USD")), migrate=True
            )
            assert await engine.resume("thrifty") == 2
            await engine.run_until(T0 + dt.timedelta(days=1))
            assert thrifty_sends() == [f"p{i}" for i in range(1, 6)]
            story = await engine.store.call(_budget_story)
            assert story["enrollments"] == {("completed", "end"): 5}
            assert story["skipped"] == 0
            status = {row["name"]: row for row in await engine.status()}
            assert status["thrifty"]["status"] == "completed"

    trio.run(main)
    with Store.open(store_url) as store, store.session() as session:
        keys = session.scalars(select(OutboxMessage.idempotency_key)).all()
        assert len(keys) == len(set(keys)) == 10


def test_a_budget_pause_shows_money_as_the_cost_column_does(store_url: str, tmp_path: Path) -> None:
    """The pause said `0.9 of 1 USD` (the amounts as stored) beside a cost column reading
    `0.90 USD`, and the held enrollments' history `budget 1 USD spent`: one money format
    in `cadence status`, the dashboard and the history; the audit line keeps the exact
    amounts."""
    from cadence.adapters.web.dashboard import dashboard

    source = THRIFTY.replace("budget 0.003 USD", "budget 1 USD").replace(
        "cost email 0.001 USD", "cost email 0.3 USD"
    )
    said = "budget spent (0.90 of 1.00 USD; the next message would cost 0.30 USD)"

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(FIVE)
        await engine.deploy(campaigns(source))
        await engine.launch("thrifty")
        await engine.run_due()
        rows = await engine.status()
        reports = await engine.report()
        pause = next(row["pause"] for row in rows if row["name"] == "thrifty")
        assert {k: pause[k] for k in ("spent", "budget", "next")} == {
            "spent": "0.9",
            "budget": "1",
            "next": "0.3",
        }
        page = dashboard("Acme", T0, rows, reports)
        assert said in page and "0.90 USD" in page
        histories = await engine.store.call(_thrifty_histories)
        held = [line[-1] for h in histories for line in h if str(line[-1]).startswith("held")]
        assert held == ["held: budget 1.00 USD spent; campaign paused"]

    engine_run(store_url, body)
    status = run_cadence("status", store_url=store_url, cwd=tmp_path, columns=200)
    assert status.returncode == 0, status.stderr
    assert f"thrifty is paused: {said}" in status.stdout
    report = run_cadence("report", "thrifty", store_url=store_url, cwd=tmp_path, columns=250)
    assert report.returncode == 0, report.stderr
    assert "0.90 USD" in report.stdout


def _thrifty_histories(store: Store) -> list[list[list[Any]]]:
    """The history of each of thrifty's enrollments."""
    with store.session() as session:
        return list(
            session.scalars(
                select(Enrollment.history)
                .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
                .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
                .where(Campaign.name == "thrifty")
            )
        )


def test_status_says_the_budget_paused_it_and_what_it_says_to_do_works(
    store_url: str, tmp_path: Path
) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(FIVE)
        await engine.deploy(campaigns(THRIFTY))
        await engine.launch("thrifty")
        await engine.run_due()
        status = {row["name"]: row for row in await engine.status()}
        assert status["thrifty"]["pause"] == {
            "reason": "budget", "spent": "0.003", "budget": "0.003", "currency": "USD",
            "next": "0.001", "enrollments": 2,
        }  # fmt: skip
        assert status["free"]["pause"] is None

    engine_run(store_url, body)
    done = run_cadence("status", store_url=store_url, cwd=tmp_path, columns=200)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "│ thrifty" in line)
    # campaign, status, version, approval, active, completed, exited, held (paused), sends
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[1] == "paused" and cells[4:] == ["0", "3", "0", "2", "3"]
    assert cells[3] == "needed above 1,000 contacts"
    assert (
        "thrifty is paused: budget spent (0.003 of 0.003 USD; the next message would cost"
        " 0.001 USD)"
    ) in done.stdout

    # What it says to do: raise the budget, deploy migrating, resume.
    source = tmp_path / "thrifty.cadence"
    source.write_text(THRIFTY.replace("budget 0.003 USD", "budget 1 USD"), "utf-8")
    for command in (["deploy", "--migrate", str(source)], ["resume", "thrifty"]):
        done = run_cadence(*command, store_url=store_url, cwd=tmp_path, columns=200)
        assert done.returncode == 0, done.stderr

    async def resumed(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.run_due()
        assert len(sink.delivered) == 2
        status = {row["name"]: row for row in await engine.status()}
        assert status["thrifty"]["status"] == "completed" and status["thrifty"]["sends"] == 5

    engine_run(store_url, resumed)


def test_a_budget_spent_mid_flow_holds_the_contact_at_its_next_send(store_url: str) -> None:
    source = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign thrifty {
  budget 0.05 USD
  cost email 0.02 USD
  on launch { send email a  wait 1d  send email b }
}
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(CONTACTS[:2])
        await engine.deploy(campaigns(source))
        await engine.launch("thrifty")
        await engine.run_until(T0 + dt.timedelta(days=2))
        # 0.05 USD at 0.02 an email: both `a`s, then the first `b` would pass the budget.
        # That contact waits at `send_b`; the other, due in the same batch and not stepped
        # after the pause, is held where it was.
        assert sorted(sent(sink)) == [("c1", "a"), ("c2", "a")]
        story = await engine.store.call(_budget_story)
        assert story["enrollments"] == {("paused", "send_b"): 1, ("paused", "wait_1d"): 1}
        assert [p["spent"] for p in story["pauses"]] == ["0.04"]
        # Nothing is due while it is paused: a run ends at once, without sending.
        assert await engine.next_due() is None
        assert (await engine.run_due()).steps == 0

    engine_run(store_url, body)


@pytest.mark.parametrize("backend", ["rust", "python"])
def test_the_rate_limiter_paces_deliveries(
    store_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    from cadence.dispatch import limiter
    from cadence.dispatch.limiter import ProviderLimit

    monkeypatch.setattr(
        limiter, "RateLimiter", functools.partial(limiter.RateLimiter, backend=backend)
    )
    clock = SimulatedClock(T0)
    sink = StampSink(clock)

    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(6)]
    source = 'template hello email { subject "Hi" body "x" }\non launch { send email hello }'

    async def main() -> None:
        limits = {"email": ProviderLimit(rate_per_s=2, burst=1)}
        async with Engine(store_url, clock=clock, sink=sink, rate_limits=limits) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(source))
            await engine.launch("t_launch")
            await engine.run_until(T0 + dt.timedelta(minutes=1))

    trio.run(main)
    stamps = [at for at, _, _ in sink.stamps]
    # Two a second, one at a time: 0, 0.5, 1.0, 1.5, 2.0 and 2.5 seconds after launch.
    assert stamps == [T0 + dt.timedelta(milliseconds=500 * i) for i in range(6)]


@pytest.mark.parametrize("backend", ["rust", "python"])
@pytest.mark.parametrize("rate_limited", [True, False])
def test_a_provider_429_slows_the_channel_s_limiter(
    store_url: str, backend: str, rate_limited: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    from cadence.dispatch import limiter
    from cadence.dispatch.limiter import ProviderLimit
    from cadence.engine.runtime import DeliveryResult

    monkeypatch.setattr(
        limiter, "RateLimiter", functools.partial(limiter.RateLimiter, backend=backend)
    )
    clock = SimulatedClock(T0)
    stamps: list[tuple[str, float]] = []

    class RefusesFirstSink(RecordingSink):
        """Answers the first delivery "retry in 5 s" (a 429 when `rate_limited`), then takes all."""

        refused = False

        async def deliver(self, messages: Any) -> Any:
            if not self.refused:
                self.refused = True
                retry_at = clock.now() + dt.timedelta(seconds=5)
                return [
                    DeliveryResult(m.outbox_id, False, error="busy", retry_at=retry_at,
                                   rate_limited=rate_limited)
                    for m in messages
                ]  # fmt: skip
            for m in messages:
                stamps.append((m.template, (clock.now() - T0).total_seconds()))
            return await super().deliver(messages)

    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(4)]
    source = """
template hello email { subject "Hi" body "x" }
template again email { subject "Again" body "x" }
on launch { send email hello  wait 20s  send email again }
"""

    async def main() -> None:
        limits = {"email": ProviderLimit(rate_per_s=2, burst=1, recovery_us=60_000_000)}
        sink = RefusesFirstSink()
        async with Engine(store_url, clock=clock, sink=sink, rate_limits=limits) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(source))
            await engine.launch("t_launch")
            await engine.run_until(T0 + dt.timedelta(minutes=2))

    trio.run(main)
    hello = [at for template, at in stamps if template == "hello"]
    again = [at for template, at in stamps if template == "again"]
    # The first send is refused at 0 s and retried at 5 s; the rest were planned before it.
    assert hello == [0.5, 1.0, 1.5, 5.0]
    if rate_limited:
        # After a 429 the provider runs at half rate (one a second) for the recovery minute.
        assert again == [20.0, 21.0, 22.0, 23.0]
    else:
        assert again == [20.0, 20.5, 21.0, 21.5]


@given(
    stored=st.lists(
        st.tuples(st.text(max_size=6), st.none() | st.text(max_size=4), st.text(max_size=8)),
        max_size=60,
    ),
    added=st.lists(
        st.tuples(st.text(max_size=6), st.none() | st.text(max_size=4), st.text(max_size=8)),
        max_size=8,
    ),
)
def test_history_appended_as_text_equals_the_list_kept_to_its_last_entries(
    stored: list[tuple[str, str | None, str]], added: list[tuple[str, str | None, str]]
) -> None:
    import json

    from cadence.engine.runtime import HISTORY, _append_history

    before = [list(entry) for entry in stored][-HISTORY:]
    new = [list(entry) for entry in added]
    text = _append_history(json.dumps(before), new)
    assert json.loads(text) == [*before, *new][-HISTORY:]
    # PostgreSQL renders jsonb with the same separators; a missing history counts as empty.
    assert json.loads(_append_history(None, new)) == new[-HISTORY:]


def test_engine_import_reports_the_file_s_lines_and_writes_nothing_on_a_bad_row(
    store_url: str, tmp_path: Any
) -> None:
    from cadence.engine.store.records import InvalidInput

    path = tmp_path / "people.csv"
    path.write_text(
        "id,email,timezone\nc1,ana@example.test,UTC\nc2,ben@example.test,Mars/Olympus\n",
        encoding="utf-8",
    )

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        with pytest.raises(InvalidInput) as caught:
            await engine.import_contacts(path)
        (problem,) = caught.value.problems
        assert (problem.row, problem.column) == (3, "timezone")
        assert await engine.contact_ids() == []
        report = await engine.import_contacts(path, skip_invalid=True)
        assert report.created == 1 and await engine.contact_ids() == ["c1"]

    engine_run(store_url, body)


def test_contacts_and_the_enrollments_they_trigger_commit_together(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    welcome = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign greet { on contact_created { send email hello } }
"""

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("crashed while enrolling")

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.deploy(campaigns(welcome))
        await engine.launch("greet")
        with monkeypatch.context() as patch:
            patch.setattr(Engine, "_after_contacts_changed_in", fail)
            with pytest.raises(RuntimeError, match="enrolling"):
                await engine.upsert_contacts(CONTACTS[:1])
        # Neither the contact nor an enrollment was kept, so trying again loses nothing.
        assert await engine.contact_ids() == []
        await engine.upsert_contacts(CONTACTS[:1])
        await engine.run_due()
        assert sent(sink) == [("c1", "hello")]

    engine_run(store_url, body)


TRACKED = """
template offer email { subject "Offer" body "<p>x</p>" }
template thanks email { subject "Thanks" body "<p>x</p>" }
campaign tracked {
  on launch {
    send email offer
    wait for clicked(offer) up to 1d
    if clicked(offer) { send email thanks }
  }
}
"""


def test_a_click_naming_only_its_message_counts_for_that_message(store_url: str) -> None:
    """A tracking link knows the send's key and a provider its own message id; neither
    says template, campaign or contact. The engine fills them in from the outbox."""
    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(1, 5)]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(TRACKED))
        await engine.launch("tracked")
        await engine.run_due()
        offers = {m.contact_id: m for m in sink.delivered}
        clock.advance_to(T0 + dt.timedelta(hours=1))
        await engine.push_events(
            [
                {"contact": "p1", "name": "clicked",
                 "properties": {"send": offers["p1"].idempotency_key}},
                # No contact: the provider's id for the message says who.
                {"name": "clicked",
                 "properties": {"message": f"rec-{offers['p2'].idempotency_key[:16]}"}},
                # Someone else's message: not linked, so not p3's click on the offer.
                {"contact": "p3", "name": "clicked",
                 "properties": {"send": offers["p4"].idempotency_key}},
            ]
        )  # fmt: skip
        await engine.run_until(T0 + dt.timedelta(days=2))

        def clicks(store: Store) -> list[tuple[str | None, dict[str, Any]]]:
            with store.session() as session:
                return [
                    (contact, dict(properties))
                    for contact, properties in session.execute(
                        select(Event.contact_id, Event.properties)
                        .where(Event.name == "clicked")
                        .order_by(Event.id)
                    )
                ]

        return await engine.store.call(clicks), offers, sent(sink)

    stored, offers, delivered = engine_run(store_url, body)
    key = offers["p2"].idempotency_key
    assert stored[1] == (
        "p2",
        {"message": f"rec-{key[:16]}", "send": key, "template": "offer",
         "campaign": "tracked", "channel": "email"},
    )  # fmt: skip
    assert stored[2][1] == {"send": offers["p4"].idempotency_key}
    thanked = sorted(c for c, t in delivered if t == "thanks")
    assert thanked == ["p1", "p2"]


HOLDOUT = """
template offer email { subject "Offer" body "<p>x</p>" }
campaign holdout {
  on launch { split { treated 90%: send email offer  holdout 10%: { tag add "holdout" } } }
}
"""


def test_a_holdout_is_exactly_its_share(store_url: str) -> None:
    """`holdout 10%` of 100 contacts holds out 10 of them, not "about 10"."""
    people = [{"id": f"p{i:03}", "email": f"p{i}@example.test"} for i in range(100)]

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(HOLDOUT))
        await engine.launch("holdout")
        await engine.run_until(T0 + dt.timedelta(hours=1))

        def tagged(store: Store) -> list[str]:
            with store.session() as session:
                return sorted(
                    cid
                    for cid, tags in session.execute(select(Contact.id, Contact.tags))
                    if "holdout" in (tags or [])
                )

        return sent(sink), await engine.store.call(tagged)

    delivered, held_out = engine_run(store_url, body)
    assert len(delivered) == 90 and len(held_out) == 10
    assert not {c for c, _ in delivered} & set(held_out)


OPENS_COUNTED = """
template a email { subject "A" body "<p>x</p>" }
template b email { subject "B" body "<p>x</p>" }
template thanks email { subject "Thanks" body "<p>x</p>" }
template more email { subject "More" body "<p>x</p>" }
template less email { subject "Less" body "<p>x</p>" }
campaign news {
  cap email 5 per 7d
  on launch {
    send email a
    wait 1h
    send email b
    wait 1d
    if count(opened, 30d) >= 2 { send email more } else { send email less }
  }
}
when opened count>=2 send email thanks
"""


def test_opens_count_once_per_message_in_counts_and_trigger_counts(store_url: str) -> None:
    """Three reports of one open are one opened message; a clicked message is opened too.

    p1 opens `a` three times (its own pixel, a provider's report, a reopen): one message.
    p2 opens `a` and `b`: two. p3 clicks `a` (its images were off) and opens `b`: two.
    (`news` lifts the default cap so the `thanks` of the other campaign holds none back.)
    """
    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(1, 4)]
    pushes = [
        ("p1", "opened", "a"), ("p1", "opened", "a"), ("p1", "opened", "a"),
        ("p2", "opened", "a"), ("p2", "opened", "b"),
        ("p3", "clicked", "a"), ("p3", "opened", "b"),
    ]  # fmt: skip

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.upsert_contacts(people)
        await engine.deploy(campaigns(OPENS_COUNTED))
        await engine.launch("news")
        await engine.launch("t_opened")
        await engine.run_until(T0 + dt.timedelta(hours=2))
        key = {(m.contact_id, m.template): m.idempotency_key for m in sink.delivered}
        for minutes, (contact, name, template) in enumerate(pushes, start=1):
            clock.advance_to(T0 + dt.timedelta(hours=2, minutes=minutes))
            await engine.push_event(
                {"contact": contact, "name": name, "properties": {"send": key[contact, template]}}
            )
        await engine.run_until(T0 + dt.timedelta(days=2))
        return sorted(sent(sink))

    assert engine_run(store_url, body) == sorted(
        [(p, t) for p in ("p1", "p2", "p3") for t in ("a", "b")]
        + [("p1", "less"), ("p2", "more"), ("p3", "more"), ("p2", "thanks"), ("p3", "thanks")]
    )
