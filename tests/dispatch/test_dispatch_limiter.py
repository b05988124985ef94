"""Rate-limited batching, the same on both backends: rates, bursts, fairness, batches, 429s."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cadence.dispatch.filter import Backend
from cadence.dispatch.limiter import ProviderLimit, RateLimiter, Schedule, TenantLimit

S = 1_000_000


def plan(
    limiter: RateLimiter,
    campaign: list[int],
    priority: list[int] | None = None,
    provider: list[int] | None = None,
    tenant: list[int] | None = None,
    ready: list[int] | None = None,
) -> Schedule:
    n = len(campaign)
    return limiter.schedule(
        campaign,
        priority or [1] * n,
        provider or [1] * n,
        tenant or [0] * n,
        ready or [0] * n,
    )


def test_rate_spaces_messages(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=10))
    s = plan(lim, [1, 1, 1])
    assert s.send_at.tolist() == [0, S // 10, 2 * S // 10]
    assert s.order.tolist() == [0, 1, 2]


def test_burst_then_rate(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=10, burst=3))
    assert plan(lim, [1] * 5).send_at.tolist() == [0, 0, 0, S // 10, 2 * S // 10]


def test_state_persists_across_calls(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1))
    plan(lim, [1, 1])
    assert lim.tat(1) == 2 * S
    assert plan(lim, [2]).send_at.tolist() == [2 * S]


def test_ready_time_is_respected(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1))
    s = plan(lim, [1, 1], ready=[5 * S, 0])
    assert s.send_at.tolist() == [5 * S, 0]
    assert s.order.tolist() == [1, 0]


def test_a_triggered_email_is_not_starved_by_a_broadcast(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=100))
    n = 10_000
    campaign = [1] * n + [2]
    priority = [1] * n + [10]
    ready = [0] * n + [30 * S]  # arrives 30 s into a 100 s broadcast
    s = plan(lim, campaign, priority, ready=ready)
    assert s.send_at[n] <= 30 * S + S // 10
    # the broadcast still gets all its messages through
    assert (s.send_at[:n] >= 0).all() and len(set(s.order.tolist())) == n + 1


def test_priority_weights_interleave(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1000))
    campaign = [1] * 300 + [2] * 300
    priority = [1] * 300 + [2] * 300
    s = plan(lim, campaign, priority)
    first = s.order[:90]
    # weight 2 gets two picks for each pick of weight 1
    assert int((first >= 300).sum()) == 60


def test_tenant_limit_does_not_block_other_tenants(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1000))
    lim.set_tenant(1, 7, TenantLimit(rate_per_s=1))
    s = plan(lim, [1, 1, 1, 2, 2, 2], tenant=[7, 7, 7, 8, 8, 8])
    assert s.send_at[:3].tolist() == [0, S, 2 * S]
    assert max(s.send_at[3:].tolist()) < S // 100


def test_batches_respect_size_and_linger(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1000, batch_size=3, linger_us=10_000))
    s = plan(lim, [1] * 7, ready=[0] * 6 + [S])
    batches = list(s.batches())
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.send_at for b in batches] == [2000, 5000, S]
    assert s.send_at.tolist() == [2000] * 3 + [5000] * 3 + [S]
    assert len({b.id for b in batches}) == 3


def test_batches_are_per_tenant(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1000, batch_size=10, linger_us=S))
    s = plan(lim, [1, 2, 1, 2], tenant=[1, 2, 1, 2])
    assert sorted(b.indices.tolist() for b in s.batches()) == [[0, 2], [1, 3]]


def test_429_pauses_then_slows_the_provider(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=10, recovery_us=S))
    lim.set_provider(2, ProviderLimit(rate_per_s=10))
    lim.throttle(1, now=0, retry_after_us=2 * S)
    s = plan(lim, [1] * 3 + [2] * 3, provider=[1] * 3 + [2] * 3)
    assert s.send_at[:3].tolist() == [2 * S, 2 * S + S // 5, 2 * S + 2 * S // 5]
    assert s.send_at[3:].tolist() == [0, S // 10, 2 * S // 10]


def test_unknown_provider_is_an_error(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    with pytest.raises(KeyError):
        plan(lim, [1], provider=[3])


def test_empty_schedule(backend: Backend) -> None:
    lim = RateLimiter(backend=backend)
    s = plan(lim, [])
    assert len(s.send_at) == 0 and list(s.batches()) == []
    assert np.asarray(s.order).dtype == np.int64


END_OF_TIME = 2**63 - 1


def test_times_at_the_end_of_the_64_bit_range_stay_there(backend: Backend) -> None:
    """The Rust core saturates; its twin went past 2**63 and failed to return the plan."""
    lim = RateLimiter(backend=backend)
    lim.set_provider(1, ProviderLimit(rate_per_s=1, burst=2**62))
    lim.set_tenant(1, 0, TenantLimit(rate_per_s=1))
    lim.throttle(1, now=END_OF_TIME - S, retry_after_us=END_OF_TIME)
    assert lim.tat(1) == END_OF_TIME
    s = plan(lim, [1, 1, 2], ready=[END_OF_TIME] * 3)
    assert s.send_at.tolist() == [END_OF_TIME] * 3
    assert lim.tat(1) == END_OF_TIME


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (lambda: ProviderLimit(rate_per_s=0), "rate_per_s must be above 0, not 0"),
        (lambda: ProviderLimit(rate_per_s=-5), "rate_per_s must be above 0"),
        (lambda: ProviderLimit(rate_per_s=float("nan")), "rate_per_s must be above 0"),
        (lambda: ProviderLimit(rate_per_s=1e-14), "too slow to hold in microseconds"),
        (lambda: ProviderLimit(rate_per_s=1, burst=2**64), "burst 18446744073709551616"),
        (lambda: ProviderLimit(rate_per_s=1, linger_us=2**63), "linger_us"),
        (lambda: TenantLimit(rate_per_s=0), "tenant limit: rate_per_s must be above 0"),
        (lambda: TenantLimit(rate_per_s=1, burst=-(2**63) - 1), "burst"),
    ],
)
def test_a_limit_neither_core_can_hold_is_refused_by_name(limit: Any, message: str) -> None:
    """A rate of 0 divided by zero, and a count beyond 64 bits passed the twin but not the
    core: both now refuse it alike, naming the field."""
    with pytest.raises(ValueError, match=message):
        limit()
