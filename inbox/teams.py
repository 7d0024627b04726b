"""Teams: groups of agents that work on some inboxes; admins create and change them.

A team's members see the team's inboxes (inbox/agents.py visible_inbox_ids), so every change
of members or inboxes publishes `agent.updated` for the agents concerned: their open
websockets pick up the new set of inboxes at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import View
from hub.types import RowId
from inbox import assignment
from inbox.agent_events import agents_updated
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.errors import NotFound, Refused, admins_only
from inbox.memberships import check_ids, links_by, replace_links
from inbox.models import Agent, CannedResponse, Inbox, Label, Team, TeamInbox, TeamMember
from inbox.outbox import stage_events

Policy = Literal["round_robin", "least_loaded"]


class TeamSummary(BaseModel):
    """A team as every agent may see it (the reassign picker lists these)."""

    id: int
    name: str
    member_ids: list[int]
    inbox_ids: list[int]


class TeamView(TeamSummary):
    """A team as admins manage it."""

    assignment_policy: str


class TeamCreate(BaseModel):
    """A new team."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    assignment_policy: Policy = "round_robin"
    member_ids: list[RowId] = Field(default_factory=list, max_length=10_000)
    inbox_ids: list[RowId] = Field(default_factory=list, max_length=1000)


class TeamPatch(BaseModel):
    """Changes to a team; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    assignment_policy: Policy | None = None
    member_ids: list[RowId] | None = Field(default=None, max_length=10_000)
    inbox_ids: list[RowId] | None = Field(default=None, max_length=1000)


async def list_teams(session: AsyncSession) -> list[TeamView]:
    """Every team, by name (for admins)."""
    teams = list(await session.exec(select(Team).order_by(col(Team.name), col(Team.id))))
    return await _views(session, teams)


async def visible_teams(session: AsyncSession, principal: Principal) -> list[TeamSummary]:
    """The teams an agent may see: their own and those working on an inbox they see."""
    views = await list_teams(session)
    if principal.is_admin:
        return [TeamSummary(**v.model_dump(exclude={"assignment_policy"})) for v in views]
    return [
        TeamSummary(id=v.id, name=v.name, member_ids=v.member_ids,
                    inbox_ids=[i for i in v.inbox_ids if i in principal.inbox_ids])
        for v in views
        if v.id in principal.team_ids or principal.inbox_ids.intersection(v.inbox_ids)
    ]


async def _views(session: AsyncSession, teams: list[Team]) -> list[TeamView]:
    ids = [t.id for t in teams if t.id is not None]
    members = await links_by(session, TeamMember, key="team_id", value="agent_id", keys=ids)
    inboxes = await links_by(session, TeamInbox, key="team_id", value="inbox_id", keys=ids)
    return [
        TeamView(id=t.id, name=t.name, assignment_policy=t.assignment_policy,
                 member_ids=members[t.id], inbox_ids=inboxes[t.id])
        for t in teams if t.id is not None
    ]


async def _unique_name(session: AsyncSession, name: str, team_id: int | None) -> str:
    name = name.strip()
    if not name:
        raise Refused("name: may not be blank")
    query = select(func.count()).select_from(Team).where(
        func.lower(Team.name) == name.lower())
    if team_id is not None:
        query = query.where(col(Team.id) != team_id)
    if (await session.exec(query)).one():
        raise Refused(f"a team named {name!r} already exists")
    return name


def _admin_only(principal: Principal) -> None:
    admins_only(principal, "change teams")


async def create_team(ctx: InboxContext, principal: Principal, body: TeamCreate) -> TeamView:
    """Add a team with its members and inboxes (admins only)."""
    _admin_only(principal)
    async with ctx.db.write() as session:
        team = Team(name=await _unique_name(session, body.name, None),
                    assignment_policy=body.assignment_policy)
        members = await check_ids(session, Agent, body.member_ids)
        inboxes = await check_ids(session, Inbox, body.inbox_ids)
        session.add(team)
        await session.flush()
        assert team.id is not None
        await replace_links(session, TeamMember, owner=("team_id", team.id), other="agent_id",
                            wanted=members)
        await replace_links(session, TeamInbox, owner=("team_id", team.id), other="inbox_id",
                            wanted=inboxes)
        view = (await _views(session, [team]))[0]
        events = await _events(ctx, session, members)
        stage_events(session, events)
    if members and inboxes:
        await assignment.drain_queue(ctx)
    return view


async def update_team(
    ctx: InboxContext, principal: Principal, team_id: int, patch: TeamPatch
) -> TeamView:
    """Rename a team, change its policy, members or inboxes (admins only)."""
    _admin_only(principal)
    async with ctx.db.write() as session:
        team = await _team(session, team_id)
        if patch.name is not None:
            team.name = await _unique_name(session, patch.name, team_id)
        if patch.assignment_policy is not None:
            team.assignment_policy = patch.assignment_policy
        session.add(team)
        before = (await _views(session, [team]))[0]
        touched: set[int] = set()
        if patch.member_ids is not None:
            wanted = await check_ids(session, Agent, patch.member_ids)
            added, removed = await replace_links(
                session, TeamMember, owner=("team_id", team_id), other="agent_id", wanted=wanted)
            touched |= added | removed
        if patch.inbox_ids is not None:
            wanted = await check_ids(session, Inbox, patch.inbox_ids)
            added, removed = await replace_links(
                session, TeamInbox, owner=("team_id", team_id), other="inbox_id", wanted=wanted)
            if added or removed:
                # Every member, past and present, now sees a different set of inboxes.
                touched |= set(before.member_ids) | set(patch.member_ids or [])
        view = (await _views(session, [team]))[0]
        events = await _events(ctx, session, touched)
        stage_events(session, events)
    if touched:
        await assignment.drain_queue(ctx)
    return view


async def delete_team(ctx: InboxContext, principal: Principal, team_id: int) -> None:
    """Remove a team; its conversations keep their assignee and lose the team (admins only)."""
    _admin_only(principal)
    async with ctx.db.write() as session:
        team = await _team(session, team_id)
        members = (await _views(session, [team]))[0].member_ids
        # What the team owned goes to the workspace.
        await session.exec(update(Label).where(col(Label.team_id) == team_id)
                           .values(team_id=None))
        await session.exec(update(CannedResponse).where(col(CannedResponse.team_id) == team_id)
                           .values(team_id=None))
        await session.delete(team)
        await session.flush()
        events = await _events(ctx, session, members)
        stage_events(session, events)


async def _team(session: AsyncSession, team_id: int) -> Team:
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound(f"team {team_id} not found")
    return team


async def _events(
    ctx: InboxContext, session: AsyncSession, agent_ids: Iterable[int]
) -> list[View]:
    return list(await agents_updated(session, agent_ids, ["teams"],
                                     presence_seconds=ctx.settings.presence_seconds))
