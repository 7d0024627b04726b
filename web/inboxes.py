"""Inboxes: list, connect, members, the poller's import progress, and what their channels kept
aside (quarantine)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from channels.base import settings_for_new_inbox, validate_settings
from hub.types import RowId
from inbox.agents import Principal
from inbox.assignment import drain_queue
from inbox.channel_state import FolderSync, list_quarantined, quarantined_message, sync_status
from inbox.inboxes import (
    InboxError,
    create_inbox,
    inbox_by_id,
    inbox_settings,
    set_members,
    visible_inboxes,
)
from inbox.queries import is_row_id
from web.context import web_context
from web.http import (
    HTTPProblem,
    Operation,
    RequestModel,
    authenticated,
    json_response,
    not_found,
    parse_json,
)
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Inbox


class InboxView(BaseModel):
    id: int
    name: str
    channel: str
    auto_assign: bool
    assignment_policy: str = "round_robin"
    requeue_on_offline: bool = False


class CreateInboxRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=40)
    settings: dict[str, Any] = Field(default_factory=dict)
    auto_assign: bool = True


class MembersRequest(RequestModel):
    agent_ids: list[RowId] = Field(max_length=10_000)


class QuarantinedView(BaseModel):
    id: int
    inbox_id: int
    reason: str
    size: int
    created_at: datetime


def inbox_view(inbox: Inbox) -> InboxView:
    assert inbox.id is not None
    return InboxView(id=inbox.id, name=inbox.name, channel=inbox.channel,
                     auto_assign=inbox.auto_assign, assignment_policy=inbox.assignment_policy,
                     requeue_on_offline=inbox.requeue_on_offline)


async def inboxes(request: Request, principal: Principal) -> Response:
    """The inboxes you belong to (all of them for admins)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        found = await visible_inboxes(session, principal)
    return json_response([inbox_view(i) for i in found])


async def add_inbox(request: Request, principal: Principal) -> Response:
    """Connect a new inbox (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins connect inboxes")
    body = await parse_json(request, CreateInboxRequest)
    adapter = ctx.channels.get(body.channel)
    if adapter is None:
        known = ", ".join(sorted(ctx.channels))
        raise HTTPProblem(422, "invalid_field", f"channel: unknown; use one of {known}")
    settings = settings_for_new_inbox(adapter, body.settings)
    problems = validate_settings(adapter, settings)
    if problems:
        raise HTTPProblem(422, "invalid_field", "settings." + "; settings.".join(problems))
    async with db.write() as session:
        try:
            inbox = await create_inbox(
                session, name=body.name, channel=body.channel, settings=settings,
                auto_assign=body.auto_assign,
            )
        except InboxError as exc:
            raise HTTPProblem(422, "invalid_field", str(exc)) from None
        view = inbox_view(inbox)
    return json_response(view, status=201)


async def put_members(request: Request, principal: Principal) -> Response:
    """Set exactly which agents belong to an inbox (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins change inbox members")
    inbox_id = int(request.path_params["inbox_id"])
    body = await parse_json(request, MembersRequest)
    async with db.write() as session:
        if await inbox_by_id(session, inbox_id) is None:
            raise not_found("inbox")
        try:
            await set_members(session, inbox_id=inbox_id, agent_ids=body.agent_ids)
        except InboxError as exc:
            raise HTTPProblem(422, "invalid_field", str(exc)) from None
    await drain_queue(ctx.inbox)  # new members may take what waits
    return Response(status_code=204)


async def quarantine(request: Request, principal: Principal) -> Response:
    """Messages a channel received but could not parse, with the error (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see quarantined messages")
    async with db.read() as session:
        rows = await list_quarantined(session)
        views = [QuarantinedView(id=r.id or 0, inbox_id=r.inbox_id, reason=r.reason,
                                 size=len(r.raw), created_at=r.created_at) for r in rows]
    return json_response(views)


async def quarantined_raw(request: Request, principal: Principal) -> Response:
    """The raw bytes of a quarantined message, as a download (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see quarantined messages")
    async with db.read() as session:
        row = await quarantined_message(session, int(request.path_params["item_id"]))
    if row is None:
        raise not_found("quarantined message")
    return Response(row.raw, media_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename=quarantined-{row.id}.eml",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


class InboxSync(BaseModel):
    """The sources an inbox's poller follows (an email inbox: its IMAP folder)."""

    inbox_id: int
    channel: str
    folders: list[FolderSync]


async def sync(request: Request, principal: Principal) -> Response:
    """Where the inbox's poller stands, and its last import's progress (admin)."""
    ctx = web_context(request)
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see how an inbox syncs")
    raw = str(request.path_params["inbox_id"])
    if not is_row_id(raw):
        raise HTTPProblem(404, "not_found", "no such inbox")
    async with ctx.inbox.db.read() as session:
        found = await inbox_settings(session, int(raw))
        if found is None:
            raise HTTPProblem(404, "not_found", "no such inbox")
        folders = await sync_status(session, inbox_id=int(raw))
    return json_response(InboxSync(inbox_id=int(raw), channel=found[0], folders=folders))


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/inboxes", "Your inboxes", response=InboxView, many=True),
     authenticated(inboxes)),
    (Doc("POST", "/api/v1/inboxes", "Connect an inbox (admin)", CreateInboxRequest,
         InboxView, status=201), authenticated(add_inbox)),
    (Doc("PUT", "/api/v1/inboxes/{inbox_id:id}/members", "Set an inbox's members (admin)",
         MembersRequest, status=204), authenticated(put_members)),
    (Doc("GET", "/api/v1/quarantine", "Messages kept aside unparsed (admin)",
         response=QuarantinedView, many=True), authenticated(quarantine)),
    (Doc("GET", "/api/v1/quarantine/{item_id:id}/raw", "Download one (admin)"),
     authenticated(quarantined_raw)),
    (Doc("GET", "/api/v1/inboxes/{inbox_id:id}/sync",
         "How far the inbox's poller has read, and its import's progress (admin)",
         response=InboxSync),
     authenticated(sync)),
]
