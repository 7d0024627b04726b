"""Canned responses: saved replies with placeholders, and their rendering for a conversation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from hub.types import RowId
from inbox import canned
from inbox.agents import Principal
from web.context import web_context
from web.conversations import CONV
from web.http import (
    AUTHOR_ONLY,
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
    from inbox.models import CannedResponse


class CannedView(BaseModel):
    id: int
    shortcut: str
    title: str
    text: str
    created_by: int | None
    # The team whose leads manage it; null: the workspace's or its author's own.
    team_id: int | None = None
    updated_at: datetime


class CannedRequest(RequestModel):
    shortcut: str = Field(min_length=1, max_length=61)
    title: str = Field(default="", max_length=200)
    text: str = Field(min_length=1, max_length=canned.MAX_TEXT)
    # A team of yours (leads) or any (admins); absent: your own.
    team_id: RowId | None = None


class CannedChange(RequestModel):
    shortcut: str | None = Field(default=None, min_length=1, max_length=61)
    title: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, min_length=1, max_length=canned.MAX_TEXT)


class RenderedView(BaseModel):
    text: str


def _canned_view(row: CannedResponse) -> CannedView:
    assert row.id is not None
    return CannedView(id=row.id, shortcut=row.shortcut, title=row.title, text=row.text,
                      created_by=row.created_by, team_id=row.team_id,
                      updated_at=row.updated_at)


async def get_canned(request: Request, principal: Principal) -> Response:
    """Canned responses, by shortcut; `q` narrows them down as the agent types."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        rows = await canned.list_canned(session, q=request.query_params.get("q"))
    return json_response([_canned_view(row) for row in rows])


async def post_canned(request: Request, principal: Principal) -> Response:
    """Save a canned response (any agent); variables are checked now."""
    ctx = web_context(request)
    db = ctx.inbox.db
    body = await parse_json(request, CannedRequest)

    async def create() -> CannedView:
        async with db.write() as session:
            row = await canned.create_canned(session, principal, shortcut=body.shortcut,
                                             title=body.title, text=body.text,
                                             team_id=body.team_id)
            return _canned_view(row)

    return json_response(await act(create()), status=201)


async def patch_canned(request: Request, principal: Principal) -> Response:
    """Change a canned response (its author, its team's leads or an admin)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    body = await parse_json(request, CannedChange)

    async def change() -> CannedView:
        async with db.write() as session:
            row = await canned.update_canned(
                session, principal, int(request.path_params["canned_id"]),
                shortcut=body.shortcut, title=body.title, text=body.text)
            return _canned_view(row)

    return json_response(await act(change()))


async def delete_canned(request: Request, principal: Principal) -> Response:
    """Remove a canned response (its author, a lead or an admin)."""
    ctx = web_context(request)
    db = ctx.inbox.db

    async def remove() -> None:
        async with db.write() as session:
            await canned.delete_canned(session, principal,
                                       int(request.path_params["canned_id"]))

    await act(remove())
    return Response(status_code=204)


async def render_canned(request: Request, principal: Principal) -> Response:
    """A canned response filled in for this conversation (plain text, to insert)."""
    ctx = web_context(request)
    db = ctx.inbox.db

    async def render() -> str:
        async with db.read() as session:
            return await canned.render_canned(
                session, principal, conversation_id=path_id(request, "conversation_id"),
                canned_id=int(request.path_params["canned_id"]))

    return json_response(RenderedView(text=await act(render())))


OPERATIONS: list[Operation] = [
    (Doc("POST", CONV + "/canned-responses/{canned_id:id}/render",
         "Fill a canned response in for a conversation", response=RenderedView),
     authenticated(render_canned)),
    (Doc("GET", "/api/v1/canned-responses", "Canned responses", response=CannedView,
         many=True, query=(("q", "shortcut start, or words of the title or text"),)),
     authenticated(get_canned)),
    (Doc("POST", "/api/v1/canned-responses", "Save a canned response", CannedRequest,
         CannedView, status=201), authenticated(post_canned)),
    (Doc("PATCH", "/api/v1/canned-responses/{canned_id:id}", "Change a canned response",
         CannedChange, CannedView, extra_responses=AUTHOR_ONLY), authenticated(patch_canned)),
    (Doc("DELETE", "/api/v1/canned-responses/{canned_id:id}", "Remove a canned response",
         status=204, extra_responses=AUTHOR_ONLY), authenticated(delete_canned)),
]
