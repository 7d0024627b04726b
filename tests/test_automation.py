"""Automation rules on both shapes: a rule labels, prioritises, assigns and answers a matching
customer message live; stop processing; a rule never loops; actions that cannot be done are
recorded and the others still run; dry runs; who may keep which rules; clear errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inbox.models import AutomationFiring, AutomationTimer, Message, Notification
from tests.helpers import Agent, Stack, count_rows, eventually, make_team, message, of_type

RULES = "/api/v1/automation-rules"


async def labels(admin: Agent, *names: str) -> None:
    for name in names:
        made = await admin.http.post("/api/v1/labels", json={"name": name})
        assert made.status_code == 201, made.text


async def rule(client: Agent, **body: Any) -> dict[str, Any]:
    made = await client.http.post(RULES, json={"name": "Rule", "inbox_id": client.stack.ids[
        "support"], "trigger": "message_received"} | body)
    assert made.status_code == 201, made.text
    found: dict[str, Any] = made.json()
    return found


async def conversation_of(client: Agent, sender: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        items = (await client.http.get("/api/v1/conversations")).json()["items"]
        return next((c for c in items if c["contact_name"] == sender.title()), None)
    result: dict[str, Any] = await eventually(found)
    return result


async def thread(client: Agent, conversation_id: int) -> list[dict[str, Any]]:
    page = (await client.http.get(f"/api/v1/conversations/{conversation_id}/messages")).json()
    return list(page["items"])


async def firings(stack: Stack, rule_id: int) -> int:
    return await count_rows(stack, AutomationFiring, AutomationFiring.rule_id == rule_id)


async def test_a_rule_labels_assigns_and_answers_a_matching_message_live(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "billing")
    billing = await rule(admin, name="Billing questions", conditions=[
        {"field": "text", "op": "contains_any", "value": ["invoice", "refund"]},
        {"field": "channel", "op": "in", "value": ["api"]},
    ], actions=[
        {"type": "add_label", "label": "billing"},
        {"type": "set_priority", "priority": "high"},
        {"type": "assign_agent", "agent_id": stack.ids["alice"]},
        {"type": "reply", "text": "Hello {{contact.first_name}}, billing will answer today."},
    ])
    socket = await stack.ws(alice.http)
    await stack.inbound("support", [message("m-1", "Where is my INVOICE?", "cust-billing")])

    updated = await socket.wait_event(of_type("conversation.updated"))
    assert "billing" in updated["event"]["conversation"]["labels"]  # live, to the agent
    assert updated["event"]["caused_by"] == [billing["id"]]
    conversation = await conversation_of(alice, "cust-billing")

    async def done() -> dict[str, Any] | None:
        view: dict[str, Any] = (await alice.http.get(
            f"/api/v1/conversations/{conversation['id']}")).json()
        return view if view["assignee_id"] == stack.ids["alice"] else None

    view = await eventually(done)
    assert view["labels"] == ["billing"] and view["priority"] == "high"
    await stack.receiver.wait(1)
    assert stack.receiver.received[0]["text"] == "Hello Cust-Billing, billing will answer today."
    lines = [m["text"] for m in await thread(alice, conversation["id"]) if m["kind"] == "activity"]
    assert ("Rule “Billing questions”: added label billing; set priority high; assigned to "
            "Alice; replied") in lines
    listed = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}/automation"))
    assert [f["rule_name"] for f in listed.json()] == ["Billing questions"]

    # Another message that does not match: nothing more happens.
    await stack.inbound("support", [message("m-2", "Hello there", "cust-other")])
    other = await conversation_of(alice, "cust-other")
    await socket.quiet(1.0)
    assert await firings(stack, billing["id"]) == 1
    assert (await alice.http.get(f"/api/v1/conversations/{other['id']}")).json()["labels"] == []
    assert len(stack.receiver.received) == 1


async def test_stop_processing_and_the_order_of_rules(stack: Stack) -> None:
    admin = await stack.login("admin")
    await labels(admin, "first", "second", "third")
    first = await rule(admin, name="First", position=1, stop_processing=True,
                       conditions=[{"field": "text", "op": "regex", "value": r"^urgent\b"}],
                       actions=[{"type": "add_label", "label": "first"}])
    second = await rule(admin, name="Second", position=2,
                        actions=[{"type": "add_label", "label": "second"}])
    third = await rule(admin, name="Third", position=3, match="any", conditions=[
        {"field": "priority", "op": "in", "value": ["urgent"]},
        {"field": "subject", "op": "contains_any", "value": ["order"]}],
        actions=[{"type": "add_label", "label": "third"}])
    await stack.inbound("support", [message("s-1", "URGENT: help", "cust-a"),
                                    message("s-2", "just asking", "cust-b",
                                            subject="My order 42")])
    alice = await stack.login("alice")
    a, b = await conversation_of(alice, "cust-a"), await conversation_of(alice, "cust-b")

    async def labelled(conversation_id: int, want: list[str]) -> bool:
        view = (await alice.http.get(f"/api/v1/conversations/{conversation_id}")).json()
        return bool(view["labels"] == want)

    await eventually(lambda: labelled(a["id"], ["first"]))
    await eventually(lambda: labelled(b["id"], ["second", "third"]))
    assert await firings(stack, first["id"]) == 1
    assert await firings(stack, second["id"]) == 1  # b only: a stopped at First
    assert await firings(stack, third["id"]) == 1


async def test_rules_that_would_wake_each_other_fire_once_each(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "vip", "checked")
    # Each change of labels wakes both; left alone they would add and remove for ever.
    adds = await rule(admin, name="Adds", trigger="labels_changed", conditions=[
        {"field": "label", "op": "has_none", "value": ["checked"]}],
        actions=[{"type": "add_label", "label": "checked"}])
    removes = await rule(admin, name="Removes", trigger="labels_changed", conditions=[
        {"field": "label", "op": "has_any", "value": ["checked"]}],
        actions=[{"type": "remove_label", "label": "checked"}])
    await stack.inbound("support", [message("l-1", "hello", "cust-loop")])
    conversation = await conversation_of(alice, "cust-loop")
    socket = await stack.ws(alice.http)
    put = await alice.http.put(f"/api/v1/conversations/{conversation['id']}/labels",
                               json={"labels": ["vip"]})
    assert put.status_code == 200, put.text
    await eventually(lambda: _async_count(stack, removes["id"], 1))
    await socket.quiet(1.5)
    assert await firings(stack, adds["id"]) == 1
    assert await firings(stack, removes["id"]) == 1
    view = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}")).json()
    assert view["labels"] == ["vip"]


async def _in_thread(client: Agent, conversation_id: int, text: str) -> bool:
    return any(m["text"] == text for m in await thread(client, conversation_id))


async def _async_count(stack: Stack, rule_id: int, want: int) -> bool:
    return await firings(stack, rule_id) == want


async def test_an_action_that_cannot_be_done_is_recorded_and_the_rest_run(
        stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "late")
    made = await rule(admin, name="Late", actions=[
        {"type": "add_label", "label": "late"},
        {"type": "add_note", "text": "Customer wrote late: check the SLA."},
        {"type": "set_status", "status": "pending"},
    ])
    gone = await admin.http.get("/api/v1/labels")
    label_id = next(label["id"] for label in gone.json() if label["name"] == "late")
    assert (await admin.http.delete(f"/api/v1/labels/{label_id}")).status_code == 204
    await stack.inbound("support", [message("x-1", "hello", "cust-late")])
    conversation = await conversation_of(alice, "cust-late")

    async def recorded() -> list[str]:
        return [m["text"] for m in await thread(alice, conversation["id"])
                if m["kind"] == "activity" and m["text"].startswith("Rule")]

    lines = await eventually(recorded)
    assert lines[0].startswith("Rule “Late”: could not add the label: labels: no label named "
                               "'late'")
    assert lines[0].endswith("; added a note; set pending")
    notes = [m for m in await thread(alice, conversation["id"]) if m["kind"] == "note"]
    assert [n["text"] for n in notes] == ["Customer wrote late: check the SLA."]
    view = (await alice.http.get(f"/api/v1/conversations/{conversation['id']}")).json()
    assert view["status"] == "pending"
    assert await firings(stack, made["id"]) == 1


async def test_agent_replied_status_and_assignee_triggers(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "answered", "closed-by-rule", "assigned")
    await rule(admin, name="Answered", trigger="agent_replied",
               actions=[{"type": "add_label", "label": "answered"}])
    await rule(admin, name="Resolved", trigger="status_changed",
               conditions=[{"field": "status", "op": "in", "value": ["resolved"]}],
               actions=[{"type": "add_label", "label": "closed-by-rule"}])
    await rule(admin, name="Assigned", trigger="assignee_changed",
               conditions=[{"field": "assignee", "op": "is_set"}],
               actions=[{"type": "add_label", "label": "assigned"}])
    await stack.inbound("support", [message("t-1", "hello", "cust-t")])
    conversation = await conversation_of(alice, "cust-t")
    cid = conversation["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/assignment",
                                  json={"assignee_id": stack.ids["alice"]})).status_code == 200
    sent = await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                 json={"text": "On it."})
    assert sent.status_code in (200, 201, 202), sent.text
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "resolved"})).status_code == 200

    async def all_three() -> bool:
        view = (await alice.http.get(f"/api/v1/conversations/{cid}")).json()
        return set(view["labels"]) == {"answered", "closed-by-rule", "assigned"}

    await eventually(all_three)


async def test_dry_run_shows_what_a_rule_would_match(stack: Stack) -> None:
    admin = await stack.login("admin")
    await stack.inbound("support", [message("d-1", "my invoice is wrong", "cust-d1"),
                                    message("d-2", "hello", "cust-d2"),
                                    message("d-3", "INVOICE again", "cust-d3")])
    await stack.inbound("sales", [message("d-4", "invoice from sales", "cust-d4")])
    alice = await stack.login("alice")
    await conversation_of(alice, "cust-d3")
    body = {"name": "Try", "inbox_id": stack.ids["support"], "trigger": "message_received",
            "conditions": [{"field": "text", "op": "contains_any", "value": ["invoice"]}],
            "actions": [{"type": "set_priority", "priority": "low"}]}
    tried = await admin.http.post(f"{RULES}/dry-run", json=body)
    assert tried.status_code == 200, tried.text
    found = tried.json()
    assert found["checked"] == 3 and found["matched"] == 2
    assert {m["contact_name"] for m in found["matches"]} == {"Cust-D1", "Cust-D3"}
    assert (await admin.http.get(RULES)).json() == []  # nothing was saved or done


@pytest.mark.parametrize(("body", "error"), [
    ({"trigger": "sometimes"}, "trigger: unknown trigger 'sometimes'"),
    ({"conditions": [{"field": "mood", "op": "in", "value": ["x"]}]},
     "conditions[0].field: unknown field 'mood'"),
    ({"conditions": [{"field": "text", "op": "regex", "value": "(unclosed"}]},
     "conditions[0].value: not a regular expression"),
    ({"conditions": [{"field": "status", "op": "in", "value": ["done"]}]},
     "conditions[0].value: unknown status 'done'"),
    ({"actions": [{"type": "explode"}]}, "actions[0].type: unknown action 'explode'"),
    ({"actions": [{"type": "add_label", "label": "nope"}]}, "no label named 'nope'"),
    ({"actions": [{"type": "reply"}]}, "actions[0]: a reply has a text or a canned_id"),
    ({"actions": [{"type": "assign_agent", "agent_id": 999_999}]}, "no active agent with id"),
    ({"actions": [{"type": "set_status", "status": "snoozed"}]}, "actions[0].status"),
])
async def test_rules_are_checked_on_save_with_clear_errors(
        stack: Stack, body: dict[str, Any], error: str) -> None:
    admin = await stack.login("admin")
    full = {"name": "Bad", "inbox_id": stack.ids["support"], "trigger": "message_received",
            "actions": [{"type": "set_priority", "priority": "low"}]} | body
    refused = await admin.http.post(RULES, json=full)
    assert refused.status_code == 422, refused.text
    assert error in refused.json()["error"]["message"], refused.text
    assert (await admin.http.get(RULES)).json() == []


async def test_who_keeps_which_rules(stack: Stack) -> None:
    await stack.add_agent("lena", role="lead", inboxes=("support",))
    await make_team(stack, "Support desk", members=("lena",), inboxes=("support",))
    lena, alice, admin = (await stack.login("lena"), await stack.login("alice"),
                          await stack.login("admin"))
    body = {"name": "Mine", "inbox_id": stack.ids["support"], "trigger": "message_received",
            "actions": [{"type": "set_priority", "priority": "low"}]}
    assert (await alice.http.post(RULES, json=body)).status_code == 403
    assert (await alice.http.get(RULES)).status_code == 403
    mine = await lena.http.post(RULES, json=body)
    assert mine.status_code == 201, mine.text
    assert (await lena.http.post(RULES, json=body | {"inbox_id": None})).status_code == 403
    sales = await lena.http.post(RULES, json=body | {"inbox_id": stack.ids["sales"]})
    assert sales.status_code == 422  # not an inbox of hers
    admins = await admin.http.post(RULES, json=body | {"inbox_id": stack.ids["sales"]})
    assert admins.status_code == 201
    assert [r["name"] for r in (await lena.http.get(RULES)).json()] == ["Mine"]
    other = f"{RULES}/{admins.json()['id']}"
    assert (await lena.http.get(other)).status_code == 404
    assert (await lena.http.patch(other, json={"name": "x"})).status_code == 404
    changed = await lena.http.patch(f"{RULES}/{mine.json()['id']}", json={"is_active": False})
    assert changed.status_code == 200 and changed.json()["is_active"] is False
    assert (await lena.http.delete(f"{RULES}/{mine.json()['id']}")).status_code == 204


async def test_the_automation_agent_is_nobody_to_manage(stack: Stack) -> None:
    admin = await stack.login("admin")
    await labels(admin, "seen")
    await rule(admin, actions=[{"type": "add_label", "label": "seen"}])
    await stack.inbound("support", [message("n-1", "hi", "cust-n")])
    await eventually(lambda: count_rows(stack, Message, Message.kind == "activity"))
    listed = (await admin.http.get("/api/v1/admin/agents")).json()
    names = [a["name"] for a in (listed["items"] if isinstance(listed, dict) else listed)]
    assert "Automation" not in names
    refused = await stack.client().post("/api/v1/auth/login", json={
        "email": "automation@switchboard.invalid", "password": "!"})
    assert refused.status_code == 401


async def test_timed_rules_fire_when_the_wait_lasts_and_not_when_it_ends(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "stale", "silent")
    pending = await rule(admin, name="Stale", trigger="pending_for", delay_hours=0.0005,
                         actions=[{"type": "add_label", "label": "stale"},
                                  {"type": "set_status", "status": "open"}])
    silent = await rule(admin, name="Silent", trigger="no_customer_reply_for",
                        delay_hours=0.001, actions=[{"type": "add_label", "label": "silent"}])
    await stack.inbound("support", [message("w-1", "hello", "cust-wait")])
    cid = (await conversation_of(alice, "cust-wait"))["id"]
    url = f"/api/v1/conversations/{cid}"

    # Our reply arms "Silent"; the customer answering within the wait disarms it.
    assert (await alice.http.post(f"{url}/messages", json={"text": "Hi!"})).status_code < 300
    await stack.inbound("support", [message("w-2", "thanks", "cust-wait")])
    # Ingest is batched: "thanks" stored after the pending below would reopen the
    # conversation (a customer's word ends a pending wait) and nothing would be due.
    await eventually(lambda: _in_thread(alice, cid, "thanks"))
    # Pending for 1.8 s: "Stale" labels it and opens it again, once.
    assert (await alice.http.post(f"{url}/status", json={"status": "pending"})
            ).status_code == 200

    async def reopened() -> bool:
        got = (await alice.http.get(url)).json()
        return bool(got["status"] == "open" and "stale" in got["labels"])

    await eventually(reopened, timeout=30)
    await asyncio.sleep(4.5)  # past the silent rule's wait, had it stayed armed
    assert await firings(stack, pending["id"]) == 1
    assert await firings(stack, silent["id"]) == 0
    assert "silent" not in (await alice.http.get(url)).json()["labels"]

    # Our reply, then silence: "Silent" fires.
    assert (await alice.http.post(f"{url}/messages", json={"text": "Anything else?"})
            ).status_code < 300
    await eventually(lambda: _async_count(stack, silent["id"], 1), timeout=20)
    assert "silent" in (await alice.http.get(url)).json()["labels"]


async def test_a_timed_trigger_needs_its_hours(stack: Stack) -> None:
    admin = await stack.login("admin")
    body = {"name": "x", "inbox_id": stack.ids["support"], "trigger": "pending_for",
            "actions": [{"type": "set_priority", "priority": "low"}]}
    refused = await admin.http.post(RULES, json=body)
    assert refused.status_code == 422
    assert "delay_hours: pending_for needs how many hours" in refused.json()["error"]["message"]
    other = await admin.http.post(RULES, json=body | {"trigger": "message_received",
                                                      "delay_hours": 2})
    assert other.status_code == 422
    assert "only pending_for and no_customer_reply_for wait" in other.json()["error"]["message"]
    made = await admin.http.post(RULES, json=body | {"delay_hours": 72})
    assert made.status_code == 201 and made.json()["delay_hours"] == 72


async def test_timed_rules_that_would_wake_each_other_stop_after_one_round(
        stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    # Each sets the conversation pending again, which starts the other's wait: left alone
    # they would take turns for ever.
    again = [{"type": "set_status", "status": "open"}, {"type": "set_status", "status": "pending"}]
    first = await rule(admin, name="First", trigger="pending_for", delay_hours=0.0003,
                       actions=again)
    second = await rule(admin, name="Second", trigger="pending_for", delay_hours=0.0003,
                        actions=again)
    await stack.inbound("support", [message("t-1", "hello", "cust-turns")])
    cid = (await conversation_of(alice, "cust-turns"))["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "pending"})).status_code == 200
    # Each fires on the agent's pending, and once more on the other's; then nothing.
    await eventually(lambda: _async_count(stack, first["id"], 2), timeout=20)
    await eventually(lambda: _async_count(stack, second["id"], 2), timeout=20)
    await asyncio.sleep(5)  # several waits' worth
    assert await firings(stack, first["id"]) == 2
    assert await firings(stack, second["id"]) == 2


async def test_editing_a_timed_rule_moves_or_ends_the_waits_under_way(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "stale")
    made = await rule(admin, name="Stale", trigger="pending_for", delay_hours=0.0005,
                      actions=[{"type": "add_label", "label": "stale"}])
    url = f"{RULES}/{made['id']}"
    await stack.inbound("support", [message("e-1", "hello", "cust-edit")])
    await stack.inbound("support", [message("e-2", "hello", "cust-other")])
    one = (await conversation_of(alice, "cust-edit"))["id"]
    other = (await conversation_of(alice, "cust-other"))["id"]
    assert (await admin.http.patch(url, json={"delay_hours": 1})).status_code == 200
    for cid in (one, other):
        assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                      json={"status": "pending"})).status_code == 200
    await asyncio.sleep(3)  # past the old wait: the new one holds them
    assert await firings(stack, made["id"]) == 0
    # Shorter again: the conversations pending for longer than that get it at once.
    assert (await admin.http.patch(url, json={"delay_hours": 0.0005})).status_code == 200
    await eventually(lambda: _async_count(stack, made["id"], 2), timeout=20)

    # Another trigger: the waits under way were for the rule it was.
    for cid in (one, other):
        assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                      json={"status": "open"})).status_code == 200
        assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                      json={"status": "pending"})).status_code == 200
    assert (await admin.http.patch(url, json={"delay_hours": 1})).status_code == 200

    async def armed() -> bool:
        return await count_rows(stack, AutomationTimer,
                                AutomationTimer.rule_id == made["id"]) == 2

    await eventually(armed)
    assert (await admin.http.patch(url, json={
        "trigger": "no_customer_reply_for", "delay_hours": 0.0005})).status_code == 200
    assert await count_rows(stack, AutomationTimer, AutomationTimer.rule_id == made["id"]) == 0
    await asyncio.sleep(3)
    assert await firings(stack, made["id"]) == 2


async def test_a_rule_does_not_notify_an_agent_who_left_the_inbox(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    made = await rule(admin, name="Tell Alice", actions=[
        {"type": "notify", "agent_id": stack.ids["alice"]}, {"type": "set_priority",
                                                             "priority": "high"}])
    await stack.inbound("support", [message("n-1", "first", "cust-notify")])
    await eventually(lambda: _async_count(stack, made["id"], 1))
    told = (await alice.http.get("/api/v1/notifications")).json()["items"]
    assert [n["kind"] for n in told] == ["rule"]

    left = await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                                json={"agent_ids": []})
    assert left.status_code < 300, left.text
    await stack.inbound("support", [message("n-2", "second", "cust-notify-2")])
    await eventually(lambda: _async_count(stack, made["id"], 2))
    # (The list leaves out what she may not see now: the rows tell what was made.)
    assert await count_rows(stack, Notification,
                            Notification.agent_id == stack.ids["alice"]) == 1

    async def line() -> list[str]:
        items = (await admin.http.get("/api/v1/conversations")).json()["items"]
        cid = next(c["id"] for c in items if c["contact_name"] == "Cust-Notify-2")
        return [m["text"] for m in await thread(admin, cid)
                if m["kind"] == "activity" and m["text"].startswith("Rule")]

    assert (await eventually(line)) == [
        "Rule “Tell Alice”: could not notify: Alice does not see this inbox any more; "
        "set priority high"]


async def test_what_the_queue_assigns_after_a_rule_resolves_is_not_the_rules_doing(
        stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    capped = await admin.http.patch(f"/api/v1/admin/agents/{stack.ids['alice']}",
                                    json={"capacity": 1})
    assert capped.status_code == 200, capped.text
    await rule(admin, name="Goodbye", conditions=[
        {"field": "text", "op": "contains_any", "value": ["bye"]}],
        actions=[{"type": "set_status", "status": "resolved"}])
    socket = await stack.ws(alice.http)  # online: the queue gives her conversations
    await stack.inbound("support", [message("q-1", "hello", "cust-first")])
    first = await conversation_of(alice, "cust-first")
    assert first["assignee_id"] == stack.ids["alice"]
    await stack.inbound("support", [message("q-2", "waiting", "cust-second")])
    await stack.inbound("support", [message("q-3", "bye now", "cust-first")])
    # The rule resolved the first; the queue then gave her the second: a change of its own
    # (rules listening to assignments may act on it).
    resolved = await socket.wait_event(of_type("conversation.status_changed", id=first["id"],
                                               status="resolved"), timeout=20)
    assert resolved["event"]["caused_by"]
    given = await socket.wait_event(of_type("conversation.assigned",
                                            contact_name="Cust-Second"), timeout=20)
    assert given["event"]["conversation"]["assignee_id"] == stack.ids["alice"]
    assert given["event"]["caused_by"] == []


async def test_a_rule_assigns_by_the_inbox_policy_or_leaves_it_in_the_queue(
        stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    support = stack.ids["support"]
    manual = await admin.http.patch(f"/api/v1/inboxes/{support}/assignment",
                                    json={"auto_assign": False})
    assert manual.status_code == 200, manual.text
    capped = await admin.http.patch(f"/api/v1/admin/agents/{stack.ids['alice']}",
                                    json={"capacity": 1})
    assert capped.status_code == 200, capped.text
    made = await rule(admin, name="Policy", actions=[{"type": "assign_auto"}])
    socket = await stack.ws(alice.http)  # online: the policy may pick her
    await stack.inbound("support", [message("p-1", "first", "cust-policy-1")])
    await eventually(lambda: _async_count(stack, made["id"], 1))
    first = await conversation_of(alice, "cust-policy-1")
    assert first["assignee_id"] == stack.ids["alice"]
    lines = [m["text"] for m in await thread(alice, first["id"]) if m["kind"] == "activity"]
    assert "Rule “Policy”: assigned by the policy to Alice" in lines
    assert "Automation assigned this conversation to the assignment policy: Alice has it now" \
        in lines

    # She is at capacity: the next one waits in the queue.
    await stack.inbound("support", [message("p-2", "second", "cust-policy-2")])
    await eventually(lambda: _async_count(stack, made["id"], 2))
    second = await conversation_of(admin, "cust-policy-2")
    assert second["assignee_id"] is None and second["waiting_since"] is not None
    lines = [m["text"] for m in await thread(admin, second["id"]) if m["kind"] == "activity"]
    assert "Rule “Policy”: assigned by the policy (it waits in the queue)" in lines
    await socket.close()


async def test_business_hours_conditions_on_a_live_message(stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    await labels(admin, "in-hours", "after-hours")
    always = {"time_zone": "America/New_York",
              "hours": {d: [["00:00", "24:00"]] for d in
                        ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
    open_rule = await rule(admin, name="Open", conditions=[
        {"field": "business_hours", "op": "open", "value": always}],
        actions=[{"type": "add_label", "label": "in-hours"}])
    closed_rule = await rule(admin, name="Closed", conditions=[
        {"field": "business_hours", "op": "closed", "value": always}],
        actions=[{"type": "add_label", "label": "after-hours"}])
    assert open_rule["conditions"][0]["value"] == always
    await stack.inbound("support", [message("h-1", "hello", "cust-hours")])
    await eventually(lambda: _async_count(stack, open_rule["id"], 1))
    got = await conversation_of(alice, "cust-hours")
    assert got["labels"] == ["in-hours"]
    assert await firings(stack, closed_rule["id"]) == 0
    bad = await admin.http.post(RULES, json={
        "name": "x", "inbox_id": stack.ids["support"], "trigger": "message_received",
        "conditions": [{"field": "business_hours", "op": "open",
                        "value": {"time_zone": "Nowhere/Here", "hours": {"mon": []}}}],
        "actions": [{"type": "set_priority", "priority": "low"}]})
    assert bad.status_code == 422
    assert bad.json()["error"]["message"].startswith("conditions[0].value: ")
