"""The conversation list and the thread page with keyset cursors and filters."""

from __future__ import annotations

import base64

from tests.helpers import Stack, eventually, message


async def _all_stored(stack: Stack, admin, count: int) -> None:  # type: ignore[no-untyped-def]
    async def done() -> bool:
        page = (await admin.http.get("/api/v1/conversations?limit=100")).json()["items"]
        return len(page) >= count

    await eventually(done)


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


async def test_conversation_list_pages_newest_first_without_gaps(stack: Stack) -> None:
    admin = await stack.login("admin")
    for n in range(23):
        await stack.inbound("support", [message(f"c-{n}", f"customer {n}", f"cust-{n}")])
    await _all_stored(stack, admin, 23)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/api/v1/conversations?limit=10" + (f"&cursor={cursor}" if cursor else "")
        body = (await admin.http.get(query)).json()
        seen += [c["last_message_preview"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"customer {n}" for n in reversed(range(23))]


async def test_filters_and_bad_parameters(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    await stack.inbound("support", [message("f-1", "one", "a")])
    await stack.inbound("support", [message("f-2", "two", "b")])
    await stack.inbound("sales", [message("f-3", "three", "c")])
    await _all_stored(stack, admin, 3)
    items = (await admin.http.get("/api/v1/conversations")).json()["items"]
    two = next(c for c in items if c["last_message_preview"] == "two")
    await alice.http.post(f"/api/v1/conversations/{two['id']}/assignment",
                          json={"assignee_id": stack.ids["alice"]})
    await alice.http.post(f"/api/v1/conversations/{two['id']}/status",
                          json={"status": "pending"})

    async def previews(query: str, who=alice) -> list[str]:  # type: ignore[no-untyped-def]
        body = (await who.http.get(f"/api/v1/conversations?{query}")).json()
        return [c["last_message_preview"] for c in body["items"]]

    assert await previews("assignee=me") == ["two"]
    assert await previews("assignee=none") == ["one"]
    assert await previews("status=pending") == ["two"]
    assert await previews("status=open,pending") == ["two", "one"]
    assert await previews(f"inbox_id={stack.ids['sales']}", admin) == ["three"]
    assert await previews(f"inbox_id={stack.ids['sales']}") == []
    assert await previews(f"contact_id={two['contact_id']}") == ["two"]
    for bad in ("status=closed", "assignee=someone", "limit=0", "limit=500", "cursor=%%%",
                "inbox_id=abc", "inbox_id=%C2%B2", "assignee=%C2%B2", "inbox_id=99999999999",
                "cursor=" + _cursor("2026-01-01T00:00:00+00:00|99999999999")):
        response = await alice.http.get(f"/api/v1/conversations?{bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["message"]


async def test_thread_pages_back_in_time(stack: Stack) -> None:
    admin = await stack.login("admin")
    for n in range(12):
        await stack.inbound("support", [message(f"t-{n}", f"line {n}", "ada")])

    async def all_in() -> list:  # type: ignore[type-arg]
        items = (await admin.http.get("/api/v1/conversations")).json()["items"]
        return items if items and items[0]["last_message_preview"] == "line 11" else []

    cid = (await eventually(all_in))[0]["id"]

    async def count() -> bool:
        body = (await admin.http.get(f"/api/v1/conversations/{cid}/messages?limit=100")).json()
        return len(body["items"]) == 12

    await eventually(count)
    newest = (await admin.http.get(f"/api/v1/conversations/{cid}/messages?limit=5")).json()
    assert [m["text"] for m in newest["items"]] == [f"line {n}" for n in range(7, 12)]
    older = (await admin.http.get(
        f"/api/v1/conversations/{cid}/messages?limit=5&before={newest['older_cursor']}")).json()
    assert [m["text"] for m in older["items"]] == [f"line {n}" for n in range(2, 7)]
    oldest = (await admin.http.get(
        f"/api/v1/conversations/{cid}/messages?limit=5&before={older['older_cursor']}")).json()
    assert [m["text"] for m in oldest["items"]] == ["line 0", "line 1"]
    assert oldest["older_cursor"] is None
