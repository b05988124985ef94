"""Rate-limited batching: 1M messages through the limiter, Rust core vs Python twin."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.data import messages, volume_size
from cadence.dispatch.limiter import ProviderLimit, RateLimiter, TenantLimit

SIZE = volume_size()


def limiter(backend: str) -> RateLimiter:
    """Three providers (a batching email API, an SMS API, SMTP) with per-tenant limits."""
    lim = RateLimiter(backend=backend)  # type: ignore[arg-type]
    lim.set_provider(0, ProviderLimit(rate_per_s=1000, burst=50, batch_size=100, linger_us=50_000))
    lim.set_provider(1, ProviderLimit(rate_per_s=200, burst=10, batch_size=50, linger_us=20_000))
    lim.set_provider(2, ProviderLimit(rate_per_s=50, burst=5))
    for p in range(3):
        lim.set_tenant_default(p, TenantLimit(rate_per_s=100, burst=10))
    return lim


@pytest.mark.parametrize("backend", ["rust", "python"], ids=[f"rust-{SIZE}", f"python-{SIZE}"])
def test_limiter_schedule(benchmark: Any, backend: str) -> None:
    benchmark.group = f"limiter-{SIZE}"
    m = messages(SIZE)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (limiter(backend),), {}

    def run(lim: RateLimiter) -> Any:
        return lim.schedule(m.campaign, m.priority, m.provider, m.tenant, m.ready_at)

    rounds = 1 if backend == "python" else 5
    schedule = benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
    assert len(schedule.order) == len(m.campaign)
