"""How HTTP answers and failures map onto send outcomes, shared by the HTTP adapters."""

from __future__ import annotations

import httpx

from cadence.adapters.base import RATE_LIMITED, Transient
from cadence.adapters.retry import parse_retry_after


def transport_failure(exc: httpx.HTTPError) -> Transient:
    """A request that got no answer: unknown outcome unless it never left (connect failed)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Transient(f"cannot connect: {type(exc).__name__}", "connect_failed")
    if isinstance(exc, httpx.TimeoutException):
        return Transient("no answer in time", "timeout", unknown=True)
    return Transient(f"connection lost: {type(exc).__name__}", "connection_lost", unknown=True)


def is_transient_status(status: int) -> bool:
    """408, 425, 429 and 5xx are worth retrying; other 4xx are not."""
    return status in (408, 425, 429) or status >= 500


def transient_status(
    response: httpx.Response, reason: str, said: str | None = None, *, wait: float | None = None
) -> Transient:
    """A retryable HTTP status, with the server's Retry-After when it sent one (or `wait`)
    and what the provider said (`said`: its error code and message), so a send that ends
    up deferred tells why."""
    return Transient(
        f"{reason} (HTTP {response.status_code}{': ' + said if said else ''})",
        RATE_LIMITED if response.status_code == 429 else f"http_{response.status_code}",
        wait=wait if wait is not None else parse_retry_after(response.headers.get("retry-after")),
    )


def provider_error(provider: str, status: int, code: str | None, text: str | None) -> str:
    """How a refusal reads in a send's result: `Brevo 400 invalid_parameter: email is not
    valid`, the provider, its HTTP status, its error code and its message."""
    head = f"{provider} {status}" + (f" {code}" if code else "")
    return f"{head}: {text}" if text else head
