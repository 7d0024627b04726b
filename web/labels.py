"""Labels: the workspace's list, added and removed by leads and admins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from hub.types import RowId
from inbox import labels
from inbox.agents import Principal
from web.context import web_context
from web.http import (
    LEAD_ONLY,
    Operation,
    RequestModel,
    act,
    authenticated,
    json_response,
    parse_json,
)
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Label


class LabelView(BaseModel):
    id: int
    name: str
    color: str
    description: str = ""
    # The team whose leads manage it; null: the workspace's (admins).
    team_id: int | None = None


class LabelRequest(RequestModel):
    name: str = Field(min_length=1, max_length=60)
    color: str | None = Field(default=None, max_length=7)
    description: str = Field(default="", max_length=200)
    # The owning team: required of a lead of several teams; null/absent: the workspace
    # (admins) or a lead's only team.
    team_id: RowId | None = None


def _label_view(row: Label) -> LabelView:
    assert row.id is not None
    return LabelView(id=row.id, name=row.name, color=row.color, description=row.description,
                     team_id=row.team_id)


async def get_labels(request: Request, principal: Principal) -> Response:
    """Every label agents may put on conversations."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        rows = await labels.list_labels(session)
    return json_response([_label_view(row) for row in rows])


async def post_label(request: Request, principal: Principal) -> Response:
    """Add a label, owned by the workspace (admins) or a team (its leads)."""
    ctx = web_context(request)
    body = await parse_json(request, LabelRequest)
    row = await act(labels.create_label(ctx.inbox, principal, name=body.name,
                                         color=body.color, team_id=body.team_id,
                                         description=body.description))
    return json_response(_label_view(row), status=201)


async def delete_label(request: Request, principal: Principal) -> Response:
    """Remove a label, from every conversation too (its team's leads, admins)."""
    ctx = web_context(request)
    await act(labels.delete_label(ctx.inbox, principal,
                                   label_id=int(request.path_params["label_id"])))
    return Response(status_code=204)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/labels", "Labels", response=LabelView, many=True),
     authenticated(get_labels)),
    (Doc("POST", "/api/v1/labels", "Add a label (lead/admin)", LabelRequest, LabelView,
         status=201, extra_responses=LEAD_ONLY), authenticated(post_label)),
    (Doc("DELETE", "/api/v1/labels/{label_id:id}", "Remove a label (lead/admin)",
         status=204, extra_responses=LEAD_ONLY), authenticated(delete_label)),
]
