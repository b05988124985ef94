"""Engine throughput: enrollments advanced per second, on SQLite and on PostgreSQL.

Each round enrolls a fresh audience in a three-step campaign (send, wait, send) and runs the
engine on a simulated clock until every enrollment completes: claim -> stepper -> outbox ->
recording sink -> send log. `steps_per_second` in extra_info is what to read (the whole round,
setup included); `stepping_steps_per_second` counts only the scheduler's run, without opening
the store, importing the audience and launching.
Quick mode (CADENCE_BENCH_QUICK=1) uses 200 contacts so CI only checks that it runs.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from typing import Any

import pytest
import trio

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink

CONTACTS = 200 if os.environ.get("CADENCE_BENCH_QUICK") else 5000
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
SOURCE = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign bench { on launch { send email a  wait 1d  send email b } }
"""


def _database_url(backend: str, tmp_path: Any) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'bench-{uuid.uuid4().hex}.db'}"
    url = os.environ.get("CADENCE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CADENCE_TEST_POSTGRES_URL is not set")
    return url


def _one_round(url: str) -> tuple[int, float]:
    """Run one audience through the campaign; returns the steps and the stepping seconds."""
    campaigns = compile_workspace(load_text(SOURCE, "bench.cadence"))
    tenant = f"bench-{uuid.uuid4().hex[:12]}"
    clock = SimulatedClock(START)

    async def main() -> tuple[int, float]:
        async with Engine(url, clock=clock, sink=RecordingSink(), tenant=tenant) as engine:
            await engine.upsert_contacts(
                {"id": f"c{i}", "email": f"c{i}@example.test"} for i in range(CONTACTS)
            )
            await engine.deploy(campaigns)
            # Above 1,000 contacts a launch needs approval (the language's implied rule).
            await engine.approve("bench", by="benchmark")
            await engine.launch("bench")
            started = time.perf_counter()
            stats = await engine.run_until(START + dt.timedelta(days=2))
            return stats.steps, time.perf_counter() - started

    return trio.run(main)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_engine_steps_per_second(benchmark: Any, backend: str, tmp_path: Any) -> None:
    url = _database_url(backend, tmp_path)
    steps, stepping = benchmark.pedantic(_one_round, args=(url,), rounds=1, iterations=1)
    assert steps >= 2 * CONTACTS
    if benchmark.stats is not None:
        seconds = benchmark.stats.stats.mean
        benchmark.extra_info["steps_per_second"] = round(steps / seconds)
        benchmark.extra_info["stepping_steps_per_second"] = round(steps / stepping)
        benchmark.extra_info["contacts"] = CONTACTS
