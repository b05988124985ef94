"""The backend switch: Rust core by default, the pure-Python fallback when forced or missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cadence


def run_python(code: str, **env: str) -> str:
    """Run code in a fresh interpreter, since the backend is decided once at import."""
    environment = {k: v for k, v in os.environ.items() if k != "CADENCE_PURE_PYTHON"}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    return done.stdout.strip()


def test_rust_core_is_the_default() -> None:
    assert run_python("from cadence import _backend; print(_backend.name)") == "rust"


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_pure_python_can_be_forced(value: str) -> None:
    out = run_python(
        "from cadence import _backend; print(_backend.name, _backend.core is None)",
        CADENCE_PURE_PYTHON=value,
    )
    assert out == "python True"


def test_zero_does_not_force_the_fallback() -> None:
    out = run_python("from cadence import _backend; print(_backend.name)", CADENCE_PURE_PYTHON="0")
    assert out == "rust"


def test_a_missing_extension_falls_back_and_says_why() -> None:
    code = (
        "import sys; sys.modules['cadence._dispatch_core'] = None\n"
        "from cadence import _backend; print(_backend.name); print(_backend.describe())"
    )
    name, description = run_python(code).splitlines()
    assert name == "python"
    assert "Rust core not importable" in description


def test_core_reports_the_crate_version() -> None:
    from cadence import _dispatch_core

    assert _dispatch_core.core_version() == _dispatch_core.__version__
    assert _dispatch_core.core_version().count(".") == 2


@pytest.mark.parametrize(
    ("env", "expected"), [({}, "backend: rust"), ({"CADENCE_PURE_PYTHON": "1"}, "backend: python")]
)
def test_version_flag_prints_version_and_backend(env: dict[str, str], expected: str) -> None:
    # Piped, at argparse's 80 columns ($COLUMNS unset): the fallback's line is longer.
    outer = {k: v for k, v in os.environ.items() if k not in ("CADENCE_PURE_PYTHON", "COLUMNS")}
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "--version"],
        capture_output=True,
        text=True,
        env=outer | env,
        check=True,
    )
    assert done.stdout.startswith(f"cadence {cadence.__version__}")
    assert expected in done.stdout
    # One line, as written: argparse wrapped it ("... (CADENCE_PURE_PYTHON\nis set)").
    assert done.stdout.count("\n") == 1 and done.stdout.endswith(")\n"), done.stdout
