"""The agent inbox pages: login, logout, password change and the inbox app's shell.

The inbox itself is a small script (static/app.js) on the JSON API and the agent websocket;
these routes only serve its page and the forms that must work before (or apart from) it.
Forms are protected against CSRF: before login by a double-submit token (a SameSite=Strict
cookie and a hidden field), after login by the session's own CSRF token.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hub.security import constant_time_equal
from inbox.agents import (
    MIN_PASSWORD,
    AgentError,
    Principal,
    authenticate,
    change_password,
    end_session,
    start_session,
    token_hash,
)
from inbox.models import Agent
from web.context import WebContext
from web.http import SESSION_COOKIE, current_principal, read_body

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LOGIN_CSRF_COOKIE = "switchboard_login_csrf"
MAX_FORM = 16 * 1024
CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _asset_version() -> str:
    """A short hash of the static files, so browsers fetch them again after an upgrade."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def static_files() -> Mount:
    """The /static mount: the inbox app's script, styles and vendored libraries."""
    return Mount("/static", StaticFiles(directory=STATIC), name="static")


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form's fields (first value of each); empty for anything else."""
    body = await read_body(request, MAX_FORM)
    if not request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _session_token(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


def ui_routes(ctx: WebContext) -> list[BaseRoute]:
    """The page routes of the agent inbox."""
    db = ctx.inbox.db
    secure_cookie = ctx.settings.base_url.startswith("https://")
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    asset_version = _asset_version()

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(asset_version=asset_version, **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def redirect(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)

    def login_form(status: int = 200, *, email: str = "", error: str | None = None) -> Response:
        token = secrets.token_urlsafe(32)
        response = page("login.html", status, csrf_token=token, email=email, error=error)
        response.set_cookie(
            LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, secure=secure_cookie,
            samesite="strict", path="/login",
        )
        return response

    async def agent_of(principal: Principal) -> Agent:
        async with db.read() as session:
            return await session.get_one(Agent, principal.agent_id)

    async def inbox_page(request: Request) -> Response:
        principal = await current_principal(ctx, request)
        if principal is None or not _session_token(request):
            return redirect("/login")
        agent = await agent_of(principal)
        return page("inbox.html", agent=agent, csrf_token=principal.csrf_token)

    async def login_get(request: Request) -> Response:
        if _session_token(request) and await current_principal(ctx, request) is not None:
            return redirect("/")
        return login_form()

    async def login_post(request: Request) -> Response:
        form = await _form(request)
        email = form.get("email", "")[:320]
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not constant_time_equal(expected, form.get("csrf_token", "")):
            return login_form(403, email=email,
                              error="This form expired. Please log in again.")
        async with db.write() as session:
            agent = await authenticate(session, email=email, password=form.get("password", ""))
            if agent is None:
                return login_form(401, email=email, error="Wrong email or password.")
            assert agent.id is not None
            token, _ = await start_session(
                session, agent_id=agent.id, days=ctx.settings.session_days
            )
        response = redirect("/")
        response.set_cookie(
            SESSION_COOKIE, token, max_age=ctx.settings.session_days * 86400, httponly=True,
            secure=secure_cookie, samesite="lax", path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    async def logout(request: Request) -> Response:
        principal = await current_principal(ctx, request)
        token = _session_token(request)
        if principal is None or not token:
            return redirect("/login")
        form = await _form(request)
        if not constant_time_equal(form.get("csrf_token", ""), principal.csrf_token):
            return page("message.html", 403, title="Not logged out",
                        text="The logout form was not sent from this page. Try again.")
        async with db.write() as session:
            await end_session(session, token)
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def password(request: Request) -> Response:
        principal = await current_principal(ctx, request)
        token = _session_token(request)
        if principal is None or not token:
            return redirect("/login")
        agent = await agent_of(principal)
        values: dict[str, Any] = {
            "agent": agent, "csrf_token": principal.csrf_token, "min_length": MIN_PASSWORD,
        }
        if request.method == "GET":
            return page("password.html", **values)
        form = await _form(request)
        if not constant_time_equal(form.get("csrf_token", ""), principal.csrf_token):
            return page("password.html", 403, error="This form expired. Please try again.",
                        **values)
        new = form.get("new_password", "")
        if new != form.get("confirm_password", ""):
            return page("password.html", 422, error="The new passwords do not match.",
                        **values)
        try:
            async with db.write() as session:
                await change_password(
                    session, agent_id=principal.agent_id,
                    current=form.get("current_password", ""), new=new,
                    keep_token_hash=token_hash(token),
                )
        except AgentError as exc:
            return page("password.html", 422, error=str(exc).capitalize() + ".", **values)
        return page("password.html", done=True, **values)

    return [
        Route("/", inbox_page, methods=["GET"]),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/settings/password", password, methods=["GET", "POST"]),
    ]
