"""The segment sweep: CPU per hourly sweep of a segment that time alone changes.

`segment dormant = not (last(login) within 30d)` (events), or the same over an attribute
instant, `not (contact.last_login within 30d)` (attributes have no index: the sweep reads
every contact's attributes, and evaluates only those an edge passed). An in-memory store
holds N contacts with one `login` (and `last_login`) each, spread evenly over the 60 days
before the launch. A day of hourly sweeps runs as `run_due` runs them; the CPU time of each
is recorded for the targeted sweep and, on a few hours, for the full one (every contact read,
as before `cadence.engine.sweep.moved`). The size comes from CADENCE_BENCH_SWEEP_CONTACTS
(default 20,000); quick mode (CADENCE_BENCH_QUICK=1) uses 300.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import pytest
import trio

from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.bulk import insert_rows
from cadence.engine.store.models import Contact, Event

QUICK = bool(os.environ.get("CADENCE_BENCH_QUICK"))
CONTACTS = 300 if QUICK else int(os.environ.get("CADENCE_BENCH_SWEEP_CONTACTS", "20000"))
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
SOURCE = """
template miss_you email {{ subject "We miss you" body "x" }}
segment dormant = not ({read} within 30d)
campaign winback {{ on segment_enter dormant {{ send email miss_you }} }}
"""
READS = {"events": "last(login)", "attribute": "contact.last_login"}
HOURS = 24
FULL_HOURS = 3


def _login(number: int) -> dt.datetime:
    """Contact `number`'s one login: evenly over the 60 days before the launch."""
    return START - dt.timedelta(seconds=(number * 60 * 86400) // CONTACTS + 1)


def _seed(store: Store, tenant: str) -> None:
    with store.session() as session:
        insert_rows(
            session,
            Contact.__table__,  # type: ignore[arg-type]
            [
                {
                    "tenant_id": tenant, "id": f"c{n:06d}", "email": f"c{n}@example.test",
                    "attributes": {"last_login": _login(n).isoformat()}, "tags": [],
                    "created_at": START, "updated_at": START,
                }
                for n in range(CONTACTS)
            ],
        )  # fmt: skip
        insert_rows(
            session,
            Event.__table__,  # type: ignore[arg-type]
            [
                {
                    "tenant_id": tenant, "contact_id": f"c{n:06d}", "name": "login",
                    "at": _login(n), "properties": {}, "received_at": START,
                }
                for n in range(CONTACTS)
            ],
        )  # fmt: skip


def _one_round(read: str) -> dict[str, Any]:
    clock = SimulatedClock(START)
    timings: dict[str, list[float]] = {"targeted": [], "full": []}
    enrolled = {"targeted": 0, "full": 0}

    async def main() -> None:
        async with Engine("sqlite://", clock=clock, sink=RecordingSink()) as engine:
            await engine.store.call(_seed, engine.tenant)
            await engine.deploy(
                compile_workspace(load_text(SOURCE.format(read=READS[read]), "bench.cadence"))
            )
            await engine.approve("winback", by="bench")
            await engine.launch("winback")
            for hour in range(1, HOURS + FULL_HOURS + 1):
                mode = "targeted" if hour <= HOURS else "full"
                if mode == "full":
                    # As before the targeted sweep: no windows, every contact read.
                    for key in list(engine._sweep_windows):
                        engine._sweep_windows[key] = None
                clock.advance_to(START + dt.timedelta(hours=hour))
                started = time.process_time()
                enrolled[mode] += await engine.store.call(engine._sweep_segments_sync)
                timings[mode].append(time.process_time() - started)

    trio.run(main)
    # Dormant from the sweep after its login turns 30 days old: the logins in the stretch
    # the window's edge passed over the targeted hours, then over the full ones.
    edge = START - dt.timedelta(days=30)
    expected = {
        "targeted": sum(
            1 for n in range(CONTACTS) if edge <= _login(n) < edge + dt.timedelta(hours=HOURS)
        ),
        "full": sum(
            1
            for n in range(CONTACTS)
            if edge + dt.timedelta(hours=HOURS)
            <= _login(n)
            < edge + dt.timedelta(hours=HOURS + FULL_HOURS)
        ),
    }
    assert enrolled == expected, (enrolled, expected)
    return {
        "contacts": CONTACTS,
        "targeted_ms_per_sweep": round(1000 * sum(timings["targeted"]) / HOURS, 2),
        "targeted_ms_max": round(1000 * max(timings["targeted"]), 2),
        "full_ms_per_sweep": round(1000 * sum(timings["full"]) / FULL_HOURS, 1),
        "entered_per_hour": round(enrolled["targeted"] / HOURS, 1),
        "dry_run_30_days_targeted_s": round(30 * 24 * sum(timings["targeted"]) / HOURS, 1),
        "dry_run_30_days_full_s": round(30 * 24 * sum(timings["full"]) / FULL_HOURS, 1),
    }


@pytest.mark.parametrize("read", sorted(READS))
def test_hourly_sweep_of_a_time_dependent_segment(benchmark: Any, read: str) -> None:
    result = benchmark.pedantic(_one_round, args=(read,), rounds=1, iterations=1)
    assert result["targeted_ms_per_sweep"] < result["full_ms_per_sweep"]
    benchmark.extra_info.update(result)
    print(result)
