"""GET /api/v1/agents?inbox_id=: the agents who may see an inbox (whom a note may mention)."""

from __future__ import annotations

from inbox.agents import add_to_team
from inbox.db import Database
from inbox.models import Team, TeamInbox
from tests.helpers import Agent, Stack


async def _names(who: Agent, inbox_id: int) -> list[str]:
    response = await who.http.get(f"/api/v1/agents?inbox_id={inbox_id}")
    assert response.status_code == 200, response.text
    return [agent["name"] for agent in response.json()]


async def test_agents_of_an_inbox_are_its_members_its_teams_and_admins(stack: Stack) -> None:
    alice = await stack.login("alice")
    admin = await stack.login("admin")
    support, sales = stack.ids["support"], stack.ids["sales"]

    assert await _names(alice, support) == ["Admin", "Alice"]
    assert await _names(admin, sales) == ["Admin", "Bob"]
    # An inbox alice may not see: as if it did not exist.
    assert (await alice.http.get(f"/api/v1/agents?inbox_id={sales}")).status_code == 404
    assert (await alice.http.get("/api/v1/agents?inbox_id=x")).status_code == 400

    # Bob joins a team that works on support: now he may see it, so he may be mentioned there.
    db = Database(stack.settings.sqlalchemy_url)
    try:
        async with db.write() as session:
            team = Team(name="Billing")
            session.add(team)
            await session.flush()
            assert team.id is not None
            session.add(TeamInbox(team_id=team.id, inbox_id=support))
            await add_to_team(session, agent_id=stack.ids["bob"], team_id=team.id)
    finally:
        await db.close()
    assert await _names(alice, support) == ["Admin", "Alice", "Bob"]
    assert await _names(admin, sales) == ["Admin", "Bob"]
