"""Campaigns an ops person writes from the source material, with sends worked out by hand.

Each `.cadence` file under tests/fixtures/source_material/ is one campaign from the briefs
(an education platform's nurture and abandoned applications, a real-estate CRM's listing
fan-out and viewing reminders, an email platform's digest and subject test, a CRM's
win-back), run on small audiences with timezones on both sides of the 2027 daylight-saving
changes, missing addresses, an unsubscribed contact and no SMS consent. The expected sends
(who, when in UTC, which template) were derived from LANGUAGE.md and docs/language.md before
they were compared with the engine; each comment says how. The runs use the real engine on
a simulated clock (`dry_run`) against the test's store, so they run on SQLite and
PostgreSQL, and on the Rust core and its Python twin for the fan-out filter and the caps.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from cadence.dispatch.filter import Backend
from cadence.dsl.compiler import compile_paths
from cadence.engine.dryrun import DryRunReport, dry_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "source_material"
# Wednesday 10 March 2027, 12:00 UTC: 07:00 in New York (EST, UTC-5, until the 14th),
# 13:00 in Madrid (CET, UTC+1, until the 28th), 20:00 in Manila (UTC+8), 06:00 in Chicago
# (CST, UTC-6, until the 14th), 23:00 in Sydney (AEDT, UTC+11, until 4 April).
START = dt.datetime(2027, 3, 10, 12, tzinfo=dt.UTC)


@dataclass
class Core:
    """The core a test runs on, and how many times the segment filter ran on it."""

    name: Backend
    filter_runs: int = 0


@pytest.fixture(params=["rust", "python"])
def core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Core:
    """Run the segment filter (fan-outs, audiences) and the caps on one core each time."""
    import cadence.dispatch
    from cadence.dispatch import caps
    from cadence.dispatch.filter import filter_contacts

    chosen = Core(request.param)

    def on_core(*args: Any, **kwargs: Any) -> Any:
        # The engine passes `backend=None` (the default core) itself: override it.
        chosen.filter_runs += 1
        return filter_contacts(*args, **{**kwargs, "backend": chosen.name})

    # Both are looked up where they are used, so the engine sees the patched names.
    monkeypatch.setattr(cadence.dispatch, "filter_contacts", on_core, raising=False)
    monkeypatch.setattr(
        caps, "FrequencyCaps", functools.partial(caps.FrequencyCaps, backend=chosen.name)
    )
    return chosen


def simulate(
    store_url: str,
    campaign: str,
    contacts: str,
    *,
    events: str | None = None,
    start: dt.datetime = START,
    days: int = 10,
) -> DryRunReport:
    """Dry-run one fixture campaign over one fixture audience in the test's store."""
    compiled = compile_paths([FIXTURES / campaign])
    return trio.run(
        lambda: dry_run(
            compiled, FIXTURES / contacts, events=FIXTURES / events if events else None,
            start=start, until=dt.timedelta(days=days), database_url=store_url,
        )
    )  # fmt: skip


def sends(report: DryRunReport) -> list[tuple[str, str, str | None]]:
    """(UTC instant, contact, template) of every send, in time order then by contact."""
    return sorted((s.at.strftime("%Y-%m-%dT%H:%M"), s.contact, s.template) for s in report.sends)


def skipped(report: DryRunReport) -> list[tuple[str, str, str | None, str]]:
    """(UTC instant, contact, template, reason) of every send a gate stopped."""
    return sorted(
        (s.at.strftime("%Y-%m-%dT%H:%M"), s.contact, s.template, s.reason) for s in report.skipped
    )


def test_course_nurture_waits_for_office_hours_in_each_timezone(store_url: str) -> None:
    """`send_window 09:00-17:00 local weekdays`: a send outside it waits for the next opening,
    and the `wait 2d` / `wait 3d` count from the send that went."""
    report = simulate(store_url, "nurture.cadence", "students.jsonl")
    assert sends(report) == [
        ("2027-03-10T12:00", "mad", "course_intro"),  # 13:00 Madrid: inside the window
        ("2027-03-10T14:00", "ny", "course_intro"),  # 07:00 NY: waits for 09:00 EST
        ("2027-03-10T15:00", "notz", "course_intro"),  # no zone: fallback Chicago, 09:00 CST
        ("2027-03-11T01:00", "mnl", "course_intro"),  # 20:00 Manila: next day 09:00
        ("2027-03-12T12:00", "mad", "course_sms"),
        ("2027-03-12T14:00", "ny", "course_sms"),
        ("2027-03-12T15:00", "noemail", "course_sms"),  # its email was skipped at 09:00 CST
        # mnl: 2d after 01:00 is Saturday 09:00 Manila; the window waits for Monday.
        ("2027-03-15T12:00", "mad", "course_deadline"),
        ("2027-03-15T14:00", "ny", "course_deadline"),  # 10:00 EDT after spring forward
        ("2027-03-15T15:00", "notz", "course_deadline"),  # 10:00 CDT
        ("2027-03-18T01:00", "mnl", "course_deadline"),  # 3d after Monday 09:00 Manila
    ]
    assert skipped(report) == [
        ("2027-03-10T14:00", "unsub", "course_intro", "unsubscribed"),
        ("2027-03-10T15:00", "noemail", "course_intro", "no email address"),
        ("2027-03-12T14:00", "unsub", "course_sms", "unsubscribed"),
        ("2027-03-12T15:00", "notz", "course_sms", "no phone number"),
        ("2027-03-15T01:00", "mnl", "course_sms", "no sms opt-in"),
        ("2027-03-15T14:00", "unsub", "course_deadline", "unsubscribed"),
        ("2027-03-15T15:00", "noemail", "course_deadline", "no email address"),
    ]
    spanish = [
        s.subject for s in report.sends if s.contact == "mad" and s.node == "send_course_intro"
    ]
    assert spanish == ["Tu curso de data empieza pronto"]  # locale es-ES gets the "es" version


def test_abandoned_application_reminds_only_those_who_did_not_submit(store_url: str) -> None:
    """`wait for application_submitted up to 2d`, then a reminder, then an SMS a day later
    moved out of the quiet hours; `reenter after 7d` keeps a second start from re-entering."""
    report = simulate(
        store_url, "abandoned.cadence", "students.jsonl", events="events_abandoned.jsonl"
    )
    assert sends(report) == [
        # ny submitted five hours after starting: the wait ends early, no reminder.
        ("2027-03-12T22:30", "mad", "finish_application"),  # 2d after 22:30 on the 10th
        # noemail: no email to remind (skipped); its SMS 1d later, 20:00 CST, not quiet.
        ("2027-03-14T02:00", "noemail", "finish_sms"),
        # mad: 1d later is 23:30 Madrid, in the 21:00-08:00 quiet hours: goes at 08:00.
        ("2027-03-14T07:00", "mad", "finish_sms"),
    ]
    assert report.enrolled == 3  # mad's second start on the 11th is within 7d of the first


def test_listing_fan_out_respects_budgets_areas_windows_and_caps(
    store_url: str, core: Core
) -> None:
    """`for contacts where contact.budget_max >= event.price and event.city in
    contact.areas`: each listing reaches every buyer it matches, inside 08:00-20:00 local,
    at most 2 per day (`cap email 2 per 1d`); price drops go to those who saved the home,
    under the default cap of 3 emails a week."""
    report = simulate(
        store_url, "listings.cadence", "buyers.jsonl", events="events_listings.jsonl",
        start=dt.datetime(2027, 3, 10, tzinfo=dt.UTC), days=3,
    )  # fmt: skip
    assert sends(report) == [
        ("2027-03-10T02:00", "b1", "new_listing"),  # Loft (Manila, 250k), 10:00 Manila
        ("2027-03-10T03:00", "b1", "new_listing"),  # the same Loft listed again: news too
        ("2027-03-10T13:00", "b2", "new_listing"),  # both Lofts: 21:00/22:00 EST wait for 08:00
        ("2027-03-10T13:00", "b2", "new_listing"),
        # b1's Flat and Studio (14:00, 15:00 UTC, after 20:00 Manila) wait for 08:00 and are
        # capped (2 in the last day); b2's Flat and Studio are capped at once.
        ("2027-03-11T00:00", "b3", "new_listing"),  # Villa (Cebu, 800k); no zone: Manila
        ("2027-03-11T04:00", "b1", "price_drop"),  # saved p1: 3rd email this week
        ("2027-03-11T04:00", "b2", "price_drop"),
    ]
    # b4 has no budget (unknown, not a match), b5 no email, b6 is unsubscribed.
    assert {s.contact for s in report.skipped} == {"b1", "b2", "b5", "b6"}
    capped = [s.reason for s in report.skipped if s.contact in ("b1", "b2")]
    assert capped == ["cap email 2 reached"] * 4
    assert core.filter_runs >= 6  # each of the six events was filtered on this core


def test_listing_fan_out_reads_semicolon_lists_from_a_csv_export(
    store_url: str, core: Core
) -> None:
    """buyers.csv has no schema and writes areas as Manila;Cebu, as the docs write lists:
    `event.city in contact.areas` must read them as lists (a lone `Cebu` too)."""
    report = simulate(
        store_url, "price.cadence", "buyers.csv", events="events_price.jsonl",
        start=dt.datetime(2027, 3, 10, tzinfo=dt.UTC), days=3,
    )  # fmt: skip
    assert sends(report) == [
        ("2027-03-11T04:00", "b1", "listing_email"),  # Cebu in Manila;Cebu, 600k >= 500k
        ("2027-03-11T04:00", "b1", "listing_sms"),
        ("2027-03-11T04:00", "b3", "listing_sms"),  # areas Cebu; no email (skipped)
        ("2027-03-11T05:00", "b2", "price_drop"),  # p2 in saved p1;p2
    ]
    assert core.filter_runs >= 2  # each event filtered on this core
    subjects = {(s.contact, s.template): s.subject for s in report.sends}
    assert subjects[("b1", "listing_email")] == "Nuevo en Cebu: Villa"  # locale es-MX
    assert (
        subjects[("b2", "price_drop")] == "Price drop: Loft now ₱230,000.00"
    )  # money() in the default locale


def test_win_back_enrolls_within_the_hour_after_thirty_days_without_a_login(
    store_url: str,
) -> None:
    """`on segment_enter dormant` with `not (last(login) within 30d)`: the hourly sweep from
    the launch enrolls a contact at the first sweep after the login is more than 30 days
    old (`within` includes its end); a login meets the goal and ends the journey."""
    report = simulate(
        store_url, "reengage.cadence", "students.jsonl", events="events_reengage.jsonl"
    )
    assert sends(report) == [
        # ny logged in 8 Feb 23:30: exactly 30d at 23:30 on 10 Mar, dormant at 00:00.
        ("2027-03-11T00:00", "ny", "miss_you"),
        ("2027-03-11T06:00", "mad", "miss_you"),  # 9 Feb 05:00: 30d at 05:00, sweep at 06:00
        ("2027-03-11T07:00", "notz", "miss_you"),  # 9 Feb 06:00 exactly: sweep at 07:00
        # mnl was dormant already at the launch: not enrolled by segment_enter.
        # notz (12 Mar) and mad (13 Mar) log in again: the goal takes them out.
        ("2027-03-16T00:00", "ny", "last_call"),  # no click in 5d
    ]
    assert (report.enrolled, report.exited) == (3, 2)


def test_monday_digest_keeps_nine_local_across_both_daylight_saving_changes(
    store_url: str,
) -> None:
    """`every monday 09:00 local` until `ends 2027-04-05` (the whole day, Chicago time):
    New York springs forward on 14 March, Madrid on 28 March, Sydney falls back on 4 April."""
    report = simulate(store_url, "digest.cadence", "students.jsonl", days=30)
    expected = []
    for week, (syd, mad, ny) in enumerate(
        [("03-14T22", "03-15T08", "03-15T13"), ("03-21T22", "03-22T08", "03-22T13"),
         ("03-28T22", "03-29T07", "03-29T13"), ("04-04T23", "04-05T07", "04-05T13")]
    ):  # fmt: skip
        monday = dt.date(2027, 3, 15) + dt.timedelta(weeks=week)
        expected += [
            (f"2027-{syd}:00", "syd", "weekly_digest"),  # Sunday night UTC
            (f"{monday}T01:00", "mnl", "weekly_digest"),  # Manila has no DST
            (f"2027-{mad}:00", "mad", "weekly_digest"),
            (f"2027-{ny}:00", "ny", "weekly_digest"),
            (f"{monday}T14:00", "notz", "weekly_digest"),  # Chicago fallback, CDT
        ]
    # noemail has no address (skipped); unsub is excluded.
    assert sends(report) == sorted(expected)


def test_subject_test_holds_the_rest_for_the_winner_after_four_hours(
    store_url: str,
) -> None:
    """`split 50% test winner by opens after 4h`: of 13 contacts reaching the split at the
    launch, 6 or 7 are in the test, shared equally; the rest wait for the verdict 4h after
    the first test send. Nobody opens, so the tie goes to `a`, the first variant."""
    report = simulate(store_url, "ab.cadence", "subscribers.jsonl", days=3)
    variants = [s.variant for s in report.sends]
    tested_b = variants.count("b")
    assert len(report.sends) == 12  # s12 has no email; s13 is not a subscriber
    assert tested_b in (3, 4)
    (verdict,) = report.ab_tests["spring_subjects"]
    assert verdict["winner"] == "a" and verdict["variants"]["b"]["sent"] == tested_b
    zone_hours = {0: {"14:00", "16:00"}, 1: {"12:00", "16:00"}, 2: {"01:00"}}  # NY, Madrid, Manila
    for send in report.sends:
        hour = send.at.strftime("%H:%M")
        assert hour in zone_hours[int(send.contact[1:]) % 3], send
        # 16:00 is the verdict: only held contacts go then, and they get the winner.
        assert hour != "16:00" or send.variant == "a", send


def test_viewing_reminder_picks_whatsapp_or_sms_by_consent_and_quiet_hours(
    store_url: str, core: Core
) -> None:
    """`wait 1d12h` then WhatsApp for an opt-in, else SMS; `quiet_hours 21:00-08:00 local`
    on every channel; `cap sms 1 per 1d` with `reenter always`; consent from an event."""
    report = simulate(
        store_url, "viewing.cadence", "viewers.jsonl", events="events_viewing.jsonl",
        start=dt.datetime(2027, 3, 10, tzinfo=dt.UTC), days=5,
    )  # fmt: skip
    assert sends(report) == [
        # 02:00 + 1d12h = 22:00 Manila on the 11th: quiet until 08:00 (00:00 UTC).
        ("2027-03-12T00:00", "v1", "viewing_wa"),
        ("2027-03-12T00:00", "v2", "viewing_sms"),  # two bookings; the second is capped
        ("2027-03-12T00:00", "v3", "viewing_sms"),  # consent_granted sms on the 10th
        # v5: 22:00 on the 12th + 1d12h = 06:00 EDT on the 14th (after spring forward).
        ("2027-03-14T12:00", "v5", "viewing_sms"),
    ]
    assert sorted((s.contact, s.reason) for s in report.skipped) == [
        ("v2", "cap sms 1 reached"),
        ("v4", "no phone number"),
    ]


def test_open_day_at_a_time_the_spring_forward_skips_pauses_on_its_budget(
    store_url: str,
) -> None:
    """`at 2027-03-14T02:30 local`: 02:30 does not exist in New York or Chicago that night
    (it means 03:00 daylight time); `budget 0.002 USD` at 0.001 USD an email pays for the
    first two, then the campaign pauses and holds the rest."""
    report = simulate(store_url, "openday.cadence", "students.jsonl")
    assert sends(report) == [
        ("2027-03-13T18:30", "mnl", "open_day"),  # 02:30 Manila
        ("2027-03-14T01:30", "mad", "open_day"),  # 02:30 CET
        # ny would be at 07:00 UTC (03:00 EDT) and notz at 08:00 (03:00 CDT): no budget left.
    ]
    assert report.paused_campaigns["open_day_broadcast"]["spent"] == "0.002"
    assert report.paused == 4  # ny, notz, noemail, unsub held where they are


def test_wall_clock_times_that_do_not_exist_or_happen_twice(store_url: str) -> None:
    """`wait until 02:30 local` on the spring-forward night, a daily 09:00 under `cap email
    1 per 1d` (the 23-hour day is capped, as docs/semantics.md says), and 01:30 on the
    fall-back night (the first of the two)."""
    report = simulate(
        store_url, "dst.cadence", "students.jsonl",
        start=dt.datetime(2027, 3, 13, 12, tzinfo=dt.UTC), days=240,
    )  # fmt: skip
    assert sends(report) == [
        ("2027-03-13T14:00", "ny", "daily"),  # Saturday 09:00 EST
        ("2027-03-13T18:30", "mnl", "early"),
        ("2027-03-14T01:30", "mad", "early"),
        ("2027-03-14T02:30", "notz", "early"),  # no zone, no campaign zone: UTC
        ("2027-03-14T07:00", "ny", "early"),  # 02:30 EST does not exist: 03:00 EDT
        # Sunday 09:00 EDT is 13:00 UTC, 23h after Saturday's: capped.
        ("2027-03-15T13:00", "ny", "daily"),
        ("2027-03-16T13:00", "ny", "daily"),  # exactly 24h later: passes
        ("2027-11-06T05:30", "ny", "night"),  # 01:30 EDT
        ("2027-11-07T05:30", "ny", "night"),  # the first 01:30 (EDT) of the two
        ("2027-11-08T06:30", "ny", "night"),  # 01:30 EST
    ]
