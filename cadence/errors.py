"""Every error Cadence reports about its input: one hierarchy, one diagnostic shape.

Bad input (DSL, CSV, JSON, HTTP bodies) must surface as a `CadenceError` that names what is
wrong and where; nothing else escapes to the user.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a source file, positioned to the character, with an optional hint."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    code: str
    message: str
    hint: str | None = None
    source_line: str | None = None

    def to_json(self) -> str:
        """One JSON object on one line, the shape `cadence check --format json` promises."""
        data = asdict(self)
        data.pop("source_line")
        return json.dumps(data, ensure_ascii=False)

    def render(self) -> str:
        """`file:line:col: severity[code]: message`, then the source line with a caret under it."""
        head = (
            f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]: {self.message}"
        )
        lines = [head]
        if self.source_line is not None:
            text = self.source_line.expandtabs(1)
            width = max(1, self.end_column - self.column) if self.end_line == self.line else 1
            width = min(width, max(1, len(text) - self.column + 1))
            gutter = f"{self.line:>4} | "
            lines.append(gutter + text)
            # Columns count characters, but a terminal gives a CJK character two cells and a
            # zero-width one none: the caret is laid out in cells to stay under its token.
            before = _cells(text[: self.column - 1])
            under = max(1, _cells(text[self.column - 1 : self.column - 1 + width]))
            lines.append(" " * (len(gutter) + before) + "^" * under)
        if self.hint:
            lines.append(f"     = hint: {self.hint}")
        return "\n".join(lines)


def _cells(text: str) -> int:
    """How many terminal cells `text` takes: wide East Asian characters two, marks and
    format characters (a combining accent, a zero-width space) none."""
    return sum(
        0
        if unicodedata.category(char) in ("Mn", "Me", "Cf")
        else 2
        if unicodedata.east_asian_width(char) in ("W", "F")
        else 1
        for char in text
    )


class CadenceError(Exception):
    """The root of every error Cadence raises about its input."""


class DiagnosticError(CadenceError):
    """Input with one or more diagnostics of severity error; the message renders them all."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """Only the diagnostics that are errors."""
        return tuple(d for d in self.diagnostics if d.severity == "error")


class CadenceSyntaxError(DiagnosticError):
    """The text is not in the Cadence language."""


class CadenceCheckError(DiagnosticError):
    """The text parses but breaks one of the compiler's rules."""


def suggest(name: str, candidates: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The closest known name to a misspelt one, for "did you mean ...?" hints.

    `cutoff` (0..1) is how alike they must be: higher where the candidates are many and
    a loose match would mislead (every IANA zone name).
    """
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A ready hint sentence, or None when nothing is close enough."""
    match = suggest(name, candidates)
    return f"did you mean `{match}`?" if match else None


# A UTC offset written where a time zone name belongs: `+05:30`, `UTC+5`, `GMT-03:00`.
_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)


def offset_hint(zone: str) -> str | None:
    """What to write instead of a UTC offset given as a time zone, or None for anything else.

    The closest zone name ("UTC" for "UTC+5") is wrong by the offset itself, and a fixed
    offset misses the place's daylight-saving changes.
    """
    match = _OFFSET.fullmatch(zone.strip())
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    hint = (
        "an offset, not a time zone: use the IANA name of the place (Europe/Paris, "
        "Asia/Kolkata ...), which follows its daylight saving too"
    )
    if minutes in (None, "00") and 0 < int(hours) <= (14 if sign == "+" else 12):
        # The Etc zones name offsets with the sign reversed (POSIX): UTC+05:00 is Etc/GMT-5.
        fixed = f"Etc/GMT{'-' if sign == '+' else '+'}{int(hours)}"
        hint += f'; "{fixed}" is UTC{sign}{int(hours):02d}:00 all year'
    return hint


def typo_of(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate `name` is a typo of: an edit or two away (one for short names), not
    merely alike; stricter than `suggest`, for warnings about a name that is not wrong in
    itself (an attribute, an event) but looks like a slip for one that is used."""
    allowed = max(1, min(2, len(name) // 4))
    close = sorted((edits(name, known), known) for known in set(candidates) if known != name)
    return close[0][1] if close and close[0][0] <= allowed else None


def edits(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours that turn `a` into `b`
    (3 for anything further apart than that)."""
    if abs(len(a) - len(b)) > 2:
        return 3
    rows = [list(range(len(b) + 1))]
    for i, x in enumerate(a, start=1):
        row = [i]
        for j, y in enumerate(b, start=1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]
