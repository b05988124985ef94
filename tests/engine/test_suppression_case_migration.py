"""Migration 0013: email suppressions stored before it are held lowercased, as looked up now.

A store at 0012 holds bounced addresses as the contact had them (`Ana@Example.com`);
upgrading lowercases them, so they keep suppressing the mailbox in any case, and merges
the rows of a tenant that become one address.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from cadence.engine.migrations import current_revision, downgrade, head_revision, upgrade
from cadence.engine.store import Store
from cadence.engine.store.importer import upsert_contact_dicts
from cadence.engine.store.models import Suppression
from cadence.engine.store.sends import add_suppressions, suppressed_contacts

T0 = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
BEFORE = "0012_opt_out_reply_unsubscribes"


def _suppressions(store: Store) -> list[tuple[Any, ...]]:
    with store.session() as session:
        rows = session.execute(
            select(
                Suppression.tenant_id, Suppression.channel, Suppression.address,
                Suppression.contact_id, Suppression.reason, Suppression.expires_at,
            )
        ).all()  # fmt: skip
    return sorted((tuple(row) for row in rows), key=repr)


def test_old_email_suppressions_are_lowercased_and_merged(database_url: str) -> None:
    later = T0 + dt.timedelta(days=30)
    with Store.open(database_url) as store:
        downgrade(store.engine, BEFORE)
        upsert_contact_dicts(store, [{"id": "ana", "email": "ana@example.com"}], now=T0)
        store.ensure_tenant("other")
        with store.session() as session:
            for address, expires in (
                ("Ana@Example.com", later),
                ("ANA@example.com", None),  # merges into the one above: no expiry wins
                ("bo@example.com", None),
            ):
                add_suppressions(
                    session, "default", "email", [(address, None)], reason="bounced",
                    now=T0, expires_at=expires,
                )  # fmt: skip
            add_suppressions(session, "other", "email", [("Ana@Example.com", None)],
                             reason="bounced", now=T0)  # fmt: skip
            add_suppressions(session, "default", "sms", [("+4915100000", None)],
                             reason="bounced", now=T0)  # fmt: skip
            add_suppressions(session, "default", "email", [(None, "Cy")],
                             reason="complained", now=T0)  # fmt: skip
        upgrade(store.engine)
        assert current_revision(store.engine) == head_revision()
        expected = sorted(
            [
                ("default", "email", "ana@example.com", None, "bounced", None),
                ("default", "email", "bo@example.com", None, "bounced", None),
                ("other", "email", "ana@example.com", None, "bounced", None),
                ("default", "sms", "+4915100000", None, "bounced", None),
                ("default", "email", None, "Cy", "complained", None),
            ],
            key=repr,
        )
        assert _suppressions(store) == expected
        with store.session() as session:
            found = suppressed_contacts(
                session, "default", "email", [("ana", "ana@example.com")], now=T0
            )
        assert found == {"ana"}
        # Down and up again changes nothing.
        downgrade(store.engine, BEFORE)
        upgrade(store.engine)
        assert _suppressions(store) == expected
