"""The dashboard in a real Chromium: the browser signs in with the token and draws the charts."""

from __future__ import annotations

import trio
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.adapters.test_dashboard import SOURCE
from tests.adapters.test_web_service import PEOPLE, TOKEN, Service, _with_service
from tests.browser.test_unsubscribe_page import _open
from tests.engine.test_runtime import campaigns


def _read(browser: webdriver.Chrome, url: str) -> tuple[list[list[str]], dict[str, float]]:
    """The campaign table's rows as shown, and the drawn width of each funnel stage's bar."""
    _open(browser, url, "Acme: campaigns")
    table = browser.find_element(By.TAG_NAME, "table")
    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    widths = {
        (rect.find_element(By.TAG_NAME, "title").get_attribute("textContent") or "").split(":")[
            0
        ]: rect.rect["width"]
        for rect in browser.find_elements(By.CSS_SELECTOR, "svg:last-of-type rect")
    }
    return rows, widths


def test_the_dashboard_signs_in_and_draws_its_charts(
    store_url: str, browser: webdriver.Chrome
) -> None:
    """Basic credentials in the address sign in; bars are drawn to scale with the table."""

    async def body(service: Service) -> None:
        await service.engine.upsert_contacts(PEOPLE)
        await service.engine.deploy(campaigns(SOURCE))
        await service.engine.launch("welcome")
        await service.engine.run_due()
        host = service.base_url.removeprefix("http://")
        rows, widths = await trio.to_thread.run_sync(
            _read, browser, f"http://ops:{TOKEN}@{host}/dashboard"
        )
        assert [row[0].splitlines() for row in rows] == [
            ["quiet", "Quiet"], ["welcome", "Welcome <b>series</b> & more"]
        ]  # fmt: skip
        assert rows[1][1] == "active" and rows[1][-1] == "2"
        # Both emails went out and none was opened: sent and delivered bars are equal, the
        # opened bar has no width.
        assert widths["sent"] > 100 and widths["delivered"] == widths["sent"]
        assert widths["opened"] == 0

    trio.run(_with_service, store_url, body)
