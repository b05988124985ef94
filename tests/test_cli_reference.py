"""docs/cli.md gives each command's `--help`: its usage, options and description must be
the parser's own, so a reader of the page and a user of `--help` learn the same thing."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cadence.cli import build_parser

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
# Every fenced block that starts with a usage line is a command's help, as the page says.
BLOCKS = re.findall(r"```\n(usage: cadence .*?)```", CLI_MD.read_text("utf-8"), re.S)


def _command(usage: str) -> tuple[list[str], argparse.ArgumentParser]:
    """The command a usage line is for (`contacts import`), and its parser."""
    parser = build_parser()
    path: list[str] = []
    for word in usage.split()[2:]:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands or word not in commands[0].choices:
            break
        parser = commands[0].choices[word]
        path.append(word)
    return path, parser


def _bare(text: str) -> str:
    """Text without its whitespace: the page and argparse wrap lines in different places."""
    return "".join(text.split())


@pytest.mark.parametrize("block", BLOCKS, ids=[" ".join(b.split()[1:3]) for b in BLOCKS])
def test_the_help_on_the_page_is_the_commands_own(block: str) -> None:
    usage, _, rest = block.partition("\n\n")
    path, parser = _command(usage)
    assert _bare(usage) == _bare(parser.format_usage()), path
    documented = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", block)) - {"-h", "--help"}
    options = {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}
    assert documented == options, path
    # The description, when the page gives one (the paragraph under the usage, before the
    # arguments), is the parser's: the page must not promise what `--help` leaves out.
    described = rest.split("\n\n")[0]
    if parser.description and not described.lstrip().startswith("-"):
        assert _bare(described) == _bare(parser.description), path


def test_the_page_gives_the_help_of_the_commands_it_names() -> None:
    names = {" ".join(_command(block.partition("\n\n")[0])[0]) for block in BLOCKS}
    assert {"", "approve", "contacts import", "dry-run", "events push", "report"} <= names
