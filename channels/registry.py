"""The channel registry: the explicit list of channels this Switchboard speaks."""

from __future__ import annotations

import httpx

from channels.api import ApiChannel
from channels.base import ChannelAdapter
from config import Settings


def build_channels(settings: Settings, http: httpx.AsyncClient) -> dict[str, ChannelAdapter]:
    """Every channel adapter, by kind, built once at start-up."""
    adapters: list[ChannelAdapter] = [
        ApiChannel(http=http, tolerance_seconds=settings.webhook_tolerance_seconds),
    ]
    return {adapter.kind: adapter for adapter in adapters}
