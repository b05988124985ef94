"""A campaign runs in the engine; its emails arrive at a loopback SMTP server and its SMS at
the Infobip stand-in, once each, with each contact's content and locale; after an outage
every message still arrives exactly once."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import select

from cadence.adapters.config import load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.retry import CircuitBreaker, RetryPolicy
from cadence.adapters.sink import AdapterSink, Links, StoreContentSource
from cadence.adapters.standins.infobip import InfobipStandin
from cadence.adapters.standins.webhook import WebhookReceiver
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine
from cadence.engine.store import Store
from cadence.engine.store.models import OutboxMessage, Suppression
from tests.adapters.test_smtp import Inbox
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template welcome email {
  subject "Welcome, {{ contact.first_name }}!"
  preheader "Your first week at {{ company.name }}"
  body "<p>Hello {{ contact.first_name }}, homes in {{ contact.city }} from {{ contact.budget | money('USD') }}.</p>"
  locale "es" {
    subject "¡Bienvenido, {{ contact.first_name }}!"
    body "<p>Hola {{ contact.first_name }}, casas en {{ contact.city }} desde {{ contact.budget | money('EUR') }}.</p>"
  }
}
template nudge sms "Hi {{ contact.first_name }}, 3 new homes in {{ contact.city }}. Reply STOP to opt out."

campaign onboarding "Onboarding" {
  from "Acme Homes <hello@acme.test>"
  channels email, sms
  on contact_created {
    send email welcome
    send sms nudge
    notify webhook "WEBHOOK_URL/crm"
  }
}
"""  # noqa: E501

CONTACTS: list[dict[str, Any]] = [
    {"id": "c1", "email": "ana@example.test", "phone": "+447946000001", "first_name": "Ana",
     "locale": "es-MX", "city": "Sevilla", "budget": 300000, "sms_opt_in": True},
    {"id": "c2", "email": "bob@example.test", "phone": "+447946000002", "first_name": "Bob",
     "locale": "en-GB", "city": "Leeds", "budget": 250000, "sms_opt_in": True},
    {"id": "c3", "email": "chen@example.test", "phone": "+447946000003", "first_name": "Chen",
     "city": "London", "budget": 900000, "sms_opt_in": True},
]  # fmt: skip


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    path = tmp_path / "onboarding.cadence"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def links(message: Any, contact: Any) -> Links:
    return Links(
        unsubscribe_url=f"https://t.acme.test/u/{contact['id']}",
        unsubscribe_mailto="unsubscribe@acme.test",
    )


async def run_engine(
    tmp_path: Path, campaign: Path, smtp_port: int, infobip: InfobipStandin, webhook_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    settings = load_settings(
        env={
            "CADENCE_SMTP_URL": f"smtp+plain://127.0.0.1:{smtp_port}",
            "CADENCE_INFOBIP_API_KEY": "test-infobip-key",
            "CADENCE_INFOBIP_BASE_URL": infobip.base_url,
            "CADENCE_WEBHOOK_SECRET": "test-webhook-secret",
        }
    )
    outbound = Outbound(
        settings,
        policy=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1, max_inline_wait=0.5),
        breaker=lambda: CircuitBreaker(
            failure_threshold=3, reset_timeout=0.2, max_reset_timeout=0.4
        ),
    )
    async with Engine(database_url=url) as engine:
        source = StoreContentSource(url)
        engine.sink = AdapterSink(
            outbound, source, links=links, tenants={"default": {"name": "Acme Homes"}}
        )
        source_text = campaign.read_text(encoding="utf-8").replace("WEBHOOK_URL", webhook_url)
        campaign.write_text(source_text, encoding="utf-8")
        await engine.deploy(campaign)
        await engine.launch("onboarding")
        await engine.upsert_contacts(CONTACTS)
        with trio.fail_after(30):
            while True:
                await engine.run_due()
                upcoming = await engine.next_due()
                if upcoming is None:
                    break
                await trio.sleep(0.1)
        source.close()
    await outbound.aclose()


@pytest.mark.trio
async def test_campaign_sends_arrive_once_with_each_contacts_content(
    nursery: trio.Nursery, tmp_path: Path, campaign: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    infobip = InfobipStandin()
    await nursery.start(infobip.serve)
    receiver = WebhookReceiver()
    await nursery.start(receiver.serve)
    await run_engine(tmp_path, campaign, port, infobip, receiver.base_url)

    notices = sorted(json.loads(r.body)["data"]["contact"]["id"] for r in receiver.received)
    assert notices == ["c1", "c2", "c3"] and receiver.rejected == 0
    assert all(r.path == "/crm" for r in receiver.received)
    mails = {envelope.rcpt_tos[0]: mime for envelope, mime in handler.messages}
    assert sorted(mails) == ["ana@example.test", "bob@example.test", "chen@example.test"]
    assert mails["ana@example.test"]["Subject"] == "¡Bienvenido, Ana!"
    assert mails["bob@example.test"]["Subject"] == "Welcome, Bob!"
    ana_html = mails["ana@example.test"].get_body(("html",))
    assert ana_html is not None  # Spanish block, Mexican number format:
    assert "<p>Hola Ana, casas en Sevilla desde EUR300,000.00.</p>" in ana_html.get_content()
    bob_text = mails["bob@example.test"].get_body(("plain",))
    assert bob_text is not None
    assert "Hello Bob, homes in Leeds from US$250,000.00." in bob_text.get_content()
    assert mails["chen@example.test"]["List-Unsubscribe"] == (
        "<mailto:unsubscribe@acme.test>, <https://t.acme.test/u/c3>"
    )
    assert mails["chen@example.test"]["From"] == "Acme Homes <hello@acme.test>"
    texts = {m.to: m.text for m in infobip.messages}
    assert texts == {
        "447946000001": "Hi Ana, 3 new homes in Sevilla. Reply STOP to opt out.",
        "447946000002": "Hi Bob, 3 new homes in Leeds. Reply STOP to opt out.",
        "447946000003": "Hi Chen, 3 new homes in London. Reply STOP to opt out.",
    }
    assert all(count == 1 for count in infobip.deliveries().values())


@pytest.mark.trio
async def test_outage_delays_and_loses_nothing(
    nursery: trio.Nursery, tmp_path: Path, campaign: Path, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox
    infobip = InfobipStandin()
    await nursery.start(infobip.serve)
    infobip.faults.add("drop", process=True)  # taken, but the answer is lost
    infobip.faults.outage(1.5, "503")  # then down for a while
    receiver = WebhookReceiver()
    await nursery.start(receiver.serve)
    receiver.faults.add("500", times=3)
    await run_engine(tmp_path, campaign, port, infobip, receiver.base_url)
    assert len(receiver.received) == 3
    assert len(infobip.deliveries()) == 3
    assert Counter(infobip.deliveries().values()) == {1: 3}
    assert Counter(env.rcpt_tos[0] for env, _ in handler.messages) == {
        "ana@example.test": 1,
        "bob@example.test": 1,
        "chen@example.test": 1,
    }


class _Content:
    """The campaign and contacts of one test, as a content source (no store needed)."""

    def __init__(self, source: str, contacts: list[dict[str, Any]]) -> None:
        from cadence.dsl.compiler import compile_workspace
        from cadence.dsl.loader import load_text

        (self.compiled,) = compile_workspace(load_text(source, "t.cadence"))
        self.people = {c["id"]: c for c in contacts}

    async def campaign(self, tenant: str, version: str) -> Any:
        return self.compiled if version == self.compiled.version else None

    async def contacts(self, tenant: str, ids: Any) -> dict[str, dict[str, Any]]:
        return {i: self.people[i] for i in ids if i in self.people}

    async def tenant_name(self, tenant: str) -> str:
        return tenant


@pytest.mark.trio
@pytest.mark.parametrize(("fault", "rate_limited"), [("429", True), ("500", False)])
async def test_a_send_refused_for_the_provider_s_rate_limit_reaches_the_engine_as_such(
    nursery: trio.Nursery, fault: str, rate_limited: bool
) -> None:
    from cadence.engine.runtime import OutgoingMessage

    infobip = InfobipStandin()
    await nursery.start(infobip.serve)
    # Retry-After an hour: too long to wait inline, so the send goes back to the engine.
    infobip.faults.add(fault, times=5, retry_after=3600)
    settings = load_settings(
        env={
            "CADENCE_INFOBIP_API_KEY": "test-infobip-key",
            "CADENCE_INFOBIP_BASE_URL": infobip.base_url,
        }
    )
    outbound = Outbound(
        settings,
        policy=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.01, max_inline_wait=1),
    )
    content = _Content(
        'template nudge sms "Hi {{ contact.first_name }}"\n'
        "campaign c { on launch { send sms nudge } }",
        [{"id": "c1", "phone": "+447946000001", "first_name": "Ana", "sms_opt_in": True}],
    )
    sink = AdapterSink(outbound, content, links=links)
    message = OutgoingMessage(
        outbox_id=7, idempotency_key="k" * 32, tenant_id="default", campaign="c",
        version=content.compiled.version, node="n1", contact_id="c1", channel="sms",
        template="nudge", variant=None, payload={},
    )  # fmt: skip
    (result,) = await sink.deliver([message])
    await outbound.aclose()
    assert not result.sent and result.retry_at is not None
    assert result.rate_limited is rate_limited
    assert not infobip.messages


SYNC = """
template crm_sync webhook { body "{\\"id\\": \\"{{ contact.id }}\\", \\"city\\": \\"{{ contact.city }}\\"}" }
campaign sync { on launch { send webhook crm_sync } }
"""  # noqa: E501


@pytest.mark.trio
async def test_a_webhook_template_is_posted_rendered_to_the_tenants_webhook_url(
    nursery: trio.Nursery,
) -> None:
    """`send webhook TEMPLATE` names no URL: it failed every time with "needs a target URL".
    Its rendered JSON now goes, signed, to the tenant's configured webhook url."""
    from cadence.engine.runtime import OutgoingMessage

    receiver = WebhookReceiver()
    await nursery.start(receiver.serve)
    content = _Content(SYNC, [{"id": "c1", "city": "Leeds"}])

    def message(outbox_id: int) -> OutgoingMessage:
        return OutgoingMessage(
            outbox_id=outbox_id, idempotency_key=f"{outbox_id}" * 32, tenant_id="default",
            campaign="sync", version=content.compiled.version, node="send_crm_sync",
            contact_id="c1", channel="webhook", template="crm_sync", variant=None, payload={},
        )  # fmt: skip

    unset = Outbound(load_settings(env={"CADENCE_WEBHOOK_SECRET": "test-webhook-secret"}))
    (refused,) = await AdapterSink(unset, content).deliver([message(1)])
    await unset.aclose()
    assert not refused.sent and refused.retry_at is None
    assert refused.error is not None and "CADENCE_WEBHOOK_URL" in refused.error

    settings = load_settings(
        env={
            "CADENCE_WEBHOOK_SECRET": "test-webhook-secret",
            "CADENCE_WEBHOOK_URL": f"{receiver.base_url}/sync",
        }
    )
    outbound = Outbound(settings)
    (result,) = await AdapterSink(outbound, content).deliver([message(2)])
    await outbound.aclose()
    assert result.sent, result.error
    (request,) = receiver.received
    assert request.path == "/sync" and receiver.rejected == 0
    body = json.loads(request.body)
    assert body["template"] == "crm_sync" and body["data"] == {"id": "c1", "city": "Leeds"}


def test_a_webhook_url_in_the_config_file_must_be_http(tmp_path: Path) -> None:
    from cadence.adapters.config import ConfigError

    config = tmp_path / "cadence.toml"
    config.write_text('[default.webhook]\nsecret = "s"\nurl = "ftp://x.test/in"\n', "utf-8")
    with pytest.raises(ConfigError, match=r"webhook\.url must be an http\(s\) URL"):
        load_settings(config, env={})
    config.write_text('[default.webhook]\nsecret = "s"\nurl = "https://x.test/in"\n', "utf-8")
    hook = load_settings(config, env={}).for_tenant("default").webhook
    assert hook is not None and hook.url == "https://x.test/in"


REJECTED = """
template first email { subject "One" body "<p>One</p>" }
template second email { subject "Two" body "<p>Two</p>" }
campaign drip {
  from "Acme <hello@acme.test>"
  on contact_created { send email first  wait 1d  send email second }
}
"""


def test_an_address_the_server_says_does_not_exist_is_not_tried_again(
    store_url: str, inbox: tuple[Inbox, int]
) -> None:
    """`550 5.1.1 No such user` at RCPT failed the send and the next send to that address
    went out the same way: it is a hard bounce before sending, and suppresses the address.
    A refusal of the message (5.7.1, policy) leaves the address alone."""
    handler, port = inbox
    clock = SimulatedClock(T0)
    people = [
        {"id": "gone", "email": "nobody@example.test"},
        {"id": "ok", "email": "ok@example.test"},
        {"id": "strict", "email": "policy@example.test"},
    ]

    async def main() -> None:
        settings = load_settings(env={"CADENCE_SMTP_URL": f"smtp+plain://127.0.0.1:{port}"})
        outbound = Outbound(settings, policy=RetryPolicy(max_attempts=1, base_delay=0.01))
        async with Engine(store_url, clock=clock) as engine:
            source = StoreContentSource(store_url)
            engine.sink = AdapterSink(outbound, source, links=links, tenants={})
            await engine.deploy(campaigns(REJECTED))
            await engine.launch("drip")
            await engine.upsert_contacts(people)
            await engine.run_until(T0 + dt.timedelta(days=2))
            source.close()
        await outbound.aclose()

    trio.run(main)
    assert sorted(env.rcpt_tos[0] for env, _ in handler.messages) == [
        "ok@example.test", "ok@example.test",
    ]  # fmt: skip
    with Store.open(store_url) as store, store.session() as session:
        statuses = {
            (row.contact_id, row.template): row.status
            for row in session.scalars(select(OutboxMessage))
        }
        suppressed = [
            (row.channel, row.address, row.reason) for row in session.scalars(select(Suppression))
        ]
    assert statuses[("gone", "first")] == "failed"
    assert ("gone", "second") not in statuses  # skipped at its step: never queued
    assert statuses[("strict", "second")] == "failed"  # tried again: the message was refused
    assert suppressed == [("email", "nobody@example.test", "bounced")]
