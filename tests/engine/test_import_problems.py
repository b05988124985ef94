"""A bad events file lists every problem at once (docs/store.md, "When input is bad").

An unknown contact was only looked for once every row was otherwise valid, so a file with
a bad `at` on one line and an unknown contact on another reported the `at` alone; fixing
it then revealed the contact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cadence.engine.store import Store
from cadence.engine.store.importer import import_contacts, push_events, upsert_contact_dicts
from cadence.engine.store.models import Contact, Event
from cadence.engine.store.records import InvalidInput


def push_problems(store: Store, path: Path, rows: list[dict[str, Any]]) -> list[str]:
    """The problems `push_events` lists for `rows` written to `path` as JSON Lines."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    with pytest.raises(InvalidInput) as caught:
        push_events(store, path)
    return [str(problem) for problem in caught.value.problems]


def test_unknown_contacts_are_listed_with_the_other_problems(store: Store, tmp_path: Path) -> None:
    upsert_contact_dicts(store, [{"id": "k1", "email": "k1@example.test"}])
    rows = [
        {"contact": "k1", "name": "clicked", "at": "2026-12-02T10:00:00Z"},
        {"contact": "nobody", "name": "clicked", "at": "2026-12-02T10:00:00Z"},
        {"contact": "k1", "name": "clicked", "at": "yesterday"},
        {"contact": "ghost", "name": "Clicked It", "at": "2026-12-02T10:00:00Z"},
        # Well formed, but before year 1 in UTC: an OverflowError traceback before.
        {"contact": "k1", "name": "clicked", "at": "0001-01-01T00:00:00+01:00"},
    ]
    path = tmp_path / "e.jsonl"
    assert push_problems(store, path, rows) == [
        f"{path}:2: column \"contact\": no contact 'nobody' in tenant 'default'",
        f"{path}:3: column \"at\": 'yesterday' is not an ISO-8601 date-time"
        " (e.g. 2026-12-01T09:00:00Z or 2026-12-01)",
        f"{path}:4: column \"name\": 'Clicked It' is not an event name"
        " (lowercase letters, digits, _)",
        f"{path}:5: column \"at\": '0001-01-01T00:00:00+01:00' is not an ISO-8601 date-time"
        " (e.g. 2026-12-01T09:00:00Z or 2026-12-01)",
    ]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_fields_named_as_other_tools_name_them_say_which_field_is_meant(
    store: Store, tmp_path: Path
) -> None:
    """`event`, `timestamp`, `user_id` are how Segment-style exports write an event; a field
    of the event itself belongs under `properties`. Each problem says which."""
    upsert_contact_dicts(store, [{"id": "k1", "email": "k1@example.test"}])
    at = "2026-12-02T10:00:00Z"
    rows = [
        {"contact": "k1", "event": "clicked", "name": "clicked", "at": at},
        {"contact": "k1", "name": "clicked", "at": at, "timestamp": at},
        {"user_id": "k1", "contact": "k1", "name": "clicked", "at": at, "props": {}},
        {"contact": "k1", "name": "viewed", "at": at, "price": 450000},
    ]
    path = tmp_path / "e.jsonl"
    assert push_problems(store, path, rows) == [
        f'{path}:1: column "event": not an event field (did you mean "name"?)',
        f'{path}:2: column "timestamp": not an event field (did you mean "at"?)',
        f'{path}:3: column "user_id": not an event field (did you mean "contact"?)',
        f'{path}:3: column "props": not an event field (did you mean "properties"?)',
        f'{path}:4: column "price": not an event field'
        ' (an event\'s own fields go under "properties": {"price": ...})',
    ]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_contact_problems_are_reported_in_the_files_line_order(
    store: Store, tmp_path: Path
) -> None:
    """A header problem (a value under a column with no name) and a short row (found while
    reading) and a bad value (found while validating) come back by line, whichever pass
    found them."""
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id,email,timezone,\n"
        "a1,a1@example.test,Europe/Berlin,kept\n"
        "a2,a2@example.test,Mars/Olympus,\n"
        "a3,a3@example.test\n",
        "utf-8",
    )
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, path)
    lines = [problem.row for problem in caught.value.problems]
    assert lines == [1, 3, 4]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 0
