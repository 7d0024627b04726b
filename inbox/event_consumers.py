"""Durable consumers of the events stream (CRM connectors, outbound webhooks, automation).

Each is a consumer group of its own on the "events" stream: the stream is never trimmed
past an event a group has not acknowledged, so a consumer that was down catches up. Events
come at least once (a consumer that crashed after its work but before its acknowledgement
gets them again); `EventConsumer` makes the effect exactly once by recording each event id
in `consumed_events` in the same transaction as the consumer's own changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import EVENTS, Entry
from hub.consumer import Outage, run_batch_consumer
from hub.events import decode_event
from hub.types import utcnow
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql, is_unavailable
from inbox.models import ConsumedEvent, table_of

log = logging.getLogger(__name__)
T = TypeVar("T")

# Handles one event inside the transaction that records it as consumed.
Handle = Callable[[AsyncSession, Any], Awaitable[None]]


async def first_time(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Record that `consumer` handles this event now; False when it did already."""
    return bool(await first_times(session, consumer=consumer, event_ids=[event_id]))


async def first_times(session: AsyncSession, *, consumer: str,
                      event_ids: Sequence[str]) -> set[str]:
    """Record that `consumer` handles these events now (one statement); the ids it had not
    handled before."""
    if not event_ids:
        return set()
    now = utcnow()
    statement = (conflict_insert(table_of(ConsumedEvent), is_postgresql(session))
                 .values([{"consumer": consumer, "event_id": event_id, "consumed_at": now}
                          for event_id in dict.fromkeys(event_ids)])
                 .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
                 .returning(table_of(ConsumedEvent).c.event_id))
    return {row[0] for row in (await execute(session, statement)).all()}


# What a consumer may skip without a transaction: the event types it handles, and whether
# it has anything to do at all right now (no webhook endpoint, no CRM connection).
Active = Callable[[InboxContext], Awaitable[bool]]
_TYPE = re.compile(rb'"audience":(?:null|\[[0-9,]*\]),"type":"([a-z_.]+)"')


def event_type(payload: bytes) -> str | None:
    """The type of an encoded event, read off its front (None when it is not there)."""
    found = _TYPE.search(payload, 0, 400)
    return found.group(1).decode() if found else None


def kinds_of(entries: Sequence[Entry], wanted: Collection[str]) -> list[str | None] | None:
    """Each entry's event type, read off its front; None when none of them is `wanted`
    (the consumer has nothing to decode in this batch)."""
    kinds = [event_type(entry.payload) for entry in entries]
    return kinds if any(kind in wanted for kind in kinds) else None


@dataclass(frozen=True)
class EventConsumer:
    """A named consumer of every event, each applied once (see the module).

    `types` (when given) are the only event types it handles; `active` is asked once per
    batch read from the stream: False acknowledges the batch without work. It is asked
    after the batch was read, so every event in it was committed before the answer: an
    event that predates the first endpoint or connection is not owed to it.
    """

    name: str
    handle: Handle
    # Events before the group existed are not replayed to a new consumer.
    from_start: bool = False
    types: frozenset[str] | None = None
    active: Active | None = None

    async def run(self, ctx: InboxContext, *, worker: str, stop: asyncio.Event,
                  **options: Any) -> None:
        """Consume until `stop` is set (one group per consumer name, any number of workers)."""
        await ctx.bus.ensure_group(EVENTS, self.name, from_start=self.from_start)

        async def batch(entries: Sequence[Entry]) -> list[BaseException | None]:
            return await self.apply(ctx, entries)

        await run_batch_consumer(ctx.bus, EVENTS, self.name, worker, batch, stop=stop,
                                 batches=1, **options)

    async def apply(self, ctx: InboxContext, entries: Sequence[Entry]
                    ) -> list[BaseException | None]:
        """Apply a batch read from the stream; per entry None (done) or why it failed."""
        outcomes: list[BaseException | None] = [None] * len(entries)
        wanted = [n for n, entry in enumerate(entries) if self._wants(entry.payload)]
        if not wanted:
            return outcomes
        # Nothing to do at all (no endpoint, no connection): acknowledged as they are,
        # unreadable ones too, so the stream is trimmed behind them at once.
        if self.active is not None:
            try:
                if not await self.active(ctx):
                    return outcomes
            except Exception as exc:
                if is_unavailable(exc):
                    raise Outage(str(exc)) from exc
                raise
        for n in wanted:
            outcomes[n] = await self._one(ctx, entries[n])
        return outcomes

    def _wants(self, payload: bytes) -> bool:
        if self.types is None:
            return True
        found = event_type(payload)
        return found is None or found in self.types  # unreadable: decoded (and refused) below

    async def _one(self, ctx: InboxContext, entry: Entry) -> BaseException | None:
        try:
            event = decode_event(entry.payload)
        except ValueError as exc:
            return exc  # an event this version cannot read: dead-lettered in the end
        try:
            async with ctx.db.write() as session:
                if await first_time(session, consumer=self.name, event_id=event.id):
                    await self.handle(session, event)
        except Exception as exc:
            if is_unavailable(exc):
                raise Outage(str(exc)) from exc
            return exc
        return None


async def unless_down(work: Awaitable[T]) -> T:
    """`work`, with the database being down turned into an Outage (the batch waits)."""
    try:
        return await work
    except Exception as exc:
        if is_unavailable(exc):
            raise Outage(str(exc)) from exc
        raise


def decode_wanted(entries: Sequence[Entry], kinds: Sequence[str | None],
                  wanted: Collection[str], outcomes: list[BaseException | None]
                  ) -> list[tuple[int, Any]]:
    """The entries whose type is `wanted`, decoded, with their places in the batch; the
    outcome of one this version cannot read is why (it is dead-lettered in the end)."""
    decoded: list[tuple[int, Any]] = []
    for n, (entry, kind) in enumerate(zip(entries, kinds, strict=True)):
        if kind not in wanted:
            continue
        try:
            decoded.append((n, decode_event(entry.payload)))
        except ValueError as exc:
            outcomes[n] = exc
    return decoded


async def each_event(entries: Sequence[Entry], kinds: Sequence[str | None],
                     wanted: Collection[str], handle: Callable[[Any], Awaitable[None]], *,
                     what: str,
                     prepare: Callable[[list[Any]], Awaitable[None]] | None = None,
                     ) -> list[BaseException | None]:
    """Decode and handle the entries whose type is `wanted`; per entry None (done or not
    wanted) or why it failed (the database being down stops the batch: Outage).
    `prepare` sees every decoded event first (to read what they need in one go)."""
    outcomes: list[BaseException | None] = [None] * len(entries)
    decoded = decode_wanted(entries, kinds, wanted, outcomes)
    if prepare is not None and decoded:
        await unless_down(prepare([event for _, event in decoded]))
    for n, event in decoded:
        try:
            await unless_down(handle(event))
        except Outage:
            raise
        except Exception as exc:
            log.exception("%s failed on event %s", what, getattr(event, "id", "?"))
            outcomes[n] = exc
    return outcomes


class Applier(Protocol):
    """What a SharedReader offers each batch to (an EventConsumer, the automation rules)."""

    async def apply(self, ctx: InboxContext, entries: Sequence[Entry]
                    ) -> list[BaseException | None]: ...


@dataclass(frozen=True)
class SharedReader:
    """Several consumers behind one consumer group: each event is read off the stream once
    and offered to each, which still applies it once under its own name. An entry one of
    them failed comes back to all; the others recognise it and skip it."""

    name: str
    consumers: tuple[Applier, ...]
    # Each batch is held this long before the next is read, so under load the events pile
    # up into few large batches: the per-batch work (a read, an acknowledgement, each
    # consumer's `active` check) stays a handful per second instead of growing with the
    # message rate. What these consumers do may wait that long.
    linger_s: float = 0.2

    async def run(self, ctx: InboxContext, *, worker: str, stop: asyncio.Event,
                  **options: Any) -> None:
        """Consume until `stop` is set."""
        await ctx.bus.ensure_group(EVENTS, self.name, from_start=False)

        async def batch(entries: Sequence[Entry]) -> list[BaseException | None]:
            outcomes: list[BaseException | None] = [None] * len(entries)
            for consumer in self.consumers:
                for n, failed in enumerate(await consumer.apply(ctx, entries)):
                    outcomes[n] = outcomes[n] or failed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.linger_s)
            return outcomes

        await run_batch_consumer(ctx.bus, EVENTS, self.name, worker, batch, stop=stop,
                                 batches=1, batch=1000, **options)

