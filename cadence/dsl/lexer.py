"""Pygments lexer for the Cadence campaign language.

Registered as the ``pygments.lexers`` entry point ``cadence`` (see pyproject.toml), so
``pygments.lexers.get_lexer_by_name("cadence")``, Sphinx/MkDocs code fences and
``rich.syntax.Syntax(code, "cadence")`` all highlight ``.cadence`` source.

The lexer is a highlighter, not a validator: it follows the lexical rules of
docs/language.md closely enough that every valid program lexes without ``Error``
tokens, and it stays forgiving about programs the parser would reject.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

__all__ = ["CadenceLexer"]

# An identifier as the language defines it; keywords only match as whole words.
_IDENT = r"[a-z_][a-z0-9_]*"
_END = r"(?![A-Za-z0-9_])"

#: Top-level declarations; the name after them is highlighted as a definition.
DECLARATIONS = ("segment", "template", "score", "campaign", "schema")

#: Trigger words.
TRIGGERS = ("when", "on", "at", "every")

#: Step words and the words that only appear inside steps, triggers and templates.
STEP_KEYWORDS = (
    "send",
    "wait",
    "until",
    "for",
    "up",
    "to",
    "if",
    "else",
    "split",
    "test",
    "winner",
    "by",
    "after",
    "set",
    "tag",
    "add",
    "remove",
    "assign",
    "agent",
    "notify",
    "enroll",
    "exit",
    "decay",
    "per",
    "each",
    "within",
    "where",
    "count",
    "contacts",
    "locale",
    "subject",
    "preheader",
    "body",
    "file",
)

#: Campaign settings.
SETTINGS = (
    "type",
    "kind",
    "audience",
    "exclude",
    "from",
    "reply_to",
    "channels",
    "priority",
    "cap",
    "send_window",
    "timezone",
    "quiet_hours",
    "budget",
    "cost",
    "goal",
    "approval",
    "starts",
    "ends",
    "reenter",
    "max_sends",
)

#: Modifiers and fixed values that appear after settings and triggers.
MODIFIERS = (
    "local",
    "fallback",
    "required",
    "always",
    "weekdays",
    "weekends",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "daily",
    "weekly",
    "monthly",
    "round_robin",
)

#: Campaign types, highlighted where they follow ``type``.
CAMPAIGN_TYPES = ("broadcast", "drip", "triggered", "recurring", "ab_test")

#: Delivery channels.
CHANNELS = ("email", "sms", "whatsapp", "inbox", "webhook")

#: Engagement and event functions usable in conditions.
FUNCTIONS = (
    "opened",
    "clicked",
    "replied",
    "bounced",
    "delivered",
    "converted",
    "unsubscribed",
    "last",
    "first",
    "in_campaign",
    "received",
)

#: Split-winner metrics.
METRICS = ("opens", "clicks", "replies", "conversions")


def _words(items: tuple[str, ...]) -> Any:
    """Match any of ``items`` as a whole word (not as part of an identifier)."""
    return words(items, prefix=r"(?<![A-Za-z0-9_.])", suffix=_END)


class CadenceLexer(RegexLexer):  # type: ignore[misc]  # pygments ships no type stubs
    """Highlight Cadence campaign files (``*.cadence``).

    Token choices: declarations and ``import`` are ``Keyword.Declaration`` /
    ``Keyword.Namespace``; triggers, steps and settings are ``Keyword`` (settings as
    ``Keyword.Reserved``); ``local``, weekdays and similar modifiers are
    ``Keyword.Pseudo``; ``and or not in`` are ``Operator.Word``; channels, engagement
    functions and ``any`` are ``Name.Builtin``; durations are ``Number.Other``; times,
    dates and datetimes are ``Literal.Date``; money is a number followed by a
    ``Name.Constant`` currency; ``{{ ... }}`` and ``{% ... %}`` inside strings are
    ``String.Interpol``.
    """

    name = "Cadence"
    aliases: ClassVar[list[str]] = ["cadence"]
    filenames: ClassVar[list[str]] = ["*.cadence"]
    mimetypes: ClassVar[list[str]] = ["text/x-cadence"]

    tokens: ClassVar[dict[str, list[Any]]] = {
        "root": [
            (r"[ \t\r\n\f]+", Whitespace),
            (r"#.*?$", Comment.Single),
            (r'"', String.Double, "string"),
            include("literals"),
            (r"(import)" + _END, Keyword.Namespace),
            # `segment engaged`, `score engagement`, `campaign welcome "..."`,
            # `template welcome email`: the declared name is a definition.
            (
                r"(?<![A-Za-z0-9_.])(segment|template|score|campaign)([ \t]+)(" + _IDENT + ")",
                bygroups(Keyword.Declaration, Whitespace, Name.Class),
            ),
            (_words(DECLARATIONS), Keyword.Declaration),
            # `when property_viewed`, `on contact_created`: the event is a label.
            (
                r"(?<![A-Za-z0-9_.])(when|on)([ \t]+)(" + _IDENT + ")",
                bygroups(Keyword, Whitespace, Name.Label),
            ),
            (_words(TRIGGERS), Keyword),
            (
                r"(?<![A-Za-z0-9_.])(type)([ \t]+)(" + "|".join(CAMPAIGN_TYPES) + ")" + _END,
                bygroups(Keyword.Reserved, Whitespace, Keyword.Type),
            ),
            (_words(SETTINGS), Keyword.Reserved),
            (_words(("and", "or", "not", "in", "contains", "startswith")), Operator.Word),
            (_words(("true", "false")), Keyword.Constant),
            # `count(event, 7d)` is a function; bare `count >= 3` is the trigger keyword.
            (r"(?<![A-Za-z0-9_.])count(?=\s*\()", Name.Builtin),
            (_words(STEP_KEYWORDS), Keyword),
            (_words(MODIFIERS), Keyword.Pseudo),
            (_words(CHANNELS), Name.Builtin),
            (_words(FUNCTIONS), Name.Builtin),
            (_words(METRICS), Name.Builtin),
            (_words(("any",)), Name.Builtin.Pseudo),
            (_words(("contact", "event", "company")), Name.Builtin.Pseudo),
            # Dotted paths: `contact.city`, `event.price`.
            (r"(\.)(" + _IDENT + ")", bygroups(Punctuation, Name.Attribute)),
            (_IDENT + r"(?=\s*\()", Name.Function),
            (_IDENT + _END, Name),
            # Outside the language's identifiers, but a highlighter should not shout.
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            # `...` is a placeholder for steps not written yet.
            (r"\.\.\.", Keyword.Pseudo),
            (r">=|<=|!=|==|=|>|<|\+|-|\*|/", Operator),
            (r"[{}()\[\],:.]", Punctuation),
            (r".", Error),
        ],
        "literals": [
            # Most specific first: datetime, date, time of day, percentage, money,
            # duration, then plain numbers.
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?", Literal.Date),
            (r"\d{4}-\d{2}-\d{2}", Literal.Date),
            (r"\d{1,2}:\d{2}(?![0-9])", Literal.Date),
            (r"\d+(?:\.\d+)?%", Number),
            (
                r"(\d+\.\d+)([ \t]+)([A-Z]{3})(?![A-Za-z])",
                bygroups(Number.Float, Whitespace, Name.Constant),
            ),
            (
                r"(\d+)([ \t]+)([A-Z]{3})(?![A-Za-z])",
                bygroups(Number.Integer, Whitespace, Name.Constant),
            ),
            (r"(?:\d+[wdhms])+(?![A-Za-z0-9_])", Number.Other),
            (r"\d+\.\d+", Number.Float),
            (r"\d+", Number.Integer),
        ],
        "string": [
            (r'\\[\\"nrt{}]', String.Escape),
            (r"\\.", String.Escape),
            # Jinja2 spans inside a template body: `{{ expr }}`, `{% tag %}`, `{# #}`.
            (r'\{\{(?:[^"\\}\n]|\\.|\}(?!\}))*\}\}', String.Interpol),
            (r'\{%(?:[^"\\%\n]|\\.|%(?!\}))*%\}', String.Interpol),
            (r'\{#(?:[^"\\#\n]|\\.|#(?!\}))*#\}', Comment.Special),
            (r'[^"\\{\n]+', String.Double),
            (r"\{", String.Double),
            (r'"', String.Double, "#pop"),
            # Strings end on the line they start on.
            (r"\n", Error, "#pop"),
        ],
    }
