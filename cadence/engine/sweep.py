"""Segments that time alone changes, for `on segment_enter`: which ones, and how often to look.

A contact enters `segment dormant = not (last(login) within 30d)` thirty days after its last
login, with no write to set anything off. The engine reads such segments for every contact
every SWEEP_EVERY and enrolls those who match now and did not at the previous reading
(both read against the contact's data as it is now: changes to the data are handled when
they are written). An entry is noticed up to SWEEP_EVERY late.

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


def swept_triggers(campaign: c.CompiledCampaign) -> list[c.SegmentEnterTriggerModel]:
    """The campaign's `on segment_enter` triggers whose segment time alone can change."""
    return [
        trigger
        for trigger in campaign.triggers
        if isinstance(trigger, c.SegmentEnterTriggerModel)
        and trigger.segment in campaign.segments
        and changes_with_time(c.model_to_expr(campaign.segments[trigger.segment].expr), campaign)
    ]


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
