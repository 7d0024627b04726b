"""Outbound webhooks end to end: a receiver that verifies with the `standardwebhooks`
library accepts every delivery; one that is down gets everything afterwards; dead
deliveries replay; a rotated secret signs beside the old one; bad endpoints are refused."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from config import Settings
from crm_sync.webhooks import new_secret
from tests.helpers import Agent, Stack, eventually, message, running_stack
from tests.services import LoopbackServer, free_port


class Endpoint:
    """A system receiving Switchboard's webhooks: verifies each, can be down on demand."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.arrivals: list[tuple[dict[str, str], bytes]] = []
        self.down = False

        async def hooks(request: Request) -> Response:
            body = await request.body()
            if self.down:
                return PlainTextResponse("maintenance", status_code=503)
            self.arrivals.append((dict(request.headers), body))
            return PlainTextResponse("thanks")

        self._served = LoopbackServer(Starlette(routes=[Route("/hooks", hooks,
                                                              methods=["POST"])]), self.port)

    async def start(self) -> None:
        await self._served.start()

    async def stop(self) -> None:
        await self._served.stop()

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every arrival, checked as a receiver checks it (raises on a bad signature)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.arrivals]

    def ids(self, event_type: str | None = None) -> set[str]:
        return {h["webhook-id"] for h, b in self.arrivals
                if event_type is None or json.loads(b)["type"] == event_type}


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    served = Endpoint()
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


@pytest.fixture
async def quick(settings: Settings) -> AsyncIterator[Stack]:
    """A stack whose failed deliveries are tried again within a second."""
    fast = settings.model_copy(update={"webhook_retry_base_seconds": 0.2,
                                       "webhook_retry_max_seconds": 1.0,
                                       "webhook_poll_seconds": 0.2})
    async with running_stack(fast) as stack:
        yield stack


async def _register(admin: Agent, url: str, types: list[str]) -> dict[str, Any]:
    made = await admin.http.post("/api/v1/webhook-endpoints",
                                 json={"url": url, "event_types": types, "description": "ERP"})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def test_every_delivery_verifies_with_the_standard_library(
        quick: Stack, endpoint: Endpoint) -> None:
    admin = await quick.login("admin")
    hook = await _register(admin, endpoint.url, ["conversation.created", "message.created"])
    assert hook["secret"].startswith("whsec_") and hook["secrets"] == 1
    listed = (await admin.http.get("/api/v1/webhook-endpoints")).json()
    assert [e["url"] for e in listed] == [endpoint.url] and "secret" not in listed[0]

    await quick.inbound("support", [message("wh-1", "Where is my parcel?", "ada")])
    await eventually(lambda: _async(len(endpoint.arrivals) >= 2))
    payloads = endpoint.verified(hook["secret"])
    assert sorted(p["type"] for p in payloads) == ["conversation.created", "message.created"]
    created = next(p for p in payloads if p["type"] == "message.created")
    assert created["data"]["message"]["text"] == "Where is my parcel?"
    assert created["data"]["id"] == endpoint.arrivals[
        [p["type"] for p in payloads].index("message.created")][0]["webhook-id"]
    # Only the types asked for: the new contact's event was not sent.
    assert all(p["type"] != "contact.created" for p in payloads)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(endpoint.arrivals[0][1], endpoint.arrivals[0][0])

    async def logged() -> Any:
        log = (await admin.http.get(f"/api/v1/webhook-endpoints/{hook['id']}/deliveries")
               ).json()
        return log if {d["status"] for d in log["deliveries"]} == {"delivered"} else None

    log = await eventually(logged)  # the deliverer records the answer just after it
    one = (await admin.http.get(f"/api/v1/webhook-endpoints/{hook['id']}/deliveries/"
                                f"{log['deliveries'][0]['id']}")).json()
    assert one["tries"][0]["status_code"] == 200 and one["tries"][0]["response"] == "thanks"

    alice = await quick.login("alice")
    assert (await alice.http.get("/api/v1/webhook-endpoints")).status_code == 403


async def _async(value: Any) -> Any:
    return value


async def test_a_receiver_that_was_down_gets_every_event_afterwards(
        quick: Stack, endpoint: Endpoint) -> None:
    admin = await quick.login("admin")
    hook = await _register(admin, endpoint.url, ["message.created"])
    endpoint.down = True
    await quick.inbound("support", [message(f"down-{n}", f"#{n}", f"c{n % 3}")
                                    for n in range(12)])
    base = f"/api/v1/webhook-endpoints/{hook['id']}/deliveries"

    async def failing() -> bool:
        page = (await admin.http.get(base)).json()["deliveries"]
        return len(page) == 12 and all(d["attempts"] >= 2 for d in page)

    await eventually(failing, timeout=30)
    endpoint.down = False
    await eventually(lambda: _async(len(endpoint.ids()) == 12), timeout=30)
    texts = sorted(p["data"]["message"]["text"] for p in endpoint.verified(hook["secret"]))
    assert texts == sorted(f"#{n}" for n in range(12))

    async def delivered() -> Any:
        page = (await admin.http.get(base)).json()["deliveries"]
        return page if {d["status"] for d in page} == {"delivered"} else None

    page = await eventually(delivered)
    tries = (await admin.http.get(f"{base}/{page[0]['id']}")).json()["tries"]
    assert tries[0]["status_code"] == 200 and tries[-1]["status_code"] == 503
    assert tries[-1]["response"] == "maintenance"


async def test_dead_deliveries_replay_one_or_all_since(settings: Settings,
                                                        endpoint: Endpoint) -> None:
    brief = settings.model_copy(update={"webhook_retry_base_seconds": 0.1,
                                        "webhook_retry_max_seconds": 0.2,
                                        "webhook_give_up_seconds": 0.5,
                                        "webhook_poll_seconds": 0.1})
    async with running_stack(brief) as stack:
        admin = await stack.login("admin")
        hook = await _register(admin, endpoint.url, ["message.created"])
        endpoint.down = True
        await stack.inbound("support", [message("dead-1", "one"), message("dead-2", "two")])
        base = f"/api/v1/webhook-endpoints/{hook['id']}"

        async def dead() -> list[dict[str, Any]]:
            page = (await admin.http.get(f"{base}/deliveries?status=dead")).json()
            found: list[dict[str, Any]] = page["deliveries"]
            return found if len(found) == 2 else []

        first, second = await eventually(dead, timeout=20)
        assert first["last_status_code"] == 503 and first["next_attempt_at"] is None
        endpoint.down = False
        again = await admin.http.post(f"{base}/deliveries/{first['id']}/replay")
        assert again.status_code == 202 and again.json() == {"replayed": 1}
        await eventually(lambda: _async(endpoint.ids() == {first["event_id"]}))
        since = await admin.http.post(f"{base}/replay",
                                      json={"since": "2000-01-01T00:00:00Z"})
        assert since.json() == {"replayed": 2}
        await eventually(lambda: _async(len(endpoint.arrivals) >= 3))
        assert endpoint.ids() == {first["event_id"], second["event_id"]}
        bad = await admin.http.post(f"{base}/replay", json={"since": "yesterday"})
        assert bad.status_code == 422


async def test_a_rotated_secret_signs_beside_the_old_one(
        quick: Stack, endpoint: Endpoint) -> None:
    admin = await quick.login("admin")
    hook = await _register(admin, endpoint.url, ["message.created"])
    rotated = await admin.http.post(f"/api/v1/webhook-endpoints/{hook['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secrets"] == 2
    new = rotated.json()["secret"]
    assert new != hook["secret"]
    await quick.inbound("support", [message("rot-1", "after rotation")])
    await eventually(lambda: _async(len(endpoint.arrivals) == 1))
    headers, _ = endpoint.arrivals[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the old secret and one already on the new accept it alike.
    assert endpoint.verified(hook["secret"]) == endpoint.verified(new)


async def test_bad_endpoints_are_refused_and_private_targets_never_reached(
        stack: Stack) -> None:
    admin = await stack.login("admin")
    base = "/api/v1/webhook-endpoints"
    for body, says in [
        ({"url": "ftp://erp.example/hooks"}, "url: only"),
        ({"url": "https://erp.example/hooks", "event_types": ["message.exploded"]},
         "'message.exploded' is not an event type"),
        ({"url": "https://erp.example/hooks", "secret": "mine"}, "secret"),
    ]:
        refused = await admin.http.post(base, json=body)
        assert refused.status_code == 422 and says in refused.text, refused.text
    # 10.0.0.0/8 is not allowed in the tests' settings (only loopback is): the delivery is
    # refused at the connection, and the log says so.
    hook = await _register(admin, "http://10.1.2.3:9/hooks", [])
    await stack.inbound("support", [message("priv-1", "hello")])

    async def refused_try() -> Any:
        page = (await admin.http.get(f"{base}/{hook['id']}/deliveries")).json()["deliveries"]
        return [d for d in page if (d["last_error"] or "").startswith("refused")]

    assert await eventually(refused_try)
    off = await admin.http.patch(f"{base}/{hook['id']}", json={"enabled": False})
    assert off.json()["enabled"] is False
    assert (await admin.http.delete(f"{base}/{hook['id']}")).status_code == 204
    assert (await admin.http.get(f"{base}/{hook['id']}")).status_code == 404


async def test_the_admin_pages_add_an_endpoint_show_its_log_and_replay(
        quick: Stack, endpoint: Endpoint) -> None:
    from tests.web.test_admin_pages import _form_login

    browser, csrf = await _form_login(quick, "admin")
    added = await browser.post("/admin/webhooks", data={
        "csrf_token": csrf, "url": endpoint.url, "description": "Warehouse",
        "event_types": ["message.created"]})
    assert added.status_code == 201, added.text
    found = re.search(r'<code id="webhook-secret">(whsec_[^<]+)</code>', added.text)
    assert found, added.text
    secret = html.unescape(found.group(1))
    listing = await browser.get("/admin/webhooks")
    assert endpoint.url in listing.text and "Warehouse" in listing.text
    assert "whsec_" not in listing.text
    [hook] = (await (await quick.login("admin")).http.get("/api/v1/webhook-endpoints")).json()

    await quick.inbound("support", [message("page-1", "from the page test")])
    await eventually(lambda: _async(len(endpoint.arrivals) == 1))
    assert endpoint.verified(secret)[0]["data"]["message"]["text"] == "from the page test"

    async def logged() -> str:
        text = (await browser.get(f"/admin/webhooks/{hook['id']}")).text
        return text if "HTTP 200" in text else ""

    page = await eventually(logged)
    delivery = re.search(r'id="delivery-(\d+)"', page)
    assert delivery
    detail = await browser.get(f"/admin/webhooks/{hook['id']}/deliveries/{delivery.group(1)}")
    assert "from the page test" in html.unescape(detail.text) and "thanks" in detail.text
    again = await browser.post(
        f"/admin/webhooks/{hook['id']}/deliveries/{delivery.group(1)}/replay",
        data={"csrf_token": csrf})
    assert again.status_code == 303
    await eventually(lambda: _async(len(endpoint.arrivals) == 2))
    assert endpoint.arrivals[0][0]["webhook-id"] == endpoint.arrivals[1][0]["webhook-id"]
    refused = await browser.post("/admin/webhooks", data={"csrf_token": csrf,
                                                          "url": "ftp://nowhere"})
    assert refused.status_code == 422 and "Url: only" in refused.text
    alice, _ = await _form_login(quick, "alice")
    assert (await alice.get("/admin/webhooks")).status_code == 403
    gone = await browser.post(f"/admin/webhooks/{hook['id']}/delete",
                              data={"csrf_token": csrf, "confirm": "1"})
    assert gone.status_code == 303 and endpoint.url not in (
        await browser.get("/admin/webhooks")).text


async def test_a_rule_sends_the_conversation_to_the_webhooks_that_take_it(
        quick: Stack, endpoint: Endpoint) -> None:
    admin = await quick.login("admin")
    hook = await _register(admin, endpoint.url, ["automation.webhook"])
    rule = await admin.http.post("/api/v1/automation-rules", json={
        "name": "Refunds to the ERP", "trigger": "message_received",
        "inbox_id": quick.ids["support"],
        "conditions": [{"field": "text", "op": "contains_any", "value": ["refund"]}],
        "actions": [{"type": "send_webhook"}]})
    assert rule.status_code == 201, rule.text
    refused = await admin.http.post("/api/v1/automation-rules", json={
        "name": "Bad", "trigger": "message_received", "inbox_id": quick.ids["support"],
        "conditions": [], "actions": [{"type": "send_webhook", "url": "http://x.test"}]})
    assert refused.status_code in (400, 422) and "send_webhook takes no 'url'" in refused.text

    await quick.inbound("support", [message("wh-r1", "Where is my parcel?", "ada")])
    await quick.inbound("support", [message("wh-r2", "I want a refund", "bea")])
    await eventually(lambda: _async(len(endpoint.arrivals) >= 1))
    [sent] = endpoint.verified(hook["secret"])
    assert sent["type"] == "automation.webhook"
    data = sent["data"]
    assert (data["rule_name"], data["rule_id"]) == ("Refunds to the ERP", rule.json()["id"])
    assert data["trigger_type"] == "message.created"
    assert data["conversation"]["last_message_preview"] == "I want a refund"
    cid = data["conversation"]["id"]

    async def noted() -> Any:
        thread = (await admin.http.get(f"/api/v1/conversations/{cid}/messages")).json()
        lines = [m["text"] for m in thread["items"] if m["kind"] == "activity"]
        return lines if any("sent the webhook" in line for line in lines) else None

    assert await eventually(noted) == ["Rule “Refunds to the ERP”: sent the webhook"]
    # The parcel question matched no rule: it went nowhere.
    assert len(endpoint.arrivals) == 1
