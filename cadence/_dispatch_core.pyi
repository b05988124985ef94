"""Type stub for the Rust extension `cadence._dispatch_core` (twins live in `cadence.dispatch`)."""

from typing import Any

import numpy as np

__version__: str

def core_version() -> str:
    """The version of the compiled Rust core."""

def filter_mask(plan: tuple[Any, ...], columns: list[tuple[Any, ...]], n: int, out: Any) -> None:
    """Evaluate an encoded plan over buffer-described columns into `out` (uint8, length n)."""

class CapIndex:
    """Per-contact send index enforcing frequency caps."""

    def __init__(self, rules: list[tuple[int, int, int]]) -> None: ...
    def check_and_reserve(
        self,
        contacts: np.ndarray,
        channels: np.ndarray,
        ats: np.ndarray,
        allowed: np.ndarray,
        denied: np.ndarray,
    ) -> None: ...
    def check_and_reserve_one(self, contact: int, channel: int, at: int) -> int: ...
    def record(self, contacts: np.ndarray, channels: np.ndarray, ats: np.ndarray) -> None: ...
    def release(
        self, contacts: np.ndarray, channels: np.ndarray, ats: np.ndarray, found: np.ndarray
    ) -> None: ...
    def clear(self) -> None: ...
    def prune(self, before: int) -> int: ...
    def __len__(self) -> int: ...

class Limiter:
    """GCRA limits, fair interleaving and provider batching."""

    def __init__(self) -> None: ...
    def set_provider(
        self, provider: int, interval: int, burst: int, batch_size: int, linger: int, recovery: int
    ) -> None: ...
    def set_tenant_default(self, provider: int, interval: int, burst: int) -> None: ...
    def set_tenant(self, provider: int, tenant: int, interval: int, burst: int) -> None: ...
    def throttle(self, provider: int, now: int, retry_after: int) -> None: ...
    def tat(self, provider: int) -> int | None: ...
    def schedule(
        self,
        campaign: np.ndarray,
        priority: np.ndarray,
        provider: np.ndarray,
        tenant: np.ndarray,
        ready_at: np.ndarray,
        send_at: np.ndarray,
        batch: np.ndarray,
        order: np.ndarray,
    ) -> None: ...
