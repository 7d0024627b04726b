"""The SQL of ingest (inbox/ingest.py): what a batch reads and writes, one statement each.

Every statement is built once per database dialect and kept (lists go in as expanding
parameters), so a batch spends its time running statements, not constructing them.
Also the state a batch works on: its items, the contacts and conversations as it sees them.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Executable,
    String,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import InboundMessage
from inbox.context import InboxInfo
from inbox.db import Insert, conflict_insert, execute, insert_ids, is_postgresql
from inbox.models import (
    Contact,
    ContactIdentity,
    Conversation,
    ConversationLabel,
    Label,
    Message,
    ThreadKey,
    table_of,
)
from inbox.threading import hint_key, lookup_keys, parent_keys

# Beyond this many thread and sender locks, keys share hashed buckets: a batch never fills
# PostgreSQL's lock table (serialising a little more than needed, never less).
MAX_LOCKS = 1024
HIT_COLUMNS = ("inbox_id", "key", "conversation_id", "message_id", "rank")


@dataclass
class Ingested:
    """What ingesting one message did."""

    message_id: int | None
    conversation_id: int | None
    duplicate: bool = False
    suppressed: bool = False  # machine mail with no thread to join: not stored


class UnknownInbox(Exception):
    """A message addressed to an inbox that does not exist (permanent)."""


class Retry(Exception):
    """Another transaction won a race this batch ran into: do the batch again."""


@dataclass(eq=False)
class ContactState:
    """A sender's contact as the batch sees it (id None until inserted)."""

    id: int | None
    name: str | None
    attributes: dict[str, Any]
    identity_id: int | None = None
    created: bool = False


@dataclass(eq=False)
class ConversationState:
    """A conversation as the batch sees and changes it (id None until inserted)."""

    id: int | None
    inbox_id: int
    contact_id: int | None
    contact: ContactState | None
    contact_name: str | None
    identity_id: int | None
    status: str
    assignee_id: int | None
    team_id: int | None
    subject: str | None
    priority: str
    waiting_since: datetime | None
    last_message_preview: str | None
    unread_count: int
    snoozed_until: datetime | None
    last_activity_at: datetime
    resolved_at: datetime | None
    created_at: datetime
    cc: list[dict[str, Any]]
    labels: list[str] = field(default_factory=list)
    csat_asked_at: datetime | None = None  # its satisfaction survey went out then
    csat_score: int | None = None
    muted: bool = False
    created: bool = False
    changed: bool = False
    # The contact who wrote last: replies go to their identity (known once inserted).
    reply_to: ContactState | None = None


@dataclass(eq=False)
class Item:
    """One message of the batch and what ingest decided for it."""

    index: int
    message: InboundMessage
    inbox: InboxInfo
    at: datetime  # its place in the thread
    contact: ContactState | None = None
    conversation: ConversationState | None = None
    duplicate_of: Item | None = None
    stored_as: tuple[int, int] | None = None  # a duplicate of a stored message: its ids
    suppressed: bool = False
    message_id: int | None = None
    opened: bool = False
    reopened_from: str | None = None
    csat_score: int | None = None  # the message answers the satisfaction survey with it
    assigned_to: int | None = None
    snapshot: ConversationState | None = None  # the conversation right after this message
    result: Ingested | Exception | None = None


@dataclass
class Found:
    """What the lookup found: conversations by id, and what each key points at."""

    conversations: dict[int, ConversationState] = field(default_factory=dict)
    # (inbox, key) -> conversation id; stored messages win over thread keys.
    by_key: dict[tuple[int, str], int] = field(default_factory=dict)
    # (inbox, external id) -> (message id, conversation id) of messages stored already.
    stored: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    # (inbox, contact) -> the contact's running conversation.
    running: dict[tuple[int, int], int] = field(default_factory=dict)
    # A conversation a message names -> the one it stands for now (itself, or its survivor).
    direct: dict[int, int] = field(default_factory=dict)


def sender_of(item: Item) -> tuple[str, str]:
    """The identity (kind, value) a message comes from."""
    return (item.message.sender.kind, item.message.sender.value)


_STATEMENTS: dict[tuple[str, bool], Executable] = {}


def _statement(session: AsyncSession, name: str, build: Callable[[bool], Executable]
               ) -> Executable:
    """The statement `name` for the session's dialect, built on first use."""
    key = (name, is_postgresql(session))
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = build(key[1])
    return found


def _insert(model: type[Any], pg: bool) -> Insert:
    """A Core INSERT of the model's table that can say ON CONFLICT (inbox/db.py)."""
    return conflict_insert(table_of(model), pg)


# -- reading -----------------------------------------------------------------------------


async def lock(session: AsyncSession, items: list[Item]) -> None:
    """Serialise batches that share a sender or a thread key (PostgreSQL; SQLite has one
    writer): the second sees the first's contact, conversation and keys instead of making
    its own. Sorted, taken before any other lock, in one statement: no deadlock."""
    if not is_postgresql(session):
        return
    names = set()
    for item in items:
        m = item.message
        names.add(f"id:{m.sender.kind}:{m.sender.value}")
        names.update(f"thread:{m.inbox_id}:{key}" for key in lookup_keys(m))
    keys = sorted(names)
    if len(keys) > MAX_LOCKS:
        keys = sorted({f"bucket:{zlib.crc32(k.encode()) % MAX_LOCKS}" for k in names})
    await execute(session, _statement(session, "lock", lambda pg: text(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
        "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n")),
        {"keys": keys})


def _known_statement(pg: bool) -> Executable:
    i, c = table_of(ContactIdentity), table_of(Contact)
    return (select(i.c.kind, i.c.value, i.c.id, c.c.id.label("contact_id"), c.c.name,
                   c.c.attributes, c.c.merged_into_id)
            .join(c, c.c.id == i.c.contact_id)
            .where(tuple_(i.c.kind, i.c.value).in_(bindparam("pairs", expanding=True))))


def _survivors_statement(pg: bool) -> Executable:
    c = table_of(Contact)
    return (select(c.c.id, c.c.name, c.c.attributes, c.c.merged_into_id)
            .where(c.c.id.in_(bindparam("ids", expanding=True))))


async def known_contacts(
    session: AsyncSession, items: list[Item]
) -> dict[tuple[str, str], ContactState]:
    """The contacts of the senders already known, by identity (kind, value)."""
    pairs = sorted({sender_of(i) for i in items})
    rows = (await execute(session, _statement(session, "known", _known_statement),
                          {"pairs": pairs})).all()
    found: dict[tuple[str, str], ContactState] = {}
    merged: dict[tuple[str, str], int] = {}
    for kind, value, identity_id, contact_id, name, attributes, merged_into in rows:
        found[(kind, value)] = ContactState(contact_id, name, attributes or {}, identity_id)
        if merged_into is not None:
            merged[(kind, value)] = merged_into
    while merged:  # merged while we waited for the locks: the survivor owns them now
        survivors = {c.id: c for c in (await execute(
            session, _statement(session, "survivors", _survivors_statement),
            {"ids": sorted(set(merged.values()))})).all()}
        again: dict[tuple[str, str], int] = {}
        for key, target in merged.items():
            row = survivors[target]
            found[key] = ContactState(row.id, row.name, row.attributes or {},
                                      found[key].identity_id)
            if row.merged_into_id is not None:
                again[key] = row.merged_into_id
        merged = again
    return found


def _find_statement(direct: bool, contacts: bool) -> Callable[[bool], Executable]:
    def build(pg: bool) -> Executable:
        m, t, c = table_of(Message), table_of(ThreadKey), table_of(Conversation)
        inboxes: Any = bindparam("inbox_ids", expanding=True)
        keys: Any = bindparam("keys", expanding=True)
        parts: list[Any] = [
            select(*[column.label(name) for column, name in zip(
                (m.c.inbox_id, m.c.external_id, m.c.conversation_id, m.c.id,
                 literal_column("0")), HIT_COLUMNS, strict=True)])
            .where(m.c.inbox_id.in_(inboxes), m.c.external_id.in_(keys)),
            select(t.c.inbox_id, t.c.key, t.c.conversation_id, null(), literal_column("1"))
            .where(t.c.inbox_id.in_(inboxes), t.c.key.in_(keys)),
        ]
        if direct:
            # A conversation merged into another stands for its survivor.
            parts.append(select(c.c.inbox_id, cast(c.c.id, String),
                                func.coalesce(c.c.merged_into_id, c.c.id), null(),
                                literal_column("2"))
                         .where(c.c.id.in_(bindparam("direct", expanding=True))))
        if contacts:
            newest = func.row_number().over(
                partition_by=(c.c.inbox_id, c.c.contact_id),
                order_by=(case((c.c.status == "resolved", 1), else_=0),
                          c.c.last_activity_at.desc(), c.c.id.desc()),
            )
            ranked = (select(c.c.inbox_id.label("inbox_id"), c.c.id.label("id"),
                             newest.label("n"))
                      .where(c.c.contact_id.in_(bindparam("contact_ids", expanding=True)),
                             c.c.inbox_id.in_(inboxes), c.c.merged_into_id.is_(None))
                      .subquery())
            parts.append(select(ranked.c.inbox_id, null(), ranked.c.id, null(),
                                literal_column("3")).where(ranked.c.n == 1))
        hits = union_all(*parts).subquery("hits")
        labels = (
            select(func.json_agg(Label.__table__.c.name) if pg  # type: ignore[attr-defined]
                   else func.json_group_array(Label.__table__.c.name))  # type: ignore[attr-defined]
            .join(table_of(ConversationLabel),
                  table_of(ConversationLabel).c.label_id == table_of(Label).c.id)
            .where(table_of(ConversationLabel).c.conversation_id == c.c.id)
            .correlate(c)
            .scalar_subquery().label("labels"))
        contact = table_of(Contact)
        query = (
            select(*[hits.c[name].label(f"hit_{name}") for name in HIT_COLUMNS],
                   *c.columns, contact.c.name.label("contact_name"), labels)
            .select_from(hits)
            .join(c, c.c.id == hits.c.conversation_id)
            .join(contact, contact.c.id == c.c.contact_id)
            .order_by(c.c.id)
        )
        return query.with_for_update(of=c) if pg else query
    return build


async def find(
    session: AsyncSession, items: list[Item], contacts: dict[tuple[str, str], ContactState],
    direct: list[int],
) -> Found:
    """Every conversation the batch may join, and its duplicates, in one statement (locked
    on PostgreSQL, in id order). `direct`: conversations messages name themselves."""
    contact_ids = sorted({c.id for i in items if i.message.threading == "contact"
                          and (c := contacts.get(sender_of(i))) is not None and c.id})
    params: dict[str, Any] = {
        "inbox_ids": sorted({i.inbox.id for i in items}),
        "keys": sorted({k for i in items for k in lookup_keys(i.message)}),
    }
    if direct:
        params["direct"] = direct
    if contact_ids:
        params["contact_ids"] = contact_ids
    statement = _statement(session, f"find:{bool(direct)}:{bool(contact_ids)}",
                           _find_statement(bool(direct), bool(contact_ids)))
    found = Found()
    for row in (await execute(session, statement, params)).all():
        inbox_id, key, conversation_id = row.hit_inbox_id, row.hit_key, row.hit_conversation_id
        if conversation_id not in found.conversations:
            found.conversations[conversation_id] = _from_row(row)
        if row.hit_rank == 0:
            found.stored[(inbox_id, key)] = (row.hit_message_id, conversation_id)
            found.by_key[(inbox_id, key)] = conversation_id
        elif row.hit_rank == 1:
            found.by_key.setdefault((inbox_id, key), conversation_id)
        elif row.hit_rank == 2:
            found.direct[int(key)] = conversation_id
        elif row.hit_rank == 3:
            found.running[(inbox_id, row.contact_id)] = conversation_id
    return found


def _from_row(row: Any) -> ConversationState:
    labels = json.loads(row.labels) if isinstance(row.labels, str) else row.labels
    names = [str(v) for v in labels or [] if v is not None]
    return ConversationState(
        id=row.id, inbox_id=row.inbox_id, contact_id=row.contact_id, contact=None,
        contact_name=row.contact_name, identity_id=row.identity_id, status=row.status,
        assignee_id=row.assignee_id, team_id=row.team_id, subject=row.subject,
        priority=row.priority, waiting_since=row.waiting_since,
        last_message_preview=row.last_message_preview, unread_count=row.unread_count,
        snoozed_until=row.snoozed_until, last_activity_at=row.last_activity_at,
        resolved_at=row.resolved_at, created_at=row.created_at, cc=list(row.cc or []),
        labels=sorted(names, key=lambda name: (name.lower(), name)),
        csat_asked_at=row.csat_asked_at, csat_score=row.csat_score, muted=bool(row.muted),
    )


def direct_target(found: Found, named: int) -> ConversationState | None:
    """The conversation a message names itself stands for now, if it exists."""
    actual = found.direct.get(named)
    return found.conversations.get(actual) if actual is not None else None


# -- writing -----------------------------------------------------------------------------


async def insert_contacts(session: AsyncSession, items: list[Item], now: datetime) -> None:
    """Create the contacts and identities of new senders that the batch stores."""
    new: dict[int, tuple[ContactState, InboundMessage]] = {}
    for item in items:
        if item.contact is not None and item.contact.created and item.conversation is not None:
            new.setdefault(id(item.contact), (item.contact, item.message))
    if not new:
        return
    todo = list(new.values())
    ids = await insert_ids(session, table_of(Contact), [
        {"name": m.sender.display_name,
         "email": m.sender.value if m.sender.kind == "email" else None,
         "phone": m.sender.value if m.sender.kind == "phone" else None,
         "attributes": {}, "created_at": now} for _, m in todo])
    for (contact, _), contact_id in zip(todo, ids, strict=True):
        contact.id = contact_id
    rows = (await execute(session, _statement(session, "identities", lambda pg: (
        _insert(ContactIdentity, pg).on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(*(table_of(ContactIdentity).c[n] for n in ("id", "kind", "value"))))),
        [{"contact_id": c.id, "kind": m.sender.kind, "value": m.sender.value,
          "display_name": m.sender.display_name, "created_at": now} for c, m in todo],
    )).all()
    made = {(kind, value): identity_id for identity_id, kind, value in rows}
    for contact, m in todo:
        identity_id = made.get((m.sender.kind, m.sender.value))
        if identity_id is None:
            # Someone else (a visitor leaving their email, a merge) added it meanwhile.
            raise Retry(f"identity {m.sender.kind} created concurrently")
        contact.identity_id = identity_id


def conversations_of(items: list[Item]) -> list[ConversationState]:
    """The conversations the batch's messages went to, once each, in order."""
    seen: dict[int, ConversationState] = {}
    for item in items:
        if item.conversation is not None:
            seen.setdefault(id(item.conversation), item.conversation)
    return list(seen.values())


def _columns(c: ConversationState) -> dict[str, Any]:
    """The columns a message may change."""
    return {
        "status": c.status, "assignee_id": c.assignee_id, "team_id": c.team_id,
        "identity_id": c.identity_id, "waiting_since": c.waiting_since,
        "last_message_preview": c.last_message_preview, "unread_count": c.unread_count,
        "snoozed_until": c.snoozed_until, "last_activity_at": c.last_activity_at,
        "resolved_at": c.resolved_at, "cc": c.cc,
    }


async def insert_conversations(session: AsyncSession, items: list[Item]) -> None:
    """Create the batch's new conversations (their contacts exist by now)."""
    new = [c for c in conversations_of(items) if c.created]
    for conv in conversations_of(items):
        if conv.reply_to is not None:
            conv.identity_id = conv.reply_to.identity_id
        if conv.contact is not None:
            conv.contact_id = conv.contact.id
    if not new:
        return
    ids = await insert_ids(session, table_of(Conversation), [
        {**_columns(c), "inbox_id": c.inbox_id, "contact_id": c.contact_id,
         "subject": c.subject, "priority": c.priority, "created_at": c.created_at}
        for c in new])
    for conv, conversation_id in zip(new, ids, strict=True):
        conv.id = conversation_id


def _update_statement(pg: bool) -> Executable:
    table = table_of(Conversation)
    names = _columns(ConversationState(
        0, 0, None, None, None, None, "", None, None, None, "", None, None, 0, None,
        datetime.min, None, datetime.min, []))
    return (update(table).where(table.c.id == bindparam("row_id"))
            .values({name: bindparam(f"new_{name}") for name in names}))


async def update_conversations(session: AsyncSession, items: list[Item]) -> None:
    """Write what the batch changed of existing conversations (one statement)."""
    changed = [c for c in conversations_of(items) if c.changed and not c.created]
    if changed:
        await execute(session, _statement(session, "update", _update_statement), [
            {"row_id": c.id, **{f"new_{k}": v for k, v in _columns(c).items()}}
            for c in changed])


async def insert_messages(session: AsyncSession, items: list[Item], now: datetime) -> None:
    """Store the batch's messages (duplicates of stored ones were found before; one that
    appears meanwhile means a race: Retry) and settle every item's result."""
    stored = [i for i in items if i.conversation is not None]
    if stored:
        rows = (await execute(session, _statement(session, "messages", lambda pg: (
            _insert(Message, pg).on_conflict_do_nothing(index_elements=["inbox_id",
                                                                        "external_id"])
            .returning(*(table_of(Message).c[n] for n in ("id", "inbox_id", "external_id"))))),
            [_message_row(i, now) for i in stored])).all()
        ids = {(inbox_id, ext): message_id for message_id, inbox_id, ext in rows}
        for item in stored:
            item.message_id = ids.get((item.inbox.id, item.message.external_id))
            if item.message_id is None:
                # Stored meanwhile by another batch that did not share our locks.
                raise Retry(f"message {item.message.external_id!r} stored concurrently")
    for item in items:
        conv = item.conversation
        if item.stored_as is not None:
            item.result = Ingested(*item.stored_as, duplicate=True)
        elif item.duplicate_of is not None:
            twin = item.duplicate_of
            twin_conv = twin.conversation.id if twin.conversation is not None else None
            item.result = Ingested(twin.message_id, twin_conv, duplicate=True)
        elif item.suppressed:
            item.result = Ingested(None, None, suppressed=True)
        elif conv is not None:
            item.result = Ingested(item.message_id, conv.id)


def direction_of(m: InboundMessage) -> str:
    """How a channel's message is stored: the customer's, or the business's own from
    elsewhere."""
    return "out" if m.from_business else "in"


def _message_row(item: Item, now: datetime) -> dict[str, Any]:
    m = item.message
    meta: dict[str, Any] = dict(m.metadata)
    if m.references:
        meta["references"] = list(m.references)
    if m.from_business:
        meta["sent_elsewhere"] = True
    assert item.conversation is not None and item.contact is not None
    return {
        "conversation_id": item.conversation.id, "inbox_id": item.inbox.id,
        "direction": direction_of(m),
        "kind": "message", "text": m.text, "html": m.html, "external_id": m.external_id,
        "idempotency_key": None, "in_reply_to": m.in_reply_to, "contact_id": item.contact.id,
        "agent_id": None, "status": "sent" if m.from_business else None, "status_reason": None,
        "attachments": [a.model_dump(mode="json") for a in m.attachments], "meta": meta,
        "provider_ts": m.provider_ts, "accepted_at": item.at, "created_at": now,
    }


async def record_thread_keys(session: AsyncSession, items: list[Item]) -> None:
    """Thread hints point at the conversation that used them last; the ids a message
    answers point at its conversation unless another holds them already (they may arrive
    later, and will find it)."""
    hints: dict[tuple[int, str], int] = {}
    parents: dict[tuple[int, str], int] = {}
    for item in items:
        conv = item.conversation
        if conv is None or item.message_id is None or conv.id is None:
            continue
        hint = hint_key(item.message)
        if hint is not None:
            hints[(item.inbox.id, hint)] = conv.id
        for key in parent_keys(item.message):
            parents.setdefault((item.inbox.id, key), conv.id)
    for hinted in hints:
        parents.pop(hinted, None)
    if hints:
        def moved(pg: bool) -> Executable:
            statement = _insert(ThreadKey, pg)
            return statement.on_conflict_do_update(
                index_elements=["inbox_id", "key"],
                set_={"conversation_id": statement.excluded.conversation_id})

        await execute(session, _statement(session, "hints", moved), [
            {"inbox_id": i, "key": k, "conversation_id": c} for (i, k), c in hints.items()])
    if parents:
        await execute(session, _statement(session, "parents", lambda pg: _insert(
            ThreadKey, pg).on_conflict_do_nothing(index_elements=["inbox_id", "key"])), [
            {"inbox_id": i, "key": k, "conversation_id": c} for (i, k), c in parents.items()])
