"""Who works alongside an agent: the names the UI shows for assignees and authors."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.agents import Principal
from inbox.models import Agent, InboxMember


@dataclass(frozen=True)
class Colleague:
    """An agent as colleagues see them."""

    id: int
    name: str


async def colleagues(session: AsyncSession, principal: Principal) -> list[Colleague]:
    """Active agents who share an inbox with the principal (admins share every inbox)."""
    query = select(Agent.id, Agent.name).where(col(Agent.is_active).is_(True))
    if not principal.is_admin:
        members = select(InboxMember.agent_id).where(
            col(InboxMember.inbox_id).in_(sorted(principal.inbox_ids))
        )
        query = query.where(
            or_(
                col(Agent.id).in_(members),
                Agent.role == "admin",
                Agent.id == principal.agent_id,
            )
        )
    rows = await session.exec(query.order_by(col(Agent.name), col(Agent.id)))
    return [Colleague(id=agent_id, name=name) for agent_id, name in rows if agent_id is not None]
