"""Make docs/screenshots/ from the demo: ./scripts/screenshots [--out DIR]

Starts `switchboard demo` on a free port with its own data folder, then drives Debian's
Chromium (Playwright) through what a new team sees: a visitor writing from the demo website,
the agent inbox with a reply and an internal note, the same on a phone, and the admin pages.
The pictures show demo data only. Look at them before committing them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, async_playwright, expect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "switchboard-demo"  # noqa: S105 - the demo prints it: it logs in on the demo only
AGENT, ADMIN = "agent@demo.switchboard.test", "admin@demo.switchboard.test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_demo(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(data), "SWITCHBOARD_DATABASE_URL": "",
           "SWITCHBOARD_REDIS_URL": "", "SWITCHBOARD_PUBLIC_URL": ""}
    demo = subprocess.Popen(  # noqa: S603 - our own command, no outside input
        [sys.executable, "-m", "hub.cli", "demo", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return demo
        except httpx.HTTPError:
            pass
        if demo.poll() is not None:
            raise SystemExit("the demo stopped while starting")
        time.sleep(0.3)
    demo.terminate()
    raise SystemExit("the demo did not answer within 60 s")


async def _log_in(browser: Browser, base: str, email: str, **context: object) -> Page:
    page = await (await browser.new_context(**context)).new_page()  # type: ignore[arg-type]
    await page.goto(base + "/login")
    await page.locator("input[name=email]").fill(email)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("button[type=submit]").click()
    await page.wait_for_url(base + "/")
    return page


async def shoot(base: str, out: Path) -> list[Path]:
    """Take every picture; return their paths."""
    made: list[Path] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        desk = await _log_in(browser, base, AGENT, viewport={"width": 1280, "height": 760})

        visitor = await (await browser.new_context(viewport={"width": 1100, "height": 700})
                         ).new_page()
        await visitor.goto(base + "/demo")
        await visitor.locator("button.launch").click()
        await visitor.locator("textarea").fill("Hi! Do you deliver compost on Saturdays?")
        await visitor.locator("textarea").press("Enter")

        row = desk.locator(".conversation-row", has_text="compost on Saturdays")
        await row.click()
        reply = desk.locator("#reply")
        await reply.fill("Hello! Yes, Saturday mornings between 8 and 12. Shall I book one?")
        await reply.press("Enter")
        await expect(visitor.locator(".msg.agent")).to_have_count(1)
        await desk.keyboard.press("Escape")
        await desk.locator("#composer button[data-mode=note]").click()
        await reply.fill("Customer asked about weekend delivery; offered Saturday.")
        await reply.press("Enter")
        await expect(desk.locator("#message-list .msg.note")).to_have_count(1)
        await desk.wait_for_timeout(500)

        made.append(out / "widget.png")
        await visitor.screenshot(path=str(made[-1]))
        made.append(out / "agent-inbox.png")
        await desk.screenshot(path=str(made[-1]))

        phone = await _log_in(browser, base, AGENT, viewport={"width": 390, "height": 780},
                              is_mobile=True, has_touch=True, device_scale_factor=2)
        await phone.locator(".conversation-row", has_text="Saturday").click()
        await expect(phone.locator("#message-list .msg.note")).to_have_count(1)
        made.append(out / "agent-inbox-phone.png")
        await phone.screenshot(path=str(made[-1]))

        admin = await _log_in(browser, base, ADMIN, viewport={"width": 1280, "height": 860})
        for name, path in (("admin-inboxes.png", "/admin/inboxes"),
                           ("admin-agents.png", "/admin/agents"),
                           ("admin-teams.png", "/admin/teams"),
                           ("admin-routing.png", "/admin/routing"),
                           ("admin-automation.png", "/admin/automation")):
            await admin.goto(base + path)
            made.append(out / name)
            await admin.screenshot(path=str(made[-1]), full_page=True)
        # The website chat's inbox: its snippet and the preview of its colours and greeting.
        await admin.goto(base + "/admin/inboxes")
        await admin.locator("#inbox-table a", has_text="Acme Garden").first.click()
        await expect(admin.locator("#widget-preview")).to_be_visible()
        made.append(out / "admin-widget-inbox.png")
        await admin.screenshot(path=str(made[-1]), full_page=True)
        await browser.close()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="switchboard-shots-") as data:
        demo = _start_demo(Path(data), port)
        try:
            made = asyncio.run(shoot(f"http://127.0.0.1:{port}", args.out))
        finally:
            demo.terminate()
            demo.wait(timeout=20)
    for path in made:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
