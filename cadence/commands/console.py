"""The console the CLI prints its tables on, wide enough when the output is not a terminal."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

# Rich lays tables out at 80 columns when the output is a file or a pipe, and cuts what
# does not fit ("97…"): numbers in a report saved to a file or read by a script. Piped,
# the tables get this width instead (still narrower where they need less).
PIPED_WIDTH = 240


def table_console(**options: Any) -> Console:
    """A rich console: a terminal's own width, or `PIPED_WIDTH` when printing elsewhere
    (unless $COLUMNS says otherwise), so no cell of a table is cut short."""
    console = Console(**options)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPED_WIDTH
    return console
