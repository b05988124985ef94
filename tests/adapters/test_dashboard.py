"""The dashboard and its JSON, through the service on loopback beside a real engine.

What `cadence status` and `cadence report` say, on a page behind the API token: each
campaign's state and enrollments, its sends and what came of them, A/B verdicts, and
charts, with everything a campaign's author wrote escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from collections.abc import Sequence

import pytest
import trio

from cadence.adapters.web.dashboard import _tiles
from cadence.engine.analytics import CampaignReport, Metrics
from tests.adapters.test_web_service import PEOPLE, TOKEN, Service, _with_service
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template hello email {
  subject "Hello {{ contact.first_name }}"
  body "<p><a href=\\"https://shop.example/offer\\">see them</a></p>"
}
template later email { subject "Later" body "<p>Later.</p>" }
campaign welcome "Welcome <b>series</b> & more" {
  from "Acme <hello@acme.test>"
  channels email
  on launch {
    send email hello
    wait 1d
    send email later
  }
}
campaign quiet { on launch { send email later } }
"""
BASIC = "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()


def _cells(page: str, row_start: str) -> list[str]:
    """The text of the cells of the first table row starting with `row_start`."""
    for row in re.findall(r"<tr>(.*?)</tr>", page):
        cells = [
            re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)
        ]
        texts = [" ".join(c) for c in cells]
        if texts and texts[0].startswith(row_start):
            return texts
    raise AssertionError(f"no row for {row_start!r}")


async def _welcome_sent(service: Service) -> str:
    """Ana and Bo enrolled in `welcome`, its first email sent: the open pixel of Ana's."""
    await service.engine.upsert_contacts(PEOPLE)
    await service.engine.deploy(campaigns(SOURCE))
    await service.engine.launch("welcome")
    await service.engine.run_due()
    (ana_email,) = service.emails_to("ana@example.test")
    (pixel,) = re.findall(r'<img src="([^"]+)"', ana_email.html)
    return html.unescape(pixel)


def test_the_dashboard_shows_campaigns_and_their_performance(store_url: str) -> None:
    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        pixel = await _welcome_sent(service)
        assert (await client.get(pixel)).status_code == 200  # Ana opens it

        asked = await client.get("/dashboard")
        assert asked.status_code == 401
        assert asked.headers["www-authenticate"].startswith("Basic realm=")
        assert (
            await client.get("/dashboard", headers={"authorization": "Basic b3BzOm5v"})
        ).status_code == 401

        shown = await client.get("/dashboard", headers={"authorization": BASIC})
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        assert "script-src 'none'" in shown.headers["content-security-policy"]
        page = shown.text
        # The author's display name is text, not markup.
        assert "Welcome &lt;b&gt;series&lt;/b&gt; &amp; more" in page and "<b>series" not in page
        status = _cells(page, "welcome")
        assert status[0] == "welcome Welcome &lt;b&gt;series&lt;/b&gt; &amp; more"
        assert status[1] == "active" and status[4:] == ["2", "0", "0", "0", "2"]
        assert _cells(page, "quiet")[1] == "draft"
        (performance,) = re.findall(r"<h2>Performance</h2>(.*?)</table>", page, re.S)
        assert _cells(performance, "welcome")[1:4] == ["2", "2 (100.0%)", "1 (50.0%)"]
        assert page.count("<svg") == 2 and "opened: 1 (50.0%)" in page
        (messages,) = re.findall(r"<h2>By message</h2>(.*?)</table>", page, re.S)
        assert _cells(messages, "welcome")[1:5] == ["hello", "2", "2 (100.0%)", "1 (50.0%)"]

        listed = await client.get("/campaigns", params={"token": TOKEN})
        assert listed.status_code == 200
        by_name = {c["name"]: c for c in listed.json()["campaigns"]}
        assert by_name["welcome"]["enrollments"] == {"active": 2}
        assert by_name["welcome"]["performance"]["opened"] == 1
        assert by_name["quiet"]["performance"]["sent"] == 0

        # A day on, the second email has gone: the page counts it.
        service.clock.advance_to(T0 + dt.timedelta(days=1, seconds=1))
        await engine.run_due()
        later = (await client.get("/dashboard", headers={"authorization": BASIC})).text
        assert _cells(later, "welcome")[-1] == "4"
        (messages,) = re.findall(r"<h2>By message</h2>(.*?)</table>", later, re.S)
        assert [
            re.sub(r"<[^>]+>", "", m)
            for m in re.findall(r"<td class=\"text\">(.*?)</td>", messages)
        ] == ["hello", "later"]

    trio.run(_with_service, store_url, body)


def test_the_dashboard_tiles_read_rates_as_the_tables_do() -> None:
    """The tiles' open and click rates are the tables' (`rate_text`), not a second rounding."""
    report = CampaignReport("promo", "active", Metrics(sent=50_000, delivered=50_000, opened=2,
                                                       clicked=49_999))  # fmt: skip
    tiles = _tiles([{"status": "active", "enrollments": {}}], [report])
    assert "<b>&lt;0.01%</b>opened" in tiles
    assert "<b>&gt;99.9%</b>clicked" in tiles


def test_the_campaign_table_shows_cancelled_enrollments_only_when_there_are_some() -> None:
    """After `cancel` every other count of the campaign reads 0: the page said nothing of
    the journeys it stopped."""
    from cadence.adapters.web.dashboard import dashboard

    def page(counts: dict[str, int]) -> str:
        row = {
            "name": "slow", "status": "cancelled", "version": "abc", "approval": "not needed",
            "enrollments": counts, "sends": 0, "ab_tests": [], "pause": None,
        }  # fmt: skip
        return dashboard("Acme", T0, [row], [])

    assert "<th>cancelled</th>" not in page({"active": 2})
    cancelled = page({"cancelled": 2})
    heads = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", cancelled)]
    cells = _cells(cancelled, "slow")
    assert dict(zip(heads, cells, strict=False))["cancelled"] == "2"
    assert "2 cancelled" in cancelled  # the chart's bar says what it is


def test_the_a_b_table_says_its_rates_are_of_the_delivered_sends() -> None:
    """The verdict rates engaged over delivered; the heading said engaged/sent beside it."""
    from cadence.adapters.web.dashboard import dashboard
    from cadence.engine.abtest import ab_verdict

    test = {
        **ab_verdict({"a": (30, 9), "b": (15, 6)}, sent={"a": 30, "b": 30}).as_details(),
        "node": "ab_split_1",
    }
    row = {
        "name": "offer", "status": "active", "version": "abc", "approval": "not needed",
        "enrollments": {"active": 60}, "sends": 60, "ab_tests": [test], "pause": None,
    }  # fmt: skip
    page = dashboard("Acme", T0, [row], [])
    heads = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", page)]
    assert "rates (95% interval, engaged/delivered)" in heads
    assert "engaged/sent" not in page
    assert re.search(r"b 40\.0% \[[0-9.]+%-[0-9.]+%\] 6/15", page)


def test_loads_during_a_reading_share_the_next_one_which_shows_what_came_before(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tabs that load the page while it is being read wait and share one reading that starts
    after they asked: what was written in between is on their page."""

    async def body(service: Service) -> None:
        engine, client = service.engine, service.client
        pixel = await _welcome_sent(service)
        report = engine.report
        readings: list[None] = []
        read, held = trio.Event(), trio.Event()

        async def slow_report(names: Sequence[str] | None = None) -> list[CampaignReport]:
            readings.append(None)
            found = await report(names)
            if len(readings) == 1:  # the first reading takes long, after it read the store
                read.set()
                await held.wait()
            return found

        monkeypatch.setattr(engine, "report", slow_report)
        pages: dict[str, str] = {}

        async def load(tab: str) -> None:
            shown = await client.get("/dashboard", headers={"authorization": BASIC})
            assert shown.status_code == 200
            pages[tab] = shown.text

        async with trio.open_nursery() as nursery:
            nursery.start_soon(load, "first")
            await read.wait()
            assert (await client.get(pixel)).status_code == 200  # Ana opens it
            nursery.start_soon(load, "second")
            nursery.start_soon(load, "third")
            with trio.fail_after(10):
                while service.app.dashboard_reads.waiting < 2:
                    await trio.sleep(0.01)
            held.set()
        assert len(readings) == 2

        def opened(page: str) -> str:
            (performance,) = re.findall(r"<h2>Performance</h2>(.*?)</table>", page, re.S)
            return _cells(performance, "welcome")[3]

        assert opened(pages["first"]) == "0 (0.0%)"
        assert opened(pages["second"]) == opened(pages["third"]) == "1 (50.0%)"

    trio.run(_with_service, store_url, body)
