"""Realtime fan-out inside one web process: one bus subscription, many websocket listeners.

Every web process subscribes once to the bus's live events (Redis pub/sub in production) and
hands each event to the listeners registered here. A listener whose queue overflows is told
to resynchronise instead of silently missing events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from hub.bus import LIVE, Bus

log = logging.getLogger("switchboard.realtime")

LiveEvent = tuple[str, bytes]


class Listener:
    """One connection's view of the live events: a bounded queue and an overflow flag."""

    def __init__(self, accepts: Callable[[int | None], bool], maxsize: int) -> None:
        self.accepts = accepts
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize)
        self.overflowed = asyncio.Event()

    def offer(self, event: LiveEvent) -> None:
        """Queue an event, or flag an overflow when the consumer is too slow."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed.set()


class Fanout:
    """The process-wide subscription and its listeners."""

    def __init__(self, bus: Bus, *, queue_size: int = 1000) -> None:
        self._bus = bus
        self._listeners: set[Listener] = set()
        self._queue_size = queue_size
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start the subscription task (it reconnects by itself)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="realtime-fanout")

    async def wait_ready(self) -> None:
        """Wait until the bus subscription is live."""
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop the subscription task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def listen(self, accepts: Callable[[int | None], bool]) -> Listener:
        """Register a listener for the events whose inbox id `accepts` says yes to."""
        listener = Listener(accepts, self._queue_size)
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        """Forget a listener."""
        self._listeners.discard(listener)

    @property
    def listener_count(self) -> int:
        """Listeners registered right now."""
        return len(self._listeners)

    def _flag_all(self) -> None:
        for listener in list(self._listeners):
            listener.overflowed.set()

    async def _run(self) -> None:
        dropped = False
        while True:
            try:
                async with contextlib.aclosing(self._bus.subscribe()) as events:  # type: ignore[type-var]
                    async for event in events:
                        if event == LIVE:
                            self._ready.set()
                            if dropped:
                                # Whoever listened while we were away may have missed events.
                                self._flag_all()
                            dropped = True
                            continue
                        inbox_id = event_inbox_id(event[1])
                        for listener in list(self._listeners):
                            if listener.accepts(inbox_id):
                                listener.offer(event)
                raise ConnectionError("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._ready.is_set():
                    log.warning("realtime subscription dropped; resubscribing", exc_info=True)
                # Listeners may have missed events while we were away: make them resync.
                self._ready.clear()
                self._flag_all()
                await asyncio.sleep(0.5)


def event_inbox_id(payload: bytes) -> int | None:
    """The inbox an event belongs to (parsed once per event, not once per listener)."""
    try:
        value = json.loads(payload).get("inbox_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
