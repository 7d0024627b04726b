"""The outbound webhooks pages (admins): endpoints, their secrets, the delivery log, replay.

Plain forms like the other admin pages, calling the same crm_sync/ actions as the JSON API
(web/webhook_endpoints.py), so both refuse alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from crm_sync import webhooks
from inbox.agents import Principal
from web.admin_ui import (
    Form,
    FormError,
    admin_page,
    form_act,
    form_value,
    page,
    redirect,
    refusal,
    sentence,
)
from web.context import WebContext, web_context
from web.http import path_id
from web.webhook_endpoints import delivery_view, endpoint_view

NOTICES = {
    "saved": "Saved.",
    "deleted": "The endpoint was removed, with its delivery log.",
    "replayed": "Sent again: the log shows the answer in a few seconds.",
}


async def list_page(ctx: WebContext, principal: Principal, status: int = 200,
                    **values: Any) -> Response:
    async with ctx.inbox.db.read() as session:
        rows = await form_act(webhooks.list_endpoints(session, principal))
    return page("admin_webhooks.html", status, csrf_token=principal.csrf_token,
                endpoints=[endpoint_view(r) for r in rows], catalogue=webhooks.CATALOGUE,
                **values)


async def endpoint_page(ctx: WebContext, principal: Principal, endpoint_id: int,
                        status: int = 200, *, only: str | None = None,
                        **values: Any) -> Response:
    async with ctx.inbox.db.read() as session:
        try:
            row = await form_act(webhooks.get_endpoint(session, principal, endpoint_id))
        except FormError:
            return refusal(404, "No such endpoint", "This webhook endpoint does not exist.")
        log = await webhooks.list_deliveries(session, principal, endpoint_id, status=only,
                                             limit=100)
    return page("admin_webhook.html", status, csrf_token=principal.csrf_token,
                endpoint=endpoint_view(row), catalogue=webhooks.CATALOGUE, only=only or "",
                deliveries=[delivery_view(d) for d in log.deliveries], **values)


async def webhooks_get(request: Request, principal: Principal, form: Form | None) -> Response:
    done = NOTICES.get(request.query_params.get("done", ""))
    return await list_page(web_context(request), principal, notice=done)


async def webhook_create(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    try:
        row, secret = await form_act(webhooks.create_endpoint(
            ctx.inbox, principal, url=form_value(form, "url"),
            event_types=form.get("event_types", []),
            description=form_value(form, "description")[:200]))
    except FormError as exc:
        return await list_page(ctx, principal, exc.status, error=sentence(str(exc)),
                               typed={k: form_value(form, k) for k in ("url", "description")})
    assert row.id is not None
    # The secret is shown once, on the answer to the form (never in a URL).
    return await endpoint_page(ctx, principal, row.id, 201, secret=secret,
                               notice="The endpoint was added. Copy its signing secret now: "
                                      "it is not shown again.")


async def webhook_get(request: Request, principal: Principal, form: Form | None) -> Response:
    only = request.query_params.get("status") or None
    if only not in (None, "pending", "delivered", "dead"):
        only = None
    return await endpoint_page(web_context(request), principal, path_id(request, "endpoint_id"),
                               only=only,
                               notice=NOTICES.get(request.query_params.get("done", "")))


async def webhook_update(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    endpoint_id = path_id(request, "endpoint_id")
    try:
        await form_act(webhooks.update_endpoint(
            ctx.inbox, principal, endpoint_id, url=form_value(form, "url"),
            event_types=form.get("event_types", []),
            description=form_value(form, "description")[:200],
            enabled=form_value(form, "enabled") == "1"))
    except FormError as exc:
        return await endpoint_page(ctx, principal, endpoint_id, exc.status,
                                   error=sentence(str(exc)))
    return redirect(f"/admin/webhooks/{endpoint_id}?done=saved")


async def webhook_rotate(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    endpoint_id = path_id(request, "endpoint_id")
    try:
        _, secret = await form_act(webhooks.rotate_secret(ctx.inbox, principal, endpoint_id))
    except FormError as exc:
        return await endpoint_page(ctx, principal, endpoint_id, exc.status,
                                   error=sentence(str(exc)))
    return await endpoint_page(ctx, principal, endpoint_id, secret=secret,
                               notice="A new signing secret: copy it now. The old one also "
                                      "signs for 24 hours, while receivers switch.")


async def webhook_delete(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    try:
        await form_act(webhooks.delete_endpoint(ctx.inbox, principal,
                                                path_id(request, "endpoint_id")))
    except FormError as exc:
        return await list_page(ctx, principal, exc.status, error=sentence(str(exc)))
    return redirect("/admin/webhooks?done=deleted")


async def webhook_replay(request: Request, principal: Principal, form: Form | None) -> Response:
    """Replay one delivery (its id in the path) or everything since the form's time."""
    assert form is not None
    ctx = web_context(request)
    endpoint_id = path_id(request, "endpoint_id")
    delivery = request.path_params.get("delivery_id")
    try:
        if delivery is not None:
            await form_act(webhooks.replay(ctx.inbox, principal, endpoint_id,
                                           delivery_id=int(delivery)))
        else:
            await form_act(webhooks.replay(ctx.inbox, principal, endpoint_id,
                                           since=_since(form_value(form, "since"))))
    except FormError as exc:
        return await endpoint_page(ctx, principal, endpoint_id, exc.status,
                                   error=sentence(str(exc)))
    return redirect(f"/admin/webhooks/{endpoint_id}?done=replayed")


def _since(value: str) -> datetime:
    """A datetime-local field's value, read as UTC (the page says so)."""
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise FormError("since: give a date and time") from None


async def delivery_get(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    endpoint_id = path_id(request, "endpoint_id")
    async with ctx.inbox.db.read() as session:
        try:
            row, tries = await form_act(webhooks.get_delivery(
                session, principal, endpoint_id, path_id(request, "delivery_id")))
        except FormError:
            return refusal(404, "No such delivery", "This delivery does not exist.")
    return page("admin_webhook_delivery.html", csrf_token=principal.csrf_token,
                endpoint_id=endpoint_id, delivery=delivery_view(row), payload=row.payload,
                tries=tries)


_ONE = "/admin/webhooks/{endpoint_id:id}"
ROUTES: list[BaseRoute] = [
    Route("/admin/webhooks", admin_page(webhooks_get), methods=["GET"]),
    Route("/admin/webhooks", admin_page(webhook_create), methods=["POST"]),
    Route(_ONE, admin_page(webhook_get), methods=["GET"]),
    Route(_ONE, admin_page(webhook_update), methods=["POST"]),
    Route(_ONE + "/rotate", admin_page(webhook_rotate), methods=["POST"]),
    Route(_ONE + "/delete", admin_page(webhook_delete), methods=["POST"]),
    Route(_ONE + "/replay", admin_page(webhook_replay), methods=["POST"]),
    Route(_ONE + "/deliveries/{delivery_id:id}", admin_page(delivery_get), methods=["GET"]),
    Route(_ONE + "/deliveries/{delivery_id:id}/replay", admin_page(webhook_replay),
          methods=["POST"]),
]
