"""Dry-run: the real engine on a simulated clock against a throwaway store, sending nothing.

A dry-run imports the contacts (and events), deploys and launches the campaigns, then moves
the simulated clock from one due moment to the next until the horizon. Sends go to a sink
that records them and, with `--assume`, draws engagement (opens, clicks, replies,
conversions) from a seeded random generator so branches and A/B winners are exercised.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cadence.dsl.compiled import CompiledCampaign
from cadence.engine.clock import SimulatedClock, as_utc, parse_instant
from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, RunStats
from cadence.engine.store import Store
from cadence.engine.store.importer import read_jsonl
from cadence.engine.store.models import Campaign, CampaignVersion, Enrollment
from cadence.engine.store.records import InvalidInput, Problem
from cadence.errors import CadenceError

ENGAGEMENT_ORDER = ("opened", "clicked", "replied", "converted")
# How long after a send a simulated reaction arrives.
REACTION_DELAY = {
    "opened": dt.timedelta(hours=1),
    "clicked": dt.timedelta(hours=2),
    "replied": dt.timedelta(hours=3),
    "converted": dt.timedelta(hours=4),
}


class DryRunError(CadenceError):
    """A dry-run that cannot start: bad options or inputs."""


def parse_assume(text: str | None) -> dict[str, float]:
    """`opened=0.3,clicked=0.05` as probabilities, each named and between 0 and 1."""
    rates: dict[str, float] = {}
    if not text:
        return rates
    for part in text.split(","):
        name, sep, number = part.strip().partition("=")
        if not sep or name not in ENGAGEMENT_ORDER:
            raise DryRunError(
                f"--assume: expected NAME=RATE with NAME one of {', '.join(ENGAGEMENT_ORDER)},"
                f" got {part.strip()!r}"
            )
        try:
            rate = float(number)
        except ValueError:
            raise DryRunError(f"--assume: {name} needs a number, got {number!r}") from None
        if not 0 <= rate <= 1:
            raise DryRunError(f"--assume: {name}={rate} is not between 0 and 1")
        rates[name] = rate
    return rates


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """One send the dry-run would make."""

    at: dt.datetime
    contact: str
    campaign: str
    node: str | None
    channel: str
    template: str | None
    variant: str | None
    subject: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `--json` line for this send."""
        return {
            "type": "send",
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "contact": self.contact,
            "campaign": self.campaign,
            "node": self.node,
            "channel": self.channel,
            "template": self.template,
            "variant": self.variant,
        }


@dataclass
class DryRunSink:
    """Records sends at the simulated time and draws the engagement they would get."""

    clock: SimulatedClock
    assume: Mapping[str, float]
    rng: random.Random
    campaigns: dict[str, CompiledCampaign] = field(default_factory=dict)
    planned: list[PlannedSend] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Record each message; queue the simulated reactions to it."""
        now = self.clock.now()
        results = []
        for message in messages:
            if message.node == "notify":
                results.append(DeliveryResult(message.outbox_id, True, "dry-run", None))
                continue
            self.planned.append(
                PlannedSend(
                    now,
                    message.contact_id,
                    message.campaign,
                    message.node,
                    message.channel,
                    message.template,
                    message.variant,
                    self._subject(message),
                )
            )
            self._react(message, now)
            results.append(DeliveryResult(message.outbox_id, True, "dry-run", None))
        return results

    def _subject(self, message: OutgoingMessage) -> str | None:
        campaign = self.campaigns.get(message.campaign)
        if campaign is None or message.template is None:
            return None
        template = campaign.templates.get(message.template)
        return template.content.subject if template is not None else None

    def _react(self, message: OutgoingMessage, now: dt.datetime) -> None:
        """Opens before clicks, clicks before replies: each drawn given the previous one."""
        for name in ENGAGEMENT_ORDER:
            rate = self.assume.get(name)
            if rate is None:
                continue
            if self.rng.random() >= rate:
                break
            self.reactions.append(
                {
                    "contact": message.contact_id,
                    "name": name,
                    "at": (now + REACTION_DELAY[name]).isoformat(),
                    "properties": {
                        "template": message.template,
                        "campaign": message.campaign,
                        "variant": message.variant,
                        "send": message.idempotency_key,
                    },
                }
            )


@dataclass
class DryRunReport:
    """Everything a dry-run found: the sends in order, the funnel, the totals."""

    sends: list[PlannedSend]
    enrolled: int
    completed: int
    exited: int
    active: int
    funnel: dict[str, dict[str, int]]
    start: dt.datetime
    until: dt.datetime

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
        """One JSON object per planned send, then the summary."""
        lines = [json.dumps(send.to_json()) for send in self.sends]
        lines.append(json.dumps(self.summary()))
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
) -> DryRunReport:
    """Run the campaigns over the contacts from `start` for `until`, and report what happened.

    The store is a throwaway in-memory SQLite database unless `database_url` names another.
    """
    start = as_utc(start)
    horizon = start + until
    clock = SimulatedClock(start)
    sink = DryRunSink(clock, dict(assume or {}), random.Random(seed))
    sink.campaigns = {campaign.name: campaign for campaign in campaigns}
    pending_events = _read_events(events) if events is not None else []
    async with Engine(database_url, clock=clock, sink=sink) as engine:
        await engine.import_contacts(contacts)
        await engine.deploy(list(campaigns))
        for campaign in campaigns:
            await engine.launch(campaign.name)
        await engine.treat_as_new(await engine.contact_ids())
        await _simulate(engine, clock, sink, pending_events, horizon, on_progress)
        counts = await engine.store.call(_enrollment_counts)
        funnel = await engine.store.call(_funnel)
    return DryRunReport(
        sorted(sink.planned, key=lambda s: (s.at, s.contact, s.campaign, s.node or "")),
        enrolled=sum(counts.values()),
        completed=counts.get("completed", 0),
        exited=counts.get("exited", 0),
        active=counts.get("active", 0),
        funnel=funnel,
        start=start,
        until=horizon,
    )


async def _simulate(
    engine: Engine,
    clock: SimulatedClock,
    sink: DryRunSink,
    events: list[dict[str, Any]],
    horizon: dt.datetime,
    on_progress: Callable[[dt.datetime, RunStats], None] | None,
) -> None:
    """Interleave due work, the events file and simulated reactions in time order."""
    stats = RunStats()
    while True:
        stats.add(await engine.run_due())
        if on_progress is not None:
            on_progress(clock.now(), stats)
        queue = sorted(events + sink.reactions, key=lambda e: parse_instant(str(e["at"])))
        events.clear()
        sink.reactions.clear()
        upcoming = await engine.next_due()
        next_event = parse_instant(str(queue[0]["at"])) if queue else None
        candidates = [t for t in (upcoming, next_event) if t is not None and t <= horizon]
        if not candidates:
            clock.advance_to(horizon)
            return
        moment = max(min(candidates), clock.now())
        clock.advance_to(moment)
        due = [e for e in queue if parse_instant(str(e["at"])) <= moment]
        events.extend(e for e in queue if parse_instant(str(e["at"])) > moment)
        if due:
            await engine.push_events(due)


def _read_events(path: Path) -> list[dict[str, Any]]:
    problems: list[Problem] = []
    rows = read_jsonl(path, problems)
    if problems:
        raise InvalidInput(problems)
    for line, row in rows:
        if "at" not in row:
            raise InvalidInput([Problem(str(path), line, "at", "every event needs an `at`")])
    return [row for _, row in rows]


def _enrollment_counts(store: Store) -> dict[str, int]:
    from sqlalchemy import func

    with store.session() as session:
        return {
            status: int(count)
            for status, count in session.execute(
                select(Enrollment.status, func.count()).group_by(Enrollment.status)
            )
        }


def _funnel(store: Store) -> dict[str, dict[str, int]]:
    """Per campaign, how many enrollments passed through each node (from their history)."""
    funnel: dict[str, Counter[str]] = {}
    with store.session() as session:
        rows = session.execute(
            select(Campaign.name, Enrollment.history)
            .join(CampaignVersion, CampaignVersion.id == Enrollment.version_id)
            .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
        )
        for name, history in rows:
            seen = {entry[1] for entry in history or [] if entry[1]}
            funnel.setdefault(name, Counter()).update(seen)
    return {name: dict(sorted(counter.items())) for name, counter in sorted(funnel.items())}
