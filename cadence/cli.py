"""The `cadence` command line: one entry point that hands each subcommand to its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cadence import __version__, _backend

# Each module here defines `register(subparsers)`; a subcommand lives in exactly one of them.
COMMAND_MODULES: tuple[str, ...] = (
    "cadence.commands.data",
    "cadence.commands.check",
    "cadence.commands.compile",
    "cadence.commands.explain",
    "cadence.commands.fmt",
    "cadence.commands.engine",
    "cadence.commands.agents",
    "cadence.commands.templates",
    "cadence.commands.webhooks",
)


class _Version(argparse.Action):
    """`--version`: the version and the backend on one line, as written. argparse's own
    action wraps it at the terminal's width, or at 80 columns when piped."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        print(f"cadence {__version__}; {_backend.describe()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser, asking every command module to add its subcommands."""
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Campaigns as code: check, compile, simulate and run Cadence campaigns.",
    )
    parser.add_argument("--version", action=_Version, help="show program's version number and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `cadence` subcommand and return its exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
