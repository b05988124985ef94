"""Fixtures for the engine's store tests."""

from __future__ import annotations

import functools
from collections.abc import Callable

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
