"""Wall-clock arithmetic: exact instants across DST changes in several zones."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.dsl import ast
from cadence.dsl.compiled import EveryTriggerModel, QuietHours, SendWindow
from cadence.engine.timing import (
    UTC_ZONE,
    NoSendMoment,
    _closed_all_year,
    apply_quiet_hours,
    at_trigger_instant,
    campaign_ends_instant,
    contact_zone,
    duration,
    every_run_from,
    every_trigger_occurrences,
    expand_days,
    in_quiet_hours,
    local_instant,
    next_send_instant,
    next_time_of_day,
    next_window_opening,
    parse_time_of_day,
    setting_zone,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
MANILA = ZoneInfo("Asia/Manila")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    """A UTC instant from its parts."""
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def window(start: str, end: str, *days: str, local: bool = True) -> SendWindow:
    """A compiled send window."""
    return SendWindow(start=start, end=end, local=local, days=days)


# ---------------------------------------------------------------------------- parsing


def test_durations_and_times_of_day() -> None:
    assert duration(129_600) == dt.timedelta(days=1, hours=12)
    assert parse_time_of_day("09:00") == dt.time(9, 0)
    assert parse_time_of_day("9:05") == dt.time(9, 5)
    for bad in ("24:00", "09:60", "0900", "9:5", "", "aa:bb"):
        with pytest.raises(ValueError):
            parse_time_of_day(bad)
    with pytest.raises(ValueError):
        duration(-1)


def test_day_groups_expand_to_weekday_numbers() -> None:
    assert expand_days(["weekdays"]) == {0, 1, 2, 3, 4}
    assert expand_days(["weekends", "monday"]) == {0, 5, 6}
    assert expand_days(["daily"]) == set(range(7))
    with pytest.raises(ValueError, match="unknown day"):
        expand_days(["funday"])


# ---------------------------------------------------------------------------- zones


def test_contact_zone_falls_back_to_campaign_then_utc() -> None:
    assert contact_zone("Asia/Manila", "America/New_York") == MANILA
    assert contact_zone(None, "America/New_York") == NY
    assert contact_zone("Not/AZone", "America/New_York") == NY
    assert contact_zone("", None) == UTC_ZONE
    assert contact_zone("garbage", "also garbage") == UTC_ZONE
    assert contact_zone("../../etc/passwd", None) == UTC_ZONE


def test_setting_zone_picks_contact_for_local_else_campaign_or_utc() -> None:
    assert setting_zone(True, MANILA, NY) == MANILA
    assert setting_zone(False, MANILA, NY) == NY
    assert setting_zone(False, MANILA, None) == UTC_ZONE


# ---------------------------------------------------------------------------- local instants


@pytest.mark.parametrize(
    ("zone", "day", "time", "expected"),
    [
        # ordinary days
        (NY, dt.date(2026, 1, 15), dt.time(9, 0), utc(2026, 1, 15, 14, 0)),
        (NY, dt.date(2026, 7, 15), dt.time(9, 0), utc(2026, 7, 15, 13, 0)),
        (MANILA, dt.date(2026, 3, 8), dt.time(9, 0), utc(2026, 3, 8, 1, 0)),
        # New York, spring forward 2026-03-08 02:00 -> 03:00: the gap moves to 03:00 EDT
        (NY, dt.date(2026, 3, 8), dt.time(2, 0), utc(2026, 3, 8, 7, 0)),
        (NY, dt.date(2026, 3, 8), dt.time(2, 30), utc(2026, 3, 8, 7, 0)),
        (NY, dt.date(2026, 3, 8), dt.time(1, 59), utc(2026, 3, 8, 6, 59)),
        (NY, dt.date(2026, 3, 8), dt.time(3, 0), utc(2026, 3, 8, 7, 0)),
        # New York, fall back 2026-11-01 02:00 -> 01:00: 01:30 happens twice, first one wins
        (NY, dt.date(2026, 11, 1), dt.time(1, 30), utc(2026, 11, 1, 5, 30)),
        (NY, dt.date(2026, 11, 1), dt.time(2, 0), utc(2026, 11, 1, 7, 0)),
        (NY, dt.date(2026, 11, 1), dt.time(0, 59), utc(2026, 11, 1, 4, 59)),
        # Berlin, 2026-03-29 02:00 -> 03:00 and 2026-10-25 03:00 -> 02:00
        (BERLIN, dt.date(2026, 3, 29), dt.time(2, 30), utc(2026, 3, 29, 1, 0)),
        (BERLIN, dt.date(2026, 10, 25), dt.time(2, 30), utc(2026, 10, 25, 0, 30)),
        # Lord Howe moves by 30 minutes: 2026-10-04 02:00 -> 02:30, 2026-04-05 02:00 -> 01:30
        (LORD_HOWE, dt.date(2026, 10, 4), dt.time(2, 15), utc(2026, 10, 3, 15, 30)),
        (LORD_HOWE, dt.date(2026, 10, 4), dt.time(2, 30), utc(2026, 10, 3, 15, 30)),
        (LORD_HOWE, dt.date(2026, 4, 5), dt.time(1, 45), utc(2026, 4, 4, 14, 45)),
        (LORD_HOWE, dt.date(2026, 4, 5), dt.time(2, 0), utc(2026, 4, 4, 15, 30)),
    ],
)
def test_local_instant(zone: ZoneInfo, day: dt.date, time: dt.time, expected: dt.datetime) -> None:
    assert local_instant(day, time, zone) == expected


# ---------------------------------------------------------------------------- wait until


@pytest.mark.parametrize(
    ("after", "hhmm", "zone", "expected"),
    [
        # 08:30 local -> 09:00 today; 10:15 -> tomorrow; exactly 09:00 -> tomorrow
        (utc(2026, 1, 15, 13, 30), "09:00", NY, utc(2026, 1, 15, 14, 0)),
        (utc(2026, 1, 15, 15, 15), "09:00", NY, utc(2026, 1, 16, 14, 0)),
        (utc(2026, 1, 15, 14, 0), "09:00", NY, utc(2026, 1, 16, 14, 0)),
        (utc(2026, 1, 15, 13, 59, 59), "09:00", NY, utc(2026, 1, 15, 14, 0)),
        # the local date differs from the UTC date: 23:00 UTC is 07:00 next day in Manila
        (utc(2026, 1, 15, 23, 0), "09:00", MANILA, utc(2026, 1, 16, 1, 0)),
        (utc(2026, 1, 16, 2, 0), "09:00", MANILA, utc(2026, 1, 17, 1, 0)),
        # across spring forward: 09:00 EST on Saturday, 09:00 EDT on Sunday (one hour shorter)
        (utc(2026, 3, 7, 15, 0), "09:00", NY, utc(2026, 3, 8, 13, 0)),
        (utc(2026, 3, 7, 12, 0), "09:00", NY, utc(2026, 3, 7, 14, 0)),
        # 02:30 does not exist on 2026-03-08: the first instant after the gap, 03:00 EDT
        (utc(2026, 3, 8, 5, 0), "02:30", NY, utc(2026, 3, 8, 7, 0)),
        # at 03:10 EDT the moved occurrence is past, so 02:30 EDT on the ninth
        (utc(2026, 3, 8, 7, 10), "02:30", NY, utc(2026, 3, 9, 6, 30)),
        # across fall back: 01:30 EDT is the occurrence; after it, the repeat does not count
        (utc(2026, 11, 1, 4, 0), "01:30", NY, utc(2026, 11, 1, 5, 30)),
        (utc(2026, 11, 1, 5, 45), "01:30", NY, utc(2026, 11, 2, 6, 30)),
        (utc(2026, 11, 1, 6, 15), "01:30", NY, utc(2026, 11, 2, 6, 30)),
        (utc(2026, 10, 31, 14, 0), "09:00", NY, utc(2026, 11, 1, 14, 0)),
        # Berlin and Lord Howe
        (utc(2026, 3, 28, 12, 0), "02:30", BERLIN, utc(2026, 3, 29, 1, 0)),
        (utc(2026, 10, 24, 12, 0), "02:30", BERLIN, utc(2026, 10, 25, 0, 30)),
        (utc(2026, 10, 3, 12, 0), "02:15", LORD_HOWE, utc(2026, 10, 3, 15, 30)),
        (utc(2026, 4, 4, 12, 0), "01:45", LORD_HOWE, utc(2026, 4, 4, 14, 45)),
        (utc(2026, 4, 4, 14, 50), "01:45", LORD_HOWE, utc(2026, 4, 5, 15, 15)),
    ],
)
def test_next_time_of_day(
    after: dt.datetime, hhmm: str, zone: ZoneInfo, expected: dt.datetime
) -> None:
    assert next_time_of_day(after, hhmm, zone) == expected


def test_next_time_of_day_accepts_other_offsets_and_refuses_naive() -> None:
    manila_morning = dt.datetime(2026, 1, 16, 7, 0, tzinfo=MANILA)
    assert next_time_of_day(manila_morning, "09:00", MANILA) == utc(2026, 1, 16, 1, 0)
    assert next_time_of_day(manila_morning, dt.time(9), MANILA).tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        next_time_of_day(dt.datetime(2026, 1, 1), "09:00", NY)


ZONES = [NY, BERLIN, MANILA, LORD_HOWE, ZoneInfo("Australia/Sydney"), ZoneInfo("UTC")]


@settings(max_examples=300, deadline=None)
@given(
    after=st.datetimes(
        min_value=dt.datetime(2025, 1, 1),
        max_value=dt.datetime(2028, 12, 31),
        timezones=st.just(UTC),
    ),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 15, 29, 30, 45, 59]),
    zone=st.sampled_from(ZONES),
)
def test_next_time_of_day_properties(
    after: dt.datetime, hour: int, minute: int, zone: ZoneInfo
) -> None:
    wanted = dt.time(hour, minute)
    result = next_time_of_day(after, wanted, zone)
    assert result > after
    assert result.tzinfo is UTC
    assert result - after <= dt.timedelta(days=1, hours=1)
    wall = result.astimezone(zone)
    exists = local_instant(wall.date(), wanted, zone).astimezone(zone).time() == wanted
    if exists:
        assert wall.time() == wanted
    else:
        # in a gap: the first instant after it, which is later than the wanted wall time
        assert wall.time() > wanted
        assert (result - dt.timedelta(seconds=1)).astimezone(zone).time() < wanted
    # nothing earlier qualifies: the previous occurrence is not after `after`
    previous_day = wall.date() - dt.timedelta(days=1)
    assert local_instant(previous_day, wanted, zone) <= after


# ---------------------------------------------------------------------------- send windows


def test_window_inside_returns_the_same_instant() -> None:
    w = window("09:00", "18:00", "monday", "tuesday", "wednesday", "thursday", "friday")
    at = utc(2026, 1, 14, 15, 0)  # Wednesday 10:00 EST
    assert next_window_opening(at, w, NY) == at


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 1, 14, 12, 0), utc(2026, 1, 14, 14, 0)),  # Wed 07:00 -> 09:00
        (utc(2026, 1, 14, 14, 0), utc(2026, 1, 14, 14, 0)),  # exactly at the opening
        (utc(2026, 1, 14, 23, 0), utc(2026, 1, 15, 14, 0)),  # Wed 18:00 (closed) -> Thu 09:00
        (utc(2026, 1, 16, 23, 30), utc(2026, 1, 19, 14, 0)),  # Fri 18:30 -> Monday
        (utc(2026, 1, 17, 15, 0), utc(2026, 1, 19, 14, 0)),  # Saturday -> Monday
        (utc(2026, 3, 6, 23, 30), utc(2026, 3, 9, 13, 0)),  # Fri -> Monday after the DST change
    ],
)
def test_weekday_window_next_opening(at: dt.datetime, expected: dt.datetime) -> None:
    w = window("09:00", "18:00", "weekdays")
    assert next_window_opening(at, w, NY) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 1, 15, 1, 30), utc(2026, 1, 15, 1, 30)),  # Wed 20:30 in, before midnight
        (utc(2026, 1, 15, 7, 30), utc(2026, 1, 15, 7, 30)),  # Thu 02:30, after midnight
        (utc(2026, 1, 15, 13, 0), utc(2026, 1, 16, 1, 0)),  # Thu 08:00 closed -> Thu 20:00
        (utc(2026, 1, 16, 12, 0), utc(2026, 1, 16, 12, 0)),  # Fri 07:00: Thursday's night
        (utc(2026, 1, 17, 12, 0), utc(2026, 1, 20, 1, 0)),  # Sat 07:00: Friday not chosen
    ],
)
def test_overnight_window_belongs_to_the_day_it_opens(
    at: dt.datetime, expected: dt.datetime
) -> None:
    w = window("20:00", "08:00", "monday", "tuesday", "wednesday", "thursday")
    assert next_window_opening(at, w, NY) == expected


def test_window_days_accept_groups_and_empty_means_every_day() -> None:
    saturday_night = utc(2026, 1, 17, 23, 30)  # 18:30 EST
    assert next_window_opening(saturday_night, window("09:00", "18:00", "weekends"), NY) == utc(
        2026, 1, 18, 14, 0
    )
    assert next_window_opening(saturday_night, window("09:00", "18:00"), NY) == utc(
        2026, 1, 18, 14, 0
    )
    assert next_window_opening(saturday_night, window("09:00", "18:00", "daily"), NY) == utc(
        2026, 1, 18, 14, 0
    )


def test_window_opening_in_a_dst_gap_opens_after_the_gap() -> None:
    w = window("02:30", "05:00", "sunday")
    assert next_window_opening(utc(2026, 3, 8, 5, 0), w, NY) == utc(2026, 3, 8, 7, 0)
    # and the window in Manila is at its own clock
    assert next_window_opening(utc(2026, 3, 8, 5, 0), window("09:00", "18:00"), MANILA) == utc(
        2026, 3, 8, 5, 0
    )


def test_a_weekly_window_the_clocks_skip_opens_the_week_after() -> None:
    """Berlin skips 02:00-03:00 on Sunday 2026-03-29: a Sunday window inside that hour opens
    on no instant that day (it opens and closes at 03:00), so it opens the Sunday after. The
    search for it used to stop after eight days and crash the step with an AssertionError."""
    saturday = utc(2026, 3, 28, 12, 0)
    for w in (window("02:00", "03:00", "sunday"), window("02:15", "02:45", "sunday")):
        opening = next_window_opening(saturday, w, BERLIN)
        assert opening.astimezone(BERLIN).date() == dt.date(2026, 4, 5)
        assert next_send_instant(saturday, w, [], BERLIN) == opening
    assert next_window_opening(saturday, window("02:00", "03:00", "sunday"), BERLIN) == utc(
        2026, 4, 5, 0, 0
    )


def test_window_that_never_opens_is_an_error() -> None:
    with pytest.raises(ValueError, match="never opens"):
        next_window_opening(utc(2026, 1, 1), window("09:00", "09:00"), NY)


# ---------------------------------------------------------------------------- quiet hours


def quiet(start: str, end: str, *, channel: str | None = "sms", local: bool = True) -> QuietHours:
    """Compiled quiet hours."""
    return QuietHours(channel=channel, start=start, end=end, local=local)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 1, 15, 1, 30), utc(2026, 1, 15, 1, 30)),  # 20:30 -> outside, unchanged
        (utc(2026, 1, 15, 2, 0), utc(2026, 1, 15, 13, 0)),  # 21:00 -> 08:00 next morning
        (utc(2026, 1, 15, 7, 0), utc(2026, 1, 15, 13, 0)),  # 02:00 -> 08:00
        (utc(2026, 1, 15, 13, 0), utc(2026, 1, 15, 13, 0)),  # exactly 08:00 -> free
        (utc(2026, 1, 15, 17, 0), utc(2026, 1, 15, 17, 0)),  # noon -> free
        # the night of the spring-forward change: 22:00 EST -> 08:00 EDT
        (utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 12, 0)),
        # the night of fall back: 23:00 EDT -> 08:00 EST
        (utc(2026, 11, 1, 3, 0), utc(2026, 11, 1, 13, 0)),
    ],
)
def test_quiet_hours_past_midnight(at: dt.datetime, expected: dt.datetime) -> None:
    q = quiet("21:00", "08:00")
    result = apply_quiet_hours(at, q, NY)
    assert result == expected
    assert in_quiet_hours(at, q, NY) == (result != at)


def test_quiet_hours_within_a_day_and_empty() -> None:
    lunch = quiet("12:00", "13:00", local=False)
    assert apply_quiet_hours(utc(2026, 1, 15, 12, 30), lunch, UTC_ZONE) == utc(2026, 1, 15, 13)
    assert apply_quiet_hours(utc(2026, 1, 15, 13, 0), lunch, UTC_ZONE) == utc(2026, 1, 15, 13)
    assert apply_quiet_hours(utc(2026, 1, 15, 11, 59), lunch, UTC_ZONE) == utc(2026, 1, 15, 11, 59)
    assert apply_quiet_hours(utc(2026, 1, 15, 3), quiet("05:00", "05:00"), NY) == utc(
        2026, 1, 15, 3
    )


def test_next_send_instant_combines_window_and_quiet_hours() -> None:
    # window opens 07:00 local, but quiet hours run until 08:00: 08:00 it is
    w = window("07:00", "20:00", "weekdays")
    q = quiet("21:00", "08:00")
    assert next_send_instant(utc(2026, 1, 15, 3, 0), w, [q], NY) == utc(2026, 1, 15, 13, 0)
    # Friday 20:30: window closed, next opening Monday 07:00 is quiet, so Monday 08:00
    assert next_send_instant(utc(2026, 1, 17, 1, 30), w, [q], NY) == utc(2026, 1, 19, 13, 0)
    # no window, no quiet hours: unchanged
    assert next_send_instant(utc(2026, 1, 15, 3, 0), None, [], NY) == utc(2026, 1, 15, 3, 0)
    # a non-local window reads in the campaign's zone while quiet hours stay local
    utc_window = window("12:00", "13:00", local=False)
    assert next_send_instant(utc(2026, 1, 15, 3), utc_window, [q], MANILA, None) == utc(
        2026, 1, 15, 12
    )


def test_window_entirely_inside_quiet_hours_is_an_error() -> None:
    with pytest.raises(NoSendMoment, match="never leave"):
        next_send_instant(utc(2026, 1, 15), window("22:00", "23:00"), [quiet("21:00", "08:00")], NY)


def test_a_window_closed_by_quiet_hours_in_another_zone_until_the_clocks_change() -> None:
    # 09:00-10:00 New York time is 14:00-15:00 UTC all winter, inside quiet hours read in
    # UTC; it opens again when New York springs forward (2027-03-14), four months on.
    morning, afternoon = window("09:00", "10:00"), quiet("14:00", "15:00", local=False)
    assert next_send_instant(utc(2026, 11, 10), morning, [afternoon], NY) == utc(2027, 3, 14, 13)
    # A zone without daylight saving never leaves it a moment.
    with pytest.raises(NoSendMoment):
        next_send_instant(utc(2026, 11, 10), morning, [afternoon], ZoneInfo("Etc/GMT+5"))


def test_a_zone_without_a_moment_is_searched_once_for_all_its_contacts() -> None:
    """A year of openings is searched once per zone and year, not once per contact: a
    broadcast to thousands of contacts in such a zone took a second per 7 of them."""
    morning, afternoon = window("09:00", "10:00"), quiet("15:00", "16:00", local=False)
    west = ZoneInfo("Etc/GMT+6")  # UTC-06:00: 09:00 there is 15:00 UTC
    searched = _closed_all_year.cache_info().misses
    for minute in range(50):
        with pytest.raises(NoSendMoment):
            next_send_instant(utc(2026, 5, 1, 0, minute), morning, [afternoon], west)
    assert _closed_all_year.cache_info().misses == searched + 1


# ---------------------------------------------------------------------------- at / ends


def test_at_trigger_local_reads_each_contacts_clock() -> None:
    assert at_trigger_instant("2026-12-01T09:00", True, MANILA) == utc(2026, 12, 1, 1, 0)
    assert at_trigger_instant("2026-12-01T09:00", True, NY) == utc(2026, 12, 1, 14, 0)
    # not local: the campaign's zone when given separately, else the zone passed
    assert at_trigger_instant("2026-12-01T09:00", False, MANILA, NY) == utc(2026, 12, 1, 14, 0)
    assert at_trigger_instant("2026-12-01T09:00", False, UTC_ZONE) == utc(2026, 12, 1, 9, 0)
    assert at_trigger_instant("2026-12-01T09:00", False, NY) == utc(2026, 12, 1, 14, 0)
    # a date alone is 00:00; seconds are kept; a DST gap moves forward
    assert at_trigger_instant("2026-12-01", True, MANILA) == utc(2026, 11, 30, 16, 0)
    assert at_trigger_instant("2026-12-01T09:00:30", False, UTC_ZONE) == utc(2026, 12, 1, 9, 0, 30)
    assert at_trigger_instant("2026-03-08T02:30", True, NY) == utc(2026, 3, 8, 7, 0)
    assert at_trigger_instant("2026-11-01T01:30", True, NY) == utc(2026, 11, 1, 5, 30)


def test_campaign_end_date_includes_the_whole_day() -> None:
    assert campaign_ends_instant("2027-01-31", NY) == utc(2027, 2, 1, 5, 0)
    assert campaign_ends_instant("2027-01-31T23:59", UTC_ZONE) == utc(2027, 1, 31, 23, 59)


# ---------------------------------------------------------------------------- every


def every(
    days: tuple[str, ...] = (), interval: int | None = None, time: str | None = None
) -> EveryTriggerModel:
    """A compiled `every` trigger."""
    return EveryTriggerModel(
        id="every", entry="end", days=days, interval_seconds=interval, time=time, local=True
    )


def test_every_monday_at_nine_across_spring_forward() -> None:
    start = utc(2026, 2, 25)
    occurrences = list(
        every_trigger_occurrences(every(("monday",), None, "09:00"), NY, start, utc(2026, 3, 20))
    )
    assert occurrences == [
        utc(2026, 3, 2, 14, 0),
        utc(2026, 3, 9, 13, 0),
        utc(2026, 3, 16, 13, 0),
    ]


def test_every_is_start_inclusive_end_exclusive() -> None:
    trigger = every(("tuesday", "friday"), None, "10:30")
    start = utc(2026, 1, 13, 15, 30)  # Tuesday 10:30 EST exactly
    got = list(every_trigger_occurrences(trigger, NY, start, utc(2026, 1, 20, 15, 30)))
    assert got == [utc(2026, 1, 13, 15, 30), utc(2026, 1, 16, 15, 30)]


def test_every_defaults_to_midnight_and_accepts_the_ast() -> None:
    trigger = ast.EveryTrigger(days=("weekends",), interval=None, time=None, local=True)
    got = list(every_trigger_occurrences(trigger, MANILA, utc(2026, 1, 15), utc(2026, 1, 26)))
    assert got == [
        utc(2026, 1, 16, 16, 0),
        utc(2026, 1, 17, 16, 0),
        utc(2026, 1, 23, 16, 0),
        utc(2026, 1, 24, 16, 0),
    ]
    ast_time = ast.EveryTrigger(days=("monday",), interval=None, time=ast.TimeLit(9, 0), local=True)
    first = next(every_trigger_occurrences(ast_time, MANILA, utc(2026, 1, 15)))
    assert first == utc(2026, 1, 19, 1, 0)


def test_every_interval_without_time_counts_from_start() -> None:
    start = utc(2026, 3, 1, 17, 20)
    got = list(itertools.islice(every_trigger_occurrences(every((), 604_800), NY, start), 3))
    assert got == [start, utc(2026, 3, 8, 17, 20), utc(2026, 3, 15, 17, 20)]


def test_every_interval_with_time_keeps_the_wall_clock() -> None:
    start = utc(2026, 3, 1, 20, 0)  # 15:00 EST, after 09:00: first run is Monday 09:00
    got = list(
        itertools.islice(every_trigger_occurrences(every((), 604_800, "09:00"), NY, start), 3)
    )
    assert got == [utc(2026, 3, 2, 14, 0), utc(2026, 3, 9, 13, 0), utc(2026, 3, 16, 13, 0)]
    # a sub-day interval with a time steps in real hours from the first time
    half_day = list(
        itertools.islice(
            every_trigger_occurrences(every((), 43_200, "06:00"), UTC_ZONE, utc(2026, 1, 1)), 3
        )
    )
    assert half_day == [utc(2026, 1, 1, 6), utc(2026, 1, 1, 18), utc(2026, 1, 2, 6)]


def test_every_fall_back_fires_once_per_day() -> None:
    trigger = every(("daily",), None, "01:30")
    got = list(every_trigger_occurrences(trigger, NY, utc(2026, 10, 31), utc(2026, 11, 3)))
    assert got == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_every_with_bad_input() -> None:
    with pytest.raises(ValueError):
        next(every_trigger_occurrences(every((), 0), NY, utc(2026, 1, 1)))
    with pytest.raises(ValueError, match="timezone-aware"):
        next(every_trigger_occurrences(every(("monday",)), NY, dt.datetime(2026, 1, 1)))


# ---------------------------------------------------------------------------- window laws


def _inside(
    moment: dt.datetime, start: dt.time, end: dt.time, days: set[int], zone: ZoneInfo
) -> bool:
    """An independent reading of a window: does the local clock show a time inside it?"""
    local = moment.astimezone(zone)
    wall, day = local.time().replace(tzinfo=None), local.date()
    if start < end:
        return day.weekday() in days and start <= wall < end
    yesterday = (day - dt.timedelta(days=1)).weekday()
    return (day.weekday() in days and wall >= start) or (yesterday in days and wall < end)


# Boundaries from 04:00 on stay clear of every DST change in these zones, so the wall clock
# alone says whether an instant is inside.
boundary = st.builds(dt.time, st.integers(4, 23), st.sampled_from([0, 15, 30, 59]))
instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    at=instants,
    start=boundary,
    end=boundary,
    days=st.sets(st.integers(0, 6), min_size=1),
    zone=st.sampled_from(ZONES),
)
def test_next_window_opening_is_the_first_inside_instant(
    at: dt.datetime, start: dt.time, end: dt.time, days: set[int], zone: ZoneInfo
) -> None:
    if start == end:
        return
    names = [
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[d]
        for d in sorted(days)
    ]
    w = window(start.strftime("%H:%M"), end.strftime("%H:%M"), *names)
    result = next_window_opening(at, w, zone)
    assert result >= at
    assert _inside(result, start, end, days, zone)
    if result == at:
        return
    assert not _inside(at, start, end, days, zone)
    # no opening lies between `at` and the result
    day = at.astimezone(zone).date() - dt.timedelta(days=1)
    while day <= result.astimezone(zone).date():
        opening = dt.datetime.combine(day, start, tzinfo=zone).astimezone(UTC)
        assert not (day.weekday() in days and at < opening < result)
        day += dt.timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(at=instants, start=boundary, end=boundary, zone=st.sampled_from(ZONES))
def test_quiet_hours_move_to_their_end_only(
    at: dt.datetime, start: dt.time, end: dt.time, zone: ZoneInfo
) -> None:
    if start == end:
        return
    every_day = set(range(7))
    q = quiet(start.strftime("%H:%M"), end.strftime("%H:%M"))
    result = apply_quiet_hours(at, q, zone)
    assert result >= at
    assert not _inside(result, start, end, every_day, zone)
    if result != at:
        assert _inside(at, start, end, every_day, zone)
        just_before = max(at, result - dt.timedelta(minutes=1))
        assert _inside(just_before, start, end, every_day, zone)
        assert result.astimezone(zone).time() == end


@settings(max_examples=300, deadline=None)
@given(
    series_start=instants,
    lag=st.integers(0, 200 * 86_400),
    interval=st.sampled_from([None, 60, 3_600, 5_400, 86_400, 7 * 86_400, 14 * 86_400]),
    time=st.sampled_from([None, "00:00", "02:30", "09:00", "23:59"]),
    days=st.sampled_from([(), ("monday",), ("weekdays",), ("saturday", "sunday")]),
    zone=st.sampled_from(ZONES),
)
def test_every_run_from_jumps_to_the_run_the_series_walk_finds(
    series_start: dt.datetime,
    lag: int,
    interval: int | None,
    time: str | None,
    days: tuple[str, ...],
    zone: ZoneInfo,
) -> None:
    # A contact joining a long-running `every 1m` series must not walk every run since the
    # launch; jumping there gives the run the walk gives, across DST changes too.
    if (interval is None) == (not days):
        return  # an `every` has named days or an interval, not both or neither
    trigger = every(days if interval is None else (), interval, time)
    not_before = series_start + dt.timedelta(seconds=lag)
    walked = next(
        run for run in every_trigger_occurrences(trigger, zone, series_start) if run >= not_before
    )
    assert every_run_from(trigger, zone, series_start, not_before) == walked
