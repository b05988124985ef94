"""Fixtures for the engine's store tests."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from store_helpers import seed_enrollments

from cadence.engine.store import Store

SeedEnrollments = Callable[..., list[int]]


@pytest.fixture
def seed(store: Store) -> SeedEnrollments:
    """`seed(count, **options)` creates enrollments in the test's store; returns their ids."""

    def run(count: int, **options: object) -> list[int]:
        return seed_enrollments(store, count, **options)  # type: ignore[arg-type]

    return run


@pytest.fixture(params=["rust", "python"])
def caps_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the engine's cap checks on the Rust core, then on its Python twin."""
    from cadence.dispatch import caps

    # The runtime imports the caps where it uses them, so it sees the patched class.
    monkeypatch.setattr(
        caps, "FrequencyCaps", functools.partial(caps.FrequencyCaps, backend=request.param)
    )
    return str(request.param)


@pytest.fixture(params=["rust", "python"])
def filter_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[list[str], list[str], bool]]:
    """Run the engine's bulk selections (audiences) on the Rust core, then on its Python
    twin; returns what each selection answered: (filter's ids, evaluator's ids, whether the
    filter decided), the evaluator asked about every contact too, to compare the paths."""
    from cadence.engine import audience

    original = audience.select
    answers: list[tuple[list[str], list[str], bool]] = []

    def select(expr: Any, contacts: Any, **options: Any) -> Any:
        chosen = original(expr, contacts, **{**options, "backend": request.param})
        fallback = options["fallback"]
        answers.append(
            (chosen.contact_ids, [i for i, a in contacts if fallback(i, a)], chosen.vectorised)
        )
        return chosen

    # The runtime reads `audience.select` where it selects, so it sees the patched one.
    monkeypatch.setattr(audience, "select", select)
    return answers
