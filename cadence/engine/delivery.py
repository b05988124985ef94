"""Whether a send reached the person: the one rule behind every "delivered".

`cadence report` and the dashboard count delivered sends, `delivered(T)` asks whether a
message from `T` was delivered, and a score's `delivered(T): +N` counts them: all of them
read the outcomes of a send here. What came back about a send are outcomes: the reports
its provider logged about it (send-log outcomes) and the events that name it (a
`delivered` event is a delivery report; a `bounced` one a bounce, soft or hard). From them
a send is

- **failed** after a hard bounce (a `bounced` event that is not soft, the log's `bounced`)
  or the provider's report that it could not send it (the log's `failed`, as Brevo's
  `error` and Infobip's REJECTED are logged), whatever else came about it;
- else **delivered** once a delivery report came, before or after a soft bounce:
  providers retry a full mailbox or an unreachable phone and report the retry that got
  through; or once the person opened it, clicked in it, replied to it (a WhatsApp
  seen report is an open), unsubscribed through it or reported it as spam: what they
  read, answered or complained of reached them, whatever a temporary failure said
  before, and a channel that reports no deliveries (SMTP) is confirmed by them;
- else **not delivered** after a temporary failure (a soft bounce, Infobip's EXPIRED, a
  deferral) that no delivery report followed;
- else **unconfirmed**: nothing was reported. SMTP, the inbox and webhooks report no
  deliveries, and a provider's report may still be on its way.

A hard bounce or a provider's failure still wins over an open: the provider said the
message never reached the mailbox, so an open reported about it is not the person (a link
scanner, a report matched to the wrong send) and the report does not count it. Conditions
read events, and a provider's failure is logged, not an event (Brevo's `error`, Infobip's
REJECTED say nothing about the person): for `delivered(T)` a reaction reported about such
a send would confirm it, which only a mismatched report can bring about.

The report counts delivered and unconfirmed sends as delivered (not every channel
reports deliveries, docs/analytics.md) and counts opens, clicks, replies, unsubscribes and
complaints only on those, so none of those rates passes 100%; `delivered(T)` holds for delivered
ones only, as it promises a confirmed delivery (docs/language.md).

Which bounces are soft is decided here too (`is_soft_bounce`): suppression counts soft
bounces (`cadence.engine.suppress`) by the same rule.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

# Outcomes, in the send log's words (docs/inbound.md); events are read into the same.
DELIVERED = "delivered"  # a delivery report
HARD_BOUNCE = "bounced"
SOFT_BOUNCE = "soft_bounced"
FAILED = "failed"  # the provider could not send it
EXPIRED = "expired"  # Infobip gave up trying to reach the phone
DEFERRED = "deferred"  # the receiving server asked Brevo to try again later
ENGAGED = "engaged"  # the person opened, clicked or replied: an event's, never the log's
FAILURES = frozenset({HARD_BOUNCE, FAILED})
TEMPORARY_FAILURES = frozenset({SOFT_BOUNCE, EXPIRED, DEFERRED})

# Events that carry a delivery outcome.
DELIVERED_EVENT = "delivered"
BOUNCED_EVENT = "bounced"
# The person's reactions to a message, each proof that it reached them (ENGAGED).
ENGAGEMENT_EVENTS = frozenset({"opened", "clicked", "replied", "unsubscribed", "complained"})

SOFT_BOUNCE_TYPES = frozenset({"soft", "soft_bounce", "transient", "temporary", "deferred"})
# The key of a provider's report in its send-log entry's detail (`cadence.engine.inbound`):
# the engine's own entries (`sent`, and `failed` for an attempt a later one may have made
# good) have none.
REPORT_KEY = "dedupe"


class Delivery(enum.Enum):
    """What became of a send, by the rule above."""

    FAILED = "failed"
    DELIVERED = "delivered"
    NOT_DELIVERED = "not delivered"
    UNCONFIRMED = "unconfirmed"

    @property
    def counted_delivered(self) -> bool:
        """Whether a report counts the send as delivered (delivered, or nothing said)."""
        return self in (Delivery.DELIVERED, Delivery.UNCONFIRMED)


def delivery(outcomes: Collection[str]) -> Delivery:
    """What became of a send, given every outcome reported about it (in any order)."""
    if not FAILURES.isdisjoint(outcomes):
        return Delivery.FAILED
    if DELIVERED in outcomes or ENGAGED in outcomes:
        return Delivery.DELIVERED
    if not TEMPORARY_FAILURES.isdisjoint(outcomes):
        return Delivery.NOT_DELIVERED
    return Delivery.UNCONFIRMED


def is_soft_bounce(properties: Mapping[str, Any]) -> bool:
    """Whether a bounce's `type` (or `bounce_type`) says it is soft; anything else is hard."""
    kind = str(properties.get("type") or properties.get("bounce_type") or "")
    return kind.lower() in SOFT_BOUNCE_TYPES


def event_outcome(name: str, properties: Mapping[str, Any]) -> str | None:
    """The outcome an event reports about the send it names: a delivery report, a hard or
    a soft bounce, the person's reaction (ENGAGED); None for events that say nothing
    about delivery."""
    if name == DELIVERED_EVENT:
        return DELIVERED
    if name in ENGAGEMENT_EVENTS:
        return ENGAGED
    if name == BOUNCED_EVENT:
        return SOFT_BOUNCE if is_soft_bounce(properties) else HARD_BOUNCE
    return None


# The send-log outcomes `logged_outcome` reads without their detail.
LOGGED_OUTCOMES = frozenset({DELIVERED}) | (FAILURES - {FAILED}) | TEMPORARY_FAILURES


def logged_outcome(outcome: str, detail: Mapping[str, Any] | None) -> str | None:
    """The outcome a send-log entry reports, None when it says nothing about delivery.

    A `failed` entry is the provider's only when it came from the provider's report: the
    engine logs `failed` for an attempt too, and a sent message's log may hold one from
    before the retry that sent it.
    """
    if outcome == FAILED:
        return FAILED if REPORT_KEY in (detail or {}) else None
    if outcome in LOGGED_OUTCOMES:
        return outcome
    return None
