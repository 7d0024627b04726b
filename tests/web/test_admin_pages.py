"""The admin pages, the invitation page and two-factor settings, as plain HTML forms."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pyotp

from hub.types import utcnow
from tests.helpers import PASSWORD, Stack, make_team


def _field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, page
    return html.unescape(found.group(1))


async def _form_login(stack: Stack, name: str) -> tuple[httpx.AsyncClient, str]:
    """A browser-like client logged in through the form, and its session's CSRF token."""
    client = stack.client()
    page = await client.get("/login")
    done = await client.post("/login", data={"csrf_token": _field(page.text, "csrf_token"),
                                             "email": f"{name}@example.com",
                                             "password": PASSWORD})
    assert done.status_code == 303
    home = await client.get("/")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', home.text)
    assert csrf
    return client, csrf.group(1)


async def test_admin_pages_are_for_admins_only(stack: Stack) -> None:
    anonymous = stack.client()
    for path in ("/admin/agents", "/admin/teams"):
        assert (await anonymous.get(path)).headers["location"] == "/login"
    alice, alice_csrf = await _form_login(stack, "alice")
    home = await alice.get("/")
    assert re.search(r'id="admin-link" class="ghost-link" hidden', home.text)
    for path in ("/admin/agents", "/admin/teams"):
        refused = await alice.get(path)
        assert refused.status_code == 403 and "Admins only" in refused.text
    promote = await alice.post(f"/admin/agents/{stack.ids['alice']}", data={
        "csrf_token": alice_csrf, "role": "admin", "name": "Alice"})
    assert promote.status_code == 403

    admin, _ = await _form_login(stack, "admin")
    home = await admin.get("/")
    assert re.search(r'id="admin-link" class="ghost-link">Admin</a>', home.text)
    page = await admin.get("/admin/agents")
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    # A form without the session's token (a cross-site post) changes nothing.
    forged = await admin.post(f"/admin/agents/{stack.ids['alice']}",
                              data={"role": "admin", "name": "Alice"})
    assert forged.status_code == 403
    agents = (await (await stack.login("admin")).http.get("/api/v1/admin/agents")).json()
    assert {a["id"]: a["role"] for a in agents}[stack.ids["alice"]] == "agent"


async def test_admin_edits_agents_and_invites_through_the_forms(stack: Stack) -> None:
    admin, csrf = await _form_login(stack, "admin")
    alice = f"/admin/agents/{stack.ids['alice']}"
    saved = await admin.post(alice, data={
        "csrf_token": csrf, "name": "Alice L.", "role": "lead", "capacity": "4",
        "inbox_ids": [str(stack.ids["support"]), str(stack.ids["sales"])]})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/admin/agents/{stack.ids['alice']}?done=saved"
    page = await admin.get(saved.headers["location"])
    assert "Saved." in page.text and "Alice L." in page.text
    view = {a["id"]: a for a in (await (await stack.login("admin")).http.get(
        "/api/v1/admin/agents")).json()}[stack.ids["alice"]]
    assert view["role"] == "lead" and view["capacity"] == 4
    assert view["inbox_ids"] == sorted([stack.ids["support"], stack.ids["sales"]])

    bad = await admin.post(alice, data={"csrf_token": csrf, "name": "Alice L.",
                                        "role": "lead", "inbox_ids": ["9999"]})
    assert bad.status_code == 422 and "No inbox with id 9999." in bad.text
    last = await admin.post(f"/admin/agents/{stack.ids['admin']}", data={
        "csrf_token": csrf, "name": "Admin", "role": "agent"})
    assert last.status_code == 422 and "last active admin" in last.text

    deactivated = await admin.post(alice, data={"csrf_token": csrf, "is_active": "0"})
    assert deactivated.headers["location"] == f"{alice}?done=deactivated"
    page = await admin.get(alice)
    assert f'id="reactivate-{stack.ids["alice"]}"' in page.text

    invited = await admin.post("/admin/invitations", data={
        "csrf_token": csrf, "email": "dora@example.com", "name": "Dora", "role": "agent",
        "expires_in_hours": "48", "inbox_ids": [str(stack.ids["support"])]})
    assert invited.status_code == 201
    link = re.search(r'id="invite-link" class="link-box" readonly value="([^"]+)"',
                     invited.text)
    assert link
    url = html.unescape(link.group(1))
    # The link is shown once: the page afterwards lists the invitation without it.
    listing = await admin.get("/admin/agents")
    assert "dora@example.com" in listing.text and url not in listing.text
    bad_invite = await admin.post("/admin/invitations", data={
        "csrf_token": csrf, "email": "alice@example.com", "role": "agent",
        "expires_in_hours": "48"})
    assert bad_invite.status_code == 422 and "already exists" in bad_invite.text

    dora = stack.client()
    path = urlsplit(url).path
    form = await dora.get(path)
    assert form.status_code == 200 and "dora@example.com" in form.text
    mismatch = await dora.post(path, data={
        "csrf_token": _field(form.text, "csrf_token"), "name": "Dora",
        "password": "doras passphrase", "confirm_password": "something else"})
    assert mismatch.status_code == 422 and "do not match" in mismatch.text
    joined = await dora.post(path, data={
        "csrf_token": _field(mismatch.text, "csrf_token"), "name": "Dora D.",
        "password": "doras passphrase", "confirm_password": "doras passphrase"})
    assert joined.status_code == 303 and joined.headers["location"] == "/"
    me = (await dora.get("/api/v1/me")).json()
    assert me["name"] == "Dora D." and me["role"] == "agent"
    used = await stack.client().get(path)
    assert used.status_code == 410 and "already used" in used.text


async def test_admin_manages_teams_through_the_forms(stack: Stack) -> None:
    admin, csrf = await _form_login(stack, "admin")
    created = await admin.post("/admin/teams", data={
        "csrf_token": csrf, "name": "Billing", "assignment_policy": "least_loaded",
        "member_ids": [str(stack.ids["alice"])], "inbox_ids": [str(stack.ids["sales"])]})
    assert created.status_code == 303
    team_id = int(created.headers["location"].rsplit("-", 1)[1])
    api = (await stack.login("admin")).http
    team = (await api.get("/api/v1/teams")).json()[0]
    assert team == {"id": team_id, "name": "Billing", "member_ids": [stack.ids["alice"]],
                    "inbox_ids": [stack.ids["sales"]]}
    duplicate = await admin.post("/admin/teams", data={"csrf_token": csrf, "name": "billing"})
    assert duplicate.status_code == 422 and "already exists" in duplicate.text
    edited = await admin.post(f"/admin/teams/{team_id}", data={
        "csrf_token": csrf, "name": "Billing & refunds", "assignment_policy": "round_robin",
        "member_ids": [str(stack.ids["bob"])]})
    assert edited.status_code == 303
    page = await admin.get("/admin/teams")
    assert "Billing &amp; refunds" in page.text
    team = (await api.get("/api/v1/teams")).json()[0]
    assert team["member_ids"] == [stack.ids["bob"]] and team["inbox_ids"] == []
    deleted = await admin.post(f"/admin/teams/{team_id}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303
    assert (await api.get("/api/v1/teams")).json() == []


async def test_two_factor_settings_page(stack: Stack) -> None:
    alice, csrf = await _form_login(stack, "alice")
    page = await alice.get("/settings/two-factor")
    assert page.status_code == 200 and "is <strong>off</strong>" in page.text
    setup = await alice.post("/settings/two-factor", data={"csrf_token": csrf,
                                                           "action": "setup"})
    secret = re.search(r'<code id="totp-secret" class="secret">([A-Z2-7]+)</code>', setup.text)
    assert secret and "otpauth://totp/Switchboard:alice%40example.com" in setup.text
    totp = pyotp.TOTP(secret.group(1))
    now = utcnow()
    wrong = await alice.post("/settings/two-factor", data={
        "csrf_token": csrf, "action": "enable",
        "code": next(c for c in ("000000", "111111", "222222", "333333")
                     if c not in {totp.at(now + timedelta(seconds=s)) for s in (-30, 0, 30)})})
    assert wrong.status_code == 422 and "not right" in wrong.text
    assert secret.group(1) in wrong.text  # still set up, try again
    on = await alice.post("/settings/two-factor", data={
        "csrf_token": csrf, "action": "enable", "code": totp.at(now)})
    assert on.status_code == 200 and "is <strong>on</strong>" in on.text
    assert secret.group(1) not in on.text  # never shown again once on
    login = await stack.client().post("/api/v1/auth/login", json={
        "email": "alice@example.com", "password": PASSWORD})
    assert login.json()["error"]["code"] == "totp_required"
    off = await alice.post("/settings/two-factor", data={
        "csrf_token": csrf, "action": "disable", "password": PASSWORD})
    assert off.status_code == 200 and "is <strong>off</strong>" in off.text
    forged = await alice.post("/settings/two-factor", data={"action": "setup"})
    assert forged.status_code == 403


async def test_leads_manage_labels_from_the_admin_pages(stack: Stack) -> None:
    await stack.add_agent("lena", role="lead")
    await make_team(stack, "Billing desk", ("lena",))
    lena, csrf = await _form_login(stack, "lena")
    home = await lena.get("/")
    assert re.search(r'id="admin-link" class="ghost-link">Admin</a>', home.text)
    assert (await lena.get("/admin")).headers["location"] == "/admin/labels"
    assert (await lena.get("/admin/agents")).status_code == 403  # agents stay the admins'
    page = await lena.get("/admin/labels")
    assert page.status_code == 200 and "No labels yet." in page.text
    assert 'href="/admin/agents"' not in page.text  # the nav shows what a lead may open
    made = await lena.post("/admin/labels", data={"csrf_token": csrf, "name": "Billing",
                                                  "color": "#1c7ed6"})
    assert made.status_code == 303 and made.headers["location"].endswith("done=label_created")
    listed = await lena.get("/admin/labels?done=label_created")
    assert 'class="label-name">Billing<' in listed.text and "The label was added" in listed.text
    twice = await lena.post("/admin/labels", data={"csrf_token": csrf, "name": "BILLING"})
    assert twice.status_code == 422 and "exists already" in twice.text
    forged = await lena.post("/admin/labels", data={"name": "Sneaky"})
    assert forged.status_code == 403
    assert "Billing desk" in listed.text.split('class="label-name">Billing<', 1)[1][:200]
    label_id = re.search(r'action="/admin/labels/(\d+)/delete"', listed.text)
    assert label_id
    # The workspace's labels are the admins': Lena sees them without a Delete button.
    admin_api = await stack.login("admin")
    vip = (await admin_api.http.post("/api/v1/labels", json={"name": "VIP"})).json()
    shown = (await lena.get("/admin/labels")).text
    assert 'class="label-name">VIP<' in shown
    assert f'action="/admin/labels/{vip["id"]}/delete"' not in shown
    refused_delete = await lena.post(f"/admin/labels/{vip['id']}/delete",
                                     data={"csrf_token": csrf})
    assert refused_delete.status_code == 403
    gone = await lena.post(f"/admin/labels/{label_id.group(1)}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert 'class="label-name">Billing<' not in (await lena.get("/admin/labels")).text

    alice, alice_csrf = await _form_login(stack, "alice")
    assert (await alice.get("/admin/labels")).status_code == 403
    refused = await alice.post("/admin/labels", data={"csrf_token": alice_csrf, "name": "Mine"})
    assert refused.status_code == 403


async def test_leads_manage_canned_responses_with_checked_placeholders(stack: Stack) -> None:
    await stack.add_agent("lena", role="lead")
    await make_team(stack, "Billing desk", ("lena",))
    lena, csrf = await _form_login(stack, "lena")
    page = await lena.get("/admin/canned")
    assert page.status_code == 200 and "{{contact.first_name}}" in page.text
    bad = await lena.post("/admin/canned", data={
        "csrf_token": csrf, "shortcut": "hi", "title": "Hi", "text": "Hi {{contact.nmae}}"})
    assert bad.status_code == 422 and "contact.nmae" in html.unescape(bad.text)
    assert "Hi {{contact.nmae}}" in html.unescape(bad.text)  # what was typed is kept
    made = await lena.post("/admin/canned", data={
        "csrf_token": csrf, "shortcut": "hi", "title": "Greeting",
        "text": "Hi {{contact.first_name}}!"})
    assert made.status_code == 303
    listed = await lena.get("/admin/canned")
    item = re.search(r'action="/admin/canned/(\d+)"', listed.text)
    assert item and "/hi" in listed.text
    wrong = await lena.post(f"/admin/canned/{item.group(1)}", data={
        "csrf_token": csrf, "shortcut": "hi", "title": "Greeting", "text": "{{agent.nmae}}"})
    assert wrong.status_code == 422
    section = html.unescape(wrong.text).split(f'id="canned-{item.group(1)}"', 1)[1]
    assert "agent.nmae" in section.split("</section>", 1)[0]  # shown beside that response
    saved = await lena.post(f"/admin/canned/{item.group(1)}", data={
        "csrf_token": csrf, "shortcut": "hello", "title": "Greeting",
        "text": "Hello {{contact.first_name}}!"})
    assert saved.status_code == 303
    admin = await stack.login("admin")
    [row] = (await admin.http.get("/api/v1/canned-responses")).json()
    assert (row["shortcut"], row["text"]) == ("hello", "Hello {{contact.first_name}}!")
    deleted = await lena.post(f"/admin/canned/{item.group(1)}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303
    assert (await admin.http.get("/api/v1/canned-responses")).json() == []


async def test_a_row_of_the_agents_table_changes_role_capacity_and_availability(
    stack: Stack,
) -> None:
    admin, csrf = await _form_login(stack, "admin")
    alice = stack.ids["alice"]
    listing = await admin.get("/admin/agents")
    assert f'id="row-{alice}"' in listing.text and 'data-filter="agent-table"' in listing.text
    saved = await admin.post(f"/admin/agents/{alice}", data={
        "csrf_token": csrf, "inline": "1", "role": "lead", "capacity": "7",
        "availability": "away"})
    assert saved.headers["location"] == f"/admin/agents?done=saved#agent-{alice}"
    view = {a["id"]: a for a in (await (await stack.login("admin")).http.get(
        "/api/v1/admin/agents")).json()}[alice]
    # A row says nothing of inboxes or teams: they stay as they were.
    assert (view["role"], view["capacity"], view["availability"], view["inbox_ids"]) == (
        "lead", 7, "away", [stack.ids["support"]])
    bad = await admin.post(f"/admin/agents/{alice}", data={
        "csrf_token": csrf, "inline": "1", "role": "lead", "capacity": "lots"})
    assert bad.status_code == 422 and 'id="row-error"' in bad.text
    assert "Capacity: a whole number" in bad.text and 'id="agent-table"' in bad.text
    detail = await admin.get(f"/admin/agents/{alice}")
    assert detail.status_code == 200 and 'name="inbox_ids"' in detail.text
    assert (await admin.get("/admin/agents/999999")).status_code == 404
