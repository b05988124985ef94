"""Dry-runs of the examples on small fixed audiences: exact sends and times, the JSON contract."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from cadence.dsl.compiler import compile_paths
from cadence.engine import dryrun
from cadence.engine.dryrun import (
    MAX_FORWARD_ATTEMPTS,
    MIN_SIMULATED_RETRY,
    DryRunError,
    DryRunReport,
    Journey,
    PlannedSend,
    dry_run,
    failed_sends,
    parse_assume,
)
from cadence.engine.runtime import DeliveryResult, OutgoingMessage
from cadence.engine.store.records import InvalidInput
from tests.engine.cadence_cli import run_cadence
from tests.engine.test_send_gates import PRIORITIES
from tests.engine.test_webhooks import events_named, suppressions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def run(
    example: str,
    contacts: Path,
    *,
    events: Path | None = None,
    days: int = 30,
    start: dt.datetime = START,
    assume: dict[str, float] | None = None,
) -> DryRunReport:
    campaigns = compile_paths([EXAMPLES / example])
    return trio.run(
        lambda: dry_run(
            campaigns, contacts, events=events, start=start, until=dt.timedelta(days=days),
            assume=assume, seed=1,
        )
    )  # fmt: skip


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def sends(report: DryRunReport) -> list[tuple[dt.datetime, str, str | None]]:
    return [(s.at, s.contact, s.template) for s in report.sends]


def test_welcome_series_sends_on_days_0_3_7_14(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "a", "email": "a@example.test", "first_name": "A", "timezone": "UTC"},
            {"id": "b", "email": "b@example.test", "first_name": "B", "timezone": "Asia/Manila"},
        ],
    )
    report = run("welcome_series.cadence", contacts)
    expected = []
    for contact in ("a", "b"):
        expected += [
            (START, contact, "welcome"),
            (START + dt.timedelta(days=3), contact, "getting_started"),
            (START + dt.timedelta(days=7), contact, "tips"),
            (START + dt.timedelta(days=14), contact, "re_engagement"),
        ]
    assert sends(report) == sorted(expected)
    assert report.summary() == {
        "type": "summary",
        "sends": 8,
        "by_template": {"getting_started": 2, "re_engagement": 2, "tips": 2, "welcome": 2},
        "enrolled": 2,
        "completed": 2,
        "exited": 0,
    }


def test_welcome_series_engaged_contacts_take_the_engaged_path(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test", "timezone": "UTC"}]
    )
    report = run("welcome_series.cadence", contacts, assume={"opened": 1.0, "clicked": 1.0})
    assert [s.template for s in report.sends][-1] == "engaged_user"


BUYER = {"lead_type": "buyer", "budget_max": 500000}


def test_property_interest_follows_three_views_within_budget(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "wa", "email": "wa@example.test", "phone": "+15550000001", "timezone": "UTC",
             "attributes": {**BUYER, "whatsapp_opt_in": True}},
            {"id": "sms", "email": "s@example.test", "phone": "+15550000002",
             "timezone": "Asia/Manila", "attributes": {**BUYER, "sms_opt_in": True}},
            {"id": "seller", "email": "x@example.test", "timezone": "UTC",
             "attributes": {"lead_type": "seller", "budget_max": 500000}},
            {"id": "twice", "email": "t@example.test", "timezone": "UTC", "attributes": BUYER},
            {"id": "pricey", "email": "p@example.test", "timezone": "UTC", "attributes": BUYER},
        ],
    )  # fmt: skip
    views = []
    for contact, prices in {
        "wa": [300000, 400000, 450000],
        "sms": [300000, 400000, 450000],
        "seller": [300000, 400000, 450000],
        "twice": [300000, 400000],
        "pricey": [300000, 900000, 450000],
    }.items():
        for hour, price in zip((10, 11, 12), prices, strict=False):
            views.append(
                {"contact": contact, "name": "property_viewed", "at": f"2026-12-01T{hour}:00:00Z",
                 "properties": {"price": price, "city": "Makati", "beds": 2}}
            )  # fmt: skip
    events = write_jsonl(tmp_path / "e.jsonl", views)
    report = run("property_interest.cadence", contacts, events=events, days=10)
    assert sends(report) == [
        (at("2026-12-01T13:00"), "sms", "property_details"),
        (at("2026-12-01T13:00"), "wa", "property_details"),
        (at("2026-12-05T13:00"), "wa", "follow_up_whatsapp"),
        # 13:00 UTC is 21:00 in Manila: quiet hours hold the SMS until 08:00 there.
        (at("2026-12-06T00:00"), "sms", "follow_up"),
    ]
    assert report.enrolled == 2 and report.completed == 2


def test_weekday_broadcast_goes_out_at_nine_local_and_skips_the_weekend(tmp_path: Path) -> None:
    subscriber = {"newsletter_opt_in": True, "email_verified": True,
                  "last_activity": "2026-11-20T12:00:00Z"}  # fmt: skip
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "ny", "email": "ny@example.test", "timezone": "America/New_York",
             "attributes": {**subscriber, "country": "US"}},
            {"id": "mnl", "email": "m@example.test", "timezone": "Asia/Manila",
             "attributes": {**subscriber, "country": "PH", "city": "Lisbon"}},
        ],
    )  # fmt: skip
    report = run("weekday_broadcast.cadence", contacts, start=at("2026-12-02T00:00"), days=6)
    # Thursday 3 December, 09:00 local: 14:00 UTC in New York, 01:00 UTC in Manila. The
    # reminder two days later falls on Saturday; the weekday send window moves it to
    # Monday 7 December, 09:00 local.
    assert sends(report) == [
        (at("2026-12-03T01:00"), "mnl", "december_newsletter"),
        (at("2026-12-03T14:00"), "ny", "december_newsletter"),
        (at("2026-12-07T01:00"), "mnl", "newsletter_reminder"),
        (at("2026-12-07T14:00"), "ny", "newsletter_reminder"),
    ]


def test_listing_fanout_reaches_every_matching_contact(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "match", "email": "m@example.test", "timezone": "UTC",
             "attributes": {"lead_type": "buyer", "budget_max": 500000, "areas": ["Denver"],
                            "beds_min": 2, "saved_properties": ["p1"]}},
            {"id": "poor", "email": "p@example.test", "timezone": "UTC",
             "attributes": {"lead_type": "buyer", "budget_max": 100000, "areas": ["Denver"],
                            "beds_min": 2, "saved_properties": []}},
            {"id": "elsewhere", "email": "e@example.test", "timezone": "UTC",
             "attributes": {"lead_type": "buyer", "budget_max": 900000, "areas": ["Miami"],
                            "beds_min": 1, "saved_properties": []}},
        ],
    )  # fmt: skip
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"name": "property_listed", "at": "2026-12-02T10:00:00Z",
             "properties": {"property_id": "p9", "title": "Loft", "price": 400000,
                            "city": "Denver", "beds": 2, "baths": 1, "currency": "USD",
                            "url": "https://homes.example.test/p9"}},
            {"name": "price_dropped", "at": "2026-12-03T10:00:00Z",
             "properties": {"property_id": "p1", "title": "House", "price": 300000,
                            "old_price": 350000, "city": "Denver", "currency": "USD",
                            "url": "https://homes.example.test/p1"}},
        ],
    )  # fmt: skip
    report = run("listing_fanout.cadence", contacts, events=events, days=5)
    received = Counter((s.contact, s.template) for s in report.sends)
    assert received == Counter({("match", "new_listing"): 1, ("match", "price_drop"): 1})


def test_json_lines_follow_the_contract(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": "c1", "email": "c1@example.test", "timezone": "UTC"}]
    )
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "dry-run", str(EXAMPLES / "welcome_series.cadence"),
         "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z", "--until", "20d",
         "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    first = lines[0]
    assert first == {
        "type": "send",
        "at": "2026-12-01T09:00:00Z",
        "contact": "c1",
        "campaign": "welcome_series",
        "node": "send_welcome",
        "channel": "email",
        "template": "welcome",
        "variant": None,
    }
    assert all(line["type"] == "send" for line in lines[:-1])
    assert lines[-1] == {
        "type": "summary",
        "sends": 4,
        "by_template": {"getting_started": 1, "re_engagement": 1, "tips": 1, "welcome": 1},
        "enrolled": 1,
        "completed": 1,
        "exited": 0,
    }


def test_sends_of_one_step_are_listed_in_the_order_the_steps_make_them(tmp_path: Path) -> None:
    source = tmp_path / "order.cadence"
    source.write_text(
        'template zeta email { subject "z" body "b" }\n'
        'template alpha email { subject "a" body "b" }\n'
        "on launch { send email zeta  send email alpha  send email zeta_two }\n"
        'template zeta_two email { subject "z2" body "b" }\n',
        "utf-8",
    )
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": f"c{i}", "email": f"c{i}@example.test"} for i in (1, 2)],
    )
    report = trio.run(
        lambda: dry_run(compile_paths([source]), contacts, start=START, until=dt.timedelta(days=1))
    )
    # Not by node name (send_alpha, send_zeta, send_zeta_two): zeta, then alpha, then zeta_two.
    assert [(s.contact, s.template) for s in report.sends] == [
        ("c1", "zeta"), ("c1", "alpha"), ("c1", "zeta_two"),
        ("c2", "zeta"), ("c2", "alpha"), ("c2", "zeta_two"),
    ]  # fmt: skip


def test_json_lines_are_each_send_encoded_as_json_dumps_would() -> None:
    # The lines are assembled from cached parts; any send, however its names are spelled,
    # must come out exactly as `json.dumps(send.to_json())`.
    start = dt.datetime(2026, 12, 1, 9, 0, 59, tzinfo=dt.UTC)
    sends = [
        PlannedSend(
            start + dt.timedelta(hours=i % 3), contact, campaign, node, "email", template, variant
        )
        for i, (contact, campaign, node, template, variant) in enumerate(
            [
                ("c1", "welcome", "n1", "t1", None),
                ('qu"ote\\back', "welcome", "n1", "t1", None),
                ("Zoë ✓ \u2028", "b\u00e9ta\n", None, None, "A"),
                ("c1", "welcome", "n1", "t1", "B"),
                ("c2", "welcome", "n2", "t1", None),
                ("c1", "welcome", "n1", "t1", None),
            ]
        )
    ]  # fmt: skip
    report = DryRunReport(
        sends, enrolled=3, completed=1, exited=0, active=2, funnel={}, start=start, until=start
    )
    lines = report.json_lines()
    assert lines[:-1] == [json.dumps(send.to_json()) for send in sends]
    assert json.loads(lines[-1])["sends"] == len(sends)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("opened=2", "not between 0 and 1"),
        ("opened", "expected NAME=RATE"),
        ("smiled=0.1", "expected NAME=RATE"),
        ("opened=x", "needs a rate such as 0.3 or 30%"),
        ("opened=%", "needs a rate such as 0.3 or 30%"),
        ("opened=130%", "not between 0 and 1"),
        ("opened=nan", "not between 0 and 1"),
        ("delivered=0.9,bounced=0.2", "more than every send"),
        ("delivered=1.5", "not between 0 and 1"),
        ("opened=0.3,clicked=0.1,opened=0.4", "--assume: opened is given twice"),
        ("opened=30%,opened = 0.3", "--assume: opened is given twice"),
        ("", "expected NAME=RATE"),
    ],
)
def test_bad_assume_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(DryRunError, match=re.escape(message)):
        parse_assume(text)


def test_assume_takes_a_rate_as_a_percentage_too() -> None:
    """`opened=30%` is how the report shows a rate; it means 0.3."""
    assert parse_assume("opened=30%, clicked=2.5%") == parse_assume("opened=0.3,clicked=0.025")
    assert parse_assume("delivered=100%")["delivered"] == 1.0


def test_assume_takes_spaces_around_the_equals_sign() -> None:
    """`opened = 0.3` was refused as not NAME=RATE, naming `opened` among the names."""
    assert parse_assume("opened = 0.3, clicked =5%") == {"opened": 0.3, "clicked": 0.05}


def test_bad_contacts_file_exits_1_and_names_the_row(tmp_path: Path) -> None:
    contacts = tmp_path / "c.jsonl"
    contacts.write_text(
        '{"id": "ok", "email": "ok@example.test"}\n{"id": "bad", "timezone": "Mars/Base"}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "dry-run", str(EXAMPLES / "welcome_series.cadence"),
         "--contacts", str(contacts), "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert ":2:" in done.stderr and "timezone" in done.stderr


GREET = """\
template hello email {
  subject "Hello {{ contact.first_name }}"
  body "<p>Hi</p>"
}

template city_news email {
  subject "News from {{ contact.city }}"
  body "<p>Hi</p>"
}

campaign greet "Greet" {
  from "A <a@example.test>"
  channels email
  on contact_created {
    send email hello
    wait 1d
    send email city_news
  }
}
"""


def dry_run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cadence("dry-run", *args)


def test_subjects_are_rendered_for_each_contact_and_locale(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "ana", "email": "ana@example.test", "first_name": "Ana", "timezone": "UTC"},
            {"id": "eli", "email": "eli@example.test", "first_name": "Elena", "locale": "es",
             "timezone": "UTC"},
        ],
    )  # fmt: skip
    campaigns = compile_paths([EXAMPLES / "welcome_series.cadence"])
    report = trio.run(
        lambda: dry_run(
            campaigns, contacts, start=START, until=dt.timedelta(days=1),
            company={"name": "Acme"},
        )
    )  # fmt: skip
    subjects = {s.contact: s.subject for s in report.sends if s.template == "welcome"}
    assert subjects == {
        "ana": "Welcome to Acme, Ana!",
        "eli": "¡Te damos la bienvenida a Acme, Elena!",
    }
    assert all(s.render_error is None for s in report.sends)


def test_render_can_be_limited_to_some_contacts(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "ana", "email": "ana@example.test", "first_name": "Ana", "timezone": "UTC"},
            {"id": "ben", "email": "ben@example.test", "first_name": "Ben", "timezone": "UTC"},
        ],
    )
    campaigns = compile_paths([EXAMPLES / "welcome_series.cadence"])
    report = trio.run(
        lambda: dry_run(
            campaigns, contacts, start=START, until=dt.timedelta(days=1), render={"ben"}
        )
    )  # fmt: skip
    subjects = {s.contact: s.subject for s in report.sends}
    # Without --company, `company.name` is the tenant's name.
    assert subjects == {"ana": None, "ben": "Welcome to default, Ben!"}


def test_contact_view_shows_the_rendered_subject(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "c1", "email": "c1@example.test", "first_name": "Ana", "timezone": "UTC"}],
    )
    done = dry_run_cli(
        str(EXAMPLES / "welcome_series.cadence"), "--contacts", str(contacts),
        "--start", "2026-12-01T09:00:00Z", "--until", "20d", "--contact", "c1",
        "--company", '{"name": "Acme Homes"}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Welcome to Acme Homes, Ana!" in done.stdout
    assert "Still there, Ana?" in done.stdout
    assert "{{" not in done.stdout


def test_a_render_error_is_shown_for_that_send_only(tmp_path: Path) -> None:
    source = tmp_path / "greet.cadence"
    source.write_text(GREET, encoding="utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "a", "email": "a@example.test", "first_name": "Ana", "timezone": "UTC"}],
    )
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, start=START, until=dt.timedelta(days=3)
        )
    )  # fmt: skip
    hello, news = report.sends
    assert (hello.subject, hello.render_error) == ("Hello Ana", None)
    assert news.subject is None
    assert news.render_error is not None
    assert "city_news (subject), line 1" in news.render_error
    assert "`contact.city` is undefined" in news.render_error

    done = dry_run_cli(
        str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "3d", "--contact", "a",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Hello Ana" in done.stdout
    assert "render error: template city_news (subject), line 1" in done.stdout

    as_json = dry_run_cli(
        str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "3d", "--contact", "a", "--json",
    )  # fmt: skip
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["send", "send", "summary"]
    assert all("subject" not in line and "render_error" not in line for line in lines)


def test_bad_company_is_a_usage_error(tmp_path: Path) -> None:
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test"}])
    done = dry_run_cli(
        str(EXAMPLES / "welcome_series.cadence"), "--contacts", str(contacts),
        "--company", "{not json",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--company" in done.stderr


def test_contact_view_says_which_sends_were_stopped_and_why(tmp_path: Path) -> None:
    source = tmp_path / "gated.cadence"
    source.write_text(
        'template hello email { subject "Hello" body "x" }\n'
        'template ping sms "Ping. Reply STOP to opt out."\n'
        "campaign gated { on launch { send sms ping  send email hello } }\n"
    )
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "a", "email": "a@example.test", "phone": "+491510000001"}],
    )
    campaigns = compile_paths([source])
    report = trio.run(lambda: dry_run(campaigns, contacts, start=START, until=dt.timedelta(days=1)))
    assert [(s.contact, s.template, s.reason) for s in report.skipped] == [
        ("a", "ping", "no sms opt-in")
    ]
    done = dry_run_cli(
        str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "1d", "--contact", "a",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not sent: no sms opt-in" in done.stdout and "Hello" in done.stdout
    as_json = dry_run_cli(
        str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "1d", "--contact", "a", "--json",
    )  # fmt: skip
    assert [json.loads(line)["type"] for line in as_json.stdout.splitlines()] == [
        "send", "summary"
    ]  # fmt: skip


OUTCOMES = """
template hello email { subject "Hello" body "x" }
template ping inbox "Welcome aboard."
template late email { subject "Late" body "x" }
campaign outcomes {
  on launch { send email hello  send inbox ping  wait 71h send email late }
}
"""


def test_each_send_of_the_contact_asked_for_says_what_became_of_it(tmp_path: Path) -> None:
    source = tmp_path / "outcomes.cadence"
    source.write_text(OUTCOMES, encoding="utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": i, "email": f"{i}@example.test", "timezone": "UTC"} for i in ("a", "b")],
    )
    campaigns = compile_paths([source])

    def outcomes(**assume: float) -> dict[tuple[str, str | None], tuple[str, ...]]:
        report = trio.run(
            lambda: dry_run(
                campaigns, contacts, start=START, until=dt.timedelta(days=3),
                assume=assume, seed=1, render={"a"},
            )
        )  # fmt: skip
        return {(s.contact, s.template): s.outcome for s in report.sends}

    # `late` goes out an hour before the end: its open (an hour on) is at the end, its
    # click (two hours on) after it, so not within the run. `b` is not asked for.
    assert outcomes(opened=1, clicked=1) == {
        ("a", "hello"): ("delivered", "opened", "clicked"),
        ("a", "ping"): ("sent", "clicked"),  # an inbox message reports no open
        ("a", "late"): ("delivered", "opened"),
        ("b", "hello"): (), ("b", "ping"): (), ("b", "late"): (),
    }  # fmt: skip
    nothing = outcomes()
    assert (nothing["a", "hello"], nothing["a", "ping"]) == (("delivered",), ("sent",))
    bounced = outcomes(bounced=1, opened=1)
    assert (bounced["a", "hello"], bounced["a", "ping"]) == (("bounced",), ("sent",))
    unreported = outcomes(delivered=0.0, bounced=0.0)
    assert unreported["a", "hello"] == ("no delivery report",)

    done = dry_run_cli(
        str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "3d", "--contact", "a", "--assume", "opened=1,clicked=1", "--seed", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "outcome" in done.stdout and "delivered, opened, clicked" in done.stdout


def test_the_contact_view_says_what_became_of_each_send_and_why_one_was_not_sent(
    tmp_path: Path,
) -> None:
    """The `outcome` column of `--contact`: `delivered` without `--assume`; with bounces
    assumed, the bounce, and the later email the bounce's suppression stopped, as
    `not sent: suppressed` in that column."""
    source = tmp_path / "outcomes.cadence"
    source.write_text(OUTCOMES, encoding="utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test", "timezone": "UTC"}]
    )

    def rows(*assume: str) -> dict[str, str]:
        """The view's rows by template (each on one line: piped, the table is wide)."""
        done = dry_run_cli(
            str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
            "--until", "3d", "--contact", "a", "--seed", "1", *assume,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        view = done.stdout[done.stdout.index("What a receives") :]
        return {
            template: line
            for line in view.splitlines()
            for template in ("hello", "ping", "late")
            if f" {template} " in line
        }

    plain = rows()
    assert plain["hello"].rstrip(" │").endswith("delivered")
    assert plain["ping"].rstrip(" │").endswith("sent")
    bounced = rows("--assume", "bounced=1")
    assert bounced["hello"].rstrip(" │").endswith("bounced")
    assert bounced["late"].rstrip(" │").endswith("not sent: suppressed")
    assert "Late" not in bounced["late"]  # nothing is rendered for a send that never went


CHANNELS_REACT = """
template hello email { subject "Hello" body "x" }
template ping sms "Ping. Reply STOP to opt out."
template note inbox "A note."
campaign everywhere {
  cap email 5 per 7d
  on launch { send email hello  send sms ping  send inbox note }
}
"""


def _one_texting_contact(folder: Path) -> Path:
    """A contacts file of one person reachable by email and, opted in, by SMS."""
    return write_jsonl(
        folder / "c.jsonl",
        [{"id": "a", "email": "a@example.test", "phone": "+491510000001", "timezone": "UTC",
          "attributes": {"sms_opt_in": True}}],
    )  # fmt: skip


def test_assumed_reactions_are_drawn_only_where_the_channel_reports_them(tmp_path: Path) -> None:
    """Live, an SMS is never seen opened and an inbox message answers nothing back
    (symbols.REACTION_CHANNELS), so a dry-run draws neither: an SMS's click is drawn among
    all its delivered sends, not only the opened ones, which it never has."""
    source = tmp_path / "everywhere.cadence"
    source.write_text(CHANNELS_REACT, encoding="utf-8")
    contacts = _one_texting_contact(tmp_path)
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, start=START, until=dt.timedelta(days=3),
            assume={"opened": 1, "clicked": 1, "replied": 1, "converted": 1}, seed=1,
            render={"a"},
        )
    )  # fmt: skip
    assert {s.channel: s.outcome for s in report.sends} == {
        "email": ("delivered", "opened", "clicked", "replied", "converted"),
        "sms": ("delivered", "clicked", "replied", "converted"),
        "inbox": ("sent", "clicked", "converted"),
    }


UNSUBSCRIBING = """
template first email { subject "First" body "x" }
template second email { subject "Second" body "x" }
template text sms "Hi. Reply STOP to opt out."
campaign series {
  on launch { send email first  send sms text  wait 1d  send email second  send sms text }
}
"""


def test_assumed_unsubscribes_stop_the_later_sends_on_their_channel(tmp_path: Path) -> None:
    """`--assume unsubscribed=1` unsubscribes every reader of a delivered message, on its
    channel, two hours on: the next day's email and SMS are skipped as live, and the
    report counts the unsubscribes."""
    source = tmp_path / "series.cadence"
    source.write_text(UNSUBSCRIBING, encoding="utf-8")
    contacts = _one_texting_contact(tmp_path)

    def run(**assume: float) -> DryRunReport:
        return trio.run(
            lambda: dry_run(
                compile_paths([source]), contacts, start=START, until=dt.timedelta(days=3),
                assume=assume, seed=1, render={"a"}, performance=True,
            )
        )  # fmt: skip

    report = run(unsubscribed=1)
    assert [(s.channel, s.template, s.outcome) for s in report.sends] == [
        ("email", "first", ("delivered", "unsubscribed")),
        ("sms", "text", ("delivered", "unsubscribed")),
    ]
    assert sorted((s.channel, s.template) for s in report.skipped) == [
        ("email", "second"), ("sms", "text")
    ]  # fmt: skip
    (series,) = report.performance
    assert (series.total.sent, series.total.unsubscribed) == (2, 2)
    # Assumed with opens, an unsubscribe comes after an open where the channel has them:
    # none of the unopened email's readers unsubscribe; an SMS has no opens to follow.
    none_opened = run(opened=0.0, unsubscribed=0.5)
    assert [s.template for s in none_opened.sends].count("second") == 1
    assert "unsubscribed" in parse_assume("unsubscribed=0.002")


@pytest.mark.parametrize("until", ["1mo", "1.5d", "2 days", "30D", "0d", "3d junk"])
def test_until_must_be_a_whole_duration(tmp_path: Path, until: str) -> None:
    # `1mo` used to run for one minute and `1.5d` for five days, silently.
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test"}])
    done = dry_run_cli(
        str(EXAMPLES / "welcome_series.cadence"), "--contacts", str(contacts),
        "--start", "2026-12-01T09:00:00Z", "--until", until, "--json",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout
    assert f"--until: {until!r} is not a duration" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        # "OverflowError: Python int too large to convert to C int":
        *[("--until", v, "is longer than ten years, the longest duration Cadence takes")
          for v in ("3661d", "99999999999d")],
        # Python's "Invalid isoformat string: 'garbage'", or "month must be in 1..12":
        *[("--start", v, "is not an ISO-8601 date-time (e.g. 2026-12-01T09:00:00Z or 2026-12-01)")
          for v in ("garbage", "2026-13-01", "1 December 2026", "01/12/2026",
                    # well formed, but before year 1 in UTC: OverflowError before
                    "0001-01-01T00:00:00+01:00")],
    ],
)  # fmt: skip
def test_a_bad_start_or_until_says_what_it_takes(
    tmp_path: Path, option: str, value: str, says: str
) -> None:
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test"}])
    done = dry_run_cli(
        str(EXAMPLES / "welcome_series.cadence"), "--contacts", str(contacts),
        option, value, "--json",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip() == f"cadence dry-run: {option}: {value!r} {says}"


@dataclass
class AlwaysLater:
    """A forwarding sink whose provider is always busy: retry in ten wall-clock seconds."""

    calls: int = 0

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        self.calls += 1
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
        return [
            DeliveryResult(m.outbox_id, False, "busy", error="429", retry_at=later)
            for m in messages
        ]


def test_forwarded_retries_move_to_the_simulated_clock_and_give_up(tmp_path: Path) -> None:
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test", "timezone": "UTC"}]
    )
    busy = AlwaysLater()
    campaigns = compile_paths([EXAMPLES / "welcome_series.cadence"])
    report = trio.run(
        lambda: dry_run(
            campaigns, contacts, start=START, until=dt.timedelta(days=1), render=False,
            forward=lambda source: busy,
        )
    )  # fmt: skip
    (send,) = report.sends
    assert send.template == "welcome" and not send.delivered
    assert send.error == f"gave up after {MAX_FORWARD_ATTEMPTS} tries: 429"
    assert busy.calls == MAX_FORWARD_ATTEMPTS
    # Each retry waited at least a simulated minute, not until the wall-clock time.
    assert send.at >= START + (MAX_FORWARD_ATTEMPTS - 1) * MIN_SIMULATED_RETRY
    assert send.at < START + dt.timedelta(hours=1)


THRIFTY = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign thrifty {
  budget 0.007 USD
  cost email 0.001 USD
  on launch { send email a  wait 1d  send email b }
}
"""


def test_a_budget_spent_mid_run_shows_the_sends_until_then_and_the_campaign_paused(
    store_url: str, tmp_path: Path
) -> None:
    from rich.console import Console

    from cadence.commands.engine import _print_report
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(1, 6)]
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(THRIFTY, "t.cadence")), contacts, start=START,
            until=dt.timedelta(days=5), database_url=store_url,
        )
    )  # fmt: skip
    # Five `a`s on day 0 and two `b`s on day 1 make 0.007 USD; the third `b` would pass it.
    assert Counter((s.at, s.template) for s in report.sends) == {
        (START, "a"): 5, (START + dt.timedelta(days=1), "b"): 2
    }  # fmt: skip
    # The three others are held by the paused campaign: neither completed, exited nor active.
    assert (report.enrolled, report.completed, report.exited) == (5, 2, 0)
    assert (report.active, report.paused) == (0, 3)
    assert report.paused_campaigns == {
        "thrifty": {
            "reason": "budget", "spent": "0.007", "budget": "0.007", "currency": "USD",
            "next": "0.001", "enrollments": 3,
        }
    }  # fmt: skip
    # The JSON summary keeps its shape.
    assert report.summary() == {
        "type": "summary", "sends": 7, "by_template": {"a": 5, "b": 2},
        "enrolled": 5, "completed": 2, "exited": 0,
    }  # fmt: skip
    console = Console(record=True, width=200)
    _print_report(report, None, console)
    text = console.export_text()
    assert (
        "thrifty paused: budget spent (0.007 of 0.007 USD; the next message would cost 0.001 USD)"
    ) in text
    # The sends per template sit under the sends, not under the held enrollments (where
    # `a 5` read as five of the three held).
    rows = [
        cells
        for line in text.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 2
    ]
    assert rows == [
        ["sends", "7"], ["a", "5"], ["b", "2"], ["enrolled", "5"], ["completed", "2"],
        ["exited", "0"], ["still active", "0"], ["held (campaign paused)", "3"],
    ]  # fmt: skip


HISTORY = """
segment enquirers = count(course_enquiry, 90d) >= 1
template intake email { subject "Spring intake" body "<p>Apply.</p>" }
template welcome email { subject "Welcome" body "<p>Hi.</p>" }
campaign intake {
  audience enquirers
  exclude last(application_started) within 30d
  on launch { send email intake }
}
campaign enquiry_reply { when course_enquiry send email welcome }
"""


def test_events_before_the_start_are_history_the_launch_sees(tmp_path: Path) -> None:
    # Events dated before --start happened before the simulation: the launch audience,
    # segments and counts see them, and they set off no trigger. Later ones fire triggers.
    source = tmp_path / "intake.cadence"
    source.write_text(HISTORY, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": f"e{i}", "email": f"e{i}@example.test"} for i in range(1, 5)]
    )
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": "e1", "name": "course_enquiry", "at": "2026-11-01T10:00:00Z"},
            {"contact": "e2", "name": "course_enquiry", "at": "2026-08-01T10:00:00Z"},
            {"contact": "e3", "name": "course_enquiry", "at": "2026-11-01T10:00:00Z"},
            {"contact": "e3", "name": "application_started", "at": "2026-11-20T10:00:00Z"},
            {"contact": "e4", "name": "course_enquiry", "at": "2026-12-02T10:00:00Z"},
        ],
    )
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, events=events, start=START,
            until=dt.timedelta(days=5),
        )
    )  # fmt: skip
    assert sends(report) == [
        (START, "e1", "intake"),
        (at("2026-12-02T10:00"), "e4", "welcome"),
    ]


ENTERING = """
segment engaged = count(viewed, 7d) >= 2
template hello email { subject "Hello" body "<p>h</p>" }
on segment_enter engaged { send email hello }
"""


def test_contacts_already_in_the_segment_at_the_start_do_not_enter_it(
    store_url: str, tmp_path: Path
) -> None:
    # docs/language.md: "Contacts who already match when the campaign starts are not
    # enrolled by this trigger". The file's contacts are there at the launch; one that
    # matches by its history is not enrolled, one that comes to match later is.
    source = tmp_path / "entering.cadence"
    source.write_text(ENTERING, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": cid, "email": f"{cid}@example.test"} for cid in "ab"]
    )
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": "a", "name": "viewed", "at": "2026-11-30T10:00:00Z"},
            {"contact": "a", "name": "viewed", "at": "2026-11-30T11:00:00Z"},
            {"contact": "b", "name": "viewed", "at": "2026-11-30T10:00:00Z"},
            {"contact": "b", "name": "viewed", "at": "2026-12-02T10:00:00Z"},
        ],
    )
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, events=events, start=START,
            until=dt.timedelta(days=3), database_url=store_url,
        )
    )  # fmt: skip
    assert sends(report) == [(at("2026-12-02T10:00"), "b", "hello")]


STREAMED = """
template hello email { subject "Hello" body "x" }
template again email { subject "Again" body "x" }
campaign first { audience count(viewed, 30d) >= 3  on launch { send email hello } }
campaign react { reenter always  when viewed { if count(viewed, 30d) >= 5 { send email again } } }
"""


def test_an_events_file_is_pushed_a_chunk_at_a_time_in_time_order_whatever_its_order(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events file is never held whole: the history before the start is pushed a
    chunk at a time, and the later events come out of sorted chunks spilled to disk when
    the file is not in time order. The run is the one the same events sorted by time give
    (events at one instant in the file's order), on both stores."""
    source = tmp_path / "streamed.cadence"
    source.write_text(STREAMED, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": c, "email": f"{c}@example.test"} for c in ("a", "b", "c")]
    )
    hours = [-50, -30, -30, -20, -8, -8, -7, -3, -2, -1, 0, 0, 1, 5, 5, 5, 9, 26, 26, 40, 200]
    rows = [
        {"contact": "abc"[n % 3], "name": "viewed", "at": _iso(START + dt.timedelta(hours=h)),
         "properties": {"n": n}}
        for n, h in enumerate(hours * 2)
    ]  # fmt: skip
    shuffled = [rows[(n * 17) % len(rows)] for n in range(len(rows))]
    assert sorted(map(json.dumps, shuffled)) == sorted(map(json.dumps, rows))
    pushed: list[int] = []
    real_push = dryrun._push_file_events

    async def counted(engine: Any, events: list[dict[str, Any]]) -> None:
        pushed.append(len(events))
        await real_push(engine, events)

    def run(events: list[dict[str, Any]], name: str, url: str) -> list[str]:
        report = trio.run(
            lambda: dry_run(
                compile_paths([source]), contacts, events=write_jsonl(tmp_path / name, events),
                start=START, until=dt.timedelta(days=3), database_url=url,
            )
        )  # fmt: skip
        return report.json_lines()

    # The same events in time order, read straight from the file (a throwaway SQLite store).
    expected = run(sorted(shuffled, key=lambda row: row["at"]), "sorted.jsonl", "sqlite://")
    monkeypatch.setattr(dryrun, "EVENTS_IN_MEMORY", 4, raising=False)
    monkeypatch.setattr(dryrun, "_push_file_events", counted)
    assert run(shuffled, "shuffled.jsonl", store_url) == expected
    history = sum(1 for row in rows if row["at"] < _iso(START))
    # 20 events dated before the start, pushed four at a time, then the later ones.
    assert pushed[:5] == [4, 4, 4, 4, 4] and sum(pushed[:5]) == history
    assert sum(pushed) == len(rows) - 2  # the two after the horizon are never pushed
    sent = [json.loads(line) for line in expected[:-1]]
    assert {line["template"] for line in sent} == {"hello", "again"}


def _iso(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_bad_events_file_is_refused_up_front_with_file_and_line(tmp_path: Path) -> None:
    # A bad `at` crashed the run with a traceback; an unknown contact was reported mid-run
    # as `<events>:N`, N counting within the batch pushed at that moment.
    source = tmp_path / "intake.cadence"
    source.write_text(HISTORY, "utf-8")
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "e1", "email": "e1@example.test"}])
    good = {"contact": "e1", "name": "course_enquiry", "at": "2026-12-02T10:00:00Z"}

    def problems(rows: list[dict[str, Any]]) -> list[str]:
        events = write_jsonl(tmp_path / "e.jsonl", rows)
        with pytest.raises(InvalidInput) as caught:
            trio.run(
                lambda: dry_run(
                    compile_paths([source]), contacts, events=events, start=START,
                    until=dt.timedelta(days=5),
                )
            )  # fmt: skip
        return [str(problem) for problem in caught.value.problems]

    where = tmp_path / "e.jsonl"
    assert problems([good, {**good, "at": "yesterday"}, {**good, "name": "Clicked It"}]) == [
        f"{where}:2: column \"at\": 'yesterday' is not an ISO-8601 date-time"
        " (e.g. 2026-12-01T09:00:00Z or 2026-12-01)",
        f"{where}:3: column \"name\": 'Clicked It' is not an event name"
        " (lowercase letters, digits, _)",
    ]
    assert problems([good, good, {**good, "contact": "nobody"}]) == [
        f"{where}:3: column \"contact\": no contact 'nobody' in tenant 'default'"
    ]
    assert problems([good, {"contact": "e1", "name": "x"}, {"contact": "e1", "name": "y"}]) == [
        f'{where}:2: column "at": a time is required (ISO-8601, e.g. 2026-12-01T09:00:00Z)',
        f'{where}:3: column "at": a time is required (ISO-8601, e.g. 2026-12-01T09:00:00Z)',
    ]
    # An event without a `name` (`event` written for it) crashed with KeyError: 'name'.
    renamed = {"contact": "e1", "event": "course_enquiry", "at": "2026-12-02T10:00:00Z"}
    assert problems([good, renamed]) == [
        f'{where}:2: column "event": not an event field (did you mean "name"?)',
        f'{where}:2: column "name": an event name is required',
    ]


def test_contact_that_is_not_in_the_contacts_file_is_a_usage_error(tmp_path: Path) -> None:
    # A misspelt --contact said "bem receives nothing in this run", as if bem were a contact.
    source = tmp_path / "intake.cadence"
    source.write_text(HISTORY, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": name, "email": f"{name}@example.test"} for name in ("ana", "ben")],
    )
    result = dry_run_cli(
        str(source), "--contacts", str(contacts), "--contact", "bem", "--start",
        "2026-12-01T09:00:00Z", "--until", "1d",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        f"cadence dry-run: --contact: no contact 'bem' in {contacts}; did you mean `ben`?"
    )
    ok = dry_run_cli(
        str(source), "--contacts", str(contacts), "--contact", "ben", "--start",
        "2026-12-01T09:00:00Z", "--until", "1d",
    )  # fmt: skip
    assert ok.returncode == 0 and "ben receives nothing in this run" in ok.stdout


OPT_IN = """
template hello sms "Hi. Reply STOP to opt out."
campaign hello { audience lead_score >= 30  on launch { send sms hello } }
"""


def test_schema_types_a_csv_audience(tmp_path: Path) -> None:
    # Without a schema the sms_opt_in column (`true`, `no`) is a mix, so it stays text: no
    # SMS opt-in for anyone. The schema reads `no` as false and `true` as true.
    source = tmp_path / "hello.cadence"
    source.write_text(OPT_IN, "utf-8")
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "id,phone,sms_opt_in,lead_score\nyes,+14155550101,true,40\nno,+14155550102,no,40\n",
        "utf-8",
    )
    schema = tmp_path / "schema.yaml"
    schema.write_text("attributes:\n  sms_opt_in: boolean\n  lead_score: number\n", "utf-8")
    args = [str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z"]
    typed = dry_run_cli(*args, "--until", "1d", "--json", "--schema", str(schema))
    assert typed.returncode == 0, typed.stderr
    assert [json.loads(line)["contact"] for line in typed.stdout.splitlines()[:-1]] == ["yes"]
    text = dry_run_cli(*args, "--until", "1d", "--json")
    assert text.returncode == 0 and json.loads(text.stdout)["sends"] == 0
    missing = dry_run_cli(*args, "--schema", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr


def test_a_csv_audience_without_a_schema_reads_numbers_and_booleans(tmp_path: Path) -> None:
    """A CSV cell is text; read as such, `lead_score >= 30` matched nobody and `true` was no
    opt-in. Whole columns of numbers or of true/false are now read as numbers or booleans."""
    source = tmp_path / "hello.cadence"
    source.write_text(OPT_IN, "utf-8")
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "id,phone,sms_opt_in,lead_score,zip\n"
        "keen,+14155550101,true,40,02134\n"
        "cold,+14155550102,true,12,10115\n"
        "shy,+14155550103,FALSE,95,94105\n"
        "new,+14155550104,,,\n",
        "utf-8",
    )
    result = dry_run_cli(
        str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "1d", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["contact"] for line in result.stdout.splitlines()[:-1]] == ["keen"]


def test_performance_counts_the_simulated_engagement(tmp_path: Path) -> None:
    """The text report's performance table reads the run's own sends and reactions."""
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": f"c{i}", "email": f"c{i}@example.test", "timezone": "UTC"} for i in range(200)],
    )
    campaigns = compile_paths([EXAMPLES / "welcome_series.cadence"])
    report = trio.run(
        lambda: dry_run(
            campaigns, contacts, start=START, until=dt.timedelta(days=20),
            assume={"opened": 0.5}, seed=3, performance=True,
        )
    )  # fmt: skip
    (welcome,) = report.performance
    assert welcome.total.sent == len(report.sends)
    welcomes = welcome.by_template["welcome"]
    assert welcomes.sent == 200 and welcomes.bounced == 0
    # About half of the welcomes are opened (drawn at 0.5); none is clicked (not assumed).
    assert 70 <= welcomes.opened <= 130 and welcome.total.clicked == 0
    assert (
        trio.run(
            lambda: dry_run(campaigns, contacts, start=START, until=dt.timedelta(days=1))
        ).performance
        == []
    )  # only when asked for: the --json path does not pay for it
    text = run_cadence(
        "dry-run", str(EXAMPLES / "welcome_series.cadence"), "--contacts", str(contacts),
        "--start", "2026-12-01T09:00:00Z", "--until", "20d", "--assume", "opened=0.5",
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "Performance with simulated engagement" in text.stdout


def test_piped_reports_print_every_cell_whole(tmp_path: Path) -> None:
    # Piped or redirected, with no $COLUMNS, rich laid tables out at 80 columns and cut
    # their cells ("2,000 (10…"): the report's numbers, in a file or for a script.
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "id,email\n" + "".join(f"c{i},c{i}@example.test\n" for i in range(1200)), encoding="utf-8"
    )
    piped = run_cadence(
        "dry-run", str(EXAMPLES / "welcome_series.cadence"), "--contacts", str(contacts),
        "--start", "2026-12-01T09:00:00Z", "--until", "20d", "--assume", "opened=0.5",
        columns=None,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "Performance with simulated engagement" in piped.stdout
    assert "…" not in piped.stdout
    assert re.search(r"│ 4,800 │ 4,800 \(100\.0%\) │", piped.stdout), piped.stdout


def test_assumed_rates_are_shares_of_the_sends_as_the_report_counts_them(tmp_path: Path) -> None:
    """`--assume opened=0.25,clicked=0.05,converted=0.02`, as the source material's metrics
    are read (each over what was delivered), shows as about those rates in the report.
    Each used to be drawn only among those with the reaction before, so the clicks came to
    1.25% and the conversions to 0.025%."""
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    source = 'template offer email { subject "Offer" body "x" }\n'
    source += "campaign promo { approval none  on launch { send email offer } }"
    people = [{"id": f"c{i}", "email": f"c{i}@example.test"} for i in range(2000)]
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(source, "t.cadence")), contacts, start=START,
            until=dt.timedelta(days=1), seed=7, performance=True,
            assume={"opened": 0.25, "clicked": 0.05, "converted": 0.02},
        )
    )  # fmt: skip
    (promo,) = report.performance
    total = promo.total
    assert total.sent == 2000
    # Binomial(2000, p): each within about four standard deviations of its rate.
    assert 420 <= total.opened <= 580
    assert 60 <= total.clicked <= 140
    assert 20 <= total.converted <= 60
    assert total.replied == 0  # not assumed
    # Clicks come after opens, conversions after clicks: each is among the ones before.
    assert total.clicked <= total.opened and total.converted <= total.clicked


BRANCHING = """
template a email { subject "A" body "x" }
template b email { subject "B" body "x" }
campaign f {
  on launch {
    send email a
    wait 1d
    if opened(a) { send email b } else { exit "quiet" }
    wait 1d
    exit "done"
  }
}
"""


def test_the_funnel_counts_each_path_through_a_branch(store_url: str, tmp_path: Path) -> None:
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(40)]
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(BRANCHING, "f.cadence")), contacts, start=START,
            until=dt.timedelta(days=5), assume={"opened": 0.5}, seed=3, database_url=store_url,
        )
    )  # fmt: skip
    opened = Counter(s.template for s in report.sends)["b"]
    assert 0 < opened < 40  # both paths taken
    assert report.funnel == {
        "f": {
            "send_a": 40, "wait_1d": 40, "if_1": 40, "send_b": opened, "wait_1d_2": opened,
            "exit_done": opened, "exit_quiet": 40 - opened,
        }
    }  # fmt: skip


ENGAGED = """
segment clickers = count(clicked, 30d) >= 1
template a email { subject "A" body "<p>a</p>" }
template b email { subject "B" body "<p>b</p>" }
template nudge email { subject "Nudge" body "<p>n</p>" }
template thanks email { subject "Thanks" body "<p>t</p>" }
template club email { subject "Club" body "<p>c</p>" }
campaign tested {
  goal converted
  on launch {
    split 50% test winner by opens after 4h {
      a: send email a
      b: send email b
    }
    wait for clicked(any) up to 2d
    send email nudge
  }
}
campaign thanked { when replied send email thanks }
campaign clubbed { on segment_enter clickers { send email club } }
"""


def _whole_store(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every store table in id order, and each event's properties as stored."""
    from sqlalchemy import Text, cast, select

    from cadence.engine.store import Store
    from cadence.engine.store.models import Base, Event

    with Store.open(url) as store, store.session() as session:
        rows = {
            table.name: [
                tuple(row)
                for row in session.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
            if table.name != "tenants"  # made on the wall clock, by the engine's start
        }
        # The JSON text too: linking appends `channel` last, and the stored text keeps order.
        rows["event properties"] = [
            tuple(row)
            for row in session.execute(select(cast(Event.properties, Text)).order_by(Event.id))
        ]
    return rows


def test_simulated_engagement_is_stored_and_acts_as_pushed_events_would(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink's linked records store the rows, and set off what, pushed events would."""
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text
    from cadence.engine.runtime import Engine
    from cadence.engine.store.records import EventRecord
    from tests.conftest import _empty_postgres

    people = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in range(60)]
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    # Due with the first sends' opens: those batches mix the file's events and reactions.
    visits = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": f"p{i}", "name": "visited", "at": "2026-12-01T10:00:00Z"}
            for i in range(0, 60, 6)
        ],
    )
    campaigns = compile_workspace(load_text(ENGAGED, "t.cadence"))

    def simulate() -> tuple[list[str], dict[str, Any], dict[str, list[tuple[Any, ...]]]]:
        report = trio.run(
            lambda: dry_run(
                campaigns, contacts, events=visits, start=START, until=dt.timedelta(days=4),
                seed=5, assume={"opened": 0.6, "clicked": 0.5, "replied": 0.5, "converted": 0.3},
                database_url=store_url,
            )
        )  # fmt: skip
        return report.json_lines(), report.ab_tests, _whole_store(store_url)

    lines, ab_tests, stored = simulate()
    names = Counter(row[3] for row in stored["events"])
    assert min(names[name] for name in ("opened", "clicked", "replied", "converted")) > 0
    visited = {row[4] for row in stored["events"] if row[3] == "visited"}
    assert visited & {row[4] for row in stored["events"] if row[3] == "opened"}
    # Each reaction sets something off: the A/B verdict, wake-ups, triggers, segment entry.
    sent = Counter(json.loads(line).get("campaign") for line in lines)
    assert ab_tests and min(sent[name] for name in ("tested", "thanked", "clubbed")) > 0
    assert sent["tested"] > 60 and stored["event properties"]

    def before(event: EventRecord) -> dict[str, Any]:
        # The sink's dicts before the linked path: the send's key, no channel, time as text.
        return {
            "contact": event.contact_id, "name": event.name, "at": event.at.isoformat(),
            "properties": {k: v for k, v in event.properties.items() if k != "channel"},
        }  # fmt: skip

    async def as_pushed_before(self: Engine, events: list[EventRecord]) -> int:
        return await self.push_events([before(event) for event in events])

    if store_url.startswith("sqlite"):
        store_url = f"sqlite:///{tmp_path / 'pushed.db'}"
    else:
        _empty_postgres(store_url)
    monkeypatch.setattr(Engine, "push_linked_events", as_pushed_before)
    monkeypatch.setattr(dryrun, "event_dict", before)
    pushed_lines, pushed_ab_tests, pushed = simulate()
    assert (pushed_lines, pushed_ab_tests) == (lines, ab_tests)
    for table, rows in stored.items():
        assert pushed[table] == rows, table


DELIVERY = """
template a email { subject "A" body "x" }
template note inbox "An in-app note"
template yes email { subject "Yes" body "x" }
template no email { subject "No" body "x" }
campaign d {
  on launch {
    send email a
    send inbox note
    wait 1d
    if delivered(a) and not delivered(note) { send email yes }
    else if bounced(a) { exit "bounced" }
    else { send email no }
  }
}
"""


def _delivery_run(
    url: str,
    tmp_path: Path,
    count: int,
    source: str = DELIVERY,
    people: list[dict[str, Any]] | None = None,
    **options: Any,
) -> DryRunReport:
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    if people is None:
        people = [{"id": f"p{i:03}", "email": f"p{i:03}@example.test"} for i in range(count)]
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    return trio.run(
        lambda: dry_run(
            compile_workspace(load_text(source, "d.cadence")), contacts, start=START,
            until=dt.timedelta(days=3), seed=3, database_url=url, **options,
        )
    )  # fmt: skip


def test_every_send_is_delivered_as_a_provider_would_report_it(
    store_url: str, tmp_path: Path
) -> None:
    """Unless told otherwise, every email (SMS, WhatsApp) is reported delivered, a minute
    after it went out, as Brevo and Infobip report almost all: `delivered(a)` holds a day
    later, as it would live. An inbox message has no provider to report it."""
    report = _delivery_run(store_url, tmp_path, 6)
    assert Counter(s.template for s in report.sends) == {"a": 6, "note": 6, "yes": 6}
    delivered = events_named(store_url, "delivered")
    assert sorted(props["template"] for _, props in delivered) == ["a"] * 6 + ["yes"] * 6
    assert {props["channel"] for _, props in delivered} == {"email"}
    sent = {(s.contact, s.template): s.at for s in report.sends}
    assert sorted(_times(store_url, "delivered")) == sorted(
        at + dryrun.DELIVERY_DELAY for (_, template), at in sent.items() if template != "note"
    )


def _times(url: str, name: str) -> list[dt.datetime]:
    """When each stored event of this name happened (UTC)."""
    from sqlalchemy import select

    from cadence.engine.clock import as_utc
    from cadence.engine.store import Store
    from cadence.engine.store.models import Event

    with Store.open(url) as store, store.session() as session:
        return [as_utc(at) for at in session.scalars(select(Event.at).where(Event.name == name))]


def test_assumed_deliveries_and_bounces_split_the_sends_and_only_delivered_ones_engage(
    store_url: str, tmp_path: Path
) -> None:
    """`delivered=0.6,bounced=0.2`: about 60% of the emails are reported delivered, 20%
    bounced (hard: the address is suppressed, as live) and the rest not reported; opens,
    clicks ... happen only on delivered sends, each rate a share of those (opened=1: all)."""
    # Every message is opened here, the in-app note too, and a read note was delivered
    # (engine/delivery.py): `not delivered(note)` would hold for nobody, so it is left out.
    report = _delivery_run(
        store_url, tmp_path, 100, source=DELIVERY.replace(" and not delivered(note)", ""),
        assume={"delivered": 0.6, "bounced": 0.2, "opened": 1.0}, performance=True,
    )  # fmt: skip
    funnel = report.funnel["d"]
    assert 40 <= funnel["send_yes"] <= 80
    assert 8 <= funnel["exit_bounced"] <= 35
    assert 8 <= funnel["send_no"] <= 35
    assert funnel["send_yes"] + funnel["exit_bounced"] + funnel["send_no"] == 100
    events = {name: events_named(store_url, name) for name in ("delivered", "bounced", "opened")}

    def keys(name: str, template: str = "a") -> set[str]:
        return {props["send"] for _, props in events[name] if props["template"] == template}

    assert keys("opened") == keys("delivered") and len(keys("delivered")) == funnel["send_yes"]
    assert not keys("bounced") & keys("delivered")
    assert len(keys("bounced")) == funnel["exit_bounced"]
    assert {props["type"] for _, props in events["bounced"]} == {"hard"}
    (performance,) = report.performance
    assert performance.total.bounced == len(events["bounced"])
    # Each bounced address is suppressed, as a provider's hard bounce suppresses it live.
    assert suppressions(store_url) == {
        ("email", f"{contact}@example.test", None, "bounced") for contact, _ in events["bounced"]
    }


def test_deliveries_are_stored_only_when_a_campaign_of_the_run_can_read_them(
    store_url: str, tmp_path: Path
) -> None:
    """Storing a report per send costs: without a campaign that reads `delivered`, none is
    stored (bounces, which suppress, always are)."""
    from tests.conftest import _empty_postgres

    _delivery_run(store_url, tmp_path, 20, source=BRANCHING, assume={"opened": 0.5})
    assert events_named(store_url, "opened") and not events_named(store_url, "delivered")
    if store_url.startswith("sqlite"):
        store_url = f"sqlite:///{tmp_path / 'bounces.db'}"
    else:
        _empty_postgres(store_url)
    _delivery_run(store_url, tmp_path, 20, source=BRANCHING, assume={"bounced": 0.5})
    assert events_named(store_url, "bounced") and not events_named(store_url, "delivered")


def test_links_are_those_a_live_send_gets(tmp_path: Path) -> None:
    """Every message gets a preference link; only an email a web version, as when sent."""
    source = tmp_path / "links.cadence"
    source.write_text(
        """
template mail email { subject "Mail" body "<a href='{{ view_in_browser_url }}'>web</a>" }
template text sms { body "Settings: {{ preferences_url }}" }
template text_web sms { body "Read it: {{ view_in_browser_url }}" }
campaign links {
  on launch { send email mail  send sms text  send sms text_web }
}
""",
        encoding="utf-8",
    )
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "ana", "email": "ana@example.test", "phone": "+491510001234",
          "attributes": {"sms_opt_in": True}}],
    )  # fmt: skip
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, start=START, until=dt.timedelta(hours=1),
            render={"ana"},
        )
    )  # fmt: skip
    errors = {s.template: s.render_error for s in report.sends}
    assert errors["mail"] is None and errors["text"] is None
    assert errors["text_web"] is not None and "view_in_browser_url" in errors["text_web"]
    assert "only an email has a web version" in errors["text_web"]


def test_the_engine_imports_no_numpy_or_arrow_until_caps_or_audiences_need_them() -> None:
    # numpy and Arrow take about half a second to import; only caps, rate limits and
    # audience selection need them (see `cadence.dispatch`).
    import subprocess
    import sys

    probe = (
        "import sys, cadence.cli, cadence.engine.dryrun, cadence.engine.runtime; "
        "print(sorted({'numpy', 'pyarrow'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"


DOUBLE_OPT_IN = """
template confirm_signup email {
  subject "Please confirm"
  body "<p>Click to confirm: <a href=\\"{{ confirm_url }}\\">confirm</a></p>"
}
template confirm_text sms "Tap to confirm: {{ confirm_url }}"
template welcome email { subject "Welcome" body "<p>Hi.</p>" }
template news email { subject "News" body "<p>News.</p>" }
campaign double_opt_in {
  when consent_requested where event.channel == "email" { send email confirm_signup }
}
campaign sms_opt_in {
  when consent_requested where event.channel == "sms" { send sms confirm_text }
}
campaign greet { when consent_granted where event.channel == "email" { send email welcome } }
campaign weekly { on launch { wait 1d  send email news } }
"""


def test_a_dry_run_sends_the_confirmation_with_a_placeholder_link(tmp_path: Path) -> None:
    # The events file's consent events record the consent they report, as `set_consent`
    # does live: a pending one lets its confirmation through, rendered with a stand-in link.
    source = tmp_path / "optin.cadence"
    source.write_text(DOUBLE_OPT_IN, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "ana", "email": "ana@example.test"},
            {"id": "bo", "email": "bo@example.test", "phone": "+491510000002"},
        ],
    )
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": "ana", "name": "consent_requested", "properties": {"channel": "email"},
             "at": "2026-12-01T10:00:00Z"},
            {"contact": "bo", "name": "consent_requested", "properties": {"channel": "sms"},
             "at": "2026-12-01T10:00:00Z"},
            {"contact": "ana", "name": "consent_granted", "properties": {"channel": "email"},
             "at": "2026-12-03T10:00:00Z"},
        ],
    )  # fmt: skip
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, events=events, start=START,
            until=dt.timedelta(days=5),
        )
    )  # fmt: skip
    # Ana's email waits for her confirmation on day 2 (no news), then she is welcomed.
    assert sends(report) == [
        (at("2026-12-01T10:00"), "ana", "confirm_signup"),
        (at("2026-12-01T10:00"), "bo", "confirm_text"),
        (at("2026-12-02T09:00"), "bo", "news"),
        (at("2026-12-03T10:00"), "ana", "welcome"),
    ]
    assert [(s.contact, s.template, s.reason) for s in report.skipped] == [
        ("ana", "news", "no consent (pending)")
    ]
    rendered = {s.template: (s.subject, s.render_error) for s in report.sends}
    assert rendered["confirm_signup"] == ("Please confirm", None)
    assert rendered["confirm_text"] == (
        "Tap to confirm: https://links.cadence.invalid/optin/default/bo",
        None,
    )


def test_a_consent_event_on_a_channel_that_takes_none_is_refused_up_front(
    tmp_path: Path,
) -> None:
    """`"channel": "fax"` stopped the run when the simulated clock reached that event,
    with "--events: channel 'fax' takes no consent" and no line; a consent event with no
    channel recorded nothing, silently. Both are the file's problems, listed before the run
    with their lines, as a bad `at` is."""
    source = tmp_path / "optin.cadence"
    source.write_text(DOUBLE_OPT_IN, "utf-8")
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "ana", "email": "ana@example.test"}])
    rows = [
        {"contact": "ana", "name": "consent_requested", "properties": {"channel": "email"},
         "at": "2026-12-01T10:00:00Z"},
        {"contact": "ana", "name": "consent_granted", "properties": {"channel": "fax"},
         "at": "2026-12-03T10:00:00Z"},
        {"contact": "ana", "name": "consent_withdrawn", "at": "2026-12-04T10:00:00Z"},
        {"contact": "ana", "name": "clicked", "at": "2026-12-04T10:00:00Z"},
    ]  # fmt: skip
    events = write_jsonl(tmp_path / "e.jsonl", rows)
    progress: list[dt.datetime] = []
    with pytest.raises(InvalidInput) as caught:
        trio.run(
            lambda: dry_run(
                compile_paths([source]), contacts, events=events, start=START,
                until=dt.timedelta(days=5), on_progress=lambda at, _sends: progress.append(at),
            )
        )  # fmt: skip
    channels = "one of email, inbox, sms, whatsapp"
    assert [str(problem) for problem in caught.value.problems] == [
        f"{events}:2: column \"properties.channel\": channel 'fax' takes no consent; {channels}",
        f'{events}:3: column "properties.channel": a consent needs a channel; {channels}',
    ]
    assert progress == []


SUBMITTED = """
template finish email { subject "Finish your application" body "<p>Almost there.</p>" }
campaign abandoned {
  when application_started {
    wait for application_submitted up to 2d
    if count(application_submitted, 3d) = 0 { send email finish }
  }
}
"""


def test_an_event_name_one_typo_from_what_a_campaign_reads_is_named(
    store_url: str, tmp_path: Path
) -> None:
    """`application_submited` in the events file reaches no `wait for`, so the reminder goes
    out as if nobody submitted, and `unsubscribe` suppresses nobody; the run says which
    name was meant. Names merely for other campaigns (a shared file) and events the engine
    acts on itself are not listed."""
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test"}])
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": "a", "name": "application_started", "at": "2026-12-01T10:00:00Z"},
            {"contact": "a", "name": "application_submited", "at": "2026-12-01T11:00:00Z"},
            {"contact": "a", "name": "application_submited", "at": "2026-12-01T12:00:00Z"},
            {"contact": "a", "name": "property_viewed", "at": "2026-12-01T12:00:00Z"},
            {"contact": "a", "name": "unsubscribe", "at": "2026-12-02T12:00:00Z"},
            {"contact": "a", "name": "consent_granted", "at": "2026-12-01T12:00:00Z",
             "properties": {"channel": "sms"}},
        ],
    )  # fmt: skip
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(SUBMITTED, "s.cadence")), contacts, events=events,
            start=START, until=dt.timedelta(days=5), database_url=store_url,
        )
    )  # fmt: skip
    assert sends(report) == [(at("2026-12-03T10:00"), "a", "finish")]
    assert report.unread_events == [
        dryrun.UnreadEvents("application_submited", 2, "application_submitted"),
        dryrun.UnreadEvents("unsubscribe", 1, "unsubscribed"),  # suppresses nobody
    ]
    assert report.unread_events[0].warning(events) == (
        f"{events}: 2 events named `application_submited` are read by no campaign; "
        "did you mean `application_submitted`?"
    )


def test_the_command_line_warns_about_a_misspelt_event_on_stderr(tmp_path: Path) -> None:
    """The warning goes to stderr: `--json` output stays JSON Lines."""
    source = tmp_path / "s.cadence"
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test"}])
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [{"contact": "a", "name": "application_submitted", "at": "2026-12-01T11:00:00Z"}],
    )
    source.write_text(
        SUBMITTED.replace("application_submitted", "application_submited"), "utf-8"
    )  # the campaign misspells it this time
    result = run_cadence(
        "dry-run", str(source), "--contacts", str(contacts), "--events", str(events),
        "--start", "2026-12-01T09:00:00Z", "--until", "1d", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert all(json.loads(line) for line in result.stdout.splitlines())
    assert (
        f"cadence dry-run: warning: {events}: 1 event named `application_submitted` is read "
        "by no campaign; did you mean `application_submited`?"
    ) in result.stderr


LATE_START = """
template welcome email { subject "Welcome" body "<p>Hi.</p>" }
template news email { subject "News" body "<p>News.</p>" }
campaign welcome_series {
  timezone fallback "America/New_York"
  starts 2026-12-01
  on contact_created { send email welcome }
}
campaign newsletter { starts 2027-03-01T09:00  on launch { send email news } }
campaign now { on launch { send email news } }
"""


def run_late_start(store_url: str, tmp_path: Path, start: dt.datetime) -> DryRunReport:
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "email": "a@example.test"}])
    return trio.run(
        lambda: dry_run(
            compile_workspace(load_text(LATE_START, "late.cadence")), contacts, start=start,
            until=dt.timedelta(days=30), database_url=store_url,
        )
    )  # fmt: skip


def test_a_campaign_that_starts_after_the_run_starts_is_named(
    store_url: str, tmp_path: Path
) -> None:
    """LANGUAGE.md's welcome series `starts 2026-12-01`: run from before then, as a dry-run
    is by default (now), the file's contacts are new at the run's start, before the
    campaign takes anyone, and the run showed nothing at all, without a word."""
    start = at("2026-11-29T08:00")
    report = run_late_start(store_url, tmp_path, start)
    assert sends(report) == [(start, "a", "news")]
    assert report.late_starts == [
        dryrun.LateStart(
            "welcome_series", at("2026-12-01T05:00"), contact_created=True, after_the_run=False
        ),  # midnight in New York
        dryrun.LateStart(
            "newsletter", at("2027-03-01T09:00"), contact_created=False, after_the_run=True
        ),
    ]
    assert report.late_starts[0].warning(start) == (
        "welcome_series starts 2026-12-01 05:00 UTC, after the run's start (2026-11-29 08:00"
        " UTC): it enrolls nobody before then; the contacts file's people are new at the"
        " run's start, so they do not enter its `on contact_created`"
        " (--start 2026-12-01T05:00:00Z runs from it)"
    )
    assert (
        report.late_starts[1]
        .warning(start)
        .endswith(
            "it enrolls nobody before then; that is after the run's end"
            " (--start 2027-03-01T09:00:00Z runs from it)"
        )
    )


def test_from_the_start_a_late_start_names_the_welcome_goes_out(
    store_url: str, tmp_path: Path
) -> None:
    starts = at("2026-12-01T05:00")
    report = run_late_start(store_url, tmp_path, starts)
    assert sends(report) == [(starts, "a", "news"), (starts, "a", "welcome")]
    assert [late.campaign for late in report.late_starts] == ["newsletter"]


def _cli_dry_run(
    tmp_path: Path, text: str, people: list[dict[str, Any]], *options: str
) -> subprocess.CompletedProcess[str]:
    """`cadence dry-run` of `text` over `people`, with the command-line `options`."""
    source = tmp_path / "campaigns.cadence"
    source.write_text(text, "utf-8")
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    return run_cadence("dry-run", str(source), "--contacts", str(contacts), *options)


def test_the_command_line_names_a_late_start_on_stderr(tmp_path: Path) -> None:
    result = _cli_dry_run(
        tmp_path, LATE_START, [{"id": "a", "email": "a@example.test"}],
        "--start", "2026-11-29T08:00:00Z", "--until", "1d", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert all(json.loads(line) for line in result.stdout.splitlines())
    assert "cadence dry-run: warning: welcome_series starts 2026-12-01 05:00 UTC" in result.stderr


def test_a_confirmation_that_formats_a_date_or_price_is_still_the_confirmation(
    store_url: str, tmp_path: Path
) -> None:
    """A template is the confirmation message when it uses `confirm_url`. Its names were
    read with `jinja2.meta`, which compiles the text and failed on the renderer's filters
    (`date`, `money`): a confirmation that said when the offer ends had no names, so the
    pending consent held it as any other email, and nobody could confirm."""
    source = tmp_path / "optin.cadence"
    source.write_text(
        DOUBLE_OPT_IN.replace(
            '"<p>Click to confirm: <a href=\\"{{ confirm_url }}\\">confirm</a></p>"',
            "\"<p>Offer ends {{ '2026-12-24' | date }}, {{ 20 | money('USD') }} off:"
            ' <a href=\\"{{ confirm_url }}\\">confirm</a></p>"',
        ),
        "utf-8",
    )
    assert "| date" in source.read_text()
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "ana", "email": "ana@example.test"}])
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [{"contact": "ana", "name": "consent_requested", "properties": {"channel": "email"},
          "at": "2026-12-01T10:00:00Z"}],
    )  # fmt: skip
    report = trio.run(
        lambda: dry_run(
            compile_paths([source]), contacts, events=events, start=START,
            until=dt.timedelta(days=2), database_url=store_url,
        )
    )  # fmt: skip
    assert sends(report) == [(at("2026-12-01T10:00"), "ana", "confirm_signup")]
    assert [(s.template, s.reason) for s in report.skipped] == [("news", "no consent (pending)")]


CITY_NEWS = """
template city_news email {
  subject "News from {{ contact.city }}"
  body "<p>Hi</p>"
}
template plain email { subject "Hello" body "<p>Hi</p>" }
template later email { subject "Later" body "<p>Hi</p>" }
campaign news {
  on launch {
    send email city_news
    send email plain
    wait 1d
    if opened(city_news) { send email later }
  }
}
"""


def _city_run(url: str, tmp_path: Path, count: int, **options: Any) -> DryRunReport:
    """The news campaign over `count` contacts: the even ones have a city, the odd do not."""
    people = [
        {
            "id": f"p{i:03}",
            "email": f"p{i:03}@example.test",
            **({"city": "Lyon"} if i % 2 == 0 else {}),
        }
        for i in range(count)
    ]
    return _delivery_run(url, tmp_path, count, CITY_NEWS, people, **options)


def test_a_send_whose_template_cannot_render_fails_as_it_would_live(
    store_url: str, tmp_path: Path
) -> None:
    """`{{ contact.city }}` for a contact without a city fails that send live (the adapter
    sink renders it). The dry-run counted it delivered, drew opens for it and sent the
    follow-up to whoever "opened" a message nobody received."""
    report = _city_run(store_url, tmp_path, 6, assume={"opened": 1.0}, performance=True)
    by_send = {(s.contact, s.template): s for s in report.sends}
    for i in range(6):
        news = by_send[(f"p{i:03}", "city_news")]
        if i % 2 == 0:
            assert news.error is None and news.delivered
        else:
            assert not news.delivered
            assert news.error is not None and "`contact.city` is undefined" in news.error
        assert by_send[(f"p{i:03}", "plain")].delivered  # the other template is not held
    # Only the rendered messages were opened, so only their readers got the follow-up.
    assert sorted(s.contact for s in report.sends if s.template == "later") == [
        "p000", "p002", "p004"
    ]  # fmt: skip
    (news_report,) = report.performance
    # 3 city_news (the 3 failures were not sent), 6 plain, 3 later.
    assert news_report.total.sent == 12
    assert news_report.by_template["city_news"].sent == 3
    (group,) = failed_sends(report.sends)
    assert (group.campaign, group.template, group.count) == ("news", "city_news", 3)
    assert group.contacts == ("p001", "p003", "p005")
    # Stored as delivery records a failure: the outbox row failed, its log entry too.
    from sqlalchemy import select

    from cadence.engine.store import Store
    from cadence.engine.store.models import OutboxMessage, SendLog

    with Store.open(store_url) as store, store.session() as session:
        failed = session.execute(
            select(OutboxMessage.contact_id, OutboxMessage.status, OutboxMessage.error)
            .where(OutboxMessage.template == "city_news")
            .order_by(OutboxMessage.contact_id)
        ).all()
        outcomes = session.execute(
            select(SendLog.outcome, SendLog.cost)
            .join(OutboxMessage, OutboxMessage.id == SendLog.outbox_id)
            .where(OutboxMessage.contact_id == "p001", OutboxMessage.template == "city_news")
        ).all()
    assert [(cid, status) for cid, status, _ in failed] == [
        (f"p{i:03}", "sent" if i % 2 == 0 else "failed") for i in range(6)
    ]
    assert all("contact.city" in (error or "") for _, status, error in failed if status == "failed")
    assert outcomes == [("failed", None)]


def test_a_template_is_rendered_once_per_shape_of_what_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 contacts, two shapes (with a city, without): each template renders once per
    shape, not once per send, and every send still gets its verdict. The cities differ, but
    a city is only printed, so its value cannot change whether the render fails."""
    from cadence.adapters.render import TemplateRenderer

    renders: list[str] = []
    real = TemplateRenderer.render

    def counted(self: TemplateRenderer, template: Any, *args: Any, **kwargs: Any) -> Any:
        renders.append(template.name)
        return real(self, template, *args, **kwargs)

    monkeypatch.setattr(TemplateRenderer, "render", counted)
    report = _city_run("sqlite://", tmp_path, 200, render=False)
    assert sum(1 for s in report.sends if s.error is not None) == 100
    assert Counter(renders) == {"city_news": 2, "plain": 1}


MONEY_OFFER = """
template offer email { subject "Your price: {{ contact.price | money('USD') }}" body "<p>x</p>" }
campaign offers { on launch { send email offer } }
"""


def test_one_contacts_unreadable_value_fails_only_their_send(tmp_path: Path) -> None:
    """Prices "abc", "12.50" and "99" are all text, so all three sends are alike in kind:
    the first one's failure was taken for all three, though live only "abc" fails."""
    people = [
        {"id": "a", "email": "a@example.test", "price": "abc"},
        {"id": "b", "email": "b@example.test", "price": "12.50"},
        {"id": "c", "email": "c@example.test", "price": "99"},
        {"id": "d", "email": "d@example.test", "price": "abc"},
    ]
    result = _cli_dry_run(
        tmp_path, MONEY_OFFER, people, "--start", "2026-12-01T09:00:00Z", "--until", "1d",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "cadence dry-run: warning: 2 sends of offers (offer) would fail: template offer"
        " (subject), line 1: TypeError: expected a number, got 'abc' (contacts a, d)"
    ) in result.stderr
    assert sorted(json.loads(line)["contact"] for line in result.stdout.splitlines()[:-1]) == [
        "a", "b", "c", "d"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("templates", "people", "failing", "reason"),
    [
        pytest.param(
            MONEY_OFFER,
            [{"price": "12.50"}, {"price": "abc"}, {"price": "99"}],
            "b",
            "TypeError: expected a number, got 'abc'",
            id="a price money cannot read, after one it can",
        ),
        pytest.param(
            """
template offer email {
  subject "Offer"
  body "<p>{% if contact.plan == 'gold' %}Since {{ contact.since | date }}{% endif %}</p>"
}
campaign offers { on launch { send email offer } }
""",
            [{"plan": "silver", "since": "soon"}, {"plan": "gold", "since": "soon"},
             {"plan": "silver", "since": "later"}],
            "b",
            "TypeError: expected a date or datetime, got 'soon'",
            id="a branch only one plan takes",
        ),
    ],
)  # fmt: skip
def test_a_value_only_one_contact_has_fails_their_send_though_an_alike_one_rendered(
    tmp_path: Path, templates: str, people: list[dict[str, Any]], failing: str, reason: str
) -> None:
    """Contacts alike in the kinds of what the template reads (all text) whose values decide
    whether it renders: the first send rendered, and the dry-run took that for all of them,
    though live the send to `failing` fails. Only that send fails here too."""
    contacts = [
        {"id": cid, "email": f"{cid}@example.test", **fields}
        for cid, fields in zip("abc", people, strict=True)
    ]
    result = _cli_dry_run(
        tmp_path, templates, contacts, "--start", "2026-12-01T09:00:00Z", "--until", "1d",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "would fail" in line]
    assert len(warnings) == 1, result.stderr
    assert "1 send of offers" in warnings[0] and reason in warnings[0], warnings
    assert warnings[0].endswith(f"(contacts {failing})"), warnings


def test_a_blank_event_value_as_the_whole_subject_fails_that_send(tmp_path: Path) -> None:
    """`{{ event.plan }}` as the subject renders empty for a plan of only spaces, which
    fails that send live; the dry-run took the first signup's render for all three."""
    source = tmp_path / "campaigns.cadence"
    source.write_text(
        'template hello email { subject "{{ event.plan }}" body "<p>x</p>" }\n'
        "campaign offers { when signup send email hello }\n",
        "utf-8",
    )
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": cid, "email": f"{cid}@example.test"} for cid in "abc"]
    )
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": cid, "name": "signup", "at": "2026-12-01T10:00:00Z",
             "properties": {"plan": plan}}
            for cid, plan in zip("abc", ("Gold", "  ", "Basic"), strict=True)
        ],
    )  # fmt: skip
    result = run_cadence(
        "dry-run", str(source), "--contacts", str(contacts), "--events", str(events),
        "--start", "2026-12-01T09:00:00Z", "--until", "1d", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "cadence dry-run: warning: 1 send of offers (hello) would fail: template hello"
        " (subject): the subject rendered empty (contacts b)"
    ) in result.stderr


def test_a_text_message_that_renders_empty_fails_only_for_its_contact(tmp_path: Path) -> None:
    """Notes "See you at 9" and " " are both text, so the blank one's send was taken for
    rendered like the first; live it fails: an SMS that renders empty is not sent."""
    people = [
        {"id": c, "phone": f"+1555000000{i}", "sms_opt_in": True} for i, c in enumerate("abc")
    ]
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {
                "contact": c,
                "name": "ping",
                "properties": {"note": note},
                "at": f"2026-12-01T10:0{i}:00Z",
            }
            for i, (c, note) in enumerate([("a", "See you at 9"), ("b", " "), ("c", "Bye")])
        ],
    )
    result = _cli_dry_run(
        tmp_path, 'template note sms "{{ event.note }}"\nwhen ping send sms note', people,
        "--events", str(events), "--start", "2026-12-01T09:00:00Z", "--until", "1d", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "1 send of campaigns_ping (note) would fail: template note (body):"
        " the message rendered empty (contacts b)"
    ) in result.stderr


def test_the_command_line_names_sends_that_would_fail_on_stderr(tmp_path: Path) -> None:
    people = [
        {"id": "a", "email": "a@example.test", "city": "Lyon"},
        {"id": "b", "email": "b@example.test"},
    ]
    result = _cli_dry_run(
        tmp_path, CITY_NEWS, people, "--start", "2026-12-01T09:00:00Z", "--until", "1d", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert (
        "cadence dry-run: warning: 1 send of news (city_news) would fail: template city_news"
        " (subject), line 1: `contact.city` is undefined"
    ) in result.stderr
    assert "(contacts b)" in result.stderr


APPROVALS = """
template t email { subject "T" body "<p>T</p>" }
campaign thousand { audience vip  on launch { send email t } }
campaign over { exclude rank > 1001  on launch { send email t } }
campaign asked { approval required  audience rank <= 10  on launch { send email t } }
campaign never { approval none  on launch { send email t } }
campaign joined { when signup send email t }
"""


def test_a_run_names_the_campaigns_a_live_launch_would_hold_for_approval(
    store_url: str, tmp_path: Path
) -> None:
    """A dry-run approves every campaign, so it sends what the live launch would refuse:
    above 1,000 contacts (1,001 with the exclusion, not the 1,000 of `vip`) and with
    `approval required`. It says which, each with the live launch's reason."""
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    people = [
        {"id": f"c{i:04}", "email": f"c{i}@example.test",
         "attributes": {"rank": i, "vip": i <= 1000}}
        for i in range(1, 1_502)
    ]  # fmt: skip
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(APPROVALS, "a.cadence")), contacts, start=START,
            until=dt.timedelta(hours=1), database_url=store_url, default_cap=None,
        )
    )  # fmt: skip
    assert Counter(s.campaign for s in report.sends) == {
        "thousand": 1000, "over": 1001, "asked": 10, "never": 1501,
    }  # fmt: skip
    assert report.approvals == [  # in the order the campaigns launch, by name
        dryrun.ApprovalNeeded("asked", "it has `approval required`", "dry-run"),
        dryrun.ApprovalNeeded(
            "over", "its launch audience of 1,001 contacts is above 1,000", "dry-run"
        ),
    ]
    assert report.approvals[0].warning() == (
        "asked: it has `approval required`; live, it launches only once approved"
        " (`cadence approve asked --by WHO`); this run approved it as 'dry-run'"
    )


def test_the_command_line_notes_a_launch_that_needs_approval_on_stderr(tmp_path: Path) -> None:
    source = tmp_path / "a.cadence"
    source.write_text(APPROVALS, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl",
        [{"id": "a", "email": "a@example.test", "attributes": {"rank": 1, "vip": True}}],
    )
    result = run_cadence(
        "dry-run", str(source), "--contacts", str(contacts), "--start", "2026-12-01T09:00:00Z",
        "--until", "1h", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert all(json.loads(line) for line in result.stdout.splitlines())
    assert "cadence dry-run: note: asked: it has `approval required`" in result.stderr
    assert "over:" not in result.stderr  # one contact: no approval implied


ELEVEN = "".join(
    f'template t{i:02d} email {{ subject "S" body "<p>x</p>" }}\n'
    f"campaign c{i:02d} {{ on launch {{ send email t{i:02d} }} }}\n"
    for i in range(1, 12)
)


def test_a_run_names_the_campaigns_a_live_launch_would_refuse_for_the_tenants_limit(
    store_url: str, tmp_path: Path
) -> None:
    """Live, a tenant's 11th campaign active at once is refused at its launch (the business
    rule, `max_active_campaigns`), so `cadence run` of this file sends nothing of it; the
    dry-run launches all eleven, and says which one a live launch would refuse, and why, in
    the live engine's words."""
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text
    from cadence.engine.clock import SimulatedClock
    from cadence.engine.runtime import Engine, EngineError

    campaigns = compile_workspace(load_text(ELEVEN, "eleven.cadence"))
    people = [{"id": "a", "email": "a@example.test"}]
    report = trio.run(
        lambda: dry_run(
            campaigns, write_jsonl(tmp_path / "c.jsonl", people), start=START,
            until=dt.timedelta(hours=1), default_cap=None,
        )
    )  # fmt: skip
    assert len({send.campaign for send in report.sends}) == 11

    async def live() -> str:
        async with Engine(store_url, clock=SimulatedClock(START)) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns)
            for campaign in campaigns[:10]:
                await engine.launch(campaign.name)
            with pytest.raises(EngineError) as refused:
                await engine.launch("c11")
            return str(refused.value)

    refusal = trio.run(live)
    assert [over.campaign for over in report.over_limit] == ["c11"]
    reason = report.over_limit[0].reason
    assert reason.startswith("the tenant may have at most 10 campaigns")
    assert refusal.startswith(f"cannot launch 'c11': {reason}; ")
    assert report.over_limit[0].warning() == (
        f"c11: live, its launch is refused: {reason}; this run launched it, as it launches"
        " every campaign of the file"
    )
    source = tmp_path / "eleven.cadence"
    source.write_text(ELEVEN, "utf-8")
    result = run_cadence(
        "dry-run", str(source), "--contacts", str(tmp_path / "c.jsonl"),
        "--start", "2026-12-01T09:00:00Z", "--until", "1h", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"cadence dry-run: note: c11: live, its launch is refused: {reason}" in result.stderr
    assert "c10:" not in result.stderr


CART = """
template reminder email { subject "Your cart" body "<p>x</p>" }
campaign cart { goal converted  when cart_abandoned { wait 1h  send email reminder } }
"""


def test_a_goal_already_reached_before_entry_exits_at_the_first_step(
    store_url: str, tmp_path: Path
) -> None:
    """As docs/language.md says: the goal is a condition on the contact as they are, so a
    conversion from before the contact entered counts, and they leave sent nothing."""
    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text

    people = [{"id": "a", "email": "a@example.test"}, {"id": "b", "email": "b@example.test"}]
    contacts = write_jsonl(tmp_path / "c.jsonl", people)
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": "a", "name": "converted", "at": "2026-11-01T10:00:00Z"},
            {"contact": "a", "name": "cart_abandoned", "at": "2026-12-01T10:00:00Z"},
            {"contact": "b", "name": "cart_abandoned", "at": "2026-12-01T10:00:00Z"},
        ],
    )
    report = trio.run(
        lambda: dry_run(
            compile_workspace(load_text(CART, "cart.cadence")), contacts, events=events,
            start=at("2026-12-01T09:00"), until=dt.timedelta(days=1), database_url=store_url,
            render={"a", "b"},
        )
    )  # fmt: skip
    assert sends(report) == [(at("2026-12-01T11:00"), "b", "reminder")]
    assert (report.enrolled, report.exited, report.completed) == (2, 1, 1)
    # `--contact` says why a receives nothing: where each journey ended, and why.
    assert sorted(report.journeys, key=lambda j: j.contact) == [
        Journey("a", "cart", "exited", at("2026-12-01T10:00"), "wait_1h", "goal reached"),
        Journey("b", "cart", "completed", at("2026-12-01T11:00"), "end", "completed"),
    ]


def test_the_contact_view_says_where_each_journey_ended(tmp_path: Path) -> None:
    people = [{"id": "a", "email": "a@example.test"}]
    events = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"contact": "a", "name": "converted", "at": "2026-11-01T10:00:00Z"},
            {"contact": "a", "name": "cart_abandoned", "at": "2026-12-01T10:00:00Z"},
        ],
    )
    result = _cli_dry_run(
        tmp_path, CART, people, "--events", str(events), "--start", "2026-12-01T09:00:00Z",
        "--until", "1d", "--contact", "a",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a receives nothing in this run" in result.stdout
    # In UTC, as the table's times are: a contact in another zone reads it as such.
    assert (
        "a in cart: exited (last step 2026-12-01 10:00 UTC, wait_1h: goal reached)" in result.stdout
    )


HANDOFF = """\
template agent_intro email { subject "Your agent is {{ contact.agent }}" body "b" }
campaign handoff { on launch { assign agent round_robin  send email agent_intro } }
"""


def test_agents_given_to_the_run_are_assigned_in_rotation(tmp_path: Path) -> None:
    (tmp_path / "h.cadence").write_text(HANDOFF, "utf-8")
    contacts = write_jsonl(
        tmp_path / "c.jsonl", [{"id": f"c{i}", "email": f"c{i}@example.test"} for i in (1, 2, 3)]
    )
    done = dry_run_cli(
        str(tmp_path / "h.cadence"), "--contacts", str(contacts), "--contact", "c3",
        "--start", "2026-12-01T09:00:00Z", "--until", "1d", "--agents", "ana,ben=ben@acme.test",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Your agent is ana" in done.stdout  # c1 ana, c2 ben, c3 ana again
    assert "assigns agents" not in done.stderr


def test_a_run_without_agents_says_assignments_go_to_nobody(tmp_path: Path) -> None:
    (tmp_path / "h.cadence").write_text(HANDOFF, "utf-8")
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "c1", "email": "c1@example.test"}])
    done = dry_run_cli(
        str(tmp_path / "h.cadence"), "--contacts", str(contacts), "--contact", "c1",
        "--start", "2026-12-01T09:00:00Z", "--until", "1d",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "note: handoff assigns agents" in done.stderr
    assert "--agents ana,ben" in done.stderr
    assert "`contact.agent` is undefined" in done.stdout


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ("ana,,ben", "--agents: agent 2 of 'ana,,ben' has no name"),
        ("ana=not-an-address", "--agents: agent 'ana': 'not-an-address' is not an email address"),
    ],
)
def test_bad_agents_exit_2_and_say_which(tmp_path: Path, agents: str, message: str) -> None:
    (tmp_path / "h.cadence").write_text(HANDOFF, "utf-8")
    contacts = write_jsonl(tmp_path / "c.jsonl", [{"id": "c1", "email": "c1@example.test"}])
    done = dry_run_cli(str(tmp_path / "h.cadence"), "--contacts", str(contacts), "--agents", agents)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_the_report_counts_the_sends_a_gate_stopped_by_reason(tmp_path: Path) -> None:
    """Two campaigns contend for one cap slot: the text report showed the newsletter's send
    step reached and nothing sent, saying why only per contact (`--contact`)."""
    people = [
        {"id": "a", "email": "a@example.test"},
        {"id": "b", "email": "b@example.test"},
        {"id": "c"},
    ]
    result = _cli_dry_run(tmp_path, PRIORITIES, people, "--until", "1d")
    assert result.returncode == 0, result.stderr
    rows = [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in result.stdout.splitlines()
        if line.startswith("│")
    ]
    totals = rows[rows.index(["sends", "2"]) : rows.index(["enrolled", "6"])]
    assert totals == [
        ["sends", "2"],
        ["offer", "2"],
        ["not sent", "4"],
        ["cap email 1 reached", "2"],
        ["no email address", "2"],
    ]
