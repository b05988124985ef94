"""Options several commands share, defined once so they read and default the same."""

from __future__ import annotations

import argparse
import os

from cadence.engine.tenants import DEFAULT_TENANT

TENANT_VARIABLE = "CADENCE_TENANT"


def add_tenant(parser: argparse.ArgumentParser, what: str = "to work on") -> None:
    """`--tenant`: whose contacts, campaigns and sends a command touches."""
    parser.add_argument(
        "--tenant",
        default=os.environ.get(TENANT_VARIABLE) or DEFAULT_TENANT,
        help=f"tenant {what} (default ${TENANT_VARIABLE}, else {DEFAULT_TENANT!r})",
    )
