"""The outbox relay: publishes what inbox actions committed to the outbox (inbox/outbox.py).

One relay at a time in the whole deployment (the holder of the bus lease `outbox-relay`;
every worker process runs one that stands by), so rows go out in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import delete, select
from sqlmodel import col

from hub.bus import LeaseLost
from hub.faults import crash_point
from hub.metrics import OUTBOX_RELAYED
from inbox.context import InboxContext
from inbox.db import execute
from inbox.models import OutboxEntry

log = logging.getLogger("switchboard.outbox")

LEASE = "outbox-relay"
NOTIFY_CHANNEL = "switchboard_outbox"
BATCH = 500
BATCH_BYTES = 4_000_000
LEASE_TTL_MS = 5000
POLL_S = 1.0


class Relay:
    """The outbox relay of one process: publishes while it holds the lease, else stands by."""

    def __init__(self, ctx: InboxContext, *, owner: str, lease_ttl_ms: int = LEASE_TTL_MS,
                 batch: int = BATCH) -> None:
        self.ctx = ctx
        self.owner = owner
        self.lease_ttl_ms = lease_ttl_ms
        self.batch = batch
        self._wake = asyncio.Event()
        self.leading = asyncio.Event()  # set while this process is the relay (tests wait on it)
        self.relayed = 0
        # PostgreSQL: the listening connection also reads and deletes the rows, in autocommit
        # (one round trip each, no session machinery: the relay keeps up with any load).
        self._pg: Any = None

    def wake(self) -> None:
        """Something was committed to the outbox: look now."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set, taking over whenever the lease is free."""
        unhook = self.ctx.db.on_outbox_commit(self.wake)
        listener = asyncio.create_task(self._listen(), name="outbox-listen")
        try:
            while not stop.is_set():
                try:
                    if await self.ctx.bus.acquire_lease(LEASE, self.owner, self.lease_ttl_ms):
                        await self._lead(stop)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("the outbox relay failed; retrying", exc_info=True)
                finally:
                    self.leading.clear()
                await self._pause(stop, self.lease_ttl_ms / 2000)
        finally:
            unhook()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            with contextlib.suppress(Exception):
                await self.ctx.bus.release_lease(LEASE, self.owner)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _lead(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        renew_every = self.lease_ttl_ms / 3000
        renewed = loop.time()
        await self._settle_last_batch()
        self.leading.set()
        while not stop.is_set():
            if loop.time() - renewed >= renew_every:
                if not await self.ctx.bus.renew_lease(LEASE, self.owner, self.lease_ttl_ms):
                    log.warning("lost the outbox relay lease")
                    return
                renewed = loop.time()
            self._wake.clear()
            try:
                moved = await self._relay_once()
            except LeaseLost:
                log.warning("lost the outbox relay lease while publishing")
                return
            if moved < self.batch:
                await self._idle(stop, min(POLL_S, renew_every))

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait for a wake-up, the stop, or `seconds`."""
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _settle_last_batch(self) -> None:
        """Delete the rows of the batch the previous relay published but did not delete."""
        marker = await self.ctx.bus.last_relayed()
        ids = [int(i) for i in marker.split(",") if i.isdigit()]
        if ids:
            await self._delete(ids)

    async def _oldest(self) -> list[tuple[int, str, bytes]]:
        if self._pg is not None and not self._pg.is_closed():
            return [tuple(r) for r in await self._pg.fetch(
                "SELECT id, stream, payload FROM outbox ORDER BY id LIMIT $1", self.batch)]
        async with self.ctx.db.read() as session:
            return list((await execute(session,
                select(col(OutboxEntry.id), col(OutboxEntry.stream), col(OutboxEntry.payload))
                .order_by(col(OutboxEntry.id)).limit(self.batch)
            )).all())

    async def _delete(self, ids: list[int]) -> None:
        if self._pg is not None and not self._pg.is_closed():
            await self._pg.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
            return
        async with self.ctx.db.write() as session:
            await execute(session, delete(OutboxEntry).where(col(OutboxEntry.id).in_(ids)))

    async def _relay_once(self) -> int:
        """Publish the oldest rows and delete them; how many."""
        rows = await self._oldest()
        if not rows:
            return 0
        size = 0
        items: list[tuple[str, bytes]] = []
        ids: list[int] = []
        for row_id, stream, payload in rows:
            size += len(payload)
            if items and size > BATCH_BYTES:
                break
            items.append((stream, bytes(payload)))
            ids.append(row_id)
        crash_point(self.ctx.settings, "relay-before-publish")
        await self.ctx.bus.relay(items, marker=",".join(map(str, ids)), lease=LEASE,
                                 owner=self.owner, maxlen=self.ctx.settings.stream_maxlen)
        crash_point(self.ctx.settings, "relay-after-publish")
        await self._delete(ids)
        self.relayed += len(ids)
        OUTBOX_RELAYED.inc(len(ids))
        return len(ids)

    async def _listen(self) -> None:
        """Wake on PostgreSQL's NOTIFY from other processes' commits (reconnecting)."""
        dsn = self.ctx.db.asyncpg_dsn
        if dsn is None:
            return  # SQLite: one process, the commit hook is enough
        import asyncpg  # type: ignore[import-untyped]

        # It runs until `run` cancels it, after the leader's loop has ended: closing the
        # connection on `stop` could cut the leader's last DELETE in half.
        delay = 0.5
        while True:
            connection = None
            try:
                connection = await asyncpg.connect(dsn, timeout=10)
                closed = asyncio.Event()
                connection.add_termination_listener(lambda *_, done=closed: done.set())
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake())
                self._pg = connection
                delay = 0.5
                self.wake()  # anything committed while we were not listening
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("outbox listener reconnecting: %s", exc)
            finally:
                self._pg = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
