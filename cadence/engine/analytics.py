"""Campaign performance from the store: what went out, what came back, what it cost and earned.

The numbers the source material's users read (sent, delivered, opened, clicked, converted,
unsubscribed, bounced, and ROI), counted the same way for every campaign, live or simulated:

- **sent**: sends that went out (outbox status `sent`); **bounced**: those with a hard
  bounce (send log `bounced`, or a `bounced` event naming the send, not a soft one);
  **delivered**: those `cadence.engine.delivery` counts so: neither bounced nor failed
  (the provider's error), and not soft-bounced (or expired, deferred) without a delivery
  report; a send nothing was reported about counts, as not every channel reports.
- **opened**, **clicked**, **replied**, **unsubscribed**, **complained**: delivered sends
  with at least one such event (a click is an open too, as `opened(T)` reads it; each
  confirms that its send arrived,
  `cadence.engine.delivery`): an event naming the send (`send`), or else one by the same
  contact naming the send's template (and campaign, when it names one), at or after it. An opt-out
  reply (`STOP` ...) is stored with the `unsubscribed` it makes (`cadence.engine.suppress`).
- **converted**: delivered sends credited with at least one `converted` event: the send
  the event names, else the contact's latest delivered send before it within
  `ATTRIBUTION_WINDOW` (last touch, across campaigns, or of the campaign the event
  names); a message that never arrived converted no one, so no conversion rate passes
  100% either. Every conversion's
  `value` (or `revenue`, `amount`; in its `currency`, else the send's cost currency, else
  the campaign's, `Settings.currency`) adds to that send's **revenue**.
- **cost**: what the sends that went out cost: the campaign's `cost` setting as logged when
  each went out, else the price its provider reported (Infobip's delivery reports);
  **ROI** is (revenue - cost) / cost, given only when both are in one currency;
  **cost per conversion** is cost / converted, per currency, when something converted.
- Rates: delivered over sent; bounces over sent; the rest over delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, or_, select, true
from sqlalchemy.orm import Session

from cadence.dsl import compiled as c
from cadence.engine import delivery, evaluate
from cadence.engine.clock import as_utc
from cadence.engine.store import campaigns as campaign_store
from cadence.engine.store.models import (
    NOTIFY_NODE,
    Campaign,
    CampaignVersion,
    Event,
    OutboxMessage,
    OutboxStatus,
    SendLog,
)
from cadence.engine.store.records import conversion_value

# A conversion is credited to the contact's latest send at most this long before it.
ATTRIBUTION_WINDOW = dt.timedelta(days=7)
# Contacts per `IN (...)` list when reading some contacts' sends.
CONTACTS_PER_READ = 500
# Events that count once per send they are about; each names its metric.
ENGAGEMENT = ("opened", "clicked", "replied", "unsubscribed", "complained")
# The metrics each event counts for: a click counts as an open, as `opened(T)` reads it
# (`evaluate.engagement_reads`), so a message clicked with its images blocked is opened
# and no click rate passes the open rate.
_COUNTED_AS: dict[str, tuple[str, ...]] = {
    name: tuple(metric for metric in ENGAGEMENT if name in evaluate.engagement_reads(metric))
    for name in ENGAGEMENT
}
# Cost per conversion is a quotient: kept to this many places (a micro-unit).
MONEY_PLACES = Decimal("0.000001")
# The counts a Metrics keeps.
_COUNTS = ("sent", "delivered", "bounced", "opened", "clicked", "replied", "converted",
           "unsubscribed", "complained")  # fmt: skip


@dataclass
class Metrics:
    """Counts, money and rates for a set of sends (a campaign, a template, a variant)."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    converted: int = 0
    unsubscribed: int = 0
    complained: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)
    revenue: dict[str, Decimal] = field(default_factory=dict)

    def add(self, other: Metrics) -> None:
        """Count `other`'s sends and money in too (a group's into its campaign's totals)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.cost, other.cost), (self.revenue, other.revenue)):
            for unit, amount in theirs.items():
                mine[unit] = mine.get(unit, Decimal(0)) + amount

    def rate(self, name: str) -> float | None:
        """`delivered`/`bounced` over sent, any other count over delivered; None over zero."""
        over = self.sent if name in ("delivered", "bounced") else self.delivered
        return getattr(self, name) / over if over else None

    @property
    def cost_per_conversion(self) -> dict[str, Decimal]:
        """Cost over conversions, per currency spent (none when nothing converted)."""
        if not self.converted:
            return {}
        return {
            unit: (amount / self.converted).quantize(MONEY_PLACES)
            for unit, amount in self.cost.items()
        }

    @property
    def roi(self) -> float | None:
        """(revenue - cost) / cost, when both are in one currency and something was spent."""
        currencies = set(self.cost) | set(self.revenue)
        if len(currencies) != 1:
            return None
        (currency,) = currencies
        cost = self.cost.get(currency, Decimal(0))
        if not cost:
            return None
        return float((self.revenue.get(currency, Decimal(0)) - cost) / cost)

    def as_dict(self) -> dict[str, Any]:
        """The metrics as JSON-ready values (money as strings, per currency)."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        data["rates"] = {name: _rounded(self.rate(name)) for name in _COUNTS if name != "sent"}
        data["cost"] = {k: _plain(v) for k, v in sorted(self.cost.items())}
        data["revenue"] = {k: _plain(v) for k, v in sorted(self.revenue.items())}
        data["cost_per_conversion"] = {
            k: _plain(v) for k, v in sorted(self.cost_per_conversion.items())
        }
        data["roi"] = _rounded(self.roi)
        return data


@dataclass
class CampaignReport:
    """One campaign's metrics, in total and by template and by A/B variant, and its decided
    A/B tests: the variant rows count every send of a variant, the held contacts' winner
    sends too, while a verdict keeps the counts the test was decided on."""

    name: str
    status: str
    total: Metrics = field(default_factory=Metrics)
    by_template: dict[str, Metrics] = field(default_factory=dict)
    by_variant: dict[str, Metrics] = field(default_factory=dict)
    # As `cadence status` lists them (`campaigns.ab_verdicts`), in the order decided.
    ab_tests: list[dict[str, Any]] = field(default_factory=list)
    # The sends a gate stopped (a cap, consent, suppression ...), counted per reason as the
    # send log records it: a capped campaign's report otherwise reads as sending nothing.
    not_sent: dict[str, int] = field(default_factory=dict)
    # The sends that failed for good before going out (a template that did not render, a
    # provider's refusal), counted per error as the outbox records it: they are not sent,
    # so without this a send that fails for every contact left no trace in the report.
    failed: dict[str, int] = field(default_factory=dict)
    # The current version's `type` (declared or inferred) and `kind`: what reports group by.
    type: str = ""
    kind: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON object."""
        return {
            "campaign": self.name,
            "status": self.status,
            "type": self.type,
            "kind": self.kind,
            **self.total.as_dict(),
            "by_template": {k: v.as_dict() for k, v in sorted(self.by_template.items())},
            "by_variant": {k: v.as_dict() for k, v in sorted(self.by_variant.items())},
            "ab_tests": self.ab_tests,
            "not_sent": dict(sorted(self.not_sent.items())),
            "failed": dict(sorted(self.failed.items())),
        }


class _Send(NamedTuple):
    outbox_id: int
    key: str
    version_id: int
    contact_id: str
    campaign: str
    template: str | None
    variant: str | None
    at: dt.datetime


def campaign_reports(
    session: Session, tenant_id: str, names: Sequence[str] | None = None
) -> list[CampaignReport]:
    """The tenant's campaigns (or those named), each with its metrics, by name."""
    campaigns = session.execute(
        select(Campaign.name, Campaign.status, CampaignVersion.compiled)
        .join(CampaignVersion, CampaignVersion.id == Campaign.current_version_id, isouter=True)
        .where(Campaign.tenant_id == tenant_id)
        .order_by(Campaign.name)
    ).all()
    reports = {
        name: CampaignReport(
            name, status, type=(compiled or {}).get("type", ""), kind=(compiled or {}).get("kind")
        )
        for name, status, compiled in campaigns
        if names is None or name in names
    }
    if not reports:
        return []
    found = send_outcomes(session, tenant_id)
    # Sends count by (campaign, template, variant): one Metrics per such group, summed into
    # the reports at the end, so a send's counts are kept once, not in three places.
    groups: dict[tuple[str, str | None, str | None], Metrics] = {}
    group_of: dict[str, Metrics] = {}
    for send in found.sends.values():
        if send.campaign not in reports:
            continue
        metrics = groups.get((send.campaign, send.template, send.variant))
        if metrics is None:
            metrics = groups[send.campaign, send.template, send.variant] = Metrics()
        group_of[send.key] = metrics
        metrics.sent += 1
        _logged, cost, currency = found.logged.get(send.outbox_id, _NOTHING_LOGGED)
        if cost is not None:
            unit = currency or ""
            metrics.cost[unit] = metrics.cost.get(unit, Decimal(0)) + cost
    currencies = _CampaignCurrencies(session)
    for credited, amount, currency in found.revenue:
        credited_to = group_of.get(credited.key)
        if credited_to is not None:
            spent = found.logged.get(credited.outbox_id, _NOTHING_LOGGED)[2]
            unit = currency or spent or currencies.of(credited.version_id) or ""
            credited_to.revenue[unit] = credited_to.revenue.get(unit, Decimal(0)) + amount
    for metric, keys in found.seen.items():
        for key in keys:
            counted = group_of.get(key)
            if counted is not None:
                setattr(counted, metric, getattr(counted, metric) + 1)
    for campaign, tests in campaign_store.ab_verdicts(session, tenant_id).items():
        if campaign in reports:
            reports[campaign].ab_tests = tests
    for (detail,) in session.execute(
        select(SendLog.detail).where(SendLog.tenant_id == tenant_id, SendLog.outcome == "skipped")
    ):
        stopped = reports.get(str((detail or {}).get("campaign") or ""))
        if stopped is not None:
            reason = str(detail.get("reason") or "skipped")
            stopped.not_sent[reason] = stopped.not_sent.get(reason, 0) + 1
    for campaign, error in session.execute(
        select(Campaign.name, OutboxMessage.error)
        .join(CampaignVersion, CampaignVersion.id == OutboxMessage.version_id)
        .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
        .where(Campaign.tenant_id == tenant_id, OutboxMessage.status == OutboxStatus.FAILED.value)
    ):
        failing = reports.get(campaign)
        if failing is not None:
            failing.failed[error or "failed"] = failing.failed.get(error or "failed", 0) + 1
    for (campaign, template, variant), metrics in groups.items():
        report = reports[campaign]
        report.total.add(metrics)
        if template is not None:
            report.by_template.setdefault(template, Metrics()).add(metrics)
        if variant is not None:
            report.by_variant.setdefault(variant, Metrics()).add(metrics)
    return list(reports.values())


@dataclass
class SendOutcomes:
    """What each send that went out did, by the rules above: read once, counted by the
    report per campaign, template and variant, and by an A/B verdict per variant."""

    sends: dict[str, _Send]
    # Per outbox id: the delivery outcomes its providers logged, and its cost.
    logged: dict[int, tuple[set[str], Decimal | None, str | None]]
    # Per count of `Metrics` but `sent`: the keys of the sends it counts.
    seen: dict[str, set[str]]
    # Every credited conversion with a value: its send, amount and currency (None: unnamed).
    revenue: list[tuple[_Send, Decimal, str | None]]

    def metrics(self, keys: Iterable[str]) -> Metrics:
        """The counts (no money) of these sends: those that went out, and what they did."""
        counted = Metrics()
        for key in keys:
            if key not in self.sends:
                continue
            counted.sent += 1
            for metric, seen in self.seen.items():
                if key in seen:
                    setattr(counted, metric, getattr(counted, metric) + 1)
        return counted


def send_outcomes(
    session: Session, tenant_id: str, contact_ids: Sequence[str] | None = None
) -> SendOutcomes:
    """What every send of the tenant (or of these contacts) did: delivered or bounced, the
    person's reactions on delivered sends, the conversions credited to them.

    An event is about its contact's sends, so some contacts' sends and events, read
    `CONTACTS_PER_READ` at a time, give those sends the counts the whole tenant's give them.
    """
    if contact_ids is None:
        return _contacts_outcomes(session, tenant_id, None)
    found = SendOutcomes({}, {}, {}, [])
    for start in range(0, len(contact_ids), CONTACTS_PER_READ):
        part = _contacts_outcomes(
            session, tenant_id, contact_ids[start : start + CONTACTS_PER_READ]
        )
        found.sends.update(part.sends)
        found.logged.update(part.logged)
        for metric, keys in part.seen.items():
            found.seen.setdefault(metric, set()).update(keys)
        found.revenue.extend(part.revenue)
    return found


def _contacts_outcomes(
    session: Session, tenant_id: str, contact_ids: Sequence[str] | None
) -> SendOutcomes:
    """`send_outcomes` of the tenant, or of a few of its contacts."""
    sends = _sends(session, tenant_id, contact_ids)
    outcomes = _send_outcomes(session, tenant_id, contact_ids)
    seen: dict[str, set[str]] = {}  # metric -> keys of the sends it counts
    # Send key -> the delivery outcomes events report about it (the log's are in `outcomes`).
    reported: dict[str, set[str]] = {}
    history = _ContactSends(sends)
    # Conversions are credited once every send's delivery is known: to sends that arrived.
    conversions: list[tuple[str, dict[str, Any], dt.datetime, _Send | None]] = []
    for name, contact_id, properties, at in _events(session, tenant_id, contact_ids):
        named = sends.get(str(properties.get("send") or ""))
        if name == "converted":
            conversions.append((contact_id, properties, at, named))
            continue
        engaged = named or _engaged(properties, history.of(contact_id), at)
        if engaged is None:
            continue
        outcome = delivery.event_outcome(name, properties)
        if outcome is not None:
            reported.setdefault(engaged.key, set()).add(outcome)
        if outcome is None or outcome == delivery.ENGAGED:
            for metric in _COUNTED_AS.get(name, (name,)):
                seen.setdefault(metric, set()).add(engaged.key)
    reached: set[str] = set()  # every campaign's sends counted delivered: last touch reads them
    for send in sends.values():
        said = outcomes.get(send.outbox_id, _NOTHING_LOGGED)[0]
        if send.key in reported:
            said = said | reported[send.key]
        if delivery.delivery(said).counted_delivered:
            reached.add(send.key)
        if delivery.HARD_BOUNCE in said:
            seen.setdefault("bounced", set()).add(send.key)
    seen["delivered"] = reached
    # The person's reactions count on delivered sends only (a failed send's open is not
    # theirs, `cadence.engine.delivery`): no rate of delivered sends passes 100%.
    for metric in delivery.ENGAGEMENT_EVENTS & seen.keys():
        seen[metric] &= reached
    revenue: list[tuple[_Send, Decimal, str | None]] = []
    for contact_id, properties, at, named in conversions:
        if named is not None and named.key in reached:
            credited: _Send | None = named
        else:
            arrived = [s for s in history.of(contact_id) if s.key in reached]
            credited = _credited(properties, arrived, at)
        if credited is None:
            continue
        seen.setdefault("converted", set()).add(credited.key)
        amount, currency = conversion_value(properties)
        if amount is not None:
            revenue.append((credited, amount, currency))
    return SendOutcomes(sends, outcomes, seen, revenue)


_NOTHING_LOGGED: tuple[frozenset[str], None, None] = (frozenset(), None, None)


class _ContactSends:
    """Each contact's sends, oldest first: built on first need, since events that name
    their send (every tracked open and click) never need it."""

    def __init__(self, sends: Mapping[str, _Send]) -> None:
        self._sends = sends
        self._by_contact: dict[str, list[_Send]] | None = None

    def of(self, contact_id: str) -> Sequence[_Send]:
        """The contact's sends, oldest first."""
        if self._by_contact is None:
            self._by_contact = {}
            for send in sorted(self._sends.values(), key=lambda s: (s.at, s.outbox_id)):
                self._by_contact.setdefault(send.contact_id, []).append(send)
        return self._by_contact.get(contact_id, ())


class _CampaignCurrencies:
    """Each campaign version's currency (`Settings.currency`), read on first need: only a
    conversion without a currency credited to a send that cost nothing needs it."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._of: dict[int, str | None] = {}

    def of(self, version_id: int) -> str | None:
        """The currency of the version's budget and costs, or None when it names none."""
        if version_id not in self._of:
            compiled = self._session.scalar(
                select(CampaignVersion.compiled).where(CampaignVersion.id == version_id)
            )
            settings = (compiled or {}).get("settings")
            self._of[version_id] = (
                c.Settings.model_validate(settings).currency if settings is not None else None
            )
        return self._of[version_id]


def _sends(
    session: Session, tenant_id: str, contact_ids: Sequence[str] | None = None
) -> dict[str, _Send]:
    """Every send of the tenant (or of these contacts) that went out, by key (other
    campaigns' too: attribution).

    Notices to a webhook (`notify`) are not messages to the contact. Filtered in SQL and
    one timestamp per row: a dry-run's report reads every one of hundreds of thousands.
    """
    among_contacts = (
        OutboxMessage.contact_id.in_(contact_ids) if contact_ids is not None else true()
    )
    rows = session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.idempotency_key,
            OutboxMessage.version_id,
            OutboxMessage.contact_id,
            Campaign.name,
            OutboxMessage.template,
            OutboxMessage.variant,
            func.coalesce(OutboxMessage.sent_at, OutboxMessage.created_at),
        )
        .join(CampaignVersion, CampaignVersion.id == OutboxMessage.version_id)
        .join(Campaign, Campaign.id == CampaignVersion.campaign_id)
        .where(
            Campaign.tenant_id == tenant_id,
            OutboxMessage.status == OutboxStatus.SENT.value,
            or_(OutboxMessage.node.is_(None), OutboxMessage.node != NOTIFY_NODE),
            among_contacts,
        )
    ).all()
    return {row[1]: _Send._make(row) for row in rows}


def _send_outcomes(
    session: Session, tenant_id: str, contact_ids: Sequence[str] | None = None
) -> dict[int, tuple[set[str], Decimal | None, str | None]]:
    """Per send (of these contacts): the delivery outcomes its providers reported
    (`delivery.logged_outcome`), and its cost: the one logged when it went out (the
    campaign's `cost`), else the one its provider reported (Infobip's price)."""
    found: dict[int, tuple[set[str], Decimal | None, str | None]] = {}
    reported: dict[int, tuple[Decimal, str | None]] = {}
    among_contacts = SendLog.contact_id.in_(contact_ids) if contact_ids is not None else true()
    # Every send of the tenant is read anyway (attribution crosses campaigns): one pass
    # over the tenant's log costs less than probing it send by send. Only entries that
    # tell an outcome or a cost: most say `sent` and nothing else (one per send).
    for outbox_id, outcome, cost, currency in session.execute(
        select(SendLog.outbox_id, SendLog.outcome, SendLog.cost, SendLog.currency).where(
            SendLog.tenant_id == tenant_id,
            among_contacts,
            or_(SendLog.cost.is_not(None), SendLog.outcome.in_(delivery.LOGGED_OUTCOMES)),
        )
    ):
        if outbox_id is None:
            continue
        logged, spent, unit = found.get(outbox_id, (set(), None, None))
        said = delivery.logged_outcome(outcome, None)
        if said is not None:
            logged.add(said)
        if cost is not None:
            if outcome == "sent":
                spent, unit = Decimal(cost), currency
            else:
                reported.setdefault(outbox_id, (Decimal(cost), currency))
        found[outbox_id] = (logged, spent, unit)
    for outbox_id, cost_reported in reported.items():
        logged, spent, unit = found[outbox_id]
        if spent is None:
            found[outbox_id] = (logged, *cost_reported)
    # `failed` is the provider's word only in its report's entry: read apart, as the few
    # entries whose detail tells.
    for outbox_id, detail in session.execute(
        select(SendLog.outbox_id, SendLog.detail).where(
            SendLog.tenant_id == tenant_id, SendLog.outcome == delivery.FAILED, among_contacts
        )
    ):
        said = delivery.logged_outcome(delivery.FAILED, detail)
        if outbox_id is not None and said is not None:
            found.setdefault(outbox_id, (set(), None, None))[0].add(said)
    return found


def _events(
    session: Session, tenant_id: str, contact_ids: Sequence[str] | None = None
) -> list[tuple[str, str, dict[str, Any], dt.datetime]]:
    """The tenant's (these contacts') engagement, delivery and conversion events, oldest
    first."""
    names = [*ENGAGEMENT, delivery.DELIVERED_EVENT, delivery.BOUNCED_EVENT, "converted"]
    among_contacts = Event.contact_id.in_(contact_ids) if contact_ids is not None else true()
    rows = [
        (name, contact, properties or {}, as_utc(at))
        for name, contact, properties, at in session.execute(
            select(Event.name, Event.contact_id, Event.properties, Event.at).where(
                Event.tenant_id == tenant_id, Event.name.in_(names), among_contacts
            )
        )
        if contact is not None
    ]
    rows.sort(key=lambda row: row[3])
    return rows


def _engaged(
    properties: Mapping[str, Any], sends: Sequence[_Send], at: dt.datetime
) -> _Send | None:
    """The send an engagement event naming none is about: the latest of its template (or,
    with none, of any) to the contact at or before the event, of the campaign it names."""
    template = properties.get("template")
    earlier = [
        s
        for s in _of_campaign(properties, sends)
        if s.at <= at and (template is None or s.template == template)
    ]
    return earlier[-1] if earlier else None


def _credited(
    properties: Mapping[str, Any], sends: Sequence[_Send], at: dt.datetime
) -> _Send | None:
    """The send a conversion naming none is credited to: the latest within the attribution
    window before it (of the campaign the conversion names, when it names one)."""
    earlier = [s for s in _of_campaign(properties, sends) if at - ATTRIBUTION_WINDOW <= s.at <= at]
    return earlier[-1] if earlier else None


def _of_campaign(properties: Mapping[str, Any], sends: Sequence[_Send]) -> Sequence[_Send]:
    """The sends of the campaign an event's `campaign` property names; all without one."""
    campaign = properties.get("campaign")
    if campaign is None:
        return sends
    return [s for s in sends if s.campaign == str(campaign)]


def _plain(amount: Decimal) -> str:
    """An amount without the store's trailing zeros or an exponent: 0.100000 -> 0.1."""
    return format(amount.normalize(), "f")


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
