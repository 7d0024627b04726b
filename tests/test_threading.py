"""Threading on both shapes: dedupe, contacts from identities, thread hints, reopening."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import update

from hub.types import utcnow
from inbox.db import Database
from inbox.models import Contact, ContactIdentity, Conversation, Message
from tests.helpers import Stack, count_rows, eventually, message


async def _settled(stack: Stack, expected: int) -> None:
    async def stored() -> bool:
        return await count_rows(stack, Message, Message.direction == "in") >= expected

    await eventually(stored)
    await asyncio.sleep(0.3)  # let any duplicate that would wrongly be stored arrive


async def test_same_external_id_delivered_at_the_same_time_gives_one_message(
    stack: Stack,
) -> None:
    payload = [message("dup-1", "only once", "ada")]
    answers = await asyncio.gather(*(stack.inbound("support", payload) for _ in range(20)))
    assert all(a.status_code == 202 for a in answers)
    await _settled(stack, 1)
    assert await count_rows(stack, Message, Message.external_id == "dup-1") == 1
    assert await count_rows(stack, Conversation) == 1
    assert await count_rows(stack, Contact) == 1


async def test_new_contact_writing_many_messages_at_once_gets_one_conversation(
    stack: Stack,
) -> None:
    await asyncio.gather(*(
        stack.inbound("support", [message(f"burst-{n}", f"part {n}", "newcomer")])
        for n in range(15)
    ))
    await _settled(stack, 15)
    assert await count_rows(stack, Conversation) == 1
    assert await count_rows(stack, Contact) == 1
    assert await count_rows(stack, ContactIdentity) == 1


async def test_same_external_id_in_two_inboxes_is_two_messages(stack: Stack) -> None:
    await stack.inbound("support", [message("same-id", "to support", "ada")])
    await stack.inbound("sales", [message("same-id", "to sales", "ada")])
    await _settled(stack, 2)
    assert await count_rows(stack, Message, Message.external_id == "same-id") == 2


async def test_thread_hint_and_contact_decide_the_conversation(stack: Stack) -> None:
    admin = await stack.login("admin")
    await stack.inbound("support", [message("a-1", "first topic", "ada", thread="t-1")])
    await _settled(stack, 1)
    await stack.inbound("support", [message("a-2", "same thread", "ada", thread="t-1")])
    await stack.inbound("support", [message("a-3", "another person", "bea")])
    await _settled(stack, 3)
    # A message from someone else that names Ada's thread joins that thread.
    await stack.inbound("support", [message("a-4", "cc'd colleague", "cid", thread="t-1")])
    # A reply to a known message joins its conversation.
    await stack.inbound("support", [message("a-5", "re: first", "dan", in_reply_to="a-1")])
    await _settled(stack, 5)
    page = (await admin.http.get("/api/v1/conversations?limit=10")).json()["items"]
    assert len(page) == 2
    by_contact = {c["contact_name"]: c for c in page}
    ada = by_contact["Ada"]
    texts = [m["text"] for m in (await admin.http.get(
        f"/api/v1/conversations/{ada['id']}/messages")).json()["items"]]
    assert texts == ["first topic", "same thread", "cc'd colleague", "re: first"]
    assert by_contact["Bea"]["id"] != ada["id"]


async def test_email_and_phone_senders_resolve_to_one_contact_across_inboxes(
    stack: Stack,
) -> None:
    admin = await stack.login("admin")
    await stack.inbound("support", [{"id": "p-1", "text": "hi",
                                     "sender": {"phone": "+44 20 7946 0958", "name": "Pat"}}])
    await stack.inbound("sales", [{"id": "p-2", "text": "hello",
                                   "sender": {"phone": "+442079460958"}}])
    await _settled(stack, 2)
    assert await count_rows(stack, Contact) == 1
    identity = await count_rows(stack, ContactIdentity, ContactIdentity.value == "+442079460958")
    assert identity == 1
    conversations = (await admin.http.get("/api/v1/conversations")).json()["items"]
    assert len(conversations) == 2 and len({c["contact_id"] for c in conversations}) == 1
    contact = (await admin.http.get(f"/api/v1/contacts/{conversations[0]['contact_id']}")).json()
    assert contact["identities"] == [
        {"kind": "phone", "value": "+442079460958", "display_name": "Pat"}
    ]
    bad = await stack.inbound("support", [{"id": "p-3", "text": "x",
                                           "sender": {"phone": "not a number"}}])
    assert bad.status_code == 400


async def test_resolved_conversation_reopens_within_the_window_else_a_new_one_starts(
    stack: Stack,
) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("r-1", "help", "ada")])
    await _settled(stack, 1)
    cid = (await alice.http.get("/api/v1/conversations")).json()["items"][0]["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "resolved"})).status_code == 200
    await stack.inbound("support", [message("r-2", "one more thing", "ada")])
    await _settled(stack, 2)
    reopened = (await alice.http.get(f"/api/v1/conversations/{cid}")).json()
    assert reopened["status"] == "open"

    await alice.http.post(f"/api/v1/conversations/{cid}/status", json={"status": "resolved"})
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            long_ago = utcnow() - timedelta(seconds=stack.settings.reopen_window_seconds + 60)
            await session.exec(update(Conversation).values(resolved_at=long_ago))  # type: ignore[call-overload]
    finally:
        await db.close()
    await stack.inbound("support", [message("r-3", "new problem", "ada")])
    await _settled(stack, 3)
    items = (await alice.http.get("/api/v1/conversations")).json()["items"]
    assert len(items) == 2
    assert {c["status"] for c in items} == {"open", "resolved"}
    assert items[0]["id"] != cid and items[0]["last_message_preview"] == "new problem"


async def test_customer_reply_wakes_a_snoozed_conversation(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("z-1", "help", "ada")])
    await _settled(stack, 1)
    cid = (await alice.http.get("/api/v1/conversations")).json()["items"][0]["id"]
    until = (utcnow() + timedelta(days=1)).isoformat()
    snoozed = await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                    json={"status": "snoozed", "snoozed_until": until})
    assert snoozed.status_code == 200 and snoozed.json()["status"] == "snoozed"
    past = await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                 json={"status": "snoozed",
                                       "snoozed_until": "2000-01-01T00:00:00Z"})
    assert past.status_code == 422
    await stack.inbound("support", [message("z-2", "still there?", "ada")])
    await _settled(stack, 2)
    woke = (await alice.http.get(f"/api/v1/conversations/{cid}")).json()
    assert woke["status"] == "open" and woke["snoozed_until"] is None
    kinds = [m["kind"] for m in (await alice.http.get(
        f"/api/v1/conversations/{cid}/messages")).json()["items"]]
    assert kinds == ["message", "activity", "message"]
