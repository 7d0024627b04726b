"""The admin screens in Chromium: invite someone who joins, deactivate someone who is logged in."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import DESKTOP, open_inbox
from tests.helpers import Stack, make_team


async def test_invite_join_and_deactivate_across_three_people(
    stack: Stack, browser: Browser
) -> None:
    admin = await open_inbox(browser, stack, "admin")
    alice = await open_inbox(browser, stack, "alice")  # her inbox stays open all along

    page = admin.page
    await page.click("#admin-link")
    await expect(page).to_have_url(stack.base + "/admin/inboxes")
    await page.get_by_role("navigation", name="Admin").get_by_role("link", name="Agents").click()
    form = page.locator("#invite-form")
    await form.locator("input[name=email]").fill("newbie@example.com")
    await form.locator("input[name=name]").fill("Nora Newbie")
    await form.locator("select[name=role]").select_option("agent")
    await form.get_by_label("Support").check()
    await form.locator("button[type=submit]").click()
    link = page.locator("#invite-link")
    await expect(link).to_be_visible()
    url = await link.input_value()
    assert "/invite/" in url
    await expect(page.locator("#invitations")).to_contain_text("newbie@example.com")

    # The invitee opens the link in a browser of their own, sets a password, lands in the inbox.
    invitee = await browser.new_context(viewport=DESKTOP, base_url=stack.base)  # type: ignore[arg-type]
    joining = await invitee.new_page()
    await joining.goto(url)
    await expect(joining.locator("main")).to_contain_text("newbie@example.com")
    await joining.fill("input[name=name]", "Nora N.")
    await joining.fill("input[name=password]", "noras passphrase")
    await joining.fill("input[name=confirm_password]", "noras passphrase")
    await joining.click("button[type=submit]")
    origin = url.split("/invite/", 1)[0]  # the link is on the public base URL
    await expect(joining).to_have_url(origin + "/")
    await expect(joining.locator("body")).to_have_attribute("data-live", "true")
    await expect(joining.locator("#me-name")).to_have_text("Nora N.")
    await expect(joining.locator("#admin-link")).to_be_hidden()
    # The pending list no longer shows the invitation once it is used.
    await page.goto("/admin/agents")
    await expect(page.locator("#invitations")).not_to_contain_text("newbie@example.com")

    # Deactivating Alice ends her open inbox at once: its websocket closes, she is logged out.
    await page.locator("#agent-search").fill("alice@")
    await expect(page.locator("#agent-table tbody tr:visible")).to_have_count(1)
    await page.get_by_role("link", name="Alice").click()
    await page.click(f"#deactivate-{stack.ids['alice']}")
    await expect(page.locator("#notice")).to_contain_text("deactivated")
    await expect(page.locator(f"#reactivate-{stack.ids['alice']}")).to_be_visible()
    await expect(alice.page).to_have_url(stack.base + "/login")
    await expect(joining.locator("body")).to_have_attribute("data-live", "true")
    admin.assert_clean()
    await invitee.close()


async def test_a_lead_makes_a_label_and_a_canned_response_and_uses_both(
    stack: Stack, browser: Browser
) -> None:
    from tests.browser.test_collaboration_browser import _customer, _open

    await stack.add_agent("lena", role="lead", inboxes=("support",))
    await make_team(stack, "Billing desk", ("lena",), ("support",))
    await _customer(stack, "lead-1", "My invoice is wrong", "ada", "Ada Lovelace")
    desk = await open_inbox(browser, stack, "lena")
    page = desk.page
    await page.click("#admin-link")
    await expect(page).to_have_url(stack.base + "/admin/labels")
    await page.locator("#label-new input[name=name]").fill("Billing")
    await page.locator("#label-new input[name=description]").fill("Invoices and refunds")
    await page.locator("#label-new button[type=submit]").click()
    await expect(page.locator("#notice")).to_contain_text("The label was added")
    await expect(page.locator(".label-line .label-description")).to_have_text(
        "Invoices and refunds")
    await page.get_by_role("link", name="Canned responses").click()
    new = page.locator("#canned-new")
    await new.locator("input[name=shortcut]").fill("invoice")
    await new.locator("input[name=title]").fill("Invoice check")
    await new.locator("textarea[name=text]").fill(
        "Hi {{contact.first_name}}, I am checking your invoice now.")
    # The preview follows the text as it is typed, with a sample customer's name.
    await expect(page.locator("#preview-new")).to_have_text(
        "Hi Ada, I am checking your invoice now.")
    await new.locator("button[type=submit]").click()
    await expect(page.locator("#notice")).to_contain_text("The canned response was saved")

    await page.get_by_role("link", name="Back to the inbox").click()
    await _open(desk, "My invoice is wrong")
    await page.select_option("#label-add", "Billing")
    await expect(page.locator("#labels .label-chip .label-name")).to_have_text(["Billing"])
    reply = page.locator("#reply")
    await reply.click()
    await reply.press_sequentially("/invo")
    await expect(page.locator("#suggestions .suggestion")).to_have_count(1)
    await reply.press("Enter")
    await expect(reply).to_have_value("Hi Ada, I am checking your invoice now.")
    await reply.press("Enter")
    await stack.receiver.wait(1)
    assert stack.receiver.received[0]["text"] == "Hi Ada, I am checking your invoice now."
    await expect(desk.row("Ada Lovelace").locator(".label-chip")).to_have_text(["Billing"])
    desk.assert_clean()


async def test_an_admin_connects_inboxes_and_copies_the_widget_snippet(
    stack: Stack, browser: Browser
) -> None:
    desk = await open_inbox(browser, stack, "admin")
    page = desk.page
    await desk.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                         origin=stack.base)
    await page.click("#admin-link")
    await expect(page).to_have_url(stack.base + "/admin/inboxes")
    await expect(page.locator("#checklist")).to_be_visible()

    # An API inbox: a refusal names the missing setting, and what was typed stays.
    await page.click("#connect-api")
    await page.locator("input[name=name]").fill("Shop backend")
    await page.locator("button[type=submit]").click()  # the browser asks for the secret first
    await expect(page).to_have_url(stack.base + "/admin/inboxes/new?channel=api")
    await page.get_by_label("Secret").fill("a-long-shared-secret")
    await page.locator("button[type=submit]").click()
    await expect(page.locator("#notice")).to_contain_text("The inbox is connected")
    await expect(page.locator("h1")).to_contain_text("Shop backend")
    await expect(page.locator("#webhook-url")).to_have_value(re.compile(r"/webhooks/api/\d+$"))

    # A website chat: its snippet is copied, its preview follows the greeting as it is typed.
    await page.get_by_role("link", name="← Inboxes").click()
    await page.click("#connect-webchat")
    await page.locator("input[name=name]").fill("Website")
    await page.get_by_label("Greeting").fill("Hi there!")
    await page.locator("button[type=submit]").click()
    await expect(page.locator("#preview-greeting")).to_have_text("Hi there!")
    await page.get_by_label("Greeting").fill("Ask us anything")
    await expect(page.locator("#preview-greeting")).to_have_text("Ask us anything")
    await page.click("#copy-snippet")
    await expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == await page.locator("#widget-snippet").input_value()
    assert re.fullmatch(r'<script src="[^"]+/widget\.js" data-inbox="[\w-]+" async></script>',
                        copied)
    await page.locator("#settings-form button[type=submit]").click()
    await expect(page.locator("#notice")).to_have_text("Saved.")
    await expect(page.locator("#preview-greeting")).to_have_text("Ask us anything")
    desk.assert_clean()
