"""The transactional outbox and its relay, on both shapes: an event goes out with its change
or not at all, in commit order, exactly once, whichever relay dies where."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func
from sqlmodel import select

from config import Settings
from hub.app import build_bus
from hub.bus import EVENTS, LIVE, OUTBOUND, Bus
from hub.events import InboxChanged
from hub.types import utcnow
from inbox import relay as relay_module
from inbox.context import InboxContext
from inbox.db import Database
from inbox.models import OutboxEntry
from inbox.outbox import stage_events
from inbox.relay import LEASE, Relay


@dataclass
class Room:
    settings: Settings
    ctx: InboxContext
    heard: list[dict[str, object]]


@pytest.fixture
async def room(settings: Settings) -> AsyncIterator[Room]:
    db = Database(settings.sqlalchemy_url)
    bus = build_bus(settings)
    await bus.start()
    heard: list[dict[str, object]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async for item in bus.subscribe():
            if item == LIVE:
                ready.set()
            else:
                heard.append(json.loads(item[1]))

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield Room(settings, InboxContext(settings=settings, db=db, bus=bus), heard)
    finally:
        task.cancel()
        await bus.close()
        await db.close()


def _event(n: int) -> InboxChanged:
    return InboxChanged(inbox_id=None, at=utcnow(), changed_inbox_id=n)


async def _commit(db: Database, *numbers: int) -> None:
    async with db.write() as session:
        stage_events(session, [_event(n) for n in numbers])


async def _rows(db: Database) -> int:
    async with db.read() as session:
        return int((await session.exec(select(func.count()).select_from(OutboxEntry))).one())


async def _until(check: object, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def _numbers(heard: list[dict[str, object]]) -> list[int]:
    return [int(e["changed_inbox_id"]) for e in heard]  # type: ignore[call-overload]


async def _running(relay: Relay) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.wait_for(relay.leading.wait(), 10)
    return stop, task


async def test_events_go_out_with_their_commit_in_order_and_never_after_a_rollback(
    room: Room,
) -> None:
    stop, task = await _running(Relay(room.ctx, owner="r1"))
    try:
        await _commit(room.ctx.db, 1, 2)
        with pytest.raises(RuntimeError):
            async with room.ctx.db.write() as session:
                stage_events(session, [_event(99)])
                raise RuntimeError("the change failed")
        await _commit(room.ctx.db, 3)
        await _until(lambda: _count(room.heard, 3))
        await asyncio.sleep(0.2)
        assert _numbers(room.heard) == [1, 2, 3]
        assert await _rows(room.ctx.db) == 0  # published rows are deleted
        ids = [e["id"] for e in room.heard]
        assert len(set(ids)) == 3  # every event has its own id
    finally:
        stop.set()
        await task


async def _count(heard: list[dict[str, object]], n: int) -> bool:
    return len(heard) >= n


async def test_a_relay_that_died_after_publishing_does_not_publish_again(room: Room) -> None:
    # The dead relay published the first two rows (its mark is on the bus) but never deleted
    # them; a third was committed after.
    await _commit(room.ctx.db, 1, 2)
    async with room.ctx.db.read() as session:
        rows = list(await session.exec(select(OutboxEntry).order_by(OutboxEntry.id)))  # type: ignore[arg-type]
    assert await room.ctx.bus.acquire_lease(LEASE, "dead", 5000)
    await room.ctx.bus.relay([(r.stream, r.payload) for r in rows],
                             marker=",".join(str(r.id) for r in rows), lease=LEASE,
                             owner="dead", maxlen=1000)
    await room.ctx.bus.release_lease(LEASE, "dead")
    await _commit(room.ctx.db, 3)
    stop, task = await _running(Relay(room.ctx, owner="next"))
    try:
        await _until(lambda: _count(room.heard, 3))
        await asyncio.sleep(0.3)
        assert _numbers(room.heard) == [1, 2, 3]
        assert [json.loads(p)["changed_inbox_id"]
                for _, p in await room.ctx.bus.replay("0-0", 100) or []] == [1, 2, 3]
        assert await _rows(room.ctx.db) == 0
    finally:
        stop.set()
        await task


async def test_one_relay_leads_and_another_takes_over_when_it_stops(
    room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = Relay(room.ctx, owner="a", lease_ttl_ms=600), Relay(
        room.ctx, owner="b", lease_ttl_ms=600)
    stop_first, task_first = await _running(first)
    stop_second = asyncio.Event()
    task_second = asyncio.create_task(second.run(stop_second))
    await _commit(room.ctx.db, 1)
    await _until(lambda: _count(room.heard, 1))
    assert not second.leading.is_set()
    stop_first.set()
    await task_first
    await asyncio.wait_for(second.leading.wait(), 10)
    await _commit(room.ctx.db, 2)
    await _until(lambda: _count(room.heard, 2))
    stop_second.set()
    await task_second
    assert _numbers(room.heard) == [1, 2]
    assert first.relayed == 1 and second.relayed == 1


async def test_a_stopping_relay_finishes_its_batch_before_its_connection_closes(
    room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = Relay(room.ctx, owner="a")
    deleting, proceed = asyncio.Event(), asyncio.Event()
    delete = relay._delete

    async def held_delete(ids: list[int]) -> None:
        deleting.set()
        await proceed.wait()
        await delete(ids)

    monkeypatch.setattr(relay, "_delete", held_delete)
    stop, task = await _running(relay)
    await _commit(room.ctx.db, 1)
    await asyncio.wait_for(deleting.wait(), 10)
    stop.set()  # asked to stop between publishing a batch and deleting it
    await asyncio.sleep(0.3)
    if room.ctx.db.asyncpg_dsn is not None:  # PostgreSQL: the relay's own connection
        assert relay._pg is not None and not relay._pg.is_closed()
    proceed.set()
    await asyncio.wait_for(task, 10)
    assert relay.relayed == 1
    assert _numbers(room.heard) == [1]
    async with room.ctx.db.read() as session:
        assert (await session.exec(select(func.count()).select_from(OutboxEntry))).one() == 0


async def test_a_send_request_goes_to_the_senders(room: Room) -> None:
    from hub.types import Identity, OutboundMessage
    from inbox.outbox import stage_send

    request = OutboundMessage(message_id=1, conversation_id=1, inbox_id=1, channel="api",
                              recipient=Identity(kind="api", value="x"), text="hi",
                              idempotency_key="key-1")
    async with room.ctx.db.write() as session:
        stage_send(session, request)
    stop, task = await _running(Relay(room.ctx, owner="r"))
    try:
        bus: Bus = room.ctx.bus
        await bus.ensure_group(OUTBOUND, "senders")

        async def sent() -> bool:
            return await bus.length(OUTBOUND) == 1

        await _until(sent)
        (entry,) = await bus.read_group(OUTBOUND, "senders", "w", 10, 0)
        assert json.loads(entry.payload)["idempotency_key"] == "key-1"
        assert await bus.length(EVENTS) == 0
    finally:
        stop.set()
        await task


async def test_a_commit_in_another_process_wakes_the_relay_at_once(
    room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL NOTIFY from the outbox trigger wakes a relay in another process (here:
    another engine); SQLite runs one process, where the commit hook wakes it."""
    monkeypatch.setattr(relay_module, "POLL_S", 30.0)  # no polling to hide behind
    stop, task = await _running(Relay(room.ctx, owner="r", lease_ttl_ms=60_000))
    other = Database(room.settings.sqlalchemy_url)
    try:
        await asyncio.sleep(0.3)  # the relay waits, nothing to do
        await _commit(other if not other.is_sqlite else room.ctx.db, 7)
        # Well before the next poll: only the notification can have woken it.
        await _until(lambda: _count(room.heard, 1), timeout=5)
        assert _numbers(room.heard) == [7]
    finally:
        stop.set()
        await task
        await other.close()
