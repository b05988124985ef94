"""One computation shared by the callers that ask for it together, never an answer from before
a caller asked.

The dashboard's numbers are read from the whole store (`analytics.campaign_reports`): with
every open tab reloading, each load computing them again costs the service that also runs
the engine one report per tab. Nothing cheap tells exactly whether the store changed since
the last report (sends change status in place, the send log is rewritten when a send fails:
docs/service.md), so no answer is kept for later. What is shared is safe to share: callers
who arrive while a computation runs wait for it to end, and the next computation, which
starts after every one of them arrived, answers them all. However many tabs load at once,
at most one computation runs and one more is owed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Coalesced(Generic[T]):
    """`compute`, run for the callers who asked since its previous run started, one run at a
    time; each caller gets the result of a run that started after it asked."""

    def __init__(self, compute: Callable[[], Awaitable[T]]) -> None:
        self._compute = compute
        self._started = 0  # runs started so far; a caller needs one numbered above its arrival
        self._running = False
        self._finished = trio.Event()  # set when the running computation ends, then replaced
        self._latest: tuple[int, T] | None = None  # the latest successful run's number, result
        self.runs = 0  # runs that returned a result
        self.waiting = 0  # callers waiting for a run another caller is making

    async def __call__(self) -> T:
        """The result of a run that started after this call: an ongoing run's result was
        read before, so the call waits for it and shares the next run."""
        arrived = self._started
        while True:
            if self._latest is not None and self._latest[0] > arrived:
                return self._latest[1]
            if self._running:
                self.waiting += 1
                try:
                    await self._finished.wait()
                finally:
                    self.waiting -= 1
                continue
            # No run is going: this caller runs it for itself and everyone waiting. Should it
            # fail or be cancelled, the waiters wake and the next of them runs it again.
            self._running = True
            self._started += 1
            number = self._started
            try:
                result = await self._compute()
            finally:
                self._running = False
                self._finished.set()
                self._finished = trio.Event()
            self.runs += 1
            self._latest = (number, result)
