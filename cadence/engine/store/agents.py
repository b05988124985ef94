"""Agents and round-robin assignment (`assign agent round_robin`), fair across workers.

The cursor row of a pool is locked while the next agent is picked, so two engines assigning
at once hand out consecutive agents instead of the same one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cadence.engine.store.database import StoreError, dialect_insert
from cadence.engine.store.models import Agent, AgentCursor


def add_agent(
    session: Session,
    tenant_id: str,
    name: str,
    *,
    now: datetime,
    email: str | None = None,
    pool: str = "default",
    active: bool = True,
) -> int:
    """Add an agent to a pool (or update the one with that name); returns its id."""
    statement = dialect_insert(session.get_bind().dialect.name, Agent).values(
        tenant_id=tenant_id, name=name, email=email, pool=pool, active=active, created_at=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "name"],
            set_={
                "email": statement.excluded.email,
                "pool": statement.excluded.pool,
                "active": statement.excluded.active,
            },
        )
    )
    agent_id = session.scalar(
        select(Agent.id).where(Agent.tenant_id == tenant_id, Agent.name == name)
    )
    if agent_id is None:  # pragma: no cover - the upsert above guarantees it
        raise StoreError(f"agent {name!r} vanished while being added")
    return agent_id


def list_agents(session: Session, tenant_id: str) -> list[Agent]:
    """The tenant's agents, active or not, by pool then the order they were added."""
    return list(
        session.scalars(
            select(Agent).where(Agent.tenant_id == tenant_id).order_by(Agent.pool, Agent.id)
        )
    )


def set_agent_active(session: Session, tenant_id: str, name: str, active: bool) -> bool:
    """Take an agent off assignment (or back on); False when there is no agent of that name."""
    agent = session.scalar(select(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name))
    if agent is None:
        return False
    agent.active = active
    session.flush()
    return True


def next_agent(
    session: Session, tenant_id: str, *, now: datetime, pool: str = "default"
) -> Agent | None:
    """The next active agent of the pool after the last one assigned (None if the pool is empty)."""
    session.execute(
        dialect_insert(session.get_bind().dialect.name, AgentCursor)
        .values(tenant_id=tenant_id, pool=pool, last_agent_id=None, assigned=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["tenant_id", "pool"])
    )
    cursor = session.scalar(
        select(AgentCursor)
        .where(AgentCursor.tenant_id == tenant_id, AgentCursor.pool == pool)
        .with_for_update()
    )
    if cursor is None:  # pragma: no cover - the insert above guarantees it
        raise StoreError(f"round-robin cursor of pool {pool!r} vanished")
    active = select(Agent).where(Agent.tenant_id == tenant_id, Agent.pool == pool, Agent.active)
    agent = None
    if cursor.last_agent_id is not None:
        agent = session.scalar(
            active.where(Agent.id > cursor.last_agent_id).order_by(Agent.id).limit(1)
        )
    if agent is None:
        agent = session.scalar(active.order_by(Agent.id).limit(1))
    if agent is None:
        return None
    cursor.last_agent_id = agent.id
    cursor.assigned += 1
    cursor.updated_at = now
    session.flush()
    return agent
