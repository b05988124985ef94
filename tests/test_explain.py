"""`cadence explain`: every example reads in full, the exact words for a known program, triggers
and expressions worded as ops people say them, and the CLI's exit codes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from cadence.cli import main
from cadence.commands.explain import print_explanation
from cadence.dsl import ast
from cadence.dsl.explain import (
    ExprWords,
    Names,
    describe_trigger,
    explain_lines,
    explain_workspace,
)
from cadence.dsl.loader import load, load_text
from cadence.dsl.parser import parse_text
from tests.language_md import language_blocks

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cadence"))


def _steps(steps: tuple[ast.Step, ...]) -> Iterator[ast.Step]:
    for step in steps:
        yield step
        match step:
            case ast.If(branches=branches, else_steps=else_steps):
                for branch in branches:
                    yield from _steps(branch.steps)
                yield from _steps(else_steps or ())
            case ast.ABSplit(branches=arms) | ast.RandomSplit(branches=arms):
                for arm in arms:
                    yield from _steps(arm.steps)
            case _:
                pass


def _all_steps(program: ast.Program) -> Iterator[ast.Step]:
    for declaration in program.declarations:
        if isinstance(declaration, ast.CampaignDecl):
            for block in declaration.triggers:
                yield from _steps(block.steps)
        elif isinstance(declaration, ast.TriggerBlock):
            yield from _steps(declaration.steps)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_mentions_each_send_and_wait(path: Path) -> None:
    workspace = load([path])
    text = explain_workspace(workspace)
    program = next(iter(workspace.files.values())).program
    sends = waits = 0
    for step in _all_steps(program):
        match step:
            case ast.Send(template=template):
                sends += 1
                assert re.search(rf'\[day [^\]]+\] Send the [^"]+ "{template}"', text), template
            case ast.Wait(duration=duration):
                waits += 1
                days = duration.seconds // 86400
                hours = duration.seconds % 86400 // 3600
                words = f"{days} day{'s' if days != 1 else ''}" if days else f"{hours} hour"
                assert f"Wait {words}" in text
            case ast.WaitUntil(time=time):
                waits += 1
                assert f"Wait until the next {time.hour:02d}:{time.minute:02d}" in text
            case ast.WaitFor(event=ast.Call(name=name, args=(ast.Path(parts=(template,)),))):
                waits += 1
                assert f'Wait until the contact has {name} "{template}", at most' in text
            case _:
                pass
    assert sends and text.count("Send the ") == sends
    assert text.count("Wait ") == waits


WELCOME_PROGRAM = """
segment engaged = lead_score >= 30 and last_activity within 30d and email_verified

template welcome email { subject "Welcome aboard" body "<p>Hi</p>" }
template engaged_path email { subject "Three ways to start" body "<p>Hi</p>" }
template re_engagement email { subject "Still there?" body "<p>Hi</p>" }
template special_offer email { subject "20% off for you" body "<p>Hi</p>" }

campaign onboarding "Onboarding" {
  on launch { send email welcome }
}

""" + language_blocks()[-1]  # LANGUAGE.md's welcome series, as written there

WELCOME_EXPLAINED = """\
Onboarding (campaign "onboarding")
  Type: broadcast (one send to the whole audience), inferred from its steps.
  Audience: every contact (no audience filter).
  Frequency cap: the default, at most 3 emails per contact every 7 days, across all \
campaigns (`cap email N per DURATION` sets another).
  Approval: needed before launch when its audience is above 1,000 contacts (`approval \
required` always asks for it, `approval none` never).

Who enters: when the campaign is launched, everyone in its audience at that moment.
Steps (days counted from when the contact enters):
  1. [day 0] Send the email "welcome" (subject: "Welcome aboard").

Welcome series (campaign "welcome_series")
  Type: drip (a timed sequence for each contact); kind: enrollment.
  Audience: a contact takes part if they are in the segment "engaged" and country is one of \
"US" or "CA".
  Left out: a contact is skipped if they are in the campaign "onboarding" or they have \
received an email in the last day.
  Sent from Acme <hello@acme.test>.
  Replies go to sales@acme.test.
  May send emails and SMS messages only.
  Priority: 5.
  Frequency cap: at most 3 emails per contact every 7 days, across all campaigns.
  Send window: sends go out only between 09:00 and 18:00 in each contact's local time, on \
weekdays; outside it they wait for the next opening.
  Contacts without a known timezone are treated as in America/New_York.
  Quiet hours: no SMS messages between 21:00 and 08:00 in each contact's local time.
  Budget: 500 USD; sends stop when it runs out.
  Costs: 0.001 USD per email and 0.05 USD per SMS.
  Goal: a contact leaves the campaign as soon as they have converted.
  Needs approval before it is launched.
  Times written without `local` are in America/New_York too.
  Runs from 1 December 2026 to 31 January 2027.

Who enters: when a new contact is created.
Steps (days counted from when the contact enters):
  1. [day 0] Send the email "welcome" (subject: "Welcome aboard").
  2. Wait 2 days.
  3. If the contact has opened "welcome":
       1. [day 2] Send the email "engaged_path" (subject: "Three ways to start").
     Otherwise:
       1. Wait 1 day.
       2. [day 3] Send the email "re_engagement" (subject: "Still there?").
  4. Wait 3 days.
  5. [day 5-6] Send the email "special_offer" (subject: "20% off for you").
"""


def test_welcome_series_from_the_language_sketch_reads_exactly(tmp_path: Path) -> None:
    path = tmp_path / "welcome.cadence"
    path.write_text(WELCOME_PROGRAM, encoding="utf-8")
    assert explain_workspace(load([path])) == WELCOME_EXPLAINED


def test_the_cli_prints_the_same_text_when_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "welcome.cadence"
    path.write_text(WELCOME_PROGRAM, encoding="utf-8")
    assert main(["explain", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == WELCOME_EXPLAINED
    assert captured.err == ""


def _trigger(source: str) -> str:
    program = parse_text(source + " send email x")
    block = program.declarations[0]
    assert isinstance(block, ast.TriggerBlock)
    return describe_trigger(block.trigger, Names(segments=frozenset({"engaged"})))


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (
            "when property_viewed count>=3 within 7d where event.price <= 500000",
            "when a contact has viewed a property at least 3 times within 7 days "
            "(counting only events where price is at most 500,000)",
        ),
        ("every monday 09:00 local", "every Monday at 09:00 in each contact's local time"),
        (
            "at 2026-12-01T09:00 local",
            "once, on 1 December 2026 at 09:00 in each contact's local time",
        ),
        (
            "when property_listed for contacts where contact.budget_max >= event.price "
            "and event.city in contact.areas",
            "when a property is listed, every contact whose budget_max is at least the "
            "event's price and whose areas include the event's city",
        ),
        (
            "when price_dropped for contacts where event.beds >= contact.beds_min",
            "when a price has dropped, every contact whose beds_min is at most the event's beds",
        ),
        ("on contact_created", "when a new contact is created"),
        ("on segment_enter engaged", 'when a contact enters the segment "engaged"'),
        (
            "every 2w",
            "every 2 weeks from the campaign's start (its launch, or `starts` when later), "
            "the whole audience",
        ),
        (
            "every 1w 10:00 local",
            "every week at 10:00 in each contact's local time, beginning with the first 10:00 "
            "from the campaign's start",
        ),
        ("every monday 09:00", "every Monday at 09:00, the whole audience"),
        ("every daily", "every day at 00:00, the whole audience"),  # the day's start
        ("every weekdays local", "every weekday at 00:00 in each contact's local time"),
        ("when app_login", 'when a contact has a "app_login" event'),
    ],
)
def test_triggers_in_words(source: str, words: str) -> None:
    assert _trigger(source).startswith(words)


def _condition(source: str, *, segments: frozenset[str] = frozenset({"engaged"})) -> str:
    program = parse_text(f"segment probe = {source}")
    declaration = program.declarations[0]
    assert isinstance(declaration, ast.SegmentDecl)
    names = Names(segments=segments, scores=frozenset({"activation"}))
    return ExprWords(names).condition(declaration.expr)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("(a or b) and c", "(a is true or b is true) and c is true"),
        ("a or b and c", "a is true or (b is true and c is true)"),
        ("a and b and c", "a is true and b is true and c is true"),
        (
            "not (opened(welcome) or clicked(any))",
            ('neither the contact has opened "welcome" nor the contact has clicked any message'),
        ),
        ("not lead_score >= 30", "lead_score is below 30"),
        ("not email_verified", "email_verified is false"),
        ("not contact.verified", "verified is false"),
        ("not engaged", 'the contact is not in the segment "engaged"'),
        ("not unsubscribed", "the contact has not unsubscribed"),
        ("(price - 10) * 2 > budget", "(price minus 10) times 2 is above budget"),
        ("price - (10 - discount) = 5", "price minus (10 minus discount) is 5"),
        ("price - 10 - discount = 5", "price minus 10 minus discount is 5"),
        ('country in ["PH"]', 'country is "PH"'),
        ('country not in ["PH", "SG"]', 'country is none of "PH" or "SG"'),
        ("activation >= 20", "the activation score is at least 20"),
        (
            "count(course_page_viewed, 14d) >= 2",
            "the number of course_page_viewed events in the last 14 days is at least 2",
        ),
        (
            "last(application_started) within 30d",
            "the contact's most recent application_started event was within the last 30 days",
        ),
        ("last_activity within 1d", "last_activity is within the last day"),
    ],
)
def test_expressions_in_words_keep_their_grouping(source: str, words: str) -> None:
    assert _condition(source) == words


def test_branches_exits_and_splits_nest_and_estimate_days() -> None:
    source = """
    template a email { subject "A" body "." }
    template b email { subject "B" body "." }
    template c sms "C"
    campaign promo {
      on launch {
        split 20% test winner by clicks after 4h { a: send email a  b: send email b }
        wait 1d
        if clicked(any) { exit "clicked" } else if lead_score > 50 { send sms c }
        split { x 50%: wait 2d  y 50%: wait until 10:00 local }
        wait for opened(a) up to 3d
        send email a
      }
    }
    """
    text = explain_workspace(load_text(source, "promo.cadence"))
    assert (
        '1. A/B test: 20% of contacts are tested — half get "a", half get "b"; after 4 hours '
        "the variant with the best click rate (of its messages delivered) goes to the other 80%."
        in text
    )
    assert '     Variant "a":\n       1. [day 0] Send the email "a"' in text
    assert "The winning variant reaches the other 80% at day 0 +4h." in text
    assert (
        '3. If the contact has clicked any message:\n       1. Leave the campaign ("clicked").'
        in text
    )
    assert "     Otherwise, if lead_score is above 50:\n" in text
    assert '[day 1 to day 1 +4h] Send the SMS "c" (text: "C").' in text
    assert '     Group "x" (50%):\n       1. Wait 2 days.' in text
    assert 'Wait until the contact has opened "a", at most 3 days.' in text
    # 1d, +0..4h for the winner group, +0..2d from the split (a wait until takes up to a
    # day), +0..3d for the wait for.
    assert '6. [day 1 to day 6 +4h] Send the email "a"' in text


def test_warnings_do_not_stop_an_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sketch.cadence"
    path.write_text('template a email { subject "A" body "." }\nwhen signup { ... send email a }\n')
    assert main(["explain", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning[" in captured.err
    assert "(steps not written yet)" in captured.out
    assert 'Send the email "a"' in captured.out


def test_errors_are_rendered_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.cadence"
    path.write_text("campaign x {\n  on launch { send email nope }\n}\n")
    assert main(["explain", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}:2:" in captured.err
    assert "unknown template `nope`" in captured.err
    assert "^^^^" in captured.err


def test_syntax_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.cadence"
    path.write_text("campaign x { on launch { sned email a } }\n")
    assert main(["explain", str(path)]) == 1
    assert "error[" in capsys.readouterr().err


def test_a_missing_file_or_a_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As for `check`, `compile` and `graph`: exit 2 naming the path, not an E001 and exit 1.
    missing = tmp_path / "nope.cadence"
    assert main(["explain", str(missing)]) == 2
    assert capsys.readouterr().err == f"cadence explain: {missing}: no such file\n"
    assert main(["explain", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"cadence explain: {tmp_path}: is a folder, not a file\n"


def test_a_file_without_campaigns_says_so() -> None:
    text = explain_workspace(load_text('template a email { subject "A" body "." }', "t.cadence"))
    assert text == "This file declares no campaigns.\n"


def test_a_terminal_gets_styles_and_wraps_under_the_indent() -> None:
    workspace = load_text(WELCOME_PROGRAM, "welcome.cadence")
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, width=60, color_system="standard")
    print_explanation(explain_lines(workspace), console)
    output = buffer.getvalue()
    assert "\x1b[" in output  # styled
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert "[day 0]" in plain  # brackets are text, not markup
    lines = plain.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 60
    # A wrapped step continues under its own text, not under its number or at the margin.
    start = next(i for i, line in enumerate(lines) if line.startswith("  5. [day 5-6]"))
    assert re.match(r"     \S", lines[start + 1])


def test_only_the_named_files_campaigns_are_explained(tmp_path: Path) -> None:
    (tmp_path / "shared.cadence").write_text(
        'template hello email { subject "Hello" body "." }\n'
        "campaign shared_one { on launch { send email hello } }\n"
    )
    (tmp_path / "main.cadence").write_text(
        'import "shared.cadence"\ncampaign mine { on launch { send email hello } }\n'
    )
    text = explain_workspace(load([tmp_path / "main.cadence"]))
    assert 'Mine (campaign "mine")' in text
    assert "shared_one" not in text
    assert '[day 0] Send the email "hello" (subject: "Hello").' in text


def test_a_wait_for_an_event_reads_as_english() -> None:
    """`wait for application_submitted`: "an" before a vowel, as elsewhere in the text."""
    source = """
    template t email { subject "s" body "b" }
    when application_started {
      wait for application_submitted up to 2d
      wait for payment_received up to 1d
      send email t
    }
    """
    text = explain_workspace(load_text(source, "apply.cadence"))
    assert '1. Wait for an "application_submitted" event, at most 2 days.' in text
    assert '2. Wait for a "payment_received" event, at most 1 day.' in text


ZONE_LINE = 'Timezone: UTC, for the times written without `local` (`timezone "ZONE"` sets another).'


@pytest.mark.parametrize(
    ("settings", "trigger", "named"),
    [
        ("send_window 09:00-17:00", "on launch", True),
        ("quiet_hours sms 21:00-08:00", "on launch", True),
        ("", "at 2026-12-01T09:00", True),
        ("", "every monday 09:00", True),
        ("starts 2026-12-01", "on launch", True),
        ("send_window 09:00-17:00 local  quiet_hours 21:00-08:00 local", "on launch", False),
        ("", "at 2026-12-01T09:00 local", False),
        ('timezone "Asia/Manila"  send_window 09:00-17:00', "on launch", False),
        ("", "on launch", False),
    ],
)
def test_a_time_read_in_utc_says_so(settings: str, trigger: str, named: bool) -> None:
    """Without `timezone`, a time written without `local` is UTC; "between 09:00 and 17:00"
    alone read as the reader's own 09:00."""
    source = (
        'template t email { subject "T" body "." }\n'
        f"campaign c {{ {settings}  {trigger} {{ send email t }} }}\n"
    )
    text = explain_workspace(load_text(source, "t.cadence"))
    assert (ZONE_LINE in text) is named, text


@pytest.mark.parametrize(
    ("settings", "trigger", "said"),
    [
        ("quiet_hours sms 21:00-08:00", "on launch", True),
        ("starts 2026-12-01", "on launch", True),
        ("", "at 2026-12-01T09:00", True),
        ("send_window 09:00-17:00 local", "at 2026-12-01T09:00 local", False),
    ],
)
def test_a_fallback_zone_is_said_to_be_the_zone_of_times_without_local(
    settings: str, trigger: str, said: bool
) -> None:
    """`timezone fallback "ZONE"` is the campaign's zone (docs/language.md): the times it
    writes without `local` are read there, not only the contacts without a zone."""
    source = (
        'template t email { subject "T" body "." }\n'
        f'campaign c {{ timezone fallback "Asia/Kathmandu" {settings}  {trigger} '
        "{ send email t } }\n"
    )
    text = explain_workspace(load_text(source, "t.cadence"))
    assert "Contacts without a known timezone are treated as in Asia/Kathmandu." in text
    line = "Times written without `local` are in Asia/Kathmandu too."
    assert (line in text) is said, text
    assert ZONE_LINE not in text


def test_a_wait_until_without_local_names_utc_too() -> None:
    source = (
        'template t email { subject "T" body "." }\non launch { wait until 09:00  send email t }\n'
    )
    assert ZONE_LINE in explain_workspace(load_text(source, "t.cadence"))


APPROVAL_LINE = "Approval: needed before launch when its audience is above 1,000 contacts"


@pytest.mark.parametrize(
    ("settings", "trigger", "said"),
    [
        ("", "on launch", APPROVAL_LINE),
        ("audience vip", "at 2026-12-01T09:00", APPROVAL_LINE),
        ("", "every monday 09:00", APPROVAL_LINE),
        ("", "on contact_created", None),  # no launch audience: the rule never applies
        ("", "when signup", None),
        ("approval required", "on launch", "Needs approval before it is launched."),
        ("approval none", "on launch", "Approval: none."),
    ],
)
def test_the_implied_approval_rule_is_said(settings: str, trigger: str, said: str | None) -> None:
    """A broadcast without `approval` is refused at launch above 1,000 contacts (LANGUAGE.md:
    "also implied above 1,000 contacts"); its explanation says so."""
    source = (
        'template t email { subject "T" body "." }\n'
        f"campaign c {{ {settings}  {trigger} {{ send email t }} }}\n"
    )
    lines = [line.strip() for line in explain_workspace(load_text(source, "t.cadence")).split("\n")]
    approval = [line for line in lines if line.startswith(("Approval", "Needs approval"))]
    assert len(approval) == (0 if said is None else 1), approval
    assert said is None or approval[0].startswith(said), approval


@pytest.mark.parametrize(
    ("audience", "lacking"),
    [
        ('city != "Cebu"', "city"),
        ('contact.country not in ["US", "CA"]', "country"),
        ("not (vip and lead_score > 5)", "lead_score or vip"),
        ("not (last_login within 30d)", "last_login"),
        ('not engaged and city = "Cebu"', None),  # a segment has a value for everyone
        ("not unsubscribed and not converted", None),  # engagement is true or false
        ('not ("vip" in tags)', None),  # tags is a list, maybe empty, never missing
        ('city = "Cebu" and lead_score > 5', None),  # no one reads these as letting them in
    ],
)
def test_an_audience_that_negates_an_attribute_says_who_lacks_it_is_not_let_in(
    audience: str, lacking: str | None
) -> None:
    """`city != "Cebu"` reads as letting in contacts without a city, but under the
    missing-value rule the comparison is unknown for them, never true."""
    text = explain_workspace(
        load_text(
            'template t email { subject "T" body "." }\n'
            "segment engaged = lead_score > 50\n"
            f"campaign c {{ audience {audience}  on launch {{ send email t }} }}\n",
            "c.cadence",
        )
    )
    said = [line.strip() for line in text.splitlines() if "Where a contact has no value" in line]
    if lacking is None:
        assert said == []
    else:
        assert said == [
            f"Where a contact has no value for {lacking}, a condition on it is unknown, never"
            " true, with `!=`, `not in` and `not` as with the rest: such a contact is in only"
            " if the rest of the audience lets it in without that condition."
        ]
