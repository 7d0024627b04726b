"""The agent inbox pages: login, logout, password change and the inbox app's shell.

The inbox itself is a small app of ES modules (static/js/, entry main.js) on the JSON API
and the agent websocket.
These routes only serve its page and the forms that must work before (or apart from) it.
Forms are protected against CSRF: before login by a double-submit token (a SameSite=Strict
cookie and a hidden field), after login by the session's own CSRF token.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from config import Settings
from hub.security import constant_time_equal
from inbox.agents import MIN_PASSWORD, AgentError, Principal, agent_by_id, token_hash
from inbox.auth import LoginRefused, log_in, log_out, update_password
from web.context import WebContext, web_context
from web.http import (
    SESSION_COOKIE,
    client_address,
    current_principal,
    read_body,
    set_session_cookie,
)

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Agent


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


class _RevalidatedFiles(StaticFiles):
    """Static files a browser checks again (a cheap 304) before each use: the inbox's modules
    import one another without a version in their URLs, so a cached copy must not go stale."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def static_files() -> Mount:
    """The /static mount: the inbox app's modules (static/js), styles, the widget script."""
    return Mount("/static", _RevalidatedFiles(directory=STATIC), name="static")


async def form_lists(request: Request) -> dict[str, list[str]]:
    """A small url-encoded form's fields, every value of each; empty for anything else."""
    body = await read_body(request, MAX_FORM)
    if not request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        return {}
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form's fields (first value of each); empty for anything else."""
    return {name: values[0] for name, values in (await form_lists(request)).items()}


class Pages:
    """Renders the page templates, always with the security headers."""

    def __init__(self) -> None:
        self._env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
        self._asset_version = _asset_version()

    def page(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """A rendered template."""
        html = self._env.get_template(template).render(asset_version=self._asset_version,
                                                       **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    @staticmethod
    def redirect(to: str) -> RedirectResponse:
        """A 303 redirect (after a form: the browser then GETs `to`)."""
        return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


def _session_token(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


PAGES = Pages()
page, redirect = PAGES.page, PAGES.redirect


def _login_form(
    settings: Settings, status: int = 200, *, email: str = "", error: str | None = None,
    need_code: bool = False,
) -> Response:
    token = secrets.token_urlsafe(32)
    response = page("login.html", status, csrf_token=token, email=email, error=error,
                    need_code=need_code)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True,
        secure=settings.base_url.startswith("https://"), samesite="strict", path="/login",
    )
    return response


async def _agent_of(ctx: WebContext, principal: Principal) -> Agent:
    async with ctx.inbox.db.read() as session:
        return await agent_by_id(session, principal.agent_id)


async def inbox_page(request: Request) -> Response:
    """The agent inbox app (its modules do the rest), or the login page."""
    ctx = web_context(request)
    principal = await current_principal(ctx, request)
    if principal is None or not _session_token(request):
        return redirect("/login")
    if principal.is_admin and not principal.inbox_ids:
        return redirect("/admin/inboxes")  # a new installation: the first admin's checklist
    agent = await _agent_of(ctx, principal)
    return page("inbox.html", agent=agent, csrf_token=principal.csrf_token,
                attachment_max_bytes=ctx.settings.attachment_max_bytes)


async def login_get(request: Request) -> Response:
    """The login form (the inbox when already logged in)."""
    ctx = web_context(request)
    if _session_token(request) and await current_principal(ctx, request) is not None:
        return redirect("/")
    return _login_form(ctx.settings)


async def login_post(request: Request) -> Response:
    """Log in from the form: email, password and, once asked for, the two-factor code."""
    ctx = web_context(request)
    form = await _form(request)
    email = form.get("email", "")[:320]
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not constant_time_equal(expected, form.get("csrf_token", "")):
        return _login_form(ctx.settings, 403, email=email,
                           error="This form expired. Please log in again.")
    try:
        logged = await log_in(ctx.inbox, email=email, password=form.get("password", ""),
                              totp_code=form.get("totp_code"), address=client_address(request))
    except LoginRefused as exc:
        refused = _login_form(ctx.settings, 429 if exc.code == "rate_limited" else 401,
                              email=email, error=exc.message[:1].upper() + exc.message[1:] + ".",
                              need_code=exc.code in ("totp_required", "invalid_totp"))
        if exc.retry_after is not None:
            refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    response = redirect("/")
    set_session_cookie(response, logged.token, ctx.settings)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    """End the session from the page's logout form."""
    ctx = web_context(request)
    principal = await current_principal(ctx, request)
    token = _session_token(request)
    if principal is None or not token:
        return redirect("/login")
    form = await _form(request)
    if not constant_time_equal(form.get("csrf_token", ""), principal.csrf_token):
        return page("message.html", 403, title="Not logged out",
                    text="The logout form was not sent from this page. Try again.")
    await log_out(ctx.inbox, principal, token)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def password(request: Request) -> Response:
    """Change your password (the other sessions end)."""
    ctx = web_context(request)
    principal = await current_principal(ctx, request)
    token = _session_token(request)
    if principal is None or not token:
        return redirect("/login")
    agent = await _agent_of(ctx, principal)
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
        return page("password.html", 422, error="The new passwords do not match.", **values)
    try:
        await update_password(ctx.inbox, principal, current=form.get("current_password", ""),
                              new=new, keep_token_hash=token_hash(token))
    except AgentError as exc:
        return page("password.html", 422, error=str(exc).capitalize() + ".", **values)
    return page("password.html", done=True, **values)


ROUTES: list[BaseRoute] = [
    Route("/", inbox_page, methods=["GET"]),
    Route("/login", login_get, methods=["GET"]),
    Route("/login", login_post, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/settings/password", password, methods=["GET", "POST"]),
]
