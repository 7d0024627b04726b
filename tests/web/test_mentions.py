"""Internal notes with @mentions: the mentioned agent alone is notified, live and in a list."""

from __future__ import annotations

from tests.helpers import Stack, of_type
from tests.web.collab import add_bob_to_support, open_conversation


async def test_a_mention_notifies_only_the_mentioned_agent(stack: Stack) -> None:
    admin = await stack.login("admin")
    await add_bob_to_support(stack, admin)
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    conversation = await open_conversation(stack, alice)
    bob_ws = await bob.ws()
    admin_ws = await admin.ws()  # sees every inbox, but is not mentioned
    url = f"/api/v1/conversations/{conversation['id']}/messages"

    note = await alice.http.post(url, json={
        "kind": "note", "text": "@Bob can you check the refund?",
        "mention_ids": [stack.ids["bob"]]})
    assert note.status_code == 201, note.text
    assert note.json()["kind"] == "note" and note.json()["status"] is None

    live = await bob_ws.wait_event(lambda e: e["type"] == "notification.created"
                                   and e["notification"]["kind"] == "mention")
    notification = live["event"]["notification"]
    assert notification["agent_id"] == stack.ids["bob"]
    assert notification["kind"] == "mention"
    assert notification["conversation_id"] == conversation["id"]
    assert notification["message_id"] == note.json()["id"]
    assert notification["by_agent_id"] == stack.ids["alice"]
    assert notification["text"] == "@Bob can you check the refund?"

    # A later note is a marker: everything before it reached the admin's socket by then.
    marker = await alice.http.post(url, json={"kind": "note", "text": "marker"})
    await admin_ws.wait_event(of_type("message.created", id=marker.json()["id"]))
    assert not [f for f in admin_ws.frames if f.get("event", {}).get("notification")]
    replay = await admin.ws(last_event_id="0-0")  # nor on a replay of the whole stream
    replayed = [f["event"] for f in replay.frames if f["type"] == "event"]
    assert any(e["type"] == "message.created" for e in replayed)
    assert not [e for e in replayed
                if "notification" in e and e["notification"]["agent_id"] != admin.id]

    listed = (await bob.http.get("/api/v1/notifications?kind=mention")).json()
    assert listed["unread_count"] == 1
    assert [n["id"] for n in listed["items"]] == [notification["id"]]
    assert listed["items"][0]["text"] == "@Bob can you check the refund?"
    assert (await bob.http.get("/api/v1/notifications?kind=mention")).json()["items"]
    assigned = (await bob.http.get("/api/v1/notifications?kind=assigned")).json()["items"]
    assert all(n["kind"] == "assigned" for n in assigned)
    assert (await admin.http.get("/api/v1/notifications?kind=mention")).json() == {
        "items": [], "next_cursor": None, "unread_count": 0}
    assert (await alice.http.get("/api/v1/notifications?kind=mention")).json()["items"] == []

    # A note is never sent to the customer: the reply after it is the only thing sent.
    reply = await alice.http.post(url, json={"text": "We are on it"})
    assert reply.status_code == 201
    await stack.receiver.wait(1)
    assert [r["text"] for r in stack.receiver.received] == ["We are on it"]
    for ws in (bob_ws, admin_ws, replay):
        await ws.close()


async def test_notifications_page_and_are_marked_read(stack: Stack) -> None:
    admin = await stack.login("admin")
    await add_bob_to_support(stack, admin)
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    conversation = await open_conversation(stack, alice)
    for agent in (alice, bob):  # whoever got the conversation assigned starts from zero
        await agent.http.post("/api/v1/notifications/read", json={"all": True})
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    for n in range(3):
        answer = await alice.http.post(url, json={
            "kind": "note", "text": f"note {n}", "mention_ids": [stack.ids["bob"]]})
        assert answer.status_code == 201

    first = (await bob.http.get("/api/v1/notifications?kind=mention&limit=2")).json()
    assert [n["text"] for n in first["items"]] == ["note 2", "note 1"]
    assert first["unread_count"] == 3 and first["next_cursor"]
    second = (await bob.http.get(
        f"/api/v1/notifications?kind=mention&limit=2&cursor={first['next_cursor']}")).json()
    assert [n["text"] for n in second["items"]] == ["note 0"]
    assert second["next_cursor"] is None

    newest = first["items"][0]["id"]
    # Ids of someone else's notifications are ignored, not marked.
    marked = await alice.http.post("/api/v1/notifications/read", json={"ids": [newest]})
    assert marked.json() == {"marked": 0, "unread_count": 0}
    marked = await bob.http.post("/api/v1/notifications/read", json={"ids": [newest]})
    assert marked.json() == {"marked": 1, "unread_count": 2}
    unread = (await bob.http.get("/api/v1/notifications?kind=mention&unread=1")).json()
    assert [n["text"] for n in unread["items"]] == ["note 1", "note 0"]
    assert (await bob.http.post("/api/v1/notifications/read", json={"all": True})).json() == {
        "marked": 2, "unread_count": 0}
    listed = (await bob.http.get("/api/v1/notifications?kind=mention")).json()
    assert listed["unread_count"] == 0 and all(n["read_at"] for n in listed["items"])
    assert (await bob.http.get("/api/v1/notifications?kind=other")).status_code == 400
    assert (await bob.http.get("/api/v1/notifications?cursor=nope")).status_code == 400

    # Once bob no longer sees the inbox, its notifications are gone from his list.
    await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                         json={"agent_ids": [stack.ids["alice"]]})
    assert (await bob.http.get("/api/v1/notifications?kind=mention")).json()["items"] == []


async def test_mentions_are_checked(stack: Stack) -> None:
    alice = await stack.login("alice")
    conversation = await open_conversation(stack, alice)
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    for body, words in (
        ({"kind": "note", "text": "hi", "mention_ids": [stack.ids["bob"]]}, "cannot see"),
        ({"kind": "note", "text": "hi", "mention_ids": [999_999]}, "cannot see"),
        ({"kind": "message", "text": "hi", "mention_ids": [stack.ids["admin"]]}, "note"),
    ):
        refused = await alice.http.post(url, json=body)
        assert refused.status_code == 422, refused.text
        assert words in refused.json()["error"]["message"]
    # Nothing was stored by the refused requests.
    messages = (await alice.http.get(url)).json()["items"]
    assert [m["text"] for m in messages] == ["hello"]
    # The admin sees every inbox: they may be mentioned; mentioning oneself notifies nobody.
    ok = await alice.http.post(url, json={
        "kind": "note", "text": "hi", "mention_ids": [stack.ids["admin"], stack.ids["alice"]]})
    assert ok.status_code == 201
    admin = await stack.login("admin")
    assert (await admin.http.get("/api/v1/notifications?kind=mention")).json()["unread_count"] == 1
    assert (await alice.http.get("/api/v1/notifications?kind=mention")).json()["unread_count"] == 0
