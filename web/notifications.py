"""An agent's notifications: mentions and assignments, read and unread."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from hub.events import NotificationView
from hub.types import RowId
from inbox.agents import Principal
from inbox.notifications import list_notifications, mark_notifications_read
from inbox.queries import InvalidQuery
from web.context import web_context
from web.http import (
    HTTPProblem,
    Operation,
    RequestModel,
    authenticated,
    int_param,
    json_response,
    parse_json,
)
from web.openapi import Doc


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: str | None
    unread_count: int


class ReadRequest(RequestModel):
    ids: list[RowId] = Field(default_factory=list, max_length=500)
    all: bool = False


class ReadResult(BaseModel):
    marked: int
    unread_count: int


async def get_notifications(request: Request, principal: Principal) -> Response:
    """Your notifications (mentions, assignments), newest first, with the unread count."""
    ctx = web_context(request)
    db = ctx.inbox.db
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
    ctx = web_context(request)
    db = ctx.inbox.db
    body = await parse_json(request, ReadRequest)
    async with db.write() as session:
        marked = await mark_notifications_read(session, principal, ids=body.ids,
                                               every=body.all)
        _, _, unread = await list_notifications(session, principal, limit=1)
    return json_response(ReadResult(marked=marked, unread_count=unread))


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/notifications", "Your notifications", response=NotificationPage,
         query=(("kind", "mention or assigned"), ("unread", "1: only unread"),
            ("cursor", "next_cursor of the previous page"), ("limit", "1-100"))),
     authenticated(get_notifications)),
    (Doc("POST", "/api/v1/notifications/read", "Mark notifications read", ReadRequest,
         ReadResult), authenticated(read_notifications)),
]
