"""Canned responses: /shortcuts, variables checked at save and filled in per conversation."""

from __future__ import annotations

from tests.helpers import Stack, make_team
from tests.web.collab import open_conversation

TEXT = ("Hi {{contact.first_name}},\nthis is {{ agent.first_name }} ({{agent.name}}) about "
        "#{{conversation.id}}; we will write to {{contact.email}}, {{contact.name}}.")


async def test_canned_response_is_rendered_for_the_conversation(stack: Stack) -> None:
    alice = await stack.login("alice")
    conversation = await open_conversation(
        stack, alice, sender={"email": "ADA@example.com", "name": "Ada <b>Lovelace</b> & co"})
    saved = await alice.http.post("/api/v1/canned-responses", json={
        "shortcut": "/Thanks", "title": "Thank you", "text": TEXT})
    assert saved.status_code == 201, saved.text
    assert saved.json()["shortcut"] == "thanks"
    assert saved.json()["created_by"] == stack.ids["alice"]

    rendered = await alice.http.post(
        f"/api/v1/conversations/{conversation['id']}/canned-responses/{saved.json()['id']}/render")
    assert rendered.status_code == 200, rendered.text
    # Plain text: values as they are (no escaping, no HTML), line breaks kept.
    assert rendered.json() == {"text": (
        "Hi Ada,\nthis is Alice (Alice) about "
        f"#{conversation['id']}; we will write to ada@example.com, Ada <b>Lovelace</b> & co.")}

    # Found by the shortcut's start while typing, or by words of the title or text.
    for q in ("/tha", "THANK", "write to"):
        found = (await alice.http.get("/api/v1/canned-responses", params={"q": q})).json()
        assert [c["shortcut"] for c in found] == ["thanks"], q
    assert (await alice.http.get("/api/v1/canned-responses", params={"q": "%"})).json() == []
    assert (await alice.http.get("/api/v1/canned-responses", params={"q": "hanks"})
            ).json() == []  # not inside the shortcut, nor in the text


async def test_canned_responses_are_checked_when_saved(stack: Stack) -> None:
    alice = await stack.login("alice")
    first = await alice.http.post("/api/v1/canned-responses",
                                  json={"shortcut": "hello", "text": "Hello {{contact.name}}"})
    assert first.status_code == 201
    for body, words in (
        ({"shortcut": "typo", "text": "Hi {{contact.nmae}}"}, "{{contact.nmae}}"),
        ({"shortcut": "evil", "text": "{{ contact.__class__ }}"}, "unknown variable"),
        ({"shortcut": "Hello", "text": "again"}, "/hello is taken"),
        ({"shortcut": "two words", "text": "x"}, "shortcut"),
        ({"shortcut": "blank", "text": "   "}, "text"),
    ):
        answer = await alice.http.post("/api/v1/canned-responses", json=body)
        assert answer.status_code == 422, body
        assert words in answer.json()["error"]["message"], answer.json()
    url = f"/api/v1/canned-responses/{first.json()['id']}"
    assert (await alice.http.patch(url, json={"text": "Hi {{agent.nope}}"})).status_code == 422
    changed = await alice.http.patch(url, json={"text": "Hi {{contact.first_name}}",
                                                "shortcut": "hi"})
    assert changed.status_code == 200
    assert (changed.json()["shortcut"], changed.json()["text"]) == (
        "hi", "Hi {{contact.first_name}}")


async def test_only_the_author_or_a_lead_changes_a_canned_response(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    admin = await stack.login("admin")
    saved = await alice.http.post("/api/v1/canned-responses",
                                  json={"shortcut": "bye", "text": "Bye!"})
    url = f"/api/v1/canned-responses/{saved.json()['id']}"
    assert [c["shortcut"] for c in (await bob.http.get("/api/v1/canned-responses")).json()] == [
        "bye"]  # shared by everyone
    assert (await bob.http.patch(url, json={"text": "mine now"})).status_code == 403
    assert (await bob.http.delete(url)).status_code == 403
    assert (await admin.http.patch(url, json={"title": "Goodbye"})).json()["title"] == "Goodbye"
    assert (await admin.http.delete(url)).status_code == 204
    assert (await alice.http.delete(url)).status_code == 404
    assert (await alice.http.get("/api/v1/canned-responses")).json() == []


async def test_rendering_needs_the_conversations_inbox(stack: Stack) -> None:
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    conversation = await open_conversation(stack, alice)
    saved = await bob.http.post("/api/v1/canned-responses",
                                json={"shortcut": "hey", "text": "Hey {{contact.name}}"})
    base = f"/api/v1/conversations/{conversation['id']}/canned-responses"
    assert (await bob.http.post(f"{base}/{saved.json()['id']}/render")).status_code == 404
    assert (await alice.http.post(f"{base}/999999/render")).status_code == 404
    ok = await alice.http.post(f"{base}/{saved.json()['id']}/render")
    assert ok.json() == {"text": "Hey Ada Lovelace"}


async def test_team_canned_responses_are_their_leads_to_change(stack: Stack) -> None:
    await stack.add_agent("lee", role="lead")
    await stack.add_agent("lena", role="lead")
    billing = await make_team(stack, "Billing", ("lee", "alice"))
    await make_team(stack, "Shipping", ("lena",))
    alice, lee, lena, admin = [await stack.login(n) for n in ("alice", "lee", "lena", "admin")]
    # An agent saves one for themselves; naming a team needs its lead.
    assert (await alice.http.post("/api/v1/canned-responses", json={
        "shortcut": "x", "text": "x", "team_id": billing})).status_code == 403
    team = await lee.http.post("/api/v1/canned-responses", json={
        "shortcut": "refund", "text": "We refunded it.", "team_id": billing})
    assert team.status_code == 201 and team.json()["team_id"] == billing
    url = f"/api/v1/canned-responses/{team.json()['id']}"
    # Another team's lead may not rewrite it; an admin may.
    assert (await lena.http.patch(url, json={"text": "mine"})).status_code == 403
    assert (await lena.http.delete(url)).status_code == 403
    assert (await lee.http.patch(url, json={"title": "Refund done"})).status_code == 200
    workspace = await admin.http.post("/api/v1/canned-responses", json={
        "shortcut": "hello", "text": "Hello!"})
    assert workspace.json()["team_id"] is None
    assert (await lee.http.delete(
        f"/api/v1/canned-responses/{workspace.json()['id']}")).status_code == 403
    assert (await admin.http.delete(url)).status_code == 204
