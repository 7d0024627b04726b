"""The inbox as a team in headless Chromium: bulk reassignment, capacity, the queue, mentions."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import Inbox, open_inbox
from tests.helpers import PASSWORD, Agent, Stack, eventually, message


async def _conversations(api: Agent, **params: Any) -> list[dict[str, Any]]:
    """Conversations as the API lists them for this agent (newest first)."""
    page = await api.http.get("/api/v1/conversations", params={"limit": 100, **params})
    assert page.status_code == 200, page.text
    return page.json()["items"]  # type: ignore[no-any-return]


async def _stored(api: Agent, count: int, **params: Any) -> list[dict[str, Any]]:
    """Wait until the API lists `count` conversations (the webhooks were processed)."""

    async def listed() -> list[dict[str, Any]]:
        found = await _conversations(api, **params)
        return found if len(found) == count else []

    return await eventually(listed)  # type: ignore[no-any-return]


async def _invite_lead(stack: Stack, admin: Agent, name: str, team_id: int) -> None:
    """A team lead, made the way an admin does it: an invitation, accepted."""
    created = await admin.http.post("/api/v1/admin/invitations", json={
        "email": f"{name}@example.com", "name": name.title(), "role": "lead",
        "team_ids": [team_id]})
    assert created.status_code == 201, created.text
    token = urlsplit(created.json()["url"]).path.rsplit("/", 1)[1]
    accepted = await stack.client().post("/api/v1/auth/invitations/accept", json={
        "token": token, "name": name.title(), "password": PASSWORD})
    assert accepted.status_code == 200, accepted.text


async def _mine(inbox: Inbox) -> None:
    await inbox.page.click(".tabs [data-view=mine]")


async def test_a_lead_reassigns_five_conversations_at_once_and_both_lists_change_live(
    stack: Stack, browser: Browser
) -> None:
    admin = await stack.login("admin")
    team = await admin.http.post("/api/v1/teams", json={
        "name": "Support desk", "member_ids": [stack.ids["alice"], stack.ids["bob"]],
        "inbox_ids": [stack.ids["support"]]})
    assert team.status_code == 201, team.text
    await _invite_lead(stack, admin, "carol", team.json()["id"])
    await stack.inbound("support", [message(f"b-{n}", f"question {n}", f"cust-{n}")
                                    for n in range(6)])

    ids = [c["id"] for c in await _stored(admin, 6, inbox_id=stack.ids["support"])]
    given = await admin.http.post("/api/v1/conversations/bulk-assign", json={
        "conversation_ids": ids, "assignee_id": stack.ids["alice"]})
    assert given.status_code == 200 and given.json()["errors"] == [], given.text

    alice = await open_inbox(browser, stack, "alice")
    bob = await open_inbox(browser, stack, "bob")
    carol = await open_inbox(browser, stack, "carol")
    await _mine(alice)
    await _mine(bob)
    await expect(alice.page.locator(".conversation-row")).to_have_count(6)
    await expect(bob.page.locator("#list-empty")).to_be_visible()
    # Plain agents have no checkboxes; the lead has them, and the bulk bar once she selects.
    await expect(alice.page.locator(".row-select").first).to_be_hidden()

    page = carol.page
    rows = page.locator(".conversation-row")
    await expect(rows).to_have_count(6)
    await expect(page.locator("#bulk-bar")).to_be_hidden()
    await rows.nth(0).locator(".row-select").click()
    await rows.nth(4).locator(".row-select").click(modifiers=["Shift"])  # a range: rows 1-5
    await expect(page.locator("#bulk-count")).to_have_text("5 conversations selected")
    await expect(page.locator(".conversation-row.checked")).to_have_count(5)
    chosen = [int(i) for i in await page.locator(".conversation-row.checked").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")]
    await page.select_option("#bulk-target", label="Bob")
    await page.click("#bulk-assign")

    await expect(page.locator("#bulk-bar")).to_be_hidden()
    await expect(page.locator(".conversation-row .assignee", has_text="Bob")).to_have_count(5)
    # Live, without a reload: five leave Alice's list and arrive in Bob's.
    await expect(alice.page.locator(".conversation-row")).to_have_count(1)
    await expect(bob.page.locator(".conversation-row")).to_have_count(5)
    listed = await bob.page.locator(".conversation-row").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.id))")
    assert sorted(listed) == sorted(chosen)
    # Bob was told: five assignment notifications, on his bell.
    await expect(bob.page.locator("#bell-count")).to_have_text("5")
    for agent in (alice, bob, carol):
        agent.assert_clean()


async def test_select_all_on_screen_and_per_item_errors(stack: Stack, browser: Browser) -> None:
    await stack.inbound("support", [message(f"s-{n}", f"ask {n}", f"c-{n}") for n in range(3)])
    admin_api = await stack.login("admin")

    await _stored(admin_api, 3)
    admin = await open_inbox(browser, stack, "admin")
    page = admin.page
    await expect(page.locator(".conversation-row")).to_have_count(3)
    # `x` checks the current row (the open conversation) and unchecks it again.
    await page.locator(".conversation-row .conversation").first.click()
    await expect(page.locator("#thread-title")).not_to_have_text("Loading…")
    await page.keyboard.press("x")
    await expect(page.locator("#bulk-count")).to_have_text("1 conversation selected")
    await expect(page.locator(".conversation-row").first).to_have_class(re.compile("checked"))
    await page.keyboard.press("x")
    await expect(page.locator("#bulk-bar")).to_be_hidden()
    await page.check("#select-all")
    await expect(page.locator("#bulk-count")).to_have_text("3 conversations selected")
    # Bob does not belong to Support: each conversation answers with its own error.
    await page.select_option("#bulk-target", label="Bob")
    await page.click("#bulk-assign")
    errors = page.locator("#bulk-errors li")
    await expect(errors).to_have_count(3)
    await expect(page.locator("#bulk-count")).to_have_text("3 conversations selected")
    await page.click("#bulk-resolve")
    await expect(page.locator("#list-empty")).to_be_visible()  # resolved: gone from "Open"
    await expect(page.locator("#bulk-bar")).to_be_hidden()
    admin.errors = [e for e in admin.errors if "bulk-assign" not in e]
    admin.assert_clean()


async def test_an_agent_at_capacity_gets_the_oldest_waiting_once_one_is_resolved(
    stack: Stack, browser: Browser
) -> None:
    admin = await stack.login("admin")
    changed = await admin.http.patch(f"/api/v1/admin/agents/{stack.ids['alice']}",
                                     json={"capacity": 1})
    assert changed.status_code == 200, changed.text
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    await _mine(alice)
    rows = page.locator(".conversation-row")

    await stack.inbound("support", [message("q-1", "first in", "ada")])
    await expect(rows).to_have_count(1)
    await expect(alice.row("first in")).to_be_visible()
    await stack.inbound("support", [message("q-2", "second, waits longest", "ben")])
    await stack.inbound("support", [message("q-3", "third, waits too", "cy")])

    async def both_waiting() -> bool:
        waiting = [c for c in await _conversations(admin, inbox_id=stack.ids["support"])
                   if c["waiting_since"] is not None and c["assignee_id"] is None]
        return len(waiting) == 2

    await eventually(both_waiting)
    await expect(rows).to_have_count(1)  # at capacity: nothing new for her

    await alice.row("first in").click()
    await expect(page.locator("#thread-title")).to_have_text("Ada")
    await page.keyboard.press("e")  # resolve, in the UI
    await expect(page.locator("#thread-status")).to_have_text("Resolved")
    # The oldest waiting conversation comes to her, live; the newer one keeps waiting.
    await expect(alice.row("second, waits longest")).to_be_visible()
    await expect(rows).to_have_count(1)
    await expect(alice.row("third, waits too")).to_have_count(0)
    waiting = [c for c in await _conversations(admin, inbox_id=stack.ids["support"])
               if c["assignee_id"] is None]
    assert [c["last_message_preview"] for c in waiting] == ["third, waits too"]
    alice.assert_clean()


async def test_a_mention_rings_the_bell_live_and_lists_in_mentions(
    stack: Stack, browser: Browser
) -> None:
    admin = await stack.login("admin")
    members = await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                                   json={"agent_ids": [stack.ids["alice"], stack.ids["bob"]]})
    assert members.status_code < 300, members.text
    # No auto-assignment here: the only notifications are the mentions.
    manual = await admin.http.patch(f"/api/v1/inboxes/{stack.ids['support']}/assignment",
                                    json={"auto_assign": False})
    assert manual.status_code == 200, manual.text
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    bell = page.locator("#bell-count")
    await expect(bell).to_be_hidden()
    await stack.inbound("support", [message("m-1", "Where is my refund?", "ada")])
    await expect(alice.row("Where is my refund?")).to_be_visible()
    conversation = (await _conversations(admin, inbox_id=stack.ids["support"]))[0]

    bob = await stack.login("bob")
    note = await bob.http.post(f"/api/v1/conversations/{conversation['id']}/messages", json={
        "kind": "note", "text": "@Alice could you check the refund?",
        "mention_ids": [stack.ids["alice"]]})
    assert note.status_code == 201, note.text
    await expect(bell).to_have_text("1")  # live, no reload

    await page.click("#bell")
    panel = page.locator("#notifications-panel")
    await expect(panel).to_be_visible()
    items = panel.locator(".notification")
    await expect(items).to_have_count(1)
    await expect(items.first).to_have_class(re.compile("unread"))
    await expect(items.first.locator(".notification-title")).to_have_text(
        "Bob mentioned you · Ada")
    await expect(items.first.locator(".notification-text")).to_contain_text(
        "could you check the refund?")
    await items.first.locator("a").click()
    await expect(panel).to_be_hidden()
    await expect(page.locator("#thread-title")).to_have_text("Ada")
    await expect(page.locator("#message-list .msg.note .text")).to_have_text(
        "@Alice could you check the refund?")
    await expect(bell).to_be_hidden()  # read
    alice_api = await stack.login("alice")
    unread = (await alice_api.http.get("/api/v1/notifications?unread=1")).json()
    assert unread["unread_count"] == 0

    # A second mention, then "mark all read" from the panel.
    await bob.http.post(f"/api/v1/conversations/{conversation['id']}/messages", json={
        "kind": "note", "text": "@Alice and one more thing", "mention_ids": [stack.ids["alice"]]})
    await expect(bell).to_have_text("1")
    await page.click("#bell")
    await expect(items).to_have_count(2)
    await page.click("#notifications-read-all")
    await expect(bell).to_be_hidden()
    await expect(panel.locator(".notification.unread")).to_have_count(0)
    alice.assert_clean()


async def test_search_shows_what_matched_and_replaces_the_list_until_cleared(
    stack: Stack, browser: Browser
) -> None:
    await stack.inbound("support", [message("f-1", "My invoice is wrong", "ada"),
                                    message("f-2", "Where is my parcel?", "ben")])
    await stack.inbound("sales", [message("f-3", "An invoice for the sales team", "cy")])
    alice_api = await stack.login("alice")

    ben = next(c for c in await _stored(alice_api, 2) if c["contact_name"] == "Ben")
    note = await alice_api.http.post(f"/api/v1/conversations/{ben['id']}/messages", json={
        "kind": "note", "text": "Ben asked about his invoice too"})
    assert note.status_code == 201, note.text

    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    await expect(page.locator(".conversation-row")).to_have_count(2)
    await page.keyboard.press("/")
    search = page.locator("#search-input")
    await expect(search).to_be_focused()
    await search.fill("invoice")
    await search.press("Enter")
    results = page.locator("#search-results .search-result")
    await expect(results).to_have_count(2)  # not the Sales one: Alice does not see it
    await expect(page.locator("#conversation-list")).to_be_hidden()
    await expect(page.locator("#search-status")).to_have_text("2 results for “invoice”")
    found_note = results.filter(has=page.locator(".match-kind", has_text="Note"))
    await expect(found_note.locator(".snippet")).to_have_text("Ben asked about his invoice too")
    await expect(found_note.locator("mark")).to_have_text("invoice")
    found_message = results.filter(has=page.locator(".match-kind", has_text="Message"))
    await expect(found_message.locator(".name")).to_have_text("Ada")

    await found_note.locator("a").click()
    await expect(page.locator("#thread-title")).to_have_text("Ben")
    await expect(page.locator("#message-list .msg.note .text")).to_have_text(
        "Ben asked about his invoice too")

    # A filter narrows it: nothing resolved matches.
    await page.click("#search-filters-toggle")
    await page.select_option("#search-status-filter", "resolved")
    await page.click("#search-filters button[type=submit]")
    await expect(page.locator("#search-status")).to_have_text("Nothing found for “invoice”.")
    await expect(results).to_have_count(0)

    await page.click("#search-clear")
    await expect(page.locator("#search-results")).to_be_hidden()
    await expect(page.locator(".conversation-row")).to_have_count(2)
    await expect(search).to_have_value("")

    # A phrase is found as a whole, and marked as one.
    await search.fill('"his invoice" ask')
    await search.press("Enter")
    await expect(page.locator("#search-status")).to_have_text(
        "1 result for “\"his invoice\" ask”")
    await expect(results.locator("mark")).to_have_text(["asked", "his invoice"])
    alice.assert_clean()


# Stand-ins for the browser's Notification and AudioContext: what the page showed and played.
FAKE_NOTIFY = """
window.__shown = []; window.__asked = 0; window.__tones = 0;
window.Notification = class {
  static permission = localStorage.getItem("fake-permission") || "default";
  static requestPermission() {
    window.__asked += 1;
    this.permission = "granted";
    localStorage.setItem("fake-permission", "granted");
    return Promise.resolve("granted");
  }
  constructor(title, options) { window.__shown.push({ title, body: options.body }); }
  addEventListener() {}
  close() {}
};
const quiet = { setValueAtTime() {}, exponentialRampToValueAtTime() {} };
window.AudioContext = class {
  constructor() { this.state = "running"; this.currentTime = 0; this.destination = {}; }
  resume() { return Promise.resolve(); }
  createGain() { return { connect() {}, gain: quiet }; }
  createOscillator() {
    return { frequency: quiet, connect() {}, start() { window.__tones += 1; }, stop() {} };
  }
};
"""


async def test_desktop_notifications_and_sound_are_opt_in_and_skip_my_own_actions(
    stack: Stack, browser: Browser
) -> None:
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    await alice.context.add_init_script(FAKE_NOTIFY)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-live", "true")
    assert await page.evaluate("window.__asked") == 0  # never asked on load

    await page.click("#bell")
    await page.click("#desktop-toggle")
    await expect(page.locator("#desktop-toggle")).to_have_text("Disable desktop notifications")
    assert await page.evaluate("window.__asked") == 1
    await page.check("#sound-toggle")
    await eventually(lambda: page.evaluate("window.__tones > 0"))  # a sample of the sound
    await page.keyboard.press("Escape")
    await expect(page.locator("#notifications-panel")).to_be_hidden()
    tones = await page.evaluate("window.__tones")

    await stack.inbound("support", [message("n-1", "Is anyone there?", "ada")])
    await expect(alice.row("Is anyone there?").locator(".assignee")).to_have_text("· Alice")
    await eventually(lambda: page.evaluate("__shown.some(n => n.body === 'Is anyone there?')"))
    assert await page.evaluate("window.__tones") > tones

    # Her own reply rings nothing; the next customer message (another conversation) does.
    await alice.row("Is anyone there?").click()
    reply = page.locator("#reply")
    await reply.click()
    await reply.press_sequentially("Yes, Alice here.")
    await reply.press("Enter")
    await expect(page.locator("#message-list .msg.out .text")).to_have_text("Yes, Alice here.")
    await stack.inbound("support", [message("n-2", "Hello from Ben", "ben")])
    await eventually(lambda: page.evaluate("__shown.some(n => n.body === 'Hello from Ben')"))
    shown = await page.evaluate("window.__shown")
    assert all("Alice here" not in n["body"] for n in shown), shown
    assert {n["title"] for n in shown if n["body"] == "Hello from Ben"} >= {
        "New message from Ben"}

    # Both choices are remembered; turning desktop notifications off is one click.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-live", "true")
    await page.click("#bell")
    await expect(page.locator("#sound-toggle")).to_be_checked()
    await expect(page.locator("#desktop-toggle")).to_have_text("Disable desktop notifications")
    await page.click("#desktop-toggle")
    await expect(page.locator("#desktop-toggle")).to_have_text("Enable desktop notifications")
    alice.assert_clean()


async def test_list_filters_by_label_priority_and_team_follow_changes_live(
    stack: Stack, browser: Browser
) -> None:
    admin = await stack.login("admin")
    assert (await admin.http.post("/api/v1/labels", json={"name": "vip"})).status_code == 201
    team = (await admin.http.post("/api/v1/teams", json={
        "name": "Escalations", "inbox_ids": [stack.ids["support"]]})).json()
    await stack.inbound("support", [message(f"l-{n}", f"case {n}", f"cust-{n}")
                                    for n in range(3)])
    first, second, third = sorted(
        await _stored(admin, 3), key=lambda c: str(c["last_message_preview"]))
    conv = "/api/v1/conversations"
    await admin.http.put(f"{conv}/{first['id']}/labels", json={"labels": ["vip"]})

    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    rows = page.locator(".conversation-row")
    await expect(rows).to_have_count(3)
    await page.click("#more-filters-toggle")
    await page.select_option("#label-filter", "vip")
    await expect(rows).to_have_count(1)
    await expect(alice.row("case 0").locator(".label-chip")).to_have_text("vip")
    # Labelled elsewhere: it joins the filtered list live.
    await admin.http.put(f"{conv}/{second['id']}/labels", json={"labels": ["vip"]})
    await expect(rows).to_have_count(2)

    await page.select_option("#label-filter", "")
    await page.select_option("#priority-filter", "urgent")
    await expect(page.locator("#list-empty")).to_be_visible()
    await admin.http.put(f"{conv}/{third['id']}/priority", json={"priority": "urgent"})
    await expect(rows).to_have_count(1)
    await expect(alice.row("case 2").locator(".priority-chip")).to_have_text("Urgent")

    await page.select_option("#priority-filter", "")
    await page.select_option("#team-filter", label="Escalations")
    await expect(page.locator("#list-empty")).to_be_visible()
    moved = await admin.http.post(f"{conv}/{first['id']}/assignment",
                                  json={"assignee_id": None, "team_id": team["id"]})
    assert moved.status_code == 200, moved.text
    await expect(rows).to_have_count(1)
    await expect(alice.row("case 0")).to_be_visible()
    alice.assert_clean()


async def test_availability_toggle_and_the_team_load_view(
    stack: Stack, browser: Browser
) -> None:
    alice = await open_inbox(browser, stack, "alice")
    admin = await open_inbox(browser, stack, "admin")
    toggle = alice.page.locator("#availability")
    await expect(toggle).to_have_attribute("data-availability", "online")
    await expect(alice.page.locator("#load-button")).to_be_hidden()  # not a lead

    await admin.page.click("#load-button")
    agents = admin.page.locator("#load-body table").first
    alice_row = agents.locator("tr", has_text="Alice")
    await expect(alice_row.locator("td").first).to_have_text("Online")
    await toggle.click()
    await expect(toggle).to_have_attribute("data-availability", "away")
    await expect(alice.page.locator("#availability-text")).to_have_text("Away")
    await expect(alice_row.locator("td").first).to_have_text("Away")  # the view follows live
    me = (await (await stack.login("alice")).http.get("/api/v1/me")).json()
    assert me["availability"] == "away"
    await alice.page.reload()
    await expect(alice.page.locator("#availability-text")).to_have_text("Away")
    alice.assert_clean()
    admin.assert_clean()


async def test_a_conversation_that_arrives_while_the_list_loads_is_not_lost(
    stack: Stack, browser: Browser
) -> None:
    """The list's page is read before a customer writes and answered after the event came:
    the event's conversation stays (it was lost when the page replaced the list)."""
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    admin = await stack.login("admin")
    held: list[Any] = []
    await page.reload()  # the list as an agent finds it after a reload
    await expect(page.locator("body")).to_have_attribute("data-live", "true")

    async def late_page(route: Any) -> None:
        response = await route.fetch()  # the server reads the list now, before the message
        held.append(response)
        await stack.inbound("support", [message("race-1", "written during the load", "dee")])

        async def delivered() -> bool:
            return [c["assignee_id"] for c in await _conversations(
                admin, inbox_id=stack.ids["support"])] == [stack.ids["alice"]]

        await eventually(delivered)
        await asyncio.sleep(1.0)  # the event reaches the page's websocket meanwhile
        await route.fulfill(response=response)
        answered.set()

    answered = asyncio.Event()
    await page.route(re.compile(r".*/api/v1/conversations\?.*"), late_page)
    await _mine(alice)
    await asyncio.wait_for(answered.wait(), 30)
    # At once: no later event is coming to put it back (it used to come back only by chance,
    # with some other change of the conversation).
    await expect(alice.row("written during the load")).to_be_visible(timeout=3000)
    assert len(held) == 1 and "written during the load" not in await held[0].text()
    await page.unroute(re.compile(r".*/api/v1/conversations\?.*"))
    alice.assert_clean()
