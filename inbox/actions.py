"""Agent actions: reply, note, assign, change status, mark read.

Each action checks the principal, changes the database in one transaction, and only after
the commit publishes its events (and, for a reply, the send request).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import OUTBOUND
from hub.events import (
    ConversationAssigned,
    ConversationRead,
    ConversationStatusChanged,
    ConversationTyping,
    ConversationView,
    MessageCreated,
    MessageView,
    View,
)
from hub.types import Identity, OutboundMessage, encode, utcnow
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.models import (
    CONVERSATION_STATUSES,
    Agent,
    ContactIdentity,
    Conversation,
    Inbox,
    InboxMember,
    Message,
)
from inbox.queries import reply_window_closes_at, visible_conversation
from inbox.threading import PREVIEW_CHARS
from inbox.views import load_conversation_view, message_view

MAX_TEXT = 20_000


class NotFound(LookupError):
    """The conversation does not exist or the agent may not see it (both look the same)."""


class Refused(ValueError):
    """An action the rules do not allow, with a message for the agent."""


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


async def _activity(
    session: AsyncSession, conversation: Conversation, text: str, agent_id: int | None
) -> Message:
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


async def _change_with_activity(
    session: AsyncSession,
    conversation: Conversation,
    text: str,
    agent_id: int | None,
    change: Callable[[ConversationView, datetime], View],
) -> tuple[ConversationView, list[View]]:
    """An activity line for a change, and the change's event followed by the line's."""
    line = await _activity(session, conversation, text, agent_id)
    view = await load_conversation_view(session, conversation)
    now = utcnow()
    return view, [
        change(view, now),
        MessageCreated(inbox_id=conversation.inbox_id, at=now, message=message_view(line),
                       conversation=view),
    ]


async def _agent_name(session: AsyncSession, agent_id: int | None) -> str:
    if agent_id is None:
        return "nobody"
    agent = await session.get(Agent, agent_id)
    return agent.name if agent else f"agent {agent_id}"


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
) -> MessageView:
    """Send a reply on the customer's channel (queued) or leave an internal note.

    On a channel with a reply window (`reply_window_hours`, from its capabilities) free
    text goes out only while the window is open; a template (with its variables) always may.
    """
    text = text.strip()
    variables = dict(template_variables or {})
    if template is not None:
        if kind != "message":
            raise Refused("only a message to the customer can be a template")
        text = text or _template_text(template, variables)
    elif variables:
        raise Refused("template_variables go only with a template")
    if not text:
        raise Refused("a message needs some text")
    if len(text) > MAX_TEXT:
        raise Refused(f"a message may have at most {MAX_TEXT} characters")
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
        if kind == "message" and template is None and reply_window_hours is not None:
            closes_at = await reply_window_closes_at(
                session, conversation_id=conversation_id, opened_at=conversation.created_at,
                hours=reply_window_hours,
            )
            if closes_at <= now:
                raise WindowClosed(reply_window_hours, closes_at)
        message = Message(
            conversation_id=conversation_id,
            inbox_id=conversation.inbox_id,
            direction="out",
            kind=kind,
            text=text,
            agent_id=principal.agent_id,
            idempotency_key=key,
            status="queued" if kind == "message" else None,
            meta={"template": template, "template_variables": variables} if template else {},
            accepted_at=now,
            created_at=now,
        )
        session.add(message)
        if kind == "message":
            outbound = await _send_request(session, conversation, message, key)
            conversation.last_message_preview = text[:PREVIEW_CHARS]
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
    await ctx.publish([event])
    if outbound is not None:
        await ctx.bus.add(OUTBOUND, encode(outbound))
    return view


async def _send_request(
    session: AsyncSession, conversation: Conversation, message: Message, key: str
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


async def assign(
    ctx: InboxContext,
    principal: Principal,
    *,
    conversation_id: int,
    assignee_id: int | None,
) -> View:
    """Give a conversation to an agent of its inbox, or unassign it."""
    async with ctx.db.write() as session:
        conversation = await _conversation(session, principal, conversation_id)
        if assignee_id is not None:
            agent = await session.get(Agent, assignee_id)
            member = await session.get(InboxMember, (conversation.inbox_id, assignee_id))
            if agent is None or not agent.is_active or (member is None and agent.role != "admin"):
                raise Refused("the assignee must be an active agent of this conversation's inbox")
        previous = conversation.assignee_id
        if previous == assignee_id:
            return await load_conversation_view(session, conversation)
        conversation.assignee_id = assignee_id
        session.add(conversation)
        by = await _agent_name(session, principal.agent_id)
        text = (
            f"{by} assigned this conversation to {await _agent_name(session, assignee_id)}"
            if assignee_id is not None
            else f"{by} unassigned this conversation"
        )
        view, events = await _change_with_activity(
            session, conversation, text, principal.agent_id,
            lambda view, at: ConversationAssigned(
                inbox_id=view.inbox_id, at=at, conversation=view,
                previous_assignee_id=previous, by_agent_id=principal.agent_id,
            ),
        )
    await ctx.publish(events)
    return view


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
