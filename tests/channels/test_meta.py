"""Messenger and Instagram: events parsed from documented shapes; the webhook handshake and
signature; routing by page; end to end against a local Graph API - replies, the 24-hour
window and the HUMAN_AGENT tag, Graph errors, subscriptions and deletion."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from channels.base import (
    BadPayload,
    PermanentSendError,
    TransientSendError,
    VerificationFailed,
    WebhookRequest,
)
from channels.meta import InstagramChannel, MessengerChannel
from hub.types import Identity, InboundMessage, OutboundMessage, ReadUpTo, StatusUpdate, utcnow
from inbox.db import Database
from inbox.models import Message
from tests.fakes.meta_server import (
    APP_SECRET,
    IG_ACCOUNT_ID,
    PAGE_ID,
    PAGE_TOKEN,
    FakeGraph,
    page_event,
    signature,
    text_event,
)
from tests.helpers import Stack, eventually, of_type, opened_settings

FIXTURES = Path(__file__).with_name("fixtures")
ADA = "6001234567890123"
GRACE = "17850000000000002"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    running = FakeGraph()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def _messenger(http: httpx.AsyncClient | None = None) -> MessengerChannel:
    return MessengerChannel(http=http or httpx.AsyncClient(), max_media_bytes=1_000_000)


def _request(body: bytes, *, settings: dict[str, Any] | None = None, sig: str | None = None,
             url: str = "https://sb.example/webhooks/messenger/7",
             routes: dict[str, int] | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST", url=url, body=body, inbox_id=7, routes=routes or {},
        headers={"x-hub-signature-256": sig if sig is not None else signature(body)},
        inbox_settings=settings or {"page_id": PAGE_ID, "app_secret": APP_SECRET,
                                    "verify_token": "vt-123"})


def _parse(name: str, channel: MessengerChannel | InstagramChannel | None = None,
           **kw: Any) -> list[InboundMessage | StatusUpdate]:
    adapter = channel or _messenger()
    settings = ({"account_id": IG_ACCOUNT_ID, "app_secret": APP_SECRET}
                if isinstance(adapter, InstagramChannel) else None)
    return adapter.parse(_request((FIXTURES / name).read_bytes(), settings=settings, **kw))


def test_messages_postbacks_and_quick_replies() -> None:
    [text] = _parse("messenger/text_quick_reply.json")
    assert isinstance(text, InboundMessage) and text.inbox_id == 7
    assert text.text == "Track my order" and text.metadata["quick_reply"] == "TRACK_ORDER"
    assert text.sender == Identity(kind="messenger", value=ADA)
    assert text.external_id.startswith("m_AG5Hz2")
    [image] = _parse("messenger/image.json")
    assert isinstance(image, InboundMessage) and image.metadata["media_count"] == "1"
    assert image.metadata["media_0_url"].startswith("https://scontent.xx.fbcdn.net/")
    [button] = _parse("messenger/postback.json")
    assert isinstance(button, InboundMessage)
    assert (button.text, button.metadata["postback"], button.external_id) == (
        "Get Started", "GET_STARTED", "m_pb1")


def test_deliveries_and_reads_become_states_and_echoes_reactions_are_left_out() -> None:
    delivered = _parse("messenger/delivery.json")
    assert [(s.external_id, s.status) for s in delivered if isinstance(s, StatusUpdate)] == [
        ("m_out1", "delivered"), ("m_out2", "delivered")]
    [read] = _parse("messenger/read_watermark.json")
    assert isinstance(read, ReadUpTo) and read.status == "read"
    assert read.recipient == Identity(kind="messenger", value=ADA)
    assert read.up_to.timestamp() == 1764840000.123
    [elsewhere] = _parse("messenger/echo_from_elsewhere.json")
    assert isinstance(elsewhere, InboundMessage) and elsewhere.from_business
    assert elsewhere.sender == Identity(kind="messenger", value=ADA)  # the customer's thread
    assert elsewhere.text == "Sent from the page inbox"
    instagram = InstagramChannel(http=httpx.AsyncClient(), max_media_bytes=1_000_000)
    echo = json.loads((FIXTURES / "messenger/echo_from_elsewhere.json").read_bytes())
    echo["object"] = "instagram"
    echo["entry"][0]["id"] = IG_ACCOUNT_ID
    assert instagram.parse(_request(json.dumps(echo).encode(), settings={
        "account_id": IG_ACCOUNT_ID, "app_secret": APP_SECRET})) == []
    for name in ("messenger/ignored_echo_of_ours.json", "messenger/ignored_reaction.json"):
        assert _parse(name) == [], name
    [read] = _parse("instagram/read.json", instagram)
    assert isinstance(read, StatusUpdate) and read.status == "read"


def test_instagram_story_replies_and_mentions_show_their_link() -> None:
    instagram = InstagramChannel(http=httpx.AsyncClient(), max_media_bytes=1_000_000)
    [reply] = _parse("instagram/story_reply.json", instagram)
    assert isinstance(reply, InboundMessage) and reply.sender.kind == "instagram"
    assert reply.text.splitlines() == [
        "Replied to your story: https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17950"
        "&signature=abc", "Love this one!"]
    [mention] = _parse("instagram/story_mention.json", instagram)
    assert isinstance(mention, InboundMessage)
    assert mention.text.startswith("Mentioned you in their story: https://lookaside")
    with pytest.raises(BadPayload, match="expected 'instagram'"):
        _parse("messenger/text_quick_reply.json", instagram)


def test_each_entry_goes_to_its_pages_inbox_among_those_of_the_same_app() -> None:
    channel = _messenger()
    mine = {"page_id": PAGE_ID, "app_secret": APP_SECRET}
    routes = channel.webhook_routes(mine, {
        7: mine, 8: {"page_id": "999000111222333", "app_secret": APP_SECRET},
        9: {"page_id": "555000111222333", "app_secret": "another-apps-secret"}})
    assert routes == {PAGE_ID: 7, "999000111222333": 8}
    parsed = _parse("messenger/two_pages.json", routes=routes)
    assert [(m.inbox_id, m.text) for m in parsed if isinstance(m, InboundMessage)] == [
        (7, "for page one"), (8, "for page two")]  # the other app's page is dropped


def test_signature_and_handshake_are_checked_in_constant_time() -> None:
    channel = _messenger()
    body = (FIXTURES / "messenger/text_quick_reply.json").read_bytes()
    channel.verify(_request(body))
    for wrong in ("", "sha256=00", signature(body, "another-secret"), signature(body + b" ")):
        with pytest.raises(VerificationFailed) as refused:
            channel.verify(_request(body, sig=wrong))
        assert refused.value.status == 403
    ok = channel.challenge(_request(b"", url="https://sb.example/webhooks/messenger/7?"
                                    "hub.mode=subscribe&hub.verify_token=vt-123"
                                    "&hub.challenge=1158201444"))
    assert (ok.status, ok.body) == (200, b"1158201444")
    for query in ("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
                  "hub.mode=unsubscribe&hub.verify_token=vt-123&hub.challenge=1"):
        with pytest.raises(VerificationFailed):
            channel.challenge(_request(b"", url=f"https://sb.example/x?{query}"))


def _outbound(recipient: str = ADA) -> OutboundMessage:
    return OutboundMessage(message_id=1, conversation_id=1, inbox_id=7, channel="messenger",
                           recipient=Identity(kind="messenger", value=recipient),
                           text="Your order ships today", idempotency_key="k-1")


async def test_send_uses_the_window_the_tag_and_sorts_graph_errors(graph: FakeGraph) -> None:
    settings = {"page_id": PAGE_ID, "page_access_token": PAGE_TOKEN, "graph_api_url": graph.url}
    async with httpx.AsyncClient() as http:
        channel = _messenger(http)
        receipt = await channel.send(_outbound(), settings)
        assert receipt.external_id.startswith("m_")
        assert graph.sent[-1] == {"node": PAGE_ID, "recipient": {"id": ADA},
                                  "messaging_type": "RESPONSE",
                                  "message": {"text": "Your order ships today",
                                              "metadata": "switchboard"}}
        assert graph.calls[-1].token == PAGE_TOKEN and "access_token" not in graph.calls[-1].params
        graph.window_closed.add(ADA)
        with pytest.raises(PermanentSendError, match="outside of allowed window"):
            await channel.send(_outbound(), settings)
        await channel.send(_outbound(), {**settings, "human_agent_tag": True})
        assert graph.sent[-1]["messaging_type"] == "MESSAGE_TAG"
        assert graph.sent[-1]["tag"] == "HUMAN_AGENT"
        graph.failures.append((400, 551, 1545041, "This person isn't available right now."))
        with pytest.raises(PermanentSendError, match="isn't available right now"):
            await channel.send(_outbound(), settings)
        graph.failures.append((400, 613, 0, "Calls to this api have exceeded the rate limit."))
        with pytest.raises(TransientSendError, match="rate limit"):
            await channel.send(_outbound(), settings)
        with pytest.raises(PermanentSendError, match="Invalid OAuth access token"):
            await channel.send(_outbound(), {**settings, "page_access_token": "expired"})


async def _post(stack: Stack, inbox_id: int, payload: dict[str, Any], *,
                secret: str = APP_SECRET) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await stack.client().post(
        f"/webhooks/messenger/{inbox_id}", content=body,
        headers={"X-Hub-Signature-256": signature(body, secret),
                 "Content-Type": "application/json"})


async def test_a_messenger_inbox_end_to_end(stack: Stack, graph: FakeGraph) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/inboxes", json={
        "name": "Facebook page", "channel": "messenger", "settings": {
            "page_id": PAGE_ID, "page_access_token": PAGE_TOKEN, "app_secret": APP_SECRET,
            "graph_api_url": graph.url}})
    assert made.status_code == 201, made.text
    inbox_id = made.json()["id"]
    assert graph.subscribed[PAGE_ID] == (
        "messages,messaging_postbacks,message_deliveries,message_reads,message_echoes")
    detail = (await admin.http.get(f"/api/v1/inboxes/{inbox_id}")).json()
    values = {s["name"]: s["value"] for s in detail["settings"]}
    assert values["account_name"] == "Acme Garden Supplies" and values["app_secret"] is None
    await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                         json={"agent_ids": [stack.ids["alice"]]})

    # Meta's handshake: the verify token (generated, never shown) is echoed once it matches.
    verify_token = (await opened_settings(stack, inbox_id))["verify_token"]
    assert values["verify_token"] == verify_token  # shown: the admin pastes it at Meta
    from tests.web.test_admin_pages import _form_login

    browser, _ = await _form_login(stack, "admin")
    shown = (await browser.get(f"/admin/inboxes/{inbox_id}")).text
    assert f'value="{verify_token}" aria-label="Verify token"' in shown
    assert APP_SECRET not in shown and PAGE_TOKEN not in shown
    hook = f"/webhooks/messenger/{inbox_id}"
    answer = await stack.client().get(hook, params={
        "hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "8521"})
    assert (answer.status_code, answer.text) == (200, "8521")
    wrong = await stack.client().get(hook, params={
        "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "8521"})
    assert wrong.status_code == 403

    alice = await stack.login("alice")
    socket = await alice.ws()
    photo = graph.cdn("parcel.jpg", b"\xff\xd8\xff\xe0 a photo of a parcel")
    event = page_event(PAGE_ID, text_event(ADA, PAGE_ID, "m_in_1", "Where is my parcel?",
                                           attachments=[{"type": "image",
                                                         "payload": {"url": photo}}]))
    assert (await _post(stack, inbox_id, event, secret="wrong")).status_code == 403
    first = await _post(stack, inbox_id, event)
    assert (first.status_code, first.text) == (200, "EVENT_RECEIVED")
    assert (await _post(stack, inbox_id, event)).status_code == 200  # Meta retries
    created = await socket.wait_event(of_type("message.created", direction="in"))
    message = created["event"]["message"]
    assert message["text"] == "Where is my parcel?"
    assert [a["filename"] for a in message["attachments"]] == ["image.jpg"]
    conversation = created["event"]["conversation"]
    assert conversation["channel"] == "messenger"
    assert conversation["contact_name"] == "Ada Lovelace"  # from the Graph API, once
    conversation_id = conversation["id"]

    reply = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"text": "It arrives tomorrow."})
    assert reply.status_code == 201, reply.text
    await eventually(lambda: _count(graph.sent, 1))
    assert graph.sent[0]["recipient"] == {"id": ADA}
    assert graph.sent[0]["message"] == {"text": "It arrives tomorrow.",
                                        "metadata": "switchboard"}
    sent = await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                                   and e["message"]["status"] == "sent")
    mid = sent["event"]["message"]["external_id"]
    delivered = page_event(PAGE_ID, {"sender": {"id": ADA}, "recipient": {"id": PAGE_ID},
                                     "timestamp": 1, "delivery": {"mids": [mid],
                                                                  "watermark": 1}})
    assert (await _post(stack, inbox_id, delivered)).status_code == 200
    await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                            and e["message"]["status"] == "delivered")
    # Messenger's read watermark names no message: everything sent up to it is read.
    read = page_event(PAGE_ID, {"sender": {"id": ADA}, "recipient": {"id": PAGE_ID},
                                "timestamp": 2, "read": {"watermark": _millis_now()}})
    assert (await _post(stack, inbox_id, read)).status_code == 200
    seen = await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                                   and e["message"]["status"] == "read")
    assert seen["event"]["message"]["external_id"] == mid

    # Meta echoes our reply (marked ours: nothing new) and one a colleague wrote in Meta's
    # own inbox (it joins the thread as the page's, changing nothing else).
    ours = {"sender": {"id": PAGE_ID}, "recipient": {"id": ADA}, "timestamp": _millis_now(),
            "message": {"mid": mid, "is_echo": True, "app_id": 1, "metadata": "switchboard",
                        "text": "It arrives tomorrow."}}
    elsewhere = {"sender": {"id": PAGE_ID}, "recipient": {"id": ADA},
                 "timestamp": _millis_now(),
                 "message": {"mid": "m_from_business_suite", "is_echo": True,
                             "app_id": 263902037430900, "text": "Also: 10% off next time!"}}
    assert (await _post(stack, inbox_id, page_event(PAGE_ID, ours, elsewhere))
            ).status_code == 200
    echoed = await socket.wait_event(lambda e: e["type"] == "message.created"
                                     and e["message"]["direction"] == "out"
                                     and e["message"]["sent_elsewhere"])
    assert echoed["event"]["message"]["text"] == "Also: 10% off next time!"
    assert echoed["event"]["conversation"]["unread_count"] == 0
    items = (await alice.http.get(f"/api/v1/conversations/{conversation_id}/messages")
             ).json()["items"]
    assert [(m["direction"], m["text"]) for m in items] == [
        ("in", "Where is my parcel?"), ("out", "It arrives tomorrow."),
        ("out", "Also: 10% off next time!")]

    # Two days later, without the HUMAN_AGENT tag: refused before anything is queued.
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await session.exec(update(Message).where(Message.direction == "in").values(
                accepted_at=utcnow() - timedelta(days=2)))
    finally:
        await db.close()
    late = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                 json={"text": "Anything else?"})
    assert late.status_code == 409 or late.status_code == 422, late.text
    assert "24-hour window is closed" in late.text
    switched = await admin.http.patch(f"/api/v1/inboxes/{inbox_id}",
                                      json={"settings": {"human_agent_tag": True}})
    assert switched.status_code == 200, switched.text
    graph.window_closed.add(ADA)
    tagged = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                   json={"text": "Anything else?"})
    assert tagged.status_code == 201, tagged.text
    await eventually(lambda: _count(graph.sent, 2))
    assert graph.sent[1]["tag"] == "HUMAN_AGENT"

    gone = await admin.http.delete(f"/api/v1/inboxes/{inbox_id}")
    assert gone.json()["provider"] == "the provider's set-up was removed"
    assert PAGE_ID not in graph.subscribed
    assert (await _post(stack, inbox_id, event)).status_code == 404
    await socket.close()


async def _count(items: list[Any], count: int) -> bool:
    return len(items) >= count


def _millis_now() -> int:
    return int(utcnow().timestamp() * 1000) + 1000
