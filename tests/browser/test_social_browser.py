"""Telegram and Messenger in the agent's browser: live, marked with their channel, images
shown, the reply window counted down, replies reaching the providers' local stand-ins."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import open_inbox
from tests.fakes.meta_server import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    FakeGraph,
    page_event,
    signature,
    text_event,
)
from tests.fakes.telegram_server import BOT_TOKEN, FakeTelegram, private_message
from tests.helpers import Stack, eventually


@pytest.fixture
async def providers() -> AsyncIterator[tuple[FakeTelegram, FakeGraph]]:
    telegram, graph = FakeTelegram(), FakeGraph()
    await telegram.start()
    await graph.start()
    try:
        yield telegram, graph
    finally:
        await telegram.stop()
        await graph.stop()


async def _connect(stack: Stack, channel: str, settings: dict[str, object]) -> int:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/inboxes", json={
        "name": channel.title(), "channel": channel, "settings": settings})
    assert made.status_code == 201, made.text
    inbox_id = int(made.json()["id"])
    members = await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                                   json={"agent_ids": [stack.ids["alice"]]})
    assert members.status_code == 204
    return inbox_id


async def test_telegram_and_messenger_live_in_the_browser_and_answered_from_it(
    stack: Stack, browser: Browser, providers: tuple[FakeTelegram, FakeGraph],
) -> None:
    telegram, graph = providers
    tg_inbox = await _connect(stack, "telegram", {"bot_token": BOT_TOKEN,
                                                  "api_base_url": telegram.url})
    fb_inbox = await _connect(stack, "messenger", {
        "page_id": PAGE_ID, "page_access_token": PAGE_TOKEN, "app_secret": APP_SECRET,
        "graph_api_url": graph.url})
    secret = str(next(iter(telegram.webhooks.values()))["secret_token"])
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page

    update = private_message(7, text="Hallo, ist mein Paket unterwegs?")
    posted = await stack.client().post(
        f"/webhooks/telegram/{tg_inbox}", content=json.dumps(update).encode(),
        headers={"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"})
    assert posted.status_code == 202
    row = alice.row("Hallo, ist mein Paket unterwegs?")
    await expect(row).to_be_visible()  # live, over the websocket
    await expect(row.locator(".channel-mark")).to_have_text("TG")
    await expect(row.locator(".channel-mark")).to_have_attribute("aria-label", "Telegram")
    await row.click()
    await expect(page.locator("#thread-title")).to_have_text("Tom")
    await expect(page.locator("#reply-window")).to_be_hidden()  # Telegram has no window
    await expect(page.locator("#message-list .msg.in .channel-mark")).to_have_text("TG")
    reply = page.locator("#reply")
    await reply.fill("Ja, es kommt morgen <früh>.")
    await reply.press("Enter")
    await eventually(lambda: _has(telegram.sent))
    assert telegram.sent[0]["chat_id"] == 4242
    assert telegram.sent[0]["text"] == "Ja, es kommt morgen &lt;früh&gt;."
    await expect(page.locator("#message-list .msg.out .delivery")).to_have_text("sent")
    # The customer changes their message: it changes on the agent's screen, marked.
    edit = {"update_id": 8, "edited_message": {
        **update["message"], "edit_date": update["message"]["date"] + 30,
        "text": "Hallo, ist mein Paket schon unterwegs?"}}
    posted = await stack.client().post(
        f"/webhooks/telegram/{tg_inbox}", content=json.dumps(edit).encode(),
        headers={"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"})
    assert posted.status_code == 202
    incoming = page.locator("#message-list .msg.in")
    await expect(incoming.locator(".text")).to_have_text("Hallo, ist mein Paket schon unterwegs?")
    await expect(incoming.locator(".edited")).to_have_text("edited")

    photo = graph.cdn("parcel.png", _PNG)
    event = page_event(PAGE_ID, text_event(
        "6001234567890123", PAGE_ID, "m_browser_1", "Here is the damaged parcel",
        attachments=[{"type": "image", "payload": {"url": photo}}]))
    body = json.dumps(event).encode()
    answered = await stack.client().post(
        f"/webhooks/messenger/{fb_inbox}", content=body,
        headers={"X-Hub-Signature-256": signature(body), "Content-Type": "application/json"})
    assert answered.status_code == 200
    row = alice.row("Here is the damaged parcel")
    await expect(row).to_be_visible()
    await expect(row.locator(".channel-mark")).to_have_text("FB")
    await row.click()
    await expect(page.locator("#thread-title")).to_have_text("Ada Lovelace")
    window = page.locator("#reply-window")
    await expect(window).to_be_visible()
    await expect(window).to_have_text("Reply window: 23 h 59 min left")
    image = page.locator("#message-list .msg.in img.attachment-image")
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.naturalWidth") == 1  # the picture loaded
    await reply.fill("Sorry! A new one is on its way.")
    await reply.press("Enter")
    await eventually(lambda: _has(graph.sent))
    assert graph.sent[0]["recipient"] == {"id": "6001234567890123"}
    assert graph.sent[0]["message"]["text"] == "Sorry! A new one is on its way."
    alice.assert_clean()


async def _has(items: list[object]) -> bool:
    return bool(items)


# A 1x1 PNG.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
