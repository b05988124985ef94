"""A STOP reply and an unsubscribe link leave the same state: `unsubscribed` holds after both.

`unsubscribed` is about the person, not a channel (docs/language.md): it holds once they
opted out anywhere. Ana texts STOP back to an SMS (Infobip posts it to the service's
webhook endpoint); Bo follows the unsubscribe link in his email. For both, the opt-out is
an `unsubscribed` event on that channel: the gates stop that channel, the preference page
shows it off, the report counts it, the `goal unsubscribed` ends their enrollment, a
`wait for unsubscribed` wakes at once, and `when unsubscribed` fires. Cy does nothing.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import trio
from sqlalchemy import select

from cadence.engine.store import Store
from cadence.engine.store.models import Campaign, CampaignVersion, Contact, Enrollment, Event
from tests.adapters.test_web_service import TOKEN, Service, _with_service
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template hello email {
  subject "Hello"
  body "<p>News.</p><p><a href=\\"{{ unsubscribe_url }}\\">Unsubscribe</a></p>"
}
template later email { subject "Later" body "<p>More news.</p>" }
template text sms "Hi. Reply STOP to opt out."
campaign news {
  from "Acme <hello@acme.test>"
  channels email, sms
  goal unsubscribed
  on launch {
    send email hello
    send sms text
    wait 2d
    send email later
  }
}
campaign watch {
  on launch {
    wait for unsubscribed up to 3d
    if unsubscribed { set left = "unsubscribed" } else { set left = "stayed" }
  }
}
campaign farewell {
  when unsubscribed { set unsubscribed_via = event.via }
}
"""
PEOPLE = [
    {"id": name, "email": f"{name}@example.test", "phone": f"+49151000000{i}",
     "attributes": {"sms_opt_in": True}}
    for i, name in enumerate(("ana", "bo", "cy"), start=1)
]  # fmt: skip


def _stop(number: str, at: dt.datetime) -> dict[str, Any]:
    """An inbound SMS, as Infobip forwards it."""
    return {
        "messageId": "817790313235066447", "from": number.lstrip("+"), "to": "4915199999999",
        "text": "STOP", "cleanText": "", "keyword": "STOP",
        "receivedAt": at.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), "smsCount": 1,
        "price": {"pricePerMessage": 0, "currency": "EUR"}, "callbackData": "callbackData",
    }  # fmt: skip


def _state(store_url: str) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """Each contact's attributes, and each (campaign, contact) enrollment's status."""
    with Store.open(store_url) as store, store.session() as session:
        attributes = {c.id: dict(c.attributes or {}) for c in session.scalars(select(Contact))}
        statuses = {
            (str(name), str(contact)): str(status)
            for name, contact, status in session.execute(
                select(Campaign.name, Enrollment.contact_id, Enrollment.status)
                .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
                .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            )
        }
    return attributes, statuses


def _unsubscribes(store_url: str) -> list[tuple[str | None, str, str]]:
    with Store.open(store_url) as store, store.session() as session:
        return sorted(
            (e.contact_id, e.properties.get("channel"), e.properties.get("via"))
            for e in session.scalars(select(Event).where(Event.name == "unsubscribed"))
        )


def test_a_stop_reply_and_an_unsubscribe_link_make_unsubscribed_true(store_url: str) -> None:
    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("news")
        await engine.launch("watch")
        await engine.launch("farewell")
        await engine.run_due()
        assert len(service.standins.infobip.messages) == 3

        service.clock.advance_to(T0 + dt.timedelta(hours=1))
        stop = await client.post(
            "/webhooks/infobip", params={"token": TOKEN},
            json={"results": [_stop("+491510000001", service.clock.now())]},
        )  # fmt: skip
        assert stop.status_code == 200 and stop.json()["matched"] == 1, stop.text
        (bo_email,) = service.emails_to("bo@example.test")
        (link,) = [html.unescape(h) for h in re.findall(r'href="([^"]+/u/[^"]+)"', bo_email.html)]
        unsubscribed = await client.post(
            link, content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert unsubscribed.status_code == 200

        # The opt-outs wake what waits on them: no need to wait out the 3 days.
        service.clock.advance_to(T0 + dt.timedelta(hours=1, seconds=1))
        await engine.run_due()
        attributes, statuses = await trio.to_thread.run_sync(_state, store_url)
        assert {c: a.get("left") for c, a in attributes.items()} == {
            "ana": "unsubscribed", "bo": "unsubscribed", "cy": None,
        }  # fmt: skip
        assert {c: a.get("unsubscribed_via") for c, a in attributes.items()} == {
            "ana": "reply", "bo": "link", "cy": None,
        }  # fmt: skip
        # The goal is reached: their enrollments in `news` end, Cy's goes on.
        assert {c: statuses["news", c] for c in ("ana", "bo", "cy")} == {
            "ana": "exited", "bo": "exited", "cy": "active",
        }  # fmt: skip

        # Each is off the channel they left, on the preference page as at the gates.
        pages = {c: await engine.preferences(c) for c in ("ana", "bo", "cy")}
        assert {
            c: {
                choice.channel: choice.subscribed
                for choice in (choices or [])
                if choice.channel != "whatsapp"  # never opted in
            }
            for c, choices in pages.items()
        } == {
            "ana": {"email": True, "sms": False},
            "bo": {"email": False, "sms": True},
            "cy": {"email": True, "sms": True},
        }  # fmt: skip

        service.clock.advance_to(T0 + dt.timedelta(days=3, seconds=1))
        await engine.run_due()
        later = [e.to for e in service.standins.brevo.emails if e.subject == "Later"]
        assert later == ["cy@example.test"]
        (news,) = await engine.report(["news"])
        assert news.by_template["text"].unsubscribed == 1
        assert news.by_template["hello"].unsubscribed == 1

    trio.run(_with_service, store_url, body)
    attributes, _ = _state(store_url)
    assert attributes["cy"]["left"] == "stayed"
    assert _unsubscribes(store_url) == [("ana", "sms", "reply"), ("bo", "email", "link")]
