"""Assignment: rules, capacities, the queue, bulk reassignment, load reports (JSON API under
/api/v1). Assigning one conversation is in web/conversations.py (POST .../assignment)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from hub.events import ConversationView
from hub.types import RowId
from inbox import assign_actions, rules
from inbox.agent_events import is_online
from inbox.agents import Principal
from inbox.reports import LoadReport, load_report
from web.context import web_context
from web.http import Operation, act, authenticated, json_response, parse_json
from web.inboxes import InboxView, inbox_view
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Agent


MAX_CAPACITY = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BulkAssignRequest(_In):
    conversation_ids: list[RowId] = Field(min_length=1, max_length=assign_actions.MAX_BULK)
    # An agent, or null: with a team_id the team's policy picks one, else unassigned.
    assignee_id: RowId | None
    # A team working on each conversation's inbox; null: no team; left out: unchanged.
    team_id: RowId | None = None


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


rule_path = "/api/v1/assignment-rules"


async def bulk_assign(request: Request, principal: Principal) -> Response:
    """Reassign up to 100 conversations to an agent or a team (team leads and admins)."""
    ctx = web_context(request)
    body = await parse_json(request, BulkAssignRequest)
    target = assign_actions.Target(body.assignee_id, body.team_id,
                                   change_team="team_id" in body.model_fields_set)
    items, errors = await act(assign_actions.bulk_assign(
        ctx.inbox, principal, conversation_ids=body.conversation_ids, target=target))
    return json_response(BulkAssignResult(
        items=items, errors=[BulkError(id=e.id, error=e.error) for e in errors]))


async def patch_inbox(request: Request, principal: Principal) -> Response:
    """Change how an inbox assigns (admins, and leads of a team working on it)."""
    ctx = web_context(request)
    body = await parse_json(request, InboxAssignmentRequest)
    inbox = await act(assign_actions.update_inbox_assignment(
        ctx.inbox, principal, inbox_id=int(request.path_params["inbox_id"]),
        auto_assign=body.auto_assign, assignment_policy=body.assignment_policy,
        requeue_on_offline=body.requeue_on_offline,
    ))
    return json_response(inbox_view(inbox))


async def put_capacity(request: Request, principal: Principal) -> Response:
    """Set an agent's capacity of open conversations (team leads and admins)."""
    ctx = web_context(request)
    presence = ctx.settings.presence_seconds
    body = await parse_json(request, CapacityRequest)
    agent = await act(assign_actions.set_capacity(
        ctx.inbox, principal, agent_id=int(request.path_params["agent_id"]),
        capacity=body.capacity,
    ))
    return json_response(_capacity_view(agent, presence))


async def get_load(request: Request, principal: Principal) -> Response:
    """Open conversations per agent, team and inbox, and the queue (leads and admins)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    presence = ctx.settings.presence_seconds
    async with db.read() as session:
        report = await act(load_report(session, principal, presence_seconds=presence))
    return json_response(report)


async def list_rules(request: Request, principal: Principal) -> Response:
    """Routing rules, in the order they are tried (team leads and admins)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        found = await act(rules.list_rules(session, principal))
    return json_response(found)


async def create_rule(request: Request, principal: Principal) -> Response:
    """Add a routing rule: conversations matching its conditions go to its team."""
    ctx = web_context(request)
    body = await parse_json(request, rules.RuleCreate)
    view = await act(rules.create_rule(ctx.inbox, principal, body, channels=ctx.channels))
    return json_response(view, status=201)


async def patch_rule(request: Request, principal: Principal) -> Response:
    """Change a routing rule."""
    ctx = web_context(request)
    body = await parse_json(request, rules.RulePatch)
    view = await act(rules.update_rule(
        ctx.inbox, principal, int(request.path_params["rule_id"]), body,
        channels=ctx.channels))
    return json_response(view)


async def delete_rule(request: Request, principal: Principal) -> Response:
    """Remove a routing rule."""
    ctx = web_context(request)
    await act(rules.delete_rule(ctx.inbox, principal, int(request.path_params["rule_id"])))
    return Response(status_code=204)


OPERATIONS: list[Operation] = [
    (Doc("POST", "/api/v1/conversations/bulk-assign",
         "Reassign many conversations (lead/admin)", BulkAssignRequest, BulkAssignResult),
     authenticated(bulk_assign)),
    (Doc("PATCH", "/api/v1/inboxes/{inbox_id:id}/assignment",
         "Change an inbox's assignment settings (lead/admin)", InboxAssignmentRequest,
         InboxView), authenticated(patch_inbox)),
    (Doc("PUT", "/api/v1/agents/{agent_id:id}/capacity",
         "Set an agent's capacity (lead/admin)", CapacityRequest, CapacityView),
     authenticated(put_capacity)),
    (Doc("GET", "/api/v1/reports/load", "Load per agent, team and inbox (lead/admin)",
         response=LoadReport), authenticated(get_load)),
    (Doc("GET", rule_path, "List routing rules (lead/admin)", response=rules.RuleView,
         many=True), authenticated(list_rules)),
    (Doc("POST", rule_path, "Add a routing rule (lead/admin)", rules.RuleCreate,
         rules.RuleView, status=201), authenticated(create_rule)),
    (Doc("PATCH", rule_path + "/{rule_id:id}", "Change a routing rule (lead/admin)",
         rules.RulePatch, rules.RuleView), authenticated(patch_rule)),
    (Doc("DELETE", rule_path + "/{rule_id:id}", "Remove a routing rule (lead/admin)",
         status=204), authenticated(delete_rule)),
    ]


def _capacity_view(agent: Agent, presence_seconds: int) -> CapacityView:
    assert agent.id is not None
    return CapacityView(id=agent.id, name=agent.name, capacity=agent.capacity,
                        availability=agent.availability,
                        online=is_online(agent, presence_seconds=presence_seconds))
