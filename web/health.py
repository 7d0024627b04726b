"""Health, readiness and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub import dead_letters
from hub.metrics import DEAD_LETTERS
from hub.security import constant_time_equal
from web.context import WebContext


def _may_scrape(request: Request, token: str) -> bool:
    """A loopback peer (a sidecar, an SSH tunnel), or anyone with the configured token."""
    if token:
        given = request.headers.get("authorization", "")
        if constant_time_equal(given, f"Bearer {token}"):
            return True
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def health_routes(ctx: WebContext) -> list[Route]:
    """/healthz (process up), /readyz (database and bus reachable), /metrics."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        async def bounded(check: asyncio.Future[bool] | object) -> bool:
            try:
                return bool(await asyncio.wait_for(check, timeout=2))  # type: ignore[arg-type]
            except Exception:
                return False

        database = await bounded(ctx.inbox.db.ping())
        bus = await bounded(ctx.inbox.bus.ping())
        ready = database and bus
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "database": database, "bus": bus},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        if not _may_scrape(request, ctx.settings.metrics_token):
            return JSONResponse({"error": {"code": "forbidden", "message": (
                "metrics are served on the loopback interface or with the metrics token")}},
                status_code=403)
        # The dead letters live on the bus, shared by every process: count them now.
        with contextlib.suppress(Exception):
            counts = await asyncio.wait_for(dead_letters.count(ctx.inbox.bus), timeout=2)
            for stream, count in counts.items():
                DEAD_LETTERS.labels(stream).set(count)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
