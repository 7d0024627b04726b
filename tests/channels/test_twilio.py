"""WhatsApp and SMS through Twilio: signed webhooks in, replies out through the real twilio
client to a local Twilio, delivery states back, media, and the WhatsApp 24-hour window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from channels.base import PermanentSendError, TransientSendError, VerificationFailed, WebhookRequest
from channels.twilio import SmsChannel, WhatsAppChannel
from config import Settings
from hub.types import (
    AttachmentRef,
    AttachmentRefused,
    Identity,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
    utcnow,
)
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.models import Message
from tests.fakes.twilio_server import (
    AUTH_TOKEN,
    FakeTwilio,
    form_body,
    inbound_fields,
    signed,
    status_fields,
)
from tests.helpers import Stack, eventually, of_type, running_stack

FIXTURES = Path(__file__).with_name("fixtures")
WHATSAPP_NUMBER = "+14155238886"
SMS_NUMBER = "+14155550100"
ADA = "+447700900123"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
CONTENT_SID = "HXb5b62575e6e4ff6129ad7c8efe1f983e"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    """A local Twilio REST API for the test."""
    async with FakeTwilio() as running:
        yield running


# --------------------------------------------------------------------------- helpers


async def twilio_inbox(stack: Stack, fake: FakeTwilio, kind: str, **settings: str) -> int:
    """Connect a Twilio inbox through the admin API, with alice as its member."""
    admin = await stack.login("admin")
    sender = {"from_number": WHATSAPP_NUMBER if kind == "whatsapp" else SMS_NUMBER}
    created = await admin.http.post("/api/v1/inboxes", json={
        "name": f"{kind} line", "channel": kind, "settings": fake.settings(**(settings or sender)),
    })
    assert created.status_code == 201, created.text
    inbox_id: int = created.json()["id"]
    members = await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                                   json={"agent_ids": [stack.ids["alice"]]})
    assert members.status_code == 204
    return inbox_id


async def post_webhook(
    stack: Stack,
    kind: str,
    inbox_id: int,
    fields: dict[str, str],
    *,
    query: str = "",
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a webhook as Twilio does: signed for the public URL Switchboard is reached at."""
    path = f"/webhooks/{kind}/{inbox_id}{query}"
    url = signed_url or stack.settings.base_url + path
    return await stack.client().post(
        path, content=form_body(fields),
        headers=headers if headers is not None else signed(url, fields, token),
    )


async def post_callback(stack: Stack, callback_url: str, fields: dict[str, str]) -> None:
    """POST a status callback to the StatusCallback URL Switchboard gave Twilio."""
    path = callback_url.removeprefix(stack.settings.base_url)
    answer = await stack.client().post(path, content=form_body(fields),
                                       headers=signed(callback_url, fields))
    assert answer.status_code == 200, answer.text


def whatsapp_message(body: str = "Hi! Where is my order #4411?", **extra: Any) -> dict[str, str]:
    """Ada writing on WhatsApp to our WhatsApp sender."""
    return inbound_fields(sender=f"whatsapp:{ADA}", to=f"whatsapp:{WHATSAPP_NUMBER}", body=body,
                          profile_name="Ada Lovelace", **extra)


async def conversations(http: httpx.AsyncClient, inbox_id: int) -> list[dict[str, Any]]:
    """The conversations of one inbox."""
    found: list[dict[str, Any]] = (
        await http.get("/api/v1/conversations", params={"inbox_id": inbox_id})).json()["items"]
    return found


async def thread(http: httpx.AsyncClient, conversation_id: int) -> list[dict[str, Any]]:
    """The messages of a conversation, oldest first."""
    found: list[dict[str, Any]] = (
        await http.get(f"/api/v1/conversations/{conversation_id}/messages")).json()["items"]
    return found


def _request(kind: str, body: bytes, headers: dict[str, str] | None = None,
             url: str | None = None, settings: dict[str, Any] | None = None) -> WebhookRequest:
    return WebhookRequest(method="POST", url=url or f"https://sb.example/webhooks/{kind}/7",
                          headers={k.lower(): v for k, v in (headers or {}).items()},
                          body=body, inbox_id=7,
                          inbox_settings=settings or {"auth_token": AUTH_TOKEN})


def _parse(kind: str, fixture: str) -> list[InboundMessage | StatusUpdate]:
    adapter = WhatsAppChannel if kind == "whatsapp" else SmsChannel
    channel = adapter(http=httpx.AsyncClient(), public_url="https://sb.example")
    return channel.parse(_request(kind, (FIXTURES / kind / fixture).read_bytes()))


def _outbound(kind: str, **extra: Any) -> OutboundMessage:
    return OutboundMessage(message_id=1, conversation_id=2, inbox_id=7, channel=kind,
                           recipient=Identity(kind="phone", value=ADA), text="On its way!",
                           idempotency_key="idem-1", **extra)


# --------------------------------------------------------------------------- parsing


def test_whatsapp_and_sms_senders_resolve_to_one_phone_identity() -> None:
    [whatsapp] = _parse("whatsapp", "text.form")
    [sms] = _parse("sms", "text.form")
    assert isinstance(whatsapp, InboundMessage) and isinstance(sms, InboundMessage)
    assert whatsapp.sender == Identity(kind="phone", value=ADA, display_name="Ada Lovelace")
    assert whatsapp.external_id == "SM4f5e6d7c8b9a0f1e2d3c4b5a69788796"
    assert whatsapp.text == "Hi! Where is my order #4411?"
    assert sms.sender == Identity(kind="phone", value="+14155550132")
    again = WhatsAppChannel(http=httpx.AsyncClient(), public_url="https://sb.example").parse(
        _request("whatsapp", form_body(inbound_fields(sender=ADA, to=SMS_NUMBER, body="x"))))
    assert again[0].sender.value == whatsapp.sender.value  # type: ignore[union-attr]


def test_location_is_words_and_a_map_link() -> None:
    [message] = _parse("whatsapp", "location.form")
    assert isinstance(message, InboundMessage)
    assert message.text.splitlines() == [
        "📍 Trafalgar Square — Trafalgar Square, London WC2N 5DN, United Kingdom "
        "(51.508039, -0.128069)",
        "https://www.google.com/maps/search/?api=1&query=51.508039%2C-0.128069",
    ]
    assert message.metadata == {}


def test_media_is_left_for_the_worker_to_fetch() -> None:
    [image] = _parse("whatsapp", "image_with_caption.form")
    assert isinstance(image, InboundMessage)
    assert image.text == "This is the damaged box" and image.attachments == ()
    assert image.metadata["media_count"] == "1"
    assert image.metadata["media_0_type"] == "image/jpeg"
    assert image.metadata["media_0_url"].startswith("https://api.twilio.com/2010-04-01/")
    [mms] = _parse("sms", "mms_two_images.form")
    assert isinstance(mms, InboundMessage)
    assert [mms.metadata[f"media_{i}_type"] for i in range(2)] == ["image/jpeg", "image/png"]
    [reply] = _parse("whatsapp", "reply_to_our_message.form")
    assert reply.in_reply_to == "SM5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"  # type: ignore[union-attr]


def test_status_callbacks_map_to_delivery_states_with_reasons() -> None:
    states = {name: _parse(kind, name)[0] for kind, name in [
        ("whatsapp", "status_sent.form"), ("whatsapp", "status_delivered.form"),
        ("whatsapp", "status_read.form"), ("whatsapp", "status_undelivered_63016.form"),
        ("sms", "status_undelivered_30007.form"), ("sms", "status_failed_21610.form"),
    ]}
    assert all(isinstance(s, StatusUpdate) for s in states.values())
    assert [s.status for s in states.values()] == [  # type: ignore[union-attr]
        "sent", "delivered", "read", "failed", "failed", "failed"]
    assert states["status_read.form"].external_id == "SM5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"
    assert states["status_undelivered_63016.form"].reason == (  # type: ignore[union-attr]
        "63016: outside the WhatsApp 24-hour window: only an approved template can be sent")
    assert states["status_undelivered_30007.form"].reason == (  # type: ignore[union-attr]
        "30007: the carrier filtered the message as spam")
    assert "21610: the recipient opted out" in states["status_failed_21610.form"].reason  # type: ignore[union-attr,operator]
    # Steps before "sent" change nothing an agent sees.
    queued = status_fields("SM1", "queued", sender=SMS_NUMBER, to=ADA)
    assert SmsChannel(http=httpx.AsyncClient(), public_url="").parse(
        _request("sms", form_body(queued), url="https://sb.example/webhooks/sms/7?kind=status")
    ) == []


def test_signature_is_checked_against_the_public_url() -> None:
    channel = WhatsAppChannel(http=httpx.AsyncClient(), public_url="https://inbox.example.com")
    fields = whatsapp_message()
    public = "https://inbox.example.com/webhooks/whatsapp/7"
    channel.verify(_request("whatsapp", form_body(fields), signed(public, fields), url=public))
    # Signed for the address behind the proxy: not what Twilio signs, so refused.
    internal = signed("http://10.0.0.5:8000/webhooks/whatsapp/7", fields)
    no_token = {"auth_token": ""}
    for headers, settings in [(internal, None), ({}, None), (signed(public, fields), no_token)]:
        with pytest.raises(VerificationFailed) as refused:
            channel.verify(_request("whatsapp", form_body(fields), headers, url=public,
                                    settings=settings))
        assert refused.value.status == 403
    with pytest.raises(VerificationFailed):
        channel.verify(_request("whatsapp", form_body(fields), signed(public, fields), url=public,
                                settings={"auth_token": "another-token-0123456789abcdef"}))


# --------------------------------------------------------------------------- sending


async def test_send_uses_the_twilio_client_with_sender_callback_and_templates(
    fake: FakeTwilio,
) -> None:
    async with httpx.AsyncClient() as http:
        whatsapp = WhatsAppChannel(http=http, public_url="https://inbox.example.com")
        receipt = await whatsapp.send(_outbound("whatsapp"),
                                      fake.settings(from_number=WHATSAPP_NUMBER))
        template = await whatsapp.send(
            _outbound("whatsapp", template=CONTENT_SID, template_variables={"1": "Ada"}),
            fake.settings(messaging_service_sid="MG9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"))
        sms = await SmsChannel(http=http, public_url="https://inbox.example.com").send(
            _outbound("sms"), fake.settings(from_number=SMS_NUMBER))
    first, second, third = fake.created
    assert receipt.external_id in fake.messages and receipt.status == "sent"
    assert template.external_id.startswith("SM") and sms.external_id.startswith("SM")
    assert first == {"To": [f"whatsapp:{ADA}"], "From": [f"whatsapp:{WHATSAPP_NUMBER}"],
                     "Body": ["On its way!"],
                     "StatusCallback": ["https://inbox.example.com/webhooks/whatsapp/7"
                                        "?kind=status"]}
    assert second["ContentSid"] == [CONTENT_SID] and "Body" not in second and "From" not in second
    assert json.loads(second["ContentVariables"][0]) == {"1": "Ada"}
    assert second["MessagingServiceSid"] == ["MG9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"]
    assert third["To"] == [ADA] and third["From"] == [SMS_NUMBER]
    assert third["StatusCallback"] == ["https://inbox.example.com/webhooks/sms/7?kind=status"]
    assert fake.requests[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize(("status", "code", "expected", "words"), [
    (400, 63016, PermanentSendError, "63016: outside the WhatsApp 24-hour window"),
    (400, 21610, PermanentSendError, "21610: the recipient opted out"),
    (400, 63024, PermanentSendError, "63024: invalid message recipient"),
    (429, 20429, TransientSendError, "20429: too many requests"),
    (429, None, TransientSendError, "429"),
    (500, None, TransientSendError, "500"),
    (503, 20500, TransientSendError, "Twilio answered 503"),
])
async def test_send_errors_are_permanent_or_transient(
    fake: FakeTwilio, status: int, code: int | None, expected: type[Exception], words: str,
) -> None:
    fake.fail_next(status, code, "Twilio's own words")
    async with httpx.AsyncClient() as http:
        channel = WhatsAppChannel(http=http, public_url="https://inbox.example.com")
        with pytest.raises(expected) as caught:
            await channel.send(_outbound("whatsapp"), fake.settings(from_number=WHATSAPP_NUMBER))
    assert words in str(caught.value)
    if code is not None:
        assert "Twilio's own words" in str(caught.value)


async def test_wrong_credentials_fail_for_good(fake: FakeTwilio) -> None:
    async with httpx.AsyncClient() as http:
        channel = SmsChannel(http=http, public_url="https://inbox.example.com")
        with pytest.raises(PermanentSendError, match="20003"):
            await channel.send(_outbound("sms"), {**fake.settings(from_number=SMS_NUMBER),
                                                  "auth_token": "0" * 32})
        with pytest.raises(PermanentSendError, match="from_number"):
            await channel.send(_outbound("sms"), fake.settings())
    assert SmsChannel(http=httpx.AsyncClient(), public_url="").check_settings(
        fake.settings()) == ["from_number: required unless messaging_service_sid is given"]


# --------------------------------------------------------------------------- media


class _Store:
    """An attachment store that keeps files in memory, bounded like the real one."""

    def __init__(self, max_bytes: int = 1_000_000) -> None:
        self.files: list[tuple[str, str, bytes]] = []
        self.max_bytes = max_bytes

    async def __call__(self, filename: str, content_type: str, data: bytes) -> AttachmentRef:
        if len(data) > self.max_bytes:
            raise AttachmentRefused(f"the file is {len(data)} bytes")
        self.files.append((filename, content_type, data))
        return AttachmentRef(id=f"{len(self.files):032x}", filename=filename,
                             content_type=content_type, size=len(data))


async def test_media_download_is_authenticated_bounded_and_typed(fake: FakeTwilio) -> None:
    vcard = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Grace Hopper\r\nTEL;type=CELL:+1 415 555 0199\r\n" \
            b"END:VCARD\r\n"
    media = [
        (fake.add_media("image/jpeg", b"\xff\xd8\xff" + b"j" * 1000), "image/jpeg"),
        (fake.add_media("image/jpeg", b"\xff\xd8\xff" + b"j" * 50_000), "image/jpeg"),
        (fake.add_media("application/x-msdownload", b"MZ..."), "application/x-msdownload"),
        (fake.add_media("text/vcard", vcard), "text/vcard"),
        ("https://media.example.net/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
         "image/png"),
    ]
    fields = inbound_fields(sender=f"whatsapp:{ADA}", to=f"whatsapp:{WHATSAPP_NUMBER}",
                            body="Look", media=media)
    store = _Store()
    async with httpx.AsyncClient() as http:
        channel = WhatsAppChannel(http=http, public_url="https://sb.example",
                                  max_media_bytes=20_000)
        [parsed] = channel.parse(_request("whatsapp", form_body(fields)))
        assert isinstance(parsed, InboundMessage)
        done = await channel.fetch_media(parsed, fake.settings(), store)
    assert [f[1] for f in store.files] == ["image/jpeg", "text/vcard"]
    assert store.files[0][2] == b"\xff\xd8\xff" + b"j" * 1000
    assert store.files[0][0].startswith("ME") and store.files[0][0].endswith(".jpg")
    assert [a.content_type for a in done.attachments] == ["image/jpeg", "text/vcard"]
    assert done.metadata == {}
    lines = done.text.splitlines()
    assert lines[0] == "Look"
    assert lines[1] == "[attachment refused: the file is larger than the 20000 byte limit]"
    assert lines[2] == "[attachment refused: application/x-msdownload files are not accepted]"
    assert lines[3] == "👤 Contact: Grace Hopper (+1 415 555 0199)"
    assert lines[4].startswith("[attachment refused: the file is not on the Twilio API")
    # Credentials went to the Twilio API only; the disallowed file was never fetched.
    downloads = [r for r in fake.requests if "/Media/" in r.path]
    assert len(downloads) == 3
    assert all(r.headers["authorization"].startswith("Basic ") for r in downloads)


async def test_media_without_credentials_is_refused_not_lost(fake: FakeTwilio) -> None:
    fields = inbound_fields(sender=ADA, to=SMS_NUMBER, body="receipt",
                            media=[(fake.add_media("image/png", b"png"), "image/png")])
    async with httpx.AsyncClient() as http:
        channel = SmsChannel(http=http, public_url="https://sb.example")
        [parsed] = channel.parse(_request("sms", form_body(fields)))
        assert isinstance(parsed, InboundMessage)
        done = await channel.fetch_media(parsed, {**fake.settings(), "auth_token": "x" * 32},
                                         _Store())
    assert done.text == "receipt\n[attachment refused: Twilio answered 401 for the file]"
    assert done.attachments == ()


# --------------------------------------------------------------------------- end to end


async def test_whatsapp_message_in_reply_out_and_delivery_states_live(
    stack: Stack, fake: FakeTwilio
) -> None:
    inbox_id = await twilio_inbox(stack, fake, "whatsapp")
    alice = await stack.login("alice")
    ws = await alice.ws()

    answer = await post_webhook(stack, "whatsapp", inbox_id, whatsapp_message())
    assert answer.status_code == 200
    assert answer.text == TWIML and answer.headers["content-type"].startswith("text/xml")
    created = await ws.wait_event(of_type("conversation.created"))
    conversation = created["event"]["conversation"]
    assert conversation["channel"] == "whatsapp"
    assert conversation["contact_name"] == "Ada Lovelace"
    incoming = await ws.wait_event(of_type("message.created", direction="in"))
    assert incoming["event"]["message"]["text"] == "Hi! Where is my order #4411?"

    got = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}")).json()
    closes_at = datetime.fromisoformat(got["reply_window_closes_at"])
    assert timedelta(hours=23, minutes=59) < closes_at - utcnow() <= timedelta(hours=24)

    reply = await alice.http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                  json={"text": "On its way!"})
    assert reply.status_code == 201, reply.text
    [sent] = await fake.wait_created(1)
    callback = f"{stack.settings.base_url}/webhooks/whatsapp/{inbox_id}?kind=status"
    assert sent == {"To": [f"whatsapp:{ADA}"], "From": [f"whatsapp:{WHATSAPP_NUMBER}"],
                    "Body": ["On its way!"], "StatusCallback": [callback]}
    status = await ws.wait_event(of_type("message.status_changed", status="sent"))
    sid = status["event"]["message"]["external_id"]
    assert sid in fake.messages

    # Twilio reports delivered, then read; a late "sent" must not go backwards.
    for state in ("delivered", "read", "sent"):
        await post_callback(stack, callback, status_fields(
            sid, state, sender=f"whatsapp:{WHATSAPP_NUMBER}", to=f"whatsapp:{ADA}"))
        if state != "sent":
            await ws.wait_event(of_type("message.status_changed", status=state))

    async def final() -> str | None:
        out = [m for m in await thread(alice.http, conversation["id"]) if m["direction"] == "out"]
        return out[0]["status"] if out and out[0]["status"] == "read" else None

    assert await eventually(final) == "read"
    await asyncio.sleep(0.3)  # room for the late "sent" to be (wrongly) applied
    assert await final() == "read"
    await ws.close()


async def test_unsigned_or_wrongly_signed_webhooks_get_403_and_leave_nothing(
    stack: Stack, fake: FakeTwilio
) -> None:
    inbox_id = await twilio_inbox(stack, fake, "whatsapp")
    alice = await stack.login("alice")
    fields = whatsapp_message()
    path_url = f"{stack.settings.base_url}/webhooks/whatsapp/{inbox_id}"
    tampered = {**fields, "Body": "Send me a refund"}
    attempts = [
        await post_webhook(stack, "whatsapp", inbox_id, fields, headers={
            "Content-Type": "application/x-www-form-urlencoded"}),
        await post_webhook(stack, "whatsapp", inbox_id, fields, token="0" * 32),
        await post_webhook(stack, "whatsapp", inbox_id, fields,
                           signed_url=path_url.replace("localhost", "127.0.0.1")),
        await post_webhook(stack, "whatsapp", inbox_id, tampered,
                           headers=signed(path_url, fields)),
        await post_webhook(stack, "sms", inbox_id, fields),  # not an SMS inbox
    ]
    assert [a.status_code for a in attempts] == [403, 403, 403, 403, 404]
    assert "Response" not in attempts[0].text
    await asyncio.sleep(0.5)
    assert await conversations(alice.http, inbox_id) == []


async def test_a_message_sid_delivered_twice_at_once_is_stored_once(
    stack: Stack, fake: FakeTwilio
) -> None:
    inbox_id = await twilio_inbox(stack, fake, "whatsapp")
    alice = await stack.login("alice")
    fields = whatsapp_message("Hello?")
    answers = await asyncio.gather(
        *(post_webhook(stack, "whatsapp", inbox_id, fields) for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    [conversation] = await eventually(lambda: conversations(alice.http, inbox_id))
    await asyncio.sleep(0.5)  # let every copy reach the worker
    replay = await post_webhook(stack, "whatsapp", inbox_id, fields)
    assert replay.status_code == 200 and replay.text == TWIML
    await asyncio.sleep(0.5)
    assert [m["text"] for m in await thread(alice.http, conversation["id"])] == ["Hello?"]
    assert [c["unread_count"] for c in await conversations(alice.http, inbox_id)] == [1]


async def test_out_of_order_callbacks_and_undelivered_with_the_reason(
    stack: Stack, fake: FakeTwilio
) -> None:
    inbox_id = await twilio_inbox(stack, fake, "sms")
    alice = await stack.login("alice")
    ws = await alice.ws()
    await post_webhook(stack, "sms", inbox_id, inbound_fields(sender=ADA, to=SMS_NUMBER,
                                                                body="Open on Sunday?"))
    conversation = (await ws.wait_event(of_type("conversation.created")))["event"]["conversation"]
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    for text in ("Yes, 10 to 4.", "And on Monday too."):
        assert (await alice.http.post(url, json={"text": text})).status_code == 201
        await ws.wait_event(of_type("message.status_changed", status="sent", text=text))
    first, second = (m for m in await thread(alice.http, conversation["id"])
                     if m["direction"] == "out")
    callback = fake.created[0]["StatusCallback"][0]
    # The network reorders: "read" arrives first, "delivered" and "sent" after it.
    await post_callback(stack, callback, status_fields(first["external_id"], "read",
                                                       sender=SMS_NUMBER, to=ADA))
    read = await ws.wait_event(of_type("message.status_changed", status="read"))
    assert read["event"]["message"]["id"] == first["id"]
    for state in ("delivered", "sent"):
        await post_callback(stack, callback, status_fields(first["external_id"], state,
                                                           sender=SMS_NUMBER, to=ADA))
    await post_callback(stack, callback, status_fields(
        second["external_id"], "undelivered", sender=SMS_NUMBER, to=ADA, error_code=30007))
    failed = await ws.wait_event(of_type("message.status_changed", status="failed"))
    assert failed["event"]["message"]["id"] == second["id"]
    assert failed["event"]["message"]["status_reason"] == (
        "30007: the carrier filtered the message as spam")
    await ws.quiet(0.5)  # room for the late ones to be (wrongly) applied
    changes = [f["event"]["message"]["status"] for f in ws.frames
               if f["type"] == "event" and f["event"]["type"] == "message.status_changed"
               and f["event"]["message"]["id"] == first["id"]]
    assert changes == ["sent", "read"]

    async def statuses() -> list[str] | None:
        found = [m["status"] for m in await thread(alice.http, conversation["id"])
                 if m["direction"] == "out"]
        return found if found == ["read", "failed"] else None

    assert await eventually(statuses)
    await ws.close()


async def test_media_is_fetched_bounded_and_stored_as_attachments(
    settings: Settings, fake: FakeTwilio
) -> None:
    small = settings.model_copy(update={"attachment_max_bytes": 64 * 1024})
    async with running_stack(small) as stack:
        inbox_id = await twilio_inbox(stack, fake, "whatsapp")
        alice = await stack.login("alice")
        photo = b"\x89PNG\r\n\x1a\n" + b"p" * 2000
        vcard = b"BEGIN:VCARD\nVERSION:3.0\nFN:Grace Hopper\nTEL:+14155550199\nEND:VCARD\n"
        media = [(fake.add_media("image/png", photo), "image/png"),
                 (fake.add_media("video/mp4", b"v" * 100_000), "video/mp4"),
                 (fake.add_media("text/html", b"<script>"), "text/html"),
                 (fake.add_media("text/vcard", vcard), "text/vcard")]
        fields = whatsapp_message("Photos of the box", media=media)
        assert (await post_webhook(stack, "whatsapp", inbox_id, fields)).status_code == 200
        [conversation] = await eventually(lambda: conversations(alice.http, inbox_id))
        [message] = await eventually(lambda: thread(alice.http, conversation["id"]))
        assert message["text"].splitlines() == [
            "Photos of the box",
            "[attachment refused: the file is larger than the 65536 byte limit]",
            "[attachment refused: text/html files are not accepted]",
            "👤 Contact: Grace Hopper (+14155550199)",
        ]
        kinds = [(a["content_type"], a["size"]) for a in message["attachments"]]
        assert kinds == [("image/png", len(photo)), ("text/vcard", len(vcard))]
        download = await alice.http.get(f"/api/v1/attachments/{message['attachments'][0]['id']}")
        assert download.status_code == 200 and download.content == photo
        assert not any(k.startswith("media_") for k in
                       await _meta(stack.settings, message["id"]))


async def test_free_text_outside_the_window_is_refused_and_a_template_goes_out(
    stack: Stack, fake: FakeTwilio
) -> None:
    whatsapp_id = await twilio_inbox(stack, fake, "whatsapp")
    sms_id = await twilio_inbox(stack, fake, "sms")
    alice = await stack.login("alice")
    await post_webhook(stack, "whatsapp", whatsapp_id, whatsapp_message("Thanks!"))
    await post_webhook(stack, "sms", sms_id, inbound_fields(sender=ADA, to=SMS_NUMBER,
                                                              body="Thanks!"))
    [on_whatsapp] = await eventually(lambda: conversations(alice.http, whatsapp_id))
    [on_sms] = await eventually(lambda: conversations(alice.http, sms_id))
    await _age_inbound(stack.settings, hours=25)

    got = (await alice.http.get(f"/api/v1/conversations/{on_whatsapp['id']}")).json()
    assert datetime.fromisoformat(got["reply_window_closes_at"]) < utcnow()
    sms_view = (await alice.http.get(f"/api/v1/conversations/{on_sms['id']}")).json()
    assert sms_view["reply_window_closes_at"] is None

    url = f"/api/v1/conversations/{on_whatsapp['id']}/messages"
    refused = await alice.http.post(url, json={"text": "Anything else?"})
    assert refused.status_code == 422
    assert refused.json()["error"] == {
        "code": "reply_window_closed",
        "message": "the WhatsApp 24-hour window is closed; send an approved template"}
    note = await alice.http.post(url, json={"text": "window closed, use template",
                                            "kind": "note"})
    assert note.status_code == 201
    template = await alice.http.post(url, json={
        "template": CONTENT_SID, "template_variables": {"1": "Ada", "2": "#4411"}})
    assert template.status_code == 201, template.text
    assert template.json()["text"] == f"[template {CONTENT_SID}] {{{{1}}}}=Ada, {{{{2}}}}=#4411"
    [sent] = await fake.wait_created(1)
    assert sent["ContentSid"] == [CONTENT_SID] and "Body" not in sent
    assert json.loads(sent["ContentVariables"][0]) == {"1": "Ada", "2": "#4411"}

    # SMS has no window, and no templates.
    sms_url = f"/api/v1/conversations/{on_sms['id']}/messages"
    assert (await alice.http.post(sms_url, json={"text": "Anything else?"})).status_code == 201
    no_template = await alice.http.post(sms_url, json={"template": CONTENT_SID})
    assert no_template.status_code == 422
    created = await fake.wait_created(2)
    assert created[1]["Body"] == ["Anything else?"] and created[1]["To"] == [ADA]
    await asyncio.sleep(0.3)
    assert len(fake.created) == 2  # the refused free text never reached Twilio


async def test_known_permanent_errors_fail_at_once_and_rate_limits_are_retried(
    stack: Stack, fake: FakeTwilio
) -> None:
    inbox_id = await twilio_inbox(stack, fake, "whatsapp")
    alice = await stack.login("alice")
    ws = await alice.ws()
    await post_webhook(stack, "whatsapp", inbox_id, whatsapp_message())
    conversation = (await ws.wait_event(of_type("conversation.created")))["event"]["conversation"]
    url = f"/api/v1/conversations/{conversation['id']}/messages"

    fake.fail_next(400, 63016, "Failed to send freeform message because you are outside the "
                               "allowed window. If you are using WhatsApp, please use a "
                               "Message Template.")
    await alice.http.post(url, json={"text": "Are you there?"})
    failed = await ws.wait_event(of_type("message.status_changed", status="failed"))
    reason = failed["event"]["message"]["status_reason"]
    assert reason.startswith("Twilio answered 400: 63016: outside the WhatsApp 24-hour window")
    assert len(fake.created) == 1  # a permanent error is not retried

    fake.fail_next(429, 20429, "Too Many Requests")
    fake.fail_next(503)
    await alice.http.post(url, json={"text": "Second try"})
    await ws.wait_event(of_type("message.status_changed", status="sent", text="Second try"))
    assert [f["Body"] for f in fake.created[1:]] == [["Second try"]] * 3
    await ws.close()


async def test_same_phone_on_sms_and_whatsapp_is_one_contact_with_two_conversations(
    stack: Stack, fake: FakeTwilio
) -> None:
    whatsapp_id = await twilio_inbox(stack, fake, "whatsapp")
    sms_id = await twilio_inbox(stack, fake, "sms")
    alice = await stack.login("alice")
    await post_webhook(stack, "whatsapp", whatsapp_id, whatsapp_message("On WhatsApp"))
    [on_whatsapp] = await eventually(lambda: conversations(alice.http, whatsapp_id))
    national = inbound_fields(sender=ADA, to=SMS_NUMBER, body="By SMS")
    await post_webhook(stack, "sms", sms_id, national)
    [on_sms] = await eventually(lambda: conversations(alice.http, sms_id))
    assert on_whatsapp["id"] != on_sms["id"]
    assert on_whatsapp["contact_id"] == on_sms["contact_id"]
    assert (on_whatsapp["channel"], on_sms["channel"]) == ("whatsapp", "sms")
    contact = (await alice.http.get(f"/api/v1/contacts/{on_sms['contact_id']}")).json()
    assert contact["phone"] == ADA and contact["name"] == "Ada Lovelace"
    assert [(i["kind"], i["value"]) for i in contact["identities"]] == [("phone", ADA)]

    for conversation in (on_sms, on_whatsapp):
        answer = await alice.http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                       json={"text": "Got it"})
        assert answer.status_code == 201
    sent = {(f["To"][0], f["From"][0]) for f in await fake.wait_created(2)}
    assert sent == {(ADA, SMS_NUMBER), (f"whatsapp:{ADA}", f"whatsapp:{WHATSAPP_NUMBER}")}


async def test_agent_files_go_out_as_expiring_media_links_twilio_can_fetch(
    stack: Stack, fake: FakeTwilio
) -> None:
    sms_id = await twilio_inbox(stack, fake, "sms")
    whatsapp_id = await twilio_inbox(stack, fake, "whatsapp")
    alice = await stack.login("alice")
    await post_webhook(stack, "sms", sms_id, inbound_fields(sender=ADA, to=SMS_NUMBER,
                                                            body="Label please"))
    await post_webhook(stack, "whatsapp", whatsapp_id, whatsapp_message("And here"))
    [on_sms] = await eventually(lambda: conversations(alice.http, sms_id))
    [on_whatsapp] = await eventually(lambda: conversations(alice.http, whatsapp_id))

    async def upload(conversation_id: int, name: str, data: bytes) -> str:
        answer = await alice.http.post(
            f"/api/v1/conversations/{conversation_id}/attachments", params={"filename": name},
            content=data, headers={"Content-Type": "image/png"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    label = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    ids = [await upload(on_sms["id"], "label.png", label),
           await upload(on_sms["id"], "box.png", b"\x89PNG box")]
    reply = await alice.http.post(f"/api/v1/conversations/{on_sms['id']}/messages",
                                  json={"attachment_ids": ids})
    assert reply.status_code == 201, reply.text
    [sent] = await fake.wait_created(1)
    assert "Body" not in sent
    links = sent["MediaUrl"]
    assert len(links) == 2 and all(u.startswith(stack.settings.base_url + "/api/v1/files/")
                                   for u in links)
    # Twilio fetches each link without credentials; a tampered one gets nothing.
    anonymous = stack.client()
    path = links[0].removeprefix(stack.settings.base_url)
    fetched = await anonymous.get(path)
    assert fetched.status_code == 200 and fetched.content == label
    assert (await anonymous.get(path.replace("expires=", "expires=9"))).status_code == 404

    # WhatsApp takes one file per message: two are refused before anything is queued.
    two = [await upload(on_whatsapp["id"], f"p{n}.png", b"\x89PNG") for n in range(2)]
    refused = await alice.http.post(f"/api/v1/conversations/{on_whatsapp['id']}/messages",
                                    json={"text": "Both", "attachment_ids": two})
    assert refused.status_code == 422 and "at most 1" in refused.json()["error"]["message"]


async def test_behind_a_proxy_the_public_url_is_what_counts(
    settings: Settings, fake: FakeTwilio
) -> None:
    public = settings.model_copy(update={"public_url": "https://support.example.com"})
    async with running_stack(public) as stack:
        # The session cookie is Secure for an https public URL: connect the inbox directly.
        db = Database(stack.settings.sqlalchemy_url)
        try:
            async with db.write() as session:
                inbox = await create_inbox(session, name="SMS", channel="sms",
                                           settings=fake.settings(from_number=SMS_NUMBER))
                assert inbox.id is not None
                inbox_id = inbox.id
        finally:
            await db.close()
        fields = inbound_fields(sender=ADA, to=SMS_NUMBER, body="via the proxy")
        internal = f"http://127.0.0.1:{settings.port}/webhooks/sms/{inbox_id}"
        refused = await post_webhook(stack, "sms", inbox_id, fields, signed_url=internal)
        assert refused.status_code == 403
        accepted = await post_webhook(stack, "sms", inbox_id, fields)
        assert accepted.status_code == 200

        async def stored() -> list[str]:
            db = Database(stack.settings.sqlalchemy_url)
            try:
                async with db.read() as session:
                    return list(await session.exec(
                        select(Message.text).where(Message.inbox_id == inbox_id)))
            finally:
                await db.close()

        assert await eventually(stored) == ["via the proxy"]


async def _age_inbound(settings: Settings, *, hours: int) -> None:
    """Move every inbound message `hours` into the past, as if the customer wrote then."""
    db = Database(settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await session.exec(
                update(Message).where(col(Message.direction) == "in")
                .values(accepted_at=utcnow() - timedelta(hours=hours))
            )
    finally:
        await db.close()


async def _meta(settings: Settings, message_id: int) -> dict[str, Any]:
    db = Database(settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            row = await session.get(Message, message_id)
            assert row is not None
            return dict(row.meta)
    finally:
        await db.close()
