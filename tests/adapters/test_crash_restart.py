"""No send lost, none duplicated, across a kill -9 and a restart (DESIGN.md's invariant).

A real `cadence run` process delivers a campaign to the Brevo stand-in on loopback, which
takes each email and then answers slowly; the process is killed with SIGKILL in the middle.
A new `cadence serve` on the same store takes the work over: enrollments the dead process
was stepping were rolled back with its transaction, and sends it had leased come back once
their lease runs out (the test moves the lease's end into the past rather than waiting the
five minutes). Brevo must have received every email exactly once, on both stores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from sqlalchemy import func, select, update

from cadence.adapters.standins import Standins, start_standins
from cadence.engine.store import Store
from cadence.engine.store.models import Enrollment, OutboxMessage

SOURCES = {
    "email": """
template hello email { subject "Hello {{ contact.first_name }}" body "<p>Hi</p>" }
template again email { subject "Again {{ contact.first_name }}" body "<p>Hi again</p>" }
campaign twice { from "Acme <hello@acme.test>"  on launch { send email hello  send email again } }
""",
    "sms": """
template hello sms "Hello {{ contact.first_name }}"
template again sms "Again {{ contact.first_name }}"
campaign twice { on launch { send sms hello  send sms again } }
""",
}
ONCE = """
template hello email { subject "Hello {{ contact.first_name }}" body "<p>Hi</p>" }
campaign once { from "Acme <hello@acme.test>"  on launch { send email hello } }
"""
PEOPLE = 1200  # more than one step batch (500): some are never stepped before the kill
CADENCE = [sys.executable, "-m", "cadence"]
KILL_AFTER = 40  # emails Brevo has taken when the process is killed


def _expire_leases(store_url: str) -> int:
    """As if the dead process's leases had run out: its sends may be taken over."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with Store.open(store_url) as store, store.session() as session:
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.lease_owner.is_not(None))
            .values(lease_expires_at=past)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _store_story(store_url: str) -> tuple[dict[str, int], dict[str, int]]:
    with Store.open(store_url) as store, store.session() as session:
        outbox = session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
        enrollments = session.execute(
            select(Enrollment.status, func.count()).group_by(Enrollment.status)
        ).all()
    return dict(outbox), dict(enrollments)  # type: ignore[arg-type]


async def _import_and_run(
    standins: Standins, store_url: str, tmp_path: Path, *run: str
) -> tuple[trio.Process, dict[str, str]]:
    """Import people.jsonl into the store, then start `cadence run RUN... --approved-by ops`
    sending to the stand-ins; the process (its stderr in run.err) and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env |= standins.environment() | {"CADENCE_DATABASE_URL": store_url}
    await trio.run_process(
        [*CADENCE, "contacts", "import", "people.jsonl"], env=env, cwd=tmp_path,
        capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    process = await trio.lowlevel.open_process(
        [*CADENCE, "run", *run, "--approved-by", "ops"], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "run.err").open("wb"),
    )  # fmt: skip
    return process, env


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_killed_engine_s_work_is_finished_once_by_the_next(
    store_url: str, tmp_path: Path, channel: str
) -> None:
    (tmp_path / "twice.cadence").write_text(SOURCES[channel], "utf-8")
    with (tmp_path / "people.jsonl").open("w", encoding="utf-8") as out:
        for i in range(PEOPLE):
            out.write(json.dumps({"id": f"p{i:03}", "email": f"p{i:03}@example.test",
                                  "phone": f"+1555{i:07}", "first_name": f"P{i}",
                                  "sms_opt_in": True}) + "\n")  # fmt: skip

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            standins = await start_standins(nursery)
            provider = standins.brevo if channel == "email" else standins.infobip
            # Each message is taken at once and answered after a while: a kill lands between
            # the provider taking it and the engine recording it, the unknown-outcome case.
            provider.faults.add("slow", times=10 * PEOPLE, delay=0.02)
            taken = (
                standins.brevo.emails.__len__
                if channel == "email"
                else standins.infobip.messages.__len__
            )
            process, env = await _import_and_run(
                standins, store_url, tmp_path, "twice.cadence", "--until-idle"
            )
            with trio.fail_after(120):
                while taken() < KILL_AFTER and process.poll() is None:
                    await trio.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            at_kill = taken()
            assert process.returncode == -signal.SIGKILL, (tmp_path / "run.err").read_text()
            assert KILL_AFTER <= at_kill < 2 * PEOPLE, at_kill

            provider.faults.clear()
            await trio.to_thread.run_sync(_expire_leases, store_url)
            await trio.run_process(
                [*CADENCE, "serve", "--until-idle"], env=env, cwd=tmp_path,
                capture_stdout=True, capture_stderr=True,
            )  # fmt: skip
            nursery.cancel_scope.cancel()

        if channel == "email":
            received = sorted((email.to, email.subject) for email in standins.brevo.emails)
            to = "p{i:03}@example.test"
        else:
            received = sorted((m.to, m.text) for m in standins.infobip.messages)
            to = "1555{i:07}"
        expected = sorted(
            (to.format(i=i), f"{word} P{i}") for i in range(PEOPLE) for word in ("Hello", "Again")
        )
        assert received == expected  # every email once: none lost, none twice

    trio.run(main)
    outbox, enrollments = _store_story(store_url)
    assert outbox == {"sent": 2 * PEOPLE}
    assert enrollments == {"completed": PEOPLE}


def test_a_signalled_serve_records_its_batch_so_a_restart_sends_the_rest_at_once(
    store_url: str, tmp_path: Path
) -> None:
    """SIGTERM in the middle of a batch's delivery: the batch is delivered and recorded
    before the process exits, so nothing stays leased to it and the next `serve` sends the
    rest at once (no lease to wait out), each email exactly once."""
    people = 600  # more than one step batch (500): the signal lands in the first one's sends
    (tmp_path / "once.cadence").write_text(ONCE, "utf-8")
    with (tmp_path / "people.jsonl").open("w", encoding="utf-8") as out:
        for i in range(people):
            out.write(json.dumps({"id": f"p{i:03}", "email": f"p{i:03}@example.test",
                                  "first_name": f"P{i}"}) + "\n")  # fmt: skip

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            standins = await start_standins(nursery)
            standins.brevo.faults.add("slow", times=10 * people, delay=0.02)
            process, env = await _import_and_run(
                standins, store_url, tmp_path, "once.cadence", "--poll", "60"
            )
            with trio.fail_after(120):
                while len(standins.brevo.emails) < KILL_AFTER and process.poll() is None:
                    await trio.sleep(0.005)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(60):
                await process.wait()
            assert process.returncode == 0, (tmp_path / "run.err").read_text()
            assert len(standins.brevo.emails) < people, "the signal came too late"
            outbox, _ = await trio.to_thread.run_sync(_store_story, store_url)
            assert outbox == {"sent": len(standins.brevo.emails)}

            standins.brevo.faults.clear()
            await trio.run_process(
                [*CADENCE, "serve", "--until-idle"], env=env, cwd=tmp_path,
                capture_stdout=True, capture_stderr=True,
            )  # fmt: skip
            nursery.cancel_scope.cancel()

        received = sorted((email.to, email.subject) for email in standins.brevo.emails)
        assert received == [(f"p{i:03}@example.test", f"Hello P{i}") for i in range(people)]

    trio.run(main)
    outbox, enrollments = _store_story(store_url)
    assert outbox == {"sent": people}
    assert enrollments == {"completed": people}
