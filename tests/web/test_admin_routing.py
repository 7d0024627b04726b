"""The routing rules page: a lead adds a rule for their inbox in words, and it routes."""

from __future__ import annotations

import html

from tests.helpers import PASSWORD, Stack, eventually, message
from tests.web.test_admin_pages import _field, _form_login


async def test_a_lead_adds_switches_off_and_removes_a_routing_rule(stack: Stack) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/teams", json={
        "name": "Billing desk", "member_ids": [stack.ids["alice"]],
        "inbox_ids": [stack.ids["support"]]})
    assert made.status_code == 201, made.text
    team = made.json()["id"]
    lena = await stack.add_agent("lena", role="lead", inboxes=("support",))
    assert (await admin.http.patch(f"/api/v1/teams/{team}", json={
        "member_ids": [stack.ids["alice"], lena]})).status_code == 200  # a lead of it
    browser, csrf = await _form_login(stack, "lena")
    page = await browser.get("/admin/routing")
    assert page.status_code == 200 and "No rules" in page.text
    assert "Every inbox" not in page.text.split('id="rule-new"')[1].split("</select>")[0]

    bad = await browser.post("/admin/routing", data={
        "csrf_token": csrf, "name": "Billing", "inbox_id": str(stack.ids["support"]),
        "team_id": str(team), "keywords": "invoice", "languages": "not a language!"})
    assert bad.status_code == 422
    assert "is not a language tag" in html.unescape(bad.text) and 'value="invoice"' in bad.text
    everywhere = await browser.post("/admin/routing", data={
        "csrf_token": csrf, "name": "All", "inbox_id": "", "team_id": str(team)})
    assert everywhere.status_code == 403 and "Only admins keep rules for every inbox" in (
        everywhere.text)

    added = await browser.post("/admin/routing", data={
        "csrf_token": csrf, "name": "Billing", "inbox_id": str(stack.ids["support"]),
        "team_id": str(team), "channels": ["api"], "keywords": "invoice, refund",
        "languages": "", "position": "5"})
    assert added.status_code == 303
    rules = (await admin.http.get("/api/v1/assignment-rules")).json()
    assert [(r["name"], r["position"], r["conditions"]) for r in rules] == [("Billing", 5, [
        {"field": "channel", "op": "in", "value": ["api"]},
        {"field": "keywords", "op": "contains_any", "value": ["invoice", "refund"]}])]
    listed = (await browser.get("/admin/routing")).text
    assert "message mentions invoice, refund" in listed and "Billing desk" in listed

    # The rule routes: a message about an invoice lands with the team.
    assert (await stack.inbound("support", [message("r-1", "My invoice is wrong")])
            ).status_code == 202

    async def routed() -> bool:
        found = (await admin.http.get("/api/v1/conversations")).json()["items"]
        return bool(found) and found[0]["team_id"] == team

    await eventually(routed)

    rule = rules[0]["id"]
    off = await browser.post(f"/admin/routing/{rule}", data={"csrf_token": csrf,
                                                             "position": "2"})
    assert off.status_code == 303
    view = (await admin.http.get("/api/v1/assignment-rules")).json()[0]
    assert (view["is_active"], view["position"]) == (False, 2)
    gone = await browser.post(f"/admin/routing/{rule}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert (await admin.http.get("/api/v1/assignment-rules")).json() == []
    alice, _ = await _form_login(stack, "alice")
    assert (await alice.get("/admin/routing")).status_code == 403


async def test_an_installation_without_inboxes_opens_on_the_checklist(stack: Stack) -> None:
    admin = await stack.login("admin")
    for name in ("support", "sales"):
        # The stack's inboxes, gone from the admin's view: as on a fresh installation.
        from inbox.db import Database
        from inbox.models import Inbox

        db = Database(stack.settings.sqlalchemy_url)
        try:
            async with db.write() as session:
                row = await session.get(Inbox, stack.ids[name])
                await session.delete(row)
        finally:
            await db.close()
    browser = stack.client()
    form = await browser.get("/login")
    await browser.post("/login", data={"csrf_token": _field(form.text, "csrf_token"),
                                       "email": "admin@example.com", "password": PASSWORD})
    home = await browser.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/admin/inboxes"
    page = (await browser.get("/admin/inboxes")).text
    assert 'id="checklist"' in page and "Connect a channel" in page
    assert "No inbox yet" in page
    assert (await admin.http.get("/api/v1/inboxes")).json() == []


async def test_the_automation_page_switches_moves_and_removes_a_rule(stack: Stack) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/automation-rules", json={
        "name": "Tidy", "inbox_id": stack.ids["support"], "trigger": "message_received",
        "actions": [{"type": "set_priority", "priority": "low"}]})
    assert made.status_code == 201, made.text
    rule = made.json()["id"]
    browser, csrf = await _form_login(stack, "admin")
    moved = await browser.post(f"/admin/automation/{rule}", data={
        "csrf_token": csrf, "position": "3"})
    assert moved.status_code == 303 and moved.headers["location"].endswith("done=saved")
    view = (await admin.http.get(f"/api/v1/automation-rules/{rule}")).json()
    assert (view["is_active"], view["position"]) == (False, 3)
    unknown = await browser.post("/admin/automation/999999/delete", data={"csrf_token": csrf})
    assert unknown.status_code == 404 and "Tidy" in unknown.text  # the page, with why
    gone = await browser.post(f"/admin/automation/{rule}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303 and gone.headers["location"].endswith("done=deleted")
    assert (await admin.http.get(f"/api/v1/automation-rules/{rule}")).status_code == 404
    forged = await browser.post(f"/admin/automation/{rule}/delete", data={"csrf_token": "x"})
    assert forged.status_code == 403
