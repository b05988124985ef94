"""Segments and audiences that time alone changes: which ones, and how often to look.

A contact enters `segment dormant = not (last(login) within 30d)` thirty days after its last
login, with no write to set anything off. The engine reads such segments for every contact
every SWEEP_EVERY and enrolls those who match now and did not at some moment since the
previous reading (all read against the contact's data as it is now: changes to the data
are handled when they are written; the moments are `edges`, see `last_out`). An entry is
noticed up to SWEEP_EVERY late.

The same sweep books contacts who join an `at` / `every` campaign's audience (or leave its
`exclude`) as time passes for the runs still to come, as a change to their data would.

Only segments that can change with time are swept: those with `within`, a duration
argument (`count(login, 30d)`, `received(email, 1d)`), or a score (scores decay and count
events within windows), directly or through another segment.

A sweep reads only the contacts whose value can differ between the two readings
(`time_windows`, `moved`: those with an event, a send or an attribute instant that a
window's edge passed meanwhile), a few per hour where every contact used to be read. A
segment or audience whose windows cannot be bounded (a score, `within` over arithmetic)
is still read for every contact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.engine import evaluate
from cadence.engine.evaluate import ENGAGEMENT_FLAGS, ENGAGEMENT_KINDS
from cadence.engine.facts import STANDARD_FIELDS, ContactFacts
from cadence.engine.store.models import Contact, Event, OutboxMessage

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


# ---------------------------------------------------------------------------- targeted sweeps
#
# Between two readings (`since`, `now`) only the clock moves: the contact's data is read as
# it is now at both. A time-dependent value can then only change when the evaluation instant
# T, or a window's lower edge T - D, passes over one of the contact's data points: an event
# of a name the expression reads (`count`, `last`, `first`, engagement functions, the
# `converted` / `unsubscribed` flags: the evaluator sees only events at or before T), a send
# on a channel `received` reads, or an attribute instant under `within`. So the contacts
# whose value can differ are those with such a data point t where, for one of the window's
# offsets o (0 for T itself, D for a window of D), since - o <= t <= now - o. Every other
# contact's value is the same at both instants and the sweep can leave it unread.

EVENT = "event"
SEND = "send"
ATTRIBUTE = "attribute"


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """Data points that can move an expression as time passes, and the edges that move it.

    `kind` is EVENT (events named `key`), SEND (sends on channel `key`) or ATTRIBUTE (the
    instant at attribute path `key`, dot-joined); `offsets` are seconds back from the
    evaluation instant (0: the instant itself; D: a window of D's lower edge).
    """

    kind: str
    key: str
    offsets: frozenset[int]


class Unbounded(Exception):
    """The expression reads time in a way the targeted sweep cannot bound."""


def time_windows(
    exprs: Sequence[ast.Expr], campaign: c.CompiledCampaign
) -> tuple[Window, ...] | None:
    """Every window the expressions' values can move through; None when some cannot be bounded.

    None (scores, which decay continuously, `within` over anything but an attribute or
    `last` / `first`, a function the analysis does not know) means: read every contact.
    """
    found: dict[tuple[str, str], set[int]] = {}
    try:
        for expr in exprs:
            _windows(expr, campaign, frozenset(), found)
    except Unbounded:
        return None
    return tuple(
        Window(kind, key, frozenset(offsets)) for (kind, key), offsets in sorted(found.items())
    )


def _add(found: dict[tuple[str, str], set[int]], kind: str, key: str, *offsets: int) -> None:
    found.setdefault((kind, key), set()).update(offsets)


def _duration(call: ast.Call, index: int) -> int | None:
    if len(call.args) <= index:
        return None
    arg = call.args[index]
    if not isinstance(arg, ast.DurationLit):
        raise Unbounded(f"`{call.name}` with a non-literal duration")
    return arg.seconds


def _name(call: ast.Call, index: int) -> str:
    if len(call.args) <= index or not isinstance(call.args[index], ast.Path):
        raise Unbounded(f"`{call.name}` without a name argument")
    arg = call.args[index]
    assert isinstance(arg, ast.Path)
    return arg.dotted


def _attribute_path(expr: ast.Expr, campaign: c.CompiledCampaign) -> str | None:
    """The attribute a path reads (as the evaluator's `_path` resolves it), or None."""
    if not isinstance(expr, ast.Path):
        return None
    root, rest = expr.parts[0], expr.parts[1:]
    if root == "event":
        return None
    if root == "contact" and rest:
        return ".".join(rest)
    if not rest and (
        root in campaign.segments or root in campaign.scores or root in ENGAGEMENT_FLAGS
    ):
        return None
    return ".".join(expr.parts)


def _windows(
    expr: ast.Expr,
    campaign: c.CompiledCampaign,
    seen: frozenset[str],
    found: dict[tuple[str, str], set[int]],
) -> None:
    match expr:
        case ast.Within(operand=operand, duration=duration):
            if isinstance(operand, ast.Call) and operand.name in ("last", "first"):
                _add(found, EVENT, _name(operand, 0), 0, duration.seconds)
                return
            attribute = _attribute_path(operand, campaign)
            if attribute is None:
                raise Unbounded("`within` over something other than an attribute or last/first")
            _add(found, ATTRIBUTE, attribute, 0, duration.seconds)
            return
        case ast.Call(name=name):
            if name in ENGAGEMENT_KINDS:
                # A click also counts as an open; a bounce can undo a delivery.
                for kind in evaluate.engagement_reads(name):
                    _add(found, EVENT, kind, 0)
            elif name == "count":
                window = _duration(expr, 1)
                for kind in evaluate.count_reads(_name(expr, 0)):
                    _add(found, EVENT, kind, 0, *(() if window is None else (window,)))
            elif name in ("last", "first"):
                _add(found, EVENT, _name(expr, 0), 0)
            elif name == "received":
                window = _duration(expr, 1)
                _add(found, SEND, _name(expr, 0), 0, *(() if window is None else (window,)))
            elif name in ENGAGEMENT_FLAGS and not expr.args:
                _add(found, EVENT, name, 0)
            elif name != "in_campaign":
                raise Unbounded(f"unknown function `{name}`")
            return
        case ast.Path(parts=(name,)) if name in campaign.segments:
            if name not in seen:  # a cycle evaluates to unknown, whatever the time
                inner = c.model_to_expr(campaign.segments[name].expr)
                _windows(inner, campaign, seen | {name}, found)
            return
        case ast.Path(parts=(name,)) if name in campaign.scores:
            raise Unbounded("scores decay and count events continuously")
        case ast.Path(parts=(name,)) if name in ENGAGEMENT_FLAGS:
            _add(found, EVENT, name, 0)
            return
    if not dataclasses.is_dataclass(expr):
        return
    for field in dataclasses.fields(expr):
        value = getattr(expr, field.name)
        for child in value if isinstance(value, tuple) else (value,):
            if isinstance(child, ast.Span) or not dataclasses.is_dataclass(child):
                continue
            _windows(child, campaign, seen, found)  # type: ignore[arg-type]


def trigger_windows(
    campaign: c.CompiledCampaign, trigger: SweptTrigger
) -> tuple[Window, ...] | None:
    """The windows that can move a swept trigger's entry: its segment, or the audience."""
    if isinstance(trigger, c.SegmentEnterTriggerModel):
        exprs = [c.model_to_expr(campaign.segments[trigger.segment].expr)]
    else:
        settings = campaign.settings
        exprs = [
            c.model_to_expr(expr)
            for expr in (settings.audience, settings.exclude)
            if expr is not None
        ]
    return time_windows(exprs, campaign)


def moved(
    session: Session,
    tenant: str,
    windows: Sequence[Window],
    since: dt.datetime,
    now: dt.datetime,
) -> set[str]:
    """The contacts with a data point some window's edge passed between `since` and `now`."""
    found: set[str] = set()
    attributes: list[Window] = []
    for window in windows:
        if window.kind == ATTRIBUTE:
            attributes.append(window)
            continue
        for offset in sorted(window.offsets):
            low, high = since - dt.timedelta(seconds=offset), now - dt.timedelta(seconds=offset)
            if window.kind == EVENT:
                query = select(Event.contact_id).where(
                    Event.tenant_id == tenant,
                    Event.name == window.key,
                    Event.at >= low,
                    Event.at <= high,
                )
            else:
                # Whatever the status: a superset of the sends `received` counts is enough.
                query = select(OutboxMessage.contact_id).where(
                    OutboxMessage.tenant_id == tenant,
                    OutboxMessage.channel == window.key,
                    OutboxMessage.created_at >= low,
                    OutboxMessage.created_at <= high,
                )
            # Events about things (no contact) and duplicates are dropped here, not in SQL:
            # given `contact_id IS NOT NULL` or DISTINCT, SQLite reads every event of the
            # tenant through the (tenant, contact, ...) index instead of the time range.
            found.update(cid for cid in session.scalars(query) if cid is not None)
    if attributes:
        found.update(_moved_attributes(session, tenant, attributes, since, now))
    return found


def _moved_attributes(
    session: Session,
    tenant: str,
    windows: Sequence[Window],
    since: dt.datetime,
    now: dt.datetime,
) -> Iterator[str]:
    """Contacts with an attribute instant an edge passed, read from that attribute alone.

    Attributes live in a JSON document in whatever form they were imported (ISO text with
    or without a zone, dates), which no index orders: the one value is read for every
    contact and compared here, as the evaluator reads it, without events or evaluation.
    """
    for window in windows:
        root, *rest = window.key.split(".")
        if root in STANDARD_FIELDS:
            if rest:  # a standard field holds no nested record: always missing
                continue
            value: Any = getattr(Contact, root)
        else:
            value = Contact.attributes[tuple(window.key.split("."))].as_string()
        spans = [
            (since - dt.timedelta(seconds=o), now - dt.timedelta(seconds=o)) for o in window.offsets
        ]
        for contact_id, raw in session.execute(
            select(Contact.id, value).where(Contact.tenant_id == tenant)
        ):
            instant = evaluate._instant(evaluate.normalize(raw))
            if instant is not None and any(low <= instant <= high for low, high in spans):
                yield contact_id


# ---------------------------------------------------------------------------- re-entries
#
# Read at `since` and at `now` alone, a contact who left a segment and came back between two
# sweeps (a login at 10:10 ending `dormant`, which time brings back at 10:40) is in it at
# both readings and was never entered again. Between the edges a window passes over the
# contact's data points the value cannot change, so reading it at `since`, at each edge and
# just after it finds every stretch the contact was out.

MICROSECOND = dt.timedelta(microseconds=1)


def edges(
    facts: ContactFacts, windows: Sequence[Window], since: dt.datetime, now: dt.datetime
) -> list[dt.datetime]:
    """The instants in [since, now) where a window's edge passes one of the contact's data
    points: the only ones where its value can change between the two readings."""
    found: set[dt.datetime] = set()
    for window in windows:
        if window.kind == EVENT:
            points = [event.at for event in facts.events if event.name == window.key]
        elif window.kind == SEND:
            points = [at for channel, _, at in facts.sends if channel == window.key]
        else:
            raw = evaluate._dig(facts.attributes, tuple(window.key.split(".")))
            instant = evaluate._instant(evaluate.normalize(raw))
            points = [] if instant is None else [instant]
        for point in points:
            for offset in window.offsets:
                edge = point + dt.timedelta(seconds=offset)
                if since <= edge < now:
                    found.add(edge)
    return sorted(found)


def last_out(
    holds: Callable[[dt.datetime], bool],
    instants: Sequence[dt.datetime],
    since: dt.datetime,
    now: dt.datetime,
) -> dt.datetime | None:
    """The latest instant in [since, now) when `holds` was false, read at `since` and at
    each of `instants` (`edges`) and just after it; None: it held all along."""
    readings = {since, *instants, *(i + MICROSECOND for i in instants)}
    for instant in sorted((i for i in readings if i < now), reverse=True):
        if not holds(instant):
            return instant
    return None
