"""The webhook channel: a JSON POST signed with HMAC-SHA256, retried, never sent unsigned.

The receiver checks `X-Cadence-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<timestamp>.<body>` with the tenant's webhook secret, and `X-Cadence-Timestamp` against
replays; `X-Cadence-Idempotency-Key` lets it drop a retry it already processed (a timeout
leaves the outcome unknown, and the adapter retries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
import trio

from cadence.adapters.base import HttpAdapter, Transient, ordered
from cadence.adapters.config import WebhookConfig
from cadence.adapters.http import is_transient_status, transient_status, transport_failure
from cadence.adapters.message import Channel, OutboundMessage, SendResult
from cadence.adapters.render import WebhookContent
from cadence.adapters.retry import CircuitBreaker, RetryPolicy
from cadence.addresses import http_url_problem

SIGNATURE_HEADER = "X-Cadence-Signature"
TIMESTAMP_HEADER = "X-Cadence-Timestamp"
KEY_HEADER = "X-Cadence-Idempotency-Key"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`."""
    digest = hmac.new(
        secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256
    )
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str,
    signature: str,
    timestamp: str,
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when the signature matches and the timestamp is within `tolerance` seconds."""
    try:
        moment = float(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - moment) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_body(message: OutboundMessage) -> bytes:
    """The JSON document posted for one message (deterministic for a given message)."""
    content = message.content
    assert isinstance(content, WebhookContent)
    document: dict[str, Any] = {
        "id": message.idempotency_key,
        "tenant": message.tenant,
        "campaign": message.campaign_id,
        "node": message.node_id,
        "contact": message.contact_id,
        "template": message.template,
        "data": dict(content.payload),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def _problem(message: OutboundMessage) -> str | None:
    """Why no request can carry this message, if so: no JSON body, or a recipient that is no
    http(s) URL httpx can send to (it refuses some before sending, not as an HTTP error)."""
    if not isinstance(message.content, WebhookContent):
        return "a webhook needs a JSON body"
    problem = http_url_problem(message.recipient)
    if problem is not None:
        return f"the webhook URL {message.recipient!r} {problem}"
    try:
        httpx.URL(message.recipient)
    except httpx.InvalidURL as exc:
        return f"the webhook URL {message.recipient!r} is not a URL: {exc}"
    return None


class WebhookAdapter(HttpAdapter):
    """POSTs each message to its recipient URL."""

    provider = "webhook"
    channels = frozenset({Channel.WEBHOOK})

    def __init__(
        self,
        config: WebhookConfig,
        *,
        client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
        concurrency: int = 8,
    ) -> None:
        super().__init__(
            timeout=config.timeout, client=client, policy=policy, breaker=breaker, rng=rng,
            concurrency=concurrency,
        )  # fmt: skip
        self.config = config

    def __repr__(self) -> str:
        return "WebhookAdapter()"

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """One POST per message, `concurrency` at a time."""
        results: dict[str, SendResult] = {}
        limiter = trio.CapacityLimiter(self.concurrency)

        async def one(message: OutboundMessage) -> None:
            async with limiter:
                results.update(await self._drive([message], self._attempt))

        async with trio.open_nursery() as nursery:
            for message in messages:
                problem = _problem(message)
                if problem is not None:
                    results[message.idempotency_key] = SendResult.failed(
                        message, self.provider, problem, code="invalid_message"
                    )
                    continue
                nursery.start_soon(one, message)
        return ordered(messages, results)

    async def _attempt(self, messages: list[OutboundMessage]) -> dict[str, SendResult] | Transient:
        (message,) = messages
        body = webhook_body(message)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.config.secret.reveal(), timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            KEY_HEADER: message.idempotency_key,
            "User-Agent": "cadence-webhook/1",
        }
        try:
            response = await self.client.post(
                message.recipient, content=body, headers=headers, timeout=self.config.timeout
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        if 200 <= response.status_code < 300:
            return {message.idempotency_key: SendResult.sent(message, self.provider, None)}
        if is_transient_status(response.status_code):
            return transient_status(response, "webhook receiver error")
        return {
            message.idempotency_key: SendResult.failed(
                message,
                self.provider,
                f"webhook refused: HTTP {response.status_code}",
                code=f"http_{response.status_code}",
            )
        }
