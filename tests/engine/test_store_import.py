"""Contacts and events come in typed and validated; bad input is named and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from store_helpers import T0

from cadence.cli import main
from cadence.engine.store import Store, StoreError
from cadence.engine.store.importer import (
    import_contacts,
    push_event_dicts,
    push_events,
    upsert_contact_dicts,
)
from cadence.engine.store.models import Contact, Event, Tenant
from cadence.engine.store.records import InvalidInput, Problem
from cadence.engine.store.schema import SchemaError, load_schema

SCHEMA = """\
attributes:
  city: string
  budget_max: number
  lead_score: {type: integer}
  areas: list
  email_verified: boolean
  signed_up_at: datetime
  birthday: date
  plan: {type: string, choices: [free, pro]}
"""

HEADER = "id,email,phone,first_name,last_name,timezone,locale,tags,city,budget_max,lead_score,areas"


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a test input file."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines."""
    return write(tmp_path, name, "".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    """The schema used by most tests."""
    return write(tmp_path, "contacts.schema.yaml", SCHEMA)


def contacts(store: Store, tenant_id: str = "default") -> dict[str, Contact]:
    """Every contact of a tenant by id."""
    with store.session() as session:
        rows = session.scalars(select(Contact).where(Contact.tenant_id == tenant_id))
        return {row.id: row for row in rows}


def count(store: Store, model: type[Any]) -> int:
    """Rows in a table, all tenants."""
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_csv_import_types_attributes_by_the_schema(
    store: Store, tmp_path: Path, schema_file: Path
) -> None:
    people = write(
        tmp_path,
        "people.csv",
        f"{HEADER},email_verified,signed_up_at,birthday,plan\n"
        "c1,Ana@Example.COM,+63 917 123 4567,Ana,Reyes,Asia/Manila,en_ph,vip;buyer,Manila,"
        '500000,42,"[""Makati"", ""BGC""]",yes,2026-01-05T10:00:00+08:00,1990-04-01,pro\n'
        "c2,bob@example.com,,Bob,,America/New_York,en,,Boston,2.5e5,,Back Bay,0,,,\n",
    )
    report = import_contacts(store, people, schema=schema_file, now=T0)
    assert (report.written, report.created, report.updated, report.problems) == (2, 2, 0, [])
    stored = contacts(store)
    ana, bob = stored["c1"], stored["c2"]
    assert ana.email == "Ana@example.com"
    assert ana.phone == "+639171234567"
    assert (ana.timezone, ana.locale, ana.tags) == ("Asia/Manila", "en-PH", ["vip", "buyer"])
    assert ana.attributes == {
        "city": "Manila",
        "budget_max": 500000.0,
        "lead_score": 42,
        "areas": ["Makati", "BGC"],
        "email_verified": True,
        "signed_up_at": "2026-01-05T02:00:00Z",
        "birthday": "1990-04-01",
        "plan": "pro",
    }
    assert bob.phone is None and bob.last_name is None and bob.tags == []
    assert bob.attributes == {
        "city": "Boston",
        "budget_max": 250000.0,
        "areas": ["Back Bay"],
        "email_verified": False,
    }
    assert ana.created_at == T0 == ana.updated_at
    with store.session() as session:
        tenant = session.get(Tenant, "default")
        assert tenant is not None and tenant.contact_schema is not None
        assert tenant.contact_schema["attributes"]["areas"] == {"type": "list", "required": False}


def test_upsert_by_id_keeps_absent_columns_merges_attributes_and_clears_empty_cells(
    store: Store, tmp_path: Path
) -> None:
    first = write(
        tmp_path,
        "first.csv",
        "id,email,first_name,city,plan\nc1,a@x.test,Ana,Manila,free\nc2,b@x.test,Bob,Cebu,pro\n",
    )
    import_contacts(store, first, now=T0)
    later = T0.replace(hour=10)
    second = write(tmp_path, "second.csv", "id,first_name,plan,score\nc1,Anita,,7\nc3,Cy,free,1\n")
    report = import_contacts(store, second, now=later)
    assert (report.created, report.updated) == (1, 1)
    stored = contacts(store)
    assert stored["c1"].email == "a@x.test"  # column absent: kept
    assert stored["c1"].first_name == "Anita"  # column present: overwritten
    # Merged, plan cleared; a column of numbers is read as numbers (no schema).
    assert stored["c1"].attributes == {"city": "Manila", "score": 7}
    assert stored["c1"].created_at == T0 and stored["c1"].updated_at == later
    assert stored["c2"].first_name == "Bob" and stored["c2"].updated_at == T0  # untouched
    assert stored["c3"].attributes == {"plan": "free", "score": 1}


def test_bad_rows_are_reported_by_line_column_and_reason_and_nothing_is_written(
    store: Store, tmp_path: Path, schema_file: Path
) -> None:
    people = write(
        tmp_path,
        "people.csv",
        f"{HEADER}\n"
        "c1,ana@x.test,,Ana,,Asia/Manila,en,,Manila,100,1,\n"
        "c2,not-an-email,12345,Bob,,Europe/Pariss,en,,Cebu,lots,1.5,\n"
        ",c@x.test,,,,,,,,,,\n",
    )
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, people, schema=schema_file)
    problems = {(p.row, p.column): p.reason for p in caught.value.problems}
    assert set(problems) == {
        (3, "email"),
        (3, "phone"),
        (3, "timezone"),
        (3, "budget_max"),
        (3, "lead_score"),
        (4, "id"),
    }
    assert "not an email address" in problems[(3, "email")]
    assert 'did you mean "Europe/Paris"' in problems[(3, "timezone")]
    assert "'lots' is not a number" in problems[(3, "budget_max")]
    assert "not an integer" in problems[(3, "lead_score")]
    assert "required" in problems[(4, "id")]
    assert str(caught.value.problems[0]).startswith(f'{people}:3: column "email":')
    # Nothing written: no contact, not even the tenant or its schema.
    assert count(store, Contact) == 0
    assert store.tenant_ids() == []


@pytest.mark.parametrize(
    ("written", "fixed"),
    [("+05:30", None), ("UTC+5", '"Etc/GMT-5" is UTC+05:00'), ("gmt-3", '"Etc/GMT+3" is UTC-03:00'),
     ("GMT+5:30", None), ("-0800", '"Etc/GMT+8" is UTC-08:00')],
)  # fmt: skip
def test_an_offset_for_a_time_zone_is_told_to_name_the_place(
    store: Store, tmp_path: Path, written: str, fixed: str | None
) -> None:
    """`UTC+5` is not "UTC" misspelt: the closest name would send five hours off (the
    checker says the same of a campaign's `timezone`, tests/test_checker.py)."""
    people = write(tmp_path, "people.csv", f"id,email,timezone\nc1,a@x.test,{written}\n")
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, people)
    (problem,) = caught.value.problems
    assert "an offset, not a time zone" in problem.reason
    assert "did you mean" not in problem.reason
    assert (fixed in problem.reason) if fixed else ("Etc/GMT" not in problem.reason)
    assert count(store, Contact) == 0


def test_skip_invalid_writes_the_good_rows_and_reports_the_rest(
    store: Store, tmp_path: Path, schema_file: Path
) -> None:
    people = write(
        tmp_path,
        "people.csv",
        "id,email,budget_max\nc1,a@x.test,1\nc2,oops,2\nc3,c@x.test,three\nc4,d@x.test,4\n",
    )
    report = import_contacts(store, people, schema=schema_file, skip_invalid=True)
    assert report.written == 2 and report.skipped == 2
    assert [(p.row, p.column) for p in report.problems] == [(3, "email"), (4, "budget_max")]
    assert sorted(contacts(store)) == ["c1", "c4"]


def test_skip_invalid_types_columns_by_the_rows_it_writes(store: Store, tmp_path: Path) -> None:
    # Without a schema a column is read by its cells; the skipped row's `n/a` would make
    # the good rows' budgets text, so `budget_max >= 500` would match none of them.
    people = write(
        tmp_path,
        "people.csv",
        "id,email,budget_max,vip\nc1,a@x.test,900,true\nc2,oops,n/a,maybe\nc3,c@x.test,500,false\n",
    )
    report = import_contacts(store, people, skip_invalid=True)
    assert report.written == 2 and [(p.row, p.column) for p in report.problems] == [(3, "email")]
    with store.session() as session:
        stored = dict(session.execute(select(Contact.id, Contact.attributes)).all())
    assert stored == {
        "c1": {"budget_max": 900, "vip": True},
        "c3": {"budget_max": 500, "vip": False},
    }


def test_header_problems_reject_the_file_even_with_skip_invalid(
    store: Store, tmp_path: Path, schema_file: Path
) -> None:
    people = write(tmp_path, "people.csv", "id,email,ctiy,email\nc1,a@x.test,Manila,a@x.test\n")
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, people, schema=schema_file, skip_invalid=True)
    reasons = {(p.row, p.column): p.reason for p in caught.value.problems}
    assert reasons[(1, "email")] == "appears twice in the header"
    assert 'did you mean "city"' in reasons[(1, "ctiy")]
    no_id = write(tmp_path, "no_id.csv", "email\na@x.test\n")
    with pytest.raises(InvalidInput, match="needs an id column"):
        import_contacts(store, no_id)
    bad_name = write(tmp_path, "bad_name.csv", "id,First Name\nc1,Ana\n")
    with pytest.raises(InvalidInput, match='did you mean "first_name"'):
        import_contacts(store, bad_name)
    assert count(store, Contact) == 0


HINT = "(--skip-invalid writes the good rows and reports the rest)"


@pytest.mark.parametrize(
    ("command", "name", "text", "hinted"),
    [
        # A bad header refuses the file even with --skip-invalid: no hint to use it.
        ("contacts", "people.csv", "id,Email,phone\nc1,a@x.test,+15551234567\nc2,b@x.test,12ab\n",
         False),
        ("contacts", "people.csv", "id,email\nc1,a@x.test\nc2,nope\n", True),
        # In JSON Lines the first line is a row like any other: it was taken for a header.
        ("events", "events.jsonl", '{"contact": "c1", "name": "x"}\n', True),
        ("events", "events.csv", "contact,name\n", False),  # the file itself is refused
    ],
)  # fmt: skip
def test_skip_invalid_is_suggested_only_where_it_would_write_the_good_rows(
    tmp_path: Path,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    command: str,
    name: str,
    text: str,
    hinted: bool,
) -> None:
    path = write(tmp_path, name, text)
    verb = "import" if command == "contacts" else "push"
    assert main([command, verb, str(path), "--database", store_url]) == 1
    assert (HINT in capsys.readouterr().err) is hinted
    if hinted:  # and it does what the hint says
        main([command, verb, str(path), "--database", store_url, "--skip-invalid"])
        assert "skipped:" in capsys.readouterr().err


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_csv_separated_by_what_a_spreadsheet_writes_is_read(
    store: Store, tmp_path: Path, separator: str
) -> None:
    """Excel in a European locale writes `;` whatever its CSV format is called, so the old
    refusal's hint ("export it comma-delimited") left such a user stuck: a header of one
    column holding the separator says how the file is separated, and it is read so. A cell
    holding the separator is quoted, as spreadsheets write it: a list stays a list."""
    rows = [
        ["id", "email", "first_name", "budget_max", "areas"],
        ["c1", "a@x.test", "Ana", "500000", '"Makati;BGC"'],
        ["c2", "b@x.test", "Bo", "1200.50", "Cebu"],
    ]
    text = "".join(separator.join(row) + "\r\n" for row in rows)
    people = write(tmp_path, "people.csv", "\ufeff" + text)
    import_contacts(store, people)
    stored = contacts(store)
    assert sorted(stored) == ["c1", "c2"]
    assert (stored["c1"].email, stored["c1"].first_name) == ("a@x.test", "Ana")
    assert stored["c1"].attributes == {"budget_max": 500000, "areas": ["Makati", "BGC"]}
    assert stored["c2"].attributes == {"budget_max": 1200.5, "areas": ["Cebu"]}
    # A row of another width is still its own problem, named by line.
    short = write(tmp_path, "short.csv", text + separator.join(["c3", "c@x.test"]) + "\n")
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, short)
    assert caught.value.problems == [Problem(str(short), 4, None, "2 cells, the header has 5")]
    # A one-column file whose column merely holds no separator is still read.
    ids = write(tmp_path, "ids.csv", "id\nc9\n")
    import_contacts(store, ids)
    assert count(store, Contact) == 3


def test_a_bracketed_trunk_zero_after_the_country_code_is_left_out(
    store: Store, tmp_path: Path
) -> None:
    """British and German numbers are written `+44 (0)20 7946 0958`: the 0 is dialled only
    inside the country. Dropping the brackets alone stored +4402079460958, a number no SMS
    reaches; the trunk 0 goes with them. Other brackets (`+1 (415) ...`) keep their digits."""
    people = write(
        tmp_path,
        "people.csv",
        "id,phone\n"
        "uk,+44 (0)20 7946 0958\n"
        "de,0049(0)30 1234567\n"
        "fr,+33 (0) 1 23 45 67 89\n"
        "us,+1 (415) 555-0100\n",
    )
    import_contacts(store, people)
    with store.session() as session:
        phones = {c.id: c.phone for c in session.scalars(select(Contact))}
    assert phones == {
        "uk": "+442079460958",
        "de": "+49301234567",
        "fr": "+33123456789",
        "us": "+14155550100",
    }


def test_malformed_files_are_rejected_with_their_line(store: Store, tmp_path: Path) -> None:
    ragged = write(tmp_path, "ragged.csv", "id,email\nc1,a@x.test\nc2,b@x.test,extra\n")
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, ragged)
    assert caught.value.problems == [Problem(str(ragged), 3, None, "3 cells, the header has 2")]
    broken = write(tmp_path, "broken.jsonl", '{"id": "c1"}\n{"id": "c2",\n[1, 2]\n')
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, broken)
    assert [(p.row, p.reason.split(":")[0]) for p in caught.value.problems] == [
        (2, "invalid JSON"),
        (3, "expected a JSON object"),
    ]
    with pytest.raises(InvalidInput, match="no such file"):
        import_contacts(store, tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match=r"use \.csv or \.jsonl"):
        import_contacts(store, write(tmp_path, "people.xlsx", ""))
    with pytest.raises(InvalidInput, match="empty"):
        import_contacts(store, write(tmp_path, "empty.csv", ""))
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("id,first_name\nc1,Ana\nc2,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match="not UTF-8") as caught:
        import_contacts(store, latin)
    # The line of the first such byte (Excel's Windows-1252 `é`), and how to save it.
    (problem,) = caught.value.problems
    assert problem.row == 3 and "byte 0xe9" in problem.reason and "CSV UTF-8" in problem.reason
    assert count(store, Contact) == 0


def test_duplicate_ids_in_one_file_are_an_error(store: Store, tmp_path: Path) -> None:
    people = write(tmp_path, "people.csv", "id,email\nc1,a@x.test\nc2,b@x.test\nc1,c@x.test\n")
    with pytest.raises(
        InvalidInput, match=r"people.csv:4: column \"id\": duplicate id 'c1' \(also on line 2\)"
    ):
        import_contacts(store, people)


def test_jsonl_contacts_with_nested_attributes_and_json_types(
    store: Store, tmp_path: Path, schema_file: Path
) -> None:
    people = jsonl(
        tmp_path,
        "people.jsonl",
        [
            {"id": "c1", "email": "a@x.test", "tags": ["vip"], "city": "Manila"},
            {
                "id": 2,
                "attributes": {"budget_max": 300000, "areas": ["BGC"], "email_verified": True},
            },
        ],
    )
    report = import_contacts(store, people, schema=schema_file)
    assert report.written == 2
    stored = contacts(store)
    assert stored["c1"].tags == ["vip"] and stored["c1"].attributes == {"city": "Manila"}
    assert stored["2"].attributes == {
        "budget_max": 300000,
        "areas": ["BGC"],
        "email_verified": True,
    }
    wrong = jsonl(
        tmp_path,
        "wrong.jsonl",
        [{"id": "c3", "areas": "BGC", "email_verified": "maybe"}, {"id": "c4", "areas": [1]}],
    )
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, wrong, schema=schema_file)
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "email_verified"),
        (2, "areas"),
    ]


def test_a_name_is_the_text_a_csv_cell_would_hold(store: Store, tmp_path: Path) -> None:
    """One rule for names, CSV or JSON: a number is the text of its digits (JSON 4.5 was
    refused while 42 was kept); true/false is no name in JSON and is refused, naming the
    row and field, with nothing written. A CSV cell is text, kept as written."""
    csv = write(tmp_path, "names.csv", "id,first_name,last_name\nc1,42,4.5\nc2,true,Cruz\n")
    assert import_contacts(store, csv).written == 2
    same = jsonl(
        tmp_path,
        "names.jsonl",
        [{"id": "j1", "first_name": 42, "last_name": 4.5}, {"id": "j2", "first_name": -7}],
    )
    assert import_contacts(store, same).written == 2
    stored = contacts(store)
    names = {cid: (c.first_name, c.last_name) for cid, c in stored.items()}
    assert names == {
        "c1": ("42", "4.5"), "c2": ("true", "Cruz"), "j1": ("42", "4.5"), "j2": ("-7", None),
    }  # fmt: skip
    flags = jsonl(
        tmp_path,
        "flags.jsonl",
        [{"id": "j3", "first_name": "Ana"}, {"id": "j4", "first_name": "Bo", "last_name": True}],
    )
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, flags)
    assert [(p.row, p.column, p.reason) for p in caught.value.problems] == [
        (2, "last_name", "expected a name as text, got true"),
    ]
    assert set(contacts(store)) == {"c1", "c2", "j1", "j2"}


def test_a_number_attribute_keeps_an_integer_exact(store: Store, tmp_path: Path) -> None:
    """A `number` went through a float: 9007199254740993 was stored as ...992, so
    `account = 9007199254740993` matched nobody."""
    schema = write(tmp_path, "s.yaml", "attributes:\n  account: number\n  rank: integer\n")
    import_contacts(
        store, jsonl(tmp_path, "p.jsonl", [{"id": "j1", "account": 2**53 + 1}]), schema=schema
    )
    import_contacts(
        store, write(tmp_path, "p.csv", "id,account\nc1,9007199254740993\nc2,-12\nc3,2.5\n")
    )
    accounts = {cid: row.attributes["account"] for cid, row in contacts(store).items()}
    assert accounts == {"j1": 2**53 + 1, "c1": 2**53 + 1, "c2": -12, "c3": 2.5}
    assert [type(accounts[cid]) for cid in ("j1", "c1", "c2")] == [int] * 3


def test_schema_numbers_are_written_in_ascii_digits(store: Store, tmp_path: Path) -> None:
    """Python's int() and float() take `1_000` and other scripts' digits; a spreadsheet
    means neither as a number, so each is a problem of its row and column."""
    schema = write(tmp_path, "s.yaml", "attributes:\n  rank: integer\n  price: number\n")
    good = write(tmp_path, "g.csv", "id,rank,price\ng1,+7,1.5e3\ng2,-0,.5\n")
    import_contacts(store, good, schema=schema)
    written = {cid: row.attributes for cid, row in contacts(store).items()}
    assert written == {"g1": {"rank": 7, "price": 1500.0}, "g2": {"rank": 0, "price": 0.5}}
    lines = ["id,rank,price", "b1,1_000,1", "b2,\u0661\u0662,2", "b3,3,1_0.5", "b4,4,\u0663.5"]
    bad = write(tmp_path, "b.csv", "\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, bad, schema=schema)
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (2, "rank"), (3, "rank"), (4, "price"), (5, "price"),
    ]  # fmt: skip
    assert set(contacts(store)) == {"g1", "g2"}


def test_an_integer_beyond_64_bits_is_named_and_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    """The store's JSON columns hold 64-bit integers: a longer one (a JSON Lines attribute
    or event property, an `integer` cell, a dict given to the API) failed the whole write
    with a TypeError from the JSON encoder, not a problem naming its line and column."""
    schema = write(tmp_path, "s.yaml", "attributes:\n  rank: integer\n")
    import_contacts(store, write(tmp_path, "ok.csv", "id,rank\nc1,1\n"), schema=schema)
    tries: list[Any] = [
        lambda: import_contacts(store, jsonl(tmp_path, "p.jsonl", [{"id": "j1", "n": 10**30}])),
        lambda: import_contacts(store, write(tmp_path, "f.jsonl", '{"id": "j2", "n": -1e400}\n')),
        lambda: import_contacts(store, write(tmp_path, "p.csv", f"id,rank\nc2,{2**63}\n")),
        lambda: upsert_contact_dicts(store, [{"id": "d1", "rank": -(2**63) - 1}]),
        lambda: upsert_contact_dicts(store, [{"id": "d2", "n": 2**64}], tenant_id="other"),
        lambda: push_events(
            store,
            jsonl(tmp_path, "e.jsonl", [
                {"contact": "c1", "name": "viewed", "at": "2026-11-01T00:00:00Z",
                 "properties": {"price": 10**20}}
            ]),
        ),
    ]  # fmt: skip
    for attempt in tries:
        with pytest.raises(InvalidInput) as caught:
            attempt()
        [problem] = caught.value.problems
        assert problem.row == 1 or problem.row == 2
        assert "beyond the integers Cadence stores" in problem.reason or (
            "-1e400 is beyond the numbers Cadence stores" in problem.reason
        )
    assert set(contacts(store)) == {"c1"} and contacts(store, "other") == {}
    assert count(store, Event) == 0


def test_a_lone_surrogate_escape_is_named_and_changes_nothing(store: Store, tmp_path: Path) -> None:
    """`"\\ud800"` is valid JSON syntax for no text at all: Python's decoder made a string
    no encoder writes, and the import failed with a traceback from the store's."""
    import_contacts(store, write(tmp_path, "ok.csv", "id,city\nc1,Cebu\n"))
    people = write(
        tmp_path, "p.jsonl", '{"id": "c2", "city": "Cebu"}\n{"id": "c3", "city": "\\ud800x"}\n'
    )
    line = {"contact": "c1", "name": "viewed", "at": "2026-11-01T00:00:00Z", "properties": {}}
    events = write(tmp_path, "e.jsonl", json.dumps(line).replace("{}", '{"\\udc00": 1}') + "\n")
    for attempt in (lambda: import_contacts(store, people), lambda: push_events(store, events)):
        with pytest.raises(InvalidInput, match="lone surrogate"):
            attempt()
    assert set(contacts(store)) == {"c1"} and count(store, Event) == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2**70, "an integer beyond the integers Cadence stores"),
        (float("inf"), "inf is beyond the numbers Cadence stores"),
        (float("nan"), "NaN is not a number JSON has"),
        ("\ud800", "lone surrogate"),
        (["ok", "\udc00"], "lone surrogate"),
    ],
)
def test_python_api_rows_the_store_cannot_hold_are_named_and_change_nothing(
    store: Store, value: Any, reason: str
) -> None:
    """Rows given as Python objects are never read by the JSON reader that names these:
    the store's encoder failed the whole call with a TypeError (an integer beyond 64 bits,
    a lone surrogate), or wrote an infinity as null and lost it."""
    upsert_contact_dicts(store, [{"id": "c1", "email": "a@x.test"}])
    with pytest.raises(InvalidInput) as contact_problem:
        upsert_contact_dicts(store, [{"id": "c2"}, {"id": "c3", "score": value}])
    with pytest.raises(InvalidInput) as event_problem:
        push_event_dicts(
            store,
            [{"contact": "c1", "name": "viewed", "at": "2026-11-01T00:00:00Z",
              "properties": {"listing": {"price": value}}}],
        )  # fmt: skip
    for caught, column in ((contact_problem, "score"), (event_problem, "properties")):
        (problem,) = caught.value.problems
        assert problem.column == column and reason in problem.reason, problem
    assert set(contacts(store)) == {"c1"} and count(store, Event) == 0


def test_the_tenants_stored_schema_checks_later_imports(
    store: Store, tmp_path: Path, schema_file: Path
) -> None:
    import_contacts(store, write(tmp_path, "a.csv", "id,city\nc1,Manila\n"), schema=schema_file)
    with pytest.raises(InvalidInput, match='did you mean "budget_max"'):
        import_contacts(store, write(tmp_path, "b.csv", "id,budget_mx\nc2,1\n"))


def test_python_api_upserts_dicts(store: Store) -> None:
    report = upsert_contact_dicts(
        store, [{"id": "c1", "email": "a@x.test", "city": "Manila"}], tenant_id="acme", now=T0
    )
    assert report.written == 1 and contacts(store, "acme")["c1"].attributes == {"city": "Manila"}
    with pytest.raises(InvalidInput) as caught:
        upsert_contact_dicts(store, [{"id": "c2"}, {"id": "c3", "timezone": "Mars/Olympus"}])
    assert [(p.source, p.row, p.column) for p in caught.value.problems] == [
        ("<rows>", 2, "timezone")
    ]


def test_bulk_import_uses_a_handful_of_statements(store: Store, tmp_path: Path) -> None:
    lines = "".join(f"c{i},user{i}@x.test,City{i % 7}\n" for i in range(1200))
    people = write(tmp_path, "many.csv", "id,email,city\n" + lines)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        report = import_contacts(store, people)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert report.written == 1200
    assert count(store, Contact) == 1200
    assert len(statements) < 20, statements  # chunks of 500, never one per row


def test_events_are_pushed_and_deduplicated(store: Store, tmp_path: Path) -> None:
    upsert_contact_dicts(store, [{"id": "c1"}, {"id": "c2"}], now=T0)
    events = jsonl(
        tmp_path,
        "events.jsonl",
        [
            {
                "contact": "c1",
                "name": "property_viewed",
                "at": "2026-12-01T09:00:00Z",
                "properties": {"price": 450000},
            },
            {"contact": "c2", "name": "clicked", "at": "2026-12-01T17:30:00+08:00", "id": "e-1"},
            {
                "name": "property_listed",
                "at": "2026-12-02T08:00:00",
                "properties": {"city": "Cebu"},
            },
        ],
    )
    report = push_events(store, events, now=T0)
    assert (report.written, report.duplicates) == (3, 0)
    again = push_event_dicts(
        store, [{"contact": "c2", "name": "clicked", "at": "2026-12-01T09:30:00Z", "id": "e-1"}]
    )
    assert (again.written, again.duplicates) == (0, 1)
    with store.session() as session:
        rows = list(session.scalars(select(Event).order_by(Event.at)))
    assert [(row.contact_id, row.name, row.at.isoformat()) for row in rows] == [
        ("c1", "property_viewed", "2026-12-01T09:00:00+00:00"),
        ("c2", "clicked", "2026-12-01T09:30:00+00:00"),
        (None, "property_listed", "2026-12-02T08:00:00+00:00"),
    ]
    assert rows[0].properties == {"price": 450000}


def test_bad_events_are_reported_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    events = jsonl(
        tmp_path,
        "events.jsonl",
        [
            {"contact": "c1", "name": "opened", "at": "2026-12-01T09:00:00Z"},
            {"contact": "ghost", "name": "opened", "at": "2026-12-01T09:00:00Z"},
            {"contact": "c1", "name": "Opened Email", "at": "tomorrow", "propertys": {}},
            {"contact": "c1", "at": "2026-12-01T09:00:00Z", "properties": [1]},
        ],
    )
    with pytest.raises(InvalidInput) as caught:
        push_events(store, events)
    problems = {(p.row, p.column): p.reason for p in caught.value.problems}
    assert set(problems) == {
        (2, "contact"),
        (3, "propertys"),
        (3, "name"),
        (3, "at"),
        (4, "name"),
        (4, "properties"),
    }  # all at once: the unknown contact among the rows that do not parse
    assert 'did you mean "properties"' in problems[(3, "propertys")]
    assert count(store, Event) == 0
    fixed = jsonl(
        tmp_path,
        "fixed.jsonl",
        [
            {"contact": "c1", "name": "opened", "at": "2026-12-01T09:00:00Z"},
            {"contact": "ghost", "name": "opened", "at": "2026-12-01T09:00:00Z"},
        ],
    )
    with pytest.raises(InvalidInput, match="no contact 'ghost' in tenant 'default'"):
        push_events(store, fixed)
    assert count(store, Event) == 0
    report = push_events(store, fixed, skip_invalid=True)
    assert report.written == 1 and [p.row for p in report.problems] == [2]
    assert count(store, Event) == 1


def test_an_event_field_of_the_wrong_type_is_named_for_its_type(
    store: Store, tmp_path: Path
) -> None:
    """A name given as a number was reported as missing ("an event name is required")."""
    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    at = "2026-12-01T09:00:00Z"
    events = jsonl(tmp_path, "events.jsonl", [
        {"contact": "c1", "name": 5, "at": at},
        {"contact": "c1", "name": ["opened"], "at": at},
        {"contact": "c1", "name": "opened", "at": at, "id": {"k": 1}},
        {"contact": "c1", "name": None, "at": at},
    ])  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        push_events(store, events)
    assert [(p.row, p.column, p.reason) for p in caught.value.problems] == [
        (1, "name", "expected the event name as a string, got int"),
        (2, "name", "expected the event name as a string, got list"),
        (3, "id", "expected an event id as a string, got dict"),
        (4, "name", "an event name is required"),
    ]
    assert count(store, Event) == 0


def test_tenants_never_see_each_others_rows(store: Store, tmp_path: Path) -> None:
    upsert_contact_dicts(store, [{"id": "c1", "first_name": "Acme's"}], tenant_id="acme")
    upsert_contact_dicts(store, [{"id": "c1", "first_name": "Globex's"}], tenant_id="globex")
    assert contacts(store, "acme")["c1"].first_name == "Acme's"
    assert contacts(store, "globex")["c1"].first_name == "Globex's"
    upsert_contact_dicts(store, [{"id": "only_acme"}], tenant_id="acme")
    # An event for another tenant's contact is refused, and writes nothing.
    with pytest.raises(InvalidInput, match="no contact 'only_acme' in tenant 'globex'"):
        push_event_dicts(
            store,
            [{"contact": "only_acme", "name": "opened", "at": "2026-12-01T09:00:00Z"}],
            tenant_id="globex",
        )
    push_event_dicts(
        store, [{"contact": "c1", "name": "opened", "at": "2026-12-01T09:00:00Z"}], tenant_id="acme"
    )
    with store.session() as session:
        globex_events = session.scalars(select(Event).where(Event.tenant_id == "globex")).all()
    assert globex_events == []
    assert sorted(contacts(store, "globex")) == ["c1"]


@pytest.mark.parametrize("tenant", ["", "t" * 65])
def test_an_import_to_a_tenant_id_no_store_takes_writes_nothing(
    store: Store, tmp_path: Path, store_url: str, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cadence contacts import --tenant ""` wrote the contacts under an empty tenant id,
    then said "contacts written, but their campaigns did not start" when the engine, which
    checks ids, refused the tenant (on PostgreSQL a 65-character id failed on the column)."""
    people = write(tmp_path, "people.csv", "id,email\nc1,a@example.test\n")
    with pytest.raises(StoreError, match="tenant id must be 1 to 64 characters"):
        import_contacts(store, people, tenant_id=tenant)
    with pytest.raises(StoreError, match="tenant id must be 1 to 64 characters"):
        upsert_contact_dicts(store, [{"id": "c1"}], tenant_id=tenant)
    assert (count(store, Contact), count(store, Tenant)) == (0, 0)
    code = main(["contacts", "import", str(people), "--tenant", tenant, "--database", store_url])
    assert code == 1
    assert capsys.readouterr().err.startswith("error: tenant id must be 1 to 64 characters")
    assert (count(store, Contact), count(store, Tenant)) == (0, 0)


def test_the_database_refuses_cross_tenant_references(store: Store) -> None:
    from sqlalchemy.exc import IntegrityError

    upsert_contact_dicts(store, [{"id": "c1"}], tenant_id="acme")
    store.ensure_tenant("globex")
    with pytest.raises(IntegrityError), store.session() as session:
        session.add(
            Event(tenant_id="globex", contact_id="c1", name="opened", at=T0, received_at=T0)
        )


def test_schema_files_are_validated_with_a_clear_message(tmp_path: Path) -> None:
    good = load_schema(
        write(tmp_path, "s.json", '{"attributes": {"n": "int", "l": "list[string]"}}')
    )
    assert [spec.type.value for spec in good.attributes.values()] == ["integer", "list"]
    with pytest.raises(SchemaError, match=r"attributes\.score\.type"):
        load_schema(write(tmp_path, "bad_type.yaml", "attributes:\n  score: money\n"))
    with pytest.raises(SchemaError, match="standard contact field"):
        load_schema(write(tmp_path, "reserved.yaml", "attributes:\n  email: string\n"))
    with pytest.raises(SchemaError, match="lowercase letters"):
        load_schema(write(tmp_path, "name.yaml", "attributes:\n  Lead Score: integer\n"))
    with pytest.raises(SchemaError, match=r"broken\.yaml:3:1: invalid YAML"):
        load_schema(write(tmp_path, "broken.yaml", "attributes:\n  a: [string\n"))
    with pytest.raises(SchemaError, match="choices are only allowed"):
        load_schema(
            write(tmp_path, "choices.yaml", "attributes:\n  n: {type: integer, choices: [a]}\n")
        )
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "missing.yaml")


def test_required_attributes(store: Store, tmp_path: Path) -> None:
    schema = write(tmp_path, "s.yaml", "attributes:\n  city: {type: string, required: true}\n")
    people = write(tmp_path, "p.csv", "id,city\nc1,Manila\nc2,\n")
    with pytest.raises(InvalidInput, match=r'p.csv:3: column "city": required by the schema'):
        import_contacts(store, people, schema=schema)


def _attributes(store: Store) -> dict[str, dict[str, Any]]:
    with store.session() as session:
        return dict(session.execute(select(Contact.id, Contact.attributes)).all())


def test_required_attribute_left_out_of_an_update_keeps_the_stored_one(
    store: Store, tmp_path: Path
) -> None:
    schema = write(
        tmp_path, "s.yaml", "attributes:\n  plan: {type: string, required: true}\n  city: string\n"
    )
    import_contacts(store, write(tmp_path, "a.csv", "id,plan\nc1,pro\n"), schema=schema)
    # An update of another column, as a file and as JSON lines, keeps the stored plan.
    import_contacts(store, write(tmp_path, "b.csv", "id,city\nc1,Cebu\n"))
    import_contacts(store, write(tmp_path, "b.jsonl", '{"id": "c1", "city": "Davao"}\n'))
    assert _attributes(store) == {"c1": {"plan": "pro", "city": "Davao"}}
    # A new contact must still give it; clearing it is refused; each refusal writes nothing.
    for name, text, line in (
        ("new.csv", "id,city\nc1,Iloilo\nc2,Cebu\n", 3),
        ("clear.csv", "id,plan\nc1,\n", 2),
        ("clear.jsonl", '{"id": "c1", "city": "Iloilo"}\n{"id": "c1x", "plan": null}\n', 2),
    ):
        with pytest.raises(InvalidInput, match=rf'{name}:{line}: column "plan": required'):
            import_contacts(store, write(tmp_path, name, text))
        assert _attributes(store) == {"c1": {"plan": "pro", "city": "Davao"}}


def test_required_attribute_a_stored_contact_lacks_is_still_required(
    store: Store, tmp_path: Path
) -> None:
    import_contacts(store, write(tmp_path, "a.csv", "id,city\nc1,Cebu\n"))
    schema = write(
        tmp_path, "s.yaml", "attributes:\n  plan: {type: string, required: true}\n  city: string\n"
    )
    with pytest.raises(InvalidInput, match=r'b.csv:2: column "plan": required by the schema'):
        import_contacts(store, write(tmp_path, "b.csv", "id,city\nc1,Davao\n"), schema=schema)
    report = import_contacts(
        store, write(tmp_path, "c.csv", "id,city\nc1,Davao\n"), schema=schema, skip_invalid=True
    )
    assert report.written == 0 and [problem.row for problem in report.problems] == [2]
    assert _attributes(store) == {"c1": {"city": "Cebu"}}


@pytest.fixture
def cli_env(store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the CLI at the test's (migrated) database."""
    monkeypatch.setenv("CADENCE_DATABASE_URL", store_url)
    yield store_url


def test_cli_imports_contacts_and_pushes_events(
    cli_env: str,
    store: Store,
    tmp_path: Path,
    schema_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    people = write(tmp_path, "people.csv", "id,email,city\nc1,a@x.test,Manila\nc2,nope,Cebu\n")
    assert main(["contacts", "import", str(people), "--schema", str(schema_file)]) == 1
    err = capsys.readouterr().err
    assert f"error: {people}:3: column \"email\": 'nope' is not an email address" in err
    assert "nothing was written" in err and "--skip-invalid" in err
    assert count(store, Contact) == 0

    assert main(["contacts", "import", str(people), "--skip-invalid", "--tenant", "acme"]) == 0
    out, err = capsys.readouterr()
    assert "1 contacts written to tenant 'acme'; 1 new, 0 updated; 1 row(s) skipped" in out
    assert "skipped:" in err

    events = jsonl(tmp_path, "e.jsonl", [{"contact": "c1", "name": "opened", "at": "2026-12-01"}])
    assert main(["events", "push", str(events), "--tenant", "acme"]) == 0
    assert "1 events written to tenant 'acme'" in capsys.readouterr().out
    assert main(["events", "push", str(events)]) == 1  # c1 is acme's, not default's
    assert "no contact 'c1' in tenant 'default'" in capsys.readouterr().err

    assert main(["contacts", "import", str(tmp_path / "missing.csv")]) == 2
    assert "cadence contacts import: " in capsys.readouterr().err
    assert main(["events", "push", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    bad_schema = write(tmp_path, "bad.yaml", "attributes: [1, 2]\n")
    assert main(["contacts", "import", str(people), "--schema", str(bad_schema)]) == 1
    assert "error:" in capsys.readouterr().err


def test_reports_name_the_ids_and_hooks_run_inside_the_transaction(store: Store) -> None:
    from sqlalchemy.orm import Session

    from cadence.engine.store.importer import ImportReport

    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    seen: list[tuple[list[str], list[str], int]] = []

    def on_contacts(session: Session, report: ImportReport) -> None:
        in_transaction = session.scalar(select(func.count()).select_from(Contact))
        seen.append((report.created_ids, report.updated_ids, int(in_transaction or 0)))

    report = upsert_contact_dicts(store, [{"id": "c2"}, {"id": "c1"}], on_written=on_contacts)
    # The hook's report names the ids of the chunk it follows; the import's counts them.
    assert (report.created, report.updated) == (1, 1)
    assert seen == [(["c2"], ["c1"], 2)]

    def fail(session: Session, report: ImportReport) -> None:
        raise RuntimeError("the engine could not fire a trigger")

    with pytest.raises(RuntimeError):
        upsert_contact_dicts(store, [{"id": "c3"}], on_written=fail)
    with pytest.raises(RuntimeError):
        push_event_dicts(
            store, [{"contact": "c1", "name": "opened", "at": "2026-12-01"}], on_written=fail
        )
    assert sorted(contacts(store)) == ["c1", "c2"] and count(store, Event) == 0  # rolled back

    names: list[str] = []
    push_event_dicts(
        store,
        [{"contact": "c1", "name": "opened", "at": "2026-12-01"}],
        on_written=lambda session, report: names.extend(e.name for e in report.events),
    )
    assert names == ["opened"]


CONTACT_CREATED = """
template welcome email { subject "Welcome" body "<p>Hi</p>" }
campaign welcome_series { on contact_created { send email welcome } }
"""


def deploy_and_launch(url: str, source: str) -> None:
    """Deploy the campaigns of `source` to the store at `url` and launch each."""
    import trio

    from cadence.dsl.compiler import compile_workspace
    from cadence.dsl.loader import load_text
    from cadence.engine.runtime import Engine

    compiled = compile_workspace(load_text(source, "t.cadence"))

    async def deploy() -> None:
        async with Engine(url) as engine:
            await engine.deploy(compiled)
            for campaign in compiled:
                await engine.launch(campaign.name)

    trio.run(deploy)


def test_cli_import_enters_new_contacts_into_running_campaigns(
    cli_env: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cadence.engine.store.models import Enrollment

    deploy_and_launch(cli_env, CONTACT_CREATED)
    people = write(tmp_path, "people.csv", "id,email\nc1,a@x.test\nc2,b@x.test\n")
    assert main(["contacts", "import", str(people)]) == 0
    assert main(["contacts", "import", str(people)]) == 0  # updates: nobody enters twice
    capsys.readouterr()
    with store.session() as session:
        enrolled = sorted(session.scalars(select(Enrollment.contact_id)))
    assert enrolled == ["c1", "c2"]


EVENT_TRIGGERED = """
template details email { subject "Details" body "<p>x</p>" }
when property_viewed send email details
"""


def test_cli_pushed_events_fire_their_triggers(
    cli_env: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cadence.engine.store.models import Enrollment

    deploy_and_launch(cli_env, EVENT_TRIGGERED)
    upsert_contact_dicts(store, [{"id": "c1"}, {"id": "c2"}])
    events = jsonl(
        tmp_path,
        "e.jsonl",
        [
            {"contact": "c1", "name": "property_viewed", "at": "2026-12-01T09:00:00Z", "id": "e1"},
            {"contact": "c2", "name": "opened", "at": "2026-12-01T09:00:00Z"},
        ],
    )
    assert main(["events", "push", str(events)]) == 0
    assert "2 events written" in capsys.readouterr().out
    assert main(["events", "push", str(events)]) == 0  # e1 is already there
    assert "1 already present" in capsys.readouterr().out
    with store.session() as session:
        enrolled = sorted(session.scalars(select(Enrollment.contact_id)))
    assert enrolled == ["c1"]
    assert count(store, Event) == 3


def test_a_csv_without_a_schema_reads_whole_columns_of_numbers_and_booleans(
    store: Store, tmp_path: Path
) -> None:
    """Numbers and true/false are read as such when a whole column is; the rest stays text:
    zip codes with leading zeros, a column mixing numbers and words, and contact fields."""
    people = tmp_path / "people.csv"
    people.write_text(
        "id,phone,lead_score,budget,vip,zip,note,big\n"
        "a,+4915100000001,75,1200.50,true,02134,12,12345678901234567\n"
        "b,+4915100000002,-3,800,FALSE,10115,n/a,1\n"
        "c,,,,,,,\n",
        "utf-8",
    )
    import_contacts(store, people)
    with store.session() as session:
        found = {c.id: (c.phone, c.attributes) for c in session.scalars(select(Contact))}
    assert found["a"] == (
        "+4915100000001",
        {"lead_score": 75, "budget": 1200.5, "vip": True, "zip": "02134", "note": "12",
         "big": "12345678901234567"},
    )  # fmt: skip
    assert found["b"][1] == {
        "lead_score": -3, "budget": 800.0, "vip": False, "zip": "10115", "note": "n/a", "big": "1"
    }  # fmt: skip
    assert found["c"][1] == {}
    assert isinstance(found["b"][1]["budget"], float)


def test_a_csv_without_a_schema_reads_a_column_of_semicolon_lists_as_lists(
    store: Store, tmp_path: Path
) -> None:
    """`areas` written Manila;Cebu, as the docs write lists, is a list, and so is a lone
    `Cebu` in that column, so `event.city in contact.areas` can match; a column of JSON
    lists too. A column without `;` or `[` stays text, and a broken JSON list keeps its
    column text rather than failing the import."""
    people = tmp_path / "people.csv"
    people.write_text(
        "id,areas,saved,city,odd\n"
        'a,Manila; Cebu,"[""p1"", ""p2""]",Manila,[oops\n'
        "b,Cebu,p3,Cebu;,x\n"
        "c,,,,\n",
        "utf-8",
    )
    import_contacts(store, people)
    with store.session() as session:
        found = {c.id: c.attributes for c in session.scalars(select(Contact))}
    assert found["a"] == {
        "areas": ["Manila", "Cebu"], "saved": ["p1", "p2"], "city": ["Manila"], "odd": "[oops"
    }  # fmt: skip
    assert found["b"] == {"areas": ["Cebu"], "saved": ["p3"], "city": ["Cebu"], "odd": "x"}
    assert found["c"] == {}


def test_an_event_time_may_end_in_a_lowercase_z(store: Store, tmp_path: Path) -> None:
    """RFC 3339 allows `z` for `Z`; some exporters write it."""
    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    events = jsonl(
        tmp_path,
        "events.jsonl",
        [{"contact": "c1", "name": "clicked", "at": "2026-12-01t09:30:00z"}],
    )
    assert push_events(store, events, now=T0).written == 1
    with store.session() as session:
        (row,) = session.scalars(select(Event))
    assert row.at.isoformat() == "2026-12-01T09:30:00+00:00"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_jsonl_file_is_a_problem_of_its_line_and_nothing_is_written(
    store: Store, tmp_path: Path, constant: str
) -> None:
    """Python's decoder takes NaN and the infinities; JSON has none and no store keeps them
    (the HTTP service refuses them too)."""
    upsert_contact_dicts(store, [{"id": "c1"}], now=T0)
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"contact": "c1", "name": "opened", "at": "2026-12-01T09:00:00Z"}\n'
        f'{{"contact": "c1", "name": "bought", "at": "2026-12-01T10:00:00Z",'
        f' "properties": {{"amount": {constant}}}}}\n',
        "utf-8",
    )
    with pytest.raises(InvalidInput) as caught:
        push_events(store, events)
    ((row, reason),) = [(p.row, p.reason) for p in caught.value.problems]
    assert row == 2
    assert reason == f"invalid JSON: {constant} is not a number JSON has (write null, or a string)"
    assert count(store, Event) == 0
    people = tmp_path / "people.jsonl"
    people.write_text(f'{{"id": "c2", "lead_score": {constant}}}\n', "utf-8")
    with pytest.raises(InvalidInput):
        import_contacts(store, people)
    assert count(store, Contact) == 1


SEGMENT_ENTER = """
template hello email { subject "Hi" body "<p>Hi</p>" }
segment hot = lead_score >= 50
campaign hot_leads { on segment_enter hot { send email hello } }
"""


def test_cli_import_of_an_update_enters_the_segment_it_moves_the_contact_into(
    cli_env: str, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import that raises a stored contact's score enters them in `on segment_enter`, as
    `Engine.import_contacts` does: the command line only let new contacts in."""
    from cadence.engine.store.models import Enrollment

    deploy_and_launch(cli_env, SEGMENT_ENTER)
    cold = write(tmp_path, "cold.csv", "id,email,lead_score\nc1,a@x.test,10\nc2,b@x.test,60\n")
    assert main(["contacts", "import", str(cold)]) == 0
    hot = write(tmp_path, "hot.csv", "id,lead_score\nc1,70\nc2,80\n")
    assert main(["contacts", "import", str(hot)]) == 0
    capsys.readouterr()
    with store.session() as session:
        enrolled = sorted(session.scalars(select(Enrollment.contact_id)))
    assert enrolled == ["c1", "c2"]  # c1 entered on the update; c2, already in, not twice


def test_a_nul_character_is_a_problem_of_its_line_and_column_on_both_stores(
    store: Store, tmp_path: Path
) -> None:
    """PostgreSQL refuses U+0000 in text and JSON: an import holding one failed whole with a
    DataError naming no line (`--skip-invalid` too), where SQLite stored it."""
    upsert_contact_dicts(store, [{"id": "c1"}])
    cells = "id,first_name,city\nc2,Ana,Ma\x00nila\nc3,B\x00en,Cebu\n"
    people = write(tmp_path, "people.csv", cells)
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, people)
    assert [(p.row, p.column) for p in caught.value.problems] == [(2, "city"), (3, "first_name")]
    assert all("NUL character" in p.reason for p in caught.value.problems)
    lines = jsonl(tmp_path, "people.jsonl", [{"id": "c\u00004"}, {"id": "c5", "tags": ["a\u0000"]}])
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, lines)
    assert [(p.row, p.column) for p in caught.value.problems] == [(1, "id"), (2, "tags")]
    report = import_contacts(store, people, skip_invalid=True)
    assert (report.written, report.skipped) == (0, 2)
    events = jsonl(
        tmp_path,
        "events.jsonl",
        [
            {"contact": "c1", "name": "viewed", "at": "2026-11-01T00:00:00Z",
             "properties": {"note": "a\u0000b"}},
            {"contact": "c1", "name": "viewed", "at": "2026-11-01T00:00:00Z", "id": "e\u00001"},
            {"contact": "c1", "name": "viewed", "at": "2026-11-01T00:00:00Z", "source": "\u0000"},
        ],
    )  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        push_events(store, events)
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "properties"), (2, "id"), (3, "source")
    ]  # fmt: skip
    assert set(contacts(store)) == {"c1"} and count(store, Event) == 0


def test_a_spreadsheet_s_empty_unnamed_columns_are_ignored(store: Store, tmp_path: Path) -> None:
    """Excel writes columns it once formatted as trailing `,,` with no name: the whole file
    was refused for "an empty column name". Empty throughout, they are ignored; a value
    under one would be lost, so that still refuses the file, naming where it is."""
    people = write(tmp_path, "people.csv", "id,email,,\r\nc1,a@x.test,,\r\nc2,b@x.test,,\r\n")
    report = import_contacts(store, people)
    assert (report.written, report.problems) == (2, [])
    assert contacts(store)["c1"].attributes == {}
    lost = write(tmp_path, "lost.csv", "id,email,,\nc3,c@x.test,,\nc4,d@x.test,,note\n")
    with pytest.raises(InvalidInput) as caught:
        import_contacts(store, lost, skip_invalid=True)
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (1, None)
    assert problem.reason == "column 4 has no name in the header, but line 3 has a value in it"
    assert set(contacts(store)) == {"c1", "c2"}
