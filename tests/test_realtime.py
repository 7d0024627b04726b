"""The agent websocket on both shapes: resume after reconnect, resync, live actions."""

from __future__ import annotations

import asyncio
import time

from hub.bus import parse_id
from tests.helpers import Stack, message, of_type


async def test_reconnect_with_last_event_id_replays_what_was_missed(stack: Stack) -> None:
    alice = await stack.login("alice")
    ws = await alice.ws()
    await stack.inbound("support", [message("m-1", "before the drop", "ada")])
    seen = await ws.wait_event(of_type("message.created", direction="in"))
    last_id = seen["id"]
    await ws.close()

    # While Alice is away: a message in her inbox, and one in an inbox she cannot see.
    await stack.inbound("sales", [message("s-1", "not for alice", "ben")])
    await stack.inbound("support", [message("m-2", "while away", "ada")])
    await stack.inbound("support", [message("m-3", "still away", "ada")])

    admin = await stack.login("admin")
    admin_ws = await admin.ws(last_event_id=last_id)
    waiting = {"while away", "still away"}  # handled concurrently: in either order
    while waiting:
        got = await admin_ws.wait_event(lambda e: e["type"] == "message.created"
                                        and e["message"]["text"] in waiting)
        waiting.discard(got["event"]["message"]["text"])
    await admin_ws.close()

    back = await alice.ws(last_event_id=last_id)
    replayed = [f for f in back.frames if f["type"] == "event"]
    texts = [f["event"]["message"]["text"] for f in replayed
             if f["event"]["type"] == "message.created"]
    assert sorted(texts) == ["still away", "while away"]
    assert all(f["event"]["inbox_id"] == stack.ids["support"] for f in replayed)
    ids = [parse_id(f["id"]) for f in replayed]
    assert ids == sorted(ids) and ids[0] > parse_id(last_id)
    assert parse_id(back.ready["last_event_id"]) >= ids[-1]

    # And it goes on live after the replay, with nothing twice.
    await stack.inbound("support", [message("m-4", "live again", "ada")])
    live = await back.wait_event(of_type("message.created", text="live again"))
    assert parse_id(live["id"]) > ids[-1]
    all_ids = [f["id"] for f in back.frames if f["type"] == "event"]
    assert len(all_ids) == len(set(all_ids))
    await back.close()


async def test_resume_from_trimmed_events_gets_an_explicit_resync(stack: Stack) -> None:
    alice = await stack.login("alice")
    ws = await alice.ws()
    await stack.inbound("support", [message("m-1", "hello", "ada")])
    old = (await ws.wait_event(of_type("message.created")))["id"]
    await ws.close()
    bus = stack_bus(stack)
    await bus.start()
    try:
        for n in range(150):
            await bus.broadcast(b'{"inbox_id": -1, "n": %d}' % n, 100)
        # The durable consumers of the events stream (webhooks, CRM) keep it from being
        # trimmed past what they have not acknowledged: once they have, the next trim
        # drops the old event, and a resume from it is told to resync.
        deadline = time.monotonic() + 20
        while True:
            back = await alice.ws(last_event_id=old)
            if [f["type"] for f in back.frames] == ["resync", "ready"] \
                    or time.monotonic() > deadline:
                break
            await back.close()
            await bus.broadcast(b'{"inbox_id": -1, "n": -1}', 100)
            await asyncio.sleep(0.2)
    finally:
        await bus.close()
    assert [f["type"] for f in back.frames] == ["resync", "ready"]
    garbage = await alice.ws(last_event_id="not-an-id")
    assert garbage.frames[0]["type"] == "resync"
    for socket in (back, garbage):
        await socket.close()


def stack_bus(stack: Stack):  # type: ignore[no-untyped-def]
    from hub.app import build_bus

    return build_bus(stack.settings)


async def test_agent_actions_are_pushed_live_to_other_agents(stack: Stack) -> None:
    alice = await stack.login("alice")
    admin = await stack.login("admin")
    admin_ws = await admin.ws()
    await stack.inbound("support", [message("m-1", "help", "ada")])
    created = await admin_ws.wait_event(of_type("conversation.created"))
    cid = created["event"]["conversation"]["id"]

    await alice.http.post(f"/api/v1/conversations/{cid}/assignment",
                          json={"assignee_id": stack.ids["alice"]})
    assigned = await admin_ws.wait_event(of_type("conversation.assigned", id=cid))
    assert assigned["event"]["conversation"]["assignee_id"] == stack.ids["alice"]
    line = await admin_ws.wait_event(of_type("message.created", kind="activity"))
    assert line["event"]["message"]["text"] == "Alice assigned this conversation to Alice"

    await alice.http.post(f"/api/v1/conversations/{cid}/status", json={"status": "resolved"})
    status = await admin_ws.wait_event(of_type("conversation.status_changed", id=cid))
    assert status["event"]["conversation"]["status"] == "resolved"
    assert status["event"]["previous_status"] == "open"

    await alice.http.post(f"/api/v1/conversations/{cid}/read")
    read = await admin_ws.wait_event(of_type("conversation.read", id=cid))
    assert read["event"]["conversation"]["unread_count"] == 0

    # An agent (not a lead) assigns only to themselves.
    bad = await alice.http.post(f"/api/v1/conversations/{cid}/assignment",
                                json={"assignee_id": stack.ids["bob"]})
    assert bad.status_code == 403
    await admin_ws.close()


async def test_round_robin_assigns_only_online_available_members(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    # Bob joins support too; nobody has a websocket yet, so nobody is online.
    await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                         json={"agent_ids": [stack.ids["alice"], stack.ids["bob"]]})
    bob = await stack.login("bob")
    admin_ws = await admin.ws()
    await stack.inbound("support", [message("o-1", "nobody online", "c1")])
    first = await admin_ws.wait_event(of_type("message.created", text="nobody online"))
    assert first["event"]["conversation"]["assignee_id"] is None

    alice_ws, bob_ws = await alice.ws(), await bob.ws()
    # Someone came online: the waiting conversation is assigned first (newcomers would wait
    # behind it in the queue until then).
    await admin_ws.wait_event(lambda e: e["type"] == "conversation.assigned"
                              and e["conversation"]["id"] == first["event"]["conversation"]["id"])
    assignees = []
    for n in range(4):
        await stack.inbound("support", [message(f"rr-{n}", f"rr {n}", f"customer-{n}")])
        got = await admin_ws.wait_event(of_type("message.created", text=f"rr {n}"))
        assignees.append(got["event"]["conversation"]["assignee_id"])
    assert sorted(assignees) == sorted([stack.ids["alice"], stack.ids["bob"]] * 2)
    assert assignees[0] != assignees[1] and assignees[2] != assignees[3]

    away = await bob.http.put("/api/v1/me/availability", json={"availability": "away"})
    assert away.json()["availability"] == "away"
    for n in range(2):
        await stack.inbound("support", [message(f"aw-{n}", f"away {n}", f"later-{n}")])
        got = await admin_ws.wait_event(of_type("message.created", text=f"away {n}"))
        assert got["event"]["conversation"]["assignee_id"] == stack.ids["alice"]
    for ws in (admin_ws, alice_ws, bob_ws):
        await ws.close()


async def test_snoozed_conversation_wakes_up_when_its_time_comes(stack: Stack) -> None:
    from datetime import timedelta

    from sqlmodel import update

    from hub.types import utcnow
    from inbox.db import Database
    from inbox.models import Conversation

    alice = await stack.login("alice")
    ws = await alice.ws()
    await stack.inbound("support", [message("s-1", "call me tomorrow", "ada")])
    cid = (await ws.wait_event(of_type("conversation.created")))["event"]["conversation"]["id"]
    until = (utcnow() + timedelta(hours=1)).isoformat()
    await alice.http.post(f"/api/v1/conversations/{cid}/status",
                          json={"status": "snoozed", "snoozed_until": until})
    await ws.wait_event(of_type("conversation.status_changed", status="snoozed"))
    # The worker looks every 0.5 s; an hour early, nothing wakes.
    early = await ws.quiet(1.5)
    assert not [f for f in early if f["event"]["type"] == "conversation.status_changed"]
    conv = (await alice.http.get(f"/api/v1/conversations/{cid}")).json()
    assert conv["status"] == "snoozed"
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await session.exec(update(Conversation).values(  # type: ignore[call-overload]
                snoozed_until=utcnow() - timedelta(seconds=1)))
    finally:
        await db.close()
    woke = await ws.wait_event(of_type("conversation.status_changed", status="open"))
    assert woke["event"]["previous_status"] == "snoozed"
    line = await ws.wait_event(of_type("message.created", kind="activity",
                                       text="The snooze ended"))
    assert line["event"]["conversation"]["snoozed_until"] is None
    await ws.close()
