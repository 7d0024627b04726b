"""Agent actions: reply, note, assign, change status, mark read.

Each action checks the principal, changes the database in one transaction, and only after
the commit publishes its events (and, for a reply, the send request).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import OUTBOUND
from hub.events import (
    ConversationRead,
    ConversationStatusChanged,
    ConversationTyping,
    MessageCreated,
    MessageView,
    View,
)
from hub.types import AttachmentRef, Identity, OutboundMessage, encode, utcnow
from inbox.activity import agent_name as _agent_name
from inbox.activity import change_with_activity as _change_with_activity
from inbox.agents import Principal
from inbox.assignment import drain_queue
from inbox.attachments import inbox_attachments
from inbox.context import InboxContext
from inbox.mentions import MAX_MENTIONS, notify_mentioned, unmentionable
from inbox.models import (
    CONVERSATION_STATUSES,
    Agent,
    ContactIdentity,
    Conversation,
    Inbox,
    Message,
)
from inbox.queries import reply_window_closes_at, visible_conversation
from inbox.threading import PREVIEW_CHARS
from inbox.views import load_conversation_view, message_view

MAX_TEXT = 20_000
MAX_ATTACHMENTS = 10
# A reply by someone else this recent, and not yet seen by the sender, is a collision.
COLLISION_SECONDS = 600


class NotFound(LookupError):
    """The conversation does not exist or the agent may not see it (both look the same)."""


class Refused(ValueError):
    """An action the rules do not allow, with a message for the agent."""


class Forbidden(PermissionError):
    """The agent may see this but their role does not let them do it."""


class Collision(Exception):
    """Someone else replied after the last message the agent saw (send again with force)."""


class WindowClosed(Refused):
    """Free text outside the channel's reply window: only an approved template may go out."""

    def __init__(self, hours: int, closed_at: datetime) -> None:
        super().__init__(
            f"the {hours}-hour reply window of this channel is closed; send an approved template"
        )
        self.hours = hours
        self.closed_at = closed_at


async def _conversation(
    session: AsyncSession, principal: Principal, conversation_id: int, *, lock: bool = True
) -> Conversation:
    conversation = await visible_conversation(session, principal, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.refresh(conversation, with_for_update=True)
    return conversation


async def conversation_to_change(
    session: AsyncSession, principal: Principal, conversation_id: int
) -> Conversation:
    """A conversation an action is about to change: visible (else NotFound) and locked."""
    return await _conversation(session, principal, conversation_id)


async def reply(
    ctx: InboxContext,
    principal: Principal,
    *,
    conversation_id: int,
    text: str,
    kind: Literal["message", "note"] = "message",
    idempotency_key: str | None = None,
    template: str | None = None,
    template_variables: dict[str, str] | None = None,
    reply_window_hours: int | None = None,
    attachment_ids: list[str] | None = None,
    mention_ids: list[int] | None = None,
    after_message_id: int | None = None,
    force: bool = False,
) -> MessageView:
    """Send a reply on the customer's channel (queued) or leave an internal note.

    On a channel with a reply window (`reply_window_hours`, from its capabilities) free
    text goes out only while the window is open; a template (with its variables) always may.
    `attachment_ids` are files uploaded to the conversation's inbox; with them, the text
    may be empty. A note may mention agents of the inbox (`mention_ids`): each is notified.
    A reply with `after_message_id` (the newest message the agent saw) raises Collision
    when another agent replied after it in the last minutes, unless `force`.
    """
    text = text.strip()
    variables = dict(template_variables or {})
    file_ids = list(dict.fromkeys(attachment_ids or ()))
    if len(file_ids) > MAX_ATTACHMENTS:
        raise Refused(f"a message may carry at most {MAX_ATTACHMENTS} attachments")
    if template is not None:
        if kind != "message":
            raise Refused("only a message to the customer can be a template")
        if file_ids:
            raise Refused("a template message carries no attachments")
        text = text or _template_text(template, variables)
    elif variables:
        raise Refused("template_variables go only with a template")
    if not text and not file_ids:
        raise Refused("a message needs some text or an attachment")
    if len(text) > MAX_TEXT:
        raise Refused(f"a message may have at most {MAX_TEXT} characters")
    mentioned = list(dict.fromkeys(mention_ids or ()))
    if mentioned and kind != "note":
        raise Refused("only an internal note can mention agents")
    if len(mentioned) > MAX_MENTIONS:
        raise Refused(f"a note may mention at most {MAX_MENTIONS} agents")
    key = idempotency_key or secrets.token_urlsafe(16)
    outbound: OutboundMessage | None = None
    async with ctx.db.write() as session:
        conversation = await _conversation(session, principal, conversation_id)
        existing = (
            await session.exec(select(Message).where(Message.idempotency_key == key))
        ).first()
        if existing is not None:
            if existing.conversation_id != conversation_id:
                raise Refused("this idempotency key was used for another conversation")
            return message_view(existing)  # a retried request: nothing new happens
        now = utcnow()
        if kind == "message" and after_message_id is not None and not force:
            await _check_collision(session, conversation_id=conversation_id,
                                   agent_id=principal.agent_id, after=after_message_id, now=now)
        cannot = await unmentionable(session, inbox_id=conversation.inbox_id, agent_ids=mentioned)
        if cannot:
            raise Refused(f"mention_ids: agent {cannot[0]} cannot see this conversation's inbox")
        if kind == "message" and template is None and reply_window_hours is not None:
            closes_at = await reply_window_closes_at(
                session, conversation_id=conversation_id, opened_at=conversation.created_at,
                hours=reply_window_hours,
            )
            if closes_at <= now:
                raise WindowClosed(reply_window_hours, closes_at)
        files, unknown = await inbox_attachments(
            session, inbox_id=conversation.inbox_id, ids=file_ids)
        if unknown:
            raise Refused(f"attachment_ids: {unknown[0]} is not a file of this "
                          "conversation's inbox (upload it first)")
        message = Message(
            conversation_id=conversation_id,
            inbox_id=conversation.inbox_id,
            direction="out",
            kind=kind,
            text=text,
            agent_id=principal.agent_id,
            idempotency_key=key,
            status="queued" if kind == "message" else None,
            meta=({"template": template, "template_variables": variables} if template
                  else {"mention_ids": mentioned} if mentioned else {}),
            attachments=[ref.model_dump(mode="json") for ref in files],
            accepted_at=now,
            created_at=now,
        )
        session.add(message)
        if kind == "message":
            outbound = await _send_request(session, conversation, message, key, files)
            conversation.last_message_preview = (
                text or "📎 " + ", ".join(f.filename for f in files))[:PREVIEW_CHARS]
            conversation.unread_count = 0
        conversation.last_activity_at = now
        session.add(conversation)
        await session.flush()
        view = message_view(message)
        event = MessageCreated(
            inbox_id=conversation.inbox_id,
            at=now,
            message=view,
            conversation=await load_conversation_view(session, conversation),
        )
        notifications = await notify_mentioned(
            session, conversation=conversation, note=message, agent_ids=mentioned,
            by_agent_id=principal.agent_id,
        )
    await ctx.publish([event, *notifications])
    if outbound is not None:
        await ctx.bus.add(OUTBOUND, encode(outbound))
    return view


async def _check_collision(
    session: AsyncSession, *, conversation_id: int, agent_id: int, after: int, now: datetime
) -> None:
    """Raise Collision if another agent replied here after message `after`, recently."""
    found = (
        await session.exec(
            select(Agent.name, Message.created_at)
            .join(Agent, col(Agent.id) == col(Message.agent_id))
            .where(
                Message.conversation_id == conversation_id,
                Message.kind == "message",
                Message.direction == "out",
                col(Message.id) > after,
                col(Message.agent_id) != agent_id,
                col(Message.created_at) >= now - timedelta(seconds=COLLISION_SECONDS),
            )
            .order_by(col(Message.id).desc())
            .limit(1)
        )
    ).first()
    if found is not None:
        name, at = found
        seconds = max(0, int((now - at).total_seconds()))
        raise Collision(f"{name} replied {seconds} second{'' if seconds == 1 else 's'} ago")


async def _send_request(
    session: AsyncSession,
    conversation: Conversation,
    message: Message,
    key: str,
    files: list[AttachmentRef],
) -> OutboundMessage:
    inbox = await session.get_one(Inbox, conversation.inbox_id)
    identity = (
        await session.get(ContactIdentity, conversation.identity_id)
        if conversation.identity_id
        else None
    )
    if identity is None:
        raise Refused("this conversation has no customer address to reply to")
    recent_inbound = (
        await session.exec(
            select(Message.external_id, Message.meta)
            .where(Message.conversation_id == conversation.id, Message.direction == "in")
            .order_by(col(Message.accepted_at).desc(), col(Message.id).desc())
            .limit(10)
        )
    ).all()
    # Answer the customer's latest own message, never an auto-reply or a bounce.
    last_inbound, last_meta = next(
        ((ext, meta) for ext, meta in recent_inbound if not (meta or {}).get("automated")),
        (None, {}),
    )
    await session.flush()
    assert message.id is not None and conversation.id is not None
    return OutboundMessage(
        message_id=message.id,
        conversation_id=conversation.id,
        inbox_id=inbox.id or 0,
        channel=inbox.channel,
        recipient=Identity(
            kind=identity.kind,
            value=identity.value,
            display_name=identity.display_name,
        ),
        text=message.text,
        attachments=tuple(files),
        in_reply_to=last_inbound,
        idempotency_key=key,
        template=message.meta.get("template"),
        template_variables=message.meta.get("template_variables") or {},
        subject=conversation.subject,
        references=tuple(str(r) for r in (last_meta or {}).get("references", [])),
    )


def _template_text(template: str, variables: dict[str, str]) -> str:
    """What the thread shows for a template message: its id and the values filled in."""
    filled = ", ".join(f"{{{{{name}}}}}={value}" for name, value in sorted(variables.items()))
    return f"[template {template}]" + (f" {filled}" if filled else "")


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
    await ctx.publish(events)
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
    await ctx.publish([event])
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
        if session.bind is not None and session.bind.dialect.name == "postgresql":
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
    if events:
        await ctx.publish(events)
    return len(events) // 2
