"""The consumer through outages, dead consumers and poison, on both buses.

An outage (the handler raises Outage while the checks say something is down) never counts a
delivery and never dead-letters; a failure on a healthy system does, on its last delivery;
a dead consumer's entries are claimed even while a backlog is being read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from hub import consumer as consumer_module
from hub.bus import Bus, Entry, dead_letter_stream
from hub.consumer import ConsumerStats, Outage, run_batch_consumer
from tests.hub.conftest import MakeBus


async def _until(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


IDLE_MS = 450


async def test_an_outage_holds_entries_without_counting_deliveries(bus: Bus) -> None:
    for n in range(20):
        await bus.add("in", b"%d" % n)
    down = True
    calls = 0
    handled: list[bytes] = []

    async def handler(entries: Sequence[Entry]) -> list[BaseException | None]:
        nonlocal calls
        calls += 1
        if down:
            raise Outage("the database is down")
        handled.extend(e.payload for e in entries)
        return [None] * len(entries)

    async def healthy() -> bool:
        return not down

    stop, stats = asyncio.Event(), ConsumerStats()
    task = asyncio.create_task(run_batch_consumer(
        bus, "in", "g", "w1", handler, batch=10, max_deliveries=2, claim_idle_ms=IDLE_MS,
        block_ms=20, stop=stop, stats=stats, healthy=healthy))
    # A second consumer keeps looking for stale entries all along: it must find none, the
    # first one keeps them fresh while it waits (touching them every IDLE_MS / 3, so a
    # loaded machine may stall it for IDLE_MS * 2/3 before a claim could succeed).
    thief_claims = 0

    async def thief() -> None:
        nonlocal thief_claims
        while not stop.is_set():
            thief_claims += len(await bus.claim_stale("in", "g", "thief", IDLE_MS, 100))
            await asyncio.sleep(0.05)

    stealing = asyncio.create_task(thief())
    await asyncio.sleep(IDLE_MS * 5 / 1000)  # five claim-idle periods of outage
    assert calls >= 1 and handled == []
    down = False
    await _until(lambda: _done(handled, 20))
    stop.set()
    await asyncio.wait_for(task, 10)
    await stealing
    assert sorted(handled) == sorted(b"%d" % n for n in range(20))
    assert stats.dead_lettered == 0 and stats.failed == 0 and stats.outages >= 1
    assert thief_claims == 0
    assert await bus.length(dead_letter_stream("in")) == 0
    assert await bus.pending_count("in", "g") == 0


async def _done(handled: list[bytes], count: int) -> bool:
    return len(handled) >= count


async def test_only_a_failure_on_a_healthy_system_dead_letters(bus: Bus) -> None:
    await bus.add("in", b"poison")
    await bus.add("in", b"fine")
    calls: list[int] = []

    async def handler(entries: Sequence[Entry]) -> list[BaseException | None]:
        calls.append(len(entries))
        return [ValueError("cannot parse") if e.payload == b"poison" else None
                for e in entries]

    async def healthy() -> bool:
        return True

    stop, stats = asyncio.Event(), ConsumerStats()
    task = asyncio.create_task(run_batch_consumer(
        bus, "in", "g", "w", handler, max_deliveries=3, claim_idle_ms=50, block_ms=20,
        stop=stop, stats=stats, healthy=healthy))
    await _until(lambda: _dead(bus, "in", 1))
    stop.set()
    await asyncio.wait_for(task, 10)
    (letter,) = await bus.dead_letters("in", "0-0", 10)
    assert letter.payload == b"poison" and letter.deliveries == 3
    assert "ValueError: cannot parse" in letter.reason
    assert stats.handled == 1 and stats.failed == 3 and stats.dead_lettered == 1


async def _dead(bus: Bus, stream: str, count: int) -> bool:
    return await bus.length(dead_letter_stream(stream)) >= count


async def test_a_dead_consumers_entries_are_taken_over_while_a_backlog_is_read(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus()
    await bus.ensure_group("in", "g")
    for n in range(100):
        await bus.add("in", b"early-%d" % n)
    # The dead one took the first 100 and never acknowledged them.
    assert len(await bus.read_group("in", "g", "dead", 100, 0)) == 100
    for n in range(2000):
        await bus.add("in", b"late-%d" % n)
    finished: dict[bytes, float] = {}

    async def slow(entries: Sequence[Entry]) -> list[BaseException | None]:
        await asyncio.sleep(0.05)  # a backlog that takes a while
        now = time.monotonic()
        for e in entries:
            finished.setdefault(e.payload, now)
        return [None] * len(entries)

    claim_idle_ms = 600
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(run_batch_consumer(
        bus, "in", "g", "alive", slow, batch=20, claim_idle_ms=claim_idle_ms, block_ms=20,
        stop=stop))
    await _until(lambda: _all_early(finished))
    taken_over = max(finished[b"early-%d" % n] for n in range(100)) - started
    backlog_left = 2000 - sum(1 for p in finished if p.startswith(b"late"))
    stop.set()
    await asyncio.wait_for(task, 20)
    assert taken_over <= 2 * claim_idle_ms / 1000, taken_over
    assert backlog_left > 500  # it really happened during the backlog


async def _all_early(finished: dict[bytes, float]) -> bool:
    return all(b"early-%d" % n in finished for n in range(100))


async def test_idle_consumers_holding_nothing_are_forgotten(bus: Bus, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(consumer_module, "CHECK_EVERY_S", 0.05)
    await bus.ensure_group("in", "g")
    await bus.add("in", b"x")
    (entry,) = await bus.read_group("in", "g", "gone-worker", 10, 0)
    await bus.ack("in", "g", [entry.id])
    await asyncio.sleep(0.1)

    async def handler(entries: Sequence[Entry]) -> list[BaseException | None]:
        return [None] * len(entries)

    stop, stats = asyncio.Event(), ConsumerStats()
    task = asyncio.create_task(run_batch_consumer(
        bus, "in", "g", "w", handler, claim_idle_ms=100, block_ms=20, stop=stop, stats=stats,
        idle_consumer_ms=50))

    async def forgotten() -> bool:
        return "gone-worker" not in {c.name for c in await bus.consumers("in", "g")}

    await _until(forgotten)
    stop.set()
    await asyncio.wait_for(task, 10)
