"""The bus operations behind the outbox relay, dead letters and consumer upkeep, on both buses."""

from __future__ import annotations

import asyncio

import pytest

from hub.bus import EVENTS, LIVE, OUTBOUND, Bus, Entry, LeaseLost, dead_letter_stream
from tests.hub.conftest import MakeBus


async def _live(bus: Bus) -> tuple[asyncio.Task[None], list[tuple[str, bytes]]]:
    heard: list[tuple[str, bytes]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async for item in bus.subscribe():
            if item == LIVE:
                ready.set()
            else:
                heard.append(item)

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 5)
    return task, heard


async def test_relay_publishes_in_order_and_records_its_batch(bus: Bus) -> None:
    assert await bus.last_relayed() == ""
    assert await bus.acquire_lease("relay", "me", 5000)
    task, heard = await _live(bus)
    ids = await bus.relay([(EVENTS, b"e1"), (OUTBOUND, b"send"), (EVENTS, b"e2")],
                          marker="7,8,9", lease="relay", owner="me", maxlen=100)
    assert await bus.last_relayed() == "7,8,9"
    for _ in range(100):
        if len(heard) == 2:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    # Events went out live with their stream ids, in order; the send request did not.
    assert heard == [(ids[0], b"e1"), (ids[2], b"e2")]
    assert [p for _, p in await bus.replay("0-0", 10) or []] == [b"e1", b"e2"]
    await bus.ensure_group(OUTBOUND, "senders")
    assert [e.payload for e in await bus.read_group(OUTBOUND, "senders", "w", 10, 0)] == [b"send"]


async def test_relay_refuses_a_publisher_that_lost_the_lease(make_bus: MakeBus) -> None:
    bus = await make_bus()
    assert await bus.acquire_lease("relay", "old", 50)
    await asyncio.sleep(0.1)  # expired: another relay takes over
    assert await bus.acquire_lease("relay", "new", 5000)
    with pytest.raises(LeaseLost):
        await bus.relay([(EVENTS, b"late")], marker="1", lease="relay", owner="old", maxlen=100)
    assert await bus.replay("0-0", 10) == []
    assert await bus.last_relayed() == ""


async def test_touch_keeps_an_entry_from_being_claimed_without_counting_a_delivery(
    bus: Bus,
) -> None:
    await bus.ensure_group("s", "g")
    await bus.add("s", b"held")
    (entry,) = await bus.read_group("s", "g", "holder", 10, 0)
    await asyncio.sleep(0.15)
    await bus.touch("s", "g", "holder", [entry.id])
    assert await bus.claim_stale("s", "g", "other", 100, 10) == []
    await asyncio.sleep(0.15)
    (claimed,) = await bus.claim_stale("s", "g", "other", 100, 10)
    assert claimed.deliveries == 2  # one read, one claim: the touch counted nothing


async def test_dead_letters_are_listed_replayed_and_discarded(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    for payload in (b"first", b"second", b"third"):
        await bus.add("s", payload)
    entries = await bus.read_group("s", "g", "w", 10, 0)
    for entry in entries:
        await bus.dead_letter("s", "g", Entry(entry.id, entry.payload, 5), f"bad {entry.payload!r}")
    letters = await bus.dead_letters("s", "0-0", 10)
    assert [(d.payload, d.original_id, d.group, d.deliveries) for d in letters] == [
        (e.payload, e.id, "g", 5) for e in entries]
    assert letters[0].reason == "bad b'first'"
    assert [d.payload for d in await bus.dead_letters("s", letters[0].id, 10)] == [
        b"second", b"third"]

    new_id = await bus.replay_dead_letter("s", letters[0].id)
    assert new_id is not None
    assert await bus.replay_dead_letter("s", letters[0].id) is None  # once
    (again,) = await bus.read_group("s", "g", "w", 10, 0)
    assert (again.id, again.payload, again.deliveries) == (new_id, b"first", 1)
    assert await bus.discard_dead_letter("s", letters[1].id)
    assert not await bus.discard_dead_letter("s", letters[1].id)
    assert [d.payload for d in await bus.dead_letters("s", "0-0", 10)] == [b"third"]
    assert await bus.length(dead_letter_stream("s")) == 1


async def test_a_consumer_holding_nothing_can_be_deleted_one_holding_entries_not(
    bus: Bus,
) -> None:
    await bus.ensure_group("s", "g")
    await bus.add("s", b"x")
    (entry,) = await bus.read_group("s", "g", "busy", 10, 0)
    await bus.add("s", b"y")
    (done,) = await bus.read_group("s", "g", "idle", 10, 0)
    await bus.ack("s", "g", [done.id])  # known to the group, holds nothing now
    await asyncio.sleep(0.05)
    found = {c.name: c for c in await bus.consumers("s", "g")}
    assert found["busy"].pending == 1 and found["busy"].idle_ms >= 40
    assert not await bus.delete_consumer("s", "g", "busy")
    assert await bus.delete_consumer("s", "g", "idle")
    await bus.ack("s", "g", [entry.id])
    assert await bus.delete_consumer("s", "g", "busy")
    assert "busy" not in {c.name for c in await bus.consumers("s", "g")}


async def test_an_events_group_that_lags_keeps_its_entries_from_being_trimmed(
    bus: Bus,
) -> None:
    await bus.ensure_group(EVENTS, "crm", from_start=False)
    assert await bus.acquire_lease("relay", "me", 5000)
    for n in range(30):
        await bus.relay([(EVENTS, b"%d" % n)], marker=str(n), lease="relay", owner="me",
                        maxlen=5)
    # Nothing was read by the group yet: every event stays, whatever maxlen says.
    assert await bus.length(EVENTS) == 30
    first = await bus.read_group(EVENTS, "crm", "c", 25, 0)
    await bus.ack(EVENTS, "crm", [e.id for e in first])
    await bus.relay([(EVENTS, b"30")], marker="30", lease="relay", owner="me", maxlen=5)
    # Trimmed down to what the group has not acknowledged yet, never further.
    assert [e.payload for e in await bus.read_group(EVENTS, "crm", "c", 100, 0)] == [
        b"25", b"26", b"27", b"28", b"29", b"30"]
    assert await bus.length(EVENTS) == 6
