"""Notifications of one agent: a mention of them in a note, a conversation assigned to them.

Each is a row (the "Mentions" view and the unread badge read them) and an event sent to that
agent alone (`audience`), so their open browser tabs show it live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import NotificationCreated, NotificationView
from hub.types import utcnow
from inbox.agents import Principal
from inbox.db import insert_ids
from inbox.models import NOTIFICATION_KINDS, Conversation, Notification, table_of
from inbox.queries import MAX_PAGE, InvalidQuery, decode_cursor, encode_cursor

PREVIEW_CHARS = 200


def notification_view(row: Notification, text: str | None = None) -> NotificationView:
    """The public view of a notification row; `text` (default: the stored one) says what about."""
    assert row.id is not None
    return NotificationView(
        id=row.id, agent_id=row.agent_id, kind=row.kind, conversation_id=row.conversation_id,
        message_id=row.message_id, by_agent_id=row.by_agent_id,
        text=(row.text if text is None else text)[:PREVIEW_CHARS],
        read_at=row.read_at, created_at=row.created_at,
    )


async def notify(
    session: AsyncSession,
    *,
    agent_id: int,
    kind: str,
    conversation: Conversation,
    text: str,
    message_id: int | None = None,
    by_agent_id: int | None = None,
) -> NotificationCreated:
    """Store a notification for an agent; publish the returned event after the commit."""
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    assert conversation.id is not None
    row = Notification(agent_id=agent_id, kind=kind, conversation_id=conversation.id,
                       message_id=message_id, by_agent_id=by_agent_id,
                       text=text[:PREVIEW_CHARS])
    session.add(row)
    await session.flush()
    return NotificationCreated(
        inbox_id=conversation.inbox_id, at=utcnow(), audience=[agent_id],
        notification=notification_view(row, text),
    )


@dataclass(frozen=True)
class NewNotification:
    """A notification to store (see notify_many)."""

    agent_id: int
    kind: str
    inbox_id: int
    conversation_id: int
    text: str
    message_id: int | None = None
    by_agent_id: int | None = None


async def notify_many(
    session: AsyncSession, new: Sequence[NewNotification]
) -> list[NotificationCreated]:
    """Store several notifications in one statement; their events, to publish with the change."""
    if not new:
        return []
    now = utcnow()
    rows = [{"agent_id": n.agent_id, "kind": n.kind, "conversation_id": n.conversation_id,
             "message_id": n.message_id, "by_agent_id": n.by_agent_id,
             "text": n.text[:PREVIEW_CHARS], "created_at": now} for n in new]
    ids = await insert_ids(session, table_of(Notification), rows)
    events = []
    for row_id, n, row in zip(ids, new, rows, strict=True):
        view = NotificationView(
            id=row_id, agent_id=n.agent_id, kind=n.kind, conversation_id=n.conversation_id,
            message_id=n.message_id, by_agent_id=n.by_agent_id, text=row["text"], read_at=None,
            created_at=now)
        events.append(NotificationCreated(inbox_id=n.inbox_id, at=now, audience=[n.agent_id],
                                          notification=view))
    return events


async def list_notifications(
    session: AsyncSession,
    principal: Principal,
    *,
    kind: str | None = None,
    unread: bool = False,
    cursor: str | None = None,
    limit: int = 25,
) -> tuple[list[NotificationView], str | None, int]:
    """A page of the agent's notifications, newest first; the next cursor; how many unread.

    Only notifications about conversations the agent may still see are shown or counted.
    """
    if kind is not None and kind not in NOTIFICATION_KINDS:
        raise InvalidQuery(f"kind must be one of {', '.join(NOTIFICATION_KINDS)}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}")
    mine = select(Notification).where(
        Notification.agent_id == principal.agent_id,
        col(Notification.conversation_id).in_(
            select(Conversation.id).where(
                col(Conversation.inbox_id).in_(sorted(principal.inbox_ids)))
        ),
    )
    if kind is not None:
        mine = mine.where(Notification.kind == kind)
    unread_count = (await session.exec(
        select(func.count()).select_from(
            mine.where(col(Notification.read_at).is_(None)).subquery())
    )).one()
    if unread:
        mine = mine.where(col(Notification.read_at).is_(None))
    if cursor:
        _, before = decode_cursor(cursor)
        mine = mine.where(col(Notification.id) < before)
    rows = list(await session.exec(mine.order_by(col(Notification.id).desc()).limit(limit + 1)))
    next_cursor = (encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id or 0)
                   if len(rows) > limit else None)
    return [notification_view(row) for row in rows[:limit]], next_cursor, int(unread_count)


async def mark_notifications_read(
    session: AsyncSession, principal: Principal, *, ids: list[int] | None, every: bool
) -> int:
    """Mark the agent's notifications read (these ids, or all); return how many changed."""
    query = update(Notification).where(
        col(Notification.agent_id) == principal.agent_id, col(Notification.read_at).is_(None))
    if not every:
        if not ids:
            return 0
        query = query.where(col(Notification.id).in_(ids))
    result = await session.exec(query.values(read_at=utcnow()))
    return int(result.rowcount)
