"""Select many contacts at once through the dispatch core: audiences, segment entry, fan-out.

The per-contact evaluator answers one contact at a time; selecting an audience or matching a
fan-out event against every contact is the engine's heaviest query, so it goes to the
segment filter (the Rust core, or its Python twin) over an Arrow table of the attributes the
expression reads. `count(EVENT, DUR)` is a column of that table too when the caller gives
each contact's evaluator context: each value is the evaluator's own count
(`evaluate.count_events`), so opens and clicks count once per message in the filter as in
the evaluator (docs/semantics.md). An expression the filter cannot run (engagement
functions, `last`/`first`, counts without the contacts' histories, values whose types the
filter does not take) is answered by the evaluator instead, row by row, with the same
result: both follow the SQL null rule.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadence.dispatch.expr import Expr, to_dict
from cadence.dsl import ast
from cadence.engine.clock import read_instant
from cadence.engine.evaluate import ENGAGEMENT_FLAGS, EvalContext, count_events

# The dispatch core (numpy, Arrow) is imported when a selection runs: a process that never
# selects (a dry-run of a campaign without audience) never loads it.
if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from cadence.dispatch.filter import Backend

_ISO_INSTANT = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which contacts matched, and whether the dispatch core (not the fallback) decided it."""

    contact_ids: list[str]
    vectorised: bool


def select(
    expr: ast.Expr,
    contacts: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    now: dt.datetime,
    segments: Mapping[str, ast.Expr] | None = None,
    event: Mapping[str, Any] | None = None,
    fallback: Callable[[str, Mapping[str, Any]], bool],
    backend: Backend | None = None,
    context: Callable[[str], EvalContext] | None = None,
    scores: Collection[str] = (),
) -> Selection:
    """The ids of `contacts` (id, attributes) for which `expr` holds now.

    `fallback(contact_id, attributes)` answers for one contact when the filter cannot.
    The `converted` and `unsubscribed` flags are read from the attributes as strict
    booleans, so callers put there what the contact's events say (see `with_flags`).
    `context(contact_id)`, when given, is the evaluator's context of the contact at `now`
    (the one `fallback` reads): the filter's `count(EVENT, DUR)` columns are counted from
    it; without it an expression with a count goes to `fallback`. `scores` names the
    campaign's scores: a bare name among them is a score, which no attribute holds, so an
    expression that reads one (itself or through a segment) goes to `fallback`.
    """
    from cadence.dispatch import ExprTypeError, filter_contacts

    ids = [contact_id for contact_id, _ in contacts]
    lowered, counts = _lower(expr, segments or {})
    if context is None:
        counts = {}
    if lowered is not None and _readable(lowered, counts, scores):
        computed = _count_columns(counts, ids, context) if context is not None else {}
        built = _table(lowered, [attributes for _, attributes in contacts], computed)
        if built is not None and not _compares_texts(lowered, built[1]):
            table = built[0]
            try:
                mask = filter_contacts(
                    table, lowered, now=now, event=_event_fields(event), backend=backend
                )
            except (ExprTypeError, TypeError, ValueError):
                pass
            else:
                return Selection([i for i, keep in zip(ids, mask, strict=True) if keep], True)
    return Selection([i for i, attributes in contacts if fallback(i, attributes)], False)


def with_flags(attributes: Mapping[str, Any], flags: Mapping[str, bool]) -> dict[str, Any]:
    """Attributes with the engagement flags (`converted`, `unsubscribed`) set as the events say."""
    merged = dict(attributes)
    for name in ENGAGEMENT_FLAGS:
        merged[name] = attributes.get(name) is True or bool(flags.get(name))
    return merged


def _lower(
    expr: ast.Expr, segments: Mapping[str, ast.Expr]
) -> tuple[Expr | None, dict[str, tuple[str, int | None]]]:
    """The filter's expression and the count columns it reads; None when it cannot run it."""
    from cadence.dispatch.lower import LoweringError, lower_counted

    try:
        return lower_counted(expr, segments=dict(segments))
    except (LoweringError, TypeError, ValueError):
        return None, {}


def _readable(expr: Expr, counts: Mapping[str, object], scores: Collection[str]) -> bool:
    """Whether the filter can have every column `expr` reads: attributes, and the counts
    it is given the events for. Other columns computed from events or engagement (their
    names hold `__`: `opened__T`, `last__EVENT` ...) are not built, nor are scores (the
    contacts' attributes hold none): the evaluator answers."""
    return all(
        ("__" not in name or name in counts) and name not in scores for name in columns_of(expr)
    )


def _count_columns(
    counts: Mapping[str, tuple[str, int | None]],
    ids: Sequence[str],
    context: Callable[[str], EvalContext],
) -> dict[str, list[int]]:
    """Each count column's values, one per contact: the evaluator's `count(EVENT, DUR)`."""
    if not counts:
        return {}
    contexts = [context(contact_id) for contact_id in ids]
    return {
        column: [count_events(ctx, event, seconds) for ctx in contexts]
        for column, (event, seconds) in counts.items()
    }


def columns_of(expr: Expr) -> set[str]:
    """The contact columns an IR expression reads."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("op") == "col":
                found.add(str(node["name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(to_dict(expr))
    return found


def _table(
    expr: Expr, rows: Sequence[Mapping[str, Any]], computed: Mapping[str, Sequence[int]]
) -> tuple[pa.Table, frozenset[str]] | None:
    """An Arrow table of the columns `expr` reads (`_readable`), and the names of those read
    from ISO text as instants; None if a column has no filter type. `computed` holds the
    count columns counted from the contacts' events."""
    import pyarrow as pa

    names = sorted(columns_of(expr))
    arrays: dict[str, pa.Array] = {}
    texts: set[str] = set()
    for name in names:
        if name in computed:
            arrays[name] = pa.array(computed[name], pa.int64())
            continue
        if name in ENGAGEMENT_FLAGS:
            # The evaluator never leaves these unknown: not recorded means false.
            arrays[name] = pa.array([row.get(name) is True for row in rows], pa.bool_())
            continue
        values = [_plain(row.get(name)) for row in rows]
        read = _instants(values)
        if read is not values:
            texts.add(name)
        try:
            arrays[name] = pa.array(read)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None
    if not arrays:
        return pa.table({"__rows": pa.nulls(len(rows), pa.bool_())}), frozenset()
    return pa.table(arrays), frozenset(texts)


def _compares_texts(expr: Expr, texts: Collection[str]) -> bool:
    """Whether `expr` compares two of the columns read from ISO text as instants: the
    evaluator compares two texts as texts (docs/semantics.md), which only it answers."""

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("op") == "cmp" and all(
                side.get("op") == "col" and side.get("name") in texts
                for side in (node["left"], node["right"])
            ):
                return True
            return any(walk(value) for value in node.values())
        if isinstance(node, list):
            return any(walk(item) for item in node)
        return False

    return bool(texts) and walk(to_dict(expr))


def _plain(value: Any) -> Any:
    """JSON attribute values as the filter takes them (lists of scalars, not tuples)."""
    if isinstance(value, tuple):
        return list(value)
    return value


def _instants(values: list[Any]) -> list[Any]:
    """ISO 8601 text in a column that holds nothing else becomes instants, as the evaluator
    reads such text when compared with a time."""
    present = [v for v in values if v is not None]
    if not present or not all(isinstance(v, str) and _ISO_INSTANT.match(v) for v in present):
        return values
    return [None if v is None else read_instant(v) for v in values]


def _event_fields(event: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The fan-out event's fields by the names the filter reads them by.

    `event.listing.city` is lowered to the field `listing.city`, so a nested record's
    fields are given by their dotted paths; a record itself is kept, and the plan refuses
    it (the evaluator answers: a record compares with nothing). A property whose own name
    holds a dot is no path the evaluator follows, so it is left out.
    """
    if event is None:
        return None
    fields: dict[str, Any] = {}

    def add(prefix: str, record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if "." in str(key):
                continue
            fields[f"{prefix}{key}"] = value if isinstance(value, Mapping) else _plain(value)
            if isinstance(value, Mapping):
                add(f"{prefix}{key}.", value)

    add("", event)
    return fields
