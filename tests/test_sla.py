"""SLA on both shapes: a policy's clocks start with a conversation, warn the assignee live
when at risk, breach, show in the list's filters and sort, stop at the reply, pause while
pending; an automation rule acts on the breach; policies are checked on save."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Agent, Stack, eventually, make_team, message

POLICIES = "/api/v1/sla-policies"


async def conversation(client: Agent, sender: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        items = (await client.http.get("/api/v1/conversations")).json()["items"]
        return next((c for c in items if c["contact_name"] == sender.title()), None)
    result: dict[str, Any] = await eventually(found)
    return result


async def view(client: Agent, conversation_id: int) -> dict[str, Any]:
    found: dict[str, Any] = (await client.http.get(
        f"/api/v1/conversations/{conversation_id}")).json()
    return found


async def test_a_first_response_target_warns_breaches_and_is_met_by_the_reply(
        stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    made = await admin.http.post(POLICIES, json={
        "name": "Support", "inbox_id": stack.ids["support"],
        "first_response_minutes": 0.1, "warn_minutes": 0.05})  # 6 s, warned 3 s before
    assert made.status_code == 201, made.text
    assert made.json()["first_response_minutes"] == 0.1
    made_label = await admin.http.post("/api/v1/labels", json={"name": "late"})
    assert made_label.status_code == 201
    rule = await admin.http.post("/api/v1/automation-rules", json={
        "name": "Late", "trigger": "sla_breached", "inbox_id": stack.ids["support"],
        "actions": [{"type": "add_label", "label": "late"}]})
    assert rule.status_code == 201, rule.text
    socket = await stack.ws(alice.http)
    await stack.inbound("support", [message("sla-1", "hello?", "cust-sla")])
    found = await conversation(alice, "cust-sla")
    cid = found["id"]
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/assignment",
                                  json={"assignee_id": stack.ids["alice"]})).status_code == 200

    async def state(want: str) -> dict[str, Any] | None:
        got = await view(alice, cid)
        return got if got["sla_status"] == want else None

    ok = await eventually(lambda: state("ok"))
    assert ok["sla_due_at"] is not None
    at_risk = await socket.wait_event(
        lambda e: e["type"] == "conversation.updated" and "sla_at_risk" in e["changes"],
        timeout=15)
    assert at_risk["event"]["conversation"]["sla_status"] == "at_risk"
    warned = await socket.wait_event(lambda e: e["type"] == "notification.created"
                                     and e["notification"]["kind"] == "sla")
    notification = warned["event"]["notification"]
    assert notification["conversation_id"] == cid
    assert notification["text"].startswith("SLA first response at risk")
    await eventually(lambda: state("breached"), timeout=20)
    listed = (await alice.http.get("/api/v1/conversations?sla=breached")).json()["items"]
    assert [c["id"] for c in listed] == [cid]
    assert (await alice.http.get("/api/v1/conversations?sla=at_risk")).json()["items"] == []
    by_due = (await alice.http.get("/api/v1/conversations?sort=sla_due")).json()["items"]
    assert [c["id"] for c in by_due] == [cid]
    # The rule listening for breaches labelled it.
    await eventually(lambda: _has_label(alice, cid, "late"))

    sent = await alice.http.post(f"/api/v1/conversations/{cid}/messages",
                                 json={"text": "Sorry for the wait!"})
    assert sent.status_code in (200, 201, 202), sent.text
    met = await eventually(lambda: state("met"))
    assert met["sla_due_at"] is None
    assert (await alice.http.get("/api/v1/conversations?sla=running")).json()["items"] == []


async def _has_label(client: Agent, cid: int, name: str) -> bool:
    return name in (await view(client, cid))["labels"]


async def test_pending_pauses_and_a_customer_message_starts_the_next_response_clock(
        stack: Stack) -> None:
    admin, alice = await stack.login("admin"), await stack.login("alice")
    assert (await admin.http.post(POLICIES, json={
        "name": "All", "first_response_minutes": 60, "next_response_minutes": 30,
        "resolution_minutes": 600})).status_code == 201
    await stack.inbound("support", [message("p-1", "first", "cust-p")])
    cid = (await conversation(alice, "cust-p"))["id"]
    await eventually(lambda: _status(alice, cid, "ok"))
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "pending"})).status_code == 200
    paused = await eventually(lambda: _status(alice, cid, "paused"))
    assert paused["sla_due_at"] is None
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "open"})).status_code == 200
    resumed = await eventually(lambda: _status(alice, cid, "ok"))
    sent = await alice.http.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hi"})
    assert sent.status_code in (200, 201, 202)

    async def only_resolution_left() -> dict[str, Any] | None:
        got = await view(alice, cid)
        return got if got["sla_due_at"] and got["sla_due_at"] > resumed["sla_due_at"] else None

    answered = await eventually(only_resolution_left)  # first response met: resolution next
    await stack.inbound("support", [message("p-2", "and another thing", "cust-p")])

    async def waiting_again() -> dict[str, Any] | None:
        got = await view(alice, cid)
        return got if got["sla_due_at"] < answered["sla_due_at"] else None

    await eventually(waiting_again)  # the next-response target (30 min) is sooner
    assert (await alice.http.post(f"/api/v1/conversations/{cid}/status",
                                  json={"status": "resolved"})).status_code == 200
    await eventually(lambda: _status(alice, cid, "met"))


async def _status(client: Agent, cid: int, want: str) -> dict[str, Any] | None:
    got = await view(client, cid)
    return got if got["sla_status"] == want else None


@pytest.mark.parametrize(("body", "error"), [
    ({"name": "x"}, "at least one target"),
    ({"name": "x", "first_response_minutes": 5, "priorities": ["asap"]},
     "unknown priority 'asap'"),
    ({"name": "x", "first_response_minutes": 5, "label": "nope"}, "no label named 'nope'"),
    ({"name": "x", "first_response_minutes": 5, "calendar": {
        "time_zone": "Mars/Olympus", "hours": {"mon": [["09:00", "17:00"]]}}},
     "calendar.time_zone"),
    ({"name": "x", "first_response_minutes": 5, "calendar": {
        "time_zone": "Europe/Berlin", "hours": {"mon": [["18:00", "09:00"]]}}},
     "calendar.hours.mon[0]"),
])
async def test_policies_are_checked_on_save(stack: Stack, body: dict[str, Any],
                                            error: str) -> None:
    admin = await stack.login("admin")
    refused = await admin.http.post(POLICIES, json=body)
    assert refused.status_code == 422, refused.text
    assert error in refused.json()["error"]["message"]
    alice = await stack.login("alice")
    assert (await alice.http.post(POLICIES, json={"name": "x", "first_response_minutes": 5})
            ).status_code == 403
    assert (await admin.http.get(POLICIES)).json() == []


async def test_a_lead_reads_the_policies_of_the_inboxes_they_see(stack: Stack) -> None:
    await stack.add_agent("lena", role="lead", inboxes=("support",))
    await make_team(stack, "Support desk", ("lena",), ("support",))
    admin = await stack.login("admin")
    for name, inbox in (("Everywhere", None), ("Support", stack.ids["support"]),
                        ("Sales", stack.ids["sales"])):
        made = await admin.http.post(POLICIES, json={
            "name": name, "inbox_id": inbox, "first_response_minutes": 60})
        assert made.status_code == 201, made.text
    lena, alice = await stack.login("lena"), await stack.login("alice")
    listed = await lena.http.get(POLICIES)
    assert listed.status_code == 200, listed.text
    assert [p["name"] for p in listed.json()] == ["Everywhere", "Support"]
    assert [p["name"] for p in (await admin.http.get(POLICIES)).json()] == [
        "Everywhere", "Support", "Sales"]
    assert (await alice.http.get(POLICIES)).status_code == 403
