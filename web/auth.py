"""Logging in and out, and the logged-in agent's own settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from inbox import assign_actions, totp
from inbox.agents import AgentError, Principal, agent_by_id, token_hash
from inbox.auth import LoggedIn, LoginRefused, log_in, log_out, update_password
from web.admin import guarded
from web.context import WebContext, web_context
from web.http import (
    SESSION_COOKIE,
    HTTPProblem,
    Operation,
    RequestModel,
    act,
    authenticated,
    client_address,
    json_response,
    parse_json,
    problem_response,
    set_session_cookie,
)
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Agent


class LoginRequest(RequestModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    # Required once the agent turned on two-factor authentication: the app's current code.
    totp_code: str | None = Field(default=None, max_length=12)


class AgentView(BaseModel):
    id: int
    email: str
    name: str
    role: str
    availability: str


class LoginResponse(BaseModel):
    agent: AgentView
    csrf_token: str


class AvailabilityRequest(RequestModel):
    availability: Literal["online", "away"]


class PasswordRequest(RequestModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


def agent_view(agent: Agent) -> AgentView:
    assert agent.id is not None
    return AgentView(
        id=agent.id, email=agent.email, name=agent.name, role=agent.role,
        availability=agent.availability,
    )


def session_response(ctx: WebContext, logged: LoggedIn) -> Response:
    """The answer to a successful login: the agent, the CSRF token, the session cookie."""
    response = json_response(LoginResponse(agent=agent_view(logged.agent),
                                           csrf_token=logged.csrf_token))
    set_session_cookie(response, logged.token, ctx.settings)
    return response


def login_refusal(exc: LoginRefused) -> Response:
    """401 for wrong credentials or a missing/wrong code; 429 with Retry-After when limited."""
    status = 429 if exc.code == "rate_limited" else 401
    response = problem_response(HTTPProblem(status, exc.code, exc.message))
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def login(request: Request) -> Response:
    """Log in with email and password (and two-factor code); sets the session cookie."""
    ctx = web_context(request)
    body = await parse_json(request, LoginRequest)
    try:
        logged = await log_in(ctx.inbox, email=body.email, password=body.password,
                              totp_code=body.totp_code, address=client_address(request))
    except LoginRefused as exc:
        return login_refusal(exc)
    return session_response(ctx, logged)


async def logout(request: Request, principal: Principal) -> Response:
    """End this session; its cookie stops working at once."""
    ctx = web_context(request)
    token = request.cookies.get(SESSION_COOKIE) or request.headers.get(
        "authorization", ""
    )[7:].strip()
    await log_out(ctx.inbox, principal, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def me(request: Request, principal: Principal) -> Response:
    """The logged-in agent."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        agent = await agent_by_id(session, principal.agent_id)
        return json_response(agent_view(agent))


async def set_availability(request: Request, principal: Principal) -> Response:
    """Set yourself online (auto-assignment may pick you) or away."""
    ctx = web_context(request)
    body = await parse_json(request, AvailabilityRequest)
    agent = await act(assign_actions.set_availability(
        ctx.inbox, agent_id=principal.agent_id, availability=body.availability))
    return json_response(agent_view(agent))


async def set_password(request: Request, principal: Principal) -> Response:
    """Change your password; every other session of yours ends at once."""
    ctx = web_context(request)
    body = await parse_json(request, PasswordRequest)
    token = request.cookies.get(SESSION_COOKIE) or request.headers.get(
        "authorization", ""
    )[7:].strip()
    try:
        await update_password(ctx.inbox, principal, current=body.current_password,
                              new=body.new_password, keep_token_hash=token_hash(token))
    except AgentError as exc:
        raise HTTPProblem(422, "refused", str(exc)) from None
    return Response(status_code=204)


class TotpSetupView(BaseModel):
    secret: str
    otpauth_uri: str


class TotpEnableRequest(RequestModel):
    code: str = Field(min_length=6, max_length=12)


class TotpDisableRequest(RequestModel):
    password: str = Field(max_length=1024)


async def totp_setup(request: Request, principal: Principal) -> Response:
    """Start two-factor setup: a new secret and its otpauth:// URI (not on until enabled)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.write() as session:
        secret, uri = await guarded(totp.start_setup(session, agent_id=principal.agent_id))
    return json_response(TotpSetupView(secret=secret, otpauth_uri=uri))


async def totp_enable(request: Request, principal: Principal) -> Response:
    """Turn two-factor authentication on with a code from the app."""
    ctx = web_context(request)
    db = ctx.inbox.db
    body = await parse_json(request, TotpEnableRequest)
    async with db.write() as session:
        await guarded(totp.enable(session, agent_id=principal.agent_id, code=body.code))
    return Response(status_code=204)


async def totp_disable(request: Request, principal: Principal) -> Response:
    """Turn two-factor authentication off; your password confirms it."""
    ctx = web_context(request)
    db = ctx.inbox.db
    body = await parse_json(request, TotpDisableRequest)
    async with db.write() as session:
        await guarded(totp.disable(session, agent_id=principal.agent_id,
                                   password=body.password))
    return Response(status_code=204)


OPERATIONS: list[Operation] = [
    (Doc("POST", "/api/v1/auth/login", "Log in", LoginRequest, LoginResponse, auth=False,
         extra_responses={401: "Wrong email or password, or two-factor code needed/wrong",
                      429: "Too many failed logins; see Retry-After"}), login),
    (Doc("POST", "/api/v1/auth/logout", "Log out", status=204), authenticated(logout)),
    (Doc("GET", "/api/v1/me", "The logged-in agent", response=AgentView),
     authenticated(me)),
    (Doc("PUT", "/api/v1/me/availability", "Set availability", AvailabilityRequest,
         AgentView), authenticated(set_availability)),
    (Doc("POST", "/api/v1/me/password", "Change your password (ends your other sessions)",
         PasswordRequest, status=204), authenticated(set_password)),
    (Doc("POST", "/api/v1/me/totp/setup", "Start two-factor setup", response=TotpSetupView),
     authenticated(totp_setup)),
    (Doc("POST", "/api/v1/me/totp/enable", "Turn two-factor authentication on",
         TotpEnableRequest, status=204), authenticated(totp_enable)),
    (Doc("POST", "/api/v1/me/totp/disable", "Turn two-factor authentication off",
         TotpDisableRequest, status=204), authenticated(totp_disable)),
]
