"""Plain-English explanations of campaigns, so ops people can read what a file will do.

`cadence explain` works on the syntax tree and the symbol table rather than on the compiled
graph, so a file that only has check warnings can still be explained. The output is a list of
indented lines; `explain_workspace` joins them into plain text and the CLI styles them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypeAlias

from cadence.dsl import ast
from cadence.dsl.checks.steps import all_steps
from cadence.dsl.compiler import infer_campaign_type
from cadence.dsl.loader import Workspace
from cadence.dsl.symbols import (
    DEFAULT_CAP,
    ENGAGEMENT_FLAGS,
    IMPLIED_APPROVAL_ABOVE,
    CampaignUnit,
    Symbols,
    collect_symbols,
)

LineKind: TypeAlias = Literal["title", "heading", "text"]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of an explanation: how far it is indented, its words and what role it plays."""

    indent: int
    text: str
    kind: LineKind = "text"

    def plain(self) -> str:
        """The line as plain text, indented by `indent` spaces."""
        return " " * self.indent + self.text if self.text else ""


@dataclass(frozen=True)
class Names:
    """The declared names that decide how a bare name reads: segment, score or attribute."""

    segments: frozenset[str] = frozenset()
    scores: frozenset[str] = frozenset()
    campaigns: Mapping[str, str] = field(default_factory=dict)  # name -> display name

    @classmethod
    def of(cls, symbols: Symbols) -> Names:
        """The names a workspace's symbol table declares."""
        return cls(
            segments=frozenset(symbols.segments),
            scores=frozenset(symbols.scores),
            campaigns={name: unit.display_name for name, unit in symbols.campaigns.items()},
        )


def explain_workspace(workspace: Workspace) -> str:
    """Explain every campaign declared in the workspace's root files, as plain text."""
    return "\n".join(line.plain() for line in explain_lines(workspace)) + "\n"


def explain_lines(workspace: Workspace) -> list[Line]:
    """Explain every campaign of the workspace's root files, one `Line` at a time."""
    symbols = collect_symbols(workspace)
    roots = set(workspace.roots)
    units = [unit for unit in symbols.campaigns.values() if unit.file.path in roots]
    if not units:
        return [Line(0, "This file declares no campaigns.")]
    lines: list[Line] = []
    for index, unit in enumerate(units):
        if index:
            lines.append(Line(0, ""))
        lines.extend(explain_campaign(unit, symbols))
    return lines


def explain_campaign(unit: CampaignUnit, symbols: Symbols) -> list[Line]:
    """Explain one campaign: who enters, its settings, then its steps in order."""
    names = Names.of(symbols)
    lines = [Line(0, f'{unit.display_name} (campaign "{unit.name}")', "title")]
    lines.extend(Line(2, text) for text in _settings_sentences(unit, names))
    for number, block in enumerate(unit.triggers, start=1):
        lines.append(Line(0, ""))
        heading = "Who enters" if len(unit.triggers) == 1 else f"Entry {number}"
        lines.append(Line(0, f"{heading}: {describe_trigger(block.trigger, names)}.", "heading"))
        origin: dt.datetime | None = None
        if isinstance(block.trigger, ast.AtTrigger):
            moment = block.trigger.moment
            origin = (
                moment.value
                if isinstance(moment, ast.DateTimeLit)
                else dt.datetime.combine(moment.value, dt.time())
            )
        steps = _StepWriter(symbols, names, origin)
        steps.write(block.steps, indent=2, start=_Elapsed(0, 0))
        if steps.lines:
            lines.append(Line(0, "Steps (days counted from when the contact enters):", "heading"))
            lines.extend(steps.lines)
        else:
            lines.append(Line(2, "(no steps: the contact enters and leaves at once)"))
    return lines


# ---------------------------------------------------------------------------- words


_CHANNEL_NOUNS: dict[str, tuple[str, str]] = {
    "email": ("email", "emails"),
    "sms": ("SMS", "SMS messages"),
    "whatsapp": ("WhatsApp message", "WhatsApp messages"),
    "inbox": ("in-app inbox message", "in-app inbox messages"),
    "webhook": ("webhook call", "webhook calls"),
}

_TYPE_WORDS: dict[str, str] = {
    "broadcast": "broadcast (one send to the whole audience)",
    "drip": "drip (a timed sequence for each contact)",
    "triggered": "triggered (runs for each contact when its trigger fires)",
    "recurring": "recurring (runs again on a schedule)",
    "ab_test": "A/B test (variants are tried and the winner goes to the rest)",
}

# The winner is the best rate (engaged over delivered, as `cadence report` rates a variant),
# not the most engaged: variants may be sent to one contact more or less, and their sends
# bounce more or less (docs/semantics.md, A/B tests).
_METRIC_WORDS: dict[str, str] = {
    "opens": "open rate",
    "open": "open rate",
    "opened": "open rate",
    "clicks": "click rate",
    "click": "click rate",
    "clicked": "click rate",
    "replies": "reply rate",
    "reply": "reply rate",
    "replied": "reply rate",
    "conversions": "conversion rate",
    "conversion": "conversion rate",
    "converted": "conversion rate",
}

_DAY_NAMES: dict[str, str] = {
    "monday": "Monday",
    "tuesday": "Tuesday",
    "wednesday": "Wednesday",
    "thursday": "Thursday",
    "friday": "Friday",
    "saturday": "Saturday",
    "sunday": "Sunday",
    "weekdays": "weekdays",
    "weekday": "weekdays",
    "weekends": "weekends",
    "weekend": "weekends",
    "daily": "every day",
    "day": "every day",
}

# Verbs after which an event's object did something itself ("a price has dropped") rather
# than having something done to it ("a property is listed").
_INTRANSITIVE = frozenset(
    {"dropped", "changed", "expired", "increased", "decreased", "ended", "rose", "fell"}
)


def channel_noun(channel: str, plural: bool = False) -> str:
    """What a channel's messages are called in a sentence: "email", "SMS messages"."""
    singular, many = _CHANNEL_NOUNS.get(channel, (f"{channel} message", f"{channel} messages"))
    return many if plural else singular


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def join_words(items: Sequence[str], last: str = "and") -> str:
    """Join words as a sentence does: "a", "a and b", "a, b and c"."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def duration_words(seconds: int) -> str:
    """A duration in words: "7 days", "1 day and 12 hours", "30 seconds"."""
    if seconds == 0:
        return "0 seconds"
    parts: list[str] = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    return join_words(parts)


def last_words(seconds: int) -> str:
    """A period counted back from now: "the last day", "the last 30 days"."""
    text = duration_words(seconds)
    if text.startswith("1 ") and " and " not in text:
        return f"the last {text[2:]}"
    return f"the last {text}"


def _per_words(seconds: int) -> str:
    if seconds == 86400:
        return "per day"
    if seconds == 3600:
        return "per hour"
    return f"every {duration_words(seconds)}"


def number_words(value: Decimal) -> str:
    """A number as people write it: thousands separated, no trailing zeros after the point."""
    if value == value.to_integral_value():
        return f"{int(value):,}"
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def money_words(money: ast.MoneyLit) -> str:
    """An amount with its currency: "1,500 USD", "0.05 USD"."""
    return f"{number_words(money.amount)} {money.currency}"


def time_words(time: ast.TimeLit) -> str:
    """A time of day on the 24-hour clock: "09:00"."""
    return f"{time.hour:02d}:{time.minute:02d}"


def date_words(value: dt.date) -> str:
    """A date spelt out: "1 December 2026"."""
    return f"{value.day} {value.strftime('%B')} {value.year}"


def moment_words(moment: ast.DateLit | ast.DateTimeLit) -> str:
    """A date, or a date with its time: "1 December 2026 at 09:00"."""
    if isinstance(moment, ast.DateTimeLit):
        return f"{date_words(moment.value.date())} at {moment.value.strftime('%H:%M')}"
    return date_words(moment.value)


def _local_words(local: bool) -> str:
    return " in each contact's local time" if local else ""


def _days_words(days: Sequence[str]) -> str:
    return join_words([_DAY_NAMES.get(day, day) for day in days])


def event_words(event: str, *, about_contact: bool) -> str:
    """An event name as a clause: "has viewed a property", "a property is listed".

    Names shaped `thing_verbed` read as sentences; anything else is quoted as an event name.
    """
    words = event.split("_")
    if len(words) >= 2 and words[-1].endswith("ed") and len(words[-1]) > 3:
        verb, thing = words[-1], " ".join(words[:-1])
        if about_contact:
            return f"has {verb} {_article(thing)} {thing}"
        if verb in _INTRANSITIVE:
            return f"{_article(thing)} {thing} has {verb}"
        return f"{_article(thing)} {thing} is {verb}"
    if about_contact:
        return f'has a "{event}" event'
    return f'a "{event}" event happens'


def _event_noun(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Path):
        return f"{expr.dotted} event"
    if isinstance(expr, ast.StringLit):
        return f"{expr.value} event"
    return "event"


# ---------------------------------------------------------------------------- expressions

Mode: TypeAlias = Literal["contact", "event", "fanout"]

_NEGATED: dict[ast.CompareOp, ast.CompareOp] = {
    "=": "!=",
    "!=": "=",
    "<": ">=",
    "<=": ">",
    ">": "<=",
    ">=": "<",
    "in": "not in",
    "not in": "in",
}
_FLIPPED: dict[ast.CompareOp, ast.CompareOp] = {
    "=": "=",
    "!=": "!=",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
}
_COMPARE_WORDS: dict[ast.CompareOp, str] = {
    "=": "is",
    "!=": "is not",
    "<": "is below",
    "<=": "is at most",
    ">": "is above",
    ">=": "is at least",
}
_ARITHMETIC: dict[str, tuple[str, int]] = {
    "+": ("plus", 1),
    "-": ("minus", 1),
    "*": ("times", 2),
    "/": ("divided by", 2),
}
# Positive and negative forms of the engagement functions and flags: {t} stands for the
# template, {has} for "the contact has" (or "they have").
_ENGAGEMENT: dict[str, tuple[str, str]] = {
    "opened": ("{has} opened {t}", "{has} not opened {t}"),
    "clicked": ("{has} clicked {t}", "{has} not clicked {t}"),
    "replied": ("{has} replied to {t}", "{has} not replied to {t}"),
    "bounced": ("{t} has bounced", "{t} has not bounced"),
    "delivered": ("{t} has been delivered", "{t} has not been delivered"),
}
_FLAGS: dict[str, tuple[str, str]] = {
    "converted": ("{has} converted", "{has} not converted"),
    "unsubscribed": ("{has} unsubscribed", "{has} not unsubscribed"),
}


class ExprWords:
    """Renders expressions as English, keeping the grouping that precedence gives them.

    `mode` says whose attributes a bare name means: the contact's (audiences, conditions),
    the counted event's (a trigger's `where`), or, in a fan-out, the contacts being chosen,
    whose attributes read as "whose budget_max is ...".
    """

    def __init__(self, names: Names, mode: Mode = "contact", *, they: bool = False) -> None:
        self.names = names
        self.mode = mode
        self.they = they

    def _has(self) -> str:
        return "they have" if self.they else "the contact has"

    def _is(self) -> str:
        return "they are" if self.they else "the contact is"

    def _their(self) -> str:
        return "their" if self.they else "the contact's"

    # -- conditions

    def condition(self, expr: ast.Expr) -> str:
        """A boolean expression as a clause: `lead_score >= 30` -> "lead_score is at least 30"."""
        match expr:
            case ast.Binary(op="and" | "or" as op):
                return self._connective(op, expr)
            case ast.Unary(op="not", operand=operand):
                return self.negation(operand)
            case ast.Compare():
                return self._compare(expr.op, expr.left, expr.right)
            case ast.Within(operand=operand, duration=duration):
                return self._within(operand, duration, negated=False)
            case ast.Call():
                return self._call_condition(expr, negated=False)
            case ast.Path():
                return self._path_condition(expr, negated=False)
            case ast.BoolLit(value=value):
                return "always" if value else "never"
            case _:
                return self.value(expr)

    def negation(self, expr: ast.Expr) -> str:
        """The clause for `not expr`, phrased positively where English has a word for it."""
        match expr:
            case ast.Unary(op="not", operand=operand):
                return self.condition(operand)
            case ast.Compare(op=op, left=left, right=right):
                if op in _NEGATED:
                    return self._compare(_NEGATED[op], left, right)
                verb = "does not contain" if op == "contains" else "does not start with"
                return f"{self._subject(left)} {verb} {self.value(right)}"
            case ast.Within(operand=operand, duration=duration):
                return self._within(operand, duration, negated=True)
            case ast.Call():
                return self._call_condition(expr, negated=True)
            case ast.Path():
                return self._path_condition(expr, negated=True)
            case ast.BoolLit(value=value):
                return "never" if value else "always"
            case ast.Binary(op="or"):
                parts = [self._operand("or", part) for part in _flatten("or", expr)]
                return "neither " + " nor ".join(parts)
            case _:
                return f"not ({self.condition(expr)})"

    def _connective(self, op: Literal["and", "or"], expr: ast.Expr) -> str:
        return f" {op} ".join(self._operand(op, part) for part in _flatten(op, expr))

    def _operand(self, op: Literal["and", "or"], expr: ast.Expr) -> str:
        text = self.condition(expr)
        if isinstance(expr, ast.Binary) and expr.op in ("and", "or") and expr.op != op:
            return f"({text})"
        return text

    def _compare(self, op: ast.CompareOp, left: ast.Expr, right: ast.Expr) -> str:
        # `500 < price` reads better as "price is above 500"; a computed left side stays put.
        simple = isinstance(left, ast.Path | ast.NumberLit | ast.StringLit | ast.MoneyLit)
        if op in _FLIPPED and simple and not self._is_subject(left) and self._is_subject(right):
            op, left, right = _FLIPPED[op], right, left
        if op in ("in", "not in"):
            if isinstance(right, ast.ListLit):
                items = [self.value(item) for item in right.items]
                if len(items) == 1:
                    verb = "is" if op == "in" else "is not"
                    return f"{self._subject(left)} {verb} {items[0]}"
                verb = "is one of" if op == "in" else "is none of"
                return f"{self._subject(left)} {verb} {join_words(items, 'or')}"
            holder = self._subject(right)
            plural = _looks_plural(right)
            if op == "in":
                verb = "include" if plural else "includes"
            else:
                verb = "do not include" if plural else "does not include"
            return f"{holder} {verb} {self.value(left)}"
        if op == "contains":
            return f"{self._subject(left)} contains {self.value(right)}"
        if op == "startswith":
            return f"{self._subject(left)} starts with {self.value(right)}"
        return f"{self._subject(left)} {_COMPARE_WORDS[op]} {self.value(right)}"

    def _within(self, operand: ast.Expr, duration: ast.DurationLit, *, negated: bool) -> str:
        span = last_words(duration.seconds)
        if isinstance(operand, ast.Call) and operand.name in ("last", "first") and operand.args:
            which = "most recent" if operand.name == "last" else "first"
            noun = _event_noun(operand.args[0])
            verb = "was not" if negated else "was"
            return f"{self._their()} {which} {noun} {verb} within {span}"
        verb = "is not" if negated else "is"
        return f"{self._subject(operand)} {verb} within {span}"

    def _call_condition(self, call: ast.Call, *, negated: bool) -> str:
        if call.name in _ENGAGEMENT and len(call.args) == 1:
            template = self._template_ref(call.args[0])
            return _ENGAGEMENT[call.name][negated].format(has=self._has(), t=template)
        if call.name == "in_campaign" and len(call.args) == 1:
            verb = f"{self._is()} not" if negated else self._is()
            return f"{verb} in the campaign {self._campaign_ref(call.args[0])}"
        if call.name == "received" and call.args:
            channel = call.args[0]
            noun = (
                channel_noun(channel.dotted)
                if isinstance(channel, ast.Path)
                else self.value(channel)
            )
            verb = f"{self._has()} not received" if negated else f"{self._has()} received"
            text = f"{verb} {_article(noun)} {noun}"
            if len(call.args) > 1 and isinstance(call.args[1], ast.DurationLit):
                text += f" in {last_words(call.args[1].seconds)}"
            return text
        if call.name in _FLAGS and not call.args:
            return _FLAGS[call.name][negated].format(has=self._has())
        text = self.value(call)
        return f"not {text}" if negated else text

    def _path_condition(self, path: ast.Path, *, negated: bool) -> str:
        if len(path.parts) == 1:
            name = path.parts[0]
            if name in _FLAGS:
                return _FLAGS[name][negated].format(has=self._has())
            if name in self.names.segments:
                verb = f"{self._is()} not" if negated else self._is()
                return f'{verb} in the segment "{name}"'
        # `not email_verified` holds only where it is false: a contact without the value is
        # unknown, so left out; "is not true" told the reader they were taken in.
        verb = "is false" if negated else "is true"
        return f"{self._subject(path)} {verb}"

    def _template_ref(self, expr: ast.Expr) -> str:
        if isinstance(expr, ast.Path) and expr.parts == ("any",):
            return "any message"
        if isinstance(expr, ast.Path):
            return f'"{expr.dotted}"'
        return self.value(expr)

    def _campaign_ref(self, expr: ast.Expr) -> str:
        if isinstance(expr, ast.Path):
            title = self.names.campaigns.get(expr.dotted)
            if title is not None and _says_more(title, expr.dotted):
                return f'"{expr.dotted}" ({title})'
            return f'"{expr.dotted}"'
        return self.value(expr)

    # -- values

    def _is_subject(self, expr: ast.Expr) -> bool:
        """Whether `expr` is about the thing the sentence is about (so it reads best first)."""
        if not isinstance(expr, ast.Path):
            return False
        head = expr.parts[0]
        if self.mode == "event":
            return head == "event"
        if len(expr.parts) == 1:
            return head not in self.names.segments
        return head == "contact"

    def _subject(self, expr: ast.Expr) -> str:
        """`expr` as the subject of a clause; in a fan-out a contact attribute is "whose X"."""
        if self.mode == "fanout" and isinstance(expr, ast.Path) and _contact_attribute(expr):
            return f"whose {_attribute_name(expr)}"
        return self.value(expr)

    def value(self, expr: ast.Expr) -> str:
        """A non-boolean expression as a noun phrase: `event.price` -> "the event's price"."""
        match expr:
            case ast.NumberLit(value=value):
                return number_words(value)
            case ast.StringLit(value=value):
                return f'"{value}"'
            case ast.BoolLit(value=value):
                return "true" if value else "false"
            case ast.DurationLit(seconds=seconds):
                return duration_words(seconds)
            case ast.TimeLit():
                return time_words(expr)
            case ast.DateLit() | ast.DateTimeLit():
                return moment_words(expr)
            case ast.PercentLit(value=value):
                return f"{number_words(value)}%"
            case ast.MoneyLit():
                return money_words(expr)
            case ast.ListLit(items=items):
                return join_words([self.value(item) for item in items]) or "nothing"
            case ast.Path():
                return self._path_value(expr)
            case ast.Call():
                return self._call_value(expr)
            case ast.Unary(op="-", operand=operand):
                if isinstance(operand, ast.NumberLit):
                    return f"-{number_words(operand.value)}"
                return f"minus {self._arithmetic_operand(operand, 3, right=False)}"
            case ast.Binary(op="+" | "-" | "*" | "/" as op, left=left, right=right):
                word, level = _ARITHMETIC[op]
                first = self._arithmetic_operand(left, level, right=False)
                second = self._arithmetic_operand(right, level, right=True)
                return f"{first} {word} {second}"
            case _:
                return f"whether {self.condition(expr)}"

    def _arithmetic_operand(self, expr: ast.Expr, level: int, *, right: bool) -> str:
        text = self.value(expr)
        if isinstance(expr, ast.Binary) and expr.op in _ARITHMETIC:
            inner = _ARITHMETIC[expr.op][1]
            if inner < level or (right and inner == level):
                return f"({text})"
        elif isinstance(expr, ast.Binary | ast.Compare | ast.Within | ast.Unary):
            if not (isinstance(expr, ast.Unary) and expr.op == "-"):
                return f"({text})"
        return text

    def _path_value(self, path: ast.Path) -> str:
        head, rest = path.parts[0], ".".join(path.parts[1:])
        if len(path.parts) == 1:
            if head in self.names.scores:
                return f"the {head} score"
            if self.mode == "event":
                return f"the contact's {head}"
            return head
        if head == "contact":
            return rest if self.mode == "contact" else f"the contact's {rest}"
        if head == "event":
            return rest if self.mode == "event" else f"the event's {rest}"
        if head in ("company", "agent"):
            return f"the {head}'s {rest}"
        return path.dotted

    def _call_value(self, call: ast.Call) -> str:
        args = call.args
        if call.name == "count" and args:
            text = f"the number of {_event_noun(args[0])}s"
            if len(args) > 1 and isinstance(args[1], ast.DurationLit):
                text += f" in {last_words(args[1].seconds)}"
            return text
        if call.name in ("last", "first") and args:
            which = "most recent" if call.name == "last" else "first"
            return f"the time of {self._their()} {which} {_event_noun(args[0])}"
        if call.name in _ENGAGEMENT or call.name in ("in_campaign", "received"):
            return f"whether {self._call_condition(call, negated=False)}"
        rendered = ", ".join(self.value(arg) for arg in args)
        return f"{call.name}({rendered})"


def _says_more(title: str, name: str) -> bool:
    """Whether a display name tells more than the name it displays."""
    return title.lower() != name.replace("_", " ").lower()


def _flatten(op: str, expr: ast.Expr) -> list[ast.Expr]:
    if isinstance(expr, ast.Binary) and expr.op == op:
        return [*_flatten(op, expr.left), *_flatten(op, expr.right)]
    return [expr]


def _contact_attribute(path: ast.Path) -> bool:
    return (len(path.parts) > 1 and path.parts[0] == "contact") or len(path.parts) == 1


def _attribute_name(path: ast.Path) -> str:
    return ".".join(path.parts[1:]) if path.parts[0] == "contact" else path.dotted


def _looks_plural(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.Path) and expr.parts[-1].endswith("s")


# ---------------------------------------------------------------------------- triggers


_COUNT_WORDS: dict[str, str] = {
    ">=": "at least {n} {times}",
    ">": "more than {n} {times}",
    "=": "exactly {n} {times}",
    "<=": "at most {n} {times}",
    "<": "fewer than {n} {times}",
    "!=": "any number of times but {n}",
}


def describe_trigger(trigger: ast.Trigger, names: Names) -> str:
    """Who enters a campaign and when, as a clause: "when a new contact is created"."""
    match trigger:
        case ast.EventTrigger():
            return _describe_event_trigger(trigger, names)
        case ast.ContactCreatedTrigger():
            return "when a new contact is created"
        case ast.SegmentEnterTrigger(segment=segment):
            return f'when a contact enters the segment "{segment}"'
        case ast.LaunchTrigger():
            return "when the campaign is launched, everyone in its audience at that moment"
        case ast.AtTrigger(moment=moment, local=local):
            return f"once, on {moment_words(moment)}{_local_words(local)}"
        case ast.EveryTrigger(days=days, interval=interval, time=time, local=local):
            if days:
                day_names = [_DAY_NAMES.get(day, day) for day in days]
                if day_names == ["weekdays"]:
                    when = "every weekday"
                elif day_names == ["weekends"]:
                    when = "every Saturday and Sunday"
                elif day_names == ["every day"]:
                    when = "every day"
                else:
                    when = "every " + join_words(day_names)
            elif interval is not None:
                # An interval counts from the campaign's start (docs/semantics.md): without
                # it, "every week" names no day.
                when = "every " + _every_interval(interval.seconds)
                start = "the campaign's start (its launch, or `starts` when later)"
                if time is None:
                    return f"{when} from {start}, the whole audience"
                at = f"{time_words(time)}{_local_words(local)}"
                first = f"the first {time_words(time)} from {start}"
                return f"{when} at {at}, beginning with {first}, the whole audience"
            else:
                when = "on a schedule"
            if time is not None:
                at = f" at {time_words(time)}"
            else:
                # Days without a time run at the day's start, as the engine runs them
                # (`timing.every_trigger_occurrences`).
                at = " at 00:00" if days else ""
            return f"{when}{at}{_local_words(local)}, the whole audience"


def _every_interval(seconds: int) -> str:
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds == size:
            return unit
        if seconds % size == 0:
            return f"{seconds // size} {unit}s"
    return duration_words(seconds)


def _describe_event_trigger(trigger: ast.EventTrigger, names: Names) -> str:
    if trigger.fanout is not None:
        clause = event_words(trigger.event, about_contact=False)
        chooser = ExprWords(names, "fanout").condition(trigger.fanout)
        if not chooser.startswith("whose "):
            chooser = f"for which {chooser}"
        text = f"when {clause}, every contact {chooser}"
    else:
        text = f"when a contact {event_words(trigger.event, about_contact=True)}"
    if trigger.count is not None:
        times = "time" if trigger.count.count == 1 else "times"
        template = _COUNT_WORDS[trigger.count.op]
        text += " " + template.format(n=trigger.count.count, times=times)
    if trigger.within is not None:
        text += f" within {duration_words(trigger.within.seconds)}"
    if trigger.where is not None:
        counted = "counting only" if trigger.count is not None else "only for"
        text += f" ({counted} events where {ExprWords(names, 'event').condition(trigger.where)})"
    return text


# ---------------------------------------------------------------------------- settings


def _settings_sentences(unit: CampaignUnit, names: Names) -> list[str]:
    words = ExprWords(names, they=True)
    out: list[str] = []
    kind = next((s.value for s in unit.setting(ast.NameSetting) if s.key == "kind"), None)
    type_name = next((s.value for s in unit.setting(ast.NameSetting) if s.key == "type"), None)
    if type_name is None:
        inferred = infer_campaign_type(unit)
        type_text = f"{_TYPE_WORDS.get(inferred, inferred)}, inferred from its steps"
    else:
        type_text = _TYPE_WORDS.get(type_name, type_name)
    out.append(f"Type: {type_text}" + (f"; kind: {kind}" if kind else "") + ".")
    if unit.implicit:
        out.append("Declared as a one-line automation, so every setting has its default.")
    audience = [s.expr for s in unit.setting(ast.ExprSetting) if s.key == "audience"]
    out.append(
        "Audience: a contact takes part if "
        + " and ".join(_grouped(words, e) for e in audience)
        + "."
        if audience
        else "Audience: every contact (no audience filter)."
    )
    lacking = sorted({name for e in audience for name in _negated_attributes(e, words.names)})
    if lacking:
        out.append(
            "Where a contact has no value for "
            + join_words(lacking, "or")
            + ", a condition on it is unknown, never true, with `!=`, `not in` and `not` as"
            " with the rest: such a contact is in only if the rest of the audience lets it in"
            " without that condition."
        )
    for setting in unit.settings:
        sentence = _setting_sentence(setting, words)
        if sentence:
            out.append(sentence)
    default = _default_cap_sentence(unit)
    if default:
        out.append(default)
    approval = _default_approval_sentence(unit)
    if approval:
        out.append(approval)
    zone = _default_zone_sentence(unit)
    if zone:
        out.append(zone)
    starts = next((s for s in unit.setting(ast.DateSetting) if s.key == "starts"), None)
    ends = next((s for s in unit.setting(ast.DateSetting) if s.key == "ends"), None)
    if starts and ends:
        out.append(f"Runs from {moment_words(starts.moment)} to {moment_words(ends.moment)}.")
    elif starts:
        out.append(f"Starts on {moment_words(starts.moment)}.")
    elif ends:
        out.append(f"Ends on {moment_words(ends.moment)}.")
    return out


def _default_cap_sentence(unit: CampaignUnit) -> str | None:
    """The default cap, for a campaign that sends on its channel and sets no cap there."""
    channel = DEFAULT_CAP.channel
    if any(cap.channel == channel for cap in unit.setting(ast.CapSetting)):
        return None
    sends = (
        step
        for block in unit.triggers
        for step in all_steps(block.steps)
        if isinstance(step, ast.Send) and channel in (None, step.channel)
    )
    if next(sends, None) is None:
        return None
    noun = channel_noun(channel, plural=DEFAULT_CAP.count != 1) if channel else "messages"
    on = f"{channel} " if channel else ""
    return (
        f"Frequency cap: the default, at most {DEFAULT_CAP.count} {noun} per contact "
        f"{_per_words(DEFAULT_CAP.per_seconds)}, across all campaigns "
        f"(`cap {on}N per DURATION` sets another)."
    )


def _default_approval_sentence(unit: CampaignUnit) -> str | None:
    """The implied approval rule, for a campaign without `approval` that enrolls an audience
    when launched (`on launch`, `at`, `every`): the engine refuses such a launch above
    `IMPLIED_APPROVAL_ABOVE` contacts, which the settings alone do not show."""
    if any(s.key == "approval" for s in unit.setting(ast.NameSetting)):
        return None
    launching = (ast.LaunchTrigger, ast.AtTrigger, ast.EveryTrigger)
    if not any(isinstance(block.trigger, launching) for block in unit.triggers):
        return None
    return (
        f"Approval: needed before launch when its audience is above {IMPLIED_APPROVAL_ABOVE:,}"
        " contacts (`approval required` always asks for it, `approval none` never)."
    )


def _default_zone_sentence(unit: CampaignUnit) -> str | None:
    """The zone of the times a campaign writes without `local`, where no other line says it.

    Such a time is read in the campaign's zone, UTC by default; "between 09:00 and 17:00"
    alone reads as the reader's own 09:00. `timezone fallback "ZONE"` is said as the zone
    of contacts without one, so that it is the zone of those times too needs saying.
    """
    setting = next(unit.setting(ast.TimezoneSetting), None)
    if setting is not None and not setting.fallback:
        return None  # "Timezone: ZONE." says it
    steps = (step for block in unit.triggers for step in all_steps(block.steps))
    triggers = (block.trigger for block in unit.triggers)
    clock_times = (
        any(not window.local for window in unit.setting(ast.SendWindowSetting))
        or any(not quiet.local for quiet in unit.setting(ast.QuietHoursSetting))
        or any(isinstance(t, ast.AtTrigger | ast.EveryTrigger) and not t.local for t in triggers)
        or any(isinstance(step, ast.WaitUntil) and not step.local for step in steps)
        or next(unit.setting(ast.DateSetting), None) is not None
    )
    if not clock_times:
        return None
    if setting is not None:
        return f"Times written without `local` are in {setting.zone} too."
    return 'Timezone: UTC, for the times written without `local` (`timezone "ZONE"` sets another).'


def _negated_attributes(expr: ast.Expr, names: Names, negated: bool = False) -> list[str]:
    """The contact attributes an audience reads under `!=`, `not in` or `not`: a reader
    takes `city != "Cebu"` to let in contacts without a city, but under the missing-value
    rule (docs/language.md) that comparison is unknown for them, never true."""
    match expr:
        case ast.Unary(op="not", operand=operand):
            return _negated_attributes(operand, names, not negated)
        case ast.Binary(op="and" | "or", left=left, right=right):
            return _negated_attributes(left, names, negated) + _negated_attributes(
                right, names, negated
            )
        case ast.Compare(op=op, left=left, right=right) if negated or op in ("!=", "not in"):
            return [n for side in (left, right) if (n := _attribute(side, names)) is not None]
        case ast.Within(operand=operand) if negated:
            return [n for n in (_attribute(operand, names),) if n is not None]
        case ast.Path() if negated:
            return [n for n in (_attribute(expr, names),) if n is not None]
    return []


def _attribute(expr: ast.Expr, names: Names) -> str | None:
    """The contact attribute a path names (`city`, `contact.city`); None for anything else
    (a segment, a score, an event's field, a literal)."""
    if not isinstance(expr, ast.Path):
        return None
    parts = expr.parts
    if len(parts) == 2 and parts[0] == "contact":
        return parts[1]
    # A segment, a score, `converted`/`unsubscribed` (engagement, true or false) and a
    # contact's id and tags (a list, maybe empty) always have a value.
    always = {*names.segments, *names.scores, *ENGAGEMENT_FLAGS, "id", "tags"}
    if len(parts) == 1 and parts[0] not in always:
        return parts[0]
    return None


def _grouped(words: ExprWords, expr: ast.Expr) -> str:
    text = words.condition(expr)
    return f"({text})" if isinstance(expr, ast.Binary) and expr.op == "or" else text


def _setting_sentence(setting: ast.Setting, words: ExprWords) -> str | None:
    match setting:
        case ast.ExprSetting(key="exclude", expr=expr):
            return f"Left out: a contact is skipped if {words.condition(expr)}."
        case ast.ExprSetting(key="goal", expr=expr):
            return f"Goal: a contact leaves the campaign as soon as {words.condition(expr)}."
        case ast.NameSetting(key="approval", value=value):
            if value == "required":
                return "Needs approval before it is launched."
            return f"Approval: {value}."
        case ast.StringSetting(key="from", value=value):
            return f"Sent from {value}."
        case ast.StringSetting(key="reply_to", value=value):
            return f"Replies go to {value}."
        case ast.ChannelsSetting(channels=channels):
            names = [channel_noun(c, plural=True) for c in channels]
            return f"May send {join_words(names, 'and')} only."
        case ast.NumberSetting(key="priority", value=value):
            return f"Priority: {number_words(value)}."
        case ast.NumberSetting(key="max_sends", value=value):
            return f"Step limit: at most {number_words(value)} sends."
        case ast.CapSetting(channel=channel, count=count, per=per):
            noun = channel_noun(channel, plural=count != 1) if channel else "messages"
            if not channel and count == 1:
                noun = "message"
            return (
                f"Frequency cap: at most {count} {noun} per contact {_per_words(per.seconds)}, "
                "across all campaigns."
            )
        case ast.SendWindowSetting(start=start, end=end, local=local, days=days):
            on = f", on {_days_words(days)}" if days else ""
            return (
                f"Send window: sends go out only between {time_words(start)} and "
                f"{time_words(end)}{_local_words(local)}{on}; "
                "outside it they wait for the next opening."
            )
        case ast.TimezoneSetting(zone=zone, fallback=fallback):
            if fallback:
                return f"Contacts without a known timezone are treated as in {zone}."
            return f"Timezone: {zone}."
        case ast.QuietHoursSetting(channel=channel, start=start, end=end, local=local):
            noun = channel_noun(channel, plural=True) if channel else "messages"
            return (
                f"Quiet hours: no {noun} between {time_words(start)} and "
                f"{time_words(end)}{_local_words(local)}."
            )
        case ast.BudgetSetting(amount=amount):
            return f"Budget: {money_words(amount)}; sends stop when it runs out."
        case ast.CostSetting(items=items):
            costs = [f"{money_words(i.amount)} per {channel_noun(i.channel)}" for i in items]
            return f"Costs: {join_words(costs)}."
        case ast.ReenterSetting(after=after):
            if after is None:
                return "A contact may enter again, any number of times."
            return f"A contact may enter again {duration_words(after.seconds)} after entering."
        case _:
            return None


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class _Elapsed:
    """The earliest and latest time since entry that a step can run; `hi` None: no limit."""

    lo: int
    hi: int | None

    def plus(self, lo: int, hi: int | None) -> _Elapsed:
        """This span moved on by at least `lo` and at most `hi` seconds (None: no limit)."""
        later = None if self.hi is None or hi is None else self.hi + hi
        return _Elapsed(self.lo + lo, later)


def _union(items: Iterable[_Elapsed | None]) -> _Elapsed | None:
    present = [item for item in items if item is not None]
    if not present:
        return None
    his = [item.hi for item in present]
    hi = None if any(h is None for h in his) else max(h for h in his if h is not None)
    return _Elapsed(min(item.lo for item in present), hi)


def _point_words(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    if not rest:
        return f"day {days}"
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    extra = "".join(
        f"{amount}{unit}" for amount, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if amount
    )
    return f"day {days} +{extra}"


def elapsed_words(elapsed: _Elapsed, origin: dt.datetime | None = None) -> str:
    """When a step runs, counted from entry: "day 3", "day 3-4", "day 5 or later"."""
    if elapsed.hi is None:
        return f"{_point_words(elapsed.lo)} or later"
    if elapsed.lo == elapsed.hi:
        text = _point_words(elapsed.lo)
        if origin is not None:
            text += f", {date_words((origin + dt.timedelta(seconds=elapsed.lo)).date())}"
        return text
    if elapsed.lo % 86400 == 0 and elapsed.hi % 86400 == 0:
        return f"day {elapsed.lo // 86400}-{elapsed.hi // 86400}"
    return f"{_point_words(elapsed.lo)} to {_point_words(elapsed.hi)}"


class _StepWriter:
    """Writes numbered steps, nesting branches under them, and tracks when each send happens."""

    def __init__(self, symbols: Symbols, names: Names, origin: dt.datetime | None) -> None:
        self.symbols = symbols
        self.names = names
        self.words = ExprWords(names)
        self.origin = origin
        self.lines: list[Line] = []

    def write(
        self, steps: Sequence[ast.Step], indent: int, start: _Elapsed | None
    ) -> _Elapsed | None:
        """Write `steps` numbered from 1; return when the path after them goes on (None: left)."""
        now = start
        for number, step in enumerate(steps, start=1):
            now = self._step(f"{number}. ", step, indent, now)
        return now

    def _say(self, indent: int, text: str) -> None:
        self.lines.append(Line(indent, text))

    def _step(
        self, prefix: str, step: ast.Step, indent: int, now: _Elapsed | None
    ) -> _Elapsed | None:
        # Branch headers line up under the step's text; a branch's own steps go 2 further in.
        inner = indent + len(prefix)
        match step:
            case ast.Send(channel=channel, template=template):
                when = elapsed_words(now, self.origin) if now is not None else "never reached"
                self._say(indent, f"{prefix}[{when}] {self._send_words(channel, template)}")
                return now
            case ast.Wait(duration=duration):
                self._say(indent, f"{prefix}Wait {duration_words(duration.seconds)}.")
                return None if now is None else now.plus(duration.seconds, duration.seconds)
            case ast.WaitUntil(time=time, local=local):
                where = " in the contact's local time" if local else ""
                self._say(indent, f"{prefix}Wait until the next {time_words(time)}{where}.")
                return None if now is None else now.plus(0, 86400)
            case ast.WaitFor(event=event, up_to=up_to):
                self._say(indent, f"{prefix}{self._wait_for_words(event, up_to)}")
                if now is None:
                    return None
                return now.plus(0, up_to.seconds if up_to is not None else None)
            case ast.If():
                return self._if(prefix, step, indent, now)
            case ast.ABSplit():
                return self._ab_split(prefix, step, indent, now)
            case ast.RandomSplit(branches=branches):
                self._say(indent, f"{prefix}Split at random:")
                ends = []
                for branch in branches:
                    share = f" ({number_words(branch.share.value)}%)" if branch.share else ""
                    self._say(inner, f'Group "{branch.name}"{share}:')
                    ends.append(self.write(branch.steps, inner + 2, now))
                return _union(ends)
            case ast.SetAttr(target=target, value=value):
                name = _attribute_name(target) if target.parts[0] == "contact" else target.dotted
                self._say(indent, f"{prefix}Set {name} to {self.words.value(value)}.")
                return now
            case ast.Tag(action=action, tag=tag):
                verb = "Add the tag" if action == "add" else "Remove the tag"
                self._say(indent, f'{prefix}{verb} "{tag}".')
                return now
            case ast.AssignAgent(strategy=strategy):
                how = strategy.replace("_", " ")
                self._say(indent, f"{prefix}Assign an agent to the contact ({how}).")
                return now
            case ast.Notify(channel=channel, target=target):
                self._say(indent, f"{prefix}Notify {_article(channel)} {channel} at {target}.")
                return now
            case ast.Enroll(campaign=campaign):
                title = self.names.campaigns.get(campaign)
                label = f'"{campaign}"'
                if title is not None and _says_more(title, campaign):
                    label += f" ({title})"
                self._say(indent, f"{prefix}Enroll the contact in the campaign {label}.")
                return now
            case ast.Exit(reason=reason):
                why = f' ("{reason}")' if reason else ""
                self._say(indent, f"{prefix}Leave the campaign{why}.")
                return None
            case ast.Placeholder():
                self._say(indent, f"{prefix}(steps not written yet)")
                return now

    def _send_words(self, channel: str, template: str) -> str:
        text = f'Send the {channel_noun(channel)} "{template}"'
        declared = self.symbols.templates.get(template)
        if declared is None:
            return text + "."
        content = declared.node.content
        if content.subject is not None:
            text += f' (subject: "{content.subject.value}")'
        elif content.body is not None and declared.node.inline:
            text += f' (text: "{_shorten(content.body.value, 70)}")'
        locales = [block.locale for block in declared.node.locales]
        if locales:
            text += f"; also written in {join_words(locales)}"
        return text + "."

    def _wait_for_words(self, event: ast.Expr, up_to: ast.DurationLit | None) -> str:
        if not isinstance(event, ast.Call | ast.Path) or (
            isinstance(event, ast.Call) and event.name in _ENGAGEMENT
        ):
            what = f"Wait until {self.words.condition(event)}"
        else:
            noun = event.dotted if isinstance(event, ast.Path) else event.name
            what = f'Wait for {_article(noun)} "{noun}" event'
        limit = (
            f", at most {duration_words(up_to.seconds)}" if up_to is not None else ", however long"
        )
        return f"{what}{limit}."

    def _if(self, prefix: str, step: ast.If, indent: int, now: _Elapsed | None) -> _Elapsed | None:
        inner = indent + len(prefix)
        ends: list[_Elapsed | None] = []
        for index, branch in enumerate(step.branches):
            condition = self.words.condition(branch.condition)
            if index == 0:
                self._say(indent, f"{prefix}If {condition}:")
            else:
                self._say(inner, f"Otherwise, if {condition}:")
            ends.append(self.write(branch.steps, inner + 2, now))
        if step.else_steps is not None:
            self._say(inner, "Otherwise:")
            ends.append(self.write(step.else_steps, inner + 2, now))
        else:
            ends.append(now)
        return _union(ends)

    def _ab_split(
        self, prefix: str, step: ast.ABSplit, indent: int, now: _Elapsed | None
    ) -> _Elapsed | None:
        inner = indent + len(prefix)
        test = step.test_share.value
        rest = Decimal(100) - test
        names = [f'"{b.name}"' for b in step.branches]
        if len(names) == 2:
            shares = f"half get {names[0]}, half get {names[1]}"
        else:
            shares = f"{join_words(names)} each go to an equal share"
        metric = _METRIC_WORDS.get(step.metric, step.metric)
        self._say(
            indent,
            f"{prefix}A/B test: {number_words(test)}% of contacts are tested — {shares}; "
            f"after {duration_words(step.after.seconds)} the variant with the best {metric} "
            f"(of its messages delivered) goes to the other {number_words(rest)}%.",
        )
        winner_at = None if now is None else now.plus(step.after.seconds, step.after.seconds)
        ends: list[_Elapsed | None] = []
        for branch in step.branches:
            self._say(inner, f'Variant "{branch.name}":')
            ends.append(self.write(branch.steps, inner + 2, now))
            ends.append(_shift_end(branch.steps, now, winner_at))
        if winner_at is not None:
            self._say(
                inner,
                f"The winning variant reaches the other {number_words(rest)}% at "
                f"{elapsed_words(winner_at, self.origin)}.",
            )
        return _union(ends)


def _shift_end(
    steps: Sequence[ast.Step], now: _Elapsed | None, later: _Elapsed | None
) -> _Elapsed | None:
    """When a variant's steps end for the winner group, who starts them at `later`."""
    if now is None or later is None:
        return None
    return _StepWriter(Symbols(), Names(), None).write(steps, 0, later)


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
