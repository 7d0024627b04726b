"""SLA policies (JSON API under /api/v1): admins keep them, leads read them. The clocks'
state is on each conversation (sla_due_at, sla_status) and the list filters by it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from inbox import sla_policies as policies
from inbox.agents import Principal
from web.context import web_context
from web.http import Operation, act, authenticated, json_response, parse_json, path_id
from web.openapi import Doc

path = "/api/v1/sla-policies"


async def list_policies(request: Request, principal: Principal) -> Response:
    """SLA policies, in the order they are tried (leads and admins)."""
    async with web_context(request).inbox.db.read() as session:
        found = await act(policies.list_policies(session, principal))
    return json_response(found)


async def create_policy(request: Request, principal: Principal) -> Response:
    """Add an SLA policy (admins)."""
    body = await parse_json(request, policies.SlaPolicyCreate)
    view = await act(policies.create_policy(web_context(request).inbox, principal, body))
    return json_response(view, status=201)


async def patch_policy(request: Request, principal: Principal) -> Response:
    """Change an SLA policy (admins)."""
    body = await parse_json(request, policies.SlaPolicyPatch)
    view = await act(policies.update_policy(web_context(request).inbox, principal,
                                            path_id(request, "policy_id"), body))
    return json_response(view)


async def delete_policy(request: Request, principal: Principal) -> Response:
    """Remove an SLA policy (admins)."""
    await act(policies.delete_policy(web_context(request).inbox, principal,
                                     path_id(request, "policy_id")))
    return Response(status_code=204)


OPERATIONS: list[Operation] = [
    (Doc("GET", path, "List SLA policies (lead/admin)", response=policies.SlaPolicyView,
         many=True), authenticated(list_policies)),
    (Doc("POST", path, "Add an SLA policy (admin)", policies.SlaPolicyCreate,
         policies.SlaPolicyView, status=201), authenticated(create_policy)),
    (Doc("PATCH", path + "/{policy_id:id}", "Change an SLA policy (admin)",
         policies.SlaPolicyPatch, policies.SlaPolicyView), authenticated(patch_policy)),
    (Doc("DELETE", path + "/{policy_id:id}", "Remove an SLA policy (admin)", status=204),
     authenticated(delete_policy)),
]
