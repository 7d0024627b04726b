"""Outbound webhook endpoints (admins): register, change, rotate the secret, read the
delivery log, replay. What is sent and how it is signed: crm_sync/webhooks.py."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from crm_sync import webhooks
from hub.types import utcnow
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
)
from web.openapi import Doc

if TYPE_CHECKING:  # row types of what crm_sync/ returns; web/ never queries
    from crm_sync.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointView(BaseModel):
    id: int
    url: str
    description: str
    # Empty: every event type.
    event_types: list[str]
    enabled: bool
    created_at: datetime
    # How many signing secrets are valid now (2 during a rotation's overlap).
    secrets: int


class EndpointWithSecret(EndpointView):
    # The new signing secret, shown this once (store it where the receiver verifies).
    secret: str


class EndpointRequest(RequestModel):
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(default_factory=list, max_length=50)
    description: str = Field(default="", max_length=200)


class EndpointChange(RequestModel):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None


class DeliveryView(BaseModel):
    id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView]
    # Pass as `before` for the next (older) page; null on the last one.
    next_before: int | None


class AttemptView(BaseModel):
    at: datetime
    status_code: int | None
    latency_ms: int
    response: str
    error: str | None


class DeliveryDetail(DeliveryView):
    payload: str
    tries: list[AttemptView]


class ReplayRequest(RequestModel):
    # Every delivery recorded since this time goes out again.
    since: datetime


class ReplayView(BaseModel):
    replayed: int


class CatalogueEntry(BaseModel):
    type: str
    description: str


def endpoint_view(row: WebhookEndpoint) -> EndpointView:
    """An endpoint as the API and the admin page show it (never its secrets)."""
    assert row.id is not None
    valid = webhooks.valid_secrets(row.secrets, utcnow())
    return EndpointView(id=row.id, url=row.url, description=row.description,
                        event_types=row.event_types, enabled=row.disabled_at is None,
                        created_at=row.created_at, secrets=len(valid))


def delivery_view(row: WebhookDelivery) -> DeliveryView:
    """A delivery as the log shows it."""
    assert row.id is not None
    return DeliveryView(
        id=row.id, event_id=row.event_id, event_type=row.event_type, status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        created_at=row.created_at, delivered_at=row.delivered_at,
        last_status_code=row.last_status_code, last_error=row.last_error,
        last_latency_ms=row.last_latency_ms)


def _attempt_view(row: WebhookAttempt) -> AttemptView:
    return AttemptView(at=row.at, status_code=row.status_code, latency_ms=row.latency_ms,
                       response=row.response, error=row.error)


def _endpoint_id(request: Request) -> int:
    return int(request.path_params["endpoint_id"])


async def get_catalogue(request: Request, principal: Principal) -> Response:
    """The event types an endpoint may receive."""
    admin_only(principal, "manage webhook endpoints")
    return json_response([CatalogueEntry(type=t, description=d)
                          for t, d in webhooks.CATALOGUE.items()])


async def get_endpoints(request: Request, principal: Principal) -> Response:
    """Every outbound webhook endpoint (admins)."""
    async with web_context(request).inbox.db.read() as session:
        rows = await act(webhooks.list_endpoints(session, principal))
    return json_response([endpoint_view(row) for row in rows])


async def post_endpoint(request: Request, principal: Principal) -> Response:
    """Register an endpoint; the answer holds its signing secret, this once (admins)."""
    body = await parse_json(request, EndpointRequest)
    row, secret = await act(webhooks.create_endpoint(
        web_context(request).inbox, principal, url=body.url, event_types=body.event_types,
        description=body.description))
    return json_response(EndpointWithSecret(**endpoint_view(row).model_dump(), secret=secret),
                         status=201)


async def get_endpoint(request: Request, principal: Principal) -> Response:
    """One endpoint (admins)."""
    async with web_context(request).inbox.db.read() as session:
        row = await act(webhooks.get_endpoint(session, principal, _endpoint_id(request)))
    return json_response(endpoint_view(row))


async def patch_endpoint(request: Request, principal: Principal) -> Response:
    """Change an endpoint's URL, event types or description, or turn it off/on (admins)."""
    body = await parse_json(request, EndpointChange)
    row = await act(webhooks.update_endpoint(
        web_context(request).inbox, principal, _endpoint_id(request), url=body.url,
        event_types=body.event_types, description=body.description, enabled=body.enabled))
    return json_response(endpoint_view(row))


async def delete_endpoint(request: Request, principal: Principal) -> Response:
    """Remove an endpoint and its delivery log (admins)."""
    await act(webhooks.delete_endpoint(web_context(request).inbox, principal,
                                       _endpoint_id(request)))
    return Response(status_code=204)


async def post_rotate(request: Request, principal: Principal) -> Response:
    """A new signing secret, shown this once; the old one also signs for 24 hours."""
    row, secret = await act(webhooks.rotate_secret(web_context(request).inbox, principal,
                                                   _endpoint_id(request)))
    return json_response(EndpointWithSecret(**endpoint_view(row).model_dump(), secret=secret))


async def get_deliveries(request: Request, principal: Principal) -> Response:
    """An endpoint's delivery log, newest first (`status`, `before`, `limit` ≤ 200)."""
    status = request.query_params.get("status") or None
    if status is not None and status not in ("pending", "delivered", "dead"):
        raise HTTPProblem(400, "invalid_parameter", "status: pending, delivered or dead")
    limit = int_param(request.query_params.get("limit"), "limit") or 50
    async with web_context(request).inbox.db.read() as session:
        page = await act(webhooks.list_deliveries(
            session, principal, _endpoint_id(request), status=status,
            before=int_param(request.query_params.get("before"), "before"),
            limit=min(limit, 200)))
    return json_response(DeliveryPage(deliveries=[delivery_view(r) for r in page.deliveries],
                                      next_before=page.next_before))


async def get_delivery(request: Request, principal: Principal) -> Response:
    """One delivery: what was sent, and every try with the endpoint's answer."""
    async with web_context(request).inbox.db.read() as session:
        row, tries = await act(webhooks.get_delivery(
            session, principal, _endpoint_id(request), int(request.path_params["delivery_id"])))
    return json_response(DeliveryDetail(**delivery_view(row).model_dump(), payload=row.payload,
                                        tries=[_attempt_view(t) for t in tries]))


async def post_replay_one(request: Request, principal: Principal) -> Response:
    """Send one delivery again, now (same webhook-id)."""
    count = await act(webhooks.replay(web_context(request).inbox, principal,
                                      _endpoint_id(request),
                                      delivery_id=int(request.path_params["delivery_id"])))
    return json_response(ReplayView(replayed=count), status=202)


async def post_replay_since(request: Request, principal: Principal) -> Response:
    """Send every delivery recorded since a time again, now."""
    body = await parse_json(request, ReplayRequest)
    if body.since.tzinfo is None:
        raise HTTPProblem(422, "invalid_field", "since: give a time zone (2026-12-04T10:00:00Z)")
    count = await act(webhooks.replay(web_context(request).inbox, principal,
                                      _endpoint_id(request), since=body.since))
    return json_response(ReplayView(replayed=count), status=202)


_BASE = "/api/v1/webhook-endpoints"
_ONE = _BASE + "/{endpoint_id:id}"
OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/webhook-event-types", "Event types of outbound webhooks (admin)",
         response=CatalogueEntry, many=True, extra_responses=ADMIN_ONLY),
     authenticated(get_catalogue)),
    (Doc("GET", _BASE, "Outbound webhook endpoints (admin)", response=EndpointView, many=True,
         extra_responses=ADMIN_ONLY), authenticated(get_endpoints)),
    (Doc("POST", _BASE, "Register a webhook endpoint (admin)", EndpointRequest,
         EndpointWithSecret, status=201, extra_responses=ADMIN_ONLY),
     authenticated(post_endpoint)),
    (Doc("GET", _ONE, "A webhook endpoint (admin)", response=EndpointView,
         extra_responses=ADMIN_ONLY), authenticated(get_endpoint)),
    (Doc("PATCH", _ONE, "Change a webhook endpoint (admin)", EndpointChange, EndpointView,
         extra_responses=ADMIN_ONLY), authenticated(patch_endpoint)),
    (Doc("DELETE", _ONE, "Remove a webhook endpoint (admin)", status=204,
         extra_responses=ADMIN_ONLY), authenticated(delete_endpoint)),
    (Doc("POST", _ONE + "/rotate-secret", "Rotate a webhook endpoint's secret (admin)",
         response=EndpointWithSecret, extra_responses=ADMIN_ONLY), authenticated(post_rotate)),
    (Doc("GET", _ONE + "/deliveries", "A webhook endpoint's delivery log (admin)",
         response=DeliveryPage, extra_responses=ADMIN_ONLY,
         query=(("status", "pending, delivered or dead"),
                ("before", "the next_before of the previous page"),
                ("limit", "at most 200 (default 50)"))), authenticated(get_deliveries)),
    (Doc("GET", _ONE + "/deliveries/{delivery_id:id}", "One webhook delivery (admin)",
         response=DeliveryDetail, extra_responses=ADMIN_ONLY), authenticated(get_delivery)),
    (Doc("POST", _ONE + "/deliveries/{delivery_id:id}/replay", "Replay a delivery (admin)",
         response=ReplayView, status=202, extra_responses=ADMIN_ONLY),
     authenticated(post_replay_one)),
    (Doc("POST", _ONE + "/replay", "Replay deliveries since a time (admin)", ReplayRequest,
         ReplayView, status=202, extra_responses=ADMIN_ONLY), authenticated(post_replay_since)),
]
