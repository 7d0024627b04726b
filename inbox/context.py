"""What every inbox action needs, built once at start-up and passed down."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from sqlmodel.ext.asyncio.session import AsyncSession

from config import Settings
from hub.bus import Bus
from hub.events import View, encode_event
from hub.secrets import SecretBox, secret_box
from hub.types import Capabilities, ChannelProfile
from inbox.blobs import Blobs
from inbox.db import Database
from inbox.models import Inbox


@dataclass(frozen=True)
class InboxInfo:
    """What threading needs of an inbox, cheap to keep between messages."""

    id: int
    channel: str
    auto_assign: bool


class InboxCache:
    """Inbox rows kept for a few seconds: every inbound message would otherwise read one."""

    def __init__(self, seconds: float = 5.0) -> None:
        self._seconds = seconds
        self._rows: dict[int, tuple[float, InboxInfo | None]] = {}

    async def get(self, session: AsyncSession, inbox_id: int) -> InboxInfo | None:
        """The inbox, from the cache or the database."""
        now = time.monotonic()
        hit = self._rows.get(inbox_id)
        if hit is not None and now - hit[0] < self._seconds:
            return hit[1]
        row = await session.get(Inbox, inbox_id)
        info = (
            InboxInfo(row.id, row.channel, row.auto_assign)
            if row is not None and row.id is not None else None
        )
        self._rows[inbox_id] = (now, info)
        return info

    def forget(self, inbox_id: int) -> None:
        """Drop a changed inbox (this process reads it again; others within the seconds)."""
        self._rows.pop(inbox_id, None)


@dataclass(frozen=True)
class InboxContext:
    """The database, the bus, the settings and the channels' profiles of one process.

    `channels` says what each channel can do (reply window, templates, attachments), so
    every action that sends enforces it whoever calls it: the API, the UI, a rule, a script.
    """

    settings: Settings
    db: Database
    bus: Bus
    inboxes: InboxCache = field(default_factory=InboxCache)
    channels: Mapping[str, ChannelProfile] = field(default_factory=dict)

    @cached_property
    def blobs(self) -> Blobs:
        """Where attachment bytes are written and read (inbox/blobs.py)."""
        return Blobs(self.settings)

    @cached_property
    def secrets(self) -> SecretBox:
        """Seals and opens the channel secrets in inbox settings (hub.secrets)."""
        return secret_box(self.settings.secret_key.get_secret_value(), self.settings.data_dir)

    def channel(self, kind: str) -> ChannelProfile:
        """The channel's profile; a channel this process does not run can do nothing extra."""
        return self.channels.get(kind) or ChannelProfile(kind, Capabilities())

    async def publish(self, events: list[View]) -> list[str]:
        """Broadcast events, in order; call only after their transaction has committed."""
        return await self.bus.broadcast_many(
            [encode_event(event) for event in events], self.settings.stream_maxlen
        )
