"""The SLA policies page: an admin adds a policy with office hours in words, sees it listed,
switches it off, moves and removes it; mistakes are refused with the reason and the form
kept; leads read the page but may not change it; agents do not see it."""

from __future__ import annotations

import html

from tests.helpers import Stack
from tests.web.test_admin_pages import _form_login


async def test_an_admin_keeps_sla_policies_on_the_page_and_leads_read_them(stack: Stack) -> None:
    admin = await stack.login("admin")
    browser, csrf = await _form_login(stack, "admin")
    page = await browser.get("/admin/sla")
    assert page.status_code == 200 and "No policy yet" in page.text
    support = str(stack.ids["support"])

    bad_calendar = await browser.post("/admin/sla", data={
        "csrf_token": csrf, "name": "Office", "inbox_id": support,
        "first_response_minutes": "60", "calendar": "Mars/Olympus; mon-fri 09:00-17:00"})
    assert bad_calendar.status_code in (400, 422)
    assert "Mars/Olympus" in html.unescape(bad_calendar.text)
    assert 'value="Office"' in bad_calendar.text  # the form is kept
    no_target = await browser.post("/admin/sla", data={
        "csrf_token": csrf, "name": "Nothing", "inbox_id": support})
    assert no_target.status_code in (400, 422) and "target" in no_target.text
    not_minutes = await browser.post("/admin/sla", data={
        "csrf_token": csrf, "name": "Soon", "first_response_minutes": "soon"})
    assert not_minutes.status_code == 422 and "A number" in not_minutes.text
    assert (await admin.http.get("/api/v1/sla-policies")).json() == []

    added = await browser.post("/admin/sla", data={
        "csrf_token": csrf, "name": "Office hours", "inbox_id": support, "position": "3",
        "priorities": ["high", "urgent"], "first_response_minutes": "60",
        "resolution_minutes": "1440", "warn_minutes": "10",
        "calendar": "Europe/Berlin; mon-fri 09:00-17:00; holidays DE-BY",
        "pause_when_waiting": "1"})
    assert added.status_code == 303, added.text
    [policy] = (await admin.http.get("/api/v1/sla-policies")).json()
    assert (policy["name"], policy["position"], policy["inbox_id"]) == (
        "Office hours", 3, stack.ids["support"])
    assert policy["priorities"] == ["high", "urgent"]
    assert (policy["first_response_minutes"], policy["next_response_minutes"],
            policy["resolution_minutes"], policy["warn_minutes"]) == (60, None, 1440, 10)
    assert policy["calendar"]["time_zone"] == "Europe/Berlin"
    assert policy["calendar"]["hours"]["fri"] == [["09:00", "17:00"]]
    assert (policy["calendar"]["country"], policy["calendar"]["subdivision"]) == ("DE", "BY")
    assert policy["pause_when_waiting"] is True and policy["is_active"] is True
    listed = html.unescape((await browser.get("/admin/sla?done=created")).text)
    assert "The policy was added" in listed
    assert "first 60.0 min" in listed and "Support · high, urgent" in listed
    assert "Europe/Berlin; mon 09:00-17:00" in listed and "holidays DE-BY" in listed

    off = await browser.post(f"/admin/sla/{policy['id']}", data={"csrf_token": csrf,
                                                                 "position": "1"})
    assert off.status_code == 303
    [changed] = (await admin.http.get("/api/v1/sla-policies")).json()
    assert (changed["is_active"], changed["position"]) == (False, 1)

    # A lead reads the policies that can apply in their inboxes, without the form.
    await stack.add_agent("lena", role="lead", inboxes=("support",))
    lead, lead_csrf = await _form_login(stack, "lena")
    seen = await lead.get("/admin/sla")
    assert seen.status_code == 200 and "Office hours" in seen.text
    assert 'id="policy-form"' not in seen.text
    refused = await lead.post("/admin/sla", data={
        "csrf_token": lead_csrf, "name": "Mine", "first_response_minutes": "5"})
    assert refused.status_code == 403
    agent, _ = await _form_login(stack, "alice")
    assert (await agent.get("/admin/sla")).status_code in (302, 303, 403)

    gone = await browser.post(f"/admin/sla/{policy['id']}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert (await admin.http.get("/api/v1/sla-policies")).json() == []
