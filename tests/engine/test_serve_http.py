"""`cadence serve --http`: the HTTP service runs beside the engine and stops with it."""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

from cadence.engine.runtime import Engine, RecordingSink
from tests.engine.test_runtime import campaigns


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env["CADENCE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cadence.db'}"
    env["CADENCE_API_TOKEN"] = "cli-token"
    return env


def test_serve_with_http_answers_until_a_signal_stops_both(tmp_path: Path) -> None:
    (tmp_path / "people.jsonl").write_text('{"id": "c1", "email": "c1@example.test"}\n')
    imported = subprocess.run(
        [sys.executable, "-m", "cadence", "contacts", "import", "people.jsonl"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "cadence", "serve", "--poll", "0.2", "--http", "127.0.0.1:0"],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        address = None
        deadline = time.monotonic() + 60
        while address is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            found = re.search(r"HTTP service on (http://\S+)", line)
            address = found.group(1).rstrip(",") if found else None
        assert address is not None, "serve should say where it listens"
        assert f"dashboard at {address}/dashboard" in server.stderr.readline()
        board = httpx.get(f"{address}/dashboard", timeout=10, auth=("ops", "cli-token"))
        assert board.status_code == 200 and "default: campaigns" in board.text
        health = httpx.get(f"{address}/healthz", timeout=10)
        assert health.json() == {"status": "ok", "tenant": "default"}
        pushed = httpx.post(
            f"{address}/events", timeout=10, headers={"authorization": "Bearer cli-token"},
            json={"contact": "c1", "name": "signed_up"},
        )  # fmt: skip
        assert pushed.status_code == 202, pushed.text
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert out.startswith("served:")
    finally:
        if server.poll() is None:  # a failed assertion must not leave it serving
            server.kill()
            server.communicate(timeout=30)


def test_http_with_until_idle_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "serve", "--until-idle", "--http", "127.0.0.1:0"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--http cannot be used with --until-idle" in done.stderr


def test_an_address_serve_cannot_listen_on_is_named_without_a_traceback(tmp_path: Path) -> None:
    """`--http 127.0.0.1:99999` (or a host that does not resolve, or a port in use) ended
    in a page of nested exception groups from the HTTP server's start."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        in_use = f"127.0.0.1:{taken.getsockname()[1]}"
        for bind in ("127.0.0.1:99999", "no-such-host.invalid:8080", in_use):
            done = subprocess.run(
                [sys.executable, "-m", "cadence", "serve", "--http", bind],
                cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 1, (bind, done.stderr)
            assert f"cadence: --http {bind}: cannot listen there:" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
    finally:
        taken.close()


def test_a_poll_that_is_not_a_positive_number_of_seconds_is_refused(tmp_path: Path) -> None:
    """`--poll -1` and `--poll 0` looped without ever sleeping (a core at 100%), and
    `--poll nan` ended in a traceback; each is a usage error now, for serve and run."""
    (tmp_path / "x.cadence").write_text('template t email { subject "s" body "b" }\n')
    for command in (["serve"], ["run", "x.cadence"]):
        for poll in ("-1", "0", "nan", "inf"):
            done = subprocess.run(
                [sys.executable, "-m", "cadence", *command, "--poll", poll],
                cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2, (command, poll, done.stderr)
            assert f"argument --poll: expected a number of seconds above 0, got {poll!r}" in (
                done.stderr
            )
    assert not (tmp_path / "cadence.db").exists()  # refused before the store is opened


def test_a_bad_public_url_stops_serve_with_its_name(tmp_path: Path) -> None:
    env = _env(tmp_path) | {
        "CADENCE_PUBLIC_URL": "links.example",
        "CADENCE_SMTP_URL": "smtp://127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cadence", "serve", "--until-idle"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "CADENCE_PUBLIC_URL" in done.stderr and "http(s)://" in done.stderr


def test_an_event_wakes_the_serving_engine_without_waiting_for_its_poll(store_url: str) -> None:
    """`wait for clicked(...)` resumes as the click arrives, not at the next look (60 s here)."""
    source = """
    template first email { subject "First" body "x" }
    template second email { subject "Second" body "x" }
    campaign nudge {
      channels email
      on launch { send email first  wait for clicked(first) up to 1d  send email second }
    }
    """

    async def main() -> list[str | None]:
        sink = RecordingSink()
        async with Engine(store_url, sink=sink) as engine, trio.open_nursery() as nursery:
            await engine.upsert_contacts([{"id": "c1", "email": "c1@example.test"}])
            await engine.deploy(campaigns(source))
            await engine.launch("nudge")
            await nursery.start(functools.partial(engine.serve, poll=60))
            with trio.fail_after(20):
                while len(sink.delivered) < 1:
                    await trio.sleep(0.02)
            await engine.push_event(
                {"contact": "c1", "name": "clicked", "properties": {"template": "first"}}
            )
            # Far less than the 60 s poll: only the nudge can have woken the loop.
            with trio.fail_after(20):
                while len(sink.delivered) < 2:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        return [m.template for m in sink.delivered]

    assert trio.run(main) == ["first", "second"]
