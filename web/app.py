"""The Starlette application: routes from every part of web/, built from a WebContext."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from web import (
    admin,
    agents,
    assignment,
    auth,
    automation,
    canned,
    contacts,
    conversations,
    crm,
    csat,
    dead_letters,
    files,
    inboxes,
    invitations,
    labels,
    messages,
    notifications,
    reports,
    search,
    sla,
    teams,
    webhook_endpoints,
)
from web.admin_automation import ROUTES as ADMIN_AUTOMATION_ROUTES
from web.admin_crm import ROUTES as ADMIN_CRM_ROUTES
from web.admin_inboxes import ROUTES as ADMIN_INBOX_ROUTES
from web.admin_routing import ROUTES as ADMIN_ROUTING_ROUTES
from web.admin_sla import ROUTES as ADMIN_SLA_ROUTES
from web.admin_ui import ROUTES as ADMIN_UI_ROUTES
from web.admin_webhooks import ROUTES as ADMIN_WEBHOOK_ROUTES
from web.context import WebContext
from web.health import health_routes
from web.http import HTTPProblem, Operation, SameOrigin, problem_response, routes_of
from web.openapi import build_openapi
from web.realtime import Presence, websocket_routes
from web.ui import ROUTES as UI_ROUTES
from web.ui import static_files
from web.webhooks import webhook_routes
from web.widget import ROUTES as WIDGET_ROUTES

log = logging.getLogger("switchboard.web")

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]

# Each module of the JSON API ends with its table of operations: served and documented here.
API_MODULES = (
    auth, agents, inboxes, conversations, messages, files, admin, invitations, teams,
    assignment, notifications, labels, canned, contacts, search, dead_letters,
    webhook_endpoints, crm, automation, sla, csat, reports,
)


def api_operations_table() -> list[Operation]:
    """Every JSON API operation, in the order the modules are listed."""
    return [operation for module in API_MODULES for operation in module.OPERATIONS]


def build_web(ctx: WebContext, lifespan: Lifespan | None = None) -> tuple[Starlette, Presence]:
    """The ASGI app of one web process, and its presence tracker (started by the lifespan)."""
    presence = Presence(ctx)
    operations = api_operations_table()
    spec = build_openapi([doc for doc, _ in operations], title="Switchboard API", version="1")

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    all_routes: list[BaseRoute] = [
        # Matched in order: the providers' webhooks, the busiest route, first (each API
        # operation added would otherwise cost every inbound message one more match).
        *webhook_routes(ctx),
        *routes_of(operations),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        *websocket_routes(ctx, presence),
        *WIDGET_ROUTES,
        *health_routes(ctx),
        *UI_ROUTES,
        *ADMIN_UI_ROUTES,
        *ADMIN_INBOX_ROUTES,
        *ADMIN_ROUTING_ROUTES,
        *ADMIN_AUTOMATION_ROUTES,
        *ADMIN_SLA_ROUTES,
        *ADMIN_WEBHOOK_ROUTES,
        *ADMIN_CRM_ROUTES,
        *crm.ROUTES,
        *csat.ROUTES,
        *reports.ROUTES,
        static_files(),
    ]

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPProblem)
        return problem_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        # Starlette's own answers carry headers that matter (405: Allow).
        return problem_response(HTTPProblem(exc.status_code, code, str(exc.detail),
                                            headers=dict(exc.headers or {})))

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(HTTPProblem(500, "internal", "something went wrong on our side"))

    handlers: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPProblem: on_problem,
        HTTPException: on_http,
        Exception: on_error,
    }
    app = Starlette(routes=all_routes, exception_handlers=handlers, lifespan=lifespan,
                    middleware=[Middleware(SameOrigin, origins=ctx.settings.origins)])
    app.state.switchboard = ctx  # what web_context(request) answers
    return app, presence


__all__ = ["AsyncIterator", "build_web"]
