"""The service's pages in a real Chromium: what a reader of an email sees and does.

The engine, the Brevo stand-in and the service run as in tests/adapters/test_web_service.py;
here a browser, not an HTTP client, follows the email's links: it renders the pages, submits
the unsubscribe form itself and follows the click redirect to a shop on loopback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.adapters.test_web_service import (
    PEOPLE,
    SOURCE,
    Service,
    _events,
    _links,
    _suppressed,
    _with_service,
)
from tests.engine.test_runtime import T0, campaigns

# Long enough for a loaded CI machine; a passing wait returns as soon as its condition holds.
TIMEOUT = 20.0
T = TypeVar("T")


def _wait(browser: webdriver.Chrome, condition: Callable[[Any], T]) -> T:
    """Wait until `condition` holds in the browser, and return what it gave."""
    return WebDriverWait(browser, TIMEOUT).until(condition)


@dataclass
class Page:
    """What a person sees: the title, the text, and the buttons' labels."""

    title: str
    text: str
    buttons: list[str]


def _page(browser: webdriver.Chrome, title: str) -> Page:
    """The page once the browser shows `title` (after a navigation or a form's submit)."""
    _wait(browser, ec.title_is(title))
    return Page(
        browser.title,
        browser.find_element(By.TAG_NAME, "main").text,
        [b.text for b in browser.find_elements(By.TAG_NAME, "button") if b.is_displayed()],
    )


def _open(browser: webdriver.Chrome, url: str, title: str) -> Page:
    """Go to `url` and read the page once it shows `title`."""
    browser.get(url)
    return _page(browser, title)


def _press(browser: webdriver.Chrome, label: str, title: str) -> Page:
    """Press the button labelled `label` (a real form submit) and read the page it leads to."""
    (button,) = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == label]
    _wait(browser, ec.element_to_be_clickable(button))
    # The page it leads to may have the same title (Save on the preference page), so the
    # title says nothing: the old document is marked, and the page is read once a loaded
    # document without the mark is there. Asking while the browser swaps documents can
    # fail in several ways (a stale node, a node "not in the document", no context): each
    # only means "not yet".
    browser.execute_script("window.cadencePressed = true;")
    button.click()
    WebDriverWait(browser, TIMEOUT, ignored_exceptions=(WebDriverException,)).until(
        lambda b: b.execute_script(
            "return document.readyState === 'complete' && !window.cadencePressed;"
        )
    )
    return _page(browser, title)


def _retarget_form(browser: webdriver.Chrome, url: str) -> None:
    """Point the page's form at another address, as an edited link would."""
    browser.execute_script("document.querySelector('form').action = arguments[0];", url)


def _tampered(link: str) -> str:
    """The link with one character in the middle of its signature changed."""
    head, _, signature = link.rpartition(".")
    at = len(signature) // 2
    other = "B" if signature[at] == "A" else "A"
    return f"{head}.{signature[:at]}{other}{signature[at + 1 :]}"


async def _send_hello(service: Service, source: str = SOURCE) -> None:
    """Launch the welcome campaign: Ana and Bo each get the "Hello" email."""
    await service.engine.upsert_contacts(PEOPLE)
    await service.engine.deploy(campaigns(source))
    await service.engine.launch("welcome")
    await service.engine.run_due()


async def _last_step(service: Service) -> None:
    """Run the campaign to its end: past the 2-day wait for a click, then the 1-day wait."""
    for after in (dt.timedelta(days=2, seconds=1), dt.timedelta(days=3, seconds=2)):
        service.clock.advance_to(T0 + after)
        await service.engine.run_due()


def _subjects(service: Service, address: str) -> list[str]:
    """The subjects of the emails sent to `address`, in order."""
    return [e.subject for e in service.emails_to(address)]


def test_a_reader_unsubscribes_with_the_pages_button(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """Opening the link only asks; the browser's POST of the form unsubscribes for good."""

    async def body(service: Service) -> None:
        await _send_hello(service)
        (bo_email,) = service.emails_to("bo@example.test")
        link = _links(bo_email.html)["unsubscribe"]

        confirm = await trio.to_thread.run_sync(_open, browser, link, "Unsubscribe")
        assert "Stop receiving these messages from Acme?" in confirm.text
        assert confirm.buttons == ["Unsubscribe"]
        assert await trio.to_thread.run_sync(_suppressed, store_url) == []

        done = await trio.to_thread.run_sync(_press, browser, "Unsubscribe", "You are unsubscribed")
        assert "Acme will not send you these messages any more." in done.text
        assert done.buttons == []
        assert await trio.to_thread.run_sync(_suppressed, store_url) == [("bo", "email")]

        await _last_step(service)
        assert _subjects(service, "ana@example.test")[-1] == "Later"
        assert _subjects(service, "bo@example.test") == ["Hello Bo"]

    trio.run(_with_service, store_url, body)
    unsubscribes = _events(store_url, "unsubscribed")
    assert [(who, p.get("channel"), p.get("via")) for who, p in unsubscribes] == [
        ("bo", "email", "link")
    ]


def test_a_tampered_link_shows_not_valid_and_writes_nothing(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """A changed signature is refused, whether the browser opens the link or posts to it."""

    async def body(service: Service) -> None:
        await _send_hello(service)
        (bo_email,) = service.emails_to("bo@example.test")
        link = _links(bo_email.html)["unsubscribe"]
        tampered = _tampered(link)
        assert tampered != link and len(tampered) == len(link)

        refused = await trio.to_thread.run_sync(_open, browser, tampered, "This link is not valid")
        assert "Nothing was done." in refused.text and "from Acme" in refused.text
        assert refused.buttons == []

        # The real page's button, its form pointed at the tampered link: the POST is refused.
        await trio.to_thread.run_sync(_open, browser, link, "Unsubscribe")
        await trio.to_thread.run_sync(_retarget_form, browser, tampered)
        posted = await trio.to_thread.run_sync(
            _press, browser, "Unsubscribe", "This link is not valid"
        )
        assert "Nothing was done." in posted.text

        await _last_step(service)
        assert _subjects(service, "bo@example.test") == ["Hello Bo", "Later"]

    trio.run(_with_service, store_url, body)
    assert _events(store_url, "unsubscribed") == []
    assert _suppressed(store_url) == []


@dataclass
class Site:
    """A webmail page showing one email, and the shop its offer links to, on loopback."""

    email_html: str = ""
    # Each request for a shop page: its path and query, and the Referer it came with.
    visits: list[tuple[str, str | None]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A minimal ASGI app: /mail is the email, anything else a shop page."""
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/mail":
            page = self.email_html
        elif scope["path"] == "/favicon.ico":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        else:
            headers = dict(scope["headers"])
            referer = headers.get(b"referer")
            query = scope["query_string"].decode()
            self.visits.append((f"{scope['path']}?{query}", referer and referer.decode()))
            page = "<!doctype html><title>Offers</title><h1>This week's offers</h1>"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})  # fmt: skip
        await send({"type": "http.response.body", "body": page.encode()})


async def _serve_site(
    site: Site, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `site` on a free loopback port until cancelled; reports its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    await serve(site, config, task_status=task_status)  # type: ignore[arg-type]


def _read_and_click(browser: webdriver.Chrome, mail_url: str, text: str) -> str:
    """Show the email, click its link reading `text`, and return where the browser lands."""
    browser.get(mail_url)
    browser.find_element(By.LINK_TEXT, text).click()
    _wait(browser, ec.title_is("Offers"))
    return str(browser.current_url)


def test_a_click_in_the_email_lands_on_the_target_and_is_recorded(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """The browser follows the signed redirect to the shop; the engine sees the click."""

    async def body(service: Service) -> None:
        site = Site()
        async with trio.open_nursery() as nursery:
            (site_url,) = await nursery.start(_serve_site, site)
            shop = f"{site_url}/offer"
            await _send_hello(service, SOURCE.replace("https://shop.example/offer", shop))
            (ana_email,) = service.emails_to("ana@example.test")
            assert _links(ana_email.html)["offer"].startswith(f"{service.base_url}/c/")
            site.email_html = ana_email.html

            landed = await trio.to_thread.run_sync(
                _read_and_click, browser, f"{site_url}/mail", "see them"
            )
            assert landed == f"{shop}?a=1&b=2"
            # The redirect's no-referrer policy: the shop is not told which send was clicked.
            assert site.visits == [("/offer?a=1&b=2", None)]
            nursery.cancel_scope.cancel()

        clicks = await trio.to_thread.run_sync(_events, store_url, "clicked")
        assert [(who, p.get("template"), p.get("url")) for who, p in clicks] == [
            ("ana", "hello", f"{shop}?a=1&b=2")
        ]
        # Showing the email loaded its pixel: the browser's open is recorded too.
        opens = await trio.to_thread.run_sync(_events, store_url, "opened")
        assert [(who, p.get("template"), p.get("via")) for who, p in opens] == [
            ("ana", "hello", "pixel")
        ]
        # The click ends Ana's wait for it: the branch sends the follow-up at once.
        service.clock.advance_to(T0 + dt.timedelta(seconds=1))
        await service.engine.run_due()
        assert _subjects(service, "ana@example.test") == ["Hello Ana", "Thanks for looking"]

    trio.run(_with_service, store_url, body)
