"""The poller supervisor on both shapes: one poller per inbox across workers, restarts,
new inboxes picked up, removed ones stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import pytest
from sqlmodel import delete

from channels.base import Emit, PollerState, SettingSpec
from config import Settings
from hub.app import build_bus
from hub.pollers import Pollers
from hub.types import Capabilities, StoreAttachment
from inbox.context import InboxContext
from inbox.db import Database
from inbox.inboxes import create_inbox
from inbox.models import Inbox
from tests.helpers import eventually


class Pulled:
    """A pulled channel that records who runs it, and dies on its first run per inbox."""

    kind: ClassVar[str] = "pulled"
    display_name: ClassVar[str] = "Pulled"
    settings: ClassVar[tuple[SettingSpec, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.running: set[int] = set()

    def verify(self, request: Any) -> None:
        """No webhooks."""

    def parse(self, request: Any) -> list[Any]:
        """No webhooks."""
        return []

    async def send(self, message: Any, inbox_settings: Mapping[str, Any]) -> Any:
        """Nothing to send."""
        raise NotImplementedError

    async def run(self, inbox_id: int, inbox_settings: Mapping[str, Any], emit: Emit,
                  store: StoreAttachment, state: PollerState) -> None:
        self.runs.append(inbox_id)
        if self.runs.count(inbox_id) == 1:
            raise RuntimeError("first run dies")
        self.running.add(inbox_id)
        try:
            await asyncio.Event().wait()
        finally:
            self.running.discard(inbox_id)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[InboxContext]:
    db, bus = Database(settings.sqlalchemy_url), build_bus(settings)
    await bus.start()
    yield InboxContext(settings=settings, db=db, bus=bus)
    await bus.close()
    await db.close()


async def test_one_poller_per_inbox_across_workers_restarted_and_rescanned(
    ctx: InboxContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hub.pollers.asyncio.sleep", _fast_sleep)
    async with ctx.db.write() as session:
        first = await create_inbox(session, name="A", channel="pulled", settings={})
    a_channel, b_channel = Pulled(), Pulled()
    stop = asyncio.Event()
    workers = [Pollers(ctx, {"pulled": a_channel}, owner="a", rescan_s=0.05),  # type: ignore[dict-item]
               Pollers(ctx, {"pulled": b_channel}, owner="b", rescan_s=0.05)]  # type: ignore[dict-item]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        await eventually(lambda: _ready(first.id, a_channel, b_channel))
        async with ctx.db.write() as session:
            second = await create_inbox(session, name="B", channel="pulled", settings={})
        await eventually(lambda: _ready(second.id, a_channel, b_channel))
        for inbox_id in (first.id, second.id):  # never polled by both at once
            assert (inbox_id in a_channel.running) != (inbox_id in b_channel.running)
        async with ctx.db.write() as session:
            await session.exec(delete(Inbox).where(Inbox.id == first.id))  # type: ignore[arg-type]

        async def stopped() -> bool:
            return first.id not in a_channel.running | b_channel.running

        await eventually(stopped)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not a_channel.running and not b_channel.running


async def _ready(inbox_id: int | None, *channels: Pulled) -> bool:
    """The inbox's poller died once and runs again somewhere."""
    return any(inbox_id in c.running for c in channels)


_real_sleep = asyncio.sleep


async def _fast_sleep(seconds: float) -> None:
    # Backoff and lease waits shrink to keep the test fast; the order of events is the same.
    await _real_sleep(min(seconds, 0.05))
