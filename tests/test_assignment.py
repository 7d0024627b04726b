"""Assignment on both shapes: capacity and the queue, policies, routing rules, reassignment
(one and many), agents going away, offline or coming back, and who may do what."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from config import Settings
from hub.types import utcnow
from inbox.agents import add_to_inbox, add_to_team, create_agent
from inbox.db import Database
from inbox.models import Agent, Conversation, Notification, Team, TeamInbox
from tests.helpers import (
    PASSWORD,
    Socket,
    Stack,
    count_rows,
    eventually,
    message,
    of_type,
)
from tests.helpers import Agent as Client

T = TypeVar("T")


@pytest.fixture
def check_seconds() -> float:
    """How often the worker's safety loop looks: rarely, so that these tests see the queue
    drained by the changes themselves (a test of the loop itself parametrizes it)."""
    return 3600.0


@pytest.fixture
def settings(settings: Settings, check_seconds: float) -> Settings:
    """The stack of these tests."""
    return settings.model_copy(update={"assignment_check_seconds": check_seconds})


async def in_db(stack: Stack, change: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `change` in a transaction on the stack's database."""
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            return await change(session)
    finally:
        await db.close()


async def make_team(stack: Stack, name: str, *, members: list[str], inboxes: list[str],
                    policy: str = "round_robin") -> int:
    """A team of seeded agents working on inboxes (by name)."""
    async def create(session: AsyncSession) -> int:
        team = Team(name=name, assignment_policy=policy)
        session.add(team)
        await session.flush()
        assert team.id is not None
        for member in members:
            await add_to_team(session, agent_id=stack.ids[member], team_id=team.id)
        for inbox in inboxes:
            session.add(TeamInbox(team_id=team.id, inbox_id=stack.ids[inbox]))
        return team.id
    return await in_db(stack, create)


async def add_agent(stack: Stack, name: str, *, role: str = "agent",
                    inboxes: tuple[str, ...] = ()) -> Client:
    """A new agent (e.g. a team lead), logged in."""
    async def create(session: AsyncSession) -> int:
        agent = await create_agent(session, email=f"{name}@example.com", name=name.title(),
                                   password=PASSWORD, role=role)
        assert agent.id is not None
        for inbox in inboxes:
            await add_to_inbox(session, agent_id=agent.id, inbox_id=stack.ids[inbox])
        return agent.id
    stack.ids[name] = await in_db(stack, create)
    return await stack.login(name)


async def join_team(stack: Stack, agent: str, team_id: int) -> None:
    """Add a seeded agent to a team."""
    async def join(session: AsyncSession) -> None:
        await add_to_team(session, agent_id=stack.ids[agent], team_id=team_id)
    await in_db(stack, join)


async def arrive(stack: Stack, watch: Socket, inbox: str, ext_id: str, text: str,
                 sender: str, **extra: Any) -> dict[str, Any]:
    """A customer writes; the conversation as the message's event shows it."""
    response = await stack.inbound(inbox, [message(ext_id, text, sender, **extra)])
    assert response.status_code == 202, response.text
    event = await watch.wait_event(of_type("message.created", text=text))
    return event["event"]["conversation"]  # type: ignore[no-any-return]


async def conversation(client: Client, cid: int) -> dict[str, Any]:
    """A conversation as the API shows it now."""
    response = await client.http.get(f"/api/v1/conversations/{cid}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def seen(socket: Socket, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The events a socket received so far that match `predicate`."""
    return [f["event"] for f in socket.frames if f["type"] == "event" and predicate(f["event"])]


def assigned(cid: int, assignee_id: int | None) -> Callable[[dict[str, Any]], bool]:
    """Predicate: conversation `cid` was assigned to `assignee_id`."""
    return lambda e: (e["type"] == "conversation.assigned" and e["conversation"]["id"] == cid
                      and e["conversation"]["assignee_id"] == assignee_id)


async def test_an_agent_at_capacity_gets_nothing_new_until_one_is_resolved(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    capped = await admin.http.put(f"/api/v1/agents/{alice.id}/capacity", json={"capacity": 1})
    assert capped.status_code == 200, capped.text
    assert capped.json()["capacity"] == 1
    watch = await admin.ws()
    alice_ws = await alice.ws()

    first = await arrive(stack, watch, "support", "q-1", "first question", "ann")
    assert first["assignee_id"] == alice.id and first["waiting_since"] is None
    second = await arrive(stack, watch, "support", "q-2", "second question", "ben")
    third = await arrive(stack, watch, "support", "q-3", "third question", "cat")
    for waiting in (second, third):
        assert waiting["assignee_id"] is None and waiting["waiting_since"] is not None
    queue = (await alice.http.get("/api/v1/conversations?waiting=1")).json()["items"]
    assert sorted(c["id"] for c in queue) == sorted([second["id"], third["id"]])
    assert (await alice.http.get("/api/v1/conversations?waiting=yes")).status_code == 400

    # Resolving frees a place: the oldest waiting conversation goes to Alice, at once.
    resolved = await alice.http.post(f"/api/v1/conversations/{first['id']}/status",
                                     json={"status": "resolved"})
    assert resolved.status_code == 200
    got = await alice_ws.wait_event(assigned(second["id"], alice.id))
    assert got["event"]["conversation"]["waiting_since"] is None
    line = await alice_ws.wait_event(of_type("message.created", kind="activity",
                                             conversation_id=second["id"]))
    assert line["event"]["message"]["text"] == "Assigned to Alice from the queue"
    notice = await alice_ws.wait_event(lambda e: e["type"] == "notification.created")
    assert notice["event"]["notification"]["conversation_id"] == second["id"]
    assert notice["event"]["notification"]["kind"] == "assigned"
    still = await conversation(alice, third["id"])
    assert still["assignee_id"] is None and still["waiting_since"] is not None

    # A raised capacity takes the next one.
    await admin.http.put(f"/api/v1/agents/{alice.id}/capacity", json={"capacity": 2})
    await alice_ws.wait_event(assigned(third["id"], alice.id))
    # Full again; a new member of the inbox (online, not yet in it) takes what comes next.
    bob = await stack.login("bob")
    bob_ws = await bob.ws()
    fourth = await arrive(stack, watch, "support", "q-4", "fourth question", "dan")
    assert fourth["assignee_id"] is None and fourth["waiting_since"] is not None
    await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                         json={"agent_ids": [alice.id, bob.id]})
    await watch.wait_event(assigned(fourth["id"], bob.id))
    for socket in (watch, alice_ws, bob_ws):
        await socket.close()


async def test_least_loaded_gives_new_conversations_to_the_least_loaded(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    support = stack.ids["support"]
    await admin.http.put(f"/api/v1/inboxes/{support}/members",
                         json={"agent_ids": [alice.id, stack.ids["bob"]]})
    changed = await admin.http.patch(f"/api/v1/inboxes/{support}/assignment",
                                     json={"assignment_policy": "least_loaded"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["assignment_policy"] == "least_loaded"
    watch = await admin.ws()
    alice_ws = await alice.ws()
    for n in range(2):
        early = await arrive(stack, watch, "support", f"a-{n}", f"early {n}", f"early-{n}")
        assert early["assignee_id"] == alice.id
    bob = await stack.login("bob")
    bob_ws = await bob.ws()
    # Alice has two open, Bob none: Bob gets both (round robin would alternate).
    later = [(await arrive(stack, watch, "support", f"b-{n}", f"later {n}", f"later-{n}")
              )["assignee_id"] for n in range(2)]
    assert later == [bob.id, bob.id]
    # Even again (2 and 2): the one assigned longest ago.
    tie = await arrive(stack, watch, "support", "c-0", "tie", "tie")
    assert tie["assignee_id"] == alice.id
    for socket in (watch, alice_ws, bob_ws):
        await socket.close()


async def test_rules_route_by_keyword_and_language_to_a_team(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    billing = await make_team(stack, "Billing", members=["bob"], inboxes=["support"])
    german = await make_team(stack, "German", members=["alice"], inboxes=["support"])
    for body in (
        {"name": "Refunds", "position": 0, "team_id": billing, "inbox_id": stack.ids["support"],
         "conditions": [{"field": "keywords", "op": "contains_any",
                         "value": ["refund", "money back"]}]},
        {"name": "German speakers", "position": 1, "team_id": german,
         "conditions": [{"field": "language", "op": "in", "value": ["de"]}]},
    ):
        created = await admin.http.post("/api/v1/assignment-rules", json=body)
        assert created.status_code == 201, created.text
    watch = await admin.ws()
    sockets = [watch, await alice.ws(), await bob.ws()]

    refund = await arrive(stack, watch, "support", "r-1", "Can I get my MONEY  back?", "ann")
    assert (refund["team_id"], refund["assignee_id"]) == (billing, bob.id)
    german_one = await arrive(stack, watch, "support", "r-2", "Wo ist meine Bestellung?",
                              "ben", language="de-DE")
    assert (german_one["team_id"], german_one["assignee_id"]) == (german, alice.id)
    # "refunds" is not the word "refund": no rule, the inbox's members.
    other = await arrive(stack, watch, "support", "r-3", "refunds take long", "cat")
    assert other["team_id"] is None and other["assignee_id"] == alice.id
    # Bob sees the team's inbox through the team; the list filters by team.
    listed = (await bob.http.get(f"/api/v1/conversations?team_id={billing}")).json()["items"]
    assert [c["id"] for c in listed] == [refund["id"]]
    for socket in sockets:
        await socket.close()


async def test_rules_api_checks_roles_and_conditions(stack: Stack) -> None:
    alice = await stack.login("alice")
    lena = await add_agent(stack, "lena", role="lead")
    front = await make_team(stack, "Front", members=["lena"], inboxes=["support"])
    elsewhere = await make_team(stack, "Elsewhere", members=[], inboxes=["sales"])
    support = stack.ids["support"]
    good = {"name": "VIP", "inbox_id": support, "team_id": front,
            "conditions": [{"field": "contact.plan", "op": "equals", "value": "Gold"},
                           {"field": "channel", "op": "in", "value": ["api"]}]}
    assert (await alice.http.get("/api/v1/assignment-rules")).status_code == 403
    assert (await alice.http.post("/api/v1/assignment-rules", json=good)).status_code == 403
    for change, words in (
        ({"conditions": [{"field": "mood", "op": "equals", "value": "x"}]}, "unknown field"),
        ({"conditions": [{"field": "keywords", "op": "equals", "value": "x"}]}, "contains_any"),
        ({"conditions": [{"field": "channel", "op": "in", "value": ["pigeon"]}]},
         "unknown channel"),
        ({"conditions": [{"field": "language", "op": "equals", "value": "not a tag"}]},
         "language tag"),
        ({"team_id": elsewhere}, "does not work on inbox"),
        ({"team_id": 999_999}, "no team"),
        ({"inbox_id": stack.ids["sales"]}, "no inbox"),
    ):
        refused = await lena.http.post("/api/v1/assignment-rules", json={**good, **change})
        assert refused.status_code == 422, (change, refused.text)
        assert words in refused.json()["error"]["message"], refused.text
    everywhere = await lena.http.post("/api/v1/assignment-rules", json={**good, "inbox_id": None})
    assert everywhere.status_code == 403
    created = await lena.http.post("/api/v1/assignment-rules", json=good)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["conditions"][0] == {"field": "contact.plan", "op": "equals", "value": "gold"}
    moved = await lena.http.patch(f"/api/v1/assignment-rules/{rule['id']}",
                                  json={"position": 5, "is_active": False})
    assert moved.status_code == 200 and moved.json()["position"] == 5
    assert [r["id"] for r in (await lena.http.get("/api/v1/assignment-rules")).json()] == [
        rule["id"]]
    assert (await lena.http.delete(f"/api/v1/assignment-rules/{rule['id']}")).status_code == 204
    assert (await lena.http.delete(f"/api/v1/assignment-rules/{rule['id']}")).status_code == 404


async def test_a_lead_reassigns_five_at_once_and_both_agents_see_it_live(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    await admin.http.put(f"/api/v1/inboxes/{stack.ids['support']}/members",
                         json={"agent_ids": [alice.id, stack.ids["bob"]]})
    lena = await add_agent(stack, "lena", role="lead")
    await make_team(stack, "Front", members=["lena"], inboxes=["support"])
    watch = await admin.ws()
    alice_ws = await alice.ws()
    five = [(await arrive(stack, watch, "support", f"f-{n}", f"five {n}", f"five-{n}"))["id"]
            for n in range(5)]
    hidden = (await arrive(stack, watch, "sales", "s-1", "sales question", "sam"))["id"]
    bob = await stack.login("bob")
    bob_ws = await bob.ws()

    refused = await alice.http.post("/api/v1/conversations/bulk-assign",
                                    json={"conversation_ids": five, "assignee_id": alice.id})
    assert refused.status_code == 403
    done = await lena.http.post("/api/v1/conversations/bulk-assign", json={
        "conversation_ids": [*five, hidden, 999_999], "assignee_id": bob.id})
    assert done.status_code == 200, done.text
    result = done.json()
    assert [c["id"] for c in result["items"]] == five
    assert all(c["assignee_id"] == bob.id for c in result["items"])
    assert result["errors"] == [{"id": hidden, "error": "not found"},
                                {"id": 999_999, "error": "not found"}]
    for socket, who in ((alice_ws, "alice"), (bob_ws, "bob")):
        for cid in five:
            event = await socket.wait_event(assigned(cid, bob.id))
            assert event["event"]["previous_assignee_id"] == alice.id, who
            assert event["event"]["by_agent_id"] == lena.id
    # Each has its activity line, and Bob a notification of each (the last ones come last).
    await alice_ws.wait_event(of_type("message.created", kind="activity",
                                      conversation_id=five[-1]))
    await bob_ws.wait_event(lambda e: e["type"] == "notification.created"
                            and e["notification"]["conversation_id"] == five[-1])
    lines = seen(alice_ws, lambda e: e["type"] == "message.created"
                 and e["message"]["kind"] == "activity")
    assert [e["message"]["conversation_id"] for e in lines] == five
    assert {e["message"]["text"] for e in lines} == {"Lena assigned this conversation to Bob"}
    # (Bob also got the sales conversation that waited for him when he came online.)
    notices = seen(bob_ws, lambda e: e["type"] == "notification.created"
                   and e["notification"]["conversation_id"] in five)
    assert sorted(e["notification"]["conversation_id"] for e in notices) == five
    assert all(e["notification"]["text"].startswith("Lena assigned you") for e in notices)
    for socket in (watch, alice_ws, bob_ws):
        await socket.close()


async def test_a_team_assignment_waits_for_a_member_who_becomes_available(stack: Stack) -> None:
    admin = await stack.login("admin")
    bob = await stack.login("bob")
    billing = await make_team(stack, "Billing", members=["bob"], inboxes=["support"])
    away = await bob.http.put("/api/v1/me/availability", json={"availability": "away"})
    assert away.json()["availability"] == "away"
    watch = await admin.ws()
    bob_ws = await bob.ws()
    waiting = await arrive(stack, watch, "support", "t-1", "invoice wrong", "ann")
    assert waiting["assignee_id"] is None and waiting["waiting_since"] is not None

    to_team = await admin.http.post(f"/api/v1/conversations/{waiting['id']}/assignment",
                                    json={"team_id": billing})
    assert to_team.status_code == 200, to_team.text
    assert to_team.json()["team_id"] == billing and to_team.json()["assignee_id"] is None
    assert to_team.json()["waiting_since"] is not None
    line = await watch.wait_event(of_type("message.created", kind="activity"))
    assert line["event"]["message"]["text"] == (
        "Admin assigned this conversation to team Billing: it waits in the queue")

    back = await bob.http.put("/api/v1/me/availability", json={"availability": "online"})
    assert back.status_code == 200
    update_event = await watch.wait_event(lambda e: e["type"] == "agent.updated")
    assert update_event["event"]["agent_id"] == bob.id
    assert update_event["event"]["availability"] == "online"
    await bob_ws.wait_event(assigned(waiting["id"], bob.id))
    assert await count_rows(stack, Notification, col(Notification.agent_id) == bob.id,
                            col(Notification.kind) == "assigned") == 1
    for socket in (watch, bob_ws):
        await socket.close()


async def test_who_may_assign_what(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    sales_team = await make_team(stack, "Sales team", members=[], inboxes=["sales"])
    watch = await admin.ws()
    cid = (await arrive(stack, watch, "support", "w-1", "hello", "ann"))["id"]  # nobody online
    url = f"/api/v1/conversations/{cid}/assignment"

    taken = await alice.http.post(url, json={"assignee_id": alice.id})
    assert taken.status_code == 200 and taken.json()["assignee_id"] == alice.id
    assert taken.json()["waiting_since"] is None
    assert (await alice.http.post(url, json={"assignee_id": stack.ids["bob"]})).status_code == 403
    assert (await alice.http.post(url, json={"team_id": sales_team})).status_code == 403
    dropped = await alice.http.post(url, json={"assignee_id": None})
    assert dropped.status_code == 200 and dropped.json()["assignee_id"] is None
    # Bob is not in support; the sales team does not work on it.
    bad = await admin.http.post(url, json={"assignee_id": stack.ids["bob"]})
    assert bad.status_code == 422 and "see this conversation's inbox" in bad.text
    bad_team = await admin.http.post(url, json={"team_id": sales_team})
    assert bad_team.status_code == 422 and "does not work on" in bad_team.text
    given = await admin.http.post(url, json={"assignee_id": alice.id})
    assert given.status_code == 200
    # Now it is Alice's, given by someone else: she is notified; another agent may not take it.
    assert await count_rows(stack, Notification, col(Notification.agent_id) == alice.id) == 1
    dana = await add_agent(stack, "dana", inboxes=("support",))
    assert (await dana.http.post(url, json={"assignee_id": dana.id})).status_code == 403
    assert (await dana.http.post(url, json={"assignee_id": None})).status_code == 403

    # Inbox settings, capacities and reports are for leads and admins.
    support = stack.ids["support"]
    assert (await alice.http.patch(f"/api/v1/inboxes/{support}/assignment",
                                   json={"auto_assign": False})).status_code == 403
    bob = await stack.login("bob")
    assert (await bob.http.patch(f"/api/v1/inboxes/{support}/assignment",
                                 json={"auto_assign": False})).status_code == 404
    assert (await alice.http.put(f"/api/v1/agents/{alice.id}/capacity",
                                 json={"capacity": 3})).status_code == 403
    assert (await alice.http.get("/api/v1/reports/load")).status_code == 403
    lena = await add_agent(stack, "lena", role="lead")
    await make_team(stack, "Front", members=["lena"], inboxes=["support"])
    assert (await lena.http.put(f"/api/v1/agents/{stack.ids['bob']}/capacity",
                                json={"capacity": 3})).status_code == 404
    assert (await lena.http.put(f"/api/v1/agents/{alice.id}/capacity",
                                json={"capacity": -1})).status_code == 422
    report = await lena.http.get("/api/v1/reports/load")
    assert report.status_code == 200, report.text
    load = report.json()
    mine = {a["name"]: a for a in load["agents"]}
    assert mine["Alice"]["open"] == 1 and "Bob" not in mine
    assert load["inboxes"] == [{"id": support, "name": "Support", "open": 1, "waiting": 0,
                                "unassigned": 0}]
    assert [t["name"] for t in load["teams"]] == ["Front"]
    await watch.close()


@pytest.mark.parametrize("check_seconds", [0.3])
async def test_an_agent_going_offline_releases_per_inbox_setting(stack: Stack) -> None:
    admin = await stack.login("admin")
    alice = await stack.login("alice")
    bob = await stack.login("bob")
    requeue = await admin.http.patch(f"/api/v1/inboxes/{stack.ids['support']}/assignment",
                                     json={"requeue_on_offline": True})
    assert requeue.json()["requeue_on_offline"] is True
    watch = await admin.ws()
    alice_ws, bob_ws = await alice.ws(), await bob.ws()
    kept_by_alice = await arrive(stack, watch, "support", "o-1", "support question", "ann")
    kept_by_bob = await arrive(stack, watch, "sales", "o-2", "sales question", "ben")
    assert kept_by_alice["assignee_id"] == alice.id and kept_by_bob["assignee_id"] == bob.id
    await alice_ws.close()
    await bob_ws.close()

    async def went_offline(session: AsyncSession) -> None:
        stale = utcnow() - timedelta(seconds=stack.settings.presence_seconds + 5)
        await session.exec(update(Agent).where(
            col(Agent.id).in_([alice.id, bob.id])).values(last_seen_at=stale))

    async def released_yet() -> bool:
        # Again each time: a heartbeat of the closing sockets may have come just after.
        await in_db(stack, went_offline)
        return (await conversation(admin, kept_by_alice["id"]))["assignee_id"] is None

    await eventually(released_yet)
    released = await watch.wait_event(assigned(kept_by_alice["id"], None))
    assert released["event"]["previous_assignee_id"] == alice.id
    assert released["event"]["conversation"]["waiting_since"] is not None
    line = await watch.wait_event(of_type("message.created", kind="activity",
                                          conversation_id=kept_by_alice["id"]))
    assert line["event"]["message"]["text"] == (
        "Alice went offline: this conversation is back in the queue")
    # Sales keeps conversations of agents who went offline (released in the same pass).
    assert (await conversation(admin, kept_by_bob["id"]))["assignee_id"] == bob.id
    # Alice comes back: the queue gives her what waits.
    alice_ws = await alice.ws()
    await watch.wait_event(assigned(kept_by_alice["id"], alice.id))
    for socket in (watch, alice_ws):
        await socket.close()


async def test_deactivation_releases_open_conversations_whatever_the_setting(
    stack: Stack,
) -> None:
    admin = await stack.login("admin")
    bob = await stack.login("bob")
    watch = await admin.ws()
    bob_ws = await bob.ws()
    sales = await arrive(stack, watch, "sales", "d-1", "sales question", "ben")
    assert sales["assignee_id"] == bob.id
    # Sales keeps an offline agent's conversations, but Bob is deactivated (admin API,
    # which hands his conversations to inbox.assignment.release_agent).
    gone = await admin.http.patch(f"/api/v1/admin/agents/{bob.id}", json={"is_active": False})
    assert gone.status_code == 200, gone.text
    event = await watch.wait_event(assigned(sales["id"], None))
    assert event["event"]["previous_assignee_id"] == bob.id
    assert event["event"]["conversation"]["waiting_since"] is not None
    line = await watch.wait_event(of_type("message.created", kind="activity",
                                          conversation_id=sales["id"]))
    assert line["event"]["message"]["text"] == (
        "Bob was deactivated: this conversation is back in the queue")
    assert await count_rows(stack, Conversation, col(Conversation.assignee_id) == bob.id) == 0
    for socket in (watch, bob_ws):
        await socket.close()
