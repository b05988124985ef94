"""A tenant never sees or touches another tenant's data (DESIGN.md), through the engine.

Two engines, tenants "acme" and "globex", share one store (both backends) and hold the same
campaign names and the same contact ids. What one does (deploy, launch, events, unsubscribes,
sends counted by caps, pauses, next due times, status) must not reach the other.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import trio

from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from tests.engine.cadence_cli import run_cadence
from tests.engine.test_runtime import T0, campaigns

SOURCE = """
template hi email { subject "Hi" body "x" }
template again email { subject "Again" body "x" }
template clicked_hi email { subject "Clicked" body "x" }
campaign news {
  cap email 1 per 7d
  on launch { send email hi  wait 1d  send email again }
}
campaign react { when clicked count>=1 { send email clicked_hi } }
"""
PEOPLE = [{"id": f"p{i}", "email": f"p{i}@example.test"} for i in (1, 2, 3)]


def _sent(sink: RecordingSink) -> list[tuple[str, str | None]]:
    return sorted((m.contact_id, m.template) for m in sink.delivered)


def test_two_tenants_on_one_store_never_touch_each_other(store_url: str) -> None:
    clock = SimulatedClock(T0)
    sinks = {"acme": RecordingSink(), "globex": RecordingSink()}

    async def run() -> dict[str, Any]:
        async with (
            Engine(store_url, clock=clock, sink=sinks["acme"], tenant="acme") as acme,
            Engine(store_url, clock=clock, sink=sinks["globex"], tenant="globex") as globex,
        ):
            for engine in (acme, globex):
                await engine.upsert_contacts(PEOPLE)
                await engine.deploy(campaigns(SOURCE))
            # Only acme launches `news`; globex's same-named campaign stays a draft.
            await acme.launch("news")
            for engine in (acme, globex):
                await engine.launch("react")
            assert await globex.next_due() is None
            await globex.run_due()
            await acme.run_due()
            # globex's p1 clicks and unsubscribes: acme's p1 is not affected, and acme's
            # triggered campaign does not fire.
            await globex.push_event({"contact": "p1", "name": "clicked"})
            await globex.push_event({"contact": "p2", "name": "unsubscribed"})
            await globex.run_due()
            # acme's own click fires acme's trigger only.
            await acme.push_event({"contact": "p2", "name": "clicked"})
            await acme.run_due()
            # globex launches after acme sent: acme's sends do not count against globex's cap.
            await globex.launch("news")
            await globex.run_due()
            await clock.sleep_until(T0 + dt.timedelta(days=2))
            await acme.run_due()
            await globex.run_due()
            await acme.pause("react")
            return {
                "acme": await acme.status(),
                "globex": await globex.status(),
                "acme_ids": await acme.contact_ids(),
            }

    seen = trio.run(run)
    # acme: the launch's first email to all, the trigger to p2; the second email is capped
    # (1 per 7d, across campaigns), so it is skipped.
    assert _sent(sinks["acme"]) == [
        ("p1", "hi"), ("p2", "clicked_hi"), ("p2", "hi"), ("p3", "hi")
    ]  # fmt: skip
    # globex: p1's click triggered its own campaign; p2 unsubscribed gets nothing; p1's
    # launch email is capped by globex's own trigger email; p3's is not capped by acme's.
    assert _sent(sinks["globex"]) == [("p1", "clicked_hi"), ("p3", "hi")]
    acme_row = {row["name"]: row for row in seen["acme"]}["news"]
    globex_row = {row["name"]: row for row in seen["globex"]}["news"]
    reacts = [{row["name"]: row for row in seen[t]}["react"]["status"] for t in ("acme", "globex")]
    assert reacts == ["paused", "active"]
    assert [row["name"] for row in seen["acme"]] == [row["name"] for row in seen["globex"]]
    assert acme_row["sends"] == 3 and globex_row["sends"] == 1
    assert seen["acme_ids"] == ["p1", "p2", "p3"]


def test_the_command_line_works_on_the_tenant_it_is_given(store_url: str, tmp_path: Path) -> None:
    """`--tenant` (or $CADENCE_TENANT) on every store command: each sees its tenant only."""
    source = tmp_path / "news.cadence"
    source.write_text(SOURCE, encoding="utf-8")
    people = tmp_path / "people.jsonl"
    people.write_text("".join(json.dumps(p) + "\n" for p in PEOPLE), encoding="utf-8")

    def cadence(*args: str, tenant: str | None = None) -> str:
        env = {"CADENCE_TENANT": tenant} if tenant else {}
        done = run_cadence(*args, store_url=store_url, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cadence("contacts", "import", str(people), "--tenant", "acme")
    cadence("deploy", str(source), "--tenant", "acme")
    cadence("launch", "news", tenant="acme")  # through the environment
    served = cadence("serve", "--until-idle", "--tenant", "acme")
    assert served.startswith("served:") and "3 sends" in served
    assert "news" in cadence("status", "--tenant", "acme")
    # The default tenant has no campaign, no contact and no send of acme's.
    assert "news" not in cadence("status")
    assert "news" not in cadence("report", "--json")
    assert '"sent": 3' in cadence("report", "--json", "--tenant", "acme")
    assert "0 sends" in cadence("serve", "--until-idle")
