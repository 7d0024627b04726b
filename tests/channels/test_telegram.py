"""Telegram: updates parsed from documented shapes; end to end through python-telegram-bot
against a local Bot API - connect (setWebhook), updates in, replies out, blocked users,
rate limits, deletion (deleteWebhook) and secrets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from channels.base import (
    BadPayload,
    PermanentSendError,
    TransientSendError,
    VerificationFailed,
    WebhookRequest,
)
from channels.telegram import TelegramChannel
from hub.types import Identity, InboundMessage, MessageEdit, OutboundMessage
from inbox.db import Database
from inbox.models import Message
from tests.fakes.telegram_server import BOT_TOKEN, FakeTelegram, private_message
from tests.helpers import Stack, eventually, of_type
from tests.web.test_inbox_secrets import _stored_settings

FIXTURES = Path(__file__).with_name("fixtures") / "telegram"
SECRET = "whsec_Tg-1234567890abcdef"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A local Bot API for the test."""
    running = FakeTelegram()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def _request(body: bytes, token: str | None = SECRET) -> WebhookRequest:
    headers = {"x-telegram-bot-api-secret-token": token} if token is not None else {}
    return WebhookRequest(method="POST", url="https://sb.example/webhooks/telegram/7",
                          headers=headers, body=body, inbox_id=7,
                          inbox_settings={"webhook_secret": SECRET, "bot_token": BOT_TOKEN})


def _channel(http: httpx.AsyncClient | None = None) -> TelegramChannel:
    return TelegramChannel(http=http or httpx.AsyncClient(), public_url="https://sb.example",
                           max_media_bytes=10_000_000)


def _parse(name: str) -> list[InboundMessage]:  # messages only (edits: MessageEdit)
    parsed = _channel().parse(_request((FIXTURES / name).read_bytes()))
    assert all(isinstance(p, InboundMessage) for p in parsed)
    return parsed  # type: ignore[return-value]


def test_a_private_message_is_one_chat_message_of_the_telegram_user() -> None:
    [start] = _parse("start_deep_link.json")
    assert start.external_id == "4242:1" and start.thread_hint == "telegram:4242"
    assert start.sender == Identity(kind="telegram", value="4242", display_name="Tom Keller")
    assert start.metadata["start"] == "order-4411" and start.metadata["language"] == "de"
    assert start.threading == "contact"
    [text] = _parse("text.json")
    assert text.text == "Hallo, wo ist meine Bestellung?" and text.in_reply_to == "4242:1"


def test_files_are_named_for_the_worker_and_the_largest_photo_is_kept() -> None:
    [photo] = _parse("photo.json")
    assert photo.text == "the broken part"
    assert photo.metadata["media_count"] == "1"
    assert photo.metadata["media_0_file_id"] == "AgACAgQAAxkBAAIBlarge"
    [document] = _parse("document.json")
    assert (document.metadata["media_0_name"], document.metadata["media_0_type"]) == (
        "invoice-4411.pdf", "application/pdf")
    [voice] = _parse("voice.json")
    assert voice.metadata["media_0_type"] == "audio/ogg"
    [sticker] = _parse("sticker.json")
    assert sticker.metadata["media_0_type"] == "image/webp"  # a still sticker is an image
    [animated] = _parse("animated_sticker.json")
    assert animated.text == "[sticker 🎉]" and "media_count" not in animated.metadata


def test_locations_contacts_and_edits_are_words_the_agent_reads() -> None:
    [location] = _parse("location.json")
    assert location.text.startswith("Location: 52.52001, 13.40495 (https://www.openstreetmap")
    [contact] = _parse("contact_own.json")
    assert contact.text == "Shared contact: Tom Keller +4915112345678"
    assert contact.metadata["shared_phone"] == "+4915112345678"
    assert contact.verified_identities == (Identity(kind="phone", value="+4915112345678"),)
    [edited] = _channel().parse(_request((FIXTURES / "edited.json").read_bytes()))
    # An edit names the message it changes and carries its new wording.
    assert isinstance(edited, MessageEdit)
    assert (edited.external_id, edited.text) == ("4242:2", "Hallo, wo ist meine Bestellung 4411?")
    assert edited.provider_ts is not None and edited.provider_ts.timestamp() == 1764840100


def test_what_is_not_a_private_message_is_ignored_and_garbage_refused() -> None:
    for name in ("ignored_group.json", "ignored_callback_query.json",
                 "ignored_my_chat_member.json"):
        assert _parse(name) == [], name
    with pytest.raises(BadPayload, match="update_id"):
        _channel().parse(_request(b'{"message": {}}'))
    with pytest.raises(BadPayload, match="not JSON"):
        _channel().parse(_request(b"<xml/>"))


def test_the_secret_token_is_checked() -> None:
    body = (FIXTURES / "text.json").read_bytes()
    _channel().verify(_request(body))
    for token in (None, "", "whsec_wrong", SECRET + "x"):
        with pytest.raises(VerificationFailed) as refused:
            _channel().verify(_request(body, token))
        assert refused.value.status == 403


def _outbound(text: str = "Ihre Bestellung <4411> & mehr") -> OutboundMessage:
    return OutboundMessage(message_id=1, conversation_id=1, inbox_id=7, channel="telegram",
                           recipient=Identity(kind="telegram", value="4242"), text=text,
                           idempotency_key="k-1")


async def test_send_escapes_and_maps_telegram_errors(fake: FakeTelegram) -> None:
    settings = {"bot_token": BOT_TOKEN, "api_base_url": fake.url}
    async with httpx.AsyncClient() as http:
        channel = _channel(http)
        receipt = await channel.send(_outbound(), settings)
        assert receipt.external_id.startswith("4242:")
        assert fake.sent[-1] == {"chat_id": 4242, "text": "Ihre Bestellung &lt;4411&gt; &amp; mehr",
                                 "parse_mode": "HTML", "token": BOT_TOKEN}
        fake.failures.append((403, "Forbidden: bot was blocked by the user", None))
        with pytest.raises(PermanentSendError, match="bot was blocked by the user"):
            await channel.send(_outbound(), settings)
        fake.failures.append((429, "Too Many Requests: retry after 3", 3))
        with pytest.raises(TransientSendError) as limited:
            await channel.send(_outbound(), settings)
        assert limited.value.retry_after == 3
        with pytest.raises(PermanentSendError, match="bot token"):
            await channel.send(_outbound(), {**settings, "bot_token": "1:" + "x" * 30})
    assert BOT_TOKEN not in str(limited.value)


async def _connect(stack: Stack, fake: FakeTelegram, **extra: Any) -> httpx.Response:
    admin = await stack.login("admin")
    return await admin.http.post("/api/v1/inboxes", json={
        "name": "Telegram", "channel": "telegram",
        "settings": {"bot_token": BOT_TOKEN, "api_base_url": fake.url, **extra}})


async def _post(stack: Stack, inbox_id: int, update: dict[str, Any], secret: str
                ) -> httpx.Response:
    return await stack.client().post(
        f"/webhooks/telegram/{inbox_id}", content=json.dumps(update).encode(),
        headers={"X-Telegram-Bot-Api-Secret-Token": secret,
                 "Content-Type": "application/json"})


async def test_a_telegram_inbox_end_to_end(stack: Stack, fake: FakeTelegram) -> None:
    admin = await stack.login("admin")
    tested = await admin.http.post("/api/v1/channels/telegram/test", json={
        "settings": {"bot_token": BOT_TOKEN, "api_base_url": fake.url}})
    assert tested.json() == {"ok": True, "detail": "Connected as @shop_support_bot"}
    wrong = await admin.http.post("/api/v1/channels/telegram/test", json={
        "settings": {"bot_token": "123:" + "A" * 30, "api_base_url": fake.url}})
    assert wrong.json()["ok"] is False and "does not know this bot token" in wrong.text
    refused = await admin.http.post("/api/v1/inboxes", json={
        "name": "Telegram", "channel": "telegram",
        "settings": {"bot_token": "123:" + "A" * 30, "api_base_url": fake.url}})
    assert refused.status_code == 422 and "does not know this bot token" in refused.text
    assert [i["channel"] for i in (await admin.http.get("/api/v1/inboxes")).json()
            ].count("telegram") == 0  # the refused inbox was removed again

    made = await _connect(stack, fake)
    assert made.status_code == 201, made.text
    inbox_id = made.json()["id"]
    [hook] = fake.webhooks.values()
    assert hook["url"] == f"{stack.settings.base_url}/webhooks/telegram/{inbox_id}"
    secret = str(hook["secret_token"])
    assert len(secret) >= 32 and hook["allowed_updates"] == ["message", "edited_message"]
    stored = await _stored_settings(stack, inbox_id)
    assert BOT_TOKEN not in json.dumps(stored) and secret not in json.dumps(stored)
    assert stored["bot_username"] == "shop_support_bot"
    detail = await admin.http.get(f"/api/v1/inboxes/{inbox_id}")
    assert BOT_TOKEN not in detail.text and secret not in detail.text
    await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                         json={"agent_ids": [stack.ids["alice"]]})

    alice = await stack.login("alice")
    socket = await alice.ws()
    update = private_message(1, text="Hallo! Wo bleibt meine Bestellung?")
    assert (await _post(stack, inbox_id, update, "not-the-secret")).status_code == 403
    assert (await _post(stack, inbox_id, update, secret)).status_code == 202
    assert (await _post(stack, inbox_id, update, secret)).status_code == 202  # a redelivery
    created = await socket.wait_event(of_type("message.created", direction="in"))
    message = created["event"]["message"]
    assert message["text"] == "Hallo! Wo bleibt meine Bestellung?"
    assert created["event"]["conversation"]["channel"] == "telegram"
    conversation_id = created["event"]["conversation"]["id"]
    items = (await alice.http.get(f"/api/v1/conversations/{conversation_id}/messages")
             ).json()["items"]
    assert [m["text"] for m in items] == ["Hallo! Wo bleibt meine Bestellung?"]  # once

    reply = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"text": "Sie ist unterwegs <heute>"})
    assert reply.status_code == 201, reply.text
    await eventually(lambda: _sent(fake, 1))
    assert fake.sent[0]["chat_id"] == 4242
    assert fake.sent[0]["text"] == "Sie ist unterwegs &lt;heute&gt;"

    # The customer changes what they wrote: the stored message takes the new text, keeps
    # the old one, and every agent sees it live.
    edit = {"update_id": 3, "edited_message": {
        **update["message"], "edit_date": update["message"]["date"] + 60,
        "text": "Hallo! Wo bleibt meine Bestellung 4411?"}}
    assert (await _post(stack, inbox_id, edit, secret)).status_code == 202
    changed = await socket.wait_event(of_type("message.edited"))
    assert changed["event"]["message"]["id"] == message["id"]
    assert changed["event"]["message"]["text"] == "Hallo! Wo bleibt meine Bestellung 4411?"
    assert changed["event"]["message"]["edited_at"] is not None
    items = (await alice.http.get(f"/api/v1/conversations/{conversation_id}/messages")
             ).json()["items"]
    assert [m["text"] for m in items if m["direction"] == "in"] == [
        "Hallo! Wo bleibt meine Bestellung 4411?"]  # changed in place, not a second message
    assert (await _post(stack, inbox_id, edit, secret)).status_code == 202  # redelivered
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            stored = await session.get_one(Message, message["id"])
    finally:
        await db.close()
    assert [e["text"] for e in stored.meta["edits"]] == ["Hallo! Wo bleibt meine Bestellung?"]

    # A customer who blocked the bot: the reply fails with Telegram's reason.
    fake.failures.append((403, "Forbidden: bot was blocked by the user", None))
    blocked = await alice.http.post(f"/api/v1/conversations/{conversation_id}/messages",
                                    json={"text": "Noch da?"})
    failed = await socket.wait_event(lambda e: e["type"] == "message.status_changed"
                                     and e["message"]["status"] == "failed", 20)
    assert failed["event"]["message"]["id"] == blocked.json()["id"]
    assert "bot was blocked by the user" in failed["event"]["message"]["status_reason"]

    # Deleting the inbox removes the webhook at Telegram and stops intake.
    gone = await admin.http.delete(f"/api/v1/inboxes/{inbox_id}")
    assert gone.status_code == 200 and gone.json()["provider"] == (
        "the provider's set-up was removed")
    assert fake.webhooks == {} and len(fake.called("deleteWebhook")) == 1
    later = private_message(2, text="Hallo?")
    assert (await _post(stack, inbox_id, later, secret)).status_code == 404
    await socket.close()


async def _sent(fake: FakeTelegram, count: int) -> bool:
    return len(fake.sent) >= count


async def test_the_admin_page_tests_and_deletes_a_telegram_inbox(
    stack: Stack, fake: FakeTelegram,
) -> None:
    from tests.web.test_admin_pages import _form_login

    made = await _connect(stack, fake)
    inbox_id = made.json()["id"]
    browser, csrf = await _form_login(stack, "admin")
    shown = await browser.get(f"/admin/inboxes/{inbox_id}")
    assert 'id="test-connection"' in shown.text and BOT_TOKEN not in shown.text
    fields = {"csrf_token": csrf, "name": "Telegram", "setting.bot_token": "",
              "setting.mode": "", "setting.bot_username": "shop_support_bot",
              "setting.api_base_url": fake.url}
    works = await browser.post(f"/admin/inboxes/{inbox_id}/test", data=fields)
    assert works.status_code == 200
    assert "The connection works: Connected as @shop_support_bot." in works.text
    typo = await browser.post(f"/admin/inboxes/{inbox_id}/test", data={
        **fields, "setting.bot_token": "123:" + "B" * 30})
    assert "The provider refused: Telegram does not know this bot token" in typo.text
    assert fake.webhooks  # testing changed nothing

    unconfirmed = await browser.post(f"/admin/inboxes/{inbox_id}/delete",
                                     data={"csrf_token": csrf})
    assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.text
    deleted = await browser.post(f"/admin/inboxes/{inbox_id}/delete",
                                 data={"csrf_token": csrf, "confirm": "1"})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"/admin/inboxes/{inbox_id}?done=deleted"
    after = await browser.get(deleted.headers["location"])
    assert 'id="disconnected"' in after.text and "Delete inbox" not in after.text
    assert fake.webhooks == {}
    listing = await browser.get("/admin/inboxes")
    assert ">deleted</span>" in listing.text


class _State:
    """A poller's durable state, in memory."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}
        self.quarantined: list[tuple[str, bytes]] = []

    async def load(self, key: str) -> dict[str, Any] | None:
        return self.saved.get(key)

    async def save(self, key: str, value: dict[str, Any]) -> None:
        self.saved[key] = value

    async def quarantine(self, reason: str, raw: bytes) -> None:
        self.quarantined.append((reason, raw))


async def test_polling_mode_reads_get_updates_and_moves_its_offset_after_emitting(
    fake: FakeTelegram,
) -> None:
    import asyncio

    settings = {"bot_token": BOT_TOKEN, "api_base_url": fake.url, "mode": "polling",
                "webhook_secret": SECRET}
    emitted: list[InboundMessage] = []

    async def emit(item: Any) -> None:
        emitted.append(item)

    async with httpx.AsyncClient() as http:
        channel = _channel(http)
        fake.webhooks[BOT_TOKEN] = {"url": "https://old.example/hook"}
        # Connecting in polling mode removes a webhook: Telegram would refuse getUpdates.
        assert await channel.connect(7, settings) == {"bot_username": "shop_support_bot"}
        assert fake.webhooks == {} and fake.called("deleteWebhook")
        fake.updates.extend([private_message(41, text="first"),
                             {"update_id": 42, "callback_query": {"id": "x"}},
                             private_message(43, text="third")])
        state = _State()
        state.saved["updates"] = {"offset": 41}
        task = asyncio.create_task(channel.run(7, settings, emit, _NoStore(), state))
        try:
            await eventually(lambda: _saved(state, 44))
            assert [m.text for m in emitted] == ["first", "third"]
            fake.updates.append(private_message(44, text="fourth"))
            await eventually(lambda: _saved(state, 45))
            assert [m.text for m in emitted] == ["first", "third", "fourth"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    offsets = [c.params.get("offset") for c in fake.called("getUpdates")]
    assert offsets[:2] == [41, 44]  # from the saved offset, then past what was emitted
    assert all(c.params.get("allowed_updates") == ["message", "edited_message"]
               for c in fake.called("getUpdates"))


class _NoStore:
    async def __call__(self, filename: str, content_type: str, data: bytes) -> Any:
        raise AssertionError("nothing to store")


async def _saved(state: _State, offset: int) -> bool:
    return (state.saved.get("updates") or {}).get("offset") == offset


async def test_files_go_as_photos_or_documents_the_text_as_a_caption(fake: FakeTelegram) -> None:
    from hub.types import AttachmentRef

    files = {"f-1": b"\x89PNG\r\n\x1a\n a picture", "f-2": b"%PDF-1.7 an invoice"}

    async def load(attachment_id: str) -> bytes:
        return files[attachment_id]

    refs = (AttachmentRef(id="f-1", filename="parcel.png", content_type="image/png", size=18),
            AttachmentRef(id="f-2", filename="invoice.pdf", content_type="application/pdf",
                          size=19))
    message = _outbound("Here you go <both>").model_copy(update={"attachments": refs})
    settings = {"bot_token": BOT_TOKEN, "api_base_url": fake.url}
    async with httpx.AsyncClient() as http:
        receipt = await _channel(http).send_files(message, settings, load)
        photo, document = fake.sent
        assert (photo["kind"], photo["filename"], photo["bytes"]) == (
            "photo", "parcel.png", files["f-1"])
        assert photo["caption"] == "Here you go &lt;both&gt;" and photo["chat_id"] == 4242
        assert (document["kind"], document["filename"], document["caption"]) == (
            "document", "invoice.pdf", None)
        assert receipt.external_id.startswith("4242:")
        # A text too long for a caption goes first, on its own.
        long = message.model_copy(update={"text": "x" * 1500, "attachments": refs[1:]})
        await _channel(http).send_files(long, settings, load)
        assert [s.get("kind") for s in fake.sent[2:]] == [None, "document"]
        assert fake.sent[2]["text"] == "x" * 1500 and fake.sent[3]["caption"] is None


async def test_the_connect_form_tests_the_typed_token_before_connecting(
    stack: Stack, fake: FakeTelegram,
) -> None:
    from tests.web.test_admin_pages import _form_login

    browser, csrf = await _form_login(stack, "admin")
    form = await browser.get("/admin/inboxes/new?channel=telegram")
    assert 'id="test-connection"' in form.text and 'name="setting.webhook_secret"' not in form.text
    fields = {"csrf_token": csrf, "channel": "telegram", "name": "Bot",
              "setting.bot_token": BOT_TOKEN, "setting.api_base_url": fake.url}
    works = await browser.post("/admin/inboxes/test", data=fields)
    assert works.status_code == 200
    assert "The connection works: Connected as @shop_support_bot." in works.text
    assert BOT_TOKEN not in works.text and 'value="Bot"' in works.text  # typed again, not sent back
    wrong = await browser.post("/admin/inboxes/test", data={
        **fields, "setting.bot_token": "42:" + "Z" * 30})
    assert "The provider refused: Telegram does not know this bot token" in wrong.text
    assert fake.webhooks == {}  # testing connects nothing
    admin = await stack.login("admin")
    assert not [i for i in (await admin.http.get("/api/v1/inboxes")).json()
                if i["channel"] == "telegram"]


async def test_a_shared_phone_number_joins_the_contact_who_has_it(
    stack: Stack, fake: FakeTelegram,
) -> None:
    from inbox.models import Contact, ContactIdentity, Conversation

    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            known = Contact(name="Tom Keller (shop account)", phone="+4915112345678",
                            attributes={})
            session.add(known)
            await session.flush()
            assert known.id is not None
            known_id = known.id
            session.add(ContactIdentity(contact_id=known_id, kind="phone",
                                        value="+4915112345678"))
    finally:
        await db.close()
    made = await _connect(stack, fake)
    inbox_id = made.json()["id"]
    admin = await stack.login("admin")
    await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                         json={"agent_ids": [stack.ids["admin"]]})
    secret = str(next(iter(fake.webhooks.values()))["secret_token"])
    socket = await (await stack.login("admin")).ws()
    assert (await _post(stack, inbox_id, private_message(1, text="Hallo"), secret)
            ).status_code == 202
    first = await socket.wait_event(of_type("message.created", direction="in"))
    conversation_id = first["event"]["conversation"]["id"]
    assert first["event"]["conversation"]["contact_id"] != known_id  # a new contact, for now

    shared = private_message(2, text=None, contact={
        "phone_number": "4915112345678", "first_name": "Tom", "user_id": 4242})
    assert (await _post(stack, inbox_id, shared, secret)).status_code == 202
    merged = await socket.wait_event(of_type("contact.merged"))
    assert merged["event"]["contact"]["id"] == known_id
    assert merged["event"]["merged_contact_id"] == first["event"]["conversation"]["contact_id"]
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            identities = sorted((i.kind, i.value) for i in await session.exec(
                select(ContactIdentity).where(ContactIdentity.contact_id == known_id)))
    finally:
        await db.close()
    assert conversation.contact_id == known_id  # the Telegram chat is the known customer's
    assert identities == [("phone", "+4915112345678"), ("telegram", "4242")]
    await socket.close()
