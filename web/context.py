"""What every route needs, passed to the route factories instead of a global `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field

from channels.base import ChannelAdapter
from config import Settings
from hub.realtime import Fanout
from inbox.context import InboxContext
from web.directory import InboxDirectory


@dataclass(frozen=True)
class WebContext:
    """Settings, the inbox context, the channel adapters and the realtime fan-out."""

    settings: Settings
    inbox: InboxContext
    channels: dict[str, ChannelAdapter]
    fanout: Fanout
    directory: InboxDirectory = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", InboxDirectory(self.inbox.db))
