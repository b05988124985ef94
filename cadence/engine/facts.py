"""What the engine knows about a batch of contacts, loaded in a few bulk queries.

Conditions, scores and templates read contacts, their events and their engagement. Loading
those per contact would be a round trip per row; `load_facts` reads them for a whole batch
at once and hands out one `ContactFacts` per contact.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, select
from sqlalchemy.orm import Session

from cadence.dsl.symbols import CONTACT_FIELDS
from cadence.engine.store.bulk import among_bound, among_keys
from cadence.engine.store.models import (
    COUNTED_SEND_STATUSES,
    NOTIFY_NODE,
    Contact,
    Enrollment,
    Event,
    OutboxMessage,
)

CHUNK = 500

# The kinds of history `load_facts` can read besides a contact's own record.
EVENTS = "events"
SENDS = "sends"
CAMPAIGNS = "campaigns"
ALL = frozenset({EVENTS, SENDS, CAMPAIGNS})
# The sends a cap check can count, and no step reads otherwise: `load_facts` reads only those
# inside its `sends_within` (all of them when SENDS is asked for too, or without a window).
CAP_SENDS = "cap_sends"


@dataclass(frozen=True, slots=True)
class EventFact:
    """One event of a contact: name, instant (aware UTC) and properties."""

    name: str
    at: dt.datetime
    properties: dict[str, Any]


@dataclass(slots=True)
class ContactFacts:
    """One contact's attributes, events and sends, as conditions and templates read them."""

    id: str
    attributes: dict[str, Any]
    events: list[EventFact] = field(default_factory=list)
    sends: list[tuple[str, str | None, dt.datetime]] = field(default_factory=list)
    campaigns: set[str] = field(default_factory=set)

    @property
    def timezone(self) -> str | None:
        """The contact's IANA zone name, if it has one."""
        value = self.attributes.get("timezone")
        return str(value) if value else None


STANDARD_FIELDS = CONTACT_FIELDS


def contact_attributes(
    row: Sequence[Any], fields: Sequence[str] = STANDARD_FIELDS
) -> dict[str, Any]:
    """Standard fields and custom attributes in one mapping; standard fields win a clash.

    `row` holds the standard `fields` in order, then the attributes document.
    """
    attributes = dict(row[-1] or {})
    attributes.update(zip(fields, row[:-1], strict=True))
    attributes["tags"] = list(attributes["tags"] or [])
    return attributes


def load_facts(
    session: Session,
    tenant_id: str,
    contact_ids: Iterable[str],
    *,
    with_history: bool = True,
    campaign_names: dict[int, str] | None = None,
    kinds: Collection[str] = ALL,
    fields: Sequence[str] = STANDARD_FIELDS,
    sends_within: tuple[dt.datetime, dt.datetime] | None = None,
) -> dict[str, ContactFacts]:
    """Facts for every listed contact that exists, in a handful of chunked queries.

    `kinds` picks the history read (`EVENTS`, `SENDS`, `CAMPAIGNS`; memberships only with
    `campaign_names`); what is not read stays empty (`cadence.engine.reads` says what a
    batch of steps needs). `CAP_SENDS` without `SENDS` reads the sends created strictly
    inside `sends_within` (`reads.cap_sends_within`), when it is given. `fields` picks the
    standard fields in the attributes (`id` and `tags` always among them); the custom
    attributes are always read.
    """
    wanted = sorted(set(contact_ids))
    facts: dict[str, ContactFacts] = {}
    # Plain Core reads on the session's connection, each fetched whole: the ORM's result
    # layer (and fetching row by row) cost more per row than the queries. Flushing first
    # keeps them seeing the session's own changes.
    session.flush()
    connection = session.connection()
    dialect = connection.dialect.name

    fields = tuple(fields)

    sends_kind = "sends" if SENDS in kinds or sends_within is None else "sends_within"
    read_sends = SENDS in kinds or CAP_SENDS in kinds

    def read(kind: str, chunk: list[str]) -> Sequence[Any]:
        bound: dict[str, Any] = {"tenant_id": tenant_id, "keys": among_keys(dialect, chunk)}
        if kind == "sends_within" and sends_within is not None:
            bound["after"], bound["before"] = sends_within
        return connection.execute(_statement(dialect, kind, fields), bound).all()

    for chunk in _chunks(wanted):
        for row in read("contacts", chunk):
            facts[row.id] = ContactFacts(row.id, contact_attributes(row, fields))
    if not with_history or not facts or not kinds:
        return facts
    present = sorted(facts)
    events: dict[str, list[EventFact]] = defaultdict(list)
    sends: dict[str, list[tuple[str, str | None, dt.datetime]]] = defaultdict(list)
    for chunk in _chunks(present):
        if EVENTS in kinds:
            for contact_id, name, at, properties in read("events", chunk):
                events[contact_id].append(EventFact(name, at, properties or {}))
        if read_sends:
            # Status is filtered here, not in SQL: given a status condition, SQLite's planner
            # (without statistics) picks the status index and scans every sent row per chunk.
            # A `notify webhook` is a notice about the contact to a CRM, not a message they
            # received: it counts for neither caps nor `received()`.
            for contact_id, channel, template, created, status, node in read(sends_kind, chunk):
                if status in COUNTED_SEND_STATUSES and node != NOTIFY_NODE:
                    sends[contact_id].append((channel, template, created))
        if campaign_names is not None and CAMPAIGNS in kinds:
            for contact_id, version_id, status in read("campaigns", chunk):
                name = campaign_names.get(version_id)
                if name is not None and status == "active":
                    facts[contact_id].campaigns.add(name)
    for contact_id, fact in facts.items():
        fact.events = events.get(contact_id, [])
        fact.sends = sends.get(contact_id, [])
    return facts


# The facts' reads run for every step batch: each is built once per dialect with every value
# bound (building a statement, and its cache key, cost more per batch than its Python).
_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _statement(dialect: str, kind: str, fields: tuple[str, ...]) -> Any:
    """The read of `kind` (contacts, events, sends, campaigns) for a chunk of contact ids."""
    key = (dialect, kind, fields if kind == "contacts" else ())
    statement = _STATEMENTS.get(key)
    if statement is not None:
        return statement
    tenant = bindparam("tenant_id", type_=String())
    if kind == "contacts":
        columns = [getattr(Contact, name) for name in fields] + [Contact.attributes]
        statement = select(*columns).where(
            Contact.tenant_id == tenant, among_bound(dialect, Contact.id, "keys")
        )
    elif kind == "events":
        statement = (
            select(Event.contact_id, Event.name, Event.at, Event.properties)
            .where(Event.tenant_id == tenant, among_bound(dialect, Event.contact_id, "keys"))
            .order_by(Event.at, Event.id)
        )
    elif kind in ("sends", "sends_within"):
        statement = select(
            OutboxMessage.contact_id,
            OutboxMessage.channel,
            OutboxMessage.template,
            OutboxMessage.created_at,
            OutboxMessage.status,
            OutboxMessage.node,
        ).where(
            OutboxMessage.tenant_id == tenant,
            among_bound(dialect, OutboxMessage.contact_id, "keys"),
        )
        if kind == "sends_within":
            created = OutboxMessage.created_at
            statement = statement.where(
                created > bindparam("after", type_=created.type),
                created < bindparam("before", type_=created.type),
            )
    else:
        statement = select(Enrollment.contact_id, Enrollment.version_id, Enrollment.status).where(
            Enrollment.tenant_id == tenant, among_bound(dialect, Enrollment.contact_id, "keys")
        )
    _STATEMENTS[key] = statement
    return statement


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    """Slices small enough for an IN list on every backend."""
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])
