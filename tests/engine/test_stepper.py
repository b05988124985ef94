"""The stepper: each kind of node moves an enrollment as LANGUAGE.md says, with no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cadence.dsl import compiled as c
from cadence.dsl.compiler import compile_workspace
from cadence.dsl.loader import load_text
from cadence.engine.stepper import Advance, SendGate, ab_slot, advance, bucket, split_branch

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # a Tuesday


def compile_one(source: str, name: str | None = None) -> c.CompiledCampaign:
    """Compile a program and return its one campaign (or the one named)."""
    campaigns = compile_workspace(load_text(source, "t.cadence"))
    if name is not None:
        return next(campaign for campaign in campaigns if campaign.name == name)
    (campaign,) = campaigns
    return campaign


@dataclass
class FakeEnv:
    """A world where conditions are looked up by their text and every send is allowed."""

    now: dt.datetime = T0
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    truths: dict[str, bool] = field(default_factory=dict)
    events: list[tuple[str, dt.datetime]] = field(default_factory=list)
    gate: Callable[[str], SendGate] = lambda channel: SendGate.allow()
    winner: str | None = None
    # Arrivals per A/B split; share one dict between envs to number contacts in turn.
    arrivals: dict[str, int] = field(default_factory=dict)

    def holds(self, expr: c.ExprModel) -> bool:
        return self.truths.get(_text(expr), False)

    def in_audience(self, expr: c.ExprModel) -> bool:
        return self.holds(expr)

    def value(self, expr: c.ExprModel) -> Any:
        return expr.model_dump(mode="json").get("value")

    def event_since(self, expr: c.ExprModel, since: dt.datetime) -> bool:
        return any(name == _text(expr) and at >= since for name, at in self.events)

    def send_gate(self, channel: str, template: str) -> SendGate:
        return self.gate(channel)

    def ab_winner(self, node: c.ABSplitNode) -> str | None:
        return self.winner

    def split_arrival(self, node: c.ABSplitNode | c.RandomSplitNode) -> int:
        place = self.arrivals.get(node.id, 0)
        self.arrivals[node.id] = place + 1
        return place


def _text(expr: c.ExprModel) -> str:
    from cadence.dsl.compiler import expr_text

    return expr_text(c.model_to_expr(expr))


def run(
    campaign: c.CompiledCampaign, env: FakeEnv, node: str | None = None, state: Any = None
) -> Advance:
    start = node if node is not None else campaign.triggers[0].entry
    return advance(campaign, start, dict(state or {}), "c1", env)


WELCOME = """
template welcome email { subject "Hi" body "<p>Hi</p>" }
template engaged email { subject "Yay" body "<p>x</p>" }
template nudge email { subject "Nudge" body "<p>x</p>" }
campaign welcome_series {
  on contact_created {
    send email welcome
    wait 2d
    if opened(welcome) { send email engaged } else { wait 1d  send email nudge }
  }
}
"""


def test_send_then_wait_sleeps_with_due_time() -> None:
    campaign = compile_one(WELCOME)
    result = run(campaign, FakeEnv())
    assert [s.template for s in result.effects.sends] == ["welcome"]
    assert result.status == "active"
    assert result.node == "wait_2d"
    assert result.due_at == T0 + dt.timedelta(days=2)
    assert result.state["sends"] == 1


def test_wait_resumes_only_when_due() -> None:
    campaign = compile_one(WELCOME)
    first = run(campaign, FakeEnv())
    early = run(campaign, FakeEnv(now=T0 + dt.timedelta(days=1)), first.node, first.state)
    assert early.node == "wait_2d" and early.due_at == first.due_at and not early.effects.sends
    later = FakeEnv(now=T0 + dt.timedelta(days=2), truths={"opened(welcome)": True})
    done = run(campaign, later, first.node, first.state)
    assert [s.template for s in done.effects.sends] == ["engaged"]
    assert done.status == "completed"


def test_else_branch_waits_then_sends() -> None:
    campaign = compile_one(WELCOME)
    first = run(campaign, FakeEnv())
    at_branch = run(campaign, FakeEnv(now=T0 + dt.timedelta(days=2)), first.node, first.state)
    assert at_branch.node == "wait_1d" and not at_branch.effects.sends
    final = run(campaign, FakeEnv(now=T0 + dt.timedelta(days=3)), at_branch.node, at_branch.state)
    assert [s.template for s in final.effects.sends] == ["nudge"]


def test_goal_exits_before_any_step() -> None:
    campaign = compile_one(
        WELCOME.replace("campaign welcome_series {", "campaign w { goal converted")
    )
    result = run(campaign, FakeEnv(truths={"converted": True}))
    assert result.status == "exited" and not result.effects.sends
    assert result.history[-1][2] == "goal reached"


def test_exit_step_and_reason() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\n'
        'on launch { send email t  exit "moved to sales" }'
    )
    result = run(campaign, FakeEnv())
    assert result.status == "exited" and result.history[-1][2] == "moved to sales"


def test_wait_for_resumes_early_on_the_event() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\ntemplate u email { subject "s" body "b" }\n'
        "on launch { send email t  wait for clicked(t) up to 3d  send email u }"
    )
    first = run(campaign, FakeEnv())
    assert first.due_at == T0 + dt.timedelta(days=3)
    clicked = FakeEnv(
        now=T0 + dt.timedelta(hours=5), events=[("clicked(t)", T0 + dt.timedelta(hours=4))]
    )
    result = run(campaign, clicked, first.node, first.state)
    assert [s.template for s in result.effects.sends] == ["u"]
    assert ["event arrived" in h[2] for h in result.history].count(True) == 1


def test_wait_for_times_out_and_goes_on() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\ntemplate u email { subject "s" body "b" }\n'
        "on launch { send email t  wait for clicked(t) up to 3d  send email u }"
    )
    first = run(campaign, FakeEnv())
    woken_early = run(campaign, FakeEnv(now=T0 + dt.timedelta(days=1)), first.node, first.state)
    assert woken_early.due_at == T0 + dt.timedelta(days=3) and not woken_early.effects.sends
    timeout = run(campaign, FakeEnv(now=T0 + dt.timedelta(days=3)), first.node, first.state)
    assert [s.template for s in timeout.effects.sends] == ["u"]
    assert any(h[2] == "timed out" for h in timeout.history)


def test_a_day_of_waiting_is_24_hours_across_a_daylight_saving_change() -> None:
    """docs/semantics.md: `wait 1d` is elapsed time, in every zone; 09:00 on the Saturday
    before New York springs forward is followed by 10:00 on the Sunday."""
    campaign = compile_one(
        'template t email { subject "s" body "b" }\non launch { wait 1d  send email t }'
    )
    saturday_nine = dt.datetime(2026, 3, 7, 14, 0, tzinfo=dt.UTC)
    new_york = ZoneInfo("America/New_York")
    result = run(campaign, FakeEnv(now=saturday_nine, zone=new_york))
    assert result.due_at == saturday_nine + dt.timedelta(hours=24)
    assert result.due_at.astimezone(new_york).hour == 10


def test_wait_until_local_time() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\n'
        "on launch { wait until 09:00 local  send email t }"
    )
    manila = ZoneInfo("Asia/Manila")  # UTC+8: 09:00 UTC is 17:00 there, so next 09:00 is tomorrow
    result = run(campaign, FakeEnv(zone=manila))
    assert result.due_at == dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)


def test_send_window_defers_the_send_to_the_next_opening() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\n'
        "campaign c { send_window 10:00-18:00 local weekdays  on launch { send email t } }"
    )
    result = run(campaign, FakeEnv())
    assert result.node == "send_t" and not result.effects.sends
    assert result.due_at == T0 + dt.timedelta(hours=1)
    later = run(campaign, FakeEnv(now=T0 + dt.timedelta(hours=1)), result.node, result.state)
    assert [s.template for s in later.effects.sends] == ["t"]


def test_quiet_hours_only_hold_their_channel() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\ntemplate m sms "hi"\n'
        "campaign c { quiet_hours sms 21:00-08:00 local  on launch { send email t  send sms m } }"
    )
    night = FakeEnv(now=dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC))
    result = run(campaign, night)
    assert [s.template for s in result.effects.sends] == ["t"]
    assert result.node == "send_m"
    assert result.due_at == dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)


def test_a_refused_send_is_skipped_and_the_flow_goes_on() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\ntemplate u email { subject "s" body "b" }\n'
        "on launch { send email t  send email u }"
    )
    env = FakeEnv(gate=lambda channel: SendGate.skip("suppressed"))
    result = run(campaign, env)
    assert not result.effects.sends
    assert result.effects.skipped_sends == [("send_t", "suppressed"), ("send_u", "suppressed")]
    assert result.status == "completed"


def test_every_allowed_send_shares_one_immutable_answer() -> None:
    """The gate's "go" is made once: each enrollment that sends is handed the same answer."""
    assert SendGate.allow() is SendGate.allow()
    assert SendGate.allow() == SendGate(True)
    assert SendGate.skip("suppressed") is not SendGate.skip("suppressed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        SendGate.allow().allowed = False  # type: ignore[misc]


def test_a_send_that_pauses_the_campaign_waits_at_its_step_neither_sent_nor_skipped() -> None:
    campaign = compile_one(
        'template t email { subject "s" body "b" }\ntemplate u email { subject "s" body "b" }\n'
        "on launch { send email t  send email u }"
    )
    answers = iter([SendGate.allow(), SendGate.pause_campaign("budget 1 USD spent")])
    result = run(campaign, FakeEnv(gate=lambda channel: next(answers)))
    # The first send went; the second waits at its step, due again as soon as it may run.
    assert [s.template for s in result.effects.sends] == ["t"]
    assert not result.effects.skipped_sends
    assert result.effects.pause_campaign == "budget 1 USD spent"
    assert (result.node, result.status, result.due_at) == ("send_u", "active", T0)
    assert result.history[-1][1:] == ["send_u", "held: budget 1 USD spent; campaign paused"]
    # Run again from there (the campaign resumed) with the send allowed: it goes, once.
    again = run(campaign, FakeEnv(), node=result.node, state=result.state)
    assert [s.template for s in again.effects.sends] == ["u"]
    assert again.status == "completed" and again.state["sends"] == 2


def test_max_sends_is_enforced_at_run_time() -> None:
    sends = "  ".join(f"send email t{i}" for i in range(3))
    templates = "".join(f'template t{i} email {{ subject "s" body "b" }}\n' for i in range(3))
    campaign = compile_one(templates + f"campaign c {{ max_sends 2  on launch {{ {sends} }} }}")
    result = run(campaign, FakeEnv())
    assert [s.template for s in result.effects.sends] == ["t0", "t1"]
    assert result.effects.skipped_sends == [("send_t2", "max_sends reached")]


def test_random_split_follows_its_shares_exactly() -> None:
    campaign = compile_one(
        'template a email { subject "s" body "b" }\ntemplate b email { subject "s" body "b" }\n'
        "on launch { split { a 30%: send email a  b 70%: send email b } }"
    )
    arrivals: dict[str, int] = {}
    counts = {"a": 0, "b": 0}
    for index in range(2000):
        result = advance(
            campaign, campaign.triggers[0].entry, {}, f"c{index}", FakeEnv(arrivals=arrivals)
        )
        counts[result.effects.sends[0].template] += 1
        assert result.effects.sends[0].variant == result.effects.sends[0].template
        assert counts["a"] - (index + 1) * 3 // 10 in (0, 1)
    assert counts == {"a": 600, "b": 1400}


@pytest.mark.parametrize(
    ("shares", "arrivals"),
    [((10, 45, 45), 1000), ((33.3, 33.3, 33.4), 250), ((5, 0, 95), 77), ((25, 25, 25, 25), 10)],
)
def test_split_branch_gives_each_branch_its_share_within_two(
    shares: tuple[float, ...], arrivals: int
) -> None:
    arms = "  ".join(f'v{i} {share}%: tag add "v{i}"' for i, share in enumerate(shares))
    campaign = compile_one(f"on launch {{ split {{ {arms} }} }}")
    (node,) = [n for n in campaign.nodes if isinstance(n, c.RandomSplitNode)]
    branches = [split_branch(campaign.name, node, place) for place in range(arrivals)]
    counts = Counter(branches)
    for index, share in enumerate(shares):
        assert abs(counts[index] - arrivals * share / 100) <= 2
    # The same place always gets the same branch (a restart, another engine).
    assert branches == [split_branch(campaign.name, node, place) for place in range(arrivals)]


AB = """
template offer_a email { subject "A" body "b" }
template offer_b email { subject "B" body "b" }
on launch {
  split 20% test winner by opens after 4h { a: send email offer_a  b: send email offer_b }
}
"""


def test_ab_split_tests_an_exact_share_and_holds_the_rest() -> None:
    campaign = compile_one(AB)
    arrivals: dict[str, int] = {}
    tested: Counter[str] = Counter()
    held = 0
    for index in range(1000):
        env = FakeEnv(arrivals=arrivals)
        result = advance(campaign, campaign.triggers[0].entry, {}, f"c{index}", env)
        if result.effects.sends:
            tested[result.effects.sends[0].variant or ""] += 1
        else:
            held += 1
            assert result.due_at == T0 + dt.timedelta(hours=4)
        # At every point, 20% of the arrivals so far (rounded down, or one more).
        assert sum(tested.values()) - (index + 1) // 5 in (0, 1)
        assert abs(tested["a"] - tested["b"]) <= 1
    assert tested == Counter({"a": 100, "b": 100}) and held == 800


@pytest.mark.parametrize(
    ("share", "variants", "arrivals"), [(20, 2, 100), (30, 3, 71), (12.5, 2, 40), (50, 4, 9)]
)
def test_ab_slot_puts_an_exact_share_in_the_test_in_equal_parts(
    share: float, variants: int, arrivals: int
) -> None:
    arms = "  ".join(f"v{i}: send email offer_a" for i in range(variants))
    campaign = compile_one(
        'template offer_a email { subject "A" body "b" }\n'
        f"on launch {{ split {share}% test winner by opens after 4h {{ {arms} }} }}"
    )
    (node,) = [n for n in campaign.nodes if isinstance(n, c.ABSplitNode)]
    slots = [ab_slot(campaign.name, node, place) for place in range(arrivals)]
    in_test = [s for s in slots if s is not None]
    expected = arrivals * share / 100
    assert int(expected) <= len(in_test) <= int(expected) + 1
    counts = Counter(in_test)
    assert set(counts) <= set(range(variants))
    assert max(counts.values()) - min(counts.get(v, 0) for v in range(variants)) <= 1
    # The same place always gets the same answer (a restart, another engine).
    assert slots == [ab_slot(campaign.name, node, place) for place in range(arrivals)]


def test_a_held_contact_asking_again_is_not_counted_twice() -> None:
    campaign = compile_one(AB)
    arrivals: dict[str, int] = {}
    waiting = None
    for index in range(10):
        result = advance(
            campaign, campaign.triggers[0].entry, {}, f"c{index}", FakeEnv(arrivals=arrivals)
        )
        if not result.effects.sends:
            waiting = result
    assert waiting is not None and arrivals == {"ab_split_1": 10}
    # The test is over but no winner can be named yet: ask again later, not a new place.
    later = FakeEnv(now=T0 + dt.timedelta(hours=4), arrivals=arrivals)
    again = advance(campaign, waiting.node, waiting.state, "c9", later)
    assert not again.effects.sends and again.due_at == T0 + dt.timedelta(hours=5)
    assert arrivals == {"ab_split_1": 10}


def test_held_contacts_get_the_winner() -> None:
    campaign = compile_one(AB)
    arrivals: dict[str, int] = {}
    held = next(
        (cid, r)
        for cid, r in (
            (
                f"c{i}",
                advance(
                    campaign, campaign.triggers[0].entry, {}, f"c{i}", FakeEnv(arrivals=arrivals)
                ),
            )
            for i in range(100)
        )
        if not r.effects.sends
    )
    contact_id, waiting = held
    later = FakeEnv(now=T0 + dt.timedelta(hours=4), winner="b")
    result = advance(campaign, waiting.node, waiting.state, contact_id, later)
    assert [s.template for s in result.effects.sends] == ["offer_b"]
    assert result.effects.sends[0].variant == "b"


def test_effects_of_set_tag_assign_notify_enroll() -> None:
    campaign = compile_one(
        "campaign other { on launch { exit } }\n"
        'on launch { set lead_stage = "nurture"  tag add "vip"  tag remove "cold"'
        '  assign agent round_robin  notify webhook "https://hooks.example.test/x"  enroll other }',
        name="t_launch",
    )
    result = advance(campaign, campaign.triggers[0].entry, {}, "c1", FakeEnv())
    effects = result.effects
    assert effects.attributes == {"lead_stage": "nurture"}
    assert effects.tags_added == ["vip"] and effects.tags_removed == ["cold"]
    assert effects.assign_agent == "round_robin"
    assert effects.notifications == [("notify_webhook", "webhook", "https://hooks.example.test/x")]
    assert effects.enroll == ["other"]


def test_campaign_ends_exit_and_starts_defer() -> None:
    source = (
        'template t email { subject "s" body "b" }\n'
        "campaign c { starts 2026-12-05  ends 2026-12-20  on launch { send email t } }"
    )
    campaign = compile_one(source)
    early = run(campaign, FakeEnv())
    assert early.due_at == dt.datetime(2026, 12, 5, tzinfo=dt.UTC) and not early.effects.sends
    late = run(campaign, FakeEnv(now=dt.datetime(2026, 12, 21, tzinfo=dt.UTC)))
    assert late.status == "exited" and late.history[-1][2] == "campaign ended"


@pytest.mark.parametrize("parts", [("a",), ("a", "b"), ("x", "y", "z")])
def test_bucket_is_stable_and_in_range(parts: tuple[str, ...]) -> None:
    assert bucket(*parts) == bucket(*parts)
    assert 0 <= bucket(*parts) < 100


def test_a_run_booked_ahead_never_starts_early() -> None:
    campaign = compile_one('template t email { subject "s" body "b" }\non launch { send email t }')
    booked = (T0 + dt.timedelta(days=2)).isoformat()
    early = run(campaign, FakeEnv(), state={"not_before": booked})
    assert early.due_at == T0 + dt.timedelta(days=2) and not early.effects.sends
    on_time = run(campaign, FakeEnv(now=T0 + dt.timedelta(days=2)), state={"not_before": booked})
    assert [s.template for s in on_time.effects.sends] == ["t"]
    assert "not_before" not in on_time.state
