"""Threading: an accepted inbound message becomes a stored message of the right conversation.

One transaction per message (or per batch, each message in its own savepoint): deduplicate
on (inbox, external id) with one atomic insert, resolve the contact from the sender identity,
find or open the conversation, assign it. Events are published after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import literal, text, union_all, update
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
from inbox.assignment import auto_assign
from inbox.context import InboxContext
from inbox.models import (
    Contact,
    ContactIdentity,
    Conversation,
    Inbox,
    Message,
    ThreadKey,
)
from inbox.views import contact_view, conversation_labels, conversation_view, message_view

log = logging.getLogger("switchboard.threading")

PREVIEW_CHARS = 280
# Set on a batch's session once the thread keys of all its messages are locked.
_KEYS_LOCKED = "switchboard.thread_keys_locked"
# A thread hint naming a conversation directly; channels send it only once they verified
# it (e.g. a signed reply address).
DIRECT_HINT = "conversation:"
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
    suppressed: bool = False  # automated, with no conversation to join: not stored


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
    if _is_postgresql(session):
        # Serialise the messages of one contact so two of them never open two conversations
        # (locked in the same round trip that finds the contact).
        query = query.with_for_update(of=Contact)
    existing = (await session.exec(query)).first()
    if existing is not None and existing[0].merged_into_id is not None:
        # Merged while we waited for its lock: the identity belongs to the survivor now.
        existing = (await session.exec(query.execution_options(populate_existing=True))).first()
    if existing is not None and existing[1] is not None:
        return existing[0], existing[1], False
    # On SQLite this transaction is the only writer: no one can add the identity meanwhile,
    # so the savepoint (two more statements per new contact) is for PostgreSQL only.
    savepoint = await session.begin_nested() if _is_postgresql(session) else None
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
        if savepoint is not None:
            await savepoint.commit()
        return contact, identity_id, True
    # Someone else created this identity meanwhile (their insert blocked ours until commit).
    if savepoint is not None:
        await savepoint.rollback()
    else:
        await session.delete(contact)
    winner, winner_identity = (await session.exec(query)).one()
    assert winner_identity is not None
    return winner, winner_identity, False


def _is_postgresql(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def _lock_thread_keys(session: AsyncSession, *messages: InboundMessage) -> None:
    # Serialise messages that share a thread key (a reply and the parent it names, handled
    # at once by two workers), so the second sees the first's conversation and keys instead
    # of opening its own. Sorted, and taken before any other lock: no deadlock. A batch
    # takes the keys of all its messages at once, first.
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return  # SQLite runs one write transaction at a time already
    if session.info.get(_KEYS_LOCKED):
        return
    names = sorted({
        f"thread:{message.inbox_id}:{key}"
        for message in messages
        for key in (message.external_id, *message.references, message.in_reply_to) if key
    })
    # One round trip; the locks are taken in the array's (sorted) order.
    connection = await session.connection()
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
             "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"),
        {"keys": names},
    )


async def _thread_conversation(
    session: AsyncSession, message: InboundMessage
) -> Conversation | None:
    """The conversation an explicit thread hint points to, if any.

    In order: the messages it answers (in_reply_to, then references, nearest first), known
    as stored messages or as thread keys; a channel-verified `conversation:<id>` hint or
    another thread key; and last, a thread key naming this message itself, left by a reply
    that arrived before it (mailbox order is not thread order).
    """
    keys = list(dict.fromkeys(
        k for k in (message.in_reply_to, *reversed(message.references), message.bounce_of) if k
    ))
    if keys:
        # Stored messages and thread keys in one round trip; a stored message wins its key.
        known = union_all(
            select(col(Message.external_id).label("key"),
                   col(Message.conversation_id).label("conversation_id"),
                   literal(0).label("rank"))
            .where(Message.inbox_id == message.inbox_id, col(Message.external_id).in_(keys)),
            select(col(ThreadKey.key).label("key"),
                   col(ThreadKey.conversation_id).label("conversation_id"),
                   literal(1).label("rank"))
            .where(ThreadKey.inbox_id == message.inbox_id, col(ThreadKey.key).in_(keys)),
        ).subquery()
        found: dict[str, Conversation] = {}
        for key, conversation in await session.exec(
            select(known.c.key, Conversation)
            .join(Conversation, col(Conversation.id) == known.c.conversation_id)
            .order_by(known.c.rank)
        ):
            found.setdefault(str(key), conversation)
        for key in keys:
            if key in found:
                return found[key]
    hint = message.thread_hint
    if hint and hint.startswith(DIRECT_HINT) and hint[len(DIRECT_HINT):].isdigit():
        direct = await session.get(Conversation, int(hint[len(DIRECT_HINT):]))
        if direct is not None and direct.inbox_id == message.inbox_id:
            return direct
    names = [name for name in (hint, message.external_id) if name is not None]
    named = {
        key: conversation
        for key, conversation in await session.exec(
            select(ThreadKey.key, Conversation)
            .join(Conversation, col(ThreadKey.conversation_id) == col(Conversation.id))
            .where(ThreadKey.inbox_id == message.inbox_id, col(ThreadKey.key).in_(names))
        )
    }
    return next((named[name] for name in names if name in named), None)


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
        result = await _duplicate(ctx, dup, redelivered=redelivered)
    if result.events:
        await ctx.publish(result.events)
    return result


async def ingest_many(
    ctx: InboxContext, items: Sequence[tuple[InboundMessage, bool]]
) -> list[Ingested | Exception]:
    """Store several inbound messages (each with its `redelivered`) in one transaction.

    Optimistic: the batch commits only if every message goes in. Anything else (a duplicate,
    an unknown inbox, a deadlock between two workers' batches) rolls it back, and its
    messages are done again one at a time, each with its own result or exception as
    `ingest` gives it. The events of all go out after the commit, in order.
    """
    if len(items) == 1:
        return [await _ingest_one(ctx, *items[0])]
    results: list[Ingested | Exception] = []
    try:
        async with ctx.db.write() as session:
            await _lock_thread_keys(session, *(message for message, _ in items))
            session.info[_KEYS_LOCKED] = True
            for message, _ in items:
                results.append(await _ingest(ctx, session, message))
    except Exception as exc:
        if not isinstance(exc, _Duplicate | UnknownInbox):
            log.warning("a batch of %d inbound messages failed as a whole; one at a time now",
                        len(items), exc_info=True)
        return [await _ingest_one(ctx, message, redelivered) for message, redelivered in items]
    events = [event for r in results if isinstance(r, Ingested) for event in r.events]
    if events:
        await ctx.publish(events)
    return results


async def _ingest_one(
    ctx: InboxContext, message: InboundMessage, redelivered: bool
) -> Ingested | Exception:
    try:
        return await ingest(ctx, message, redelivered=redelivered)
    except Exception as exc:
        return exc


async def _duplicate(ctx: InboxContext, dup: _Duplicate, *, redelivered: bool) -> Ingested:
    result = Ingested(dup.message_id, dup.conversation_id, duplicate=True)
    if redelivered and dup.message_id is not None:
        # This bus entry was handled before a crash that may have come before its
        # events went out: publish the message again (consumers dedupe on its id).
        result.events = await _replay_events(ctx, dup.message_id)
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
        view = conversation_view(conversation, channel=inbox.channel, contact_name=contact.name,
                                 labels=await conversation_labels(session, row.conversation_id))
        return [
            MessageCreated(
                inbox_id=row.inbox_id, at=utcnow(), message=message_view(row), conversation=view
            )
        ]


async def _ingest(ctx: InboxContext, session: AsyncSession, message: InboundMessage) -> Ingested:
    now = utcnow()
    inbox = await ctx.inboxes.get(session, message.inbox_id)
    if inbox is None:
        raise UnknownInbox(f"inbox {message.inbox_id} does not exist")
    events: list[View] = []
    await _lock_thread_keys(session, message)
    if message.bounce_of:
        events += await _mark_bounced(session, message)
    if message.automated:
        # Auto-replies, bounces and our own mail never open (or reopen) a conversation:
        # they are kept only where the thread already exists.
        joined = await _thread_conversation(session, message)
        if joined is None:
            return Ingested(None, None, events=events, suppressed=True)
    contact, identity_id, contact_created = await _resolve_contact(session, message.sender, now)
    assert contact.id is not None
    if contact_created and not message.automated:
        events.append(
            ContactCreated(inbox_id=inbox.id, at=now, contact=await contact_view(
                session, contact, identities=[message.sender]))
        )

    window = timedelta(seconds=ctx.settings.reopen_window_seconds)
    conversation = await _thread_conversation(session, message)
    # A contact created just now has no conversation to look for.
    if conversation is None and not message.automated and not contact_created:
        conversation = await _contact_conversation(
            session, inbox_id=inbox.id, contact_id=contact.id
        )
    if (
        conversation is not None
        and conversation.status == "resolved"
        and (conversation.resolved_at or now) < now - window
        and not message.automated
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
            meta=_meta(message),
            provider_ts=message.provider_ts,
            accepted_at=message.received_at,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["inbox_id", "external_id"])
        .returning(*Message.__table__.columns)  # type: ignore[attr-defined]
    )
    row = inserted.first()
    stored = Message.model_validate(dict(row._mapping)) if row is not None else None
    message_id = stored.id if stored is not None else None
    if stored is None or message_id is None:
        existing = (
            await session.exec(
                select(Message.id, Message.conversation_id).where(
                    Message.inbox_id == inbox.id, Message.external_id == message.external_id
                )
            )
        ).first()
        # Raising rolls back whatever this attempt created (contact, conversation).
        raise _Duplicate(*(existing or (None, None)))

    if message.thread_hint and not message.thread_hint.startswith(DIRECT_HINT):
        await session.exec(
            _insert(session, ThreadKey)
            .values(inbox_id=inbox.id, key=message.thread_hint, conversation_id=conversation.id)
            .on_conflict_do_update(
                index_elements=["inbox_id", "key"], set_={"conversation_id": conversation.id}
            )
        )
    parents = list(dict.fromkeys(k for k in (*message.references, message.in_reply_to) if k))
    if parents:
        # The messages this one answers may arrive later: they will find this conversation.
        # A key another conversation holds already stays with it.
        await session.exec(
            _insert(session, ThreadKey)
            .values([{"inbox_id": inbox.id, "key": key[:998], "conversation_id": conversation.id}
                     for key in parents])
            .on_conflict_do_nothing(index_elements=["inbox_id", "key"])
        )
    if message.automated:
        view = conversation_view(conversation, channel=inbox.channel, contact_name=contact.name,
                                 labels=await conversation_labels(session, conversation.id))
        events.append(MessageCreated(inbox_id=inbox.id, at=now, message=message_view(stored),
                                     conversation=view))
        return Ingested(message_id, conversation.id, events=events)

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
    notices: list[View] = []
    # Nobody has it and it is not waiting in the queue already: route, assign or queue it.
    if conversation.assignee_id is None and inbox.auto_assign and not conversation.waiting_since:
        notices = await auto_assign(
            session, conversation, channel=inbox.channel, contact=contact,
            first=message if created else None, now=now,
            presence_seconds=ctx.settings.presence_seconds,
        )
        assigned = conversation.assignee_id is not None
    session.add(conversation)
    await session.flush()
    view = conversation_view(
        conversation, channel=inbox.channel, contact_name=contact.name,
        labels=() if created else await conversation_labels(session, conversation.id),
    )
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
    events += notices
    return Ingested(message_id, conversation.id, events=events)


def _meta(message: InboundMessage) -> dict[str, object]:
    meta: dict[str, object] = dict(message.metadata)
    if message.references:
        meta["references"] = list(message.references)
    return meta


async def _mark_bounced(session: AsyncSession, message: InboundMessage) -> list[View]:
    """A report that our outgoing message could not be delivered marks it failed."""
    row = (
        await session.exec(
            select(Message).where(
                Message.inbox_id == message.inbox_id,
                Message.external_id == message.bounce_of,
                Message.direction == "out",
            )
        )
    ).first()
    if row is None or not _moves_forward(row.status, "failed"):
        return []
    row.status = "failed"
    reason = message.metadata.get("bounce_reason") or message.text or "undeliverable"
    row.status_reason = reason[:1000]
    session.add(row)
    await session.flush()
    return [MessageStatusChanged(inbox_id=row.inbox_id, at=utcnow(), message=message_view(row))]


async def apply_status(ctx: InboxContext, update_: StatusUpdate) -> bool:
    """Move an outgoing message's delivery status forward; False when it is stale.

    Raises UnknownMessage when no outgoing message has the external id yet, so the bus
    delivers the update again later instead of losing it.
    """
    async with ctx.db.write() as session:
        query = select(Message).where(
            Message.inbox_id == update_.inbox_id,
            Message.external_id == update_.external_id,
            Message.direction == "out",
        )
        if _is_postgresql(session):
            # Two callbacks of one message handled at once: the second waits and then
            # sees the first's status, so a late "delivered" never overwrites "read".
            query = query.with_for_update()
        row = (await session.exec(query)).first()
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
        # Locked for the same reason as apply_status: a callback may race the send result.
        row = await session.get(Message, message_id, with_for_update=_is_postgresql(session))
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
