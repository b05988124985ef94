"""Names inside conditions: functions, their arguments, segments, scores and contact attributes.

A bare name in an expression is a segment, a score, an engagement flag (`converted`,
`unsubscribed`) or a contact attribute. Without a `schema contact { }` block any other name
is taken to be a contact attribute, so it is allowed; with a schema it must be declared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext
from cadence.dsl.symbols import (
    AUDIENCE_FUNCTIONS,
    CHANNELS,
    CONTACT_FIELDS,
    ENGAGEMENT_FLAGS,
    ENGAGEMENT_FUNCTIONS,
    EVENT_FUNCTIONS,
)
from cadence.errors import did_you_mean, typo_of

# How many arguments each known function takes, and what they are, for error messages.
FUNCTION_SIGNATURES: dict[str, tuple[int, str]] = {
    **{name: (1, f"{name}(TEMPLATE or any)") for name in ENGAGEMENT_FUNCTIONS},
    "count": (2, "count(EVENT, DURATION)"),
    "last": (1, "last(EVENT)"),
    "first": (1, "first(EVENT)"),
    "in_campaign": (1, "in_campaign(CAMPAIGN)"),
    "received": (2, "received(CHANNEL, DURATION)"),
}
assert set(FUNCTION_SIGNATURES) == {*ENGAGEMENT_FUNCTIONS, *EVENT_FUNCTIONS, *AUDIENCE_FUNCTIONS}

# Fields every contact has, whether or not a schema declares them.
STANDARD_CONTACT_FIELDS = CONTACT_FIELDS

# Path roots that are not contact attributes: the triggering event's fields.
EVENT_ROOT = "event"
CONTACT_ROOT = "contact"


def subexpressions(expr: ast.Expr) -> Iterator[ast.Expr]:
    """`expr` and every expression inside it, parents first."""
    yield expr
    match expr:
        case ast.ListLit(items=items):
            for item in items:
                yield from subexpressions(item)
        case ast.Call(args=args):
            for arg in args:
                yield from subexpressions(arg)
        case ast.Unary(operand=operand) | ast.Within(operand=operand):
            yield from subexpressions(operand)
        case ast.Binary(left=left, right=right) | ast.Compare(left=left, right=right):
            yield from subexpressions(left)
            yield from subexpressions(right)
        case _:
            pass


def bare_names(expr: ast.Expr) -> Iterator[ast.Path]:
    """Every single-part path of `expr` that names something (not a function's argument)."""
    match expr:
        case ast.Path(parts=parts) if len(parts) == 1:
            yield expr
        case ast.Call():
            return
        case ast.ListLit(items=items):
            for item in items:
                yield from bare_names(item)
        case ast.Unary(operand=operand) | ast.Within(operand=operand):
            yield from bare_names(operand)
        case ast.Binary(left=left, right=right) | ast.Compare(left=left, right=right):
            yield from bare_names(left)
            yield from bare_names(right)
        case _:
            return


def check_expression(ctx: CheckContext, expr: ast.Expr) -> None:
    """Check every name and call in a condition, audience, goal or segment."""
    match expr:
        case ast.Path():
            check_path(ctx, expr)
        case ast.Call():
            check_call(ctx, expr)
        case ast.ListLit(items=items):
            for item in items:
                check_expression(ctx, item)
        case ast.Unary(operand=operand) | ast.Within(operand=operand):
            check_expression(ctx, operand)
        case ast.Compare(left=left, right=right):
            check_expression(ctx, left)
            check_expression(ctx, right)
            _warn_quoted_number(ctx, expr)
        case ast.Binary(left=left, right=right):
            check_expression(ctx, left)
            check_expression(ctx, right)
        case _:
            pass


ORDERING = frozenset({"<", "<=", ">", ">="})


def _warn_quoted_number(ctx: CheckContext, compare: ast.Compare) -> None:
    """`lead_score > "50"`: a number in quotes is text, and text never compares with a number
    (docs/language.md), so the condition is false for every contact whose score is a
    number (W311). Equality with quoted digits (`zip = "02139"`) is left alone: codes are
    text on purpose; an ordering of them is not.
    """
    if compare.op not in ORDERING:
        return
    for side in (compare.left, compare.right):
        if isinstance(side, ast.StringLit) and _NUMBER_TEXT.fullmatch(side.value.strip()):
            ctx.warning(
                side.span,
                "W311",
                f'"{side.value}" is text, not a number: `{compare.op}` with it is never true for'
                " a number",
                f"write the number without quotes: `{side.value.strip()}`",
            )


_NUMBER_TEXT = re.compile(r"[-+]?\d+(\.\d+)?")


def known_bare_names(ctx: CheckContext) -> set[str]:
    """Names a bare word in an expression may stand for, the schema's attributes included."""
    symbols = ctx.symbols
    return {
        *symbols.segments,
        *symbols.scores,
        *symbols.schema,
        *STANDARD_CONTACT_FIELDS,
        *ENGAGEMENT_FLAGS,
    }


def check_path(ctx: CheckContext, path: ast.Path) -> None:
    """A name or dotted path: `event.x` needs an event; with a schema, attributes are declared."""
    parts = path.parts
    if parts[0] == EVENT_ROOT and len(parts) > 1:
        if not ctx.event_in_scope:
            ctx.error(
                path.span,
                "E116",
                f"`{path.dotted}`: there is no event here",
                "event fields exist in a `when EVENT` trigger: its `where`, its "
                "`for contacts where` and its steps",
            )
        return
    if parts[0] == CONTACT_ROOT and len(parts) > 1:
        check_attribute(ctx, parts[1], ctx.word_span(path.span, parts[1]))
        return
    if not ctx.symbols.has_schema:
        _warn_near_miss(ctx, path)
        _warn_null_word(ctx, path)
        return
    name = parts[0]
    if name in known_bare_names(ctx):
        return
    span = path.span if len(parts) == 1 else ctx.word_span(path.span, name)
    hint = did_you_mean(name, known_bare_names(ctx))
    if hint is None and name in FUNCTION_SIGNATURES:
        hint = f"`{name}` is a function: {FUNCTION_SIGNATURES[name][1]}"
    ctx.error(
        span,
        "E108",
        f"`{name}` is not a segment, a score or a contact attribute of the schema",
        hint or "declare it in `schema contact { }`",
    )


def _warn_near_miss(ctx: CheckContext, path: ast.Path) -> None:
    """Without a schema, a bare word one typo away from a segment or score is suspect.

    `audience engagd` reads the contact attribute `engagd`, which nobody has: unknown, so
    the audience is empty and nothing says why. Attributes are any name without a schema,
    so this is a warning, silenced by fixing the name or by declaring the attribute.
    """
    name = path.parts[0]
    if len(path.parts) > 1 or name in known_bare_names(ctx):
        return
    # `newsletter_opt_in` beside `segment newsletter_subscribers` is a real attribute: a
    # typo is an edit or two, not a shared prefix.
    match = typo_of(name, {*ctx.symbols.segments, *ctx.symbols.scores})
    if match is None:
        return
    kind = "segment" if match in ctx.symbols.segments else "score"
    ctx.warning(
        path.span,
        "W305",
        f"`{name}` is not a segment or a score, so it is read as a contact attribute",
        f"did you mean the {kind} `{match}`? (if `{name}` is an attribute, declare it in "
        "`schema contact { }`)",
    )


# Words other languages use for "no value". The language has none: a bare word is a contact
# attribute, and one that nobody has compares as unknown, so `city != null` never holds.
NULL_WORDS = frozenset({"null", "none", "nil", "undefined"})


def _warn_null_word(ctx: CheckContext, path: ast.Path) -> None:
    """Without a schema, `null` (`none`, `nil`, `undefined`) is read as a contact attribute.

    `if city != null` then compares with an attribute nobody has: unknown, so false for
    every contact, with or without a city, and nothing says why. With a schema it is E108.
    """
    name = path.parts[0]
    if len(path.parts) > 1 or name not in NULL_WORDS or name in known_bare_names(ctx):
        return
    ctx.warning(
        path.span,
        "W307",
        f"`{name}` is read as a contact attribute named {name}, not as a missing value: "
        "a comparison with it is never true",
        "the language has no null: any comparison with a missing value is unknown (false); "
        'to target contacts who lack a value, record one (`budget_status = "not_given"`)',
    )


# Where `warn_computed_attribute` found the name: read in a condition, read in a template's
# text, or written by a `set` step.
READ, TEMPLATE, SET = "read", "template", "set"


def warn_computed_attribute(
    ctx: CheckContext, name: str, span: ast.Span, *, use: str = READ, where: str = ""
) -> None:
    """A score's or a segment's name used as a stored attribute the schema does not declare
    (W309): `contact.NAME` read in a condition or a template, or `set NAME = ...`.

    `contact.` spells a stored attribute, so `contact.engagement >= 40` compares an
    attribute nobody has (unknown: false for everyone), `{{ contact.engagement }}` fails
    every send, and `set engagement = 50` stores a value the bare name never reads (it
    reads the score); a score or segment is computed and read by its bare name.
    """
    if name in ctx.symbols.schema or name in STANDARD_CONTACT_FIELDS:
        return
    kind = _computed_kind(ctx, name)
    if kind is None:
        return
    if use == TEMPLATE:
        message = (
            f"`contact.{name}`{where} reads a stored contact attribute, but `{name}` is a "
            f"{kind}: templates see stored attributes only, so it is undefined when the message "
            "renders"
        )
        hint = (
            f"store it first with a step `set {name}_now = {name}`, then use `contact.{name}_now`"
        )
    elif use == SET:
        message = (
            f"`set {name}` stores a contact attribute that the {kind} `{name}` hides: `{name}`"
            f" in a condition reads the {kind}, never the value set"
        )
        hint = f"store it under a name of its own, e.g. `set {name}_override = ...`"
    else:
        message = (
            f"`contact.{name}` reads a stored contact attribute, but `{name}` is a {kind}: "
            "nobody has that attribute, so a condition on it never holds"
        )
        hint = f"write the {kind} by its name, without `contact.`: `{name}`"
    ctx.warning(span, "W309", message, hint)


def _computed_kind(ctx: CheckContext, name: str) -> str | None:
    """`score` or `segment` when `name` is one (computed, read by its bare name), else None."""
    symbols = ctx.symbols
    return "score" if name in symbols.scores else "segment" if name in symbols.segments else None


def check_attribute(
    ctx: CheckContext, name: str, span: ast.Span, *, use: str = READ, where: str = ""
) -> None:
    """`contact.NAME` or `set NAME`: with a schema, NAME must be one of its attributes; a
    score's or segment's name used so is named (`warn_computed_attribute`)."""
    if is_contact_attribute(ctx, name):
        warn_computed_attribute(ctx, name, span, use=use, where=where)
        return
    kind = _computed_kind(ctx, name)
    ctx.error(
        span,
        "E108",
        f"`{name}` is not a contact attribute of the schema",
        (f"`{name}` is a {kind}: write it by its name, without `contact.`" if kind else None)
        or did_you_mean(name, [*ctx.symbols.schema, *STANDARD_CONTACT_FIELDS])
        or "declare it in `schema contact { }`",
    )


def is_contact_attribute(ctx: CheckContext, name: str) -> bool:
    """True without a schema, or when the schema or the standard contact fields have `name`."""
    symbols = ctx.symbols
    return not symbols.has_schema or name in symbols.schema or name in STANDARD_CONTACT_FIELDS


def check_call(ctx: CheckContext, call: ast.Call) -> None:
    """A function call: known function, right number of arguments, arguments that exist."""
    name_span = ctx.word_span(call.span, call.name)
    if call.name not in FUNCTION_SIGNATURES:
        if call.name in ENGAGEMENT_FLAGS:
            hint: str | None = f"`{call.name}` is a flag: write it without parentheses"
        else:
            hint = did_you_mean(call.name, FUNCTION_SIGNATURES)
        known = ", ".join(sorted(FUNCTION_SIGNATURES))
        ctx.error(
            name_span,
            "E105",
            f"unknown function `{call.name}`",
            hint or f"known functions: {known}",
        )
        return
    arity, signature = FUNCTION_SIGNATURES[call.name]
    if len(call.args) != arity:
        plural = "argument" if arity == 1 else "arguments"
        ctx.error(
            call.span,
            "E106",
            f"`{call.name}` takes {arity} {plural}, not {len(call.args)}",
            f"write {signature}",
        )
        return
    if call.name in ENGAGEMENT_FUNCTIONS:
        _check_template_argument(ctx, call)
    elif call.name in ("count", "last", "first"):
        _check_event_argument(ctx, call, signature)
        if call.name == "count":
            _check_duration_argument(ctx, call, signature)
    elif call.name == "in_campaign":
        _check_campaign_argument(ctx, call, signature)
    elif call.name == "received":
        _check_channel_argument(ctx, call, signature)
        _check_duration_argument(ctx, call, signature)


def _single_name(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.Path) and len(expr.parts) == 1:
        return expr.parts[0]
    return None


def _check_template_argument(ctx: CheckContext, call: ast.Call) -> None:
    arg = call.args[0]
    name = _single_name(arg)
    if name == "any" or (name is not None and name in ctx.symbols.templates):
        return
    if name is None:
        ctx.error(
            arg.span,
            "E107",
            f"`{call.name}` needs a template name or `any`",
            f"for example {call.name}(any)",
        )
        return
    ctx.error(
        arg.span,
        "E107",
        f"`{call.name}({name})`: no template is called `{name}`",
        did_you_mean(name, [*ctx.symbols.templates, "any"])
        or "use a declared template's name, or `any`",
    )


def _check_event_argument(ctx: CheckContext, call: ast.Call, signature: str) -> None:
    arg = call.args[0]
    if _single_name(arg) is None:
        ctx.error(
            arg.span,
            "E106",
            f"the first argument of `{call.name}` must be an event name",
            f"write {signature}",
        )


def _check_duration_argument(ctx: CheckContext, call: ast.Call, signature: str) -> None:
    arg = call.args[1]
    if not isinstance(arg, ast.DurationLit):
        ctx.error(
            arg.span,
            "E106",
            f"the second argument of `{call.name}` must be a duration such as 7d",
            f"write {signature}",
        )


def _check_campaign_argument(ctx: CheckContext, call: ast.Call, signature: str) -> None:
    arg = call.args[0]
    name = _single_name(arg)
    if name is None:
        ctx.error(arg.span, "E106", "`in_campaign` needs a campaign name", f"write {signature}")
    elif name not in ctx.symbols.campaigns:
        ctx.error(
            arg.span,
            "E103",
            f"unknown campaign `{name}`",
            did_you_mean(name, ctx.symbols.campaigns) or "declare it with `campaign NAME { }`",
        )


def _check_channel_argument(ctx: CheckContext, call: ast.Call, signature: str) -> None:
    arg = call.args[0]
    name = _single_name(arg)
    if name is None:
        ctx.error(arg.span, "E106", "`received` needs a channel", f"write {signature}")
    elif name not in CHANNELS:
        check_channel(ctx, name, arg.span)


def check_channel(ctx: CheckContext, channel: str, span: ast.Span) -> bool:
    """Report an unknown channel; True when the channel is known."""
    if channel in CHANNELS:
        return True
    ctx.error(
        span,
        "E104",
        f"unknown channel `{channel}`",
        did_you_mean(channel, CHANNELS) or f"channels are {', '.join(CHANNELS)}",
    )
    return False
