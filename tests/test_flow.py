"""The whole path of a message, on both shapes: webhook -> bus -> threading -> websocket,
and a reply back out through the api channel with its delivery states."""

from __future__ import annotations

import asyncio

from channels.api import sign
from tests.helpers import SUPPORT_SECRET, Stack, eventually, message, of_type


async def test_inbound_message_reaches_agent_live_and_reply_goes_out(stack: Stack) -> None:
    alice = await stack.login("alice")
    ws = await alice.ws()

    response = await stack.inbound("support", [message("m-1", "Where is my order?", "ada")])
    assert response.status_code == 202
    assert response.json() == {"accepted": 1}

    created = await ws.wait_event(of_type("conversation.created"))
    conversation = created["event"]["conversation"]
    assert conversation["inbox_id"] == stack.ids["support"]
    assert conversation["contact_name"] == "Ada"
    new_message = await ws.wait_event(of_type("message.created", direction="in"))
    assert new_message["event"]["message"]["text"] == "Where is my order?"
    assert new_message["id"] > created["id"]

    listed = (await alice.http.get("/api/v1/conversations")).json()["items"]
    assert [c["id"] for c in listed] == [conversation["id"]]
    assert listed[0]["unread_count"] == 1
    messages = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}/messages")
                ).json()["items"]
    assert [m["text"] for m in messages] == ["Where is my order?"]

    reply = await alice.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages", json={"text": "On its way!"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "queued"
    await stack.receiver.wait(1)
    sent = stack.receiver.received[0]
    assert sent["text"] == "On its way!"
    assert sent["recipient"] == {"kind": "api", "value": f"{stack.ids['support']}:ada",
                                 "name": "Ada"}
    assert sent["in_reply_to"] == "m-1"
    headers = stack.receiver.headers[0]
    body_signature = headers["x-switchboard-signature"]
    assert body_signature.startswith("sha256=")
    assert headers["idempotency-key"] == sent["id"]

    status = await ws.wait_event(of_type("message.status_changed", status="sent"))
    external_id = status["event"]["message"]["external_id"]
    assert external_id == "ext-1"

    # The provider reports delivery, then read; a late "sent" or "failed" must not go
    # backwards.
    for state in ("delivered", "read"):
        answer = await stack.inbound("support", statuses=[{"message_id": external_id,
                                                           "status": state}])
        assert answer.status_code == 202
        await ws.wait_event(of_type("message.status_changed", status=state))
    for state in ("sent", "failed"):
        late = await stack.inbound("support", statuses=[{"message_id": external_id,
                                                          "status": state}])
        assert late.status_code == 202

    async def final_status() -> str | None:
        page = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}/messages")
                ).json()["items"]
        out = [m for m in page if m["direction"] == "out"]
        return out[0]["status"] if out and out[0]["status"] == "read" else None

    assert await eventually(final_status) == "read"
    await asyncio.sleep(0.3)  # give the late ones time to be (wrongly) applied
    assert await final_status() == "read"
    await ws.close()


async def test_reply_refused_by_provider_is_failed_with_reason(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("m-1", "hello", "ada")])
    conversation = await eventually(
        lambda: _first_conversation(alice.http)
    )
    stack.receiver.answers.append((422, {"error": "recipient blocked"}))
    ws = await alice.ws()
    await alice.http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                          json={"text": "hi"})
    failed = await ws.wait_event(of_type("message.status_changed", status="failed"))
    # The status and its standard reason; what the target's body says never reaches agents
    # (an outbound URL must not become a way to read another service: docs/security.md).
    reason = failed["event"]["message"]["status_reason"]
    assert reason.endswith("refused the message: 422 Unprocessable Entity"), reason
    assert "recipient blocked" not in reason
    await ws.close()


async def test_transient_provider_errors_are_retried(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("m-1", "hello", "ada")])
    conversation = await eventually(lambda: _first_conversation(alice.http))
    stack.receiver.answers.extend([(503, {}), (429, {})])
    await alice.http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                          json={"text": "hi", "idempotency_key": "reply-0001"})
    await stack.receiver.wait(3, timeout=20)
    assert {h["idempotency-key"] for h in stack.receiver.headers} == {"reply-0001"}

    async def sent() -> bool:
        page = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}/messages")
                ).json()["items"]
        return any(m["status"] == "sent" for m in page)

    assert await eventually(sent)


async def test_note_is_not_sent_and_reply_retry_is_idempotent(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("m-1", "hello", "ada")])
    conversation = await eventually(lambda: _first_conversation(alice.http))
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    note = await alice.http.post(url, json={"text": "VIP customer", "kind": "note"})
    assert note.status_code == 201 and note.json()["status"] is None
    first = await alice.http.post(url, json={"text": "hi", "idempotency_key": "same-key-1"})
    again = await alice.http.post(url, json={"text": "hi", "idempotency_key": "same-key-1"})
    assert first.json()["id"] == again.json()["id"]
    await stack.receiver.wait(1)
    await asyncio.sleep(0.5)
    assert [r["text"] for r in stack.receiver.received] == ["hi"]


async def test_inbound_signature_is_checked_before_anything_is_stored(stack: Stack) -> None:
    alice = await stack.login("alice")
    body = b'{"messages":[{"id":"x-1","sender":{"id":"eve"},"text":"hi"}]}'
    missing = await stack.inbound("support", [message("x-1", "hi", "eve")], headers={})
    assert missing.status_code == 401
    wrong = await stack.inbound("support", [message("x-1", "hi", "eve")], secret="not-it")
    assert wrong.status_code == 403
    stale = await stack.client().post(
        f"/webhooks/api/{stack.ids['support']}", content=body,
        headers={"X-Switchboard-Timestamp": "1000000000",
                 "X-Switchboard-Signature": sign(SUPPORT_SECRET, 1000000000, body)})
    assert stale.status_code == 403
    other_inbox = await stack.inbound("sales", [message("x-1", "hi", "eve")],
                                      secret=SUPPORT_SECRET)
    assert other_inbox.status_code == 403
    unknown = await stack.client().post("/webhooks/api/999", content=body)
    assert unknown.status_code == 404
    bad = await stack.inbound("support", [{"id": "x-2", "sender": {}, "text": "hi"}])
    assert bad.status_code == 400
    assert "sender" in bad.json()["error"]["message"]
    too_big = await stack.inbound("support", [message("x-3", "a" * 20_001, "eve")])
    assert too_big.status_code == 400
    huge = await stack.client().post(f"/webhooks/api/{stack.ids['support']}",
                                     content=b"x" * 2_000_000)
    assert huge.status_code == 413
    await asyncio.sleep(0.5)
    assert (await alice.http.get("/api/v1/conversations")).json()["items"] == []


async def _first_conversation(http):  # type: ignore[no-untyped-def]
    items = (await http.get("/api/v1/conversations")).json()["items"]
    return items[0] if items else None
