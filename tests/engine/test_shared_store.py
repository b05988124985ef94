"""Two engines sharing one store, as several workers share a database in production.

Each test runs the engines' schedulers at the same time against one database; on PostgreSQL
their batches interleave, so these are the tests of what the store's locks must keep true:
no deadlock when both pause a campaign, and no budget or cap broken by two checks at once.
The `first_batches_overlap` tests make the interleaving certain instead of likely.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio
from sqlalchemy import func, select, update

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink, RunStats
from cadence.engine.store import Store, claims
from cadence.engine.store.models import Campaign, Enrollment, OutboxMessage
from tests.engine.test_runtime import T0, campaigns, engine_run
from tests.interleave import meet_after

AUDIENCE = [{"id": f"s{i:03}", "email": f"s{i:03}@example.test"} for i in range(300)]
ROUNDS = range(3)  # interleavings differ from run to run; a few rounds make a clash likely

STINGY = """
template a email { subject "A" body "x" }
campaign stingy {
  budget 0.05 USD
  cost email 0.001 USD
  on launch { send email a }
}
"""

CAPPED = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign alpha { cap email 1 per 1d  on launch { send email a } }
campaign beta { cap email 1 per 1d  on launch { send email b } }
"""


def _run_two_engines(
    store_url: str,
    source: str,
    names: list[str],
    batch_size: int = 20,
    stats: list[RunStats] | None = None,
) -> list[RecordingSink]:
    """Launch `names` from one engine, then run both engines' schedulers at once (what each
    run did goes to `stats`)."""
    clock = SimulatedClock(T0)
    sinks = [RecordingSink(), RecordingSink()]
    done = [] if stats is None else stats

    async def run(engine: Engine) -> None:
        done.append(await engine.run_due())

    async def main() -> None:
        async with (
            Engine(store_url, clock=clock, sink=sinks[0], batch_size=batch_size, owner="w1") as one,
            Engine(store_url, clock=clock, sink=sinks[1], batch_size=batch_size, owner="w2") as two,
        ):
            await one.upsert_contacts(AUDIENCE)
            await one.deploy(campaigns(source))
            for name in names:
                await one.approve(name, by="test")
                await one.launch(name)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, one)
                nursery.start_soon(run, two)

    trio.run(main)
    return sinks


@pytest.mark.parametrize("round_", ROUNDS)
def test_two_engines_spending_one_budget_pause_it_once_spent(store_url: str, round_: int) -> None:
    """Both find the budget spent and pause the campaign: no deadlock, not a cent over."""
    sinks = _run_two_engines(store_url, STINGY, ["stingy"])
    with Store.open(store_url) as store, store.session() as session:
        status = session.scalar(select(Campaign.status).where(Campaign.name == "stingy"))
        keys = session.scalars(select(OutboxMessage.idempotency_key)).all()
    assert status == "paused"
    # 0.05 USD at 0.001 an email: exactly fifty, whichever engine sent them.
    assert len(keys) == len(set(keys)) == 50
    delivered = [m.contact_id for sink in sinks for m in sink.delivered]
    assert len(delivered) == len(set(delivered)) == 50


@pytest.mark.parametrize("round_", ROUNDS)
def test_two_engines_keep_a_cap_across_campaigns(store_url: str, round_: int) -> None:
    """One email per contact per day across campaigns, with each engine sending either."""
    # A batch as large as the audience: one engine locks all of alpha's enrollments, so the
    # other's batch is beta's, for the same contacts, checked against the same cap at once.
    sinks = _run_two_engines(store_url, CAPPED, ["alpha", "beta"], batch_size=len(AUDIENCE))
    with Store.open(store_url) as store, store.session() as session:
        per_contact = Counter(session.scalars(select(OutboxMessage.contact_id)).all())
        total = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert set(per_contact.values()) == {1} and len(per_contact) == len(AUDIENCE) == total
    assert sum(len(sink.delivered) for sink in sinks) == len(AUDIENCE)


@pytest.fixture
def first_batches_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both engines' first batches are held at once: each, once it holds its batch's locks
    (rows, and the contacts and budgets its sends count against), waits for the other to
    do the same, unless the other is held back by those locks (then it waits a timeout)."""
    meet_after(monkeypatch, claims, "lock_send_counts")


def _sent(store_url: str) -> list[str]:
    """The contact of every outbox row."""
    with Store.open(store_url) as store, store.session() as session:
        return list(session.scalars(select(OutboxMessage.contact_id)))


@pytest.mark.usefixtures("first_batches_overlap")
def test_two_batches_held_at_once_step_each_enrollment_once(store_url: str) -> None:
    """Never a row in both: each enrollment steps once, each send is made and delivered
    once, whichever engine took it."""
    stats: list[RunStats] = []
    sinks = _run_two_engines(store_url, CAPPED, ["alpha"], stats=stats)
    assert sum(s.steps for s in stats) == len(AUDIENCE)
    delivered = sorted(m.contact_id for sink in sinks for m in sink.delivered)
    assert delivered == sorted(_sent(store_url)) == [p["id"] for p in AUDIENCE]
    if store_url.startswith("postgresql"):
        assert all(sink.delivered for sink in sinks), "both engines stepped"


@pytest.mark.usefixtures("first_batches_overlap")
def test_two_batches_checking_one_cap_at_once_keep_it(store_url: str) -> None:
    """Alpha's batch in one engine, beta's in the other, for the same people at once."""
    sinks = _run_two_engines(store_url, CAPPED, ["alpha", "beta"], batch_size=len(AUDIENCE))
    assert sorted(_sent(store_url)) == [p["id"] for p in AUDIENCE]
    assert sum(len(sink.delivered) for sink in sinks) == len(AUDIENCE)


@pytest.mark.usefixtures("first_batches_overlap")
def test_two_batches_spending_one_budget_at_once_stay_within_it(store_url: str) -> None:
    """Fifty emails' worth of budget, two engines' batches at the same instant."""
    sinks = _run_two_engines(store_url, STINGY, ["stingy"])
    assert len(_sent(store_url)) == sum(len(sink.delivered) for sink in sinks) == 50


@pytest.mark.parametrize("campaign_status", ["paused", "cancelled"])
def test_rows_left_active_in_a_halted_campaign_follow_it_unstepped(
    store_url: str, campaign_status: str
) -> None:
    """As another worker's pause leaves the rows a batch held: found due, they are halted."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.upsert_contacts(AUDIENCE[:5])
        await engine.deploy(campaigns(STINGY))
        await engine.approve("stingy", by="test")
        await engine.launch("stingy")
        with Store.open(store_url) as store, store.session() as session:
            session.execute(
                update(Campaign).where(Campaign.name == "stingy").values(status=campaign_status)
            )
        stats = await engine.run_due()
        assert stats.steps == 5 and stats.sends == 0 and sink.delivered == []
        with Store.open(store_url) as store, store.session() as session:
            statuses = session.scalars(select(Enrollment.status)).all()
        assert statuses == [campaign_status] * 5  # enrollments take the campaign's word
        if campaign_status == "paused":
            assert await engine.resume("stingy") == 5
            await engine.run_due()
            assert sorted(m.contact_id for m in sink.delivered) == [
                row["id"] for row in AUDIENCE[:5]
            ]

    engine_run(store_url, body)
