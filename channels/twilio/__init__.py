"""WhatsApp and SMS through Twilio: one adapter per channel, the same Twilio account shape.

Each inbox is one Twilio sender (a number or a Messaging Service) on one channel. Its
webhook, `/webhooks/<whatsapp|sms>/<inbox id>`, takes incoming messages and status
callbacks alike (see webhooks.py). Senders are phone identities in E.164 on both channels,
so the same person writing on WhatsApp and by SMS is one contact with a conversation in
each inbox. See docs/channels/twilio.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from channels.base import Acknowledgement, Parsed, SettingSpec, WebhookRequest
from channels.twilio import media, rest, webhooks
from hub.security import file_link
from hub.types import Capabilities, InboundMessage, OutboundMessage, SendReceipt, StoreAttachment

TWILIO_SETTINGS = (
    SettingSpec("account_sid", "Twilio Account SID (AC…)"),
    SettingSpec("auth_token", "Twilio auth token: checks webhook signatures and sends",
                secret=True),
    SettingSpec("from_number", "the Twilio number to send from, E.164 (+14155550100); "
                "this or messaging_service_sid", required=False),
    SettingSpec("messaging_service_sid", "Messaging Service SID (MG…) to send through; "
                "this or from_number", required=False),
    SettingSpec("api_base_url", f"Twilio REST API base URL (default {media.DEFAULT_API_BASE})",
                required=False),
)
# Twilio refuses a Body over 1,600 characters.
MAX_TEXT = 1600


class TwilioChannel:
    """What WhatsApp and SMS share: Twilio's signatures, payloads, media and REST API."""

    kind: ClassVar[str]
    display_name: ClassVar[str]
    settings: ClassVar[tuple[SettingSpec, ...]] = TWILIO_SETTINGS
    capabilities: ClassVar[Capabilities]

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        public_url: str,
        max_media_bytes: int = media.MEDIA_MAX_BYTES,
    ) -> None:
        self._http = http
        self._public_url = public_url.rstrip("/")
        self._max_media_bytes = min(max_media_bytes, media.MEDIA_MAX_BYTES)

    def check_settings(self, settings: Mapping[str, Any]) -> list[str]:
        """A sender is needed, and the API base must be a URL."""
        problems = []
        if not settings.get("from_number") and not settings.get("messaging_service_sid"):
            problems.append("from_number: required unless messaging_service_sid is given")
        base = str(settings.get("api_base_url") or media.DEFAULT_API_BASE)
        if not base.startswith(("https://", "http://")):
            problems.append("api_base_url: must be an http(s) URL")
        return problems

    def verify(self, request: WebhookRequest) -> None:
        """Check X-Twilio-Signature against the inbox's auth token (403 when wrong)."""
        webhooks.verify(request)

    def parse(self, request: WebhookRequest) -> Parsed:
        """An incoming message, or a status callback of one we sent."""
        return webhooks.parse(request, self.kind)

    def acknowledge(self, request: WebhookRequest, parsed: Parsed) -> Acknowledgement:
        """Empty TwiML: nothing for Twilio to answer on our behalf."""
        return Acknowledgement(status=200, body=webhooks.EMPTY_TWIML, content_type="text/xml")

    async def fetch_media(
        self,
        message: InboundMessage,
        inbox_settings: Mapping[str, Any],
        store: StoreAttachment,
    ) -> InboundMessage:
        """Download the message's media with the account's credentials and store it."""
        return await media.fetch_media(message, inbox_settings, store, http=self._http,
                                       max_bytes=self._max_media_bytes)

    def file_link_key(self, inbox_settings: Mapping[str, Any]) -> str | None:
        """The inbox's auth token signs the MediaUrl links Twilio fetches an agent's files by."""
        return str(inbox_settings.get("auth_token") or "") or None

    async def send(
        self, message: OutboundMessage, inbox_settings: Mapping[str, Any]
    ) -> SendReceipt:
        """Create the message at Twilio, asking for status callbacks on the inbox's webhook.

        Attached files go as MediaUrl: expiring links on the public URL that Twilio fetches.
        """
        callback = webhooks.status_callback_url(self._public_url, self.kind, message.inbox_id)
        key = self.file_link_key(inbox_settings) or ""
        media = [file_link(self._public_url, key, ref.id) for ref in message.attachments]
        return await rest.send_message(message, inbox_settings, http=self._http,
                                       status_callback=callback, media_urls=media)


class WhatsAppChannel(TwilioChannel):
    """WhatsApp Business through Twilio: 24-hour window, templates, read receipts."""

    kind: ClassVar[str] = "whatsapp"
    display_name: ClassVar[str] = "WhatsApp"
    capabilities: ClassVar[Capabilities] = Capabilities(
        attachments=True, templates=True, read_receipts=True, reply_window_hours=24,
        max_text=MAX_TEXT, max_attachments=1,  # WhatsApp takes one file per message
    )


class SmsChannel(TwilioChannel):
    """SMS and MMS through Twilio."""

    kind: ClassVar[str] = "sms"
    display_name: ClassVar[str] = "SMS"
    capabilities: ClassVar[Capabilities] = Capabilities(attachments=True, max_text=MAX_TEXT)


__all__ = ["SmsChannel", "TwilioChannel", "WhatsAppChannel"]
