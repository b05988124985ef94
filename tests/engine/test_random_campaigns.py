"""Random campaigns built from LANGUAGE.md's constructs keep the promises that hurt when broken.

Each generated campaign (`c1`, with random settings, one or two triggers and nested steps of
every kind, beside a second campaign it can `enroll` into) is checked and compiled; those
without errors are dry-run over the example contacts and events for twelve days, with
simulated opens, clicks, conversions, bounces and unsubscribes. The run must not fail, and
its sends must keep: every frequency cap (its own and the default), its send window and
quiet hours in each contact's zone, its budget, no message on a channel after a hard bounce
or an unsubscribe there, no SMS or WhatsApp without an opt-in, nothing after the campaign's
goal is reached. Two starts: late November, and the week Europe's clocks spring forward.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence.dsl.compiler import check_and_compile_text
from cadence.engine.dryrun import DELIVERY_DELAY, REACTION_DELAY, PlannedSend, dry_run
from cadence.errors import CadenceError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONTACTS = {
    row["id"]: row
    for row in (json.loads(line) for line in (EXAMPLES / "contacts.jsonl").read_text().splitlines())
}
ASSUME = {
    "opened": 0.4, "clicked": 0.2, "converted": 0.05, "replied": 0.05, "bounced": 0.1,
    "unsubscribed": 0.05,
}  # fmt: skip
STARTS = [
    dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC),
    dt.datetime(2027, 3, 25, 9, tzinfo=dt.UTC),  # Europe springs forward on the 28th
]

DECLARATIONS = """
template e1 email {
  subject "Hi {{ contact.first_name | default('there') }}"
  body "<p>{{ event.title | default('News') }}</p>"
}
template e2 email { subject "Two" body "<p>Two</p>" }
template e3 email { subject "Three" body "<p>Three</p>" }
template s1 sms "Hi {{ contact.first_name | default('you') }}, reply STOP to opt out"
template w1 whatsapp "Hello {{ contact.first_name | default('') }}"
template i1 inbox "A note for you"
segment engaged = lead_score >= 30 and last_activity within 30d
score engagement {
  opened(any) within 30d: +5 each
  clicked(any) within 30d: +10 each
  property_viewed within 7d: +3 each
  unsubscribed: -100
  decay 10% per 30d
}
campaign other { when never_happens send email e3 }
"""
CONDITIONS = [
    "opened(e1)", "clicked(any)", "lead_score > 50", "engaged", "engagement >= 10",
    "count(property_viewed, 7d) >= 2", "last(property_viewed) within 3d",
    'country in ["US", "CA"]', "converted", "delivered(e1)", "not unsubscribed",
    'city = "Denver"', "bounced(any)", "replied(any)", "first(property_viewed) within 30d",
    "received(email, 24h)", "in_campaign(other)", "budget_max >= 500000 and beds_min <= 3",
    'lead_type = "buyer" or is_customer',
]  # fmt: skip
SENDS = ["send email e1", "send email e2", "send sms s1", "send whatsapp w1", "send inbox i1"]
TRIGGERS = [
    "on launch", "on contact_created", "when property_viewed count>=2 within 7d",
    "when property_viewed", 'when course_enquiry where event.course = "data-science"',
    "when property_listed for contacts where contact.budget_max >= event.price"
    " and event.city in contact.areas",
    "when price_dropped for contacts where event.property_id in contact.saved_properties",
    "on segment_enter engaged", "at 2026-12-02T09:00 local", "at 2027-03-28T02:30 local",
    "every monday 09:00 local", "every daily 10:00 local", "every 2d 10:00 local",
    "every weekdays 08:00", "every 6h", "every sunday 02:30 local", "when opened",
    "when clicked",
]  # fmt: skip
# Settings, by what the invariants read of them.
CAPS = {"cap email 2 per 7d": ("email", 2, 7), "cap sms 1 per 1d": ("sms", 1, 1),
        "cap 3 per 7d": (None, 3, 7)}  # fmt: skip
WINDOWS = {
    "send_window 09:00-18:00 local weekdays": (dt.time(9), dt.time(18), True),
    "send_window 08:00-20:00 local": (dt.time(8), dt.time(20), False),
    "send_window 01:00-03:00 local": (dt.time(1), dt.time(3), False),
    "send_window 22:00-06:00 local": (dt.time(22), dt.time(6), False),
}
QUIET_SMS = "quiet_hours sms 21:00-08:00 local"
BUDGET = "budget 1 USD  cost email 0.1 USD, sms 0.5 USD"
FALLBACK = 'timezone fallback "America/New_York"'
SETTINGS = [
    *CAPS, *WINDOWS, QUIET_SMS, BUDGET, FALLBACK, "goal converted", "goal clicked(e1)",
    "type drip", "kind nurture", 'audience engaged and country in ["US", "CA"]',
    "audience lead_score >= 20", "exclude in_campaign(other) or received(email, 24h)",
    "exclude is_customer", 'from "Acme <hello@acme.test>"', 'reply_to "sales@acme.test"',
    "priority 5", "approval required", "approval none", "starts 2026-12-01  ends 2026-12-20",
    "starts 2026-12-03", "ends 2027-03-29", "reenter after 3d", "reenter always",
    "channels email, sms, whatsapp, inbox",
]  # fmt: skip


def _steps(rng: random.Random, depth: int, count: int) -> list[str]:
    """`count` steps of every kind, `if` and `split` nesting down to depth 2."""
    steps: list[str] = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.3 or (depth >= 2 and pick < 0.74):
            steps.append(rng.choice(SENDS))
        elif pick < 0.45:
            steps.append(f"wait {rng.choice(['30m', '1h', '2d', '1d12h', '3d'])}")
        elif pick < 0.5:
            steps.append(f"wait until {rng.choice(['09:00', '18:30', '02:30'])} local")
        elif pick < 0.55:
            waited = ["clicked(e1) up to 2d", "property_viewed up to 1d", "opened(any) up to 12h"]
            steps.append(f"wait for {rng.choice(waited)}")
        elif pick < 0.65:
            branch = f"if {rng.choice(CONDITIONS)} {{ {_block(rng, depth, 3)} }}"
            if rng.random() < 0.5:
                branch += f" else if {rng.choice(CONDITIONS)} {{ {_block(rng, depth, 1)} }}"
            if rng.random() < 0.7:
                branch += f" else {{ {_block(rng, depth, 2)} }}"
            steps.append(branch)
        elif pick < 0.7:
            steps.append(
                f"split {{ a 50%: {_block(rng, depth, 1)}  b 50%: {_block(rng, depth, 1)} }}"
            )
        elif pick < 0.74:
            metric = rng.choice(["clicks", "opens", "conversions", "replies"])
            steps.append(
                f"split 20% test winner by {metric} after {rng.choice(['4h', '1d'])}"
                " { a: send email e1  b: send email e2 }"
            )
        elif pick < 0.78:
            steps.append(
                rng.choice(
                    ['set lead_stage = "nurture"', "set lead_score = lead_score + 5",
                     "set touched = true"]
                )
            )  # fmt: skip
        elif pick < 0.82:
            steps.append('tag add "webinar-2026"')
        elif pick < 0.85:
            steps.append("assign agent round_robin")
        elif pick < 0.88:
            steps.append('notify webhook "https://hooks.example.test/crm"')
        elif pick < 0.91:
            steps.append("enroll other")
        else:
            steps.append(rng.choice(SENDS))
    return steps


def _block(rng: random.Random, depth: int, most: int) -> str:
    return " ".join(_steps(rng, depth + 1, rng.randint(1, most)))


@dataclass
class Generated:
    """A generated program and the settings its campaign `c1` was given."""

    text: str
    settings: list[str]


def generate(rng: random.Random) -> Generated:
    """A program: the shared declarations and a campaign `c1` of random settings and blocks."""
    chosen = rng.sample(SETTINGS, rng.randint(0, 4))
    blocks = []
    for _ in range(rng.randint(1, 2)):
        steps = _steps(rng, 0, rng.randint(1, 6))
        if rng.random() < 0.2:
            steps.append('exit "done"')
        blocks.append(f"  {rng.choice(TRIGGERS)} {{\n    " + "\n    ".join(steps) + "\n  }")
    text = 'campaign c1 "Generated" {\n  ' + "\n  ".join(chosen) + "\n" + "\n".join(blocks)
    return Generated(DECLARATIONS + text + "\n}\n", chosen)


def _zone(contact: str, chosen: Sequence[str]) -> ZoneInfo:
    fallback = "America/New_York" if FALLBACK in chosen else "UTC"
    return ZoneInfo(CONTACTS[contact].get("timezone") or fallback)


def broken_promises(
    chosen: Sequence[str], sends: Sequence[PlannedSend], default_cap: bool = True
) -> list[str]:
    """Each way the run's sends break what `c1`'s settings and the engine's rules promise."""
    went = [s for s in sends if s.render_error is None and s.error is None]
    own = [s for s in went if s.campaign == "c1"]
    broken: list[str] = []
    # Caps count every campaign's messages up to and including the send, within less than
    # the period (docs/semantics.md); a webhook send or notice is no message to the person.
    caps = [CAPS[setting] for setting in chosen if setting in CAPS]
    if default_cap and not any(setting.startswith("cap email") for setting in chosen):
        caps.append(("email", 3, 7))
    for channel, most, days in caps:
        period = dt.timedelta(days=days)
        for index, send in enumerate(went):
            if send.campaign != "c1" or (channel or send.channel) != send.channel:
                continue
            counted = [
                o
                for o in went[: index + 1]
                if o.contact == send.contact
                and (o.channel == channel if channel else o.channel != "webhook")
                and send.at - period < o.at <= send.at
            ]
            if send.channel != "webhook" and len(counted) > most:
                broken.append(f"cap {channel} {most} per {days}d: {send.contact} at {send.at}")
    for setting, (opens, closes, weekdays) in WINDOWS.items():
        if setting not in chosen:
            continue
        for send in own:
            local = send.at.astimezone(_zone(send.contact, chosen))
            moment = local.time()
            if opens < closes:
                inside, opened_on = opens <= moment < closes, local.date()
            else:  # past midnight: the window belongs to the day it opened on
                inside = moment >= opens or moment < closes
                opened_on = local.date() - dt.timedelta(days=0 if moment >= opens else 1)
            if not inside or (weekdays and opened_on.weekday() >= 5):
                broken.append(f"{setting}: {send.contact} {send.channel} at {local}")
    if QUIET_SMS in chosen:
        for send in own:
            local = send.at.astimezone(_zone(send.contact, chosen))
            if send.channel == "sms" and not dt.time(8) <= local.time() < dt.time(21):
                broken.append(f"{QUIET_SMS}: {send.contact} at {local}")
    if BUDGET in chosen:
        spent = sum({"email": 10, "sms": 50}.get(s.channel, 0) for s in own)
        if spent > 100:
            broken.append(f"budget 1 USD: spent {spent / 100} USD")
    for send in went:
        for reaction, delay in (("bounced", DELIVERY_DELAY), ("unsubscribed", None)):
            if reaction not in send.outcome:
                continue
            since = send.at + (delay or REACTION_DELAY[reaction])
            later = [
                o
                for o in went
                if o.contact == send.contact and o.channel == send.channel and o.at > since
            ]
            if later:
                first = later[0].at
                broken.append(f"{send.channel} to {send.contact} at {first}, {reaction} {since}")
        opted_in = CONTACTS[send.contact]["attributes"].get(f"{send.channel}_opt_in")
        if send.channel in ("sms", "whatsapp") and opted_in is not True:
            broken.append(f"{send.channel} to {send.contact} without an opt-in")
    goals = {"goal converted": ("converted", None), "goal clicked(e1)": ("clicked", "e1")}
    for setting, (reaction, template) in goals.items():
        if setting not in chosen:
            continue
        for send in went:
            mine = send.campaign == "c1" and send.template == template
            if reaction in send.outcome and (template is None or mine):
                reached = send.at + REACTION_DELAY[reaction]
                later = [o for o in own if o.contact == send.contact and o.at > reached]
                if later:
                    broken.append(
                        f"{setting}: {send.contact} reached it {reached}, sent {later[0].at}"
                    )
    return sorted(set(broken))


def run(generated: Generated, start: dt.datetime, seed: int, **options: Any) -> list[PlannedSend]:
    """The dry-run's sends for a generated program that checks clean."""
    campaigns = check_and_compile_text(generated.text, "generated.cadence").campaigns
    report = trio.run(
        lambda: dry_run(
            campaigns, EXAMPLES / "contacts.jsonl", events=EXAMPLES / "events.jsonl",
            start=start, until=dt.timedelta(days=12), assume=ASSUME, seed=seed, **options,
        )
    )  # fmt: skip
    return report.sends


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(program_seed=st.integers(0, 2**32 - 1), start=st.sampled_from(STARTS))
def test_generated_campaigns_keep_every_promise(program_seed: int, start: dt.datetime) -> None:
    generated = generate(random.Random(program_seed))
    try:
        check_and_compile_text(generated.text, "generated.cadence")
    except CadenceError:
        return  # settings twice, or a trigger before `starts`: the checker's business
    sends = run(generated, start, program_seed)
    broken = broken_promises(generated.settings, sends)
    assert not broken, generated.text[len(DECLARATIONS) :] + "\n" + "\n".join(broken[:8])


def test_the_checks_see_a_broken_cap() -> None:
    """The invariants can fail: with the engine's default cap turned off, five emails a day
    break the default cap the checks hold the campaign to."""
    generated = Generated(
        DECLARATIONS + "campaign c1 { on launch { send email e1 wait 1d send email e2 wait 1d"
        " send email e1 wait 1d send email e2 wait 1d send email e1 } }\n",
        [],
    )
    sends = run(generated, STARTS[0], 1, default_cap=None)
    assert any(s.campaign == "c1" for s in sends)
    assert broken_promises([], sends, default_cap=True)
    assert not broken_promises([], sends, default_cap=False)
