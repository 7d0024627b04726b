"""Teams: the groups of agents that work an inbox together (admins manage them)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from inbox import teams
from inbox.agents import Principal
from web.admin import guarded
from web.context import web_context
from web.http import Operation, admin_only, authenticated, json_response, parse_json
from web.openapi import Doc

TEAM = "/api/v1/teams/{team_id:id}"


async def list_teams(request: Request, principal: Principal) -> Response:
    """Teams you may see: yours and those working on your inboxes (admins: all)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        return json_response(await teams.visible_teams(session, principal))


async def post_team(request: Request, principal: Principal) -> Response:
    """Create a team with members and inboxes (admin)."""
    ctx = web_context(request)
    admin_only(principal, "manage teams")
    body = await parse_json(request, teams.TeamCreate)
    view = await guarded(teams.create_team(ctx.inbox, principal, body))
    return json_response(view, status=201)


async def patch_team(request: Request, principal: Principal) -> Response:
    """Rename a team, change its policy, members or inboxes (admin)."""
    ctx = web_context(request)
    admin_only(principal, "manage teams")
    body = await parse_json(request, teams.TeamPatch)
    view = await guarded(teams.update_team(
        ctx.inbox, principal, int(request.path_params["team_id"]), body))
    return json_response(view)


async def delete_team(request: Request, principal: Principal) -> Response:
    """Delete a team (admin)."""
    ctx = web_context(request)
    admin_only(principal, "manage teams")
    await guarded(teams.delete_team(ctx.inbox, principal, int(request.path_params["team_id"])))
    return Response(status_code=204)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/teams", "Teams", response=teams.TeamSummary, many=True),
     authenticated(list_teams)),
    (Doc("POST", "/api/v1/teams", "Create a team (admin)", teams.TeamCreate, teams.TeamView,
         status=201), authenticated(post_team)),
    (Doc("PATCH", TEAM, "Change a team (admin)", teams.TeamPatch, teams.TeamView),
     authenticated(patch_team)),
    (Doc("DELETE", TEAM, "Delete a team (admin)", status=204),
     authenticated(delete_team)),
]
