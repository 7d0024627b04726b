"""What people do about assignment: take, give and reassign conversations (one or many),
set capacities, an inbox's assignment settings, and their own availability.

Who may assign what: an agent takes an unassigned conversation or gives up their own; team
leads and admins give any conversation they see to any agent who can see its inbox, or to
a team working on that inbox (whose members then get it by the team's policy).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import ConversationAssigned, ConversationView, InboxChanged, View
from hub.types import utcnow
from inbox.actions import conversation_to_change
from inbox.activity import agent_name, change_with_activity
from inbox.agent_events import agent_event
from inbox.agents import Principal, visible_inbox_ids
from inbox.assignment import Placer, Scope, drain_queue, place
from inbox.context import InboxContext
from inbox.db import is_postgresql
from inbox.errors import Forbidden, NotFound, Refused
from inbox.models import (
    ASSIGNMENT_POLICIES,
    AVAILABILITY,
    Agent,
    Conversation,
    Inbox,
    Team,
    TeamInbox,
    TeamMember,
)
from inbox.notifications import notify
from inbox.outbox import stage_events
from inbox.views import load_conversation_view

MAX_BULK = 100


@dataclass(frozen=True)
class Target:
    """Where conversations go: an agent (or nobody), and a team when `change_team`."""

    assignee_id: int | None
    team_id: int | None = None
    change_team: bool = False
    # Nobody named: the assignment policy of its team (or inbox) picks among those online
    # with room, or it waits in the queue (an automation rule's "assign by the policy").
    by_policy: bool = False

    @property
    def to_team(self) -> bool:
        """A team without an agent: the team's policy picks one (or the queue keeps it)."""
        return self.change_team and self.team_id is not None and self.assignee_id is None


@dataclass
class _Checked:
    """What a target was checked against: the assignee's inboxes, the team's inboxes."""

    assignee: Agent | None = None
    assignee_inboxes: frozenset[int] = frozenset()
    team: Team | None = None
    team_inboxes: frozenset[int] = frozenset()

    def refusal(self, target: Target, inbox_id: int) -> str | None:
        """Why the target cannot take a conversation of this inbox, or None."""
        if target.assignee_id is not None and inbox_id not in self.assignee_inboxes:
            return "the assignee must be an active agent who can see this conversation's inbox"
        if target.change_team and target.team_id is not None and inbox_id not in self.team_inboxes:
            return "the team does not work on this conversation's inbox"
        return None


async def _check(session: AsyncSession, target: Target) -> _Checked:
    checked = _Checked()
    if target.assignee_id is not None:
        agent = await session.get(Agent, target.assignee_id)
        if agent is not None and agent.is_active:
            checked.assignee = agent
            checked.assignee_inboxes = await visible_inbox_ids(session, agent)
    if target.change_team and target.team_id is not None:
        team = await session.get(Team, target.team_id)
        if team is None:
            raise Refused(f"team_id: no team with id {target.team_id}")
        checked.team = team
        checked.team_inboxes = frozenset(await session.exec(
            select(TeamInbox.inbox_id).where(TeamInbox.team_id == target.team_id)))
    return checked


def _role_refusal(principal: Principal, conversation: Conversation, target: Target) -> str | None:
    """Why an agent (not a lead) may not make this change, or None."""
    if principal.is_lead:
        return None
    if target.change_team:
        return "only team leads and admins assign conversations to a team"
    me = principal.agent_id
    if target.assignee_id is not None and target.assignee_id != me:
        return "agents assign conversations only to themselves; ask a team lead"
    if conversation.assignee_id not in (None, me):
        return "this conversation is someone else's; ask a team lead to reassign it"
    return None


async def _apply(
    session: AsyncSession,
    placer: Placer,
    principal: Principal,
    conversation: Conversation,
    target: Target,
    checked: _Checked,
) -> tuple[ConversationView, list[View]]:
    """Make one checked change: the conversation, an activity line, events, a notification."""
    previous = conversation.assignee_id
    team_before = conversation.team_id
    if target.change_team:
        conversation.team_id = target.team_id
    by = await agent_name(session, principal.agent_id)
    notices: list[View] = []
    if target.to_team or target.by_policy:
        assert checked.team is not None or not target.to_team
        conversation.assignee_id = None
        conversation.waiting_since = None
        picked, notices = await place(placer, conversation, contact_name=None,
                                      by_agent_id=principal.agent_id)
        then = (f"{await agent_name(session, picked)} has it now" if picked is not None
                else "it waits in the queue")
        to = (f"team {checked.team.name}" if target.to_team and checked.team is not None
              else "the assignment policy")
        text = f"{by} assigned this conversation to {to}: {then}"
    else:
        if previous == target.assignee_id and team_before == conversation.team_id:
            return await load_conversation_view(session, conversation), []
        conversation.assignee_id = target.assignee_id
        # Given to someone, or taken out of the queue on purpose: it waits no more.
        conversation.waiting_since = None
        if target.assignee_id is not None:
            text = (f"{by} assigned this conversation to "
                    f"{await agent_name(session, target.assignee_id)}")
            if checked.team is not None:
                text += f" (team {checked.team.name})"
        elif previous is not None:
            text = f"{by} unassigned this conversation"
        else:
            team = await _team_name(session, team_before)
            text = f"{by} took this conversation out of team {team}"
        if target.assignee_id not in (None, previous, principal.agent_id):
            notices = [await notify(
                session, agent_id=target.assignee_id, kind="assigned", conversation=conversation,
                text=f"{by} assigned you: "
                     + (conversation.subject or conversation.last_message_preview or ""),
                by_agent_id=principal.agent_id,
            )]
    session.add(conversation)
    view, events = await change_with_activity(
        session, conversation, text, principal.agent_id,
        lambda view, at: ConversationAssigned(
            inbox_id=view.inbox_id, at=at, conversation=view, previous_assignee_id=previous,
            by_agent_id=principal.agent_id,
        ),
    )
    return view, [*events, *notices]


async def _team_name(session: AsyncSession, team_id: int | None) -> str:
    team = await session.get(Team, team_id) if team_id is not None else None
    return team.name if team is not None else "(none)"


async def assign(
    ctx: InboxContext, principal: Principal, *, conversation_id: int, target: Target
) -> ConversationView:
    """Give one conversation to an agent or a team, or unassign it (see the module's rules)."""
    now = utcnow()
    async with ctx.db.write() as session:
        conversation = await conversation_to_change(session, principal, conversation_id)
        refusal = _role_refusal(principal, conversation, target)
        if refusal is not None:
            raise Forbidden(refusal)
        checked = await _check(session, target)
        problem = checked.refusal(target, conversation.inbox_id)
        if problem is not None:
            raise Refused(problem)
        placer = Placer(session, now=now, presence_seconds=ctx.settings.presence_seconds)
        view, events = await _apply(session, placer, principal, conversation, target, checked)
        stage_events(session, events)
    if events:
        await drain_queue(ctx)  # whoever lost it may have room for a waiting one now
    return view


@dataclass(frozen=True)
class BulkError:
    """A conversation of a bulk change that was left as it was, and why."""

    id: int
    error: str


async def bulk_assign(
    ctx: InboxContext, principal: Principal, *, conversation_ids: list[int], target: Target
) -> tuple[list[ConversationView], list[BulkError]]:
    """Reassign many conversations at once (team leads and admins): each gets its activity
    line and event; those that cannot be seen are reported "not found", others skipped with
    the reason."""
    if not principal.is_lead:
        raise Forbidden("only team leads and admins reassign conversations in bulk")
    ids = list(dict.fromkeys(conversation_ids))
    if not 1 <= len(ids) <= MAX_BULK:
        raise Refused(f"conversation_ids: 1 to {MAX_BULK} ids")
    now = utcnow()
    views: list[ConversationView] = []
    errors: list[BulkError] = []
    events: list[View] = []
    async with ctx.db.write() as session:
        checked = await _check(session, target)
        query = (
            select(Conversation)
            .where(col(Conversation.id).in_(ids),
                   col(Conversation.inbox_id).in_(sorted(principal.inbox_ids)))
            .order_by(col(Conversation.id))  # locked in id order: no deadlock between two
        )
        if is_postgresql(session):
            query = query.with_for_update()
        found = {c.id: c for c in await session.exec(query)}
        usable: list[Conversation] = []
        for conversation_id in ids:
            conversation = found.get(conversation_id)
            problem = ("not found" if conversation is None
                       else checked.refusal(target, conversation.inbox_id))
            if problem is not None or conversation is None:
                errors.append(BulkError(conversation_id, problem or "not found"))
            else:
                usable.append(conversation)
        placer = Placer(session, now=now, presence_seconds=ctx.settings.presence_seconds)
        if target.to_team:
            # Every scope at once: the agents' locks are taken in one sweep.
            await placer.prepare({Scope(c.inbox_id, target.team_id) for c in usable})
        for conversation in usable:
            view, changed = await _apply(session, placer, principal, conversation, target,
                                         checked)
            views.append(view)
            events += changed
        stage_events(session, events)
    if events:
        await drain_queue(ctx)
    return views, errors


async def _managed_agent(session: AsyncSession, principal: Principal, agent_id: int) -> Agent:
    """An agent the lead may manage (shares an inbox or a team with them); admins: anyone."""
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    if principal.is_admin:
        return agent
    shares_team = (await session.exec(
        select(TeamMember.team_id).where(TeamMember.agent_id == agent_id,
                                         col(TeamMember.team_id).in_(sorted(principal.team_ids)))
    )).first() is not None
    if not shares_team and not (await visible_inbox_ids(session, agent)) & principal.inbox_ids:
        raise NotFound(f"agent {agent_id} not found")
    return agent


async def _change_agent(
    ctx: InboxContext,
    load: Callable[[AsyncSession], Awaitable[Agent]],
    field: str,
    value: object,
    *,
    frees: Callable[[Any, Any], bool],
) -> Agent:
    """Set one field of an agent, tell every agent, and drain the queue when the change
    (`frees(before, after)`) may let them take more."""
    async with ctx.db.write() as session:
        agent = await load(session)
        before = getattr(agent, field)
        if before == value:
            return agent
        setattr(agent, field, value)
        session.add(agent)
        await session.flush()
        event = await agent_event(session, agent, [field],
                                  presence_seconds=ctx.settings.presence_seconds)
        stage_events(session, [event])
    if frees(before, value):
        await drain_queue(ctx)
    return agent


async def set_capacity(
    ctx: InboxContext, principal: Principal, *, agent_id: int, capacity: int | None
) -> Agent:
    """Set how many open conversations assignment gives an agent (None: no limit)."""
    if not principal.is_lead:
        raise Forbidden("only team leads and admins set capacities")
    if capacity is not None and capacity < 0:
        raise Refused("capacity: 0 or more, or null for no limit")
    return await _change_agent(
        ctx, lambda session: _managed_agent(session, principal, agent_id), "capacity", capacity,
        frees=lambda before, after: after is None or (before is not None and after > before),
    )


async def leads_inbox(session: AsyncSession, principal: Principal, inbox_id: int) -> bool:
    """Whether the principal steers this inbox: an admin, or the lead of a team working on it."""
    if principal.is_admin:
        return True
    if not principal.is_lead or not principal.team_ids:
        return False
    found = await session.exec(
        select(TeamInbox.team_id).where(TeamInbox.inbox_id == inbox_id,
                                        col(TeamInbox.team_id).in_(sorted(principal.team_ids)))
    )
    return found.first() is not None


async def update_inbox_assignment(
    ctx: InboxContext,
    principal: Principal,
    *,
    inbox_id: int,
    auto_assign: bool | None = None,
    assignment_policy: str | None = None,
    requeue_on_offline: bool | None = None,
) -> Inbox:
    """Change how an inbox assigns (lead of a team on it, or admin); fields None stay."""
    if assignment_policy is not None and assignment_policy not in ASSIGNMENT_POLICIES:
        raise Refused(f"assignment_policy: use {' or '.join(ASSIGNMENT_POLICIES)}")
    async with ctx.db.write() as session:
        inbox = await session.get(Inbox, inbox_id)
        if inbox is None or inbox_id not in principal.inbox_ids:
            raise NotFound(f"inbox {inbox_id} not found")
        if not await leads_inbox(session, principal, inbox_id):
            raise Forbidden("only admins and the leads of a team on this inbox change its "
                            "assignment")
        if auto_assign is not None:
            inbox.auto_assign = auto_assign
        if assignment_policy is not None:
            inbox.assignment_policy = assignment_policy
        if requeue_on_offline is not None:
            inbox.requeue_on_offline = requeue_on_offline
        session.add(inbox)
        await session.flush()
        stage_events(session, [InboxChanged(inbox_id=None, at=utcnow(), changed_inbox_id=inbox_id)])
    ctx.inboxes.forget(inbox_id)
    await drain_queue(ctx)
    return inbox


async def set_availability(ctx: InboxContext, *, agent_id: int, availability: str) -> Agent:
    """Set an agent online (assignment may pick them) or away; every agent sees it live."""
    if availability not in AVAILABILITY:
        raise Refused(f"availability: use {' or '.join(AVAILABILITY)}")
    return await _change_agent(
        ctx, lambda session: session.get_one(Agent, agent_id), "availability", availability,
        frees=lambda before, after: after == "online",
    )
