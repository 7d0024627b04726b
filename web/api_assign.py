"""Assignment: rules, capacities, the queue, bulk reassignment, load reports (JSON API under
/api/v1). Assigning one conversation is in web/api.py (POST .../assignment)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.events import ConversationView
from inbox import assign_actions, rules
from inbox.agent_events import is_online
from inbox.agents import Principal
from inbox.models import Agent
from inbox.reports import LoadReport, load_report
from web.api import InboxView, _act, _inbox_view
from web.context import WebContext
from web.http import authenticated, json_response, parse_json
from web.openapi import Doc

MAX_CAPACITY = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BulkAssignRequest(_In):
    conversation_ids: list[int] = Field(min_length=1, max_length=assign_actions.MAX_BULK)
    # An agent, or null: with a team_id the team's policy picks one, else unassigned.
    assignee_id: int | None
    # A team working on each conversation's inbox; null: no team; left out: unchanged.
    team_id: int | None = None


class BulkError(BaseModel):
    id: int
    error: str


class BulkAssignResult(BaseModel):
    items: list[ConversationView]
    errors: list[BulkError]


class InboxAssignmentRequest(_In):
    auto_assign: bool | None = None
    assignment_policy: Literal["round_robin", "least_loaded"] | None = None
    requeue_on_offline: bool | None = None


class CapacityRequest(_In):
    # Most open conversations assignment gives the agent; null: no limit.
    capacity: int | None = Field(ge=0, le=MAX_CAPACITY)


class CapacityView(BaseModel):
    id: int
    name: str
    capacity: int | None
    availability: str
    online: bool


def assignment_routes(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """The routes and their OpenAPI descriptions."""
    db = ctx.inbox.db
    presence = ctx.settings.presence_seconds

    async def bulk_assign(request: Request, principal: Principal) -> Response:
        """Reassign up to 100 conversations to an agent or a team (team leads and admins)."""
        body = await parse_json(request, BulkAssignRequest)
        target = assign_actions.Target(body.assignee_id, body.team_id,
                                       change_team="team_id" in body.model_fields_set)
        items, errors = await _act(assign_actions.bulk_assign(
            ctx.inbox, principal, conversation_ids=body.conversation_ids, target=target))
        return json_response(BulkAssignResult(
            items=items, errors=[BulkError(id=e.id, error=e.error) for e in errors]))

    async def patch_inbox(request: Request, principal: Principal) -> Response:
        """Change how an inbox assigns (admins, and leads of a team working on it)."""
        body = await parse_json(request, InboxAssignmentRequest)
        inbox = await _act(assign_actions.update_inbox_assignment(
            ctx.inbox, principal, inbox_id=int(request.path_params["inbox_id"]),
            auto_assign=body.auto_assign, assignment_policy=body.assignment_policy,
            requeue_on_offline=body.requeue_on_offline,
        ))
        return json_response(_inbox_view(inbox))

    async def put_capacity(request: Request, principal: Principal) -> Response:
        """Set an agent's capacity of open conversations (team leads and admins)."""
        body = await parse_json(request, CapacityRequest)
        agent = await _act(assign_actions.set_capacity(
            ctx.inbox, principal, agent_id=int(request.path_params["agent_id"]),
            capacity=body.capacity,
        ))
        return json_response(_capacity_view(agent, presence))

    async def get_load(request: Request, principal: Principal) -> Response:
        """Open conversations per agent, team and inbox, and the queue (leads and admins)."""
        async with db.read() as session:
            report = await _act(load_report(session, principal, presence_seconds=presence))
        return json_response(report)

    async def list_rules(request: Request, principal: Principal) -> Response:
        """Routing rules, in the order they are tried (team leads and admins)."""
        async with db.read() as session:
            found = await _act(rules.list_rules(session, principal))
        return json_response(found)

    async def create_rule(request: Request, principal: Principal) -> Response:
        """Add a routing rule: conversations matching its conditions go to its team."""
        body = await parse_json(request, rules.RuleCreate)
        view = await _act(rules.create_rule(ctx.inbox, principal, body, channels=ctx.channels))
        return json_response(view, status=201)

    async def patch_rule(request: Request, principal: Principal) -> Response:
        """Change a routing rule."""
        body = await parse_json(request, rules.RulePatch)
        view = await _act(rules.update_rule(
            ctx.inbox, principal, int(request.path_params["rule_id"]), body,
            channels=ctx.channels))
        return json_response(view)

    async def delete_rule(request: Request, principal: Principal) -> Response:
        """Remove a routing rule."""
        await _act(rules.delete_rule(ctx.inbox, principal, int(request.path_params["rule_id"])))
        return Response(status_code=204)

    rule_path = "/api/v1/assignment-rules"
    table: list[tuple[Doc, Any]] = [
        (Doc("POST", "/api/v1/conversations/bulk-assign",
             "Reassign many conversations (lead/admin)", BulkAssignRequest, BulkAssignResult),
         authenticated(ctx, bulk_assign)),
        (Doc("PATCH", "/api/v1/inboxes/{inbox_id:int}/assignment",
             "Change an inbox's assignment settings (lead/admin)", InboxAssignmentRequest,
             InboxView), authenticated(ctx, patch_inbox)),
        (Doc("PUT", "/api/v1/agents/{agent_id:int}/capacity",
             "Set an agent's capacity (lead/admin)", CapacityRequest, CapacityView),
         authenticated(ctx, put_capacity)),
        (Doc("GET", "/api/v1/reports/load", "Load per agent, team and inbox (lead/admin)",
             response=LoadReport), authenticated(ctx, get_load)),
        (Doc("GET", rule_path, "List routing rules (lead/admin)", response=rules.RuleView,
             many=True), authenticated(ctx, list_rules)),
        (Doc("POST", rule_path, "Add a routing rule (lead/admin)", rules.RuleCreate,
             rules.RuleView, status=201), authenticated(ctx, create_rule)),
        (Doc("PATCH", rule_path + "/{rule_id:int}", "Change a routing rule (lead/admin)",
             rules.RulePatch, rules.RuleView), authenticated(ctx, patch_rule)),
        (Doc("DELETE", rule_path + "/{rule_id:int}", "Remove a routing rule (lead/admin)",
             status=204), authenticated(ctx, delete_rule)),
    ]
    routes = [Route(doc.path, endpoint, methods=[doc.method]) for doc, endpoint in table]
    return routes, [doc for doc, _ in table]


def _capacity_view(agent: Agent, presence_seconds: int) -> CapacityView:
    assert agent.id is not None
    return CapacityView(id=agent.id, name=agent.name, capacity=agent.capacity,
                        availability=agent.availability,
                        online=is_online(agent, presence_seconds=presence_seconds))
