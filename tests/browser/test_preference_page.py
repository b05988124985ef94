"""The preference page and an email's web version in a real Chromium.

A reader ticks and unticks their channels and presses the page's buttons; what the browser
submits is what the engine stores. The web version shows the email as sent, and the policy
it is served under keeps a script in the sender's HTML from running.
"""

from __future__ import annotations

import datetime as dt
import re

import trio
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.adapters.test_preference_pages import ANA, SOURCE, _launched, _opt_outs
from tests.adapters.test_web_service import Service, _events, _with_service
from tests.browser.test_unsubscribe_page import _open, _press, _wait
from tests.engine.test_runtime import T0

PREFERENCES = "Your preferences"


def _boxes(browser: webdriver.Chrome) -> dict[str, tuple[bool, bool]]:
    """Each channel's checkbox as the browser shows it: (ticked, can be changed)."""
    return {
        box.get_attribute("value") or "": (box.is_selected(), box.is_enabled())
        for box in browser.find_elements(By.CSS_SELECTOR, 'input[type="checkbox"]')
    }


def _toggle(browser: webdriver.Chrome, channel: str) -> None:
    """Click a channel's checkbox, as a reader would."""
    browser.find_element(By.CSS_SELECTOR, f'input[value="{channel}"]').click()


def test_a_reader_switches_their_channels_on_the_page(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """Unticking SMS and saving stops the texts; after "Unsubscribe from all", email comes back."""

    async def body(service: Service) -> None:
        _, prefs = await _launched(service)
        run = trio.to_thread.run_sync

        page = await run(_open, browser, prefs, PREFERENCES)
        assert "Choose how Acme may send you messages." in page.text
        assert "a•••@example.test" in page.text
        assert "you have not opted in to WhatsApp messages" in page.text
        assert page.buttons == ["Save", "Unsubscribe from all"]
        assert await run(_boxes, browser) == {
            "email": (True, True), "sms": (True, True), "whatsapp": (False, False)
        }  # fmt: skip

        await run(_toggle, browser, "sms")
        saved = await run(_press, browser, "Save", PREFERENCES)
        assert "Your choices are saved." in saved.text
        assert (await run(_boxes, browser))["sms"] == (False, True)
        assert await run(_opt_outs, store_url) == [("ana", "sms", "unsubscribed")]
        service.clock.advance_to(T0 + dt.timedelta(days=1, seconds=1))
        await service.engine.run_due()
        assert [m.to.lstrip("+") for m in service.standins.infobip.messages] == ["491510005678"]

        await run(_press, browser, "Unsubscribe from all", PREFERENCES)
        assert await run(_boxes, browser) == {
            "email": (False, True), "sms": (False, True), "whatsapp": (False, False)
        }  # fmt: skip
        await run(_toggle, browser, "email")
        await run(_press, browser, "Save", PREFERENCES)
        assert await run(_boxes, browser) == {
            "email": (True, True), "sms": (False, True), "whatsapp": (False, False)
        }  # fmt: skip

    trio.run(_with_service, store_url, body)
    assert _opt_outs(store_url) == [
        ("ana", "inbox", "unsubscribed"), ("ana", "sms", "unsubscribed"),
        ("ana", "whatsapp", "unsubscribed"),
    ]  # fmt: skip


def _shown(browser: webdriver.Chrome, url: str) -> tuple[str, str]:
    """Open a web version; its title (a script would change it) and its text."""
    browser.get(url)
    _wait(browser, ec.presence_of_element_located((By.TAG_NAME, "p")))
    return browser.title, browser.find_element(By.TAG_NAME, "body").text


def test_the_web_version_shows_the_email_and_runs_no_script(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """The sender's HTML shows as sent; a script in it does not run; reading it is an open."""
    scripted = SOURCE.replace(
        "<p>News for", "<script>document.title = 'script ran'</script><p>News for"
    )
    assert scripted != SOURCE

    async def body(service: Service) -> None:
        view, _ = await _launched(service, scripted)
        title, text = await trio.to_thread.run_sync(_shown, browser, view)
        assert "News for Ana: new." in text and "View in browser" in text
        assert title != "script ran"

    trio.run(_with_service, store_url, body)
    opens = _events(store_url, "opened")
    assert [(who, p.get("template"), p.get("via")) for who, p in opens] == [
        ("ana", "hello", "pixel")
    ]


def _follow(browser: webdriver.Chrome, unsubscribe: str, text: str) -> str:
    """Open the unsubscribe page, follow its link reading `text`; the page's title."""
    _open(browser, unsubscribe, "Unsubscribe")
    browser.find_element(By.LINK_TEXT, text).click()
    _wait(browser, ec.title_is(PREFERENCES))
    return str(browser.current_url)


def test_the_unsubscribe_page_offers_the_preference_page(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """Someone who wants fewer messages, not none, gets from one page to the other."""

    async def body(service: Service) -> None:
        _, prefs = await _launched(service)
        (email,) = service.emails_to("ana@example.test")
        header = str(email.headers.get("List-Unsubscribe"))
        (unsubscribe,) = re.findall(r"<(http[^>]+)>", header)
        landed = await trio.to_thread.run_sync(
            _follow, browser, unsubscribe, "choose which messages you get"
        )
        assert landed == prefs
        assert await trio.to_thread.run_sync(_opt_outs, store_url) == []

    trio.run(_with_service, store_url, body)


def test_a_double_opt_in_is_confirmed_with_the_pages_button(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """Opening the confirmation link only asks; the browser's POST of the form confirms."""

    async def body(service: Service) -> None:
        await service.engine.upsert_contacts([ANA])
        asked = await service.engine.set_consent("ana", "email", "pending")
        link = f"{service.base_url}/optin/{asked.token}"
        page = await trio.to_thread.run_sync(_open, browser, link, "Confirm your subscription")
        assert "Confirm that you want emails from Acme." in page.text
        assert await service.engine.consents("ana") == {"email": "pending"}
        done = await trio.to_thread.run_sync(_press, browser, "Confirm", "You are subscribed")
        assert "Acme may now send you emails." in done.text
        assert await service.engine.consents("ana") == {"email": "granted"}

    trio.run(_with_service, store_url, body)
