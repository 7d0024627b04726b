"""Working together (JSON API under /api/v1): notifications, viewers, labels, priority,
canned responses and contacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.events import ContactView, ConversationView, NotificationView
from inbox import canned, contacts, labels, viewers
from inbox.agents import Principal
from inbox.models import CannedResponse, ContactNote, Label
from inbox.notifications import list_notifications, mark_notifications_read
from inbox.queries import InvalidQuery
from web.api import _act
from web.context import WebContext
from web.http import HTTPProblem, authenticated, int_param, json_response, parse_json
from web.openapi import Doc


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: str | None
    unread_count: int


class ReadRequest(_In):
    ids: list[int] = Field(default_factory=list, max_length=500)
    all: bool = False


class ReadResult(BaseModel):
    marked: int
    unread_count: int


class ViewingRequest(_In):
    viewing: bool = True


class ViewerView(BaseModel):
    agent_id: int
    name: str
    since: datetime


class LabelView(BaseModel):
    id: int
    name: str
    color: str


class LabelRequest(_In):
    name: str = Field(min_length=1, max_length=60)
    color: str | None = Field(default=None, max_length=7)


class ConversationLabelsRequest(_In):
    labels: list[str] = Field(max_length=labels.MAX_LABELS)


class PriorityRequest(_In):
    priority: Literal["none", "low", "medium", "high", "urgent"]


class CannedView(BaseModel):
    id: int
    shortcut: str
    title: str
    text: str
    created_by: int | None
    updated_at: datetime


class CannedRequest(_In):
    shortcut: str = Field(min_length=1, max_length=61)
    title: str = Field(default="", max_length=200)
    text: str = Field(min_length=1, max_length=canned.MAX_TEXT)


class CannedChange(_In):
    shortcut: str | None = Field(default=None, min_length=1, max_length=61)
    title: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, min_length=1, max_length=canned.MAX_TEXT)


class RenderedView(BaseModel):
    text: str


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


class ContactChange(_In):
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    # Merged into the contact's attributes; a null value removes that attribute.
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=contacts.MAX_ATTRIBUTES)


class ContactNoteRequest(_In):
    text: str = Field(min_length=1, max_length=5000)


class MergeRequest(_In):
    other_contact_id: int


def _label_view(row: Label) -> LabelView:
    assert row.id is not None
    return LabelView(id=row.id, name=row.name, color=row.color)


def _canned_view(row: CannedResponse) -> CannedView:
    assert row.id is not None
    return CannedView(id=row.id, shortcut=row.shortcut, title=row.title, text=row.text,
                      created_by=row.created_by, updated_at=row.updated_at)


def _note_view(row: ContactNote) -> ContactNoteView:
    assert row.id is not None
    return ContactNoteView(id=row.id, contact_id=row.contact_id, agent_id=row.agent_id,
                           text=row.text, created_at=row.created_at)


def collab_routes(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """The routes and their OpenAPI descriptions."""
    db = ctx.inbox.db

    def conversation_id(request: Request) -> int:
        return int(request.path_params["conversation_id"])

    def contact_id(request: Request) -> int:
        return int(request.path_params["contact_id"])

    async def get_notifications(request: Request, principal: Principal) -> Response:
        """Your notifications (mentions, assignments), newest first, with the unread count."""
        q = request.query_params
        limit = int_param(q.get("limit"), "limit")
        try:
            async with db.read() as session:
                items, cursor, unread = await list_notifications(
                    session, principal, kind=q.get("kind") or None,
                    unread=q.get("unread") in ("1", "true"), cursor=q.get("cursor") or None,
                    limit=25 if limit is None else limit,
                )
        except InvalidQuery as exc:
            raise HTTPProblem(400, "invalid_parameter", str(exc)) from None
        return json_response(NotificationPage(items=items, next_cursor=cursor,
                                              unread_count=unread))

    async def read_notifications(request: Request, principal: Principal) -> Response:
        """Mark some of your notifications (ids) or all of them read."""
        body = await parse_json(request, ReadRequest)
        async with db.write() as session:
            marked = await mark_notifications_read(session, principal, ids=body.ids,
                                                   every=body.all)
            _, _, unread = await list_notifications(session, principal, limit=1)
        return json_response(ReadResult(marked=marked, unread_count=unread))

    async def post_viewing(request: Request, principal: Principal) -> Response:
        """Say you have the conversation open (repeat every 20 s) or left it."""
        body = await parse_json(request, ViewingRequest)
        await _act(viewers.set_viewing(ctx.inbox, principal,
                                       conversation_id=conversation_id(request),
                                       viewing=body.viewing))
        return Response(status_code=204)

    async def get_viewers(request: Request, principal: Principal) -> Response:
        """Agents who have the conversation open (seen in the last 60 seconds)."""
        found = await _act(viewers.list_viewers(ctx.inbox, principal,
                                                conversation_id=conversation_id(request)))
        return json_response([ViewerView(agent_id=v.agent_id, name=v.name, since=v.since)
                              for v in found])

    async def get_labels(request: Request, principal: Principal) -> Response:
        """Every label agents may put on conversations."""
        async with db.read() as session:
            rows = await labels.list_labels(session)
        return json_response([_label_view(row) for row in rows])

    async def post_label(request: Request, principal: Principal) -> Response:
        """Add a label (leads and admins)."""
        body = await parse_json(request, LabelRequest)
        row = await _act(labels.create_label(ctx.inbox, principal, name=body.name,
                                             color=body.color))
        return json_response(_label_view(row), status=201)

    async def delete_label(request: Request, principal: Principal) -> Response:
        """Remove a label, from every conversation too (leads and admins)."""
        await _act(labels.delete_label(ctx.inbox, principal,
                                       label_id=int(request.path_params["label_id"])))
        return Response(status_code=204)

    async def put_conversation_labels(request: Request, principal: Principal) -> Response:
        """Set exactly which labels (by name) a conversation has."""
        body = await parse_json(request, ConversationLabelsRequest)
        view = await _act(labels.set_conversation_labels(
            ctx.inbox, principal, conversation_id=conversation_id(request), names=body.labels))
        return json_response(view)

    async def put_priority(request: Request, principal: Principal) -> Response:
        """Set a conversation's priority."""
        body = await parse_json(request, PriorityRequest)
        view = await _act(labels.set_priority(
            ctx.inbox, principal, conversation_id=conversation_id(request),
            priority=body.priority))
        return json_response(view)

    async def get_canned(request: Request, principal: Principal) -> Response:
        """Canned responses, by shortcut; `q` narrows them down as the agent types."""
        async with db.read() as session:
            rows = await canned.list_canned(session, q=request.query_params.get("q"))
        return json_response([_canned_view(row) for row in rows])

    async def post_canned(request: Request, principal: Principal) -> Response:
        """Save a canned response (any agent); variables are checked now."""
        body = await parse_json(request, CannedRequest)

        async def create() -> CannedView:
            async with db.write() as session:
                row = await canned.create_canned(session, principal, shortcut=body.shortcut,
                                                 title=body.title, text=body.text)
                return _canned_view(row)

        return json_response(await _act(create()), status=201)

    async def patch_canned(request: Request, principal: Principal) -> Response:
        """Change a canned response (its author, a lead or an admin)."""
        body = await parse_json(request, CannedChange)

        async def change() -> CannedView:
            async with db.write() as session:
                row = await canned.update_canned(
                    session, principal, int(request.path_params["canned_id"]),
                    shortcut=body.shortcut, title=body.title, text=body.text)
                return _canned_view(row)

        return json_response(await _act(change()))

    async def delete_canned(request: Request, principal: Principal) -> Response:
        """Remove a canned response (its author, a lead or an admin)."""

        async def remove() -> None:
            async with db.write() as session:
                await canned.delete_canned(session, principal,
                                           int(request.path_params["canned_id"]))

        await _act(remove())
        return Response(status_code=204)

    async def render_canned(request: Request, principal: Principal) -> Response:
        """A canned response filled in for this conversation (plain text, to insert)."""

        async def render() -> str:
            async with db.read() as session:
                return await canned.render_canned(
                    session, principal, conversation_id=conversation_id(request),
                    canned_id=int(request.path_params["canned_id"]))

        return json_response(RenderedView(text=await _act(render())))

    async def get_contact(request: Request, principal: Principal) -> Response:
        """A contact: identities, attributes, conversations on every channel, notes."""

        async def load() -> contacts.ContactDetail:
            async with db.read() as session:
                return await contacts.contact_detail(session, principal, contact_id(request))

        detail: contacts.ContactDetail = await _act(load())
        return json_response(ContactDetailView(
            **detail.contact.model_dump(), conversations=detail.conversations,
            conversations_next_cursor=detail.conversations_next_cursor,
            notes=[_note_view(n) for n in detail.notes], redirected_from=detail.redirected_from,
        ))

    async def patch_contact(request: Request, principal: Principal) -> Response:
        """Change a contact's name, email, phone or attributes."""
        body = await parse_json(request, ContactChange)
        given = body.model_fields_set
        view = await _act(contacts.update_contact(
            ctx.inbox, principal, contact_id(request),
            name=body.name if "name" in given else contacts.UNSET,
            email=body.email if "email" in given else contacts.UNSET,
            phone=body.phone if "phone" in given else contacts.UNSET,
            attributes=body.attributes,
        ))
        return json_response(view)

    async def post_contact_note(request: Request, principal: Principal) -> Response:
        """Leave a note about a contact."""
        body = await parse_json(request, ContactNoteRequest)
        note = await _act(contacts.add_note(ctx.inbox, principal, contact_id(request),
                                            text=body.text))
        return json_response(_note_view(note), status=201)

    async def post_merge(request: Request, principal: Principal) -> Response:
        """Merge another contact into this one; every identity and conversation is kept."""
        body = await parse_json(request, MergeRequest)
        view = await _act(contacts.merge_contacts(
            ctx.inbox, principal, contact_id=contact_id(request),
            other_contact_id=body.other_contact_id))
        return json_response(view)

    conv = "/api/v1/conversations/{conversation_id:int}"
    contact = "/api/v1/contacts/{contact_id:int}"
    lead_only = {403: "Only team leads and admins"}
    author_only = {403: "Only its author, a team lead or an admin"}
    table: list[tuple[Doc, Any]] = [
        (Doc("GET", "/api/v1/notifications", "Your notifications", response=NotificationPage,
             query=(("kind", "mention or assigned"), ("unread", "1: only unread"),
                    ("cursor", "next_cursor of the previous page"), ("limit", "1-100"))),
         get_notifications),
        (Doc("POST", "/api/v1/notifications/read", "Mark notifications read", ReadRequest,
             ReadResult), read_notifications),
        (Doc("POST", conv + "/viewing", "Say you are viewing a conversation (or left)",
             ViewingRequest, status=204), post_viewing),
        (Doc("GET", conv + "/viewers", "Who is viewing a conversation", response=ViewerView,
             many=True), get_viewers),
        (Doc("PUT", conv + "/labels", "Set a conversation's labels", ConversationLabelsRequest,
             ConversationView), put_conversation_labels),
        (Doc("PUT", conv + "/priority", "Set a conversation's priority", PriorityRequest,
             ConversationView), put_priority),
        (Doc("POST", conv + "/canned-responses/{canned_id:int}/render",
             "Fill a canned response in for a conversation", response=RenderedView),
         render_canned),
        (Doc("GET", "/api/v1/labels", "Labels", response=LabelView, many=True), get_labels),
        (Doc("POST", "/api/v1/labels", "Add a label (lead/admin)", LabelRequest, LabelView,
             status=201, extra_responses=lead_only), post_label),
        (Doc("DELETE", "/api/v1/labels/{label_id:int}", "Remove a label (lead/admin)",
             status=204, extra_responses=lead_only), delete_label),
        (Doc("GET", "/api/v1/canned-responses", "Canned responses", response=CannedView,
             many=True, query=(("q", "shortcut start, or words of the title or text"),)),
         get_canned),
        (Doc("POST", "/api/v1/canned-responses", "Save a canned response", CannedRequest,
             CannedView, status=201), post_canned),
        (Doc("PATCH", "/api/v1/canned-responses/{canned_id:int}", "Change a canned response",
             CannedChange, CannedView, extra_responses=author_only), patch_canned),
        (Doc("DELETE", "/api/v1/canned-responses/{canned_id:int}", "Remove a canned response",
             status=204, extra_responses=author_only), delete_canned),
        (Doc("GET", contact, "Get a contact with conversations and notes",
             response=ContactDetailView), get_contact),
        (Doc("PATCH", contact, "Change a contact", ContactChange, ContactView), patch_contact),
        (Doc("POST", contact + "/notes", "Add a note about a contact", ContactNoteRequest,
             ContactNoteView, status=201), post_contact_note),
        (Doc("POST", contact + "/merge", "Merge another contact into this one", MergeRequest,
             ContactView), post_merge),
    ]
    routes = [Route(doc.path, authenticated(ctx, endpoint), methods=[doc.method])
              for doc, endpoint in table]
    return routes, [doc for doc, _ in table]
