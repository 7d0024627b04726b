"""Run a handler over a stream as one consumer of a group: at least once, with dead letters.

Entries are read in batches and handed to the handler a batch at a time (or one at a time,
each on its own, for slow work such as sends). What the handler completes is acknowledged;
what fails stays pending and comes back through the claim pass after `claim_idle_ms`.

Outages are not poison. A handler that cannot reach what it needs (the database, the bus)
raises `Outage`: the entries stay with this consumer (their idle time is reset so nobody
claims them, which would count a delivery), nothing more is read, and the same entries are
tried again with backoff once everything answers. Only an entry that failed while
everything was reachable, on its `max_deliveries`-th delivery, goes to the dead letters
(or one delivered far more often than that without ever finishing: it kills its consumer).

Maintenance: a claim pass every claim_idle_ms / 4 takes entries other consumers left
unacknowledged (first, even while a backlog is being read); the stream is trimmed; consumers
idle for long and holding nothing are deleted from the group; the dead letters are counted
(a metric, and an alert line in the log while there are any).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hub.bus import Bus, Entry, dead_letter_stream
from hub.metrics import DEAD_LETTERS, OUTAGE_RETRIES

logger = logging.getLogger("switchboard.consumer")

Handler = Callable[[Entry], Awaitable[None]]
# Handles a batch: per entry None (done) or the exception it failed with; raises Outage.
BatchHandler = Callable[[Sequence[Entry]], Awaitable[Sequence[BaseException | None]]]
Check = Callable[[], Awaitable[bool]]
T = TypeVar("T")
V = TypeVar("V")

# Ids this consumer finished lately: a claim pass racing with a just-finished handler
# must not run the entry again. Bounded, like the last errors kept for dead letters.
RECENT_IDS = 10_000
TRIM_EVERY_ACKS = 1000
TRIM_EVERY_S = 5.0
MAX_BACKOFF_S = 5.0
CHECK_EVERY_S = 30.0
# An entry delivered this many times max_deliveries without a recorded failure keeps
# killing its consumer: it goes to the dead letters all the same.
HARD_CAP_FACTOR = 4
# Unreachable-looking failures while every check passes: after this many in a row, they
# count as ordinary failures (a misreported error must not loop for ever).
MAX_FALSE_OUTAGES = 10
MAX_CLAIM_BATCHES = 100


class Outage(Exception):
    """The handler could not reach the database or the bus: retry later, count nothing."""


@dataclass
class ConsumerStats:
    """Counters of one run_consumer call, for metrics and tests."""

    handled: int = 0
    failed: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    trimmed: int = 0
    outages: int = 0
    deleted_consumers: int = 0


async def run_consumer(
    bus: Bus,
    stream: str,
    group: str,
    consumer: str,
    handler: Handler,
    *,
    concurrency: int = 8,
    batch: int = 100,
    **options: object,
) -> None:
    """Handle each entry on its own, `concurrency` at once, until `stop` is set."""
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(entries: Sequence[Entry]) -> list[BaseException | None]:
        async with slots:
            try:
                await handler(entries[0])
            except Outage:
                raise
            except Exception as exc:
                return [exc]
            return [None]

    await run_batch_consumer(bus, stream, group, consumer, one, batch=batch,
                             one_by_one=True, **options)  # type: ignore[arg-type]


async def run_batch_consumer(
    bus: Bus,
    stream: str,
    group: str,
    consumer: str,
    handler: BatchHandler,
    *,
    batch: int = 100,
    in_flight: int | None = None,
    batches: int | None = None,
    one_by_one: bool = False,
    max_deliveries: int = 5,
    claim_idle_ms: int = 15000,
    trim_maxlen: int = 100_000,
    stop: asyncio.Event | None = None,
    block_ms: int = 1000,
    stats: ConsumerStats | None = None,
    healthy: Check | None = None,
    idle_consumer_ms: int = 3_600_000,
) -> None:
    """Handle the stream's entries a batch at a time until `stop` is set.

    `in_flight` bounds the entries being handled at once (default two batches), `batches`
    the batches read from the stream being handled at once (default: no bound; 1 lets
    entries pile up while a batch runs, so batches grow with the load); `healthy` tells
    whether everything the handler needs answers (checked before retrying after an Outage).
    """
    runner = _Runner(
        bus, stream, group, consumer, handler,
        batch=max(1, batch), in_flight=in_flight or 2 * max(1, batch), one_by_one=one_by_one,
        batches=batches,
        max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms, trim_maxlen=trim_maxlen,
        stop=stop or asyncio.Event(), block_ms=block_ms, stats=stats or ConsumerStats(),
        healthy=healthy, idle_consumer_ms=idle_consumer_ms,
    )
    await runner.run()


class _Runner:
    def __init__(
        self, bus: Bus, stream: str, group: str, consumer: str, handler: BatchHandler, *,
        batch: int, in_flight: int, one_by_one: bool, batches: int | None, max_deliveries: int,
        claim_idle_ms: int, trim_maxlen: int, stop: asyncio.Event, block_ms: int,
        stats: ConsumerStats, healthy: Check | None, idle_consumer_ms: int,
    ) -> None:
        self.bus, self.stream, self.group, self.consumer = bus, stream, group, consumer
        self.handler = handler
        self.batch, self.max_in_flight, self.one_by_one = batch, in_flight, one_by_one
        self.max_batches = batches
        self.reading: set[asyncio.Task[None]] = set()  # the tasks of batches read (not claimed)
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.trim_maxlen = trim_maxlen
        self.stop = stop
        self.block_ms = block_ms
        self.stats = stats
        self.healthy = healthy
        self.idle_consumer_ms = idle_consumer_ms
        self.entries: set[str] = set()  # ids being handled now
        self.tasks: set[asyncio.Task[None]] = set()
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.errors: OrderedDict[str, str] = OrderedDict()
        self.acks_since_trim = 0
        self.clear = asyncio.Event()  # set while no outage is going on
        self.clear.set()
        self.room = asyncio.Event()
        self.room.set()
        self.dead_seen = 0

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
            tasks = [maintenance, *self.tasks]
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
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _drain_own_pending(self) -> None:
        """Restart path: finish what this consumer took before it stopped, oldest first."""
        while not self.stop.is_set():
            entries = await self._retry(
                lambda: self.bus.read_pending(self.stream, self.group, self.consumer, self.batch)
            )
            if not entries:
                return
            await self._dispose(entries)
            await self._settle()
            # A failure stays at the head of our pending list, so reading again would
            # return it again; the claim pass retries it once it is idle long enough.
            if any(entry.id not in self.recent for entry in entries):
                return

    async def _read_loop(self) -> None:
        delay = 0.1
        while not self.stop.is_set():
            room = self.max_in_flight - len(self.entries)
            busy = self.max_batches is not None and len(self.reading) >= self.max_batches
            if room <= 0 or busy or not self.clear.is_set():
                # Back-pressure, or an outage: wait until handlers finish or it is over.
                self.room.clear()
                waiter = asyncio.ensure_future(self.room.wait())
                stopper = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=0.5,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            try:
                entries = await self.bus.read_group(
                    self.stream, self.group, self.consumer, min(self.batch, room), self.block_ms)
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
            self.reading.update(await self._dispose(entries))

    async def _maintain(self) -> None:
        """Claim stale entries at once and then every claim_idle_ms/4 (so a dead consumer's
        entries wait at most 1.25 x claim_idle_ms), trim every few seconds, and check the
        consumers and dead letters every CHECK_EVERY_S."""
        claim_every = max(0.05, self.claim_idle_ms / 4000)
        loop = asyncio.get_running_loop()
        next_claim = loop.time()
        last_trim = loop.time()
        next_check = loop.time()
        while not await self._sleep(min(claim_every, 1.0)):
            now = loop.time()
            try:
                if now >= next_claim and self.clear.is_set():
                    next_claim = now + claim_every
                    await self._claim()
                if self.acks_since_trim >= TRIM_EVERY_ACKS or now - last_trim >= TRIM_EVERY_S:
                    last_trim, self.acks_since_trim = now, 0
                    self.stats.trimmed += await self.bus.trim(self.stream, self.trim_maxlen)
                if now >= next_check:
                    next_check = now + CHECK_EVERY_S
                    await self._check_group()
            except Exception:
                logger.exception("maintenance of %s/%s failed", self.stream, self.group)

    async def _claim(self) -> None:
        """Take over everything other consumers left stale: always, even while a backlog is
        read, so a dead consumer's entries never wait behind it (a batch at a time; what a
        dead consumer held is bounded by its own in-flight limit)."""
        for _ in range(MAX_CLAIM_BATCHES):
            entries = await self.bus.claim_stale(
                self.stream, self.group, self.consumer, self.claim_idle_ms, self.batch
            )
            fresh = [e for e in entries if e.id not in self.entries]
            self.stats.claimed += len(fresh)
            await self._dispose(entries)
            if len(entries) < self.batch:
                return

    async def _check_group(self) -> None:
        """Forget consumers idle for long that hold nothing; count the dead letters."""
        for info in await self.bus.consumers(self.stream, self.group):
            if info.name != self.consumer and info.pending == 0 \
                    and info.idle_ms >= self.idle_consumer_ms:
                if await self.bus.delete_consumer(self.stream, self.group, info.name):
                    self.stats.deleted_consumers += 1
                    logger.info("deleted idle consumer %s of %s/%s", info.name, self.stream,
                                self.group)
        dead = await self.bus.length(dead_letter_stream(self.stream))
        DEAD_LETTERS.labels(self.stream).set(dead)
        if dead and dead != self.dead_seen:
            logger.error("ALERT: %d entries in the dead letters of %s; see `switchboard "
                         "dead-letters list %s`", dead, self.stream, self.stream)
        self.dead_seen = dead

    async def _dispose(self, entries: Sequence[Entry]) -> list[asyncio.Task[None]]:
        """Start handlers for the entries, or settle those that need none; the tasks."""
        todo: list[Entry] = []
        for entry in entries:
            if entry.id in self.entries:
                continue  # our own slow handler, claimed back to us: it is still running
            try:
                if entry.id in self.recent:
                    await self.bus.ack(self.stream, self.group, [entry.id])
                    continue
                if entry.deliveries > self.max_deliveries * HARD_CAP_FACTOR:
                    await self._dead_letter(entry)
                    continue
            except Exception:
                # Still pending: the next claim pass brings it back.
                logger.exception("settling %s of %s/%s failed", entry.id, self.stream,
                                 self.group)
                continue
            todo.append(entry)
        started: list[asyncio.Task[None]] = []
        for group in ([[e] for e in todo] if self.one_by_one else [todo] if todo else []):
            self.entries.update(e.id for e in group)
            task = asyncio.create_task(self._handle(group))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            task.add_done_callback(self.reading.discard)
            started.append(task)
        return started

    async def _dead_letter(self, entry: Entry) -> None:
        last_error = self.errors.pop(entry.id, None)
        reason = f"failed {entry.deliveries} deliveries"
        if last_error:
            reason = f"{reason}; last error: {last_error}"
        await self.bus.dead_letter(self.stream, self.group, entry, reason)
        _remember(self.recent, entry.id, None)
        self.stats.dead_lettered += 1
        logger.error("ALERT: entry %s of %s/%s dead-lettered after %d deliveries",
                     entry.id, self.stream, self.group, entry.deliveries)

    async def _outcomes(self, entries: Sequence[Entry]) -> Sequence[BaseException | None]:
        """The handler's outcomes, retried through outages (which count no delivery)."""
        delay, false_alarms = 0.2, 0
        while True:
            try:
                outcomes = await self.handler(entries)
                self.clear.set()
                return outcomes
            except Outage as exc:
                if self.healthy is not None and await self._healthy():
                    false_alarms += 1
                    if false_alarms >= MAX_FALSE_OUTAGES:
                        self.clear.set()
                        return [exc] * len(entries)
                self.stats.outages += 1
                OUTAGE_RETRIES.labels(self.stream).inc(len(entries))
                if self.clear.is_set():
                    logger.warning("%s/%s: %s; holding %d entries until it answers again",
                                   self.stream, self.group, exc, len(entries))
                self.clear.clear()
            except Exception as exc:
                self.clear.set()
                return [exc] * len(entries)
            await self._hold(entries, delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _healthy(self) -> bool:
        assert self.healthy is not None
        try:
            return await self.healthy()
        except Exception:
            return False

    async def _hold(self, entries: Sequence[Entry], delay: float) -> None:
        """Wait `delay`, then until the checks pass, keeping the entries ours all along:
        touched well within claim_idle_ms, so no other consumer claims them (a claim would
        count a delivery)."""
        ids = [e.id for e in entries]
        step = max(0.02, min(1.0, self.claim_idle_ms / 3000))
        loop = asyncio.get_running_loop()
        waited_until = loop.time() + delay
        next_check = waited_until
        while True:
            with contextlib.suppress(Exception):
                await self.bus.touch(self.stream, self.group, self.consumer, ids)
            now = loop.time()
            if now >= next_check:
                if self.healthy is None or await self._healthy():
                    return
                next_check = loop.time() + min(MAX_BACKOFF_S, max(delay, 0.5))
            await asyncio.sleep(min(step, max(0.0, next_check - now)) or step)

    async def _handle(self, entries: Sequence[Entry]) -> None:
        try:
            outcomes = await self._outcomes(entries)
            if len(outcomes) != len(entries):
                outcomes = [RuntimeError("handler gave a wrong number of outcomes")] * len(
                    entries)
            done: list[str] = []
            for entry, outcome in zip(entries, outcomes, strict=True):
                if outcome is None:
                    done.append(entry.id)
                    _remember(self.recent, entry.id, None)
                    self.errors.pop(entry.id, None)
                    continue
                await self._failed(entry, outcome)
            if done:
                try:
                    await self.bus.ack(self.stream, self.group, done)
                except Exception:
                    # Still pending: a claim pass finds them in `recent` and acks them then.
                    logger.exception("ack on %s/%s failed", self.stream, self.group)
                    return
                self.stats.handled += len(done)
                self.acks_since_trim += len(done)
        finally:
            self.entries.difference_update(e.id for e in entries)
            self.room.set()

    async def _failed(self, entry: Entry, error: BaseException) -> None:
        self.stats.failed += 1
        _remember(self.errors, entry.id, f"{type(error).__name__}: {error}"[:500])
        # The id only, never the payload: it holds customer messages.
        logger.warning("handler failed on entry %s of %s/%s (delivery %d)", entry.id,
                       self.stream, self.group, entry.deliveries, exc_info=error)
        if entry.deliveries >= self.max_deliveries:
            try:
                await self._dead_letter(entry)
            except Exception:
                logger.exception("dead-lettering %s of %s/%s failed", entry.id, self.stream,
                                 self.group)


def _remember(store: OrderedDict[str, V], key: str, value: V) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > RECENT_IDS:
        store.popitem(last=False)
