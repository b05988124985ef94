"""Agents for `assign agent round_robin`: added, listed and removed through the engine and CLI.

Without a way to register agents the step assigned nobody outside tests; these run on both
stores and check the rotation the step hands out.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cadence.cli import main
from cadence.engine.clock import SimulatedClock
from cadence.engine.migrations import current_revision, downgrade, head_revision, upgrade
from cadence.engine.runtime import Engine, EngineError, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.bulk import insert_rows
from cadence.engine.store.models import Agent, Contact
from tests.engine.test_runtime import T0, campaigns, engine_run, sent

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


JOSE = unicodedata.normalize("NFC", "José")
ASSIGN_THEN_MATCH = f"""
template hello email {{ subject "Hi" body "x" }}
campaign handoff {{ on contact_created {{ assign agent round_robin }} }}
campaign joses {{ audience agent = "{JOSE}" on launch {{ send email hello }} }}
"""


def _nfd(text: str) -> str:
    """`text` as macOS tools export it: letters and combining marks apart."""
    return unicodedata.normalize("NFD", text)


def test_an_agent_named_in_nfd_is_stored_in_nfc_and_matches_the_dsl(store_url: str) -> None:
    """An agent added with an NFD name (`e` and a combining acute) is the "José" a campaign
    types: listed, removed and handed to contacts in NFC, so `agent = "José"` matches."""

    async def body(engine: Engine, clock: SimulatedClock, sink: RecordingSink) -> Any:
        await engine.add_agent(_nfd(" José "))
        await engine.add_agent(JOSE, email="jose@sales.test")  # the same agent, updated
        await engine.deploy(campaigns(ASSIGN_THEN_MATCH))
        await engine.launch("handoff")
        await engine.upsert_contacts([{"id": "c1", "email": "c1@example.test"}])
        await engine.run_due()
        await engine.launch("joses")
        await engine.run_due()
        await engine.remove_agent(_nfd("José"))
        return await engine.agents(), sent(sink)

    listed, delivered = engine_run(store_url, body)
    assert listed == [{"name": JOSE, "email": "jose@sales.test", "active": False}]
    assert _assigned(store_url) == {"c1": (JOSE, "jose@sales.test")}
    assert delivered == [("c1", "hello")]


BEFORE_0016 = "0015_text_in_nfc"


def test_migration_0016_composes_agent_names_and_the_contacts_given_them(
    store_url: str,
) -> None:
    """A store from before agent names were composed: the NFD "José" and the contacts it was
    handed to are put in NFC; an NFD name whose NFC form another agent has keeps its form
    (both hold contacts); other tenants' and ASCII rows are left as they are."""
    zoe = unicodedata.normalize("NFC", "Zoë")
    with Store.open(store_url) as store:
        downgrade(store.engine, BEFORE_0016)
        for tenant in ("default", "other"):
            store.ensure_tenant(tenant, now=T0)
        agents = [("default", _nfd(JOSE)), ("default", "Ana"), ("default", _nfd(zoe)),
                  ("default", zoe), ("other", "Ana")]  # fmt: skip
        contacts = [("default", "c1", _nfd(JOSE)), ("default", "c2", "Ana"),
                    ("default", "c3", _nfd(zoe)), ("other", "c1", _nfd(JOSE))]  # fmt: skip
        with store.session() as session:
            insert_rows(session, Agent.__table__, [  # type: ignore[arg-type]
                {"tenant_id": tenant, "name": name, "pool": "default", "active": True,
                 "created_at": T0}
                for tenant, name in agents
            ])  # fmt: skip
            insert_rows(session, Contact.__table__, [  # type: ignore[arg-type]
                {"tenant_id": tenant, "id": cid, "attributes": {"agent": name, "city": "Bern"},
                 "tags": [], "created_at": T0, "updated_at": T0}
                for tenant, cid, name in contacts
            ])  # fmt: skip
        upgrade(store.engine)
        assert current_revision(store.engine) == head_revision()

        def stored() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            with store.session() as session:
                names = session.execute(select(Agent.tenant_id, Agent.name).order_by(Agent.id))
                people = session.execute(
                    select(Contact.tenant_id, Contact.id, Contact.attributes).order_by(
                        Contact.tenant_id, Contact.id
                    )
                )
                return [tuple(row) for row in names], [tuple(row) for row in people]

        after = stored()
        assert after == (
            [("default", JOSE), ("default", "Ana"), ("default", _nfd(zoe)), ("default", zoe),
             ("other", "Ana")],
            [("default", "c1", {"agent": JOSE, "city": "Bern"}),
             ("default", "c2", {"agent": "Ana", "city": "Bern"}),
             ("default", "c3", {"agent": _nfd(zoe), "city": "Bern"}),
             ("other", "c1", {"agent": _nfd(JOSE), "city": "Bern"})],
        )  # fmt: skip
        # Down to 0015 changes nothing, and up again writes nothing twice.
        downgrade(store.engine, BEFORE_0016)
        upgrade(store.engine)
        assert stored() == after
