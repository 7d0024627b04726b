"""What every route needs, passed to the route factories instead of a global `app.state`."""

from __future__ import annotations

from dataclasses import dataclass

from channels.base import ChannelAdapter
from config import Settings
from hub.realtime import Fanout
from inbox.context import InboxContext


@dataclass(frozen=True)
class WebContext:
    """Settings, the inbox context, the channel adapters and the realtime fan-out."""

    settings: Settings
    inbox: InboxContext
    channels: dict[str, ChannelAdapter]
    fanout: Fanout
