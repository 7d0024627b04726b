"""The CRM pages (admins): connect HubSpot, see each connection's state and sync log,
reconnect a broken one, push everything again. Same actions as the JSON API (web/crm.py)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from crm_sync import connections
from crm_sync.base import AuthorisesWithOAuth
from hub.security import constant_time_equal
from inbox.agents import Principal
from web.admin_ui import (
    Form,
    FormError,
    admin_page,
    form_act,
    form_value,
    page,
    redirect,
    refusal,
    sentence,
)
from web.context import WebContext, web_context
from web.crm import connection_view, log_view
from web.http import path_id

NOTICES = {
    "connected": "Connected: every contact is being pushed now, then every change within "
                 "seconds.",
    "saved": "Saved: the connection goes on where it stopped.",
    "queued": "Every contact is queued to be pushed again.",
    "removed": "The connection was removed (HubSpot keeps its records).",
}


def _settings(form: Form, names: list[str]) -> dict[str, str]:
    return {name: form_value(form, f"settings.{name}") for name in names
            if f"settings.{name}" in form}


async def list_page(request: Request, principal: Principal, status: int = 200,
                    **values: Any) -> Response:
    ctx = web_context(request)
    async with ctx.inbox.db.read() as session:
        rows = await form_act(connections.list_connections(session, principal, ctx.crm))
    return page("admin_crm.html", status, csrf_token=principal.csrf_token,
                connections=[connection_view(request, r) for r in rows],
                connectors=list(ctx.crm.values()),
                oauth={c.kind for c in ctx.crm.values() if isinstance(c, AuthorisesWithOAuth)},
                base_url=ctx.settings.base_url, **values)


async def connection_page(request: Request, principal: Principal, connection_id: int,
                          status: int = 200, **values: Any) -> Response:
    ctx: WebContext = web_context(request)
    async with ctx.inbox.db.read() as session:
        try:
            state = await form_act(connections.get_connection(session, principal,
                                                              connection_id, ctx.crm))
        except FormError:
            return refusal(404, "No such connection", "This CRM connection does not exist.")
        lines = await connections.sync_log(session, principal, connection_id, limit=100)
    connector = ctx.crm.get(state.connection.kind)
    return page("admin_crm_connection.html", status, csrf_token=principal.csrf_token,
                connection=connection_view(request, state),
                specs=list(connector.specs) if connector else [],
                log=[log_view(line) for line in lines], **values)


async def crm_get(request: Request, principal: Principal, form: Form | None) -> Response:
    return await list_page(request, principal,
                           notice=NOTICES.get(request.query_params.get("done", "")))


async def crm_connect(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    kind = form_value(form, "kind")
    connector = ctx.crm.get(kind)
    try:
        if connector is None:
            raise FormError("kind: choose a CRM")
        row = await form_act(connections.connect(
            ctx.inbox, principal, ctx.crm, kind=kind, name=form_value(form, "name"),
            settings=_settings(form, [s.name for s in connector.specs]),
            sync_existing=form_value(form, "sync_existing") == "1"))
    except FormError as exc:
        return await list_page(request, principal, exc.status, error=sentence(str(exc)))
    return redirect(f"/admin/crm/{row.id}?done=connected")


async def connection_get(request: Request, principal: Principal, form: Form | None
                         ) -> Response:
    return await connection_page(request, principal, path_id(request, "connection_id"),
                                 notice=NOTICES.get(request.query_params.get("done", "")))


async def connection_save(request: Request, principal: Principal, form: Form | None
                          ) -> Response:
    assert form is not None
    ctx = web_context(request)
    connection_id = path_id(request, "connection_id")
    try:
        names = [s.name for c in ctx.crm.values() for s in c.specs]
        await form_act(connections.reconnect(
            ctx.inbox, principal, ctx.crm, connection_id,
            settings={k: v for k, v in _settings(form, names).items() if v},
            name=form_value(form, "name")))
    except FormError as exc:
        return await connection_page(request, principal, connection_id, exc.status,
                                     error=sentence(str(exc)))
    return redirect(f"/admin/crm/{connection_id}?done=saved")


async def connection_backfill(request: Request, principal: Principal, form: Form | None
                              ) -> Response:
    connection_id = path_id(request, "connection_id")
    try:
        await form_act(connections.queue_everything(web_context(request).inbox, principal,
                                                    connection_id))
    except FormError as exc:
        return await connection_page(request, principal, connection_id, exc.status,
                                     error=sentence(str(exc)))
    return redirect(f"/admin/crm/{connection_id}?done=queued")


async def connection_delete(request: Request, principal: Principal, form: Form | None
                            ) -> Response:
    try:
        await form_act(connections.disconnect(web_context(request).inbox, principal,
                                              path_id(request, "connection_id")))
    except FormError as exc:
        return await list_page(request, principal, exc.status, error=sentence(str(exc)))
    return redirect("/admin/crm?done=removed")


OAUTH_COOKIE = "switchboard_crm_oauth"
OAUTH_SECONDS = 600


def _callback(request: Request, kind: str) -> str:
    return f"{web_context(request).settings.base_url}/admin/crm/oauth/{kind}/callback"


async def oauth_start(request: Request, principal: Principal, form: Form | None) -> Response:
    """Off to the CRM's authorization page; what the callback needs waits in a cookie of
    this browser, sealed, with the nonce that must come back as `state` (so a callback
    someone else started is refused)."""
    assert form is not None
    ctx = web_context(request)
    kind = request.path_params["kind"]
    connector = ctx.crm.get(kind)
    if not isinstance(connector, AuthorisesWithOAuth):
        return refusal(404, "No such CRM", "This CRM does not connect with OAuth.")
    settings = _settings(form, [s.name for s in connector.specs])
    if not (settings.get("client_id") and settings.get("client_secret")):
        return await list_page(request, principal, 422,
                               error="The app's client id and client secret are needed.")
    nonce = secrets.token_urlsafe(24)
    sealed = ctx.inbox.secrets.seal(json.dumps({
        "nonce": nonce, "kind": kind, "name": form_value(form, "name"), "settings": settings,
        "agent_id": principal.agent_id, "until": time.time() + OAUTH_SECONDS}))
    response = redirect(connector.authorize_url(settings, _callback(request, kind), nonce))
    response.set_cookie(OAUTH_COOKIE, sealed["$sealed"], max_age=OAUTH_SECONDS, httponly=True,
                        secure=ctx.settings.base_url.startswith("https://"), samesite="lax",
                        path="/admin/crm/oauth")
    return response


async def oauth_callback(request: Request, principal: Principal, form: Form | None
                         ) -> Response:
    """Back from the CRM: the state checked against this browser's cookie, the code traded
    for tokens, the connection made."""
    ctx = web_context(request)
    kind = request.path_params["kind"]
    try:
        pending = json.loads(ctx.inbox.secrets.open(
            {"$sealed": request.cookies.get(OAUTH_COOKIE, "")}))
    except Exception:
        pending = None
    state = request.query_params.get("state", "")
    if (not isinstance(pending, dict) or pending.get("kind") != kind
            or pending.get("agent_id") != principal.agent_id
            or float(pending.get("until", 0)) < time.time()
            or not constant_time_equal(state, str(pending.get("nonce", "")))):
        return refusal(400, "Not connected", "This authorization was not started here, or "
                       "it took longer than 10 minutes. Start again from Admin → CRM.")
    if request.query_params.get("error") or not request.query_params.get("code"):
        return refusal(400, "Not connected", "The CRM did not authorize Switchboard: "
                       + (request.query_params.get("error_description")
                          or request.query_params.get("error") or "no code came back"))
    try:
        row = await form_act(connections.connect_with_code(
            ctx.inbox, principal, ctx.crm, kind=kind, name=str(pending.get("name", "")),
            settings=pending.get("settings", {}), code=request.query_params["code"],
            redirect_uri=_callback(request, kind)))
    except FormError as exc:
        return await list_page(request, principal, exc.status, error=sentence(str(exc)))
    response = redirect(f"/admin/crm/{row.id}?done=connected")
    response.delete_cookie(OAUTH_COOKIE, path="/admin/crm/oauth")
    return response


_ONE = "/admin/crm/{connection_id:id}"
ROUTES: list[BaseRoute] = [
    Route("/admin/crm", admin_page(crm_get), methods=["GET"]),
    Route("/admin/crm", admin_page(crm_connect), methods=["POST"]),
    Route(_ONE, admin_page(connection_get), methods=["GET"]),
    Route(_ONE, admin_page(connection_save), methods=["POST"]),
    Route(_ONE + "/backfill", admin_page(connection_backfill), methods=["POST"]),
    Route(_ONE + "/delete", admin_page(connection_delete), methods=["POST"]),
    Route("/admin/crm/oauth/{kind:str}", admin_page(oauth_start), methods=["POST"]),
    Route("/admin/crm/oauth/{kind:str}/callback", admin_page(oauth_callback), methods=["GET"]),
]
