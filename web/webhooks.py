"""Provider webhooks: verify first, parse, put on the bus, acknowledge."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.base import (
    Acknowledges,
    AnswersChallenge,
    BadPayload,
    ChannelAdapter,
    SharesWebhooks,
    VerificationFailed,
    WebhookRequest,
)
from hub.bus import INBOUND, BusUnavailable
from hub.metrics import WEBHOOKS
from hub.types import encode
from web.context import WebContext
from web.directory import DirectoryUnavailable, KnownInbox
from web.http import HTTPProblem, read_body, unavailable

log = logging.getLogger("switchboard.webhooks")


def within_limit(ctx: WebContext, inbox_id: int | str, label: str) -> None:
    """Take one of the inbox's (or CRM connection's) webhook tokens, or answer 429 with
    Retry-After."""
    if not ctx.webhook_limits.allow(str(inbox_id)):
        WEBHOOKS.labels(channel=label, outcome="rate_limited").inc()
        raise HTTPProblem(429, "slow_down", "too many webhook requests for this inbox",
                          headers={"Retry-After": str(max(
                              1, round(ctx.webhook_limits.refill_seconds)))})


def webhook_routes(ctx: WebContext) -> list[Route]:
    """POST /webhooks/{channel}/{inbox_id} for every registered channel."""

    async def receive(request: Request) -> Response:
        channel = request.path_params["channel"]
        inbox_id = request.path_params["inbox_id"]
        adapter = ctx.channels.get(channel)
        # Metric labels only from known values: a made-up channel in the URL must not add
        # a new series each time.
        label = channel if adapter is not None else "unknown"
        try:
            found = await ctx.directory.get(inbox_id) if adapter is not None else None
        except DirectoryUnavailable:
            raise unavailable("the database") from None
        if adapter is None or found is None or found.channel != channel:
            WEBHOOKS.labels(channel=label, outcome="unknown_inbox").inc()
            raise HTTPProblem(404, "not_found", "no such inbox for this channel")
        if found.unreadable:
            # The provider retries later; by then the key may be back.
            raise unavailable("this inbox's secrets (see the server log)")
        within_limit(ctx, inbox_id, label)
        body = await read_body(request, ctx.settings.webhook_max_bytes) \
            if request.method == "POST" else b""
        # Behind a TLS-terminating proxy the request URL is not what the provider signed.
        public = ctx.settings.base_url + request.url.path
        if request.url.query:
            public += "?" + request.url.query
        hook = WebhookRequest(
            method=request.method,
            url=public,
            headers=request.headers,
            body=body,
            inbox_id=inbox_id,
            inbox_settings=found.settings,
            routes=await routes_of(ctx, adapter, found) if isinstance(
                adapter, SharesWebhooks) else {},
        )
        if request.method == "GET":
            return challenge(adapter, hook, label)
        return await accept(ctx, adapter, hook, label)

    return [Route("/webhooks/{channel:str}/{inbox_id:id}", receive, methods=["GET", "POST"])]


async def accept(ctx: WebContext, adapter: ChannelAdapter, hook: WebhookRequest, label: str
                 ) -> Response:
    """Verify, parse, put on the bus; only then acknowledge."""
    try:
        adapter.verify(hook)
    except VerificationFailed as exc:
        WEBHOOKS.labels(channel=label, outcome="unverified").inc()
        log.warning("webhook refused: channel=%s inbox=%s reason=%s", label, hook.inbox_id, exc)
        return JSONResponse(
            {"error": {"code": "unverified", "message": str(exc)}}, status_code=exc.status
        )
    try:
        parsed = adapter.parse(hook)
    except BadPayload as exc:
        WEBHOOKS.labels(channel=label, outcome="bad_payload").inc()
        raise HTTPProblem(400, "invalid_payload", str(exc)) from None
    try:
        await ctx.inbox.bus.add_many(INBOUND, [encode(item) for item in parsed])
    except BusUnavailable as exc:
        WEBHOOKS.labels(channel=label, outcome="unavailable").inc()
        log.warning("webhook answered 503: the bus is unavailable (%s)", exc)
        raise unavailable("the message bus") from None
    WEBHOOKS.labels(channel=label, outcome="accepted").inc()
    # Only now, with everything durable on the bus, do we acknowledge.
    if isinstance(adapter, Acknowledges):
        ack = adapter.acknowledge(hook, parsed)
        return Response(ack.body, status_code=ack.status, media_type=ack.content_type)
    return JSONResponse({"accepted": len(parsed)}, status_code=202)


async def routes_of(ctx: WebContext, adapter: SharesWebhooks, found: KnownInbox
                    ) -> dict[str, int]:
    """The accounts a webhook of this inbox may deliver for (its own, and those of the
    channel's inboxes that share its app)."""
    same = {inbox.id: inbox.settings for inbox in await ctx.directory.of_channel(found.channel)}
    return adapter.webhook_routes(found.settings, same)


def challenge(adapter: object, hook: WebhookRequest, label: str) -> Response:
    """A provider's GET that proves the URL (Meta's hub.challenge): answered by channels
    that have one, 405 for the others."""
    if not isinstance(adapter, AnswersChallenge):
        raise HTTPProblem(405, "method_not_allowed", "webhooks are POSTed to this URL")
    try:
        ack = adapter.challenge(hook)
    except VerificationFailed as exc:
        WEBHOOKS.labels(channel=label, outcome="unverified").inc()
        log.warning("webhook challenge refused: channel=%s inbox=%s reason=%s", label,
                    hook.inbox_id, exc)
        return JSONResponse({"error": {"code": "unverified", "message": str(exc)}},
                            status_code=exc.status)
    WEBHOOKS.labels(channel=label, outcome="challenge").inc()
    return Response(ack.body, status_code=ack.status, media_type=ack.content_type)
