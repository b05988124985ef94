"""Lower Cadence DSL expressions (`cadence.dsl.ast`) to the segment-filter IR the backends run.

The contacts table the engine builds carries, besides contact attributes and scores, the
precomputed columns that functions read (names from the helpers below):

- `count(EVENT, DUR)` -> int column `event_count_column(EVENT, DUR_us)` (`count(EVENT)`: all time),
  which `lower_counted` lists; the engine fills it with the evaluator's own count
  (`cadence.engine.evaluate.count_events`: opens and clicks once per message), so the filter
  and the evaluator agree;
- `last(EVENT)` / `first(EVENT)` -> timestamp columns `last__EVENT` / `first__EVENT`;
- `opened(T)`, `clicked(T)`, `replied(T)`, `bounced(T)`, `delivered(T)` -> bool `opened__T`...;
- `in_campaign(C)` -> bool `in_campaign__C`; `received(CHANNEL, DUR)` -> bool
  `received__CHANNEL__{DUR_us}us`; bare `converted` / `unsubscribed` are the bool columns of
  those flags, which the engine sets from the contact's events as well as its attributes.

`contact.X` and bare `X` are the column X (a bare name that is a segment inlines that segment),
except `contact.converted` / `contact.unsubscribed`: the stored attribute alone, which may be
missing or not a boolean where the flag column is always one, so lowering refuses them.
`event.X` is a field of the fan-out event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, tzinfo
from decimal import Decimal

from cadence.dispatch import expr as ir
from cadence.dispatch.caps import CapRule
from cadence.dsl import ast
from cadence.dsl.symbols import ENGAGEMENT_FLAGS

ENGAGEMENT_FUNCTIONS = ("opened", "clicked", "replied", "bounced", "delivered")
SECOND_US = 1_000_000


class LoweringError(ValueError):
    """An expression the filter cannot evaluate; carries the offending node's span."""

    def __init__(self, message: str, span: ast.Span | None = None) -> None:
        where = f"{span.file}:{span.line}:{span.column}: " if span is not None else ""
        super().__init__(where + message)
        self.span = span


def engagement_column(function: str, *args: str) -> str:
    """The precomputed bool column behind `opened(T)`, `in_campaign(C)`, `received(CH, DUR)`..."""
    return "__".join((function, *args))


def event_time_column(function: str, event: str) -> str:
    """The precomputed timestamp column behind `last(EVENT)` / `first(EVENT)`."""
    return f"{function}__{event}"


def cap_rule(setting: ast.CapSetting) -> CapRule:
    """`cap email 3 per 7d` as a `CapRule` for `FrequencyCaps`."""
    return CapRule(setting.channel, setting.count, setting.per.seconds * SECOND_US)


class _Lowerer:
    def __init__(self, segments: Mapping[str, ast.Expr], tz: tzinfo) -> None:
        self.segments = segments
        self.tz = tz
        self.expanding: list[str] = []
        # Every `count(EVENT[, DUR])` lowered: its column -> (EVENT, DUR in seconds or None).
        self.counts: dict[str, tuple[str, int | None]] = {}
        # The columns read as contact attributes, so that none is mistaken for a count.
        self.attributes: set[str] = set()

    # conditions -------------------------------------------------------------------------
    def condition(self, e: ast.Expr) -> ir.Expr:
        match e:
            case ast.Binary(op="and" | "or" as op):
                items = self._flatten(e, op)
                lowered = tuple(self.condition(i) for i in items)
                return ir.And(lowered) if op == "and" else ir.Or(lowered)
            case ast.Unary(op="not", operand=operand):
                return ir.Not(self.condition(operand))
            case ast.Compare(op=op, left=left, right=right):
                return self.compare(op, left, right, e.span)
            case ast.Within(operand=operand, duration=duration):
                return ir.Within(self.operand(operand), duration.seconds * SECOND_US)
            case ast.BoolLit(value=value):
                return ir.Lit(value)
            case ast.Path(parts=parts) if len(parts) == 1 and parts[0] in self.segments:
                return self.segment(parts[0], e.span)
            case ast.Path():
                return ir.Truthy(self.operand(e))
            case ast.Call(name=name, args=args):
                return self.predicate_call(name, args, e.span)
        raise LoweringError(f"not a condition: {type(e).__name__}", getattr(e, "span", None))

    @staticmethod
    def _flatten(e: ast.Expr, op: str) -> list[ast.Expr]:
        if isinstance(e, ast.Binary) and e.op == op:
            return _Lowerer._flatten(e.left, op) + _Lowerer._flatten(e.right, op)
        return [e]

    def segment(self, name: str, span: ast.Span) -> ir.Expr:
        if name in self.expanding:
            cycle = " -> ".join([*self.expanding, name])
            raise LoweringError(f"segment refers to itself: {cycle}", span)
        self.expanding.append(name)
        try:
            return self.condition(self.segments[name])
        finally:
            self.expanding.pop()

    def compare(self, op: str, left: ast.Expr, right: ast.Expr, span: ast.Span) -> ir.Expr:
        a, b = self.operand(left), self.operand(right)
        if op in ("=", "!=", "<", "<=", ">", ">="):
            return ir.Cmp(op, a, b)  # type: ignore[arg-type]
        if op == "in":
            return ir.In(a, b)
        if op == "not in":
            return ir.Not(ir.In(a, b))
        if op == "contains":
            return ir.Contains(a, b)
        if op == "startswith":
            return ir.StartsWith(a, b)
        raise LoweringError(f"unsupported comparison {op!r}", span)

    def predicate_call(self, name: str, args: tuple[ast.Expr, ...], span: ast.Span) -> ir.Expr:
        if name in ENGAGEMENT_FUNCTIONS or name == "in_campaign":
            return ir.Truthy(ir.Col(engagement_column(name, self.name_arg(args, 0, span))))
        if name == "received":
            channel = self.name_arg(args, 0, span)
            if len(args) == 2 and isinstance(args[1], ast.DurationLit):
                return ir.Truthy(
                    ir.Col(engagement_column(name, channel, f"{args[1].seconds * SECOND_US}us"))
                )
            return ir.Truthy(ir.Col(engagement_column(name, channel)))
        if name in ENGAGEMENT_FLAGS and not args:
            return ir.Truthy(ir.Col(name))
        raise LoweringError(f"`{name}(...)` is not a condition", span)

    # operands ---------------------------------------------------------------------------
    @staticmethod
    def name_arg(args: tuple[ast.Expr, ...], i: int, span: ast.Span) -> str:
        if len(args) <= i or not isinstance(args[i], ast.Path):
            raise LoweringError("expected a name argument", span)
        arg = args[i]
        assert isinstance(arg, ast.Path)
        return arg.dotted

    def operand(self, e: ast.Expr) -> ir.Operand:
        match e:
            case ast.Path(parts=parts):
                if parts[0] == "event" and len(parts) > 1:
                    return ir.EventField(".".join(parts[1:]))
                if parts[0] == "contact" and len(parts) > 1:
                    if len(parts) == 2 and parts[1] in ENGAGEMENT_FLAGS:
                        raise LoweringError(
                            f"`{e.dotted}` is the stored attribute, not the flag column", e.span
                        )
                    return self.attribute(".".join(parts[1:]))
                if len(parts) == 1 and parts[0] in self.segments:
                    raise LoweringError(f"segment {parts[0]!r} is a condition, not a value", e.span)
                return self.attribute(".".join(parts))
            case ast.Call(name="count", args=args):
                event = self.name_arg(args, 0, e.span)
                if len(args) == 1:
                    seconds = None
                elif len(args) == 2 and isinstance(args[1], ast.DurationLit):
                    seconds = args[1].seconds
                else:
                    raise LoweringError("count(EVENT[, DURATION])", e.span)
                micros = seconds * SECOND_US if seconds is not None else None
                column = ir.event_count_column(event, micros)
                self.counts[column] = (event, seconds)
                return ir.Col(column)
            case ast.Call(name="last" | "first" as name, args=args):
                return ir.Col(event_time_column(name, self.name_arg(args, 0, e.span)))
            case ast.ListLit(items=items):
                return ir.Lit(tuple(self.scalar(i) for i in items))
            case _:
                return ir.Lit(self.scalar(e))

    def attribute(self, name: str) -> ir.Col:
        self.attributes.add(name)
        return ir.Col(name)

    def scalar(self, e: ast.Expr) -> ir.Scalar:
        match e:
            case ast.NumberLit(value=value):
                return _number(value)
            case ast.Unary(op="-", operand=ast.NumberLit(value=value)):
                return _number(-value)
            case ast.StringLit(value=value):
                return value
            case ast.BoolLit(value=value):
                return value
            case ast.DateTimeLit(value=value):
                moment = value if value.tzinfo else value.replace(tzinfo=self.tz)
                return ir.Timestamp.from_datetime(moment)
            case ast.DateLit(value=value):
                return ir.Timestamp.from_datetime(datetime.combine(value, time(0), self.tz))
        raise LoweringError(
            f"{type(e).__name__} cannot be used as a value in a condition",
            getattr(e, "span", None),
        )


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def lower(
    e: ast.Expr,
    *,
    segments: Mapping[str, ast.Expr] | None = None,
    tz: tzinfo = UTC,
) -> ir.Expr:
    """Lower a DSL condition to the filter IR; `segments` maps names to their expressions."""
    return _Lowerer(segments or {}, tz).condition(e)


def lower_counted(
    e: ast.Expr,
    *,
    segments: Mapping[str, ast.Expr] | None = None,
    tz: tzinfo = UTC,
) -> tuple[ir.Expr, dict[str, tuple[str, int | None]]]:
    """`lower`, and the `count(EVENT, DUR)` columns the result reads: column -> (EVENT, DUR
    in seconds, None for `count(EVENT)`), so the engine knows what to fill each one with.

    Raises LoweringError, too, where an attribute has a count column's name
    (`contact.count__x` next to `count(x)`): one column cannot hold both.
    """
    lowerer = _Lowerer(segments or {}, tz)
    lowered = lowerer.condition(e)
    clash = sorted(lowerer.attributes & lowerer.counts.keys())
    if clash:
        raise LoweringError(f"attribute {clash[0]!r} has the name of a count column")
    return lowered, dict(lowerer.counts)


def program_segments(program: ast.Program) -> dict[str, ast.Expr]:
    """The `segment NAME = EXPR` declarations of a parsed program, by name."""
    return {d.name: d.expr for d in program.declarations if isinstance(d, ast.SegmentDecl)}
