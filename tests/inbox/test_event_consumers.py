"""A durable consumer of the events stream applies each event once, and catches up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from config import Settings
from hub.app import build_bus
from hub.bus import EVENTS
from hub.events import InboxChanged, encode_event
from hub.types import utcnow
from inbox.context import InboxContext
from inbox.db import Database
from inbox.event_consumers import EventConsumer


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[InboxContext]:
    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    try:
        yield InboxContext(settings=settings, db=db, bus=bus)
    finally:
        await bus.close()
        await db.close()


async def _publish(ctx: InboxContext, payloads: list[bytes]) -> None:
    assert await ctx.bus.acquire_lease("relay", "test", 60_000)
    await ctx.bus.relay([(EVENTS, p) for p in payloads], marker="x", lease="relay",
                        owner="test", maxlen=5)


async def test_each_event_applies_once_even_when_delivered_again(ctx: InboxContext) -> None:
    seen: list[int] = []

    async def handle(session: AsyncSession, event: Any) -> None:
        seen.append(event.changed_inbox_id)

    consumer = EventConsumer("crm-test", handle)
    events = [encode_event(InboxChanged(inbox_id=None, at=utcnow(), changed_inbox_id=n))
              for n in range(20)]
    # Published while the consumer is away (but registered): more than maxlen, all kept.
    await ctx.bus.ensure_group(EVENTS, "crm-test", from_start=False)
    await _publish(ctx, events)
    # The first and the fifth again, as a redelivery after a crash would bring them.
    await _publish(ctx, [events[0], events[4]])
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(ctx, worker="w", stop=stop, block_ms=20,
                                            claim_idle_ms=200))
    for _ in range(500):
        if len(seen) >= 20 and await ctx.bus.pending_count(EVENTS, "crm-test") == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert seen == list(range(20))


async def test_unwanted_events_and_idle_consumers_cost_no_transaction(
        ctx: InboxContext) -> None:
    from sqlalchemy import func
    from sqlmodel import select

    from hub.events import ContactCreated, ContactView
    from inbox.models import ConsumedEvent

    seen: list[str] = []
    switched_on = False

    async def handle(session: AsyncSession, event: Any) -> None:
        seen.append(event.type)

    async def active(_: InboxContext) -> bool:
        return switched_on

    consumer = EventConsumer("filtered", handle, types=frozenset({"contact.created"}),
                             active=active)
    await ctx.bus.ensure_group(EVENTS, "filtered", from_start=False)

    def contact(n: int) -> bytes:
        return encode_event(ContactCreated(inbox_id=1, at=utcnow(), contact=ContactView(
            id=n, name=None, email=None, phone=None, created_at=utcnow())))

    others = [encode_event(InboxChanged(inbox_id=None, at=utcnow(), changed_inbox_id=n))
              for n in range(5)]
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(ctx, worker="w", stop=stop, block_ms=20,
                                            claim_idle_ms=200))

    async def drained() -> None:
        for _ in range(250):
            if await ctx.bus.pending_count(EVENTS, "filtered") == 0:
                await asyncio.sleep(0.1)
                if await ctx.bus.pending_count(EVENTS, "filtered") == 0:
                    return
            await asyncio.sleep(0.02)

    await _publish(ctx, [*others, contact(1)])  # nothing to do yet: acknowledged as is
    await drained()
    await asyncio.sleep(0.3)
    switched_on = True
    await _publish(ctx, [*others, contact(2), contact(3)])
    for _ in range(250):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.02)
    await drained()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert seen == ["contact.created", "contact.created"]
    async with ctx.db.read() as session:
        recorded = (await session.exec(select(func.count()).select_from(ConsumedEvent).where(
            ConsumedEvent.consumer == "filtered"))).one()
    assert recorded == 2  # one transaction per wanted event, none for the others


async def test_consumers_sharing_one_read_each_apply_every_event_once(
        ctx: InboxContext) -> None:
    from inbox.event_consumers import SharedReader

    seen: dict[str, list[int]] = {"steady": [], "flaky": []}
    failed_once: set[int] = set()

    async def steady(session: AsyncSession, event: Any) -> None:
        seen["steady"].append(event.changed_inbox_id)

    async def flaky(session: AsyncSession, event: Any) -> None:
        if event.changed_inbox_id % 3 == 0 and event.changed_inbox_id not in failed_once:
            failed_once.add(event.changed_inbox_id)
            raise RuntimeError("not this time")  # its entry comes back to both
        seen["flaky"].append(event.changed_inbox_id)

    reader = SharedReader("shared", (EventConsumer("steady", steady),
                                     EventConsumer("flaky", flaky)))
    await ctx.bus.ensure_group(EVENTS, "shared", from_start=False)
    await _publish(ctx, [encode_event(InboxChanged(inbox_id=None, at=utcnow(),
                                                   changed_inbox_id=n)) for n in range(12)])
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(ctx, worker="w", stop=stop, block_ms=20,
                                          claim_idle_ms=200))
    for _ in range(500):
        if len(seen["flaky"]) >= 12 and await ctx.bus.pending_count(EVENTS, "shared") == 0:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sorted(seen["steady"]) == list(range(12))  # once each, though four came back
    assert sorted(seen["flaky"]) == list(range(12))
    assert failed_once == {0, 3, 6, 9}
