"""Agent actions on a conversation: change its status, mute it, mark it read, say who is
typing.

Each action checks the principal and changes the database in one transaction, in which it
stages its events for the outbox (inbox/outbox.py). Replies and notes: inbox/replies.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import (
    ConversationRead,
    ConversationStatusChanged,
    ConversationTyping,
    ConversationUpdated,
    View,
)
from hub.types import utcnow
from inbox.activity import agent_name as _agent_name
from inbox.activity import change_with_activity as _change_with_activity
from inbox.agents import Principal
from inbox.assignment import drain_queue
from inbox.context import InboxContext
from inbox.db import is_postgresql
from inbox.errors import NotFound, Refused
from inbox.models import (
    CONVERSATION_STATUSES,
    Conversation,
)
from inbox.outbox import stage_events
from inbox.queries import visible_conversation
from inbox.views import load_conversation_view


async def _conversation(
    session: AsyncSession, principal: Principal, conversation_id: int, *, lock: bool = True
) -> Conversation:
    conversation = await visible_conversation(session, principal, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    if lock and is_postgresql(session):
        await session.refresh(conversation, with_for_update=True)
    return conversation


async def conversation_to_change(
    session: AsyncSession, principal: Principal, conversation_id: int
) -> Conversation:
    """A conversation an action is about to change: visible (else NotFound) and locked."""
    return await _conversation(session, principal, conversation_id)


async def set_status(
    ctx: InboxContext,
    principal: Principal,
    *,
    conversation_id: int,
    status: str,
    snoozed_until: datetime | None = None,
) -> View:
    """Resolve, reopen, snooze (until a time) or set a conversation pending."""
    if status not in CONVERSATION_STATUSES:
        raise Refused(f"status must be one of {', '.join(CONVERSATION_STATUSES)}")
    now = utcnow()
    if status == "snoozed":
        if snoozed_until is None or snoozed_until <= now:
            raise Refused("snoozing needs a time in the future (snoozed_until)")
    elif snoozed_until is not None:
        raise Refused("snoozed_until goes only with status 'snoozed'")
    async with ctx.db.write() as session:
        conversation = await _conversation(session, principal, conversation_id)
        previous = conversation.status
        if previous == status and conversation.snoozed_until == snoozed_until:
            return await load_conversation_view(session, conversation)
        conversation.status = status
        conversation.snoozed_until = snoozed_until
        conversation.resolved_at = now if status == "resolved" else None
        if status != "resolved":
            conversation.muted = False  # taken up again: its messages count again
        if status != "open":
            conversation.waiting_since = None  # only open conversations wait in the queue
        # Capacity counts open conversations: leaving "open" frees a place for the queue.
        frees_place = (previous == "open" and status != "open"
                       and conversation.assignee_id is not None)
        session.add(conversation)
        by = await _agent_name(session, principal.agent_id)
        words = {"open": "reopened", "resolved": "resolved", "pending": "set pending"}
        text = (
            f"{by} snoozed this conversation until {snoozed_until:%Y-%m-%d %H:%M} UTC"
            if status == "snoozed" and snoozed_until
            else f"{by} {words[status]} this conversation"
        )
        view, events = await _change_with_activity(
            session, conversation, text, principal.agent_id,
            lambda view, at: ConversationStatusChanged(
                inbox_id=view.inbox_id, at=at, conversation=view,
                previous_status=previous, by_agent_id=principal.agent_id,
            ),
        )
        stage_events(session, events)
    if frees_place:
        await drain_queue(ctx)
    return view


async def set_muted(
    ctx: InboxContext, principal: Principal, *, conversation_id: int, muted: bool
) -> View:
    """Mute a conversation (it is resolved, and the customer's new messages join it without
    reopening it, notifying or queueing anyone), or unmute it (it stays as it is; the next
    message reopens it as usual). Reopening, snoozing or setting it pending unmutes it."""
    async with ctx.db.write() as session:
        conversation = await _conversation(session, principal, conversation_id)
        previous = conversation.status
        resolving = muted and previous != "resolved"
        if conversation.muted == muted and not resolving:
            return await load_conversation_view(session, conversation)
        conversation.muted = muted
        frees_place = resolving and previous == "open" and conversation.assignee_id is not None
        if resolving:
            conversation.status, conversation.snoozed_until = "resolved", None
            conversation.resolved_at, conversation.waiting_since = utcnow(), None
        session.add(conversation)
        by = await _agent_name(session, principal.agent_id)
        text = (f"{by} muted this conversation: the customer's new messages will not reopen it"
                if muted else f"{by} unmuted this conversation")
        view, events = await _change_with_activity(
            session, conversation, text, principal.agent_id,
            lambda view, at: ConversationUpdated(inbox_id=view.inbox_id, at=at,
                                                 conversation=view, changes=["muted"],
                                                 by_agent_id=principal.agent_id))
        if resolving:
            events.insert(0, ConversationStatusChanged(
                inbox_id=view.inbox_id, at=utcnow(), conversation=view,
                previous_status=previous, by_agent_id=principal.agent_id))
        stage_events(session, events)
    if frees_place:
        await drain_queue(ctx)
    return view


async def mark_read(ctx: InboxContext, principal: Principal, *, conversation_id: int) -> View:
    """The agent has read the conversation: its unread count goes back to zero."""
    async with ctx.db.write() as session:
        conversation = await _conversation(session, principal, conversation_id)
        if conversation.unread_count == 0:
            return await load_conversation_view(session, conversation)
        conversation.unread_count = 0
        session.add(conversation)
        view = await load_conversation_view(session, conversation)
        event = ConversationRead(
            inbox_id=conversation.inbox_id, at=utcnow(), conversation=view,
            by_agent_id=principal.agent_id,
        )
        stage_events(session, [event])
    return view


async def signal_typing(
    ctx: InboxContext,
    principal: Principal,
    *,
    conversation_id: int,
    mode: Literal["reply", "note"],
    typing: bool,
) -> None:
    """Tell everyone on the conversation (and the customer, for replies) an agent is typing."""
    async with ctx.db.read() as session:
        conversation = await visible_conversation(session, principal, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    await ctx.publish([
        ConversationTyping(
            inbox_id=conversation.inbox_id, at=utcnow(), conversation_id=conversation_id,
            contact_id=conversation.contact_id, by_agent_id=principal.agent_id, mode=mode,
            typing=typing,
        )
    ])


async def wake_snoozed(ctx: InboxContext, *, limit: int = 200) -> int:
    """Reopen conversations whose snooze has ended; return how many woke up."""
    now = utcnow()
    events: list[View] = []
    async with ctx.db.write() as session:
        query = (
            select(Conversation)
            .where(Conversation.status == "snoozed", col(Conversation.snoozed_until) <= now)
            .order_by(col(Conversation.snoozed_until))
            .limit(limit)
        )
        if is_postgresql(session):
            # Several workers may run this at once: each takes different conversations.
            query = query.with_for_update(skip_locked=True)
        for conversation in await session.exec(query):
            conversation.status = "open"
            conversation.snoozed_until = None
            conversation.last_activity_at = now
            session.add(conversation)
            _, woke = await _change_with_activity(
                session, conversation, "The snooze ended", None,
                lambda view, at: ConversationStatusChanged(
                    inbox_id=view.inbox_id, at=at, conversation=view,
                    previous_status="snoozed", by_agent_id=None,
                ),
            )
            events += woke
        stage_events(session, events)
    return len(events) // 2
