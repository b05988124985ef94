"""`cadence compile FILE [-o OUT.json]`: the step graphs the engine will run, as one JSON bundle.

The bundle is `{"format_version", "source", "campaigns": [...]}` with every campaign the file
and its imports declare (docs/compiled-format.md). It goes to stdout, or to OUT with `-o`.
A file with errors is not compiled: the diagnostics go to stderr and the exit code is 1.
Warnings go to stderr too and do not stop the compile. Exit 2 is for usage mistakes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from cadence.commands.check import render_diagnostic, summary
from cadence.dsl.compiler import check_and_compile, make_bundle
from cadence.errors import DiagnosticError


def register(subparsers: Any) -> None:
    """Add the `compile` subcommand."""
    parser = subparsers.add_parser(
        "compile",
        help="compile a .cadence file to the JSON step graphs the engine runs",
        description=(
            "Check and compile one Cadence file (with its imports) into a JSON bundle of "
            "compiled campaigns; each campaign's `version` is the sha256 of its content."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="the .cadence file to compile")
    parser.add_argument(
        "-o", "--output", metavar="OUT.json", help="write the bundle here instead of stdout"
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="canonical JSON on one line (sorted keys, no spaces) instead of indented",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `compile` handler: returns the exit code."""
    errors = Console(file=sys.stderr, highlight=False)
    source = Path(args.file)
    if not source.exists():
        errors.print(f"cadence compile: {source}: no such file", markup=False)
        return 2
    if source.is_dir():
        errors.print(f"cadence compile: {source} is a folder; give one .cadence file", markup=False)
        return 2
    try:
        result = check_and_compile([source])
    except DiagnosticError as exc:
        for diagnostic in exc.diagnostics:
            errors.print(render_diagnostic(diagnostic))
            errors.print()
        errors.print(summary(exc.diagnostics, 1))
        return 1
    for warning in result.warnings:
        errors.print(render_diagnostic(warning))
        errors.print()
    bundle = make_bundle(source, result.campaigns)
    text = bundle.to_json(indent=None if args.compact else 2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        _write_atomically(Path(args.output), text)
    except OSError as exc:
        errors.print(f"cadence compile: cannot write {args.output}: {exc.strerror}", markup=False)
        return 1
    count = len(result.campaigns)
    errors.print(
        f"compiled {count} campaign{'s' if count != 1 else ''} from {source} to {args.output}",
        style="bold green",
        markup=False,
        soft_wrap=True,
    )
    return 0


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a bundle."""
    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
