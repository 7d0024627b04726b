"""Reads for agents: every query is limited to the inboxes the principal may see."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Integer, and_, bindparam, func, or_, true, tuple_
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ConversationView, MessageView
from hub.types import MAX_ROW_ID
from inbox.agents import Principal
from inbox.db import is_postgresql
from inbox.models import (
    CONVERSATION_STATUSES,
    PRIORITIES,
    Contact,
    Conversation,
    ConversationLabel,
    Inbox,
    Label,
    Message,
    table_of,
)
from inbox.views import conversation_view, label_names, message_view

MAX_PAGE = 100


class InvalidQuery(ValueError):
    """A filter or cursor that cannot be understood, with a message for the caller."""


SLA_FILTERS = {"at_risk": ("at_risk",), "breached": ("breached",),
               "running": ("ok", "at_risk", "breached")}


@dataclass(frozen=True)
class ConversationFilter:
    """What the conversation list shows."""

    inbox_id: int | None = None
    statuses: tuple[str, ...] = ()
    assignee: str | None = None  # "me", "none", or an agent id
    contact_id: int | None = None
    label: str | None = None  # a label's name
    team_id: int | None = None
    priority: str | None = None
    waiting: bool | None = None  # True: only the queue; False: none of it
    # "at_risk", "breached", or "running" (an SLA target counts: ok, at risk or breached).
    sla: str | None = None
    # "activity" (newest first) or "sla_due" (the soonest due SLA target first).
    sort: str = "activity"

    def __post_init__(self) -> None:
        if self.sla not in (None, *SLA_FILTERS):
            raise InvalidQuery(f"unknown sla {self.sla!r}; use {', '.join(SLA_FILTERS)}")
        if self.sort not in ("activity", "sla_due"):
            raise InvalidQuery("sort must be 'activity' or 'sla_due'")
        bad = [s for s in self.statuses if s not in CONVERSATION_STATUSES]
        if self.priority is not None and self.priority not in PRIORITIES:
            raise InvalidQuery(f"unknown priority {self.priority!r}; use {', '.join(PRIORITIES)}")
        if bad:
            raise InvalidQuery(f"unknown status {bad[0]!r}; use {', '.join(CONVERSATION_STATUSES)}")
        if self.assignee not in (None, "me", "none") and not is_row_id(str(self.assignee)):
            raise InvalidQuery("assignee must be 'me', 'none' or an agent id")


MAX_ID = MAX_ROW_ID  # ids are 32-bit integers in the database


def is_row_id(value: str) -> bool:
    """Whether a string is a row id the database can hold (ASCII digits, 32-bit): str.isdigit
    alone also takes "²", which int() refuses."""
    return value.isascii() and value.isdigit() and int(value) <= MAX_ID


def encode_cursor(at: datetime, row_id: int) -> str:
    """An opaque keyset cursor for (timestamp, id)."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (timestamp, id) of a cursor; InvalidQuery when it was not made by encode_cursor."""
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError
        if not is_row_id(row_id):
            raise ValueError
        return parsed, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("invalid cursor") from None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def _with_channel_and_contact() -> Any:
    """Conversations with their inbox's channel and their contact's name, for their view."""
    return (
        select(Conversation, Inbox.channel, Contact.name)
        .join(Inbox, col(Inbox.id) == col(Conversation.inbox_id))
        .join(Contact, col(Contact.id) == col(Conversation.contact_id))
    )


async def list_conversations(
    session: AsyncSession,
    principal: Principal,
    filters: ConversationFilter,
    *,
    cursor: str | None = None,
    limit: int = 25,
) -> tuple[list[ConversationView], str | None]:
    """A page of conversations, newest activity first, and the cursor of the next page."""
    limit = _limit(limit)
    inbox_ids = principal.inbox_ids
    if filters.inbox_id is not None:
        inbox_ids = inbox_ids & {filters.inbox_id}
    if not inbox_ids:
        return [], None
    query = (
        _with_channel_and_contact()
        .where(col(Conversation.inbox_id).in_(sorted(inbox_ids)))
    )
    if filters.statuses:
        query = query.where(col(Conversation.status).in_(filters.statuses))
    if filters.assignee == "me":
        query = query.where(Conversation.assignee_id == principal.agent_id)
    elif filters.assignee == "none":
        query = query.where(col(Conversation.assignee_id).is_(None))
    elif filters.assignee is not None:
        query = query.where(Conversation.assignee_id == int(filters.assignee))
    if filters.contact_id is not None:
        query = query.where(Conversation.contact_id == filters.contact_id)
    if filters.label is not None:
        query = query.where(col(Conversation.id).in_(
            select(ConversationLabel.conversation_id)
            .join(Label, col(Label.id) == col(ConversationLabel.label_id))
            .where(func.lower(Label.name) == filters.label.strip().lower())
        ))
    if filters.team_id is not None:
        query = query.where(Conversation.team_id == filters.team_id)
    if filters.priority is not None:
        query = query.where(Conversation.priority == filters.priority)
    if filters.waiting is not None:
        waits = col(Conversation.waiting_since)
        query = query.where(waits.is_not(None) if filters.waiting else waits.is_(None))
    if filters.sla is not None:
        query = query.where(col(Conversation.sla_status).in_(SLA_FILTERS[filters.sla]))
    if filters.sort == "sla_due":
        return await _by_sla_due(session, query, cursor, limit)
    if cursor:
        at, row_id = decode_cursor(cursor)
        query = query.where(
            tuple_(col(Conversation.last_activity_at), col(Conversation.id)) < tuple_(at, row_id)
        )
    postgresql = is_postgresql(session)
    if postgresql and _merge_inboxes(principal, filters, inbox_ids):
        query = _newest_of_each_inbox(query, inbox_ids, limit + 1)
    query = query.order_by(
        col(Conversation.last_activity_at).desc(), col(Conversation.id).desc()
    ).limit(limit + 1)
    rows = list(await session.exec(query))
    labels = await label_names(session, [c.id for c, _, _ in rows[:limit] if c.id is not None])
    views = [conversation_view(c, channel=ch, contact_name=n, labels=labels.get(c.id or 0, ()))
             for c, ch, n in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = views[-1]
        next_cursor = encode_cursor(last.last_activity_at, last.id)
    return views, next_cursor


async def _by_sla_due(session: AsyncSession, query: Any, cursor: str | None,
                      limit: int) -> tuple[list[ConversationView], str | None]:
    """The page of conversations whose SLA is due soonest (those with a running target)."""
    due = col(Conversation.sla_due_at)
    query = query.where(due.is_not(None))
    if cursor:
        at, row_id = decode_cursor(cursor)
        query = query.where(tuple_(due, col(Conversation.id)) > tuple_(at, row_id))
    rows = list(await session.exec(query.order_by(due, col(Conversation.id)).limit(limit + 1)))
    labels = await label_names(session, [c.id for c, _, _ in rows[:limit] if c.id is not None])
    views = [conversation_view(c, channel=ch, contact_name=n, labels=labels.get(c.id or 0, ()))
             for c, ch, n in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and views[-1].sla_due_at is not None:
        next_cursor = encode_cursor(views[-1].sla_due_at, views[-1].id)
    return views, next_cursor


def _merge_inboxes(
    principal: Principal, filters: ConversationFilter, inbox_ids: frozenset[int]
) -> bool:
    """Whether only one ordered scan per inbox gives the page in time order.

    One status, an assignee, a team or a contact each have an index in time order across
    inboxes (PostgreSQL walks it and skips the other inboxes); so does every inbox at once.
    """
    every_inbox = principal.is_admin and filters.inbox_id is None
    ordered_elsewhere = (len(filters.statuses) == 1 or filters.assignee is not None
                         or filters.team_id is not None or filters.contact_id is not None)
    return len(inbox_ids) > 1 and not every_inbox and not ordered_elsewhere


def _newest_of_each_inbox(query: Any, inbox_ids: frozenset[int], count: int) -> Any:
    """PostgreSQL: the same page, taken from the newest `count` matches of each inbox.

    One ordered scan of ix_conversations_inbox_activity per inbox (a LATERAL join), merged:
    a page costs the same at any depth and with any status, where a plain IN over several
    inboxes makes PostgreSQL read every conversation of those inboxes and sort them.
    """
    inbox = func.unnest(bindparam("each_inbox_id", sorted(inbox_ids), type_=ARRAY(Integer))
                        ).table_valued("id").render_derived(name="each_inbox")
    newest = (
        select(col(Conversation.id))
        .where(col(Conversation.inbox_id) == inbox.c.id, query.whereclause)
        .order_by(col(Conversation.last_activity_at).desc(), col(Conversation.id).desc())
        .limit(count)
        .correlate(inbox)
        .lateral("newest")
    )
    return query.where(col(Conversation.id).in_(
        select(newest.c.id).select_from(inbox).join(newest, true())
    ))


async def visible_conversation(
    session: AsyncSession, principal: Principal, conversation_id: int
) -> Conversation | None:
    """The conversation if it exists and the principal may see it."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.inbox_id not in principal.inbox_ids:
        return None
    return conversation


async def get_conversation(
    session: AsyncSession, principal: Principal, conversation_id: int
) -> ConversationView | None:
    """One conversation's view, or None when missing or not visible."""
    found = (await session.exec(
        _with_channel_and_contact().where(col(Conversation.id) == conversation_id))).first()
    if found is None or found[0].inbox_id not in principal.inbox_ids:
        return None
    conversation, channel, contact_name = found
    labels = await label_names(session, [conversation_id])
    return conversation_view(conversation, channel=channel, contact_name=contact_name,
                             labels=labels.get(conversation_id, ()))


async def reply_window_closes_at(
    session: AsyncSession, *, conversation_id: int, opened_at: datetime, hours: int
) -> datetime:
    """When a reply window of `hours` after the customer last wrote closes (or closed).

    A conversation the customer never wrote in has no open window: it closed when it
    was opened (`opened_at`).
    """
    last = (
        await session.exec(
            select(Message.accepted_at)
            .where(Message.conversation_id == conversation_id, Message.direction == "in")
            .order_by(col(Message.accepted_at).desc())
            .limit(1)
        )
    ).first()
    return opened_at if last is None else last + timedelta(hours=hours)


async def list_messages(
    session: AsyncSession,
    principal: Principal,
    conversation_id: int,
    *,
    before: str | None = None,
    limit: int = 50,
) -> tuple[list[MessageView], str | None] | None:
    """The newest messages (before a cursor), oldest first, and the cursor of older ones."""
    limit = _limit(limit)
    inbox_id = (await session.exec(
        select(Conversation.inbox_id).where(Conversation.id == conversation_id))).first()
    if inbox_id is None or inbox_id not in principal.inbox_ids:
        return None
    # Columns, not ORM objects: a page of 50 is read-only, and loading it into the session
    # cost about as much as the query itself.
    messages = table_of(Message)
    query: Any = core_select(*messages.columns).where(
        messages.c.conversation_id == conversation_id)
    if before:
        at, row_id = decode_cursor(before)
        query = query.where(
            or_(
                messages.c.accepted_at < at,
                and_(messages.c.accepted_at == at, messages.c.id < row_id),
            )
        )
    rows = list(await session.exec(
        query.order_by(messages.c.accepted_at.desc(), messages.c.id.desc()).limit(limit + 1)))
    older = None
    if len(rows) > limit:
        rows = rows[:limit]
        older = encode_cursor(rows[-1].accepted_at, rows[-1].id or 0)
    return [message_view(m) for m in reversed(rows)], older


async def contact_is_visible(session: AsyncSession, principal: Principal, contact_id: int) -> bool:
    """Whether the contact has a conversation in an inbox the principal may see (admins: all)."""
    if principal.is_admin:
        return True
    shared = (
        await session.exec(
            select(Conversation.id)
            .where(
                Conversation.contact_id == contact_id,
                col(Conversation.inbox_id).in_(sorted(principal.inbox_ids)),
            )
            .limit(1)
        )
    ).first()
    return shared is not None


async def visible_message_html(
    session: AsyncSession, principal: Principal, message_id: int
) -> str | None:
    """The sanitised HTML of a message the principal may see, or None (none, or not theirs)."""
    row = (await session.exec(
        select(Message.html).where(Message.id == message_id,
                                   col(Message.inbox_id).in_(principal.inbox_ids))
    )).first()
    return row if isinstance(row, str) and row else None
