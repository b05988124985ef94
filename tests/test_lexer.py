"""The Pygments lexer: every example lexes cleanly, it is registered, key tokens are right."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    String,
    Whitespace,
    _TokenType,
)

from cadence.dsl.lexer import CadenceLexer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cadence"))
DOCS = ROOT / "docs" / "language.md"


def tokens(code: str) -> list[tuple[_TokenType, str]]:
    """The non-whitespace tokens of ``code``."""
    return [
        (kind, value)
        for kind, value in CadenceLexer().get_tokens(code)
        if kind not in Whitespace and value.strip()
    ]


def kind_of(code: str, value: str) -> _TokenType:
    """The token type of the first token in ``code`` whose text is ``value``."""
    for kind, text in tokens(code):
        if text == value:
            return kind
    raise AssertionError(f"no token {value!r} in {code!r}: {tokens(code)}")


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_lexes_without_errors(path: Path) -> None:
    code = path.read_text(encoding="utf-8")
    errors = [(kind, value) for kind, value in CadenceLexer().get_tokens(code) if kind in Error]
    assert errors == []


def test_lexing_round_trips_the_text() -> None:
    code = EXAMPLES[0].read_text(encoding="utf-8")
    assert "".join(value for _, value in CadenceLexer().get_tokens(code)) == code


def test_docs_blocks_lex_without_errors() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = text.split("```cadence\n")[1:]
    assert blocks
    for block in blocks:
        code = block.split("```", 1)[0]
        errors = [v for k, v in CadenceLexer().get_tokens(code) if k in Error]
        assert errors == [], code


def test_language_md_sketches_lex_without_errors() -> None:
    from tests.language_md import language_blocks

    blocks = language_blocks()
    assert blocks
    for block in blocks:
        errors = [v for k, v in CadenceLexer().get_tokens(block) if k in Error]
        assert errors == [], block


def test_registered_through_the_entry_point() -> None:
    lexer = get_lexer_by_name("cadence")
    assert isinstance(lexer, CadenceLexer)
    assert lexer.name == "Cadence"
    assert isinstance(get_lexer_for_filename("welcome.cadence"), CadenceLexer)


def test_rich_highlights_cadence() -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    code = "when property_viewed count>=3 wait 1h send email property_details  # hot lead\n"
    syntax = Syntax(code, "cadence", theme="monokai")
    assert isinstance(syntax.lexer, CadenceLexer)
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=100)
    console.print(syntax)
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    assert "property_viewed" in rendered
    assert "\x1b[" in rendered  # coloured, not plain text


@pytest.mark.parametrize(
    ("code", "value", "expected"),
    [
        ("# a comment\nwait 1d", "# a comment", Comment.Single),
        ("segment engaged = lead_score >= 30", "segment", Keyword.Declaration),
        ("segment engaged = lead_score >= 30", "engaged", Name.Class),
        ("segment engaged = lead_score >= 30", ">=", Operator),
        ("segment engaged = lead_score >= 30", "30", Number.Integer),
        ('import "common.cadence"', "import", Keyword.Namespace),
        ('template follow_up sms "Hi"', "follow_up", Name.Class),
        ('template follow_up sms "Hi"', "sms", Name.Builtin),
        ("send whatsapp x", "whatsapp", Name.Builtin),
        ("when property_viewed count>=3 within 7d", "when", Keyword),
        ("when property_viewed count>=3 within 7d", "property_viewed", Name.Label),
        ("when property_viewed count>=3 within 7d", "count", Keyword),
        ("when property_viewed count>=3 within 7d", "within", Keyword),
        ("if count(property_viewed, 7d) > 2 { exit }", "count", Name.Builtin),
        ("wait 1d12h", "1d12h", Number.Other),
        ("wait 30s", "30s", Number.Other),
        ("wait until 09:00 local", "09:00", Literal.Date),
        ("wait until 09:00 local", "local", Keyword.Pseudo),
        ("at 2026-12-01T09:00 local { }", "2026-12-01T09:00", Literal.Date),
        ("starts 2026-12-01", "2026-12-01", Literal.Date),
        ("starts 2026-12-01", "starts", Keyword.Reserved),
        ("budget 500 USD", "500", Number.Integer),
        ("budget 500 USD", "USD", Name.Constant),
        ("cost sms 0.05 USD", "0.05", Number.Float),
        ("split 20% test winner by opens after 4h { }", "20%", Number),
        ("split 20% test winner by opens after 4h { }", "winner", Keyword),
        ("split 20% test winner by opens after 4h { }", "opens", Name.Builtin),
        ("priority 2.5", "2.5", Number.Float),
        ("type drip", "drip", Keyword.Type),
        ("send_window 09:00-18:00 local weekdays", "weekdays", Keyword.Pseudo),
        ("every monday 09:00 local { }", "monday", Keyword.Pseudo),
        ('audience a and not b or c in ["PH"]', "and", Operator.Word),
        ('audience a and not b or c in ["PH"]', "not", Operator.Word),
        ('audience a and not b or c in ["PH"]', "in", Operator.Word),
        ("set vip = true", "true", Keyword.Constant),
        ("if opened(any) { }", "opened", Name.Builtin),
        ("if opened(any) { }", "any", Name.Builtin.Pseudo),
        ("goal converted", "converted", Name.Builtin),
        ("where event.price <= 500000", "price", Name.Attribute),
        ("where contact.type = 1", "type", Name.Attribute),
        ("where contact.city = 1", "contact", Name.Builtin.Pseudo),
        ('set lead_stage = "nurture"', "lead_stage", Name),
        ("enroll reply_followup", "reply_followup", Name),
        ("exclude in_campaign(onboarding)", "in_campaign", Name.Builtin),
        ("exclude my_check(onboarding)", "my_check", Name.Function),
        ("on launch { ... }", "...", Keyword.Pseudo),
    ],
)
def test_token_types(code: str, value: str, expected: _TokenType) -> None:
    assert kind_of(code, value) is expected


def test_strings_with_escapes_and_jinja() -> None:
    code = (
        'body "<a href=\\"{{ company.url }}\\">'
        '{% if x %}Hi{% endif %} {{ contact.first_name }}</a>"'
    )
    toks = tokens(code)
    assert (String.Escape, '\\"') in toks
    assert (String.Interpol, "{{ company.url }}") in toks
    assert (String.Interpol, "{% if x %}") in toks
    assert (String.Interpol, "{{ contact.first_name }}") in toks
    assert all(kind is not Error for kind, _ in toks)


def test_jinja_with_single_quotes_inside_a_string() -> None:
    code = "subject \"Welcome, {{ contact.first_name | default('there') }}!\""
    assert (String.Interpol, "{{ contact.first_name | default('there') }}") in tokens(code)


def test_keywords_are_whole_words_only() -> None:
    # `sender`, `timezone_name` and `counted` are identifiers, not `send`/`timezone`/`count`.
    toks = tokens("set sender = timezone_name and counted")
    assert (Name, "sender") in toks
    assert (Name, "timezone_name") in toks
    assert (Name, "counted") in toks


def test_unterminated_string_is_an_error_but_lexing_recovers() -> None:
    toks = list(CadenceLexer().get_tokens('subject "oops\nwait 1d\n'))
    assert any(kind is Error for kind, _ in toks)
    assert (Keyword, "wait") in toks
    assert (Number.Other, "1d") in toks
