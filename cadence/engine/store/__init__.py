"""The durable store: SQLAlchemy models, migrations, lease claims and data import in one place.

Open it with `Store.open(url)` (migrates to head); claim work with the functions in
`cadence.engine.store.claims`; from Trio, wrap it in `AsyncStore`.
"""

from __future__ import annotations

from cadence.engine.store.aio import AsyncStore
from cadence.engine.store.database import (
    DATABASE_URL_ENV,
    Store,
    StoreError,
    resolve_database_url,
    utcnow,
)
from cadence.engine.tenants import DEFAULT_TENANT

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_TENANT",
    "AsyncStore",
    "Store",
    "StoreError",
    "resolve_database_url",
    "utcnow",
]
