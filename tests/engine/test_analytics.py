"""Campaign performance: each count and rate as docs/analytics.md defines it, worked by hand.

Ten contacts get one offer email (cost 0.01 USD each). What comes back: a hard bounce, a
soft one, opens (one contact twice, one of another campaign's template), a click naming
its send, an unsubscribe, and conversions (two credited, one outside the attribution
window, one credited to a later send of another campaign).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.engine.analytics import CampaignReport, Metrics
from cadence.engine.clock import SimulatedClock
from cadence.engine.describe import count_text, money_text
from cadence.engine.runtime import Engine, EngineError, RecordingSink
from tests.engine.cadence_cli import run_cadence
from tests.engine.test_runtime import T0, campaigns
from tests.engine.test_send_gates import PRIORITIES
from tests.engine.webhook_payloads import ProviderSink, brevo_event

SOURCE = """
template offer email { subject "Offer" body "x" }
template other email { subject "Other" body "x" }
campaign promo {
  cost email 0.01 USD
  on launch { send email offer }
}
campaign later {
  audience contact.id == "c6"
  on launch { send email other }
}
"""
PEOPLE = [{"id": f"c{i}", "email": f"c{i}@example.test"} for i in range(10)]


def _at(hours: float) -> str:
    return (T0 + dt.timedelta(hours=hours)).isoformat()


def _event(contact: str, name: str, hours: float, **properties: Any) -> dict[str, Any]:
    return {"contact": contact, "name": name, "at": _at(hours), "properties": properties}


async def _scenario(store_url: str) -> list[CampaignReport]:
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    async with Engine(store_url, clock=clock, sink=sink) as engine:
        await engine.upsert_contacts(PEOPLE)
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("promo")
        await engine.run_due()
        offer_to = {m.contact_id: m.idempotency_key for m in sink.delivered}
        clock.advance_to(T0 + dt.timedelta(hours=1))
        await engine.push_events([
            _event("c1", "bounced", 1, template="offer", type="hard"),
            _event("c2", "bounced", 1, template="offer", type="soft"),
            _event("c3", "opened", 1, template="offer"),
            _event("c3", "opened", 1.5, template="offer"),
            _event("c4", "opened", 1, send=offer_to["c4"]),
            _event("c5", "opened", 1, template="offer"),
            _event("c6", "opened", 1, template="other"),  # no send of `other` yet
            _event("c3", "clicked", 1, send=offer_to["c3"]),
            _event("c5", "unsubscribed", 1, template="offer"),
        ])  # fmt: skip
        clock.advance_to(T0 + dt.timedelta(hours=2))
        await engine.launch("later")  # c6 gets `other` at T0 + 2h
        await engine.run_due()
        clock.advance_to(T0 + dt.timedelta(days=9))
        await engine.push_events([
            _event("c3", "converted", 3, value=12.5, currency="usd"),
            _event("c4", "converted", 4, value="7.50"),  # in the offer's cost currency
            _event("c4", "converted", 5, value=2),  # a second purchase: revenue, same send
            _event("c6", "converted", 3, value=100, currency="USD"),  # after `other`: last touch
            _event("c9", "converted", 24 * 8, value=50),  # 8 days on: outside the window
        ])  # fmt: skip
        return await engine.report()


def test_counts_rates_and_roi_follow_the_definitions(store_url: str) -> None:
    later, promo = trio.run(_scenario, store_url)  # by name
    assert (later.name, promo.name) == ("later", "promo")
    total = promo.total
    # c2's soft bounce had no delivery report after it: not delivered, nor bounced.
    assert (total.sent, total.bounced, total.delivered) == (10, 1, 8)
    assert (total.opened, total.clicked, total.unsubscribed) == (3, 1, 1)
    assert total.converted == 2
    assert total.cost == {"USD": Decimal("0.10")}
    assert total.revenue == {"USD": Decimal("22.00")}
    assert total.roi == pytest.approx((22 - 0.10) / 0.10)
    assert total.cost_per_conversion == {"USD": Decimal("0.05")}  # 0.10 USD over 2
    assert total.rate("delivered") == pytest.approx(0.8)
    assert total.rate("opened") == pytest.approx(3 / 8)
    assert total.rate("bounced") == pytest.approx(0.1)
    assert set(promo.by_template) == {"offer"} and promo.by_variant == {}
    # c6's opened before `other` went out counts for nothing; its purchase goes to `other`.
    assert (later.total.sent, later.total.opened, later.total.converted) == (1, 0, 1)
    assert later.total.revenue == {"USD": Decimal("100")}
    assert later.total.cost == {} and later.total.roi is None  # nothing spent, no ROI
    assert later.total.cost_per_conversion == {}


def test_report_names_an_unknown_campaign(store_url: str) -> None:
    async def main() -> None:
        async with Engine(store_url) as engine:
            await engine.deploy(campaigns(SOURCE))
            with pytest.raises(EngineError, match=r"no campaign named 'promos'.*promo"):
                await engine.report(["promos"])
            assert [r.name for r in await engine.report(["later"])] == ["later"]

    trio.run(main)


def test_cadence_report_prints_a_table_and_json(store_url: str) -> None:
    trio.run(_scenario, store_url)
    table = run_cadence("report", store_url=store_url)
    assert table.returncode == 0, table.stderr
    assert "promo" in table.stdout and "8 (80.0%)" in table.stdout and "219.00" in table.stdout
    # Replies (the source material's dashboard shows them) and what a conversion cost.
    assert "replied" in table.stdout and "cost/conversion" in table.stdout
    assert "0.05 USD" in table.stdout
    by_template = run_cadence("report", "promo", "--by", "template", store_url=store_url)
    assert "offer" in by_template.stdout
    lines = run_cadence("report", "--json", store_url=store_url).stdout.splitlines()
    promo = json.loads(lines[1]) if json.loads(lines[0])["campaign"] == "later" else None
    assert promo is not None
    assert (promo["sent"], promo["delivered"], promo["rates"]["opened"]) == (10, 8, 0.375)
    assert promo["cost"] == {"USD": "0.1"} and promo["revenue"] == {"USD": "22"}
    assert promo["roi"] == 219.0
    assert promo["cost_per_conversion"] == {"USD": "0.05"}
    unknown = run_cadence("report", "promos", store_url=store_url)
    assert unknown.returncode == 1 and "did you mean" in unknown.stderr.lower()


def test_reports_group_by_the_campaign_type(store_url: str, tmp_path: Path) -> None:
    """docs/language.md: "The type is what reports group by"; no report read the type."""
    trio.run(_scenario, store_url)
    source = tmp_path / "typed.cadence"
    source.write_text(
        SOURCE.replace("campaign later {", "campaign later {\n  type drip kind nurture")
    )
    assert run_cadence("deploy", str(source), store_url=store_url).returncode == 0
    lines = run_cadence("report", "--json", store_url=store_url).stdout.splitlines()
    kinds = {row["campaign"]: (row["type"], row["kind"]) for row in map(json.loads, lines)}
    assert kinds == {"later": ("drip", "nurture"), "promo": ("broadcast", None)}
    table = run_cadence("report", "--by", "type", store_url=store_url)
    assert table.returncode == 0, table.stderr
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines()
            if line.count("│") > 3 and "sent" not in line}  # fmt: skip
    assert set(rows) == {"broadcast", "drip"}
    assert "promo" in rows["broadcast"] and "8 (80.0%)" in rows["broadcast"]
    assert "later" in rows["drip"] and " 1 " in rows["drip"]


def test_a_send_without_a_cost_setting_costs_what_its_provider_reported(store_url: str) -> None:
    """Infobip's delivery report prices the SMS; the campaign set no `cost` for it."""
    from tests.engine import webhook_payloads as wp

    source = """
    template ping sms "Hi. Reply STOP to opt out."
    campaign texts { on launch { send sms ping } }
    """

    async def main() -> list[CampaignReport]:
        sink = RecordingSink()
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts([
                {"id": f"p{i}", "phone": f"+49151000000{i}", "attributes": {"sms_opt_in": True}}
                for i in range(3)
            ])  # fmt: skip
            await engine.deploy(campaigns(source))
            await engine.launch("texts")
            await engine.run_due()
            reports = [
                wp.infobip_status(
                    message,
                    T0,
                    to=f"49151000000{message.contact_id[1:]}",
                    group="DELIVERED",
                    name="DELIVERED_TO_HANDSET",
                    description="Message delivered to handset",
                )
                for message in sink.delivered[:2]  # the third send has no report (yet)
            ]
            await engine.ingest_webhook("infobip", wp.results(*reports))
            return await engine.report()

    (texts,) = trio.run(main)
    assert texts.total.sent == 3
    assert texts.total.cost == {"EUR": Decimal("0.14")}  # 0.07 EUR for each priced one


def test_revenue_without_a_currency_is_in_the_campaign_s_currency(store_url: str) -> None:
    """Only the SMS is priced; a purchase after the (free) email, its value given without a
    currency, is in the campaign's USD, so the report gives its revenue and ROI."""
    source = """
    template ping sms "Hi. Reply STOP to opt out."
    template hello email { subject "Hi" body "x" }
    campaign promo {
      audience contact.id == "p0"
      budget 100 USD
      cost sms 0.05 USD
      on launch { send sms ping  wait 1h  send email hello }
    }
    campaign free { on launch { send email hello } }
    """

    async def main() -> list[CampaignReport]:
        clock = SimulatedClock(T0)
        async with Engine(store_url, clock=clock, sink=RecordingSink()) as engine:
            await engine.upsert_contacts([
                {"id": "p0", "email": "p0@example.test", "phone": "+491510000000",
                 "attributes": {"sms_opt_in": True}},
                {"id": "p1", "email": "p1@example.test"},
            ])  # fmt: skip
            await engine.deploy(campaigns(source))
            await engine.launch("promo")
            await engine.launch("free")
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(hours=1))
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(hours=3))
            await engine.push_events([
                _event("p0", "converted", 2, value=40),
                _event("p1", "converted", 2, value=5),  # a campaign that names no money
            ])  # fmt: skip
            return await engine.report()

    free, promo = trio.run(main)
    assert promo.by_template["hello"].converted == 1  # the email, the latest send, is free
    assert promo.total.cost == {"USD": Decimal("0.05")}
    assert promo.total.revenue == {"USD": Decimal("40")}
    assert promo.total.roi == pytest.approx((40 - 0.05) / 0.05)
    assert free.total.revenue == {"": Decimal("5")} and free.total.roi is None


def test_webhook_notices_are_not_counted_as_sends(store_url: str) -> None:
    """A `notify webhook` is a notice about the contact, not a message to them."""
    source = """
    template hello email { subject "Hi" body "x" }
    campaign told {
      on launch { send email hello  notify webhook "https://hooks.example.test/crm" }
    }
    """

    async def main() -> list[CampaignReport]:
        async with Engine(store_url, clock=SimulatedClock(T0), sink=RecordingSink()) as engine:
            await engine.upsert_contacts(PEOPLE[:3])
            await engine.deploy(campaigns(source))
            await engine.launch("told")
            await engine.run_due()
            return await engine.report()

    (told,) = trio.run(main)
    assert told.total.sent == 3
    assert set(told.by_template) == {"hello"}


def test_an_opt_out_reply_counts_as_an_unsubscribe(store_url: str) -> None:
    """A STOP reply ("Reply STOP to opt out") unsubscribes, so the report counts it so."""
    source = """
    template ping sms "Hi. Reply STOP to opt out."
    campaign texts { on launch { send sms ping } }
    """

    async def main() -> list[CampaignReport]:
        sink = RecordingSink()
        async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
            await engine.upsert_contacts([
                {"id": f"p{i}", "phone": f"+49151000000{i}", "attributes": {"sms_opt_in": True}}
                for i in range(4)
            ])  # fmt: skip
            await engine.deploy(campaigns(source))
            await engine.launch("texts")
            await engine.run_due()
            sent_to = {m.contact_id: m.idempotency_key for m in sink.delivered}
            await engine.push_events([
                _event("p0", "replied", 1, template="ping", text="STOP"),
                _event("p1", "replied", 1, send=sent_to["p1"], text="Stop promotions"),
                _event("p2", "replied", 1, template="ping", text="Is it still available?"),
            ])  # fmt: skip
            return await engine.report()

    (texts,) = trio.run(main)
    assert (texts.total.sent, texts.total.replied, texts.total.unsubscribed) == (4, 3, 2)
    assert texts.total.rate("unsubscribed") == pytest.approx(2 / 4)


def test_an_event_naming_its_campaign_counts_for_that_campaign_s_send(store_url: str) -> None:
    """Two campaigns send one template; an open and a purchase that name the first campaign
    (a CRM's export, a `utm_campaign`) are its, though the second's send came later."""
    source = """
    template offer email { subject "Offer" body "x" }
    campaign promo { on launch { send email offer } }
    campaign again { on launch { send email offer } }
    """

    async def main() -> list[CampaignReport]:
        clock = SimulatedClock(T0)
        async with Engine(store_url, clock=clock, sink=RecordingSink()) as engine:
            await engine.upsert_contacts(PEOPLE[:2])
            await engine.deploy(campaigns(source))
            await engine.launch("promo")
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(hours=2))
            await engine.launch("again")
            await engine.run_due()
            clock.advance_to(T0 + dt.timedelta(hours=3))
            await engine.push_events([
                _event("c0", "opened", 3, template="offer", campaign="promo"),
                _event("c0", "converted", 3, value=10, currency="USD", campaign="promo"),
                _event("c1", "opened", 3, template="offer"),  # no campaign: the latest send
            ])  # fmt: skip
            return await engine.report()

    again, promo = trio.run(main)
    assert (promo.total.opened, promo.total.converted) == (1, 1)
    assert promo.total.revenue == {"USD": Decimal("10")}
    assert (again.total.opened, again.total.converted) == (1, 0)


# Every event the report reads about a send, and whether it names the send (True), only its
# template (False: the report resolves it to the contact's latest send of it) or nothing
# (None: the contact's latest send of any template). `failed` is the provider's error
# (Brevo's `error` webhook, logged, no event); `opened brevo` / `clicked brevo` the
# provider's own report of an open or click that Cadence's tracking may report too.
_OUTCOMES = st.sampled_from(
    ["opened", "clicked", "replied", "unsubscribed", "complained", "delivered",
     "bounced hard", "bounced soft", "converted", "failed", "opened brevo", "clicked brevo"]
)  # fmt: skip
_REPORTS = st.lists(
    st.tuples(
        st.integers(0, 3), _OUTCOMES, st.sampled_from([True, False, None]), st.integers(1, 48)
    ),
    max_size=14,
)
_BREVO = {"failed": "error", "opened brevo": "opened", "clicked brevo": "click"}


async def _reported(store_url: str, reports: list[tuple[int, str, bool | None, int]]) -> Any:
    """Four contacts get the offer; `reports` come back about it; the promo's report."""
    sink = ProviderSink()
    clock = SimulatedClock(T0)
    async with Engine(store_url, clock=clock, sink=sink) as engine:
        await engine.upsert_contacts(PEOPLE[:4])
        await engine.deploy(campaigns(SOURCE))
        await engine.launch("promo")
        await engine.run_due()
        offer_to = {m.contact_id: m for m in sink.delivered}
        events, webhooks = [], []
        for index, outcome, names, hours in reports:
            contact = f"c{index}"
            if outcome in _BREVO:
                at = T0 + dt.timedelta(hours=hours)
                webhooks.append(
                    brevo_event(
                        _BREVO[outcome], offer_to[contact], at, email=f"{contact}@example.test"
                    )
                )
                continue
            name, _, kind = outcome.partition(" ")
            about = {}
            if names is True:
                about = {"send": offer_to[contact].idempotency_key}
            elif names is False:
                about = {"template": "offer"}
            events.append(_event(contact, name, hours, **about, **({"type": kind} if kind else {})))
        clock.advance_to(T0 + dt.timedelta(days=3))
        await engine.push_events(events)
        for payload in webhooks:
            await engine.ingest_webhook("brevo", payload)
        (promo,) = [r for r in await engine.report() if r.name == "promo"]
        return promo.total


def _within_bounds(total: Any) -> None:
    assert total.delivered + total.bounced <= total.sent
    for metric in ("opened", "clicked", "replied", "unsubscribed", "complained", "converted"):
        assert getattr(total, metric) <= total.delivered, metric
    assert total.clicked <= total.opened  # a click is an open
    for metric, rate in total.as_dict()["rates"].items():
        assert rate is None or 0 <= rate <= 1, (metric, rate)


@given(reports=_REPORTS)
@settings(max_examples=30, deadline=None)
def test_no_count_passes_its_denominator_and_no_rate_passes_100_percent(
    reports: list[tuple[int, str, bool | None, int]],
) -> None:
    """Generated reports: duplicates, reactions to bounced and failed sends, replies,
    unsubscribes, complaints, events naming no send (or nothing at all)."""
    with tempfile.TemporaryDirectory() as folder:
        _within_bounds(trio.run(_reported, f"sqlite:///{folder}/cadence.db", reports))


def test_unsubscribes_and_complaints_confirm_their_send_and_count_only_when_delivered(
    store_url: str,
) -> None:
    """c0's soft bounce was followed by an unsubscribe through the message, so it reached
    c0; c1's hard bounce says it never did, so its complaint is not counted (a report
    matched to the wrong send), nor its purchase credited to it; c2 reported spam and
    bought; c3 heard nothing back."""
    total = trio.run(
        _reported,
        store_url,
        [(0, "bounced soft", True, 1), (0, "unsubscribed", True, 2),
         (1, "bounced hard", True, 1), (1, "complained", True, 2), (1, "unsubscribed", True, 2),
         (2, "complained", False, 3), (1, "converted", True, 4), (2, "converted", False, 4)],
    )  # fmt: skip
    assert (total.sent, total.delivered, total.bounced) == (4, 3, 1)
    assert (total.unsubscribed, total.complained, total.converted) == (1, 1, 1)
    _within_bounds(total)


def test_reactions_to_failed_sends_and_repeated_reports_count_once_and_within_bounds(
    store_url: str,
) -> None:
    """c0's offer failed at Brevo (its `error`), yet an open, a click, an unsubscribe and a
    complaint came about it (a link scanner, a report matched to the wrong send): none
    counts. c1's offer was opened three times, once by Brevo's report, and unsubscribed
    from twice: one open, one unsubscribe. c2's click names nothing: it counts for c2's
    latest send, as a click and so as an open, and as nothing else. c3 complained about its
    offer by template only."""
    total = trio.run(
        _reported,
        store_url,
        [(0, "failed", True, 1), (0, "opened", True, 2), (0, "clicked brevo", True, 2),
         (0, "unsubscribed", True, 3), (0, "complained", None, 3),
         (1, "opened", True, 1), (1, "opened", True, 2), (1, "opened brevo", True, 2),
         (1, "unsubscribed", True, 3), (1, "unsubscribed", False, 4),
         (2, "clicked", None, 5), (3, "complained", False, 6), (3, "replied", True, 6)],
    )  # fmt: skip
    assert (total.sent, total.delivered, total.bounced) == (4, 3, 0)
    assert (total.opened, total.clicked, total.replied) == (2, 1, 1)
    assert (total.unsubscribed, total.complained) == (1, 1)
    _within_bounds(total)


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0.002", "0.002 USD"),  # two emails at 0.001 USD: not 0.00
        ("0.0015", "0.0015 USD"),
        ("0.123456", "0.1235 USD"),  # at most four places
        ("0.1", "0.10 USD"),
        ("0", "0.00 USD"),
        ("1234.5", "1,234.50 USD"),  # a unit or more: cents
        ("10.3333", "10.33 USD"),
    ],
)
def test_money_under_a_cent_is_not_shown_as_nothing(amount: str, shown: str) -> None:
    """The cost column beside a budget pause that names 0.002 USD must not read 0.00 USD."""
    assert money_text({"USD": Decimal(amount)}) == shown


@pytest.mark.parametrize(
    ("counts", "name", "shown"),
    [
        ({"sent": 50_000, "delivered": 49_999, "bounced": 1}, "bounced", "1 (<0.01%)"),
        ({"sent": 50_000, "delivered": 49_999, "bounced": 1}, "delivered", "49,999 (>99.9%)"),
        ({"sent": 2_000, "delivered": 1_999}, "delivered", "1,999 (>99.9%)"),  # 99.95%
        ({"sent": 1_000, "delivered": 999}, "delivered", "999 (99.9%)"),
        ({"sent": 10, "delivered": 10}, "delivered", "10 (100.0%)"),
        ({"sent": 10, "delivered": 10}, "opened", "0 (0.0%)"),
        ({"sent": 4_000, "delivered": 4_000, "converted": 1}, "converted", "1 (0.03%)"),
        ({"sent": 0}, "delivered", "0"),  # nothing to divide by
    ],
)
def test_a_rate_reads_0_or_100_percent_only_when_it_is(
    counts: dict[str, int], name: str, shown: str
) -> None:
    """One bounce in 50,000 sends rounded to `0.00%` read as none, and the rest `100.0%` as all."""
    assert count_text(Metrics(**counts), name) == shown


def test_the_report_says_why_sends_were_not_sent(store_url: str) -> None:
    """The higher priority takes each contact's one cap slot: the newsletter's report read
    as a campaign that sent nothing, with no word of the cap (nor of the missing address)."""
    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(3)]

    async def main() -> list[CampaignReport]:
        async with Engine(store_url, clock=SimulatedClock(T0), sink=RecordingSink()) as engine:
            await engine.upsert_contacts([*people, {"id": "nomail"}])
            await engine.deploy(campaigns(PRIORITIES))
            await engine.launch("newsletter")
            await engine.launch("flash_sale")
            await engine.run_due()
            return await engine.report()

    flash_sale, newsletter = trio.run(main)
    assert (flash_sale.total.sent, newsletter.total.sent) == (3, 0)
    assert newsletter.not_sent == {"cap email 1 reached": 3, "no email address": 1}
    assert flash_sale.not_sent == {"no email address": 1}
    table = run_cadence("report", store_url=store_url)
    assert table.returncode == 0, table.stderr
    assert "newsletter: not sent 4 (cap email 1 reached: 3, no email address: 1)" in table.stdout
    assert "flash_sale: not sent 1 (no email address: 1)" in table.stdout
    lines = run_cadence("report", "newsletter", "--json", store_url=store_url).stdout
    assert json.loads(lines)["not_sent"] == {"cap email 1 reached": 3, "no email address": 1}


def test_the_tables_show_spam_complaints_beside_unsubscribes(store_url: str) -> None:
    """A complaint was counted (`--json`) but neither `cadence report`'s table, its `--by
    type` table nor the dashboard had a column for it: a campaign reported as spam by a
    quarter of its readers looked clean."""
    from cadence.adapters.web.dashboard import dashboard

    trio.run(_reported, store_url, [(2, "complained", True, 1), (3, "complained", False, 2)])
    for by in ("campaign", "type"):
        table = run_cadence("report", "promo", "--by", by, store_url=store_url)
        assert table.returncode == 0, table.stderr
        (head,) = [line for line in table.stdout.splitlines() if "sent" in line]
        (row,) = [line for line in table.stdout.splitlines() if "promo" in line]
        columns = [cell.strip() for cell in head.split("┃")[1:-1]]
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert dict(zip(columns, cells, strict=True))["complained"] == "2 (50.0%)", by

    async def page() -> str:
        async with Engine(store_url, clock=SimulatedClock(T0)) as engine:
            return dashboard("Acme", T0, await engine.status(), await engine.report())

    (performance,) = re.findall(r"<h2>Performance</h2>(.*?)</table>", trio.run(page), re.S)
    heads = re.findall(r"<th[^>]*>(.*?)</th>", performance)
    (row,) = [r for r in re.findall(r"<tr>(.*?)</tr>", performance) if "promo" in r]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert dict(zip(heads, cells, strict=True))["complained"] == "2 (50.0%)"


def test_a_report_of_a_mistyped_or_empty_tenant_says_so_and_writes_nothing(
    store_url: str,
) -> None:
    """`--tenant acme` for the store's `acmee` made the tenant `acme` and printed an empty
    table, exit 0: a typo read as a tenant that sent nothing, and left a tenant behind."""
    from cadence.engine.store.database import Store

    async def main() -> None:
        async with Engine(store_url, tenant="acmee") as engine:
            await engine.deploy(campaigns(SOURCE))
        async with Engine(store_url, tenant="fresh"):  # a tenant with contacts, say
            pass

    trio.run(main)
    typo = run_cadence("report", "--tenant", "acme", store_url=store_url)
    assert typo.returncode == 1 and typo.stdout == ""
    assert "no tenant 'acme'" in typo.stderr and "did you mean `acmee`" in typo.stderr
    status = run_cadence("status", "--tenant", "acme", store_url=store_url)
    assert status.returncode == 1 and "no tenant 'acme'" in status.stderr
    with Store.open(store_url) as store:
        assert "acme" not in store.tenant_ids()
    empty = run_cadence("report", "--json", "--tenant", "fresh", store_url=store_url)
    assert empty.returncode == 0 and empty.stdout == ""
    assert "tenant 'fresh' has no campaign yet" in empty.stderr
    shown = run_cadence("report", "--tenant", "acmee", store_url=store_url)
    assert shown.returncode == 0 and "promo" in shown.stdout


def test_a_conversion_whose_value_is_no_amount_is_refused(store_url: str) -> None:
    """`"value": "12,50"` (a decimal comma), `"€3"` or a currency named in words were
    stored: the purchase counted as converted with no revenue, or in a currency of its own
    (`US DOLLAR`), so the report's revenue and ROI were short with no word why."""
    from cadence.engine.store.records import InvalidInput

    async def main() -> list[CampaignReport]:
        async with Engine(store_url, clock=SimulatedClock(T0), sink=RecordingSink()) as engine:
            await engine.upsert_contacts(PEOPLE[:3])
            await engine.deploy(campaigns(SOURCE))
            await engine.launch("promo")
            await engine.run_due()
            with pytest.raises(InvalidInput) as refused:
                await engine.push_events([
                    _event("c0", "converted", 1, value="12,50", currency="EUR"),
                    _event("c1", "converted", 1, amount="€3"),
                    _event("c2", "converted", 1, value=5, currency="US Dollar"),
                ])  # fmt: skip
            assert [(p.row, p.column) for p in refused.value.problems] == [
                (1, "properties.value"), (2, "properties.amount"), (3, "properties.currency")
            ]  # fmt: skip
            await engine.push_events([_event("c0", "converted", 1, value=" 7.5 ", currency=" eur")])
            return await engine.report(["promo"])

    (promo,) = trio.run(main)
    assert promo.total.converted == 1  # the refused ones wrote nothing
    assert promo.total.revenue == {"EUR": Decimal("7.5")}


FAILING = """
template city_news email { subject "News" body "<p>Homes in {{ contact.city }}</p>" }
template ping sms "{{ contact.note | default('') }}"
campaign news { from "Acme <hello@acme.test>"  on launch { send email city_news  send sms ping } }
"""


def test_the_report_says_which_sends_failed_and_why(store_url: str) -> None:
    """A template that does not render fails that send only, with its reason in the outbox;
    but the report counted only what went out, so a campaign whose every send failed read
    as one that sent nothing, and `serve` printed `0 delivered` with no word of why."""
    from cadence.adapters.config import load_settings
    from cadence.adapters.outbound import Outbound
    from cadence.adapters.sink import AdapterSink, StoreContentSource

    people = [{"id": f"p{i}", "email": f"p{i}@example.test", "phone": f"+4479460000{i:02d}",
               "sms_opt_in": True} for i in range(2)]  # fmt: skip

    async def main() -> list[CampaignReport]:
        source = StoreContentSource(store_url)
        outbound = Outbound(load_settings(env={}))
        sink = AdapterSink(outbound, source)
        try:
            async with Engine(store_url, clock=SimulatedClock(T0), sink=sink) as engine:
                await engine.upsert_contacts(people)
                await engine.deploy(campaigns(FAILING))
                await engine.launch("news")
                await engine.run_due()
                return await engine.report()
        finally:
            source.close()
            await outbound.aclose()

    (news,) = trio.run(main)
    undefined = (
        "template city_news (body), line 1: `contact.city` is undefined"
        " (use `| default(...)` if it may be missing)"
    )
    empty = "template ping (body): the message rendered empty"
    assert news.total.sent == 0 and news.failed == {undefined: 2, empty: 2}
    table = run_cadence("report", store_url=store_url)
    assert table.returncode == 0, table.stderr
    assert f"news: failed 4 ({undefined}: 2, {empty}: 2)" in " ".join(table.stdout.split())
    assert news.as_dict()["failed"] == {undefined: 2, empty: 2}  # what --json prints
