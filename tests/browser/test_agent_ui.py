"""The agent inbox in headless Chromium: live list and thread, replies, shortcuts, safety."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    WebSocketRoute,
    expect,
)

from tests.helpers import PASSWORD, Stack, eventually, message

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Inbox:
    """One agent's browser: its context, its page and the errors the page reported."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def row(self, text: str) -> Any:
        """The conversation list row that shows `text`."""
        return self.page.locator(".conversation-row", has_text=text)

    def assert_clean(self) -> None:
        """No script error and no CSP violation happened on the page."""
        assert self.errors == []


async def open_inbox(
    browser: Browser, stack: Stack, name: str, *, viewport: dict[str, int] = DESKTOP,
    sockets: Any = None,
) -> Inbox:
    """Log in through the form in a fresh context and wait until the inbox is live."""
    context = await browser.new_context(viewport=viewport, base_url=stack.base)  # type: ignore[arg-type]
    if sockets is not None:
        await context.route_web_socket(re.compile(r".*/api/v1/ws.*"), sockets)
    page = await context.new_page()
    inbox = Inbox(context, page)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            inbox.errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: inbox.errors.append(str(exc)))
    page.on("response", lambda r: r.status >= 400 and inbox.errors.append(f"{r.status} {r.url}"))
    await page.goto("/login")
    await page.fill("input[name=email]", f"{name}@example.com")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(stack.base + "/")
    await expect(page.locator("body")).to_have_attribute("data-live", "true")
    return inbox


async def test_new_conversation_live_reply_and_resolve_across_two_agents(
    stack: Stack, browser: Browser
) -> None:
    alice = await open_inbox(browser, stack, "alice")
    admin = await open_inbox(browser, stack, "admin")
    await expect(alice.page.locator("#list-empty")).to_be_visible()

    await stack.inbound("support", [message("e2e-1", "Hello, my order is late", "ada")])
    row = alice.row("Hello, my order is late")
    await expect(row).to_be_visible()  # no reload: it came over the websocket
    await expect(row.locator(".badge")).to_have_text("1")
    admin_row = admin.row("Hello, my order is late")
    await expect(admin_row.locator(".badge")).to_have_text("1")

    await row.click()
    page = alice.page
    await expect(page.locator("#message-list .msg.in .text")).to_have_text(
        "Hello, my order is late")
    await expect(page.locator("#thread-title")).to_have_text("Ada")
    await expect(row.locator(".badge")).to_be_hidden()
    await expect(admin_row.locator(".badge")).to_be_hidden()  # read, live for the other agent
    await expect(page.locator("#contact .identity-value")).to_have_text(
        f"{stack.ids['support']}:ada")

    await admin_row.click()
    await expect(admin.page.locator("#message-list .msg.in")).to_have_count(1)

    reply = page.locator("#reply")
    await reply.click()
    await reply.press_sequentially("Sorry about that!")
    await reply.press("Shift+Enter")
    await reply.press_sequentially("It ships today.")
    await expect(admin.page.locator("#typing")).to_have_text("Alice is replying…")
    await reply.press("Enter")
    await expect(reply).to_have_value("")
    await stack.receiver.wait(1)
    sent = stack.receiver.received[0]
    assert sent["text"] == "Sorry about that!\nIt ships today."
    out = page.locator("#message-list .msg.out")
    await expect(out.locator(".text")).to_have_text("Sorry about that!\nIt ships today.")
    await expect(out.locator(".delivery")).to_have_text("sent")
    # The other agent's open thread got the reply live, with its delivery status.
    await expect(admin.page.locator("#message-list .msg.out .delivery")).to_have_text("sent")
    await expect(admin.page.locator("#typing")).to_be_hidden()

    await reply.press("Escape")
    await page.keyboard.press("e")
    await expect(page.locator("#thread-status")).to_have_text("Resolved")
    await expect(page.locator("#message-list .activity").last).to_have_text(
        re.compile("Alice resolved this conversation"))
    await expect(admin.page.locator("#thread-status")).to_have_text("Resolved")
    await expect(admin_row).to_have_count(0)  # gone from the admin's "Open" list, live
    await admin.page.select_option("#status-filter", "resolved")
    await expect(admin.row("Sorry about that!")).to_be_visible()
    assert len(stack.receiver.received) == 1
    alice.assert_clean()
    admin.assert_clean()


async def test_script_in_a_message_is_shown_as_text_and_never_runs(
    stack: Stack, browser: Browser
) -> None:
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    dialogs: list[str] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    attack = ('<img src=x onerror="window.__pwned=1;alert(1)">'
              '<script>window.__pwned=2;alert(2)</script>')
    name = '<b onmouseover="alert(3)">Mallory</b>'
    await stack.inbound("support", [{"id": "x-1", "sender": {"id": "mallory", "name": name},
                                     "text": attack}])
    row = page.locator(".conversation-row").first
    await expect(row.locator(".preview")).to_have_text(attack)
    await expect(row.locator(".name")).to_have_text(name)
    await row.click()
    await expect(page.locator("#message-list .msg.in .text")).to_have_text(attack)
    await expect(page.locator("#thread-title")).to_have_text(name)
    await expect(page.locator("#contact .contact-name")).to_have_text(name)
    await page.locator("#thread-title").hover()
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []
    assert await page.locator("#columns img, #columns script, #columns b").count() == 0
    alice.assert_clean()


async def test_reconnects_after_a_drop_and_catches_up(stack: Stack, browser: Browser) -> None:
    state: dict[str, Any] = {"offline": False, "open": [], "urls": []}

    async def sockets(ws: WebSocketRoute) -> None:
        state["urls"].append(ws.url)
        if state["offline"]:
            await ws.close()
            return
        ws.connect_to_server()
        state["open"].append(ws)

    alice = await open_inbox(browser, stack, "alice", sockets=sockets)
    page = alice.page
    await stack.inbound("support", [message("r-1", "first question", "ada")])
    await alice.row("first question").click()
    await expect(page.locator("#message-list .msg.in")).to_have_count(1)

    state["offline"] = True
    attempts = len(state["urls"])
    await state["open"][-1].close()
    await expect(page.locator("#offline")).to_be_visible()
    await expect(page.locator("#offline")).to_have_text("Offline — reconnecting…")
    await expect(page.locator("body")).to_have_attribute("data-live", "false")
    while len(state["urls"]) <= attempts:  # it keeps trying while the server is unreachable
        await asyncio.sleep(0.05)

    # Meanwhile: a new message in the open conversation and a new conversation.
    await stack.inbound("support", [message("r-2", "are you there?", "ada")])
    await stack.inbound("support", [message("r-3", "a new customer", "ben")])
    await asyncio.sleep(0.3)
    await expect(page.locator("#message-list .msg.in")).to_have_count(1)

    state["offline"] = False
    await expect(page.locator("#offline")).to_be_hidden(timeout=15_000)
    await expect(page.locator("#message-list .msg.in .text")).to_have_text(
        ["first question", "are you there?"])
    await expect(alice.row("a new customer")).to_be_visible()
    assert "last_event_id=" in state["urls"][-1]
    alice.assert_clean()


async def test_keyboard_shortcuts_notes_snooze_and_assignment(
    stack: Stack, browser: Browser
) -> None:
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    await stack.inbound("support", [message("k-1", "older one", "ada")])
    await expect(alice.row("older one")).to_be_visible()
    await stack.inbound("support", [message("k-2", "newer one", "ben")])
    await expect(page.locator(".conversation-row")).to_have_count(2)

    await page.keyboard.press("j")
    await expect(page.locator("#thread-title")).to_have_text("Ben")
    await page.keyboard.press("j")
    await expect(page.locator("#thread-title")).to_have_text("Ada")
    await page.keyboard.press("k")
    await expect(page.locator("#thread-title")).to_have_text("Ben")
    await expect(alice.row("newer one")).to_have_class(re.compile("selected"))

    assignee = page.locator("#thread-assignee")
    await expect(assignee).to_have_text("Assigned to Alice")  # round robin: she is online
    await page.keyboard.press("u")
    await expect(assignee).to_have_text("Unassigned")
    await page.keyboard.press("a")
    await expect(assignee).to_have_text("Assigned to Alice")
    await expect(page.locator("#message-list .activity")).to_have_count(2)

    await page.keyboard.press("n")
    reply = page.locator("#reply")
    await expect(reply).to_be_focused()
    await expect(page.locator("#composer")).to_have_attribute("data-mode", "note")
    await reply.press_sequentially("jkeuz typed here are not shortcuts")
    await reply.press("Enter")
    note = page.locator("#message-list .msg.note")
    await expect(note.locator(".text")).to_have_text("jkeuz typed here are not shortcuts")
    await expect(note.locator(".author")).to_have_text("Note · Alice")
    await expect(page.locator("#thread-title")).to_have_text("Ben")
    await reply.press("Escape")
    await expect(reply).not_to_be_focused()

    await page.keyboard.press("z")
    await expect(page.locator("#snooze-dialog")).to_be_visible()
    await page.click("text=Tomorrow, 9:00")
    await expect(page.locator("#thread-status")).to_have_text("Snoozed")
    await expect(alice.row("newer one")).to_have_count(0)  # not open any more
    await page.keyboard.press("o")
    await expect(page.locator("#thread-status")).to_have_text("Open")
    await page.keyboard.press("e")
    await expect(page.locator("#thread-status")).to_have_text("Resolved")
    await expect(page.locator("#act-status")).to_have_text("Reopen")

    await page.keyboard.press("?")
    await expect(page.locator("#help-dialog")).to_be_visible()
    await expect(page.locator("#help-dialog")).to_contain_text("Snooze until")
    await page.keyboard.press("Escape")
    await expect(page.locator("#help-dialog")).to_be_hidden()

    # A failed delivery shows its reason.
    await page.keyboard.press("k")
    await expect(page.locator("#thread-title")).to_have_text("Ada")
    stack.receiver.answers.append((400, {"error": "unknown recipient"}))
    await page.keyboard.press("r")
    await reply.press_sequentially("Are you still there?")
    await reply.press("Enter")
    out = page.locator("#message-list .msg.out")
    await expect(out.locator(".delivery")).to_have_text("failed")
    await expect(out.locator(".delivery-reason")).to_contain_text("400 Bad Request")
    assert [m["text"] for m in stack.receiver.received] == ["Are you still there?"]
    alice.assert_clean()


async def test_filters_and_load_more(stack: Stack, browser: Browser) -> None:
    await stack.inbound("support", [message(f"p-{n}", f"question {n}", f"cust-{n}")
                                    for n in range(27)])
    await stack.inbound("sales", [message("s-1", "a sales lead", "lead")])
    api = await stack.login("admin")

    async def all_stored() -> bool:
        page = (await api.http.get("/api/v1/conversations?limit=100")).json()["items"]
        return len(page) == 28

    await eventually(all_stored)
    admin = await open_inbox(browser, stack, "admin")
    page = admin.page
    rows = page.locator(".conversation-row")
    await expect(rows).to_have_count(25)
    await page.click("#load-more")
    await expect(rows).to_have_count(28)
    await expect(page.locator("#load-more")).to_be_hidden()

    await page.select_option("#inbox-filter", label="Sales")
    await expect(rows).to_have_count(1)
    await page.click(".tabs [data-view=mine]")
    await expect(page.locator("#list-empty")).to_be_visible()
    await page.click(".tabs [data-view=unassigned]")
    await expect(rows).to_have_count(1)
    await page.select_option("#status-filter", "resolved")
    await expect(page.locator("#list-empty")).to_be_visible()
    await page.select_option("#status-filter", "open")
    await page.select_option("#inbox-filter", "")
    await expect(rows).to_have_count(25)
    # The choice survives a reload.
    await page.reload()
    await expect(page.locator(".tabs [data-view=unassigned]")).to_have_class(re.compile("active"))
    admin.assert_clean()


async def _seed_showcase(stack: Stack) -> None:
    def customer(ext: str, text: str, sender: str, name: str, email: str) -> dict[str, Any]:
        return {"id": ext, "sender": {"id": sender, "name": name, "email": email}, "text": text}

    await stack.inbound("sales", [customer(
        "d-0", "Do you offer a discount for 50 seats?", "ada", "Ada Lovelace",
        "ada@example.com")])
    await stack.inbound("support", [
        customer("d-1", "The invoice for March shows the wrong address.", "grace",
                 "Grace Hopper", "grace@example.com"),
        customer("d-2", "Can I change the delivery date of order 1187?", "alan", "Alan Turing",
                 "alan@example.com"),
        customer("d-3", "Thanks, that worked!", "katherine", "Katherine Johnson",
                 "katherine@example.com"),
    ])
    await stack.inbound("support", [customer(
        "d-4", "Hi! My order #1042 hasn't arrived yet.\nIt was due on Monday.", "ada",
        "Ada Lovelace", "ada@example.com")])


async def test_screenshots_and_the_phone_layout(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    await _seed_showcase(stack)
    desk = await open_inbox(browser, stack, "admin")
    page = desk.page
    await expect(page.locator(".conversation-row")).to_have_count(5)
    await desk.row("hasn't arrived").click()
    await expect(page.locator("#message-list .msg.in")).to_have_count(1)
    reply = page.locator("#reply")
    await page.keyboard.press("n")
    await reply.press_sequentially("Tracking says it is at the depot; I'll check with the courier.")
    await reply.press("Enter")
    await expect(page.locator("#message-list .msg.note")).to_have_count(1)
    await reply.press("Escape")
    await page.keyboard.press("r")
    await reply.press_sequentially("Sorry for the wait, Ada! Your parcel is at the local depot "
                                   "and goes out for delivery tomorrow morning.")
    await reply.press("Enter")
    await expect(page.locator("#message-list .msg.out:not(.note) .delivery")).to_have_text("sent")
    await page.keyboard.press("Escape")
    await page.keyboard.press("a")
    await expect(page.locator("#thread-assignee")).to_have_text("Assigned to Admin")
    await expect(page.locator("#other-conversations li")).to_have_count(1)
    await reply.click()
    await reply.press_sequentially("Anything else I can help with?")
    await page.locator("#reply").blur()
    await page.screenshot(path=str(screenshots / "agent-inbox.png"))

    phone = await open_inbox(browser, stack, "admin", viewport=PHONE)
    mobile = phone.page
    list_pane = mobile.locator(".list-pane")
    thread_pane = mobile.locator(".thread-pane")
    contact_pane = mobile.locator(".contact-pane")
    await expect(list_pane).to_be_visible()
    await expect(thread_pane).to_be_hidden()
    await phone.row("Sorry for the wait").click()
    await expect(thread_pane).to_be_visible()
    await expect(list_pane).to_be_hidden()
    await expect(mobile.locator("#message-list .msg.out:not(.note)")).to_have_count(1)
    await mobile.screenshot(path=str(screenshots / "agent-inbox-phone.png"))
    await mobile.click(".contact-toggle")
    await expect(contact_pane).to_be_visible()
    other = mobile.locator("#other-conversations a")
    await expect(other).to_contain_text("discount for 50 seats")
    await other.click()
    await expect(thread_pane).to_be_visible()
    await expect(mobile.locator("#message-list .msg.in .text")).to_have_text(
        "Do you offer a discount for 50 seats?")
    await mobile.click(".thread-header .back")
    await expect(list_pane).to_be_visible()
    width = await mobile.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    desk.assert_clean()
    phone.assert_clean()


@pytest.mark.parametrize("shape", ["embedded"])
async def test_an_agent_mutes_and_unmutes_a_conversation_from_the_thread(
        stack: Stack, browser: Browser) -> None:
    await stack.inbound("support", [message("mute-1", "Win a free cruise", "spam")])
    desk = await open_inbox(browser, stack, "alice")
    page = desk.page
    await desk.row("Win a free cruise").click()
    await expect(page.locator("#act-mute")).to_have_text("Mute")
    await page.locator("#act-mute").click()
    await expect(page.locator("#thread-status")).to_have_text("Resolved")
    await expect(page.locator("#thread-muted")).to_have_text("Muted")
    await expect(page.locator("#act-mute")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#message-list .activity").last).to_contain_text(
        "Alice muted this conversation")
    await page.locator("#act-mute").click()
    await expect(page.locator("#thread-muted")).to_have_count(0)
    await expect(page.locator("#act-mute")).to_have_text("Mute")
    await expect(page.locator("#thread-status")).to_have_text("Resolved")
    desk.assert_clean()
