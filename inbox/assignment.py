"""Automatic assignment: who gets a conversation, the queue, and agents who go offline.

Who may get one: active agents who are online (a live connection: last_seen_at within
settings.presence_seconds), available (availability "online", not "away") and under their
capacity. Capacity counts the agent's conversations in status "open": resolving, snoozing
or setting one pending frees a place; a reopened conversation counts again (it may take an
agent over capacity: capacity limits what assignment gives, never what customers write).
Among them, a team's members when the conversation has a team, else the inbox's members,
by the team's or inbox's policy: round robin (assigned longest ago) or least loaded
(fewest open conversations, then round robin).

What nobody can take waits in the queue (waiting_since = when it started waiting) and is
assigned, oldest first, as soon as someone can take it: `drain_queue` runs after every
change that frees a place or brings an agent in, and a worker runs it every few seconds.

On PostgreSQL two processes assigning at once never take an agent over capacity: the
agents with a capacity are locked (transaction advisory locks, in id order, all at once)
before their load is counted. SQLite has a single writer already.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, bindparam, exists, func, or_, text, tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events import CAUSED_BY, ConversationAssigned, View
from hub.types import InboundMessage, utcnow
from inbox.activity import agent_name, change_with_activity
from inbox.context import InboxContext
from inbox.db import execute, is_postgresql
from inbox.models import (
    Agent,
    Contact,
    Conversation,
    Inbox,
    InboxMember,
    Team,
    TeamInbox,
    TeamMember,
    table_of,
)
from inbox.notifications import notify
from inbox.outbox import stage_events
from inbox.routing import RoutingFacts, message_language, route

DRAIN_BATCH = 100
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Scope:
    """Where a conversation looks for an agent: its inbox, and its team if it has one."""

    inbox_id: int
    team_id: int | None

    @classmethod
    def of(cls, conversation: Conversation) -> Scope:
        """The scope of a conversation."""
        return cls(conversation.inbox_id, conversation.team_id)


@dataclass
class Candidate:
    """An agent who may get a conversation of a scope right now."""

    agent_id: int
    capacity: int | None
    last_assigned_at: datetime | None
    load: int = 0

    @property
    def has_room(self) -> bool:
        """Under capacity (or without one)."""
        return self.capacity is None or self.load < self.capacity


@dataclass
class Pool:
    """The candidates of one scope and the policy that picks among them."""

    scope: Scope
    policy: str
    candidates: list[Candidate] = field(default_factory=list)
    # Conversations of the scope wait in the queue: a newcomer waits behind them.
    waiting: bool = False

    def pick(self) -> Candidate | None:
        """The candidate the policy picks, or None when nobody has room."""
        free = [c for c in self.candidates if c.has_room]
        if not free:
            return None

        def round_robin(c: Candidate) -> tuple[datetime, int]:
            return (c.last_assigned_at or _NEVER, c.agent_id)

        if self.policy == "least_loaded":
            return min(free, key=lambda c: (c.load, *round_robin(c)))
        return min(free, key=round_robin)



def _available(now: datetime, presence_seconds: int) -> list[Any]:
    """Conditions on Agent: active, online (a live connection) and available."""
    return [
        col(Agent.is_active).is_(True),
        Agent.availability == "online",
        col(Agent.last_seen_at) >= now - timedelta(seconds=presence_seconds),
    ]


class Placer:
    """Picks agents for conversations within one transaction.

    `prepare` reads each scope's candidates, locks those with a capacity (PostgreSQL, once,
    in id order: no deadlock between two placers) and counts their loads; `take` then keeps
    the loads and round-robin order up to date as conversations are given out.
    """

    def __init__(self, session: AsyncSession, *, now: datetime, presence_seconds: int) -> None:
        self.session = session
        self.now = now
        self.presence_seconds = presence_seconds
        self.pools: dict[Scope, Pool] = {}
        self._taken: dict[tuple[Scope, int], None] = {}

    async def look(self, scopes: Iterable[Scope]) -> None:
        """Read the candidates of every scope (no locks, no loads: enough to know if anyone
        is there)."""
        for scope in sorted(set(scopes), key=lambda s: (s.inbox_id, s.team_id or 0)):
            self.pools[scope] = await self._pool(scope)

    async def prepare(self, scopes: Iterable[Scope]) -> None:
        """Read the candidates of every scope, lock the capped ones, count loads.

        Call it once per transaction, with every scope it will pick for: the locks are
        taken in one sweep in id order, which is what keeps two placers from deadlocking.
        """
        await self.look(scopes)
        capped = sorted({c.agent_id for p in self.pools.values() for c in p.candidates
                         if c.capacity is not None})
        await lock_agents(self.session, capped)
        counted = sorted({c.agent_id for p in self.pools.values() for c in p.candidates
                          if c.capacity is not None or p.policy == "least_loaded"})
        loads = await open_counts(self.session, counted)
        for pool in self.pools.values():
            for candidate in pool.candidates:
                candidate.load = loads.get(candidate.agent_id, 0)

    async def _pool(self, scope: Scope) -> Pool:
        member, owner, owner_key = _members_of(scope)
        conditions = [col(owner_key) == (scope.team_id or scope.inbox_id),
                      *_available(self.now, self.presence_seconds)]
        if scope.team_id is not None:
            # Team members who can see the inbox: the team works on it, or they are members.
            conditions.append(or_(
                exists().where(col(TeamInbox.team_id) == scope.team_id,
                               col(TeamInbox.inbox_id) == scope.inbox_id),
                exists().where(col(InboxMember.inbox_id) == scope.inbox_id,
                               col(InboxMember.agent_id) == col(TeamMember.agent_id)),
                col(Agent.role) == "admin",
            ))
        # Asked in the same statement (one round trip less on the ingest path).
        waiting = exists().where(*_queue(), _in_scope(scope)).label("waiting")
        rows = list(await self.session.exec(
            select(  # type: ignore[call-overload]  # sqlmodel types 4 columns at most
                member.agent_id, Agent.capacity, member.last_assigned_at,
                owner.assignment_policy, waiting,
            )
            .join(Agent, col(Agent.id) == col(member.agent_id))
            .join(owner, col(owner.id) == col(owner_key))
            .where(*conditions)
        ))
        if not rows:
            return Pool(scope, "round_robin")  # nobody: the policy does not matter
        return Pool(scope, rows[0][3], [Candidate(agent_id, capacity, last)
                                        for agent_id, capacity, last, _, _ in rows],
                    waiting=bool(rows[0][4]))

    def pick(self, scope: Scope) -> Candidate | None:
        """Who the scope's policy picks now (prepare the scope first)."""
        pool = self.pools.get(scope)
        return pool.pick() if pool is not None else None

    async def take(self, scope: Scope, candidate: Candidate) -> None:
        """Count a conversation given to `candidate`: load, and round robin's last pick."""
        self.take_later(scope, candidate)
        await self.write_taken()

    def take_later(self, scope: Scope, candidate: Candidate) -> None:
        """Count a conversation given to `candidate` now; write round robin's last pick with
        the others in `write_taken`."""
        candidate.load += 1
        candidate.last_assigned_at = self.now
        self._taken[(scope, candidate.agent_id)] = None

    async def write_taken(self) -> None:
        """Record when each agent taken since the last call was picked (one statement per
        kind of membership)."""
        by_member: dict[type[InboxMember | TeamMember], list[dict[str, Any]]] = {}
        for scope, agent_id in self._taken:
            member, _, _ = _members_of(scope)
            by_member.setdefault(member, []).append(
                {"owner": scope.team_id or scope.inbox_id, "agent": agent_id})
        self._taken.clear()
        for member, rows in by_member.items():
            table = table_of(member)
            owner = table.c.team_id if member is TeamMember else table.c.inbox_id
            await execute(
                self.session,
                update(table)
                .where(owner == bindparam("owner"), table.c.agent_id == bindparam("agent"))
                .values(last_assigned_at=self.now),
                rows,
            )


def _members_of(scope: Scope) -> tuple[type[InboxMember | TeamMember], type[Inbox | Team], Any]:
    """Whose members a scope picks among: the team's, else the inbox's (and the key)."""
    if scope.team_id is None:
        return InboxMember, Inbox, InboxMember.inbox_id
    return TeamMember, Team, TeamMember.team_id


async def lock_agents(session: AsyncSession, agent_ids: list[int]) -> None:
    """Hold the assignment locks of these agents until the transaction ends (PostgreSQL)."""
    if not agent_ids or not is_postgresql(session):
        return  # SQLite runs one write transaction at a time already
    names = [f"agent-load:{agent_id}" for agent_id in sorted(set(agent_ids))]
    connection = await session.connection()
    # One round trip; the locks are taken in the array's (sorted) order.
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
             "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"),
        {"keys": names},
    )


async def open_counts(session: AsyncSession, agent_ids: list[int]) -> dict[int, int]:
    """How many open conversations each agent has (their load)."""
    if not agent_ids:
        return {}
    rows = await session.exec(
        select(Conversation.assignee_id, func.count())
        .where(col(Conversation.assignee_id).in_(agent_ids), Conversation.status == "open")
        .group_by(col(Conversation.assignee_id))
    )
    return {agent_id: count for agent_id, count in rows if agent_id is not None}


def _queue() -> list[Any]:
    """Conditions on Conversation: waiting in the queue."""
    return [
        col(Conversation.waiting_since).is_not(None),
        col(Conversation.assignee_id).is_(None),
        Conversation.status == "open",
    ]


def _in_scope(scope: Scope) -> Any:
    team = (col(Conversation.team_id).is_(None) if scope.team_id is None
            else col(Conversation.team_id) == scope.team_id)
    return and_(col(Conversation.inbox_id) == scope.inbox_id, team)


def _notice_text(conversation: Conversation, contact_name: str | None) -> str:
    about = (conversation.subject or conversation.last_message_preview
             or f"conversation #{conversation.id}")
    return f"{contact_name}: {about}" if contact_name else about


async def place(
    placer: Placer, conversation: Conversation, *, contact_name: str | None,
    by_agent_id: int | None = None,
) -> tuple[int | None, list[View]]:
    """Give an unassigned conversation to the agent its scope's policy picks, or queue it.

    Returns the agent (None: queued) and the assignee's notification, to publish after the
    commit. Conversations already waiting in the scope go first: a newcomer waits behind them.
    """
    scope = Scope.of(conversation)
    if scope not in placer.pools:
        await placer.prepare([scope])
    pool = placer.pools[scope]
    candidate = None if pool.waiting else pool.pick()
    if candidate is None:
        conversation.waiting_since = conversation.waiting_since or placer.now
        placer.session.add(conversation)
        pool.waiting = True  # the next of this scope waits behind this one
        return None, []
    await placer.take(scope, candidate)
    conversation.assignee_id = candidate.agent_id
    conversation.waiting_since = None
    placer.session.add(conversation)
    notice = await notify(placer.session, agent_id=candidate.agent_id, kind="assigned",
                          conversation=conversation,
                          text=_notice_text(conversation, contact_name), by_agent_id=by_agent_id)
    return candidate.agent_id, [notice]


async def auto_assign(
    session: AsyncSession,
    conversation: Conversation,
    *,
    channel: str,
    contact: Contact,
    first: InboundMessage | None,
    now: datetime,
    presence_seconds: int,
) -> list[View]:
    """Route a conversation nobody has (by the rules, when `first` opened it) and assign it
    or queue it; returns the assignee's notification, to publish after the commit."""
    if first is not None:
        team_id = await route(session, RoutingFacts(
            inbox_id=conversation.inbox_id, channel=channel, text=first.text or "",
            language=message_language(first.metadata, contact.attributes),
            contact_attributes=contact.attributes,
        ))
        if team_id is not None:
            conversation.team_id = team_id
    # The conversation's own row change goes out before any agent lock is waited on.
    session.add(conversation)
    await session.flush()
    placer = Placer(session, now=now, presence_seconds=presence_seconds)
    _, notices = await place(placer, conversation, contact_name=contact.name)
    return notices


async def drain_queue(ctx: InboxContext) -> int:
    """Assign waiting conversations, oldest first, to whoever can take them; return how many."""
    # The queue assigns other conversations than the one whose change freed a place: what
    # a rule did there (CAUSED_BY) did not cause these.
    token = CAUSED_BY.set(())
    try:
        return await _drain_queue(ctx)
    finally:
        CAUSED_BY.reset(token)


async def _drain_queue(ctx: InboxContext) -> int:
    presence = ctx.settings.presence_seconds
    total = 0
    after: tuple[datetime, int] | None = None
    while True:
        now = utcnow()
        async with ctx.db.read() as session:
            # Cheap look first: nothing waits, or nobody could take it -> no write transaction.
            scopes = await _waiting_scopes(session, after)
            if not scopes:
                return total
            looking = Placer(session, now=now, presence_seconds=presence)
            await looking.look(scopes)
            scopes = [s for s in scopes if looking.pools[s].candidates]
            if not scopes:
                return total
        events: list[View] = []
        async with ctx.db.write() as session:
            placer = Placer(session, now=now, presence_seconds=presence)
            await placer.prepare(scopes)
            ready = [s for s in scopes if placer.pick(s) is not None]
            batch: list[Conversation] = []
            if ready:
                query = (
                    select(Conversation)
                    .where(*_queue(), or_(*[_in_scope(s) for s in ready]))
                    .order_by(col(Conversation.waiting_since), col(Conversation.id))
                    .limit(DRAIN_BATCH)
                )
                if after is not None:
                    query = query.where(_after(after))
                if is_postgresql(session):
                    # Another process draining at once takes other conversations.
                    query = query.with_for_update(skip_locked=True)
                batch = list(await session.exec(query))
            for conversation in batch:
                candidate = placer.pick(Scope.of(conversation))
                if candidate is None:
                    continue
                events += await _give(session, placer, conversation, candidate)
                total += 1
            stage_events(session, events)
        if len(batch) < DRAIN_BATCH or not any(placer.pick(s) for s in ready):
            return total
        last = batch[-1]
        assert last.waiting_since is not None and last.id is not None
        after = (last.waiting_since, last.id)


async def _waiting_scopes(
    session: AsyncSession, after: tuple[datetime, int] | None
) -> list[Scope]:
    query = select(Conversation.inbox_id, Conversation.team_id).where(*_queue()).distinct()
    if after is not None:
        query = query.where(_after(after))
    return [Scope(inbox_id, team_id) for inbox_id, team_id in await session.exec(query)]


def _after(after: tuple[datetime, int]) -> Any:
    """Queue order: after this (waiting_since, id)."""
    return tuple_(col(Conversation.waiting_since), col(Conversation.id)) > tuple_(*after)


async def _give(
    session: AsyncSession, placer: Placer, conversation: Conversation, candidate: Candidate
) -> list[View]:
    """Assign a waiting conversation to `candidate`: activity line, events, notification."""
    await placer.take(Scope.of(conversation), candidate)
    conversation.assignee_id = candidate.agent_id
    conversation.waiting_since = None
    session.add(conversation)
    name = await agent_name(session, candidate.agent_id)
    view, events = await change_with_activity(
        session, conversation, f"Assigned to {name} from the queue", None,
        lambda view, at: ConversationAssigned(
            inbox_id=view.inbox_id, at=at, conversation=view, previous_assignee_id=None,
            by_agent_id=None,
        ),
    )
    notice = await notify(session, agent_id=candidate.agent_id, kind="assigned",
                          conversation=conversation,
                          text=_notice_text(conversation, view.contact_name))
    return [*events, notice]


ReleaseReason = Literal["offline", "deactivated"]


async def release_agent(ctx: InboxContext, agent_id: int, *, reason: ReleaseReason) -> int:
    """Give back an agent's conversations: on going offline, the open ones of inboxes with
    requeue_on_offline go back to the queue; on deactivation, all of their open ones do
    (and their pending and snoozed ones are unassigned). Returns how many."""
    async with ctx.db.write() as session:
        events = await _release(session, agent_id, reason=reason, now=utcnow())
        stage_events(session, events)
    if events:
        await drain_queue(ctx)
    return sum(isinstance(e, ConversationAssigned) for e in events)


async def _release(
    session: AsyncSession, agent_id: int, *, reason: ReleaseReason, now: datetime
) -> list[View]:
    query = select(Conversation).where(Conversation.assignee_id == agent_id)
    if reason == "offline":
        query = query.where(
            Conversation.status == "open",
            col(Conversation.inbox_id).in_(
                select(Inbox.id).where(col(Inbox.requeue_on_offline).is_(True))),
        )
    else:
        query = query.where(col(Conversation.status).in_(("open", "pending", "snoozed")))
    if is_postgresql(session):
        query = query.with_for_update()
    conversations = list(await session.exec(query.order_by(col(Conversation.id))))
    if not conversations:
        return []
    name = await agent_name(session, agent_id)
    why = "went offline" if reason == "offline" else "was deactivated"
    events: list[View] = []
    for conversation in conversations:
        queued = conversation.status == "open"
        conversation.assignee_id = None
        conversation.waiting_since = now if queued else None
        session.add(conversation)
        _, changed = await change_with_activity(
            session, conversation,
            f"{name} {why}: this conversation is "
            + ("back in the queue" if queued else "unassigned"),
            None,
            lambda view, at: ConversationAssigned(
                inbox_id=view.inbox_id, at=at, conversation=view,
                previous_assignee_id=agent_id, by_agent_id=None,
            ),
        )
        events += changed
    return events


async def release_offline_agents(ctx: InboxContext) -> int:
    """Release (per inbox setting) the conversations of agents whose connection went stale.

    Each drop is handled once: the agent is marked (offline_noticed_at) in the same
    transaction, and only a later heartbeat (they came back) makes the next drop count.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=ctx.settings.presence_seconds)
    stale = and_(
        col(Agent.last_seen_at) < cutoff,
        or_(col(Agent.offline_noticed_at).is_(None),
            col(Agent.offline_noticed_at) < col(Agent.last_seen_at)),
    )
    async with ctx.db.read() as session:
        if (await session.exec(select(Agent.id).where(stale).limit(1))).first() is None:
            return 0
    events: list[View] = []
    async with ctx.db.write() as session:
        # The update claims each agent once, even with several workers looking at once.
        claimed = await session.exec(
            update(Agent).where(stale).values(offline_noticed_at=now).returning(col(Agent.id))
        )
        for agent_id in sorted(claimed.scalars()):
            events += await _release(session, agent_id, reason="offline", now=now)
        stage_events(session, events)
    if events:
        await drain_queue(ctx)
    return sum(isinstance(e, ConversationAssigned) for e in events)


async def online_member_count(
    session: AsyncSession, *, inbox_id: int, now: datetime, presence_seconds: int
) -> int:
    """How many of the inbox's agents are online and available right now."""
    counts = await online_member_counts(session, inbox_ids=[inbox_id], now=now,
                                        presence_seconds=presence_seconds)
    return counts.get(inbox_id, 0)


async def online_member_counts(
    session: AsyncSession, *, inbox_ids: list[int], now: datetime, presence_seconds: int
) -> dict[int, int]:
    """For each inbox, how many of its agents are online and available right now (inboxes
    with none are left out), in one statement."""
    rows = await session.exec(
        select(col(InboxMember.inbox_id), func.count())
        .join(Agent, col(Agent.id) == col(InboxMember.agent_id))
        .where(col(InboxMember.inbox_id).in_(inbox_ids), *_available(now, presence_seconds))
        .group_by(col(InboxMember.inbox_id))
    )
    return {inbox_id: int(count) for inbox_id, count in rows}
