"""The checker and `cadence check`: every rule has a failing fixture, good programs pass clean."""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from cadence.cli import main
from cadence.commands.check import highlight, render_diagnostic
from cadence.dsl import ast
from cadence.dsl.checker import CHECK_CODES, check_or_raise, check_paths, check_text
from cadence.dsl.checks.expressions import STANDARD_CONTACT_FIELDS, subexpressions
from cadence.dsl.checks.flow import format_duration
from cadence.dsl.checks.steps import all_steps
from cadence.dsl.fmt import format_program
from cadence.dsl.parser import parse_bytes, parse_text
from cadence.engine import facts
from cadence.errors import CadenceCheckError, CadenceError, CadenceSyntaxError, Diagnostic
from tests import strategies
from tests.language_md import language_blocks

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "check"
EXAMPLES = ROOT / "examples"
DIAGNOSTICS_MD = ROOT / "docs" / "diagnostics.md"
PARSE_CODES = ("E001", "E002", "E003", "E004", "E010", "E011", "E012", "E020", "E021")
EXPECT = re.compile(r"^# expect: (?P<code>[EW]\d{3}) (?P<line>\d+):(?P<column>\d+) (?P<text>.+)$")
FIXTURE_FILES = sorted(FIXTURES.glob("*.cadence"))

HELLO = 'template hello email { subject "Hi" body "Hello" }\n'


def codes(diagnostics: list[Diagnostic]) -> list[str]:
    """Just the codes, in the checker's order."""
    return [d.code for d in diagnostics]


def errors(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Only the diagnostics that fail `cadence check`."""
    return [d for d in diagnostics if d.severity == "error"]


# ---------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=[f.stem for f in FIXTURE_FILES])
def test_fixture_reports_exactly_its_diagnostic(fixture: Path) -> None:
    expected = [m for line in fixture.read_text("utf-8").splitlines() if (m := EXPECT.match(line))]
    assert expected, f"{fixture.name} has no `# expect:` line"
    found = check_paths([fixture])
    assert [(d.code, d.line, d.column) for d in found] == [
        (m["code"], int(m["line"]), int(m["column"])) for m in expected
    ], "\n".join(d.render() for d in found)
    for diagnostic, match in zip(found, expected, strict=True):
        assert match["text"] in diagnostic.message, diagnostic.render()
        assert diagnostic.severity == ("warning" if match["code"].startswith("W") else "error")
        assert diagnostic.hint, f"{diagnostic.code} has no hint"
        assert diagnostic.source_line is not None
        assert diagnostic.file == str(fixture)
        assert "^" in diagnostic.render()


def test_every_check_code_has_a_fixture_named_after_it() -> None:
    covered = {f.name[:4] for f in FIXTURE_FILES}
    assert set(CHECK_CODES) <= covered, sorted(set(CHECK_CODES) - covered)
    assert covered <= set(CHECK_CODES), "fixture named after a code the checker does not have"


def codes_in_source() -> set[str]:
    """Every diagnostic code written as a string literal anywhere in the package."""
    found: set[str] = set()
    for module in (ROOT / "cadence").rglob("*.py"):
        found.update(re.findall(r"[\"']([EW]\d{3})[\"']", module.read_text("utf-8")))
    return found


def test_every_code_is_documented_in_diagnostics_md() -> None:
    text = DIAGNOSTICS_MD.read_text("utf-8")
    assert set(PARSE_CODES) <= codes_in_source()
    for code in sorted({*PARSE_CODES, *CHECK_CODES, *codes_in_source()}):
        assert re.search(rf"^\| `?{code}`? \|", text, flags=re.M), f"{code} missing from the table"


# ---------------------------------------------------------------------------- good programs


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.cadence")), ids=lambda p: p.stem)
def test_every_example_checks_without_errors(example: Path) -> None:
    found = check_paths([example])
    assert errors(found) == [], "\n".join(d.render() for d in found)


def complete_fragment(block: str, folder: Path) -> str:
    """A LANGUAGE.md block made into a whole program, without changing a character of it.

    LANGUAGE.md shows fragments: the Steps section is a bare list of steps, and blocks send
    templates (`property_details`, `offer_a`, ...), enroll campaigns and read body files
    that the page never declares. The checker rightly rejects those names on their own, so
    this adds exactly the declarations (and body files in `folder`) the block refers to and
    no more; the block's own text is checked as written.
    """
    try:
        program = parse_text(block)
    except CadenceSyntaxError:
        block = f"on launch {{\n{block}\n}}\n"
        program = parse_text(block)
    declared: set[str] = set()
    sends: dict[str, str] = {}
    engagement: set[str] = set()
    campaigns: set[str] = set()
    segments: set[str] = set()
    steps: list[ast.Step] = []
    exprs: list[ast.Expr] = []
    for decl in program.declarations:
        match decl:
            case ast.TemplateDecl(name=name) | ast.CampaignDecl(name=name):
                declared.add(name)
            case ast.SegmentDecl(name=name, expr=expr):
                declared.add(name)
                exprs.append(expr)
            case _:
                pass
        blocks = decl.triggers if isinstance(decl, ast.CampaignDecl) else ()
        if isinstance(decl, ast.TriggerBlock):
            blocks = (decl,)
        if isinstance(decl, ast.CampaignDecl):
            exprs.extend(s.expr for s in decl.settings if isinstance(s, ast.ExprSetting))
        for trigger_block in blocks:
            if isinstance(trigger_block.trigger, ast.SegmentEnterTrigger):
                segments.add(trigger_block.trigger.segment)
            steps.extend(all_steps(trigger_block.steps))
        if isinstance(decl, ast.TemplateDecl):
            for content in (decl.content, *(loc.content for loc in decl.locales)):
                if content.body_file is not None:
                    target = folder / content.body_file.value
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("<p>Hello {{ contact.first_name }}</p>\n", "utf-8")
    for step in steps:
        match step:
            case ast.Send(channel=channel, template=template):
                sends.setdefault(template, channel)
            case ast.Enroll(campaign=campaign):
                campaigns.add(campaign)
            case ast.If(branches=branches):
                exprs.extend(b.condition for b in branches)
            case ast.WaitFor(event=event):
                exprs.append(event)
            case _:
                pass
    for expr in exprs:
        for sub in subexpressions(expr):
            if isinstance(sub, ast.Call) and sub.args and isinstance(sub.args[0], ast.Path):
                if sub.name in ("opened", "clicked", "replied", "bounced", "delivered"):
                    engagement.add(sub.args[0].parts[0])
                elif sub.name == "in_campaign":
                    campaigns.add(sub.args[0].parts[0])
    for name in sorted(engagement - {"any"} - set(sends)):
        sends[name] = "email"
    additions = []
    for name, channel in sorted(sends.items()):
        if name in declared:
            continue
        if channel == "email":
            additions.append(f'template {name} email {{ subject "{name}" body "<p>{name}</p>" }}')
        else:
            additions.append(f'template {name} {channel} "{name}"')
    for name in sorted(campaigns - declared):
        additions.append(f'campaign {name} {{ on launch {{ tag add "{name}" }} }}')
    for name in sorted(segments - declared):
        additions.append(f"segment {name} = lead_score >= 1")
    return block + "\n" + "\n".join(additions) + "\n"


def test_language_md_has_the_expected_blocks() -> None:
    assert len(language_blocks()) >= 6


@pytest.mark.parametrize("index", range(len(language_blocks())))
def test_every_language_md_block_checks_without_errors(index: int, tmp_path: Path) -> None:
    blocks = language_blocks()
    source = tmp_path / f"block_{index}.cadence"
    source.write_text(complete_fragment(blocks[index], tmp_path), "utf-8")
    found = check_paths([source])
    assert errors(found) == [], source.read_text() + "\n".join(d.render() for d in found)
    # The only warnings LANGUAGE.md earns are its `{ ... }` placeholders.
    assert {d.code for d in found} <= {"W304"}


def test_fragment_completion_is_needed_and_does_not_hide_mistakes(tmp_path: Path) -> None:
    # Without completion, the first block really does lack what it names.
    bare = tmp_path / "bare.cadence"
    bare.write_text(language_blocks()[0], "utf-8")
    assert {"E101", "E217"} <= set(codes(check_paths([bare])))
    # Completion adds declarations only: a misspelling inside the block still fails.
    broken = language_blocks()[0].replace("send email property_details", "send emial x")
    source = tmp_path / "broken.cadence"
    source.write_text(complete_fragment(broken, tmp_path), "utf-8")
    assert "E104" in codes(check_paths([source]))


# ---------------------------------------------------------------------------- rules in detail


def test_without_a_schema_unknown_bare_names_are_contact_attributes() -> None:
    assert check_text("segment hot = lead_scor >= 30 and contact.anything = 1") == []


@pytest.mark.parametrize("word", ["null", "none", "nil", "undefined"])
def test_a_null_word_is_a_warning_without_a_schema_and_an_error_with_one(word: str) -> None:
    """`city != null` compares with an attribute nobody has: never true, so it is named."""
    assert codes(check_text(f"segment s = city != {word}")) == ["W307"]
    # A declared attribute of that name is a real one; `contact.null` says so on purpose.
    declared = f"schema contact {{ city: string  {word}: string }}\n"
    assert check_text(f"{declared}segment s = city != {word}") == []
    assert check_text(f"segment s = city != contact.{word}") == []
    assert codes(check_text(f"schema contact {{ city: string }}\nsegment s = city != {word}")) == [
        "E108"
    ]


def test_with_a_schema_contact_paths_and_set_targets_are_checked() -> None:
    found = check_text(
        "schema contact { lead_score: number  stage: string }\n"
        "segment hot = contact.lead_scroe >= 30 and engaged_score > 1\n"
        'on launch { set stag = "x"  set contact.stage = "y" }\n'
    )
    assert [(d.code, d.line, d.column) for d in found] == [
        ("E108", 2, 23),
        ("E108", 2, 44),
        ("E108", 3, 17),
    ]
    assert found[0].hint == "did you mean `lead_score`?"
    assert found[2].hint == "did you mean `stage`?"


def test_with_a_schema_segments_scores_and_flags_are_still_names() -> None:
    found = check_text(
        "schema contact { lead_score: number }\n"
        "segment hot = lead_score >= 30\n"
        "score warmth { unsubscribed: -10 }\n"
        "segment warm = hot and warmth > 3 and not converted and not unsubscribed\n"
    )
    assert found == []


def test_standard_contact_fields_need_no_schema_entry() -> None:
    found = check_text(
        "schema contact { lead_score: number }\n"
        'segment a = contact.email startswith "a" and locale = "es" and created_at within 1d\n'
        'on launch { set first_name = "x"  set contact.phone = "y" }\n'
    )
    assert found == []
    assert set(STANDARD_CONTACT_FIELDS) == set(facts.STANDARD_FIELDS)


def test_template_text_is_parsed_and_its_contact_attributes_checked(tmp_path: Path) -> None:
    (tmp_path / "body.html").write_text("<p>\n{{ contact.first_name }} {{ contact.citty }}</p>\n")
    (tmp_path / "broken.html").write_text("<p>{% if contact.vip %}yes</p>\n")
    source = tmp_path / "t.cadence"
    source.write_text(
        "schema contact { city: string  vip: bool }\n"
        'template a email { subject "{{ contact.cty }} {{ event.x }}" body file "body.html" }\n'
        'template b email { subject "s" body file "broken.html" }\n'
    )
    found = check_paths([source])
    assert [(d.code, d.line, d.column) for d in found] == [
        ("E108", 2, 40),
        ("E108", 2, 72),
        ("E220", 3, 42),
    ]
    assert found[0].hint == "did you mean `city`?"
    assert '`contact.citty` in "body.html" (line 2)' in found[1].message
    assert "(line 1)" in found[2].message and "endif" in found[2].message
    schemaless = tmp_path / "u.cadence"
    schemaless.write_text(
        'template a email { subject "{{ contact.cty }}" body file "body.html" }\n'
    )
    assert check_paths([schemaless]) == []


def test_event_fields_exist_only_in_event_triggers() -> None:
    inside = (
        HELLO + "when viewed where event.price > 1 for contacts where event.city = contact.city {"
        " if event.beds > 2 { send email hello } set last_city = event.city }\n"
        "on listed { if event.new { send email hello } }\n"
    )
    assert check_text(inside) == []
    found = check_text(
        "campaign c { audience event.x = 1\n on launch { if event.y { exit } } }\n"
        "on contact_created { set a = event.z }"
    )
    assert [(d.code, d.line) for d in found] == [("E116", 1), ("E116", 2), ("E116", 3)]


def test_function_arguments_are_checked() -> None:
    found = check_text(
        HELLO + "segment a = clicked(hello) and opened(any) and count(visit, 7d) > 1\n"
        "segment b = count(visit, 3) > 1 or received(emial, 1d) or in_campaign(nope)\n"
        "segment c = converted() or last(visit) within 1d\n"
    )
    assert codes(found) == ["E106", "E104", "E103", "E105"]
    assert found[3].hint == "`converted` is a flag: write it without parentheses"


def test_names_from_imported_files_resolve(tmp_path: Path) -> None:
    (tmp_path / "shared.cadence").write_text(HELLO + "segment vip = lead_score > 90\n")
    main_file = tmp_path / "main.cadence"
    main_file.write_text('import "shared.cadence"\non segment_enter vip { send email hello }\n')
    assert check_paths([main_file]) == []


def test_syntax_errors_come_alone_so_missing_declarations_do_not_cascade(tmp_path: Path) -> None:
    (tmp_path / "shared.cadence").write_text(HELLO + "segment oops = \n")
    main_file = tmp_path / "main.cadence"
    main_file.write_text('import "shared.cadence"\non launch { send email hello }\n')
    assert {d.code for d in check_paths([main_file])} == {"E002"}


def test_diagnostics_are_sorted_by_file_line_and_column() -> None:
    found = check_text(
        "on launch { send email b  send email a }\non launch { send sms c }\n", name="x.cadence"
    )
    assert [(d.line, d.column) for d in found] == sorted((d.line, d.column) for d in found)
    assert len(found) == 3


def test_segment_self_reference() -> None:
    found = check_text("segment loop = loop or lead_score > 3")
    assert codes(found) == ["E214"]
    assert "(loop -> loop)" in found[0].message


def test_send_loop_through_two_campaigns_and_a_wait_breaks_it() -> None:
    loop = (
        HELLO + "campaign ping { on launch { send email hello  enroll pong } }\n"
        "campaign pong { on launch { enroll ping } }\n"
    )
    found = check_text(loop)
    assert codes(found) == ["E208", "E208"]
    assert "`ping`, `pong` enroll each other" in found[0].message
    assert check_text(loop.replace("enroll ping", "wait 1d enroll ping")) == []


def test_enroll_loop_without_any_send_is_not_a_send_loop() -> None:
    assert check_text("campaign a { on launch { enroll a } }") == []


def test_default_send_limit_is_twenty() -> None:
    # Sends three days apart: a daily email would also meet the default cap of 3 emails per
    # 7 days (W303), which is not what this test is about.
    sends = " ".join(["send email hello wait 3d"] * 20)
    assert check_text(f"{HELLO}on launch {{ {sends} }}") == []
    found = check_text(f"{HELLO}on launch {{ {sends} send email hello }}")
    assert codes(found) == ["E209"]
    assert "more than the default limit of 20" in found[0].message


def test_exits_end_paths_for_the_send_limit() -> None:
    three = "send email hello wait 1d " * 3
    program = f"campaign c {{ max_sends 3 on launch {{ {three} if clicked(hello) {{ exit }} }} }}"
    assert check_text(HELLO + program) == []


def test_cap_is_fine_when_sends_are_spaced_out() -> None:
    program = (
        HELLO + "campaign c { cap email 2 per 7d on launch {"
        " send email hello wait 2d send email hello wait 5d send email hello } }"
    )
    assert check_text(program) == []
    found = check_text(program.replace("wait 5d", "wait 4d"))
    assert codes(found) == ["W303"]


def test_the_cap_warning_says_the_send_is_skipped() -> None:
    # LANGUAGE.md's caps skip a send over the cap (recorded as capped, the flow goes on);
    # they do not hold it back until the cap allows it, as the warning used to say.
    program = (
        HELLO
        + "campaign c { cap email 1 per 1d"
        + " on launch { send email hello wait 1h send email hello } }"
    )
    (found,) = check_text(program)
    assert found.code == "W303" and found.message.endswith("it will be skipped")


# Four emails a day apart, then a fifth four days later: the default cap (3 per 7 days)
# skips the fourth; the fifth has two of the week's emails before it and goes.
DAILY_FOUR = (
    "send email hello wait 1d send email hello wait 1d send email hello wait 1d"
    " send email hello wait 4d send email hello"
)


def test_the_default_cap_warns_a_campaign_without_its_own_email_cap() -> None:
    (found,) = check_text(f"{HELLO}campaign c {{ on launch {{ {DAILY_FOUR} }} }}")
    assert (found.code, found.column) == ("W303", 101)
    assert found.message == (
        "on one path this is 4 email sends within 7d, but the default cap (email 3 per 7d,"
        " every campaign's sends counted) allows 3: it will be skipped"
    )
    assert found.hint is not None and "`cap email N per DURATION` of its own" in found.hint


def test_a_campaigns_own_email_cap_replaces_the_default_in_the_check() -> None:
    own = check_text(f"{HELLO}campaign c {{ cap email 4 per 7d on launch {{ {DAILY_FOUR} }} }}")
    assert own == []
    # A cap over every channel is no email cap: the default still holds beside it.
    overall = check_text(f"{HELLO}campaign c {{ cap 9 per 1d on launch {{ {DAILY_FOUR} }} }}")
    assert codes(overall) == ["W303"] and "the default cap" in overall[0].message
    texts = DAILY_FOUR.replace("email hello", "sms nudge")
    assert check_text(f'template nudge sms "x"\ncampaign c {{ on launch {{ {texts} }} }}') == []


def test_a_send_the_cap_skips_does_not_count_against_the_next() -> None:
    # Sends on days 0, 1, 2 and 7 under `cap email 2 per 7d`: the third is skipped, so on
    # day 7 only the day-1 email is within the cap's period and the fourth goes.
    program = (
        HELLO + "campaign c { cap email 2 per 7d on launch { send email hello wait 1d"
        " send email hello wait 1d send email hello wait 5d send email hello } }"
    )
    (found,) = check_text(program)
    assert found.code == "W303" and "3 email sends" in found.message


def test_channelless_cap_counts_every_channel() -> None:
    program = (
        HELLO + 'template nudge sms "x"\n'
        "campaign c { cap 1 per 1d on launch { send email hello send sms nudge } }"
    )
    assert codes(check_text(program)) == ["W303"]


def test_split_whose_branches_all_exit_makes_the_rest_unreachable() -> None:
    program = (
        HELLO + 'on launch { split { a 50%: exit  b 50%: { send email hello exit } } tag add "x" }'
    )
    assert codes(check_text(program)) == ["W301"]


def test_constant_conditions_make_branches_unreachable() -> None:
    found = check_text(
        HELLO + 'on launch {\n if false {\n send email hello } else if true {\n tag add "x" }'
        " else {\n exit } }"
    )
    assert [(d.code, d.line) for d in found] == [("W301", 4), ("W301", 6)]
    assert "`false`" in found[0].message and "always `true`" in found[1].message


def test_opens_are_measurable_on_whatsapp_read_receipts() -> None:
    program = (
        'template a whatsapp "A"\ntemplate b whatsapp "B"\n'
        "on launch { split 10% test winner by opens after 1h { a: send whatsapp a"
        "  b: send whatsapp b } }"
    )
    assert check_text(program) == []
    assert codes(check_text(program.replace("opens", "replies"))) == []
    assert codes(check_text(program.replace("whatsapp", "webhook"))) == ["E203"]
    mixed_channels = (
        'template a email { subject "A" body "A" }\ntemplate b sms "B"\n'
        "on launch { split 10% test winner by opens after 1h { a: send email a"
        "  b: send sms b } }"
    )
    found = check_text(mixed_channels)
    assert codes(found) == ["E203"]
    assert found[0].message == "opens cannot be measured on sms"
    assert found[0].hint == (
        "opens are measured on email and whatsapp; for these branches try clicks, replies "
        "or conversions"
    )
    assert check_text(mixed_channels.replace("opens", "replies")) == []


def test_quiet_hours_covering_the_send_window_close_it() -> None:
    program = (
        "campaign c { send_window 09:00-18:00 local weekdays "
        'quiet_hours sms 08:00-19:00 local  on launch { tag add "x" } }'
    )
    found = check_text(program)
    assert codes(found) == ["E210"]
    assert "sms never sends" in found[0].message
    assert check_text(program.replace("08:00-19:00", "21:00-08:00")) == []
    # Quiet hours in the campaign's zone against a window in each contact's: in Manila the
    # window is 01:00-10:00 UTC, mostly outside them.
    assert check_text(program.replace("08:00-19:00 local", "08:00-19:00")) == []
    assert codes(check_text(program.replace("local", ""))) == ["E210"]


def test_quiet_hours_of_a_channel_and_of_every_channel_close_the_window_together() -> None:
    """Quiet hours without a channel hold email too: with email's own, nothing is left."""
    program = (
        "campaign c { send_window 09:00-17:00 quiet_hours 08:00-12:00 "
        'quiet_hours email 12:00-18:00  on launch { tag add "x" } }'
    )
    found = check_text(program)
    assert codes(found) == ["E210"]
    assert found[0].message == (
        "quiet hours email 12:00-18:00 and 08:00-12:00 (every channel) together cover the "
        "whole send window 09:00-17:00, so email never sends"
    )
    assert check_text(program.replace("12:00-18:00", "13:00-18:00")) == []
    # Read in another zone than the window, they leave contacts elsewhere a moment.
    assert check_text(program.replace("email 12:00-18:00", "email 12:00-18:00 local")) == []


def test_a_timezone_written_as_an_offset_is_told_to_name_the_place() -> None:
    """`UTC+5` is not "UTC" misspelt: the closest name would read every time five hours off."""
    found = check_text('campaign c { timezone "UTC+5"  on launch { tag add "x" } }')
    assert codes(found) == ["E112"]
    assert found[0].hint is not None and "an offset, not a time zone" in found[0].hint
    assert '"Etc/GMT-5" is UTC+05:00' in found[0].hint
    (misspelt,) = check_text('campaign c { timezone "Europe/Pariss"  on launch { tag add "x" } }')
    assert misspelt.hint == "did you mean `Europe/Paris`?"


def test_overnight_send_window_is_allowed() -> None:
    assert (
        check_text('campaign c { send_window 22:00-06:00 daily on launch { tag add "x" } }') == []
    )


def test_costs_in_another_currency_than_the_budget() -> None:
    found = check_text(
        'campaign c { budget 5 USD cost email 0.1 EUR, smss 1 USD on launch { tag add "x" } }'
    )
    assert codes(found) == ["E212", "E104"]
    found = check_text('campaign c { cost email 1 USD, email 2 USD on launch { tag add "x" } }')
    assert [(d.code, d.column) for d in found] == [("E213", 32)]


def test_at_before_starts_and_date_only_ends_includes_that_day() -> None:
    program = (
        'campaign c { starts 2026-12-01 ends 2026-12-31 at 2026-12-31T20:00 local { tag add "x" } }'
    )
    assert check_text(program) == []
    found = check_text(program.replace("2026-12-31T20:00", "2026-11-30T20:00"))
    assert codes(found) == ["E212"]
    assert "before the campaign starts" in found[0].message


def test_email_template_parts_for_other_channels() -> None:
    found = check_text(
        'template i inbox { subject "Hi" preheader "p" body "b" }\n'
        'template w webhook { body "{}" }\n'
        'template e email { subject "s" body "b" locale "es" { subject "s" } }\n'
    )
    assert [(d.code, d.line) for d in found] == [("E216", 1)]


def test_body_file_hint_suggests_a_near_name(tmp_path: Path) -> None:
    (tmp_path / "welcome.html.j2").write_text("hi")
    source = tmp_path / "t.cadence"
    source.write_text('template t email { subject "s" body file "welcom.html.j2" }\n')
    found = check_paths([source])
    assert codes(found) == ["E217"]
    assert found[0].hint == "did you mean `welcome.html.j2`?"


def test_duplicate_names_across_kinds_and_campaigns() -> None:
    found = check_text(
        "segment warm = lead_score > 1\nscore warm { unsubscribed: -1 }\n"
        'campaign c { on launch { tag add "x" } }\ncampaign c { on launch { tag add "y" } }\n'
    )
    assert codes(found) == ["E113", "E113"]
    assert "both a segment and a score" in found[0].message
    assert "the campaign `c` is declared twice" in found[1].message


@pytest.mark.parametrize(
    ("declaration", "kind", "name"),
    [
        ("segment false = lead_score > 1", "segment", "false"),
        ("score converted { opened(any): +5 each }", "score", "converted"),
        ('template any email { subject "Hi" body "x" }', "template", "any"),
        ("schema contact { not: bool }", "contact attribute", "not"),
        ('campaign true { on launch { tag add "x" } }', "campaign", "true"),
    ],
)
def test_a_name_conditions_read_as_a_word_of_the_language_is_refused(
    declaration: str, kind: str, name: str
) -> None:
    found = check_text(declaration + "\n")
    assert codes(found) == ["E117"], "\n".join(d.render() for d in found)
    assert f"the {kind} `{name}` is named with a word" in found[0].message
    assert (found[0].line, found[0].column) == (1, declaration.index(f" {name}") + 2)


def test_other_keywords_and_longer_names_are_fine() -> None:
    program = (
        "segment true_fans = lead_score > 1\nscore any_score { opened(any): +1 each }\n"
        "segment in = lead_score > 2\n"
        'template send email { subject "Hi" body "x" }\n'
        "campaign c { audience true_fans and any_score > 2 and in on launch { send email send } }\n"
    )
    assert errors(check_text(program)) == []


def test_every_days_and_send_window_groups() -> None:
    assert check_text('every monday, friday 09:00 local { tag add "x" }') == []
    assert check_text('every 1d { tag add "x" }') == []
    found = check_text('every weekday 09:00 local { tag add "x" }')
    assert found[0].hint == "did you mean `weekdays`?"


def test_check_or_raise_fails_on_errors_only() -> None:
    check_or_raise(check_text("on launch { ... }"))
    with pytest.raises(CadenceCheckError) as info:
        check_or_raise(check_text("on launch { send email nope }"))
    assert "E101" in str(info.value)


def test_format_duration_reads_like_the_language() -> None:
    assert format_duration(7 * 86400) == "7d"
    assert format_duration(86400 + 12 * 3600) == "1d12h"
    assert format_duration(90) == "1m30s"


def test_a_template_on_an_unknown_channel_is_reported_once() -> None:
    found = check_text('template t emial "x"\non launch { send email t }')
    assert [(d.code, d.line) for d in found] == [("E104", 1)]


def test_a_locale_block_needs_a_locale_code_given_once() -> None:
    blocks = ('locale "Portuguese" {}', 'locale "" {}', 'locale "ES" {}', 'locale "es-419" {}')
    found = check_text(f'template t sms {{ body "x" {" ".join(blocks)} }}')
    assert [(d.code, d.column) for d in found] == [("E221", 35), ("E221", 50)]
    assert "not a locale" in found[0].message and "not a locale" in found[1].message
    spellings = 'locale "PT-br" {} locale "pt" {} locale "pt_BR" {}'
    twice = check_text(f'template t sms {{ body "x" {spellings} }}')
    assert [(d.code, d.column) for d in twice] == [("E221", 68)]
    assert 'the first, "PT-br", is at <string>:1' in (twice[0].hint or "")


@pytest.mark.parametrize(
    ("setting", "line_text", "valid"),
    [
        ("from", '"Acme, Inc. <hello@acme.test>"', True),
        ("from", '"hello@acme.test"', True),
        ("from", '"Acme hello at acme"', False),
        ("from", '"Acme <hello>"', False),
        ("reply_to", '"sales@acme.test"', True),
        ("reply_to", '"sales desk"', False),
        ("notify webhook", '"https://hooks.example.test/crm?x=1"', True),
        ("notify webhook", '"http://127.0.0.1:8080/in"', True),
        ("notify webhook", '"hooks.example.test/crm"', False),
        ("notify webhook", '"ftp://hooks.example.test/crm"', False),
        ("notify webhook", '"https:// hooks.example.test"', False),
    ],
)
def test_a_sender_or_webhook_url_no_provider_could_take_is_e222(
    setting: str, line_text: str, valid: bool
) -> None:
    # Checked clean, such a campaign deployed and then failed every email or notice.
    step = setting == "notify webhook"
    source = (
        'template t email { subject "s" body "b" }\n'
        "campaign c {\n"
        + ("" if step else f"  {setting} {line_text}\n")
        + "  on launch {\n    send email t\n"
        + (f"    {setting} {line_text}\n" if step else "")
        + "  }\n}\n"
    )
    found = [(d.code, d.line, d.column) for d in check_text(source)]
    column = len(setting) + (5 if step else 3) + 1
    assert found == ([] if valid else [("E222", 5 if step else 3, column)])


@pytest.mark.parametrize(
    ("assignment", "refused"),
    [
        ("lead_score = 5", False),
        ("lead_score = -2.5", False),
        ("lead_score = 20%", False),
        ("lead_score = other_score", False),  # computed: the contact's to tell
        ("lead_score = lead_score + 1", False),
        ('lead_score = "hot"', True),
        ("lead_score = 14d", True),
        ("lead_score = 5 USD", True),
        ("visits = 3", False),
        ("visits = 2.5", True),
        ('stage = "hot"', False),
        ("stage = 5", True),
        ('vip = lead_score > 3 and stage = "hot"', False),
        ('vip = "yes"', True),
        ("joined = 2026-12-01", False),
        ('joined = "2026-12-01"', False),  # stored as the date literal is
        ("joined = 2026-12-01T10:00", True),
        ("seen = 2026-12-01T10:00", False),
        ('seen = "2026-12-01T10:30Z"', False),
        ('seen = "last week"', True),
        ('areas = ["Cebu", "Makati"]', False),
        ('areas = "Cebu"', True),
        ("areas = [1, 2]", True),
        ("contact.stage = true", True),
        ("unlisted_by_schema = 1", False),  # E108, not E223
        ('id = "someone-else"', True),
        ('contact.id = "someone-else"', True),
        # The contact's own fields: what the runtime could not store is said at check time.
        ('first_name = "Ana"', False),
        # A name is text; a number or an instant is stored as its text, as an import's is.
        ("first_name = 42", False),
        ("last_name = 4.5", False),
        ("first_name = 2026-12-01", False),
        ("contact.first_name = true", True),
        ("last_name = lead_score > 3", True),
        ("first_name = 5 USD", True),
        ('last_name = ["Ana"]', True),
        ("first_name = stage", False),  # computed: the contact's to tell
        ('email = "ana@example.test"', False),
        ('email = "ana at example"', True),
        ('email = "Ana <ana@example.test>"', True),
        ("email = 5", True),
        ('timezone = "Asia/Manila"', False),
        ('contact.timezone = "Mars/Base"', True),
        ('locale = "es-MX"', False),
        ('locale = "Spanish!"', True),
        ('tags = ["vip"]', False),
        ('tags = "vip;buyer"', False),  # read as an import reads it: two tags
        ("tags = 5", True),
        ('phone = "+442079460958"', False),
        ("phone = true", True),
        ("email = stage", False),  # computed: the contact's to tell
    ],
)
def test_a_set_to_another_kind_than_the_schema_declares_is_e223(
    assignment: str, refused: bool
) -> None:
    source = (
        "schema contact { lead_score: number  visits: integer  stage: string  vip: bool\n"
        "  joined: date  seen: datetime  areas: list  other_score: number }\n"
        f"campaign c {{ when go {{ set {assignment} }} }}\n"
    )
    found = [d.code for d in check_text(source) if d.code == "E223"]
    assert found == (["E223"] if refused else [])


def test_send_suggestions_prefer_templates_of_the_same_channel() -> None:
    program = (
        'template follow_up sms "Hi"\ntemplate follow_up_whatsapp whatsapp "Hi"\n'
        'template follow_ups email { subject "s" body "b" }\n'
    )
    found = check_text(program + "on launch { send whatsapp follow_up  send sms follow_upp }")
    assert [(d.code, d.hint) for d in found] == [
        ("E201", "did you mean `send whatsapp follow_up_whatsapp`?"),
        ("E101", "did you mean `follow_up`?"),
    ]


# ---------------------------------------------------------------------------- the command


def test_check_json_prints_one_object_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = tmp_path / "E101.cadence"
    shutil.copy(FIXTURES / "E101_unknown_template.cadence", fixture)
    assert main(["check", "--format", "json", str(fixture)]) == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert list(record) == [
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "severity",
        "code",
        "message",
        "hint",
    ]
    assert record["file"] == str(fixture)
    assert (record["line"], record["column"], record["end_column"]) == (6, 16, 22)
    assert (record["severity"], record["code"]) == ("error", "E101")
    assert record["hint"] == "did you mean `welcome`?"


def test_check_text_output_has_caret_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(FIXTURES / "E101_unknown_template.cadence", tmp_path / "a.cadence")
    shutil.copy(FIXTURES / "W304_placeholder.cadence", tmp_path / "b.cadence")
    assert main(["check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "a.cadence:6:16: error[E101]: unknown template `welcom`" in err
    assert "   6 |     send email welcom\n" in err
    assert "\n                      ^^^^^^\n" in err
    assert "= hint: did you mean `welcome`?" in err
    assert err.index("error[E101]") < err.index("warning[W304]")
    assert captured.out == "1 error, 1 warning in 2 files\n"


def test_text_output_colours_severity_and_highlights_the_source_line() -> None:
    diagnostic = check_text("on launch { send email welcom }", name="x.cadence")[0]
    rendered = render_diagnostic(diagnostic)
    assert rendered.plain == diagnostic.render()
    styles = {str(span.style) for span in rendered.spans}
    assert "bold red" in styles
    source = highlight("on launch { send email welcom }")
    assert source.plain == "on launch { send email welcom }"
    assert len(source.spans) > 3, "the Cadence lexer coloured nothing"
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    console.print(rendered)
    assert "\x1b[" in console.file.getvalue()  # type: ignore[attr-defined]


def test_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.cadence"
    clean.write_text(HELLO + "on launch { send email hello }\n")
    warned = tmp_path / "sub" / "warned.cadence"
    warned.parent.mkdir()
    shutil.copy(FIXTURES / "W304_placeholder.cadence", warned)
    assert main(["check", str(clean)]) == 0
    assert "0 errors, 0 warnings in 1 file" in capsys.readouterr().out
    assert main(["check", str(clean), str(warned)]) == 0
    capsys.readouterr()
    assert main(["check", str(clean), str(tmp_path), str(clean)]) == 0
    assert "0 errors, 1 warning in 2 files" in capsys.readouterr().out
    assert main(["check", "--strict", str(warned)]) == 1
    assert main(["check", str(tmp_path / "missing.cadence")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check", str(empty)]) == 2
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2


def test_check_folder_recurses_and_reports_shared_imports_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = tmp_path / "deep" / "er"
    nested.mkdir(parents=True)
    (nested / "shared.cadence").write_text('template hello email { body "x" }\n')
    (nested / "main.cadence").write_text(
        'import "shared.cadence"\non launch { send email hello }\n'
    )
    assert main(["check", "--format", "json", str(tmp_path)]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["code"] for r in records] == ["E215"]


def test_check_examples_folder_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    assert "0 errors" in capsys.readouterr().out


# ---------------------------------------------------------------------------- robustness


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_only_ever_gives_diagnostics(text: str) -> None:
    try:
        parse_text(text)
    except CadenceError:
        pass
    for diagnostic in check_text(text):
        assert diagnostic.code[0] in "EW"


SIMPLE_STEPS = st.sampled_from(
    [
        "send email hello",
        "send sms nudge",
        "send email nope",
        "wait 1d",
        "wait 8d",
        "wait until 09:00 local",
        "wait for clicked(hello) up to 2d",
        "wait for opened(x)",
        "exit",
        "enroll c",
        "enroll d",
        'tag add "t"',
        "set a = 1",
        "...",
    ]
)


def _compound_steps(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    block = st.lists(children, max_size=4).map(lambda steps: "{ " + " ".join(steps) + " }")
    return st.one_of(
        st.tuples(block, block).map(lambda b: f"if clicked(hello) {b[0]} else {b[1]}"),
        st.tuples(block, block, st.sampled_from(["50%", "40%", "0%"])).map(
            lambda b: f"split {{ a 50%: {b[0]} b {b[2]}: {b[1]} }}"
        ),
        st.tuples(block, block, st.sampled_from(["opens", "replies", "nope"])).map(
            lambda b: f"split 20% test winner by {b[2]} after 1h {{ a: {b[0]} b: {b[1]} }}"
        ),
    )


STEPS = st.recursive(SIMPLE_STEPS, _compound_steps, max_leaves=20)
SETTINGS = st.lists(
    st.sampled_from(
        [
            "cap email 2 per 7d",
            "cap 1 per 1d",
            "starts 2026-01-01",
            "ends 2026-02-01",
            "channels email",
            "max_sends 3",
            "send_window 09:00-17:00 weekdays",
            "quiet_hours sms 08:00-18:00",
        ]
    ),
    max_size=5,
)
TRIGGERS = st.sampled_from(["on launch", "at 2026-01-10T09:00 local", "when viewed count>=2"])
CAMPAIGNS = st.tuples(
    st.sampled_from(["c", "d"]), SETTINGS, TRIGGERS, st.lists(STEPS, max_size=8)
).map(lambda c: f"campaign {c[0]} {{ {' '.join(c[1])} {c[2]} {{ {' '.join(c[3])} }} }}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CAMPAIGNS, min_size=1, max_size=3), st.booleans())
def test_generated_programs_get_positioned_diagnostics_only(
    campaigns: list[str], with_schema: bool
) -> None:
    schema = "schema contact { a: number }\n" if with_schema else ""
    source = HELLO + 'template nudge sms "x"\n' + schema + "\n".join(campaigns)
    found = check_text(source)
    assert not {"E002", "E003", "E004"} & set(codes(found)), "the generator wrote bad syntax"
    lines = source.split("\n")
    for diagnostic in found:
        assert 1 <= diagnostic.line <= len(lines)
        assert 1 <= diagnostic.column <= len(lines[diagnostic.line - 1]) + 1
        assert diagnostic.hint


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.programs())
def test_any_valid_program_gets_well_formed_diagnostics(program: ast.Program) -> None:
    # Random valid programs (tests/strategies.py) name random templates, segments and
    # campaigns, so they draw plenty of diagnostics; each must point into the text. Imports
    # name files that do not exist, which is the loader's business, so they are left out.
    kept = tuple(d for d in program.declarations if not isinstance(d, ast.Import))
    source = format_program(ast.Program(kept))
    lines = source.split("\n")
    for diagnostic in check_text(source):
        assert diagnostic.code in CHECK_CODES, diagnostic.render()
        assert 1 <= diagnostic.line <= len(lines)
        assert 1 <= diagnostic.column <= len(lines[diagnostic.line - 1]) + 1
        assert diagnostic.hint


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_only_raise_cadence_errors(data: bytes) -> None:
    try:
        parse_bytes(data)
    except CadenceError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_in_a_file_are_only_ever_diagnostics(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "any.cadence"
        source.write_bytes(data)
        for diagnostic in check_paths([source]):
            assert diagnostic.file == str(source)


def test_a_file_that_is_not_utf8_is_e001(tmp_path: Path) -> None:
    source = tmp_path / "bad.cadence"
    source.write_bytes(b"segment a = \xff\xfe")
    found = check_paths([source])
    assert [(d.code, d.line, d.column) for d in found] == [("E001", 1, 13)]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_errors_have_their_own_line_whatever_the_line_endings(tmp_path: Path, ending: str) -> None:
    # Files saved on Windows (CRLF) or by old Mac editors (CR alone): each error is on
    # its own line, not all on line 1.
    lines = ['template t email { subject "s" body "b" }', "campaign a {", "  on launch {",
             "    send email missing", "  }", "}"]  # fmt: skip
    source = tmp_path / "endings.cadence"
    source.write_bytes(ending.join(lines).encode() + ending.encode())
    found = check_paths([source])
    assert [(d.code, d.line, d.column) for d in found] == [("E101", 4, 16)]


def test_an_event_spelt_two_ways_is_flagged_where_it_is_the_rarer_or_later(
    tmp_path: Path,
) -> None:
    """W306 marks the less used spelling (the later one on a tie), across imported files
    too, and leaves names that are merely alike (`page_viewed`, `pages`) alone."""
    (tmp_path / "shared.cadence").write_text(
        "segment browsing = count(course_viewed, 7d) >= 1 and count(page_viewed, 7d) >= 1\n"
        "segment keen = last(course_viewed) within 1d and count(pages, 7d) >= 1\n",
        "utf-8",
    )
    (tmp_path / "main.cadence").write_text(
        'import "shared.cadence"\n'
        'template t email { subject "s" body "b" }\n'
        "when course_veiwed { send email t }\n"
        "when trial_started { wait for trial_ended up to 3d  send email t }\n"
        "when trial_end { send email t }\n",
        "utf-8",
    )
    found = [d for d in check_paths([tmp_path / "main.cadence"]) if d.code == "W306"]
    assert [(Path(d.file).name, d.line, d.column, d.message) for d in found] == [
        ("main.cadence", 3, 6, "event `course_veiwed` is one typo from the event `course_viewed` "
         f"(line 1 of {tmp_path / 'shared.cadence'}): two spellings of one event?"),
        ("main.cadence", 5, 6, "event `trial_end` is one typo from the event `trial_ended` "
         "(line 4): two spellings of one event?"),
    ]  # fmt: skip


def test_contact_dot_a_score_or_segment_is_named_unless_the_schema_stores_it() -> None:
    """`contact.engagement` is a stored attribute nobody has when `engagement` is a score."""
    declared = "score engagement { clicked(any): +10 each }\nsegment engaged = engagement >= 20\n"
    found = check_text(f"{declared}segment s = contact.engagement >= 20")
    assert codes(found) == ["W309"]
    assert "write the score by its name, without `contact.`" in (found[0].hint or "")
    assert codes(check_text(f"{declared}segment s = not contact.engaged")) == ["W309"]
    # The bare names are the score and the segment: nothing to say.
    assert check_text(f"{declared}segment s = engagement >= 20 and engaged") == []
    # An attribute the schema declares under that name is a real one, read on purpose.
    schema = "schema contact { engagement: number }\n"
    assert check_text(f"{schema}{declared}segment s = contact.engagement >= 20") == []
    # With a schema that lacks it, it is E108, and the hint names the score.
    other = "schema contact { city: string }\n"
    found = check_text(f"{other}{declared}segment s = contact.engagement >= 20")
    assert codes(found) == ["E108"]
    assert "`engagement` is a score" in (found[0].hint or "")


def test_a_template_reading_a_score_through_contact_is_named() -> None:
    declared = "score engagement { clicked(any): +10 each }\n"
    template = 'template t sms "You have {{ contact.engagement }} points"\n'
    found = check_text(f"{declared}{template}")
    assert codes(found) == ["W309"]
    assert "set engagement_now = engagement" in (found[0].hint or "")
    stored = 'template t sms "You have {{ contact.points }} points"\n'
    assert check_text(declared + stored) == []


def test_setting_an_attribute_named_like_a_score_or_segment_is_named() -> None:
    """`set engagement = 50` stores a value the bare `engagement` (the score) never reads."""
    declared = "score engagement { clicked(any): +10 each }\nsegment hot = engagement >= 10\n"
    template = 'template a email { subject "A" body "x" }\n'
    steps = "set engagement = 50  set contact.hot = true  set stage = 1  send email a"
    found = check_text(f"{declared}{template}campaign c {{ on launch {{ {steps} }} }}")
    assert codes(found) == ["W309", "W309"]
    assert "the score `engagement` hides" in found[0].message
    assert "the segment `hot` hides" in found[1].message
    assert "set engagement_override" in (found[0].hint or "")
    # A schema that stores the attribute says it is meant: nothing to say.
    schema = "schema contact { engagement: number  hot: bool  stage: number }\n"
    stored = f"{schema}{declared}{template}campaign c {{ on launch {{ {steps} }} }}"
    assert check_text(stored) == []


def test_engagement_in_a_step_is_named_only_for_templates_the_campaign_never_sends() -> None:
    """Its own templates, `any`, segments (they see every campaign) and audiences are fine."""
    templates = (
        'template w email { subject "W" body "x" }\ntemplate t email { subject "T" body "x" }\n'
    )
    other = "campaign a { on launch { send email w } }\n"
    fine = (
        "segment opened_w = opened(w)\n"
        "campaign b { audience opened(w)  goal clicked(t)\n"
        "  on launch { send email t  wait 1d\n"
        "    if opened(any) or opened(t) or opened_w { exit } } }\n"
    )
    assert check_text(templates + other + fine) == []
    for step in ("if opened(w) { exit }", "wait for clicked(w) up to 1d", "set seen = replied(w)"):
        found = check_text(
            f"{templates}{other}campaign b {{ on launch {{ send email t  {step} }} }}"
        )
        assert codes(found) == ["W310"], step
        assert "use a segment" in (found[0].hint or "")
    goal = check_text(
        f"{templates}{other}campaign b {{ goal opened(w)  on launch {{ send email t }} }}"
    )
    assert codes(goal) == ["W310"]


@pytest.mark.parametrize(
    ("condition", "warned"),
    [
        ('lead_score > "50"', True),
        ('"2.5" <= rating', True),
        ('budget >= "-100"', True),
        ("lead_score > 50", False),
        ('zip = "02139"', False),  # codes are text on purpose
        ('signup_day >= "2026-01-01"', False),
        ('tier > "gold"', False),
    ],
)
def test_an_ordering_with_a_quoted_number_is_named(condition: str, warned: bool) -> None:
    found = check_text(f"segment s = {condition}")
    assert codes(found) == (["W311"] if warned else [])


_PRICE_DROP = (
    'template drop email {{ subject "Now {subject}" body "<p>x</p>" }}\n'
    'template hello email {{ subject "Hi" body "x" }}\n'
    "segment vip = lead_score > 50\n"
)


@pytest.mark.parametrize(
    ("subject", "trigger", "fields"),
    [
        ("{{ event.price | money('USD') }}", "on launch", ["price"]),
        ("{{ event['sku'] }} {{ event.city }}", "on segment_enter vip", ["city", "sku"]),
        ("{{ event.price }}", "on contact_created", ["price"]),
        ("{{ event.price }}", "every monday 09:00 local", ["price"]),
        ("{{ event.price }}", "when price_changed", []),  # the trigger's event is there
        ("{{ event.price | default('soon') }}", "on launch", []),
        ("{% if event.price %}{{ event.price }}{% endif %}", "on launch", []),
        ("{{ event.price if event.price is defined else '' }}", "on launch", []),
        ("{{ contact.first_name | default('you') }}", "on launch", []),
    ],
)
def test_a_template_reading_the_event_sent_where_there_is_none_is_named(
    subject: str, trigger: str, fields: list[str]
) -> None:
    """Only a `when EVENT` trigger gives its steps an event: elsewhere `{{ event.price }}`
    is undefined for every send, and each of them fails to render. A read under `default`,
    an `if` or an `is` test has its absence seen to."""
    found = check_text(
        _PRICE_DROP.format(subject=subject)
        + f"campaign c {{ {trigger} {{ send email drop  send email hello }} }}"
    )
    assert codes(found) == (["W312"] if fields else [])
    if fields:
        (warning,) = found
        assert warning.severity == "warning"
        named = ", ".join(f"`event.{name}`" for name in fields)
        assert f"`drop` reads {named}, but this step's trigger gives no event" in warning.message
        assert warning.column == len("campaign c { " + trigger + " { send email ") + 1


_PRICED = 'template a email { subject "A" body "x" }\ntemplate b sms "Hi"\ntemplate c inbox "In"\n'


@pytest.mark.parametrize(
    ("settings", "steps", "unpriced", "hint"),
    [
        ("budget 5 USD", "send email a", "email", "price them: `cost email AMOUNT USD`"),
        (
            "budget 5 USD  cost email 0.001 USD",
            "send email a  send sms b",
            "sms",
            "add `sms AMOUNT USD` to the `cost` at line 6",
        ),
        ("budget 5 USD  cost email 0.001 USD, sms 0.05 USD", "send email a  send sms b", "", ""),
        ("budget 5 USD  cost email 0.001 USD", "send email a  send inbox c", "", ""),
        ("cost email 0.001 USD", "send email a  send sms b", "", ""),  # no budget to keep
    ],
)
def test_a_budget_that_never_counts_a_channel_s_messages_is_named(
    settings: str, steps: str, unpriced: str, hint: str
) -> None:
    """A budget counts each message at the campaign's `cost` for its channel: a paid channel
    it does not price counts nothing, so the campaign never pauses for those messages."""
    found = check_text(_PRICED + f"campaign c {{\n  {settings.replace('  ', chr(10))}\n"
                       f"  on launch {{ {steps} }}\n}}")  # fmt: skip
    assert codes(found) == (["W313"] if unpriced else [])
    if unpriced:
        (warning,) = found
        assert f"no cost for {unpriced}" in warning.message and warning.hint == hint


def test_w314_leaves_alone_counts_the_firing_event_can_meet() -> None:
    # The firing event makes the count 1 or more; below that only an open or click with
    # `within` can be (a second report of a message first opened before the window).
    source = """
template t email { subject "s" body "b" }
when viewed count<2 send email t
when shared count!=0 send email t
when opened count<1 within 1d send email t
when clicked count=0 within 2d send email t
"""
    assert [d.code for d in check_text(source, "t.cadence")] == []
    never = 'template t email { subject "s" body "b" }\nwhen opened count=0 send email t\n'
    assert [d.code for d in check_text(never, "t.cadence")] == ["W314"]
