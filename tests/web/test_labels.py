"""Labels and priority: leads keep the set, agents label conversations, everyone sees it live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.helpers import Stack, make_team, message, of_type
from tests.web.collab import open_conversation


def updated(*changes: str) -> Callable[[dict[str, Any]], bool]:
    """Predicate: a conversation.updated event with exactly these changes."""
    return lambda e: e["type"] == "conversation.updated" and e["changes"] == list(changes)


async def test_labels_and_priority_reach_the_inbox_live(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    for name, color in (("billing", "#2563EB"), ("VIP", None)):
        created = await admin.http.post("/api/v1/labels", json={"name": name, "color": color})
        assert created.status_code == 201, created.text
    assert [(label["name"], label["color"]) for label in
            (await alice.http.get("/api/v1/labels")).json()] == [
        ("billing", "#2563eb"), ("VIP", "#6b7280")]
    conversation = await open_conversation(stack, alice)
    other = await open_conversation(stack, alice, ext_id="m-2", sender={"id": "ben"}, text="yo")
    conv = f"/api/v1/conversations/{conversation['id']}"
    admin_ws = await admin.ws()

    labelled = await alice.http.put(conv + "/labels", json={"labels": ["vip", "Billing"]})
    assert labelled.status_code == 200, labelled.text
    assert labelled.json()["labels"] == ["billing", "VIP"]
    live = await admin_ws.wait_event(updated("labels"))
    assert live["event"]["conversation"]["labels"] == ["billing", "VIP"]
    assert live["event"]["by_agent_id"] == stack.ids["alice"]

    unknown = await alice.http.put(conv + "/labels", json={"labels": ["vip", "nope"]})
    assert unknown.status_code == 422 and "'nope'" in unknown.json()["error"]["message"]

    prioritised = await alice.http.put(conv + "/priority", json={"priority": "urgent"})
    assert prioritised.status_code == 200 and prioritised.json()["priority"] == "urgent"
    live = await admin_ws.wait_event(updated("priority"))
    assert live["event"]["conversation"]["priority"] == "urgent"
    assert live["event"]["conversation"]["labels"] == ["billing", "VIP"]
    bad = await alice.http.put(conv + "/priority", json={"priority": "critical"})
    assert bad.status_code == 422

    # Labels show wherever a conversation does: the list (and its filter), the conversation,
    # and the events of a new message.
    listed = (await alice.http.get("/api/v1/conversations")).json()["items"]
    assert {c["id"]: c["labels"] for c in listed} == {
        conversation["id"]: ["billing", "VIP"], other["id"]: []}
    only = (await alice.http.get("/api/v1/conversations?label=VIP")).json()["items"]
    assert [c["id"] for c in only] == [conversation["id"]]
    assert (await alice.http.get("/api/v1/conversations?label=other")).json()["items"] == []
    shown = (await alice.http.get(conv)).json()
    assert shown["labels"] == ["billing", "VIP"] and shown["priority"] == "urgent"
    await stack.inbound("support", [message("m-3", "again", "ada")])
    arrived = await admin_ws.wait_event(of_type("message.created", direction="in",
                                                conversation_id=conversation["id"]))
    assert arrived["event"]["conversation"]["labels"] == ["billing", "VIP"]

    # Removing a label takes it off its conversations, live.
    vip = next(label for label in (await admin.http.get("/api/v1/labels")).json()
               if label["name"] == "VIP")
    assert (await admin.http.delete(f"/api/v1/labels/{vip['id']}")).status_code == 204
    live = await admin_ws.wait_event(updated("labels"))
    assert live["event"]["conversation"]["labels"] == ["billing"]
    assert (await alice.http.get(conv)).json()["labels"] == ["billing"]
    cleared = await alice.http.put(conv + "/labels", json={"labels": []})
    assert cleared.json()["labels"] == []
    await admin_ws.close()


async def test_only_leads_and_admins_manage_labels(stack: Stack) -> None:
    await stack.add_agent("lee", role="lead")
    await make_team(stack, "Refunds", ("lee",))
    lee = await stack.login("lee")
    alice = await stack.login("alice")
    assert (await alice.http.post("/api/v1/labels", json={"name": "x"})).status_code == 403
    created = await lee.http.post("/api/v1/labels", json={"name": "refund"})
    assert created.status_code == 201
    label_id = created.json()["id"]
    assert (await alice.http.delete(f"/api/v1/labels/{label_id}")).status_code == 403
    for body in ({"name": "Refund"}, {"name": "ok", "color": "red"}, {"name": "a,b"},
                 {"name": "   "}):
        answer = await lee.http.post("/api/v1/labels", json=body)
        assert answer.status_code == 422, body
    assert (await lee.http.delete("/api/v1/labels/999999")).status_code == 404
    assert (await lee.http.delete(f"/api/v1/labels/{label_id}")).status_code == 204
    assert (await alice.http.get("/api/v1/labels")).json() == []


async def test_label_names_are_one_label_whatever_the_case_in_any_script(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    for name in ("Ärger", "Straße", "ΣΟΦΙΑ"):
        created = await admin.http.post("/api/v1/labels", json={"name": name})
        assert created.status_code == 201, created.text
    # The same names in another case (and ß as SS, a compatibility form) are refused, 422.
    for name in ("ärger", "ÄRGER", "STRASSE", "σοφια", "\uff33traße"):
        answer = await admin.http.post("/api/v1/labels", json={"name": name})
        assert answer.status_code == 422, (name, answer.text)
        assert "exists already" in answer.json()["error"]["message"]
    conversation = await open_conversation(stack, alice)
    labelled = await alice.http.put(f"/api/v1/conversations/{conversation['id']}/labels",
                                    json={"labels": ["ärger", "strasse", "Σοφια"]})
    assert labelled.status_code == 200, labelled.text
    assert sorted(labelled.json()["labels"]) == sorted(["Ärger", "Straße", "ΣΟΦΙΑ"])
    assert len((await alice.http.get("/api/v1/labels")).json()) == 3


async def test_labels_belong_to_the_workspace_or_a_team(stack: Stack) -> None:
    """Admins manage the workspace's labels; a team's leads manage their team's, and no
    other."""
    await stack.add_agent("lee", role="lead")
    await stack.add_agent("lena", role="lead")
    billing = await make_team(stack, "Billing", ("lee",))
    shipping = await make_team(stack, "Shipping", ("lena", "lee"))
    admin, lee, lena = [await stack.login(n) for n in ("admin", "lee", "lena")]
    workspace = (await admin.http.post("/api/v1/labels", json={"name": "VIP"})).json()
    assert workspace["team_id"] is None
    # Lee leads two teams: he says which owns the label, and only one of his own.
    vague = await lee.http.post("/api/v1/labels", json={"name": "Invoice"})
    assert vague.status_code == 422 and "which of your teams" in vague.text
    ours = await lee.http.post("/api/v1/labels", json={"name": "Invoice", "team_id": billing})
    assert ours.status_code == 201 and ours.json()["team_id"] == billing
    lenas = await lena.http.post("/api/v1/labels", json={"name": "Parcel"})
    assert lenas.status_code == 201 and lenas.json()["team_id"] == shipping  # her only team
    assert (await lena.http.post("/api/v1/labels", json={"name": "Sneaky", "team_id": billing})
            ).status_code == 403
    assert (await lena.http.post("/api/v1/labels", json={"name": "Ghost", "team_id": 99999})
            ).status_code == 422
    # Nobody but admins touches the workspace's; a team's is its leads'.
    assert (await lee.http.delete(f"/api/v1/labels/{workspace['id']}")).status_code == 403
    assert (await lena.http.delete(f"/api/v1/labels/{ours.json()['id']}")).status_code == 403
    assert (await lee.http.delete(f"/api/v1/labels/{lenas.json()['id']}")).status_code == 204
    # A deleted team's labels go to the workspace.
    assert (await admin.http.delete(f"/api/v1/teams/{billing}")).status_code == 204
    owners = {x["name"]: x["team_id"] for x in (await admin.http.get("/api/v1/labels")).json()}
    assert owners == {"VIP": None, "Invoice": None}


async def test_a_label_says_what_it_is_for(stack: Stack) -> None:
    admin = await stack.login("admin")
    made = await admin.http.post("/api/v1/labels", json={
        "name": "Billing", "description": "  Invoices,   refunds "})
    assert made.status_code == 201 and made.json()["description"] == "Invoices, refunds"
    listed = (await admin.http.get("/api/v1/labels")).json()
    assert [(x["name"], x["description"]) for x in listed] == [("Billing", "Invoices, refunds")]
    too_long = await admin.http.post("/api/v1/labels", json={"name": "X", "description": "y" * 201})
    assert too_long.status_code == 422
