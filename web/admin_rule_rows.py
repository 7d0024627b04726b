"""The row buttons of a rules page (routing rules, automation rules): switch a rule on or
off, move it, remove it. Each page hands over its rules module's actions and its page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inbox.agents import Principal
from web.admin_ui import (
    Form,
    FormError,
    admin_page,
    form_act,
    form_model,
    form_value,
    redirect,
    sentence,
)
from web.context import WebContext, web_context
from web.http import path_id

Page = Callable[..., Awaitable[Response]]


def rule_row_routes(base: str, *, page: Page, patch: Callable[..., Any],
                    update: Callable[..., Awaitable[Any]],
                    delete: Callable[..., Awaitable[Any]]) -> list[BaseRoute]:
    """POST {base}/{rule_id} (is_active, position) and POST {base}/{rule_id}/delete, for
    admins and team leads; a refusal shows the page again with why."""

    async def refused(ctx: WebContext, principal: Principal, exc: FormError) -> Response:
        return await page(ctx, principal, exc.status, error=sentence(str(exc)))

    async def rule_update(request: Request, principal: Principal, form: Form | None
                          ) -> Response:
        """A rule's row: switched on or off, moved."""
        assert form is not None
        ctx = web_context(request)
        position = form_value(form, "position")
        try:
            changes = form_model(lambda: patch(
                is_active=form_value(form, "is_active") == "1",
                position=int(position) if position.isdigit() else None))
            await form_act(update(ctx.inbox, principal, path_id(request, "rule_id"), changes,
                                  channels=ctx.channels))
        except FormError as exc:
            return await refused(ctx, principal, exc)
        return redirect(f"{base}?done=saved")

    async def rule_delete(request: Request, principal: Principal, form: Form | None
                          ) -> Response:
        ctx = web_context(request)
        try:
            await form_act(delete(ctx.inbox, principal, path_id(request, "rule_id")))
        except FormError as exc:
            return await refused(ctx, principal, exc)
        return redirect(f"{base}?done=deleted")

    return [
        Route(base + "/{rule_id:id}", admin_page(rule_update, leads=True), methods=["POST"]),
        Route(base + "/{rule_id:id}/delete", admin_page(rule_delete, leads=True),
              methods=["POST"]),
    ]
