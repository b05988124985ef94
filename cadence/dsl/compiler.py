"""Turn a checked workspace into `CompiledCampaign`s: the step graphs the engine runs.

The compiler trusts the checker for the language's rules (channels, shares, send limits ...)
and only refuses what it cannot resolve into a runnable graph: an unknown template, segment
or campaign, a template body file it cannot read, a `wait for` without a limit, a day name
it does not know. Those come back as one `CadenceCheckError` listing them all, never as a
KeyError or AttributeError.

Node ids are readable (`send_welcome`, `wait_2d`, `if_1`) and assigned in one deterministic
walk (triggers in source order, steps depth first), with `_2`, `_3` ... only on collision:
a new version's enrollments migrate by node id, so ids depend on the flow, not on layout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path, PurePath
from typing import Literal, cast

from cadence.dsl import ast
from cadence.dsl.checker import check_workspace
from cadence.dsl.checks.settings import APPROVAL_VALUES
from cadence.dsl.compiled import (
    FORMAT_VERSION,
    ABSplitNode,
    AssignAgentNode,
    AtTriggerModel,
    BranchNode,
    CallExpr,
    CampaignType,
    Cap,
    CompileBundle,
    CompiledCampaign,
    CompiledScore,
    CompiledSegment,
    CompiledTemplate,
    Condition,
    ContactCreatedTriggerModel,
    CountCondition,
    Edge,
    EndNode,
    EnrollNode,
    EventTriggerModel,
    EveryTriggerModel,
    ExitNode,
    ExprModel,
    LaunchTriggerModel,
    Money,
    NodeModel,
    NotifyNode,
    PathExpr,
    QuietHours,
    RandomSplitNode,
    Reenter,
    ScoreDecayRule,
    ScorePointsRule,
    ScoreRuleModel,
    SegmentEnterTriggerModel,
    SendNode,
    SendWindow,
    SetNode,
    Settings,
    TagNode,
    TemplateContentModel,
    Timezone,
    TriggerModel,
    Variant,
    WaitForNode,
    WaitNode,
    WaitUntilNode,
    expr_to_model,
    model_to_expr,
)
from cadence.dsl.loader import LoadedFile, Workspace, load, load_text
from cadence.dsl.symbols import (
    CAMPAIGN_TYPES,
    CHANNELS,
    DAY_GROUPS,
    DAY_NAMES,
    DEFAULT_MAX_SENDS,
    CampaignUnit,
    Declared,
    Symbols,
    collect_symbols,
    trigger_word,
)
from cadence.errors import (
    CadenceCheckError,
    CadenceSyntaxError,
    Diagnostic,
    did_you_mean,
)

DEFAULT_PRIORITY = 5
_DAYS: dict[str, tuple[str, ...]] = {**{day: (day,) for day in DAY_NAMES}, **DAY_GROUPS}

# The compiler reports with the checker's codes (cadence.dsl.checks.context.CHECK_CODES): it
# only meets these problems when it is handed a workspace nobody checked.
E_UNKNOWN_TEMPLATE = "E101"
E_UNKNOWN_SEGMENT = "E102"
E_UNKNOWN_CAMPAIGN = "E103"
E_BAD_TYPE = "E110"
E_BAD_APPROVAL = "E111"
E_UNKNOWN_DAY = "E114"
E_WAIT_FOR_LIMIT = "E207"
E_OUT_OF_RANGE = "E212"
E_BODY_FILE = "E217"
E_NO_BODY = "E218"

_MAX_SLUG = 40


# ---------------------------------------------------------------------------- public API


@dataclass(slots=True)
class CompileResult:
    """The campaigns of a workspace and the checker's warnings about it."""

    campaigns: list[CompiledCampaign]
    warnings: list[Diagnostic] = field(default_factory=list)
    workspace: Workspace | None = None


def compile_workspace(
    workspace: Workspace, symbols: Symbols | None = None
) -> list[CompiledCampaign]:
    """Compile every campaign of a checked workspace, sorted by name.

    Raises `CadenceCheckError` for anything it cannot resolve, with every such problem, and
    `CadenceSyntaxError` for a workspace whose files did not all load: the campaigns of the
    files that did would be compiled against missing declarations.
    """
    if any(d.severity == "error" for d in workspace.diagnostics):
        raise CadenceSyntaxError(workspace.diagnostics)
    symbols = symbols if symbols is not None else collect_symbols(workspace)
    context = _Context(workspace, symbols, _root_dir(workspace))
    campaigns: list[CompiledCampaign] = []
    for name in sorted(symbols.campaigns):
        compiled = _CampaignCompiler(context, symbols.campaigns[name]).compile()
        if compiled is not None:
            campaigns.append(compiled)
    if context.errors:
        raise CadenceCheckError(context.errors)
    return campaigns


def check_and_compile(paths: Iterable[str | Path]) -> CompileResult:
    """Load, check and compile; raise the syntax or check errors, return the warnings."""
    return _checked_and_compiled(load(paths))


def check_and_compile_text(text: str, name: str = "<text>") -> CompileResult:
    """`check_and_compile` for source held in memory (imports resolve from the working
    directory)."""
    return _checked_and_compiled(load_text(text, name))


def _checked_and_compiled(workspace: Workspace) -> CompileResult:
    diagnostics = check_workspace(workspace)
    if any(d.severity == "error" for d in diagnostics):
        if any(d.severity == "error" for d in workspace.diagnostics):
            raise CadenceSyntaxError(diagnostics)
        raise CadenceCheckError(diagnostics)
    return CompileResult(compile_workspace(workspace), diagnostics, workspace)


def compile_paths(paths: Iterable[str | Path]) -> list[CompiledCampaign]:
    """Load, check and compile files (with their imports), refusing any file with errors."""
    return check_and_compile(paths).campaigns


def make_bundle(path: str | Path, campaigns: Sequence[CompiledCampaign]) -> CompileBundle:
    """The `cadence compile` output for one file: its name and its campaigns."""
    return CompileBundle(
        format_version=FORMAT_VERSION, source=PurePath(path).name, campaigns=tuple(campaigns)
    )


def compile_bundle(path: str | Path) -> CompileBundle:
    """Check and compile one file into a bundle."""
    return make_bundle(path, compile_paths([path]))


def infer_campaign_type(unit: CampaignUnit) -> CampaignType:
    """The campaign's type when it does not state one (the rule is in docs/compiled-format.md).

    An A/B split makes an `ab_test`; an `every` trigger a `recurring` campaign; a `campaign`
    block with at least two sends and two waits a `drip`; `at` or `on launch` a `broadcast`;
    anything else (events, `contact_created`, `segment_enter`) is `triggered`.
    """
    steps = [step for block in unit.triggers for step in walk_steps(block.steps)]
    triggers = [block.trigger for block in unit.triggers]
    if any(isinstance(step, ast.ABSplit) for step in steps):
        return "ab_test"
    if any(isinstance(trigger, ast.EveryTrigger) for trigger in triggers):
        return "recurring"
    sends = sum(isinstance(step, ast.Send) for step in steps)
    waits = sum(isinstance(step, ast.Wait | ast.WaitUntil | ast.WaitFor) for step in steps)
    if not unit.implicit and sends >= 2 and waits >= 2:
        return "drip"
    if triggers and all(isinstance(t, ast.AtTrigger | ast.LaunchTrigger) for t in triggers):
        return "broadcast"
    return "triggered"


def walk_steps(steps: Iterable[ast.Step]) -> Iterator[ast.Step]:
    """Every step, nested ones included, in source order (depth first)."""
    for step in steps:
        yield step
        match step:
            case ast.If(branches=branches, else_steps=else_steps):
                for branch in branches:
                    yield from walk_steps(branch.steps)
                if else_steps is not None:
                    yield from walk_steps(else_steps)
            case ast.ABSplit(branches=split_branches) | ast.RandomSplit(branches=split_branches):
                for split_branch in split_branches:
                    yield from walk_steps(split_branch.steps)
            case _:
                pass


def derive_edges(nodes: Sequence[NodeModel]) -> tuple[Edge, ...]:
    """The arrows of the graph, labelled for people: "yes", "else", "a 50%", "after 2d" ..."""
    edges: list[Edge] = []

    def add(source: str, target: str | None, label: str | None = None) -> None:
        if target is not None:
            edges.append(Edge(from_=source, to=target, label=label))

    for node in nodes:
        match node:
            case WaitNode(seconds=seconds):
                add(node.id, node.next, f"after {format_duration(seconds)}")
            case WaitUntilNode(time=time, local=local):
                add(node.id, node.next, f"until {time}{' local' if local else ''}")
            case WaitForNode(event=event, timeout_seconds=timeout):
                add(node.id, node.next, _event_label(event))
                add(node.id, node.next, f"timeout {format_duration(timeout)}")
            case BranchNode(conditions=conditions, otherwise=otherwise):
                for condition in conditions:
                    label = (
                        "yes" if len(conditions) == 1 else expr_text(model_to_expr(condition.when))
                    )
                    add(node.id, condition.to, label)
                add(node.id, otherwise, "else")
            case RandomSplitNode(branches=branches):
                for branch in branches:
                    add(node.id, branch.to, f"{branch.name} {_percent(branch.share)}")
            case ABSplitNode(variants=variants, test_share=test, holdout_share=holdout):
                each = test / len(variants) if variants else Decimal(0)
                for variant in variants:
                    add(node.id, variant.to, f"{variant.name} {_percent(each)}")
                if holdout > 0:
                    after = format_duration(node.after_seconds)
                    for variant in variants:
                        label = f"{_percent(holdout)} if {variant.name} wins after {after}"
                        add(node.id, variant.to, label)
            case ExitNode() | EndNode():
                pass
            case _:
                add(node.id, node.next)
    return tuple(edges)


# ---------------------------------------------------------------------------- text helpers


def format_duration(seconds: int) -> str:
    """Seconds as a Cadence duration in days, hours, minutes and seconds: 129600 -> 1d12h."""
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def expr_text(expr: ast.Expr) -> str:
    """An expression written back as Cadence source, for edge labels and messages."""
    return _text(expr, 0)


_BINARY_PRECEDENCE = {"or": 1, "and": 2, "+": 5, "-": 5, "*": 6, "/": 6}


def _text(expr: ast.Expr, parent: int) -> str:
    match expr:
        case ast.Binary(op=op, left=left, right=right):
            level = _BINARY_PRECEDENCE[op]
            text = f"{_text(left, level)} {op} {_text(right, level + 1)}"
        case ast.Unary(op="not", operand=operand):
            level = 3
            text = f"not {_text(operand, level)}"
        case ast.Unary(operand=operand):
            level = 7
            text = f"-{_text(operand, level)}"
        case ast.Compare(op=op, left=left, right=right):
            level = 4
            text = f"{_text(left, 5)} {op} {_text(right, 5)}"
        case ast.Within(operand=operand, duration=duration):
            level = 4
            text = f"{_text(operand, 5)} within {format_duration(duration.seconds)}"
        case _:
            return _atom_text(expr)
    return f"({text})" if level < parent else text


def _atom_text(expr: ast.Expr) -> str:
    match expr:
        case ast.NumberLit(value=value):
            return _decimal(value)
        case ast.StringLit(value=value):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        case ast.BoolLit(value=value):
            return "true" if value else "false"
        case ast.DurationLit(seconds=seconds):
            return format_duration(seconds)
        case ast.TimeLit(hour=hour, minute=minute):
            return f"{hour:02d}:{minute:02d}"
        case ast.DateLit(value=value):
            return value.isoformat()
        case ast.DateTimeLit(value=value):
            return value.isoformat(timespec="minutes" if value.second == 0 else "seconds")
        case ast.PercentLit(value=value):
            return f"{_decimal(value)}%"
        case ast.MoneyLit(amount=amount, currency=currency):
            return f"{_decimal(amount)} {currency}"
        case ast.ListLit(items=items):
            return "[" + ", ".join(_text(item, 0) for item in items) + "]"
        case ast.Path() as path:
            return path.dotted
        case ast.Call(name=name, args=args):
            return f"{name}(" + ", ".join(_text(arg, 0) for arg in args) + ")"
    return "?"  # pragma: no cover - every expression kind is handled above


def _decimal(value: Decimal) -> str:
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "?%"
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{_decimal(rounded)}%"


def _event_label(event: ExprModel) -> str:
    if isinstance(event, CallExpr):
        return event.name
    if isinstance(event, PathExpr):
        return ".".join(event.parts)
    return "event"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug[:_MAX_SLUG].rstrip("_") or "x"


# ---------------------------------------------------------------------------- internals


def _root_dir(workspace: Workspace) -> Path:
    if workspace.roots:
        return workspace.roots[0].parent
    return Path.cwd()


def _relative(path: Path, root: Path) -> str:
    return PurePath(os.path.relpath(path, root)).as_posix()


@dataclass(slots=True)
class _Context:
    """What all campaigns of one compilation share: names, errors, templates already built."""

    workspace: Workspace
    symbols: Symbols
    root: Path
    errors: list[Diagnostic] = field(default_factory=list)
    templates: dict[str, CompiledTemplate | None] = field(default_factory=dict)
    reported: set[tuple[str, int, int, str]] = field(default_factory=set)

    def error(
        self, file: LoadedFile, span: ast.Span, code: str, message: str, hint: str | None = None
    ) -> None:
        """Record one error, once per place and code."""
        key = (file.source.name, span.line, span.column, code)
        if key in self.reported:
            return
        self.reported.add(key)
        self.errors.append(file.source.diagnostic(span, code, message, hint=hint))


class _IdAllocator:
    """Readable, unique node ids: the first of a name is bare, the next get `_2`, `_3` ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.counters: dict[str, int] = {}

    def take(self, base: str) -> str:
        """The base itself if free, else the first free `base_N`."""
        candidate, n = base, 1
        while candidate in self.used:
            n += 1
            candidate = f"{base}_{n}"
        self.used.add(candidate)
        return candidate

    def numbered(self, prefix: str) -> str:
        """`prefix_1`, `prefix_2` ... for nodes without a natural name (ifs, splits)."""
        count = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = count
        return self.take(f"{prefix}_{count}")


def _base_id(step: ast.Step, ids: _IdAllocator) -> str:
    match step:
        case ast.Send(template=template):
            return ids.take(f"send_{template}")
        case ast.Wait(duration=duration):
            return ids.take(f"wait_{format_duration(duration.seconds)}")
        case ast.WaitUntil(time=time):
            return ids.take(f"wait_until_{time.hour:02d}{time.minute:02d}")
        case ast.WaitFor(event=event):
            return ids.take(f"wait_for_{_slug(expr_text(event))}")
        case ast.If():
            return ids.numbered("if")
        case ast.ABSplit():
            return ids.numbered("ab_split")
        case ast.RandomSplit():
            return ids.numbered("split")
        case ast.SetAttr(target=target):
            return ids.take(f"set_{_slug(target.dotted)}")
        case ast.Tag(action=action, tag=tag):
            return ids.take(f"tag_{action}_{_slug(tag)}")
        case ast.AssignAgent():
            return ids.take("assign_agent")
        case ast.Notify(channel=channel):
            return ids.take(f"notify_{_slug(channel)}")
        case ast.Enroll(campaign=campaign):
            return ids.take(f"enroll_{campaign}")
        case ast.Exit(reason=reason):
            return ids.take(f"exit_{_slug(reason)}" if reason else "exit")
        case ast.Placeholder():
            raise AssertionError("placeholders get no node")  # _real() drops them


def _real(steps: Sequence[ast.Step]) -> Sequence[ast.Step]:
    """The steps that do something: `...` placeholders make no node."""
    if any(isinstance(step, ast.Placeholder) for step in steps):
        return [step for step in steps if not isinstance(step, ast.Placeholder)]
    return steps


class _CampaignCompiler:
    """Compiles one campaign unit; problems go to the shared context."""

    def __init__(self, context: _Context, unit: CampaignUnit) -> None:
        self.context = context
        self.unit = unit
        self.file = unit.file
        self.symbols = context.symbols
        self.ids = _IdAllocator()
        self.step_ids: dict[int, str] = {}
        self.nodes: list[NodeModel] = []
        self.template_names: list[str] = []
        self.error_count = len(context.errors)

    def error(self, span: ast.Span, code: str, message: str, hint: str | None = None) -> None:
        self.context.error(self.file, span, code, message, hint)

    # -- the whole campaign

    def compile(self) -> CompiledCampaign | None:
        end_id = self.ids.take("end")
        for block in self.unit.triggers:
            self._assign_ids(block.steps)
        triggers = self._triggers(end_id)
        self.nodes.append(EndNode(id=end_id))
        settings = self._settings()
        explicit_type = self._explicit_type()
        templates = {name: t for name in self.template_names if (t := self._template(name))}
        segments, scores = self._referenced_segments_and_scores()
        if len(self.context.errors) > self.error_count or settings is None:
            return None
        kind = next((s.value for s in self.unit.setting(ast.NameSetting) if s.key == "kind"), None)
        return CompiledCampaign(
            format_version=FORMAT_VERSION,
            name=self.unit.name,
            display_name=self.unit.display_name,
            type=explicit_type or infer_campaign_type(self.unit),
            type_inferred=explicit_type is None,
            kind=kind,
            source=_relative(self.file.path, self.context.root),
            settings=settings,
            triggers=tuple(triggers),
            nodes=tuple(self.nodes),
            edges=derive_edges(self.nodes),
            templates=dict(sorted(templates.items())),
            segments=segments,
            scores=scores,
        )

    def _explicit_type(self) -> CampaignType | None:
        for setting in self.unit.setting(ast.NameSetting):
            if setting.key != "type":
                continue
            if setting.value in CAMPAIGN_TYPES:
                return cast(CampaignType, setting.value)
            self.error(
                setting.value_span,
                E_BAD_TYPE,
                f"`{setting.value}` is not a campaign type",
                did_you_mean(setting.value, CAMPAIGN_TYPES)
                or "use one of " + ", ".join(CAMPAIGN_TYPES),
            )
        return None

    # -- node ids, in one deterministic walk

    def _assign_ids(self, steps: Sequence[ast.Step]) -> None:
        for step in _real(steps):
            self.step_ids[id(step)] = _base_id(step, self.ids)
            match step:
                case ast.If(branches=branches, else_steps=else_steps):
                    for branch in branches:
                        self._assign_ids(branch.steps)
                    self._assign_ids(else_steps or ())
                case (
                    ast.ABSplit(branches=split_branches) | ast.RandomSplit(branches=split_branches)
                ):
                    for split_branch in split_branches:
                        self._assign_ids(split_branch.steps)
                case _:
                    pass

    # -- triggers

    def _triggers(self, end_id: str) -> list[TriggerModel]:
        names = _IdAllocator()
        triggers: list[TriggerModel] = []
        for block in self.unit.triggers:
            trigger_id = names.take(trigger_word(block.trigger))
            entry = self._sequence(block.steps, end_id)
            triggers.append(self._trigger(block.trigger, trigger_id, entry))
        return triggers

    def _trigger(self, trigger: ast.Trigger, trigger_id: str, entry: str) -> TriggerModel:
        match trigger:
            case ast.EventTrigger(event=event, count=count, within=within):
                return EventTriggerModel(
                    id=trigger_id,
                    entry=entry,
                    event=event,
                    count=CountCondition(op=count.op, value=count.count) if count else None,
                    within_seconds=within.seconds if within else None,
                    where=expr_to_model(trigger.where) if trigger.where is not None else None,
                    fanout=expr_to_model(trigger.fanout) if trigger.fanout is not None else None,
                )
            case ast.ContactCreatedTrigger():
                return ContactCreatedTriggerModel(id=trigger_id, entry=entry)
            case ast.SegmentEnterTrigger(segment=segment):
                if segment not in self.symbols.segments:
                    self.error(
                        trigger.span,
                        E_UNKNOWN_SEGMENT,
                        f"unknown segment `{segment}`",
                        did_you_mean(segment, self.symbols.segments),
                    )
                return SegmentEnterTriggerModel(id=trigger_id, entry=entry, segment=segment)
            case ast.LaunchTrigger():
                return LaunchTriggerModel(id=trigger_id, entry=entry)
            case ast.AtTrigger(moment=moment, local=local):
                return AtTriggerModel(
                    id=trigger_id, entry=entry, at=_moment_text(moment), local=local
                )
            case ast.EveryTrigger(days=days, interval=interval, time=time, local=local):
                return EveryTriggerModel(
                    id=trigger_id,
                    entry=entry,
                    days=self._days(days, trigger.span),
                    interval_seconds=interval.seconds if interval else None,
                    time=f"{time.hour:02d}:{time.minute:02d}" if time else None,
                    local=local,
                )

    # -- steps to nodes

    def _sequence(self, steps: Sequence[ast.Step], after: str) -> str:
        """Emit the nodes of a block whose last step goes on to `after`; return its entry."""
        steps = _real(steps)
        for index, step in enumerate(steps):
            following = self.step_ids[id(steps[index + 1])] if index + 1 < len(steps) else after
            self._step(step, following)
        return self.step_ids[id(steps[0])] if steps else after

    def _step(self, step: ast.Step, following: str) -> None:
        node_id = self.step_ids[id(step)]
        index = len(self.nodes)
        self.nodes.append(EndNode(id=node_id))  # a stand-in keeps pre-order; replaced below
        node: NodeModel
        match step:
            case ast.Send(channel=channel, template=template):
                self._use_template(step)
                node = SendNode(id=node_id, channel=channel, template=template, next=following)
            case ast.Wait(duration=duration):
                node = WaitNode(id=node_id, seconds=duration.seconds, next=following)
            case ast.WaitUntil(time=time, local=local):
                node = WaitUntilNode(
                    id=node_id,
                    time=f"{time.hour:02d}:{time.minute:02d}",
                    local=local,
                    next=following,
                )
            case ast.WaitFor(event=event, up_to=up_to):
                if up_to is None:
                    self.error(
                        step.span,
                        E_WAIT_FOR_LIMIT,
                        "`wait for` needs a limit",
                        "add `up to DURATION`, for example `up to 3d`",
                    )
                timeout = up_to.seconds if up_to is not None else 0
                node = WaitForNode(
                    id=node_id, event=expr_to_model(event), timeout_seconds=timeout, next=following
                )
            case ast.If(branches=branches, else_steps=else_steps):
                conditions = tuple(
                    Condition(
                        when=expr_to_model(branch.condition),
                        to=self._sequence(branch.steps, following),
                    )
                    for branch in branches
                )
                otherwise = self._sequence(else_steps or (), following)
                node = BranchNode(id=node_id, conditions=conditions, otherwise=otherwise)
            case ast.ABSplit(test_share=test_share, metric=metric, after=after):
                variants = tuple(
                    Variant(name=branch.name, to=self._sequence(branch.steps, following))
                    for branch in step.branches
                )
                node = ABSplitNode(
                    id=node_id,
                    test_share=test_share.value,
                    holdout_share=Decimal(100) - test_share.value,
                    metric=metric,
                    after_seconds=after.seconds,
                    variants=variants,
                )
            case ast.RandomSplit(branches=split_branches):
                node = RandomSplitNode(
                    id=node_id,
                    branches=tuple(
                        Variant(
                            name=branch.name,
                            share=branch.share.value if branch.share is not None else None,
                            to=self._sequence(branch.steps, following),
                        )
                        for branch in split_branches
                    ),
                )
            case ast.SetAttr(target=target, value=value):
                node = SetNode(
                    id=node_id, attribute=target.dotted, value=expr_to_model(value), next=following
                )
            case ast.Tag(action=action, tag=tag):
                node = TagNode(id=node_id, action=action, tag=tag, next=following)
            case ast.AssignAgent(strategy=strategy):
                node = AssignAgentNode(id=node_id, strategy=strategy, next=following)
            case ast.Notify(channel=channel, target=target):
                node = NotifyNode(id=node_id, channel=channel, target=target, next=following)
            case ast.Enroll(campaign=campaign):
                if campaign not in self.symbols.campaigns:
                    self.error(
                        step.span,
                        E_UNKNOWN_CAMPAIGN,
                        f"unknown campaign `{campaign}`",
                        did_you_mean(campaign, self.symbols.campaigns),
                    )
                node = EnrollNode(id=node_id, campaign=campaign, next=following)
            case ast.Exit(reason=reason):
                node = ExitNode(id=node_id, reason=reason)
            case ast.Placeholder():
                raise AssertionError("placeholders get no node")  # _real() drops them
        self.nodes[index] = node

    # -- templates

    def _use_template(self, step: ast.Send) -> None:
        if step.template not in self.symbols.templates:
            self.error(
                step.template_span,
                E_UNKNOWN_TEMPLATE,
                f"unknown template `{step.template}`",
                did_you_mean(step.template, self.symbols.templates),
            )
            return
        if step.template not in self.template_names:
            self.template_names.append(step.template)

    def _template(self, name: str) -> CompiledTemplate | None:
        cache = self.context.templates
        if name not in cache:
            cache[name] = _TemplateCompiler(self.context, self.symbols.templates[name]).compile()
        return cache[name]

    # -- segments and scores

    def _expressions(self) -> Iterator[ast.Expr]:
        for setting in self.unit.setting(ast.ExprSetting):
            yield setting.expr
        for block in self.unit.triggers:
            trigger = block.trigger
            if isinstance(trigger, ast.EventTrigger):
                if trigger.where is not None:
                    yield trigger.where
                if trigger.fanout is not None:
                    yield trigger.fanout
            elif isinstance(trigger, ast.SegmentEnterTrigger):
                yield ast.Path((trigger.segment,))
            for step in walk_steps(block.steps):
                yield from ast.step_expressions(step)

    def _referenced_segments_and_scores(
        self,
    ) -> tuple[dict[str, CompiledSegment], dict[str, CompiledScore]]:
        segments: dict[str, CompiledSegment] = {}
        scores: dict[str, CompiledScore] = {}
        pending = list(self._expressions())
        while pending:
            for name in _names(pending.pop()):
                if name in self.symbols.segments and name not in segments:
                    declared = self.symbols.segments[name].node
                    segments[name] = CompiledSegment(name=name, expr=expr_to_model(declared.expr))
                    pending.append(declared.expr)
                elif name in self.symbols.scores and name not in scores:
                    score = self.symbols.scores[name].node
                    scores[name] = CompiledScore(
                        name=name, rules=tuple(_score_rule(rule) for rule in score.rules)
                    )
        return dict(sorted(segments.items())), dict(sorted(scores.items()))

    # -- settings

    def _settings(self) -> Settings | None:
        unit = self.unit
        first: dict[str, ast.Setting] = {}
        for setting in unit.settings:
            key = _setting_key(setting)
            if key is not None:
                first.setdefault(key, setting)

        def expr(key: str) -> ast.Expr | None:
            setting = first.get(key)
            return setting.expr if isinstance(setting, ast.ExprSetting) else None

        def string(key: str) -> str | None:
            setting = first.get(key)
            return setting.value if isinstance(setting, ast.StringSetting) else None

        def number(key: str, default: int) -> int:
            setting = first.get(key)
            if not isinstance(setting, ast.NumberSetting):
                return default
            if setting.value != setting.value.to_integral_value():
                self.error(setting.span, E_OUT_OF_RANGE, f"`{key}` must be a whole number")
                return default
            return int(setting.value)

        def moment(key: str) -> str | None:
            setting = first.get(key)
            return _moment_text(setting.moment) if isinstance(setting, ast.DateSetting) else None

        channels_setting = next(unit.setting(ast.ChannelsSetting), None)
        if channels_setting is not None:
            channels = tuple(dict.fromkeys(channels_setting.channels))
        else:
            used = _sent_channels(unit)
            channels = tuple(c for c in CHANNELS if c in used) + tuple(sorted(used - set(CHANNELS)))

        window = next(unit.setting(ast.SendWindowSetting), None)
        zone = next(unit.setting(ast.TimezoneSetting), None)
        budget = next(unit.setting(ast.BudgetSetting), None)
        reenter = next(unit.setting(ast.ReenterSetting), None)
        costs: dict[str, Money] = {}
        for cost in unit.setting(ast.CostSetting):
            for item in cost.items:
                costs.setdefault(item.channel, _money(item.amount))

        audience, exclude, goal = expr("audience"), expr("exclude"), expr("goal")
        before = len(self.context.errors)
        settings = Settings(
            audience=expr_to_model(audience) if audience is not None else None,
            exclude=expr_to_model(exclude) if exclude is not None else None,
            goal=expr_to_model(goal) if goal is not None else None,
            from_=string("from"),
            reply_to=string("reply_to"),
            channels=channels,
            channels_explicit=channels_setting is not None,
            priority=number("priority", DEFAULT_PRIORITY),
            caps=tuple(
                Cap(channel=c.channel, count=c.count, per_seconds=c.per.seconds)
                for c in unit.setting(ast.CapSetting)
            ),
            send_window=SendWindow(
                start=_time_text(window.start),
                end=_time_text(window.end),
                local=window.local,
                days=self._days(window.days, window.span) if window.days else DAY_NAMES,
            )
            if window is not None
            else None,
            timezone=Timezone(zone=zone.zone, fallback=zone.fallback) if zone else None,
            quiet_hours=tuple(
                QuietHours(
                    channel=q.channel,
                    start=_time_text(q.start),
                    end=_time_text(q.end),
                    local=q.local,
                )
                for q in unit.setting(ast.QuietHoursSetting)
            ),
            budget=_money(budget.amount) if budget is not None else None,
            costs=dict(sorted(costs.items())),
            approval=self._approval(first.get("approval")),
            starts=moment("starts"),
            ends=moment("ends"),
            reenter=Reenter(mode="never")
            if reenter is None
            else Reenter(mode="always")
            if reenter.after is None
            else Reenter(mode="after", after_seconds=reenter.after.seconds),
            max_sends=number("max_sends", DEFAULT_MAX_SENDS),
        )
        return settings if len(self.context.errors) == before else None

    def _approval(self, setting: ast.Setting | None) -> Literal["required", "none", "implied"]:
        if not isinstance(setting, ast.NameSetting):
            return "implied"
        if setting.value in APPROVAL_VALUES:
            return cast(Literal["required", "none"], setting.value)
        self.error(
            setting.value_span,
            E_BAD_APPROVAL,
            f"`approval {setting.value}` is not a known approval rule",
            "use `approval required` or `approval none`",
        )
        return "implied"

    def _days(self, days: Sequence[str], span: ast.Span) -> tuple[str, ...]:
        chosen: set[str] = set()
        for day in days:
            if day in _DAYS:
                chosen.update(_DAYS[day])
            else:
                self.error(
                    span,
                    E_UNKNOWN_DAY,
                    f"`{day}` is not a day",
                    did_you_mean(day, _DAYS) or "use monday..sunday, weekdays, weekends or daily",
                )
        return tuple(d for d in DAY_NAMES if d in chosen)


class _TemplateCompiler:
    """Resolves one template: its body files read, locales filled from the default."""

    def __init__(self, context: _Context, declared: Declared[ast.TemplateDecl]) -> None:
        self.context = context
        self.declared = declared
        self.file = declared.file

    def compile(self) -> CompiledTemplate | None:
        decl = self.declared.node
        before = len(self.context.errors)
        default = self._content(decl.content, None, decl.span)
        locales: dict[str, TemplateContentModel] = {}
        for block in decl.locales:
            content = self._content(block.content, default, block.span)
            if content is not None:
                locales.setdefault(block.locale, content)
        if default is None or len(self.context.errors) > before:
            return None
        return CompiledTemplate(
            name=decl.name,
            channel=decl.channel,
            content=default,
            locales=dict(sorted(locales.items())),
        )

    def _content(
        self,
        content: ast.TemplateContent,
        fallback: TemplateContentModel | None,
        span: ast.Span,
    ) -> TemplateContentModel | None:
        body: str | None
        body_file: str | None
        if content.body is not None:
            body, body_file = content.body.value, None
        elif content.body_file is not None:
            body, body_file = self._read(content.body_file), content.body_file.value
        elif fallback is not None:
            body, body_file = fallback.body, fallback.body_file
        else:
            self.context.error(
                self.file,
                span,
                E_NO_BODY,
                f"template `{self.declared.node.name}` has no body",
                'add `body "..."` or `body file "PATH"`',
            )
            return None
        if body is None:
            return None

        def text(value: ast.StringLit | None, inherited: str | None) -> str | None:
            return value.value if value is not None else inherited

        return TemplateContentModel(
            subject=text(content.subject, fallback.subject if fallback else None),
            # A missing preheader stays missing: better none than one in another language.
            preheader=text(content.preheader, None),
            body=body,
            body_file=body_file,
        )

    def _read(self, literal: ast.StringLit) -> str | None:
        path = self.file.path.parent / literal.value
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self.context.error(
                self.file,
                literal.span,
                E_BODY_FILE,
                f'cannot read template body file "{literal.value}": {reason}',
                f"paths are relative to {self.file.path.parent.name or '.'}/, "
                "the folder of the .cadence file",
            )
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.context.error(
                self.file,
                literal.span,
                E_BODY_FILE,
                f'template body file "{literal.value}" is not UTF-8 (byte {exc.start})',
            )
            return None


def _sent_channels(unit: CampaignUnit) -> set[str]:
    return {
        step.channel
        for block in unit.triggers
        for step in walk_steps(block.steps)
        if isinstance(step, ast.Send)
    }


def _setting_key(setting: ast.Setting) -> str | None:
    match setting:
        case ast.NameSetting(key=key) | ast.ExprSetting(key=key) | ast.StringSetting(key=key):
            return key
        case ast.NumberSetting(key=key) | ast.DateSetting(key=key):
            return key
        case _:
            return None


def _names(expr: ast.Expr) -> Iterator[str]:
    """Every single-part name in an expression: candidates for segments and scores."""
    match expr:
        case ast.Path(parts=parts):
            if len(parts) == 1:
                yield parts[0]
        case ast.Call(args=args) | ast.ListLit(items=args):
            for arg in args:
                yield from _names(arg)
        case ast.Unary(operand=operand) | ast.Within(operand=operand):
            yield from _names(operand)
        case ast.Binary(left=left, right=right) | ast.Compare(left=left, right=right):
            yield from _names(left)
            yield from _names(right)
        case _:
            pass


def _score_rule(rule: ast.ScoreRule) -> ScoreRuleModel:
    match rule:
        case ast.ScorePoints(event=event, within=within, points=points, each=each):
            return ScorePointsRule(
                event=expr_to_model(event),
                within_seconds=within.seconds if within else None,
                points=points,
                each=each,
            )
        case ast.ScoreDecay(percent=percent, per=per):
            return ScoreDecayRule(percent=percent.value, per_seconds=per.seconds)


def _money(money: ast.MoneyLit) -> Money:
    return Money(amount=money.amount, currency=money.currency)


def _time_text(time: ast.TimeLit) -> str:
    return f"{time.hour:02d}:{time.minute:02d}"


def _moment_text(moment: ast.DateLit | ast.DateTimeLit) -> str:
    if isinstance(moment, ast.DateTimeLit):
        return moment.value.isoformat(timespec="seconds")
    return moment.value.isoformat()
