"""CRM latency: a WhatsApp message from a new number until the contact is in HubSpot.

Starts its own stack with real processes (like bench/idle_latency.py), a local Twilio and
a local HubSpot that follow their documented APIs, connects HubSpot, then sends WhatsApp
messages from new numbers (signed as Twilio signs them) at --rate per second and stops the
clock for each when HubSpot has the person (the fake records the moment it created the
record). Reports p50 / p95 / max over --count contacts, and the requests HubSpot answered.

    .venv/bin/python bench/crm.py --shape production --count 100
    .venv/bin/python bench/crm.py --shape embedded --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.fakes.hubspot_server import CLIENT_SECRET, FakeHubSpot  # noqa: E402
from tests.fakes.twilio_server import FakeTwilio, form_body, inbound_fields, signed  # noqa: E402
from tests.processes import ProcessStack, bootstrap  # noqa: E402

WHATSAPP_NUMBER = "+14155238886"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sb-crm-"))
    stack = ProcessStack(workdir, args.shape, log_level="warning")
    hubspot = FakeHubSpot()
    try:
        await stack.start()
        await hubspot.start()
        if args.shape == "production":
            webs = [stack.web("web-1")]
            stack.worker("worker-1")
            stack.worker("worker-2")
        else:
            webs = [stack.serve("serve")]
        await stack.wait_ready(timeout=60)
        base = webs[0].base_url
        setup = await bootstrap(stack, base)
        async with setup, FakeTwilio() as twilio, httpx.AsyncClient(timeout=30) as http:
            made = await setup.admin.post("/api/v1/crm/connections", json={
                "kind": "hubspot", "sync_existing": False, "settings": {
                    "access_token": "pat-na1-good-token", "client_secret": CLIENT_SECRET,
                    "api_base": hubspot.url}})
            assert made.status_code == 201, made.text
            created = await setup.admin.post("/api/v1/inboxes", json={
                "name": "WhatsApp", "channel": "whatsapp",
                "settings": twilio.settings(from_number=WHATSAPP_NUMBER)})
            assert created.status_code == 201, created.text
            inbox_id = created.json()["id"]
            path = f"/webhooks/whatsapp/{inbox_id}"
            signed_url = f"http://localhost:{webs[0].port}{path}"
            sent: dict[str, float] = {}
            for n in range(args.count):
                phone = f"+44770090{n:04d}"
                fields = inbound_fields(sender=f"whatsapp:{phone}",
                                        to=f"whatsapp:{WHATSAPP_NUMBER}",
                                        body="Hello, is my order on its way?",
                                        profile_name=f"Customer {n}")
                sent[phone] = time.monotonic()
                answer = await http.post(base + path, content=form_body(fields),
                                         headers=signed(signed_url, fields))
                assert answer.status_code == 200, answer.text
                await asyncio.sleep(1 / args.rate)
            deadline = time.monotonic() + 60
            while len(hubspot.contacts) < args.count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        arrived = {c["properties"].get("phone"): hubspot.created_at[cid]
                   for cid, c in hubspot.contacts.items()}
        latencies = [(arrived[phone] - at) * 1000 for phone, at in sent.items()
                     if phone in arrived]
        print(f"shape {args.shape}: {len(latencies)}/{args.count} contacts in HubSpot, "
              f"{args.rate:g} new numbers per second; WhatsApp webhook sent -> HubSpot "
              "record created")
        print(f"  p50 {percentile(latencies, 50):7.1f} ms  p95 {percentile(latencies, 95):7.1f}"
              f" ms  max {max(latencies):7.1f} ms  ({len(hubspot.hits)} HubSpot requests, "
              f"{len(hubspot.requests('/batch/'))} of them batch calls)")
    finally:
        await hubspot.stop()
        await stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("production", "embedded"), default="production")
    parser.add_argument("--count", type=int, default=100, help="new contacts (at most 2,000)")
    parser.add_argument("--rate", type=float, default=5.0, help="new numbers per second")
    args = parser.parse_args()
    args.count = max(1, min(args.count, 2000))
    args.rate = max(0.1, min(args.rate, 200.0))
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
