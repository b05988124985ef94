"""Compute a contact's score at a moment from its events and engagement.

A score is never stored by hand: `score engagement { opened(any) within 30d: +5 each ... }`
is recomputed from the contact's history whenever an expression reads it, so it always
agrees with the data and with the clock (the simulated one included). The rules, decay
included, are in docs/semantics.md.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.symbols import ONCE_PER_MESSAGE
from cadence.engine.evaluate import (
    ENGAGEMENT_FLAGS,
    ENGAGEMENT_KINDS,
    EvalContext,
    EvaluationError,
    engagement_instants,
    holds,
)

_DECIMALS = decimal.Context(prec=34)


@dataclass(frozen=True, slots=True)
class PointsRule:
    """`CONDITION [within D]: +N [each]`, whatever form it was written or compiled in."""

    condition: ast.Expr
    within_seconds: int | None
    points: Decimal
    each: bool


@dataclass(frozen=True, slots=True)
class DecayRule:
    """`decay P% per D`."""

    percent: Decimal
    per_seconds: int


@dataclass(frozen=True, slots=True)
class RuleScore:
    """What one points rule contributed: the instants that earned it (None: no known time)."""

    rule: PointsRule
    earned_at: tuple[dt.datetime | None, ...]
    points: Decimal


def rules_of(definition: Any) -> tuple[list[PointsRule], DecayRule | None]:
    """A score's points rules and its decay (the first `decay`, if several), from any form."""
    if isinstance(definition, c.CompiledScore | ast.ScoreDecl):
        raw: Sequence[Any] = definition.rules
    else:
        raw = definition
    points: list[PointsRule] = []
    decay: DecayRule | None = None
    for rule in raw:
        match rule:
            case c.ScorePointsRule():
                points.append(
                    PointsRule(
                        c.model_to_expr(rule.event), rule.within_seconds, rule.points, rule.each
                    )
                )
            case ast.ScorePoints():
                seconds = rule.within.seconds if rule.within is not None else None
                points.append(PointsRule(rule.event, seconds, rule.points, rule.each))
            case PointsRule():
                points.append(rule)
            case c.ScoreDecayRule():
                decay = decay or DecayRule(rule.percent, rule.per_seconds)
            case ast.ScoreDecay():
                decay = decay or DecayRule(rule.percent.value, rule.per.seconds)
            case DecayRule():
                decay = decay or rule
            case _:
                raise EvaluationError(f"not a score rule: {rule!r}")
    return points, decay


def compute_score(definition: Any, ctx: EvalContext) -> Decimal:
    """The score's value for the context's contact at `ctx.now`: the sum of every rule."""
    total = Decimal(0)
    with decimal.localcontext(_DECIMALS):
        for line in score_breakdown(definition, ctx):
            total += line.points
    return total


def score_breakdown(definition: Any, ctx: EvalContext) -> list[RuleScore]:
    """Each points rule's contribution, for explaining a score as well as summing it."""
    rules, decay = rules_of(definition)
    now = ctx.now_utc
    lines: list[RuleScore] = []
    with decimal.localcontext(_DECIMALS):
        for rule in rules:
            earned = _occurrences(rule, ctx)
            if rule.within_seconds is not None:
                since = now - dt.timedelta(seconds=rule.within_seconds)
                earned = [at for at in earned if at is not None and since <= at <= now]
            if not rule.each:
                earned = [_latest(earned)] if earned else []
            points = sum((rule.points * decay_factor(decay, at, now) for at in earned), Decimal(0))
            lines.append(RuleScore(rule, tuple(earned), points))
    return lines


def _latest(instants: Sequence[dt.datetime | None]) -> dt.datetime | None:
    """The most recent known instant (the one that decays least); None when none is known."""
    known = [at for at in instants if at is not None]
    return max(known) if known else None


def decay_factor(
    decay: DecayRule | None, earned_at: dt.datetime | None, now: dt.datetime
) -> Decimal:
    """(1 - P/100) to the number of full periods since `earned_at`; 1 without decay or time."""
    if decay is None or earned_at is None or decay.per_seconds <= 0:
        return Decimal(1)
    periods = max(0, (now - earned_at) // dt.timedelta(seconds=decay.per_seconds))
    if periods == 0:
        return Decimal(1)
    keep = max(Decimal(0), 1 - decay.percent / 100)
    return keep**periods


def _occurrences(rule: PointsRule, ctx: EvalContext) -> list[dt.datetime | None]:
    """The instants at which the rule's condition was met, up to now (None: a time unknown)."""
    condition = rule.condition
    if isinstance(condition, ast.Call) and condition.name in ENGAGEMENT_KINDS:
        template = _template(condition)
        records = ctx.engagement_records(scoped=False)
        return list(engagement_instants(condition.name, template, records))
    if isinstance(condition, ast.Path) and len(condition.parts) == 1:
        name = condition.parts[0]
        if name in ctx.segments:
            return [None] if holds(condition, ctx) else []
        if name in ENGAGEMENT_FLAGS:
            if not ctx.flag(name):
                return []
            return [ctx.flag_instant(name)]
        if isinstance(ctx.attributes.get(name), bool):
            return [None] if ctx.attributes[name] else []
        if name in ONCE_PER_MESSAGE:
            # A bare `opened` is `opened(any)`: the same events, counted per message.
            records = ctx.engagement_records(scoped=False)
            return list(engagement_instants(name, "any", records))
        return list(ctx.history(name))
    return [None] if holds(condition, ctx) else []


def _template(call: ast.Call) -> str:
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Path):
        raise EvaluationError(f"`{call.name}` in a score needs a template name or `any`")
    return call.args[0].dotted
