"""Pulled channels' durable state: cursors per inbox, and messages kept aside unparsed."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import utcnow
from inbox.db import Database
from inbox.models import ChannelState, QuarantinedMessage

MAX_REASON = 1000


class InboxChannelState:
    """The state of one inbox's poller: load/save cursors, quarantine what cannot be read."""

    def __init__(self, db: Database, *, inbox_id: int) -> None:
        self._db = db
        self.inbox_id = inbox_id

    async def load(self, key: str) -> dict[str, Any] | None:
        """The value saved under `key`, or None."""
        async with self._db.read() as session:
            row = await session.get(ChannelState, (self.inbox_id, key))
            return dict(row.value) if row is not None else None

    async def save(self, key: str, value: dict[str, Any]) -> None:
        """Replace the value under `key`; committed when this returns."""
        async with self._db.write() as session:
            row = await session.get(ChannelState, (self.inbox_id, key))
            if row is None:
                row = ChannelState(inbox_id=self.inbox_id, key=key)
            row.value = dict(value)
            row.updated_at = utcnow()
            session.add(row)

    async def quarantine(self, reason: str, raw: bytes) -> None:
        """Keep an unparseable message aside with its error."""
        async with self._db.write() as session:
            session.add(QuarantinedMessage(inbox_id=self.inbox_id, reason=reason[:MAX_REASON],
                                           raw=raw))


async def list_quarantined(session: AsyncSession, *, limit: int = 100) -> list[QuarantinedMessage]:
    """The most recent quarantined messages, newest first (raw bytes included)."""
    rows = await session.exec(
        select(QuarantinedMessage).order_by(col(QuarantinedMessage.id).desc()).limit(limit)
    )
    return list(rows)
