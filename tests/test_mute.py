"""Muted conversations, on both shapes: muting resolves, and the customer's new messages
join the conversation without reopening it (however late they come); unmuting, or an
agent reopening it, lets the next message reopen it again; a rule can mute; who may."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from hub.types import utcnow
from inbox.db import Database, execute
from inbox.models import Conversation, table_of
from tests.helpers import Agent, Stack, eventually, message, of_type


async def _conversation(agent: Agent, cid: int) -> dict[str, Any]:
    found: dict[str, Any] = (await agent.http.get(f"/api/v1/conversations/{cid}")).json()
    return found


async def _texts(agent: Agent, cid: int, kind: str = "message") -> list[str]:
    items = (await agent.http.get(f"/api/v1/conversations/{cid}/messages")).json()["items"]
    return [m["text"] for m in items if m["kind"] == kind]


async def test_a_muted_conversation_takes_new_messages_without_reopening(stack: Stack) -> None:
    alice = await stack.login("alice")
    socket = await alice.ws()
    await stack.inbound("support", [message("m-1", "Buy cheap watches", "spam")])
    created = await socket.wait_event(of_type("message.created", text="Buy cheap watches"), 20)
    cid = created["event"]["conversation"]["id"]

    muted = await alice.http.post(f"/api/v1/conversations/{cid}/mute", json={"muted": True})
    assert muted.status_code == 200, muted.text
    assert (muted.json()["status"], muted.json()["muted"]) == ("resolved", True)
    updated = await socket.wait_event(of_type("conversation.updated"), 10)
    assert updated["event"]["changes"] == ["muted"] and updated["event"]["conversation"]["muted"]
    assert await _texts(alice, cid, "activity") == [
        "Alice muted this conversation: the customer's new messages will not reopen it"]

    # A month later (past the reopen window) the same sender writes again: it joins.
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            await execute(session, update(table_of(Conversation)).where(
                table_of(Conversation).c.id == cid).values(
                resolved_at=utcnow() - timedelta(days=30)))
    finally:
        await db.close()
    await stack.inbound("support", [message("m-2", "Last chance: cheap watches", "spam")])
    arrived = await socket.wait_event(of_type("message.created",
                                              text="Last chance: cheap watches"), 20)
    assert arrived["event"]["conversation"]["id"] == cid
    assert arrived["event"]["conversation"]["status"] == "resolved"
    assert arrived["event"]["conversation"]["muted"] is True
    view = await _conversation(alice, cid)
    assert (view["status"], view["muted"], view["unread_count"]) == ("resolved", True, 1)
    listed = (await alice.http.get("/api/v1/conversations")).json()["items"]
    assert [c["id"] for c in listed] == [cid]  # no new conversation was opened

    # Unmuted: the conversation is an ordinary resolved one again, resolved a month ago,
    # past the reopen window: the next message starts a new conversation.
    unmuted = await alice.http.post(f"/api/v1/conversations/{cid}/mute", json={"muted": False})
    assert (unmuted.json()["status"], unmuted.json()["muted"]) == ("resolved", False)
    await stack.inbound("support", [message("m-3", "Please stop", "spam")])
    fresh = await socket.wait_event(of_type("conversation.created"), 20)
    assert fresh["event"]["conversation"]["id"] != cid
    assert (await _conversation(alice, cid))["status"] == "resolved"

    # An agent taking it up again unmutes it.
    await alice.http.post(f"/api/v1/conversations/{cid}/mute", json={"muted": True})
    back = await alice.http.post(f"/api/v1/conversations/{cid}/status", json={"status": "open"})
    assert (back.json()["status"], back.json()["muted"]) == ("open", False)

    # Who may: not an agent of another inbox; a bad body is refused.
    bob = await stack.login("bob")
    assert (await bob.http.post(f"/api/v1/conversations/{cid}/mute",
                                json={"muted": True})).status_code == 404
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/mute",
                                  json={"muted": "yes"})).status_code == 422


async def test_a_rule_mutes_what_it_matches(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    rule = await admin.http.post("/api/v1/automation-rules", json={
        "name": "Unsubscribe", "trigger": "message_received", "inbox_id": stack.ids["support"],
        "conditions": [{"field": "text", "op": "contains_any", "value": ["unsubscribe"]}],
        "actions": [{"type": "mute"}]})
    assert rule.status_code == 201, rule.text
    socket = await alice.ws()
    await stack.inbound("support", [message("u-1", "UNSUBSCRIBE me", "list")])
    created = await socket.wait_event(of_type("message.created", text="UNSUBSCRIBE me"), 20)
    cid = created["event"]["conversation"]["id"]

    async def muted() -> dict[str, Any] | None:
        view = await _conversation(alice, cid)
        return view if view["muted"] else None

    view = await eventually(muted, timeout=20)
    assert view["status"] == "resolved"

    async def noted() -> list[str] | None:
        lines = await _texts(alice, cid, "activity")
        return lines if any(line.startswith("Rule") for line in lines) else None

    lines = await eventually(noted)
    assert "Rule “Unsubscribe”: muted the conversation" in lines


async def test_a_muted_customer_is_not_asked_for_a_rating(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    switched = await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/csat",
                                    json={"enabled": True})
    assert switched.status_code == 200
    socket = await alice.ws()
    await stack.inbound("support", [message("s-1", "Cheap pills", "spam")])
    spam = (await socket.wait_event(of_type("message.created", text="Cheap pills"), 20)
            )["event"]["conversation"]["id"]
    await stack.inbound("support", [message("s-2", "Where is my order?", "ada")])
    ada = (await socket.wait_event(of_type("message.created", text="Where is my order?"), 20)
           )["event"]["conversation"]["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{spam}/mute",
                                  json={"muted": True})).status_code == 200
    assert (await alice.http.post(f"/api/v1/conversations/{ada}/status",
                                  json={"status": "resolved"})).status_code == 200

    async def asked(cid: int) -> bool:
        items = (await alice.http.get(f"/api/v1/conversations/{cid}/messages")).json()["items"]
        return any(m.get("survey") for m in items)

    await eventually(lambda: asked(ada), timeout=20)  # the later resolve was surveyed...
    assert not await asked(spam)  # ...the muted one, resolved before it, was not
    # A lone digit from the muted customer is not an answer either.
    await stack.inbound("support", [message("s-3", "1", "spam")])
    await socket.wait_event(of_type("message.created", text="1"), 20)
    assert (await _conversation(alice, spam))["csat_score"] is None
