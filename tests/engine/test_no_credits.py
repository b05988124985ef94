"""A provider out of credit pauses the campaigns whose sends it refused: the sends wait (not
failed, not lost), `status` says why and what to do, and a resume after the top-up sends
each once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from sqlalchemy import select

from cadence.engine.clock import SimulatedClock
from cadence.engine.describe import pause_text
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage
from cadence.engine.store import Store
from cadence.engine.store.models import OutboxMessage
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template first email { subject "First" body "x" }
template second email { subject "Second" body "x" }
campaign drip { on launch { send email first  wait 1d  send email second } }
"""
PEOPLE = [{"id": "ana", "email": "ana@example.test"}, {"id": "bo", "email": "bo@example.test"}]
REFUSAL = "Brevo 402 not_enough_credits: You don't have enough credit to send"


@dataclass
class BrokeSink:
    """Brevo with a spent balance until `topped_up`: every send refused for credit."""

    topped_up: bool = False
    delivered: list[tuple[str, str | None]] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        if self.topped_up:
            self.delivered += [(m.contact_id, m.template) for m in messages]
            return [DeliveryResult(m.outbox_id, True, "brevo", f"id-{m.outbox_id}")
                    for m in messages]  # fmt: skip
        retry = T0 + dt.timedelta(minutes=5)
        return [
            DeliveryResult(m.outbox_id, False, "brevo", error=REFUSAL, retry_at=retry,
                           no_credits=True)
            for m in messages
        ]  # fmt: skip


def test_no_credit_pauses_the_campaign_and_a_resume_after_the_top_up_sends_each_once(
    store_url: str,
) -> None:
    sink = BrokeSink()

    async def main() -> None:
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(SOURCE))
            await engine.launch("drip")
            await engine.run_until(T0 + dt.timedelta(days=3))
            (row,) = await engine.status()
            assert row["status"] == "paused" and row["pause"]["reason"] == "no_credits"
            said = pause_text(row["pause"])
            assert "brevo account has no credit left for email" in said and REFUSAL in said
            assert "cadence resume" in said and sink.delivered == []

            sink.topped_up = True
            await engine.resume("drip")
            await engine.run_until(T0 + dt.timedelta(days=5))

    trio.run(main)
    assert sorted(sink.delivered) == [
        ("ana", "first"), ("ana", "second"), ("bo", "first"), ("bo", "second"),
    ]  # fmt: skip
    with Store.open(store_url) as store, store.session() as session:
        statuses = session.scalars(select(OutboxMessage.status)).all()
    assert sorted(statuses) == ["sent"] * 4
