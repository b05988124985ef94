"""Cadence: campaigns as code, checked before they run, simulated before they send."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cadence")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = [
    "CadenceError",
    "Engine",
    "EngineError",
    "InvalidInput",
    "InvalidWebhook",
    "SimulatedClock",
    "SystemClock",
    "__version__",
]

# What an embedding program uses, by the module that defines it: imported on first use, as
# the engine pulls in the store. The errors are those `Engine`'s calls raise (docs/embedding.md).
_LAZY = {
    "Engine": "cadence.engine.runtime",
    "EngineError": "cadence.engine.runtime",
    "SimulatedClock": "cadence.engine.clock",
    "SystemClock": "cadence.engine.clock",
    "InvalidInput": "cadence.engine.store.records",
    "InvalidWebhook": "cadence.adapters.inbound.reports",
    "CadenceError": "cadence.errors",
}


def __getattr__(name: str) -> Any:
    """`cadence.Engine`, the clocks and the engine's errors, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cadence' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
