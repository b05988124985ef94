"""Which of a contact's facts a campaign's steps read, so a batch loads only those.

A step batch used to load every contact's events, sends and campaign memberships; most
wakes (a wait that ends in a send) read none of them, and loading them was the largest
single cost of stepping. The answer is an over-approximation: a fact kind is loaded when
any step the enrollment may run before its next wait could read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.symbols import DEFAULT_CAP, CapLimit
from cadence.engine.caps import caps_in_force
from cadence.engine.evaluate import ENGAGEMENT_FLAGS
from cadence.engine.facts import ALL, CAMPAIGNS, CAP_SENDS, EVENTS, SENDS, STANDARD_FIELDS

NONE: Final = frozenset[str]()

# Functions of the language and the facts each one reads (evaluate._call is their meaning).
_CALL_READS: Final[Mapping[str, frozenset[str]]] = {
    "received": frozenset({SENDS}),
    "in_campaign": frozenset({CAMPAIGNS}),
}
# A `wait for` is no stop: when its event already came ("already met") the step goes on.
_WAITS = (c.WaitNode, c.WaitUntilNode)

# The standard contact field no step reads unless its campaign names it: converting it
# (a timestamp) for every contact of every batch cost about 1% of a dry-run.
CREATED_AT: Final = "created_at"
WITHOUT_CREATED_AT: Final = tuple(name for name in STANDARD_FIELDS if name != CREATED_AT)
# Per campaign object, as `_BY_CAMPAIGN`: whether it names `created_at` anywhere.
_NAMES_CREATED_AT: dict[int, tuple[c.CompiledCampaign, bool]] = {}

# Per campaign object (kept alive with its answer, so its id is not reused): (node, default
# cap) -> reads.
_BY_CAMPAIGN: dict[
    int, tuple[c.CompiledCampaign, dict[tuple[str | None, CapLimit | None], frozenset[str]]]
] = {}


def expr_reads(
    expr: ast.Expr,
    segments: Mapping[str, ast.Expr],
    scores: Collection[str],
    _inside: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """The fact kinds an expression reads, following the segments it names."""
    match expr:
        case ast.Call(name=name, args=args):
            found = _CALL_READS.get(name, frozenset({EVENTS}))
            for arg in args:
                found |= expr_reads(arg, segments, scores, _inside)
            return found
        case ast.Path(parts=(name,)):
            if name in segments and name not in _inside:
                return expr_reads(segments[name], segments, scores, _inside | {name})
            if name in scores or name in ENGAGEMENT_FLAGS:
                return frozenset({EVENTS})
            return NONE
        case ast.Unary(operand=operand) | ast.Within(operand=operand):
            return expr_reads(operand, segments, scores, _inside)
        case ast.Binary(left=left, right=right) | ast.Compare(left=left, right=right):
            return expr_reads(left, segments, scores, _inside) | expr_reads(
                right, segments, scores, _inside
            )
        case ast.ListLit(items=items):
            found = NONE
            for item in items:
                found |= expr_reads(item, segments, scores, _inside)
            return found
        case _:
            return NONE


def node_reads(
    campaign: c.CompiledCampaign, node_id: str | None, default_cap: CapLimit | None = DEFAULT_CAP
) -> frozenset[str]:
    """What an enrollment at `node_id` may read until it next waits (goal checks included),
    under the engine's `default_cap` (a capped send reads the contact's sends)."""
    cached = _BY_CAMPAIGN.get(id(campaign))
    if cached is None or cached[0] is not campaign:
        cached = (campaign, {})
        _BY_CAMPAIGN[id(campaign)] = cached
    table = cached[1]
    key = (node_id, default_cap)
    if key not in table:
        table[key] = _reach_reads(campaign, node_id, default_cap)
    return table[key]


def batch_reads(
    wakes: Iterable[tuple[c.CompiledCampaign, str | None]],
    default_cap: CapLimit | None = DEFAULT_CAP,
) -> frozenset[str]:
    """The union of `node_reads` over a batch's (campaign, node) pairs."""
    found = NONE
    asked: set[tuple[int, str | None]] = set()
    for campaign, node_id in wakes:
        if (id(campaign), node_id) in asked:
            continue
        asked.add((id(campaign), node_id))
        found |= node_reads(campaign, node_id, default_cap)
        if found >= ALL:
            break
    return found


def cap_sends_within(
    kinds: Collection[str],
    campaigns: Iterable[c.CompiledCampaign],
    default_cap: CapLimit | None,
    now: dt.datetime,
) -> tuple[dt.datetime, dt.datetime] | None:
    """The stretch of sends a batch stepping at `now` must read (`load_facts`' `sends_within`),
    or None for all of them.

    A batch's cap checks all ask at `now`, and a cap of N per W counts the sends (reserved
    future ones too) strictly within W of the instant it is asked at: a send outside the
    widest cap in force either side of `now` changes no answer. A step reading `received`
    needs every send.
    """
    if SENDS in kinds or CAP_SENDS not in kinds:
        return None
    widest = max(
        (
            cap.per_seconds
            for campaign in campaigns
            for cap in caps_in_force(campaign.settings.caps, default_cap).rules
        ),
        default=None,
    )
    if widest is None:
        return None
    period = dt.timedelta(seconds=widest)
    return now - period, now + period


def _reach_reads(
    campaign: c.CompiledCampaign, start: str | None, default_cap: CapLimit | None
) -> frozenset[str]:
    segments = {name: c.model_to_expr(s.expr) for name, s in campaign.segments.items()}
    scores = set(campaign.scores)

    def of(model: c.ExprModel) -> frozenset[str]:
        return expr_reads(c.model_to_expr(model), segments, scores)

    settings = campaign.settings
    caps = caps_in_force(settings.caps, default_cap)
    found = of(settings.goal) if settings.goal is not None else NONE
    if start is None:
        return found
    # A booked `at` / `every` run checks the audience and the exclusion when it starts.
    if any(
        isinstance(trigger, c.AtTriggerModel | c.EveryTriggerModel) and trigger.entry == start
        for trigger in campaign.triggers
    ):
        for rule in (settings.audience, settings.exclude):
            if rule is not None:
                found |= of(rule)
    nodes = campaign.node_map
    seen: set[str] = set()
    pending = [start]
    while pending:
        node_id = pending.pop()
        node = nodes.get(node_id)
        if node is None or node_id in seen:
            continue
        seen.add(node_id)
        match node:
            case c.BranchNode(conditions=arms):
                for arm in arms:
                    found |= of(arm.when)
            case c.SetNode(value=value):
                found |= of(value)
            case c.WaitForNode(event=event):
                found |= of(event) | {EVENTS}
            case c.SendNode(channel=channel) if caps.covers(channel):
                # A capped send is checked against the contact's sends near it.
                found |= {CAP_SENDS}
            case _:
                pass
        # The node the enrollment is at runs even when it is a wait (the wait is over);
        # past the next wait, the rest belongs to a later wake.
        if node_id == start or not isinstance(node, _WAITS):
            pending.extend(c.node_targets(node))
    return found


def batch_fields(campaigns: Iterable[c.CompiledCampaign]) -> tuple[str, ...]:
    """The standard contact fields a batch's steps may read (`load_facts`' `fields`).

    Steps read a contact's attributes by the names their campaign's expressions give
    (`evaluate._path`, scores), plus the gates' address, unsubscribe and opt-in fields
    and the zone; so `created_at` is left out unless the campaign's compiled text names
    it anywhere (an over-approximation: a template or a name counts too).
    """
    for campaign in campaigns:
        cached = _NAMES_CREATED_AT.get(id(campaign))
        if cached is None or cached[0] is not campaign:
            cached = (campaign, CREATED_AT in campaign.to_json())
            _NAMES_CREATED_AT[id(campaign)] = cached
        if cached[1]:
            return STANDARD_FIELDS
    return WITHOUT_CREATED_AT


# The parts of a compiled campaign (`CompiledCampaign.content()`) with triggers and
# expressions; the rest (its source, templates, edges ...) reads no contact's events.
_READING_PARTS: Final = ("settings", "triggers", "nodes", "segments", "scores")


def reads_event(campaign: c.CompiledCampaign, name: str) -> bool:
    """Whether the campaign may read its contacts' `name` events anywhere.

    True when a trigger listens for it or an expression names it, in the steps, settings,
    segments or scores: as a function (`delivered(T)`) or as an event (`count(delivered,
    7d)`, `last(delivered)`, `wait for delivered`). Templates are not read: a message that
    says "delivered" reads nothing. An over-approximation: an attribute or a template
    named so, in an expression, counts too.
    """
    return name in names_read(campaign)


def names_read(campaign: c.CompiledCampaign) -> frozenset[str]:
    """Every name `reads_event` says the campaign may read as an event, for a dry-run to
    tell an events file's names that nothing reads (a typo) and suggest the one meant."""
    content = campaign.content()
    found: set[str] = set()
    for part in _READING_PARTS:
        _collect_names(content[part], found)
    return frozenset(found)


def _collect_names(data: Any, found: set[str]) -> None:
    """Add the names compiled data (`content()`'s JSON shapes) may read as events."""
    if isinstance(data, dict):
        kind = data.get("kind")
        if kind == "call" and isinstance(data.get("name"), str):
            found.add(data["name"])
        parts = data.get("parts")
        if kind == "path" and isinstance(parts, list) and len(parts) == 1:
            found.add(str(parts[0]))
        if isinstance(data.get("event"), str):  # an event trigger
            found.add(data["event"])
        for value in data.values():
            _collect_names(value, found)
    elif isinstance(data, list):
        for item in data:
            _collect_names(item, found)
