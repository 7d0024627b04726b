"""Housekeeping: forget what a long-lived install would otherwise keep forever.

- `consumed_events`: the events each durable consumer handled, kept only so that one
  delivered again (a worker died between its commit and its acknowledgement; redelivery
  comes within SWITCHBOARD_CLAIM_IDLE_MS) is skipped. Forgotten after
  SWITCHBOARD_CONSUMED_EVENTS_KEEP_DAYS: at a million messages a week it would otherwise
  grow by millions of rows a week.
- `quarantined_messages`: providers' raw payloads that could not be parsed, kept for admins
  for SWITCHBOARD_QUARANTINE_KEEP_DAYS (0: forever).

Rows go a batch at a time, each batch its own short transaction, so neither table is
locked for long and several workers doing it at once only share the work.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, tuple_
from sqlmodel import col, select

from hub.types import utcnow
from inbox.context import InboxContext
from inbox.db import Database
from inbox.models import ConsumedEvent, QuarantinedMessage

log = logging.getLogger(__name__)

BATCH = 5000


async def forget_old(ctx: InboxContext) -> dict[str, int]:
    """Delete what the retention settings no longer keep; how many rows, by table."""
    settings, now = ctx.settings, utcnow()
    consumed = select(ConsumedEvent.consumer, ConsumedEvent.event_id).where(
        col(ConsumedEvent.consumed_at) < now - timedelta(days=settings.consumed_events_keep_days))
    removed = {"consumed_events": await _in_batches(
        ctx.db, delete(ConsumedEvent).where(
            tuple_(col(ConsumedEvent.consumer), col(ConsumedEvent.event_id)).in_(
                consumed.limit(BATCH))))}
    if settings.quarantine_keep_days:
        cutoff: datetime = now - timedelta(days=settings.quarantine_keep_days)
        removed["quarantined_messages"] = await _in_batches(
            ctx.db, delete(QuarantinedMessage).where(col(QuarantinedMessage.id).in_(
                select(QuarantinedMessage.id).where(
                    col(QuarantinedMessage.created_at) < cutoff).limit(BATCH))))
    if any(removed.values()):
        log.info("housekeeping forgot %s", ", ".join(
            f"{count} {table}" for table, count in removed.items() if count))
    return removed


async def _in_batches(db: Database, statement: Any) -> int:
    """Run a DELETE of at most BATCH rows until it deletes fewer; the rows deleted."""
    total = 0
    while True:
        async with db.write() as session:
            count = int((await session.exec(statement)).rowcount)
        total += count
        if count < BATCH:
            return total
