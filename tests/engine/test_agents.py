"""Agents for `assign agent round_robin`: added, listed and removed through the engine and CLI.

Without a way to register agents the step assigned nobody outside tests; these run on both
stores and check the rotation the step hands out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cadence.cli import main
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, EngineError, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Contact
from tests.engine.test_runtime import campaigns, engine_run

ASSIGN = """
campaign handoff { on contact_created { assign agent round_robin } }
"""


def _assigned(store_url: str) -> dict[str, tuple[Any, Any]]:
    with Store.open(store_url) as store, store.session() as session:
        rows = session.execute(select(Contact.id, Contact.attributes)).all()
    return {
        cid: ((attrs or {}).get("agent"), (attrs or {}).get("agent_email")) for cid, attrs in rows
    }


def test_contacts_go_round_the_agents_added_and_skip_a_removed_one(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.add_agent("  Ana ", email="ana@sales.test")
        await engine.add_agent("Ben")
        await engine.deploy(campaigns(ASSIGN))
        await engine.launch("handoff")
        for i in range(1, 4):
            await engine.upsert_contacts([{"id": f"c{i}"}])
            await engine.run_due()
        await engine.remove_agent("Ben")
        listed = await engine.agents()
        for i in range(4, 6):
            await engine.upsert_contacts([{"id": f"c{i}"}])
            await engine.run_due()
        await engine.add_agent("Ben")  # back in the rotation
        await engine.upsert_contacts([{"id": "c6"}])
        await engine.run_due()
        return listed

    listed = engine_run(store_url, body)
    assert listed == [
        {"name": "Ana", "email": "ana@sales.test", "active": True},
        {"name": "Ben", "email": None, "active": False},
    ]
    assigned = _assigned(store_url)
    assert [assigned[f"c{i}"][0] for i in range(1, 7)] == ["Ana", "Ben", "Ana", "Ana", "Ana", "Ben"]
    assert assigned["c1"] == ("Ana", "ana@sales.test")


@pytest.mark.parametrize(
    ("name", "email", "message"),
    [
        ("  ", None, "an agent needs a name"),
        ("x" * 300, None, "is longer than"),
        ("Ana", "not-an-address", "agent 'Ana': 'not-an-address' is not an email address"),
    ],
)
def test_bad_agents_are_refused(store_url: str, name: str, email: str | None, message: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        with pytest.raises(EngineError, match=message):
            await engine.add_agent(name, email=email)
        return await engine.agents()

    assert engine_run(store_url, body) == []


def test_removing_an_unknown_agent_names_the_nearest(store_url: str) -> None:
    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> None:
        await engine.add_agent("Ana")
        with pytest.raises(EngineError) as refused:
            await engine.remove_agent("Anna")
        assert str(refused.value) == "no agent named 'Anna'; did you mean `Ana`?"

    engine_run(store_url, body)


def test_cli_agents(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("CADENCE_DATABASE_URL", store_url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    assert main(["agents", "add", "Ana", "--email", "ana@sales.test"]) == 0
    assert main(["agents", "add", "Ben"]) == 0
    assert main(["agents", "remove", "Ben"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "agent Ana: in the rotation\nagent Ben: in the rotation\nagent Ben: out of the rotation\n"
    )
    assert main(["agents", "list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "Ana" in line or "Ben" in line]
    assert "ana@sales.test" in rows[0] and "yes" in rows[0]
    assert "no" in rows[1]
    assert main(["agents", "remove", "Cy"]) == 1
    assert capsys.readouterr().err == "cadence: no agent named 'Cy'\n"
    assert main(["agents", "add", "Cy", "--email", "nope"]) == 1
    assert "is not an email address" in capsys.readouterr().err
