"""A contact who moves to another timezone gets what was booked by their clock by the new one."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
from sqlalchemy import select

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine
from cadence.engine.store import Store
from cadence.engine.store.models import Enrollment
from tests.engine.test_contract import StampSink

T0 = dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)  # a Tuesday, 18:00 UTC
TEMPLATE = 'template t email { subject "s" body "b" }\n'


def _utc(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, 0, tzinfo=dt.UTC)


def _run(
    store_url: str,
    source: str,
    name: str,
    moves: list[tuple[dt.datetime, str]],
    days: int,
    *,
    paused: bool = False,
) -> tuple[list[dt.datetime], list[tuple[str, str]]]:
    """Launch `name` for one contact in UTC, move their timezone at each (instant, zone).

    With `paused` the campaign is paused across the moves and resumed after them.
    """
    clock = SimulatedClock(T0)
    sink = StampSink(clock)

    async def main() -> list[tuple[str, str]]:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(
                [{"id": "c1", "email": "ana@example.test", "timezone": "UTC"}]
            )
            await engine.deploy(compile_workspace(load_text(TEMPLATE + source, "t.cadence")))
            await engine.launch(name)
            if paused:
                await engine.pause(name)
            for at, zone in moves:
                await engine.run_until(at)
                await engine.upsert_contacts([{"id": "c1", "timezone": zone}])
            if paused:
                await engine.resume(name)
            await engine.run_until(T0 + dt.timedelta(days=days))

            def histories(store: Store) -> list[tuple[str, str]]:
                with store.session() as session:
                    return [
                        (str(entry[0]), str(entry[2]))
                        for history in session.scalars(select(Enrollment.history))
                        for entry in history
                    ]

            return await engine.store.call(histories)

    history = trio.run(main)
    return [at for at, _, _ in sink.stamps], history


def test_an_at_local_run_moves_with_the_contact(store_url: str) -> None:
    source = "campaign b { at 2026-12-03T09:00 local { send email t } }"
    stamps, history = _run(store_url, source, "b", [(_utc(2, 12), "America/New_York")], 4)
    assert stamps == [_utc(3, 14)]  # 09:00 in New York, not 09:00 UTC
    assert any(why.startswith("timezone changed: due 2026-12-03T14:00") for _, why in history)


def test_a_paused_campaigns_booked_run_moves_too(store_url: str) -> None:
    source = "campaign b { at 2026-12-03T09:00 local { send email t } }"
    moves = [(_utc(2, 12), "America/New_York")]
    stamps, _ = _run(store_url, source, "b", moves, 4, paused=True)
    assert stamps == [_utc(3, 14)]


def test_an_at_local_run_already_past_in_the_new_zone_runs_at_once(store_url: str) -> None:
    source = "campaign b { at 2026-12-03T09:00 local { send email t } }"
    # At 05:00 UTC on the 3rd it is 13:00 in Manila: their 09:00 has gone by.
    stamps, _ = _run(store_url, source, "b", [(_utc(3, 5), "Asia/Manila")], 4)
    assert stamps == [_utc(3, 5)]


def test_every_local_runs_follow_the_contact(store_url: str) -> None:
    source = "campaign w { every monday 09:00 local { send email t } }"
    stamps, _ = _run(store_url, source, "w", [(_utc(9, 0), "Asia/Tokyo")], 14)
    # Monday 7 December 09:00 UTC, then Mondays 09:00 in Tokyo (00:00 UTC).
    assert stamps == [_utc(7, 9), _utc(14, 0)]


def test_wait_until_local_waits_for_the_new_zones_clock(store_url: str) -> None:
    source = "on launch { wait until 09:00 local  send email t }"
    # Waiting for 09:00 UTC on the 2nd; at 19:00 UTC they are in Manila (03:00 there).
    stamps, _ = _run(store_url, source, "t_launch", [(_utc(1, 19), "Asia/Manila")], 3)
    assert stamps == [_utc(2, 1)]  # 09:00 in Manila


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("Asia/Tokyo", _utc(2, 0)), ("America/Los_Angeles", _utc(1, 19))],
)
def test_a_send_held_for_a_local_window_follows_the_contact(
    store_url: str, zone: str, expected: dt.datetime
) -> None:
    source = """
campaign b {
  send_window 09:00-17:00 local
  on launch { send email t }
}
"""
    # Launched at 18:00 UTC, held for 09:00 UTC on the 2nd. At 19:00 UTC it is 04:00 in
    # Tokyo (their window opens at 00:00 UTC) and 11:00 in Los Angeles (open now).
    stamps, _ = _run(store_url, source, "b", [(_utc(1, 19), zone)], 2)
    assert stamps == [expected]


def test_a_wait_in_elapsed_time_does_not_move(store_url: str) -> None:
    source = "on launch { wait 1d  send email t }"
    stamps, history = _run(store_url, source, "t_launch", [(_utc(1, 19), "Asia/Tokyo")], 2)
    assert stamps == [_utc(2, 18)]
    assert not any(why.startswith("timezone changed") for _, why in history)


def test_a_moved_run_never_waits_past_the_campaigns_ends(store_url: str) -> None:
    source = "campaign b { ends 2026-12-03T10:00  at 2026-12-03T09:00 local { send email t } }"
    # 09:00 in Los Angeles is 17:00 UTC, after the campaign's end at 10:00 UTC: the contact
    # leaves at the end, as a wait that outlasts it does, not at 17:00.
    stamps, history = _run(store_url, source, "b", [(_utc(2, 12), "America/Los_Angeles")], 4)
    assert stamps == []
    assert ("2026-12-03T10:00:00+00:00", "campaign ended") in history
