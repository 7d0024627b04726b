"""Conversations and their messages: list, read, reply, assign, status, typing, viewers,
labels, priority, merge."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.requests import Request
from starlette.responses import Response

from hub.events import ConversationView, MessageView
from hub.types import RowId
from inbox import actions, assign_actions, labels, queries, replies, viewers
from inbox.agents import Principal
from inbox.conversation_moves import merge_conversations
from web.context import WebContext, web_context
from web.directory import DirectoryUnavailable
from web.http import (
    HTTPProblem,
    Operation,
    RequestModel,
    act,
    authenticated,
    int_param,
    json_response,
    not_found,
    parse_json,
    path_id,
)
from web.openapi import Doc


class ConversationPage(BaseModel):
    items: list[ConversationView]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[MessageView]
    older_cursor: str | None


class ReplyRequest(RequestModel):
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
    mention_ids: list[RowId] = Field(default_factory=list, max_length=20)
    # Collision check: the newest message the agent saw; a reply by someone else after it
    # (in the last 10 minutes) answers 409 unless `force`. Null: no check.
    after_message_id: RowId | None = None
    force: bool = False
    # Email: the addresses to copy; left out, the conversation's other participants are
    # (reply-all); an empty list copies nobody.
    cc: list[str] | None = Field(default=None, max_length=replies.MAX_CC)


class AssignRequest(RequestModel):
    # An agent, or null to unassign; left out with a team_id: the team's policy picks one.
    assignee_id: RowId | None = None
    # A team working on the conversation's inbox (leads and admins); null: no team.
    team_id: RowId | None = None


class StatusRequest(RequestModel):
    status: Literal["open", "pending", "snoozed", "resolved"]
    snoozed_until: datetime | None = None


class MuteRequest(RequestModel):
    # true: resolve it, and the customer's new messages do not reopen it; false: unmute.
    muted: StrictBool


class TypingRequest(RequestModel):
    mode: Literal["reply", "note"] = "reply"
    typing: bool = True


CONV = "/api/v1/conversations/{conversation_id:id}"


async def list_conversations(request: Request, principal: Principal) -> Response:
    """Conversations you may see, newest activity first, a page at a time."""
    ctx = web_context(request)
    db = ctx.inbox.db
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
            sla=q.get("sla") or None,
            sort=q.get("sort") or "activity",
        )
        async with db.read() as session:
            items, cursor = await queries.list_conversations(
                session, principal, filters, cursor=q.get("cursor") or None,
                limit=_default(int_param(q.get("limit"), "limit"), 25),
            )
    except queries.InvalidQuery as exc:
        raise HTTPProblem(400, "invalid_parameter", str(exc)) from None
    return json_response(ConversationPage(items=items, next_cursor=cursor))


async def window_hours(ctx: WebContext, channel: str, inbox_id: int) -> int | None:
    """How long after the customer's last message free text may go out on this inbox: the
    channel's window, or its longer one where the inbox switched that on."""
    can = ctx.inbox.channel(channel).capabilities
    if can.extended_window is None:
        return can.reply_window_hours
    try:
        found = await ctx.directory.get(inbox_id)
    except DirectoryUnavailable:
        found = None
    return can.window_hours(found.settings if found is not None else {})


async def get_conversation(request: Request, principal: Principal) -> Response:
    """One conversation; on channels with a reply window, when it closes."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        view = await queries.get_conversation(
            session, principal, int(request.path_params["conversation_id"])
        )
        hours = await window_hours(ctx, view.channel, view.inbox_id) \
            if view is not None else None
        if view is not None and hours is not None:
            closes_at = await queries.reply_window_closes_at(
                session, conversation_id=view.id, opened_at=view.created_at, hours=hours
            )
            view = view.model_copy(update={"reply_window_closes_at": closes_at})
    if view is None:
        raise not_found("conversation")
    return json_response(view)


async def list_messages(request: Request, principal: Principal) -> Response:
    """A conversation's newest messages, oldest first; `before` pages back in time."""
    ctx = web_context(request)
    db = ctx.inbox.db
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
        raise not_found("conversation")
    return json_response(MessagePage(items=page[0], older_cursor=page[1]))


async def post_message(request: Request, principal: Principal) -> Response:
    """Reply on the customer's channel, or leave an internal note."""
    ctx = web_context(request)
    body = await parse_json(request, ReplyRequest)
    view = await act(replies.reply(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
        text=body.text, kind=body.kind, idempotency_key=body.idempotency_key,
        template=body.template, template_variables=body.template_variables,
        attachment_ids=body.attachment_ids, mention_ids=body.mention_ids,
        after_message_id=body.after_message_id, force=body.force, cc=body.cc,
    ))
    return json_response(view, status=201)


async def post_assignment(request: Request, principal: Principal) -> Response:
    """Assign the conversation to an agent of its inbox, or unassign it (null)."""
    ctx = web_context(request)
    body = await parse_json(request, AssignRequest)
    view = await act(assign_actions.assign(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
        target=assign_actions.Target(body.assignee_id, body.team_id,
                                     change_team="team_id" in body.model_fields_set),
    ))
    return json_response(view)


async def post_status(request: Request, principal: Principal) -> Response:
    """Resolve, reopen, snooze until a time, or set pending."""
    ctx = web_context(request)
    body = await parse_json(request, StatusRequest)
    view = await act(actions.set_status(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
        status=body.status, snoozed_until=body.snoozed_until,
    ))
    return json_response(view)


async def post_mute(request: Request, principal: Principal) -> Response:
    """Mute the conversation (resolved; new messages do not reopen it), or unmute it."""
    ctx = web_context(request)
    body = await parse_json(request, MuteRequest)
    view = await act(actions.set_muted(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
        muted=body.muted))
    return json_response(view)


async def post_read(request: Request, principal: Principal) -> Response:
    """Mark the conversation as read."""
    ctx = web_context(request)
    view = await act(actions.mark_read(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"])
    ))
    return json_response(view)


async def post_typing(request: Request, principal: Principal) -> Response:
    """Say you are typing a reply or a note (or stopped); shown live to others."""
    ctx = web_context(request)
    body = await parse_json(request, TypingRequest)
    await act(actions.signal_typing(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
        mode=body.mode, typing=body.typing,
    ))
    return Response(status_code=204)


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _flag(value: str | None, name: str) -> bool | None:
    """An optional 1/0 (true/false) query parameter; 400 when it is something else."""
    if not value:
        return None
    if value not in ("1", "0", "true", "false"):
        raise HTTPProblem(400, "invalid_parameter", f"{name} must be 1 or 0")
    return value in ("1", "true")


class ViewingRequest(RequestModel):
    viewing: bool = True


class ViewerView(BaseModel):
    agent_id: int
    name: str
    since: datetime


class ConversationLabelsRequest(RequestModel):
    labels: list[str] = Field(max_length=labels.MAX_LABELS)


class PriorityRequest(RequestModel):
    priority: Literal["none", "low", "medium", "high", "urgent"]


async def post_viewing(request: Request, principal: Principal) -> Response:
    """Say you have the conversation open (repeat every 20 s) or left it."""
    ctx = web_context(request)
    body = await parse_json(request, ViewingRequest)
    await act(viewers.set_viewing(ctx.inbox, principal,
                                   conversation_id=path_id(request, "conversation_id"),
                                   viewing=body.viewing))
    return Response(status_code=204)


async def get_viewers(request: Request, principal: Principal) -> Response:
    """Agents who have the conversation open (seen in the last 60 seconds)."""
    ctx = web_context(request)
    found = await act(viewers.list_viewers(ctx.inbox, principal,
                                            conversation_id=path_id(request, "conversation_id")))
    return json_response([ViewerView(agent_id=v.agent_id, name=v.name, since=v.since)
                          for v in found])


async def put_conversation_labels(request: Request, principal: Principal) -> Response:
    """Set exactly which labels (by name) a conversation has."""
    ctx = web_context(request)
    body = await parse_json(request, ConversationLabelsRequest)
    view = await act(labels.set_conversation_labels(
        ctx.inbox, principal, conversation_id=path_id(request, "conversation_id"),
        names=body.labels))
    return json_response(view)


async def put_priority(request: Request, principal: Principal) -> Response:
    """Set a conversation's priority."""
    ctx = web_context(request)
    body = await parse_json(request, PriorityRequest)
    view = await act(labels.set_priority(
        ctx.inbox, principal, conversation_id=path_id(request, "conversation_id"),
        priority=body.priority))
    return json_response(view)


class MergeConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # The conversation whose messages move into this one (same inbox, same customer).
    other_conversation_id: RowId


async def merge(request: Request, principal: Principal) -> Response:
    """Merge another conversation of the same customer into this one."""
    ctx = web_context(request)
    body = await parse_json(request, MergeConversationRequest)
    view = await act(merge_conversations(
        ctx.inbox, principal, conversation_id=int(request.path_params["conversation_id"]),
        other_id=body.other_conversation_id))
    return json_response(view)


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/conversations", "List conversations", response=ConversationPage,
         query=(("inbox_id", "only this inbox"),
            ("status", "comma-separated: open, pending, snoozed, resolved"),
            ("assignee", "'me', 'none' or an agent id"),
            ("contact_id", "only this contact's"),
            ("label", "only those with this label (its name)"),
            ("team_id", "only this team's"),
            ("priority", "none, low, medium, high or urgent"),
            ("waiting", "1: only the queue (waiting for an agent); 0: none of it"),
            ("sla", "at_risk, breached, or running (an SLA target counts)"),
            ("sort", "activity (newest first, the default) or sla_due (soonest due first)"),
            ("cursor", "next_cursor of the previous page"),
            ("limit", "1-100, default 25"))),
     authenticated(list_conversations)),
    (Doc("GET", CONV, "Get a conversation", response=ConversationView),
     authenticated(get_conversation)),
    (Doc("GET", CONV + "/messages", "List a conversation's messages", response=MessagePage,
         query=(("before", "older_cursor of the previous page"), ("limit", "1-100"))),
     authenticated(list_messages)),
    (Doc("POST", CONV + "/messages", "Reply or add a note", ReplyRequest, MessageView,
         status=201, extra_responses={409: "Another agent replied meanwhile"}),
     authenticated(post_message)),
    (Doc("POST", CONV + "/assignment", "Assign to an agent or a team, or unassign",
         AssignRequest,
         ConversationView), authenticated(post_assignment)),
    (Doc("POST", CONV + "/status", "Change status", StatusRequest, ConversationView),
     authenticated(post_status)),
    (Doc("POST", CONV + "/mute", "Mute or unmute (muted: resolved, new messages do not "
         "reopen it)", MuteRequest, ConversationView), authenticated(post_mute)),
    (Doc("POST", CONV + "/read", "Mark as read", response=ConversationView),
     authenticated(post_read)),
    (Doc("POST", CONV + "/typing", "Signal typing", TypingRequest, status=204),
     authenticated(post_typing)),
    (Doc("POST", CONV + "/viewing", "Say you are viewing a conversation (or left)",
         ViewingRequest, status=204), authenticated(post_viewing)),
    (Doc("GET", CONV + "/viewers", "Who is viewing a conversation", response=ViewerView,
         many=True), authenticated(get_viewers)),
    (Doc("PUT", CONV + "/labels", "Set a conversation's labels", ConversationLabelsRequest,
         ConversationView), authenticated(put_conversation_labels)),
    (Doc("PUT", CONV + "/priority", "Set a conversation's priority", PriorityRequest,
         ConversationView), authenticated(put_priority)),
    (Doc("POST", "/api/v1/conversations/{conversation_id:id}/merge",
         "Merge another conversation into this one", MergeConversationRequest,
         ConversationView), authenticated(merge)),
]
