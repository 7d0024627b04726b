"""Helpers of the working-together tests: a conversation to work on, a second support agent."""

from __future__ import annotations

from typing import Any

from tests.helpers import Agent, Stack, eventually


async def open_conversation(
    stack: Stack, agent: Agent, *, inbox: str = "support", ext_id: str = "m-1",
    sender: dict[str, Any] | None = None, text: str = "hello",
) -> dict[str, Any]:
    """Send an inbound message and return its conversation as `agent` lists it."""
    who = sender or {"id": "ada", "name": "Ada Lovelace"}
    answer = await stack.inbound(inbox, [{"id": ext_id, "sender": who, "text": text}])
    assert answer.status_code == 202, answer.text

    async def listed() -> dict[str, Any] | None:
        items = (await agent.http.get(
            f"/api/v1/conversations?inbox_id={stack.ids[inbox]}")).json()["items"]
        return next((c for c in items if c["last_message_preview"] == text), None)

    found: dict[str, Any] = await eventually(listed)
    return found


async def add_bob_to_support(stack: Stack, admin: Agent) -> None:
    """Make bob (of sales) a member of support too, next to alice."""
    answer = await admin.http.put(
        f"/api/v1/inboxes/{stack.ids['support']}/members",
        json={"agent_ids": [stack.ids["alice"], stack.ids["bob"]]},
    )
    assert answer.status_code == 204, answer.text
