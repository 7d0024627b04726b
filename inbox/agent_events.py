"""The `agent.updated` event: what the UI and the agent's own websockets learn of a change.

An agent's open websockets re-check their session as soon as they see an event about their
own agent, so publishing one after a deactivation, a logout or a membership change makes
every socket act on it at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import AgentUpdated
from hub.types import utcnow
from inbox.agents import visible_inbox_ids
from inbox.directory import inbox_agents_of
from inbox.models import Agent


def is_online(agent: Agent, *, presence_seconds: int, now: datetime | None = None) -> bool:
    """Whether the agent had a live connection within the presence window."""
    now = now or utcnow()
    seen = agent.last_seen_at
    return seen is not None and seen >= now - timedelta(seconds=presence_seconds)


def agent_updated(
    agent: Agent,
    changes: list[str],
    *,
    presence_seconds: int,
    audience: list[int] | None = None,
) -> AgentUpdated:
    """The event about one agent; `audience` None sends it to every agent."""
    assert agent.id is not None
    now = utcnow()
    return AgentUpdated(
        inbox_id=None, at=now, audience=audience, agent_id=agent.id, name=agent.name,
        role=agent.role, availability=agent.availability, is_active=agent.is_active,
        online=is_online(agent, presence_seconds=presence_seconds, now=now), changes=changes,
    )


async def audience_of(session: AsyncSession, agent: Agent) -> list[int] | None:
    """Who may see an agent, so who learns of a change: the agent, and the active agents who
    share an inbox with them, directly or through a team (admins see every inbox). An admin
    shares every inbox with everyone: None, every agent."""
    if agent.role == "admin" or agent.id is None:
        return None
    seeing = await inbox_agents_of(session, await visible_inbox_ids(session, agent))
    return sorted(seeing | {agent.id})


async def agent_event(
    session: AsyncSession, agent: Agent, changes: list[str], *, presence_seconds: int
) -> AgentUpdated:
    """agent_updated for those who may see the agent (audience_of)."""
    return agent_updated(agent, changes, presence_seconds=presence_seconds,
                         audience=await audience_of(session, agent))


async def agents_updated(
    session: AsyncSession, agent_ids: Iterable[int], changes: list[str], *, presence_seconds: int
) -> list[AgentUpdated]:
    """One event per agent (by id order), for a change that touched several at once."""
    ids = sorted(set(agent_ids))
    if not ids:
        return []
    rows = await session.exec(select(Agent).where(col(Agent.id).in_(ids)).order_by(col(Agent.id)))
    return [await agent_event(session, a, changes, presence_seconds=presence_seconds)
            for a in rows]
