"""`send inbox TEMPLATE` outside a dry-run: the message lands in the contact's in-app inbox.

The live sink had no adapter for the inbox channel, so every such send failed. Delivering
one now writes it to the store (`cadence.adapters.inbox`), once per outbox row, and
`Engine.inbox` / `mark_inbox_read` are what the app reads and reports through.
"""

from __future__ import annotations

import pytest
import trio
from sqlalchemy import func, select

from cadence.adapters.config import load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, EngineError, OutgoingMessage
from cadence.engine.store import Store
from cadence.engine.store.models import InboxMessage, OutboxMessage
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template welcome_inbox inbox "Welcome, {{ contact.first_name }}! Start with your first project."
campaign onboarding { channels inbox  on launch { send inbox welcome_inbox } }
"""
PEOPLE = [{"id": "ana", "first_name": "Ana"}, {"id": "bo", "first_name": "Bo"}]


def _run(store_url: str) -> tuple[list[dict[str, object]], list[dict[str, object]], int, int]:
    outbound = Outbound(load_settings(env={}), inbox_url=store_url)
    source = StoreContentSource(store_url)

    async def main() -> tuple[list[dict[str, object]], list[dict[str, object]], int, int]:
        sink = AdapterSink(outbound, source)
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(SOURCE))
            await engine.launch("onboarding")
            await engine.run_due()
            ana = await engine.inbox("ana")
            bos = await engine.inbox("bo")
            # The app reports Ana's message read; Bo's id under Ana's name changes nothing.
            marked = await engine.mark_inbox_read("ana", [ana[0]["id"], bos[0]["id"]])
            again = await engine.mark_inbox_read("ana", [ana[0]["id"]])
            unread = await engine.inbox("ana", unread_only=True)
            assert unread == []
            with pytest.raises(EngineError, match="limit"):
                await engine.inbox("ana", limit=0)
            return ana, bos, marked, again

    try:
        return trio.run(main)
    finally:
        trio.run(outbound.aclose)
        source.close()


def test_an_inbox_send_lands_in_the_contacts_inbox_once(store_url: str) -> None:
    ana, bos, marked, again = _run(store_url)
    assert [(m["subject"], m["text"], m["read_at"]) for m in ana] == [
        (None, "Welcome, Ana! Start with your first project.", None)
    ]
    assert [m["text"] for m in bos] == ["Welcome, Bo! Start with your first project."]
    assert (marked, again) == (1, 0)
    with Store.open(store_url) as store, store.session() as session:
        statuses = set(session.scalars(select(OutboxMessage.status)))
        assert statuses == {"sent"}
        providers = set(session.scalars(select(OutboxMessage.provider)))
        assert providers == {"inbox"}
        read = session.scalars(select(InboxMessage.read_at).where(InboxMessage.contact_id == "bo"))
        assert list(read) == [None]  # Bo's message stays unread


def test_delivering_the_same_inbox_send_twice_stores_it_once(store_url: str) -> None:
    """A retry after an unknown outcome (the engine died after the write) adds nothing."""
    outbound = Outbound(load_settings(env={}), inbox_url=store_url)
    source = StoreContentSource(store_url)

    async def main() -> list[str | None]:
        sink = AdapterSink(outbound, source)
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts(PEOPLE[:1])
            await engine.deploy(campaigns(SOURCE))
            await engine.launch("onboarding")
            await engine.run_due()
        with Store.open(store_url) as store, store.session() as session:
            row = session.execute(select(OutboxMessage)).scalars().one()
            message = OutgoingMessage(
                outbox_id=row.id, idempotency_key=row.idempotency_key, tenant_id="default",
                campaign="onboarding", version=campaigns(SOURCE)[0].version, node=row.node,
                contact_id="ana", channel="inbox", template="welcome_inbox", variant=None,
                payload={},
            )  # fmt: skip
        (first,) = await sink.deliver([message])
        (second,) = await sink.deliver([message])
        return [first.provider_message_id, second.provider_message_id]

    try:
        ids = trio.run(main)
    finally:
        trio.run(outbound.aclose)
        source.close()
    assert ids[0] is not None and ids[0] == ids[1]
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalar(select(func.count()).select_from(InboxMessage)) == 1
