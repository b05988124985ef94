"""Circuit breaker: opens on sustained failure, pauses the channel, closes when a probe succeeds."""

from __future__ import annotations

import random

import pytest
import trio

from cadence.adapters.brevo import BrevoAdapter
from cadence.adapters.config import BrevoConfig, Secret
from cadence.adapters.message import SendStatus
from cadence.adapters.retry import CircuitBreaker, CircuitState, RetryPolicy, parse_retry_after
from cadence.adapters.standins.brevo import BrevoStandin
from tests.adapters.conftest import email


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        failure_threshold=3, reset_timeout=10, max_reset_timeout=40, clock=clock
    )
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    assert breaker.seconds_until_probe() == 10
    clock.now = 10
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.record_failure()  # the probe failed: open again, longer
    assert breaker.state is CircuitState.OPEN and breaker.seconds_until_probe() == 20
    clock.now = 30
    assert breaker.allow()
    breaker.record_failure()
    clock.now = 70
    assert breaker.seconds_until_probe() == 0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow() and breaker.allow()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is CircuitState.CLOSED


def test_backoff_grows_with_jitter_and_caps() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=8, jitter=0.5)
    rng = random.Random(7)
    waits = [policy.backoff(n, rng) for n in range(6)]
    for n, wait in enumerate(waits):
        ceiling = min(8, 2**n)
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits}) == 6


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    import datetime as dt

    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0


@pytest.mark.trio
async def test_open_circuit_pauses_the_channel_and_recovers(nursery: trio.Nursery) -> None:
    standin = BrevoStandin()
    url = await nursery.start(standin.serve)
    # The breaker's own clock, moved by hand: on a loaded machine a real 0.3 s reset could
    # pass before the second send, or an outage timed in seconds end inside the first.
    now = [0.0]
    breaker = CircuitBreaker(
        failure_threshold=2, reset_timeout=0.3, max_reset_timeout=0.3, clock=lambda: now[0]
    )
    adapter = BrevoAdapter(
        BrevoConfig(api_key=Secret("test-brevo-key"), base_url=url),
        policy=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01),
        breaker=breaker,
    )
    standin.faults.outage(3600, "500")
    first = await adapter.send(email(1))
    assert first.status is SendStatus.RETRY_LATER and breaker.state is CircuitState.OPEN
    calls = len(standin.requests)
    paused = await adapter.send(email(2))
    assert paused.status is SendStatus.RETRY_LATER and paused.error_code == "circuit_open"
    assert paused.attempts == 0 and len(standin.requests) == calls  # the provider was not called
    standin.faults.clear()
    now[0] += 0.29
    still = await adapter.send(email(2))
    assert still.error_code == "circuit_open" and len(standin.requests) == calls
    now[0] += 0.02
    recovered = await adapter.send(email(2))
    assert recovered.ok and breaker.state is CircuitState.CLOSED
    await adapter.aclose()
