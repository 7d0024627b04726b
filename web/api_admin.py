"""Admin (JSON API under /api/v1): agents, roles, teams, memberships, invitations, TOTP."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inbox import admin, invitations, teams, totp
from inbox.agents import MIN_PASSWORD, Principal
from inbox.errors import NotFound, Refused
from inbox.invitations import InvitationGone
from web.api import LoginResponse, session_response
from web.context import WebContext
from web.http import HTTPProblem, authenticated, json_response, parse_json
from web.openapi import Doc

T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptInvitationRequest(_In):
    token: str = Field(min_length=10, max_length=200)
    name: str = Field(default="", max_length=200)
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


class TotpSetupView(BaseModel):
    secret: str
    otpauth_uri: str


class TotpEnableRequest(_In):
    code: str = Field(min_length=6, max_length=12)


class TotpDisableRequest(_In):
    password: str = Field(max_length=1024)


async def guarded(action: Awaitable[T]) -> T:
    """Run a domain action, turning its refusals into HTTP answers."""
    try:
        return await action
    except PermissionError as exc:
        raise HTTPProblem(403, "forbidden", str(exc)) from None
    except NotFound as exc:
        raise HTTPProblem(404, "not_found", str(exc)) from None
    except InvitationGone as exc:
        raise HTTPProblem(410, "gone", str(exc)) from None
    except (Refused, totp.TotpError) as exc:
        raise HTTPProblem(422, "invalid_field", str(exc)) from None


def _admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", f"only admins {what}")


def admin_routes(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """The routes and their OpenAPI descriptions."""
    db = ctx.inbox.db
    presence = ctx.settings.presence_seconds

    async def list_agents(request: Request, principal: Principal) -> Response:
        """Every agent with role, capacity, memberships and teams (admin)."""
        _admin(principal, "manage agents")
        async with db.read() as session:
            return json_response(await admin.list_agents(session, presence_seconds=presence))

    async def patch_agent(request: Request, principal: Principal) -> Response:
        """Change an agent's name, role, capacity, inboxes, teams; deactivate (admin)."""
        _admin(principal, "manage agents")
        body = await parse_json(request, admin.AgentPatch)
        view = await guarded(admin.update_agent(
            ctx.inbox, principal, int(request.path_params["agent_id"]), body))
        return json_response(view)

    async def list_invitations(request: Request, principal: Principal) -> Response:
        """Invitations not yet accepted, revoked or expired (admin)."""
        _admin(principal, "manage invitations")
        async with db.read() as session:
            return json_response(await invitations.pending_invitations(session))

    async def post_invitation(request: Request, principal: Principal) -> Response:
        """Invite someone: the answer holds the link, shown this once (admin)."""
        _admin(principal, "invite agents")
        body = await parse_json(request, invitations.InvitationCreate)
        created = await guarded(invitations.create_invitation(ctx.inbox, principal, body))
        return json_response(created, status=201)

    async def delete_invitation(request: Request, principal: Principal) -> Response:
        """Withdraw an invitation: its link stops working (admin)."""
        _admin(principal, "manage invitations")
        await guarded(invitations.revoke_invitation(
            ctx.inbox, principal, int(request.path_params["invitation_id"])))
        return Response(status_code=204)

    async def accept_invitation(request: Request) -> Response:
        """Accept an invitation: become an agent and be logged in."""
        body = await parse_json(request, AcceptInvitationRequest)
        logged = await guarded(invitations.accept_invitation(
            ctx.inbox, token=body.token, name=body.name, password=body.password))
        return session_response(ctx, logged)

    async def list_teams(request: Request, principal: Principal) -> Response:
        """Teams you may see: yours and those working on your inboxes (admins: all)."""
        async with db.read() as session:
            return json_response(await teams.visible_teams(session, principal))

    async def post_team(request: Request, principal: Principal) -> Response:
        """Create a team with members and inboxes (admin)."""
        _admin(principal, "manage teams")
        body = await parse_json(request, teams.TeamCreate)
        view = await guarded(teams.create_team(ctx.inbox, principal, body))
        return json_response(view, status=201)

    async def patch_team(request: Request, principal: Principal) -> Response:
        """Rename a team, change its policy, members or inboxes (admin)."""
        _admin(principal, "manage teams")
        body = await parse_json(request, teams.TeamPatch)
        view = await guarded(teams.update_team(
            ctx.inbox, principal, int(request.path_params["team_id"]), body))
        return json_response(view)

    async def delete_team(request: Request, principal: Principal) -> Response:
        """Delete a team (admin)."""
        _admin(principal, "manage teams")
        await guarded(teams.delete_team(ctx.inbox, principal, int(request.path_params["team_id"])))
        return Response(status_code=204)

    async def totp_setup(request: Request, principal: Principal) -> Response:
        """Start two-factor setup: a new secret and its otpauth:// URI (not on until enabled)."""
        async with db.write() as session:
            secret, uri = await guarded(totp.start_setup(session, agent_id=principal.agent_id))
        return json_response(TotpSetupView(secret=secret, otpauth_uri=uri))

    async def totp_enable(request: Request, principal: Principal) -> Response:
        """Turn two-factor authentication on with a code from the app."""
        body = await parse_json(request, TotpEnableRequest)
        async with db.write() as session:
            await guarded(totp.enable(session, agent_id=principal.agent_id, code=body.code))
        return Response(status_code=204)

    async def totp_disable(request: Request, principal: Principal) -> Response:
        """Turn two-factor authentication off; your password confirms it."""
        body = await parse_json(request, TotpDisableRequest)
        async with db.write() as session:
            await guarded(totp.disable(session, agent_id=principal.agent_id,
                                       password=body.password))
        return Response(status_code=204)

    agent = "/api/v1/admin/agents/{agent_id:int}"
    team = "/api/v1/teams/{team_id:int}"
    table: list[tuple[Doc, Any]] = [
        (Doc("GET", "/api/v1/admin/agents", "List agents (admin)",
             response=admin.AgentAdminView, many=True), authenticated(ctx, list_agents)),
        (Doc("PATCH", agent, "Change or deactivate an agent (admin)", admin.AgentPatch,
             admin.AgentAdminView), authenticated(ctx, patch_agent)),
        (Doc("GET", "/api/v1/admin/invitations", "Pending invitations (admin)",
             response=invitations.InvitationView, many=True),
         authenticated(ctx, list_invitations)),
        (Doc("POST", "/api/v1/admin/invitations", "Invite an agent (admin)",
             invitations.InvitationCreate, invitations.InvitationCreated, status=201),
         authenticated(ctx, post_invitation)),
        (Doc("DELETE", "/api/v1/admin/invitations/{invitation_id:int}",
             "Withdraw an invitation (admin)", status=204), authenticated(ctx, delete_invitation)),
        (Doc("POST", "/api/v1/auth/invitations/accept", "Accept an invitation and log in",
             AcceptInvitationRequest, LoginResponse, auth=False,
             extra_responses={410: "The invitation was used, withdrawn or has expired"}),
         accept_invitation),
        (Doc("GET", "/api/v1/teams", "Teams", response=teams.TeamSummary, many=True),
         authenticated(ctx, list_teams)),
        (Doc("POST", "/api/v1/teams", "Create a team (admin)", teams.TeamCreate, teams.TeamView,
             status=201), authenticated(ctx, post_team)),
        (Doc("PATCH", team, "Change a team (admin)", teams.TeamPatch, teams.TeamView),
         authenticated(ctx, patch_team)),
        (Doc("DELETE", team, "Delete a team (admin)", status=204),
         authenticated(ctx, delete_team)),
        (Doc("POST", "/api/v1/me/totp/setup", "Start two-factor setup", response=TotpSetupView),
         authenticated(ctx, totp_setup)),
        (Doc("POST", "/api/v1/me/totp/enable", "Turn two-factor authentication on",
             TotpEnableRequest, status=204), authenticated(ctx, totp_enable)),
        (Doc("POST", "/api/v1/me/totp/disable", "Turn two-factor authentication off",
             TotpDisableRequest, status=204), authenticated(ctx, totp_disable)),
    ]
    routes = [Route(doc.path, endpoint, methods=[doc.method]) for doc, endpoint in table]
    return routes, [doc for doc, _ in table]
