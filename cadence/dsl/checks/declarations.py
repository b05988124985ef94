"""Top-level declarations: duplicates, the schema, templates, segments and scores.

Template rules (documented in docs/diagnostics.md): every template needs a body (inline,
`body "..."` or `body file "..."`), and a body file must exist relative to the .cadence file
that names it. An email needs a subject. Only email has a preheader; only email and inbox
messages have a subject, so a subject or preheader on sms, whatsapp or webhook is an error
rather than text silently dropped. A `locale` block may leave parts out: they fall back to
the template's default content; its code must be a locale, given once per template.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import TemplateSyntaxError
from jinja2 import nodes as jinja_nodes
from jinja2.sandbox import SandboxedEnvironment

from cadence.dsl import ast
from cadence.dsl.checks.context import CheckContext, article, where
from cadence.dsl.checks.expressions import (
    TEMPLATE,
    bare_names,
    check_attribute,
    check_call,
    check_channel,
    check_expression,
    is_contact_attribute,
    warn_computed_attribute,
)
from cadence.dsl.compiled import template_names, unguarded_event_reads
from cadence.dsl.loader import LoadedFile
from cadence.dsl.symbols import (
    ENGAGEMENT_FLAGS,
    EXPRESSION_WORDS,
    LOCALE_FILTER_NAMES,
    LOCALE_TAG,
    TEMPLATE_VARIABLES,
    CampaignUnit,
)
from cadence.errors import did_you_mean

SCHEMA_TYPES: tuple[str, ...] = (
    "string",
    "number",
    "integer",
    "bool",
    "boolean",
    "datetime",
    "date",
    "list",
)
SUBJECT_CHANNELS: tuple[str, ...] = ("email", "inbox")
PREHEADER_CHANNELS: tuple[str, ...] = ("email",)


def check_declarations(ctx: CheckContext) -> None:
    """Run every declaration-level check of the workspace."""
    _check_duplicates(ctx)
    _check_language_words(ctx)
    for loaded, declaration in ctx.workspace.declarations():
        match declaration:
            case ast.SchemaDecl():
                _check_schema(ctx, declaration)
            case ast.TemplateDecl():
                _check_template(ctx, loaded, declaration)
            case ast.SegmentDecl(expr=expr):
                check_expression(ctx, expr)
            case ast.ScoreDecl():
                _check_score(ctx, declaration)
            case _:
                pass
    _check_segment_cycles(ctx)


def _declared_span(node: object) -> ast.Span:
    if isinstance(node, CampaignUnit):
        return node.span
    span = getattr(node, "span", ast.NO_SPAN)
    assert isinstance(span, ast.Span)
    return span


def _check_duplicates(ctx: CheckContext) -> None:
    symbols = ctx.symbols
    first_spans: dict[str, dict[str, ast.Span]] = {
        "template": {name: d.node.span for name, d in symbols.templates.items()},
        "segment": {name: d.node.span for name, d in symbols.segments.items()},
        "score": {name: d.node.span for name, d in symbols.scores.items()},
        "contact attribute": {name: d.node.span for name, d in symbols.schema.items()},
        "campaign": {name: unit.span for name, unit in symbols.campaigns.items()},
    }
    for kind, name, item in symbols.duplicates:
        span = _declared_span(item.node)
        first_span = first_spans.get(kind, {}).get(name)
        ctx.error(
            ctx.word_span(span, name),
            "E113",
            f"the {kind} `{name}` is declared twice",
            f"the first is at {where(first_span)}; rename or remove one"
            if first_span
            else "rename or remove one",
        )
    for name in sorted(set(symbols.segments) & set(symbols.scores)):
        span = symbols.scores[name].node.span
        ctx.error(
            ctx.word_span(span, name),
            "E113",
            f"`{name}` is both a segment and a score",
            f"the segment is at {where(symbols.segments[name].node.span)}; rename one",
        )


def _check_language_words(ctx: CheckContext) -> None:
    """A name a condition would read as the language's own word (E117): `segment true` makes
    `audience true` the constant, so everyone is let in; `template any` makes `opened(any)`
    mean every template; `segment converted` hides the engagement flag; `segment not` cannot
    be written where it is used at all."""
    symbols = ctx.symbols
    in_conditions = (*EXPRESSION_WORDS, *ENGAGEMENT_FLAGS)
    named: list[tuple[str, str, ast.Span, tuple[str, ...]]] = [
        *(
            ("template", n, d.node.span, (*EXPRESSION_WORDS, "any"))
            for n, d in symbols.templates.items()
        ),
        *(("segment", n, d.node.span, in_conditions) for n, d in symbols.segments.items()),
        *(("score", n, d.node.span, in_conditions) for n, d in symbols.scores.items()),
        *(("contact attribute", n, d.node.span, in_conditions) for n, d in symbols.schema.items()),
        *(("campaign", n, u.span, EXPRESSION_WORDS) for n, u in symbols.campaigns.items()),
    ]
    for kind, name, span, words in named:
        if name in words:
            ctx.error(
                ctx.word_span(span, name),
                "E117",
                f"the {kind} `{name}` is named with a word of the language, "
                f"so a condition reads `{name}` as that word, not as this {kind}",
                f"choose another name, such as `{name}_{kind.split()[-1]}`",
            )


def _check_schema(ctx: CheckContext, schema: ast.SchemaDecl) -> None:
    for schema_field in schema.fields:
        if schema_field.type not in SCHEMA_TYPES:
            span = ctx.word_span(
                schema_field.span,
                schema_field.type,
                1 if schema_field.type == schema_field.name else 0,
            )
            ctx.error(
                span,
                "E109",
                f"unknown attribute type `{schema_field.type}` for `{schema_field.name}`",
                did_you_mean(schema_field.type, SCHEMA_TYPES)
                or f"types are {', '.join(SCHEMA_TYPES)}",
            )


def _check_template(ctx: CheckContext, loaded: LoadedFile, template: ast.TemplateDecl) -> None:
    channel = template.channel
    if not check_channel(ctx, channel, template.channel_span):
        return
    content = template.content
    if content.body is None and content.body_file is None:
        ctx.error(
            ctx.word_span(template.span, template.name),
            "E218",
            f"the template `{template.name}` has no body",
            'add `body "..."` or `body file "PATH"`',
        )
    if channel == "email" and content.subject is None:
        ctx.error(
            ctx.word_span(template.span, template.name),
            "E215",
            f"the email template `{template.name}` has no subject",
            'add `subject "..."` inside its { }',
        )
    _check_locale_codes(ctx, template)
    parts = [content, *(locale.content for locale in template.locales)]
    for part in parts:
        _check_parts_for_channel(ctx, template, part)
        for label, literal in (
            ("subject", part.subject),
            ("preheader", part.preheader),
            ("body", part.body),
        ):
            if literal is not None:
                _check_template_text(ctx, template, label, literal.value, literal.span, None)
        if part.body_file is not None and _check_body_file(ctx, loaded, part.body_file):
            _check_body_file_text(ctx, loaded, template, part.body_file)


def _check_locale_codes(ctx: CheckContext, template: ast.TemplateDecl) -> None:
    """A block's code must be a locale a contact can have, once: `locale "Portuguese"` or a
    second `locale "pt_BR"` beside `locale "pt-BR"` is text no contact would ever get."""
    first: dict[str, ast.LocaleBlock] = {}
    for block in template.locales:
        span = ctx.word_span(block.span, block.locale) if block.locale else block.span
        if LOCALE_TAG.fullmatch(block.locale) is None:
            ctx.error(
                span,
                "E221",
                f'"{block.locale}" in `{template.name}` is not a locale, so no contact gets it',
                'write a language code, with a region if needed: "pt", "pt-BR", "es-MX"',
            )
            continue
        # Contacts' locales match blocks in any case and with `-` or `_` (docs/channels.md).
        key = block.locale.lower().replace("_", "-")
        earlier = first.setdefault(key, block)
        if earlier is not block:
            ctx.error(
                span,
                "E221",
                f'the locale "{block.locale}" of `{template.name}` is given twice',
                f'the first, "{earlier.locale}", is at {where(earlier.span)}; merge the two',
            )


def _check_parts_for_channel(
    ctx: CheckContext, template: ast.TemplateDecl, content: ast.TemplateContent
) -> None:
    channel = template.channel
    if content.subject is not None and channel not in SUBJECT_CHANNELS:
        ctx.error(
            content.subject.span,
            "E216",
            f"`{template.name}` cannot have a subject: {article(channel)} message has none",
            "put the text in the body, or make it an email template",
        )
    if content.preheader is not None and channel not in PREHEADER_CHANNELS:
        ctx.error(
            content.preheader.span,
            "E216",
            f"only email has a preheader; `{template.name}` is {article(channel)} template",
            "remove the preheader",
        )


def _check_body_file(ctx: CheckContext, loaded: LoadedFile, body_file: ast.StringLit) -> bool:
    """Report a missing body file; True when it exists."""
    target = loaded.path.parent / Path(body_file.value)
    if target.is_file():
        return True
    folder = target.parent
    siblings = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    hint = did_you_mean(target.name, siblings)
    ctx.error(
        body_file.span,
        "E217",
        f'the body file "{body_file.value}" does not exist',
        hint or f"the path is relative to the folder of {loaded.source.name}",
    )
    return False


@cache
def _jinja() -> SandboxedEnvironment:
    # Parsing only: nothing a template says is ever run by the checker. The filters the
    # renderer adds are named so that a check of filter names knows them.
    env = SandboxedEnvironment()
    env.filters.update(dict.fromkeys(LOCALE_FILTER_NAMES, str))
    return env


def _check_body_file_text(
    ctx: CheckContext, loaded: LoadedFile, template: ast.TemplateDecl, body_file: ast.StringLit
) -> None:
    target = loaded.path.parent / Path(body_file.value)
    try:
        text = target.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        ctx.error(
            body_file.span,
            "E220",
            f'the body file "{body_file.value}" cannot be read: {reason}',
            "save it as UTF-8 text",
        )
        return
    _check_template_text(ctx, template, "body", text, body_file.span, body_file.value)


def _check_template_text(
    ctx: CheckContext,
    template: ast.TemplateDecl,
    label: str,
    text: str,
    span: ast.Span,
    file: str | None,
) -> None:
    """Template text must parse as Jinja; with a schema, `contact.NAME` must be declared."""
    where_text = f'"{file}"' if file else f"the {label} of `{template.name}`"
    try:
        parsed = _jinja().parse(text)
    except TemplateSyntaxError as exc:
        line = f" (line {exc.lineno})" if file or text.count("\n") else ""
        ctx.error(
            span,
            "E220",
            f"{where_text} is not a valid template{line}: {exc.message}",
            "check the {{ }} and {% %} tags: each must be closed",
        )
        return
    _check_filters_and_tests(ctx, parsed, span, where_text, file is not None)
    _warn_unknown_variables(ctx, parsed, span, where_text if file else None)
    ctx.event_reads.setdefault(template.name, set()).update(unguarded_event_reads(parsed))
    reported: set[str] = set()
    for node in parsed.find_all(jinja_nodes.Getattr):
        target = node.node
        if not (isinstance(target, jinja_nodes.Name) and target.name == "contact"):
            continue
        attribute = node.attr
        if attribute in reported:
            continue
        reported.add(attribute)
        if file is None:
            check_attribute(ctx, attribute, ctx.word_span(span, attribute), use=TEMPLATE)
        elif is_contact_attribute(ctx, attribute):
            in_file = f" in {where_text} (line {node.lineno})"
            warn_computed_attribute(ctx, attribute, span, use=TEMPLATE, where=in_file)
        else:
            ctx.error(
                span,
                "E108",
                f"`contact.{attribute}` in {where_text} (line {node.lineno}) is not a contact "
                "attribute of the schema",
                did_you_mean(attribute, ctx.symbols.schema) or "declare it in `schema contact { }`",
            )


def _check_filters_and_tests(
    ctx: CheckContext, parsed: jinja_nodes.Template, span: ast.Span, where_text: str, file: bool
) -> None:
    """`{{ price | mony('USD') }}`: Jinja refuses to compile a template naming a filter (or a
    test, `is defind`) it does not have, so every send of it would fail to render."""
    env = _jinja()
    # `{% if x is filter('f') %}` is how a template asks; Jinja then defers an unknown `f`.
    asked = {
        arg.value
        for node in parsed.find_all(jinja_nodes.Test)
        if node.name in ("filter", "test")
        for arg in node.args
        if isinstance(arg, jinja_nodes.Const)
    }
    reported: set[tuple[str, str]] = set()
    kinds = (("filter", jinja_nodes.Filter, env.filters), ("test", jinja_nodes.Test, env.tests))
    for kind, node_type, known in kinds:
        for node in parsed.find_all(node_type):
            name = node.name
            if name in known or name in asked or (kind, name) in reported:
                continue
            reported.add((kind, name))
            line = f" (line {node.lineno})" if file else ""
            ctx.error(
                span if file else ctx.word_span(span, name),
                "E220",
                f"{where_text}{line} uses the {kind} `{name}`, which does not exist, so it"
                " cannot render",
                did_you_mean(name, known) or f"see the {kind}s in docs/channels.md",
            )


def _warn_unknown_variables(
    ctx: CheckContext, parsed: jinja_nodes.Template, span: ast.Span, file: str | None
) -> None:
    """A top-level name no send gives a template (`contatc.city`, `unsubscribe_link`).

    Rendering it fails every send of the template ("`contatc` is undefined"), or renders
    nothing under `| default(...)`; the names a template has are fixed, so it is a typo.
    """
    names = sorted(template_names(parsed) - TEMPLATE_VARIABLES)
    for name in names:
        where = f" in {file}" if file else ""
        ctx.warning(
            span if file else ctx.word_span(span, name),
            "W308",
            f"`{name}`{where} is not a template variable, so it is undefined when the "
            "message renders",
            did_you_mean(name, TEMPLATE_VARIABLES)
            or "a template has " + ", ".join(f"`{v}`" for v in sorted(TEMPLATE_VARIABLES)),
        )


def _check_score(ctx: CheckContext, score: ast.ScoreDecl) -> None:
    for rule in score.rules:
        if isinstance(rule, ast.ScorePoints) and isinstance(rule.event, ast.Call):
            check_call(ctx, rule.event)
        if isinstance(rule, ast.ScoreDecay) and rule.percent.value <= 0:
            ctx.error(rule.percent.span, "E212", "a decay of 0% does nothing", "use at least 1%")


def _check_segment_cycles(ctx: CheckContext) -> None:
    segments = ctx.symbols.segments
    references: dict[str, list[ast.Path]] = {
        name: [p for p in bare_names(declared.node.expr) if p.parts[0] in segments]
        for name, declared in segments.items()
    }
    reported: set[str] = set()
    for name in segments:
        if name in reported:
            continue
        cycle = _cycle_from(name, references)
        if cycle is None:
            continue
        reported.update(cycle)
        first_ref = next(p for p in references[name] if p.parts[0] == cycle[1 % len(cycle)])
        chain = " -> ".join([*cycle, name])
        ctx.error(
            first_ref.span,
            "E214",
            f"the segment `{name}` refers to itself ({chain})",
            "a segment cannot depend on itself; define one of them without the other",
        )


def _cycle_from(start: str, references: dict[str, list[ast.Path]]) -> list[str] | None:
    """The shortest chain of segments leading from `start` back to itself, if any."""
    frontier: list[list[str]] = [[start]]
    seen: set[str] = set()
    while frontier:
        next_frontier: list[list[str]] = []
        for chain in frontier:
            for ref in references[chain[-1]]:
                target = ref.parts[0]
                if target == start:
                    return chain
                if target not in seen:
                    seen.add(target)
                    next_frontier.append([*chain, target])
        frontier = next_frontier
    return None
