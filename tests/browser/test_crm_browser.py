"""The CRM in the agent's browser: the contact panel shows HubSpot's card with a link into
HubSpot, and a change made in HubSpot shows in the panel and the list live."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_agent_ui import open_inbox
from tests.crm_sync.test_hubspot import connect
from tests.fakes.hubspot_server import PORTAL_ID, FakeHubSpot
from tests.helpers import Stack, eventually, message


@pytest.mark.parametrize("shape", ["embedded"])
async def test_the_contact_panel_shows_the_hubspot_card_and_its_changes_live(
        crm_stack: Stack, browser: Browser, hubspot: FakeHubSpot) -> None:
    admin = await crm_stack.login("admin")
    await connect(admin, hubspot)
    hubspot.owners["7"] = {"id": "7", "firstName": "Olivia", "lastName": "Owner"}
    alice = await open_inbox(browser, crm_stack, "alice")
    page = alice.page
    await crm_stack.inbound("support", [message("crm-b-1", "Can I upgrade my plan?") | {
        "sender": {"email": "ines@example.com", "name": "Ines Ortega"}}])
    record = await eventually(lambda: _found(hubspot, "ines@example.com"))
    record["properties"].update(hubspot_owner_id="7", lifecyclestage="opportunity")

    row = alice.row("Can I upgrade my plan?")
    await row.click()
    card = page.locator("#contact-crm .crm-card")
    await expect(card.locator("h4")).to_contain_text("HubSpot")
    await expect(card.locator("dl")).to_contain_text("Olivia Owner")
    await expect(card.locator("dl")).to_contain_text("opportunity")
    link = card.locator("a.crm-link")
    await expect(link).to_have_attribute(
        "href", f"https://app.hubspot.com/contacts/{PORTAL_ID}/record/0-1/{record['id']}")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")

    hubspot.edit(record["id"], lastname="Ortega-Lopez")
    await expect(page.locator("#contact .contact-name")).to_have_text("Ines Ortega-Lopez")
    await expect(alice.row("Can I upgrade my plan?")).to_contain_text("Ines Ortega-Lopez")
    assert alice.errors == []


async def _found(hubspot: FakeHubSpot, email: str) -> object:
    return hubspot.by_email(email)
