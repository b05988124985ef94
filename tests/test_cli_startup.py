"""`cadence --help` and `cadence check` start without loading the store or the adapters.

The engine's store (SQLAlchemy), Trio and the provider adapters (httpx) took about half a
second to import; the command modules imported them when the parser was built, so every
command paid for them, including those that never touch a database.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sqlalchemy", "trio", "httpx", "cadence.engine.store", "cadence.adapters.outbound")


def test_building_the_parser_loads_no_store_trio_or_adapters() -> None:
    script = (
        "import json, sys\n"
        "from cadence.cli import build_parser\n"
        "build_parser()\n"
        f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


def test_help_still_shows_the_default_tenant() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "contacts", "import", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # argparse wraps the help text: compare it with its line breaks folded to spaces.
    assert "(default $CADENCE_TENANT, else 'default')" in " ".join(done.stdout.split())
