"""Run a handler over a stream as one consumer of a group: at least once, with dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from hub.bus import Bus, Entry

logger = logging.getLogger("switchboard.consumer")

Handler = Callable[[Entry], Awaitable[None]]
T = TypeVar("T")
V = TypeVar("V")

# Ids this consumer finished lately: a claim pass racing with a just-finished handler
# must not run the entry again. Bounded, like the last errors kept for dead letters.
RECENT_IDS = 10_000
TRIM_EVERY_ACKS = 1000
TRIM_EVERY_S = 5.0
MAX_BACKOFF_S = 5.0


@dataclass
class ConsumerStats:
    """Counters of one run_consumer call, for metrics and tests."""

    handled: int = 0
    failed: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    trimmed: int = 0


async def run_consumer(
    bus: Bus,
    stream: str,
    group: str,
    consumer: str,
    handler: Handler,
    *,
    concurrency: int = 8,
    max_deliveries: int = 5,
    claim_idle_ms: int = 15000,
    trim_maxlen: int = 100_000,
    stop: asyncio.Event | None = None,
    batch: int = 100,
    block_ms: int = 1000,
    stats: ConsumerStats | None = None,
) -> None:
    """Handle the stream's entries until `stop` is set; acks what the handler completes."""
    runner = _Runner(
        bus,
        stream,
        group,
        consumer,
        handler,
        concurrency=concurrency,
        max_deliveries=max_deliveries,
        claim_idle_ms=claim_idle_ms,
        trim_maxlen=trim_maxlen,
        stop=stop or asyncio.Event(),
        batch=batch,
        block_ms=block_ms,
        stats=stats or ConsumerStats(),
    )
    await runner.run()


class _Runner:
    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        concurrency: int,
        max_deliveries: int,
        claim_idle_ms: int,
        trim_maxlen: int,
        stop: asyncio.Event,
        batch: int,
        block_ms: int,
        stats: ConsumerStats,
    ) -> None:
        self.bus, self.stream, self.group, self.consumer = bus, stream, group, consumer
        self.handler = handler
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.trim_maxlen = trim_maxlen
        self.stop = stop
        self.batch = max(1, batch)
        self.block_ms = block_ms
        self.stats = stats
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.errors: OrderedDict[str, str] = OrderedDict()
        self.acks_since_trim = 0

    async def run(self) -> None:
        await self._retry(lambda: self.bus.ensure_group(self.stream, self.group))
        maintenance = asyncio.create_task(self._maintain())
        try:
            await self._drain_own_pending()
            await self._read_loop()
            await maintenance
            await self._settle()
        except BaseException:
            # Cancelled (or a bug): stop every task we own; unfinished entries stay pending.
            tasks = [maintenance, *self.in_flight.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T | None:
        """Run a bus call until it succeeds (a Redis blip is no crash); None when stopped."""
        delay = 0.1
        while True:
            try:
                return await op()
            except Exception:
                logger.exception("bus call failed on %s/%s; retrying", self.stream, self.group)
            if await self._sleep(delay):
                return None
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped first; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    async def _settle(self) -> None:
        """Wait for every handler started so far."""
        while self.in_flight:
            await asyncio.gather(*self.in_flight.values(), return_exceptions=True)

    async def _drain_own_pending(self) -> None:
        """Restart path: finish what this consumer took before it stopped, oldest first."""
        while not self.stop.is_set():
            entries = await self._retry(
                lambda: self.bus.read_pending(self.stream, self.group, self.consumer, self.batch)
            )
            if not entries:
                return
            for entry in entries:
                await self._dispose(entry)
            await self._settle()
            # A failure stays at the head of our pending list, so reading again would
            # return it again; the claim pass retries it once it is idle long enough.
            if any(entry.id not in self.recent for entry in entries):
                return

    async def _read_loop(self) -> None:
        delay = 0.1
        while not self.stop.is_set():
            if len(self.in_flight) >= self.batch:
                # Back-pressure: read no more than one batch ahead of the handlers.
                await asyncio.wait(
                    list(self.in_flight.values()),
                    timeout=0.5,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                continue
            try:
                entries = await self.bus.read_group(
                    self.stream,
                    self.group,
                    self.consumer,
                    self.batch - len(self.in_flight),
                    self.block_ms,
                )
            except Exception:
                logger.exception("reading %s/%s failed; retrying", self.stream, self.group)
                if await self._sleep(delay):
                    return
                delay = min(delay * 2, MAX_BACKOFF_S)
                # The group may have vanished with its stream (a flushed Redis).
                with contextlib.suppress(Exception):
                    await self.bus.ensure_group(self.stream, self.group)
                continue
            delay = 0.1
            for entry in entries:
                await self._dispose(entry)

    async def _maintain(self) -> None:
        """Claim stale entries every claim_idle_ms/2 and trim every few seconds."""
        claim_every = max(0.05, self.claim_idle_ms / 2000)
        loop = asyncio.get_running_loop()
        next_claim = loop.time() + claim_every
        last_trim = loop.time()
        while not await self._sleep(min(claim_every, 1.0)):
            now = loop.time()
            try:
                if now >= next_claim:
                    next_claim = now + claim_every
                    await self._claim()
                if self.acks_since_trim >= TRIM_EVERY_ACKS or now - last_trim >= TRIM_EVERY_S:
                    last_trim, self.acks_since_trim = now, 0
                    self.stats.trimmed += await self.bus.trim(self.stream, self.trim_maxlen)
            except Exception:
                logger.exception("maintenance of %s/%s failed", self.stream, self.group)

    async def _claim(self) -> None:
        room = self.batch - len(self.in_flight)
        if room <= 0:
            return
        entries = await self.bus.claim_stale(
            self.stream, self.group, self.consumer, self.claim_idle_ms, room
        )
        for entry in entries:
            if entry.id not in self.in_flight:
                self.stats.claimed += 1
            await self._dispose(entry)

    async def _dispose(self, entry: Entry) -> None:
        """Start a handler for the entry, or settle it when it needs none."""
        if entry.id in self.in_flight:
            return  # our own slow handler, claimed back to us: it is still running
        try:
            if entry.id in self.recent:
                await self.bus.ack(self.stream, self.group, [entry.id])
                return
            if entry.deliveries > self.max_deliveries:
                await self._dead_letter(entry)
                return
        except Exception:
            # Still pending: the next claim pass brings it back.
            logger.exception("settling %s of %s/%s failed", entry.id, self.stream, self.group)
            return
        self.in_flight[entry.id] = asyncio.create_task(self._handle(entry))

    async def _dead_letter(self, entry: Entry) -> None:
        last_error = self.errors.pop(entry.id, None)
        reason = f"too many deliveries ({entry.deliveries})"
        if last_error:
            reason = f"{reason}; last error: {last_error}"
        await self.bus.dead_letter(self.stream, self.group, entry, reason)
        _remember(self.recent, entry.id, None)
        self.stats.dead_lettered += 1
        logger.warning(
            "entry %s of %s/%s dead-lettered after %d deliveries",
            entry.id,
            self.stream,
            self.group,
            entry.deliveries,
        )

    async def _handle(self, entry: Entry) -> None:
        try:
            async with self.slots:
                try:
                    await self.handler(entry)
                except Exception as exc:
                    self.stats.failed += 1
                    _remember(self.errors, entry.id, f"{type(exc).__name__}: {exc}"[:500])
                    # The id only, never the payload: it holds customer messages.
                    logger.warning(
                        "handler failed on entry %s of %s/%s (delivery %d)",
                        entry.id,
                        self.stream,
                        self.group,
                        entry.deliveries,
                        exc_info=exc,
                    )
                    return
                _remember(self.recent, entry.id, None)
                self.errors.pop(entry.id, None)
                try:
                    await self.bus.ack(self.stream, self.group, [entry.id])
                except Exception:
                    # Still pending: a claim pass finds it in `recent` and acks it then.
                    logger.exception("ack of %s on %s/%s failed", entry.id, self.stream, self.group)
                    return
                self.stats.handled += 1
                self.acks_since_trim += 1
        finally:
            self.in_flight.pop(entry.id, None)


def _remember(store: OrderedDict[str, V], key: str, value: V) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > RECENT_IDS:
        store.popitem(last=False)
