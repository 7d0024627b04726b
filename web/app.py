"""The Starlette application: routes from every part of web/, built from a WebContext."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from web.admin_ui import admin_ui_routes
from web.api import api_routes
from web.api_admin import admin_routes
from web.api_assign import assignment_routes
from web.api_collab import collab_routes
from web.api_files import file_routes
from web.api_moves import move_routes
from web.api_operations import operation_routes
from web.api_search import search_routes
from web.api_sync import sync_routes
from web.context import WebContext
from web.health import health_routes
from web.http import HTTPProblem, problem_response
from web.message_html import message_html_routes
from web.openapi import Doc, build_openapi
from web.realtime import Presence, websocket_routes
from web.ui import static_files, ui_routes
from web.webhooks import webhook_routes
from web.widget import widget_routes

log = logging.getLogger("switchboard.web")

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]

# Each part of the JSON API builds its routes and their OpenAPI descriptions.
API_SECTIONS = (
    api_routes, file_routes, admin_routes, assignment_routes, collab_routes, search_routes,
    operation_routes, message_html_routes, move_routes, sync_routes,
)


def api_sections(ctx: WebContext) -> tuple[list[Route], list[Doc]]:
    """Every JSON API route and its description, in the order the sections are listed."""
    routes: list[Route] = []
    docs: list[Doc] = []
    for section in API_SECTIONS:
        more_routes, more_docs = section(ctx)
        routes += more_routes
        docs += more_docs
    return routes, docs


def build_web(ctx: WebContext, lifespan: Lifespan | None = None) -> tuple[Starlette, Presence]:
    """The ASGI app of one web process, and its presence tracker (started by the lifespan)."""
    presence = Presence(ctx)
    routes, docs = api_sections(ctx)
    spec = build_openapi(docs, title="Switchboard API", version="1")

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    all_routes: list[BaseRoute] = [
        *routes,
        Route("/api/openapi.json", openapi, methods=["GET"]),
        *webhook_routes(ctx),
        *websocket_routes(ctx, presence),
        *widget_routes(ctx),
        *health_routes(ctx),
        *ui_routes(ctx),
        *admin_ui_routes(ctx),
        static_files(),
    ]

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPProblem)
        return problem_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return problem_response(HTTPProblem(exc.status_code, code, str(exc.detail)))

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(HTTPProblem(500, "internal", "something went wrong on our side"))

    handlers: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPProblem: on_problem,
        HTTPException: on_http,
        Exception: on_error,
    }
    app = Starlette(routes=all_routes, exception_handlers=handlers,
                    lifespan=lifespan)
    return app, presence


__all__ = ["AsyncIterator", "build_web"]
