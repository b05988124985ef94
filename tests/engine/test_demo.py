"""`cadence demo` from the repository root: the examples run and their sends reach the stand-ins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"^demo: (\d+) sends delivered \(brevo: (\d+), infobip: (\d+)\), (\d+) webhooks, (\d+) failed$",
    re.MULTILINE,
)


def test_demo_sends_for_real_to_the_loopback_standins(tmp_path: Path) -> None:
    # No provider configuration at all: the demo must not need (or use) any.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env["COLUMNS"] = "200"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "demo", "--days", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-2000:]
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout[-2000:]
    delivered, brevo, infobip, _webhooks, _failed = map(int, found.groups())
    # Every delivered send reached a stand-in exactly once: emails at Brevo, SMS and
    # WhatsApp at Infobip (which counts a double send twice).
    assert delivered > 0 and brevo > 0
    assert delivered == brevo + infobip
    # The report and the stand-ins' table are printed.
    for heading in ("Timeline", "Funnel", "Totals", "What the stand-ins received"):
        assert heading in done.stdout
    assert "{{" not in done.stdout  # what the stand-ins got was rendered
    # The live board is progress: on stderr, so the piped report starts with its timeline
    # (its last caption ran into the timeline's title on one line of stdout).
    assert "cadence demo · simulated" in done.stderr
    assert "cadence demo · simulated" not in done.stdout and "steps run" not in done.stdout
    assert done.stdout.split("\n", 1)[0].strip() == "Timeline (first 40 sends)"
    # It runs nowhere near real time (5 simulated days).
    assert took < 60


def test_demo_sends_to_the_standins_even_where_a_provider_is_configured(tmp_path: Path) -> None:
    """docs/channels.md said the demo uses the stand-ins "when no provider is configured";
    it uses them always, so a machine set up for real sends sends nothing real from it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    # A real provider's settings, pointing where nothing answers: used, every send fails.
    env |= {
        "COLUMNS": "200",
        "CADENCE_EMAIL_PROVIDER": "brevo",
        "CADENCE_BREVO_API_KEY": "k",
        "CADENCE_BREVO_BASE_URL": "http://127.0.0.1:9",
        "CADENCE_SMTP_URL": "smtp://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "demo", "--days", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout[-2000:]
    delivered, brevo, _infobip, _webhooks, failed = map(int, found.groups())
    assert delivered > 0 and brevo > 0 and failed == 0


HELLO = """\
template hello email {
  subject "Hello {{ contact.first_name | default('there') }} from {{ company.name }}"
  body "<p>Hi</p>"
}

template hello_sms sms "Hi {{ contact.first_name | default('there') }}, this is {{ company.name }}."

campaign hello "Hello" {
  from "A <a@example.test>"
  channels email, sms
  on contact_created {
    send email hello
    notify webhook "https://hooks.example.test/crm/new"
    wait 1h
    send sms hello_sms
  }
}
"""


def test_every_channel_reaches_its_standin_once(tmp_path: Path) -> None:
    (tmp_path / "hello.cadence").write_text(HELLO, encoding="utf-8")
    rows = [
        {"id": name.lower(), "email": f"{name.lower()}@example.test", "first_name": name,
         "phone": f"+1555000000{n}", "timezone": "UTC", "attributes": {"sms_opt_in": True}}
        for n, name in enumerate(("Ana", "Ben"), start=1)
    ]  # fmt: skip
    (tmp_path / "contacts.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
    )
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "demo", "--examples", str(tmp_path), "--days", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demo: 4 sends delivered (brevo: 2, infobip: 2), 2 webhooks, 0 failed" in done.stdout
    # The webhook went to the loopback receiver, same path, signature accepted.
    assert "/crm/new" in done.stdout
    assert "Hi Ben, this is Acme." in done.stdout or "Hi Ana, this is Acme." in done.stdout


def test_demo_outside_the_repository_says_where_to_run_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "demo", "--days", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "repository root" in done.stderr


def test_demo_days_are_between_one_and_ten_years() -> None:
    # --days 99999999999 ended in a page of exception groups (an OverflowError).
    for days, message in (("0", "at least 1"), ("3661", "at most 3660 (ten years)"),
                          ("99999999999", "at most 3660 (ten years)")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "cadence", "demo", "--days", days],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr[-500:]
        assert done.stderr.strip() == f"cadence demo: --days must be {message}", days
