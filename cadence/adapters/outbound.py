"""The engine's one door to the providers: route each message to its tenant's adapter.

`Outbound.send_batch(messages)` groups messages by tenant and channel, sends each group
through the adapter the tenant's config names (SMTP or Brevo for email, Infobip for SMS
and WhatsApp, the webhook adapter for webhooks, the store for the in-app inbox),
concurrently across groups, and
returns one `SendResult` per message in order. A channel the tenant has not configured
comes back retry-later (code `not_configured`), so fixing the config delivers the
backlog instead of losing it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import replace

import httpx
import trio

from cadence.adapters.base import ChannelAdapter, utcnow
from cadence.adapters.brevo import BrevoAdapter
from cadence.adapters.config import AdapterSettings, TenantConfig
from cadence.adapters.inbox import InboxAdapter
from cadence.adapters.infobip import InfobipAdapter
from cadence.adapters.message import Channel, OutboundMessage, SendResult
from cadence.adapters.retry import CircuitBreaker, RetryPolicy
from cadence.adapters.smtp import SmtpAdapter
from cadence.adapters.webhook import WebhookAdapter

NOT_CONFIGURED_RETRY = dt.timedelta(minutes=5)


class Outbound:
    """Adapters per (tenant, provider), created on first use and shared afterwards.

    Each adapter gets its own circuit breaker from `breaker`, so one tenant's broken
    provider pauses that tenant's channel only.
    """

    def __init__(
        self,
        settings: AdapterSettings,
        *,
        policy: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        inbox_url: str | None = None,
    ) -> None:
        """`inbox_url` is the engine's store, where inbox messages are delivered."""
        self.settings = settings
        self.inbox_url = inbox_url
        self.policy = policy
        self.breaker = breaker
        self._client = client
        self._own_client = client is None
        self._adapters: dict[tuple[str, str], ChannelAdapter] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30.0)
        return self._client

    def adapter_for(self, tenant: str, channel: Channel) -> ChannelAdapter | None:
        """The adapter that sends `channel` for `tenant`, or None when it is not configured."""
        config = self.settings.for_tenant(tenant)
        provider = _provider(config, channel)
        if channel is Channel.INBOX and self.inbox_url is not None:
            provider = "inbox"
        if provider is None:
            return None
        key = (tenant, provider)
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self._build(config, provider)
            self._adapters[key] = adapter
        return adapter

    def _build(self, config: TenantConfig, provider: str) -> ChannelAdapter:
        if provider == "smtp" and config.smtp is not None:
            return SmtpAdapter(
                config.smtp,
                default_sender=config.default_from,
                feedback_id_sender=config.feedback_id_sender,
                policy=self.policy,
                breaker=self.breaker(),
            )
        if provider == "brevo" and config.brevo is not None:
            return BrevoAdapter(
                config.brevo,
                client=self._http(),
                default_sender=config.default_from,
                feedback_id_sender=config.feedback_id_sender,
                policy=self.policy,
                breaker=self.breaker(),
            )
        if provider == "infobip" and config.infobip is not None:
            return InfobipAdapter(
                config.infobip, client=self._http(), policy=self.policy, breaker=self.breaker()
            )
        if provider == "inbox" and self.inbox_url is not None:
            return InboxAdapter(self.inbox_url)
        if provider == "webhook" and config.webhook is not None:
            return WebhookAdapter(
                config.webhook, client=self._http(), policy=self.policy, breaker=self.breaker()
            )
        raise AssertionError(provider)  # pragma: no cover - _provider checked the config

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message."""
        return (await self.send_batch([message]))[0]

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send many messages; groups run concurrently, results come back in order."""
        results: dict[str, SendResult] = {}
        groups: dict[tuple[str, str], list[OutboundMessage]] = {}
        adapters: dict[tuple[str, str], ChannelAdapter] = {}
        for message in messages:
            config = self.settings.for_tenant(message.tenant)
            if message.cost is None and message.channel.value in config.costs:
                message = replace(
                    message, cost=config.costs[message.channel.value], currency=config.currency
                )
            adapter = self.adapter_for(message.tenant, message.channel)
            if adapter is None:
                results[message.idempotency_key] = SendResult.retry(
                    message,
                    "none",
                    utcnow() + NOT_CONFIGURED_RETRY,
                    f"no provider configured for {message.channel} (tenant {message.tenant})",
                    code="not_configured",
                    attempts=0,
                )
                continue
            key = (message.tenant, adapter.provider)
            adapters[key] = adapter
            groups.setdefault(key, []).append(message)

        async def run(key: tuple[str, str], group: list[OutboundMessage]) -> None:
            for message, result in zip(group, await adapters[key].send_batch(group), strict=True):
                results[message.idempotency_key] = result

        async with trio.open_nursery() as nursery:
            for key, group in groups.items():
                nursery.start_soon(run, key, group)
        return [results[m.idempotency_key] for m in messages]

    async def aclose(self) -> None:
        """Close every adapter and the shared HTTP client."""
        for adapter in self._adapters.values():
            await adapter.aclose()
        if self._own_client and self._client is not None:
            await self._client.aclose()


def _provider(config: TenantConfig, channel: Channel) -> str | None:
    match channel:
        case Channel.EMAIL:
            if config.email_provider == "brevo" and config.brevo is not None:
                return "brevo"
            if config.email_provider == "smtp" and config.smtp is not None:
                return "smtp"
            return None
        case Channel.SMS | Channel.WHATSAPP:
            return "infobip" if config.infobip is not None else None
        case Channel.WEBHOOK:
            return "webhook" if config.webhook is not None else None
    return None  # the inbox: no provider in the tenant's config (see Outbound.inbox_url)
