"""The channel registry: the explicit list of channels this Switchboard speaks."""

from __future__ import annotations

import httpx

from channels.api import ApiChannel
from channels.base import ChannelAdapter
from channels.email import EmailChannel
from channels.meta import InstagramChannel, MessengerChannel
from channels.telegram import TelegramChannel
from channels.twilio import SmsChannel, WhatsAppChannel
from channels.webchat import WebchatChannel
from config import Settings


def build_channels(settings: Settings, http: httpx.AsyncClient) -> dict[str, ChannelAdapter]:
    """Every channel adapter, by kind, built once at start-up."""
    adapters: list[ChannelAdapter] = [
        ApiChannel(http=http, tolerance_seconds=settings.webhook_tolerance_seconds,
                   public_url=settings.base_url),
        EmailChannel(),
        WebchatChannel(),
        WhatsAppChannel(http=http, public_url=settings.base_url,
                        max_media_bytes=settings.attachment_max_bytes),
        SmsChannel(http=http, public_url=settings.base_url,
                   max_media_bytes=settings.attachment_max_bytes),
        TelegramChannel(http=http, public_url=settings.base_url,
                        max_media_bytes=settings.attachment_max_bytes),
        MessengerChannel(http=http, max_media_bytes=settings.attachment_max_bytes),
        InstagramChannel(http=http, max_media_bytes=settings.attachment_max_bytes),
    ]
    return {adapter.kind: adapter for adapter in adapters}
