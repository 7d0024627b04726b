"""Deleting an inbox: intake stops, its conversations stay readable, nothing more goes out."""

from __future__ import annotations

from tests.helpers import Stack, message
from tests.web.collab import open_conversation


async def test_a_deleted_inbox_takes_nothing_in_and_keeps_its_conversations(
    stack: Stack,
) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    conversation = await open_conversation(stack, alice, text="before the move")
    support = stack.ids["support"]

    refused = await alice.http.delete(f"/api/v1/inboxes/{support}")
    assert refused.status_code == 403
    gone = await admin.http.delete(f"/api/v1/inboxes/{support}")
    assert gone.status_code == 200, gone.text
    assert gone.json()["disconnected_at"] is not None
    assert gone.json()["provider"] is None  # the api channel has no provider set-up to undo
    again = await admin.http.delete(f"/api/v1/inboxes/{support}")
    assert again.status_code == 200
    assert again.json()["disconnected_at"] == gone.json()["disconnected_at"]
    assert (await admin.http.delete("/api/v1/inboxes/999999")).status_code == 404

    # Intake stops: the provider's webhook finds no inbox (and nothing is stored).
    late = await stack.inbound("support", [message("m-late", "after the move", "ada")])
    assert late.status_code == 404
    # The conversation stays readable, marked as from a disconnected inbox.
    conv = f"/api/v1/conversations/{conversation['id']}"
    texts = [m["text"] for m in (await alice.http.get(conv + "/messages")).json()["items"]]
    assert texts == ["before the move"]
    listed = {i["id"]: i for i in (await alice.http.get("/api/v1/inboxes")).json()}
    assert listed[support]["disconnected_at"] is not None
    # Nothing more can be sent from it, before anything is queued; a note still can.
    reply = await alice.http.post(conv + "/messages", json={"text": "Are you there?"})
    assert reply.status_code == 422
    assert "inbox was disconnected" in reply.json()["error"]["message"]
    note = await alice.http.post(conv + "/messages", json={"text": "moved", "kind": "note"})
    assert note.status_code == 201, note.text
    assert stack.receiver.received == []
    # The other inbox goes on.
    other = await stack.inbound("sales", [message("s-1", "still here", "ben")])
    assert other.status_code == 202


async def test_a_channel_without_a_provider_check_says_so(stack: Stack) -> None:
    admin = await stack.login("admin")
    channels = {c["kind"]: c for c in (await admin.http.get("/api/v1/channels")).json()}
    assert channels["api"]["can_test"] is False
    answer = await admin.http.post("/api/v1/channels/api/test",
                                   json={"settings": {"secret": "a-long-secret"}})
    assert answer.status_code == 422
    assert "has no connection to test" in answer.json()["error"]["message"]
    missing = await admin.http.post("/api/v1/channels/api/test", json={"settings": {}})
    assert missing.status_code == 422 and "settings.secret: required" in missing.text
    unknown = await admin.http.post("/api/v1/channels/nope/test", json={"settings": {}})
    assert unknown.status_code == 422 and "channel: unknown" in unknown.text


