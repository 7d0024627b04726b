"""What a website visitor may see and change: their own thread, and the email they leave."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.identity import normalize_email
from hub.types import utcnow
from inbox.attachments import attachment_by_id
from inbox.db import Database, conflict_insert, execute, is_postgresql, is_unavailable
from inbox.models import (
    Agent,
    Attachment,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    ThreadKey,
    VisitorVisit,
    table_of,
)

log = logging.getLogger("switchboard.visitors")
VISIT_FIELDS = ("page_url", "page_title", "referrer", "browser", "os", "language", "time_zone")


class VisitView(BaseModel):
    """What the website chat knows of a contact's visits, for the contact panel."""

    inbox_id: int
    page_url: str | None
    page_title: str | None
    referrer: str | None
    browser: str | None
    os: str | None
    language: str | None
    time_zone: str | None
    verified: bool
    first_seen_at: datetime
    last_seen_at: datetime


async def record_visit(
    session: AsyncSession, *, inbox_id: int, identity_value: str,
    facts: Mapping[str, str | None], verified: bool,
) -> None:
    """Keep where a visitor is now (one upsert): the page, browser, language and time zone
    replace what was known when given; the first visit's time stays."""
    now = utcnow()
    given = {name: facts.get(name) for name in VISIT_FIELDS if facts.get(name)}
    insert = conflict_insert(table_of(VisitorVisit), is_postgresql(session)).values(
        inbox_id=inbox_id, identity_value=identity_value, verified=verified,
        first_seen_at=now, last_seen_at=now, **given)
    await execute(session, insert.on_conflict_do_update(
        index_elements=["identity_value"],
        set_={"last_seen_at": now, "verified": verified,
              **{name: getattr(insert.excluded, name) for name in given}}))


async def remember_visit(
    db: Database, *, inbox_id: int, identity_value: str, facts: Mapping[str, str | None],
    verified: bool,
) -> bool:
    """record_visit in a transaction of its own; while the database is unreachable the visit
    is skipped (the chat goes on: it is a courtesy to agents, not the visitor's message)."""
    try:
        async with db.write() as session:
            await record_visit(session, inbox_id=inbox_id, identity_value=identity_value,
                               facts=facts, verified=verified)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("visit of %s not recorded: the database is unavailable", inbox_id)
        return False
    return True


async def contact_visits(session: AsyncSession, identity_values: list[str]) -> list[VisitView]:
    """The visits behind a contact's widget identities, the latest first."""
    if not identity_values:
        return []
    rows = await session.exec(
        select(VisitorVisit).where(col(VisitorVisit.identity_value).in_(identity_values))
        .order_by(col(VisitorVisit.last_seen_at).desc()))
    return [VisitView.model_validate(row, from_attributes=True) for row in rows]


async def contact_of(session: AsyncSession, *, kind: str, value: str) -> Contact | None:
    """The contact owning an identity, if it exists yet."""
    return (
        await session.exec(
            select(Contact)
            .join(ContactIdentity, col(ContactIdentity.contact_id) == col(Contact.id))
            .where(ContactIdentity.kind == kind, ContactIdentity.value == value)
        )
    ).first()


async def thread_conversation(
    session: AsyncSession, *, inbox_id: int, thread: str
) -> Conversation | None:
    """The conversation a visitor's thread points to now."""
    return (
        await session.exec(
            select(Conversation)
            .join(ThreadKey, col(ThreadKey.conversation_id) == col(Conversation.id))
            .where(ThreadKey.inbox_id == inbox_id, ThreadKey.key == thread)
        )
    ).first()


async def visitor_thread(
    session: AsyncSession, *, conversation_id: int, limit: int = 100
) -> list[Message]:
    """The visitor-visible messages of a conversation, oldest first (never notes)."""
    rows = await session.exec(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.kind == "message")
        .order_by(col(Message.accepted_at).desc(), col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


def event_shape(message: Message) -> dict[str, Any]:
    """A stored message in the shape of a message.created event's message (what the
    widget's view of a message is made from)."""
    return {"id": message.id, "direction": message.direction, "text": message.text,
            "external_id": message.external_id, "attachments": message.attachments,
            "accepted_at": message.accepted_at.isoformat(), "agent_id": message.agent_id,
            "survey": bool((message.meta or {}).get("survey"))}


async def agent_first_names(session: AsyncSession, agent_ids: set[int]) -> dict[int, str]:
    """What a visitor sees of the agents who answered: their first names."""
    if not agent_ids:
        return {}
    rows = await session.exec(select(Agent.id, Agent.name).where(col(Agent.id).in_(agent_ids)))
    return {agent_id: (name.split() or ["Agent"])[0] for agent_id, name in rows
            if agent_id is not None}


async def visitor_attachment(
    session: AsyncSession, *, inbox_id: int, thread: str, attachment_id: str
) -> Attachment | None:
    """A file of a message the visitor sees in their own thread, else None."""
    conversation = await thread_conversation(session, inbox_id=inbox_id, thread=thread)
    if conversation is None:
        return None
    files = await session.exec(
        select(Message.attachments)
        .where(Message.conversation_id == conversation.id, Message.kind == "message")
    )
    if not any(f.get("id") == attachment_id for found in files for f in found or ()):
        return None
    row = await attachment_by_id(session, attachment_id)
    return row if row is not None and row.inbox_id == inbox_id else None


async def leave_email(session: AsyncSession, *, contact_id: int, email: str) -> bool:
    """Attach an email a visitor typed; True when it now identifies the contact.

    The address is not verified, so it never merges into another contact that already owns
    it: it is kept on the contact for agents to see, and linking waits for a verified signal.
    """
    address = normalize_email(email)
    contact = await session.get_one(Contact, contact_id)
    contact.email = address
    session.add(contact)
    owner = (
        await session.exec(
            select(ContactIdentity).where(
                ContactIdentity.kind == "email", ContactIdentity.value == address
            )
        )
    ).first()
    if owner is None:
        session.add(ContactIdentity(contact_id=contact_id, kind="email", value=address))
        await session.flush()
        return True
    return owner.contact_id == contact_id
