"""Deterministic generated inputs for the benchmarks: contacts, fan-out events, sends, messages.

The same data feeds every backend (rust, python, polars, duckdb) so the ratios compare like
with like.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from cadence.dispatch import And, Cmp, Col, EventField, In, Lit, Truthy, Within
from cadence.dispatch.expr import DURATION_UNITS_US, Expr, Timestamp

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOW_US = Timestamp.from_datetime(NOW).micros
DAY_US = DURATION_UNITS_US["d"]
COUNTRIES = ["US", "CA", "PH", "SG", "GB", "DE", "FR", "BR", "IN", "JP", "MX", "AU"]
TARGET_COUNTRIES = ("US", "CA", "PH", "SG")
CITIES = ["Manila", "Cebu", "Davao", "Singapore", "Austin", "Toronto", "Lisbon", "Osaka"]

SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}


def quick() -> bool:
    """CADENCE_BENCH_QUICK=1: small sizes so CI can run every benchmark in well under a minute."""
    return os.environ.get("CADENCE_BENCH_QUICK", "").strip().lower() in {"1", "true", "yes"}


def filter_sizes(big: bool) -> list[str]:
    """Sizes for the filter benchmarks: 100k and 1M (plus 10M with --big); 10k when quick."""
    if quick():
        return ["10k"]
    return ["100k", "1M", "10M"] if big else ["100k", "1M"]


def volume_size() -> str:
    """Size for the caps and limiter benchmarks: 1M operations (10k when quick)."""
    return "10k" if quick() else "1M"


def _strings(rng: np.random.Generator, choices: list[str], n: int) -> pa.Array:
    codes = pa.array(rng.integers(0, len(choices), n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(codes, pa.array(choices)).cast(pa.string())


def _with_nulls(arr: pa.Array, rng: np.random.Generator, rate: float) -> pa.Array:
    mask = pa.array(rng.random(len(arr)) < rate)
    return pa.compute.if_else(mask, pa.scalar(None, arr.type), arr)


@cache
def contacts(size: str) -> pa.Table:
    """A contacts table of `size` rows: scores, countries, consent, activity, budgets, areas."""
    n = SIZES[size]
    rng = np.random.default_rng(20261126)
    import pyarrow.compute  # type: ignore[import-untyped]  # noqa: F401  (registers pa.compute)

    per_row = rng.integers(0, 4, n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(per_row, out=offsets[1:])
    areas = pa.ListArray.from_arrays(pa.array(offsets), _strings(rng, CITIES, int(offsets[-1])))
    activity = NOW_US - rng.integers(0, 90 * DAY_US, n)
    return pa.table(
        {
            "contact_id": pa.array(np.arange(n, dtype=np.int64)),
            "lead_score": _with_nulls(pa.array(rng.integers(0, 100, n)), rng, 0.02),
            "country": _with_nulls(_strings(rng, COUNTRIES, n), rng, 0.01),
            "opted_in": pa.array(rng.random(n) < 0.8),
            "last_activity": pa.array(activity, pa.timestamp("us", tz="UTC")),
            "budget_max": pa.array(rng.integers(50_000, 2_000_000, n).astype(np.float64)),
            "areas": areas,
        }
    )


COMPOUND: Expr = And(
    (
        Cmp(">=", Col("lead_score"), Lit(50)),
        In(Col("country"), Lit(TARGET_COUNTRIES)),
        Truthy(Col("opted_in")),
        Within(Col("last_activity"), 30 * DAY_US),
    )
)
"""`lead_score >= 50 and country in [..] and opted_in and last_activity within 30d`"""

FANOUT: Expr = And(
    (Cmp(">=", Col("budget_max"), EventField("price")), In(EventField("city"), Col("areas")))
)
"""`contact.budget_max >= event.price and event.city in contact.areas`"""

FANOUT_EVENT: dict[str, Any] = {"price": 500_000.0, "city": "Manila"}
CUTOFF = (NOW - timedelta(days=30)).replace(tzinfo=None)


def polars_compound(df: Any) -> np.ndarray:
    """The compound predicate in polars, as a numpy bool mask (nulls count as false)."""
    import polars as pl

    expr = (
        (pl.col("lead_score") >= 50)
        & pl.col("country").is_in(list(TARGET_COUNTRIES))
        & pl.col("opted_in")
        & (pl.col("last_activity") >= NOW - timedelta(days=30))
        & (pl.col("last_activity") <= NOW)
    )
    return np.asarray(df.select(expr.fill_null(False)).to_series().to_numpy())


def polars_fanout(df: Any) -> np.ndarray:
    """The fan-out predicate in polars."""
    import polars as pl

    expr = (pl.col("budget_max") >= FANOUT_EVENT["price"]) & pl.col("areas").list.contains(
        FANOUT_EVENT["city"]
    )
    return np.asarray(df.select(expr.fill_null(False)).to_series().to_numpy())


DUCKDB_COMPOUND = (
    "SELECT coalesce(lead_score >= 50 AND country IN ('US', 'CA', 'PH', 'SG') AND opted_in "
    f"AND last_activity >= TIMESTAMPTZ '{NOW - timedelta(days=30)}' "
    f"AND last_activity <= TIMESTAMPTZ '{NOW}', false) AS m FROM contacts"
)
DUCKDB_FANOUT = (
    f"SELECT coalesce(budget_max >= {FANOUT_EVENT['price']} "
    f"AND list_contains(areas, '{FANOUT_EVENT['city']}'), false) AS m FROM contacts"
)


def duckdb_mask(con: Any, sql: str) -> np.ndarray:
    """Run a mask query on a DuckDB connection with `contacts` registered."""
    return np.asarray(con.execute(sql).fetchnumpy()["m"])


@dataclass(frozen=True)
class Sends:
    """Check-and-reserve requests: (contact, channel code, at µs)."""

    contacts: np.ndarray
    channels: np.ndarray
    ats: np.ndarray


@cache
def sends(size: str) -> Sends:
    """`size` requests over a fifth as many contacts, two channels, 30 days, in time order."""
    n = SIZES[size]
    rng = np.random.default_rng(7)
    ats = np.sort(rng.integers(NOW_US - 30 * DAY_US, NOW_US, n))
    return Sends(
        rng.integers(0, max(1, n // 5), n).astype(np.int64),
        rng.integers(0, 2, n).astype(np.int32),
        ats.astype(np.int64),
    )


@dataclass(frozen=True)
class Messages:
    """Pending sends for the limiter: campaign, priority, provider, tenant, ready_at."""

    campaign: np.ndarray
    priority: np.ndarray
    provider: np.ndarray
    tenant: np.ndarray
    ready_at: np.ndarray


@cache
def messages(size: str) -> Messages:
    """`size` messages: 50 campaigns (one big broadcast), 3 providers, 20 tenants, over an hour."""
    n = SIZES[size]
    rng = np.random.default_rng(11)
    campaign = np.where(rng.random(n) < 0.7, 0, rng.integers(1, 50, n)).astype(np.int64)
    priority = np.where(campaign == 0, 1, 1 + campaign % 10).astype(np.int64)
    return Messages(
        campaign,
        priority,
        rng.integers(0, 3, n).astype(np.int64),
        (campaign % 20).astype(np.int64),
        rng.integers(NOW_US, NOW_US + 3600 * 1_000_000, n).astype(np.int64),
    )
