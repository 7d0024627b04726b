"""Inboxes in the admin area and the API: connect from a channel's form, change settings
without ever showing a secret, members and assignment, the first admin's checklist."""

from __future__ import annotations

import html
import re

from tests.helpers import Stack, eventually, message
from tests.web.test_admin_pages import _form_login


def _created_id(location: str) -> int:
    found = re.fullmatch(r"/admin/inboxes/(\d+)\?done=created", location)
    assert found, location
    return int(found.group(1))


async def test_an_admin_connects_an_api_inbox_from_its_form(stack: Stack) -> None:
    browser, csrf = await _form_login(stack, "admin")
    listing = await browser.get("/admin/inboxes")
    assert listing.status_code == 200 and 'id="connect-api"' in listing.text
    form = await browser.get("/admin/inboxes/new?channel=api")
    assert 'name="setting.secret"' in form.text and 'type="password"' in form.text
    assert 'name="setting.outbound_url"' in form.text

    missing = await browser.post("/admin/inboxes", data={
        "csrf_token": csrf, "channel": "api", "name": "Shop", "setting.outbound_url": ""})
    assert missing.status_code == 422
    assert "Settings.secret: required" in html.unescape(missing.text)
    assert 'value="Shop"' in missing.text  # what was typed stays in the form

    made = await browser.post("/admin/inboxes", data={
        "csrf_token": csrf, "channel": "api", "name": "Shop", "auto_assign": "1",
        "setting.secret": "shop-secret-123", "setting.outbound_url": ""})
    assert made.status_code == 303
    inbox_id = _created_id(made.headers["location"])
    page = await browser.get(made.headers["location"])
    assert "The inbox is connected" in page.text and "shop-secret-123" not in page.text
    assert f"/webhooks/api/{inbox_id}" in page.text

    admin = await stack.login("admin")
    detail = (await admin.http.get(f"/api/v1/inboxes/{inbox_id}")).json()
    secret = next(s for s in detail["settings"] if s["name"] == "secret")
    assert secret == {**secret, "value": None, "is_set": True, "secret": True}
    assert detail["member_ids"] == [stack.ids["admin"]] and detail["auto_assign"] is True

    # Saving the form with the secret left empty keeps it: a message signed with it lands.
    renamed = await browser.post(f"/admin/inboxes/{inbox_id}", data={
        "csrf_token": csrf, "name": "Shop orders", "setting.secret": "",
        "setting.outbound_url": ""})
    assert renamed.status_code == 303
    stack.ids["shop"] = inbox_id
    accepted = await stack.inbound("shop", [message("shop-1", "Where is my order?")],
                                   secret="shop-secret-123")
    assert accepted.status_code == 202, accepted.text
    names = {i["id"]: i["name"] for i in (await admin.http.get("/api/v1/inboxes")).json()}
    assert names[inbox_id] == "Shop orders"


async def test_the_widget_inbox_shows_its_snippet_and_checks_its_settings(stack: Stack) -> None:
    browser, csrf = await _form_login(stack, "admin")
    form = await browser.get("/admin/inboxes/new?channel=webchat")
    # Generated settings are not asked for; the colour is a colour picker.
    assert 'name="setting.public_token"' not in form.text
    assert 'name="setting.accent_color"' in form.text and 'type="color"' in form.text
    base = {"csrf_token": csrf, "channel": "webchat", "name": "Website",
            "setting.greeting": "Hello from the shop!", "setting.accent_color": "#aa3300"}
    bad_hours = await browser.post("/admin/inboxes", data={
        **base, "setting.business_hours": "{mon: 9-5}"})
    assert bad_hours.status_code == 422 and "Business_hours: not valid JSON" in bad_hours.text
    bad_origin = await browser.post("/admin/inboxes", data={
        **base, "setting.allowed_origins": "shop.example.com"})
    assert bad_origin.status_code == 422
    assert "allowed_origins: must be a list of http(s) origins" in bad_origin.text

    made = await browser.post("/admin/inboxes", data={
        **base, "setting.allowed_origins": "https://shop.example.com\n\nhttps://www.example.com",
        "setting.business_hours": '{"timezone": "Europe/Paris", "days": {"mon": "09:00-17:00"}}'})
    assert made.status_code == 303, made.text
    inbox_id = _created_id(made.headers["location"])
    page = (await browser.get(f"/admin/inboxes/{inbox_id}")).text
    snippet = re.search(r'id="widget-snippet"[^>]*>([^<]+)</textarea>', page)
    assert snippet
    tag = html.unescape(snippet.group(1))
    token = re.search(r'data-inbox="([^"]+)"', tag)
    assert token and tag.startswith(f'<script src="{stack.settings.base_url.rstrip("/")}'
                                    '/widget.js"')
    assert "https://shop.example.com\nhttps://www.example.com" in html.unescape(page)
    assert "Hello from the shop!" in page

    # The snippet's token works: the widget answers for it, with the greeting given here.
    visitor = stack.client()
    session = await visitor.post(f"/widget/api/{token.group(1)}/session", json={},
                                 headers={"Origin": "https://shop.example.com"})
    assert session.status_code == 200, session.text
    assert session.json()["config"]["greeting"] == "Hello from the shop!"

    # A change of greeting is seen by the next visitor; the secret stays what it was.
    changed = await browser.post(f"/admin/inboxes/{inbox_id}", data={
        "csrf_token": csrf, "name": "Website", "setting.greeting": "Back at 9!",
        "setting.accent_color": "#aa3300",
        "setting.allowed_origins": "https://shop.example.com"})
    assert changed.status_code == 303
    async def greeting() -> str | None:
        again = await stack.client().post(f"/widget/api/{token.group(1)}/session", json={
            "token": session.json()["token"]}, headers={"Origin": "https://shop.example.com"})
        # The visitor's token is still good (the secret stayed): the session resumes.
        assert again.status_code == 200, again.text
        return again.json()["config"]["greeting"] == "Back at 9!" or None

    await eventually(greeting)


async def test_members_and_assignment_from_the_inbox_page(stack: Stack) -> None:
    browser, csrf = await _form_login(stack, "admin")
    support = stack.ids["support"]
    saved = await browser.post(f"/admin/inboxes/{support}/members", data={
        "csrf_token": csrf, "agent_ids": [str(stack.ids["alice"]), str(stack.ids["bob"])]})
    assert saved.status_code == 303
    bob = await stack.login("bob")
    assert support in {i["id"] for i in (await bob.http.get("/api/v1/inboxes")).json()}
    unknown = await browser.post(f"/admin/inboxes/{support}/members", data={
        "csrf_token": csrf, "agent_ids": ["999999"]})
    assert unknown.status_code == 422 and "No agent with id 999999." in unknown.text

    policy = await browser.post(f"/admin/inboxes/{support}/assignment", data={
        "csrf_token": csrf, "assignment_policy": "least_loaded", "requeue_on_offline": "1"})
    assert policy.status_code == 303
    admin = await stack.login("admin")
    view = (await admin.http.get(f"/api/v1/inboxes/{support}")).json()
    assert (view["auto_assign"], view["assignment_policy"], view["requeue_on_offline"]) == (
        False, "least_loaded", True)
    missing = await browser.get("/admin/inboxes/999999")
    assert missing.status_code == 404


async def test_inbox_settings_over_the_api(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    sales = stack.ids["sales"]
    kinds = {c["kind"]: c for c in (await admin.http.get("/api/v1/channels")).json()}
    assert {"api", "webchat", "email"} <= set(kinds)
    assert {s["name"]: s["secret"] for s in kinds["api"]["settings"]} == {
        "secret": True, "outbound_url": False}
    for method, path, body in (("GET", "/api/v1/channels", None),
                               ("GET", f"/api/v1/inboxes/{sales}", None),
                               ("PATCH", f"/api/v1/inboxes/{sales}", {"name": "Mine"})):
        refused = await alice.http.request(method, path, json=body)
        assert refused.status_code == 403, (method, path)
    unknown = await admin.http.patch(f"/api/v1/inboxes/{sales}",
                                     json={"settings": {"colour": "red"}})
    assert unknown.status_code == 422
    assert "settings.colour: not a setting of the api channel" in unknown.text
    blank = await admin.http.patch(f"/api/v1/inboxes/{sales}", json={"name": "  "})
    assert blank.status_code == 422
    removed = await admin.http.patch(f"/api/v1/inboxes/{sales}", json={"settings": {
        "secret": None}})
    assert removed.status_code == 422 and "settings.secret: required" in removed.text
    assert (await admin.http.patch("/api/v1/inboxes/999999", json={"name": "X"})
            ).status_code == 404
    moved = await admin.http.patch(f"/api/v1/inboxes/{sales}", json={
        "name": "Sales EU", "settings": {"outbound_url": stack.receiver.url}})
    assert moved.status_code == 200 and moved.json()["name"] == "Sales EU"
    detail = (await admin.http.get(f"/api/v1/inboxes/{sales}")).json()
    assert {s["name"]: s["value"] for s in detail["settings"]} == {
        "secret": None, "outbound_url": stack.receiver.url}
    # The secret is unchanged: a message signed with it is still accepted.
    assert (await stack.inbound("sales", [message("s-1", "hi")])).status_code == 202


async def test_the_first_admin_checklist_and_who_may_open_inboxes(stack: Stack) -> None:
    browser, _ = await _form_login(stack, "admin")
    page = (await browser.get("/admin/inboxes")).text
    steps = re.findall(r'<li class="(done|)">', page)
    # Inboxes and agents exist; no website chat yet and no conversation.
    assert steps == ["done", "done", "", ""]
    assert (await stack.inbound("support", [message("c-1", "Hello")])).status_code == 202
    alice, _ = await _form_login(stack, "alice")
    assert (await alice.get("/admin/inboxes")).status_code == 403
    assert (await alice.get("/admin/inboxes/new?channel=api")).status_code == 403
    assert (await stack.client().get("/admin/inboxes")).headers["location"] == "/login"
