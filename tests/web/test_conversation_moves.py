"""Merging two conversations of one customer, and splitting a message out, on both shapes."""

from __future__ import annotations

from typing import Any

from tests.helpers import Agent, Stack, eventually, message


async def _conversations(agent: Agent) -> dict[str, dict[str, Any]]:
    """The support inbox's conversations by the text of their first message."""
    found: dict[str, dict[str, Any]] = {}
    items = (await agent.http.get("/api/v1/conversations",
                                  params={"inbox_id": agent.stack.ids["support"]})).json()
    for conversation in items["items"]:
        thread = await _thread(agent, conversation["id"])
        found[thread[0]] = conversation
    return found


async def _thread(agent: Agent, conversation_id: int) -> list[str]:
    items = (await agent.http.get(f"/api/v1/conversations/{conversation_id}/messages")).json()
    return [m["text"] for m in items["items"] if m["kind"] == "message"]


async def _stored(stack: Stack, agent: Agent, count: int) -> None:
    async def enough() -> bool:
        page = (await agent.http.get("/api/v1/conversations")).json()["items"]
        total = 0
        for conversation in page:
            total += len(await _thread(agent, conversation["id"]))
        return total >= count

    await eventually(enough)


async def test_merging_keeps_every_message_and_later_replies_find_the_survivor(
    stack: Stack,
) -> None:
    alice, admin = await stack.login("alice"), await stack.login("admin")
    await stack.inbound("support", [message("m-1", "Order 7 is late", "ada")])
    await stack.inbound("support", [message("m-2", "Also my invoice", "ada")])
    await stack.inbound("support", [message("m-3", "Another customer", "bea")])
    await _stored(stack, alice, 3)
    by_text = await _conversations(alice)
    survivor, stranger = by_text["Order 7 is late"]["id"], by_text["Another customer"]["id"]
    items = (await alice.http.get(f"/api/v1/conversations/{survivor}/messages")).json()
    invoice = next(m for m in items["items"] if m["text"] == "Also my invoice")
    other = (await alice.http.post(f"/api/v1/messages/{invoice['id']}/split")).json()["id"]
    created = await admin.http.post("/api/v1/labels", json={"name": "billing"})
    assert created.status_code == 201, created.text
    labelled = await alice.http.put(f"/api/v1/conversations/{other}/labels",
                                    json={"labels": ["billing"]})
    assert labelled.status_code == 200, labelled.text

    refused = await alice.http.post(f"/api/v1/conversations/{survivor}/merge",
                                    json={"other_conversation_id": stranger})
    assert refused.status_code == 422 and "same customer" in refused.text
    merged = await alice.http.post(f"/api/v1/conversations/{survivor}/merge",
                                   json={"other_conversation_id": other})
    assert merged.status_code == 200, merged.text
    assert merged.json()["labels"] == ["billing"]
    assert await _thread(alice, survivor) == ["Order 7 is late", "Also my invoice"]
    gone = (await alice.http.get(f"/api/v1/conversations/{other}")).json()
    assert gone["merged_into_id"] == survivor and gone["status"] == "resolved"
    assert await _thread(alice, other) == []
    again = await alice.http.post(f"/api/v1/conversations/{survivor}/merge",
                                  json={"other_conversation_id": other})
    assert again.status_code == 422

    # A reply to a message of the merged conversation lands in the survivor.
    await stack.inbound("support", [message("m-4", "Any news?", "ada", in_reply_to="m-2")])
    await _stored(stack, alice, 4)
    assert await _thread(alice, survivor) == ["Order 7 is late", "Also my invoice", "Any news?"]
    # Another inbox's agent can neither merge nor find them.
    bob = await stack.login("bob")
    hidden = await bob.http.post(f"/api/v1/conversations/{survivor}/merge",
                                 json={"other_conversation_id": survivor})
    assert hidden.status_code == 404


async def test_a_message_split_out_opens_its_own_conversation(stack: Stack) -> None:
    alice = await stack.login("alice")
    await stack.inbound("support", [message("s-1", "My printer smokes", "ada")])
    await stack.inbound("support", [message("s-2", "Unrelated: change my address", "ada")])
    await _stored(stack, alice, 2)
    (conversation,) = (await _conversations(alice)).values()
    items = (await alice.http.get(
        f"/api/v1/conversations/{conversation['id']}/messages")).json()["items"]
    second = next(m for m in items if m["text"] == "Unrelated: change my address")
    split = await alice.http.post(f"/api/v1/messages/{second['id']}/split")
    assert split.status_code == 201, split.text
    new = split.json()
    assert new["id"] != conversation["id"] and new["assignee_id"] == stack.ids["alice"]
    assert new["contact_id"] == conversation["contact_id"]
    assert await _thread(alice, new["id"]) == ["Unrelated: change my address"]
    assert await _thread(alice, conversation["id"]) == ["My printer smokes"]
    # A reply naming the split message follows it.
    await stack.inbound("support", [message("s-3", "Here is the new one", "ada",
                                            in_reply_to="s-2")])
    await _stored(stack, alice, 3)
    assert await _thread(alice, new["id"]) == ["Unrelated: change my address",
                                               "Here is the new one"]
    only = (await alice.http.get(
        f"/api/v1/conversations/{conversation['id']}/messages")).json()["items"]
    first = next(m for m in only if m["kind"] == "message")
    refused = await alice.http.post(f"/api/v1/messages/{first['id']}/split")
    assert refused.status_code == 422 and "only message" in refused.text
