"""Fixtures for the engine's store tests."""

from __future__ import annotations

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
