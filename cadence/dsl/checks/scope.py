"""Engagement in a campaign's steps about a template the campaign never sends (W310).

In a step (`if`, `wait for`, `set`, the `goal`), `opened(T)`, `clicked(T)` ... look only
at messages the campaign itself sent (docs/language.md, engagement functions): a follow-up
campaign asking `if opened(welcome)` about another campaign's welcome email never sees it,
and quietly takes the `else` for everyone. Segments see every campaign's messages, so the
hint is to ask through one.
"""

from __future__ import annotations

from collections.abc import Iterator

from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext
from cadence.dsl.checks.expressions import subexpressions
from cadence.dsl.checks.steps import all_steps
from cadence.dsl.symbols import ENGAGEMENT_FUNCTIONS, CampaignUnit


def check_engagement_scope(ctx: CheckContext, unit: CampaignUnit) -> None:
    """Warn at each step condition's engagement function naming a template `unit` never sends."""
    steps = [step for block in unit.triggers for step in all_steps(block.steps)]
    sent = {step.template for step in steps if isinstance(step, ast.Send)}
    for expr in _step_expressions(unit, steps):
        for call in subexpressions(expr):
            if not (isinstance(call, ast.Call) and call.name in ENGAGEMENT_FUNCTIONS):
                continue
            if not call.args or not isinstance(call.args[0], ast.Path):
                continue
            template = call.args[0].dotted
            if template == "any" or template in sent or template not in ctx.symbols.templates:
                continue
            flag = f"{call.name}_{template}"
            ctx.warning(
                call.span,
                "W310",
                f"`{call.name}({template})`: campaign `{unit.name}` never sends `{template}`,"
                " and in a step engagement counts only the campaign's own messages, so this"
                " holds only for events pushed without a campaign",
                f"to ask about another campaign's message, use a segment (segments see every"
                f" campaign's): `segment {flag} = {call.name}({template})`, then `{flag}`",
            )


def _step_expressions(unit: CampaignUnit, steps: list[ast.Step]) -> Iterator[ast.Expr]:
    """The conditions and values a campaign's steps evaluate in the campaign's scope."""
    for setting in unit.setting(ast.ExprSetting):
        if setting.key == "goal":
            yield setting.expr
    for step in steps:
        yield from ast.step_expressions(step)
