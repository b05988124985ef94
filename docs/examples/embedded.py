"""Embed the Cadence engine in a Trio program: deploy, launch, push events, run on a clock.

Run it with `python docs/examples/embedded.py`; it uses an in-memory SQLite store and a
simulated clock, so it finishes at once and sends nothing.
"""

from __future__ import annotations

import datetime as dt

import trio

import cadence
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.runtime import RecordingSink

SOURCE = """
template welcome email { subject "Welcome, {{ contact.first_name }}" body "<p>Hi!</p>" }
template tips email { subject "Three tips" body "<p>Tips</p>" }
template details email { subject "The home you keep viewing" body "<p>Details</p>" }

campaign onboarding { on contact_created { send email welcome  wait 2d  send email tips } }
when property_viewed count>=3 wait 1h send email details
"""


async def main() -> None:
    """Run two campaigns for three simulated days and print what would be sent."""
    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    clock = cadence.SimulatedClock(start)
    sink = RecordingSink()  # stands where the channel adapters go in production
    async with cadence.Engine(database_url="sqlite://", clock=clock, sink=sink) as engine:
        campaigns = compile_workspace(load_text(SOURCE, "app.cadence"))
        await engine.deploy(campaigns)
        for campaign in campaigns:
            await engine.launch(campaign.name)
        await engine.upsert_contacts(
            [{"id": "c1", "email": "ana@example.test", "first_name": "Ana", "timezone": "UTC"}]
        )
        for hour in range(3):
            clock.advance_to(start + dt.timedelta(hours=hour))
            await engine.push_event({"contact": "c1", "name": "property_viewed"})
        await engine.run_until(start + dt.timedelta(days=3))
        for message in sink.delivered:
            print(message.contact_id, message.campaign, message.template)


if __name__ == "__main__":
    trio.run(main)
