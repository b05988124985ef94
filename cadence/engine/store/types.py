"""Column types that behave the same on SQLite and PostgreSQL, so the engine never branches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator

from cadence.engine.clock import as_utc

# Surrogate keys: 64-bit on PostgreSQL, SQLite's rowid alias (INTEGER PRIMARY KEY) on SQLite.
BigID = BigInteger().with_variant(Integer(), "sqlite")

# JSON documents: JSONB on PostgreSQL (indexable, mergeable with `||`), JSON text elsewhere.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


class RawJSON(str):
    """A JSON document already encoded, for a JSON column: bulk writes store it as it is.

    The engine appends to an enrollment's history as text, so the list it keeps is neither
    decoded nor re-encoded on every step.
    """

    __slots__ = ()


# Distinct timestamp texts a SQLite result processor keeps parsed (see `UTCDateTime`).
_PARSED_TEXTS = 4096


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, whatever the backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and normalise to UTC (naive UTC on SQLite, which has no zone)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; the store needs aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """On SQLite (timestamps as text), parse each distinct text once per statement shape.

        The engine reads many rows written in one batch (a step's `now`), so few texts
        repeat many times; SQLAlchemy's own parsing (a regular expression per value) was a
        few percent of a dry-run. Elsewhere the driver gives datetimes already.
        """
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parsed: dict[str, datetime] = {}

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, datetime):
                return _aware_utc(value)
            stamp = parsed.get(value)
            if stamp is None:
                if len(parsed) >= _PARSED_TEXTS:
                    parsed.clear()
                stamp = parsed[value] = _aware_utc(value)
            return stamp

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Give back an aware UTC datetime."""
        return None if value is None else _aware_utc(value)


def _aware_utc(value: Any) -> datetime:
    """A stored timestamp (a datetime, or its ISO text) as an aware UTC datetime."""
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))
