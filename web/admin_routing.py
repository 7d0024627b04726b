"""The routing rules page (team leads and admins): which team a new conversation goes to.

The form asks for the common conditions in words (channels, keywords, languages); they are
stored as the JSON API stores them and checked by the same action (inbox/rules.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inbox import rules, teams
from inbox.agents import Principal
from inbox.inboxes import visible_inboxes
from web.admin_rule_rows import rule_row_routes
from web.admin_ui import (
    Form,
    FormError,
    admin_page,
    form_act,
    form_model,
    form_value,
    notice,
    page,
    redirect,
    sentence,
)
from web.context import WebContext, web_context

NOTICES = {
    "created": "The rule was added: new conversations that match go to its team.",
    "saved": "Saved.",
    "deleted": "The rule was removed.",
}


def _words(raw: str) -> list[str]:
    return [w.strip() for w in raw.replace("\n", ",").split(",") if w.strip()]


def conditions_of(form: Form) -> list[dict[str, Any]]:
    """The conditions a rule's form describes (all must hold)."""
    conditions: list[dict[str, Any]] = []
    channels = form.get("channels", [])
    if channels:
        conditions.append({"field": "channel", "op": "in", "value": channels})
    keywords = _words(form_value(form, "keywords"))
    if keywords:
        conditions.append({"field": "keywords", "op": "contains_any", "value": keywords})
    languages = _words(form_value(form, "languages"))
    if languages:
        conditions.append({"field": "language", "op": "in", "value": languages})
    return conditions


def describe(condition: dict[str, Any]) -> str:
    """A condition in words, for the list of rules."""
    value = condition["value"]
    shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    names = {"channel": "channel is", "keywords": "message mentions", "language": "language is",
             "inbox": "inbox is"}
    return f"{names.get(condition['field'], condition['field'])} {shown}"


async def routing_page(ctx: WebContext, principal: Principal, status: int = 200,
                       **values: Any) -> Response:
    async with ctx.inbox.db.read() as session:
        found = await form_act(rules.list_rules(session, principal))
        inboxes = await visible_inboxes(session, principal)
        all_teams = await teams.list_teams(session)
    return page("admin_routing.html", status, csrf_token=principal.csrf_token,
                is_admin=principal.is_admin, rules=found, inboxes=inboxes,
                inbox_names={i.id: i.name for i in inboxes},
                teams=all_teams, team_names={t.id: t.name for t in all_teams},
                channels=sorted(ctx.channels), describe=describe, **values)


async def routing_get(request: Request, principal: Principal, form: Form | None) -> Response:
    done = NOTICES.get(request.query_params.get("done", "")) or notice(request)
    return await routing_page(web_context(request), principal, notice=done)


async def rule_create(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    inbox, team, position = (form_value(form, name) for name in ("inbox_id", "team_id",
                                                                 "position"))
    try:
        if not team.isdigit():
            raise FormError("team_id: choose the team the conversations go to")
        body = form_model(lambda: rules.RuleCreate(
            name=form_value(form, "name"), team_id=int(team),
            inbox_id=int(inbox) if inbox.isdigit() else None,
            position=int(position) if position.isdigit() else 0,
            conditions=conditions_of(form)))
        await form_act(rules.create_rule(ctx.inbox, principal, body, channels=ctx.channels))
    except FormError as exc:
        return await routing_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                  typed={k: form_value(form, k) for k in (
                                      "name", "keywords", "languages", "position")})
    return redirect("/admin/routing?done=created")


ROUTES: list[BaseRoute] = [
    Route("/admin/routing", admin_page(routing_get, leads=True), methods=["GET"]),
    Route("/admin/routing", admin_page(rule_create, leads=True), methods=["POST"]),
    *rule_row_routes("/admin/routing", page=routing_page, patch=rules.RulePatch,
                     update=rules.update_rule, delete=rules.delete_rule),
]
