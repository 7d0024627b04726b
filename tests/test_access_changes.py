"""Access changes act at once on open websockets: deactivation, memberships, logout, password."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlmodel import col
from websockets.exceptions import ConnectionClosed

from config import Settings
from hub.types import utcnow
from inbox.agents import principals_for, token_hash
from inbox.db import Database
from inbox.models import AgentSession
from tests.helpers import PASSWORD, Socket, Stack, message, of_type, running_stack
from web import realtime
from web.http import SESSION_COOKIE

# Far below the websocket's periodic 30 s session check: closing sooner shows the event did it.
PROMPTLY = 10.0


async def _closed(socket: Socket) -> ConnectionClosed:
    """Wait for the server to close the socket (events before the close are skipped)."""
    try:
        while True:
            await asyncio.wait_for(socket.conn.recv(), PROMPTLY)
    except ConnectionClosed as exc:
        return exc


async def test_deactivation_ends_sessions_and_closes_open_websockets(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    other_tab = await stack.login("alice")
    sockets = [await alice.ws(), await other_tab.ws()]
    watcher = await admin.ws()
    # Alice is online: auto-assignment gives her the new support conversation.
    await stack.inbound("support", [message("d-1", "help me, Alice", "ada")])
    created = await watcher.wait_event(of_type("conversation.assigned"))
    conversation = created["event"]["conversation"]
    assert conversation["assignee_id"] == stack.ids["alice"]

    response = await admin.http.patch(f"/api/v1/admin/agents/{stack.ids['alice']}",
                                      json={"is_active": False})
    assert response.status_code == 200 and response.json()["is_active"] is False
    for socket in sockets:
        closed = await _closed(socket)
        assert closed.rcvd is not None and closed.rcvd.code == 4401
    event = await watcher.wait_event(of_type("agent.updated"))
    assert event["event"]["agent_id"] == stack.ids["alice"]
    assert event["event"]["is_active"] is False and "deactivated" in event["event"]["changes"]
    # Her open conversation went back to the queue.
    released = await watcher.wait_event(of_type("conversation.assigned", id=conversation["id"],
                                                 assignee_id=None))
    assert released["event"]["conversation"]["waiting_since"] is not None

    assert (await alice.http.get("/api/v1/me")).status_code == 401
    assert (await other_tab.http.get("/api/v1/me")).status_code == 401
    login = await stack.client().post("/api/v1/auth/login", json={
        "email": "alice@example.com", "password": PASSWORD})
    assert login.status_code == 401
    # Reactivated, Alice logs in again with her password.
    await admin.http.patch(f"/api/v1/admin/agents/{stack.ids['alice']}",
                           json={"is_active": True})
    assert (await stack.login("alice")).id == stack.ids["alice"]
    await watcher.close()


async def test_removed_membership_stops_that_inbox_events_at_once(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    alice_ws = await alice.ws()
    admin_ws = await admin.ws()
    await stack.inbound("support", [message("m-1", "before", "ada")])
    await alice_ws.wait_event(of_type("message.created", text="before"))

    response = await admin.http.patch(f"/api/v1/admin/agents/{stack.ids['alice']}",
                                      json={"inbox_ids": [stack.ids["sales"]]})
    assert response.status_code == 200
    changed = await alice_ws.wait_event(of_type("agent.updated"))
    assert changed["event"]["changes"] == ["inboxes"]

    await stack.inbound("support", [message("m-2", "after, support", "ada")])
    # The admin sees it first, so it is in the stream before the sales message below.
    await admin_ws.wait_event(of_type("message.created", text="after, support"))
    await stack.inbound("sales", [message("m-3", "after, sales", "sam")])
    await alice_ws.wait_event(of_type("message.created", text="after, sales"))
    texts = [f["event"].get("message", {}).get("text") for f in alice_ws.frames
             if f["type"] == "event"]
    assert "after, support" not in texts
    assert alice_ws.conn.close_code is None  # still open: only her inboxes changed
    for socket in (alice_ws, admin_ws):
        await socket.close()


async def test_logout_closes_that_session_socket_only(stack: Stack) -> None:
    alice = await stack.login("alice")
    other_tab = await stack.login("alice")
    leaving = await alice.ws()
    staying = await other_tab.ws()
    assert (await alice.http.post("/api/v1/auth/logout")).status_code == 204
    closed = await _closed(leaving)
    assert closed.rcvd is not None and closed.rcvd.code == 4401
    # The other session keeps its socket, and still gets events.
    await stack.inbound("support", [message("l-1", "still here?", "ada")])
    await staying.wait_event(of_type("message.created", text="still here?"))
    await staying.close()


async def test_password_change_closes_the_other_sessions_sockets(stack: Stack) -> None:
    alice = await stack.login("alice")
    other_tab = await stack.login("alice")
    kept = await alice.ws()
    ended = await other_tab.ws()
    response = await alice.http.post("/api/v1/me/password", json={
        "current_password": PASSWORD, "new_password": "a new passphrase"})
    assert response.status_code == 204
    closed = await _closed(ended)
    assert closed.rcvd is not None and closed.rcvd.code == 4401
    await stack.inbound("support", [message("p-1", "after the change", "ada")])
    await kept.wait_event(of_type("message.created", text="after the change"))
    await kept.close()


async def test_an_agents_changes_reach_only_those_who_may_see_them(stack: Stack) -> None:
    """Alice (support) and Bob (sales) share no inbox: Bob learns nothing of Alice going
    away; a colleague of hers in support and every admin do, and so does she."""
    await stack.add_agent("carol", inboxes=("support",))
    agents = {name: await stack.login(name) for name in ("alice", "bob", "carol", "admin")}
    watching = {name: await agent.ws() for name, agent in agents.items()}
    admin = agents["admin"]
    changed = await agents["alice"].http.put("/api/v1/me/availability",
                                             json={"availability": "away"})
    assert changed.status_code == 200, changed.text
    def about(agent_id: int) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e["type"] == "agent.updated" and e["agent_id"] == agent_id

    about_alice = about(stack.ids["alice"])
    for name in ("alice", "carol", "admin"):
        event = await watching[name].wait_event(about_alice)
        assert event["event"]["availability"] == "away"
    # Bob's socket hears the next event for every agent (an admin's change), never Alice's.
    await admin.http.put("/api/v1/me/availability", json={"availability": "away"})
    await watching["bob"].wait_event(about(stack.ids["admin"]))
    seen = [f for f in watching["bob"].frames if f["type"] == "event"
            and f["event"]["type"] == "agent.updated"]
    assert [f["event"]["agent_id"] for f in seen] == [stack.ids["admin"]]


async def test_the_periodic_check_closes_an_expired_sessions_socket_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Expiry announces itself with no event: the periodic check of every socket finds it.
    monkeypatch.setattr(realtime, "RECHECK_SECONDS", 0.3)
    async with running_stack(settings) as stack:
        alice, other_tab, bob = (await stack.login("alice"), await stack.login("alice"),
                                 await stack.login("bob"))
        ending, kept, bobs = await alice.ws(), await other_tab.ws(), await bob.ws()
        token = alice.http.cookies.get(SESSION_COOKIE)
        assert token
        db = Database(settings.sqlalchemy_url)
        try:
            async with db.write() as session:
                await session.exec(update(AgentSession)  # type: ignore[call-overload]
                                   .where(col(AgentSession.token_hash) == token_hash(token))
                                   .values(expires_at=utcnow() - timedelta(seconds=1)))
        finally:
            await db.close()
        closed = await _closed(ending)
        assert closed.rcvd is not None and closed.rcvd.code == 4401
        await stack.inbound("support", [message("x-1", "still there?", "ada")])
        await kept.wait_event(of_type("message.created", text="still there?"))
        await stack.inbound("sales", [message("x-2", "and you?", "sam")])
        await bobs.wait_event(of_type("message.created", text="and you?"))
        for socket in (kept, bobs):
            await socket.close()


async def test_checking_many_sessions_costs_what_checking_one_does(stack: Stack) -> None:
    agents = [await stack.login(name) for name in ("admin", "alice", "bob") for _ in range(4)]
    tokens = [a.http.cookies.get(SESSION_COOKIE) or "" for a in agents]
    db = Database(stack.settings.sqlalchemy_url)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    try:
        async with db.read() as session:
            await principals_for(session, tokens[:1])  # the connection's own set-up first
            event.listen(db.engine.sync_engine, "before_cursor_execute", count)
            one = await principals_for(session, tokens[4:5])
            for_one = len(statements)
            statements.clear()
            every = await principals_for(session, [*tokens, "not-a-session"])
    finally:
        await db.close()
    # One statement: the sessions, and the inboxes and teams of their agents.
    assert for_one == 1 and len(statements) == 1
    assert set(every) == set(tokens)  # the unknown token: no principal
    assert one[tokens[4]] == every[tokens[4]]
    assert every[tokens[4]].agent_id == stack.ids["alice"]
    assert every[tokens[0]].role == "admin"
    assert every[tokens[0]].inbox_ids == {stack.ids["support"], stack.ids["sales"]}
    assert every[tokens[8]].inbox_ids == {stack.ids["sales"]}
