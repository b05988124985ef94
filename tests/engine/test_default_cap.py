"""The default frequency cap: the business rule "at most 3 emails per week per contact".

docs/language.md, `cap`: a campaign that sets no `cap email` of its own sends its emails
under `cap email 3 per 7d`, counting every campaign's emails; its own `cap email` replaces
the default, a confirmation message is not held back by it, and `Engine(default_cap=None)`
turns it off. Each test runs on both stores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import select

from cadence.cli import build_parser, main
from cadence.commands.options import cap_arg
from cadence.dsl.symbols import DEFAULT_CAP, CapLimit
from cadence.engine.clock import SimulatedClock
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import SendLog
from tests.engine.test_runtime import T0, campaigns

WEEK = 7 * 86400
ANA = {"id": "ana", "email": "ana@example.test", "phone": "+491510001234",
       "attributes": {"sms_opt_in": True}}  # fmt: skip


def _run(
    store_url: str, source: str, *, until: dt.timedelta = dt.timedelta(days=9), **engine: Any
) -> tuple[list[tuple[str, str | None]], list[tuple[str, str]]]:
    """Launch every campaign of `source` for Ana; (channel, template) of what she was sent
    and (node, reason) of what was skipped, in time order."""
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    compiled = campaigns(source)

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink, **engine) as running:
            await running.upsert_contacts([ANA])
            await running.deploy(compiled)
            for campaign in compiled:
                await running.launch(campaign.name)
            await running.run_until(T0 + until)

    trio.run(main)
    with Store.open(store_url) as store, store.session() as session:
        skipped = session.execute(
            select(SendLog.detail).where(SendLog.outcome == "skipped").order_by(SendLog.id)
        ).scalars()
        skips = [(detail["node"], detail["reason"]) for detail in skipped]
    return [(m.channel, m.template) for m in sink.delivered], skips


# Two campaigns share Ana's week: a, b, a2, b2 in the first 50 hours, b3 a week after b.
TWO_CAMPAIGNS = """
template a email { subject "A" body "x" }
template a2 email { subject "A2" body "x" }
template b email { subject "B" body "x" }
template b2 email { subject "B2" body "x" }
template b3 email { subject "B3" body "x" }
campaign first { on launch { send email a  wait 1d  send email a2 } }
campaign second {
  on launch { wait 2h  send email b  wait 2d  send email b2  wait 5d  send email b3 }
}
"""


def test_a_fourth_email_in_seven_days_is_skipped_across_campaigns(
    store_url: str, caps_backend: str
) -> None:
    # The default goes through the same cap check as a campaign's own caps, on either core.
    delivered, skips = _run(store_url, TWO_CAMPAIGNS)
    # b3 goes 7 days after b: a send exactly the cap's period earlier no longer counts.
    assert delivered == [("email", "a"), ("email", "b"), ("email", "a2"), ("email", "b3")]
    assert skips == [("send_b2", "default cap email 3 per 7d reached")]


OWN_CAPS = """
template a email { subject "A" body "x" }
template s sms "Hi"
campaign roomy {
  cap email 5 per 7d
  on launch { send email a  wait 1h  send email a  wait 1h  send email a  wait 1h  send email a }
}
campaign texts {
  on launch { send sms s  wait 1h  send sms s  wait 1h  send sms s  wait 1h  send sms s }
}
campaign overall {
  cap 20 per 1d
  on launch { wait 1d  send email a  wait 1h  send email a }
}
"""


def test_a_campaigns_own_email_cap_replaces_the_default_and_other_channels_have_none(
    store_url: str,
) -> None:
    delivered, skips = _run(store_url, OWN_CAPS)
    # `roomy` sends all four under its own cap; the SMS go uncapped. `overall`'s cap on every
    # channel is no `cap email`: the default holds too, and its emails are Ana's 5th and 6th.
    assert sorted(delivered) == [("email", "a")] * 4 + [("sms", "s")] * 4
    assert skips == [("send_a", "default cap email 3 per 7d reached"),
                     ("send_a_2", "default cap email 3 per 7d reached")]  # fmt: skip


FOUR = """
template a email { subject "A" body "x" }
campaign four {
  on launch { send email a  wait 1d  send email a  wait 1d  send email a  wait 1d  send email a }
}
"""


def test_the_engine_takes_another_default_or_none(store_url: str) -> None:
    delivered, skips = _run(store_url, FOUR, default_cap=CapLimit("email", 2, WEEK))
    assert len(delivered) == 2
    assert [reason for _, reason in skips] == ["default cap email 2 per 7d reached"] * 2


def test_without_a_default_only_the_campaigns_own_caps_hold(store_url: str) -> None:
    delivered, skips = _run(store_url, FOUR, default_cap=None)
    assert len(delivered) == 4 and skips == []


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        (CapLimit("emial", 3, WEEK), "did you mean `email`?"),
        (CapLimit("email", 0, WEEK), "at least 1 message"),
        (CapLimit(None, 3, 0), "from 1s to ten years"),
    ],
)
def test_a_default_the_language_would_refuse_is_refused(cap: CapLimit, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Engine("sqlite://", default_cap=cap)
    assert Engine("sqlite://").default_cap == DEFAULT_CAP


# Ana had three emails from `news` before she asked to subscribe (double opt-in).
CONFIRM = """
template confirm_signup email { subject "Please confirm" body "Confirm: {{ confirm_url }}" }
template news email { subject "News" body "x" }
campaign news { on launch { send email news  wait 1h  send email news  wait 1h  send email news } }
campaign double_opt_in {
  when consent_requested where event.channel == "email" { send email confirm_signup }
}
"""


def test_the_default_does_not_hold_back_a_confirmation_message(store_url: str) -> None:
    clock = SimulatedClock(T0)
    sink = RecordingSink()

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts([ANA])
            await engine.deploy(campaigns(CONFIRM))
            await engine.launch("news")
            await engine.launch("double_opt_in")
            await engine.run_until(T0 + dt.timedelta(hours=3))
            await engine.set_consent("ana", "email", "pending", source="signup form")
            await engine.run_until(T0 + dt.timedelta(hours=4))

    trio.run(main)
    assert [m.template for m in sink.delivered] == ["news"] * 3 + ["confirm_signup"]


# ---------------------------------------------------------------------------- the commands

AT_ONCE = """
template a email { subject "A" body "x" }
campaign burst { on launch { send email a  send email a  send email a  send email a } }
"""


@pytest.fixture
def cli_env(store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The CLI on the test's store, with no provider and no default cap set, in a scratch
    folder holding AT_ONCE and one contact."""
    for key in list(os.environ):
        if key.startswith("CADENCE_") and key != "CADENCE_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CADENCE_DATABASE_URL", store_url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "burst.cadence").write_text(AT_ONCE, "utf-8")
    (tmp_path / "people.jsonl").write_text(json.dumps(ANA) + "\n", "utf-8")
    return tmp_path


def test_run_sends_under_the_default_cap_it_is_given(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["contacts", "import", "people.jsonl"]) == 0
    run = ["run", "burst.cadence", "--until-idle", "--approved-by", "ana"]
    assert main([*run, "--default-cap", "email 2 per 7d"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith(", 2 sends, 2 recorded, not delivered (no channel provider is configured)")


def test_a_dry_run_applies_the_default_as_a_live_run_unless_told_otherwise(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def sends(*options: str) -> int:
        dry = ["dry-run", "burst.cadence", "--contacts", "people.jsonl", "--json"]
        assert main([*dry, *options]) == 0
        return int(json.loads(capsys.readouterr().out.splitlines()[-1])["sends"])

    assert sends() == 3
    assert sends("--default-cap", "none") == 4
    monkeypatch.setenv("CADENCE_DEFAULT_CAP", "email 1 per 1d")  # as `serve` would read it
    assert sends() == 1


def test_the_options_default_is_the_business_rule_or_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CADENCE_DEFAULT_CAP", raising=False)
    for command in (["serve"], ["run", "x.cadence"], ["dry-run", "x.cadence", "--contacts", "c"]):
        assert build_parser().parse_args(command).default_cap == DEFAULT_CAP
    monkeypatch.setenv("CADENCE_DEFAULT_CAP", "off")
    assert build_parser().parse_args(["serve"]).default_cap is None


@pytest.mark.parametrize(
    ("text", "cap"),
    [
        ("email 5 per 7d", CapLimit("email", 5, WEEK)),
        ("  sms   2 per 1d12h ", CapLimit("sms", 2, 129600)),
        ("10 per 1w", CapLimit(None, 10, WEEK)),
        ("None", None),
    ],
)
def test_a_default_cap_is_written_as_a_campaigns_cap(text: str, cap: CapLimit | None) -> None:
    assert cap_arg(text) == cap


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("email 3 per week", "expected a cap such as 'email 3 per 7d'"),
        ("cap email 3 per 7d", "expected a cap such as"),
        ("emial 3 per 7d", "did you mean `email`?"),
        ("email 0 per 7d", "at least 1 message"),
        # Beyond 64 bits the dispatch core could not hold it: refused here, not mid-run.
        ("email 9223372036854775808 per 7d", "at most 9223372036854775807 messages"),
        ("email 3 per 5000w", "from 1s to ten years"),
    ],
)
def test_a_bad_default_cap_says_what_is_wrong_and_where_it_came_from(
    text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message) as error:
        cap_arg(text)
    assert "$CADENCE_DEFAULT_CAP" in str(error.value)


# ----------------------------------------------------------------- caps across versions

# A campaign redeployed twice: its v1 enrollments keep v1's caps (none of their own, so the
# default holds), v2's have its own `cap email`, v3's a cap on every channel and the default.
BURST_V1 = """
template a email { subject "A" body "x" }
campaign burst {
  when joined { wait 1d  send email a  send email a  send email a  send email a  send email a }
}
"""
BURST_V2 = BURST_V1.replace("campaign burst {", "campaign burst {\n  cap email 4 per 7d")
BURST_V3 = BURST_V1.replace("campaign burst {", "campaign burst {\n  cap 2 per 1d")


def test_each_version_of_a_campaign_is_checked_against_its_own_caps_in_one_batch(
    store_url: str, caps_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cadence.engine import runtime

    # Which caps each batch's gates built an index for: the sends must share one batch.
    indexed: dict[int, set[tuple[CapLimit, ...]]] = {}
    cap_index = runtime._Gates._cap_index

    def spy(gates: Any, caps: Any) -> Any:
        indexed.setdefault(id(gates), set()).add(caps.rules)
        return cap_index(gates, caps)

    monkeypatch.setattr(runtime._Gates, "_cap_index", spy)
    clock = SimulatedClock(T0)
    sink = RecordingSink()
    people = [{"id": name, "email": f"{name}@example.test"} for name in ("ana", "ben", "cy", "dee")]

    async def main() -> None:
        async with Engine(store_url, clock=clock, sink=sink) as engine:
            await engine.upsert_contacts(people)
            await engine.deploy(campaigns(BURST_V1))
            await engine.launch("burst")
            await engine.push_events([{"contact": "ana", "name": "joined"},
                                      {"contact": "ben", "name": "joined"}])  # fmt: skip
            await engine.deploy(campaigns(BURST_V2))
            await engine.push_event({"contact": "cy", "name": "joined"})
            await engine.deploy(campaigns(BURST_V3))
            await engine.push_event({"contact": "dee", "name": "joined"})
            await engine.run_until(T0 + dt.timedelta(days=2))

    trio.run(main)
    got: dict[str, int] = {}
    for message in sink.delivered:
        got[message.contact_id] = got.get(message.contact_id, 0) + 1
    # v1: the default (3 per 7d); v2: its own 4 per 7d replaces it; v3: its own 2 per 1d on
    # every channel, and the default too (it has no `cap email`).
    assert got == {"ana": 3, "ben": 3, "cy": 4, "dee": 2}
    with Store.open(store_url) as store, store.session() as session:
        skipped = session.execute(
            select(SendLog.contact_id, SendLog.detail)
            .where(SendLog.outcome == "skipped")
            .order_by(SendLog.id)
        ).all()
    reasons = sorted((contact, detail["reason"]) for contact, detail in skipped)
    default = "default cap email 3 per 7d reached"
    assert reasons == [
        ("ana", default), ("ana", default), ("ben", default), ("ben", default),
        ("cy", "cap email 4 reached"),
        ("dee", "cap all channels 2 reached"), ("dee", "cap all channels 2 reached"),
        ("dee", "cap all channels 2 reached"),
    ]  # fmt: skip
    week = 7 * 86400
    assert list(indexed.values()) == [
        {
            (DEFAULT_CAP,),
            (CapLimit("email", 4, week),),
            (CapLimit(None, 2, 86400), DEFAULT_CAP),
        }
    ]


# Under a default of one email a day: `late` goes exactly a day after `first` (outside its
# period), `early` a second before that (inside it).
EDGES = """
template first email { subject "1" body "x" }
template early email { subject "2" body "x" }
template late email { subject "3" body "x" }
campaign one { on launch { send email first } }
campaign two { on launch { wait 23h59m59s  send email early } }
campaign three { on launch { wait 1d  send email late } }
"""


def test_a_send_a_second_inside_the_caps_period_counts_one_at_its_edge_does_not(
    store_url: str, caps_backend: str
) -> None:
    # The batch reads only the sends within the cap's period of its instant: the edges hold.
    delivered, skips = _run(store_url, EDGES, default_cap=CapLimit("email", 1, 86400))
    assert delivered == [("email", "first"), ("email", "late")]
    assert skips == [("send_early", "default cap email 1 per 1d reached")]
