"""Fixtures for the dispatch hot paths: every behaviour test runs on the Rust core and the twin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cadence import _backend
from cadence.dispatch.filter import Backend

BACKENDS: tuple[Backend, ...] = ("rust", "python")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Yield "rust" and "python" in turn (rust is skipped only when the core is not built)."""
    name: Backend = request.param
    if name == "rust" and _backend.core is None:
        if _backend.fallback_reason and "CADENCE_PURE_PYTHON" in _backend.fallback_reason:
            pytest.skip("CADENCE_PURE_PYTHON forces the fallback")
        pytest.fail(f"Rust core missing: {_backend.fallback_reason}")
    yield name
