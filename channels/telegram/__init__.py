"""Telegram bots: customers write to the inbox's bot in a private chat.

Webhook mode (the default): connecting the inbox calls `setWebhook` with the inbox's
webhook URL and a random `secret_token`; Telegram sends that token back in
`X-Telegram-Bot-Api-Secret-Token` on every update, compared in constant time (a wrong or
missing one is 403 before anything is parsed). Deleting the inbox calls `deleteWebhook`.
Polling mode (`getUpdates`, for a Switchboard that Telegram cannot reach, behind NAT):
the worker runs one long-polling task per inbox and saves its offset after each batch is
on the bus. Replies go out with sendMessage (the agent's text escaped for Telegram's HTML
subset); a customer who blocked the bot is `failed` with Telegram's reason; a 429 is
waited out as Telegram's `retry_after` says. python-telegram-bot is the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from telegram import InputFile
from telegram.error import TelegramError

from channels.base import (
    ConnectFailed,
    Emit,
    Parsed,
    PollerState,
    SettingSpec,
    VerificationFailed,
    WebhookRequest,
)
from channels.telegram.bot import (
    UpdatesFailed,
    api_base,
    bot,
    connect_error,
    escaped,
    raw_updates,
    send_error,
)
from channels.telegram.updates import parse_update
from hub.security import constant_time_equal
from hub.types import (
    AttachmentRefused,
    Capabilities,
    InboundMessage,
    LoadAttachment,
    OutboundMessage,
    SendReceipt,
    StoreAttachment,
)

log = logging.getLogger("switchboard.channels.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105  (a header name)
ALLOWED_UPDATES = ["message", "edited_message"]
POLL_SECONDS = 50  # getUpdates long-poll timeout
MODES = ("webhook", "polling")
CAPTION_MAX = 1024
PHOTO_MAX_BYTES = 10 * 1024 * 1024  # a bot's sendPhoto limit; larger goes as a document
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class TelegramChannel:
    """A Telegram bot as an inbox."""

    kind: ClassVar[str] = "telegram"
    display_name: ClassVar[str] = "Telegram"
    settings: ClassVar[tuple[SettingSpec, ...]] = (
        SettingSpec("bot_token", "the bot's token from @BotFather (123456:ABC-...)",
                    secret=True),
        SettingSpec("mode", "webhook (default: Telegram calls Switchboard's public URL) or "
                    "polling (Switchboard asks Telegram; for a server Telegram cannot reach)",
                    required=False),
        SettingSpec("webhook_secret", "token Telegram sends back with every update",
                    secret=True),
        SettingSpec("bot_username", "the bot's @username (filled in on connecting)",
                    required=False),
        SettingSpec("api_base_url", f"Bot API server (default {api_base({})})",
                    required=False, form="url"),
    )
    capabilities: ClassVar[Capabilities] = Capabilities(attachments=True, max_attachments=10,
                                                        max_text=4096)

    def __init__(self, *, http: httpx.AsyncClient, public_url: str, max_media_bytes: int
                 ) -> None:
        self._http = http
        self._public_url = public_url.rstrip("/")
        # Telegram's getFile serves files up to 20 MB to bots.
        self._max_media_bytes = min(max_media_bytes, 20 * 1024 * 1024)

    # -- settings and lifecycle -------------------------------------------------------

    def default_settings(self) -> dict[str, Any]:
        """A fresh webhook secret (Telegram allows 1-256 of A-Z a-z 0-9 _ -)."""
        return {"webhook_secret": secrets.token_urlsafe(32)}

    def check_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """The token's shape, the mode, the Bot API URL."""
        problems = []
        token = str(settings.get("bot_token") or "")
        head, _, tail = token.partition(":")
        if token and not (head.isdigit() and len(tail) >= 20):
            problems.append("bot_token: not a bot token (123456789:AA... from @BotFather)")
        if str(settings.get("mode") or "webhook") not in MODES:
            problems.append("mode: webhook or polling")
        if not api_base(settings).startswith(("https://", "http://")):
            problems.append("api_base_url: must be an http(s) URL")
        return problems

    def webhook_url(self, inbox_id: int) -> str:
        """Where Telegram posts this inbox's updates."""
        return f"{self._public_url}/webhooks/{self.kind}/{inbox_id}"

    async def test_connection(self, inbox_settings: Mapping[str, Any]) -> str:
        """getMe: whether the token works, and which bot it is."""
        try:
            me = await bot(inbox_settings, self._http).get_me()
        except TelegramError as exc:
            raise connect_error(exc) from None
        return f"Connected as @{me.username}"

    async def connect(self, inbox_id: int, inbox_settings: Mapping[str, Any]
                      ) -> dict[str, Any]:
        """Learn the bot's name; point its webhook here (webhook mode) or remove it (polling
        mode: Telegram gives no updates to getUpdates while a webhook is set)."""
        client = bot(inbox_settings, self._http)
        try:
            me = await client.get_me()
            if str(inbox_settings.get("mode") or "webhook") == "webhook":
                await client.set_webhook(
                    url=self.webhook_url(inbox_id),
                    secret_token=str(inbox_settings.get("webhook_secret") or ""),
                    allowed_updates=ALLOWED_UPDATES, max_connections=40)
            else:
                await client.delete_webhook()
        except TelegramError as exc:
            raise connect_error(exc) from None
        return {"bot_username": me.username}

    async def disconnect(self, inbox_id: int, inbox_settings: Mapping[str, Any]) -> None:
        """Remove the bot's webhook: Telegram stops sending this inbox's updates."""
        try:
            await bot(inbox_settings, self._http).delete_webhook()
        except TelegramError as exc:
            raise connect_error(exc) from None

    # -- receiving --------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """The secret token Telegram was given on setWebhook, compared in constant time."""
        expected = str(request.inbox_settings.get("webhook_secret") or "")
        given = request.headers.get(SECRET_HEADER, "")
        if not expected:
            raise VerificationFailed("inbox has no webhook secret", status=403)
        if not given or not constant_time_equal(given, expected):
            raise VerificationFailed("secret token does not match", status=403)

    def parse(self, request: WebhookRequest) -> Parsed:
        """One update: the message it carries, if any."""
        return parse_update(request.body, channel=self.kind, inbox_id=request.inbox_id)

    async def fetch_media(self, message: InboundMessage, inbox_settings: Mapping[str, Any],
                          store: StoreAttachment) -> InboundMessage:
        """Download the files an update named (getFile) and store them as attachments."""
        meta = message.metadata
        count = int(meta.get("media_count", "0") or 0)
        if count <= 0:
            return message
        client = bot(inbox_settings, self._http)
        refs, notes = [], []
        for index in range(count):
            name = meta.get(f"media_{index}_name", "file")
            try:
                data = await self._download(client, meta.get(f"media_{index}_file_id", ""))
                refs.append(await store(name, meta.get(f"media_{index}_type", ""), data))
            except (AttachmentRefused, ConnectFailed) as exc:
                notes.append(f"[attachment {name} not kept: {exc}]")
        return message.model_copy(update={
            "text": "\n".join(part for part in (message.text, *notes) if part),
            "attachments": (*message.attachments, *refs),
            "metadata": {k: v for k, v in meta.items() if not k.startswith("media_")},
        })

    async def _download(self, client: Any, file_id: str) -> bytes:
        try:
            found = await client.get_file(file_id)
        except TelegramError as exc:
            raise ConnectFailed(f"Telegram did not hand the file over: {exc.message}") from None
        if found.file_size and found.file_size > self._max_media_bytes:
            raise ConnectFailed(f"larger than {self._max_media_bytes // (1024 * 1024)} MB")
        try:
            data = bytes(await found.download_as_bytearray())
        except TelegramError as exc:
            raise ConnectFailed(f"Telegram did not hand the file over: {exc.message}") from None
        if len(data) > self._max_media_bytes:
            raise ConnectFailed(f"larger than {self._max_media_bytes // (1024 * 1024)} MB")
        return data

    async def run(self, inbox_id: int, inbox_settings: Mapping[str, Any], emit: Emit,
                  store: StoreAttachment, state: PollerState) -> None:
        """Polling mode: getUpdates in a loop, the offset saved once a batch is on the bus.
        An inbox in webhook mode runs nothing here."""
        if str(inbox_settings.get("mode") or "webhook") != "polling":
            await asyncio.Event().wait()  # nothing to poll; stopped with the inbox
        saved = await state.load("updates") or {}
        offset = int(saved.get("offset", 0))
        delay = 1.0
        while True:
            try:
                updates = await raw_updates(inbox_settings, self._http, offset=offset,
                                            poll_seconds=POLL_SECONDS, allowed=ALLOWED_UPDATES)
                delay = 1.0
            except UpdatesFailed as exc:
                log.warning("telegram inbox %s: getUpdates failed: %s", inbox_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            for update in updates if isinstance(updates, list) else []:
                raw = json.dumps(update).encode()
                try:
                    for item in parse_update(raw, channel=self.kind, inbox_id=inbox_id):
                        await emit(item)
                except ValueError as exc:
                    await state.quarantine(f"telegram update: {exc}", raw)
                if isinstance(update, dict) and isinstance(update.get("update_id"), int):
                    offset = max(offset, update["update_id"] + 1)
            if updates:
                await state.save("updates", {"offset": offset})

    # -- sending ----------------------------------------------------------------------

    async def send(self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
                   ) -> SendReceipt:
        """sendMessage to the customer's private chat (their user id is its chat id)."""
        chat_id = int(message.recipient.value)
        try:
            sent = await bot(inbox_settings, self._http).send_message(
                chat_id=chat_id, text=escaped(message.text), parse_mode="HTML")
        except TelegramError as exc:
            raise send_error(exc) from None
        return SendReceipt(external_id=f"{chat_id}:{sent.message_id}")

    async def send_files(self, message: OutboundMessage, inbox_settings: Mapping[str, Any],
                         load: LoadAttachment) -> SendReceipt:
        """Photos with sendPhoto (plain images up to Telegram's 10 MB), anything else with
        sendDocument; the text rides as the first file's caption when it fits (1,024
        characters), else goes first as a message of its own."""
        if not message.attachments:
            return await self.send(message, inbox_settings)
        chat_id = int(message.recipient.value)
        client = bot(inbox_settings, self._http)
        caption: str | None = escaped(message.text) if message.text else None
        try:
            if caption is not None and len(message.text) > CAPTION_MAX:
                await client.send_message(chat_id=chat_id, text=caption, parse_mode="HTML")
                caption = None
            sent = None
            for ref in message.attachments:
                data = await load(ref.id)
                upload = InputFile(data, filename=ref.filename, read_file_handle=False)
                if ref.content_type in PHOTO_TYPES and len(data) <= PHOTO_MAX_BYTES:
                    sent = await client.send_photo(chat_id=chat_id, photo=upload,
                                                   caption=caption, parse_mode="HTML")
                else:
                    sent = await client.send_document(chat_id=chat_id, document=upload,
                                                      caption=caption, parse_mode="HTML")
                caption = None
        except TelegramError as exc:
            raise send_error(exc) from None
        assert sent is not None
        return SendReceipt(external_id=f"{chat_id}:{sent.message_id}")
