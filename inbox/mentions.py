"""@mentions in internal notes: who may be mentioned, and the notification each one gets."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import NotificationCreated
from inbox.agents import visible_inbox_ids
from inbox.models import Agent, Conversation, Message
from inbox.notifications import notify

MAX_MENTIONS = 20


async def unmentionable(session: AsyncSession, *, inbox_id: int, agent_ids: list[int]) -> list[int]:
    """The ids among `agent_ids` that are not active agents who may see the inbox."""
    if not agent_ids:
        return []
    agents = {
        agent.id: agent
        for agent in await session.exec(select(Agent).where(col(Agent.id).in_(agent_ids)))
    }
    bad = []
    for agent_id in agent_ids:
        agent = agents.get(agent_id)
        if agent is None or not agent.is_active or inbox_id not in await visible_inbox_ids(
            session, agent
        ):
            bad.append(agent_id)
    return bad


async def notify_mentioned(
    session: AsyncSession,
    *,
    conversation: Conversation,
    note: Message,
    agent_ids: list[int],
    by_agent_id: int,
) -> list[NotificationCreated]:
    """A mention notification for each agent named in a note (never for its author)."""
    assert note.id is not None
    return [
        await notify(session, agent_id=agent_id, kind="mention", conversation=conversation,
                     text=note.text, message_id=note.id, by_agent_id=by_agent_id)
        for agent_id in agent_ids
        if agent_id != by_agent_id
    ]
