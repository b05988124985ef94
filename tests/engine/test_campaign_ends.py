"""After its `ends`, a campaign enrolls nobody: not by an event, a new contact or `enroll`.

LANGUAGE.md: "nobody is enrolled before starts and nothing is sent after ends". A triggered
campaign stays active after `ends` while earlier journeys are still finishing; an event
then made an enrollment that exited at once ("campaign ended"), counted in the reports as
enrolled and in the funnel as having reached the first step.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Enrollment
from tests.engine.test_runtime import T0, campaigns, engine_run

OPEN_HOUSE = """
template rsvp email { subject "See you there" body "x" }
template followup email { subject "How was it?" body "x" }
campaign open_house {
  timezone "Asia/Manila"
  starts 2026-12-01
  ends 2026-12-02
  when enquiry { send email rsvp  wait 3d  send email followup }
}
campaign router {
  when route { enroll open_house }
}
campaign greet {
  ends 2026-12-02T16:00
  on contact_created { send email rsvp  wait 5d  send email followup }
}
"""
# 2026-12-02 ends at the following midnight in Manila: 2026-12-02T16:00Z.
ENDS = dt.datetime(2026, 12, 2, 16, 0, tzinfo=dt.UTC)
PEOPLE = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(1, 5)]


def test_no_enrollment_after_ends_while_earlier_journeys_finish(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(OPEN_HOUSE))
        await engine.launch("open_house")
        await engine.launch("router")
        await engine.launch("greet")
        await engine.upsert_contacts([{"id": "p0", "email": "p0@example.test"}])
        await engine.push_events([{"contact": "p1", "name": "enquiry", "at": T0.isoformat()}])
        await engine.run_due()
        clock.advance_to(ENDS - dt.timedelta(seconds=1))
        await engine.push_events([{"contact": "p2", "name": "enquiry"}])
        await engine.run_due()
        clock.advance_to(ENDS)
        # p1 is still waiting, so the campaign is still active: these came too late.
        await engine.push_events([{"contact": "p3", "name": "enquiry"}])
        await engine.push_events([{"contact": "p4", "name": "route"}])
        await engine.upsert_contacts([{"id": "p5", "email": "p5@example.test"}])
        await engine.run_until(ENDS + dt.timedelta(days=5))
        return sink

    sink = engine_run(store_url, body)
    assert sorted((m.contact_id, m.template) for m in sink.delivered) == [
        ("p0", "rsvp"),
        ("p1", "rsvp"),
        ("p2", "rsvp"),
    ]
    with Store.open(store_url) as store, store.session() as session:
        enrolled = sorted(
            session.scalars(
                select(Enrollment.contact_id).where(Enrollment.contact_id.in_(["p3", "p4", "p5"]))
            )
        )
    assert enrolled == ["p4"]  # in the router only


LONG_WAIT = """
template hello email { subject "Hello" body "x" }
template later email { subject "Later" body "x" }
campaign short_run {
  ends 2026-12-02T16:00
  on launch { send email hello  wait 30d  send email later }
}
"""


def test_a_journey_waiting_past_ends_ends_with_the_campaign(store_url: str) -> None:
    """A contact waiting when `ends` comes ends then ("campaign ended"), and the campaign
    completes: it stayed active, its journeys counted as running, until the wait's end a
    month later, though nothing could be sent after `ends`."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> object:
        await engine.upsert_contacts(PEOPLE[:2])
        await engine.deploy(campaigns(LONG_WAIT))
        await engine.launch("short_run")
        await engine.run_due()
        assert await engine.next_due() == ENDS
        await engine.run_until(ENDS + dt.timedelta(hours=1))
        (row,) = await engine.status()
        return row, [(m.contact_id, m.template) for m in sink.delivered]

    row, delivered = engine_run(store_url, body)
    assert delivered == [("p1", "hello"), ("p2", "hello")]
    assert row["status"] == "completed" and row["enrollments"] == {"exited": 2}
    with Store.open(store_url) as store, store.session() as session:
        histories = list(session.scalars(select(Enrollment.history)))
    assert all(history[-1][0] == ENDS.isoformat() for history in histories)
    assert all(history[-1][2] == "campaign ended" for history in histories)


OVER = """
template hello email { subject "Hello" body "x" }
campaign last_call { ends 2026-11-30  on launch { send email hello } }
campaign weekly { ends 2026-11-30  every monday 09:00 { send email hello } }
"""


def test_launching_a_campaign_past_its_ends_enrolls_nobody(store_url: str) -> None:
    """A launch after `ends` enrolled the whole audience (an `every` campaign booked runs
    after its end and stayed active until then), each journey exiting at once, counted as
    enrolled; it now enrolls nobody and the campaign is completed."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> object:
        await engine.upsert_contacts(PEOPLE[:2])
        await engine.deploy(campaigns(OVER))
        launched = [await engine.launch(name) for name in ("last_call", "weekly")]
        await engine.upsert_contacts([{"id": "p9", "email": "p9@example.test"}])
        await engine.run_until(T0 + dt.timedelta(days=8))
        return launched, await engine.status(), len(sink.delivered)

    launched, status, delivered = engine_run(store_url, body)
    assert launched == [0, 0] and delivered == 0
    assert [(row["status"], row["enrollments"]) for row in status] == [("completed", {})] * 2
