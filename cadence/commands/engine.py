"""Engine commands: dry-run, deploy, the campaign lifecycle, status, serve, run and demo.

Every command but `dry-run` and `demo` works on the store named by `CADENCE_DATABASE_URL`
(default: the SQLite file `cadence.db` in the current folder).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cadence.commands.options import (
    DURATION_TEXT,
    add_default_cap,
    add_tenant,
    poll_seconds,
    refuse_missing_store,
    refuse_paths,
    seed_arg,
)
from cadence.errors import CadenceError, DiagnosticError

# The engine pulls in SQLAlchemy and Trio; `cadence --help` and `cadence check` should not
# pay for that, so the handlers import it when they run.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from cadence.adapters.config import AdapterSettings
    from cadence.adapters.standins import Standins
    from cadence.adapters.web import ServiceSettings
    from cadence.dsl.compiled import CompiledCampaign
    from cadence.dsl.symbols import CapLimit
    from cadence.engine.analytics import CampaignReport
    from cadence.engine.dryrun import DryRunReport
    from cadence.engine.runtime import DeliveryResult, Engine, OutgoingMessage, RunStats, Sink

T = TypeVar("T")

# What `serve` and `run` say, on starting and in their last line, when sends are only recorded.
NO_PROVIDER = "no channel provider is configured"

DEFAULT_ASSUME = "opened=0.3,clicked=0.05,replied=0.01,converted=0.005"


def register(subparsers: Any) -> None:
    """Add the engine's subcommands."""
    p = subparsers.add_parser(
        "dry-run",
        help="simulate campaigns on a simulated clock",
        description=(
            "Run the campaigns on a simulated clock against a throwaway store: nothing is"
            " sent. --assume draws, with the seeded generator, what sends get back."
            " delivered=R and bounced=R are the shares of the emails, SMS and WhatsApp"
            " messages that their provider reports delivered, or bounced (a hard bounce,"
            " which suppresses the address): by default every one is delivered; delivered"
            " alone bounces the rest, bounced alone delivers the rest, and with both the"
            " rest is never reported. Opens, clicks, replies and conversions happen only on"
            " delivered sends, each rate a share of those, as the report's rates are: a"
            " click or a reply after an open, a conversion after a click."
        ),
    )
    p.add_argument("file", type=Path, help="a .cadence file")
    p.add_argument("--contacts", type=Path, required=True, help="contacts, .csv or .jsonl")
    p.add_argument("--events", type=Path, help="events, .jsonl with `at` on every line")
    p.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        help="contact schema (.yaml/.json) typing the contacts' attributes, as for import",
    )
    p.add_argument("--start", help="simulated start, ISO 8601 (default: now, UTC)")
    p.add_argument("--until", default="30d", help="how long to simulate (default 30d)")
    p.add_argument(
        "--assume",
        metavar="RATES",
        help=f"rates of delivery (delivered=0.98) and engagement, e.g. {DEFAULT_ASSUME}",
    )
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed for --assume (default 0)")
    p.add_argument(
        "--contact", help="show what this contact receives, and when, with rendered subjects"
    )
    p.add_argument(
        "--company", metavar="JSON_OR_FILE", help="tenant/company variables (name, currency ...)"
    )
    p.add_argument(
        "--agents",
        metavar="NAMES",
        help="the salespeople `assign agent round_robin` rotates through, in order:"
        " ana,ben (or ana=ana@acme.test,ben with emails); default none",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per send, then a summary")
    add_default_cap(p)
    p.set_defaults(handler=_dry_run)

    p = subparsers.add_parser(
        "deploy",
        help="compile files and store their campaigns",
        description=(
            "Check and compile the files together, as one workspace with their imports (a"
            " name declared in two of them is an error), and store each campaign as its"
            " current version: the same content is the same version. Enrollments in flight"
            " stay on the version they started on unless --migrate moves them. A file with"
            " errors deploys nothing."
        ),
    )
    p.add_argument("files", nargs="+", type=Path, help="the .cadence files")
    p.add_argument(
        "--migrate",
        action="store_true",
        help="move running and paused enrollments onto the new versions, by node name",
    )
    add_tenant(p)
    p.set_defaults(handler=_deploy)

    for move, text in (
        ("launch", "start a campaign: enroll its audience"),
        ("pause", "hold every enrollment of a campaign where it is"),
        ("resume", "continue a paused campaign"),
        ("cancel", "stop a campaign for good"),
        ("archive", "archive a finished or cancelled campaign"),
    ):
        p = subparsers.add_parser(move, help=text)
        p.add_argument("name", help="the campaign's name")
        add_tenant(p)
        p.set_defaults(handler=_lifecycle, move=move)

    p = subparsers.add_parser(
        "approve",
        help="approve a campaign's current version so that it may launch",
        description=(
            "Record that WHO approved the campaign's current version, or the version waiting"
            " for approval if a deploy to the live campaign left one (it becomes current)."
            " A campaign with"
            " `approval required`, or without an `approval` setting and a launch audience"
            " above 1,000 contacts, launches only once its current version is approved;"
            " deploying a new version needs a new approval."
        ),
    )
    p.add_argument("name", help="the campaign's name")
    p.add_argument("--by", required=True, metavar="WHO", help="who approves it")
    p.add_argument("--note", metavar="TEXT", help="why, or what was checked")
    add_tenant(p)
    p.set_defaults(handler=_approve)

    p = subparsers.add_parser("clone", help="copy a campaign under a new name, as a draft")
    p.add_argument("name")
    p.add_argument("new_name")
    add_tenant(p)
    p.set_defaults(handler=_clone)

    p = subparsers.add_parser("status", help="campaigns with their enrollment counts")
    add_tenant(p)
    p.set_defaults(handler=_status)

    p = subparsers.add_parser(
        "report",
        help="campaign performance: sent, delivered, opened, clicked, converted, cost, ROI",
        description=(
            "What each campaign's sends did, from the store: sent, delivered (not bounced,"
            " failed or left soft-bounced), opened, clicked, replied, converted, unsubscribed"
            " and complained (spam reports; rates over delivered), bounced (over sent), cost,"
            " revenue, cost per conversion and ROI (docs/analytics.md)."
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="campaigns (default: every one)")
    p.add_argument(
        "--by",
        choices=("campaign", "template", "variant", "type"),
        default="campaign",
        help="one row per campaign (default), or per template or A/B variant, or per"
        " campaign type (broadcast, drip ...: the campaigns of that type together)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per campaign")
    add_tenant(p)
    p.set_defaults(handler=_report)

    p = subparsers.add_parser("serve", help="run the engine on the real clock")
    p.add_argument("--until-idle", action="store_true", help="process what is due now, then exit")
    p.add_argument(
        "--poll", type=poll_seconds, default=5.0, help="seconds between looks (default 5)"
    )
    _http_option(p)
    add_default_cap(p)
    add_tenant(p, "to serve")
    p.set_defaults(handler=_serve)

    p = subparsers.add_parser("run", help="deploy and launch files, then serve")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument(
        "--approved-by",
        metavar="WHO",
        help="approve each deployed campaign's version as WHO before launching it",
    )
    p.add_argument("--until-idle", action="store_true", help="process what is due now, then exit")
    p.add_argument("--poll", type=poll_seconds, default=5.0)
    _http_option(p)
    add_default_cap(p)
    add_tenant(p)
    p.set_defaults(handler=_run)

    p = subparsers.add_parser(
        "demo",
        help="run the examples on a fast simulated clock, sending to loopback stand-ins",
        description=(
            "Import the example contacts and events, deploy every example campaign and run "
            "them on a simulated clock. Every send really goes out through the channel "
            "adapters to stand-ins for Brevo (email), Infobip (SMS, WhatsApp) and a webhook "
            "receiver on 127.0.0.1; no provider configuration is read or needed."
        ),
    )
    p.add_argument(
        "--examples", type=Path, default=Path("examples"), help="folder (default ./examples)"
    )
    p.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    p.add_argument(
        "--seed", type=seed_arg, default=7, help="random seed for engagement (default 7)"
    )
    p.set_defaults(handler=_demo)


def _http_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help=(
            "also serve the HTTP service there (tracking links, unsubscribes, provider"
            " webhooks, events, inbox; docs/service.md)"
        ),
    )


def _guard(action: Callable[[], Awaitable[T]]) -> T | int:
    """Run an async action; bad input becomes a message on stderr and exit code 1."""
    import trio

    from cadence.engine.collector import bulk_collection
    from cadence.engine.store.records import InvalidInput

    try:
        # The command owns the process: what start-up made lives until exit.
        with bulk_collection():
            return trio.run(action)
    except DiagnosticError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic.render(), file=sys.stderr)
        return 1
    except (CadenceError, InvalidInput) as exc:
        print(f"cadence: {exc}", file=sys.stderr)
        return 1


def with_engine(
    use: Callable[[Engine], Awaitable[int | None]], tenant: str, *, existing: str | None = None
) -> int:
    """Run `use` with the tenant's engine on the configured store, guarded as every command is.

    The store-backed commands (the lifecycle, approve, clone, status, agents) differ only in
    what they ask the engine and print; `use` returns the exit code (None: 0). `existing`
    names a command that works only on a store that holds something (it reads, or acts on a
    deployed campaign): a missing SQLite file is refused (exit 2), not created empty, and so
    is a tenant the store does not have (`_require_tenant`).
    """
    from cadence.engine.runtime import Engine

    if existing is not None and (refused := refuse_missing_store(existing)) is not None:
        return refused

    async def go() -> int:
        if existing is not None:
            _require_tenant(tenant)
        async with Engine(tenant=tenant) as engine:
            return await use(engine) or 0

    return int(_guard(go))


def _require_tenant(tenant: str) -> None:
    """Refuse a tenant the store does not have, before the engine would make it: a command
    run with a mistyped `--tenant` says so and writes nothing, instead of leaving an empty
    tenant behind and printing an empty table. The default tenant, which no one types, is
    never refused: on a store without it (an empty PostgreSQL database, or one holding
    other tenants only) it reads as no campaigns."""
    from cadence.engine.store.database import Store, StoreError
    from cadence.engine.tenants import DEFAULT_TENANT
    from cadence.errors import did_you_mean

    if tenant == DEFAULT_TENANT:
        return
    with Store.open() as store:
        known = store.tenant_ids()
        if tenant not in known:
            hint = did_you_mean(tenant, known)
            raise StoreError(
                f"no tenant {tenant!r} in the store at {store.url}"
                + (f"; {hint}" if hint else f" (its tenants: {', '.join(known) or 'none'})")
            )


# ---------------------------------------------------------------------------- dry-run


def _dry_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cadence.commands.console import table_console
    from cadence.dsl.compiler import compile_paths
    from cadence.dsl.parser import MAX_DURATION_SECONDS, duration_seconds
    from cadence.engine.clock import parse_instant
    from cadence.engine.dryrun import (
        DryRunError,
        dry_run,
        failed_sends,
        parse_agents,
        parse_assume,
    )

    try:
        company = _company(args.company)
        # `--start ""` (a variable that was not set) is no instant; only no option means now.
        start = parse_instant(args.start) if args.start is not None else dt.datetime.now(dt.UTC)
        # The whole text must be a duration: `1mo` is not one minute, nor `1.5d` five days.
        text = args.until.strip()
        seconds = duration_seconds(text) if DURATION_TEXT.fullmatch(text) else 0
        if seconds <= 0:
            raise DryRunError(
                f"--until: {args.until!r} is not a duration such as 30d, 12h or 1d12h"
                " (units s, m, h, d, w; no months: write 30d)"
            )
        if seconds > MAX_DURATION_SECONDS:
            raise DryRunError(
                f"--until: {args.until!r} is longer than ten years, the longest duration"
                " Cadence takes"
            )
        until = dt.timedelta(seconds=seconds)
        assume = parse_assume(args.assume)
        agents = parse_agents(args.agents) if args.agents is not None else []
    except ValueError as exc:  # from parse_instant: the only step here that raises one
        print(f"cadence dry-run: --start: {exc}", file=sys.stderr)
        return 2
    except DryRunError as exc:
        print(f"cadence dry-run: {exc}", file=sys.stderr)
        return 2
    refused = refuse_paths("cadence dry-run", (args.file, args.contacts, args.events, args.schema))
    if refused is not None:
        return refused
    console = Console(stderr=True)

    async def go() -> DryRunReport | int:
        campaigns = compile_paths([args.file])
        horizon = start + until
        progress = Progress(
            TextColumn("simulating"), BarColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), console=console, transient=True, disable=args.json,
        )  # fmt: skip
        total = until.total_seconds()
        with progress:
            task = progress.add_task("", total=total)

            def report(now: dt.datetime, stats: RunStats) -> None:
                progress.update(
                    task,
                    completed=min(total, (now - start).total_seconds()),
                    description=f"{now:%Y-%m-%d %H:%M} · {stats.steps} steps · {stats.sends} sends",
                )

            try:
                return await dry_run(
                    campaigns, args.contacts, events=args.events, start=start, until=until,
                    assume=assume, seed=args.seed, on_progress=report, company=company,
                    render=False if args.contact is None else {args.contact},
                    schema=args.schema, performance=not args.json, default_cap=args.default_cap,
                    agents=agents,
                )  # fmt: skip
            except DryRunError as exc:  # an option the inputs contradict (--contact, --agents)
                print(f"cadence dry-run: {exc}", file=sys.stderr)
                return 2
        del horizon

    result = _guard(go)
    if isinstance(result, int):
        return result
    for unread in result.unread_events:
        print(f"cadence dry-run: warning: {unread.warning(args.events)}", file=sys.stderr)
    for late in result.late_starts:
        print(f"cadence dry-run: warning: {late.warning(result.start)}", file=sys.stderr)
    for failed in failed_sends(result.sends):
        print(f"cadence dry-run: warning: {failed.warning()}", file=sys.stderr)
    for approval in result.approvals:
        print(f"cadence dry-run: note: {approval.warning()}", file=sys.stderr)
    for over in result.over_limit:
        print(f"cadence dry-run: note: {over.warning()}", file=sys.stderr)
    for agentless in result.no_agents:
        print(f"cadence dry-run: note: {agentless.warning()}", file=sys.stderr)
    if args.json:
        for line in result.json_lines():
            print(line)
        return 0
    _print_report(result, args.contact, table_console())
    return 0


def _company(value: str | None) -> dict[str, Any]:
    """`--company`: a JSON object inline or in a file, read as every command reads one."""
    from cadence.commands.templates import UsageError, json_object_arg
    from cadence.engine.dryrun import DryRunError

    try:
        return json_object_arg(value, "company")
    except UsageError as exc:
        raise DryRunError(str(exc)) from None


def _print_report(report: DryRunReport, contact: str | None, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cadence.engine.describe import most_first, pause_text

    summary = report.summary()
    timeline = Table(title="Timeline (first 40 sends)", show_lines=False)
    for column in ("at (UTC)", "contact", "campaign", "node", "channel", "template", "variant"):
        timeline.add_column(column)
    for send in report.sends[:40]:
        timeline.add_row(
            f"{send.at:%Y-%m-%d %H:%M}", send.contact, send.campaign, send.node or "",
            send.channel, send.template or "", send.variant or "",
        )  # fmt: skip
    console.print(timeline)
    funnel = Table(title="Funnel: enrollments that reached each node")
    funnel.add_column("campaign")
    funnel.add_column("node")
    funnel.add_column("contacts", justify="right")
    for campaign, nodes in report.funnel.items():
        for node, count in nodes.items():
            funnel.add_row(campaign, node, str(count))
    console.print(funnel)
    totals = Table(title="Totals")
    totals.add_column("what")
    totals.add_column("count", justify="right")
    totals.add_row("sends", str(summary["sends"]))
    # The sends per template, indented under the sends they break down.
    for template, count in summary["by_template"].items():
        totals.add_row(f"  {template}", str(count))
    failed = sum(1 for send in report.sends if send.error is not None)
    if failed:
        totals.add_row("  [red]of which fail[/red]", f"[red]{failed}[/red]")
    # What the gates stopped (a cap, consent, suppression ...), each reason's share under
    # them: without it a capped campaign showed its send step reached and nothing sent.
    if report.skipped:
        totals.add_row("not sent", str(len(report.skipped)))
        for reason, count in most_first(Counter(skip.reason for skip in report.skipped)):
            totals.add_row(f"  {escape(reason)}", str(count))
    for key in ("enrolled", "completed", "exited"):
        totals.add_row(key, str(summary[key]))
    totals.add_row("still active", str(report.active))
    if report.paused:
        totals.add_row("held (campaign paused)", str(report.paused))
    console.print(totals)
    for name, details in report.paused_campaigns.items():
        console.print(f"{name} paused: {pause_text(details)}")
    if report.ab_tests:
        console.print(_ab_table(report.ab_tests, "A/B tests decided in this run"))
    if report.performance:
        console.print(
            _report_table(report.performance, "campaign", "Performance with simulated engagement")
        )
    if contact is not None:
        mine = [s for s in report.sends if s.contact == contact]
        table = Table(title=f"What {contact} receives")
        columns = ("at (UTC)", "campaign", "channel", "template", "subject / text", "outcome")
        for column in columns:
            table.add_column(column)
        rows: list[tuple[dt.datetime, tuple[str, ...]]] = []
        for send in mine:
            if send.render_error is not None:
                shown = f"[red]render error: {escape(send.render_error)}[/red]"
            else:
                shown = escape(send.subject or "")
            outcome = escape(", ".join(send.outcome))
            if send.error is not None and send.error != send.render_error:
                outcome = f"[red]{outcome}: {escape(send.error)}[/red]"
            elif send.error is not None:  # the reason is in the subject column already
                outcome = f"[red]{outcome}[/red]"
            rows.append(
                (send.at, (send.campaign, send.channel, send.template or "", shown, outcome))
            )
        # What the gates stopped, with why (suppressed, a cap, no consent ...) as its
        # outcome, so "receives nothing" is not a mystery. Nothing was rendered for it.
        not_sent = [s for s in report.skipped if s.contact == contact]
        for skip in not_sent:
            rows.append(
                (skip.at, (skip.campaign, skip.channel, skip.template or skip.node, "",
                           f"[yellow]not sent: {escape(skip.reason)}[/yellow]"))
            )  # fmt: skip
        for at, cells in sorted(rows, key=lambda row: row[0]):
            table.add_row(f"{at:%Y-%m-%d %H:%M}", *cells)
        if not mine:
            console.print(f"{contact} receives nothing in this run")
        if rows:
            console.print(table)
        # Where each of the contact's journeys stands at the end, and why it stopped.
        journeys = [journey for journey in report.journeys if journey.contact == contact]
        for journey in journeys:
            console.print(
                f"{contact} in {escape(journey.campaign)}: {journey.status} (last step"
                f" {journey.at:%Y-%m-%d %H:%M} UTC, {escape(journey.node or 'start')}:"
                f" {escape(journey.reason)})"
            )
        if not journeys:
            console.print(f"{contact} enters no campaign in this run")


# ---------------------------------------------------------------------------- lifecycle


def _deploy(args: argparse.Namespace) -> int:
    from cadence.dsl.compiler import compile_paths
    from cadence.engine.runtime import Engine

    refused = refuse_paths("cadence deploy", args.files)
    if refused is not None:
        return refused

    async def go() -> int:
        # Compiled before the store is opened: a file with errors leaves no database behind.
        campaigns = compile_paths(args.files)
        async with Engine(tenant=args.tenant) as engine:
            for result in await engine.deploy(campaigns, migrate=args.migrate):
                state = "new version" if result.created else "unchanged"
                if result.moved is not None:
                    state += f"; {result.moved} enrollments moved to it"
                if result.left:
                    # Booked `at` / `every` runs not started yet stay too: a fixed typo in a
                    # scheduled broadcast would otherwise go out as it was, unsaid.
                    state += (
                        f"; {result.left} enrollments stay on the earlier version, scheduled"
                        " runs not started yet included, and send what it says:"
                        " cadence deploy --migrate moves them to this one"
                    )
                if result.finished is not None:
                    state += (
                        f"; {result.name} is {result.finished} and will not run again: to run"
                        f" this version, cadence clone {result.name} NEW_NAME"
                    )
                if result.pending_approval:
                    state += (
                        "; waits for approval, the approved version keeps running:"
                        f" cadence approve {result.name} --by WHO"
                    )
                print(f"{result.name}: {result.version[:12]} ({state})")
        return 0

    return int(_guard(go))


def _lifecycle(args: argparse.Namespace) -> int:
    async def use(engine: Engine) -> None:
        count = await getattr(engine, args.move)(args.name)
        print(f"{args.name}: {args.move} done ({count} enrollments)")

    return with_engine(use, args.tenant, existing=f"cadence {args.move}")


def _approve(args: argparse.Namespace) -> int:
    async def use(engine: Engine) -> None:
        version = await engine.approve(args.name, by=args.by, note=args.note)
        print(f"{args.name}: version {version[:12]} approved by {args.by.strip()}")

    return with_engine(use, args.tenant, existing="cadence approve")


def _clone(args: argparse.Namespace) -> int:
    async def use(engine: Engine) -> None:
        result = await engine.clone(args.name, args.new_name)
        print(f"{result.name}: cloned from {args.name} as a draft ({result.version[:12]})")

    return with_engine(use, args.tenant, existing="cadence clone")


def _status(args: argparse.Namespace) -> int:
    from cadence.commands.console import table_console
    from cadence.engine.describe import pause_text

    async def use(engine: Engine) -> None:
        rows = await engine.status()
        console = table_console()
        console.print(_status_table(rows))
        for row in rows:
            if row.get("pause") is not None:
                console.print(f"{row['name']} is paused: {pause_text(row['pause'])}")
            if row.get("pending_approval"):
                console.print(
                    f"{row['name']}: version {row['pending_approval']} waits for approval"
                    f" (`cadence approve {row['name']} --by WHO`); {row['version']} runs"
                )
        ab_tests = {row["name"]: row["ab_tests"] for row in rows if row["ab_tests"]}
        if ab_tests:
            console.print(_ab_table(ab_tests, "A/B tests decided"))

    return with_engine(use, args.tenant, existing="cadence status")


def _report(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from cadence.commands.console import table_console
    from cadence.engine.describe import most_first

    async def use(engine: Engine) -> None:
        reports = await engine.report(args.names or None)
        if not reports:
            # Only a tenant without campaigns has no report (an unknown name is an error):
            # an empty table read as "nothing sent", also under a mistyped --tenant.
            print(
                f"cadence: tenant {engine.tenant!r} has no campaign yet"
                f" (`cadence deploy FILE --tenant {engine.tenant}` first)",
                file=sys.stderr,
            )
            return
        if args.json:
            for report in reports:
                print(json.dumps(report.as_dict()))
            return
        console = table_console()
        console.print(_report_table(reports, args.by))
        for report in reports:
            for what, counts in (("not sent", report.not_sent), ("failed", report.failed)):
                if counts:
                    reasons = most_first(counts)
                    console.print(
                        f"{escape(report.name)}: {what} {sum(counts.values()):,} ("
                        + ", ".join(f"{escape(reason)}: {count:,}" for reason, count in reasons)
                        + ")"
                    )
        ab_tests = {report.name: report.ab_tests for report in reports if report.ab_tests}
        if args.by == "variant" and ab_tests:
            # The variant rows count the held contacts' winner sends too: the verdicts
            # keep the counts each test was decided on.
            console.print(_ab_table(ab_tests, "A/B tests decided"))

    return with_engine(use, args.tenant, existing="cadence report")


def _report_table(
    reports: Sequence[CampaignReport], by: str, title: str = "Campaign performance"
) -> Table:
    from rich.table import Table

    from cadence.engine.describe import MONEY_COLUMNS, RATED_COUNTS, count_text, money_cells

    table = Table(title=title + ("" if by == "campaign" else f" by {by}"))
    if by == "type":
        return _type_table(table, reports)
    columns = ["campaign"] + ([by] if by != "campaign" else [])
    columns += ["sent", *RATED_COUNTS, *MONEY_COLUMNS]
    for column in columns:
        table.add_column(column, justify="left" if column in ("campaign", by) else "right")
    for report in reports:
        parts = {"campaign": {"": report.total}, "template": report.by_template,
                 "variant": report.by_variant}[by]  # fmt: skip
        for part, metrics in sorted(parts.items()):
            cells = [report.name] + ([part] if by != "campaign" else [])
            cells.append(f"{metrics.sent:,}")
            cells += [count_text(metrics, name) for name in RATED_COUNTS]
            cells += money_cells(metrics)
            table.add_row(*cells)
    return table


def _type_table(table: Table, reports: Sequence[CampaignReport]) -> Table:
    """`report --by type`: one row per campaign type, its campaigns' sends counted together."""
    from cadence.engine.analytics import Metrics
    from cadence.engine.describe import MONEY_COLUMNS, RATED_COUNTS, count_text, money_cells

    by_type: dict[str, tuple[list[str], Metrics]] = {}
    for report in reports:
        names, metrics = by_type.setdefault(report.type, ([], Metrics()))
        names.append(report.name)
        metrics.add(report.total)
    for column in ("type", "campaigns", "sent", *RATED_COUNTS, *MONEY_COLUMNS):
        table.add_column(column, justify="left" if column in ("type", "campaigns") else "right")
    for kind, (names, metrics) in sorted(by_type.items()):
        table.add_row(
            kind, ", ".join(names), f"{metrics.sent:,}",
            *(count_text(metrics, name) for name in RATED_COUNTS), *money_cells(metrics),
        )  # fmt: skip
    return table


def _status_table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    from cadence.engine.describe import rare_states

    table = Table(title="Campaigns")
    rare = rare_states(rows)
    for column in ("campaign", "status", "version", "approval", "active", "completed", "exited",
                   "held", *rare, "sends"):  # fmt: skip
        table.add_column(column)
    for row in rows:
        counts = row["enrollments"]
        table.add_row(
            row["name"], row["status"], row["version"], row["approval"],
            str(counts.get("active", 0)),
            str(counts.get("completed", 0)), str(counts.get("exited", 0)),
            str(counts.get("paused", 0)), *(str(counts.get(state, 0)) for state in rare),
            str(row["sends"]),
        )  # fmt: skip
    return table


def _ab_table(ab_tests: dict[str, list[dict[str, Any]]], title: str) -> Table:
    """Decided A/B tests: winner, each variant's rate with its interval, and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    from cadence.engine.abtest import verdict_text
    from cadence.engine.describe import AB_COLUMNS, ab_rate_lines

    table = Table(title=title)
    for column in AB_COLUMNS:
        table.add_column(column)
    for campaign, tests in ab_tests.items():
        for test in tests:
            table.add_row(
                campaign, test["node"], escape(str(test.get("winner", ""))),
                escape("\n".join(ab_rate_lines(test))), escape(verdict_text(test)),
            )  # fmt: skip
    return table


async def _serve_engine(
    engine: Engine,
    until_idle: bool,
    poll: float,
    http: str | None,
    service: ServiceSettings,
) -> RunStats:
    """Serve until idle, or until SIGINT/SIGTERM stops the loop between batches.

    The first signal lets the batch in hand be delivered and recorded (`Engine.stop`), so
    no send stays leased to this process for a restarted one to wait out; a second one
    cancels at once. With `http`, the HTTP service (configured by `service`) listens there
    in the same nursery, on the same engine; a signal stops both.
    """
    import trio

    from cadence.engine.runtime import RunStats

    stats = RunStats()
    if http is not None:
        from cadence.adapters.web.server import check_bind

        check_bind(http)
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if engine.stopping:
                        nursery.cancel_scope.cancel()
                        return
                    engine.stop()

        nursery.start_soon(watch_signals)
        if http is not None:
            from cadence.adapters.sink import AdapterSink
            from cadence.adapters.web import ServiceApp, serve_http

            # Web versions are rendered as the channel adapters sent them; without adapters
            # (sends only recorded) there is nothing to show.
            views = engine.sink if isinstance(engine.sink, AdapterSink) else None
            app = ServiceApp(
                engine, signer=service.signer(), api_token=service.api_token, views=views,
                public_url=service.public_url,
            )  # fmt: skip
            bound = await nursery.start(serve_http, app, http)
            print(f"cadence: HTTP service on {', '.join(bound)}", file=sys.stderr, flush=True)
            if service.api_token is not None:
                print(
                    f"cadence: dashboard at {bound[0]}/dashboard (the API token is its password)",
                    file=sys.stderr, flush=True,
                )  # fmt: skip
        stats = await engine.serve(until_idle=until_idle, poll=poll)
        nursery.cancel_scope.cancel()
    return stats


@contextlib.asynccontextmanager
async def _service_engine(
    service: ServiceSettings, tenant: str, default_cap: CapLimit | None
) -> AsyncIterator[Engine]:
    """The engine `serve` and `run` use: real channel adapters when a provider is configured,
    with the links `service` makes, under `default_cap` (`--default-cap`).

    With no provider configured (no `CADENCE_SMTP_URL`, `CADENCE_BREVO_API_KEY`,
    `CADENCE_INFOBIP_API_KEY` or webhook settings), sends are recorded, not delivered, and
    a warning says so.
    """
    from cadence.adapters.config import load_settings
    from cadence.adapters.outbound import Outbound
    from cadence.adapters.sink import AdapterSink, StoreContentSource
    from cadence.engine.runtime import Engine, RecordingSink
    from cadence.engine.store import resolve_database_url

    settings = load_settings()
    default = settings.default
    configured = settings.tenants or any(
        (default.smtp, default.brevo, default.infobip, default.webhook)
    )
    if not configured:
        print(
            f"cadence: {NO_PROVIDER} (CADENCE_SMTP_URL, CADENCE_BREVO_API_KEY,"
            " CADENCE_INFOBIP_API_KEY ...): sends are recorded, not delivered",
            file=sys.stderr,
        )
        async with Engine(tenant=tenant, sink=RecordingSink(), default_cap=default_cap) as engine:
            yield engine
        return
    source = StoreContentSource(resolve_database_url(None))
    # In-app inbox messages are delivered into the engine's own store.
    outbound = Outbound(settings, inbox_url=resolve_database_url(None))
    # Signed unsubscribe and tracking links when the service has a public address.
    links = service.links()
    if links is None:
        print(
            "cadence: CADENCE_PUBLIC_URL is not set: messages carry no unsubscribe or tracking"
            " links (docs/service.md)",
            file=sys.stderr,
        )
    try:
        sink = AdapterSink(outbound, source, links=links)
        async with Engine(tenant=tenant, sink=sink, default_cap=default_cap) as engine:
            yield engine
    finally:
        await outbound.aclose()
        source.close()


def _ran_line(verb: str, stats: RunStats, engine: Engine) -> str:
    """What `serve` or `run` did, in one line. With no provider configured the recording
    sink took every send: they were recorded, and none was delivered to anyone. Sends that
    failed for good are counted as `cadence report` counts them (`failed`): without it a
    run whose every send failed read as sending nothing."""
    from cadence.engine.runtime import RecordingSink

    done = f"{verb}: {stats.steps} steps, {stats.sends} sends"
    failed = f", {stats.failed} failed (`cadence report` says why)" if stats.failed else ""
    if isinstance(engine.sink, RecordingSink):
        return f"{done}, {stats.delivered} recorded, not delivered ({NO_PROVIDER}){failed}"
    return f"{done}, {stats.delivered} delivered{failed}"


def _without_sender(campaigns: Sequence[CompiledCampaign], tenant: str) -> list[str]:
    """The campaigns whose emails an email provider will refuse for want of a sender.

    A campaign without `from` sends from the tenant's CADENCE_FROM; with neither, every
    email fails at the provider ("an email needs ... a sender address") and `run` would only
    say `0 delivered`. With no email provider configured, nothing is sent to fail.
    """
    from cadence.adapters.config import load_settings
    from cadence.dsl.compiled import SendNode

    config = load_settings().for_tenant(tenant)
    if config.default_from or not (config.smtp or config.brevo):
        return []
    return [
        campaign.name
        for campaign in campaigns
        if not campaign.settings.from_
        and any(isinstance(n, SendNode) and n.channel == "email" for n in campaign.nodes)
    ]


def _http_refused(args: argparse.Namespace, command: str) -> int | None:
    """`--until-idle` exits as soon as nothing is due: no time to serve HTTP."""
    if args.http is not None and args.until_idle:
        print(f"cadence {command}: --http cannot be used with --until-idle", file=sys.stderr)
        return 2
    return None


def _serve(args: argparse.Namespace) -> int:
    refused = _http_refused(args, "serve")
    if refused is not None:
        return refused

    async def go() -> int:
        from cadence.adapters.web import ServiceSettings

        service = ServiceSettings.from_env()
        async with _service_engine(service, args.tenant, args.default_cap) as engine:
            stats = await _serve_engine(engine, args.until_idle, args.poll, args.http, service)
            print(_ran_line("served", stats, engine))
        return 0

    return int(_guard(go))


def _run(args: argparse.Namespace) -> int:
    from cadence.dsl.compiler import compile_paths

    refused = _http_refused(args, "run")
    if refused is None:
        refused = refuse_paths("cadence run", args.files)
    if refused is not None:
        return refused

    async def go() -> int:
        from cadence.adapters.web import ServiceSettings

        campaigns = compile_paths(args.files)
        senderless = _without_sender(campaigns, args.tenant)
        if senderless:
            print(
                f"cadence run: {', '.join(senderless)}: "
                f"{'sends' if len(senderless) == 1 else 'send'} email without a `from`, and"
                " CADENCE_FROM is not set: those emails will fail (give the campaign"
                ' `from "Name <address>"`, or set CADENCE_FROM)',
                file=sys.stderr,
            )
        service = ServiceSettings.from_env()
        async with _service_engine(service, args.tenant, args.default_cap) as engine:
            for result in await engine.deploy(campaigns):
                if result.pending_approval and args.approved_by is None:
                    print(
                        f"cadence run: {result.name}: version {result.version[:12]} waits for"
                        " approval; the approved version keeps running"
                        f" (`cadence approve {result.name} --by WHO`, or --approved-by)",
                        file=sys.stderr,
                    )
            for campaign in campaigns:
                if args.approved_by is not None:
                    await engine.approve(campaign.name, by=args.approved_by, note="cadence run")
                status = {row["name"]: row["status"] for row in await engine.status()}
                if status.get(campaign.name) in ("draft", "scheduled"):
                    await engine.launch(campaign.name)
            stats = await _serve_engine(engine, args.until_idle, args.poll, args.http, service)
            print(_ran_line("ran", stats, engine))
        return 0

    return int(_guard(go))


# ---------------------------------------------------------------------------- demo


# The tenant the demo's templates see as `company`.
DEMO_COMPANY = {
    "name": "Acme",
    "address": "1 Example Street, Springfield",
    "currency": "USD",
}
# The sales team the examples' `assign agent round_robin` hands hot leads to.
DEMO_AGENTS = [("maya", "maya@acme.test"), ("tomas", "tomas@acme.test")]
DEMO_SENDER = "Acme <hello@acme.test>"
DEMO_WHATSAPP_NUMBER = "15550001000"


def _demo(args: argparse.Namespace) -> int:
    from cadence.commands.console import table_console
    from cadence.dsl.parser import MAX_DURATION_SECONDS

    folder: Path = args.examples
    contacts = folder / "contacts.jsonl"
    if not folder.is_dir() or not contacts.is_file():
        print(
            f"cadence demo: {folder} needs the example campaigns and contacts.jsonl;"
            " run it from the repository root",
            file=sys.stderr,
        )
        return 2
    if args.days <= 0:
        print("cadence demo: --days must be at least 1", file=sys.stderr)
        return 2
    # The longest duration Cadence takes, as for `dry-run --until`.
    longest = MAX_DURATION_SECONDS // 86400
    if args.days > longest:
        print(f"cadence demo: --days must be at most {longest} (ten years)", file=sys.stderr)
        return 2
    console = table_console()
    # The live board is progress: stderr, so that stdout holds the report alone.
    board = table_console(stderr=True)
    result = _guard(lambda: _run_demo(args, folder, contacts, board))
    if isinstance(result, int):
        return result
    report, received = result
    _print_report(report, None, console)
    console.print(_received_table(received, "What the stand-ins received"))
    failed = Counter(send.error for send in report.sends if not send.delivered)
    if failed:
        console.print(_failures_table(failed))
    delivered = sum(1 for send in report.sends if send.delivered)
    print(
        f"demo: {delivered} sends delivered (brevo: {received.brevo}, infobip: {received.infobip}),"
        f" {received.webhooks} webhooks, {sum(failed.values())} failed"
    )
    return 0


@dataclass(frozen=True)
class _Received:
    """What the loopback stand-ins have taken so far, per provider and channel."""

    rows: list[tuple[str, str, int, int, str, str]]
    brevo: int
    infobip: int
    webhooks: int


def _received(standins: Standins) -> _Received:
    """Count what each stand-in accepted, with the latest message per provider and channel."""
    rows: list[tuple[str, str, int, int, str, str]] = []
    emails = standins.brevo.emails
    last_mail = emails[-1] if emails else None
    rows.append((
        "brevo", "email", len(standins.brevo.requests), len(emails),
        last_mail.to if last_mail else "", last_mail.subject if last_mail else "",
    ))  # fmt: skip
    infobip_requests = Counter(
        "sms" if r.path.startswith("/sms") else "whatsapp" for r in standins.infobip.requests
    )
    for channel in ("sms", "whatsapp"):
        taken = [m for m in standins.infobip.messages if m.channel == channel]
        last = taken[-1] if taken else None
        text = (last.text or last.template or "") if last else ""
        rows.append((
            "infobip", channel, infobip_requests[channel], len(taken),
            last.to if last else "", text,
        ))  # fmt: skip
    hooks = standins.webhook.received
    last_hook = hooks[-1] if hooks else None
    rows.append((
        "webhook", "webhook", len(standins.webhook.requests), len(hooks),
        last_hook.path if last_hook else "", "signed JSON" if last_hook else "",
    ))  # fmt: skip
    return _Received(rows, len(emails), len(standins.infobip.messages), len(hooks))


async def _run_demo(
    args: argparse.Namespace, folder: Path, contacts: Path, console: Console
) -> tuple[DryRunReport, _Received]:
    """The examples on the simulated clock, every send delivered to loopback stand-ins."""
    import trio
    from rich.live import Live
    from rich.table import Table

    from cadence.adapters.config import load_settings
    from cadence.adapters.outbound import Outbound
    from cadence.adapters.sink import AdapterSink, ContentSource
    from cadence.adapters.standins import start_standins
    from cadence.dsl.compiler import compile_paths
    from cadence.engine.dryrun import dry_run, parse_assume, placeholder_links
    from cadence.engine.tenants import DEFAULT_TENANT

    events = folder / "events.jsonl"
    start = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    campaigns = compile_paths(sorted(folder.glob("*.cadence")))
    async with trio.open_nursery() as nursery:
        standins = await start_standins(nursery)
        # The stand-ins only: a demo never reaches a real provider, whatever is configured.
        env = {
            **standins.environment(),
            "CADENCE_FROM": DEMO_SENDER,
            "CADENCE_INFOBIP_WHATSAPP_SENDER": DEMO_WHATSAPP_NUMBER,
        }
        outbound = Outbound(_demo_settings(load_settings(env=env), campaigns))
        tenants = {DEFAULT_TENANT: {"id": DEFAULT_TENANT, **DEMO_COMPANY}}

        def forward(source: ContentSource) -> Sink:
            sink = AdapterSink(outbound, source, links=placeholder_links, tenants=tenants)
            return _LoopbackWebhooks(sink, standins.webhook_url)

        try:
            with Live(Table(), console=console, refresh_per_second=8) as live:

                def report(now: dt.datetime, stats: RunStats) -> None:
                    live.update(_demo_board(now, stats, start, args.days, _received(standins)))

                result = await dry_run(
                    campaigns, contacts, events=events if events.is_file() else None,
                    start=start, until=dt.timedelta(days=args.days),
                    assume=parse_assume(DEFAULT_ASSUME), seed=args.seed, on_progress=report,
                    render=False, company=DEMO_COMPANY, forward=forward, approved_by="demo",
                    performance=True, agents=DEMO_AGENTS,
                )  # fmt: skip
            received = _received(standins)
        finally:
            with trio.CancelScope(shield=True):
                await outbound.aclose()
            nursery.cancel_scope.cancel()
    return result, received


def _demo_settings(
    settings: AdapterSettings, campaigns: Sequence[CompiledCampaign]
) -> AdapterSettings:
    """The stand-ins' settings, with an approved WhatsApp template for each example one.

    Outside the 24-hour window WhatsApp only takes approved templates; the demo pretends
    each example template has one that greets the contact by first name.
    """
    from cadence.adapters.config import AdapterSettings
    from cadence.adapters.render import ApprovedWhatsAppTemplate

    approved = {
        name: ApprovedWhatsAppTemplate(
            f"{name}_v1", "en", ("{{ contact.first_name | default('there') }}",)
        )
        for campaign in campaigns
        for name, template in campaign.templates.items()
        if template.channel == "whatsapp"
    }
    default = replace(settings.default, whatsapp_templates=approved)
    return AdapterSettings(default=default, tenants=settings.tenants)


class _LoopbackWebhooks:
    """Points `notify webhook` sends at the loopback receiver (same path), then delivers."""

    def __init__(self, sink: Sink, base_url: str) -> None:
        self.sink = sink
        self.base_url = base_url.rstrip("/")

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> Sequence[DeliveryResult]:
        """Deliver through the wrapped sink with webhook targets on loopback."""
        from urllib.parse import urlsplit

        moved = []
        for message in messages:
            target = message.payload.get("target")
            if message.channel == "webhook" and isinstance(target, str):
                path = urlsplit(target).path or "/"
                payload = {**message.payload, "target": self.base_url + path}
                message = replace(message, payload=payload)
            moved.append(message)
        return await self.sink.deliver(moved)


def _demo_board(
    now: dt.datetime, stats: RunStats, start: dt.datetime, days: int, received: _Received
) -> Table:
    from rich.table import Table

    elapsed = (now - start).total_seconds() / 86400
    table = Table(
        title=f"cadence demo · simulated {now:%a %Y-%m-%d %H:%M} UTC · day {elapsed:.1f}/{days}",
        caption=(
            f"{stats.steps} steps run · {stats.sends} sends · {stats.delivered} delivered · "
            f"{stats.enrolled} enrolled by other campaigns"
        ),
    )
    return _received_table(received, None, table)


def _received_table(received: _Received, title: str | None, table: Table | None = None) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = table if table is not None else Table(title=title)
    table.add_column("stand-in", no_wrap=True, min_width=8)
    table.add_column("channel", no_wrap=True, min_width=8)
    table.add_column("reqs", justify="right", no_wrap=True, min_width=4)
    table.add_column("msgs", justify="right", no_wrap=True, min_width=4)
    table.add_column("latest to")
    table.add_column("latest subject / text")
    for provider, channel, requests, count, to, text in received.rows:
        table.add_row(
            provider, channel, str(requests), str(count), escape(_clip(to, 18)),
            escape(_clip(text, 26)),
        )  # fmt: skip
    return table


def _clip(text: str, width: int) -> str:
    """One line of at most `width` characters, with an ellipsis when cut."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _failures_table(failed: Counter[str | None]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Sends that failed (recorded, not retried)")
    table.add_column("reason", max_width=100)
    table.add_column("sends", justify="right")
    for reason, count in failed.most_common():
        table.add_row(escape(reason or "failed"), str(count))
    return table
