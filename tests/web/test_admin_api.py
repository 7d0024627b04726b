"""The admin API: agents, invitations and teams; only admins change people."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import utcnow
from inbox.db import Database
from inbox.models import Agent, Invitation, TeamMember
from tests.helpers import Agent as Client
from tests.helpers import Stack, count_rows, eventually, message


async def _make_lead(stack: Stack, name: str) -> None:
    admin = await stack.login("admin")
    response = await admin.http.patch(f"/api/v1/admin/agents/{stack.ids[name]}",
                                      json={"role": "lead"})
    assert response.status_code == 200, response.text


async def test_only_admins_change_people(stack: Stack) -> None:
    await _make_lead(stack, "bob")
    alice = await stack.login("alice")
    lead = await stack.login("bob")
    anonymous = stack.client()
    team = (await (await stack.login("admin")).http.post(
        "/api/v1/teams", json={"name": "Tier 1"})).json()
    calls: list[tuple[str, str, object]] = [
        ("GET", "/api/v1/admin/agents", None),
        ("PATCH", f"/api/v1/admin/agents/{stack.ids['alice']}", {"role": "admin"}),
        ("GET", "/api/v1/admin/invitations", None),
        ("POST", "/api/v1/admin/invitations", {"email": "eve@example.com"}),
        ("DELETE", "/api/v1/admin/invitations/1", None),
        ("POST", "/api/v1/teams", {"name": "Mine now"}),
        ("PATCH", f"/api/v1/teams/{team['id']}", {"member_ids": [stack.ids["alice"]]}),
        ("DELETE", f"/api/v1/teams/{team['id']}", None),
    ]
    for method, path, body in calls:
        for who in (alice, lead):
            response = await who.http.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        response = await anonymous.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
    assert (await anonymous.get("/api/v1/teams")).status_code == 401
    # Nothing changed: Alice is still an agent, the team still has no members.
    async with _db(stack) as session:
        row = await session.get(Agent, stack.ids["alice"])
        assert row is not None and row.role == "agent"
    assert await count_rows(stack, TeamMember) == 0


async def test_admin_changes_role_capacity_inboxes_and_teams(stack: Stack) -> None:
    admin = await stack.login("admin")
    team = (await admin.http.post("/api/v1/teams", json={
        "name": "Sales team", "inbox_ids": [stack.ids["sales"]]})).json()
    alice_id = stack.ids["alice"]
    response = await admin.http.patch(f"/api/v1/admin/agents/{alice_id}", json={
        "name": "Alice Liddell", "role": "lead", "capacity": 3,
        "inbox_ids": [stack.ids["support"], stack.ids["support"]], "team_ids": [team["id"]],
    })
    assert response.status_code == 200, response.text
    view = response.json()
    assert view == {**view, "name": "Alice Liddell", "role": "lead", "capacity": 3,
                    "inbox_ids": [stack.ids["support"]], "team_ids": [team["id"]],
                    "is_active": True, "totp_enabled": False}
    listed = {a["id"]: a for a in (await admin.http.get("/api/v1/admin/agents")).json()}
    assert listed[alice_id] == view
    assert set(listed) == {stack.ids["admin"], alice_id, stack.ids["bob"]}

    # Through the team Alice now sees the sales inbox too.
    alice = await stack.login("alice")
    inboxes = {i["id"] for i in (await alice.http.get("/api/v1/inboxes")).json()}
    assert inboxes == {stack.ids["support"], stack.ids["sales"]}
    # null clears the capacity (no limit); fields left out stay.
    cleared = (await admin.http.patch(f"/api/v1/admin/agents/{alice_id}",
                                      json={"capacity": None})).json()
    assert cleared["capacity"] is None and cleared["role"] == "lead"
    assert cleared["team_ids"] == [team["id"]]


async def test_admin_changes_are_validated_with_clear_messages(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = f"/api/v1/admin/agents/{stack.ids['alice']}"
    me = f"/api/v1/admin/agents/{stack.ids['admin']}"
    cases = [
        (alice, {"inbox_ids": [stack.ids["support"], 9999]}, "no inbox with id 9999"),
        (alice, {"team_ids": [4242]}, "no team with id 4242"),
        (alice, {"role": "boss"}, "role"),
        (alice, {"capacity": -1}, "capacity"),
        (alice, {"name": "   "}, "name: may not be blank"),
        (alice, {"is_admin": True}, "is_admin"),
        (me, {"role": "agent"}, "Admin is the last active admin"),
        (me, {"is_active": False}, "last active admin"),
    ]
    for path, body, text in cases:
        response = await admin.http.patch(path, json=body)
        assert response.status_code == 422, (body, response.text)
        assert text in response.json()["error"]["message"], (body, response.text)
    assert (await admin.http.patch("/api/v1/admin/agents/9999",
                                   json={"role": "lead"})).status_code == 404
    # Nothing of the refused changes stuck (the membership list was all-or-nothing).
    view = next(a for a in (await admin.http.get("/api/v1/admin/agents")).json()
                if a["id"] == stack.ids["alice"])
    assert view["inbox_ids"] == [stack.ids["support"]] and view["name"] == "Alice"

    # With a second admin, the first may step down, but not deactivate themselves.
    promoted = await admin.http.patch(alice, json={"role": "admin"})
    assert promoted.status_code == 200
    refused = await admin.http.patch(me, json={"is_active": False})
    assert refused.status_code == 422 and "yourself" in refused.json()["error"]["message"]
    assert (await admin.http.patch(me, json={"role": "agent"})).json()["role"] == "agent"


async def test_invitation_creates_the_agent_once_and_logs_them_in(stack: Stack) -> None:
    admin = await stack.login("admin")
    team = (await admin.http.post("/api/v1/teams", json={"name": "Night shift"})).json()
    created = await admin.http.post("/api/v1/admin/invitations", json={
        "email": " Carol@Example.com ", "name": "Carol", "role": "lead",
        "inbox_ids": [stack.ids["sales"]], "team_ids": [team["id"]], "expires_in_hours": 24,
    })
    assert created.status_code == 201, created.text
    invitation = created.json()
    assert invitation["email"] == "carol@example.com" and invitation["role"] == "lead"
    path = urlsplit(invitation["url"]).path
    assert path.startswith("/invite/")
    token = path.rsplit("/", 1)[1]
    # Only the token's SHA-256 is stored; the pending list never shows the link.
    async with _db(stack) as session:
        row = (await session.exec(select(Invitation))).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    pending = (await admin.http.get("/api/v1/admin/invitations")).json()
    assert [p["id"] for p in pending] == [invitation["id"]]
    assert token not in str(pending) and "url" not in pending[0]

    carol = stack.client()
    accepted = await carol.post("/api/v1/auth/invitations/accept", json={
        "token": token, "name": "Carol C.", "password": "carols passphrase"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["agent"]["role"] == "lead"
    me = (await carol.get("/api/v1/me")).json()
    assert me["email"] == "carol@example.com" and me["name"] == "Carol C."
    assert [i["id"] for i in (await carol.get("/api/v1/inboxes")).json()] == [stack.ids["sales"]]
    agents = {a["email"]: a for a in (await admin.http.get("/api/v1/admin/agents")).json()}
    assert agents["carol@example.com"]["team_ids"] == [team["id"]]
    assert (await admin.http.get("/api/v1/admin/invitations")).json() == []

    # Single use: the same link again is gone, and so is a revoked or an expired one.
    again = await stack.client().post("/api/v1/auth/invitations/accept", json={
        "token": token, "password": "another passphrase"})
    assert again.status_code == 410 and "already used" in again.json()["error"]["message"]
    revoked = (await admin.http.post("/api/v1/admin/invitations",
                                     json={"email": "dan@example.com"})).json()
    assert (await admin.http.delete(f"/api/v1/admin/invitations/{revoked['id']}")
            ).status_code == 204
    expired = (await admin.http.post("/api/v1/admin/invitations",
                                     json={"email": "erin@example.com"})).json()
    async with _db(stack, write=True) as session:
        row = await session.get(Invitation, expired["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)
        session.add(row)
    for gone, text in ((revoked, "withdrawn"), (expired, "expired")):
        response = await stack.client().post("/api/v1/auth/invitations/accept", json={
            "token": gone["url"].rsplit("/", 1)[1], "password": "a fine passphrase"})
        assert response.status_code == 410 and text in response.json()["error"]["message"]
    unknown = await stack.client().post("/api/v1/auth/invitations/accept", json={
        "token": "x" * 43, "password": "a fine passphrase"})
    assert unknown.status_code == 404
    assert await count_rows(stack, Agent) == 4


async def test_invitations_are_validated(stack: Stack) -> None:
    admin = await stack.login("admin")
    cases = [
        ({"email": "alice@example.com"}, "already exists"),
        ({"email": "no-at-sign"}, "email"),
        ({"email": "x@example.com", "inbox_ids": [777]}, "no inbox with id 777"),
        ({"email": "x@example.com", "team_ids": [778]}, "no team with id 778"),
        ({"email": "x@example.com", "expires_in_hours": 721}, "expires_in_hours"),
        ({"email": "x@example.com", "role": "owner"}, "role"),
    ]
    for body, text in cases:
        response = await admin.http.post("/api/v1/admin/invitations", json=body)
        assert response.status_code == 422, (body, response.text)
        assert text in response.json()["error"]["message"], (body, response.text)
    token = (await admin.http.post("/api/v1/admin/invitations", json={
        "email": "x@example.com"})).json()["url"].rsplit("/", 1)[1]
    short = await stack.client().post("/api/v1/auth/invitations/accept", json={
        "token": token, "password": "short"})
    assert short.status_code == 422
    # A refused acceptance does not use the invitation up.
    ok = await stack.client().post("/api/v1/auth/invitations/accept", json={
        "token": token, "password": "long enough now"})
    assert ok.status_code == 200


async def test_teams_give_their_members_the_team_inboxes(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    await stack.inbound("sales", [message("t-1", "a sales question", "sam")])
    await eventually(lambda: _conversations(bob))
    assert await _conversations(alice) == []

    created = await admin.http.post("/api/v1/teams", json={
        "name": "Sales helpers", "assignment_policy": "least_loaded",
        "member_ids": [stack.ids["alice"]], "inbox_ids": [stack.ids["sales"]]})
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["assignment_policy"] == "least_loaded"
    assert len(await _conversations(alice)) == 1
    other = (await admin.http.post("/api/v1/teams", json={
        "name": "Elsewhere", "inbox_ids": [stack.ids["support"]]})).json()

    # Every agent reads the teams of their inboxes: id, name, members and inboxes only.
    seen_by_bob = (await bob.http.get("/api/v1/teams")).json()
    assert seen_by_bob == [{"id": team["id"], "name": "Sales helpers",
                            "member_ids": [stack.ids["alice"]],
                            "inbox_ids": [stack.ids["sales"]]}]
    assert {t["id"] for t in (await alice.http.get("/api/v1/teams")).json()} == {
        team["id"], other["id"]}
    assert len((await admin.http.get("/api/v1/teams")).json()) == 2

    duplicate = await admin.http.post("/api/v1/teams", json={"name": "sales HELPERS"})
    assert duplicate.status_code == 422 and "already exists" in duplicate.text
    bad = await admin.http.patch(f"/api/v1/teams/{team['id']}", json={"member_ids": [31337]})
    assert bad.status_code == 422 and "no agent with id 31337" in bad.text
    renamed = await admin.http.patch(f"/api/v1/teams/{team['id']}",
                                     json={"name": "Sales crew", "inbox_ids": []})
    assert renamed.json()["name"] == "Sales crew" and renamed.json()["inbox_ids"] == []
    assert await _conversations(alice) == []
    assert (await admin.http.delete(f"/api/v1/teams/{team['id']}")).status_code == 204
    assert (await admin.http.delete(f"/api/v1/teams/{team['id']}")).status_code == 404
    assert await count_rows(stack, TeamMember) == 0


async def _conversations(agent: Client) -> list[Any]:
    response = await agent.http.get("/api/v1/conversations")
    return list(response.json()["items"])


@contextlib.asynccontextmanager
async def _db(stack: Stack, *, write: bool = False) -> AsyncIterator[AsyncSession]:
    """A session on the stack's database: read only, or a write committed at the end."""
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with (db.write() if write else db.read()) as session:
            yield session
    finally:
        await db.close()
