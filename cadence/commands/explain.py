"""`cadence explain FILE` and `cadence graph FILE -o OUT`: campaigns told in words and drawn.

`explain` reads the syntax tree, so a file with only warnings is still explained; a file with
errors gets its diagnostics on stderr and exit 1. `graph` draws the compiled step graph with
Graphviz: `.dot` writes the DOT text, `.svg` and `.png` run the `dot` program. Exit 2 is for
usage mistakes (an output extension Graphviz is not asked for, an unknown campaign).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from cadence.commands.check import render_diagnostic, summary
from cadence.commands.options import refuse_paths
from cadence.dsl.checker import check_workspace
from cadence.dsl.compiler import check_and_compile
from cadence.dsl.explain import Line, explain_lines
from cadence.dsl.graph import FORMATS, output_format, render, to_dot
from cadence.dsl.loader import load
from cadence.errors import CadenceError, Diagnostic, DiagnosticError, did_you_mean


def register(subparsers: Any) -> None:
    """Add the `explain` and `graph` subcommands."""
    explain = subparsers.add_parser(
        "explain",
        help="say in plain English what each campaign of a file does, step by step",
        description=(
            "Explain every campaign a .cadence file declares: who enters, the audience, "
            "exclusions, goal and settings, then numbered steps with the day each send "
            "happens, counted from entry. Files with errors are not explained (exit 1)."
        ),
    )
    explain.add_argument("files", nargs="+", metavar="FILE", help="the .cadence file(s)")
    explain.set_defaults(handler=run_explain)

    graph = subparsers.add_parser(
        "graph",
        help="draw a file's step graphs with Graphviz (.svg, .png or .dot)",
        description=(
            "Compile a .cadence file and draw each campaign's step graph: triggers on top, "
            "sends, waits, branches with their conditions, split shares and exits. .svg and "
            ".png need Graphviz's `dot` program; .dot writes the DOT text itself."
        ),
    )
    graph.add_argument("file", metavar="FILE", help="the .cadence file to draw")
    graph.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to draw: OUT.svg, OUT.png or OUT.dot (the extension picks the format)",
    )
    graph.add_argument(
        "--campaign",
        action="append",
        metavar="NAME",
        help="draw only this campaign (repeat for several; default: every campaign of FILE)",
    )
    graph.set_defaults(handler=run_graph)


def _print_diagnostics(console: Console, diagnostics: Sequence[Diagnostic], files: int) -> None:
    for diagnostic in diagnostics:
        console.print(render_diagnostic(diagnostic))
        console.print()
    console.print(summary(diagnostics, files))


def run_explain(args: argparse.Namespace) -> int:
    """The `explain` handler: the explanation on stdout, diagnostics on stderr."""
    errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    # A missing file is a usage error (exit 2), as for `check`, `compile` and `graph`.
    refused = refuse_paths("cadence explain", [Path(name) for name in args.files])
    if refused is not None:
        return refused
    workspace = load(args.files)
    diagnostics = check_workspace(workspace)
    if any(d.severity == "error" for d in diagnostics):
        _print_diagnostics(errors, diagnostics, len(args.files))
        return 1
    for warning in diagnostics:
        errors.print(render_diagnostic(warning))
        errors.print()
    print_explanation(explain_lines(workspace), Console(highlight=False))
    return 0


def print_explanation(lines: Sequence[Line], console: Console) -> None:
    """Styled and wrapped under its indent on a terminal; exactly the plain text when piped."""
    if not console.is_terminal:
        console.file.write("\n".join(line.plain() for line in lines) + "\n")
        return
    for line in lines:
        number = re.match(r"\d+\. ", line.text)
        text = Text(line.text[number.end() :] if number else line.text)
        if line.kind == "title":
            text.stylize("bold magenta")
        elif line.kind == "heading":
            text.stylize("bold")
        else:
            text.highlight_regex(r"\[day [^\]]*\]", "cyan")
        if number is None:
            console.print(Padding(text, (0, 0, 0, line.indent)))
            continue
        # A numbered step wraps under its own text, not under its number.
        grid = Table.grid()
        grid.add_column(width=len(number.group()), no_wrap=True)
        grid.add_column()
        grid.add_row(Text(number.group(), style="bold"), text)
        console.print(Padding(grid, (0, 0, 0, line.indent)))


def run_graph(args: argparse.Namespace) -> int:
    """The `graph` handler: writes OUT, reports what it drew on stderr."""
    errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    fmt = output_format(args.output)
    if fmt is None:
        extensions = ", ".join(sorted(FORMATS))
        errors.print(
            f"cadence graph: cannot tell the format of {args.output!r}; "
            f"end it with one of {extensions}",
            markup=False,
        )
        return 2
    source = Path(args.file)
    if not source.is_file():
        what = "is a folder; give one .cadence file" if source.is_dir() else "no such file"
        errors.print(f"cadence graph: {source}: {what}", markup=False)
        return 2
    try:
        result = check_and_compile([source])
    except DiagnosticError as exc:
        _print_diagnostics(errors, exc.diagnostics, 1)
        return 1
    for warning in result.warnings:
        errors.print(render_diagnostic(warning))
        errors.print()
    campaigns = result.campaigns
    if args.campaign:
        known = {campaign.name for campaign in campaigns}
        for name in args.campaign:
            if name not in known:
                hint = did_you_mean(name, known)
                listed = ", ".join(sorted(known)) or "none"
                errors.print(
                    f"cadence graph: {source} has no campaign {name!r}"
                    + (f"; {hint}" if hint else f" (campaigns: {listed})"),
                    markup=False,
                )
                return 2
        campaigns = [c for c in campaigns if c.name in args.campaign]
    else:
        # Campaigns that only come in through an import are drawn when asked for by name.
        own = source.name
        campaigns = [c for c in campaigns if c.source == own] or campaigns
    try:
        Path(args.output).write_bytes(render(to_dot(campaigns), fmt))
    except CadenceError as exc:
        errors.print(f"cadence graph: {exc}", markup=False)
        return 1
    except OSError as exc:
        errors.print(f"cadence graph: cannot write {args.output}: {exc.strerror}", markup=False)
        return 1
    nodes = sum(len(c.nodes) for c in campaigns)
    count = len(campaigns)
    errors.print(
        f"drew {count} campaign{'s' if count != 1 else ''} ({nodes} steps) to {args.output}",
        markup=False,
    )
    return 0
