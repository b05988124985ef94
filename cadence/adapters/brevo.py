"""Email through Brevo's transactional API, batched with messageVersions and deduplicated.

`POST {base}/v3/smtp/email` with the `api-key` header. Messages that share sender,
reply-to, tags and headers go together as `messageVersions` (up to Brevo's 1000 per
request); `headers.idempotencyKey` is a UUID derived from the send's idempotency key (or
from the batch's keys), so a retry after a timeout is deduplicated by Brevo. A single
message carries its outbox id in `X-Mailin-custom`, which Brevo echoes in its webhooks;
a batch carries its batch id there and each version is matched by the `messageIds`
Brevo returns, in order. Brevo's 429 has no Retry-After: the wait is
`x-sib-ratelimit-reset` seconds (a Retry-After, from a proxy in front of Brevo, when the
reset is missing). Per-contact List-Unsubscribe headers make each such
message its own request, since versions cannot carry headers.

Brevo does not replay the answer to a repeated idempotency key: it refuses the request
with 400 `duplicate_parameter` and sends nothing
(https://developers.brevo.com/docs/heterogenous-versions-batch-emails). When that answers
a retry of a request whose outcome was unknown, the first request was processed: its
messages are sent (Brevo's message ids are lost with the first answer).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
import trio

from cadence.adapters.base import (
    ADDRESS_REJECTED,
    KEY_REFUSED,
    NO_CREDITS,
    HttpAdapter,
    Transient,
    held_for_account,
    ordered,
)
from cadence.adapters.config import BrevoConfig
from cadence.adapters.http import (
    is_transient_status,
    provider_error,
    transient_status,
    transport_failure,
)
from cadence.adapters.message import (
    Channel,
    EmailAddress,
    OutboundMessage,
    SendResult,
    SendStatus,
    batch_uuid,
    feedback_id_for,
    list_unsubscribe_headers,
)
from cadence.adapters.render import EmailContent
from cadence.adapters.retry import CircuitBreaker, RetryPolicy, parse_retry_after

_SPLIT = "batch_refused"
# Brevo's error code for a request whose idempotency key it processed within the key's TTL.
_DUPLICATE = "duplicate_parameter"
# Brevo's error code (with HTTP 402 payment required) when the account has no credit left.
_NO_CREDITS = "not_enough_credits"
# Brevo's words when it refuses the recipient's address itself (400 invalid_parameter;
# the stand-in, as Brevo's newer answers, names the entry: `to[0]`).
_RECIPIENT_INVALID = "email is not valid in to"
# How long a key whose request got no definite answer is remembered (Brevo's TTL is 30 min).
_UNCERTAIN_TTL = 3600.0


class BrevoAdapter(HttpAdapter):
    """One tenant's Brevo account."""

    provider = "brevo"
    channels = frozenset({Channel.EMAIL})

    def __init__(
        self,
        config: BrevoConfig,
        *,
        client: httpx.AsyncClient | None = None,
        default_sender: str | None = None,
        feedback_id_sender: str = "cadence",
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
        self.default_sender = default_sender
        self.feedback_id_sender = feedback_id_sender
        self.url = config.base_url.rstrip("/") + "/v3/smtp/email"
        # Batches whose outcome was unknown: a later retry of any of their messages reuses
        # the batch's idempotency key, so Brevo recognises it whatever the new grouping.
        self._unknown_batches: dict[str, str] = {}
        # Idempotency keys of requests that got no definite answer (timeout, dropped
        # connection, 5xx), with when: Brevo may have processed them, so a later
        # `duplicate_parameter` for the same key means "already sent".
        self._uncertain_keys: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"BrevoAdapter(base_url={self.config.base_url!r})"

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Group compatible messages into requests of up to `batch_size` versions."""
        results: dict[str, SendResult] = {}
        groups: dict[tuple[Any, ...], list[OutboundMessage]] = {}
        for message in messages:
            problem = self._problem(message)
            if problem is not None:
                results[message.idempotency_key] = SendResult.failed(
                    message, self.provider, problem, code="invalid_message"
                )
                continue
            groups.setdefault(self._group_key(message), []).append(message)
        size = max(1, min(1000, self.config.batch_size))
        limiter = trio.CapacityLimiter(self.concurrency)

        async def send_chunk(chunk: list[OutboundMessage]) -> None:
            async with limiter:
                found = await self._drive(chunk, self._attempt)
                key = self._batch_key(chunk)
                for message in chunk:
                    if found[message.idempotency_key].status is SendStatus.UNKNOWN:
                        self._unknown_batches[message.idempotency_key] = key
                    else:
                        self._unknown_batches.pop(message.idempotency_key, None)
                results.update(found)
                refused = [m for m in chunk if found[m.idempotency_key].error_code == _SPLIT]
                for message in refused:  # one bad address must not fail its batch-mates
                    results.update(await self._drive([message], self._attempt))

        async with trio.open_nursery() as nursery:
            for group in groups.values():
                for start in range(0, len(group), size):
                    nursery.start_soon(send_chunk, group[start : start + size])
        return ordered(messages, results)

    # ------------------------------------------------------------------ payloads

    def _problem(self, message: OutboundMessage) -> str | None:
        if message.channel is not Channel.EMAIL or not isinstance(message.content, EmailContent):
            return "Brevo sends email only"
        if not (message.sender or self.default_sender):
            return "no sender address (campaign `from` or the tenant's default_from)"
        return None

    def _sender(self, message: OutboundMessage) -> dict[str, str]:
        address = EmailAddress.parse(message.sender or self.default_sender or "")
        return _address(address.email, address.name)

    def _headers(self, message: OutboundMessage) -> dict[str, str]:
        headers = list_unsubscribe_headers(message)
        headers["Feedback-ID"] = feedback_id_for(message, self.feedback_id_sender)
        return headers

    def _group_key(self, message: OutboundMessage) -> tuple[Any, ...]:
        return (
            self._unknown_batches.get(message.idempotency_key) if message.attempt else None,
            message.sender or self.default_sender,
            message.reply_to,
            message.tags,
            tuple(sorted(self._headers(message).items())),
        )

    def payload(self, messages: Sequence[OutboundMessage]) -> dict[str, Any]:
        """The request body for these messages (one message: `to`; several: versions)."""
        first = messages[0]
        content = first.content
        assert isinstance(content, EmailContent)
        body: dict[str, Any] = {
            "sender": self._sender(first),
            "subject": content.subject,
            "htmlContent": content.html,
            "textContent": content.text,
        }
        headers = self._headers(first)
        batch = self._batch_key(messages)
        headers["idempotencyKey"] = batch
        if len(messages) == 1:
            body["to"] = [_recipient(first)]
            headers["X-Mailin-custom"] = first.outbox_id or first.idempotency_key
        else:
            headers["X-Mailin-custom"] = f"batch:{batch}"
            versions = []
            for message in messages:
                version_content = message.content
                assert isinstance(version_content, EmailContent)
                versions.append(
                    {
                        "to": [_recipient(message)],
                        "subject": version_content.subject,
                        "htmlContent": version_content.html,
                        "textContent": version_content.text,
                    }
                )
            body["messageVersions"] = versions
        if first.reply_to:
            reply = EmailAddress.parse(first.reply_to)
            body["replyTo"] = _address(reply.email, reply.name)
        if first.tags:
            body["tags"] = list(first.tags)
        if self.config.sandbox:
            headers["X-Sib-Sandbox"] = "drop"  # Brevo validates and answers but delivers nothing
        body["headers"] = headers
        return body

    def _batch_key(self, messages: Sequence[OutboundMessage]) -> str:
        """The request's idempotency UUID: a remembered unknown batch's, else derived."""
        if messages[0].attempt:
            remembered = self._unknown_batches.get(messages[0].idempotency_key)
            if remembered is not None:
                return remembered
        if len(messages) == 1:
            return str(messages[0].key_uuid())
        return str(batch_uuid([m.idempotency_key for m in messages]))

    # ------------------------------------------------------------------ one request

    async def _attempt(self, messages: list[OutboundMessage]) -> dict[str, SendResult] | Transient:
        key = self._batch_key(messages)
        outcome = await self._request(messages, key)
        if isinstance(outcome, Transient):
            self._note_uncertain(key)
        else:
            self._uncertain_keys.pop(key, None)
        return outcome

    def _note_uncertain(self, key: str) -> None:
        now = time.monotonic()
        self._uncertain_keys[key] = now
        if len(self._uncertain_keys) > 10_000:
            for old, when in list(self._uncertain_keys.items()):
                if now - when > _UNCERTAIN_TTL:
                    del self._uncertain_keys[old]

    def _already_processed(self, messages: list[OutboundMessage], key: str, text: str) -> bool:
        """Does a `duplicate_parameter` refusal mean Brevo processed this key earlier?"""
        when = self._uncertain_keys.get(key)
        if when is not None and time.monotonic() - when < _UNCERTAIN_TTL:
            return True
        # Tried before (perhaps by an earlier process), or Brevo names the key.
        return any(m.attempt for m in messages) or "idempotency" in text.lower()

    def _forget_consumed_key(self, messages: list[OutboundMessage], key: str) -> None:
        """A remembered batch key was just processed for these messages only: the others
        of that batch were never sent, and must not reuse it (Brevo would refuse them)."""
        here = {m.idempotency_key for m in messages}
        for other, remembered in list(self._unknown_batches.items()):
            if remembered == key and other not in here:
                del self._unknown_batches[other]

    async def _request(
        self, messages: list[OutboundMessage], key: str
    ) -> dict[str, SendResult] | Transient:
        try:
            response = await self.client.post(
                self.url,
                json=self.payload(messages),
                headers={
                    "api-key": self.config.api_key.reveal(),
                    "accept": "application/json",
                },
                timeout=self.config.timeout,
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        status = response.status_code
        if status in (200, 201, 202):
            self._forget_consumed_key(messages, key)
            data = _json(response)
            ids = data.get("messageIds") or [data.get("messageId")] * len(messages)
            if len(ids) != len(messages):
                ids = [None] * len(messages)
            return {
                m.idempotency_key: SendResult.sent(m, self.provider, provider_id)
                for m, provider_id in zip(messages, ids, strict=True)
            }
        data = _json(response)
        said = _said(data)
        if status == 429:
            reset = response.headers.get("x-sib-ratelimit-reset")
            try:
                wait = float(reset) if reset is not None else None
            except ValueError:
                wait = None
            if wait is not None and math.isfinite(wait) and wait >= 0:
                wait += self.rng.random() * 0.25  # spread the herd past the reset
            else:
                # No usable reset: a Retry-After (a proxy's, or Brevo's if it adds one).
                wait = parse_retry_after(response.headers.get("retry-after"))
            return transient_status(response, "Brevo rate limit reached", said, wait=wait)
        if is_transient_status(status):
            return transient_status(response, "Brevo error", said)
        code = str(data.get("code") or f"http_{status}")
        text = str(data.get("message") or response.reason_phrase)
        if status == 400 and code == _DUPLICATE and self._already_processed(messages, key, text):
            # The key's first request went through; this retry was refused, not sent.
            return {m.idempotency_key: SendResult.sent(m, self.provider, None) for m in messages}
        error = provider_error("Brevo", status, code, text)
        if status == 402 or code == _NO_CREDITS:
            # The account is out of credit (Brevo's 402 payment required): no send fails
            # for it; they wait until the account is topped up.
            return {
                m.idempotency_key: held_for_account(m, self.provider, error, NO_CREDITS)
                for m in messages
            }
        if status in (401, 403):
            # The key (or the account behind it) is refused, not these messages: they wait.
            return {
                m.idempotency_key: held_for_account(m, self.provider, error, KEY_REFUSED)
                for m in messages
            }
        if status == 400 and len(messages) > 1:
            code = _SPLIT
        elif status == 400 and text.strip().lower().startswith(_RECIPIENT_INVALID):
            code = ADDRESS_REJECTED
        return {
            m.idempotency_key: SendResult.failed(m, self.provider, error, code=code)
            for m in messages
        }


# Brevo refuses a request whose sender, recipient or reply-to name is longer than this
# (400 invalid_parameter; "Maximum allowed characters are 70" in its SendSmtpEmail models).
MAX_NAME = 70


def _address(email: str, name: str | None) -> dict[str, str]:
    """A Brevo address object; a display name cut to Brevo's 70 characters."""
    entry = {"email": email}
    shown = (name or "").strip()
    if len(shown) > MAX_NAME:
        shown = shown[:MAX_NAME].rstrip()
    if shown:
        entry["name"] = shown
    return entry


def _recipient(message: OutboundMessage) -> dict[str, str]:
    recipient = EmailAddress(message.recipient, message.recipient_name)
    return _address(recipient.email, recipient.name)


def _said(data: dict[str, Any]) -> str | None:
    """Brevo's `{"code", "message"}` error body as `code: message`, if it sent one."""
    parts = [str(data[key]) for key in ("code", "message") if data.get(key)]
    return ": ".join(parts) or None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
