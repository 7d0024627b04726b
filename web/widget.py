"""The chat widget's side of the web: its script, its small HTTP API and its websocket.

Visitors authenticate with a signed visitor token (channels/webchat.py), sent as a bearer
header or in the websocket's first frame — never a cookie, so no CSRF. Each inbox lists the
website origins allowed to embed it; others are refused on HTTP (CORS) and websocket alike.
A visitor only ever sees their own thread's messages, never notes or activity lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from channels.base import BadPayload
from channels.webchat import (
    TokenRefused,
    Visitor,
    client_message_id,
    is_open,
    issue_token,
    new_visitor,
    origin_allowed,
    read_token,
    verify_identifier,
    visit_facts,
    visitor_message,
)
from hub.bus import INBOUND, BusUnavailable
from hub.events import ConversationTyping
from hub.identity import InvalidIdentity
from hub.realtime import RESYNC, Listener
from hub.types import encode, utcnow
from inbox import csat
from inbox.assignment import online_member_count, online_member_counts
from inbox.delivery import visitor_receipt
from inbox.inboxes import inboxes_of_channel
from inbox.visitors import (
    agent_first_names,
    contact_of,
    event_shape,
    leave_email,
    remember_visit,
    thread_conversation,
    visitor_attachment,
    visitor_thread,
)
from web.context import WebContext, web_context
from web.directory import DirectoryUnavailable
from web.files import attachment_response
from web.http import HTTPProblem, act, client_address, read_body, unavailable
from web.limits import RateLimiter
from web.realtime import TooSlow, dropped_as_slow, send_within

log = logging.getLogger("switchboard.widget")
STATIC = Path(__file__).with_name("static")
MAX_BODY = 16 * 1024
BURST = 10  # messages a visitor may send at once...
REFILL_SECONDS = 2.0  # ...then one more every this many seconds
# How often the widgets' "someone is there" state is checked (one query for all inboxes).
AVAILABILITY_SECONDS = 2.0


@dataclass(frozen=True)
class WidgetInbox:
    """A webchat inbox as the widget routes need it."""

    id: int
    name: str
    settings: dict[str, Any]


def _visitor_view(message: dict[str, Any], agents: dict[int, str] | None = None
                  ) -> dict[str, Any]:
    """What a visitor sees of a message (as events carry it): no agent ids, no internal
    fields."""
    view = {
        "id": message["id"],
        "from": "visitor" if message["direction"] == "in" else "agent",
        "text": message["text"],
        "at": message["accepted_at"],
    }
    agent = (agents or {}).get(message.get("agent_id") or 0)
    if message["direction"] == "out" and agent:
        view["agent"] = agent  # the first name of who answered, shown above the reply
    files = message.get("attachments") or ()
    if files:  # downloaded with the visitor's token from .../attachments/{id}
        view["attachments"] = [{k: f.get(k) for k in ("id", "filename", "content_type", "size")}
                               for f in files]
    if message.get("survey"):
        view["survey"] = True  # the satisfaction survey: the widget shows 1-5 under it
    external = str(message.get("external_id") or "")
    if message["direction"] == "in" and external.startswith("widget:"):
        view["client_id"] = external.rsplit(":", 1)[1]  # lets the widget settle its bubble
    return view


def widget_config(inbox: WidgetInbox, agents_online: bool) -> dict[str, Any]:
    """What the widget shows of its inbox: name, greeting, colour, and whether someone is
    there to answer (an agent online and available, within business hours)."""
    s = inbox.settings
    return {
        "name": inbox.name,
        "greeting": s.get("greeting") or "Hi! How can we help?",
        "accent_color": s.get("accent_color") or "#3157d5",
        "online": agents_online and is_open(s),
        "away_message": s.get("away_message")
        or "We're away right now. Leave your email and we'll get back to you.",
    }


class Availability:
    """Whether each widget inbox with a visitor connected to this process has someone to
    answer, checked for all of them in one query every `interval` seconds; a change (an
    agent comes online or goes away, business hours begin or end) reaches those visitors
    at once as a `config` frame, without a reload."""

    def __init__(self, ctx: WebContext, interval: float = AVAILABILITY_SECONDS) -> None:
        self._ctx = ctx
        self._interval = interval
        self._sockets: dict[int, set[VisitorSocket]] = {}
        self._online: dict[int, bool] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, socket: VisitorSocket, online: bool) -> None:
        """Follow a visitor's socket, whose widget was told `online` just now."""
        inbox_id = socket.inbox.id
        if inbox_id not in self._sockets:
            self._sockets[inbox_id] = set()
            self._online[inbox_id] = online
        self._sockets[inbox_id].add(socket)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="widget-availability")

    def unwatch(self, socket: VisitorSocket) -> None:
        """The visitor left."""
        found = self._sockets.get(socket.inbox.id)
        if found is not None:
            found.discard(socket)
            if not found:
                del self._sockets[socket.inbox.id]
                self._online.pop(socket.inbox.id, None)

    async def _run(self) -> None:
        while self._sockets:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception as exc:  # the database may be down: try again next time
                log.warning("could not check widget availability: %s", exc)

    async def check(self) -> None:
        """Look once, and tell the visitors of every inbox whose availability changed."""
        ids = sorted(self._sockets)
        if not ids:
            return
        async with self._ctx.inbox.db.read() as session:
            counts = await online_member_counts(
                session, inbox_ids=ids, now=utcnow(),
                presence_seconds=self._ctx.settings.presence_seconds)
        for inbox_id in ids:
            sockets = list(self._sockets.get(inbox_id, ()))
            if not sockets:
                continue
            config = widget_config(sockets[0].inbox, counts.get(inbox_id, 0) > 0)
            if config["online"] == self._online.get(inbox_id):
                continue
            self._online[inbox_id] = config["online"]
            for socket in sockets:
                with contextlib.suppress(Exception):  # a socket closing meanwhile
                    await socket.send({"type": "config", "config": config})


@dataclass
class WidgetState:
    """What the widget keeps in each web process: the visitors' rate limits, the limits on
    anonymous traffic (sessions and open websockets per address and in all) and the
    availability watcher. One per application (on `app.state`), made on first use."""

    limiter: RateLimiter
    sessions: RateLimiter
    availability: Availability
    sockets_per_address: int
    sockets_total: int
    open_sockets: Counter[str] = field(default_factory=Counter)
    open_total: int = 0

    def take_socket(self, address: str) -> bool:
        """Count a new websocket from `address`, unless it is over a limit."""
        if (self.open_sockets[address] >= self.sockets_per_address
                or self.open_total >= self.sockets_total):
            return False
        self.open_sockets[address] += 1
        self.open_total += 1
        return True

    def give_socket(self, address: str) -> None:
        """A websocket from `address` closed."""
        self.open_total -= 1
        self.open_sockets[address] -= 1
        if self.open_sockets[address] <= 0:
            del self.open_sockets[address]


def widget_state(conn: HTTPConnection) -> WidgetState:
    """The application's widget state."""
    found = getattr(conn.app.state, "widget", None)
    if not isinstance(found, WidgetState):
        ctx = web_context(conn)
        per_minute = ctx.settings.widget_sessions_per_minute
        found = WidgetState(
            limiter=RateLimiter(BURST, REFILL_SECONDS),
            sessions=RateLimiter(per_minute, 60.0 / per_minute),
            availability=Availability(ctx),
            sockets_per_address=ctx.settings.widget_sockets_per_address,
            sockets_total=ctx.settings.widget_sockets_total,
        )
        conn.app.state.widget = found
    return found


def _too_many(what: str, seconds: float) -> HTTPProblem:
    return HTTPProblem(429, "slow_down", f"too many {what}; wait a few seconds",
                       headers={"Retry-After": str(max(1, round(seconds)))})


async def _find_inbox(ctx: WebContext, public_token: str) -> WidgetInbox:
    # From the web process's copy of the inboxes: a visitor's message is accepted even
    # while the database is down.
    try:
        found = await ctx.directory.widget(public_token)
    except DirectoryUnavailable:
        raise unavailable("the chat") from None
    if found is None:
        raise HTTPProblem(404, "not_found", "no chat widget with this token")
    return WidgetInbox(found.id, found.name, found.settings)


def _cors(request: Request, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


async def _checked(request: Request) -> WidgetInbox:
    """The widget's inbox, refusing a website it may not be used from (403)."""
    inbox = await _find_inbox(web_context(request), request.path_params["public_token"])
    if not origin_allowed(inbox.settings, request.headers.get("origin")):
        raise HTTPProblem(403, "origin", "this website may not use this chat widget")
    return inbox


def _visitor_of(request: Request, inbox: WidgetInbox) -> Visitor:
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not token:
        raise HTTPProblem(401, "no_token", "start a session first")
    try:
        return read_token(inbox.settings["secret"], token, inbox_id=inbox.id)
    except TokenRefused as exc:
        raise HTTPProblem(401, "invalid_token", str(exc)) from None


async def _body_of(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_BODY)
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        raise HTTPProblem(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, "invalid_json", "the body must be a JSON object")
    return data


async def config_of(ctx: WebContext, inbox: WidgetInbox) -> dict[str, Any]:
    """The widget's config as of now (see widget_config)."""
    async with ctx.inbox.db.read() as session:
        online = await online_member_count(
            session, inbox_id=inbox.id, now=utcnow(),
            presence_seconds=ctx.settings.presence_seconds,
        )
    return widget_config(inbox, online > 0)


async def history(ctx: WebContext, visitor: Visitor) -> list[dict[str, Any]]:
    """The visitor's thread as the widget shows it."""
    async with ctx.inbox.db.read() as session:
        conversation = await thread_conversation(
            session, inbox_id=visitor.inbox_id, thread=visitor.thread
        )
        if conversation is None or conversation.id is None:
            return []
        thread = [event_shape(m) for m in await visitor_thread(
            session, conversation_id=conversation.id)]
        agents = await agent_first_names(session, {m["agent_id"] for m in thread
                                                   if m["agent_id"] is not None})
        views = [_visitor_view(m, agents) for m in thread]
        for view in views:
            if view.get("survey"):
                view["rated"] = conversation.csat_score  # what the visitor answered, if yet
        return views


async def accept(ctx: WebContext, limiter: RateLimiter, visitor: Visitor,
                 data: dict[str, Any]) -> str:
    """A visitor's message onto the bus (checked and rate-limited); its client id."""
    try:
        client_id = client_message_id(data.get("id"))
        message = visitor_message(visitor, client_id=client_id, text=data.get("text"),
                                  language=data.get("language"))
    except BadPayload as exc:
        raise HTTPProblem(422, "invalid_message", str(exc)) from None
    if not limiter.allow(visitor.identity.value):
        raise _too_many("messages", REFILL_SECONDS)
    try:
        await ctx.inbox.bus.add(INBOUND, encode(message))
    except BusUnavailable:
        raise unavailable("the chat") from None
    return client_id


async def preflight(request: Request) -> Response:
    """CORS preflight of the widget's API, for the websites allowed to use it."""
    await _checked(request)
    return _cors(request, Response(status_code=204))


async def session(request: Request) -> Response:
    """Start or resume a visitor session (optionally as a user the site vouches for)."""
    ctx = web_context(request)
    inbox = await _checked(request)
    data = await _body_of(request)
    state = widget_state(request)
    token = data.get("token")
    if not (isinstance(token, str) and token) and not state.sessions.allow(
            client_address(request)):
        # Resuming a session is free; starting new ones is what an address may not flood.
        raise _too_many("new chat sessions from your address", 60.0 / (
            ctx.settings.widget_sessions_per_minute))
    secret = inbox.settings["secret"]
    identifier = data.get("identifier")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    if identifier is not None:
        given = data.get("identifier_hash")
        verified = (isinstance(identifier, str) and 0 < len(identifier) <= 200
                    and isinstance(given, str) and verify_identifier(secret, identifier, given))
        if not verified:
            if inbox.settings.get("enforce_identity"):
                raise HTTPProblem(403, "identity", "identifier_hash does not match")
            identifier = None  # unverified claims never reach a verified user's thread
    visitor: Visitor | None = None
    if isinstance(token, str) and token:
        try:
            visitor = read_token(secret, token, inbox_id=inbox.id)
        except TokenRefused:
            visitor = None  # a stale or foreign token: start afresh, no error to show
    if visitor is None or visitor.identifier != identifier:
        visitor = new_visitor(inbox.id, name=name[:200] if name else None, identifier=identifier)
    await remember_visit(ctx.inbox.db, inbox_id=inbox.id, identity_value=visitor.identity.value,
                         facts=visit_facts(data.get("visit"), request.headers.get("user-agent")),
                         verified=visitor.identifier is not None)
    body = {
        "token": issue_token(secret, visitor),
        "config": await config_of(ctx, inbox),
        "messages": await history(ctx, visitor),
    }
    return _cors(request, JSONResponse(body))


async def messages(request: Request) -> Response:
    """The visitor's thread (GET) or a new message from the visitor (POST)."""
    ctx = web_context(request)
    inbox = await _checked(request)
    visitor = _visitor_of(request, inbox)
    if request.method == "GET":
        return _cors(request, JSONResponse({"messages": await history(ctx, visitor)}))
    data = await _body_of(request)
    client_id = await accept(ctx, widget_state(request).limiter, visitor, data)
    return _cors(request, JSONResponse({"id": client_id}, status_code=202))


async def attachment(request: Request) -> Response:
    """A file of a message in the visitor's own thread (404 for any other)."""
    inbox = await _checked(request)
    visitor = _visitor_of(request, inbox)
    async with web_context(request).inbox.db.read() as db_session:
        row = await visitor_attachment(
            db_session, inbox_id=inbox.id, thread=visitor.thread,
            attachment_id=request.path_params["attachment_id"])
    if row is None:
        raise HTTPProblem(404, "not_found", "no such file in your conversation")
    return _cors(request, await attachment_response(request, row, cache="private, no-store"))


async def email(request: Request) -> Response:
    """Leave an email address so the team can answer when nobody is online."""
    inbox = await _checked(request)
    visitor = _visitor_of(request, inbox)
    data = await _body_of(request)
    address = data.get("email")
    if not isinstance(address, str) or len(address) > 320:
        raise HTTPProblem(422, "invalid_email", "email must be an email address")
    if not widget_state(request).limiter.allow(visitor.identity.value):
        raise _too_many("requests", REFILL_SECONDS)
    identity = visitor.identity
    async with web_context(request).inbox.db.write() as db_session:
        contact = await contact_of(db_session, kind=identity.kind, value=identity.value)
        if contact is None or contact.id is None:
            raise HTTPProblem(409, "no_conversation", "send a message first")
        try:
            await leave_email(db_session, contact_id=contact.id, email=address)
        except InvalidIdentity as exc:
            raise HTTPProblem(422, "invalid_email", str(exc)) from None
    return _cors(request, JSONResponse({"email": address.strip().lower()}))


async def rate(request: Request) -> Response:
    """The visitor's answer to the satisfaction survey of their conversation: a score of
    1-5 and an optional comment (a later answer replaces it, within the survey's days)."""
    inbox = await _checked(request)
    visitor = _visitor_of(request, inbox)
    data = await _body_of(request)
    if not widget_state(request).limiter.allow(visitor.identity.value):
        raise _too_many("requests", REFILL_SECONDS)
    score, comment = data.get("score"), data.get("comment")
    if not isinstance(score, int) or isinstance(score, bool) or score not in csat.SCORES:
        raise HTTPProblem(422, "invalid_score", "score: a whole number from 1 to 5")
    if comment is not None and (not isinstance(comment, str) or len(comment) > csat.MAX_COMMENT):
        raise HTTPProblem(422, "invalid_comment",
                          f"comment: text of at most {csat.MAX_COMMENT} characters")
    ctx = web_context(request)
    async with ctx.inbox.db.read() as db_session:
        conversation = await thread_conversation(db_session, inbox_id=visitor.inbox_id,
                                                 thread=visitor.thread)
    if conversation is None or conversation.id is None:
        raise HTTPProblem(409, "no_conversation", "send a message first")
    await act(csat.answer(ctx.inbox, conversation.id, score=score, comment=comment,
                          via="widget"))
    return _cors(request, JSONResponse({"score": score}))


async def script(request: Request) -> Response:
    """The widget's script, for the websites' embed tag."""
    return FileResponse(STATIC / "widget.js", media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=300"})


async def socket(websocket: WebSocket) -> None:
    """The visitor's live connection: a hello with their token first, then both ways."""
    ctx = web_context(websocket)
    try:
        inbox = await _find_inbox(ctx, websocket.path_params["public_token"])
    except HTTPProblem:
        await websocket.close(code=1008, reason="no such widget")
        return
    if not origin_allowed(inbox.settings, websocket.headers.get("origin")):
        await websocket.close(code=1008, reason="origin not allowed")
        return
    state = widget_state(websocket)
    address = client_address(websocket)
    if not state.take_socket(address):
        await websocket.close(code=1013, reason="too many open chats, try again later")
        return
    try:
        await _visitor_socket(ctx, websocket, inbox, state)
    finally:
        state.give_socket(address)


async def _visitor_socket(ctx: WebContext, websocket: WebSocket, inbox: WidgetInbox,
                          state: WidgetState) -> None:
    await websocket.accept()
    try:
        hello = json.loads(await asyncio.wait_for(websocket.receive_text(), 10))
        visitor = read_token(inbox.settings["secret"], str(hello.get("token", "")),
                             inbox_id=inbox.id)
    except (TimeoutError, ValueError, AttributeError, RecursionError, TokenRefused) as exc:
        reason = str(exc) if isinstance(exc, TokenRefused) else "send a valid hello first"
        with contextlib.suppress(TooSlow):
            await send_within(websocket, json.dumps({"type": "error", "message": reason}),
                              ctx.settings.websocket_send_seconds)
            await websocket.close(code=4401, reason=reason[:100])
        return
    except WebSocketDisconnect:
        return
    try:
        await VisitorSocket(ctx, websocket, inbox, visitor, state).serve()
    except WebSocketDisconnect:
        pass
    except TooSlow as exc:
        dropped_as_slow("widget", exc)


async def demo(request: Request) -> Response:
    """A demo website with the widget, served only by `switchboard demo`."""
    ctx = web_context(request)
    inbox = await _demo_inbox(ctx) if ctx.settings.demo_page else None
    if inbox is None:
        raise HTTPProblem(404, "not_found", "no demo page here")
    page = DEMO_PAGE.replace("{{TOKEN}}", inbox.settings["public_token"])
    return Response(page, media_type="text/html")


async def _demo_inbox(ctx: WebContext) -> WidgetInbox | None:
    async with ctx.inbox.db.read() as db_session:
        rows = await inboxes_of_channel(db_session, "webchat")
    row = rows[0] if rows else None
    return None if row is None else WidgetInbox(row.id or 0, row.name,
                                                ctx.inbox.secrets.open_settings(row.settings))


_BASE = "/widget/api/{public_token:str}"
ROUTES: list[BaseRoute] = [
    Route("/demo", demo, methods=["GET"]),
    Route("/widget.js", script, methods=["GET"]),
    Route(_BASE + "/session", session, methods=["POST"]),
    Route(_BASE + "/session", preflight, methods=["OPTIONS"]),
    Route(_BASE + "/messages", messages, methods=["GET", "POST"]),
    Route(_BASE + "/messages", preflight, methods=["OPTIONS"]),
    Route(_BASE + "/email", email, methods=["POST"]),
    Route(_BASE + "/attachments/{attachment_id:str}", attachment, methods=["GET"]),
    Route(_BASE + "/attachments/{attachment_id:str}", preflight, methods=["OPTIONS"]),
    Route(_BASE + "/email", preflight, methods=["OPTIONS"]),
    Route(_BASE + "/csat", rate, methods=["POST"]),
    Route(_BASE + "/csat", preflight, methods=["OPTIONS"]),
    WebSocketRoute("/widget/ws/{public_token:str}", socket),
]


class VisitorSocket:
    """One visitor's live connection: their messages in, their thread's replies out."""

    def __init__(self, ctx: WebContext, websocket: WebSocket, inbox: WidgetInbox,
                 visitor: Visitor, state: WidgetState) -> None:
        self.ctx = ctx
        self.ws = websocket
        self.inbox = inbox
        self.visitor = visitor
        self.limiter = state.limiter
        self.availability = state.availability
        self.agent_names: dict[int, str] = {}
        self.conversation_id: int | None = None
        self.contact_id: int | None = None
        self.own_prefix = f"widget:{visitor.visitor_id}:"
        self.typing_state: tuple[bool, float] = (False, 0.0)
        self.lock = asyncio.Lock()
        self.listener: Listener | None = None

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await send_within(self.ws, json.dumps(frame), self.ctx.settings.websocket_send_seconds)

    async def serve(self) -> None:
        """Replay the thread, then relay both ways until the visitor leaves."""
        listener = self.ctx.fanout.listen_thread(self.inbox.id, self.visitor.visitor_id, None)
        self.listener = listener
        try:
            await self.ctx.fanout.wait_ready()
            listener.forget_missed()
            await self._resolve_thread()
            self.ctx.fanout.follow(listener, self.conversation_id)
            config = await config_of(self.ctx, self.inbox)
            await self.send({"type": "ready", "config": config,
                             "messages": await history(self.ctx, self.visitor)})
            self.availability.watch(self, config["online"])
            receiver = asyncio.create_task(self._receive())
            receiver.add_done_callback(lambda _: listener.wake())
            try:
                while not receiver.done():
                    item = await listener.next()
                    if item == RESYNC:
                        await self.send({"type": "reload",
                                         "messages": await history(self.ctx, self.visitor)})
                    elif isinstance(item, tuple):
                        await self._relay(json.loads(item[1]))
                if receiver.exception() is not None:
                    raise receiver.exception()  # type: ignore[misc]
            finally:
                receiver.cancel()
        finally:
            self.availability.unwatch(self)
            self.ctx.fanout.unlisten(listener)

    async def _resolve_thread(self) -> None:
        async with self.ctx.inbox.db.read() as session:
            conversation = await thread_conversation(
                session, inbox_id=self.inbox.id, thread=self.visitor.thread)
        if conversation is not None:
            self.conversation_id, self.contact_id = conversation.id, conversation.contact_id

    async def _relay(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message.created":
            message = event["message"]
            if message["direction"] == "in" and str(message["external_id"]).startswith(
                self.own_prefix
            ):
                # Our own message: its conversation is the thread from now on (a new one
                # starts when the old was resolved long ago).
                self.conversation_id = message["conversation_id"]
                self.contact_id = event["conversation"]["contact_id"]
                if self.listener is not None:
                    self.ctx.fanout.follow(self.listener, self.conversation_id)
            if message["conversation_id"] != self.conversation_id:
                return
            if message["kind"] != "message":
                return  # notes and activity lines are for agents only
            await self.send({"type": "message",
                             "message": _visitor_view(message, await self._agents(message))})
        elif kind == "conversation.typing":
            if (event["conversation_id"] == self.conversation_id
                    and event["by_agent_id"] is not None and event["mode"] == "reply"):
                await self.send({"type": "typing", "typing": event["typing"]})

    async def _agents(self, message: dict[str, Any]) -> dict[int, str]:
        """The first names of the agents who answered, read once per agent."""
        agent_id = message.get("agent_id")
        if isinstance(agent_id, int) and agent_id not in self.agent_names:
            try:
                async with self.ctx.inbox.db.read() as session:
                    self.agent_names |= await agent_first_names(session, {agent_id})
            except Exception as exc:  # the reply still shows, without the name
                log.warning("could not read an agent's name: %s", exc)
        return self.agent_names

    async def _receive(self) -> None:
        while True:
            try:
                frame = json.loads(await self.ws.receive_text())
            except (ValueError, RecursionError):
                await self.send({"type": "error", "message": "frames must be JSON"})
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "message":
                try:
                    client_id = await accept(self.ctx, self.limiter, self.visitor, frame)
                except HTTPProblem as problem:
                    await self.send({"type": "error", "id": frame.get("id"),
                                     "code": problem.code, "message": problem.message})
                    continue
                await self.send({"type": "ack", "id": client_id})
            elif kind == "typing":
                await self._typing(bool(frame.get("typing")))
            elif kind in ("delivered", "read"):
                await self._receipt(kind, frame.get("ids"))
            elif kind == "ping":
                await self.send({"type": "pong"})

    async def _receipt(self, status: Literal["delivered", "read"], ids: object) -> None:
        """The widget received or showed agents' replies: the team sees them as delivered
        or read, as on WhatsApp. Only replies of this visitor's own conversation move."""
        if self.conversation_id is None or not isinstance(ids, list):
            return
        try:
            await visitor_receipt(self.ctx.inbox, conversation_id=self.conversation_id,
                                  message_ids=[i for i in ids if type(i) is int], status=status)
        except Exception as exc:  # a receipt is a courtesy: the chat goes on without it
            log.warning("could not record a widget receipt: %s", exc)

    async def _typing(self, typing: bool) -> None:
        # Only changes, and at most one "still typing" every few seconds: typing is chatty.
        now = time.monotonic()
        previous, at = self.typing_state
        if self.conversation_id is None or self.contact_id is None or (
            typing == previous and now - at < 3
        ):
            return
        self.typing_state = (typing, now)
        await self.ctx.inbox.publish([ConversationTyping(
            inbox_id=self.inbox.id, at=utcnow(), conversation_id=self.conversation_id,
            contact_id=self.contact_id, by_agent_id=None, typing=typing,
        )])


DEMO_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Garden Supplies (Switchboard demo)</title>
<style>
body{margin:0;font-family:Georgia,serif;background:#f3efe6;color:#2b2a26}
header{padding:28px 40px;background:#2f5d3a;color:#fff}header h1{margin:0;font-size:28px}
main{padding:32px 40px;max-width:760px}p{font-size:17px;line-height:1.6}
/* A hostile page style: the widget must not be affected by it. */
button,div,textarea{font-family:"Comic Sans MS",cursive!important;color:red}
</style></head>
<body><header><h1>Acme Garden Supplies</h1></header>
<main><p>This is a demo website. The chat bubble in the corner is Switchboard's widget:
write something, then answer it from the agent inbox in another browser window.</p>
<p>The widget lives in a Shadow DOM, so this page's loud styles leave it alone.</p></main>
<script src="/widget.js" data-inbox="{{TOKEN}}" async></script>
</body></html>
"""
