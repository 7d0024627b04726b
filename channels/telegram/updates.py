"""Telegram `Update` objects (core.telegram.org/bots/api#update) as inbound messages.

Pure: no I/O. Private chats only (a bot added to a group is not a support inbox); a
message's id is unique within its chat, so `<chat id>:<message id>` is its external id and
the same update delivered twice is one message; an edit names that id and carries the new
text. Files arrive as `file_id`s only: they are
named in the metadata (`media_<n>_*`) and the worker downloads them (getFile) before
threading, like Twilio's media. Anything that is not a private message (channel posts,
callback queries, member updates, unknown update types) is ignored and logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from channels.base import BadPayload, Parsed
from hub.identity import InvalidIdentity, normalize_phone
from hub.types import Identity, InboundMessage, MessageEdit, utcnow

log = logging.getLogger("switchboard.channels.telegram")

# What a photo, document, voice note, video or sticker becomes: (kind, default file name,
# default media type). Photos come in several sizes: the largest is kept.
MEDIA_KINDS: dict[str, tuple[str, str]] = {
    "photo": ("photo.jpg", "image/jpeg"),
    "document": ("document", "application/octet-stream"),
    "voice": ("voice.ogg", "audio/ogg"),
    "audio": ("audio.mp3", "audio/mpeg"),
    "video": ("video.mp4", "video/mp4"),
    "video_note": ("video.mp4", "video/mp4"),
    "sticker": ("sticker.webp", "image/webp"),
    "animation": ("animation.mp4", "video/mp4"),
}


def parse_update(body: bytes, *, channel: str, inbox_id: int) -> Parsed:
    """The inbound message of one update (empty when it carries none we keep)."""
    try:
        update = json.loads(body)
    except ValueError:
        raise BadPayload("body: not JSON") from None
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise BadPayload("update_id: missing; not a Telegram update")
    edited = "edited_message" in update
    message = update.get("message") or update.get("edited_message")
    if not isinstance(message, dict):
        log.info("telegram update %s ignored: %s", update["update_id"],
                 ", ".join(k for k in update if k != "update_id") or "empty")
        return []
    chat = message.get("chat") or {}
    sender = message.get("from") or {}
    if chat.get("type") != "private" or not isinstance(sender.get("id"), int):
        log.info("telegram update %s ignored: not a private chat", update["update_id"])
        return []
    if sender.get("is_bot"):
        return []
    try:
        if edited:
            return [_edit(message, chat, channel=channel, inbox_id=inbox_id)]
        return [_inbound(message, chat, sender, channel=channel, inbox_id=inbox_id)]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPayload(f"message: {exc}") from None


def _edit(message: dict[str, Any], chat: dict[str, Any], *, channel: str, inbox_id: int
          ) -> MessageEdit:
    """The new wording of a message the customer changed (text, or a file's caption)."""
    when = message.get("edit_date") or message.get("date")
    notes = _notes(message, {})  # a changed location is words too; files are not fetched again
    text = str(message.get("text") or message.get("caption") or "")
    return MessageEdit(
        channel=channel, inbox_id=inbox_id,
        external_id=f"{int(chat['id'])}:{int(message['message_id'])}",
        text="\n".join(part for part in (text, *notes) if part),
        provider_ts=datetime.fromtimestamp(int(when), UTC) if when else None)


def _inbound(message: dict[str, Any], chat: dict[str, Any], sender: dict[str, Any], *,
             channel: str, inbox_id: int) -> InboundMessage:
    chat_id = int(chat["id"])
    message_id = int(message["message_id"])
    name = " ".join(str(p) for p in (sender.get("first_name"), sender.get("last_name")) if p)
    meta: dict[str, str] = {"chat_id": str(chat_id)}
    if sender.get("username"):
        meta["username"] = str(sender["username"])
    if sender.get("language_code"):
        meta["language"] = str(sender["language_code"])
    text = str(message.get("text") or message.get("caption") or "")
    if text.startswith("/start"):
        command, _, payload = text.partition(" ")
        if command in ("/start", "/start@"):
            meta["start"] = payload.strip()[:64]  # a deep link's payload (t.me/bot?start=…)
    notes = _notes(message, meta)
    external_id = f"{chat_id}:{message_id}"
    when = message.get("date")
    verified: tuple[Identity, ...] = ()
    if meta.get("shared_phone"):
        try:
            # Telegram gives the number in international form, often without its "+".
            raw = meta["shared_phone"]
            number = normalize_phone(raw if raw.startswith("+") else "+" + raw)
            verified = (Identity(kind="phone", value=number),)
        except InvalidIdentity:
            verified = ()
    return InboundMessage(
        channel=channel, inbox_id=inbox_id, external_id=external_id,
        verified_identities=verified,
        sender=Identity(kind="telegram", value=str(sender["id"]),
                        display_name=(name or meta.get("username") or None)),
        thread_hint=f"telegram:{chat_id}",
        in_reply_to=(f"{chat_id}:{message['reply_to_message']['message_id']}"
                     if isinstance(message.get("reply_to_message"), dict) else None),
        text="\n".join(part for part in (text, *notes) if part),
        provider_ts=datetime.fromtimestamp(int(when), UTC) if when else None,
        received_at=utcnow(), metadata=meta,
    )


def _notes(message: dict[str, Any], meta: dict[str, str]) -> list[str]:
    """Lines that stand for what is not text (a location, a contact), and the media named in
    the metadata for the worker to fetch."""
    notes: list[str] = []
    count = 0
    for kind, (filename, media_type) in MEDIA_KINDS.items():
        item = message.get(kind)
        if not item:
            continue
        if kind == "photo":
            item = max(item, key=lambda size: int(size.get("width", 0)) * int(
                size.get("height", 0)))
        if kind == "sticker" and (item.get("is_animated") or item.get("is_video")):
            notes.append(f"[sticker {item.get('emoji') or ''}]".replace(" ]", "]"))
            continue
        meta[f"media_{count}_file_id"] = str(item["file_id"])
        meta[f"media_{count}_name"] = str(item.get("file_name") or filename)
        meta[f"media_{count}_type"] = str(item.get("mime_type") or media_type)
        count += 1
    if count:
        meta["media_count"] = str(count)
    location = message.get("location")
    if isinstance(location, dict):
        lat, lon = float(location["latitude"]), float(location["longitude"])
        meta["location"] = f"{lat},{lon}"
        notes.append(f"Location: {lat:.5f}, {lon:.5f} "
                     f"(https://www.openstreetmap.org/?mlat={lat}&mlon={lon})")
    contact = message.get("contact")
    if isinstance(contact, dict):
        who = " ".join(str(p) for p in (contact.get("first_name"), contact.get("last_name"))
                       if p)
        phone = str(contact.get("phone_number") or "")
        notes.append(f"Shared contact: {who} {phone}".strip())
        # Their own number (shared with the "share my phone" button): the contact's phone.
        if phone and contact.get("user_id") == (message.get("from") or {}).get("id"):
            meta["shared_phone"] = phone
    return notes

