"""What every inbox action needs, built once at start-up and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from hub.bus import Bus
from hub.events import View, encode_event
from inbox.db import Database


@dataclass(frozen=True)
class InboxContext:
    """The database, the bus and the settings of one process."""

    settings: Settings
    db: Database
    bus: Bus

    async def publish(self, events: list[View]) -> list[str]:
        """Broadcast events, in order; call only after their transaction has committed."""
        return [
            await self.bus.broadcast(encode_event(event), self.settings.stream_maxlen)
            for event in events
        ]
