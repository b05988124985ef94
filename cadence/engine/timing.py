"""Wall-clock arithmetic for the engine: local times, send windows, quiet hours, schedules.

Campaigns speak in wall-clock time ("09:00 local", "weekdays", "21:00-08:00"); the store
and the scheduler speak in instants. Every function here takes and returns timezone-aware
UTC datetimes and does the conversion in one place, with one rule for daylight saving:

- a wall-clock time that does not exist on a day (clocks jump forward over it) means the
  first instant after the jump (02:30 on a 02:00 -> 03:00 night is 03:00);
- a wall-clock time that happens twice (clocks fall back) means the first occurrence.

So every local day has exactly one instant for each "HH:MM". See docs/semantics.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

from cadence.dsl import ast
from cadence.dsl.compiled import CompiledCampaign, EveryTriggerModel, QuietHours, SendWindow
from cadence.dsl.symbols import DAY_GROUPS, DAY_NAMES

UTC = dt.UTC
UTC_ZONE = ZoneInfo("UTC")


# How far ahead a search for the next opening looks before deciding there is none: from the
# day before, two weeks and a day. A window of one weekday whose hours the clocks skip that
# day (`02:00-03:00 local sunday` on a spring-forward Sunday) has no opening that week, and
# opens on the same weekday a week later.
_SEARCH_DAYS = 16
_DAY = dt.timedelta(days=1)
# How far ahead `next_send_instant` looks for a moment: a year and a week, so every
# daylight-saving change and every weekday has come round; none by then means none ever.
_SEND_HORIZON = dt.timedelta(days=373)


class NoSendMoment(ValueError):
    """The send window and the quiet hours leave a contact no moment at all to be sent to."""


# ---------------------------------------------------------------------------- parsing


def duration(seconds: int) -> dt.timedelta:
    """A compiled duration (seconds) as a timedelta, refusing a negative one."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}s")
    return dt.timedelta(seconds=seconds)


def parse_time_of_day(text: str) -> dt.time:
    """`"09:00"` (or `"9:00"`) as a time; the compiled form of every time of day."""
    hour_text, sep, minute_text = text.strip().partition(":")
    if not sep or not hour_text.isdigit() or not minute_text.isdigit() or len(minute_text) != 2:
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    hour, minute = int(hour_text), int(minute_text)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    return dt.time(hour, minute)


def expand_days(days: Sequence[str]) -> frozenset[int]:
    """Day names and groups (`weekdays`, `weekends`, `daily`) as weekday numbers, Monday 0."""
    chosen: set[int] = set()
    for day in days:
        if day in DAY_GROUPS:
            chosen.update(DAY_NAMES.index(name) for name in DAY_GROUPS[day])
        elif day in DAY_NAMES:
            chosen.add(DAY_NAMES.index(day))
        else:
            raise ValueError(f"unknown day {day!r}: use monday..sunday, weekdays, weekends, daily")
    return frozenset(chosen)


def _require_aware(moment: dt.datetime, what: str) -> dt.datetime:
    """The instant in UTC; a naive datetime is a programming error, not a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------- zones


def load_zone(name: str | None) -> ZoneInfo | None:
    """The zone with this IANA name, or None when it is missing or unknown."""
    if not name or not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def contact_zone(contact_tz: str | None, fallback: str | None = None) -> ZoneInfo:
    """The zone a contact's `local` times are read in: theirs, else the fallback, else UTC."""
    return load_zone(contact_tz) or load_zone(fallback) or UTC_ZONE


def contact_zone_in(campaign: CompiledCampaign, contact_tz: str | None) -> ZoneInfo:
    """The zone a contact's `local` times are read in under `campaign`: theirs, else the
    campaign's `timezone` (its fallback), else UTC."""
    setting = campaign.settings.timezone
    return contact_zone(contact_tz, setting.zone if setting is not None else None)


def campaign_zone(campaign: CompiledCampaign) -> ZoneInfo:
    """The campaign's own zone (its `timezone` setting), UTC without one."""
    return contact_zone_in(campaign, None)


def campaign_starts_instant(starts_iso: str, zone: ZoneInfo) -> dt.datetime:
    """The first instant of a campaign's `starts` (a date alone means 00:00), read in `zone`."""
    return wall_to_utc(parse_wall_moment(starts_iso), zone)


def setting_zone(local: bool, contact: ZoneInfo, campaign: ZoneInfo | None) -> ZoneInfo:
    """The zone a setting is read in: the contact's with `local`, else the campaign's (or UTC)."""
    if local:
        return contact
    return campaign or UTC_ZONE


# ---------------------------------------------------------------------------- wall clock


def local_instant(day: dt.date, time: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant the clock in `zone` shows `time` on `day`, by the DST rule above."""
    wall = dt.datetime.combine(day, time.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists (fold=0 is the first of two occurrences when it is ambiguous)
    # A gap: the wall time is skipped. The transition lies between the two readings of the
    # wall time (with the offset before and after the jump); find the first instant whose
    # local wall time is at or past the requested one.
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = sorted((first, second))
    lo = int(low.timestamp())
    hi = int(high.timestamp())
    while lo < hi:
        mid = (lo + hi) // 2
        shown = dt.datetime.fromtimestamp(mid, UTC).astimezone(zone).replace(tzinfo=None)
        if shown >= wall:
            hi = mid
        else:
            lo = mid + 1
    return dt.datetime.fromtimestamp(lo, UTC)


def next_time_of_day(after: dt.datetime, time_of_day: str | dt.time, zone: ZoneInfo) -> dt.datetime:
    """`wait until 09:00`: the first daily occurrence of the time strictly after `after`.

    At exactly 09:00, or later, it is 09:00 tomorrow (docs/language.md: "when it is already
    09:00 or later means 09:00 tomorrow").
    """
    start = _require_aware(after, "after")
    wanted = parse_time_of_day(time_of_day) if isinstance(time_of_day, str) else time_of_day
    day = start.astimezone(zone).date() - _DAY
    for _ in range(4):
        candidate = local_instant(day, wanted, zone)
        if candidate > start:
            return candidate
        day += _DAY
    raise AssertionError("unreachable: a day always has the time of day")  # pragma: no cover


# ---------------------------------------------------------------------------- windows


def _intervals(
    around: dt.datetime,
    start: dt.time,
    end: dt.time,
    weekdays: frozenset[int],
    zone: ZoneInfo,
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Daily [open, close) intervals from the day before `around`, in order.

    A range whose end is not after its start runs past midnight: it opens on a chosen day
    and closes the next day.
    """
    first_day = around.astimezone(zone).date() - _DAY
    overnight = end <= start
    for offset in range(_SEARCH_DAYS):
        day = first_day + dt.timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        opens = local_instant(day, start, zone)
        closes = local_instant(day + _DAY if overnight else day, end, zone)
        if closes > opens:
            yield opens, closes


def next_window_opening(at: dt.datetime, window: SendWindow, zone: ZoneInfo) -> dt.datetime:
    """When a send due at `at` may go out: `at` inside the window, else its next opening."""
    moment = _require_aware(at, "at")
    start, end = parse_time_of_day(window.start), parse_time_of_day(window.end)
    if start == end:
        raise ValueError(f"the send window {window.start}-{window.end} never opens")
    weekdays = expand_days(window.days) if window.days else frozenset(range(7))
    if not weekdays:
        raise ValueError("the send window has no days")
    for opens, closes in _intervals(moment, start, end, weekdays, zone):
        if opens <= moment < closes:
            return moment
        if opens > moment:
            return opens
    raise AssertionError("unreachable: a window with days opens within a week")  # pragma: no cover


def in_quiet_hours(at: dt.datetime, quiet: QuietHours, zone: ZoneInfo) -> bool:
    """True when `at` falls in the quiet hours (start inclusive, end exclusive)."""
    return apply_quiet_hours(at, quiet, zone) != _require_aware(at, "at")


def apply_quiet_hours(at: dt.datetime, quiet: QuietHours, zone: ZoneInfo) -> dt.datetime:
    """When a send due at `at` may go out: `at`, or the end of the quiet hours it falls in.

    Quiet hours apply every day; `21:00-08:00` runs past midnight; equal start and end make
    no quiet hours at all.
    """
    moment = _require_aware(at, "at")
    start, end = parse_time_of_day(quiet.start), parse_time_of_day(quiet.end)
    if start == end:
        return moment
    for opens, closes in _intervals(moment, start, end, frozenset(range(7)), zone):
        if opens <= moment < closes:
            return closes
        if opens > moment:
            break
    return moment


def next_send_instant(
    at: dt.datetime,
    window: SendWindow | None,
    quiet_hours: Sequence[QuietHours],
    contact: ZoneInfo,
    campaign: ZoneInfo | None = None,
) -> dt.datetime:
    """The first instant at or after `at` inside the send window and outside every quiet hours.

    Pass only the quiet hours that apply to the send's channel. `local` settings are read in
    the contact's zone, the others in the campaign's (UTC when None). Raises NoSendMoment
    when they leave no moment within a year: the window lies inside quiet hours (in the
    two zones they are read in, for a window and quiet hours of which one is `local`).
    """
    moment = _require_aware(at, "at")
    quiet = tuple(quiet_hours)
    found = None
    if not _closed_all_year(window, quiet, contact, campaign, moment.year):
        found = _first_send_moment(moment, moment + _SEND_HORIZON, window, quiet, contact, campaign)
    if found is None:
        raise NoSendMoment("the send window and the quiet hours never leave a moment to send")
    return found


def _first_send_moment(
    moment: dt.datetime,
    until: dt.datetime,
    window: SendWindow | None,
    quiet_hours: tuple[QuietHours, ...],
    contact: ZoneInfo,
    campaign: ZoneInfo | None,
) -> dt.datetime | None:
    """`next_send_instant`'s search up to `until`; None when nothing opens by then."""
    # Each round moves the time forward (to an opening, or to the end of quiet hours), so
    # the search ends.
    while moment <= until:
        moved = moment
        if window is not None:
            moved = next_window_opening(
                moved, window, setting_zone(window.local, contact, campaign)
            )
        for quiet in quiet_hours:
            moved = apply_quiet_hours(moved, quiet, setting_zone(quiet.local, contact, campaign))
        if moved == moment:
            return moment
        moment = moved
    return None


@functools.lru_cache(maxsize=1024)
def _closed_all_year(
    window: SendWindow | None,
    quiet_hours: tuple[QuietHours, ...],
    contact: ZoneInfo,
    campaign: ZoneInfo | None,
    year: int,
) -> bool:
    """Whether nothing opens from the first day of `year` to the horizon after it.

    Zone rules repeat yearly, so the answer holds for every moment of that year; it is
    cached because every contact of a zone that has no moment would search a year for it.
    """
    first = dt.datetime(year, 1, 1, tzinfo=UTC)
    return (
        _first_send_moment(first, first + _SEND_HORIZON, window, quiet_hours, contact, campaign)
        is None
    )


# ---------------------------------------------------------------------------- triggers


def parse_wall_moment(text: str) -> dt.datetime:
    """A compiled `at`/`starts`/`ends` moment: ISO date (00:00) or datetime, zone kept if any."""
    stripped = text.strip()
    if "T" not in stripped and " " not in stripped:
        return dt.datetime.combine(dt.date.fromisoformat(stripped), dt.time())
    return dt.datetime.fromisoformat(stripped.replace("Z", "+00:00"))


def wall_to_utc(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A wall-clock datetime read in `zone` (by the DST rule); an aware one is only converted."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment.astimezone(UTC)
    wall = moment.replace(microsecond=0)
    instant = local_instant(wall.date(), wall.time(), zone)
    return instant + dt.timedelta(microseconds=moment.microsecond)


def at_trigger_instant(
    at_iso: str,
    local: bool,
    zone: ZoneInfo,
    campaign_zone: ZoneInfo | None = None,
) -> dt.datetime:
    """When `at 2026-12-01T09:00 [local]` fires; a date alone means 00:00 that day.

    With `local` the moment is read in `zone` (the contact's). Without it, in
    `campaign_zone` when given, else in `zone` (callers may pass the campaign's zone, or UTC,
    as `zone` directly).
    """
    reading = zone if local or campaign_zone is None else campaign_zone
    return wall_to_utc(parse_wall_moment(at_iso), reading)


def campaign_ends_instant(ends_iso: str, zone: ZoneInfo) -> dt.datetime:
    """The first instant after a campaign's `ends`: a date alone includes that whole day."""
    moment = parse_wall_moment(ends_iso)
    stripped = ends_iso.strip()
    if "T" not in stripped and " " not in stripped:
        return wall_to_utc(moment + _DAY, zone)
    return wall_to_utc(moment, zone)


def campaign_ended(campaign: CompiledCampaign, now: dt.datetime) -> bool:
    """Whether the campaign's `ends` (read in the campaign's timezone) has come by `now`."""
    ends = campaign.settings.ends
    return ends is not None and now >= campaign_ends_instant(ends, campaign_zone(campaign))


def _every_days(
    days: tuple[str, ...], time: dt.time, zone: ZoneInfo, start: dt.datetime
) -> Iterator[dt.datetime]:
    weekdays = expand_days(days)
    if not weekdays:
        return
    day = start.astimezone(zone).date() - _DAY
    while True:
        if day.weekday() in weekdays:
            instant = local_instant(day, time, zone)
            if instant >= start:
                yield instant
        day += _DAY


def _every_interval(
    seconds: int, time: dt.time | None, zone: ZoneInfo, start: dt.datetime
) -> Iterator[dt.datetime]:
    if seconds <= 0:
        raise ValueError(f"an `every` interval must be positive, got {seconds}s")
    if time is None:
        instant = start
        while True:
            yield instant
            instant += dt.timedelta(seconds=seconds)
    day = start.astimezone(zone).date() - _DAY
    while local_instant(day, time, zone) < start:
        day += _DAY
    if seconds % 86_400 == 0:
        # Whole days step over the calendar, so the wall-clock time survives DST changes.
        step = dt.timedelta(days=seconds // 86_400)
        while True:
            yield local_instant(day, time, zone)
            day += step
    first = local_instant(day, time, zone)
    instant = first
    while True:
        yield instant
        instant += dt.timedelta(seconds=seconds)


def _every_parts(
    trigger: EveryTriggerModel | ast.EveryTrigger,
) -> tuple[tuple[str, ...], int | None, dt.time | None]:
    """An `every` trigger's named days, interval in seconds and time of day."""
    if isinstance(trigger, EveryTriggerModel):
        time = parse_time_of_day(trigger.time) if trigger.time is not None else None
        return trigger.days, trigger.interval_seconds, time
    seconds = trigger.interval.seconds if trigger.interval is not None else None
    time = dt.time(trigger.time.hour, trigger.time.minute) if trigger.time else None
    return trigger.days, seconds, time


def every_trigger_occurrences(
    trigger: EveryTriggerModel | ast.EveryTrigger,
    zone: ZoneInfo,
    start: dt.datetime,
    end: dt.datetime | None = None,
) -> Iterator[dt.datetime]:
    """The instants an `every` trigger fires in [start, end), in order (endless without end).

    Named days fire at the time (00:00 when none) on each such local day. An interval fires
    at `start` and every interval after it; with a time too, from the first such time at or
    after `start`, whole-day intervals keeping the wall-clock time across DST changes.
    `zone` is the contact's for `local` triggers, else the campaign's (or UTC).
    """
    begin = _require_aware(start, "start")
    stop = _require_aware(end, "end") if end is not None else None
    days, seconds, time = _every_parts(trigger)
    if seconds is not None:
        occurrences = _every_interval(seconds, time, zone, begin)
    else:
        occurrences = _every_days(days, time or dt.time(), zone, begin)
    for instant in occurrences:
        if stop is not None and instant >= stop:
            return
        yield instant


def every_run_from(
    trigger: EveryTriggerModel,
    zone: ZoneInfo,
    series_start: dt.datetime,
    not_before: dt.datetime,
) -> dt.datetime | None:
    """The first run at or after `not_before` of the series `trigger` fires from
    `series_start` (as `every_trigger_occurrences` counts it), found without walking the
    runs between: an `every 1m` series is 40,000 runs long after a month.
    """
    series_start = _require_aware(series_start, "series_start")
    not_before = _require_aware(not_before, "not_before")
    days, seconds, time = _every_parts(trigger)
    if seconds is None:
        # Named days are read off the calendar: the series' start only bounds them.
        runs = _every_days(days, time or dt.time(), zone, max(series_start, not_before))
        return next(runs, None)
    first = next(_every_interval(seconds, time, zone, series_start))
    if first >= not_before:
        return first
    if time is not None and seconds % 86_400 == 0:
        # Whole days keep the wall-clock time, so they are stepped over the calendar: jump
        # to a step or two before `not_before` and walk the rest.
        step_days = seconds // 86_400
        first_day = first.astimezone(zone).date()
        lag = (not_before.astimezone(zone).date() - first_day).days
        day = first_day + dt.timedelta(days=max(0, lag // step_days - 1) * step_days)
        while (instant := local_instant(day, time, zone)) < not_before:
            day += dt.timedelta(days=step_days)
        return instant
    step = dt.timedelta(seconds=seconds)
    return first + -((first - not_before) // step) * step
