"""Working-together routes leak nothing: logged out 401, another inbox's agent 404, no events."""

from __future__ import annotations

from typing import Any

from tests.helpers import Stack, of_type
from tests.web.collab import open_conversation

# Valid bodies, so that a refusal is about who asks, never about what they sent.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/notifications/read"): {"all": True},
    ("POST", "/viewing"): {"viewing": True},
    ("PUT", "/labels"): {"labels": ["vip"]},
    ("PUT", "/priority"): {"priority": "high"},
    ("POST", "/api/v1/labels"): {"name": "new"},
    ("POST", "/api/v1/canned-responses"): {"shortcut": "x", "text": "x"},
    ("PATCH", "/canned-responses/{canned_id}"): {"title": "x"},
    ("PATCH", "/contacts/{contact_id}"): {"name": "x"},
    ("POST", "/notes"): {"text": "x"},
    ("POST", "/merge"): {"other_contact_id": 0},
}
OWN = ("notifications", "viewing", "viewers", "labels", "priority", "canned-responses",
       "contacts/{contact_id}")


def _body(method: str, path: str) -> Any:
    return next((body for (m, end), body in BODIES.items()
                 if m == method and path.endswith(end)), None)


async def test_every_route_is_refused_to_strangers(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    admin = await stack.login("admin")
    await admin.http.post("/api/v1/labels", json={"name": "vip"})
    conversation = await open_conversation(stack, alice)
    bobs = await open_conversation(stack, bob, inbox="sales", ext_id="s-1",
                                   sender={"id": "ben"})
    canned = (await alice.http.post("/api/v1/canned-responses",
                                    json={"shortcut": "hi", "text": "Hi"})).json()
    spec = (await alice.http.get("/api/openapi.json")).json()["paths"]
    routes = [(method.upper(), path) for path, ops in spec.items() for method in ops
              if any(part in path for part in OWN)]
    assert len(routes) >= 18, routes
    anonymous = stack.client()
    bob_ws = await bob.ws()

    for method, path in routes:
        url = (path.replace("{conversation_id}", str(conversation["id"]))
               .replace("{contact_id}", str(conversation["contact_id"]))
               .replace("{canned_id}", str(canned["id"])).replace("{label_id}", "1"))
        body = _body(method, path)
        if body == {"other_contact_id": 0}:
            body = {"other_contact_id": bobs["contact_id"]}
        answer = await anonymous.request(method, url, json=body)
        assert answer.status_code == 401, (method, path)
        if "{conversation_id}" in path or "{contact_id}" in path:
            answer = await bob.http.request(method, url, json=body)
            assert answer.status_code == 404, (method, path, answer.text)

    # Alice's changes in support (label, priority, viewing, a mention of the admin)
    # reach her inbox and never bob's socket.
    conv = f"/api/v1/conversations/{conversation['id']}"
    await alice.http.put(conv + "/labels", json={"labels": ["vip"]})
    await alice.http.put(conv + "/priority", json={"priority": "high"})
    await alice.http.post(conv + "/viewing", json={"viewing": True})
    await alice.http.post(conv + "/messages", json={
        "kind": "note", "text": "@Admin", "mention_ids": [stack.ids["admin"]]})
    await stack.inbound("sales", [{"id": "s-2", "sender": {"id": "ben"}, "text": "marker"}])
    await bob_ws.wait_event(of_type("message.created", text="marker"))
    assert {f["event"]["inbox_id"] for f in bob_ws.frames if f["type"] == "event"} == {
        stack.ids["sales"]}
    await bob_ws.close()
    # None of it changed anything bob could reach: his own list and notifications are his.
    assert (await bob.http.get("/api/v1/notifications?kind=mention")).json()["items"] == []
    assert [c["id"] for c in (await bob.http.get("/api/v1/conversations?label=vip")
                              ).json()["items"]] == []
