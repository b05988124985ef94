"""The contract every channel adapter keeps, and the retry loop they share.

An adapter turns `OutboundMessage`s into provider calls and answers one `SendResult` per
message, in order. It never raises for a provider problem: timeouts, 5xx and 429 become
waits (slept when short, else retry-later at a time), permanent refusals become
failed-permanent, and a circuit breaker pauses the channel during an outage.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import httpx
import trio

from cadence.adapters.message import Channel, OutboundMessage, SendResult
from cadence.adapters.retry import CircuitBreaker, RetryPolicy

log = logging.getLogger("cadence.adapters")


@runtime_checkable
class ChannelAdapter(Protocol):
    """What the engine calls: send messages of one tenant on one channel, get verdicts back."""

    provider: str
    channels: frozenset[Channel]

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message."""
        ...

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send several messages (batched where the provider allows); results in order."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# The longest a send is put off on a provider's word (Retry-After, Brevo's reset): a day
# spans any rate-limit window, and a wait no date can hold (a broken header) is not one.
MAX_WAIT = 86_400.0

# The code of a try the provider refused for its rate limit (HTTP 429, Brevo's rate limit);
# the engine slows that channel's limiter when such a send goes back to the outbox.
RATE_LIMITED = "rate_limited"
# The code of a send the provider refused because the account has no credit left (Brevo's
# HTTP 402, Infobip's REJECTED_NOT_ENOUGH_CREDITS): every send would be refused the same
# way until the operator tops the account up, so the send is not failed but comes back
# retry-later, and the provider's circuit opens for `NO_CREDITS_WAIT` (the channel pauses;
# one probe per period finds out when the account can send again).
NO_CREDITS = "no_credits"
NO_CREDITS_WAIT = 300.0
# The code of a send the provider refused because it refuses the account's API key (HTTP
# 401, or 403: a revoked key, an account not activated, an address not allowed): as with
# no credit, every send would be refused the same way until the operator fixes the key, so
# the send waits as it does, and is not failed (a rotated key failed whole campaigns).
KEY_REFUSED = "key_refused"
# The refusals of the account rather than the send, and how the log says what they mean.
ACCOUNT_REFUSALS = {NO_CREDITS: "has no credit left", KEY_REFUSED: "refused the key or login"}
# The code of a refusal of the recipient's address itself (no such mailbox, an address the
# provider calls invalid): as a hard bounce, the engine suppresses the address.
ADDRESS_REJECTED = "address_rejected"


@dataclass(frozen=True, slots=True)
class Transient:
    """An attempt that did not land: wait (the provider's hint, or backoff) and try again.

    `unknown` marks attempts whose outcome is not known (timeout, dropped connection
    after the request went out): the provider may have taken them.
    """

    reason: str
    code: str | None = None
    wait: float | None = None
    unknown: bool = False


Attempt = Callable[[list[OutboundMessage]], Awaitable[dict[str, SendResult] | Transient]]
Reconcile = Callable[[list[OutboundMessage]], Awaitable[dict[str, SendResult] | Transient]]


def utcnow() -> dt.datetime:
    """The current time in UTC (retry_at values are wall-clock)."""
    return dt.datetime.now(dt.UTC)


def held_for_account(message: OutboundMessage, provider: str, error: str, code: str) -> SendResult:
    """A send refused for the account, not itself (`code`, one of `ACCOUNT_REFUSALS`: its
    missing credit, its key or login): retry-later, not a failure, at the time the paused
    provider is next probed."""
    at = utcnow() + dt.timedelta(seconds=NO_CREDITS_WAIT)
    return SendResult.retry(message, provider, at, error, code=code)


class AdapterBase(abc.ABC):
    """Retry loop, circuit breaker and result bookkeeping shared by the adapters."""

    provider = "base"
    channels: frozenset[Channel] = frozenset()

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.rng = rng or random.Random()

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message (a batch of one)."""
        return (await self.send_batch([message]))[0]

    @abc.abstractmethod
    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send a batch through the provider; each adapter says how."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most adapters hold nothing
        """Nothing to release by default."""

    async def _drive(
        self,
        messages: Sequence[OutboundMessage],
        attempt: Attempt,
        reconcile: Reconcile | None = None,
    ) -> dict[str, SendResult]:
        """Try `attempt` until every message has a verdict or waiting must move to the engine.

        With `reconcile`, messages that were tried before (attempt > 0) or whose last try
        had an unknown outcome are first looked up at the provider, and only those it
        does not have are sent again: no double send without provider idempotency.
        """
        results: dict[str, SendResult] = {}
        pending = list(messages)
        must_reconcile = reconcile is not None and any(m.attempt > 0 for m in pending)
        last: Transient | None = None
        uncertain = False
        tries = 0
        while pending:
            if not self.breaker.allow():
                wait = max(1.0, self.breaker.seconds_until_probe())
                self._defer(
                    pending,
                    results,
                    wait,
                    Transient("circuit open: provider paused", "circuit_open"),
                    tries,
                    must_reconcile,
                )
                return results
            outcome: dict[str, SendResult] | Transient
            if must_reconcile and reconcile is not None:
                outcome = await reconcile(pending)
                if not isinstance(outcome, Transient):
                    results.update(outcome)
                    pending = [m for m in pending if m.idempotency_key not in results]
                    must_reconcile = False
                    if not pending:
                        self.breaker.record_success()
                        break
                    outcome = await attempt(pending)
            else:
                outcome = await attempt(pending)
            tries += 1
            if isinstance(outcome, Transient):
                self.breaker.record_failure()
                last = outcome
                uncertain = uncertain or outcome.unknown
                if outcome.unknown and reconcile is not None:
                    must_reconcile = True
                log.info(
                    "%s: %d message(s) not sent (%s), try %d",
                    self.provider,
                    len(pending),
                    outcome.reason,
                    tries,
                )
                wait = (
                    outcome.wait
                    if outcome.wait is not None
                    else self.policy.backoff(tries - 1, self.rng)
                )
                if (
                    tries >= self.policy.max_attempts
                    or wait > self.policy.max_inline_wait
                    or self.breaker.is_open
                ):
                    if self.breaker.is_open:
                        wait = max(wait, self.breaker.seconds_until_probe())
                    unknown = must_reconcile if reconcile is not None else uncertain
                    self._defer(pending, results, wait, last, tries, unknown)
                    return results
                await trio.sleep(wait)
                continue
            refusal = next(
                (r.error_code for r in outcome.values() if r.error_code in ACCOUNT_REFUSALS), None
            )
            if refusal is not None:
                # An answer, but the account cannot send: pause the provider, not each send.
                self.breaker.trip(NO_CREDITS_WAIT)
                log.warning(
                    "%s: the account %s; sending paused", self.provider, ACCOUNT_REFUSALS[refusal]
                )
            else:
                self.breaker.record_success()
            for key, result in outcome.items():
                results[key] = _with_attempts(result, tries)
            pending = [m for m in pending if m.idempotency_key not in results]
            if pending and reconcile is not None:
                must_reconcile = True  # the answer left some out: look before resending
        return results

    def _defer(
        self,
        pending: list[OutboundMessage],
        results: dict[str, SendResult],
        wait: float,
        why: Transient,
        tries: int,
        unknown: bool,
    ) -> None:
        at = utcnow() + dt.timedelta(seconds=min(wait, MAX_WAIT))
        for message in pending:
            if unknown:
                results[message.idempotency_key] = SendResult.unknown(
                    message, self.provider, at, why.reason, attempts=tries
                )
            else:
                results[message.idempotency_key] = SendResult.retry(
                    message, self.provider, at, why.reason, code=why.code, attempts=tries
                )


def _with_attempts(result: SendResult, tries: int) -> SendResult:
    from dataclasses import replace

    return replace(result, attempts=max(tries, 1))


def ordered(
    messages: Sequence[OutboundMessage], results: dict[str, SendResult]
) -> list[SendResult]:
    """Results in the order of the messages."""
    return [results[m.idempotency_key] for m in messages]


class HttpAdapter(AdapterBase):
    """An adapter that talks HTTP: its client (made here unless one is given) and how many
    requests it has in flight at once."""

    def __init__(
        self,
        *,
        timeout: float,
        client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
        concurrency: int = 8,
    ) -> None:
        super().__init__(policy=policy, breaker=breaker, rng=rng)
        self.concurrency = max(1, concurrency)
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the HTTP client if this adapter made it."""
        if self._own_client:
            await self.client.aclose()
