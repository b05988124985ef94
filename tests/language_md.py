"""The examples of LANGUAGE.md, which must all parse, check and compile as written.

LANGUAGE.md lives in the steering repository beside this one (../shared/); a copy is kept in
tests/fixtures so the suite runs from any clone, and a test holds the copy equal to the
original whenever the original is there.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_LANGUAGE_MD = REPO.parent / "shared" / "LANGUAGE.md"
LANGUAGE_MD_COPY = REPO / "tests" / "fixtures" / "LANGUAGE.md"

STEP_WORDS = frozenset(
    {"send", "wait", "if", "split", "set", "tag", "assign", "notify", "enroll", "exit"}
)


def language_md_text() -> str:
    """The sketch's text: the original when present, else the copy."""
    path = SHARED_LANGUAGE_MD if SHARED_LANGUAGE_MD.is_file() else LANGUAGE_MD_COPY
    return path.read_text("utf-8")


def language_blocks() -> list[str]:
    """The fenced code blocks of LANGUAGE.md, exactly as written there."""
    return re.findall(r"```\n(.*?)```", language_md_text(), flags=re.S)


def as_program(block: str) -> str:
    """The Steps section shows a bare list of steps; steps only live inside a trigger."""
    first = block.lstrip().split(None, 1)[0]
    return f"on launch {{\n{block}\n}}\n" if first in STEP_WORDS else block
