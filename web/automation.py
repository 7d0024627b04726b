"""Automation rules (JSON API under /api/v1): list, add, change, remove, dry run, and the
rules that fired on a conversation. Leads and admins keep rules (inbox/automation_rules.py);
any agent who sees a conversation reads its firings."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from inbox import automation_rules as rules
from inbox.agents import Principal
from inbox.automation import ACTIONS, OPS, TRIGGERS
from inbox.automation_rules import SYSTEM_NAME, automation_agent
from web.context import web_context
from web.http import Operation, act, authenticated, json_response, parse_json, path_id
from web.openapi import Doc

path = "/api/v1/automation-rules"


class Vocabulary(BaseModel):
    """What rules may say: triggers (with their names), condition fields and their
    operators, action types and their parameters."""

    triggers: dict[str, str]
    conditions: dict[str, list[str]]
    actions: dict[str, list[str]]
    # The agent rules act as (their replies and notes carry it); null until a rule fired.
    agent_id: int | None
    agent_name: str


async def list_rules(request: Request, principal: Principal) -> Response:
    """Automation rules, in the order they are tried (team leads and admins)."""
    async with web_context(request).inbox.db.read() as session:
        found = await act(rules.list_rules(session, principal))
    return json_response(found)


async def get_rule(request: Request, principal: Principal) -> Response:
    """One automation rule."""
    async with web_context(request).inbox.db.read() as session:
        found = await act(rules.get_rule(session, principal,
                                         path_id(request, "automation_rule_id")))
    return json_response(found)


async def create_rule(request: Request, principal: Principal) -> Response:
    """Add an automation rule (checked in full: the first problem is named)."""
    ctx = web_context(request)
    body = await parse_json(request, rules.AutomationRuleCreate)
    view = await act(rules.create_rule(ctx.inbox, principal, body, channels=ctx.channels))
    return json_response(view, status=201)


async def patch_rule(request: Request, principal: Principal) -> Response:
    """Change an automation rule."""
    ctx = web_context(request)
    body = await parse_json(request, rules.AutomationRulePatch)
    view = await act(rules.update_rule(ctx.inbox, principal,
                                       path_id(request, "automation_rule_id"), body,
                                       channels=ctx.channels))
    return json_response(view)


async def delete_rule(request: Request, principal: Principal) -> Response:
    """Remove an automation rule."""
    ctx = web_context(request)
    await act(rules.delete_rule(ctx.inbox, principal,
                                path_id(request, "automation_rule_id")))
    return Response(status_code=204)


async def dry_run(request: Request, principal: Principal) -> Response:
    """Which of the latest 500 conversations a rule (saved or not) would match; nothing is
    done to them."""
    ctx = web_context(request)
    body = await parse_json(request, rules.AutomationRuleCreate)
    found = await act(rules.dry_run(ctx.inbox, principal, body, channels=ctx.channels))
    return json_response(found)


async def vocabulary(request: Request, principal: Principal) -> Response:
    """The triggers, condition fields and actions rules may use."""
    async with web_context(request).inbox.db.read() as session:
        agent_id = await automation_agent(session)
    return json_response(Vocabulary(
        agent_id=agent_id, agent_name=SYSTEM_NAME,
        triggers=dict(TRIGGERS),
        conditions={(k if k != "contact." else "contact.<attribute>"): list(v)
                    for k, v in OPS.items()},
        actions={k: list(v) for k, v in ACTIONS.items()}))


async def firings(request: Request, principal: Principal) -> Response:
    """The automation rules that fired on a conversation, and what they did."""
    async with web_context(request).inbox.db.read() as session:
        found = await act(rules.conversation_firings(
            session, principal, int(request.path_params["conversation_id"])))
    return json_response(found)


OPERATIONS: list[Operation] = [
    (Doc("GET", path, "List automation rules (lead/admin)", response=rules.AutomationRuleView,
         many=True), authenticated(list_rules)),
    (Doc("POST", path, "Add an automation rule (lead/admin)", rules.AutomationRuleCreate,
         rules.AutomationRuleView, status=201), authenticated(create_rule)),
    (Doc("POST", path + "/dry-run", "Which recent conversations a rule would match "
         "(lead/admin)", rules.AutomationRuleCreate, rules.DryRun), authenticated(dry_run)),
    (Doc("GET", "/api/v1/automation-vocabulary", "What automation rules may say",
         response=Vocabulary), authenticated(vocabulary)),
    (Doc("GET", path + "/{automation_rule_id:id}", "One automation rule (lead/admin)",
         response=rules.AutomationRuleView), authenticated(get_rule)),
    (Doc("PATCH", path + "/{automation_rule_id:id}", "Change an automation rule (lead/admin)",
         rules.AutomationRulePatch, rules.AutomationRuleView), authenticated(patch_rule)),
    (Doc("DELETE", path + "/{automation_rule_id:id}", "Remove an automation rule (lead/admin)",
         status=204), authenticated(delete_rule)),
    (Doc("GET", "/api/v1/conversations/{conversation_id:id}/automation",
         "Automation rules that fired on a conversation", response=rules.FiringView,
         many=True), authenticated(firings)),
]
