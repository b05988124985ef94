"""`on segment_enter` of a segment that time alone changes (cadence/engine/sweep.py).

`segment dormant = not (last(login) within 30d)`: a contact enters it thirty days after its
last login with nothing written. The engine reads such segments for every contact every
hour and enrolls who matches now and did not at the previous reading.
"""

from __future__ import annotations

import datetime as dt

import trio

from cadence.dsl import ast
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.sweep import changes_with_time, swept_triggers
from tests.engine.test_runtime import T0, campaigns, engine_run

WINBACK = """
template miss_you email { subject "We miss you" body "x" }
segment dormant = not (last(login) within 30d)
campaign winback { on segment_enter dormant { send email miss_you } }
"""
# Last logins before the launch at T0 (days), and the one who logs in again.
LOGINS = {"a": -29, "b": -10, "c": -40, "e": -10}


def test_contacts_enter_a_time_dependent_segment_as_time_passes(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> dict[str, str]:
        await engine.upsert_contacts(
            [{"id": cid, "email": f"{cid}@example.test"} for cid in ("a", "b", "c", "d", "e")]
        )
        for cid, days in LOGINS.items():
            at = (T0 + dt.timedelta(days=days)).isoformat()
            await engine.push_event({"contact": cid, "name": "login", "at": at})
        await engine.deploy(campaigns(WINBACK))
        await engine.launch("winback")
        received: dict[str, str] = {}

        def note(now: dt.datetime, _stats: object) -> None:
            for message in sink.delivered:
                received.setdefault(message.contact_id, now.isoformat())

        await engine.run_until(T0 + dt.timedelta(days=5), on_progress=note)
        await engine.push_event({"contact": "e", "name": "login"})
        await engine.run_until(T0 + dt.timedelta(days=25), on_progress=note)
        return received

    received = engine_run(store_url, body)
    # a: last login 29 days before launch, dormant one day in, seen at the next hourly sweep;
    # b: 20 days in. c was dormant already at the launch (it did not enter), d never logged
    # in (unknown is not dormant), e logged in again on day 5 (dormant from day 35).
    assert received == {
        "a": (T0 + dt.timedelta(days=1, hours=1)).isoformat(),
        "b": (T0 + dt.timedelta(days=20, hours=1)).isoformat(),
    }


def test_only_segments_time_can_change_are_swept() -> None:
    (campaign,) = compile_workspace(
        load_text(
            """
template t email { subject "x" body "x" }
score engagement { opened(any) within 30d: +5 each }
segment hot = lead_score > 50
segment recent = last(login) within 7d
segment via = hot and recent
segment busy = count(login, 7d) >= 3
segment engaged = engagement >= 10
campaign probe {
  on segment_enter hot { send email t }
  on segment_enter recent { send email t }
  on segment_enter via { send email t }
  on segment_enter busy { send email t }
  on segment_enter engaged { send email t }
}
""",
            "probe.cadence",
        )
    )
    moving = {
        name: changes_with_time(ast.Path((name,)), campaign)
        for name in ("hot", "recent", "via", "busy", "engaged")
    }
    assert moving == {"hot": False, "recent": True, "via": True, "busy": True, "engaged": True}
    swept = [trigger.segment for trigger in swept_triggers(campaign)]
    assert swept == ["recent", "via", "busy", "engaged"]


def test_a_restart_neither_misses_nor_repeats_a_sweep(store_url: str) -> None:
    """Stopped on day 10 and started again on day 22, the engine still enrolls b once.

    b turns dormant on day 20, while no engine runs; the first sweep after the restart
    (compared with the last one before the stop) sees the entry. a entered before the stop.
    """
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def before_stop() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(
                [{"id": cid, "email": f"{cid}@example.test"} for cid in ("a", "b")]
            )
            for cid in ("a", "b"):
                at = (T0 + dt.timedelta(days=LOGINS[cid])).isoformat()
                await engine.push_event({"contact": cid, "name": "login", "at": at})
            await engine.deploy(campaigns(WINBACK))
            await engine.launch("winback")
            await engine.run_until(T0 + dt.timedelta(days=10))

    async def after_restart() -> None:
        await clock.sleep_until(T0 + dt.timedelta(days=22))
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.run_until(T0 + dt.timedelta(days=25))

    trio.run(before_stop)
    assert [m.contact_id for m in sink.delivered] == ["a"]
    trio.run(after_restart)
    assert [m.contact_id for m in sink.delivered] == ["a", "b"]


DIGEST = """
template digest email { subject "While you were away" body "x" }
campaign comeback {
  audience not (last(login) within 30d)
  every monday 09:00 { send email digest }
}
"""


def test_contacts_join_an_every_audience_as_time_passes(store_url: str) -> None:
    # T0 is Tuesday 2026-12-01 09:00 UTC; the runs are Mondays 09:00 (UTC).
    logins = {"a": -29, "b": -40, "c": -10}

    async def body(
        engine: Engine, clock: SimulatedClock, sink: RecordingSink
    ) -> dict[str, list[str]]:
        await engine.upsert_contacts(
            [{"id": cid, "email": f"{cid}@example.test"} for cid in logins]
        )
        for cid, days in logins.items():
            at = (T0 + dt.timedelta(days=days)).isoformat()
            await engine.push_event({"contact": cid, "name": "login", "at": at})
        await engine.deploy(campaigns(DIGEST))
        await engine.launch("comeback")
        received: dict[str, list[str]] = {}
        seen = 0

        def note(now: dt.datetime, _stats: object) -> None:
            nonlocal seen
            for message in sink.delivered[seen:]:
                received.setdefault(message.contact_id, []).append(now.date().isoformat())
            seen = len(sink.delivered)

        await engine.run_until(T0 + dt.timedelta(days=28), on_progress=note)
        return received

    received = engine_run(store_url, body)
    mondays = ["2026-12-07", "2026-12-14", "2026-12-21", "2026-12-28"]
    # b was in the audience at the launch; a joined it on day 1, c on day 20 (just after
    # the run of 12-21 09:00, when its last login was exactly 30 days old).
    assert received == {"a": mondays, "b": mondays, "c": ["2026-12-28"]}


def test_an_entry_an_event_noticed_is_not_entered_again_by_the_sweep(store_url: str) -> None:
    """With `reenter always`, a login at 09:30 entered `active` at once (the event's entry
    check), and the 10:00 sweep, which reads `active` at 09:00 and at 10:00, entered the
    contact again: two journeys for one entry, though the contact never left. Leaving by
    time and logging in again is a new entry."""
    source = """
template hi email { subject "Hi" body "x" }
segment active = last(login) within 1d
campaign a { reenter always  cap email 9 per 1d  on segment_enter active { send email hi } }
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[str]:
        await engine.upsert_contacts([{"id": "c", "email": "c@example.test"}])
        await engine.deploy(campaigns(source))
        await engine.launch("a")
        for hours in (0.5, 50.5):
            await engine.run_until(T0 + dt.timedelta(hours=hours))
            await engine.push_event({"contact": "c", "name": "login"})
        await engine.run_until(T0 + dt.timedelta(hours=60))
        return [m.contact_id for m in sink.delivered]

    assert engine_run(store_url, body) == ["c", "c"]


def test_a_re_entry_within_one_sweep_interval_is_entered(store_url: str) -> None:
    """With `reenter always`, a contact dormant (no login for 30 minutes) at the 10:00
    sweep logs in at 10:10, leaving the segment, and is dormant again at 10:40: a second
    entry. The 11:00 sweep read `dormant` at 10:00 and at 11:00, true at both, and saw
    nothing: the re-entry was missed whenever leaving and coming back fit in one hour."""
    source = """
template miss_you email { subject "We miss you" body "x" }
segment dormant = not (last(login) within 30m)
campaign winback {
  reenter always  cap email 9 per 1d
  on segment_enter dormant { send email miss_you }
}
"""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> list[str]:
        await engine.upsert_contacts([{"id": "c", "email": "c@example.test"}])
        await engine.deploy(campaigns(source))
        await engine.launch("winback")
        await engine.push_event({"contact": "c", "name": "login"})
        received: list[str] = []

        def note(now: dt.datetime, _stats: object) -> None:
            received.extend(now.strftime("%H:%M") for _ in sink.delivered[len(received) :])

        await engine.run_until(T0 + dt.timedelta(hours=1, minutes=10), on_progress=note)
        await engine.push_event({"contact": "c", "name": "login"})
        await engine.run_until(T0 + dt.timedelta(hours=4), on_progress=note)
        return received

    # Launched at 09:00 with a login then: dormant at 09:30, entered at the 10:00 sweep;
    # back at 10:10, dormant again at 10:40, entered at the 11:00 sweep.
    assert engine_run(store_url, body) == ["10:00", "11:00"]
