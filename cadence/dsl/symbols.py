"""The names a workspace declares, and the campaigns its trigger blocks make.

The checker and the compiler both resolve names (templates, segments, scores, campaigns) and
both need the same answer to "which campaign is this top-level `when` block?": this module is
where those answers are computed, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from cadence.dsl import ast
from cadence.dsl.fmt import format_duration
from cadence.dsl.loader import LoadedFile, Workspace
from cadence.dsl.parser import MAX_DURATION_SECONDS
from cadence.errors import did_you_mean

CHANNELS: tuple[str, ...] = ("email", "sms", "whatsapp", "inbox", "webhook")
CAMPAIGN_TYPES: tuple[str, ...] = ("broadcast", "drip", "triggered", "recurring", "ab_test")
ENGAGEMENT_FUNCTIONS: tuple[str, ...] = ("opened", "clicked", "replied", "bounced", "delivered")
ENGAGEMENT_FLAGS: tuple[str, ...] = ("converted", "unsubscribed")
EVENT_FUNCTIONS: tuple[str, ...] = ("count", "last", "first")
# Reactions counted once per message wherever they are counted (`count(opened, D)`,
# `when opened count>=N`, scores): Cadence's own tracking and a provider's webhook may both
# report one open, and a reader opens a message many times (mail clients that prefetch
# images, too); a count of reports would measure those, not how many messages interested
# the person.
ONCE_PER_MESSAGE: frozenset[str] = frozenset({"opened", "clicked"})
# Words a condition reads as the language's own wherever they stand, never as a declared
# name (docs/language.md): a segment called `true` is read as the constant, so `audience
# true` lets everyone in. Other keywords (`and`, `in`, `within` ...) still read as names there.
EXPRESSION_WORDS: tuple[str, ...] = ("not", "true", "false", "count")
# The reactions a message can bring back as events, and the channels that report each:
# opens where a pixel or a read receipt says so (email; WhatsApp's seen reports), clicks
# where links are tracked, replies where the person can answer, a conversion after any
# message. A/B metrics are measured (docs/diagnostics.md) and dry-runs draw reactions
# (docs/cli.md) by this table, so neither counts on what no channel would report.
REACTION_CHANNELS: dict[str, tuple[str, ...]] = {
    "opened": ("email", "whatsapp"),
    "clicked": ("email", "sms", "whatsapp", "inbox"),
    "replied": ("email", "sms", "whatsapp"),
    "converted": CHANNELS,
    # The email's unsubscribe link or header; a STOP reply to an SMS or WhatsApp message.
    "unsubscribed": ("email", "sms", "whatsapp"),
}
# The A/B metric named in `winner by METRIC` and the reaction that counts for it.
METRIC_EVENTS: dict[str, str] = {
    "opens": "opened",
    "clicks": "clicked",
    "replies": "replied",
    "conversions": "converted",
}
AUDIENCE_FUNCTIONS: tuple[str, ...] = ("in_campaign", "received")
DEFAULT_MAX_SENDS = 20
# The most messages a cap can allow: its count is stored in the compiled campaign's JSON and
# checked by the dispatch core as a 64-bit integer, so a larger one could be neither.
MAX_CAP_COUNT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CapLimit:
    """A frequency cap in force: at most `count` messages on `channel` (None: every channel)
    to one contact in any rolling `per_seconds`, counting every campaign's sends."""

    channel: str | None
    count: int
    per_seconds: int

    def text(self) -> str:
        """The cap as a campaign would set it, without the keyword: `email 3 per 7d`."""
        on = f"{self.channel} " if self.channel is not None else ""
        return f"{on}{self.count} per {format_duration(self.per_seconds)}"

    def check(self) -> None:
        """ValueError unless a campaign's `cap` setting could say the same (E104, E212)."""
        if self.channel is not None and self.channel not in CHANNELS:
            hint = did_you_mean(self.channel, CHANNELS)
            raise ValueError(
                f"a cap's channel is one of {', '.join(CHANNELS)}, not {self.channel!r}"
                + (f"; {hint}" if hint else "")
            )
        if self.count < 1:
            raise ValueError(f"a cap allows at least 1 message, not {self.count}")
        if self.count > MAX_CAP_COUNT:
            raise ValueError(f"a cap allows at most {MAX_CAP_COUNT} messages, not {self.count}")
        if not 1 <= self.per_seconds <= MAX_DURATION_SECONDS:
            raise ValueError(
                f"a cap's period is from 1s to ten years, not {self.per_seconds} seconds"
            )


# The business rule "at most 3 emails per week per contact": the email cap of every campaign
# that sets no `cap email` of its own. The engine applies it (`Engine(default_cap=...)`, None
# turns it off; `cadence serve`, `run` and `dry-run` read `--default-cap`); the checker warns
# (W303) when a campaign's own steps would run into it.
DEFAULT_CAP = CapLimit("email", 3, 7 * 86400)
# The business rule "approval for campaigns targeting >1000 contacts": without an `approval`
# setting, a launch audience above this many contacts needs approval (the engine refuses the
# launch, `cadence explain` says so).
IMPLIED_APPROVAL_ABOVE = 1000
# Fields every contact has, in columns of their own, whether or not a schema declares them.
CONTACT_COLUMNS: tuple[str, ...] = (
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "tags",
)
CONTACT_FIELDS: tuple[str, ...] = (*CONTACT_COLUMNS, "created_at")
# The top-level names a template may use (`adapters.render.RenderContext.variables`); the
# links are there only where the send has them (a confirmation message's `confirm_url`).
TEMPLATE_VARIABLES: frozenset[str] = frozenset(
    {"contact", "company", "tenant", "campaign", "event", "locale", "unsubscribe_url",
     "preferences_url", "view_in_browser_url", "confirm_url"}
)  # fmt: skip
# A locale as a contact's `locale` and a template's `locale "..."` block write it: `en`,
# `es-MX`, `pt_BR` (the language, then subtags).
LOCALE_TAG = re.compile(r"([A-Za-z]{2,3})((?:[-_][A-Za-z0-9]{2,8})*)")
# The filters Cadence adds to Jinja's own (`adapters.render.LOCALE_FILTERS`), formatting for
# the contact's locale.
LOCALE_FILTER_NAMES: frozenset[str] = frozenset(
    {"number", "money", "currency", "percent", "date", "datetime", "time"}
)
DAY_NAMES: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
DAY_GROUPS: dict[str, tuple[str, ...]] = {
    "weekdays": DAY_NAMES[:5],
    "weekends": DAY_NAMES[5:],
    "daily": DAY_NAMES,
}

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Declared(Generic[T]):
    """A declaration with the file it came from."""

    node: T
    file: LoadedFile


@dataclass(frozen=True, slots=True)
class CampaignUnit:
    """One campaign as the engine will run it: a `campaign` block or a top-level trigger block.

    A top-level block (`when property_viewed ... send email x`) is a campaign with defaults;
    its name is `<file stem>_<trigger word>`, with `_2`, `_3` ... when a file has several of the
    same kind, so names stay stable while the file's other declarations change.
    """

    name: str
    display_name: str
    declaration: ast.CampaignDecl | None
    triggers: tuple[ast.TriggerBlock, ...]
    settings: tuple[ast.Setting, ...]
    file: LoadedFile
    span: ast.Span

    @property
    def implicit(self) -> bool:
        """True for a top-level trigger block rather than a `campaign` declaration."""
        return self.declaration is None

    def setting(self, kind: type[S]) -> Iterator[S]:
        """Every setting of one class, in source order."""
        return (s for s in self.settings if isinstance(s, kind))


@dataclass(slots=True)
class Symbols:
    """Every named declaration of a workspace, first declaration winning on duplicates."""

    templates: dict[str, Declared[ast.TemplateDecl]] = field(default_factory=dict)
    segments: dict[str, Declared[ast.SegmentDecl]] = field(default_factory=dict)
    scores: dict[str, Declared[ast.ScoreDecl]] = field(default_factory=dict)
    schema: dict[str, Declared[ast.SchemaField]] = field(default_factory=dict)
    campaigns: dict[str, CampaignUnit] = field(default_factory=dict)
    duplicates: list[tuple[str, str, Declared[object]]] = field(default_factory=list)
    has_schema: bool = False


def collect_symbols(workspace: Workspace) -> Symbols:
    """Index every declaration of the workspace by kind and name."""
    symbols = Symbols()
    implicit_counts: dict[str, int] = {}
    for loaded, declaration in workspace.declarations():
        match declaration:
            case ast.TemplateDecl(name=name):
                _add(symbols, symbols.templates, "template", name, Declared(declaration, loaded))
            case ast.SegmentDecl(name=name):
                _add(symbols, symbols.segments, "segment", name, Declared(declaration, loaded))
            case ast.ScoreDecl(name=name):
                _add(symbols, symbols.scores, "score", name, Declared(declaration, loaded))
            case ast.SchemaDecl(fields=fields):
                symbols.has_schema = True
                for schema_field in fields:
                    _add(
                        symbols,
                        symbols.schema,
                        "contact attribute",
                        schema_field.name,
                        Declared(schema_field, loaded),
                    )
            case ast.CampaignDecl(name=name):
                unit = CampaignUnit(
                    name=name,
                    display_name=declaration.display_name or name.replace("_", " ").capitalize(),
                    declaration=declaration,
                    triggers=declaration.triggers,
                    settings=declaration.settings,
                    file=loaded,
                    span=declaration.span,
                )
                _add_campaign(symbols, unit)
            case ast.TriggerBlock():
                base = f"{_stem(loaded.path)}_{trigger_word(declaration.trigger)}"
                implicit_counts[base] = implicit_counts.get(base, 0) + 1
                count = implicit_counts[base]
                name = base if count == 1 else f"{base}_{count}"
                unit = CampaignUnit(
                    name=name,
                    display_name=name.replace("_", " ").capitalize(),
                    declaration=None,
                    triggers=(declaration,),
                    settings=(),
                    file=loaded,
                    span=declaration.span,
                )
                _add_campaign(symbols, unit)
            case _:
                pass
    return symbols


def trigger_word(trigger: ast.Trigger) -> str:
    """A short name for a trigger, used to name top-level automations."""
    match trigger:
        case ast.EventTrigger(event=event):
            return event
        case ast.ContactCreatedTrigger():
            return "contact_created"
        case ast.SegmentEnterTrigger(segment=segment):
            return f"enter_{segment}"
        case ast.LaunchTrigger():
            return "launch"
        case ast.AtTrigger(moment=moment):
            return "at_" + moment.value.isoformat().replace("-", "").replace(":", "")[:13]
        case ast.EveryTrigger(days=days, interval=interval):
            return "every_" + (
                "_".join(days) if days else f"{interval.seconds if interval else 0}s"
            )


def _stem(path: Path) -> str:
    stem = path.stem.lower()
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"f_{cleaned}"


def _add(
    symbols: Symbols, table: dict[str, Declared[T]], kind: str, name: str, item: Declared[T]
) -> None:
    if name in table:
        symbols.duplicates.append((kind, name, item))  # type: ignore[arg-type]
    else:
        table[name] = item


def _add_campaign(symbols: Symbols, unit: CampaignUnit) -> None:
    if unit.name in symbols.campaigns:
        # Not `Declared[object](...)`: calling a subscripted slotted generic raises TypeError.
        entry: Declared[object] = Declared(unit, unit.file)
        symbols.duplicates.append(("campaign", unit.name, entry))
    else:
        symbols.campaigns[unit.name] = unit
