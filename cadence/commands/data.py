"""`cadence contacts import` and `cadence events push`: people and what they did, into the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadence.commands.options import add_tenant, refuse_paths
from cadence.errors import CadenceError

# The store pulls in SQLAlchemy and Trio: `cadence --help` and `cadence check` should not pay
# for them, so the handlers import them when they run.
if TYPE_CHECKING:
    from cadence.engine.store import Store
    from cadence.engine.store.importer import ImportReport

MAX_PROBLEMS_SHOWN = 50


def _common(parser: argparse.ArgumentParser) -> None:
    """Options every data command takes: tenant, database, --skip-invalid."""
    add_tenant(parser, "to write to")
    parser.add_argument(
        "--database",
        metavar="URL",
        help="database URL (default $CADENCE_DATABASE_URL, else sqlite:///cadence.db)",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="write the good rows and report the bad ones (default: write nothing if any is bad)",
    )


def register(subparsers: Any) -> None:
    """Add the `contacts` and `events` command families."""
    contacts = subparsers.add_parser("contacts", help="manage contacts")
    contact_commands = contacts.add_subparsers(dest="contacts_command", metavar="COMMAND")
    contacts.set_defaults(handler=lambda _args: _usage(contacts))
    importer = contact_commands.add_parser(
        "import",
        help="upsert contacts from a .csv or .jsonl file",
        description=(
            "Upsert contacts by id. CSV columns: id,email,phone,first_name,last_name,timezone,"
            "locale,tags, then one per attribute; lists as a;b;c or a JSON list. JSON Lines: "
            "one object per line with the same keys. An empty cell clears that field."
        ),
    )
    importer.add_argument("file", help="contacts file (.csv or .jsonl)")
    importer.add_argument(
        "--schema", metavar="FILE", help="contact schema (.yaml/.json) typing the attributes"
    )
    _common(importer)
    importer.set_defaults(handler=_import_contacts)

    events = subparsers.add_parser("events", help="record events")
    event_commands = events.add_subparsers(dest="events_command", metavar="COMMAND")
    events.set_defaults(handler=lambda _args: _usage(events))
    pusher = event_commands.add_parser(
        "push",
        help="store events from a .jsonl file",
        description=(
            'One JSON object per line: {"contact": "c1", "name": "property_viewed", '
            '"at": "2026-12-01T09:00:00Z", "properties": {...}}; optional "id" (dedupe key) '
            'and "source". The contact must exist.'
        ),
    )
    pusher.add_argument("file", help="events file (.jsonl)")
    _common(pusher)
    pusher.set_defaults(handler=_push_events)


def _usage(parser: argparse.ArgumentParser) -> int:
    """A family named without its command: show its help, exit 2."""
    parser.print_help(sys.stderr)
    return 2


def _print_problems(report_problems: list[Any], *, written: bool) -> None:
    """List problems on stderr, at most MAX_PROBLEMS_SHOWN of them."""
    for problem in report_problems[:MAX_PROBLEMS_SHOWN]:
        print(f"{'skipped' if written else 'error'}: {problem}", file=sys.stderr)
    if len(report_problems) > MAX_PROBLEMS_SHOWN:
        print(f"... and {len(report_problems) - MAX_PROBLEMS_SHOWN} more", file=sys.stderr)


def _report(report: ImportReport) -> int:
    """Print what an import wrote and skipped; 0 as the user asked for what happened."""
    _print_problems(report.problems, written=True)
    print(report.summary())
    return 0


def _run(args: argparse.Namespace, kind: str) -> int:
    """Open the store and run one import, turning bad input into messages and exit code 1."""
    command = "cadence contacts import" if kind == "contacts" else "cadence events push"
    schema = getattr(args, "schema", None)
    refused = refuse_paths(command, (Path(args.file), None if schema is None else Path(schema)))
    if refused is not None:
        return refused
    from cadence.engine.collector import bulk_collection
    from cadence.engine.store import StoreError
    from cadence.engine.store.records import InvalidInput
    from cadence.engine.store.schema import SchemaError

    try:
        # The command owns the process: what start-up made lives until exit, and a chunk's
        # rows die with it, so the collector need not walk them again and again (about a
        # tenth of an import's CPU at 200,000 rows, docs/performance.md).
        with bulk_collection():
            report = _import(args, kind, schema)
    except InvalidInput as exc:
        _print_problems(exc.problems, written=False)
        print(
            f"{len(exc.problems)} problem(s) in {args.file}; nothing was written", file=sys.stderr
        )
        if exc.skippable and not args.skip_invalid:
            print("(--skip-invalid writes the good rows and reports the rest)", file=sys.stderr)
        return 1
    except (SchemaError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CadenceError as exc:
        print(f"error: the {kind} were not stored: {exc}", file=sys.stderr)
        return 1
    return _report(report)


def _import(args: argparse.Namespace, kind: str, schema: str | None) -> ImportReport:
    """Write the file into a new tenant directly, else through the engine (triggers fire)."""
    import trio

    from cadence.engine.store import Store
    from cadence.engine.store.importer import import_contacts, push_events

    with Store.open(args.database) as store:
        if not _tenant_exists(store, args.tenant):
            # A tenant not stored yet runs no campaign, so nothing is set off; and the
            # engine creates its tenant on opening, which a bad file must not leave.
            if kind == "contacts":
                return import_contacts(
                    store,
                    args.file,
                    schema=args.schema,
                    tenant_id=args.tenant,
                    skip_invalid=args.skip_invalid,
                )
            return push_events(
                store, args.file, tenant_id=args.tenant, skip_invalid=args.skip_invalid
            )
    # Written and set off in one transaction, chunk by chunk: a contact's update can move it
    # into an `on segment_enter` segment or to another timezone, and events fire the
    # triggers they match.
    return trio.run(
        _import_through_engine,
        kind,
        args.database,
        args.tenant,
        args.file,
        schema,
        args.skip_invalid,
    )


def _tenant_exists(store: Store, tenant: str) -> bool:
    """Whether the store holds `tenant`; a StoreError for an id no store takes."""
    from cadence.engine.store.database import check_tenant_id
    from cadence.engine.store.models import Tenant

    check_tenant_id(tenant)
    with store.session() as session:
        return session.get(Tenant, tenant) is not None


async def _import_through_engine(
    kind: str,
    database_url: str | None,
    tenant: str,
    path: str,
    schema: str | None,
    skip_invalid: bool,
) -> ImportReport:
    """Import through the engine: what the contacts or events set off (`on contact_created`,
    segment entry, a moved timezone, event triggers) commits with them, as
    `Engine.import_contacts` and `Engine.push_events_file` promise."""
    from cadence.engine.runtime import Engine  # the DSL and runtime load only when needed

    async with Engine(database_url, tenant=tenant) as engine:
        if kind == "contacts":
            return await engine.import_contacts(path, schema=schema, skip_invalid=skip_invalid)
        return await engine.push_events_file(path, skip_invalid=skip_invalid)


def _import_contacts(args: argparse.Namespace) -> int:
    """`cadence contacts import FILE`."""
    return _run(args, "contacts")


def _push_events(args: argparse.Namespace) -> int:
    """`cadence events push FILE`."""
    return _run(args, "events")
