"""Steps one at a time: sends, splits, waits, enrolls, and what can never run after an exit.

A/B winner metrics and where they can be measured (documented in docs/diagnostics.md):
opens on email and on whatsapp (read receipts); clicks on email, sms, whatsapp and inbox
(tracked links); replies on email, sms and whatsapp; conversions on every channel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from cadence.addresses import http_url_problem, sender_problem
from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext, article, where
from cadence.dsl.checks.expressions import (
    SET,
    check_attribute,
    check_call,
    check_channel,
    check_expression,
)
from cadence.dsl.checks.settings import check_day_names, is_timezone
from cadence.dsl.symbols import (
    CHANNELS,
    LOCALE_TAG,
    METRIC_EVENTS,
    ONCE_PER_MESSAGE,
    REACTION_CHANNELS,
    CampaignUnit,
)
from cadence.errors import did_you_mean, suggest

METRIC_CHANNELS: dict[str, tuple[str, ...]] = {
    metric: REACTION_CHANNELS[event] for metric, event in METRIC_EVENTS.items()
}


def child_blocks(step: ast.Step) -> Iterator[tuple[ast.Step, ...]]:
    """The step lists nested directly inside a step (branches of ifs and splits)."""
    match step:
        case ast.If(branches=branches, else_steps=else_steps):
            for branch in branches:
                yield branch.steps
            if else_steps is not None:
                yield else_steps
        case ast.ABSplit(branches=split_branches) | ast.RandomSplit(branches=split_branches):
            for split_branch in split_branches:
                yield split_branch.steps
        case _:
            return


def all_steps(steps: tuple[ast.Step, ...]) -> Iterator[ast.Step]:
    """Every step of a block and of the blocks nested in it, in source order."""
    for step in steps:
        yield step
        for block in child_blocks(step):
            yield from all_steps(block)


def always_exits(steps: tuple[ast.Step, ...]) -> bool:
    """True when every path through the block ends at an `exit`."""
    return any(_step_always_exits(step) for step in steps)


def _step_always_exits(step: ast.Step) -> bool:
    match step:
        case ast.Exit():
            return True
        case ast.If(else_steps=None):
            return False
        case ast.If() | ast.ABSplit() | ast.RandomSplit():
            return all(always_exits(block) for block in child_blocks(step))
        case _:
            return False


def check_trigger_block(ctx: CheckContext, unit: CampaignUnit, block: ast.TriggerBlock) -> None:
    """Check one trigger and every step it runs."""
    ctx.event_in_scope = isinstance(block.trigger, ast.EventTrigger)
    try:
        _check_trigger(ctx, block.trigger)
        _check_block(ctx, block.steps, _allowed_channels(unit))
    finally:
        ctx.event_in_scope = False


def _allowed_channels(unit: CampaignUnit) -> ast.ChannelsSetting | None:
    return next(unit.setting(ast.ChannelsSetting), None)


def _check_trigger(ctx: CheckContext, trigger: ast.Trigger) -> None:
    match trigger:
        case ast.EventTrigger(where=where_expr, fanout=fanout, count=count):
            for expr in (where_expr, fanout):
                if expr is not None:
                    check_expression(ctx, expr)
            if count is not None and fanout is None:
                _check_trigger_count(ctx, trigger, count)
        case ast.SegmentEnterTrigger(segment=segment):
            if segment not in ctx.symbols.segments:
                ctx.error(
                    ctx.word_span(trigger.span, segment, 1 if segment == "segment_enter" else 0),
                    "E102",
                    f"unknown segment `{segment}`",
                    did_you_mean(segment, ctx.symbols.segments)
                    or "declare it with `segment NAME = ...`",
                )
        case ast.EveryTrigger(days=days):
            check_day_names(ctx, days, trigger.span)
        case _:
            pass


def _check_trigger_count(
    ctx: CheckContext, trigger: ast.EventTrigger, count: ast.CountClause
) -> None:
    """Warn at a trigger count no event can meet (W314): the event that fires the trigger is
    among those counted, so the count is at least 1 when it is judged.

    An open or a click counts its message at the first report, which may be older than
    `within`: only without `within` is such a count sure to be 1 or more.
    """
    if trigger.event in ONCE_PER_MESSAGE and trigger.within is not None:
        return
    if not {"=": count.count == 0, "<": count.count <= 1, "<=": count.count == 0}.get(
        count.op, False
    ):
        return
    ctx.warning(
        count.span,
        "W314",
        f"`count{count.op}{count.count}` never holds: the `{trigger.event}` event that fires"
        " the trigger is counted too, so nobody ever enters",
        f"to act when `{trigger.event}` did not happen, start from another trigger and"
        f" `wait for {trigger.event} up to DURATION`, or ask `if count({trigger.event}, 7d) = 0`",
    )


def _check_block(
    ctx: CheckContext,
    steps: tuple[ast.Step, ...],
    allowed: ast.ChannelsSetting | None,
) -> None:
    terminator: ast.Step | None = None
    reported = False
    for step in steps:
        if terminator is not None and not reported:
            # Only the first step that cannot run is reported: the rest follow from it.
            reported = True
            if isinstance(terminator, ast.Exit):
                ctx.error(
                    step.span,
                    "E206",
                    "this step comes after `exit`, so it never runs",
                    f"the exit is at line {terminator.span.line}; move the step before it",
                )
            else:
                ctx.warning(
                    step.span,
                    "W301",
                    "this step is unreachable: every branch before it ends in `exit`",
                    f"see the branches at line {terminator.span.line}",
                )
        _check_step(ctx, step, allowed)
        for block in child_blocks(step):
            _check_block(ctx, block, allowed)
        if terminator is None and _step_always_exits(step):
            terminator = step


def _check_step(
    ctx: CheckContext,
    step: ast.Step,
    allowed: ast.ChannelsSetting | None,
) -> None:
    match step:
        case ast.Send():
            _check_send(ctx, step, allowed)
        case ast.WaitFor(event=event, up_to=up_to):
            if isinstance(event, ast.Call):
                check_call(ctx, event)
            elif not isinstance(event, ast.Path):
                check_expression(ctx, event)
            if up_to is None:
                ctx.error(
                    step.span,
                    "E207",
                    "`wait for` without `up to` could wait forever",
                    "add a limit, such as `up to 3d`",
                )
        case ast.If(branches=branches):
            for branch in branches:
                check_expression(ctx, branch.condition)
            _check_constant_conditions(ctx, step)
        case ast.ABSplit():
            _check_ab_split(ctx, step)
        case ast.RandomSplit():
            _check_random_split(ctx, step)
        case ast.SetAttr(target=target, value=value):
            if target.parts[0] == "contact" and len(target.parts) > 1:
                check_attribute(
                    ctx, target.parts[1], ctx.word_span(target.span, target.parts[1]), use=SET
                )
            elif len(target.parts) == 1:
                check_attribute(ctx, target.parts[0], target.span, use=SET)
            check_expression(ctx, value)
            _check_set_type(ctx, target, value)
        case ast.Notify(channel=channel, target=target):
            check_channel(ctx, channel, ctx.word_span(step.span, channel, int(channel == "notify")))
            if channel == "webhook" and (problem := http_url_problem(target)):
                ctx.error(
                    ctx.tail_span(step.span),
                    "E222",
                    f'`notify webhook`: "{target}" {problem}, so no notice could be posted',
                    'write the full URL: "https://hooks.example.com/crm"',
                )
        case ast.Placeholder():
            ctx.warning(
                step.span,
                "W304",
                "`...` stands for steps not written yet: contacts pass it doing nothing",
                "write the steps, or remove the `...`",
            )
        case ast.Enroll(campaign=campaign):
            if campaign not in ctx.symbols.campaigns:
                ctx.error(
                    ctx.word_span(step.span, campaign, int(campaign == "enroll")),
                    "E103",
                    f"unknown campaign `{campaign}`",
                    did_you_mean(campaign, ctx.symbols.campaigns)
                    or "declare it with `campaign NAME { }`",
                )
        case _:
            pass


def _check_constant_conditions(ctx: CheckContext, step: ast.If) -> None:
    """`if false { }` never runs its steps; nothing after `if true { }` runs either."""
    for index, branch in enumerate(step.branches):
        condition = branch.condition
        if not isinstance(condition, ast.BoolLit):
            continue
        if not condition.value and branch.steps:
            ctx.warning(
                branch.steps[0].span,
                "W301",
                "this step is unreachable: its condition is `false`",
                "remove the branch, or write the condition it should test",
            )
        if condition.value:
            later = [b.steps[0] for b in step.branches[index + 1 :] if b.steps]
            if step.else_steps:
                later.append(step.else_steps[0])
            if later:
                ctx.warning(
                    later[0].span,
                    "W301",
                    "this step is unreachable: an earlier condition is always `true`",
                    f"the `true` condition is at line {condition.span.line}",
                )
            return


def _check_send(ctx: CheckContext, send: ast.Send, allowed: ast.ChannelsSetting | None) -> None:
    channel_known = check_channel(ctx, send.channel, send.channel_span)
    templates = ctx.symbols.templates
    same_channel = [name for name, t in templates.items() if t.node.channel == send.channel]
    declared = templates.get(send.template)
    if declared is None:
        # A near name written for this channel is the likelier meaning than any near name.
        ctx.error(
            send.template_span,
            "E101",
            f"unknown template `{send.template}`",
            did_you_mean(send.template, same_channel)
            or did_you_mean(send.template, templates)
            or f"declare it with `template {send.template} {send.channel} {{ ... }}`",
        )
    elif (
        declared.node.channel != send.channel
        and channel_known
        and declared.node.channel in CHANNELS
    ):
        alternative = suggest(send.template, same_channel)
        ctx.error(
            send.channel_span,
            "E201",
            f"`{send.template}` is {article(declared.node.channel)} template, not {send.channel}",
            f"did you mean `send {send.channel} {alternative}`?"
            if alternative
            else f"it is declared at {where(declared.node.span)}; "
            f"write `send {declared.node.channel} {send.template}`"
            f" or use {article(send.channel)} template",
        )
    event_reads = sorted(ctx.event_reads.get(send.template, ()))
    if declared is not None and event_reads and not ctx.event_in_scope:
        fields = ", ".join(f"`event.{name}`" for name in event_reads)
        ctx.warning(
            send.template_span,
            "W312",
            f"`{send.template}` reads {fields}, but this step's trigger gives no event, so"
            " every send of it here fails to render",
            "send it from a `when EVENT` trigger, or give the field a default:"
            f" `{{{{ event.{event_reads[0]} | default('') }}}}`",
        )
    if allowed is not None and channel_known and send.channel not in allowed.channels:
        ctx.error(
            send.channel_span,
            "E211",
            f"the campaign's channels ({', '.join(allowed.channels)}) leave out {send.channel}",
            f"add {send.channel} to `channels` at line {allowed.span.line}",
        )


# The channels whose messages a provider charges for; an in-app inbox message or a
# campaign's own webhook call is free unless the campaign prices it.
PRICED_CHANNELS = ("email", "sms", "whatsapp")


def check_budget_costs(ctx: CheckContext, unit: CampaignUnit) -> None:
    """Warn when a campaign with a `budget` sends on a paid channel its `cost` does not price.

    The budget counts each message at the campaign's cost for its channel, so messages of an
    unpriced channel count nothing and the campaign never pauses for them.
    """
    budget = next(unit.setting(ast.BudgetSetting), None)
    if budget is None:
        return
    priced = {item.channel for cost in unit.setting(ast.CostSetting) for item in cost.items}
    sent = {send.channel for block in unit.triggers for send in _sends(block.steps)}
    unpriced = [channel for channel in PRICED_CHANNELS if channel in sent - priced]
    if not unpriced:
        return
    prices = ", ".join(f"{channel} AMOUNT {budget.amount.currency}" for channel in unpriced)
    cost = next(unit.setting(ast.CostSetting), None)
    ctx.warning(
        budget.span,
        "W313",
        f"campaign `{unit.name}` has a budget but no cost for {' or '.join(unpriced)}: its"
        f" {' and '.join(unpriced)} messages count nothing against the budget, so it never"
        " pauses for them",
        f"add `{prices}` to the `cost` at line {cost.span.line}"
        if cost is not None
        else f"price them: `cost {prices}`",
    )


def _sends(steps: tuple[ast.Step, ...]) -> Iterator[ast.Send]:
    for step in all_steps(steps):
        if isinstance(step, ast.Send):
            yield step


def _check_branch_names(ctx: CheckContext, branches: tuple[ast.SplitBranch, ...]) -> None:
    seen: dict[str, ast.SplitBranch] = {}
    for branch in branches:
        if branch.name in seen:
            ctx.error(
                ctx.word_span(branch.span, branch.name),
                "E219",
                f"the split has two branches called `{branch.name}`",
                f"the first is at line {seen[branch.name].span.line}; rename one",
            )
        else:
            seen[branch.name] = branch


def _check_ab_split(ctx: CheckContext, split: ast.ABSplit) -> None:
    share = split.test_share.value
    if not 0 < share < 100:
        ctx.error(
            split.test_share.span,
            "E205",
            f"a test share of {split.test_share.value}% leaves "
            + ("no one to test" if share <= 0 else "no one to send the winner to"),
            "use a share between 0% and 100%, such as 20%",
        )
    if len(split.branches) < 2:
        ctx.error(
            split.span,
            "E204",
            f"an A/B split needs at least two branches, this one has {len(split.branches)}",
            "add a `b: ...` branch, or drop the split",
        )
    _check_branch_names(ctx, split.branches)
    metric = split.metric
    if metric not in METRIC_CHANNELS:
        ctx.error(
            split.metric_span,
            "E115",
            f"unknown winner metric `{metric}`",
            did_you_mean(metric, METRIC_CHANNELS) or f"metrics are {', '.join(METRIC_CHANNELS)}",
        )
        return
    measurable = METRIC_CHANNELS[metric]
    channels: list[str] = []
    for branch in split.branches:
        for send in _sends(branch.steps):
            if send.channel in CHANNELS and send.channel not in channels:
                channels.append(send.channel)
    if not channels and metric != "conversions":
        ctx.error(
            split.metric_span,
            "E203",
            f"no branch sends a message, so {metric} cannot be measured",
            "pick the winner by conversions, or send in each branch",
        )
    unmeasured = [channel for channel in channels if channel not in measurable]
    if unmeasured:
        usable = [m for m, on in METRIC_CHANNELS.items() if all(c in on for c in channels)]
        ctx.error(
            split.metric_span,
            "E203",
            f"{metric} cannot be measured on {_alternatives(unmeasured, 'or')}",
            f"{metric} are measured on {_alternatives(list(measurable), 'and')}; "
            f"for these branches try {_alternatives(usable, 'or')}",
        )


def _alternatives(words: list[str], conjunction: str) -> str:
    """`a, b or c`: a list the way a sentence says it."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _check_random_split(ctx: CheckContext, split: ast.RandomSplit) -> None:
    _check_branch_names(ctx, split.branches)
    total = sum((b.share.value for b in split.branches if b.share is not None), start=0)
    for branch in split.branches:
        if branch.share is not None and branch.share.value <= 0:
            ctx.error(
                branch.share.span,
                "E212",
                f"the branch `{branch.name}` gets 0% of contacts",
                "give it a share above 0%, or remove it",
            )
    if total != 100:
        shares = " + ".join(f"{b.share.value}%" for b in split.branches if b.share is not None)
        ctx.error(
            split.span,
            "E202",
            f"the split's shares add up to {total}%, not 100% ({shares})",
            "make the shares add up to exactly 100%",
        )


# What each schema type accepts from a `set`, by the kind of the value written
# (`_written_kind`); text is accepted where it reads as the type (`_text_reads_as`).
SET_KINDS: dict[str, frozenset[str]] = {
    "string": frozenset({"text"}),
    "number": frozenset({"whole number", "number"}),
    "integer": frozenset({"whole number"}),
    "bool": frozenset({"boolean"}),
    "boolean": frozenset({"boolean"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date-time", "date"}),
    "list": frozenset({"list of text"}),
}


def _check_set_type(ctx: CheckContext, target: ast.Path, value: ast.Expr) -> None:
    """`set lead_score = "hot"` where the schema says `lead_score: number` (E223): stored,
    the text never compares with a number again, so every condition on the attribute is
    unknown (false) for that contact, silently. Only values whose kind is plain from the
    text are judged (literals and conditions); a computed value is left alone."""
    name = target.parts[1] if target.parts[0] == "contact" and len(target.parts) > 1 else None
    if name is None and len(target.parts) == 1:
        name = target.parts[0]
    if name == "id":
        ctx.error(
            target.span,
            "E223",
            "`set id` cannot change who the contact is: the id is how every event, send and"
            " import finds them",
            "store the value under another name: `set external_id = ...`",
        )
        return
    if name in SET_FIELD_KINDS:
        _check_set_field(ctx, name, value)
        return
    declared = ctx.symbols.schema.get(name) if name is not None else None
    kind = _written_kind(value)
    if declared is None or kind is None:
        return
    wanted = declared.node.type
    accepted = SET_KINDS.get(wanted, frozenset())
    if kind in accepted or (kind == "text" and _text_reads_as(value, wanted)):
        return
    ctx.error(
        value.span,
        "E223",
        f"`{name}` is declared `{wanted}` in the schema, but this sets it to"
        f" {_KIND_WORDS.get(kind, article(kind))}: a condition reading it as `{wanted}` would"
        " be unknown for the contact",
        f"set it to a `{wanted}` value, or declare `{name}` with the type it holds",
    )


# A name holds text; a number, a date, an instant or a duration is stored as the text
# `set` writes it as (`records._name`), never true/false, money or a list.
_NAME_KINDS = frozenset({"text", "whole number", "number", "date", "date-time", "duration"})

# The contact's own fields a `set` writes that hold what an import reads only (the runtime
# reads the value as an import does, and keeps the field as it was when it cannot hold it),
# by the kinds of value written (`_written_kind`) they can hold: text (`a;b` for tags).
SET_FIELD_KINDS: dict[str, frozenset[str]] = {
    "email": frozenset({"text"}), "phone": frozenset({"text"}),
    "timezone": frozenset({"text"}), "locale": frozenset({"text"}),
    "tags": frozenset({"text", "list of text"}),
    "first_name": _NAME_KINDS, "last_name": _NAME_KINDS,
}  # fmt: skip


def _check_set_field(ctx: CheckContext, name: str, value: ast.Expr) -> None:
    """`set email = 5`, `set timezone = "Mars/Base"` (E223): the runtime cannot store the
    value in the contact's field, so it keeps the old one, silently. Judged as written:
    the kind of a literal, and the text of a zone, locale or address."""
    kind = _written_kind(value)
    problem = None
    if kind is not None and kind not in SET_FIELD_KINDS[name]:
        problem = f"sets it to {_KIND_WORDS.get(kind, article(kind))}"
    elif isinstance(value, ast.StringLit):
        text = value.value.strip()
        if name == "timezone" and not is_timezone(text):
            problem = f'sets it to "{text}", which is no IANA zone such as "Europe/Paris"'
        elif name == "locale" and not LOCALE_TAG.fullmatch(text):
            problem = f'sets it to "{text}", which is no locale such as "es-MX"'
        elif name == "email" and (sender_problem(text) or "<" in text):
            problem = f'sets it to "{text}", which is no email address'
    if problem is None:
        return
    holds = "a list of text" if name == "tags" else "text"
    ctx.error(
        value.span,
        "E223",
        f"`{name}` is the contact's own field, holding {holds}, but this {problem}: the"
        " contact would keep the value it has",
        f"set `{name}` to a value it can hold, or store this under another name",
    )


# How a message names a kind `_written_kind` gives, where the bare article reads badly.
_KIND_WORDS: dict[str, str] = {
    "text": "text",
    "money": "an amount of money",
    "list": "a list with items that are not text",
}


def _written_kind(value: ast.Expr) -> str | None:
    """The kind of a value as written, for a `set`; None when only the contact can tell."""
    match value:
        case ast.NumberLit(value=number):
            return "whole number" if number == number.to_integral_value() else "number"
        case ast.Unary(op="-", operand=ast.NumberLit() as operand):
            return _written_kind(operand)
        case ast.PercentLit():
            return "number"
        case ast.StringLit() | ast.TimeLit():
            return "text"
        case ast.BoolLit() | ast.Compare() | ast.Within() | ast.Unary(op="not"):
            return "boolean"
        case ast.Binary(op="and" | "or"):
            return "boolean"
        case ast.DateLit():
            return "date"
        case ast.DateTimeLit():
            return "date-time"
        case ast.ListLit(items=items):
            if all(isinstance(item, ast.StringLit) for item in items):
                return "list of text"
            return "list"
        case ast.MoneyLit():
            return "money"
        case ast.DurationLit():
            return "duration"
    return None


def _text_reads_as(value: ast.Expr, wanted: str) -> bool:
    """Quoted text stored where a date or date-time is declared, and reads as one."""
    if not isinstance(value, ast.StringLit) or wanted not in ("date", "datetime"):
        return False
    text = value.value.strip()
    try:
        if wanted == "date":
            dt.date.fromisoformat(text)
        else:
            dt.datetime.fromisoformat(text.removesuffix("Z").removesuffix("z"))
    except ValueError:
        return False
    return len(text) == 10 if wanted == "date" else True
