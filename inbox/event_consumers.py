"""Durable consumers of the events stream (CRM connectors, outbound webhooks, automation).

Each is a consumer group of its own on the "events" stream: the stream is never trimmed
past an event a group has not acknowledged, so a consumer that was down catches up. Events
come at least once (a consumer that crashed after its work but before its acknowledgement
gets them again); `EventConsumer` makes the effect exactly once by recording each event id
in `consumed_events` in the same transaction as the consumer's own changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from hub.bus import EVENTS, Entry
from hub.consumer import Outage, run_batch_consumer
from hub.events import decode_event
from hub.types import utcnow
from inbox.context import InboxContext
from inbox.db import conflict_insert, execute, is_postgresql, is_unavailable
from inbox.models import ConsumedEvent, table_of

# Handles one event inside the transaction that records it as consumed.
Handle = Callable[[AsyncSession, Any], Awaitable[None]]


async def first_time(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """Record that `consumer` handles this event now; False when it did already."""
    statement = (conflict_insert(table_of(ConsumedEvent), is_postgresql(session))
                 .values(consumer=consumer, event_id=event_id, consumed_at=utcnow())
                 .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
                 .returning(table_of(ConsumedEvent).c.event_id))
    return (await execute(session, statement)).first() is not None


@dataclass(frozen=True)
class EventConsumer:
    """A named consumer of every event, each applied once (see the module)."""

    name: str
    handle: Handle
    # Events before the group existed are not replayed to a new consumer.
    from_start: bool = False

    async def run(self, ctx: InboxContext, *, worker: str, stop: asyncio.Event,
                  **options: Any) -> None:
        """Consume until `stop` is set (one group per consumer name, any number of workers)."""
        await ctx.bus.ensure_group(EVENTS, self.name, from_start=self.from_start)

        async def batch(entries: Sequence[Entry]) -> list[BaseException | None]:
            return [await self._one(ctx, entry) for entry in entries]

        await run_batch_consumer(ctx.bus, EVENTS, self.name, worker, batch, stop=stop,
                                 batches=1, **options)

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
