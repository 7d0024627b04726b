"""Search: messages, notes, subjects and contacts, with filters, pages and only what one may see."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from inbox.db import Database
from inbox.labels import label_key
from inbox.models import ConversationLabel, Label
from tests.helpers import Agent, Stack, eventually


def _from(ext_id: str, text: str, sender: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": ext_id, "sender": sender, "text": text, **extra}


ADA = {"id": "ada", "name": "Ada Lovelace", "email": "ada@lovelace.example"}
BEN = {"id": "ben", "name": "Ben Okafor", "phone": "+14155550123"}


async def _conversation_of(agent: Agent, contact_name: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        items = (await agent.http.get("/api/v1/conversations")).json()["items"]
        return next((c for c in items if c["contact_name"] == contact_name), None)

    found: dict[str, Any] = await eventually(find)
    return found


async def _search(agent: Agent, q: str, **params: str) -> list[tuple[str, Any]]:
    """(kind, id of the message, conversation or contact) of every result, first page."""
    response = await agent.http.get("/api/v1/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return [(i["kind"], _id(i)) for i in response.json()["items"]]


def _id(item: dict[str, Any]) -> int:
    for key in ("message", "contact", "conversation"):
        if item[key] is not None:
            return int(item[key]["id"])
    raise AssertionError(item)


async def test_search_finds_messages_notes_subjects_and_contacts_one_may_see(
    stack: Stack,
) -> None:
    alice, bob, admin = [await stack.login(n) for n in ("alice", "bob", "admin")]
    await stack.inbound("support", [_from("s-1", "My parcel is stuck in Zanzibar since Monday",
                                          ADA, subject="Missing quokka parcel")])
    conversation = await _conversation_of(alice, "Ada Lovelace")
    note = await alice.http.post(f"/api/v1/conversations/{conversation['id']}/messages",
                                 json={"text": "Escalated to the wombat warehouse team",
                                       "kind": "note"})
    assert note.status_code == 201

    response = await alice.http.get("/api/v1/search", params={"q": "zanzibar"})
    assert response.status_code == 200
    [hit] = response.json()["items"]
    assert hit["kind"] == "message" and hit["conversation"]["id"] == conversation["id"]
    assert "Zanzibar" in hit["message"]["text"] and "Zanzibar" in hit["snippet"]
    assert hit["contact"] is None
    assert response.json()["next_cursor"] is None

    assert await _search(alice, "WOMBAT warehouse") == [("note", note.json()["id"])]
    assert await _search(alice, "quokka") == [("conversation", conversation["id"])]
    contact_id = conversation["contact_id"]
    for q in ("ada@lovelace.example", "lovelace.example", "Lovel", "ada lovelace"):
        assert ("contact", contact_id) in await _search(alice, q), q
    assert await _search(alice, "zanzi") == [("message", hit["message"]["id"])]  # a prefix
    assert await _search(alice, "zanzibar wombat") == []  # every word must match
    # The contact list: by name, email or identity, and without q every visible contact.
    contacts = await alice.http.get("/api/v1/contacts", params={"q": "lovelace"})
    assert [c["id"] for c in contacts.json()["items"]] == [contact_id]
    assert [c["id"] for c in (await alice.http.get("/api/v1/contacts")).json()["items"]] == [
        contact_id]

    # Bob (sales only) finds nothing of it; an admin finds all of it.
    for q in ("zanzibar", "wombat", "quokka", "lovelace", "ada"):
        assert await _search(bob, q) == [], q
        assert (await bob.http.get("/api/v1/contacts", params={"q": q})).json()["items"] == []
    assert (await bob.http.get("/api/v1/contacts")).json()["items"] == []
    assert len(await _search(admin, "zanzibar")) == 1
    assert len(await _search(admin, "quokka")) == 1
    assert (await stack.client().get("/api/v1/search", params={"q": "ada"})).status_code == 401


async def test_search_filters(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [_from("f-1", "kiwi invoice for Ada", ADA)])
    await stack.inbound("support", [_from("f-2", "kiwi invoice for Ben", BEN)])
    ada = await _conversation_of(alice, "Ada Lovelace")
    ben = await _conversation_of(alice, "Ben Okafor")
    url = "/api/v1/conversations/{}"
    assert (await alice.http.post(url.format(ben["id"]) + "/status",
                                  json={"status": "resolved"})).status_code == 200
    for conversation, assignee in ((ada, None), (ben, stack.ids["alice"])):
        response = await alice.http.post(url.format(conversation["id"]) + "/assignment",
                                         json={"assignee_id": assignee})
        assert response.status_code == 200, response.text
    await _label(stack, ben["id"], "vip")

    async def conversations(**params: str) -> set[int]:
        response = await alice.http.get("/api/v1/search",
                                        params={"q": "kiwi", "kind": "message", **params})
        assert response.status_code == 200, response.text
        return {i["conversation"]["id"] for i in response.json()["items"]}

    both = {ada["id"], ben["id"]}
    assert await conversations() == both
    assert await conversations(status="resolved") == {ben["id"]}
    assert await conversations(status="open,pending") == {ada["id"]}
    assert await conversations(assignee="none") == {ada["id"]}
    assert await conversations(assignee=str(stack.ids["alice"])) == {ben["id"]}
    assert await conversations(label="VIP") == {ben["id"]}
    assert await conversations(label="no-such-label") == set()
    assert await conversations(channel="api") == both
    assert await conversations(channel="email") == set()
    assert await conversations(inbox_id=str(stack.ids["support"])) == both
    assert await conversations(inbox_id=str(stack.ids["sales"])) == set()
    today = datetime.now(UTC).date()
    assert await conversations(**{"from": today.isoformat()}) == both
    assert await conversations(to=(today - timedelta(days=1)).isoformat()) == set()
    assert await conversations(**{"from": (today + timedelta(days=1)).isoformat()}) == set()
    assert await conversations(to=today.isoformat()) == both  # the whole day
    # Contacts: those with a conversation that passes the filters.
    found = await _search(alice, "okafor", status="resolved")
    assert found == [("contact", ben["contact_id"])]
    assert await _search(alice, "okafor", status="open") == []
    assert await _search(alice, "14155550123") == [("contact", ben["contact_id"])]
    assert await _search(alice, "kiwi", kind="note") == []


async def _label(stack: Stack, conversation_id: int, name: str) -> None:
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            label = Label(name=name, name_key=label_key(name))
            session.add(label)
            await session.flush()
            assert label.id is not None
            session.add(ConversationLabel(conversation_id=conversation_id, label_id=label.id))
    finally:
        await db.close()


async def test_search_pages_with_a_cursor(stack: Stack) -> None:
    alice = await stack.login("alice")
    for n in range(5):
        await stack.inbound("support", [_from(f"p-{n}", f"papaya number {n}", ADA)])
    await eventually(lambda: _count(alice, "papaya", 5))
    seen: list[tuple[str, Any]] = []
    cursor = None
    for expected in (2, 2, 1):
        params = {"q": "papaya", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await alice.http.get("/api/v1/search", params=params)).json()
        assert len(page["items"]) == expected
        seen += [(i["kind"], _id(i)) for i in page["items"]]
        cursor = page["next_cursor"]
    assert cursor is None
    texts = [m["text"] for m in (await alice.http.get(
        f"/api/v1/conversations/{(await _conversation_of(alice, 'Ada Lovelace'))['id']}/messages"
    )).json()["items"]]
    assert len(set(seen)) == 5 and len(texts) == 5  # newest first, none twice, none missed
    contacts = (await alice.http.get("/api/v1/contacts", params={"limit": "1"})).json()
    assert len(contacts["items"]) == 1 and contacts["next_cursor"] is None


async def _count(agent: Agent, q: str, n: int) -> bool:
    items = (await agent.http.get("/api/v1/search", params={"q": q, "limit": "100"})).json()
    return len(items["items"]) == n


HOSTILE = [
    '"', "'", "''", '"unterminated', "a & b | !c", "foo:*", "(((", ")", "NEAR(a b)", "a* OR b",
    "\\", "%_", "-x", "AND", "NOT OR", "'; DROP TABLE messages; --", "🙂", "\x00", "a\x00b",
    "*", "^a", "col:value", "a <-> b", "!", "a:*:*", "ünïcödé", "日本語", "\u0301", "x" * 200,
    " ".join(["word"] * 60)[:200], "y" * 150 + " z", "NULL", "{}[]", "$1", "?", "%s",
]


async def test_hostile_queries_never_fail(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [_from("h-1", "an ordinary message", ADA)])
    await _conversation_of(alice, "Ada Lovelace")
    for q in HOSTILE:
        for path in ("/api/v1/search", "/api/v1/contacts"):
            response = await alice.http.get(path, params={"q": q})
            if "\x00" in q:  # refused for every route before it reaches one (web/http.py)
                assert response.status_code == 422, (path, q, response.text)
                assert response.json()["error"]["code"] == "invalid_parameter"
                continue
            assert response.status_code == 200, (path, q, response.text)
            assert response.json()["items"] == [], q
    huge_id = base64.urlsafe_b64encode(f"{datetime.now(UTC).isoformat()}|{10**30}".encode())
    for params in (
        {"q": "x" * 201}, {"q": ""}, {"q": " "}, {},
        {"q": "a", "status": "bogus"}, {"q": "a", "assignee": "someone"},
        {"q": "a", "assignee": "9" * 30}, {"q": "a", "inbox_id": "-1"},
        {"q": "a", "inbox_id": "9" * 30}, {"q": "a", "limit": "0"}, {"q": "a", "limit": "101"},
        {"q": "a", "limit": "x"}, {"q": "a", "from": "2026-13-45"}, {"q": "a", "to": "yesterday"},
        {"q": "a", "from": "2026-02-01", "to": "2026-01-01"}, {"q": "a", "kind": "activity"},
        {"q": "a", "cursor": "!!!"}, {"q": "a", "cursor": "m." + huge_id.decode()},
        {"q": "a", "cursor": "z.abc"}, {"q": "a", "label": "\x00"}, {"q": "a", "label": "x" * 500},
        {"q": "a", "channel": "a\x00"},
    ):
        response = await alice.http.get("/api/v1/search", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_parameter"
    for params in ({"q": "x" * 201}, {"cursor": "!!!"}, {"cursor": huge_id.decode()},
                   {"limit": "1000"}):
        response = await alice.http.get("/api/v1/contacts", params=params)
        assert response.status_code == 422, (params, response.text)
