"""Two presses of one person's link at the same instant, on two service processes.

A mail client's one-click and the person's own press of the page's button can reach two
HTTP workers (or two `cadence serve` processes) at once. Each reads the person's channels,
finds them on, and would store `unsubscribed`: two events, `when unsubscribed` fired twice.
The presses here are forced to overlap: whatever reads the person's channels waits until
the other press has read them too (or, when the store makes it wait for the first press to
commit, until a short timeout), so only a guarantee of the store keeps the second one out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
from sqlalchemy import select

from cadence.adapters.tracking import LinkKind, LinkSigner
from cadence.adapters.web import ServiceApp
from cadence.adapters.web.http import Request, Response
from cadence.engine import runtime
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import (
    Campaign,
    CampaignVersion,
    Enrollment,
    Event,
    OutboxMessage,
    Suppression,
)
from tests.engine.test_runtime import T0, campaigns
from tests.interleave import Meeting, meet_after

SECRET = "test-link-secret-0123456789"
SOURCE = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign welcome { channels email  on launch { send email hello } }
campaign goodbye {
  reenter always
  when unsubscribed where event.channel == "email" { send sms bye }
}
template bye sms { body "Sorry to see you go" }
"""
PEOPLE = [{"id": "bo", "email": "bo@example.test", "phone": "+15550100", "sms_opt_in": True}]


@pytest.fixture
def presses_meet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every read of a person's channels, inside a transaction or after it, waits for the
    other press's read: the interleaving in which both find the channel on."""
    meet_after(monkeypatch, runtime, "read_choices")
    after = Meeting()
    engine_preferences = Engine.preferences

    async def meeting_preferences(self: Engine, contact_id: str) -> Any:
        choices = await engine_preferences(self, contact_id)
        await trio.to_thread.run_sync(after.arrive)
        return choices

    monkeypatch.setattr(Engine, "preferences", meeting_preferences)
    yield


def _press_twice_at_once(
    store_url: str, press: Callable[[ServiceApp, str], Awaitable[Response]]
) -> list[Response]:
    """Bo's welcome email sent; then `press(app, key)` on two engines, each behind its own
    service, at the same time."""
    clock = SimulatedClock(T0)
    answers: list[Response] = []

    async def main() -> None:
        async with (
            Engine(store_url, clock=clock, sink=RecordingSink(), owner="w1") as one,
            Engine(store_url, clock=clock, sink=RecordingSink(), owner="w2") as two,
        ):
            await one.upsert_contacts(PEOPLE)
            await one.deploy(campaigns(SOURCE))
            for name in ("welcome", "goodbye"):
                await one.launch(name)
            await one.run_due()
            with Store.open(store_url) as store, store.session() as session:
                (key,) = session.scalars(select(OutboxMessage.idempotency_key)).all()
            apps = [ServiceApp(e, signer=LinkSigner(SECRET), company="Acme") for e in (one, two)]

            async def one_press(app: ServiceApp) -> None:
                answers.append(await press(app, key))

            async with trio.open_nursery() as nursery:
                for app in apps:
                    nursery.start_soon(one_press, app)

    trio.run(main)
    return answers


def _post(app: ServiceApp, kind: LinkKind, key: str, body: bytes) -> Awaitable[Response]:
    signer = LinkSigner(SECRET)
    path = {"unsubscribe": "u", "preferences": "p"}[kind]
    return app.handle(
        Request(
            "POST", f"/{path}/{key}.{signer.sign(kind, 'default', key)}", {},
            {"content-type": "application/x-www-form-urlencoded"}, body,
        )
    )  # fmt: skip


def _stored(store_url: str) -> tuple[list[str], list[str], int]:
    """The unsubscribed events' channels, the suppressions' channels, and how many times
    `when unsubscribed` enrolled Bo."""
    with Store.open(store_url) as store, store.session() as session:
        events = session.scalars(select(Event).where(Event.name == "unsubscribed")).all()
        suppressed = session.scalars(select(Suppression.channel)).all()
        goodbyes = session.scalars(
            select(Enrollment.id)
            .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(Campaign.name == "goodbye")
        ).all()
    channels = [str((e.properties or {}).get("channel")) for e in events]
    return channels, list(suppressed), len(goodbyes)


@pytest.mark.usefixtures("presses_meet")
def test_two_one_click_unsubscribes_at_once_store_one(store_url: str) -> None:
    answers = _press_twice_at_once(
        store_url, lambda app, key: _post(app, "unsubscribe", key, b"List-Unsubscribe=One-Click")
    )
    assert [a.status for a in answers] == [200, 200]
    assert all(b"unsubscribed" in a.body for a in answers)
    # One event, one suppression, and `when unsubscribed` fired once.
    assert _stored(store_url) == (["email"], ["email"], 1)


@pytest.mark.usefixtures("presses_meet")
def test_the_same_preferences_saved_twice_at_once_change_them_once(store_url: str) -> None:
    answers = _press_twice_at_once(
        store_url, lambda app, key: _post(app, "preferences", key, b"channel=sms")
    )
    assert [a.status for a in answers] == [200, 200]
    assert _stored(store_url) == (["email"], ["email"], 1)
