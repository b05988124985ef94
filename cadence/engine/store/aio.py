"""Trio-facing access to the store: database work runs in worker threads, never on the event loop.

SQLAlchemy and its drivers block, so every call is handed to `trio.to_thread.run_sync`
under a capacity limiter: one thread for SQLite (a single writer anyway), a few for
PostgreSQL (matching the connection pool).
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import trio
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from cadence.engine.store.database import Store
from cadence.engine.store.transient import is_transient

P = ParamSpec("P")
T = TypeVar("T")

POSTGRES_THREADS = 8
# A transaction that meets a transient failure runs again, up to this many times in all,
# after a pause that starts here and doubles (with jitter, so two workers that deadlocked
# each other do not meet again in step).
TRANSIENT_ATTEMPTS = 5
TRANSIENT_BACKOFF = 0.05

log = logging.getLogger("cadence.store")


class AsyncStore:
    """A `Store` for Trio code: `await astore.transaction(fn, ...)` runs fn(session, ...)."""

    def __init__(self, store: Store, *, threads: int | None = None) -> None:
        """Wrap `store`; `threads` caps concurrent database calls (default by backend)."""
        self.store = store
        if threads is None:
            threads = 1 if store.dialect == "sqlite" else POSTGRES_THREADS
        self.limiter = trio.CapacityLimiter(threads)

    @classmethod
    async def open(cls, url: str | None = None, *, migrate: bool = True) -> AsyncStore:
        """Open (and migrate) the store in a worker thread."""
        store = await trio.to_thread.run_sync(functools.partial(Store.open, url, migrate=migrate))
        return cls(store)

    async def call(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(store, *args, **kwargs)` in a worker thread and return its result."""
        bound = functools.partial(fn, self.store, *args, **kwargs)
        return await trio.to_thread.run_sync(bound, limiter=self.limiter)

    async def call_retrying(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call` for work done in one transaction: run again after a transient failure.

        A deadlock, serialization failure, lost connection or busy SQLite file rolled the
        transaction back, so running `fn` again is safe and will likely succeed; any other
        error, or the last attempt's, is raised.
        """
        for attempt in itertools.count(1):
            try:
                return await self.call(fn, *args, **kwargs)
            except DBAPIError as error:
                if attempt >= TRANSIENT_ATTEMPTS or not is_transient(error):
                    raise
                pause = TRANSIENT_BACKOFF * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.warning(
                    "%s: transient database failure (%s), attempt %d of %d, again in %.2fs",
                    getattr(fn, "__name__", "store call"), error.orig, attempt,
                    TRANSIENT_ATTEMPTS, pause,
                )  # fmt: skip
                await trio.sleep(pause)
        raise AssertionError("unreachable")  # itertools.count never ends

    async def call_deduplicated(
        self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call_retrying` for a write of rows with unique dedupe keys (events), run once
        more when the database refused a key as taken.

        The same event delivered twice at once (a provider's or a backend's retry reaching
        another worker) finds its key free in both transactions; on PostgreSQL the second
        insert then waits for the first and fails on the unique key. Run again, `fn` finds
        the row there and leaves it, as if the second delivery had come after the first.
        """
        try:
            return await self.call_retrying(fn, *args, **kwargs)
        except IntegrityError:
            return await self.call_retrying(fn, *args, **kwargs)

    async def transaction(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(session, *args, **kwargs)` in one transaction in a worker thread."""

        def run() -> T:
            with self.store.session() as session:
                return fn(session, *args, **kwargs)

        return await trio.to_thread.run_sync(run, limiter=self.limiter)

    async def aclose(self) -> None:
        """Close the store's connections."""
        await trio.to_thread.run_sync(self.store.close, limiter=self.limiter)

    async def __aenter__(self) -> AsyncStore:
        """Use as `async with AsyncStore(...)`, closing on exit."""
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Close the store."""
        await self.aclose()
