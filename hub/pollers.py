"""Assembly: run the pollers of pulled channels (IMAP, long polling), one task per inbox.

Each inbox whose channel implements `Polls` gets one supervised task: it holds a lease on the
bus so that among many worker processes exactly one polls a given inbox, restarts the
channel's `run` with backoff when it dies, and stops when the inbox goes away or its
settings change (a new task then starts with the new settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import col, select

from channels.base import ChannelAdapter, Polls
from hub.batching import Coalescer
from hub.bus import INBOUND
from hub.secrets import SecretsUnreadable
from hub.types import ChannelItem, encode
from inbox.attachments import attachment_store
from inbox.channel_state import InboxChannelState
from inbox.context import InboxContext
from inbox.models import Inbox

log = logging.getLogger("switchboard.pollers")

RESCAN_S = 5.0
LEASE_TTL_MS = 15_000
STOP_WAIT_S = 1.0  # how long a cancelled poller gets before it is cancelled again
MAX_BACKOFF_S = 60.0


class Pollers:
    """The poller tasks of one worker process."""

    def __init__(
        self,
        ctx: InboxContext,
        channels: Mapping[str, ChannelAdapter],
        *,
        owner: str,
        rescan_s: float = RESCAN_S,
        lease_ttl_ms: int = LEASE_TTL_MS,
    ) -> None:
        self.ctx = ctx
        self.owner = owner
        self.rescan_s = rescan_s
        self.lease_ttl_ms = lease_ttl_ms
        self.polling = {kind: a for kind, a in channels.items() if isinstance(a, Polls)}
        self.tasks: dict[int, tuple[dict[str, Any], asyncio.Task[None]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one supervised task per polled inbox until `stop` is set."""
        if not self.polling:
            return
        try:
            while not stop.is_set():
                try:
                    await self._scan()
                except Exception:
                    log.exception("scanning the polled inboxes failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rescan_s)
        finally:
            await self._stop_all()

    async def _scan(self) -> None:
        async with self.ctx.db.read() as session:
            rows = await session.exec(
                select(Inbox).where(col(Inbox.channel).in_(sorted(self.polling)),
                                    col(Inbox.disconnected_at).is_(None))
            )
            wanted: dict[int, tuple[str, dict[str, Any]]] = {}
            for row in rows:
                if row.id is None:
                    continue
                try:
                    wanted[row.id] = (row.channel, self.ctx.secrets.open_settings(row.settings))
                except SecretsUnreadable as exc:
                    log.error("inbox %s is not polled: %s", row.id, exc)
        for inbox_id, (settings, task) in list(self.tasks.items()):
            if inbox_id not in wanted or wanted[inbox_id][1] != settings or task.done():
                await self._stop(inbox_id)
        for inbox_id, (channel, settings) in wanted.items():
            if inbox_id not in self.tasks:
                task = asyncio.create_task(self._supervise(inbox_id, channel, settings),
                                           name=f"poller-{inbox_id}")
                self.tasks[inbox_id] = (settings, task)

    async def _stop(self, inbox_id: int) -> None:
        _, task = self.tasks.pop(inbox_id)
        # Cancel until it is done: a cancellation that lands inside a client library's
        # command can be taken for a dropped connection and retried, and the poller would
        # then run on (holding its lease) while we wait for it forever.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
        with contextlib.suppress(BaseException):
            task.result()

    async def _stop_all(self) -> None:
        for inbox_id in list(self.tasks):
            await self._stop(inbox_id)

    async def _supervise(self, inbox_id: int, channel: str, settings: dict[str, Any]) -> None:
        """Hold the inbox's lease and keep its poller running while we hold it."""
        lease = f"poller:{inbox_id}"
        delay = 1.0
        while True:
            try:
                if not await self.ctx.bus.acquire_lease(lease, self.owner, self.lease_ttl_ms):
                    # Another worker polls this inbox; try again after its lease would lapse.
                    await asyncio.sleep(self.lease_ttl_ms / 2000)
                    continue
                await self._poll_while_leased(lease, inbox_id, channel, settings)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self.ctx.bus.release_lease(lease, self.owner)
                raise
            except Exception:
                log.exception("poller of inbox %s died; restarting in %.0fs", inbox_id, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _poll_while_leased(
        self, lease: str, inbox_id: int, channel: str, settings: dict[str, Any]
    ) -> None:
        adapter = self.polling[channel]
        store = attachment_store(self.ctx.db, self.ctx.blobs, inbox_id=inbox_id,
                                 max_bytes=self.ctx.settings.attachment_max_bytes)
        state = InboxChannelState(self.ctx.db, inbox_id=inbox_id)

        async def add(items: Sequence[ChannelItem]) -> list[str]:
            return await self.ctx.bus.add_many(INBOUND, [encode(item) for item in items])

        # What a poller emits at once (a fetched batch) goes on the bus in one round trip.
        adding: Coalescer[ChannelItem, str] = Coalescer(
            add, max_batch=500)

        async def emit(item: ChannelItem) -> None:
            await adding.submit(item)

        poller = asyncio.create_task(adapter.run(inbox_id, settings, emit, store, state))
        try:
            while not poller.done():
                done, _ = await asyncio.wait({poller}, timeout=self.lease_ttl_ms / 3000)
                if done:
                    break
                if not await self.ctx.bus.renew_lease(lease, self.owner, self.lease_ttl_ms):
                    log.warning("lost the lease of inbox %s: stopping its poller", inbox_id)
                    break
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        failure = None if poller.cancelled() else poller.exception()
        if failure is not None:
            raise failure
