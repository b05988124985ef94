"""Trio-facing access to the store: database work runs in worker threads, never on the event loop.

SQLAlchemy and its drivers block, so every call is handed to `trio.to_thread.run_sync`
under a capacity limiter: one thread for SQLite (a single writer anyway), a few for
PostgreSQL (matching the connection pool).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import trio
from sqlalchemy.orm import Session

from cadence.engine.store.database import Store

P = ParamSpec("P")
T = TypeVar("T")

POSTGRES_THREADS = 8


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
