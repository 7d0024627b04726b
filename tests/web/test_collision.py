"""Collision detection: who is viewing or typing, and a reply sent after someone else's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from hub.types import utcnow
from inbox.db import Database
from inbox.models import ConversationViewer
from tests.helpers import Stack, of_type
from tests.web.collab import open_conversation


def viewing(agent_id: int, on: bool) -> Callable[[dict[str, Any]], bool]:
    """Predicate: a viewing event of this agent."""

    def predicate(event: dict[str, Any]) -> bool:
        return (event["type"] == "conversation.viewing" and event["by_agent_id"] == agent_id
                and event["viewing"] is on)
    return predicate


async def test_two_agents_see_each_other_viewing(stack: Stack) -> None:
    alice = await stack.login("alice")
    admin = await stack.login("admin")
    conversation = await open_conversation(stack, alice)
    conv = f"/api/v1/conversations/{conversation['id']}"
    alice_ws = await alice.ws()
    admin_ws = await admin.ws()

    assert (await alice.http.post(conv + "/viewing", json={"viewing": True})).status_code == 204
    seen = await admin_ws.wait_event(viewing(stack.ids["alice"], True))
    assert seen["event"]["conversation_id"] == conversation["id"]
    assert seen["event"]["inbox_id"] == stack.ids["support"]
    viewers = (await admin.http.get(conv + "/viewers")).json()
    assert [(v["agent_id"], v["name"]) for v in viewers] == [(stack.ids["alice"], "Alice")]

    assert (await admin.http.post(conv + "/viewing", json={"viewing": True})).status_code == 204
    await alice_ws.wait_event(viewing(stack.ids["admin"], True))
    both = (await alice.http.get(conv + "/viewers")).json()
    assert {v["name"] for v in both} == {"Alice", "Admin"}
    # Repeating it (the UI does every 20 s) keeps one row per agent.
    await alice.http.post(conv + "/viewing", json={"viewing": True})
    assert len((await alice.http.get(conv + "/viewers")).json()) == 2

    # Typing a note is shown live too, with its mode.
    await admin.http.post(conv + "/typing", json={"mode": "note", "typing": True})
    typing = await alice_ws.wait_event(lambda e: e["type"] == "conversation.typing")
    assert typing["event"]["mode"] == "note"
    assert typing["event"]["by_agent_id"] == stack.ids["admin"]

    assert (await alice.http.post(conv + "/viewing", json={"viewing": False})).status_code == 204
    await admin_ws.wait_event(viewing(stack.ids["alice"], False))
    left = (await admin.http.get(conv + "/viewers")).json()
    assert [v["name"] for v in left] == ["Admin"]

    # A viewer not heard from for a minute (a closed laptop) is gone.
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await session.exec(update(ConversationViewer).values(
                seen_at=utcnow() - timedelta(seconds=61)))
    finally:
        await db.close()
    assert (await admin.http.get(conv + "/viewers")).json() == []
    await alice_ws.close()
    await admin_ws.close()


async def test_one_agent_saying_viewing_from_two_tabs_at_once_never_collides(
    stack: Stack,
) -> None:
    alice = await stack.login("alice")
    conversation = await open_conversation(stack, alice)
    conv = f"/api/v1/conversations/{conversation['id']}"
    for _ in range(3):  # a first call and its repeat crossing, from two tabs
        answers = await asyncio.gather(*(
            alice.http.post(conv + "/viewing", json={"viewing": True}) for _ in range(8)))
        assert [a.status_code for a in answers] == [204] * 8
        await alice.http.post(conv + "/viewing", json={"viewing": False})
    await alice.http.post(conv + "/viewing", json={"viewing": True})
    viewers = (await alice.http.get(conv + "/viewers")).json()
    assert [v["name"] for v in viewers] == ["Alice"]


async def test_sending_after_someone_else_replied_is_a_conflict(stack: Stack) -> None:
    alice = await stack.login("alice")
    admin = await stack.login("admin")
    conversation = await open_conversation(stack, alice)
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    seen = (await alice.http.get(url)).json()["items"][-1]["id"]  # both saw the inbound one

    first = await admin.http.post(url, json={"text": "Admin here", "after_message_id": seen})
    assert first.status_code == 201, first.text
    clash = await alice.http.post(url, json={"text": "Alice here", "after_message_id": seen})
    assert clash.status_code == 409
    error = clash.json()["error"]
    assert error["code"] == "conflict"
    assert error["message"].startswith("Admin replied ")
    assert error["message"].endswith(" ago")
    texts = [m["text"] for m in (await alice.http.get(url)).json()["items"]]
    assert "Alice here" not in texts  # nothing was stored or sent

    # A note is not a reply to the customer: no collision.
    note = await alice.http.post(url, json={"kind": "note", "text": "hm",
                                             "after_message_id": seen})
    assert note.status_code == 201
    # Having seen the admin's reply, or sending anyway, goes through.
    forced = await alice.http.post(url, json={"text": "Alice anyway", "after_message_id": seen,
                                              "force": True})
    assert forced.status_code == 201
    # Alice's own reply never collides with her.
    again = await alice.http.post(url, json={"text": "And more",
                                             "after_message_id": first.json()["id"]})
    assert again.status_code == 201
    # Now the admin is behind: alice replied after the last message the admin saw.
    behind = await admin.http.post(url, json={"text": "x", "after_message_id": first.json()["id"]})
    assert behind.status_code == 409 and behind.json()["error"]["message"].startswith("Alice")
    await stack.receiver.wait(3)
    assert [r["text"] for r in stack.receiver.received] == [
        "Admin here", "Alice anyway", "And more"]


async def test_viewing_needs_the_inbox(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    conversation = await open_conversation(stack, alice)
    conv = f"/api/v1/conversations/{conversation['id']}"
    bob_ws = await bob.ws()
    await alice.http.post(conv + "/viewing", json={"viewing": True})
    assert (await bob.http.post(conv + "/viewing", json={"viewing": True})).status_code == 404
    assert (await bob.http.get(conv + "/viewers")).status_code == 404
    assert (await bob.http.get("/api/v1/conversations/999999/viewers")).status_code == 404
    # A sales event after alice's viewing one: bob got it, and never hers.
    await stack.inbound("sales", [{"id": "s-1", "sender": {"id": "ben"}, "text": "hi"}])
    await bob_ws.wait_event(of_type("message.created", direction="in"))
    assert not [f for f in bob_ws.frames
                if f.get("event", {}).get("type") == "conversation.viewing"]
    await bob_ws.close()
