"""What every check pass shares: the workspace, its symbols, and one way to report a finding.

Passes never build `Diagnostic`s by hand: they call `CheckContext.error` / `warning` with a
span, so every finding quotes its source line and carries a caret. Several AST nodes only
keep the span of their whole construct; `word_span` and `tail_span` narrow it to the word
that is wrong, so the caret lands on `smss` in `channels email, smss` rather than on
`channels`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cadence.dsl import ast
from cadence.dsl.loader import Workspace
from cadence.dsl.symbols import Symbols
from cadence.errors import Diagnostic, Severity

# Every code the checker can report, with the one-line meaning docs/diagnostics.md expands.
CHECK_CODES: dict[str, str] = {
    "E101": "unknown template",
    "E102": "unknown segment",
    "E103": "unknown campaign",
    "E104": "unknown channel",
    "E105": "unknown function",
    "E106": "wrong number or kind of arguments",
    "E107": "engagement function argument is not a template or `any`",
    "E108": "unknown contact attribute (a contact schema is declared)",
    "E109": "unknown schema type",
    "E110": "unknown campaign type",
    "E111": "bad approval value",
    "E112": "unknown timezone",
    "E113": "duplicate declaration",
    "E114": "unknown day name",
    "E115": "unknown split metric",
    "E116": "`event.FIELD` where there is no event",
    "E117": "a declared name that conditions read as a word of the language",
    "E201": "template sent on a channel it was not written for",
    "E202": "split shares do not add up to 100%",
    "E203": "split winner metric cannot be measured on the channel",
    "E204": "A/B split with fewer than two branches",
    "E205": "A/B test share outside 0%..100%",
    "E206": "step after `exit`",
    "E207": "`wait for` without `up to`",
    "E208": "loop that can send without a wait",
    "E209": "more sends on one path than the campaign's limit",
    "E210": "send window that never opens",
    "E211": "send on a channel the campaign's `channels` leaves out",
    "E212": "value, duration or date out of range",
    "E213": "setting given twice in one campaign",
    "E214": "segment that refers to itself",
    "E215": "email template without a subject",
    "E216": "subject or preheader on a channel that has none",
    "E217": "template body file not found",
    "E218": "template without a body",
    "E219": "duplicate split branch name",
    "E220": "template text that is not a valid template",
    "E221": "a locale block whose code is not a locale, or given twice",
    "E222": "a sender that is no email address, or a webhook URL that is no http(s) URL",
    "E223": "a `set` of `id`, or of a value of another kind than the contact schema declares",
    "W301": "unreachable step",
    "W302": "wait that runs past the campaign's end",
    "W303": "frequency cap that holds back a later send",
    "W304": "placeholder step `...`",
    "W305": "bare name that looks like a misspelt segment or score",
    "W306": "event name one typo from another event name in use",
    "W307": "`null` (or `none`, `nil`, `undefined`) read as a contact attribute",
    "W308": "template text that uses a name no send gives a template",
    "W309": "a score's or segment's name used as a stored attribute (`contact.NAME`, `set NAME`)",
    "W310": "engagement in a step about a template the campaign never sends",
    "W311": "an ordering comparison with a number written in quotes",
    "W312": "a template that reads `event.FIELD` sent where there is no event",
    "W313": "a campaign with a budget sending on a channel its `cost` does not price",
    "W314": "an event trigger's `count` that the event firing it can never meet",
}


@dataclass(slots=True)
class CheckContext:
    """The workspace under check, its symbol table, and the findings collected so far."""

    workspace: Workspace
    symbols: Symbols
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # True while checking the steps of a `when EVENT` / `on EVENT` trigger: `event.x` exists.
    event_in_scope: bool = False
    # Per template, the `event.FIELD`s its text reads with nothing to catch their absence
    # (`compiled.unguarded_event_reads`): filled by the declarations, read at each send.
    event_reads: dict[str, set[str]] = field(default_factory=dict)

    def report(
        self,
        span: ast.Span,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        severity: Severity = "error",
    ) -> None:
        """Record one finding at `span`, quoting the source line when the file is loaded."""
        assert code in CHECK_CODES, code
        source = self.workspace.source_for(span.file)
        if source is not None:
            diagnostic = source.diagnostic(span, code, message, hint=hint, severity=severity)
        else:
            diagnostic = Diagnostic(
                span.file,
                span.line,
                span.column,
                span.end_line,
                span.end_column,
                severity,
                code,
                message,
                hint,
            )
        self.diagnostics.append(diagnostic)

    def error(self, span: ast.Span, code: str, message: str, hint: str | None = None) -> None:
        """Record an error: `cadence check` fails."""
        self.report(span, code, message, hint=hint, severity="error")

    def warning(self, span: ast.Span, code: str, message: str, hint: str | None = None) -> None:
        """Record a warning: shown, but `cadence check` passes unless `--strict`."""
        self.report(span, code, message, hint=hint, severity="warning")

    def span_text(self, span: ast.Span) -> str | None:
        """The source text a single-line span covers, or None when it spans lines or is unknown."""
        source = self.workspace.source_for(span.file)
        if source is None or span.line != span.end_line:
            return None
        line = source.line(span.line)
        if line is None:
            return None
        return line[span.column - 1 : span.end_column - 1]

    def word_span(self, span: ast.Span, word: str, occurrence: int = 0) -> ast.Span:
        """The span of `word` (as a whole word) inside `span`; `span` itself if not found."""
        source = self.workspace.source_for(span.file)
        if source is None:
            return span
        pattern = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(word) + r"(?![A-Za-z0-9_])")
        seen = 0
        for number in range(span.line, span.end_line + 1):
            line = source.line(number)
            if line is None:
                break
            start = span.column - 1 if number == span.line else 0
            end = span.end_column - 1 if number == span.end_line else len(line)
            for match in pattern.finditer(line, start, end):
                if seen == occurrence:
                    return ast.Span(span.file, number, match.start() + 1, number, match.end() + 1)
                seen += 1
        return span

    def tail_span(self, span: ast.Span) -> ast.Span:
        """The last token of a construct (a quoted string counts as one): where its value is."""
        source = self.workspace.source_for(span.file)
        line = source.line(span.end_line) if source is not None else None
        if line is None:
            return span
        end = min(span.end_column - 1, len(line))
        text = line[:end]
        if text.endswith('"'):
            start = text.rfind('"', 0, len(text) - 1)
        else:
            start = max(text.rfind(" ", 0), text.rfind("\t", 0)) + 1
        if start < 0 or (span.line == span.end_line and start < span.column - 1):
            return span
        return ast.Span(span.file, span.end_line, start + 1, span.end_line, end + 1)


def where(span: ast.Span) -> str:
    """`file:line`, for hints that point at another declaration."""
    return f"{span.file}:{span.line}"


def article(word: str) -> str:
    """`an email`, `a webhook`: the word with its indefinite article."""
    # Said letter by letter, "sms" takes "an" too.
    return f"an {word}" if word[:1] in "aeiou" or word == "sms" else f"a {word}"


def moment_text(moment: ast.DateLit | ast.DateTimeLit) -> str:
    """A date or date-time the way it is written in a file: `2026-12-01T09:00`."""
    if isinstance(moment, ast.DateLit):
        return moment.value.isoformat()
    return moment.value.isoformat(timespec="seconds" if moment.value.second else "minutes")
