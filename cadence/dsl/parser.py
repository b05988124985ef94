"""Turn Cadence source text into a typed `Program`, with diagnostics a person can act on.

The grammar lives in grammar.lark; this module builds the LALR parser once, transforms Lark's
tree into the dataclasses of `cadence.dsl.ast`, and turns every Lark failure into a
`CadenceSyntaxError`. After a syntax error it resynchronises at the next top-level declaration
so that one run reports every broken declaration, not only the first.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path as FsPath
from typing import Any, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from cadence.dsl import ast
from cadence.errors import CadenceSyntaxError, Diagnostic, Severity, did_you_mean
from cadence.text import nfc

TOP_LEVEL_KEYWORDS = (
    "import",
    "schema",
    "segment",
    "template",
    "score",
    "campaign",
    "when",
    "on",
    "at",
    "every",
)

_DURATION_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"([0-9]+)([wdhms])")

# Named terminals described the way a person would say them in "expected ..." messages.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": 'a string in double quotes ("...")',
    "NUMBER": "a number",
    "SIGNED_NUMBER": "a signed number such as +5 or -100",
    "DURATION": "a duration such as 30m, 2d or 1d12h",
    "TIME": "a time of day such as 09:00",
    "DATE": "a date such as 2026-12-01",
    "DATETIME": "a date and time such as 2026-12-01T09:00",
    "PERCENT": "a percentage such as 20%",
    "CURRENCY": "a currency code such as USD",
    "COMPARE": "a comparison (>=, <=, >, <, =, ==, !=)",
    "TAG_ACTION": "`add` or `remove`",
    "LOCAL": "`local`",
    "FALLBACK": "`fallback`",
    "EACH": "`each`",
    "REENTER_ALWAYS": "`always`",
    "$END": "the end of the file",
}


class SourceFile:
    """Source text with its name, able to quote any of its lines for a diagnostic."""

    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name
        self.lines = text.split("\n")

    def line(self, number: int) -> str | None:
        """The text of a 1-based line, or None past the end."""
        if 1 <= number <= len(self.lines):
            return self.lines[number - 1].rstrip("\r")
        return None

    def diagnostic(
        self,
        span: ast.Span,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        severity: Severity = "error",
    ) -> Diagnostic:
        """A diagnostic at `span`, quoting the line it starts on."""
        return Diagnostic(
            file=self.name,
            line=span.line,
            column=span.column,
            end_line=span.end_line,
            end_column=span.end_column,
            severity=severity,
            code=code,
            message=message,
            hint=hint,
            source_line=self.line(span.line),
        )


@cache
def _lark() -> Lark:
    grammar = resources.files("cadence.dsl").joinpath("grammar.lark").read_text("utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )


def parse_text(text: str, file: str = "<string>") -> ast.Program:
    """Parse one file's text; raise `CadenceSyntaxError` listing every syntax error found."""
    source = SourceFile(text, file)
    diagnostics: list[Diagnostic] = []
    declarations: list[ast.Declaration] = []
    comments: list[ast.Comment] = []
    for chunk in _chunks_after_errors(source, diagnostics):
        declarations.extend(chunk.declarations)
        comments.extend(chunk.comments)
    if diagnostics:
        raise CadenceSyntaxError(diagnostics)
    return ast.Program(tuple(declarations), tuple(comments), file)


def parse_bytes(data: bytes, file: str = "<bytes>") -> ast.Program:
    """Decode UTF-8 (naming the first bad byte if it is not) and parse."""
    return parse_text(decode_source(data, file), file)


def parse_file(path: str | FsPath) -> ast.Program:
    """Read and parse a `.cadence` file."""
    fs_path = FsPath(path)
    try:
        data = fs_path.read_bytes()
    except OSError as exc:
        raise CadenceSyntaxError(
            [
                Diagnostic(
                    str(path), 1, 1, 1, 1, "error", "E001", f"cannot read file: {exc.strerror}"
                )
            ]
        ) from None
    return parse_bytes(data, str(path))


def decode_source(data: bytes, file: str) -> str:
    """Source files are UTF-8; anything else is an E001 error at the offending byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        raise CadenceSyntaxError(
            [
                Diagnostic(
                    file,
                    line,
                    column,
                    line,
                    column + 1,
                    "error",
                    "E001",
                    f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                    hint="save the file as UTF-8",
                )
            ]
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return with_line_feeds(text)


_LONE_CR = re.compile(r"\r(?!\n)")


def with_line_feeds(text: str) -> str:
    """Source whose lines end with CR alone (old Mac editors) as LF-ended lines: the
    grammar and every line number count LF."""
    return _LONE_CR.sub("\n", text)


# ---------------------------------------------------------------------------- error recovery


def _chunks_after_errors(
    source: SourceFile, diagnostics: list[Diagnostic]
) -> Iterator[ast.Program]:
    """Parse, and after each error parse again from the next top-level declaration.

    Text before the resume point is blanked (newlines kept) so positions stay true.
    """
    text = source.text
    offset = 0
    while True:
        masked = _blank(text[:offset]) + text[offset:]
        try:
            yield _parse_once(masked, source)
            return
        except UnexpectedInput as exc:
            diagnostics.append(_syntax_diagnostic(exc, source))
            error_at = _error_offset(exc, masked)
            resume = _resume_point(text, max(error_at, offset) + 1)
            if resume is None:
                return
            offset = resume
        except _ValueError as exc:
            diagnostics.append(source.diagnostic(exc.span, exc.code, exc.message, hint=exc.hint))
            resume = _resume_point(text, _offset_of(text, exc.span) + 1)
            if resume is None:
                return
            offset = resume


def _blank(prefix: str) -> str:
    return re.sub(r"[^\n]", " ", prefix)


def _offset_of(text: str, span: ast.Span) -> int:
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: span.line - 1]) + span.column - 1


def _error_offset(exc: UnexpectedInput, text: str) -> int:
    if isinstance(exc, UnexpectedEOF):
        return len(text)
    pos = getattr(exc, "pos_in_stream", None)
    if isinstance(exc, UnexpectedToken) and exc.token.start_pos is not None:
        pos = exc.token.start_pos
    return int(pos) if pos is not None else len(text)


_TOP_LEVEL_START = re.compile(r"(?m)^[ \t]*(" + "|".join(TOP_LEVEL_KEYWORDS) + r")\b")


def _resume_point(text: str, start: int) -> int | None:
    """The first line-leading top-level keyword after `start` that sits outside any braces."""
    depths = _brace_depths(text)
    for match in _TOP_LEVEL_START.finditer(text, start):
        where = match.start(1)
        if depths[where] == 0:
            return where
    return None


def _brace_depths(text: str) -> list[int]:
    """Brace depth at every offset, ignoring braces inside strings and comments."""
    depths = [0] * (len(text) + 1)
    depth = 0
    in_string = in_comment = escaped = False
    for index, char in enumerate(text):
        depths[index] = depth
        if in_comment:
            in_comment = char != "\n"
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char in '"\n':
                in_string = False
        elif char == "#":
            in_comment = True
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
    depths[len(text)] = depth
    return depths


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    terminal = _terminal_pattern(name)
    if terminal is not None:
        return f"`{terminal}`"
    return name.lower()


@cache
def _terminal_patterns() -> dict[str, str]:
    patterns: dict[str, str] = {}
    for terminal in _lark().terminals:
        if terminal.pattern.type == "str":
            patterns[terminal.name] = terminal.pattern.value
    return patterns


def _terminal_pattern(name: str) -> str | None:
    return _terminal_patterns().get(name)


_STEP_KEYWORDS = frozenset(
    {"send", "wait", "if", "split", "set", "tag", "assign", "notify", "enroll", "exit", "..."}
)


def _expected_words(expected: set[str]) -> list[str]:
    """Expected terminals in words; whole families (steps, declarations) named as one."""
    patterns = {name: _terminal_pattern(name) for name in expected}
    literals = {p for p in patterns.values() if p is not None}
    groups: list[str] = []
    hidden: set[str] = set()
    families = (
        (_STEP_KEYWORDS, "a step (`send`, `wait`, `if`, `split`, ...)"),
        (frozenset(TOP_LEVEL_KEYWORDS), "a declaration (`segment`, `template`, `when`, ...)"),
    )
    for family, description in families:
        if family <= literals:
            groups.append(description)
            hidden |= family
    described = {_describe_terminal(name) for name in expected if patterns.get(name) not in hidden}
    words = sorted(described)
    keywords = [w for w in words if w.startswith("`")]
    others = [w for w in words if not w.startswith("`")]
    return groups + others + keywords


def _join_alternatives(words: list[str]) -> str:
    if len(words) > 16:
        words = [*words[:16], f"... ({len(words) - 16} more)"]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_diagnostic(exc: UnexpectedInput, source: SourceFile) -> Diagnostic:
    at_end = isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    )
    if at_end:
        last_line = len(source.lines)
        last_col = len(source.lines[-1]) + 1 if source.lines else 1
        expected = _expected_words(set(getattr(exc, "expected", ()) or ()))
        return source.diagnostic(
            ast.Span(source.name, last_line, last_col, last_line, last_col + 1),
            "E002",
            f"the file ends too early; expected {_join_alternatives(expected)}",
            hint="a `{` may be missing its `}`" if "`}`" in expected else None,
        )
    if isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream or 0
        char = source.text[position] if position < len(source.text) else "?"
        hint: str | None = None
        if not char.isascii() or char.isspace() or not char.isprintable():
            hint = _pasted_character_hint(source.text, position)
        elif char.isupper():
            hint = _upper_case_hint(source.text, position) or (
                "names are lower case: [a-z_][a-z0-9_]*"
            )
        elif char == "'":
            hint = 'strings use double quotes: "..."'
        elif char == '"':
            hint = "a string must close on the same line"
        else:
            hint = _operator_hint(source.text, position)
        allowed = _expected_words(set(exc.allowed or ()))
        if "DURATION" in set(exc.allowed or ()) and char.isascii():
            hint = _duration_hint(source.text, position) or hint
        if "TIME" in set(exc.allowed or ()) and char.isascii():
            hint = _clock_hint(source.text, position) or hint
        message = f"unexpected character {char!r}"
        if allowed:
            message += f"; expected {_join_alternatives(allowed)}"
        return source.diagnostic(
            ast.Span(source.name, exc.line, exc.column, exc.line, exc.column + 1),
            "E003",
            message,
            hint=hint,
        )
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    expected_names = set(exc.accepts or exc.expected)
    expected = _expected_words(expected_names)
    hint = None
    if token.type == "NAME" or str(token).isidentifier():
        keyword_candidates = [
            p for n, p in _terminal_patterns().items() if n in expected_names and p.isidentifier()
        ]
        hint = did_you_mean(str(token), keyword_candidates)
    if "DURATION" in expected_names and token.start_pos is not None:
        hint = _duration_hint(source.text, token.start_pos) or hint
    if "TIME" in expected_names and token.start_pos is not None:
        hint = _clock_hint(source.text, token.start_pos) or hint
    if str(token).lower() in ("am", "pm") and token.start_pos is not None:
        # `9:30am`: the time lexed, then `am` is left over.
        before = re.search(r"([0-9]{1,2}:[0-9]{2})\s*$", source.text[: token.start_pos])
        if before is not None:
            hint = _clock_hint(before.group(1) + str(token), 0) or hint
    if token.type == "CURRENCY" and "NAME" in expected_names:
        # `send SMS t`, `cap SMS 3 per 1d`: three capitals lex as a currency, not a name.
        hint = f"names are lower case: write `{str(token).lower()}`, not `{token}`"
    if token.start_pos is not None:
        hint = _upper_case_hint(source.text, token.start_pos) or hint
        hint = _word_order_hint(source.text, token) or hint
    if token.start_pos is not None:
        hint = _operator_hint(source.text, token.start_pos) or hint
    if token.type == "TIME" and token.start_pos is not None:
        # `at 2026-12-01 09:00`: a date, a space, then the time the date should carry.
        date = re.search(r"([0-9]{4}-[0-9]{2}-[0-9]{2})\s+$", source.text[: token.start_pos])
        if date is not None:
            hint = f"write the date and time as one: `{date.group(1)}T{token}`"
    hint = hint or _missing_token_hint(source.text, token, expected_names, expected)
    end_column = token.end_column if token.end_column is not None else (token.column or 1) + 1
    span = ast.Span(
        source.name,
        token.line or 1,
        token.column or 1,
        token.end_line or token.line or 1,
        end_column,
    )
    return source.diagnostic(
        span,
        "E004",
        f"unexpected {_token_words(token)}; expected {_join_alternatives(expected)}",
        hint=hint,
    )


# A number followed by a word where a duration belongs: `1mo`, `2 days`, `1.5h`, `90min`.
_WORDY_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)")
_DURATION_WORDS = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "day": "d", "days": "d", "week": "w", "weeks": "w", "wk": "w", "wks": "w",
}  # fmt: skip


_MONTH_WORDS = ("mo", "mon", "month", "months", "y", "yr", "yrs", "year", "years")


def _duration_hint(text: str, position: int) -> str | None:
    """A hint for a duration written as ops people often do (`2 days`, `1mo`, `1.5h`)."""
    found = _WORDY_DURATION.match(text, position)
    if found is None:
        # `per week`: a unit with no number.
        bare = re.match(r"[A-Za-z]+\b", text[position:])
        if bare is None:
            return None
        found = _WORDY_DURATION.match(f"1 {bare.group(0)}")
        if found is None or bare.group(0).lower() not in (*_DURATION_WORDS, *_MONTH_WORDS):
            return None
    number, word = found.group(1), found.group(2).lower()
    if word in _MONTH_WORDS:
        return "durations have no months or years: write days, such as 30d or 365d"
    unit = _DURATION_WORDS.get(word) or (word if word in "smhdw" and len(word) == 1 else None)
    if unit is None:
        return "a duration is a whole number and a unit s, m, h, d or w, such as 30m or 1d12h"
    if "." in number:
        return "durations are whole numbers: combine units, such as 1h30m for 1.5h"
    return f"write `{number}{unit}`"


# An upper-case word, and the money literal `30 AND` that one after a number lexes as.
_UPPER_WORD = re.compile(r"[A-Z][A-Za-z_]*\b")
_MONEY_BEFORE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s+([A-Z]{3})\s*$")


# Look-alikes a word processor or a web page puts in place of the ASCII the language reads.
_CURLY_QUOTES = "\u201c\u201d\u201e\u201f\u2018\u2019\u201a\u201b"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"


def _pasted_character_hint(text: str, position: int) -> str | None:
    """A hint for a character from outside the language's ASCII, as text pasted from a
    document brings in: curly quotes, a long dash, an invisible space, an accented letter."""
    char = text[position]
    if char in _CURLY_QUOTES:
        return 'write straight double quotes: "..."'
    if char in _DASHES:
        return "write the plain hyphen `-`"
    if char.isspace() or unicodedata.category(char) in ("Cf", "Cc"):
        name = unicodedata.name(char, "").lower() or f"U+{ord(char):04X}"
        fix = "replace it with a space" if char.isspace() else "remove it"
        return f"an invisible character ({name}), often pasted in: {fix}"
    if char.isascii():
        return None
    digit = unicodedata.digit(char, None)
    if digit is not None:
        return f"write digits as 0-9: `{digit}`"
    start, end = position, position + 1
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    word = text[start:end]
    plain = re.sub(
        r"[^a-z0-9_]", "", unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    ).lower()
    if plain and plain != word:
        return f"names use only a-z, 0-9 and `_`: write `{plain}`, not `{word}`"
    return "names use only a-z, 0-9 and `_`"


def _upper_case_hint(text: str, position: int) -> str | None:
    """A hint for a keyword written in capitals as in SQL (`AND`, `OR`, `NOT`, `Send`).

    After a number, `AND` and `NOT` lex as a currency (`30 AND` is money), so the parser
    stops one word later; the hint then names the word the author wrote.
    """
    keywords = {word for word in _terminal_patterns().values() if word.isidentifier()}
    found = _UPPER_WORD.match(text, position)
    if found is not None and found.group(0).lower() in keywords:
        word = found.group(0)
        return f"the language's words are lower case: write `{word.lower()}`, not `{word}`"
    money = _MONEY_BEFORE.search(text[:position])
    if money is not None and money.group(2).lower() in keywords:
        number, word = money.groups()
        return (
            f"`{number} {word}` reads as an amount of money in the currency {word}; "
            f"the language's words are lower case: write `{word.lower()}`"
        )
    return None


# `send_window 09:00-17:00 weekdays local` and `every monday at 09:00`: the right words
# in an order the grammar does not take, which a spelling hint would only confuse.
_RANGE_THEN_DAYS = re.compile(
    r"([0-9]{1,2}:[0-9]{2})\s*-\s*([0-9]{1,2}:[0-9]{2})\s+([a-z]+(?:\s*,\s*[a-z]+)*)\s*$"
)
_EVERY_DAYS = re.compile(r"\bevery\s+([a-z]+(?:\s*,\s*[a-z]+)*)\s*$")


def _word_order_hint(text: str, token: Token) -> str | None:
    """A hint for `local` written after a window's days, or `at` between `every` and a time."""
    before = text[: token.start_pos]
    if str(token) == "local":
        found = _RANGE_THEN_DAYS.search(before)
        if found is not None:
            start, end, days = found.groups()
            return f"`local` comes right after the times: `{start}-{end} local {days}`"
    if str(token) == "at":
        found = _EVERY_DAYS.search(before)
        time = re.match(r"at\s+([0-9]{1,2}:[0-9]{2})", text[token.start_pos :])
        if found is not None and time is not None:
            return (
                f"the time follows the days without `at`: `every {found.group(1)} {time.group(1)}`"
            )
    return None


# Operators from SQL and programming languages, and the word or sign the language uses.
_FOREIGN_OPERATORS = {
    "&&": "and", "||": "or", "<>": "!=", "=>": ">=", "=<": "<=", "&": "and", "|": "or",
    "!": "not",
}  # fmt: skip


def _operator_hint(text: str, position: int) -> str | None:
    """A hint for `&&`, `||`, `!x`, `<>`, `=>` or `=<` where the language has a word or sign.

    `<>`, `=>` and `=<` fail at their second character, the first having lexed as an
    operator of its own, so the pair ending at the error is read first.
    """
    pairs = [text[position - 1 : position + 1]] if position > 0 else []
    for written in (*pairs, text[position : position + 2], text[position : position + 1]):
        if written in _FOREIGN_OPERATORS:
            return f"write `{_FOREIGN_OPERATORS[written]}`, not `{written}`"
    return None


# A time of day written the 12-hour way: `9pm`, `9:30 am`.
_TWELVE_HOUR = re.compile(r"([0-9]{1,2})(?::([0-9]{2}))?\s*([AaPp])\.?[Mm]\b\.?")


def _clock_hint(text: str, position: int) -> str | None:
    """A hint for a 12-hour time (`9pm`) where a 24-hour time of day belongs."""
    found = _TWELVE_HOUR.match(text, position)
    if found is None:
        return None
    hour, minute = int(found.group(1)) % 12, found.group(2) or "00"
    if found.group(3).lower() == "p":
        hour += 12
    return f"times of day are 24-hour: write `{hour:02d}:{minute}`"


def _missing_token_hint(
    text: str, token: Token, expected_names: set[str], expected: list[str]
) -> str | None:
    """When nothing more specific applies: the one word or sign missing before this token
    (`if x > 1 send ...` lacks its `{`, `a send ...` in a split its `:`), a share written
    without `%`, or list items (`channels email sms`) without their comma."""
    if token.type == "NUMBER" and "PERCENT" in expected_names:
        return f"write the share with a percent sign: `{token}%`"
    before = text[: token.start_pos or 0]
    previous = re.search(r"(,\s*)?\b([a-z_][a-z0-9_]*)\s+$", before)
    if token.type == "NAME" and "COMMA" in expected_names and previous and not previous[1]:
        return f"separate the items of a list with commas: `{previous[2]}, {token}`"
    if len(expected) == 1 and expected[0].startswith("`"):
        return f"write {expected[0]} before {_token_words(token)}"
    return None


def _token_words(token: Token) -> str:
    kinds = {
        "NAME": "name",
        "STRING": "string",
        "NUMBER": "number",
        "DURATION": "duration",
        "TIME": "time",
        "DATE": "date",
        "DATETIME": "date and time",
        "PERCENT": "percentage",
    }
    kind = kinds.get(token.type)
    return f"{kind} `{token}`" if kind else f"`{token}`"


# ---------------------------------------------------------------------------- tree -> AST


class _ValueError(Exception):
    """A literal that lexes but cannot be a value (month 13, 25:00): reported as a syntax error."""

    def __init__(self, span: ast.Span, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.span = span
        self.code = code
        self.message = message
        self.hint = hint


def _parse_once(text: str, source: SourceFile) -> ast.Program:
    tree = _lark().parse(text)
    try:
        program = cast(ast.Program, _ToAst(source.name).transform(tree))
    except VisitError as exc:
        if isinstance(exc.orig_exc, _ValueError):
            raise exc.orig_exc from None
        raise
    comments = tuple(_comments(text, source.name))
    return ast.Program(program.declarations, comments, source.name)


def _comments(text: str, file: str) -> Iterator[ast.Comment]:
    """Every `#` comment outside strings; the grammar drops them, `fmt` wants them back."""
    line, column = 1, 1
    in_string = escaped = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char in '"\n':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            end = text.find("\n", index)
            end = len(text) if end == -1 else end
            body = text[index:end].rstrip("\r")
            yield ast.Comment(body, ast.Span(file, line, column, line, column + len(body)))
            column += end - index
            index = end
            continue
        if char == "\n":
            line, column = line + 1, 1
        else:
            column += 1
        index += 1


def _token_span(token: Token, file: str) -> ast.Span:
    line = token.line or 1
    column = token.column or 1
    return ast.Span(
        file,
        line,
        column,
        token.end_line or line,
        token.end_column if token.end_column is not None else column + len(token),
    )


# The longest duration the language takes (`1w` ... up to ten years).
MAX_DURATION_SECONDS = 10 * 366 * 86400
# Counts, caps and send limits are stored as 64-bit integers; far below that, a count no
# contact ever reaches (a cap of a billion sends is no cap) is a typo, not a setting.
MAX_WHOLE_NUMBER = 1_000_000_000
# A campaign's `starts`, `ends` and `at` are instants the engine schedules by, adding waits
# of up to ten years and every time zone's offset: a year outside these is a typo, or
# `ends 9999-12-31` for "never", which is what leaving `ends` out says.
SCHEDULE_YEARS = range(1970, 3000)


def duration_seconds(text: str) -> int:
    """Seconds in a duration literal such as `1d12h`."""
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def unescape_string(literal: str) -> str:
    """The value of a quoted string: `\\"` and `\\\\` resolved, other escapes kept literally,
    in NFC (`cadence.text`), so `"Zürich"` typed either way matches the stored value."""
    return nfc(unescape_path(literal))


def unescape_path(literal: str) -> str:
    """A quoted file path's value, escapes resolved as `unescape_string` does, but as
    written: a file system may hold names in either form, and only the written one opens."""
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


@v_args(meta=True, inline=True)
class _ToAst(Transformer[Token, Any]):
    """Lark tree -> `cadence.dsl.ast` nodes."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    # -- helpers

    def _span(self, meta: Any) -> ast.Span:
        if getattr(meta, "empty", True):
            return ast.NO_SPAN
        return ast.Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, token: Token) -> ast.Span:
        return _token_span(token, self.file)

    # -- program

    def start(self, meta: Any, *declarations: ast.Declaration) -> ast.Program:
        return ast.Program(tuple(declarations), (), self.file)

    def import_decl(self, meta: Any, path: Token) -> ast.Import:
        return ast.Import(unescape_path(path), span=self._span(meta))

    def schema_decl(self, meta: Any, *fields: ast.SchemaField) -> ast.SchemaDecl:
        return ast.SchemaDecl(tuple(fields), span=self._span(meta))

    def schema_field(self, meta: Any, name: Token, type_: Token) -> ast.SchemaField:
        return ast.SchemaField(str(name), str(type_), span=self._span(meta))

    def segment_decl(self, meta: Any, name: Token, expr: ast.Expr) -> ast.SegmentDecl:
        return ast.SegmentDecl(str(name), expr, span=self._span(meta))

    # -- templates

    def template_inline(
        self, meta: Any, name: Token, channel: Token, body: Token
    ) -> ast.TemplateDecl:
        content = ast.TemplateContent(body=self._string(body))
        return ast.TemplateDecl(
            str(name),
            str(channel),
            content,
            (),
            True,
            span=self._span(meta),
            channel_span=self._tok(channel),
        )

    def template_block(
        self, meta: Any, name: Token, channel: Token, *parts: Any
    ) -> ast.TemplateDecl:
        content, locales = self._template_parts(parts)
        return ast.TemplateDecl(
            str(name),
            str(channel),
            content,
            locales,
            False,
            span=self._span(meta),
            channel_span=self._tok(channel),
        )

    def _string(self, token: Token) -> ast.StringLit:
        return ast.StringLit(unescape_string(token), span=self._tok(token))

    def _template_parts(
        self, parts: tuple[Any, ...]
    ) -> tuple[ast.TemplateContent, tuple[ast.LocaleBlock, ...]]:
        fields: dict[str, ast.StringLit] = {}
        locales: list[ast.LocaleBlock] = []
        for part in parts:
            if isinstance(part, ast.LocaleBlock):
                locales.append(part)
                continue
            key, value = part
            if key in fields or (
                key in {"body", "body_file"} and ({"body", "body_file"} & fields.keys())
            ):
                raise _ValueError(
                    value.span,
                    "E010",
                    f"the template sets its {key.replace('_', ' ')} twice",
                    hint="keep one",
                )
            fields[key] = value
        content = ast.TemplateContent(
            subject=fields.get("subject"),
            preheader=fields.get("preheader"),
            body=fields.get("body"),
            body_file=fields.get("body_file"),
        )
        return content, tuple(locales)

    def tpl_subject(self, meta: Any, value: Token) -> tuple[str, ast.StringLit]:
        return "subject", self._string(value)

    def tpl_preheader(self, meta: Any, value: Token) -> tuple[str, ast.StringLit]:
        return "preheader", self._string(value)

    def tpl_body(self, meta: Any, value: Token) -> tuple[str, ast.StringLit]:
        return "body", self._string(value)

    def tpl_body_file(self, meta: Any, value: Token) -> tuple[str, ast.StringLit]:
        return "body_file", ast.StringLit(unescape_path(value), span=self._tok(value))

    def tpl_locale(self, meta: Any, locale: Token, *parts: Any) -> ast.LocaleBlock:
        span = self._span(meta)
        if any(isinstance(p, ast.LocaleBlock) for p in parts):
            raise _ValueError(span, "E010", "a locale block cannot hold another locale block")
        content, _ = self._template_parts(parts)
        return ast.LocaleBlock(unescape_string(locale), content, span=span)

    # -- scores

    def score_decl(self, meta: Any, name: Token, *rules: ast.ScoreRule) -> ast.ScoreDecl:
        return ast.ScoreDecl(str(name), tuple(rules), span=self._span(meta))

    def score_points(
        self,
        meta: Any,
        event: ast.Call | ast.Path,
        within: Token | None,
        points: Token,
        each: Token | None,
    ) -> ast.ScorePoints:
        return ast.ScorePoints(
            event,
            self._duration(within) if within is not None else None,
            Decimal(str(points)),
            each is not None,
            span=self._span(meta),
        )

    def score_within(self, meta: Any, duration: Token) -> Token:
        return duration

    def score_decay(self, meta: Any, percent: Token, per: Token) -> ast.ScoreDecay:
        return ast.ScoreDecay(self._percent(percent), self._duration(per), span=self._span(meta))

    # -- campaigns and settings

    def campaign_decl(
        self, meta: Any, name: Token, display: Token | None, *items: Any
    ) -> ast.CampaignDecl:
        settings = tuple(i for i in items if not isinstance(i, ast.TriggerBlock))
        triggers = tuple(i for i in items if isinstance(i, ast.TriggerBlock))
        return ast.CampaignDecl(
            str(name),
            unescape_string(display) if display is not None else None,
            settings,
            triggers,
            span=self._span(meta),
        )

    def _name_setting(self, meta: Any, key: ast.NameSettingKey, value: Token) -> ast.NameSetting:
        return ast.NameSetting(key, str(value), span=self._span(meta), value_span=self._tok(value))

    def set_type(self, meta: Any, value: Token) -> ast.NameSetting:
        return self._name_setting(meta, "type", value)

    def set_kind(self, meta: Any, value: Token) -> ast.NameSetting:
        return self._name_setting(meta, "kind", value)

    def set_approval(self, meta: Any, value: Token) -> ast.NameSetting:
        return self._name_setting(meta, "approval", value)

    def set_audience(self, meta: Any, expr: ast.Expr) -> ast.ExprSetting:
        return ast.ExprSetting("audience", expr, span=self._span(meta))

    def set_exclude(self, meta: Any, expr: ast.Expr) -> ast.ExprSetting:
        return ast.ExprSetting("exclude", expr, span=self._span(meta))

    def set_goal(self, meta: Any, expr: ast.Expr) -> ast.ExprSetting:
        return ast.ExprSetting("goal", expr, span=self._span(meta))

    def set_from(self, meta: Any, value: Token) -> ast.StringSetting:
        return ast.StringSetting("from", unescape_string(value), span=self._span(meta))

    def set_reply_to(self, meta: Any, value: Token) -> ast.StringSetting:
        return ast.StringSetting("reply_to", unescape_string(value), span=self._span(meta))

    def set_channels(self, meta: Any, *channels: Token) -> ast.ChannelsSetting:
        return ast.ChannelsSetting(tuple(str(c) for c in channels), span=self._span(meta))

    def set_priority(self, meta: Any, value: Token) -> ast.NumberSetting:
        return ast.NumberSetting("priority", Decimal(str(value)), span=self._span(meta))

    def set_max_sends(self, meta: Any, value: Token) -> ast.NumberSetting:
        return ast.NumberSetting("max_sends", Decimal(str(value)), span=self._span(meta))

    def set_cap(self, meta: Any, channel: Token | None, count: Token, per: Token) -> ast.CapSetting:
        return ast.CapSetting(
            str(channel) if channel is not None else None,
            self._whole(count, "a cap"),
            self._duration(per),
            span=self._span(meta),
        )

    def set_send_window(
        self, meta: Any, start: Token, end: Token, local: Token | None, *days: Token
    ) -> ast.SendWindowSetting:
        return ast.SendWindowSetting(
            self._time(start),
            self._time(end),
            local is not None,
            tuple(str(d) for d in days if d is not None),
            span=self._span(meta),
        )

    def set_timezone(self, meta: Any, fallback: Token | None, zone: Token) -> ast.TimezoneSetting:
        return ast.TimezoneSetting(
            unescape_string(zone), fallback is not None, span=self._span(meta)
        )

    def set_quiet_hours(
        self, meta: Any, channel: Token | None, start: Token, end: Token, local: Token | None
    ) -> ast.QuietHoursSetting:
        return ast.QuietHoursSetting(
            str(channel) if channel is not None else None,
            self._time(start),
            self._time(end),
            local is not None,
            span=self._span(meta),
        )

    def set_budget(self, meta: Any, amount: ast.MoneyLit) -> ast.BudgetSetting:
        return ast.BudgetSetting(amount, span=self._span(meta))

    def set_cost(self, meta: Any, *items: ast.CostItem) -> ast.CostSetting:
        return ast.CostSetting(tuple(items), span=self._span(meta))

    def cost_item(self, meta: Any, channel: Token, amount: ast.MoneyLit) -> ast.CostItem:
        return ast.CostItem(str(channel), amount, span=self._span(meta))

    def set_starts(self, meta: Any, moment: Token) -> ast.DateSetting:
        return ast.DateSetting("starts", self._scheduled(moment), span=self._span(meta))

    def set_ends(self, meta: Any, moment: Token) -> ast.DateSetting:
        hint = "a campaign without `ends` runs on: leave it out"
        return ast.DateSetting("ends", self._scheduled(moment, hint), span=self._span(meta))

    def set_reenter(self, meta: Any, value: Token) -> ast.ReenterSetting:
        after = self._duration(value) if value.type == "DURATION" else None
        return ast.ReenterSetting(after, span=self._span(meta))

    # -- triggers

    def trigger_block(self, meta: Any, trigger: ast.Trigger, *body: Any) -> ast.TriggerBlock:
        braced = len(body) == 1 and isinstance(body[0], tuple)
        steps: tuple[ast.Step, ...] = body[0] if braced else tuple(body)
        return ast.TriggerBlock(trigger, steps, braced=braced, span=self._span(meta))

    def trigger_event(
        self, meta: Any, event: Token, *options: tuple[str, Any, ast.Span]
    ) -> ast.EventTrigger:
        seen: dict[str, Any] = {}
        for key, value, span in options:
            if key in seen:
                raise _ValueError(span, "E011", f"`{key}` is given twice for this trigger")
            seen[key] = value
        return ast.EventTrigger(
            str(event),
            count=seen.get("count"),
            within=seen.get("within"),
            where=seen.get("where"),
            fanout=seen.get("for contacts where"),
            span=self._span(meta),
        )

    def count_option(self, meta: Any, op: Token | str, count: Token) -> tuple[str, Any, ast.Span]:
        span = self._span(meta)
        clause = ast.CountClause(_compare_op(str(op)), self._whole(count, "a count"), span=span)  # type: ignore[arg-type]
        return "count", clause, span

    def count_eq_option(self, meta: Any, count: Token) -> tuple[str, Any, ast.Span]:
        # `count=3`: the grammar reads `=` apart from COMPARE (it also assigns in `set`).
        return self.count_option(meta, "=", count)

    def within_option(self, meta: Any, duration: Token) -> tuple[str, Any, ast.Span]:
        return "within", self._duration(duration), self._span(meta)

    def where_option(self, meta: Any, expr: ast.Expr) -> tuple[str, Any, ast.Span]:
        return "where", expr, self._span(meta)

    def fanout_option(self, meta: Any, expr: ast.Expr) -> tuple[str, Any, ast.Span]:
        return "for contacts where", expr, self._span(meta)

    def trigger_on(self, meta: Any, name: Token) -> ast.Trigger:
        span = self._span(meta)
        if name == "contact_created":
            return ast.ContactCreatedTrigger(span=span)
        if name == "launch":
            return ast.LaunchTrigger(span=span)
        return ast.EventTrigger(str(name), keyword="on", span=span)

    def trigger_segment_enter(self, meta: Any, segment: Token) -> ast.SegmentEnterTrigger:
        return ast.SegmentEnterTrigger(str(segment), span=self._span(meta))

    def trigger_at(self, meta: Any, moment: Token, local: Token | None) -> ast.AtTrigger:
        return ast.AtTrigger(self._scheduled(moment), local is not None, span=self._span(meta))

    def trigger_every(
        self,
        meta: Any,
        schedule: tuple[tuple[str, ...], ast.DurationLit | None],
        time: Token | None,
        local: Token | None,
    ) -> ast.EveryTrigger:
        days, interval = schedule
        return ast.EveryTrigger(
            days,
            interval,
            self._time(time) if time is not None else None,
            local is not None,
            span=self._span(meta),
        )

    def schedule_days(self, meta: Any, *days: Token) -> tuple[tuple[str, ...], None]:
        return tuple(str(d) for d in days), None

    def schedule_interval(
        self, meta: Any, interval: Token
    ) -> tuple[tuple[str, ...], ast.DurationLit]:
        return (), self._duration(interval)

    # -- steps

    def block(self, meta: Any, *steps: ast.Step) -> tuple[ast.Step, ...]:
        return tuple(steps)

    def send_step(self, meta: Any, channel: Token, template: Token) -> ast.Send:
        return ast.Send(
            str(channel),
            str(template),
            span=self._span(meta),
            channel_span=self._tok(channel),
            template_span=self._tok(template),
        )

    def wait_step(self, meta: Any, duration: Token) -> ast.Wait:
        return ast.Wait(self._duration(duration), span=self._span(meta))

    def wait_until_step(self, meta: Any, time: Token, local: Token | None) -> ast.WaitUntil:
        return ast.WaitUntil(self._time(time), local is not None, span=self._span(meta))

    def wait_for_step(self, meta: Any, event: ast.Expr, up_to: Token | None) -> ast.WaitFor:
        return ast.WaitFor(
            event, self._duration(up_to) if up_to is not None else None, span=self._span(meta)
        )

    def if_step(
        self,
        meta: Any,
        condition: ast.Expr,
        steps: tuple[ast.Step, ...],
        rest: ast.If | tuple[ast.Step, ...] | None,
    ) -> ast.If:
        span = self._span(meta)
        first = ast.IfBranch(condition, steps, span=span)
        if isinstance(rest, ast.If):
            return ast.If((first, *rest.branches), rest.else_steps, span=span)
        return ast.If((first,), rest, span=span)

    def else_clause(
        self, meta: Any, body: ast.If | tuple[ast.Step, ...]
    ) -> ast.If | tuple[ast.Step, ...]:
        return body

    def ab_split_step(
        self, meta: Any, share: Token, metric: Token, after: Token, *branches: ast.SplitBranch
    ) -> ast.ABSplit:
        return ast.ABSplit(
            self._percent(share),
            str(metric),
            self._duration(after),
            tuple(branches),
            span=self._span(meta),
            metric_span=self._tok(metric),
        )

    def ab_branch(self, meta: Any, name: Token, *body: Any) -> ast.SplitBranch:
        return ast.SplitBranch(str(name), None, self._branch_steps(body), span=self._span(meta))

    def random_split_step(self, meta: Any, *branches: ast.SplitBranch) -> ast.RandomSplit:
        return ast.RandomSplit(tuple(branches), span=self._span(meta))

    def random_branch(self, meta: Any, name: Token, share: Token, *body: Any) -> ast.SplitBranch:
        return ast.SplitBranch(
            str(name), self._percent(share), self._branch_steps(body), span=self._span(meta)
        )

    @staticmethod
    def _branch_steps(body: tuple[Any, ...]) -> tuple[ast.Step, ...]:
        if len(body) == 1 and isinstance(body[0], tuple):
            return cast(tuple[ast.Step, ...], body[0])
        return cast(tuple[ast.Step, ...], body)

    def set_step(self, meta: Any, target: ast.Path, value: ast.Expr) -> ast.SetAttr:
        return ast.SetAttr(target, value, span=self._span(meta))

    def tag_step(self, meta: Any, action: Token, tag: Token) -> ast.Tag:
        return ast.Tag(cast(Any, str(action)), unescape_string(tag), span=self._span(meta))

    def assign_step(self, meta: Any, strategy: Token) -> ast.AssignAgent:
        return ast.AssignAgent(str(strategy), span=self._span(meta))

    def notify_step(self, meta: Any, channel: Token, target: Token) -> ast.Notify:
        return ast.Notify(str(channel), unescape_string(target), span=self._span(meta))

    def enroll_step(self, meta: Any, campaign: Token) -> ast.Enroll:
        return ast.Enroll(str(campaign), span=self._span(meta))

    def exit_step(self, meta: Any, reason: Token | None) -> ast.Exit:
        return ast.Exit(
            unescape_string(reason) if reason is not None else None, span=self._span(meta)
        )

    def placeholder_step(self, meta: Any) -> ast.Placeholder:
        return ast.Placeholder(span=self._span(meta))

    # -- expressions

    def or_expr(self, meta: Any, *operands: ast.Expr) -> ast.Expr:
        return self._chain("or", operands, meta)

    def and_expr(self, meta: Any, *operands: ast.Expr) -> ast.Expr:
        return self._chain("and", operands, meta)

    def _chain(self, op: ast.BinaryOp, operands: tuple[ast.Expr, ...], meta: Any) -> ast.Expr:
        result = operands[0]
        for operand in operands[1:]:
            result = ast.Binary(op, result, operand, span=_cover(result, operand, self._span(meta)))
        return result

    def not_op(self, meta: Any, operand: ast.Expr) -> ast.Unary:
        return ast.Unary("not", operand, span=self._span(meta))

    def negate(self, meta: Any, operand: ast.Expr) -> ast.Unary:
        return ast.Unary("-", operand, span=self._span(meta))

    def compare(self, meta: Any, left: ast.Expr, op: Token, right: ast.Expr) -> ast.Compare:
        return ast.Compare(_compare_op(str(op)), left, right, span=self._span(meta))

    def compare_eq(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Compare:
        return ast.Compare("=", left, right, span=self._span(meta))

    def compare_in(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Compare:
        return ast.Compare("in", left, right, span=self._span(meta))

    def compare_not_in(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Compare:
        return ast.Compare("not in", left, right, span=self._span(meta))

    def compare_contains(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Compare:
        return ast.Compare("contains", left, right, span=self._span(meta))

    def compare_startswith(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Compare:
        return ast.Compare("startswith", left, right, span=self._span(meta))

    def within(self, meta: Any, operand: ast.Expr, duration: Token) -> ast.Within:
        return ast.Within(operand, self._duration(duration), span=self._span(meta))

    def add(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Binary:
        return ast.Binary("+", left, right, span=self._span(meta))

    def subtract(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Binary:
        return ast.Binary("-", left, right, span=self._span(meta))

    def multiply(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Binary:
        return ast.Binary("*", left, right, span=self._span(meta))

    def divide(self, meta: Any, left: ast.Expr, right: ast.Expr) -> ast.Binary:
        return ast.Binary("/", left, right, span=self._span(meta))

    def call(self, meta: Any, name: Token, *args: ast.Expr | None) -> ast.Call:
        return ast.Call(str(name), tuple(a for a in args if a is not None), span=self._span(meta))

    def count_call(self, meta: Any, *args: ast.Expr | None) -> ast.Call:
        return ast.Call("count", tuple(a for a in args if a is not None), span=self._span(meta))

    def path(self, meta: Any, *parts: Token) -> ast.Path:
        return ast.Path(tuple(str(p) for p in parts), span=self._span(meta))

    def number(self, meta: Any, value: Token) -> ast.NumberLit:
        return ast.NumberLit(Decimal(str(value)), span=self._tok(value))

    def string(self, meta: Any, value: Token) -> ast.StringLit:
        return self._string(value)

    def true(self, meta: Any) -> ast.BoolLit:
        return ast.BoolLit(True, span=self._span(meta))

    def false(self, meta: Any) -> ast.BoolLit:
        return ast.BoolLit(False, span=self._span(meta))

    def duration(self, meta: Any, value: Token) -> ast.DurationLit:
        return self._duration(value)

    def time(self, meta: Any, value: Token) -> ast.TimeLit:
        return self._time(value)

    def date(self, meta: Any, value: Token) -> ast.DateLit:
        moment = self._moment(value)
        assert isinstance(moment, ast.DateLit)
        return moment

    def datetime(self, meta: Any, value: Token) -> ast.DateTimeLit:
        moment = self._moment(value)
        assert isinstance(moment, ast.DateTimeLit)
        return moment

    def percent(self, meta: Any, value: Token) -> ast.PercentLit:
        return self._percent(value)

    def money(self, meta: Any, amount: Token, currency: Token) -> ast.MoneyLit:
        return ast.MoneyLit(Decimal(str(amount)), str(currency), span=self._span(meta))

    def list(self, meta: Any, *items: ast.Expr | None) -> ast.ListLit:
        return ast.ListLit(tuple(i for i in items if i is not None), span=self._span(meta))

    # -- literal conversion with range checks

    def _duration(self, token: Token) -> ast.DurationLit:
        seconds = duration_seconds(str(token))
        span = self._tok(token)
        if seconds <= 0:
            raise _ValueError(
                span, "E012", f"the duration `{token}` is zero", hint="use at least 1s"
            )
        if seconds > MAX_DURATION_SECONDS:
            raise _ValueError(
                span,
                "E012",
                f"the duration `{token}` is longer than ten years",
                hint="use at most ten years, such as 520w or 3650d",
            )
        return ast.DurationLit(seconds, span=span)

    def _time(self, token: Token) -> ast.TimeLit:
        hour, minute = (int(part) for part in str(token).split(":"))
        span = self._tok(token)
        if hour > 23 or minute > 59:
            raise _ValueError(
                span, "E012", f"`{token}` is not a time of day", hint="use 00:00 to 23:59"
            )
        return ast.TimeLit(hour, minute, span=span)

    def _moment(self, token: Token) -> ast.DateLit | ast.DateTimeLit:
        span = self._tok(token)
        text = str(token)
        try:
            if "T" in text:
                return ast.DateTimeLit(dt.datetime.fromisoformat(text), span=span)
            return ast.DateLit(dt.date.fromisoformat(text), span=span)
        except ValueError:
            raise _ValueError(
                span, "E012", f"`{text}` is not a real date or time", hint=_moment_hint(text)
            ) from None

    def _scheduled(self, token: Token, hint: str | None = None) -> ast.DateLit | ast.DateTimeLit:
        """A moment the engine schedules by (`starts`, `ends`, `at`), in `SCHEDULE_YEARS`."""
        moment = self._moment(token)
        if moment.value.year not in SCHEDULE_YEARS:
            first, last = SCHEDULE_YEARS[0], SCHEDULE_YEARS[-1]
            raise _ValueError(
                moment.span,
                "E012",
                f"`{token}` is outside the years a campaign can be scheduled in",
                hint=hint
                if moment.value.year > last and hint
                else f"use a year from {first} to {last}",
            )
        return moment

    def _percent(self, token: Token) -> ast.PercentLit:
        span = self._tok(token)
        value = Decimal(str(token).rstrip("%"))
        if value > 100:
            raise _ValueError(
                span, "E012", f"`{token}` is more than 100%", hint="a share runs from 0% to 100%"
            )
        return ast.PercentLit(value, span=span)

    def _whole(self, token: Token, what: str) -> int:
        try:
            value = Decimal(str(token))
        except InvalidOperation:  # pragma: no cover - the lexer only passes digits
            value = Decimal(-1)
        if value != value.to_integral_value():
            raise _ValueError(
                self._tok(token),
                "E012",
                f"{what} must be a whole number, not `{token}`",
                hint="write it without a decimal point",
            )
        if value > MAX_WHOLE_NUMBER:
            raise _ValueError(
                self._tok(token),
                "E012",
                f"{what} of `{token}` is more than a billion",
                hint="no contact ever reaches a count that large: use a smaller number",
            )
        return int(value)


def _moment_hint(text: str) -> str:
    """Which part of a date or date-time of the right shape does not exist (`2026-02-30`)."""
    year, month, day = (int(part) for part in text[:10].split("-"))
    if year < dt.MINYEAR:
        return "years start at 0001"
    if not 1 <= month <= 12:
        return "months run from 01 to 12"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        return f"{calendar.month_name[month]} {year} has {days} days"
    return "times of day run from 00:00 to 23:59"


def _compare_op(op: str) -> ast.CompareOp:
    return cast(ast.CompareOp, "=" if op == "==" else op)


def _cover(first: ast.Expr, last: ast.Expr, fallback: ast.Span) -> ast.Span:
    a, b = first.span, last.span
    if a is ast.NO_SPAN or b is ast.NO_SPAN:
        return fallback
    return ast.Span(a.file, a.line, a.column, b.end_line, b.end_column)
