"""Dry-run: the real engine on a simulated clock against a throwaway store, sending nothing.

A dry-run imports the contacts and the events dated before the start (history, which fires
no trigger), deploys and launches the campaigns, then moves the simulated clock from one due
moment to the next until the horizon, pushing each later event at its time. Sends go to a sink
that records them and draws what they get back from a seeded random generator: the
provider's delivery report (every send delivered unless `--assume` gives `delivered` or
`bounced`) and, on delivered sends, engagement (opens, clicks, replies, conversions), so
branches, waits and A/B winners are exercised as live.

Each recorded send can carry its subject (or SMS/WhatsApp text) rendered by the real
`TemplateRenderer` for that contact at that moment; a render error is kept as that send's
`render_error`. `cadence demo` passes `forward`: the same run, but every send also goes
through a real sink (the channel adapters against loopback stand-ins).

A dry-run shows what the campaigns would send once launched, so it launches every one of
them: each is approved first (by `approved_by`, "dry-run" unless the caller says otherwise)
and the tenant's limit on live campaigns does not apply to its throwaway store; the report
names each campaign a live launch would refuse for either (`approvals`, `over_limit`). The
default frequency cap does apply, as it would live (`default_cap`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import json
import pickle
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Generator, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Text, cast, select

from cadence.adapters.render import (
    EmailContent,
    RenderContext,
    SmsContent,
    TemplateRenderer,
    TemplateRenderError,
    WhatsAppContent,
)
from cadence.adapters.sink import ContentSource
from cadence.adapters.tracking import Links, has_web_version
from cadence.dsl.compiled import (
    AssignAgentNode,
    CompiledCampaign,
    CompiledTemplate,
    ContactCreatedTriggerModel,
    SendNode,
)
from cadence.dsl.symbols import DEFAULT_CAP, REACTION_CHANNELS, CapLimit
from cadence.engine import consent, timing
from cadence.engine.analytics import CampaignReport
from cadence.engine.clock import SimulatedClock, as_utc, parse_instant
from cadence.engine.delivery import ENGAGEMENT_EVENTS
from cadence.engine.facts import load_facts
from cadence.engine.reads import names_read, reads_event
from cadence.engine.runtime import (
    DeliveryResult,
    Engine,
    EngineError,
    OutgoingMessage,
    RunStats,
    Sink,
)
from cadence.engine.store import Store
from cadence.engine.store.aio import AsyncStore
from cadence.engine.store.importer import event_dict, jsonl_rows, push_events
from cadence.engine.store.models import (
    NOTIFY_NODE,
    Campaign,
    CampaignVersion,
    Enrollment,
    SendLog,
)
from cadence.engine.store.records import EventRecord, InvalidInput, Problem
from cadence.engine.suppress import BOUNCED, RESUBSCRIBED
from cadence.errors import CadenceError, did_you_mean, typo_of

# Drawn in this order per send; `unsubscribed` comes last, so assuming it leaves the
# draws of the others as they were.
ENGAGEMENT_ORDER = ("opened", "clicked", "replied", "converted", "unsubscribed")
# What a provider reports about a send, before anyone reacts to it. Unless `--assume` says
# otherwise every send is delivered (as Brevo and Infobip report almost all); `delivered`
# alone leaves the rest bounced, `bounced` alone the rest delivered, and with both the
# rest is never reported. A bounce is a hard one: it suppresses the address, as live.
DELIVERED = "delivered"
DELIVERY_ORDER = (DELIVERED, BOUNCED)
# The channels whose providers report deliveries and bounces (Brevo: email; Infobip: SMS,
# WhatsApp). An inbox message or a webhook post has no provider to report either.
REPORTED_CHANNELS = frozenset({"email", "sms", "whatsapp"})
# What each simulated reaction comes after, nearest first: a click or a reply follows an
# open, a conversion a click. Reactions happen only on delivered sends, and `--assume`
# rates are shares of those (as the report's rates are, over what was delivered), so each
# is drawn among the delivered sends that had the nearest assumed one of these that the
# send's channel reports (`REACTION_CHANNELS`: an SMS reports no opens, so its clicks and
# replies are drawn among all of its delivered sends).
ENGAGEMENT_AFTER = {
    "opened": (),
    "clicked": ("opened",),
    "replied": ("opened",),
    "converted": ("clicked", "opened"),
    "unsubscribed": ("opened",),
}
# How long after a send its simulated delivery report, and each reaction, arrives.
DELIVERY_DELAY = dt.timedelta(minutes=1)
# Rows of an events file held at once (a chunk of history pushed, or of later events
# sorted), so a dry-run's memory does not grow with the file.
EVENTS_IN_MEMORY = 20_000
TimedEvent = tuple[dt.datetime, int, dict[str, Any]]  # an events file's row: (at, line, row)
# Of events due at one instant, the file's go first (in line order), then the reactions.
FROM_FILE, FROM_RUN = 0, 1
REACTION_DELAY = {
    "opened": dt.timedelta(hours=1),
    "clicked": dt.timedelta(hours=2),
    "replied": dt.timedelta(hours=3),
    "converted": dt.timedelta(hours=4),
    "unsubscribed": dt.timedelta(hours=2),
}
# A send's outcome (`PlannedSend.outcome`) besides a delivery report or a reaction: a
# forwarding sink refused it, it went out on a channel that reports no deliveries
# (webhooks, the inbox), or no report came back (`--assume delivered=` below 1).
FAILED_OUTCOME = "failed"
SENT_OUTCOME = "sent"
UNREPORTED_OUTCOME = "no delivery report"
# Events the engine acts on whatever the campaigns read (suppressions, consent, delivery,
# the report's engagement and revenue): an events file may hold them for that alone.
ENGINE_EVENTS = frozenset({*ENGAGEMENT_EVENTS, DELIVERED, BOUNCED, RESUBSCRIBED, "converted"})
# The provider of the sends a dry-run records without forwarding them.
DRY_RUN_PROVIDER = "dry-run"
# Enrollments a dry-run steps per transaction. The service's batch (runtime.BATCH) is the
# unit of work engines sharing a store hand out; a dry-run's store has one engine. On
# SQLite a commit costs more as the tables grow, and a batch's writes share more index
# pages the more rows it holds: at 100,000 contacts the commits took 7.1 s in batches of
# 500 and 1.2 s in batches of 5,000, the store's statements alone 37 s and 25 s
# (docs/performance.md).
DRY_RUN_BATCH = 5000
# A planned send's `at` in the --json lines (UTC, to the second).
SEND_INSTANT = "%Y-%m-%dT%H:%M:%SZ"
# A string as `json.dumps` writes it (ASCII, escaped): the lines are built from such parts.
_ascii = json.encoder.encode_basestring_ascii
# A forwarded send that keeps coming back "retry later" is given up after this many tries,
# so a run on the simulated clock always ends.
MAX_FORWARD_ATTEMPTS = 5
# Adapters answer retries in wall-clock time; on the simulated clock a retry is at least
# this far ahead, so the run moves on instead of spinning.
MIN_SIMULATED_RETRY = dt.timedelta(minutes=1)


class DryRunError(CadenceError):
    """A dry-run that cannot start: bad options or inputs."""


def parse_assume(text: str | None) -> dict[str, float]:
    """`delivered=0.98,opened=30%` as probabilities, each named and between 0 and 1 (100%)."""
    rates: dict[str, float] = {}
    # An empty `--assume ""` (a variable that was not set) is no list of rates, as `" "` is not.
    if text is None:
        return rates
    names = (*DELIVERY_ORDER, *ENGAGEMENT_ORDER)
    for part in text.split(","):
        name, sep, number = part.strip().partition("=")
        # `opened = 0.3` is how people space an assignment; the name is still `opened`.
        name = name.strip()
        if not sep or name not in names:
            raise DryRunError(
                f"--assume: expected NAME=RATE with NAME one of {', '.join(names)},"
                f" got {part.strip()!r}"
            )
        # An ops person writes a rate as the report shows it: `opened=30%` is 0.3.
        text = number.strip()
        percent = text.endswith("%")
        try:
            rate = float(text[:-1] if percent else text)
        except ValueError:
            raise DryRunError(
                f"--assume: {name} needs a rate such as 0.3 or 30%, got {number!r}"
            ) from None
        if percent:
            rate /= 100
        if not 0 <= rate <= 1:
            raise DryRunError(f"--assume: {name}={text} is not between 0 and 1 (0% and 100%)")
        # A second rate for the same name would silently replace the first.
        if name in rates:
            raise DryRunError(f"--assume: {name} is given twice; give each rate once")
        rates[name] = rate
    delivery_shares(rates)
    return rates


def delivery_shares(assume: Mapping[str, float]) -> tuple[float, float]:
    """The shares of the sends reported delivered and bounced (`DELIVERY_ORDER`'s rule)."""
    delivered = assume.get("delivered")
    bounced = assume.get("bounced")
    if delivered is None:
        delivered = 1.0 - (bounced or 0.0)
    if bounced is None:
        bounced = 1.0 - delivered
    if delivered + bounced > 1 + 1e-9:
        raise DryRunError(
            f"--assume: delivered={delivered} and bounced={bounced} add up to more than every send"
        )
    return delivered, bounced


@dataclass(slots=True, unsafe_hash=True)  # not frozen, as `OutgoingMessage`: one per send
class PlannedSend:
    """One send the dry-run would make."""

    at: dt.datetime
    contact: str
    campaign: str
    node: str | None
    channel: str
    template: str | None
    variant: str | None
    # The rendered subject (email) or text (SMS, WhatsApp); None when not rendered.
    subject: str | None = None
    # Why the template could not be rendered for this contact (the send would fail).
    render_error: str | None = None
    # With a forwarding sink: who took the send, or why it failed.
    provider: str | None = None
    error: str | None = None
    # What the run made of it (delivered, bounced, opened ...), for the contacts whose
    # sends are rendered (`--contact`); empty for the rest.
    outcome: tuple[str, ...] = ()
    # The send's place in the store (its outbox id): one enrollment's sends at one instant
    # are listed in the order its steps made them, not by node name.
    sequence: int = field(default=0, compare=False, hash=False)

    @property
    def delivered(self) -> bool:
        """Whether the send went out (always, when nothing is forwarded)."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The `--json` line for this send."""
        return {
            "type": "send",
            "at": self.at.strftime(SEND_INSTANT),
            "contact": self.contact,
            "campaign": self.campaign,
            "node": self.node,
            "channel": self.channel,
            "template": self.template,
            "variant": self.variant,
        }


def placeholder_links(message: OutgoingMessage, contact: Mapping[str, Any]) -> Links:
    """Stand-in per-contact links for simulated sends (the tracking service signs real ones).

    The same links as live sends get (`TrackingLinks`): only an email has a web version, so a
    text that asks for one fails here as it would when sent. A confirmation message's
    `confirm_url` stands in for the link with the contact's pending opt-in token.
    """
    who = f"{message.tenant_id}/{contact.get('id', message.contact_id)}"
    base = "https://links.cadence.invalid"
    return Links(
        confirm=lambda _token: f"{base}/optin/{who}",
        unsubscribe_url=f"{base}/unsubscribe/{who}",
        unsubscribe_mailto="unsubscribe@cadence.invalid",
        preferences_url=f"{base}/preferences/{who}",
        view_in_browser_url=(
            f"{base}/view/{message.idempotency_key[:24]}"
            if has_web_version(message.channel)
            else None
        ),
    )


def _by_tenant(messages: Sequence[OutgoingMessage]) -> dict[str, list[OutgoingMessage]]:
    """Messages grouped by tenant, in order: contacts and `company` are read per tenant."""
    groups: dict[str, list[OutgoingMessage]] = {}
    for message in messages:
        groups.setdefault(message.tenant_id, []).append(message)
    return groups


_ABSENT = "absent"


def _read_names(record: Mapping[str, Any], fields: frozenset[str] | None) -> list[str]:
    """The names of the fields a template reads of a record (`CompiledTemplate.record_reads`:
    None means every field it has), sorted."""
    return sorted(record) if fields is None else sorted(fields)


def _fields_values(record: Mapping[str, Any], fields: frozenset[str] | None) -> str:
    """The values (not only the kinds) of a record's `fields` (every field, for None)."""
    return repr([(name, record.get(name)) for name in _read_names(record, fields)])


def _fields_shape(record: Mapping[str, Any], fields: frozenset[str] | None) -> Hashable:
    """The kinds of a record's `fields` (every field, for None): see `_value_shape`."""
    return tuple(
        (name, _value_shape(record[name]) if name in record else _ABSENT)
        for name in _read_names(record, fields)
    )


def _value_shape(value: Any) -> Hashable:
    """A value's kind as a template can tell it: none, its type, a text's blankness (a
    subject of only a blank name renders empty), a record's own fields and their kinds, a
    list's emptiness and the kinds of its items."""
    if value is None:
        return None
    if isinstance(value, str):
        return ("str", not value.strip())
    if isinstance(value, Mapping):
        return ("record", _fields_shape(value, None))
    if isinstance(value, list | tuple):
        return ("list", bool(value), frozenset(_value_shape(item) for item in value))
    return type(value).__name__


class RunContent:
    """The dry-run's own store as a `ContentSource`: campaigns by version, contacts by id."""

    def __init__(self, store: AsyncStore, campaigns: Sequence[CompiledCampaign]) -> None:
        self._store = store
        self._versions = {campaign.version: campaign for campaign in campaigns}
        self._tenants: dict[str, str] = {}

    async def campaign(self, tenant: str, version: str) -> CompiledCampaign | None:
        """The compiled campaign with this version hash."""
        return self._versions.get(version)

    async def contacts(self, tenant: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Contacts as they are now: columns, then attributes, then tags."""
        return await self._store.call(_contacts, tenant, list(ids))

    async def opt_in_token(self, tenant: str, contact_id: str, channel: str) -> str | None:
        """The contact's pending opt-in token in the run's store (a consent event made it)."""
        return await self._store.call(_opt_in_token, tenant, contact_id, channel)

    async def tenant_name(self, tenant: str) -> str:
        """The tenant's display name (its id unless it was given one)."""
        if tenant not in self._tenants:
            self._tenants[tenant] = await self._store.call(Store.tenant_name, tenant)
        return self._tenants[tenant]


@dataclass
class DryRunSink:
    """Records sends at the simulated time and draws the reports and engagement they get.

    `delivered` and `bounced` are the shares of the sends on `REPORTED_CHANNELS` that are
    delivered and bounced (`delivery_shares`); `report_delivery` says whether a delivery
    report is stored (a campaign of the run can read it). `render` says whose sends get
    their subject rendered (True: everyone's). With `forward`, each send is also delivered
    through that sink; only what it accepts draws reports and engagement, and its
    wall-clock retry times are moved onto the simulated clock.
    """

    clock: SimulatedClock
    assume: Mapping[str, float]
    rng: random.Random
    campaigns: dict[str, CompiledCampaign] = field(default_factory=dict)
    planned: list[PlannedSend] = field(default_factory=list)
    reactions: list[EventRecord] = field(default_factory=list)
    render: bool | Collection[str] = False
    company: Mapping[str, Any] = field(default_factory=dict)
    content: RunContent | None = None
    renderer: TemplateRenderer | None = None
    forward: Sink | None = None
    attempts: dict[int, int] = field(default_factory=dict)
    # Whether a template renders, by what its render can depend on (`_render_key`): the
    # error, or None when it renders.
    render_checks: dict[Hashable, str | None] = field(default_factory=dict)
    delivered: float = 1.0
    bounced: float = 0.0
    report_delivery: bool = False
    # The run's end: a reaction drawn for after it does not happen within the run.
    horizon: dt.datetime | None = None
    # Whether a send's delivery report needs drawing or storing: when neither, as in most
    # runs, `_react` skips it for the price of this one look-up per send.
    _reports: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        """Decide once whether delivery reports are drawn or stored."""
        self._reports = self.delivered < 1 or self.report_delivery

    @property
    def in_process_provider(self) -> str | None:
        """`dry-run` unless sends are forwarded: see `Sink` (steps store them already sent).

        What this sink accepts lives in this process only (the run's report), so the engine
        may store each send as sent in its step and hand it over after the commit.
        """
        return DRY_RUN_PROVIDER if self.forward is None else None

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record each message; queue the simulated reactions to it."""
        now = self.clock.now()
        rendered = await self._render_all(messages)
        if self.forward is not None:
            results = [self._on_clock(r) for r in await self.forward.deliver(messages)]
        else:
            # As live, a send whose template cannot render for its contact fails for good.
            failures = await self._render_failures(messages, rendered)
            results = [
                DeliveryResult(m.outbox_id, True, DRY_RUN_PROVIDER)
                if m.outbox_id not in failures
                else DeliveryResult(
                    m.outbox_id, False, DRY_RUN_PROVIDER, error=failures[m.outbox_id]
                )
                for m in messages
            ]
        for message, result in zip(messages, results, strict=True):
            if message.node == NOTIFY_NODE or (not result.sent and result.retry_at is not None):
                continue
            subject, render_error = rendered.get(message.outbox_id, (None, None))
            outcome = self._react(message, now) if result.sent else (FAILED_OUTCOME,)
            self.planned.append(
                PlannedSend(
                    now,
                    message.contact_id,
                    message.campaign,
                    message.node,
                    message.channel,
                    message.template,
                    message.variant,
                    subject,
                    render_error,
                    result.provider,
                    None if result.sent else result.error or "failed",
                    outcome if self._wants(message.contact_id) else (),
                    message.outbox_id,
                )
            )
        return results

    def _on_clock(self, result: DeliveryResult) -> DeliveryResult:
        """A wall-clock retry becomes a simulated one; too many tries become a failure."""
        if result.sent or result.retry_at is None:
            self.attempts.pop(result.outbox_id, None)
            return result
        tries = self.attempts.get(result.outbox_id, 0) + 1
        if tries >= MAX_FORWARD_ATTEMPTS:
            self.attempts.pop(result.outbox_id, None)
            return replace(
                result, retry_at=None, error=f"gave up after {tries} tries: {result.error}"
            )
        self.attempts[result.outbox_id] = tries
        wait = as_utc(result.retry_at) - dt.datetime.now(dt.UTC)
        return replace(result, retry_at=self.clock.now() + max(wait, MIN_SIMULATED_RETRY))

    def _wants(self, contact: str) -> bool:
        if isinstance(self.render, bool):
            return self.render
        return contact in self.render

    async def _render_all(
        self, messages: Sequence[OutgoingMessage]
    ) -> dict[int, tuple[str | None, str | None]]:
        """Subject (or text) and render error per outbox id, for the contacts asked for."""
        wanted = [
            m
            for m in messages
            if m.template and m.node != NOTIFY_NODE and self._wants(m.contact_id)
        ]
        if not wanted or self.content is None:
            return {}
        renderer = self._renderer()
        found: dict[int, tuple[str | None, str | None]] = {}
        for tenant, group in _by_tenant(wanted).items():
            contacts = await self.content.contacts(tenant, sorted({m.contact_id for m in group}))
            company = await self._company(tenant)
            for message in group:
                found[message.outbox_id] = await self._render_one(
                    renderer, message, contacts.get(message.contact_id), company
                )
        return found

    def _renderer(self) -> TemplateRenderer:
        """The run's renderer, made when its first send is rendered."""
        if self.renderer is None:
            self.renderer = TemplateRenderer()
        return self.renderer

    async def _company(self, tenant: str) -> dict[str, Any]:
        """`company` in the run's templates: the tenant's id and name, then `--company`."""
        assert self.content is not None  # only asked while rendering, which needs content
        return {"id": tenant, "name": await self.content.tenant_name(tenant), **self.company}

    async def _render_failures(
        self,
        messages: Sequence[OutgoingMessage],
        rendered: Mapping[int, tuple[str | None, str | None]],
    ) -> dict[int, str]:
        """Why each send would fail to render live, by outbox id (none for those that render).

        The sends of the contacts asked for (`render`) were rendered whole; the others are
        checked once per `_render_key`: a run of 100,000 contacts renders each template a
        handful of times, not once per send.
        """
        failures = {oid: error for oid, (_, error) in rendered.items() if error is not None}
        checked = [
            m
            for m in messages
            if m.template and m.node != NOTIFY_NODE and m.outbox_id not in rendered
        ]
        if not checked or self.content is None:
            return failures
        renderer = self._renderer()
        for tenant, group in _by_tenant(checked).items():
            reading = [(message, self._reads_contact(message)) for message in group]
            # Only the sends whose render can depend on the contact need it read.
            needed = sorted({m.contact_id for m, reads_contact in reading if reads_contact})
            contacts = await self.content.contacts(tenant, needed) if needed else {}
            for message, reads_contact in reading:
                contact = contacts.get(message.contact_id) if reads_contact else None
                key = self._render_key(message, contact, reads_contact)
                error = await self._check(key, renderer, message, contact, tenant)
                if error is not None:
                    failures[message.outbox_id] = error
        return failures

    async def _check(
        self,
        key: Hashable,
        renderer: TemplateRenderer,
        message: OutgoingMessage,
        contact: Mapping[str, Any] | None,
        tenant: str,
    ) -> str | None:
        """Why sends alike in `key` fail to render (None: they render), rendering this one
        the first time `key` is asked; `contact` is None when the key does not need it."""
        if key not in self.render_checks:
            assert self.content is not None  # only checked while rendering, which needs it
            if contact is None:
                found = await self.content.contacts(tenant, [message.contact_id])
                contact = found.get(message.contact_id)
            company = await self._company(tenant)
            _, self.render_checks[key] = await self._render_one(renderer, message, contact, company)
        return self.render_checks[key]

    def _template(self, message: OutgoingMessage) -> CompiledTemplate | None:
        campaign = self.campaigns.get(message.campaign)
        return campaign.templates.get(message.template or "") if campaign else None

    def _reads_contact(self, message: OutgoingMessage) -> bool:
        """Whether the send's render can fail for one contact and not another: its template
        reads contact fields, or has locales to choose among. A contact's locale and zone
        change how numbers and dates look, never whether they render (both are checked
        when the contact is stored)."""
        template = self._template(message)
        if template is None or template.locales:
            return True
        return template.record_reads["contact"] is None or bool(template.record_reads["contact"])

    def _render_key(
        self, message: OutgoingMessage, contact: Mapping[str, Any] | None, reads_contact: bool
    ) -> Hashable:
        """What decides whether a send renders: its template, and of its contact (when it
        reads the contact, `_reads_contact`) and its event the fields the template reads
        (`CompiledTemplate.record_reads`), each by its kind (present or not, blank text or
        not, number, a record's own fields ...), the values of those whose value it reads
        beyond printing them (`CompiledTemplate.value_reads`: a price given to `money`, a
        plan tested in an `if`), and the contact's locale and zone. Sends alike in these
        differ only in values the template prints as they are, and so render alike.
        """
        template = self._template(message)
        if template is None or (reads_contact and contact is None):
            return (message.campaign, message.version, message.template, contact is None)
        reads = template.record_reads
        values = template.value_reads
        event = message.payload.get("event") or {}
        shown = (
            (
                contact.get("locale"),
                contact.get("timezone"),
                _fields_shape(contact, reads["contact"]),
                _fields_values(contact, values["contact"]),
            )
            if contact is not None
            else None
        )
        return (
            message.campaign, message.version, message.template, message.channel, shown,
            _fields_shape(event, reads["event"]), _fields_values(event, values["event"]),
        )  # fmt: skip

    async def _render_one(
        self,
        renderer: TemplateRenderer,
        message: OutgoingMessage,
        contact: Mapping[str, Any] | None,
        company: Mapping[str, Any],
    ) -> tuple[str | None, str | None]:
        campaign = self.campaigns.get(message.campaign)
        if contact is None:
            return None, f"contact {message.contact_id} not found"
        if campaign is None or message.template not in campaign.templates:
            return None, f"template {message.template!r} of {message.campaign} not found"
        links = placeholder_links(message, contact)
        template = campaign.templates[message.template]
        context = RenderContext(
            contact=contact,
            tenant=company,
            campaign={"name": campaign.name, "display_name": campaign.display_name},
            event=message.payload.get("event") or {},
            unsubscribe_url=links.unsubscribe_url,
            preferences_url=links.preferences_url,
            view_in_browser_url=links.view_in_browser_url,
            confirm_url=(
                links.confirm("") if links.confirm and consent.is_confirmation(template) else None
            ),
        )
        try:
            content = await renderer.arender(template, context)
        except TemplateRenderError as error:
            return None, str(error)
        if isinstance(content, EmailContent):
            # An inbox message may have no subject: show the start of its text instead.
            return content.subject or content.text.strip().split("\n", 1)[0], None
        if isinstance(content, SmsContent | WhatsAppContent):
            return content.text, None
        return None, None

    def _react(self, message: OutgoingMessage, now: dt.datetime) -> tuple[str, ...]:
        """The provider's report on the send, then, on a delivered send, each assumed
        reaction with its rate as a share of the delivered sends: a click or a reply only
        after an open, a conversion after a click (`ENGAGEMENT_AFTER`), each drawn among
        those with probability rate / that one's rate. Returns what became of the send:
        its delivery (`sent` on a channel without reports) and the reactions drawn that
        come before the run's end."""
        reported = message.channel in REPORTED_CHANNELS
        if self._reports and reported:
            report = self._delivery_report()
            if report == BOUNCED:
                self._record(message, report, now + DELIVERY_DELAY, {"type": "hard"})
            elif report == DELIVERED and self.report_delivery:
                # Stored only when a campaign of the run can read it (`reads.reads_event`):
                # a report per send costs, and nothing else reads them.
                self._record(message, report, now + DELIVERY_DELAY)
            if report != DELIVERED:
                return (report or UNREPORTED_OUTCOME,)
        outcome = [DELIVERED if reported else SENT_OUTCOME]
        happened: set[str] = set()
        channel = message.channel
        for name in ENGAGEMENT_ORDER:
            rate = self.assume.get(name)
            if rate is None or channel not in REACTION_CHANNELS[name]:
                continue  # live, nothing would report it: an SMS is never seen opened
            after = next(
                (
                    p
                    for p in ENGAGEMENT_AFTER[name]
                    if p in self.assume and channel in REACTION_CHANNELS[p]
                ),
                None,
            )
            if after is not None:
                if after not in happened:
                    continue
                rate = min(1.0, rate / self.assume[after])
            if self.rng.random() >= rate:
                continue
            happened.add(name)
            at = now + REACTION_DELAY[name]
            self._record(message, name, at)
            if self.horizon is None or at <= self.horizon:
                outcome.append(name)
        return tuple(outcome)

    def _delivery_report(self) -> str | None:
        """Delivered, bounced or not reported, by the assumed shares; no draw when every
        send is delivered, so then the engagement a seed draws does not depend on it."""
        if self.delivered >= 1:
            return DELIVERED
        draw = self.rng.random()
        if draw < self.delivered:
            return DELIVERED
        return BOUNCED if draw < self.delivered + self.bounced else None

    def _record(
        self,
        message: OutgoingMessage,
        name: str,
        at: dt.datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a simulated event about the send, as `push_events` would store it once
        linked to its send (the properties in the order linking leaves them: `channel`
        last), so it skips validation and the send lookup."""
        properties = {
            "template": message.template,
            "campaign": message.campaign,
            "variant": message.variant,
            "send": message.idempotency_key,
            **(extra or {}),
            "channel": message.channel,
        }
        self.reactions.append(
            EventRecord(
                contact_id=message.contact_id, name=name, at=as_utc(at), properties=properties
            )
        )


@dataclass(frozen=True)
class SkippedSend:
    """A send a gate stopped: when, to whom, from which campaign and step, and why."""

    at: dt.datetime
    contact: str
    campaign: str
    node: str
    channel: str
    reason: str
    template: str | None = None


@dataclass(frozen=True)
class Journey:
    """Where one enrollment of a contact the run was asked about (`--contact`) ended up: its
    status at the end and its last step (when, at which node, and why), so "receives
    nothing" has a reason (`goal reached`, `not in the audience` ...)."""

    contact: str
    campaign: str
    status: str
    at: dt.datetime
    node: str | None
    reason: str


@dataclass(frozen=True)
class UnreadEvents:
    """Events of one name in the events file that nothing in the run reads, though a
    campaign reads a name one typo away."""

    name: str
    count: int
    meant: str

    def warning(self, path: Path) -> str:
        """`events.jsonl: 2 events named `x` are read by no campaign; did you mean `y`?`"""
        many = self.count != 1
        return (
            f"{path}: {self.count} event{'s' if many else ''} named `{self.name}` "
            f"{'are' if many else 'is'} read by no campaign; did you mean `{self.meant}`?"
        )


@dataclass(frozen=True)
class LateStart:
    """A campaign whose `starts` comes after the run's start: it enrolls nobody until then."""

    campaign: str
    starts: dt.datetime
    # Its `on contact_created`: the file's contacts are new at the run's start, so before
    # `starts`, which means they never enter it.
    contact_created: bool
    # Its `starts` is at or after the run's end: nobody enters it in this run.
    after_the_run: bool

    def warning(self, start: dt.datetime) -> str:
        """What the run does not show about the campaign, and the `--start` that would."""
        text = (
            f"{self.campaign} starts {self.starts:%Y-%m-%d %H:%M} UTC, after the run's start "
            f"({start:%Y-%m-%d %H:%M} UTC): it enrolls nobody before then"
        )
        if self.contact_created:
            text += (
                "; the contacts file's people are new at the run's start, so they do not "
                "enter its `on contact_created`"
            )
        if self.after_the_run:
            text += "; that is after the run's end"
        return text + f" (--start {self.starts.strftime(SEND_INSTANT)} runs from it)"


@dataclass(frozen=True)
class FailedSends:
    """Sends of one campaign's template that fail for one reason (live as in the run)."""

    campaign: str
    template: str | None
    error: str
    count: int
    # The first few contacts whose send failed, in the run's order.
    contacts: tuple[str, ...]

    def warning(self) -> str:
        """The line on stderr: how many, which template, why, and who."""
        sends = "send" if self.count == 1 else "sends"
        more = ", ..." if self.count > len(self.contacts) else ""
        return (
            f"{self.count} {sends} of {self.campaign} ({self.template}) would fail: "
            f"{self.error} (contacts {', '.join(self.contacts)}{more})"
        )


def failed_sends(sends: Sequence[PlannedSend], examples: int = 3) -> list[FailedSends]:
    """The run's failed sends, grouped by campaign, template and reason, biggest first."""
    groups: dict[tuple[str, str | None, str], list[str]] = {}
    for send in sends:
        if send.error is not None:
            groups.setdefault((send.campaign, send.template, send.error), []).append(send.contact)
    found = [
        FailedSends(campaign, template, error, len(who), tuple(who[:examples]))
        for (campaign, template, error), who in groups.items()
    ]
    return sorted(found, key=lambda group: -group.count)


@dataclass(frozen=True)
class ApprovalNeeded:
    """A campaign the run approved that a live launch would refuse until someone approves it."""

    campaign: str
    # Why (`Engine.simulated_launch`): `approval required`, or a launch audience above 1,000.
    reason: str
    approved_by: str

    def warning(self) -> str:
        """What a live launch would say, and that this run approved it."""
        return (
            f"{self.campaign}: {self.reason}; live, it launches only once approved"
            f" (`cadence approve {self.campaign} --by WHO`); this run approved it as"
            f" {self.approved_by!r}"
        )


@dataclass(frozen=True)
class NoAgents:
    """A campaign that assigns agents in a run that has none: every assignment is to nobody."""

    campaign: str

    def warning(self) -> str:
        """What the run made of `assign agent`, and how to give it agents."""
        return (
            f"{self.campaign} assigns agents (`assign agent round_robin`) but this run has"
            " none, so each assignment is to nobody and `contact.agent` stays missing; name"
            " the rotation with --agents ana,ben (or ana=ana@acme.test,ben)"
        )


def parse_agents(text: str) -> list[tuple[str, str | None]]:
    """`--agents ana,ben=ben@acme.test`: the rotation's names, in order, with any emails."""
    agents: list[tuple[str, str | None]] = []
    for number, item in enumerate(text.split(","), start=1):
        name, _, email = item.partition("=")
        if not name.strip():
            raise DryRunError(
                f"--agents: agent {number} of {text!r} has no name; write names separated by"
                " commas, each with =EMAIL if it has one (ana,ben=ben@acme.test)"
            )
        agents.append((name.strip(), email.strip() or None))
    return agents


@dataclass(frozen=True)
class OverCampaignLimit:
    """A campaign the run launched that a live launch would refuse: the tenant would have
    had too many campaigns active, scheduled or paused (`MAX_ACTIVE_CAMPAIGNS`)."""

    campaign: str
    # Why (`Engine.simulated_launch`): the limit, and the campaigns live before it.
    reason: str

    def warning(self) -> str:
        """What a live launch would say, and that this run launched it anyway."""
        return (
            f"{self.campaign}: live, its launch is refused: {self.reason}; this run launched"
            " it, as it launches every campaign of the file"
        )


def late_starts(
    campaigns: Sequence[CompiledCampaign], start: dt.datetime, horizon: dt.datetime
) -> list[LateStart]:
    """The campaigns that start after `start`, soonest first, with what that hides."""
    found = []
    for campaign in campaigns:
        if campaign.settings.starts is None:
            continue
        starts = timing.campaign_starts_instant(
            campaign.settings.starts, timing.campaign_zone(campaign)
        )
        if starts > start:
            created = any(isinstance(t, ContactCreatedTriggerModel) for t in campaign.triggers)
            found.append(LateStart(campaign.name, starts, created, starts >= horizon))
    return sorted(found, key=lambda late: (late.starts, late.campaign))


def unread_events(
    campaigns: Sequence[CompiledCampaign], names: Mapping[str, int]
) -> list[UnreadEvents]:
    """The event names (with how many events have each) that no campaign reads
    (`reads.names_read`) and the engine does not act on by itself (`ENGINE_EVENTS`, consent
    changes), but that are a typo of a name that is read or acted on.

    An event a campaign waits for under another spelling (`application_submited` in the
    file, `wait for application_submitted` in the campaign) changes nothing, silently: the
    run shows the reminders going out as if nobody had submitted; `unsubscribe` suppresses
    nobody. Names that are merely for other campaigns (a shared events file) are not a
    mistake and are not listed.
    """
    known = frozenset().union(
        ENGINE_EVENTS, consent.CONSENT_EVENTS, *(names_read(campaign) for campaign in campaigns)
    )
    found = []
    for name, count in sorted(names.items()):
        if name in known:
            continue
        meant = typo_of(name, known)
        if meant is not None:
            found.append(UnreadEvents(name, count, meant))
    return found


@dataclass
class DryRunReport:
    """Everything a dry-run found: the sends in order, the funnel, the totals, A/B verdicts."""

    sends: list[PlannedSend]
    enrolled: int
    completed: int
    exited: int
    active: int
    funnel: dict[str, dict[str, int]]
    start: dt.datetime
    until: dt.datetime
    # Per campaign, the A/B tests decided during the run (as `Engine.status()` gives them);
    # shown in the text report, not part of the `--json` lines.
    ab_tests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Enrollments held by a paused campaign at the end: neither completed, exited nor active.
    paused: int = 0
    # Per campaign paused at the end (its budget spent), why (`Engine.status()`'s `pause`);
    # shown in the text report, not part of the `--json` lines.
    paused_campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The sends skipped (consent, suppression, no address, a cap), in order; shown in the
    # text report (`--contact`), not part of the `--json` lines.
    skipped: list[SkippedSend] = field(default_factory=list)
    # Each campaign's performance at the end (docs/analytics.md), when asked for: what the
    # simulated engagement makes of the sends. Text report only, not the `--json` lines.
    performance: list[CampaignReport] = field(default_factory=list)
    # The events file's names that no campaign reads but that are a typo of a name one
    # reads (in the file or in a campaign), each with how many there were and the name
    # meant; printed on stderr, not in the `--json` lines.
    unread_events: list[UnreadEvents] = field(default_factory=list)
    # The campaigns whose `starts` comes after the run's start; printed on stderr.
    late_starts: list[LateStart] = field(default_factory=list)
    # Where the enrollments of the contacts asked about (`render`) ended up; text only.
    journeys: list[Journey] = field(default_factory=list)
    # The campaigns a live launch would refuse until approved (the run approved them);
    # printed on stderr.
    approvals: list[ApprovalNeeded] = field(default_factory=list)
    # The campaigns a live launch would refuse for the tenant's limit of live campaigns
    # (the run launched them); printed on stderr.
    over_limit: list[OverCampaignLimit] = field(default_factory=list)
    # The campaigns that assign agents when the run was given none; printed on stderr.
    no_agents: list[NoAgents] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The `--json` summary line."""
        return {
            "type": "summary",
            "sends": len(self.sends),
            "by_template": dict(sorted(Counter(s.template or "" for s in self.sends).items())),
            "enrolled": self.enrolled,
            "completed": self.completed,
            "exited": self.exited,
        }

    def json_lines(self) -> list[str]:
        """One JSON object per planned send, then the summary.

        Each line is `json.dumps(send.to_json())`, built from parts: a run has few
        instants and few (campaign, node, channel, template, variant) ends, so those are
        encoded once each and only the contact per line (400,000 lines at 100,000 contacts,
        where encoding every dict anew was a few percent of the run).
        """
        instants: dict[dt.datetime, str] = {}
        ends: dict[tuple[str, str | None, str, str | None, str | None], str] = {}
        lines: list[str] = []
        append = lines.append
        for send in self.sends:
            at = instants.get(send.at)
            if at is None:
                at = instants[send.at] = _ascii(send.at.strftime(SEND_INSTANT))
            shape = (send.campaign, send.node, send.channel, send.template, send.variant)
            end = ends.get(shape)
            if end is None:
                whole = json.dumps(send.to_json())
                end = ends[shape] = whole[whole.index(', "campaign": ') :]
            append(f'{{"type": "send", "at": {at}, "contact": {_ascii(send.contact)}{end}')
        append(json.dumps(self.summary()))
        return lines


async def dry_run(
    campaigns: Sequence[CompiledCampaign],
    contacts: Path,
    *,
    events: Path | None = None,
    start: dt.datetime,
    until: dt.timedelta,
    assume: Mapping[str, float] | None = None,
    seed: int = 0,
    on_progress: Callable[[dt.datetime, RunStats], None] | None = None,
    database_url: str = "sqlite://",
    render: bool | Collection[str] = True,
    company: Mapping[str, Any] | None = None,
    forward: Callable[[ContentSource], Sink] | None = None,
    approved_by: str = "dry-run",
    schema: Path | None = None,
    performance: bool = False,
    default_cap: CapLimit | None = DEFAULT_CAP,
    agents: Sequence[tuple[str, str | None]] = (),
) -> DryRunReport:
    """Run the campaigns over the contacts from `start` for `until`, and report what happened.

    The store is a throwaway in-memory SQLite database unless `database_url` names another.
    `render` picks whose subjects are rendered (True: all, False: none, or contact ids);
    `company` adds to the tenant's template variables (`company.name` ...). `forward`
    builds a sink, given this run's content source, that every send is also delivered to.
    Every campaign is approved by `approved_by` before it is launched. `schema` (a contact
    schema file) types the contacts' attributes as `cadence contacts import --schema` does;
    without it a CSV column is typed by what its cells hold, as an import without one.
    With `performance`, the report carries each campaign's metrics at the end
    (`Engine.report`). `default_cap` is the engine's (the same default as a live engine's,
    so the run shows what going live would do; None: off). Events no campaign reads that
    look like a typo of one it does are listed in the report's `unread_events`. `agents`
    (name, email) are the rotation `assign agent round_robin` hands contacts to, in order.
    """
    start = as_utc(start)
    horizon = start + until
    clock = SimulatedClock(start)
    delivered, bounced = delivery_shares(assume or {})
    sink = DryRunSink(
        clock, dict(assume or {}), random.Random(seed), render=render, company=dict(company or {}),
        delivered=delivered, bounced=bounced,
        report_delivery=any(reads_event(campaign, DELIVERED) for campaign in campaigns),
        horizon=horizon,
    )  # fmt: skip
    sink.campaigns = {campaign.name: campaign for campaign in campaigns}
    events_file = _EventsFile(events, start) if events is not None else None
    if events_file is not None:
        events_file.check_json()
    async with Engine(
        database_url, clock=clock, sink=sink, max_active_campaigns=None,
        batch_size=DRY_RUN_BATCH, default_cap=default_cap,
    ) as engine:  # fmt: skip
        sink.content = RunContent(engine.store, campaigns)
        if forward is not None:
            sink.forward = forward(sink.content)
        await engine.import_contacts(contacts, schema=schema)
        for name, email in agents:
            try:
                await engine.add_agent(name, email=email)
            except EngineError as exc:
                raise DryRunError(f"--agents: {exc}") from None
        if not isinstance(render, bool):
            known = await engine.contact_ids()
            for wanted in sorted(set(render) - set(known)):
                hint = did_you_mean(wanted, known)
                raise DryRunError(
                    f"--contact: no contact {wanted!r} in {contacts}"
                    + (f"; {hint}" if hint else "")
                )
        if events is not None:
            # Every row checked as `cadence events push` would (an unknown contact, a bad
            # `at`), all problems listed at once, before anything runs.
            await engine.store.call(push_events, events, tenant_id=engine.tenant, check_only=True)
        # Only once every row is known to be an event with a name and a time. Events dated
        # before the start are history: recorded before anything is deployed, so the launch
        # audience, segments and counts see them and no trigger fires.
        if events_file is not None:
            await events_file.push_history(engine)
        unread = unread_events(campaigns, events_file.names if events_file is not None else {})
        await engine.deploy(list(campaigns))
        approvals: list[ApprovalNeeded] = []
        over_limit: list[OverCampaignLimit] = []
        for campaign in campaigns:
            _, reason, refusal = await engine.simulated_launch(
                campaign.name, approved_by=approved_by
            )
            if reason is not None:
                approvals.append(ApprovalNeeded(campaign.name, reason, approved_by))
            if refusal is not None:
                over_limit.append(OverCampaignLimit(campaign.name, refusal))
        await engine.treat_as_new(await engine.contact_ids(), launched=True)
        later = events_file.later() if events_file is not None else _no_events()
        try:
            await _simulate(engine, clock, sink, later, horizon, on_progress)
        finally:
            later.close()  # its temporary files, when the file was not in time order
        counts = await engine.store.call(_enrollment_counts)
        templates = {
            (campaign.name, node.id): node.template
            for campaign in campaigns
            for node in campaign.nodes
            if isinstance(node, SendNode)
        }
        skipped = [
            replace(skip, template=templates.get((skip.campaign, skip.node)))
            for skip in await engine.store.call(_skipped_sends)
        ]
        funnel = await engine.store.call(_funnel)
        journeys = (
            await engine.store.call(_journeys, render) if not isinstance(render, bool) else []
        )
        status = await engine.status()
        reports = await engine.report() if performance else []
    ab_tests = {row["name"]: row["ab_tests"] for row in status if row["ab_tests"]}
    paused_campaigns = {row["name"]: row["pause"] for row in status if row["pause"] is not None}
    return DryRunReport(
        sorted(sink.planned, key=lambda s: (s.at, s.contact, s.campaign, s.sequence)),
        enrolled=sum(counts.values()),
        completed=counts.get("completed", 0),
        exited=counts.get("exited", 0),
        active=counts.get("active", 0),
        funnel=funnel,
        start=start,
        until=horizon,
        ab_tests=ab_tests,
        paused=counts.get("paused", 0),
        paused_campaigns=paused_campaigns,
        skipped=skipped,
        performance=reports,
        unread_events=unread,
        late_starts=late_starts(campaigns, start, horizon),
        approvals=approvals,
        over_limit=over_limit,
        journeys=journeys,
        no_agents=[]
        if agents
        else [
            NoAgents(campaign.name)
            for campaign in campaigns
            if any(isinstance(node, AssignAgentNode) for node in campaign.nodes)
        ],
    )


async def _simulate(
    engine: Engine,
    clock: SimulatedClock,
    sink: DryRunSink,
    events: Iterator[TimedEvent],
    horizon: dt.datetime,
    on_progress: Callable[[dt.datetime, RunStats], None] | None,
) -> None:
    """Interleave due work, the events file (`events`, in time order) and simulated
    reactions in time order."""
    stats = RunStats()
    # Pending events by time; each event's `at` is read once, when it joins the queue
    # (re-reading every pending reaction on every step of the clock was a cost of its own).
    # The file's events join one at a time, the next when the one before is pushed; of
    # events at one instant, the file's go first, in line order, then the reactions.
    queue: list[tuple[dt.datetime, int, int, dict[str, Any] | EventRecord]] = []
    arrivals = itertools.count()

    def next_from_file() -> None:
        following = next(events, None)
        if following is not None:
            at, line, row = following
            heapq.heappush(queue, (at, FROM_FILE, line, row))

    def enqueue(batch: list[EventRecord]) -> None:
        for reaction in batch:
            heapq.heappush(queue, (reaction.at, FROM_RUN, next(arrivals), reaction))
        batch.clear()

    next_from_file()

    while True:
        stats.add(await engine.run_due())
        if on_progress is not None:
            on_progress(clock.now(), stats)
        enqueue(sink.reactions)
        upcoming = await engine.next_due()
        next_event = queue[0][0] if queue else None
        candidates = [t for t in (upcoming, next_event) if t is not None and t <= horizon]
        if not candidates:
            clock.advance_to(horizon)
            return
        moment = max(min(candidates), clock.now())
        clock.advance_to(moment)
        due: list[dict[str, Any] | EventRecord] = []
        while queue and queue[0][0] <= moment:
            _at, source, _order, event = heapq.heappop(queue)
            due.append(event)
            if source == FROM_FILE:
                next_from_file()
        reactions = [event for event in due if isinstance(event, EventRecord)]
        if due and len(reactions) == len(due):
            await engine.push_linked_events(reactions)
        elif due:
            await _push_file_events(
                engine, [event if isinstance(event, dict) else event_dict(event) for event in due]
            )


async def _push_file_events(engine: Engine, events: list[dict[str, Any]]) -> None:
    """Push events, checked together, all or nothing, as `cadence events push` would; a
    consent event records the consent it reports there, as live (`consent.record_pushed`)."""
    await engine.push_events(events)


class _EventsFile:
    """A dry-run's events file, read in passes and never held whole: its JSON checked, the
    history before the start pushed in file order, its names counted, and the events from
    the start on handed out in time order, EVENTS_IN_MEMORY rows at most at a time."""

    def __init__(self, path: Path, start: dt.datetime) -> None:
        self.path = path
        self.start = start
        self.names: Counter[str] = Counter()  # every event's name, for `unread_events`
        self.in_order = True  # the events from the start on come in time order

    def check_json(self) -> None:
        """Every line a JSON object, or InvalidInput naming each line that is not; the rows
        themselves are checked once the contacts are in (`check_only`)."""
        problems: list[Problem] = []
        for _row in jsonl_rows(self.path, problems):
            pass
        if problems:
            raise InvalidInput(problems)

    async def push_history(self, engine: Engine) -> None:
        """Push the events dated before the start, in file order, a chunk at a time; count
        every event's name, and see whether the later ones come in time order."""
        history: list[dict[str, Any]] = []
        last: dt.datetime | None = None
        for _line, row in jsonl_rows(self.path, []):
            self.names[str(row["name"])] += 1
            at = parse_instant(str(row["at"]))
            if at >= self.start:
                self.in_order = self.in_order and (last is None or at >= last)
                last = at
                continue
            history.append(row)
            if len(history) == EVENTS_IN_MEMORY:
                await _push_file_events(engine, history)
                history = []
        if history:
            await _push_file_events(engine, history)

    def later(self) -> Generator[TimedEvent, None, None]:
        """The events dated from the start on as (at, line, row), by time then line: read
        again from the file when it is in time order, else sorted a chunk at a time into
        temporary files and merged (closing the generator removes them)."""
        rows = (
            (parse_instant(str(row["at"])), line, row) for line, row in jsonl_rows(self.path, [])
        )
        later = (event for event in rows if event[0] >= self.start)
        if self.in_order:
            yield from later
            return
        with contextlib.ExitStack() as files:
            runs = []
            while chunk := sorted(itertools.islice(later, EVENTS_IN_MEMORY)):
                spill = files.enter_context(tempfile.TemporaryFile())
                pickler = pickle.Pickler(spill, protocol=pickle.HIGHEST_PROTOCOL)
                for event in chunk:  # (at, line) is unique: rows are never compared
                    pickler.dump(event)
                spill.seek(0)
                runs.append(_unpickled(spill))
            yield from heapq.merge(*runs)


def _no_events() -> Generator[TimedEvent, None, None]:
    """A run with no events file: nothing to push."""
    yield from ()


def _unpickled(spill: IO[bytes]) -> Iterator[TimedEvent]:
    """The events a sorted chunk of the file was spilled as, in order (our own file)."""
    unpickler = pickle.Unpickler(spill)
    while True:
        try:
            yield unpickler.load()
        except EOFError:
            return


def _contacts(store: Store, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Contacts by id, flattened the way the adapter sink sees them."""
    with store.session() as session:
        facts = load_facts(session, tenant, ids, with_history=False)
    return {contact_id: fact.attributes for contact_id, fact in facts.items()}


def _opt_in_token(store: Store, tenant: str, contact_id: str, channel: str) -> str | None:
    with store.session() as session:
        return consent.pending_token(session, tenant, contact_id, channel)


def _enrollment_counts(store: Store) -> dict[str, int]:
    from sqlalchemy import func

    with store.session() as session:
        return {
            status: int(count)
            for status, count in session.execute(
                select(Enrollment.status, func.count()).group_by(Enrollment.status)
            )
        }


def _skipped_sends(store: Store) -> list[SkippedSend]:
    """The sends the gates stopped, from the send log, in time order."""
    with store.session() as session:
        rows = session.execute(
            select(SendLog.at, SendLog.contact_id, SendLog.channel, SendLog.detail)
            .where(SendLog.outcome == "skipped")
            .order_by(SendLog.at, SendLog.id)
        ).all()
    return [
        SkippedSend(
            as_utc(at), contact, str((detail or {}).get("campaign") or ""),
            str((detail or {}).get("node") or ""), channel,
            str((detail or {}).get("reason") or "skipped"),
        )
        for at, contact, channel, detail in rows
    ]  # fmt: skip


def _journeys(store: Store, contacts: Collection[str]) -> list[Journey]:
    """The enrollments of `contacts` as they end the run, each with its last step."""
    found: list[Journey] = []
    with store.session() as session:
        rows = session.execute(
            select(
                Enrollment.contact_id,
                Campaign.name,
                Enrollment.status,
                Enrollment.history,
                Enrollment.created_at,
            )
            .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            .where(Enrollment.contact_id.in_(sorted(contacts)))
            .order_by(Enrollment.created_at, Enrollment.id)
        ).all()
    for contact, campaign, status, history, created in rows:
        stamp, node, reason = (history or [[None, None, "not stepped yet"]])[-1]
        at = dt.datetime.fromisoformat(stamp) if stamp else created
        found.append(Journey(contact, campaign, status, as_utc(at), node, str(reason)))
    return found


def _funnel(store: Store) -> dict[str, dict[str, int]]:
    """Per campaign, how many enrollments passed through each node (from their history)."""
    funnel: dict[str, Counter[str]] = {}
    # Enrollments of a cohort share their history: each distinct text is decoded once.
    nodes_of: dict[str, frozenset[str]] = {}
    with store.session() as session:
        rows = session.execute(
            select(Campaign.name, cast(Enrollment.history, Text))
            .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
        )
        for name, history in rows:
            seen = nodes_of.get(history or "")
            if seen is None:
                entries = orjson.loads(history) if history else []
                seen = nodes_of[history or ""] = frozenset(
                    entry[1] for entry in entries or [] if entry[1]
                )
            funnel.setdefault(name, Counter()).update(seen)
    return {name: dict(sorted(counter.items())) for name, counter in sorted(funnel.items())}
