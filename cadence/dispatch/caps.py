"""Frequency caps (`cap email 3 per 7d`): batch check-and-reserve per contact, channel or overall.

A cap of N per W means no W-long stretch of time ever holds more than N of the contact's sends
that the rule covers, counting sends already reserved in the future as well as the past. A batch
is checked in order; each allowed send is reserved at once, so later items in the same batch see
it. `release` gives a reservation back when a send fails for good; `rebuild` reloads the index
from the send log (the database stays the source of truth).

`FrequencyCaps` runs on the Rust core when it is loaded and on `PyCapIndex` otherwise; both give
identical answers.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadence.dispatch._locking import locked
from cadence.dispatch.filter import Backend, resolve_core

ALL_CHANNELS = -1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CapRule:
    """At most `limit` sends per `window_us` µs on `channel`, or on all channels when None."""

    channel: str | None
    limit: int
    window_us: int

    def __post_init__(self) -> None:
        # The Rust core holds a limit as a 64-bit integer: its twin refuses what it cannot.
        if not 0 <= self.limit <= I64_MAX:
            raise ValueError("a cap's limit must be from 0 to 2**63 - 1")
        if not 0 < self.window_us <= I64_MAX:
            raise ValueError("a cap's window must be positive")


@dataclass(frozen=True, slots=True)
class CapDecision:
    """Per request: allowed, and the index of the first rule that denied it (-1 when allowed)."""

    allowed: np.ndarray
    denied_by: np.ndarray


class PyCapIndex:
    """The pure-Python twin of the Rust cap index: per contact, a sorted list of (at, channel)."""

    def __init__(self, rules: Sequence[tuple[int, int, int]]) -> None:
        self.rules = [(int(c), int(n), int(w)) for c, n, w in rules]
        self.sends: dict[int, list[tuple[int, int]]] = {}

    def _denied_by(self, contact: int, channel: int, at: int) -> int:
        entries = self.sends.get(contact, [])
        for r, (rch, limit, window) in enumerate(self.rules):
            if rch != ALL_CHANNELS and rch != channel:
                continue
            if limit == 0:
                return r
            lo = bisect.bisect_right(entries, (at - window, I64_MAX))
            times: list[int] = []
            for t, ch in entries[lo:]:
                if t >= at + window:
                    break
                if rch == ALL_CHANNELS or ch == rch:
                    times.append(t)
            for j in range(len(times) - limit + 1):
                first, last = min(times[j], at), max(times[j + limit - 1], at)
                if last - first < window:
                    return r
        return -1

    def check_and_reserve_one(self, contact: int, channel: int, at: int) -> int:
        """Check one request and reserve it when allowed; the denying rule's index or -1."""
        d = self._denied_by(contact, channel, at)
        if d < 0:
            bisect.insort(self.sends.setdefault(contact, []), (at, channel))
        return d

    def check_and_reserve(
        self, contacts: Sequence[int], channels: Sequence[int], ats: Sequence[int]
    ) -> tuple[list[bool], list[int]]:
        """Check each request in order; reserve the allowed ones."""
        denied = [
            self.check_and_reserve_one(int(c), int(ch), int(at))
            for c, ch, at in zip(contacts, channels, ats, strict=True)
        ]
        return [d < 0 for d in denied], denied

    def record(self, contacts: Sequence[int], channels: Sequence[int], ats: Sequence[int]) -> None:
        """Add sends without checking (they happened)."""
        for c, ch, at in zip(contacts, channels, ats, strict=True):
            bisect.insort(self.sends.setdefault(int(c), []), (int(at), int(ch)))

    def release(
        self, contacts: Sequence[int], channels: Sequence[int], ats: Sequence[int]
    ) -> list[bool]:
        """Remove one matching reservation per item; say whether one was found."""
        found: list[bool] = []
        for c, ch, at in zip(contacts, channels, ats, strict=True):
            entries = self.sends.get(int(c))
            key = (int(at), int(ch))
            if entries is not None:
                i = bisect.bisect_left(entries, key)
                if i < len(entries) and entries[i] == key:
                    del entries[i]
                    if not entries:
                        del self.sends[int(c)]
                    found.append(True)
                    continue
            found.append(False)
        return found

    def clear(self) -> None:
        """Forget every reservation."""
        self.sends.clear()

    def prune(self, before: int) -> int:
        """Drop sends earlier than `before`; return how many were dropped."""
        dropped = 0
        for c in list(self.sends):
            entries = self.sends[c]
            i = bisect.bisect_left(entries, (before, -(2**31)))
            dropped += i
            del entries[:i]
            if not entries:
                del self.sends[c]
        return dropped

    def __len__(self) -> int:
        return sum(len(v) for v in self.sends.values())


def _i64(values: Any) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class FrequencyCaps:
    """The engine's cap index: rules, a channel-name table, and the active backend's index."""

    def __init__(self, rules: Sequence[CapRule], *, backend: Backend | None = None) -> None:
        self._lock = threading.RLock()
        self.rules = tuple(rules)
        self.channels: dict[str, int] = {}
        for rule in self.rules:
            if rule.channel is not None:
                self.channel_code(rule.channel)
        encoded = [
            (ALL_CHANNELS if r.channel is None else self.channels[r.channel], r.limit, r.window_us)
            for r in self.rules
        ]
        core = resolve_core(backend)
        self.backend: Backend = "python" if core is None else "rust"
        self._index: Any = PyCapIndex(encoded) if core is None else core.CapIndex(encoded)

    @locked
    def channel_code(self, channel: str) -> int:
        """The int code for a channel name (new names get the next code)."""
        return self.channels.setdefault(channel, len(self.channels))

    def _codes(self, channels: Any) -> np.ndarray:
        arr = np.asarray(channels)
        if arr.dtype.kind in "iu":
            return np.ascontiguousarray(arr, dtype=np.int32)
        # Names are coded once each (a rebuild passes one per send, a handful of distinct ones).
        names, inverse = np.unique(arr.astype(str), return_inverse=True)
        table = np.fromiter((self.channel_code(str(n)) for n in names), np.int32, len(names))
        return np.ascontiguousarray(table[inverse.reshape(-1)], dtype=np.int32)

    def _args(self, contacts: Any, channels: Any, ats: Any) -> tuple[np.ndarray, ...]:
        c, ch, at = _i64(contacts), self._codes(channels), _i64(ats)
        if not len(c) == len(ch) == len(at):
            raise ValueError("contacts, channels and ats must have one length")
        return c, ch, at

    @locked
    def check_and_reserve(self, contacts: Any, channels: Any, ats: Any) -> CapDecision:
        """Check (contact, channel, at µs) requests in order and reserve the allowed ones."""
        c, ch, at = self._args(contacts, channels, ats)
        if isinstance(self._index, PyCapIndex):
            allowed, denied = self._index.check_and_reserve(c.tolist(), ch.tolist(), at.tolist())
            return CapDecision(np.array(allowed, dtype=np.bool_), np.array(denied, dtype=np.int32))
        allowed_out = np.zeros(len(c), dtype=np.bool_)
        denied_out = np.zeros(len(c), dtype=np.int32)
        self._index.check_and_reserve(c, ch, at, allowed_out.view(np.uint8), denied_out)
        return CapDecision(allowed_out, denied_out)

    def check_and_reserve_one(self, contact: int, channel: str, at: int) -> int:
        """`check_and_reserve` of one (contact, channel, at µs) request: the index of the first
        rule that denies it, or -1 when it is allowed (and now reserved)."""
        # Both backends answer one request directly: a gate asks one send at a time, and a
        # batch of one (five arrays, shard grouping, the GIL released) cost more than the check.
        # The lock is taken inline, not by `locked`: one call less per send.
        with self._lock:
            code = self.channels.get(channel)
            if code is None:
                code = self.channels.setdefault(channel, len(self.channels))
            denied: int = self._index.check_and_reserve_one(int(contact), code, int(at))
            return denied

    @locked
    def release(self, contacts: Any, channels: Any, ats: Any) -> np.ndarray:
        """Give back reservations whose sends failed for good; True where one was found."""
        c, ch, at = self._args(contacts, channels, ats)
        if isinstance(self._index, PyCapIndex):
            return np.array(self._index.release(c.tolist(), ch.tolist(), at.tolist()), dtype=bool)
        out = np.zeros(len(c), dtype=np.bool_)
        self._index.release(c, ch, at, out.view(np.uint8))
        return out

    @locked
    def record(self, contacts: Any, channels: Any, ats: Any) -> None:
        """Add sends that happened (no check)."""
        c, ch, at = self._args(contacts, channels, ats)
        if isinstance(self._index, PyCapIndex):
            self._index.record(c.tolist(), ch.tolist(), at.tolist())
        else:
            self._index.record(c, ch, at)

    @locked
    def rebuild(self, contacts: Any, channels: Any, ats: Any) -> None:
        """Replace the index with the send log's (contact, channel, at) rows."""
        self._index.clear()
        self.record(contacts, channels, ats)

    @locked
    def prune(self, before: int) -> int:
        """Drop sends before `before` µs (older than every window); return how many."""
        return int(self._index.prune(int(before)))

    @locked
    def __len__(self) -> int:
        return len(self._index)
