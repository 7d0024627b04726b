"""Ingest: accepted inbound messages become stored messages of the right conversations.

A batch is threaded in one transaction and a fixed number of SQL statements, whatever its
size: the thread keys and senders locked (PostgreSQL, one statement, sorted: batches never
deadlock), the senders' identities read, every conversation the batch may join found (and
locked) at once together with the duplicates, then the decisions made in memory in the
provider's order (inbox/threading.py), and what changed written with one statement per
table: contacts, identities, conversations, messages, thread keys, conversation updates,
notifications. The events go to the outbox in the same transaction (inbox/outbox.py).

A batch that loses a race (another transaction created the same identity meanwhile, a
deadlock with an agent's action) is done again; one that fails for another reason is split
in halves until the message at fault is alone, and only that one fails. A database that
cannot be reached fails the whole batch with the error, for the caller to retry later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import (
    ContactCreated,
    ContactView,
    ConversationAssigned,
    ConversationCreated,
    ConversationStatusChanged,
    ConversationView,
    IdentityView,
    MessageCreated,
    MessageView,
    View,
)
from hub.types import InboundMessage, utcnow
from inbox.assignment import Placer, Scope
from inbox.context import InboxContext, InboxInfo
from inbox.db import execute, insert_ids, is_unavailable
from inbox.delivery import mark_bounced
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
from inbox.notifications import NewNotification, notify_many
from inbox.outbox import stage_events
from inbox.routing import RoutingFacts, Rule, message_language, pick_team, rules_for
from inbox.threading import (
    direct_conversation,
    hint_key,
    lookup_keys,
    order_at,
    parent_keys,
    too_old_to_reopen,
)
from inbox.views import PREVIEW_CHARS

log = logging.getLogger("switchboard.ingest")

RETRIES = 5
# Beyond this many thread and sender locks, keys share hashed buckets: a batch never fills
# PostgreSQL's lock table (serialising a little more than needed, never less).
MAX_LOCKS = 1024
MAX_CC = 50
# SQLSTATEs of a race lost to another transaction: the batch is simply done again.
_RACES = {"40P01", "40001"}
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


class _Retry(Exception):
    """Another transaction won a race this batch ran into: do the batch again."""


@dataclass(eq=False)
class _Contact:
    id: int | None
    name: str | None
    attributes: dict[str, Any]
    identity_id: int | None = None
    created: bool = False


@dataclass(eq=False)
class _Conversation:
    """A conversation as the batch sees and changes it (id None until inserted)."""

    id: int | None
    inbox_id: int
    contact_id: int | None
    contact: _Contact | None
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
    created: bool = False
    changed: bool = False
    # The contact who wrote last: replies go to their identity (known once inserted).
    reply_to: _Contact | None = None


@dataclass(eq=False)
class _Item:
    index: int
    message: InboundMessage
    inbox: InboxInfo
    at: datetime  # its place in the thread
    contact: _Contact | None = None
    conversation: _Conversation | None = None
    duplicate_of: _Item | None = None
    stored_as: tuple[int, int] | None = None  # a duplicate of a stored message: its ids
    suppressed: bool = False
    message_id: int | None = None
    opened: bool = False
    reopened_from: str | None = None
    assigned_to: int | None = None
    snapshot: _Conversation | None = None  # the conversation right after this message
    result: Ingested | Exception | None = None


async def ingest(ctx: InboxContext, message: InboundMessage) -> Ingested:
    """Store one inbound message (see ingest_batch); raises its error."""
    result = (await ingest_batch(ctx, [message]))[0]
    if isinstance(result, Exception):
        raise result
    return result


async def ingest_batch(
    ctx: InboxContext, messages: Sequence[InboundMessage]
) -> list[Ingested | Exception]:
    """Thread and store messages; per message what happened, or the error it alone caused.

    Raises when the database cannot be reached (nothing was stored: retry the batch later).
    """
    items = [_Item(i, m, InboxInfo(0, "", False), order_at(m)) for i, m in enumerate(messages)]
    await _run(ctx, items)
    return [item.result if item.result is not None else RuntimeError("not ingested")
            for item in items]


async def _run(ctx: InboxContext, items: list[_Item]) -> None:
    try:
        await _attempt(ctx, items)
    except Exception as exc:
        if is_unavailable(exc):
            raise
        if len(items) == 1:
            log.warning("an inbound message failed", exc_info=exc)
            items[0].result = exc
            return
        half = len(items) // 2
        await _run(ctx, items[:half])
        await _run(ctx, items[half:])


async def _attempt(ctx: InboxContext, items: list[_Item]) -> None:
    for attempt in range(RETRIES):
        fresh = [_Item(i.index, i.message, i.inbox, i.at) for i in items]
        try:
            async with ctx.db.write() as session:
                await _ingest(ctx, session, fresh)
        except Exception as exc:
            if attempt + 1 < RETRIES and _lost_race(exc):
                await asyncio.sleep(0.01 * (attempt + 1))
                continue
            raise
        for item, done in zip(items, fresh, strict=True):
            item.result = done.result
        return


def _lost_race(exc: BaseException) -> bool:
    if isinstance(exc, _Retry):
        return True
    orig = getattr(exc, "orig", None) if isinstance(exc, DBAPIError) else None
    return getattr(orig, "sqlstate", None) in _RACES


async def _ingest(ctx: InboxContext, session: AsyncSession, items: list[_Item]) -> None:
    now = utcnow()
    live: list[_Item] = []
    for item in items:
        inbox = await ctx.inboxes.get(session, item.message.inbox_id)
        if inbox is None:
            item.result = UnknownInbox(f"inbox {item.message.inbox_id} does not exist")
        else:
            item.inbox = inbox
            live.append(item)
    # The provider's order (then arrival): the newest message sets the preview, and two
    # messages of one conversation are stored in the order they were written.
    live.sort(key=lambda i: (i.at, i.message.received_at, i.index))
    if not live:
        return
    await _lock(session, live)
    events: list[View] = await mark_bounced(session, [
        (i.inbox.id, i.message.bounce_of,
         i.message.metadata.get("bounce_reason") or i.message.text or "undeliverable")
        for i in live if i.message.bounce_of])
    contacts = await _known_contacts(session, live)
    found = await _find(session, live, contacts)
    _decide(ctx, live, contacts, found, now)
    await _assign(ctx, session, live, now)
    await _insert_contacts(session, live, now)
    await _insert_conversations(session, live, now)
    await _insert_messages(session, live, now)
    await _record_thread_keys(session, live)
    await _update_conversations(session, live)
    stage_events(session, events + await _events(session, live, now))


# -- locks -------------------------------------------------------------------------------


async def _lock(session: AsyncSession, items: list[_Item]) -> None:
    """Serialise batches that share a sender or a thread key (PostgreSQL; SQLite has one
    writer): the second sees the first's contact, conversation and keys instead of making
    its own. Sorted, taken before any other lock, in one statement: no deadlock."""
    if not _is_postgresql(session):
        return
    names = set()
    for item in items:
        m = item.message
        names.add(f"id:{m.sender.kind}:{m.sender.value}")
        names.update(f"thread:{m.inbox_id}:{key}" for key in lookup_keys(m))
    keys = sorted(names)
    if len(keys) > MAX_LOCKS:
        keys = sorted({f"bucket:{zlib.crc32(k.encode()) % MAX_LOCKS}" for k in names})
    await execute(session,
        text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
             "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"),
        {"keys": keys},
    )


# -- contacts ----------------------------------------------------------------------------


async def _known_contacts(
    session: AsyncSession, items: list[_Item]
) -> dict[tuple[str, str], _Contact]:
    """The contacts of the senders already known, by identity (kind, value)."""
    pairs = sorted({(i.message.sender.kind, i.message.sender.value) for i in items})
    rows = (await execute(session,
        select(col(ContactIdentity.kind), col(ContactIdentity.value), col(ContactIdentity.id),
               col(Contact.id), col(Contact.name), col(Contact.attributes),
               col(Contact.merged_into_id))
        .join(Contact, col(Contact.id) == col(ContactIdentity.contact_id))
        .where(tuple_(col(ContactIdentity.kind), col(ContactIdentity.value)).in_(pairs))
    )).all()
    found: dict[tuple[str, str], _Contact] = {}
    merged: dict[tuple[str, str], int] = {}
    for kind, value, identity_id, contact_id, name, attributes, merged_into in rows:
        found[(kind, value)] = _Contact(contact_id, name, attributes or {}, identity_id)
        if merged_into is not None:
            merged[(kind, value)] = merged_into
    while merged:  # merged while we waited for the locks: the survivor owns them now
        survivors = {c.id: c for c in (await execute(session,
            select(col(Contact.id), col(Contact.name), col(Contact.attributes),
                   col(Contact.merged_into_id))
            .where(col(Contact.id).in_(sorted(set(merged.values()))))
        )).all()}
        again: dict[tuple[str, str], int] = {}
        for key, target in merged.items():
            row = survivors[target]
            found[key] = _Contact(row.id, row.name, row.attributes or {},
                                  found[key].identity_id)
            if row.merged_into_id is not None:
                again[key] = row.merged_into_id
        merged = again
    return found


async def _insert_contacts(session: AsyncSession, items: list[_Item], now: datetime) -> None:
    """Create the contacts and identities of new senders that the batch stores."""
    new: dict[int, tuple[_Contact, InboundMessage]] = {}
    for item in items:
        if item.contact is not None and item.contact.created and not item.suppressed \
                and item.duplicate_of is None and item.stored_as is None:
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
    rows = (await execute(session,
        sa_insert(session, ContactIdentity)
        .on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(*(table_of(ContactIdentity).c[n] for n in ("id", "kind", "value"))),
        [{"contact_id": c.id, "kind": m.sender.kind, "value": m.sender.value,
          "display_name": m.sender.display_name, "created_at": now} for c, m in todo],
    )).all()
    made = {(kind, value): identity_id for identity_id, kind, value in rows}
    for contact, m in todo:
        identity_id = made.get((m.sender.kind, m.sender.value))
        if identity_id is None:
            # Someone else (a visitor leaving their email, a merge) added it meanwhile.
            raise _Retry(f"identity {m.sender.kind} created concurrently")
        contact.identity_id = identity_id


# -- finding conversations ---------------------------------------------------------------


@dataclass
class _Found:
    """What the lookup found: conversations by id, and what each key points at."""

    conversations: dict[int, _Conversation] = field(default_factory=dict)
    # (inbox, key) -> conversation id; stored messages win over thread keys.
    by_key: dict[tuple[int, str], int] = field(default_factory=dict)
    # (inbox, external id) -> (message id, conversation id) of messages stored already.
    stored: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    # (inbox, contact) -> the contact's running conversation.
    running: dict[tuple[int, int], int] = field(default_factory=dict)


async def _find(
    session: AsyncSession, items: list[_Item], contacts: dict[tuple[str, str], _Contact]
) -> _Found:
    """Every conversation the batch may join, and its duplicates, in one statement (locked
    on PostgreSQL, in id order)."""
    inbox_ids = sorted({i.inbox.id for i in items})
    keys = sorted({k for i in items for k in lookup_keys(i.message)})
    direct = sorted({d for i in items for d in (direct_conversation(i.message),
                                                i.message.conversation_ref) if d})
    contact_ids = sorted({c.id for i in items if i.message.threading == "contact"
                          and (c := contacts.get(_sender(i))) is not None and c.id})
    parts: list[Any] = [
        select(*[c.label(name) for c, name in zip(
            (col(Message.inbox_id), col(Message.external_id), col(Message.conversation_id),
             col(Message.id), literal_column("0")), HIT_COLUMNS, strict=True)])
        .where(col(Message.inbox_id).in_(inbox_ids), col(Message.external_id).in_(keys)),
        select(col(ThreadKey.inbox_id), col(ThreadKey.key), col(ThreadKey.conversation_id),
               null(), literal_column("1"))
        .where(col(ThreadKey.inbox_id).in_(inbox_ids), col(ThreadKey.key).in_(keys)),
    ]
    if direct:
        parts.append(
            select(col(Conversation.inbox_id), null(), col(Conversation.id), null(),
                   literal_column("2"))
            .where(col(Conversation.id).in_(direct)))
    if contact_ids:
        newest = func.row_number().over(
            partition_by=(col(Conversation.inbox_id), col(Conversation.contact_id)),
            order_by=(case((col(Conversation.status) == "resolved", 1), else_=0),
                      col(Conversation.last_activity_at).desc(), col(Conversation.id).desc()),
        )
        ranked = (select(col(Conversation.inbox_id).label("inbox_id"),
                         col(Conversation.id).label("id"), newest.label("n"))
                  .where(col(Conversation.contact_id).in_(contact_ids),
                         col(Conversation.inbox_id).in_(inbox_ids))
                  .subquery())
        parts.append(select(ranked.c.inbox_id, null(), ranked.c.id, null(),
                            literal_column("3")).where(ranked.c.n == 1))
    hits = union_all(*parts).subquery("hits")
    table = Conversation.__table__  # type: ignore[attr-defined]
    query = (
        select(*[hits.c[name].label(f"hit_{name}") for name in HIT_COLUMNS],
               *table.columns, col(Contact.name).label("contact_name"), _labels(session))
        .select_from(hits)
        .join(table, table.c.id == hits.c.conversation_id)
        .join(Contact, col(Contact.id) == table.c.contact_id)
        .order_by(table.c.id)
    )
    if _is_postgresql(session):
        query = query.with_for_update(of=table)
    found = _Found()
    for row in (await execute(session, query)).all():
        inbox_id, key, conversation_id = row.hit_inbox_id, row.hit_key, row.hit_conversation_id
        if conversation_id not in found.conversations:
            found.conversations[conversation_id] = _from_row(row)
        if row.hit_rank == 0:
            found.stored[(inbox_id, key)] = (row.hit_message_id, conversation_id)
            found.by_key[(inbox_id, key)] = conversation_id
        elif row.hit_rank == 1:
            found.by_key.setdefault((inbox_id, key), conversation_id)
        elif row.hit_rank == 3:
            found.running[(inbox_id, row.contact_id)] = conversation_id
    return found


def _labels(session: AsyncSession) -> Any:
    """The conversation's label names as a JSON array, in a correlated subquery (sorted by
    _label_list)."""
    agg = (func.json_agg(col(Label.name)) if _is_postgresql(session)
           else func.json_group_array(col(Label.name)))
    return (select(agg)
            .join(ConversationLabel, col(ConversationLabel.label_id) == col(Label.id))
            .where(col(ConversationLabel.conversation_id) == col(Conversation.id))
            .correlate(Conversation)
            .scalar_subquery().label("labels"))


def _from_row(row: Any) -> _Conversation:
    return _Conversation(
        id=row.id, inbox_id=row.inbox_id, contact_id=row.contact_id, contact=None,
        contact_name=row.contact_name, identity_id=row.identity_id, status=row.status,
        assignee_id=row.assignee_id, team_id=row.team_id, subject=row.subject,
        priority=row.priority, waiting_since=row.waiting_since,
        last_message_preview=row.last_message_preview, unread_count=row.unread_count,
        snoozed_until=row.snoozed_until, last_activity_at=row.last_activity_at,
        resolved_at=row.resolved_at, created_at=row.created_at, cc=list(row.cc or []),
        labels=_label_list(row.labels),
    )


def _label_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    names = [str(v) for v in value or [] if v is not None]
    return sorted(names, key=lambda name: (name.lower(), name))


def _sender(item: _Item) -> tuple[str, str]:
    return (item.message.sender.kind, item.message.sender.value)


# -- deciding ----------------------------------------------------------------------------


def _decide(
    ctx: InboxContext, items: list[_Item], contacts: dict[tuple[str, str], _Contact],
    found: _Found, now: datetime,
) -> None:
    """Each message's contact and conversation, in order, as threading.py says."""
    window = ctx.settings.reopen_window_seconds
    keys = {k: found.conversations[v] for k, v in found.by_key.items()}  # grows as it stores
    running = {k: found.conversations[v] for k, v in found.running.items()}
    new_running: dict[tuple[int, int], _Conversation] = {}  # keyed by id() of a new contact
    seen: dict[tuple[int, str], _Item] = {}
    for item in items:
        m, inbox_id = item.message, item.inbox.id
        own = (inbox_id, m.external_id)
        if own in found.stored:
            item.stored_as = found.stored[own]
            continue
        if own in seen:
            item.duplicate_of = seen[own]
            continue
        seen[own] = item
        conversation = _by_keys(item, keys, found, now, window)
        if m.automated and conversation is None:
            item.suppressed = True
            continue
        contact = contacts.get(_sender(item))
        if contact is None:
            contact = contacts[_sender(item)] = _Contact(
                None, m.sender.display_name, {}, created=True)
        item.contact = contact
        if conversation is None and m.conversation_ref is not None:
            named = found.conversations.get(m.conversation_ref)
            if named is not None and named.inbox_id == inbox_id and contact.id is not None \
                    and named.contact_id == contact.id and not _stale(named, now, window):
                conversation = named
        if conversation is None and m.threading == "contact":
            conversation = (new_running.get((inbox_id, id(contact))) if contact.id is None
                            else running.get((inbox_id, contact.id)))
            if conversation is not None and _stale(conversation, now, window):
                conversation = None
        if conversation is None:
            conversation = _open(item, contact, now)
            item.opened = True
        if m.threading == "contact":
            if contact.id is None:
                new_running[(inbox_id, id(contact))] = conversation
            else:
                running[(inbox_id, contact.id)] = conversation
        item.conversation = conversation
        for key in [m.external_id, *parent_keys(m)]:
            keys.setdefault((inbox_id, key), conversation)
        hint = hint_key(m)
        if hint is not None:
            keys[(inbox_id, hint)] = conversation
        _apply(item, contact, conversation, now)


def _by_keys(
    item: _Item, keys: dict[tuple[int, str], _Conversation], found: _Found, now: datetime,
    window: int,
) -> _Conversation | None:
    m, inbox_id = item.message, item.inbox.id
    candidates = [keys.get((inbox_id, k)) for k in parent_keys(m)]
    direct = direct_conversation(m)
    if direct is not None:
        named = found.conversations.get(direct)
        candidates.append(named if named is not None and named.inbox_id == inbox_id else None)
    hint = hint_key(m)
    if hint is not None:
        candidates.append(keys.get((inbox_id, hint)))
    candidates.append(keys.get((inbox_id, m.external_id)))  # a reply that came first
    conversation = next((c for c in candidates if c is not None), None)
    if conversation is not None and not m.automated and _stale(conversation, now, window):
        return None  # too old to reopen: a new conversation starts
    return conversation


def _stale(conversation: _Conversation, now: datetime, window: int) -> bool:
    return too_old_to_reopen(conversation.status, conversation.resolved_at, now=now,
                             window_seconds=window)


def _open(item: _Item, contact: _Contact, now: datetime) -> _Conversation:
    m = item.message
    return _Conversation(
        id=None, inbox_id=item.inbox.id, contact_id=contact.id, contact=contact,
        contact_name=contact.name, identity_id=None, status="open", assignee_id=None,
        team_id=None, subject=m.metadata.get("subject"), priority="none", waiting_since=None,
        last_message_preview=None, unread_count=0, snoozed_until=None,
        last_activity_at=item.at, resolved_at=None, created_at=now, cc=[], created=True,
    )


def _apply(item: _Item, contact: _Contact, conversation: _Conversation, now: datetime) -> None:
    """What a customer's message does to its conversation."""
    m = item.message
    if not m.automated:
        if conversation.status != "open":
            item.reopened_from = conversation.status
            conversation.status = "open"
            conversation.snoozed_until = None
            conversation.resolved_at = None
        if item.at >= conversation.last_activity_at or item.opened:
            conversation.last_activity_at = item.at
            conversation.last_message_preview = (m.text or "")[:PREVIEW_CHARS] or None
        conversation.unread_count += 1
        conversation.identity_id = contact.identity_id  # None until inserted: fixed later
        conversation.reply_to = contact
        _merge_cc(conversation, m, contact)
        conversation.changed = True
    item.snapshot = dataclasses.replace(conversation)


def _merge_cc(conversation: _Conversation, m: InboundMessage, contact: _Contact) -> None:
    if not m.cc:
        return
    have = {(c.get("kind"), c.get("value")) for c in conversation.cc}
    for person in m.cc:
        if (person.kind, person.value) in have or (person.kind, person.value) == (
                m.sender.kind, m.sender.value) or len(conversation.cc) >= MAX_CC:
            continue
        conversation.cc.append(person.model_dump(mode="json"))
        have.add((person.kind, person.value))


# -- assignment --------------------------------------------------------------------------


async def _assign(ctx: InboxContext, session: AsyncSession, items: list[_Item],
                  now: datetime) -> None:
    """Route new conversations by the rules and give every unassigned one that a customer
    wrote to an agent, or queue it (inbox/assignment.py's rules, decided for the batch)."""
    wanting: dict[int, tuple[_Item, _Conversation]] = {}
    for item in items:
        conv = item.conversation
        if conv is None or item.message.automated or not item.inbox.auto_assign:
            continue
        if conv.assignee_id is None and conv.waiting_since is None and id(conv) not in wanting:
            wanting[id(conv)] = (item, conv)
    if not wanting:
        return
    opened = [(i, c) for i, c in wanting.values() if c.created]
    if opened:
        rules = await rules_for(session, {c.inbox_id for _, c in opened})
        for item, conv in opened:
            conv.team_id = _team(rules.get(conv.inbox_id, []), item, conv)
    placer = Placer(session, now=now, presence_seconds=ctx.settings.presence_seconds)
    await placer.prepare({_scope(c) for _, c in wanting.values()})
    position = {id(item): n for n, item in enumerate(items)}
    for item, conv in wanting.values():
        scope = _scope(conv)
        pool = placer.pools[scope]
        candidate = None if pool.waiting else pool.pick()
        if candidate is None:
            conv.waiting_since = conv.waiting_since or now
            pool.waiting = True  # the next of this scope waits behind this one
        else:
            placer.take_later(scope, candidate)
            conv.assignee_id = candidate.agent_id
            conv.waiting_since = None
            item.assigned_to = candidate.agent_id
        conv.changed = True
        # The snapshots of this message and the later ones show the assignment.
        for later in items[position[id(item)]:]:
            if later.conversation is conv and later.snapshot is not None:
                later.snapshot.assignee_id = conv.assignee_id
                later.snapshot.team_id = conv.team_id
                later.snapshot.waiting_since = conv.waiting_since
    await placer.write_taken()


def _team(rules: list[Rule], item: _Item, conv: _Conversation) -> int | None:
    contact = conv.contact
    attributes = contact.attributes if contact is not None else {}
    return pick_team(rules, RoutingFacts(
        inbox_id=conv.inbox_id, channel=item.inbox.channel, text=item.message.text or "",
        language=message_language(item.message.metadata, attributes),
        contact_attributes=attributes,
    ))


def _scope(conv: _Conversation) -> Scope:
    return Scope(conv.inbox_id, conv.team_id)


# -- writing -----------------------------------------------------------------------------


def sa_insert(session: AsyncSession, model: type[SQLModel]) -> postgresql.Insert | sqlite.Insert:
    """A Core INSERT into a model's table with the dialect's ON CONFLICT support (PostgreSQL
    and SQLite spell it alike)."""
    return (postgresql.insert if _is_postgresql(session) else sqlite.insert)(table_of(model))


def _is_postgresql(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def _conversations(items: list[_Item]) -> list[_Conversation]:
    seen: dict[int, _Conversation] = {}
    for item in items:
        if item.conversation is not None:
            seen.setdefault(id(item.conversation), item.conversation)
    return list(seen.values())


async def _insert_conversations(session: AsyncSession, items: list[_Item],
                                now: datetime) -> None:
    new = [c for c in _conversations(items) if c.created]
    for conv in _conversations(items):
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


def _columns(c: _Conversation) -> dict[str, Any]:
    """The columns a message may change."""
    return {
        "status": c.status, "assignee_id": c.assignee_id, "team_id": c.team_id,
        "identity_id": c.identity_id, "waiting_since": c.waiting_since,
        "last_message_preview": c.last_message_preview, "unread_count": c.unread_count,
        "snoozed_until": c.snoozed_until, "last_activity_at": c.last_activity_at,
        "resolved_at": c.resolved_at, "cc": c.cc,
    }


async def _update_conversations(session: AsyncSession, items: list[_Item]) -> None:
    changed = [c for c in _conversations(items) if c.changed and not c.created]
    if not changed:
        return
    table = table_of(Conversation)
    await execute(
        session,
        update(table).where(table.c.id == bindparam("row_id"))
        .values({name: bindparam(f"new_{name}") for name in _columns(changed[0])}),
        [{"row_id": c.id, **{f"new_{k}": v for k, v in _columns(c).items()}} for c in changed],
    )


async def _insert_messages(session: AsyncSession, items: list[_Item], now: datetime) -> None:
    stored = [i for i in items if i.conversation is not None]
    if stored:
        rows = (await execute(session,
            sa_insert(session, Message)
            .on_conflict_do_nothing(index_elements=["inbox_id", "external_id"])
            .returning(*(table_of(Message).c[n] for n in ("id", "inbox_id", "external_id"))),
            [_message_row(i, now) for i in stored],
        )).all()
        ids = {(inbox_id, ext): message_id for message_id, inbox_id, ext in rows}
        for item in stored:
            item.message_id = ids.get((item.inbox.id, item.message.external_id))
            if item.message_id is None:
                # Stored meanwhile by another batch that did not share our locks.
                raise _Retry(f"message {item.message.external_id!r} stored concurrently")
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


def _message_row(item: _Item, now: datetime) -> dict[str, Any]:
    m = item.message
    meta: dict[str, Any] = dict(m.metadata)
    if m.references:
        meta["references"] = list(m.references)
    assert item.conversation is not None and item.contact is not None
    return {
        "conversation_id": item.conversation.id, "inbox_id": item.inbox.id, "direction": "in",
        "kind": "message", "text": m.text, "html": m.html, "external_id": m.external_id,
        "idempotency_key": None, "in_reply_to": m.in_reply_to, "contact_id": item.contact.id,
        "agent_id": None, "status": None, "status_reason": None,
        "attachments": [a.model_dump(mode="json") for a in m.attachments], "meta": meta,
        "provider_ts": m.provider_ts, "accepted_at": item.at, "created_at": now,
    }


async def _record_thread_keys(session: AsyncSession, items: list[_Item]) -> None:
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
        stmt = sa_insert(session, ThreadKey)
        await execute(session,
            stmt.on_conflict_do_update(index_elements=["inbox_id", "key"],
                                       set_={"conversation_id": stmt.excluded.conversation_id}),
            [{"inbox_id": i, "key": k, "conversation_id": c} for (i, k), c in hints.items()],
        )
    if parents:
        await execute(session,
            sa_insert(session, ThreadKey).on_conflict_do_nothing(
                index_elements=["inbox_id", "key"]),
            [{"inbox_id": i, "key": k, "conversation_id": c} for (i, k), c in parents.items()],
        )


# -- events ------------------------------------------------------------------------------


async def _events(session: AsyncSession, items: list[_Item], now: datetime) -> list[View]:
    """Each stored message's events, in order; the assignees' notifications last."""
    events: list[View] = []
    notices: list[NewNotification] = []
    announced: set[int] = set()
    for item in items:
        conv, snap = item.conversation, item.snapshot
        if conv is None or snap is None or item.message_id is None or conv.id is None:
            continue
        snap.id = conv.id
        contact = item.contact
        assert contact is not None and contact.id is not None
        inbox_id = conv.inbox_id
        if contact.created and id(contact) not in announced and not item.message.automated:
            announced.add(id(contact))
            events.append(ContactCreated(inbox_id=inbox_id, at=now, contact=ContactView(
                id=contact.id, name=contact.name, email=_of(item, "email"),
                phone=_of(item, "phone"), attributes={}, created_at=now,
                identities=[IdentityView(kind=item.message.sender.kind,
                                         value=item.message.sender.value,
                                         display_name=item.message.sender.display_name)])))
        view = _view(snap, item.inbox.channel, conv)
        if item.opened:
            events.append(ConversationCreated(inbox_id=inbox_id, at=now, conversation=view))
        elif item.reopened_from is not None:
            events.append(ConversationStatusChanged(
                inbox_id=inbox_id, at=now, conversation=view,
                previous_status=item.reopened_from, by_agent_id=None))
        events.append(MessageCreated(inbox_id=inbox_id, at=now, message=_message_view(item, now),
                                     conversation=view))
        if item.assigned_to is not None:
            events.append(ConversationAssigned(inbox_id=inbox_id, at=now, conversation=view,
                                               previous_assignee_id=None, by_agent_id=None))
            about = conv.subject or conv.last_message_preview or f"conversation #{conv.id}"
            who = conv.contact_name if conv.contact_name else None
            notices.append(NewNotification(
                agent_id=item.assigned_to, kind="assigned", inbox_id=inbox_id,
                conversation_id=conv.id, text=f"{who}: {about}" if who else about))
    return events + list(await notify_many(session, notices))


def _of(item: _Item, kind: str) -> str | None:
    sender = item.message.sender
    return sender.value if sender.kind == kind else None


def _view(snap: _Conversation, channel: str, conv: _Conversation) -> ConversationView:
    assert conv.id is not None and conv.contact_id is not None
    return ConversationView(
        id=conv.id, inbox_id=snap.inbox_id, channel=channel, contact_id=conv.contact_id,
        contact_name=conv.contact_name, status=snap.status, assignee_id=snap.assignee_id,
        team_id=snap.team_id, subject=snap.subject,
        last_message_preview=snap.last_message_preview, unread_count=snap.unread_count,
        snoozed_until=snap.snoozed_until, priority=snap.priority, labels=snap.labels,
        waiting_since=snap.waiting_since, last_activity_at=snap.last_activity_at,
        created_at=snap.created_at,
    )


def _message_view(item: _Item, now: datetime) -> MessageView:
    m = item.message
    assert item.message_id is not None and item.conversation is not None
    assert item.conversation.id is not None and item.contact is not None
    return MessageView(
        id=item.message_id, conversation_id=item.conversation.id, inbox_id=item.inbox.id,
        direction="in", kind="message", text=m.text, html=m.html, external_id=m.external_id,
        contact_id=item.contact.id, agent_id=None, status=None, status_reason=None,
        attachments=[a.model_dump(mode="json") for a in m.attachments],
        accepted_at=item.at, created_at=now,
    )
