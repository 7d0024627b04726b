"""Invitations: an admin invites an agent by email; the invited agent accepts and is logged in."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from inbox import invitations
from inbox.agents import MIN_PASSWORD, Principal
from web.admin import guarded
from web.auth import LoginResponse, session_response
from web.context import web_context
from web.http import Operation, RequestModel, admin_only, authenticated, json_response, parse_json
from web.openapi import Doc


class AcceptInvitationRequest(RequestModel):
    token: str = Field(min_length=10, max_length=200)
    name: str = Field(default="", max_length=200)
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


async def list_invitations(request: Request, principal: Principal) -> Response:
    """Invitations not yet accepted, revoked or expired (admin)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    admin_only(principal, "manage invitations")
    async with db.read() as session:
        return json_response(await invitations.pending_invitations(session))


async def post_invitation(request: Request, principal: Principal) -> Response:
    """Invite someone: the answer holds the link, shown this once (admin)."""
    ctx = web_context(request)
    admin_only(principal, "invite agents")
    body = await parse_json(request, invitations.InvitationCreate)
    created = await guarded(invitations.create_invitation(ctx.inbox, principal, body))
    return json_response(created, status=201)


async def delete_invitation(request: Request, principal: Principal) -> Response:
    """Withdraw an invitation: its link stops working (admin)."""
    ctx = web_context(request)
    admin_only(principal, "manage invitations")
    await guarded(invitations.revoke_invitation(
        ctx.inbox, principal, int(request.path_params["invitation_id"])))
    return Response(status_code=204)


async def accept_invitation(request: Request) -> Response:
    """Accept an invitation: become an agent and be logged in."""
    ctx = web_context(request)
    body = await parse_json(request, AcceptInvitationRequest)
    logged = await guarded(invitations.accept_invitation(
        ctx.inbox, token=body.token, name=body.name, password=body.password))
    return session_response(ctx, logged)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/admin/invitations", "Pending invitations (admin)",
         response=invitations.InvitationView, many=True),
     authenticated(list_invitations)),
    (Doc("POST", "/api/v1/admin/invitations", "Invite an agent (admin)",
         invitations.InvitationCreate, invitations.InvitationCreated, status=201),
     authenticated(post_invitation)),
    (Doc("DELETE", "/api/v1/admin/invitations/{invitation_id:id}",
         "Withdraw an invitation (admin)", status=204), authenticated(delete_invitation)),
    (Doc("POST", "/api/v1/auth/invitations/accept", "Accept an invitation and log in",
         AcceptInvitationRequest, LoginResponse, auth=False,
         extra_responses={404: "No invitation with this token",
                          410: "The invitation was used, withdrawn or has expired"}),
     accept_invitation),
]
