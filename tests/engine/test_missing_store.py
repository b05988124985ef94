"""Commands that only read the store, or act on a deployed campaign, refuse a missing SQLite
file instead of creating an empty one (opening the store creates and migrates it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.cli import main
from cadence.engine.store import DATABASE_URL_ENV

NEEDS_A_STORE = [
    ["status"],
    ["report", "--json"],
    ["agents", "list"],
    ["launch", "greet"],
    ["approve", "greet", "--by", "ana"],
    ["clone", "greet", "greet_2"],
]


def test_a_command_that_needs_a_store_creates_none_where_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    for argv in NEEDS_A_STORE:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"cadence {argv[0]}" in err and f"no cadence.db in {tmp_path}" in err, err
        assert "cadence deploy" in err and "cadence run" in err
        assert list(tmp_path.iterdir()) == [], argv  # nothing created

    (tmp_path / "greet.cadence").write_text(
        'template hi email { subject "Hi" body "x" }\n'
        "campaign greet { on launch { send email hi } }\n",
        encoding="utf-8",
    )
    assert main(["deploy", "greet.cadence"]) == 0
    assert main(["status"]) == 0
    assert "greet" in capsys.readouterr().out


def test_the_store_the_variable_names_is_checked_the_same(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # A SQLite file the variable names that is not there is refused by its path; a
    # PostgreSQL database is the server's, and an empty one reads as no campaigns.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    code = main(["status"])
    err = capsys.readouterr().err
    if store_url.startswith("sqlite"):
        assert code == 2 and f"${DATABASE_URL_ENV} names {tmp_path / 'cadence.db'}" in err
        assert list(tmp_path.iterdir()) == []
    else:
        assert code == 0, err
