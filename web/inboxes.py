"""Inboxes: list, connect, members, the poller's import progress, and what their channels kept
aside (quarantine)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from channels.base import (
    ChannelAdapter,
    ConnectFailed,
    Connects,
    TestsConnection,
    secret_names,
    settings_for_new_inbox,
    validate_settings,
)
from hub.types import RowId
from inbox.agents import Principal
from inbox.assignment import drain_queue
from inbox.channel_state import FolderSync, list_quarantined, quarantined_message, sync_status
from inbox.inboxes import (
    InboxError,
    create_inbox,
    discard_new_inbox,
    disconnect_inbox,
    inbox_by_id,
    inbox_settings,
    member_ids,
    set_members,
    update_inbox,
    visible_inboxes,
)
from inbox.queries import is_row_id
from web.context import WebContext, web_context
from web.http import (
    HTTPProblem,
    Operation,
    RequestModel,
    act,
    authenticated,
    json_response,
    not_found,
    parse_json,
    path_id,
)
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what inbox/ returns; web/ never queries
    from inbox.models import Inbox

log = logging.getLogger("switchboard.inboxes")
PROVIDER_UNDONE = "the provider's set-up was removed"


class InboxView(BaseModel):
    id: int
    name: str
    channel: str
    auto_assign: bool
    assignment_policy: str = "round_robin"
    requeue_on_offline: bool = False
    # Set once an admin deleted the inbox: nothing comes in or goes out, its conversations
    # stay readable.
    disconnected_at: datetime | None = None


class DeletedInboxView(InboxView):
    # What the channel's provider said when its set-up was undone (a Telegram webhook
    # removed...); None when the channel has nothing to undo.
    provider: str | None = None


class ConnectionTest(BaseModel):
    ok: bool
    detail: str


class TestSettingsRequest(RequestModel):
    settings: dict[str, Any] = Field(default_factory=dict)


class CreateInboxRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=40)
    settings: dict[str, Any] = Field(default_factory=dict)
    auto_assign: bool = True


class UpdateInboxRequest(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    # Settings to change; a setting given as null or "" is removed (optional ones only).
    # Secrets left out keep their value.
    settings: dict[str, Any] | None = None


class SettingView(BaseModel):
    """One setting of a channel, as a form asks for it; a secret's value is never shown."""

    name: str
    description: str
    required: bool
    secret: bool
    form: str
    generated: bool
    value: Any = None
    is_set: bool = False


class ChannelView(BaseModel):
    kind: str
    display_name: str
    settings: list[SettingView]
    can_test: bool = False  # its provider can be asked whether settings work


class InboxDetail(InboxView):
    settings: list[SettingView]
    member_ids: list[int]


class MembersRequest(RequestModel):
    agent_ids: list[RowId] = Field(max_length=10_000)


class QuarantinedView(BaseModel):
    id: int
    inbox_id: int
    reason: str
    size: int
    created_at: datetime


def inbox_view(inbox: Inbox) -> InboxView:
    assert inbox.id is not None
    return InboxView(id=inbox.id, name=inbox.name, channel=inbox.channel,
                     auto_assign=inbox.auto_assign, assignment_policy=inbox.assignment_policy,
                     requeue_on_offline=inbox.requeue_on_offline,
                     disconnected_at=inbox.disconnected_at)


def channel_adapter(ctx: WebContext, channel: str) -> ChannelAdapter:
    """The adapter of a channel kind; 422 naming the known ones."""
    adapter = ctx.channels.get(channel)
    if adapter is None:
        known = ", ".join(sorted(ctx.channels))
        raise HTTPProblem(422, "invalid_field", f"channel: unknown; use one of {known}")
    return adapter


def checked_settings(
    adapter: ChannelAdapter, given: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings an inbox will have: a new inbox's generated defaults, or its current
    settings, with what was given on top (None or "" removes one); 422 naming each problem."""
    merged = dict(current) if current is not None else settings_for_new_inbox(adapter, {})
    for name, value in given.items():
        if value is None or value == "":
            merged.pop(name, None)
        else:
            merged[name] = value
    problems = validate_settings(adapter, merged)
    if problems:
        raise HTTPProblem(422, "invalid_field", "settings." + "; settings.".join(problems))
    return merged


def settings_view(adapter: ChannelAdapter, values: Mapping[str, Any] | None) -> list[SettingView]:
    """A channel's settings for a form: values of plain ones, only whether secrets are set."""
    generated = set(settings_for_new_inbox(adapter, {}))
    views = []
    for spec in adapter.settings:
        value = (values or {}).get(spec.name)
        views.append(SettingView(
            name=spec.name, description=spec.description, required=spec.required,
            secret=spec.secret, form=spec.form,
            generated=spec.name in generated and spec.name not in ("greeting", "accent_color"),
            value=None if spec.secret else value, is_set=value not in (None, "")))
    return views


def channel_views(ctx: WebContext) -> list[ChannelView]:
    """Every channel this installation runs, with the settings a new inbox of it asks for."""
    return [ChannelView(kind=kind, display_name=adapter.display_name,
                        settings=settings_view(adapter, None),
                        can_test=isinstance(adapter, TestsConnection))
            for kind, adapter in sorted(ctx.channels.items())]


async def channels(request: Request, principal: Principal) -> Response:
    """The channels an inbox can be connected to, and their settings (admin)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins connect inboxes")
    return json_response(channel_views(web_context(request)))


async def inbox_detail(ctx: WebContext, inbox_id: int) -> InboxDetail:
    """An inbox with its settings (secrets masked) and members; 404 when there is none."""
    async with ctx.inbox.db.read() as session:
        inbox = await inbox_by_id(session, inbox_id)
        if inbox is None:
            raise not_found("inbox")
        members = await member_ids(session, inbox_id)
    adapter = ctx.channels.get(inbox.channel)
    settings = settings_view(adapter, inbox.settings) if adapter is not None else []
    return InboxDetail(**inbox_view(inbox).model_dump(), settings=settings,
                       member_ids=sorted(members))


async def get_inbox(request: Request, principal: Principal) -> Response:
    """One inbox with its settings, secrets masked, and its members (admin)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see an inbox's settings")
    return json_response(await inbox_detail(web_context(request), path_id(request, "inbox_id")))


async def change_inbox(
    ctx: WebContext, principal: Principal, inbox_id: int, *, name: str | None,
    settings: Mapping[str, Any] | None,
) -> Inbox:
    """Rename an inbox or change some of its settings, checked by its channel (admins)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins change inboxes")
    merged = None
    if settings is not None:
        async with ctx.inbox.db.read() as session:
            found = await inbox_settings(session, inbox_id, ctx.inbox.secrets)
        if found is None:
            raise not_found("inbox")
        adapter = channel_adapter(ctx, found[0])
        values = checked_settings(adapter, settings, found[1])
        if isinstance(adapter, Connects) and values != found[1]:
            # The provider is set up again with the new settings first: what it refuses
            # is not stored.
            values.update(await _connected(adapter, inbox_id, values))
        merged = ctx.inbox.secrets.seal_settings(values, secret_names(adapter.settings))
    inbox = await act(update_inbox(ctx.inbox, principal, inbox_id, name=name, settings=merged))
    ctx.directory.invalidate()  # this process at once; the others on the inbox.changed event
    return inbox


async def patch_inbox(request: Request, principal: Principal) -> Response:
    """Rename an inbox or change its settings; secrets left out keep their value (admin)."""
    body = await parse_json(request, UpdateInboxRequest)
    inbox = await change_inbox(web_context(request), principal, path_id(request, "inbox_id"),
                               name=body.name, settings=body.settings)
    return json_response(inbox_view(inbox))


async def connect_inbox(
    ctx: WebContext, principal: Principal, *, name: str, channel: str,
    settings: Mapping[str, Any], auto_assign: bool = True,
) -> Inbox:
    """Connect a new inbox of a channel, its settings checked by the channel (admins)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins connect inboxes")
    adapter = channel_adapter(ctx, channel)
    values = checked_settings(adapter, settings)
    secret = secret_names(adapter.settings)
    async with ctx.inbox.db.write() as session:
        try:
            inbox = await create_inbox(session, name=name, channel=channel,
                                       settings=ctx.inbox.secrets.seal_settings(values, secret),
                                       auto_assign=auto_assign)
        except InboxError as exc:
            raise HTTPProblem(422, "invalid_field", str(exc)) from None
    assert inbox.id is not None
    if isinstance(adapter, Connects):
        # The provider's set-up needs the inbox's id (its webhook URL); an inbox the
        # provider refuses is removed again, as if it had never been made.
        try:
            extra = await _connected(adapter, inbox.id, values)
        except HTTPProblem:
            await discard_new_inbox(ctx.inbox, inbox.id)
            raise
        if extra:
            inbox = await act(update_inbox(
                ctx.inbox, principal, inbox.id,
                settings=ctx.inbox.secrets.seal_settings({**values, **extra}, secret)))
    ctx.directory.invalidate()
    return inbox


async def _connected(
    adapter: Connects, inbox_id: int, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The provider set up for the inbox (settings it adds); 422 with its reason."""
    try:
        return await adapter.connect(inbox_id, values)
    except ConnectFailed as exc:
        raise HTTPProblem(422, "connect_failed",
                          f"the provider refused to connect this inbox: {exc}") from None


async def delete_inbox(ctx: WebContext, principal: Principal, inbox_id: int) -> DeletedInboxView:
    """Delete an inbox (admins): intake stops, its conversations stay readable, and the
    channel's provider set-up is undone (what the provider answered is in `provider`)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins delete inboxes")
    async with ctx.inbox.db.read() as session:
        before = await inbox_by_id(session, inbox_id)
    if before is None:
        raise not_found("inbox")
    inbox = await act(disconnect_inbox(ctx.inbox, principal, inbox_id))
    ctx.directory.invalidate()  # this process at once; the others on the inbox.changed event
    adapter = ctx.channels.get(before.channel)
    provider = None
    if isinstance(adapter, Connects) and before.disconnected_at is None:
        try:
            await adapter.disconnect(inbox_id, ctx.inbox.secrets.open_settings(before.settings))
            provider = PROVIDER_UNDONE
        except ConnectFailed as exc:
            log.warning("inbox %s deleted, but its provider set-up was not removed: %s",
                        inbox_id, exc)
            provider = f"the provider's set-up could not be removed: {exc}"
    return DeletedInboxView(**inbox_view(inbox).model_dump(), provider=provider)


async def remove_inbox(request: Request, principal: Principal) -> Response:
    """Delete an inbox: intake stops, its conversations stay readable (admin)."""
    view = await delete_inbox(web_context(request), principal, path_id(request, "inbox_id"))
    return json_response(view)


async def connection_test(adapter: ChannelAdapter, values: Mapping[str, Any]) -> ConnectionTest:
    """Ask the channel's provider whether these settings work."""
    if not isinstance(adapter, TestsConnection):
        raise HTTPProblem(422, "invalid_field",
                          f"channel: the {adapter.kind} channel has no connection to test")
    try:
        return ConnectionTest(ok=True, detail=await adapter.test_connection(values))
    except ConnectFailed as exc:
        return ConnectionTest(ok=False, detail=str(exc))


async def test_inbox(ctx: WebContext, principal: Principal, inbox_id: int,
                     settings: Mapping[str, Any] | None = None) -> ConnectionTest:
    """Test an inbox's saved settings, with changes typed but not saved on top (admins)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins test inboxes")
    async with ctx.inbox.db.read() as session:
        found = await inbox_settings(session, inbox_id, ctx.inbox.secrets)
    if found is None:
        raise not_found("inbox")
    adapter = channel_adapter(ctx, found[0])
    return await connection_test(adapter, checked_settings(adapter, settings or {}, found[1]))


async def post_inbox_test(request: Request, principal: Principal) -> Response:
    """Ask the provider whether the inbox's settings work (admin)."""
    body = await parse_json(request, TestSettingsRequest)
    return json_response(await test_inbox(web_context(request), principal,
                                          path_id(request, "inbox_id"), body.settings))


async def test_channel(ctx: WebContext, principal: Principal, channel: str,
                       settings: Mapping[str, Any]) -> ConnectionTest:
    """Ask a channel's provider whether settings work, before connecting (admins)."""
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins connect inboxes")
    adapter = channel_adapter(ctx, channel)
    return await connection_test(adapter, checked_settings(adapter, settings))


async def post_channel_test(request: Request, principal: Principal) -> Response:
    """Ask a channel's provider whether settings work, before connecting an inbox (admin)."""
    body = await parse_json(request, TestSettingsRequest)
    return json_response(await test_channel(web_context(request), principal,
                                            str(request.path_params["channel"]), body.settings))


async def inboxes(request: Request, principal: Principal) -> Response:
    """The inboxes you belong to (all of them for admins)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    async with db.read() as session:
        found = await visible_inboxes(session, principal)
    return json_response([inbox_view(i) for i in found])


async def add_inbox(request: Request, principal: Principal) -> Response:
    """Connect a new inbox (admins only)."""
    ctx = web_context(request)
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins connect inboxes")
    body = await parse_json(request, CreateInboxRequest)
    inbox = await connect_inbox(ctx, principal, name=body.name, channel=body.channel,
                                settings=body.settings, auto_assign=body.auto_assign)
    return json_response(inbox_view(inbox), status=201)


async def put_members(request: Request, principal: Principal) -> Response:
    """Set exactly which agents belong to an inbox (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins change inbox members")
    inbox_id = int(request.path_params["inbox_id"])
    body = await parse_json(request, MembersRequest)
    async with db.write() as session:
        if await inbox_by_id(session, inbox_id) is None:
            raise not_found("inbox")
        try:
            await set_members(session, inbox_id=inbox_id, agent_ids=body.agent_ids)
        except InboxError as exc:
            raise HTTPProblem(422, "invalid_field", str(exc)) from None
    await drain_queue(ctx.inbox)  # new members may take what waits
    return Response(status_code=204)


async def quarantine(request: Request, principal: Principal) -> Response:
    """Messages a channel received but could not parse, with the error (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see quarantined messages")
    async with db.read() as session:
        rows = await list_quarantined(session)
        views = [QuarantinedView(id=r.id or 0, inbox_id=r.inbox_id, reason=r.reason,
                                 size=len(r.raw), created_at=r.created_at) for r in rows]
    return json_response(views)


async def quarantined_raw(request: Request, principal: Principal) -> Response:
    """The raw bytes of a quarantined message, as a download (admins only)."""
    ctx = web_context(request)
    db = ctx.inbox.db
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see quarantined messages")
    async with db.read() as session:
        row = await quarantined_message(session, int(request.path_params["item_id"]))
    if row is None:
        raise not_found("quarantined message")
    return Response(row.raw, media_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename=quarantined-{row.id}.eml",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


class InboxSync(BaseModel):
    """The sources an inbox's poller follows (an email inbox: its IMAP folder)."""

    inbox_id: int
    channel: str
    folders: list[FolderSync]


async def sync(request: Request, principal: Principal) -> Response:
    """Where the inbox's poller stands, and its last import's progress (admin)."""
    ctx = web_context(request)
    if not principal.is_admin:
        raise HTTPProblem(403, "forbidden", "only admins see how an inbox syncs")
    raw = str(request.path_params["inbox_id"])
    if not is_row_id(raw):
        raise HTTPProblem(404, "not_found", "no such inbox")
    async with ctx.inbox.db.read() as session:
        found = await inbox_settings(session, int(raw), ctx.inbox.secrets)
        if found is None:
            raise HTTPProblem(404, "not_found", "no such inbox")
        folders = await sync_status(session, inbox_id=int(raw))
    return json_response(InboxSync(inbox_id=int(raw), channel=found[0], folders=folders))


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/inboxes", "Your inboxes", response=InboxView, many=True),
     authenticated(inboxes)),
    (Doc("POST", "/api/v1/inboxes", "Connect an inbox (admin)", CreateInboxRequest,
         InboxView, status=201), authenticated(add_inbox)),
    (Doc("GET", "/api/v1/channels", "Channels an inbox can connect to, and their settings "
         "(admin)", response=ChannelView, many=True), authenticated(channels)),
    (Doc("GET", "/api/v1/inboxes/{inbox_id:id}", "One inbox, settings masked (admin)",
         response=InboxDetail), authenticated(get_inbox)),
    (Doc("PATCH", "/api/v1/inboxes/{inbox_id:id}", "Rename an inbox or change its settings "
         "(admin)", UpdateInboxRequest, InboxView), authenticated(patch_inbox)),
    (Doc("DELETE", "/api/v1/inboxes/{inbox_id:id}", "Delete an inbox: intake stops, its "
         "conversations stay readable, the provider's set-up is undone (admin)",
         response=DeletedInboxView), authenticated(remove_inbox)),
    (Doc("POST", "/api/v1/inboxes/{inbox_id:id}/test", "Ask the provider whether the "
         "inbox's settings (with unsaved changes on top) work (admin)", TestSettingsRequest,
         ConnectionTest), authenticated(post_inbox_test)),
    (Doc("POST", "/api/v1/channels/{channel:str}/test", "Ask a channel's provider whether "
         "settings work, before connecting (admin)", TestSettingsRequest, ConnectionTest),
     authenticated(post_channel_test)),
    (Doc("PUT", "/api/v1/inboxes/{inbox_id:id}/members", "Set an inbox's members (admin)",
         MembersRequest, status=204), authenticated(put_members)),
    (Doc("GET", "/api/v1/quarantine", "Messages kept aside unparsed (admin)",
         response=QuarantinedView, many=True), authenticated(quarantine)),
    (Doc("GET", "/api/v1/quarantine/{item_id:id}/raw", "Download one (admin)"),
     authenticated(quarantined_raw)),
    (Doc("GET", "/api/v1/inboxes/{inbox_id:id}/sync",
         "How far the inbox's poller has read, and its import's progress (admin)",
         response=InboxSync),
     authenticated(sync)),
]
