"""Moving messages between conversations: merge two conversations of one customer, or split
a message out into a conversation of its own.

Merging keeps everything: the other conversation's messages, notes, activity lines, thread
keys and Message-IDs move to the survivor (so later replies to any of them find it), its
labels and people on copy join the survivor's; the other stays, resolved and marked merged,
so links to it lead on. Splitting moves one customer message into a new conversation of
its sender, assigned to the agent who split it; replies that name the split message find
the new conversation, as its Message-ID moves with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import (
    ConversationCreated,
    ConversationStatusChanged,
    ConversationUpdated,
    ConversationView,
    View,
)
from hub.types import utcnow
from inbox.actions import conversation_to_change
from inbox.activity import agent_name, change_with_activity
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.errors import NotFound, Refused
from inbox.models import (
    ContactIdentity,
    Conversation,
    ConversationLabel,
    ConversationViewer,
    Message,
    Notification,
    ThreadKey,
)
from inbox.outbox import stage_events
from inbox.views import PREVIEW_CHARS, load_conversation_view


async def merge_conversations(
    ctx: InboxContext, principal: Principal, *, conversation_id: int, other_id: int
) -> ConversationView:
    """Merge `other_id` into `conversation_id` (same inbox, same customer); the survivor."""
    async with ctx.db.write() as session:
        if conversation_id == other_id:
            await conversation_to_change(session, principal, conversation_id)  # visible?
            raise Refused("other_conversation_id: that is this conversation already")
        # Locked in id order: two merges of one pair never deadlock.
        first, second = sorted((conversation_id, other_id))
        locked = {cid: await conversation_to_change(session, principal, cid)
                  for cid in (first, second)}
        survivor, other = locked[conversation_id], locked[other_id]
        if other.merged_into_id is not None or survivor.merged_into_id is not None:
            raise Refused("a conversation that was merged already cannot be merged again")
        if other.inbox_id != survivor.inbox_id:
            raise Refused("only conversations of the same inbox can be merged")
        if other.contact_id != survivor.contact_id:
            raise Refused("only conversations of the same customer can be merged "
                          "(merge the contacts first)")
        now = utcnow()
        for table in (Message, ThreadKey, Notification):
            await session.exec(update(table).where(
                col(table.conversation_id) == other_id).values(conversation_id=conversation_id))
        labels = select(ConversationLabel.label_id).where(
            ConversationLabel.conversation_id == other_id)
        for label_id in list(await session.exec(labels)):
            if await session.get(ConversationLabel, (conversation_id, label_id)) is None:
                session.add(ConversationLabel(conversation_id=conversation_id,
                                              label_id=label_id))
        await session.exec(delete(ConversationLabel).where(
            col(ConversationLabel.conversation_id) == other_id))
        await session.exec(delete(ConversationViewer).where(
            col(ConversationViewer.conversation_id) == other_id))
        _absorb(survivor, other)
        previous = other.status
        other.status, other.resolved_at, other.merged_into_id = "resolved", now, conversation_id
        other.unread_count, other.waiting_since, other.snoozed_until = 0, None, None
        other.last_message_preview = f"Merged into conversation #{conversation_id}"
        session.add_all([survivor, other])
        await session.flush()
        by = await agent_name(session, principal.agent_id)
        view, events = await change_with_activity(
            session, survivor, f"{by} merged conversation #{other_id} into this one",
            principal.agent_id, lambda v, at: _updated(v, at, ["merged"], principal))
        events.append(ConversationStatusChanged(
            inbox_id=other.inbox_id, at=now, previous_status=previous,
            by_agent_id=principal.agent_id,
            conversation=await load_conversation_view(session, other)))
        stage_events(session, events)
    return view


def _absorb(survivor: Conversation, other: Conversation) -> None:
    """What the survivor takes of the other: the newest activity, unread messages, the
    people on copy, an assignee when it has none, and it opens if the other was open."""
    if other.last_activity_at > survivor.last_activity_at:
        survivor.last_activity_at = other.last_activity_at
        survivor.last_message_preview = other.last_message_preview
    survivor.unread_count += other.unread_count
    have = {(p.get("kind"), p.get("value")) for p in survivor.cc}
    survivor.cc = [*survivor.cc, *(p for p in other.cc
                                   if (p.get("kind"), p.get("value")) not in have)]
    if survivor.assignee_id is None and other.assignee_id is not None:
        survivor.assignee_id, survivor.waiting_since = other.assignee_id, None
    if other.status == "open" and survivor.status != "open":
        survivor.status, survivor.resolved_at, survivor.snoozed_until = "open", None, None


def _updated(view: ConversationView, at: datetime, changes: list[str],
             principal: Principal) -> View:
    return ConversationUpdated(inbox_id=view.inbox_id, at=at, conversation=view,
                               changes=changes, by_agent_id=principal.agent_id)


async def split_message(
    ctx: InboxContext, principal: Principal, *, message_id: int
) -> ConversationView:
    """Move a customer's message into a new conversation of its own; the new one."""
    async with ctx.db.write() as session:
        message = await session.get(Message, message_id)
        if message is None:
            raise NotFound(f"message {message_id} not found")
        old = await conversation_to_change(session, principal, message.conversation_id)
        if message.kind != "message" or message.direction != "in":
            raise Refused("only a customer's message can be split into a conversation")
        others = (await session.exec(select(func.count()).select_from(Message).where(
            Message.conversation_id == old.id, Message.direction == "in",
            Message.kind == "message", col(Message.id) != message_id))).one()
        if not others:
            raise Refused("this is the conversation's only message from the customer")
        contact_id = message.contact_id or old.contact_id
        now = utcnow()
        new = Conversation(
            inbox_id=old.inbox_id, contact_id=contact_id,
            identity_id=await _reply_identity(session, contact_id, old),
            status="open", assignee_id=principal.agent_id,
            subject=str(message.meta.get("subject") or old.subject or "")[:998] or None,
            last_message_preview=(message.text or "")[:PREVIEW_CHARS] or None,
            last_activity_at=message.accepted_at, created_at=now,
        )
        session.add(new)
        await session.flush()
        assert new.id is not None and old.id is not None
        await session.exec(update(Message).where(
            col(Message.id) == message_id).values(conversation_id=new.id))
        await _refresh_preview(session, old)
        by = await agent_name(session, principal.agent_id)
        view, events = await change_with_activity(
            session, new, f"{by} split this message out of conversation #{old.id}",
            principal.agent_id,
            lambda v, at: ConversationCreated(inbox_id=v.inbox_id, at=at, conversation=v))
        _, more = await change_with_activity(
            session, old, f"{by} split a message out into conversation #{new.id}",
            principal.agent_id, lambda v, at: _updated(v, at, ["messages"], principal))
        stage_events(session, [*events, *more])
    return view


async def _reply_identity(session: AsyncSession, contact_id: int, old: Conversation
                          ) -> int | None:
    """Where replies of the new conversation go: the old one's address when it is the same
    customer's, else the customer's address of the same kind, else any of theirs."""
    if old.contact_id == contact_id and old.identity_id is not None:
        return old.identity_id
    kind = None
    if old.identity_id is not None:
        found = await session.get(ContactIdentity, old.identity_id)
        kind = found.kind if found is not None else None
    rows = list(await session.exec(select(ContactIdentity).where(
        ContactIdentity.contact_id == contact_id).order_by(col(ContactIdentity.id))))
    same = [r for r in rows if r.kind == kind] or rows
    return same[0].id if same else None


async def _refresh_preview(session: AsyncSession, conversation: Conversation) -> None:
    """The preview shows the newest message still in the conversation."""
    newest = (await session.exec(
        select(Message.text).where(Message.conversation_id == conversation.id,
                                   col(Message.kind) == "message")
        .order_by(col(Message.accepted_at).desc(), col(Message.id).desc()).limit(1))).first()
    conversation.last_message_preview = (newest or "")[:PREVIEW_CHARS] or None
    session.add(conversation)

