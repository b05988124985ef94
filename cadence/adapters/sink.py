"""The engine's `Sink` backed by real channels: render each claimed send, then deliver it.

The engine claims outbox rows and hands them to a sink (`cadence.engine.runtime.Sink`).
`AdapterSink` looks up the campaign version and the contact, renders the template in the
sandbox (a render error fails that one send, with its reason), builds the
`OutboundMessage` and sends it through `Outbound`; each `SendResult` becomes the engine's
`DeliveryResult` (sent; failed for good; or not yet, with `retry_at`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import trio

from cadence.adapters.base import ACCOUNT_REFUSALS, ADDRESS_REJECTED, RATE_LIMITED
from cadence.adapters.message import Channel, OutboundMessage, SendResult, SendStatus
from cadence.adapters.outbound import Outbound
from cadence.adapters.render import (
    EmailContent,
    RenderContext,
    TemplateRenderer,
    TemplateRenderError,
    WebhookContent,
)
from cadence.adapters.tracking import Links, has_web_version, track_html, track_text
from cadence.dsl.compiled import CompiledCampaign
from cadence.engine import consent
from cadence.engine.clock import read_instant
from cadence.engine.runtime import DeliveryResult, OutgoingMessage
from cadence.engine.store.sends import ADDRESS_FIELD


class ContentSource(Protocol):
    """Where the sink finds what a send needs beyond the outbox row."""

    async def campaign(self, tenant: str, version: str) -> CompiledCampaign | None:
        """The compiled campaign version a send belongs to."""
        ...

    async def contacts(self, tenant: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Contact data by id: email, phone, names, locale, timezone and attributes."""
        ...

    async def opt_in_token(self, tenant: str, contact_id: str, channel: str) -> str | None:
        """The token of the contact's pending opt-in on `channel` (a confirmation's link)."""
        ...

    async def tenant_name(self, tenant: str) -> str:
        """The tenant's display name, `company.name` in its templates."""
        ...


LinkBuilder = Callable[[OutgoingMessage, Mapping[str, Any]], Links]


class StoreContentSource:
    """Reads campaign versions and contacts from the engine's store (SQLAlchemy)."""

    def __init__(self, database_url: str | None = None) -> None:
        from cadence.engine.store import Store

        self._store = Store.open(database_url, migrate=False)
        self._campaigns: dict[tuple[str, str], CompiledCampaign] = {}
        self._tenant_names: dict[str, str] = {}

    def close(self) -> None:
        """Release the store's connections."""
        self._store.close()

    async def campaign(self, tenant: str, version: str) -> CompiledCampaign | None:
        """The version by content hash, cached (versions never change)."""
        key = (tenant, version)
        if key not in self._campaigns:
            found = await trio.to_thread.run_sync(self._campaign_sync, tenant, version)
            if found is None:
                return None
            self._campaigns[key] = found
        return self._campaigns[key]

    def _campaign_sync(self, tenant: str, version: str) -> CompiledCampaign | None:
        from sqlalchemy import select

        from cadence.engine.store.models import CampaignVersion

        with self._store.session() as session:
            data = session.scalar(
                select(CampaignVersion.compiled).where(
                    CampaignVersion.tenant_id == tenant, CampaignVersion.content_hash == version
                )
            )
        return CompiledCampaign.model_validate(data) if data else None

    async def contacts(self, tenant: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Contacts by id, flattened: columns first, then attributes, then tags."""
        return await trio.to_thread.run_sync(self._contacts_sync, tenant, list(ids))

    def _contacts_sync(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        from cadence.engine.facts import load_facts

        with self._store.session() as session:
            facts = load_facts(session, tenant, ids, with_history=False)
        return {contact_id: fact.attributes for contact_id, fact in facts.items()}

    async def opt_in_token(self, tenant: str, contact_id: str, channel: str) -> str | None:
        """The pending opt-in's token as the store holds it now (None once confirmed)."""
        return await trio.to_thread.run_sync(self._opt_in_token_sync, tenant, contact_id, channel)

    def _opt_in_token_sync(self, tenant: str, contact_id: str, channel: str) -> str | None:
        with self._store.session() as session:
            return consent.pending_token(session, tenant, contact_id, channel)

    async def tenant_name(self, tenant: str) -> str:
        """The tenant's display name as the store holds it (its id unless it was given one),
        read once per process: every send of the tenant renders it."""
        if tenant not in self._tenant_names:
            name = await trio.to_thread.run_sync(self._store.tenant_name, tenant)
            self._tenant_names[tenant] = name
        return self._tenant_names[tenant]


class AdapterSink:
    """Implements the engine's `Sink`: render, send through the providers, report back."""

    def __init__(
        self,
        outbound: Outbound,
        source: ContentSource,
        *,
        renderer: TemplateRenderer | None = None,
        links: LinkBuilder | None = None,
        tenants: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.outbound = outbound
        self.source = source
        self.renderer = renderer or TemplateRenderer()
        self.links = links
        self.tenants = dict(tenants or {})
        # Sends that came back not-sent in this process: their retries reconcile first.
        self._tried: dict[str, int] = {}

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Deliver a claimed batch; one result per message, in order."""
        results: dict[int, DeliveryResult] = {}
        by_tenant: dict[str, list[OutgoingMessage]] = {}
        for message in messages:
            by_tenant.setdefault(message.tenant_id, []).append(message)
        outbound: list[tuple[OutgoingMessage, OutboundMessage]] = []
        for tenant, group in by_tenant.items():
            contacts = await self.source.contacts(tenant, sorted({m.contact_id for m in group}))
            for message in group:
                built = await self._build(message, contacts.get(message.contact_id))
                if isinstance(built, DeliveryResult):
                    results[message.outbox_id] = built
                else:
                    outbound.append((message, built))
        if outbound:
            sent = await self.outbound.send_batch([o for _, o in outbound])
            for (message, out), result in zip(outbound, sent, strict=True):
                results[message.outbox_id] = self._result(message, out, result)
        return [results[m.outbox_id] for m in messages]

    async def web_view(self, message: OutgoingMessage) -> str | None:
        """An email's HTML rendered again as it was sent (its web version); None for any
        other message, or one that no longer renders (its contact or campaign gone)."""
        if not has_web_version(message.channel):
            return None
        contacts = await self.source.contacts(message.tenant_id, [message.contact_id])
        built = await self._build(message, contacts.get(message.contact_id))
        if isinstance(built, OutboundMessage) and isinstance(built.content, EmailContent):
            return built.content.html
        return None

    async def _build(
        self, message: OutgoingMessage, contact: dict[str, Any] | None
    ) -> OutboundMessage | DeliveryResult:
        def fail(reason: str) -> DeliveryResult:
            return DeliveryResult(message.outbox_id, False, error=reason)

        if contact is None:
            return fail(f"contact {message.contact_id} not found")
        try:
            channel = Channel(message.channel)
        except ValueError:
            return fail(f"no adapter sends on the `{message.channel}` channel")
        campaign = await self.source.campaign(message.tenant_id, message.version)
        links = self.links(message, contact) if self.links else Links()
        # What a dry-run renders (`cadence.engine.dryrun`): the tenant's id and name, then
        # what the caller gives for it.
        tenant = {
            "id": message.tenant_id,
            "name": await self.source.tenant_name(message.tenant_id),
            **self.tenants.get(message.tenant_id, {}),
        }
        payload = message.payload
        cost, currency = _cost(payload.get("cost"))
        attempt = max(
            int(getattr(message, "attempts", 0) or 0), self._tried.get(message.idempotency_key, 0)
        )
        common: dict[str, Any] = {
            "idempotency_key": message.idempotency_key,
            "tenant": message.tenant_id,
            "channel": channel,
            "outbox_id": str(message.outbox_id),
            "campaign_id": message.campaign or None,
            "node_id": message.node,
            "contact_id": message.contact_id,
            "template": message.template,
            "cost": cost,
            "currency": currency,
            "attempt": attempt,
            "tags": tuple(t for t in (message.campaign, message.template) if t),
        }
        if channel is Channel.WEBHOOK and message.template is None:
            # `notify webhook "URL"`: a notice about the contact, to the URL the step names.
            target = payload.get("target")
            if not isinstance(target, str):
                return fail("a webhook notice needs a target URL")
            notice = WebhookContent(
                {
                    "campaign": payload.get("campaign"),
                    "contact": _public(contact),
                    # Rows queued before notices named their enrollment have none.
                    "enrollment": payload.get("enrollment"),
                    "event": payload.get("event") or {},
                },
                "en",
            )
            return OutboundMessage(recipient=target, content=notice, **common)
        if campaign is None or message.template not in campaign.templates:
            version = message.version[:12]
            return fail(f"template {message.template!r} of {message.campaign} {version} not found")
        if channel is Channel.WEBHOOK:
            # `send webhook TEMPLATE`: the rendered JSON goes to the tenant's endpoint.
            hook = self.outbound.settings.for_tenant(message.tenant_id).webhook
            if hook is None or not hook.url:
                return fail(
                    "`send webhook` needs the tenant's webhook url"
                    " (CADENCE_WEBHOOK_URL, or url in the config's [webhook] table)"
                )
            address: Any = hook.url
        elif channel is Channel.INBOX:
            address = message.contact_id  # an in-app message goes to the contact itself
        else:
            address = contact.get(ADDRESS_FIELD[channel.value])
            if not address:
                return fail(f"contact {message.contact_id} has no {ADDRESS_FIELD[channel.value]}")
        template = campaign.templates[message.template]
        confirm_url = None
        if links.confirm is not None and consent.is_confirmation(template):
            # Looked up now: the link confirms the opt-in pending at the moment it is sent.
            token = await self.source.opt_in_token(
                message.tenant_id, message.contact_id, message.channel
            )
            if token is None:
                return fail(consent.NOTHING_TO_CONFIRM)
            confirm_url = links.confirm(token)
        context = RenderContext(
            contact=contact,
            tenant=tenant,
            campaign={"name": campaign.name, "display_name": campaign.display_name},
            event=payload.get("event") or {},
            unsubscribe_url=links.unsubscribe_url,
            preferences_url=links.preferences_url,
            view_in_browser_url=links.view_in_browser_url,
            confirm_url=confirm_url,
        )
        try:
            approved = self.outbound.settings.for_tenant(message.tenant_id).whatsapp_templates
            content = await self.renderer.arender(
                template,
                context,
                approved=approved.get(message.template) if channel is Channel.WHATSAPP else None,
            )
        except TemplateRenderError as error:
            return fail(str(error))
        if isinstance(content, EmailContent) and (links.open_pixel_url or links.click):
            # Links to the service's own pages stay as they are: a wrapped one would count
            # a click for every unsubscribe.
            keep = {
                u
                for u in (
                    links.unsubscribe_url,
                    links.preferences_url,
                    links.view_in_browser_url,
                    confirm_url,
                )
                if u
            }
            html = track_html(
                content.html, click=links.click, pixel=links.open_pixel_url, keep=keep
            )
            text = (
                track_text(content.text, click=links.click, keep=keep)
                if links.click
                else content.text
            )
            content = replace(content, html=html, text=text)
        name = " ".join(str(contact[k]) for k in ("first_name", "last_name") if contact.get(k))
        return OutboundMessage(
            recipient=str(address),
            recipient_name=name or None,
            content=content,
            sender=campaign.settings.from_ if channel is Channel.EMAIL else None,
            reply_to=campaign.settings.reply_to if channel is Channel.EMAIL else None,
            unsubscribe_url=links.unsubscribe_url,
            unsubscribe_mailto=links.unsubscribe_mailto,
            session_open_until=_moment(contact.get("whatsapp_session_until")),
            **common,
        )

    def _result(
        self, message: OutgoingMessage, out: OutboundMessage, result: SendResult
    ) -> DeliveryResult:
        if result.status is SendStatus.SENT:
            self._tried.pop(message.idempotency_key, None)
            return DeliveryResult(
                message.outbox_id, True, result.provider, result.provider_message_id
            )
        if result.status is SendStatus.FAILED_PERMANENT:
            self._tried.pop(message.idempotency_key, None)
            return DeliveryResult(
                message.outbox_id, False, result.provider, error=result.error,
                address_rejected=result.error_code == ADDRESS_REJECTED,
            )  # fmt: skip
        self._tried[message.idempotency_key] = out.attempt + 1
        retry_at = result.retry_at or dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        return DeliveryResult(
            message.outbox_id, False, result.provider, error=result.error, retry_at=retry_at,
            rate_limited=result.error_code == RATE_LIMITED,
            account_refused=(
                result.error_code if result.error_code in ACCOUNT_REFUSALS else None
            ),
        )  # fmt: skip


def _cost(value: Any) -> tuple[Decimal | None, str | None]:
    if not isinstance(value, Mapping):
        return None, None
    try:
        return Decimal(str(value.get("amount"))), value.get("currency")
    except InvalidOperation:
        return None, None


def _moment(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        return read_instant(value)
    return None


def _public(contact: Mapping[str, Any]) -> dict[str, Any]:
    """What a notify webhook gets about the contact: identity and names, not every attribute."""
    return {k: contact.get(k) for k in ("id", "email", "phone", "first_name", "last_name")}
