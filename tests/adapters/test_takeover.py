"""A send whose engine's lease runs out mid-delivery, taken over by another engine.

The first engine has handed its batch to Brevo (the loopback stand-in) but not yet
recorded the outcome when its lease expires; the second engine claims the same sends and
delivers them again, with the same idempotency keys. Delivery is at least once inside
Cadence; the provider, shown the same key, takes each message once, and the store records
each send once, by the engine that holds it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import trio
from sqlalchemy import func, select

from cadence.adapters.config import load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.adapters.standins import start_standins
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import LEASE, DeliveryResult, Engine, OutgoingMessage
from cadence.engine.store import Store
from cadence.engine.store.models import OutboxMessage, SendLog
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign welcome { from "Acme <hello@acme.test>"  on launch { send email hello } }
"""
PEOPLE = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(3)]


class StalledSink:
    """A sink that delivers, then (with a `takeover` engine, once) stalls before its engine
    records anything: meanwhile the lease runs out and the other engine runs."""

    def __init__(
        self, inner: AdapterSink, clock: SimulatedClock, takeover: Engine | None = None
    ) -> None:
        self.inner, self.clock, self.takeover = inner, clock, takeover
        self.keys: list[str] = []
        self.stalled = False

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        results = await self.inner.deliver(messages)
        self.keys.extend(m.idempotency_key for m in messages)
        if self.takeover is not None and not self.stalled:
            self.stalled = True
            self.clock.advance_to(self.clock.now() + LEASE + dt.timedelta(seconds=1))
            assert (await self.takeover.run_due()).delivered == len(messages)
        return results


def test_a_send_taken_over_mid_delivery_reaches_the_provider_once(store_url: str) -> None:
    clock = SimulatedClock(T0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            standins = await start_standins(nursery)
            outbound = Outbound(load_settings(env=standins.environment()))
            sources = [StoreContentSource(store_url), StoreContentSource(store_url)]
            try:
                taker = StalledSink(AdapterSink(outbound, sources[1]), clock)
                async with Engine(store_url, clock=clock, sink=taker, owner="w2") as two:
                    stalled = StalledSink(AdapterSink(outbound, sources[0]), clock, two)
                    async with Engine(store_url, clock=clock, sink=stalled, owner="w1") as one:
                        await one.upsert_contacts(PEOPLE)
                        await one.deploy(campaigns(SOURCE))
                        await one.launch("welcome")
                        await one.run_due()
                        assert stalled.stalled
                        # Both engines handed over the same three keys ...
                        assert len(set(stalled.keys)) == len(PEOPLE)
                        assert sorted(taker.keys) == sorted(stalled.keys)
                        # ... and the provider took each message once.
                        emails = sorted(e.to for e in standins.brevo.emails)
                        assert emails == sorted(p["email"] for p in PEOPLE)
            finally:
                with trio.CancelScope(shield=True):
                    await outbound.aclose()
                for source in sources:
                    source.close()
                nursery.cancel_scope.cancel()

    trio.run(main)
    with Store.open(store_url) as store, store.session() as session:
        statuses = session.scalars(select(OutboxMessage.status)).all()
        sent_logs = session.scalar(
            select(func.count()).select_from(SendLog).where(SendLog.outcome == "sent")
        )
    assert sorted(statuses) == ["sent"] * len(PEOPLE)
    assert sent_logs == len(PEOPLE)  # the engine that lost the lease records nothing
