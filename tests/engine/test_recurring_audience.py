"""A contact who joins an `every` or `at` campaign's audience after the launch gets the
runs still to come, not only a contact created after it.

docs/language.md, `audience`: "An `at` or `every` run reads the audience (and `exclude`)
again when it comes". The runs were booked per contact at the launch (and for contacts
created later), so someone who opted in on Tuesday never got Monday's digest.
"""

from __future__ import annotations

import datetime as dt

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from tests.engine.test_runtime import T0, campaigns, engine_run

DIGEST = """
template digest email { subject "Your digest" body "x" }
template launch_news email { subject "We launched" body "x" }
campaign digest {
  audience newsletter_opt_in or count(signed_up, 30d) >= 1
  every monday 09:00 { send email digest }
}
campaign launch_day {
  audience newsletter_opt_in
  at 2026-12-10T12:00 { send email launch_news }
}
"""
PEOPLE = [
    {"id": "in", "email": "in@example.test", "attributes": {"newsletter_opt_in": True}},
    {"id": "later", "email": "later@example.test", "attributes": {"newsletter_opt_in": False}},
    {"id": "signup", "email": "signup@example.test"},
    {"id": "never", "email": "never@example.test", "attributes": {"newsletter_opt_in": False}},
]


def test_joining_the_audience_books_the_runs_to_come(store_url: str) -> None:
    # T0 is Tuesday 2026-12-01 09:00 UTC; Mondays are 7 and 14 December.
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> RecordingSink:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(DIGEST))
        await engine.launch("digest")
        await engine.launch("launch_day")
        await engine.run_until(dt.datetime(2026, 12, 8, 9, 0, tzinfo=dt.UTC))
        await engine.upsert_contacts([{"id": "later", "attributes": {"newsletter_opt_in": True}}])
        await engine.push_events([{"contact": "signup", "name": "signed_up"}])
        await engine.run_until(dt.datetime(2026, 12, 15, 9, 0, tzinfo=dt.UTC))
        return sink

    sink = engine_run(store_url, body)
    assert sorted((m.contact_id, m.template) for m in sink.delivered) == [
        ("in", "digest"),
        ("in", "digest"),
        ("in", "launch_news"),
        ("later", "digest"),
        ("later", "launch_news"),
        ("signup", "digest"),
    ]
    assert T0.weekday() == 1
