"""`cadence check PATH...`: run the checker over files and folders, for people, editors and CI.

Each file given, or each `*.cadence` under a folder given (recursively, sorted), is checked
as its own workspace with its imports. As text, findings go to stderr with the source line
and a caret (like `cadence fmt` and `cadence compile`) and the summary line to stdout; with
`--format json` they go to stdout, one JSON object per line, for editors and CI. Exit codes:
0 no errors (warnings allowed), 1 errors (or warnings under `--strict`), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

from cadence.dsl.checker import check_workspace, expand_paths, sort_diagnostics
from cadence.dsl.loader import load
from cadence.errors import Diagnostic

SEVERITY_STYLES = {"error": "bold red", "warning": "bold yellow"}


def register(subparsers: Any) -> None:
    """Add the `check` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="check .cadence files for errors and warnings",
        description=(
            "Check Cadence files: syntax, names, structure and the warnings of "
            "docs/diagnostics.md. Folders are searched recursively for *.cadence files."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a .cadence file or a folder")
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or json: one diagnostic per line",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail (exit 1) on warnings as well as errors"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `check` handler: returns the exit code."""
    paths: list[str] = args.paths
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        for path in missing:
            print(f"cadence check: {path}: no such file or folder", file=sys.stderr)
        return 2
    files = expand_paths(paths)
    if not files:
        print(f"cadence check: no .cadence files in {', '.join(paths)}", file=sys.stderr)
        return 2
    diagnostics: list[Diagnostic] = []
    for file in files:
        diagnostics.extend(check_workspace(load([file])))
    diagnostics = sort_diagnostics(diagnostics)
    if args.format == "json":
        for diagnostic in diagnostics:
            sys.stdout.write(diagnostic.to_json() + "\n")
    else:
        out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        print_report(diagnostics, len(files), out=out, err=err)
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    return 1 if errors or (args.strict and warnings) else 0


def print_report(
    diagnostics: Sequence[Diagnostic], file_count: int, *, out: Console, err: Console
) -> None:
    """Every diagnostic with its caret excerpt on `err`, then the summary line on `out`."""
    for diagnostic in diagnostics:
        err.print(render_diagnostic(diagnostic))
        err.print()
    out.print(summary(diagnostics, file_count))


def render_diagnostic(diagnostic: Diagnostic) -> Text:
    """A diagnostic as rich text: the same layout as `Diagnostic.render()`, in colour."""
    style = SEVERITY_STYLES[diagnostic.severity]
    text = Text()
    text.append(f"{diagnostic.file}:{diagnostic.line}:{diagnostic.column}", style="bold")
    text.append(": ")
    text.append(f"{diagnostic.severity}[{diagnostic.code}]", style=style)
    text.append(f": {diagnostic.message}")
    plain = diagnostic.render().split("\n")
    # Lines after the head: the quoted source, the caret, then the hint, as render() lays them.
    for line in plain[1:]:
        text.append("\n")
        if line.strip().startswith("^"):
            text.append(line, style=style)
        elif line.lstrip().startswith("= hint:"):
            text.append(line, style="cyan")
        elif " | " in line[:8]:
            gutter, _, source = line.partition(" | ")
            text.append(gutter + " | ", style="dim")
            text.append_text(highlight(source))
        else:
            text.append(line)
    return text


def highlight(source: str) -> Text:
    """One line of Cadence, coloured by the project's Pygments lexer (plain if it is missing)."""
    syntax = Syntax("", "cadence", theme="ansi_dark", background_color="default")
    highlighted = syntax.highlight(source)
    highlighted.rstrip()
    return highlighted if highlighted.plain == source.rstrip() else Text(source)


def summary(diagnostics: Sequence[Diagnostic], file_count: int) -> Text:
    """`2 errors, 1 warning in 3 files`, green when there is nothing to fix."""
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    line = (
        f"{_count(errors, 'error')}, {_count(warnings, 'warning')} in {_count(file_count, 'file')}"
    )
    style = "bold red" if errors else "bold yellow" if warnings else "bold green"
    return Text(line, style=style)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
