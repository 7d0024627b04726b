"""Splitting, merging and people on copy, in the agent inbox in Chromium."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Browser, expect
from sqlalchemy import update

from inbox.db import Database
from inbox.models import Conversation
from tests.browser.test_agent_ui import open_inbox
from tests.helpers import Stack, message


async def test_split_a_message_out_and_merge_it_back(stack: Stack, browser: Browser) -> None:
    await stack.inbound("support", [message("b-1", "My printer smokes", "ada")])
    await stack.inbound("support", [message("b-2", "Unrelated: my new address", "ada")])
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await alice.row("Unrelated: my new address").click()
    await expect(page.locator("#message-list .msg.in")).to_have_count(2)
    second = page.locator("#message-list .msg.in", has_text="Unrelated: my new address")
    before = page.url
    await second.locator(".split-message").click()
    # The new conversation opens, with the message alone; both are in the list.
    await expect(page).not_to_have_url(before)
    await expect(page.locator("#message-list .msg.in")).to_have_count(1)
    await expect(page.locator("#message-list .msg.in .text")).to_have_text(
        "Unrelated: my new address")
    await expect(alice.row("My printer smokes")).to_be_visible()
    await expect(alice.row("Unrelated: my new address")).to_be_visible()

    # Back to the first one: merge the new one into it from the contact panel.
    await alice.row("My printer smokes").click()
    await expect(page.locator("#message-list .msg.in")).to_have_count(1)
    await page.locator("#other-conversations .merge-conversation").click()
    await expect(page.locator("#message-list .msg.in")).to_have_count(2)
    await expect(page.locator("#message-list")).to_contain_text("Unrelated: my new address")
    alice.assert_clean()


async def test_people_on_copy_show_and_can_be_left_out_of_a_reply(
    stack: Stack, browser: Browser
) -> None:
    await stack.inbound("support", [message("c-1", "Looping in Bea", "ada")])
    alice = await open_inbox(browser, stack, "alice")
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await session.exec(update(Conversation).values(cc=[  # type: ignore[call-overload]
                {"kind": "email", "value": "bea@example.com", "display_name": "Bea"},
                {"kind": "email", "value": "carl@example.com", "display_name": None}]))
    finally:
        await db.close()
    page = alice.page
    await alice.row("Looping in Bea").click()
    chips = page.locator("#cc-list .cc-chip")
    await expect(chips).to_have_count(2)
    await expect(chips.first).to_contain_text("Bea <bea@example.com>")
    await chips.filter(has_text="carl@example.com").locator("button").click()
    await expect(chips).to_have_count(1)
    await page.fill("#reply", "Hello both")
    async with page.expect_request(lambda r: r.url.endswith("/messages")
                                   and r.method == "POST") as sent:
        await page.click("#send")
    assert json.loads((await sent.value).post_data or "{}")["cc"] == ["bea@example.com"]
    # A note copies nobody: the chips are for replies only.
    await page.click("#composer [data-mode=note]")
    await expect(page.locator("#cc")).to_be_hidden()
    alice.assert_clean()
