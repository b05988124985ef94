"""`cadence fmt PATH... [--check | --diff]`: rewrite Cadence files in the one canonical layout.

Files are rewritten in place only when their text changes. `--check` rewrites nothing and
lists the files that would change; `--diff` also shows how. A file with syntax errors is
reported (with the caret excerpt) and left untouched. Exit codes: 0 nothing to do or all
rewritten, 1 syntax errors or (under `--check`/`--diff`) files that would change, 2 usage.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from cadence.commands.check import render_diagnostic
from cadence.dsl.checker import expand_paths
from cadence.dsl.fmt import format_text
from cadence.dsl.parser import decode_source
from cadence.errors import CadenceSyntaxError, Diagnostic


def register(subparsers: Any) -> None:
    """Add the `fmt` subcommand."""
    parser = subparsers.add_parser(
        "fmt",
        help="rewrite .cadence files in the canonical layout",
        description=(
            "Rewrite Cadence files in the one canonical layout, keeping every comment. "
            "Folders are searched recursively for *.cadence files. Files are only "
            "written when their text changes."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a .cadence file or a folder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list the files that would change and exit 1 if there are any",
    )
    mode.add_argument(
        "--diff",
        action="store_true",
        help="like --check, and also print what would change as a unified diff",
    )
    parser.set_defaults(handler=run)


@dataclass
class Outcome:
    """What one `cadence fmt` run did, file by file."""

    changed: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    """The `fmt` handler: returns the exit code."""
    paths: list[str] = args.paths
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        for path in missing:
            print(f"cadence fmt: {path}: no such file or folder", file=sys.stderr)
        return 2
    files = expand_paths(paths)
    if not files:
        print(f"cadence fmt: no .cadence files in {', '.join(paths)}", file=sys.stderr)
        return 2
    dry_run: bool = args.check or args.diff
    out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    outcome = Outcome()
    for file in files:
        format_one(file, outcome, write=not dry_run, show_diff=args.diff, out=out, err=err)
    out.print(summary(outcome, dry_run))
    return 1 if outcome.failed or (dry_run and outcome.changed) else 0


def format_one(
    file: Path, outcome: Outcome, *, write: bool, show_diff: bool, out: Console, err: Console
) -> None:
    """Format one file, record the outcome, and say what happened to it."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _report(
            err, [Diagnostic(str(file), 1, 1, 1, 1, "error", "E001", f"cannot read file: {reason}")]
        )
        outcome.failed.append(file)
        return
    try:
        original = decode_source(data, str(file))
        formatted = format_text(original, str(file))
    except CadenceSyntaxError as exc:
        _report(err, exc.diagnostics)
        outcome.failed.append(file)
        return
    if formatted.encode("utf-8") == data:
        outcome.unchanged.append(file)
        return
    outcome.changed.append(file)
    if not write:
        out.print(f"would reformat [bold]{escape(str(file))}[/bold]")
        if show_diff:
            print_diff(out, str(file), data.decode("utf-8", errors="replace"), formatted)
        return
    try:
        write_atomically(file, formatted)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _report(
            err,
            [Diagnostic(str(file), 1, 1, 1, 1, "error", "E001", f"cannot write file: {reason}")],
        )
        outcome.changed.remove(file)
        outcome.failed.append(file)
        return
    out.print(f"reformatted [bold]{escape(str(file))}[/bold]")


def write_atomically(file: Path, text: str) -> None:
    """Replace the file's content in one step, keeping its permissions: no half-written file."""
    mode = file.stat().st_mode
    handle, temp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(text.encode("utf-8"))
        os.chmod(temp_name, mode & 0o7777)
        os.replace(temp_name, file)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def print_diff(console: Console, name: str, before: str, after: str) -> None:
    """A unified diff of the reformatting, coloured like `git diff`."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{name} (original)",
        tofile=f"{name} (formatted)",
    )
    for line in lines:
        text = line.rstrip("\n")
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        console.print(Text(text, style=style))


def summary(outcome: Outcome, dry_run: bool) -> Text:
    """`2 files reformatted, 5 files left unchanged`, green when there is nothing to do."""
    verb = "would be reformatted" if dry_run else "reformatted"
    parts = []
    if outcome.changed:
        parts.append(f"{_count(len(outcome.changed), 'file')} {verb}")
    if outcome.unchanged:
        parts.append(f"{_count(len(outcome.unchanged), 'file')} left unchanged")
    if outcome.failed:
        parts.append(f"{_count(len(outcome.failed), 'file')} with errors, not formatted")
    bad = outcome.failed or (dry_run and outcome.changed)
    return Text(", ".join(parts), style="bold red" if bad else "bold green")


def _report(console: Console, diagnostics: tuple[Diagnostic, ...] | list[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        console.print(render_diagnostic(diagnostic))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
