"""What a batch of steps reads: loading only those facts must never change a step's outcome."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.compiler import compile_paths, compile_workspace
from cadence.dsl.loader import load_text
from cadence.dsl.parser import parse_text
from cadence.dsl.symbols import DEFAULT_CAP, CapLimit
from cadence.engine.conditions import StepContext
from cadence.engine.facts import (
    ALL,
    CAMPAIGNS,
    CAP_SENDS,
    EVENTS,
    SENDS,
    STANDARD_FIELDS,
    ContactFacts,
    EventFact,
)
from cadence.engine.reads import (
    WITHOUT_CREATED_AT,
    batch_fields,
    batch_reads,
    cap_sends_within,
    expr_reads,
    node_reads,
    reads_event,
)
from cadence.engine.stepper import SendGate, advance
from cadence.errors import CadenceError
from tests.language_md import as_program, language_blocks

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def parse_expression(text: str) -> ast.Expr:
    """An expression, parsed as the definition of a segment."""
    (declaration,) = parse_text(f"segment probe = {text}\n").declarations
    assert isinstance(declaration, ast.SegmentDecl)
    return declaration.expr


def reads_of(
    text: str, segments: dict[str, str] | None = None, scores: set[str] | None = None
) -> frozenset[str]:
    parsed = {name: parse_expression(expr) for name, expr in (segments or {}).items()}
    return expr_reads(parse_expression(text), parsed, scores or set())


def test_expressions_read_what_their_functions_and_names_read() -> None:
    assert reads_of('lead_score > 50 and country in ["US", "CA"]') == frozenset()
    assert reads_of("contact.lead_score > 50") == frozenset()
    assert reads_of("opened(welcome)") == {EVENTS}
    assert reads_of("count(purchase, 30d) >= 2") == {EVENTS}
    assert reads_of("not received(email, 1d)") == {SENDS}
    assert reads_of("in_campaign(onboarding)") == {CAMPAIGNS}
    assert reads_of("converted") == {EVENTS}
    assert reads_of("lead_score > 5 or last(login) within 7d") == {EVENTS}
    # A segment reads what its definition reads, also through another segment.
    segments = {"hot": "warm and clicked(any)", "warm": "lead_score > 30"}
    assert reads_of("hot", segments) == {EVENTS}
    assert reads_of("warm", segments) == frozenset()
    # A score is computed from events; a name that is neither is an attribute.
    assert reads_of("engagement > 10", scores={"engagement"}) == {EVENTS}
    assert reads_of("engagement > 10") == frozenset()


def test_a_node_reads_until_the_next_wait() -> None:
    (campaign,) = compile_workspace(
        load_text(
            """
template a email { subject "A" body "x" }
campaign drip {
  cap email 3 per 7d
  on launch {
    send email a
    wait 2d
    if opened(a) { send email a } else { set stage = "cold" }
    wait for clicked(a) up to 3d
    exit "done"
  }
}
""",
            "t.cadence",
        )
    )
    entry = campaign.triggers[0].entry
    # The entry sends (caps read the send history near it), then waits: nothing past it.
    assert node_reads(campaign, entry) == {CAP_SENDS}
    (wait,) = [n.id for n in campaign.nodes if isinstance(n, c.WaitNode)]
    # Waking at the wait runs the branch on opened(a) and a capped send, up to `wait for`.
    assert node_reads(campaign, wait) == {EVENTS, CAP_SENDS}
    (wait_for,) = [n.id for n in campaign.nodes if isinstance(n, c.WaitForNode)]
    assert node_reads(campaign, wait_for) == {EVENTS}
    assert batch_reads([(campaign, entry), (campaign, entry)]) == {CAP_SENDS}
    assert batch_reads([(campaign, entry), (campaign, wait_for)]) == {EVENTS, CAP_SENDS}


def test_a_send_under_the_default_cap_reads_the_send_history() -> None:
    """An email of a campaign with no caps is checked against the default cap, which counts
    the contact's sends: loading none would let a 4th email of the week through."""
    (campaign,) = compile_workspace(
        load_text(
            """
template a email { subject "A" body "x" }
template t sms "Hi"
campaign plain { on launch { send email a  wait 1d  send sms t } }
""",
            "t.cadence",
        )
    )
    entry = campaign.triggers[0].entry
    (wait,) = [n.id for n in campaign.nodes if isinstance(n, c.WaitNode)]
    assert node_reads(campaign, entry) == {CAP_SENDS}
    assert batch_reads([(campaign, entry)], None) == frozenset()
    # SMS has no default cap: an SMS-only wake reads nothing, unless a cap covers SMS.
    assert node_reads(campaign, wait) == frozenset()
    assert node_reads(campaign, wait, CapLimit(None, 5, 86400)) == {CAP_SENDS}


def test_a_batch_reads_the_sends_within_its_widest_cap_either_side_of_now() -> None:
    """Caps count the sends strictly within their period of the instant they are asked at:
    the batch reads the widest cap's stretch, unless a step reads `received` (all sends)."""
    source = """
template a email { subject "A" body "x" }
campaign plain { on launch { send email a } }
campaign roomy { cap sms 2 per 10d  on launch { send email a } }
campaign recent { on launch { if received(email, 1d) { send email a } } }
"""
    compiled = {campaign.name: campaign for campaign in compile_workspace(load_text(source, "t"))}
    plain, roomy, recent = compiled["plain"], compiled["roomy"], compiled["recent"]
    day = dt.timedelta(days=1)
    kinds = batch_reads([(plain, plain.triggers[0].entry)])
    assert cap_sends_within(kinds, [plain], DEFAULT_CAP, T0) == (T0 - 7 * day, T0 + 7 * day)
    both = batch_reads([(plain, plain.triggers[0].entry), (roomy, roomy.triggers[0].entry)])
    within = cap_sends_within(both, [plain, roomy], DEFAULT_CAP, T0)
    assert within == (T0 - 10 * day, T0 + 10 * day)
    assert cap_sends_within(both, [plain], CapLimit("email", 1, 3600), T0) == (
        T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=1),
    )  # fmt: skip
    reading = batch_reads([(plain, plain.triggers[0].entry), (recent, recent.triggers[0].entry)])
    assert SENDS in reading
    assert cap_sends_within(reading, [plain, recent], DEFAULT_CAP, T0) is None
    assert cap_sends_within(frozenset({EVENTS}), [plain], DEFAULT_CAP, T0) is None


def test_a_wait_for_already_met_is_no_stop() -> None:
    """`wait for` a click that already came goes on at once: what follows is read too."""
    (campaign,) = compile_workspace(
        load_text(
            """
template a email { subject "A" body "x" }
campaign met {
  on launch {
    send email a
    wait 1d
    wait for clicked(a) up to 2d
    if received(email, 3d) { tag add "recent" } else { tag add "quiet" }
  }
}
""",
            "t.cadence",
        )
    )
    (wait,) = [n.id for n in campaign.nodes if isinstance(n, c.WaitNode)]
    assert node_reads(campaign, wait) == {EVENTS, SENDS}
    clicked = EventFact("clicked", T0 - dt.timedelta(hours=2), {"template": "a"})
    sent = ("email", "a", T0 - dt.timedelta(days=1))
    contact = CONTACTS[0]
    full = _facts(contact, [clicked], [sent], set())
    kinds = node_reads(campaign, wait)
    pruned = _facts(contact, [clicked], [sent] if SENDS in kinds else [], set())
    state = _state_at(campaign, wait)
    outcome = _outcome(campaign, wait, full, dict(state))
    assert outcome[5].tags_added == ["recent"]
    assert _outcome(campaign, wait, pruned, dict(state)) == outcome


def test_the_goal_is_read_at_every_node() -> None:
    campaigns = compile_workspace(
        load_text(
            'campaign plain { goal converted  on launch { wait 1d  set stage = "x" } }',
            "t.cadence",
        )
    )
    (campaign,) = campaigns
    for node in campaign.nodes:
        assert node_reads(campaign, node.id) == {EVENTS}
    assert batch_reads([(campaign, None)]) == {EVENTS}


EVERY_KIND = """
segment warm = lead_score > 30 and clicked(any) within 30d
score engagement {
  opened(any) within 30d: +5 each
  clicked(any) within 30d: +10 each
}
template a email { subject "A" body "x" }
campaign every_kind {
  goal converted
  cap email 2 per 7d
  on launch {
    if in_campaign(onboarding) { set seen = "onboarding" }
    if received(email, 3d) { tag add "recent" } else if warm { set stage = "warm" }
    if engagement > 12 { send email a }
    set lead_score = lead_score + 1
    wait 1d
    wait for purchase up to 2d
    send email a
  }
}
"""


NAMES_CREATED_AT = """
campaign newcomers {
  on launch {
    if contact.created_at within 7d { tag add "new" } else { tag add "old" }
    wait 1d
    tag add "done"
  }
}
"""


def test_created_at_is_read_only_for_campaigns_that_name_it() -> None:
    (newcomers,) = compile_workspace(load_text(NAMES_CREATED_AT, "n.cadence"))
    (plain,) = compile_workspace(load_text(EVERY_KIND, "every_kind.cadence"))
    assert "created_at" not in WITHOUT_CREATED_AT
    assert set(STANDARD_FIELDS) - set(WITHOUT_CREATED_AT) == {"created_at"}
    assert batch_fields([plain, plain]) == WITHOUT_CREATED_AT
    assert batch_fields([plain, newcomers]) == STANDARD_FIELDS
    assert batch_fields([]) == WITHOUT_CREATED_AT


@pytest.mark.parametrize(
    ("body", "reads"),
    [
        ("send email t  wait 1d  if delivered(t) { send email t }", True),
        ("send email t  wait for delivered(any) up to 1d  send email t", True),
        ("send email t  wait for delivered up to 1d  send email t", True),
        ("send email t  wait 1d  if count(delivered, 7d) > 0 { send email t }", True),
        ("send email t  wait 1d  if last(delivered) within 1d { send email t }", True),
        ("send email t  wait 1d  if reached { send email t }", True),
        ("send email t  wait 1d  if points > 0 { send email t }", True),
        ("send email t  wait 1d  if opened(t) or bounced(t) { send email t }", False),
        ("send email delivery_note", False),
    ],
)
def test_a_campaign_reads_an_event_where_any_expression_or_trigger_names_it(
    body: str, reads: bool
) -> None:
    """Steps, segments, scores: `delivered(T)`, `count(delivered, D)`, `wait for delivered`;
    a template whose text says "delivered" reads nothing."""
    source = f"""
segment reached = delivered(any)
score points {{ delivered(any): +1 each }}
template t email {{ subject "Delivered" body "delivered" }}
template delivery_note email {{ subject "Your parcel was delivered" body "delivered" }}
campaign probe {{ on launch {{ {body} }} }}
"""
    (campaign,) = compile_workspace(load_text(source, "p.cadence"))
    assert reads_event(campaign, "delivered") is reads
    assert reads_event(campaign, "opened") is ("opened" in body)


def test_a_campaign_reads_an_event_its_trigger_or_settings_name() -> None:
    source = """
template t email { subject "T" body "x" }
campaign on_delivery { when delivered send email t }
campaign until_delivered { goal delivered(any)  on launch { send email t  wait 2d  send email t } }
campaign quiet { audience not bounced(any)  on launch { send email t } }
"""
    found = {
        campaign.name: campaign for campaign in compile_workspace(load_text(source, "s.cadence"))
    }
    assert reads_event(found["on_delivery"], "delivered")
    assert reads_event(found["until_delivered"], "delivered")
    assert not reads_event(found["quiet"], "delivered")
    assert reads_event(found["quiet"], "bounced")


def _campaigns() -> list[c.CompiledCampaign]:
    found = compile_paths(sorted((REPO / "examples").glob("*.cadence")))
    found.extend(compile_workspace(load_text(EVERY_KIND, "every_kind.cadence")))
    found.extend(compile_workspace(load_text(NAMES_CREATED_AT, "newcomers.cadence")))
    for block in language_blocks():
        program = as_program(block)
        if "campaign" not in program:
            program = f"campaign sketch {{\n{program}\n}}\n"
        try:
            found.extend(compile_workspace(load_text(program, "sketch.cadence")))
        except CadenceError:  # fragments that need other files are covered elsewhere
            continue
    return found


CAMPAIGNS_UNDER_TEST = _campaigns()
CONTACTS = [
    json.loads(line) for line in (REPO / "examples" / "contacts.jsonl").read_text().splitlines()
][:12]


def _facts(
    contact: dict[str, Any],
    events: list[EventFact],
    sends: list[Any],
    member: set[str],
    fields: tuple[str, ...] = STANDARD_FIELDS,
) -> ContactFacts:
    attributes = dict(contact.get("attributes") or {})
    for name in ("id", "email", "phone", "first_name", "last_name", "timezone", "locale"):
        attributes[name] = contact.get(name)
    attributes["tags"] = []
    if "created_at" in fields:
        attributes["created_at"] = T0 - dt.timedelta(days=3)
    return ContactFacts(contact["id"], attributes, list(events), list(sends), set(member))


def _outcome(
    campaign: c.CompiledCampaign, node: str, facts: ContactFacts, state: dict[str, Any]
) -> Any:
    env = StepContext(
        facts, campaign, T0, state, lambda _channel, _template: SendGate.allow(), lambda _n: None,
        lambda _n: 0,
    )  # fmt: skip
    result = advance(campaign, node, state, facts.id, env)
    return (result.node, result.status, result.due_at, result.state, result.history, result.effects)


def _state_at(campaign: c.CompiledCampaign, node_id: str) -> dict[str, Any]:
    """A state in which the wait at `node_id` (if it is one) is over."""
    node = campaign.node_map[node_id]
    if isinstance(node, c.WaitNode | c.WaitUntilNode | c.WaitForNode):
        since = (T0 - dt.timedelta(days=40)).isoformat()
        return {"arrived": [node_id, since, (T0 - dt.timedelta(seconds=1)).isoformat()]}
    return {}


names = st.sampled_from(
    ["opened", "clicked", "replied", "converted", "unsubscribed", "purchase", "property_viewed",
     "login", "course_enquiry", "application_started"]
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    campaign_index=st.integers(min_value=0, max_value=10_000),
    contact_index=st.integers(min_value=0, max_value=len(CONTACTS) - 1),
    raw_events=st.lists(
        st.tuples(names, st.integers(min_value=1, max_value=60 * 24 * 30), st.integers(0, 3)),
        max_size=8,
    ),
    raw_sends=st.lists(
        st.tuples(st.sampled_from(["email", "sms", "whatsapp"]), st.integers(1, 60 * 24 * 10)),
        max_size=5,
    ),
    member=st.sets(st.sampled_from(["welcome_series", "onboarding", "lead_nurturing"])),
)
def test_stepping_on_the_facts_it_reads_equals_stepping_on_all_facts(
    campaign_index: int,
    contact_index: int,
    raw_events: list[tuple[str, int, int]],
    raw_sends: list[tuple[str, int]],
    member: set[str],
) -> None:
    campaign = CAMPAIGNS_UNDER_TEST[campaign_index % len(CAMPAIGNS_UNDER_TEST)]
    templates = sorted(campaign.templates) or ["none"]
    events = sorted(
        (
            EventFact(name, T0 - dt.timedelta(minutes=minutes),
                      {"template": templates[pick % len(templates)], "campaign": campaign.name})
            for name, minutes, pick in raw_events
        ),
        key=lambda e: e.at,
    )  # fmt: skip
    sends = [(channel, None, T0 - dt.timedelta(minutes=m)) for channel, m in raw_sends]
    contact = CONTACTS[contact_index]
    for node in campaign.nodes:
        kinds = node_reads(campaign, node.id)
        within = cap_sends_within(kinds, [campaign], DEFAULT_CAP, T0)
        full = _facts(contact, events, sends, member)
        pruned = _facts(
            contact,
            events if EVENTS in kinds else [],
            (
                sends
                if SENDS in kinds or (CAP_SENDS in kinds and within is None)
                else [s for s in sends if within is not None and within[0] < s[2] < within[1]]
            ),
            member if CAMPAIGNS in kinds else set(),
            batch_fields([campaign]),
        )
        state = _state_at(campaign, node.id)
        assert _outcome(campaign, node.id, pruned, dict(state)) == _outcome(
            campaign, node.id, full, dict(state)
        ), f"{campaign.name} at {node.id} reads more than {sorted(kinds)}"


def test_the_campaigns_under_test_cover_every_fact_kind() -> None:
    """The differential test above means something only if its campaigns read each kind."""
    seen = set()
    for campaign in CAMPAIGNS_UNDER_TEST:
        for node in campaign.nodes:
            seen |= node_reads(campaign, node.id)
    assert seen == ALL | {CAP_SENDS}
