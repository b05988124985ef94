"""`cadence fmt`: one canonical layout that never changes meaning and never loses a comment.

The round-trip property is checked three ways: on the example campaigns, on every code block
of LANGUAGE.md, and on random programs from tests/strategies.py (with and without random
comments and blank lines sprinkled into them).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from cadence.cli import main
from cadence.dsl import ast
from cadence.dsl.fmt import (
    format_duration,
    format_expression,
    format_program,
    format_string,
    format_text,
)
from cadence.dsl.parser import parse_text
from cadence.errors import CadenceError, CadenceSyntaxError
from tests import strategies
from tests.language_md import as_program, language_blocks

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.cadence"))

HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def comment_texts(program: ast.Program) -> list[str]:
    """Comment texts in source order; fmt may only drop trailing whitespace."""
    return [c.text.rstrip() for c in program.comments]


def assert_round_trip(text: str, name: str = "<string>") -> str:
    """Same tree, same comments in the same order, and a second fmt changes nothing."""
    before = parse_text(text, name)
    formatted = format_text(text, name)
    after = parse_text(formatted, name)
    assert after == before
    assert comment_texts(after) == comment_texts(before)
    assert format_text(formatted, name) == formatted
    return formatted


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_round_trip(path: Path) -> None:
    formatted = assert_round_trip(path.read_text("utf-8"), str(path))
    assert formatted.endswith("}\n")
    assert "\t" not in formatted


def test_there_are_examples_to_format() -> None:
    assert len(EXAMPLES) >= 7


# LANGUAGE.md shows fragments as well as programs. The Steps section is a bare list of steps,
# which the language only allows inside a trigger, so `as_program` wraps such a block in
# `on launch { ... }` (changing no character of it); every other block is a program already.
@pytest.mark.parametrize("index", range(len(language_blocks())))
def test_language_md_blocks_round_trip(index: int) -> None:
    assert_round_trip(as_program(language_blocks()[index]), f"LANGUAGE.md#{index}")


@HYPOTHESIS
@given(strategies.programs())
def test_generated_programs_survive_fmt(program: ast.Program) -> None:
    formatted = format_program(program)
    reparsed = parse_text(formatted)
    assert reparsed == program
    assert format_program(reparsed) == formatted


SMALL_PROGRAMS = strategies.programs(max_declarations=4)
COMMENTS = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12).map(
    lambda t: "#" + t
)


@st.composite
def commented(draw: st.DrawFn) -> str:
    """A formatted random program with comments and blank lines added between and after lines."""
    lines = format_program(draw(SMALL_PROGRAMS)).split("\n")[:-1]
    comment = COMMENTS
    out: list[str] = []
    for line in [*lines, ""]:
        for _ in range(draw(st.integers(0, 2))):
            choice = draw(st.sampled_from(["comment", "blank"]))
            indent = " " * draw(st.integers(0, 6))
            out.append(indent + draw(comment) if choice == "comment" else "")
        if line and draw(st.booleans()):
            line += " " * draw(st.integers(0, 3)) + draw(comment)
        out.append(line)
    return "\n".join(out)


@HYPOTHESIS
@given(commented())
def test_comments_survive_fmt_in_order(text: str) -> None:
    assert_round_trip(text)


# Whitespace between tokens of a formatted program: every run of it may become any layout.
TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|#[^\n]*|[^\s"#]+|\s+')


@st.composite
def reflowed(draw: st.DrawFn) -> str:
    """A random program laid out badly: line breaks, blank lines and comments between tokens."""
    text = format_program(draw(SMALL_PROGRAMS))
    separators = st.one_of(
        st.just(" "),
        st.just("\n"),
        st.just("\n\n"),
        st.builds(lambda c: f"  {c}\n", COMMENTS),
        st.builds(lambda c: f"\n{c}\n\n", COMMENTS),
    )
    out = []
    for token in TOKENS.findall(text):
        out.append(draw(separators) if token.isspace() else token)
    return "".join(out)


@HYPOTHESIS
@given(reflowed())
def test_any_layout_with_comments_anywhere_formats_stably(text: str) -> None:
    assert_round_trip(text)


@HYPOTHESIS
@given(st.text(max_size=200))
def test_fmt_raises_only_cadence_errors(text: str) -> None:
    try:
        format_text(text)
    except CadenceError:
        pass


def test_strategies_cover_every_node_kind() -> None:
    """The generator reaches every class of the AST, so the properties above test them all.

    `programs()` is built from these strategies (declarations hold campaigns and trigger
    blocks, which hold settings, triggers, steps and expressions), so each class is looked
    for in the smallest strategy that makes it. The draws are seeded: the same every run.
    """
    where: dict[st.SearchStrategy[object], tuple[type, ...]] = {
        strategies.expressions(): (
            *ast.Literal_.__args__,
            *(ast.Path, ast.Call, ast.Unary, ast.Binary, ast.Compare, ast.Within),
        ),
        strategies.steps(): (*ast.Step.__args__, ast.IfBranch, ast.SplitBranch),
        strategies.triggers(): (*ast.Trigger.__args__, ast.CountClause),
        strategies.settings(): (*ast.Setting.__args__, ast.CostItem),
        strategies.templates(): (ast.TemplateDecl, ast.TemplateContent, ast.LocaleBlock),
        strategies.scores(): (ast.ScoreDecl, *ast.ScoreRule.__args__),
        strategies.declarations(): (*ast.Declaration.__args__, ast.SchemaField),
    }
    every_class = {
        cls
        for cls in vars(ast).values()
        if isinstance(cls, type) and cls.__module__ == ast.__name__
    }
    looked_for = {cls for classes in where.values() for cls in classes}
    assert every_class - looked_for == {ast.Span, ast.Comment, ast.Program}
    for strategy, classes in where.items():
        assert set(classes) - _kinds_drawn(strategy, set(classes)) == set()


class _AllDrawn(Exception):
    """Stops the draws once every class looked for has been seen."""


def _kinds_drawn(strategy: st.SearchStrategy[object], wanted: set[type]) -> set[type]:
    """The node classes in up to 1,000 draws from `strategy`, the same draws every run (fixed
    seed), stopping at the first draw that completes `wanted`: the full 7,000 draws took a
    minute of CI, most of it after every class had been seen."""
    seen: set[type] = set()

    @seed(20261126)
    @settings(max_examples=1000, database=None, deadline=None, phases=(Phase.generate,))
    @given(strategy)
    def collect(node: object) -> None:
        seen.update(_kinds(node))
        if wanted <= seen:
            raise _AllDrawn

    with contextlib.suppress(_AllDrawn):
        collect()
    return seen


def _kinds(node: object) -> set[type]:
    kinds: set[type] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(item)
        elif hasattr(item, "__dataclass_fields__"):
            kinds.add(type(item))
            stack.extend(getattr(item, name) for name in item.__dataclass_fields__)
    return kinds


def test_reserved_words_are_found_by_parsing() -> None:
    """Some keywords cannot be names (`wait` starts a step); most can (`contact.type`...)."""
    reserved = strategies.reserved_words()
    assert {"when", "wait", "send", "true", "not", "count"} <= reserved
    assert {"contact", "test", "winner", "file"}.isdisjoint(reserved)
    for word in ("wait", "true"):
        with pytest.raises(CadenceError):
            parse_text(format_program(strategies.probe_program(word)))


# ---------------------------------------------------------------------------- layout


def test_canonical_layout_of_a_messy_campaign() -> None:
    messy = (
        'campaign   c "C"{type drip  channels email,sms\n'
        "cap email 3 per 168h starts 2027-02-01  ends 2027-03-15\n"
        'on launch { send email a wait 36h if x == 1 { exit } else if y { exit "why" }'
        " else { split { a 50%: send email a b 50%: { wait 1d send email b } } } } }\n"
        "segment s=a or b and not c\n"
    )
    assert format_text(messy) == (
        'campaign c "C" {\n'
        "  type drip\n"
        "  channels email, sms\n"
        "  cap email 3 per 7d\n"
        "  starts 2027-02-01\n"
        "  ends 2027-03-15\n"
        "\n"
        "  on launch {\n"
        "    send email a\n"
        "    wait 1d12h\n"
        "    if x = 1 {\n"
        "      exit\n"
        "    } else if y {\n"
        '      exit "why"\n'
        "    } else {\n"
        "      split {\n"
        "        a 50%: send email a\n"
        "        b 50%: {\n"
        "          wait 1d\n"
        "          send email b\n"
        "        }\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
        "\n"
        "segment s = a or b and not c\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1s"), (90, "1m30s"), (3600, "1h"), (129600, "1d12h"), (604800, "7d"), (2592000, "30d")],
)
def test_durations_use_the_largest_units_from_days_down(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert format_text(f"on launch {{ wait {text} }}") == f"on launch {{\n  wait {text}\n}}\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("(a or b) and c", "(a or b) and c"),
        ("a or (b and c)", "a or b and c"),
        ("a or (b or c)", "a or (b or c)"),
        ("(a or b) or c", "a or b or c"),
        ("not (a and b)", "not (a and b)"),
        ("not a = b", "not a = b"),
        ("(not a) = b", "(not a) = b"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("a * (b + c)", "a * (b + c)"),
        ("-(a + b)", "-(a + b)"),
        ("- - a", "--a"),
        ("(a within 7d) = true", "(a within 7d) = true"),
        ("a == b", "a = b"),
        ('x not in [ "PH","SG" ]', 'x not in ["PH", "SG"]'),
        ("count( viewed , 168h ) >= 2.50", "count(viewed, 7d) >= 2.50"),
        ("budget > 0.050 USD", "budget > 0.050 USD"),
        ("a = (b = c)", "a = (b = c)"),
    ],
)
def test_expressions_get_only_the_parentheses_they_need(source: str, expected: str) -> None:
    program = parse_text(f"segment s = {source}")
    segment = program.declarations[0]
    assert isinstance(segment, ast.SegmentDecl)
    assert format_expression(segment.expr) == expected
    assert_round_trip(f"segment s = {source}")


def test_strings_are_re_escaped() -> None:
    assert format_string('say "hi"\n\tback\\slash') == r'"say \"hi\"\n\tback\\slash"'
    assert_round_trip('template t sms "a \\"b\\" c\\\\d\\q"')


def test_bare_one_liners_stay_on_one_line_while_they_fit() -> None:
    assert format_text("when  x   wait 1h\n send email y") == "when x wait 1h send email y\n"
    long = "when viewed where " + " and ".join(f"attribute_{i}" for i in range(10))
    assert format_text(long + " send email y") == long + " {\n  send email y\n}\n"


def test_braced_triggers_stay_braced_and_blocks_never_join_one_liners() -> None:
    assert format_text("when x { send email y }") == "when x {\n  send email y\n}\n"
    assert format_text("when x if y { exit }") == "when x {\n  if y {\n    exit\n  }\n}\n"


def test_on_event_keeps_its_keyword() -> None:
    assert format_text("on signed_up { ... }") == "on signed_up {\n  ...\n}\n"
    assert format_text("when launch send sms x") == "when launch send sms x\n"
    assert format_text("when x count==3 send sms x") == "when x count==3 send sms x\n"


def test_trigger_options_print_in_one_order() -> None:
    source = "when viewed where event.price > 5 count>=3 send email x"
    assert format_text(source) == "when viewed count>=3 where event.price > 5 send email x\n"
    assert_round_trip(source)


def test_comments_stay_where_they_were() -> None:
    source = (
        "# file header\n"
        "\n"
        "# about the segment\n"
        "segment s = a  # trailing\n"
        "campaign c {  # after the brace\n"
        "  type drip\n"
        "  on launch {\n"
        "    send email a   # one\n"
        "    wait 1d\n"
        "    if x {\n"
        "      exit\n"
        "      # last in the if\n"
        "    } else {  # on the else\n"
        "      exit\n"
        "    }\n"
        "    # last in the block\n"
        "  }\n"
        "}\n"
        "# the end\n"
    )
    assert format_text(source) == (
        "# file header\n"
        "\n"
        "# about the segment\n"
        "segment s = a  # trailing\n"
        "\n"
        "campaign c {  # after the brace\n"
        "  type drip\n"
        "\n"
        "  on launch {\n"
        "    send email a  # one\n"
        "    wait 1d\n"
        "    if x {\n"
        "      exit\n"
        "      # last in the if\n"
        "    } else {  # on the else\n"
        "      exit\n"
        "    }\n"
        "    # last in the block\n"
        "  }\n"
        "}\n"
        "# the end\n"
    )
    assert_round_trip(source)


def test_trailing_comments_of_neighbouring_lines_line_up() -> None:
    source = "on launch {\n  send email a # a\n  wait 1d\n  send email longer # b\n}\n"
    assert format_text(source) == (
        "on launch {\n  send email a       # a\n  wait 1d\n  send email longer  # b\n}\n"
    )


def test_a_comment_after_a_one_line_block_describes_the_block() -> None:
    source = "on launch { split { a 50%: exit b 50%: exit } }  # plain random split\n"
    assert format_text(source) == (
        "on launch {  # plain random split\n  split {\n    a 50%: exit\n    b 50%: exit\n  }\n}\n"
    )
    nested = "on launch {\n  if x { exit }  # about the if\n}\n"
    assert format_text(nested) == "on launch {\n  if x {  # about the if\n    exit\n  }\n}\n"
    written_over_lines = "on launch {\n  exit\n}  # after the block\n"
    assert format_text(written_over_lines) == written_over_lines


def test_a_comment_inside_a_one_liner_opens_it_up() -> None:
    source = "when x wait 1h  # first\n  send email y\n"
    assert format_text(source) == "when x {\n  wait 1h  # first\n  send email y\n}\n"
    assert_round_trip(source)


def test_single_blank_lines_between_steps_are_kept() -> None:
    source = "on launch {\n\n  send email a\n\n\n\n  # next\n  wait 1d\n  exit\n\n}\n"
    assert format_text(source) == (
        "on launch {\n  send email a\n\n  # next\n  wait 1d\n  exit\n}\n"
    )


def test_empty_and_comment_only_files() -> None:
    assert format_text("") == ""
    assert format_text("  \n\n") == ""
    assert format_text("# only\n\n\n# comments") == "# only\n\n# comments\n"


def test_syntax_errors_are_raised_not_formatted() -> None:
    with pytest.raises(CadenceSyntaxError):
        format_text("segment = x")


# ---------------------------------------------------------------------------- the command


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    path = tmp_path / "messy.cadence"
    path.write_text("when x   send email y # hi\n", encoding="utf-8")
    return path


def test_fmt_check_lists_files_that_would_change_and_writes_nothing(
    messy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = messy.read_bytes()
    assert main(["fmt", "--check", str(messy)]) == 1
    assert messy.read_bytes() == before
    assert str(messy) in capsys.readouterr().out


def test_fmt_rewrites_then_check_passes(messy: Path) -> None:
    assert main(["fmt", str(messy)]) == 0
    assert messy.read_text("utf-8") == "when x send email y  # hi\n"
    assert main(["fmt", "--check", str(messy)]) == 0


def test_fmt_leaves_formatted_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "ok.cadence"
    path.write_text("segment s = a\n", encoding="utf-8")
    os.utime(path, (1_000_000, 1_000_000))
    assert main(["fmt", str(tmp_path)]) == 0
    assert path.stat().st_mtime == 1_000_000


def test_fmt_keeps_file_permissions(messy: Path) -> None:
    messy.chmod(0o640)
    assert main(["fmt", str(messy)]) == 0
    assert messy.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in messy.parent.iterdir()] == ["messy.cadence"]


def test_fmt_diff_shows_the_change(messy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = messy.read_bytes()
    assert main(["fmt", "--diff", str(messy)]) == 1
    out = capsys.readouterr().out
    assert "-when x   send email y # hi" in out
    assert "+when x send email y  # hi" in out
    assert messy.read_bytes() == before


def test_fmt_reports_syntax_errors_and_leaves_the_file(
    tmp_path: Path, messy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.cadence"
    bad.write_text("segment = x\n", encoding="utf-8")
    assert main(["fmt", str(bad), str(messy)]) == 1
    captured = capsys.readouterr()
    assert "bad.cadence:1:9" in captured.err
    assert "^" in captured.err
    assert bad.read_text("utf-8") == "segment = x\n"
    assert messy.read_text("utf-8") == "when x send email y  # hi\n"  # the good one still done


def test_fmt_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main(["fmt", str(tmp_path / "missing.cadence")]) == 2
    assert main(["fmt", str(tmp_path)]) == 2  # a folder without .cadence files
    with pytest.raises(SystemExit) as exc:
        main(["fmt"])
    assert exc.value.code == 2
