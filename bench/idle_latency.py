"""Idle latency: one message at a time, from a customer to the agent's screen.

What a person notices when the system is quiet: a customer writes (through the API channel,
the chat widget's HTTP API, or the widget's websocket, as the widget script does) and the
clock stops when the message.created frame arrives on a logged-in agent's websocket (what
the agent inbox renders from); with --browser also when the text shows in the agent inbox
open in Chromium (Debian's, driven by Playwright). Messages are sent one after the other
with a pause between them, so nothing queues. Reports p50 / p90 / p99 / max per source.

    .venv/bin/python bench/idle_latency.py --shape embedded --browser
    .venv/bin/python bench/idle_latency.py --shape production --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from tests.processes import (  # noqa: E402
    EventCollector,
    ProcessStack,
    bootstrap,
    post_signed,
    webhook_body,
)

VISITORS = 6


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sb-idle-"))
    stack = ProcessStack(workdir, args.shape, log_level="warning")
    try:
        await stack.start()
        if args.shape == "production":
            webs = [stack.web("web-1"), stack.web("web-2")]
            stack.worker("worker-1")
            stack.worker("worker-2")
        else:
            webs = [stack.serve("serve")]
        await stack.wait_ready(timeout=60)
        setup = await bootstrap(stack, webs[0].base_url)
        async with setup, httpx.AsyncClient(timeout=30) as http:
            token = "idle-bench-widget-0123456789"
            created = await setup.admin.post("/api/v1/inboxes", json={
                "name": "Website", "channel": "webchat",
                "settings": {"public_token": token}})
            assert created.status_code == 201, created.text
            widget_inbox = created.json()
            await setup.admin.put(f"/api/v1/inboxes/{widget_inbox['id']}/members",
                                  json={"agent_ids": [setup.admin_id]})
            socket = await EventCollector.open(webs[-1].ws_url, setup.session_cookie)
            widget_base = f"{webs[0].base_url}/widget/api/{token}"
            # Visitors take turns: the widget lets one visitor send one message every 2 s.
            visitors, sockets = [], []
            ws_url = webs[0].base_url.replace("http", "ws", 1) + f"/widget/ws/{token}"
            for _ in range(VISITORS):
                session = (await http.post(f"{widget_base}/session", json={})).json()
                visitors.append({"Authorization": f"Bearer {session['token']}"})
                session = (await http.post(f"{widget_base}/session", json={})).json()
                widget_socket = await connect(ws_url)
                await widget_socket.send(json.dumps({"type": "hello",
                                                     "token": session["token"]}))
                while json.loads(await widget_socket.recv()).get("type") != "ready":
                    pass
                sockets.append(widget_socket)
            results: dict[str, list[float]] = {"api": [], "widget-http": [], "widget-ws": []}
            for n in range(args.warmup + args.count):
                for source in results:
                    external = f"{source}-{n}"
                    started = time.perf_counter()
                    if source == "api":
                        answer = await post_signed(
                            http, f"{webs[0].base_url}/webhooks/api/{setup.inbox_id}",
                            setup.secret, webhook_body(external, "idle-customer", "hello"))
                        assert answer.status_code == 202, answer.text
                    elif source == "widget-http":
                        answer = await http.post(f"{widget_base}/messages",
                                                 headers=visitors[n % VISITORS],
                                                 json={"id": external, "text": "hello"})
                        assert answer.status_code == 202, answer.text
                    else:
                        await sockets[n % VISITORS].send(json.dumps(
                            {"type": "message", "id": external, "text": "hello"}))
                    seen = await _arrival(socket, external, source)
                    if n >= args.warmup:
                        results[source].append(seen - started)
                    await asyncio.sleep(args.pause)
            for widget_socket in sockets:
                await widget_socket.close()
            await socket.close()
            if args.browser:
                results["api-to-screen"] = await _screen(args, webs[0].base_url, http,
                                                         setup.inbox_id, setup.secret)
        print(f"shape {args.shape}: {args.count} messages per source, one at a time, "
              f"{args.pause:.2f} s apart; customer sends -> agent websocket frame")
        for source, values in results.items():
            ms = [v * 1000 for v in values]
            print(f"  {source:12} p50 {percentile(ms, 50):6.1f} ms  p90 {percentile(ms, 90):6.1f}"
                  f" ms  p99 {percentile(ms, 99):6.1f} ms  max {max(ms):6.1f} ms")
    finally:
        await stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


async def _screen(args: argparse.Namespace, base: str, http: httpx.AsyncClient, inbox_id: int,
                  secret: str) -> list[float]:
    """API message -> its text on the agent inbox page in Chromium."""
    from playwright.async_api import async_playwright

    from tests.processes import ADMIN_EMAIL, ADMIN_PASSWORD

    found: list[float] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = await browser.new_page()
        await page.goto(f"{base}/login")
        await page.fill("input[name=email]", ADMIN_EMAIL)
        await page.fill("input[name=password]", ADMIN_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/")
        await asyncio.sleep(1.0)  # the inbox loaded and its socket is live
        for n in range(args.warmup + args.count):
            text = f"screen probe {n}"
            started = time.perf_counter()
            answer = await post_signed(http, f"{base}/webhooks/api/{inbox_id}", secret,
                                       webhook_body(f"screen-{n}", f"screen-{n % 3}", text))
            assert answer.status_code == 202, answer.text
            await page.wait_for_function("t => document.body.innerText.includes(t)",
                                         arg=text, timeout=10_000)
            if n >= args.warmup:
                found.append(time.perf_counter() - started)
            await asyncio.sleep(args.pause)
        await browser.close()
    return found


async def _arrival(socket: EventCollector, external: str, source: str) -> float:
    """When the message.created of the message just sent arrived (widget messages carry
    an external id the server makes from the visitor and the client id)."""
    deadline = time.monotonic() + 30
    while True:
        for external_id, at in socket.created.items():
            if external_id == external or external_id.endswith(f":{external}"):
                socket.created.pop(external_id)
                return at
        if time.monotonic() > deadline:
            raise TimeoutError(f"{source}: {external} never reached the agent")
        socket.changed.clear()
        try:
            await asyncio.wait_for(socket.changed.wait(), 0.5)
        except TimeoutError:
            continue


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.15)
    parser.add_argument("--browser", action="store_true",
                        help="also time the text appearing in the agent inbox in Chromium")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
