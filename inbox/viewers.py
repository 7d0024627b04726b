"""Collision detection: which agents have a conversation open right now.

The agent UI says "viewing" when it opens a conversation and repeats it every 20 seconds
while it stays open; a viewer not heard from for VIEWER_SECONDS is gone (a closed laptop
never says goodbye). Every call is published, so other agents' screens can expire a viewer
the same way without asking again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select

from hub.events import ConversationViewing
from hub.types import utcnow
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql
from inbox.errors import NotFound
from inbox.models import Agent, ConversationViewer, table_of
from inbox.outbox import stage_events
from inbox.queries import visible_conversation

VIEWER_SECONDS = 60


@dataclass(frozen=True)
class Viewer:
    """An agent with the conversation open, and when they last said so."""

    agent_id: int
    name: str
    since: datetime


async def set_viewing(
    ctx: InboxContext, principal: Principal, *, conversation_id: int, viewing: bool
) -> None:
    """Record that the agent has the conversation open (or left it) and tell its inbox."""
    now = utcnow()
    async with ctx.db.write() as session:
        conversation = await visible_conversation(session, principal, conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} not found")
        # Forget whoever went quiet here, so the table holds only live viewers.
        await session.exec(delete(ConversationViewer).where(
            col(ConversationViewer.conversation_id) == conversation_id,
            col(ConversationViewer.seen_at) < now - timedelta(seconds=VIEWER_SECONDS),
        ))
        if viewing:
            # One upsert: two tabs (or a repeat crossing a first call) saying "viewing" at
            # once must not collide on the (conversation, agent) key.
            insert = conflict_insert(table_of(ConversationViewer), is_postgresql(session))
            await execute(session, insert.values(
                conversation_id=conversation_id, agent_id=principal.agent_id, seen_at=now,
            ).on_conflict_do_update(index_elements=["conversation_id", "agent_id"],
                                    set_={"seen_at": now}))
        else:
            await session.exec(delete(ConversationViewer).where(
                col(ConversationViewer.conversation_id) == conversation_id,
                col(ConversationViewer.agent_id) == principal.agent_id))
        event = ConversationViewing(
            inbox_id=conversation.inbox_id, at=now, conversation_id=conversation_id,
            by_agent_id=principal.agent_id, viewing=viewing,
        )
        stage_events(session, [event])


async def list_viewers(
    ctx: InboxContext, principal: Principal, *, conversation_id: int
) -> list[Viewer]:
    """Agents seen on the conversation in the last VIEWER_SECONDS (since: when last seen)."""
    since = utcnow() - timedelta(seconds=VIEWER_SECONDS)
    async with ctx.db.read() as session:
        if await visible_conversation(session, principal, conversation_id) is None:
            raise NotFound(f"conversation {conversation_id} not found")
        rows = await session.exec(
            select(ConversationViewer.agent_id, Agent.name, ConversationViewer.seen_at)
            .join(Agent, col(Agent.id) == col(ConversationViewer.agent_id))
            .where(
                ConversationViewer.conversation_id == conversation_id,
                col(ConversationViewer.seen_at) >= since,
                col(Agent.is_active).is_(True),
            )
            .order_by(col(Agent.name), col(ConversationViewer.agent_id))
        )
        return [Viewer(agent_id=a, name=n, since=s) for a, n, s in rows]
