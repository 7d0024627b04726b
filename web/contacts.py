"""Contacts: one with its conversations and notes, changes, notes, merge."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from hub.events import ContactView, ConversationView
from hub.types import RowId
from inbox import contacts
from inbox.agents import Principal
from inbox.visitors import VisitView
from web.context import web_context
from web.http import (
    Operation,
    RequestModel,
    act,
    authenticated,
    json_response,
    parse_json,
    path_id,
)
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import ContactNote


class ContactNoteView(BaseModel):
    id: int
    contact_id: int
    agent_id: int | None
    text: str
    created_at: datetime


class ContactDetailView(ContactView):
    """A contact with their conversations (visible inboxes, every channel) and notes."""

    conversations: list[ConversationView]
    # More of the contact's conversations: GET /api/v1/conversations?contact_id=&cursor=
    conversations_next_cursor: str | None
    notes: list[ContactNoteView]
    # Set when the id asked for is a contact merged into this one.
    redirected_from: int | None
    # What the website chat knows: page, referrer, browser, language, time zone, seen.
    visits: list[VisitView]


class ContactChange(RequestModel):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    # Merged into the contact's attributes; a null value removes that attribute.
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=contacts.MAX_ATTRIBUTES)


class ContactNoteRequest(RequestModel):
    text: str = Field(min_length=1, max_length=5000)


class MergeRequest(RequestModel):
    other_contact_id: RowId


def _note_view(row: ContactNote) -> ContactNoteView:
    assert row.id is not None
    return ContactNoteView(id=row.id, contact_id=row.contact_id, agent_id=row.agent_id,
                           text=row.text, created_at=row.created_at)


CONTACT = "/api/v1/contacts/{contact_id:id}"


async def get_contact(request: Request, principal: Principal) -> Response:
    """A contact: identities, attributes, conversations on every channel, notes."""
    ctx = web_context(request)
    db = ctx.inbox.db

    async def load() -> contacts.ContactDetail:
        async with db.read() as session:
            return await contacts.contact_detail(session, principal, path_id(request, "contact_id"))

    detail: contacts.ContactDetail = await act(load())
    return json_response(ContactDetailView(
        **detail.contact.model_dump(), conversations=detail.conversations,
        conversations_next_cursor=detail.conversations_next_cursor,
        notes=[_note_view(n) for n in detail.notes], redirected_from=detail.redirected_from,
        visits=detail.visits,
    ))


async def patch_contact(request: Request, principal: Principal) -> Response:
    """Change a contact's name, email, phone or attributes."""
    ctx = web_context(request)
    body = await parse_json(request, ContactChange)
    given = body.model_fields_set
    view = await act(contacts.update_contact(
        ctx.inbox, principal, path_id(request, "contact_id"),
        name=body.name if "name" in given else contacts.UNSET,
        email=body.email if "email" in given else contacts.UNSET,
        phone=body.phone if "phone" in given else contacts.UNSET,
        attributes=body.attributes,
    ))
    return json_response(view)


async def post_contact_note(request: Request, principal: Principal) -> Response:
    """Leave a note about a contact."""
    ctx = web_context(request)
    body = await parse_json(request, ContactNoteRequest)
    note = await act(contacts.add_note(ctx.inbox, principal, path_id(request, "contact_id"),
                                        text=body.text))
    return json_response(_note_view(note), status=201)


async def post_merge(request: Request, principal: Principal) -> Response:
    """Merge another contact into this one; every identity and conversation is kept."""
    ctx = web_context(request)
    body = await parse_json(request, MergeRequest)
    view = await act(contacts.merge_contacts(
        ctx.inbox, principal, contact_id=path_id(request, "contact_id"),
        other_contact_id=body.other_contact_id))
    return json_response(view)


OPERATIONS: list[Operation] = [
    (Doc("GET", CONTACT, "Get a contact with conversations and notes",
         response=ContactDetailView), authenticated(get_contact)),
    (Doc("PATCH", CONTACT, "Change a contact", ContactChange, ContactView),
     authenticated(patch_contact)),
    (Doc("POST", CONTACT + "/notes", "Add a note about a contact", ContactNoteRequest,
         ContactNoteView, status=201), authenticated(post_contact_note)),
    (Doc("POST", CONTACT + "/merge", "Merge another contact into this one", MergeRequest,
         ContactView), authenticated(post_merge)),
]
