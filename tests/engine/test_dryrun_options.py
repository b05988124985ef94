"""`cadence dry-run`'s options and paths as a user gets them wrong: exit 2, a message naming
the option or path, nothing on stdout (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from cadence.cli import main
from cadence.engine.store import Store
from cadence.engine.store.models import Campaign

CAMPAIGN = """\
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign greet "Greet" { on launch { send email hello } }
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A campaign, a contacts file and a folder, in a scratch folder."""
    source = tmp_path / "greet.cadence"
    source.write_text(CAMPAIGN, "utf-8")
    contacts = tmp_path / "people.jsonl"
    contacts.write_text('{"id": "c1", "email": "c1@example.test"}\n', "utf-8")
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    return {"source": source, "contacts": contacts, "folder": folder}


@pytest.mark.parametrize("where", ["file", "--contacts", "--events", "--schema"])
def test_a_folder_where_a_file_is_needed_is_a_usage_error(
    files: dict[str, Path], where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md: a path that is a folder where a file is needed exits 2, as a missing
    file does; the file, `--contacts` and `--events` exited 1 on a folder."""
    paths = {"file": files["source"], "--contacts": files["contacts"]}
    paths[where] = files["folder"]
    args = ["dry-run", str(paths["file"]), "--contacts", str(paths["--contacts"]), "--json"]
    if where in ("--events", "--schema"):
        args += [where, str(files["folder"])]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{files['folder']}: is a folder, not a file" in err


@pytest.mark.parametrize("command", ["dry-run", "demo"])
@pytest.mark.parametrize("seed", ["-1", "x", "1.5"])
def test_a_seed_below_0_or_not_a_whole_number_is_refused(
    files: dict[str, Path], command: str, seed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--seed -1` ran, drawing exactly what `--seed 1` draws (Python seeds with the
    absolute value), so two seeds a user took for different runs were the same run."""
    args = [command, "--seed", seed]
    if command == "dry-run":
        args += [str(files["source"]), "--contacts", str(files["contacts"]), "--json"]
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert refused.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"argument --seed: expected a whole number from 0 up, got '{seed}'" in err


@pytest.mark.parametrize(
    ("option", "message"),
    [("--start", "--start: '' is not an ISO-8601"), ("--assume", "--assume: expected NAME=RATE")],
)
def test_an_empty_start_or_assume_is_refused_not_taken_as_none_given(
    files: dict[str, Path], option: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--start "$START"` with the variable unset ran from now, and `--assume ""` assumed
    nothing, while `--start " "`, `--assume " "` and every other empty option were refused."""
    args = ["dry-run", str(files["source"]), "--contacts", str(files["contacts"]), "--json"]
    assert main([*args, option, ""]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


@pytest.mark.parametrize("command", [["deploy"], ["run", "--until-idle"]])
def test_deploy_and_run_refuse_a_missing_file_or_a_folder_and_write_nothing(
    store: Store,
    store_url: str,
    files: dict[str, Path],
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing file or a folder is a usage error (exit 2, docs/cli.md), as for compile and
    dry-run; deploy and run exited 1 with `cannot read file`, as if the file had errors. The
    good file given with it is not deployed."""
    monkeypatch.setenv("CADENCE_DATABASE_URL", store_url)
    for bad, problem in ((files["folder"], "is a folder, not a file"),
                         (files["source"].with_name("nope.cadence"), "no such file")):  # fmt: skip
        assert main([*command, str(files["source"]), str(bad)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert f"cadence {command[0]}: {bad}: {problem}" in err
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(Campaign)).scalar() == 0
