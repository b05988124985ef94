"""Event names spelt two ways in one workspace (W306).

An event name is free text: `when application_started` listens for whatever the product
sends, so no name is wrong by itself. But a name one typo from another the same files use
(`wait for application_submitted` beside `count(application_submited, 3d)`) is almost
always a slip, and it fails silently: the misspelt side never sees an event, so a reminder
goes to everyone or a trigger never fires. The engagement events the engine records itself
(`opened`, `clicked` ...) count as known spellings too.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator

from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext
from cadence.dsl.checks.expressions import known_bare_names
from cadence.dsl.symbols import ENGAGEMENT_FLAGS, ENGAGEMENT_FUNCTIONS
from cadence.errors import typo_of

# Functions whose first argument names an event: `count(EVENT, D)`, `last(EVENT)` ...
_EVENT_ARGUMENT = frozenset({"count", "last", "first"})


def check_event_names(ctx: CheckContext) -> None:
    """Warn at each use of an event name that is one typo from one used more (W306)."""
    uses: dict[str, list[ast.Span]] = defaultdict(list)
    bare = known_bare_names(ctx)
    for _, declaration in ctx.workspace.declarations():
        for name, span in _event_names(ctx, declaration, bare):
            uses[name].append(span)
    recorded = {*ENGAGEMENT_FUNCTIONS, *ENGAGEMENT_FLAGS}
    for name, spans in sorted(uses.items()):
        if name in recorded:
            continue
        meant = typo_of(name, {*uses, *recorded})
        if meant is None or not _more_established(meant, name, uses, recorded):
            continue
        where = min(uses[meant], key=_position) if meant in uses else None
        for span in spans:
            at = ""
            if where is not None:
                at = f" (line {where.line}" + (
                    "" if where.file == span.file else f" of {where.file}"
                )
                at += ")"
            ctx.warning(
                span,
                "W306",
                f"event `{name}` is one typo from the event `{meant}`{at}: two spellings of one "
                "event?",
                f"write `{meant}`: an event is matched by its exact name, so `{name}` never "
                "sees one",
            )


def _more_established(
    meant: str, name: str, uses: dict[str, list[ast.Span]], recorded: set[str]
) -> bool:
    """Whether `meant` is the spelling to keep: recorded by the engine, used more, or, as
    often, used first."""
    if meant in recorded:
        return True
    if len(uses[meant]) != len(uses[name]):
        return len(uses[meant]) > len(uses[name])
    return _position(min(uses[meant], key=_position)) < _position(min(uses[name], key=_position))


def _position(span: ast.Span) -> tuple[str, int, int]:
    return (span.file, span.line, span.column)


def _event_names(ctx: CheckContext, node: object, bare: set[str]) -> Iterator[tuple[str, ast.Span]]:
    """Every event name a declaration uses, with where: triggers, `count`/`last`/`first`,
    `wait for NAME` and score rules on a bare event name."""
    match node:
        case ast.EventTrigger(event=event, span=span):
            yield event, ctx.word_span(span, event)
        case ast.Call(name=name, args=(ast.Path(parts=(event,), span=span), *_)) if (
            name in _EVENT_ARGUMENT
        ):
            yield event, span
        case ast.WaitFor(event=ast.Path(parts=(event,), span=span)) if event not in bare:
            yield event, span
        case ast.ScorePoints(event=ast.Path(parts=(event,), span=span)) if event not in bare:
            yield event, span
    if dataclasses.is_dataclass(node) and not isinstance(node, ast.Span):
        for item in dataclasses.fields(node):
            yield from _event_names(ctx, getattr(node, item.name), bare)
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _event_names(ctx, item, bare)
