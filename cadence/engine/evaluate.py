"""Evaluate a condition or an expression for one contact at one moment.

The dispatch core filters many contacts at once over columns; this module answers the same
questions for a single contact when the engine is at a step (`if`, `goal`, `set`, `wait for`),
at a trigger (`where`, `count`), or re-checking a segment. Both follow one missing-value
rule, SQL's three-valued logic (docs/semantics.md): anything compared with a missing value is
unknown (None), `and`/`or`/`not` combine true, false and unknown as SQL does, and wherever a
decision is needed an unknown condition counts as false.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NamedTuple, TypeAlias

from pydantic import BaseModel

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.symbols import ONCE_PER_MESSAGE
from cadence.engine import delivery
from cadence.engine.clock import read_instant
from cadence.engine.store.database import STORED_INTEGERS

UTC = dt.UTC

Tri: TypeAlias = bool | None
CountOp: TypeAlias = Literal["=", "!=", "<", "<=", ">", ">="]

ENGAGEMENT_KINDS: tuple[str, ...] = ("opened", "clicked", "replied", "bounced", "delivered")
ENGAGEMENT_FLAGS: tuple[str, ...] = ("converted", "unsubscribed")
# The events each engagement function reads, where they are more than its own: a click
# counts as an open; whether a message was delivered depends on its bounces too, and on
# the person's reactions to it (`cadence.engine.delivery`).
_ENGAGEMENT_READS: dict[str, tuple[str, ...]] = {
    "opened": ("opened", "clicked"),
    "delivered": (
        delivery.DELIVERED_EVENT,
        delivery.BOUNCED_EVENT,
        *sorted(delivery.ENGAGEMENT_EVENTS),
    ),
}


def engagement_reads(kind: str) -> tuple[str, ...]:
    """The event names `kind(T)` reads (`opened`: opens and clicks)."""
    return _ENGAGEMENT_READS.get(kind, (kind,))


def count_reads(name: str) -> tuple[str, ...]:
    """The event names `count(name, D)` and `when name count ...` count (`opened`: clicks too)."""
    return engagement_reads(name) if name in ONCE_PER_MESSAGE else (name,)


def message_of(properties: Mapping[str, Any]) -> str | None:
    """The message an event is about (its `send`, else its `message`), if it names one."""
    return _opt_str(properties.get("send") or properties.get("message"))


# Enough digits that money and scores never round in practice; overflow becomes null.
_DECIMALS = decimal.Context(prec=34, Emax=999_999, Emin=-999_999)


class EvaluationError(ValueError):
    """An expression the checker should have refused (unknown function, wrong arguments)."""


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency; amounts in different currencies never compare."""

    amount: Decimal
    currency: str


class ContactEvent(NamedTuple):
    """One event in a contact's history: name, aware instant, properties."""

    name: str
    at: dt.datetime
    properties: Mapping[str, Any]


EventTuple: TypeAlias = tuple[str, dt.datetime, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class EngagementRecord:
    """One tracked reaction to a message: what (opened, clicked ...), to which template, when.

    `message` names the send (its idempotency key) so a click can stand for the open of the
    same message; `campaign` lets step conditions count only the current campaign's messages.
    `outcome` is what a delivery report or a bounce says of the message's delivery
    (`delivery.event_outcome`: delivered, a hard or a soft bounce).
    """

    kind: str
    template: str | None
    at: dt.datetime
    message: str | None = None
    campaign: str | None = None
    outcome: str | None = None

    def __post_init__(self) -> None:
        """Keep the instant in UTC (a naive one is UTC), so it compares with `now`; a
        delivery report or a bounce given no outcome says what its kind does alone (a
        bounce that does not say it is soft is hard)."""
        object.__setattr__(self, "at", _aware(self.at))
        if self.outcome is None:
            object.__setattr__(self, "outcome", delivery.event_outcome(self.kind, {}))


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message sent to the contact by any campaign, for `received(CHANNEL, DUR)`."""

    channel: str
    at: dt.datetime
    template: str | None = None
    campaign: str | None = None

    def __post_init__(self) -> None:
        """Keep the instant in UTC (a naive one is UTC), so it compares with `now`."""
        object.__setattr__(self, "at", _aware(self.at))


@dataclass(frozen=True, slots=True)
class Engagement:
    """A contact's engagement: tracked reactions, and the conversion and unsubscribe flags.

    A flag is set by its boolean or by its instant; the instant (when known) is what score
    decay counts from.
    """

    records: tuple[EngagementRecord, ...] = ()
    converted: bool = False
    converted_at: dt.datetime | None = None
    unsubscribed: bool = False
    unsubscribed_at: dt.datetime | None = None


TriggerEvent: TypeAlias = EventTuple | Mapping[str, Any]


@dataclass(frozen=True)
class EvalContext:
    """Everything an expression may read about one contact at one moment.

    `events` is the contact's history (name, aware instant, properties); only events at or
    before `now` exist for the evaluator. `event` is the event that triggered the flow (or
    the fan-out event), read by `event.FIELD`. `campaign_scope`, when set, limits engagement
    functions at the top level to that campaign's messages; segments and scores always see
    every campaign's.
    """

    now: dt.datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[EventTuple] = ()
    engagement: Engagement = field(default_factory=Engagement)
    event: TriggerEvent | None = None
    segments: Mapping[str, Any] = field(default_factory=dict)
    scores: Mapping[str, Any] = field(default_factory=dict)
    campaigns: frozenset[str] = frozenset()
    sends: Sequence[SentMessage] = ()
    campaign_scope: str | None = None
    _cache: dict[Any, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        """Refuse a naive `now`: every comparison of instants needs one timeline."""
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError(f"now must be timezone-aware, got {self.now.isoformat()}")

    @classmethod
    def from_facts(
        cls,
        *,
        now: dt.datetime,
        attributes: Mapping[str, Any],
        events: Iterable[EventTuple] = (),
        sends: Iterable[tuple[str, str | None, dt.datetime] | SentMessage] = (),
        campaigns: Iterable[str] = (),
        event: TriggerEvent | None = None,
        segments: Mapping[str, Any] | None = None,
        scores: Mapping[str, Any] | None = None,
        campaign_scope: str | None = None,
    ) -> EvalContext:
        """Build a context from the store's shapes: engagement comes from the event history.

        Events named opened, clicked, replied, bounced or delivered, and unsubscribes and
        complaints (which confirm a delivery), are engagement records (their `template`,
        `send` and `campaign` properties say which message); `converted`
        and `unsubscribed` events, or a true attribute of that name, set the flags. Sends are
        `(channel, template, at)` tuples.
        """
        history = sorted(
            (ContactEvent(name, _aware(at), props or {}) for name, at, props in events),
            key=lambda e: e.at,
        )
        records: list[EngagementRecord] = []
        flags: dict[str, dt.datetime] = {}
        for item in history:
            props = item.properties
            outcome = delivery.event_outcome(item.name, props)
            # An unsubscribe or a complaint is no engagement function's, but it confirms
            # that its message was delivered, for `delivered(T)`.
            if item.name in ENGAGEMENT_KINDS or outcome is not None:
                records.append(
                    EngagementRecord(
                        kind=item.name,
                        template=_opt_str(props.get("template")),
                        at=item.at,
                        message=message_of(props),
                        campaign=_opt_str(props.get("campaign")),
                        outcome=outcome,
                    )
                )
            if item.name in ENGAGEMENT_FLAGS and item.name not in flags:
                flags[item.name] = item.at
        engagement = Engagement(
            records=tuple(records),
            converted=attributes.get("converted") is True,
            converted_at=flags.get("converted"),
            unsubscribed=attributes.get("unsubscribed") is True,
            unsubscribed_at=flags.get("unsubscribed"),
        )
        sent = tuple(
            s if isinstance(s, SentMessage) else SentMessage(s[0], _aware(s[2]), s[1])
            for s in sends
        )
        return cls(
            now=now,
            attributes=attributes,
            events=tuple(history),
            engagement=engagement,
            event=event,
            segments=segments or {},
            scores=scores or {},
            campaigns=frozenset(campaigns),
            sends=sent,
            campaign_scope=campaign_scope,
        )

    # -- derived, cached per context ---------------------------------------------------------

    @property
    def now_utc(self) -> dt.datetime:
        """`now` in UTC."""
        return self.now.astimezone(UTC)

    def history(self, name: str) -> list[dt.datetime]:
        """The instants of this contact's `name` events up to now, oldest first."""
        key = ("history", name)
        cached = self._cache.get(key)
        if cached is None:
            cached = [e.at for e in self._events_up_to_now() if e.name == name]
            self._cache[key] = cached
        return list(cached)

    def history_events(self, name: str) -> list[ContactEvent]:
        """This contact's `name` events up to now, oldest first, with their properties."""
        return [e for e in self._events_up_to_now() if e.name == name]

    def _events_up_to_now(self) -> list[ContactEvent]:
        cached = self._cache.get("events")
        if cached is None:
            now = self.now_utc
            cached = sorted(
                (
                    ContactEvent(n, _aware(at), props or {})
                    for n, at, props in self.events
                    if _aware(at) <= now
                ),
                key=lambda e: e.at,
            )
            self._cache["events"] = cached
        return list(cached)

    def engagement_records(self, *, scoped: bool) -> list[EngagementRecord]:
        """Engagement up to now; in the campaign's scope when `scoped` and a scope is set.

        A record that names no campaign (an event pushed without one) is in every scope.
        """
        now = self.now_utc
        scope = self.campaign_scope if scoped else None
        return [
            r
            for r in self.engagement.records
            if _aware(r.at) <= now and (scope is None or r.campaign in (None, scope))
        ]

    def flag_instant(self, name: str) -> dt.datetime | None:
        """When `converted`/`unsubscribed` was recorded, if it was and is not in the future."""
        recorded = {
            "converted": self.engagement.converted_at,
            "unsubscribed": self.engagement.unsubscribed_at,
        }.get(name)
        if recorded is None or _aware(recorded) > self.now_utc:
            return None
        return _aware(recorded)

    def flag(self, name: str) -> bool:
        """The value of the engagement flag `converted` or `unsubscribed`."""
        if name == "converted" and self.engagement.converted:
            return True
        if name == "unsubscribed" and self.engagement.unsubscribed:
            return True
        return self.flag_instant(name) is not None

    def with_event(self, event: TriggerEvent | None) -> EvalContext:
        """The same contact and moment with another trigger event."""
        return dataclasses.replace(self, event=event)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _aware(moment: dt.datetime) -> dt.datetime:
    """An instant in UTC; a naive datetime is taken as UTC, as the store writes them."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------- conversion


_MONEY_TEXT = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s+([A-Z]{3})\s*")


def normalize(raw: Any) -> Any:
    """A stored or JSON value as the evaluator's value: Decimal numbers, UTC instants, tuples.

    bool stays bool; int, float and Decimal become Decimal (NaN is missing); aware datetimes
    go to UTC (naive ones are UTC); lists become tuples; `{"amount", "currency"}` is Money.
    """
    if raw is None or isinstance(raw, bool | str | Money | dt.timedelta | dt.time):
        return raw
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        if math.isnan(raw):
            return None
        return Decimal(repr(raw)) if math.isfinite(raw) else Decimal(raw)
    if isinstance(raw, Decimal):
        return None if raw.is_nan() else raw
    if isinstance(raw, dt.datetime):
        return _aware(raw)
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, list | tuple | set | frozenset):
        return tuple(normalize(item) for item in raw)
    if isinstance(raw, Mapping):
        if set(raw) == {"amount", "currency"}:
            amount = normalize(raw["amount"])
            if isinstance(amount, str):
                amount = _decimal_or_none(amount)
            if isinstance(amount, Decimal) and isinstance(raw["currency"], str):
                return Money(amount, raw["currency"])
        return raw
    return raw


def _decimal_or_none(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    return None if value.is_nan() else value


def to_plain(value: Any) -> Any:
    """An evaluator value as plain JSON data, for writing back with `set`.

    Whole Decimals become int, others float; instants ISO-8601 with Z; dates ISO; Money
    `{"amount": "12.50", "currency": "USD"}`; durations seconds; tuples lists.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        # A whole number the store's JSON cannot hold as an integer is kept as a float, as
        # an imported one is; a stored integer beyond 64 bits failed the whole batch.
        if value.is_finite() and value == value.to_integral_value():
            if int(value) in STORED_INTEGERS:
                return int(value)
        return float(value)
    if isinstance(value, dt.datetime):
        return _aware(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, dt.timedelta):
        return int(value.total_seconds())
    if isinstance(value, tuple | list):
        return [to_plain(item) for item in value]
    return value


def _temporal(value: Any) -> dt.datetime | dt.date | None:
    """A value as an instant or a date; ISO-8601 text is read (dates without a time stay dates)."""
    if isinstance(value, dt.datetime):
        return _aware(value)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                return None
        return read_instant(text)
    return None


def _instant(value: Any) -> dt.datetime | None:
    """A value as an instant: a date is its midnight UTC."""
    moment = _temporal(value)
    if isinstance(moment, dt.datetime):
        return moment
    if isinstance(moment, dt.date):
        return dt.datetime.combine(moment, dt.time(), tzinfo=UTC)
    return None


def _money(value: Any) -> Money | None:
    if isinstance(value, Money):
        return value
    if isinstance(value, str):
        match = _MONEY_TEXT.fullmatch(value)
        if match:
            return Money(Decimal(match.group(1)), match.group(2))
    return None


# ---------------------------------------------------------------------------- comparisons


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime | dt.date):
        return "time"
    if isinstance(value, Money):
        return "money"
    if isinstance(value, dt.timedelta):
        return "duration"
    if isinstance(value, dt.time):
        return "clock"
    if isinstance(value, tuple):
        return "list"
    return "other"


def _comparable(a: Any, b: Any) -> tuple[Any, Any] | None:
    """The two values in one comparable form, or None when they are of different kinds.

    A string meets an instant, a date or money by being read as one; a date meets an instant
    as its midnight UTC; money meets money of the same currency only.
    """
    ka, kb = _kind(a), _kind(b)
    if ka == "string" and kb in ("time", "money"):
        converted = _temporal(a) if kb == "time" else _money(a)
        if converted is None:
            return None
        a, ka = converted, kb
    elif kb == "string" and ka in ("time", "money"):
        converted = _temporal(b) if ka == "time" else _money(b)
        if converted is None:
            return None
        b, kb = converted, ka
    if ka != kb or ka in ("other", "list"):
        return None
    if ka == "time":
        if isinstance(a, dt.datetime) != isinstance(b, dt.datetime):
            return _instant(a), _instant(b)
        return a, b
    if ka == "money":
        if a.currency != b.currency:
            return None
        return a.amount, b.amount
    return a, b


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def compare_values(op: str, a: Any, b: Any) -> Tri:
    """`a OP b` for two evaluator values, three-valued: missing or mismatched kinds are None."""
    if a is None or b is None:
        return None
    if op in ("=", "!=") and isinstance(a, tuple) and isinstance(b, tuple):
        same = _lists_equal(a, b)
        return same if same is None or op == "=" else not same
    pair = _comparable(a, b)
    if pair is None:
        return None
    return _ORDER[op](*pair)


def _lists_equal(a: tuple[Any, ...], b: tuple[Any, ...]) -> Tri:
    if len(a) != len(b):
        return False
    result: Tri = True
    for x, y in zip(a, b, strict=True):
        same = compare_values("=", x, y)
        if same is False:
            return False
        if same is None:
            result = None
    return result


def member(item: Any, container: Any) -> Tri:
    """`item in container` as SQL's `IN`: found is true; else unknown if any element was."""
    if item is None or container is None or not isinstance(container, tuple):
        return None
    unknown = False
    for element in container:
        same = compare_values("=", item, element)
        if same is True:
            return True
        if same is None:
            unknown = True
    return None if unknown else False


def _contains(haystack: Any, needle: Any) -> Tri:
    if haystack is None or needle is None:
        return None
    if isinstance(haystack, tuple):
        return member(needle, haystack)
    if isinstance(haystack, str) and isinstance(needle, str):
        return needle in haystack
    return None


def _startswith(text: Any, prefix: Any) -> Tri:
    if isinstance(text, str) and isinstance(prefix, str):
        return text.startswith(prefix)
    return None


def tri_and(a: Tri, b: Tri) -> Tri:
    """SQL AND: false wins, then unknown."""
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def tri_or(a: Tri, b: Tri) -> Tri:
    """SQL OR: true wins, then unknown."""
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def tri_not(a: Tri) -> Tri:
    """SQL NOT: unknown stays unknown."""
    return None if a is None else not a


def truth(value: Any) -> Tri:
    """A value used as a condition: booleans are themselves, anything else is unknown."""
    return value if isinstance(value, bool) else None


# ---------------------------------------------------------------------------- arithmetic


def _arith(op: str, a: Any, b: Any) -> Any:
    """`+ - * /` with null propagation; impossible combinations and division by zero are null."""
    if a is None or b is None:
        return None
    try:
        with decimal.localcontext(_DECIMALS):
            return _arith_values(op, a, b)
    except (decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, ZeroDivisionError):
        return None
    except (OverflowError, ValueError):
        return None


def _arith_values(op: str, a: Any, b: Any) -> Any:
    ka, kb = _kind(a), _kind(b)
    # ISO text (how the store keeps datetime attributes) does time arithmetic as an instant.
    if ka == "string" and kb in ("duration", "time"):
        a = _temporal(a)
        if a is None:
            return None
        ka = "time"
    if kb == "string" and ka in ("duration", "time"):
        b = _temporal(b)
        if b is None:
            return None
        kb = "time"
    if ka == kb == "number":
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        return None if b == 0 else a / b
    if ka == kb == "string" and op == "+":
        return a + b
    if ka == kb == "money":
        if a.currency != b.currency:
            return None
        if op in ("+", "-"):
            return Money(a.amount + b.amount if op == "+" else a.amount - b.amount, a.currency)
        if op == "/":
            return None if b.amount == 0 else a.amount / b.amount
        return None
    if ka == "money" and kb == "number" and op in ("*", "/"):
        if op == "/" and b == 0:
            return None
        return Money(a.amount * b if op == "*" else a.amount / b, a.currency)
    if ka == "number" and kb == "money" and op == "*":
        return Money(a * b.amount, b.currency)
    if ka == "time" and kb == "duration" and op in ("+", "-"):
        instant = _instant(a)
        assert instant is not None
        return instant + b if op == "+" else instant - b
    if ka == "duration" and kb == "time" and op == "+":
        instant = _instant(b)
        assert instant is not None
        return instant + a
    if ka == kb == "time" and op == "-":
        first, second = _instant(a), _instant(b)
        assert first is not None and second is not None
        return first - second
    if ka == kb == "duration" and op in ("+", "-"):
        return a + b if op == "+" else a - b
    if ka == "duration" and kb == "number" and op in ("*", "/"):
        seconds = Decimal(int(a.total_seconds())) * (b if op == "*" else 1 / b)
        return dt.timedelta(seconds=float(seconds))
    return None


def _negate(value: Any) -> Any:
    if isinstance(value, Decimal):
        return -value
    if isinstance(value, Money):
        return Money(-value.amount, value.currency)
    if isinstance(value, dt.timedelta):
        return -value
    return None


# ---------------------------------------------------------------------------- the evaluator


@dataclass
class _Frame:
    """One evaluation: the context, whether engagement is scoped, segments being evaluated."""

    ctx: EvalContext
    scoped: bool
    active: frozenset[str] = frozenset()


def evaluate(expr: ast.Expr, ctx: EvalContext) -> Tri:
    """A condition's truth for the context's contact: True, False, or None when unknown."""
    return truth(_value(expr, _Frame(ctx, scoped=True)))


def holds(expr: ast.Expr, ctx: EvalContext) -> bool:
    """A decision (if, where, audience, goal, exclude): an unknown condition counts as false."""
    return evaluate(expr, ctx) is True


def value(expr: ast.Expr, ctx: EvalContext) -> Any:
    """The value of any expression (`lead_score + 10`): Decimal, str, bool, instant, Money ..."""
    return _value(expr, _Frame(ctx, scoped=True))


def _literal(expr: ast.Expr) -> tuple[bool, Any]:
    match expr:
        case ast.NumberLit(value=number):
            return True, number
        case ast.StringLit(value=text):
            return True, text
        case ast.BoolLit(value=flag):
            return True, flag
        case ast.DurationLit(seconds=seconds):
            return True, dt.timedelta(seconds=seconds)
        case ast.TimeLit(hour=hour, minute=minute):
            return True, dt.time(hour, minute)
        case ast.DateLit(value=day):
            return True, day
        case ast.DateTimeLit(value=moment):
            return True, _aware(moment)
        case ast.PercentLit(value=percent):
            return True, percent / 100
        case ast.MoneyLit(amount=amount, currency=currency):
            return True, Money(amount, currency)
    return False, None


def _value(expr: ast.Expr, frame: _Frame) -> Any:
    is_literal, literal = _literal(expr)
    if is_literal:
        return literal
    match expr:
        case ast.ListLit(items=items):
            return tuple(_value(item, frame) for item in items)
        case ast.Path(parts=parts):
            return _path(parts, frame)
        case ast.Call():
            return _call(expr, frame)
        case ast.Unary(op="not", operand=operand):
            return tri_not(truth(_value(operand, frame)))
        case ast.Unary(op="-", operand=operand):
            return _negate(_value(operand, frame))
        case ast.Binary(op="and", left=left, right=right):
            first = truth(_value(left, frame))
            if first is False:
                return False
            return tri_and(first, truth(_value(right, frame)))
        case ast.Binary(op="or", left=left, right=right):
            first = truth(_value(left, frame))
            if first is True:
                return True
            return tri_or(first, truth(_value(right, frame)))
        case ast.Binary(op=op, left=left, right=right):
            return _arith(op, _value(left, frame), _value(right, frame))
        case ast.Compare(op=op, left=left, right=right):
            return _compare(op, _value(left, frame), _value(right, frame))
        case ast.Within(operand=operand, duration=duration):
            return within(_value(operand, frame), duration.seconds, frame.ctx.now_utc)
    raise EvaluationError(f"not an expression: {type(expr).__name__}")


def _compare(op: str, left: Any, right: Any) -> Tri:
    if op == "in":
        return member(left, right)
    if op == "not in":
        return tri_not(member(left, right))
    if op == "contains":
        return _contains(left, right)
    if op == "startswith":
        return _startswith(left, right)
    return compare_values(op, left, right)


def within(moment: Any, seconds: int, now: dt.datetime) -> Tri:
    """`T within D`: T lies in the last D, that is now - D <= T <= now; missing is unknown."""
    instant = _instant(moment)
    if instant is None:
        return None
    return now - dt.timedelta(seconds=seconds) <= instant <= now


def _dig(value: Any, parts: Sequence[str]) -> Any:
    """Follow the rest of a dotted path into nested records; a missing step is missing."""
    for part in parts:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _event_properties(event: TriggerEvent | None) -> Mapping[str, Any] | None:
    if event is None:
        return None
    if isinstance(event, Mapping):
        return event
    return event[2]


def _path(parts: tuple[str, ...], frame: _Frame) -> Any:
    ctx = frame.ctx
    root, rest = parts[0], parts[1:]
    if root == "event" and rest:
        return normalize(_dig(_event_properties(ctx.event), rest))
    if root == "contact" and rest:
        return normalize(_dig(ctx.attributes, rest))
    if not rest:
        if root in ctx.segments:
            return _segment(root, frame)
        if root in ctx.scores:
            return score_value(root, ctx)
        if root in ENGAGEMENT_FLAGS:
            return ctx.flag(root)
    return normalize(_dig(ctx.attributes, parts))


def _segment(name: str, frame: _Frame) -> Tri:
    """A segment's truth for the contact, over every campaign's engagement; cycles are unknown."""
    if name in frame.active:
        return None
    ctx = frame.ctx
    key = ("segment", name)
    if key in ctx._cache:
        cached: Tri = ctx._cache[key]
        return cached
    definition = segment_expr(ctx.segments[name])
    inner = _Frame(ctx, scoped=False, active=frame.active | {name})
    result = truth(_value(definition, inner))
    if not frame.active:
        ctx._cache[key] = result
    return result


def segment_expr(definition: Any) -> ast.Expr:
    """A segment definition as an AST expression: AST as is, compiled ones converted."""
    if isinstance(definition, c.CompiledSegment):
        return c.model_to_expr(definition.expr)
    if isinstance(definition, BaseModel):
        return c.model_to_expr(definition)  # type: ignore[arg-type]
    return definition  # type: ignore[no-any-return]


def score_value(name: str, ctx: EvalContext) -> Decimal:
    """A score's value for the contact at `now` (cached per context)."""
    key = ("score", name)
    cached = ctx._cache.get(key)
    if cached is None:
        from cadence.engine.scores import compute_score

        if ("score-active", name) in ctx._cache:
            return Decimal(0)
        ctx._cache[("score-active", name)] = True
        try:
            cached = compute_score(ctx.scores[name], ctx)
        finally:
            del ctx._cache[("score-active", name)]
        ctx._cache[key] = cached
    assert isinstance(cached, Decimal)
    return cached


# ---------------------------------------------------------------------------- functions


def _name_arg(call: ast.Call, index: int) -> str:
    if len(call.args) <= index:
        raise EvaluationError(f"`{call.name}` needs {index + 1} argument(s)")
    arg = call.args[index]
    if not isinstance(arg, ast.Path):
        raise EvaluationError(f"argument {index + 1} of `{call.name}` must be a name")
    return arg.dotted


def _duration_arg(call: ast.Call, index: int) -> int | None:
    if len(call.args) <= index:
        return None
    arg = call.args[index]
    if not isinstance(arg, ast.DurationLit):
        raise EvaluationError(f"argument {index + 1} of `{call.name}` must be a duration")
    return arg.seconds


def _call(call: ast.Call, frame: _Frame) -> Any:
    ctx = frame.ctx
    name = call.name
    if name in ENGAGEMENT_KINDS:
        template = _name_arg(call, 0)
        return engaged(ctx, name, template, scoped=frame.scoped)
    if name == "count":
        event = _name_arg(call, 0)
        return Decimal(count_events(ctx, event, _duration_arg(call, 1)))
    if name in ("last", "first"):
        instants = ctx.history(_name_arg(call, 0))
        if not instants:
            return None
        return instants[-1] if name == "last" else instants[0]
    if name == "in_campaign":
        return _name_arg(call, 0) in ctx.campaigns
    if name == "received":
        return received(ctx, _name_arg(call, 0), _duration_arg(call, 1))
    if name in ENGAGEMENT_FLAGS and not call.args:
        return ctx.flag(name)
    raise EvaluationError(f"unknown function `{name}`")


def engagement_matches(
    kind: str, template: str, records: Iterable[EngagementRecord]
) -> Iterator[EngagementRecord]:
    """Records of `kind` for `template` (or `any`); a click also counts as an open.

    `delivered`: for each message `cadence.engine.delivery` calls delivered (a delivery
    report or the person's reaction, and no hard bounce), the first record that confirmed
    it; a record naming no message is a message of its own.
    """
    if kind == delivery.DELIVERED_EVENT:
        yield from _delivered(template, records)
        return
    kinds = engagement_reads(kind)
    for record in records:
        if record.kind in kinds and (template == "any" or record.template == template):
            yield record


def _delivered(template: str, records: Iterable[EngagementRecord]) -> Iterator[EngagementRecord]:
    """The first confirmation (a delivery report, an open ...) of each of `template`'s
    messages that was delivered."""
    by_message: dict[object, list[EngagementRecord]] = {}
    for index, record in enumerate(records):
        if record.outcome is not None and (template == "any" or record.template == template):
            key = record.message if record.message is not None else index
            by_message.setdefault(key, []).append(record)
    for reports in by_message.values():
        outcomes = {record.outcome for record in reports if record.outcome is not None}
        if delivery.delivery(outcomes) is delivery.Delivery.DELIVERED:
            yield min((r for r in reports if r.outcome in _CONFIRMING), key=lambda r: r.at)


_CONFIRMING = frozenset({delivery.DELIVERED, delivery.ENGAGED})


def engagement_instants(
    kind: str, template: str, records: Sequence[EngagementRecord]
) -> list[dt.datetime]:
    """When each counted engagement happened, oldest first: what scores and `count` count.

    Opens and clicks count once per message (`ONCE_PER_MESSAGE`), at its first report. A
    clicked message counts as opened (clicking implies opening), so its open is at its first
    open or click. A record without a message id is a message of its own. Every recorded
    reply or bounce counts; a delivery once per delivered message, at its first
    confirmation (a delivery report, or the person's open, click or reply), as
    `delivered(T)` reads it (`cadence.engine.delivery`).
    """
    matches = engagement_matches(kind, template, records)
    if kind not in ONCE_PER_MESSAGE:
        return sorted(r.at for r in matches)
    return first_per_message((r.message, r.at) for r in matches)


def first_per_message(reports: Iterable[tuple[str | None, dt.datetime]]) -> list[dt.datetime]:
    """Each message's first report of `(message, instant)` reports, oldest first; a report
    naming no message stands for a message of its own."""
    instants: list[dt.datetime] = []
    first: dict[str, dt.datetime] = {}
    for message, at in reports:
        if message is None:
            instants.append(at)
            continue
        seen = first.get(message)
        if seen is None or at < seen:
            first[message] = at
    instants.extend(first.values())
    return sorted(instants)


def engaged(ctx: EvalContext, kind: str, template: str, *, scoped: bool = False) -> bool:
    """`opened(T)` and friends: any such engagement with `T` (or `any`) up to now."""
    records = ctx.engagement_records(scoped=scoped)
    return next(engagement_matches(kind, template, records), None) is not None


def received(ctx: EvalContext, channel: str, seconds: int | None) -> bool:
    """`received(CHANNEL, DUR)`: any campaign sent on that channel in the last DUR."""
    now = ctx.now_utc
    since = now - dt.timedelta(seconds=seconds) if seconds is not None else None
    return any(
        s.channel == channel and _aware(s.at) <= now and (since is None or _aware(s.at) >= since)
        for s in ctx.sends
    )


def count_events(ctx: EvalContext, name: str, seconds: int | None) -> int:
    """`count(EVENT, DUR)`: the contact's `name` events in the last DUR (all without one).

    Opens and clicks are counted as messages opened or clicked (`engagement_instants`).
    """
    if name in ONCE_PER_MESSAGE:
        instants = engagement_instants(name, "any", ctx.engagement_records(scoped=False))
    else:
        instants = ctx.history(name)
    if seconds is None:
        return len(instants)
    since = ctx.now_utc - dt.timedelta(seconds=seconds)
    return sum(1 for at in instants if at >= since)


# ---------------------------------------------------------------------------- triggers


_COUNT_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def event_where_holds(
    where: ast.Expr,
    event: TriggerEvent,
    ctx: EvalContext | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """An event trigger's `where` for one event: `event.FIELD` reads it; unknown is false.

    Without a context there is no contact (contact attributes read as missing) and `now` is
    the given one, else the event's own instant.
    """
    if ctx is None:
        moment = now or _event_instant(event) or _EPOCH
        ctx = EvalContext(now=moment)
    return holds(where, ctx.with_event(event))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _event_instant(event: TriggerEvent) -> dt.datetime | None:
    at = event.get("at") if isinstance(event, Mapping) else event[1]
    return _instant(at)


def event_count_holds(
    history: Iterable[EventTuple],
    event_name: str,
    op: str,
    count: int,
    within_: dt.timedelta | None,
    where: ast.Expr | None,
    now: dt.datetime,
    ctx: EvalContext | None = None,
) -> bool:
    """`count OP N [within D] [where E]` over a contact's history (which holds the new event).

    Counts the `event_name` events at or before `now`, no older than D, for which `where`
    holds, and compares the count with N. Opens and clicks count as `count(opened, D)`
    counts them: once per message, at its first report that `where` lets through (a click
    is an open too).
    """
    if op not in _COUNT_OPS:
        raise EvaluationError(f"unknown count comparison {op!r}")
    moment = _aware(now)
    since = moment - within_ if within_ is not None else None
    per_message = event_name in ONCE_PER_MESSAGE
    names = count_reads(event_name)
    reports: list[tuple[str | None, dt.datetime]] = []
    for name, at, properties in history:
        instant = _aware(at)
        if name not in names or instant > moment:
            continue
        if where is not None:
            item = ContactEvent(name, instant, properties or {})
            if not event_where_holds(where, item, ctx):
                continue
        reports.append((message_of(properties or {}) if per_message else None, instant))
    instants = first_per_message(reports) if per_message else [at for _, at in reports]
    total = sum(1 for instant in instants if since is None or instant >= since)
    return _COUNT_OPS[op](total, count)


def event_trigger_fires(
    trigger: c.EventTriggerModel | ast.EventTrigger, event: TriggerEvent, ctx: EvalContext
) -> bool:
    """Whether `event` (already in `ctx.events`) fires `when EVENT [count] [within] [where]`.

    The event must be the trigger's, pass `where`, and, with `count OP N`, the contact's
    matching events up to now (the new one included) must satisfy the count. The condition
    is read as a level, not an edge: `count>=3` also holds on the fourth event; enrolling a
    contact once is the runtime's rule.
    """
    if isinstance(trigger, c.EventTriggerModel):
        name = trigger.event
        where = c.model_to_expr(trigger.where) if trigger.where is not None else None
        counted = (trigger.count.op, trigger.count.value) if trigger.count else None
        seconds = trigger.within_seconds
    else:
        name = trigger.event
        where = trigger.where
        counted = (trigger.count.op, trigger.count.count) if trigger.count else None
        seconds = trigger.within.seconds if trigger.within else None
    if not isinstance(event, Mapping) and event[0] != name:
        return False
    if where is not None and not event_where_holds(where, event, ctx):
        return False
    if counted is None:
        return True
    within_ = dt.timedelta(seconds=seconds) if seconds is not None else None
    return event_count_holds(ctx.events, name, counted[0], counted[1], within_, where, ctx.now, ctx)


def fanout_holds(
    expr: ast.Expr,
    attributes: Mapping[str, Any],
    event: TriggerEvent,
    now: dt.datetime,
) -> bool:
    """A fan-out `for contacts where` for one contact and one event; unknown is false."""
    return holds(expr, EvalContext(now=now, attributes=attributes, event=event))


def wait_for_satisfied(target: ast.Expr, ctx: EvalContext, since: dt.datetime) -> bool:
    """Whether a `wait for` target is met: a condition holds, or a named event came since `since`.

    A bare name that is a segment, score or engagement flag is a condition; any other bare
    name is an event name, met by such an event at or after `since` and at or before now,
    other than the event that started the journey (`when purchase { wait for purchase ...`
    waits for the next one). An event at the very instant the wait began counts: it came
    with the step (a purchase pushed beside the signup that started the journey, or with
    the simulated clock standing still), and instants cannot order the two.
    """
    if isinstance(target, ast.Path) and len(target.parts) == 1:
        name = target.parts[0]
        if name not in ctx.segments and name not in ctx.scores and name not in ENGAGEMENT_FLAGS:
            start = _aware(since)
            came = [at for at in ctx.history(name) if at >= start]
            started = _trigger_instant(ctx.event, name)
            if started is not None and started in came:
                came.remove(started)
            return bool(came)
    return holds(target, ctx)


def _trigger_instant(event: TriggerEvent | None, name: str) -> dt.datetime | None:
    """When the journey's trigger event happened, if it is a `name` event."""
    if event is None:
        return None
    named = event.get("name") if isinstance(event, Mapping) else event[0]
    return _event_instant(event) if named == name else None


# ---------------------------------------------------------------------------- campaigns


def segments_of(campaign: c.CompiledCampaign) -> dict[str, ast.Expr]:
    """A compiled campaign's segments as AST expressions, for `EvalContext.segments`."""
    return {name: c.model_to_expr(s.expr) for name, s in campaign.segments.items()}
