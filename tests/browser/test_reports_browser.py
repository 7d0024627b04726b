"""The reports page in Chromium: a lead opens it from the inbox, reads a month's figures
(rolled from events with chosen times, as in tests/test_report_rollups.py) in the tiles,
the table and both charts, switches the grouping, and watches the live load move when a
customer writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from inbox.db import Database
from inbox.report_rollups import roll
from tests.browser.test_agent_ui import open_inbox
from tests.helpers import Stack, message
from tests.test_report_rollups import BERLIN, World

NONE = "\N{EN DASH}"  # what the page shows for a figure it has no data for


def _month(ids: dict[str, int]) -> World:
    """March 2026 in Support: three conversations of Alice's, one of Bob's answering."""
    w = World({**ids, "m1": 900_001, "m2": 900_002, "m3": 900_003})
    w.created("m1", "2026-03-02 09:00", inbox="support", channel="api", assignee="alice",
              labels=("billing",))
    w.message("m1", "2026-03-02 09:02", agent="alice")  # 2 min
    w.status("m1", "2026-03-02 10:00", "resolved")  # 1 h
    w.created("m2", "2026-03-03 12:00", inbox="support", channel="api", assignee="alice")
    w.message("m2", "2026-03-03 12:10", agent="alice")  # 10 min
    w.status("m2", "2026-03-04 12:00", "resolved")  # 1 d
    w.message("m2", "2026-03-04 12:00", agent=None, survey=True, automated=True)
    w.rated("m2", "2026-03-04 12:30", 5)
    w.created("m3", "2026-03-10 08:00", inbox="support", channel="api", assignee="bob")
    w.message("m3", "2026-03-10 08:05", agent="bob")  # 5 min
    w.status("m3", "2026-03-10 08:35", "resolved")  # 35 min
    return w


@pytest.mark.parametrize("shape", ["embedded"])
async def test_a_lead_reads_the_month_by_agent_and_label_and_sees_the_load_move_live(
        stack: Stack, browser: Browser, screenshots: Path) -> None:
    await stack.add_agent("lena", role="lead", inboxes=("support",))
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await roll(session, _month(stack.ids).events, BERLIN)
    finally:
        await db.close()

    desk = await open_inbox(browser, stack, "lena")
    page = desk.page
    await page.get_by_role("link", name="Reports").click()
    await expect(page).to_have_url(re.compile(re.escape(stack.base) + r"/reports(\?.*)?$"))
    # Lena keeps her inbox open in another tab (the reports page alone does not make her
    # online: it only watches).
    inbox_tab = await desk.context.new_page()
    await inbox_tab.goto("/")
    await expect(inbox_tab.locator("body")).to_have_attribute("data-live", "true")
    await expect(page.locator("body")).to_have_attribute("data-live", "true")
    await page.fill("#range-start", "2026-03-01")
    await page.fill("#range-end", "2026-03-31")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("body")).to_have_attribute(
        "data-report", "start=2026-03-01&end=2026-03-31&group=agent")

    tiles = page.locator("#totals")
    await expect(tiles.locator("[data-figure=created] .figure")).to_have_text("3")
    await expect(tiles.locator("[data-figure=resolved] .figure")).to_have_text("3")
    # First responses 2, 10 and 5 min: the median is 5 min; resolutions 1 h, 1 d, 35 min.
    await expect(tiles.locator("[data-figure=first_response] .figure")).to_have_text("5 min")
    await expect(tiles.locator("[data-figure=resolution] .figure")).to_have_text("1 h")
    await expect(tiles.locator("[data-figure=csat] .figure")).to_have_text("100%")
    table = page.locator("#groups-table")
    await expect(table.locator("tbody tr th")).to_have_text(["Alice", "Bob"])
    alice = table.locator("tbody tr", has_text="Alice")
    await expect(alice.locator("td")).to_have_text([
        "2", "2", "0", "2", "1.0", "2 min", "10 min", "1 h", "1 d", NONE, "100%", "1 of 1"])
    await expect(table.locator("tfoot th")).to_have_text("Total")
    # Both charts were drawn by the vendored library, with the month's days and the groups.
    days = await page.evaluate(
        "Chart.getChart(document.getElementById('chart-days')).data.labels.length")
    assert days == 31
    bars = await page.evaluate(
        "Chart.getChart(document.getElementById('chart-groups')).data.labels")
    assert bars == ["Alice", "Bob"]
    csv = await page.locator("#csv-groups").get_attribute("href")
    assert csv == ("/api/v1/reports/activity.csv?start=2026-03-01&end=2026-03-31&group=agent"
                   "&table=groups")

    await page.select_option("#range-group", "label")
    await expect(page.locator("#groups-title")).to_have_text("By label")
    await expect(table.locator("tbody tr th")).to_have_text(["No label", "billing"])

    # The live load: Lena steps away, a customer writes and waits; she comes back and the
    # queue gives it to her.
    now = page.locator("#now-figures")
    lena = await stack.login("lena")
    away = await lena.http.put("/api/v1/me/availability", json={"availability": "away"})
    assert away.status_code == 200
    await expect(now.locator("[data-figure=online] .figure")).to_have_text("0 of 2")
    await expect(now.locator("[data-figure=open] .figure")).to_have_text("0")
    await expect(page.locator("#waiting-list")).to_have_text("Nobody waits.")
    assert (await stack.inbound("support", [message("live-1", "Where is my parcel?")])
            ).status_code == 202
    await expect(now.locator("[data-figure=open] .figure")).to_have_text("1")
    await expect(now.locator("[data-figure=unassigned] .figure")).to_have_text("1")
    await expect(page.locator("#waiting-list li a")).to_have_text(["Where is my parcel?"])
    back = await lena.http.put("/api/v1/me/availability", json={"availability": "online"})
    assert back.status_code == 200
    await expect(now.locator("[data-figure=unassigned] .figure")).to_have_text("0")
    await expect(page.locator("#now-agents-table tr", has_text="Lena").locator("td")).to_have_text(
        ["Online", "1", "No limit"])
    await expect(page.locator("#waiting-list")).to_have_text("Nobody waits.")
    await page.select_option("#range-group", "agent")
    await expect(page.locator("#groups-title")).to_have_text("By agent")
    await page.screenshot(path=str(screenshots / "reports.png"), full_page=True)
    desk.assert_clean()
