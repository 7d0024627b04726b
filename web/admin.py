"""Admin (JSON API under /api/v1/admin): the agents list, changing or deactivating an agent."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response

from inbox import admin, totp
from inbox.agents import Principal
from inbox.errors import NotFound, Refused
from inbox.invitations import InvitationGone
from web.context import web_context
from web.http import (
    HTTPProblem,
    Operation,
    admin_only,
    authenticated,
    json_response,
    parse_json,
    path_id,
)
from web.openapi import Doc

T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


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


AGENT = "/api/v1/admin/agents/{agent_id:id}"


async def list_agents(request: Request, principal: Principal) -> Response:
    """Every agent with role, capacity, memberships and teams (admin)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    presence = ctx.settings.presence_seconds
    admin_only(principal, "manage agents")
    async with db.read() as session:
        return json_response(await admin.list_agents(session, presence_seconds=presence))


async def patch_agent(request: Request, principal: Principal) -> Response:
    """Change an agent's name, role, capacity, inboxes, teams; deactivate (admin)."""
    ctx = web_context(request)
    admin_only(principal, "manage agents")
    body = await parse_json(request, admin.AgentPatch)
    view = await guarded(admin.update_agent(
        ctx.inbox, principal, int(request.path_params["agent_id"]), body))
    return json_response(view)


async def unlock_agent(request: Request, principal: Principal) -> Response:
    """Let an agent locked out by failed logins try again at once (admin)."""
    ctx = web_context(request)
    admin_only(principal, "manage agents")
    return json_response(await guarded(admin.unlock_agent(
        ctx.inbox, principal, path_id(request, "agent_id"))))


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/admin/agents", "List agents (admin)",
         response=admin.AgentAdminView, many=True), authenticated(list_agents)),
    (Doc("PATCH", AGENT, "Change or deactivate an agent (admin)", admin.AgentPatch,
         admin.AgentAdminView), authenticated(patch_agent)),
    (Doc("POST", AGENT + "/unlock", "Unlock an agent locked out by failed logins (admin)",
         response=admin.AgentAdminView), authenticated(unlock_agent)),
]
