"""Shared helpers for adapter tests: messages, fast retry policies, loopback servers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import trio

from cadence.adapters.message import Channel, OutboundMessage
from cadence.adapters.render import (
    EmailContent,
    SmsContent,
    WebhookContent,
    WhatsAppContent,
    WhatsAppTemplateCall,
)
from cadence.adapters.retry import CircuitBreaker, RetryPolicy
from cadence.adapters.text import sms_length

if TYPE_CHECKING:
    from tests.adapters.test_smtp import Inbox


def close_at_end(nursery: trio.Nursery, adapter: Any) -> None:
    """Close `adapter` when the test's nursery is cancelled (at the end of the test)."""

    async def closer() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await adapter.aclose()

    nursery.start_soon(closer)


def fast_policy(max_attempts: int = 4, max_inline_wait: float = 5.0) -> RetryPolicy:
    """Retries that finish in a test's time."""
    return RetryPolicy(
        max_attempts=max_attempts, base_delay=0.02, max_delay=0.2, max_inline_wait=max_inline_wait
    )


def lenient_breaker() -> CircuitBreaker:
    """A breaker that does not open during ordinary retry tests."""
    return CircuitBreaker(failure_threshold=100)


def email(n: int = 1, **overrides: Any) -> OutboundMessage:
    """An email to contact n."""
    fields: dict[str, Any] = {
        "idempotency_key": f"camp1:v1:node3:contact{n}:0",
        "tenant": "acme",
        "channel": Channel.EMAIL,
        "recipient": f"person{n}@example.test",
        "recipient_name": f"Person {n}",
        "sender": "Acme Homes <hello@acme.test>",
        "content": EmailContent(
            subject=f"Hello {n}",
            preheader="Pre",
            html=f"<html><body><p>Hi <b>{n}</b> ✓</p></body></html>",
            text=f"Hi {n} ✓\n",
            locale="en",
        ),
        "outbox_id": f"outbox-{n}",
        "campaign_id": "camp1",
        "node_id": "node3",
        "contact_id": f"contact{n}",
        "cost": Decimal("0.001"),
        "currency": "USD",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def sms(n: int = 1, text: str | None = None, **overrides: Any) -> OutboundMessage:
    """An SMS to contact n."""
    body = text or f"Hi {n}, still looking? Reply STOP to opt out."
    length = sms_length(body)
    fields: dict[str, Any] = {
        "idempotency_key": f"camp1:v1:node4:contact{n}:0",
        "tenant": "acme",
        "channel": Channel.SMS,
        "recipient": f"+4479460000{n:02d}",
        "content": SmsContent(body, length.encoding, length.units, length.segments, "en"),
        "outbox_id": f"outbox-sms-{n}",
        "cost": Decimal("0.05"),
        "currency": "USD",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def whatsapp(
    n: int = 1, *, approved: bool = True, window: bool = False, **overrides: Any
) -> OutboundMessage:
    """A WhatsApp message to contact n (in or outside the 24h window)."""
    call = (
        WhatsAppTemplateCall("viewing_reminder", "en", (f"Person {n}", "Oslo"))
        if approved
        else None
    )
    fields: dict[str, Any] = {
        "idempotency_key": f"camp1:v1:node5:contact{n}:0",
        "tenant": "acme",
        "channel": Channel.WHATSAPP,
        "recipient": f"+4479460001{n:02d}",
        "content": WhatsAppContent(f"Hi Person {n} 👋", call, "en"),
        "sender": "447860099299",
        "session_open_until": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3) if window else None),
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def webhook(url: str, n: int = 1, **overrides: Any) -> OutboundMessage:
    """A webhook message for contact n."""
    fields: dict[str, Any] = {
        "idempotency_key": f"camp1:v1:node6:contact{n}:0",
        "tenant": "acme",
        "channel": Channel.WEBHOOK,
        "recipient": url,
        "content": WebhookContent({"lead": n, "stage": "hot"}, "en"),
        "contact_id": f"contact{n}",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback (aiosmtpd) and its port; it keeps what it receives."""
    from aiosmtpd.controller import Controller

    from tests.adapters.test_smtp import Inbox, free_port

    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
