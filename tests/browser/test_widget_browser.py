"""The chat widget in a real browser: a visitor on the demo website talks to the team."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, expect

from channels.webchat import WebchatChannel
from inbox.db import Database
from inbox.inboxes import create_inbox, set_members
from tests.helpers import Stack, eventually


async def _demo_widget(stack: Stack) -> int:
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            inbox = await create_inbox(session, name="Acme Garden Supplies", channel="webchat",
                                       settings=WebchatChannel().default_settings())
            assert inbox.id is not None
            await set_members(session, inbox_id=inbox.id, agent_ids=[stack.ids["alice"]])
            return inbox.id
    finally:
        await db.close()


async def _visitor(browser: Browser, base: str) -> tuple[BrowserContext, Page]:
    """A new visitor (a browser context of their own) with the demo page's widget open."""
    visitor = await browser.new_context()
    page = await visitor.new_page()
    await _open_widget(page, base)
    return visitor, page


async def _say(page: Page, text: str) -> None:
    """The visitor types `text` in the widget and presses Enter."""
    await page.locator("textarea").fill(text)
    await page.locator("textarea").press("Enter")


async def _open_widget(page: Page, base: str) -> None:
    await page.goto(base + "/demo")
    await page.locator("button.launch").click()
    await expect(page.locator("textarea")).to_be_visible()


async def test_visitor_chats_from_the_demo_website(
    stack: Stack, browser: Browser, screenshots: Path
) -> None:
    inbox_id = await _demo_widget(stack)
    alice = await stack.login("alice")
    agent_ws = await alice.ws()  # Alice is online: the widget says so
    visitor = await browser.new_context(viewport={"width": 1100, "height": 720})
    page = await visitor.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await _open_widget(page, stack.base)
    await expect(page.locator(".head span")).to_have_text("We usually reply in a few minutes")

    # The host page's loud CSS does not reach the widget.
    font = await page.locator("textarea").evaluate("e => getComputedStyle(e).fontFamily")
    assert "Comic Sans" not in font

    await _say(page, "hello")
    await expect(page.locator(".msg.visitor")).to_have_text(["hello"])
    await expect(page.locator(".msg.visitor.pending")).to_have_count(0)

    async def conversation() -> dict[str, Any] | None:
        items = (await alice.http.get(f"/api/v1/conversations?inbox_id={inbox_id}")
                 ).json()["items"]
        return items[0] if items else None

    found = await eventually(conversation)
    await alice.http.post(f"/api/v1/conversations/{found['id']}/typing", json={"mode": "reply"})
    await expect(page.locator(".typing")).to_have_text("Typing…")
    await alice.http.post(f"/api/v1/conversations/{found['id']}/messages",
                          json={"text": "Hello! How can I help?"})
    await expect(page.locator(".msg.agent")).to_have_text(["Hello! How can I help?"])

    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    await _say(page, hostile)
    await expect(page.locator(".msg.visitor").last).to_have_text(hostile)
    assert await page.locator(".msg img, .msg script").count() == 0
    await page.screenshot(path=str(screenshots / "widget.png"))

    # A reload (and a new tab) keeps the thread.
    await page.reload()
    await page.locator("button.launch").click()
    await expect(page.locator(".msg")).to_have_text(["hello", "Hello! How can I help?", hostile])
    tab = await visitor.new_page()
    await _open_widget(tab, stack.base)
    await expect(tab.locator(".msg")).to_have_count(3)
    assert dialogs == []
    await visitor.close()
    await agent_ws.close()


async def test_offline_widget_asks_for_an_email(stack: Stack, browser: Browser) -> None:
    await _demo_widget(stack)  # nobody has a websocket open: nobody is online
    visitor, page = await _visitor(browser, stack.base)
    await expect(page.locator(".head span")).to_have_text("We're away right now")
    await _say(page, "Is the shop open on Sunday?")
    await expect(page.locator(".away")).to_be_visible()
    await expect(page.locator(".msg.visitor.pending")).to_have_count(0)
    await page.locator(".away input").fill("sunday@example.com")
    await page.locator(".away button").click()
    await expect(page.locator(".away")).to_contain_text("We'll reply to sunday@example.com")
    admin = await stack.login("admin")
    items = (await admin.http.get("/api/v1/conversations")).json()["items"]
    contact = (await admin.http.get(f"/api/v1/contacts/{items[0]['contact_id']}")).json()
    assert contact["email"] == "sunday@example.com"
    await visitor.close()


async def test_visitor_and_agents_end_to_end_in_two_browsers(
    stack: Stack, browser: Browser
) -> None:
    """The newcomer's tour: the demo website's widget on one side, the agent inbox on the
    other, a second agent watching; no reloads on the agents' side."""
    from tests.browser.test_agent_ui import open_inbox

    await _demo_widget(stack)
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            inbox_id = (await _webchat_id(session))
            await set_members(session, inbox_id=inbox_id,
                              agent_ids=[stack.ids["alice"], stack.ids["bob"]])
    finally:
        await db.close()
    alice = await open_inbox(browser, stack, "alice")
    bob = await open_inbox(browser, stack, "bob")

    visitor, page = await _visitor(browser, stack.base)
    await _say(page, "hello")

    row = alice.row("hello")
    await expect(row).to_be_visible()
    await expect(bob.row("hello")).to_be_visible()
    await row.click()
    await expect(alice.page.locator("#message-list .msg.in .text")).to_have_text("hello")
    # The contact panel tells where the visitor is and what they use.
    visit = alice.page.locator("#contact-visit")
    await expect(visit.locator(".visit-page")).to_have_text(await page.title())
    await expect(visit.locator(".visit-page")).to_have_attribute("href", stack.base + "/demo")
    await expect(visit).to_contain_text("on Linux")
    await expect(visit.locator(".visit-time")).to_contain_text("(")
    # The visitor's typing shows in the agent's thread, and stops when they send.
    await page.locator("textarea").press_sequentially("one more")
    await expect(alice.page.locator("#typing")).to_contain_text("is typing…")
    reply = alice.page.locator("#reply")
    await reply.click()
    await reply.press_sequentially("Hi! What can I do for you?")
    await expect(page.locator(".typing")).to_have_text("Typing…")
    await reply.press("Enter")
    await expect(page.locator(".msg.agent")).to_have_text(["Hi! What can I do for you?"])

    await page.locator("textarea").press("Enter")
    await expect(alice.page.locator("#typing")).to_be_hidden()
    await page.reload()
    await page.locator("button.launch").click()
    await expect(page.locator(".msg")).to_have_text(
        ["hello", "Hi! What can I do for you?", "one more"])

    # Bob's list shows the latest message, live; resolving takes it off his list of open
    # conversations, live too.
    await expect(bob.row("one more")).to_be_visible()
    await reply.press("Escape")
    await alice.page.keyboard.press("e")
    await expect(alice.page.locator("#thread-status")).to_have_text("Resolved")
    await expect(bob.row("one more")).to_have_count(0)
    await visitor.close()
    alice.assert_clean()
    bob.assert_clean()


async def _webchat_id(session: Any) -> int:
    from sqlmodel import select

    from inbox.models import Inbox

    row = (await session.exec(select(Inbox).where(Inbox.channel == "webchat"))).one()
    return int(row.id)


def _png(width: int = 3, height: int = 2) -> bytes:
    """A small valid PNG (solid green)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\x20\xa0\x40" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                             0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def test_visitor_sees_and_downloads_the_agents_files(
    stack: Stack, browser: Browser
) -> None:
    inbox_id = await _demo_widget(stack)
    alice = await stack.login("alice")
    visitor = await browser.new_context(accept_downloads=True)
    page = await visitor.new_page()
    await _open_widget(page, stack.base)
    await _say(page, "Can I have the invoice?")

    async def conversation() -> int | None:
        items = (await alice.http.get(f"/api/v1/conversations?inbox_id={inbox_id}")
                 ).json()["items"]
        return items[0]["id"] if items else None

    cid = await eventually(conversation)
    pdf = b"%PDF-1.4\n% invoice 2026-03\n" + bytes(range(256))
    ids = []
    for name, content_type, data in (("photo.png", "image/png", _png()),
                                     ("Facture mars.pdf", "application/pdf", pdf)):
        uploaded = await alice.http.post(f"/api/v1/conversations/{cid}/attachments",
                                         params={"filename": name}, content=data,
                                         headers={"Content-Type": content_type})
        assert uploaded.status_code == 201, uploaded.text
        ids.append(uploaded.json()["id"])
    reply = await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"text": "Here you are", "attachment_ids": ids})
    assert reply.status_code == 201, reply.text

    bubble = page.locator(".msg.agent")
    await expect(bubble.locator("a.file")).to_have_count(2)
    await expect(bubble.locator("a.file").last).to_contain_text("Facture mars.pdf")
    image = bubble.locator("img")
    await expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    await page.wait_for_function(
        "() => document.querySelector('switchboard-widget').shadowRoot"
        ".querySelector('.msg.agent img').naturalWidth === 3")
    async with page.expect_download() as download_info:
        await bubble.locator("a.file").last.click()
    download = await download_info.value
    assert download.suggested_filename == "Facture mars.pdf"
    path = await download.path()
    assert path is not None and path.read_bytes() == pdf
    await visitor.close()


async def test_the_widget_learns_live_that_an_agent_came_online_and_went_away(
    stack: Stack, browser: Browser,
) -> None:
    await _demo_widget(stack)  # nobody online yet
    visitor, page = await _visitor(browser, stack.base)
    head = page.locator(".head span")
    await expect(head).to_have_text("We're away right now")
    await _say(page, "Anyone there?")
    await expect(page.locator(".away")).to_be_visible()

    alice = await stack.login("alice")
    agent_ws = await alice.ws()  # Alice opens her inbox: she is online
    # The open widget says so without a reload, and stops asking for an email.
    await expect(head).to_have_text("We usually reply in a few minutes", timeout=10_000)
    await expect(page.locator(".away")).to_be_hidden()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    away = await alice.http.put("/api/v1/me/availability", json={"availability": "away"})
    assert away.status_code == 200
    await expect(head).to_have_text("We're away right now", timeout=10_000)
    back = await alice.http.put("/api/v1/me/availability", json={"availability": "online"})
    assert back.status_code == 200
    await expect(head).to_have_text("We usually reply in a few minutes", timeout=10_000)
    assert navigations == []  # all of it live, the page never reloaded
    await agent_ws.close()
    await visitor.close()


async def test_a_reply_turns_delivered_then_read_in_the_agents_thread(
    stack: Stack, browser: Browser,
) -> None:
    from tests.browser.test_agent_ui import open_inbox

    await _demo_widget(stack)
    alice = await open_inbox(browser, stack, "alice")
    visitor, page = await _visitor(browser, stack.base)
    await _say(page, "Do you ship to Norway?")
    await alice.row("Do you ship to Norway?").click()
    # The visitor minimises the chat: the reply reaches the page but is not seen yet.
    await page.locator("button.launch").click()
    await expect(page.locator(".panel")).to_be_hidden()
    reply = alice.page.locator("#reply")
    await reply.click()
    await reply.fill("Yes, in 3-5 days.")
    await reply.press("Enter")
    delivery = alice.page.locator("#message-list .msg.out .delivery")
    await expect(delivery).to_have_text("delivered", timeout=10_000)
    # Minimised, the widget counts the unread reply and the page's title blinks.
    await expect(page.locator(".unread")).to_have_text("1")
    await expect(page).to_have_title("(1) New message", timeout=5_000)
    # The visitor opens the chat and sees it, with who answered.
    await page.locator("button.launch").click()
    await expect(page.locator(".msg.agent")).to_have_text(["Yes, in 3-5 days."])
    await expect(page.locator(".who")).to_have_text(["Alice"])
    await expect(delivery).to_have_text("read", timeout=10_000)
    await expect(page.locator(".unread")).to_be_hidden()
    await expect(page).not_to_have_title("(1) New message")
    await visitor.close()
    alice.assert_clean()


async def test_two_anonymous_visitors_have_two_different_names(
    stack: Stack, browser: Browser,
) -> None:
    from tests.browser.test_agent_ui import open_inbox

    await _demo_widget(stack)
    alice = await open_inbox(browser, stack, "alice")
    for text in ("First visitor here", "Second visitor here"):
        visitor, page = await _visitor(browser, stack.base)
        await _say(page, text)
        await expect(alice.row(text)).to_be_visible()
        await visitor.close()
    names = await alice.page.locator("#conversation-list .name").all_inner_texts()
    assert len(names) == 2 and len(set(names)) == 2, names
    for name in names:
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+ \d{1,2}", name), name
    alice.assert_clean()


async def test_the_demo_website_loads_without_an_error(stack: Stack, browser: Browser) -> None:
    await _demo_widget(stack)
    visitor = await browser.new_context()
    page = await visitor.new_page()
    failures: list[str] = []
    page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}")
            if r.status >= 400 else None)
    await _open_widget(page, stack.base)
    icon = await page.evaluate("document.querySelector('link[rel=icon]').href")
    assert (await visitor.request.get(icon)).ok
    assert failures == []
    await visitor.close()
