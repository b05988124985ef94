"""The embedding example in docs/ runs as written and prints what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cadence

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "embedded.py"


def test_the_documented_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines() == [
        "c1 onboarding welcome",
        "c1 app_property_viewed details",
        "c1 onboarding tips",
    ]


def test_engine_and_clocks_are_importable_from_the_package() -> None:
    from cadence.engine.clock import SimulatedClock, SystemClock
    from cadence.engine.runtime import Engine

    assert cadence.Engine is Engine
    assert cadence.SimulatedClock is SimulatedClock and cadence.SystemClock is SystemClock
