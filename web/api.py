"""The JSON API under /api/v1: what the agent UI, scripts and integrations call."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.base import settings_for_new_inbox, validate_settings
from hub.events import ConversationView, MessageView
from inbox import actions, assign_actions, errors, queries, replies
from inbox.agents import AgentError, Principal, token_hash
from inbox.assignment import drain_queue
from inbox.attachments import load_attachment
from inbox.auth import LoggedIn, LoginRefused, log_in, log_out, update_password
from inbox.channel_state import list_quarantined
from inbox.directory import colleagues, inbox_agents
from inbox.inboxes import InboxError, create_inbox, set_members, visible_inboxes
from inbox.models import Agent, Inbox, QuarantinedMessage
from web.api_files import attachment_response
from web.context import WebContext
from web.http import (
    SESSION_COOKIE,
    HTTPProblem,
    authenticated,
    client_address,
    int_param,
    json_response,
    parse_json,
    problem_response,
    set_session_cookie,
)
from web.openapi import Doc


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_In):
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


class InboxView(BaseModel):
    id: int
    name: str
    channel: str
    auto_assign: bool
    assignment_policy: str = "round_robin"
    requeue_on_offline: bool = False


class ConversationPage(BaseModel):
    items: list[ConversationView]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[MessageView]
    older_cursor: str | None


class ReplyRequest(_In):
    text: str = Field(default="", max_length=replies.MAX_TEXT)
    kind: Literal["message", "note"] = "message"
    idempotency_key: str | None = Field(default=None, min_length=8, max_length=200)
    # Channels with templates (WhatsApp): an approved template's id (a Twilio Content SID)
    # and its variables: what may still go out once the reply window has closed.
    template: str | None = Field(default=None, min_length=1, max_length=100,
                                 pattern=r"^[A-Za-z0-9_.:-]+$")
    template_variables: dict[str, str] = Field(default_factory=dict, max_length=100)
    # Files uploaded first (POST .../attachments); with them the text may be empty.
    attachment_ids: list[str] = Field(default_factory=list, max_length=replies.MAX_ATTACHMENTS)
    # Notes only: agents to notify (each must see the conversation's inbox).
    mention_ids: list[int] = Field(default_factory=list, max_length=20)
    # Collision check: the newest message the agent saw; a reply by someone else after it
    # (in the last 10 minutes) answers 409 unless `force`. Null: no check.
    after_message_id: int | None = None
    force: bool = False
    # Email: the addresses to copy; left out, the conversation's other participants are
    # (reply-all); an empty list copies nobody.
    cc: list[str] | None = Field(default=None, max_length=replies.MAX_CC)


class AssignRequest(_In):
    # An agent, or null to unassign; left out with a team_id: the team's policy picks one.
    assignee_id: int | None = None
    # A team working on the conversation's inbox (leads and admins); null: no team.
    team_id: int | None = None


class StatusRequest(_In):
    status: Literal["open", "pending", "snoozed", "resolved"]
    snoozed_until: datetime | None = None


class TypingRequest(_In):
    mode: Literal["reply", "note"] = "reply"
    typing: bool = True


class CreateInboxRequest(_In):
    name: str = Field(min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=40)
    settings: dict[str, Any] = Field(default_factory=dict)
    auto_assign: bool = True


class MembersRequest(_In):
    agent_ids: list[int] = Field(max_length=10_000)


class AvailabilityRequest(_In):
    availability: Literal["online", "away"]


class PasswordRequest(_In):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class QuarantinedView(BaseModel):
    id: int
    inbox_id: int
    reason: str
    size: int
    created_at: datetime


class ColleagueView(BaseModel):
    id: int
    name: str


def _agent_view(agent: Agent) -> AgentView:
    assert agent.id is not None
    return AgentView(
        id=agent.id, email=agent.email, name=agent.name, role=agent.role,
        availability=agent.availability,
    )


def _inbox_view(inbox: Inbox) -> InboxView:
    assert inbox.id is not None
    return InboxView(id=inbox.id, name=inbox.name, channel=inbox.channel,
                     auto_assign=inbox.auto_assign, assignment_policy=inbox.assignment_policy,
                     requeue_on_offline=inbox.requeue_on_offline)


def _not_found(what: str) -> HTTPProblem:
    return HTTPProblem(404, "not_found", f"{what} not found")


def session_response(ctx: WebContext, logged: LoggedIn) -> Response:
    """The answer to a successful login: the agent, the CSRF token, the session cookie."""
    response = json_response(LoginResponse(agent=_agent_view(logged.agent),
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


def api_routes(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """The API's routes and their OpenAPI descriptions."""
    db = ctx.inbox.db

    async def login(request: Request) -> Response:
        """Log in with email and password (and two-factor code); sets the session cookie."""
        body = await parse_json(request, LoginRequest)
        try:
            logged = await log_in(ctx.inbox, email=body.email, password=body.password,
                                  totp_code=body.totp_code, address=client_address(request))
        except LoginRefused as exc:
            return login_refusal(exc)
        return session_response(ctx, logged)

    async def logout(request: Request, principal: Principal) -> Response:
        """End this session; its cookie stops working at once."""
        token = request.cookies.get(SESSION_COOKIE) or request.headers.get(
            "authorization", ""
        )[7:].strip()
        await log_out(ctx.inbox, principal, token)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def me(request: Request, principal: Principal) -> Response:
        """The logged-in agent."""
        async with db.read() as session:
            agent = await session.get_one(Agent, principal.agent_id)
            return json_response(_agent_view(agent))

    async def set_availability(request: Request, principal: Principal) -> Response:
        """Set yourself online (auto-assignment may pick you) or away."""
        body = await parse_json(request, AvailabilityRequest)
        agent = await _act(assign_actions.set_availability(
            ctx.inbox, agent_id=principal.agent_id, availability=body.availability))
        return json_response(_agent_view(agent))

    async def set_password(request: Request, principal: Principal) -> Response:
        """Change your password; every other session of yours ends at once."""
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

    async def agents(request: Request, principal: Principal) -> Response:
        """Agents who share an inbox with you; with inbox_id, those who may see that inbox."""
        inbox_id = int_param(request.query_params.get("inbox_id"), "inbox_id")
        if inbox_id is not None and inbox_id not in principal.inbox_ids:
            raise _not_found("inbox")
        async with db.read() as session:
            found = await (colleagues(session, principal) if inbox_id is None
                           else inbox_agents(session, inbox_id))
        return json_response([ColleagueView(id=c.id, name=c.name) for c in found])

    async def inboxes(request: Request, principal: Principal) -> Response:
        """The inboxes you belong to (all of them for admins)."""
        async with db.read() as session:
            found = await visible_inboxes(session, principal)
        return json_response([_inbox_view(i) for i in found])

    async def add_inbox(request: Request, principal: Principal) -> Response:
        """Connect a new inbox (admins only)."""
        if not principal.is_admin:
            raise HTTPProblem(403, "forbidden", "only admins connect inboxes")
        body = await parse_json(request, CreateInboxRequest)
        adapter = ctx.channels.get(body.channel)
        if adapter is None:
            known = ", ".join(sorted(ctx.channels))
            raise HTTPProblem(422, "invalid_field", f"channel: unknown; use one of {known}")
        settings = settings_for_new_inbox(adapter, body.settings)
        problems = validate_settings(adapter, settings)
        if problems:
            raise HTTPProblem(422, "invalid_field", "settings." + "; settings.".join(problems))
        async with db.write() as session:
            try:
                inbox = await create_inbox(
                    session, name=body.name, channel=body.channel, settings=settings,
                    auto_assign=body.auto_assign,
                )
            except InboxError as exc:
                raise HTTPProblem(422, "invalid_field", str(exc)) from None
            view = _inbox_view(inbox)
        return json_response(view, status=201)

    async def put_members(request: Request, principal: Principal) -> Response:
        """Set exactly which agents belong to an inbox (admins only)."""
        if not principal.is_admin:
            raise HTTPProblem(403, "forbidden", "only admins change inbox members")
        inbox_id = int(request.path_params["inbox_id"])
        body = await parse_json(request, MembersRequest)
        async with db.write() as session:
            if await session.get(Inbox, inbox_id) is None:
                raise _not_found("inbox")
            try:
                await set_members(session, inbox_id=inbox_id, agent_ids=body.agent_ids)
            except InboxError as exc:
                raise HTTPProblem(422, "invalid_field", str(exc)) from None
        await drain_queue(ctx.inbox)  # new members may take what waits
        return Response(status_code=204)

    async def list_conversations(request: Request, principal: Principal) -> Response:
        """Conversations you may see, newest activity first, a page at a time."""
        q = request.query_params
        statuses = tuple(s for s in q.get("status", "").split(",") if s)
        try:
            filters = queries.ConversationFilter(
                inbox_id=int_param(q.get("inbox_id"), "inbox_id"),
                statuses=statuses,
                assignee=q.get("assignee") or None,
                contact_id=int_param(q.get("contact_id"), "contact_id"),
                label=q.get("label") or None,
                team_id=int_param(q.get("team_id"), "team_id"),
                priority=q.get("priority") or None,
                waiting=_flag(q.get("waiting"), "waiting"),
            )
            async with db.read() as session:
                items, cursor = await queries.list_conversations(
                    session, principal, filters, cursor=q.get("cursor") or None,
                    limit=_default(int_param(q.get("limit"), "limit"), 25),
                )
        except queries.InvalidQuery as exc:
            raise HTTPProblem(400, "invalid_parameter", str(exc)) from None
        return json_response(ConversationPage(items=items, next_cursor=cursor))

    def window_hours(channel: str) -> int | None:
        return ctx.inbox.channel(channel).capabilities.reply_window_hours

    async def get_conversation(request: Request, principal: Principal) -> Response:
        """One conversation; on channels with a reply window, when it closes."""
        async with db.read() as session:
            view = await queries.get_conversation(
                session, principal, int(request.path_params["conversation_id"])
            )
            hours = window_hours(view.channel) if view is not None else None
            if view is not None and hours is not None:
                closes_at = await queries.reply_window_closes_at(
                    session, conversation_id=view.id, opened_at=view.created_at, hours=hours
                )
                view = view.model_copy(update={"reply_window_closes_at": closes_at})
        if view is None:
            raise _not_found("conversation")
        return json_response(view)

    async def list_messages(request: Request, principal: Principal) -> Response:
        """A conversation's newest messages, oldest first; `before` pages back in time."""
        q = request.query_params
        try:
            async with db.read() as session:
                page = await queries.list_messages(
                    session, principal, int(request.path_params["conversation_id"]),
                    before=q.get("before") or None,
                    limit=_default(int_param(q.get("limit"), "limit"), 50),
                )
        except queries.InvalidQuery as exc:
            raise HTTPProblem(400, "invalid_parameter", str(exc)) from None
        if page is None:
            raise _not_found("conversation")
        return json_response(MessagePage(items=page[0], older_cursor=page[1]))

    async def post_message(request: Request, principal: Principal) -> Response:
        """Reply on the customer's channel, or leave an internal note."""
        body = await parse_json(request, ReplyRequest)
        view = await _act(replies.reply(
            ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
            text=body.text, kind=body.kind, idempotency_key=body.idempotency_key,
            template=body.template, template_variables=body.template_variables,
            attachment_ids=body.attachment_ids, mention_ids=body.mention_ids,
            after_message_id=body.after_message_id, force=body.force, cc=body.cc,
        ))
        return json_response(view, status=201)

    async def post_assignment(request: Request, principal: Principal) -> Response:
        """Assign the conversation to an agent of its inbox, or unassign it (null)."""
        body = await parse_json(request, AssignRequest)
        view = await _act(assign_actions.assign(
            ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
            target=assign_actions.Target(body.assignee_id, body.team_id,
                                         change_team="team_id" in body.model_fields_set),
        ))
        return json_response(view)

    async def post_status(request: Request, principal: Principal) -> Response:
        """Resolve, reopen, snooze until a time, or set pending."""
        body = await parse_json(request, StatusRequest)
        view = await _act(actions.set_status(
            ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
            status=body.status, snoozed_until=body.snoozed_until,
        ))
        return json_response(view)

    async def post_read(request: Request, principal: Principal) -> Response:
        """Mark the conversation as read."""
        view = await _act(actions.mark_read(
            ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"])
        ))
        return json_response(view)

    async def post_typing(request: Request, principal: Principal) -> Response:
        """Say you are typing a reply or a note (or stopped); shown live to others."""
        body = await parse_json(request, TypingRequest)
        await _act(actions.signal_typing(
            ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
            mode=body.mode, typing=body.typing,
        ))
        return Response(status_code=204)

    async def get_attachment(request: Request, principal: Principal) -> Response:
        """Download an attachment of an inbox you may see."""
        async with db.read() as session:
            row = await load_attachment(session, principal, request.path_params["attachment_id"])
        if row is None:
            raise _not_found("attachment")
        return attachment_response(row)

    async def quarantine(request: Request, principal: Principal) -> Response:
        """Messages a channel received but could not parse, with the error (admins only)."""
        if not principal.is_admin:
            raise HTTPProblem(403, "forbidden", "only admins see quarantined messages")
        async with db.read() as session:
            rows = await list_quarantined(session)
            views = [QuarantinedView(id=r.id or 0, inbox_id=r.inbox_id, reason=r.reason,
                                     size=len(r.raw), created_at=r.created_at) for r in rows]
        return json_response(views)

    async def quarantined_raw(request: Request, principal: Principal) -> Response:
        """The raw bytes of a quarantined message, as a download (admins only)."""
        if not principal.is_admin:
            raise HTTPProblem(403, "forbidden", "only admins see quarantined messages")
        async with db.read() as session:
            row = await session.get(QuarantinedMessage, int(request.path_params["item_id"]))
        if row is None:
            raise _not_found("quarantined message")
        return Response(row.raw, media_type="application/octet-stream", headers={
            "Content-Disposition": f"attachment; filename=quarantined-{row.id}.eml",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        })

    conv = "/api/v1/conversations/{conversation_id:int}"
    table: list[tuple[Doc, Any]] = [
        (Doc("POST", "/api/v1/auth/login", "Log in", LoginRequest, LoginResponse, auth=False,
             extra_responses={401: "Wrong email or password, or two-factor code needed/wrong",
                              429: "Too many failed logins; see Retry-After"}), login),
        (Doc("POST", "/api/v1/auth/logout", "Log out", status=204), authenticated(ctx, logout)),
        (Doc("GET", "/api/v1/me", "The logged-in agent", response=AgentView),
         authenticated(ctx, me)),
        (Doc("PUT", "/api/v1/me/availability", "Set availability", AvailabilityRequest,
             AgentView), authenticated(ctx, set_availability)),
        (Doc("POST", "/api/v1/me/password", "Change your password (ends your other sessions)",
             PasswordRequest, status=204), authenticated(ctx, set_password)),
        (Doc("GET", "/api/v1/agents", "Agents who share an inbox with you",
             response=ColleagueView, many=True,
             query=(("inbox_id", "only those who may see this inbox (whom a note may "
                                 "mention)"),)), authenticated(ctx, agents)),
        (Doc("GET", "/api/v1/inboxes", "Your inboxes", response=InboxView, many=True),
         authenticated(ctx, inboxes)),
        (Doc("POST", "/api/v1/inboxes", "Connect an inbox (admin)", CreateInboxRequest,
             InboxView, status=201), authenticated(ctx, add_inbox)),
        (Doc("PUT", "/api/v1/inboxes/{inbox_id:int}/members", "Set an inbox's members (admin)",
             MembersRequest, status=204), authenticated(ctx, put_members)),
        (Doc("GET", "/api/v1/conversations", "List conversations", response=ConversationPage,
             query=(("inbox_id", "only this inbox"),
                    ("status", "comma-separated: open, pending, snoozed, resolved"),
                    ("assignee", "'me', 'none' or an agent id"),
                    ("contact_id", "only this contact's"),
                    ("label", "only those with this label (its name)"),
                    ("team_id", "only this team's"),
                    ("priority", "none, low, medium, high or urgent"),
                    ("waiting", "1: only the queue (waiting for an agent); 0: none of it"),
                    ("cursor", "next_cursor of the previous page"),
                    ("limit", "1-100, default 25"))),
         authenticated(ctx, list_conversations)),
        (Doc("GET", conv, "Get a conversation", response=ConversationView),
         authenticated(ctx, get_conversation)),
        (Doc("GET", conv + "/messages", "List a conversation's messages", response=MessagePage,
             query=(("before", "older_cursor of the previous page"), ("limit", "1-100"))),
         authenticated(ctx, list_messages)),
        (Doc("POST", conv + "/messages", "Reply or add a note", ReplyRequest, MessageView,
             status=201, extra_responses={409: "Another agent replied meanwhile"}),
         authenticated(ctx, post_message)),
        (Doc("POST", conv + "/assignment", "Assign to an agent or a team, or unassign",
             AssignRequest,
             ConversationView), authenticated(ctx, post_assignment)),
        (Doc("POST", conv + "/status", "Change status", StatusRequest, ConversationView),
         authenticated(ctx, post_status)),
        (Doc("POST", conv + "/read", "Mark as read", response=ConversationView),
         authenticated(ctx, post_read)),
        (Doc("POST", conv + "/typing", "Signal typing", TypingRequest, status=204),
         authenticated(ctx, post_typing)),
        (Doc("GET", "/api/v1/attachments/{attachment_id:str}", "Download an attachment"),
         authenticated(ctx, get_attachment)),
        (Doc("GET", "/api/v1/quarantine", "Messages kept aside unparsed (admin)",
             response=QuarantinedView, many=True), authenticated(ctx, quarantine)),
        (Doc("GET", "/api/v1/quarantine/{item_id:int}/raw", "Download one (admin)"),
         authenticated(ctx, quarantined_raw)),
    ]
    routes = [Route(doc.path, endpoint, methods=[doc.method]) for doc, endpoint in table]
    return routes, [doc for doc, _ in table]


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _flag(value: str | None, name: str) -> bool | None:
    """An optional 1/0 (true/false) query parameter; 400 when it is something else."""
    if not value:
        return None
    if value not in ("1", "0", "true", "false"):
        raise HTTPProblem(400, "invalid_parameter", f"{name} must be 1 or 0")
    return value in ("1", "true")


async def _act(action: Any) -> Any:
    try:
        return await action
    except errors.NotFound as exc:
        raise HTTPProblem(404, "not_found", str(exc)) from None
    except errors.WindowClosed as exc:
        raise HTTPProblem(422, "reply_window_closed", str(exc)) from None
    except errors.Refused as exc:
        raise HTTPProblem(422, "refused", str(exc)) from None
    except errors.Forbidden as exc:
        raise HTTPProblem(403, "forbidden", str(exc)) from None
    except errors.Collision as exc:
        raise HTTPProblem(409, "conflict", str(exc)) from None


__all__ = ["JSONResponse", "api_routes"]
