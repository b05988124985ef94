"""The engine: deploys compiled campaigns, enrolls contacts, and advances enrollments durably.

All state lives in the store. A wait is an enrollment row with a `due_at`; the scheduler
claims due rows in batches under a lease, runs the stepper on each, and writes the new state
and its effects (outbox rows, attribute changes, tags, enrollments elsewhere) in one
transaction, fenced by the lease. A crash between claim and write loses nothing: the lease
runs out and another worker (or the restarted one) takes the batch over.

Database work runs in worker threads (`trio.to_thread`); Trio owns the concurrency.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import orjson
import trio
from sqlalchemy import Row, Text, cast, func, select, update
from sqlalchemy.orm import Session

from cadence.adapters.base import NO_CREDITS, NO_CREDITS_WAIT
from cadence.adapters.inbound import ParsedWebhook, parse_webhook
from cadence.dsl import compiled as c
from cadence.dsl.symbols import CONTACT_COLUMNS, DEFAULT_CAP, IMPLIED_APPROVAL_ABOVE, CapLimit
from cadence.engine import (
    analytics,
    audience,
    conditions,
    consent,
    evaluate,
    inbound,
    reads,
    stepper,
    suppress,
    sweep,
    timing,
)
from cadence.engine.analytics import CampaignReport
from cadence.engine.caps import CapsInForce, caps_in_force
from cadence.engine.clock import Clock, SystemClock, as_utc
from cadence.engine.cohort import CohortMemo
from cadence.engine.consent import NOTHING_TO_CONFIRM, ConsentChange
from cadence.engine.describe import amount_text
from cadence.engine.facts import CAMPAIGNS, ContactFacts, EventFact, load_facts
from cadence.engine.inbound import WebhookReport
from cadence.engine.preferences import ChannelChoice, read_choices
from cadence.engine.reads import batch_fields, batch_reads, cap_sends_within
from cadence.engine.stepper import Advance, SendGate
from cadence.engine.store import DEFAULT_TENANT, AsyncStore, Store, StoreError, claims, importer
from cadence.engine.store import agents as agent_store
from cadence.engine.store import campaigns as campaign_store
from cadence.engine.store import sends as send_store
from cadence.engine.store.bulk import among, insert_rows
from cadence.engine.store.database import dumps_json
from cadence.engine.store.models import (
    COUNTED_SEND_STATUSES,
    NAME_LENGTH,
    NOTIFY_NODE,
    UNFINISHED_ENROLLMENT_STATUSES,
    AuditEntry,
    Campaign,
    CampaignStatus,
    CampaignVersion,
    ConsentStatus,
    Contact,
    Enrollment,
    EnrollmentStatus,
    InboxMessage,
    OutboxMessage,
    OutboxStatus,
    SendLog,
)
from cadence.engine.store.records import EventRecord, validate_contact
from cadence.engine.store.schema import IDENTIFIER
from cadence.engine.store.types import RawJSON
from cadence.errors import CadenceError, did_you_mean
from cadence.text import nfc

# The dispatch core (numpy, Arrow) is imported where caps or a rate limit are used: a run
# with neither (most dry-runs) never loads it, about half a second of start-up.
if TYPE_CHECKING:
    from cadence.dispatch.caps import FrequencyCaps
    from cadence.dispatch.limiter import ProviderLimit

LEASE = dt.timedelta(minutes=5)
BATCH = 500
# While full step batches keep coming, the outbox is also claimed every this many batches.
OUTBOX_EVERY = 8
# How many history entries an enrollment keeps (the latest; the funnel reads them).
HISTORY = 50

# What a step reads of a claimed enrollment, and a message of a claimed send: claims
# return only these (each timestamp and JSON document returned costs a conversion per row).
_STEP_COLUMNS = (
    Enrollment.id, Enrollment.version_id, Enrollment.contact_id, Enrollment.occurrence,
    Enrollment.node,
    # As text: cohorts are keyed by it (`CohortMemo`), and each row decodes it with orjson.
    cast(Enrollment.state, Text).label("state"),
    # As text: a step only appends to it (see `_append_history`).
    cast(Enrollment.history, Text).label("history"),
)  # fmt: skip


# A step reads a locked enrollment's fields about twenty times: a named tuple's field is
# read several times faster than a SQLAlchemy `Row`'s (by name, through its key map).
class _StepRow(NamedTuple):
    """A locked enrollment, with the `_STEP_COLUMNS` a step reads."""

    id: int
    version_id: int
    contact_id: str
    occurrence: int
    node: str | None
    state: str | None
    history: str | None


# Send-log outcomes only a provider's report writes (docs/inbound.md): any of them means the
# provider has the message. `failed` is not among them: the engine writes it too.
PROVIDER_REPORTS = frozenset({
    "requested", "delivered", "bounced", "soft_bounced", "deferred", "complained",
    "unsubscribed", "opened", "proxy_opened", "clicked", "expired", "pending", "seen",
    "replied",
})  # fmt: skip

_MESSAGE_COLUMNS = (
    OutboxMessage.id, OutboxMessage.idempotency_key, OutboxMessage.tenant_id,
    OutboxMessage.version_id, OutboxMessage.node, OutboxMessage.contact_id,
    OutboxMessage.channel, OutboxMessage.template, OutboxMessage.variant, OutboxMessage.payload,
    OutboxMessage.attempts,
)  # fmt: skip

# What the delivery-time check reads of a queued send (`Engine._drop_refused`).
_GATED_COLUMNS = (
    OutboxMessage.id, OutboxMessage.version_id, OutboxMessage.node, OutboxMessage.contact_id,
    OutboxMessage.channel, OutboxMessage.template,
)  # fmt: skip

_STATUS = {
    "active": EnrollmentStatus.ACTIVE,
    "completed": EnrollmentStatus.COMPLETED,
    "exited": EnrollmentStatus.EXITED,
}
# The same as stored text, for the per-row path (an enum's `.value` is a slow descriptor).
_STATUS_TEXT = {name: status.value for name, status in _STATUS.items()}

# The business rule "at most 10 active campaigns per organization": a tenant may have at most
# this many campaigns that may still send (active, scheduled or paused) when one launches.
MAX_ACTIVE_CAMPAIGNS = 10
# An enrollment found due in a campaign with this status takes the status given, unstepped.
_HALTED = {
    CampaignStatus.PAUSED.value: EnrollmentStatus.PAUSED,
    CampaignStatus.CANCELLED.value: EnrollmentStatus.CANCELLED,
}
# Paused campaigns count: a resume makes them send again without another launch.
_LIVE_STATUSES = (CampaignStatus.ACTIVE, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED)

# Lifecycle moves a person may ask for; anything else is refused with the current status.
_ALLOWED_MOVES: dict[str, set[CampaignStatus]] = {
    "launch": {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED},
    "pause": {CampaignStatus.ACTIVE, CampaignStatus.SCHEDULED},
    "resume": {CampaignStatus.PAUSED},
    "cancel": {CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE,
               CampaignStatus.PAUSED},
    "archive": {CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.DRAFT},
}  # fmt: skip
# A campaign in one of these runs no more: a new version of it is stored, never sent.
_FINISHED_STATUSES = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.ARCHIVED)


class EngineError(CadenceError):
    """A request the engine cannot carry out (unknown campaign, a move not allowed now)."""


# Not frozen, and hashable as if it were: a frozen dataclass's __init__ costs about four
# times a plain one's, and a step batch makes one of these per send. Nothing assigns to
# one; `dataclasses.replace` makes a changed copy.
@dataclass(slots=True, unsafe_hash=True)
class OutgoingMessage:
    """A send leaving the outbox for a channel: what a sink or an adapter receives."""

    outbox_id: int
    idempotency_key: str
    tenant_id: str
    campaign: str
    version: str
    node: str | None
    contact_id: str
    channel: str
    template: str | None
    variant: str | None
    payload: Mapping[str, Any]
    # How many times the send was handed to a provider before, by any engine (from the
    # store): an adapter whose provider deduplicates nothing looks such a send up first.
    attempts: int = 0


class Sink(Protocol):
    """Where sends go: a recording sink in tests and dry-runs, channel adapters in service.

    A sink may also have `in_process_provider`, a provider name (see `IN_PROCESS_PROVIDER`).
    Such a sink accepts every send, in this process, with no provider id of its own (or
    fails one for good: a template that cannot render for its contact, recorded as failed
    at the hand-over), and nothing outside the process ever sees a send (the dry-run's
    recording sink): the step
    then stores its sends already sent and logged, in the step's own transaction, and hands
    them over right after the commit. That is sound only because the sink's record lives
    and dies with the process: a crash between the commit and the hand-over takes the sink
    with it, so no surviving sink misses a send, and the store says "sent" once. A sink
    that reaches anything outside (every channel adapter) has no such attribute, and its
    sends are inserted leased, handed over, then recorded, so a crash loses none.
    """

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Send each message once; say per message what happened."""
        ...


# The attribute of a sink that makes its sends stored as sent in the step (see `Sink`).
IN_PROCESS_PROVIDER = "in_process_provider"


@dataclass(slots=True, unsafe_hash=True)  # not frozen, as `OutgoingMessage`: one per send
class DeliveryResult:
    """The outcome of one delivery: sent (with the provider's id), or failed with a reason."""

    outbox_id: int
    sent: bool
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    retry_at: dt.datetime | None = None
    # The provider refused for its rate limit (429): the engine's limiter slows that channel.
    rate_limited: bool = False
    # The provider refused the recipient's address itself (no such mailbox, invalid): a
    # hard bounce before sending, so the engine suppresses the address on that channel.
    address_rejected: bool = False
    # The provider refused the account, not this send (`adapters.base.ACCOUNT_REFUSALS`:
    # `no_credits`, its spent credit; `key_refused`, its API key): the send waits, and the
    # engine pauses its campaign until the operator fixes the account and resumes it.
    account_refused: str | None = None


@dataclass
class RecordingSink:
    """Accepts every message and remembers it, in order: the engine's sink before adapters."""

    delivered: list[OutgoingMessage] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record the messages as sent."""
        self.delivered.extend(messages)
        return [
            DeliveryResult(m.outbox_id, True, "recording", f"rec-{m.idempotency_key[:16]}")
            for m in messages
        ]


@dataclass
class RunStats:
    """What a run of the scheduler did."""

    steps: int = 0
    sends: int = 0
    delivered: int = 0
    enrolled: int = 0
    # Sends that failed for good (no retry left): the outbox's `failed`, which
    # `cadence report` counts as `failed`; a send waiting for a retry is neither.
    failed: int = 0

    def add(self, other: RunStats) -> None:
        """Accumulate another run's counts."""
        self.steps += other.steps
        self.sends += other.sends
        self.delivered += other.delivered
        self.enrolled += other.enrolled
        self.failed += other.failed


@dataclass(frozen=True, slots=True)
class DeployResult:
    """One campaign of a deploy: its name, version hash, and whether that version is new.

    `pending_approval`: the campaign is live and this version needs an approval it lacks,
    so it waits (`approve` makes it current) while the approved version keeps running.
    `moved`: with `migrate`, how many running and paused enrollments moved onto it (None
    without `migrate`). `finished`: the status of a campaign that runs no more (completed,
    cancelled or archived), whose new version will not run; None otherwise. `left`: without
    `migrate`, how many running and paused enrollments stay on earlier versions (runs an
    `at` or `every` trigger booked and not yet started among them: they send what their
    version says), for the command line to say so; 0 with `migrate`.
    """

    name: str
    version: str
    version_id: int
    created: bool
    pending_approval: bool = False
    moved: int | None = None
    finished: str | None = None
    left: int = 0


@dataclass(frozen=True, slots=True)
class PushedEvents:
    """What a push of events did: how many were stored, how many were stored before (an
    `id` already seen, so left alone), and the enrollments they made."""

    stored: int
    duplicates: int
    enrolled: int


class Engine:
    """The campaign engine; use as `async with Engine(database_url=..., clock=...) as engine`."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        clock: Clock | None = None,
        tenant: str = DEFAULT_TENANT,
        sink: Sink | None = None,
        batch_size: int = BATCH,
        owner: str | None = None,
        rate_limits: Mapping[str, ProviderLimit] | None = None,
        max_active_campaigns: int | None = MAX_ACTIVE_CAMPAIGNS,
        default_cap: CapLimit | None = DEFAULT_CAP,
    ) -> None:
        """Configure an engine; nothing is opened until `async with` (or `open()`).

        `default_cap` is the frequency cap of every campaign that sets none of its own on
        that channel (the business rule: at most 3 emails per contact per 7 days; None: no
        default, only the campaigns' own caps).
        """
        if max_active_campaigns is not None and max_active_campaigns < 1:
            raise ValueError(f"max_active_campaigns must be at least 1, not {max_active_campaigns}")
        self.max_active_campaigns = max_active_campaigns
        if default_cap is not None:
            default_cap.check()
        self.default_cap = default_cap
        self.database_url = database_url
        self.clock: Clock = clock or SystemClock()
        self.tenant = tenant
        self.sink: Sink = sink or RecordingSink()
        self.batch_size = batch_size
        self.owner = owner or claims.new_owner_id()
        self._store: AsyncStore | None = None
        self._versions: dict[int, tuple[str, c.CompiledCampaign]] = {}
        self._swept: dict[int, list[sweep.SweptTrigger]] = {}
        self._sweep_windows: dict[tuple[int, str], tuple[sweep.Window, ...] | None] = {}
        # Per (version, A/B split), its branch nodes and the nodes whose sends carry its variants.
        self._split_branches: dict[tuple[int, str], tuple[list[str], list[str]]] = {}
        # Per channel, the dispatch core's limiter paces deliveries (priority-fair, bursts).
        self._limited = sorted(rate_limits or {})
        self._limiter: RateLimiter | None = None
        self._planned: dict[int, int] = {}
        # Set when new data may have made work due (events, webhooks, contacts): `serve`
        # stops sleeping and looks at once, so a `wait for` an event resumes without a poll.
        self._nudge = trio.Event()
        # Set by `stop`: the loops return after the batch in hand instead of starting another.
        self._stopping = False
        if rate_limits:
            from cadence.dispatch.limiter import RateLimiter

            self._limiter = RateLimiter()
            for code, channel in enumerate(self._limited):
                self._limiter.set_provider(code, rate_limits[channel])

    # ------------------------------------------------------------------ lifecycle of the engine

    async def open(self) -> Engine:
        """Open the store (migrating it) and make sure the tenant exists."""
        self._store = await AsyncStore.open(self.database_url)
        await self._store.call(Store.ensure_tenant, self.tenant)
        return self

    async def aclose(self) -> None:
        """Close the store's connections."""
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    async def __aenter__(self) -> Engine:
        """Open on entry."""
        return await self.open()

    async def __aexit__(self, *_exc: object) -> None:
        """Close on exit, whatever happened."""
        with trio.CancelScope(shield=True):
            await self.aclose()

    @property
    def store(self) -> AsyncStore:
        """The open store (an error before `open`)."""
        if self._store is None:
            raise EngineError("the engine is not open: use `async with Engine(...)`")
        return self._store

    def stop(self) -> None:
        """Make `serve`, `run_due` and `run_until` return once the batch in hand is stepped,
        delivered and recorded, so a shutdown leaves no send leased to a stopped engine.

        Cancelling them instead is safe too, but a batch cut off mid-delivery keeps its sends
        leased (held from every engine) until the lease runs out. For good: an engine asked
        to stop runs no further batch.
        """
        self._stopping = True
        self._nudge.set()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called."""
        return self._stopping

    def now(self) -> dt.datetime:
        """The engine's current instant, from its clock."""
        return self.clock.now()

    # ------------------------------------------------------------------ campaigns

    async def deploy(
        self,
        campaigns: Iterable[c.CompiledCampaign] | str | Path | Sequence[str | Path],
        *,
        migrate: bool = False,
    ) -> list[DeployResult]:
        """Store compiled campaigns (or compile the given files first) as current versions.

        Running enrollments stay on the version they started on, unless `migrate` is set:
        then they move to the new version at the node of the same name. If any of them waits
        at a node the new version does not have, nothing is deployed and the error says which.
        """
        compiled = _as_campaigns(campaigns)
        return await self.store.call_retrying(self._deploy_sync, compiled, migrate)

    def _deploy_sync(
        self, store: Store, campaigns: list[c.CompiledCampaign], migrate: bool = False
    ) -> list[DeployResult]:
        results: list[DeployResult] = []
        now = self.now()
        with store.session() as session:
            for campaign in campaigns:
                existing = campaign_store.get_campaign(session, self.tenant, campaign.name)
                pending = self._awaits_approval(session, existing, campaign)
                if pending and migrate:
                    raise EngineError(
                        f"cannot migrate {campaign.name!r} to version {campaign.version[:12]}:"
                        " the campaign is live and the new version needs approval; deploy it"
                        f" without --migrate, `cadence approve {campaign.name} --by WHO`,"
                        " then deploy it again with --migrate"
                    )
                older = (
                    campaign_store.campaign_version_ids(session, existing.id)
                    if migrate and existing is not None
                    else []
                )
                if older:
                    # Where the enrollments stand must not change between the check and
                    # the move: a batch stepping them meanwhile would be undone.
                    claims.lock_unfinished_enrollments(session, older)
                    self._check_migration(session, older, campaign)
                deployed = campaign_store.save_campaign_version(
                    session,
                    self.tenant,
                    campaign.name,
                    compiled=campaign.to_data(),
                    content_hash=campaign.version,
                    now=now,
                    display_name=campaign.display_name,
                    pending=pending,
                )
                self._versions[deployed.version_id] = (campaign.name, campaign)
                _audit(
                    session, self.tenant, "deploy", campaign.name,
                    {"version": campaign.version, "new": deployed.created,
                     "pending_approval": pending}, now,
                )  # fmt: skip
                moved = sum(
                    campaign_store.migrate_enrollments(
                        session,
                        version_id,
                        deployed.version_id,
                        now=now,
                        priority=campaign.settings.priority,
                    )
                    for version_id in older
                    if version_id != deployed.version_id
                )
                if older:
                    _audit(session, self.tenant, "migrate", campaign.name, {"moved": moved}, now)
                finished = (
                    existing.status
                    if existing is not None
                    and CampaignStatus(existing.status) in _FINISHED_STATUSES
                    else None
                )
                left = (
                    self._unfinished_elsewhere(session, existing.id, deployed.version_id)
                    if existing is not None and not (migrate or pending) and finished is None
                    else 0
                )
                results.append(
                    DeployResult(
                        campaign.name, campaign.version, deployed.version_id, deployed.created,
                        pending, moved if migrate else None, finished, left,
                    )
                )  # fmt: skip
        return results

    def _unfinished_elsewhere(self, session: Session, campaign_id: int, version_id: int) -> int:
        """A campaign's running and paused enrollments on versions other than `version_id`."""
        others = [v for v in campaign_store.campaign_version_ids(session, campaign_id)
                  if v != version_id]  # fmt: skip
        if not others:
            return 0
        return int(
            session.scalar(
                select(func.count())
                .select_from(Enrollment)
                .where(
                    Enrollment.version_id.in_(others),
                    Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
                )
            )
            or 0
        )

    def _awaits_approval(
        self, session: Session, existing: Campaign | None, campaign: c.CompiledCampaign
    ) -> bool:
        """Whether a new version of a live campaign must wait for approval before it runs.

        Launch checks a draft's approval; a live campaign's new version would reach contacts
        at once (new enrollments join the current version), so it waits when it needs
        approval: `approval required`, or the implied rule when the running version needed
        it (it was approved). A version approved before (a rollback) runs at once.
        """
        if existing is None or CampaignStatus(existing.status) not in _LIVE_STATUSES:
            return False
        rule = campaign.settings.approval
        if rule == "none" or existing.current_version_id is None:
            return False
        running = self._version(session, existing.current_version_id)[1].version
        if running == campaign.version:
            return False
        approved = campaign_store.approvals(session, self.tenant, campaign.name)
        if (campaign.name, campaign.version) in approved:
            return False
        return rule == "required" or (campaign.name, running) in approved

    def _check_migration(
        self, session: Session, versions: Sequence[int], campaign: c.CompiledCampaign
    ) -> None:
        """Refuse a migration that would strand enrollments at nodes the new version lacks."""
        known = {node.id for node in campaign.nodes}
        stranded = session.execute(
            select(Enrollment.node, func.count())
            .where(
                Enrollment.version_id.in_(list(versions)),
                Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
            )
            .group_by(Enrollment.node)
        ).all()
        missing = sorted((node, count) for node, count in stranded if node and node not in known)
        if missing:
            where = ", ".join(f"{count} at `{node}`" for node, count in missing)
            raise EngineError(
                f"cannot migrate {campaign.name!r}: enrollments wait at nodes the new version"
                f" does not have ({where}); deploy without migrating, or keep those steps"
            )

    async def approve(self, name: str, *, by: str, note: str | None = None) -> str:
        """Approve the campaign's version for launch; returns that version's hash.

        That is the version waiting for approval, if a deploy to the live campaign left one
        (it becomes current and runs from now on), else the current version.
        """
        return await self.store.call_retrying(self._approve_sync, name, by, note)

    def _approve_sync(self, store: Store, name: str, by: str, note: str | None) -> str:
        by = by.strip()
        if not by:
            raise EngineError(f"cannot approve {name!r}: say who approves it (`--by WHO`)")
        if len(by) > NAME_LENGTH:
            raise EngineError(
                f"cannot approve {name!r}: the approver's name is longer than {NAME_LENGTH}"
                " characters"
            )
        now = self.now()
        with store.session() as session:
            campaign = self._campaign_named(session, name)
            # A version waiting for approval is the one to approve; approved, it runs.
            pending = campaign.pending_version_id
            if pending is not None:
                compiled = self._version(session, pending)[1]
                version = compiled.version
                campaign.current_version_id = pending
                if compiled.display_name:
                    campaign.display_name = compiled.display_name
                campaign.pending_version_id = None
                campaign.updated_at = now
            else:
                version = self._current(session, campaign)[1].version
            details = {"version": version, "by": by, "note": (note or "").strip() or None}
            _audit(session, self.tenant, "approve", name, details, now, actor=by)
            return version

    async def launch(self, name: str) -> int:
        """Start a campaign: enroll its audience for `on launch` / `at` / `every` triggers.

        Refused (nothing changes) when the tenant already has `max_active_campaigns` active,
        scheduled or paused campaigns, or when the campaign needs approval (`approval
        required`, or no setting and a launch audience above 1,000 contacts) and its current
        version has not been approved (`approve`).
        """
        mark = await self.store.call(_audit_mark)
        return (await self.store.call_retrying(self._launch_sync, name, None, mark))[0]

    async def simulated_launch(
        self, name: str, *, approved_by: str
    ) -> tuple[int, str | None, str | None]:
        """Approve the current version as `approved_by` and launch it, as a dry-run does.

        Returns the enrollments; why a live launch would have been refused without that
        approval (`approval required`, a launch audience above 1,000 contacts), or None;
        and why a live engine would have refused it for the tenant's limit of live
        campaigns (`MAX_ACTIVE_CAMPAIGNS`, whatever this engine's own limit), or None.
        The audience is counted once, for the rule and the enrollment both.
        """
        mark = await self.store.call(_audit_mark)
        return await self.store.call_retrying(self._launch_sync, name, approved_by, mark)

    def _launch_sync(
        self, store: Store, name: str, approved_by: str | None, mark: int
    ) -> tuple[int, str | None, str | None]:
        now = self.now()
        with store.session() as session:
            done = _moved_since(session, self.tenant, "launch", name, mark)
            if done is not None:
                return int(done["enrolled"]), None, None
            campaign = self._campaign_for_move(session, name, "launch")
            version_id, compiled = self._current(session, campaign)
            if timing.campaign_ended(compiled, now):
                # Nobody is enrolled after `ends`: the campaign is over before it began.
                campaign.status = CampaignStatus.COMPLETED.value
                campaign.updated_at = now
                _audit(session, self.tenant, "launch", name, {"enrolled": 0}, now)
                _audit(session, self.tenant, "complete", name, {}, now)
                return 0, None, None
            over_limit = None
            if approved_by is None:
                self._check_campaign_limit(session, name)
            else:
                over_limit = self._campaign_limit_refusal(session, name, MAX_ACTIVE_CAMPAIGNS)
            launching = _launch_triggers(compiled)
            # The audience counted for approval is the one the first trigger enrolls.
            reason, counted = self._check_approval(
                session, campaign, compiled, bool(launching), approved_by
            )
            campaign.status = self._launched_status(session, campaign, now).value
            # Time-dependent segments are read from now on: who already matches at the launch
            # has not entered (see `_sweep_segments_sync`).
            campaign.segments_swept_at = now
            campaign.updated_at = now
            enrolled = 0
            scheduled = campaign.status == CampaignStatus.SCHEDULED.value
            for trigger in launching:
                if scheduled and isinstance(trigger, c.LaunchTriggerModel):
                    continue  # nobody is enrolled before `starts`: its audience is read then
                enrolled += self._enroll_audience(
                    session, version_id, compiled, trigger, now, counted
                )
                counted = None
            _audit(session, self.tenant, "launch", name, {"enrolled": enrolled}, now)
            return enrolled, reason, over_limit

    def _launched_status(
        self, session: Session, campaign: Campaign, now: dt.datetime
    ) -> CampaignStatus:
        """A launched (or resumed) campaign's status: scheduled until its `starts`, then active."""
        compiled = self._current(session, campaign)[1]
        starts = compiled.settings.starts
        if starts is not None and (
            timing.campaign_starts_instant(starts, timing.campaign_zone(compiled)) > now
        ):
            return CampaignStatus.SCHEDULED
        return CampaignStatus.ACTIVE

    def _check_campaign_limit(self, session: Session, name: str) -> None:
        """Refuse a launch that would take the tenant over its limit of live campaigns."""
        refusal = self._campaign_limit_refusal(session, name, self.max_active_campaigns)
        if refusal is not None:
            raise EngineError(
                f"cannot launch {name!r}: {refusal}; cancel one (`cadence cancel NAME`) or"
                " wait for one to complete"
            )

    def _campaign_limit_refusal(self, session: Session, name: str, limit: int | None) -> str | None:
        """Why launching `name` now would take the tenant over `limit` live campaigns (None:
        it would not, or no limit)."""
        if limit is None:
            return None
        live = list(
            session.execute(
                select(Campaign.name, Campaign.status)
                .where(
                    Campaign.tenant_id == self.tenant,
                    Campaign.status.in_([status.value for status in _LIVE_STATUSES]),
                    Campaign.name != name,
                )
                .order_by(Campaign.name)
            )
        )
        if len(live) < limit:
            return None
        counted = ", ".join(f"{other} ({status})" for other, status in live)
        return (
            f"the tenant may have at most {limit} campaigns that are active, scheduled or"
            f" paused, and has {len(live)}: {counted}"
        )

    def _check_approval(
        self,
        session: Session,
        campaign: Campaign,
        compiled: c.CompiledCampaign,
        launching: bool,
        approved_by: str | None,
    ) -> tuple[str | None, list[str] | None]:
        """Refuse a launch that needs approval its current version lacks, unless it is approved
        here (`approved_by`, a dry-run's simulated launch).

        Returns why the launch needed that approval (None: it did not) and the launch audience
        when it had to be computed (to enroll it without computing it again).
        """
        reason, counted = self._approval_reason(session, campaign, compiled, launching)
        if approved_by is not None:
            details = {"version": compiled.version, "by": approved_by, "note": "simulated launch"}
            _audit(session, self.tenant, "approve", campaign.name, details, self.now(),
                   actor=approved_by)  # fmt: skip
        elif reason is not None:
            raise EngineError(
                f"cannot launch {campaign.name!r}: {reason}, and its current version"
                f" ({compiled.version[:12]}) is not approved; approve it first:"
                f" `cadence approve {campaign.name} --by WHO`"
            )
        return reason, counted

    def _approval_reason(
        self, session: Session, campaign: Campaign, compiled: c.CompiledCampaign, launching: bool
    ) -> tuple[str | None, list[str] | None]:
        """Why a launch now needs an approval the current version lacks (None: it does not),
        and the launch audience when it had to be counted."""
        rule = compiled.settings.approval
        if rule == "none":
            return None, None
        if (campaign.name, compiled.version) in campaign_store.approvals(
            session, self.tenant, campaign.name
        ):
            return None, None
        if rule == "required":
            return "it has `approval required`", None
        if not launching:
            return None, None
        counted = self._audience(session, compiled)
        if len(counted) <= IMPLIED_APPROVAL_ABOVE:
            return None, counted
        reason = (
            f"its launch audience of {len(counted):,} contacts is above {IMPLIED_APPROVAL_ABOVE:,}"
        )
        return reason, counted

    async def pause(self, name: str) -> int:
        """Hold every enrollment of the campaign where it is; returns how many were held."""
        return await self._move(name, "pause")

    async def resume(self, name: str) -> int:
        """Continue a paused campaign; waits that fell due meanwhile run at once."""
        return await self._move(name, "resume")

    async def cancel(self, name: str) -> int:
        """Stop a campaign for good; its enrollments are cancelled."""
        return await self._move(name, "cancel")

    async def archive(self, name: str) -> int:
        """Archive a finished or cancelled campaign."""
        return await self._move(name, "archive")

    async def _move(self, name: str, move: str) -> int:
        """A lifecycle move in one transaction, run again after a transient failure."""
        mark = await self.store.call(_audit_mark)
        return await self.store.call_retrying(self._move_sync, name, move, mark)

    def _move_sync(self, store: Store, name: str, move: str, mark: int) -> int:
        now = self.now()
        with store.session() as session:
            done = _moved_since(session, self.tenant, move, name, mark)
            if done is not None:
                return int(done["enrollments"])
            campaign = self._campaign_for_move(session, name, move)
            versions = campaign_store.campaign_version_ids(session, campaign.id)
            count = 0
            details: dict[str, Any] = {}
            if move == "pause":
                if campaign.status == CampaignStatus.SCHEDULED.value:
                    details["was"] = CampaignStatus.SCHEDULED.value
                count = _hold(session, campaign, versions, now)
            elif move == "resume":
                count = campaign_store.release_held_enrollments(session, versions, now=now)
                campaign_store.release_held_sends(session, versions, now=now)
                paused = campaign_store.pause_reasons(session, self.tenant, name).get(name, {})
                if paused.get("was") == CampaignStatus.SCHEDULED.value:
                    # It never started: its start (booking who joined while it was
                    # scheduled) is still to come, now if its `starts` has passed.
                    campaign.status = CampaignStatus.SCHEDULED.value
                    session.flush()
                    self._start_scheduled(session)
                else:
                    campaign.status = self._launched_status(session, campaign, now).value
                    if campaign.status == CampaignStatus.ACTIVE.value:
                        self._book_joined_while_paused(session, campaign, now)
            elif move == "cancel":
                count = campaign_store.cancel_enrollments(session, versions, now=now)
                campaign_store.cancel_pending_sends(session, versions, now=now)
                campaign.status = CampaignStatus.CANCELLED.value
            elif move == "archive":
                campaign.status = CampaignStatus.ARCHIVED.value
            campaign.updated_at = now
            _audit(session, self.tenant, move, name, {"enrollments": count, **details}, now)
            return count

    async def clone(self, name: str, new_name: str) -> DeployResult:
        """Copy a campaign's current version under a new name, as a draft."""
        return await self.store.call_retrying(self._clone_sync, name, new_name)

    def _clone_sync(self, store: Store, name: str, new_name: str) -> DeployResult:
        # The copy is a campaign like any other: `enroll`, `in_campaign(...)` and a file's
        # `campaign NAME` must be able to name it.
        if not IDENTIFIER.fullmatch(new_name) or len(new_name) > NAME_LENGTH:
            raise EngineError(
                f"{new_name!r} is not a campaign name: lowercase letters, digits and _,"
                f" starting with a letter or _, at most {NAME_LENGTH} characters"
            )
        with store.session() as session:
            source = campaign_store.get_campaign(session, self.tenant, name)
            if source is None:
                raise EngineError(f"no campaign named {name!r}")
            if campaign_store.get_campaign(session, self.tenant, new_name) is not None:
                raise EngineError(f"a campaign named {new_name!r} already exists")
            _, compiled = self._current(session, source)
        data = compiled.content()
        data["name"] = new_name
        copy = c.CompiledCampaign.model_validate(data)
        (result,) = self._deploy_sync(store, [copy])
        return result

    async def status(self) -> list[dict[str, Any]]:
        """Every campaign with its status, version, approval, enrollment counts and A/B tests.

        `approval` says in words whether the current version needs approval and who
        approved it; `approved_by` is the approver's name, or None. `pause` is, for a
        paused campaign, its latest pause's audit details (why it paused).
        """
        return await self.store.call(self._status_sync)

    def _status_sync(self, store: Store) -> list[dict[str, Any]]:
        with store.session() as session:
            self._start_scheduled(session)
            counts = campaign_store.enrollment_counts(session, self.tenant)
            ab_tests = campaign_store.ab_verdicts(session, self.tenant)
            pauses = campaign_store.pause_reasons(session, self.tenant)
            approvals = campaign_store.approvals(session, self.tenant)
            rows = session.execute(
                select(
                    Campaign.name,
                    Campaign.display_name,
                    Campaign.status,
                    CampaignVersion.content_hash,
                    Campaign.current_version_id,
                    Campaign.pending_version_id,
                )
                .join(
                    CampaignVersion, CampaignVersion.id == Campaign.current_version_id, isouter=True
                )
                .where(Campaign.tenant_id == self.tenant)
                .order_by(Campaign.name)
            ).all()
            sent = dict(
                session.execute(
                    select(Campaign.name, func.count(OutboxMessage.id))
                    .join(CampaignVersion, CampaignVersion.campaign_id == Campaign.id)
                    .join(OutboxMessage, OutboxMessage.version_id == CampaignVersion.id)
                    .where(Campaign.tenant_id == self.tenant)
                    .group_by(Campaign.name)
                ).all()
            )
            rules = {
                name: self._version(session, version_id)[1].settings.approval
                for name, _, _, _, version_id, _ in rows
                if version_id is not None
            }
            waiting = {
                name: self._version(session, pending_id)[1].version[:12]
                for name, *_, pending_id in rows
                if pending_id is not None
            }
        result = []
        for name, display, status, version, _, _ in rows:
            approval = approvals.get((name, version or ""))
            approved_by = str(approval["by"]) if approval else None
            result.append({
                "name": name,
                "display_name": display,
                "status": status,
                "version": (version or "")[:12],
                "approval": _approval_text(rules.get(name, "implied"), approved_by),
                "approved_by": approved_by,
                "pending_approval": waiting.get(name),
                "enrollments": counts.get(name, {}),
                "sends": int(sent.get(name, 0)),
                "ab_tests": ab_tests.get(name, []),
                "pause": pauses.get(name) if status == CampaignStatus.PAUSED.value else None,
            })  # fmt: skip
        return result

    async def report(self, names: Sequence[str] | None = None) -> list[CampaignReport]:
        """Each campaign's performance (docs/analytics.md): sends, deliveries, engagement,
        conversions, cost and ROI, in total and by template and variant. An unknown name is
        an error, with the nearest name as a hint."""
        return await self.store.call(self._report_sync, list(names) if names else None)

    def _report_sync(self, store: Store, names: list[str] | None) -> list[CampaignReport]:
        with store.session() as session:
            for name in names or ():
                self._campaign_named(session, name)
            return analytics.campaign_reports(session, self.tenant, names)

    def _campaign_named(self, session: Session, name: str) -> Campaign:
        """The tenant's campaign `name`, or an error with the nearest name as a hint."""
        campaign = campaign_store.get_campaign(session, self.tenant, name)
        if campaign is None:
            known = list(
                session.scalars(select(Campaign.name).where(Campaign.tenant_id == self.tenant))
            )
            hint = did_you_mean(name, known)
            raise EngineError(f"no campaign named {name!r}" + (f"; {hint}" if hint else ""))
        return campaign

    def _campaign_for_move(self, session: Session, name: str, move: str) -> Campaign:
        campaign = self._campaign_named(session, name)
        status = CampaignStatus(campaign.status)
        if status not in _ALLOWED_MOVES[move]:
            hint = ""
            if move == "launch" and status in _FINISHED_STATUSES:
                hint = (
                    f"; a campaign runs once: to run it again, clone it under a new name"
                    f" (`cadence clone {name} NEW_NAME`) and launch that"
                )
            raise EngineError(f"cannot {move} {name!r}: it is {campaign.status}{hint}")
        return campaign

    def _current(self, session: Session, campaign: Campaign) -> tuple[int, c.CompiledCampaign]:
        if campaign.current_version_id is None:
            raise EngineError(f"campaign {campaign.name!r} has no deployed version")
        return campaign.current_version_id, self._version(session, campaign.current_version_id)[1]

    def _version(self, session: Session, version_id: int) -> tuple[str, c.CompiledCampaign]:
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        row = session.get(CampaignVersion, version_id)
        if row is None:
            raise StoreError(f"campaign version {version_id} is missing")
        compiled = c.CompiledCampaign.model_validate(row.compiled)
        self._versions[version_id] = (compiled.name, compiled)
        return self._versions[version_id]

    def _active_versions(self, session: Session) -> list[tuple[int, c.CompiledCampaign]]:
        """Current versions of the campaigns that take new enrollments now."""
        self._start_scheduled(session)
        rows = session.execute(
            select(Campaign.current_version_id).where(
                Campaign.tenant_id == self.tenant,
                Campaign.status == CampaignStatus.ACTIVE.value,
                Campaign.current_version_id.is_not(None),
            )
        ).all()
        return [(vid, self._version(session, vid)[1]) for (vid,) in rows if vid is not None]

    def _start_scheduled_sync(self, store: Store) -> None:
        with store.session() as session:
            self._start_scheduled(session)

    def _start_scheduled(self, session: Session) -> None:
        """Make scheduled campaigns whose `starts` has come active, so their triggers fire.

        A campaign launched before its `starts` waits as scheduled; from that instant
        (campaign timezone) on it takes enrollments like any active campaign.
        """
        now = self.now()
        scheduled = session.execute(
            select(Campaign.id, Campaign.name, Campaign.current_version_id).where(
                Campaign.tenant_id == self.tenant,
                Campaign.status == CampaignStatus.SCHEDULED.value,
                Campaign.current_version_id.is_not(None),
            )
        ).all()
        for campaign_id, name, version_id in scheduled:
            if version_id is None:
                continue
            compiled = self._version(session, version_id)[1]
            starts = compiled.settings.starts
            start = (
                timing.campaign_starts_instant(starts, timing.campaign_zone(compiled))
                if starts is not None
                else now
            )
            if start > now:
                continue
            # Only the worker whose update finds it still scheduled records the start.
            started = session.execute(
                update(Campaign)
                .where(
                    Campaign.id == campaign_id,
                    Campaign.status == CampaignStatus.SCHEDULED.value,
                )
                .values(status=CampaignStatus.ACTIVE.value, updated_at=now)
                .execution_options(synchronize_session="fetch")
            )
            if started.rowcount:  # type: ignore[attr-defined]
                _audit(session, self.tenant, "start", name, {}, now)
                # Contacts who joined the audience while it was scheduled join its `at` /
                # `every` runs (those booked at the launch are left as they are), from
                # `starts`: a start made late (a pause held it) gives them the runs since
                # then at once, as it gives those booked at the launch. `on launch` takes
                # its audience as it is now, its start.
                for trigger in _launch_triggers(compiled):
                    self._enroll_audience(
                        session, version_id, compiled, trigger, now, due_from=start
                    )

    # ------------------------------------------------------------------ enrollment

    def _audience(
        self,
        session: Session,
        campaign: c.CompiledCampaign,
        candidates: Iterable[str] | None = None,
    ) -> list[str]:
        """Contacts matching the campaign's audience and not its exclusions, now.

        The audience and the exclusion each go to the dispatch core's segment filter over
        the batch's attributes and the `count(EVENT, DUR)` columns counted from each
        contact's evaluator context (so they count as the evaluator does); what the filter
        cannot read falls back to the evaluator, on the same contexts.
        """
        if candidates is None:
            candidates = session.scalars(select(Contact.id).where(Contact.tenant_id == self.tenant))
        # In contact-id order (Python's, not a collation's): contacts enrolled at one instant
        # are stepped in the order they are enrolled, which decides who takes a split's
        # places, a budget's last cent or a cap's last send. A store's unordered scan
        # (SQLite's key order, PostgreSQL's insertion order) or a file's order would make a
        # dry-run and a live run, or two stores, pick different contacts.
        ids = sorted(candidates)
        settings = campaign.settings
        if settings.audience is None and settings.exclude is None:
            return ids
        now = self.now()
        segments = evaluate.segments_of(campaign)
        # Histories are read only when the audience or the exclusion reads them (a score,
        # `opened(T)`, `in_campaign` ...): most audiences are attributes alone.
        kinds = frozenset().union(
            *(
                reads.expr_reads(c.model_to_expr(expr), segments, campaign.scores)
                for expr in (settings.audience, settings.exclude)
                if expr is not None
            )
        )
        names = self._names_by_version(session) if CAMPAIGNS in kinds else None
        matched: list[str] = []
        for chunk in _chunks(ids, max(self.batch_size, 5000)):
            contexts, rows = conditions.chunk_contexts(
                session, self.tenant, chunk, campaign, now, kinds, names
            )

            for key, keep in (("audience", True), ("exclude", False)):
                expr = getattr(settings, key)
                if expr is None:
                    continue
                chosen = set(
                    audience.select(
                        c.model_to_expr(expr), rows, now=now, segments=segments,
                        fallback=functools.partial(
                            conditions.holds_for, contexts=contexts, expr=expr
                        ),
                        context=functools.partial(conditions.eval_context_of, contexts=contexts),
                        scores=campaign.scores,
                    ).contact_ids
                )  # fmt: skip
                rows = [row for row in rows if (row[0] in chosen) == keep]
            matched.extend(cid for cid, _ in rows)
        return matched

    def _names_by_version(self, session: Session) -> dict[int, str]:
        return {
            vid: name
            for vid, name in session.execute(
                select(CampaignVersion.id, Campaign.name)
                .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
                .where(Campaign.tenant_id == self.tenant)
            )
        }

    def _enroll_audience(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        trigger: c.LaunchTriggerModel | c.AtTriggerModel | c.EveryTriggerModel,
        now: dt.datetime,
        audience: list[str] | None = None,
        *,
        due_from: dt.datetime | None = None,
    ) -> int:
        """Enroll the campaign's audience (`audience` if already computed now) for a trigger.

        An `every` trigger books each contact's first run of the campaign's series (counted
        from `_series_start`) at or after `due_from` (default now).
        """
        if audience is None:
            audience = self._audience(session, campaign)
        if isinstance(trigger, c.LaunchTriggerModel):
            return len(
                campaign_store.enroll_contacts(
                    session, self.tenant, version_id, audience, node=trigger.entry, due_at=now,
                    now=now, state={"trigger": trigger.id}, priority=campaign.settings.priority,
                )
            )  # fmt: skip
        zones = self._zones(session, audience, campaign)
        # Only an `every` trigger has a series; the launch it counts from is read from the log.
        series_start = (
            self._series_start(session, campaign, now)
            if isinstance(trigger, c.EveryTriggerModel)
            else now
        )
        firsts: dict[Any, dt.datetime | None] = {}
        by_due: dict[dt.datetime, list[str]] = {}
        for contact_id in audience:
            zone = zones[contact_id]
            if zone not in firsts:
                firsts[zone] = _first_occurrence(
                    trigger, zone, campaign, now, series_start, due_from or now
                )
            first = firsts[zone]
            if first is not None:
                by_due.setdefault(first, []).append(contact_id)
        enrolled = 0
        for due, ids in sorted(by_due.items()):
            # `not_before` keeps a booked run from starting early if an event wakes it.
            enrolled += len(
                campaign_store.enroll_contacts(
                    session, self.tenant, version_id, ids, node=trigger.entry, due_at=due,
                    now=now, state={"trigger": trigger.id, "not_before": due.isoformat()},
                    priority=campaign.settings.priority,
                )
            )  # fmt: skip
        return enrolled

    def _series_start(
        self, session: Session, campaign: c.CompiledCampaign, now: dt.datetime
    ) -> dt.datetime:
        """Where the campaign's `every` runs count from: its launch (`now` while it launches),
        or `starts` when later; a contact who joins later joins that series."""
        launched = campaign_store.launched_at(session, self.tenant, campaign.name)
        begin = as_utc(launched) if launched is not None else now
        if campaign.settings.starts is not None:
            zone = timing.campaign_zone(campaign)
            begin = max(begin, timing.campaign_starts_instant(campaign.settings.starts, zone))
        return begin

    def _zones(
        self, session: Session, contact_ids: Sequence[str], campaign: c.CompiledCampaign
    ) -> dict[str, Any]:
        zones: dict[str, Any] = {}
        for chunk in _chunks(list(contact_ids), self.batch_size):
            for contact_id, zone in session.execute(
                select(Contact.id, Contact.timezone).where(
                    Contact.tenant_id == self.tenant, Contact.id.in_(chunk)
                )
            ):
                zones[contact_id] = timing.contact_zone_in(campaign, zone)
        return zones

    # ------------------------------------------------------------------ data in

    async def upsert_contacts(
        self,
        contacts: Iterable[Mapping[str, Any]],
        *,
        schema: Any = None,
        skip_invalid: bool = False,
    ) -> importer.ImportReport:
        """Create or update contacts; new ones enter `on contact_created` campaigns."""
        rows = importer.mapping_rows(contacts, "contact", "<rows>")
        report = await self.store.call(self._upsert_contacts_sync, rows, schema, skip_invalid)
        self._nudge.set()
        return report

    def _upsert_contacts_sync(
        self, store: Store, contacts: list[Mapping[str, Any]], schema: Any, skip_invalid: bool
    ) -> importer.ImportReport:
        before_written, on_written = self._contact_triggers()
        return importer.upsert_contact_dicts(
            store, contacts, schema=schema, tenant_id=self.tenant, skip_invalid=skip_invalid,
            now=self.now(), on_written=on_written, before_written=before_written,
        )  # fmt: skip

    def _contact_triggers(self) -> tuple[importer.BeforeWritten, importer.OnWritten]:
        """An import's hooks that trigger on each chunk of contacts it writes, in its
        transaction: both commit, or neither.

        Before a chunk is written, its contacts' segment memberships (version, trigger,
        contact) are read: a contact already in a segment does not enter it again.
        """
        chunks = _ImportChunks(self)

        def written(session: Session, report: importer.ImportReport) -> None:
            created, updated = report.created_ids, report.updated_ids
            active = chunks.active(session)
            self._after_contacts_changed_in(session, created, updated, chunks.before, active)
            self._rebook_local_times(session, report.previous_zones, self.now())

        return chunks.read_before, written

    def _rebook_local_times(
        self, session: Session, previous_zones: Mapping[str, str | None], now: dt.datetime
    ) -> None:
        """Read the local times a contact's sleeping enrollments wait for again in a new zone.

        `previous_zones` holds the timezone each contact had before this write, for those
        whose timezone it changed. An `at ... local` run, a `wait until 09:00 local` or a send
        held for a `local` window was booked as an instant in the old zone; the contact now
        expects it by their new clock (`stepper.rezone`). Enrollments a worker's batch holds
        are left to it, as in `_wake_reactive`: that batch reads the contact after this commit.
        """
        if not previous_zones:
            return
        stamp = now.isoformat()
        for chunk in _chunks(sorted(previous_zones), self.batch_size):
            zones: dict[str, str | None] = {
                contact_id: zone
                for contact_id, zone in session.execute(
                    select(Contact.id, Contact.timezone).where(
                        Contact.tenant_id == self.tenant, Contact.id.in_(chunk)
                    )
                )
            }
            sleeping = session.scalars(
                select(Enrollment)
                .where(
                    Enrollment.tenant_id == self.tenant,
                    Enrollment.contact_id.in_(chunk),
                    Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
                )
                .order_by(Enrollment.id)
                .with_for_update(skip_locked=True)
            )
            for enrollment in sleeping:
                if enrollment.due_at is None or as_utc(enrollment.due_at) <= now:
                    continue
                _, campaign = self._version(session, enrollment.version_id)
                old_zone = timing.contact_zone_in(campaign, previous_zones[enrollment.contact_id])
                new_zone = timing.contact_zone_in(campaign, zones.get(enrollment.contact_id))
                if old_zone == new_zone:
                    continue
                moved = stepper.rezone(
                    campaign, enrollment.node, enrollment.state, old_zone, new_zone, now
                )
                if moved is None or moved[0] == as_utc(enrollment.due_at):
                    continue
                enrollment.due_at, enrollment.state = moved
                enrollment.history = [
                    *enrollment.history,
                    [stamp, enrollment.node, f"timezone changed: due {moved[0].isoformat()}"],
                ]
                enrollment.updated_at = now

    # ------------------------------------------------------------------ agents

    async def add_agent(self, name: str, *, email: str | None = None) -> None:
        """Add a salesperson `assign agent round_robin` hands contacts to (or update one).

        An agent taken off (`remove_agent`) and added again is back in the rotation.
        """
        name = _checked_agent_name(name)
        if email is not None:
            email = email.strip() or None
            if email is not None and ("@" not in email or len(email) > 320):
                raise EngineError(f"agent {name!r}: {email!r} is not an email address")
        await self.store.call_retrying(self._add_agent_sync, name, email)

    def _add_agent_sync(self, store: Store, name: str, email: str | None) -> None:
        now = self.now()
        with store.session() as session:
            agent_store.add_agent(session, self.tenant, name, now=now, email=email)
            campaign_store.record_audit(
                session, self.tenant, actor="engine", action="agent_add", subject_type="agent",
                subject_id=name, now=now, details={"email": email},
            )  # fmt: skip

    async def remove_agent(self, name: str) -> None:
        """Take an agent out of the rotation; contacts already assigned keep their agent."""
        await self.store.call_retrying(self._remove_agent_sync, _checked_agent_name(name))

    def _remove_agent_sync(self, store: Store, name: str) -> None:
        now = self.now()
        with store.session() as session:
            if not agent_store.set_agent_active(session, self.tenant, name, False):
                known = [agent.name for agent in agent_store.list_agents(session, self.tenant)]
                hint = did_you_mean(name, known)
                raise EngineError(f"no agent named {name!r}" + (f"; {hint}" if hint else ""))
            campaign_store.record_audit(
                session, self.tenant, actor="engine", action="agent_remove", subject_type="agent",
                subject_id=name, now=now, details={},
            )  # fmt: skip

    async def agents(self) -> list[dict[str, Any]]:
        """The tenant's agents: name, email and whether they are in the rotation."""
        return await self.store.call(self._agents_sync)

    def _agents_sync(self, store: Store) -> list[dict[str, Any]]:
        with store.session() as session:
            return [
                {"name": agent.name, "email": agent.email, "active": agent.active}
                for agent in agent_store.list_agents(session, self.tenant)
            ]

    async def inbox(
        self, contact_id: str, *, unread_only: bool = False, limit: int = 50
    ) -> list[dict[str, Any]]:
        """A contact's in-app inbox, newest first: what `send inbox` delivered to them."""
        if limit <= 0:
            raise EngineError(f"inbox limit must be positive, not {limit}")
        return await self.store.call_retrying(self._inbox_sync, contact_id, unread_only, limit)

    def _inbox_sync(
        self, store: Store, contact_id: str, unread_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        statement = select(InboxMessage).where(
            InboxMessage.tenant_id == self.tenant, InboxMessage.contact_id == contact_id
        )
        if unread_only:
            statement = statement.where(InboxMessage.read_at.is_(None))
        with store.session() as session:
            return [
                {
                    "id": row.id, "campaign": row.campaign, "template": row.template,
                    "subject": row.subject, "text": row.text, "html": row.html,
                    "created_at": row.created_at, "read_at": row.read_at,
                }
                for row in session.scalars(
                    statement.order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
                    .limit(limit)
                )
            ]  # fmt: skip

    async def mark_inbox_read(self, contact_id: str, message_ids: Sequence[int]) -> int:
        """Mark a contact's inbox messages read (as the app reports); returns how many were
        unread. Another contact's ids are left alone."""
        return await self.store.call_retrying(self._mark_read_sync, contact_id, list(message_ids))

    def _mark_read_sync(self, store: Store, contact_id: str, message_ids: list[int]) -> int:
        if not message_ids:
            return 0
        with store.session() as session:
            result = session.execute(
                update(InboxMessage)
                .where(
                    InboxMessage.tenant_id == self.tenant,
                    InboxMessage.contact_id == contact_id,
                    InboxMessage.id.in_(message_ids),
                    InboxMessage.read_at.is_(None),
                )
                .values(read_at=self.now())
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def set_consent(
        self, contact_id: str, channel: str, status: str, *, source: str | None = None
    ) -> ConsentChange:
        """Record a contact's consent on a channel (docs/embedding.md); `pending` starts a
        double opt-in and returns the token its confirmation link carries. An unknown
        contact, channel or status raises `EngineError` and records nothing."""
        return await self.store.call_retrying(
            self._set_consent_sync, contact_id, channel, status, source
        )

    def _set_consent_sync(
        self, store: Store, contact_id: str, channel: str, status: str, source: str | None
    ) -> ConsentChange:
        now = self.now()
        with store.session() as session:
            try:
                change, event = consent.record(
                    session, self.tenant, contact_id, channel, status, source=source, now=now
                )
            except consent.ConsentError as exc:
                raise EngineError(str(exc)) from None
            self._consent_written(session, change, event, now)
            return change

    async def confirm_opt_in(self, token: str) -> ConsentChange | None:
        """Grant the double opt-in waiting on `token`, once; None for an unknown or used one,
        and the still pending consent marked `expired` for a token past its period (nothing
        changes)."""
        return await self.store.call_retrying(self._confirm_opt_in_sync, token)

    def _confirm_opt_in_sync(self, store: Store, token: str) -> ConsentChange | None:
        now = self.now()
        with store.session() as session:
            confirmed = consent.confirm(session, self.tenant, token, now)
            if confirmed is None:
                return None
            change, event = confirmed
            if event is not None:
                self._consent_written(session, change, event, now)
            return change

    def _consent_written(
        self, session: Session, change: ConsentChange, event: EventRecord, now: dt.datetime
    ) -> None:
        """Store a consent's event in its transaction; it fires what it triggers."""
        self._own_events_written(session, change.contact_id, [event], now)

    def _own_events_written(
        self, session: Session, contact_id: str, events: Sequence[EventRecord], now: dt.datetime
    ) -> None:
        """Store events the engine made about one contact in the transaction at hand; they
        fire what they trigger."""
        before = self._segment_members(session, [contact_id])
        fresh, _ = importer.insert_events(session, self.tenant, events, now=now)
        self._events_written(session, fresh, now, before)

    async def pending_opt_in(self, token: str) -> ConsentChange | None:
        """The double opt-in `token` would confirm (nothing changes), marked `expired` when the
        token is past its period; None if there is none."""
        return await self.store.call(self._pending_sync, token)

    def _pending_sync(self, store: Store, token: str) -> ConsentChange | None:
        with store.session() as session:
            return consent.pending(session, self.tenant, token, self.now())

    async def consents(self, contact_id: str) -> dict[str, ConsentStatus]:
        """The contact's recorded consents, by channel."""
        return await self.store.call(self._consents_sync, contact_id)

    def _consents_sync(self, store: Store, contact_id: str) -> dict[str, ConsentStatus]:
        with store.session() as session:
            return consent.statuses(session, self.tenant, contact_id)

    async def send_contact(self, key: str) -> str | None:
        """Whom the send with this idempotency key went to (None: no such send here).

        A tracking link names its send only; the service asks this before recording
        anything for it, so a link to a send the store lacks writes nothing.
        """
        return await self.store.call(self._send_contact_sync, key)

    def _send_contact_sync(self, store: Store, key: str) -> str | None:
        with store.session() as session:
            return session.scalar(
                select(OutboxMessage.contact_id).where(
                    OutboxMessage.tenant_id == self.tenant, OutboxMessage.idempotency_key == key
                )
            )

    async def sent_message(self, key: str) -> OutgoingMessage | None:
        """The send with this idempotency key as the sink saw it (None: no such send here).

        For a message's web version: the service renders it again from what was sent.
        """
        return await self.store.call(self._sent_message_sync, key)

    def _sent_message_sync(self, store: Store, key: str) -> OutgoingMessage | None:
        with store.session() as session:
            row = session.execute(
                select(*_MESSAGE_COLUMNS).where(
                    OutboxMessage.tenant_id == self.tenant, OutboxMessage.idempotency_key == key
                )
            ).first()
            return None if row is None else self._message(session, row, int(row.attempts))

    async def preferences(self, contact_id: str) -> list[ChannelChoice] | None:
        """The contact's channels as their preference page shows them (None: no such contact)."""
        return await self.store.call(self._preferences_sync, contact_id)

    def _preferences_sync(self, store: Store, contact_id: str) -> list[ChannelChoice] | None:
        with store.session() as session:
            return read_choices(session, self.tenant, contact_id, self.now())

    async def change_channels(
        self,
        contact_id: str,
        key: str,
        decide: Callable[[list[ChannelChoice]], list[tuple[str, str]]],
        *,
        via: str,
    ) -> list[ChannelChoice] | None:
        """A person's own change of channels from a link in the send `key` (an unsubscribe,
        their preference page): `decide(choices)` names the `(event, channel)` pairs to store
        from their channels as they stand, read in the transaction that stores the events
        and holding the contact's row, so two presses at once cannot both find a channel on
        and both store its `unsubscribed`. Returns the channels after (None: no such contact).
        """
        after = await self.store.call_retrying(
            self._change_channels_sync, contact_id, key, decide, via
        )
        self._nudge.set()  # an enrollment waiting for the event goes on at once
        return after

    def _change_channels_sync(
        self,
        store: Store,
        contact_id: str,
        key: str,
        decide: Callable[[list[ChannelChoice]], list[tuple[str, str]]],
        via: str,
    ) -> list[ChannelChoice] | None:
        now = self.now()
        with store.session() as session:
            claims.lock_contacts(session, tenant_id=self.tenant, contact_ids=[contact_id])
            choices = read_choices(session, self.tenant, contact_id, now)
            made = [] if choices is None else decide(choices)
            if not made:
                return choices
            records = [
                (
                    0,
                    EventRecord(
                        contact_id, name, now, {"send": key, "channel": channel, "via": via}
                    ),
                )
                for name, channel in made
            ]
            events = [event for _, event in importer.link_to_sends(session, self.tenant, records)]
            self._own_events_written(session, contact_id, events, now)
            return read_choices(session, self.tenant, contact_id, now)

    async def contact_ids(self) -> list[str]:
        """Every contact id of the tenant, sorted."""
        return await self.store.call(self._contact_ids_sync)

    def _contact_ids_sync(self, store: Store) -> list[str]:
        with store.session() as session:
            return self._contact_ids(session)

    def _contact_ids(self, session: Session) -> list[str]:
        """Every contact id of the tenant, sorted."""
        return list(
            session.scalars(
                select(Contact.id).where(Contact.tenant_id == self.tenant).order_by(Contact.id)
            )
        )

    async def treat_as_new(self, contact_ids: Sequence[str], *, launched: bool = False) -> None:
        """Fire `on contact_created` (and segment entry) for contacts that already exist.

        A dry-run imports its contacts before launching, so that `on launch` audiences see
        them; this lets the campaigns that start with a new contact see them too. With
        `launched`, the contacts were there when the campaigns launched: one already in an
        `on segment_enter` segment then did not enter it, and is not enrolled by it.
        """
        await self.store.call(self._treat_as_new_sync, list(contact_ids), launched)

    def _treat_as_new_sync(self, store: Store, contact_ids: list[str], launched: bool) -> None:
        with store.session() as session:
            before = self._segment_members(session, contact_ids) if launched else frozenset()
            self._after_contacts_changed_in(session, contact_ids, [], before)

    async def import_contacts(
        self, path: str | Path, *, schema: Any = None, skip_invalid: bool = False
    ) -> importer.ImportReport:
        """Import a CSV or JSON Lines file of contacts (see `cadence contacts import`).

        Problems name the file's own line numbers and columns; the contacts and the
        enrollments they trigger are written in one transaction.
        """

        before_written, on_written = self._contact_triggers()
        return await self.store.call(
            importer.import_contacts, path, schema=schema, tenant_id=self.tenant,
            skip_invalid=skip_invalid, now=self.now(), on_written=on_written,
            before_written=before_written,
        )  # fmt: skip

    def _after_contacts_changed_in(
        self,
        session: Session,
        created: Sequence[str],
        updated: Sequence[str],
        before: Collection[tuple[int, str, str]] = frozenset(),
        active: Sequence[tuple[int, c.CompiledCampaign]] | None = None,
    ) -> None:
        """Enroll new contacts in `on contact_created` campaigns; re-check segment entry.

        `before` are the segment memberships (version, trigger, contact) held before the
        change; only a contact not among them enters. `active`: the active campaigns, when
        the caller read them already (an import, once for all its chunks).
        """
        now = self.now()
        created, updated = list(created), list(updated)
        if active is None:
            active = self._active_versions(session)
        for version_id, campaign in active:
            for trigger in campaign.triggers:
                if (
                    isinstance(trigger, c.ContactCreatedTriggerModel)
                    and created
                    and not timing.campaign_ended(campaign, now)
                ):
                    audience = self._audience(session, campaign, created)
                    campaign_store.enroll_contacts(
                        session, self.tenant, version_id, audience, node=trigger.entry,
                        due_at=now, now=now, state={"trigger": trigger.id},
                        priority=campaign.settings.priority,
                    )  # fmt: skip
                elif isinstance(trigger, c.AtTriggerModel | c.EveryTriggerModel) and (
                    created or updated
                ):
                    self._book_new_contacts(
                        session, version_id, campaign, trigger, created + updated, now
                    )
                elif isinstance(trigger, c.SegmentEnterTriggerModel) and (created or updated):
                    self._segment_enter(
                        session, version_id, campaign, trigger, created + updated, now, before
                    )
        # A changed attribute may reach a goal (`goal converted`) or what a `wait for` waits
        # for: those enrollments step now rather than at the end of their wait.
        self._wake_reactive(session, set(updated), now, skip_locked=True)

    def _book_joined_while_paused(
        self, session: Session, campaign: Campaign, now: dt.datetime
    ) -> None:
        """Who joined a resumed campaign's audience while it was paused joins its `at` /
        `every` runs still to come, as one who joined while it ran would have; those
        already booked are left as they are."""
        version_id, compiled = self._current(session, campaign)
        scheduled = [
            trigger
            for trigger in compiled.triggers
            if isinstance(trigger, c.AtTriggerModel | c.EveryTriggerModel)
        ]
        contact_ids = self._contact_ids(session) if scheduled else []
        for trigger in scheduled:
            self._book_new_contacts(session, version_id, compiled, trigger, contact_ids, now)

    def _book_new_contacts(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        trigger: c.AtTriggerModel | c.EveryTriggerModel,
        created: Sequence[str],
        now: dt.datetime,
    ) -> None:
        """A contact created, or joining the audience, after the launch joins the runs to come.

        Contacts already booked (their first run is enrolled) are left alone by
        `enroll_contacts`; those not in the audience now are not booked.
        """
        audience = self._audience(session, campaign, created)
        if isinstance(trigger, c.AtTriggerModel):
            zones = self._zones(session, audience, campaign)
            campaign_zone = timing.campaign_zone(campaign)
            audience = [
                cid
                for cid in audience
                if timing.at_trigger_instant(
                    trigger.at, trigger.local, zones[cid] if trigger.local else campaign_zone
                )
                >= now
            ]
        if audience:
            self._enroll_audience(session, version_id, campaign, trigger, now, audience)

    def _segment_enter(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        trigger: c.SegmentEnterTriggerModel,
        contact_ids: Sequence[str],
        now: dt.datetime,
        before: Collection[tuple[int, str, str]],
    ) -> int:
        """Enroll the contacts that match the segment now and did not before the change."""
        segment = campaign.segments.get(trigger.segment)
        if segment is None:
            return 0
        candidates = [cid for cid in contact_ids if (version_id, trigger.id, cid) not in before]
        audience = self._audience(session, campaign, candidates)
        facts = load_facts(session, self.tenant, audience)
        entering = [
            cid for cid in audience
            if cid in facts and conditions.Context(facts[cid], campaign, now).holds(segment.expr)
        ]  # fmt: skip
        return self._enroll_triggered(session, version_id, campaign, trigger, entering, now, {})

    def _segment_members_sync(
        self, store: Store, contact_ids: Sequence[str]
    ) -> frozenset[tuple[int, str, str]]:
        """Which of the contacts are in the segment of each active `on segment_enter`, now.

        Read before contacts or events are written, so the write can tell who entered.
        """
        if not contact_ids:
            return frozenset()
        with store.session() as session:
            return self._segment_members(session, contact_ids)

    def _segment_members(
        self,
        session: Session,
        contact_ids: Sequence[str],
        active: Sequence[tuple[int, c.CompiledCampaign]] | None = None,
    ) -> frozenset[tuple[int, str, str]]:
        now = self.now()
        members: set[tuple[int, str, str]] = set()
        watched = [
            (version_id, campaign, trigger, campaign.segments[trigger.segment])
            for version_id, campaign in (
                self._active_versions(session) if active is None else active
            )
            for trigger in campaign.triggers
            if isinstance(trigger, c.SegmentEnterTriggerModel)
            and trigger.segment in campaign.segments
        ]
        if not watched:
            return frozenset()
        for chunk in _chunks(sorted(set(contact_ids)), self.batch_size):
            facts = load_facts(session, self.tenant, chunk)
            for version_id, campaign, trigger, segment in watched:
                members.update(
                    (version_id, trigger.id, cid)
                    for cid, fact in facts.items()
                    if conditions.Context(fact, campaign, now).holds(segment.expr)
                )
        return frozenset(members)

    def _enroll_triggered(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        trigger: c.TriggerModel,
        contact_ids: Sequence[str],
        now: dt.datetime,
        event: dict[str, Any],
    ) -> int:
        """Enroll contacts a trigger fired for, once per version unless re-entry is allowed.

        Nobody is enrolled once the campaign has ended: it may still be active while earlier
        journeys finish, but a late trigger makes no enrollment that could only exit.
        """
        if not contact_ids or timing.campaign_ended(campaign, now):
            return 0
        state = {"trigger": trigger.id, "event": event}
        mode = campaign.settings.reenter.mode
        if mode == "never" and isinstance(trigger, c.EventTriggerModel) and trigger.fanout:
            # An event about a thing (a listing, a price drop) is news each time: every such
            # event reaches every contact it matches, as `reenter always` would have it.
            mode = "always"
        return self._enroll_entering(
            session, version_id, campaign, contact_ids, trigger.entry, now, state, mode
        )

    def _enroll_entering(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        contact_ids: Sequence[str],
        entry: str | None,
        now: dt.datetime,
        state: dict[str, Any],
        mode: str,
    ) -> int:
        """Enroll contacts at `entry` under the campaign's re-entry rule (`mode`): once ever
        (`never`), a journey per entry (`always`), or again once `reenter after` has passed."""
        reenter = campaign.settings.reenter
        if mode == "never":
            return len(
                campaign_store.enroll_contacts(
                    session, self.tenant, version_id, contact_ids, node=entry, due_at=now,
                    now=now, state=state, priority=campaign.settings.priority,
                )
            )  # fmt: skip
        enrolled = 0
        # Each firing takes the occurrence after the contact's last: two firings at once
        # (two workers) would both take the same one, and the second journey would be lost
        # to the first's row. Their contacts' rows serialize them.
        claims.lock_contacts(session, tenant_id=self.tenant, contact_ids=contact_ids)
        last = self._last_occurrences(session, version_id, contact_ids)
        for contact_id in contact_ids:
            previous = last.get(contact_id)
            occurrence = 0
            if previous is not None:
                # `reenter always`: every firing is its own journey, even beside a running one;
                # `reenter after D`: not again until D after the last entry.
                number, created, _status = previous
                if mode == "after" and now - as_utc(created) < dt.timedelta(
                    seconds=reenter.after_seconds or 0
                ):
                    continue
                occurrence = number + 1
            enrolled += len(
                campaign_store.enroll_contacts(
                    session, self.tenant, version_id, [contact_id], node=entry,
                    due_at=now, now=now, occurrence=occurrence, state=state,
                    priority=campaign.settings.priority,
                )
            )  # fmt: skip
        return enrolled

    def _last_occurrences(
        self, session: Session, version_id: int, contact_ids: Sequence[str]
    ) -> dict[str, tuple[int, dt.datetime, str]]:
        latest: dict[str, tuple[int, dt.datetime, str]] = {}
        for chunk in _chunks(list(contact_ids), self.batch_size):
            for contact_id, occurrence, created, status in session.execute(
                select(
                    Enrollment.contact_id,
                    Enrollment.occurrence,
                    Enrollment.created_at,
                    Enrollment.status,
                ).where(
                    # Across versions: a new one must not let a contact in again early.
                    Enrollment.version_id.in_(campaign_store.versions_of_campaign(version_id)),
                    Enrollment.contact_id.in_(chunk),
                )
            ):
                if contact_id not in latest or occurrence > latest[contact_id][0]:
                    latest[contact_id] = (occurrence, created, status)
        return latest

    async def push_event(self, event: Mapping[str, Any]) -> int:
        """Record one event and fire what it triggers; returns the enrollments it made."""
        return await self.push_events([event])

    async def push_events(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Record events (all or nothing when any is bad) and fire the triggers they match;
        returns the enrollments they made."""
        return (await self.push_events_counted(events)).enrolled

    async def push_events_counted(self, events: Iterable[Mapping[str, Any]]) -> PushedEvents:
        """`push_events`, saying also how many were stored and how many were already there
        (an `id` seen before): what `POST /events` answers."""
        rows = importer.mapping_rows(events, "event", "<events>")
        pushed = await self.store.call_deduplicated(self._push_events_sync, rows)
        self._nudge.set()
        return pushed

    def _push_events_sync(self, store: Store, events: list[Mapping[str, Any]]) -> PushedEvents:
        now = self.now()
        rows = [dict(event) for event in events]
        for row in rows:
            row.setdefault("at", now.isoformat())
        before_written, on_written, enrolled = self._event_triggers(now)
        report = importer.push_event_dicts(
            store, rows, tenant_id=self.tenant, now=now, on_written=on_written,
            before_written=before_written,
        )  # fmt: skip
        return PushedEvents(report.written, report.duplicates, sum(enrolled))

    async def push_events_file(
        self, path: str | Path, *, skip_invalid: bool = False
    ) -> importer.ImportReport:
        """Store the events of a JSON Lines file (see `cadence events push`) and fire the
        triggers they match, chunk by chunk in one transaction: the file is never held whole,
        and a bad row anywhere leaves nothing written (unless `skip_invalid`)."""

        def run(store: Store) -> importer.ImportReport:
            now = self.now()
            before_written, on_written, _enrolled = self._event_triggers(now)
            return importer.push_events(
                store, path, tenant_id=self.tenant, skip_invalid=skip_invalid, now=now,
                on_written=on_written, before_written=before_written,
            )  # fmt: skip

        report = await self.store.call_deduplicated(run)
        self._nudge.set()
        return report

    def _event_triggers(
        self, now: dt.datetime
    ) -> tuple[importer.BeforeWritten, importer.OnWritten, list[int]]:
        """A push's hooks that fire what each chunk of events it writes sets off, in its
        transaction, and the list of the enrollments each chunk made.

        Before a chunk is stored, its contacts' segment memberships are read, so that
        segment entry counts only contacts the events moved in.
        """
        chunks = _ImportChunks(self)
        enrolled: list[int] = []

        def written(session: Session, report: importer.ImportReport) -> None:
            consent.record_pushed(session, self.tenant, report.events)
            active = chunks.active(session)
            enrolled.append(
                self._events_written(session, report.events, now, chunks.before, active)
            )

        return chunks.read_before, written, enrolled

    async def push_linked_events(self, events: Sequence[EventRecord]) -> int:
        """Record events the engine made itself, each already linked to its send; fire them.

        For engagement the engine simulates (`cadence dry-run`): every record is valid and
        carries what `importer.link_to_sends` would add (the contact, `send`, `template`,
        `campaign`, `channel`, `variant`), so the stored rows and what they set off are those
        of `push_events` on the same events, without validating or linking them again.
        """
        enrolled = await self.store.call_retrying(self._push_linked_sync, list(events))
        self._nudge.set()
        return enrolled

    def _push_linked_sync(self, store: Store, events: list[EventRecord]) -> int:
        now = self.now()
        before = self._segment_members_sync(
            store, sorted({event.contact_id for event in events if event.contact_id})
        )
        with store.session() as session:
            fresh, _present = importer.insert_events(session, self.tenant, events, now=now)
            return self._events_written(session, fresh, now, before) if fresh else 0

    async def ingest_webhook(self, provider: str, payload: Any) -> WebhookReport:
        """Store what a provider's webhook body reports (docs/inbound.md), firing what it sets off.

        A malformed body raises `InvalidWebhook` (every bad field, by position) and writes
        nothing; reports about unknown sends or numbers are listed in the result, unwritten.
        """
        parsed = parse_webhook(provider, payload)
        report = await self.store.call_deduplicated(self._ingest_webhook_sync, parsed)
        self._nudge.set()
        return report

    def _ingest_webhook_sync(self, store: Store, parsed: ParsedWebhook) -> WebhookReport:
        now = self.now()
        with store.session() as session:
            work = inbound.plan(session, self.tenant, parsed, now)
            before = self._segment_members(session, work.contacts) if work.contacts else frozenset()
            fresh = inbound.write(session, self.tenant, work, now)
            unpaid = [row for row in work.written_logs if row["outcome"] == NO_CREDITS]
            if unpaid:
                self._hold_unpaid_sends(session, unpaid, now)
            if fresh:
                work.result.enrolled = self._events_written(session, fresh, now, before)
        return work.result

    def _hold_unpaid_sends(
        self, session: Session, entries: Sequence[Mapping[str, Any]], now: dt.datetime
    ) -> None:
        """Sends a provider took, then reported refused for the account's spent credit
        (Infobip's REJECTED_NOT_ENOUGH_CREDITS in a delivery report), in the report's
        transaction: not failed but held, their campaigns paused with the provider's words,
        as a refusal in the send's answer pauses them (`_account_refusals`), so that each goes
        again, once, after `resume`.

        A finished campaign's send holds it too (it is not done while its message waits);
        a cancelled one's is cancelled; a send of no campaign goes at the provider's next
        probe (`NO_CREDITS_WAIT`). A send whose answer is not recorded yet (the report came
        first, or the answer was lost and a retry waits) is held the same way: its lease is
        taken back, so the worker delivering it finds the lease lost and records nothing.
        """
        said = {row["outbox_id"]: row for row in entries}
        sends = session.execute(
            select(OutboxMessage.id, OutboxMessage.version_id, OutboxMessage.channel).where(
                among(session, OutboxMessage.id, sorted(said)),
                OutboxMessage.status.in_([OutboxStatus.SENT.value, OutboxStatus.PENDING.value]),
            )
        ).all()
        owners = campaign_store.version_campaigns(
            session, [version for _, version, _ in sends if version is not None]
        )
        campaigns = {
            campaign.id: campaign
            for campaign in session.scalars(
                select(Campaign).where(Campaign.id.in_(sorted({c for c, _ in owners.values()})))
            )
        }
        refusals: dict[str, dict[str, Any]] = {}
        # Sends that move to the same values, one UPDATE each: (status, next attempt, error).
        moves: dict[tuple[str, dt.datetime | None, str], list[int]] = {}
        for outbox_id, version_id, channel in sends:
            entry = said[outbox_id]
            refusal = str(entry["detail"].get("refusal") or "refused for credit")
            owner = owners.get(version_id) if version_id is not None else None
            campaign = campaigns.get(owner[0]) if owner is not None else None
            move: tuple[str, dt.datetime | None, str] = (OutboxStatus.PENDING.value, None, refusal)
            if campaign is None:
                move = (move[0], now + dt.timedelta(seconds=NO_CREDITS_WAIT), refusal)
            elif campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.ARCHIVED):
                move = (OutboxStatus.CANCELLED.value, None, refusal)
            else:
                refusals.setdefault(campaign.name, {
                    "reason": NO_CREDITS, "provider": entry["provider"], "channel": channel,
                    "error": refusal,
                })  # fmt: skip
            moves.setdefault(move, []).append(outbox_id)
        for (status, next_attempt, refusal), ids in moves.items():
            session.execute(
                update(OutboxMessage)
                .where(among(session, OutboxMessage.id, ids))
                .values(
                    status=status, sent_at=None, next_attempt_at=next_attempt, lease_owner=None,
                    lease_expires_at=None, error=refusal, updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )  # fmt: skip
        self._hold_for_account(session, refusals, now)

    def _hold_for_account(
        self, session: Session, refusals: Mapping[str, Mapping[str, Any]], now: dt.datetime
    ) -> None:
        """A provider's refusal of the account (its spent credit, its key) holds each named
        campaign's sends and pauses it, whether the refusal came in the send's answer
        (`_account_refusals`) or in a later delivery report (`_hold_unpaid_sends`).

        A completed campaign is reopened first (it is not done while its message waits), and
        its pause line says so: its audit otherwise reads `complete`, `pause`, a move no one
        can make, and later `complete` again. A cancelled or archived one stays as it is.
        """
        pausing: dict[str, dict[str, Any]] = {}
        for name in sorted(refusals):
            campaign = campaign_store.get_campaign(session, self.tenant, name)
            if campaign is None:
                continue
            reopened = campaign.status == CampaignStatus.COMPLETED
            if reopened:
                campaign.status = CampaignStatus.ACTIVE.value
            pausing[name] = {**refusals[name], **({"reopened": "completed"} if reopened else {})}
        self._pause_campaigns(session, pausing, now)

    def _events_written(
        self,
        session: Session,
        events: Sequence[EventRecord],
        now: dt.datetime,
        before: Collection[tuple[int, str, str]] = frozenset(),
        active: Sequence[tuple[int, c.CompiledCampaign]] | None = None,
    ) -> int:
        """What new events set off, in the transaction that stores them: both commit, or neither.

        An opt-out reply (STOP ...) is stored with the `unsubscribed` it stands for, which
        sets off what an unsubscribe does. Unsubscribes, bounces and complaints become
        suppressions (`suppress`), triggers fire, segment entry is re-checked (segments can
        count events; `before` holds the memberships from before the events) and
        enrollments waiting on an event or a goal wake. A duplicate of an event already
        stored (same dedupe key) is not among `events` and sets off nothing.
        """
        events = [*events, *suppress.store_opt_out_replies(session, self.tenant, events, now)]
        suppress.record_suppressions(session, self.tenant, events, now)
        # An import's chunks pass the campaigns read at its first.
        active = self._active_versions(session) if active is None else list(active)
        listened = {
            trigger.event
            for _, campaign in active
            for trigger in campaign.triggers
            if isinstance(trigger, c.EventTriggerModel)
        }
        enrolled = 0
        # Each event is judged with the history up to it, as if pushed alone: the events
        # after it in this push are stored already, but not yet there for its count.
        unjudged: dict[str | None, collections.deque[EventRecord]] = {}
        # A contact's facts, read once for all its events here: judging them enrolls, and
        # writes none of what a trigger's count or `where` reads (events, attributes).
        facts: dict[str, ContactFacts | None] = {}
        for event in events:
            unjudged.setdefault(event.contact_id, collections.deque()).append(event)
        for event in events:
            later = unjudged[event.contact_id]
            later.popleft()
            if event.name not in listened:
                continue  # `_fire_event` would find no trigger: most events are opens, clicks
            row = {
                "name": event.name, "contact": event.contact_id, "at": event.at.isoformat(),
                "properties": event.properties,
            }  # fmt: skip
            enrolled += self._fire_event(session, active, row, now, later, facts)
        touched = sorted({event.contact_id for event in events if event.contact_id})
        for version_id, campaign in active:
            for trigger in campaign.triggers:
                if isinstance(trigger, c.SegmentEnterTriggerModel) and touched:
                    self._segment_enter(
                        session, version_id, campaign, trigger, touched, now, before
                    )
                elif isinstance(trigger, c.AtTriggerModel | c.EveryTriggerModel) and touched:
                    # An audience can count events: a contact they bring in joins the runs.
                    self._book_new_contacts(session, version_id, campaign, trigger, touched, now)
        self._wake_reactive(session, set(touched), now)
        return enrolled

    def _fire_event(
        self,
        session: Session,
        active: list[tuple[int, c.CompiledCampaign]],
        row: Mapping[str, Any],
        now: dt.datetime,
        later: Sequence[EventRecord],
        facts: dict[str, ContactFacts | None],
    ) -> int:
        """Enroll whom the event `row` fires a trigger for; `later` are the contact's events
        stored with it that come after it, which its count must not see yet; `facts` keeps
        the contacts' facts read for earlier events of the same push."""
        name = str(row.get("name"))
        contact_id = row.get("contact")
        properties = dict(row.get("properties") or {})
        event_data = {"name": name, "at": str(row.get("at")), **properties}
        enrolled = 0
        for version_id, campaign in active:
            for trigger in campaign.triggers:
                if not isinstance(trigger, c.EventTriggerModel) or trigger.event != name:
                    continue
                if trigger.fanout is not None:
                    targets = self._fanout(session, campaign, trigger, event_data)
                elif contact_id is None:
                    continue
                else:
                    targets = self._event_targets(
                        session, campaign, trigger, str(contact_id), event_data, later, facts
                    )
                enrolled += self._enroll_triggered(
                    session, version_id, campaign, trigger, targets, now, event_data
                )
        return enrolled

    def _event_targets(
        self,
        session: Session,
        campaign: c.CompiledCampaign,
        trigger: c.EventTriggerModel,
        contact_id: str,
        event: dict[str, Any],
        later: Sequence[EventRecord],
        facts: dict[str, ContactFacts | None],
    ) -> list[str]:
        if contact_id not in facts:
            facts[contact_id] = load_facts(session, self.tenant, [contact_id]).get(contact_id)
        fact = facts[contact_id]
        if fact is None or not self._audience(session, campaign, [contact_id]):
            return []
        if later and trigger.count is not None:
            fact = replace(fact, events=_without_events(fact.events, later))
        if not conditions.event_trigger_fires(trigger, fact, event, campaign, self.now()):
            return []
        return [contact_id]

    def _fanout(
        self,
        session: Session,
        campaign: c.CompiledCampaign,
        trigger: c.EventTriggerModel,
        event: dict[str, Any],
    ) -> list[str]:
        assert trigger.fanout is not None
        predicate = trigger.fanout
        if trigger.where is not None:
            if conditions.reads_the_event_alone(trigger.where):
                if not conditions.event_matches(trigger.where, event):
                    return []
            else:
                # `where` reads the contact too: each contact the event reaches must meet it.
                predicate = c.BinaryExpr(op="and", left=trigger.where, right=trigger.fanout)
        audience = self._audience(session, campaign)
        return conditions.fanout_matches(
            session, self.tenant, predicate, audience, event, campaign, self.now(),
            campaign_names=functools.partial(self._names_by_version, session),
        )  # fmt: skip

    def _wake_reactive(
        self,
        session: Session,
        contact_ids: set[str],
        now: dt.datetime,
        *,
        skip_locked: bool = False,
    ) -> None:
        """Wake the contacts' enrollments that may react to their new events or attributes.

        Only two things read them while an enrollment sleeps: a campaign `goal` (checked
        before every step) and the `wait for` the enrollment waits at. Any other sleeping
        enrollment woken early would only go back to sleep, so it is left alone. One a pause
        holds is made due too, and stays held: its wait fell due now, so it runs at resume.

        The contacts' enrollments are read by contact (locked, in id order as the claims lock
        them) and chosen here, then woken by id alone: given the status and due time in SQL,
        SQLite's planner (without statistics) picks a status index over the contact or id
        list, and walks every sleeping enrollment per event batch.

        With `skip_locked` (a contact update, which holds the contacts' rows a worker's batch
        may be waiting for), enrollments a batch holds are left to it; that batch reads the
        contacts after this transaction commits, so it sees the change.
        """
        if not contact_ids:
            return
        with_goal, waiting = self._reactive(session)
        if not with_goal and not waiting:
            return
        wake: list[int] = []
        for chunk in _chunks(sorted(contact_ids), self.batch_size):
            for enrollment_id, version_id, node, status, due_at in session.execute(
                select(
                    Enrollment.id,
                    Enrollment.version_id,
                    Enrollment.node,
                    Enrollment.status,
                    Enrollment.due_at,
                )
                .where(Enrollment.tenant_id == self.tenant, Enrollment.contact_id.in_(chunk))
                .order_by(Enrollment.id)
                .with_for_update(skip_locked=skip_locked)
            ):
                if status not in UNFINISHED_ENROLLMENT_STATUSES or due_at is None:
                    continue
                if as_utc(due_at) <= now:
                    continue
                if version_id in with_goal or node in waiting.get(version_id, ()):
                    wake.append(enrollment_id)
        self._due_now(session, wake, now)

    def _due_now(self, session: Session, enrollment_ids: Sequence[int], now: dt.datetime) -> None:
        """Make these (locked) enrollments due at once, a batch's worth per statement."""
        for start in range(0, len(enrollment_ids), self.batch_size):
            session.execute(
                update(Enrollment)
                .where(Enrollment.id.in_(enrollment_ids[start : start + self.batch_size]))
                .values(due_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    def _reactive(self, session: Session) -> tuple[set[int], dict[int, set[str]]]:
        """What an event can move: versions with a goal, and per version its `wait for` nodes."""
        with_goal: set[int] = set()
        waiting: dict[int, set[str]] = {}
        for version_id in self._names_by_version(session):
            campaign = self._version(session, version_id)[1]
            if campaign.settings.goal is not None:
                with_goal.add(version_id)
                continue
            nodes = {node.id for node in campaign.nodes if isinstance(node, c.WaitForNode)}
            if nodes:
                waiting[version_id] = nodes
        return with_goal, waiting

    # ------------------------------------------------------------------ the scheduler

    async def run_due(self) -> RunStats:
        """Advance every enrollment due now and deliver every pending send, then return."""
        stats = RunStats()
        await self.store.call_retrying(self._start_scheduled_sync)
        stats.enrolled += await self.store.call_retrying(self._sweep_segments_sync)
        for round_number in itertools.count():
            if self._stopping:
                return stats
            stepped, ready, recorded = await self.store.call_retrying(self._step_batch_sync)
            if recorded:
                handed = await self._hand_over(ready)
            else:
                handed = await self._deliver_stepped(ready) if ready else RunStats()
            # The outbox's own due sends (retries, held or taken-over ones) are claimed when
            # the steps run out, and every few full batches meanwhile: a claim that finds
            # nothing after each of a backlog's batches was a twentieth of a dry-run.
            if stepped.steps < self.batch_size or round_number % OUTBOX_EVERY == 0:
                handed.add(await self._deliver_batch())
            stats.add(stepped)
            stats.add(handed)
            if stepped.steps == 0 and handed.delivered == 0 and handed.failed == 0:
                # Nothing stepped and no claimed send settled: what is left is due later (a
                # claimed batch that failed for good leaves the backlog behind it due now).
                # Also with nothing stepped: a recurring campaign completes once its `ends`
                # has passed, which no step marks.
                await self.store.call_retrying(self._complete_finished_sync)
                return stats
        raise AssertionError("unreachable")  # itertools.count never ends

    def _sweep_segments_sync(self, store: Store) -> int:
        """Enroll contacts who entered a segment as time passed (see `cadence.engine.sweep`).

        Each active campaign with such a segment trigger is swept at most every
        SWEEP_EVERY: those who match now and did not at the previous sweep enter. The
        worker whose update moves the campaign's sweep instant on is the one that sweeps.
        """
        now = self.now()
        enrolled = 0
        with store.session() as session:
            for version_id, campaign in self._active_versions(session):
                triggers = self._swept_triggers(version_id, campaign)
                if not triggers:
                    continue
                row = self._sweep_mark(session, version_id)
                if row is None:
                    continue
                campaign_id, since = row
                if since is not None and now < as_utc(since) + sweep.SWEEP_EVERY:
                    continue
                same = (
                    Campaign.segments_swept_at.is_(None)
                    if since is None
                    else Campaign.segments_swept_at == since
                )
                claimed = session.execute(
                    update(Campaign)
                    .where(Campaign.id == campaign_id, same)
                    .values(segments_swept_at=now)
                    .execution_options(synchronize_session=False)
                )
                if since is None or not claimed.rowcount:  # type: ignore[attr-defined]
                    continue
                enrolled += self._sweep(session, version_id, campaign, triggers, as_utc(since), now)
        return enrolled

    def _sweep_mark(
        self, session: Session, version_id: int
    ) -> tuple[int, dt.datetime | None] | None:
        """The id and last sweep instant of the campaign running this version (None: none)."""
        row = session.execute(
            select(Campaign.id, Campaign.segments_swept_at).where(
                Campaign.tenant_id == self.tenant, Campaign.current_version_id == version_id
            )
        ).first()
        return None if row is None else (row[0], row[1])

    def _swept_triggers(
        self, version_id: int, campaign: c.CompiledCampaign
    ) -> list[sweep.SweptTrigger]:
        """`sweep.swept_triggers` of a version, worked out once (a version never changes)."""
        found = self._swept.get(version_id)
        if found is None:
            found = self._swept[version_id] = sweep.swept_triggers(campaign)
        return found

    def _sweep(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        triggers: Sequence[sweep.SweptTrigger],
        since: dt.datetime,
        now: dt.datetime,
    ) -> int:
        """Enroll the audience's contacts who match each trigger's segment now and did not at
        some moment since `since` (`sweep.last_out`); book those who joined an `at` /
        `every` audience and are not booked yet.

        Only the contacts `sweep.moved` names can have changed between the two instants
        (see `cadence.engine.sweep`); every contact is read when a trigger's windows cannot
        be bounded.
        """
        enrolled = 0
        booking = [t for t in triggers if isinstance(t, c.AtTriggerModel | c.EveryTriggerModel)]
        if booking:
            # Every booking trigger reads the same audience and exclusion: one set of windows.
            moved = self._sweep_candidates(session, version_id, campaign, booking[:1], since, now)
            unbooked = self._unbooked(session, version_id, moved)
            for chunk in _chunks(unbooked, max(self.batch_size, 5000)):
                for trigger in booking:
                    self._book_new_contacts(session, version_id, campaign, trigger, chunk, now)
        segment_triggers = [t for t in triggers if isinstance(t, c.SegmentEnterTriggerModel)]
        if not segment_triggers:
            return enrolled
        moved = self._sweep_candidates(session, version_id, campaign, segment_triggers, since, now)
        candidates = self._contact_ids(session) if moved is None else moved
        for chunk in _chunks(candidates, max(self.batch_size, 5000)):
            audience = self._audience(session, campaign, chunk)
            facts = load_facts(session, self.tenant, audience)
            for segment_trigger in segment_triggers:
                expr = campaign.segments[segment_trigger.segment].expr
                # Unbounded windows: read at `since` and `now` only (see `sweep.last_out`).
                windows = self._sweep_windows.get((version_id, segment_trigger.id)) or ()
                out_at: dict[str, dt.datetime] = {}
                for cid in audience:
                    fact = facts.get(cid)
                    if fact is None or not conditions.Context(fact, campaign, now).holds(expr):
                        continue
                    out = sweep.last_out(
                        functools.partial(_holds_at, fact, campaign, expr),
                        sweep.edges(fact, windows, since, now), since, now,
                    )  # fmt: skip
                    if out is not None:
                        out_at[cid] = out
                # An entry noticed since the contact was last out (an event, an import, a
                # step) is that entry: with `reenter always` a second journey would start.
                noticed = self._entered_since(session, version_id, segment_trigger, out_at)
                entering = [cid for cid in out_at if cid not in noticed]
                enrolled += self._enroll_triggered(
                    session, version_id, campaign, segment_trigger, entering, now, {}
                )
        return enrolled

    def _entered_since(
        self,
        session: Session,
        version_id: int,
        trigger: c.TriggerModel,
        since: Mapping[str, dt.datetime],
    ) -> set[str]:
        """The contacts this trigger enrolled in the version after the instant `since` gives
        each of them."""
        if not since:
            return set()
        earliest = min(since.values())
        entered: set[str] = set()
        for chunk in _chunks(list(since), self.batch_size):
            rows = session.execute(
                select(Enrollment.contact_id, Enrollment.state, Enrollment.created_at).where(
                    Enrollment.tenant_id == self.tenant,
                    Enrollment.version_id == version_id,
                    Enrollment.contact_id.in_(chunk),
                    Enrollment.created_at > earliest,
                )
            )
            entered.update(
                cid
                for cid, state, created in rows
                if (state or {}).get("trigger") == trigger.id and as_utc(created) > since[cid]
            )
        return entered

    def _sweep_candidates(
        self,
        session: Session,
        version_id: int,
        campaign: c.CompiledCampaign,
        triggers: Sequence[sweep.SweptTrigger],
        since: dt.datetime,
        now: dt.datetime,
    ) -> list[str] | None:
        """The sorted contacts whose entry into any of the triggers can have changed between
        `since` and `now`; None: every contact (some trigger's windows are unbounded)."""
        windows: list[sweep.Window] = []
        for trigger in triggers:
            key = (version_id, trigger.id)
            if key not in self._sweep_windows:
                self._sweep_windows[key] = sweep.trigger_windows(campaign, trigger)
            found = self._sweep_windows[key]
            if found is None:
                return None
            windows.extend(found)
        return sorted(sweep.moved(session, self.tenant, windows, since, now))

    def _unbooked(
        self, session: Session, version_id: int, candidates: Sequence[str] | None
    ) -> list[str]:
        """The candidates (None: every contact) with no enrollment in the version's campaign
        (any version of it: one booked before a redeploy is booked), sorted."""
        query = select(Contact.id).where(
            Contact.tenant_id == self.tenant,
            ~select(Enrollment.id)
            .where(
                Enrollment.version_id.in_(campaign_store.versions_of_campaign(version_id)),
                Enrollment.contact_id == Contact.id,
            )
            .exists(),
        )
        if candidates is None:
            return list(session.scalars(query.order_by(Contact.id)))
        unbooked: list[str] = []
        for chunk in _chunks(candidates, self.batch_size):
            unbooked.extend(
                session.scalars(query.where(among(session, Contact.id, chunk)).order_by(Contact.id))
            )
        return unbooked

    def _complete_finished_sync(self, store: Store) -> None:
        """A one-time campaign (only `on launch` / `at` triggers), or one past its `ends`, whose
        every enrollment has finished and every send has gone (or failed for good) is
        completed; others wait for events or recur.

        A send waiting for a retry keeps its campaign open: `completed` tells the operator
        nothing is left to go, and a refusal of that retry for the account must pause a
        campaign that can still be resumed (`_hold_for_account`).
        """
        now = self.now()
        with store.session() as session:
            for campaign in session.scalars(
                select(Campaign).where(
                    Campaign.tenant_id == self.tenant,
                    Campaign.status == CampaignStatus.ACTIVE.value,
                    Campaign.current_version_id.is_not(None),
                )
            ):
                assert campaign.current_version_id is not None
                compiled = self._version(session, campaign.current_version_id)[1]
                one_time = all(
                    isinstance(t, c.LaunchTriggerModel | c.AtTriggerModel)
                    for t in compiled.triggers
                )
                if not one_time and not timing.campaign_ended(compiled, now):
                    continue
                # Its journeys, and the sends they queued (a retry's included), are done.
                unfinished = any(
                    session.scalar(
                        select(func.count())
                        .select_from(rows)
                        .join(CampaignVersion, CampaignVersion.id == rows.version_id)
                        .where(CampaignVersion.campaign_id == campaign.id, rows.status.in_(open_))
                    )
                    for rows, open_ in (
                        (Enrollment, UNFINISHED_ENROLLMENT_STATUSES),
                        (OutboxMessage, (OutboxStatus.PENDING.value,)),
                    )
                )
                if not unfinished:
                    campaign.status = CampaignStatus.COMPLETED.value
                    campaign.updated_at = now
                    _audit(session, self.tenant, "complete", campaign.name, {}, now)

    async def next_due(self) -> dt.datetime | None:
        """The earliest instant at which an enrollment or a send falls due."""
        return await self.store.call_retrying(self._next_due_sync)

    def _next_due_sync(self, store: Store) -> dt.datetime | None:
        with store.session() as session:
            enrollment = session.scalar(
                select(func.min(Enrollment.due_at)).where(
                    Enrollment.tenant_id == self.tenant,
                    Enrollment.status == EnrollmentStatus.ACTIVE.value,
                )
            )
            outbox = claims.next_outbox_due(session, tenant_id=self.tenant)
            starts = self._scheduled_starts(session)
            swept = self._next_sweep(session)
        candidates = [as_utc(t) for t in (enrollment, outbox, starts, swept) if t is not None]
        return min(candidates) if candidates else None

    def _next_sweep(self, session: Session) -> dt.datetime | None:
        """When the first campaign's time-dependent segments are next read (None: no such)."""
        first: dt.datetime | None = None
        for version_id, campaign in self._active_versions(session):
            if not self._swept_triggers(version_id, campaign):
                continue
            row = self._sweep_mark(session, version_id)
            if row is None:
                continue
            since = row[1]
            due = self.now() if since is None else as_utc(since) + sweep.SWEEP_EVERY
            first = due if first is None else min(first, due)
        return first

    def _scheduled_starts(self, session: Session) -> dt.datetime | None:
        """When the first scheduled campaign starts (it is then made active by `run_due`)."""
        first: dt.datetime | None = None
        for (version_id,) in session.execute(
            select(Campaign.current_version_id).where(
                Campaign.tenant_id == self.tenant,
                Campaign.status == CampaignStatus.SCHEDULED.value,
                Campaign.current_version_id.is_not(None),
            )
        ):
            if version_id is None:
                continue
            compiled = self._version(session, version_id)[1]
            if compiled.settings.starts is None:
                continue
            instant = timing.campaign_starts_instant(
                compiled.settings.starts, timing.campaign_zone(compiled)
            )
            first = instant if first is None else min(first, instant)
        return first

    async def run_until(self, until: dt.datetime, *, on_progress: Any = None) -> RunStats:
        """Run everything due up to `until`, moving a simulated clock from due time to due time.

        A naive `until` is UTC, as the clocks take one (it failed comparing with aware times).
        """
        until = as_utc(until)
        stats = RunStats()
        while True:
            stats.add(await self.run_due())
            if on_progress is not None:
                on_progress(self.now(), stats)
            upcoming = await self.next_due()
            if upcoming is None or upcoming > until or self._stopping:
                if self.clock.simulated and until > self.now():
                    await self.clock.sleep_until(until)
                return stats
            await self.clock.sleep_until(upcoming)

    async def serve(
        self,
        *,
        until_idle: bool = False,
        poll: float = 5.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> RunStats:
        """The long-running loop: run what is due, sleep until the next due time or `poll`."""
        stats = RunStats()
        task_status.started()
        while not self._stopping:
            # A nudge during the round below makes the next sleep end at once.
            self._nudge = trio.Event()
            stats.add(await self.run_due())
            if until_idle:
                return stats
            upcoming = await self.next_due()
            wake = self.now() + dt.timedelta(seconds=poll)
            if upcoming is not None and upcoming < wake:
                wake = upcoming
            await self._sleep_until_nudged(wake)
        return stats

    async def _sleep_until_nudged(self, wake: dt.datetime) -> None:
        """Sleep on the engine's clock until `wake`, or until new data may have made work due."""
        if self._nudge.is_set():
            return
        async with trio.open_nursery() as nursery:

            async def nudged() -> None:
                await self._nudge.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(nudged)
            await self.clock.sleep_until(wake)
            nursery.cancel_scope.cancel()

    def _step_batch_sync(self, store: Store) -> tuple[RunStats, list[OutgoingMessage], bool]:
        """Lock a batch of due enrollments, step each, and write the results and their effects.

        Returns what it did, the batch's new sends, and whether those are already stored as
        sent (an in-process sink, see `Sink`: only to be handed over) or leased to this engine
        for delivery right after the commit (no outbox claim needed for them).

        One transaction: the rows are locked for it (see `claims.lock_due_enrollments`), their
        facts read, the steps run against what was read, and the new states and the effects
        (sends, attributes, enrollments elsewhere) written before it commits. A crash before
        the commit leaves every row as it was and due; nothing is half-written.
        """
        now = self.now()
        stats = RunStats()
        with store.session() as session:
            claimed = [
                _StepRow._make(row)
                for row in claims.lock_due_enrollments(
                    session, now=now, limit=self.batch_size, tenant_id=self.tenant,
                    columns=_STEP_COLUMNS,
                )
            ]  # fmt: skip
            if not claimed:
                return stats, [], False
            versions = {
                vid: self._version(session, vid)[1] for vid in {row.version_id for row in claimed}
            }
            owners = campaign_store.version_campaigns(session, versions)
            claimed, stats.steps = self._halt_unstepped(session, claimed, owners, now)
            if not claimed:
                return stats, [], False
            channels = {
                n.channel for v in versions.values() for n in v.nodes if isinstance(n, c.SendNode)
            }
            claims.lock_send_counts(
                session,
                tenant_id=self.tenant,
                campaign_ids=[
                    owners[vid][0] for vid, v in versions.items() if v.settings.budget is not None
                ],
                contact_ids=[row.contact_id for row in claimed] if channels else [],
            )
            kinds = batch_reads(
                ((versions[row.version_id], row.node) for row in claimed), self.default_cap
            )
            facts = load_facts(
                session,
                self.tenant,
                {row.contact_id for row in claimed},
                campaign_names=self._names_by_version(session) if CAMPAIGNS in kinds else None,
                kinds=kinds,
                fields=batch_fields(versions.values()),
                sends_within=cap_sends_within(kinds, versions.values(), self.default_cap, now),
            )
            gates = _Gates(session, self.tenant, facts, now, self.default_cap)
            results: list[tuple[_StepRow, dict[str, Any], Advance]] = []
            # Cohorts (one version, node and state) share the stepper's work (`CohortMemo`).
            memo = CohortMemo()
            # A cohort's rows share their stored history and the entries a step adds (the
            # memo's shared result): the appended text is made once per pair.
            histories: dict[tuple[str | None, int], RawJSON] = {}
            deciders: dict[int, tuple[Callable[..., Any], Callable[..., Any]]] = {}
            updates: list[claims.EnrollmentUpdate] = []
            moved: dict[claims.SteppedValues, list[int]] = {}
            pausing: dict[str, dict[str, Any]] = {}
            # Higher-priority campaigns step first, so when caps let only some of the batch's
            # sends through, theirs go (the sort is stable: due order within a priority).
            claimed = sorted(claimed, key=lambda row: -versions[row.version_id].settings.priority)
            for row in claimed:
                campaign = versions[row.version_id]
                if campaign.name in pausing:
                    continue  # not stepped: the pause below holds it where it is
                fact = facts.get(row.contact_id)
                if fact is None:
                    # Enrollments go with their contact (ON DELETE CASCADE); should one ever
                    # outlive it, it ends here rather than coming due again forever.
                    updates.append(
                        claims.EnrollmentUpdate(
                            id=row.id, status=EnrollmentStatus.EXITED, due_at=None,
                            history=_append_history(
                                row.history, [[now.isoformat(), row.node, "contact not found"]]
                            ),
                        )
                    )  # fmt: skip
                    continue
                state = (orjson.loads(row.state) if row.state is not None else None) or {}
                splits = deciders.get(row.version_id)
                if splits is None:
                    splits = deciders[row.version_id] = (
                        functools.partial(self._ab_winner, session, row.version_id),
                        functools.partial(self._split_arrival, session, row.version_id),
                    )
                env = conditions.StepContext(
                    fact, campaign, now, state, gates.for_contact(row.contact_id, campaign),
                    *splits,
                )  # fmt: skip
                result, state_text = memo.advance(
                    (row.version_id, row.node, row.state), campaign, state, row.contact_id, env
                )
                if result.effects.pause_campaign is not None:
                    pausing[campaign.name] = gates.paused.get(
                        campaign.name, {"reason": result.effects.pause_campaign}
                    )
                # An `every` run books its next run once, when it first runs (see below). A
                # result of its own: the memo's may be shared by the cohort (read-only).
                if state.get("trigger") and not state.get("next_booked"):
                    booked = {**result.state, "next_booked": True}
                    result = replace(result, state=booked)
                    state_text = RawJSON(dumps_json(booked))
                results.append((row, state, result))
                # Enrollments of a cohort move to the same values: grouped as they step, each
                # group is one UPDATE (see `claims.write_stepped_enrollments`).
                history_key = (row.history, id(result.history))
                history = histories.get(history_key)
                if history is None:
                    history = histories[history_key] = _append_history(row.history, result.history)
                moved.setdefault(
                    (result.node, _STATUS_TEXT[result.status], result.due_at, state_text, history),
                    [],
                ).append(row.id)
            claims.write_locked_enrollments(session, updates, now=now)
            claims.write_stepped_enrollments(session, moved, now=now)
            provider = self._in_process_provider()
            stats.sends, stats.enrolled, ready = self._write_effects(
                session, results, versions, now, provider
            )
            self._pause_campaigns(session, pausing, now)
        stats.steps += len(results)
        return stats, ready, provider is not None

    def _in_process_provider(self) -> str | None:
        """The provider a step stores its sends as sent through, if the sink allows (`Sink`).

        Not with a rate limiter: it may hold a send back, which must then stay pending.
        """
        if self._limiter is not None:
            return None
        provider = getattr(self.sink, IN_PROCESS_PROVIDER, None)
        return provider if isinstance(provider, str) else None

    def _halt_unstepped(
        self,
        session: Session,
        claimed: list[_StepRow],
        owners: Mapping[int, tuple[int, str]],
        now: dt.datetime,
    ) -> tuple[list[_StepRow], int]:
        """Hold (or cancel) the due rows of campaigns paused (or cancelled) meanwhile.

        Another worker's pause skips the rows a batch holds, so those come due in a paused
        campaign: they take its status, unstepped. Returns the rows left to step, and how
        many were halted (counted as steps, so the scheduler goes on to the next batch).
        """
        halted = {vid: _HALTED[status] for vid, (_, status) in owners.items() if status in _HALTED}
        if not halted:
            return claimed, 0
        updates = [
            claims.EnrollmentUpdate(id=row.id, status=halted[row.version_id])
            for row in claimed
            if row.version_id in halted
        ]
        claims.write_locked_enrollments(session, updates, now=now)
        return [row for row in claimed if row.version_id not in halted], len(updates)

    def _write_effects(
        self,
        session: Session,
        results: list[tuple[_StepRow, dict[str, Any], Advance]],
        versions: dict[int, c.CompiledCampaign],
        now: dt.datetime,
        provider: str | None = None,
    ) -> tuple[int, int, list[OutgoingMessage]]:
        new_sends: list[send_store.NewSend] = []
        # Sends a gate refused, logged with the reason (in bulk, as delivery logs its own).
        skipped: list[dict[str, Any]] = []
        enrolled = 0
        # Steps that change a contact (`set`, `tag`, `assign agent`) can move it into a
        # segment another campaign enters on: memberships are read before the changes.
        changed = sorted(
            {
                row.contact_id
                for row, _, result in results
                if result.effects.attributes or result.effects.tags_added
                or result.effects.tags_removed or result.effects.assign_agent is not None
            }
        )  # fmt: skip
        before = self._segment_members(session, changed) if changed else frozenset()
        # The zone each contact a `set timezone` moved had before: what it booked by its
        # clock is read again in the new zone, as after an import (`_rebook_local_times`).
        moved_zones: dict[str, str | None] = {}
        # Sends without a triggering event share one payload per version and channel: one
        # object, so the outbox insert encodes it once (`bulk._converter`); never mutated.
        payloads: dict[tuple[int, str], dict[str, Any]] = {}
        for row, state, result in results:
            enrollment_id, version_id, contact_id = row.id, row.version_id, row.contact_id
            occurrence = row.occurrence
            campaign = versions[version_id]
            effects = result.effects
            enrolled += self._schedule_next_occurrence(session, row, state, campaign, now)
            for send in effects.sends:
                key = send_store.idempotency_key(version_id, send.node, contact_id, occurrence)
                event = result.state.get("event") or None
                payload = None if event else payloads.get((version_id, send.channel))
                if payload is None:
                    payload = _send_payload(campaign, send.channel, event)
                    if not event:
                        payloads[version_id, send.channel] = payload
                new_sends.append(
                    send_store.NewSend(
                        idempotency_key=key, contact_id=contact_id, channel=send.channel,
                        template=send.template, enrollment_id=enrollment_id,
                        version_id=version_id, node=send.node, variant=send.variant,
                        payload=payload,
                    )
                )  # fmt: skip
            skipped.extend(
                {
                    "tenant_id": self.tenant, "contact_id": contact_id,
                    "channel": _send_channel(campaign, node_id), "at": now, "outcome": "skipped",
                    "detail": {"campaign": campaign.name, "node": node_id, "reason": reason},
                }
                for node_id, reason in effects.skipped_sends
            )  # fmt: skip
            if effects.attributes or effects.tags_added or effects.tags_removed:
                contact = session.get(Contact, (self.tenant, contact_id))
                if contact is not None:
                    if effects.attributes:
                        attributes = _set_standard_fields(contact, effects.attributes, moved_zones)
                        contact.attributes = {**(contact.attributes or {}), **attributes}
                    tags = [t for t in (contact.tags or []) if t not in effects.tags_removed]
                    tags += [t for t in effects.tags_added if t not in tags]
                    contact.tags = tags
                    contact.updated_at = now
            if effects.assign_agent is not None:
                agent = agent_store.next_agent(session, self.tenant, now=now)
                if agent is not None:
                    contact = session.get(Contact, (self.tenant, contact_id))
                    if contact is not None:
                        # The agent's name (and email), as JSON: the row itself is no value.
                        assigned = {"agent": agent.name}
                        if agent.email:
                            assigned["agent_email"] = agent.email
                        contact.attributes = {**(contact.attributes or {}), **assigned}
                        contact.updated_at = now
            for node_id, channel, target in effects.notifications:
                enrollment = {"id": enrollment_id, "version": campaign.version, "step": node_id}
                new_sends.append(
                    send_store.NewSend(
                        idempotency_key=send_store.idempotency_key(
                            version_id, f"notify:{node_id}", contact_id, occurrence
                        ),
                        contact_id=contact_id, channel=channel, template=None,
                        enrollment_id=enrollment_id, version_id=version_id, node=NOTIFY_NODE,
                        payload={
                            "campaign": campaign.name, "target": target,
                            "enrollment": enrollment, "event": result.state.get("event") or {},
                        },
                    )
                )  # fmt: skip
            for other in effects.enroll:
                enrolled += self._enroll_elsewhere(session, other, contact_id, now)
        if changed:
            session.flush()
            self._rebook_local_times(session, moved_zones, now)
            for version_id, campaign in self._active_versions(session):
                for trigger in campaign.triggers:
                    if isinstance(trigger, c.SegmentEnterTriggerModel):
                        enrolled += self._segment_enter(
                            session, version_id, campaign, trigger, changed, now, before
                        )
            # The change may reach another enrollment's `goal` or the `wait for` it waits at.
            self._wake_reactive(session, set(changed), now, skip_locked=True)
        if skipped:
            insert_rows(session, SendLog.__table__, skipped)  # type: ignore[arg-type]
        if provider is not None:
            fresh = send_store.enqueue_sent_sends(
                session, self.tenant, new_sends, provider=provider, now=now
            )
        else:
            fresh = send_store.enqueue_claimed_sends(
                session, self.tenant, new_sends, owner=self.owner, now=now,
                lease_until=now + LEASE,
            )  # fmt: skip
        ready: list[OutgoingMessage] = []
        for outbox_id, queued in fresh:
            assert queued.version_id is not None  # every step's send belongs to its version
            campaign = versions[queued.version_id]
            ready.append(
                OutgoingMessage(
                    outbox_id=outbox_id, idempotency_key=queued.idempotency_key,
                    tenant_id=self.tenant, campaign=campaign.name, version=campaign.version,
                    node=queued.node, contact_id=queued.contact_id, channel=queued.channel,
                    template=queued.template, variant=queued.variant, payload=queued.payload,
                )
            )  # fmt: skip
        return sum(1 for s in new_sends if s.node != NOTIFY_NODE), enrolled, ready

    def _pause_campaigns(
        self, session: Session, pausing: Mapping[str, Mapping[str, Any]], now: dt.datetime
    ) -> None:
        """Pause campaigns a step asked to pause, as `pause` does, with why in the audit line.

        Runs after the batch's writes, so its enrollments of these campaigns (those stepped,
        held at a send, and those left unstepped) are held with the rest.
        """
        for name in sorted(pausing):
            campaign = campaign_store.get_campaign(session, self.tenant, name)
            # One that is no longer running (paused by an earlier batch, cancelled) stays as
            # it is, with its first reason.
            if campaign is None or CampaignStatus(campaign.status) not in _ALLOWED_MOVES["pause"]:
                continue
            versions = campaign_store.campaign_version_ids(session, campaign.id)
            count = _hold(session, campaign, versions, now, skip_locked=True)
            _audit(
                session, self.tenant, "pause", name, {**pausing[name], "enrollments": count}, now
            )

    def _schedule_next_occurrence(
        self,
        session: Session,
        row: _StepRow,
        state: Mapping[str, Any],
        campaign: c.CompiledCampaign,
        now: dt.datetime,
    ) -> int:
        """An `every` run that starts books the contact's next run as the next occurrence."""
        if not state.get("trigger") or state.get("next_booked"):
            return 0
        version_id, contact_id = row.version_id, row.contact_id
        occurrence = row.occurrence
        trigger = next((t for t in campaign.triggers if t.id == state.get("trigger")), None)
        if not isinstance(trigger, c.EveryTriggerModel):
            return 0
        zones = self._zones(session, [contact_id], campaign)
        # The next run follows this one's booked time, so an interval (`every 2w`) keeps its
        # step from the first run, not from whenever this run happened to be stepped.
        booked = state.get("not_before")
        upcoming = _next_occurrence(
            trigger,
            zones[contact_id],
            campaign,
            dt.datetime.fromisoformat(booked) if booked else now,
            now,
        )
        if upcoming is None:
            return 0
        if timing.campaign_ended(campaign, upcoming):
            return 0
        return len(
            campaign_store.enroll_contacts(
                session, self.tenant, version_id, [contact_id], node=trigger.entry,
                due_at=upcoming, now=now, occurrence=occurrence + 1,
                state={"trigger": trigger.id, "not_before": upcoming.isoformat()},
                priority=campaign.settings.priority,
            )
        )  # fmt: skip

    def _enroll_elsewhere(
        self, session: Session, name: str, contact_id: str, now: dt.datetime
    ) -> int:
        self._start_scheduled(session)
        campaign = campaign_store.get_campaign(session, self.tenant, name)
        if campaign is None or campaign.current_version_id is None:
            return 0
        if campaign.status != CampaignStatus.ACTIVE.value:
            return 0
        compiled = self._version(session, campaign.current_version_id)[1]
        # The other campaign's `audience` and `exclude` hold for an `enroll` as for its own
        # triggers: an excluded contact is never enrolled; nor anyone once it has ended.
        ended = timing.campaign_ended(compiled, now)
        if ended or not self._audience(session, compiled, [contact_id]):
            return 0
        entry = compiled.triggers[0].entry if compiled.triggers else "end"
        # Its `reenter` holds too: an `enroll` is an entry like its own triggers' firings.
        return self._enroll_entering(
            session, campaign.current_version_id, compiled, [contact_id], entry, now,
            {"trigger": "enroll"}, compiled.settings.reenter.mode,
        )  # fmt: skip

    def _split_arrival(
        self, session: Session, version_id: int, node: c.ABSplitNode | c.RandomSplitNode
    ) -> int:
        """Count a contact in at a split (the stepper places it by its arrival)."""
        return campaign_store.take_split_arrival(
            session, self.tenant, version_id, node.id, now=self.now()
        )

    def _ab_winner(self, session: Session, version_id: int, node: c.ABSplitNode) -> str | None:
        """The frozen winner of an A/B split, or decide it when the test has run long enough."""
        subject = f"{version_id}:{node.id}"
        decided = self._frozen_winner(session, subject)
        if decided is not None:
            return decided
        sending = self._split_nodes(session, version_id, node)[1]
        first = session.scalar(
            select(func.min(OutboxMessage.created_at)).where(
                OutboxMessage.version_id == version_id,
                OutboxMessage.variant.in_([v.name for v in node.variants]),
                OutboxMessage.node.in_(sending),
            )
        )
        if first is None:
            if self._test_on_its_way(session, version_id, node):
                # Test contacts wait on their variant's steps (a send window, quiet hours):
                # the test has not begun, and its time counts from its first send.
                return None
            # Nothing sent (too few contacts for a test place, or every test send stopped):
            # the test is over `after` from the first arrival, and names the first variant.
            first = campaign_store.split_first_arrival(session, version_id, node.id)
        now = self.now()
        if first is None or as_utc(first) + dt.timedelta(seconds=node.after_seconds) > now:
            return None
        # Engines stepping held contacts of the split at once decide it one at a time: the
        # first holds the split's row until it commits, and the next takes the verdict it
        # froze rather than writing a second one (PostgreSQL; SQLite has one writer).
        campaign_store.lock_split(session, version_id, node.id)
        decided = self._frozen_winner(session, subject)
        if decided is not None:
            return decided
        verdict = conditions.ab_results(session, self.tenant, version_id, node, sending)
        _audit(session, self.tenant, "ab_winner", subject, verdict.as_details(), now)
        # Contacts held for the winner go now, not at their own arrival plus `after` (those
        # another worker is stepping right now are skipped: they see the winner as they step).
        # Status and due time are filtered here, not in SQL: given them, SQLite's planner
        # picks the status index over the version's and walks every sleeping enrollment.
        held = [
            enrollment_id
            for enrollment_id, status, due_at in session.execute(
                select(Enrollment.id, Enrollment.status, Enrollment.due_at)
                .where(Enrollment.version_id == version_id, Enrollment.node == node.id)
                .with_for_update(skip_locked=True)
            )
            if status == EnrollmentStatus.ACTIVE.value
            and due_at is not None
            and as_utc(due_at) > now
        ]
        self._due_now(session, held, now)
        return verdict.winner

    def _split_nodes(
        self, session: Session, version_id: int, node: c.ABSplitNode
    ) -> tuple[list[str], list[str]]:
        """An A/B split's branch nodes (`compiled.split_branch_nodes`) and the nodes whose
        sends carry its variants (`compiled.variant_nodes`), worked out once per split."""
        key = (version_id, node.id)
        found = self._split_branches.get(key)
        if found is None:
            campaign = self._version(session, version_id)[1]
            found = self._split_branches[key] = (
                sorted(c.split_branch_nodes(campaign, node)),
                sorted(c.variant_nodes(campaign, node)),
            )
        return found

    def _frozen_winner(self, session: Session, subject: str) -> str | None:
        """The winner an `ab_winner` audit line froze for the split `VERSION_ID:NODE`."""
        decided = session.scalar(
            select(AuditEntry.details).where(
                AuditEntry.tenant_id == self.tenant,
                AuditEntry.action == "ab_winner",
                AuditEntry.subject_id == subject,
            )
        )
        return str(decided["winner"]) if decided else None

    def _test_on_its_way(self, session: Session, version_id: int, node: c.ABSplitNode) -> bool:
        """Whether a contact given a test variant of the split is still on its branch's steps."""
        branch = self._split_nodes(session, version_id, node)[0]
        if not branch:
            return False
        waiting = session.scalar(
            select(Enrollment.id)
            .where(
                Enrollment.version_id == version_id,
                Enrollment.node.in_(branch),
                Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
            )
            .limit(1)
        )
        return waiting is not None

    async def _deliver_batch(self) -> RunStats:
        """Claim due sends from the outbox (retries, taken-over leases) and deliver them."""
        claimed = await self.store.call_retrying(self._claim_outbox_sync)
        return await self._deliver(claimed) if claimed else RunStats()

    async def _deliver_stepped(self, ready: list[OutgoingMessage]) -> RunStats:
        """Deliver the sends a step just queued, less those the contact may no longer get.

        The step checked them against what it read, but the service (or another engine)
        may have committed an unsubscribe, a suppression or a withdrawn consent since: the
        step's own lock does not hold it back, and on SQLite it lands between the step's
        commit and this. They are checked again, as a send claimed from the outbox is.
        """
        allowed = await self.store.call_retrying(self._still_allowed_sync, ready)
        return await self._deliver(allowed) if allowed else RunStats()

    def _still_allowed_sync(
        self, store: Store, messages: list[OutgoingMessage]
    ) -> list[OutgoingMessage]:
        now = self.now()
        with store.session() as session:
            rows: Sequence[Any] = session.execute(
                select(*_GATED_COLUMNS).where(
                    among(session, OutboxMessage.id, [m.outbox_id for m in messages])
                )
            ).all()
            kept = {row.id for row in self._drop_refused(session, rows, now)}
        return [m for m in messages if m.outbox_id in kept]

    async def _hand_over(self, sent: list[OutgoingMessage]) -> RunStats:
        """Give an in-process sink the sends its step stored as sent (see `Sink`)."""
        if not sent:
            return RunStats()
        results = await self.sink.deliver(sent)
        refused = [
            r.outbox_id for r in results if r.provider_message_id or (not r.sent and r.retry_at)
        ]
        if refused or len(results) != len(sent):
            # Already stored as sent: a sink with `in_process_provider` takes every send, or
            # fails one for good; it never asks for a retry nor has ids of its own.
            raise EngineError(f"the in-process sink did not simply accept sends {refused}")
        failed = {r.outbox_id: r.error or "failed" for r in results if not r.sent}
        if failed:
            await self.store.call_retrying(self._fail_sent_sync, failed)
        return RunStats(delivered=len(sent) - len(failed), failed=len(failed))

    def _fail_sent_sync(self, store: Store, failures: Mapping[int, str]) -> None:
        with store.session() as session:
            send_store.fail_sent_sends(session, failures, now=self.now())

    async def _deliver(self, claimed: list[OutgoingMessage]) -> RunStats:
        """Deliver sends this engine holds the lease on, and record what became of each."""
        claimed = await self._pace(claimed)
        if not claimed:
            return RunStats()
        results = await self.sink.deliver(claimed)
        self._slow_down(claimed, results)
        await self.store.call_retrying(self._record_delivery_sync, claimed, list(results))
        return RunStats(
            delivered=sum(1 for r in results if r.sent),
            # As `_record_delivery_sync` stores them: not sent and no retry is `failed`.
            failed=sum(1 for r in results if not r.sent and r.retry_at is None),
        )

    def _slow_down(
        self, messages: Sequence[OutgoingMessage], results: Sequence[DeliveryResult]
    ) -> None:
        """A provider's 429 pauses its channel's limiter until the retry, then halves its rate.

        Without this the limiter would keep planning sends at the full rate the provider has
        just refused, and every one of them would come back rate-limited too.
        """
        if self._limiter is None:
            return
        channels = {m.outbox_id: m.channel for m in messages}
        now = _micros(self.now())
        for result in results:
            channel = channels.get(result.outbox_id)
            if not result.rate_limited or channel not in self._limited:
                continue
            retry_after = _micros(result.retry_at) - now if result.retry_at is not None else 0
            self._limiter.throttle(self._limited.index(channel), now, max(0, retry_after))

    async def _pace(self, claimed: list[OutgoingMessage]) -> list[OutgoingMessage]:
        """Hold back the sends the rate limiter plans for later; return those due now.

        Each send is planned once (the limiter commits the slot it gives); a held send goes
        back to the outbox with its planned time and is delivered when it comes due.
        """
        if self._limiter is None:
            return claimed
        now = _micros(self.now())
        fresh = [
            m for m in claimed if m.channel in self._limited and m.outbox_id not in self._planned
        ]
        if fresh:
            priorities = {name: v.settings.priority for name, v in self._versions.values()}
            names = sorted({m.campaign for m in fresh})
            plan = self._limiter.schedule(
                [names.index(m.campaign) for m in fresh],
                [priorities.get(m.campaign, 5) for m in fresh],
                [self._limited.index(m.channel) for m in fresh],
                [0] * len(fresh),
                [now] * len(fresh),
            )
            for message, at in zip(fresh, plan.send_at.tolist(), strict=True):
                self._planned[message.outbox_id] = int(at)
        due = [m for m in claimed if self._planned.get(m.outbox_id, now) <= now]
        later = [m for m in claimed if self._planned.get(m.outbox_id, now) > now]
        if later:
            await self.store.call_retrying(self._hold_sync, later)
        for message in due:
            self._planned.pop(message.outbox_id, None)
        return due

    def _hold_sync(self, store: Store, messages: list[OutgoingMessage]) -> None:
        changes = [
            {
                "id": m.outbox_id,
                "next_attempt_at": dt.datetime.fromtimestamp(
                    self._planned[m.outbox_id] / 1_000_000, dt.UTC
                ),
            }
            for m in messages
        ]
        with store.session() as session:
            claims.update_outbox(session, self.owner, changes, now=self.now())

    def _claim_outbox_sync(self, store: Store) -> list[OutgoingMessage]:
        """Claim due sends from the outbox, dropping those that may no longer go.

        These sends were checked when their step ran, but time has passed since (a retry,
        a send the limiter held, one taken over from a dead engine): a contact suppressed,
        unsubscribed or without consent meanwhile is not sent to; the send is marked
        suppressed and logged as skipped with the reason.
        """
        now = self.now()
        with store.session() as session:
            rows = claims.claim_outbox(
                session, self.owner, now=now, limit=self.batch_size, lease_for=LEASE,
                tenant_id=self.tenant, columns=_MESSAGE_COLUMNS,
            )  # fmt: skip
            rows = self._drop_refused(session, rows, now)
            rows = self._drop_reported(session, rows, now)
            # The claim counted this attempt: the message carries those before it.
            return [self._message(session, row, int(row.attempts) - 1) for row in rows]

    def _message(self, session: Session, row: Row[Any], attempts: int) -> OutgoingMessage:
        """The sink's view of an outbox row (`_MESSAGE_COLUMNS`)."""
        name, compiled = self._version(session, row.version_id) if row.version_id else ("", None)
        return OutgoingMessage(
            outbox_id=row.id, idempotency_key=row.idempotency_key, tenant_id=row.tenant_id,
            campaign=name, version=compiled.version if compiled else "", node=row.node,
            contact_id=row.contact_id, channel=row.channel, template=row.template,
            variant=row.variant, payload=dict(row.payload or {}), attempts=max(0, attempts),
        )  # fmt: skip

    def _drop_reported(
        self, session: Session, rows: Sequence[Row[Any]], now: dt.datetime
    ) -> list[Row[Any]]:
        """Of claimed outbox rows, those no provider has reported on; the rest are sent.

        A send tried before whose outcome was unknown (a timeout after the request left) is
        tried again, and an adapter first asks its provider whether it has it. A provider
        report stored meanwhile (a delivery report, a bounce, an open, through its webhook)
        already says so, whatever the provider's lookup would answer: such a send is marked
        sent, as that report's provider took it, and not handed over again.
        """
        retried = [row.id for row in rows if int(row.attempts) > 1]  # the claim counted one
        if not retried:
            return list(rows)
        reported: dict[int, tuple[str | None, str | None]] = {}
        for outbox_id, provider, message_id, outcome in session.execute(
            select(SendLog.outbox_id, SendLog.provider, SendLog.provider_message_id,
                   SendLog.outcome)
            .where(
                among(session, SendLog.outbox_id, retried),
                SendLog.outcome.in_(sorted(PROVIDER_REPORTS | {NO_CREDITS})),
            )
            .order_by(SendLog.id)
        ):  # fmt: skip
            if outbox_id is None:
                continue
            if outcome == NO_CREDITS:
                # The provider refused what it had taken: what it said before is not about
                # the message this retry sends (`_hold_unpaid_sends`).
                reported.pop(outbox_id, None)
            else:
                reported.setdefault(outbox_id, (provider, message_id))
        if not reported:
            return list(rows)
        claims.update_outbox(
            session, self.owner,
            [{"id": outbox_id, "status": OutboxStatus.SENT.value, "sent_at": now,
              "provider": provider, "provider_message_id": message_id, "error": None}
             for outbox_id, (provider, message_id) in reported.items()],
            now=now,
        )  # fmt: skip
        self._log_claimed(session, rows, now, "sent", {
            outbox_id: {"provider": provider, "provider_message_id": message_id,
                        "detail": {"reason": "the provider reported on it before a retry"}}
            for outbox_id, (provider, message_id) in reported.items()
        })  # fmt: skip
        return [row for row in rows if row.id not in reported]

    def _is_confirmation(
        self, session: Session, version_id: int | None, template: str | None
    ) -> bool:
        """Whether a queued send is its version's confirmation message (`confirm_url`)."""
        if version_id is None:
            return False
        return consent.sends_confirmation(self._version(session, version_id)[1], template)

    def _drop_refused(
        self, session: Session, rows: Sequence[Row[Any]], now: dt.datetime
    ) -> list[Row[Any]]:
        """Of claimed outbox rows, those the contact may still be sent; the rest are closed."""
        to_contacts = [row for row in rows if row.node != NOTIFY_NODE]
        if not to_contacts:
            return list(rows)
        facts = load_facts(
            session, self.tenant, {row.contact_id for row in to_contacts}, with_history=False
        )
        gates = _Gates(session, self.tenant, facts, now, self.default_cap)
        refused: dict[int, str] = {}
        for row in to_contacts:
            if row.contact_id in facts:
                confirmation = self._is_confirmation(session, row.version_id, row.template)
                reason = gates.refusal(row.contact_id, row.channel, confirmation=confirmation)
                if reason is not None:
                    refused[row.id] = reason
        if not refused:
            return list(rows)
        claims.update_outbox(
            session, self.owner,
            [{"id": outbox_id, "status": OutboxStatus.SUPPRESSED.value,
              "error": f"{reason} since it was queued"} for outbox_id, reason in refused.items()],
            now=now,
        )  # fmt: skip
        self._log_claimed(session, to_contacts, now, "skipped", {
            row.id: {"detail": {"node": row.node, "reason": refused[row.id], "when": "delivery"}}
            for row in to_contacts
            if row.id in refused
        })  # fmt: skip
        return [row for row in rows if row.id not in refused]

    def _log_claimed(
        self,
        session: Session,
        rows: Sequence[Row[Any]],
        now: dt.datetime,
        outcome: str,
        extra: Mapping[int, Mapping[str, Any]],
    ) -> None:
        """Log `outcome` for the claimed rows named in `extra`, each with its own columns."""
        insert_rows(
            session,
            SendLog.__table__,  # type: ignore[arg-type]
            [
                {
                    "tenant_id": self.tenant, "outbox_id": row.id, "contact_id": row.contact_id,
                    "channel": row.channel, "at": now, "outcome": outcome, **extra[row.id],
                }
                for row in rows
                if row.id in extra
            ],
        )  # fmt: skip

    def _record_delivery_sync(
        self, store: Store, messages: list[OutgoingMessage], results: list[DeliveryResult]
    ) -> None:
        now = self.now()
        by_id = {message.outbox_id: message for message in messages}
        # Sends accepted with no provider id of their own (an in-process sink) are recorded
        # by group, in SQL; the rest row by row, each with its own outcome and ids.
        plain: dict[claims.SentAs, list[int]] = {}
        changes: list[dict[str, Any]] = []
        log: list[dict[str, Any]] = []
        for result in results:
            message = by_id.get(result.outbox_id)
            cost = message.payload.get("cost") if message is not None and result.sent else None
            if result.sent and result.provider_message_id is None and not result.error:
                key = (
                    result.provider,
                    Decimal(cost["amount"]) if cost else None,
                    cost["currency"] if cost else None,
                )
                plain.setdefault(key, []).append(result.outbox_id)
                continue
            if result.sent:
                changes.append({
                    "id": result.outbox_id, "status": OutboxStatus.SENT.value, "sent_at": now,
                    "provider": result.provider,
                    "provider_message_id": result.provider_message_id,
                })  # fmt: skip
            elif result.retry_at is not None:
                changes.append({"id": result.outbox_id, "next_attempt_at": result.retry_at,
                                "error": result.error})  # fmt: skip
            else:
                changes.append({"id": result.outbox_id, "status": OutboxStatus.FAILED.value,
                                "error": result.error})  # fmt: skip
            if message is None:
                continue
            log.append({
                "tenant_id": message.tenant_id, "outbox_id": message.outbox_id,
                "contact_id": message.contact_id, "channel": message.channel, "at": now,
                "outcome": "sent" if result.sent else "failed", "provider": result.provider,
                "provider_message_id": result.provider_message_id,
                "cost": Decimal(cost["amount"]) if cost else None,
                "currency": cost["currency"] if cost else None,
                "detail": {"error": result.error} if result.error else {},
            })  # fmt: skip
        rejected = [
            (by_id[r.outbox_id].channel, by_id[r.outbox_id].contact_id)
            for r in results
            if r.address_rejected and not r.sent and r.outbox_id in by_id
        ]
        with store.session() as session:
            claims.record_sent(session, self.owner, plain, now=now)
            lost = set(claims.update_outbox(session, self.owner, changes, now=now))
            # A send whose lease was lost was taken over; the new owner records it.
            kept = [row for row in log if row["outbox_id"] not in lost]
            if kept:
                insert_rows(session, SendLog.__table__, kept)  # type: ignore[arg-type]
            suppress.suppress_rejected(session, self.tenant, rejected, now)
            self._hold_for_account(session, _account_refusals(by_id, results, lost), now)


class _ImportChunks:
    """What the triggers of an import's chunks share: the active campaigns, read at its
    first chunk in its transaction and kept for the others (as the whole file saw them when
    it was written at once, instead of two reads per chunk), and the segment memberships
    of the chunk being written, read before it is written."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._active: list[tuple[int, c.CompiledCampaign]] | None = None
        self.before: frozenset[tuple[int, str, str]] = frozenset()

    def active(self, session: Session) -> list[tuple[int, c.CompiledCampaign]]:
        """The active campaigns, read once per import."""
        if self._active is None:
            self._active = self._engine._active_versions(session)
        return self._active

    def read_before(self, session: Session, contact_ids: Sequence[str]) -> None:
        """Read which watched segments the next chunk's contacts are in before it is written."""
        self.before = self._engine._segment_members(session, contact_ids, self.active(session))


class _Gates:
    """Suppression, consent, caps and budget for one batch, loaded once, updated as it sends.

    Email, inbox and webhook sends need no opt-in but stop at a denied, withdrawn or
    unconfirmed (double opt-in pending) consent; SMS and WhatsApp need consent granted, or
    the contact attribute `sms_opt_in` / `whatsapp_opt_in` set to true. A send is checked
    against its campaign's caps and `default_cap` (`caps_in_force`); a confirmation message
    is not held back by the default cap (it counts, as every send does). A campaign with a
    `budget` is paused once its sends so far (pending or sent, at its `cost` per channel)
    and this one would pass it: the send waits at its step (`paused` says why, per campaign).
    """

    OPT_IN_CHANNELS: ClassVar[frozenset[str]] = consent.OPT_IN_CHANNELS

    def __init__(
        self,
        session: Session,
        tenant: str,
        facts: dict[str, ContactFacts],
        now: dt.datetime,
        default_cap: CapLimit | None,
    ) -> None:
        """The checks for the batch's contacts; a channel's data is read when first asked."""
        self.now = now
        self.now_us = _micros(now)
        self.facts = facts
        self.session = session
        self.tenant = tenant
        self.default_cap = default_cap
        self.spent: dict[str, Decimal] = {}
        self.paused: dict[str, dict[str, Any]] = {}
        # Frequency caps run in the dispatch core: one index per set of caps in force (most
        # campaigns share the default's), built from the batch's send history and kept
        # current as the batch sends. Caps in force per campaign version (by object).
        self.codes = {contact_id: code for code, contact_id in enumerate(sorted(facts))}
        self.caps: dict[int, CapsInForce] = {}
        self.cap_indexes: dict[tuple[CapLimit, ...], FrequencyCaps] = {}
        self.suppressed: dict[str, set[str]] = {}
        self.consent: dict[str, dict[str, ConsentStatus]] = {}

    def _load(self, channel: str) -> None:
        """Read the suppressions and consents of the batch's contacts on `channel`."""
        contacts = sorted(self.facts)
        recipients = [(cid, self._address(cid, channel)) for cid in contacts]
        self.suppressed[channel] = send_store.suppressed_contacts(
            self.session, self.tenant, channel, recipients, now=self.now
        )
        self.consent[channel] = send_store.consent_statuses(
            self.session, self.tenant, channel, contacts
        )

    def _address(self, contact_id: str, channel: str) -> str | None:
        """The contact's address on `channel` (None: none, or a channel without one)."""
        field_name = send_store.ADDRESS_FIELD.get(channel)
        if field_name is None:
            return None
        return str(self.facts[contact_id].attributes.get(field_name) or "") or None

    def for_contact(
        self, contact_id: str, campaign: c.CompiledCampaign
    ) -> Callable[[str, str], SendGate]:
        """The gate for one contact's sends in one campaign."""

        def gate(channel: str, template: str) -> SendGate:
            confirmation = consent.sends_confirmation(campaign, template)
            refused = self.refusal(contact_id, channel, confirmation=confirmation)
            if refused is not None:
                return SendGate.skip(refused)
            facts = self.facts[contact_id]
            caps = self._caps_in_force(campaign)
            index = self._cap_index(caps) if caps.rules else None
            if index is not None:
                code = self.codes[contact_id]
                denied_by = index.check_and_reserve_one(code, channel, self.now_us)
                if denied_by >= 0:
                    # The rules are checked in order, the default last: held back by the
                    # default, the send passed the campaign's own caps. A confirmation
                    # message goes (a pending double opt-in waits for it) and is counted.
                    if not (confirmation and caps.is_default(denied_by)):
                        return SendGate.skip(caps.skip_reason(denied_by))
                    index.record([code], [channel], [self.now_us])
            budget = campaign.settings.budget
            cost = campaign.settings.costs.get(channel)
            if budget is not None and cost is not None:
                spent = self._spent(campaign)
                if spent + cost.amount > budget.amount:
                    if index is not None:
                        index.release([self.codes[contact_id]], [channel], [self.now_us])
                    # `next`: what the message that would pass it costs, so "0.97 of 1 USD"
                    # reads as the rule, not as a pause 0.03 early.
                    self.paused[campaign.name] = {
                        "reason": "budget", "spent": str(spent),
                        "budget": str(budget.amount), "currency": budget.currency,
                        "next": str(cost.amount),
                    }  # fmt: skip
                    return SendGate.pause_campaign(
                        f"budget {amount_text(budget.amount, budget.currency)} spent"
                    )
                self.spent[campaign.name] = spent + cost.amount
            facts.sends.append((channel, None, self.now))
            self._record_elsewhere(index, contact_id, channel)
            return SendGate.allow()

        return gate

    def refusal(self, contact_id: str, channel: str, *, confirmation: bool = False) -> str | None:
        """Why the contact must not be sent to on `channel` at all, or None.

        No address on the channel (email, or a phone for SMS and WhatsApp), suppressed (a
        bounce, a complaint, an unsubscribe), unsubscribed by attribute, or without the
        consent the channel needs. A `confirmation` (a template using `confirm_url`) is the
        one send a pending consent lets through, and only that: without a pending consent
        on the channel there is nothing to confirm; the person's own opt-out does not stop
        it (they asked for it by signing up again). Checked when a step sends and again when
        a queued send is delivered later (a retry, a rate-limited or taken-over send).
        """
        facts = self.facts[contact_id]
        field_name = send_store.ADDRESS_FIELD.get(channel)
        if field_name is not None and not str(facts.attributes.get(field_name) or "").strip():
            return "no email address" if field_name == "email" else "no phone number"
        if channel not in self.suppressed:
            # On first ask: a batch whose steps reach no send on a channel reads nothing for it.
            self._load(channel)
        if contact_id in self.suppressed[channel] and not (
            # Someone who left and signs up again asked for this very message: their own
            # opt-out does not stop it (their bounces and complaints do).
            confirmation
            and send_store.only_own_opt_outs(
                self.session, self.tenant, channel, contact_id,
                self._address(contact_id, channel), reason=suppress.UNSUBSCRIBED, now=self.now,
            )
        ):  # fmt: skip
            return "suppressed"
        if (
            facts.attributes.get(suppress.UNSUBSCRIBED) is True
            and channel in send_store.PERSONAL_CHANNELS
        ):
            return "unsubscribed"
        consent = self.consent[channel].get(contact_id)
        if confirmation:
            return None if consent is ConsentStatus.PENDING else NOTHING_TO_CONFIRM
        if consent in (ConsentStatus.DENIED, ConsentStatus.WITHDRAWN, ConsentStatus.PENDING):
            return f"no consent ({consent})"
        if channel in self.OPT_IN_CHANNELS and consent is not ConsentStatus.GRANTED:
            if facts.attributes.get(f"{channel}_opt_in") is not True:
                return f"no {channel} opt-in"
        return None

    def _caps_in_force(self, campaign: c.CompiledCampaign) -> CapsInForce:
        """The caps the campaign's sends are checked against (its own, then the default)."""
        caps = self.caps.get(id(campaign))
        if caps is None:
            caps = self.caps[id(campaign)] = caps_in_force(campaign.settings.caps, self.default_cap)
        return caps

    def _cap_index(self, caps: CapsInForce) -> FrequencyCaps:
        """The index of these caps over this batch's contacts and their sends so far."""
        index = self.cap_indexes.get(caps.rules)
        if index is None:
            from cadence.dispatch.caps import CapRule, FrequencyCaps

            rules = [
                CapRule(cap.channel, cap.count, cap.per_seconds * 1_000_000) for cap in caps.rules
            ]
            index = FrequencyCaps(rules)
            history = [
                (self.codes[contact_id], channel, _micros(as_utc(at)))
                for contact_id, fact in self.facts.items()
                for channel, _, at in fact.sends
            ]
            if history:
                codes, channels, ats = zip(*history, strict=True)
                index.rebuild(list(codes), list(channels), list(ats))
            self.cap_indexes[caps.rules] = index
        return index

    def _record_elsewhere(self, used: FrequencyCaps | None, contact_id: str, channel: str) -> None:
        """A send allowed under one index (or none) counts against every other's caps too."""
        for index in self.cap_indexes.values():
            if index is not used:
                index.record([self.codes[contact_id]], [channel], [self.now_us])

    def _spent(self, campaign: c.CompiledCampaign) -> Decimal:
        """What the campaign's sends so far cost, over all its versions, at its own prices."""
        if campaign.name not in self.spent:
            # Status is counted here, not filtered in SQL: given a status condition, SQLite's
            # planner (without statistics) reads every pending or sent row of the tenant
            # through the status index instead of the campaign's through version_id.
            per_channel = self.session.execute(
                select(OutboxMessage.channel, OutboxMessage.status, func.count())
                .join(CampaignVersion, CampaignVersion.id == OutboxMessage.version_id)
                .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
                .where(
                    Campaign.tenant_id == self.tenant,
                    Campaign.name == campaign.name,
                    OutboxMessage.node != NOTIFY_NODE,
                )
                .group_by(OutboxMessage.channel, OutboxMessage.status)
            ).all()
            costs = campaign.settings.costs
            self.spent[campaign.name] = sum(
                (
                    costs[ch].amount * count
                    for ch, status, count in per_channel
                    if ch in costs and status in COUNTED_SEND_STATUSES
                ),
                Decimal(0),
            )
        return self.spent[campaign.name]


def _account_refusals(
    by_id: Mapping[int, OutgoingMessage], results: Sequence[DeliveryResult], lost: set[int]
) -> dict[str, dict[str, Any]]:
    """The campaigns to pause because a provider refused their sends for the account (its
    spent credit, its API key), each with why (the audit line `cadence status` and the
    dashboard read)."""
    pausing: dict[str, dict[str, Any]] = {}
    for result in results:
        message = by_id.get(result.outbox_id)
        if result.account_refused and message is not None and result.outbox_id not in lost:
            pausing.setdefault(message.campaign, {
                "reason": result.account_refused, "provider": result.provider,
                "channel": message.channel, "error": result.error,
            })  # fmt: skip
    return pausing


def _hold(
    session: Session,
    campaign: Campaign,
    versions: Sequence[int],
    now: dt.datetime,
    *,
    skip_locked: bool = False,
) -> int:
    """Pause a campaign: every active enrollment of its versions held where it is, and its
    queued sends (a retry waiting for its time) with them."""
    count = campaign_store.hold_enrollments(session, versions, now=now, skip_locked=skip_locked)
    campaign_store.hold_pending_sends(session, versions, now=now)
    if CampaignStatus(campaign.status) in _ALLOWED_MOVES["pause"]:
        campaign.status = CampaignStatus.PAUSED.value
    campaign.updated_at = now
    return count


def _checked_agent_name(name: str) -> str:
    """An agent's name, trimmed and in NFC (as `contact.agent` is compared: an NFD "José"
    added here must be the "José" a condition names), or an error saying what is wrong."""
    cleaned = nfc(name.strip())
    if not cleaned:
        raise EngineError("an agent needs a name")
    if len(cleaned) > NAME_LENGTH:
        raise EngineError(f"agent name {cleaned[:20]!r}... is longer than {NAME_LENGTH} characters")
    return cleaned


def _without_events(history: list[EventFact], left_out: Sequence[EventRecord]) -> list[EventFact]:
    """`history` less one stored event for each of `left_out` (same name, instant and
    properties; of the same name and instant when the store gave the properties back
    otherwise).

    One pass over the history per kind of match: a push of many events of one contact
    judges each against its history, so a search per left-out event would be quadratic.
    """
    unmatched: dict[tuple[str, dt.datetime], list[dict[str, Any]]] = {}
    for record in left_out:
        unmatched.setdefault((record.name, as_utc(record.at)), []).append(record.properties)
    exact: list[EventFact] = []
    for fact in history:
        wanted = unmatched.get((fact.name, fact.at))
        if wanted and fact.properties in wanted:
            wanted.remove(fact.properties)
            continue
        exact.append(fact)
    loose = {key: len(wanted) for key, wanted in unmatched.items() if wanted}
    if not loose:
        return exact
    kept: list[EventFact] = []
    for fact in exact:
        key = (fact.name, fact.at)
        if loose.get(key):
            loose[key] -= 1
            continue
        kept.append(fact)
    return kept


def _launch_triggers(
    campaign: c.CompiledCampaign,
) -> list[c.LaunchTriggerModel | c.AtTriggerModel | c.EveryTriggerModel]:
    """The triggers that enroll the campaign's audience when it is launched."""
    return [
        trigger
        for trigger in campaign.triggers
        if isinstance(trigger, c.LaunchTriggerModel | c.AtTriggerModel | c.EveryTriggerModel)
    ]


def _send_payload(
    campaign: c.CompiledCampaign, channel: str, event: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What an outbox row carries for its delivery: campaign, triggering event, cost."""
    cost = campaign.settings.costs.get(channel)
    return {
        "campaign": campaign.name,
        "event": event or {},
        "cost": {"amount": str(cost.amount), "currency": cost.currency} if cost else None,
    }


def _set_standard_fields(
    contact: Contact, values: Mapping[str, Any], moved_zones: dict[str, str | None]
) -> dict[str, Any]:
    """Write what `set` gave a standard field (`first_name`, `email`, `timezone`, `tags` ...)
    to its column, read as an import reads it; returns the custom attributes left.

    `contact.first_name` and a bare `first_name` read the column, so the value stored among
    the custom attributes was never seen. A value the field cannot hold (`set email =
    "nobody"`, an unknown zone) leaves the field as it was; `id` is never changed. A contact
    whose timezone moves is noted in `moved_zones` with the zone it had.
    """
    standard = {k: v for k, v in values.items() if k in CONTACT_COLUMNS and k != "id"}
    for name, value in standard.items():
        record, problems = validate_contact({"id": contact.id, name: value}, None)
        if record is None or problems:
            continue
        stored = record.fields.get(name)
        if name == "timezone" and stored != contact.timezone:
            moved_zones.setdefault(contact.id, contact.timezone)
        setattr(contact, name, stored)
    return {k: v for k, v in values.items() if k not in CONTACT_COLUMNS}


def _send_channel(campaign: c.CompiledCampaign, node_id: str) -> str:
    """The channel of a send step, for the send log of a send that was skipped there."""
    node = campaign.node_map.get(node_id)
    return node.channel if isinstance(node, c.SendNode) else "-"


def _append_history(stored: str | None, entries: list[list[Any]]) -> RawJSON:
    """An enrollment's history (JSON text) with `entries` appended, keeping the last HISTORY.

    Appending is text work: the stored list is decoded only when it may be over the limit.
    Entries are flat lists, so each boundary between two has a `],`; counting those can
    only overcount (a reason may contain one), which merely takes the exact path.
    """
    text = (stored or "[]").strip()
    if not entries:
        return RawJSON(text)
    added = dumps_json(entries)
    if text == "[]":
        return RawJSON(added if len(entries) <= HISTORY else dumps_json(entries[-HISTORY:]))
    if text.count("],") + 1 + len(entries) <= HISTORY:
        return RawJSON(f"{text[:-1]}, {added[1:]}")
    return RawJSON(dumps_json([*orjson.loads(text), *entries][-HISTORY:]))


def _micros(moment: dt.datetime) -> int:
    """An instant as integer microseconds since the epoch, as the dispatch core counts time."""
    return int(moment.timestamp() * 1_000_000)


def _audit_mark(store: Store) -> int:
    """The audit log's last line before a lifecycle move begins (see `_moved_since`)."""
    with store.session() as session:
        return int(session.scalar(select(func.max(AuditEntry.id))) or 0)


def _moved_since(
    session: Session, tenant: str, action: str, name: str, mark: int
) -> dict[str, Any] | None:
    """The audit details of the move `action` on campaign `name` written after the audit
    line `mark`, when its transaction runs again and finds it done; else None.

    A connection lost as a transaction commits looks transient, so `call_retrying` runs it
    again, but the commit may have gone through: a launch run again then found its own
    campaign active and refused ("it is active") the launch it had made.
    """
    details: dict[str, Any] | None = session.scalar(
        select(AuditEntry.details)
        .where(
            AuditEntry.tenant_id == tenant,
            AuditEntry.action == action,
            AuditEntry.subject_id == name,
            AuditEntry.id > mark,
        )
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    return details


def _audit(
    session: Session,
    tenant: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    now: dt.datetime,
    *,
    actor: str = "engine",
) -> None:
    """One audit line about a campaign, written by the engine (or on behalf of `actor`)."""
    campaign_store.record_audit(
        session, tenant, actor=actor, action=action, subject_type="campaign",
        subject_id=subject, now=now, details=details,
    )  # fmt: skip


def _approval_text(rule: str, approved_by: str | None) -> str:
    """A campaign's approval in words, for `cadence status`."""
    needed = {
        "required": "required",
        "implied": f"needed above {IMPLIED_APPROVAL_ABOVE:,} contacts",
        "none": "not needed",
    }.get(rule, rule)
    if approved_by:
        return f"{needed}, approved by {approved_by}"
    return "required, not approved" if rule == "required" else needed


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _as_campaigns(
    source: Iterable[c.CompiledCampaign] | str | Path | Sequence[str | Path],
) -> list[c.CompiledCampaign]:
    if isinstance(source, str | Path):
        source = [source]
    items = list(source)
    if all(isinstance(item, c.CompiledCampaign) for item in items):
        return [item for item in items if isinstance(item, c.CompiledCampaign)]
    from cadence.dsl.compiler import compile_paths

    return compile_paths([Path(str(item)) for item in items])


def _first_occurrence(
    trigger: c.AtTriggerModel | c.EveryTriggerModel,
    zone: Any,
    campaign: c.CompiledCampaign,
    now: dt.datetime,
    series_start: dt.datetime,
    due_from: dt.datetime,
) -> dt.datetime | None:
    """A contact's first run: an `at` moment (at once if past), or the first run of the
    campaign's `every` series (counted from `series_start`) at or after `due_from`."""
    campaign_zone = timing.campaign_zone(campaign)
    if isinstance(trigger, c.AtTriggerModel):
        instant = timing.at_trigger_instant(
            trigger.at, trigger.local, zone if trigger.local else campaign_zone
        )
        return max(instant, now)
    return timing.every_run_from(
        trigger, zone if trigger.local else campaign_zone, series_start, due_from
    )


def _next_occurrence(
    trigger: c.EveryTriggerModel,
    zone: Any,
    campaign: c.CompiledCampaign,
    booked: dt.datetime,
    now: dt.datetime,
) -> dt.datetime | None:
    """The run of an `every` trigger after the one booked at `booked`, not before `now`.

    Counted from the booked run, so `every 2w 10:00` steps two weeks from it; a run stepped
    late (the engine was down) books the next one still to come rather than catching up.
    """
    zone = zone if trigger.local else timing.campaign_zone(campaign)
    booked = as_utc(booked)
    after = booked + dt.timedelta(microseconds=1)
    return timing.every_run_from(trigger, zone, booked, max(after, now))


def _holds_at(
    facts: ContactFacts, campaign: c.CompiledCampaign, expr: Any, instant: dt.datetime
) -> bool:
    """Whether `expr` holds for the contact at `instant` (a sweep's reading)."""
    return conditions.Context(facts, campaign, instant).holds(expr)
