"""The engine's door: one call routes each tenant's messages to the right provider."""

from __future__ import annotations

import pytest
import trio

from cadence.adapters.config import load_settings
from cadence.adapters.message import Channel, SendStatus
from cadence.adapters.outbound import Outbound
from cadence.adapters.standins import start_standins
from tests.adapters.conftest import email, fast_policy, sms, webhook, whatsapp


@pytest.mark.trio
async def test_messages_reach_each_provider_once(nursery: trio.Nursery) -> None:
    standins = await start_standins(nursery)
    env = standins.environment() | {"CADENCE_TENANT_GLOBEX_EMAIL_PROVIDER": "brevo"}
    outbound = Outbound(load_settings(env=env), policy=fast_policy())
    messages = [
        email(1),
        sms(1),
        whatsapp(1),
        webhook(standins.webhook_url + "/hook", 1),
        email(2, tenant="globex"),
    ]
    results = await outbound.send_batch(messages)
    await outbound.aclose()
    assert [r.status for r in results] == [SendStatus.SENT] * 5
    assert [r.provider for r in results] == ["brevo", "infobip", "infobip", "webhook", "brevo"]
    assert sorted(e.to for e in standins.brevo.emails) == [
        "person1@example.test",
        "person2@example.test",
    ]
    assert sorted(m.channel for m in standins.infobip.messages) == ["sms", "whatsapp"]
    assert len(standins.webhook.received) == 1


@pytest.mark.trio
async def test_unconfigured_channel_is_retry_later_not_lost(nursery: trio.Nursery) -> None:
    outbound = Outbound(load_settings(env={}), policy=fast_policy())
    (result,) = await outbound.send_batch([sms(1)])
    assert result.status is SendStatus.RETRY_LATER and result.error_code == "not_configured"
    assert outbound.adapter_for("acme", Channel.SMS) is None


@pytest.mark.trio
async def test_tenant_costs_fill_in_missing_estimates(nursery: trio.Nursery) -> None:
    standins = await start_standins(nursery)
    settings = load_settings(env=standins.environment())
    from dataclasses import replace
    from decimal import Decimal

    settings = replace(
        settings,
        default=replace(settings.default, costs={"sms": Decimal("0.04")}, currency="EUR"),
    )
    outbound = Outbound(settings, policy=fast_policy())
    (result,) = await outbound.send_batch([sms(1, cost=None, currency=None)])
    await outbound.aclose()
    assert result.ok and str(result.cost) == "0.04" and result.currency == "EUR"
