"""`cadence fmt`: print a program in Cadence's one canonical layout, keeping every comment.

The layout: two-space indentation, one setting or step per line, blocks in braces, a blank
line between top-level declarations and before each trigger of a campaign, single blank
lines between siblings kept where the author put them. Literals are spelt one way:
durations combine units from days down (`1d12h`, `30d`; weeks are read but printed as
days, so `30d` never becomes `4w2d`), times `09:00`, numbers as written (`2.50` stays),
strings re-escaped, lists `["PH", "SG"]`; equality prints as `=`. Expressions get only the
parentheses that precedence needs. A `when` written without braces stays a one-liner while
it fits in 100 columns and holds only simple steps.

Comments are not in the AST's tree, only in `Program.comments` with their spans, so the
printer first lays the program out as lines that remember which source position they came
from (`_Line.key`), then hangs each comment on a line: a comment on the same source line as
the end of what a line prints is kept at the end of that line; any other comment goes on its
own line before the next line in source order, at that line's indentation (one deeper
before a closing brace). A comment after a block written on one source line goes to the
line that opens the block, since it speaks of the whole block. Trailing comments of
neighbouring lines at one depth are lined up in one column, as authors tend to write them.

`parse_text(format_program(p))` equals `p` (spans aside), and formatting is idempotent.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import assert_never

from cadence.dsl import ast
from cadence.dsl.parser import parse_text

INDENT = "  "
MAX_WIDTH = 100

# A source position that orders printed lines: (line, column, rank). Rank 0 is a real
# position; rank 1 sorts just after a real one and marks a line the source did not have
# in that form (a `} else {` or the brace closing a block that was written bare).
_Pos = tuple[int, int, int]


def format_text(text: str, file: str = "<string>") -> str:
    """Parse `text` and return it in canonical layout; raises `CadenceSyntaxError` if it is bad."""
    return format_program(parse_text(text, file), source=text)


def format_program(program: ast.Program, *, source: str | None = None) -> str:
    """The canonical text of a program, with `program.comments` put back where they belong.

    `source`, the text the program was parsed from, lets comments next to an `else` stay on
    the right side of it (the tree does not record where `else` stood).
    """
    printer = _Printer(program.comments, source)
    printer.program(program)
    last_end = program.declarations[-1].span.end_line if program.declarations else 0
    return _render(printer.lines, program.comments, last_end)


# ---------------------------------------------------------------------------- literals


def format_duration(seconds: int) -> str:
    """A duration in seconds, spelt with the largest units first: `1d12h`, `90m` -> `1h30m`."""
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_string(value: str) -> str:
    """A string value as a double-quoted literal that the parser reads back to `value`."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def format_decimal(value: Decimal) -> str:
    """A number as written, never in exponent notation (`2.50`, `1E+2` -> `100`)."""
    return format(value, "f")


def format_time(value: ast.TimeLit) -> str:
    """A time of day as `HH:MM`."""
    return f"{value.hour:02d}:{value.minute:02d}"


def format_moment(value: ast.DateLit | ast.DateTimeLit) -> str:
    """A date as `2026-12-01`, a datetime as `2026-12-01T09:00` (seconds only when set)."""
    if isinstance(value, ast.DateLit):
        return value.value.isoformat()
    moment: dt.datetime = value.value
    return moment.isoformat(timespec="seconds" if moment.second else "minutes")


def format_money(value: ast.MoneyLit) -> str:
    """An amount and its currency: `0.05 USD`."""
    return f"{format_decimal(value.amount)} {value.currency}"


# ---------------------------------------------------------------------------- expressions

# Binding strength, loosest first; an operand weaker than its slot needs parentheses.
_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _UNARY, _ATOM = range(1, 9)
_BINARY_STRENGTH = {"or": _OR, "and": _AND, "+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT}


def _strength(expr: ast.Expr) -> int:
    if isinstance(expr, ast.Binary):
        return _BINARY_STRENGTH[expr.op]
    if isinstance(expr, ast.Unary):
        return _NOT if expr.op == "not" else _UNARY
    if isinstance(expr, ast.Compare | ast.Within):
        return _COMPARE
    return _ATOM


def format_expression(expr: ast.Expr) -> str:
    """An expression with the fewest parentheses that keep its tree: `(a or b) and c`."""
    return _operand(expr, _OR)


def _operand(expr: ast.Expr, slot: int) -> str:
    text = _bare_expression(expr)
    return f"({text})" if _strength(expr) < slot else text


def _bare_expression(expr: ast.Expr) -> str:
    match expr:
        case ast.Binary(op=op, left=left, right=right):
            strength = _BINARY_STRENGTH[op]
            # All binary operators group to the left: a right operand of equal strength
            # was parenthesised in the source.
            return f"{_operand(left, strength)} {op} {_operand(right, strength + 1)}"
        case ast.Unary(op="not", operand=operand):
            return f"not {_operand(operand, _NOT)}"
        case ast.Unary(operand=operand):
            return f"-{_operand(operand, _UNARY)}"
        case ast.Compare(op=op, left=left, right=right):
            # Comparisons do not chain: both sides are sums.
            return f"{_operand(left, _SUM)} {op} {_operand(right, _SUM)}"
        case ast.Within(operand=operand, duration=duration):
            return f"{_operand(operand, _SUM)} within {format_duration(duration.seconds)}"
        case ast.Call(name=name, args=args):
            return f"{name}({', '.join(format_expression(a) for a in args)})"
        case ast.Path():
            return expr.dotted
        case ast.ListLit(items=items):
            return f"[{', '.join(format_expression(i) for i in items)}]"
        case ast.NumberLit(value=value):
            return format_decimal(value)
        case ast.StringLit(value=value):
            return format_string(value)
        case ast.BoolLit(value=value):
            return "true" if value else "false"
        case ast.DurationLit(seconds=seconds):
            return format_duration(seconds)
        case ast.TimeLit():
            return format_time(expr)
        case ast.DateLit() | ast.DateTimeLit():
            return format_moment(expr)
        case ast.PercentLit(value=value):
            return f"{format_decimal(value)}%"
        case ast.MoneyLit():
            return format_money(expr)
        case _:
            assert_never(expr)


# ---------------------------------------------------------------------------- one-line texts


def format_trigger(trigger: ast.Trigger) -> str:
    """A trigger's head, without its steps: `when property_viewed count>=3 within 7d`."""
    match trigger:
        case ast.EventTrigger():
            return _event_trigger(trigger)
        case ast.ContactCreatedTrigger():
            return "on contact_created"
        case ast.SegmentEnterTrigger(segment=segment):
            return f"on segment_enter {segment}"
        case ast.LaunchTrigger():
            return "on launch"
        case ast.AtTrigger(moment=moment, local=local):
            return f"at {format_moment(moment)}{' local' if local else ''}"
        case ast.EveryTrigger(days=days, interval=interval, time=time, local=local):
            schedule = ", ".join(days) if interval is None else format_duration(interval.seconds)
            at = f" {format_time(time)}" if time is not None else ""
            return f"every {schedule}{at}{' local' if local else ''}"
        case _:
            assert_never(trigger)


def _event_trigger(trigger: ast.EventTrigger) -> str:
    plain = (
        trigger.count is None
        and trigger.within is None
        and trigger.where is None
        and trigger.fanout is None
    )
    # `on launch` and `on contact_created` mean other triggers; `when` is always safe.
    if trigger.keyword == "on" and plain and trigger.event not in ("launch", "contact_created"):
        return f"on {trigger.event}"
    parts = [f"when {trigger.event}"]
    if trigger.count is not None:
        op = "==" if trigger.count.op == "=" else trigger.count.op
        parts.append(f"count{op}{trigger.count.count}")
    if trigger.within is not None:
        parts.append(f"within {format_duration(trigger.within.seconds)}")
    if trigger.where is not None:
        parts.append(f"where {format_expression(trigger.where)}")
    if trigger.fanout is not None:
        parts.append(f"for contacts where {format_expression(trigger.fanout)}")
    return " ".join(parts)


def format_step(step: ast.Step) -> str | None:
    """A step that fits on one line (`send email welcome`), or None for `if` and `split`."""
    match step:
        case ast.Send(channel=channel, template=template):
            return f"send {channel} {template}"
        case ast.Wait(duration=duration):
            return f"wait {format_duration(duration.seconds)}"
        case ast.WaitUntil(time=time, local=local):
            return f"wait until {format_time(time)}{' local' if local else ''}"
        case ast.WaitFor(event=event, up_to=up_to):
            limit = f" up to {format_duration(up_to.seconds)}" if up_to is not None else ""
            return f"wait for {format_expression(event)}{limit}"
        case ast.SetAttr(target=target, value=value):
            return f"set {target.dotted} = {format_expression(value)}"
        case ast.Tag(action=action, tag=tag):
            return f"tag {action} {format_string(tag)}"
        case ast.AssignAgent(strategy=strategy):
            return f"assign agent {strategy}"
        case ast.Notify(channel=channel, target=target):
            return f"notify {channel} {format_string(target)}"
        case ast.Enroll(campaign=campaign):
            return f"enroll {campaign}"
        case ast.Exit(reason=reason):
            return "exit" if reason is None else f"exit {format_string(reason)}"
        case ast.Placeholder():
            return "..."
        case ast.If() | ast.ABSplit() | ast.RandomSplit():
            return None
        case _:
            assert_never(step)


def format_setting(setting: ast.Setting) -> str:
    """One campaign setting on one line: `cap email 3 per 7d`."""
    match setting:
        case ast.NameSetting(key=key, value=value):
            return f"{key} {value}"
        case ast.ExprSetting(key=key, expr=expr):
            return f"{key} {format_expression(expr)}"
        case ast.StringSetting(key=key, value=value):
            return f"{key} {format_string(value)}"
        case ast.ChannelsSetting(channels=channels):
            return f"channels {', '.join(channels)}"
        case ast.NumberSetting(key=key, value=value):
            return f"{key} {format_decimal(value)}"
        case ast.CapSetting(channel=channel, count=count, per=per):
            on = f"{channel} " if channel is not None else ""
            return f"cap {on}{count} per {format_duration(per.seconds)}"
        case ast.SendWindowSetting(start=start, end=end, local=local, days=days):
            text = f"send_window {format_time(start)}-{format_time(end)}"
            return text + (" local" if local else "") + (f" {', '.join(days)}" if days else "")
        case ast.TimezoneSetting(zone=zone, fallback=fallback):
            return f"timezone {'fallback ' if fallback else ''}{format_string(zone)}"
        case ast.QuietHoursSetting(channel=channel, start=start, end=end, local=local):
            on = f"{channel} " if channel is not None else ""
            hours = f"{format_time(start)}-{format_time(end)}"
            return f"quiet_hours {on}{hours}{' local' if local else ''}"
        case ast.BudgetSetting(amount=amount):
            return f"budget {format_money(amount)}"
        case ast.CostSetting(items=items):
            return "cost " + ", ".join(f"{i.channel} {format_money(i.amount)}" for i in items)
        case ast.DateSetting(key=key, moment=moment):
            return f"{key} {format_moment(moment)}"
        case ast.ReenterSetting(after=after):
            return "reenter always" if after is None else f"reenter after {_dur(after)}"
        case _:
            assert_never(setting)


def _dur(duration: ast.DurationLit) -> str:
    return format_duration(duration.seconds)


def _score_rule(rule: ast.ScoreRule) -> str:
    if isinstance(rule, ast.ScoreDecay):
        return f"decay {format_decimal(rule.percent.value)}% per {_dur(rule.per)}"
    within = f" within {_dur(rule.within)}" if rule.within is not None else ""
    points = format_decimal(rule.points)
    sign = "" if points.startswith("-") else "+"
    return f"{format_expression(rule.event)}{within}: {sign}{points}{' each' if rule.each else ''}"


# ---------------------------------------------------------------------------- layout


@dataclass
class _Line:
    """One output line and where its content came from, so comments can find it."""

    depth: int
    text: str
    key: _Pos  # where the printed content ends in the source (see module docstring)
    start: _Pos | None = None  # where it starts, when that is a real position
    prev_end: int | None = None  # source end line of the previous sibling; None: no gaps kept
    blank: bool = False  # the layout itself wants a blank line before this one
    opener: int | None = None  # on a closing brace: the index of the line that opened it
    leading: list[ast.Comment] = field(default_factory=list)
    trailing: list[ast.Comment] = field(default_factory=list)

    @property
    def real(self) -> bool:
        """True when `key` is a real source position that comments may attach to."""
        return self.key[2] == 0


def _start(span: ast.Span) -> _Pos:
    return (span.line, span.column, 0)


def _end(span: ast.Span) -> _Pos:
    return (span.end_line, span.end_column, 0)


def _after(pos: _Pos) -> _Pos:
    return (pos[0], pos[1], 1)


class _Printer:
    """Lays a program out as `_Line`s; comments are attached afterwards by `_render`."""

    def __init__(self, comments: Sequence[ast.Comment], source: str | None) -> None:
        self.lines: list[_Line] = []
        self._open: list[int] = []  # indices of the lines whose `{` is not closed yet
        self._comment_at = sorted((c.span.line, c.span.column) for c in comments)
        self._source = source
        self._line_offsets: list[int] = []
        if source is not None:
            offset = 0
            for text in source.split("\n"):
                self._line_offsets.append(offset)
                offset += len(text) + 1

    def _brace_after(self, pos: _Pos) -> _Pos | None:
        """Where the `}` that follows `pos` (past blanks and comments) stands, if it does."""
        if self._source is None or pos[2] != 0 or not 1 <= pos[0] <= len(self._line_offsets):
            return None
        source = self._source
        index = self._line_offsets[pos[0] - 1] + pos[1] - 1
        while index < len(source):
            char = source[index]
            if char == "#":
                newline = source.find("\n", index)
                index = len(source) if newline == -1 else newline
            elif char.isspace() or char == "{":  # `{` opens an empty branch: `if x { } else`
                index += 1
            else:
                break
        if index >= len(source) or source[index] != "}":
            return None
        line = bisect_right(self._line_offsets, index)
        return (line, index - self._line_offsets[line - 1] + 1, 0)

    def _emit(
        self,
        depth: int,
        text: str,
        key: _Pos,
        *,
        start: _Pos | None = None,
        prev_end: int | None = None,
        blank: bool = False,
    ) -> None:
        if text.endswith("{") and not text.startswith("}"):
            self._open.append(len(self.lines))
        self.lines.append(_Line(depth, text, key, start, prev_end, blank))

    def _comment_inside(self, span: ast.Span) -> bool:
        """True when a comment stands between the start and the end of `span`."""
        index = bisect_right(self._comment_at, (span.line, span.column))
        return index < len(self._comment_at) and self._comment_at[index] < (
            span.end_line,
            span.end_column,
        )

    def _close(self, depth: int, key: _Pos, last_child_end: int | None) -> None:
        self._emit(depth, "}", key, prev_end=last_child_end)
        self.lines[-1].opener = self._open.pop()

    # -- declarations

    def program(self, program: ast.Program) -> None:
        prev_end = 0
        for index, declaration in enumerate(program.declarations):
            self.declaration(declaration, prev_end, blank=index > 0)
            prev_end = declaration.span.end_line

    def declaration(self, decl: ast.Declaration, prev_end: int | None, blank: bool) -> None:
        def first(text: str, key: _Pos) -> None:
            self._emit(0, text, key, start=_start(decl.span), prev_end=prev_end, blank=blank)

        match decl:
            case ast.Import(path=path):
                first(f"import {format_string(path)}", _end(decl.span))
            case ast.SegmentDecl(name=name, expr=expr):
                text = f"segment {name} = {format_expression(expr)}"
                first(text, _end(decl.span))
            case ast.SchemaDecl(fields=fields):
                first("schema contact {", _start(decl.span))
                last: int | None = None
                for schema_field in fields:
                    self._emit(
                        1,
                        f"{schema_field.name}: {schema_field.type}",
                        _end(schema_field.span),
                        start=_start(schema_field.span),
                        prev_end=last,
                    )
                    last = schema_field.span.end_line
                self._close(0, _end(decl.span), last)
            case ast.TemplateDecl():
                self.template(decl, prev_end, blank)
            case ast.ScoreDecl(name=name, rules=rules):
                first(f"score {name} {{", _start(decl.span))
                last = None
                for rule in rules:
                    self._emit(
                        1,
                        _score_rule(rule),
                        _end(rule.span),
                        start=_start(rule.span),
                        prev_end=last,
                    )
                    last = rule.span.end_line
                self._close(0, _end(decl.span), last)
            case ast.CampaignDecl():
                self.campaign(decl, prev_end, blank)
            case ast.TriggerBlock():
                self.trigger_block(decl, 0, prev_end, blank)
            case _:
                assert_never(decl)

    def template(self, decl: ast.TemplateDecl, prev_end: int | None, blank: bool) -> None:
        head = f"template {decl.name} {decl.channel}"
        if decl.inline:
            body = decl.content.body
            if body is None or decl.locales or decl.content != ast.TemplateContent(body=body):
                raise ValueError(f"inline template {decl.name} may only have a body")
            text = f"{head} {format_string(body.value)}"
            self._emit(
                0, text, _end(decl.span), start=_start(decl.span), prev_end=prev_end, blank=blank
            )
            return
        self._emit(
            0,
            f"{head} {{",
            _start(decl.span),
            start=_start(decl.span),
            prev_end=prev_end,
            blank=blank,
        )
        last = self._template_content(decl.content, 1)
        for locale in decl.locales:
            self._emit(
                1,
                f"locale {format_string(locale.locale)} {{",
                _start(locale.span),
                start=_start(locale.span),
                prev_end=last,
            )
            inner = self._template_content(locale.content, 2)
            self._close(1, _end(locale.span), inner)
            last = locale.span.end_line
        self._close(0, _end(decl.span), last)

    def _template_content(self, content: ast.TemplateContent, depth: int) -> int | None:
        last: int | None = None
        parts = (
            ("subject", content.subject),
            ("preheader", content.preheader),
            ("body", content.body),
            ("body file", content.body_file),
        )
        for keyword, value in parts:
            if value is None:
                continue
            self._emit(
                depth,
                f"{keyword} {format_string(value.value)}",
                _end(value.span),
                start=_start(value.span),
                prev_end=last,
            )
            last = value.span.end_line
        return last

    def campaign(self, decl: ast.CampaignDecl, prev_end: int | None, blank: bool) -> None:
        display = f" {format_string(decl.display_name)}" if decl.display_name is not None else ""
        self._emit(
            0,
            f"campaign {decl.name}{display} {{",
            _start(decl.span),
            start=_start(decl.span),
            prev_end=prev_end,
            blank=blank,
        )
        last: int | None = None
        for setting in decl.settings:
            self._emit(
                1,
                format_setting(setting),
                _end(setting.span),
                start=_start(setting.span),
                prev_end=last,
            )
            last = setting.span.end_line
        for index, block in enumerate(decl.triggers):
            self.trigger_block(block, 1, last, blank=index > 0 or bool(decl.settings))
            last = block.span.end_line
        self._close(0, _end(decl.span), last)

    # -- triggers and steps

    def trigger_block(
        self, block: ast.TriggerBlock, depth: int, prev_end: int | None, blank: bool
    ) -> None:
        head = format_trigger(block.trigger)
        start = _start(block.span)
        one_line = [format_step(s) for s in block.steps]
        if (
            not block.braced
            and one_line
            and not self._comment_inside(block.span)
            and all(t is not None for t in one_line)
        ):
            text = " ".join([head, *(t for t in one_line if t is not None)])
            if len(INDENT) * depth + len(text) <= MAX_WIDTH:
                self._emit(
                    depth, text, _end(block.span), start=start, prev_end=prev_end, blank=blank
                )
                return
        self._emit(
            depth,
            f"{head} {{",
            _end(block.trigger.span),
            start=start,
            prev_end=prev_end,
            blank=blank,
        )
        last = self.steps(block.steps, depth + 1)
        close = _end(block.span)
        self._close(depth, close if block.braced else _after(close), last)

    def steps(self, steps: Sequence[ast.Step], depth: int) -> int | None:
        """Print a step list; return the source end line of its last step."""
        last: int | None = None
        for step in steps:
            self.step(step, depth, last)
            last = step.span.end_line
        return last

    def step(self, step: ast.Step, depth: int, prev_end: int | None) -> None:
        match step:
            case ast.If():
                self.if_step(step, depth, prev_end)
            case ast.ABSplit(test_share=share, metric=metric, after=after, branches=branches):
                head = (
                    f"split {format_decimal(share.value)}% test winner by {metric}"
                    f" after {_dur(after)} {{"
                )
                key = _end(after.span) if after.span is not ast.NO_SPAN else _start(step.span)
                self._emit(depth, head, key, start=_start(step.span), prev_end=prev_end)
                self._branches(branches, depth + 1)
                self._close(
                    depth, _end(step.span), branches[-1].span.end_line if branches else None
                )
            case ast.RandomSplit(branches=branches):
                self._emit(
                    depth, "split {", _start(step.span), start=_start(step.span), prev_end=prev_end
                )
                self._branches(branches, depth + 1)
                self._close(
                    depth, _end(step.span), branches[-1].span.end_line if branches else None
                )
            case _:
                self._emit(
                    depth,
                    format_step(step) or "",
                    _end(step.span),
                    start=_start(step.span),
                    prev_end=prev_end,
                )

    def if_step(self, step: ast.If, depth: int, prev_end: int | None) -> None:
        last: int | None = None
        for index, branch in enumerate(step.branches):
            condition = format_expression(branch.condition)
            cond_span = branch.condition.span
            key = _end(cond_span) if cond_span is not ast.NO_SPAN else _start(branch.span)
            if index == 0:
                text = f"if {condition} {{"
                self._emit(depth, text, key, start=_start(step.span), prev_end=prev_end)
            else:
                text = f"}} else if {condition} {{"
                self._emit(depth, text, key, start=_start(branch.span), prev_end=last)
            last = self.steps(branch.steps, depth + 1)
        if step.else_steps is not None:
            previous = self.lines[-1].key
            self._emit(depth, "} else {", self._brace_after(previous) or _after(previous))
            last = self.steps(step.else_steps, depth + 1)
        self._close(depth, _end(step.span), last)

    def _branches(self, branches: Sequence[ast.SplitBranch], depth: int) -> None:
        last: int | None = None
        for branch in branches:
            share = f" {format_decimal(branch.share.value)}%" if branch.share is not None else ""
            label = f"{branch.name}{share}:"
            steps = branch.steps
            one_line = format_step(steps[0]) if len(steps) == 1 else None
            if one_line is not None and not self._comment_inside(branch.span):
                text = f"{label} {one_line}"
                self._emit(depth, text, _end(branch.span), start=_start(branch.span), prev_end=last)
            else:
                self._emit(
                    depth,
                    f"{label} {{",
                    _start(branch.span),
                    start=_start(branch.span),
                    prev_end=last,
                )
                inner = self.steps(steps, depth + 1)
                close = _end(branch.span)
                # A branch written bare ends where its last step ends: no real brace there.
                bare = (
                    bool(steps)
                    and branch.span.end_line == steps[-1].span.end_line
                    and (branch.span.end_column == steps[-1].span.end_column)
                )
                self._close(depth, _after(close) if bare else close, inner)
            last = branch.span.end_line


# ---------------------------------------------------------------------------- comments


def _attach(lines: list[_Line], comments: Sequence[ast.Comment]) -> list[ast.Comment]:
    """Hang every comment on a line (leading or trailing); return those left for the end."""
    finder = _LineFinder(lines)
    at_end: list[ast.Comment] = []
    for comment in sorted(comments, key=lambda c: (c.span.line, c.span.column)):
        pos: _Pos = (comment.span.line, comment.span.column, 0)
        target = finder.enclosing(pos)
        if target is not None:
            lines[target].leading.append(comment)
            continue
        target = finder.ending_on_same_line(pos)
        if target is not None:
            # A block written on one source line and commented after its `}` is commented
            # as a whole: the comment goes to the line that opens it.
            opener = lines[target].opener
            start = lines[opener].start if opener is not None else None
            if opener is not None and start is not None and start[0] == pos[0]:
                target = opener
            lines[target].trailing.append(comment)
            continue
        target = finder.next_line(pos)
        if target is not None:
            lines[target].leading.append(comment)
        else:
            at_end.append(comment)
    return at_end


class _LineFinder:
    """Finds the line a comment belongs to by source position; ties go to the earlier line."""

    def __init__(self, lines: list[_Line]) -> None:
        self._lines = lines
        # Only content printed on one line but written over several can hold a comment.
        self._spanning = [
            i
            for i, line in enumerate(lines)
            if line.real and line.start is not None and line.start[0] < line.key[0]
        ]
        self._ending_on: dict[int, list[int]] = {}
        for index, line in enumerate(lines):
            if line.real:
                self._ending_on.setdefault(line.key[0], []).append(index)
        self._by_key = sorted(range(len(lines)), key=lambda i: (lines[i].key, i))
        self._keys = [lines[i].key for i in self._by_key]

    def enclosing(self, pos: _Pos) -> int | None:
        """A line whose content spans several source lines with the comment in between."""
        best: int | None = None
        for index in self._spanning:
            line = self._lines[index]
            if line.start is not None and line.start < pos < line.key:
                if best is None or line.key < self._lines[best].key:
                    best = index
        return best

    def ending_on_same_line(self, pos: _Pos) -> int | None:
        """The line whose content ends last before the comment, on the comment's own line."""
        best: int | None = None
        for index in self._ending_on.get(pos[0], ()):
            key = self._lines[index].key
            if key <= pos and (best is None or key > self._lines[best].key):
                best = index
        return best

    def next_line(self, pos: _Pos) -> int | None:
        """The first line, in source order, that comes after the comment."""
        where = bisect_right(self._keys, pos)
        return self._by_key[where] if where < len(self._by_key) else None


@dataclass
class _Row:
    """One line of output: code (with maybe a trailing comment), a comment line, or blank."""

    depth: int
    text: str
    trailing: str | None = None
    code: bool = True


def _render(lines: list[_Line], comments: Sequence[ast.Comment], last_end: int) -> str:
    at_end = _attach(lines, comments)
    rows: list[_Row] = []

    def add(blank: bool, row: _Row) -> None:
        if blank and rows and rows[-1].text:
            rows.append(_Row(0, "", code=False))
        rows.append(row)

    def gap(line_no: int, bound: int | None) -> bool:
        """Whether the source had a blank line just before `line_no`."""
        return bound is not None and line_no - 1 > bound

    for line in lines:
        closing = line.text.startswith("}")
        comment_depth = line.depth + 1 if closing else line.depth
        bound = line.prev_end
        blank_due = line.blank
        for comment in line.leading:
            row = _Row(comment_depth, _text(comment), code=False)
            add(blank_due or gap(comment.span.line, bound), row)
            blank_due = False
            if bound is not None:
                bound = comment.span.end_line
        node_gap = not closing and line.start is not None and gap(line.start[0], bound)
        trailing = [_text(c) for c in line.trailing]
        add(blank_due or node_gap, _Row(line.depth, line.text, trailing[0] if trailing else None))
        # Never more than one per line in practice; keep any extra on its own line.
        rows.extend(_Row(line.depth, extra, code=False) for extra in trailing[1:])
    bound = last_end
    for comment in at_end:
        add(gap(comment.span.line, bound), _Row(0, _text(comment), code=False))
        bound = comment.span.end_line
    _align_trailing(rows)
    out = [INDENT * row.depth + row.text + (row.trailing or "") if row.text else "" for row in rows]
    return "\n".join(out) + "\n" if out else ""


def _align_trailing(rows: list[_Row]) -> None:
    """Line up the trailing comments of consecutive code lines at one depth, as authors do."""
    start = 0
    while start < len(rows):
        end = start + 1
        while (
            rows[start].code
            and end < len(rows)
            and rows[end].code
            and rows[end].depth == rows[start].depth
        ):
            end += 1
        run = [r for r in rows[start:end] if r.trailing is not None]
        if run:
            column = max(len(INDENT * r.depth + r.text) for r in run) + 2
            for row in run:
                width = len(INDENT * row.depth + row.text)
                pad = column - width if column <= MAX_WIDTH else 2
                row.trailing = " " * pad + (row.trailing or "")
        start = end


def _text(comment: ast.Comment) -> str:
    return comment.text.rstrip()
