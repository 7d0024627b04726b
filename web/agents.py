"""The agents an agent works with."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from inbox.agents import Principal
from inbox.directory import colleagues, inbox_agents
from web.context import web_context
from web.http import (
    Operation,
    authenticated,
    int_param,
    json_response,
    not_found,
)
from web.openapi import Doc


class ColleagueView(BaseModel):
    id: int
    name: str


async def agents(request: Request, principal: Principal) -> Response:
    """Agents who share an inbox with you; with inbox_id, those who may see that inbox."""
    ctx = web_context(request)
    db = ctx.inbox.db
    inbox_id = int_param(request.query_params.get("inbox_id"), "inbox_id")
    if inbox_id is not None and inbox_id not in principal.inbox_ids:
        raise not_found("inbox")
    async with db.read() as session:
        found = await (colleagues(session, principal) if inbox_id is None
                       else inbox_agents(session, inbox_id))
    return json_response([ColleagueView(id=c.id, name=c.name) for c in found])


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/agents", "Agents who share an inbox with you",
         response=ColleagueView, many=True,
         query=(("inbox_id", "only those who may see this inbox (whom a note may "
                         "mention)"),)), authenticated(agents)),
]
