"""Operations (JSON API under /api/v1/admin): the dead letters of the bus, for admins.

The same as `switchboard dead-letters` and the admin page /admin/dead-letters.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from hub import dead_letters
from hub.dead_letters import DeadLetterView
from inbox.agents import Principal
from web.context import web_context
from web.http import HTTPProblem, Operation, admin_only, authenticated, int_param, json_response
from web.openapi import Doc


class DeadLetterPage(BaseModel):
    """A page of a stream's dead letters, and how many each stream has."""

    items: list[DeadLetterView]
    counts: dict[str, int]
    next_after: str | None


class ReplayedView(BaseModel):
    """Where a replayed dead letter went: its new entry on the stream."""

    id: str


def _stream(value: str | None) -> str:
    try:
        return dead_letters.check_stream(value or "inbound")
    except dead_letters.UnknownStream as exc:
        raise HTTPProblem(400, "invalid_parameter", f"stream: {exc}") from None


def _entry_id(value: str) -> str:
    try:
        ms, seq = (int(part) for part in value.split("-"))
    except ValueError:
        raise HTTPProblem(404, "not_found", "no such dead letter") from None
    if not (0 <= ms < 2**63 and 0 <= seq < 2**63):
        raise HTTPProblem(404, "not_found", "no such dead letter")
    return f"{ms}-{seq}"


ONE = "/api/v1/admin/dead-letters/{stream:str}/{entry:str}"
BAD_LETTER = {400: "No such stream, or not an entry id"}


async def list_letters(request: Request, principal: Principal) -> Response:
    """A page of one stream's dead letters, oldest first (admin)."""
    ctx = web_context(request)
    bus = ctx.inbox.bus
    admin_only(principal, "see and replay dead letters")
    stream = _stream(request.query_params.get("stream"))
    after = request.query_params.get("after")
    limit = int_param(request.query_params.get("limit"), "limit") or 100
    items = await dead_letters.list_dead_letters(
        bus, stream, after=_entry_id(after) if after else "0-0", limit=min(limit, 500))
    return json_response(DeadLetterPage(
        items=items, counts=await dead_letters.count(bus),
        next_after=items[-1].id if len(items) == min(limit, 500) else None))


async def replay(request: Request, principal: Principal) -> Response:
    """Put a dead letter back on its stream: the workers handle it again (admin)."""
    ctx = web_context(request)
    bus = ctx.inbox.bus
    admin_only(principal, "see and replay dead letters")
    stream = _stream(request.path_params["stream"])
    new_id = await dead_letters.replay(bus, stream, _entry_id(request.path_params["entry"]))
    if new_id is None:
        raise HTTPProblem(404, "not_found", "no such dead letter")
    return json_response(ReplayedView(id=new_id))


async def discard(request: Request, principal: Principal) -> Response:
    """Delete a dead letter for good (admin)."""
    ctx = web_context(request)
    bus = ctx.inbox.bus
    admin_only(principal, "see and replay dead letters")
    stream = _stream(request.path_params["stream"])
    if not await dead_letters.discard(bus, stream, _entry_id(request.path_params["entry"])):
        raise HTTPProblem(404, "not_found", "no such dead letter")
    return Response(status_code=204)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/admin/dead-letters", "Dead letters of the bus (admin)",
         response=DeadLetterPage,
         query=(("stream", "inbound (default) or outbound"),
            ("after", "the last id of the previous page"),
            ("limit", "at most this many (default 100, up to 500)"))),
     authenticated(list_letters)),
    (Doc("POST", ONE + "/replay", "Replay a dead letter (admin)", response=ReplayedView,
         extra_responses=BAD_LETTER), authenticated(replay)),
    (Doc("DELETE", ONE, "Discard a dead letter (admin)", status=204,
         extra_responses=BAD_LETTER), authenticated(discard)),
    ]
