"""Pulled channels' durable state: cursors per inbox, and messages kept aside unparsed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
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


async def quarantined_message(session: AsyncSession, item_id: int) -> QuarantinedMessage | None:
    """One quarantined message (raw bytes included), or None."""
    return await session.get(QuarantinedMessage, item_id)


class FolderSync(BaseModel):
    """How far a pulled channel has read one of its sources (an IMAP folder), and its last
    import: a catch-up of many messages, with its progress."""

    key: str
    last_uid: int
    fetched: int | None = None
    total: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    eta_seconds: float | None = None
    updated_at: datetime


def folder_sync(row: ChannelState, now: datetime) -> FolderSync:
    """One cursor row as the admin sees it; the ETA from the import's pace so far."""
    value = row.value or {}
    progress = value.get("sync") or {}
    fetched, total = progress.get("fetched"), progress.get("total")
    started = _moment(progress.get("started_at"))
    finished = _moment(progress.get("finished_at"))
    eta: float | None = None
    if started is not None and finished is None and fetched and total:
        elapsed = max((now - started).total_seconds(), 0.001)
        eta = round((total - fetched) * elapsed / fetched, 1)
    return FolderSync(key=row.key, last_uid=int(value.get("last_uid", 0)), fetched=fetched,
                      total=total, started_at=started, finished_at=finished, eta_seconds=eta,
                      updated_at=row.updated_at)


async def sync_status(session: AsyncSession, *, inbox_id: int) -> list[FolderSync]:
    """The state of every source the inbox's poller follows, by key."""
    rows = await session.exec(
        select(ChannelState).where(ChannelState.inbox_id == inbox_id)
        .order_by(col(ChannelState.key)))
    now = utcnow()
    return [folder_sync(row, now) for row in rows]


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
