"""Differential harness: the same campaigns, contacts and events run as a dry-run and live.

Cadence promises "one engine, two clocks": what `cadence dry-run` says will be sent is what a
live engine sends. `run_both` runs a case twice and returns what each side did, so a test
compares them field by field:

- the dry-run, as `cadence dry-run --json` runs it (`dryrun.dry_run`, no `--assume`, its
  store a SQLite file so its enrollments can be read afterwards);
- live: the embedded `Engine` on the store under test with a controllable clock and a sink
  that records each send at the moment it is handed over. It takes no shortcut a dry-run
  takes: its sink has no `in_process_provider`, so every send goes through the outbox (a
  leased row, delivered, then recorded) as with the channel adapters; consent events come
  from `Engine.set_consent`; contacts of an `on contact_created` case are created after
  the launch instead of being treated as new; each event is pushed when the clock reaches
  its `at`, after everything due before that instant has run (so a step due at that
  instant sees it, as the dry-run's does: what happened at or before `now` exists).

Events dated before the start are history on both sides: stored before anything is
deployed. An event at exactly the start arrives after the launch has stepped its audience
(docs/cli.md), live too.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import select

from cadence.adapters.config import load_settings
from cadence.adapters.outbound import Outbound
from cadence.adapters.retry import RetryPolicy
from cadence.adapters.sink import AdapterSink, StoreContentSource
from cadence.adapters.standins import start_standins
from cadence.adapters.tracking import LinkSigner, TrackingLinks
from cadence.dsl.compiled import CompiledCampaign
from cadence.dsl.compiler import compile_paths
from cadence.engine import consent
from cadence.engine.clock import SimulatedClock, as_utc, parse_instant
from cadence.engine.dryrun import _skipped_sends, dry_run
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, Sink
from cadence.engine.store import Store
from cadence.engine.store.models import NOTIFY_NODE, Campaign, CampaignVersion, Enrollment

# One send as `--json` lists it: (at, contact, campaign, node, channel, template, variant).
SendRow = tuple[str, str, str, str | None, str, str | None, str | None]
# One enrollment at the end: (campaign, contact, occurrence, status, node, due_at).
EnrollmentRow = tuple[str, str, int, str, str | None, str | None]
# One send a gate stopped: (at, contact, campaign, node, channel, reason).
SkipRow = tuple[str, str, str, str, str, str]

INSTANT = "%Y-%m-%dT%H:%M:%SZ"
# What a live service configures beside the providers' keys: a sender for the campaigns
# without `from` (`cadence run` warns without one), a WhatsApp number, and (set where the
# stand-ins start) the URL `send webhook` posts to.
LIVE_SETTINGS = {
    "CADENCE_FROM": "Acme <hello@acme.test>",
    "CADENCE_INFOBIP_WHATSAPP_SENDER": "15550001111",
}
# Live, everything due strictly before an event's instant runs before it arrives.
JUST_BEFORE = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Outcome:
    """What one side of a run did: its sends, its enrollments at the end, its skipped sends."""

    sends: list[SendRow]
    enrollments: list[EnrollmentRow]
    skipped: list[SkipRow]


@dataclass(frozen=True)
class Case:
    """A campaign file with its contacts and events, and the stretch of time to run it over.

    `new_contacts`: the contacts are created at the launch (live: upserted right after it),
    which is what a dry-run's contacts are to `on contact_created`; otherwise they are there
    before the launch, as to every other trigger.
    """

    source: str
    contacts: list[dict[str, Any]]
    start: dt.datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    days: int = 30
    new_contacts: bool = False
    agents: tuple[str, ...] = ()


@dataclass
class ClockedSink:
    """Notes the simulated instant of each send it accepts; accepts every one, or what
    `forward` (the channel adapters) accepts.

    No `in_process_provider`: the engine treats it as a channel adapter (outbox, lease,
    delivery, then the record), which is the path a live send takes.
    """

    clock: SimulatedClock
    forward: Sink | None = None
    sent: list[tuple[dt.datetime, OutgoingMessage]] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Hand the messages on (or take them); record those sent at the clock's instant."""
        now = self.clock.now()
        if self.forward is None:
            results: Sequence[DeliveryResult] = [
                DeliveryResult(m.outbox_id, True, "live", f"live-{m.idempotency_key[:16]}")
                for m in messages
            ]
        else:
            results = await self.forward.deliver(messages)
        self.sent.extend(
            (now, message) for message, result in zip(messages, results, strict=True) if result.sent
        )
        return results


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def _at(event: dict[str, Any]) -> dt.datetime:
    return parse_instant(str(event["at"]))


def _text(moment: dt.datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).strftime(INSTANT)


def store_rows(store: Store) -> tuple[list[EnrollmentRow], list[SkipRow]]:
    """The enrollments as they end and the sends the gates stopped, in a stable order."""
    with store.session() as session:
        enrollments = [
            (name, contact, occurrence, status, node, _text(due))
            for name, contact, occurrence, status, node, due in session.execute(
                select(
                    Campaign.name,
                    Enrollment.contact_id,
                    Enrollment.occurrence,
                    Enrollment.status,
                    Enrollment.node,
                    Enrollment.due_at,
                )
                .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
                .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
            )
        ]
    # The dry-run's own reading of the send log's skipped sends (its `--contact` view).
    skipped = [
        (_text(s.at) or "", s.contact, s.campaign, s.node, s.channel, s.reason)
        for s in _skipped_sends(store)
    ]
    return sorted(enrollments), sorted(skipped)


def _outcome(sends: list[SendRow], url: str) -> Outcome:
    """The sends with the enrollments and skipped sends of the store at `url`."""
    store = Store.open(url)
    try:
        return Outcome(sends, *store_rows(store))
    finally:
        store.close()


def compile_case(case: Case, folder: Path) -> list[CompiledCampaign]:
    """The case's campaigns, compiled from a file as the command line compiles them."""
    path = folder / "case.cadence"
    path.write_text(case.source, "utf-8")
    return compile_paths([path])


def run_dry(case: Case, folder: Path) -> Outcome:
    """The case as `cadence dry-run --json` runs it."""
    campaigns = compile_case(case, folder)
    contacts = _write_jsonl(folder / "contacts.jsonl", case.contacts)
    events = _write_jsonl(folder / "events.jsonl", case.events) if case.events else None
    url = f"sqlite:///{folder / 'dry.db'}"
    report = trio.run(
        lambda: dry_run(
            campaigns,
            contacts,
            events=events,
            start=case.start,
            until=dt.timedelta(days=case.days),
            database_url=url,
            render=False,
        )
    )
    sends = sorted(
        (
            str(line["at"]),
            line["contact"],
            line["campaign"],
            line["node"],
            line["channel"],
            line["template"],
            line["variant"],
        )
        for line in (json.loads(text) for text in report.json_lines())
        if line["type"] == "send"
    )
    return _outcome(sends, url)


async def _push_live(engine: Engine, events: Sequence[dict[str, Any]]) -> None:
    """Events as a live system delivers them: a consent change through `set_consent`, which
    stores its own event; anything else pushed."""
    plain: list[dict[str, Any]] = []
    for event in events:
        status = consent.status_of_event(str(event["name"]))
        if status is None:
            plain.append(event)
            continue
        properties = event.get("properties") or {}
        await engine.set_consent(
            event["contact"], properties["channel"], status.value, source=properties.get("source")
        )
    if plain:
        await engine.push_events(plain)


async def _live(
    case: Case, campaigns: list[CompiledCampaign], url: str, adapters: bool
) -> list[SendRow]:
    clock = SimulatedClock(case.start)
    sink = ClockedSink(clock)
    if not adapters:
        return await _live_run(case, campaigns, url, sink)
    # The real channel adapters, against the loopback Brevo and Infobip stand-ins.
    async with trio.open_nursery() as nursery:
        standins = await start_standins(nursery)
        outbound = Outbound(
            load_settings(
                env={
                    **standins.environment(),
                    **LIVE_SETTINGS,
                    "CADENCE_WEBHOOK_URL": standins.webhook_url,
                }
            ),
            policy=RetryPolicy(max_attempts=1, base_delay=0.01, max_inline_wait=0.1),
            inbox_url=url,
        )
        source = StoreContentSource(url)
        sink.forward = AdapterSink(
            outbound, source, links=TrackingLinks("https://links.example.test", LinkSigner("k"))
        )
        try:
            return await _live_run(case, campaigns, url, sink)
        finally:
            source.close()
            await outbound.aclose()
            nursery.cancel_scope.cancel()


async def _live_run(
    case: Case, campaigns: list[CompiledCampaign], url: str, sink: ClockedSink
) -> list[SendRow]:
    clock = sink.clock
    horizon = as_utc(case.start) + dt.timedelta(days=case.days)
    history = [e for e in case.events if _at(e) < case.start]
    # As in the dry-run, an event after the run's end never arrives.
    future = sorted((e for e in case.events if case.start <= _at(e) <= horizon), key=_at)
    async with Engine(url, clock=clock, sink=sink) as engine:
        for agent in case.agents:
            await engine.add_agent(agent)
        if not case.new_contacts:
            await engine.upsert_contacts(case.contacts)
        if history:
            await _push_live(engine, history)
        await engine.deploy(campaigns)
        for campaign in campaigns:
            await engine.approve(campaign.name, by="live")
            await engine.launch(campaign.name)
        if case.new_contacts:
            await engine.upsert_contacts(case.contacts)
        await engine.run_due()
        for instant, group in groupby(future, key=_at):
            if instant > clock.now():
                await engine.run_until(instant - JUST_BEFORE)
                clock.advance_to(instant)
            await _push_live(engine, list(group))
            await engine.run_due()
        await engine.run_until(horizon)
    return sorted(
        (
            _text(at) or "",
            m.contact_id,
            m.campaign,
            m.node,
            m.channel,
            m.template,
            m.variant,
        )
        for at, m in sink.sent
        if m.node != NOTIFY_NODE
    )


def run_live(case: Case, folder: Path, store_url: str, *, adapters: bool = False) -> Outcome:
    """The case on the embedded engine, live, on the store at `store_url`; with `adapters`,
    every send goes through the channel adapters to the loopback provider stand-ins."""
    campaigns = compile_case(case, folder)
    return _outcome(trio.run(_live, case, campaigns, store_url, adapters), store_url)


def run_both(
    case: Case, folder: Path, store_url: str, *, adapters: bool = False
) -> tuple[Outcome, Outcome]:
    """(dry-run, live) for one case (`run_live` for `adapters`)."""
    dry_folder, live_folder = folder / "dry", folder / "live"
    dry_folder.mkdir()
    live_folder.mkdir()
    return run_dry(case, dry_folder), run_live(case, live_folder, store_url, adapters=adapters)


def assert_same(
    dry: Outcome, live: Outcome, *, check: Callable[[Outcome], None] | None = None
) -> None:
    """The two sides sent the same, left the same enrollments and skipped the same sends;
    `check` asserts something of the dry-run's own (that the case did exercise its construct)."""
    for what in ("sends", "enrollments", "skipped"):
        ours, theirs = getattr(dry, what), getattr(live, what)
        only_dry = [row for row in ours if row not in theirs]
        only_live = [row for row in theirs if row not in ours]
        assert ours == theirs, f"{what}: only in the dry-run {only_dry}; only live {only_live}"
    if check is not None:
        check(dry)
