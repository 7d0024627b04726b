"""Who works alongside an agent: the names the UI shows for assignees and authors."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.agents import Principal
from inbox.models import Agent, InboxMember, TeamInbox, TeamMember


@dataclass(frozen=True)
class Colleague:
    """An agent as colleagues see them."""

    id: int
    name: str


async def colleagues(session: AsyncSession, principal: Principal) -> list[Colleague]:
    """Active agents who share an inbox with the principal, directly or through a team
    (admins share every inbox)."""
    if principal.is_admin:
        return await _seeing(session, None, None)
    return await _seeing(session, principal.inbox_ids, principal.agent_id)


async def inbox_agents(session: AsyncSession, inbox_id: int) -> list[Colleague]:
    """Active agents who may see an inbox (its members, its teams' members, admins): whom a
    note there may mention."""
    return await _seeing(session, frozenset({inbox_id}), None)


async def inbox_agents_of(session: AsyncSession, inbox_ids: frozenset[int]) -> set[int]:
    """The ids of the active agents who may see any of these inboxes (admins included)."""
    return {c.id for c in await _seeing(session, inbox_ids, None)}


async def _seeing(
    session: AsyncSession, inbox_ids: frozenset[int] | None, also: int | None
) -> list[Colleague]:
    """Active agents who may see any of the inboxes (None: everyone), plus agent `also`."""
    query = select(Agent.id, Agent.name).where(col(Agent.is_active).is_(True))
    if inbox_ids is not None:
        wanted = sorted(inbox_ids)
        members = select(InboxMember.agent_id).where(col(InboxMember.inbox_id).in_(wanted))
        teams = (
            select(TeamMember.agent_id)
            .join(TeamInbox, col(TeamInbox.team_id) == col(TeamMember.team_id))
            .where(col(TeamInbox.inbox_id).in_(wanted))
        )
        query = query.where(or_(
            Agent.role == "admin", col(Agent.id).in_(members), col(Agent.id).in_(teams),
            Agent.id == also,
        ))
    rows = await session.exec(query.order_by(col(Agent.name), col(Agent.id)))
    return [Colleague(id=agent_id, name=name) for agent_id, name in rows if agent_id is not None]
