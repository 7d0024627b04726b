"""The conversation list of an agent with several inboxes pages through them all in order
(on PostgreSQL it merges one ordered scan per inbox)."""

from __future__ import annotations

from datetime import datetime

from tests.helpers import Stack, eventually, message


async def test_pages_over_several_inboxes_newest_first(stack: Stack) -> None:
    admin = await stack.login("admin")
    response = await admin.http.put(f"/api/v1/inboxes/{stack.ids['sales']}/members",
                                    json={"agent_ids": [stack.ids["bob"], stack.ids["alice"]]})
    assert response.status_code == 204
    alice = await stack.login("alice")  # an agent of support and sales
    for n in range(12):
        inbox = "support" if n % 3 else "sales"
        await stack.inbound(inbox, [message(f"m-{n}", f"customer {n}", f"cust-{n}")])

    async def stored() -> bool:
        items = (await admin.http.get("/api/v1/conversations?limit=100")).json()["items"]
        return len(items) == 12

    await eventually(stored)
    items = (await admin.http.get("/api/v1/conversations?limit=100")).json()["items"]
    resolved = {c["id"] for c in items if c["last_message_preview"] in
                {"customer 0", "customer 4", "customer 5", "customer 9"}}
    for conversation_id in resolved:
        response = await admin.http.post(f"/api/v1/conversations/{conversation_id}/status",
                                          json={"status": "resolved"})
        assert response.status_code == 200

    async def pages(query: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            url = f"/api/v1/conversations?limit=3&{query}" + (f"&cursor={cursor}" if cursor else "")
            body = (await alice.http.get(url)).json()
            assert len(body["items"]) <= 3
            seen += [c["last_message_preview"] for c in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return seen

    items = (await admin.http.get("/api/v1/conversations?limit=100")).json()["items"]
    newest_first = sorted(items, reverse=True, key=lambda c: (
        datetime.fromisoformat(c["last_activity_at"]), c["id"]))
    expected = [c["last_message_preview"] for c in newest_first]
    assert await pages("") == expected
    assert await pages("status=open") == [
        c["last_message_preview"] for c in newest_first if c["id"] not in resolved]
    assert await pages("status=open,pending") == await pages("status=open")
    assert await pages("status=resolved") == [
        c["last_message_preview"] for c in newest_first if c["id"] in resolved]
    assert {c["inbox_id"] for c in items} == {stack.ids["support"], stack.ids["sales"]}
