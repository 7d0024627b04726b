"""CRM connections (admins), a contact's CRM cards (agents who see the contact), and the
CRMs' webhooks (`POST /crm/{kind}/{connection_id}/webhooks`, verified by the connector)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_sync import connections
from crm_sync.base import BadWebhook, Card, CrmError
from inbox.agents import Principal
from web.context import web_context
from web.http import (
    ADMIN_ONLY,
    HTTPProblem,
    Operation,
    RequestModel,
    act,
    admin_only,
    authenticated,
    int_param,
    json_response,
    parse_json,
    read_body,
    unavailable,
)
from web.openapi import Doc
from web.webhooks import within_limit

if TYPE_CHECKING:
    from crm_sync.connections import ConnectionState
    from crm_sync.models import CrmLogEntry

log = logging.getLogger("switchboard.crm")


class SpecView(BaseModel):
    name: str
    label: str
    secret: bool
    required: bool
    default: str
    help: str


class ConnectorView(BaseModel):
    kind: str
    name: str
    settings: list[SpecView]
    # Where the CRM sends its webhooks for a connection: this, with the connection's id.
    webhook_path: str


class ConnectionView(BaseModel):
    id: int
    kind: str
    name: str
    status: str  # connected | broken
    status_reason: str | None
    status_changed_at: datetime
    created_at: datetime
    # Jobs waiting (while broken, everything since it broke), contacts linked to records.
    pending: int
    linked: int
    settings: dict[str, str]  # never the secrets
    secrets_set: list[str]
    webhook_url: str


class ConnectRequest(RequestModel):
    kind: str = Field(min_length=1, max_length=40)
    name: str = Field(default="", max_length=200)
    settings: dict[str, str] = Field(default_factory=dict, max_length=20)
    # Push every existing contact once connected (a backfill).
    sync_existing: bool = True


class ReconnectRequest(RequestModel):
    name: str | None = Field(default=None, max_length=200)
    # Only what changes; a secret left out or empty keeps its stored value.
    settings: dict[str, str] = Field(default_factory=dict, max_length=20)


class QueuedView(BaseModel):
    queued: int


class LogEntryView(BaseModel):
    id: int
    at: datetime
    direction: str
    action: str
    contact_id: int | None
    remote_id: str | None
    outcome: str
    detail: str


class CardView(BaseModel):
    crm: str
    remote_id: str | None
    link: str | None
    fields: list[tuple[str, str]]
    deals: list[tuple[str, str]]
    # Set when the CRM could not be asked (the connection is broken, it did not answer).
    problem: str | None = None


def connection_view(request: Request, state: ConnectionState) -> ConnectionView:
    """A connection as the API and the admin page show it."""
    row = state.connection
    assert row.id is not None
    base = web_context(request).settings.base_url
    return ConnectionView(
        id=row.id, kind=row.kind, name=row.name, status=row.status,
        status_reason=row.status_reason, status_changed_at=row.status_changed_at,
        created_at=row.created_at, pending=state.pending, linked=state.linked,
        settings={k: str(v) for k, v in state.settings.items()},
        secrets_set=state.secrets_set, webhook_url=f"{base}/crm/{row.kind}/{row.id}/webhooks")


def log_view(row: CrmLogEntry) -> LogEntryView:
    """A line of the sync log."""
    assert row.id is not None
    return LogEntryView(id=row.id, at=row.at, direction=row.direction, action=row.action,
                        contact_id=row.contact_id, remote_id=row.remote_id,
                        outcome=row.outcome, detail=row.detail)


def _id(request: Request) -> int:
    return int(request.path_params["connection_id"])


async def get_connectors(request: Request, principal: Principal) -> Response:
    """The CRMs Switchboard connects to, and the settings each asks for (admins)."""
    admin_only(principal, "manage CRM connections")
    return json_response([
        ConnectorView(kind=c.kind, name=c.display_name, webhook_path=f"/crm/{c.kind}/",
                      settings=[SpecView(name=s.name, label=s.label, secret=s.secret,
                                         required=s.required, default=s.default, help=s.help)
                                for s in c.specs])
        for c in web_context(request).crm.values()])


async def get_connections(request: Request, principal: Principal) -> Response:
    """Every CRM connection, with its state and backlog (admins)."""
    ctx = web_context(request)
    async with ctx.inbox.db.read() as session:
        rows = await act(connections.list_connections(session, principal, ctx.crm))
    return json_response([connection_view(request, row) for row in rows])


async def post_connection(request: Request, principal: Principal) -> Response:
    """Connect a CRM: the credentials are checked with it first (422 with its answer)."""
    ctx = web_context(request)
    body = await parse_json(request, ConnectRequest)
    row = await act(connections.connect(ctx.inbox, principal, ctx.crm, kind=body.kind,
                                        name=body.name, settings=body.settings,
                                        sync_existing=body.sync_existing))
    assert row.id is not None
    async with ctx.inbox.db.read() as session:
        state = await act(connections.get_connection(session, principal, row.id, ctx.crm))
    return json_response(connection_view(request, state), status=201)


async def get_connection(request: Request, principal: Principal) -> Response:
    """One CRM connection (admins)."""
    ctx = web_context(request)
    async with ctx.inbox.db.read() as session:
        state = await act(connections.get_connection(session, principal, _id(request),
                                                     ctx.crm))
    return json_response(connection_view(request, state))


async def patch_connection(request: Request, principal: Principal) -> Response:
    """New credentials or a new name; a broken connection resumes where it stopped."""
    ctx = web_context(request)
    body = await parse_json(request, ReconnectRequest)
    await act(connections.reconnect(ctx.inbox, principal, ctx.crm, _id(request),
                                    settings=body.settings, name=body.name))
    async with ctx.inbox.db.read() as session:
        state = await act(connections.get_connection(session, principal, _id(request),
                                                     ctx.crm))
    return json_response(connection_view(request, state))


async def delete_connection(request: Request, principal: Principal) -> Response:
    """Remove a CRM connection (the CRM keeps its records) (admins)."""
    await act(connections.disconnect(web_context(request).inbox, principal, _id(request)))
    return Response(status_code=204)


async def post_backfill(request: Request, principal: Principal) -> Response:
    """Push every contact again (admins)."""
    count = await act(connections.queue_everything(web_context(request).inbox, principal,
                                                   _id(request)))
    return json_response(QueuedView(queued=count), status=202)


async def get_log(request: Request, principal: Principal) -> Response:
    """The connection's sync log, newest first (`before`, `limit` at most 500)."""
    ctx = web_context(request)
    limit = min(int_param(request.query_params.get("limit"), "limit") or 100, 500)
    async with ctx.inbox.db.read() as session:
        rows = await act(connections.sync_log(
            session, principal, _id(request), limit=limit,
            before=int_param(request.query_params.get("before"), "before")))
    return json_response([log_view(row) for row in rows])


async def get_contact_cards(request: Request, principal: Principal) -> Response:
    """What each connected CRM knows of the contact: owner, stage, company, deals, a link."""
    ctx = web_context(request)
    found = await act(ctx.cards.cards(ctx.inbox, principal, ctx.crm,
                                      int(request.path_params["contact_id"])))
    return json_response([
        CardView(crm=c.crm, remote_id=c.remote_id, link=c.link, fields=c.fields, deals=c.deals)
        if isinstance(c, Card) else
        CardView(crm=c[0], remote_id=None, link=None, fields=[], deals=[], problem=c[1])
        for c in found])


# -- the CRMs' webhooks ----------------------------------------------------------------


async def crm_webhook(request: Request) -> Response:
    """A CRM's webhook: verified by its connector (401 otherwise), then applied."""
    ctx = web_context(request)
    kind = request.path_params["kind"]
    connection_id = int(request.path_params["connection_id"])
    within_limit(ctx, f"crm-{connection_id}", "crm")
    try:
        connector, account = await connections.webhook_account(ctx.inbox, ctx.crm, kind,
                                                               connection_id)
    except LookupError:
        raise HTTPProblem(404, "not_found", "no such CRM connection") from None
    body = await read_body(request, ctx.settings.webhook_max_bytes)
    url = ctx.settings.base_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    try:
        changes = connector.read_webhook(account, request.method, url, request.headers, body)
    except BadWebhook as exc:
        log.warning("CRM webhook refused: connection=%s reason=%s", connection_id, exc)
        return JSONResponse({"error": {"code": "unverified", "message": str(exc)}},
                            status_code=401)
    try:
        applied = await connections.apply_changes(ctx.inbox, connection_id, changes)
    except CrmError as exc:
        raise unavailable(f"the CRM sync ({exc})") from None
    return JSONResponse({"received": len(changes), "applied": applied})


ROUTES = [Route("/crm/{kind:str}/{connection_id:id}/webhooks", crm_webhook, methods=["POST"])]

_BASE = "/api/v1/crm/connections"
_ONE = _BASE + "/{connection_id:id}"
OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/crm/connectors", "CRMs and their settings (admin)",
         response=ConnectorView, many=True, extra_responses=ADMIN_ONLY),
     authenticated(get_connectors)),
    (Doc("GET", _BASE, "CRM connections (admin)", response=ConnectionView, many=True,
         extra_responses=ADMIN_ONLY), authenticated(get_connections)),
    (Doc("POST", _BASE, "Connect a CRM (admin)", ConnectRequest, ConnectionView, status=201,
         extra_responses=ADMIN_ONLY), authenticated(post_connection)),
    (Doc("GET", _ONE, "A CRM connection (admin)", response=ConnectionView,
         extra_responses=ADMIN_ONLY), authenticated(get_connection)),
    (Doc("PATCH", _ONE, "Reconnect or rename a CRM connection (admin)", ReconnectRequest,
         ConnectionView, extra_responses=ADMIN_ONLY), authenticated(patch_connection)),
    (Doc("DELETE", _ONE, "Remove a CRM connection (admin)", status=204,
         extra_responses=ADMIN_ONLY), authenticated(delete_connection)),
    (Doc("POST", _ONE + "/backfill", "Push every contact to the CRM again (admin)",
         response=QueuedView, status=202, extra_responses=ADMIN_ONLY),
     authenticated(post_backfill)),
    (Doc("GET", _ONE + "/log", "A CRM connection's sync log (admin)", response=LogEntryView,
         many=True, extra_responses=ADMIN_ONLY,
         query=(("before", "the id of the last line of the previous page"),
                ("limit", "at most 500 (default 100)"))), authenticated(get_log)),
    (Doc("GET", "/api/v1/contacts/{contact_id:id}/crm", "A contact's CRM cards",
         response=CardView, many=True), authenticated(get_contact_cards)),
]
