"""The compiled form of a campaign: the versioned step graph the engine stores and runs.

A `CompiledCampaign` is everything the engine needs to run one campaign version without
going back to the source: settings, triggers, a flat list of nodes with stable ids, the
edges for drawing, and the templates, segments and scores it uses. Its JSON is canonical
(sorted keys, no whitespace) and its `version` is the sha256 of that JSON without the
version itself, so the same source always gives the same bytes and the same version.

Expressions are stored as a span-less pydantic mirror of `cadence.dsl.ast` expressions;
`expr_to_model` and `model_to_expr` convert both ways exactly. See docs/compiled-format.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cadence.dsl import ast

# Jinja is imported where a template is read: compiling and checking need none of it.
if TYPE_CHECKING:
    import jinja2.nodes

FORMAT_VERSION = 1


class _Frozen(BaseModel):
    """Base of every compiled model: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------- expressions


class NumberExpr(_Frozen):
    """A number literal; JSON holds it as a decimal string so no precision is lost."""

    kind: Literal["number"] = "number"
    value: Decimal


class StringExpr(_Frozen):
    """A string literal."""

    kind: Literal["string"] = "string"
    value: str


class BoolExpr(_Frozen):
    """`true` or `false`."""

    kind: Literal["bool"] = "bool"
    value: bool


class DurationExpr(_Frozen):
    """A duration in seconds."""

    kind: Literal["duration"] = "duration"
    seconds: int


class TimeExpr(_Frozen):
    """A time of day."""

    kind: Literal["time"] = "time"
    hour: int
    minute: int


class DateExpr(_Frozen):
    """A calendar date."""

    kind: Literal["date"] = "date"
    value: dt.date


class DateTimeExpr(_Frozen):
    """A wall-clock date and time, without a zone."""

    kind: Literal["datetime"] = "datetime"
    value: dt.datetime


class PercentExpr(_Frozen):
    """A percentage, as the number before the sign."""

    kind: Literal["percent"] = "percent"
    value: Decimal


class MoneyExpr(_Frozen):
    """An amount with its currency."""

    kind: Literal["money"] = "money"
    amount: Decimal
    currency: str


class ListExpr(_Frozen):
    """A literal list."""

    kind: Literal["list"] = "list"
    items: tuple[ExprModel, ...]


class PathExpr(_Frozen):
    """A name or dotted path, as its parts."""

    kind: Literal["path"] = "path"
    parts: tuple[str, ...]


class CallExpr(_Frozen):
    """A function call such as `opened(welcome)`."""

    kind: Literal["call"] = "call"
    name: str
    args: tuple[ExprModel, ...]


class UnaryExpr(_Frozen):
    """`not x` or `-x`."""

    kind: Literal["unary"] = "unary"
    op: ast.UnaryOp
    operand: ExprModel


class BinaryExpr(_Frozen):
    """`and`, `or` and arithmetic."""

    kind: Literal["binary"] = "binary"
    op: ast.BinaryOp
    left: ExprModel
    right: ExprModel


class CompareExpr(_Frozen):
    """Comparisons and membership tests."""

    kind: Literal["compare"] = "compare"
    op: ast.CompareOp
    left: ExprModel
    right: ExprModel


class WithinExpr(_Frozen):
    """`x within 30d`."""

    kind: Literal["within"] = "within"
    operand: ExprModel
    seconds: int


ExprModel: TypeAlias = Annotated[
    NumberExpr
    | StringExpr
    | BoolExpr
    | DurationExpr
    | TimeExpr
    | DateExpr
    | DateTimeExpr
    | PercentExpr
    | MoneyExpr
    | ListExpr
    | PathExpr
    | CallExpr
    | UnaryExpr
    | BinaryExpr
    | CompareExpr
    | WithinExpr,
    Field(discriminator="kind"),
]

for _model in (ListExpr, CallExpr, UnaryExpr, BinaryExpr, CompareExpr, WithinExpr):
    _model.model_rebuild()


def expr_to_model(expr: ast.Expr) -> ExprModel:
    """Mirror an AST expression as a model, dropping spans."""
    match expr:
        case ast.NumberLit(value=value):
            return NumberExpr(value=value)
        case ast.StringLit(value=value):
            return StringExpr(value=value)
        case ast.BoolLit(value=value):
            return BoolExpr(value=value)
        case ast.DurationLit(seconds=seconds):
            return DurationExpr(seconds=seconds)
        case ast.TimeLit(hour=hour, minute=minute):
            return TimeExpr(hour=hour, minute=minute)
        case ast.DateLit(value=value):
            return DateExpr(value=value)
        case ast.DateTimeLit(value=value):
            return DateTimeExpr(value=value)
        case ast.PercentLit(value=value):
            return PercentExpr(value=value)
        case ast.MoneyLit(amount=amount, currency=currency):
            return MoneyExpr(amount=amount, currency=currency)
        case ast.ListLit(items=items):
            return ListExpr(items=tuple(expr_to_model(item) for item in items))
        case ast.Path(parts=parts):
            return PathExpr(parts=parts)
        case ast.Call(name=name, args=args):
            return CallExpr(name=name, args=tuple(expr_to_model(arg) for arg in args))
        case ast.Unary(op=op, operand=operand):
            return UnaryExpr(op=op, operand=expr_to_model(operand))
        case ast.Binary(op=op, left=left, right=right):
            return BinaryExpr(op=op, left=expr_to_model(left), right=expr_to_model(right))
        case ast.Compare(op=op, left=left, right=right):
            return CompareExpr(op=op, left=expr_to_model(left), right=expr_to_model(right))
        case ast.Within(operand=operand, duration=duration):
            return WithinExpr(operand=expr_to_model(operand), seconds=duration.seconds)
    raise TypeError(f"not an expression: {type(expr).__name__}")  # pragma: no cover


# The AST of a stored expression, by the expression object's identity (the object is kept
# so its id cannot be reused): the engine asks for the same compiled expressions for every
# contact it steps, and rebuilding the tree each time was a walk per question.
_AST_CACHE: dict[int, tuple[ExprModel, ast.Expr]] = {}
_AST_CACHE_LIMIT = 100_000


def model_to_expr(model: ExprModel) -> ast.Expr:
    """Turn a stored expression back into the AST the evaluators and the Rust filter read."""
    hit = _AST_CACHE.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    expr = _model_to_expr(model)
    if len(_AST_CACHE) >= _AST_CACHE_LIMIT:
        _AST_CACHE.clear()
    _AST_CACHE[id(model)] = (model, expr)
    return expr


def _model_to_expr(model: ExprModel) -> ast.Expr:
    match model:
        case NumberExpr(value=value):
            return ast.NumberLit(value)
        case StringExpr(value=value):
            return ast.StringLit(value)
        case BoolExpr(value=value):
            return ast.BoolLit(value)
        case DurationExpr(seconds=seconds):
            return ast.DurationLit(seconds)
        case TimeExpr(hour=hour, minute=minute):
            return ast.TimeLit(hour, minute)
        case DateExpr(value=value):
            return ast.DateLit(value)
        case DateTimeExpr(value=value):
            return ast.DateTimeLit(value)
        case PercentExpr(value=value):
            return ast.PercentLit(value)
        case MoneyExpr(amount=amount, currency=currency):
            return ast.MoneyLit(amount, currency)
        case ListExpr(items=items):
            return ast.ListLit(tuple(model_to_expr(item) for item in items))
        case PathExpr(parts=parts):
            return ast.Path(parts)
        case CallExpr(name=name, args=args):
            return ast.Call(name, tuple(model_to_expr(arg) for arg in args))
        case UnaryExpr(op=op, operand=operand):
            return ast.Unary(op, model_to_expr(operand))
        case BinaryExpr(op=op, left=left, right=right):
            return ast.Binary(op, model_to_expr(left), model_to_expr(right))
        case CompareExpr(op=op, left=left, right=right):
            return ast.Compare(op, model_to_expr(left), model_to_expr(right))
        case WithinExpr(operand=operand, seconds=seconds):
            return ast.Within(model_to_expr(operand), ast.DurationLit(seconds))
    raise TypeError(f"not an expression model: {type(model).__name__}")  # pragma: no cover


# ---------------------------------------------------------------------------- settings


class Money(_Frozen):
    """An amount of money: a decimal string and an ISO 4217 currency."""

    amount: Decimal
    currency: str


class Cap(_Frozen):
    """At most `count` messages per contact in any rolling `per_seconds` (channel None: all)."""

    channel: str | None
    count: int
    per_seconds: int


class SendWindow(_Frozen):
    """Hours (and days) when sends may go out; `end` before `start` runs past midnight."""

    start: str
    end: str
    local: bool
    days: tuple[str, ...]


class QuietHours(_Frozen):
    """Hours when a channel (or every channel, when None) must not send."""

    channel: str | None
    start: str
    end: str
    local: bool


class Timezone(_Frozen):
    """The campaign's timezone, or (fallback) the zone for contacts without one."""

    zone: str
    fallback: bool


class Reenter(_Frozen):
    """Whether a contact may be enrolled again: never, always, or after a duration."""

    mode: Literal["never", "always", "after"]
    after_seconds: int | None = None


class Settings(_Frozen):
    """Every campaign setting with its default filled in, so the engine never guesses."""

    model_config = ConfigDict(populate_by_name=True)

    audience: ExprModel | None = None
    exclude: ExprModel | None = None
    goal: ExprModel | None = None
    from_: str | None = Field(default=None, alias="from")
    reply_to: str | None = None
    channels: tuple[str, ...]
    channels_explicit: bool
    priority: int = 5
    caps: tuple[Cap, ...] = ()
    send_window: SendWindow | None = None
    timezone: Timezone | None = None
    quiet_hours: tuple[QuietHours, ...] = ()
    budget: Money | None = None
    costs: dict[str, Money] = Field(default_factory=dict)
    approval: Literal["required", "none", "implied"] = "implied"
    starts: str | None = None
    ends: str | None = None
    reenter: Reenter = Reenter(mode="never")
    max_sends: int = 20

    @property
    def currency(self) -> str | None:
        """The currency the campaign's money is in: its budget's (its costs must share it,
        E212), else its costs' when they are all in one; None when it names no money."""
        if self.budget is not None:
            return self.budget.currency
        currencies = {cost.currency for cost in self.costs.values()}
        return currencies.pop() if len(currencies) == 1 else None


# ---------------------------------------------------------------------------- triggers


class CountCondition(_Frozen):
    """`count>=3`: how many of the contact's events it takes."""

    op: Literal["=", "!=", "<", "<=", ">", ">="]
    value: int


class _TriggerBase(_Frozen):
    """What every trigger has: a name unique in the campaign and the node it starts at."""

    id: str
    entry: str


class EventTriggerModel(_TriggerBase):
    """An event about the contact, or (fanout) about a thing that matches many contacts."""

    kind: Literal["event"] = "event"
    event: str
    count: CountCondition | None = None
    within_seconds: int | None = None
    where: ExprModel | None = None
    fanout: ExprModel | None = None


class ContactCreatedTriggerModel(_TriggerBase):
    """A new contact."""

    kind: Literal["contact_created"] = "contact_created"


class SegmentEnterTriggerModel(_TriggerBase):
    """A contact starts matching a segment."""

    kind: Literal["segment_enter"] = "segment_enter"
    segment: str


class LaunchTriggerModel(_TriggerBase):
    """The audience, when the campaign is launched."""

    kind: Literal["launch"] = "launch"


class AtTriggerModel(_TriggerBase):
    """Once, at a wall-clock moment (ISO 8601, no zone); `local` reads it per contact."""

    kind: Literal["at"] = "at"
    at: str
    local: bool


class EveryTriggerModel(_TriggerBase):
    """Again and again: on named days at a time, or every `interval_seconds`."""

    kind: Literal["every"] = "every"
    days: tuple[str, ...]
    interval_seconds: int | None
    time: str | None
    local: bool


TriggerModel: TypeAlias = Annotated[
    EventTriggerModel
    | ContactCreatedTriggerModel
    | SegmentEnterTriggerModel
    | LaunchTriggerModel
    | AtTriggerModel
    | EveryTriggerModel,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------------------- nodes


class _NodeBase(_Frozen):
    """What every node has: an id that is stable across versions of the same flow."""

    id: str


class SendNode(_NodeBase):
    """Send a template on a channel, then go on to `next`."""

    kind: Literal["send"] = "send"
    channel: str
    template: str
    next: str | None


class WaitNode(_NodeBase):
    """Wait a fixed time."""

    kind: Literal["wait"] = "wait"
    seconds: int
    next: str | None


class WaitUntilNode(_NodeBase):
    """Wait until the next `time` ("HH:MM"), in the contact's zone when `local`."""

    kind: Literal["wait_until"] = "wait_until"
    time: str
    local: bool
    next: str | None


class WaitForNode(_NodeBase):
    """Wait until `event` happens or `timeout_seconds` pass; both go on to `next`."""

    kind: Literal["wait_for"] = "wait_for"
    event: ExprModel
    timeout_seconds: int
    next: str | None


class Condition(_Frozen):
    """One `if`/`else if` arm: when the expression holds, go to `to`."""

    when: ExprModel
    to: str


class BranchNode(_NodeBase):
    """Go to the first arm whose condition holds, else to `otherwise`."""

    kind: Literal["branch"] = "branch"
    conditions: tuple[Condition, ...]
    otherwise: str


class Variant(_Frozen):
    """One arm of a split: its name, its share where it has one, and its entry node."""

    name: str
    share: Decimal | None = None
    to: str


class ABSplitNode(_NodeBase):
    """Send `test_share`% equally over the variants; after `after_seconds`, the rest
    (`holdout_share`%) waits here and then follows the variant that won on `metric`."""

    kind: Literal["ab_split"] = "ab_split"
    test_share: Decimal
    holdout_share: Decimal
    metric: str
    after_seconds: int
    variants: tuple[Variant, ...]


class RandomSplitNode(_NodeBase):
    """Send each contact down one branch at random, in the given shares."""

    kind: Literal["random_split"] = "random_split"
    branches: tuple[Variant, ...]


class SetNode(_NodeBase):
    """Write a contact attribute."""

    kind: Literal["set"] = "set"
    attribute: str
    value: ExprModel
    next: str | None


class TagNode(_NodeBase):
    """Add or remove a tag."""

    kind: Literal["tag"] = "tag"
    action: Literal["add", "remove"]
    tag: str
    next: str | None


class AssignAgentNode(_NodeBase):
    """Assign a sales agent with a strategy such as round_robin."""

    kind: Literal["assign_agent"] = "assign_agent"
    strategy: str
    next: str | None


class NotifyNode(_NodeBase):
    """Tell another system (a webhook), not the contact."""

    kind: Literal["notify"] = "notify"
    channel: str
    target: str
    next: str | None


class EnrollNode(_NodeBase):
    """Enroll the contact in another campaign, then go on."""

    kind: Literal["enroll"] = "enroll"
    campaign: str
    next: str | None


class ExitNode(_NodeBase):
    """Leave the campaign early, with a reason for reports."""

    kind: Literal["exit"] = "exit"
    reason: str | None


class EndNode(_NodeBase):
    """The end of every flow: the contact has completed the campaign."""

    kind: Literal["end"] = "end"


NodeModel: TypeAlias = Annotated[
    SendNode
    | WaitNode
    | WaitUntilNode
    | WaitForNode
    | BranchNode
    | ABSplitNode
    | RandomSplitNode
    | SetNode
    | TagNode
    | AssignAgentNode
    | NotifyNode
    | EnrollNode
    | ExitNode
    | EndNode,
    Field(discriminator="kind"),
]


class Edge(_Frozen):
    """One arrow of the step graph, for drawing and explaining; derived from the nodes."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    label: str | None = None


# ---------------------------------------------------------------------------- resources


class TemplateContentModel(_Frozen):
    """Subject, preheader and body of a template in one locale, body files already read."""

    subject: str | None = None
    preheader: str | None = None
    body: str
    body_file: str | None = None


class CompiledTemplate(_Frozen):
    """A template the campaign sends: its default content and its localized versions.

    A locale's missing subject or preheader is filled from the default content, so the
    engine only has to pick the locale.
    """

    name: str
    channel: str
    content: TemplateContentModel
    locales: dict[str, TemplateContentModel] = Field(default_factory=dict)

    @cached_property
    def variables(self) -> frozenset[str]:
        """The top-level names its text uses (`contact`, `confirm_url` ...), in any part and
        locale: what the engine and the senders ask of a template (a confirmation message
        uses `confirm_url`). Read once per template object, so once per campaign version.
        """
        names: set[str] = set()
        for tree in self.parsed_texts[0]:
            names |= template_names(tree)
        return frozenset(names)

    @cached_property
    def record_reads(self) -> dict[str, frozenset[str] | None]:
        """The fields its text reads of `contact` and of `event`, each by name
        (`contact.city`); None for a record it reads otherwise (`contact[key]`, a loop over
        it), so that any field may matter. What a render of it can depend on, per record.
        """
        import jinja2.nodes

        trees, unparsed = self.parsed_texts
        if unparsed:
            return {"contact": None, "event": None}
        reads: dict[str, frozenset[str] | None] = {"contact": frozenset(), "event": frozenset()}
        for tree in trees:
            for root in reads:
                named = [
                    n.attr
                    for n in tree.find_all(jinja2.nodes.Getattr)
                    if isinstance(n.node, jinja2.nodes.Name) and n.node.name == root
                ]
                uses = sum(1 for n in tree.find_all(jinja2.nodes.Name) if n.name == root)
                known = reads[root]
                reads[root] = None if known is None or uses > len(named) else known | set(named)
        return reads

    @cached_property
    def value_reads(self) -> dict[str, frozenset[str] | None]:
        """Of the fields in `record_reads`, those whose value (not only its kind: text,
        number, present or not) can decide whether a render fails or which way it goes: a
        field tested (`if contact.plan == "gold"`), computed with, or given to a filter that
        reads what it holds (`money`, `date`). A field that is only printed, as it is or
        through filters that read nothing but its kind (`default`, `upper` ...), renders
        alike for every value of its kind. None where `record_reads` is None.
        """
        reads = self.record_reads
        values: dict[str, set[str]] = {root: set() for root in reads}
        for tree in self.parsed_texts[0]:
            _note_value_reads(tree, printed=False, found=values)
        return {
            root: None if fields is None else frozenset(values[root] & fields)
            for root, fields in reads.items()
        }

    @cached_property
    def parsed_texts(self) -> tuple[tuple[jinja2.nodes.Template, ...], bool]:
        """Every text part of every locale, parsed once for `variables` and `record_reads`;
        and whether one did not parse."""
        from jinja2 import TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment

        parser = SandboxedEnvironment()  # parsing only: nothing here is run
        trees = []
        unparsed = False
        for content in (self.content, *self.locales.values()):
            for text in (content.subject, content.preheader, content.body):
                if not text:
                    continue
                try:
                    trees.append(parser.parse(text))
                except TemplateSyntaxError:
                    unparsed = True  # `cadence check` reports it; rendering fails that send
        return tuple(trees), unparsed


# Filters whose success and result's shape depend on nothing but the kind of what they are
# given, never on what it holds: a field printed through them renders for every value of its
# kind as it does for one (`int` is not among them: "1e400" overflows where "12" does not).
KIND_ONLY_FILTERS = frozenset(
    {"default", "d", "e", "escape", "string", "upper", "lower", "title", "capitalize", "trim"}
)


def _note_value_reads(
    node: jinja2.nodes.Node, *, printed: bool, found: dict[str, set[str]]
) -> None:
    """Add to `found` the fields of its records (`contact.x`) that `node` reads other than by
    printing them (`CompiledTemplate.value_reads`); `printed`: node's value is only output."""
    import jinja2.nodes

    if isinstance(node, jinja2.nodes.Getattr):
        if isinstance(node.node, jinja2.nodes.Name) and node.node.name in found:
            if not printed:
                found[node.node.name].add(node.attr)
            return
        # A field of a printed record is printed too: the record's kind holds its fields' kinds.
        _note_value_reads(node.node, printed=printed, found=found)
        return
    if isinstance(node, jinja2.nodes.Output):
        for part in node.nodes:
            _note_value_reads(part, printed=True, found=found)
        return
    if isinstance(node, jinja2.nodes.Filter) and printed and node.name in KIND_ONLY_FILTERS:
        if node.node is not None:
            _note_value_reads(node.node, printed=True, found=found)
        for argument in (*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs):
            if argument is not None:
                _note_value_reads(argument, printed=False, found=found)
        return
    if isinstance(node, jinja2.nodes.Concat) and printed:
        for part in node.nodes:
            _note_value_reads(part, printed=True, found=found)
        return
    for child in node.iter_child_nodes():
        _note_value_reads(child, printed=False, found=found)


def unguarded_event_reads(tree: jinja2.nodes.Template) -> frozenset[str]:
    """The `event.FIELD`s a template text reads where nothing catches their absence: not
    under `default`, not in an `{% if %}` (or `x if y else z`) nor an `is` test. Without
    an event, each of them fails every render of the text."""
    import jinja2.nodes

    found: set[str] = set()

    def visit(node: jinja2.nodes.Node, guarded: bool) -> None:
        if isinstance(node, jinja2.nodes.Getattr | jinja2.nodes.Getitem):
            target = node.node
            if isinstance(target, jinja2.nodes.Name) and target.name == "event":
                field = node.attr if isinstance(node, jinja2.nodes.Getattr) else node.arg
                if isinstance(field, jinja2.nodes.Const):
                    field = field.value
                if not guarded and isinstance(field, str):
                    found.add(field)
                return
        if isinstance(node, jinja2.nodes.Filter) and node.name in ("default", "d"):
            if node.node is not None:
                visit(node.node, True)
            for argument in (*node.args, *node.kwargs):
                visit(argument, guarded)
            return
        inside = guarded or isinstance(
            node, jinja2.nodes.If | jinja2.nodes.CondExpr | jinja2.nodes.Test
        )
        for child in node.iter_child_nodes():
            visit(child, inside)

    visit(tree, False)
    return frozenset(found)


# Names Jinja itself gives a template: inside a `for`, a `call` block, a macro or a child,
# and its globals (`range`, `namespace` ...).
JINJA_NAMES = frozenset(
    {"loop", "caller", "varargs", "kwargs", "self", "super", "range", "namespace", "dict",
     "cycler", "joiner", "lipsum"}
)  # fmt: skip


def template_names(tree: jinja2.nodes.Template) -> frozenset[str]:
    """The top-level names a parsed template text reads from what it is given.

    Read off the tree, not with `jinja2.meta`, which compiles the template and so fails on
    the renderer's own filters (`money`, `date` ...): a confirmation message that also
    formatted a price lost its `confirm_url`. A name the text sets anywhere (`set`, `for`,
    a macro and its parameters) counts as its own wherever it is used.
    """
    import jinja2.nodes

    used = {n.name for n in tree.find_all(jinja2.nodes.Name) if n.ctx == "load"}
    defined = {n.name for n in tree.find_all(jinja2.nodes.Name) if n.ctx != "load"}
    defined |= {macro.name for macro in tree.find_all(jinja2.nodes.Macro)}
    return frozenset(used - defined - JINJA_NAMES)


class CompiledSegment(_Frozen):
    """A named audience predicate the campaign uses."""

    name: str
    expr: ExprModel


class ScorePointsRule(_Frozen):
    """`opened(any) within 30d: +5 each`."""

    kind: Literal["points"] = "points"
    event: ExprModel
    within_seconds: int | None
    points: Decimal
    each: bool


class ScoreDecayRule(_Frozen):
    """`decay 10% per 30d`."""

    kind: Literal["decay"] = "decay"
    percent: Decimal
    per_seconds: int


ScoreRuleModel: TypeAlias = Annotated[ScorePointsRule | ScoreDecayRule, Field(discriminator="kind")]


class CompiledScore(_Frozen):
    """A named, computed contact attribute the campaign uses."""

    name: str
    rules: tuple[ScoreRuleModel, ...]


# ---------------------------------------------------------------------------- campaign


CampaignType: TypeAlias = Literal["broadcast", "drip", "triggered", "recurring", "ab_test"]


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: the bytes that are hashed and stored."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class CompiledCampaign(_Frozen):
    """One campaign version: the engine's input, content-addressed by `version`.

    Built without a `version`, the model fills it in; loaded with one, the version must
    match the content, so a stored campaign that was edited by hand is refused.
    """

    format_version: int = FORMAT_VERSION
    name: str
    display_name: str
    type: CampaignType
    type_inferred: bool
    kind: str | None = None
    source: str
    settings: Settings
    triggers: tuple[TriggerModel, ...]
    nodes: tuple[NodeModel, ...]
    edges: tuple[Edge, ...]
    templates: dict[str, CompiledTemplate] = Field(default_factory=dict)
    segments: dict[str, CompiledSegment] = Field(default_factory=dict)
    scores: dict[str, CompiledScore] = Field(default_factory=dict)
    version: str = ""

    @model_validator(mode="after")
    def _seal(self) -> CompiledCampaign:
        self._check_graph()
        computed = self.content_hash()
        if not self.version:
            object.__setattr__(self, "version", computed)
        elif self.version != computed:
            raise ValueError(
                f"version {self.version} does not match the content (sha256 {computed})"
            )
        return self

    def _check_graph(self) -> None:
        """Ids are unique and every reference names a node, so the engine can trust a load."""
        ids = [node.id for node in self.nodes]
        known = set(ids)
        if len(known) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"node ids are not unique: {', '.join(duplicates)}")
        references = [(trigger.id, trigger.entry) for trigger in self.triggers]
        references += [(node.id, target) for node in self.nodes for target in node_targets(node)]
        references += [(edge.from_, edge.to) for edge in self.edges]
        references += [(edge.from_, edge.from_) for edge in self.edges]
        dangling = sorted(
            {f"{owner} -> {target}" for owner, target in references if target not in known}
        )
        if dangling:
            raise ValueError(f"references to missing nodes: {', '.join(dangling)}")

    def content(self) -> dict[str, Any]:
        """Everything but the version, as JSON-ready data."""
        return self.model_dump(mode="json", by_alias=True, exclude={"version"})

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of everything but the version."""
        return hashlib.sha256(canonical_json(self.content()).encode("utf-8")).hexdigest()

    def to_data(self) -> dict[str, Any]:
        """The whole campaign, version included, as JSON-ready data."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        """Canonical JSON: same source, byte-identical output."""
        return canonical_json(self.to_data())

    @cached_property
    def node_map(self) -> dict[str, NodeModel]:
        """Nodes by id, built once per campaign object (the stepper looks them up per step)."""
        return {node.id: node for node in self.nodes}

    def node(self, node_id: str) -> NodeModel:
        """The node with this id (KeyError when there is none)."""
        return self.node_map[node_id]


def node_targets(node: NodeModel) -> list[str]:
    """The ids of the nodes a contact can go to from this one (none from exit and end)."""
    match node:
        case BranchNode(conditions=conditions, otherwise=otherwise):
            return [c.to for c in conditions] + [otherwise]
        case ABSplitNode(variants=branches) | RandomSplitNode(branches=branches):
            return [branch.to for branch in branches]
        case ExitNode() | EndNode():
            return []
        case _:
            return [node.next] if node.next is not None else []


def variant_nodes(campaign: CompiledCampaign, split: ABSplitNode) -> frozenset[str]:
    """The nodes whose sends carry one of this split's variant names: its branches and what
    follows them, up to the next split (whose arm a send names from then on,
    `stepper._current_variant`). Another split's variants may have the same names."""
    nodes = campaign.node_map
    seen: set[str] = set()
    todo = [variant.to for variant in split.variants]
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in nodes:
            continue
        node = nodes[node_id]
        if isinstance(node, ABSplitNode | RandomSplitNode):
            continue
        seen.add(node_id)
        todo.extend(node_targets(node))
    return frozenset(seen)


def split_branch_nodes(campaign: CompiledCampaign, split: ABSplitNode) -> frozenset[str]:
    """The nodes of a split's variant branches, before they join again (the join excluded)."""
    nodes = campaign.node_map
    reached: list[set[str]] = []
    for variant in split.variants:
        seen: set[str] = set()
        todo = [variant.to]
        while todo:
            node_id = todo.pop()
            if node_id in seen or node_id == split.id or node_id not in nodes:
                continue
            seen.add(node_id)
            todo.extend(node_targets(nodes[node_id]))
        reached.append(seen)
    if not reached:
        return frozenset()
    every, common = set(reached[0]), set(reached[0])
    for seen in reached[1:]:
        every |= seen
        common &= seen
    return frozenset(every - common)


class CompileBundle(_Frozen):
    """What `cadence compile FILE` writes: every campaign the file and its imports declare."""

    format_version: int = FORMAT_VERSION
    source: str
    campaigns: tuple[CompiledCampaign, ...]

    def to_json(self, *, indent: int | None = None) -> str:
        """Sorted-key JSON; compact by default, indented for people with `indent`."""
        data = self.model_dump(mode="json", by_alias=True)
        if indent is None:
            return canonical_json(data)
        return json.dumps(data, sort_keys=True, indent=indent, ensure_ascii=False)
