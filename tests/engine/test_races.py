"""Engines racing each other and the HTTP service on one store, at chosen interleavings.

Each test puts the other party's action at one exact point of an engine's work (through
a hook on the step that precedes it, never a sleep), on SQLite and PostgreSQL, and checks
what the design promises there: no send to someone who opted out before it went, no cap or
budget broken, no event stored twice. test_shared_store.py runs whole schedulers at once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from sqlalchemy import func, select, text

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, PushedEvents, RecordingSink
from cadence.engine.store import Store, claims, importer
from cadence.engine.store import sends as send_store
from cadence.engine.store.models import Event, OutboxMessage, SendLog
from tests.engine.test_runtime import T0, campaigns
from tests.interleave import meet_after

WELCOME = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign welcome { on launch { send email hello } }
"""
SIGNED_UP = """
template hi email { subject "Hi" body "<p>Hi</p>" }
campaign greet { when signed_up { send email hi } }
"""
PEOPLE = [
    {"id": "ana", "email": "ana@example.test"},
    {"id": "bo", "email": "bo@example.test"},
]

Opt = Callable[[Engine], Awaitable[Any]]
# What the HTTP service (another engine on the store) may record about Ana at any moment,
# each of which must stop an email to her that has not gone yet.
OPT_OUTS: dict[str, Opt] = {
    "unsubscribe": lambda e: e.push_event(
        {"contact": "ana", "name": "unsubscribed", "properties": {"channel": "email"}}
    ),
    "consent withdrawn": lambda e: e.set_consent("ana", "email", "withdrawn", source="api"),
    "hard bounce": lambda e: e.push_event(
        {"contact": "ana", "name": "bounced", "properties": {"channel": "email", "type": "hard"}}
    ),
}


def _two_engines(
    store_url: str,
    body: Callable[[Engine, Engine, RecordingSink], Awaitable[None]],
    clock: SimulatedClock | None = None,
) -> None:
    """Two engines on one store (workers, or a worker and the HTTP service), one clock
    (at T0 unless given); `body` gets them and the first one's sink."""
    clock = clock or SimulatedClock(T0)
    sink = RecordingSink()

    async def main() -> None:
        async with (
            Engine(store_url, clock=clock, sink=sink, owner="w1") as one,
            Engine(store_url, clock=clock, sink=RecordingSink(), owner="w2") as two,
        ):
            await body(one, two, sink)

    trio.run(main)


@pytest.mark.parametrize("opt_out", sorted(OPT_OUTS))
def test_an_opt_out_committed_after_the_step_stops_the_send_it_made(
    store_url: str, opt_out: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step queued Ana's email and committed; before the engine hands it to the
    provider, the service commits her opt-out. The delivery-time check must see it."""
    step = Engine._step_batch_sync
    service: list[Engine] = []

    def step_then_opt_out(self: Engine, store: Store) -> Any:
        stepped = step(self, store)
        if stepped[1] and service:
            # In the engine's worker thread, after its commit: the service's request runs now.
            trio.from_thread.run(OPT_OUTS[opt_out], service.pop())
        return stepped

    monkeypatch.setattr(Engine, "_step_batch_sync", step_then_opt_out)

    async def body(one: Engine, two: Engine, sink: RecordingSink) -> None:
        await one.upsert_contacts(PEOPLE)
        await one.deploy(campaigns(WELCOME))
        await one.launch("welcome")
        service.append(two)
        await one.run_due()
        assert not service, "the opt-out ran"
        assert [m.contact_id for m in sink.delivered] == ["bo"]

    _two_engines(store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        statuses = {
            contact: status
            for contact, status in session.execute(
                select(OutboxMessage.contact_id, OutboxMessage.status)
            )
        }
        skipped = session.scalars(select(SendLog.contact_id).where(SendLog.outcome == "skipped"))
        assert statuses == {"ana": "suppressed", "bo": "sent"}
        assert list(skipped) == ["ana"]


def test_one_event_pushed_twice_at_once_is_stored_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend retrying `POST /events` while its first try is still in flight, to another
    worker: both look for the event's `id`, neither finds it. One stores it, the other must
    answer that it was already there (not fail), and the trigger fires once."""
    meet_after(monkeypatch, importer, "new_events")
    event = {"contact": "ana", "name": "signed_up", "at": T0.isoformat(), "id": "evt-1"}
    answers: list[PushedEvents] = []

    async def body(one: Engine, two: Engine, sink: RecordingSink) -> None:
        await one.upsert_contacts(PEOPLE)
        await one.deploy(campaigns(SIGNED_UP))
        await one.launch("greet")

        async def push(engine: Engine) -> None:
            answers.append(await engine.push_events_counted([event]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(push, one)
            nursery.start_soon(push, two)
        await one.run_due()
        assert [m.contact_id for m in sink.delivered] == ["ana"]

    _two_engines(store_url, body)
    assert sorted((a.stored, a.duplicates, a.enrolled) for a in answers) == [(0, 1, 0), (1, 0, 1)]
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1


SERIES = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign series { on launch { send email a  wait 1d  send email b } }
"""


def _until_a_lock_holds_back(store_url: str) -> None:
    """Return once another transaction waits for a row lock this test's engine holds.

    On PostgreSQL a `deploy --migrate` reads the enrollments and then waits for the batch
    that holds them; that wait is visible in pg_stat_activity. On SQLite the deploy waits
    for the batch's write lock before it reads anything, so which runs first does not
    matter; a short pause lets it start.
    """
    if not store_url.startswith("postgresql"):
        time.sleep(0.2)
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    with Store.open(store_url, migrate=False) as store:
        while time.monotonic() < deadline:
            with store.session() as session:  # each look a fresh snapshot
                if session.scalar(waiting):
                    return
            time.sleep(0.01)
    raise AssertionError("the deploy never waited for the batch's locks")


def test_a_migration_while_a_batch_steps_keeps_the_batch_s_steps(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deploy --migrate` of a new version while an engine's batch holds the enrollments it
    moves: the batch sends `a` and moves them to the wait; the migration must move them
    from there, not from where they stood when it looked (`a` again, a second email)."""
    lock = claims.lock_due_enrollments
    deploys: list[Callable[[], Awaitable[Any]]] = []

    def lock_then_deploy(*args: Any, **kwargs: Any) -> Any:
        rows = lock(*args, **kwargs)
        if rows and deploys:
            trio.from_thread.run_sync(deploys.pop())
            _until_a_lock_holds_back(store_url)
        return rows

    monkeypatch.setattr(claims, "lock_due_enrollments", lock_then_deploy)
    clock = SimulatedClock(T0)
    received: list[tuple[str, str | None]] = []

    async def body(one: Engine, two: Engine, sink: RecordingSink) -> None:
        await one.upsert_contacts(PEOPLE)
        await one.deploy(campaigns(SERIES))
        await one.launch("series")
        moved: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def deploy() -> None:
                changed = SERIES.replace('subject "B"', 'subject "B, again"')
                moved.extend(await two.deploy(campaigns(changed), migrate=True))

            deploys.append(lambda: nursery.start_soon(deploy))
            await one.run_due()
        assert [r.moved for r in moved] == [2]
        for days in (1, 2):
            clock.advance_to(T0 + dt.timedelta(days=days))
            await one.run_due()
        received.extend(sorted((m.contact_id, m.template) for m in sink.delivered))

    _two_engines(store_url, body, clock)
    assert received == [("ana", "a"), ("ana", "b"), ("bo", "a"), ("bo", "b")]


REORDER = """
template receipt email { subject "Thanks" body "x" }
campaign receipts { reenter always  when order_placed { send email receipt } }
"""


def test_two_events_entering_a_reentrant_campaign_at_once_make_two_journeys(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two orders by Ana at the same moment, through two workers: `reenter always` makes
    each its own journey (and receipt), as it does when they come one after the other.
    Both look up her last journey before either enrolls her."""
    meet_after(monkeypatch, Engine, "_last_occurrences")
    orders = [
        {"contact": "ana", "name": "order_placed", "id": f"order-{n}", "properties": {"n": n}}
        for n in (1, 2)
    ]

    async def body(one: Engine, two: Engine, sink: RecordingSink) -> None:
        await one.upsert_contacts(PEOPLE)
        await one.deploy(campaigns(REORDER))
        await one.launch("receipts")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one.push_event, orders[0])
            nursery.start_soon(two.push_event, orders[1])
        await one.run_due()
        assert [(m.contact_id, m.template) for m in sink.delivered] == [("ana", "receipt")] * 2

    _two_engines(store_url, body)


GREETED = """
template welcome email { subject "Welcome" body "x" }
campaign confirmed {
  reenter always
  when consent_granted where event.channel == "email" { send email welcome }
}
"""


def test_one_opt_in_link_pressed_twice_at_once_confirms_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The confirmation page's button posted twice (a double click reaching two workers):
    the single-use token grants the consent once, one `consent_granted`, one welcome."""
    meet_after(monkeypatch, send_store, "pending_double_opt_in")
    answers: list[Any] = []

    async def body(one: Engine, two: Engine, sink: RecordingSink) -> None:
        await one.upsert_contacts(PEOPLE)
        await one.deploy(campaigns(GREETED))
        await one.launch("confirmed")
        asked = await one.set_consent("ana", "email", "pending", source="signup form")
        assert asked.token is not None

        async def confirm(engine: Engine) -> None:
            answers.append(await engine.confirm_opt_in(str(asked.token)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(confirm, one)
            nursery.start_soon(confirm, two)
        await one.run_due()
        assert [(m.contact_id, m.template) for m in sink.delivered] == [("ana", "welcome")]

    _two_engines(store_url, body)
    assert sorted(answer is None for answer in answers) == [False, True]
    with Store.open(store_url) as store, store.session() as session:
        granted = session.scalar(
            select(func.count()).select_from(Event).where(Event.name == "consent_granted")
        )
    assert granted == 1
