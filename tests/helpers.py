"""Test helpers: a seeded Switchboard, agent clients, signed webhooks, a reply receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect

from channels.api import sign, signed_headers
from config import Settings
from inbox.agents import add_to_inbox, create_agent
from inbox.db import Database
from inbox.inboxes import create_inbox
from tests.services import LoopbackServer, free_port

PASSWORD = "correct horse battery"
SUPPORT_SECRET = "support-secret-0123456789"
SALES_SECRET = "sales-secret-0123456789"


class Receiver:
    """A local HTTP server standing in for a system that receives api-channel replies."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/replies"
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []  # as they arrived, to check signatures over
        self.answers: list[tuple[int, Any]] = []  # queued (status, json) answers
        self.arrived = asyncio.Event()

        async def replies(request: Request) -> Response:
            body = await request.body()
            self.received.append(json.loads(body))
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            self.arrived.set()
            if self.answers:
                status, data = self.answers.pop(0)
                return JSONResponse(data, status_code=status)
            return JSONResponse({"id": f"ext-{len(self.received)}"})

        app = Starlette(routes=[Route("/replies", replies, methods=["POST"])])
        self._served = LoopbackServer(app, self.port)

    async def start(self) -> None:
        """Serve until stop()."""
        await self._served.start()

    async def stop(self) -> None:
        """Stop serving."""
        await self._served.stop()

    async def wait(self, count: int, timeout: float = 15) -> None:
        """Wait until `count` replies arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} replies, got {len(self.received)}")
            await asyncio.sleep(0.02)


@dataclass
class Agent:
    """A logged-in agent: an HTTP client with cookie and CSRF header."""

    id: int
    email: str
    http: httpx.AsyncClient
    stack: Stack

    async def ws(self, last_event_id: str | None = None, origin: str | None = None) -> Socket:
        """Open the agent websocket and wait for its ready frame."""
        return await self.stack.ws(self.http, last_event_id=last_event_id, origin=origin)


@dataclass
class Socket:
    """An agent websocket with helpers to wait for frames."""

    conn: ClientConnection
    ready: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    unread: list[dict[str, Any]] = field(default_factory=list)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next frame (frames received before `ready` come first)."""
        if self.unread:
            return self.unread.pop(0)
        frame = json.loads(await asyncio.wait_for(self.conn.recv(), timeout))
        self.frames.append(frame)
        return frame  # type: ignore[no-any-return]

    async def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The next event frame whose event matches `predicate` (others are kept in frames)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event; got {[_brief(f) for f in self.frames]}")
            try:
                frame = await self.next(left)
            except TimeoutError:
                continue
            if frame["type"] == "event" and predicate(frame["event"]):
                return frame

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Frames that arrive within `seconds` (to assert that nothing arrives)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(await self.next(left))
            except TimeoutError:
                break
        return got

    async def close(self) -> None:
        """Close the websocket."""
        await self.conn.close()


def _brief(frame: dict[str, Any]) -> str:
    return frame.get("event", {}).get("type", frame["type"]) if "event" in frame else frame["type"]


def of_type(event_type: str, /, **match: Any) -> Callable[[dict[str, Any]], bool]:
    """Predicate: an event of this type whose message/conversation fields match."""

    def predicate(event: dict[str, Any]) -> bool:
        if event["type"] != event_type:
            return False
        subject = event.get("message") or event.get("conversation") or {}
        return all(subject.get(k) == v for k, v in match.items())

    return predicate


@dataclass
class Stack:
    """A running Switchboard with two api inboxes (support, sales) and three agents."""

    settings: Settings
    base: str
    receiver: Receiver = field(default_factory=Receiver)
    ids: dict[str, int] = field(default_factory=dict)
    _clients: list[httpx.AsyncClient] = field(default_factory=list)
    app: Any = None  # the served Starlette app (in-process stacks): app.state.switchboard

    async def seed(self) -> None:
        """Admin, alice (support), bob (sales); support replies go to the receiver."""
        await self.receiver.start()
        db = Database(self.settings.sqlalchemy_url)
        try:
            async with db.write() as s:
                support = await create_inbox(s, name="Support", channel="api", settings={
                    "secret": SUPPORT_SECRET, "outbound_url": self.receiver.url})
                sales = await create_inbox(s, name="Sales", channel="api",
                                           settings={"secret": SALES_SECRET})
                admin = await create_agent(s, email="admin@example.com", name="Admin",
                                           password=PASSWORD, role="admin")
                alice = await create_agent(s, email="alice@example.com", name="Alice",
                                           password=PASSWORD)
                bob = await create_agent(s, email="bob@example.com", name="Bob",
                                         password=PASSWORD)
                assert support.id and sales.id and alice.id and bob.id and admin.id
                await add_to_inbox(s, agent_id=alice.id, inbox_id=support.id)
                await add_to_inbox(s, agent_id=bob.id, inbox_id=sales.id)
                self.ids = {"support": support.id, "sales": sales.id, "admin": admin.id,
                            "alice": alice.id, "bob": bob.id}
        finally:
            await db.close()

    async def close(self) -> None:
        """Close clients and the receiver."""
        for client in self._clients:
            await client.aclose()
        await self.receiver.stop()

    def client(self) -> httpx.AsyncClient:
        """An anonymous HTTP client for this stack."""
        client = httpx.AsyncClient(base_url=self.base, timeout=15)
        self._clients.append(client)
        return client

    async def add_agent(self, name: str, *, role: str = "agent",
                        inboxes: tuple[str, ...] = ()) -> int:
        """Create another agent (`name`@example.com, the test password), a member of these
        inboxes (by name: support, sales); their id is kept in `ids` for `login`."""
        from inbox.agents import add_to_inbox, create_agent
        from inbox.db import Database

        db = Database(self.settings.sqlalchemy_url)
        try:
            async with db.write() as session:
                agent = await create_agent(session, email=f"{name}@example.com",
                                           name=name.title(), password=PASSWORD, role=role)
                assert agent.id is not None
                for inbox in inboxes:
                    await add_to_inbox(session, agent_id=agent.id, inbox_id=self.ids[inbox])
        finally:
            await db.close()
        self.ids[name] = agent.id
        return agent.id

    async def login(self, name: str) -> Agent:
        """Log in a seeded agent by name (admin, alice, bob)."""
        client = self.client()
        email = f"{name}@example.com"
        response = await client.post("/api/v1/auth/login",
                                     json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return Agent(id=self.ids[name], email=email, http=client, stack=self)

    async def ws(
        self,
        http: httpx.AsyncClient | None,
        *,
        last_event_id: str | None = None,
        origin: str | None = None,
    ) -> Socket:
        """Open an agent websocket with the client's session cookie."""
        url = self.base.replace("http", "ws", 1) + "/api/v1/ws"
        if last_event_id:
            url += f"?last_event_id={last_event_id}"
        headers = {}
        if http is not None:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        # max_queue=None: tests leave frames unread, and a full queue would stall the close.
        conn = await connect(url, additional_headers=headers, max_queue=None,
                             origin=origin or f"http://localhost:{self.settings.port}")  # type: ignore[arg-type]
        socket = Socket(conn, ready={})
        while True:
            frame = await socket.next()
            if frame["type"] == "ready":
                socket.ready = frame
                socket.unread = [f for f in socket.frames if f["type"] == "event"]
                return socket

    async def inbound(
        self,
        inbox: str,
        messages: list[dict[str, Any]] | None = None,
        *,
        statuses: list[dict[str, Any]] | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a signed api-channel webhook to an inbox by name."""
        payload: dict[str, Any] = {}
        if messages is not None:
            payload["messages"] = messages
        if statuses is not None:
            payload["statuses"] = statuses
        body = json.dumps(payload).encode()
        key = secret or (SUPPORT_SECRET if inbox == "support" else SALES_SECRET)
        client = self.client() if not self._clients else self._clients[0]
        return await client.post(f"/webhooks/api/{self.ids[inbox]}", content=body,
                                 headers=headers if headers is not None
                                 else signed_headers(key, body))


def message(ext_id: str, text: str, sender: str = "cust-1", **extra: Any) -> dict[str, Any]:
    """An inbound api-channel message."""
    return {"id": ext_id, "sender": {"id": sender, "name": sender.title()}, "text": text, **extra}


async def eventually(check: Callable[[], Any], timeout: float = 15, interval: float = 0.05) -> Any:
    """Await `check()` until it returns something truthy (or fail after timeout)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


async def opened_settings(stack: Stack, inbox_id: int) -> dict[str, Any]:
    """An inbox's settings as the adapters get them: secrets opened with the stack's key."""
    from hub.secrets import secret_box
    from inbox.inboxes import inbox_settings

    db = Database(stack.settings.sqlalchemy_url)
    box = secret_box(stack.settings.secret_key.get_secret_value(), stack.settings.data_dir)
    try:
        async with db.read() as session:
            found = await inbox_settings(session, inbox_id, box)
    finally:
        await db.close()
    assert found is not None, f"no inbox {inbox_id}"
    return found[1]


async def count_rows(stack: Stack, model: type, *where: object) -> int:
    """How many rows of a table match, read straight from the stack's database."""
    from sqlalchemy import func
    from sqlmodel import select

    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.read() as session:
            return int((await session.exec(
                select(func.count()).select_from(model).where(*where))).one())
    finally:
        await db.close()


async def _serve(server: uvicorn.Server) -> bool:
    """Run the server; False when it could not start listening. (uvicorn exits the process
    then: SystemExit out of a task would stop the test's event loop itself.)"""
    try:
        await server.serve()
    except SystemExit:
        return False
    return True


def _on_port(settings: Settings, port: int) -> Settings:
    public = settings.public_url.replace(f":{settings.port}", f":{port}") \
        if settings.public_url else settings.public_url
    return settings.model_copy(update={"port": port, "public_url": public})


@contextlib.asynccontextmanager
async def running_stack(settings: Settings) -> AsyncIterator[Stack]:
    """Serve Switchboard (web + worker) in this process on settings.port, seeded."""
    from hub.app import create_app
    from hub.cli import WS_MAX_BYTES

    for _ in range(5):
        app = create_app(settings, with_worker=True)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on",
            ws="websockets-sansio", ws_per_message_deflate=False, ws_max_size=WS_MAX_BYTES,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(_serve(server))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            break
        if task.result():
            raise RuntimeError("server stopped during start-up")
        # The free port was taken between choosing it and binding it (by another test's
        # server, or as a client connection's own port): another one.
        settings = _on_port(settings, free_port())
    else:
        raise RuntimeError("no free port could be bound in five tries")
    stack = Stack(settings=settings, base=f"http://127.0.0.1:{settings.port}", app=app)
    try:
        await stack.seed()
        yield stack
    finally:
        await stack.close()
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


__all__ = ["Agent", "Receiver", "Socket", "Stack", "eventually", "message", "of_type", "sign"]


async def make_team(stack: Stack, name: str, members: tuple[str, ...],
                    inboxes: tuple[str, ...] = ()) -> int:
    """A team (through the admin API) of these agents and inboxes, by name; its id."""
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/teams", json={
        "name": name, "member_ids": [stack.ids[m] for m in members],
        "inbox_ids": [stack.ids[i] for i in inboxes]})
    assert made.status_code == 201, made.text
    team_id: int = made.json()["id"]
    return team_id
