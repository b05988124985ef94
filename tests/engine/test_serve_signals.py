"""`cadence serve` stops cleanly on SIGINT and SIGTERM: exit 0, nothing left claimed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cadence.engine.store import Store
from cadence.engine.store.models import Enrollment, OutboxMessage


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    url = f"sqlite:///{tmp_path / 'cadence.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env["CADENCE_DATABASE_URL"] = url
    (tmp_path / "c.cadence").write_text(
        'template t email { subject "s" body "b" }\non launch { send email t  wait 1d  exit }'
    )
    (tmp_path / "people.jsonl").write_text('{"id": "c1", "email": "c1@example.test"}\n')
    for args in (["contacts", "import", "people.jsonl"], ["run", "c.cadence", "--until-idle"]):
        done = subprocess.run(
            [sys.executable, "-m", "cadence", *args], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "cadence", "serve", "--poll", "0.2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Signal once serve is past its start-up (imports take seconds on a busy machine; a
    # signal before the engine runs is not what this tests): its first line says it runs.
    assert server.stderr is not None
    assert "no channel provider is configured" in server.stderr.readline()
    time.sleep(2)
    assert server.poll() is None, "serve should keep running until told to stop"
    server.send_signal(signum)
    out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert out.startswith("served:")
    with Store.open(url) as store, store.session() as session:
        leased = session.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.lease_owner.is_not(None))
        )
        sent = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert leased == 0 and sent == 1
