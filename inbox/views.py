"""Rows to the public views that the API returns and events carry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ContactView, ConversationView, IdentityView, MessageView
from hub.types import Identity
from inbox.models import (
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Inbox,
    Label,
    Message,
)

# How much of the newest message a conversation's preview shows.
PREVIEW_CHARS = 280


def message_view(message: Message | Row[Any]) -> MessageView:
    """The public view of a message: its ORM object, or a row of its table's columns."""
    assert message.id is not None
    return MessageView(
        id=message.id,
        conversation_id=message.conversation_id,
        inbox_id=message.inbox_id,
        direction=message.direction,
        kind=message.kind,
        text=message.text,
        html=message.html,
        external_id=message.external_id,
        contact_id=message.contact_id,
        agent_id=message.agent_id,
        status=message.status,
        status_reason=message.status_reason,
        attachments=message.attachments,
        accepted_at=message.accepted_at,
        created_at=message.created_at,
        edited_at=(message.meta or {}).get("edited_at"),
        sent_elsewhere=bool((message.meta or {}).get("sent_elsewhere")),
        automated=bool((message.meta or {}).get("automated")),
        survey=bool((message.meta or {}).get("survey")),
    )


def conversation_view(
    conversation: Conversation,
    *,
    channel: str,
    contact_name: str | None,
    labels: Iterable[str] = (),
) -> ConversationView:
    """The public view of a conversation row, given its inbox's channel, contact's name, labels."""
    assert conversation.id is not None
    return ConversationView(
        id=conversation.id,
        inbox_id=conversation.inbox_id,
        channel=channel,
        contact_id=conversation.contact_id,
        contact_name=contact_name,
        status=conversation.status,
        assignee_id=conversation.assignee_id,
        team_id=conversation.team_id,
        subject=conversation.subject,
        last_message_preview=conversation.last_message_preview,
        unread_count=conversation.unread_count,
        snoozed_until=conversation.snoozed_until,
        priority=conversation.priority,
        labels=list(labels),
        waiting_since=conversation.waiting_since,
        merged_into_id=conversation.merged_into_id,
        cc=[IdentityView.model_validate(p) for p in conversation.cc or []],
        last_activity_at=conversation.last_activity_at,
        created_at=conversation.created_at,
        sla_due_at=conversation.sla_due_at,
        sla_status=conversation.sla_status,
        csat_score=conversation.csat_score,
        muted=conversation.muted,
    )


async def load_conversation_view(
    session: AsyncSession, conversation: Conversation
) -> ConversationView:
    """The view of a conversation, reading its inbox's channel and its contact's name."""
    inbox = await session.get(Inbox, conversation.inbox_id)
    contact = await session.get(Contact, conversation.contact_id)
    assert inbox is not None and contact is not None and conversation.id is not None
    return conversation_view(conversation, channel=inbox.channel, contact_name=contact.name,
                             labels=await conversation_labels(session, conversation.id))


async def conversation_labels(session: AsyncSession, conversation_id: int) -> list[str]:
    """The label names of one conversation, sorted."""
    return (await label_names(session, [conversation_id])).get(conversation_id, [])


async def label_names(session: AsyncSession, conversation_ids: list[int]) -> dict[int, list[str]]:
    """The label names of each conversation (one query for a whole page), sorted by name."""
    if not conversation_ids:
        return {}
    rows = await session.exec(
        select(ConversationLabel.conversation_id, Label.name)
        .join(Label, col(Label.id) == col(ConversationLabel.label_id))
        .where(col(ConversationLabel.conversation_id).in_(conversation_ids))
        .order_by(func.lower(Label.name), col(Label.name))
    )
    found: dict[int, list[str]] = {}
    for conversation_id, name in rows:
        found.setdefault(conversation_id, []).append(name)
    return found


async def contact_view(
    session: AsyncSession,
    contact: Contact,
    *,
    identities: Sequence[ContactIdentity | Identity] | None = None,
) -> ContactView:
    """The view of a contact with its identities (read unless the caller knows them)."""
    assert contact.id is not None
    if identities is None:
        identities = list(await session.exec(
            select(ContactIdentity)
            .where(ContactIdentity.contact_id == contact.id)
            .order_by(ContactIdentity.id)  # type: ignore[arg-type]
        ))
    return ContactView(
        id=contact.id,
        name=contact.name,
        email=contact.email,
        phone=contact.phone,
        attributes=contact.attributes,
        created_at=contact.created_at,
        identities=[
            IdentityView(kind=i.kind, value=i.value, display_name=i.display_name)
            for i in identities
        ],
    )
