"""How far each inbox's poller has read (GET /api/v1/inboxes/{id}/sync), for admins.

An admin who connects a big mailbox watches its import advance here: fetched of total, since
when, and an estimate of the time left.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inbox.agents import Principal
from inbox.channel_state import FolderSync, sync_status
from inbox.inboxes import inbox_settings
from inbox.queries import is_row_id
from web.context import WebContext
from web.http import HTTPProblem, authenticated, json_response
from web.openapi import Doc


class InboxSync(BaseModel):
    """The sources an inbox's poller follows (an email inbox: its IMAP folder)."""

    inbox_id: int
    channel: str
    folders: list[FolderSync]


def sync_routes(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """The route and its OpenAPI description."""

    async def sync(request: Request, principal: Principal) -> Response:
        """Where the inbox's poller stands, and its last import's progress (admin)."""
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

    table: list[tuple[Doc, Any]] = [
        (Doc("GET", "/api/v1/inboxes/{inbox_id:int}/sync",
             "How far the inbox's poller has read, and its import's progress (admin)",
             response=InboxSync),
         authenticated(ctx, sync)),
    ]
    return [Route(doc.path, endpoint, methods=[doc.method]) for doc, endpoint in table], [
        doc for doc, _ in table]
