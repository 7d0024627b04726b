"""Hostile input gets a clear 4xx, never a 500: ids out of the database's range, values of
the wrong type that a lax parser would convert, NUL characters in text."""

from __future__ import annotations

import pytest

from config import Settings
from tests.helpers import Stack, message, running_stack

TOO_BIG = ("2147483648", "9223372036854775808", "99999999999999999999999")


async def test_ids_out_of_range_in_a_path_are_not_found(stack: Stack) -> None:
    alice = await stack.login("alice")
    for big in TOO_BIG:
        for method, path in (("GET", f"/api/v1/conversations/{big}"),
                             ("GET", f"/api/v1/conversations/{big}/messages"),
                             ("POST", f"/api/v1/conversations/{big}/read"),
                             ("GET", f"/api/v1/contacts/{big}"),
                             ("DELETE", f"/api/v1/labels/{big}")):
            answer = await alice.http.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
        webhook = await stack.client().post(f"/webhooks/api/{big}", content=b"{}")
        assert webhook.status_code == 404, webhook.text
    # The largest id the database holds is still an id (of nothing here).
    top = await alice.http.get("/api/v1/conversations/2147483647")
    assert top.status_code == 404 and top.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("value", [2**31, 2**63, -1, 0, "1", True, 1.0])
async def test_ids_in_a_body_are_whole_numbers_in_range(stack: Stack, value: object) -> None:
    alice = await stack.login("alice")
    ws = await alice.ws()
    await stack.inbound("support", [message("h-1", "hello", "ada")])
    created = await ws.wait_event(lambda e: e["type"] == "message.created")
    await ws.close()
    conversation = created["event"]["conversation"]["id"]
    answer = await alice.http.post(f"/api/v1/conversations/{conversation}/assignment",
                                   json={"assignee_id": value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith("assignee_id")
    note = await alice.http.post(f"/api/v1/conversations/{conversation}/messages",
                                 json={"text": "hi", "kind": "note", "mention_ids": [value]})
    assert note.status_code == 422, note.text


async def test_text_with_a_nul_character_is_refused_before_anything_is_stored(
    stack: Stack,
) -> None:
    admin = await stack.login("admin")
    answer = await admin.http.post("/api/v1/labels", json={"name": "bad\u0000name"})
    assert answer.status_code == 422
    assert answer.json()["error"] == {
        "code": "invalid_field", "message": "name: text may not contain NUL (\\u0000)"}
    assert (await admin.http.get("/api/v1/labels")).json() == []
    canned = await admin.http.post("/api/v1/canned-responses",
                                   json={"shortcut": "x", "text": "a\u0000b"})
    assert canned.status_code == 422


async def test_a_nul_character_in_a_query_is_refused_everywhere(stack: Stack) -> None:
    """Found by schemathesis: `q` with NUL made PostgreSQL fail (500) in the canned search."""
    alice = await stack.login("alice")
    for path in ("/api/v1/canned-responses?q=a%00b", "/api/v1/search?q=x%00",
                 "/api/v1/contacts?q=%00", "/api/v1/conversations?status=%00open"):
        answer = await alice.http.get(path)
        assert answer.status_code == 422, path
        assert answer.json()["error"]["code"] == "invalid_parameter"
    assert (await alice.http.get("/api/v1/canned-responses?q=hi")).status_code == 200


async def test_a_providers_nul_characters_are_dropped_not_fatal(stack: Stack) -> None:
    """A webhook accepted with 202 must be stored: PostgreSQL refuses NUL in text, so the
    message is kept without it (on both databases alike)."""
    alice = await stack.login("alice")
    ws = await alice.ws()
    sent = message("nul-1", "before\u0000after", "ada")
    sent["sender"]["name"] = "Ada\u0000"
    answer = await stack.inbound("support", [sent])
    assert answer.status_code == 202
    created = await ws.wait_event(lambda e: e["type"] == "message.created")
    await ws.close()
    assert created["event"]["message"]["text"] == "beforeafter"
    conversation = created["event"]["conversation"]["id"]
    stored = (await alice.http.get(f"/api/v1/conversations/{conversation}/messages")).json()
    assert [m["text"] for m in stored["items"]] == ["beforeafter"]


async def test_webhooks_of_one_inbox_are_limited_per_second(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood at one inbox (signed or not: checking costs too) gets 429 + Retry-After once
    its burst is spent; other inboxes are not touched, and it recovers within a second.
    The limiter's clock stands still while the flood is sent (a slow machine must not
    refill the bucket between requests), then moves on by 1.1 s."""
    clock = [1000.0]
    monkeypatch.setattr("web.limits._now", lambda: clock[0])
    async with running_stack(settings.model_copy(
            update={"webhook_requests_per_second": 5})) as stack:
        answers = [(await stack.inbound("support", [message(f"f-{n}", "hi")])).status_code
                   for n in range(12)]
        assert answers == [202] * 10 + [429] * 2
        refused = await stack.inbound("support", [message("f-x", "hi")])
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        forged = await stack.inbound("support", [message("f-y", "hi")], secret="wrong")
        assert forged.status_code == 429  # refused before its signature costs anything
        assert (await stack.inbound("sales", [message("s-1", "hi")])).status_code == 202
        clock[0] += 1.1
        assert (await stack.inbound("support", [message("f-z", "hi")])).status_code == 202
