"""Failure injection for the stand-ins: what to do to the next requests, or for a while.

Tests (and `cadence demo`) tell a stand-in to answer 429, 500, 401, that the account has
no credit left, to be slow or to drop
the connection, either for the next N requests or for an outage of some seconds; with
`process=True` the request is first handled (the provider took it) and only the answer
is lost, which is the unknown-outcome case adapters must reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import trio

# `no_credits`: the account's balance is spent (Brevo answers 402 not_enough_credits,
# Infobip rejects each message REJECTED_NOT_ENOUGH_CREDITS); nothing is taken.
FaultKind = Literal["429", "500", "503", "401", "slow", "drop", "no_credits"]


@dataclass(slots=True)
class Fault:
    """One kind of failure, for `times` requests or until `until` (trio clock)."""

    kind: FaultKind
    times: int = 1
    until: float | None = None
    retry_after: float | None = None
    reset: int | None = None
    delay: float = 0.0
    process: bool = False


class Faults:
    """A queue of failures the stand-in applies to incoming requests in order."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def add(
        self,
        kind: FaultKind,
        times: int = 1,
        *,
        retry_after: float | None = None,
        reset: int | None = None,
        delay: float = 0.0,
        process: bool = False,
    ) -> None:
        """Fail the next `times` requests this way."""
        self._queue.append(Fault(kind, times, None, retry_after, reset, delay, process))

    def outage(self, seconds: float, kind: FaultKind = "503") -> None:
        """Fail every request for `seconds` from now (needs a running Trio loop)."""
        self._queue.append(Fault(kind, 0, trio.current_time() + seconds))

    def clear(self) -> None:
        """Stop failing."""
        self._queue.clear()

    def take(self) -> Fault | None:
        """The fault for the request being handled now, if any."""
        while self._queue:
            fault = self._queue[0]
            if fault.until is not None:
                if trio.current_time() < fault.until:
                    return fault
                self._queue.pop(0)
                continue
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._queue.pop(0)
                return fault
            self._queue.pop(0)
        return None
