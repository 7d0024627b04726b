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
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.bus import LIVE, Bus

log = logging.getLogger("switchboard.realtime")

LiveEvent = tuple[str, bytes]


@dataclass(frozen=True)
class EventRoute:
    """Who an event is for: an inbox's agents, every agent (inbox None), or an audience."""

    inbox_id: int | None
    audience: frozenset[int] | None

    def reaches(self, agent_id: int | None, accepts_inbox: Callable[[int], bool]) -> bool:
        """Whether a connection (of an agent, or of a widget visitor: None) gets the event."""
        if self.audience is not None:
            return agent_id is not None and agent_id in self.audience
        if self.inbox_id is None:
            return agent_id is not None
        return accepts_inbox(self.inbox_id)


RESYNC = "resync"  # what Listener.next gives when events were missed
WOKEN = "woken"  # ... and when woken (Listener.wake) with nothing new


class Listener:
    """One connection's view of the live events: a bounded queue, read with `next`.

    A reader that falls behind by more than the queue holds has its queue emptied and is
    told to resync. Reading costs one await of the queue per event (no task or future of
    its own): with thousands of connections per process, that is most of a fan-out."""

    def __init__(
        self, accepts: Callable[[int], bool], maxsize: int, agent_id: int | None = None
    ) -> None:
        self.accepts = accepts
        self.agent_id = agent_id
        self.queue: asyncio.Queue[LiveEvent | str] = asyncio.Queue(maxsize)
        self.behind = False  # events were dropped: the reader must resync
        # A website visitor's thread (Fanout.listen_thread): its inbox, the visitor, and
        # the conversation followed (None before their first message).
        self.thread: tuple[int, str] | None = None
        self.conversation_id: int | None = None

    def offer(self, event: LiveEvent) -> None:
        """Queue an event, or mark the reader behind when it is too slow."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True

    def resync(self) -> None:
        """The reader may have missed events (the subscription dropped): tell it."""
        self.behind = True
        self.wake()

    def wake(self) -> None:
        """Have `next` return (WOKEN unless there is more) so the reader looks around:
        its client left, its session is to be checked. (A full queue is read soon
        anyway.)"""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(WOKEN)

    def forget_missed(self) -> None:
        """Start afresh: nothing queued, nothing missed (before a replay or a reload)."""
        self.behind = False
        while not self.queue.empty():
            self.queue.get_nowait()

    async def next(self) -> LiveEvent | str:
        """The next live event (id, payload), or RESYNC (events were missed; the queue is
        emptied), or WOKEN."""
        item = await self.queue.get()
        if self.behind:
            self.forget_missed()
            return RESYNC
        return item


class Fanout:
    """The process-wide subscription and its listeners."""

    def __init__(self, bus: Bus, *, queue_size: int = 10_000) -> None:
        self._bus = bus
        self._hooks: dict[bytes, list[Callable[[], None]]] = {}
        self._listeners: set[Listener] = set()  # agents': offered every event they may see
        # Visitors' threads, found by conversation and by visitor: offered only their
        # thread's messages and typing, however many other visitors the inbox has.
        self._threads: set[Listener] = set()
        self._by_conversation: dict[int, set[Listener]] = {}
        self._by_visitor: dict[tuple[int, str], set[Listener]] = {}
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

    def on_event(self, event_type: str, hook: Callable[[], None]) -> None:
        """Call `hook` for every event of this type (and after every reconnect, in case one
        was missed meanwhile): this process's own reaction to a change elsewhere."""
        self._hooks.setdefault(f'"type":"{event_type}"'.encode(), []).append(hook)

    def _run_hooks(self, payload: bytes | None) -> None:
        for marker, hooks in self._hooks.items():
            if payload is None or marker in payload:
                for hook in hooks:
                    hook()

    def listen(self, accepts: Callable[[int], bool], agent_id: int | None = None) -> Listener:
        """Register a listener: events of the inboxes `accepts` says yes to, and for an agent
        (`agent_id`) also the events meant for every agent or for them in particular."""
        listener = Listener(accepts, self._queue_size, agent_id)
        self._listeners.add(listener)
        return listener

    def listen_thread(self, inbox_id: int, visitor_id: str,
                      conversation_id: int | None) -> Listener:
        """Register a website visitor's listener: the messages and typing of the
        conversation it follows (`follow`), and the visitor's own messages wherever they
        land (a new conversation after the old one was resolved)."""
        listener = Listener(lambda inbox: inbox == inbox_id, self._queue_size)
        listener.thread = (inbox_id, visitor_id)
        self._threads.add(listener)
        self._by_visitor.setdefault(listener.thread, set()).add(listener)
        self.follow(listener, conversation_id)
        return listener

    def follow(self, listener: Listener, conversation_id: int | None) -> None:
        """Have a visitor's listener follow another conversation."""
        if listener.conversation_id is not None:
            _discard(self._by_conversation, listener.conversation_id, listener)
        listener.conversation_id = conversation_id
        if conversation_id is not None and listener in self._threads:
            self._by_conversation.setdefault(conversation_id, set()).add(listener)

    def unlisten(self, listener: Listener) -> None:
        """Forget a listener."""
        self._listeners.discard(listener)
        if listener in self._threads:
            self._threads.discard(listener)
            self.follow(listener, None)
            assert listener.thread is not None
            _discard(self._by_visitor, listener.thread, listener)

    @property
    def listener_count(self) -> int:
        """Listeners registered right now."""
        return len(self._listeners) + len(self._threads)

    def _flag_all(self) -> None:
        for listener in [*self._listeners, *self._threads]:
            listener.resync()

    def _offer_threads(self, event: LiveEvent, inbox_id: int | None) -> None:
        """Offer a message or typing event to the visitors' listeners it concerns."""
        payload = event[1]
        kind = _THREAD_EVENT.search(payload, 0, 400)
        if kind is None or inbox_id is None:
            return
        # The first conversation_id is the event's own: ids and flags come before any text
        # (hub/events.py), and a quote inside a text is escaped.
        found = _CONVERSATION_ID.search(payload)
        targets = set(self._by_conversation.get(int(found.group(1)), ())) if found else set()
        if kind.group(1) == b"message.created":
            sender = _VISITOR_SENDER.search(payload)
            if sender is not None:
                targets |= self._by_visitor.get((inbox_id, sender.group(1).decode()), set())
        for listener in targets:
            if listener.accepts(inbox_id):  # a conversation of its own inbox
                listener.offer(event)

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
                                self._run_hooks(None)
                            dropped = True
                            continue
                        if self._hooks:
                            self._run_hooks(event[1])
                        route = event_route(event[1])
                        for listener in list(self._listeners):
                            if route.reaches(listener.agent_id, listener.accepts):
                                listener.offer(event)
                        if self._threads and route.audience is None:
                            self._offer_threads(event, route.inbox_id)
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


def _discard(index: dict[Any, set[Listener]], key: Any, listener: Listener) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(listener)
        if not found:
            del index[key]


_NOBODY = EventRoute(inbox_id=None, audience=frozenset())


# Events as hub/events.py serialises them start with their routing fields: reading them off
# the front spares parsing the whole event in every web process (anything else is parsed).
_ROUTE_PREFIX = re.compile(
    rb'\{"v":\d+,"id":"[0-9a-f]*","inbox_id":(null|\d{1,18}),"at":"[^"]*",'
    rb'(?:"caused_by":\[[0-9,]*\],)?"audience":(null|\[[0-9,]*\])')
# What a website visitor's thread hears, and how it is found (see Fanout._offer_threads).
_THREAD_EVENT = re.compile(
    rb'"audience":(?:null|\[[0-9,]*\]),"type":"(message\.created|conversation\.typing)"')
_CONVERSATION_ID = re.compile(rb'"conversation_id":(\d{1,18})')
_VISITOR_SENDER = re.compile(rb'"external_id":"widget:([A-Za-z0-9_-]{1,100}):')


def event_route(payload: bytes) -> EventRoute:
    """Who an event is for (parsed once per event, not once per listener)."""
    found = _ROUTE_PREFIX.match(payload)
    if found is not None:
        inbox, audience = found.groups()
        return EventRoute(
            None if inbox == b"null" else int(inbox),
            None if audience == b"null"
            else frozenset(int(a) for a in audience[1:-1].split(b",") if a),
        )
    try:
        data = json.loads(payload)
        inbox_id = data.get("inbox_id")
        audience = data.get("audience")
    except (ValueError, AttributeError):
        return _NOBODY
    if inbox_id is not None and not isinstance(inbox_id, int):
        return _NOBODY
    if audience is not None:
        if not isinstance(audience, list):
            return _NOBODY
        return EventRoute(inbox_id, frozenset(a for a in audience if isinstance(a, int)))
    return EventRoute(inbox_id, None)
