"""`cadence webhooks ingest brevo|infobip FILE.json`: a provider's webhook body, into the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cadence.commands.data import _usage
from cadence.commands.options import add_tenant
from cadence.errors import CadenceError

# The parsers are light, but ingesting goes through the engine (SQLAlchemy, Trio): the
# handler imports them when it runs, so `cadence --help` does not pay for them.
PROVIDERS = ("brevo", "infobip")
MAX_SHOWN = 50


def register(subparsers: Any) -> None:
    """Add the `webhooks` command family."""
    webhooks = subparsers.add_parser("webhooks", help="ingest what providers report back")
    commands = webhooks.add_subparsers(dest="webhooks_command", metavar="COMMAND")
    webhooks.set_defaults(handler=lambda _args: _usage(webhooks))
    ingest = commands.add_parser(
        "ingest",
        help="store a provider's webhook body (delivery reports, bounces, opens, replies)",
        description=(
            "Read one webhook body as the provider posts it (Brevo: an event object or a list "
            'of them; Infobip: {"results": [...]}) and store it through the engine: send-log '
            "outcomes, and events (delivered, bounced, complained, unsubscribed, opened, "
            "clicked, replied) that fire triggers and suppressions. Reports about unknown "
            "sends or numbers are listed, not written; a malformed body writes nothing."
        ),
    )
    ingest.add_argument("provider", choices=PROVIDERS, help="who sent the webhook")
    ingest.add_argument("file", help="the webhook body (.json); - reads standard input")
    add_tenant(ingest, "to write to")
    ingest.add_argument(
        "--database",
        metavar="URL",
        help="database URL (default $CADENCE_DATABASE_URL, else sqlite:///cadence.db)",
    )
    ingest.add_argument(
        "--format", choices=("text", "json"), default="text", help="how to print the result"
    )
    ingest.set_defaults(handler=_ingest)


def _read(path: str) -> tuple[Any, str | None]:
    """The decoded body, or the reason it cannot be read."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a folder, not a file"
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def _ingest(args: argparse.Namespace) -> int:
    """`cadence webhooks ingest PROVIDER FILE`."""
    payload, problem = _read(args.file)
    if problem is not None:
        print(
            f"cadence webhooks ingest: {args.file}: {problem}; nothing was written", file=sys.stderr
        )
        return 1 if Path(args.file).is_file() or args.file == "-" else 2
    import trio

    from cadence.adapters.inbound import InvalidWebhook
    from cadence.engine.store import StoreError

    try:
        result = trio.run(_run, args.database, args.tenant, args.provider, payload)
    except InvalidWebhook as exc:
        for item in exc.problems[:MAX_SHOWN]:
            print(f"error: {args.file}: {item}", file=sys.stderr)
        if len(exc.problems) > MAX_SHOWN:
            print(f"... and {len(exc.problems) - MAX_SHOWN} more", file=sys.stderr)
        print(
            f"{len(exc.problems)} problem(s) in {args.file}; nothing was written", file=sys.stderr
        )
        return 1
    except (StoreError, CadenceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    for item in result.unmatched[:MAX_SHOWN]:
        print(f"unmatched: {item}", file=sys.stderr)
    for position, what in result.ignored[:MAX_SHOWN]:
        print(f"ignored: {position}: {what}", file=sys.stderr)
    print(result.summary())
    return 0


async def _run(database_url: str | None, tenant: str, provider: str, payload: Any) -> Any:
    """Ingest through the engine, so that triggers and suppressions fire."""
    from cadence.engine.runtime import Engine

    async with Engine(database_url, tenant=tenant) as engine:
        return await engine.ingest_webhook(provider, payload)
