"""Conditions as the runtime asks them: for one contact in one campaign at one moment.

This module binds the per-contact evaluator (`cadence.engine.evaluate`) to the engine's data:
a contact's facts, the campaign's segments and scores, the trigger's event. It also holds the
few questions that are about many contacts at once (fan-out matches, A/B results).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cadence.dsl import ast
from cadence.dsl import compiled as c
from cadence.dsl.checks.expressions import subexpressions
from cadence.dsl.symbols import METRIC_EVENTS
from cadence.engine import abtest, analytics, audience, evaluate, reads, timing
from cadence.engine.clock import as_utc
from cadence.engine.facts import ALL, CAMPAIGNS, ContactFacts, load_facts
from cadence.engine.stepper import SendGate
from cadence.engine.store.models import (
    COUNTED_SEND_STATUSES,
    UNFINISHED_ENROLLMENT_STATUSES,
    Enrollment,
    OutboxMessage,
)


class Context:
    """One contact, one campaign, one moment: answers `holds(expr)` and `value(expr)`."""

    def __init__(
        self,
        facts: ContactFacts,
        campaign: c.CompiledCampaign,
        now: dt.datetime,
        event: Mapping[str, Any] | None = None,
    ) -> None:
        """Bind the facts; the evaluator's context is built on first use."""
        self.facts = facts
        self.campaign = campaign
        self._now = now
        self.event = dict(event or {})
        self._eval_context: evaluate.EvalContext | None = None

    # Lazy by hand, not `functools.cached_property`: on Python 3.11 that takes one lock shared
    # by every instance on each first access, and the engine builds a context per enrollment.
    @property
    def eval_context(self) -> evaluate.EvalContext:
        """The evaluator's view of this contact, built on first use."""
        if self._eval_context is None:
            self._eval_context = build_eval_context(
                self.facts, self.campaign, self._now, self.event
            )
        return self._eval_context

    def holds(self, expr: c.ExprModel) -> bool:
        """True when the condition holds; unknown (null) counts as false."""
        return evaluate.holds(c.model_to_expr(expr), self.eval_context)

    def value(self, expr: c.ExprModel) -> Any:
        """The expression's value for this contact."""
        return evaluate.value(c.model_to_expr(expr), self.eval_context)


def build_eval_context(
    facts: ContactFacts,
    campaign: c.CompiledCampaign,
    now: dt.datetime,
    event: Mapping[str, Any] | None,
    campaign_scope: str | None = None,
) -> evaluate.EvalContext:
    """Translate the engine's facts into the evaluator's context."""
    return evaluate.EvalContext.from_facts(
        attributes=facts.attributes,
        events=[(e.name, as_utc(e.at), e.properties) for e in facts.events],
        sends=[(channel, template, as_utc(at)) for channel, template, at in facts.sends],
        campaigns=frozenset(facts.campaigns),
        event=dict(event or {}),
        segments=evaluate.segments_of(campaign),
        scores=dict(campaign.scores),
        now=now,
        campaign_scope=campaign_scope,
    )


class StepContext(Context):
    """The stepper's environment for one enrollment (see `cadence.engine.stepper.StepEnv`)."""

    def __init__(
        self,
        facts: ContactFacts,
        campaign: c.CompiledCampaign,
        now: dt.datetime,
        state: Mapping[str, Any],
        gate: Callable[[str, str], SendGate],
        winner: Callable[[c.ABSplitNode], str | None],
        arrival: Callable[[c.ABSplitNode | c.RandomSplitNode], int],
    ) -> None:
        """Bind one enrollment's contact, campaign, trigger event, send gate and A/B store."""
        super().__init__(facts, campaign, now, state.get("event") or {})
        self._gate = gate
        self._winner = winner
        self._arrival = arrival
        self._zone: ZoneInfo | None = None
        self._step_context: evaluate.EvalContext | None = None

    @property
    def step_context(self) -> evaluate.EvalContext:
        """The evaluator's view for a step: engagement limited to this campaign's messages."""
        if self._step_context is None:  # lazy by hand, as `eval_context` (see there)
            self._step_context = build_eval_context(
                self.facts, self.campaign, self._now, self.event, self.campaign.name
            )
        return self._step_context

    def holds(self, expr: c.ExprModel) -> bool:
        """A step's condition (`if`, `goal`): engagement functions see this campaign only."""
        return evaluate.holds(c.model_to_expr(expr), self.step_context)

    def value(self, expr: c.ExprModel) -> Any:
        """A step's value (`set`), with engagement in this campaign's scope."""
        return evaluate.value(c.model_to_expr(expr), self.step_context)

    def in_audience(self, expr: c.ExprModel) -> bool:
        """`audience` / `exclude` as a launch reads them: over every campaign's messages."""
        return super().holds(expr)

    @property
    def now(self) -> dt.datetime:
        """The moment the step runs."""
        return self._now

    @property
    def zone(self) -> ZoneInfo:
        """The contact's zone, the campaign's fallback zone, or UTC."""
        if self._zone is None:
            self._zone = timing.contact_zone_in(self.campaign, self.facts.timezone)
        return self._zone

    def event_since(self, expr: c.ExprModel, since: dt.datetime) -> bool:
        """Whether what a `wait for` waits for (`clicked(offer)`, `purchase`) has happened."""
        return evaluate.wait_for_satisfied(c.model_to_expr(expr), self.step_context, since)

    def send_gate(self, channel: str, template: str) -> SendGate:
        """The batch's suppression, consent and cap answer for this contact."""
        return self._gate(channel, template)

    def ab_winner(self, node: c.ABSplitNode) -> str | None:
        """The A/B winner, once the test has run its time."""
        return self._winner(node)

    def split_arrival(self, node: c.ABSplitNode | c.RandomSplitNode) -> int:
        """Count the contact in at an A/B split; its place among the split's arrivals."""
        return self._arrival(node)


def event_matches(where: c.ExprModel, event: Mapping[str, Any]) -> bool:
    """An event trigger's `where` against one event's fields (no contact involved)."""
    return evaluate.event_where_holds(c.model_to_expr(where), dict(event))


def reads_the_event_alone(expr: c.ExprModel) -> bool:
    """Whether an expression reads nothing but the event's fields (`event.price > 0`): no
    contact attribute, segment, score or function, so one answer holds for every contact."""
    return all(
        not isinstance(sub, ast.Call)
        and not (isinstance(sub, ast.Path) and (sub.parts[0] != "event" or len(sub.parts) < 2))
        for sub in subexpressions(c.model_to_expr(expr))
    )


def event_trigger_fires(
    trigger: c.EventTriggerModel,
    facts: ContactFacts,
    event: Mapping[str, Any],
    campaign: c.CompiledCampaign,
    now: dt.datetime,
) -> bool:
    """Whether this event, with the contact's history, meets `count OP N within D where E`."""
    context = build_eval_context(facts, campaign, now, event)
    return evaluate.event_trigger_fires(trigger, dict(event), context)


def fanout_matches(
    session: Session,
    tenant: str,
    predicate: c.ExprModel,
    candidates: Sequence[str],
    event: Mapping[str, Any],
    campaign: c.CompiledCampaign,
    now: dt.datetime,
    campaign_names: Callable[[], Mapping[int, str]] | None = None,
) -> list[str]:
    """The contacts among `candidates` that a fan-out event's predicate selects.

    One event against every contact: the dispatch core's segment filter does it over the
    attributes in bulk, the evaluator answers only what the filter cannot read. The
    contacts' histories are loaded only when the predicate reads them (a score, a segment
    that does, `opened(T)`, `count(...)` ...), so `for contacts where` reads a contact as
    any other condition does; `campaign_names` gives the version ids' names for
    `in_campaign`, asked only when the predicate reads it.
    """
    expr = c.model_to_expr(predicate)
    segments = evaluate.segments_of(campaign)
    kinds = reads.expr_reads(expr, segments, campaign.scores)
    names = dict(campaign_names()) if campaign_names and CAMPAIGNS in kinds else None
    matched: list[str] = []
    for start in range(0, len(candidates), 5000):
        chunk = candidates[start : start + 5000]
        contexts, rows = chunk_contexts(session, tenant, chunk, campaign, now, kinds, names, event)
        matched.extend(
            audience.select(
                expr, rows, now=now, segments=segments, event=event,
                fallback=functools.partial(holds_for, contexts=contexts, expr=predicate),
                context=functools.partial(eval_context_of, contexts=contexts) if kinds else None,
                scores=campaign.scores,
            ).contact_ids
        )  # fmt: skip
    return matched


def chunk_contexts(
    session: Session,
    tenant: str,
    chunk: Sequence[str],
    campaign: c.CompiledCampaign,
    now: dt.datetime,
    kinds: frozenset[str],
    campaign_names: dict[int, str] | None,
    event: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Context], list[tuple[str, Mapping[str, Any]]]]:
    """A chunk of contacts read for conditions that read the fact `kinds`
    (`reads.expr_reads`): each one's context, and the bulk filter's rows.

    Histories are loaded only for the kinds read; with none, a row is the attributes alone
    (the `converted` / `unsubscribed` flags of `filter_rows` read events).
    """
    facts = load_facts(
        session, tenant, chunk, with_history=bool(kinds), kinds=kinds or ALL,
        campaign_names=campaign_names if CAMPAIGNS in kinds else None,
    )  # fmt: skip
    contexts = {cid: Context(facts[cid], campaign, now, event) for cid in chunk if cid in facts}
    rows: list[tuple[str, Mapping[str, Any]]] = (
        filter_rows(contexts) if kinds else [(cid, facts[cid].attributes) for cid in contexts]
    )
    return contexts, rows


def holds_for(
    contact_id: str,
    _attributes: Mapping[str, Any],
    *,
    contexts: Mapping[str, Context],
    expr: c.ExprModel,
) -> bool:
    """The evaluator's answer for one contact, where the bulk filter cannot decide."""
    return contexts[contact_id].holds(expr)


def eval_context_of(contact_id: str, *, contexts: Mapping[str, Context]) -> evaluate.EvalContext:
    """The evaluator's context of one contact, for the bulk filter's count columns."""
    return contexts[contact_id].eval_context


def filter_rows(contexts: Mapping[str, Context]) -> list[tuple[str, Mapping[str, Any]]]:
    """The bulk filter's rows: each contact's attributes with `converted` / `unsubscribed`
    as its events say, so the filter reads those flags as the evaluator does."""
    return [
        (
            contact_id,
            audience.with_flags(
                context.facts.attributes,
                {name: context.eval_context.flag(name) for name in evaluate.ENGAGEMENT_FLAGS},
            ),
        )
        for contact_id, context in contexts.items()
    ]


def ab_results(
    session: Session, tenant: str, version_id: int, node: c.ABSplitNode, nodes: Sequence[str]
) -> abtest.AbVerdict:
    """The verdict: the variant with the best metric rate (ties to the first), with statistics.

    Each variant's sends are counted as `cadence report` counts them
    (`analytics.send_outcomes`), so the verdict and the report's variant rates agree: the
    rate is engaged over delivered sends; a reaction counts on a delivered send only (a
    click as an open too), whether it names the send, its template, or neither (then the
    contact's latest send at or before it); a conversion goes to the send it names if that
    arrived, else to the contact's latest delivered send in the attribution window before
    it (of the campaign it names, when it names one): a message that bounced converted no one.
    `nodes` are those whose sends carry the split's variants (`compiled.variant_nodes`):
    another split of the campaign may name its variants the same.
    """
    metric = METRIC_EVENTS.get(node.metric, node.metric)
    keys: dict[str, list[str]] = {v.name: [] for v in node.variants}
    # Contacts given a variant, with a send going or gone out: the test's audience.
    tested: set[str] = set()
    for key, contact_id, variant in session.execute(
        select(
            OutboxMessage.idempotency_key, OutboxMessage.contact_id, OutboxMessage.variant
        ).where(
            OutboxMessage.tenant_id == tenant,
            OutboxMessage.version_id == version_id,
            OutboxMessage.variant.in_(list(keys)),
            OutboxMessage.node.in_(nodes),
            OutboxMessage.status.in_(sorted(COUNTED_SEND_STATUSES)),
        )
    ):
        keys[str(variant)].append(key)
        tested.add(contact_id)
    found = analytics.send_outcomes(session, tenant, sorted(tested))
    counted = {name: found.metrics(sent) for name, sent in keys.items()}
    # Those the split holds for the winner are part of the test's audience too.
    held = session.scalar(
        select(func.count())
        .select_from(Enrollment)
        .where(
            Enrollment.version_id == version_id,
            Enrollment.node == node.id,
            Enrollment.status.in_(UNFINISHED_ENROLLMENT_STATUSES),
        )
    )
    return abtest.ab_verdict(
        {name: (m.delivered, getattr(m, metric)) for name, m in counted.items()},
        audience=len(tested) + int(held or 0),
        sent={name: m.sent for name, m in counted.items()},
    )
