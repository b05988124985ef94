"""Text that looks the same compares equal: "Zürich" exported by macOS tools (NFD, `u` and
a combining diaeresis) matches "Zürich" typed in a .cadence file (NFC), wherever it comes in.

Through the real paths: a CSV and a JSON Lines file imported, contacts and events given to
the engine's API (what the HTTP service calls), and a dry-run's files; on both stores and
both dispatch cores.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import unicodedata
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import select

from cadence.engine.dryrun import dry_run
from cadence.engine.runtime import Engine, RecordingSink
from cadence.engine.store import Store
from cadence.engine.store.models import Contact, Event
from tests.engine.test_runtime import T0, campaigns, engine_run, sent

COMPOSED = unicodedata.normalize("NFC", "Zürich")
DECOMPOSED = unicodedata.normalize("NFD", "Zürich")
CAFE = unicodedata.normalize("NFD", "Café")
# The DSL written in NFC, as an editor types it, but for one tag written in NFD: the tag a
# step sets and the `contains` that reads it are one text.
SOURCE = f"""
template hi email {{ subject "Hi" body "x" }}
template deal email {{ subject "Deal" body "x" }}
template fan email {{ subject "Fan" body "x" }}
segment zurich = city = "{COMPOSED}" and tags contains "Café"
campaign locals {{ audience zurich  on launch {{ tag add "{DECOMPOSED}-fan"  send email hi }} }}
campaign fans {{ audience tags contains "{COMPOSED}-fan"  on launch {{ send email fan }} }}
when viewed where event.city = "{COMPOSED}" send email deal
when listed for contacts where event.city in contact.areas send email deal
"""
CSV = f"id,email,city,tags\ncsv1,csv1@example.test,{DECOMPOSED},{CAFE}\n"
JSONL = json.dumps(
    {
        "id": "json1",
        "email": "json1@example.test",
        "city": DECOMPOSED,
        "tags": [CAFE],
        "areas": [DECOMPOSED],
    }
)


def _people(tmp_path: Path) -> tuple[Path, Path]:
    """The CSV and the JSON Lines file, each with one contact in NFD."""
    (tmp_path / "people.csv").write_text(CSV, "utf-8")
    (tmp_path / "people.jsonl").write_text(JSONL + "\n", "utf-8")
    return tmp_path / "people.csv", tmp_path / "people.jsonl"


def _stored_text(store: Store) -> list[Any]:
    """Every contact's attributes and tags and every event's properties, as stored."""
    with store.session() as session:
        return [
            *map(list, session.execute(select(Contact.attributes, Contact.tags))),
            *session.scalars(select(Event.properties).order_by(Event.id)),
        ]


def test_decomposed_text_matches_the_dsl_on_both_stores_and_cores(
    store_url: str, tmp_path: Path, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    csv_file, jsonl_file = _people(tmp_path)

    async def body(engine: Engine, clock: Any, sink: RecordingSink) -> Any:
        if (report := await engine.import_contacts(csv_file)).problems:
            raise AssertionError(report.problems)
        if (report := await engine.import_contacts(jsonl_file)).problems:
            raise AssertionError(report.problems)
        await engine.upsert_contacts(
            [{"id": "api1", "email": "api1@example.test", "city": DECOMPOSED, "tags": [CAFE]}]
        )
        await engine.upsert_contacts([{"id": "other", "email": "o@example.test", "city": "Bern"}])
        await engine.deploy(campaigns(SOURCE))
        assert await engine.launch("locals") == 3
        await engine.run_due()
        assert await engine.launch("fans") == 3
        for triggered in ("t_viewed", "t_listed"):
            await engine.launch(triggered)
        await engine.push_events(
            [
                {
                    "contact": "other",
                    "name": "viewed",
                    "at": T0.isoformat(),
                    "properties": {"city": DECOMPOSED},
                },
                {"name": "listed", "at": T0.isoformat(), "properties": {"city": DECOMPOSED}},
            ]
        )
        await engine.run_due()
        return sorted(sent(sink)), await engine.store.call(_stored_text)

    delivered, stored = engine_run(store_url, body)
    assert delivered == sorted(
        [(person, "hi") for person in ("api1", "csv1", "json1")]
        + [(person, "fan") for person in ("api1", "csv1", "json1")]
        + [("other", "deal"), ("json1", "deal")]
    )
    text = json.dumps(stored, ensure_ascii=False)
    assert DECOMPOSED not in text and COMPOSED in text and "Café" in text
    assert filter_backend, "the audiences and the fan-out go to the dispatch core"
    for chosen, evaluated, _ in filter_backend:
        assert chosen == evaluated


def test_a_dry_run_matches_decomposed_contacts_and_events(
    store_url: str, tmp_path: Path, filter_backend: list[tuple[list[str], list[str], bool]]
) -> None:
    """A dry-run imports its files as `contacts import` does: the same text, the same sends."""
    csv_file, _ = _people(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(
            {
                "contact": "csv1",
                "name": "viewed",
                "at": T0.isoformat(),
                "properties": {"city": DECOMPOSED},
            }
        )
        + "\n",
        "utf-8",
    )
    ran = trio.run(
        functools.partial(
            dry_run,
            campaigns(SOURCE),
            csv_file,
            events=events,
            start=T0,
            until=dt.timedelta(days=1),
            database_url=store_url,
        )
    )
    # `fans` launches beside `locals`, before its tag is set: only the engine test sees it.
    assert sorted((s.contact, s.template) for s in ran.sends) == [("csv1", "deal"), ("csv1", "hi")]
    assert filter_backend


def test_ids_and_addresses_are_kept_as_given(store_url: str) -> None:
    """An id is the product's key and an address the mailbox's: neither is composed, so an
    id differing from a stored one only by its form is another contact (docs/store.md)."""
    decomposed_id = unicodedata.normalize("NFD", "zoë")
    address = unicodedata.normalize("NFD", "zoë@example.test")

    async def body(engine: Engine, clock: Any, sink: RecordingSink) -> Any:
        await engine.upsert_contacts([{"id": decomposed_id, "email": address, "city": DECOMPOSED}])
        await engine.upsert_contacts([{"id": "zoë", "city": "Bern"}])
        return await engine.store.call(_contacts)

    assert engine_run(store_url, body) == [
        (decomposed_id, address, {"city": COMPOSED}),
        (unicodedata.normalize("NFC", "zoë"), None, {"city": "Bern"}),
    ]


def _contacts(store: Store) -> list[tuple[str, str | None, dict[str, Any]]]:
    with store.session() as session:
        rows = session.execute(select(Contact.id, Contact.email, Contact.attributes))
        return sorted((row.id, row.email, row.attributes) for row in rows)
