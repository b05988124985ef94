"""`cadence agents add | remove | list`: the salespeople `assign agent round_robin` hands out."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cadence.commands.data import _usage
from cadence.commands.options import add_tenant

if TYPE_CHECKING:
    from cadence.engine.runtime import Engine


def register(subparsers: Any) -> None:
    """Add the `agents` command family."""
    agents = subparsers.add_parser("agents", help="manage the agents contacts are assigned to")
    commands = agents.add_subparsers(dest="agents_command", metavar="COMMAND")
    agents.set_defaults(handler=lambda _args: _usage(agents))
    add = commands.add_parser(
        "add",
        help="add an agent to the round-robin rotation (or update one)",
        description=(
            "Add an agent that `assign agent round_robin` hands contacts to, in the order"
            " agents were added. Adding a removed agent puts them back in the rotation."
        ),
    )
    add.add_argument("name", help="the agent's name (what contacts get as `agent`)")
    add.add_argument("--email", help="the agent's email (contacts get it as `agent_email`)")
    add_tenant(add)
    add.set_defaults(handler=_add)
    remove = commands.add_parser(
        "remove",
        help="take an agent out of the rotation",
        description="Contacts already assigned to the agent keep them.",
    )
    remove.add_argument("name", help="the agent's name")
    add_tenant(remove)
    remove.set_defaults(handler=_remove)
    listing = commands.add_parser("list", help="the agents, and whether each is in the rotation")
    add_tenant(listing)
    listing.set_defaults(handler=_list)


def _add(args: argparse.Namespace) -> int:
    from cadence.commands.engine import with_engine

    async def use(engine: Engine) -> None:
        await engine.add_agent(args.name, email=args.email)
        print(f"agent {args.name.strip()}: in the rotation")

    return with_engine(use, args.tenant)


def _remove(args: argparse.Namespace) -> int:
    from cadence.commands.engine import with_engine

    async def use(engine: Engine) -> None:
        await engine.remove_agent(args.name)
        print(f"agent {args.name.strip()}: out of the rotation")

    return with_engine(use, args.tenant)


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from cadence.commands.console import table_console
    from cadence.commands.engine import with_engine

    async def use(engine: Engine) -> None:
        agents = await engine.agents()
        table = Table(title="Agents")
        for column in ("agent", "email", "in rotation"):
            table.add_column(column)
        for agent in agents:
            table.add_row(agent["name"], agent["email"] or "", "yes" if agent["active"] else "no")
        table_console().print(table)

    return with_engine(use, args.tenant, existing="cadence agents list")
