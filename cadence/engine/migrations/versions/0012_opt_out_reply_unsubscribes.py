"""Store the `unsubscribed` event each opt-out reply stands for, and honour the opt-out.

Revision ID: 0012_opt_out_reply_unsubscribes
Revises: 0011_tenant_only_claim_indexes
Create Date: 2026-11-28

An opt-out reply (`replied` with STOP, UNSUBSCRIBE ... as its text or a provider's
keyword) is stored with the `unsubscribed` event it stands for (`via` "reply"), which the
report, the `unsubscribed` condition and triggers read. Replies stored before that hold
no such event: reports undercounted unsubscribes and `unsubscribed` read false for people
who had texted STOP. For each tenant, this adds the missing events, as the engine writes
them today (same properties, instant and dedupe key, so neither a second run nor the
engine ever writes one twice), and the person's opt-out suppression on that channel where
they have none and no later START/UNSTOP reply or resubscribe lifted it (the FCC's
revocation rule: an opt-out reply must be honoured).

The rule is frozen here as it stood at 0012 (keywords, folding, channel defaults, dedupe
key), as 0001 spells its types: a migration must do the same thing on every store whatever
`cadence.engine.suppress` says later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision: str = "0012_opt_out_reply_unsubscribes"
down_revision: str | None = "0011_tenant_only_claim_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rule at 0012, copied from cadence/engine/suppress.py (see the module's docstring).
STOP_KEYWORDS = frozenset(
    {
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "ARRET",
        "STOPPROMOTIONS",
    }
)  # fmt: skip
START_KEYWORDS = frozenset({"START", "UNSTOP"})
KEYWORD_FIELDS = ("text", "body", "keyword")
# What a reply's `unsubscribed` keeps of the reply: the message it answers.
MESSAGE_PROPERTIES = ("send", "message", "template", "campaign", "variant", "provider")
REPLY_CHANNEL = "sms"  # a reply's channel when neither it nor its message says
EVERY_CHANNEL = "*"  # a resubscribe's when neither says; a suppression on every channel
UNSUBSCRIBED = "unsubscribed"
# Rows read per statement, and keys per IN list.
PAGE = 5000
CHUNK = 500

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EVENTS = sa.table(
    "events",
    sa.column("tenant_id", sa.String),
    sa.column("contact_id", sa.String),
    sa.column("name", sa.String),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("properties", JSON_DOC),
    sa.column("source", sa.String),
    sa.column("dedupe_key", sa.String),
    sa.column("received_at", sa.DateTime(timezone=True)),
)
SUPPRESSIONS = sa.table(
    "suppressions",
    sa.column("tenant_id", sa.String),
    sa.column("channel", sa.String),
    sa.column("address", sa.String),
    sa.column("contact_id", sa.String),
    sa.column("reason", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
)


# A NamedTuple, not a dataclass: Alembic loads this file outside `sys.modules`, where a
# dataclass cannot resolve its annotations.
class Stored(NamedTuple):
    """One stored event of a contact, as this migration reads it."""

    contact_id: str
    at: dt.datetime
    properties: dict[str, Any]
    dedupe_key: str | None
    source: str | None
    received_at: dt.datetime


def upgrade() -> None:
    """Add each opt-out reply's missing `unsubscribed` event and opt-out suppression."""
    bind = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    tenants = [
        str(t) for t in bind.execute(sa.text("SELECT id FROM tenants ORDER BY id")).scalars()
    ]
    for tenant in tenants:
        _upgrade_tenant(bind, tenant, now)


def downgrade() -> None:
    """Keep the events and suppressions: they are what the replies said, read the same at 0011.

    Taking them away would send again to people who texted STOP.
    """


def _upgrade_tenant(bind: sa.Connection, tenant: str, now: dt.datetime) -> None:
    """Write the tenant's missing opt-out events, then the suppressions they call for."""
    stops: list[Stored] = []
    starts: list[Stored] = []
    for reply in _events(bind, tenant, "replied"):
        if _says(reply.properties, STOP_KEYWORDS):
            stops.append(reply)
        elif _says(reply.properties, START_KEYWORDS):
            starts.append(reply)
    if not stops:
        return
    people = sorted({reply.contact_id for reply in stops})
    resubscribes = list(_events(bind, tenant, "resubscribed", people))
    channels = _message_channels(
        bind, tenant, (e.properties for e in (*stops, *starts, *resubscribes))
    )

    def channel_of(event: Stored, default: str) -> str:
        """The event's `channel`, else its message's, else `default` (as `_channel` reads)."""
        named = event.properties.get("channel")
        if isinstance(named, str) and named:
            return named
        return channels.get(_message_of(event.properties) or "", default)

    stop_channels = [(reply, channel_of(reply, REPLY_CHANNEL)) for reply in stops]
    missing = _missing_unsubscribes(
        list(_events(bind, tenant, UNSUBSCRIBED, people)), stop_channels
    )
    if not missing:
        return
    rows = [
        _unsubscribe_row(bind, tenant, reply, channel, key)
        for key, (reply, channel) in missing.items()
    ]
    _insert(bind, EVENTS, rows, skip_conflicts_on=("tenant_id", "dedupe_key"))
    lifts = [(e, channel_of(e, REPLY_CHANNEL)) for e in starts]
    lifts += [(e, channel_of(e, EVERY_CHANNEL)) for e in resubscribes]
    standing = _standing_opt_outs(
        {(reply.contact_id, channel) for reply, channel in missing.values()}, stop_channels, lifts
    )
    already = _opted_out(bind, tenant, sorted({cid for cid, _ in standing}), now)
    _insert(
        bind,
        SUPPRESSIONS,
        [
            {
                "tenant_id": tenant, "channel": channel, "address": None, "contact_id": cid,
                "reason": UNSUBSCRIBED, "created_at": _stored(bind, at), "expires_at": None,
            }
            for (cid, channel), at in sorted(standing.items())
            if (cid, channel) not in already and (cid, EVERY_CHANNEL) not in already
        ],
    )  # fmt: skip


def _missing_unsubscribes(
    present: Sequence[Stored], stops: Sequence[tuple[Stored, str]]
) -> dict[str, tuple[Stored, str]]:
    """Of the opt-out replies (with their channels), those without their `unsubscribed`, by
    the key it gets: none with that key, nor one via a reply of that contact, instant,
    channel and message is among the `present` unsubscribes."""
    keys = {e.dedupe_key for e in present if e.dedupe_key}
    matching = {
        (e.contact_id, e.at, str(e.properties.get("channel")), _message_of(e.properties))
        for e in present
        if e.properties.get("via") == "reply"
    }
    missing: dict[str, tuple[Stored, str]] = {}
    for reply, channel in stops:
        key = _opt_out_key(reply, channel)
        found = (reply.contact_id, reply.at, channel, _message_of(reply.properties))
        if key not in keys and found not in matching:
            missing.setdefault(key, (reply, channel))
    return missing


def _standing_opt_outs(
    pairs: set[tuple[str, str]],
    stops: Sequence[tuple[Stored, str]],
    lifts: Sequence[tuple[Stored, str]],
) -> dict[tuple[str, str], dt.datetime]:
    """Of the (contact, channel) pairs, those whose opt-out still stands, with its instant.

    Of a person's opt-out replies on a channel and what lifts such an opt-out (START,
    UNSTOP, a resubscribe there or on every channel), the latest decides; at one instant
    the opt-out does, as the engine decides for events stored together.
    """
    last_stop: dict[tuple[str, str], dt.datetime] = {}
    for reply, channel in stops:
        pair = (reply.contact_id, channel)
        if pair in pairs:
            last_stop[pair] = max(reply.at, last_stop.get(pair, reply.at))
    channels_of: dict[str, list[str]] = {}
    for cid, channel in last_stop:
        channels_of.setdefault(cid, []).append(channel)
    lifted: dict[tuple[str, str], dt.datetime] = {}
    for event, channel in lifts:
        every = channels_of.get(event.contact_id, [])
        for each in every if channel == EVERY_CHANNEL else [channel]:
            pair = (event.contact_id, each)
            lifted[pair] = max(event.at, lifted.get(pair, event.at))
    return {pair: at for pair, at in last_stop.items() if pair not in lifted or lifted[pair] <= at}


def _events(
    bind: sa.Connection, tenant: str, name: str, contacts: Sequence[str] | None = None
) -> Iterator[Stored]:
    """The tenant's events of `name` about a contact (of `contacts`, if given)."""
    if contacts is None:
        yield from _pages(bind, tenant, name, None)
        return
    for start in range(0, len(contacts), CHUNK):
        yield from _pages(bind, tenant, name, contacts[start : start + CHUNK])


def _pages(
    bind: sa.Connection, tenant: str, name: str, contacts: Sequence[str] | None
) -> Iterator[Stored]:
    """Read the events PAGE rows at a time, by id, so a large store is never held at once."""
    which = "contact_id IS NOT NULL" if contacts is None else "contact_id IN :ids"
    statement = sa.text(
        "SELECT id, contact_id, at, properties, dedupe_key, source, received_at FROM events"
        f" WHERE tenant_id = :tenant AND name = :name AND {which} AND id > :after"
        " ORDER BY id LIMIT :page"
    )
    params: dict[str, Any] = {"tenant": tenant, "name": name, "page": PAGE}
    if contacts is not None:
        statement = statement.bindparams(sa.bindparam("ids", expanding=True))
        params["ids"] = list(contacts)
    after = 0
    while True:
        rows = bind.execute(statement, {**params, "after": after}).all()
        for row_id, contact, at, properties, key, source, received in rows:
            after = row_id
            yield Stored(str(contact), _utc(at), _document(properties), key, source, _utc(received))
        if len(rows) < PAGE:
            return


def _message_channels(
    bind: sa.Connection, tenant: str, properties: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """The channel of each outbox message the events name (by its idempotency key)."""
    keys = sorted({key for props in properties if (key := _message_of(props))})
    found: dict[str, str] = {}
    for start in range(0, len(keys), CHUNK):
        found.update(
            (str(key), str(channel))
            for key, channel in bind.execute(
                sa.text(
                    "SELECT idempotency_key, channel FROM send_outbox"
                    " WHERE tenant_id = :tenant AND idempotency_key IN :keys"
                ).bindparams(sa.bindparam("keys", keys[start : start + CHUNK], expanding=True)),
                {"tenant": tenant},
            )
        )
    return found


def _opted_out(
    bind: sa.Connection, tenant: str, contacts: Sequence[str], now: dt.datetime
) -> set[tuple[str, str]]:
    """(contact, channel) of the contacts' own opt-out suppressions still in force."""
    found: set[tuple[str, str]] = set()
    for start in range(0, len(contacts), CHUNK):
        rows = bind.execute(
            sa.text(
                "SELECT contact_id, channel, expires_at FROM suppressions"
                " WHERE tenant_id = :tenant AND address IS NULL AND reason = :reason"
                " AND contact_id IN :ids"
            ).bindparams(sa.bindparam("ids", contacts[start : start + CHUNK], expanding=True)),
            {"tenant": tenant, "reason": UNSUBSCRIBED},
        )
        found.update(
            (str(cid), str(channel))
            for cid, channel, expires in rows
            if expires is None or _utc(expires) > now
        )
    return found


def _unsubscribe_row(
    bind: sa.Connection, tenant: str, reply: Stored, channel: str, key: str
) -> dict[str, Any]:
    """The `unsubscribed` event a reply stands for, as the engine stores it with the reply."""
    kept = {k: reply.properties[k] for k in MESSAGE_PROPERTIES if k in reply.properties}
    return {
        "tenant_id": tenant,
        "contact_id": reply.contact_id,
        "name": UNSUBSCRIBED,
        "at": _stored(bind, reply.at),
        "properties": {**kept, "channel": channel, "via": "reply"},
        "source": reply.source,
        "dedupe_key": key,
        # Stored with the reply, as the engine does in the reply's own transaction.
        "received_at": _stored(bind, reply.received_at),
    }


def _insert(
    bind: sa.Connection,
    table: sa.TableClause,
    rows: Sequence[dict[str, Any]],
    *,
    skip_conflicts_on: Sequence[str] = (),
) -> None:
    """INSERT the rows in bulk; a row whose `skip_conflicts_on` key is already there is skipped."""
    if not rows:
        return
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    if skip_conflicts_on:
        statement = statement.on_conflict_do_nothing(index_elements=list(skip_conflicts_on))
    for start in range(0, len(rows), PAGE):
        bind.execute(statement, list(rows[start : start + PAGE]))


def _opt_out_key(reply: Stored, channel: str) -> str:
    """The dedupe key of the `unsubscribed` a reply stands for (the engine's, at 0012)."""
    origin = reply.dedupe_key or json.dumps(
        [reply.contact_id, reply.at.isoformat(), channel, reply.properties.get("send")]
    )
    return "opt-out:" + hashlib.sha256(origin.encode("utf-8")).hexdigest()[:40]


def _says(properties: Mapping[str, Any], keywords: frozenset[str]) -> bool:
    """Whether the reply's text, body or provider keyword is one of `keywords`, folded."""
    return any(
        isinstance(text := properties.get(key), str) and _keyword(text) in keywords
        for key in KEYWORD_FIELDS
    )


def _keyword(text: str) -> str:
    """A reply folded for comparison: compatibility forms and accents dropped, upper case,
    letters and digits only; over 64 characters it is a sentence, not a keyword."""
    if len(text) > 64:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ch.isalnum() and ch.isascii()).upper()


def _message_of(properties: Mapping[str, Any]) -> str | None:
    """The message an event names: its `send`, else its `message`."""
    key = properties.get("send") or properties.get("message")
    return None if key is None else str(key)


def _document(value: Any) -> dict[str, Any]:
    """A JSON column's value as a dict (SQLite gives its text, PostgreSQL the document)."""
    document = json.loads(value) if isinstance(value, str | bytes) else value
    return document if isinstance(document, dict) else {}


def _utc(value: Any) -> dt.datetime:
    """A stored timestamp (SQLite's naive UTC text, PostgreSQL's aware value) in UTC."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _stored(bind: sa.Connection, moment: dt.datetime) -> dt.datetime:
    """A UTC instant as the store writes it: naive on SQLite, which keeps no zone."""
    return moment.replace(tzinfo=None) if bind.dialect.name == "sqlite" else moment
