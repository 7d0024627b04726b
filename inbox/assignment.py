"""Automatic assignment: round robin among the inbox's online, available members."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from inbox.models import Agent, InboxMember


def _online_members(
    inbox_id: int, now: datetime, presence_seconds: int
) -> SelectOfScalar[int]:
    online_since = now - timedelta(seconds=presence_seconds)
    return (
        select(InboxMember.agent_id)
        .join(Agent, col(Agent.id) == col(InboxMember.agent_id))
        .where(
            InboxMember.inbox_id == inbox_id,
            col(Agent.is_active).is_(True),
            Agent.availability == "online",
            col(Agent.last_seen_at) >= online_since,
        )
    )


async def online_member_count(
    session: AsyncSession, *, inbox_id: int, now: datetime, presence_seconds: int
) -> int:
    """How many of the inbox's agents are online and available right now."""
    return len(list(await session.exec(_online_members(inbox_id, now, presence_seconds))))


async def pick_round_robin(
    session: AsyncSession, *, inbox_id: int, now: datetime, presence_seconds: int
) -> int | None:
    """The online member assigned longest ago (and mark them as just assigned), or None."""
    result = await session.exec(
        _online_members(inbox_id, now, presence_seconds)
        .order_by(col(InboxMember.last_assigned_at).asc().nulls_first(), col(InboxMember.agent_id))
        .limit(1)
    )
    agent_id = result.first()
    if agent_id is None:
        return None
    await session.exec(
        update(InboxMember)
        .where(col(InboxMember.inbox_id) == inbox_id, col(InboxMember.agent_id) == agent_id)
        .values(last_assigned_at=now)
    )
    return agent_id
