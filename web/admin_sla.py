"""The SLA policies page of the admin (/admin/sla): the policies in the order they are
tried, a form to add one (its calendar written as on the automation page: "Europe/Berlin;
mon-fri 09:00-17:00; holidays DE"), and each row's switch, position and removal. Admins keep
policies; leads read them here. The JSON API is web/sla.py."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inbox import sla_policies as policies
from inbox import teams
from inbox.agents import Principal
from inbox.inboxes import visible_inboxes
from web.admin_automation import calendar_of, calendar_words
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

BASE = "/admin/sla"
NOTICES = {
    "created": "The policy was added: conversations opened from now on get it.",
    "saved": "Saved: the clocks under it follow the new targets.",
    "deleted": "The policy was removed.",
}
_TEXT = ("name", "inbox_id", "team_id", "label", "position", "first_response_minutes",
         "next_response_minutes", "resolution_minutes", "warn_minutes", "calendar",
         "pause_when_waiting")


async def sla_page(ctx: WebContext, principal: Principal, status: int = 200,
                   **values: Any) -> Response:
    async with ctx.inbox.db.read() as session:
        found = await form_act(policies.list_policies(session, principal))
        inboxes = await visible_inboxes(session, principal)
        all_teams = await teams.list_teams(session)
    typed = values.pop("typed", None) or {"warn_minutes": "15", "pause_when_waiting": "1"}
    return page("admin_sla.html", status, csrf_token=principal.csrf_token,
                is_admin=principal.is_admin, policies=found, inboxes=inboxes,
                teams=all_teams, priorities=policies.PRIORITIES, typed=typed,
                inbox_names={i.id: i.name for i in inboxes},
                team_names={t.id: t.name for t in all_teams},
                calendar_words=calendar_words, **values)


async def sla_get(request: Request, principal: Principal, form: Form | None) -> Response:
    done = NOTICES.get(request.query_params.get("done", "")) or notice(request)
    return await sla_page(web_context(request), principal, notice=done)


def _minutes(form: Form, name: str) -> float | None:
    raw = form_value(form, name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise FormError(f"{name}: how many minutes? A number") from None


def _typed(form: Form) -> dict[str, Any]:
    return {**{name: form_value(form, name) for name in _TEXT},
            "priorities": form.get("priorities", [])}


def _body(form: Form) -> policies.SlaPolicyCreate:
    inbox, team, position = (form_value(form, n) for n in ("inbox_id", "team_id", "position"))
    calendar = form_value(form, "calendar")
    warn = _minutes(form, "warn_minutes")
    chosen = list(form.get("priorities", []))
    return form_model(lambda: policies.SlaPolicyCreate(
        name=form_value(form, "name"), position=int(position) if position.isdigit() else 0,
        inbox_id=int(inbox) if inbox.isdigit() else None,
        team_id=int(team) if team.isdigit() else None,
        priorities=chosen, label=form_value(form, "label") or None,
        first_response_minutes=_minutes(form, "first_response_minutes"),
        next_response_minutes=_minutes(form, "next_response_minutes"),
        resolution_minutes=_minutes(form, "resolution_minutes"),
        warn_minutes=15.0 if warn is None else warn,
        calendar=calendar_of(calendar, "calendar") if calendar else None,
        pause_when_waiting=form_value(form, "pause_when_waiting") == "1"))


async def policy_create(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    try:
        await form_act(policies.create_policy(ctx.inbox, principal, _body(form)))
    except FormError as exc:
        return await sla_page(ctx, principal, exc.status, error=sentence(str(exc)),
                              typed=_typed(form))
    return redirect(f"{BASE}?done=created")


async def _update(ctx: Any, principal: Principal, policy_id: int,
                  changes: policies.SlaPolicyPatch, **_: Any) -> policies.SlaPolicyView:
    return await policies.update_policy(ctx, principal, policy_id, changes)


ROUTES: list[BaseRoute] = [
    Route(BASE, admin_page(sla_get, leads=True), methods=["GET"]),
    Route(BASE, admin_page(policy_create), methods=["POST"]),
    *rule_row_routes(BASE, page=sla_page, patch=policies.SlaPolicyPatch, update=_update,
                     delete=policies.delete_policy),
]
