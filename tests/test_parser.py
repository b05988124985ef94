"""The parser: every construct of LANGUAGE.md becomes the right AST, and bad text a clear error."""

from __future__ import annotations

import datetime as dt
import unicodedata
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.dsl import ast
from cadence.dsl.parser import duration_seconds, parse_bytes, parse_file, parse_text
from cadence.errors import CadenceError, CadenceSyntaxError
from tests.language_md import (
    LANGUAGE_MD_COPY,
    SHARED_LANGUAGE_MD,
    as_program,
    language_blocks,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def only(program: ast.Program) -> ast.Declaration:
    assert len(program.declarations) == 1, program.declarations
    return program.declarations[0]


def steps_of(text: str) -> tuple[ast.Step, ...]:
    block = only(parse_text(f"on launch {{ {text} }}"))
    assert isinstance(block, ast.TriggerBlock)
    return block.steps


def expr_of(text: str) -> ast.Expr:
    segment = only(parse_text(f"segment s = {text}"))
    assert isinstance(segment, ast.SegmentDecl)
    return segment.expr


# ---------------------------------------------------------------------------- LANGUAGE.md


def test_language_md_has_the_expected_blocks() -> None:
    assert len(language_blocks()) >= 6


def test_the_copy_of_language_md_matches_the_original() -> None:
    if not SHARED_LANGUAGE_MD.is_file():
        pytest.skip("../shared/LANGUAGE.md is not beside this clone; the copy stands in for it")
    assert LANGUAGE_MD_COPY.read_text("utf-8") == SHARED_LANGUAGE_MD.read_text("utf-8")


@pytest.mark.parametrize("index", range(len(language_blocks())))
def test_every_language_md_block_parses(index: int) -> None:
    parse_text(as_program(language_blocks()[index]), f"LANGUAGE.md#{index}")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.cadence")), ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    program = parse_file(path)
    assert program.declarations


# ---------------------------------------------------------------------------- declarations


def test_segment_with_within_and_precedence() -> None:
    expr = expr_of("lead_score >= 30 and last_activity within 30d or not email_verified")
    assert expr == ast.Binary(
        "or",
        ast.Binary(
            "and",
            ast.Compare(">=", ast.Path(("lead_score",)), ast.NumberLit(Decimal(30))),
            ast.Within(ast.Path(("last_activity",)), ast.DurationLit(30 * 86400)),
        ),
        ast.Unary("not", ast.Path(("email_verified",))),
    )


def test_template_forms() -> None:
    program = parse_text(
        'template follow_up sms "Hi {{ contact.first_name }}, say \\"STOP\\""\n'
        "template welcome email {\n"
        '  subject "Welcome"\n  preheader "Three things"\n  body file "templates/w.html.j2"\n'
        '  locale "es" { subject "Bienvenida" body "<p>Hola</p>" }\n'
        "}\n"
    )
    inline, block = program.declarations
    assert isinstance(inline, ast.TemplateDecl) and inline.inline
    assert inline.content.body == ast.StringLit('Hi {{ contact.first_name }}, say "STOP"')
    assert isinstance(block, ast.TemplateDecl) and not block.inline
    assert block.content.body_file == ast.StringLit("templates/w.html.j2")
    assert block.locales[0].locale == "es"
    assert block.locales[0].content.body == ast.StringLit("<p>Hola</p>")


def test_template_part_given_twice_is_an_error() -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text('template t email { subject "a" subject "b" body "x" }')
    assert info.value.diagnostics[0].code == "E010"


def test_one_line_automation() -> None:
    block = only(parse_text("when property_viewed count>=3 wait 1h send email property_details"))
    assert isinstance(block, ast.TriggerBlock) and not block.braced
    assert block.trigger == ast.EventTrigger("property_viewed", count=ast.CountClause(">=", 3))
    assert block.steps == (
        ast.Wait(ast.DurationLit(3600)),
        ast.Send("email", "property_details"),
    )


@pytest.mark.parametrize(
    ("written", "op"),
    [(">=", ">="), (">", ">"), ("=", "="), (" = ", "="), ("==", "="), ("<=", "<="),
     ("<", "<"), ("!=", "!=")],
)  # fmt: skip
def test_every_count_comparison_the_language_lists(written: str, op: str) -> None:
    # docs/language.md: `count OP N` with `>=`, `>`, `=`, `==`, `<=`, `<`, `!=`; and
    # "Equality is written `=` (or `==`)".
    block = only(parse_text(f"when property_viewed count{written}3 send email x"))
    assert isinstance(block, ast.TriggerBlock)
    assert block.trigger == ast.EventTrigger("property_viewed", count=ast.CountClause(op, 3))


def test_wait_for_takes_a_condition() -> None:
    # docs/language.md: `wait for CONDITION up to DURATION`.
    block = only(parse_text("when x { wait for lead_score >= 50 and verified up to 3d }"))
    assert isinstance(block, ast.TriggerBlock)
    (step,) = block.steps
    assert step == ast.WaitFor(
        ast.Binary(
            "and",
            ast.Compare(">=", ast.Path(("lead_score",)), ast.NumberLit(Decimal(50))),
            ast.Path(("verified",)),
        ),
        ast.DurationLit(3 * 86400),
    )


def test_event_trigger_options() -> None:
    block = only(
        parse_text(
            "when property_viewed count>=3 within 7d where event.price <= 500000 send email x"
        )
    )
    assert isinstance(block, ast.TriggerBlock)
    trigger = block.trigger
    assert isinstance(trigger, ast.EventTrigger)
    assert trigger.within == ast.DurationLit(7 * 86400)
    assert trigger.where == ast.Compare(
        "<=", ast.Path(("event", "price")), ast.NumberLit(Decimal(500000))
    )


def test_fanout_trigger() -> None:
    block = only(
        parse_text(
            "when property_listed for contacts where contact.budget_max >= event.price"
            " and event.city in contact.areas\n  send email new_listing"
        )
    )
    assert isinstance(block, ast.TriggerBlock)
    assert isinstance(block.trigger, ast.EventTrigger)
    assert block.trigger.fanout == ast.Binary(
        "and",
        ast.Compare(">=", ast.Path(("contact", "budget_max")), ast.Path(("event", "price"))),
        ast.Compare("in", ast.Path(("event", "city")), ast.Path(("contact", "areas"))),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on contact_created { exit }", ast.ContactCreatedTrigger()),
        ("on segment_enter engaged { exit }", ast.SegmentEnterTrigger("engaged")),
        ("on launch { exit }", ast.LaunchTrigger()),
        ("on form_submitted { exit }", ast.EventTrigger("form_submitted")),
        (
            "at 2026-12-01T09:00 local { exit }",
            ast.AtTrigger(ast.DateTimeLit(dt.datetime(2026, 12, 1, 9, 0)), True),
        ),
        (
            "every monday 09:00 local { exit }",
            ast.EveryTrigger(("monday",), None, ast.TimeLit(9, 0), True),
        ),
        (
            "every monday, thursday 18:30 { exit }",
            ast.EveryTrigger(("monday", "thursday"), None, ast.TimeLit(18, 30), False),
        ),
        ("every 1w { exit }", ast.EveryTrigger((), ast.DurationLit(7 * 86400), None, False)),
    ],
)
def test_triggers(text: str, expected: ast.Trigger) -> None:
    block = only(parse_text(text))
    assert isinstance(block, ast.TriggerBlock)
    assert block.trigger == expected


def test_score_block() -> None:
    score = only(
        parse_text(
            "score engagement {\n  opened(any) within 30d: +5 each\n"
            "  property_viewed within 7d: +3 each\n  unsubscribed: -100\n  decay 10% per 30d\n}"
        )
    )
    assert isinstance(score, ast.ScoreDecl)
    assert score.rules == (
        ast.ScorePoints(
            ast.Call("opened", (ast.Path(("any",)),)), ast.DurationLit(30 * 86400), Decimal(5), True
        ),
        ast.ScorePoints(
            ast.Path(("property_viewed",)), ast.DurationLit(7 * 86400), Decimal(3), True
        ),
        ast.ScorePoints(ast.Path(("unsubscribed",)), None, Decimal(-100), False),
        ast.ScoreDecay(ast.PercentLit(Decimal(10)), ast.DurationLit(30 * 86400)),
    )


def test_campaign_settings() -> None:
    block = language_blocks()[-2] if "campaign welcome_series" in language_blocks()[-2] else ""
    source = block or next(b for b in language_blocks() if "campaign welcome_series" in b)
    campaign = only(parse_text(source))
    assert isinstance(campaign, ast.CampaignDecl)
    assert campaign.name == "welcome_series" and campaign.display_name == "Welcome series"
    by_type = {type(s).__name__: s for s in campaign.settings}
    assert ast.CapSetting("email", 3, ast.DurationLit(7 * 86400)) in campaign.settings
    assert by_type["SendWindowSetting"] == ast.SendWindowSetting(
        ast.TimeLit(9, 0), ast.TimeLit(18, 0), True, ("weekdays",)
    )
    assert by_type["TimezoneSetting"] == ast.TimezoneSetting("America/New_York", True)
    assert by_type["QuietHoursSetting"] == ast.QuietHoursSetting(
        "sms", ast.TimeLit(21, 0), ast.TimeLit(8, 0), True
    )
    assert by_type["BudgetSetting"] == ast.BudgetSetting(ast.MoneyLit(Decimal(500), "USD"))
    assert by_type["CostSetting"] == ast.CostSetting(
        (
            ast.CostItem("email", ast.MoneyLit(Decimal("0.001"), "USD")),
            ast.CostItem("sms", ast.MoneyLit(Decimal("0.05"), "USD")),
        )
    )
    assert ast.ChannelsSetting(("email", "sms")) in campaign.settings
    assert ast.DateSetting("ends", ast.DateLit(dt.date(2027, 1, 31))) in campaign.settings
    assert len(campaign.triggers) == 1
    assert isinstance(campaign.triggers[0].trigger, ast.ContactCreatedTrigger)


# ---------------------------------------------------------------------------- steps


def test_every_step() -> None:
    steps = steps_of(
        """
        send email welcome
        wait 1d12h
        wait until 09:00 local
        wait for clicked(welcome) up to 3d
        if opened(welcome) { send email a } else if lead_score > 50 { send email b } else { exit }
        split 20% test winner by clicks after 4h { a: send email offer_a  b: send email offer_b }
        split { a 50%: send email subject_a   b 50%: send email subject_b }
        set lead_stage = "nurture"
        tag add "webinar-2026"
        assign agent round_robin
        notify webhook "https://hooks.example.test/crm"
        enroll other_campaign
        exit "moved to sales"
        """
    )
    assert [type(s).__name__ for s in steps] == [
        "Send", "Wait", "WaitUntil", "WaitFor", "If", "ABSplit", "RandomSplit",
        "SetAttr", "Tag", "AssignAgent", "Notify", "Enroll", "Exit",
    ]  # fmt: skip
    assert steps[1] == ast.Wait(ast.DurationLit(86400 + 12 * 3600))
    assert steps[3] == ast.WaitFor(
        ast.Call("clicked", (ast.Path(("welcome",)),)), ast.DurationLit(3 * 86400)
    )
    branch = steps[4]
    assert isinstance(branch, ast.If)
    assert len(branch.branches) == 2 and branch.else_steps == (ast.Exit(None),)
    ab = steps[5]
    assert isinstance(ab, ast.ABSplit)
    assert (ab.test_share.value, ab.metric, ab.after.seconds) == (Decimal(20), "clicks", 14400)
    assert [b.name for b in ab.branches] == ["a", "b"]
    random_split = steps[6]
    assert isinstance(random_split, ast.RandomSplit)
    assert [b.share for b in random_split.branches] == [
        ast.PercentLit(Decimal(50)),
        ast.PercentLit(Decimal(50)),
    ]


def test_wait_for_without_up_to_parses_for_the_checker_to_report() -> None:
    (step,) = steps_of("wait for clicked(welcome)")
    assert step == ast.WaitFor(ast.Call("clicked", (ast.Path(("welcome",)),)), None)


def test_newlines_carry_no_meaning() -> None:
    spread = parse_text("when\nx\ncount\n>=\n3\nwait\n1h\nsend\nemail\ny")
    compact = parse_text("when x count>=3 wait 1h send email y")
    assert spread == compact


# ---------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = 1", ast.Compare("=", ast.Path(("x",)), ast.NumberLit(Decimal(1)))),
        ("x == 1", ast.Compare("=", ast.Path(("x",)), ast.NumberLit(Decimal(1)))),
        ("x != 2.5", ast.Compare("!=", ast.Path(("x",)), ast.NumberLit(Decimal("2.5")))),
        (
            'country in ["PH", "SG"]',
            ast.Compare(
                "in",
                ast.Path(("country",)),
                ast.ListLit((ast.StringLit("PH"), ast.StringLit("SG"))),
            ),
        ),
        ("x not in []", ast.Compare("not in", ast.Path(("x",)), ast.ListLit(()))),
        ('tags contains "vip"', ast.Compare("contains", ast.Path(("tags",)), ast.StringLit("vip"))),
        (
            'email startswith "a"',
            ast.Compare("startswith", ast.Path(("email",)), ast.StringLit("a")),
        ),
        (
            "count(property_viewed, 7d) >= 3",
            ast.Compare(
                ">=",
                ast.Call("count", (ast.Path(("property_viewed",)), ast.DurationLit(7 * 86400))),
                ast.NumberLit(Decimal(3)),
            ),
        ),
        (
            "last(login) > 2026-12-01T09:00",
            ast.Compare(
                ">",
                ast.Call("last", (ast.Path(("login",)),)),
                ast.DateTimeLit(dt.datetime(2026, 12, 1, 9)),
            ),
        ),
        (
            "budget >= 500 USD",
            ast.Compare(">=", ast.Path(("budget",)), ast.MoneyLit(Decimal(500), "USD")),
        ),
        (
            "price * 2 - 1 > -3",
            ast.Compare(
                ">",
                ast.Binary(
                    "-",
                    ast.Binary("*", ast.Path(("price",)), ast.NumberLit(Decimal(2))),
                    ast.NumberLit(Decimal(1)),
                ),
                ast.Unary("-", ast.NumberLit(Decimal(3))),
            ),
        ),
        ("active = true", ast.Compare("=", ast.Path(("active",)), ast.BoolLit(True))),
        ("converted", ast.Path(("converted",))),
        (
            "(a or b) and c",
            ast.Binary(
                "and", ast.Binary("or", ast.Path(("a",)), ast.Path(("b",))), ast.Path(("c",))
            ),
        ),
        ("type = 1", ast.Compare("=", ast.Path(("type",)), ast.NumberLit(Decimal(1)))),
    ],
)
def test_expressions(text: str, expected: ast.Expr) -> None:
    assert expr_of(text) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("1d12h", 129600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


def test_comments_are_kept_with_positions() -> None:
    program = parse_text('# head\nsegment s = x > 1  # trailing "quoted"\n')
    assert [(c.text, c.span.line, c.span.column) for c in program.comments] == [
        ("# head", 1, 1),
        ('# trailing "quoted"', 2, 20),
    ]


def test_hash_inside_a_string_is_not_a_comment() -> None:
    program = parse_text('template t sms "use #promo"')
    assert program.comments == ()


def test_string_literals_are_composed_and_paths_kept_as_written() -> None:
    """A literal typed in NFD ("Zu" and a combining diaeresis, as macOS tools export) is
    the NFC text stored values are (`cadence.text`); an import or `body file` path names a
    file as written, in whichever form the file system holds it."""
    decomposed = unicodedata.normalize("NFD", "Zürich")
    nfd = parse_text(
        f'import "{decomposed}.cadence"\n'
        f'template t email {{ subject "{decomposed}" body file "{decomposed}.html" }}\n'
        f'segment s = city = "{decomposed}"'
    )
    nfc = parse_text('segment s = city = "Zürich"')
    imported, template, segment = nfd.declarations
    assert isinstance(imported, ast.Import) and imported.path == f"{decomposed}.cadence"
    assert isinstance(template, ast.TemplateDecl)
    assert template.content.subject is not None
    assert template.content.subject.value == unicodedata.normalize("NFC", "Zürich")
    assert template.content.body_file is not None
    assert template.content.body_file.value == f"{decomposed}.html"
    assert segment == nfc.declarations[0]


# ---------------------------------------------------------------------------- errors


def test_syntax_error_names_position_expected_tokens_and_suggestion() -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text("when x wait 1h sned email welcome", "f.cadence")
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.column) == ("f.cadence", 1, 16)
    assert diagnostic.code == "E004"
    assert "unexpected name `sned`" in diagnostic.message
    assert "a step (`send`, `wait`" in diagnostic.message
    assert diagnostic.hint == "did you mean `send`?"
    rendered = diagnostic.render()
    assert "f.cadence:1:16: error[E004]" in rendered
    assert "   1 | when x wait 1h sned email welcome" in rendered
    assert rendered.splitlines()[2] == " " * 22 + "^^^^"


@pytest.mark.parametrize(
    ("before", "cells"),
    [("\u65e5\u672c\u8a9e", 6), ("e\u0301t\u00e9", 3), ("\uff21", 2), ("\u200b ", 1)],
)
def test_the_caret_stays_under_its_token_after_wide_or_zero_width_text(
    before: str, cells: int
) -> None:
    text = f'template t sms "{before}" on launch {{ sned sms t }}'
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.column == text.index("sned") + 1
    caret = diagnostic.render().splitlines()[2]
    prefix = len('   1 | template t sms "') + cells + len('" on launch { ')
    assert caret == " " * prefix + "^^^^"


def test_several_errors_are_reported_in_one_run() -> None:
    text = (
        "segment a = x >\n"
        'template t email "ok"\n'
        "when x wait 1h sned email t\n"
        "segment fine = y > 1\n"
        "campaign c { type drip on launch { wait 25:00 } }\n"
    )
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    lines = [d.line for d in info.value.diagnostics]
    assert lines == [2, 3, 5]


def test_unclosed_brace_reports_the_end_of_file() -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text('template t email {\n  subject "a"\n')
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E002"
    assert "ends too early" in diagnostic.message
    assert diagnostic.hint is not None and "`}`" in diagnostic.hint


@pytest.mark.parametrize(
    ("text", "fragment", "hint"),
    [
        ("every monday 24:00 { exit }", "not a time of day", "00:00 to 23:59"),
        ("at 2026-13-01 { exit }", "not a real date", "months run from 01 to 12"),
        ("campaign c { starts 2026-02-30 }", "not a real date", "February 2026 has 28 days"),
        ("segment s = d > 2028-02-30", "not a real date", "February 2028 has 29 days"),
        ("at 2026-04-31T09:00 { exit }", "not a real date", "April 2026 has 30 days"),
        ("at 2026-12-01T25:00 { exit }", "not a real date", "00:00 to 23:59"),
        ("campaign c { ends 0000-01-01 }", "not a real date", "years start at 0001"),
        ("on launch { split { a 150%: exit } }", "more than 100%", "0% to 100%"),
        ("segment s = x within 0d", "is zero", "at least 1s"),
        ("on launch { wait 99999w }", "longer than ten years", "520w"),
        ("campaign c { cap email 2.5 per 1d }", "whole number", "without a decimal point"),
        ("campaign c { cap email 1000000001 per 1d }", "more than a billion", "smaller number"),
        ("when viewed count>=99999999999999999999 exit", "more than a billion", "smaller"),
        ("campaign c { ends 9999-12-31 }", "outside the years a campaign", "leave it out"),
        ("campaign c { starts 3000-01-01 }", "outside the years a campaign", "1970 to 2999"),
        ("at 0001-01-01T00:00 local { exit }", "outside the years a campaign", "1970 to 2999"),
    ],
)
def test_literals_out_of_range(text: str, fragment: str, hint: str) -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E012"
    assert fragment in diagnostic.message
    assert diagnostic.hint is not None and hint in diagnostic.hint, diagnostic.hint


@pytest.mark.parametrize(
    ("text", "column", "hint"),
    [
        ("segment caf\u00e9 = x > 1", 12, "write `cafe`, not `caf\u00e9`"),
        ("on launch { send email h\u00e9llo }", 25, "write `hello`, not `h\u00e9llo`"),
        ("segment vip\U0001f600 = x > 1", 12, "write `vip`, not"),
        ("segment \u0434\u0430 = x > 1", 9, "names use only a-z, 0-9 and `_`"),
        ("template t sms \u201cHi\u201d", 16, "straight double quotes"),
        ("campaign c { send_window 09:00\u201318:00 }", 31, "plain hyphen"),
        ("on launch {\u00a0exit }", 12, "(no-break space), often pasted in: replace it with"),
        ("on launch { exit\u200b }", 17, "(zero width space), often pasted in: remove it"),
        ("on launch {\x0bexit }", 12, "(U+000B)"),
        ("on launch { wait \uff12d }", 18, "write digits as 0-9: `2`"),
        ("segment s = x > \u0663", 17, "write digits as 0-9: `3`"),
        ("on launch { wait \u0669h }", 18, "write digits as 0-9: `9`"),
    ],
)
def test_characters_pasted_from_outside_ascii_get_a_hint(text: str, column: int, hint: str) -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == ("E003", 1, column)
    assert diagnostic.hint is not None and hint in diagnostic.hint, diagnostic.hint


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("on launch { if x > 1 send email t }", "write `{` before `send`"),
        ("on launch { split 20% test winner by clicks after 4h { a send email t } }", "`:` before"),
        ("segment s x > 1", "write `=` before name `x`"),
        ("on launch { split { a 50: exit  b 50%: exit } }", "percent sign: `50%`"),
        ("campaign c { channels email sms }", "commas: `email, sms`"),
        ("every monday friday 09:00 { exit }", "commas: `monday, friday`"),
    ],
)
def test_a_missing_sign_or_word_is_named_in_the_hint(text: str, hint: str) -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    diagnostic = info.value.diagnostics[0]
    assert diagnostic.code == "E004"
    assert diagnostic.hint is not None and hint in diagnostic.hint, diagnostic.hint


def test_a_trailing_comma_is_not_told_to_add_commas() -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text("campaign c { channels email, on launch { exit } }")
    hint = info.value.diagnostics[0].hint
    assert hint is None or "comma" not in hint


def test_dates_in_conditions_keep_every_year() -> None:
    program = parse_text("segment s = born > 0001-01-01 and born < 9999-12-31T23:59")
    assert isinstance(program.declarations[0], ast.SegmentDecl)


def test_uppercase_names_get_a_hint() -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text("segment Engaged = x > 1")
    assert info.value.diagnostics[0].hint == "names are lower case: [a-z_][a-z0-9_]*"


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('template t SMS "hi"', (1, 12)),
        ("campaign c { on launch { send SMS t } }", (1, 31)),
        ("campaign c { cap SMS 3 per 1d  on launch { ... } }", (1, 18)),
        ("campaign c { cost SMS 0.05 USD  on launch { ... } }", (1, 19)),
        ("campaign c { quiet_hours SMS 21:00-08:00  on launch { ... } }", (1, 26)),
        ("segment s = received(SMS, 1d)", (1, 22)),
    ],
)
def test_a_channel_in_capitals_gets_a_hint(text: str, position: tuple[int, int]) -> None:
    """`SMS` as prose writes it: three capitals lex as a currency code, so the error
    said only "expected a name"; it names the spelling to use."""
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == position
    assert diagnostic.hint == "names are lower case: write `sms`, not `SMS`"


@pytest.mark.parametrize(
    ("condition", "column", "hint"),
    [
        ("lead_score >= 50 && opened(t)", 34, "write `and`, not `&&`"),
        ("lead_score >= 50 || opened(t)", 34, "write `or`, not `||`"),
        ("lead_score >= 50 & opened(t)", 34, "write `and`, not `&`"),
        ("!opened(t)", 17, "write `not`, not `!`"),
        ('city <> "Lisbon"', 23, "write `!=`, not `<>`"),
        ("lead_score => 50", 29, "write `>=`, not `=>`"),
        ("lead_score =< 50", 29, "write `<=`, not `=<`"),
    ],
)
def test_an_operator_from_sql_or_code_gets_a_hint(condition: str, column: int, hint: str) -> None:
    """`&&`, `||`, `!`, `<>`, `=>` are what other languages write; the error says which
    word or sign this one uses instead of only listing what it expected."""
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(f"campaign c {{\n on launch {{ if {condition} {{ exit }} }}\n}}")
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == (2, column)
    assert diagnostic.hint == hint


def test_not_equal_is_not_taken_for_an_operator_from_elsewhere() -> None:
    """`!=` is the language's own: a later mistake is not blamed on it."""
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text("segment s = city != ")
    assert info.value.diagnostics[0].hint is None


@pytest.mark.parametrize(
    ("text", "position", "hint"),
    [
        ("segment s = verified AND x > 1", (1, 22), "write `and`, not `AND`"),
        ("segment s = x > 1 OR verified", (1, 19), "write `or`, not `OR`"),
        ("segment s = NOT verified", (1, 13), "write `not`, not `NOT`"),
        ("when x { Send email t }", (1, 10), "write `send`, not `Send`"),
    ],
)
def test_a_keyword_in_capitals_gets_a_hint(text: str, position: tuple[int, int], hint: str) -> None:
    """SQL habit: `AND`, `OR`, `NOT` in capitals are named, not called names to lower."""
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text)
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == position
    assert diagnostic.hint == f"the language's words are lower case: {hint}"


def test_and_in_capitals_after_a_number_names_the_money_it_became() -> None:
    """`30 AND` lexes as money (a currency is three capitals), so the parser stops at the
    next word; the hint explains that instead of leaving `country` unexplained."""
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text('segment s = lead_score >= 30 AND country = "US"')
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == (1, 34)
    assert diagnostic.hint == (
        "`30 AND` reads as an amount of money in the currency AND; "
        "the language's words are lower case: write `and`"
    )


def test_invalid_utf8_is_an_error_at_the_byte() -> None:
    with pytest.raises(CadenceSyntaxError) as info:
        parse_bytes(b'segment s = x > 1\ntemplate t sms "caf\xe9"\n', "bad.cadence")
    diagnostic = info.value.diagnostics[0]
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == ("E001", 2, 20)


def test_missing_file_is_a_cadence_error(tmp_path: Path) -> None:
    with pytest.raises(CadenceError):
        parse_file(tmp_path / "nope.cadence")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_cadence_errors(text: str) -> None:
    try:
        parse_text(text)
    except CadenceError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_cadence_errors(data: bytes) -> None:
    try:
        parse_bytes(data)
    except CadenceError:
        pass


KEYWORDISH = st.sampled_from(
    ["when", "send", "email", "wait", "1h", "{", "}", "if", "else", "split", "20%", "a", ":",
     "count", ">=", "3", "where", "x", "=", '"s"', "in", "[", "]", ",", "campaign", "c",
     "on", "launch", "every", "monday", "09:00", "local", "at", "2026-12-01", "score", "(", ")",
     "segment", "template", "sms", "body", "file", "locale", "not", "and", "or", "within", "7d",
     "test", "winner", "by", "after", "exit", "-", "+5", "each", "decay", "per", "500", "USD"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(KEYWORDISH, max_size=30))
def test_token_soup_raises_only_cadence_errors(words: list[str]) -> None:
    try:
        parse_text(" ".join(words))
    except CadenceError:
        pass


@pytest.mark.parametrize(
    ("duration", "hint"),
    [
        ("wait 2 days", "write `2d`"),
        ("wait 3 hours", "write `3h`"),
        ("wait 1mo", "durations have no months or years: write days, such as 30d or 365d"),
        ("wait 1 year", "durations have no months or years: write days, such as 30d or 365d"),
        ("wait 1.5h", "durations are whole numbers: combine units, such as 1h30m for 1.5h"),
        (
            "wait 2 fortnights",
            "a duration is a whole number and a unit s, m, h, d or w, such as 30m or 1d12h",
        ),
    ],
)
def test_a_duration_written_in_words_gets_a_hint(duration: str, hint: str) -> None:
    text = f'template t email {{ subject "s" body "b" }}\nwhen x {{ {duration}  send email t }}'
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text, "d.cadence")
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.line, diagnostic.column) == (2, 15)
    assert diagnostic.hint == hint


def test_a_cap_period_in_words_gets_the_same_hint() -> None:
    text = "campaign c { cap email 3 per 1 week  on launch { ... } }"
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text, "d.cadence")
    assert info.value.diagnostics[0].hint == "write `1w`"


@pytest.mark.parametrize(
    ("setting", "hint"),
    [
        ("quiet_hours sms 9pm-8am", "times of day are 24-hour: write `21:00`"),
        ("quiet_hours sms 21:00-8am", "times of day are 24-hour: write `08:00`"),
        ("send_window 12am-6AM", "times of day are 24-hour: write `00:00`"),
        ("send_window 9:30am-17:00", "times of day are 24-hour: write `09:30`"),
        (
            "send_window 09:00-17:00 weekdays local",
            "`local` comes right after the times: `09:00-17:00 local weekdays`",
        ),
        (
            "send_window 20:00-02:00 monday, friday local",
            "`local` comes right after the times: `20:00-02:00 local monday, friday`",
        ),
        ("every monday at 09:00 local { ... }", "the time follows the days without `at`: "
         "`every monday 09:00`"),
        ("cap email 3 per week", "write `1w`"),
        ("cap sms 1 per day", "write `1d`"),
        ("cap email 3 per month", "durations have no months or years: write days, such as 30d "
         "or 365d"),
    ],
)  # fmt: skip
def test_a_setting_written_as_ops_people_often_do_gets_a_hint(setting: str, hint: str) -> None:
    """12-hour times, `local` after the days, `at` before an `every` time, units in words."""
    text = f"campaign c {{\n  {setting}\n  on launch {{ ... }}\n}}"
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text, "t.cadence")
    assert info.value.diagnostics[0].line == 2
    assert info.value.diagnostics[0].hint == hint


def test_a_date_and_time_written_apart_gets_a_hint() -> None:
    text = "campaign c {\n  at 2026-12-01 09:00 local { ... }\n}"
    with pytest.raises(CadenceSyntaxError) as info:
        parse_text(text, "t.cadence")
    (diagnostic,) = info.value.diagnostics
    assert (diagnostic.line, diagnostic.column) == (2, 17)
    assert diagnostic.hint == "write the date and time as one: `2026-12-01T09:00`"
