"""Backoff and circuit breaking for every adapter, so an outage delays sends and drops none.

`RetryPolicy` spaces attempts with exponential backoff and jitter and honours what the
provider says (Retry-After, Brevo's ratelimit reset). `CircuitBreaker` stops calling a
provider after sustained failure, or at once when the provider says the account has no
credit (the channel pauses: sends come back as retry-later at the time of the next probe)
and closes by itself when a probe gets an answer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try inside one send call and how long to wait between tries.

    Waits longer than `max_inline_wait` are not slept: the send returns retry-later at
    that time and the engine reschedules the outbox row, so no worker idles for minutes.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 300.0
    max_inline_wait: float = 10.0
    jitter: float = 0.5

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based), with jitter."""
        raw = min(self.max_delay, self.base_delay * (2**attempt))
        spread: float = (rng or random.Random()).random() * self.jitter
        return float(raw * (1 - spread))


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    moment = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - moment).total_seconds())


class CircuitState(StrEnum):
    """Closed: calls flow. Open: refused until the cool-down ends. Half-open: one probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; probes again after a cool-down
    that doubles on every failed probe (up to `max_reset_timeout`)."""

    failure_threshold: int = 5
    reset_timeout: float = 5.0
    max_reset_timeout: float = 300.0
    clock: Callable[[], float] = time.monotonic
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_until: float = 0.0
    cooldown: float = 0.0
    _probing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """May a call go to the provider now? In half-open state only one probe at a time."""
        with self._lock:
            if self.state is CircuitState.CLOSED:
                return True
            if self.state is CircuitState.OPEN and self.clock() >= self.opened_until:
                self.state = CircuitState.HALF_OPEN
                self._probing = False
            if self.state is CircuitState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        """The provider answered (even a permanent error is an answer): close."""
        with self._lock:
            self.state = CircuitState.CLOSED
            self.failures = 0
            self.cooldown = 0.0
            self._probing = False

    def record_failure(self) -> None:
        """A transient failure (timeout, 5xx, 429, refused connection)."""
        with self._lock:
            self.failures += 1
            if self.state is CircuitState.HALF_OPEN or self.failures >= self.failure_threshold:
                self.cooldown = (
                    min(self.max_reset_timeout, self.cooldown * 2)
                    if self.cooldown
                    else self.reset_timeout
                )
                self.state = CircuitState.OPEN
                self.opened_until = self.clock() + self.cooldown
                self._probing = False

    def trip(self, seconds: float) -> None:
        """Open at once for `seconds`: the provider refused the account itself (no credit
        left), so every call would be refused the same way until its operator acts."""
        with self._lock:
            self.state = CircuitState.OPEN
            self.opened_until = self.clock() + seconds
            self._probing = False

    def seconds_until_probe(self) -> float:
        """How long until the next call may go through (0 when closed)."""
        with self._lock:
            if self.state is CircuitState.CLOSED:
                return 0.0
            return max(0.0, self.opened_until - self.clock())

    @property
    def is_open(self) -> bool:
        """True while calls are being refused."""
        return self.state is CircuitState.OPEN
