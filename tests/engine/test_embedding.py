"""The embedding example in docs/ runs as written and prints what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import func, select

import cadence
from cadence.engine.runtime import RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Contact, Event
from cadence.engine.store.records import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "embedded.py"


def test_the_documented_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines() == [
        "c1 onboarding welcome",
        "c1 app_property_viewed details",
        "c1 onboarding tips",
    ]


def test_engine_and_clocks_are_importable_from_the_package() -> None:
    from cadence.engine.clock import SimulatedClock, SystemClock
    from cadence.engine.runtime import Engine

    assert cadence.Engine is Engine
    assert cadence.SimulatedClock is SimulatedClock and cadence.SystemClock is SystemClock


@pytest.mark.parametrize(
    ("call", "given", "problem"),
    [
        ("upsert_contacts", {"id": "c9", "email": "c9@example.test"},
         "<rows>: expected a list of contacts, got one contact: pass [contact]"),
        ("upsert_contacts", [{"id": "c9"}, "c10"], "<rows>:2: expected an object, got str"),
        ("upsert_contacts", "c9", "<rows>: expected a list of contacts, got str"),
        ("push_events", {"contact": "c1", "name": "x"},
         "<events>: expected a list of events, got one event: pass [event]"),
        ("push_events", [{"contact": "c1", "name": "x"}, ["c1", "x"]],
         "<events>:2: expected an object, got list"),
        ("push_event", "c1 viewed", "<events>:1: expected an object, got str"),
    ],
)  # fmt: skip
def test_rows_that_are_not_objects_are_named_and_change_nothing(
    store_url: str, call: str, given: Any, problem: str
) -> None:
    """A contact where a list of them belongs was read key by key (an AttributeError on
    `str.get`), an event that is no object failed inside `dict()`: neither said which."""

    def counts() -> tuple[int, int]:
        with Store.open(store_url) as store, store.session() as session:
            return tuple(  # type: ignore[return-value]
                session.scalar(select(func.count()).select_from(model))
                for model in (Contact, Event)
            )

    async def main() -> list[str]:
        async with cadence.Engine(store_url, sink=RecordingSink()) as engine:
            await engine.upsert_contacts([{"id": "c1", "email": "c1@example.test"}])
            before = await trio.to_thread.run_sync(counts)
            with pytest.raises(InvalidInput) as refused:
                await getattr(engine, call)(given)
            assert await trio.to_thread.run_sync(counts) == before
            return [str(p) for p in refused.value.problems]

    assert trio.run(main) == [problem]


def test_the_errors_engine_calls_raise_are_importable_from_the_package() -> None:
    """docs/embedding.md says which errors each call raises; a program catches them as
    `cadence.EngineError` and so on, all of them `cadence.CadenceError`s."""
    from cadence.adapters.inbound.reports import InvalidWebhook
    from cadence.engine.runtime import EngineError
    from cadence.errors import CadenceError

    assert (cadence.EngineError, cadence.InvalidInput) == (EngineError, InvalidInput)
    assert (cadence.InvalidWebhook, cadence.CadenceError) == (InvalidWebhook, CadenceError)
    assert all(issubclass(error, CadenceError) for error in (EngineError, InvalidInput,
                                                               InvalidWebhook))  # fmt: skip
    for name in cadence.__all__:  # each name the package offers resolves
        getattr(cadence, name)
    with pytest.raises(AttributeError, match="no attribute 'Engin'"):
        _ = cadence.Engin  # type: ignore[attr-defined]
