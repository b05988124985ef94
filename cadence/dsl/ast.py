"""The typed syntax tree of a Cadence file: what the parser builds and the checker reads.

Every node carries a `span` for diagnostics; spans are excluded from equality so that two
parses of the same program laid out differently (for example before and after `cadence fmt`)
compare equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypeAlias


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node stands in its file: 1-based lines and columns, end column exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


NO_SPAN = Span("<generated>", 1, 1, 1, 1)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


# ---------------------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class NumberLit:
    """A number as written: `3`, `2.5`."""

    value: Decimal
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class StringLit:
    """A double-quoted string with its escapes resolved."""

    value: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolLit:
    """`true` or `false`."""

    value: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DurationLit:
    """A duration such as `1d12h`, kept in seconds."""

    seconds: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TimeLit:
    """A time of day such as `09:00`."""

    hour: int
    minute: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DateLit:
    """A calendar date such as `2026-12-01`."""

    value: dt.date
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DateTimeLit:
    """A wall-clock date and time such as `2026-12-01T09:00` (no zone: the zone comes from use)."""

    value: dt.datetime
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PercentLit:
    """A percentage such as `20%`, kept as the number before the sign."""

    value: Decimal
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MoneyLit:
    """An amount with its ISO 4217 currency: `500 USD`."""

    amount: Decimal
    currency: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListLit:
    """A literal list: `["PH", "SG"]`."""

    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Path:
    """A name or dotted path: `lead_score`, `contact.city`, `event.price`."""

    parts: tuple[str, ...]
    span: Span = _span()

    @property
    def dotted(self) -> str:
        """The path as written, parts joined by dots."""
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: `opened(welcome)`, `count(property_viewed, 7d)`."""

    name: str
    args: tuple[Expr, ...]
    span: Span = _span()


UnaryOp: TypeAlias = Literal["not", "-"]
BinaryOp: TypeAlias = Literal["and", "or", "+", "-", "*", "/"]
CompareOp: TypeAlias = Literal[
    "=", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "startswith"
]


@dataclass(frozen=True, slots=True)
class Unary:
    """`not x` or `-x`."""

    op: UnaryOp
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Binary:
    """Boolean connectives and arithmetic: `a and b`, `price * 2`."""

    op: BinaryOp
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Compare:
    """A comparison or membership test: `lead_score >= 30`, `country in ["US"]`."""

    op: CompareOp
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Within:
    """`last_activity within 30d`: a timestamp no older than the duration."""

    operand: Expr
    duration: DurationLit
    span: Span = _span()


Literal_: TypeAlias = (
    NumberLit
    | StringLit
    | BoolLit
    | DurationLit
    | TimeLit
    | DateLit
    | DateTimeLit
    | PercentLit
    | MoneyLit
    | ListLit
)
Expr: TypeAlias = Literal_ | Path | Call | Unary | Binary | Compare | Within


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Send:
    """`send email welcome`: hand one message to the dispatch pipeline."""

    channel: str
    template: str
    span: Span = _span()
    channel_span: Span = _span()
    template_span: Span = _span()


@dataclass(frozen=True, slots=True)
class Wait:
    """`wait 2d`: a durable pause."""

    duration: DurationLit
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """`wait until 09:00 local`: pause until the next such time of day."""

    time: TimeLit
    local: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class WaitFor:
    """`wait for clicked(welcome) up to 3d`: pause until an event or a condition, at most a
    duration."""

    event: Expr
    up_to: DurationLit | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class IfBranch:
    """One `if`/`else if` arm: a condition and its steps."""

    condition: Expr
    steps: tuple[Step, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class If:
    """`if A { } else if B { } else { }`."""

    branches: tuple[IfBranch, ...]
    else_steps: tuple[Step, ...] | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SplitBranch:
    """One arm of a split: its name, its share (random splits only) and its steps."""

    name: str
    share: PercentLit | None
    steps: tuple[Step, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ABSplit:
    """`split 20% test winner by clicks after 4h { a: .. b: .. }`: test, then send the winner."""

    test_share: PercentLit
    metric: str
    after: DurationLit
    branches: tuple[SplitBranch, ...]
    span: Span = _span()
    metric_span: Span = _span()


@dataclass(frozen=True, slots=True)
class RandomSplit:
    """`split { a 50%: .. b 50%: .. }`: a plain random split."""

    branches: tuple[SplitBranch, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SetAttr:
    """`set lead_stage = "nurture"`: write a contact attribute."""

    target: Path
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Tag:
    """`tag add "webinar-2026"` (or `tag remove`)."""

    action: Literal["add", "remove"]
    tag: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class AssignAgent:
    """`assign agent round_robin`."""

    strategy: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Notify:
    """`notify webhook "https://..."`: tell another system, not the contact."""

    channel: str
    target: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Enroll:
    """`enroll other_campaign`."""

    campaign: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Exit:
    """`exit "moved to sales"`: leave the campaign."""

    reason: str | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Placeholder:
    """`...`: steps not written yet; does nothing, and the checker warns about it."""

    span: Span = _span()


Step: TypeAlias = (
    Send
    | Wait
    | WaitUntil
    | WaitFor
    | If
    | ABSplit
    | RandomSplit
    | SetAttr
    | Tag
    | AssignAgent
    | Notify
    | Enroll
    | Exit
    | Placeholder
)


# ---------------------------------------------------------------------------- triggers


@dataclass(frozen=True, slots=True)
class CountClause:
    """`count>=3`: how many of the contact's events it takes."""

    op: Literal["=", "!=", "<", "<=", ">", ">="]
    count: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """`when EVENT [count OP N] [within D] [where E] [for contacts where F]`, or `on EVENT`."""

    event: str
    count: CountClause | None = None
    within: DurationLit | None = None
    where: Expr | None = None
    fanout: Expr | None = None
    keyword: Literal["when", "on"] = field(default="when", compare=False)
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ContactCreatedTrigger:
    """`on contact_created`."""

    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SegmentEnterTrigger:
    """`on segment_enter NAME`."""

    segment: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class LaunchTrigger:
    """`on launch`: the audience, enrolled when the campaign is launched by hand."""

    span: Span = _span()


@dataclass(frozen=True, slots=True)
class AtTrigger:
    """`at 2026-12-01T09:00 local`: a one-time broadcast."""

    moment: DateLit | DateTimeLit
    local: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class EveryTrigger:
    """`every monday 09:00 local` or `every 1w`: a recurring run."""

    days: tuple[str, ...]
    interval: DurationLit | None
    time: TimeLit | None
    local: bool
    span: Span = _span()


Trigger: TypeAlias = (
    EventTrigger
    | ContactCreatedTrigger
    | SegmentEnterTrigger
    | LaunchTrigger
    | AtTrigger
    | EveryTrigger
)


@dataclass(frozen=True, slots=True)
class TriggerBlock:
    """A trigger and the steps it runs."""

    trigger: Trigger
    steps: tuple[Step, ...]
    braced: bool = field(default=True, compare=False)
    span: Span = _span()


# ---------------------------------------------------------------------------- settings


NameSettingKey: TypeAlias = Literal["type", "kind", "approval"]
ExprSettingKey: TypeAlias = Literal["audience", "exclude", "goal"]
StringSettingKey: TypeAlias = Literal["from", "reply_to"]


@dataclass(frozen=True, slots=True)
class NameSetting:
    """`type drip`, `kind enrollment`, `approval required`."""

    key: NameSettingKey
    value: str
    span: Span = _span()
    value_span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExprSetting:
    """`audience ...`, `exclude ...`, `goal ...`."""

    key: ExprSettingKey
    expr: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class StringSetting:
    """`from "..."`, `reply_to "..."`."""

    key: StringSettingKey
    value: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ChannelsSetting:
    """`channels email, sms`: the only channels the campaign may send on."""

    channels: tuple[str, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class NumberSetting:
    """`priority 5`, `max_sends 30`."""

    key: Literal["priority", "max_sends"]
    value: Decimal
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CapSetting:
    """`cap email 3 per 7d` (or `cap 5 per 1d` across channels)."""

    channel: str | None
    count: int
    per: DurationLit
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SendWindowSetting:
    """`send_window 09:00-18:00 local weekdays`."""

    start: TimeLit
    end: TimeLit
    local: bool
    days: tuple[str, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TimezoneSetting:
    """`timezone fallback "America/New_York"`: the zone for contacts without one."""

    zone: str
    fallback: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class QuietHoursSetting:
    """`quiet_hours sms 21:00-08:00 local`: hours when that channel must not send."""

    channel: str | None
    start: TimeLit
    end: TimeLit
    local: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BudgetSetting:
    """`budget 500 USD`."""

    amount: MoneyLit
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CostItem:
    """One `CHANNEL AMOUNT` pair of a `cost` setting."""

    channel: str
    amount: MoneyLit
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CostSetting:
    """`cost email 0.001 USD, sms 0.05 USD`."""

    items: tuple[CostItem, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DateSetting:
    """`starts 2026-12-01`, `ends 2027-01-31`."""

    key: Literal["starts", "ends"]
    moment: DateLit | DateTimeLit
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ReenterSetting:
    """`reenter always` or `reenter after 30d`: a contact may be enrolled again."""

    after: DurationLit | None
    span: Span = _span()


Setting: TypeAlias = (
    NameSetting
    | ExprSetting
    | StringSetting
    | ChannelsSetting
    | NumberSetting
    | CapSetting
    | SendWindowSetting
    | TimezoneSetting
    | QuietHoursSetting
    | BudgetSetting
    | CostSetting
    | DateSetting
    | ReenterSetting
)


# ---------------------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class Import:
    """`import "other.cadence"`."""

    path: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SchemaField:
    """One typed contact attribute of a `schema contact { }` block."""

    name: str
    type: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SchemaDecl:
    """`schema contact { lead_score: number ... }`: the contact attributes a file may use."""

    fields: tuple[SchemaField, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SegmentDecl:
    """`segment NAME = EXPR`."""

    name: str
    expr: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TemplateContent:
    """Subject, preheader and body of a template or of one of its locales."""

    subject: StringLit | None = None
    preheader: StringLit | None = None
    body: StringLit | None = None
    body_file: StringLit | None = None


@dataclass(frozen=True, slots=True)
class LocaleBlock:
    """`locale "es" { ... }` inside a template."""

    locale: str
    content: TemplateContent
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TemplateDecl:
    """`template NAME CHANNEL "body"` or `template NAME CHANNEL { ... }`."""

    name: str
    channel: str
    content: TemplateContent
    locales: tuple[LocaleBlock, ...]
    inline: bool
    span: Span = _span()
    channel_span: Span = _span()


@dataclass(frozen=True, slots=True)
class ScorePoints:
    """`opened(any) within 30d: +5 each`."""

    event: Call | Path
    within: DurationLit | None
    points: Decimal
    each: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ScoreDecay:
    """`decay 10% per 30d`."""

    percent: PercentLit
    per: DurationLit
    span: Span = _span()


ScoreRule: TypeAlias = ScorePoints | ScoreDecay


@dataclass(frozen=True, slots=True)
class ScoreDecl:
    """`score NAME { rules }`: a computed contact attribute."""

    name: str
    rules: tuple[ScoreRule, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CampaignDecl:
    """`campaign NAME "Display" { settings triggers }`."""

    name: str
    display_name: str | None
    settings: tuple[Setting, ...]
    triggers: tuple[TriggerBlock, ...]
    span: Span = _span()


Declaration: TypeAlias = (
    Import | SchemaDecl | SegmentDecl | TemplateDecl | ScoreDecl | CampaignDecl | TriggerBlock
)


@dataclass(frozen=True, slots=True)
class Comment:
    """A `#` comment, kept so that `cadence fmt` can put it back."""

    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Program:
    """One parsed file: its declarations in order, and its comments."""

    declarations: tuple[Declaration, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
    file: str = field(default="<string>", compare=False)


def step_expressions(step: Step) -> Iterator[Expr]:
    """The conditions and values one step evaluates itself (an `if`'s conditions, what a
    `wait for` waits for, a `set` value), not those of the steps nested in it."""
    match step:
        case If(branches=branches):
            yield from (branch.condition for branch in branches)
        case WaitFor(event=event):
            yield event
        case SetAttr(value=value):
            yield value
        case _:
            return
