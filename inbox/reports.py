"""Load reports for team leads: open conversations per agent, team and inbox, and the queue.

A lead sees the agents of their inboxes and teams, their own teams and their inboxes;
an admin sees everyone. Each figure is one grouped query, not one per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.types import utcnow
from inbox.agent_events import is_online
from inbox.agents import Principal
from inbox.errors import Forbidden
from inbox.models import Agent, Conversation, Inbox, InboxMember, Team, TeamInbox, TeamMember


class AgentLoad(BaseModel):
    """An agent's load: open conversations against their capacity."""

    id: int
    name: str
    availability: str
    online: bool
    open: int
    capacity: int | None


class TeamLoad(BaseModel):
    """A team's open conversations and its queue."""

    id: int
    name: str
    open: int
    waiting: int


class InboxLoad(BaseModel):
    """An inbox's open conversations, its queue and its open unassigned ones."""

    id: int
    name: str
    open: int
    waiting: int
    unassigned: int


class LoadReport(BaseModel):
    """The load of the agents, teams and inboxes the lead steers."""

    agents: list[AgentLoad]
    teams: list[TeamLoad]
    inboxes: list[InboxLoad]


def _open_counts(group: Any, where: Sequence[Any]) -> Any:
    """open, waiting and unassigned-open counts grouped by `group`."""
    is_open = Conversation.status == "open"
    return (
        select(
            group,
            func.count(),
            func.sum(case((col(Conversation.waiting_since).is_not(None), 1), else_=0)),
            func.sum(case((col(Conversation.assignee_id).is_(None), 1), else_=0)),
        )
        .where(is_open, *where)
        .group_by(group)
    )


async def load_report(
    session: AsyncSession, principal: Principal, *, presence_seconds: int
) -> LoadReport:
    """The load report (team leads and admins)."""
    if not principal.is_lead:
        raise Forbidden("only team leads and admins read load reports")
    inbox_ids = sorted(principal.inbox_ids)
    team_ids = sorted(principal.team_ids)
    agent_query = select(Agent).where(col(Agent.is_active).is_(True))
    team_query = select(Team)
    if not principal.is_admin:
        agent_query = agent_query.where(or_(
            col(Agent.id).in_(select(InboxMember.agent_id)
                              .where(col(InboxMember.inbox_id).in_(inbox_ids))),
            col(Agent.id).in_(select(TeamMember.agent_id).where(
                col(TeamMember.team_id).in_(
                    select(TeamInbox.team_id).where(col(TeamInbox.inbox_id).in_(inbox_ids))
                ) | col(TeamMember.team_id).in_(team_ids))),
        ))
        team_query = team_query.where(col(Team.id).in_(team_ids))
    agents = list(await session.exec(agent_query.order_by(col(Agent.name), col(Agent.id))))
    teams = list(await session.exec(team_query.order_by(col(Team.name), col(Team.id))))
    inboxes = list(await session.exec(
        select(Inbox).where(col(Inbox.id).in_(inbox_ids)).order_by(col(Inbox.id))))
    agent_ids = [a.id for a in agents if a.id is not None]
    per_agent = {row[0]: row[1] for row in await session.exec(
        select(Conversation.assignee_id, func.count())
        .where(Conversation.status == "open", col(Conversation.assignee_id).in_(agent_ids))
        .group_by(col(Conversation.assignee_id)))}
    per_team = {row[0]: row for row in await session.exec(_open_counts(
        col(Conversation.team_id), [col(Conversation.team_id).in_([t.id for t in teams])]))}
    per_inbox = {row[0]: row for row in await session.exec(_open_counts(
        col(Conversation.inbox_id), [col(Conversation.inbox_id).in_(inbox_ids)]))}
    now = utcnow()
    return LoadReport(
        agents=[AgentLoad(id=a.id or 0, name=a.name, availability=a.availability,
                          online=is_online(a, presence_seconds=presence_seconds, now=now),
                          open=per_agent.get(a.id, 0), capacity=a.capacity) for a in agents],
        teams=[TeamLoad(id=t.id or 0, name=t.name, open=_n(per_team.get(t.id), 1),
                        waiting=_n(per_team.get(t.id), 2)) for t in teams],
        inboxes=[InboxLoad(id=i.id or 0, name=i.name, open=_n(per_inbox.get(i.id), 1),
                           waiting=_n(per_inbox.get(i.id), 2),
                           unassigned=_n(per_inbox.get(i.id), 3)) for i in inboxes],
    )


def _n(row: Any, index: int) -> int:
    return int(row[index] or 0) if row is not None else 0
