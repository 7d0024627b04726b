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
import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import DBAPIError
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
from inbox.csat import answer_open, digit_answer, record_replies
from inbox.db import is_unavailable
from inbox.delivery import mark_bounced
from inbox.ingest_store import (
    ContactState,
    ConversationState,
    Found,
    Ingested,
    Item,
    Retry,
    UnknownInbox,
    direct_target,
    direction_of,
    find,
    insert_contacts,
    insert_conversations,
    insert_messages,
    known_contacts,
    lock,
    record_thread_keys,
    sender_of,
    update_conversations,
)
from inbox.notifications import NewNotification, notify_many
from inbox.outbox import stage_events
from inbox.routing import RoutingFacts, Rule, message_language, pick_team, rules_for
from inbox.threading import direct_conversation, hint_key, order_at, parent_keys, too_old_to_reopen
from inbox.views import PREVIEW_CHARS

log = logging.getLogger("switchboard.ingest")

RETRIES = 5
MAX_CC = 50
# SQLSTATEs of a race lost to another transaction: the batch is simply done again.
_RACES = {"40P01", "40001"}

__all__ = ["Ingested", "UnknownInbox", "ingest", "ingest_batch"]


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
    items = [Item(i, m, InboxInfo(0, "", False), order_at(m)) for i, m in enumerate(messages)]
    await _run(ctx, items)
    return [item.result if item.result is not None else RuntimeError("not ingested")
            for item in items]


async def _run(ctx: InboxContext, items: list[Item]) -> None:
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


async def _attempt(ctx: InboxContext, items: list[Item]) -> None:
    for attempt in range(RETRIES):
        fresh = [Item(i.index, i.message, i.inbox, i.at) for i in items]
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
    if isinstance(exc, Retry):
        return True
    orig = getattr(exc, "orig", None) if isinstance(exc, DBAPIError) else None
    return getattr(orig, "sqlstate", None) in _RACES


async def _ingest(ctx: InboxContext, session: AsyncSession, items: list[Item]) -> None:
    now = utcnow()
    live: list[Item] = []
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
    await lock(session, live)
    events: list[View] = await mark_bounced(session, [
        (i.inbox.id, i.message.bounce_of,
         i.message.metadata.get("bounce_reason") or i.message.text or "undeliverable")
        for i in live if i.message.bounce_of])
    contacts = await known_contacts(session, live)
    direct = sorted({d for i in live for d in (direct_conversation(i.message),
                                               i.message.conversation_ref) if d})
    found = await find(session, live, contacts, direct)
    _decide(ctx, live, contacts, found, now)
    await _assign(ctx, session, live, now)
    await insert_contacts(session, live, now)
    await insert_conversations(session, live)
    await insert_messages(session, live, now)
    await record_thread_keys(session, live)
    await update_conversations(session, live)
    stage_events(session, events + await _events(session, live, now))
    answers = [(i.conversation.id, i.csat_score) for i in live if i.csat_score is not None
               and i.conversation is not None and i.conversation.id is not None
               and i.message_id is not None]
    if answers:
        await record_replies(session, answers, now)


# -- deciding ----------------------------------------------------------------------------


def _decide(
    ctx: InboxContext, items: list[Item], contacts: dict[tuple[str, str], ContactState],
    found: Found, now: datetime,
) -> None:
    """Each message's contact and conversation, in order, as threading.py says."""
    window = ctx.settings.reopen_window_seconds
    keys = {k: found.conversations[v] for k, v in found.by_key.items()}  # grows as it stores
    running = {k: found.conversations[v] for k, v in found.running.items()}
    new_running: dict[tuple[int, int], ConversationState] = {}  # keyed by id() of a new contact
    seen: dict[tuple[int, str], Item] = {}
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
        contact = contacts.get(sender_of(item))
        if contact is None:
            contact = contacts[sender_of(item)] = ContactState(
                None, m.sender.display_name, {}, created=True)
        item.contact = contact
        if conversation is None and m.conversation_ref is not None:
            named = direct_target(found, m.conversation_ref)
            if named is not None and named.inbox_id == inbox_id and contact.id is not None \
                    and named.contact_id == contact.id and not _stale(named, now, window):
                conversation = named
        if conversation is None and m.threading == "contact":
            conversation = (new_running.get((inbox_id, id(contact))) if contact.id is None
                            else running.get((inbox_id, contact.id)))
            if conversation is not None and _stale(conversation, now, window):
                conversation = None
        if conversation is None and m.from_business:
            item.suppressed = True  # written elsewhere with no conversation here to join
            continue
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
    item: Item, keys: dict[tuple[int, str], ConversationState], found: Found, now: datetime,
    window: int,
) -> ConversationState | None:
    m, inbox_id = item.message, item.inbox.id
    candidates = [keys.get((inbox_id, k)) for k in parent_keys(m)]
    direct = direct_conversation(m)
    if direct is not None:
        named = direct_target(found, direct)
        candidates.append(named if named is not None and named.inbox_id == inbox_id else None)
    hint = hint_key(m)
    if hint is not None:
        candidates.append(keys.get((inbox_id, hint)))
    candidates.append(keys.get((inbox_id, m.external_id)))  # a reply that came first
    conversation = next((c for c in candidates if c is not None), None)
    if conversation is not None and not m.automated and _stale(conversation, now, window):
        return None  # too old to reopen: a new conversation starts
    return conversation


def _stale(conversation: ConversationState, now: datetime, window: int) -> bool:
    # A muted conversation takes the customer's messages however late they come.
    return not conversation.muted and too_old_to_reopen(
        conversation.status, conversation.resolved_at, now=now, window_seconds=window)


def _open(item: Item, contact: ContactState, now: datetime) -> ConversationState:
    m = item.message
    return ConversationState(
        id=None, inbox_id=item.inbox.id, contact_id=contact.id, contact=contact,
        contact_name=contact.name, identity_id=None, status="open", assignee_id=None,
        team_id=None, subject=m.metadata.get("subject"), priority="none", waiting_since=None,
        last_message_preview=None, unread_count=0, snoozed_until=None,
        last_activity_at=item.at, resolved_at=None, created_at=now, cc=[], created=True,
    )


def _apply(
    item: Item, contact: ContactState, conversation: ConversationState, now: datetime
) -> None:
    """What a customer's message does to its conversation."""
    m = item.message
    if m.from_business:
        # The business answered from elsewhere: the thread shows it, nothing else changes.
        if item.at >= conversation.last_activity_at:
            conversation.last_activity_at = item.at
            conversation.last_message_preview = (m.text or "")[:PREVIEW_CHARS] or None
            conversation.changed = True
    elif conversation.muted:
        pass  # muted: in the thread, and nothing else (no reopening, no unread, no queue)
    elif not m.automated and conversation.status == "resolved" \
            and answer_open(conversation.csat_asked_at, now) \
            and (score := digit_answer(m.text)) is not None:
        # The answer to the satisfaction survey: in the thread, but nothing to reopen.
        item.csat_score = score
    elif not m.automated:
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


def _merge_cc(conversation: ConversationState, m: InboundMessage, contact: ContactState) -> None:
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


async def _assign(ctx: InboxContext, session: AsyncSession, items: list[Item],
                  now: datetime) -> None:
    """Route new conversations by the rules and give every unassigned one that a customer
    wrote to an agent, or queue it (inbox/assignment.py's rules, decided for the batch)."""
    wanting: dict[int, tuple[Item, ConversationState]] = {}
    for item in items:
        conv = item.conversation
        if conv is None or item.message.automated or item.message.from_business \
                or not item.inbox.auto_assign or conv.status == "resolved":
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


def _team(rules: list[Rule], item: Item, conv: ConversationState) -> int | None:
    contact = conv.contact
    attributes = contact.attributes if contact is not None else {}
    return pick_team(rules, RoutingFacts(
        inbox_id=conv.inbox_id, channel=item.inbox.channel, text=item.message.text or "",
        language=message_language(item.message.metadata, attributes),
        contact_attributes=attributes,
    ))


def _scope(conv: ConversationState) -> Scope:
    return Scope(conv.inbox_id, conv.team_id)


# -- events ------------------------------------------------------------------------------


async def _events(session: AsyncSession, items: list[Item], now: datetime) -> list[View]:
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


def _of(item: Item, kind: str) -> str | None:
    sender = item.message.sender
    return sender.value if sender.kind == kind else None


def _view(snap: ConversationState, channel: str, conv: ConversationState) -> ConversationView:
    assert conv.id is not None and conv.contact_id is not None
    return ConversationView(
        id=conv.id, inbox_id=snap.inbox_id, channel=channel, contact_id=conv.contact_id,
        contact_name=conv.contact_name, status=snap.status, assignee_id=snap.assignee_id,
        team_id=snap.team_id, subject=snap.subject,
        last_message_preview=snap.last_message_preview, unread_count=snap.unread_count,
        snoozed_until=snap.snoozed_until, priority=snap.priority, labels=snap.labels,
        waiting_since=snap.waiting_since, last_activity_at=snap.last_activity_at,
        created_at=snap.created_at, cc=[IdentityView.model_validate(p) for p in snap.cc],
        csat_score=snap.csat_score, muted=snap.muted,
    )


def _message_view(item: Item, now: datetime) -> MessageView:
    m = item.message
    assert item.message_id is not None and item.conversation is not None
    assert item.conversation.id is not None and item.contact is not None
    return MessageView(
        id=item.message_id, conversation_id=item.conversation.id, inbox_id=item.inbox.id,
        direction=direction_of(m), kind="message", text=m.text, html=m.html,
        external_id=m.external_id, contact_id=item.contact.id, agent_id=None,
        status="sent" if m.from_business else None, status_reason=None,
        sent_elsewhere=m.from_business, automated=m.automated,
        attachments=[a.model_dump(mode="json") for a in m.attachments],
        accepted_at=item.at, created_at=now,
    )
