"""Launch-time rules on both stores: approval (`approval`, `approve`) and the campaign limit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import func, select

from cadence.cli import main
from cadence.dsl.compiled import CompiledCampaign
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import MAX_ACTIVE_CAMPAIGNS, Engine, EngineError, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import AuditEntry, Enrollment

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

CONTACTS = [
    {"id": "c1", "email": "ana@example.test", "attributes": {"lead_score": 50}},
    {"id": "c2", "email": "ben@example.test", "attributes": {"lead_score": 10}},
    {"id": "c3", "email": "cy@example.test", "attributes": {"lead_score": 80}},
]

REQUIRED = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign hello_all { approval required  audience lead_score >= 30  on launch { send email hello } }
"""


def campaigns(source: str) -> list[CompiledCampaign]:
    """Compile source held in the test."""
    return compile_workspace(load_text(source, "t.cadence"))


def engine_run(url: str, body: Callable[[Engine], Awaitable[Any]], **options: Any) -> Any:
    """Open an engine on `url` with a simulated clock at T0 and run `body` in Trio."""

    async def run() -> Any:
        async with Engine(url, clock=SimulatedClock(T0), **options) as engine:
            return await body(engine)

    return trio.run(run)


def enrollment_count(store: Store) -> int:
    """How many enrollments the store holds."""
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Enrollment)) or 0)


def audit(store: Store, action: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(actor, subject, details) of every audit line with `action`, oldest first."""
    with store.session() as session:
        rows = session.execute(
            select(AuditEntry.actor, AuditEntry.subject_id, AuditEntry.details)
            .where(AuditEntry.action == action)
            .order_by(AuditEntry.id)
        ).all()
    return [(actor, subject, dict(details)) for actor, subject, details in rows]


def status_of(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The `status()` row of one campaign."""
    (row,) = [row for row in rows if row["name"] == name]
    return row


# ---------------------------------------------------------------------------- approval


def test_approval_required_blocks_the_launch_and_enrolls_nobody(
    store: Store, store_url: str
) -> None:
    async def body(engine: Engine) -> tuple[str, dict[str, Any]]:
        await engine.upsert_contacts(CONTACTS)
        (deployed,) = await engine.deploy(campaigns(REQUIRED))
        with pytest.raises(EngineError) as refused:
            await engine.launch("hello_all")
        assert str(refused.value) == (
            "cannot launch 'hello_all': it has `approval required`, and its current version"
            f" ({deployed.version[:12]}) is not approved; approve it first:"
            " `cadence approve hello_all --by WHO`"
        )
        return deployed.version, status_of(await engine.status(), "hello_all")

    _, row = engine_run(store_url, body)
    assert row["status"] == "draft"
    assert row["approval"] == "required, not approved" and row["approved_by"] is None
    assert enrollment_count(store) == 0
    assert audit(store, "launch") == [] and audit(store, "approve") == []


def test_an_approved_version_launches(store: Store, store_url: str) -> None:
    async def body(engine: Engine) -> tuple[str, str, int, dict[str, Any]]:
        await engine.upsert_contacts(CONTACTS)
        (deployed,) = await engine.deploy(campaigns(REQUIRED))
        approved = await engine.approve("hello_all", by="  ana ", note="checked the copy")
        launched = await engine.launch("hello_all")
        return deployed.version, approved, launched, status_of(await engine.status(), "hello_all")

    version, approved, launched, row = engine_run(store_url, body)
    assert approved == version
    assert launched == 2
    assert row["status"] == "active"
    assert row["approval"] == "required, approved by ana" and row["approved_by"] == "ana"
    assert enrollment_count(store) == 2
    assert audit(store, "approve") == [
        ("ana", "hello_all", {"version": version, "by": "ana", "note": "checked the copy"})
    ]


def test_a_new_version_needs_a_new_approval(store: Store, store_url: str) -> None:
    changed = REQUIRED.replace('subject "Hello"', 'subject "Hello again"')

    async def body(engine: Engine) -> list[str]:
        await engine.upsert_contacts(CONTACTS)
        await engine.deploy(campaigns(REQUIRED))
        await engine.approve("hello_all", by="ana")
        (new,) = await engine.deploy(campaigns(changed))
        seen = [status_of(await engine.status(), "hello_all")["approval"]]
        with pytest.raises(EngineError, match=rf"version \({new.version[:12]}\) is not approved"):
            await engine.launch("hello_all")
        # The approved content deployed again is the approved version again.
        await engine.deploy(campaigns(REQUIRED))
        seen.append(status_of(await engine.status(), "hello_all")["approval"])
        await engine.deploy(campaigns(changed))
        await engine.approve("hello_all", by="ben")
        seen.append(status_of(await engine.status(), "hello_all")["approval"])
        assert await engine.launch("hello_all") == 2
        return seen

    seen = engine_run(store_url, body)
    assert seen == [
        "required, not approved",
        "required, approved by ana",
        "required, approved by ben",
    ]
    assert enrollment_count(store) == 2


# A live campaign's new version: contacts created meanwhile show which version runs.
LIVE = """
template hello email { subject "Hello" body "<p>Hi</p>" }
template hello_v2 email { subject "Hello v2" body "<p>Hi</p>" }
campaign greet { SETTING on contact_created { send email hello } }
"""
LIVE_V2 = LIVE.replace("send email hello }", "send email hello_v2 }")


def live_run(
    url: str, setting: str, body: Callable[[Engine, RecordingSink], Awaitable[Any]]
) -> Any:
    """Deploy LIVE with `setting`, approve and launch it, then run `body`."""
    sink = RecordingSink()

    async def run(engine: Engine) -> Any:
        await engine.deploy(campaigns(LIVE.replace("SETTING", setting)))
        await engine.approve("greet", by="ana")
        await engine.launch("greet")
        return await body(engine, sink)

    return engine_run(url, run, sink=sink)


async def created_gets(engine: Engine, sink: RecordingSink, contact_id: str) -> list[str | None]:
    """Create a contact, run what is due, and say which templates it was sent."""
    await engine.upsert_contacts([{"id": contact_id, "email": f"{contact_id}@example.test"}])
    await engine.run_due()
    return [m.template for m in sink.delivered if m.contact_id == contact_id]


def test_a_live_campaigns_new_version_waits_for_approval(store: Store, store_url: str) -> None:
    async def body(engine: Engine, sink: RecordingSink) -> dict[str, Any]:
        old = status_of(await engine.status(), "greet")["version"]
        assert await created_gets(engine, sink, "c1") == ["hello"]
        (new,) = await engine.deploy(campaigns(LIVE_V2.replace("SETTING", "approval required")))
        assert new.pending_approval and new.created
        row = status_of(await engine.status(), "greet")
        assert (row["version"], row["pending_approval"]) == (old, new.version[:12])
        assert row["approval"] == "required, approved by ana"
        # Not approved yet: new contacts still get the approved version's message.
        assert await created_gets(engine, sink, "c2") == ["hello"]
        assert await engine.approve("greet", by="ben") == new.version
        row = status_of(await engine.status(), "greet")
        assert (row["version"], row["pending_approval"]) == (new.version[:12], None)
        assert row["approval"] == "required, approved by ben"
        assert await created_gets(engine, sink, "c3") == ["hello_v2"]
        return row

    live_run(store_url, "approval required", body)
    deploys = [details for _, _, details in audit(store, "deploy")]
    assert [d["pending_approval"] for d in deploys] == [False, True]


def test_migrating_to_a_version_that_waits_for_approval_is_refused(
    store: Store, store_url: str
) -> None:
    async def body(engine: Engine, sink: RecordingSink) -> None:
        before = status_of(await engine.status(), "greet")
        changed = campaigns(LIVE_V2.replace("SETTING", "approval required"))
        with pytest.raises(EngineError) as refused:
            await engine.deploy(changed, migrate=True)
        assert str(refused.value) == (
            f"cannot migrate 'greet' to version {changed[0].version[:12]}: the campaign is live"
            " and the new version needs approval; deploy it without --migrate, `cadence approve"
            " greet --by WHO`, then deploy it again with --migrate"
        )
        assert status_of(await engine.status(), "greet") == before
        # The way the message gives: deploy, approve, deploy again with --migrate.
        await engine.deploy(changed)
        await engine.approve("greet", by="ben")
        (again,) = await engine.deploy(changed, migrate=True)
        assert not again.pending_approval and not again.created

    live_run(store_url, "approval required", body)
    assert len(audit(store, "deploy")) == 3


def test_a_rollback_to_an_approved_version_runs_at_once(store_url: str) -> None:
    async def body(engine: Engine, sink: RecordingSink) -> None:
        (new,) = await engine.deploy(campaigns(LIVE_V2.replace("SETTING", "approval required")))
        assert new.pending_approval
        (back,) = await engine.deploy(campaigns(LIVE.replace("SETTING", "approval required")))
        assert not back.pending_approval
        assert status_of(await engine.status(), "greet")["pending_approval"] is None
        assert await created_gets(engine, sink, "c1") == ["hello"]

    live_run(store_url, "approval required", body)


@pytest.mark.parametrize(
    ("setting", "approved_before", "waits"),
    [
        ("approval none", True, False),
        ("", False, False),  # implied rule, launched without needing approval
        ("", True, True),  # implied rule, the running version was approved
    ],
)
def test_which_new_versions_of_a_live_campaign_wait(
    store_url: str, setting: str, approved_before: bool, waits: bool
) -> None:
    async def run(engine: Engine) -> tuple[bool, list[str | None]]:
        sink = engine.sink
        assert isinstance(sink, RecordingSink)
        await engine.deploy(campaigns(LIVE.replace("SETTING", setting)))
        if approved_before:
            await engine.approve("greet", by="ana")
        await engine.launch("greet")
        (new,) = await engine.deploy(campaigns(LIVE_V2.replace("SETTING", setting)))
        return new.pending_approval, await created_gets(engine, sink, "c1")

    pending, got = engine_run(store_url, run, sink=RecordingSink())
    assert pending is waits
    assert got == (["hello"] if waits else ["hello_v2"])


def test_cli_deploy_says_a_new_version_waits_for_approval(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_env / "greet.cadence").write_text(LIVE.replace("SETTING", "approval required"), "utf-8")
    assert main(["deploy", "greet.cadence"]) == 0
    assert main(["approve", "greet", "--by", "ana"]) == 0
    assert main(["launch", "greet"]) == 0
    capsys.readouterr()
    (cli_env / "greet.cadence").write_text(LIVE_V2.replace("SETTING", "approval required"), "utf-8")
    assert main(["deploy", "greet.cadence"]) == 0
    out = capsys.readouterr().out
    version = out.split()[1]
    assert out == (
        f"greet: {version} (new version; waits for approval, the approved version keeps"
        " running: cadence approve greet --by WHO)\n"
    )
    assert main(["status"]) == 0
    assert f"greet: version {version} waits for approval" in capsys.readouterr().out


def test_a_finished_campaign_runs_once_and_says_how_to_run_it_again(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new version of a cancelled or archived campaign is stored, but the campaign will
    # not run again: deploy says so and launch's refusal says what to do instead.
    (cli_env / "greet.cadence").write_text(LIVE.replace("SETTING", ""), "utf-8")
    assert main(["deploy", "greet.cadence"]) == 0
    assert main(["launch", "greet"]) == 0
    assert main(["cancel", "greet"]) == 0
    capsys.readouterr()
    assert main(["launch", "greet"]) == 1
    assert capsys.readouterr().err == (
        "cadence: cannot launch 'greet': it is cancelled; a campaign runs once: to run it"
        " again, clone it under a new name (`cadence clone greet NEW_NAME`) and launch that\n"
    )
    assert main(["archive", "greet"]) == 0
    (cli_env / "greet.cadence").write_text(LIVE_V2.replace("SETTING", ""), "utf-8")
    capsys.readouterr()
    assert main(["deploy", "greet.cadence"]) == 0
    out = capsys.readouterr().out
    version = out.split()[1]
    assert out == (
        f"greet: {version} (new version; greet is archived and will not run again: to run"
        " this version, cadence clone greet NEW_NAME)\n"
    )
    assert main(["clone", "greet", "greet_again"]) == 0
    assert main(["launch", "greet_again"]) == 0


def test_cli_run_warns_that_a_new_version_waits_and_approved_by_lets_it_run(
    cli_env: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    source = cli_env / "greet.cadence"
    source.write_text(LIVE.replace("SETTING", "approval required"), "utf-8")
    assert main(["run", "greet.cadence", "--until-idle", "--approved-by", "ana"]) == 0
    source.write_text(LIVE_V2.replace("SETTING", "approval required"), "utf-8")
    capsys.readouterr()
    assert main(["run", "greet.cadence", "--until-idle"]) == 0
    err = capsys.readouterr().err
    assert "cadence run: greet: version " in err
    assert "waits for approval; the approved version keeps running" in err
    assert main(["run", "greet.cadence", "--until-idle", "--approved-by", "ben"]) == 0
    assert "waits for approval" not in capsys.readouterr().err
    assert main(["status"]) == 0
    assert "required, approved by ben" in status_line(capsys.readouterr().out, "greet")


def bulk_contacts(in_audience: int, outside: int) -> list[dict[str, Any]]:
    """`in_audience` contacts with lead_score 50, then `outside` with lead_score 0."""
    return [{"id": f"a{i:05}", "attributes": {"lead_score": 50}} for i in range(in_audience)] + [
        {"id": f"o{i:05}", "attributes": {"lead_score": 0}} for i in range(outside)
    ]


BROADCAST = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign big { SETTING audience lead_score >= 30  on launch { send email hello } }
"""


def test_without_the_setting_an_audience_above_1000_needs_approval(
    store: Store, store_url: str
) -> None:
    async def body(engine: Engine) -> dict[str, Any]:
        # 1,001 in the audience; the 5 outside it do not count.
        await engine.upsert_contacts(bulk_contacts(1001, 5))
        await engine.deploy(campaigns(BROADCAST.replace("SETTING", "")))
        with pytest.raises(EngineError) as refused:
            await engine.launch("big")
        assert str(refused.value).startswith(
            "cannot launch 'big': its launch audience of 1,001 contacts is above 1,000, and"
            " its current version ("
        )
        assert str(refused.value).endswith("`cadence approve big --by WHO`")
        return status_of(await engine.status(), "big")

    row = engine_run(store_url, body)
    assert row["status"] == "draft" and row["approval"] == "needed above 1,000 contacts"
    assert enrollment_count(store) == 0 and audit(store, "launch") == []


def test_without_the_setting_an_audience_of_1000_launches(store: Store, store_url: str) -> None:
    async def body(engine: Engine) -> int:
        # 1,005 contacts, but only 1,000 in the audience.
        await engine.upsert_contacts(bulk_contacts(1000, 5))
        await engine.deploy(campaigns(BROADCAST.replace("SETTING", "")))
        return await engine.launch("big")

    assert engine_run(store_url, body) == 1000
    assert enrollment_count(store) == 1000
    assert audit(store, "approve") == []


def test_an_approved_large_audience_launches(store: Store, store_url: str) -> None:
    async def body(engine: Engine) -> tuple[int, str]:
        await engine.upsert_contacts(bulk_contacts(1001, 0))
        await engine.deploy(campaigns(BROADCAST.replace("SETTING", "")))
        await engine.approve("big", by="ana")
        launched = await engine.launch("big")
        return launched, status_of(await engine.status(), "big")["approval"]

    assert engine_run(store_url, body) == (1001, "needed above 1,000 contacts, approved by ana")
    assert enrollment_count(store) == 1001


def test_approval_none_launches_any_audience(store: Store, store_url: str) -> None:
    async def body(engine: Engine) -> tuple[int, str]:
        await engine.upsert_contacts(bulk_contacts(1001, 0))
        await engine.deploy(campaigns(BROADCAST.replace("SETTING", "approval none")))
        launched = await engine.launch("big")
        return launched, status_of(await engine.status(), "big")["approval"]

    assert engine_run(store_url, body) == (1001, "not needed")
    assert enrollment_count(store) == 1001


def test_a_campaign_with_no_launch_audience_needs_no_implied_approval(store_url: str) -> None:
    # Only `on launch`, `at` and `every` enroll an audience at launch; an event-triggered
    # campaign enrolls contacts one event at a time.
    source = """
    template hello email { subject "Hello" body "<p>Hi</p>" }
    campaign on_signup { when signed_up send email hello }
    """

    async def body(engine: Engine) -> int:
        await engine.upsert_contacts(bulk_contacts(1001, 0))
        await engine.deploy(campaigns(source))
        return await engine.launch("on_signup")

    assert engine_run(store_url, body) == 0


def test_approving_needs_a_known_campaign_and_an_approver(store_url: str) -> None:
    async def body(engine: Engine) -> None:
        await engine.deploy(campaigns(REQUIRED))
        with pytest.raises(EngineError) as unknown:
            await engine.approve("hello_al", by="ana")
        assert str(unknown.value) == "no campaign named 'hello_al'; did you mean `hello_all`?"
        with pytest.raises(EngineError) as nobody:
            await engine.approve("hello_all", by="  ")
        assert str(nobody.value) == "cannot approve 'hello_all': say who approves it (`--by WHO`)"

    engine_run(store_url, body)


# ---------------------------------------------------------------------------- campaign limit


def many(count: int) -> str:
    """`count` event-triggered campaigns, k01 ... (they stay active once launched)."""
    return 'template t email { subject "s" body "b" }\n' + "".join(
        f"campaign k{i:02} {{ when e{i} send email t }}\n" for i in range(1, count + 1)
    )


def test_the_11th_live_campaign_is_refused_until_one_is_cancelled(
    store: Store, store_url: str
) -> None:
    assert MAX_ACTIVE_CAMPAIGNS == 10

    async def body(engine: Engine) -> dict[str, str]:
        await engine.deploy(campaigns(many(11)))
        for i in range(1, 11):
            await engine.launch(f"k{i:02}")
        # Paused campaigns still count: a resume makes them send again.
        await engine.pause("k03")
        with pytest.raises(EngineError) as refused:
            await engine.launch("k11")
        assert str(refused.value) == (
            "cannot launch 'k11': the tenant may have at most 10 campaigns that are active,"
            " scheduled or paused, and has 10: k01 (active), k02 (active), k03 (paused),"
            " k04 (active), k05 (active), k06 (active), k07 (active), k08 (active),"
            " k09 (active), k10 (active); cancel one (`cadence cancel NAME`) or wait for one"
            " to complete"
        )
        await engine.cancel("k03")
        await engine.launch("k11")
        return {row["name"]: row["status"] for row in await engine.status()}

    statuses = engine_run(store_url, body)
    assert statuses == {f"k{i:02}": "active" for i in range(1, 12)} | {"k03": "cancelled"}
    assert [subject for _, subject, _ in audit(store, "launch")] == [
        *(f"k{i:02}" for i in range(1, 11)),
        "k11",
    ]


def test_the_limit_is_the_engines_to_set(store_url: str) -> None:
    async def body(engine: Engine) -> list[str]:
        await engine.deploy(campaigns(many(3)))
        await engine.launch("k01")
        await engine.launch("k02")
        with pytest.raises(EngineError, match=r"at most 2 campaigns .* has 2: k01 \(active\)"):
            await engine.launch("k03")
        return [row["status"] for row in await engine.status()]

    assert engine_run(store_url, body, max_active_campaigns=2) == ["active", "active", "draft"]
    with pytest.raises(ValueError, match="at least 1"):
        Engine(max_active_campaigns=0)


def test_relaunching_a_scheduled_campaign_does_not_count_itself(store_url: str) -> None:
    source = """
    template t email { subject "s" body "b" }
    campaign later { starts 2027-01-01  when e1 send email t }
    """

    async def body(engine: Engine) -> list[str]:
        await engine.deploy(campaigns(source))
        await engine.launch("later")
        await engine.launch("later")
        return [row["status"] for row in await engine.status()]

    assert engine_run(store_url, body, max_active_campaigns=1) == ["scheduled"]


# ---------------------------------------------------------------------------- command line


@pytest.fixture
def cli_env(store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The CLI on the test's store, with no provider configured, in a scratch folder."""
    import os

    for key in list(os.environ):
        if key.startswith("CADENCE_") and key != "CADENCE_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CADENCE_DATABASE_URL", store_url)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def status_line(text: str, name: str) -> str:
    """The line of `cadence status` output about one campaign."""
    return next(line for line in text.splitlines() if f" {name} " in line)


def test_cli_run_needs_approved_by_for_a_campaign_that_needs_approval(
    cli_env: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_env / "hello.cadence").write_text(REQUIRED, "utf-8")
    (cli_env / "people.jsonl").write_text(
        '{"id": "c1", "email": "c1@example.test", "attributes": {"lead_score": 50}}\n', "utf-8"
    )
    assert main(["contacts", "import", "people.jsonl"]) == 0
    capsys.readouterr()

    assert main(["run", "hello.cadence", "--until-idle"]) == 1
    # After the warning that no provider is configured, the refusal.
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("cadence: cannot launch 'hello_all': it has `approval required`")
    assert err.endswith("approve it first: `cadence approve hello_all --by WHO`")
    assert enrollment_count(store) == 0

    assert main(["status"]) == 0
    line = status_line(capsys.readouterr().out, "hello_all")
    assert " draft " in line and "required, not approved" in line

    assert main(["run", "hello.cadence", "--until-idle", "--approved-by", "ana"]) == 0
    assert capsys.readouterr().out.startswith("ran: ")
    assert enrollment_count(store) == 1
    assert [(actor, details["note"]) for actor, _, details in audit(store, "approve")] == [
        ("ana", "cadence run")
    ]
    assert main(["status"]) == 0
    assert "required, approved by ana" in status_line(capsys.readouterr().out, "hello_all")


def test_cli_approve_then_launch(
    cli_env: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_env / "hello.cadence").write_text(REQUIRED, "utf-8")
    assert main(["deploy", "hello.cadence"]) == 0
    version = capsys.readouterr().out.split()[1]
    assert main(["launch", "hello_all"]) == 1
    assert "it has `approval required`" in capsys.readouterr().err

    assert main(["approve", "hello_al", "--by", "ana"]) == 1
    assert capsys.readouterr().err == (
        "cadence: no campaign named 'hello_al'; did you mean `hello_all`?\n"
    )
    assert main(["approve", "hello_all", "--by", "ana", "--note", "legal ok"]) == 0
    assert capsys.readouterr().out == f"hello_all: version {version} approved by ana\n"
    assert main(["launch", "hello_all"]) == 0
    assert capsys.readouterr().out == "hello_all: launch done (0 enrollments)\n"
    assert audit(store, "approve")[0][2]["note"] == "legal ok"


# ---------------------------------------------------------------------------- dry-run


def test_a_dry_run_approves_and_launches_every_campaign(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    from cadence.engine.dryrun import dry_run

    people = tmp_path / "people.jsonl"
    people.write_text(
        '{"id": "c1", "email": "c1@example.test", "attributes": {"lead_score": 50}}\n', "utf-8"
    )
    # One campaign that needs approval, and more campaigns than the live limit allows.
    source = REQUIRED + many(MAX_ACTIVE_CAMPAIGNS + 1)
    report = trio.run(
        lambda: dry_run(
            campaigns(source), people, start=T0, until=dt.timedelta(days=1),
            database_url=store_url, render=False,
        )
    )  # fmt: skip
    assert [(send.contact, send.campaign) for send in report.sends] == [("c1", "hello_all")]
    approvals = audit(store, "approve")
    assert len(approvals) == MAX_ACTIVE_CAMPAIGNS + 2
    assert {(actor, details["note"]) for actor, _, details in approvals} == {
        ("dry-run", "simulated launch")
    }
    assert len(audit(store, "launch")) == MAX_ACTIVE_CAMPAIGNS + 2


WAITING = """
template hello email { subject "Hello" body "<p>Hi</p>" }
campaign slow { on launch { wait 2d  send email hello } }
"""


def test_status_shows_the_cancelled_enrollments_of_a_cancelled_campaign(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `cancel`, every other count of the campaign reads 0: without a column of its
    own the table said nothing of the two journeys it stopped."""
    (cli_env / "slow.cadence").write_text(WAITING, "utf-8")
    people = "".join(f'{{"id": "c{i}", "email": "c{i}@example.test"}}\n' for i in (1, 2))
    (cli_env / "people.jsonl").write_text(people, "utf-8")
    assert main(["contacts", "import", "people.jsonl"]) == 0
    assert main(["run", "slow.cadence", "--until-idle"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "cancelled" not in capsys.readouterr().out  # no column while none are
    assert main(["cancel", "slow"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "campaign" in line and "held" in line)
    cells = [cell.strip() for cell in status_line(out, "slow").split("│")[1:-1]]
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert dict(zip(names, cells, strict=True))["cancelled"] == "2"
