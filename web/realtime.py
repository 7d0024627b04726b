"""The agent websocket: live events of the agent's inboxes, resumable after a reconnect.

Frames from the server (JSON text):
  {"type": "ready", "last_event_id": ID}     after the replay, live from here on
  {"type": "event", "id": ID, "event": {...}} one event (see hub/events.py)
  {"type": "resync", "reason": "..."}        events were missed: reload state over HTTP
  {"type": "pong"}                           answer to {"type": "ping"}
Connect with `?last_event_id=ID` to get every event after ID replayed first, and with
`?presence=0` to watch without counting as online (the reports page's live load).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.bus import parse_id
from hub.metrics import EVENTS_DELIVERED, RESYNCS, SLOW_DROPS, WEBSOCKETS
from hub.realtime import RESYNC, Listener, event_route
from inbox.agents import Principal, principals_for, touch_presence
from inbox.assignment import drain_queue
from web.context import WebContext
from web.http import current_principal, session_token

log = logging.getLogger("switchboard.websocket")
REPLAY_PAGE = 500
RECHECK_SECONDS = 30.0


Send = Callable[[str], Awaitable[None]]


class TooSlow(Exception):
    """The client took no frame within the settings' websocket_send_seconds."""


async def send_within(websocket: WebSocket, text: str, seconds: float) -> None:
    """Send a frame, or raise TooSlow when the client has not made room for it within
    `seconds` (a stalled reader: whoever catches it ends the connection, so that what it
    pins is only its socket's buffer, never a growing queue)."""
    try:
        async with asyncio.timeout(seconds):
            await websocket.send_text(text)
    except TimeoutError:
        raise TooSlow(f"no frame taken in {seconds:g} s") from None


def dropped_as_slow(what: str, exc: TooSlow) -> None:
    """Log and count a websocket dropped for being too slow."""
    SLOW_DROPS.inc()
    log.info("%s websocket disconnected: %s (it reconnects and catches up)", what, exc)


class Presence:
    """Agents with an open websocket in this process, marked as seen periodically."""

    def __init__(self, ctx: WebContext) -> None:
        self._ctx = ctx
        self._counts: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._drains: set[asyncio.Task[int]] = set()
        self.sessions = SessionWatch(ctx)

    async def add(self, agent_id: int) -> None:
        """An agent connected: count them online right away (and give them what waits)."""
        self._counts[agent_id] = self._counts.get(agent_id, 0) + 1
        if self._counts[agent_id] == 1:
            async with self._ctx.inbox.db.write() as session:
                await touch_presence(session, [agent_id])
            # In the background: the socket does not wait for the queue to be drained.
            drain = asyncio.create_task(drain_queue(self._ctx.inbox), name="drain-queue")
            self._drains.add(drain)
            drain.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[int]) -> None:
        self._drains.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("draining the queue failed", exc_info=task.exception())

    def remove(self, agent_id: int) -> None:
        """An agent's connection closed."""
        left = self._counts.get(agent_id, 1) - 1
        if left <= 0:
            self._counts.pop(agent_id, None)
        else:
            self._counts[agent_id] = left

    async def start(self) -> None:
        """Start the heartbeat task and the session checks."""
        self._task = asyncio.create_task(self._beat(), name="presence")
        self.sessions.start()

    async def stop(self) -> None:
        """Stop the heartbeat task (and any queue draining still running)."""
        await self.sessions.stop()
        for task in [*self._drains, *([self._task] if self._task is not None else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # a drain that failed just before was logged already

    async def _beat(self) -> None:
        interval = max(1.0, self._ctx.settings.presence_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            if self._counts:
                try:
                    async with self._ctx.inbox.db.write() as session:
                        await touch_presence(session, sorted(self._counts))
                except Exception:
                    log.exception("presence heartbeat failed")


class SessionWatch:
    """The sessions of every agent websocket of this process, checked every RECHECK_SECONDS
    in a few statements for all of them (inbox.agents.principals_for): a socket whose
    session ended (expired, logged out, agent deactivated) is closed, and each socket hears
    the inboxes its agent may see now. Changes announced by an event (agent.updated) are
    acted on at once by the socket itself; this catches the rest, such as expiry."""

    def __init__(self, ctx: WebContext) -> None:
        self._ctx = ctx
        self._streams: dict[_Stream, str] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, stream: _Stream, token: str) -> None:
        """Watch a socket's session."""
        self._streams[stream] = token

    def remove(self, stream: _Stream) -> None:
        """Stop watching it."""
        self._streams.pop(stream, None)

    def start(self) -> None:
        """Start the periodic check."""
        self._task = asyncio.create_task(self._run(), name="session-watch")

    async def stop(self) -> None:
        """Stop it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                await self.check()
            except Exception:
                log.exception("checking websocket sessions failed; trying again later")

    async def check(self) -> None:
        """Check every watched socket's session now."""
        watched = list(self._streams.items())
        if not watched:
            return
        async with self._ctx.inbox.db.read() as session:
            principals = await principals_for(session, {token for _, token in watched})
        for stream, token in watched:
            principal = principals.get(token)
            if principal is None:
                stream.ended = True
                stream.listener.wake()
            else:
                stream.allowed["inboxes"] = principal.inbox_ids


@functools.lru_cache(maxsize=256)
def _frame(event_id: str, payload: bytes) -> str:
    # Made once per event, not once per connection: every listener of a process gets the
    # same bytes object, whose hash Python keeps, so the lookup costs little.
    return '{"type":"event","id":"%s","event":%s}' % (event_id, payload.decode())  # noqa: UP031


def websocket_routes(ctx: WebContext, presence: Presence) -> list[WebSocketRoute]:
    """The agent websocket route."""

    async def agent_socket(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if origin is not None and origin not in ctx.settings.origins:
            log.warning("websocket refused: foreign origin %r", origin[:200])
            await websocket.close(code=1008, reason="origin not allowed")
            return
        principal = await current_principal(ctx, websocket)
        if principal is None:
            await websocket.close(code=1008, reason="log in first")
            return
        await websocket.accept()
        WEBSOCKETS.inc()
        # ?presence=0: a page that only watches (the reports' live load) does not make its
        # agent online, nor a target of the queue.
        present = websocket.query_params.get("presence") != "0"
        if present:
            await presence.add(principal.agent_id)
        try:
            await _serve(ctx, websocket, principal, presence.sessions)
        except WebSocketDisconnect:
            pass
        except TooSlow as exc:
            dropped_as_slow("agent", exc)  # no close frame: it would wait for room too
        except Exception:
            log.exception("agent websocket failed; closing it so the client reconnects")
            with contextlib.suppress(Exception):
                await websocket.close(code=1011, reason="server error, reconnect")
        finally:
            WEBSOCKETS.dec()
            if present:
                presence.remove(principal.agent_id)

    return [WebSocketRoute("/api/v1/ws", agent_socket)]


async def _serve(ctx: WebContext, websocket: WebSocket, principal: Principal,
                 sessions: SessionWatch) -> None:
    send_lock = asyncio.Lock()  # the receiver answers pings while this task sends events
    allowed = {"inboxes": principal.inbox_ids}
    listener = ctx.fanout.listen(lambda inbox_id: inbox_id in allowed["inboxes"],
                                 agent_id=principal.agent_id)
    receiver: asyncio.Task[None] | None = None
    send = functools.partial(send_within, websocket,
                             seconds=ctx.settings.websocket_send_seconds)
    try:
        # Replay only once live events flow again (after a bus outage), so nothing falls
        # between the replay and the live stream.
        try:
            await asyncio.wait_for(ctx.fanout.wait_ready(), timeout=10)
        except TimeoutError:
            await websocket.close(code=1013, reason="realtime bus unavailable, retry later")
            return
        listener.forget_missed()
        last = await _catch_up(ctx, send, principal,
                               websocket.query_params.get("last_event_id"))
        receiver = asyncio.create_task(_receive(websocket, send, send_lock))
        receiver.add_done_callback(lambda _: listener.wake())
        stream = _Stream(listener, receiver, send, send_lock, allowed)
        sessions.add(stream, session_token(websocket))
        try:
            await _pump(ctx, websocket, principal, stream, last)
        finally:
            sessions.remove(stream)
        if receiver.exception() is not None and not isinstance(
            receiver.exception(), WebSocketDisconnect
        ):
            raise receiver.exception()  # type: ignore[misc]
    finally:
        ctx.fanout.unlisten(listener)
        await _stop(receiver)


@dataclass(eq=False)
class _Stream:
    """One agent socket's live side: its fan-out listener, the task reading the client,
    the lock both send under, the inboxes it may hear and whether its session ended (both
    kept up to date by SessionWatch)."""

    listener: Listener
    receiver: asyncio.Task[None]
    send: Send
    send_lock: asyncio.Lock
    allowed: dict[str, frozenset[int]]
    ended: bool = False


async def _pump(ctx: WebContext, websocket: WebSocket, principal: Principal, stream: _Stream,
                last: str | None) -> None:
    """Send live events until the client leaves or its session ends; after an event about
    this agent, check at once that the session still stands and what it may see (the
    periodic check of every socket is SessionWatch's)."""
    listener, receiver, send = stream.listener, stream.receiver, stream.send
    while not receiver.done():
        item = await listener.next()
        recheck = False
        if item == RESYNC:
            RESYNCS.inc()
            async with stream.send_lock:
                await send('{"type":"resync","reason":"too many events missed"}')
        elif isinstance(item, tuple):
            event_id, payload = item
            if last is None or parse_id(event_id) > parse_id(last):
                async with stream.send_lock:
                    await send(_frame(event_id, payload))
                EVENTS_DELIVERED.inc()
                last = event_id
            # Deactivated, logged out, role or inboxes changed: act on it at once.
            recheck = _about_agent(payload, principal.agent_id)
        if recheck and not receiver.done():
            fresh = await current_principal(ctx, websocket)
            if fresh is None:
                stream.ended = True
            else:
                stream.allowed["inboxes"] = fresh.inbox_ids
        if stream.ended:
            await websocket.close(code=4401, reason="session ended")
            return


async def _stop(receiver: asyncio.Task[None] | None) -> None:
    """End the task reading the client, and collect its end (cancelled, disconnected) so it
    is never reported as lost."""
    if receiver is None:
        return
    if not receiver.done():
        receiver.cancel()
    try:
        await receiver
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:  # noqa: S110 - its end was already handled above
        pass


async def _catch_up(
    ctx: WebContext,
    send: Send,
    principal: Principal,
    after: str | None,
) -> str | None:
    """Replay what the client missed (or say resync); return the last id it has."""
    bus = ctx.inbox.bus
    if after:
        try:
            parse_id(after)
        except ValueError:
            await send('{"type":"resync","reason":"invalid last_event_id"}')
            after = None
    if not after:
        last = await bus.last_event_id()
        await send(json.dumps({"type": "ready", "last_event_id": last}))
        return last
    while True:
        page = await bus.replay(after, REPLAY_PAGE)
        if page is None:
            RESYNCS.inc()
            await send('{"type":"resync","reason":"events were trimmed"}')
            last = await bus.last_event_id()
            break
        for event_id, payload in page:
            if event_route(payload).reaches(principal.agent_id,
                                            principal.inbox_ids.__contains__):
                await send(_frame(event_id, payload))
                EVENTS_DELIVERED.inc()
            after = event_id
        last = after
        if len(page) < REPLAY_PAGE:
            break
    await send(json.dumps({"type": "ready", "last_event_id": last}))
    return last


async def _receive(websocket: WebSocket, send: Send, send_lock: asyncio.Lock) -> None:
    while True:
        text = await websocket.receive_text()
        try:
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError, RecursionError):
            continue
        if kind == "ping":
            async with send_lock:
                await send('{"type":"pong"}')


def _about_agent(payload: bytes, agent_id: int) -> bool:
    """Whether an event says this agent's access may have changed."""
    if b'"agent.updated"' not in payload:
        return False
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    return bool(data.get("type") == "agent.updated" and data.get("agent_id") == agent_id)


