"""The HTTP service, served by Hypercorn on loopback beside a real engine.

An email goes out through the Brevo stand-in carrying signed links; a reader's open, click
and one-click unsubscribe come back through the service and change what the engine does
next. Providers' webhooks and the product's events arrive through the authenticated API.
Every bad request is refused with a reason and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from sqlalchemy import select

from cadence.adapters.config import Secret, load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.adapters.standins import Standins, start_standins
from cadence.adapters.tracking import LinkSigner, TrackingLinks
from cadence.adapters.web import ServiceApp, serve_http
from cadence.adapters.web.http import Request, Response
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine
from cadence.engine.store import Store
from cadence.engine.store.models import Contact, Event, Suppression
from tests.engine.test_runtime import T0, campaigns

SECRET = "test-link-secret-0123456789"
TOKEN = "test-api-token"
SOURCE = """
template hello email {
  subject "Hello {{ contact.first_name }}"
  body "<p>Offers: <a href=\\"https://shop.example/offer?a=1&amp;b=2\\">see them</a>, <a href='mailto:help@acme.test'>help</a>.</p><p><a href=\\"{{ unsubscribe_url }}\\">Unsubscribe</a></p>"
}
template followup email { subject "Thanks for looking" body "<p>More soon.</p>" }
template later email { subject "Later" body "<p>Later.</p>" }
campaign welcome {
  from "Acme <hello@acme.test>"
  channels email
  on launch {
    send email hello
    wait for clicked(hello) up to 2d
    if clicked(hello) { send email followup }
    wait 1d
    send email later
  }
}
"""  # noqa: E501
PEOPLE = [
    {"id": "ana", "email": "ana@example.test", "first_name": "Ana"},
    {"id": "bo", "email": "bo@example.test", "first_name": "Bo"},
]


@dataclass
class Service:
    """A running engine with the service in front of it, and a client for it."""

    engine: Engine
    client: httpx.AsyncClient
    standins: Standins
    base_url: str
    clock: SimulatedClock
    app: ServiceApp

    def emails_to(self, address: str) -> list[Any]:
        return [e for e in self.standins.brevo.emails if e.to == address]


async def _with_service(store_url: str, body: Callable[[Service], Awaitable[None]]) -> None:
    """Run `body` against the engine on `store_url`, its sends going to the Brevo stand-in."""
    clock = SimulatedClock(T0)
    async with trio.open_nursery() as nursery:
        standins = await start_standins(nursery)
        outbound = Outbound(load_settings(env=standins.environment()))
        source = StoreContentSource(store_url)
        sink = AdapterSink(outbound, source)
        try:
            async with Engine(store_url, clock=clock, sink=sink) as engine:
                app = ServiceApp(
                    engine, signer=LinkSigner(SECRET), api_token=Secret(TOKEN), company="Acme",
                    views=sink,
                )  # fmt: skip
                bound = await nursery.start(serve_http, app, "127.0.0.1:0")
                base_url = bound[0]
                sink.links = TrackingLinks(base_url, LinkSigner(SECRET))
                async with httpx.AsyncClient(base_url=base_url) as client:
                    await body(Service(engine, client, standins, base_url, clock, app))
        finally:
            with trio.CancelScope(shield=True):
                await outbound.aclose()
            source.close()
            nursery.cancel_scope.cancel()


def _links(email_html: str) -> dict[str, str]:
    """The pixel, the wrapped offer link, the kept mailto and the unsubscribe link of an email."""
    found = {"pixel": re.search(r'<img src="([^"]+)"', email_html)}
    anchors = [html.unescape(h) for h in re.findall(r"""href=["']([^"']+)""", email_html)]
    assert len(anchors) == 3, anchors
    return {
        "pixel": html.unescape(found["pixel"].group(1)) if found["pixel"] else "",
        "offer": anchors[0],
        "help": anchors[1],
        "unsubscribe": anchors[2],
    }


def _events(store_url: str, name: str) -> list[tuple[str | None, dict[str, Any]]]:
    with Store.open(store_url) as store, store.session() as session:
        return [
            (e.contact_id, dict(e.properties or {}))
            for e in session.scalars(select(Event).where(Event.name == name).order_by(Event.id))
        ]


async def _welcome_sent(engine: Engine) -> None:
    """Ana and Bo in the store, the welcome campaign launched and its first emails sent."""
    await engine.upsert_contacts(PEOPLE)
    await engine.deploy(campaigns(SOURCE))
    await engine.launch("welcome")
    await engine.run_due()


def test_links_in_an_email_track_opens_and_clicks_and_unsubscribe(store_url: str) -> None:
    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await _welcome_sent(engine)
        (ana_email,) = service.emails_to("ana@example.test")
        (bo_email,) = service.emails_to("bo@example.test")
        ana, bo = _links(ana_email.html), _links(bo_email.html)
        base = service.base_url
        assert ana["pixel"].startswith(f"{base}/o/") and ana["pixel"].endswith(".gif")
        assert ana["offer"].startswith(f"{base}/c/")
        assert ana["help"] == "mailto:help@acme.test"  # only web links are wrapped
        assert ana["unsubscribe"].startswith(f"{base}/u/")
        # The plain-text part's copy of the offer link is tracked too; the unsubscribe not.
        assert f"see them ({ana['offer']})" in str(ana_email.text)
        assert ana["unsubscribe"] in str(ana_email.text)
        assert ana["unsubscribe"] != bo["unsubscribe"]  # each send its own
        # The header mail clients use for their own unsubscribe button is the same link.
        assert ana["unsubscribe"] in str(ana_email.headers.get("List-Unsubscribe"))

        opened = await client.get(ana["pixel"])
        assert opened.status_code == 200
        assert opened.headers["content-type"] == "image/gif"
        assert opened.content.startswith(b"GIF89a")

        clicked = await client.get(ana["offer"])
        assert clicked.status_code == 302
        assert clicked.headers["location"] == "https://shop.example/offer?a=1&b=2"

        # A target swapped into a signed link is not followed, and nothing is recorded.
        forged = ana["offer"].split("?u=")[0] + "?u=https%3A%2F%2Fevil.example%2F"
        refused = await client.get(forged)
        assert refused.status_code == 404 and "location" not in refused.headers
        assert (
            await client.get(f"{base}/o/{'0' * 40}.AAAAAAAAAAAAAAAAAAAAAA.gif")
        ).status_code == 404

        # Ana clicked: the wait for the click ends at once and the branch sends the follow-up.
        service.clock.advance_to(T0 + dt.timedelta(seconds=1))
        await engine.run_due()
        assert [e.subject for e in service.emails_to("ana@example.test")] == [
            "Hello Ana", "Thanks for looking"
        ]  # fmt: skip

        # Bo's unsubscribe link: looking at the page changes nothing, the button does.
        page = await client.get(bo["unsubscribe"])
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert await trio.to_thread.run_sync(_suppressed, store_url) == []
        one_click = await client.post(
            bo["unsubscribe"], content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert one_click.status_code == 200 and "unsubscribed" in one_click.text
        service.clock.advance_to(T0 + dt.timedelta(days=3, seconds=1))
        await engine.run_due()
        # Ana gets the last email; Bo, unsubscribed, does not.
        assert [e.subject for e in service.emails_to("ana@example.test")][-1] == "Later"
        assert [e.subject for e in service.emails_to("bo@example.test")] == ["Hello Bo"]

    trio.run(_with_service, store_url, body)
    opens = _events(store_url, "opened")
    assert [(who, p.get("template"), p.get("via")) for who, p in opens] == [
        ("ana", "hello", "pixel")
    ]
    clicks = _events(store_url, "clicked")
    assert [(who, p.get("template"), p.get("url")) for who, p in clicks] == [
        ("ana", "hello", "https://shop.example/offer?a=1&b=2")
    ]
    unsubscribes = _events(store_url, "unsubscribed")
    assert [(who, p.get("channel")) for who, p in unsubscribes] == [("bo", "email")]
    assert _suppressed(store_url) == [("bo", "email")]


def test_an_unsubscribe_pressed_again_is_stored_once(store_url: str) -> None:
    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await _welcome_sent(engine)
        (bo_email,) = service.emails_to("bo@example.test")
        unsubscribe = _links(bo_email.html)["unsubscribe"]
        one_click = {"content-type": "application/x-www-form-urlencoded"}
        # The mail client's one-click, then the page's button, then a double submit.
        for _ in range(3):
            pressed = await client.post(
                unsubscribe, content=b"List-Unsubscribe=One-Click", headers=one_click
            )
            assert pressed.status_code == 200 and "unsubscribed" in pressed.text
        assert [p["channel"] for _, p in _events(store_url, "unsubscribed")] == ["email"]
        # Back on from the preference page, the same link unsubscribes again: once more.
        key = unsubscribe.rsplit("/", 1)[1].split(".")[0]
        links = TrackingLinks(service.base_url, LinkSigner(SECRET))
        preference_page = links.url("preferences", engine.tenant, key)
        saved = await client.post(preference_page, content=b"channel=email", headers=one_click)
        assert saved.status_code == 200
        assert _suppressed(store_url) == []
        for _ in range(2):
            await client.post(unsubscribe, content=b"List-Unsubscribe=One-Click", headers=one_click)
        assert len(_events(store_url, "unsubscribed")) == 2
        assert len(_events(store_url, "resubscribed")) == 1
        assert _suppressed(store_url) == [("bo", "email")]

    trio.run(_with_service, store_url, body)


def _suppressed(store_url: str) -> list[tuple[str | None, str]]:
    with Store.open(store_url) as store, store.session() as session:
        return [(s.contact_id, s.channel) for s in session.scalars(select(Suppression))]


def test_an_event_sent_again_with_its_id_is_not_counted_as_stored(store_url: str) -> None:
    """A backend retrying `POST /events` with the same `id` was told `stored: 1` again,
    though nothing was stored (`cadence events push` says "1 already present")."""

    async def body(service: Service) -> None:
        await service.engine.upsert_contacts(PEOPLE)
        auth = {"authorization": f"Bearer {TOKEN}"}
        event = {"contact": "ana", "name": "signed_up", "at": T0.isoformat(), "id": "e-1"}
        first = await service.client.post("/events", json=event, headers=auth)
        assert first.status_code == 202 and first.json()["stored"] == 1
        again = await service.client.post(
            "/events", json=[event, event | {"id": "e-2"}], headers=auth
        )
        assert again.status_code == 202
        assert (again.json()["stored"], again.json()["duplicates"]) == (1, 1)
        assert len(_events(store_url, "signed_up")) == 2

    trio.run(_with_service, store_url, body)


def test_contacts_are_created_and_updated_through_the_api(store_url: str) -> None:
    async def body(service: Service) -> None:
        client, auth = service.client, {"authorization": f"Bearer {TOKEN}"}
        assert (await client.post("/contacts", json=PEOPLE)).status_code == 401
        created = await client.post("/contacts", json=PEOPLE, headers=auth)
        assert created.status_code == 200 and created.json() == {"created": 2, "updated": 0}
        lines = json.dumps({"id": "ana", "first_name": "Ana María", "plan": "gold"}) + "\n"
        updated = await client.post(
            "/contacts", content=lines.encode(),
            headers={**auth, "content-type": "application/x-ndjson"},
        )  # fmt: skip
        assert updated.status_code == 200 and updated.json() == {"created": 0, "updated": 1}
        # One bad contact in a list: nothing of the list is written, and the problem is named.
        bad = [{"id": "cy", "email": "cy@example.test"}, {"email": "nobody@example.test"}]
        refused = await client.post("/contacts", json=bad, headers=auth)
        assert refused.status_code == 400, refused.text
        problems = refused.json()["problems"]
        assert problems and all(p["contact"] == 2 for p in problems), problems
        empty = await client.post("/contacts", json=[], headers=auth)
        assert empty.status_code == 400 and "no contacts in the body" in empty.text
        assert sorted(await service.engine.contact_ids()) == ["ana", "bo"]
        with Store.open(store_url) as store, store.session() as session:
            ana = session.scalars(select(Contact).where(Contact.id == "ana")).one()
            assert (ana.first_name, ana.email) == ("Ana María", "ana@example.test")
            assert ana.attributes == {"plan": "gold"}

    trio.run(_with_service, store_url, body)


def test_the_api_needs_the_token_and_refuses_bad_bodies_whole(store_url: str) -> None:
    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        await engine.upsert_contacts(PEOPLE)
        event = {"contact": "ana", "name": "signed_up", "at": T0.isoformat()}
        assert (await client.post("/events", json=event)).status_code == 401
        wrong = await client.post("/events", json=event, headers={"authorization": "Bearer no"})
        assert wrong.status_code == 401
        auth = {"authorization": f"Bearer {TOKEN}"}
        stored = await client.post("/events", json=event, headers=auth)
        assert stored.status_code == 202 and stored.json()["stored"] == 1
        lines = "\n".join(json.dumps({**event, "name": n}) for n in ("a", "b")) + "\n"
        jsonl = await client.post(
            f"/events?token={TOKEN}", content=lines,
            headers={"content-type": "application/x-ndjson"},
        )  # fmt: skip
        assert jsonl.status_code == 202 and jsonl.json()["stored"] == 2
        # One bad event in a list: nothing of the list is written, and the problem is named.
        bad = [event | {"name": "kept_out"}, {"contact": "ana", "at": "yesterday"}]
        refused = await client.post("/events", json=bad, headers=auth)
        assert refused.status_code == 400
        problems = refused.json()["problems"]
        assert problems and all(p["event"] == 2 for p in problems), problems
        assert (await client.post("/events", content=b"{not json", headers=auth)).status_code == 400
        # JSON nested past the decoder's stack is the body's fault: 400, not 500.
        deep = b"[" * 100_000 + b"]" * 100_000
        for path in ("/events", "/webhooks/brevo", "/webhooks/infobip"):
            nested = await client.post(path, content=deep, headers=auth)
            assert nested.status_code == 400 and "nested too deeply" in nested.text, path
        nested_line = await client.post(
            "/events",
            content=b"{}\n" + deep,
            headers={**auth, "content-type": "application/x-ndjson"},
        )
        assert nested_line.status_code == 400 and "line 2" in nested_line.text
        # NaN is no JSON: stored as invalid JSON on SQLite, a 500 on PostgreSQL before.
        for constant in ("NaN", "Infinity", "-Infinity"):
            text = '{"contact": "ana", "name": "odd", "properties": {"v": VALUE}}'
            text = text.replace("VALUE", constant)
            odd = await client.post("/events", content=text.encode(), headers=auth)
            assert odd.status_code == 400 and f"{constant} is not a number" in odd.text, odd.text
        # Basic auth, as a provider's webhook URL with credentials sends it.
        webhook = await client.post(
            "/webhooks/brevo", auth=("cadence", TOKEN),
            json={"event": "delivered", "email": "ana@example.test", "message-id": "<nope@x>",
                  "ts_event": 1764576000},
        )  # fmt: skip
        assert webhook.status_code == 200, webhook.text
        assert webhook.json()["unmatched"], webhook.json()  # no such send: listed, not guessed
        malformed = await client.post("/webhooks/infobip", json={"results": "x"}, headers=auth)
        assert malformed.status_code == 400 and malformed.json()["problems"]
        assert (await client.post("/webhooks/mailgun", json={}, headers=auth)).status_code == 404
        assert (await client.get("/events", headers=auth)).status_code == 405
        assert (await client.get("/healthz")).json()["status"] == "ok"

    trio.run(_with_service, store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        assert sorted(session.scalars(select(Event.name))) == ["a", "b", "signed_up"]


def test_json_lines_are_read_as_utf_8_bytes_line_by_line(store_url: str) -> None:
    """JSON lines were decoded with errors replaced, so a Latin-1 byte was stored as U+FFFD
    (a JSON body with it is refused), and split as text, so a U+2028 inside a string cut
    its line in two and the event was refused as broken JSON."""

    async def main() -> list[Response]:
        async with Engine(store_url, clock=SimulatedClock(T0)) as engine:
            await engine.upsert_contacts(PEOPLE)
            app = ServiceApp(engine, api_token=Secret(TOKEN))
            headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/x-ndjson"}
            posts = [
                ("/events", b'{"contact": "ana", "name": "x", "properties": {"v": "ok"}}\n'
                            b'{"contact": "ana", "name": "x", "properties": {"v": "caf\xe9"}}\n'),
                ("/contacts", b'{"id": "cy"}\n{"id": "cy2", "first_name": "Ren\xe9"}\n'),
                ("/events", '{"contact": "ana", "name": "sep", "properties": {"v": "a\u2028b"}}'
                            "\r\n".encode()),
            ]  # fmt: skip
            return [await app.handle(Request("POST", p, {}, headers, b)) for p, b in posts]

    latin_event, latin_contact, separator = trio.run(main)
    assert (latin_event.status, latin_contact.status, separator.status) == (400, 400, 202)
    assert "line 2: the body is not UTF-8" in latin_event.body.decode()
    assert "line 2: the body is not UTF-8" in latin_contact.body.decode()
    assert _events(store_url, "x") == []
    with Store.open(store_url) as store, store.session() as session:
        assert sorted(session.scalars(select(Contact.id))) == ["ana", "bo"]
    assert [properties["v"] for _, properties in _events(store_url, "sep")] == ["a\u2028b"]


def test_an_unknown_senders_email_is_taken_and_a_bad_time_is_400(
    store_url: str,
) -> None:
    """Brevo's inbound parsing (`{"items": [...]}`) of an email from nobody the tenant knows
    is answered 200 with it listed as unmatched, so Brevo does not redeliver it; an Infobip
    time that leaves the calendar is a 400 naming it, not a 500. Neither writes anything."""

    async def body(service: Service) -> None:
        auth = {"authorization": f"Bearer {TOKEN}"}
        reply = {"Uuid": ["5b2e0a44-1f0c-4d8e-b1a7-3c9e2d7f6a10"],
                 "From": {"Name": "Ana", "Address": "ana@example.test"},
                 "Subject": "Re: Hello Ana", "RawTextBody": "Thursday works."}  # fmt: skip
        taken = await service.client.post("/webhooks/brevo", json={"items": [reply]}, headers=auth)
        assert taken.status_code == 200, taken.text
        assert taken.json()["unmatched"][0]["position"] == "items[0]", taken.json()
        assert "no contact with address ana@example.test" in taken.text
        entry = {"messageId": "2c5f9d10-8a4e-4b7b-a0e1-6f2d3c4b5a69", "to": "491510000001",
                 "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5,
                            "name": "DELIVERED_TO_HANDSET"},
                 "doneAt": "0001-01-01T00:10:00.000+0200"}  # fmt: skip
        refused = await service.client.post(
            "/webhooks/infobip", json={"results": [entry]}, headers=auth
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["problems"][0]["path"] == "results[0].doneAt"

    trio.run(_with_service, store_url, body)
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(Event.name)).all() == []


def test_the_inbox_api_lists_and_marks_a_contacts_messages(store_url: str) -> None:
    source = """
    template note inbox "Your report is ready, {{ contact.first_name }}."
    campaign reports { channels inbox  on launch { send inbox note } }
    """

    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        service_outbound = Outbound(load_settings(env={}), inbox_url=store_url)
        engine.sink = AdapterSink(service_outbound, StoreContentSource(store_url))
        try:
            await engine.upsert_contacts(PEOPLE)
            await engine.deploy(campaigns(source))
            await engine.launch("reports")
            await engine.run_due()
        finally:
            await service_outbound.aclose()
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/contacts/ana/inbox")).status_code == 401
        listed = (await client.get("/contacts/ana/inbox", headers=auth)).json()
        (message,) = listed["messages"]
        assert message["text"] == "Your report is ready, Ana." and message["read_at"] is None
        marked = await client.post(
            "/contacts/ana/inbox/read", json={"ids": [message["id"]]}, headers=auth
        )
        assert marked.json()["marked"] == 1
        unread = await client.get("/contacts/ana/inbox?unread=1", headers=auth)
        assert unread.json()["messages"] == []
        assert (
            await client.post("/contacts/ana/inbox/read", json={"ids": "1"}, headers=auth)
        ).status_code == 400
        assert (await client.get("/contacts/ana/inbox?limit=x", headers=auth)).status_code == 400

    trio.run(_with_service, store_url, body)


def test_without_a_token_or_secret_the_service_says_what_is_off(store_url: str) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery, Engine(store_url) as engine:
            bound = await nursery.start(serve_http, ServiceApp(engine), "127.0.0.1:0")
            links = TrackingLinks(bound[0], LinkSigner(SECRET))
            async with httpx.AsyncClient(base_url=bound[0]) as client:
                off = await client.post("/events", json={}, headers={"authorization": "Bearer x"})
                assert off.status_code == 403 and "CADENCE_API_TOKEN" in off.json()["error"]
                # No secret: no link is taken, however it is signed.
                signed = links.url("click", engine.tenant, "0" * 40, "https://a.example/")
                assert (await client.get(signed)).status_code == 404
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_signed_link_to_a_send_the_store_lacks_writes_nothing(store_url: str) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery, Engine(store_url) as engine:
            app = ServiceApp(engine, signer=LinkSigner(SECRET))
            bound = await nursery.start(serve_http, app, "127.0.0.1:0")
            links = TrackingLinks(bound[0], LinkSigner(SECRET))
            gone = "0" * 40
            async with httpx.AsyncClient(base_url=bound[0]) as client:
                unsubscribe = await client.post(links.url("unsubscribe", engine.tenant, gone))
                assert unsubscribe.status_code == 404 and "not valid" in unsubscribe.text
                # Its page says so at once, rather than offer a button that can only fail.
                page = await client.get(links.url("unsubscribe", engine.tenant, gone))
                assert page.status_code == 404 and "not valid" in page.text
                opened = await client.get(links.url("open", engine.tenant, gone))
                assert opened.status_code == 404
                # The reader still reaches the page the service signed.
                click = await client.get(
                    links.url("click", engine.tenant, gone, "https://a.example/")
                )
                assert click.status_code == 302
                assert click.headers["location"] == "https://a.example/"
                # Another tenant's link does not pass here.
                other = await client.get(links.url("click", "other", gone, "https://a.example/"))
                assert other.status_code == 404
            nursery.cancel_scope.cancel()

    trio.run(main)
    with Store.open(store_url) as store, store.session() as session:
        assert session.scalars(select(Event)).all() == []
        assert session.scalars(select(Suppression)).all() == []


@pytest.mark.parametrize(
    "env, problem",
    [
        ({"CADENCE_PUBLIC_URL": "links.acme.test"}, "expected http(s)://host"),
        ({"CADENCE_PUBLIC_URL": "https://links.acme.test"}, "CADENCE_LINK_SECRET is not"),
        ({"CADENCE_LINK_SECRET": "short"}, "at least 16"),
        ({"CADENCE_TRACKING": "sometimes"}, "CADENCE_TRACKING"),
    ],
)
def test_service_settings_name_what_is_wrong(env: dict[str, str], problem: str) -> None:
    from cadence.adapters.config import ConfigError
    from cadence.adapters.web import ServiceSettings

    with pytest.raises(ConfigError, match=re.escape(problem)):
        ServiceSettings.from_env(env)


def test_tracking_settings_choose_which_links_messages_carry() -> None:
    from cadence.adapters.web import ServiceSettings

    env = {"CADENCE_PUBLIC_URL": "https://links.acme.test/", "CADENCE_LINK_SECRET": SECRET}
    on = ServiceSettings.from_env(env).links()
    clicks_only = ServiceSettings.from_env({**env, "CADENCE_TRACKING": "clicks"}).links()
    assert on is not None and clicks_only is not None
    assert (on.track_opens, on.track_clicks) == (True, True)
    assert (clicks_only.track_opens, clicks_only.track_clicks) == (False, True)
    assert on.base_url == "https://links.acme.test"
    assert ServiceSettings.from_env({}).links() is None
    url = on.url("click", "default", "k" * 40, "https://x.example/?q=1&r=2")
    query = parse_qs(urlsplit(url).query)
    assert query["u"] == ["https://x.example/?q=1&r=2"]
