"""Admin pages for inboxes: the list, a channel's connect form, and one inbox's settings,
members, assignment and (for the website chat) the snippet to paste into a site.

The forms are made from what each channel declares of its settings (`SettingSpec`), and are
carried out by the same functions as the JSON API (web/inboxes.py), so a refusal reads the
same in both. The first admin's checklist lives here too: it is about inboxes mostly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from channels.base import TestsConnection
from inbox import admin, assign_actions, csat
from inbox.agents import Principal
from inbox.assignment import drain_queue
from inbox.inboxes import InboxError, all_inboxes, member_counts, set_members, setup_progress
from web.admin_ui import (
    Form,
    FormError,
    admin_page,
    form_act,
    form_ids,
    form_value,
    notice,
    page,
    redirect,
    sentence,
)
from web.context import WebContext, web_context
from web.http import HTTPProblem, path_id
from web.inboxes import (
    PROVIDER_UNDONE,
    InboxDetail,
    SettingView,
    change_inbox,
    channel_adapter,
    channel_views,
    connect_inbox,
    delete_inbox,
    inbox_detail,
    settings_view,
    test_channel,
    test_inbox,
)

SETTING = "setting."
NOTICES = {
    "created": "The inbox is connected. Check its settings and members below.",
    "saved": "Saved.",
    "members": "Members saved: they see this inbox's conversations now.",
    "assignment": "Assignment settings saved.",
    "csat": "Satisfaction survey saved.",
    "deleted": "The inbox is deleted: nothing comes in or goes out any more; its "
               "conversations stay readable.",
    "deleted_here_only": "The inbox is deleted here, but its provider could not be told: "
                         "remove the webhook in the provider's console.",
}


def form_settings(form: Form, specs: list[SettingView], *, new: bool) -> dict[str, Any]:
    """The settings typed into a form, each read the way its channel declared it. A secret
    left empty keeps its value on an existing inbox."""
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.generated:
            continue
        raw = form.get(SETTING + spec.name, [""])[0]
        if spec.form == "flag":
            values[spec.name] = True if raw else ""
            continue
        raw = raw.strip()
        if spec.secret and not raw and not new:
            continue
        if spec.form == "lines":
            values[spec.name] = [line.strip() for line in raw.splitlines() if line.strip()] or ""
        elif spec.form == "json" and raw:
            try:
                values[spec.name] = json.loads(raw)
            except ValueError:
                raise FormError(f"{spec.name}: not valid JSON; expected {spec.description}"
                                ) from None
        else:
            values[spec.name] = raw
    return values


def shown(spec: SettingView, typed: Mapping[str, Any] | None) -> str:
    """What a settings field shows: what was just typed, else the saved value."""
    value = typed.get(spec.name, spec.value) if isinstance(typed, Mapping) else spec.value
    if value is None or value == "" or spec.secret:
        return ""
    if spec.form == "lines" and isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if spec.form == "json" or not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


def snippet(ctx: WebContext, detail: InboxDetail) -> str | None:
    """The embed tag of a website-chat inbox, for its site's pages."""
    token = next((s.value for s in detail.settings if s.name == "public_token"), None)
    if detail.channel != "webchat" or not token:
        return None
    base = ctx.settings.base_url.rstrip("/")
    return f'<script src="{base}/widget.js" data-inbox="{token}" async></script>'


async def inboxes_get(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    async with ctx.inbox.db.read() as session:
        found = await all_inboxes(session)
        members = await member_counts(session)
        progress = await setup_progress(session)
    names = {c.kind: c.display_name for c in channel_views(ctx)}
    return page("admin_inboxes.html", csrf_token=principal.csrf_token, inboxes=found,
                members=members, channels=channel_views(ctx), channel_names=names,
                progress=progress, notice=notice(request))


async def new_inbox_page(
    ctx: WebContext, principal: Principal, channel: str, status: int = 200, **values: Any
) -> Response:
    try:
        adapter = channel_adapter(ctx, channel)
    except HTTPProblem:
        return page("message.html", 404, title="No such channel",
                    text="This installation has no such channel: pick one from the list.")
    return page("admin_inbox_new.html", status, csrf_token=principal.csrf_token,
                channel=channel, channel_name=adapter.display_name,
                can_test=isinstance(adapter, TestsConnection),
                specs=settings_view(adapter, None), shown=shown, **values)


async def new_inbox_get(request: Request, principal: Principal, form: Form | None) -> Response:
    return await new_inbox_page(web_context(request), principal,
                                request.query_params.get("channel", ""))


def new_inbox_specs(ctx: WebContext, channel: str) -> list[SettingView]:
    """The settings a new inbox of the channel asks for (none for an unknown channel)."""
    return settings_view(channel_adapter(ctx, channel), None) if channel in ctx.channels else []


async def new_inbox_post(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    channel = form_value(form, "channel")
    specs = new_inbox_specs(ctx, channel)
    try:
        typed = form_settings(form, specs, new=True)
        inbox = await form_act(connect_inbox(
            ctx, principal, name=form_value(form, "name"), channel=channel, settings=typed,
            auto_assign=form_value(form, "auto_assign") == "1"))
    except FormError as exc:
        return await new_inbox_page(ctx, principal, channel, exc.status,
                                    error=sentence(str(exc)), name=form_value(form, "name"),
                                    typed=form_settings_lenient(form, specs))
    if inbox.id is not None:
        await set_members_of(ctx, inbox.id, [principal.agent_id])
    return redirect(f"/admin/inboxes/{inbox.id}?done=created")


async def new_inbox_test(request: Request, principal: Principal, form: Form | None
                         ) -> Response:
    """The connect form's "Test connection": the provider asked with what was typed; the
    form comes back as it was (secrets are typed again: they are never sent back)."""
    assert form is not None
    ctx = web_context(request)
    channel = form_value(form, "channel")
    specs = new_inbox_specs(ctx, channel)
    again: dict[str, Any] = {"name": form_value(form, "name"),
                             "typed": form_settings_lenient(form, specs)}
    try:
        result = await form_act(test_channel(ctx, principal, channel,
                                             form_settings(form, specs, new=True)))
    except FormError as exc:
        return await new_inbox_page(ctx, principal, channel, exc.status,
                                    error=sentence(str(exc)), **again)
    if result.ok:
        return await new_inbox_page(ctx, principal, channel, **again,
                                    notice=sentence(f"The connection works: {result.detail}"))
    return await new_inbox_page(ctx, principal, channel, **again,
                                error=sentence(f"The provider refused: {result.detail}"))


def form_settings_lenient(form: Form, specs: list[SettingView]) -> dict[str, Any]:
    """What was typed, as text, to show the form again after a refusal."""
    return {s.name: form_value(form, SETTING + s.name) for s in specs if not s.secret}


async def set_members_of(ctx: WebContext, inbox_id: int, agent_ids: list[int]) -> None:
    """Make these agents an inbox's members, then let waiting conversations find them."""
    async with ctx.inbox.db.write() as session:
        await set_members(session, inbox_id=inbox_id, agent_ids=agent_ids)
    await drain_queue(ctx.inbox)


async def inbox_page(ctx: WebContext, principal: Principal, inbox_id: int, status: int = 200,
                     **values: Any) -> Response:
    try:
        detail = await inbox_detail(ctx, inbox_id)
    except HTTPProblem:
        return page("message.html", 404, title="No such inbox",
                    text="This inbox does not exist (any more).")
    async with ctx.inbox.db.read() as session:
        agents = await admin.list_agents(session, presence_seconds=ctx.settings.presence_seconds)
    adapter = ctx.channels.get(detail.channel)
    return page("admin_inbox.html", status, csrf_token=principal.csrf_token, inbox=detail,
                agents=agents, snippet=snippet(ctx, detail), shown=shown,
                can_test=isinstance(adapter, TestsConnection),
                verify_token=next((s.value for s in detail.settings
                                   if s.name == "verify_token" and not s.secret), None),
                channel_name=next((c.display_name for c in channel_views(ctx)
                                   if c.kind == detail.channel), detail.channel),
                webhook_url=f"{ctx.settings.base_url.rstrip('/')}/webhooks/{detail.channel}/"
                            f"{inbox_id}", **values)


async def refused(ctx: WebContext, principal: Principal, inbox_id: int, exc: FormError,
                  section: str) -> Response:
    """The inbox page again, the refusal shown in the section whose form was sent."""
    return await inbox_page(ctx, principal, inbox_id, exc.status, error=sentence(str(exc)),
                            error_for=section)


async def inbox_get(request: Request, principal: Principal, form: Form | None) -> Response:
    ctx = web_context(request)
    done = NOTICES.get(request.query_params.get("done", ""))
    return await inbox_page(ctx, principal, path_id(request, "inbox_id"), notice=done)


async def typed_settings(ctx: WebContext, inbox_id: int, form: Form) -> dict[str, Any]:
    """The settings typed into an existing inbox's form (FormError when there is no inbox)."""
    detail = await form_act(inbox_detail(ctx, inbox_id))
    return form_settings(form, detail.settings, new=False)


async def inbox_post(request: Request, principal: Principal, form: Form | None) -> Response:
    """The settings form: the name and what the channel declares."""
    assert form is not None
    ctx = web_context(request)
    inbox_id = path_id(request, "inbox_id")
    try:
        typed = await typed_settings(ctx, inbox_id, form)
        await form_act(change_inbox(ctx, principal, inbox_id, name=form_value(form, "name"),
                                    settings=typed))
    except FormError as exc:
        return await refused(ctx, principal, inbox_id, exc, "settings")
    return redirect(f"/admin/inboxes/{inbox_id}?done=saved")


async def test_post(request: Request, principal: Principal, form: Form | None) -> Response:
    """The settings form's "Test connection": what is typed, on top of what is saved."""
    assert form is not None
    ctx = web_context(request)
    inbox_id = path_id(request, "inbox_id")
    try:
        typed = await typed_settings(ctx, inbox_id, form)
        result = await form_act(test_inbox(ctx, principal, inbox_id, typed))
    except FormError as exc:
        return await refused(ctx, principal, inbox_id, exc, "settings")
    if result.ok:
        return await inbox_page(ctx, principal, inbox_id,
                                notice=sentence(f"The connection works: {result.detail}"))
    return await inbox_page(ctx, principal, inbox_id, error_for="settings",
                            error=sentence(f"The provider refused: {result.detail}"))


async def delete_post(request: Request, principal: Principal, form: Form | None) -> Response:
    """Delete the inbox, once the admin ticked that they mean it."""
    assert form is not None
    ctx = web_context(request)
    inbox_id = path_id(request, "inbox_id")
    try:
        if form_value(form, "confirm") != "1":
            raise FormError("tick the box to confirm that intake stops for good")
        deleted = await form_act(delete_inbox(ctx, principal, inbox_id))
    except FormError as exc:
        return await refused(ctx, principal, inbox_id, exc, "delete")
    done = "deleted" if deleted.provider in (None, PROVIDER_UNDONE) else "deleted_here_only"
    return redirect(f"/admin/inboxes/{inbox_id}?done={done}")


async def members_post(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    inbox_id = path_id(request, "inbox_id")
    try:
        await form_act(inbox_detail(ctx, inbox_id))
        ids = form_ids(form, "agent_ids")
        await form_act(set_members_checked(ctx, inbox_id, ids))
    except FormError as exc:
        return await refused(ctx, principal, inbox_id, exc, "members")
    return redirect(f"/admin/inboxes/{inbox_id}?done=members#members")


async def set_members_checked(ctx: WebContext, inbox_id: int, agent_ids: list[int]) -> None:
    try:
        await set_members_of(ctx, inbox_id, agent_ids)
    except InboxError as exc:
        raise FormError(str(exc)) from None


async def assignment_post(
    request: Request, principal: Principal, form: Form | None
) -> Response:
    assert form is not None
    ctx = web_context(request)
    inbox_id = path_id(request, "inbox_id")
    try:
        await form_act(assign_actions.update_inbox_assignment(
            ctx.inbox, principal, inbox_id=inbox_id,
            auto_assign=form_value(form, "auto_assign") == "1",
            assignment_policy=form_value(form, "assignment_policy") or "round_robin",
            requeue_on_offline=form_value(form, "requeue_on_offline") == "1"))
    except FormError as exc:
        return await refused(ctx, principal, inbox_id, exc, "assignment")
    return redirect(f"/admin/inboxes/{inbox_id}?done=assignment#assignment")


async def csat_post(request: Request, principal: Principal, form: Form | None) -> Response:
    assert form is not None
    ctx = web_context(request)
    inbox_id = path_id(request, "inbox_id")
    try:
        await form_act(csat.set_inbox_survey(ctx.inbox, principal, inbox_id,
                                             form_value(form, "csat_survey") == "1"))
    except FormError as exc:
        return await refused(ctx, principal, inbox_id, exc, "csat")
    return redirect(f"/admin/inboxes/{inbox_id}?done=csat#csat")


ROUTES: list[BaseRoute] = [
    Route("/admin/inboxes", admin_page(inboxes_get), methods=["GET"]),
    Route("/admin/inboxes/new", admin_page(new_inbox_get), methods=["GET"]),
    Route("/admin/inboxes", admin_page(new_inbox_post), methods=["POST"]),
    Route("/admin/inboxes/test", admin_page(new_inbox_test), methods=["POST"]),
    Route("/admin/inboxes/{inbox_id:id}", admin_page(inbox_get), methods=["GET"]),
    Route("/admin/inboxes/{inbox_id:id}/test", admin_page(test_post), methods=["POST"]),
    Route("/admin/inboxes/{inbox_id:id}/delete", admin_page(delete_post), methods=["POST"]),
    Route("/admin/inboxes/{inbox_id:id}", admin_page(inbox_post), methods=["POST"]),
    Route("/admin/inboxes/{inbox_id:id}/members", admin_page(members_post), methods=["POST"]),
    Route("/admin/inboxes/{inbox_id:id}/assignment", admin_page(assignment_post),
          methods=["POST"]),
    Route("/admin/inboxes/{inbox_id:id}/csat", admin_page(csat_post), methods=["POST"]),
]
