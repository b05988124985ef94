"""The engine against LANGUAGE.md, on both stores: exact sends and times for small audiences.

Each test runs a construct as the language sketch writes it and checks what goes out, and
when, against what the text says should happen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import trio
from sqlalchemy import select

from cadence.engine.clock import SimulatedClock, as_utc
from cadence.engine.runtime import Engine
from cadence.engine.store import Store
from cadence.engine.store.models import SendLog
from tests.engine.test_runtime import StampSink, campaigns
from tests.language_md import language_blocks


def utc(text: str) -> dt.datetime:
    """An instant written as `2026-12-01T09:00`, in UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def contact(cid: str, zone: str | None = "UTC", **attributes: Any) -> dict[str, Any]:
    """A contact with an email address, a time zone and attributes."""
    row: dict[str, Any] = {"id": cid, "email": f"{cid}@example.test", "attributes": attributes}
    if zone is not None:
        row["timezone"] = zone
    return row


Body = Callable[[Engine, SimulatedClock, StampSink], Awaitable[Any]]
# Why the default cap (docs/language.md, `cap`) skips an email.
DEFAULT_CAPPED = "default cap email 3 per 7d reached"


def skipped(url: str) -> list[tuple[dt.datetime, str, str]]:
    """(time, contact, reason) of every send a gate skipped, in order."""
    with Store.open(url) as store, store.session() as session:
        rows = session.execute(
            select(SendLog.at, SendLog.contact_id, SendLog.detail)
            .where(SendLog.outcome == "skipped")
            .order_by(SendLog.at, SendLog.contact_id)
        ).all()
    return [(as_utc(at), contact_id, detail["reason"]) for at, contact_id, detail in rows]


def run_engine(url: str, start: dt.datetime, body: Body) -> Any:
    """Open an engine on `url` with a simulated clock at `start` and run `body` in Trio."""
    clock = SimulatedClock(start)
    sink = StampSink(clock)

    async def main() -> Any:
        async with Engine(url, clock=clock, sink=sink) as engine:
            return await body(engine, clock, sink)

    return trio.run(main)


async def launch_all(engine: Engine, source: str) -> None:
    """Deploy, approve and launch every campaign of `source`."""
    compiled = campaigns(source)
    await engine.deploy(compiled)
    for campaign in compiled:
        await engine.approve(campaign.name, by="test")
        await engine.launch(campaign.name)


async def at_times(
    engine: Engine,
    clock: SimulatedClock,
    steps: Iterable[tuple[dt.datetime, Callable[[], Awaitable[Any]]]],
) -> None:
    """Run the engine up to each moment, then do that step there."""
    for moment, action in steps:
        await engine.run_until(moment)
        clock.advance_to(max(moment, clock.now()))
        await action()


def event(contact_id: str | None, name: str, **properties: Any) -> Mapping[str, Any]:
    """An event for the ingestion API (`contact` left out for an event about a thing)."""
    row: dict[str, Any] = {"name": name, "properties": properties}
    if contact_id is not None:
        row["contact"] = contact_id
    return row


# ---------------------------------------------------------------------------- starts / every

STARTS_LATER = """
template welcome email { subject "Welcome" body "b" }
campaign welcome_series { starts 2026-12-01  on contact_created { send email welcome } }
"""


def test_a_campaign_launched_before_starts_takes_enrollments_from_then_on(store_url: str) -> None:
    # "nobody is enrolled before `starts`": and from then on, its triggers fire.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[str]:
        await launch_all(engine, STARTS_LATER)
        assert [row["status"] for row in await engine.status()] == ["scheduled"]
        await at_times(
            engine,
            clock,
            [
                (utc("2026-11-28T10:00"), lambda: engine.upsert_contacts([contact("early")])),
                (utc("2026-12-02T10:00"), lambda: engine.upsert_contacts([contact("late")])),
            ],
        )
        await engine.run_until(utc("2026-12-03T00:00"))
        assert sink.stamps == [(utc("2026-12-02T10:00"), "late", "welcome")]
        return [row["status"] for row in await engine.status()]

    assert run_engine(store_url, utc("2026-11-27T00:00"), body) == ["active"]


def test_a_campaign_paused_and_resumed_before_starts_is_scheduled_again(
    store_url: str,
) -> None:
    # Resuming gives back the status the pause took: a campaign that has not reached its
    # `starts` is scheduled, and enrolls nobody before then (it was made active and its
    # trigger took contacts created before `starts`).
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[str]:
        await launch_all(engine, STARTS_LATER)
        await engine.pause("welcome_series")
        await engine.resume("welcome_series")
        assert [row["status"] for row in await engine.status()] == ["scheduled"]
        await at_times(
            engine,
            clock,
            [
                (utc("2026-11-28T10:00"), lambda: engine.upsert_contacts([contact("early")])),
                (utc("2026-12-02T10:00"), lambda: engine.upsert_contacts([contact("late")])),
            ],
        )
        await engine.run_until(utc("2026-12-03T00:00"))
        assert sink.stamps == [(utc("2026-12-02T10:00"), "late", "welcome")]
        return [row["status"] for row in await engine.status()]

    assert run_engine(store_url, utc("2026-11-27T00:00"), body) == ["active"]


FORTNIGHTLY = """
template fortnightly_report email {
  subject "Your fortnightly market report"
  body "<p>Prices, new listings and what sold in the last two weeks.</p>"
}

campaign fortnightly "Fortnightly report" {
  type recurring
  channels email
  starts 2027-01-04
  every 2w 10:00 local { send email fortnightly_report }
}
"""


def test_every_two_weeks_counts_from_the_campaign_start(store_url: str) -> None:
    # "`every 2w 10:00 local` runs at the first 10:00 from the campaign's start and then
    # every two weeks at 10:00". Launched three days before `starts`.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [contact("ny", "America/New_York"), contact("mnl", "Asia/Manila")]
        )
        await launch_all(engine, FORTNIGHTLY)
        await engine.run_until(utc("2027-02-10T00:00"))
        return sink.stamps

    stamps = run_engine(store_url, utc("2027-01-01T00:00"), body)
    report = "fortnightly_report"
    assert stamps == [
        (utc("2027-01-04T02:00"), "mnl", report),  # 10:00 in Manila
        (utc("2027-01-04T15:00"), "ny", report),  # 10:00 in New York
        (utc("2027-01-18T02:00"), "mnl", report),
        (utc("2027-01-18T15:00"), "ny", report),
        (utc("2027-02-01T02:00"), "mnl", report),
        (utc("2027-02-01T15:00"), "ny", report),
    ]


def test_a_campaign_paused_while_scheduled_starts_at_resume_with_who_joined(
    store_url: str,
) -> None:
    # Paused before its `starts` and resumed after it, the campaign starts at the resume as
    # it would have at `starts`: a contact who joined the audience while it was scheduled
    # (mnl, created between the launch and the pause) joins its runs like one booked at the
    # launch (ny). The first run fell due during the pause: both get it at the resume, once;
    # the next is two weeks after that run, not after the resume.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("ny", "America/New_York")])
        await launch_all(engine, FORTNIGHTLY)
        await at_times(
            engine,
            clock,
            [
                (
                    utc("2027-01-02T00:00"),
                    lambda: engine.upsert_contacts([contact("mnl", "Asia/Manila")]),
                ),
                (utc("2027-01-03T00:00"), lambda: engine.pause("fortnightly")),
                (utc("2027-01-05T00:00"), lambda: engine.resume("fortnightly")),
            ],
        )
        assert [row["status"] for row in await engine.status()] == ["active"]
        await engine.run_until(utc("2027-01-20T00:00"))
        return sink.stamps

    stamps = run_engine(store_url, utc("2027-01-01T00:00"), body)
    report = "fortnightly_report"
    assert sorted(stamps) == [
        (utc("2027-01-05T00:00"), "mnl", report),  # due 01-04 10:00 Manila, during the pause
        (utc("2027-01-05T00:00"), "ny", report),  # due 01-04 10:00 New York, likewise
        (utc("2027-01-18T02:00"), "mnl", report),
        (utc("2027-01-18T15:00"), "ny", report),
    ]


WEEKLY = """
template weekly_digest email { subject "This week" body "<p>New listings.</p>" }

campaign weekly {
  type recurring
  every 1w 10:00 { send email weekly_digest }
}
"""


def test_a_contact_who_joins_an_interval_series_gets_its_next_run(store_url: str) -> None:
    # "An interval (`every 1w`) fires at `start` and every interval after it": launched on
    # Monday 2027-01-04, the digest goes on Mondays. A contact created on Wednesday gets the
    # next Monday's run, not a series of their own on Wednesdays.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("early")])
        await launch_all(engine, WEEKLY)
        await at_times(
            engine,
            clock,
            [(utc("2027-01-06T09:00"), lambda: engine.upsert_contacts([contact("late")]))],
        )
        await engine.run_until(utc("2027-01-19T00:00"))
        return sink.stamps

    stamps = run_engine(store_url, utc("2027-01-04T08:00"), body)
    digest = "weekly_digest"
    assert stamps == [
        (utc("2027-01-04T10:00"), "early", digest),
        (utc("2027-01-11T10:00"), "early", digest),
        (utc("2027-01-11T10:00"), "late", digest),
        (utc("2027-01-18T10:00"), "early", digest),
        (utc("2027-01-18T10:00"), "late", digest),
    ]


def test_every_named_day_starts_on_the_first_such_day_after_starts(store_url: str) -> None:
    # Launched on Tuesday 1 December with `starts` on Wednesday the 9th: the first Monday
    # 09:00 from the start is the 14th, not the 7th moved to the start's midnight.
    source = """
template digest email { subject "Weekly" body "b" }
campaign weekly { starts 2026-12-09  every monday 09:00 local { send email digest } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("u")])
        await launch_all(engine, source)
        await engine.run_until(utc("2026-12-22T00:00"))
        return sink.stamps

    assert run_engine(store_url, utc("2026-12-01T09:30"), body) == [
        (utc("2026-12-14T09:00"), "u", "digest"),
        (utc("2026-12-21T09:00"), "u", "digest"),
    ]


def test_every_interval_without_a_time_runs_from_the_launch(store_url: str) -> None:
    source = """
template ping email { subject "Ping" body "b" }
campaign six_hourly { every 6h { send email ping } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("u")])
        await launch_all(engine, source)
        await engine.run_until(utc("2026-12-02T09:00"))
        return [stamp for stamp, _, _ in sink.stamps]

    # The fourth run, at 03:30, is the contact's 4th email within 7 days: the default cap
    # skips its send (this expected four deliveries before the business rule of at most 3
    # emails per week per contact; the run itself still comes at its time).
    assert run_engine(store_url, utc("2026-12-01T09:30"), body) == [
        utc("2026-12-01T09:30"),
        utc("2026-12-01T15:30"),
        utc("2026-12-01T21:30"),
    ]
    assert skipped(store_url) == [(utc("2026-12-02T03:30"), "u", DEFAULT_CAPPED)]


# ---------------------------------------------------------------------------- segment_enter

MARKETING_QUALIFIED = """
segment marketing_qualified = lead_score >= 30 and email_verified

template intro email {
  subject "A quick hello from {{ company.name }}"
  body "<p>Who we are, in one minute.</p>"
}

on segment_enter marketing_qualified { send email intro }
"""


def test_segment_enter_skips_contacts_who_already_matched(store_url: str, tmp_path: Any) -> None:
    # "Fires when a contact starts matching a segment (it did not match before, it does now).
    # Contacts who already match when the campaign starts are not enrolled by this trigger."
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [
                contact("already", lead_score=50, email_verified=True),
                contact("later", lead_score=10, email_verified=True),
                contact("by_file", lead_score=60, email_verified=True),
                contact("by_event", lead_score=40, email_verified=True),
            ]
        )
        await launch_all(engine, MARKETING_QUALIFIED)
        update = tmp_path / "update.jsonl"
        update.write_text(
            '{"id": "by_file", "attributes": {"lead_score": 70}}\n'
            '{"id": "later", "attributes": {"lead_score": 35}}\n',
            "utf-8",
        )
        await at_times(
            engine,
            clock,
            [
                # Still matching after a change: no entry.
                (
                    utc("2026-12-01T10:00"),
                    lambda: engine.upsert_contacts([{"id": "already", "attributes": {"x": 1}}]),
                ),
                (utc("2026-12-01T11:00"), lambda: engine.import_contacts(update)),
                (utc("2026-12-01T12:00"), lambda: engine.push_event(event("by_event", "visit"))),
                # A new contact that matches from the start enters.
                (
                    utc("2026-12-01T13:00"),
                    lambda: engine.upsert_contacts(
                        [contact("new", lead_score=90, email_verified=True)]
                    ),
                ),
            ],
        )
        await engine.run_until(utc("2026-12-02T00:00"))
        return sink.stamps

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T11:00"), "later", "intro"),  # 10 -> 35 by the file: entered
        (utc("2026-12-01T13:00"), "new", "intro"),
    ]


def test_segment_enter_fires_again_only_after_leaving(store_url: str) -> None:
    source = (
        MARKETING_QUALIFIED.replace(
            "on segment_enter", "campaign mql { reenter always on segment_enter"
        )
        + "}"
    )

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("c", lead_score=10, email_verified=True)])
        await launch_all(engine, source)

        def score(value: int) -> Callable[[], Awaitable[Any]]:
            return lambda: engine.upsert_contacts(
                [{"id": "c", "attributes": {"lead_score": value}}]
            )

        await at_times(
            engine,
            clock,
            [
                (utc("2026-12-01T10:00"), score(40)),  # enters
                (utc("2026-12-01T11:00"), score(45)),  # still in
                (utc("2026-12-01T12:00"), score(5)),  # leaves
                (utc("2026-12-01T13:00"), score(50)),  # enters again
            ],
        )
        await engine.run_until(utc("2026-12-02T00:00"))
        return [stamp for stamp, _, _ in sink.stamps]

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        utc("2026-12-01T10:00"),
        utc("2026-12-01T13:00"),
    ]


def test_starts_and_ends_are_read_in_the_campaign_timezone(store_url: str) -> None:
    # "A date as `ends` includes that whole day (it ends at the following midnight,
    # campaign timezone)": the same instant for a contact in Manila as for one in UTC.
    source = """
template a email { subject "A" body "b" }
template b email { subject "B" body "b" }
campaign short {
  ends 2026-12-02
  on launch { send email a  wait 1d  wait until 20:00  send email b }
}
campaign later { starts 2026-12-05  timezone "America/New_York"  on launch { send email a } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("mnl", "Asia/Manila"), contact("utc")])
        await launch_all(engine, source)
        await engine.run_until(utc("2026-12-06T00:00"))
        return sorted(sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T09:00"), "mnl", "a"),
        (utc("2026-12-01T09:00"), "utc", "a"),
        # 20:00 UTC on 2 December is already the 3rd in Manila, but still before the end.
        (utc("2026-12-02T20:00"), "mnl", "b"),
        (utc("2026-12-02T20:00"), "utc", "b"),
        # 00:00 on 5 December in New York, for both.
        (utc("2026-12-05T05:00"), "mnl", "a"),
        (utc("2026-12-05T05:00"), "utc", "a"),
    ]


# ---------------------------------------------------------------------------- fan-out


def language_block(containing: str) -> str:
    """The fenced block of LANGUAGE.md that contains `containing`, exactly as written."""
    (block,) = [block for block in language_blocks() if containing in block]
    return block


LISTINGS = """
template new_listing email { subject "New in {{ event.city }}" body "<p>{{ event.price }}</p>" }
template price_drop email { subject "Price drop" body "<p>Now {{ event.price }}</p>" }
""" + language_block("when property_listed for contacts")


def test_fanout_sends_every_event_to_every_contact_it_matches(store_url: str) -> None:
    # "An event about a thing rather than a person fans out to the contacts it matches":
    # each listing reaches each matching contact, also one who matched an earlier listing.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [
                contact(
                    "rich", budget_max=900000, areas=["Makati", "BGC"], saved_properties=["p1"]
                ),
                contact("modest", budget_max=100000, areas=["Makati"], saved_properties=["p2"]),
                contact("no_budget", areas=["Makati"]),  # unknown budget: not matched
                contact("elsewhere", budget_max=900000, areas=["Cebu"], saved_properties=["p1"]),
            ]
        )
        await launch_all(engine, LISTINGS)
        listed = "property_listed"
        await at_times(
            engine,
            clock,
            [
                (
                    utc("2026-12-01T10:00"),
                    lambda: engine.push_event(event(None, listed, price=500000, city="Makati")),
                ),
                (
                    utc("2026-12-01T11:00"),
                    lambda: engine.push_event(event(None, listed, price=50000, city="Makati")),
                ),
                (
                    utc("2026-12-01T12:00"),
                    lambda: engine.push_event(event(None, "price_dropped", property_id="p1")),
                ),
                (
                    utc("2026-12-01T13:00"),
                    lambda: engine.push_event(event(None, "price_dropped", property_id="p1")),
                ),
            ],
        )
        await engine.run_until(utc("2026-12-02T00:00"))
        return sorted(sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T10:00"), "rich", "new_listing"),
        (utc("2026-12-01T11:00"), "modest", "new_listing"),
        (utc("2026-12-01T11:00"), "rich", "new_listing"),
        (utc("2026-12-01T12:00"), "elsewhere", "price_drop"),
        (utc("2026-12-01T12:00"), "rich", "price_drop"),
        (utc("2026-12-01T13:00"), "elsewhere", "price_drop"),
    ]
    # The second price drop reaches `rich` too, as the 4th email within 7 days: the default
    # cap skips it (delivered before the business rule of at most 3 emails per week).
    assert skipped(store_url) == [(utc("2026-12-01T13:00"), "rich", DEFAULT_CAPPED)]


# ---------------------------------------------------------------------------- at / every audience

WEEKLY_UPDATE = """
segment buyers = lead_type = "buyer" and not unsubscribed

template market_update email {
  subject "Your market update for {{ contact.city | default('your area') }}"
  body "<p>New listings and price changes from last week.</p>"
}

campaign weekly_update "Weekly market update" {
  type recurring
  audience buyers
  channels email
  timezone fallback "Asia/Manila"
  every monday 09:00 local { send email market_update }
}
"""


def test_every_runs_for_the_audience_as_it_is_on_each_day(store_url: str) -> None:
    # "Runs the steps for the whole audience again on every matching day": a buyer who
    # becomes a seller stops getting it, a buyer created after the launch starts.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [contact("stays", lead_type="buyer"), contact("leaves", lead_type="buyer")]
        )
        await launch_all(engine, WEEKLY_UPDATE)
        await at_times(
            engine,
            clock,
            [
                (
                    utc("2026-12-08T10:00"),
                    lambda: engine.upsert_contacts(
                        [
                            {"id": "leaves", "attributes": {"lead_type": "seller"}},
                            contact("joins", "Asia/Manila", lead_type="buyer"),
                            contact("seller", lead_type="seller"),
                        ]
                    ),
                ),
            ],
        )
        await engine.run_until(utc("2026-12-21T12:00"))
        return sorted(sink.stamps)

    update = "market_update"
    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-07T09:00"), "leaves", update),
        (utc("2026-12-07T09:00"), "stays", update),
        (utc("2026-12-14T01:00"), "joins", update),  # 09:00 in Manila
        (utc("2026-12-14T09:00"), "stays", update),
        (utc("2026-12-21T01:00"), "joins", update),
        (utc("2026-12-21T09:00"), "stays", update),
    ]


def test_at_sends_to_the_audience_at_that_moment(store_url: str) -> None:
    # "Runs once, at that moment, for the whole audience": who left the audience before
    # the moment is not sent it; who joined before it is; who joined after it is not.
    source = """
segment subscribers = newsletter_opt_in
template december_newsletter email { subject "December" body "<p>News.</p>" }
campaign december_broadcast "December newsletter" {
  type broadcast
  audience subscribers
  channels email
  at 2026-12-01T09:00 local { send email december_newsletter }
}
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [
                contact("ny", "America/New_York", newsletter_opt_in=True),
                contact("opts_out", newsletter_opt_in=True),
            ]
        )
        await launch_all(engine, source)

        def upsert(*rows: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
            return lambda: engine.upsert_contacts(list(rows))

        await at_times(
            engine,
            clock,
            [
                (
                    utc("2026-11-30T12:00"),
                    upsert(
                        {"id": "opts_out", "attributes": {"newsletter_opt_in": False}},
                        contact("new", "Asia/Manila", newsletter_opt_in=True),
                    ),
                ),
                # 10:00 UTC: 09:00 has passed in UTC, not yet in New York.
                (
                    utc("2026-12-01T10:00"),
                    upsert(
                        contact("too_late", newsletter_opt_in=True),
                        contact("ny_late", "America/New_York", newsletter_opt_in=True),
                    ),
                ),
            ],
        )
        await engine.run_until(utc("2026-12-02T00:00"))
        return sorted(sink.stamps)

    newsletter = "december_newsletter"
    assert run_engine(store_url, utc("2026-11-27T09:00"), body) == [
        (utc("2026-12-01T01:00"), "new", newsletter),
        (utc("2026-12-01T14:00"), "ny", newsletter),
        (utc("2026-12-01T14:00"), "ny_late", newsletter),
    ]


# ---------------------------------------------------------------------------- effect steps

EFFECTS = """
template agent_intro sms "Hi, {{ contact.agent }} will call you today. Reply STOP to opt out."

campaign agent_handoff "Agent hand-off" {
  type triggered
  channels sms
  when property_viewed count>=3 {
    set lead_stage = "nurture"
    set viewed_at = last(property_viewed)
    tag add "webinar-2026"
    tag remove "cold"
    assign agent round_robin
    notify webhook "https://hooks.example.test/crm"
    wait 1h
    send sms agent_intro
  }
}
"""


def test_set_tag_assign_and_notify_change_the_contact(store_url: str) -> None:
    from cadence.engine.store import agents as agent_store
    from cadence.engine.store.models import Contact

    def add_agents(store: Any) -> None:
        with store.session() as session:
            for name in ("ana", "ben"):
                agent_store.add_agent(session, "default", name, now=utc("2026-12-01T09:00"))

    def read(store: Any) -> dict[str, Any]:
        with store.session() as session:
            return {
                row.id: (row.attributes, sorted(row.tags or []))
                for row in session.query(Contact).order_by(Contact.id)
            }

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.store.call(add_agents)
        rows = []
        for cid in ("c1", "c2", "c3"):
            row = contact(cid, sms_opt_in=True)
            row.update(phone="+1555000000" + cid[-1], tags=["cold", "vip"])
            rows.append(row)
        await engine.upsert_contacts(rows)
        await launch_all(engine, EFFECTS)
        for cid in ("c1", "c2", "c3"):
            for _ in range(3):
                await engine.push_event(event(cid, "property_viewed"))
        await engine.run_until(utc("2026-12-01T11:00"))
        notified = [m.contact_id for m in sink.delivered if m.channel == "webhook"]
        return sink.stamps, notified, await engine.store.call(read)

    stamps, notified, contacts = run_engine(store_url, utc("2026-12-01T09:00"), body)
    assert [(at, cid, template) for at, cid, template in stamps if template] == [
        (utc("2026-12-01T10:00"), cid, "agent_intro") for cid in ("c1", "c2", "c3")
    ]
    assert sorted(notified) == ["c1", "c2", "c3"]
    agents = []
    for cid in ("c1", "c2", "c3"):
        attributes, tags = contacts[cid]
        assert attributes["lead_stage"] == "nurture"
        assert attributes["viewed_at"].startswith("2026-12-01T09:00")
        assert tags == ["vip", "webinar-2026"]
        agents.append(attributes["agent"])
    # Round robin: each contact in turn gets the next active agent, by name.
    assert agents == ["ana", "ben", "ana"]


# ---------------------------------------------------------------------------- engagement scope

SHARED_TEMPLATE = """
template welcome email { subject "Welcome" body "<p>Hi</p>" }
template engaged_path email { subject "More" body "<p>x</p>" }
template re_engagement email { subject "Still there?" body "<p>x</p>" }
campaign first { on launch { send email welcome } }
campaign second {
  on launch {
    wait 1h
    send email welcome
    wait 2d
    if opened(welcome) { send email engaged_path } else { send email re_engagement }
  }
}
"""


def test_a_step_s_engagement_functions_read_its_own_campaign_s_messages(store_url: str) -> None:
    # docs/semantics.md: engagement functions in a step's condition look only at messages
    # of the current campaign; an open that names no campaign counts for any.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("other"), contact("own"), contact("unnamed")])
        await launch_all(engine, SHARED_TEMPLATE)

        def opened(cid: str, campaign: str | None) -> Callable[[], Awaitable[Any]]:
            properties: dict[str, Any] = {"template": "welcome"}
            if campaign is not None:
                properties["campaign"] = campaign
            return lambda: engine.push_event(event(cid, "opened", **properties))

        await at_times(
            engine,
            clock,
            [
                (utc("2026-12-01T12:00"), opened("other", "first")),
                (utc("2026-12-01T12:00"), opened("own", "second")),
                (utc("2026-12-01T12:00"), opened("unnamed", None)),
            ],
        )
        await engine.run_until(utc("2026-12-04T00:00"))
        return sorted((cid, template) for at, cid, template in sink.stamps if at.day == 3)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        ("other", "re_engagement"),  # opened the first campaign's welcome, not this one's
        ("own", "engaged_path"),
        ("unnamed", "engaged_path"),
    ]


# ---------------------------------------------------------------------------- priority


def test_a_cap_lets_the_higher_priority_campaign_s_send_through(store_url: str) -> None:
    # "`priority N` — larger is more important. When caps or windows let only some due
    # messages through, higher-priority campaigns go first."
    source = """
template routine email { subject "Routine" body "b" }
template urgent email { subject "Urgent" body "b" }
campaign a_routine { priority 2  cap email 1 per 1d  on launch { send email routine } }
campaign b_urgent { priority 9  cap email 1 per 1d  on launch { send email urgent } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact("u"), contact("v")])
        await launch_all(engine, source)
        await engine.run_until(utc("2026-12-01T10:00"))
        return sorted(sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T09:00"), "u", "urgent"),
        (utc("2026-12-01T09:00"), "v", "urgent"),
    ]


# ---------------------------------------------------------------------------- unsubscribes


def test_an_unsubscribed_contact_is_never_sent_to(store_url: str) -> None:
    # DESIGN.md: "A suppressed, unsubscribed or non-consenting contact is never sent to on
    # that channel." `unsubscribed` is the flag conditions read: a true attribute or an
    # `unsubscribed` event; one that names a channel stops that channel only.
    source = """
template news email { subject "News" body "b" }
template news_sms sms "News. Reply STOP to opt out."
campaign newsletter {
  channels email, sms
  on launch { wait 1h  send email news  send sms news_sms }
}
"""

    def person(cid: str, **attributes: Any) -> dict[str, Any]:
        row = contact(cid, sms_opt_in=True, **attributes)
        row["phone"] = "+1555010" + str(len(cid)).zfill(4)
        return row

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [
                person("subscribed"),
                person("by_attribute", unsubscribed=True),
                person("by_event"),
                person("from_sms"),
            ]
        )
        await launch_all(engine, source)
        await engine.push_events(
            [event("by_event", "unsubscribed"), event("from_sms", "unsubscribed", channel="sms")]
        )
        await engine.run_until(utc("2026-12-01T12:00"))
        return sorted((cid, template) for _, cid, template in sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        ("from_sms", "news"),
        ("subscribed", "news"),
        ("subscribed", "news_sms"),
    ]


# ---------------------------------------------------------------------------- enroll


def test_enroll_starts_the_other_campaign_unless_its_rules_keep_the_contact_out(
    store_url: str,
) -> None:
    # docs/language.md: `enroll` "enrolls the contact in another campaign, at the steps of
    # that campaign's first trigger"; `exclude`: "contacts matching it are never enrolled".
    source = """
template last_chance email { subject "Should we stop writing?" body "<p>x</p>" }
template sunset_notice email { subject "We're pausing our emails" body "<p>x</p>" }

campaign sunset "Sunset" {
  type triggered
  channels email
  exclude vip
  when sunset_requested { send email sunset_notice }
}

when contact_inactive {
  send email last_chance
  wait for clicked(last_chance) up to 7d
  if not clicked(last_chance) { enroll sunset }
}
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts(
            [contact("quiet"), contact("clicker"), contact("vip", vip=True)]
        )
        await launch_all(engine, source)
        await engine.push_events(
            [event(cid, "contact_inactive") for cid in ("quiet", "clicker", "vip")]
        )
        await at_times(
            engine,
            clock,
            [
                (
                    utc("2026-12-03T09:00"),
                    lambda: engine.push_event(event("clicker", "clicked", template="last_chance")),
                )
            ],
        )
        await engine.run_until(utc("2026-12-10T00:00"))
        return sorted(sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T09:00"), "clicker", "last_chance"),
        (utc("2026-12-01T09:00"), "quiet", "last_chance"),
        (utc("2026-12-01T09:00"), "vip", "last_chance"),
        (utc("2026-12-08T09:00"), "quiet", "sunset_notice"),
    ]


# ---------------------------------------------------------------------------- wait for


def test_wait_for_a_condition_that_already_holds_does_not_wait(store_url: str) -> None:
    # "Waits until CONDITION becomes true, but no longer than DURATION": a click during the
    # earlier `wait 1d` already makes `clicked(offer)` true when the `wait for` begins.
    source = """
template offer email { subject "Your offer" body "<p>x</p>" }
template thanks email { subject "Thanks" body "<p>x</p>" }
template offer_reminder email { subject "Last chance" body "<p>x</p>" }
on contact_created {
  send email offer
  wait 1d
  wait for clicked(offer) up to 3d
  if clicked(offer) { send email thanks } else { send email offer_reminder }
}
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await launch_all(engine, source)
        await engine.upsert_contacts([contact("early"), contact("later"), contact("never")])

        def click(cid: str) -> Callable[[], Awaitable[Any]]:
            return lambda: engine.push_event(event(cid, "clicked", template="offer"))

        await at_times(
            engine,
            clock,
            [(utc("2026-12-01T12:00"), click("early")), (utc("2026-12-03T12:00"), click("later"))],
        )
        await engine.run_until(utc("2026-12-06T00:00"))
        return sorted((at, cid, template) for at, cid, template in sink.stamps if at.day > 1)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-02T09:00"), "early", "thanks"),  # no wait: already clicked
        (utc("2026-12-03T12:00"), "later", "thanks"),  # resumes as the click arrives
        (utc("2026-12-05T09:00"), "never", "offer_reminder"),  # 1d + 3d
    ]


def test_contacts_created_before_starts_join_the_recurring_runs(store_url: str) -> None:
    # Launched before `starts`, with nobody in the audience yet and then with one contact.
    source = """
template digest email { subject "Weekly" body "b" }
campaign weekly { starts 2026-12-07  every monday 09:00 local { send email digest } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await launch_all(engine, source.replace("weekly", "empty_at_launch"))
        await engine.upsert_contacts([contact("at_launch")])
        await launch_all(engine, source)
        await at_times(
            engine,
            clock,
            [(utc("2026-12-03T12:00"), lambda: engine.upsert_contacts([contact("meanwhile")]))],
        )
        await engine.run_until(utc("2026-12-15T00:00"))
        return sorted(sink.stamps)

    digests = run_engine(store_url, utc("2026-12-01T09:00"), body)
    # Both campaigns: the one launched with nobody reaches both contacts too.
    assert digests == [
        (utc(day), cid, "digest")
        for day in ("2026-12-07T09:00", "2026-12-14T09:00")
        for cid in ("at_launch", "at_launch", "meanwhile", "meanwhile")
    ]


# ---------------------------------------------------------------------------- A/B split


def test_contacts_held_for_an_a_b_winner_get_it_when_it_is_known(store_url: str) -> None:
    # "holds the rest, and after DURATION sends the held contacts down the branch of the
    # winning variant. Contacts reaching the split after the winner is known go straight
    # to it." Here contacts sign up over the day; the test share is 50%.
    source = """
template subject_a email { subject "A" body "b" }
template subject_b email { subject "B" body "b" }
campaign signup_test {
  channels email
  when signed_up {
    split 50% test winner by opens after 4h {
      a: send email subject_a
      b: send email subject_b
    }
  }
}
"""
    ids = [f"c{i:02d}" for i in range(40)]

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> list[Any]:
        await engine.upsert_contacts([contact(cid) for cid in ids])
        await launch_all(engine, source)
        steps = [
            (utc("2026-12-01T09:00") + dt.timedelta(minutes=15 * i), cid)
            for i, cid in enumerate(ids)
        ]
        for moment, cid in steps:
            await engine.run_until(moment)
            clock.advance_to(max(moment, clock.now()))
            await engine.push_event(event(cid, "signed_up"))
        await engine.run_until(utc("2026-12-02T09:00"))
        return sink.stamps

    stamps = run_engine(store_url, utc("2026-12-01T09:00"), body)
    first_test_send = min(at for at, _, _ in stamps)
    decided = first_test_send + dt.timedelta(hours=4)
    arrival = {
        cid: utc("2026-12-01T09:00") + dt.timedelta(minutes=15 * i) for i, cid in enumerate(ids)
    }
    assert sorted(cid for _, cid, _ in stamps) == ids  # everyone gets exactly one variant
    for at, cid, _template in stamps:
        if at != arrival[cid]:
            # Held: sent when the winner is known (or on arrival, once it is), never later.
            assert at == max(decided, arrival[cid]), (cid, at)
    late = [(at, cid) for at, cid, _ in stamps if arrival[cid] >= decided]
    assert late and all(at == arrival[cid] for at, cid in late)
    held = [cid for at, cid, _ in stamps if at != arrival[cid]]
    assert held  # some contacts were held and then sent at the decision


# ---------------------------------------------------------------------------- goal by attribute

GOAL_BY_ATTRIBUTE = """
template first email { subject "First" body "b" }
template second email { subject "Second" body "b" }
campaign nurture {
  goal converted
  on launch { send email first  wait 3d  send email second }
}
"""


def test_reaching_the_goal_through_an_attribute_exits_at_once(store_url: str) -> None:
    """`goal converted` ("reaching the goal exits the contact"): set by a contact update
    during a wait, the contact leaves then, not when the wait ends."""
    start = utc("2026-12-01T09:00")

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("a"), contact("b")])
        await launch_all(engine, GOAL_BY_ATTRIBUTE)
        await engine.run_due()
        clock.advance_to(utc("2026-12-02T09:00"))
        await engine.upsert_contacts([contact("a", converted=True)])
        await engine.run_due()
        status = await engine.status()
        await engine.run_until(utc("2026-12-05T09:00"))
        assert [(c, t) for _, c, t in sink.stamps] == [
            ("a", "first"), ("b", "first"), ("b", "second")
        ]  # fmt: skip
        return status

    (nurture,) = run_engine(store_url, start, body)
    # At 2026-12-02, before the wait ended: a has left, b still waits for its second email.
    assert nurture["enrollments"] == {"exited": 1, "active": 1}


DAILY_UNTIL = """
template daily email { subject "Daily" body "b" }
campaign digest { ends 2026-12-03  every daily 10:00 { send email daily } }
"""


def test_a_recurring_campaign_completes_once_its_ends_has_passed(store_url: str) -> None:
    """`ends 2026-12-03` "ends at the following midnight": no run after it, and the campaign
    is completed rather than left active for ever."""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("a")])
        await launch_all(engine, DAILY_UNTIL)
        await engine.run_until(utc("2026-12-03T23:00"))
        before_the_end = (await engine.status())[0]["status"]
        await engine.run_until(utc("2026-12-06T12:00"))
        await engine.run_due()  # the service's next look, with nothing due any more
        assert [(t.date().isoformat(), c) for t, c, _ in sink.stamps] == [
            ("2026-12-01", "a"), ("2026-12-02", "a"), ("2026-12-03", "a")
        ]  # fmt: skip
        return before_the_end, (await engine.status())[0]["status"]

    clock_start = utc("2026-12-01T09:00")
    before_the_end, after = run_engine(store_url, clock_start, body)
    assert (before_the_end, after) == ("active", "completed")


PROMOTED_BY_A_STEP = """
segment gold = tier = "gold"
template promote email { subject "Promoted" body "b" }
template welcome_gold email { subject "Welcome to gold" body "b" }
campaign promotion { on launch { set tier = "gold"  tag add "vip"  send email promote } }
campaign gold_club { on segment_enter gold { send email welcome_gold } }
"""


def test_a_set_step_that_moves_a_contact_into_a_segment_fires_segment_enter(
    store_url: str,
) -> None:
    """`on segment_enter` "fires when a contact starts matching a segment", whatever changed
    it: here another campaign's `set` step."""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("a", tier="silver"), contact("b", tier="gold")])
        await launch_all(engine, PROMOTED_BY_A_STEP)
        await engine.run_until(utc("2026-12-01T10:00"))
        return sorted((c, t) for _, c, t in sink.stamps)

    # b was gold before the step (and at launch): it does not enter; a enters by the step.
    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        ("a", "promote"), ("a", "welcome_gold"), ("b", "promote")
    ]  # fmt: skip


# ---------------------------------------------------------------------------- steps in order

SET_THEN_READ = """
template a email { subject "A" body "b" }
template b email { subject "B" body "b" }
template c email { subject "C" body "b" }
template tagged email { subject "Tagged" body "b" }
template untagged email { subject "Untagged" body "b" }
campaign staged {
  on launch {
    set lead_stage = "nurture"
    set bumped = lead_score + 10
    tag add "webinar-2026"
    tag add "old"  tag remove "old"
    if bumped > 50 { send email a }
    else if lead_stage = "nurture" { send email b }
    else { send email c }
    if tags contains "webinar-2026" and not (tags contains "old") { send email tagged }
    else { send email untagged }
  }
}
"""


def test_a_condition_after_set_and_tag_steps_reads_what_they_wrote(store_url: str) -> None:
    """Steps run top to bottom: an `if` after `set` and `tag` sees the contact they changed
    (as the later of two steps on one tag says), not the contact as it was before them."""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        low = {**contact("low", lead_score=30), "tags": ["old"]}
        await engine.upsert_contacts([contact("high", lead_score=45), low])
        await launch_all(engine, SET_THEN_READ)
        await engine.run_until(utc("2026-12-01T10:00"))
        return sorted((at, c, t) for at, c, t in sink.stamps)

    start = utc("2026-12-01T09:00")
    assert run_engine(store_url, start, body) == [
        (start, "high", "a"), (start, "high", "tagged"),
        (start, "low", "b"), (start, "low", "tagged"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------- wait for

WAIT_FOR_A_CONDITION = """
template ready email { subject "Ready" body "b" }
campaign qualify {
  on launch {
    wait for lead_score >= 50 and email_verified up to 3d
    send email ready
  }
}
"""


def test_wait_for_a_condition_resumes_when_the_contact_comes_to_meet_it(store_url: str) -> None:
    """docs/language.md: `wait for CONDITION up to DURATION` "waits until CONDITION becomes
    true, but no longer than DURATION"; a condition, not only an event."""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts(
            [
                contact("met", lead_score=10, email_verified=True),
                contact("never", lead_score=10, email_verified=True),
            ]
        )
        await launch_all(engine, WAIT_FOR_A_CONDITION)
        await at_times(
            engine,
            clock,
            [
                (
                    utc("2026-12-01T11:00"),
                    lambda: engine.upsert_contacts(
                        [contact("met", lead_score=60, email_verified=True)]
                    ),
                )
            ],
        )
        await engine.run_until(utc("2026-12-05T00:00"))
        return sorted(sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T11:00"), "met", "ready"),
        (utc("2026-12-04T09:00"), "never", "ready"),
    ]


WAITING_ON_ANOTHER_CAMPAIGN = """
template ready email { subject "Ready" body "b" }
template late email { subject "Late" body "b" }
campaign qualify {
  on launch { wait for tier = "gold" up to 3d  send email ready }
}
campaign nurture {
  goal tier = "gold"
  on launch { wait 2d  send email late }
}
campaign promotion { when promoted { set tier = "gold" } }
"""


def test_a_set_step_wakes_what_waits_on_the_contact_in_other_campaigns(store_url: str) -> None:
    """Another campaign's `set` changes the contact as an update does: a `wait for` it meets
    resumes, and a `goal` it reaches exits the contact, then and there."""

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("a", tier="silver")])
        await launch_all(engine, WAITING_ON_ANOTHER_CAMPAIGN)
        await at_times(
            engine,
            clock,
            [(utc("2026-12-01T11:00"), lambda: engine.push_event(event("a", "promoted")))],
        )
        await engine.run_until(utc("2026-12-05T00:00"))
        return sorted(sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T09:00"), body) == [
        (utc("2026-12-01T11:00"), "a", "ready"),
    ]
