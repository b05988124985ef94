"""What the engine hands an adapter and what it gets back: one outbound message, one result.

An `OutboundMessage` is a rendered send bound to its outbox row: the idempotency key that
makes retries safe, the tenant whose credentials to use, the recipient and the content.
A `SendResult` is the adapter's verdict, which the engine records on that row: sent (with
the provider's message id and cost), failed for good, retry later at a time, or unknown
(the provider may or may not have it; the next attempt reconciles before sending).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from cadence.adapters.render import (
    EmailContent,
    RenderedContent,
    SmsContent,
    WebhookContent,
    WhatsAppContent,
)
from cadence.addresses import split_sender

# A fixed namespace so the same idempotency key always maps to the same UUID and ids.
_CADENCE_NAMESPACE = uuid.UUID("6f0c2a3e-8d1b-5c47-9a2e-3b7d4c1e0f58")


class Channel(StrEnum):
    """The channels an adapter can send on."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    WEBHOOK = "webhook"
    INBOX = "inbox"


class SendStatus(StrEnum):
    """The four outcomes of a send attempt."""

    SENT = "sent"
    FAILED_PERMANENT = "failed_permanent"
    RETRY_LATER = "retry_later"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """An address with an optional display name."""

    email: str
    name: str | None = None

    def __post_init__(self) -> None:
        # A display name is one line: a contact's name with a line break in it (a
        # multi-line CSV cell) cannot go in a header, and Python refuses to write it.
        if self.name is not None:
            object.__setattr__(self, "name", " ".join(self.name.split()) or None)

    def formatted(self) -> str:
        """`Name <email>` (RFC 5322 quoting) or the bare address."""
        from email.headerregistry import Address

        if not self.name:
            return self.email
        local, _, domain = self.email.rpartition("@")
        return str(Address(display_name=self.name, username=local, domain=domain))

    @classmethod
    def parse(cls, text: str) -> EmailAddress:
        """`Acme <hello@acme.test>` or `hello@acme.test`; the address in angle brackets is
        the address also when the name before it holds an unquoted `,` or `;`."""
        name, email = split_sender(text)
        return cls(email=email, name=name)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One rendered send, ready for a provider; immutable and safe to retry as-is.

    `idempotency_key` is the outbox row's key (campaign version, node, contact,
    occurrence); every provider-facing id (Message-ID, Brevo idempotencyKey, Infobip
    messageId) is derived from it, so a retry is recognisably the same send.
    `attempt` counts earlier attempts recorded on the outbox row (0 for the first):
    adapters without provider-side deduplication reconcile first when it is above 0.
    """

    idempotency_key: str
    tenant: str
    channel: Channel
    recipient: str
    content: RenderedContent
    recipient_name: str | None = None
    sender: str | None = None
    reply_to: str | None = None
    outbox_id: str | None = None
    campaign_id: str | None = None
    node_id: str | None = None
    contact_id: str | None = None
    template: str | None = None
    tags: tuple[str, ...] = ()
    cost: Decimal | None = None
    currency: str | None = None
    attempt: int = 0
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    session_open_until: dt.datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = {
            Channel.EMAIL: EmailContent,
            Channel.SMS: SmsContent,
            Channel.WHATSAPP: WhatsAppContent,
            Channel.WEBHOOK: WebhookContent,
            # An in-app message renders as an email does (title, text, HTML).
            Channel.INBOX: EmailContent,
        }[self.channel]
        if not isinstance(self.content, expected):
            raise TypeError(
                f"{self.channel} message needs {expected.__name__}, "
                f"got {type(self.content).__name__}"
            )
        if not self.idempotency_key:
            raise ValueError("an outbound message needs an idempotency key")

    def key_uuid(self) -> uuid.UUID:
        """A UUID derived from the idempotency key (Brevo wants UUIDs)."""
        return uuid.uuid5(_CADENCE_NAMESPACE, self.idempotency_key)

    def key_digest(self, length: int = 32) -> str:
        """A short hex digest of the key, for ids with length or charset limits."""
        return hashlib.sha256(self.idempotency_key.encode("utf-8")).hexdigest()[:length]

    def in_session_window(self, now: dt.datetime | None = None) -> bool:
        """True inside WhatsApp's 24h customer-service window (free-form text allowed)."""
        if self.session_open_until is None:
            return False
        moment = now or dt.datetime.now(dt.UTC)
        return moment < self.session_open_until

    def with_attempt(self, attempt: int) -> OutboundMessage:
        """The same message, marked as having been tried `attempt` times before."""
        return replace(self, attempt=attempt)


def batch_uuid(keys: list[str]) -> uuid.UUID:
    """A UUID for a batch that is the same whenever the same sends are batched together."""
    return uuid.uuid5(_CADENCE_NAMESPACE, "\n".join(sorted(keys)))


@dataclass(frozen=True, slots=True)
class SendResult:
    """An adapter's verdict on one message; the engine stores it on the outbox row."""

    idempotency_key: str
    status: SendStatus
    provider: str
    provider_message_id: str | None = None
    retry_at: dt.datetime | None = None
    error: str | None = None
    error_code: str | None = None
    cost: Decimal | None = None
    currency: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when the provider accepted the message."""
        return self.status is SendStatus.SENT

    @classmethod
    def sent(
        cls,
        message: OutboundMessage,
        provider: str,
        provider_message_id: str | None,
        *,
        attempts: int = 1,
        cost: Decimal | None = None,
        currency: str | None = None,
    ) -> SendResult:
        """Accepted by the provider; cost falls back to the message's configured estimate."""
        return cls(
            message.idempotency_key,
            SendStatus.SENT,
            provider,
            provider_message_id,
            cost=cost if cost is not None else message.cost,
            currency=currency if cost is not None else message.currency,
            attempts=attempts,
        )

    @classmethod
    def failed(
        cls,
        message: OutboundMessage,
        provider: str,
        error: str,
        *,
        code: str | None = None,
        attempts: int = 1,
    ) -> SendResult:
        """Refused for good (bad address, bad request, bad credentials): do not retry."""
        return cls(
            message.idempotency_key,
            SendStatus.FAILED_PERMANENT,
            provider,
            error=error,
            error_code=code,
            attempts=attempts,
        )

    @classmethod
    def retry(
        cls,
        message: OutboundMessage,
        provider: str,
        at: dt.datetime,
        error: str,
        *,
        code: str | None = None,
        attempts: int = 1,
    ) -> SendResult:
        """Not sent this time; try again at `at` (the provider surely did not take it)."""
        return cls(
            message.idempotency_key,
            SendStatus.RETRY_LATER,
            provider,
            retry_at=at,
            error=error,
            error_code=code,
            attempts=attempts,
        )

    @classmethod
    def unknown(
        cls,
        message: OutboundMessage,
        provider: str,
        at: dt.datetime,
        error: str,
        *,
        attempts: int = 1,
    ) -> SendResult:
        """The provider may have it; retry at `at` with `attempt` > 0 so it reconciles first."""
        return cls(
            message.idempotency_key,
            SendStatus.UNKNOWN,
            provider,
            retry_at=at,
            error=error,
            error_code="unknown_outcome",
            attempts=attempts,
        )


# ------------------------------------------------------------------------------ email headers


def message_id_for(message: OutboundMessage, domain: str) -> str:
    """A Message-ID derived from the idempotency key: a resend carries the same id."""
    return f"<{message.key_digest(32)}.cadence@{domain}>"


def list_unsubscribe_headers(message: OutboundMessage) -> dict[str, str]:
    """RFC 2369 List-Unsubscribe with mailto and https, plus RFC 8058 one-click."""
    targets = []
    if message.unsubscribe_mailto:
        mailto = message.unsubscribe_mailto
        targets.append(f"<{mailto if mailto.startswith('mailto:') else 'mailto:' + mailto}>")
    if message.unsubscribe_url:
        targets.append(f"<{message.unsubscribe_url}>")
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(targets)}
    if message.unsubscribe_url and message.unsubscribe_url.startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def feedback_id_for(message: OutboundMessage, sender_id: str) -> str:
    """Gmail's Feedback-ID: campaign:node:tenant:sender, colons removed from each part."""
    parts = [message.campaign_id or "none", message.node_id or "none", message.tenant, sender_id]
    return ":".join(p.replace(":", "-").replace(" ", "_")[:64] for p in parts)
