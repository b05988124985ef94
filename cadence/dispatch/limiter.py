"""Rate-limited batching: when may each pending send go, in which provider batch, in what order.

Per provider and per (provider, tenant) a GCRA limiter (emission interval T = 1/rate, burst b)
spaces messages; campaigns on one provider are interleaved by stride scheduling weighted by
priority, so a big broadcast cannot starve a triggered email; messages that may go close
together for one (provider, tenant) are grouped into provider batches (Brevo, Infobip take many
recipients per call). A 429 with Retry-After pauses the provider until then and halves its rate
for a recovery period. All arithmetic is integer microseconds, saturating at the 64-bit range's ends
as the Rust core's does, so the core and `PyLimiter` agree exactly on every input.

The algorithm, per provider (providers are independent), for one `schedule` call:

1. Each campaign's messages queue in (ready_at, input index) order; its weight is the priority
   of its first message; stride = 2**20 // weight.
2. The provider's cursor is the earliest time its limiter lets the next message go (TAT - tau).
   A campaign is eligible when its head is ready and its head's tenant limiter allows it by the
   cursor. Among eligible campaigns the smallest (pass, campaign id) goes next; if none is
   eligible, the campaign whose head can go soonest goes next. A campaign becoming eligible
   after a pause gets pass = max(its pass, the pass of the last pick), so idling earns no credit.
3. The picked message goes at max(ready_at, provider cursor, tenant's earliest time); both
   limiters advance: TAT = max(TAT, t) + T (2T while the provider is slowed after a 429).
4. Picks group into batches per (provider, tenant): a batch holds at most `batch_size`
   messages whose times lie within `linger_us` of its first; the whole batch goes at its
   latest member's time.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadence.dispatch._locking import locked
from cadence.dispatch.filter import Backend, resolve_core

STRIDE_ONE = 1 << 20
SLOW_FACTOR = 2
SECOND_US = 1_000_000
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


def _sat(value: int) -> int:
    """`value` held to 64 bits, as the Rust core's saturating arithmetic holds it."""
    return I64_MIN if value < I64_MIN else I64_MAX if value > I64_MAX else value


def _check_limit(what: str, rate_per_s: float, **counts: int) -> None:
    """ValueError unless the rate is positive and every count fits the core's 64 bits."""
    if not rate_per_s > 0:
        raise ValueError(f"{what}: rate_per_s must be above 0, not {rate_per_s!r}")
    if SECOND_US / rate_per_s > I64_MAX:
        raise ValueError(f"{what}: rate_per_s {rate_per_s!r} is too slow to hold in microseconds")
    for name, value in counts.items():
        if not I64_MIN <= value <= I64_MAX:
            raise ValueError(f"{what}: {name} {value} is beyond 64 bits")


@dataclass(frozen=True, slots=True)
class ProviderLimit:
    """A provider's rate (messages/second), burst, batch size, batching linger and 429 recovery."""

    rate_per_s: float
    burst: int = 1
    batch_size: int = 1
    linger_us: int = 0
    recovery_us: int = 60 * SECOND_US

    def __post_init__(self) -> None:
        _check_limit(
            "provider limit", self.rate_per_s, burst=self.burst, batch_size=self.batch_size,
            linger_us=self.linger_us, recovery_us=self.recovery_us,
        )  # fmt: skip

    @property
    def interval_us(self) -> int:
        """The GCRA emission interval in whole microseconds (at least 1)."""
        return max(1, round(SECOND_US / self.rate_per_s))


@dataclass(frozen=True, slots=True)
class TenantLimit:
    """A tenant's own rate (messages/second) and burst on one provider."""

    rate_per_s: float
    burst: int = 1

    def __post_init__(self) -> None:
        _check_limit("tenant limit", self.rate_per_s, burst=self.burst)

    @property
    def interval_us(self) -> int:
        """The GCRA emission interval in whole microseconds (at least 1)."""
        return max(1, round(SECOND_US / self.rate_per_s))


@dataclass(frozen=True, slots=True)
class Schedule:
    """The plan for one batch of pending sends (arrays indexed like the input, except `order`)."""

    send_at: np.ndarray  # int64 µs: the earliest time each message may go (its batch's time)
    batch: np.ndarray  # int64: batch id of each message
    order: np.ndarray  # int64: input indices in the order the limiter picked them
    provider: np.ndarray
    tenant: np.ndarray

    def batches(self) -> Iterator[Batch]:
        """Yield batches by (send time, batch id), members in pick order."""
        if len(self.order) == 0:
            return
        order = self.order
        ids = self.batch[order]
        # group members by batch id, keeping pick order inside each batch
        by_id = np.argsort(ids, kind="stable")
        sorted_ids = ids[by_id]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        ends = np.r_[starts[1:], len(sorted_ids)]
        groups = []
        for s, e in zip(starts, ends, strict=True):
            members = order[by_id[s:e]]
            first = int(members[0])
            groups.append(
                Batch(
                    int(sorted_ids[s]),
                    int(self.provider[first]),
                    int(self.tenant[first]),
                    int(self.send_at[first]),
                    members,
                )
            )
        groups.sort(key=lambda b: (b.send_at, b.id))
        yield from groups


@dataclass(frozen=True, slots=True)
class Batch:
    """One provider call: its id, provider, tenant, time and the input indices it carries."""

    id: int
    provider: int
    tenant: int
    send_at: int
    indices: np.ndarray


class _Gcra:
    __slots__ = ("interval", "tat", "tau")

    def __init__(self, interval: int, burst: int) -> None:
        self.interval = interval
        self.tau = _sat(interval * (max(1, burst) - 1))
        self.tat: int | None = None

    def earliest(self) -> int | None:
        return None if self.tat is None else _sat(self.tat - self.tau)


class _Provider(_Gcra):
    __slots__ = ("batch_size", "linger", "recovery", "slow_until")

    def __init__(self, interval: int, burst: int, batch_size: int, linger: int, recovery: int):
        super().__init__(interval, burst)
        self.batch_size = max(1, batch_size)
        self.linger = max(0, linger)
        self.recovery = max(0, recovery)
        self.slow_until: int | None = None


def _later(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


class PyLimiter:
    """The pure-Python twin of the Rust limiter; state (TATs, slowdowns) persists across calls."""

    def __init__(self) -> None:
        self.providers: dict[int, _Provider] = {}
        self.tenant_defaults: dict[int, tuple[int, int]] = {}
        self.tenants: dict[tuple[int, int], _Gcra] = {}
        self.tenant_limits: dict[tuple[int, int], tuple[int, int]] = {}

    def set_provider(
        self, provider: int, interval: int, burst: int, batch_size: int, linger: int, recovery: int
    ) -> None:
        """Configure (or reconfigure, resetting state) a provider."""
        self.providers[provider] = _Provider(interval, burst, batch_size, linger, recovery)

    def set_tenant_default(self, provider: int, interval: int, burst: int) -> None:
        """A limit every tenant gets on `provider` unless it has its own."""
        self.tenant_defaults[provider] = (interval, burst)

    def set_tenant(self, provider: int, tenant: int, interval: int, burst: int) -> None:
        """A tenant's own limit on `provider`."""
        self.tenant_limits[(provider, tenant)] = (interval, burst)
        self.tenants.pop((provider, tenant), None)

    def throttle(self, provider: int, now: int, retry_after: int) -> None:
        """A 429: nothing goes before now + retry_after, then half rate for the recovery period."""
        p = self.providers[provider]
        until = _sat(now + max(0, retry_after))
        p.tat = _later(p.tat, _sat(until + p.tau))
        p.slow_until = _later(p.slow_until, _sat(until + p.recovery))

    def tat(self, provider: int) -> int | None:
        """The provider's theoretical arrival time (for tests and introspection)."""
        return self.providers[provider].tat

    def _tenant(self, provider: int, tenant: int) -> _Gcra | None:
        g = self.tenants.get((provider, tenant))
        if g is None:
            lim = self.tenant_limits.get((provider, tenant)) or self.tenant_defaults.get(provider)
            if lim is None:
                return None
            g = self.tenants[(provider, tenant)] = _Gcra(lim[0], lim[1])
        return g

    def schedule(
        self,
        campaign: Sequence[int],
        priority: Sequence[int],
        provider: Sequence[int],
        tenant: Sequence[int],
        ready_at: Sequence[int],
    ) -> tuple[list[int], list[int], list[int]]:
        """Plan the sends: (send_at per message, batch id per message, pick order)."""
        n = len(campaign)
        send_at = [0] * n
        batch = [0] * n
        order: list[int] = []
        by_provider: dict[int, list[int]] = {}
        for i in range(n):
            if provider[i] not in self.providers:
                raise KeyError(f"provider {provider[i]} is not configured")
            by_provider.setdefault(provider[i], []).append(i)
        next_batch = 0
        for pid in sorted(by_provider):
            next_batch = self._schedule_provider(
                pid, by_provider[pid], campaign, priority, tenant, ready_at,
                send_at, batch, order, next_batch,
            )  # fmt: skip
        return send_at, batch, order

    def _schedule_provider(
        self,
        pid: int,
        idx: list[int],
        campaign: Sequence[int],
        priority: Sequence[int],
        tenant: Sequence[int],
        ready_at: Sequence[int],
        send_at: list[int],
        batch: list[int],
        order: list[int],
        next_batch: int,
    ) -> int:
        prov = self.providers[pid]
        queues: dict[int, list[int]] = {}
        stride: dict[int, int] = {}
        for i in idx:
            c = campaign[i]
            if c not in queues:
                queues[c] = []
                w = min(max(1, priority[i]), STRIDE_ONE)
                stride[c] = STRIDE_ONE // w
            queues[c].append(i)
        heads: dict[int, int] = {}
        for c, q in queues.items():
            q.sort(key=lambda i: ready_at[i])
            heads[c] = 0
        passes = dict.fromkeys(queues, 0)
        vtime = 0

        def key(c: int) -> int:
            m = queues[c][heads[c]]
            g = self._tenant(pid, tenant[m])
            k = _later(ready_at[m], None if g is None else g.earliest())
            assert k is not None
            return k

        waiting = [(key(c), c) for c in queues]
        heapq.heapify(waiting)
        eligible: list[tuple[int, int]] = []
        # open batches per tenant: [id, first time, count, members]
        open_batches: dict[int, tuple[int, int, list[int]]] = {}

        def close(t: int) -> None:
            bid, _first, members = open_batches.pop(t)
            at = max(send_at[m] for m in members)
            for m in members:
                send_at[m] = at
                batch[m] = bid

        remaining = len(idx)
        while remaining:
            cursor = prov.earliest()
            while waiting and cursor is not None and waiting[0][0] <= cursor:
                k, c = heapq.heappop(waiting)
                rk = key(c)
                if rk > k:
                    heapq.heappush(waiting, (rk, c))
                    continue
                passes[c] = max(passes[c], vtime)
                heapq.heappush(eligible, (passes[c], c))
            if eligible:
                _p, c = heapq.heappop(eligible)
                rk = key(c)
                if cursor is None or rk > cursor:
                    heapq.heappush(waiting, (rk, c))
                    continue
            else:
                k, c = heapq.heappop(waiting)
                rk = key(c)
                if rk > k:
                    heapq.heappush(waiting, (rk, c))
                    continue
                passes[c] = max(passes[c], vtime)
            m = queues[c][heads[c]]
            heads[c] += 1
            remaining -= 1
            g = self._tenant(pid, tenant[m])
            t = _later(_later(ready_at[m], cursor), None if g is None else g.earliest())
            assert t is not None
            slow = prov.slow_until is not None and t < prov.slow_until
            prov.tat = _sat(
                (t if prov.tat is None or prov.tat < t else prov.tat)
                + (_sat(prov.interval * SLOW_FACTOR) if slow else prov.interval)
            )
            if g is not None:
                g.tat = _sat((t if g.tat is None or g.tat < t else g.tat) + g.interval)
            vtime = passes[c]
            passes[c] = _sat(passes[c] + stride[c])
            send_at[m] = t
            order.append(m)
            # batching
            tn = tenant[m]
            ob = open_batches.get(tn)
            if ob is not None and (len(ob[2]) >= prov.batch_size or t - ob[1] > prov.linger):
                close(tn)
                ob = None
            if ob is None:
                open_batches[tn] = (next_batch, t, [m])
                next_batch += 1
            else:
                ob[2].append(m)
            if heads[c] < len(queues[c]):
                rk = key(c)
                cur = prov.earliest()
                if cur is not None and rk <= cur:
                    heapq.heappush(eligible, (passes[c], c))
                else:
                    heapq.heappush(waiting, (rk, c))
        for tn in sorted(open_batches, key=lambda x: open_batches[x][0]):
            close(tn)
        return next_batch


def _i64(values: Any) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class RateLimiter:
    """The engine's limiter: provider/tenant limits, 429 slowdowns, `schedule` on either backend."""

    def __init__(self, *, backend: Backend | None = None) -> None:
        self._lock = threading.RLock()
        core = resolve_core(backend)
        self.backend: Backend = "python" if core is None else "rust"
        self._core: Any = PyLimiter() if core is None else core.Limiter()

    @locked
    def set_provider(self, provider: int, limit: ProviderLimit) -> None:
        """Configure a provider by id (resets its state)."""
        self._core.set_provider(
            int(provider), limit.interval_us, int(limit.burst), int(limit.batch_size),
            int(limit.linger_us), int(limit.recovery_us),
        )  # fmt: skip

    @locked
    def set_tenant_default(self, provider: int, limit: TenantLimit) -> None:
        """The limit each tenant gets on `provider` unless it has its own."""
        self._core.set_tenant_default(int(provider), limit.interval_us, int(limit.burst))

    @locked
    def set_tenant(self, provider: int, tenant: int, limit: TenantLimit) -> None:
        """A tenant's own limit on `provider` (resets that tenant's state)."""
        self._core.set_tenant(int(provider), int(tenant), limit.interval_us, int(limit.burst))

    @locked
    def throttle(self, provider: int, now: int, retry_after_us: int) -> None:
        """Record a 429 at `now` with Retry-After; the provider pauses, then runs at half rate."""
        self._core.throttle(int(provider), int(now), int(retry_after_us))

    @locked
    def tat(self, provider: int) -> int | None:
        """The provider's theoretical arrival time in µs (None before its first send)."""
        value = self._core.tat(int(provider))
        return None if value is None else int(value)

    @locked
    def schedule(
        self, campaign: Any, priority: Any, provider: Any, tenant: Any, ready_at: Any
    ) -> Schedule:
        """Plan pending sends (parallel arrays) into timed, fair, rate-limited provider batches."""
        arrays = [_i64(a) for a in (campaign, priority, provider, tenant, ready_at)]
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError("all schedule inputs must have one length")
        if isinstance(self._core, PyLimiter):
            s, b, o = self._core.schedule(*(a.tolist() for a in arrays))
            send_at, batch, order = (np.array(x, dtype=np.int64) for x in (s, b, o))
        else:
            send_at = np.zeros(n, dtype=np.int64)
            batch = np.zeros(n, dtype=np.int64)
            order = np.zeros(n, dtype=np.int64)
            self._core.schedule(*arrays, send_at, batch, order)
        return Schedule(send_at, batch, order, arrays[2], arrays[3])
