"""Managing people: list agents, change their role, capacity, inboxes and teams, deactivate.

Deactivation ends everything at once: the agent's sessions are deleted, `agent.updated`
makes their open websockets re-check (and close), and their open conversations go back to
the queue (inbox.assignment.release_agent).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import View
from hub.types import RowId, utcnow
from inbox import assignment
from inbox.agent_events import agent_event, is_online
from inbox.agents import Principal
from inbox.context import InboxContext
from inbox.db import is_postgresql
from inbox.errors import NotFound, Refused, admins_only, existing
from inbox.login_limits import locked_until, unlock
from inbox.memberships import check_ids, links_by, replace_links
from inbox.models import SYSTEM_ROLE, Agent, AgentSession, Inbox, InboxMember, Team, TeamMember
from inbox.outbox import stage_events

MAX_CAPACITY = 1000
# Changes after which someone may take a conversation waiting in the queue.
DRAINING = frozenset({"capacity", "inboxes", "teams", "reactivated"})


class AgentAdminView(BaseModel):
    """An agent as admins see and change them."""

    id: int
    email: str
    name: str
    role: str
    is_active: bool
    availability: str
    online: bool
    capacity: int | None
    inbox_ids: list[int]
    team_ids: list[int]
    totp_enabled: bool
    # Failed logins locked the account until then (an admin may unlock it sooner).
    locked_until: datetime | None = None


class AgentPatch(BaseModel):
    """What an admin may change of an agent; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Literal["admin", "lead", "agent"] | None = None
    # null: no limit on open conversations auto-assigned to the agent.
    capacity: int | None = Field(default=None, ge=0, le=MAX_CAPACITY)
    is_active: bool | None = None
    inbox_ids: list[RowId] | None = Field(default=None, max_length=1000)
    team_ids: list[RowId] | None = Field(default=None, max_length=1000)


async def list_agents(session: AsyncSession, *, presence_seconds: int) -> list[AgentAdminView]:
    """Every agent, active ones first, by name."""
    agents = list(await session.exec(
        select(Agent).where(Agent.role != SYSTEM_ROLE)  # the automation agent is no one's to manage
        .order_by(col(Agent.is_active).desc(), col(Agent.name), col(Agent.id))
    ))
    return await _views(session, agents, presence_seconds)


async def get_agent(
    session: AsyncSession, agent_id: int, *, presence_seconds: int
) -> AgentAdminView:
    """One agent; NotFound if there is none."""
    agent = await existing(session, Agent, agent_id, "agent")
    return (await _views(session, [agent], presence_seconds))[0]


async def _views(
    session: AsyncSession, agents: list[Agent], presence_seconds: int
) -> list[AgentAdminView]:
    ids = [a.id for a in agents if a.id is not None]
    inboxes = await links_by(session, InboxMember, key="agent_id", value="inbox_id", keys=ids)
    teams = await links_by(session, TeamMember, key="agent_id", value="team_id", keys=ids)
    locked = await locked_until(session, [a.email for a in agents], now=utcnow())
    views = []
    for agent in agents:
        assert agent.id is not None
        views.append(AgentAdminView(
            id=agent.id, email=agent.email, name=agent.name, role=agent.role,
            is_active=agent.is_active, availability=agent.availability,
            online=agent.is_active and is_online(agent, presence_seconds=presence_seconds),
            capacity=agent.capacity, inbox_ids=inboxes[agent.id], team_ids=teams[agent.id],
            totp_enabled=agent.totp_enabled, locked_until=locked.get(agent.email),
        ))
    return views


async def unlock_agent(ctx: InboxContext, principal: Principal, agent_id: int) -> AgentAdminView:
    """Let an agent locked out by failed logins try again now (admins only)."""
    admins_only(principal, "unlock agents")
    async with ctx.db.write() as session:
        agent = await existing(session, Agent, agent_id, "agent")
        await unlock(session, agent.email)
        return (await _views(session, [agent], ctx.settings.presence_seconds))[0]


async def _lock_agent_and_admins(session: AsyncSession, agent_id: int) -> tuple[Agent, int]:
    """The agent, and how many *other* active admins there are, rows locked on PostgreSQL.

    Locking every admin row (in id order) serialises two admins demoting each other at the
    same moment: the second sees the first's change and the last admin stays.
    """
    query = (
        select(Agent)
        .where(or_(col(Agent.id) == agent_id, col(Agent.role) == "admin"))
        .order_by(col(Agent.id))
    )
    if is_postgresql(session):
        query = query.with_for_update()
    rows = list(await session.exec(query))
    agent = next((row for row in rows if row.id == agent_id), None)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    others = sum(1 for row in rows
                 if row.id != agent_id and row.role == "admin" and row.is_active)
    return agent, others


async def update_agent(
    ctx: InboxContext, principal: Principal, agent_id: int, patch: AgentPatch
) -> AgentAdminView:
    """Apply an admin's changes to an agent (admins only), then tell every agent."""
    admins_only(principal, "change agents")
    given = patch.model_fields_set
    presence = ctx.settings.presence_seconds
    async with ctx.db.write() as session:
        agent, other_admins = await _lock_agent_and_admins(session, agent_id)
        losing_admin = agent.role == "admin" and agent.is_active and (
            (patch.role is not None and patch.role != "admin") or patch.is_active is False
        )
        if losing_admin and other_admins == 0:
            raise Refused(f"{agent.name} is the last active admin; make someone else an admin "
                          "first")
        if patch.is_active is False and agent_id == principal.agent_id:
            raise Refused("you cannot deactivate yourself; ask another admin")
        changes = await _apply(session, agent, patch, given)
        view = (await _views(session, [agent], presence))[0]
        events: list[View] = (
            [await agent_event(session, agent, changes, presence_seconds=presence)]
            if changes else []
        )
        # Sockets first (they close at once), then the conversations go back to the queue.
        stage_events(session, events)
    if "deactivated" in changes:
        await assignment.release_agent(ctx, agent_id, reason="deactivated")
    elif DRAINING.intersection(changes):
        # More room or another pair of hands: waiting conversations may have a taker now.
        await assignment.drain_queue(ctx)
    return view


async def _apply(
    session: AsyncSession, agent: Agent, patch: AgentPatch, given: set[str]
) -> list[str]:
    """Change the agent row and links; return the names of what changed."""
    assert agent.id is not None
    changes: list[str] = []
    if patch.name is not None:
        name = patch.name.strip()
        if not name:
            raise Refused("name: may not be blank")
        if name != agent.name:
            agent.name = name
            changes.append("name")
    if patch.role is not None and patch.role != agent.role:
        agent.role = patch.role
        changes.append("role")
    if "capacity" in given and patch.capacity != agent.capacity:
        agent.capacity = patch.capacity
        changes.append("capacity")
    if patch.is_active is not None and patch.is_active != agent.is_active:
        agent.is_active = patch.is_active
        if not patch.is_active:
            # Every session ends now: the next request of any of them is a 401.
            await session.exec(delete(AgentSession).where(
                col(AgentSession.agent_id) == agent.id))
        changes.append("reactivated" if patch.is_active else "deactivated")
    session.add(agent)
    links = (
        (patch.inbox_ids, Inbox, InboxMember, "inbox_id", "inboxes"),
        (patch.team_ids, Team, TeamMember, "team_id", "teams"),
    )
    for ids, model, link, other, change in links:
        if ids is None:
            continue
        wanted = await check_ids(session, model, ids)
        added, removed = await replace_links(
            session, link, owner=("agent_id", agent.id), other=other, wanted=wanted)
        if added or removed:
            changes.append(change)
    await session.flush()
    return changes
