"""Housekeeping forgets old consumed-event records and old quarantined payloads, in batches,
and keeps what is recent (or everything quarantined, when told to)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import cast

import pytest
from sqlmodel import func, select

from config.settings import Settings
from hub.types import utcnow
from inbox import housekeeping
from inbox.context import InboxContext
from inbox.db import Database
from inbox.models import ConsumedEvent, Inbox, QuarantinedMessage
from tests.helpers import running_stack


class _Ctx:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db


async def _fill(db: Database, *, old: int, new: int) -> None:
    now = utcnow()
    async with db.write() as session:
        inbox = Inbox(name="Mail", channel="email")
        session.add(inbox)
        await session.flush()
        assert inbox.id
        for n in range(old + new):
            at = now - timedelta(days=100 if n < old else 1)
            session.add(ConsumedEvent(consumer="crm", event_id=f"e{n}", consumed_at=at))
            session.add(QuarantinedMessage(inbox_id=inbox.id, reason="unparseable",
                                           raw=b"\x00raw", created_at=at))


async def _left(db: Database) -> tuple[list[str], int]:
    async with db.read() as session:
        events = sorted(await session.exec(select(ConsumedEvent.event_id)))
        quarantined = (await session.exec(
            select(func.count()).select_from(QuarantinedMessage))).one()
    return list(events), quarantined


@pytest.mark.parametrize("keep_quarantine", [10, 0])
async def test_old_records_are_forgotten_in_batches(
    settings: Settings, keep_quarantine: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "BATCH", 3)  # several batches, the last one short
    settings = settings.model_copy(update={"consumed_events_keep_days": 7,
                                           "quarantine_keep_days": keep_quarantine})
    db = Database(settings.sqlalchemy_url)
    try:
        await _fill(db, old=7, new=2)
        ctx = cast(InboxContext, _Ctx(settings, db))
        removed = await housekeeping.forget_old(ctx)
        assert removed["consumed_events"] == 7
        events, quarantined = await _left(db)
        assert events == ["e7", "e8"]  # the two from yesterday
        if keep_quarantine:
            assert removed["quarantined_messages"] == 7 and quarantined == 2
        else:  # kept forever
            assert "quarantined_messages" not in removed and quarantined == 9
        assert await housekeeping.forget_old(ctx) == {
            "consumed_events": 0, **({"quarantined_messages": 0} if keep_quarantine else {})}
    finally:
        await db.close()


async def test_workers_keep_house_on_their_own(settings: Settings) -> None:
    settings = settings.model_copy(update={"housekeeping_seconds": 0.2})
    async with running_stack(settings):
        db = Database(settings.sqlalchemy_url)
        try:
            await _fill(db, old=4, new=1)
            # each table goes in its own transactions: wait for both, not only the first
            for _ in range(100):
                if await _left(db) == (["e4"], 1):
                    break
                await asyncio.sleep(0.1)
            events, quarantined = await _left(db)
            assert events == ["e4"] and quarantined == 1  # the defaults: 7 and 90 days
        finally:
            await db.close()
