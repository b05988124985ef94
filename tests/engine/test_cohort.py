"""The cohort memo gives every enrollment the stepper's own result, asking each question once."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from cadence.dsl import compiled as c
from cadence.engine import cohort
from cadence.engine.cohort import CohortMemo
from cadence.engine.stepper import Advance, SendGate, advance
from tests.engine.test_stepper import T0, WELCOME, FakeEnv, compile_one


@dataclass
class LoggedEnv(FakeEnv):
    """A FakeEnv that notes every question asked of it, in order."""

    log: list[tuple[str, Any]] = field(default_factory=list)

    def holds(self, expr: c.ExprModel) -> bool:
        answer = super().holds(expr)
        self.log.append(("holds", answer))
        return answer

    def send_gate(self, channel: str, template: str) -> SendGate:
        answer = super().send_gate(channel, template)
        self.log.append(("send_gate", channel))
        return answer

    def split_arrival(self, node: c.ABSplitNode | c.RandomSplitNode) -> int:
        place = super().split_arrival(node)
        self.log.append(("split_arrival", place))
        return place

    def value(self, expr: c.ExprModel) -> Any:
        self.log.append(("value", None))
        return super().value(expr)


def as_data(result: Advance) -> dict[str, Any]:
    """Everything a result says, comparable."""
    effects = result.effects
    return {
        "node": result.node, "status": result.status, "due_at": result.due_at,
        "state": result.state, "history": result.history, "sends": effects.sends,
        "skipped": effects.skipped_sends, "attributes": effects.attributes,
        "tags": (effects.tags_added, effects.tags_removed), "pause": effects.pause_campaign,
    }  # fmt: skip


def step_both(
    campaign: c.CompiledCampaign, node: str, state: dict[str, Any], envs: list[Any]
) -> tuple[list[Advance], list[Advance], list[list[Any]], list[list[Any]]]:
    """Each env through the memo and, on a twin env, through the stepper alone."""
    memo = CohortMemo()
    text = orjson.dumps(state).decode()
    memoised, direct, memo_logs, direct_logs = [], [], [], []
    for index, make in enumerate(envs):
        env, twin = make(), make()
        result, state_text = memo.advance(
            (1, node, text), campaign, orjson.loads(text), f"c{index}", env
        )
        assert orjson.loads(str(state_text)) == result.state
        memoised.append(result)
        memo_logs.append(env.log)
        direct.append(advance(campaign, node, orjson.loads(text), f"c{index}", twin))
        direct_logs.append(twin.log)
    return memoised, direct, memo_logs, direct_logs


def test_a_cohort_with_different_answers_gets_different_results() -> None:
    campaign = compile_one(WELCOME)
    branch = next(n.id for n in campaign.nodes if isinstance(n, c.BranchNode))
    wait = next(n.id for n in campaign.nodes if isinstance(n, c.WaitNode))
    state = {"arrived": [wait, T0.isoformat(), T0.isoformat()], "sends": 1}
    opened = {"opened(welcome)": True}
    envs = [
        lambda: LoggedEnv(),
        lambda: LoggedEnv(truths=opened),
        lambda: LoggedEnv(),
        lambda: LoggedEnv(truths=opened),
    ]
    memoised, direct, memo_logs, direct_logs = step_both(campaign, wait, state, envs)
    assert [as_data(r) for r in memoised] == [as_data(r) for r in direct]
    assert memo_logs == direct_logs  # each question asked once, in the stepper's order
    assert as_data(memoised[0]) != as_data(memoised[1])
    assert [[s.template for s in r.effects.sends] for r in memoised] == [
        [],
        ["engaged"],
        [],
        ["engaged"],
    ]
    assert branch in str(memoised[1].history)


def test_gates_are_asked_once_each_and_a_refusal_is_not_reused() -> None:
    campaign = compile_one(WELCOME)
    entry = campaign.triggers[0].entry
    refused = SendGate.skip("suppressed")
    envs = [
        (lambda gate=gate: LoggedEnv(gate=lambda channel: gate))
        for gate in [SendGate.allow(), refused, SendGate.allow(), refused, SendGate.allow()]
    ]
    memoised, direct, memo_logs, direct_logs = step_both(campaign, entry, {}, envs)
    assert [as_data(r) for r in memoised] == [as_data(r) for r in direct]
    assert memo_logs == direct_logs
    assert [len(r.effects.sends) for r in memoised] == [1, 0, 1, 0, 1]


def test_random_answers_over_a_cohort_match_the_stepper(monkeypatch: pytest.MonkeyPatch) -> None:
    source = (
        'template a email { subject "s" body "b" }\ntemplate b email { subject "s" body "b" }\n'
        'segment vip = contact.plan == "pro"\n'
        "campaign x { goal converted(a)\n on launch {\n"
        '  if vip { send email a } else { tag add "plain"\n send email b }\n'
        '  wait 1d\n if opened(a) and vip { send email b } else { exit "no" } } }'
    )
    campaign = compile_one(source)
    entry = campaign.triggers[0].entry
    draw = random.Random(7)
    envs = []
    for _ in range(200):
        truths = {
            text: draw.random() < 0.5 for text in ("vip", "converted(a)", "opened(a) and vip")
        }
        gate = SendGate.allow() if draw.random() < 0.8 else SendGate.skip("no consent")
        envs.append(lambda truths=truths, gate=gate: LoggedEnv(truths=truths, gate=lambda _: gate))
    runs = []

    def counted(*args: Any) -> Advance:
        runs.append(args[3])
        return advance(*args)

    monkeypatch.setattr(cohort, "advance", counted)
    memoised, direct, memo_logs, direct_logs = step_both(campaign, entry, {}, envs)
    assert [as_data(r) for r in memoised] == [as_data(r) for r in direct]
    assert memo_logs == direct_logs
    assert len(runs) < 20  # the stepper ran once per path of answers, not per enrollment


def test_splits_count_each_arrival_once_and_are_not_reused() -> None:
    campaign = compile_one(
        'template a email { subject "s" body "b" }\ntemplate b email { subject "s" body "b" }\n'
        "on launch { split { a 30%: send email a  b 70%: send email b } }"
    )
    entry = campaign.triggers[0].entry
    arrivals: dict[str, int] = {}
    twin_arrivals: dict[str, int] = {}
    memo = CohortMemo()
    for index in range(50):
        env = LoggedEnv(arrivals=arrivals)
        result, _ = memo.advance((1, entry, "{}"), campaign, {}, f"c{index}", env)
        twin = LoggedEnv(arrivals=twin_arrivals)
        expected = advance(campaign, entry, {}, f"c{index}", twin)
        assert as_data(result) == as_data(expected)
        assert env.log == twin.log
    assert arrivals == twin_arrivals == {next(iter(arrivals)): 50}


def test_reuses_share_one_result_decoded_from_its_json() -> None:
    campaign = compile_one(WELCOME)
    entry = campaign.triggers[0].entry
    memo = CohortMemo()
    first, first_text = memo.advance((1, entry, "{}"), campaign, {}, "c1", FakeEnv())
    second, _ = memo.advance((1, entry, "{}"), campaign, {}, "c2", FakeEnv())
    third, third_text = memo.advance((1, entry, "{}"), campaign, {}, "c3", FakeEnv())
    # Shared, read-only: the runtime never changes a result it is handed (it builds its own).
    assert second is third
    assert as_data(second) == as_data(first)
    assert second.state == orjson.loads(str(first_text)) and str(third_text) == str(first_text)


def test_a_zone_that_differs_is_a_different_answer() -> None:
    campaign = compile_one(
        'template a email { subject "s" body "b" }\n'
        "campaign z { send_window 09:00-17:00 local\n on launch { send email a } }"
    )
    entry = campaign.triggers[0].entry
    memo = CohortMemo()
    zones = ["UTC", "America/New_York", "UTC", "Asia/Tokyo", "America/New_York"]
    for index, name in enumerate(zones):
        env = FakeEnv(zone=ZoneInfo(name), now=T0 + dt.timedelta(hours=1))
        result, _ = memo.advance((1, entry, "{}"), campaign, {}, f"c{index}", env)
        expected = advance(campaign, entry, {}, f"c{index}", env)
        assert as_data(result) == as_data(expected)
