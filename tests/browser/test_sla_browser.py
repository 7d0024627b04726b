"""SLA in the agent's browser: the list shows each conversation's countdown, the warning
rings the assignee's bell and turns the countdown amber live, the SLA filter lists those at
risk, and the reply ends the countdown."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import open_inbox
from tests.helpers import Stack, message


@pytest.mark.parametrize("shape", ["embedded"])
async def test_an_sla_counts_down_and_its_warning_arrives_live(
        stack: Stack, browser: Browser) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/sla-policies", json={
        "name": "Chat", "inbox_id": stack.ids["support"],
        "first_response_minutes": 60, "resolution_minutes": 600})
    assert made.status_code == 201, made.text
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    await stack.inbound("support", [message("sla-b-1", "Is anyone there?", "ada")])
    row = alice.row("Is anyone there?")
    chip = row.locator(".sla-chip")
    await expect(chip).to_have_text(re.compile(r"^SLA (59m|1h 0m) left$"))
    await expect(chip).to_have_class(re.compile("sla-ok"))

    # The target shrinks to a minute: the warning (15 minutes before) is due at once.
    policy = made.json()["id"]
    assert (await admin.http.patch(f"/api/v1/sla-policies/{policy}", json={
        "first_response_minutes": 1, "resolution_minutes": None})).status_code == 200
    await expect(chip).to_have_class(re.compile("sla-at_risk"))
    await expect(page.locator("#bell-count")).to_have_text(re.compile(r"[1-9]"))
    await page.click("#bell")
    panel = page.locator("#notifications-panel")
    await panel.locator("button[data-notifications='']").click()
    await expect(panel.locator(".notification-title", has_text="SLA first response at risk")
                 ).to_have_count(1)
    await page.keyboard.press("Escape")

    await page.click("#more-filters-toggle")
    await page.select_option("#sla-filter", "at_risk")
    await expect(page.locator(".conversation-row")).to_have_count(1)
    await row.click()
    await expect(page.locator("#thread-sla")).to_have_text(re.compile(r"^SLA (<1m|1m) left$"))
    reply = page.locator("#reply")
    await reply.fill("Yes, here! How can I help?")
    await reply.press("Enter")
    await expect(page.locator("#thread-sla")).to_have_count(0)  # met: no countdown
    await expect(page.locator(".conversation-row")).to_have_count(0)  # no longer at risk
    alice.assert_clean()
