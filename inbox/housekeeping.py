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

Files in a directory or a bucket that no attachment row points at (a process stopped
between writing a file and committing its row) are found and removed by
`sweep_files`, which `switchboard attachments sweep` runs when an admin asks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, tuple_
from sqlmodel import col, select

from hub.types import utcnow
from inbox.blobs import BlobStore, Listed
from inbox.context import InboxContext
from inbox.db import Database
from inbox.models import Attachment, ConsumedEvent, QuarantinedMessage

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


# A file's row is committed within seconds of the file, or never (a retry stores the file
# again under a new key): anything younger may still be about to get its row.
SWEEP_AFTER_MIN = timedelta(hours=1)


@dataclass
class Sweep:
    """What a sweep of one store found: files looked at, and those no row points at."""

    looked_at: int = 0
    unreferenced: int = 0
    unreferenced_bytes: int = 0
    deleted: int = 0


async def sweep_files(db: Database, store: BlobStore, *, older_than: timedelta,
                      delete: bool) -> Sweep:
    """Find (and with `delete`, remove) the files of `store` older than `older_than` that no
    attachment row points at, a page of the store's listing at a time."""
    if older_than < SWEEP_AFTER_MIN:
        raise ValueError(f"older_than: at least {SWEEP_AFTER_MIN} (a file's row may still "
                         "be on its way)")
    found = Sweep()
    async for page in store.listing(utcnow() - older_than):
        found.looked_at += len(page)
        gone = await _unreferenced(db, page)
        found.unreferenced += len(gone)
        found.unreferenced_bytes += sum(listed.size for listed in gone)
        if delete and gone:
            await store.delete([listed.key for listed in gone])
            found.deleted += len(gone)
    if found.deleted:
        log.info("attachment sweep removed %d unreferenced files (%d bytes) from the %s store",
                 found.deleted, found.unreferenced_bytes, store.kind)
    return found


async def _unreferenced(db: Database, page: list[Listed]) -> list[Listed]:
    """The files of a page whose attachment id has no row (a temporary file never has)."""
    named = [(listed.key.rsplit("/", 1)[-1], listed) for listed in page]
    async with db.read() as session:
        kept = set(await session.exec(
            select(Attachment.id).where(col(Attachment.id).in_({name for name, _ in named}))))
    return [listed for name, listed in named if name not in kept]
