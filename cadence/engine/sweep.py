"""Segments and audiences that time alone changes: which ones, and how often to look.

A contact enters `segment dormant = not (last(login) within 30d)` thirty days after its last
login, with no write to set anything off. The engine reads such segments for every contact
every SWEEP_EVERY and enrolls those who match now and did not at the previous reading
(both read against the contact's data as it is now: changes to the data are handled when
they are written). An entry is noticed up to SWEEP_EVERY late.

The same sweep books contacts who join an `at` / `every` campaign's audience (or leave its
`exclude`) as time passes for the runs still to come, as a change to their data would.

Only segments that can change with time are swept: those with `within`, a duration
argument (`count(login, 30d)`, `received(email, 1d)`), or a score (scores decay and count
events within windows), directly or through another segment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cadence.dsl import ast
from cadence.dsl import compiled as c

SWEEP_EVERY = dt.timedelta(hours=1)


SweptTrigger = c.SegmentEnterTriggerModel | c.AtTriggerModel | c.EveryTriggerModel


def swept_triggers(campaign: c.CompiledCampaign) -> list[SweptTrigger]:
    """The triggers whose entry time alone can change.

    `on segment_enter` of a segment time can change; `at` / `every` when the campaign's
    `audience` or `exclude` can change with time (a contact can join its runs to come).
    """
    settings = campaign.settings
    audience_moves = any(
        expr is not None and changes_with_time(c.model_to_expr(expr), campaign)
        for expr in (settings.audience, settings.exclude)
    )
    found: list[SweptTrigger] = []
    for trigger in campaign.triggers:
        if isinstance(trigger, c.SegmentEnterTriggerModel):
            segment = campaign.segments.get(trigger.segment)
            if segment is not None and changes_with_time(c.model_to_expr(segment.expr), campaign):
                found.append(trigger)
        elif isinstance(trigger, c.AtTriggerModel | c.EveryTriggerModel) and audience_moves:
            found.append(trigger)
    return found


def changes_with_time(
    expr: ast.Expr, campaign: c.CompiledCampaign, seen: frozenset[str] = frozenset()
) -> bool:
    """Whether the expression's value can change while the contact's data stays the same."""
    match expr:
        case ast.Within() | ast.DurationLit():
            return True
        case ast.Path(parts=(name,)) if name in campaign.scores:
            return True
        case ast.Path(parts=(name,)) if name in campaign.segments and name not in seen:
            inner = c.model_to_expr(campaign.segments[name].expr)
            return changes_with_time(inner, campaign, seen | {name})
    if not dataclasses.is_dataclass(expr):
        return False
    for field in dataclasses.fields(expr):
        value = getattr(expr, field.name)
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, ast.Span) or not dataclasses.is_dataclass(child):
                continue
            if changes_with_time(child, campaign, seen):  # type: ignore[arg-type]
                return True
    return False
