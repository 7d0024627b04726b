"""Activity lines: the thread's record of a change ("Alice resolved this conversation").

Kept apart from inbox/actions.py so that automatic changes (assignment from the queue,
an agent going offline) write the same lines without importing the agent actions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ConversationView, MessageCreated, View
from hub.types import utcnow
from inbox.models import Agent, Conversation, Message
from inbox.views import load_conversation_view, message_view


async def add_activity(
    session: AsyncSession, conversation: Conversation, text: str, agent_id: int | None
) -> Message:
    """Store an activity line in the conversation (the caller publishes its event)."""
    line = Message(
        conversation_id=conversation.id or 0,
        inbox_id=conversation.inbox_id,
        direction="out",
        kind="activity",
        text=text,
        agent_id=agent_id,
    )
    session.add(line)
    await session.flush()
    return line


async def change_with_activity(
    session: AsyncSession,
    conversation: Conversation,
    text: str,
    agent_id: int | None,
    change: Callable[[ConversationView, datetime], View],
) -> tuple[ConversationView, list[View]]:
    """An activity line for a change, and the change's event followed by the line's."""
    line = await add_activity(session, conversation, text, agent_id)
    view = await load_conversation_view(session, conversation)
    now = utcnow()
    return view, [
        change(view, now),
        MessageCreated(inbox_id=conversation.inbox_id, at=now, message=message_view(line),
                       conversation=view),
    ]


async def agent_name(session: AsyncSession, agent_id: int | None) -> str:
    """An agent's name as activity lines show it ("nobody" for None)."""
    if agent_id is None:
        return "nobody"
    agent = await session.get(Agent, agent_id)
    return agent.name if agent else f"agent {agent_id}"
