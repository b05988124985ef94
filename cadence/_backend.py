"""Decide, in one place, whether the Rust core or the pure-Python fallback serves the hot paths."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Literal

BackendName = Literal["rust", "python"]

_FORCE_PURE_ENV = "CADENCE_PURE_PYTHON"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _load_core() -> tuple[ModuleType | None, str | None]:
    """Import the Rust core unless the environment forbids it; say why when it is absent."""
    if _truthy(os.environ.get(_FORCE_PURE_ENV)):
        return None, f"{_FORCE_PURE_ENV} is set"
    try:
        from cadence import _dispatch_core
    except ImportError as exc:  # the wheel was built without the extension, or it failed to load
        return None, f"Rust core not importable: {exc}"
    return _dispatch_core, None


core, fallback_reason = _load_core()
name: BackendName = "rust" if core is not None else "python"


def describe() -> str:
    """One line for `cadence --version`: which backend runs and why."""
    if core is not None:
        return f"backend: rust (dispatch_core {core.core_version()})"
    return f"backend: python, the pure-Python fallback ({fallback_reason})"
