"""The preference page and the web version of an email, through the service on loopback.

A person's channels are theirs to switch: the page a message links to shows each channel
that reaches them and switches their own opt-outs, never a bounce, a complaint or a missing
opt-in. "View in browser" shows the email as it was sent. Links whose signature does not
match change and show nothing.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import trio
from sqlalchemy import select

from cadence.engine.store import Store
from cadence.engine.store.models import Suppression
from tests.adapters.test_web_service import Service, _events, _with_service
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template hello email {
  subject "Hello {{ contact.first_name }}"
  body "<p>News for {{ contact.first_name }}: <a href=\\"https://shop.example/new\\">new</a>.</p><p><a href=\\"{{ view_in_browser_url }}\\">View in browser</a> <a href=\\"{{ preferences_url }}\\">Preferences</a></p>"
}
template text sms { body "Hi {{ contact.first_name }}. Settings: {{ preferences_url }}" }
template later email { subject "Later" body "<p>Later.</p>" }
campaign news {
  from "Acme <hello@acme.test>"
  on launch {
    send email hello
    wait 1d
    send sms text
    send email later
  }
}
"""  # noqa: E501
ANA = {
    "id": "ana", "email": "ana@example.test", "first_name": "Ana", "phone": "+491510001234",
    "attributes": {"sms_opt_in": True},
}  # fmt: skip
BO = {
    "id": "bo", "email": "bo@example.test", "first_name": "Bo", "phone": "+491510005678",
    "attributes": {"sms_opt_in": True},
}  # fmt: skip
FORM = {"content-type": "application/x-www-form-urlencoded"}


def _anchors(email_html: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', email_html)]


def _boxes(page: str) -> dict[str, tuple[bool, bool]]:
    """Each channel's checkbox on the page: (checked, can be changed)."""
    found = {}
    for tag in re.findall(r'<input type="checkbox"[^>]*>', page):
        channel = re.search(r'value="([^"]+)"', tag)
        assert channel is not None
        found[channel.group(1)] = (" checked" in tag, " disabled" not in tag)
    return found


def _opt_outs(store_url: str) -> list[tuple[str | None, str, str]]:
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(
            select(Suppression.contact_id, Suppression.channel, Suppression.reason)
        ).all()
    return sorted((who, channel, reason) for who, channel, reason in rows)


async def _launched(service: Service, source: str = SOURCE) -> tuple[str, str]:
    """Send Ana the first email; its web-version and preference links."""
    await service.engine.upsert_contacts([ANA, BO])
    await service.engine.deploy(campaigns(source))
    await service.engine.launch("news")
    await service.engine.run_due()
    (email,) = service.emails_to("ana@example.test")
    shop, view, prefs = _anchors(email.html)
    base = service.base_url
    assert shop.startswith(f"{base}/c/")  # a reader's link is tracked ...
    assert view.startswith(f"{base}/v/") and prefs.startswith(f"{base}/p/")  # ... these not
    return view, prefs


def test_the_preference_page_switches_the_persons_own_channels(store_url: str) -> None:
    async def body(service: Service) -> None:
        client = service.client
        _, prefs = await _launched(service)
        page = await client.get(prefs)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert "a•••@example.test" in page.text and "ana@example.test" not in page.text
        assert _boxes(page.text) == {
            "email": (True, True), "sms": (True, True), "whatsapp": (False, False)
        }  # fmt: skip
        assert "you have not opted in to WhatsApp messages" in page.text
        assert await trio.to_thread.run_sync(_opt_outs, store_url) == []

        # Texts off, email stays: the next day brings the email and no text.
        saved = await client.post(prefs, content=b"channel=email&action=save", headers=FORM)
        assert saved.status_code == 200 and "Your choices are saved." in saved.text
        assert _boxes(saved.text)["sms"] == (False, True)
        assert await trio.to_thread.run_sync(_opt_outs, store_url) == [
            ("ana", "sms", "unsubscribed")
        ]
        service.clock.advance_to(T0 + dt.timedelta(days=1, seconds=1))
        await service.engine.run_due()
        assert [e.subject for e in service.emails_to("ana@example.test")] == ["Hello Ana", "Later"]
        # Bo changed nothing: his text came, with his own preference link in it.
        (text,) = service.standins.infobip.messages
        assert (
            text.to.lstrip("+") == BO["phone"].lstrip("+") and f"{service.base_url}/p/" in text.text
        )

        # Everything off, then email back on: texts stay off.
        off = await client.post(prefs, content=b"action=everything-off", headers=FORM)
        assert _boxes(off.text) == {
            "email": (False, True), "sms": (False, True), "whatsapp": (False, False)
        }  # fmt: skip
        back = await client.post(prefs, content=b"channel=email&action=save", headers=FORM)
        assert _boxes(back.text) == {
            "email": (True, True), "sms": (False, True), "whatsapp": (False, False)
        }  # fmt: skip
        # A box the page shows as fixed cannot be switched by posting it anyway.
        await client.post(prefs, content=b"channel=email&channel=whatsapp", headers=FORM)
        assert _boxes((await client.get(prefs)).text)["whatsapp"] == (False, False)

    trio.run(_with_service, store_url, body)
    assert _opt_outs(store_url) == [
        ("ana", "inbox", "unsubscribed"), ("ana", "sms", "unsubscribed"),
        ("ana", "whatsapp", "unsubscribed"),
    ]  # fmt: skip
    changes = [
        (p.get("channel"), p.get("via"), p.get("campaign"), p.get("template"))
        for name in ("unsubscribed", "resubscribed")
        for _, p in _events(store_url, name)
    ]
    assert changes == [
        ("sms", "preferences", "news", "hello"),
        ("*", "preferences", "news", "hello"),
        ("email", "preferences", "news", "hello"),
    ]


def test_a_bad_preference_link_shows_and_changes_nothing(store_url: str) -> None:
    async def body(service: Service) -> None:
        _, prefs = await _launched(service)
        key, _, signature = prefs.rpartition(".")
        forged = f"{key}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        for response in (
            await service.client.get(forged),
            await service.client.post(forged, content=b"action=everything-off", headers=FORM),
            # A signature of another kind of link (the web version's) is no preference link.
            await service.client.post(
                f"{key}.{_signature_of_view(prefs, service)}", content=b"action=everything-off",
                headers=FORM,
            ),
        ):  # fmt: skip
            assert response.status_code == 404 and "This link is not valid" in response.text

    trio.run(_with_service, store_url, body)
    assert _opt_outs(store_url) == []
    assert _events(store_url, "unsubscribed") == []


def _signature_of_view(prefs: str, service: Service) -> str:
    from cadence.adapters.tracking import LinkSigner
    from tests.adapters.test_web_service import SECRET

    key = prefs.rpartition("/")[2].rpartition(".")[0]
    return LinkSigner(SECRET).sign("view", service.engine.tenant, key)


def test_the_web_version_shows_the_email_as_it_was_sent(store_url: str) -> None:
    async def body(service: Service) -> None:
        view, prefs = await _launched(service)
        (email,) = service.emails_to("ana@example.test")
        shown = await service.client.get(view)
        assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
        assert shown.text == email.html  # the same links: the reader's clicks still count
        csp = shown.headers["content-security-policy"]
        assert "script-src 'none'" in csp and "form-action 'none'" in csp
        assert shown.headers["cache-control"] == "no-store"
        key, _, signature = view.rpartition(".")
        broken = await service.client.get(f"{key}.{signature[::-1]}")
        assert broken.status_code == 404 and "cannot be shown" in broken.text
        # Each kind of link has its own signature: one opens no other kind's page.
        assert (await service.client.get(view.replace("/v/", "/p/"))).status_code == 404
        assert (await service.client.get(prefs.replace("/p/", "/v/"))).status_code == 404

    trio.run(_with_service, store_url, body)
