"""The engine's two clocks: the real one for service, a simulated one for dry-runs and demos.

The engine reads time only through a `Clock`, so the same code runs a month of campaign in
seconds (the simulated clock jumps straight to the next due moment) or waits for real time.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import trio

UTC = dt.UTC


class Clock(Protocol):
    """What the engine needs of time: the current instant, and a way to wait for another."""

    def now(self) -> dt.datetime:
        """The current instant, timezone-aware UTC."""
        ...

    async def sleep_until(self, when: dt.datetime) -> None:
        """Return at `when` (or at once if it has passed)."""
        ...

    @property
    def simulated(self) -> bool:
        """True when time moves only when the engine moves it."""
        ...


class SystemClock:
    """Wall-clock time; sleeping really sleeps (and is cancellable, as Trio sleeps are)."""

    simulated = False

    def now(self) -> dt.datetime:
        """The machine's current time in UTC."""
        return dt.datetime.now(UTC)

    async def sleep_until(self, when: dt.datetime) -> None:
        """Sleep until `when`, in one Trio sleep."""
        delay = (when - self.now()).total_seconds()
        await trio.sleep(max(0.0, delay))


class SimulatedClock:
    """Time that stands still until advanced; `sleep_until` jumps forward instead of waiting."""

    simulated = True

    def __init__(self, start: dt.datetime) -> None:
        """Start the simulation at `start` (naive values are taken as UTC)."""
        self._now = as_utc(start)

    def now(self) -> dt.datetime:
        """The simulated current instant."""
        return self._now

    def advance_to(self, when: dt.datetime) -> None:
        """Move time forward to `when`; never backwards."""
        when = as_utc(when)
        if when > self._now:
            self._now = when

    async def sleep_until(self, when: dt.datetime) -> None:
        """Jump to `when`, yielding once so other tasks run at the new time."""
        self.advance_to(when)
        await trio.lowlevel.checkpoint()


def as_utc(moment: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def read_instant(text: str) -> dt.datetime | None:
    """ISO 8601 text as an aware UTC datetime, or None: the one reading of a written instant.

    An offset or `Z` places it; none means UTC. RFC 3339 allows `z` as well as `Z`. A time
    whose offset moves it out of the calendar (0001-01-01T00:00+01:00) is no instant either.
    """
    stripped = text.strip()
    if stripped.endswith("z"):
        stripped = stripped[:-1] + "Z"
    try:
        return as_utc(dt.datetime.fromisoformat(stripped))
    except (ValueError, OverflowError):
        return None


def parse_instant(text: str) -> dt.datetime:
    """`read_instant` for input a user gave on purpose, where not an instant is an error."""
    moment = read_instant(text)
    if moment is None:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date-time (e.g. 2026-12-01T09:00:00Z or 2026-12-01)"
        )
    return moment
