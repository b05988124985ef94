"""Options several commands share, defined once so they read and default the same."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from cadence.dsl.parser import duration_seconds
from cadence.dsl.symbols import DEFAULT_CAP, CapLimit
from cadence.engine.tenants import DEFAULT_TENANT

TENANT_VARIABLE = "CADENCE_TENANT"
DEFAULT_CAP_VARIABLE = "CADENCE_DEFAULT_CAP"
# A duration as the language writes it (`30d`, `1d12h`), for command-line options.
DURATION_TEXT = re.compile(r"(?:\d+[wdhms])+")
# What follows `cap` in a campaign: `email 3 per 7d`, `5 per 1d`.
_CAP_TEXT = re.compile(rf"(?:([a-z_]+) )?(\d+) per ({DURATION_TEXT.pattern})")
_NO_CAP = ("none", "off")
# Where a bad cap came from: the option, or the variable its default is read from.
_FROM = f" (--default-cap, or ${DEFAULT_CAP_VARIABLE})"


def poll_seconds(text: str) -> float:
    """`--poll`: how long the serving loop sleeps when nothing is due; 0, a negative or
    not-a-number value would make it spin without ever sleeping."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 < seconds < math.inf):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0, got {text!r} (such as 5 or 0.5)"
        )
    return seconds


def seed_arg(text: str) -> int:
    """`--seed`: a whole number from 0. Python's generator seeds with a negative number's
    absolute value, so `-1` would silently draw what `1` draws."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 up, got {text!r}")
    return seed


def file_problem(path: Path) -> str | None:
    """Why a path a command reads as a file is not one (a folder is a usage error, exit 2,
    as a missing file is), or None when it is a file."""
    if path.is_file():
        return None
    return "is a folder, not a file" if path.is_dir() else "no such file"


def refuse_paths(command: str, paths: Iterable[Path | None]) -> int | None:
    """Name the first path given that is not a file, on stderr, and return exit code 2; None
    when every one is a file. Checked before anything is opened, so nothing is written."""
    for path in paths:
        problem = None if path is None else file_problem(path)
        if problem is not None:
            print(f"{command}: {path}: {problem}", file=sys.stderr)
            return 2
    return None


def refuse_missing_store(command: str) -> int | None:
    """Name the SQLite file the store would be when it does not exist, on stderr, with how
    to make one, and return exit code 2; None when there is a store to read.

    Opening the store creates and migrates it, so a command that only reads one (`status`,
    `report`) would leave an empty `cadence.db` behind in whatever folder it ran in.
    """
    from cadence.engine.store.database import (
        DATABASE_URL_ENV,
        DEFAULT_SQLITE_FILE,
        missing_sqlite_file,
        resolve_database_url,
    )

    missing = missing_sqlite_file(resolve_database_url(None))
    if missing is None:
        return None
    named = (
        f"${DATABASE_URL_ENV} names {missing}"
        if os.environ.get(DATABASE_URL_ENV)
        else f"no {DEFAULT_SQLITE_FILE} in {Path.cwd()} (and ${DATABASE_URL_ENV} is not set)"
    )
    print(
        f"{command}: no database: {named}, which does not exist; nothing was created."
        " Create one with `cadence deploy FILE.cadence` or `cadence run FILE.cadence`,"
        f" or run this where the store is (or set ${DATABASE_URL_ENV} to it)",
        file=sys.stderr,
    )
    return 2


def add_tenant(parser: argparse.ArgumentParser, what: str = "to work on") -> None:
    """`--tenant`: whose contacts, campaigns and sends a command touches."""
    parser.add_argument(
        "--tenant",
        default=os.environ.get(TENANT_VARIABLE) or DEFAULT_TENANT,
        help=f"tenant {what} (default ${TENANT_VARIABLE}, else {DEFAULT_TENANT!r})",
    )


def add_default_cap(parser: argparse.ArgumentParser) -> None:
    """`--default-cap`: the frequency cap of campaigns that set none on its channel."""
    parser.add_argument(
        "--default-cap",
        metavar="CAP",
        type=cap_arg,
        default=os.environ.get(DEFAULT_CAP_VARIABLE) or DEFAULT_CAP.text(),
        help=(
            "the cap of every campaign without a `cap` of its own on that channel, written as"
            f" after `cap`, or `none` (default ${DEFAULT_CAP_VARIABLE},"
            f" else {DEFAULT_CAP.text()!r}: at most 3 emails per contact per week)"
        ),
    )


def cap_arg(text: str) -> CapLimit | None:
    """`email 3 per 7d` (a `cap` setting without its keyword) as a cap; `none`: no cap."""
    value = " ".join(text.split())
    if value.lower() in _NO_CAP:
        return None
    match = _CAP_TEXT.fullmatch(value)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a cap such as 'email 3 per 7d' (CHANNEL N per DURATION) or 'none',"
            f" got {text!r}{_FROM}"
        )
    channel, count, per = match.groups()
    cap = CapLimit(channel, int(count), duration_seconds(per))
    try:
        cap.check()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}{_FROM}") from None
    return cap
