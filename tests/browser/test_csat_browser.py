"""The satisfaction survey in the website widget: an agent resolves the visitor's chat in
the inbox, the widget asks for 1-5 under the survey message, the visitor's click and
comment reach the agent's open thread live."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import open_inbox
from tests.browser.test_widget_browser import _demo_widget, _say, _visitor
from tests.helpers import Stack, eventually


@pytest.mark.parametrize("shape", ["embedded"])
async def test_a_visitor_rates_the_chat_in_the_widget_and_the_agent_sees_it_live(
        stack: Stack, browser: Browser) -> None:
    inbox_id = await _demo_widget(stack)
    admin = await stack.login("admin")
    switched = await admin.http.put(f"/api/v1/inboxes/{inbox_id}/csat", json={"enabled": True})
    assert switched.status_code == 200, switched.text
    visitor, page = await _visitor(browser, stack.base)
    await _say(page, "Do you deliver on Sundays?")
    desk = await open_inbox(browser, stack, "alice")
    row = desk.row("Do you deliver on Sundays?")
    await row.click()
    agent = desk.page
    await agent.locator("#reply").fill("We do, from 10 to 4.")
    await agent.locator("#reply").press("Enter")
    await expect(page.locator(".msg.agent")).to_have_text(["We do, from 10 to 4."])
    await agent.locator("#reply").evaluate("e => e.blur()")
    await agent.keyboard.press("e")  # resolve
    await expect(agent.locator("#thread-status")).to_have_text("Resolved")

    survey = page.locator(".csat")
    await expect(page.locator(".msg.agent").last).to_contain_text(
        "How would you rate our help with this conversation?")
    await expect(survey.locator("button.score")).to_have_text(["1", "2", "3", "4", "5"])
    await survey.get_by_role("button", name="Rate 4 out of 5").click()
    await expect(survey.locator(".thanks")).to_have_text("Thank you! You rated us 4 out of 5.")
    await expect(survey.get_by_role("button", name="Rate 4 out of 5")).to_have_attribute(
        "aria-pressed", "true")
    await survey.locator("textarea").fill("Quick answer, thanks")
    await survey.get_by_role("button", name="Send").click()
    await expect(survey.locator(".thanks")).to_have_text(
        "Thank you! Your comment reached the team.")

    thread = agent.locator("#message-list")
    await expect(thread.locator(".activity").last).to_contain_text(
        "The customer rated this conversation 4/5: “Quick answer, thanks”")
    await expect(agent.locator("#thread-status")).to_have_text("Resolved")

    async def scored() -> dict[str, Any] | None:
        items = (await admin.http.get(f"/api/v1/conversations?inbox_id={inbox_id}&status=resolved")
                 ).json()["items"]
        return items[0] if items and items[0]["csat_score"] == 4 else None

    assert (await eventually(scored))["status"] == "resolved"
    # After a reload the widget remembers the answer.
    await page.reload()
    await page.locator("button.launch").click()
    await expect(page.locator(".csat .thanks")).to_have_text(
        "Thank you! You rated us 4 out of 5.")
    desk.assert_clean()
    await visitor.close()
