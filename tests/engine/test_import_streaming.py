"""Imports stream: a file is read, checked and written a chunk at a time, in one transaction.

`IMPORT_CHUNK` is made small here so that a few dozen rows span many chunks: what holds
across chunk boundaries (all or nothing, --skip-invalid, duplicate ids, column types,
triggers) holds for a file of millions of rows, and no more than a chunk or two of records
is ever alive at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from store_helpers import T0
from test_store_import import (
    CONTACT_CREATED,
    EVENT_TRIGGERED,
    count,
    deploy_and_launch,
    jsonl,
    write,
)

from cadence.cli import main
from cadence.engine.store import Store, importer, records
from cadence.engine.store.importer import (
    import_contacts,
    push_event_dicts,
    push_events,
    upsert_contact_dicts,
)
from cadence.engine.store.models import Contact, Enrollment, Event, Tenant
from cadence.engine.store.records import InvalidInput

CHUNK = 4
ROWS = 30  # seven full chunks and a part


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of four rows, so a 30-row file spans eight of them."""
    monkeypatch.setattr(importer, "IMPORT_CHUNK", CHUNK)


@pytest.fixture
def cli_env(store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the CLI at the test's (migrated) database."""
    monkeypatch.setenv("CADENCE_DATABASE_URL", store_url)
    yield store_url


def people_csv(tmp_path: Path, bad: dict[int, str] | None = None, name: str = "p.csv") -> Path:
    """ROWS contacts c0.. with a numeric score; `bad` replaces the email of some rows."""
    lines = ["id,email,score"]
    for index in range(ROWS):
        email = (bad or {}).get(index, f"c{index}@x.test")
        lines.append(f"c{index},{email},{index}")
    return write(tmp_path, name, "\n".join(lines) + "\n")


def stored_contacts(store: Store) -> dict[str, dict[str, Any]]:
    """Every contact's attributes by id."""
    with store.session() as session:
        return dict(session.execute(select(Contact.id, Contact.attributes)).all())


def enrolled(store: Store) -> list[str]:
    """The contacts enrolled in any campaign, sorted."""
    with store.session() as session:
        return sorted(session.scalars(select(Enrollment.contact_id)))


def test_a_bad_row_at_the_end_leaves_the_store_as_it_was(store: Store, tmp_path: Path) -> None:
    upsert_contact_dicts(store, [{"id": "c0", "email": "old@x.test"}], now=T0)
    people = people_csv(tmp_path, {ROWS - 1: "nope"})
    with pytest.raises(InvalidInput) as raised:
        import_contacts(store, people)
    assert [(p.row, p.column) for p in raised.value.problems] == [(ROWS + 1, "email")]
    with store.session() as session:
        assert session.scalar(select(Contact.email)) == "old@x.test"
    assert list(stored_contacts(store)) == ["c0"]


def test_a_bad_row_at_the_end_of_a_new_tenant_s_file_leaves_no_tenant(
    store: Store, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        import_contacts(store, people_csv(tmp_path, {ROWS - 2: "nope"}), tenant_id="acme")
    assert count(store, Contact) == 0 and count(store, Tenant) == 0


def test_every_bad_row_is_reported_whichever_chunk_holds_it(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as raised:
        import_contacts(store, people_csv(tmp_path, {1: "a", 13: "b", ROWS - 1: "c"}))
    assert [p.row for p in raised.value.problems] == [3, 15, ROWS + 1]
    assert count(store, Contact) == 0


def test_skip_invalid_writes_the_good_rows_of_every_chunk(store: Store, tmp_path: Path) -> None:
    # A skipped row's `n/a` score would make the column text; the rows written are numbers.
    text = people_csv(tmp_path, {2: "nope", ROWS - 1: "nope"}).read_text()
    people = write(tmp_path, "q.csv", text.replace("c2,nope,2", "c2,nope,n/a"))
    report = import_contacts(store, people, skip_invalid=True)
    assert [p.row for p in report.problems] == [4, ROWS + 1]
    assert (report.rows, report.written, report.created) == (ROWS, ROWS - 2, ROWS - 2)
    stored = stored_contacts(store)
    assert sorted(stored) == sorted(f"c{i}" for i in range(ROWS) if i not in (2, ROWS - 1))
    assert stored["c28"] == {"score": 28}
    assert all(isinstance(attributes["score"], int) for attributes in stored.values())


def test_an_id_given_again_in_a_later_chunk_is_a_problem_of_its_line(
    store: Store, tmp_path: Path
) -> None:
    text = people_csv(tmp_path).read_text() + "c1,again@x.test,99\n"
    people = write(tmp_path, "dup.csv", text)
    with pytest.raises(InvalidInput) as raised:
        import_contacts(store, people)
    [problem] = raised.value.problems
    assert (problem.row, problem.column) == (ROWS + 2, "id")
    assert "duplicate id 'c1' (also on line 3)" in problem.reason
    assert count(store, Contact) == 0

    report = import_contacts(store, people, skip_invalid=True)
    assert report.written == ROWS and [p.row for p in report.problems] == [ROWS + 2]
    assert stored_contacts(store)["c1"] == {"score": 1}  # the first row wins
    with store.session() as session:
        assert session.scalar(select(Contact.email).where(Contact.id == "c1")) == "c1@x.test"


def test_a_required_attribute_is_checked_against_the_store_in_every_chunk(
    store: Store, tmp_path: Path
) -> None:
    schema = write(tmp_path, "s.yaml", "attributes:\n  plan: {type: string, required: true}\n")
    upsert_contact_dicts(store, [{"id": "c25", "plan": "pro"}], schema=schema, now=T0)
    people = jsonl(tmp_path, "p.jsonl", [{"id": f"c{i}", "plan": "free"} for i in range(24)])
    later = [{"id": "c25"}, {"id": "c26"}]  # c25 holds a plan; c26 is new and has none
    people.write_text(people.read_text() + "".join(f'{{"id": "{r["id"]}"}}\n' for r in later))
    with pytest.raises(InvalidInput) as raised:
        import_contacts(store, people)
    assert [(p.row, p.column) for p in raised.value.problems] == [(26, "plan")]
    assert list(stored_contacts(store)) == ["c25"]


@dataclass
class _Counted:
    """How many records of a kind are alive, and the most there ever were at once."""

    alive: int = 0
    most: int = 0

    def born(self, record: Any) -> None:
        self.alive += 1
        self.most = max(self.most, self.alive)
        weakref.finalize(record, self.died)

    def died(self) -> None:
        self.alive -= 1


@pytest.fixture
def live_records(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Counted]:
    """Counts the contact and event records alive while an import runs."""
    counts = {"contacts": _Counted(), "events": _Counted()}

    class CountedContact(records.ContactRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            counts["contacts"].born(self)

    class CountedEvent(records.EventRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            counts["events"].born(self)

    monkeypatch.setattr(records, "ContactRecord", CountedContact)
    monkeypatch.setattr(importer, "ContactRecord", CountedContact)
    monkeypatch.setattr(records, "EventRecord", CountedEvent)
    return counts


def test_a_contacts_import_holds_a_chunk_of_records_not_the_file(
    store: Store, tmp_path: Path, live_records: dict[str, _Counted]
) -> None:
    report = import_contacts(store, people_csv(tmp_path))
    assert report.written == ROWS and count(store, Contact) == ROWS
    # The chunk being checked and the one before it, whose names are rebound last.
    assert 0 < live_records["contacts"].most <= 2 * CHUNK


def test_an_events_push_holds_a_chunk_of_records_not_the_file(
    store: Store, tmp_path: Path, live_records: dict[str, _Counted]
) -> None:
    upsert_contact_dicts(store, [{"id": f"c{i}"} for i in range(ROWS)], now=T0)
    events = jsonl(
        tmp_path,
        "e.jsonl",
        [{"contact": f"c{i}", "name": "opened", "at": "2026-12-01"} for i in range(ROWS)],
    )
    assert push_events(store, events).written == ROWS and count(store, Event) == ROWS
    assert 0 < live_records["events"].most <= 2 * CHUNK


def test_a_bad_event_at_the_end_leaves_the_store_as_it_was(store: Store, tmp_path: Path) -> None:
    upsert_contact_dicts(store, [{"id": f"c{i}"} for i in range(3)], now=T0)
    rows = [{"contact": f"c{i % 3}", "name": "opened", "at": "2026-12-01"} for i in range(ROWS)]
    rows[-1]["contact"] = "nobody"
    with pytest.raises(InvalidInput) as raised:
        push_events(store, jsonl(tmp_path, "e.jsonl", rows))
    assert [(p.row, p.column) for p in raised.value.problems] == [(ROWS, "contact")]
    assert count(store, Event) == 0

    report = push_events(store, jsonl(tmp_path, "e.jsonl", rows), skip_invalid=True)
    assert (report.written, [p.row for p in report.problems]) == (ROWS - 1, [ROWS])
    assert count(store, Event) == ROWS - 1


def test_an_event_id_given_again_in_a_later_chunk_is_stored_once(store: Store) -> None:
    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    rows = [{"contact": "c1", "name": "opened", "at": "2026-12-01", "id": f"e{i % 10}"}
            for i in range(ROWS)]  # fmt: skip
    report = push_event_dicts(store, rows)
    assert (report.written, report.duplicates) == (10, ROWS - 10)
    with store.session() as session:
        assert session.scalar(select(func.count(func.distinct(Event.dedupe_key)))) == 10


def test_cli_import_into_a_running_tenant_enrolls_every_chunk_once_or_nothing(
    cli_env: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_and_launch(cli_env, CONTACT_CREATED)
    assert main(["contacts", "import", str(people_csv(tmp_path, {ROWS - 1: "nope"}))]) == 1
    assert "nothing was written" in capsys.readouterr().err
    assert count(store, Contact) == 0 and enrolled(store) == []

    people = people_csv(tmp_path)
    assert main(["contacts", "import", str(people)]) == 0
    assert main(["contacts", "import", str(people)]) == 0  # updates: nobody enters twice
    assert f"{ROWS} contacts written" in capsys.readouterr().out
    assert enrolled(store) == sorted(f"c{i}" for i in range(ROWS))


def test_cli_pushed_events_fire_their_triggers_in_every_chunk_or_none(
    cli_env: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_and_launch(cli_env, EVENT_TRIGGERED)
    upsert_contact_dicts(store, [{"id": f"c{i}"} for i in range(ROWS)])
    rows = [
        {"contact": f"c{i}", "name": "property_viewed", "at": "2026-12-01T09:00:00Z", "id": f"e{i}"}
        for i in range(ROWS)
    ]
    bad = jsonl(tmp_path, "bad.jsonl", [*rows[:-1], {**rows[-1], "contact": "nobody"}])
    assert main(["events", "push", str(bad)]) == 1
    assert "nothing was written" in capsys.readouterr().err
    assert count(store, Event) == 0 and enrolled(store) == []

    assert main(["events", "push", str(jsonl(tmp_path, "e.jsonl", rows))]) == 0
    assert f"{ROWS} events written" in capsys.readouterr().out
    assert enrolled(store) == sorted(f"c{i}" for i in range(ROWS))


def test_a_failure_after_some_chunks_were_written_leaves_nothing(
    store: Store, tmp_path: Path
) -> None:
    """What a crash midway would leave: the chunks written before it are rolled back."""
    from sqlalchemy.orm import Session

    from cadence.engine.store.importer import ImportReport

    chunks: list[int] = []

    def fail_on_the_third(session: Session, report: ImportReport) -> None:
        chunks.append(report.written)
        if len(chunks) == 3:
            raise RuntimeError("the machine went down")

    with pytest.raises(RuntimeError):
        import_contacts(store, people_csv(tmp_path), on_written=fail_on_the_third)
    assert chunks == [CHUNK] * 3 and count(store, Contact) == 0 and count(store, Tenant) == 0

    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    chunks.clear()
    rows = [{"contact": "c1", "name": "opened", "at": "2026-12-01"} for _ in range(ROWS)]
    with pytest.raises(RuntimeError):
        push_event_dicts(store, rows, on_written=fail_on_the_third)
    assert chunks == [CHUNK] * 3 and count(store, Event) == 0


def test_an_import_through_the_engine_reads_the_active_campaigns_once(
    cli_env: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight chunks of contacts, then of events, each set off by the campaigns read once: two
    reads per chunk (before its write and after it) were a tenth of a dry-run's import."""
    from cadence.engine.runtime import Engine

    deploy_and_launch(cli_env, CONTACT_CREATED + EVENT_TRIGGERED)
    reads: list[int] = []
    read_active = Engine._active_versions

    def counted(engine: Engine, session: Any) -> Any:
        reads.append(1)
        return read_active(engine, session)

    monkeypatch.setattr(Engine, "_active_versions", counted)
    assert main(["contacts", "import", str(people_csv(tmp_path))]) == 0
    assert len(reads) == 1
    assert enrolled(store) == sorted(f"c{i}" for i in range(ROWS))

    reads.clear()
    rows = [
        {"contact": f"c{i}", "name": "property_viewed", "at": "2026-12-01T09:00:00Z"}
        for i in range(ROWS)
    ]
    assert main(["events", "push", str(jsonl(tmp_path, "e.jsonl", rows))]) == 0
    assert len(reads) == 1
    assert count(store, Enrollment) == 2 * ROWS


def test_the_cli_imports_with_the_bulk_collector(
    cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's rows die with it: the collector's default thresholds walked them over and
    over (about a tenth of a 200,000-row import's CPU)."""
    import gc

    from cadence.engine.collector import BULK_THRESHOLDS

    thresholds: list[tuple[int, int, int]] = []
    upsert = importer.upsert_contact_records

    def watched(*args: Any, **kwargs: Any) -> Any:
        thresholds.append(gc.get_threshold())
        return upsert(*args, **kwargs)

    monkeypatch.setattr(importer, "upsert_contact_records", watched)
    before = gc.get_threshold()
    assert main(["contacts", "import", str(people_csv(tmp_path))]) == 0
    assert thresholds == [BULK_THRESHOLDS] * (ROWS // CHUNK + 1)
    assert gc.get_threshold() == before


def test_a_csv_column_is_typed_by_the_cells_of_every_chunk(store: Store, tmp_path: Path) -> None:
    """What one late cell says types its whole column, whichever chunk it is in."""
    header = "id,score,ratio,flag,areas,zip,tried"
    lines = [header] + [f"c{i},{i},{i},true,Manila,{10000 + i},x;y" for i in range(ROWS)]
    lines[ROWS] = f"c{ROWS - 1},7,0.5,FALSE,Manila;Cebu,01234,[broken"  # the last chunk's
    lines.insert(5, " , ,\t, , , , ")  # a line of blanks only: skipped, in any chunk
    import_contacts(store, write(tmp_path, "typed.csv", "\n".join(lines) + "\n"))
    stored = stored_contacts(store)
    assert stored["c0"] == {
        "score": 0, "ratio": 0.0, "flag": True, "areas": ["Manila"], "zip": "10000",
        "tried": "x;y",
    }  # fmt: skip
    assert stored[f"c{ROWS - 1}"] == {
        "score": 7, "ratio": 0.5, "flag": False, "areas": ["Manila", "Cebu"], "zip": "01234",
        "tried": "[broken",
    }  # fmt: skip
    assert len(stored) == ROWS


def test_a_column_name_is_judged_once_a_chunk_not_once_a_cell(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows of a file name the same columns: whether each can be stored is worked out
    once a chunk, not for every cell (a tenth of the import's CPU)."""
    judged: list[str] = []
    judge = records.unknown_column_reason

    def counted(column: str, schema: Any) -> str | None:
        judged.append(column)
        return judge(column, schema)

    monkeypatch.setattr(records, "unknown_column_reason", counted)
    import_contacts(store, people_csv(tmp_path))
    chunks = ROWS // CHUNK + 1
    assert sorted(judged) == ["email"] * chunks + ["score"] * chunks
    assert stored_contacts(store)["c7"] == {"score": 7}
