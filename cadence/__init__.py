"""Cadence: campaigns as code, checked before they run, simulated before they send."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cadence")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["Engine", "SimulatedClock", "SystemClock", "__version__"]


def __getattr__(name: str) -> Any:
    """`cadence.Engine` and the clocks, imported on first use (they pull in the store)."""
    if name == "Engine":
        from cadence.engine.runtime import Engine

        return Engine
    if name in ("SimulatedClock", "SystemClock"):
        from cadence.engine import clock

        return getattr(clock, name)
    raise AttributeError(f"module 'cadence' has no attribute {name!r}")
