"""Automation in the browser: a team lead writes a rule on the automation page (trying it
first with a dry run), and the next matching customer message is labelled, prioritised,
assigned and answered by it, live in an agent's open inbox."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import open_inbox
from tests.helpers import Stack, make_team, message


@pytest.mark.parametrize("shape", ["embedded"])
async def test_a_lead_writes_a_rule_and_the_next_message_is_handled_by_it_live(
        stack: Stack, browser: Browser) -> None:
    await stack.add_agent("lena", role="lead", inboxes=("support",))
    await make_team(stack, "Support desk", ("lena", "alice"), ("support",))
    admin = await stack.login("admin")
    assert (await admin.http.post("/api/v1/labels", json={"name": "Billing"})).status_code == 201
    await stack.inbound("support", [message("auto-0", "An old invoice question", "old-customer")])

    desk = await open_inbox(browser, stack, "lena")
    page = desk.page
    await page.goto(stack.base + "/admin/automation")
    form = page.locator("#rule-form")
    await form.locator("input[name=name]").fill("Billing questions")
    await form.locator("select[name=trigger]").select_option("message_received")
    await form.locator("select[name=condition]").first.select_option("text|contains_any")
    await form.locator("input[name=condition_value]").first.fill("invoice, refund")
    actions = form.locator(".action-row")
    await actions.nth(0).locator("select").select_option("add_label")
    await actions.nth(0).locator("input").fill("billing")
    await actions.nth(1).locator("select").select_option("assign_agent")
    await actions.nth(1).locator("input").fill("Alice")
    await actions.nth(2).locator("select").select_option("reply")
    await actions.nth(2).locator("input").fill(
        "Hi {{contact.first_name}}, Billing has your question.")
    await page.get_by_role("button", name="Add an action").click()
    await expect(actions).to_have_count(4)
    await actions.nth(3).locator("select").select_option("set_priority")
    await actions.nth(3).locator("input").fill("high")

    await page.click("#dry-run")
    await expect(page.locator("#dry-run-result")).to_contain_text("1 of the latest 1")
    await expect(page.locator("#dry-run-result")).to_contain_text("Old-Customer")
    # The dry run kept what was typed: the rule is added as it is.
    await page.get_by_role("button", name="Add rule").click()
    await expect(page.locator("#notice")).to_contain_text("The rule was added")
    await expect(page.locator("#automation-table")).to_contain_text(
        "A customer message is received, if the message mentions any of invoice, refund: "
        "add the label billing; assign to the agent Alice; reply with Hi")

    alice = await open_inbox(browser, stack, "alice")
    sent = await stack.inbound("support", [message("auto-1", "Where is my refund?", "ines")])
    assert sent.status_code == 202, sent.text
    # The row is found by the customer's name: the rule's reply soon becomes its preview.
    row = alice.row("Ines")
    await expect(row).to_be_visible()
    await expect(row.locator(".label-chip")).to_have_text(["Billing"])
    await expect(row).to_contain_text("Billing has your question")
    await row.click()
    thread = alice.page.locator("#message-list")
    await expect(thread).to_contain_text("Hi Ines, Billing has your question.")
    await expect(thread.locator(".activity", has_text="Rule “Billing questions”")).to_contain_text(
        "added label billing; assigned to Alice; replied; set priority high")
    await expect(alice.page.locator("#priority")).to_have_value("high")
    await expect(thread.locator(".msg.out", has_text="Billing has your question")).to_contain_text(
        "Automation")
    await stack.receiver.wait(1)
    assert stack.receiver.received[-1]["text"] == "Hi Ines, Billing has your question."
    desk.assert_clean()
    alice.assert_clean()
