"""Agents see only their inboxes, over HTTP and over the websocket alike."""

from __future__ import annotations

from websockets.exceptions import InvalidStatus

from tests.helpers import Stack, eventually, message, of_type


async def test_agent_of_another_inbox_gets_404_and_no_events(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    bob_ws = await bob.ws()
    alice_ws = await alice.ws()

    await stack.inbound("support", [message("s-1", "support question", "ada")])
    created = await alice_ws.wait_event(of_type("message.created", direction="in"))
    conversation_id = created["event"]["conversation"]["id"]
    contact_id = created["event"]["conversation"]["contact_id"]

    for path in (
        f"/api/v1/conversations/{conversation_id}",
        f"/api/v1/conversations/{conversation_id}/messages",
        f"/api/v1/contacts/{contact_id}",
    ):
        response = await bob.http.get(path)
        assert response.status_code == 404, path
    for path, body in (
        (f"/api/v1/conversations/{conversation_id}/messages", {"text": "hijack"}),
        (f"/api/v1/conversations/{conversation_id}/assignment", {"assignee_id": stack.ids["bob"]}),
        (f"/api/v1/conversations/{conversation_id}/status", {"status": "resolved"}),
        (f"/api/v1/conversations/{conversation_id}/read", None),
    ):
        response = await bob.http.post(path, json=body)
        assert response.status_code == 404, path
    assert (await bob.http.get("/api/v1/conversations")).json()["items"] == []
    assert (await bob.http.get(
        f"/api/v1/conversations?inbox_id={stack.ids['support']}")).json()["items"] == []

    # Bob's socket gets the sales event and never the support one sent before it.
    await stack.inbound("sales", [message("b-1", "sales question", "ben")])
    first = await bob_ws.wait_event(lambda e: True)
    assert first["event"]["inbox_id"] == stack.ids["sales"]
    assert all(f.get("event", {}).get("inbox_id") != stack.ids["support"]
               for f in bob_ws.frames)
    # Nor on a replay from the very start.
    replay = await bob.ws(last_event_id="0-0")
    assert all(f["event"]["inbox_id"] == stack.ids["sales"]
               for f in replay.frames if f["type"] == "event")
    assert any(f["type"] == "event" for f in replay.frames)
    for ws in (alice_ws, bob_ws, replay):
        await ws.close()
    # The conversation is untouched by Bob's attempts.
    conv = (await alice.http.get(f"/api/v1/conversations/{conversation_id}")).json()
    assert conv["status"] == "open" and conv["assignee_id"] == stack.ids["alice"]


async def test_logged_out_and_forged_sessions_are_refused(stack: Stack) -> None:
    anonymous = stack.client()
    assert (await anonymous.get("/api/v1/conversations")).status_code == 401
    assert (await anonymous.get("/api/v1/me")).status_code == 401
    forged = stack.client()
    forged.cookies.set("switchboard_session", "not-a-session")
    assert (await forged.get("/api/v1/conversations")).status_code == 401
    try:
        await stack.ws(anonymous)
        raise AssertionError("websocket without a session was accepted")
    except InvalidStatus as exc:
        assert exc.response.status_code == 403


async def test_websocket_from_a_foreign_origin_is_refused(stack: Stack) -> None:
    alice = await stack.login("alice")
    try:
        await alice.ws(origin="https://evil.example")
        raise AssertionError("websocket from a foreign origin was accepted")
    except InvalidStatus as exc:
        assert exc.response.status_code == 403
    ok = await alice.ws()
    assert ok.ready["type"] == "ready"
    await ok.close()


async def test_unsafe_requests_need_the_csrf_token(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("s-1", "hi", "ada")])

    async def conversation_id() -> int | None:
        items = (await alice.http.get("/api/v1/conversations")).json()["items"]
        return items[0]["id"] if items else None

    cid = await eventually(conversation_id)
    token = alice.http.headers.pop("X-CSRF-Token")
    refused = await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                    json={"status": "resolved"})
    assert refused.status_code == 403
    alice.http.headers["X-CSRF-Token"] = "wrong"
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "resolved"})).status_code == 403
    alice.http.headers["X-CSRF-Token"] = token
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "resolved"})).status_code == 200


async def test_logout_ends_the_session(stack: Stack) -> None:
    alice = await stack.login("alice")
    assert (await alice.http.get("/api/v1/me")).status_code == 200
    cookie = alice.http.cookies.get("switchboard_session")
    assert (await alice.http.post("/api/v1/auth/logout")).status_code == 204
    replay = stack.client()
    replay.cookies.set("switchboard_session", cookie or "")
    assert (await replay.get("/api/v1/me")).status_code == 401


async def test_only_admins_manage_inboxes(stack: Stack) -> None:
    alice = await stack.login("alice")
    admin = await stack.login("admin")
    body = {"name": "Other", "channel": "api", "settings": {"secret": "s3cret-value"}}
    assert (await alice.http.post("/api/v1/inboxes", json=body)).status_code == 403
    created = await admin.http.post("/api/v1/inboxes", json=body)
    assert created.status_code == 201
    bad = await admin.http.post("/api/v1/inboxes", json={"name": "X", "channel": "api",
                                                         "settings": {}})
    assert bad.status_code == 422 and "secret" in bad.json()["error"]["message"]
    unknown = await admin.http.post("/api/v1/inboxes", json={"name": "X", "channel": "fax"})
    assert unknown.status_code == 422
    inbox_id = created.json()["id"]
    assert (await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                                 json={"agent_ids": [stack.ids["alice"]]})).status_code == 204
    # Membership counts from the next request on, no new login needed.
    assert inbox_id in [i["id"] for i in (await alice.http.get("/api/v1/inboxes")).json()]
    assert (await admin.http.put(f"/api/v1/inboxes/{inbox_id}/members",
                                 json={"agent_ids": []})).status_code == 204
    assert inbox_id not in [i["id"] for i in (await alice.http.get("/api/v1/inboxes")).json()]
