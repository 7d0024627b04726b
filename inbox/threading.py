"""Threading: an accepted inbound message becomes a stored message of the right conversation.

One transaction per message: deduplicate on (inbox, external id) with one atomic insert,
resolve the contact from the sender identity, find or open the conversation, assign it.
Events are returned to the caller, which publishes them after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import (
    ContactCreated,
    ConversationAssigned,
    ConversationCreated,
    ConversationStatusChanged,
    MessageCreated,
    MessageStatusChanged,
    View,
)
from hub.types import Identity, InboundMessage, StatusUpdate, utcnow
from inbox.assignment import pick_round_robin
from inbox.context import InboxContext
from inbox.models import (
    Contact,
    ContactIdentity,
    Conversation,
    Inbox,
    Message,
    ThreadKey,
)
from inbox.views import contact_view, conversation_view, message_view

PREVIEW_CHARS = 280
# A later status never goes back to an earlier one: a late "sent" never hides "read".
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


class UnknownInbox(Exception):
    """A message addressed to an inbox that does not exist (permanent: dead-lettered)."""


class UnknownMessage(Exception):
    """A status for a message not stored yet (its send result may still be on its way)."""


@dataclass
class Ingested:
    """What ingesting one message did."""

    message_id: int | None
    conversation_id: int | None
    duplicate: bool = False
    events: list[View] = field(default_factory=list)


def _insert(session: AsyncSession, table: type) -> postgresql.Insert | sqlite.Insert:
    """INSERT with the dialect's ON CONFLICT support (PostgreSQL and SQLite spell it alike)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def _resolve_contact(
    session: AsyncSession, identity: Identity, now: datetime
) -> tuple[Contact, int, bool]:
    """The contact owning `identity` and the identity's id; created when new (race-safe)."""
    query = select(Contact, ContactIdentity.id).join(ContactIdentity).where(
        ContactIdentity.kind == identity.kind, ContactIdentity.value == identity.value
    )
    existing = (await session.exec(query)).first()
    if existing is not None and existing[1] is not None:
        return existing[0], existing[1], False
    savepoint = await session.begin_nested()
    contact = Contact(
        name=identity.display_name,
        email=identity.value if identity.kind == "email" else None,
        phone=identity.value if identity.kind == "phone" else None,
        created_at=now,
    )
    session.add(contact)
    await session.flush()
    inserted = await session.exec(
        _insert(session, ContactIdentity)
        .values(
            contact_id=contact.id,
            kind=identity.kind,
            value=identity.value,
            display_name=identity.display_name,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(col(ContactIdentity.id))
    )
    identity_id = inserted.scalar_one_or_none()
    if identity_id is not None:
        await savepoint.commit()
        return contact, identity_id, True
    # Someone else created this identity meanwhile (their insert blocked ours until commit).
    await savepoint.rollback()
    winner, winner_identity = (await session.exec(query)).one()
    assert winner_identity is not None
    return winner, winner_identity, False


async def _lock_contact(session: AsyncSession, contact_id: int) -> None:
    # Serialise the messages of one contact so two of them never open two conversations.
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.exec(
            select(Contact.id).where(Contact.id == contact_id).with_for_update()
        )


async def _thread_conversation(
    session: AsyncSession, message: InboundMessage
) -> Conversation | None:
    """The conversation an explicit thread hint points to, if any."""
    if message.in_reply_to:
        parent = (
            await session.exec(
                select(Conversation)
                .join(Message, col(Message.conversation_id) == col(Conversation.id))
                .where(
                    Message.inbox_id == message.inbox_id,
                    Message.external_id == message.in_reply_to,
                )
            )
        ).first()
        if parent is not None:
            return parent
    for key in (message.in_reply_to, message.thread_hint):
        if key:
            found = (
                await session.exec(
                    select(Conversation)
                    .join(ThreadKey, col(ThreadKey.conversation_id) == col(Conversation.id))
                    .where(ThreadKey.inbox_id == message.inbox_id, ThreadKey.key == key)
                )
            ).first()
            if found is not None:
                return found
    return None


async def _contact_conversation(
    session: AsyncSession, *, inbox_id: int, contact_id: int
) -> Conversation | None:
    """The contact's most recent conversation in the inbox."""
    return (
        await session.exec(
            select(Conversation)
            .where(Conversation.inbox_id == inbox_id, Conversation.contact_id == contact_id)
            .order_by(col(Conversation.last_activity_at).desc(), col(Conversation.id).desc())
            .limit(1)
        )
    ).first()


async def ingest(ctx: InboxContext, message: InboundMessage, *, redelivered: bool) -> Ingested:
    """Store an inbound message in its conversation; events are published after commit."""
    try:
        async with ctx.db.write() as session:
            result = await _ingest(ctx, session, message)
    except _Duplicate as dup:
        result = Ingested(dup.message_id, dup.conversation_id, duplicate=True)
        if redelivered and dup.message_id is not None:
            # This bus entry was handled before a crash that may have come before its
            # events went out: publish the message again (consumers dedupe on its id).
            result.events = await _replay_events(ctx, dup.message_id)
    if result.events:
        await ctx.publish(result.events)
    return result


class _Duplicate(Exception):
    def __init__(self, message_id: int | None, conversation_id: int | None) -> None:
        self.message_id = message_id
        self.conversation_id = conversation_id


async def _replay_events(ctx: InboxContext, message_id: int) -> list[View]:
    async with ctx.db.read() as session:
        row = await session.get(Message, message_id)
        assert row is not None
        conversation = await session.get(Conversation, row.conversation_id)
        inbox = await session.get(Inbox, row.inbox_id)
        contact = await session.get(Contact, conversation.contact_id) if conversation else None
        assert conversation is not None and inbox is not None and contact is not None
        view = conversation_view(conversation, channel=inbox.channel, contact_name=contact.name)
        return [
            MessageCreated(
                inbox_id=row.inbox_id, at=utcnow(), message=message_view(row), conversation=view
            )
        ]


async def _ingest(ctx: InboxContext, session: AsyncSession, message: InboundMessage) -> Ingested:
    now = utcnow()
    inbox = await session.get(Inbox, message.inbox_id)
    if inbox is None or inbox.id is None:
        raise UnknownInbox(f"inbox {message.inbox_id} does not exist")
    events: list[View] = []
    contact, identity_id, contact_created = await _resolve_contact(session, message.sender, now)
    assert contact.id is not None
    await _lock_contact(session, contact.id)
    if contact_created:
        events.append(
            ContactCreated(inbox_id=inbox.id, at=now, contact=await contact_view(session, contact))
        )

    window = timedelta(seconds=ctx.settings.reopen_window_seconds)
    conversation = await _thread_conversation(session, message)
    if conversation is None:
        conversation = await _contact_conversation(
            session, inbox_id=inbox.id, contact_id=contact.id
        )
    if (
        conversation is not None
        and conversation.status == "resolved"
        and (conversation.resolved_at or now) < now - window
    ):
        conversation = None  # too old to reopen: a new conversation starts
    created = conversation is None
    if conversation is None:
        conversation = Conversation(
            inbox_id=inbox.id,
            contact_id=contact.id,
            identity_id=identity_id,
            status="open",
            subject=message.metadata.get("subject"),
            last_activity_at=message.received_at,
            created_at=now,
        )
        session.add(conversation)
        await session.flush()
    assert conversation.id is not None

    inserted = await session.exec(
        _insert(session, Message)
        .values(
            conversation_id=conversation.id,
            inbox_id=inbox.id,
            direction="in",
            kind="message",
            text=message.text,
            html=message.html,
            external_id=message.external_id,
            in_reply_to=message.in_reply_to,
            contact_id=contact.id,
            attachments=[a.model_dump(mode="json") for a in message.attachments],
            meta=dict(message.metadata),
            provider_ts=message.provider_ts,
            accepted_at=message.received_at,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["inbox_id", "external_id"])
        .returning(col(Message.id))
    )
    message_id = inserted.scalar_one_or_none()
    if message_id is None:
        existing = (
            await session.exec(
                select(Message.id, Message.conversation_id).where(
                    Message.inbox_id == inbox.id, Message.external_id == message.external_id
                )
            )
        ).first()
        # Raising rolls back whatever this attempt created (contact, conversation).
        raise _Duplicate(*(existing or (None, None)))

    if message.thread_hint:
        await session.exec(
            _insert(session, ThreadKey)
            .values(inbox_id=inbox.id, key=message.thread_hint, conversation_id=conversation.id)
            .on_conflict_do_update(
                index_elements=["inbox_id", "key"], set_={"conversation_id": conversation.id}
            )
        )

    previous_status = conversation.status
    if conversation.status != "open":
        conversation.status = "open"
        conversation.snoozed_until = None
        conversation.resolved_at = None
    # The newest message by acceptance time sets the preview, whatever order we handle them.
    if message.received_at >= conversation.last_activity_at or created:
        conversation.last_activity_at = message.received_at
        conversation.last_message_preview = (message.text or "")[:PREVIEW_CHARS] or None
    conversation.unread_count += 1
    conversation.identity_id = identity_id
    assigned = False
    if conversation.assignee_id is None and inbox.auto_assign:
        agent_id = await pick_round_robin(
            session,
            inbox_id=inbox.id,
            now=now,
            presence_seconds=ctx.settings.presence_seconds,
        )
        if agent_id is not None:
            conversation.assignee_id = agent_id
            assigned = True
    session.add(conversation)
    await session.flush()
    stored = await session.get_one(Message, message_id)
    view = conversation_view(conversation, channel=inbox.channel, contact_name=contact.name)
    if created:
        events.append(ConversationCreated(inbox_id=inbox.id, at=now, conversation=view))
    elif previous_status != "open":
        events.append(
            ConversationStatusChanged(
                inbox_id=inbox.id,
                at=now,
                conversation=view,
                previous_status=previous_status,
                by_agent_id=None,
            )
        )
    events.append(
        MessageCreated(inbox_id=inbox.id, at=now, message=message_view(stored), conversation=view)
    )
    if assigned:
        events.append(
            ConversationAssigned(
                inbox_id=inbox.id,
                at=now,
                conversation=view,
                previous_assignee_id=None,
                by_agent_id=None,
            )
        )
    return Ingested(message_id, conversation.id, events=events)


async def apply_status(ctx: InboxContext, update_: StatusUpdate) -> bool:
    """Move an outgoing message's delivery status forward; False when it is stale.

    Raises UnknownMessage when no outgoing message has the external id yet, so the bus
    delivers the update again later instead of losing it.
    """
    async with ctx.db.write() as session:
        row = (
            await session.exec(
                select(Message).where(
                    Message.inbox_id == update_.inbox_id,
                    Message.external_id == update_.external_id,
                    Message.direction == "out",
                )
            )
        ).first()
        if row is None:
            raise UnknownMessage(f"no outgoing message {update_.external_id!r} yet")
        if not _moves_forward(row.status, update_.status):
            return False
        row.status = update_.status
        row.status_reason = update_.reason if update_.status == "failed" else None
        session.add(row)
        await session.flush()
        event = MessageStatusChanged(inbox_id=row.inbox_id, at=utcnow(), message=message_view(row))
    await ctx.publish([event])
    return True


def _moves_forward(current: str | None, new: str) -> bool:
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current or "queued", -1)


async def set_send_result(
    ctx: InboxContext,
    *,
    message_id: int,
    status: str,
    external_id: str | None = None,
    reason: str | None = None,
) -> None:
    """Record what a channel's send did to an outgoing message."""
    async with ctx.db.write() as session:
        row = await session.get(Message, message_id)
        if row is None:
            return
        values: dict[str, object] = {}
        if external_id and not row.external_id:
            values["external_id"] = external_id
        if _moves_forward(row.status, status):
            values["status"] = status
            values["status_reason"] = reason if status == "failed" else None
        if not values:
            return
        await session.exec(
            update(Message).where(col(Message.id) == message_id).values(**values)
        )
        await session.refresh(row)
        event = MessageStatusChanged(inbox_id=row.inbox_id, at=utcnow(), message=message_view(row))
    await ctx.publish([event])
