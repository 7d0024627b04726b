"""The contact view: a contact's identities, conversations, attributes and notes; edits; merging.

A contact is visible to an agent when it has a conversation in an inbox the agent may see
(admins: every contact). A merged contact keeps its row with `merged_into_id`, so an old
link leads to the contact it became.

Email and phone are identities too (threading finds contacts by them), so setting one
links it to the contact as an identity, the way a widget visitor's email is linked. An
address another contact owns already is refused: those two are one person, and merging
them is the way to say so. Clearing or replacing the address shown keeps the old identity:
conversations reply through it, and mail from it should still find this contact.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import (
    ContactMerged,
    ContactUpdated,
    ContactView,
    ConversationUpdated,
    ConversationView,
    View,
)
from hub.identity import InvalidIdentity, normalize_email, normalize_phone
from hub.types import Identity, utcnow
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.db import is_postgresql
from inbox.errors import NotFound, Refused
from inbox.models import Contact, ContactIdentity, ContactNote, Conversation, Message
from inbox.outbox import stage_events
from inbox.queries import ConversationFilter, contact_is_visible, list_conversations
from inbox.views import contact_view, load_conversation_view
from inbox.visitors import VisitView, contact_visits

MAX_HOPS = 50  # merged into a contact that was merged into another, and so on
MAX_NOTES = 200
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_VALUE = 1000
CONVERSATIONS_SHOWN = 100


class Unset(enum.Enum):
    """A field the request left out (not the same as null, which clears it)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


@dataclass(frozen=True)
class ContactDetail:
    """What the contact view shows."""

    contact: ContactView
    conversations: list[ConversationView]
    conversations_next_cursor: str | None
    notes: list[ContactNote]
    # The merged contact id that was asked for, when it led here.
    redirected_from: int | None
    # What the website chat knows of them, in the inboxes the agent sees (latest first).
    visits: list[VisitView] = field(default_factory=list)


async def _resolve(
    session: AsyncSession, principal: Principal, contact_id: int, *, lock: bool = False
) -> tuple[Contact, int | None]:
    """The contact (following merges) if the principal may see it, and the id asked for
    when that was a merged one."""
    contact = await session.get(Contact, contact_id)
    hops = 0
    while contact is not None and contact.merged_into_id is not None and hops < MAX_HOPS:
        contact = await session.get(Contact, contact.merged_into_id)
        hops += 1
    if contact is None or contact.merged_into_id is not None or contact.id is None or not (
        await contact_is_visible(session, principal, contact.id)
    ):
        raise NotFound(f"contact {contact_id} not found")
    if lock and is_postgresql(session):
        # Threading locks a contact before it opens a conversation for them: the same lock
        # keeps a merge or an address change from crossing a message on its way in.
        await session.refresh(contact, with_for_update=True)
    return contact, (contact_id if contact.id != contact_id else None)



async def contact_detail(
    session: AsyncSession, principal: Principal, contact_id: int
) -> ContactDetail:
    """A contact with identities and attributes, their visible conversations and notes."""
    contact, redirected_from = await _resolve(session, principal, contact_id)
    assert contact.id is not None
    conversations, cursor = await list_conversations(
        session, principal, ConversationFilter(contact_id=contact.id), limit=CONVERSATIONS_SHOWN
    )
    notes = await session.exec(
        select(ContactNote)
        .where(ContactNote.contact_id == contact.id)
        .order_by(col(ContactNote.created_at).desc(), col(ContactNote.id).desc())
        .limit(MAX_NOTES)
    )
    view = await contact_view(session, contact)
    visits = await contact_visits(
        session, [i.value for i in view.identities if i.kind == "visitor"])
    return ContactDetail(
        contact=view, conversations=conversations, conversations_next_cursor=cursor,
        notes=list(notes), redirected_from=redirected_from,
        visits=[v for v in visits if v.inbox_id in principal.inbox_ids],
    )


def _attributes(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        if not key or len(key) > 100:
            raise Refused("attributes: a name has 1 to 100 characters")
        if value is None:
            merged.pop(key, None)  # null removes the attribute
            continue
        if not isinstance(value, str | int | float | bool):
            raise Refused(f"attributes.{key}: a text, number or true/false")
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_VALUE:
            raise Refused(f"attributes.{key}: at most {MAX_ATTRIBUTE_VALUE} characters")
        merged[key] = value
    if len(merged) > MAX_ATTRIBUTES:
        raise Refused(f"attributes: at most {MAX_ATTRIBUTES} per contact")
    return merged


async def _link_identity(
    session: AsyncSession, principal: Principal | None, contact: Contact, kind: str, value: str
) -> None:
    """Make (kind, value) an identity of the contact, unless another contact owns it
    (`principal` None: Switchboard itself asks, for another system)."""
    owner = (
        await session.exec(select(ContactIdentity).where(
            ContactIdentity.kind == kind, ContactIdentity.value == value))
    ).first()
    if owner is not None and owner.contact_id != contact.id:
        # Name the owner only to an agent who may see them (so they can merge the two).
        named = principal is None or await contact_is_visible(session, principal,
                                                              owner.contact_id)
        raise Refused(
            f"{kind}: {value} belongs to "
            + (f"contact {owner.contact_id}" if named else "another contact")
            + "; merge the two contacts instead"
        )
    if owner is None:
        assert contact.id is not None
        session.add(ContactIdentity(contact_id=contact.id, kind=kind, value=value))
        try:
            await session.flush()
        except IntegrityError:
            # Someone linked the same address at this very moment.
            raise Refused(f"{kind}: {value} belongs to another contact") from None


async def update_contact(
    ctx: InboxContext,
    principal: Principal,
    contact_id: int,
    *,
    name: str | Unset | None = UNSET,
    email: str | Unset | None = UNSET,
    phone: str | Unset | None = UNSET,
    attributes: dict[str, Any] | None = None,
) -> ContactView:
    """Change a contact's name, email, phone (normalised, linked as identities), attributes."""
    try:
        address = normalize_email(email) if isinstance(email, str) else email
    except InvalidIdentity as exc:
        raise Refused(f"email: {exc}") from None
    try:
        number = normalize_phone(phone) if isinstance(phone, str) else phone
    except InvalidIdentity as exc:
        raise Refused(f"phone: {exc} (write it with the country code, like +44 20 7946 0000)"
                      ) from None
    events: list[View] = []
    async with ctx.db.write() as session:
        contact, _ = await _resolve(session, principal, contact_id, lock=True)
        before = _fields(contact)
        renamed = False
        if not isinstance(name, Unset):
            cleaned = " ".join(name.split())[:200] if name else None
            renamed = cleaned != contact.name
            contact.name = cleaned or None
        if isinstance(address, str):
            await _link_identity(session, principal, contact, "email", address)
        if not isinstance(address, Unset):
            contact.email = address
        if isinstance(number, str):
            await _link_identity(session, principal, contact, "phone", number)
        if not isinstance(number, Unset):
            contact.phone = number
        if attributes:
            contact.attributes = _attributes(contact.attributes, attributes)
        session.add(contact)
        await session.flush()
        view = await contact_view(session, contact)
        if renamed:
            # Conversation lists show the contact's name: refresh them live.
            events += await _conversations_updated(session, contact.id, principal.agent_id)
        changes = sorted(key for key, value in _fields(contact).items() if before[key] != value)
        if changes:
            contact.edited_at = utcnow()
            session.add(contact)
            events.append(ContactUpdated(inbox_id=None, at=utcnow(), contact=view,
                                         changes=changes, by_agent_id=principal.agent_id))
        stage_events(session, events)
    return view


def _fields(contact: Contact) -> dict[str, Any]:
    """What `contact.updated` compares: the fields an edit may change."""
    return {"name": contact.name, "email": contact.email, "phone": contact.phone,
            "attributes": dict(contact.attributes)}


async def _conversations_updated(
    session: AsyncSession, contact_id: int | None, by_agent_id: int | None
) -> list[ConversationUpdated]:
    rows = await session.exec(select(Conversation).where(Conversation.contact_id == contact_id))
    now = utcnow()
    return [
        ConversationUpdated(inbox_id=row.inbox_id, at=now, changes=["contact"],
                            conversation=await load_conversation_view(session, row),
                            by_agent_id=by_agent_id)
        for row in rows
    ]


async def add_note(
    ctx: InboxContext, principal: Principal, contact_id: int, *, text: str
) -> ContactNote:
    """Leave a note about a contact, for every agent who sees them."""
    text = text.strip()
    if not text:
        raise Refused("text: a note needs some text")
    async with ctx.db.write() as session:
        contact, _ = await _resolve(session, principal, contact_id)
        assert contact.id is not None
        note = ContactNote(contact_id=contact.id, agent_id=principal.agent_id, text=text)
        session.add(note)
        await session.flush()
    return note


async def merge_contacts(
    ctx: InboxContext, principal: Principal, *, contact_id: int, other_contact_id: int
) -> ContactView:
    """Merge another contact into this one: every identity, conversation and note moves here.

    The other contact stays, marked merged, so its old links lead here. One transaction.
    """
    async with ctx.db.write() as session:
        # Lock both in id order, as two merges of the same pair would otherwise deadlock.
        first, second = sorted((contact_id, other_contact_id))
        locked = {cid: await _resolve(session, principal, cid, lock=True)
                  for cid in (first, second)}
        survivor, other = locked[contact_id][0], locked[other_contact_id][0]
        if survivor.id == other.id:
            raise Refused("other_contact_id: that is this contact already")
        view = await _merge(session, survivor, other, by_agent_id=principal.agent_id)
    return view


async def _merge(session: AsyncSession, survivor: Contact, other: Contact, *,
                 by_agent_id: int | None) -> ContactView:
    """Move every identity, conversation and note of `other` to `survivor` (both locked by
    the caller) and stage the events; `by_agent_id` None: Switchboard did it."""
    survivor_id, other_id = survivor.id, other.id
    assert survivor_id is not None and other_id is not None
    moved = list(await session.exec(
        select(Conversation.id).where(Conversation.contact_id == other_id)))
    await session.exec(update(ContactIdentity).where(
        col(ContactIdentity.contact_id) == other_id).values(contact_id=survivor_id))
    await session.exec(update(Conversation).where(
        col(Conversation.contact_id) == other_id).values(contact_id=survivor_id))
    if moved:
        # By conversation: the messages table is large and indexed that way.
        await session.exec(update(Message).where(
            col(Message.conversation_id).in_(moved), col(Message.contact_id) == other_id,
        ).values(contact_id=survivor_id))
    await session.exec(update(ContactNote).where(
        col(ContactNote.contact_id) == other_id).values(contact_id=survivor_id))
    survivor.name = survivor.name or other.name
    survivor.email = survivor.email or other.email
    survivor.phone = survivor.phone or other.phone
    survivor.attributes = {**other.attributes, **survivor.attributes}
    other.merged_into_id = survivor_id
    session.add_all([survivor, other])
    await session.flush()
    view = await contact_view(session, survivor)
    conversations = await _conversations_updated(session, survivor_id, by_agent_id)
    now = utcnow()
    # One event per inbox the contact is in: no agent learns of a contact they cannot see.
    inbox_ids = sorted({event.inbox_id for event in conversations if event.inbox_id})
    events: list[View] = [
        ContactMerged(inbox_id=inbox_id, at=now, contact=view,
                      merged_contact_id=other_id, by_agent_id=by_agent_id)
        for inbox_id in inbox_ids
    ]
    events += conversations
    stage_events(session, events)
    return view


async def link_verified_identities(
    ctx: InboxContext, conversation_id: int, identities: Sequence[Identity]
) -> int | None:
    """Identities a provider vouches are the contact's of a conversation (Telegram's "share
    my phone number" button): each becomes theirs; one that is already another contact's
    makes the two one, that other contact surviving (the established one keeps its history,
    and this conversation joins it). The contact id the conversation has now."""
    async with ctx.db.write() as session:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            return None
        contact = await session.get(Contact, conversation.contact_id)
        if contact is None:
            return None
        for identity in identities:
            owner = (await session.exec(select(ContactIdentity).where(
                ContactIdentity.kind == identity.kind,
                ContactIdentity.value == identity.value))).first()
            if owner is None:
                assert contact.id is not None
                session.add(ContactIdentity(contact_id=contact.id, kind=identity.kind,
                                            value=identity.value,
                                            display_name=identity.display_name))
                if identity.kind == "phone" and not contact.phone:
                    contact.phone = identity.value
                    session.add(contact)
                await session.flush()
            elif owner.contact_id != contact.id:
                survivor = await session.get(Contact, owner.contact_id)
                if survivor is None or survivor.merged_into_id is not None:
                    continue
                if is_postgresql(session):
                    for row in sorted((survivor, contact), key=lambda c: c.id or 0):
                        await session.refresh(row, with_for_update=True)
                await _merge(session, survivor, contact, by_agent_id=None)
                contact = survivor
        return contact.id


async def change_from_outside(
    session: AsyncSession, contact_id: int, changes: dict[str, str | None], *, source: str
) -> list[str]:
    """Apply a change another system made (a CRM) to a contact, in the caller's transaction:
    `changes` of name, email, phone. Returns what changed (nothing when the values are
    Switchboard's already, which is how an echo of Switchboard's own push ends).

    Refused when an email or phone belongs to another contact, or does not read as one.
    The events say `source`, so the system that made the change is not told it back.
    """
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.merged_into_id is not None or contact.id is None:
        raise NotFound(f"contact {contact_id} not found")
    if is_postgresql(session):
        await session.refresh(contact, with_for_update=True)
    before = _fields(contact)
    if "name" in changes:
        contact.name = " ".join((changes["name"] or "").split())[:200] or None
    for kind, normalise in (("email", normalize_email), ("phone", normalize_phone)):
        if kind not in changes:
            continue
        value = changes[kind]
        if value is not None:
            try:
                value = normalise(value)
            except InvalidIdentity as exc:
                raise Refused(f"{kind}: {exc}") from None
            if value != getattr(contact, kind):
                await _link_identity(session, None, contact, kind, value)
        setattr(contact, kind, value)
    changed = sorted(key for key, value in _fields(contact).items() if before[key] != value)
    if not changed:
        return []
    session.add(contact)
    await session.flush()
    view = await contact_view(session, contact)
    events: list[View] = [ContactUpdated(inbox_id=None, at=utcnow(), contact=view,
                                         changes=changed, by_agent_id=None, source=source)]
    events += await _conversations_updated(session, contact.id, None)
    stage_events(session, events)
    return changed
