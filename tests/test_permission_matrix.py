"""The permission matrix: every API route and the websocket, tried by outsiders.

Three outsiders try every operation of the OpenAPI document against another inbox's data: an
agent of another inbox (bob), a team lead of another team (lena), and a logged-out client.
Every route must be listed in ROUTES with what it is (a new route fails this test until it
is), nothing they get back may carry the other inbox's data, and the data stays unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.helpers import Agent, Socket, Stack, eventually, message, of_type

# Every piece of the support inbox's data carries one of these; no outsider may see them.
MARKERS = ("matrix-secret", "matrixada")


@dataclass(frozen=True)
class Route:
    """What a route is, for an outsider: see `expected` below."""

    kind: str  # scoped | admin | lead | lead_global | self | public | logout
    body: Callable[[dict[str, Any]], Any] | None = None
    raw: bytes | None = None


def _none(ids: dict[str, Any]) -> None:
    return None


# (method, path as in the OpenAPI document) -> how outsiders must be treated.
ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/api/v1/auth/login"): Route(
        "public", lambda i: {"email": "alice@example.com", "password": "not-the-password"}),
    ("POST", "/api/v1/auth/logout"): Route("logout"),
    ("GET", "/api/v1/me"): Route("self"),
    ("PUT", "/api/v1/me/availability"): Route("self", lambda i: {"availability": "online"}),
    ("POST", "/api/v1/me/password"): Route(
        "self", lambda i: {"current_password": "wrong-password-1", "new_password": "x" * 12}),
    ("GET", "/api/v1/agents"): Route("self"),
    ("GET", "/api/v1/inboxes"): Route("self"),
    ("GET", "/api/v1/channels"): Route("admin"),
    ("GET", "/api/v1/inboxes/{inbox_id}"): Route("admin"),
    ("PATCH", "/api/v1/inboxes/{inbox_id}"): Route("admin", lambda i: {"name": "Mine now"}),
    ("POST", "/api/v1/inboxes"): Route(
        "admin", lambda i: {"name": "X", "channel": "api", "settings": {"secret": "s" * 16}}),
    ("PUT", "/api/v1/inboxes/{inbox_id}/members"): Route(
        "admin", lambda i: {"agent_ids": [i["bob"], i["lena"]]}),
    ("GET", "/api/v1/inboxes/{inbox_id}/sync"): Route("admin"),
    ("DELETE", "/api/v1/inboxes/{inbox_id}"): Route("admin"),
    ("POST", "/api/v1/inboxes/{inbox_id}/test"): Route("admin", lambda i: {}),
    ("POST", "/api/v1/channels/{channel}/test"): Route(
        "admin", lambda i: {"settings": {"secret": "matrix-secret"}}),
    ("GET", "/api/v1/conversations"): Route("self"),
    ("GET", "/api/v1/conversations/{conversation_id}"): Route("scoped"),
    ("GET", "/api/v1/conversations/{conversation_id}/messages"): Route("scoped"),
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): Route(
        "scoped", lambda i: {"text": "hijack"}),
    ("POST", "/api/v1/conversations/{conversation_id}/assignment"): Route(
        "scoped", lambda i: {"assignee_id": i["me"]}),
    ("POST", "/api/v1/conversations/{conversation_id}/status"): Route(
        "scoped", lambda i: {"status": "resolved"}),
    ("POST", "/api/v1/conversations/{conversation_id}/mute"): Route(
        "scoped", lambda i: {"muted": True}),
    ("POST", "/api/v1/conversations/{conversation_id}/read"): Route("scoped"),
    ("POST", "/api/v1/conversations/{conversation_id}/typing"): Route(
        "scoped", lambda i: {"typing": True}),
    ("GET", "/api/v1/attachments/{attachment_id}"): Route("scoped"),
    ("GET", "/api/v1/messages/{message_id}/html"): Route("scoped"),
    ("GET", "/api/v1/quarantine"): Route("admin"),
    ("GET", "/api/v1/quarantine/{item_id}/raw"): Route("admin"),
    ("POST", "/api/v1/conversations/{conversation_id}/attachments"): Route(
        "scoped", raw=b"stolen bytes"),
    ("GET", "/api/v1/files/{attachment_id}"): Route("public"),
    ("GET", "/api/v1/admin/agents"): Route("admin"),
    ("GET", "/api/v1/admin/dead-letters"): Route("admin"),
    ("POST", "/api/v1/conversations/{conversation_id}/merge"): Route(
        "scoped", lambda i: {"other_conversation_id": i["conversation"]}),
    ("POST", "/api/v1/messages/{message_id}/split"): Route("scoped"),
    ("POST", "/api/v1/admin/dead-letters/{stream}/{entry}/replay"): Route("admin"),
    ("DELETE", "/api/v1/admin/dead-letters/{stream}/{entry}"): Route("admin"),
    ("PATCH", "/api/v1/admin/agents/{agent_id}"): Route("admin", lambda i: {"role": "admin"}),
    ("POST", "/api/v1/admin/agents/{agent_id}/unlock"): Route("admin"),
    ("GET", "/api/v1/admin/invitations"): Route("admin"),
    ("POST", "/api/v1/admin/invitations"): Route(
        "admin", lambda i: {"email": "mole@example.com", "role": "admin"}),
    ("DELETE", "/api/v1/admin/invitations/{invitation_id}"): Route("admin"),
    ("POST", "/api/v1/auth/invitations/accept"): Route(
        "public", lambda i: {"token": "not-a-real-invitation-token", "password": "x" * 12}),
    ("GET", "/api/v1/teams"): Route("self"),
    ("POST", "/api/v1/teams"): Route(
        "admin", lambda i: {"name": "Moles", "member_ids": [i["me"]],
                            "inbox_ids": [i["support"]]}),
    ("PATCH", "/api/v1/teams/{team_id}"): Route("admin", lambda i: {"member_ids": [i["me"]]}),
    ("DELETE", "/api/v1/teams/{team_id}"): Route("admin"),
    ("POST", "/api/v1/me/totp/setup"): Route("self"),
    ("POST", "/api/v1/me/totp/enable"): Route("self", lambda i: {"code": "000000"}),
    ("POST", "/api/v1/me/totp/disable"): Route("self", lambda i: {"password": "wrong-password"}),
    ("POST", "/api/v1/conversations/bulk-assign"): Route(
        "lead", lambda i: {"conversation_ids": [i["conversation"]], "assignee_id": i["me"]}),
    ("PATCH", "/api/v1/inboxes/{inbox_id}/assignment"): Route(
        "lead", lambda i: {"auto_assign": False}),
    ("PUT", "/api/v1/inboxes/{inbox_id}/csat"): Route("lead", lambda i: {"enabled": False}),
    ("PUT", "/api/v1/agents/{agent_id}/capacity"): Route("lead", lambda i: {"capacity": 0}),
    ("GET", "/api/v1/reports/load"): Route("lead"),
    ("GET", "/api/v1/reports/activity"): Route("lead"),
    ("GET", "/api/v1/reports/activity.csv"): Route("lead"),
    ("GET", "/api/v1/assignment-rules"): Route("lead"),
    ("POST", "/api/v1/assignment-rules"): Route(
        "lead", lambda i: {"name": "steal", "inbox_id": i["support"],
                           "team_id": i["team_sales"], "conditions": []}),
    ("PATCH", "/api/v1/assignment-rules/{rule_id}"): Route(
        "lead", lambda i: {"team_id": i["team_sales"]}),
    ("DELETE", "/api/v1/assignment-rules/{rule_id}"): Route("lead"),
    ("GET", "/api/v1/automation-rules"): Route("lead"),
    ("POST", "/api/v1/automation-rules"): Route("lead", lambda i: _automation(i)),
    ("POST", "/api/v1/automation-rules/dry-run"): Route("lead", lambda i: _automation(i)),
    ("GET", "/api/v1/automation-vocabulary"): Route("self"),
    ("GET", "/api/v1/automation-rules/{automation_rule_id}"): Route("lead"),
    ("PATCH", "/api/v1/automation-rules/{automation_rule_id}"): Route(
        "lead", lambda i: {"actions": [{"type": "reply", "text": "hijack"}]}),
    ("DELETE", "/api/v1/automation-rules/{automation_rule_id}"): Route("lead"),
    ("GET", "/api/v1/conversations/{conversation_id}/automation"): Route("scoped"),
    ("GET", "/api/v1/sla-policies"): Route("lead_global"),
    ("POST", "/api/v1/sla-policies"): Route(
        "admin", lambda i: {"name": "mole", "first_response_minutes": 1}),
    ("PATCH", "/api/v1/sla-policies/{policy_id}"): Route(
        "admin", lambda i: {"first_response_minutes": 99999}),
    ("DELETE", "/api/v1/sla-policies/{policy_id}"): Route("admin"),
    ("GET", "/api/v1/crm/connectors"): Route("admin"),
    ("GET", "/api/v1/crm/connections"): Route("admin"),
    ("POST", "/api/v1/crm/connections"): Route(
        "admin", lambda i: {"kind": "hubspot", "settings": {"access_token": "mole",
                                                            "client_secret": "mole"}}),
    ("GET", "/api/v1/crm/connections/{connection_id}"): Route("admin"),
    ("PATCH", "/api/v1/crm/connections/{connection_id}"): Route(
        "admin", lambda i: {"settings": {"api_base": "https://mole.example"}}),
    ("DELETE", "/api/v1/crm/connections/{connection_id}"): Route("admin"),
    ("POST", "/api/v1/crm/connections/{connection_id}/backfill"): Route("admin"),
    ("GET", "/api/v1/crm/connections/{connection_id}/log"): Route("admin"),
    ("GET", "/api/v1/contacts/{contact_id}/crm"): Route("scoped"),
    ("GET", "/api/v1/webhook-event-types"): Route("admin"),
    ("GET", "/api/v1/webhook-endpoints"): Route("admin"),
    ("POST", "/api/v1/webhook-endpoints"): Route(
        "admin", lambda i: {"url": "https://mole.example/hooks"}),
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}"): Route("admin"),
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}"): Route(
        "admin", lambda i: {"url": "https://mole.example/hooks"}),
    ("DELETE", "/api/v1/webhook-endpoints/{endpoint_id}"): Route("admin"),
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): Route("admin"),
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries"): Route("admin"),
    ("GET", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}"): Route("admin"),
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay"): Route(
        "admin"),
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/replay"): Route(
        "admin", lambda i: {"since": "2000-01-01T00:00:00Z"}),
    ("GET", "/api/v1/notifications"): Route("self"),
    ("POST", "/api/v1/notifications/read"): Route("self", lambda i: {"all": True}),
    ("POST", "/api/v1/conversations/{conversation_id}/viewing"): Route(
        "scoped", lambda i: {"viewing": True}),
    ("GET", "/api/v1/conversations/{conversation_id}/viewers"): Route("scoped"),
    ("PUT", "/api/v1/conversations/{conversation_id}/labels"): Route(
        "scoped", lambda i: {"labels": []}),
    ("PUT", "/api/v1/conversations/{conversation_id}/priority"): Route(
        "scoped", lambda i: {"priority": "low"}),
    ("POST", "/api/v1/conversations/{conversation_id}/canned-responses/{canned_id}/render"):
        Route("scoped"),
    ("GET", "/api/v1/labels"): Route("self"),
    ("POST", "/api/v1/labels"): Route("lead_global", lambda i: {"name": "matrix-label"}),
    ("DELETE", "/api/v1/labels/{label_id}"): Route("lead_global"),
    ("GET", "/api/v1/canned-responses"): Route("self"),
    ("POST", "/api/v1/canned-responses"): Route(
        "self", lambda i: {"shortcut": f"mine{i['me']}", "text": "Hello {{contact.name}}"}),
    ("PATCH", "/api/v1/canned-responses/{canned_id}"): Route(
        "lead_global", lambda i: {"title": "renamed"}),
    ("DELETE", "/api/v1/canned-responses/{canned_id}"): Route("lead_global"),
    ("GET", "/api/v1/contacts/{contact_id}"): Route("scoped"),
    ("PATCH", "/api/v1/contacts/{contact_id}"): Route("scoped", lambda i: {"name": "Renamed"}),
    ("POST", "/api/v1/contacts/{contact_id}/notes"): Route("scoped", lambda i: {"text": "x"}),
    ("POST", "/api/v1/contacts/{contact_id}/merge"): Route(
        "scoped", lambda i: {"other_contact_id": i["own_contact"]}),
    ("GET", "/api/v1/search"): Route("self"),
    ("GET", "/api/v1/contacts"): Route("self"),
}


def _automation(ids: dict[str, Any]) -> dict[str, Any]:
    return {"name": "steal", "inbox_id": ids["support"], "trigger": "message_received",
            "actions": [{"type": "reply", "text": "hijack"}]}


def expected(kind: str, actor: str, status: int) -> bool:
    """Whether an outsider's answer is right for a route of this kind."""
    if actor == "anonymous":
        return status == 401 if kind not in ("public",) else status in (401, 403, 404, 410, 422)
    if kind == "scoped":
        return status in (403, 404)
    if kind == "admin":
        return status == 403
    if kind == "lead":
        # A plain agent is refused (or does not even find it); a lead of another team is
        # refused or finds nothing there.
        return status in (403, 404) if actor == "bob" else status in (200, 403, 404, 422)
    if kind == "lead_global":
        return status == 403 if actor == "bob" else status < 500
    if kind == "public":
        return status in (401, 403, 404, 410, 422)
    return status < 500  # self: their own data; only the leak check applies


async def _setup(stack: Stack) -> tuple[dict[str, Any], Agent, Agent, Agent, Agent]:
    await stack.add_agent("lena", role="lead")
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    lena_agent = await stack.login("lena")
    ids: dict[str, Any] = dict(stack.ids)

    async def made(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    ids["team_support"] = (await made(await admin.http.post("/api/v1/teams", json={
        "name": "Support team", "member_ids": [stack.ids["alice"]],
        "inbox_ids": [stack.ids["support"]]})))["id"]
    ids["team_sales"] = (await made(await admin.http.post("/api/v1/teams", json={
        "name": "Sales team", "member_ids": [stack.ids["bob"], stack.ids["lena"]],
        "inbox_ids": [stack.ids["sales"]]})))["id"]

    alice_ws = await alice.ws()
    await stack.inbound("support", [message("m-1", "matrix-secret order 1", "matrixada")])
    created = await alice_ws.wait_event(of_type("message.created", direction="in"))
    await alice_ws.close()
    ids["conversation"] = created["event"]["conversation"]["id"]
    ids["message"] = created["event"]["message"]["id"]
    ids["contact"] = created["event"]["conversation"]["contact_id"]
    bob_ws = await bob.ws()
    await stack.inbound("sales", [message("s-1", "a sales question", "ben")])
    own = await bob_ws.wait_event(of_type("message.created", direction="in"))
    await bob_ws.close()
    ids["own_contact"] = own["event"]["conversation"]["contact_id"]

    conv = f"/api/v1/conversations/{ids['conversation']}"
    upload = await alice.http.post(f"{conv}/attachments?filename=matrix-secret.txt",
                                   content=b"matrix-secret file", headers={
                                       "Content-Type": "text/plain"})
    ids["attachment"] = (await made(upload))["id"]
    await made(await alice.http.post(f"{conv}/messages", json={
        "text": "matrix-secret note for admin", "kind": "note",
        "mention_ids": [stack.ids["admin"]]}))
    await made(await admin.http.post("/api/v1/labels", json={"name": "vip"}))
    ids["label"] = (await made(await admin.http.post("/api/v1/labels", json={
        "name": "disposable"})))["id"]
    await made(await alice.http.put(f"{conv}/labels", json={"labels": ["vip"]}))
    ids["canned_id"] = (await made(await admin.http.post("/api/v1/canned-responses", json={
        "shortcut": "thanks", "text": "Thanks {{contact.first_name}}!"})))["id"]
    ids["rule_id"] = (await made(await admin.http.post("/api/v1/assignment-rules", json={
        "name": "vip to support", "inbox_id": stack.ids["support"],
        "team_id": ids["team_support"],
        "conditions": [{"field": "keywords", "op": "contains_any", "value": ["vip"]}]})))["id"]
    ids["automation_rule_id"] = (await made(await admin.http.post("/api/v1/automation-rules",
                                                                  json={
        "name": "matrix-secret rule", "inbox_id": stack.ids["support"],
        "trigger": "agent_replied", "conditions": [
            {"field": "text", "op": "contains_any", "value": ["matrix-secret"]}],
        "actions": [{"type": "set_priority", "priority": "low"}]})))["id"]
    ids["policy_id"] = (await made(await admin.http.post("/api/v1/sla-policies", json={
        "name": "Support SLA", "inbox_id": stack.ids["support"],
        "first_response_minutes": 60})))["id"]
    ids["endpoint_id"] = (await made(await admin.http.post("/api/v1/webhook-endpoints", json={
        "url": "https://erp.example/matrix-secret"})))["id"]
    ids["invitation_id"] = (await made(await admin.http.post("/api/v1/admin/invitations", json={
        "email": "new@example.com", "inbox_ids": [stack.ids["support"]]})))["id"]
    return ids, admin, alice, bob, lena_agent


def _path(template: str, ids: dict[str, Any]) -> str:
    values = {
        "conversation_id": ids["conversation"], "contact_id": ids["contact"],
        "attachment_id": ids["attachment"], "inbox_id": ids["support"],
        "agent_id": ids["alice"], "team_id": ids["team_support"], "item_id": 1,
        "invitation_id": ids["invitation_id"], "rule_id": ids["rule_id"],
        "automation_rule_id": ids["automation_rule_id"], "policy_id": ids["policy_id"],
        "canned_id": ids["canned_id"], "label_id": ids["label"], "message_id": ids["message"],
        "stream": "inbound", "entry": "1-0", "channel": "api",
        "endpoint_id": ids["endpoint_id"], "delivery_id": 1, "connection_id": 1,
    }
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    assert "{" not in path, f"the matrix has no value for a parameter of {template}"
    return path


def _leaks(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in MARKERS)


async def _state(alice: Agent, ids: dict[str, Any]) -> dict[str, Any]:
    conv = f"/api/v1/conversations/{ids['conversation']}"
    view = (await alice.http.get(conv)).json()
    messages = (await alice.http.get(f"{conv}/messages")).json()["items"]
    contact = (await alice.http.get(f"/api/v1/contacts/{ids['contact']}")).json()
    return {
        "status": view["status"], "assignee": view["assignee_id"], "labels": view["labels"],
        "priority": view["priority"], "messages": [m["id"] for m in messages],
        "contact": (contact["id"], contact["name"], len(contact["identities"])),
    }


async def test_outsiders_get_nothing_from_any_route_or_the_websocket(stack: Stack) -> None:
    ids, admin, alice, bob, lena = await _setup(stack)
    before = await _state(alice, ids)
    spec = (await stack.client().get("/api/openapi.json")).json()
    operations = [(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item]
    unlisted = [op for op in operations if op not in ROUTES]
    assert unlisted == [], f"add these routes to the permission matrix: {unlisted}"
    stale = [op for op in ROUTES if op not in operations]
    assert stale == [], f"these routes are gone; remove them from the matrix: {stale}"

    sockets: dict[str, Socket] = {"bob": await bob.ws(), "lena": await lena.ws()}
    actors: dict[str, tuple[httpx.AsyncClient, int | None]] = {
        "anonymous": (stack.client(), None), "bob": (bob.http, bob.id),
        "lena": (lena.http, lena.id),
    }
    wrong: list[str] = []
    for (method, template), route in ROUTES.items():
        for actor, (client, me) in actors.items():
            if route.kind == "logout" and actor != "anonymous":
                continue  # would end the session the rest of the matrix needs
            body = (route.body or _none)({**ids, "me": me})
            kwargs: dict[str, Any] = {}
            if route.raw is not None:
                kwargs["content"] = route.raw
                kwargs["headers"] = {"Content-Type": "text/plain"}
                url = _path(template, ids) + "?filename=x.txt"
            else:
                url = _path(template, ids)
                if body is not None:
                    kwargs["json"] = body
            response = await client.request(method, url, **kwargs)
            kind = route.kind if route.kind != "logout" else "self"
            if not expected(kind, actor, response.status_code):
                wrong.append(f"{actor} {method} {url} -> {response.status_code} "
                             f"{response.text[:120]}")
            if _leaks(response.text) or _leaks(json.dumps(dict(response.headers))):
                wrong.append(f"{actor} {method} {url} leaked: {response.text[:200]}")
    assert wrong == [], "\n".join(wrong)

    # Filters and searches that name the other inbox's data find nothing.
    for client in (bob.http, lena.http):
        for query in (f"/api/v1/conversations?inbox_id={ids['support']}",
                      f"/api/v1/conversations?contact_id={ids['contact']}",
                      "/api/v1/search?q=matrix-secret", "/api/v1/search?q=matrixada",
                      "/api/v1/contacts?q=matrixada"):
            response = await client.get(query)
            assert response.status_code in (200, 422), query
            assert not _leaks(response.text), f"{query}: {response.text[:200]}"
    merge_in = await bob.http.post(f"/api/v1/contacts/{ids['own_contact']}/merge",
                                   json={"other_contact_id": ids["contact"]})
    assert merge_in.status_code in (403, 404)

    # More of the support inbox's life, live: none of it reaches the outsiders' sockets.
    conv = f"/api/v1/conversations/{ids['conversation']}"
    await stack.inbound("support", [message("m-2", "matrix-secret order 2", "matrixada")])
    await alice.http.post(f"{conv}/messages", json={"text": "matrix-secret reply"})
    await alice.http.put(f"{conv}/priority", json={"priority": "high"})
    await alice.http.post(f"{conv}/typing", json={"typing": True, "mode": "note"})
    await alice.http.post(f"{conv}/viewing", json={"viewing": True})
    await admin.http.post(f"{conv}/assignment", json={"assignee_id": None})
    await stack.inbound("sales", [message("s-2", "sales again", "ben")])
    for name, socket in sockets.items():
        await socket.wait_event(of_type("message.created", direction="in"))  # sales, later
        frames = socket.frames + await socket.quiet(0.5)
        leaked = [f for f in frames if _leaks(json.dumps(f))
                  or f.get("event", {}).get("inbox_id") == ids["support"]
                  or f.get("event", {}).get("conversation_id") == ids["conversation"]]
        assert leaked == [], f"{name}'s websocket got: {leaked[:2]}"
        await socket.close()

    # Replays from the start are filtered the same way.
    replay = await bob.ws(last_event_id="0-0")
    assert not any(_leaks(json.dumps(f)) for f in replay.frames)
    await replay.close()

    # Nothing the outsiders tried changed the support inbox's data (bar alice's own changes).
    async def unchanged() -> bool:
        after = await _state(alice, ids)
        return all(after[key] == before[key] for key in ("contact", "labels"))

    await eventually(unchanged, timeout=5)
    after = await _state(alice, ids)
    assert after["contact"] == before["contact"]
    assert set(before["messages"]) <= set(after["messages"])
    hijack = [m for m in (await alice.http.get(f"{conv}/messages")).json()["items"]
              if m["text"] == "hijack"]
    assert hijack == []
    # The rule, the team and the invitation of the support inbox are still the admin's.
    rules = (await admin.http.get("/api/v1/assignment-rules")).json()
    rule = next(r for r in (rules["items"] if isinstance(rules, dict) else rules)
                if r["id"] == ids["rule_id"])
    assert rule["team_id"] == ids["team_support"]
    kept = (await admin.http.get(f"/api/v1/automation-rules/{ids['automation_rule_id']}")).json()
    assert kept["actions"] == [{"type": "set_priority", "priority": "low"}]
    teams = {t["id"]: t for t in (await admin.http.get("/api/v1/teams")).json()}
    assert teams[ids["team_support"]]["member_ids"] == [ids["alice"]]
    agents = {a["id"]: a for a in (await admin.http.get("/api/v1/admin/agents")).json()}
    assert agents[ids["alice"]]["role"] == "agent"
    assert agents[ids["bob"]]["role"] == "agent" and agents[ids["lena"]]["role"] == "lead"
