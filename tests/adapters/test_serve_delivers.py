"""`cadence run` sends through the configured providers: a real SMTP server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.adapters.test_smtp import Inbox

SOURCE = """
template hello email { subject "Hello {{ contact.first_name }}" body "<p>Hi</p>" }
campaign hello_all { from "Acme <hello@acme.test>"  on launch { send email hello } }
"""


def cli_env(store_url: str, **variables: str) -> dict[str, str]:
    """This process's environment without any CADENCE_ setting, on `store_url`, plus
    `variables`: what a user's shell holds after exporting only those."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    return env | {"CADENCE_DATABASE_URL": store_url, **variables}


def cadence(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cadence", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_run_until_idle_delivers_through_smtp(
    tmp_path: Path,
    inbox: tuple[Inbox, int],
) -> None:
    handler, port = inbox
    (tmp_path / "hello.cadence").write_text(SOURCE)
    (tmp_path / "people.jsonl").write_text(
        '{"id": "c1", "email": "ana@example.test", "first_name": "Ana"}\n'
        '{"id": "c2", "email": "ben@example.test", "first_name": "Ben"}\n'
    )
    env = cli_env(
        f"sqlite:///{tmp_path / 'cadence.db'}", CADENCE_SMTP_URL=f"smtp+plain://127.0.0.1:{port}"
    )
    imported = cadence("contacts", "import", "people.jsonl", env=env, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    ran = cadence("run", "hello.cadence", "--until-idle", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "2 delivered" in ran.stdout
    received = sorted((m["To"], m["Subject"]) for _, m in handler.messages)
    assert received == [
        ("Ana <ana@example.test>", "Hello Ana"),
        ("Ben <ben@example.test>", "Hello Ben"),
    ]
    again = cadence("serve", "--until-idle", env=env, cwd=tmp_path)
    assert again.returncode == 0 and len(handler.messages) == 2


def test_without_a_provider_sends_are_recorded_and_it_says_so(
    tmp_path: Path, store_url: str
) -> None:
    """The closing line said `1 delivered` right under the warning that sends are recorded,
    not delivered: it now says they were recorded."""
    (tmp_path / "hello.cadence").write_text(SOURCE)
    (tmp_path / "people.jsonl").write_text('{"id": "c1", "email": "ana@example.test"}\n')
    env = cli_env(store_url)
    assert cadence("contacts", "import", "people.jsonl", env=env, cwd=tmp_path).returncode == 0
    ran = cadence("run", "hello.cadence", "--until-idle", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "no channel provider is configured" in ran.stderr
    assert ran.stdout.splitlines()[-1] == (
        "ran: 1 steps, 1 sends, 1 recorded, not delivered (no channel provider is configured)"
    )
    served = cadence("serve", "--until-idle", env=env, cwd=tmp_path)
    assert served.stdout.splitlines()[-1] == (
        "served: 0 steps, 0 sends, 0 recorded, not delivered (no channel provider is configured)"
    )


def test_run_warns_when_emails_have_no_sender_and_sends_the_rest(
    tmp_path: Path, inbox: tuple[Inbox, int], store_url: str
) -> None:
    """A campaign written without `from`, run where CADENCE_FROM is not set: the SMTP
    adapter refuses every email, and `run` said only `0 delivered`. It names the campaigns
    first; a campaign with a `from` still sends. Its closing line counts the failed sends,
    as `cadence report` does: it counted only the delivered one."""
    handler, port = inbox
    (tmp_path / "hello.cadence").write_text(
        SOURCE
        + 'template news email { subject "News" body "<p>n</p>" }\n'
        + "campaign newsletter { on launch { send email news } }\n"
        + "campaign digest { on launch { send email news } }\n"
    )
    (tmp_path / "people.jsonl").write_text(
        '{"id": "c1", "email": "ana@example.test", "first_name": "Ana"}\n'
    )
    env = cli_env(store_url, CADENCE_SMTP_URL=f"smtp+plain://127.0.0.1:{port}")
    assert cadence("contacts", "import", "people.jsonl", env=env, cwd=tmp_path).returncode == 0
    ran = cadence("run", "hello.cadence", "--until-idle", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (
        "cadence run: digest, newsletter: send email without a `from`, and CADENCE_FROM is not"
        " set: those emails will fail"
    ) in ran.stderr
    assert [m["Subject"] for _, m in handler.messages] == ["Hello Ana"]
    assert ran.stdout.splitlines()[-1] == (
        "ran: 3 steps, 3 sends, 1 delivered, 2 failed (`cadence report` says why)"
    )
    reported = cadence("report", "--json", env=env, cwd=tmp_path)
    failed = [json.loads(line)["failed"] for line in reported.stdout.splitlines()]
    assert sum(sum(counts.values()) for counts in failed) == 2


def test_run_says_nothing_about_senders_when_cadence_from_is_set(
    tmp_path: Path, inbox: tuple[Inbox, int], store_url: str
) -> None:
    handler, port = inbox
    (tmp_path / "news.cadence").write_text(
        'template news email { subject "News" body "<p>n</p>" }\n'
        "campaign newsletter { on launch { send email news } }\n"
    )
    (tmp_path / "people.jsonl").write_text('{"id": "c1", "email": "ana@example.test"}\n')
    env = cli_env(
        store_url,
        CADENCE_SMTP_URL=f"smtp+plain://127.0.0.1:{port}",
        CADENCE_FROM="Acme <hello@acme.test>",
    )
    assert cadence("contacts", "import", "people.jsonl", env=env, cwd=tmp_path).returncode == 0
    ran = cadence("run", "news.cadence", "--until-idle", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "without a `from`" not in ran.stderr
    assert [m["Subject"] for _, m in handler.messages] == ["News"]


def test_a_live_send_gets_the_company_the_dry_run_renders(
    tmp_path: Path, inbox: tuple[Inbox, int], store_url: str
) -> None:
    """`{{ company.name }}`, as LANGUAGE.md's welcome writes it: the dry-run renders the
    tenant's name, but live sends were given only the tenant's id, so every one failed with
    "is undefined" while the dry-run had shown it going out."""
    handler, port = inbox
    (tmp_path / "welcome.cadence").write_text(
        'template welcome email { subject "Welcome to {{ company.name }}" body "<p>Hi</p>" }\n'
        'campaign greet { from "Acme <hello@acme.test>"  on launch { send email welcome } }\n'
    )
    (tmp_path / "people.jsonl").write_text('{"id": "c1", "email": "ana@example.test"}\n')
    env = cli_env(store_url, COLUMNS="250")  # the subject's cell is not wrapped
    assert cadence("contacts", "import", "people.jsonl", env=env, cwd=tmp_path).returncode == 0
    shown = cadence(
        "dry-run", "welcome.cadence", "--contacts", "people.jsonl", "--contact", "c1",
        "--until", "1h", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0 and "Welcome to default" in shown.stdout, shown.stderr
    env["CADENCE_SMTP_URL"] = f"smtp+plain://127.0.0.1:{port}"
    ran = cadence("run", "welcome.cadence", "--until-idle", env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "1 delivered" in ran.stdout, ran.stdout
    assert [m["Subject"] for _, m in handler.messages] == ["Welcome to default"]
