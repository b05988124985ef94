"""Each trigger form of LANGUAGE.md with the edge cases users meet, on both stores.

`when EVENT count ... within ... where ...`, fan-out, `on contact_created`, `on
segment_enter`, `at`/`every` and `on launch`, each checked for what goes out and when.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import trio

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine import dryrun
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine
from tests.engine.test_contract import at_times, contact, event, launch_all, run_engine, utc
from tests.engine.test_dryrun import write_jsonl
from tests.engine.test_runtime import StampSink
from tests.language_md import language_blocks

# `cap` high enough that the default cap (3 emails a week) never hides a journey.
COUNTED = """
template third email { subject "third" body "b" }
template again email { subject "again" body "b" }
campaign exactly_third { channels email  cap email 100 per 1h
  when viewed count=3 { send email third } }
campaign every_time { channels email  cap email 100 per 1h  reenter always
  when viewed count>=3 { send email again } }
"""


def test_events_pushed_together_fire_as_if_pushed_one_at_a_time(store_url: str) -> None:
    # Each event is judged with the history up to it: the later events of the same push are
    # not yet there. Pushed together, four views made `count=3` see 4 on every one (never
    # firing) and `count>=3 ... reenter always` see 3 or more on each (four journeys).
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("together"), contact("apart")])
        await launch_all(engine, COUNTED)
        moment = utc("2026-12-01T10:00")
        await at_times(
            engine,
            clock,
            [
                (moment, lambda: engine.push_events([event("together", "viewed")] * 4)),
                *[(moment, lambda: engine.push_events([event("apart", "viewed")]))] * 4,
            ],
        )
        await engine.run_until(utc("2026-12-02T00:00"))
        return sorted((who, template) for _, who, template in sink.stamps)

    expected = [(who, template) for who in ("apart", "together") for template in ("again", "third")]
    # `again` fires on the third and the fourth view (reenter always, count>=3 is a level).
    expected += [("apart", "again"), ("together", "again")]
    assert run_engine(store_url, utc("2026-12-01T00:00"), body) == sorted(expected)


def test_out_of_order_events_in_one_push_count_as_they_come(store_url: str) -> None:
    # Views dated 09:00, 08:00 and 09:30 pushed at 10:00 in one request: the third is the
    # one that makes three, whatever their dates, as three requests would have it.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("late")])
        await launch_all(engine, COUNTED)
        views = [
            {**event("late", "viewed"), "at": f"2026-12-01T{hour}:00Z"}
            for hour in ("09:00", "08:00", "09:30")
        ]
        await at_times(
            engine, clock, [(utc("2026-12-01T10:00"), lambda: engine.push_events(views))]
        )
        await engine.run_until(utc("2026-12-02T00:00"))
        return sorted(template or "" for _, _, template in sink.stamps)

    assert run_engine(store_url, utc("2026-12-01T00:00"), body) == ["again", "third"]


SCHEDULED = """
template daily_note email { subject "daily" body "b" }
template broadcast email { subject "broadcast" body "b" }
campaign daily { channels email  cap email 100 per 1h  every daily 09:00 { send email daily_note } }
campaign once { channels email  cap email 100 per 1h  at 2026-12-04T09:00 { send email broadcast } }
"""


def test_a_contact_created_while_paused_joins_the_runs_after_resume(store_url: str) -> None:
    # `at` and `every` run for the whole audience (LANGUAGE.md): someone who joined it while
    # the campaign was paused is in it at the next run, as one who joined while it ran is.
    # Paused for two hours on 1 December, the runs forgot them for good.
    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact("before")])
        await launch_all(engine, SCHEDULED)
        await at_times(
            engine,
            clock,
            [
                (utc("2026-12-01T10:00"), lambda: engine.pause("daily")),
                (utc("2026-12-01T10:00"), lambda: engine.pause("once")),
                (utc("2026-12-01T11:00"), lambda: engine.upsert_contacts([contact("during")])),
                (utc("2026-12-01T12:00"), lambda: engine.resume("daily")),
                (utc("2026-12-01T12:00"), lambda: engine.resume("once")),
            ],
        )
        await engine.run_until(utc("2026-12-04T12:00"))
        return sorted((who, at.strftime("%d %H:%M"), what) for at, who, what in sink.stamps)

    runs = [("02 09:00", "daily_note"), ("03 09:00", "daily_note"), ("04 09:00", "broadcast")]
    runs += [("04 09:00", "daily_note")]
    expected = [("before", "01 09:00", "daily_note")]
    expected += [(who, at, what) for who in ("before", "during") for at, what in runs]
    assert run_engine(store_url, utc("2026-12-01T00:00"), body) == sorted(expected)


LAUNCHED_EARLY = """
template news email { subject "news" body "b" }
segment subscribers = newsletter_opt_in
campaign newsletter { channels email  audience subscribers  starts 2026-12-05
  on launch { send email news } }
"""


def test_on_launch_before_starts_goes_to_the_audience_as_it_is_at_starts(store_url: str) -> None:
    # "nobody is enrolled before `starts`": launched on 1 December to start on the 5th, the
    # campaign took its audience at the launch, so who subscribed on the 3rd was left out
    # and who unsubscribed from the newsletter on the 3rd still got it.
    subscribers = [
        contact("stays", newsletter_opt_in=True),
        contact("leaves", newsletter_opt_in=True),
    ]
    changes = [contact("joins", newsletter_opt_in=True), contact("leaves", newsletter_opt_in=False)]

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts(subscribers)
        await launch_all(engine, LAUNCHED_EARLY)
        await at_times(
            engine, clock, [(utc("2026-12-03T10:00"), lambda: engine.upsert_contacts(changes))]
        )
        await engine.run_until(utc("2026-12-06T00:00"))
        return sorted(sink.stamps)

    starts = utc("2026-12-05T00:00")
    assert run_engine(store_url, utc("2026-12-01T00:00"), body) == [
        (starts, "joins", "news"),
        (starts, "stays", "news"),
    ]


SIGNUP = """
template welcome email { subject "welcome" body "b" }
campaign welcome { channels email  starts 2026-12-03  ends 2026-12-05
  when signup { send email welcome } }
"""


def test_an_event_fires_when_it_is_stored_whatever_its_date(store_url: str) -> None:
    # docs/semantics.md: a trigger is judged once, when its event is stored, by the campaigns
    # taking enrollments then. A late event dated before `starts` (or the launch) still
    # fires; one stored while the campaign is scheduled, or after `ends`, never does.
    def signup(who: str, at: str) -> list[dict[str, Any]]:
        return [{**event(who, "signup"), "at": at}]

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts([contact(c) for c in ("early", "late", "after")])
        await launch_all(engine, SIGNUP)
        await at_times(
            engine,
            clock,
            [
                (
                    utc("2026-12-02T10:00"),
                    lambda: engine.push_events(signup("early", "2026-12-02T10:00:00Z")),
                ),
                (
                    utc("2026-12-04T10:00"),
                    lambda: engine.push_events(signup("late", "2026-11-20T10:00:00Z")),
                ),
                (
                    utc("2026-12-06T10:00"),
                    lambda: engine.push_events(signup("after", "2026-12-04T10:00:00Z")),
                ),
            ],
        )
        await engine.run_until(utc("2026-12-07T00:00"))
        return sink.stamps

    assert run_engine(store_url, utc("2026-12-01T00:00"), body) == [
        (utc("2026-12-04T10:00"), "late", "welcome")
    ]


FANOUT_WHERE = """
template listing email { subject "New in {{ event.city }}" body "b" }
campaign vip_listings { channels email
  when listed where event.price > 0 and contact.vip for contacts where event.city in contact.areas
  { send email listing } }
campaign scored_listings { channels email
  when listed where lead_score >= 30 for contacts where event.city in contact.areas
  { send email listing } }
"""


def test_a_fan_out_s_where_reads_each_contact_it_reaches(
    store_url: str, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    # "contact attributes are available too" in a trigger's `where`: in a fan-out it was read
    # once for the event, with no contact, so `contact.vip` (or a bare `lead_score`) was
    # unknown and the listing reached nobody. Each contact the fan-out reaches must meet it.
    people = [
        contact("vip", vip=True, lead_score=10, areas=["Oslo"]),
        contact("scored", vip=False, lead_score=40, areas=["Oslo"]),
        contact("neither", vip=False, lead_score=10, areas=["Oslo"]),
        contact("elsewhere", vip=True, lead_score=40, areas=["Rome"]),
    ]
    listing = event(None, "listed", city="Oslo", price=100)

    async def body(engine: Engine, clock: SimulatedClock, sink: StampSink) -> Any:
        await engine.upsert_contacts(people)
        await launch_all(engine, FANOUT_WHERE)
        await engine.push_events([listing, {**listing, "properties": {"city": "Oslo"}}])
        await engine.run_until(utc("2026-12-02T00:00"))
        return sorted((who, template) for _, who, template in sink.stamps)

    # The second listing has no price: `vip_listings` leaves it out, for everyone.
    assert run_engine(store_url, utc("2026-12-01T00:00"), body) == [
        ("scored", "listing"),
        ("scored", "listing"),
        ("vip", "listing"),
    ]
    assert filter_backend, "the fan-out should select its contacts in bulk"
    assert any(vectorised for _, _, vectorised in filter_backend)
    for chosen, evaluated, _ in filter_backend:
        assert chosen == evaluated


def test_every_trigger_of_language_md_enrolls_in_a_dry_run(store_url: str, tmp_path: Path) -> None:
    # tests/test_checker.py holds LANGUAGE.md's Triggers block to check cleanly; this runs it
    # as written, the segment it names declared (as the page's first block declares it),
    # and holds each of its six triggers to enroll whom the sketch says.
    (block,) = [b for b in language_blocks() if b.startswith("when property_viewed count>=3")]
    source = block + "\nsegment engaged = lead_score >= 30 and last_activity within 30d\n"
    start = utc("2026-11-29T00:00")  # a Sunday
    people = [
        {"id": "viewer", "email": "v@example.test", "timezone": "America/New_York"},
        # Active "tomorrow": `within 30d` becomes true then, and the hourly sweep sees it.
        {"id": "engages", "email": "e@example.test", "timezone": "Asia/Kolkata",
         "attributes": {"lead_score": 50, "last_activity": "2026-11-30T12:00:00Z"}},
    ]  # fmt: skip
    views = [
        {"contact": "viewer", "name": "property_viewed", "at": f"2026-11-30T1{n}:00:00Z",
         "properties": {"price": price}}
        for n, price in enumerate([400000, 900000, 500000, 100])
    ]  # fmt: skip
    report = trio.run(
        lambda: dryrun.dry_run(
            compile_workspace(load_text(source, "triggers.cadence")),
            write_jsonl(tmp_path / "contacts.jsonl", people),
            events=write_jsonl(tmp_path / "events.jsonl", views),
            start=start, until=dt.timedelta(days=9), database_url=store_url,
        )
    )  # fmt: skip
    entered = {name: nodes.get("end", 0) for name, nodes in report.funnel.items()}
    assert entered == {
        # The fourth view is the third under 500000.
        "triggers_property_viewed": 1,
        # The contacts file's people are new at the run's start.
        "triggers_contact_created": 2,
        "triggers_enter_engaged": 1,
        "triggers_at_20261201T0900": 2,
        # Mondays 30 November and 7 December, for both.
        "triggers_every_monday": 4,
        "triggers_launch": 2,
    }
