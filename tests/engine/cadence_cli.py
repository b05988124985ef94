"""Run the `cadence` command line in a subprocess, as a user would, against a given store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cadence(
    *args: str,
    store_url: str | None = None,
    cwd: Path | None = None,
    columns: int | None = 250,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m cadence ARGS` with `CADENCE_DATABASE_URL` set to `store_url` (when given),
    a terminal `columns` wide, so rich tables do not wrap (None: $COLUMNS unset, as in a
    plain pipe), and `env` added to the environment; output captured as text."""
    env = {**os.environ, "COLUMNS": str(columns), **(env or {})}
    if columns is None:
        env.pop("COLUMNS")
    if store_url is not None:
        env["CADENCE_DATABASE_URL"] = store_url
    return subprocess.run(
        [sys.executable, "-m", "cadence", *args],
        capture_output=True, text=True, env=env, cwd=cwd,
    )  # fmt: skip
