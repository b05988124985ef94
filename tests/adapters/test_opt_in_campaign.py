"""A double opt-in whose confirmation a campaign sends, live: SMTP out, the link back in.

The product records a pending consent over the API; the `consent_requested` campaign's
email (a template using `confirm_url`) goes through a real SMTP server on loopback carrying
the same `/optin/TOKEN` link the API hands back; the person's POST on that page confirms,
and the `consent_granted` campaign welcomes them.
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage

import httpx
import trio

from cadence.adapters.config import Secret, load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.adapters.tracking import LinkSigner, TrackingLinks
from cadence.adapters.web import ServiceApp, serve_http
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine
from tests.adapters.test_smtp import Inbox
from tests.adapters.test_web_service import SECRET, TOKEN
from tests.engine.test_runtime import T0, campaigns

AUTH = {"authorization": f"Bearer {TOKEN}"}
SOURCE = """
template confirm_signup email {
  subject "Please confirm your subscription"
  body "<p>Click to confirm: <a href=\\"{{ confirm_url }}\\">confirm</a></p><p><a href=\\"https://acme.test/about\\">About us</a></p>"
}
template welcome email { subject "Welcome aboard" body "<p>Glad you are here.</p>" }
template news email { subject "News" body "<p>News.</p>" }
campaign double_opt_in {
  from "Acme <hello@acme.test>"
  when consent_requested where event.channel == "email" { send email confirm_signup }
}
campaign greet {
  from "Acme <hello@acme.test>"
  when consent_granted where event.channel == "email" { send email welcome }
}
campaign weekly { from "Acme <hello@acme.test>"  on launch { send email news } }
"""  # noqa: E501


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_a_campaign_sends_the_confirmation_and_its_link_confirms(
    store_url: str, inbox: tuple[Inbox, int]
) -> None:
    handler, port = inbox

    def subjects() -> list[str]:
        return [str(message["Subject"]) for _, message in handler.messages]

    async def main() -> None:
        outbound = Outbound(
            load_settings(env={"CADENCE_SMTP_URL": f"smtp+plain://127.0.0.1:{port}"})
        )
        source = StoreContentSource(store_url)
        sink = AdapterSink(outbound, source)
        try:
            async with (
                trio.open_nursery() as nursery,
                Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine,
            ):
                app = ServiceApp(
                    engine, signer=LinkSigner(SECRET), api_token=Secret(TOKEN), company="Acme"
                )
                (base_url, *_) = await nursery.start(serve_http, app, "127.0.0.1:0")
                app.public_url = base_url
                sink.links = TrackingLinks(base_url, LinkSigner(SECRET))
                async with httpx.AsyncClient(base_url=base_url) as client:
                    await engine.upsert_contacts([{"id": "ana", "email": "ana@example.test"}])
                    await engine.deploy(campaigns(SOURCE))
                    for name in ("double_opt_in", "greet"):
                        await engine.launch(name)
                    asked = await client.put(
                        "/contacts/ana/consents/email", json={"status": "pending"}, headers=AUTH
                    )
                    assert asked.status_code == 200, asked.text
                    await engine.launch("weekly")  # pending: no news for Ana
                    await engine.run_due()
                    assert subjects() == ["Please confirm your subscription"]

                    # The email carries the API's link, not wrapped in a click redirect.
                    (_, confirmation) = handler.messages[0]
                    links = [
                        html.unescape(h) for h in re.findall(r'href="([^"]+)"', _html(confirmation))
                    ]
                    link = asked.json()["confirm_url"]
                    assert link.startswith(f"{base_url}/optin/") and links[0] == link
                    assert links[1].startswith(f"{base_url}/c/")  # other links are tracked
                    text = confirmation.get_body(("plain",))
                    assert text is not None and link in str(text.get_content())

                    page = await client.get(link)
                    assert page.status_code == 200 and "Confirm" in page.text
                    done = await client.post(link)
                    assert done.status_code == 200, done.text
                    assert await engine.consents("ana") == {"email": "granted"}
                    await engine.run_due()
                    assert subjects() == ["Please confirm your subscription", "Welcome aboard"]
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await outbound.aclose()
            source.close()

    trio.run(main)
