"""Channels in: what providers report back (Brevo email events, Infobip SMS/WhatsApp reports).

`parse_webhook(provider, payload)` turns a webhook body into provider reports without
touching the store; `Engine.ingest_webhook` matches them to sends and contacts and stores
the send-log outcomes and the events (docs/inbound.md). No HTTP server here: a later
service mounts these parsers.
"""

from __future__ import annotations

import json
from typing import Any

from cadence.adapters.inbound import brevo, infobip
from cadence.adapters.inbound.reports import (
    InvalidWebhook,
    ProviderReport,
    WebhookProblem,
)
from cadence.engine.store.database import storable

PROVIDERS = ("brevo", "infobip")

__all__ = [
    "PROVIDERS",
    "InvalidWebhook",
    "ParsedWebhook",
    "ProviderReport",
    "WebhookProblem",
    "parse_webhook",
]


class ParsedWebhook:
    """A webhook body's reports, and the entries Cadence does not act on (position, what)."""

    def __init__(
        self, provider: str, reports: list[ProviderReport], ignored: list[tuple[str, str]]
    ) -> None:
        """Hold one parsed body."""
        self.provider = provider
        self.reports = reports
        self.ignored = ignored


def parse_webhook(provider: str, payload: Any) -> ParsedWebhook:
    """Parse one webhook body of `provider` (decoded JSON, or its text or bytes).

    Raises `InvalidWebhook`, naming every bad field by its JSON path, when it is malformed.
    """
    name = provider.strip().lower()
    if isinstance(payload, bytes | bytearray | str):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidWebhook(provider, [WebhookProblem("$", f"not JSON: {exc}")]) from None
    payload = storable(payload)
    if name == "brevo":
        reports, ignored = brevo.parse(payload)
    elif name == "infobip":
        reports, ignored = infobip.parse(payload)
    else:
        raise InvalidWebhook(
            provider,
            [
                WebhookProblem(
                    "provider", f"unknown provider {provider!r} (expected brevo or infobip)"
                )
            ],
        )
    return ParsedWebhook(name, reports, ignored)
