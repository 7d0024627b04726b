"""Server-rendered pages for people and permissions: agents, teams, invitations, two-factor.

They work without JavaScript: plain forms, each checked against the session's CSRF token
(the invitation page, before any session, uses a double-submit cookie like the login form),
and answered with a redirect to the page (post/redirect/get) or the page with an error.
They call the same inbox/ actions as the JSON API, through `guarded`, so both give the same
refusals with the same messages.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from hub import dead_letters
from hub.security import constant_time_equal
from inbox import admin, assign_actions, canned, invitations, labels, teams, totp
from inbox.agents import MIN_PASSWORD, Principal, agent_by_id
from inbox.errors import NotFound
from inbox.inboxes import visible_inboxes
from inbox.ownership import may_manage
from web.admin import guarded
from web.context import WebContext, web_context
from web.http import (
    SESSION_COOKIE,
    HTTPProblem,
    current_principal,
    path_id,
    set_session_cookie,
)
from web.ui import PAGES, form_lists

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from sqlmodel.ext.asyncio.session import AsyncSession


T = TypeVar("T")
Form = dict[str, list[str]]
INVITE_CSRF_COOKIE = "switchboard_invite_csrf"
DONE = {
    "saved": "Saved.",
    "deactivated": "The agent was deactivated and logged out everywhere.",
    "reactivated": "The agent can log in again.",
    "unlocked": "Unlocked: the agent can log in again now.",
    "revoked": "The invitation was withdrawn; its link no longer works.",
    "created": "The team was created.",
    "deleted": "The team was deleted.",
    "replayed": "Put back on its stream: the workers handle it again.",
    "replayed_all": "Every dead letter was put back on its stream.",
    "discarded": "The dead letter was deleted.",
    "label_created": "The label was added: agents can put it on conversations now.",
    "label_deleted": "The label was removed from the list and from every conversation.",
    "canned_created": "The canned response was saved: type / and its shortcut in a reply.",
    "canned_saved": "The canned response was saved.",
    "canned_deleted": "The canned response was deleted.",
}


class FormError(ValueError):
    """A form that cannot be carried out: its message is shown on the page."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def form_value(form: Form, name: str) -> str:
    return form.get(name, [""])[0].strip()


def form_ids(form: Form, name: str) -> list[int]:
    values = form.get(name, [])
    if not all(v.isdigit() for v in values):
        raise FormError(f"{name}: ids must be numbers")
    return [int(v) for v in values]


def sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


def form_model(build: Callable[[], T]) -> T:
    """Build a request model from form values; a validation problem becomes a FormError."""
    try:
        return build()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        raise FormError(f"{where}: {first['msg']}") from None


async def form_act(action: Awaitable[T]) -> T:
    """Run an action as the API does; its refusal becomes a FormError with the same status."""
    try:
        return await guarded(action)
    except HTTPProblem as problem:
        raise FormError(problem.message, problem.status) from None


page, redirect = PAGES.page, PAGES.redirect


def refusal(status: int, title: str, text: str) -> HTMLResponse:
    return page("message.html", status, title=title, text=text)


async def session_principal(request: Request) -> Principal | None:
    ctx = web_context(request)
    if not request.cookies.get(SESSION_COOKIE):
        return None
    return await current_principal(ctx, request)


def admin_page(
    handler: Callable[[Request, Principal, Form | None], Awaitable[Response]],
    *, leads: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    """Only admins (with `leads`, team leads too); a POST must carry the session's CSRF
    token."""

    async def endpoint(request: Request) -> Response:
        principal = await session_principal(request)
        if principal is None:
            return redirect("/login")
        if leads and principal.role not in ("admin", "lead"):
            return refusal(403, "Leads and admins only",
                           "Only team leads and admins manage labels, canned responses and "
                           "routing.")
        if not leads and not principal.is_admin:
            return refusal(403, "Admins only", "Only admins manage agents and teams.")
        form = None
        if request.method == "POST":
            form = await form_lists(request)
            if not constant_time_equal(form_value(form, "csrf_token"), principal.csrf_token):
                return refusal(403, "Not saved",
                               "This form expired or was not sent from this site. "
                               "Reload the page and try again.")
        return await handler(request, principal, form)

    return endpoint


async def agents_page(
    ctx: WebContext, principal: Principal, status: int = 200, **values: Any
) -> HTMLResponse:
    async with ctx.inbox.db.read() as session:
        return page(
            "admin_agents.html", status, csrf_token=principal.csrf_token,
            me=principal.agent_id, agents=await admin.list_agents(
                session, presence_seconds=ctx.settings.presence_seconds),
            inboxes=await visible_inboxes(session, principal),
            teams=await teams.list_teams(session),
            invitations=await invitations.pending_invitations(session),
            min_hours=1, max_hours=720, **values,
        )


async def teams_page(
    ctx: WebContext, principal: Principal, status: int = 200, **values: Any
) -> HTMLResponse:
    async with ctx.inbox.db.read() as session:
        return page(
            "admin_teams.html", status, csrf_token=principal.csrf_token,
            teams=await teams.list_teams(session),
            agents=await admin.list_agents(session, presence_seconds=ctx.settings.presence_seconds),
            inboxes=await visible_inboxes(session, principal), **values,
        )


def notice(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


async def agents_get(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    return await agents_page(ctx, principal, notice=notice(request))


async def agent_page(ctx: WebContext, principal: Principal, agent_id: int, status: int = 200,
                     **values: Any) -> HTMLResponse:
    async with ctx.inbox.db.read() as session:
        try:
            agent = await admin.get_agent(session, agent_id,
                                          presence_seconds=ctx.settings.presence_seconds)
        except NotFound:
            return refusal(404, "No such agent", "This agent does not exist.")
        return page("admin_agent.html", status, csrf_token=principal.csrf_token,
                    me=principal.agent_id, agent=agent,
                    inboxes=await visible_inboxes(session, principal),
                    teams=await teams.list_teams(session), **values)


async def agent_get(request: Request, principal: Principal, form: Form | None) -> Response:
    return await agent_page(web_context(request), principal, path_id(request, "agent_id"),
                            notice=notice(request))


def _agent_patch(form: Form) -> tuple[admin.AgentPatch, str]:
    """The change a form asks for: (de)activation, a row of the table (role and capacity),
    or the detail page's whole form."""
    if "is_active" in form:
        patch = form_model(lambda: admin.AgentPatch(
            is_active=form_value(form, "is_active") == "1"))
        return patch, "reactivated" if patch.is_active else "deactivated"
    capacity = form_value(form, "capacity")
    if capacity and not capacity.isdigit():
        raise FormError("capacity: a whole number, or empty for no limit")
    fields: dict[str, Any] = {"role": form_value(form, "role") or None,
                              "capacity": int(capacity) if capacity else None}
    if "inline" not in form:
        fields |= {"name": form_value(form, "name") or None,
                   "inbox_ids": form_ids(form, "inbox_ids"),
                   "team_ids": form_ids(form, "team_ids")}
    return form_model(lambda: admin.AgentPatch.model_validate(fields)), "saved"


async def agent_post(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    assert form is not None
    agent_id = path_id(request, "agent_id")
    inline = "inline" in form
    try:
        patch, done = _agent_patch(form)
        await form_act(admin.update_agent(ctx.inbox, principal, agent_id, patch))
        availability = form_value(form, "availability")
        if inline and availability:
            await form_act(assign_actions.set_availability(
                ctx.inbox, agent_id=agent_id, availability=availability))
    except FormError as exc:
        if inline:
            return await agents_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                     error_for=agent_id)
        return await agent_page(ctx, principal, agent_id, exc.status, error=sentence(str(exc)))
    if inline:
        return redirect(f"/admin/agents?done={done}#agent-{agent_id}")
    return redirect(f"/admin/agents/{agent_id}?done={done}")


async def agent_unlock(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    agent_id = path_id(request, "agent_id")
    try:
        await form_act(admin.unlock_agent(ctx.inbox, principal, agent_id))
    except FormError as exc:
        return await agent_page(ctx, principal, agent_id, exc.status, error=sentence(str(exc)))
    return redirect(f"/admin/agents/{agent_id}?done=unlocked")


async def invite_post(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    assert form is not None
    hours = form_value(form, "expires_in_hours") or "72"
    try:
        body = form_model(lambda: invitations.InvitationCreate.model_validate({
            "email": form_value(form, "email"), "name": form_value(form, "name"),
            "role": form_value(form, "role") or "agent",
            "inbox_ids": form_ids(form, "inbox_ids"), "team_ids": form_ids(form, "team_ids"),
            "expires_in_hours": int(hours) if hours.isdigit() else 0,
        }))
        created = await form_act(invitations.create_invitation(ctx.inbox, principal, body))
    except FormError as exc:
        return await agents_page(ctx, principal, exc.status, invite_error=sentence(str(exc)))
    # Shown this once: only the token's hash is kept, nobody can see the link again.
    return await agents_page(ctx, principal, 201, new_invitation=created)


async def revoke_post(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    try:
        await form_act(invitations.revoke_invitation(
            ctx.inbox, principal, int(request.path_params["invitation_id"])))
    except FormError as exc:
        return await agents_page(ctx, principal, exc.status, invite_error=sentence(str(exc)))
    return redirect("/admin/agents?done=revoked#invitations")


async def teams_get(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    return await teams_page(ctx, principal, notice=notice(request))


def team_fields(form: Form) -> dict[str, Any]:
    return {
        "name": form_value(form, "name"),
        "assignment_policy": form_value(form, "assignment_policy") or "round_robin",
        "member_ids": form_ids(form, "member_ids"), "inbox_ids": form_ids(form, "inbox_ids"),
    }


async def team_create(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    assert form is not None
    try:
        body = form_model(lambda: teams.TeamCreate(**team_fields(form)))
        team = await form_act(teams.create_team(ctx.inbox, principal, body))
    except FormError as exc:
        return await teams_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                error_for="new")
    return redirect(f"/admin/teams?done=created#team-{team.id}")


async def team_update(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    assert form is not None
    team_id = int(request.path_params["team_id"])
    try:
        body = form_model(lambda: teams.TeamPatch(**team_fields(form)))
        await form_act(teams.update_team(ctx.inbox, principal, team_id, body))
    except FormError as exc:
        return await teams_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                error_for=team_id)
    return redirect(f"/admin/teams?done=saved#team-{team_id}")


async def team_delete(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    try:
        await form_act(teams.delete_team(ctx.inbox, principal,
                                     int(request.path_params["team_id"])))
    except FormError as exc:
        return await teams_page(ctx, principal, exc.status, error=sentence(str(exc)))
    return redirect("/admin/teams?done=deleted")


def invite_form(ctx: WebContext, token: str, invitation: invitations.InvitationView,
                status: int = 200, **values: Any) -> Response:
    csrf = secrets.token_urlsafe(32)
    response = page("invite.html", status, invitation=invitation, token=token,
                    csrf_token=csrf, min_length=MIN_PASSWORD, **values)
    response.set_cookie(INVITE_CSRF_COOKIE, csrf, max_age=3600, httponly=True,
                        secure=ctx.settings.base_url.startswith("https://"),
                        samesite="strict", path="/invite")
    return response


async def invite_page(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    try:
        async with ctx.inbox.db.read() as session:
            invitation = await form_act(invitations.open_invitation(session, token))
    except FormError as exc:
        return refusal(exc.status, "This invitation cannot be used", sentence(str(exc)))
    if request.method == "GET":
        return invite_form(ctx, token, invitation)
    form = await form_lists(request)
    name = form_value(form, "name")[:200]
    expected = request.cookies.get(INVITE_CSRF_COOKIE, "")
    if not expected or not constant_time_equal(expected, form_value(form, "csrf_token")):
        return invite_form(ctx, token, invitation, 403, name=name,
                           error="This form expired. Please try again.")
    password = form.get("password", [""])[0]
    if password != form.get("confirm_password", [""])[0]:
        return invite_form(ctx, token, invitation, 422, name=name,
                           error="The passwords do not match.")
    try:
        logged = await form_act(invitations.accept_invitation(
            ctx.inbox, token=token, name=name, password=password))
    except FormError as exc:
        return invite_form(ctx, token, invitation, exc.status, name=name,
                           error=sentence(str(exc)))
    response = redirect("/")
    set_session_cookie(response, logged.token, ctx.settings)
    response.delete_cookie(INVITE_CSRF_COOKIE, path="/invite")
    return response


async def two_factor(request: Request) -> Response:
    ctx = web_context(request)
    principal = await session_principal(request)
    if principal is None:
        return redirect("/login")
    values: dict[str, Any] = {"csrf_token": principal.csrf_token}
    status = 200
    if request.method == "POST":
        form = await form_lists(request)
        if not constant_time_equal(form_value(form, "csrf_token"), principal.csrf_token):
            return refusal(403, "Not saved", "This form expired. Reload and try again.")
        try:
            values["notice"] = await two_factor_action(ctx, principal, form)
        except FormError as exc:
            status, values["error"] = exc.status, sentence(str(exc))
    async with ctx.inbox.db.read() as session:
        agent = await agent_by_id(session, principal.agent_id)
    if agent.totp_secret and not agent.totp_enabled:
        values["otpauth_uri"] = totp.otpauth_uri(agent.totp_secret, agent.email)
    return page("two_factor.html", status, agent=agent, **values)


async def two_factor_action(ctx: WebContext, principal: Principal, form: Form) -> str:
    action = form_value(form, "action")
    async with ctx.inbox.db.write() as session:
        return await form_act(_two_factor_step(session, principal, action, form))


async def dead_letters_get(
    request: Request, principal: Principal, form: Form | None
) -> Response:
    ctx = web_context(request)
    stream = request.query_params.get("stream", "inbound")
    if stream not in dead_letters.STREAMS:
        stream = "inbound"
    bus = ctx.inbox.bus
    return page("admin_dead_letters.html", 200, csrf_token=principal.csrf_token,
                stream=stream, streams=dead_letters.STREAMS,
                counts=await dead_letters.count(bus),
                letters=await dead_letters.list_dead_letters(bus, stream, limit=200),
                notice=notice(request))


async def dead_letter_post(
    request: Request, principal: Principal, form: Form | None
) -> Response:
    ctx = web_context(request)
    stream, action = request.path_params["stream"], request.path_params["action"]
    if stream not in dead_letters.STREAMS:
        return refusal(404, "Not found", "There is no such stream.")
    entry = request.path_params.get("entry")
    bus = ctx.inbox.bus
    try:
        if action == "replay-all":
            await dead_letters.replay_all(bus, stream)
            done = "replayed_all"
        elif action == "replay" and entry:
            found = await dead_letters.replay(bus, stream, entry) is not None
            done = "replayed" if found else ""
        elif action == "discard" and entry:
            done = "discarded" if await dead_letters.discard(bus, stream, entry) else ""
        else:
            return refusal(404, "Not found", "There is no such action.")
    except ValueError:
        done = ""
    if not done:
        return refusal(404, "Not found", "That dead letter is gone (replayed or deleted).")
    return redirect(f"/admin/dead-letters?stream={stream}&done={done}")


async def owners(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """What a labels or canned page needs to say who owns what: the teams by id, the owners
    the principal may choose for something new, and a test of what they may change."""
    found = {t.id: t.name for t in await teams.list_teams(session)}
    choices = [("", "Whole workspace")] if principal.is_admin else []
    choices += [(str(i), n) for i, n in sorted(found.items(), key=lambda t: t[1])
                if may_manage(principal, i)]
    return {"team_names": found, "owner_choices": choices,
            "may_manage": lambda team_id: may_manage(principal, team_id)}


def form_team(form: Form) -> int | None:
    """The owning team a form chose ("": none)."""
    value = form_value(form, "team_id")
    if value and not value.isdigit():
        raise FormError("team_id: choose a team from the list")
    return int(value) if value else None


async def labels_page(ctx: WebContext, principal: Principal, status: int = 200,
                      **values: Any) -> HTMLResponse:
    async with ctx.inbox.db.read() as db_session:
        found = await labels.list_labels(db_session)
        owned = await owners(db_session, principal)
    return page("admin_labels.html", status, csrf_token=principal.csrf_token, labels=found,
                is_admin=principal.is_admin, **owned, **values)


async def labels_get(request: Request, principal: Principal, form: Form | None) -> Response:
    return await labels_page(web_context(request), principal, notice=notice(request))


async def label_create(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    try:
        await form_act(labels.create_label(ctx.inbox, principal, name=form_value(form, "name"),
                                           color=form_value(form, "color") or None,
                                           team_id=form_team(form),
                                           description=form_value(form, "description")))
    except FormError as exc:
        return await labels_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                 name=form_value(form, "name"),
                                 description=form_value(form, "description"))
    return redirect("/admin/labels?done=label_created")


async def label_delete(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    try:
        await form_act(labels.delete_label(ctx.inbox, principal,
                                           label_id=int(request.path_params["label_id"])))
    except FormError as exc:
        return await labels_page(ctx, principal, exc.status, error=sentence(str(exc)))
    return redirect("/admin/labels?done=label_deleted")


async def canned_page(ctx: WebContext, principal: Principal, status: int = 200,
                      **values: Any) -> HTMLResponse:
    async with ctx.inbox.db.read() as db_session:
        found = await canned.list_canned(db_session)
        owned = await owners(db_session, principal)
        me = await agent_by_id(db_session, principal.agent_id)
    return page("admin_canned.html", status, csrf_token=principal.csrf_token, canned=found,
                variables=sorted(canned.VARIABLES), is_admin=principal.is_admin,
                me=principal.agent_id, samples=canned.sample_values(me.name),
                preview=lambda text: canned.preview(text, me.name), **owned, **values)


async def canned_get(request: Request, principal: Principal, form: Form | None) -> Response:
    return await canned_page(web_context(request), principal, notice=notice(request))


async def _canned_change(
    request: Request, principal: Principal, form: Form | None,
    change: Callable[[AsyncSession, dict[str, str]], Awaitable[object]], done: str,
) -> Response:
    """Carry out one change of the canned responses; on a refusal, the page again with the
    message and what was typed."""
    assert form is not None
    ctx = web_context(request)
    fields = {"shortcut": form_value(form, "shortcut"), "title": form_value(form, "title"),
              "text": form.get("text", [""])[0]}
    try:
        async with ctx.inbox.db.write() as db_session:
            await form_act(change(db_session, fields))
    except FormError as exc:
        return await canned_page(ctx, principal, exc.status, error=sentence(str(exc)),
                                 error_for=str(request.path_params.get("canned_id", "new")),
                                 values=fields)
    return redirect(f"/admin/canned?done={done}")


async def canned_create(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    try:
        team_id = form_team(form)
    except FormError as exc:
        return await canned_page(web_context(request), principal, exc.status,
                                 error=sentence(str(exc)), error_for="new")
    return await _canned_change(request, principal, form, lambda db_session, fields:
                                canned.create_canned(db_session, principal, **fields,
                                                     team_id=team_id),
                                "canned_created")


async def canned_update(request: Request, principal: Principal, form: Form | None) -> Response:
    canned_id = int(request.path_params["canned_id"])
    return await _canned_change(request, principal, form, lambda db_session, fields:
                                canned.update_canned(db_session, principal, canned_id, **fields),
                                "canned_saved")


async def canned_delete(request: Request, principal: Principal, form: Form | None) -> Response:
    canned_id = int(request.path_params["canned_id"])
    return await _canned_change(request, principal, form, lambda db_session, fields:
                                canned.delete_canned(db_session, principal, canned_id),
                                "canned_deleted")


async def admin_home(request: Request) -> Response:
    """Admins land on the inboxes (with the checklist of a new installation), team leads on
    what they manage: the labels."""
    principal = await session_principal(request)
    if principal is None:
        return redirect("/login")
    return redirect("/admin/inboxes" if principal.is_admin else "/admin/labels")


ROUTES: list[BaseRoute] = [
    Route("/admin/labels", admin_page(labels_get, leads=True), methods=["GET"]),
    Route("/admin/labels", admin_page(label_create, leads=True), methods=["POST"]),
    Route("/admin/labels/{label_id:id}/delete", admin_page(label_delete, leads=True),
          methods=["POST"]),
    Route("/admin/canned", admin_page(canned_get, leads=True), methods=["GET"]),
    Route("/admin/canned", admin_page(canned_create, leads=True), methods=["POST"]),
    Route("/admin/canned/{canned_id:id}", admin_page(canned_update, leads=True),
          methods=["POST"]),
    Route("/admin/canned/{canned_id:id}/delete", admin_page(canned_delete, leads=True),
          methods=["POST"]),
    Route("/admin", admin_home, methods=["GET"]),
    Route("/admin/agents", admin_page(agents_get), methods=["GET"]),
    Route("/admin/agents/{agent_id:id}", admin_page(agent_get), methods=["GET"]),
    Route("/admin/agents/{agent_id:id}", admin_page(agent_post), methods=["POST"]),
    Route("/admin/agents/{agent_id:id}/unlock", admin_page(agent_unlock), methods=["POST"]),
    Route("/admin/invitations", admin_page(invite_post), methods=["POST"]),
    Route("/admin/invitations/{invitation_id:id}/revoke", admin_page(revoke_post),
          methods=["POST"]),
    Route("/admin/teams", admin_page(teams_get), methods=["GET"]),
    Route("/admin/teams", admin_page(team_create), methods=["POST"]),
    Route("/admin/teams/{team_id:id}", admin_page(team_update), methods=["POST"]),
    Route("/admin/teams/{team_id:id}/delete", admin_page(team_delete), methods=["POST"]),
    Route("/admin/dead-letters", admin_page(dead_letters_get), methods=["GET"]),
    Route("/admin/dead-letters/{stream:str}/{action:str}", admin_page(dead_letter_post),
          methods=["POST"]),
    Route("/admin/dead-letters/{stream:str}/{entry:str}/{action:str}",
          admin_page(dead_letter_post), methods=["POST"]),
    Route("/invite/{token:str}", invite_page, methods=["GET", "POST"]),
    Route("/settings/two-factor", two_factor, methods=["GET", "POST"]),
]


async def _two_factor_step(
    session: AsyncSession, principal: Principal, action: str, form: Form
) -> str:
    """Carry out one step of the two-factor page; return what to tell the agent."""
    if action == "setup":
        await totp.start_setup(session, agent_id=principal.agent_id)
        return "A new key was made for you: one more step below."
    if action == "enable":
        await totp.enable(session, agent_id=principal.agent_id, code=form_value(form, "code"))
        return "Two-factor authentication is on. You will need a code each time you log in."
    if action == "disable":
        await totp.disable(session, agent_id=principal.agent_id,
                           password=form.get("password", [""])[0])
        return "Two-factor authentication is off."
    raise FormError("unknown action", 400)
